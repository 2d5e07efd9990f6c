/* Shared TLS ticket keys (see ticketkeys.h): loaded or made per slot from the
 * store, swapped under a mutex that the handshake callbacks hold only to copy
 * a key, and re-read by one thread that sleeps until the slot ends. */
#include "net/ticketkeys.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "core/log.h"

#define AES_LEN     32
#define HMAC_LEN    32
#define KEY_LEN     (TICKETKEYS_NAME_LEN + AES_LEN + HMAC_LEN) /* name | AES-256 | HMAC-SHA256 */
#define RETRY_S     5 /* a failed re-read is tried again this soon */
#define CONTEXT_LEN 64

struct tkey {
    bool set;
    bool local; /* made by this node alone: the stored one did not open */
    int64_t slot;
    uint8_t raw[KEY_LEN];
};

struct ticketkeys {
    struct store *st;
    const struct seal *seal;
    int64_t period;
    pthread_mutex_t mu; /* guards cur and prev */
    struct tkey cur, prev;
    pthread_mutex_t run_mu; /* guards stop; cv wakes the thread */
    pthread_cond_t cv;
    bool stop;
    bool started;
    pthread_t thread;
};

/* A sealed key names its period and slot: a blob moved to another row does
 * not open. */
static void key_context(const struct ticketkeys *tk, int64_t slot, char *buf, size_t cap)
{
    snprintf(buf, cap, "tls-ticket-key:%" PRId64 ":%" PRId64, tk->period, slot);
}

/* Seals fresh random key material and offers it for the slot; another node
 * may have been first, which is why the caller reads the slot back. */
static int make_key(struct ticketkeys *tk, int64_t slot)
{
    uint8_t raw[KEY_LEN];
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    char ctx[CONTEXT_LEN];
    key_context(tk, slot, ctx, sizeof ctx);
    int rc = RAND_bytes(raw, sizeof raw) == 1 ? 0 : ERR_INTERNAL;
    if (rc == 0) rc = seal_wrap(tk->seal, ctx, raw, sizeof raw, &blob, &blob_len);
    OPENSSL_cleanse(raw, sizeof raw);
    if (rc == 0) rc = store_ticket_key_put(tk->st, tk->period, slot, blob, blob_len);
    free(blob);
    return rc;
}

/* The key of a slot from the store, made first when make is set and there is
 * none. ERR_NOT_FOUND without one; seal_unwrap's codes when it does not open. */
static int load_key(struct ticketkeys *tk, int64_t slot, bool make, struct tkey *out)
{
    void *blob = NULL;
    size_t blob_len = 0;
    char *plain = NULL;
    size_t plain_len = 0;
    char ctx[CONTEXT_LEN];
    key_context(tk, slot, ctx, sizeof ctx);
    int rc = store_ticket_key_get(tk->st, tk->period, slot, &blob, &blob_len);
    if (rc == ERR_NOT_FOUND && make) {
        rc = make_key(tk, slot);
        if (rc == 0) rc = store_ticket_key_get(tk->st, tk->period, slot, &blob, &blob_len);
    }
    if (rc == 0) rc = seal_unwrap(tk->seal, ctx, blob, blob_len, &plain, &plain_len);
    if (rc == 0 && plain_len != KEY_LEN) rc = ERR_MALFORMED;
    if (rc == 0) {
        memcpy(out->raw, plain, KEY_LEN);
        out->slot = slot;
        out->set = true;
    }
    if (plain) seal_secret_free(plain, plain_len);
    free(blob);
    return rc;
}

/* The stored key of the slot does not open here: say why, and use a key
 * of this node's own meanwhile (its tickets resume on this node only). */
static int local_key(struct ticketkeys *tk, int64_t slot, int why, struct tkey *out)
{
    char kid[2 * SEAL_KID_LEN + 1];
    seal_key_id(tk->seal, kid);
    if (why == ERR_CONFLICT)
        log_error("tls tickets: the shared ticket key was sealed under another key-encryption "
                  "key than this node's (id %s): set ca_key_file to the one the other nodes "
                  "use; until then tickets of other nodes get a full handshake here",
                  kid);
    else
        log_error("tls tickets: the stored ticket key does not open (%s); tickets of other "
                  "nodes get a full handshake here",
                  err_str(why));
    ENSURE(RAND_bytes(out->raw, sizeof out->raw) == 1, ERR_INTERNAL);
    out->slot = slot;
    out->set = true;
    out->local = true;
    return 0;
}

int ticketkeys_refresh(struct ticketkeys *tk, int64_t now)
{
    int64_t slot = now / tk->period;
    pthread_mutex_lock(&tk->mu);
    bool fresh = tk->cur.set && tk->cur.slot == slot;
    pthread_mutex_unlock(&tk->mu);
    if (fresh) return 0;
    struct tkey cur = {0}, prev = {0};
    int rc = load_key(tk, slot, true, &cur);
    if (rc == ERR_CONFLICT || rc == ERR_AUTH || rc == ERR_MALFORMED)
        rc = local_key(tk, slot, rc, &cur);
    if (rc < 0) {
        log_warn("tls tickets: cannot read the ticket key from the store (%s); keeping the "
                 "keys held",
                 err_str(rc));
        return rc;
    }
    int prc = load_key(tk, slot - 1, false, &prev);
    if (prc < 0 && prc != ERR_NOT_FOUND)
        log_warn("tls tickets: the previous ticket key is unusable (%s); its tickets get a "
                 "full handshake",
                 err_str(prc));
    bool local = cur.local;
    pthread_mutex_lock(&tk->mu);
    tk->cur = cur;
    tk->prev = prev;
    pthread_mutex_unlock(&tk->mu);
    OPENSSL_cleanse(&cur, sizeof cur);
    OPENSSL_cleanse(&prev, sizeof prev);
    log_info("tls tickets: key of slot %" PRId64 " in use (%s), previous %s", slot,
             local ? "this node's own" : "shared", prc == 0 ? "kept" : "none");
    return 0;
}

/* Sleeps until the current slot ends (or RETRY_S after a failed read) and
 * re-reads; ends when ticketkeys_stop sets stop. */
static void *refresh_main(void *arg)
{
    struct ticketkeys *tk = arg;
    bool failed = false;
    pthread_mutex_lock(&tk->run_mu);
    while (!tk->stop) {
        int64_t now = (int64_t)time(NULL);
        int64_t next = failed ? now + RETRY_S : (now / tk->period + 1) * tk->period;
        struct timespec until = {(time_t)next, 0};
        while (!tk->stop && (int64_t)time(NULL) < next)
            pthread_cond_timedwait(&tk->cv, &tk->run_mu, &until);
        if (tk->stop) break;
        pthread_mutex_unlock(&tk->run_mu);
        failed = ticketkeys_refresh(tk, (int64_t)time(NULL)) < 0;
        pthread_mutex_lock(&tk->run_mu);
    }
    pthread_mutex_unlock(&tk->run_mu);
    return NULL;
}

int ticketkeys_start(const struct ticketkeys_config *c, struct ticketkeys **out)
{
    ENSURE(c->period > 0, ERR_INVALID);
    struct ticketkeys *tk = calloc(1, sizeof *tk);
    if (!tk) return ERR_NOMEM;
    tk->st = c->st;
    tk->seal = c->seal;
    tk->period = c->period;
    pthread_mutex_init(&tk->mu, NULL);
    pthread_mutex_init(&tk->run_mu, NULL);
    pthread_cond_init(&tk->cv, NULL);
    int rc = ticketkeys_refresh(tk, (int64_t)time(NULL));
    if (rc == 0 && pthread_create(&tk->thread, NULL, refresh_main, tk) != 0) rc = ERR_INTERNAL;
    if (rc < 0) {
        ticketkeys_stop(tk);
        return rc;
    }
    tk->started = true;
    *out = tk;
    return 0;
}

void ticketkeys_stop(struct ticketkeys *tk)
{
    if (!tk) return;
    if (tk->started) {
        pthread_mutex_lock(&tk->run_mu);
        tk->stop = true;
        pthread_cond_signal(&tk->cv);
        pthread_mutex_unlock(&tk->run_mu);
        pthread_join(tk->thread, NULL);
    }
    OPENSSL_cleanse(&tk->cur, sizeof tk->cur);
    OPENSSL_cleanse(&tk->prev, sizeof tk->prev);
    pthread_cond_destroy(&tk->cv);
    pthread_mutex_destroy(&tk->run_mu);
    pthread_mutex_destroy(&tk->mu);
    free(tk);
}

/* Which held key a ticket names: 1 current, 2 previous, 0 none; copied out
 * so that no lock is held while OpenSSL uses it. */
static int pick_key(struct ticketkeys *tk, const unsigned char *name, int enc, struct tkey *k)
{
    int which = 0;
    pthread_mutex_lock(&tk->mu);
    if (enc || (tk->cur.set && !memcmp(name, tk->cur.raw, TICKETKEYS_NAME_LEN))) {
        *k = tk->cur;
        which = tk->cur.set ? 1 : 0;
    } else if (tk->prev.set && !memcmp(name, tk->prev.raw, TICKETKEYS_NAME_LEN)) {
        *k = tk->prev;
        which = 2;
    }
    pthread_mutex_unlock(&tk->mu);
    return which;
}

int ticketkeys_cipher(struct ticketkeys *tk, unsigned char name[TICKETKEYS_NAME_LEN],
                      unsigned char *iv, EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tkey k = {0};
    int which = pick_key(tk, name, enc, &k);
    if (which == 0) return enc ? -1 : 0;
    const uint8_t *aes = k.raw + TICKETKEYS_NAME_LEN;
    uint8_t *hmac = k.raw + TICKETKEYS_NAME_LEN + AES_LEN;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac, HMAC_LEN),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok;
    if (enc) {
        memcpy(name, k.raw, TICKETKEYS_NAME_LEN);
        ok = RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1 &&
             EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, aes, iv) == 1;
    } else {
        ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, aes, iv) == 1;
    }
    ok = ok && EVP_MAC_CTX_set_params(hctx, params) == 1;
    OPENSSL_cleanse(&k, sizeof k);
    return ok ? which : -1;
}
