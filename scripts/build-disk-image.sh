#!/usr/bin/env bash
# Builds guest-cache/disk/root.ext4: a 64 MiB ext4 file system for the Linux tests that
# mount their root from a virtio-blk disk (tests/kvm/test_linux.cc). It holds a skeleton
# root (dev, proc, sys, tmp, etc) and the marker file /etc/petrel-disk-marker, made with
# `mkfs.ext4 -d` (no loop mount, no root needed), with a fixed UUID and hash seed (the inode
# change times come from the staging directory, so the bytes differ from build to build).
# Tests boot a copy (the kernel mounts it read-write). Does nothing when the image exists and
# was built by the same script with the same e2fsprogs version. See docs/guest-kernel.md.
set -euo pipefail

prog="build-disk-image"
# shellcheck source-path=SCRIPTDIR source=lib/guest-common.sh
. "$(dirname "$0")/lib/guest-common.sh"

out_dir="$guest_cache/disk"
out="$out_dir/root.ext4"
stamp="$out_dir/.stamp"
size=64M
uuid=5e7e1000-0000-4000-8000-70657472656c
hash_seed=5e7e1000-0000-4000-8000-686173687365
marker="petrel virtio-blk root file system"

ensure_packages e2fsprogs
e2fs_ver="$(pkg_version e2fsprogs)"
hash="$(printf 'e2fsprogs %s\n' "$e2fs_ver" |
  inputs_hash "$0" "$repo_root/scripts/lib/guest-common.sh")"
if up_to_date "$stamp" "$hash" "$out"; then
  log "up to date: $(rel "$out") (e2fsprogs $e2fs_ver); nothing to do"
  exit 0
fi

lock_dir "$out_dir"
if up_to_date "$stamp" "$hash" "$out"; then
  log "up to date: $(rel "$out") (built meanwhile by another run); nothing to do"
  exit 0
fi
rm -f "$stamp"
staging="$(mktemp -d "$out_dir/.staging.XXXXXX")"
trap 'rm -rf "$staging" "$out.tmp"' EXIT

mkdir -p "$staging"/{dev,proc,sys,tmp,etc,root}
echo "$marker" >"$staging/etc/petrel-disk-marker"
find "$staging" -exec touch -h -d @0 {} +

# Every inode table and the journal are written now (lazy_*_init=0): otherwise the guest
# kernel's ext4lazyinit thread zeroes them after the mount, slow under an emulator.
E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -t ext4 -L petrel-root -U "$uuid" \
  -E "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,hash_seed=$hash_seed" \
  -d "$staging" "$out.tmp" "$size" >/dev/null
mv -f "$out.tmp" "$out"
echo "$hash" >"$stamp"
log "built $(rel "$out") ($size ext4, e2fsprogs $e2fs_ver)"
