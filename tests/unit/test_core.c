/* Unit tests of the core helpers every layer uses: times as clients write them; the bounded
 * buffer that every answer is built in. */
#include <stdint.h>
#include <string.h>

#include "tg_core.h"
#include "tg_test.h"

/* The time s names, as RFC 3339 UTC, or "refused". */
static const char *parsed(const char *s)
{
    static char out[TG_TIME_LEN];
    int64_t ms;
    if (tg_time_parse(s, &ms) != TG_OK)
        return "refused";
    tg_time_format(ms, out);
    return out;
}

static void days_a_month_does_not_have_are_refused(void)
{
    CHECK_STR(parsed("2026-02-31"), "refused");
    CHECK_STR(parsed("2026-02-29"), "refused");
    CHECK_STR(parsed("1900-02-29"), "refused");
    CHECK_STR(parsed("2026-04-31"), "refused");
    CHECK_STR(parsed("2026-06-31T00:00:00Z"), "refused");
    CHECK_STR(parsed("2026-09-31T23:59:59+02:00"), "refused");
    CHECK_STR(parsed("2026-11-31"), "refused");
    CHECK_STR(parsed("2026-01-32"), "refused");
    CHECK_STR(parsed("2026-00-10"), "refused");
    CHECK_STR(parsed("2026-13-01"), "refused");
    CHECK_STR(parsed("2026-01-00"), "refused");
}

static void real_days_are_taken(void)
{
    CHECK_STR(parsed("2024-02-29"), "2024-02-29T00:00:00.000Z");
    CHECK_STR(parsed("2000-02-29"), "2000-02-29T00:00:00.000Z");
    CHECK_STR(parsed("2026-02-28"), "2026-02-28T00:00:00.000Z");
    CHECK_STR(parsed("2026-01-31"), "2026-01-31T00:00:00.000Z");
    CHECK_STR(parsed("2026-04-30T12:30:00Z"), "2026-04-30T12:30:00.000Z");
    CHECK_STR(parsed("2026-12-31T23:59:59.5Z"), "2026-12-31T23:59:59.500Z");
    /* The offset may carry a time into another day; the day written must exist. */
    CHECK_STR(parsed("2026-03-01T00:30:00+01:00"), "2026-02-28T23:30:00.000Z");
}

/* Each thread keeps the last second it formatted: the milliseconds must still be the
 * call's own, and another second (later, earlier, before 1970) its own. */
static void times_in_one_second_and_across(void)
{
    char out[TG_TIME_LEN];
    const int64_t t = 1796169599000LL; /* 2026-12-01T23:59:59Z */
    tg_time_format(t + 7, out);
    CHECK_STR(out, "2026-12-01T23:59:59.007Z");
    tg_time_format(t + 999, out);
    CHECK_STR(out, "2026-12-01T23:59:59.999Z");
    tg_time_format(t + 1000, out);
    CHECK_STR(out, "2026-12-02T00:00:00.000Z");
    tg_time_format(t + 70, out);
    CHECK_STR(out, "2026-12-01T23:59:59.070Z");
    tg_time_format(-1, out);
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    tg_time_format(0, out);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
}

/* An append past max is refused whole, the memory never grows past max + 1, and the buffer
 * remembers the refusal (through clear) until it is bounded anew: what the router reads to
 * refuse an answer that lost a piece. */
static void a_refused_append_is_remembered(void)
{
    struct tg_buf b;
    char chunk[600];
    memset(chunk, 'x', sizeof(chunk));
    tg_buf_init(&b, 1000);
    CHECK(b.refused == 0);
    CHECK(tg_buf_add(&b, chunk, sizeof(chunk)) == TG_OK);
    CHECK(b.refused == 0);
    CHECK(tg_buf_add(&b, chunk, sizeof(chunk)) == TG_ETOOBIG);
    CHECK(b.len == 600 && b.refused == 1);
    CHECK(tg_buf_adds(&b, "</table>") == TG_OK); /* a later small append fits... */
    CHECK(b.refused == 1);                       /* ...and the text is still known cut */
    CHECK(tg_buf_add(&b, chunk, 392) == TG_OK);
    CHECK(b.len == 1000 && b.cap <= 1001);
    CHECK(tg_buf_printf(&b, "%d", 7) == TG_ETOOBIG);
    tg_buf_clear(&b);
    CHECK(b.refused == 1);
    tg_buf_bound(&b, 2000);
    CHECK(b.refused == 0 && b.max == 2000);
    CHECK(tg_buf_add(&b, chunk, sizeof(chunk)) == TG_OK &&
          tg_buf_add(&b, chunk, sizeof(chunk)) == TG_OK);
    CHECK(b.refused == 0 && b.cap <= 2001);
    tg_buf_free(&b);
}

/* A formatted text is whole wherever it goes, short or long, and a buffer refuses one past
 * its bound even when the room for it is already there, keeping its text as it was. */
static void formatted_texts_are_whole(void)
{
    static char longs[5000];
    memset(longs, 'y', sizeof(longs) - 1);
    struct tg_pool *pool = tg_pool_create();
    CHECK(pool != NULL);
    const char *t = tg_pool_printf(pool, "%s/%d", "runs", 42);
    CHECK_STR(t, "runs/42");
    t = tg_pool_printf(pool, "<%s>", longs);
    CHECK(t != NULL && strlen(t) == sizeof(longs) + 1 && t[0] == '<' && t[1] == 'y' &&
          t[sizeof(longs)] == '>');
    for (int n = 250; n < 262; n++) { /* lengths around a common buffer size, 256 */
        t = tg_pool_printf(pool, "%.*s", n, longs);
        CHECK(t != NULL && strlen(t) == (size_t)n);
    }
    tg_pool_destroy(pool);

    struct tg_buf b;
    tg_buf_init(&b, 100000);
    CHECK(tg_buf_printf(&b, "a%d", 1) == TG_OK); /* no room yet */
    CHECK(tg_buf_printf(&b, "-%s-", longs) == TG_OK); /* more than the room */
    CHECK(tg_buf_printf(&b, "b%d", 2) == TG_OK); /* in the room */
    CHECK(b.len == 2 + sizeof(longs) + 1 + 2 && strlen(b.data) == b.len);
    CHECK(strncmp(b.data, "a1-yy", 5) == 0 && strcmp(b.data + b.len - 3, "-b2") == 0);
    size_t len = b.len;
    tg_buf_bound(&b, len + 3); /* the room is far larger than the bound now */
    CHECK(b.cap > len + 10);
    CHECK(tg_buf_printf(&b, "%s", "four") == TG_ETOOBIG);
    CHECK(b.len == len && b.data[len] == '\0' && b.refused == 1);
    tg_buf_bound(&b, len + 3);
    CHECK(tg_buf_printf(&b, "%s", "two") == TG_OK && b.len == len + 3 && b.refused == 0);
    CHECK(strcmp(b.data + b.len - 5, "b2two") == 0);
    tg_buf_free(&b);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"days_a_month_does_not_have_are_refused", days_a_month_does_not_have_are_refused},
        {"real_days_are_taken", real_days_are_taken},
        {"times_in_one_second_and_across", times_in_one_second_and_across},
        {"a_refused_append_is_remembered", a_refused_append_is_remembered},
        {"formatted_texts_are_whole", formatted_texts_are_whole},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
