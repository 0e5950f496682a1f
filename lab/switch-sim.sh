#!/usr/bin/env bash
# Start/stop the RouterOS API simulator (a test double of the CRS804-4DDQ) in the background.
#
#   lab/switch-sim.sh start|stop|status|restart
#
# Environment (all optional):
#   SWITCH_SIM_STATE_DIR  where pid, log, cert, credentials, state live (default lab/.state/switch)
#   SWITCH_SIM_PORT       TCP port, TLS (default 8729; 0 = pick a free port, see $STATE_DIR/port)
#   SWITCH_SIM_HOST       listen address (default 127.0.0.1)
#   SWITCH_SIM_SEED       JSON seed (RouterOS version, port conditions), read at start
#   SWITCH_SIM_VERSION    RouterOS version to report (default 7.25, over the seed's; 7.22 for the QoS gate)
#   SWITCH_SIM_USER       API user (default gb10; the factory user admin exists too)
#   SWITCH_SIM_CERT_DIR   where the certificates are (default $STATE_DIR). Another folder makes the
#                         simulator an impostor: same names, other keys (see docs/switch.md)
#   SWITCH_SIM_SELF_SIGNED  1: present a self-signed certificate (as RouterOS makes one) instead of
#                         one signed by the lab CA
#   PYTHON                interpreter (default .venv/bin/python, else python3)
#
# Files in $STATE_DIR: pid, port, log, username, password, state.json (the switch configuration,
# survives restarts), phy.json (port conditions, re-read live), and in $SWITCH_SIM_CERT_DIR: cert.pem
# (what to trust: the lab CA, or the self-signed certificate), server.pem and server-key.pem (what the
# switch presents), server.sha256 (its SHA-256 fingerprint), ca-key.pem (the lab CA's key).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${SWITCH_SIM_STATE_DIR:-$ROOT/lab/.state/switch}"
PORT="${SWITCH_SIM_PORT:-8729}"
HOST="${SWITCH_SIM_HOST:-127.0.0.1}"
USER_NAME="${SWITCH_SIM_USER:-gb10}"
CERT_DIR="${SWITCH_SIM_CERT_DIR:-$STATE_DIR}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

running() {
  [[ -f "$STATE_DIR/pid" ]] && kill -0 "$(cat "$STATE_DIR/pid")" 2>/dev/null
}

wait_ready() {
  local port
  for _ in $(seq 1 100); do
    if [[ -s "$STATE_DIR/port" ]]; then
      port="$(cat "$STATE_DIR/port")"
      if "$PYTHON" -c "import socket,sys; socket.create_connection(('$HOST', int(sys.argv[1])), 1).close()" "$port" 2>/dev/null; then
        return 0
      fi
    fi
    running || return 1
    sleep 0.1
  done
  return 1
}

start() {
  mkdir -p "$STATE_DIR"
  chmod 700 "$STATE_DIR"
  if running; then
    echo "switch simulator already running (pid $(cat "$STATE_DIR/pid"), port $(cat "$STATE_DIR/port"))"
    return 0
  fi
  [[ -s "$STATE_DIR/username" ]] || printf '%s\n' "$USER_NAME" > "$STATE_DIR/username"
  if [[ ! -s "$STATE_DIR/password" ]]; then
    (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))' > "$STATE_DIR/password")
  fi
  [[ -f "$STATE_DIR/phy.json" ]] || echo '{"ports": {}}' > "$STATE_DIR/phy.json"
  rm -f "$STATE_DIR/port"
  local args=(--host "$HOST" --port "$PORT" --cert-dir "$CERT_DIR" --user "$(cat "$STATE_DIR/username")"
              --password-file "$STATE_DIR/password" --state-file "$STATE_DIR/state.json"
              --phy-file "$STATE_DIR/phy.json" --port-file "$STATE_DIR/port")
  if [[ -n "${SWITCH_SIM_SEED:-}" ]]; then args+=(--seed "$SWITCH_SIM_SEED"); fi
  if [[ "${SWITCH_SIM_SELF_SIGNED:-0}" == 1 ]]; then args+=(--self-signed); fi
  if [[ -n "${SWITCH_SIM_VERSION:-}" ]]; then
    args+=(--version "$SWITCH_SIM_VERSION")
  elif [[ -z "${SWITCH_SIM_SEED:-}" ]]; then
    args+=(--version 7.25)
  fi
  cd "$ROOT"  # python -m lab.routeros_sim: the package path from the repository root
  nohup "$PYTHON" -m lab.routeros_sim "${args[@]}" \
    >> "$STATE_DIR/log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/pid"
  if ! wait_ready; then
    echo "switch simulator did not start; last log lines:" >&2
    tail -n 20 "$STATE_DIR/log" >&2 || true
    return 1
  fi
  echo "switch simulator started (pid $(cat "$STATE_DIR/pid"), $HOST:$(cat "$STATE_DIR/port"), TLS with $CERT_DIR/server.pem, state in $STATE_DIR)"
}

stop() {
  if running; then
    local pid
    pid="$(cat "$STATE_DIR/pid")"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "switch simulator stopped"
  else
    echo "switch simulator not running"
  fi
  rm -f "$STATE_DIR/pid" "$STATE_DIR/port"
}

status() {
  if running; then
    echo "switch simulator running: pid $(cat "$STATE_DIR/pid"), $HOST:$(cat "$STATE_DIR/port"), user $(cat "$STATE_DIR/username"), trust $STATE_DIR/cert.pem"
  else
    echo "switch simulator not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart)
    # Keep the port of the running instance unless SWITCH_SIM_PORT says otherwise.
    if [[ -z "${SWITCH_SIM_PORT:-}" && -s "$STATE_DIR/port" ]]; then PORT="$(cat "$STATE_DIR/port")"; fi
    stop; start ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
