#!/usr/bin/env bash
# `make cluster`: a three-node certmq cluster on this machine for trying it
# out, everything on loopback: a PostgreSQL (the shared store), a NATS
# server (messages between nodes), three nodes and HAProxy in front of them
# (deploy/haproxy.cfg: MQTT over TLS on 8883 with PROXY protocol to the
# nodes, the REST API on 8080), so the README's walkthrough runs unchanged.
# It shares var/dev-ca and var/admin-password with `make run` (not both at
# once: same ports). State under var/cluster (PostgreSQL's files under
# /tmp); `down` stops it all and removes them.
#   scripts/cluster.sh up | down | status
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# CERTMQ_VAR and CERTMQ_BIN let a test run it elsewhere with a given build.
var=${CERTMQ_VAR:-$root/var}
dir=$var/cluster
certmq=${CERTMQ_BIN:-$root/build/certmq}
nodes=(1 2 3)
nats_port=4222

log() { echo "cluster: $*"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

alive_pg() { [ -f "$1/data/postmaster.pid" ] && kill -0 "$(head -1 "$1/data/postmaster.pid")" 2>/dev/null; }

wait_health() {
  local port=$1 i
  for i in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# The development CA and server certificate `make run` also uses, made
# here when `make run` has not made them yet.
dev_pki() {
  local ca=$var/dev-ca
  [ -f "$ca/server.pem" ] && return 0
  mkdir -p "$var" && chmod 700 "$var"
  "$certmq" pki ca init "$ca" --cn "certmq development CA" >/dev/null
  local tmp
  tmp=$(mktemp -d)
  "$certmq" pki issue server --ca "$ca" --cn localhost --san IP:127.0.0.1 --out "$tmp" >/dev/null
  mv "$tmp/localhost.pem" "$ca/server.pem"
  mv "$tmp/localhost.key" "$ca/server.key"
  rm -rf "$tmp"
}

# One secret for every node: the management admin's password (the
# walkthrough reads it from var/admin-password) and the key-encryption key
# (a tenant CA key or token key sealed by one node is opened by another).
shared_secrets() {
  umask 077
  [ -s "$var/admin-password" ] || openssl rand -base64 18 >"$var/admin-password"
  [ -s "$dir/kek" ] || openssl rand -out "$dir/kek" 32
}

node_config() {
  local n=$1 store=$2
  cat <<EOF
# node $n of the development cluster (scripts/cluster.sh)
data_dir $dir/node$n
ca_key_file $dir/kek
store $store
cluster nats://127.0.0.1:$nats_port
node_id node$n
# a device resumes its TLS session on whichever node it reaches
tls_tickets store
# HAProxy limits each client; the node sees the balancer's address
http_max_connections_per_ip 10000

listener 1883$n 127.0.0.1
certfile $var/dev-ca/server.pem
keyfile $var/dev-ca/server.key
cafile $var/dev-ca/ca.pem
client_certificates optional
proxy_protocol true

listener 1808$n 127.0.0.1
protocol http
EOF
}

up() {
  if [ -z "${CERTMQ_BIN:-}" ]; then
    scripts/deps.sh cluster
    make --no-print-directory build >/dev/null
  fi
  mkdir -p "$dir" && chmod 700 "$dir"
  dev_pki
  shared_secrets
  # PostgreSQL runs as its own user, which may not enter var/ (mode 0700):
  # its files go to a directory of their own under /tmp.
  local store pg
  if [ -f "$dir/pgdir" ] && [ -f "$(cat "$dir/pgdir")/port" ]; then
    pg=$(cat "$dir/pgdir")
    alive_pg "$pg" || scripts/pgtest.sh resume "$pg"
    store="postgresql://postgres@127.0.0.1:$(cat "$pg/port")/certmq"
  else
    local uri
    pg=$(mktemp -d /tmp/certmq-cluster-pg.XXXXXX)
    echo "$pg" >"$dir/pgdir"
    uri=$(scripts/pgtest.sh start "$pg")
    psql -q "$uri" -c "CREATE DATABASE certmq" >/dev/null
    store=${uri%/postgres}/certmq
  fi
  log "PostgreSQL: $store"
  if ! alive "$dir/nats.pid"; then
    setsid nats-server -a 127.0.0.1 -p "$nats_port" -P "$dir/nats.pid" -l "$dir/nats.log" \
      </dev/null >/dev/null 2>&1 &
    for i in $(seq 1 50); do [ -s "$dir/nats.pid" ] && break; sleep 0.1; done
  fi
  log "NATS: nats://127.0.0.1:$nats_port"
  for n in "${nodes[@]}"; do
    alive "$dir/node$n.pid" && continue
    mkdir -p "$dir/node$n"
    node_config "$n" "$store" >"$dir/node$n.conf"
    CERTMQ_ADMIN_PASSWORD=$(cat "$var/admin-password") \
      setsid "$certmq" serve --config "$dir/node$n.conf" </dev/null >>"$dir/node$n.log" 2>&1 &
    echo $! >"$dir/node$n.pid"
    # The first node migrates the schema and creates the management tenant.
    [ "$n" = 1 ] && { wait_health 18081 || { tail -20 "$dir/node1.log"; exit 1; }; }
  done
  for n in "${nodes[@]}"; do
    wait_health "1808$n" || { log "node$n did not come up:"; tail -20 "$dir/node$n.log"; exit 1; }
    log "node$n: MQTT 127.0.0.1:1883$n, HTTP 127.0.0.1:1808$n, log $dir/node$n.log"
  done
  alive "$dir/haproxy.pid" ||
    haproxy -D -q -f deploy/haproxy.cfg -p "$dir/haproxy.pid" </dev/null >/dev/null 2>"$dir/haproxy.log" ||
    { cat "$dir/haproxy.log"; exit 1; }
  log "HAProxy: MQTT over TLS on localhost:8883, REST on localhost:8080"
  log "up; the management admin's password is in var/admin-password; stop with: make cluster-down"
}

down() {
  for f in haproxy node1 node2 node3 nats; do
    if alive "$dir/$f.pid"; then kill "$(cat "$dir/$f.pid")"; fi
  done
  for f in node1 node2 node3; do
    while alive "$dir/$f.pid"; do sleep 0.1; done
  done
  [ -f "$dir/pgdir" ] && scripts/pgtest.sh stop "$(cat "$dir/pgdir")"
  rm -rf "$dir"
  log "down"
}

status() {
  for f in haproxy nats node1 node2 node3; do
    if alive "$dir/$f.pid"; then echo "$f: running"; else echo "$f: stopped"; fi
  done
  for n in "${nodes[@]}"; do
    echo "node$n /health: $(curl -s "http://127.0.0.1:1808$n/health" || echo unreachable)"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
