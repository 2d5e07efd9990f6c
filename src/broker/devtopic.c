/* Topic names as clients see them versus as the broker routes them.
 *
 * A device's `s/...` topics are its own: they live at `$devices/<ID>/s/...`.
 * The tenant's users holding a device-control role (auth_may_control_devices)
 * reach them as `devices/<ID>/s/...`; nobody else in the tenant may. Other
 * clients' own `s/...` topics live at `$client/<ClientId>/s/...` (where
 * errors for them are reported). The '$' prefix keeps these out of reach of
 * '#' and '+' subscriptions. Devices may not touch `devices/...`, nobody may
 * publish to a '$' topic, and `s/dat` and `s/dcr` (tokens, certificates) are
 * written by the broker alone. */
#include "broker/internal.h"

#include <stdio.h>
#include <string.h>

static bool starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && !memcmp(s, prefix, n);
}

/* Is the s/-relative rest of a device topic one only the broker writes? */
static bool broker_only(const char *rest, size_t len)
{
    return (len == 5 && !memcmp(rest, "s/dat", 5)) || (len == 5 && !memcmp(rest, "s/dcr", 5));
}

/* devices/<ID>/<rest>: the <rest> part, or NULL when t has no <ID>. */
static const char *device_rest(const char *t, size_t len, size_t *rest_len)
{
    const char *id = t + strlen("devices/");
    const char *slash = memchr(id, '/', len - (size_t)(id - t));
    if (!slash || slash == id) return NULL;
    *rest_len = len - (size_t)(slash + 1 - t);
    return slash + 1;
}

int devtopic_in(const struct session *s, const char *t, size_t len, enum devtopic_use use,
                char *out, size_t cap, size_t *out_len)
{
    int n;
    bool publish = use != DEVTOPIC_SUBSCRIBE;
    if (use == DEVTOPIC_PUBLISH && starts(t, len, "s/") && broker_only(t, len))
        return ERR_FORBIDDEN;
    if (starts(t, len, "$")) {
        /* Reading $SYS-style topics is fine; our internal spaces are not. */
        if (publish || starts(t, len, "$devices") || starts(t, len, "$client"))
            return ERR_FORBIDDEN;
        n = snprintf(out, cap, "%.*s", (int)len, t);
    } else if (starts(t, len, "s/")) {
        if (s->who.device)
            n = snprintf(out, cap, "$devices/%s/%.*s", s->who.identity, (int)len, t);
        else if (strpbrk(s->client_id, "/+#"))
            return ERR_FORBIDDEN; /* would reach other clients' private topics */
        else
            n = snprintf(out, cap, "$client/%s/%.*s", s->client_id, (int)len, t);
    } else if (starts(t, len, "devices/") && s->who.tenant[0]) {
        size_t rlen = 0;
        const char *rest = device_rest(t, len, &rlen);
        if (!auth_may_control_devices(&s->who)) return ERR_FORBIDDEN;
        if (use == DEVTOPIC_PUBLISH && rest && broker_only(rest, rlen)) return ERR_FORBIDDEN;
        n = snprintf(out, cap, "$%.*s", (int)len, t);
    } else if (starts(t, len, "devices/")) {
        /* The static space has no devices: devices/... is a plain name there. */
        n = snprintf(out, cap, "$%.*s", (int)len, t);
    } else { /* most topics: as they are */
        if (len >= cap || len > 65535) return ERR_TOO_LARGE;
        memcpy(out, t, len);
        out[len] = 0;
        n = (int)len;
    }
    if (n < 0 || (size_t)n >= cap || n > 65535) return ERR_TOO_LARGE;
    *out_len = (size_t)n;
    return 0;
}

/* Internal name -> the name this session's client sees. Returns a pointer
 * into t (a suffix) or into buf. */
const char *devtopic_out(const struct session *s, const char *t, size_t len, size_t *out_len)
{
    *out_len = len;
    if (len == 0 || t[0] != '$') return t;
    char prefix[256 + 16];
    int n;
    if (s->who.device)
        n = snprintf(prefix, sizeof prefix, "$devices/%s/", s->who.identity);
    else if (starts(t, len, "$devices/"))
        n = 1; /* "$devices/..." is shown as "devices/..." */
    else
        n = snprintf(prefix, sizeof prefix, "$client/%s/", s->client_id);
    if (n == 1 || (n > 0 && (size_t)n < sizeof prefix && starts(t, len, prefix))) {
        *out_len = len - (size_t)n;
        return t + n;
    }
    return t;
}
