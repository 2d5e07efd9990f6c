/* TLS contexts for listeners. The chain a client presents is accepted by
 * the handshake as is and judged after CONNECT by the identity module, so
 * a refusal is a CONNACK with a reason rather than an anonymous alert. */
#ifndef CERTMQ_NET_TLS_H
#define CERTMQ_NET_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "core/config.h"
#include "core/err.h"

/* Builds a server context from the listener's certfile/keyfile and client
 * certificate mode. On failure writes a readable reason into err. */
MUST_USE int tls_ctx_new(const struct listener_config *lc, SSL_CTX **out, char *err, size_t n);
/* Loads a PEM bundle of trusted client CAs into a new store. */
MUST_USE int tls_ca_store_new(const char *cafile, X509_STORE **out, char *err, size_t n);

#endif
