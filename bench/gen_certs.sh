#!/usr/bin/env bash
# Makes the benchmark PKI in DIR with the openssl CLI only:
#   ca.pem/ca.key            RSA-2048 server CA
#   server-rsa.pem/.key      RSA-2048 server certificate for localhost (signed by ca)
#   server-ec.pem/.key       EC P-256 server certificate for localhost (signed by ca)
#   device-ca.pem/.key       EC P-256 device CA (the brokers' trusted client CA)
#   devices/dev-N.pem/.key   EC P-256 device certificates, CN=dev-N, clientAuth;
#                            dev-N.pem is the chain file: device then device CA
# Usage: bench/gen_certs.sh DIR [DEVICES]   (DEVICES defaults to 64)
set -euo pipefail

dir=${1:?usage: gen_certs.sh DIR [DEVICES]}
n=${2:-64}
mkdir -p "$dir/devices"
cd "$dir"
days=30
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)

# Server CA (RSA, as most public and private server PKIs are).
openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days $days \
  -keyout ca.key -out ca.pem -subj "/CN=certmq bench server CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

server_ext=(-addext "basicConstraints=critical,CA:FALSE"
            -addext "keyUsage=critical,digitalSignature,keyEncipherment"
            -addext "extendedKeyUsage=serverAuth"
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1")
openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days $days \
  -CA ca.pem -CAkey ca.key -keyout server-rsa.key -out server-rsa.pem \
  -subj "/CN=localhost" "${server_ext[@]}" 2>/dev/null
openssl req -x509 -new "${ec[@]}" -nodes -sha256 -days $days \
  -CA ca.pem -CAkey ca.key -keyout server-ec.key -out server-ec.pem \
  -subj "/CN=localhost" "${server_ext[@]}" 2>/dev/null

# Device CA (EC P-256) and the devices it signs.
openssl req -x509 -new "${ec[@]}" -nodes -sha256 -days $days \
  -keyout device-ca.key -out device-ca.pem -subj "/CN=certmq bench device CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

make_device() {
  local i=$1 f=devices/dev-$1
  openssl req -x509 -new "${ec[@]}" -nodes -sha256 -days $days \
    -CA device-ca.pem -CAkey device-ca.key -keyout "$f.key" -out "$f.crt" \
    -subj "/CN=dev-$i" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=clientAuth" 2>/dev/null
  cat "$f.crt" device-ca.pem > "$f.pem"
  rm -f "$f.crt"
}
export -f make_device
export days
export ec_opts="${ec[*]}"
seq 0 $((n - 1)) | xargs -P "$(nproc)" -I{} bash -c 'ec=($ec_opts); make_device {}'

# Benchmark keys only: readable by a broker that drops root privileges
# (mosquitto started as root switches to the mosquitto user).
chmod 0644 ./*.key devices/*.key

# Sanity: one device chain verifies against the device CA for clientAuth.
openssl verify -CAfile device-ca.pem -purpose sslclient devices/dev-0.pem >/dev/null
openssl verify -CAfile ca.pem -purpose sslserver server-rsa.pem server-ec.pem >/dev/null
echo "gen_certs: $n devices in $dir"
