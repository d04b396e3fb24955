#!/usr/bin/env bash
# Builds halb's .deb with cargo-deb (the binary, the systemd unit, an example
# config, the docs), installs it on this machine and checks what it put
# there: the binary runs, the example config passes `halb check`, and
# `systemd-analyze verify` accepts the unit where systemd-analyze exists.
# With --keep the package stays installed; otherwise it is purged again.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
if [ "${1:-}" = "--keep" ]; then keep=true; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb..."
  cargo install --quiet --locked cargo-deb
fi

deb=$(cargo deb -p halb 2>/dev/null | tail -n 1)
if [ ! -f "$deb" ]; then
  echo "cargo deb did not name a package file (got: $deb)" >&2
  exit 1
fi
echo "built $deb"
dpkg-deb --contents "$deb" | awk '{print "  " $6}'

$sudo dpkg -i "$deb" >/dev/null
cleanup() {
  if [ "$keep" = false ]; then $sudo dpkg --purge halb >/dev/null; fi
}
trap cleanup EXIT

/usr/bin/halb --version
/usr/bin/halb check --config /etc/halb/halb.toml
unit=/lib/systemd/system/halb.service
[ -f "$unit" ] || unit=/usr/lib/systemd/system/halb.service
[ -f "$unit" ] || { echo "the package installed no systemd unit" >&2; exit 1; }
grep -q '^Type=notify$' "$unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$unit"
  echo "systemd-analyze verify: $unit is valid"
else
  echo "no systemd-analyze here: unit not verified"
fi
echo "package OK"
