#!/usr/bin/env bash
# The broker lock's contention under the QoS 0 message load of compare.sh
# (10 -> 10 pairs, 64 B, window 100): certmq with `workers N` on CPUs B, the
# generator on CPUs G; after each run, certmq_broker_lock_waits_total and
# certmq_broker_lock_wait_seconds_total from /metrics, against the messages
# and the broker's CPU seconds of the run.
# --generators K splits the pairs over K generator processes (10/K each,
# each with its own ClientIds and topics); --tenants T puts generator k's
# devices in tenant k mod T (tenant 0: management; the others get a device
# CA of their own), so that T = 1 and T = K compare the same load in one
# tenant and spread over tenants, whose spaces have locks of their own.
# Usage: bench/lockwait.sh [--workers N] [--cpus B:G] [--seconds S] [--repeat R] [--qos 0|1]
#                          [--generators K] [--tenants T]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
workers=2
bcpu=0-1
gcpu=0-1
secs=4
repeat=3
qos=0
gens=1
tenants=1
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=$2; shift ;;
    --cpus) bcpu=${2%%:*}; gcpu=${2##*:}; shift ;;
    --seconds) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --qos) qos=$2; shift ;;
    --generators) gens=$2; shift ;;
    --tenants) tenants=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "lockwait.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

case "$gens" in 1|2|5|10) ;; *) echo "lockwait.sh: --generators must divide 10 pairs" >&2; exit 2 ;; esac
if [ "$tenants" -lt 1 ] || [ "$tenants" -gt "$gens" ]; then
  echo "lockwait.sh: --tenants must be 1 .. --generators" >&2; exit 2
fi
work=$(mktemp -d /tmp/certmq-lockwait.XXXXXX)
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/bench/gen_certs.sh" "$work/pki" 20 >/dev/null || exit 1
pki=$work/pki
for t in $(seq 1 $((tenants - 1))); do
  "$root/bench/gen_certs.sh" "$work/pki-$t" 20 >/dev/null || exit 1
done
auth=(-u management/admin:bench-admin-password)

metric() { sed -n "s/^$1 //p" "$work/metrics"; }

for i in $(seq "$repeat"); do
  port=$(free_port)
  http_port=$(free_port)
  rm -rf "$work/var"
  cat >"$work/certmq.conf" <<EOF
data_dir $work/var
log_level warn
workers $workers
listener $port 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
listener $http_port 127.0.0.1
protocol http
EOF
  CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c "$bcpu" "$certmq" serve \
    --config "$work/certmq.conf" >"$work/certmq.log" 2>&1 &
  broker_pid=$!
  up=0
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] || { echo "lockwait.sh: certmq did not start" >&2; tail -5 "$work/certmq.log" >&2; exit 1; }
  trust_ca "$http_port" "$pki/device-ca.pem" || exit 1
  for t in $(seq 1 $((tenants - 1))); do
    curl -sf -o /dev/null "${auth[@]}" -H 'Content-Type: application/json' \
      --data-binary "{\"id\": \"bench$t\", \"adminName\": \"admin\", \"adminPass\": \"bench-admin-$t\"}" \
      "http://127.0.0.1:$http_port/tenant/tenants" || exit 1
    trust_ca "$http_port" "$work/pki-$t/device-ca.pem" "bench$t" || exit 1
  done
  curl -sf "${auth[@]}" "http://127.0.0.1:$http_port/metrics" >"$work/metrics"
  w0=$(metric certmq_broker_lock_waits_total)
  s0=$(metric certmq_broker_lock_wait_seconds_total)
  if [ "$gens" = 1 ]; then
    out=$(taskset -c "$gcpu" "$loadgen" pubsub --port "$port" --cafile "$pki/ca.pem" \
      --devices "$pki/devices" --qos "$qos" -c 10 --window 100 -d "$secs" --warmup 1 \
      --broker-pid "$broker_pid")
  else
    gpids=()
    for k in $(seq 0 $((gens - 1))); do
      t=$((k % tenants))
      devs=$pki/devices
      [ "$t" -gt 0 ] && devs=$work/pki-$t/devices
      taskset -c "$gcpu" "$loadgen" pubsub --port "$port" --cafile "$pki/ca.pem" \
        --devices "$devs" --tag "g$k" --qos "$qos" -c $((10 / gens)) --window 100 \
        -d "$secs" --warmup 1 --broker-pid "$broker_pid" >"$work/gen-$k.out" &
      gpids+=($!)
    done
    wait "${gpids[@]}"
    # One line as one generator's: messages and rates summed, the broker's
    # CPU seconds from the first (each measured the same broker over the
    # same seconds).
    out=$(python3 - "$work"/gen-*.out <<'PY'
import sys
kvs = []
for path in sys.argv[1:]:
    line = next(l for l in open(path) if l.startswith("RESULT"))
    kvs.append(dict(x.split("=", 1) for x in line.split()[1:] if "=" in x))
recv = sum(float(k["received"]) for k in kvs)
rate = sum(float(k["rate"]) for k in kvs)
cpu = float(kvs[0].get("broker_cpu", "nan"))
per_cpu = f"{recv / cpu:.1f}" if cpu > 0 else "nan"
print(f"RESULT generators={len(kvs)} received={recv:.0f} rate={rate:.0f} "
      f"broker_cpu={cpu:.3f} per_cpu_s={per_cpu}")
PY
)
  fi
  curl -sf "${auth[@]}" "http://127.0.0.1:$http_port/metrics" >"$work/metrics"
  w1=$(metric certmq_broker_lock_waits_total)
  s1=$(metric certmq_broker_lock_wait_seconds_total)
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null; broker_pid=""
  # The counters cover set-up and warm-up too; the rates are the generator's.
  python3 - "$out" "$w0" "$w1" "$s0" "$s1" "$secs" <<'PY'
import sys
out, w0, w1, s0, s1, secs = sys.argv[1], *map(float, sys.argv[2:])
kv = dict(x.split("=", 1) for x in out.split()[1:] if "=" in x)
recv, cpu = float(kv["received"]), float(kv.get("broker_cpu", "nan"))
waits, wait_s = w1 - w0, s1 - s0
print(f"rate={float(kv['rate']):.0f}/s per_cpu_s={kv.get('per_cpu_s')} broker_cpu={cpu:.2f} "
      f"lock_waits={waits:.0f} waits_per_1k_msgs={1000 * waits / max(recv, 1):.2f} "
      f"wait_s={wait_s:.3f} (over about {secs + 1:.0f} s of load: "
      f"{100 * wait_s / (secs + 1):.1f}% of one thread's time)")
PY
done
