/* Unit tests of the server-sent event reader (core/tg_sse.c): events cut anywhere, every
 * line end, fields, comments, ids, limits, and a callback that stops the stream. */
#include <stdio.h>
#include <string.h>

#include "tg_sse.h"
#include "tg_test.h"

struct seen {
    char text[4096]; /* "name|data|id;" per event */
    int stop_at;     /* stop with TG_ERR at this event (1-based); 0: never */
    int n;
};

static int on_event(void *ctx, const char *event, const char *data, size_t len, const char *id)
{
    struct seen *s = ctx;
    size_t used = strlen(s->text);
    CHECK(strlen(data) == len);
    snprintf(s->text + used, sizeof(s->text) - used, "%s|%s|%s;", event, data, id);
    return ++s->n == s->stop_at ? TG_ERR : TG_OK;
}

/* Feeds text in pieces of step bytes; returns the events seen. */
static const char *read_all(const char *text, size_t step, size_t max, int *rc)
{
    static struct seen s;
    struct tg_sse r;
    memset(&s, 0, sizeof(s));
    tg_sse_init(&r, max, on_event, &s);
    size_t len = strlen(text);
    *rc = TG_OK;
    for (size_t i = 0; i < len && *rc == TG_OK; i += step)
        *rc = tg_sse_feed(&r, text + i, len - i < step ? len - i : step);
    tg_sse_free(&r);
    return s.text;
}

static void test_events_in_any_pieces(void)
{
    const char *stream =
        ": a comment\n"
        "event: task_group_status\ndata: {\"a\":1}\n\n"
        "event: task_run.state\r\ndata: {\"b\":\r\ndata: 2}\r\nid: e-2\r\n\r\n"
        "data:no space\r\rretry: 10\nunknown: x\n\n"
        "event: empty\n\n"
        "data\n\n"
        "data: cut off";
    const char *want =
        "task_group_status|{\"a\":1}|;"
        "task_run.state|{\"b\":\n2}|e-2;"
        "message|no space|e-2;"
        "message||e-2;";
    for (size_t step = 1; step <= strlen(stream); step++) {
        int rc;
        const char *got = read_all(stream, step, 1024, &rc);
        CHECK(rc == TG_OK);
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "pieces of %zu bytes:\n", step);
            CHECK_STR(got, want);
            break;
        }
    }
}

static void test_limits_and_stops(void)
{
    int rc;
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char text[300];
    snprintf(text, sizeof(text), "data: %s\n\n", big);
    read_all(text, 7, 64, &rc);
    CHECK(rc == TG_ETOOBIG);
    CHECK_STR(read_all("data: a\n\ndata: b\n\ndata: c\n\n", 3, 64, &rc),
              "message|a|;message|b|;message|c|;");
    CHECK(rc == TG_OK);
    static struct seen s;
    struct tg_sse r;
    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    tg_sse_init(&r, 64, on_event, &s);
    CHECK(tg_sse_feed(&r, "data: a\n\ndata: b\n\ndata: c\n\n", 27) == TG_ERR);
    CHECK(s.n == 2);
    tg_sse_free(&r);
    /* A stream cut inside an event: what was read of it is forgotten. */
    memset(&s, 0, sizeof(s));
    tg_sse_init(&r, 64, on_event, &s);
    CHECK(tg_sse_feed(&r, "data: half", 10) == TG_OK);
    tg_sse_reset(&r);
    CHECK(tg_sse_feed(&r, "data: whole\n\n", 13) == TG_OK);
    CHECK_STR(s.text, "message|whole|;");
    tg_sse_free(&r);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"events_in_any_pieces", test_events_in_any_pieces},
        {"limits_and_stops", test_limits_and_stops},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
