#!/usr/bin/env bash
# rdmacoll's main job, the README's first Quick start command: install what is needed, build,
# then train the MLP on Fashion-MNIST data-parallel on 4 local ranks over the collectives, once
# with plain fp32 gradients and once each with int8 and sign compression (error feedback), and
# print what compression saved on the wire (the transport's own byte counters) and what it cost
# in accuracy; as root, also the time it saves behind a 100mbit link (rdmacoll-run --link). The
# summary (rdmacoll-train-summary) ends with where its plots are: accuracy against wire bytes and
# against time, one curve per codec (build/demo/plots/*.png).
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

DEMO=$BUILD/demo  # the runs' JSON logs and the plots, kept for a look afterwards
rm -rf "$DEMO" && mkdir -p "$DEMO"
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
  extra=()
  [ "$codec" = none ] && extra=(--prune 0.5 --quantize-weights int8)  # and what shrinking the model costs
  RDMACOLL_TRANSPORT=ucx UCX_TLS=sm,self train "$codec" -n 4 -- --epochs "$EPOCHS" --compress "$codec" "${extra[@]}"
done
if [ "$(id -u)" = 0 ]; then
  say "the same behind a 100mbit link per rank (rdmacoll-run --link: network namespaces, tbf), 1 epoch of 12000 images"
  for codec in none int8 sign; do
    echo "--- --compress $codec, --link 100mbit"
    train "link-$codec" -n 4 --link 100mbit -- --epochs 1 --limit-train 12000 --compress "$codec"
  done
fi
# rdmacoll-train-summary: one row per run (wire bytes from the transport's counters) and the plots.
say "what compression saved and cost, over shared memory (rdmacoll-train-summary)"
"$BUILD/tools/rdmacoll-train-summary" --plots "$DEMO/plots" "$DEMO"/{none,int8,sign}.json
if [ -f "$DEMO/link-none.json" ]; then
  say "and behind the 100mbit link (1 epoch of 12000 images: too short to reach 0.87)"
  "$BUILD/tools/rdmacoll-train-summary" --plots "$DEMO/link-plots" "$DEMO"/link-{none,int8,sign}.json
fi
echo "# the runs' JSON logs are in $DEMO; open the PNGs above to see accuracy against bytes and time"
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
  REQUIRE_RDMA_DEVICE=1 '$BUILD/tests/rdma/rdma_verbs_tests' --gtest_filter='VerbsMultiRank.RcWriteThenSendVerifiesEveryByte' --gtest_brief=1
  echo '--- done: RDMA traffic verified'
"
