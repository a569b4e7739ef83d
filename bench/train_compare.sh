#!/usr/bin/env bash
# What each gradient codec saves and costs in real training: rdmacoll-train (the 784-256-128-10
# MLP on Fashion-MNIST, batch 256, lr 0.1 cosine, momentum 0.9, weight decay 5e-4, --overlap) on
# 4 local ranks with every codec (none, fp16, bf16, int8, qsgd:4, sign with and without error
# feedback, topk:0.01, powersgd:4, powersgd:1), once on the unthrottled local link (UCX's own
# choice, shared memory or tcp over lo) and once behind `rdmacoll-run --link 100mbit` (a network
# namespace per rank, tbf; UCX over tcp; needs root). The fp32 run also reports the model pruned
# to 50% and with int8 weights. Writes the command, the machine's load, the summary tables
# (rdmacoll-train-summary), the JSON logs, the trainers' output and the plots under OUT.
# usage: bench/train_compare.sh [--build-dir DIR] [--epochs N] [--link-epochs N] [--link RATE]
#                               [--no-link] [--codecs LIST] [--limit-train N] [--torch] [--out DIR]
#   --epochs N        epochs of every run (default 15, issue 7's recipe)
#   --link-epochs N   epochs of the runs behind the link (default: --epochs)
#   --link RATE       the slow link (default 100mbit); --no-link: only the unthrottled runs
#   --codecs LIST     comma-separated, e.g. none,int8,sign,sign-noef (default: all of the above;
#                     sign-noef is sign without error feedback)
#   --limit-train N   train on the first N images only (a quick try of the script)
#   --torch           also PyTorch 1.13 DDP over gloo (bench/peers/ddp_train.py: the same MLP, data,
#                     batch, optimizer and ranks) plain, with its fp16 hook and PowerSGD ranks 4 and 1;
#                     installs Debian's python3-torch if missing (large: about 200 packages)
#   --out DIR         default bench/results/train_compare (its summary: DIR.txt beside it)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build EPOCHS=15 LINK_EPOCHS="" RATE=100mbit OUT=$ROOT/bench/results/train_compare
LIMIT=() TORCH=0
CODECS=none,fp16,bf16,int8,qsgd:4,sign,sign-noef,topk:0.01,powersgd:4,powersgd:1
CMDLINE="bench/train_compare.sh $*"
die() { echo "train_compare.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD=$(cd "$2" && pwd) || exit 2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --link-epochs) LINK_EPOCHS=$2; shift 2 ;;
    --link) RATE=$2; shift 2 ;;
    --no-link) RATE=""; shift ;;
    --codecs) CODECS=$2; shift 2 ;;
    --limit-train) LIMIT=(--limit-train "$2"); shift 2 ;;
    --torch) TORCH=1; shift ;;
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
LINK_EPOCHS=${LINK_EPOCHS:-$EPOCHS}
for n in "$EPOCHS" "$LINK_EPOCHS"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "epochs '$n' is not a positive number"; done
RUN=$BUILD/tools/rdmacoll-run TRAIN=$BUILD/tools/rdmacoll-train SUMMARY=$BUILD/tools/rdmacoll-train-summary
for f in "$RUN" "$TRAIN" "$SUMMARY"; do [ -x "$f" ] || die "$f is missing: build first (cmake --build $BUILD)"; done
[ -z "$RATE" ] || [ "$(id -u)" = 0 ] || die "--link $RATE needs root (network namespaces); or --no-link"
IFS=, read -r -a codecs <<<"$CODECS"
if [ $TORCH = 1 ] && ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || die "--torch: python3-torch is not installed, and installing it needs root"
  echo "train_compare.sh: installing python3-torch for --torch" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch >&2 ||
    die "--torch: apt-get install python3-torch failed"
fi
unset UCX_TLS UCX_NET_DEVICES RDMACOLL_TRANSPORT
TXT=$OUT.txt
rm -rf "$OUT"
mkdir -p "$OUT"

# One run: NAME DIR EPOCHS CODEC [RUN-ARGS...]; its JSON log, CSV and output in DIR.
train() {
  local name=$1 dir=$2 epochs=$3 codec=$4; shift 4
  local args=(--epochs "$epochs" "${LIMIT[@]}" --overlap --json "$dir/$name.json" --csv "$dir/$name.csv")
  case $codec in
    sign-noef) args+=(--compress sign --no-error-feedback) ;;
    none) args+=(--compress none --prune 0.5 --quantize-weights int8) ;;
    *) args+=(--compress "$codec") ;;
  esac
  echo "#   rdmacoll-run -n 4 ${*:+$* }-- rdmacoll-train ${args[*]/#$dir\//}" >>"$dir/commands.txt"
  "$RUN" -n 4 "$@" --no-prefix -- "$TRAIN" "${args[@]}" >"$dir/$name.out" 2>&1
}

# All codecs in one setting: LABEL EPOCHS [RUN-ARGS...]
setting() {
  local label=$1 epochs=$2; shift 2
  local dir=$OUT/$label logs=() status=0
  mkdir -p "$dir"
  for codec in "${codecs[@]}"; do
    local name=${codec//[:.]/_}
    local t0=$SECONDS
    if train "$name" "$dir" "$epochs" "$codec" "$@"; then
      logs+=("$dir/$name.json")
      echo "  $label $codec: $((SECONDS - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    else
      echo "## --compress $codec failed ($label):"; tail -5 "$dir/$name.out"; status=1
    fi
  done
  if [ $TORCH = 1 ]; then
    for hook in none fp16 powersgd:4 powersgd:1; do
      local name=ddp_${hook//:/_} t0=$SECONDS
      local args=(--hook "$hook" --epochs "$epochs" "${LIMIT[@]}" --json "$dir/$name.json")
      echo "#   rdmacoll-run -n 4 ${*:+$* }-- python3 bench/peers/ddp_train.py ${args[*]/#$dir\//}" >>"$dir/commands.txt"
      if "$RUN" -n 4 "$@" --no-prefix -- /usr/bin/python3 "$ROOT/bench/peers/ddp_train.py" "${args[@]}" >"$dir/$name.out" 2>&1; then
        logs+=("$dir/$name.json")
        echo "  $label DDP $hook: $((SECONDS - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
      else
        echo "## DDP --hook $hook failed ($label):"; tail -5 "$dir/$name.out"; status=1
      fi
    done
  fi
  echo
  echo "## $label, 4 ranks, $epochs epochs"
  cat "$dir/commands.txt"
  [ ${#logs[@]} -gt 0 ] && "$SUMMARY" --plots "$dir/plots" "${logs[@]}" | sed "s|$ROOT/||g" || status=1
  return $status
}

{
  status=0
  echo "# $CMDLINE"
  echo "# on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# load at start: $(uptime)"
  echo "# the machine is shared: accuracy and bytes do not depend on the load, times do"
  setting unthrottled "$EPOCHS" || status=1
  if [ -n "$RATE" ]; then setting "link-$RATE" "$LINK_EPOCHS" --link "$RATE" || status=1; fi
  echo
  echo "# load at end: $(uptime)"
  exit $status
} | tee "$TXT"
status=${PIPESTATUS[0]}
echo "train_compare.sh: wrote $TXT and $OUT/" >&2
exit "$status"
