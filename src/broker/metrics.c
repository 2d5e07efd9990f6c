/* The broker's families of GET /metrics: connections by tenant and kind,
 * sessions, retained messages, messages and bytes in and out by QoS, queue
 * drops, expired and too-large messages. Counters are copied under each
 * space's lock, held once for one pass over its sessions, and written after
 * it is released. */
#include "broker/internal.h"

#include <stdlib.h>

#include "core/metrics.h"

static const char *kind_label(uint8_t kind)
{
    switch (kind) {
    case AUTH_CERTIFICATE_DEVICE: return "certificate";
    case AUTH_PASSWORD: return "password";
    case AUTH_STATIC: return "static";
    default: return "anonymous";
    }
}

static void write_connections(FILE *out, const struct broker_count *v, size_t n)
{
    metrics_family(out, "certmq_connections", "gauge",
                   "connected MQTT clients by tenant and kind (tenant \"\" is the static space)");
    for (size_t i = 0; i < n; i++) {
        fputs("certmq_connections{tenant=\"", out);
        metrics_label(out, v[i].tenant);
        fprintf(out, "\",kind=\"%s\"} %llu\n", kind_label(v[i].kind), (unsigned long long)v[i].n);
    }
}

static void write_by_qos(FILE *out, const char *name, const char *help, const uint64_t v[3])
{
    metrics_family(out, name, "counter", help);
    for (int q = 0; q < 3; q++)
        fprintf(out, "%s{qos=\"%d\"} %llu\n", name, q, (unsigned long long)v[q]);
}

int broker_metrics_write(struct broker *b, FILE *out)
{
    struct broker_stats st;
    struct broker_count *v = NULL;
    size_t n = 0;
    GUARD(broker_client_counts(b, &v, &n, &st));
    write_connections(out, v, n);
    free(v);
    metrics_family(out, "certmq_sessions", "gauge", "sessions, connected or persistent offline");
    fprintf(out, "certmq_sessions %llu\n", (unsigned long long)st.sessions);
    metrics_family(out, "certmq_retained_messages", "gauge", "retained messages held");
    fprintf(out, "certmq_retained_messages %llu\n", (unsigned long long)st.retained);
    write_by_qos(out, "certmq_messages_in_total", "PUBLISH messages received (wills included)",
                 st.msgs_in_qos);
    write_by_qos(out, "certmq_bytes_in_total", "payload bytes received", st.bytes_in_qos);
    write_by_qos(out, "certmq_messages_out_total", "PUBLISH messages sent to clients",
                 st.msgs_out_qos);
    write_by_qos(out, "certmq_bytes_out_total", "payload bytes sent to clients", st.bytes_out_qos);
    metrics_family(out, "certmq_queue_drops_total", "counter",
                   "messages dropped: queue full, or QoS 0 for an offline session");
    fprintf(out, "certmq_queue_drops_total %llu\n", (unsigned long long)st.msgs_dropped);
    metrics_family(out, "certmq_messages_expired_total", "counter",
                   "messages not delivered because their Message Expiry Interval passed");
    fprintf(out, "certmq_messages_expired_total %llu\n", (unsigned long long)st.msgs_expired);
    metrics_family(out, "certmq_messages_too_large_total", "counter",
                   "messages not sent because they exceed the client's Maximum Packet Size");
    fprintf(out, "certmq_messages_too_large_total %llu\n", (unsigned long long)st.msgs_too_large);
    metrics_family(out, "certmq_authorization_denied_total", "counter",
                   "topic authorization refusals: PUBLISHes dropped, SUBSCRIBE filters refused, "
                   "deliveries withheld");
    fprintf(out,
            "certmq_authorization_denied_total{action=\"publish\"} %llu\n"
            "certmq_authorization_denied_total{action=\"subscribe\"} %llu\n"
            "certmq_authorization_denied_total{action=\"deliver\"} %llu\n",
            (unsigned long long)st.acl_denied_publish, (unsigned long long)st.acl_denied_subscribe,
            (unsigned long long)st.acl_denied_delivery);
    metrics_family(out, "certmq_broker_lock_waits_total", "counter",
                   "takings of a tenant space's broker lock that found it held by another thread");
    fprintf(out, "certmq_broker_lock_waits_total %llu\n", (unsigned long long)st.lock_waits);
    metrics_family(out, "certmq_broker_lock_wait_seconds_total", "counter",
                   "time threads waited for a tenant space's broker lock");
    fprintf(out, "certmq_broker_lock_wait_seconds_total %.9f\n", (double)st.lock_wait_ns / 1e9);
    return 0;
}
