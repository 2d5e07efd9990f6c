/* CONNECT: ClientId rules, authentication (outside the broker lock),
 * session creation, resumption and takeover, the will, and CONNACK. */
#include "broker/internal.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static int refuse(struct client *c, uint8_t rc)
{
    GUARD(mqtt_encode_connack(&c->out, false, rc));
    return ERR_NOT_AUTHORIZED;
}

void broker_client_source(const struct client *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s", c->peer);
    char *colon = strrchr(out, ':');
    if (colon) *colon = 0;
}

/* Makes a ClientId for a zero-length one (clean sessions only). */
static void assign_id(char *id, size_t n)
{
    unsigned char r[12];
    if (RAND_bytes(r, sizeof r) != 1) memset(r, 0, sizeof r);
    int k = snprintf(id, n, "auto-");
    for (size_t i = 0; i < sizeof r && (size_t)k + 2 < n; i++)
        k += snprintf(id + k, n - k, "%02x", r[i]);
}

static struct session *session_new(struct broker *b, struct space *sp, const char *key, size_t klen,
                                   const char *client_id)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = strndup(key, klen);
    s->client_id = strdup(client_id);
    s->space = sp;
    if (!s->key || !s->client_id || map_put(&b->sessions, key, klen, s, NULL) < 0) {
        free(s->key);
        free(s->client_id);
        free(s);
        return NULL;
    }
    return s;
}

/* Attaches c to the session named by (tenant, client id), creating,
 * resuming or taking it over. Sets *present when an old session continues. */
static struct session *attach(struct broker *b, struct client *c, const struct auth_result *who,
                              const char *client_id, bool clean, bool *present)
{
    char key[64 + 1 + 65536];
    int klen = snprintf(key, sizeof key, "%s\x01%s", who->tenant, client_id);
    struct session *s = map_get(&b->sessions, key, (size_t)klen);
    *present = false;
    if (s && s->client) {
        /* Takeover: the older connection ends without DISCONNECT, so its
         * will is published (as 3.1.2.5 says, and as mosquitto does). */
        log_info("client %s: taken over by %s", client_id, c->peer);
        s->client->kicked = true;
        s->client->session = NULL;
        b->cfg.wake(s->client);
        s->client = NULL;
        b->stats.clients--;
        if (s->will) ignore_result(broker_publish(b, s->space, s->will));
        msg_unref(s->will);
        s->will = NULL;
    }
    /* A clean session ends with its connection (MQTT-3.1.2-6), also when
     * it was taken over: the new connection never continues it. */
    if (s && (clean || s->clean)) {
        session_free(b, s);
        s = NULL;
    }
    if (s) {
        *present = true;
    } else {
        struct space *sp = space_get(b, who->tenant);
        if (!sp) return NULL;
        s = session_new(b, sp, key, (size_t)klen, client_id);
        if (!s) return NULL;
    }
    s->clean = clean;
    s->who = *who;
    s->client = c;
    c->session = s;
    b->stats.clients++;
    return s;
}

int handle_connect(struct broker *b, struct client *c, const struct mqtt_connect *p, time_t now)
{
    char client_id[65536 + 1];
    memcpy(client_id, p->client_id.p, p->client_id.len);
    client_id[p->client_id.len] = 0;
    bool v31 = p->protocol_level == 3;
    if (p->client_id.len == 0) {
        /* 3.1 requires a ClientId; 3.1.1 allows none for a clean session. */
        if (!p->clean_session || v31) return refuse(c, MQTT_CONNACK_ID_REJECTED);
        assign_id(client_id, sizeof client_id);
    }

    char source[sizeof c->peer];
    broker_client_source(c, source, sizeof source);
    struct auth_request rq = {
        .listener_ca = c->listener_ca,
        .leaf = c->leaf,
        .chain = c->chain,
        .client_id = client_id,
        .client_id_len = strlen(client_id),
        .username = p->has_username ? (const char *)p->username.p : NULL,
        .username_len = p->username.len,
        .password = p->has_password ? p->password.p : NULL,
        .password_len = p->password.len,
        .chain_proven = c->chain_proven,
        .source = source,
        .pw_verdict = c->pw_verdict,
        .pw_roles = c->pw_roles,
        .now = now,
    };
    struct auth_result who;
    if (auth_connect(b->cfg.auth, &rq, &who) < 0) return refuse(c, MQTT_CONNACK_UNAVAILABLE);
    if (who.connack_rc != MQTT_CONNACK_ACCEPTED) {
        log_info("connect refused: peer=%s client=%s tenant=%s cn=%s anchor=%s reason=\"%s\"",
                 c->peer, client_id, who.tenant, who.identity, who.anchor_fp,
                 who.reason ? who.reason : "");
        return refuse(c, who.connack_rc);
    }

    c->chain_proven = who.chain_proven;
    struct msg *will = NULL;
    if (p->will) {
        if (!topic_name_valid((const char *)p->will_topic.p, p->will_topic.len)) return ERR_PROTO;
        if (topic_levels((const char *)p->will_topic.p, p->will_topic.len) >
            (size_t)b->cfg.max_topic_levels)
            return ERR_LIMIT;
        will = msg_new(p->will_topic.p, p->will_topic.len, p->will_payload.p, p->will_payload.len,
                       p->will_qos, p->will_retain);
        if (!will) return refuse(c, MQTT_CONNACK_UNAVAILABLE);
    }

    struct acl_matcher *acl = NULL;
    if (b->cfg.acl_compile && b->cfg.acl_compile(b->cfg.acl_arg, &who, client_id, &acl) < 0) {
        msg_unref(will);
        return refuse(c, MQTT_CONNACK_UNAVAILABLE);
    }
    if (will && !acl_may(acl, ACL_WRITE, (const char *)p->will_topic.p, p->will_topic.len)) {
        log_info("connect refused: peer=%s client=%s: will topic not allowed", c->peer, client_id);
        msg_unref(will);
        acl_matcher_free(acl);
        return refuse(c, MQTT_CONNACK_NOT_AUTHORIZED);
    }

    int rc = 0;
    bool present;
    pthread_mutex_lock(&b->lock);
    struct session *s = attach(b, c, &who, client_id, p->clean_session, &present);
    if (!s) {
        msg_unref(will);
        acl_matcher_free(acl);
        rc = refuse(c, MQTT_CONNACK_UNAVAILABLE);
        goto out;
    }
    session_set_acl(b, s, acl);
    s->will = will;
    long max_ka = b->cfg.max_keepalive;
    c->keepalive = p->keepalive;
    if (max_ka && (p->keepalive == 0 || p->keepalive > max_ka)) c->keepalive = (uint16_t)max_ka;
    c->state = CLIENT_ACTIVE;
    c->protocol_level = p->protocol_level;
    /* 3.1 has no session-present flag: its CONNACK's first byte is reserved. */
    GUARD_GOTO(rc, mqtt_encode_connack(&c->out, present && !v31, MQTT_CONNACK_ACCEPTED), out);
    s->gated = who.kind == AUTH_CERTIFICATE_DEVICE;
    if (present) {
        if (s->gated) {
            s->resend_pending = s->inflight.count > 0;
        } else {
            GUARD_GOTO(rc, broker_resend_inflight(b, c), out);
            if (s->queue.count) b->cfg.wake(c);
        }
    }
    log_debug("client %s connected from %s (tenant '%s', identity '%s', session %s)", client_id,
              c->peer, who.tenant, who.identity, present ? "resumed" : "new");
out:
    pthread_mutex_unlock(&b->lock);
    return rc;
}
