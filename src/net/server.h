/* The network layer: MQTT listeners, one worker thread per core, each with
 * its own epoll loop and its own SO_REUSEPORT socket per listener, so TLS
 * handshakes and packet work spread over every core. A connection belongs
 * to the worker that accepted it for its whole life. */
#ifndef CERTMQ_NET_SERVER_H
#define CERTMQ_NET_SERVER_H

#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

struct broker;
struct client;
struct server;
struct pwcheck;

/* Fails (ERR_IO, err naming the listener) when another process listens on
 * one of cfg's ports, MQTT or HTTP, with SO_REUSEPORT or not: the workers'
 * SO_REUSEPORT sockets would otherwise join it and share its traffic. */
MUST_USE int server_probe_ports(const struct config *cfg, char *err, size_t n);
/* Binds every MQTT listener and loads its TLS context. On failure writes
 * a readable reason into err. */
MUST_USE int server_new(const struct config *cfg, struct broker *b, struct server **out, char *err,
                        size_t n);
/* Password logins are checked on pw's pool, not on the workers (call
 * before server_start; pw must outlive the server). */
void server_set_pwcheck(struct server *s, struct pwcheck *pw);
/* Work another thread hands to the workers (messages from other nodes):
 * after server_post_work, the first worker calls fn(arg) soon, once for
 * any number of posts before it runs. Set before server_start. */
void server_set_work(struct server *s, void (*fn)(void *arg), void *arg);
/* Any thread, while the server runs. */
void server_post_work(struct server *s);
/* Starts the worker threads. */
MUST_USE int server_start(struct server *s);
/* Reloads certificates, keys, CA and CRL files of every TLS listener; new
 * connections use them. Existing ones are untouched, except static-space
 * clients whose certificate a reloaded crlfile now revokes: they are dropped. */
MUST_USE int server_reload_tls(struct server *s, char *err, size_t n);
/* Stops the workers, closes every connection and frees the server. */
void server_stop(struct server *s);
/* The wake callback for struct broker_config. */
void server_wake(struct client *c);
/* Worker threads that will run (resolved from the config and CPU mask). */
int server_worker_count(const struct config *cfg);

#endif
