#!/usr/bin/env bash
# A remote token, the stand-in for a network HSM: a SoftHSM2 token in its own directory,
# exported over a unix socket by `p11-kit server`, reached through p11-kit-client.so.
#
#   scripts/remote-token.sh start [DIR]   # prints the environment to source (idempotent)
#   scripts/remote-token.sh stop [DIR]
#   scripts/remote-token.sh restart [DIR] [DOWN_SECONDS] [URI]
#                                         # the HSM service restarting: the server and every
#                                         # connection's process killed, then (after
#                                         # DOWN_SECONDS) the server started again over the same
#                                         # token and socket, exporting the tokens URI matches
#                                         # (default pkcs11:token=remote; another one makes a
#                                         # service that is up but shows no token)
#
# The environment: P11_KIT_SERVER_ADDRESS, SIGNET_P11KIT_TOKEN, SIGNET_P11KIT_PIN (a test PIN,
# random per token), SIGNET_P11KIT_MODULE. DIR defaults to target/remote-token.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-start}"
dir="${2:-$PWD/target/remote-token}"
env_file="$dir/env"

stop() {
  if [ -f "$dir/server.pid" ]; then
    kill "$(cat "$dir/server.pid")" 2>/dev/null || true
    rm -f "$dir/server.pid"
  fi
}

serve() {
  SOFTHSM2_CONF="$dir/softhsm2.conf" p11-kit server --provider /usr/lib/softhsm/libsofthsm2.so \
    -n "$dir/socket" -s "${1:-pkcs11:token=remote}" > "$dir/server.env" 2> "$dir/server.log" < /dev/null
  # shellcheck disable=SC1091
  . "$dir/server.env"
  echo "$P11_KIT_SERVER_PID" > "$dir/server.pid"
}

case "$cmd" in
  stop) stop; exit 0 ;;
  restart)
    if [ -f "$dir/server.pid" ]; then
      pid="$(cat "$dir/server.pid")"
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$dir/server.pid" "$dir/socket"
    fi
    sleep "${3:-0}"
    serve "${4:-}"
    cat "$env_file"
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|restart [DIR]" >&2; exit 2 ;;
esac

need=()
command -v p11-kit >/dev/null || need+=(p11-kit)
[ -e /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so ] || [ -e /usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so ] || need+=(p11-kit-modules)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
  cat "$env_file"; exit 0
fi
rm -rf "$dir" && mkdir -p "$dir/tokens" && chmod 700 "$dir"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
so_pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label remote \
  --so-pin "$so_pin" --pin "$pin" >/dev/null
client="$(ls /usr/lib/*/pkcs11/p11-kit-client.so | head -1)"
serve
cat > "$env_file" <<ENV
export P11_KIT_SERVER_ADDRESS='$P11_KIT_SERVER_ADDRESS'
export SIGNET_P11KIT_TOKEN=remote
export SIGNET_P11KIT_PIN='$pin'
export SIGNET_P11KIT_MODULE='$client'
ENV
chmod 600 "$env_file"
cat "$env_file"
