#!/usr/bin/env bash
# What gradient compression gains where the link is slow: rdmacoll-allreduce-perf with and
# without --compress on 2 and 4 ranks behind links of 100mbit and 1gbit made by
# `rdmacoll-run --link` (a network namespace per rank, tbf on both directions of each rank's
# veth; UCX over tcp), in one run. For each codec and size it prints the effective busbw (the
# fp32 bytes over the time, what the training step sees), the plain allreduce's busbw on the
# same link, the compression ratio the transport's byte counters measured, and the issue's
# goal: effective >= 0.8 x ratio x plain. Needs root.
# usage: bench/compress_link.sh [BUILD_DIR] [--quick]
#   --quick   1 MiB and 4 MiB only, 2 timed calls, one round; the default adds 16 MiB, takes 3
#             timed calls (after 5 untimed ones, as with --quick) and runs every link's set
#             (plain, then each codec) in 3 alternating rounds, each point the median of its
#             rounds (a single round's short compressed runs moved up to 2x between runs of
#             this script on a loaded 2-core machine)
#   COMPRESS_LINK_ROUNDS=N   rounds instead of 3 (1 with --quick)
#   COMPRESS_LINK_OUT=FILE   write there instead of bench/results/compress_link.txt
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build QUICK=""
for a in "$@"; do
  case $a in
    --quick) QUICK=quick ;;
    -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "compress_link.sh: unknown option '$a'" >&2; exit 2 ;;
    *) BUILD=$(cd "$a" && pwd) || exit 2 ;;
  esac
done
OUT=${COMPRESS_LINK_OUT:-$ROOT/bench/results/compress_link.txt}
RUN=$BUILD/tools/rdmacoll-run PERF=$BUILD/tools/rdmacoll-allreduce-perf
[ "$(id -u)" = 0 ] || { echo "compress_link.sh: needs root (rdmacoll-run --link builds network namespaces)" >&2; exit 2; }
for f in "$RUN" "$PERF"; do [ -x "$f" ] || { echo "compress_link.sh: $f is missing: build first" >&2; exit 2; }; done
# Five untimed calls first (the tool's and nccl-tests' default): behind a throttled link the first
# three or four calls of a run are slower while TCP opens its window (top-k, 2 ranks, 100mbit,
# 1 MiB: 3.4-3.7 ms a call, then 1.5), which three timed calls after one warm-up took in.
if [ -n "$QUICK" ]; then sweep=(-b 1M -e 4M -f 4 -n 2 -w 5) rounds=1; else sweep=(-b 1M -e 16M -f 4 -n 3 -w 5) rounds=3; fi
rounds=${COMPRESS_LINK_ROUNDS:-$rounds}
case $rounds in ''|*[!0-9]*|0) echo "compress_link.sh: COMPRESS_LINK_ROUNDS '$rounds' is not a positive whole number" >&2; exit 2 ;; esac
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
  echo "# $rounds round(s) per link: plain, then each codec, again; plain and eff are each the median of"
  echo "# the rounds (range: the lowest and highest eff); ratio and relerr from the first round."
  for rate in 100mbit 1gbit; do
    for ranks in 2 4; do
      for round in $(seq 1 "$rounds"); do
        base=$TMP/plain-$rate-$ranks-$round.json
        perf_json "$base" "$ranks" "$rate" || { echo "plain run failed:"; cat "$base.err"; status=1; }
        for codec in "${codecs[@]}"; do
          perf_json "$TMP/$codec-$rate-$ranks-$round.json" "$ranks" "$rate" --compress "$codec" ||
            { echo "--compress $codec failed:"; cat "$TMP/$codec-$rate-$ranks-$round.json.err"; status=1; }
        done
      done
      echo
      echo "## link $rate, $ranks ranks"
      python3 - "$TMP" "$rate" "$ranks" "$rounds" "${codecs[@]}" <<'EOF' || status=1
import json, os, statistics, sys
tmp, rate, ranks, rounds, codecs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]

def rows(name):
    """{size: [the out_of_place row of each round that has a result]}"""
    out = {}
    for k in range(1, rounds + 1):
        path = f"{tmp}/{name}-{rate}-{ranks}-{k}.json"
        if os.path.exists(path) and os.path.getsize(path) > 0:
            for r in json.load(open(path))["rows"]:
                out.setdefault(r["size"], []).append(r["out_of_place"])
    return out

plain = {size: statistics.median(p["busbw_gbs"] for p in ps) for size, ps in rows("plain").items()}
print(f"{'codec':>10} {'bytes':>9} {'plain':>8} {'eff':>8} {'gain':>7} {'ratio':>7} {'goal':>7} {'relerr':>9} {'comp':>4}"
      f"  {'eff range':>15}  verdict")
for codec in codecs:
    got = rows(codec)
    if not got:
        print(f"{codec:>10}  (no result)")
        continue
    for size, ps in sorted(got.items()):
        effs = [p["busbw_gbs"] for p in ps]
        eff, first = statistics.median(effs), ps[0]
        ratio = first["compression_ratio"]
        base_bw = plain.get(size, 0.0)
        gain = eff / base_bw if base_bw > 0 else float("nan")
        comp = first.get("compressed", True)
        goal = 0.8 * ratio if comp else 0.8
        verdict = "met" if gain >= goal else "NOT met"
        if len(ps) < rounds:
            verdict += f" ({len(ps)} of {rounds} rounds)"
        spread = f"{min(effs):.4f}-{max(effs):.4f}"
        print(f"{codec:>10} {size:>9} {base_bw:8.4f} {eff:8.4f} {gain:7.2f} {ratio:7.2f} {goal:7.2f} {first['relerr']:9.2e}"
              f" {'yes' if comp else 'no':>4}  {spread:>15}  {verdict}")
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
