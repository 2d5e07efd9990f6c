/* One broker per data directory: an exclusive flock on DATA_DIR/lock, held
 * for the life of the process (the kernel drops it when the process exits,
 * so a crash never leaves a stale lock behind). */
#ifndef CERTMQ_DATALOCK_H
#define CERTMQ_DATALOCK_H

#include <stddef.h>

#include "core/err.h"

/* Takes the lock on dir/lock (created 0600 if absent) and stores its
 * descriptor in *fd; the caller keeps it open while it uses the directory.
 * ERR_CONFLICT when another process holds it, ERR_IO when the file cannot be
 * opened; err says which, naming the file. */
MUST_USE int datalock_acquire(const char *dir, int *fd, char *err, size_t errlen);

#endif
