/* Key password files (see keypass.h). */
#include "net/keypass.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* Refuses a file others may read or write, or that is not a regular file. */
static int check_mode(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "keyfile_password_file %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "keyfile_password_file %s is not a regular file", path);
        return ERR_INVALID;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "keyfile_password_file %s has mode %04o: it must be 0600 or stricter "
                 "(chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        return ERR_FORBIDDEN;
    }
    return 0;
}

/* Length of the first line of the len bytes at p (without its line end). */
static size_t first_line(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] == '\n' || p[i] == '\r') return i;
    return len;
}

int keypass_parse(const char *data, size_t len, char pw[KEYPASS_MAX], const char **why)
{
    size_t n = first_line(data, len);
    pw[0] = 0;
    if (n > KEYPASS_MAX - 2) {
        *why = "the password is longer than 1022 bytes";
        return ERR_INVALID;
    }
    if (!n || memchr(data, 0, n)) {
        *why = "it holds no usable password on its first line";
        return ERR_INVALID;
    }
    memcpy(pw, data, n);
    pw[n] = 0;
    return 0;
}

int keypass_read(const char *path, char pw[KEYPASS_MAX], char *err, size_t errlen)
{
    char raw[KEYPASS_MAX];
    const char *why = "";
    size_t got = 0;
    int rc = 0;
    pw[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "keyfile_password_file %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    GUARD_GOTO(rc, check_mode(fd, path, err, errlen), out);
    for (ssize_t r = 1; r > 0 && got < sizeof raw; got += (size_t)r) {
        r = read(fd, raw + got, sizeof raw - got);
        if (r < 0) {
            snprintf(err, errlen, "keyfile_password_file %s: %s", path, strerror(errno));
            rc = ERR_IO;
            goto out;
        }
    }
    rc = keypass_parse(raw, got, pw, &why);
    if (rc < 0) snprintf(err, errlen, "keyfile_password_file %s: %s", path, why);
out:
    close(fd);
    keypass_wipe(raw);
    if (rc < 0) keypass_wipe(pw);
    return rc;
}

void keypass_wipe(char pw[KEYPASS_MAX])
{
    OPENSSL_cleanse(pw, KEYPASS_MAX);
}
