#!/usr/bin/env bash
# Reconnect storms (issue #9 item 8, issue #14 item 2), timed with
# `certmq-loadgen storm`: N mutual-TLS devices (one certificate each, from
# `certmq pki issue batch`, ClientId = CN) connect and are held; then all of
# them, or those of one node, lose their connection at once, and the time
# until every device has its CONNACK again is measured, with TLS resumption
# off (a full handshake each) and on (each device offers its last ticket).
#   single   one broker (CPU 0, generator on CPU 1); the generator drops every
#            connection itself; certmq, then mosquitto, in the same run.
#   cluster  three certmq nodes (PostgreSQL store, NATS) behind HAProxy with
#            deploy/haproxy.cfg (ports rewritten); kill -9 of node 1 (HAProxy
#            balances by least connections: it holds a third); its devices
#            reconnect through HAProxy to the two left, whose CPU is counted. Nodes on CPU 0; the generator, HAProxy, NATS and
#            PostgreSQL on CPU 1.
# Each row is run --repeat times; the table shows the median and the range.
# Usage: bench/storm.sh single|cluster [--conns N] [--repeat R] [--pending P]
#          [--node-opts 'option value;option value']   (added to every certmq
#          config: e.g. 'tls_tickets store' once tickets are shared)
#          [--pki DIR]   (reuse device certificates made by an earlier run)
#          [--brokers 'certmq mosquitto']   (single: which brokers, in order)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
mosquitto=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
mode=${1:-}
shift || true
conns=""
repeat=3
pending=100 # mosquitto 2.0 listens with a backlog of 100: more SYNs at once overflow it
node_opts=""
pki_keep=""
brokers="certmq mosquitto"
while [ $# -gt 0 ]; do
  case $1 in
    --conns) conns=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --pending) pending=$2; shift ;;
    --node-opts) node_opts=$2; shift ;;
    --pki) pki_keep=$2; shift ;;
    --brokers) brokers=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "storm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case $mode in
  single) conns=${conns:-20000} ;;
  cluster) conns=${conns:-5000} ;;
  *) echo "usage: bench/storm.sh single|cluster [options] (--help)" >&2; exit 2 ;;
esac

# Each held connection is a descriptor in the broker and one in the generator
# (through HAProxy, two more in HAProxy): the per-process hard limit caps N.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_cap=$(($(ulimit -n) - 200))
if [ "$conns" -gt "$fd_cap" ]; then
  echo "storm.sh: the open-file limit is $(ulimit -n) (hard $(ulimit -Hn)): $fd_cap devices, not $conns" >&2
  conns=$fd_cap
fi

work=$(mktemp -d /tmp/certmq-bench-storm.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ -f "$work/pgdir" ] && "$root/scripts/pgtest.sh" stop "$(cat "$work/pgdir")"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# The server certificates from gen_certs.sh; the devices from one device CA,
# dev-0 .. dev-(N-1) named as the generator expects.
make_pki() {
  pki=${pki_keep:-$work/pki}
  if [ -f "$pki/devices/dev-$((conns - 1)).pem" ]; then
    echo "storm.sh: reusing the devices in $pki" >&2
    return 0
  fi
  echo "storm.sh: $conns device certificates in $pki" >&2
  # `issue batch` pads the numbers to the width of the largest (at least 4)
  if [ ! -f "$pki/batch/dev-$(printf %04d $((conns - 1))).chain.pem" ]; then
    rm -rf "$pki"
    "$root/bench/gen_certs.sh" "$pki" 1 >/dev/null || exit 1
    "$certmq" pki ca init "$pki/dca" --cn "certmq storm device CA" --key ec:P-256 >/dev/null &&
      "$certmq" pki issue batch --ca "$pki/dca" --count "$conns" --prefix dev- --start 0 \
        --key ec:P-256 --out "$pki/batch" >/dev/null || exit 1
    cp "$pki/dca/ca.pem" "$pki/device-ca.pem"
  fi
  rm -rf "$pki/devices"
  mkdir -p "$pki/devices"
  python3 - "$pki" "$conns" <<'PY'
import os, sys
pki, n = sys.argv[1], int(sys.argv[2])
w = max(4, len(str(n - 1)))
for i in range(n):
    os.symlink(f"../batch/dev-{i:0{w}d}.chain.pem", f"{pki}/devices/dev-{i}.pem")
    os.symlink(f"../batch/dev-{i:0{w}d}.key", f"{pki}/devices/dev-{i}.key")
PY
  chmod -R a+rX "$pki"
}

# register HTTP_PORT: every device registered ahead with one bulk CSV
# upload (the batch's), so the first connections do not each write a new
# device to the store (one commit each) before the storm.
register() {
  local made
  made=$(curl -sS -u management/admin:bench-admin-password -F "file=@$pki/batch/bulk-registration.csv" \
    "http://127.0.0.1:$1/devicecontrol/bulkNewDeviceRequests" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("numberOfCreated", 0))')
  [ "${made:-0}" -ge "$conns" ] || { echo "storm.sh: only ${made:-0} devices registered" >&2; return 1; }
}

# extra_opts: --node-opts as config lines.
extra_opts() { tr ';' '\n' <<<"$node_opts" | sed 's/^ *//; /^$/d'; }

# storm_run OUTFILE LOADGEN-ARGS...: the generator's RESULT line (empty if none).
storm_run() {
  local out=$1
  shift
  taskset -c 1 "$loadgen" storm -c "$conns" --pending "$pending" --plain-id --keepalive 600 \
    --cafile "$pki/ca.pem" --devices "$pki/devices" "$@" >"$out" 2>>"$work/lg.log"
  grep '^RESULT' "$out"
}

declare -a ROWS # "label|seconds list|per-cpu list|resumed list|failures list|dropped"

# summary LABEL RESULT-LINES: one row of medians and ranges.
summary() {
  local label=$1 lines=$2
  awk -v l="$label" '
    function med(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function get(line, k,   m) { if (match(line, " " k "=[^ ]*")) return substr(line, RSTART + length(k) + 2, RLENGTH - length(k) - 2); return "" }
    # +0: numbers, not strings, when sorted and compared
    /^RESULT/ { n++; s[n] = get($0, "seconds") + 0; c[n] = get($0, "per_cpu_s") + 0
                r[n] = get($0, "resumed") + 0; d[n] = get($0, "dropped") + 0; u[n] = get($0, "up") + 0
                f[n] = get($0, "failures") + 0; p[n] = get($0, "p99_ms") + 0
                ok = ok (u[n] == get($0, "conns") + 0 ? "" : " (not all up)") }
    END {
      if (!n) { printf "| %s | n/a | | | | |\n", l; exit }
      lo = hi = s[1]; for (i = 1; i <= n; i++) { if (s[i] < lo) lo = s[i]; if (s[i] > hi) hi = s[i] }
      for (i = 1; i <= n; i++) { cs[i] = c[i]; rs[i] = r[i]; ds[i] = d[i]; fs[i] = f[i]; ps[i] = p[i] }
      printf "| %s | %.2f (%.2f-%.2f)%s | %.0f | %.0f | %.0f | %.0f | %.0f |\n", l, med(s, n), lo, hi, ok,
        med(ds, n), med(rs, n), med(ps, n), med(cs, n), med(fs, n)
    }' <<<"$lines"
}

header() {
  echo "| storm ($conns devices, $repeat runs) | seconds until all up: median (range) | dropped | resumed | p99 per device, ms | reconnects per broker CPU-second | failed attempts |"
  echo "|---|---|---|---|---|---|---|"
}

# ---- single node -----------------------------------------------------------

single_start() { # BROKER: sets bpid, port
  local b=$1 http
  port=$(free_port)
  http=$(free_port)
  if [ "$b" = certmq ]; then
    rm -rf "$work/var"
    { cat <<EOF
data_dir $work/var
log_level warn
max_connections 1000000
listener $port 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
listener $http 127.0.0.1
protocol http
EOF
      extra_opts; } >"$work/certmq.conf"
    CERTMQ_ADMIN_PASSWORD=bench-admin-password \
      taskset -c 0 "$certmq" serve --config "$work/certmq.conf" >"$work/certmq.log" 2>&1 &
  else
    cat >"$work/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
max_keepalive 65535
listener $port 127.0.0.1
cafile $pki/device-ca.pem
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
require_certificate true
use_identity_as_username true
EOF
    taskset -c 0 "$mosquitto" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
  fi
  bpid=$!
  wait_port "$port" || { echo "storm.sh: $b did not start: $(tail -3 "$work/$b.log")" >&2; return 1; }
  [ "$b" = mosquitto ] || { wait_port "$http" && trust_ca "$http" "$pki/device-ca.pem" && register "$http"; }
}

single_stop() {
  kill "$bpid" 2>/dev/null
  wait "$bpid" 2>/dev/null
}

run_single() {
  local b res r out lines
  # One loopback source address per 5,000 devices: each dropped connection
  # leaves its port in TIME_WAIT while the device connects again.
  local sources=$((conns / 5000 + 1))
  header
  for b in $brokers; do
    for res in off on; do
      lines=""
      for r in $(seq "$repeat"); do
        single_start "$b" || continue
        local args=(--port "$port" --sources "$sources" --drop-after 1 --broker-pid "$bpid")
        [ "$res" = on ] && args+=(--resume)
        out=$(storm_run "$work/storm.out" "${args[@]}")
        single_stop
        echo "  $b resumption $res #$r: ${out#RESULT }" >&2
        lines+="$out"$'\n'
      done
      summary "$b, resumption $res" "$lines"
    done
  done
}

# ---- cluster ---------------------------------------------------------------

start_cluster() {
  local uri n mq http pg=$work/pg
  echo "$pg" >"$work/pgdir"
  uri=$("$root/scripts/pgtest.sh" start "$pg") || exit 1
  psql -q "$uri" -c "CREATE DATABASE certmq" >/dev/null || exit 1
  store=${uri%/postgres}/certmq
  nats_port=$(free_port)
  taskset -c 1 nats-server -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 &
  pids+=($!)
  wait_port "$nats_port" || exit 1
  for n in 1 2 3; do
    mq=$(free_port)
    http=$(free_port)
    eval "mqtt_$n=$mq http_$n=$http"
    mkdir -p "$work/node$n"
    # One key-encryption key for all: what one node seals (ticket keys with
    # tls_tickets store), another opens.
    [ -s "$work/kek" ] || { openssl rand -out "$work/kek" 32 && chmod 600 "$work/kek"; }
    { cat <<EOF
data_dir $work/node$n
log_level warn
store $store
ca_key_file $work/kek
cluster nats://127.0.0.1:$nats_port
node_id node$n
max_connections 1000000
http_max_connections_per_ip 10000
listener $mq 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates optional
proxy_protocol true
listener $http 127.0.0.1
protocol http
EOF
      extra_opts; } >"$work/node$n.conf"
    CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c 0 "$certmq" serve \
      --config "$work/node$n.conf" >"$work/node$n.log" 2>&1 &
    eval "pid_$n=$!"
    pids+=($!)
    # The first node migrates the schema: the others wait for it.
    [ "$n" = 1 ] && { wait_port "$http" || { tail -5 "$work/node1.log" >&2; exit 1; }; }
  done
  for n in 1 2 3; do
    wait_port "$(eval echo "\$http_$n")" || { tail -5 "$work/node$n.log" >&2; exit 1; }
  done
  trust_ca "$http_1" "$pki/device-ca.pem" && register "$http_1" ||
    { echo "storm.sh: could not trust the device CA or register the devices" >&2; exit 1; }
  # deploy/haproxy.cfg as shipped, on this run's ports.
  hap_port=$(free_port)
  sed -e "s/127.0.0.1:8883/127.0.0.1:$hap_port/" -e "s/127.0.0.1:8080/127.0.0.1:$(free_port)/" \
      -e "s/:18831 /:$mqtt_1 /; s/:18832 /:$mqtt_2 /; s/:18833 /:$mqtt_3 /" \
      -e "s/port 18081/port $http_1/; s/port 18082/port $http_2/; s/port 18083/port $http_3/" \
      -e "s/:18081 /:$http_1 /; s/:18082 /:$http_2 /; s/:18083 /:$http_3 /" \
      "$root/deploy/haproxy.cfg" >"$work/haproxy.cfg"
  taskset -c 1 haproxy -q -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  hap_pid=$!
  pids+=("$hap_pid")
  wait_port "$hap_port" || { cat "$work/haproxy.log" >&2; exit 1; }
  # Until HAProxy has seen every node healthy (rise 2, inter 1 s).
  sleep 3
}

stop_cluster() {
  kill "${pids[@]}" 2>/dev/null
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  pids=()
  "$root/scripts/pgtest.sh" stop "$(cat "$work/pgdir")"
  rm -f "$work/pgdir"
  rm -rf "$work"/node?
}

# node_conns N: established MQTT connections the node holds (from /proc).
node_conns() {
  local port
  port=$(eval echo "\$mqtt_$1")
  ss -Htn state established "( sport = :$port )" | wc -l
}

# cluster_once RESUME: one cluster, one storm; the RESULT line in $work/result.
cluster_once() {
  local res=$1 out=$work/storm.out n args
  : >"$work/result"
  start_cluster
  args=(--port "$hap_port" --timeout 180)
  [ "$res" = on ] && args+=(--resume)
  taskset -c 1 "$loadgen" storm -c "$conns" --pending "$pending" --plain-id --keepalive 600 \
    --cafile "$pki/ca.pem" --devices "$pki/devices" "${args[@]}" \
    --broker-pid "$pid_2" --broker-pid2 "$pid_3" >"$out" 2>>"$work/lg.log" &
  local lg=$!
  for _ in $(seq 3000); do
    grep -q '^READY' "$out" 2>/dev/null && break
    kill -0 "$lg" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q '^READY' "$out"; then
    echo "storm.sh: the devices did not all connect: $(tail -3 "$work/lg.log")" >&2
    kill "$lg" 2>/dev/null; wait "$lg" 2>/dev/null
    stop_cluster
    return
  fi
  for n in 1 2 3; do echo "  node$n holds $(node_conns "$n") devices" >&2; done
  kill -9 "$pid_1"
  wait "$pid_1" 2>/dev/null
  wait "$lg"
  grep '^RESULT' "$out" >"$work/result"
  stop_cluster
}

run_cluster() {
  local res r out lines
  header
  for res in off on; do
    lines=""
    for r in $(seq "$repeat"); do
      cluster_once "$res"
      out=$(cat "$work/result")
      echo "  cluster resumption $res #$r: ${out#RESULT }" >&2
      lines+="$out"$'\n'
    done
    summary "3 nodes behind HAProxy, kill -9 of one, resumption $res${node_opts:+ ($node_opts)}" "$lines"
  done
}

make_pki
if [ "$mode" = single ]; then run_single; else run_cluster; fi
