#!/usr/bin/env bash
# Runs inside one soft-RoCE guest (tests/guest/rdmacoll-guest), whose processes share rxe0 on
# the dummy interface rd0; scripts/test.sh's one-guest stage:
#   1. every RDMA test (ctest label rdma) but the one that takes the port down: the tools'
#      scripts through ctest -> guest1.xml; the GoogleTest binaries (found from ctest's list)
#      each run whole, in one process -> guest1-bin-<binary>.xml. Under the guest's emulated CPUs a
#      process start costs one to two seconds, and ctest starts one per test case (80 of them);
#      the cases of a binary also run together on the host under TSan and across two guests.
#   2. the port-down test, PortEventsVerbs.*, last and alone (ALLOW_PORT_TOGGLE=1: taking rd0
#      down harms nothing else here), so a port that failed to come back could not fail the
#      others -> guest1-port.xml;
#   3. given TSAN_BUILD (a -DRDMACOLL_SANITIZE=thread build of the two binaries below): the
#      verbs collectives under ThreadSanitizer, which needs a device: the verbs backend's
#      async-event thread against the ranks' progress (a real port-down event included), and
#      rank 0's store thread against the verbs traffic -> guest1-tsan-<binary>.xml.
# usage: one-guest-tests.sh BUILD RESULTS [TSAN_BUILD TSAN_OPTIONS]
set -uo pipefail
BUILD=$1 RESULTS=$2 TSAN_BUILD=${3:-}
export REQUIRE_RDMA_DEVICE=1
rc=0
# ctest's rdma tests split into GoogleTest binaries (their cases carry --gtest_filter) and the rest.
split=$(ctest --test-dir "$BUILD" -N -L rdma --show-only=json-v1 | python3 -c '
import json, re, sys
bins, scripts = set(), []
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command", [])
    if any(a.startswith("--gtest_filter=") for a in cmd): bins.add(cmd[0])
    else: scripts.append(re.escape(t["name"]))
print("^(" + "|".join(scripts) + ")$")
print(" ".join(sorted(bins)))') || { echo "cannot list ctest's rdma tests"; exit 1; }
scripts=$(sed -n 1p <<<"$split") bins=$(sed -n 2p <<<"$split")
ctest --test-dir "$BUILD" -L rdma -R "$scripts" --output-on-failure --timeout 300 \
  --output-junit "$RESULTS/guest1.xml" || rc=1
for exe in $bins; do
  name=$(basename "$exe")
  echo "=== $name"
  (cd "$(dirname "$exe")" && timeout 1200 "$exe" --gtest_filter='-PortEventsVerbs.*' \
     --gtest_output="xml:$RESULTS/guest1-bin-$name.xml") || { echo "$name failed (124: timed out)"; rc=1; }
done
exe=$BUILD/tests/collectives/collectives_faults_rdma
echo "=== $(basename "$exe"): PortEventsVerbs.*, alone"
(cd "$(dirname "$exe")" && ALLOW_PORT_TOGGLE=1 timeout 300 "$exe" --gtest_filter='PortEventsVerbs.*' \
   --gtest_output="xml:$RESULTS/guest1-port.xml") || rc=1

[ -n "$TSAN_BUILD" ] || exit $rc
export TSAN_OPTIONS=$4 ALLOW_PORT_TOGGLE=1
# binary:gtest filter. Few cases: TSan under the guest's emulated CPUs is slow, and these are
# the ones whose threads meet: the port-down event, an argument mismatch on three ranks (every
# rank told, the communicators failed), and several calls in flight on one communicator. No case
# with a short deadline: under TSan and emulation a communicator's set-up alone can outlast one
# (PeerFailureVerbs.OneRanksDeadlineFailsTheOthersAtOnce's 1.5 s did, once in three runs).
for spec in \
  "collectives_faults_rdma:PortEventsVerbs.*:Arguments/FaultsVerbs.MismatchEveryRankNamesEveryValue/count" \
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
