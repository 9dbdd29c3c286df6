#!/usr/bin/env bash
# Benchmarks. Usage: scripts/bench.sh [hsm|ca|api|tokens|audit|all]
#   BENCH_SECONDS (default 5) per measurement, BENCH_CONCURRENCY (default 8) client connections.
# Prints Markdown rows for BENCHMARKS.md, with the machine they ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
bash scripts/setup.sh >/dev/null

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
  echo "softhsm2 $(dpkg-query -W -f='${Version}' softhsm2 2>/dev/null), $(openssl version), $(rustc --version)"
  echo
}

build() {
  cargo build --release --quiet --bin signet
  cargo bench --no-run --quiet --bench load 2>/dev/null || cargo bench --no-run --bench load
}

load() {
  SIGNET_BIN="${SIGNET_BIN:-target/release/signet}" cargo bench --quiet --bench load -- "$@"
}

bench_hsm() {
  echo "## Raw signing through the backend (SoftHSM2, pool of 4)"
  load hsm
  echo
  echo "## openssl speed, same run (${BENCH_SECONDS:-5}s each, 1 and 2 processes)"
  for multi in 1 2; do
    openssl speed -seconds "${BENCH_SECONDS:-5}" -multi "$multi" ecdsap256 ed25519 rsa2048 2>/dev/null \
      | grep -E '^(rsa 2048|[[:space:]]*256 bits ecdsa|[[:space:]]*253 bits EdDSA)' | sed "s/^/  multi=$multi: /"
  done
}

bench_ca() {
  echo "## signet ca init on a fresh data dir, per CA key spec (server + admin keys ec-p256)"
  echo "| CA key spec | ca init total |"
  echo "|---|---|"
  for spec in ec-p256 ec-p384 ed25519 rsa-2048 rsa-3072 rsa-4096; do
    dir=$(mktemp -d)
    printf '[ca]\nroot_key_spec = "%s"\nintermediate_key_spec = "%s"\n' "$spec" "$spec" > "$dir/signet.toml"
    total=$(target/release/signet --data-dir "$dir/data" --config "$dir/signet.toml" ca init | awk '/ total / {print $2" "$3}')
    echo "| $spec | $total |"
    rm -rf "$dir"
  done
}

bench_api() {
  echo "## API vs raw backend, same run"
  load api
}

bench_tokens() {
  echo "## Tokens"
  load tokens
}

bench_audit() {
  echo "## Durable auditing: the same API run with and without audit records"
  echo "(bench-unaudited is a benchmark-only build that skips audit records; runs alternate)"
  CARGO_TARGET_DIR=target/bench-unaudited cargo build --release --quiet --bin signet --features bench-unaudited
  for round in 1 2; do
    echo "### round $round: audited (the normal build)"
    load api | grep -E '^\| ES256 \| single|^\| RS256 \| single'
    echo "### round $round: unaudited"
    SIGNET_BIN=target/bench-unaudited/release/signet load api | grep -E '^\| ES256 \| single|^\| RS256 \| single'
  done
}

machine
build
case "$what" in
  hsm) bench_hsm ;;
  ca) bench_ca ;;
  api) bench_api ;;
  tokens) bench_tokens ;;
  audit) bench_audit ;;
  all) bench_hsm; echo; bench_ca; echo; bench_api; echo; bench_tokens; echo; bench_audit ;;
  *) echo "usage: $0 [hsm|ca|api|tokens|audit|all]" >&2; exit 2 ;;
esac
