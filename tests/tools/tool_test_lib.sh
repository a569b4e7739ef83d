# Sourced by the tools' test scripts (perf_tools_test.sh, coll_perf_test.sh) after they set
# build and on_rdma: a clean launch environment, a scratch directory, failure reporting that
# shows every output file, and the skip (77) without an RDMA device where one is needed.
# Sets tmp (removed on exit) and dev (the RDMA device under test, rdma runs only).
# shellcheck shell=bash
unset RDMACOLL_RANK RDMACOLL_WORLD_SIZE RDMACOLL_ADDR OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE \
      SLURM_PROCID SLURM_NTASKS RANK WORLD_SIZE
export RDMACOLL_TIMEOUT=${RDMACOLL_TIMEOUT:-30}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/$(basename "$0" .sh).XXXXXX") || exit 1
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $(basename "$f")"; head -c 6000 "$f"; }; done; exit 1; }
expect_rc() { [ "$rc" = "$1" ] || fail "exit status $rc, expected $1 ($2)"; }
expect_in() { grep -q -e "$2" "$tmp/$1" || fail "no line matching '$2' in $1"; }

dev=
if [ "$on_rdma" = rdma ]; then
  if ! "$build/tools/rdmacoll-info" --select >/dev/null 2>&1; then
    [ "${REQUIRE_RDMA_DEVICE:-0}" = 1 ] && { echo "FAIL: no RDMA device, but REQUIRE_RDMA_DEVICE=1"; exit 1; }
    echo "SKIP: no RDMA device on this host; runs in the soft-RoCE guest"; exit 77
  fi
  dev=${RXE_DEVICE:-$("$build/tools/rdmacoll-info" --select 2>/dev/null | sed -n 's/^selected: \([^:]*\):.*/\1/p')}
fi
