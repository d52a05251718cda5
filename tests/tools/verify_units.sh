#!/usr/bin/env bash
# `systemd-analyze verify` over configs/systemd/petrel@.{service,socket}, as instance
# "verify", with ExecStart pointing at the petrel just built (verify checks it is executable).
# Fails on any complaint (systemd-analyze exits 0 for unknown keys and bad values, it only
# prints them), and shows first that a broken copy is complained about.
# Usage: verify_units.sh SOURCE_ROOT PETREL_BINARY
set -euo pipefail
src=$1
petrel=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not installed (scripts/install-deps.sh installs systemd)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

verify() {  # prints what systemd-analyze says about units $@ in $dir
  (cd "$dir" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$@" 2>&1) || true
}

sed "s|/usr/local/bin/petrel|$petrel|" "$src/configs/systemd/petrel@.service" >"$dir/petrel@.service"
cp "$src/configs/systemd/petrel@.socket" "$dir/petrel@.socket"

# The check must be able to fail: a misspelt key and a bad value are reported.
sed -e 's/^Type=notify/Typo=notify/' -e 's/^KillMode=mixed/KillMode=gently/' \
  "$dir/petrel@.service" >"$dir/broken@.service"
said=$(verify ./broken@verify.service)
if ! grep -q "Typo" <<<"$said" || ! grep -q "KillMode\|gently" <<<"$said"; then
  echo "FAIL: systemd-analyze did not report the broken unit:"
  echo "$said"
  exit 1
fi
rm "$dir/broken@.service"

said=$(verify ./petrel@verify.service ./petrel@verify.socket)
if [ -n "$said" ]; then
  echo "FAIL: systemd-analyze verify petrel@verify.service petrel@verify.socket:"
  echo "$said"
  exit 1
fi
grep -q '^Type=notify$' "$dir/petrel@.service"
echo "ok: systemd-analyze verify passes on petrel@.service and petrel@.socket"
