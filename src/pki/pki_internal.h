/* Declarations shared by the files of the pki module (never included from
 * outside src/pki and tests/unit/test_pki.c): parsed arguments, key specs,
 * subjectAltName and index.txt parsing, the CA directory and certificate
 * building, file output and error reporting. */
#ifndef CERTMQ_PKI_INTERNAL_H
#define CERTMQ_PKI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/err.h"

/* Exit codes of every command. */
enum { PKI_EXIT_OK = 0, PKI_EXIT_FAIL = 1, PKI_EXIT_USAGE = 2 };

#define PKI_MAX_SAN   32
#define PKI_MAX_CERTS 16
#define PKI_CN_MAX    64 /* ub-common-name */

/* Everything a command line can say; each command reads its own fields. */
struct pki_args {
    const char *pos[2]; /* positional arguments */
    int npos;
    const char *cn, *key, *pass_file, *parent, *parent_pass_file, *ca, *out;
    const char *p12_pass, *san, *prefix, *csv, *serial, *reason, *alias, *code;
    const char *certs[PKI_MAX_CERTS];
    int ncerts;
    long days, pathlen, count, start;
    bool encrypt, p12, json, force;
    /* verify */
    const char *trust[PKI_MAX_CERTS];
    int ntrust;
    const char *client_id, *crl;
    long max_chain;
    int require_ca; /* -1 not given, 0 false, 1 true */
    bool allow_v1;  /* --allow-v1-device-certificates true */
    time_t at;
    bool at_given;
    /* enroll, reenroll */
    const char *url, *tenant, *id, *token, *cafile;
};

/* --- key specs (keys.c) --- */
struct pki_keyspec {
    bool ec;
    int bits;      /* RSA modulus size */
    int curve_nid; /* EC curve */
    char name[16]; /* "ec:P-256" */
};
/* Parses "rsa:2048", "rsa:3072", "rsa:4096", "ec:P-256", "ec:P-384";
 * NULL means the default ec:P-256. */
MUST_USE int pki_keyspec_parse(const char *s, struct pki_keyspec *out);
/* Reusable generator: batch issuance makes many keys from one context. */
struct pki_keygen;
MUST_USE int pki_keygen_new(const struct pki_keyspec *ks, struct pki_keygen **out);
MUST_USE int pki_keygen_next(struct pki_keygen *g, EVP_PKEY **out);
void pki_keygen_free(struct pki_keygen *g);
/* "EC P-256", "RSA 2048" (never NULL). */
void pki_key_describe(const EVP_PKEY *k, char *out, size_t cap);
/* The digest a signature by k uses (SHA-384 for P-384, else SHA-256). */
const EVP_MD *pki_key_md(const EVP_PKEY *k);

/* --- passphrases (keys.c) --- */
struct pki_pass {
    const char *file;  /* --pass-file, or NULL */
    const char *env;   /* environment variable consulted next */
    const char *label; /* what is being unlocked, for prompts and errors */
    bool missing;      /* set by the callback: no passphrase source at all */
    bool tried;        /* set by the callback: a passphrase was supplied */
};
/* Fetches a passphrase: file (first line), then env, then a prompt on the
 * terminal (twice when confirm). Returns length or a negative code. */
MUST_USE int pki_pass_read(struct pki_pass *p, bool confirm, char *out, size_t cap);
/* Reads a private key (PEM, encrypted or not) from path; prints why on
 * failure (no passphrase, wrong passphrase, not a key). */
MUST_USE int pki_key_load(const char *path, struct pki_pass *p, EVP_PKEY **out);
/* PEM PKCS#8 of k, AES-256 encrypted when pass is non-NULL. */
MUST_USE int pki_key_pem(EVP_PKEY *k, const char *pass, char **out, size_t *len);

/* --- names (names.c, pure) --- */
enum pki_san_type { PKI_SAN_DNS, PKI_SAN_IP };
struct pki_san {
    enum pki_san_type type;
    size_t len;           /* 4 or 16 for IP; strlen for DNS */
    unsigned char ip[16]; /* network order */
    char dns[254];        /* NUL-terminated */
};
/* Parses "DNS:a.example,IP:10.0.0.1,IP:::1" (a bare host name or address
 * counts as DNS:/IP:). Returns 0 or ERR_INVALID with *why set. */
MUST_USE int pki_san_parse(const char *spec, struct pki_san *out, size_t max, size_t *n,
                           const char **why);
/* A device id usable as CN, MQTT ClientId and file name: 1-64 bytes, no ':'
 * (the ClientId separator), no '/', no control characters, not "." or "..". */
MUST_USE int pki_id_check(const char *id, const char **why);
/* The reason the broker gives when it refuses id as a common name
 * (ident_reason_str: "bad common name"), or "" when it accepts it. */
const char *pki_id_broker_reason(const char *id);
/* Parses a hex serial ("1A2B", "0x1a2b", with or without ':' between
 * bytes); returns ERR_INVALID when not hex or longer than 20 bytes. */
MUST_USE int pki_serial_parse(const char *s, BIGNUM **out);
/* Upper-case hex of a serial, whole bytes, as openssl writes it ("0100"). */
MUST_USE int pki_serial_hex(const BIGNUM *bn, char *out, size_t cap);

/* One line of an openssl `ca` index.txt: status, expiry, revocation,
 * serial, file name, subject, tab-separated. */
struct pki_index_entry {
    char status; /* 'V' valid, 'R' revoked, 'E' expired */
    char expiry[24];
    char revoked[64]; /* "YYMMDDHHMMSSZ" or "YYMMDDHHMMSSZ,reason", "" */
    char serial[48];
    char file[64];
    char subject[512];
};
MUST_USE int pki_index_parse_line(const char *line, size_t len, struct pki_index_entry *e);
MUST_USE int pki_index_format_line(const struct pki_index_entry *e, char *out, size_t cap);
/* CRL reason codes by their openssl names; -1 when unknown. */
int pki_reason_code(const char *name);
const char *pki_reason_name(int code);

/* --- files and messages (util.c) --- */
/* Prints "certmq pki: <message>" and, if OpenSSL left errors, one line
 * with the first reason; clears the OpenSSL error queue. */
void pki_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes data to path atomically with mode; refuses an existing file
 * unless force (prints why). */
MUST_USE int pki_write_file(const char *path, const void *data, size_t len, int mode, bool force);
/* Reads a whole file (NUL-terminated copy, caller frees). */
MUST_USE int pki_read_file(const char *path, char **out, size_t *len);
/* PEM of a certificate (caller frees). */
MUST_USE int pki_cert_pem(X509 *x, char **out, size_t *len);
/* Every certificate in a PEM or DER file, in order. */
MUST_USE int pki_certs_load(const char *path, STACK_OF(X509) * *out);
/* path = dir + "/" + name; ERR_TOO_LARGE when it does not fit. */
MUST_USE int pki_path(char *out, size_t cap, const char *dir, const char *name);
/* The CN of a name, or "" (out always NUL-terminated). */
void pki_name_cn(const X509_NAME *n, char *out, size_t cap);
/* Lower-case hex digest of a certificate's DER. */
void pki_fingerprint(const X509 *x, const EVP_MD *md, char *out, size_t cap);
/* ISO-8601 UTC text of an ASN1_TIME. */
void pki_time_iso(const ASN1_TIME *t, char *out, size_t cap);
/* Prints a JSON object on stdout and frees it. */
void pki_json_print(json_t *obj);
/* The p12 password from --p12-pass or CERTMQ_PKI_P12_PASS, or NULL. */
const char *pki_p12_pass(const struct pki_args *a);

/* --- CA directory and certificates (ca.c) --- */
struct pki_ca {
    char dir[4096];
    X509 *cert;
    EVP_PKEY *key;          /* NULL when opened without key */
    STACK_OF(X509) * chain; /* this CA first, up to and including the root */
    int lock_fd;            /* flock on dir/serial, held while open */
};
/* Opens a CA directory; with_key loads (and unlocks) ca.key. */
MUST_USE int pki_ca_open(const char *dir, bool with_key, struct pki_pass *pass, struct pki_ca *ca);
void pki_ca_close(struct pki_ca *ca);
/* Takes n consecutive serials from dir/serial; *first is the first one. */
MUST_USE int pki_ca_take_serials(struct pki_ca *ca, long n, BIGNUM **first);
/* Appends issued certificates to dir/index.txt (openssl ca format). */
MUST_USE int pki_ca_record(struct pki_ca *ca, STACK_OF(X509) * issued);

enum pki_profile { PKI_PROFILE_CA, PKI_PROFILE_DEVICE, PKI_PROFILE_SERVER };
struct pki_cert_req {
    enum pki_profile profile;
    const char *cn;
    EVP_PKEY *key; /* subject key (public part used) */
    long days;
    long pathlen; /* CA only; -1 for none */
    const struct pki_san *san;
    size_t nsan;
    const BIGNUM *serial; /* NULL: random (self-signed roots) */
    X509 *issuer;         /* NULL: self-signed with key */
    EVP_PKEY *issuer_key;
};
/* Builds and signs a v3 certificate for the profile. */
MUST_USE int pki_cert_make(const struct pki_cert_req *rq, X509 **out);

/* --- commands (one file each) --- */
int pki_cmd_ca_init(struct pki_args *a);
int pki_cmd_ca_intermediate(struct pki_args *a);
int pki_cmd_issue_device(struct pki_args *a);
int pki_cmd_issue_server(struct pki_args *a);
int pki_cmd_issue_batch(struct pki_args *a);
int pki_cmd_truststore(struct pki_args *a);
int pki_cmd_revoke(struct pki_args *a);
int pki_cmd_crl(struct pki_args *a);
int pki_cmd_inspect(struct pki_args *a);
int pki_cmd_pop_sign(struct pki_args *a);
int pki_cmd_verify(struct pki_args *a);
int pki_cmd_enroll(struct pki_args *a);
int pki_cmd_reenroll(struct pki_args *a);

/* --- EST client (estclient.c) --- */
struct pki_url {
    bool tls;
    char host[256];
    char port[8];
    char path[512]; /* prefix before /.well-known/est, no trailing '/' */
};
/* Parses http(s)://host[:port][/prefix] (pure). ERR_INVALID otherwise. */
MUST_USE int pki_url_parse(const char *url, size_t len, struct pki_url *out);
/* Status code and body of an HTTP/1.x answer (pure); ERR_MALFORMED
 * without a status line or the blank line ending the head. */
MUST_USE int pki_http_split(const char *resp, size_t len, int *status, const char **body,
                            size_t *body_len);
struct pki_est_req {
    const struct pki_url *url;
    const char *path;   /* appended to url->path */
    const char *cafile; /* server trust; NULL: the system's */
    const char *user, *pass;
    X509 *cert; /* client certificate (mutual TLS), may be NULL */
    STACK_OF(X509) * extra;
    EVP_PKEY *key;
    const char *body;
    size_t len;
};
/* POSTs body and reads the whole answer (*resp: free()). Prints why on
 * failure. */
MUST_USE int pki_est_post(const struct pki_est_req *rq, char **resp, size_t *len);
/* The certificates of a base64 certs-only PKCS#7 (sk_X509_pop_free). */
MUST_USE int pki_pkcs7_certs(const char *b64, size_t len, STACK_OF(X509) * *out);

/* --- verify (verify.c) --- */
#define PKI_VERIFY_TENANT "verify"
struct ident_decision;
struct pki_verify_in {
    X509 *leaf;               /* the device certificate (borrowed) */
    STACK_OF(X509) * chain;   /* what the device sends after it, may be NULL */
    STACK_OF(X509) * anchors; /* the trusted certificates */
    const char *client_id;    /* NULL: the ClientId rule is skipped */
    time_t at;                /* the time the chain is checked at */
    int max_chain_length;     /* below 2: the broker's default */
    bool require_ca_in_chain;
    bool allow_v1_leaf;   /* the broker's allow_v1_device_certificates */
    const char *crl_path; /* CRL file whose serials are revoked, or NULL */
};
/* Runs the broker's chain policy (ident_decide) with the anchors as enabled,
 * auto-registering trusted certificates of tenant PKI_VERIFY_TENANT. When
 * the chain is only too long, *needed_max_len is the smallest limit that
 * admits it (negative: the smallest limit past which another reason
 * refuses it); else 0. Returns negative only on an internal failure. */
MUST_USE int pki_verify_chain(const struct pki_verify_in *in, struct ident_decision *out,
                              int *needed_max_len);
/* --at: "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[Z]" (UTC) or "@SECONDS". */
MUST_USE int pki_time_parse(const char *s, time_t *out);

/* Shared by commands and the bootstrap. */
struct pki_ca_init {
    const char *dir;
    const char *cn;
    struct pki_keyspec ks;
    long days;
    long pathlen;
    const char *pass; /* encrypt ca.key with it, or NULL */
};
MUST_USE int pki_ca_create(const struct pki_ca_init *in, X509 **cert_out);
/* Issues one end-entity certificate into outdir/<name>.key (0600),
 * <name>.pem (the certificate, or the whole chain when pem_is_chain),
 * <name>.chain.pem (certificate, then every CA up to the root) and, with
 * p12_pass, <name>.p12 (key entry devicekeyentry with the chain). */
struct pki_issue_opts {
    enum pki_profile profile;
    const char *cn;
    const struct pki_keyspec *ks;
    long days;
    const struct pki_san *san;
    size_t nsan;
    const char *outdir;
    const char *name; /* file base name; NULL: the CN */
    bool pem_is_chain;
    const char *p12_pass;
    bool force;
};
struct pki_issued {
    char key_path[4200], cert_path[4200], chain_path[4200], p12_path[4200];
    char serial[48];
    char sha1[41];
    char not_after[32];
    char key_type[32];
};
MUST_USE int pki_issue_one(struct pki_ca *ca, const struct pki_issue_opts *o,
                           struct pki_issued *res);
/* Builds the PKCS#12 keystore: key entry `alias` with the chain. */
MUST_USE int pki_p12_keystore(EVP_PKEY *key, X509 *cert, STACK_OF(X509) * cas, const char *alias,
                              const char *pass, char **out, size_t *len);
/* Regenerates dir/crl.pem from index.txt (needs the CA key). */
MUST_USE int pki_crl_write(struct pki_ca *ca, long days, X509_CRL **out);

#endif
