# Shared helpers for the scripts that build Linux guests into guest-cache/
# (build-guest-kernel.sh, build-initramfs.sh, prepare-stock-kernel.sh). Sourced, not run.
# The caller sets `prog` (its name, for messages) before sourcing.
# shellcheck shell=bash

# The project root and the cache; PETREL_GUEST_CACHE moves the cache (e.g. in CI).
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
guest_cache="${PETREL_GUEST_CACHE:-$repo_root/guest-cache}"

log() { printf '%s: %s\n' "${prog:-guest}" "$*"; }
die() {
  printf '%s: error: %s\n' "${prog:-guest}" "$*" >&2
  exit 1
}

# as_root CMD...: runs CMD as root (directly, or through sudo when not root).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# pkg_version PKG: the installed version of a Debian package.
pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# ensure_packages PKG...: installs (apt-get) the packages that are not installed yet.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# inputs_hash FILE...: one sha256 over the named files' contents and stdin (versions etc.).
inputs_hash() {
  {
    local f
    for f in "$@"; do
      printf '== %s\n' "$(basename "$f")"
      cat "$f"
    done
    printf '== stdin\n'
    cat
  } | sha256sum | cut -d' ' -f1
}

# up_to_date STAMP HASH FILE...: true when STAMP holds HASH and every FILE exists.
up_to_date() {
  local stamp=$1 hash=$2 f
  shift 2
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] || return 1
  for f in "$@"; do
    [ -e "$f" ] || return 1
  done
}

# lock_dir DIR: holds an exclusive lock on DIR/.lock until the script exits, so two runs
# (parallel tests, two developers) never build into the same directory at once.
lock_dir() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  if ! flock -n 9; then
    log "waiting for another build in ${1#"$repo_root"/} to finish"
    flock 9
  fi
}

# rel PATH: PATH relative to the project root, for messages.
rel() { printf '%s' "${1#"$repo_root"/}"; }

# make_initramfs STAGING OUT: packs STAGING into a gzip'd newc cpio at OUT, owned by root,
# with fixed timestamps and a sorted file list so the same inputs give the same bytes.
make_initramfs() {
  local staging=$1 out=$2
  find "$staging" -exec touch -h -d @0 {} +
  (cd "$staging" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
    gzip -n -9 >"$out.tmp"
  mv -f "$out.tmp" "$out"
}

# stage_busybox STAGING: a root file system skeleton with busybox-static and a symlink for
# each of its applets in /bin (made here, so /init does not spend emulated time on
# `busybox --install`).
stage_busybox() {
  local staging=$1 applet
  mkdir -p "$staging"/{bin,dev,proc,sys,tmp,etc,root}
  ln -s bin "$staging/sbin"
  mkdir -p "$staging/usr"
  ln -s ../bin "$staging/usr/bin"
  ln -s ../bin "$staging/usr/sbin"
  file -L /bin/busybox | grep -q 'statically linked' ||
    die "/bin/busybox is not statically linked (is busybox-static installed?)"
  cp /bin/busybox "$staging/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$staging/bin/$applet"
  done
  # The kernel opens /dev/console for /init before anything is mounted. Kernels with a
  # built-in initramfs (the default) already have it; make it too when we can (root).
  if [ "$(id -u)" -eq 0 ]; then
    mknod -m 600 "$staging/dev/console" c 5 1
  fi
}
