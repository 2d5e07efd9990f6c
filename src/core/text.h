/* Untrusted text: UTF-8 well-formedness, the "printable text" rule for
 * fields an operator will read back (names, IDs, CSV cells), and escaping
 * for logs and JSON so that no byte from a client can end a log line or
 * make a reply unencodable. Pure functions, fuzzed (fuzz/text.c). */
#ifndef CERTMQ_CORE_TEXT_H
#define CERTMQ_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. NUL bytes are allowed here (len is explicit). */
bool text_utf8_valid(const char *p, size_t len);

/* Valid UTF-8 without control characters: no U+0000-U+001F, U+007F or
 * U+0080-U+009F. What a stored name or ID must be. */
bool text_printable(const char *s);

/* Copies len bytes of in to out (cap bytes, NUL-terminated when cap > 0)
 * with control characters escaped as \n, \r, \t or \xNN (C1 controls as
 * \u0085 etc.) and each byte of an invalid UTF-8 sequence as \xNN. An
 * escape is never cut: output that does not fit is dropped whole. Returns
 * the length written (without the NUL). Backslashes are kept as they are. */
size_t text_escape(const char *in, size_t len, char *out, size_t cap);

/* Copies len bytes of a URL list ("scheme://user:secret@host,...") to
 * out (cap bytes, NUL-terminated, cut when it does not fit) with every
 * user-information part written "***": what may be logged of it. */
void text_url_redact(const char *in, size_t len, char *out, size_t cap);

/* text_escape() of a NUL-terminated string into a malloc'ed copy (NULL
 * when out of memory). */
char *text_escape_dup(const char *s);

#endif
