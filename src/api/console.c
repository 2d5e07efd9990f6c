/* The web console's static files: "/" is index.html and "/console/<name>"
 * a file of the console directory (letters, digits, '-', '_' and '.' only,
 * no leading dot, no subdirectories), read on each request. The console
 * itself calls the documented REST API with the Basic credentials it keeps
 * in memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/handlers.h"

#define CONSOLE_MAX_FILE (4u * 1024u * 1024u)

#ifndef CERTMQ_SOURCE_WEB
#define CERTMQ_SOURCE_WEB ""
#endif
#ifndef CERTMQ_INSTALL_WEB
#define CERTMQ_INSTALL_WEB "/usr/local/share/certmq/web"
#endif

void api_console_default_dir(char *out, size_t cap)
{
    char probe[600];
    struct stat st;
    snprintf(probe, sizeof probe, "%s/index.html", CERTMQ_SOURCE_WEB);
    if (CERTMQ_SOURCE_WEB[0] && stat(probe, &st) == 0)
        snprintf(out, cap, "%s", CERTMQ_SOURCE_WEB);
    else
        snprintf(out, cap, "%s", CERTMQ_INSTALL_WEB);
}

static bool safe_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".png", "image/png"},
        {".svg", "image/svg+xml"},
        {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

/* The whole file, at most CONSOLE_MAX_FILE bytes; NULL when unreadable. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *data = NULL;
    if (!f) return NULL;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 &&
        (size_t)st.st_size <= CONSOLE_MAX_FILE) {
        data = malloc((size_t)st.st_size + 1);
        if (data && fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(data);
            data = NULL;
        }
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return data;
}

bool api_console_serve(struct api_req *r)
{
    const char *name;
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) return false;
    if (r->nseg == 0)
        name = "index.html";
    else if (r->nseg == 2 && !strcmp(r->seg[0], "console") && safe_name(r->seg[1]))
        name = r->seg[1];
    else
        return false;
    char path[700];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", r->api->console_dir, name);
    char *data = slurp(path, &len);
    if (!data) {
        ignore_result(api_reply_error(r, 404, "No such console file (see console_dir)"));
        return true;
    }
    ignore_result(api_reply_raw(r, 200, content_type(name), data, len));
    return true;
}
