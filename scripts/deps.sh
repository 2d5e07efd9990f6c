#!/usr/bin/env bash
# Installs the Debian packages certmq needs to build, run and test, and only
# those that are missing (dpkg is asked first; apt-get runs only when needed).
set -euo pipefail

build=(build-essential cmake pkg-config clang libclang-rt-14-dev
       libssl-dev libsqlite3-dev libjansson-dev libjwt-dev libmicrohttpd-dev libgnutls28-dev
       libjemalloc-dev libpq-dev libnats-dev)
run=(openssl)
# what the README's walkthrough after `make run` uses (make run installs them)
walk=(mosquitto-clients curl python3 python3-paho-mqtt python3-jwt)
# what `make cluster` runs besides the broker
cluster=(postgresql nats-server haproxy)
test=(libcmocka-dev python3 python3-pytest python3-paho-mqtt python3-cryptography
      python3-jwt mosquitto mosquitto-clients curl default-jdk-headless
      chromium chromium-driver python3-selenium nodejs node-mqtt)

case "${1:-all}" in
  build) want=("${build[@]}" "${run[@]}") ;;
  run)   want=("${build[@]}" "${run[@]}" "${walk[@]}") ;;
  cluster) want=("${build[@]}" "${run[@]}" "${walk[@]}" "${cluster[@]}") ;;
  *)     want=("${build[@]}" "${run[@]}" "${walk[@]}" "${cluster[@]}" "${test[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
