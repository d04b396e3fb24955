#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit and
# end-to-end: the real halb binary against real backends on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, installed (one apt-get run) when missing.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=()
# The dashboard test drives a real headless Chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# The VRRP tests run keepalived beside halb for interop.
command -v keepalived >/dev/null 2>&1 || missing+=(keepalived)
# The fleet tests run a real etcd (one member and a three-member cluster)
# and write keys with etcdctl.
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# The TLS tests drive halb with curl and openssl s_client.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The HTTP/2 tests load halb with h2load (100 streams per connection).
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} for the tests..."
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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

# The README's first command, run as written: the demo answers.
scripts/readme-demo.sh

# The .deb: built, installed, the unit verified, purged again.
scripts/package.sh
