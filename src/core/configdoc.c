/* The manual page and the example configuration (see configdoc.h). */
#include "core/configdoc.h"

#include <string.h>

#include "core/config.h"

/* Prints s with roff's special characters escaped. */
static void roff_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'') fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

static void man_head(FILE *out, const char *version)
{
    fprintf(out, ".TH CERTMQ 1 \"\" \"certmq %s\" \"User Commands\"\n", version);
    fputs(".nh\n", out); /* no hyphenation: option names and values stay whole */
    fputs(".SH NAME\n"
          "certmq \\- MQTT broker for devices that prove who they are with X.509 client "
          "certificates, and its PKI tool\n"
          ".SH SYNOPSIS\n"
          ".B certmq serve\n[\\fB\\-\\-config\\fR \\fIFILE\\fR]\n.br\n"
          ".B certmq pki\n\\fISUBCOMMAND\\fR ...\n.br\n"
          ".B certmq\n\\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR\n"
          ".SH DESCRIPTION\n"
          "\\fBcertmq serve\\fR runs a multi\\-tenant MQTT 3.1.1 broker over TLS 1.2/1.3 and "
          "its REST API. A device whose certificate chain ends in a CA certificate a tenant "
          "trusts is that tenant's device.\n"
          ".PP\n"
          "\\fBcertmq pki\\fR makes and checks CAs, device and server certificates, CRLs "
          "and truststores; \\fBcertmq pki \\-\\-help\\fR lists its subcommands.\n"
          ".SH OPTIONS\n"
          ".TP\n\\fB\\-\\-config\\fR \\fIFILE\\fR\n"
          "Reads the configuration from \\fIFILE\\fR. Without it, \\fBserve\\fR uses "
          "development defaults: data in ./var, a development CA in ./var/dev\\-ca, MQTT "
          "over TLS on 127.0.0.1:8883 and the REST API on 127.0.0.1:8080.\n"
          ".TP\n\\fB\\-\\-help\\-man\\fR\nPrints this page (roff).\n"
          ".TP\n\\fB\\-\\-example\\-config\\fR\n"
          "Prints an example configuration file with every option and its default.\n"
          ".SH CONFIGURATION FILE\n"
          "One \\fIoption value\\fR per line; \\fB#\\fR starts a comment. "
          "\\fBlistener\\fR \\fIPORT\\fR [\\fIADDR\\fR] starts a listener block: the "
          "listener options after it apply to that listener.\n",
          out);
}

static void man_option(FILE *out, const struct config_option_doc *d)
{
    fputs(".TP\n", out);
    if (d->is_listener)
        fputs(".BI listener \" PORT\" \" \\fR[\\fPADDR\\fR]\"\n", out);
    else
        fprintf(out, ".B %s\n", d->name);
    roff_text(out, d->help);
    fputs(".", out);
    if (d->range[0]) {
        fputs(" Values: ", out);
        roff_text(out, d->range);
        fputs(".", out);
    }
    if (d->def[0]) {
        fputs(" Default: \\fB", out);
        roff_text(out, d->def);
        fputs("\\fR.", out);
    }
    fputs("\n", out);
}

static void man_tail(FILE *out)
{
    fputs(".SH SIGNALS\n"
          ".TP\n.B SIGHUP\nReloads certificates, keys (with their password files) and CA "
          "files; on an error the old ones stay in use. Connections keep theirs.\n"
          ".TP\n.BR SIGINT \", \" SIGTERM\nStop cleanly.\n"
          ".SH FILES\n"
          ".TP\n.I DATA_DIR/certmq.db\nThe database (mode 0600).\n"
          ".TP\n.I DATA_DIR/admin\\-password\n"
          "The generated password of the management tenant's admin (mode 0600).\n"
          ".TP\n.I DATA_DIR/lock\n"
          "Held while a broker runs: a second one with the same data_dir refuses to start.\n"
          ".SH EXIT STATUS\n"
          "0 after a clean stop, 1 when the broker cannot start (data directory locked, "
          "port in use), 2 for a usage or configuration error.\n"
          ".SH SEE ALSO\n"
          ".BR mosquitto_pub (1),\n.BR mosquitto_sub (1),\n.BR openssl (1)\n",
          out);
}

void configdoc_print_man(FILE *out, const char *version)
{
    man_head(out, version);
    struct config_option_doc d;
    fputs(".SS Global options\n", out);
    for (size_t i = 0; config_option_doc(i, &d); i++)
        if (!d.per_listener && !d.is_listener) man_option(out, &d);
    fputs(".SS Listener blocks\n", out);
    for (size_t i = 0; config_option_doc(i, &d); i++)
        if (d.per_listener || d.is_listener) man_option(out, &d);
    man_tail(out);
}

/* The values the example sets (uncommented); every other option is shown
 * commented out with its default, or with an example path. */
static const struct {
    const char *name, *value;
} example_set[] = {
    {"data_dir", "/var/lib/certmq"},
    {"certfile", "/etc/certmq/server.pem"},
    {"keyfile", "/etc/certmq/server.key"},
};

static const char *example_value(const char *name)
{
    for (size_t i = 0; i < sizeof example_set / sizeof example_set[0]; i++)
        if (!strcmp(example_set[i].name, name)) return example_set[i].value;
    return NULL;
}

/* Prints text as "# " comment lines of at most 78 columns. */
static void comment_wrapped(FILE *out, const char *text)
{
    const size_t width = 76;
    while (*text) {
        size_t n = strlen(text);
        if (n > width) {
            n = width;
            while (n > 0 && text[n] != ' ') n--;
            if (n == 0) n = strcspn(text, " ");
        }
        fprintf(out, "# %.*s\n", (int)n, text);
        text += n;
        while (*text == ' ') text++;
    }
}

static void example_option(FILE *out, const struct config_option_doc *d)
{
    const char *set = example_value(d->name);
    char text[512];
    snprintf(text, sizeof text, "%s%s%s%s", d->help, d->range[0] ? " (" : "", d->range,
             d->range[0] ? ")" : "");
    fputs("\n", out);
    comment_wrapped(out, text);
    if (set)
        fprintf(out, "%s %s\n", d->name, set);
    else if (d->def[0])
        fprintf(out, "#%s %s\n", d->name, d->def);
    else
        fprintf(out, "#%s %s\n", d->name, d->is_path ? "/etc/certmq/FILE" : "VALUE");
}

void configdoc_print_example(FILE *out)
{
    struct config_option_doc d;
    fputs("# certmq.conf: read by `certmq serve --config FILE` (see certmq(1)).\n"
          "# Made by `certmq serve --example-config` from the option table the parser\n"
          "# uses: every option, with its default, commented out unless set here.\n"
          "# One `option value` per line; `#` starts a comment.\n",
          out);
    for (size_t i = 0; config_option_doc(i, &d); i++)
        if (!d.per_listener && !d.is_listener) example_option(out, &d);
    fputs("\n# ---- listeners: `listener PORT [ADDR]` starts a block (no ADDR: every\n"
          "# address); the options after it apply to that listener.\n"
          "\n# MQTT over TLS for devices on every address\n"
          "listener 8883\n",
          out);
    for (size_t i = 0; config_option_doc(i, &d); i++)
        if (d.per_listener) example_option(out, &d);
    fputs("\n# The REST API, in plain HTTP on loopback only; give it certfile and\n"
          "# keyfile (HTTPS) before opening it to the network.\n"
          "listener 8080 127.0.0.1\n"
          "protocol http\n",
          out);
}
