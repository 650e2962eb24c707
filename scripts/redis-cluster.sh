#!/usr/bin/env bash
# Starts or stops a throwaway 3-master Redis Cluster on 127.0.0.1:7000-7002
# (no persistence, no replicas) for the cluster conformance run
# (tests/redis_cluster.rs, PALISADE_TEST_REDIS_CLUSTER_URL).
#
#   bash scripts/redis-cluster.sh start   # prints the URL to use
#   bash scripts/redis-cluster.sh stop
#
# State (node configs, PID files, logs) lives in target/redis-cluster. `stop`
# kills only the processes whose PIDs this script wrote there.
set -euo pipefail
cd "$(dirname "$0")/.."

PORTS=(7000 7001 7002)
DIR="$PWD/target/redis-cluster"
URL="redis://127.0.0.1:${PORTS[0]}?cluster=true&node=127.0.0.1:${PORTS[1]}&node=127.0.0.1:${PORTS[2]}"

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

stop() {
  [ -d "$DIR" ] || return 0
  for port in "${PORTS[@]}"; do
    local pidfile="$DIR/redis-$port.pid"
    if [ -s "$pidfile" ]; then
      local pid
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    fi
  done
  rm -rf "$DIR"
  log "stopped"
}

start() {
  command -v redis-server >/dev/null || bash scripts/start-services.sh
  stop
  mkdir -p "$DIR"
  for port in "${PORTS[@]}"; do
    if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
      log "port $port is already in use by a server this script did not start"; exit 1
    fi
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$DIR/nodes-$port.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$DIR" \
      --daemonize yes --pidfile "$DIR/redis-$port.pid" --logfile "$DIR/redis-$port.log"
  done
  for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  local nodes=()
  for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 \
    || { cat "$DIR/create.log" >&2; exit 1; }
  for _ in $(seq 1 100); do
    if [ "$(redis-cli -h 127.0.0.1 -p "${PORTS[0]}" cluster info | tr -d '\r' | grep -c '^cluster_state:ok')" = 1 ]; then
      log "up: $URL"; echo "$URL"; return 0
    fi
    sleep 0.1
  done
  log "cluster did not reach state ok"; exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
