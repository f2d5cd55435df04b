/* The SQLite backend's claim (tg_store_claim in tg_store.h): one daemon per database file.
 * An exclusive flock on "<database>.lock", taken before the database or the socket is
 * touched and held (the descriptor stays open) until the daemon ends, so that a second
 * daemon neither marks the first one's submissions unknown nor takes its socket. The file
 * names the daemon holding it (pid, start, socket, id): whose the pending submissions of
 * this database are. The command line takes no claim. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "tg_core.h"
#include "tg_log.h"
#include "tg_sqlite_int.h"

struct tg_store_claim {
    int fd;
};

/* The lock file, opened and locked: its descriptor, or -1 with the reason in err. */
static int lock_file(const char *database, const struct tg_daemon_info *me, const char *id,
                     char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s.lock", database) >= (int)sizeof(path)) {
        snprintf(err, errlen, "the database path is too long for its lock file");
        return -1;
    }
    int writable = 1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EACCES) { /* made by root for a daemon now started as its user */
        writable = 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        char holder[200] = "";
        ssize_t n = busy ? pread(fd, holder, sizeof(holder) - 1, 0) : -1;
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        if (busy)
            snprintf(err, errlen, "another taskgate daemon (%s) serves the database %s: one "
                     "daemon per database; stop it first (the lock is %s)",
                     holder[0] != '\0' ? holder : "unknown", database, path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* Taken as root for a daemon that becomes `user`: the file is that user's, as the
     * database is, so that it can be started as that user directly later. */
    struct passwd pw, *found = NULL;
    char pwbuf[4096];
    if (geteuid() == 0 && me->user != NULL && me->user[0] != '\0' &&
        getpwnam_r(me->user, &pw, pwbuf, sizeof(pwbuf), &found) == 0 && found != NULL &&
        fchown(fd, pw.pw_uid, pw.pw_gid) != 0)
        tg_log(TG_LOG_WARN, "cannot give the lock file %s to user %s: %s", path, me->user,
               strerror(errno));
    if (writable) {
        char started[TG_TIME_LEN], line[700];
        tg_time_format(tg_now_ms(), started);
        int len = snprintf(line, sizeof(line), "pid %ld, started %s, listening on %s, %s\n",
                           (long)getpid(), started, me->listen != NULL ? me->listen : "?", id);
        if (len > 0 && (size_t)len >= sizeof(line))
            len = (int)sizeof(line) - 1;
        if (ftruncate(fd, 0) != 0 || (len > 0 && pwrite(fd, line, (size_t)len, 0) != len))
            tg_log(TG_LOG_WARN, "cannot write the lock file %s: %s", path, strerror(errno));
    }
    return fd;
}

struct tg_store_claim *tg_sqlite_claim(const char *database, const struct tg_daemon_info *me,
                                       const char *id, int busy_ms, char *err, size_t errlen)
{
    (void)busy_ms;
    struct tg_store_claim *c = malloc(sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = lock_file(database, me, id, err, errlen);
    if (c->fd < 0) {
        free(c);
        return NULL;
    }
    return c;
}

void tg_sqlite_claim_release(struct tg_store_claim *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c);
}
