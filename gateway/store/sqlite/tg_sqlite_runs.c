/* Recording runs (tg_sqlite_runs_add in tg_sqlite_int.h): the bucket a call's runs go to,
 * the check that no run id is recorded twice, and the rows (sql/sqlite/012_scale.sql says
 * why runs are laid out this way).
 *
 * The unique index runs_id (bucket, run_id) refuses an id twice within a bucket. Against
 * the older buckets, which never take a run again, each has a Bloom filter of its ids
 * (run_buckets.filter), built once when it is first needed; the handle keeps them
 * bit-sliced, so that an id is tested against every bucket with a few memory reads. An id
 * that no filter may hold is new, and only the few that one says "maybe" to are looked up
 * in that bucket's index. So the check writes nothing to the old buckets' pages, and costs
 * the same at a million runs as at ten thousand. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tg_sqlite_int.h"

/* Runs per bucket before the next is opened (a call's runs all go to one bucket, so a
 * bucket may hold a call more). Small enough for the pages of one bucket's part of
 * runs_id to stay in the writer's cache, large enough for few filters per check. */
#define BUCKET_RUNS 16384
/* The filter of a bucket: a Bloom filter of 16 bits per run for a full bucket and one more
 * call, in 512-bit blocks, an id setting 7 bits of one block: about one "maybe" in a
 * thousand for an id the bucket does not hold. Every filter has the same size, so that the
 * handle can keep them bit-sliced (struct tg_sqlite_filters). */
#define BLOCK_BITS 512
#define FILTER_BLOCKS ((BUCKET_RUNS + 1024) * 16 / BLOCK_BITS)
#define FILTER_BITS (FILTER_BLOCKS * BLOCK_BITS)
#define FILTER_BYTES (FILTER_BITS / 8)
#define PROBES 7

static const char *const runs_sql[S_COUNT] = {
    [U_NEWEST] = "SELECT bucket, runs FROM run_buckets ORDER BY bucket DESC LIMIT 1",
    [U_OPEN] = "INSERT INTO run_buckets (bucket, runs) VALUES (?1, 0)",
    [U_CLOSED] = "SELECT bucket, runs FROM run_buckets WHERE bucket < ?1 ORDER BY bucket",
    [U_FILTER_GET] = "SELECT filter FROM run_buckets WHERE bucket = ?1",
    [U_FILTER_SET] = "UPDATE run_buckets SET filter = ?2 WHERE bucket = ?1",
    [U_IDS] = "SELECT run_id FROM runs WHERE bucket = ?1",
    [U_PROBE] = "SELECT 1 FROM runs WHERE bucket = ?1 AND run_id = ?2",
    [U_INSERT] =
        "INSERT INTO runs (run_id, submission_id, call_seq, input_index, processor, bucket)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [U_COUNT] = "UPDATE run_buckets SET runs = runs + ?2 WHERE bucket = ?1",
};

/* filters_ready's answer when there is no older bucket to hold a filter (not an error). */
#define TG_NOFILTERS 1

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, runs_sql[id], out);
}

/* ---- the filters --------------------------------------------------------------------- */

/* A run id's 64-bit hash: FNV-1a over its bytes, then a mix so that ids differing only in
 * their last characters still land in different blocks and bits. */
static uint64_t id_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* The bits an id sets in a filter: PROBES bit positions, all in one block. */
static void positions(uint64_t h, unsigned pos[PROBES])
{
    unsigned block = (unsigned)(((h >> 32) * (uint64_t)FILTER_BLOCKS) >> 32);
    uint64_t g = h * 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < PROBES; i++, g >>= 9)
        pos[i] = block * BLOCK_BITS + (unsigned)(g & (BLOCK_BITS - 1));
}

/* The closed buckets' filters as the handle keeps them: bit-sliced, so that one id is
 * tested against every bucket at once. For each of the FILTER_BITS positions a slice of
 * `words` words holds one bit per bucket (bit k of word w: bucket base + 64w + k), set when
 * that bucket's filter has the position set; an id's candidate buckets are the AND of its
 * PROBES slices. runs[b - base] is the count of runs bucket b held when its column was
 * built (a closed bucket's count never changes, so the column stays true), -1 for none. */
struct tg_sqlite_filters {
    int64_t base;
    size_t words;
    uint64_t *slices;   /* FILTER_BITS * words */
    int64_t *runs;      /* words * 64 */
};

void tg_sqlite_runs_forget(struct tg_store *st)
{
    if (st->filters != NULL) {
        free(st->filters->slices);
        free(st->filters->runs);
        free(st->filters);
        st->filters = NULL;
    }
}

/* Room in the columns for bucket (the first one seen sets base); TG_ENOMEM. */
static int room_for(struct tg_store *st, int64_t bucket)
{
    struct tg_sqlite_filters *f = st->filters;
    if (f == NULL) {
        f = calloc(1, sizeof(*f));
        if (f == NULL)
            return TG_ENOMEM;
        f->base = bucket;
        st->filters = f;
    }
    if (bucket < f->base)
        return TG_EINVAL; /* older than every bucket seen: the caller starts over */
    size_t need = (size_t)((bucket - f->base) / 64) + 1;
    if (need <= f->words)
        return TG_OK;
    uint64_t *slices = calloc((size_t)FILTER_BITS * need, sizeof(uint64_t));
    int64_t *runs = malloc(need * 64 * sizeof(int64_t));
    if (slices == NULL || runs == NULL) {
        free(slices);
        free(runs);
        return TG_ENOMEM;
    }
    for (size_t p = 0; p < (size_t)FILTER_BITS && f->words > 0; p++)
        memcpy(slices + p * need, f->slices + p * f->words, f->words * sizeof(uint64_t));
    for (size_t i = 0; i < need * 64; i++)
        runs[i] = i < f->words * 64 ? f->runs[i] : -1;
    free(f->slices);
    free(f->runs);
    f->slices = slices;
    f->runs = runs;
    f->words = need;
    return TG_OK;
}

/* Clears bucket's column (then marked as holding no filter). */
static void column_clear(struct tg_sqlite_filters *f, int64_t bucket)
{
    size_t w = (size_t)(bucket - f->base) / 64;
    uint64_t m = (uint64_t)1 << ((bucket - f->base) % 64);
    for (size_t p = 0; p < (size_t)FILTER_BITS; p++)
        f->slices[p * f->words + w] &= ~m;
    f->runs[bucket - f->base] = -1;
}

/* Sets a clear column from a filter's bytes (FILTER_BYTES of them), visiting the set bits
 * only (about a third). */
static void column_fill(struct tg_sqlite_filters *f, int64_t bucket, const unsigned char *bits)
{
    size_t w = (size_t)(bucket - f->base) / 64;
    uint64_t m = (uint64_t)1 << ((bucket - f->base) % 64);
    for (size_t i = 0; i < (size_t)FILTER_BYTES; i++)
        for (unsigned b = bits[i]; b != 0; b &= b - 1)
            f->slices[(i * 8 + (size_t)__builtin_ctz(b)) * f->words + w] |= m;
}

/* Builds bucket's filter from its ids in runs_id and stores it in run_buckets. */
static int filter_build(struct tg_store *st, int64_t bucket, unsigned char *bits)
{
    memset(bits, 0, FILTER_BYTES);
    sqlite3_stmt *s;
    int rc = stmt(st, U_IDS, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, bucket);
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        unsigned pos[PROBES];
        positions(id_hash(tg_sqlite_col_text(s, 0)), pos);
        for (int i = 0; i < PROBES; i++)
            bits[pos[i] >> 3] |= (unsigned char)(1u << (pos[i] & 7));
    }
    rc = src == SQLITE_DONE ? TG_OK : tg_sqlite_db_err(st, src, "read a bucket's run ids");
    tg_sqlite_done(s);
    if (rc == TG_OK)
        rc = stmt(st, U_FILTER_SET, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, bucket);
    sqlite3_bind_blob(s, 2, bits, FILTER_BYTES, SQLITE_STATIC);
    return tg_sqlite_run(st, s, "store a bucket's run filter");
}

/* Reads bucket's stored filter into bits: TG_OK, or TG_ENOTFOUND when it has none (yet),
 * or one of another size (another build's: it is built again). */
static int filter_load(struct tg_store *st, int64_t bucket, unsigned char *bits)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_FILTER_GET, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, bucket);
    rc = tg_sqlite_one(st, s, "read a bucket's run filter");
    if (rc == TG_OK) {
        const void *blob = sqlite3_column_blob(s, 0);
        if (blob != NULL && sqlite3_column_bytes(s, 0) == FILTER_BYTES)
            memcpy(bits, blob, FILTER_BYTES);
        else
            rc = TG_ENOTFOUND;
    }
    tg_sqlite_done(s);
    return rc;
}

/* Makes bucket's column hold its filter, for `runs` runs: kept, stored or built. */
static int column_for(struct tg_store *st, int64_t bucket, int64_t runs, unsigned char *bits)
{
    int rc = room_for(st, bucket);
    if (rc == TG_EINVAL) {
        tg_sqlite_runs_forget(st);
        rc = room_for(st, bucket);
    }
    if (rc != TG_OK)
        return rc;
    struct tg_sqlite_filters *f = st->filters;
    int64_t *known = &f->runs[bucket - f->base];
    if (*known == runs)
        return TG_OK;
    if (*known >= 0)
        column_clear(f, bucket);
    rc = filter_load(st, bucket, bits);
    if (rc == TG_ENOTFOUND)
        rc = filter_build(st, bucket, bits);
    if (rc != TG_OK)
        return rc;
    column_fill(f, bucket, bits);
    *known = runs;
    return TG_OK;
}

/* ---- buckets ------------------------------------------------------------------------- */

/* The bucket new runs go to: the newest, or the next one once the newest is full. */
static int newest_bucket(struct tg_store *st, int64_t *bucket)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_NEWEST, &s);
    if (rc != TG_OK)
        return rc;
    rc = tg_sqlite_one(st, s, "read the newest bucket of runs");
    int64_t b = 0, runs = 0;
    int open = rc == TG_ENOTFOUND;
    if (rc == TG_OK) {
        b = sqlite3_column_int64(s, 0);
        runs = sqlite3_column_int64(s, 1);
        open = runs >= BUCKET_RUNS;
        b += open;
    }
    tg_sqlite_done(s);
    if (rc != TG_OK && rc != TG_ENOTFOUND)
        return rc;
    *bucket = b;
    if (!open)
        return TG_OK;
    rc = stmt(st, U_OPEN, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, b);
    return tg_sqlite_run(st, s, "open a bucket of runs");
}

struct closed {
    int64_t bucket, runs;
};

static int closed_row(void *arg, sqlite3_stmt *s)
{
    struct tg_buf *b = arg;
    struct closed c = {sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)};
    return tg_buf_add(b, (const char *)&c, sizeof(c));
}

/* Whether bucket holds run id (its index). */
static int probe(struct tg_store *st, int64_t bucket, const char *id)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_PROBE, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, bucket);
    tg_sqlite_bind_text(s, 2, id);
    rc = tg_sqlite_one(st, s, "look for a run id");
    tg_sqlite_done(s);
    return rc;
}

/* The closed bucket that holds id, into *bucket: only those whose filters say "maybe" are
 * asked, newest first. TG_OK, TG_ENOTFOUND, or the store's error. */
static int find_closed(struct tg_store *st, const char *id, int64_t *bucket)
{
    const struct tg_sqlite_filters *f = st->filters;
    unsigned pos[PROBES];
    positions(id_hash(id), pos);
    for (size_t w = f->words; w-- > 0;) {
        uint64_t maybe = ~(uint64_t)0;
        for (int i = 0; i < PROBES && maybe != 0; i++)
            maybe &= f->slices[(size_t)pos[i] * f->words + w];
        for (int k = 63; maybe != 0 && k >= 0; k--) {
            if (((maybe >> k) & 1) == 0 || f->runs[w * 64 + (size_t)k] < 0)
                continue;
            int64_t b = f->base + (int64_t)(w * 64 + (size_t)k);
            int rc = probe(st, b, id);
            if (rc != TG_ENOTFOUND) {
                *bucket = b;
                return rc;
            }
        }
    }
    return TG_ENOTFOUND;
}

/* TG_OK when no closed bucket holds id. */
static int check_one(struct tg_store *st, const char *id)
{
    int64_t b;
    int rc = find_closed(st, id, &b);
    if (rc == TG_OK) {
        tg_sqlite_set_err(st, "run %.100s is already recorded", id);
        return TG_EEXIST;
    }
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

/* Makes the handle's columns hold the filter of every bucket older than newest, and only
 * theirs: TG_OK, or TG_ENOMEM or the store's error. */
static int filters_ready(struct tg_store *st, int64_t newest)
{
    struct tg_buf rows;
    tg_buf_init(&rows, (size_t)64 << 20);
    unsigned char *bits = NULL;
    sqlite3_stmt *s;
    int rc = stmt(st, U_CLOSED, &s);
    if (rc != TG_OK)
        goto out;
    sqlite3_bind_int64(s, 1, newest);
    rc = tg_sqlite_each(st, s, "read the buckets of runs", closed_row, &rows);
    const struct closed *c = (const struct closed *)(const void *)rows.data;
    size_t nc = rows.len / sizeof(*c);
    if (rc == TG_OK && nc == 0)
        rc = TG_NOFILTERS;
    if (rc != TG_OK)
        goto out;
    if ((bits = malloc(FILTER_BYTES)) == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    /* A prune emptied the oldest buckets: start the columns again at the oldest left. */
    if (st->filters != NULL && c[0].bucket >= st->filters->base + 64)
        tg_sqlite_runs_forget(st);
    for (size_t k = 0; k < nc && rc == TG_OK; k++)
        rc = column_for(st, c[k].bucket, c[k].runs, bits);
    /* A bucket the columns knew that is no longer there (a prune emptied it) is cleared. */
    struct tg_sqlite_filters *f = st->filters;
    for (size_t i = 0, k = 0; rc == TG_OK && i < f->words * 64; i++) {
        int64_t b = f->base + (int64_t)i;
        while (k < nc && c[k].bucket < b)
            k++;
        if (f->runs[i] >= 0 && (k == nc || c[k].bucket != b))
            column_clear(f, b);
    }
out:
    if (rc == TG_ENOMEM)
        tg_sqlite_set_err(st, "out of memory reading the filters of run ids");
    free(bits);
    tg_buf_free(&rows);
    return rc;
}

/* TG_OK when no bucket older than newest holds any of the ids; TG_EEXIST naming the first
 * one that does. */
static int check_older(struct tg_store *st, int64_t newest, size_t n, const char *const *ids)
{
    int rc = filters_ready(st, newest);
    if (rc == TG_NOFILTERS) /* no older bucket */
        return TG_OK;
    for (size_t i = 0; i < n && rc == TG_OK; i++)
        rc = check_one(st, ids[i]);
    return rc;
}

int tg_sqlite_runs_bucket(struct tg_store *st, const char *id, int64_t *bucket)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_NEWEST, &s);
    if (rc != TG_OK)
        return rc;
    rc = tg_sqlite_one(st, s, "read the newest bucket of runs");
    int64_t newest = rc == TG_OK ? sqlite3_column_int64(s, 0) : 0;
    tg_sqlite_done(s);
    if (rc != TG_OK) /* TG_ENOTFOUND: no run recorded yet */
        return rc;
    /* Runs change status soon after they are recorded: the newest bucket first. */
    if ((rc = probe(st, newest, id)) != TG_ENOTFOUND) {
        *bucket = newest;
        return rc;
    }
    rc = filters_ready(st, newest);
    if (rc == TG_NOFILTERS)
        return TG_ENOTFOUND;
    return rc != TG_OK ? rc : find_closed(st, id, bucket);
}

/* ---- the rows ------------------------------------------------------------------------ */

static int insert_rows(struct tg_store *st, int64_t bucket, const char *sub_id, int seq,
                       int first_input, size_t n, const char *const *ids,
                       const char *const *procs)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_INSERT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 2, sub_id);
    sqlite3_bind_int(s, 3, seq);
    sqlite3_bind_int64(s, 6, bucket);
    for (size_t i = 0; i < n; i++) {
        int src = tg_sqlite_bind_text(s, 1, ids[i]);
        if (src == SQLITE_OK)
            src = tg_sqlite_bind_text(s, 5, procs != NULL ? procs[i] : NULL);
        if (src == SQLITE_OK)
            src = sqlite3_bind_int64(s, 4, (int64_t)first_input + (int64_t)i);
        if (src == SQLITE_OK)
            src = sqlite3_step(s);
        if (src != SQLITE_DONE) {
            rc = tg_sqlite_db_err(st, src, "record run");
            int ext = sqlite3_extended_errcode(st->db);
            if (ext == SQLITE_CONSTRAINT_UNIQUE)
                tg_sqlite_set_err(st, "run %.100s is already recorded", ids[i]);
            else if (ext == SQLITE_CONSTRAINT_PRIMARYKEY)
                tg_sqlite_set_err(st, "input %lld of submission %.64s has a run recorded "
                                  "already", (long long)first_input + (long long)i, sub_id);
            break;
        }
        sqlite3_reset(s);
    }
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_runs_add(struct tg_store *st, const char *sub_id, int seq, int first_input,
                       size_t n, const char *const *ids, const char *const *procs,
                       const struct tg_sqlite_sub_facts *known)
{
    if (n == 0)
        return TG_OK;
    int64_t bucket;
    struct tg_sqlite_sub_facts read;
    int rc = TG_OK;
    if (known == NULL) { /* read before any of its runs is recorded */
        rc = tg_sqlite_sub_facts(st, sub_id, &read);
        if (rc == TG_ENOTFOUND)
            tg_sqlite_set_err(st, "record runs: no submission %.64s", sub_id);
        if (rc != TG_OK)
            return rc;
        known = &read;
    }
    /* The summary first: it asks which processors the submission's runs had before. */
    rc = tg_sqlite_counts_runs(st, sub_id, n, procs, known);
    if (rc == TG_OK)
        rc = newest_bucket(st, &bucket);
    if (rc == TG_OK)
        rc = check_older(st, bucket, n, ids);
    if (rc == TG_OK)
        rc = insert_rows(st, bucket, sub_id, seq, first_input, n, ids, procs);
    if (rc == TG_OK)
        rc = tg_sqlite_usage_runs(st, sub_id, seq, n, procs, known);
    if (rc != TG_OK)
        return rc;
    sqlite3_stmt *s;
    rc = stmt(st, U_COUNT, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, bucket);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)n);
    return tg_sqlite_run(st, s, "count runs in their bucket");
}
