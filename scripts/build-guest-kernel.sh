#!/usr/bin/env bash
# Builds petrel's minimal x86-64 Linux guest kernel from Debian's linux-source package:
# `make tinyconfig` + configs/guest-kernel.config (scripts/kconfig/merge_config.sh), then
# `make olddefconfig`, a check that every option of the fragment survived, and the build.
#
# Outputs (guest-cache/linux/): vmlinux (uncompressed ELF with the PVH entry note),
# bzImage, config (the final .config), kernel-release, build.log.
# Does nothing when the outputs exist and were built from the same fragment, the same
# linux-source version and the same scripts. See docs/guest-kernel.md.
#
# Options: --config-only  stop after making and checking the .config (no build, no stamp)
#          --force        build even when the stamp says the outputs are up to date
set -euo pipefail

prog="build-guest-kernel"
# shellcheck source-path=SCRIPTDIR source=lib/guest-common.sh
. "$(dirname "$0")/lib/guest-common.sh"

src_pkg=linux-source-6.1
fragment="$repo_root/configs/guest-kernel.config"
out="$guest_cache/linux"
srcdir="$guest_cache/src"
build="$out/build"
outputs=("$out/vmlinux" "$out/vmlinux-nopvh" "$out/bzImage" "$out/config" "$out/kernel-release")

config_only=
force=
for arg in "$@"; do
  case $arg in
    --config-only) config_only=1 ;;
    --force) force=1 ;;
    *) die "unknown argument '$arg' (options: --config-only, --force)" ;;
  esac
done

# Options checked in the final .config besides every line of the fragment.
extra_must=(CONFIG_X86_64=y CONFIG_SERIAL_8250_CONSOLE=y CONFIG_PARAVIRT_CLOCK=y)

[ -r "$fragment" ] || die "config fragment $(rel "$fragment") is missing"
[ "$(uname -m)" = x86_64 ] || die "builds on an x86-64 machine only (this is $(uname -m))"

ensure_packages "$src_pkg" build-essential bc bison flex libelf-dev libssl-dev lz4 \
  xz-utils file binutils
src_ver="$(pkg_version "$src_pkg")"
tarball="$(dpkg -L "$src_pkg" | grep -E "/$src_pkg\.tar\.(xz|bz2|gz)$" | head -n1 || true)"
if [ -z "$tarball" ] || [ ! -r "$tarball" ]; then
  die "$src_pkg $src_ver is installed but its source tarball is not in /usr/src"
fi

hash="$(printf '%s %s\n' "$src_pkg" "$src_ver" |
  inputs_hash "$fragment" "$0" "$repo_root/scripts/lib/guest-common.sh")"
if [ -z "$force$config_only" ] && up_to_date "$out/.stamp" "$hash" "${outputs[@]}"; then
  log "up to date: $(rel "$out") (Linux $(cat "$out/kernel-release"), $src_pkg $src_ver); nothing to do"
  exit 0
fi

lock_dir "$out"
# Another run may have finished the same build while we waited for the lock.
if [ -z "$force$config_only" ] && up_to_date "$out/.stamp" "$hash" "${outputs[@]}"; then
  log "up to date: $(rel "$out") (built meanwhile by another run); nothing to do"
  exit 0
fi
[ -n "$config_only" ] || rm -f "$out/.stamp"
start=$SECONDS

# --- Source: extracted under guest-cache/src (never /usr/src) ----------------------------
ksrc="$srcdir/$src_pkg"
if [ "$(cat "$ksrc/.petrel-source-version" 2>/dev/null || true)" != "$src_ver" ]; then
  log "extracting $tarball ($src_pkg $src_ver) into $(rel "$srcdir")"
  rm -rf "$ksrc" "$srcdir/.extract"
  mkdir -p "$srcdir/.extract"
  tar -xf "$tarball" -C "$srcdir/.extract"
  [ -f "$srcdir/.extract/$src_pkg/Makefile" ] ||
    die "$tarball does not hold $src_pkg/Makefile"
  mv "$srcdir/.extract/$src_pkg" "$ksrc"
  rmdir "$srcdir/.extract"
  echo "$src_ver" >"$ksrc/.petrel-source-version"
  # Extracted files keep the tarball's (old) mtimes: objects of another version would look
  # newer than their sources, so a new source always starts a clean build directory.
  rm -rf "$build"
fi

mkdir -p "$build"
kmake() { make -C "$ksrc" O="$build" ARCH=x86_64 KBUILD_BUILD_USER=petrel KBUILD_BUILD_HOST=petrel "$@"; }
blog="$out/build.log"
: >"$blog"
# run_logged WHAT CMD...: runs CMD with its output in build.log; on failure shows the end.
run_logged() {
  local what=$1
  shift
  if ! "$@" >>"$blog" 2>&1; then
    tail -n 40 "$blog" >&2
    die "$what failed (full log: $(rel "$blog"))"
  fi
}

# --- Configuration --------------------------------------------------------------------
log "configuring: tinyconfig + $(rel "$fragment"), olddefconfig"
run_logged "make tinyconfig" kmake tinyconfig
(cd "$build" && run_logged "merge_config.sh" "$ksrc/scripts/kconfig/merge_config.sh" -m -O "$build" \
  "$build/.config" "$fragment")
run_logged "make olddefconfig" kmake olddefconfig

# Every option of the fragment (and extra_must) must have survived dependency resolution.
wrong=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    sym=${BASH_REMATCH[1]}
    grep -qxF -- "$line" "$build/.config" && continue
    got="$(grep -E "^(# )?${sym}[= ]" "$build/.config" || true)"
    wrong+=("$sym: wanted '${line#*=}', got '${got:-absent (unknown or unmet dependency)}'")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    sym=${BASH_REMATCH[1]}
    got="$(grep -E "^$sym=" "$build/.config" || true)"
    [ -z "$got" ] || wrong+=("$sym: wanted 'is not set', got '$got'")
  fi
done < <(cat "$fragment" && printf '%s\n' "${extra_must[@]}")
if [ ${#wrong[@]} -ne 0 ]; then
  printf '%s: error: %s\n' "$prog" "the final .config lost options of the fragment:" >&2
  printf '  %s\n' "${wrong[@]}" >&2
  die "adjust $(rel "$fragment") (missing dependencies, or options that others select) and run again"
fi
log "config: all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set$)' "$fragment") fragment options present"
if [ -n "$config_only" ]; then
  log "--config-only: the checked config is $(rel "$build/.config")"
  exit 0
fi

# --- Build ----------------------------------------------------------------------------
jobs="$(nproc)"
log "building bzImage and vmlinux with make -j$jobs (log: $(rel "$blog"))"
build_start=$SECONDS
run_logged "kernel build" kmake -j"$jobs" bzImage
build_time=$((SECONDS - build_start))
release="$(kmake -s kernelrelease)"

# --- Check and publish the outputs ----------------------------------------------------
file -b "$build/vmlinux" | grep -q '^ELF 64-bit LSB executable, x86-64' ||
  die "vmlinux is not an x86-64 ELF64 executable: $(file -b "$build/vmlinux")"
# The PVH entry point: a "Xen" ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
readelf -n "$build/vmlinux" | grep -Eq '^ *Xen[[:space:]].*(\(0x00000012\)|PHYS32_ENTRY)' ||
  die "vmlinux has no PVH entry note (Xen note type 18); is CONFIG_PVH set?"
file -b "$build/arch/x86/boot/bzImage" | grep -q 'bzImage' ||
  die "arch/x86/boot/bzImage is not a bzImage: $(file -b "$build/arch/x86/boot/bzImage")"

for f in vmlinux arch/x86/boot/bzImage .config; do
  cp -f "$build/$f" "$out/.$(basename "$f").tmp"
done
mv -f "$out/.vmlinux.tmp" "$out/vmlinux"
# The same kernel without its PVH note: tests enter it through the 64-bit boot protocol.
python3 "$repo_root/scripts/strip-pvh-note.py" "$out/vmlinux" "$out/vmlinux-nopvh"
mv -f "$out/.bzImage.tmp" "$out/bzImage"
mv -f "$out/..config.tmp" "$out/config"
echo "$release" >"$out/kernel-release"
echo "$hash" >"$out/.stamp"

size() { du -h --apparent-size "$1" | cut -f1; }
log "built Linux $release from $src_pkg $src_ver in $((SECONDS - start)) s (make: ${build_time} s, -j$jobs)"
log "  $(rel "$out/vmlinux") $(size "$out/vmlinux"), $(rel "$out/bzImage") $(size "$out/bzImage"), $(rel "$out/config")"
