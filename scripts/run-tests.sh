#!/usr/bin/env bash
# Runs the test suites of the normal and the ASan+UBSan builds side by side
# (each on its own half of the test ports; most of the time is spent
# waiting on brokers, not on the CPU), then prints both logs in order.
# Exit status: non-zero when either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
run() { (cd "$1" && ctest --output-on-failure -j 1) > "$1/test.log" 2>&1; }
run build & normal=$!
run build-asan & asan=$!
wait $normal; rc_normal=$?
wait $asan; rc_asan=$?
for d in build build-asan; do echo "==== $d"; cat "$d/test.log"; done
[ $rc_normal -eq 0 ] && [ $rc_asan -eq 0 ]
