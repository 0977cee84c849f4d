#!/usr/bin/env bash
# Runs every test of davit, after installing and starting what they need (tests/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
export DAVIT_DEMO_BIN="$PWD/target/static/x86_64-unknown-linux-gnu/release/davit-demo"
export DAVIT_COMPOSE_BIN=/usr/local/bin/davit-reference-compose
export DAVIT_PROXY_BIN="$PWD/target/static/x86_64-unknown-linux-gnu/release/davit-proxy"
cargo fmt --all --check
cargo clippy -q --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast "$@"
