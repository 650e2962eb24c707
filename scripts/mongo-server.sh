#!/usr/bin/env bash
# Starts or stops the Mongo test server: SecantusDB (a MongoDB-wire server
# from PyPI, pinned below) in a virtualenv under target/, in memory, on
# 127.0.0.1:27017. A separate test server: nothing of it is linked into
# Palisade, and the mongo backend must be right for MongoDB 6-8 as well.
#
#   bash scripts/mongo-server.sh start   # prints the URL to use
#   bash scripts/mongo-server.sh stop
#
# State (virtualenv, PID file, log) lives in target/mongo-server. `stop`
# kills only the process whose PID this script wrote there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.7.0b3
PORT=${PALISADE_MONGO_PORT:-27017}
DIR="$PWD/target/mongo-server"
VENV="$PWD/target/mongo-venv"
URL="mongodb://127.0.0.1:$PORT/?directConnection=true"

log() { printf '[mongo-server] %s\n' "$*" >&2; }

ping() {
  "$VENV/bin/python" - "$URL" <<'PY' >/dev/null 2>&1
import sys, pymongo
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=500).admin.command("ping")
PY
}

install() {
  if [ -x "$VENV/bin/secantusd-py" ] \
    && [ "$("$VENV/bin/pip" show secantusdb 2>/dev/null | sed -n 's/^Version: //p')" = "$VERSION" ]; then
    return 0
  fi
  log "installing secantusdb==$VERSION into $VENV"
  command -v python3 >/dev/null || { log "python3 is required"; exit 1; }
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$VERSION"
}

stop() {
  local pidfile="$DIR/secantusd.pid"
  if [ -s "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      # It takes a few seconds to exit.
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    log "stopped"
  fi
  rm -rf "$DIR"
}

start() {
  install
  stop
  mkdir -p "$DIR"
  if ping; then
    log "port $PORT already answers as a Mongo server this script did not start"; exit 1
  fi
  nohup "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$PORT" --storage-path :memory: --log-level WARNING \
    >"$DIR/secantusd.log" 2>&1 &
  echo $! >"$DIR/secantusd.pid"
  for _ in $(seq 1 150); do
    if ping; then log "up: $URL"; echo "$URL"; return 0; fi
    kill -0 "$(cat "$DIR/secantusd.pid")" 2>/dev/null || break
    sleep 0.2
  done
  log "the Mongo test server did not come up:"; tail -n 20 "$DIR/secantusd.log" >&2 || true
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
