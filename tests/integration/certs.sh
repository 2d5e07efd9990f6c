#!/usr/bin/env bash
# Test PKI for the integration suite, made with the openssl CLI the way the
# device-certificate guide does it: a CA config with v3_ca / v3_signed
# sections, `openssl ca` with a database and serial file, chain files by cat.
# Keys are unencrypted RSA-2048 so the suite runs non-interactively and fast.
#
# Usage: certs.sh DIR     (DIR is created; existing files are overwritten)
#
# Output in DIR:
#   ca.pem ca.key                  trusted test CA (v3_ca)
#   server.pem server.key          CN=localhost, SAN DNS:localhost,IP:127.0.0.1
#   server2.pem server2.key        same names, a later serial (for SIGHUP reload)
#   device1.pem device1.key device1_chain.pem   CN=device1 (v3_signed)
#   device2.pem device2.key device2_chain.pem   CN=device2 (v3_signed)
#   untrusted_ca.pem untrusted_ca.key           an unrelated second CA
#   rogue.pem rogue.key rogue_chain.pem         CN=rogue, signed by the unrelated CA
set -euo pipefail

out=${1:?usage: certs.sh DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# make_ca NAME SUBJECT: a CA directory laid out as in the guide, plus its
# self-signed certificate copied to $out/NAME.pem and key to $out/NAME.key.
make_ca() {
    local name=$1 subj=$2 dir="$out/$1.d"
    mkdir -p "$dir/deviceCertificates" "$dir/crl"
    : >"$dir/database.txt"
    echo 1000 >"$dir/serial"
    cat >"$dir/caConfig.cnf" <<EOF
[ ca ]
default_ca = CA_default

[ CA_default ]
dir               = $dir
certs             = \$dir
crl_dir           = \$dir/crl
new_certs_dir     = \$dir/deviceCertificates
database          = \$dir/database.txt
serial            = \$dir/serial
private_key       = \$dir/caKey.pem
certificate       = \$dir/caCert.pem
default_md        = sha256
default_days      = 375
preserve          = no
policy            = signing_policy
unique_subject    = no
crl               = \$crl_dir/caCrl.pem
crlnumber         = \$crl_dir/crlnumber
crl_extensions    = crl_ext
default_crl_days  = 30

[ req ]
default_bits        = 2048
distinguished_name  = req_distinguished_name
string_mask         = utf8only
default_md          = sha256
x509_extensions     = v3_ca
prompt              = no

[ req_distinguished_name ]
commonName          = placeholder

[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:10
keyUsage = digitalSignature, cRLSign, keyCertSign

[ v3_signed ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
basicConstraints = critical, CA:false
keyUsage = nonRepudiation, digitalSignature, keyEncipherment

[ v3_server ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
basicConstraints = critical, CA:false
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1

[ crl_ext ]
authorityKeyIdentifier=keyid:always

[ signing_policy ]
countryName             = optional
stateOrProvinceName     = optional
organizationName        = optional
organizationalUnitName  = optional
commonName              = supplied
emailAddress            = optional
EOF
    openssl genrsa -out "$dir/caKey.pem" 2048 2>/dev/null
    openssl req -config "$dir/caConfig.cnf" -key "$dir/caKey.pem" -new -x509 \
        -days 3650 -sha256 -extensions v3_ca -subj "$subj" -out "$dir/caCert.pem"
    cp "$dir/caCert.pem" "$out/$name.pem"
    cp "$dir/caKey.pem" "$out/$name.key"
}

# issue CA NAME CN EXTENSIONS: key, CSR and `openssl ca` certificate for CN,
# written to $out/NAME.pem / NAME.key and the chain file NAME_chain.pem.
issue() {
    local ca=$1 name=$2 cn=$3 ext=$4 dir="$out/$1.d"
    openssl genrsa -out "$out/$name.key" 2048 2>/dev/null
    openssl req -config "$dir/caConfig.cnf" -new -sha256 -key "$out/$name.key" \
        -subj "/C=US/O=certmq test/CN=$cn" -out "$dir/deviceCertificates/$name.csr"
    openssl ca -batch -config "$dir/caConfig.cnf" -extensions "$ext" -days 365 \
        -notext -md sha256 -in "$dir/deviceCertificates/$name.csr" \
        -out "$out/$name.pem" 2>/dev/null
    cat "$out/$name.pem" "$out/$ca.pem" >"$out/${name}_chain.pem"
}

make_ca ca "/C=US/O=certmq test/CN=certmq test CA"
issue ca server localhost v3_server
issue ca server2 localhost v3_server
issue ca device1 device1 v3_signed
issue ca device2 device2 v3_signed

make_ca untrusted_ca "/C=US/O=elsewhere/CN=unrelated CA"
issue untrusted_ca rogue rogue v3_signed

openssl verify -CAfile "$out/ca.pem" "$out/server.pem" "$out/server2.pem" \
    "$out/device1.pem" "$out/device2.pem" >/dev/null
chmod 600 "$out"/*.key
