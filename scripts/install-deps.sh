#!/usr/bin/env bash
# Install everything rdmacoll needs from Debian's packages. Idempotent: packages already
# present are skipped, and the guest kernel is unpacked only once.
#
#   scripts/install-deps.sh            # everything (build, tests, soft-RoCE guest, data set)
#
# The soft-RoCE guest boots Debian's own kernel. Instead of installing linux-image-amd64 into
# the host (which runs update-initramfs and touches /boot), the kernel package is downloaded and
# unpacked into $RDMACOLL_KERNEL_DIR (default /var/cache/rdmacoll/kernel), a folder this project
# owns; the guest loads its modules from there with `modprobe -d`.
set -euo pipefail

say() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it calls apt-get); try: sudo $0"
command -v apt-get >/dev/null || die "apt-get not found: rdmacoll's installer supports Debian 12 (bookworm)"

PACKAGES=(
  # toolchain
  build-essential g++ cmake pkg-config git
  # sanitizer builds (scripts/test.sh): clang, and its ASan/UBSan/TSan runtimes, which clang
  # only recommends (and recommends are not installed here)
  clang libclang-rt-dev
  # RDMA and UCX
  libibverbs-dev librdmacm-dev rdma-core ibverbs-providers ibverbs-utils perftest
  libucx-dev ucx-utils
  # launchers
  openmpi-bin libopenmpi-dev
  # allreduce comparison peers (bench/peers): Gloo; MPI is the line above
  libgloo-dev
  # math, tests, compression
  libeigen3-dev googletest libgtest-dev libgmock-dev zlib1g-dev
  # bootstrap authentication (HMAC-SHA256 with the job token)
  libssl-dev
  # fuzzing the network parsers (libFuzzer and the sanitizers come with clang)
  clang libclang-rt-dev
  # test and benchmark scripts (JSON checks, output parsing; the trainer's plots)
  python3 gnuplot-nox
  # soft-RoCE guest (kernel is unpacked separately, see below)
  qemu-system-x86 busybox-static kmod iproute2 cpio xz-utils gzip util-linux procps
  # training data
  dataset-fashion-mnist
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${#missing[@]} package(s): ${missing[*]}"
  stamp=/var/lib/apt/lists/.rdmacoll-updated
  if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
    say "apt-get update"
    apt-get update -q || die "apt-get update failed: check /etc/apt/sources.list.d and the network to Debian's archive"
    touch "$stamp"
  fi
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    # Say exactly which package failed instead of leaving the user to read apt's log.
    for p in "${missing[@]}"; do
      apt-get install -y -q --no-install-recommends "$p" >/dev/null 2>&1 || die "could not install Debian package '$p' (apt-get install $p)"
    done
  fi
else
  say "all ${#PACKAGES[@]} packages already installed"
fi

# ---- Guest kernel: Debian's linux-image, unpacked into a folder we own -------------------------
KDIR=${RDMACOLL_KERNEL_DIR:-/var/cache/rdmacoll/kernel}
if ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1 && [ -e "$KDIR/.complete" ]; then
  say "guest kernel already unpacked in $KDIR ($(basename "$(ls "$KDIR"/boot/vmlinuz-* | head -1)"))"
else
  # linux-image-amd64 is a metapackage; its Depends names the versioned image package.
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || { apt-get update -q; kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
  [ -n "$kpkg" ] || die "cannot resolve Debian package 'linux-image-amd64' to a kernel image package"
  say "downloading guest kernel $kpkg into $KDIR"
  rm -rf "$KDIR"; mkdir -p "$KDIR/deb"
  (cd "$KDIR/deb" && apt-get download -q "$kpkg") || die "could not download Debian package '$kpkg' (apt-get download $kpkg)"
  dpkg -x "$KDIR"/deb/*.deb "$KDIR" || die "could not unpack $kpkg"
  rm -rf "$KDIR/deb"
  kver=$(ls "$KDIR/lib/modules" | sort -V | tail -1)
  say "running depmod for $kver"
  depmod -b "$KDIR" "$kver" || die "depmod -b $KDIR $kver failed"
  touch "$KDIR/.complete"
fi

say "done"
