#!/usr/bin/env bash
# Installs every Debian 12 package petrel's build, tests, benchmarks and default guest need.
# Safe to run any number of times; needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential meson ninja-build pkg-config clang clang-format lld
  linux-libc-dev libboost1.74-dev libfmt-dev libspdlog-dev nlohmann-json3-dev catch2
  liburing-dev libseccomp-dev libsystemd-dev libclang-rt-14-dev
  # tests and benchmarks
  curl iproute2 python3 qemu-system-x86 procps e2fsprogs fio iputils-ping
  acpica-tools python3-prometheus-client systemd
  # guest kernel and initramfs (scripts/build-guest-kernel.sh, build-initramfs.sh,
  # prepare-stock-kernel.sh)
  linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils gzip lz4 busybox-static
  file binutils kmod
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
