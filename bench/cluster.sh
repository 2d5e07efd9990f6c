#!/usr/bin/env bash
# What a message costs when it crosses nodes (issue #9 item 8): QoS 0 and
# QoS 1 messages per broker CPU-second with publishers and subscribers on
# the same node, and with publishers on node A and subscribers on node B,
# the two joined by a nats-server (certmq-loadgen pubsub, 10 -> 10 pairs,
# 64 B, mutual TLS). Both nodes are pinned to CPU 0, the generator and
# nats-server to CPU 1; broker CPU is both nodes' together.
# Usage: bench/cluster.sh [--seconds S] [--repeat N]   (prints a table)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
secs=5
repeat=2
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    *) echo "usage: $0 [--seconds S] [--repeat N]" >&2; exit 2 ;;
  esac
  shift
done
command -v nats-server >/dev/null || { echo "cluster.sh: nats-server missing (scripts/deps.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/certmq-bench-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


"$root/bench/gen_certs.sh" "$work/pki" 40 >/dev/null || exit 1
pki=$work/pki
nats_port=$(free_port)
taskset -c 1 nats-server -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
pids+=($!)

# node NAME: starts a node joined to the cluster; sets mqtt_NAME, http_NAME, pid_NAME.
node() {
  local n=$1 mqtt http
  mqtt=$(free_port)
  http=$(free_port)
  cat >"$work/$n.conf" <<EOF
data_dir $work/$n
log_level warn
max_connections 100000
persistence false
cluster nats://127.0.0.1:$nats_port
node_id $n
listener $mqtt 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
listener $http 127.0.0.1
protocol http
EOF
  CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c 0 "$certmq" serve --config "$work/$n.conf" \
    >"$work/$n.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
    sleep 0.1
  done
  # The device CA as a tenant's trusted certificate, auto-registration on.
  trust_ca "$http" "$pki/device-ca.pem" ||
    { echo "cluster.sh: node $n did not come up: $(tail -3 "$work/$n.log")" >&2; exit 1; }
  eval "mqtt_$n=$mqtt pid_$n=$pid"
}
node a
node b


# best QOS SUBPORT: the best of $repeat runs' messages/s and per broker CPU-second.
best() {
  local q=$1 sub=$2 r out rate=0 cpu=0
  for r in $(seq "$repeat"); do
    out=$(taskset -c 1 "$loadgen" pubsub --qos "$q" -c 10 --window 100 --payload 64 \
          -d "$secs" --warmup 2 --port "$mqtt_a" --sub-port "$sub" --cafile "$pki/ca.pem" \
          --devices "$pki/devices" --broker-pid "$pid_a" --broker-pid2 "$pid_b" \
          2>>"$work/lg.log" | grep '^RESULT')
    echo "  qos$q sub-port $sub #$r: ${out#RESULT }" >&2
    if awk -v x="$(kv "$out" rate)" -v y="$rate" 'BEGIN { exit !(x > y) }'; then
      rate=$(kv "$out" rate)
      cpu=$(kv "$out" per_cpu_s)
    fi
  done
  echo "$rate $cpu"
}

echo "| metric | same node | across nodes | across / same |"
echo "|---|---|---|---|"
for q in 0 1; do
  read -r same_rate same_cpu < <(best "$q" "$mqtt_a")
  read -r cross_rate cross_cpu < <(best "$q" "$mqtt_b")
  awk -v q="$q" -v a="$same_rate" -v b="$cross_rate" -v c="$same_cpu" -v d="$cross_cpu" 'BEGIN {
    printf "| QoS %d messages/s (10 -> 10, 64 B) | %.0f | %.0f | %.2f |\n", q, a, b, (a > 0 ? b / a : 0)
    printf "| QoS %d messages per broker CPU-second | %.0f | %.0f | %.2f |\n", q, c, d, (c > 0 ? d / c : 0)
  }'
done
