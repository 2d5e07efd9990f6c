/* TLS contexts for listeners. The chain a client presents is accepted by
 * the handshake as is and judged after CONNECT by the identity module, so
 * a refusal is a CONNACK with a reason rather than an anonymous alert. */
#ifndef CERTMQ_NET_TLS_H
#define CERTMQ_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "core/config.h"
#include "core/err.h"

/* Builds a server context from the listener's certfile/keyfile and client
 * certificate mode. On failure writes a readable reason into err. */
MUST_USE int tls_ctx_new(const struct listener_config *lc, SSL_CTX **out, char *err, size_t n);
/* Loads a PEM bundle of trusted client CAs into a new store. */
MUST_USE int tls_ca_store_new(const char *cafile, X509_STORE **out, char *err, size_t n);

struct ticketkeys;
/* Makes the contexts built after it use stateless TLS 1.3 tickets under the
 * shared keys tk (tls_tickets store) instead of the per-node session cache;
 * call before the listeners are made, and with NULL only after they stopped. */
void tls_use_ticket_keys(struct ticketkeys *tk);
/* With shared keys, once CONNECT has decided (and marked the session proven
 * or not): issues the connection's ticket and writes it. 0 when written or
 * none is due; 1 when it is still queued for the socket (the session must
 * then be kept: tls_session_drop would lose it); ERR_TLS when the connection
 * failed. */
MUST_USE int tls_ticket_send(SSL *ssl);
/* Whether a ticket's application data says its full handshake proved the
 * anchor (pure; anything but the exact tag is not proven). */
bool tls_ticket_appdata_proven(const void *data, size_t len);
/* Whether a ClientHello's supported_versions extension body offers TLS 1.3
 * (pure; never reads past n). */
bool tls_hello_offers_tls13(const unsigned char *p, size_t n);

/* Remembers in the connection's TLS session that its full handshake
 * presented a chain holding the device's trust anchor, so that a client
 * resuming that session (which sends no chain) is judged as having shown it. */
void tls_session_mark_chain_proven(SSL *ssl);
/* True when ssl resumed a session marked above. */
bool tls_session_chain_proven(SSL *ssl);

/* Drops an established TLS 1.3 connection's own reference to its session,
 * and with it the peer certificate, once CONNECT has decided the identity:
 * an idle connection then keeps neither unless the session cache still holds
 * the session (for resumption, untouched; it now also stays there when the
 * connection ends without close_notify). Reading, writing, KeyUpdate and
 * shutdown go on without it; SSL_get0_peer_certificate returns NULL after.
 * TLS 1.2 connections keep theirs (RFC 5246 has a failed connection's
 * session invalidated, which takes the reference). ERR_TLS when OpenSSL
 * could not do it: the connection must then be closed. */
MUST_USE int tls_session_drop(SSL *ssl);

#endif
