/* Keys of stateless TLS session tickets shared by every node of one store
 * (option tls_tickets store): one key per rotation slot (unix time / period),
 * made by the first node that needs it and kept in the store sealed under the
 * key-encryption key (core/seal.h). Each node holds the current slot's key
 * (issues and accepts) and the previous one's (accepts, and the ticket is
 * renewed), and re-reads them when a slot ends. Keys are never logged. */
#ifndef CERTMQ_NET_TICKETKEYS_H
#define CERTMQ_NET_TICKETKEYS_H

#include <stdint.h>

#include <openssl/evp.h>

#include "core/err.h"
#include "core/seal.h"
#include "store/store.h"

#define TICKETKEYS_NAME_LEN 16 /* what OpenSSL calls the key name */

struct ticketkeys;

struct ticketkeys_config {
    struct store *st;        /* borrowed; outlives the keys */
    const struct seal *seal; /* borrowed */
    long period;             /* seconds a key is current (tls_ticket_key_rotate) */
};

/* Loads (or makes) the keys for now and starts the thread that re-reads them
 * at the end of each slot. A stored key this node cannot open (another KEK)
 * is reported and replaced, on this node only, by a key of its own. */
MUST_USE int ticketkeys_start(const struct ticketkeys_config *c, struct ticketkeys **out);
/* Stops the thread, wipes the keys and frees (NULL is fine). */
void ticketkeys_stop(struct ticketkeys *tk);
/* Makes the keys those of the slot of now (the thread calls this). */
MUST_USE int ticketkeys_refresh(struct ticketkeys *tk, int64_t now);

/* OpenSSL's ticket key step (SSL_CTX_set_tlsext_ticket_key_evp_cb): with enc
 * 1 names the current key, makes an IV and sets up cctx and hctx (returns 1);
 * with enc 0 finds the key by name: 1 the current one, 2 the previous one
 * (the ticket is renewed), 0 unknown (a full handshake). -1 on failure. */
int ticketkeys_cipher(struct ticketkeys *tk, unsigned char name[TICKETKEYS_NAME_LEN],
                      unsigned char *iv, EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

#endif
