#!/usr/bin/env bash
# Progress modes with as many ranks as cores (2) and with more ranks than cores (4 on this
# 2-core machine): the ranks pass an 8-byte message round a ring (UCX over shared memory and
# over TCP loopback), once per progress mode. Prints microseconds per lap and each mode's ratio
# to poll mode in the same run.
# usage: bench/progress_modes.sh [BUILD_DIR]   (writes bench/results/progress_modes.txt)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
OUT=$ROOT/bench/results/progress_modes.txt
run() { "$BUILD/tools/rdmacoll-run" --no-prefix --timeout 300 -n "$1" -- "$BUILD/bench/progress_bench" 2000 8; }
{
  echo "# bench/progress_modes.sh on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
  for ranks in 2 4; do
  for tls in sm tcp; do
    declare -A lap=()
    for mode in poll block adaptive; do
      line=$(UCX_TLS=$tls,self UCX_NET_DEVICES=$([ $tls = tcp ] && echo lo || echo all) RDMACOLL_TRANSPORT=ucx \
             RDMACOLL_PROGRESS=$mode run $ranks | grep 'us per lap' | sed 's/ (ucx.*)$//')
      echo "$line"
      lap[$mode]=$(sed -n 's/.*: \([0-9.]*\) us per lap.*/\1/p' <<<"$line")
    done
    for mode in block adaptive; do
      awk -v m=$mode -v t=$tls -v a="${lap[$mode]}" -v p="${lap[poll]}" \
        -v n=$ranks 'BEGIN { printf "ratio %s/poll, %d ranks over %s: %.4f (below 1: faster than spinning)\n", m, n, t, a / p }'
    done
  done
  done
} | tee "$OUT"
echo "(command: bench/progress_modes.sh; written to bench/results/progress_modes.txt)"
