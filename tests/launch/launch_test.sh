#!/bin/sh
# Tests of rdmacoll-run and rdmacoll-hello as users run them: real processes, real exit codes.
# usage: launch_test.sh CASE RDMACOLL_RUN RDMACOLL_HELLO
#   CASE: hello | failing-rank | timeout | signal | usage | noexec | mpirun | token
# Exit 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
set -u
case_=$1 run=$2 hello=$3
# rdmacoll-hello is found through PATH, which also exercises the launcher's execvp lookup.
PATH=$(dirname "$hello"):$PATH
export PATH
# A launcher's variables in our own environment would change what the ranks see.
unset RDMACOLL_RANK RDMACOLL_WORLD_SIZE RDMACOLL_ADDR RDMACOLL_JOB_TOKEN OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE \
      SLURM_PROCID SLURM_NTASKS RANK WORLD_SIZE
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# A sleep duration nobody else uses, so pgrep -f finds only our ranks' processes.
marker=30.$$$(date +%N)

fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; cat "$tmp/err"; exit 1; }
expect_rc() { [ "$rc" = "$1" ] || fail "exit status $rc, expected $1"; }
expect_out() { grep -q -e "$2" "$tmp/$1" || fail "no line matching '$2' in $1"; }
# Processes exit asynchronously after SIGKILL; give them a moment before calling them leftovers.
expect_no_leftovers() {
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pgrep -f "sleep $marker" >/dev/null || return 0
    sleep 0.2
  done
  fail "processes left behind: $(pgrep -af "sleep $marker")"
}
seconds() { date +%s; }

case $case_ in
hello)
  "$run" -n 4 -- rdmacoll-hello --expect 4 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  for r in 0 1 2 3; do
    expect_out out "^\[rank $r\] rank $r of 4 on .* (pid [0-9]*) \[launcher: RDMACOLL_RANK/RDMACOLL_WORLD_SIZE\]: rendezvous 127\.0\.0\.1:[0-9]*, reached all 4 ranks\$"
    expect_out out "^\[rank 0\] $r  "  # rank 0's table has a row for rank r
  done
  "$run" -n 3 -- rdmacoll-hello --expect 4 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1
  expect_out err "world size is 3 .*expected 4"
  # Rank 0 alone: the timeout names the ranks that never came.
  env RDMACOLL_TIMEOUT=2 RDMACOLL_RANK=0 RDMACOLL_WORLD_SIZE=3 RDMACOLL_ADDR=127.0.0.1:0 rdmacoll-hello \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1
  expect_out err "^rdmacoll-hello: rank 0: timed out in rendezvous 'hello' waiting for rank(s) 1, 2 of 3"
  ;;
failing-rank)
  start=$(seconds)
  "$run" -n 3 -- sh -c 'echo up; if [ "$RDMACOLL_RANK" = 1 ]; then exit 3; fi; sleep '"$marker" \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  elapsed=$(($(seconds) - start))
  expect_rc 1
  [ "$elapsed" -lt 15 ] || fail "took $elapsed s to stop the job"
  expect_out err "^rdmacoll-run: rank 1 failed first: exit status 3\$"
  expect_out out "^\[rank 1\] up\$"
  expect_no_leftovers
  # A rank killed by a signal is named as such.
  "$run" -n 2 -- sh -c 'if [ "$RDMACOLL_RANK" = 0 ]; then kill -KILL $$; fi; sleep '"$marker" \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1
  expect_out err "^rdmacoll-run: rank 0 failed first: killed by signal SIGKILL\$"
  expect_no_leftovers
  ;;
timeout)
  # Rank 1 ignores SIGTERM, so the teardown has to escalate to SIGKILL.
  "$run" -n 2 --timeout 1 -- sh -c 'if [ "$RDMACOLL_RANK" = 1 ]; then trap "" TERM; fi; sleep '"$marker" \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 124
  expect_out err "^rdmacoll-run: timed out after 1 s; ranks still running: 0, 1\$"
  expect_out err "rank(s) 1 still running 3 s after SIGTERM; sending SIGKILL"
  expect_no_leftovers
  ;;
signal)
  # SIGTERM to the launcher reaches every rank (and what the rank started), once each.
  "$run" -n 2 -- sh -c 'trap "echo got TERM; exit 0" TERM; touch '"$tmp"'/ready.$RDMACOLL_RANK; sleep '"$marker"' & wait' \
    >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 100); do [ -e "$tmp/ready.0" ] && [ -e "$tmp/ready.1" ] && break; sleep 0.1; done
  kill -TERM "$pid"
  wait "$pid"; rc=$?
  expect_rc 143
  expect_out out "^\[rank 0\] got TERM\$"
  expect_out out "^\[rank 1\] got TERM\$"
  expect_no_leftovers
  ;;
usage)
  for args in "" "-n" "-n 0 true" "-n x true" "-n 2" "-n 2 --bogus true" "--timeout -1 -n 2 true"; do
    # shellcheck disable=SC2086  # word splitting is the point
    "$run" $args >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ "$rc" = 2 ] || fail "'rdmacoll-run $args' exited $rc, expected 2"
    expect_out err "^usage: rdmacoll-run"
  done
  "$run" --help >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  expect_out out "^Exit status:"
  rdmacoll-hello --bogus >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 2
  # Not launched: a clear message, exit 1.
  rdmacoll-hello >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 1
  expect_out err "not started by a launcher"
  ;;
noexec)
  "$run" -n 2 -- /nonexistent/rdmacoll-no-such-program >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 127
  expect_out err "^rdmacoll-run: cannot execute '/nonexistent/rdmacoll-no-such-program': No such file or directory\$"
  "$run" -n 2 -- rdmacoll-no-such-program-on-path >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 127
  ;;
mpirun)
  command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
  # A free port for rank 0's store, found the way rdmacoll-run finds its own.
  addr=$("$run" --no-prefix -n 1 -- sh -c 'echo "$RDMACOLL_ADDR"') || fail "cannot get a free port"
  # rdmacoll-hello never calls MPI_Init, so mpirun only launches: no MCA settings are needed.
  # --allow-run-as-root for containers and CI; --oversubscribe for machines with fewer than 4 cores.
  mpirun --allow-run-as-root --oversubscribe -np 4 -x RDMACOLL_ADDR="$addr" rdmacoll-hello --expect 4 \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  for r in 0 1 2 3; do
    expect_out out "^rank $r of 4 on .* \[launcher: Open MPI (OMPI_COMM_WORLD_RANK/SIZE)\]: rendezvous $addr, reached all 4 ranks\$"
  done
  # Without RDMACOLL_ADDR: rank 0 publishes its address in a file named after the job.
  mpirun --allow-run-as-root --oversubscribe -np 4 -x RDMACOLL_STORE_DIR="$tmp" rdmacoll-hello --expect 4 \
    >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  for r in 0 1 2 3; do
    expect_out out "^rank $r of 4 on .* \[launcher: Open MPI (OMPI_COMM_WORLD_RANK/SIZE)\]: rendezvous 127.0.0.1:[0-9]*, reached all 4 ranks\$"
  done
  ls "$tmp"/rdmacoll-ompi-*.addr >/dev/null 2>&1 && fail "rank 0 left its address file behind"
  ;;
token)
  # Every rank of a job gets the same fresh token; the next job another; the caller's is kept.
  "$run" --no-prefix -n 2 -- sh -c 'echo "$RDMACOLL_JOB_TOKEN"' >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  [ "$(sort -u "$tmp/out" | wc -l)" = 1 ] || fail "the ranks got different tokens"
  grep -qx '[0-9a-f]\{64\}' "$tmp/out" || fail "the token is not 64 hex digits"
  first=$(head -n 1 "$tmp/out")
  "$run" --no-prefix -n 1 -- sh -c 'echo "$RDMACOLL_JOB_TOKEN"' >"$tmp/out" 2>"$tmp/err"
  [ "$(cat "$tmp/out")" != "$first" ] || fail "two jobs got the same token"
  RDMACOLL_JOB_TOKEN=kept "$run" --no-prefix -n 1 -- sh -c 'echo "$RDMACOLL_JOB_TOKEN"' >"$tmp/out" 2>"$tmp/err"
  [ "$(cat "$tmp/out")" = kept ] || fail "the caller's token was replaced"
  # A process with another token is refused and told why; rank 0 logs it and the job goes on
  # when the real rank 1 comes.
  addr=$("$run" --no-prefix -n 1 -- sh -c 'echo "$RDMACOLL_ADDR"') || fail "cannot get a free port"
  env RDMACOLL_TIMEOUT=30 RDMACOLL_JOB_TOKEN=right RDMACOLL_RANK=0 RDMACOLL_WORLD_SIZE=2 RDMACOLL_ADDR="$addr" \
    rdmacoll-hello --expect 2 >"$tmp/out0" 2>"$tmp/err0" &
  rank0=$!
  for token in wrong ""; do
    env RDMACOLL_TIMEOUT=10 RDMACOLL_JOB_TOKEN="$token" RDMACOLL_RANK=1 RDMACOLL_WORLD_SIZE=2 RDMACOLL_ADDR="$addr" \
      rdmacoll-hello --expect 2 >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 1
    expect_out err "refused this process: .*authentication failed"
  done
  env RDMACOLL_TIMEOUT=30 RDMACOLL_JOB_TOKEN=right RDMACOLL_RANK=1 RDMACOLL_WORLD_SIZE=2 RDMACOLL_ADDR="$addr" \
    rdmacoll-hello --expect 2 >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 0
  wait $rank0; rc=$?
  cp "$tmp/err0" "$tmp/err"
  expect_rc 0
  expect_out err "TCP store: refusing 127.0.0.1:[0-9]*: .*authentication failed"
  expect_out out0 "rank 0 of 2 .*reached all 2 ranks"
  ;;
*)
  echo "unknown case '$case_'"; exit 1
  ;;
esac
echo "PASS: $case_"
