#!/usr/bin/env bash
# rdmacoll-codec-bench as users run it: a tiny run of every codec with --json (validated by
# check_codec_json.py), the table, and bad flags (usage on stderr, exit 2).
# usage: codec_bench_test.sh BUILD_DIR
set -u
build=$1
here=$(cd "$(dirname "$0")" && pwd)
bench=$build/tools/rdmacoll-codec-bench
on_rdma=
. "$here/tool_test_lib.sh"

codecs="none,fp16,bf16,int8:256,sign:64,qsgd:4:512,terngrad:512,topk:0.01,randk:0.5"
"$bench" --size 4K --iters 2 --warmup 1 --codecs "$codecs" --json >"$tmp/json" 2>"$tmp/err"; rc=$?
expect_rc 0 "--json run"
python3 "$here/check_codec_json.py" "$tmp/json" 4096 "$codecs" >"$tmp/check" || fail "$(cat "$tmp/check")"
for simd in portable avx2; do
  if [ $simd = avx2 ] && ! grep -q avx2 /proc/cpuinfo; then continue; fi
  "$bench" --size 1K --iters 1 --simd $simd --json >"$tmp/json-$simd" 2>"$tmp/err"; rc=$?
  expect_rc 0 "--simd $simd"
  grep -q "\"simd\": \"$simd\"" "$tmp/json-$simd" || fail "--simd $simd not reported"
done

"$bench" --size 64KiB --iters 2 >"$tmp/table" 2>"$tmp/err"; rc=$?
expect_rc 0 "table run"
expect_in table "^codec  *wire bytes  *ratio  *enc GB/s  *dec GB/s  *enc+dec GB/s  *x memcpy  *goal"
expect_in table "^memcpy  *65536  *1.00 "
expect_in table "^fp16  *32768  *2.00 .* 0.50 \(met\|not met\)$"
expect_in table "^sign:256  *"

"$bench" --help >"$tmp/out" 2>"$tmp/err"; rc=$?
expect_rc 0 "--help"
expect_in out "^usage: rdmacoll-codec-bench"
for bad in "--bogus" "--size" "--size 3" "--size 12Q" "--iters 0" "--warmup x" "--simd sse" "--codecs int9" \
           "--codecs powersgd:2" "extra"; do
  # shellcheck disable=SC2086
  "$bench" $bad >"$tmp/out" 2>"$tmp/err"; rc=$?
  expect_rc 2 "$bad"
  [ -s "$tmp/out" ] && fail "'$bad' wrote to stdout"
  grep -q "usage: rdmacoll-codec-bench\|codec '" "$tmp/err" || fail "'$bad': no usage or codec message on stderr"
done
echo PASS
