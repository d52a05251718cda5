#!/usr/bin/env bash
# Builds guest-cache/initramfs.cpio.gz, the user space of petrel's Linux test guest:
# busybox-static and an /init that mounts proc, sysfs and devtmpfs, prints the marker line
# PETREL-INIT-OK and a few facts (kernel release, CPUs, MemTotal), then powers off.
# Also builds guest-cache/initramfs-tiny.cpio: an uncompressed archive of one /init script
# and a marker file, for kernel-space tests on hosts where user space cannot run (PVM): the
# kernel unpacks it in a blink, where the busybox archive costs a minute under an
# instruction emulator.
# Does nothing when the archive exists and was built by the same script from the same
# busybox-static version. See docs/guest-kernel.md.
set -euo pipefail

prog="build-initramfs"
# shellcheck source-path=SCRIPTDIR source=lib/guest-common.sh
. "$(dirname "$0")/lib/guest-common.sh"

out="$guest_cache/initramfs.cpio.gz"
tiny="$guest_cache/initramfs-tiny.cpio"
stamp="$guest_cache/.initramfs.stamp"

ensure_packages busybox-static cpio gzip file
bb_ver="$(pkg_version busybox-static)"
hash="$(printf 'busybox-static %s\n' "$bb_ver" |
  inputs_hash "$0" "$repo_root/scripts/lib/guest-common.sh")"
if up_to_date "$stamp" "$hash" "$out" && [ -f "$tiny" ]; then
  log "up to date: $(rel "$out") (busybox-static $bb_ver); nothing to do"
  exit 0
fi

lock_dir "$guest_cache"
rm -f "$stamp"
staging="$(mktemp -d "$guest_cache/.initramfs.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

stage_busybox "$staging"
cat >"$staging/init" <<'EOF'
#!/bin/sh
# petrel test guest /init (scripts/build-initramfs.sh): proves that Linux reached user
# space, reports a few facts on the console and powers the machine off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null # (DEVTMPFS_MOUNT does not cover an initramfs)
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
echo "PETREL-INIT-OK"
cpus=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ { print $2 " " $3 }' /proc/meminfo)
echo "petrel-init: uname -r: $(uname -r)"
echo "petrel-init: cpus: $cpus"
echo "petrel-init: MemTotal: $mem"
poweroff -f
# Not reached unless the power-off failed; do not let init exit (that is a kernel panic).
echo "petrel-init: poweroff -f failed"
while :; do sleep 3600; done
EOF
chmod 755 "$staging/init"

make_initramfs "$staging" "$out"

tiny_staging="$staging/tiny"
mkdir -p "$tiny_staging/etc"
printf '#!/bin/sh\necho PETREL-TINY-INIT\n' >"$tiny_staging/init"
chmod 755 "$tiny_staging/init"
echo "petrel tiny initramfs" >"$tiny_staging/etc/petrel-marker"
(cd "$tiny_staging" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc --reproducible -R 0:0 >"$tiny.tmp")
mv -f "$tiny.tmp" "$tiny"
echo "$hash" >"$stamp"
log "built $(rel "$tiny") ($(du -h --apparent-size "$tiny" | cut -f1))"
log "built $(rel "$out") ($(du -h --apparent-size "$out" | cut -f1), busybox-static $bb_ver)"
