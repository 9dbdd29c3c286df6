#!/usr/bin/env bash
# A virtual PIV card for tests, so no YubiKey is needed: pcscd with vsmartcard's vpcd reader
# (named "Yubico YubiKey (virtual)" so ykcs11 takes it), and the card process from
# tests/virtual-piv plugged into it.
#
#   scripts/virtual-piv.sh start [DIR]   # prints the environment to source (idempotent)
#   scripts/virtual-piv.sh stop [DIR]
#
# The environment: SIGNET_PIV_ROOT (the card's test attestation root, PEM), SIGNET_PIV_CONTROL
# (touch $SIGNET_PIV_CONTROL/removed to pull the card, remove it to put the card back; a port
# written to $SIGNET_PIV_CONTROL/port — 35964, vpcd's second reader — is the reader it goes back
# into). pcscd
# allows one instance per machine: a pcscd already running is stopped first. DIR defaults to
# target/virtual-piv. The card keeps its keys in memory; a restart is a factory-fresh card.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-start}"
dir="$(realpath -m "${2:-$PWD/target/virtual-piv}")"
env_file="$dir/env"

alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

stop() {
  for p in card pcscd; do
    if alive "$p"; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    fi
    rm -f "$dir/$p.pid"
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac

need=()
command -v pcscd >/dev/null || need+=(pcscd)
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || need+=(vsmartcard-vpcd)
command -v opensc-tool >/dev/null || need+=(opensc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if alive card && alive pcscd; then
  cat "$env_file"; exit 0
fi
stop
mkdir -p "$dir/reader.conf.d" "$dir/control" && chmod 700 "$dir"
rm -f "$dir/control/removed" "$dir/control/port"
cat > "$dir/reader.conf.d/vpcd" <<CONF
FRIENDLYNAME "Yubico YubiKey (virtual)"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7B
CONF

# One pcscd per machine: stop one that is not ours, then start ours on our reader list.
if pgrep -x pcscd >/dev/null; then
  pkill -x pcscd || true
  for _ in $(seq 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
mkdir -p /run/pcscd 2>/dev/null || true
pcscd -f -c "$dir/reader.conf.d" > "$dir/pcscd.log" 2>&1 < /dev/null &
echo $! > "$dir/pcscd.pid"

cargo build -q -p signet-virtual-piv >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
"$target_dir/debug/signet-virtual-piv" --root "$dir/attestation-root.pem" --control "$dir/control" \
  > "$dir/card.log" 2>&1 < /dev/null &
echo $! > "$dir/card.pid"

# Ready when pcscd lists the reader with a card in it.
for _ in $(seq 100); do
  if opensc-tool -l 2>/dev/null | grep -q "Yes.*Yubico YubiKey (virtual)"; then
    break
  fi
  sleep 0.1
done
if ! opensc-tool -l 2>/dev/null | grep -q "Yes.*Yubico YubiKey (virtual)"; then
  echo "virtual-piv: the card did not show up in pcscd" >&2
  cat "$dir/pcscd.log" "$dir/card.log" >&2
  stop
  exit 1
fi
cat > "$env_file" <<ENV
export SIGNET_PIV_ROOT='$dir/attestation-root.pem'
export SIGNET_PIV_CONTROL='$dir/control'
ENV
cat "$env_file"
