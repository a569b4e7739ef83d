#!/usr/bin/env bash
# rdmacoll-allreduce-perf against Open MPI's MPI_Allreduce and Gloo's allreduce on this host, in
# one run: 2 and 4 ranks, float sum, alternating the four size by size:
#   ours_sm   rdmacoll over UCX shared memory  (RDMACOLL_TRANSPORT=ucx UCX_TLS=sm,self)
#   ours_tcp  rdmacoll over UCX TCP loopback   (UCX_TLS=tcp,self UCX_NET_DEVICES=lo): TCP, as Gloo
#   mpi       bench/peers/mpi_allreduce_perf under mpirun --mca pml ob1 --mca btl self,vader
#             (ob1 is Open MPI's default here: Debian's openmpi-mca-params.conf sets pml = ^ucx),
#             with its default binding: one core per rank at 2 ranks, none at 4 (oversubscribed);
#             rdmacoll-run binds nothing. It matters: unbound, MPI's 2-rank runs were up to
#             several times slower on a loaded machine.
#   gloo      bench/peers/gloo_allreduce_perf --algo ring, TCP on 127.0.0.1
# Every run checks its result (-c 1). Prints busbw (out of place) and the ratios, then each
# rank's peak RSS at the largest size, and keeps the table and every run's own output in
# bench/results/allreduce_compare.txt.
# usage: bench/allreduce_compare.sh [BUILD_DIR] [--quick]
#   RDMACOLL_ALLREDUCE_PERF=PATH  use another rdmacoll-allreduce-perf (default BUILD_DIR/tools/...)
#   ALLREDUCE_COMPARE_OUT=FILE    write there instead of bench/results/allreduce_compare.txt
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build QUICK=
for a in "$@"; do
  case $a in
    --quick) QUICK=quick ;;
    -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "allreduce_compare.sh: unknown option '$a'" >&2; exit 2 ;;
    *) BUILD=$(cd "$a" && pwd) || exit 2 ;;
  esac
done
OUT=${ALLREDUCE_COMPARE_OUT:-$ROOT/bench/results/allreduce_compare.txt}
OURS=${RDMACOLL_ALLREDUCE_PERF:-$BUILD/tools/rdmacoll-allreduce-perf}
RUN=$BUILD/tools/rdmacoll-run
MPI_PEER=$BUILD/bench/mpi_allreduce_perf
GLOO_PEER=$BUILD/bench/gloo_allreduce_perf
PARSE=$ROOT/bench/parse_perf_rows.py

die() { echo "allreduce_compare.sh: $*" >&2; exit 1; }
[ -x "$OURS" ] || die "$OURS is missing: build rdmacoll-allreduce-perf first (cmake --build $BUILD --target rdmacoll-allreduce-perf)"
[ -x "$RUN" ] || die "$RUN is missing: build rdmacoll-run first (cmake --build $BUILD --target rdmacoll-run)"
[ -x "$MPI_PEER" ] || die "$MPI_PEER is missing: it is built only when CMake finds MPI (apt-get install libopenmpi-dev, then re-run cmake)"
[ -x "$GLOO_PEER" ] || die "$GLOO_PEER is missing: it is built only when CMake finds Gloo (apt-get install libgloo-dev, then re-run cmake)"
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"
command -v python3 >/dev/null || die "python3 not found"

RANKS="2 4"
SIZES="8 4096 65536 1048576 16777216 67108864"
[ -n "$QUICK" ] && SIZES="8 65536 1048576 67108864"
runs=$(mktemp -d /var/tmp/allreduce_compare.XXXXXX) || exit 1
trap 'rm -rf "$runs"' EXIT
mkdir "$runs/store"

# Timed calls per size (warm-up: a fifth, at least 2), fewer for large messages to keep a full
# run to a few minutes on a shared 2-core machine; --quick divides by 5.
iters_for() {
  local n=200
  [ "$1" -ge 1048576 ] && n=50
  [ "$1" -ge 16777216 ] && n=10
  [ -n "$QUICK" ] && n=$(( n / 5 > 2 ? n / 5 : 2 ))
  echo "$n"
}
# The environment is reset per run: none of a launcher's or a transport's variables leak in.
clean_env=(env -u RDMACOLL_RANK -u RDMACOLL_WORLD_SIZE -u RDMACOLL_ADDR -u OMPI_COMM_WORLD_RANK
           -u OMPI_COMM_WORLD_SIZE -u UCX_TLS -u UCX_NET_DEVICES -u RDMACOLL_TRANSPORT)
run_one() {  # IMPL RANKS SIZE
  local impl=$1 n=$2 s=$3 it; it=$(iters_for "$s")
  local flags=(-b "$s" -e "$s" -n "$it" -w $(( it / 5 > 2 ? it / 5 : 2 )) -c 1 -d float -o sum)
  local out=$runs/$impl.$n.$s.out
  case $impl in
    ours_sm)  "${clean_env[@]}" RDMACOLL_TRANSPORT=ucx UCX_TLS=sm,self \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$OURS" "${flags[@]}" ;;
    ours_tcp) "${clean_env[@]}" RDMACOLL_TRANSPORT=ucx UCX_TLS=tcp,self UCX_NET_DEVICES=lo \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$OURS" "${flags[@]}" ;;
    # --allow-run-as-root: containers and CI run as root (as tests/launch does).
    mpi)      "${clean_env[@]}" timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$n" \
                --mca pml ob1 --mca btl self,vader "$MPI_PEER" "${flags[@]}" ;;
    gloo)     "${clean_env[@]}" RDMACOLL_STORE_DIR="$runs/store" \
                timeout 600 "$RUN" -n "$n" --timeout 300 -- "$GLOO_PEER" --algo ring "${flags[@]}" ;;
  esac >"$out" 2>&1
  local rc=$?
  local bw; bw=$(python3 "$PARSE" rows "$out" 2>/dev/null | python3 -c '
import json, sys
for l in sys.stdin:
    if l.startswith("{"): print(json.loads(l)["out_of_place"]["busbw_gbs"]); break')
  printf '%-9s %d ranks %9s B: %s\n' "$impl" "$n" "$s" "${bw:-FAILED (exit $rc, see below)}" >&2
  [ "$rc" = 0 ] || echo "# exit status $rc" >>"$out"
}

for s in $SIZES; do
  for n in $RANKS; do
    for impl in ours_sm mpi ours_tcp gloo; do run_one "$impl" "$n" "$s"; done
  done
done

sizes_csv=$(tr ' ' ',' <<<"$SIZES") ranks_csv=$(tr ' ' ',' <<<"$RANKS")
table=$(python3 "$PARSE" compare "$runs" --sizes "$sizes_csv" --ranks "$ranks_csv"); ok=$?
mkdir -p "$(dirname "$OUT")"
{
  echo "# bench/allreduce_compare.sh${QUICK:+ --quick} on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# float sum, -c 1; time per call is the average over ranks of each rank's mean; busbw = algbw * 2(n-1)/n."
  echo "# ours: rdmacoll-allreduce-perf, RDMACOLL_TRANSPORT=ucx with UCX_TLS=sm,self (sm) or tcp,self on lo (tcp)."
  echo "# Open MPI $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}'): pml ob1, btl self,vader (shared memory), its default binding"
  echo "#   (a core per rank at 2 ranks, none at 4); ours and Gloo run unbound under rdmacoll-run."
  echo "# Gloo: gloo_allreduce_perf --algo ring, TCP on 127.0.0.1."
  echo
  echo "$table"
  echo
  echo "---- each run's own output -------------------------------------------------------------------"
  for s in $SIZES; do
    for n in $RANKS; do
      for impl in ours_sm mpi ours_tcp gloo; do
        echo
        echo "== $impl, $n ranks, $s B"
        cat "$runs/$impl.$n.$s.out"
      done
    done
  done
  echo
  echo "(command: bench/allreduce_compare.sh${QUICK:+ --quick}; written to ${OUT#"$ROOT"/})"
} >"$OUT"
sed -n '1,/^---- each run/p' "$OUT" | sed '$d'
echo "(every run's output: $OUT)"
exit $(( ok == 0 ? 0 : 1 ))
