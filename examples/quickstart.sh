#!/usr/bin/env bash
# Runs the shipped example end to end against the local sandbox, with no Criteo account:
# day 1 (first sync: every valid email is added), then day 2 (only who entered and who left).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${SANDBOX_PORT:-8080}"
cargo build --quiet --bin audience-sync
bin="${CARGO_TARGET_DIR:-target}/debug/audience-sync"

export CRITEO_CLIENT_ID=sandbox-client CRITEO_CLIENT_SECRET=sandbox-secret
state_dir=$(mktemp -d)
"$bin" sandbox --listen "127.0.0.1:$port" 2>"$state_dir/sandbox.log" &
sandbox_pid=$!
trap 'kill $sandbox_pid 2>/dev/null; rm -rf "$state_dir"' EXIT
for _ in $(seq 50); do
  grep -q "listening" "$state_dir/sandbox.log" 2>/dev/null && break
  sleep 0.1
done

settings=(--set "destination.api_url=http://127.0.0.1:$port" --set "state.url=$state_dir/state")

echo "== day 1: first sync" >&2
"$bin" run examples/vip_customers.toml "${settings[@]}"

echo "== day 2: only the changes" >&2
"$bin" run examples/vip_customers.toml "${settings[@]}" \
  --set sources.customers=data/day2/customers.parquet

echo "== day 2 again: nothing to send" >&2
"$bin" run examples/vip_customers.toml "${settings[@]}" \
  --set sources.customers=data/day2/customers.parquet
