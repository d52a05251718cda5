#!/usr/bin/env bash
# petrel's main job on a fresh machine: installs what it needs, builds petrel and the
# project's own guests, and boots the default guest with its console on this terminal.
# Extra arguments go to `petrel run` (e.g. --vcpus 2 --memory 512M).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh >/dev/null
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
# Only what the demo runs: petrel and the guest (scripts/test.sh builds everything).
ninja -C build petrel tests/guest/sysinfo.elf >/dev/null

exec ./build/petrel run --kernel build/tests/guest/sysinfo.elf \
  --cmdline "console=ttyS0 petrel.demo=1" "$@"
