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
# The database tests run real PostgreSQL servers (a primary and a streaming
# replica) and Redis servers behind halb's role-aware checks.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The MySQL-check tests run real MariaDB servers (mariadb-install-db,
# mariadbd, and the mariadb client to flip read_only).
command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
# The request-smuggling corpus compares halb with HAProxy in the same run.
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
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

# A short fuzz run of every target (fuzz/, 10 s each) when a nightly
# toolchain exists; without one, only the corpus replay (a normal test,
# run above) covers the decoders. New inputs go to a scratch directory,
# the kept corpus is only read.
if cargo +nightly --version >/dev/null 2>&1; then
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  for target in $(cd fuzz && cargo +nightly fuzz list); do
    echo "fuzzing $target for 10 s..."
    mkdir -p "$scratch/$target"
    (cd fuzz && cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" \
      -- -max_total_time=10 -print_final_stats=1 2>&1 | tail -n 12)
  done
else
  echo "no nightly toolchain (rustup toolchain install nightly): the short fuzz run is skipped;" \
    "the fuzz corpus was still replayed by cargo test"
fi

# A short smoke run of the side-by-side benchmark (every case once for about
# a second; the numbers mean nothing) so that it cannot rot.
bench/run.sh --smoke

# The README's first command, run as written: the demo answers.
scripts/readme-demo.sh

# The .deb: built, installed, the unit verified, purged again.
scripts/package.sh
