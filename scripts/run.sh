#!/usr/bin/env bash
# Runs the service on its embedded default: a SoftHSM2 token and a sled database under
# ./signet-data (or $SIGNET_DATA_DIR), the CA bootstrapped and an admin client bundle written on
# first start, listening on https://127.0.0.1:8443. Extra arguments go to `signet serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh service
cargo build --release --quiet --bin signet
exec ./target/release/signet serve "$@"
