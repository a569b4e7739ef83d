#!/usr/bin/env bash
# Runs inside one soft-RoCE guest (tests/guest/rdmacoll-guest), whose processes share rxe0 on
# the dummy interface rd0; scripts/test.sh's one-guest stage:
#   1. every RDMA test (ctest -L rdma) but the one that takes the port down -> guest1.xml;
#   2. that one, PortEventsVerbs.*, last and alone (ALLOW_PORT_TOGGLE=1: taking rd0 down harms
#      nothing else here), so a port that failed to come back could not fail the others
#      -> guest1-port.xml;
#   3. given TSAN_BUILD (a -DRDMACOLL_SANITIZE=thread build of the two binaries below): the
#      verbs collectives under ThreadSanitizer, which needs a device: the verbs backend's
#      async-event thread against the ranks' progress (a real port-down event included), and
#      rank 0's store thread against the verbs traffic -> guest1-tsan-<binary>.xml.
# usage: one-guest-tests.sh BUILD RESULTS [TSAN_BUILD TSAN_OPTIONS]
set -uo pipefail
BUILD=$1 RESULTS=$2 TSAN_BUILD=${3:-}
export REQUIRE_RDMA_DEVICE=1
rc=0
ctest --test-dir "$BUILD" -L rdma -E '^PortEventsVerbs\.' --output-on-failure --timeout 300 \
  --output-junit "$RESULTS/guest1.xml" || rc=1
ALLOW_PORT_TOGGLE=1 ctest --test-dir "$BUILD" -L rdma -R '^PortEventsVerbs\.' --output-on-failure --timeout 300 \
  --output-junit "$RESULTS/guest1-port.xml" || rc=1

[ -n "$TSAN_BUILD" ] || exit $rc
export TSAN_OPTIONS=$4 ALLOW_PORT_TOGGLE=1
# binary:gtest filter. Few cases: TSan under the guest's emulated CPUs is slow, and these are
# the ones whose threads meet: the port-down event, the abort path (three ranks, one failing
# the others through the store), and several calls in flight on one communicator.
for spec in \
  "collectives_faults_rdma:PortEventsVerbs.*:PeerFailureVerbs.OneRanksDeadlineFailsTheOthersAtOnce" \
  "collectives_communicator_rdma:CommunicatorVerbs.MultiRankNonBlockingCallsInFlight:Verbs/Ranks.MultiRankAllreduceMatrix/2ranks"; do
  name=${spec%%:*} filter=${spec#*:}
  exe=$TSAN_BUILD/tests/collectives/$name
  log=$RESULTS/guest1-tsan-$name.log
  echo "TSan in the guest: $name --gtest_filter=$filter"
  if ! timeout 900 "$exe" --gtest_filter="$filter" --gtest_output="xml:$RESULTS/guest1-tsan-$name.xml" >"$log" 2>&1; then
    echo "$name under TSan failed (66: a TSan report, 124: timed out); the end of $log:"
    tail -n 60 "$log"
    rc=1
  fi
done
exit $rc
