#!/usr/bin/env bash
# Benchmarks, in one run, with the figures as Markdown on stdout and as JSON:
#   scripts/bench.sh [api]              raw token cost, then the API (audited and unaudited builds)
#   scripts/bench.sh raw                the token's own cost only
#   scripts/bench.sh ca                 `signet ca init` per CA key spec
#   scripts/bench.sh pkcs11             ES256 through the raw token, the JSON API and the PKCS#11
#                                       module, 1 and 8 threads
#   scripts/bench.sh pqc                ML-DSA-44/65/87 and SLH-DSA-SHA2-128s/128f next to ES256
#                                       on the PQC kryoptic build: key generations/s and
#                                       signatures/s raw and through the API
#   scripts/bench.sh cluster            1, 2 and 3 nodes on one PostgreSQL and one remote token,
#                                       and revocation propagation between nodes
#   scripts/bench.sh compare BASE.json [api|cluster]
#                                       a fresh `api` (or `cluster`) run compared with a stored
#                                       one: every figure's ratio (rates, CPU, latency, context
#                                       switches, PostgreSQL transactions per signature, records
#                                       per audit transaction), flagging any that moved by more
#                                       than BENCH_NOISE (default 0.25) the wrong way; exits 1
#                                       when one did
# BENCH_SECONDS (default 4) per step; the JSON goes to bench-out/bench-<time>.json (BENCH_JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-api}"
bash scripts/setup.sh >/dev/null
mkdir -p bench-out
export BENCH_JSON="${BENCH_JSON:-bench-out/bench-$(date -u +%Y%m%dT%H%M%SZ).json}"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "softhsm2 $(dpkg-query -W -f='${Version}' softhsm2 2>/dev/null), $(openssl version), $(rustc --version)"
echo

build() {
  cargo build --release --quiet --bin signet
  CARGO_TARGET_DIR=target/bench-unaudited cargo build --release --quiet --bin signet --features bench-unaudited
  cargo bench --no-run --quiet --bench load 2>/dev/null || cargo bench --no-run --bench load
}

load() {
  SIGNET_BIN="${SIGNET_BIN:-target/release/signet}" \
  SIGNET_BIN_UNAUDITED="${SIGNET_BIN_UNAUDITED:-target/bench-unaudited/release/signet}" \
    cargo bench --quiet --bench load -- "$@"
}

case "$what" in
  api|raw) build; load "$what" ;;
  pkcs11)
    cargo build --release --quiet --bin signet
    cargo build --release --quiet -p signet-pkcs11
    cargo bench --no-run --quiet --bench load 2>/dev/null || cargo bench --no-run --bench load
    load pkcs11 ;;
  pqc)
    cargo build --release --quiet --bin signet
    cargo bench --no-run --quiet --bench load 2>/dev/null || cargo bench --no-run --bench load
    SIGNET_TEST_TOKEN=kryoptic SIGNET_KRYOPTIC_MODULE="$(bash scripts/kryoptic.sh)" load pqc ;;
  cluster)
    cargo build --release --quiet --bin signet
    cargo bench --no-run --quiet --bench load 2>/dev/null || cargo bench --no-run --bench load
    eval "$(bash scripts/postgres.sh start)"
    load cluster ;;
  ca)
    cargo build --release --quiet --bin signet
    echo "| CA key spec | ca init total |"
    echo "|---|---|"
    for spec in ec-p256 ec-p384 ed25519 rsa-2048 rsa-3072 rsa-4096; do
      dir=$(mktemp -d)
      printf '[ca]\nroot_key_spec = "%s"\nintermediate_key_spec = "%s"\n' "$spec" "$spec" > "$dir/signet.toml"
      total=$(target/release/signet --data-dir "$dir/data" --config "$dir/signet.toml" ca init | awk '/ total / {print $2" "$3}')
      echo "| $spec | $total |"
      rm -rf "$dir"
    done ;;
  compare)
    base="${2:?usage: $0 compare BASELINE.json [api|cluster]}"
    case "${3:-api}" in
      api) build; load api ;;
      cluster) build; eval "$(bash scripts/postgres.sh start)"; load cluster ;;
      *) echo "compare runs api or cluster" >&2; exit 2 ;;
    esac
    echo; echo "## Compared with $base"; echo
    load compare "$base" "$BENCH_JSON" ;;
  *) echo "usage: $0 [api|raw|ca|cluster|pkcs11|compare BASELINE.json]" >&2; exit 2 ;;
esac
