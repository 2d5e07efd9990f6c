/* Passwords of encrypted server keys, read from a file so that the broker
 * can start as a service with no terminal. The file must be a regular file
 * no one but its owner can read or write (0600 or stricter); the password
 * is never logged and is wiped from memory after use. */
#ifndef CERTMQ_NET_KEYPASS_H
#define CERTMQ_NET_KEYPASS_H

#include <stddef.h>

#include "core/err.h"

#define KEYPASS_MAX 1024

/* Reads the password (its first line, without the line end) from path into
 * pw (KEYPASS_MAX bytes, NUL-terminated). ERR_FORBIDDEN when the file's
 * mode is too open, ERR_INVALID when it is empty or too long, ERR_IO when it
 * cannot be read; err names the file and the reason, never the content.
 * The caller wipes pw with keypass_wipe when done. */
MUST_USE int keypass_read(const char *path, char pw[KEYPASS_MAX], char *err, size_t errlen);
/* The pure part: the password is data's first line (LF or CRLF ends it);
 * ERR_INVALID with *why (never quoting the content) when it is empty, holds
 * a NUL, or is longer than KEYPASS_MAX - 2 bytes. */
MUST_USE int keypass_parse(const char *data, size_t len, char pw[KEYPASS_MAX], const char **why);
/* Overwrites pw so that no copy of the password stays in memory. */
void keypass_wipe(char pw[KEYPASS_MAX]);

#endif
