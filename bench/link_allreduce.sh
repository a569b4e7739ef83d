#!/usr/bin/env bash
# rdmacoll-allreduce-perf (float sum, every element checked) on 2 and 4 ranks behind links of
# 100mbit and 1gbit made by `rdmacoll-run --link` (one network namespace per rank, tbf on both
# directions of each rank's veth; UCX over tcp): the uncompressed baseline that the gradient
# compression benchmark is to be compared with. Needs root. Besides the allreduce rows it
# measures the raw link with rdmacoll-bw (UCX tagged send of 1 MiB messages, 2 ranks), so the
# busbw column can be read against what the link actually carries.
# usage: bench/link_allreduce.sh [BUILD_DIR] [--quick]
#   --quick   sizes 8 B .. 16 MiB by x8 and 3 timed calls per size (1 warm-up); the default is
#             8 B .. 64 MiB by x4 and 5 timed calls, which takes several minutes at 100mbit
#   LINK_ALLREDUCE_OUT=FILE   write there instead of bench/results/link_allreduce.txt
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build QUICK=""
for a in "$@"; do
  case $a in
    --quick) QUICK=quick ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "link_allreduce.sh: unknown option '$a'" >&2; exit 2 ;;
    *) BUILD=$(cd "$a" && pwd) || exit 2 ;;
  esac
done
OUT=${LINK_ALLREDUCE_OUT:-$ROOT/bench/results/link_allreduce.txt}
RUN=$BUILD/tools/rdmacoll-run
[ "$(id -u)" = 0 ] || { echo "link_allreduce.sh: needs root (rdmacoll-run --link builds network namespaces)" >&2; exit 2; }
if [ -n "$QUICK" ]; then sweep=(-b 8 -e 16M -f 8 -n 3 -w 1); else sweep=(-b 8 -e 64M -f 4 -n 5 -w 2); fi
unset UCX_TLS UCX_NET_DEVICES RDMACOLL_TRANSPORT

# rank 0 prints the results; the other ranks' lines (UCX warnings, if any) are dropped.
strip() { sed -e '/^\[rank [1-9]/d' -e 's/^\[rank 0\] //'; }
{
  status=0
  echo "# bench/link_allreduce.sh $* on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# each run: ${RUN#"$ROOT"/} -n RANKS --link RATE --timeout 600 -- rdmacoll-allreduce-perf ${sweep[*]} -c 1"
  echo "# (UCX_TLS=tcp,self and UCX_NET_DEVICES=<the rank's veth>, set by --link; tbf on both ends of each"
  echo "# rank's veth: burst 3028 B up to 250mbit, 128 KiB above; latency 50ms; one TCP stream gets 94-96% of RATE)"
  for rate in 100mbit 1gbit; do
    echo
    echo "## link $rate: raw rate of the link, rdmacoll-bw --transport ucx -o send -s 1M, 2 ranks"
    n_bw=$([ "$rate" = 100mbit ] && echo 12 || echo 100)
    "$RUN" -n 2 --link $rate --timeout 120 -- "$BUILD/tools/rdmacoll-bw" --transport ucx -o send -s 1M \
      -n "$n_bw" -w 2 -t 2 --report-gbits 2>&1 | strip || status=1
    for ranks in 2 4; do
      echo
      echo "## link $rate, $ranks ranks: rdmacoll-allreduce-perf ${sweep[*]} -c 1"
      "$RUN" -n $ranks --link $rate --timeout 600 -- "$BUILD/tools/rdmacoll-allreduce-perf" "${sweep[@]}" -c 1 2>&1 | strip || status=1
    done
  done
  echo
  echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  exit $status
} | tee "$OUT"
status=${PIPESTATUS[0]}
echo "(written to ${OUT#"$ROOT"/})"
exit $status
