#!/bin/sh
# shellcheck disable=SC2086  # $flags is split into words on purpose wherever it is used
# The allreduce peers (bench/peers) as bench/allreduce_compare.sh runs them: 2 ranks, 3 sizes,
# -c 1, and their output read by the compare script's own parser, so a drift in the row format
# or a wrong result fails here rather than in a comparison table.
# usage: peers_test.sh CASE PEER RDMACOLL_RUN PARSER
#   CASE: mpi | mpi-tcp | gloo-ring | gloo-ring_chunked | gloo-halving_doubling | gloo-bcube | usage
#   PEER: the peer's binary, or "none" when it was not built (the case is skipped).
# Exit 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
set -u
case_=$1 peer=$2 run=$3 parser=$4
[ "$peer" = none ] && { echo "SKIP: $case_: the peer was not built (its library was not found by CMake)"; exit 77; }
unset RDMACOLL_RANK RDMACOLL_WORLD_SIZE RDMACOLL_ADDR OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "--- output"; cat "$tmp/out"; exit 1; }
# Rows at 8, 512 and 32768 bytes.
flags="-b 8 -e 32K -f 64 -n 2 -w 1 -c 1"
sizes=8,512,32768

case $case_ in
mpi)
  command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,vader \
    "$peer" $flags >"$tmp/out" 2>&1 || fail "mpi_allreduce_perf exited $?"
  python3 "$parser" check "$tmp/out" --ranks 2 --sizes $sizes || fail "output does not parse as expected"
  # Another type and reduction, in the rows too.
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,vader \
    "$peer" $flags -d int32 -o max >"$tmp/out" 2>&1 || fail "mpi_allreduce_perf -d int32 -o max exited $?"
  python3 "$parser" check "$tmp/out" --ranks 2 --sizes $sizes --type int32 --redop max || fail "int32 max"
  ;;
mpi-tcp)
  # The TCP class of the comparison: Open MPI's tcp btl on the loopback interface.
  command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 --mca pml ob1 --mca btl self,tcp \
    --mca btl_tcp_if_include lo "$peer" $flags >"$tmp/out" 2>&1 || fail "mpi_allreduce_perf over btl tcp exited $?"
  python3 "$parser" check "$tmp/out" --ranks 2 --sizes $sizes || fail "output does not parse as expected"
  ;;
gloo-*)
  algo=${case_#gloo-}
  RDMACOLL_STORE_DIR=$tmp timeout 120 "$run" -n 2 --timeout 100 -- "$peer" --algo "$algo" $flags \
    >"$tmp/out" 2>&1 || fail "gloo_allreduce_perf --algo $algo exited $?"
  python3 "$parser" check "$tmp/out" --ranks 2 --sizes $sizes || fail "output does not parse as expected"
  RDMACOLL_STORE_DIR=$tmp timeout 120 "$run" -n 2 --timeout 100 -- "$peer" --algo "$algo" $flags -d double -o prod \
    >"$tmp/out" 2>&1 || fail "gloo_allreduce_perf --algo $algo -d double -o prod exited $?"
  python3 "$parser" check "$tmp/out" --ranks 2 --sizes $sizes --type double --redop prod || fail "double prod"
  ls -d "$tmp"/gloo_allreduce_perf.* >/dev/null 2>&1 && fail "the rendezvous directory was left behind"
  ;;
usage)
  "$peer" -b 8 -e 4 >"$tmp/out" 2>&1; rc=$?
  [ "$rc" = 2 ] || fail "-b 8 -e 4 exited $rc, expected 2"
  grep -q "^usage: " "$tmp/out" || fail "no usage line"
  "$peer" --bogus >"$tmp/out" 2>&1; rc=$?
  [ "$rc" = 2 ] || fail "--bogus exited $rc, expected 2"
  "$peer" --help >"$tmp/out" 2>&1 || fail "--help exited $?"
  ;;
*)
  echo "unknown case '$case_'"; exit 1
  ;;
esac
echo "PASS: $case_"
