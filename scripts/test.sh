#!/usr/bin/env bash
# rdmacoll's whole test suite, exactly as CI runs it (.ci/run calls this):
#   1. installs what it needs (scripts/install-deps.sh) and builds (build/, 2 jobs);
#   2. runs every test that needs no RDMA device on this host (labels unit, ucx, install);
#   3. runs the RDMA tests (label rdma) where there is RDMA: directly on a host that has an
#      active RDMA port, otherwise in the soft-RoCE guest: first all of them in one guest whose
#      processes share rxe0, then the multi-rank ones with one rank in each of two guests
#      joined by a virtual link. Guest runs set REQUIRE_RDMA_DEVICE=1, so an RDMA test cannot
#      pass there by skipping.
# Where the guest cannot start: with CI=true the run fails with the reason; elsewhere the
# guest stages are skipped with the reason.
#   4. builds the libFuzzer targets of the network parsers with clang (build-fuzz/ beside the
#      build directory, RDMACOLL_FUZZ=ON) and runs each for 60 s from its seed corpus
#      (tests/fuzz/corpus/<target>/); a crash, leak, sanitizer report or timeout fails the stage.
#
# usage: scripts/test.sh [--build-dir DIR] [--skip-install] [--host-only] [--no-fuzz]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
INSTALL=1
GUEST=1
FUZZ=1
FUZZ_SECONDS=60
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD=$(realpath -m "$2"); shift 2 ;;
    --skip-install) INSTALL=0; shift ;;
    --host-only) GUEST=0; shift ;;
    --no-fuzz) FUZZ=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\n=== %s\n' "$*"; }
RESULTS=$BUILD/test-results
HARNESS=$ROOT/tests/guest/rdmacoll-guest
declare -a SUMMARY=()
TOTAL_PASS=0 TOTAL_FAIL=0 TOTAL_SKIP=0
STATUS=0

# Counts "tests failures skipped" in a ctest JUnit file (status="run|fail|notrun") or a
# GoogleTest XML file (result="completed|skipped", <failure> children).
junit_counts() {
  awk '
    /<testcase / { n++; open_case = 1
      if ($0 ~ /status="fail"/) { f++; open_case = 0 }
      if ($0 ~ /status="notrun"/ || $0 ~ /result="skipped"/) s++ }
    /<failure/ && open_case { f++; open_case = 0 }
    END { print n + 0, f + 0, s + 0 }' "$1"
}

# record STAGE FILE... : adds a stage's counts to the summary.
record() {
  local stage=$1; shift
  local t=0 f=0 s=0 tt ff ss file
  for file in "$@"; do
    if [ ! -s "$file" ]; then
      echo "no result file $file (the stage crashed before writing it)"; f=$((f + 1)); continue
    fi
    read -r tt ff ss < <(junit_counts "$file")
    t=$((t + tt)); f=$((f + ff)); s=$((s + ss))
  done
  local p=$((t - f - s))
  SUMMARY+=("$(printf '%-46s %4d passed, %d failed, %d skipped' "$stage:" "$p" "$f" "$s")")
  TOTAL_PASS=$((TOTAL_PASS + p)); TOTAL_FAIL=$((TOTAL_FAIL + f)); TOTAL_SKIP=$((TOTAL_SKIP + s))
  [ "$f" -eq 0 ] || STATUS=1
}

fail_stage() { SUMMARY+=("$(printf '%-46s %s' "$1:" "FAILED: $2")"); STATUS=1; TOTAL_FAIL=$((TOTAL_FAIL + 1)); }

START=$(date +%s)
if [ $INSTALL = 1 ]; then
  say "installing dependencies (scripts/install-deps.sh)"
  bash "$ROOT/scripts/install-deps.sh" || { echo "dependency installation failed" >&2; exit 1; }
fi

say "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$BUILD" -j2 || { echo "build failed" >&2; exit 1; }
rm -rf "$RESULTS"; mkdir -p "$RESULTS"

say "host tests (no RDMA device needed)"
ctest --test-dir "$BUILD" -LE rdma -j2 --output-on-failure --output-junit "$RESULTS/host.xml"
record "host: unit, ucx, install" "$RESULTS/host.xml"

if "$BUILD/tools/rdmacoll-info" --select >/dev/null 2>&1; then
  say "RDMA tests on this host's own device ($("$BUILD/tools/rdmacoll-info" --select))"
  REQUIRE_RDMA_DEVICE=1 ctest --test-dir "$BUILD" -L rdma --output-on-failure --output-junit "$RESULTS/rdma-host.xml"
  record "rdma: this host's device" "$RESULTS/rdma-host.xml"
elif [ $GUEST = 0 ]; then
  SUMMARY+=("rdma: skipped (--host-only)")
else
  if ! why=$("$HARNESS" --check 2>&1); then
    if [ "${CI:-}" = true ]; then
      fail_stage "rdma: soft-RoCE guest" "guest cannot start: $why"
    else
      SUMMARY+=("rdma: skipped: guest cannot start: $why")
    fi
  else
    say "RDMA tests in one soft-RoCE guest (processes share rxe0)"
    "$HARNESS" --writable "$BUILD" -- env REQUIRE_RDMA_DEVICE=1 \
      ctest --test-dir "$BUILD" -L rdma --output-on-failure --timeout 300 --output-junit "$RESULTS/guest1.xml"
    rc=$?
    record "rdma: one guest, shared rxe0" "$RESULTS/guest1.xml"
    [ $rc -eq 0 ] || [ -s "$RESULTS/guest1.xml" ] || fail_stage "rdma: one guest" "guest exited $rc"

    say "multi-rank RDMA tests across two guests (one rank per guest, RoCE on the virtual link)"
    "$HARNESS" --guests 2 --writable "$BUILD" -- bash "$ROOT/tests/guest/multihost-tests.sh" "$BUILD" "$RESULTS"
    rc=$?
    record "rdma: two guests, one rank each" "$RESULTS"/guest2-*.xml
    [ $rc -eq 0 ] || compgen -G "$RESULTS/guest2-*.xml" >/dev/null || fail_stage "rdma: two guests" "guests exited $rc"
  fi
fi

# Fuzzing: one -j1 clang build of the parsers only (about a minute), then each target for
# FUZZ_SECONDS on one core, from a scratch copy of its corpus (the checked-in seeds stay as they
# are). The finding, if any, is left in $RESULTS/fuzz-<target>/ with libFuzzer's log.
if [ $FUZZ = 0 ]; then
  SUMMARY+=("fuzz: skipped (--no-fuzz)")
elif ! command -v clang++ >/dev/null; then
  fail_stage "fuzz" "clang++ not found (scripts/install-deps.sh installs clang)"
else
  FUZZ_BUILD=$BUILD-fuzz
  say "fuzzing the network parsers (${FUZZ_SECONDS} s per target, built in $FUZZ_BUILD)"
  fuzz_start=$(date +%s)
  if ! { CC=clang CXX=clang++ cmake -S "$ROOT" -B "$FUZZ_BUILD" -DRDMACOLL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
         cmake --build "$FUZZ_BUILD" -j2; }; then
    fail_stage "fuzz" "the fuzz targets did not build"
  else
    for corpus in "$ROOT"/tests/fuzz/corpus/*/; do
      target=$(basename "$corpus")
      out=$RESULTS/fuzz-$target
      rm -rf "$out"; mkdir -p "$out/corpus"
      cp "$corpus"/* "$out/corpus/"
      if (cd "$out" && "$FUZZ_BUILD/tests/fuzz/$target" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
            -max_len=8192 -print_final_stats=1 corpus >"$out/log" 2>&1); then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
        SUMMARY+=("$(printf '%-46s %s' "fuzz: $target:" "no finding in ${FUZZ_SECONDS} s (${runs:-?} inputs)")")
        TOTAL_PASS=$((TOTAL_PASS + 1))
      else
        tail -40 "$out/log"
        fail_stage "fuzz: $target" "finding, see $out/log and $out/crash-* (reproduce: $FUZZ_BUILD/tests/fuzz/$target FILE)"
      fi
    done
  fi
  echo "fuzz stage: $(( $(date +%s) - fuzz_start )) s"
fi

say "summary ($(( $(date +%s) - START )) s)"
printf '%s\n' "${SUMMARY[@]}"
echo "summary: $TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
exit $STATUS
