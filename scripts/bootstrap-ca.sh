#!/usr/bin/env bash
# Bootstraps Signet's CA on a PKCS#11 token: writes DATA/signet.toml for the module, token and PIN
# file given, then runs `signet ca init`. Idempotent: when the CA exists it shows it and exits 0.
#
#   scripts/bootstrap-ca.sh --module PATH --token-label LABEL --pin-file FILE [--data-dir DIR]
#       [--trust-domain D] [--server-dns NAME]... [--server-ip IP]... [--admin NAME]
#
# Also read from the environment: SIGNET_HSM_MODULE, SIGNET_TOKEN_LABEL, SIGNET_HSM_PIN_FILE,
# SIGNET_DATA_DIR, SIGNET_BIN (a prebuilt signet binary; otherwise it is built).
set -euo pipefail
cd "$(dirname "$0")/.."

module="${SIGNET_HSM_MODULE:-}"
label="${SIGNET_TOKEN_LABEL:-}"
pin_file="${SIGNET_HSM_PIN_FILE:-}"
data_dir="${SIGNET_DATA_DIR:-./signet-data}"
init_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --module) module="$2"; shift 2 ;;
    --token-label) label="$2"; shift 2 ;;
    --pin-file) pin_file="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --trust-domain|--server-dns|--server-ip|--admin) init_args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bootstrap-ca: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$module" ] || { echo "bootstrap-ca: --module is required" >&2; exit 2; }
[ -n "$label" ] || { echo "bootstrap-ca: --token-label is required" >&2; exit 2; }
[ -n "$pin_file" ] || { echo "bootstrap-ca: --pin-file is required" >&2; exit 2; }
[ -r "$pin_file" ] || { echo "bootstrap-ca: cannot read PIN file $pin_file" >&2; exit 2; }

bin="${SIGNET_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet --bin signet
  bin=./target/release/signet
fi

mkdir -p "$data_dir"
chmod 700 "$data_dir"
data_dir="$(cd "$data_dir" && pwd)"
pin_file="$(cd "$(dirname "$pin_file")" && pwd)/$(basename "$pin_file")"
config="$data_dir/signet.toml"
cat > "$config" <<TOML
# Written by scripts/bootstrap-ca.sh; see src/signet.example.toml for every setting.
data_dir = "$data_dir"

[hsm]
module = "$module"
token_label = "$label"
pin_file = "$pin_file"
TOML
echo "bootstrap-ca: config $config"

if "$bin" --config "$config" ca show >/dev/null 2>&1; then
  echo "bootstrap-ca: a CA already exists; nothing changed"
  "$bin" --config "$config" ca show
  exit 0
fi
"$bin" --config "$config" ca init "${init_args[@]}"
echo "bootstrap-ca: done. Start the service with: $bin --config $config serve"
