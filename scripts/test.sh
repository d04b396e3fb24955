#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test (unit and
# end-to-end: the real halb binary against real backends on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
