#!/usr/bin/env bash
# rdmacoll-allreduce-perf against Open MPI's MPI_Allreduce and Gloo's allreduce, in one run, on
# the same float-sum sizes (8 B to 64 MiB), with the ratios per size and the goals of issue 5
# judged on the numbers. Each transport class pits ours against the peers on the same transport:
#   host, shared memory, 2 and 4 ranks:
#     ours_sm    rdmacoll over UCX shared memory (--transport ucx, UCX_TLS=sm,self)
#     mpi_sm     bench/peers/mpi_allreduce_perf, mpirun --mca pml ob1 --mca btl self,vader
#   host, TCP loopback, 2 and 4 ranks:
#     ours_tcp   rdmacoll over UCX TCP (UCX_TLS=tcp,self UCX_NET_DEVICES=lo)
#     mpi_tcp    mpirun --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include lo
#     gloo_*     bench/peers/gloo_allreduce_perf --algo ring | ring_chunked | halving_doubling,
#                Gloo's TCP transport on 127.0.0.1
#   guest (bench/allreduce_guest.sh in one soft-RoCE guest of 2 vCPUs), 2 ranks: ours over verbs
#     on rxe0, ib_write_bw on rxe0, Open MPI and Gloo ring over TCP on the guest's loopback.
# Every implementation makes blocking calls: ours with -z 1 (one call waited for before the next
# starts), as MPI_Allreduce and Gloo's allreduce are.
# Open MPI keeps its default binding (a core per rank at 2 ranks, none at 4 when oversubscribed);
# rdmacoll-run binds nothing. ob1 is also Open MPI's default here (Debian's
# openmpi-mca-params.conf sets pml = ^ucx). On the host the runs alternate: for each size and
# rank count, every implementation runs, then all again (three rounds, seven at 8 bytes; each
# point is the median of its rounds), before the next point. Every run checks its result
# (-c 1). Keeps the tables, the goals, the command and every run's own output in
# bench/results/allreduce_compare.txt.
# usage: bench/allreduce_compare.sh [BUILD_DIR] [--quick] [--no-guest | --guest-only]
#   --quick       fewer sizes (host 8 B, 64 KiB, 4 MiB, 16 MiB; guest 8 B, 1 MiB, 16 MiB), a
#                 fifth of the calls (a quarter in the guest) and one round. Full run: about
#                 12-15 minutes.
#   --no-guest    the host only;  --guest-only  the guest only
#   RDMACOLL_ALLREDUCE_PERF=PATH  use another rdmacoll-allreduce-perf (default BUILD_DIR/tools/...)
#   ALLREDUCE_COMPARE_OUT=FILE    write there instead of bench/results/allreduce_compare.txt
#   ALLREDUCE_COMPARE_ROUNDS=N    alternating rounds per host point (default 3, 1 with --quick)
#   ALLREDUCE_COMPARE_LAT_ROUNDS=N  rounds of the 8-byte points, host and guest (default 7 on the
#                 host and 5 in the guest, 1 with --quick): their goals are ratios near their
#                 limits, and 4 ranks over TCP moved 35-70 us between runs of one algorithm
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build QUICK="" HOST=1 GUEST=1
args=("$@")
for a in "$@"; do
  case $a in
    --quick) QUICK=quick ;;
    --no-guest) GUEST= ;;
    --guest-only) HOST= ;;
    -h|--help) sed -n '2,31s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "allreduce_compare.sh: unknown option '$a'" >&2; exit 2 ;;
    *) BUILD=$(cd "$a" && pwd) || exit 2 ;;
  esac
done
[ -z "$HOST$GUEST" ] && { echo "allreduce_compare.sh: --no-guest and --guest-only leave nothing to run" >&2; exit 2; }
OUT=${ALLREDUCE_COMPARE_OUT:-$ROOT/bench/results/allreduce_compare.txt}
OURS=${RDMACOLL_ALLREDUCE_PERF:-$BUILD/tools/rdmacoll-allreduce-perf}
RUN=$BUILD/tools/rdmacoll-run
MPI_PEER=$BUILD/bench/mpi_allreduce_perf
GLOO_PEER=$BUILD/bench/gloo_allreduce_perf
PARSE=$ROOT/bench/parse_perf_rows.py
HARNESS=$ROOT/tests/guest/rdmacoll-guest

die() { echo "allreduce_compare.sh: $*" >&2; exit 1; }
[ -x "$OURS" ] || die "$OURS is missing: build rdmacoll-allreduce-perf first (cmake --build $BUILD --target rdmacoll-allreduce-perf)"
[ -x "$RUN" ] || die "$RUN is missing: build rdmacoll-run first (cmake --build $BUILD --target rdmacoll-run)"
[ -x "$MPI_PEER" ] || die "$MPI_PEER is missing: it is built only when CMake finds MPI (apt-get install libopenmpi-dev, then re-run cmake)"
[ -x "$GLOO_PEER" ] || die "$GLOO_PEER is missing: it is built only when CMake finds Gloo (apt-get install libgloo-dev, then re-run cmake)"
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"
command -v python3 >/dev/null || die "python3 not found"

RANKS="2 4"
SIZES="8 4096 65536 1048576 4194304 16777216 67108864"
[ -n "$QUICK" ] && SIZES="8 65536 4194304 16777216"
GUEST_SIZES="8 65536 1048576 16777216"
[ -n "$QUICK" ] && GUEST_SIZES="8 1048576 16777216"
IMPLS="ours_sm mpi_sm ours_tcp mpi_tcp gloo_ring gloo_ring_chunked gloo_halving_doubling"
# Rounds per host point: every implementation runs, then all of them again: this VM's loopback
# moved 2x between runs minutes apart (Open MPI over TCP, 2 ranks, 4 MiB: 1.1-2.8 GB/s), for
# every implementation alike, so each point is the median of its rounds.
ROUNDS=3
[ -n "$QUICK" ] && ROUNDS=1
ROUNDS=${ALLREDUCE_COMPARE_ROUNDS:-$ROUNDS}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ALLREDUCE_COMPARE_ROUNDS='$ROUNDS' is not a positive number"
LAT_ROUNDS=7
[ -n "$QUICK" ] && LAT_ROUNDS=1
LAT_ROUNDS=${ALLREDUCE_COMPARE_LAT_ROUNDS:-$LAT_ROUNDS}
[[ "$LAT_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ALLREDUCE_COMPARE_LAT_ROUNDS='$LAT_ROUNDS' is not a positive number"
GUEST_LAT_ROUNDS=5
[ -n "$QUICK" ] && GUEST_LAT_ROUNDS=1
GUEST_LAT_ROUNDS=${ALLREDUCE_COMPARE_LAT_ROUNDS:-$GUEST_LAT_ROUNDS}
# /var/tmp, not /tmp: the guest writes its results here (--writable), and the harness's guest
# covers /tmp with a tmpfs.
runs=$(mktemp -d /var/tmp/allreduce_compare.XXXXXX) || exit 1
trap 'rm -rf "$runs"' EXIT
mkdir "$runs/store" "$runs/guest"

# Timed calls per size (warm-up: a fifth, at least 2), fewer for large messages to keep a full
# run within minutes on a shared 2-core machine; --quick divides by 5.
iters_for() {
  local n=1000
  [ "$1" -ge 1048576 ] && n=100
  [ "$1" -ge 16777216 ] && n=20
  [ "$1" -ge 67108864 ] && n=10
  [ -n "$QUICK" ] && n=$(( n / 5 > 2 ? n / 5 : 2 ))
  echo "$n"
}
# The environment is reset per run: none of a launcher's or a transport's variables leak in.
clean_env=(env -u RDMACOLL_RANK -u RDMACOLL_WORLD_SIZE -u RDMACOLL_ADDR -u OMPI_COMM_WORLD_RANK
           -u OMPI_COMM_WORLD_SIZE -u UCX_TLS -u UCX_NET_DEVICES -u RDMACOLL_TRANSPORT -u RDMACOLL_ALGO)
# --allow-run-as-root: containers and CI run as root (as tests/launch does).
mpi=(timeout 300 mpirun --allow-run-as-root --oversubscribe --mca pml ob1)
run_one() {  # IMPL RANKS SIZE ROUND
  local impl=$1 n=$2 s=$3 round=$4 it; it=$(iters_for "$s")
  local flags=(-b "$s" -e "$s" -n "$it" -w $(( it / 5 > 2 ? it / 5 : 2 )) -c 1 -d float -o sum)
  local out=$runs/$impl.$n.$s.out
  [ "$round" -gt 1 ] && out=$runs/$impl.$n.$s.r$round.out
  case $impl in
    ours_sm)  "${clean_env[@]}" UCX_TLS=sm,self \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$OURS" --transport ucx -z 1 "${flags[@]}" ;;
    ours_tcp) "${clean_env[@]}" UCX_TLS=tcp,self UCX_NET_DEVICES=lo \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$OURS" --transport ucx -z 1 "${flags[@]}" ;;
    mpi_sm)   "${clean_env[@]}" "${mpi[@]}" -np "$n" --mca btl self,vader "$MPI_PEER" "${flags[@]}" ;;
    mpi_tcp)  "${clean_env[@]}" "${mpi[@]}" -np "$n" --mca btl self,tcp --mca btl_tcp_if_include lo \
                "$MPI_PEER" "${flags[@]}" ;;
    gloo_*)   "${clean_env[@]}" RDMACOLL_STORE_DIR="$runs/store" \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$GLOO_PEER" --algo "${impl#gloo_}" "${flags[@]}" ;;
  esac >"$out" 2>&1
  local rc=$?
  local t; t=$(python3 "$PARSE" rows "$out" 2>/dev/null | python3 -c '
import json, sys
for l in sys.stdin:
    if l.startswith("{"): print(json.loads(l)["out_of_place"]["time_us"]); break')
  local what="FAILED (exit $rc, see the results file)"
  [ -n "$t" ] && what="$t us per call"
  printf '%-22s %d ranks %9s B, round %d: %s\n' "$impl" "$n" "$s" "$round" "$what" | tee -a "$runs/rounds.log" >&2
  [ "$rc" = 0 ] || echo "# exit status $rc" >>"$out"
}

start=$(date +%s) load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$HOST" ]; then
  for s in $SIZES; do
    for n in $RANKS; do
      rounds=$ROUNDS
      [ "$s" = 8 ] && rounds=$LAT_ROUNDS
      for round in $(seq 1 "$rounds"); do
        for impl in $IMPLS; do run_one "$impl" "$n" "$s" "$round"; done
      done
    done
  done
fi
host_end=$(date +%s)

guest_rc=
if [ -n "$GUEST" ]; then
  # One boot of 2 vCPUs for everything in the guest; it writes each run's output to $runs/guest.
  # Its progress lines are shown as they come; the whole console goes to the results file.
  "$HARNESS" --guests 1 --cpus 2 --timeout 900 --writable "$runs/guest" -- \
    env LAT_ROUNDS="$GUEST_LAT_ROUNDS" bash "$ROOT/bench/allreduce_guest.sh" "$BUILD" "$runs/guest" "$OURS" "$GUEST_SIZES" $QUICK 2>&1 | tee "$runs/guest.console" |
    grep --line-buffered -E '^(M |allreduce_guest|rdmacoll-guest)' | sed -u 's/^/[guest] /' >&2
  guest_rc=${PIPESTATUS[0]}
  [ "$guest_rc" = 125 ] && echo "allreduce_compare.sh: the guest could not start (exit 125): no guest part" >&2
fi
end=$(date +%s)

sizes_csv=$(tr ' ' ',' <<<"$SIZES") ranks_csv=$(tr ' ' ',' <<<"${HOST:+$RANKS}")
guest_args=()
[ -n "$GUEST" ] && guest_args=(--guest-dir "$runs/guest" --guest-sizes "$(tr ' ' ',' <<<"$GUEST_SIZES")")
table=$(python3 "$PARSE" compare "$runs" --sizes "$sizes_csv" --ranks "$ranks_csv" "${guest_args[@]}"); ok=$?
cmd="bench/allreduce_compare.sh${args[*]:+ ${args[*]}}"
mkdir -p "$(dirname "$OUT")"
{
  echo "# $cmd"
  echo "# on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ); host part $((host_end - start)) s, guest part $((end - host_end)) s${guest_rc:+ (harness exit $guest_rc)}"
  echo "# load average (1, 5, 15 min) at the start: $load_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# float sum, -c 1; time per call is the average over ranks of each rank's mean; busbw = algbw * 2(n-1)/n."
  echo "# host: $ROUNDS alternating rounds per point ($LAT_ROUNDS at 8 B; every implementation, then again), each point the"
  echo "#   median of its rounds; guest: 8 B in $GUEST_LAT_ROUNDS rounds, 16 MiB (with ib_write_bw) in $([ -n "$QUICK" ] && echo 1 || echo 3), other sizes once."
  echo "# ours: rdmacoll-allreduce-perf -z 1 (blocking calls, as MPI_Allreduce and Gloo; its default algorithm choice) under rdmacoll-run, unbound."
  echo "#   shared memory: --transport ucx, UCX_TLS=sm,self; TCP: --transport ucx, UCX_TLS=tcp,self UCX_NET_DEVICES=lo."
  echo "# Open MPI $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}'): mpirun --mca pml ob1, its default binding (a core per rank"
  echo "#   at 2 ranks, none at 4); shared memory: --mca btl self,vader; TCP: --mca btl self,tcp --mca btl_tcp_if_include lo."
  echo "# Gloo: gloo_allreduce_perf --algo ring | ring_chunked | halving_doubling over its TCP transport on 127.0.0.1,"
  echo "#   under rdmacoll-run; 'best Gloo' is the fastest of the three at each point."
  if [ -n "$GUEST" ]; then
    echo "# guest: one soft-RoCE guest (QEMU TCG, 2 vCPUs; absolute numbers are slow, compare within the boot), 2 ranks:"
    echo "#   ours --transport verbs on rxe0 (RDMACOLL_IB_DEVICE=rxe0); ib_write_bw -d rxe0 -F client and server on rxe0"
    echo "#   (-t 8 below 1 MiB, -t 1 from 1 MiB); Open MPI btl self,tcp on lo; Gloo ring on 127.0.0.1."
  fi
  echo
  echo "$table"
  echo
  echo "---- each run's own output -------------------------------------------------------------------"
  if [ -n "$HOST" ]; then
    echo
    echo "== every round's time per call (out of place; the output of round 1 follows in full)"
    cat "$runs/rounds.log"
    for s in $SIZES; do
      for n in $RANKS; do
        for impl in $IMPLS; do
          echo
          echo "== $impl, $n ranks, $s B"
          cat "$runs/$impl.$n.$s.out"
        done
      done
    done
  fi
  if [ -n "$GUEST" ]; then
    echo
    echo "== guest console (bench/allreduce_guest.sh; harness exit $guest_rc)"
    cat "$runs/guest.console"
    for f in "$runs"/guest/*.out; do
      [ -e "$f" ] || continue
      echo
      echo "== guest: $(basename "$f" .out)"
      cat "$f"
    done
  fi
  echo
  echo "(command: $cmd; written to ${OUT#"$ROOT"/})"
} >"$OUT"
sed -n '1,/^---- each run/p' "$OUT" | sed '$d'
echo "(every run's output: $OUT)"
[ -n "$GUEST" ] && [ "$guest_rc" != 0 ] && ok=1
exit $(( ok == 0 ? 0 : 1 ))
