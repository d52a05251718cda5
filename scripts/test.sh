#!/usr/bin/env bash
# Runs petrel's whole test suite from a fresh clone: installs the Debian packages it needs,
# configures and builds, then runs every test (unit tests and KVM tests that boot the
# project's test guests). With --sanitize the same tests run in a separate build with
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
  esac
done

./scripts/install-deps.sh
# The Linux guests the KVM tests boot (cached under guest-cache/, rebuilt only on change).
./scripts/build-guest-kernel.sh
./scripts/build-initramfs.sh
./scripts/build-disk-image.sh
if [ ! -e /sys/module/kvm_pvm ]; then
  # Stock-kernel tests need guest user space: they run on hardware KVM only (skipped on PVM).
  ./scripts/prepare-stock-kernel.sh
fi

if [ "$sanitize" -eq 1 ]; then
  dir=build-asan
  opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  dir=build
  opts=()
fi

if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir"
if [ "$sanitize" -eq 1 ]; then
  # Under the sanitizers, leave out the three slowest Linux boots (>4 GiB RAM, SMP, bzImage:
  # ~5 min of emulated guest time, boot paths the normal pass covers) so CI stays within
  # its 40 minutes; every other test, Linux ones included, runs here too.
  mapfile -t tests < <(meson test -C "$dir" --list 2>/dev/null | sed 's|^.* / ||' |
    grep -vxE 'linux-vmlinux-4\.5g|linux-vmlinux-smp|linux-bzimage')
  meson test -C "$dir" --print-errorlogs "${tests[@]}"
else
  meson test -C "$dir" --print-errorlogs
fi
