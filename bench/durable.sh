#!/usr/bin/env bash
# Benchmarks durable sessions: QoS 1 messages/s and latency to persistent
# subscribers (10 -> 10, 64 B, mutual TLS, certmq-loadgen --persistent) with
# certmq persistence on, certmq persistence off and mosquitto with
# `persistence true` (its default autosave); then the time certmq takes after a
# kill -9 to come back (start until the listener accepts) with N queued QoS 1
# messages in sessions.db. Broker on CPU 0, generator on CPU 1, a fresh broker
# per run. Prints a markdown table; --record appends it to bench/RESULTS.md.
# Usage: bench/durable.sh [--record] [--seconds S] [--repeat N] [--queued N]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
mosquitto=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
record=0
secs=4
repeat=2
queued=1000000

while [ $# -gt 0 ]; do
  case "$1" in
    --record) record=1 ;;
    --seconds) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --queued) queued=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "durable.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for x in "$certmq" "$loadgen" "$mosquitto"; do
  [ -x "$x" ] || { echo "durable.sh: $x missing (make build; apt install mosquitto)" >&2; exit 1; }
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d /tmp/certmq-durable.XXXXXX)
chmod 0755 "$work" # mosquitto started as root runs as user mosquitto
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -9 "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/bench/gen_certs.sh" "$work/pki" 32 >/dev/null || exit 1
pki=$work/pki


# write_config KIND: certmq-on, certmq-off or mosquitto.
write_config() {
  local f=$work/$1.conf
  case "$1" in
    certmq-*)
      rm -rf "$work/var"
      cat > "$f" <<EOF
data_dir $work/var
log_level warn
workers 0
max_queued 2000000
persistence $([ "$1" = certmq-on ] && echo true || echo false)
listener $port 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
listener $http_port 127.0.0.1
protocol http
EOF
      ;;
    mosquitto)
      rm -rf "$work/mosq"; mkdir -p "$work/mosq"; chown mosquitto "$work/mosq" 2>/dev/null
      cat > "$f" <<EOF
per_listener_settings false
allow_anonymous true
persistence true
persistence_location $work/mosq/
set_tcp_nodelay true
max_queued_messages 2000000
log_dest stderr
log_type error
listener $port 127.0.0.1
cafile $pki/device-ca.pem
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
require_certificate true
use_identity_as_username true
EOF
      ;;
  esac
  echo "$f"
}

start_broker() {
  port=$(free_port)
  http_port=$(free_port)
  local conf
  conf=$(write_config "$1")
  if [ "$1" = mosquitto ]; then
    taskset -c 0 "$mosquitto" -c "$conf" >"$work/$1.log" 2>&1 &
  else
    CERTMQ_ADMIN_PASSWORD=bench-admin-password \
      taskset -c 0 "$certmq" serve --config "$conf" >"$work/$1.log" 2>&1 &
  fi
  broker_pid=$!
  wait_port "$port" "$broker_pid" 10 || { echo "durable.sh: $1 did not start" >&2; tail -5 "$work/$1.log" >&2; return 1; }
  [ "$1" = mosquitto ] || trust_ca "$http_port" "$pki/device-ca.pem"
}

stop_broker() {
  [ -n "$broker_pid" ] || return 0
  kill "$broker_pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$broker_pid" 2>/dev/null
  wait "$broker_pid" 2>/dev/null
  broker_pid=""
}


declare -A RATE P50 P99 PCPU
for kind in certmq-on certmq-off mosquitto; do
  for r in $(seq "$repeat"); do
    start_broker "$kind" || continue
    out=$(taskset -c 1 "$loadgen" pubsub --qos 1 --persistent -c 10 --window 100 --payload 64 \
          -d "$secs" --warmup 1 --port "$port" --cafile "$pki/ca.pem" --devices "$pki/devices" \
          --broker-pid "$broker_pid" 2>>"$work/lg.log" | grep '^RESULT')
    stop_broker
    echo "  $kind #$r: ${out#RESULT }" >&2
    [ -n "$out" ] || continue
    rate=$(kv "$out" rate)
    if [ -z "${RATE[$kind]:-}" ] || awk -v x="$rate" -v y="${RATE[$kind]}" 'BEGIN{exit !(x > y)}'; then
      RATE[$kind]=$rate; P50[$kind]=$(kv "$out" p50_us); P99[$kind]=$(kv "$out" p99_us)
      PCPU[$kind]=$(kv "$out" per_cpu_s)
    fi
  done
done

# Recovery: a persistent subscriber offline, $queued QoS 1 messages queued for
# it (each acknowledged, so committed), kill -9, then the time from the start
# of the new process until its listener accepts.
recovery=""
restored=""
port=$(free_port)
cat > "$work/rec.conf" <<EOF
data_dir $work/rvar
log_level info
allow_anonymous true
max_queued $((queued + 10))
listener $port 127.0.0.1
EOF
rm -rf "$work/rvar"
taskset -c 0 "$certmq" serve --config "$work/rec.conf" >"$work/rec.log" 2>&1 &
broker_pid=$!
if wait_port "$port" "$broker_pid" 10; then
  mosquitto_sub -h 127.0.0.1 -p "$port" -c -q 1 -i durable-bench -t 'bench/q/#' -E
  t0=$(date +%s.%N)
  taskset -c 1 /usr/bin/python3 "$root/bench/durable_fill.py" "$port" "$queued" bench/q/1 ||
    echo "durable.sh: the queue was not filled" >&2
  t1=$(date +%s.%N)
  fill_rate=$(awk -v n="$queued" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n / (b - a)}')
  echo "  queued $queued QoS 1 messages (each acknowledged) at $fill_rate/s; data_dir $(du -sh "$work/rvar" | cut -f1)" >&2
  kill -9 "$broker_pid"; wait "$broker_pid" 2>/dev/null
  t0=$(date +%s.%N)
  taskset -c 0 "$certmq" serve --config "$work/rec.conf" >"$work/rec2.log" 2>&1 &
  broker_pid=$!
  if wait_port "$port" "$broker_pid" 10; then
    t1=$(date +%s.%N)
    recovery=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
    restored=$(grep -o 'persistence: .* restored' "$work/rec2.log")
    echo "  recovery: ${recovery} s ($restored)" >&2
  fi
  stop_broker
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
ms() { awk -v x="$1" 'BEGIN{ if (x == "") print "n/a"; else printf "%.1f", x / 1000 }'; }
table() {
  echo "| QoS 1 to persistent subscribers (10 -> 10, 64 B) | messages/s | per broker CPU-second | p50 ms | p99 ms |"
  echo "|---|---|---|---|---|"
  for k in certmq-on certmq-off mosquitto; do
    label=$k
    [ "$k" = certmq-on ] && label="certmq, persistence true (commit every 2 ms)"
    [ "$k" = certmq-off ] && label="certmq, persistence false (memory only)"
    [ "$k" = mosquitto ] && label="mosquitto, persistence true (autosave)"
    printf "| %s | %.0f | %.0f | %s | %s |\n" "$label" "${RATE[$k]:-0}" "${PCPU[$k]:-0}" \
      "$(ms "${P50[$k]:-}")" "$(ms "${P99[$k]:-}")"
  done
  echo
  echo "- persistence on / off: $(ratio "${RATE[certmq-on]:-}" "${RATE[certmq-off]:-}") in messages/s," \
       "$(ratio "${PCPU[certmq-on]:-}" "${PCPU[certmq-off]:-}") per CPU-second (target >= 0.5)"
  echo "- persistence on / mosquitto: $(ratio "${RATE[certmq-on]:-}" "${RATE[mosquitto]:-}") in messages/s," \
       "$(ratio "${PCPU[certmq-on]:-}" "${PCPU[mosquitto]:-}") per CPU-second (target >= 5)"
  echo "- kill -9 recovery with $queued queued QoS 1 messages (start until the listener accepts): ${recovery:-n/a} s (target < 10 s); ${restored:-}"
}
out=$(table)
echo "$out"
if [ "$record" = 1 ]; then
  {
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M UTC'), certmq $rev, durable sessions (bench/durable.sh)"
    echo
    echo "$(uname -sr), $(nproc) CPUs, load average before run: $load_before;" \
         "best of $repeat runs of ${secs} s"
    echo
    echo "$out"
  } >> "$root/bench/RESULTS.md"
fi
