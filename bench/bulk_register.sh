#!/usr/bin/env bash
# Times one bulk registration of N certificate devices (default 100,000) through
# POST /devicecontrol/bulkNewDeviceRequests on a fresh certmq (SQLite in a
# temporary data_dir) and prints the seconds taken; the target is under 10 s
# for 100,000 rows. Not a test: it asserts nothing.
# Usage: bench/bulk_register.sh [ROWS]   (binary from CERTMQ_BIN, default build/certmq)
set -euo pipefail

rows=${1:-100000}
bin=${CERTMQ_BIN:-$(dirname "$0")/../build/certmq}
dir=$(mktemp -d /tmp/certmq-bulk-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

printf 'data_dir %s/var\nlog_level warn\nlistener %s 127.0.0.1\nprotocol http\n' "$dir" "$port" \
  > "$dir/certmq.conf"
CERTMQ_ADMIN_PASSWORD=bench-admin-password "$bin" serve --config "$dir/certmq.conf" \
  >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

{ echo "ID;AUTH_TYPE;TYPE;NAME"
  seq 1 "$rows" | awk '{ printf "bench-%07d;CERTIFICATES;c8y_Sensor;sensor %d\n", $1, $1 }'
} > "$dir/devices.csv"

start=$(date +%s.%N)
out=$(curl -sS -u management/admin:bench-admin-password -F "file=@$dir/devices.csv" \
  "http://127.0.0.1:$port/devicecontrol/bulkNewDeviceRequests")
end=$(date +%s.%N)
created=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["numberOfCreated"])' "$out")
awk -v n="$created" -v r="$rows" -v s="$start" -v e="$end" \
  'BEGIN { printf "%d of %d devices registered in one upload in %.2f s\n", n, r, e - s }'
