#!/usr/bin/env bash
# Runs inside each of two guests (tests/guest/rdmacoll-guest --guests 2): every RDMA test
# binary's multi-rank tests (test names containing MultiRank), as rank RXE_GUEST_INDEX of 2, with
# guest 1 (192.168.90.1) serving the rendezvous. Results go to RESULTS/guest2-<binary>-rank<N>.xml.
# usage: multihost-tests.sh BUILD_DIR RESULTS_DIR
set -uo pipefail
BUILD=$1 RESULTS=$2
export RDMACOLL_RANK=$RXE_GUEST_INDEX RDMACOLL_WORLD_SIZE=$RXE_GUEST_COUNT
export RDMACOLL_ADDR=${RXE_GUEST_ADDRS%% *}:29500 REQUIRE_RDMA_DEVICE=1
rc=0
# The rdma-labelled binaries: device tests and the transport conformance suite.
for bin in "$BUILD"/tests/rdma/*_tests "$BUILD"/tests/conformance/*_rdma; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  echo "rank $RDMACOLL_RANK: $name (rendezvous $RDMACOLL_ADDR)"
  timeout 600 "$bin" --gtest_filter='*MultiRank*' --gtest_output="xml:$RESULTS/guest2-$name-rank$RDMACOLL_RANK.xml" || rc=1
done
exit $rc
