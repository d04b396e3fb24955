#!/usr/bin/env bash
# halb vs HAProxy vs NGINX on this machine: one command.
#   bench/run.sh            full run (about 10 minutes + build), results in bench/results/
#   bench/run.sh --smoke    every case once for ~1 s (CI), results in bench/results/tmp/
#   bench/run.sh --help     all options (duration, repeat, cases, proxies, CPUs)
# Installs haproxy, nginx (with its stream module), wrk, h2load (nghttp2-client)
# and openssl from Debian if
# missing, builds halb in release mode, and keeps matplotlib for the plot in
# bench/.venv. Everything it starts listens on 127.0.0.1 and is stopped on
# exit, error or Ctrl-C.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$BENCH")"

for arg in "$@"; do
  [[ "$arg" == "-h" || "$arg" == "--help" ]] && exec python3 "$BENCH/bench.py" --help
done

missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(libnginx-mod-stream)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Where an init system started the packages' own services, stop them:
  # idle or not, they are not part of the measurement.
  for svc in haproxy nginx; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v service >/dev/null; then
      $SUDO service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

if [[ -z "${HALB_BENCH_NO_BUILD:-}" ]]; then
  (cd "$REPO" && cargo build --release -p halb -p halb-load)
fi

# matplotlib for the PNG; without it the run still writes the markdown.
PY=python3
VENV="$BENCH/.venv"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  PY="$VENV/bin/python"
elif python3 -m venv "$VENV" >/dev/null 2>&1 \
  && "$VENV/bin/pip" install -q --disable-pip-version-check matplotlib >/dev/null 2>&1; then
  PY="$VENV/bin/python"
else
  echo "bench: matplotlib unavailable; no plot will be drawn" >&2
fi

# Up to 10,000 idle connections: the proxies and the client need the fds.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$BENCH"
exec "$PY" "$BENCH/bench.py" "$@"
