#!/usr/bin/env bash
# Where the memory of an idle mutual-TLS connection goes: holds K connections
# (certmq-loadgen idle) on a certmq run with build/libcertmq-memtally.so
# preloaded (OpenSSL's allocations counted by source line) and prints, per
# connection, the growth of RSS, of jemalloc's allocated / active / resident
# bytes, of OpenSSL's live bytes and the OpenSSL source lines that hold them.
# The tally adds 16 B to each OpenSSL allocation, so RSS and jemalloc figures
# here run a little high; bench/compare.sh measures RSS without it.
# SUITES=LIST offers only those TLS 1.3 cipher suites (the cipher's state).
# TLS_SESSION_CACHE=N sets the broker's tls_session_cache (default 20480).
# MEMTALLY=none runs without the tally (jemalloc and RSS figures only).
# Usage: bench/idlemem.sh [CONNS [STEP]]  (default 5000 connections held after
#        CONNACK; STEP tls: after the TLS handshake, no CONNECT; tcp: no TLS)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
certmq=${CERTMQ:-$root/build/certmq}
loadgen=${LOADGEN:-$root/build/certmq-loadgen}
conns=${1:-5000}
step=${2:-mqtt}
tally=${MEMTALLY:-$root/build/libcertmq-memtally.so}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((conns + 100)) ]; then
  echo "idlemem.sh: ulimit -n is $(ulimit -n), need $((conns + 100))" >&2
  exit 1
fi
work=$(mktemp -d /tmp/certmq-idlemem.XXXXXX)
pid=""
lg_pid=""
cleanup() {
  for p in $lg_pid $pid; do kill "$p" 2>/dev/null; done
  for p in $lg_pid $pid; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/bench/gen_certs.sh" "$work/pki" 64 >/dev/null || exit 1
pki=$work/pki
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(port_of)
http=$(port_of)
cat >"$work/certmq.conf" <<EOF
data_dir $work/var
log_level warn
workers 1
max_connections 1000000
handshake_timeout 3600
connect_timeout 3600
listener $port 127.0.0.1
certfile $pki/server-rsa.pem
keyfile $pki/server-rsa.key
client_certificates required
tls_session_cache ${TLS_SESSION_CACHE:-20480}
listener $http 127.0.0.1
protocol http
EOF

preload=$tally
[ "$tally" = none ] && preload=
LD_PRELOAD=$preload CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c 0 "$certmq" serve \
  --config "$work/certmq.conf" >"$work/certmq.log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
trust_ca "$http" "$pki/device-ca.pem" || exit 1

lg() { exec taskset -c 1 "$loadgen" idle "$@" --port "$port" --cafile "$pki/ca.pem" --devices "$pki/devices"; }
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$pid/status"; }
# snapshot NAME: the OpenSSL tally and jemalloc's totals, via gdb.
snapshot() {
  gdb -p "$pid" -batch -nx \
    -ex "call (int)memtally_dump(\"$work/$1.tally\")" \
    -ex "call (void)malloc_stats_print(0, 0, \"gmdablxe\")" >"$work/gdb.log" 2>&1
  grep -E '^Allocated:' "$work/certmq.log" | tail -1 >"$work/$1.stats"
  rss >"$work/$1.rss"
}

(lg -c 50 -d 0.3 >/dev/null 2>>"$work/lg.log")
sleep 1
snapshot before
lg -c "$conns" --hold "$step" ${SUITES:+--ciphersuites "$SUITES"} --sources $((conns / 20000 + 1)) -d 0 >"$work/idle.out" 2>>"$work/lg.log" &
lg_pid=$!
for _ in $(seq $((1200 + conns / 40 + 100))); do
  grep -q '^READY' "$work/idle.out" 2>/dev/null && break
  kill -0 "$lg_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '^READY' "$work/idle.out" || { echo "idlemem.sh: connections did not come up" >&2; tail -3 "$work/lg.log" >&2; exit 1; }
sleep 1
snapshot after

echo "$(grep '^READY' "$work/idle.out")"
per() { awk -v a="$1" -v b="$2" -v n="$conns" 'BEGIN { printf "%.0f", (a - b) / n }'; }
tsum() { awk -v k="$2" '{ b += $k } END { print b }' "$work/$1.tally"; }
field() { sed -n "s/.*$1: \([0-9]*\).*/\1/p" "$work/$2.stats"; }
echo "RSS growth per connection: $(per "$(cat "$work/after.rss")" "$(cat "$work/before.rss")") B"
for f in allocated active metadata resident mapped; do
  F=$f; [ "$f" = allocated ] && F=Allocated
  echo "jemalloc $f per connection: $(per "$(field "$F" after)" "$(field "$F" before)") B"
done
# What stays once every connection is closed: the TLS session cache (each
# entry an SSL_SESSION with the parsed peer certificate) and offline state.
kill "$lg_pid" 2>/dev/null
wait "$lg_pid" 2>/dev/null
lg_pid=""
for _ in $(seq 100); do
  [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" = 0 ] && break
  sleep 0.1
done
sleep 1
snapshot closed
echo "jemalloc allocated per connection once all are closed: $(per "$(field Allocated closed)" "$(field Allocated before)") B"
[ "$tally" = none ] && exit 0
echo "OpenSSL live bytes per connection once all are closed: $(per "$(tsum closed 2)" "$(tsum before 2)") B"
ssl=$(per "$(tsum after 2)" "$(tsum before 2)")
ssl_hdr=$(per "$(tsum after 4)" "$(tsum before 4)")
all=$(per "$(field Allocated after)" "$(field Allocated before)")
echo "OpenSSL live bytes per connection: $ssl B" \
     "($(per "$(tsum after 5)" "$(tsum before 5)") B requested)"
echo "everything else allocated per connection: $((all - ssl_hdr)) B"
echo
echo "OpenSSL live bytes per connection by allocating line (>= 8 B):"
awk -v n="$conns" 'FNR == NR { b[$3] = $2; c[$3] = $1; r[$3] = $5; next }
  { d = ($2 - b[$3]) / n; k = ($1 - c[$3]) / n; q = ($5 - r[$3]) / n
    if (d >= 8 || d <= -8) printf "%8.0f B %8.0f B asked %6.2f allocs  %s\n", d, q, k, $3 }' \
  "$work/before.tally" "$work/after.tally" | sort -rn
