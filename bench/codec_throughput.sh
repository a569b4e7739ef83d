#!/usr/bin/env bash
# Compression codecs: encode + decode throughput of every codec in GB/s of fp32 input, next to
# memcpy of the same buffer in the same run (rdmacoll-codec-bench), once with the kernels the
# CPU gets by default (AVX2 where it has it) and once with the portable ones. The "goal" column
# is issue 6's (>= 0.5x memcpy for fp16, bf16, int8, sign; >= 0.25x for qsgd and top-k): figures
# to read, not assertions. Other jobs on the machine move the figures: the header gives the load.
# usage: bench/codec_throughput.sh [BUILD_DIR] [--quick]
#        (writes bench/results/codec_throughput.txt; --quick: 5 iterations instead of 20)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build ITERS=20
for a in "$@"; do
  case $a in
    --quick) ITERS=5 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "bench/codec_throughput.sh: unknown flag '$a'" >&2; exit 2 ;;
    *) BUILD=$(realpath -m "$a") ;;
  esac
done
OUT=$ROOT/bench/results/codec_throughput.txt
BENCH=$BUILD/tools/rdmacoll-codec-bench
CODECS=fp16,bf16,int8,sign,qsgd:4,qsgd:127,terngrad,topk:0.01,randk:0.01,none
{
  echo "# bench/codec_throughput.sh $* on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)," \
       "load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  for simd in auto portable; do
    echo
    echo "\$ rdmacoll-codec-bench --size 16M --iters $ITERS --codecs $CODECS --simd $simd"
    "$BENCH" --size 16M --iters "$ITERS" --codecs "$CODECS" --simd "$simd"
  done
  echo
  echo "# finished $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"
echo "(written to bench/results/codec_throughput.txt)"
