#!/usr/bin/env bash
# Handshakes per broker CPU-second, and where the broker's instructions per
# handshake go: certmq pinned to CPU 0, certmq-loadgen on CPU 1, full
# mutual-TLS handshakes or TLS 1.3 resumptions (--resume) with CONNECT and
# CONNACK each. With --callgrind the broker runs under valgrind's callgrind
# (deterministic instruction counts; collection only while measuring) and the
# script prints instructions per handshake by category (bench/hscategory.py).
# Usage: bench/hsprofile.sh [--key rsa|ec] [--resume] [--seconds S] [--repeat N]
#                           [--callgrind] [--conf "option value;..."]
#                           [--loadgen "extra loadgen options"]
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
key=rsa
resume=""
secs=4
repeat=3
callgrind=0
extra_conf=""
lg_extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --key) key=$2; shift ;;
    --resume) resume=--resume ;;
    --seconds) secs=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --callgrind) callgrind=1 ;;
    --conf) extra_conf=$2; shift ;;
    --loadgen) lg_extra=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "hsprofile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

work=$(mktemp -d /tmp/certmq-hsprof.XXXXXX)
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/bench/gen_certs.sh" "$work/pki" 64 >/dev/null || exit 1
pki=$work/pki


start_broker() {
  port=$(free_port)
  http_port=$(free_port)
  rm -rf "$work/var"
  {
    echo "data_dir $work/var"
    echo "log_level warn"
    echo "workers 1"
    echo "max_connections 100000"
    [ -n "$extra_conf" ] && tr ';' '\n' <<<"$extra_conf"
    echo "listener $port 127.0.0.1"
    echo "certfile $pki/server-$key.pem"
    echo "keyfile $pki/server-$key.key"
    echo "client_certificates required"
    echo "listener $http_port 127.0.0.1"
    echo "protocol http"
  } >"$work/certmq.conf"
  local pre=()
  [ "$callgrind" = 1 ] && pre=(valgrind --tool=callgrind --instr-atstart=no
    --callgrind-out-file="$work/cg.out" --separate-threads=no)
  CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c 0 "${pre[@]}" "$certmq" serve \
    --config "$work/certmq.conf" >"$work/certmq.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 600); do
    kill -0 "$broker_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
      trust_ca "$http_port" "$pki/device-ca.pem" && return 0
      break
    fi
    sleep 0.1
  done
  echo "hsprofile.sh: certmq did not start:" >&2
  tail -5 "$work/certmq.log" >&2
  return 1
}

stop_broker() {
  kill "$broker_pid" 2>/dev/null
  wait "$broker_pid" 2>/dev/null
  broker_pid=""
}

lg() {
  # shellcheck disable=SC2086
  taskset -c 1 "$loadgen" handshake --port "$port" --cafile "$pki/ca.pem" \
    --devices "$pki/devices" $resume $lg_extra "$@"
}

if [ "$callgrind" = 1 ]; then
  start_broker || exit 1
  # One generator run (its tickets live in its process): 8 s of warm-up
  # (each device's first connection, the identity cache, the tickets) not
  # collected, then collection for the measured seconds. Two connections at
  # a time keep the slowed broker busy and few handshakes at the edges.
  lg -c 2 -d "$((secs + 2))" --warmup 8 >"$work/lg.out" &
  lgp=$!
  sleep 8
  callgrind_control -i on "$broker_pid" >/dev/null
  sleep "$secs"
  callgrind_control -i off "$broker_pid" >/dev/null
  wait "$lgp"
  stop_broker
  cat "$work/lg.out"
  python3 "$root/bench/hscategory.py" "$work/cg.out"
  [ -n "${KEEP_CG:-}" ] && cp "$work/cg.out" "$KEEP_CG"
  exit 0
fi

for i in $(seq "$repeat"); do
  start_broker || exit 1
  lg -c 32 -d "$secs" --warmup 1 --broker-pid "$broker_pid"
  # The broker's user and system CPU seconds over its whole life (warm-up
  # included): how much of it is the kernel's.
  awk '{printf "broker utime=%.2f stime=%.2f\n", $14 / 100, $15 / 100}' "/proc/$broker_pid/stat"
  stop_broker
done
