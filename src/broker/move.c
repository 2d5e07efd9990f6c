/* One ClientId, one connection, cluster-wide: what this node does when
 * another node claims one of its clients (broker_release: the connection
 * closes, the session is handed over as journal records), and when a
 * session handed over from elsewhere arrives without its client
 * (broker_adopt). The claim itself is the cluster's (broker_cluster.claim);
 * a CONNECT waiting for it goes on in handle_connect. */
#include "broker/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void session_kick(struct broker *b, struct session *s, bool keep_delayed_will)
{
    struct client *c = s->client;
    log_info("client %s: taken over", s->client_id);
    c->kicked = true;
    c->close_reason = MQTT_RC_SESSION_TAKEN_OVER;
    c->session = NULL;
    b->cfg.wake(c);
    s->client = NULL;
    s->offline_since = time(NULL);
    s->space->stats.clients--;
    /* Taken over, the older connection ends without DISCONNECT, so its will
     * is published (3.1.2.5, as mosquitto does), unless it is a delayed will
     * that the reconnect cancels. */
    if (!s->will_delay || !keep_delayed_will) session_will_fire(b, s);
}

int broker_release(struct broker *b, const char *tenant, const char *client_id, bool take,
                   size_t max, struct buf *out)
{
    char key[SESSION_KEY_MAX];
    int klen = session_key(key, sizeof key, tenant, client_id);
    if (klen < 0 || (size_t)klen >= sizeof key) return 0;
    struct space *sp = space_find(b, tenant);
    if (!sp) return 0;
    int rc = 0;
    space_lock(b, sp);
    struct session *s = map_get(&sp->sessions, key, (size_t)klen);
    if (!s) goto out;
    bool move = take && s->expiry;
    if (s->client) session_kick(b, s, move);
    if (move) {
        size_t used = buf_used(out);
        rc = persist_snapshot(s, out);
        if (rc == 0 && buf_used(out) > max) rc = ERR_TOO_LARGE;
        if (rc < 0) {
            out->len = out->off + used;
            log_warn("client %s: its session stays on this node (%s)", client_id,
                     rc == ERR_TOO_LARGE ? "larger than a NATS message" : "out of memory");
            goto out;
        }
        rc = 1;
        log_info("client %s: session handed over to another node", client_id);
    }
    session_free(b, s); /* out of the store here: the claimer keeps it now */
out:
    space_unlock(sp);
    return rc;
}

/* The session (tenant, client_id) handed over is put here, replacing an
 * offline one (a node that held it is the one its client last used). */
static int adopt(struct broker *b, struct space *sp, const char *key, size_t klen,
                 const uint8_t *rec, size_t len)
{
    struct session *old = map_get(&sp->sessions, key, klen);
    if (old && old->client) {
        log_warn("a session handed over for a client connected here is dropped");
        return ERR_EXISTS;
    }
    if (old) session_free(b, old);
    return broker_import(b, key, klen, rec, len, time(NULL));
}

int broker_adopt(struct broker *b, const char *tenant, const char *client_id, const uint8_t *rec,
                 size_t len)
{
    char key[SESSION_KEY_MAX];
    int klen = session_key(key, sizeof key, tenant, client_id);
    ENSURE(klen > 0 && (size_t)klen < sizeof key, ERR_INVALID);
    struct space *sp = space_get(b, tenant);
    ENSURE(sp, ERR_NOMEM);
    space_lock(b, sp);
    int rc = adopt(b, sp, key, (size_t)klen, rec, len);
    space_unlock(sp);
    return rc;
}

void broker_claim_answered(struct broker *b, struct client *c, uint8_t *rec, size_t len)
{
    c->claimed->rec = rec;
    c->claimed->len = len;
    atomic_store(&c->claim, CLAIM_DONE);
    b->cfg.wake(c);
}

void claim_end(struct broker *b, struct client *c)
{
    struct claim *cl = c->claimed;
    if (!cl) return;
    /* Under the lock of the claiming client's space, its tenant's (none:
     * out of memory, the session is dropped). */
    if (cl->rec && c->space && adopt(b, c->space, cl->key, cl->klen, cl->rec, cl->len) == 0 &&
        c->session == NULL)
        log_info("a session handed over for a connection that went is kept offline");
    free(cl->rec);
    free(cl->key);
    free(cl);
    c->claimed = NULL;
}
