#!/usr/bin/env bash
# Inside the soft-RoCE guest(s) (run by bench/perftest_compare.sh through tests/guest/rdmacoll-guest):
# for each size, perftest / ucx_perftest and then rdmacoll-bw / rdmacoll-lat with the same flags,
# on the same rxe device, alternating. Prints one line per measurement on the measuring side:
#   M <metric> <size> <theirs|ours> <value>
# One guest: server and client both run here (rxe0 loops back). Two guests: guest 1 serves,
# guest 2 is the client (the server's address is guest 1's).
# The M lines also go to RESULTS_DIR/m.<guest index> (shared writable by the caller): the
# console under a loaded host can drop characters, which garbled a run's numbers once.
# usage: perftest_guest.sh BUILD_DIR RESULTS_DIR [quick]
set -uo pipefail
BUILD=$1 RESULTS_DIR=$2 QUICK=${3:-}
DEV=${RXE_DEVICE:-rxe0} GID=1
COUNT=${RXE_GUEST_COUNT:-1} INDEX=${RXE_GUEST_INDEX:-0}
SERVER_ADDR=127.0.0.1
[ "$COUNT" = 2 ] && SERVER_ADDR=${RXE_GUEST_ADDRS%% *}
BW=$BUILD/tools/rdmacoll-bw LAT=$BUILD/tools/rdmacoll-lat
SIZES="8 4096 65536 1048576"
PORT=18600
export RDMACOLL_TIMEOUT=60
mkdir -p /dev/shm 2>/dev/null; mountpoint -q /dev/shm || mount -t tmpfs shm /dev/shm 2>/dev/null

M_FILE=$RESULTS_DIR/m.$INDEX
: >"$M_FILE"
emit() { echo "M $*"; echo "M $*" >>"$M_FILE"; }

# Iterations per size: enough for a stable median under TCG, few enough to finish in minutes.
# Bandwidth runs at 64 KiB and 1 MiB last a few seconds each (one guest moves ~55 MiB/s, two
# ~15): shorter ones swung 2x from run to run on the two guests' lossy link.
iters() {  # KIND SIZE
  local k=$1 s=$2 scale=1
  [ "$COUNT" = 2 ] && scale=4  # the guests' UDP link is slower still
  [ -n "$QUICK" ] && scale=$((scale * 5))
  case $k:$s in
    # 8 B: 20000 (~1 s). With 5000 (~0.2 s) ucx_perftest's UCT put_bw read 0.07-0.16 MiB/s in
    # four rounds of a probe and 0.30-0.34 in the benchmark run before (2026-12-01, one guest);
    # with 20000, 0.10-0.18 in eight rounds over two boots, ours 0.16-0.18.
    bw:8) echo $((20000 / scale)) ;;
    bw:4096) echo $((5000 / scale)) ;;
    bw:65536) echo $((4000 / scale)) ;;
    bw:*) echo $((400 / scale)) ;;
    lat:8|lat:4096) echo $((2000 / scale)) ;;
    lat:65536) echo $((500 / scale)) ;;
    lat:*) echo $((100 / scale)) ;;  # 1 MiB: 100 round trips of ~40 ms (one guest), ~110 ms (two)
  esac
}

# A server whose client gave up would wait forever: give it a few seconds after its client.
reap_server() {
  [ -n "$1" ] || return 0
  if [ "$COUNT" = 1 ]; then
    for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
  return 0
}

# run_pair METRIC SIZE WHO FIELD SERVER_CMD... -- CLIENT_ARGS...: the client is SERVER_CMD plus
# CLIENT_ARGS plus the server's address; FIELD is the column of the result row to report.
run_pair() {
  local metric=$1 size=$2 who=$3 field=$4; shift 4
  local server=() client_extra=()
  while [ "$1" != -- ]; do server+=("$1"); shift; done; shift
  client_extra=("$@")
  PORT=$((PORT + 1))
  local out=/run/bench.out
  if [ "$COUNT" = 1 ] || [ "$INDEX" = 0 ]; then
    timeout 200 "${server[@]}" -p $PORT >/run/bench.server 2>&1 &
    local spid=$!
  fi
  if [ "$COUNT" = 1 ] || [ "$INDEX" = 1 ]; then
    local ok=0
    for _ in $(seq 1 40); do  # perftest clients do not retry: wait for the server to listen
      sleep 0.5
      if timeout 300 "${server[@]}" "${client_extra[@]}" -p $PORT "$SERVER_ADDR" >$out 2>&1; then ok=1; break; fi
      grep -qiE "usage|invalid" $out && break
      grep -qiE "couldn't connect|unable to|connection refused|failed to connect|Connection refused" $out || break
    done
    local row
    row=$(awk -v s="$size" '$1 == s && NF >= 5 { print; exit }' $out)
    if [ $ok = 1 ] && [ -n "$row" ]; then
      emit "$metric $size $who $(awk -v f="$field" '{ print $f }' <<<"$row")"
    else
      emit "$metric $size $who FAILED"; sed 's/^/    | /' $out | tail -15
    fi
  fi
  reap_server "${spid:-}"
  return 0
}

# ucx_perftest at the UCT level (its UCP level needs UD, which fails on rxe: SOFTROCE.md).
run_ucx_perftest() {  # METRIC SIZE TEST LAYOUT ITERS
  local metric=$1 size=$2 test=$3 layout=$4 n=$5
  PORT=$((PORT + 1))
  local out=/run/bench.out
  if [ "$COUNT" = 1 ] || [ "$INDEX" = 0 ]; then
    timeout 200 ucx_perftest -p $PORT >/run/bench.server 2>&1 &
    local spid=$!
  fi
  if [ "$COUNT" = 1 ] || [ "$INDEX" = 1 ]; then
    local ok=0
    for _ in $(seq 1 40); do
      sleep 0.5
      if timeout 300 ucx_perftest "$SERVER_ADDR" -p $PORT -t "$test" -x rc_verbs -d "$DEV:1" -D "$layout" -s "$size" \
           -n "$n" >$out 2>&1; then ok=1; break; fi
      grep -qiE "usage|invalid" $out && break
      grep -qiE "connect|refused" $out || break
    done
    local final
    final=$(grep '^Final:' $out | head -1)
    if [ $ok = 1 ] && [ -n "$final" ]; then
      # Final: iters typical average overall bw_average bw_overall rate_average rate_overall
      case $metric in
        *bw*) emit "$metric $size theirs $(awk '{ print $6 }' <<<"$final")" ;;
        *) emit "$metric $size theirs $(awk '{ print $3 }' <<<"$final")" ;;
      esac
    else
      emit "$metric $size theirs FAILED"; sed 's/^/    | /' $out | tail -15
    fi
  fi
  reap_server "${spid:-}"
  return 0
}

# Every measurement is three alternating rounds (theirs, ours, theirs, ours, ...), of which
# perftest_compare.sh reports the medians: a single round moved by up to 1.5-2x from run to run,
# for perftest and for ours alike, with where the guest happened to run them (UCX put bandwidth
# at 4 KiB read 0.52x in one round and 1.0-1.1x in the next ones of another boot).
# Two guests (one vCPU each, over QEMU's UDP link) swing more: five rounds there (one 8-byte
# WRITE latency run by hand, 2026-11-30, three rounds each: perftest 282/298/294 us, ours
# 241/274/307; the 1 MiB round trips moved 36-85 ms within a round for both).
# The cheap points (8 B and 4 KiB: a second or less a run) get seven rounds: their round trips
# are bimodal under TCG, for perftest and ours alike (one guest, 2026-12-01, eight alternating
# rounds of 8-byte WRITE latency: perftest 11.9-12.1 us in five and 16.1-17.7 in three, ours
# 12.2-12.6 in five and 17.7-19.0 in three; paired ratios 0.75-1.60, median 1.02), so with three
# rounds a pair or two that straddle the modes decide the median.
ROUNDS=3
[ "$COUNT" = 2 ] && ROUNDS=5
SMALL_ROUNDS=7
[ -n "$QUICK" ] && SMALL_ROUNDS=$ROUNDS
# Bandwidth gets seven rounds at every size (a few seconds a run): at 64 KiB a single round in
# one guest fell to 29 MiB/s among 44-48 for the same tool in the same boot (2026-12-02, 06:45Z,
# four alternating rounds of the tool built before and after a change), and with three rounds
# the one-guest 64 KiB/1 MiB WRITE ratio read 1.01x/0.97x in one full run and 0.90x/0.93x in
# the next, hours apart with nothing else running.
rounds() {  # KIND SIZE
  if [ "$1" = bw ] || [ "$2" -le 4096 ]; then echo $SMALL_ROUNDS; else echo $ROUNDS; fi
}
P=(-d "$DEV" -x $GID -F)
V=(--transport verbs -d "$DEV" -x $GID)
for s in $SIZES; do
  n=$(iters bw "$s")
  for _ in $(seq 1 "$(rounds bw "$s")"); do
    run_pair verbs_write_bw "$s" theirs 4 ib_write_bw "${P[@]}" -s "$s" -n "$n" -t 16 --
    run_pair verbs_write_bw "$s" ours 4 "$BW" "${V[@]}" -s "$s" -n "$n" -t 16 --
  done
done
for s in $SIZES; do
  n=$(iters lat "$s")
  for _ in $(seq 1 "$(rounds lat "$s")"); do
    run_pair verbs_write_lat "$s" theirs 5 ib_write_lat "${P[@]}" -s "$s" -n "$n" --
    run_pair verbs_write_lat "$s" ours 5 "$LAT" "${V[@]}" -s "$s" -n "$n" --
    run_pair verbs_send_lat "$s" theirs 5 ib_send_lat "${P[@]}" -s "$s" -n "$n" --
    run_pair verbs_send_lat "$s" ours 5 "$LAT" "${V[@]}" --op send -s "$s" -n "$n" --
  done
done

# UCX: rc_verbs on the same device. Theirs at the UCT level, ours through UCP.
export UCX_TLS=rc_verbs,self UCX_NET_DEVICES=$DEV:1
U=(--transport ucx -d "$DEV")
for s in $SIZES; do
  n=$(iters bw "$s")
  layout=bcopy; [ "$s" -ge 65536 ] && layout=zcopy
  for _ in $(seq 1 "$(rounds bw "$s")"); do
    run_ucx_perftest ucx_put_bw "$s" put_bw $layout "$n"
    run_pair ucx_put_bw "$s" ours 4 "$BW" "${U[@]}" -s "$s" -n "$n" -t 16 --
  done
done
for s in $SIZES; do
  n=$(iters lat "$s")
  layout=short; [ "$s" -gt 64 ] && layout=bcopy; [ "$s" -ge 65536 ] && layout=zcopy
  for _ in $(seq 1 "$(rounds lat "$s")"); do
    run_ucx_perftest ucx_put_lat "$s" put_lat $layout "$n"
    run_pair ucx_put_lat "$s" ours 5 "$LAT" "${U[@]}" -s "$s" -n "$n" --
  done
done
