/* Documents made from the option table (config.h), so that they never
 * drift from what the parser accepts: the certmq(1) manual page in roff
 * (`certmq serve --help-man`) and an example certmq.conf with every option
 * and its default (`certmq serve --example-config`). */
#ifndef CERTMQ_CONFIGDOC_H
#define CERTMQ_CONFIGDOC_H

#include <stdio.h>

/* The manual page, for version. */
void configdoc_print_man(FILE *out, const char *version);
/* The example file: data in /var/lib/certmq, files in /etc/certmq, an MQTT
 * over TLS listener on 8883 and the REST API on 127.0.0.1:8080; every other
 * option commented out with its default. */
void configdoc_print_example(FILE *out);

#endif
