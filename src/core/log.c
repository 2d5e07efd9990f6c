/* Logging (see log.h): formats into a stack buffer and writes it at once, so
 * lines from different worker threads never interleave. The formatted text
 * is escaped (core/text.h) so that a ClientId or user name holding a newline
 * or terminal escape cannot forge or hide a line. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/text.h"

#include <openssl/err.h>

static enum log_level min_level = LOG_INFO;
static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level lv)
{
    min_level = lv;
}

int log_level_parse(const char *s)
{
    static const char *lower[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, lower[i])) return i;
    return -1;
}

void log_msg(enum log_level lv, const char *fmt, ...)
{
    if (lv < min_level) return;
    char msg[1024], line[4096];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof msg ? sizeof msg - 1 : (size_t)m;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[lv]);
    size_t len = (size_t)n + text_escape(msg, mlen, line + n, sizeof line - (size_t)n - 1);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_ssl_errors(enum log_level lv, const char *what)
{
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        log_msg(lv, "%s: %s", what, buf);
    }
}
