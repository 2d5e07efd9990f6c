/* Process-wide counters for GET /metrics that the network and identity
 * threads bump without a lock (relaxed atomics): TLS handshakes with a
 * latency histogram, store operation latency and refusals by named reason; plus the writers of the
 * Prometheus text format these and the process's CPU and RSS are read by. */
#ifndef CERTMQ_CORE_METRICS_H
#define CERTMQ_CORE_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_REASONS 64 /* distinct refusal reasons counted (static texts) */

/* One finished TLS handshake: resumed or full, and how long it took. */
void metrics_tls_handshake(bool resumed, uint64_t micros);
/* One store operation (waiting for the database included). */
void metrics_store_op(uint64_t micros);
/* One refused connection attempt; reason is static text (its pointer is kept). */
void metrics_refusal(const char *reason);

/* Cross-node messaging (cluster/bridge.c): what a node counts. */
enum metrics_cluster {
    METRICS_CLUSTER_OUT,       /* messages published to the cluster */
    METRICS_CLUSTER_IN,        /* messages received from the cluster and routed */
    METRICS_CLUSTER_BAD,       /* received messages refused: envelope or subject malformed */
    METRICS_CLUSTER_LOST,      /* messages that could not be published to the cluster */
    METRICS_CLUSTER_DUPLICATE, /* received twice through overlapping filters, dropped */
    METRICS_CLUSTER_N,
};
void metrics_cluster(enum metrics_cluster what);

/* Writes the families this module owns (TLS handshakes, refusals, cluster messages, process
 * CPU seconds and resident memory) in the Prometheus text format. */
void metrics_write(FILE *out);

/* Helpers for other writers: "# HELP" and "# TYPE" lines, and a label
 * value with \\, \" and newlines escaped as the text format wants. */
void metrics_family(FILE *out, const char *name, const char *type, const char *help);
void metrics_label(FILE *out, const char *value);

#endif
