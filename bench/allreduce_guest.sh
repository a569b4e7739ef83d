#!/usr/bin/env bash
# Inside one soft-RoCE guest (run by bench/allreduce_compare.sh through tests/guest/rdmacoll-guest):
# in the same boot, on the same rxe0, for each size
#   ours_verbs   2 ranks of rdmacoll-allreduce-perf --transport verbs under rdmacoll-run, both on rxe0
#   ib_write_bw  perftest's RDMA WRITE bandwidth, server and client in this guest on rxe0
#                (64 KiB and up: the bandwidth goal compares against it). rxe under TCG drops
#                packets behind deep send queues, so its TX depth is what served it best in a
#                probe (one boot, 2026-11-28): -t 8 below 1 MiB, -t 1 from 1 MiB (16 MiB: 26 MB/s
#                at -t 1, 19 at -t 2 and -t 8; 1 MiB: 39, 40 and 29).
#   mpi_tcp      mpi_allreduce_perf under mpirun --mca pml ob1 --mca btl self,tcp on lo
#   gloo_ring    gloo_allreduce_perf --algo ring, TCP on 127.0.0.1
# Writes each run's output to OUT_DIR/IMPL.2.SIZE.out and OUT_DIR/ib_write_bw.SIZE.out (the
# host's compare script reads them) and prints one line per run: M IMPL SIZE ok|FAILED.
# usage: allreduce_guest.sh BUILD_DIR OUT_DIR OURS_TOOL "SIZES" [quick]
set -uo pipefail
BUILD=$1 OUT=$2 OURS=$3 SIZES=$4 QUICK=${5:-}
DEV=${RXE_DEVICE:-rxe0}
RUN=$BUILD/tools/rdmacoll-run MPI_PEER=$BUILD/bench/mpi_allreduce_perf GLOO_PEER=$BUILD/bench/gloo_allreduce_perf
PORT=18700
export RDMACOLL_TIMEOUT=120
mkdir -p /dev/shm /run/tmp/store 2>/dev/null; mountpoint -q /dev/shm || mount -t tmpfs shm /dev/shm 2>/dev/null
say() { echo "allreduce_guest: $*"; }

# Calls per size: rxe under TCG moves ~40 MiB/s, so a 16 MiB allreduce takes about a second;
# an 8-byte one takes ~0.1 ms.
iters() {
  local n
  case $1 in
    8) n=1000 ;;  # ~0.1 s: enough calls that a stall of the emulated CPUs does not make the mean
    65536) n=20 ;;
    1048576) n=5 ;;
    *) n=3 ;;
  esac
  [ -n "$QUICK" ] && n=$(( n / 4 > 1 ? n / 4 : 1 ))
  echo "$n"
}

note() {  # IMPL SIZE FILE RC START_SECONDS
  local took="$((SECONDS - $5)) s"
  if [ "$4" = 0 ]; then echo "M $1 $2 ok, $took"; else echo "M $1 $2 FAILED (exit $4), $took"; tail -5 "$3" | sed 's/^/    | /'; fi
}

run_allreduce() {  # IMPL SIZE [ROUND]
  local impl=$1 s=$2 round=${3:-1} it; it=$(iters "$s")
  local flags=(-b "$s" -e "$s" -n "$it" -w $(( it / 5 > 1 ? it / 5 : 1 )) -c 1 -d float -o sum)
  local out=$OUT/$impl.2.$s.out start=$SECONDS
  [ "$round" -gt 1 ] && out=$OUT/$impl.2.$s.r$round.out
  case $impl in
    ours_verbs) RDMACOLL_IB_DEVICE=$DEV timeout 300 "$RUN" -n 2 --timeout 240 -- \
                  "$OURS" --transport verbs -z 1 "${flags[@]}" ;;  # blocking, as MPI_Allreduce
    mpi_tcp)    timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,tcp \
                  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$MPI_PEER" "${flags[@]}" ;;
    gloo_ring)  RDMACOLL_STORE_DIR=/run/tmp/store timeout 300 "$RUN" -n 2 --timeout 240 -- \
                  "$GLOO_PEER" --algo ring "${flags[@]}" ;;
  esac >"$out" 2>&1
  local rc=$?
  local what=$s; [ "$round" -gt 1 ] && what="$s (round $round)"
  note "$impl" "$what" "$out" $rc "$start"
}

# Server and client of ib_write_bw both here: rxe0 loops the traffic back. The client retries
# until the server listens; a server whose client gave up is stopped.
run_ib_write_bw() {  # SIZE [ROUND]
  local s=$1 round=${2:-1} n=1000 depth=8
  [ "$s" -ge 1048576 ] && n=100 depth=1
  [ "$s" -ge 16777216 ] && n=10
  [ -n "$QUICK" ] && n=$(( n / 4 > 5 ? n / 4 : 5 ))
  local out=$OUT/ib_write_bw.$s.out start=$SECONDS
  [ "$round" -gt 1 ] && out=$OUT/ib_write_bw.$s.r$round.out
  PORT=$((PORT + 1))
  local p=(ib_write_bw -d "$DEV" -x 1 -F -s "$s" -n "$n" -t "$depth" -p "$PORT")
  timeout 200 "${p[@]}" >/run/ib_write_bw.server 2>&1 &
  local spid=$! rc=1
  for _ in $(seq 1 40); do
    sleep 0.5
    timeout 200 "${p[@]}" 127.0.0.1 >"$out" 2>&1 && { rc=0; break; }
    grep -qiE "couldn't connect|unable to|connection refused|failed to connect" "$out" || break
  done
  for _ in $(seq 1 50); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
  kill $spid 2>/dev/null; wait $spid 2>/dev/null
  local what=$s; [ "$round" -gt 1 ] && what="$s (round $round)"
  note ib_write_bw "$what" "$out" $rc "$start"
}

say "$(nproc) vCPUs, $DEV, sizes $SIZES${QUICK:+ (quick)}"
start=$SECONDS
for s in $SIZES; do
  # 8 bytes: LAT_ROUNDS alternating rounds (default 5; the host reports each point's median);
  # under TCG a single run of either side moved 1.5-2x between runs.
  # 16 MiB (the bandwidth goal's size, against ib_write_bw): three rounds; a single run of
  # either moved by a third between boots and within one (0.66x-0.87x of ib_write_bw).
  rounds=1
  [ "$s" -lt 65536 ] && rounds=${LAT_ROUNDS:-5}
  [ "$s" = 16777216 ] && rounds=${BW_ROUNDS:-3}
  [ -n "$QUICK" ] && rounds=1
  for round in $(seq 1 $rounds); do
    run_allreduce ours_verbs "$s" "$round"
    [ "$s" -ge 65536 ] && run_ib_write_bw "$s" "$round"
    run_allreduce mpi_tcp "$s" "$round"
    run_allreduce gloo_ring "$s" "$round"
  done
done
say "done in $((SECONDS - start)) s"
exit 0
