#!/usr/bin/env bash
# Coverage-guided fuzzing of the entry points that parse untrusted bytes (cargo-fuzz, libFuzzer):
#   csr            CSR intake (PEM/DER, both profiles)
#   jwt            token parsing and checks, JWKS parsing
#   audit_records  the lines `audit verify` reads, walked as a chain
#   config         the configuration file
#   api_json       every JSON request body through the real router on a real SoftHSM2 service
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s for each target
#
# On the stable toolchain it runs without a sanitizer (`-s none`); when a nightly toolchain is
# installed it uses it with AddressSanitizer. Seeds are in fuzz/corpus/<target>/seed-*; what a
# run finds stays in the corpus directory (not committed); a crash is saved under
# fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(csr jwt audit_records config api_json)

command -v c++ >/dev/null || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq build-essential >/dev/null
}
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly); sanitizer=(-s address)
else
  toolchain=(); sanitizer=(-s none)
fi

cd fuzz
cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}" "${targets[@]:0:1}" >/dev/null 2>&1 || true
status=0
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s (${sanitizer[*]})"
  log="$(mktemp)"
  if cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" "$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done|stat::number_of_executed_units' "$log" | sed "s/^/fuzz: $target: /" || true
  else
    echo "fuzz: $target FAILED"; tail -40 "$log"; status=1
  fi
  rm -f "$log"
done
exit $status
