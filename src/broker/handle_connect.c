/* CONNECT: ClientId rules, authentication (outside the broker lock),
 * session creation, resumption and takeover, the will, and CONNACK; in 5.0
 * also the session expiry, the client's limits (Receive Maximum, Maximum
 * Packet Size, Topic Alias Maximum) and the broker's, announced in CONNACK. */
#include "broker/internal.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* The 5.0 reason code for a 3.1.1 CONNACK return code. */
static uint8_t reason_v5(uint8_t rc)
{
    static const uint8_t map[] = {
        [MQTT_CONNACK_ACCEPTED] = MQTT_RC_SUCCESS,
        [MQTT_CONNACK_BAD_PROTOCOL] = MQTT_RC_UNSUPPORTED_VERSION,
        [MQTT_CONNACK_ID_REJECTED] = MQTT_RC_CLIENT_ID_NOT_VALID,
        [MQTT_CONNACK_UNAVAILABLE] = MQTT_RC_SERVER_UNAVAILABLE,
        [MQTT_CONNACK_BAD_CREDENTIALS] = MQTT_RC_BAD_CREDENTIALS,
        [MQTT_CONNACK_NOT_AUTHORIZED] = MQTT_RC_NOT_AUTHORIZED,
    };
    return rc < sizeof map ? map[rc] : MQTT_RC_UNSPECIFIED;
}

/* Refuses a CONNECT with a 3.1.1 return code (its 5.0 reason code for a
 * 5.0 client, with why as Reason String unless the client asked for no
 * problem information). */
static int refuse_why(struct client *c, const struct mqtt_packet *p, uint8_t rc, const char *why)
{
    if (p->version != MQTT_V5) {
        GUARD(mqtt_encode_connack(&c->out, false, rc, NULL));
        return ERR_NOT_AUTHORIZED;
    }
    struct mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    bool problem_info =
        !mqtt_props_has(&p->props, MQTT_PROP_REQUEST_PROBLEM_INFO) || p->props.request_problem_info;
    if (why && *why && problem_info) {
        pr.has |= 1ull << MQTT_PROP_REASON_STRING;
        pr.reason_string = (struct mqtt_bytes){(const uint8_t *)why, (uint16_t)strlen(why)};
    }
    GUARD(mqtt_encode_connack(&c->out, false, reason_v5(rc), &pr));
    return ERR_NOT_AUTHORIZED;
}

static int refuse(struct client *c, const struct mqtt_packet *p, uint8_t rc)
{
    return refuse_why(c, p, rc, NULL);
}

void broker_client_source(const struct client *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s", c->peer);
    char *colon = strrchr(out, ':');
    if (colon) *colon = 0;
}

/* Makes a ClientId for a zero-length one (3.1.1: clean sessions only). */
static void assign_id(char *id, size_t n)
{
    unsigned char r[12];
    if (RAND_bytes(r, sizeof r) != 1) memset(r, 0, sizeof r);
    int k = snprintf(id, n, "auto-");
    for (size_t i = 0; i < sizeof r && (size_t)k + 2 < n; i++)
        k += snprintf(id + k, n - k, "%02x", r[i]);
}

struct session *session_new(struct broker *b, struct space *sp, const char *key, size_t klen,
                            const char *client_id)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = strndup(key, klen);
    s->client_id = strdup(client_id);
    s->space = sp;
    if (!s->key || !s->client_id || map_put(&sp->sessions, key, klen, s, NULL) < 0) {
        free(s->key);
        free(s->client_id);
        free(s);
        return NULL;
    }
    return s;
}

/* Attaches c to the session named by (tenant, client id) in sp, creating,
 * resuming or taking it over. Sets *present when an old session continues. */
static struct session *attach(struct broker *b, struct space *sp, struct client *c,
                              const struct auth_result *who, const char *client_id, bool clean,
                              bool *present)
{
    char key[SESSION_KEY_MAX];
    int klen = session_key(key, sizeof key, who->tenant, client_id);
    struct session *s = map_get(&sp->sessions, key, (size_t)klen);
    *present = false;
    if (s && s->client) session_kick(b, s, !clean && s->expiry);
    /* A reconnect within the will delay cancels the will (5.0 3.1.3.2.2). */
    msg_unref(s ? s->will : NULL);
    if (s) {
        s->will = NULL;
        s->will_at = 0;
    }
    /* A session that ended with its connection (MQTT-3.1.2-6), also when it
     * was taken over, is never continued; Clean Start discards any. */
    if (s && (clean || !s->expiry)) {
        session_free(b, s);
        s = NULL;
    }
    if (s) {
        *present = true;
    } else {
        s = session_new(b, sp, key, (size_t)klen, client_id);
        if (!s) return NULL;
    }
    s->who = *who;
    s->client = c;
    c->session = s;
    sp->stats.clients++;
    return s;
}

/* The session expiry a CONNECT asks for: 3.1.1's clean session flag
 * against session_expiry, or 5.0's Session Expiry Interval capped by
 * max_session_expiry. *capped is set when the client must be told. */
static uint32_t connect_expiry(const struct broker *b, const struct mqtt_packet *p, bool *capped)
{
    *capped = false;
    if (p->version != MQTT_V5) {
        if (p->connect.clean_session) return 0;
        return b->cfg.session_expiry ? (uint32_t)b->cfg.session_expiry : SESSION_FOREVER;
    }
    uint32_t v = p->props.session_expiry; /* absent: 0 */
    long cap = b->cfg.max_session_expiry;
    if (cap > 0 && v > (unsigned long)cap) {
        *capped = true;
        return (uint32_t)cap;
    }
    return v;
}

/* The will as a message: 5.0 properties pass on with it, but its delay and
 * expiry belong to the session (they start when it is published). */
static struct msg *will_new(struct broker *b, const struct mqtt_packet *p, struct session_will *w)
{
    const struct mqtt_connect *cp = &p->connect;
    struct buf props;
    buf_init(&props, 0);
    memset(w, 0, sizeof *w);
    if (p->version == MQTT_V5) {
        const struct mqtt_props *wp = &p->will_props;
        w->delay = wp->will_delay;
        w->expiry = wp->message_expiry;
        long cap = b->cfg.max_message_expiry;
        if (cap > 0 && (!w->expiry || w->expiry > (unsigned long)cap)) w->expiry = (uint32_t)cap;
        uint64_t drop = 1ull << MQTT_PROP_WILL_DELAY | 1ull << MQTT_PROP_MESSAGE_EXPIRY;
        if (mqtt_props_copy(&props, wp, drop) < 0) {
            buf_free(&props);
            return NULL;
        }
    }
    struct msg *m =
        msg_new(cp->will_topic.p, cp->will_topic.len, cp->will_payload.p, cp->will_payload.len,
                cp->will_qos, cp->will_retain, buf_head(&props), buf_used(&props));
    buf_free(&props);
    return m;
}

/* The client's 5.0 limits and wishes, taken at CONNECT. */
static int client_limits(struct broker *b, struct client *c, const struct mqtt_packet *p)
{
    const struct mqtt_props *pr = &p->props;
    bool v5 = p->version == MQTT_V5;
    c->inflight_max = (uint16_t)b->cfg.max_inflight;
    c->problem_info = true;
    c->max_packet_out = 0;
    if (!v5) return 0;
    if (mqtt_props_has(pr, MQTT_PROP_RECEIVE_MAXIMUM) && pr->receive_maximum < c->inflight_max)
        c->inflight_max = pr->receive_maximum;
    if (mqtt_props_has(pr, MQTT_PROP_MAXIMUM_PACKET_SIZE))
        c->max_packet_out = pr->maximum_packet_size;
    if (mqtt_props_has(pr, MQTT_PROP_REQUEST_PROBLEM_INFO))
        c->problem_info = pr->request_problem_info;
    uint16_t in_max = (uint16_t)b->cfg.max_topic_alias;
    uint16_t out_max = pr->topic_alias_maximum < in_max ? pr->topic_alias_maximum : in_max;
    return alias_init(c, in_max, out_max, (size_t)b->cfg.max_subscription_bytes);
}

/* What a 5.0 CONNACK tells the client beyond the reason code. */
struct connack_info {
    const char *assigned_id;
    bool keepalive_changed, expiry_capped, response_info;
    uint32_t expiry;
    char response[96];
};

static int connack_v5(struct broker *b, struct client *c, bool present,
                      const struct connack_info *ci)
{
    struct mqtt_props pr;
    memset(&pr, 0, sizeof pr);
#define SET(id, field, v)                                                                          \
    do {                                                                                           \
        pr.has |= 1ull << (id);                                                                    \
        pr.field = (v);                                                                            \
    } while (0)
    if (b->cfg.max_receive < 65535)
        SET(MQTT_PROP_RECEIVE_MAXIMUM, receive_maximum, (uint16_t)b->cfg.max_receive);
    if (b->cfg.max_topic_alias)
        SET(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, topic_alias_maximum, (uint16_t)b->cfg.max_topic_alias);
    SET(MQTT_PROP_MAXIMUM_PACKET_SIZE, maximum_packet_size, (uint32_t)b->cfg.max_packet_size);
    if (!b->cfg.shared_subscriptions) SET(MQTT_PROP_SHARED_SUB_AVAILABLE, shared_sub_available, 0);
    if (ci->assigned_id)
        SET(MQTT_PROP_ASSIGNED_CLIENT_ID, assigned_client_id,
            ((struct mqtt_bytes){(const uint8_t *)ci->assigned_id,
                                 (uint16_t)strlen(ci->assigned_id)}));
    if (ci->keepalive_changed) SET(MQTT_PROP_SERVER_KEEPALIVE, server_keepalive, c->keepalive);
    if (ci->expiry_capped) SET(MQTT_PROP_SESSION_EXPIRY, session_expiry, ci->expiry);
    if (ci->response_info)
        SET(MQTT_PROP_RESPONSE_INFO, response_info,
            ((struct mqtt_bytes){(const uint8_t *)ci->response, (uint16_t)strlen(ci->response)}));
#undef SET
    return mqtt_encode_connack(&c->out, present, MQTT_RC_SUCCESS, &pr);
}

/* Checks the will of a CONNECT against the rules and makes its message. */
static int connect_will(struct broker *b, struct client *c, const struct mqtt_packet *p,
                        const char *client_id, struct acl_matcher *acl, struct msg **will,
                        struct session_will *w)
{
    const struct mqtt_connect *cp = &p->connect;
    *will = NULL;
    if (!cp->will) return 0;
    if (!topic_name_valid((const char *)cp->will_topic.p, cp->will_topic.len)) return ERR_PROTO;
    if (topic_levels((const char *)cp->will_topic.p, cp->will_topic.len) >
        (size_t)b->cfg.max_topic_levels)
        return ERR_LIMIT;
    if (!acl_may(acl, ACL_WRITE, (const char *)cp->will_topic.p, cp->will_topic.len)) {
        log_info("connect refused: peer=%s client=%s: will topic not allowed", c->peer, client_id);
        return refuse_why(c, p, MQTT_CONNACK_NOT_AUTHORIZED, "will topic not allowed");
    }
    *will = will_new(b, p, w);
    return *will ? 0 : refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
}

static int authenticate(struct broker *b, struct client *c, const struct mqtt_packet *p,
                        const char *client_id, time_t now, struct auth_result *who)
{
    const struct mqtt_connect *cp = &p->connect;
    char source[sizeof c->peer];
    broker_client_source(c, source, sizeof source);
    struct auth_request rq = {
        .listener_ca = c->listener_ca,
        .leaf = c->leaf,
        .chain = c->chain,
        .client_id = client_id,
        .client_id_len = strlen(client_id),
        .username = cp->has_username ? (const char *)cp->username.p : NULL,
        .username_len = cp->username.len,
        .password = cp->has_password ? cp->password.p : NULL,
        .password_len = cp->password.len,
        .chain_proven = c->chain_proven,
        .source = source,
        .pw_verdict = c->pw_verdict,
        .pw_roles = c->pw_roles,
        .now = now,
    };
    if (auth_connect(b->cfg.auth, &rq, who) < 0) return refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
    if (who->connack_rc != MQTT_CONNACK_ACCEPTED) {
        log_info("connect refused: peer=%s client=%s tenant=%s cn=%s anchor=%s reason=\"%s\"",
                 c->peer, client_id, who->tenant, who->identity, who->anchor_fp,
                 who->reason ? who->reason : "");
        return refuse_why(c, p, who->connack_rc, who->reason);
    }
    c->chain_proven = who->chain_proven;
    return 0;
}

/* In a cluster, the other nodes give up this client: a connection they
 * hold closes and, for a session that continues, they hand it over. When
 * the answer has to be waited for, the authentication is kept, reading
 * stops, and the CONNECT is handled again once it came (ERR_AGAIN). */
static int claim(struct broker *b, struct client *c, const struct mqtt_packet *p,
                 const struct auth_result *who, const char *client_id, bool assigned)
{
    const struct broker_cluster *cl = b->cfg.cluster;
    if (!cl || !cl->claim || assigned) return 0;
    struct claim *k = calloc(1, sizeof *k);
    size_t cap = strlen(who->tenant) + 2 + strlen(client_id);
    char *key = k ? malloc(cap) : NULL;
    if (!key) {
        free(k);
        return refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
    }
    k->who = *who;
    k->key = key;
    k->klen = (size_t)session_key(key, cap, who->tenant, client_id);
    c->claimed = k;
    bool capped;
    bool take = !p->connect.clean_session && connect_expiry(b, p, &capped);
    struct space *sp = take ? space_find(b, who->tenant) : NULL;
    if (sp) {
        /* A session here is the only one: it moved here when it last
         * connected elsewhere, and every node it left ended its copy. */
        space_lock(b, sp);
        take = !map_get(&sp->sessions, k->key, k->klen);
        space_unlock(sp);
    }
    c->claim = CLAIM_WAITING;
    if (cl->claim(cl->claim_arg, c, who->tenant, client_id, take) == 1) return ERR_AGAIN;
    c->claim = CLAIM_DONE;
    return 0;
}

int handle_connect(struct broker *b, struct client *c, const struct mqtt_packet *p, time_t now)
{
    const struct mqtt_connect *cp = &p->connect;
    bool v5 = p->version == MQTT_V5;
    struct connack_info ci = {0};
    char client_id[65536 + 1];
    memcpy(client_id, cp->client_id.p, cp->client_id.len);
    client_id[cp->client_id.len] = 0;
    if (cp->client_id.len == 0) {
        /* 3.1 requires a ClientId; 3.1.1 allows none for a clean session;
         * 5.0 always, and says which one it got. */
        if (cp->protocol_level == MQTT_V31 || (!v5 && !cp->clean_session))
            return refuse(c, p, MQTT_CONNACK_ID_REJECTED);
        assign_id(client_id, sizeof client_id);
        if (v5) ci.assigned_id = client_id;
    }
    if (v5 && mqtt_props_has(&p->props, MQTT_PROP_AUTH_METHOD)) {
        GUARD(mqtt_encode_connack(&c->out, false, MQTT_RC_BAD_AUTH_METHOD, &mqtt_props_none));
        return ERR_NOT_AUTHORIZED;
    }

    struct auth_result who;
    if (c->claimed && c->claim == CLAIM_DONE) {
        who = c->claimed->who;
    } else {
        GUARD(authenticate(b, c, p, client_id, now, &who));
        int claimed = claim(b, c, p, &who, client_id, ci.assigned_id || cp->client_id.len == 0);
        if (claimed) return claimed;
    }

    struct acl_matcher *acl = NULL;
    if (b->cfg.acl_compile && b->cfg.acl_compile(b->cfg.acl_arg, &who, client_id, &acl) < 0)
        return refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
    struct msg *will;
    struct session_will w;
    int rc = connect_will(b, c, p, client_id, acl, &will, &w);
    if (rc < 0) {
        acl_matcher_free(acl);
        return rc;
    }

    bool present;
    ci.expiry = connect_expiry(b, p, &ci.expiry_capped);
    struct space *sp = space_get(b, who.tenant);
    if (!sp) {
        msg_unref(will);
        acl_matcher_free(acl);
        return refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
    }
    space_lock(b, sp);
    c->space = sp;   /* from now on the client is this space's */
    claim_end(b, c); /* the session handed over, if any, is here now */
    struct session *s = attach(b, sp, c, &who, client_id, cp->clean_session, &present);
    if (!s || client_limits(b, c, p) < 0) {
        if (s) session_end(b, s);
        c->session = NULL;
        msg_unref(will);
        acl_matcher_free(acl);
        rc = refuse(c, p, MQTT_CONNACK_UNAVAILABLE);
        goto out;
    }
    session_set_acl(b, s, acl);
    s->will = will;
    s->will_delay = w.delay;
    s->will_expiry = w.expiry;
    s->expiry = ci.expiry;
    s->expiry_was_zero = ci.expiry == 0;
    if (s->durable && !(b->sstore && s->expiry)) persist_session_del(b, s);
    s->durable = b->sstore && s->expiry;
    persist_session(b, s);
    long max_ka = b->cfg.max_keepalive;
    c->keepalive = cp->keepalive;
    if (max_ka && (cp->keepalive == 0 || cp->keepalive > max_ka)) c->keepalive = (uint16_t)max_ka;
    ci.keepalive_changed = c->keepalive != cp->keepalive;
    c->state = CLIENT_ACTIVE;
    c->protocol_level = cp->protocol_level;
    if (v5 && p->props.request_response_info) {
        ci.response_info = true;
        snprintf(ci.response, sizeof ci.response, "resp/%.80s", client_id);
    }
    /* 3.1 has no session-present flag: its CONNACK's first byte is reserved. */
    if (v5)
        rc = connack_v5(b, c, present, &ci);
    else
        rc = mqtt_encode_connack(&c->out, present && cp->protocol_level != MQTT_V31,
                                 MQTT_CONNACK_ACCEPTED, NULL);
    GUARD_GOTO(rc, rc, out);
    s->gated = who.kind == AUTH_CERTIFICATE_DEVICE;
    if (present) {
        if (s->gated) {
            s->resend_pending = s->inflight.count > 0;
        } else {
            GUARD_GOTO(rc, broker_resend_inflight(b, c), out);
            if (s->queue.count) b->cfg.wake(c);
        }
    }
    log_debug("client %s connected from %s (tenant '%s', identity '%s', session %s, MQTT %s)",
              client_id, c->peer, who.tenant, who.identity, present ? "resumed" : "new",
              v5                               ? "5.0"
              : cp->protocol_level == MQTT_V31 ? "3.1"
                                               : "3.1.1");
out:
    space_unlock(sp);
    return rc;
}
