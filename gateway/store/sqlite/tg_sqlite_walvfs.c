/* The writer connection's VFS: the default one, except that the frames a commit appends to
 * the WAL reach the file in one write instead of two per page (tg_sqlite_int.h).
 *
 * SQLite writes each WAL frame with two calls, its 24-byte header and then its page: a
 * commit of 15 pages made 30 pwrite(2) calls, and at 2,400 submissions/s a third of the
 * writer thread's time went to writing frames, most of it in those calls. Here a WAL file gathers the writes that append to it, in order, in memory, and
 * writes them out with one call as soon as the commit frame (the one whose header holds
 * the database's size) is complete. That is still inside SQLite's commit, before it makes
 * the new frames visible in the wal-index, so a reader never looks for a frame that is not
 * in the file: what is held is only ever frames nobody may read yet.
 *
 * Anything else the WAL is asked writes out what is held first: a read (the writer's own
 * read of a page spilled before its commit), a write that does not append (a frame
 * rewritten in place, the header of a WAL started again), a sync, a truncation, its size,
 * closing it. As a last guard, a memory barrier on the shared memory of the database, which
 * SQLite takes before it publishes a commit, writes out what the database's WAL holds. A
 * write that fails fails the call that made it (the commit frame's, or the one that asked),
 * and what was held is dropped: the transaction fails, and its frames are never read.
 *
 * Durability is unchanged: with synchronous=NORMAL a commit was in the page cache, not on
 * the disk, when it returned, and it still is. Every other file, and every other
 * connection, goes to the default VFS unchanged. */
#include "tg_sqlite_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define WAL_HEADER 32
#define FRAME_HEADER 24
/* What one WAL file may hold before it writes it out anyway: a commit larger than this is
 * written in pieces of this size (a 10,000-input submission is about 300 pages). */
#define GATHER_MAX (4 * 1024 * 1024)
/* The most written with one call: the unix VFS takes 17 bits of a length, and this is the
 * largest whole number of 4 KiB pages under it. */
#define WRITE_MAX (128 * 1024 - 4096)

struct wal_file {
    sqlite3_file base;         /* its pMethods are ours */
    sqlite3_file *real;        /* the default VFS's file, right after this struct */
    const char *name;          /* as SQLite gave it: lives as long as the file is open */
    int is_main;               /* a main database file, possibly the owner of a WAL */
    struct wal_file *wal;      /* a main database file's open WAL, or NULL */
    struct wal_file *owner;    /* a WAL's main database file, or NULL */
    struct wal_file *next_main; /* the list of open main database files */
    /* A WAL file's gathered writes, bytes [at, at + len) of the file. */
    unsigned char *buf;
    size_t len, cap;
    sqlite3_int64 at;
    sqlite3_int64 end;         /* where the last write ended: an append starts there; -1 */
    uint32_t page_size;        /* from the WAL's header; 0: unknown, nothing is gathered */
    sqlite3_int64 commit_end;  /* where a gathered commit frame ends, or 0 */
};

static sqlite3_vfs *base_vfs;
static sqlite3_vfs wal_vfs;
static pthread_mutex_t mains_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wal_file *mains;

static struct wal_file *of(sqlite3_file *f)
{
    return (struct wal_file *)f;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The page size a WAL header gives, or 0 for one that is not a WAL header. */
static uint32_t header_page_size(const unsigned char *h)
{
    uint32_t magic = get32(h), size = get32(h + 8);
    if ((magic & 0xfffffffe) != 0x377f0682)
        return 0;
    if (size == 1)
        size = 65536;
    return size >= 512 && size <= 65536 && (size & (size - 1)) == 0 ? size : 0;
}

/* Writes out what f holds. */
static int flush(struct wal_file *f)
{
    if (f->len == 0)
        return SQLITE_OK;
    int rc = SQLITE_OK;
    for (size_t done = 0; done < f->len && rc == SQLITE_OK; done += WRITE_MAX) {
        size_t n = f->len - done < WRITE_MAX ? f->len - done : WRITE_MAX;
        rc = f->real->pMethods->xWrite(f->real, f->buf + done, (int)n,
                                       f->at + (sqlite3_int64)done);
    }
    f->end = rc == SQLITE_OK ? f->at + (sqlite3_int64)f->len : -1;
    if (rc != SQLITE_OK || f->commit_end <= f->end)
        f->commit_end = 0;
    f->len = 0;
    return rc;
}

/* Whether a write of n bytes at off is a frame's header, and its frame ends a transaction. */
static int is_commit_header(const struct wal_file *f, const unsigned char *p, int n,
                            sqlite3_int64 off)
{
    sqlite3_int64 frame = FRAME_HEADER + (sqlite3_int64)f->page_size;
    return n >= FRAME_HEADER && off >= WAL_HEADER && (off - WAL_HEADER) % frame == 0 &&
           get32(p + 4) != 0;
}

/* Takes a write of n bytes at off into what f holds: SQLITE_OK, an error from writing out
 * what it held, or SQLITE_DONE for a write to be made as it comes, all held written out.
 * Only appends are held, starting from where the last write ended: a frame rewritten in
 * place (a page spilled before its commit and changed again, or a checksum recomputed
 * after it) goes to the file at once, after what was held. */
static int gather(struct wal_file *f, const unsigned char *p, int n, sqlite3_int64 off)
{
    if (f->len > 0 &&
        (off != f->at + (sqlite3_int64)f->len || f->len + (size_t)n > GATHER_MAX)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (f->len == 0 && off != f->end)
        return SQLITE_DONE;
    if (f->len + (size_t)n > f->cap) {
        size_t want = f->cap > 0 ? f->cap : 64 * 1024;
        while (want < f->len + (size_t)n)
            want *= 2;
        unsigned char *nb = realloc(f->buf, want);
        if (nb == NULL) {
            int rc = flush(f); /* no room to hold it: as it comes */
            return rc != SQLITE_OK ? rc : SQLITE_DONE;
        }
        f->buf = nb;
        f->cap = want;
    }
    if (f->len == 0)
        f->at = off;
    memcpy(f->buf + f->len, p, (size_t)n);
    f->len += (size_t)n;
    if (f->commit_end != 0 && f->at + (sqlite3_int64)f->len >= f->commit_end)
        return flush(f);
    return SQLITE_OK;
}

/* ---- the methods ------------------------------------------------------------------------- */

static int x_close(sqlite3_file *file)
{
    struct wal_file *f = of(file);
    int rc = flush(f);
    pthread_mutex_lock(&mains_lock);
    if (f->is_main) {
        for (struct wal_file **p = &mains; *p != NULL; p = &(*p)->next_main)
            if (*p == f) {
                *p = f->next_main;
                break;
            }
        if (f->wal != NULL)
            f->wal->owner = NULL;
    } else if (f->owner != NULL) {
        f->owner->wal = NULL;
    }
    pthread_mutex_unlock(&mains_lock);
    free(f->buf);
    int rc2 = f->real->pMethods != NULL ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
    struct wal_file *f = of(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, n, off);
}

static int x_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
    struct wal_file *f = of(file);
    int rc;
    if (f->page_size != 0 && off != 0) {
        if (is_commit_header(f, p, n, off))
            f->commit_end = off + FRAME_HEADER + f->page_size;
        rc = gather(f, p, n, off);
        if (rc != SQLITE_DONE)
            return rc;
    } else {
        rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    rc = f->real->pMethods->xWrite(f->real, p, n, off);
    f->end = rc == SQLITE_OK ? off + n : -1;
    if (rc != SQLITE_OK || f->commit_end <= f->end)
        f->commit_end = 0;
    if (!f->is_main && off == 0 && n >= WAL_HEADER && rc == SQLITE_OK)
        f->page_size = header_page_size(p);
    return rc;
}

static int x_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    struct wal_file *f = of(file);
    int rc = flush(f);
    f->end = -1;
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *file, int flags)
{
    struct wal_file *f = of(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    struct wal_file *f = of(file);
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *file, int lock)
{
    return of(file)->real->pMethods->xLock(of(file)->real, lock);
}

static int x_unlock(sqlite3_file *file, int lock)
{
    return of(file)->real->pMethods->xUnlock(of(file)->real, lock);
}

static int x_check_reserved(sqlite3_file *file, int *out)
{
    return of(file)->real->pMethods->xCheckReservedLock(of(file)->real, out);
}

static int x_file_control(sqlite3_file *file, int op, void *arg)
{
    return of(file)->real->pMethods->xFileControl(of(file)->real, op, arg);
}

static int x_sector_size(sqlite3_file *file)
{
    return of(file)->real->pMethods->xSectorSize(of(file)->real);
}

static int x_device_characteristics(sqlite3_file *file)
{
    return of(file)->real->pMethods->xDeviceCharacteristics(of(file)->real);
}

static int x_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **p)
{
    return of(file)->real->pMethods->xShmMap(of(file)->real, page, size, extend, p);
}

static int x_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return of(file)->real->pMethods->xShmLock(of(file)->real, offset, n, flags);
}

/* The last guard (see the top): nothing gathered outlives a barrier on the database's
 * shared memory. An error here cannot be returned, which is why the write of the commit
 * frame, whose error fails the commit, is what writes the frames out: this finds nothing
 * held unless SQLite writes its WAL otherwise than this file expects. */
static void x_shm_barrier(sqlite3_file *file)
{
    struct wal_file *f = of(file);
    if (f->wal != NULL && f->wal->len > 0)
        (void)flush(f->wal);
    f->real->pMethods->xShmBarrier(f->real);
}

static int x_shm_unmap(sqlite3_file *file, int delete_flag)
{
    return of(file)->real->pMethods->xShmUnmap(of(file)->real, delete_flag);
}

static int x_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **p)
{
    return of(file)->real->pMethods->xFetch(of(file)->real, off, n, p);
}

static int x_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    return of(file)->real->pMethods->xUnfetch(of(file)->real, off, p);
}

/* The methods, in the version of the default VFS's file (set at registration). */
static sqlite3_io_methods methods = {
    .xClose = x_close,
    .xRead = x_read,
    .xWrite = x_write,
    .xTruncate = x_truncate,
    .xSync = x_sync,
    .xFileSize = x_file_size,
    .xLock = x_lock,
    .xUnlock = x_unlock,
    .xCheckReservedLock = x_check_reserved,
    .xFileControl = x_file_control,
    .xSectorSize = x_sector_size,
    .xDeviceCharacteristics = x_device_characteristics,
    .xShmMap = x_shm_map,
    .xShmLock = x_shm_lock,
    .xShmBarrier = x_shm_barrier,
    .xShmUnmap = x_shm_unmap,
    .xFetch = x_fetch,
    .xUnfetch = x_unfetch,
};

/* Links an opened WAL to its database's open file, by name (the database's name and
 * "-wal"); mains_lock held. */
static void link_owner(struct wal_file *w)
{
    size_t n = strlen(w->name);
    for (struct wal_file *m = mains; m != NULL; m = m->next_main) {
        size_t k = strlen(m->name);
        if (k + 4 == n && memcmp(m->name, w->name, k) == 0 && strcmp(w->name + k, "-wal") == 0 &&
            m->wal == NULL) {
            m->wal = w;
            w->owner = m;
            return;
        }
    }
}

static int x_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
    (void)vfs;
    struct wal_file *f = of(file);
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    f->end = -1;
    int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out);
    if (rc != SQLITE_OK) {
        f->base.pMethods = NULL; /* SQLite calls no method of a file that did not open */
        return rc;
    }
    f->name = name;
    f->base.pMethods = &methods;
    if (name == NULL)
        return SQLITE_OK;
    if (flags & SQLITE_OPEN_MAIN_DB) {
        f->is_main = 1;
        pthread_mutex_lock(&mains_lock);
        f->next_main = mains;
        mains = f;
        pthread_mutex_unlock(&mains_lock);
    } else if (flags & SQLITE_OPEN_WAL) {
        /* An existing WAL goes on from its header's page size; a new one gives it when its
         * header is written. */
        unsigned char h[WAL_HEADER];
        sqlite3_int64 size = 0;
        if (f->real->pMethods->xFileSize(f->real, &size) == SQLITE_OK && size >= WAL_HEADER &&
            f->real->pMethods->xRead(f->real, h, WAL_HEADER, 0) == SQLITE_OK)
            f->page_size = header_page_size(h);
        pthread_mutex_lock(&mains_lock);
        link_owner(f);
        pthread_mutex_unlock(&mains_lock);
    }
    return SQLITE_OK;
}

/* The rest of the VFS is the default one's. */
static int x_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return base_vfs->xDelete(base_vfs, name, sync_dir);
}

static int x_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return base_vfs->xAccess(base_vfs, name, flags, out);
}

static int x_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return base_vfs->xFullPathname(base_vfs, name, n, out);
}

static void *x_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return base_vfs->xDlOpen(base_vfs, name);
}

static void x_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    base_vfs->xDlError(base_vfs, n, out);
}

static void (*x_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return base_vfs->xDlSym(base_vfs, h, sym);
}

static void x_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    base_vfs->xDlClose(base_vfs, h);
}

static int x_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return base_vfs->xRandomness(base_vfs, n, out);
}

static int x_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return base_vfs->xSleep(base_vfs, us);
}

static int x_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return base_vfs->xCurrentTime(base_vfs, out);
}

static int x_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return base_vfs->xGetLastError != NULL ? base_vfs->xGetLastError(base_vfs, n, out) : 0;
}

static int x_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return base_vfs->xCurrentTimeInt64(base_vfs, out);
}

static pthread_once_t registered = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void register_vfs(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    /* The default VFS's files must have what this one forwards: shared memory (WAL needs
     * it) and the current time in integers. */
    if (base_vfs == NULL || base_vfs->iVersion < 2 || base_vfs->xCurrentTimeInt64 == NULL)
        return;
    wal_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wal_file) + base_vfs->szOsFile,
        .mxPathname = base_vfs->mxPathname,
        .zName = TG_SQLITE_WAL_VFS,
        .xOpen = x_open,
        .xDelete = x_delete,
        .xAccess = x_access,
        .xFullPathname = x_full_pathname,
        .xDlOpen = x_dlopen,
        .xDlError = x_dlerror,
        .xDlSym = x_dlsym,
        .xDlClose = x_dlclose,
        .xRandomness = x_randomness,
        .xSleep = x_sleep,
        .xCurrentTime = x_current_time,
        .xGetLastError = x_last_error,
        .xCurrentTimeInt64 = x_current_time64,
    };
    methods.iVersion = 3;
    register_rc = sqlite3_vfs_register(&wal_vfs, 0);
}

const char *tg_sqlite_wal_vfs(void)
{
    pthread_once(&registered, register_vfs);
    return register_rc == SQLITE_OK ? TG_SQLITE_WAL_VFS : NULL;
}
