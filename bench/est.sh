#!/usr/bin/env bash
# EST enrollments per second: N devices (default 2,000) with EC P-256 keys
# enroll through POST /.well-known/est/simpleenroll on a fresh certmq that is
# pinned to one core (taskset -c 0); curl, pinned to the other core, sends the
# requests 16 at a time over keep-alive HTTP. The tokens come from one bulk
# registration (ENROLLMENT_TOKEN column) and the CSRs are made beforehand,
# so only enrollment is timed: token check, CSR check, signing with the
# sealed tenant CA key, the issuance record and the token spent, each in the
# store. Target: >= 500/s. Not a test: it asserts nothing.
# Usage: bench/est.sh [DEVICES]   (binary from CERTMQ_BIN, default build/certmq)
set -euo pipefail

n=${1:-2000}
bin=${CERTMQ_BIN:-$(dirname "$0")/../build/certmq}
dir=$(mktemp -d /tmp/certmq-est-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

printf 'data_dir %s/var\nlog_level warn\nworkers 1\nhttp_threads 1\nlistener %s 127.0.0.1\nprotocol http\n' \
  "$dir" "$port" > "$dir/certmq.conf"
CERTMQ_ADMIN_PASSWORD=bench-admin-password taskset -c 0 "$bin" serve --config "$dir/certmq.conf" \
  >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
api="http://127.0.0.1:$port"
admin=(-u management/admin:bench-admin-password)

curl -sSf "${admin[@]}" -X POST "$api/certificate-authority" -o /dev/null
# devices, tokens, CSRs and the curl config: made before the clock starts
python3 - "$dir" "$n" "$api" <<'PY'
import base64, secrets, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
d, n, api = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{d}/devices.csv", "w") as csv, open(f"{d}/curl.cfg", "w") as cfg:
    csv.write("ID;AUTH_TYPE;ENROLLMENT_TOKEN\n")
    for i in range(n):
        dev, tok = f"est-{i:06d}", secrets.token_urlsafe(32)
        csv.write(f"{dev};CERTIFICATES;{tok}\n")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev)])).sign(key, hashes.SHA256())
        with open(f"{d}/{dev}.csr", "wb") as f:
            f.write(base64.encodebytes(csr.public_bytes(serialization.Encoding.DER)))
        cfg.write("next\n" if i else "")
        cfg.write(f'url = "{api}/.well-known/est/simpleenroll"\nuser = "{dev}:{tok}"\n'
                  f'data-binary = "@{d}/{dev}.csr"\noutput = "/dev/null"\n'
                  f'header = "Content-Type: application/pkcs10"\nwrite-out = "%{{http_code}}\\n"\n')
PY
curl -sSf "${admin[@]}" -F "file=@$dir/devices.csv" "$api/devicecontrol/bulkNewDeviceRequests" \
  -o /dev/null

cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
start=$(date +%s.%N)
taskset -c 1 curl -sS --no-progress-meter --parallel --parallel-max 16 -K "$dir/curl.cfg" > "$dir/codes"
end=$(date +%s.%N)
ok=$(grep -c '^200$' "$dir/codes" || true)
cpu=$(awk -v c0="$cpu0" '{ print ($14 + $15 - c0) / 100 }' "/proc/$pid/stat")
awk -v ok="$ok" -v n="$n" -v s="$start" -v e="$end" -v cpu="$cpu" \
  'BEGIN { printf "%d of %d EST enrollments (EC P-256) in %.2f s: %.0f/s on one core, %.0f per server CPU-second\n", ok, n, e - s, ok / (e - s), (cpu > 0 ? ok / cpu : 0) }'
