#!/usr/bin/env bash
# Runs the test suites of the normal and the ASan+UBSan builds side by side
# (each on its own half of the test ports; most of the time is spent
# waiting on brokers, not on the CPU), then prints both logs in order.
# One throwaway PostgreSQL (scripts/pgtest.sh) serves both suites, each
# with its own database name prefix; it is stopped at the end, also on
# failure. If it cannot start, CERTMQ_TEST_PG still names it, so the
# PostgreSQL tests fail rather than skip.
# Exit status: non-zero when either failed.
set -uo pipefail
cd "$(dirname "$0")/.."

pgdir=$(mktemp -d /tmp/certmq-pg-XXXXXX)
trap 'scripts/pgtest.sh stop "$pgdir"' EXIT INT TERM
if ! CERTMQ_TEST_PG=$(scripts/pgtest.sh start "$pgdir"); then
  echo "run-tests: PostgreSQL did not start: its tests will fail" >&2
  CERTMQ_TEST_PG="postgresql://postgres@127.0.0.1:1/postgres"
fi
export CERTMQ_TEST_PG

run() {
  (cd "$1" && CERTMQ_TEST_PG_PREFIX=$2 ctest --output-on-failure -j 1) > "$1/test.log" 2>&1
}
run build certmq_n & normal=$!
run build-asan certmq_a & asan=$!
wait $normal; rc_normal=$?
wait $asan; rc_asan=$?
for d in build build-asan; do echo "==== $d"; cat "$d/test.log"; done
[ $rc_normal -eq 0 ] && [ $rc_asan -eq 0 ]
