#!/usr/bin/env bash
# rdmacoll's main job, the README's first Quick start command: install what is needed, build,
# then train the MLP on Fashion-MNIST data-parallel on 4 local ranks over the collectives, once
# with plain fp32 gradients and once each with int8 and sign compression (error feedback), and
# print what compression saved on the wire (the transport's own byte counters) and what it cost
# in accuracy; as root, also the time it saves behind a 100mbit link (rdmacoll-run --link).
# Last, RDMA itself: on a host with an RDMA device, or else in the soft-RoCE guest, two
# processes connect RC queue pairs and move verified bytes with RDMA WRITE and SEND.
#
# usage: scripts/demo.sh [--build-dir DIR] [--skip-install]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
INSTALL=1
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) BUILD=$(realpath -m "$2"); shift 2 ;;
    --skip-install) INSTALL=0; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "scripts/demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\n=== %s\n' "$*"; }

[ $INSTALL = 0 ] || { say "installing dependencies"; bash "$ROOT/scripts/install-deps.sh"; }
say "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2

say "settings (rdmacoll-info --settings)"
"$BUILD/tools/rdmacoll-info" --settings
say "RDMA devices on this host (rdmacoll-info)"
"$BUILD/tools/rdmacoll-info" || true

DEMO=$(mktemp -d)
trap 'rm -rf "$DEMO"' EXIT
train() {  # NAME RUN-ARGS... -- TRAIN-ARGS...
  local name=$1; shift
  local run=()
  while [ "$1" != -- ]; do run+=("$1"); shift; done; shift
  "$BUILD/tools/rdmacoll-run" "${run[@]}" --no-prefix -- "$BUILD/tools/rdmacoll-train" --json "$DEMO/$name.json" "$@"
}
EPOCHS=${RDMACOLL_DEMO_EPOCHS:-3}
say "training on 4 local ranks over shared memory, $EPOCHS epochs each: fp32, int8, sign (rdmacoll-train)"
for codec in none int8 sign; do
  echo "--- --compress $codec"
  RDMACOLL_TRANSPORT=ucx UCX_TLS=sm,self train "$codec" -n 4 -- --epochs "$EPOCHS" --compress "$codec"
done
if [ "$(id -u)" = 0 ]; then
  say "the same behind a 100mbit link per rank (rdmacoll-run --link: network namespaces, tbf), 1 epoch of 12000 images"
  for codec in none int8 sign; do
    echo "--- --compress $codec, --link 100mbit"
    train "link-$codec" -n 4 --link 100mbit -- --epochs 1 --limit-train 12000 --compress "$codec"
  done
fi
say "what compression saved (wire bytes from the transport's counters, per rank and epoch)"
python3 - "$DEMO" <<'PY'
import json, os, sys
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
rows = [(c, load(c)) for c in ("none", "int8", "sign")]
base = rows[0][1]
print(f"{'codec':>6} {'test acc':>9} {'wire MB/epoch':>14} {'saved':>7} {'comm s/epoch':>13}   behind 100mbit: comm s/epoch")
for codec, r in rows:
    if r is None:
        continue
    ep = r["epochs"]
    wire = sum(e["wire_bytes"] for e in ep) / len(ep) / 1e6
    comm = sum(e["comm_s"] for e in ep) / len(ep)
    saved = base and sum(e["wire_bytes"] for e in base["epochs"]) / max(1, sum(e["wire_bytes"] for e in ep))
    link = load("link-" + codec)
    link_s = f"{link['epochs'][0]['comm_s']:.2f}" if link else "-"
    print(f"{codec:>6} {r['final_test_accuracy']:9.4f} {wire:14.2f} {saved:6.1f}x {comm:13.2f}   {link_s:>8}")
PY
if "$BUILD/tools/rdmacoll-info" --select >/dev/null 2>&1; then
  RUN=(env)
  say "this host has RDMA: running on its own device"
else
  RUN=("$ROOT/tests/guest/rdmacoll-guest" --)
  say "no RDMA on this host: booting the soft-RoCE guest (QEMU, Debian's kernel, rdma_rxe)"
fi
"${RUN[@]}" bash -c "
  set -e
  echo '--- devices and the device/port/GID rdmacoll picks'
  '$BUILD/tools/rdmacoll-info' && '$BUILD/tools/rdmacoll-info' --select
  echo '--- two processes: RC QPs, RDMA WRITE + SEND of 1 B .. 1 MiB+3, every byte verified'
  REQUIRE_RDMA_DEVICE=1 '$BUILD/tests/rdma/rdma_verbs_tests' --gtest_filter='VerbsMultiRank.*' --gtest_brief=1
  echo '--- done: RDMA traffic verified'
"
