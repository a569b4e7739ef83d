#!/usr/bin/env bash
# What gradient compression gains where the link is slow: rdmacoll-allreduce-perf with and
# without --compress on 2 and 4 ranks behind links of 100mbit and 1gbit made by
# `rdmacoll-run --link` (a network namespace per rank, tbf on both directions of each rank's
# veth; UCX over tcp), in one run. For each codec and size it prints the effective busbw (the
# fp32 bytes over the time, what the training step sees), the plain allreduce's busbw on the
# same link, the compression ratio the transport's byte counters measured, and the issue's
# goal: effective >= 0.8 x ratio x plain. Needs root.
# usage: bench/compress_link.sh [BUILD_DIR] [--quick]
#   --quick   1 MiB and 4 MiB only, 2 timed calls; the default adds 16 MiB and takes 3 timed calls
#   COMPRESS_LINK_OUT=FILE   write there instead of bench/results/compress_link.txt
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build QUICK=""
for a in "$@"; do
  case $a in
    --quick) QUICK=quick ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "compress_link.sh: unknown option '$a'" >&2; exit 2 ;;
    *) BUILD=$(cd "$a" && pwd) || exit 2 ;;
  esac
done
OUT=${COMPRESS_LINK_OUT:-$ROOT/bench/results/compress_link.txt}
RUN=$BUILD/tools/rdmacoll-run PERF=$BUILD/tools/rdmacoll-allreduce-perf
[ "$(id -u)" = 0 ] || { echo "compress_link.sh: needs root (rdmacoll-run --link builds network namespaces)" >&2; exit 2; }
for f in "$RUN" "$PERF"; do [ -x "$f" ] || { echo "compress_link.sh: $f is missing: build first" >&2; exit 2; }; done
if [ -n "$QUICK" ]; then sweep=(-b 1M -e 4M -f 4 -n 2 -w 1); else sweep=(-b 1M -e 16M -f 4 -n 3 -w 1); fi
codecs=(int8 fp16 sign qsgd:4 topk:0.01 auto)
unset UCX_TLS UCX_NET_DEVICES RDMACOLL_TRANSPORT
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# One JSON document from rank 0 (the other ranks print nothing with -J).
perf_json() {  # FILE RANKS RATE ARGS...
  local file=$1 ranks=$2 rate=$3; shift 3
  "$RUN" -n "$ranks" --link "$rate" --timeout 900 --no-prefix -- "$PERF" "${sweep[@]}" -J "$@" >"$file" 2>"$file.err"
}

{
  status=0
  echo "# bench/compress_link.sh $* on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# each run: rdmacoll-run -n RANKS --link RATE -- rdmacoll-allreduce-perf ${sweep[*]} -J [--compress CODEC]"
  echo "# float sum, out of place; eff = fp32 bytes over time as busbw (2(n-1)/n), plain = the same without"
  echo "# --compress on the same link; ratio = the fp32 ring's bytes per rank / the bytes the transport counted;"
  echo "# goal: eff >= 0.8 x ratio x plain (auto: compresses only where it pays; 'no' = it declined)."
  for rate in 100mbit 1gbit; do
    for ranks in 2 4; do
      base=$TMP/plain-$rate-$ranks.json
      perf_json "$base" "$ranks" "$rate" || { echo "plain run failed:"; cat "$base.err"; status=1; continue; }
      for codec in "${codecs[@]}"; do
        perf_json "$TMP/$codec-$rate-$ranks.json" "$ranks" "$rate" --compress "$codec" ||
          { echo "--compress $codec failed:"; cat "$TMP/$codec-$rate-$ranks.json.err"; status=1; }
      done
      echo
      echo "## link $rate, $ranks ranks"
      python3 - "$base" "$rate" "$ranks" "${codecs[@]/#/$TMP/}" <<'EOF' || status=1
import json, os, sys
base, rate, ranks, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
plain = {r["size"]: r["out_of_place"]["busbw_gbs"] for r in json.load(open(base))["rows"]}
print(f"{'codec':>10} {'bytes':>9} {'plain':>8} {'eff':>8} {'gain':>7} {'ratio':>7} {'goal':>7} {'relerr':>9} {'comp':>4}  verdict")
for f in files:
    path = f + "-" + rate + "-" + ranks + ".json"
    codec = os.path.basename(f)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        print(f"{codec:>10}  (no result)")
        continue
    for r in json.load(open(path))["rows"]:
        p = r["out_of_place"]
        size, eff, ratio = r["size"], p["busbw_gbs"], p["compression_ratio"]
        base_bw = plain.get(size, 0.0)
        gain = eff / base_bw if base_bw > 0 else float("nan")
        comp = p.get("compressed", True)
        goal = 0.8 * ratio if comp else 0.8
        verdict = "met" if gain >= goal else "NOT met"
        print(f"{codec:>10} {size:>9} {base_bw:8.4f} {eff:8.4f} {gain:7.2f} {ratio:7.2f} {goal:7.2f} {p['relerr']:9.2e} {'yes' if comp else 'no':>4}  {verdict}")
EOF
    done
  done
  echo
  echo "# (plain, eff: GB/s, 1e9 B/s)  load average at end: $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  exit $status
} | tee "$OUT"
status=${PIPESTATUS[0]}
echo "(written to ${OUT#"$ROOT"/})"
exit $status
