#!/usr/bin/env bash
# rdmacoll-bw and rdmacoll-lat as users run them: real processes, real exit codes, the table and
# the JSON checked. On the host over UCX (tcp/shared memory); in the soft-RoCE guest over verbs
# and over UCX on rc_verbs.
# usage: perf_tools_test.sh CASE BUILD_DIR TRANSPORT [rdma]
#   CASE: usage | launched | server-client | unreachable | mismatch | odd-ranks | missing-device
#   TRANSPORT: ucx | verbs
#   rdma: run on this host's RDMA device (skip without one, fail if REQUIRE_RDMA_DEVICE=1)
# Exit 0 pass, 1 fail, 77 skip.
set -u
case_=$1 build=$2 transport=$3 on_rdma=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
bw=$build/tools/rdmacoll-bw lat=$build/tools/rdmacoll-lat run=$build/tools/rdmacoll-run
. "$here/tool_test_lib.sh"

# Transport flags: the device under test. In the guest UCX is pinned to rc_verbs on the rxe device.
flags=(--transport "$transport")
if [ "$on_rdma" = rdma ]; then
  [ -n "$dev" ] && flags+=(-d "$dev")
  [ "$transport" = ucx ] && export UCX_TLS=rc_verbs,self
fi
# A port nobody listens on right now (the kernel's choice, released again; ports in the
# ephemeral range can be taken meanwhile, so servers that find theirs in use are retried).
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# serve_and_connect SERVER_OUT CLIENT_OUT TOOL ARGS... -- SERVER_ARGS... -- CLIENT_ARGS...: runs a
# server and its client on a fresh port; sets src (server) and rc (client) exit statuses.
serve_and_connect() {
  local sout=$1 cout=$2 tool=$3; shift 3
  local common=() sargs=() cargs=()
  while [ "$1" != -- ]; do common+=("$1"); shift; done; shift
  while [ "$1" != -- ]; do sargs+=("$1"); shift; done; shift
  cargs=("$@")
  for _ in 1 2 3; do
    p=$(port)
    "$tool" "${common[@]}" -p "$p" --bind 127.0.0.1 "${sargs[@]}" >"$tmp/$sout" 2>"$tmp/$sout.err" &
    local spid=$!
    "$tool" "${common[@]}" -p "$p" "${cargs[@]}" 127.0.0.1 >"$tmp/$cout" 2>"$tmp/$cout.err"; rc=$?
    wait $spid; src=$?
    grep -q "Address already in use" "$tmp/$sout.err" || return 0
  done
}

case $case_ in
usage)
  for tool in "$bw" "$lat"; do
    "$tool" --help >"$tmp/out" 2>"$tmp/err"; rc=$?; expect_rc 0 "--help"
    expect_in out "^usage: rdmacoll-"
    for bad in "--bogus" "-s" "-s 12Q" "-n 0" "-n x" "--op jump" "--transport tcp" "-s 0" "-a -s 8" \
               "-b 64 -e 8" "host1 host2" "--progress fast" "--timeout -1"; do
      # shellcheck disable=SC2086
      "$tool" $bad >"$tmp/out" 2>"$tmp/err"; rc=$?; expect_rc 2 "$tool $bad"
      expect_in err "^usage: rdmacoll-"
    done
  done
  "$lat" -t 4 >"$tmp/out" 2>"$tmp/err"; rc=$?; expect_rc 2 "lat -t"
  expect_in err "applies to rdmacoll-bw only"
  "$bw" -s 12Q >"$tmp/out" 2>"$tmp/err"; rc=$?; expect_in err "'12Q' is not a size in bytes"
  ;;
launched)
  # Every operation of both tools, two ranks under rdmacoll-run, data checked: bw as a table and
  # lat as JSON for each operation, then the other way round for one. In the soft-RoCE guest,
  # where starting two ranks under emulation takes seconds, each operation once, with one tool
  # or the other (every pairing is run on the host over UCX).
  bw_ops="write write_imm send read" lat_ops="write write_imm send read"
  [ "$on_rdma" = rdma ] && bw_ops="write send" lat_ops="write_imm read"
  for op in $bw_ops; do
    "$run" -n 2 --no-prefix -- "$bw" "${flags[@]}" --op $op -b 8 -e 1M -f 128 -n 200 -t 16 --check \
      >"$tmp/out" 2>"$tmp/err"; rc=$?; expect_rc 0 "bw $op"
    expect_in out "^ #bytes  *#iterations  *BW peak\[MiB/sec\]  *BW average\[MiB/sec\]  *MsgRate\[Mpps\]"
    expect_in out "Transport *: $transport"
    for s in 8 1024 131072; do expect_in out "^ $s  *200  *[0-9.]*  *[0-9.]*  *[0-9.]*   data ok$"; done
  done
  for op in $lat_ops; do
    "$run" -n 2 --no-prefix -- "$lat" "${flags[@]}" --op $op -b 2 -e 64K -f 32 -n 100 -w 10 --check --json \
      >"$tmp/json" 2>"$tmp/err"; rc=$?; expect_rc 0 "lat $op --json"
    python3 "$here/check_perf_json.py" lat "$tmp/json" 2,64,2048,65536 >"$tmp/verdict" || fail "$(cat "$tmp/verdict")"
  done
  "$run" -n 2 --no-prefix -- "$lat" "${flags[@]}" -b 2 -e 64K -f 32 -n 100 -w 10 --check >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0 "lat table"
  expect_in out "^ #bytes  *#iterations  *t_min\[usec\]  *t_max\[usec\]  *t_typical\[usec\]  *t_avg\[usec\]  *t_stdev\[usec\]  *99% percentile\[usec\]  *99.9% percentile\[usec\]"
  for s in 2 64 2048 65536; do expect_in out "^ $s  *100  *[0-9.]* .*  data ok$"; done
  # Four ranks make two pairs, measured at once (bw as JSON).
  "$run" -n 4 --no-prefix -- "$bw" "${flags[@]}" -b 8 -e 64K -f 8 -n 100 -t 8 --check --json >"$tmp/json" 2>"$tmp/err"; rc=$?
  expect_rc 0 "bw 4 ranks"
  python3 "$here/check_perf_json.py" bw "$tmp/json" 8,64,512,4096,32768 >"$tmp/verdict" || fail "$(cat "$tmp/verdict")"
  grep -q '"pairs": 2' "$tmp/json" || fail "4 ranks should make 2 pairs"
  ;;
server-client)
  # perftest style: the server waits, the client names it; the client's flags rule.
  for tool in "$bw" "$lat"; do
    serve_and_connect server client "$tool" "${flags[@]}" -- -- -s 4K -n 100 --check
    expect_rc 0 "client of $tool"
    rc=$src; expect_rc 0 "server of $tool"
    expect_in server "Waiting for client to connect"
    for f in server client; do
      expect_in $f "^ 4096  *100 .*data ok$"
      expect_in $f "Mode *: $f"
    done
  done
  ;;
unreachable)
  p=$(port)
  start=$(date +%s)
  "$bw" "${flags[@]}" -p "$p" --timeout 3 127.0.0.1 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1 "unreachable server"
  expect_in err "could not connect to the rendezvous store at 127.0.0.1:$p"
  [ $(($(date +%s) - start)) -lt 15 ] || fail "took too long to give up"
  # A server nobody connects to gives up as well, naming where it listened.
  "$lat" "${flags[@]}" -p "$p" --bind 127.0.0.1 --timeout 2 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1 "server without client"
  expect_in err "no client connected to 127.0.0.1:$p within 2 s"
  ;;
mismatch)
  serve_and_connect server client "$bw" "${flags[@]}" -- -n 300 -- -n 200
  expect_rc 1 "client with other -n"
  rc=$src; expect_rc 1 "server with other -n"
  expect_in server.err "the server was started with iters=300 but the client asked for iters=200"
  expect_in client.err "the server was started with iters=300 but the client asked for iters=200"
  # Launched ranks with different flags: every rank names the difference.
  "$run" -n 2 -- sh -c 'exec "$0" "$@" -n $((100 + RDMACOLL_RANK))' "$lat" "${flags[@]}" \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1 "launched ranks with different -n"
  expect_in err "iters=100 on rank 0 but iters=101 on rank 1"
  ;;
odd-ranks)
  "$run" -n 3 -- "$bw" "${flags[@]}" -n 10 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1 "3 ranks"
  expect_in err "the world size must be even"
  ;;
missing-device)
  "$run" -n 2 -- "$bw" --transport verbs -d nosuchdev0 -n 10 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1 "missing device"
  expect_in err "nosuchdev0"
  if [ "$on_rdma" = rdma ]; then expect_in err "$dev"; fi  # lists what exists
  ;;
*) echo "unknown case $case_"; exit 2 ;;
esac
echo PASS
