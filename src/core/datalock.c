/* The data directory lock (see datalock.h). */
#include "core/datalock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int datalock_acquire(const char *dir, int *fd, char *err, size_t errlen)
{
    char path[1024];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path) {
        snprintf(err, errlen, "data_dir %s: path too long", dir);
        return ERR_INVALID;
    }
    int lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(lfd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen,
                     "another certmq is already running with data_dir %s (%s is locked)", dir,
                     path);
            return ERR_CONFLICT;
        }
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        return ERR_IO;
    }
    *fd = lfd;
    return 0;
}
