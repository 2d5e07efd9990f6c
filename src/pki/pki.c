/* `certmq pki` entry point: the command table (words, options, help with an
 * example), argument parsing into struct pki_args, and dispatch. Commands
 * live in ca.c, issue.c, store.c, crl.c, inspect.c, pop.c and verify.c; exit codes
 * are 0 ok, 1 refused or failed, 2 usage. */
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"
#include "pki/pki_internal.h"

enum opt {
    O_CN,
    O_KEY,
    O_DAYS,
    O_PATHLEN,
    O_ENCRYPT,
    O_PASS_FILE,
    O_PARENT,
    O_PARENT_PASS_FILE,
    O_CA,
    O_OUT,
    O_P12,
    O_P12_PASS,
    O_SAN,
    O_COUNT,
    O_PREFIX,
    O_CSV,
    O_START,
    O_CERT,
    O_SERIAL,
    O_REASON,
    O_ALIAS,
    O_CODE,
    O_JSON,
    O_FORCE,
    O_TRUST,
    O_MAX_CHAIN,
    O_CLIENT_ID,
    O_REQUIRE_CA,
    O_ALLOW_V1,
    O_AT,
    O_CRL,
    O_URL,
    O_TENANT,
    O_ID,
    O_TOKEN,
    O_CAFILE,
    O_HELP,
    O_NUM
};

#define BIT(o) ((uint64_t)1 << (o))

static const struct option all_opts[O_NUM] = {
    [O_CN] = {"cn", required_argument, NULL, O_CN},
    [O_KEY] = {"key", required_argument, NULL, O_KEY},
    [O_DAYS] = {"days", required_argument, NULL, O_DAYS},
    [O_PATHLEN] = {"pathlen", required_argument, NULL, O_PATHLEN},
    [O_ENCRYPT] = {"encrypt", no_argument, NULL, O_ENCRYPT},
    [O_PASS_FILE] = {"pass-file", required_argument, NULL, O_PASS_FILE},
    [O_PARENT] = {"parent", required_argument, NULL, O_PARENT},
    [O_PARENT_PASS_FILE] = {"parent-pass-file", required_argument, NULL, O_PARENT_PASS_FILE},
    [O_CA] = {"ca", required_argument, NULL, O_CA},
    [O_OUT] = {"out", required_argument, NULL, O_OUT},
    [O_P12] = {"p12", no_argument, NULL, O_P12},
    [O_P12_PASS] = {"p12-pass", required_argument, NULL, O_P12_PASS},
    [O_SAN] = {"san", required_argument, NULL, O_SAN},
    [O_COUNT] = {"count", required_argument, NULL, O_COUNT},
    [O_PREFIX] = {"prefix", required_argument, NULL, O_PREFIX},
    [O_CSV] = {"csv", required_argument, NULL, O_CSV},
    [O_START] = {"start", required_argument, NULL, O_START},
    [O_CERT] = {"cert", required_argument, NULL, O_CERT},
    [O_SERIAL] = {"serial", required_argument, NULL, O_SERIAL},
    [O_REASON] = {"reason", required_argument, NULL, O_REASON},
    [O_ALIAS] = {"alias", required_argument, NULL, O_ALIAS},
    [O_CODE] = {"code", required_argument, NULL, O_CODE},
    [O_JSON] = {"json", no_argument, NULL, O_JSON},
    [O_FORCE] = {"force", no_argument, NULL, O_FORCE},
    [O_TRUST] = {"trust", required_argument, NULL, O_TRUST},
    [O_MAX_CHAIN] = {"max-chain-length", required_argument, NULL, O_MAX_CHAIN},
    [O_CLIENT_ID] = {"client-id", required_argument, NULL, O_CLIENT_ID},
    [O_REQUIRE_CA] = {"require-ca-in-chain", required_argument, NULL, O_REQUIRE_CA},
    [O_ALLOW_V1] = {"allow-v1-device-certificates", required_argument, NULL, O_ALLOW_V1},
    [O_AT] = {"at", required_argument, NULL, O_AT},
    [O_CRL] = {"crl", required_argument, NULL, O_CRL},
    [O_URL] = {"url", required_argument, NULL, O_URL},
    [O_TENANT] = {"tenant", required_argument, NULL, O_TENANT},
    [O_ID] = {"id", required_argument, NULL, O_ID},
    [O_TOKEN] = {"token", required_argument, NULL, O_TOKEN},
    [O_CAFILE] = {"cafile", required_argument, NULL, O_CAFILE},
    [O_HELP] = {"help", no_argument, NULL, O_HELP},
};

struct cmd {
    const char *w1, *w2;
    int (*run)(struct pki_args *a);
    int npos; /* positional arguments required */
    uint64_t opts, required;
    const char *summary;
    const char *help;
};

#define COMMON (BIT(O_JSON) | BIT(O_HELP))

static const struct cmd cmds[] = {
    {"ca", "init", pki_cmd_ca_init, 1,
     COMMON | BIT(O_CN) | BIT(O_KEY) | BIT(O_DAYS) | BIT(O_PATHLEN) | BIT(O_ENCRYPT) |
         BIT(O_PASS_FILE),
     BIT(O_CN), "create a self-signed root CA in DIR",
     "usage: certmq pki ca init DIR --cn NAME [options]\n"
     "Creates DIR (0700) with a self-signed v3 CA: ca.pem, ca.key (0600), chain.pem, crl.pem,\n"
     "serial, index.txt (openssl ca format) and crlnumber. basicConstraints is\n"
     "critical CA:TRUE, keyUsage keyCertSign, cRLSign, digitalSignature.\n"
     "  --cn NAME          common name of the CA (required)\n"
     "  --key SPEC         ec:P-256 (default), ec:P-384, rsa:2048, rsa:3072, rsa:4096\n"
     "  --days N           validity in days (default 7300)\n"
     "  --pathlen N        at most N intermediate CAs below this one\n"
     "  --encrypt          AES-256 encrypt ca.key; passphrase from --pass-file FILE,\n"
     "                     CERTMQ_PKI_PASS, or a terminal prompt (8+ characters)\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki ca init ./acme-ca --cn \"Acme Devices CA\" --pathlen 1 --encrypt\n"},
    {"ca", "intermediate", pki_cmd_ca_intermediate, 1,
     COMMON | BIT(O_CN) | BIT(O_KEY) | BIT(O_DAYS) | BIT(O_PATHLEN) | BIT(O_ENCRYPT) |
         BIT(O_PASS_FILE) | BIT(O_PARENT) | BIT(O_PARENT_PASS_FILE),
     BIT(O_CN) | BIT(O_PARENT), "create an intermediate CA in DIR signed by a parent CA",
     "usage: certmq pki ca intermediate DIR --parent PARENTDIR --cn NAME [options]\n"
     "Creates DIR with a CA certificate signed by the CA in PARENTDIR; DIR/chain.pem\n"
     "holds the intermediate, then every CA up to the root. The parent records it in\n"
     "its index.txt. Without --pathlen the parent's limit minus one is used.\n"
     "  --parent DIR           the signing CA directory (required)\n"
     "  --cn NAME              common name (required)\n"
     "  --key SPEC             ec:P-256 (default), ec:P-384, rsa:2048, rsa:3072, rsa:4096\n"
     "  --days N               validity in days (default 3650, never past the parent)\n"
     "  --pathlen N            at most N further CAs below this one\n"
     "  --encrypt              encrypt the new ca.key (passphrase as for ca init)\n"
     "  --pass-file FILE       passphrase of the new key (and of the parent's key)\n"
     "  --parent-pass-file F   passphrase of the parent's key when it differs\n"
     "  --json                 print the result as JSON\n"
     "example:\n"
     "  certmq pki ca intermediate ./plant-7 --parent ./acme-ca --cn \"Acme Plant 7\"\n"},
    {"issue", "device", pki_cmd_issue_device, 0,
     COMMON | BIT(O_CA) | BIT(O_CN) | BIT(O_DAYS) | BIT(O_KEY) | BIT(O_OUT) | BIT(O_P12) |
         BIT(O_P12_PASS) | BIT(O_PASS_FILE) | BIT(O_FORCE),
     BIT(O_CA) | BIT(O_CN), "issue a device (client) certificate",
     "usage: certmq pki issue device --ca DIR --cn ID [options]\n"
     "Makes OUT/ID.key (0600), OUT/ID.pem (CA:FALSE, digitalSignature, keyEncipherment,\n"
     "clientAuth, CN = ID), OUT/ID.chain.pem (the device, then every CA up to the root:\n"
     "what the device presents) and with --p12 OUT/ID.p12 (alias devicekeyentry).\n"
     "ID is the MQTT ClientId (ID or d:ID); ids containing ':' are refused.\n"
     "  --ca DIR           signing CA directory (required)\n"
     "  --cn ID            device id (required)\n"
     "  --days N           validity in days (default 365)\n"
     "  --key SPEC         ec:P-256 (default), ec:P-384, rsa:2048, rsa:3072, rsa:4096\n"
     "  --out DIR          output directory (default .)\n"
     "  --p12              also write a PKCS#12 keystore\n"
     "  --p12-pass PASS    its password (or CERTMQ_PKI_P12_PASS; required with --p12)\n"
     "  --pass-file FILE   passphrase of an encrypted CA key (or CERTMQ_PKI_PASS)\n"
     "  --force            replace existing files\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  CERTMQ_PKI_P12_PASS=s3cret certmq pki issue device --ca ./acme-ca --cn pump-0042 --p12\n"},
    {"issue", "server", pki_cmd_issue_server, 0,
     COMMON | BIT(O_CA) | BIT(O_CN) | BIT(O_SAN) | BIT(O_DAYS) | BIT(O_KEY) | BIT(O_OUT) |
         BIT(O_PASS_FILE) | BIT(O_FORCE),
     BIT(O_CA) | BIT(O_CN), "issue a server certificate with subjectAltName",
     "usage: certmq pki issue server --ca DIR --cn HOST [--san DNS:..,IP:..] [options]\n"
     "Makes OUT/HOST.key, OUT/HOST.pem (serverAuth, CN and subjectAltName) and\n"
     "OUT/HOST.chain.pem. The CN is added to the subjectAltName list when it is a\n"
     "host name or address (clients check only the list).\n"
     "  --ca DIR           signing CA directory (required)\n"
     "  --cn HOST          host name (required)\n"
     "  --san LIST         DNS:name and IP:addr entries, comma separated\n"
     "  --days N           validity in days (default 825)\n"
     "  --key SPEC         ec:P-256 (default), ec:P-384, rsa:2048, rsa:3072, rsa:4096\n"
     "  --out DIR          output directory (default .)\n"
     "  --pass-file FILE   passphrase of an encrypted CA key (or CERTMQ_PKI_PASS)\n"
     "  --force            replace existing files\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki issue server --ca ./acme-ca --cn mqtt.acme.example "
     "--san DNS:mqtt.acme.example,IP:10.0.0.5,IP:::1\n"},
    {"issue", "batch", pki_cmd_issue_batch, 0,
     COMMON | BIT(O_CA) | BIT(O_COUNT) | BIT(O_PREFIX) | BIT(O_START) | BIT(O_OUT) | BIT(O_CSV) |
         BIT(O_DAYS) | BIT(O_KEY) | BIT(O_P12) | BIT(O_P12_PASS) | BIT(O_PASS_FILE) | BIT(O_FORCE),
     BIT(O_CA) | BIT(O_COUNT) | BIT(O_PREFIX), "issue many device certificates and the bulk CSV",
     "usage: certmq pki issue batch --ca DIR --count N --prefix P [options]\n"
     "Issues devices P0001 .. PN (ids zero-padded to at least 4 digits) as `issue device`\n"
     "does, and writes the bulk-registration CSV (ID;AUTH_TYPE;NAME with\n"
     "AUTH_TYPE=CERTIFICATES) that the server's bulk upload accepts as is.\n"
     "  --ca DIR           signing CA directory (required)\n"
     "  --count N          number of devices (required)\n"
     "  --prefix P         id prefix (required)\n"
     "  --start N          first number (default 1)\n"
     "  --out DIR          output directory (default .)\n"
     "  --csv FILE         CSV path (default OUT/bulk-registration.csv)\n"
     "  --days N, --key SPEC, --p12, --p12-pass PASS, --pass-file FILE, --force, --json\n"
     "                     as for issue device\n"
     "example:\n"
     "  certmq pki issue batch --ca ./acme-ca --count 1000 --prefix pump- --out ./fleet\n"},
    {"truststore", NULL, pki_cmd_truststore, 0,
     COMMON | BIT(O_CERT) | BIT(O_OUT) | BIT(O_P12_PASS) | BIT(O_ALIAS) | BIT(O_FORCE),
     BIT(O_CERT) | BIT(O_OUT), "build a PEM or PKCS#12 truststore",
     "usage: certmq pki truststore --cert FILE [--cert FILE...] --out FILE[.pem|.p12]\n"
     "Collects every certificate of the given files. OUT ending in .p12 (or .pfx) is a\n"
     "PKCS#12 truststore whose entries Java's keytool lists as trustedCertEntry and\n"
     "JSSE accepts as a trust store; anything else is a PEM bundle.\n"
     "  --cert FILE        certificate or chain file (PEM or DER), repeatable (required)\n"
     "  --out FILE         output file (required)\n"
     "  --p12-pass PASS    PKCS#12 password (or CERTMQ_PKI_P12_PASS; required for .p12)\n"
     "  --alias NAME       entry alias (default: the certificate's CN, lower case)\n"
     "  --force            replace an existing file\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki truststore --cert server.pem --out truststore.p12 --p12-pass s3cret "
     "--alias servercertificate\n"},
    {"revoke", NULL, pki_cmd_revoke, 0,
     COMMON | BIT(O_CA) | BIT(O_SERIAL) | BIT(O_CERT) | BIT(O_REASON) | BIT(O_DAYS) |
         BIT(O_PASS_FILE),
     BIT(O_CA), "revoke a certificate and update the CRL",
     "usage: certmq pki revoke --ca DIR (--serial S | --cert FILE) [options]\n"
     "Marks the certificate revoked in DIR/index.txt and re-signs DIR/crl.pem.\n"
     "  --ca DIR           the issuing CA directory (required)\n"
     "  --serial S         serial number in hex (as `inspect` prints it)\n"
     "  --cert FILE        or the certificate itself\n"
     "  --reason NAME      keyCompromise, CACompromise, affiliationChanged, superseded,\n"
     "                     cessationOfOperation (default unspecified)\n"
     "  --days N           the CRL's next update in days (default 30)\n"
     "  --pass-file FILE   passphrase of an encrypted CA key (or CERTMQ_PKI_PASS)\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki revoke --ca ./acme-ca --cert pump-0042.pem --reason keyCompromise\n"},
    {"crl", NULL, pki_cmd_crl, 0, COMMON | BIT(O_CA) | BIT(O_DAYS) | BIT(O_PASS_FILE), BIT(O_CA),
     "sign a fresh CRL",
     "usage: certmq pki crl --ca DIR [--days N]\n"
     "Signs DIR/crl.pem (CRL v2 with CRL number and authority key identifier) from the\n"
     "revocations in DIR/index.txt; run it before the previous CRL's next update.\n"
     "  --ca DIR           CA directory (required)\n"
     "  --days N           next update in days (default 30)\n"
     "  --pass-file FILE   passphrase of an encrypted CA key (or CERTMQ_PKI_PASS)\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki crl --ca ./acme-ca --days 7\n"},
    {"inspect", NULL, pki_cmd_inspect, 1, COMMON | BIT(O_P12_PASS), 0,
     "summarise a certificate, chain, CSR, CRL, key or PKCS#12",
     "usage: certmq pki inspect FILE [--p12-pass PASS] [--json]\n"
     "Prints subject, issuer, serial, validity, key, CA flag and pathlen, key usage,\n"
     "extended key usage, subjectAltName and fingerprints (sha1 is the server's\n"
     "trusted-certificate id) of each certificate; the order of a chain; the entries\n"
     "of a CRL; the aliases and entry types of a PKCS#12 file.\n"
     "  --p12-pass PASS    PKCS#12 password (or CERTMQ_PKI_P12_PASS)\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki inspect pump-0042.chain.pem\n"},
    {"pop-sign", NULL, pki_cmd_pop_sign, 0, COMMON | BIT(O_KEY) | BIT(O_CODE) | BIT(O_PASS_FILE),
     BIT(O_KEY) | BIT(O_CODE), "sign a proof-of-possession verification code",
     "usage: certmq pki pop-sign --key CA.key --code CODE\n"
     "Prints base64 of the SHA-256 signature (RSA PKCS#1 v1.5 or ECDSA) of the code's\n"
     "bytes, the value to upload as proofOfPossessionSignedVerificationCode. Same as\n"
     "  printf %s CODE | openssl dgst -sha256 -sign CA.key | base64 -w0\n"
     "  --key FILE         the CA's private key (required)\n"
     "  --code CODE        the unsigned verification code from the server (required)\n"
     "  --pass-file FILE   passphrase of an encrypted key (or CERTMQ_PKI_PASS)\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki pop-sign --key ./acme-ca/ca.key --code 7Hk2pQ...\n"},
    {"enroll", NULL, pki_cmd_enroll, 0,
     COMMON | BIT(O_URL) | BIT(O_TENANT) | BIT(O_ID) | BIT(O_TOKEN) | BIT(O_OUT) | BIT(O_KEY) |
         BIT(O_CAFILE) | BIT(O_FORCE),
     BIT(O_URL) | BIT(O_ID) | BIT(O_TOKEN) | BIT(O_OUT),
     "enroll a device with a server's tenant CA over EST",
     "usage: certmq pki enroll --url URL --id DEV --token TOKEN --out DIR [options]\n"
     "Makes a key here (it never leaves this machine), sends a CSR for CN=DEV to\n"
     "URL/.well-known/est[/TENANT]/simpleenroll with the one-time enrollment token\n"
     "(HTTP Basic DEV:TOKEN) and writes DIR/DEV.key (0600), DIR/DEV.pem and\n"
     "DIR/DEV.chain.pem (the certificate, then the tenant CA: what MQTT clients send).\n"
     "  --url URL          the API, http(s)://host[:port] (required)\n"
     "  --tenant T         use the labelled form /.well-known/est/T/...\n"
     "  --id DEV           the device id: the certificate's CN and MQTT ClientId (required)\n"
     "  --token TOKEN      the enrollment token (required)\n"
     "  --out DIR          where to write the key and certificates (required)\n"
     "  --key SPEC         ec:P-256 (default), ec:P-384, rsa:2048, rsa:3072, rsa:4096\n"
     "  --cafile FILE      CA certificate(s) that verify the server (default: the system's)\n"
     "  --force            overwrite existing files\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki enroll --url https://certmq.example:8443 --id pump-0042 --token 3q2-... \\\n"
     "      --out ./pump-0042 --cafile server-ca.pem\n"},
    {"reenroll", NULL, pki_cmd_reenroll, 0,
     COMMON | BIT(O_URL) | BIT(O_TENANT) | BIT(O_CERT) | BIT(O_KEY) | BIT(O_PASS_FILE) |
         BIT(O_OUT) | BIT(O_CAFILE) | BIT(O_FORCE),
     BIT(O_URL) | BIT(O_CERT) | BIT(O_KEY) | BIT(O_OUT),
     "renew a device certificate over EST with the current one",
     "usage: certmq pki reenroll --url URL --cert DEV.chain.pem --key DEV.key --out DIR\n"
     "Authenticates with the current certificate over mutual TLS, sends a CSR for a\n"
     "new key with the same CN to URL/.well-known/est[/TENANT]/simplereenroll and\n"
     "writes DIR/DEV.key (the new key, 0600), DIR/DEV.pem and DIR/DEV.chain.pem.\n"
     "  --url URL          the API, https://host[:port] (required)\n"
     "  --tenant T         use the labelled form /.well-known/est/T/...\n"
     "  --cert FILE        the current certificate (and chain) (required)\n"
     "  --key FILE         its private key (required)\n"
     "  --pass-file FILE   passphrase of an encrypted key (or CERTMQ_PKI_PASS)\n"
     "  --out DIR          where to write the new key and certificates (required)\n"
     "  --cafile FILE      CA certificate(s) that verify the server (default: the system's)\n"
     "  --force            overwrite existing files\n"
     "  --json             print the result as JSON\n"
     "example:\n"
     "  certmq pki reenroll --url https://certmq.example:8443 --cert pump-0042.chain.pem \\\n"
     "      --key pump-0042.key --out ./renewed --cafile server-ca.pem\n"},
    {"verify", NULL, pki_cmd_verify, 1,
     COMMON | BIT(O_TRUST) | BIT(O_MAX_CHAIN) | BIT(O_CLIENT_ID) | BIT(O_REQUIRE_CA) |
         BIT(O_ALLOW_V1) | BIT(O_AT) | BIT(O_CRL),
     BIT(O_TRUST), "run the broker's chain policy on a device chain",
     "usage: certmq pki verify CHAIN.pem --trust CA.pem [options]\n"
     "Runs the broker's own connect-time chain policy on CHAIN.pem (the device\n"
     "certificate first, then what the device sends after it), with the --trust\n"
     "certificates as the trusted CAs of one tenant (\"verify\", auto-registration on).\n"
     "Prints OK with the tenant, CN, anchor fingerprint and the ClientIds the broker\n"
     "accepts, or REFUSED with the named reason the broker would log (exit 1).\n"
     "  --trust FILE                trusted CA certificate(s), repeatable (required)\n"
     "  --max-chain-length N        the broker's max_chain_length: certificates counted\n"
     "                              with device and trusted CA (default 2)\n"
     "  --client-id ID              also check this MQTT ClientId (CN, d:CN, d:CN:tpl)\n"
     "  --require-ca-in-chain B     true (default) or false, the broker's\n"
     "                              require_ca_in_chain\n"
     "  --allow-v1-device-certificates B  false (default) or true, the broker's\n"
     "                              allow_v1_device_certificates\n"
     "  --at TIME                   check at 2030-01-31, 2030-01-31T12:00:00Z or @SECONDS\n"
     "                              (default now)\n"
     "  --crl FILE                  treat the serials this CRL lists as revoked\n"
     "  --json                      print the result as JSON\n"
     "example:\n"
     "  certmq pki verify pump-0042.chain.pem --trust ./acme-ca/ca.pem --client-id pump-0042\n"},
};

#define NCMDS (sizeof cmds / sizeof cmds[0])

static void overview(FILE *f)
{
    fprintf(f, "usage: certmq pki COMMAND [options]   (certmq pki COMMAND --help for details)\n"
               "commands:\n");
    for (size_t i = 0; i < NCMDS; i++) {
        char words[40];
        snprintf(words, sizeof words, "%s%s%s", cmds[i].w1, cmds[i].w2 ? " " : "",
                 cmds[i].w2 ? cmds[i].w2 : "");
        fprintf(f, "  %-18s %s\n", words, cmds[i].summary);
    }
    fprintf(f, "exit codes: 0 ok, 1 refused or failed, 2 usage error\n"
               "example: certmq pki ca init ./ca --cn \"My CA\" && "
               "certmq pki issue device --ca ./ca --cn dev-1\n");
}

static int parse_long(const char *name, const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < min || v > max) {
        fprintf(stderr, "certmq pki: --%s must be a number from %ld to %ld, not \"%s\"\n", name,
                min, max, s);
        return ERR_INVALID;
    }
    *out = v;
    return 0;
}

/* Stores one option's value; numbers are range-checked here. */
static int set_opt(struct pki_args *a, int id, const char *v)
{
    switch (id) {
    case O_CN: a->cn = v; break;
    case O_KEY: a->key = v; break;
    case O_DAYS: return parse_long("days", v, 1, 36500, &a->days);
    case O_PATHLEN: return parse_long("pathlen", v, 0, 16, &a->pathlen);
    case O_ENCRYPT: a->encrypt = true; break;
    case O_PASS_FILE: a->pass_file = v; break;
    case O_PARENT: a->parent = v; break;
    case O_PARENT_PASS_FILE: a->parent_pass_file = v; break;
    case O_CA: a->ca = v; break;
    case O_OUT: a->out = v; break;
    case O_P12: a->p12 = true; break;
    case O_P12_PASS: a->p12_pass = v; break;
    case O_SAN: a->san = v; break;
    case O_COUNT: return parse_long("count", v, 1, 1000000, &a->count);
    case O_PREFIX: a->prefix = v; break;
    case O_CSV: a->csv = v; break;
    case O_START: return parse_long("start", v, 0, LONG_MAX / 2, &a->start);
    case O_CERT:
        if (a->ncerts == PKI_MAX_CERTS) {
            fprintf(stderr, "certmq pki: at most %d --cert options\n", PKI_MAX_CERTS);
            return ERR_INVALID;
        }
        a->certs[a->ncerts++] = v;
        break;
    case O_SERIAL: a->serial = v; break;
    case O_REASON: a->reason = v; break;
    case O_ALIAS: a->alias = v; break;
    case O_CODE: a->code = v; break;
    case O_JSON: a->json = true; break;
    case O_FORCE: a->force = true; break;
    case O_TRUST:
        if (a->ntrust == PKI_MAX_CERTS) {
            fprintf(stderr, "certmq pki: at most %d --trust options\n", PKI_MAX_CERTS);
            return ERR_INVALID;
        }
        a->trust[a->ntrust++] = v;
        break;
    case O_MAX_CHAIN: return parse_long("max-chain-length", v, 2, 10, &a->max_chain);
    case O_CLIENT_ID: a->client_id = v; break;
    case O_REQUIRE_CA:
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            fprintf(stderr, "certmq pki: --require-ca-in-chain must be true or false, not \"%s\"\n",
                    v);
            return ERR_INVALID;
        }
        a->require_ca = !strcmp(v, "true");
        break;
    case O_ALLOW_V1:
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            fprintf(stderr,
                    "certmq pki: --allow-v1-device-certificates must be true or false, not "
                    "\"%s\"\n",
                    v);
            return ERR_INVALID;
        }
        a->allow_v1 = !strcmp(v, "true");
        break;
    case O_AT:
        if (pki_time_parse(v, &a->at) < 0) {
            fprintf(stderr,
                    "certmq pki: --at must be a UTC time such as 2030-01-31, "
                    "2030-01-31T12:00:00Z or @1900000000, not \"%s\"\n",
                    v);
            return ERR_INVALID;
        }
        a->at_given = true;
        break;
    case O_CRL: a->crl = v; break;
    case O_URL: a->url = v; break;
    case O_TENANT: a->tenant = v; break;
    case O_ID: a->id = v; break;
    case O_TOKEN: a->token = v; break;
    case O_CAFILE: a->cafile = v; break;
    default: return ERR_INVALID;
    }
    return 0;
}

static bool opt_given(const struct pki_args *a, int id)
{
    switch (id) {
    case O_CN: return a->cn;
    case O_KEY: return a->key;
    case O_PARENT: return a->parent;
    case O_CA: return a->ca;
    case O_OUT: return a->out;
    case O_COUNT: return a->count > 0;
    case O_PREFIX: return a->prefix;
    case O_CERT: return a->ncerts > 0;
    case O_CODE: return a->code;
    case O_TRUST: return a->ntrust > 0;
    case O_URL: return a->url;
    case O_ID: return a->id;
    case O_TOKEN: return a->token;
    default: return true;
    }
}

/* Parses argv (argv[0] is the last command word). Returns 0, 1 when help
 * was printed, or ERR_INVALID after printing the usage error. */
static int parse_args(const struct cmd *c, int argc, char **argv, struct pki_args *a)
{
    struct option longopts[O_NUM + 1];
    int n = 0;
    for (int i = 0; i < O_NUM; i++)
        if (c->opts & BIT(i)) longopts[n++] = all_opts[i];
    memset(&longopts[n], 0, sizeof longopts[n]);
    memset(a, 0, sizeof *a);
    a->pathlen = -1;
    a->start = -1;
    a->require_ca = -1;
    optind = 0; /* glibc: full re-initialisation */
    opterr = 0;
    for (;;) {
        int idx = -1;
        int o = getopt_long(argc, argv, ":h", longopts, &idx);
        if (o == -1) break;
        if (o == 'h' || o == O_HELP) {
            fputs(c->help, stdout);
            return 1;
        }
        if (o == '?' || o == ':') {
            const char *bad = argv[optind - 1];
            fprintf(stderr,
                    o == ':' ? "certmq pki: %s needs a value\n" : "certmq pki: unknown option %s\n",
                    bad);
            return ERR_INVALID;
        }
        GUARD(set_opt(a, o, optarg));
    }
    for (int i = optind; i < argc; i++) {
        if (a->npos == c->npos) {
            fprintf(stderr, "certmq pki: unexpected argument \"%s\"\n", argv[i]);
            return ERR_INVALID;
        }
        a->pos[a->npos++] = argv[i];
    }
    if (a->npos < c->npos) {
        fprintf(stderr, "certmq pki: missing %s argument\n",
                c->run == pki_cmd_inspect  ? "FILE"
                : c->run == pki_cmd_verify ? "CHAIN"
                                           : "DIR");
        return ERR_INVALID;
    }
    for (int i = 0; i < O_NUM; i++) {
        if ((c->required & BIT(i)) && !opt_given(a, i)) {
            fprintf(stderr, "certmq pki: --%s is required\n", all_opts[i].name);
            return ERR_INVALID;
        }
    }
    return 0;
}

static const struct cmd *find_cmd(int argc, char **argv, int *words)
{
    for (size_t i = 0; i < NCMDS; i++) {
        if (argc < 2 || strcmp(argv[1], cmds[i].w1) != 0) continue;
        if (!cmds[i].w2) {
            *words = 1;
            return &cmds[i];
        }
        if (argc >= 3 && !strcmp(argv[2], cmds[i].w2)) {
            *words = 2;
            return &cmds[i];
        }
    }
    return NULL;
}

int pki_main(int argc, char **argv)
{
    struct pki_args a;
    int words = 0;
    if (argc < 2) {
        overview(stderr);
        return PKI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        overview(stdout);
        return PKI_EXIT_OK;
    }
    const struct cmd *c = find_cmd(argc, argv, &words);
    if (!c) {
        fprintf(stderr, "certmq pki: unknown command \"%s%s%s\"\n", argv[1], argc > 2 ? " " : "",
                argc > 2 ? argv[2] : "");
        overview(stderr);
        return PKI_EXIT_USAGE;
    }
    int rc = parse_args(c, argc - words, argv + words, &a);
    if (rc == 1) return PKI_EXIT_OK;
    if (rc < 0) {
        fprintf(stderr, "see: certmq pki %s%s%s --help\n", c->w1, c->w2 ? " " : "",
                c->w2 ? c->w2 : "");
        return PKI_EXIT_USAGE;
    }
    return c->run(&a);
}
