#!/usr/bin/env bash
# rdmacoll's main job, the README's first Quick start command. For now it is the most complete
# end-to-end run the project has: install what is needed, build, show what rdmacoll sees on this
# host, run an allreduce on 4 local ranks with every element checked, then boot the soft-RoCE
# guest and run two processes that connect RC queue pairs over rxe0 and move verified bytes
# with RDMA WRITE and SEND.
# (The trainer demo replaces this once the collectives and the trainer exist.)
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

say "the collectives on 4 local ranks over shared memory: allreduce, every element checked (rdmacoll-allreduce-perf)"
RDMACOLL_TRANSPORT=ucx UCX_TLS=sm,self "$BUILD/tools/rdmacoll-run" -n 4 --no-prefix -- \
  "$BUILD/tools/rdmacoll-allreduce-perf" -b 8 -e 16M -f 16 -n 10 -w 2 -c 1 2>&1 | grep -v '^#  Rank'

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
