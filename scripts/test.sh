#!/usr/bin/env bash
# rdmacoll's whole test suite, exactly as CI runs it (.ci/run calls this):
#   1. installs what it needs (scripts/install-deps.sh) and builds (build/, 2 jobs);
#   2. runs every test that needs no RDMA device on this host (labels unit, ucx, install);
#   3. runs the RDMA tests (label rdma) where there is RDMA: directly on a host that has an
#      active RDMA port, otherwise in the soft-RoCE guest: first all of them in one guest whose
#      processes share rxe0 (with the verbs collectives' threads under ThreadSanitizer there
#      too), then the multi-rank ones with one rank in each of two guests joined by a virtual
#      link. Guest runs set REQUIRE_RDMA_DEVICE=1, so an RDMA test cannot pass there by skipping.
#   4. builds again with clang under AddressSanitizer + UndefinedBehaviorSanitizer (DIR-asan)
#      and runs the host tests there, then under ThreadSanitizer (DIR-tsan) and runs the
#      threaded parts; see "Sanitizers" below for which tests and why;
#   5. builds the libFuzzer targets of the network parsers with clang (DIR-fuzz, RDMACOLL_FUZZ=ON)
#      and runs each for 60 s (two at a time) from its seed corpus (tests/fuzz/corpus/<target>/); a crash, leak,
#      sanitizer report or timeout fails the stage.
# Where the guest cannot start: with CI=true the run fails with the reason; elsewhere the
# guest stages are skipped with the reason.
#
# usage: scripts/test.sh [--build-dir DIR] [--skip-install] [--host-only] [--no-sanitizers]
#                        [--sanitizers-only] [--no-fuzz] [--jobs N (build and ctest jobs, default 2)]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
INSTALL=1
JOBS=2
GUEST=1
FUZZ=1
FUZZ_SECONDS=60
MAIN=1
SANITIZERS=1
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD=$(realpath -m "$2"); shift 2 ;;
    --skip-install) INSTALL=0; shift ;;
    --host-only) GUEST=0; shift ;;
    --no-fuzz) FUZZ=0; shift ;;
    --no-sanitizers) SANITIZERS=0; shift ;;
    --sanitizers-only) MAIN=0; shift ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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

# failed_names FILE... : "FILE-STEM: CLASS.NAME" of each failed test case in the JUnit files,
# each followed by up to eight lines of its failure messages (indented), so that the summary,
# which is what a CI log keeps, says what failed and why, not only where.
failed_names() {
  python3 - "$@" <<'PY'
import os, sys, xml.etree.ElementTree as ET
for path in sys.argv[1:]:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        continue
    stem = os.path.basename(path)[:-4] if path.endswith(".xml") else os.path.basename(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        print(f"{stem}: (its result file does not parse: {e})")
        continue
    for case in root.iter("testcase"):
        failures = case.findall("failure") + case.findall("error")
        if not failures and case.get("status") != "fail":
            continue
        cls = case.get("classname") or ""
        name = case.get('name') or ''
        print(f"{stem}: {cls + '.' if cls and cls != name else ''}{name}")
        lines = []
        for f in failures:
            text = f.get("message") or f.text or ""
            lines += [l.strip() for l in text.splitlines() if l.strip()]
        # ctest's results say only "Failed": take GoogleTest's failure lines from the output.
        out = case.findtext("system-out") or ""
        if len(lines) <= 1 and "Failure" in out:
            got, keep = [], 0
            for l in out.splitlines():
                if l.endswith(": Failure") or l.endswith("] Failure"):
                    keep = 4
                if keep and l.strip():
                    got.append(l.strip())
                    keep -= 1
            lines = got or lines
        for l in lines[:8]:
            print("  " + (l if len(l) <= 400 else l[:400] + " ..."))
        if len(lines) > 8:
            print(f"  ... ({len(lines) - 8} more lines in {os.path.basename(path)})")
PY
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
  # Name the failed tests under the stage's line, so the summary alone says what to look at.
  [ "$f" -eq 0 ] || while IFS= read -r line; do
    case $line in "  "*) SUMMARY+=("          $line") ;; *) SUMMARY+=("    failed: $line") ;; esac
  done < <(failed_names "$@")
  TOTAL_PASS=$((TOTAL_PASS + p)); TOTAL_FAIL=$((TOTAL_FAIL + f)); TOTAL_SKIP=$((TOTAL_SKIP + s))
  [ "$f" -eq 0 ] || STATUS=1
}

fail_stage() { SUMMARY+=("$(printf '%-46s %s' "$1:" "FAILED: $2")"); STATUS=1; TOTAL_FAIL=$((TOTAL_FAIL + 1)); }

# guest_stage_rc STAGE RC RESULT-FILE...: a guest stage's harness status. Failed tests exit
# non-zero and are counted from their result files; but a guest that crashed (99) or ran out of
# time (124) took the tests after that point with it, and its partial result files must not pass
# for the stage's (a kernel panic of rdma_rxe once ended the two-guest stage after 46 of its 73
# tests with a green summary).
guest_stage_rc() {
  local stage=$1 rc=$2; shift 2
  case $rc in
    0) ;;
    99) fail_stage "$stage" "a guest crashed or its setup failed (exit 99): the tests after that point did not run; see its console above" ;;
    124) fail_stage "$stage" "the guests ran out of time (exit 124): the tests after that point did not run" ;;
    *) [ -e "$1" ] || fail_stage "$stage" "guests exited $rc and wrote no results" ;;  # (record counts an empty one)
  esac
}

START=$(date +%s)
if [ $INSTALL = 1 ]; then
  say "installing dependencies (scripts/install-deps.sh)"
  bash "$ROOT/scripts/install-deps.sh" || { echo "dependency installation failed" >&2; exit 1; }
fi

# ---- Sanitizers ---------------------------------------------------------------------------------
# Two more builds with Debian's clang, each in its own directory beside BUILD, with the
# benchmarks left out (they measure other libraries; the tools the tests run are built):
#
#   DIR-asan  -DRDMACOLL_SANITIZE=address,undefined: the host tests, minus
#             install  installs and builds an outside project: packaging, the same under any
#                      flags, and the consumer would need the sanitizer runtime on its link line
#             link     network namespaces behind tbf links: its checks are rates and times
#                      (0.3-1.5x of a throttled rate), which instrumented ranks on 2 cores skew
#             bench.*  run Open MPI's and Gloo's allreduce (not built here) and a Python parser
#             tools.codec_bench  checks every codec's measured speed against memcpy's to 4
#                      decimals; instrumented, randk rounds to 0 (its code runs in codec_test)
#             --compress auto's decisions (tools.collperf.compress, CompressedUcx.*AutoFollows*):
#                      they compare measured times of plain and compressed calls, and
#                      instrumentation slows the two unequally (auto accepted int8 on shared
#                      memory once); their code runs in the other compressed tests
#   DIR-tsan  -DRDMACOLL_SANITIZE=thread: the tests with threads of ours in them: the TCP store's
#             server thread (its unit tests with concurrent clients, and rank 0 of every
#             multi-rank test serves the store from it while the test runs), the registration
#             cache and memory hooks under concurrent threads, and the multi-rank UCX transport
#             and collectives tests (rank 0's store thread against the ranks' traffic). The
#             verbs backend's async-event thread needs an RDMA device: a few verbs collective
#             tests from this build run in the one-guest stage (a port-down event among them;
#             tests/guest/one-guest-tests.sh), so DIR-tsan is built before the guest stages.
#             (On a host with its own RDMA device they are not run: the port-down case would
#             take a real port down.)
#             Single-threaded code (codecs, schedules, the MLP, the tools' parsers) has nothing
#             for TSan to find and is left to the ASan stage.
#
# Memory hooks (transport/src/memhooks.cc): under ASan and TSan the process's free() is the
# sanitizer's, not ours; memhooks.cc notices that and only forwards (the tests that need the
# free hook skip, naming the reason), so RDMACOLL_MEMHOOKS is left alone. UCX's ucm hooks for
# munmap & co. stay on under ASan; a TSan build does not take their events (see memhooks.cc).
# No suppressions are needed today; $SUPP/*.supp say what may go there (third-party code only).
SAN_CMAKE=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
           -DRDMACOLL_BUILD_BENCH=OFF)
SUPP=$ROOT/scripts/sanitizers
# Options for every instrumented process, the tools a test starts included (they inherit them).
# halt_on_error: the first report fails the process; exitcode 66 tells it from a test's own 1.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=66:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=66"
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$SUPP/tsan.supp:print_suppressions=0"

TSAN_BUILD=$BUILD-tsan
# Not transport_conformance_host: it counts heap allocations with its own operator new, which
# TSan's runtime defines too (the link fails); its threads are the store's, run by the others.
TSAN_TESTS=(transport_unit_tests ucx_tests collectives_communicator_host)
# Run in the one-guest stage (tests/guest/one-guest-tests.sh says which cases), which is why
# the TSan build comes before the guest stages.
TSAN_GUEST_TESTS=(collectives_faults_rdma collectives_communicator_rdma)
TSAN_BUILT=0

# san_build NAME DIR SANITIZERS TARGET... : configures and builds (all when no TARGET is given).
san_build() {
  local name=$1 dir=$2 sanitize=$3; shift 3
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  say "building with clang under $name in $dir"
  cmake -S "$ROOT" -B "$dir" "${SAN_CMAKE[@]}" -DRDMACOLL_SANITIZE="$sanitize" >/dev/null &&
    cmake --build "$dir" -j"$JOBS" "${targets[@]}"
}

if [ $MAIN = 1 ]; then
  say "building in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
  cmake --build "$BUILD" -j"$JOBS" || { echo "build failed" >&2; exit 1; }
  rm -rf "$RESULTS"; mkdir -p "$RESULTS"

  say "host tests (no RDMA device needed)"
  t0=$(date +%s)
  ctest --test-dir "$BUILD" -LE rdma -j"$JOBS" --output-on-failure --output-junit "$RESULTS/host.xml"
  record "host: unit, ucx, install ($(( $(date +%s) - t0 )) s)" "$RESULTS/host.xml"

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
      tsan_args=()
      if [ $SANITIZERS = 1 ]; then
        t0=$(date +%s)
        if san_build "TSan (its verbs tests run in the guest)" "$TSAN_BUILD" thread "${TSAN_TESTS[@]}" "${TSAN_GUEST_TESTS[@]}"; then
          TSAN_BUILT=1 tsan_args=("$TSAN_BUILD" "$TSAN_OPTIONS")
        else
          TSAN_BUILT=failed  # recorded once: the TSan stage below does not try again
          fail_stage "tsan" "build failed"
        fi
        echo "TSan build: $(( $(date +%s) - t0 )) s"
      fi
      say "RDMA tests in one soft-RoCE guest (processes share rxe0)"
      t0=$(date +%s)
      "$HARNESS" --writable "$BUILD" -- bash "$ROOT/tests/guest/one-guest-tests.sh" "$BUILD" "$RESULTS" "${tsan_args[@]}"
      rc=$?
      record "rdma: one guest, shared rxe0 ($(( $(date +%s) - t0 )) s)" "$RESULTS/guest1.xml" "$RESULTS"/guest1-bin-*.xml \
        "$RESULTS/guest1-port.xml"
      [ $TSAN_BUILT != 1 ] || record "tsan in the guest: verbs async events, store" \
        "$RESULTS/guest1-tsan-${TSAN_GUEST_TESTS[0]}.xml" "$RESULTS/guest1-tsan-${TSAN_GUEST_TESTS[1]}.xml"
      guest_stage_rc "rdma: one guest" $rc "$RESULTS/guest1.xml"

      say "multi-rank RDMA tests across two guests (one rank per guest, RoCE on the virtual link)"
      stage="rdma: two guests, one rank each"
      # The harness's exit 98 says the guests' virtual link stalled (QEMU stopped taking a guest's
      # packets), not a test: the stage runs once more on fresh guests, said in the summary. A
      # second stall fails the stage.
      for attempt in 1 2; do
        t0=$(date +%s)
        "$HARNESS" --guests 2 --writable "$BUILD" -- bash "$ROOT/tests/guest/multihost-tests.sh" "$BUILD" "$RESULTS"
        rc=$?
        { [ $rc = 98 ] && [ $attempt = 1 ]; } || break
        say "the guests' virtual link stalled after $(( $(date +%s) - t0 )) s; the two-guest stage once more on fresh guests"
        rm -f "$RESULTS"/guest2-*.xml
        stage="$stage, run again after its virtual link stalled"
      done
      [ $rc = 98 ] && fail_stage "rdma: two guests" "the guests' virtual link stalled twice (exit 98): QEMU's UDP socket netdev stopped taking packets"
      record "$stage ($(( $(date +%s) - t0 )) s)" "$RESULTS"/guest2-*.xml
      guest_stage_rc "rdma: two guests" $rc "$RESULTS"/guest2-*.xml
    fi
  fi
fi

if [ $SANITIZERS = 0 ]; then
  SUMMARY+=("sanitizers: skipped (--no-sanitizers)")
else
  ASAN_BUILD=$BUILD-asan
  t0=$(date +%s)
  if san_build "ASan+UBSan" "$ASAN_BUILD" address,undefined; then
    mkdir -p "$ASAN_BUILD/test-results"; rm -f "$ASAN_BUILD"/test-results/*.xml
    say "host tests under ASan+UBSan (not install, link, bench.*, tools.codec_bench, auto's timings: see the script)"
    ctest --test-dir "$ASAN_BUILD" -LE 'rdma|install|link' \
      -E '^bench\.|^tools\.codec_bench$|^tools\.collperf\.compress$|AutoFollows' -j"$JOBS" --output-on-failure \
      --output-junit "$ASAN_BUILD/test-results/asan.xml"
    record "asan+ubsan: unit, ucx ($(( $(date +%s) - t0 )) s)" "$ASAN_BUILD/test-results/asan.xml"
  else
    fail_stage "asan+ubsan" "build failed"
  fi

  t0=$(date +%s)
  if [ "$TSAN_BUILT" = failed ]; then
    :  # its build failed before the guest stages, and was recorded there
  elif [ "$TSAN_BUILT" = 1 ] || san_build "TSan" "$TSAN_BUILD" thread "${TSAN_TESTS[@]}" "${TSAN_GUEST_TESTS[@]}"; then
    mkdir -p "$TSAN_BUILD/test-results"; rm -f "$TSAN_BUILD"/test-results/*.xml
    say "threaded tests under TSan: ${TSAN_TESTS[*]}"
    # The GoogleTest binaries run directly, side by side (only these are built, so ctest would
    # list the others as not built); each binary gets 15 minutes, its output goes to a log.
    tsan_results=() pids=()
    for t in "${TSAN_TESTS[@]}"; do
      exe=$(find "$TSAN_BUILD/tests" -type f -name "$t" -perm -u+x | head -1)
      out=$TSAN_BUILD/test-results/tsan-$t.xml
      tsan_results+=("$out")
      (cd "$TSAN_BUILD" && timeout 900 "$exe" --gtest_output="xml:$out" >"$TSAN_BUILD/test-results/tsan-$t.log" 2>&1) &
      pids+=($!)
    done
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}"; rc=$?
      [ $rc = 0 ] && continue
      t=${TSAN_TESTS[$i]}
      echo "$t failed (exit $rc; 66: a TSan report, 124: timed out); the end of $TSAN_BUILD/test-results/tsan-$t.log:"
      tail -n 60 "$TSAN_BUILD/test-results/tsan-$t.log"
    done
    record "tsan: store, regcache, ucx, comm ($(( $(date +%s) - t0 )) s)" "${tsan_results[@]}"
  else
    fail_stage "tsan" "build failed"
  fi
fi

# Fuzzing: a clang build of the parsers only (about a minute), then each target for
# FUZZ_SECONDS on one core, JOBS of them at once, from a scratch copy of its corpus (the
# checked-in seeds stay as they are). The finding, if any, is left in $RESULTS/fuzz-<target>/
# with libFuzzer's log.
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
    # JOBS targets at a time, one core each.
    targets=() pids=()
    for corpus in "$ROOT"/tests/fuzz/corpus/*/; do
      target=$(basename "$corpus")
      out=$RESULTS/fuzz-$target
      rm -rf "$out"; mkdir -p "$out/corpus"
      cp "$corpus"/* "$out/corpus/"
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      (cd "$out" && exec "$FUZZ_BUILD/tests/fuzz/$target" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
         -max_len=8192 -print_final_stats=1 corpus >"$out/log" 2>&1) &
      targets+=("$target") pids+=($!)
    done
    for i in "${!pids[@]}"; do
      target=${targets[$i]} out=$RESULTS/fuzz-${targets[$i]}
      if wait "${pids[$i]}"; then
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
