#!/usr/bin/env python3
"""Instructions per handshake by phase, from a callgrind profile of the broker
(bench/hsprofile.sh --callgrind). The phases are OpenSSL and certmq entry
points that do not call each other, taken inclusive (with the allocation,
provider fetches and parsing inside them); the handshakes are the calls of
handle_connect (one per CONNECT) while collecting. OpenSSL's internal
functions have no symbols in Debian's build, so the split is by the exported
functions a phase starts at; "of which" rows are parts of the phase above.
Usage: hscategory.py CALLGRIND_OUT"""
import re
import subprocess
import sys

PHASES = [
    ("server signature, CertificateVerify (EVP_DigestSign)", ["EVP_DigestSign"]),
    ("client signature check, CertificateVerify (EVP_DigestVerify)", ["EVP_DigestVerify"]),
    ("key share: X25519 key generation (EVP_PKEY_generate)", ["EVP_PKEY_generate"]),
    ("key share: X25519 shared secret (EVP_PKEY_derive)", ["EVP_PKEY_derive"]),
    ("certificate decoding, the client's chain (d2i_X509)", ["d2i_X509"]),
    ("TLS 1.3 key schedule (EVP_KDF_derive)", ["EVP_KDF_derive"]),
    ("transcript hash outside the above (EVP_DigestUpdate, EVP_DigestFinal_ex)",
     ["EVP_DigestUpdate", "EVP_DigestFinal_ex"]),
    ("certmq: CONNECT, identity, chain policy (handle_connect)", ["handle_connect"]),
    ("chain verification (X509_verify_cert)", ["X509_verify_cert"]),
]
PARTS = [
    ("of which: OpenSSL key decoder set-up per certificate key (OSSL_DECODER_CTX_new_for_pkey)",
     "OSSL_DECODER_CTX_new_for_pkey"),
    ("of which: a new P-256 group per EC key (EC_GROUP_new_by_curve_name_ex)",
     "EC_GROUP_new_by_curve_name_ex"),
    ("library: EVP_*_fetch calls (anywhere)", None),
    ("library: allocation (CRYPTO_malloc/zalloc/free, malloc/free called directly)", None),
]
FETCH = re.compile(r"^EVP_[A-Z]+_fetch$")


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    pat = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+?):(\S+?)(?:'\d+)?\s+\[(.*)\]\s*$")
    incl = {}
    total = 0
    for line in out.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
        m = pat.match(line)
        if m and m.group(3) not in incl:  # the first (outermost) entry of a recursive name
            incl[m.group(3)] = int(m.group(1).replace(",", ""))
    return total, incl


def exclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    pat = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+?):(\S+?)\s+\[(.*)\]\s*$")
    ex = {}
    for line in out.splitlines():
        m = pat.match(line)
        if m:
            key = (m.group(4).rsplit("/", 1)[-1], m.group(3))
            ex[key] = ex.get(key, 0) + int(m.group(1).replace(",", ""))
    return ex


def calls_of(path, name):
    """Calls of the function named name, from the profile's call records."""
    ids, n, want = {}, 0, False
    with open(path) as f:
        for line in f:
            d = re.match(r"^fn=\((\d+)\) (.*)$", line)
            if d:
                ids[d.group(1)] = d.group(2)
            m = re.match(r"^cfn=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(2):
                    ids[m.group(1)] = m.group(2)
                want = ids.get(m.group(1), "").split("'")[0] == name
                continue
            if want and line.startswith("calls="):
                n += int(line[6:].split()[0])
                want = False
    return n


def main():
    path = sys.argv[1]
    n = calls_of(path, "handle_connect")
    total, incl = inclusive(path)
    ex = exclusive(path)
    print(f"handshakes (CONNECTs) {n}; instructions {total:,}; per handshake {total / n:,.0f}\n")
    print("| phase | instructions per handshake | share |")
    print("|---|---|---|")
    done = 0
    for label, names in PHASES:
        ir = sum(incl.get(x, 0) for x in names)
        done += ir
        print(f"| {label} | {ir / n:,.0f} | {100 * ir / total:.1f}% |")
    print(f"| the rest: libssl's state machine, records, sockets' user side, event loop | "
          f"{(total - done) / n:,.0f} | {100 * (total - done) / total:.1f}% |")
    for label, name in PARTS:
        if name:
            ir = incl.get(name, 0)
        elif "fetch" in label:
            ir = sum(v for k, v in incl.items() if FETCH.match(k))
        else:
            ir = sum(v for (obj, fn), v in ex.items()
                     if obj.startswith("libjemalloc") or fn in (
                         "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_free", "CRYPTO_clear_free",
                         "CRYPTO_realloc", "CRYPTO_strdup", "CRYPTO_memdup", "OPENSSL_cleanse"))
        print(f"| {label} | {ir / n:,.0f} | {100 * ir / total:.1f}% |")


if __name__ == "__main__":
    main()
