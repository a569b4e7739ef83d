#!/usr/bin/env bash
# rdmacoll-train as users run it: short runs on 2 local ranks over UCX (6000 training and 2000
# test images, one epoch, a few seconds each) with the JSON log validated by
# check_train_json.py, the replica check catching a perturbed rank, and bad usage.
# usage: train_test.sh CASE BUILD_DIR
#   CASE: int8 | none | overlap | powersgd | sparse | mpirun | diverged (and mismatched flags) | usage
#         | summary (rdmacoll-train-summary's table, --prune, --quantize-weights, --no-error-feedback)
#         | plots (its PNGs, made by gnuplot)
set -u
case_=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd)
train=$build/tools/rdmacoll-train
summary=$build/tools/rdmacoll-train-summary
run=$build/tools/rdmacoll-run
on_rdma=
. "$here/tool_test_lib.sh"
data=${RDMACOLL_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
short="--epochs 1 --limit-train 6000 --limit-test 2000"

need_data() {
  [ -f "$data/train-images-idx3-ubyte.gz" ] || [ -f "$data/train-images-idx3-ubyte" ] ||
    { echo "SKIP: no Fashion-MNIST in $data (apt-get install dataset-fashion-mnist)"; exit 77; }
}

# train2 NAME ARGS...: a 2-rank run with --json $tmp/NAME.json, output in $tmp/NAME.{out,err}.
train2() {
  local name=$1; shift
  # shellcheck disable=SC2086
  "$run" -n 2 --timeout 60 -- "$train" --data "$data" $short --json "$tmp/$name.json" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err"; rc=$?
}

check() {  # check NAME COMPRESS MIN_ACC [MIN_RATIO MAX_RATIO]
  local name=$1; shift
  python3 "$here/check_train_json.py" "$tmp/$name.json" 2 "${epochs:-1}" "$@" >"$tmp/$name.check" || fail "$(cat "$tmp/$name.check")"
}

case $case_ in
  int8)
    need_data
    train2 int8 --compress int8 --csv "$tmp/int8.csv"; expect_rc 0 "--compress int8"
    check int8 int8:256 0.6 3.5 4.1
    expect_in int8.out "^\[rank 0\] # compress int8:256, 1 bucket(s) (--bucket-mb 25.00), batch 256"
    expect_in int8.out "^\[rank 0\] #  epoch  train_loss  test_acc"
    expect_in int8.out "^\[rank 0\]  *1  *[0-9.]*  *0\.[6-9]"
    expect_in int8.csv "^epoch,train_loss,test_accuracy,"
    [ "$(wc -l <"$tmp/int8.csv")" = 2 ] || fail "int8.csv: expected a header and one row"
    ;;
  none)
    need_data
    train2 none --compress none; expect_rc 0 "--compress none"
    check none none 0.6 0.9 1.05
    ;;
  overlap)
    need_data
    # One bucket per layer (--bucket-mb 0): three calls per step, in flight together with --overlap.
    train2 plain --compress int8 --bucket-mb 0; expect_rc 0 "--compress int8 --bucket-mb 0"
    train2 overlap --compress int8 --overlap --bucket-mb 0; expect_rc 0 "--compress int8 --overlap --bucket-mb 0"
    check overlap int8:256 0.6 3.5 4.1
    buckets=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["buckets"])' "$tmp/overlap.json")
    [ "$buckets" = 3 ] || fail "--bucket-mb 0: expected 3 buckets (one per layer) in the JSON log, got $buckets"
    expect_in overlap.out "^\[rank 0\] # compress int8:256, 3 bucket(s) (--bucket-mb 0.00), overlap"
    # Overlapping changes when the calls run, not what they compute: the same weights.
    d1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["digest"])' "$tmp/plain.json")
    d2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["digest"])' "$tmp/overlap.json")
    [ "$d1" = "$d2" ] || fail "--overlap changed the trained weights: digest $d2, without it $d1"
    ;;
  powersgd)
    need_data
    train2 powersgd --compress powersgd:2 --overlap; expect_rc 0 "--compress powersgd:2"
    check powersgd powersgd:2 0.6 20 200
    ;;
  sparse)
    need_data
    # topk on 3 ranks, buckets overlapped: the sparse codecs' allgather scheme with calls of
    # different sizes in flight together (their staging buffers were once freed under them).
    "$run" -n 3 --timeout 60 -- "$train" --data "$data" $short --compress topk:0.01 --overlap --bucket-mb 0 \
      --json "$tmp/sparse.json" >"$tmp/sparse.out" 2>"$tmp/sparse.err"; rc=$?
    expect_rc 0 "--compress topk:0.01 on 3 ranks"
    python3 "$here/check_train_json.py" "$tmp/sparse.json" 3 1 topk:0.01 0.5 20 100 >"$tmp/sparse.check" ||
      fail "$(cat "$tmp/sparse.check")"
    ;;
  mpirun)
    need_data
    command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
    addr=$("$run" --no-prefix -n 1 -- sh -c 'echo "$RDMACOLL_ADDR"') || fail "cannot get a free port"
    mpirun --allow-run-as-root --oversubscribe -np 2 -x RDMACOLL_ADDR="$addr" -x UCX_TLS -x RDMACOLL_TIMEOUT \
      "$train" --data "$data" --epochs 1 --limit-train 3000 --limit-test 1000 --compress bf16 \
      --json "$tmp/mpi.json" >"$tmp/mpi.out" 2>"$tmp/mpi.err"; rc=$?
    expect_rc 0 "mpirun -np 2"
    python3 "$here/check_train_json.py" "$tmp/mpi.json" 2 1 bf16 0.5 1.7 2.1 >"$tmp/mpi.check" ||
      fail "$(cat "$tmp/mpi.check")"
    ;;
  diverged)
    need_data
    # Rank 1's weights are nudged after the first epoch: every rank must stop with the named error.
    "$run" -n 3 --timeout 60 -- "$train" --data "$data" --epochs 2 --limit-train 1500 --limit-test 300 \
      --debug-perturb-rank 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 1 "a diverged replica"
    expect_in err "replicas diverged in epoch 1: the parameters of rank(s) 1 ([0-9a-f]*) differ from rank 0's"
    # Ranks started with different flags would issue different calls: refused before training.
    "$run" -n 2 --timeout 60 -- sh -c 'exec "$0" "$@" --seed $((3 + RDMACOLL_RANK))' "$train" --data "$data" \
      --epochs 1 --limit-train 600 >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 1 "ranks with different --seed"
    expect_in err "rank 1 was started with .*--seed 4' but rank 0 with .*--seed 3'"
    ;;
  summary)
    need_data
    epochs=2 short="--epochs 2 --limit-train 1200 --limit-test 500"
    train2 none --compress none --prune 0.5 --quantize-weights int8; expect_rc 0 "--compress none --prune 0.5"
    check none none 0.3
    train2 noef --compress sign --no-error-feedback; expect_rc 0 "--compress sign --no-error-feedback"
    check noef sign:256 0.1
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["run"]["error_feedback"] is not False)' \
      "$tmp/noef.json" || fail "noef.json: run.error_feedback is not false"
    expect_in none.out "^\[rank 0\] #  model    format *sparsity  test_acc    size(B)  smaller"
    expect_in none.out "^\[rank 0\] #  pruned   bitmap  *0\.50  *0\.[0-9]*  *[0-9]*  *1\.[0-9]*x"
    expect_in none.out "^\[rank 0\] #  int8     int8 per-row  *0\.00  *0\.[0-9]*  *[0-9]*  *3\.[0-9]*x"
    "$summary" --target 0.5 "$tmp/none.json" "$tmp/noef.json" >"$tmp/sum.out" 2>"$tmp/sum.err"; rc=$?
    expect_rc 0 "rdmacoll-train-summary"
    expect_in sum.out "^codec  *link  *ep test_acc  *vs fp32 wire MB/ep  *fewer B  *epoch s  *comm s  *to 0.5 (s) speed-up"
    expect_in sum.out "^none  *-  *2  *0\.[0-9]*  *+0\.00 pt  *[0-9.]*  *1\.0x "
    expect_in sum.out "^sign:256 no-EF  *-  *2  *0\.[0-9]* *[-+][0-9.]* pt  *[0-9.]*  *[0-9.]*x "
    expect_in sum.out "^none  *pruned  *bitmap  *0\.50 "
    # The fp32 row's accuracy is the JSON's final accuracy, and its post-training fp32 the same model's.
    acc=$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["final_test_accuracy"])' "$tmp/none.json")
    expect_in sum.out "^none  *-  *2  *$acc "
    expect_in sum.out "^none  *fp32  *dense  *0\.00  *$acc "
    "$summary" "$tmp/nowhere.json" >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 1 "a missing log"
    expect_in err "rdmacoll-train-summary: .*nowhere.json"
    "$summary" >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 2 "no logs"
    ;;
  plots)
    need_data
    command -v gnuplot >/dev/null || { echo "SKIP: gnuplot not found (apt-get install gnuplot-nox)"; exit 77; }
    short="--epochs 2 --limit-train 1200 --limit-test 500"
    train2 none --compress none; expect_rc 0 "--compress none"
    train2 int8 --compress int8; expect_rc 0 "--compress int8"
    "$summary" --plots "$tmp/plots" "$tmp/none.json" "$tmp/int8.json" >"$tmp/sum.out" 2>"$tmp/sum.err"; rc=$?
    expect_rc 0 "rdmacoll-train-summary --plots"
    for png in accuracy_vs_bytes accuracy_vs_time; do
      f=$tmp/plots/$png.png
      [ -s "$f" ] || fail "$png.png is missing or empty"
      [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png.png is not a PNG"
      [ "$(stat -c %s "$f")" -gt 10000 ] || fail "$png.png has only $(stat -c %s "$f") bytes"
      expect_in sum.out "^# plot: $f\$"
    done
    grep -q "title \"none (0\.[0-9]*)\"" "$tmp/plots/plots.gp" || fail "plots.gp has no curve titled none"
    ;;
  usage)
    "$train" --help >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 0 "--help"
    expect_in out "^usage: rdmacoll-run -n N rdmacoll-train"
    for bad in "--bogus" "--epochs" "--epochs 0" "--batch x" "--lr -1" "--momentum 2" "--schedule linear" \
               "--compress int9" "--compress powersgd:0" "--limit-train 0" "--timeout 0" "--csv f --json f" "extra" \
               "--prune 1" "--quantize-weights fp16" "--no-error-feedback"; do
      # shellcheck disable=SC2086
      "$train" $bad >"$tmp/out" 2>"$tmp/err"; rc=$?
      expect_rc 2 "$bad"
      [ -s "$tmp/out" ] && fail "'$bad' wrote to stdout"
      expect_in err "usage: rdmacoll-run -n N rdmacoll-train"
    done
    "$train" --epochs 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 2 "not launched"
    expect_in err "not launched"
    "$run" -n 2 --timeout 60 -- "$train" --batch 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ "$rc" = 1 ] || fail "--batch 1 on 2 ranks: exit status $rc, expected 1 (a rank exits 2)"
    expect_in err "is smaller than the 2 ranks"
    "$run" -n 2 --timeout 60 -- "$train" --data "$tmp/nowhere" >"$tmp/out" 2>"$tmp/err"; rc=$?
    expect_rc 1 "missing data set"
    expect_in err "nowhere/train-images-idx3-ubyte"
    expect_in err "dataset-fashion-mnist"
    ;;
  *) echo "unknown case $case_"; exit 2 ;;
esac
echo PASS
