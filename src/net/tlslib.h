/* A lean OpenSSL library context for the TLS server contexts: it offers only
 * the algorithms a TLS 1.2/1.3 handshake with EC, RSA and EdDSA certificates
 * needs, so that the key decoder setup OpenSSL runs for every certificate a
 * client presents enumerates a handful of algorithms instead of hundreds. */
#ifndef CERTMQ_NET_TLSLIB_H
#define CERTMQ_NET_TLSLIB_H

#include <openssl/crypto.h>

#include "core/err.h"

/* The process-wide lean context, created on first use (thread-safe) and
 * kept for the life of the process; never free it. Its implementations are
 * those of OpenSSL's default provider. ERR_TLS when it cannot be built. */
MUST_USE int tls_lib_ctx(OSSL_LIB_CTX **out);

#endif
