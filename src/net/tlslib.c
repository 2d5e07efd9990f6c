/* The lean library context of tlslib.h. A built-in provider offers filtered
 * copies of the algorithm tables of OpenSSL's default provider, loaded in a
 * hidden context of its own, and hands out that provider's context, so every
 * kept algorithm runs the default provider's code unchanged. */
#include "net/tlslib.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define TLSLIB_PROVIDER "certmq-tls"

/* What one operation keeps: algorithms whose first name is listed, and, when
 * prop is set, whose property definition contains it. */
struct keep {
    int op;
    const char *const *names;
    const char *prop;
};

static const char *const keep_digests[] = {"SHA1",     "SHA2-224", "SHA2-256",
                                           "SHA2-384", "SHA2-512", NULL};
/* The AES and ChaCha20 suites of OpenSSL's default TLS 1.2/1.3 lists. */
static const char *const keep_ciphers[] = {"AES-128-GCM",
                                           "AES-256-GCM",
                                           "ChaCha20-Poly1305",
                                           "AES-128-CCM",
                                           "AES-256-CCM",
                                           "AES-128-CBC",
                                           "AES-256-CBC",
                                           "AES-128-CBC-HMAC-SHA1",
                                           "AES-256-CBC-HMAC-SHA1",
                                           "AES-128-CBC-HMAC-SHA256",
                                           "AES-256-CBC-HMAC-SHA256",
                                           NULL};
static const char *const keep_macs[] = {"HMAC", NULL};
static const char *const keep_kdfs[] = {"HKDF", "TLS13-KDF", "TLS1-PRF", NULL};
static const char *const keep_rands[] = {"CTR-DRBG", "SEED-SRC", NULL};
static const char *const keep_keymgmts[] = {"EC",      "RSA",   "RSA-PSS", "X25519", "X448",
                                            "ED25519", "ED448", "DH",      "HMAC",   NULL};
static const char *const keep_exchanges[] = {"ECDH", "X25519", "X448", "DH", NULL};
static const char *const keep_signatures[] = {"ECDSA", "RSA", "ED25519", "ED448", "HMAC", NULL};
static const char *const keep_asym[] = {"RSA", NULL};
/* Certificate public keys only: the one decoder per key type that reads a
 * DER SubjectPublicKeyInfo. */
static const char *const keep_decoders[] = {"EC", "RSA", "RSA-PSS", "ED25519", "ED448", NULL};

static const struct keep keeps[] = {
    {OSSL_OP_DIGEST, keep_digests, NULL},
    {OSSL_OP_CIPHER, keep_ciphers, NULL},
    {OSSL_OP_MAC, keep_macs, NULL},
    {OSSL_OP_KDF, keep_kdfs, NULL},
    {OSSL_OP_RAND, keep_rands, NULL},
    {OSSL_OP_KEYMGMT, keep_keymgmts, NULL},
    {OSSL_OP_KEYEXCH, keep_exchanges, NULL},
    {OSSL_OP_SIGNATURE, keep_signatures, NULL},
    {OSSL_OP_ASYM_CIPHER, keep_asym, NULL},
    {OSSL_OP_DECODER, keep_decoders, "structure=SubjectPublicKeyInfo"},
};

static struct {
    OSSL_LIB_CTX *hidden; /* holds the default provider */
    OSSL_PROVIDER *deflt;
    OSSL_LIB_CTX *lean; /* what tls_lib_ctx() hands out */
    OSSL_PROVIDER *prov;
    OSSL_ALGORITHM *tables[OSSL_OP__HIGHEST + 1];
    int rc;
} lib;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static bool first_name_listed(const char *names, const char *const *list)
{
    size_t len = strcspn(names, ":");
    for (; *list; list++)
        if (strlen(*list) == len && strncmp(names, *list, len) == 0) return true;
    return false;
}

static bool kept(const struct keep *k, const OSSL_ALGORITHM *a)
{
    if (!first_name_listed(a->algorithm_names, k->names)) return false;
    return !k->prop || (a->property_definition && strstr(a->property_definition, k->prop));
}

/* The filtered copy of the default provider's table for k->op, terminated by
 * a zeroed entry; NULL in *out when nothing is kept. */
MUST_USE static int table_build(const struct keep *k, OSSL_ALGORITHM **out)
{
    int no_cache = 0;
    const OSSL_ALGORITHM *all = OSSL_PROVIDER_query_operation(lib.deflt, k->op, &no_cache);
    *out = NULL;
    /* A table the provider may change between calls cannot be copied once. */
    if (!all || no_cache) return all ? ERR_TLS : 0;
    size_t n = 0;
    for (const OSSL_ALGORITHM *a = all; a->algorithm_names; a++)
        if (kept(k, a)) n++;
    if (n == 0) return 0;
    OSSL_ALGORITHM *t = calloc(n + 1, sizeof *t);
    if (!t) return ERR_NOMEM;
    size_t i = 0;
    for (const OSSL_ALGORITHM *a = all; a->algorithm_names; a++)
        if (kept(k, a)) t[i++] = *a;
    *out = t;
    return 0;
}

static const OSSL_PARAM lean_param_types[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *lean_gettable_params(void *provctx)
{
    (void)provctx;
    return lean_param_types;
}

static int lean_get_params(void *provctx, OSSL_PARAM params[])
{
    (void)provctx;
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p && !OSSL_PARAM_set_utf8_ptr(p, "certmq TLS subset of the default provider")) return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p && !OSSL_PARAM_set_utf8_ptr(p, OPENSSL_VERSION_STR)) return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p && !OSSL_PARAM_set_utf8_ptr(p, OPENSSL_FULL_VERSION_STR)) return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p && !OSSL_PARAM_set_int(p, 1)) return 0;
    return 1;
}

static const OSSL_ALGORITHM *lean_query(void *provctx, int op, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    return op >= 0 && op <= OSSL_OP__HIGHEST ? lib.tables[op] : NULL;
}

/* TLS groups (TLS-GROUP) are the default provider's: libssl keeps those
 * whose key type this context offers. */
static int lean_get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb,
                                 void *arg)
{
    (void)provctx;
    return OSSL_PROVIDER_get_capabilities(lib.deflt, capability, cb, arg);
}

/* No teardown: the provider context belongs to the hidden default provider. */
static const OSSL_DISPATCH lean_dispatch[] = {
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))lean_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))lean_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))lean_query},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))lean_get_capabilities},
    {0, NULL},
};

static int lean_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    *provctx = OSSL_PROVIDER_get0_provider_ctx(lib.deflt);
    *out = lean_dispatch;
    return *provctx != NULL;
}

static void lib_release(void)
{
    if (lib.prov) OSSL_PROVIDER_unload(lib.prov);
    OSSL_LIB_CTX_free(lib.lean);
    if (lib.deflt) OSSL_PROVIDER_unload(lib.deflt);
    OSSL_LIB_CTX_free(lib.hidden);
    for (size_t i = 0; i < sizeof lib.tables / sizeof lib.tables[0]; i++) free(lib.tables[i]);
    memset(&lib, 0, sizeof lib);
}

MUST_USE static int lib_build(void)
{
    int rc = ERR_TLS;
    lib.hidden = OSSL_LIB_CTX_new();
    if (!lib.hidden) goto out;
    lib.deflt = OSSL_PROVIDER_load(lib.hidden, "default");
    if (!lib.deflt) goto out;
    for (size_t i = 0; i < sizeof keeps / sizeof keeps[0]; i++)
        GUARD_GOTO(rc, table_build(&keeps[i], &lib.tables[keeps[i].op]), out);
    rc = ERR_TLS;
    /* The provider is loaded before anything is fetched from the context, so
     * OpenSSL never falls back to loading the full default provider there. */
    lib.lean = OSSL_LIB_CTX_new();
    if (!lib.lean) goto out;
    if (OSSL_PROVIDER_add_builtin(lib.lean, TLSLIB_PROVIDER, lean_init) != 1) goto out;
    lib.prov = OSSL_PROVIDER_load(lib.lean, TLSLIB_PROVIDER);
    if (!lib.prov) goto out;
    rc = 0;
out:
    if (rc < 0) lib_release();
    return rc;
}

static void lib_once_init(void)
{
    lib.rc = lib_build();
}

int tls_lib_ctx(OSSL_LIB_CTX **out)
{
    pthread_once(&lib_once, lib_once_init);
    *out = lib.lean;
    return lib.rc;
}
