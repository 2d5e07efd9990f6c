#!/usr/bin/env bash
# Authentication decisions with 1,000 vs 1,000,000 registered devices in
# PostgreSQL (issue #9 item 8; target: within 5%, since a node decides from
# its in-memory registry and never queries the database on connect).
# One PostgreSQL (scripts/pgtest.sh) holds two databases, `small` and `large`,
# whose device registries hold 1,000 and 1,000,000 rows: the 64 devices the
# generator presents (dev-0 .. dev-63, registered through the REST bulk CSV
# upload) plus filler devices, written by one COPY into the two tables the
# store writes for a device (devices, and its device user in users) while no
# node runs (the REST upload writes ~2,400 rows/s into PostgreSQL here: 7
# minutes for a million); a node loads the registry when it starts.
# The device CA is trusted with auto-registration off, so only a registered
# device is admitted. Then a fresh certmq (store postgresql://.../DB, pinned
# to CPU 0) is started on each database in turn, --repeat times, and
# `certmq-loadgen handshake -c 32` (CPU 1) counts full mutual-TLS handshakes
# + CONNECT/CONNACK per broker CPU-second. The database's transactions and
# rows read from the start of each measurement to the broker's exit are
# taken from pg_stat_database, to show whether connecting queries it.
# With --callgrind, each database also gets one run with the broker under
# valgrind's callgrind, counting only the handshakes' instructions: the
# instructions per handshake do not depend on what else the machine runs.
# Usage: bench/authscale.sh [--rows N] [--repeat R] [--seconds S] [--callgrind]
#   (--rows: the large registry, default 1000000)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
large=1000000
small=1000
repeat=3
secs=4
callgrind=0
run_as=(taskset -c 0) # how start runs the broker
while [ $# -gt 0 ]; do
  case $1 in
    --rows) large=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --seconds) secs=$2; shift ;;
    --callgrind) callgrind=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "authscale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
devices=64

work=$(mktemp -d /tmp/certmq-bench-authscale.XXXXXX)
chmod 0755 "$work"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  "$root/scripts/pgtest.sh" stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

admin=(-u management/admin:bench-admin-password)

"$root/bench/gen_certs.sh" "$work/pki" "$devices" >/dev/null || exit 1
pki=$work/pki
uri=$("$root/scripts/pgtest.sh" start "$work/pg") || exit 1
psql -q "$uri" -c "CREATE DATABASE small" -c "CREATE DATABASE large" >/dev/null || exit 1

# start DB: a fresh certmq on that database; sets pid, port, http.
start() {
  port=$(free_port)
  http=$(free_port)
  rm -rf "$work/var"
  cat >"$work/certmq.conf" <<EOF
data_dir $work/var
log_level warn
store ${uri%/postgres}/$1
max_connections 100000
listener $port 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
listener $http 127.0.0.1
protocol http
EOF
  CERTMQ_ADMIN_PASSWORD=bench-admin-password "${run_as[@]}" "$certmq" serve \
    --config "$work/certmq.conf" >>"$work/certmq.log" 2>&1 &
  pid=$!
  wait_port "$http" "$pid" 300 && wait_port "$port" "$pid" 300 ||
    { echo "authscale.sh: certmq did not start: $(tail -3 "$work/certmq.log")" >&2; exit 1; }
}

stop() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=""
}

# upload FILE: one bulk CSV registration; prints the devices created.
upload() {
  curl -sS "${admin[@]}" -F "file=@$1" "http://127.0.0.1:$http/devicecontrol/bulkNewDeviceRequests" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["numberOfCreated"])'
}

# fill DB ROWS: the device CA trusted (auto-registration off), the 64
# measured devices and filler devices up to ROWS registered.
fill() {
  local db=$1 rows=$2 t0 made=0
  start "$db"
  trust_ca "$http" "$pki/device-ca.pem" management false ||
    { echo "authscale.sh: could not trust the device CA" >&2; exit 1; }
  t0=$(date +%s.%N)
  { echo "ID;AUTH_TYPE;NAME"; seq 0 $((devices - 1)) | awk '{ printf "dev-%d;CERTIFICATES;dev-%d\n", $1, $1 }'; } \
    >"$work/part.csv"
  made=$(upload "$work/part.csv")
  stop
  # The rows a registration writes (pg_registry.c), for the filler devices.
  seq "$devices" $((rows - 1)) | awk -v now="$(date +%s)" \
    '{ printf "management\tfiller-%07d\tc8y_Sensor\tfiller %d\tCERTIFICATES\t%s\n", $1, $1, now }' |
    psql -q "${uri%/postgres}/$db" -c "\\copy devices(tenant, cn, type, name, auth_type, created) FROM pstdin" ||
    exit 1
  seq "$devices" $((rows - 1)) | awk -v now="$(date +%s)" \
    '{ printf "management\tdevice_filler-%07d\t\t8\t1\t%s\n", $1, now }' |
    psql -q "${uri%/postgres}/$db" -c "\\copy users(tenant, name, pw_hash, roles, device, created) FROM pstdin" ||
    exit 1
  made=$((made + $(psql -Atq "${uri%/postgres}/$db" -c "SELECT count(*) FROM devices") - devices))
  awk -v n="$made" -v d="$db" -v s="$t0" -v e="$(date +%s.%N)" \
    'BEGIN { printf "authscale.sh: %s: %d devices registered in %.1f s\n", d, n, e - s }' >&2
  echo "$made"
}

# db_counts DB: committed transactions and rows fetched in that database.
db_counts() {
  psql -Atq "$uri" -c "SELECT xact_commit + xact_rollback, tup_fetched + tup_returned FROM pg_stat_database WHERE datname = '$1'" | tr '|' ' '
}

declare -A LINES
n_small=$(fill small "$small")
n_large=$(fill large "$large")
[ -n "$n_small" ] && [ -n "$n_large" ] || exit 1
for r in $(seq "$repeat"); do
  for db in small large; do
    start "$db"
    # A PostgreSQL backend reports its statistics when it has been idle for
    # 10 s, or when it ends: wait until the broker's start-up reads are
    # counted, and read the counters again once the broker has exited.
    sleep 11
    x0=$(db_counts "$db")
    out=$(taskset -c 1 "$loadgen" handshake -c 32 -d "$secs" --warmup 1 --port "$port" \
          --cafile "$pki/ca.pem" --devices "$pki/devices" --broker-pid "$pid" 2>>"$work/lg.log" |
          grep '^RESULT')
    stop
    sleep 0.5
    x1=$(db_counts "$db")
    read -r t0 f0 <<<"$x0"
    read -r t1 f1 <<<"$x1"
    out="$out db_xacts=$((t1 - t0)) db_rows=$((f1 - f0))"
    echo "  $db #$r: ${out#RESULT }" >&2
    LINES[$db]+="$out"$'\n'
  done
done

# median KEY LINES
median() {
  awk -v k="$1" '{ if (match($0, " " k "=[^ ]*")) v[++n] = substr($0, RSTART + length(k) + 2, RLENGTH - length(k) - 2) }
    END { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
          if (!n) { print "n/a"; exit }
          printf "%s %s %s\n", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), v[1], v[n] }' <<<"$2"
}

# cg_per_handshake DB: one run under callgrind, instrumentation on only
# while the generator runs, one connection at a time (so at most one
# unfinished handshake is counted); prints instructions per completed one.
cg_per_handshake() {
  local db=$1 out ir
  run_as=(taskset -c 0 valgrind --tool=callgrind --instr-atstart=no
          --callgrind-out-file="$work/cg.$db" --separate-threads=no)
  start "$db"
  run_as=(taskset -c 0)
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(taskset -c 1 "$loadgen" handshake -c 1 -d 30 --warmup 0 --port "$port" \
        --cafile "$pki/ca.pem" --devices "$pki/devices" 2>>"$work/lg.log" | grep '^RESULT')
  callgrind_control -i off "$pid" >/dev/null 2>&1
  stop
  ir=$(callgrind_annotate "$work/cg.$db" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  echo "  $db under callgrind: ${out#RESULT } instructions=$ir" >&2
  awk -v i="$ir" -v n="$(kv "$out" completed)" 'BEGIN { printf "%.0f\n", (n > 0 ? i / n : 0) }'
}

read -r cs los his <<<"$(median per_cpu_s "${LINES[small]}")"
read -r cl lol hil <<<"$(median per_cpu_s "${LINES[large]}")"
read -r rs _ _ <<<"$(median rate "${LINES[small]}")"
read -r rl _ _ <<<"$(median rate "${LINES[large]}")"
read -r qs _ _ <<<"$(median db_xacts "${LINES[small]}")"
read -r ql _ _ <<<"$(median db_xacts "${LINES[large]}")"
read -r ws _ _ <<<"$(median db_rows "${LINES[small]}")"
read -r wl _ _ <<<"$(median db_rows "${LINES[large]}")"
echo "| registered devices | handshakes + CONNACK per broker CPU-second: median (range) | handshakes/s | database transactions / rows read, measurement to exit | ratio to $n_small devices |"
echo "|---|---|---|---|---|"
awk -v n="$n_small" -v c="$cs" -v lo="$los" -v hi="$his" -v r="$rs" -v q="$qs" -v w="$ws" \
  'BEGIN { printf "| %d | %.0f (%.0f-%.0f) | %.0f | %s / %s | 1.00 |\n", n, c, lo, hi, r, q, w }'
awk -v n="$n_large" -v c="$cl" -v lo="$lol" -v hi="$hil" -v r="$rl" -v q="$ql" -v w="$wl" -v b="$cs" \
  'BEGIN { printf "| %d | %.0f (%.0f-%.0f) | %.0f | %s / %s | %.3f |\n", n, c, lo, hi, r, q, w, (b > 0 ? c / b : 0) }'
if [ "$callgrind" = 1 ]; then
  is=$(cg_per_handshake small)
  il=$(cg_per_handshake large)
  awk -v a="$is" -v b="$il" -v ns="$n_small" -v nl="$n_large" 'BEGIN {
    printf "\nBroker instructions per handshake + CONNACK (callgrind): %d devices %d, %d devices %d, ratio %.4f\n",
      ns, a, nl, b, (a > 0 ? b / a : 0) }'
fi
