#!/usr/bin/env bash
# Installs what Signet needs on a fresh Debian machine: SoftHSM2 (the development and CI token),
# OpenSC (pkcs11-tool), OpenSSL and curl (independent checkers used by the tests), faketime,
# p11-kit (the remote token), what kryoptic builds with (libclang, OpenSSL and sqlite headers),
# and cargo-nextest when it is missing. Idempotent.
#
# `setup.sh service` installs only what building and running the service needs (what
# `scripts/run.sh` calls): SoftHSM2, a C toolchain, pkg-config and libpcsclite (the YubiKey
# backend links it), OpenSSL and curl. The test tooling (the rest) comes with `setup.sh`.
set -euo pipefail

install_missing() {
  if [ $# -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing $*"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" ca-certificates >/dev/null
  fi
}

if [ "${1:-}" = service ]; then
  need=()
  [ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
  command -v cc >/dev/null || need+=(build-essential)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  dpkg -s libpcsclite-dev >/dev/null 2>&1 || need+=(libpcsclite-dev)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  install_missing "${need[@]}"
  echo "setup: ok for the service ($(softhsm2-util --version 2>/dev/null | head -1 || echo softhsm2))"
  exit 0
fi

need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(build-essential)
command -v faketime >/dev/null || need+=(faketime)   # the expired-certificate test runs the server in the future
command -v pgrep >/dev/null || need+=(procps)
command -v jq >/dev/null || need+=(jq)               # the README's token example
command -v p11-kit >/dev/null || need+=(p11-kit)
ls /usr/lib/*/pkcs11/p11-kit-client.so >/dev/null 2>&1 || need+=(p11-kit-modules)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v c++ >/dev/null || need+=(build-essential)
command -v script >/dev/null || need+=(bsdutils)      # a real pty for the progress test
command -v systemd-analyze >/dev/null || need+=(systemd)   # checks scripts/signet.service
command -v setpriv >/dev/null || need+=(util-linux)   # runs the server unprivileged in a test
command -v p11tool >/dev/null || need+=(gnutls-bin)   # prints PKCS#11 URIs, independently of Signet
command -v pk12util >/dev/null || need+=(libnss3-tools)   # NSS's view of the PKCS#12 bundles
command -v keytool >/dev/null || need+=(default-jre-headless)   # Java's view of them
# The YubiKey PIV backend links libpcsclite; its tests run a virtual card in pcscd's vpcd reader
# and check it with OpenSC, ykcs11 and yubico-piv-tool.
dpkg -s libpcsclite-dev >/dev/null 2>&1 || need+=(libpcsclite-dev)
command -v pcscd >/dev/null || need+=(pcscd)
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || need+=(vsmartcard-vpcd)
ls /usr/lib/*/libykcs11.so* >/dev/null 2>&1 || need+=(ykcs11)
command -v yubico-piv-tool >/dev/null || need+=(yubico-piv-tool)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)   # the OpenAPI validator
command -v promtool >/dev/null || need+=(prometheus)  # promtool checks the /metrics page
# Unmodified PKCS#11 applications that load libsignet_pkcs11.so in tests/pkcs11_module.rs:
# OpenSSL's pkcs11 engine (libp11), and OpenSSH's client and server.
[ -e /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || ls /usr/lib/*/engines-3/pkcs11.so >/dev/null 2>&1 || need+=(libengine-pkcs11-openssl)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)

install_missing "${need[@]}"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
if ! cargo deny --version >/dev/null 2>&1; then
  echo "setup: installing cargo-deny (about 3 minutes)"
  cargo install cargo-deny --locked --quiet
fi
# An independent OpenAPI validator and JSON Schema checker for tests/openapi.rs, in a venv
# under target/ (nothing installed system-wide).
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/target/py/bin/openapi-spec-validator" ]; then
  echo "setup: installing openapi-spec-validator and jsonschema into target/py"
  python3 -m venv "$root/target/py"
  "$root/target/py/bin/pip" install -q openapi-spec-validator jsonschema
fi
# The reference Prometheus text parser, for the /metrics test.
if ! "$root/target/py/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  echo "setup: installing prometheus_client into target/py"
  "$root/target/py/bin/pip" install -q prometheus_client
fi
# PyJWT, an RFC 9068 resource server's view of Signet's tokens (tests/tokens.rs), and
# pyca/cryptography >= 50, whose wheels carry an OpenSSL with ML-DSA (tests/pqc.rs).
if ! "$root/target/py/bin/python" -c 'import jwt; from cryptography.hazmat.primitives.asymmetric import mldsa' 2>/dev/null; then
  echo "setup: installing PyJWT and pyca/cryptography into target/py"
  "$root/target/py/bin/pip" install -q 'pyjwt[crypto]' 'cryptography>=50'
fi
# The `slhdsa` package (a FIPS 205 implementation of its own; pyca/cryptography has no SLH-DSA),
# checking Signet's SLH-DSA signatures and keys (tests/pqc.rs). Pinned: a test tool, not a
# dependency of Signet.
if ! "$root/target/py/bin/python" -c 'import slhdsa' 2>/dev/null; then
  echo "setup: installing slh-dsa into target/py"
  "$root/target/py/bin/pip" install -q 'slh-dsa==0.2.5'
fi
# Schemathesis, the property-based API tester tests/openapi.rs runs against a live server, in
# its own venv (its dependencies pin versions the validators above need otherwise). Pinned: the
# seeded run is then the same run on every machine (with the Hypothesis it was run with).
SCHEMATHESIS=4.32.5
if [ "$("$root/target/st/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS" ]; then
  echo "setup: installing Schemathesis $SCHEMATHESIS into target/st"
  python3 -m venv "$root/target/st"
  "$root/target/st/bin/pip" install -q "schemathesis==$SCHEMATHESIS" "hypothesis==6.170.27"
fi
echo "setup: ok ($(softhsm2-util --version 2>/dev/null | head -1 || echo softhsm2), $(openssl version))"
