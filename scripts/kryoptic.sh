#!/usr/bin/env bash
# kryoptic (crates.io 1.5.4, a PKCS#11 3.2 token written in Rust), built once per machine into
# target/kryoptic/libkryoptic_pkcs11.so.
#
#   scripts/kryoptic.sh            build (or reuse) the module and print its path
#   scripts/kryoptic.sh pqc DIR    the same, then initialise a token under DIR, write
#                                  DIR/signet.toml for it (data_dir and [hsm]: module,
#                                  token_label, pin_file) and print it, with the command to run
#
# ML-DSA and SLH-DSA (kryoptic-lib's `pqc`) need OpenSSL >= 3.5 and Debian 12 ships 3.0, so the
# module is linked statically against OpenSSL 3.5.5, whose source comes from the crates.io
# package openssl-src 300.5.5 (kryoptic-lib's non-`dynamic` build compiles it). Features:
# `minimal` (ECDSA P-256/P-384 hashed in the token, RSA PKCS#1 v1.5 and PSS, SHA-2, sqlite
# storage) plus `pqc`; no Ed25519, as before. A second run reuses the build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD/target/kryoptic"
lib="$out/libkryoptic_pkcs11.so"
stamp="$out/features"
features="kryoptic-lib/minimal,kryoptic-lib/pqc"

build() {
  if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$features ossl-3.5.5" ]; then return; fi
  local need=()
  dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
  dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  command -v perl >/dev/null || need+=(perl)
  command -v make >/dev/null || need+=(make)
  if [ ${#need[@]} -gt 0 ]; then
    local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
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
openssl-src = "=300.5.5"
[workspace]
TOML
  echo 'fn main() {}' > "$out/fetch/src/main.rs"
  (cd "$out/fetch" && cargo fetch --quiet >&2)
  local registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
  local src ossl
  src="$(ls -d "$registry"/*/kryoptic-1.5.4 | head -1)"
  ossl="$(ls -d "$registry"/*/openssl-src-300.5.5+3.5.5/openssl | head -1)"
  # OpenSSL builds in its source tree: a copy under target/, kept between runs (the build
  # script skips `make` when libcrypto.a is there).
  if [ ! -f "$out/openssl/libcrypto.a" ]; then
    rm -rf "$out/openssl" && cp -r "$ossl" "$out/openssl"
    # Built here rather than by kryoptic's build script, whose configuration wants the
    # legacy-provider sources that openssl-src leaves out; the script skips its own build when
    # libcrypto.a exists and only generates bindings. The options are the script's, plus
    # no-shared/no-module/no-legacy (one static library, as openssl-src builds it) and PIC code,
    # since the library ends up inside a shared object.
    echo "kryoptic: building OpenSSL 3.5.5 (libcrypto only; log in $out/openssl-build.log)" >&2
    if ! (cd "$out/openssl" && ./Configure linux-x86_64 no-shared no-module no-legacy \
        no-deprecated no-aria no-argon2 no-atexit no-des no-dsa no-cast no-mdc2 no-ec2m no-rc2 \
        no-rc4 no-rc5 no-rmd160 no-seed no-sm2 no-sm3 no-sm4 no-docs no-tests no-apps \
        enable-ec_nistp_64_gcc_128 -fPIC && make -s -j"$(nproc)" build_libs) \
        > "$out/openssl-build.log" 2>&1; then
      tail -40 "$out/openssl-build.log" >&2
      echo "kryoptic: the OpenSSL build failed (the whole log: $out/openssl-build.log)" >&2
      exit 1
    fi
  fi
  rm -rf "$out/src" && cp -r "$src" "$out/src"
  # Its own workspace, not the one of the repository it is built under. kryoptic-lib turns on
  # ossl's OpenSSL bindings (ossl-sys) only through its `dynamic` feature (the system
  # library); the static build needs them on as well, so the module's own dependency on ossl asks for them.
  printf '\n[workspace]\n' >> "$out/src/Cargo.toml"
  grep -q '^\[dependencies.ossl\]$' "$out/src/Cargo.toml"
  sed -i 's/^\[dependencies.ossl\]$/[dependencies.ossl]\nfeatures = ["ossl-sys"]/' "$out/src/Cargo.toml"
  echo "kryoptic: building $src ($features, static OpenSSL 3.5.5; OpenSSL takes minutes)" >&2
  # Online: the fetch above brought the default features' crates only, and `pqc` needs more
  # (vsprintf, for one); an --offline build found them only where an earlier build had left
  # them in the cargo cache.
  (cd "$out/src" && KRYOPTIC_OPENSSL_SOURCES="$out/openssl" \
      cargo build --release --quiet --lib --no-default-features \
      --features "$features" >&2)
  cp "$out/src/target/release/libkryoptic_pkcs11.so" "$lib"
  rm -rf "$out/src/target"
  echo "$features ossl-3.5.5" > "$stamp"
}

build
case "${1:-}" in
  "")
    echo "$lib" ;;
  pqc)
    dir="${2:?usage: scripts/kryoptic.sh pqc DIR}"
    mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
    command -v pkcs11-tool >/dev/null || {
      echo "kryoptic: pkcs11-tool (Debian's opensc) is needed to initialise the token" >&2; exit 1; }
    conf="$dir/kryoptic.conf"
    printf '[[slots]]\nslot = 1\ndbtype = "sqlite"\ndbargs = "%s"\n' "$dir/token.sql" > "$conf"
    umask 077
    if [ ! -f "$dir/pin" ]; then
      head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/pin"
      head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/so-pin"
      KRYOPTIC_CONF="$conf" pkcs11-tool --module "$lib" --init-token --label signet-pqc \
        --so-pin "$(cat "$dir/so-pin")" >&2
      KRYOPTIC_CONF="$conf" pkcs11-tool --module "$lib" --token-label signet-pqc --login \
        --login-type so --so-pin "$(cat "$dir/so-pin")" --init-pin --pin "$(cat "$dir/pin")" >&2
    fi
    # A Signet configuration for the token (written once; printed every time).
    if [ ! -f "$dir/signet.toml" ]; then
      cat > "$dir/signet.toml" <<EOF
data_dir = "$dir/data"

[hsm]
backend = "pkcs11"
module = "$lib"
token_label = "signet-pqc"
pin_file = "$dir/pin"
EOF
    fi
    cat "$dir/signet.toml"
    echo "# kryoptic finds its token through KRYOPTIC_CONF. Run Signet on it with:"
    echo "#   KRYOPTIC_CONF=$conf signet --config $dir/signet.toml serve"
    ;;
  *)
    echo "usage: scripts/kryoptic.sh [pqc DIR]" >&2; exit 2 ;;
esac
