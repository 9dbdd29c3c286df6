#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, docs, and the whole workspace suite against real
# SoftHSM2 (one process per test, as SoftHSM2 reads SOFTHSM2_CONF once per process).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
# The build without the YubiKey backend (no libpcsclite) stays a build.
cargo clippy -p signet --no-default-features -- -D warnings
# Supply chain (deny.toml): licences, banned and duplicate crates, allowed sources. Advisories
# need GitHub, which CI cannot reach: run `cargo deny check advisories` where it can.
# Duplicate versions are warnings (printed by `cargo deny check bans`), not failures.
cargo deny --log-level error check licenses bans sources
# PostgreSQL for the shared store and the cluster tests (tests/postgres_store.rs,
# tests/cluster.rs): installed from Debian's packages when missing, started on a free port.
eval "$(bash scripts/postgres.sh start)"
# The virtual PIV card (pcscd + vpcd + tests/virtual-piv) for the YubiKey backend's tests.
eval "$(bash scripts/virtual-piv.sh start)"
trap 'bash scripts/postgres.sh stop; bash scripts/virtual-piv.sh stop' EXIT
status=0
# The PKCS#11 module is a cdylib that tests/pkcs11_module.rs loads; nextest builds test
# binaries only, so build it first.
cargo build -p signet-pkcs11
cargo nextest run --workspace --no-fail-fast "$@" || status=$?

# The other tokens' runs select test binaries of the same workspace build (`-p` would build the
# service again with other features, taking time and another few GB of disk).
token_suites='kind(test) & (binary(=backend) | binary(=backends))'
# The same backend suite and the service smoke test on the other tokens CI can have, and on
# kryoptic, the one with ML-DSA (built once with its pqc features), the ML-DSA service tests.
kryoptic="$(bash scripts/kryoptic.sh)"
echo "test: backend suite, service smoke test and ML-DSA on kryoptic ($kryoptic)"
SIGNET_TEST_TOKEN=kryoptic SIGNET_KRYOPTIC_MODULE="$kryoptic" \
  cargo nextest run --profile tokens --workspace -E "($token_suites) | binary(=pqc)" \
  --no-fail-fast || status=$?
echo "test: backend suite and service smoke test on a remote token (p11-kit)"
remote_env="$(bash scripts/remote-token.sh start)"
(eval "$remote_env" && SIGNET_TEST_TOKEN=p11kit \
  cargo nextest run --profile tokens --workspace -E "$token_suites" --no-fail-fast) \
  || status=$?
bash scripts/remote-token.sh stop
# A short run of every fuzz target (SIGNET_FUZZ_SECONDS each; 0 skips): a crash fails the run.
if [ "${SIGNET_FUZZ_SECONDS:-60}" != 0 ]; then
  bash scripts/fuzz.sh "${SIGNET_FUZZ_SECONDS:-60}" || status=1
fi
# Test tokens live in per-process directories under the temp dir.
rm -rf "${TMPDIR:-/tmp}"/signet-test-* 2>/dev/null || true
exit $status
