#!/usr/bin/env bash
# Tests of rdmacoll-run --link: ranks in their own network namespaces behind tbf-limited veth
# links. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2 and python3; skips without root.
# usage: link_test.sh CASE RDMACOLL_RUN BUILD_DIR
#   CASE: env | throttle | cleanup | allreduce | compress-auto
# Exit 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
set -u
case_=$1 run=$2 build=$3
unset RDMACOLL_RANK RDMACOLL_WORLD_SIZE RDMACOLL_ADDR RDMACOLL_TRANSPORT RDMACOLL_LINK UCX_TLS UCX_NET_DEVICES \
      OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE SLURM_PROCID SLURM_NTASKS RANK WORLD_SIZE
[ "$(id -u)" = 0 ] || { echo "SKIP: --link needs root (network namespaces, veth, tc)"; exit 77; }
for tool in ip tc python3; do
  command -v $tool >/dev/null || { echo "FAIL: $tool not found (install iproute2 / python3)"; exit 1; }
done
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
marker=40.$$$(date +%N)  # a sleep duration nobody else uses, for pgrep -f

fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; cat "$tmp/err"; exit 1; }
expect_rc() { [ "$rc" = "$1" ] || fail "exit status $rc, expected $1"; }
expect_out() { grep -q -e "$2" "$tmp/$1" || fail "no line matching '$2' in $1"; }
# Namespaces and host-side interfaces of the launcher with pid $1 (its names carry its pid).
leftovers() { { ip netns list | grep "^rdmacoll-$1-"; ip -o link | grep -o " rc$1[a-z][0-9]*"; } 2>/dev/null; }
expect_clean() {
  [ -z "$(leftovers "$1")" ] || fail "launcher $1 left behind: $(leftovers "$1" | tr '\n' ' ')"
  for _ in $(seq 10); do
    pgrep -f "sleep $marker" >/dev/null || return 0
    sleep 0.2
  done
  fail "processes left behind: $(pgrep -af "sleep $marker")"
}
# Starts the launcher in the background ($lpid) with ranks that say "ready" and sleep; waits
# until both ranks are up (their namespaces exist then).
start_sleepers() {
  "$run" "$@" -- sh -c 'echo ready; exec sleep '"$marker" >"$tmp/out" 2>"$tmp/err" &
  lpid=$!
  for _ in $(seq 100); do [ "$(grep -c ready "$tmp/out")" = 2 ] && break; sleep 0.1; done
  [ "$(grep -c ready "$tmp/out")" = 2 ] || fail "ranks not up after 10 s"
  [ "$(ip netns list | grep -c "^rdmacoll-$lpid-")" = 3 ] || fail "expected 3 namespaces of launcher $lpid: $(ip netns list)"
}

# TCP between rank 0 and rank 1 over the link: "transfer BYTES" or "pingpong BYTES".
peer=$(dirname "$0")/link_peer.py

case $case_ in
env)
  host_ns=$(readlink /proc/self/ns/net)
  "$run" -n 2 --link 100mbit -- sh -c 'echo "ns=$(readlink /proc/self/ns/net) link=$RDMACOLL_LINK tls=$UCX_TLS dev=$UCX_NET_DEVICES transport=$RDMACOLL_TRANSPORT addr=$RDMACOLL_ADDR"
    ip -4 -o addr show | awk "{print \"addr\", \$2, \$4}"
    ls /sys/class/net | tr "\n" " " | sed "s/^/sysfs /"; echo
    tc qdisc show dev "$UCX_NET_DEVICES"
    python3 "$0" transfer 1000' "$peer" >"$tmp/out" 2>"$tmp/err" & lpid=$!
  wait $lpid; rc=$?
  expect_rc 0
  for r in 0 1; do
    expect_out out "^\[rank $r\] ns=net:\[[0-9]*\] link=100mbit tls=tcp,self dev=rc${lpid}r$r transport=ucx addr=10\.77\.0\.1:29500\$"
    expect_out out "^\[rank $r\] addr lo 127\.0\.0\.1/8\$"
    expect_out out "^\[rank $r\] addr rc${lpid}r$r 10\.77\.0\.$((r + 1))/24\$"
    expect_out out "^\[rank $r\] sysfs .*rc${lpid}r$r"
    expect_out out "^\[rank $r\] qdisc tbf .* rate 100Mbit burst 302[0-9]b lat 50ms"  # tc prints 3025b for 3028
  done
  [ "$(grep -c "addr rc" "$tmp/out")" = 2 ] || fail "a rank sees more than its own link"
  # Two namespaces, neither the host's.
  nss=$(sed -n 's/.* ns=\(net:\[[0-9]*\]\).*/\1/p' "$tmp/out" | sort -u)
  [ "$(echo "$nss" | wc -l)" = 2 ] || fail "ranks share a network namespace: $nss"
  echo "$nss" | grep -qxF "$host_ns" && fail "a rank runs in the host's network namespace"
  expect_out out "^\[rank 0\] received 1000 bytes"
  expect_clean $lpid
  # What the user set is kept; a UCX_TLS that can bypass the link is warned about.
  UCX_TLS=sm,tcp,self RDMACOLL_TRANSPORT=verbs "$run" -n 1 --link 1gbit --link-subnet 10.199.3.0/24 -- \
    sh -c 'echo "tls=$UCX_TLS transport=$RDMACOLL_TRANSPORT addr=$RDMACOLL_ADDR"' >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  expect_out out "^\[rank 0\] tls=sm,tcp,self transport=verbs addr=10\.199\.3\.1:29500\$"
  expect_out err "^rdmacoll-run: warning: UCX_TLS=sm,tcp,self is kept, but 'sm' may carry traffic past the --link limit"
  ;;
throttle)
  # 4 MB over TCP at 50mbit takes ~0.7 s; without the limit, well under 0.1 s.
  "$run" -n 2 --link 50mbit --timeout 30 -- python3 "$peer" transfer 4000000 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  mbit=$(sed -n 's/^\[rank 0\] received 4000000 bytes, Mbit\/s //p' "$tmp/out")
  echo "TCP over a 50mbit link: $mbit Mbit/s"
  awk -v m="$mbit" 'BEGIN { exit !(m > 15 && m < 75) }' || fail "TCP got $mbit Mbit/s over a 50mbit link (expected 15-75)"
  # A message smaller than a generous tbf burst must still take its time on the wire: 16 KiB
  # (with headers ~17.1 KB) at 50mbit is 2.7 ms; through a 64 KB burst it would take ~0.2 ms.
  "$run" -n 2 --link 50mbit --timeout 30 -- python3 "$peer" pingpong 16384 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  us=$(sed -n 's/^\[rank 1\] round trip us //p' "$tmp/out")
  echo "16 KiB message and 1-byte answer over a 50mbit link: $us us (2740 us on the wire)"
  awk -v u="$us" 'BEGIN { exit !(u > 1370 && u < 20000) }' || fail "16 KiB round trip $us us at 50mbit (expected 1370-20000)"
  # ... and does with --link-burst 65536, which shows the option reaches tbf.
  "$run" -n 2 --link 50mbit --link-burst 65536 --timeout 30 -- python3 "$peer" pingpong 16384 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  us=$(sed -n 's/^\[rank 1\] round trip us //p' "$tmp/out")
  echo "the same with --link-burst 65536: $us us"
  awk -v u="$us" 'BEGIN { exit !(u > 0 && u < 1370) }' || fail "16 KiB round trip $us us at 50mbit with a 64 KiB burst (expected < 1370)"
  # rdmacoll's own UCX transport over the link (shared memory would give GB/s): 8 MiB of 1 MiB sends.
  "$run" -n 2 --link 50mbit --timeout 30 -- "$build/tools/rdmacoll-bw" --transport ucx -o send -s 1M -n 8 -w 1 -t 2 -J \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  mib=$(sed 's/^\[rank 0\] //' "$tmp/out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["bw_average"])') ||
    fail "no JSON result from rdmacoll-bw"
  echo "rdmacoll-bw send over a 50mbit link: $mib MiB/s = $(awk -v m="$mib" 'BEGIN { printf "%.2f", m * 8 * 1.048576 }') Mbit/s"
  # 50 Mbit/s = 5.96 MiB/s.
  awk -v m="$mib" 'BEGIN { exit !(m > 0.3 * 5.96 && m < 1.5 * 5.96) }' ||
    fail "rdmacoll-bw got $mib MiB/s over a 50mbit link (5.96 MiB/s; expected 0.3x to 1.5x)"
  ;;
cleanup)
  for args in "--link 100mbits" "--link fast" "--link 1kbit" "--link 100mbit --addr 127.0.0.1:1" \
              "--link 100mbit --link-subnet 10.1.2.3/24" "--link-subnet 10.1.2.0/24" "--link 1gbit --link-burst 1000" \
              "--link-burst 5000"; do
    # shellcheck disable=SC2086  # word splitting is the point
    "$run" -n 2 $args -- true >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ "$rc" = 2 ] || fail "'rdmacoll-run -n 2 $args' exited $rc, expected 2"
    expect_out err "^usage: rdmacoll-run"
  done
  expect_out err "^rdmacoll-run: --link-burst needs --link\$"
  "$run" -n 2 --link 100mbits -- true >"$tmp/out" 2>"$tmp/err"
  expect_out err "^rdmacoll-run: bad --link rate '100mbits': unknown unit 'mbits'; expected a number and one of tc's units"
  # Without the capabilities: exit 2 naming them, before anything is built.
  setpriv --inh-caps=-all --bounding-set=-net_admin,-sys_admin -- "$run" -n 2 --link 100mbit -- true \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 2
  expect_out err "lacks CAP_NET_ADMIN and CAP_SYS_ADMIN. Run it as root"
  # A normal run, a failing rank and --timeout remove everything.
  "$run" -n 2 --link 100mbit -- true >"$tmp/out" 2>"$tmp/err" & lpid=$!
  wait $lpid; rc=$?
  expect_rc 0
  expect_clean $lpid
  "$run" -n 2 --link 100mbit -- sh -c '[ "$RDMACOLL_RANK" = 1 ] && exit 3; sleep '"$marker" >"$tmp/out" 2>"$tmp/err" & lpid=$!
  wait $lpid; rc=$?
  expect_rc 1
  expect_out err "^rdmacoll-run: rank 1 failed first: exit status 3\$"
  expect_clean $lpid
  "$run" -n 2 --link 100mbit --timeout 1 -- sleep "$marker" >"$tmp/out" 2>"$tmp/err" & lpid=$!
  wait $lpid; rc=$?
  expect_rc 124
  expect_clean $lpid
  # SIGTERM to the launcher mid-run.
  start_sleepers -n 2 --link 100mbit
  kill -TERM $lpid
  wait $lpid; rc=$?
  expect_rc 143
  expect_clean $lpid
  # A launcher killed outright leaves its namespaces (its ranks die with it); the next run
  # removes them.
  start_sleepers -n 2 --link 100mbit
  kill -KILL $lpid
  wait $lpid 2>/dev/null
  dead=$lpid
  [ -n "$(leftovers $dead)" ] || fail "nothing left by a launcher killed with SIGKILL: the check below would prove nothing"
  "$run" -n 1 --link 100mbit -- true >"$tmp/out" 2>"$tmp/err" & lpid=$!
  wait $lpid; rc=$?
  expect_rc 0
  expect_out err "^rdmacoll-run: removed network namespace rdmacoll-$dead-hub, left by a launcher that is gone\$"
  expect_clean $dead
  expect_clean $lpid
  ;;
allreduce)
  "$run" -n 3 --link 1gbit --timeout 60 -- "$build/tools/rdmacoll-allreduce-perf" -b 8 -e 1M -f 16 -c 1 \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  expect_out out "^\[rank 0\] # Link: 1gbit per rank and direction (rdmacoll-run --link)$"
  expect_out out "^\[rank 0\] # Out of bounds values : 0 OK$"
  expect_out out "^\[rank 0\] # Transport: ucx tcp/rc[0-9]*r0"
  expect_out out "^\[rank 0\] .*1048576 "
  ;;
compress-auto)
  # --compress auto accepts on a slow link (it declines over shared memory: tests/tools), and
  # the bytes the transport counted shrink by int8's ratio.
  "$run" -n 2 --link 100mbit --timeout 120 --no-prefix -- "$build/tools/rdmacoll-allreduce-perf" -b 1M -e 1M \
    -n 1 -w 0 --compress auto -J >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  python3 - "$tmp/out" <<'PY' || fail "--compress auto on a 100mbit link"
import json, sys
row = json.load(open(sys.argv[1]))["rows"][0]
for place in ("out_of_place", "in_place"):
    p = row[place]
    assert p["compressed"] is True, f"{place}: auto declined to compress on a 100mbit link"
    assert 3.5 < p["compression_ratio"] < 4.1, f"{place}: int8 ratio {p['compression_ratio']}"
    assert p["relerr"] < 0.05, f"{place}: relerr {p['relerr']}"
PY
  ;;
*)
  echo "unknown case '$case_'"; exit 1
  ;;
esac
echo "PASS: $case_"
