/* libFuzzer target for the chain policy over what a device sends: byte 0
 * picks require_ca_in_chain and max_chain_length, then a sequence of DER
 * certificates (each parsed with its own length): the first is the leaf,
 * the rest are sent in the order given, and the last is also trusted by a
 * tenant. ident_decide() must decide without misbehaving and within bounded
 * work, whatever issues whatever (path building tries many paths). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/x509.h>

#include "identity/pathcache.h"
#include "identity/policy.h"
#include "identity/trust.h"

#define MAX_CERTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    struct trust_index *ti = NULL;
    if (trust_new(&ti) < 0) return 0;
    STACK_OF(X509) *sent = sk_X509_new_null();
    const unsigned char *p = data + 1;
    long left = (long)(size - 1);
    X509 *leaf = NULL, *last = NULL;
    while (sent && left > 0 && sk_X509_num(sent) < MAX_CERTS) {
        const unsigned char *start = p;
        X509 *x = d2i_X509(NULL, &p, left);
        if (!x) break;
        left -= (long)(p - start);
        if (!leaf) {
            leaf = x;
        } else if (!sk_X509_push(sent, x)) {
            X509_free(x);
            break;
        }
        last = x;
    }
    if (leaf && last && trust_anchor_put(ti, "fuzz", last, true, true, false) == 0) {
        struct ident_input in = {
            .leaf = leaf,
            .chain = sent,
            .client_id = NULL,
            .now = 1800000000, /* fixed: runs are reproducible */
            .max_chain_length = 2 + (data[0] >> 1) % 9,
            .require_ca_in_chain = (data[0] & 1) == 0,
        };
        struct ident_decision d;
        if (ident_decide(ti, &in, &d) != 0) abort();
        if (d.accepted && d.tenant[0] == '\0') abort();
    }
    pathcache_clear();
    X509_free(leaf);
    sk_X509_pop_free(sent, X509_free);
    trust_free(ti);
    return 0;
}
