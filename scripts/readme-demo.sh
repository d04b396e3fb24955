#!/usr/bin/env bash
# Runs the README's first command (the demo) exactly as written, as a new
# user would from the top of a checkout, and checks that the demo answers:
# the balancer spreads requests over the three demo backends, and the
# dashboard and the status API answer, and drills/demo.toml passes against
# it. With --fresh it first clones the
# checkout's HEAD into a temporary directory and runs there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fresh" ]; then
  fresh=$(mktemp -d)
  trap 'rm -rf "$fresh"' EXIT
  git clone --quiet . "$fresh/halb"
  cd "$fresh/halb"
fi

# The first line of the README's first ```sh block, without its comment.
command=$(awk '/^```sh/{inside=1; next} inside{print; exit}' README.md | sed 's/[[:space:]]*#.*$//')
case "$command" in
  "cargo run"*demo*) ;;
  *) echo "the README's first command is not the demo: '$command'" >&2; exit 1 ;;
esac
echo "running the README's first command: $command"

out=$(mktemp)
setsid bash -c "$command" >"$out" 2>&1 &
demo=$!
stop() {
  kill -INT -- "-$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -f "$out"
}
trap 'stop; [ -n "${fresh:-}" ] && rm -rf "$fresh"' EXIT

# The build may take minutes on a fresh checkout.
balancer=""
for _ in $(seq 1 1200); do
  balancer=$(sed -n 's|^  balancer   \(http://[^ ]*\).*|\1|p' "$out")
  [ -n "$balancer" ] && break
  if ! kill -0 "$demo" 2>/dev/null; then
    echo "the demo exited before it printed its balancer URL:" >&2
    cat "$out" >&2
    exit 1
  fi
  sleep 0.5
done
if [ -z "$balancer" ]; then
  echo "no balancer URL printed within 10 minutes:" >&2
  cat "$out" >&2
  exit 1
fi
dashboard=$(sed -n 's|^  dashboard  \(http://[^ ]*\).*|\1|p' "$out")

answers=$(for _ in 1 2 3 4 5 6; do curl -fsS --max-time 5 "$balancer"; done | sort | uniq -c)
echo "$answers"
distinct=$(echo "$answers" | grep -c 'hello from demo-backend-')
if [ "$distinct" -ne 3 ]; then
  echo "six requests reached $distinct demo backends, not 3" >&2
  exit 1
fi
curl -fsS --max-time 5 "$dashboard" | grep -q '<title>halb dashboard</title>'
curl -fsS --max-time 5 "${dashboard}api/v1/status" | grep -q '"listeners"'

# The drill the demo suggests, against the demo's own addresses: it passes
# and writes its report.
drill_dir=$(mktemp -d)
sed -e "s|http://127.0.0.1:8080/|$balancer|" -e "s|http://127.0.0.1:9900|${dashboard%/}|" \
  drills/demo.toml >"$drill_dir/demo.toml"
if ! cargo run --release --quiet -- drill --scenario "$drill_dir/demo.toml" --report "$drill_dir" \
  2>"$drill_dir/progress"; then
  cat "$drill_dir/progress" >&2
  echo "the demo drill did not pass" >&2
  exit 1
fi
grep -q '"passed": true' "$drill_dir/report.json"
test -s "$drill_dir/report.html"
rm -rf "$drill_dir"
echo "the README's demo works: $balancer, dashboard $dashboard, and its drill passes"
