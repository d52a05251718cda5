#!/usr/bin/env bash
# Prepares Debian's stock cloud kernel (the package linux-image-cloud-amd64 depends on) as a
# petrel guest without installing it on the host: `apt-get download` + `dpkg-deb -x` into
# guest-cache/stock/, and an initramfs with busybox-static and the virtio modules whose
# /init loads them with insmod in dependency order, prints
# `PETREL-STOCK-INIT-OK modules=<n>` and /proc/modules, then powers off.
#
# Outputs (guest-cache/stock/): vmlinuz (the bzImage), vmlinux (the uncompressed ELF taken
# out of it, which has the PVH entry note), config, kernel-release,
# lib/modules/<release>/ (with modules.dep from depmod), initramfs.cpio.gz, modules.txt.
# Does nothing when the outputs exist and were made from the same package versions by the
# same scripts. See docs/guest-kernel.md.
set -euo pipefail

prog="prepare-stock-kernel"
# shellcheck source-path=SCRIPTDIR source=lib/guest-common.sh
. "$(dirname "$0")/lib/guest-common.sh"

meta_pkg=linux-image-cloud-amd64
out="$guest_cache/stock"
stamp="$out/.stamp"
# The modules the initramfs loads (with whatever they depend on), by module name; those
# that are built into the kernel or do not exist in this version are reported and skipped.
wanted=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  virtio_mmio virtio_blk failover net_failover virtio_net virtio_balloon virtio_rng
  virtio_console)

ensure_packages busybox-static cpio gzip xz-utils lz4 kmod file binutils

# --- Which package: the versioned image package the meta package depends on ------------
resolve() { apt-cache depends "$meta_pkg" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'; }
image_pkg="$(resolve || true)"
if [ -z "$image_pkg" ]; then
  log "no apt candidate for $meta_pkg yet; running apt-get update"
  as_root apt-get update -qq
  image_pkg="$(resolve || true)"
  [ -n "$image_pkg" ] || die "apt knows no $meta_pkg (is a Debian amd64 main source configured?)"
fi
image_ver="$(apt-cache show --no-all-versions "$image_pkg" | awk '$1 == "Version:" { print $2; exit }')"
[ -n "$image_ver" ] || die "apt has no version of $image_pkg"
bb_ver="$(pkg_version busybox-static)"

outputs=("$out/vmlinuz" "$out/vmlinux" "$out/config" "$out/kernel-release"
  "$out/initramfs.cpio.gz" "$out/modules.txt")
hash="$(printf '%s %s\nbusybox-static %s\n' "$image_pkg" "$image_ver" "$bb_ver" |
  inputs_hash "$0" "$repo_root/scripts/lib/guest-common.sh")"
if up_to_date "$stamp" "$hash" "${outputs[@]}"; then
  log "up to date: $(rel "$out") ($image_pkg $image_ver, Linux $(cat "$out/kernel-release")); nothing to do"
  exit 0
fi

lock_dir "$out"
if up_to_date "$stamp" "$hash" "${outputs[@]}"; then
  log "up to date: $(rel "$out") (prepared meanwhile by another run); nothing to do"
  exit 0
fi
rm -f "$stamp"
start=$SECONDS
work="$(mktemp -d "$out/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- Download and unpack (never installed: nothing touches the host's /boot) ------------
log "downloading $image_pkg $image_ver"
apt_opts=()
[ "$(id -u)" -ne 0 ] || apt_opts=(-o APT::Sandbox::User=root)
(cd "$work" && apt-get download -qq "${apt_opts[@]}" "$image_pkg=$image_ver")
deb="$(find "$work" -maxdepth 1 -name "${image_pkg}_*.deb" | head -n1)"
[ -n "$deb" ] || die "apt-get download left no ${image_pkg}_*.deb"
dpkg-deb -x "$deb" "$work/root"
rm -f "$deb"

# Modules live in /lib/modules (Debian 12) or /usr/lib/modules (later releases); give
# depmod both spellings.
if [ -d "$work/root/usr/lib/modules" ] && [ ! -e "$work/root/lib/modules" ]; then
  mkdir -p "$work/root/lib"
  ln -s ../usr/lib/modules "$work/root/lib/modules"
fi
mapfile -t releases < <(find "$work/root/lib/modules/" -mindepth 1 -maxdepth 1 -printf '%f\n')
[ ${#releases[@]} -eq 1 ] || die "expected one modules directory in $image_pkg, found: ${releases[*]:-none}"
kver=${releases[0]}
moddir="$work/root/lib/modules/$kver"
[ -f "$work/root/boot/vmlinuz-$kver" ] || die "$image_pkg has no /boot/vmlinuz-$kver"
# The package ships no modules.dep (its postinst runs depmod): make it here.
depmod -b "$work/root" "$kver"
[ -s "$moddir/modules.dep" ] || die "depmod made no modules.dep for $kver"

# --- The modules, their dependencies and a load order ----------------------------------
norm() { # module name of a path: basename without .ko[.xz|.gz|.zst], '-' as '_'
  local n=${1##*/}
  n=${n%%.ko*}
  printf '%s' "${n//-/_}"
}
declare -A path_of=() deps_of=() builtin=() visited=()
while IFS= read -r line; do
  mod=${line%%:*}
  path_of[$(norm "$mod")]=$mod
  deps_of[$mod]=${line#*:}
done <"$moddir/modules.dep"
while IFS= read -r line; do
  builtin[$(norm "$line")]=1
done <"$moddir/modules.builtin"

order=()
visit() { # depth first: a module after everything it depends on
  local mod=$1 dep
  [ -z "${visited[$mod]:-}" ] || return 0
  visited[$mod]=1
  # shellcheck disable=SC2086  # the dependency list is space-separated paths
  for dep in ${deps_of[$mod]}; do visit "$dep"; done
  order+=("$mod")
}
skipped=()
for name in "${wanted[@]}"; do
  if [ -n "${path_of[$name]:-}" ]; then
    visit "${path_of[$name]}"
  elif [ -n "${builtin[$name]:-}" ]; then
    skipped+=("$name (built in)")
  else
    skipped+=("$name (not in $kver)")
  fi
done
[ ${#order[@]} -gt 0 ] || die "none of the virtio modules exist as modules in $kver"

# --- The initramfs ---------------------------------------------------------------------
staging="$work/initramfs"
stage_busybox "$staging"
: >"$staging/etc/petrel-modules"
for mod in "${order[@]}"; do
  # busybox insmod reads plain .ko files only: decompress compressed modules.
  dst="/lib/modules/$kver/${mod%.ko*}.ko"
  mkdir -p "$staging${dst%/*}"
  case $mod in
    *.ko) cp "$moddir/$mod" "$staging$dst" ;;
    *.ko.xz) xz -dc "$moddir/$mod" >"$staging$dst" ;;
    *.ko.gz) gzip -dc "$moddir/$mod" >"$staging$dst" ;;
    *.ko.zst)
      command -v zstd >/dev/null || die "$mod is zstd-compressed: apt-get install zstd"
      zstd -qdc "$moddir/$mod" >"$staging$dst"
      ;;
    *) die "unexpected module file name $mod" ;;
  esac
  echo "$dst" >>"$staging/etc/petrel-modules"
done
cat >"$staging/init" <<'EOF'
#!/bin/sh
# petrel stock-kernel test guest /init (scripts/prepare-stock-kernel.sh): loads the virtio
# modules listed in /etc/petrel-modules (dependency order), reports, powers off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
n=0
failed=0
while read -r m; do
  if insmod "$m"; then
    n=$((n + 1))
  else
    echo "petrel-stock-init: insmod $m failed"
    failed=$((failed + 1))
  fi
done </etc/petrel-modules
echo "PETREL-STOCK-INIT-OK modules=$n"
echo "petrel-stock-init: modules expected: $(wc -l </etc/petrel-modules), failed: $failed"
echo "petrel-stock-init: uname -r: $(uname -r)"
echo "petrel-stock-init: cpus: $(grep -c '^processor' /proc/cpuinfo)"
echo "petrel-stock-init: MemTotal: $(awk '/^MemTotal:/ { print $2 " " $3 }' /proc/meminfo)"
echo "petrel-stock-init: /proc/modules:"
cat /proc/modules
# The virtio devices petrel gave the VM, if any (tests/kvm/test_linux.cc, stock-kernel cases).
i=0
while [ ! -b /dev/vda ] && [ ! -d /sys/class/net/eth0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
  mkdir -p /mnt
  if mount -t ext4 -o ro /dev/vda /mnt; then
    echo "petrel-stock-init: vda marker: $(cat /mnt/etc/petrel-disk-marker)"
    umount /mnt
  else
    echo "petrel-stock-init: mounting /dev/vda failed"
  fi
fi
if [ -d /sys/class/net/eth0 ]; then
  ip addr add 10.0.2.15/24 dev eth0
  ip link set eth0 up
  if ping -c 3 -W 5 10.0.2.1 >/dev/null; then
    echo "petrel-stock-init: ping 10.0.2.1 ok"
  else
    echo "petrel-stock-init: ping 10.0.2.1 failed"
  fi
fi
if [ -c /dev/hwrng ]; then
  echo "petrel-stock-init: hwrng $(cat /sys/class/misc/hw_random/rng_current) read $(head -c 64 /dev/hwrng | wc -c) bytes"
fi
poweroff -f
echo "petrel-stock-init: poweroff -f failed"
while :; do sleep 3600; done
EOF
chmod 755 "$staging/init"
make_initramfs "$staging" "$work/initramfs.cpio.gz"

# --- vmlinux: the ELF inside the bzImage (boots through its PVH note, no decompression) --
vmlinuz="$work/root/boot/vmlinuz-$kver"
config="$work/root/boot/config-$kver"
case "$(grep -E '^CONFIG_KERNEL_(GZIP|XZ|LZ4|ZSTD)=y' "$config" || true)" in
  CONFIG_KERNEL_LZ4=y) magic='\x02\x21\x4c\x18' tool=(lz4 -dc) ;;
  CONFIG_KERNEL_GZIP=y) magic='\x1f\x8b\x08' tool=(gzip -dc) ;;
  CONFIG_KERNEL_XZ=y) magic='\xfd\x37\x7a\x58\x5a\x00' tool=(xz -dc) ;;
  CONFIG_KERNEL_ZSTD=y) magic='\x28\xb5\x2f\xfd' tool=(zstd -qdc) ;;
  *) die "cannot tell how $kver's bzImage is compressed (config-$kver)" ;;
esac
command -v "${tool[0]}" >/dev/null || die "need ${tool[0]} to take vmlinux out of the bzImage"
found=
while IFS=: read -r offset _; do
  # The payload is followed by other data, so the decompressor complains at its end.
  tail -c +"$((offset + 1))" "$vmlinuz" | "${tool[@]}" >"$work/vmlinux" 2>/dev/null || true
  if file -b "$work/vmlinux" | grep -q '^ELF 64-bit LSB executable, x86-64'; then
    found=1
    break
  fi
done < <(LC_ALL=C grep -obUaP "$magic" "$vmlinuz" || true)
[ -n "$found" ] || die "found no x86-64 ELF vmlinux inside $vmlinuz"
readelf -n "$work/vmlinux" | grep -Eq '^ *Xen[[:space:]].*(\(0x00000012\)|PHYS32_ENTRY)' ||
  log "note: $kver's vmlinux has no PVH entry note (boot its bzImage instead)"
file -b "$vmlinuz" | grep -q bzImage || die "$vmlinuz is not a bzImage: $(file -b "$vmlinuz")"

# --- Publish ---------------------------------------------------------------------------
printf '%s\n' "${order[@]}" >"$work/modules.txt"
rm -rf "${out:?}/lib" "$out/vmlinuz" "$out/vmlinux" "$out/initramfs.cpio.gz"
mkdir -p "$out/lib/modules"
mv "$moddir" "$out/lib/modules/$kver"
mv "$vmlinuz" "$out/vmlinuz"
mv "$work/vmlinux" "$out/vmlinux"
mv "$config" "$out/config"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
mv "$work/modules.txt" "$out/modules.txt"
echo "$kver" >"$out/kernel-release"
echo "$hash" >"$stamp"

size() { du -h --apparent-size "$1" | cut -f1; }
log "prepared Linux $kver ($image_pkg $image_ver) in $((SECONDS - start)) s"
log "  $(rel "$out/vmlinuz") $(size "$out/vmlinuz"), $(rel "$out/vmlinux") $(size "$out/vmlinux"), $(rel "$out/initramfs.cpio.gz") $(size "$out/initramfs.cpio.gz")"
log "  initramfs loads ${#order[@]} modules: $(for m in "${order[@]}"; do printf '%s ' "$(norm "$m")"; done)"
[ ${#skipped[@]} -eq 0 ] || log "  not loaded: ${skipped[*]}"
