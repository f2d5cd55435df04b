/* The daemon's writes (tg_sqlite_write in tg_sqlite_int.h; the contract of
 * tg_store_writer_start in tg_store.h).
 *
 * SQLite has one writer at a time, and what a commit costs is mostly the pages it writes
 * to the WAL, not the rows in it. So the writes of the request path share one connection
 * and are committed in groups, by a thread of their own: a worker queues its write, wakes
 * the writer thread if it sleeps, and waits; the writer takes every write queued so far,
 * runs them one after another inside one transaction, commits them together, wakes each
 * of the group's workers, and takes what was queued meanwhile, without sleeping while
 * there is any. (The workers once took turns leading the groups; each group then waited
 * for its leader, a sleeping worker, to be scheduled, which on a busy machine left the
 * writer idle while writes queued.) The workers of a group sleep on one word, the number of
 * the last group done, and the writer wakes them all with one call once it has let go of
 * the queue's lock. (A semaphore per worker took a call and a wake-up each, and a woken
 * worker would often take the writer's core before the writer had posted the rest of its
 * group; signalled under the lock, as a condition variable must be here, a woken waiter
 * would first block on that lock, and be woken a second time.) A write that fails fails alone
 * (run_group says how); a commit that fails fails every write of its group. Nobody is
 * answered before the commit that holds their write.
 *
 * The writer connection's page cache is never invalidated by the others (they only read),
 * and WAL checkpoints run on a background thread instead of inside whichever commit
 * crossed the threshold. */
#include "tg_store.h"
#include "tg_sqlite_int.h"
#include "tg_bg.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>

#include <sqlite3.h>

#define WRITER_CACHE_KB 16384  /* the writer's page cache; readers keep SQLite's 2 MB */
/* WAL pages appended after which the checkpointer is woken to copy them back, without
 * holding anyone up. */
#define CHECKPOINT_PAGES 1200
/* WAL pages past which a checkpoint takes its second, locked pass, so that the WAL starts
 * again from its beginning. That pass holds the writer mutex through two fsyncs whatever
 * it copies (3.7 ms on average on these machines, 9 ms at worst), and every write queued
 * meanwhile waits. A submission appends about 20 pages, so at 1,900 submissions/s a pass
 * every 8,192 pages came five times a second and set the slowest submission in a hundred;
 * every 32,768 it comes about once a second, and the WAL file stays under 140 MB. Its size
 * costs the lookups little: a reader searches only the frames not yet copied back, and
 * the unlocked pass keeps those few. (No checkpoint at all, a WAL of a million pages none
 * of which was copied, made every write slower.) */
#define RESTART_PAGES 32768

/* ---- group commit ------------------------------------------------------------------------ */

struct write_req {
    tg_sqlite_write_fn fn;
    void *arg;
    struct tg_store *caller; /* gets the message of a failure */
    int64_t unconfirmed;     /* the caller's (tg_sqlite_generation_is), or -1 */
    int rc;
    int64_t queued_us;       /* when it was queued, for the wait metric */
    unsigned group;          /* the number of the group that takes it */
    struct write_req *next;
};

/* The queue, and the writer thread that empties it. */
static struct {
    pthread_mutex_t lock;
    struct write_req *head, **tail;
    int idle;             /* the writer sleeps on work: the next write posts it */
    int stop;             /* the writer is to stop once the queue is empty */
    unsigned taking;      /* the number of the group that takes what is queued now */
    /* The number of the last group done, one word for even groups and one for odd: a
     * group's workers sleep on its word, and the writes queued while it runs (the next
     * group's) on the other, so that waking one group wakes nobody else. */
    atomic_uint done[2];
    sem_t work;
    pthread_t thread;
    struct tg_store *w;   /* the shared writer; NULL: every handle writes for itself */
} grp = {.lock = PTHREAD_MUTEX_INITIALIZER, .tail = &grp.head, .done = {-2u, -1u}};

static int step_fixed(struct tg_store *w, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(w, id, &s);
    return rc == TG_OK ? tg_sqlite_run(w, s, what) : rc;
}

static void fail(struct write_req *r, int rc, const char *msg)
{
    r->rc = rc;
    snprintf(r->caller->err, sizeof(r->caller->err), "%s", msg);
}

/* Fails every write from first up to (not including) end that has not failed already. */
static void fail_range(struct write_req *first, struct write_req *end, int rc, const char *msg)
{
    for (struct write_req *r = first; r != end; r = r->next)
        if (r->rc == TG_OK)
            fail(r, rc, msg);
}

/* ---- whether writes work (/healthz) --------------------------------------------------- */

/* A failure of the database itself, as opposed to one write's own (a constraint, a value
 * too big): the next write would fail the same way. */
static int store_failure(int rc)
{
    return rc == TG_EDB || rc == TG_EBUSY;
}

static struct {
    pthread_mutex_t lock;
    int failed;
    char why[512]; /* as long as the writer's own message: nothing is cut */
} health = {PTHREAD_MUTEX_INITIALIZER, 0, ""};

static void note_health(int failed, const char *why)
{
    pthread_mutex_lock(&health.lock);
    if (failed && !health.failed)
        tg_log(TG_LOG_ERROR, "the database does not take writes: %s", why);
    else if (!failed && health.failed)
        tg_log(TG_LOG_INFO, "the database takes writes again");
    health.failed = failed;
    snprintf(health.why, sizeof(health.why), "%s", failed ? why : "");
    pthread_mutex_unlock(&health.lock);
}

int tg_sqlite_write_health(char *why, size_t whylen)
{
    pthread_mutex_lock(&health.lock);
    int failed = health.failed;
    if (failed && whylen > 0)
        snprintf(why, whylen, "%s", health.why);
    pthread_mutex_unlock(&health.lock);
    return failed ? TG_EDB : TG_OK;
}

/* Pages the writer's last commit appended to the WAL (set by wal_grew, under the writer
 * mutex), and the WAL's size after the commit before. */
static int wal_frames, wal_pages;

/* Fails every write of the group that has not failed already, after the transaction has
 * been lost or could not be undone: the writes run so far are gone, the rest not tried. */
static void lose_group(struct tg_store *w, struct write_req *group, int rc, const char *msg)
{
    tg_sqlite_counts_fold_drop(w);
    if (!sqlite3_get_autocommit(w->db))
        step_fixed(w, S_ROLLBACK, "roll back");
    fail_range(group, NULL, rc, msg);
    note_health(1, msg);
}

/* Runs one group in one transaction on the writer connection. Every request's rc is set.
 *
 * A write that fails having changed no row (a duplicate refused by a constraint, a
 * submission already settled) leaves nothing to undo: SQLite has taken back the statement
 * that failed, and the group goes on. A write that fails after some of its statements
 * changed rows takes the transaction back with it, and the group runs again without it: the
 * writes before it are run a second time, in a new transaction, and give the same result
 * (each sets what it answers from the database alone). That is rare: a run id recorded
 * twice, a call refused half-way. A savepoint per write would make it cheaper, but costs
 * every write a copy of each page it touches in the savepoint's journal (about 20 pages
 * per submission). */
static void run_group(struct tg_store *w, struct write_req *group)
{
    char msg[sizeof(w->err)] = "";
    tg_sqlite_writer_lock();
    int64_t now = tg_mono_us();
    unsigned long n = 0;
    for (struct write_req *r = group; r != NULL; r = r->next, n++)
        tg_metrics_db_wait(now - r->queued_us);
    int broke = 0; /* a write failed for the database's sake: msg says how */
    int rc;
again:
    wal_frames = 0;
    tg_sqlite_counts_fold_drop(w);
    rc = step_fixed(w, S_BEGIN, "begin");
    if (rc != TG_OK) {
        fail_range(group, NULL, rc, w->err);
        if (store_failure(rc))
            note_health(1, w->err);
        tg_sqlite_writer_unlock();
        return;
    }
    tg_sqlite_counts_fold_begin(w);
    for (struct write_req *r = group; r != NULL; r = r->next) {
        if (r->rc != TG_OK)
            continue; /* failed in a run of the group before this one */
        sqlite3_int64 changes = sqlite3_total_changes64(w->db);
        size_t counted = tg_sqlite_counts_fold_mark(w);
        rc = r->unconfirmed >= 0 ? tg_sqlite_generation_is(w, r->unconfirmed) : TG_OK;
        if (rc == TG_OK)
            rc = r->fn(w, r->arg);
        if (rc == TG_OK)
            continue;
        tg_sqlite_counts_fold_undo(w, counted); /* its counts go with it */
        snprintf(msg, sizeof(msg), "%s", w->err);
        fail(r, rc, msg);
        broke |= store_failure(rc);
        /* SQLite has rolled the whole transaction back itself (a full disk, an I/O
         * error): the group's earlier writes are gone, and the later ones are not tried. */
        if (sqlite3_get_autocommit(w->db)) {
            lose_group(w, group, rc, msg);
            tg_sqlite_writer_unlock();
            return;
        }
        if (sqlite3_total_changes64(w->db) == changes)
            continue;
        if (step_fixed(w, S_ROLLBACK, "roll back") != TG_OK) {
            lose_group(w, group, rc, msg);
            tg_sqlite_writer_unlock();
            return;
        }
        tg_metrics_db_redo();
        goto again;
    }
    rc = tg_sqlite_counts_fold_flush(w);
    if (rc == TG_OK)
        rc = step_fixed(w, S_COMMIT, "commit");
    if (rc != TG_OK) {
        snprintf(msg, sizeof(msg), "%s", w->err);
        if (!sqlite3_get_autocommit(w->db))
            step_fixed(w, S_ROLLBACK, "roll back");
        fail_range(group, NULL, rc, msg);
        broke |= store_failure(rc);
    }
    note_health(broke, msg);
    tg_metrics_db_tx(n, (unsigned long)wal_frames);
    tg_sqlite_writer_unlock();
}

/* Sleeps until the semaphore is posted. */
static void await(sem_t *sem)
{
    while (sem_wait(sem) != 0 && errno == EINTR)
        continue;
}

/* The writer thread: one group after another while writes are queued, asleep otherwise. */
static void *writer(void *unused)
{
    (void)unused;
    prctl(PR_SET_NAME, "tg-writer"); /* as top -H and /proc name it */
    /* Every submission waits for this thread twice, and at half of the daemon's maximum
     * the machine is busy enough that, woken, it waited longer for a core than it then
     * ran. A short slice lets it go first when it wakes without taking a larger share. */
    char why[128];
    if (tg_sched_wake_soon(why, sizeof(why)) != TG_OK)
        tg_log(TG_LOG_DEBUG, "the writer thread keeps the default slice: %s", why);
    for (;;) {
        pthread_mutex_lock(&grp.lock);
        while (grp.head == NULL && !grp.stop) {
            grp.idle = 1;
            pthread_mutex_unlock(&grp.lock);
            await(&grp.work);
            pthread_mutex_lock(&grp.lock);
        }
        struct write_req *group = grp.head;
        unsigned g = grp.taking;
        grp.head = NULL;
        grp.tail = &grp.head;
        if (group != NULL)
            grp.taking = g + 1;
        pthread_mutex_unlock(&grp.lock);
        if (group == NULL)
            return NULL; /* stopped, and nothing is queued */

        run_group(grp.w, group);

        /* Each worker returns (and takes its request off its stack) as soon as it sees
         * its group done: the group is not touched after this store. */
        atomic_store_explicit(&grp.done[g & 1], g, memory_order_release);
        tg_sched_word_wake_all(&grp.done[g & 1]);
    }
}

int tg_sqlite_write(struct tg_store *st, tg_sqlite_write_fn fn, void *arg)
{
    struct tg_store *w = grp.w;
    if (w == NULL || w == st) {
        int64_t unconfirmed = st->unconfirmed;
        int rc = tg_sqlite_tx_begin(st);
        if (rc == TG_OK && unconfirmed >= 0)
            rc = tg_sqlite_generation_is(st, unconfirmed);
        if (rc == TG_OK)
            rc = fn(st, arg);
        rc = tg_sqlite_tx_end(st, rc);
        if (rc == TG_OK)
            st->unconfirmed = -1;
        return rc;
    }
    struct write_req req = {.fn = fn, .arg = arg, .caller = st,
                            .unconfirmed = st->unconfirmed, .rc = TG_OK,
                            .queued_us = tg_mono_us()};
    pthread_mutex_lock(&grp.lock);
    *grp.tail = &req;
    grp.tail = &req.next;
    req.group = grp.taking;
    int wake = grp.idle;
    grp.idle = 0;
    pthread_mutex_unlock(&grp.lock);
    if (wake)
        sem_post(&grp.work);
    atomic_uint *word = &grp.done[req.group & 1];
    for (;;) { /* until the group that took it is done (the numbers wrap) */
        unsigned seen = atomic_load_explicit(word, memory_order_acquire);
        if ((int)(seen - req.group) >= 0)
            break;
        tg_sched_word_wait(word, seen);
    }
    if (req.rc == TG_OK)
        st->unconfirmed = -1; /* the commit held at the generation it was checked at */
    return req.rc;
}

/* The probe's write: nothing. Its transaction still takes the write lock. */
static int probe_w(struct tg_store *st, void *arg)
{
    (void)st;
    (void)arg;
    return TG_OK;
}

/* Room the probe asks for: a submission of a few dozen inputs and its records. */
#define PROBE_PAGES 16
#define PROBE_DISK_BYTES (1024L * 1024)

/* Whether a write of PROBE_PAGES pages would fit under db_max_pages and on the disk; the
 * detail in st's message. A write to the WAL does not allocate before it commits, so a full
 * disk is seen from its free space, not from a transaction. */
static int room_for_writes(struct tg_store *st)
{
    sqlite3 *db = st->db;
    const char *path = sqlite3_db_filename(db, "main");
    long long pages = -1, free_pages = -1, max = -1;
    const char *const pragmas[] = {"PRAGMA page_count", "PRAGMA freelist_count",
                                   "PRAGMA max_page_count"};
    long long *const out[] = {&pages, &free_pages, &max};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(db, pragmas[i], -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
            *out[i] = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    if (pages >= 0 && free_pages >= 0 && max > 0 && max - pages + free_pages < PROBE_PAGES) {
        tg_sqlite_set_err(st, "database or disk is full: %lld of db_max_pages %lld pages used",
                          pages - free_pages, max);
        return TG_EDB;
    }
    struct statvfs vfs;
    if (path != NULL && *path != '\0' && statvfs(path, &vfs) == 0 &&
        (unsigned long long)vfs.f_bavail * vfs.f_frsize < (unsigned long long)PROBE_DISK_BYTES) {
        tg_sqlite_set_err(st, "database or disk is full: less than 1 MiB free on its disk");
        return TG_EDB;
    }
    return TG_OK;
}

int tg_sqlite_write_probe(struct tg_store *st)
{
    int rc = tg_sqlite_write(st, probe_w, NULL);
    if (rc == TG_OK)
        rc = room_for_writes(st);
    if (store_failure(rc))
        note_health(1, st->err);
    return store_failure(rc) ? TG_EDB : rc;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static struct tg_bg ckpt = TG_BG_INIT;
static struct tg_store *ckpt_st; /* the checkpointer's own connection */
/* The WAL's size in pages when the checkpointer last copied it (so many copied), or 0
 * once a locked pass had it start again: written by the checkpointer, read by wal_grew. */
static atomic_int ckpt_copied;

/* Called by SQLite after each commit of the writer connection with the WAL's size. */
static int wal_grew(void *unused, sqlite3 *db, const char *name, int pages)
{
    (void)unused;
    (void)db;
    (void)name;
    wal_frames = pages >= wal_pages ? pages - wal_pages : pages; /* smaller: restarted */
    int copied = atomic_load(&ckpt_copied);
    if (pages < wal_pages || pages < copied) /* started again since it was copied */
        atomic_store(&ckpt_copied, copied = 0);
    wal_pages = pages;
    if (pages - copied >= CHECKPOINT_PAGES)
        tg_bg_poke(&ckpt);
    return SQLITE_OK;
}

/* PASSIVE: copies what no reader still needs back into the database without waiting for
 * anyone. The WAL is restarted from its beginning by the first write transaction that
 * finds all of it copied, which never happens while commits follow each other faster
 * than a checkpoint runs: so the bulk is copied while the writers go on, and once the WAL
 * is past RESTART_PAGES, what they appended meanwhile is copied again with the writer
 * mutex held, which is short. */
static void checkpoint(sqlite3 *db)
{
    int log = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    if (rc == SQLITE_OK)
        atomic_store(&ckpt_copied, copied);
    if (rc == SQLITE_OK && log >= RESTART_PAGES) {
        tg_sqlite_writer_lock_checkpoint();
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        tg_sqlite_writer_unlock();
    }
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
        tg_log(TG_LOG_WARN, "WAL checkpoint failed: %s", sqlite3_errmsg(db));
}

static void *checkpointer(void *unused)
{
    (void)unused;
    prctl(PR_SET_NAME, "tg-checkpoint");
    while (!tg_bg_wait(&ckpt, 0))
        checkpoint(ckpt_st->db);
    return NULL;
}

/* ---- starting and stopping ------------------------------------------------------------- */

static int configure_writer(struct tg_store *w)
{
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA cache_size = -%d; PRAGMA temp_store = MEMORY",
             WRITER_CACHE_KB);
    if (sqlite3_exec(w->db, pragma, NULL, NULL, NULL) != SQLITE_OK)
        return tg_sqlite_db_err(w, sqlite3_errcode(w->db), "configure the writer");
    /* Rolling back must never fail for want of a statement. */
    sqlite3_stmt *s;
    return tg_sqlite_prep(w, S_ROLLBACK, &s);
}

int tg_sqlite_writer_start(const char *path, int busy_ms, char *err, size_t errlen)
{
    struct tg_store *w = NULL, *c = NULL;
    /* Checkpoints are taken off every connection of this process once the checkpointer
     * runs; it must therefore be running before the handles that follow are opened. */
    int rc = tg_sqlite_open(&c, path, 0, busy_ms, err, errlen);
    if (rc == TG_OK) {
        ckpt_st = c;
        if (tg_bg_start(&ckpt, checkpointer, NULL) != TG_OK) {
            snprintf(err, errlen, "cannot start the checkpoint thread");
            tg_sqlite_close(c);
            ckpt_st = NULL;
            return TG_ERR;
        }
        tg_sqlite_set_checkpoints_elsewhere(1);
        rc = tg_sqlite_open(&w, path, TG_SQLITE_GATHER_WAL, busy_ms, err, errlen);
    }
    if (rc == TG_OK) {
        rc = configure_writer(w);
        if (rc != TG_OK)
            snprintf(err, errlen, "%s", w->err);
    }
    if (rc != TG_OK) {
        tg_sqlite_close(w);
        tg_sqlite_writer_stop();
        return rc;
    }
    sqlite3_wal_hook(w->db, wal_grew, NULL);
    grp.w = w;
    grp.stop = grp.idle = 0;
    rc = sem_init(&grp.work, 0, 0) == 0 ? TG_OK : TG_ERR;
    if (rc == TG_OK && pthread_create(&grp.thread, NULL, writer, NULL) != 0) {
        sem_destroy(&grp.work);
        rc = TG_ERR;
    }
    if (rc != TG_OK) {
        snprintf(err, errlen, "cannot start the writer thread");
        grp.w = NULL;
        tg_sqlite_close(w);
        tg_sqlite_writer_stop();
    }
    return rc;
}

/* After the workers have stopped: nobody writes any more. */
void tg_sqlite_writer_stop(void)
{
    if (grp.w != NULL) {
        pthread_mutex_lock(&grp.lock);
        grp.stop = 1;
        pthread_mutex_unlock(&grp.lock);
        sem_post(&grp.work);
        pthread_join(grp.thread, NULL);
        sem_destroy(&grp.work);
    }
    tg_bg_stop(&ckpt);
    tg_sqlite_set_checkpoints_elsewhere(0);
    tg_sqlite_close(ckpt_st);
    ckpt_st = NULL;
    tg_sqlite_close(grp.w);
    grp.w = NULL;
}
