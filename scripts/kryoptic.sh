#!/usr/bin/env bash
# Builds kryoptic (crates.io 1.5.4, a PKCS#11 token written in Rust) once, into
# target/kryoptic/libkryoptic_pkcs11.so, and prints its path. Debian 12's OpenSSL is 3.0 and
# kryoptic's default features want 3.2 for EdDSA, so it is built against the system OpenSSL
# with kryoptic-lib's `minimal` feature set (ECDSA P-256/P-384 with in-token hashing, RSA with
# PKCS#1 v1.5 and PSS, SHA-2, sqlite storage) and no Ed25519. A second run reuses the build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/target/kryoptic"
lib="$out/libkryoptic_pkcs11.so"
if [ -f "$lib" ]; then echo "$lib"; exit 0; fi

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "kryoptic: installing ${need[*]}" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$out/fetch/src"
cat > "$out/fetch/Cargo.toml" <<'TOML'
[package]
name = "kryoptic-fetch"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
kryoptic = "=1.5.4"
[workspace]
TOML
echo 'fn main() {}' > "$out/fetch/src/main.rs"
(cd "$out/fetch" && cargo fetch --quiet >&2)
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kryoptic-1.5.4 | head -1)"
rm -rf "$out/src" && cp -r "$src" "$out/src"
# Its own workspace, not the one of the repository it is built under.
printf '\n[workspace]\n' >> "$out/src/Cargo.toml"
echo "kryoptic: building $src (minimal, system OpenSSL)" >&2
(cd "$out/src" && cargo build --release --locked --quiet --lib \
    --no-default-features --features kryoptic-lib/minimal,kryoptic-lib/dynamic >&2)
cp "$out/src/target/release/libkryoptic_pkcs11.so" "$lib"
rm -rf "$out/src/target"
echo "$lib"
