#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit and
# end-to-end: the real halb binary against real backends on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

# The dashboard test drives a real headless Chromium: Debian's packages.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver for the dashboard test..."
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    chromium chromium-driver >/dev/null
fi

# The fleet tests run a real etcd (one member and a three-member cluster)
# and write keys with etcdctl: Debian's etcd-server and etcd-client.
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "installing etcd-server and etcd-client for the fleet tests..."
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    etcd-server etcd-client >/dev/null
fi

# The metrics test parses /metrics with a real Prometheus text parser:
# Python's prometheus-client.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "installing prometheus-client for the metrics test..."
  python3 -m pip install --quiet prometheus-client \
    || python3 -m pip install --quiet --break-system-packages prometheus-client
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

# A short smoke run of the side-by-side benchmark (every case once for about
# a second; the numbers mean nothing) so that it cannot rot.
bench/run.sh --smoke
