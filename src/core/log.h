/* Logging to stderr: one line per event, level and UTC timestamp first.
 * Thread-safe (one write(2) per line). Secrets are never passed here. */
#ifndef CERTMQ_LOG_H
#define CERTMQ_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level lv);
/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Logs the OpenSSL error queue (then clears it) with a prefix. */
void log_ssl_errors(enum log_level lv, const char *what);

#endif
