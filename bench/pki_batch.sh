#!/usr/bin/env bash
# Times `certmq pki issue batch` for N EC P-256 devices (default 1000) in a
# fresh CA under a temporary directory and prints the seconds taken (the
# target is under 5 s for 1,000 devices). Not a test: it asserts nothing.
# Usage: bench/pki_batch.sh [COUNT]   (binary from CERTMQ_BIN, default build/certmq)
set -euo pipefail

count=${1:-1000}
bin=${CERTMQ_BIN:-$(dirname "$0")/../build/certmq}
dir=$(mktemp -d /tmp/certmq-pki-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT

"$bin" pki ca init "$dir/ca" --cn "certmq bench CA" --key ec:P-256 >/dev/null
start=$(date +%s.%N)
"$bin" pki issue batch --ca "$dir/ca" --count "$count" --prefix bench- --key ec:P-256 \
  --out "$dir/devices" >/dev/null
end=$(date +%s.%N)
issued=$(ls "$dir"/devices/*.chain.pem | wc -l)
awk -v n="$issued" -v s="$start" -v e="$end" 'BEGIN { printf "%d EC P-256 devices issued in %.2f s\n", n, e - s }'
