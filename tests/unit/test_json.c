/* Unit tests of the strict JSON a client may send (tg_json_parse_input, tg_json_strict_check):
 * RFC 8259 only, numbers forwarded as written or refused, and the place of each problem. */
#include <locale.h>
#include <pthread.h>
#include <string.h>

#include "tg_json.h"
#include "tg_json_strict.h"
#include "tg_test.h"

/* The loc tg_json_parse_input gives text as compact JSON, "" when it parses, "null" when
 * it fails without a place; err receives the message. */
static const char *loc_of(const char *text, char *err, size_t errlen)
{
    static char out[512];
    json_object *loc = NULL;
    json_object *o = tg_json_parse_input(text, strlen(text), TG_JSON_MAX_DEPTH, err, errlen,
                                         &loc);
    if (o != NULL) {
        json_object_put(o);
        CHECK(loc == NULL);
        return "";
    }
    snprintf(out, sizeof(out), "%s", loc != NULL ? tg_json_str(loc, NULL) : "null");
    json_object_put(loc);
    return out;
}

static int refused(const char *text)
{
    char err[256];
    return loc_of(text, err, sizeof(err))[0] != '\0';
}

static void nan_and_infinity_are_refused(void)
{
    char err[256];
    CHECK_STR(loc_of("{\"inputs\":[NaN]}", err, sizeof(err)), "[\"body\",\"inputs\",0]");
    CHECK(strstr(err, "NaN and Infinity are not JSON numbers at offset 11") != NULL);
    CHECK_STR(loc_of("{\"a\":{\"b\":Infinity}}", err, sizeof(err)), "[\"body\",\"a\",\"b\"]");
    CHECK_STR(loc_of("{\"a\":[1,2,-Infinity]}", err, sizeof(err)), "[\"body\",\"a\",2]");
    CHECK(refused("[nan]"));
    CHECK(refused("[-NaN]"));
}

static void numbers_json_c_cannot_hold_are_refused(void)
{
    char err[256];
    /* json-c would saturate these to 2^64-1 and -2^63. */
    CHECK_STR(loc_of("{\"metadata\":{\"n\":10000000000000000000000000000000000000000}}", err,
                     sizeof(err)), "[\"body\",\"metadata\",\"n\"]");
    CHECK(strstr(err, "the integer 1000000000") != NULL);
    CHECK(strstr(err, "is beyond what the gateway forwards exactly") != NULL);
    CHECK(refused("[18446744073709551616]"));
    CHECK(refused("[-9223372036854775809]"));
    /* A double that would be read as 0 or as infinity. */
    CHECK_STR(loc_of("{\"x\":[{\"y\":1e-99999}]}", err, sizeof(err)), "[\"body\",\"x\",0,\"y\"]");
    CHECK(strstr(err, "too small for a double") != NULL);
    CHECK(refused("[1E400]"));
    CHECK(refused("[-1.5e309]"));
    CHECK(refused("[0.0000e-400000000000000000000000000001]") == 0);  /* zero is zero */
}

static void numbers_not_in_json_form_are_refused(void)
{
    CHECK(refused("[1.]"));
    CHECK(refused("[.5]"));
    CHECK(refused("[+1]"));
    CHECK(refused("[01]"));
    CHECK(refused("[-]"));
    CHECK(refused("[1e]"));
    CHECK(refused("[1e+]"));
    CHECK(refused("[0x10]"));
}

static void strings_follow_rfc_8259(void)
{
    char err[256];
    /* A lone surrogate, high or low, would become U+FFFD. */
    CHECK_STR(loc_of("{\"inputs\":[\"ok\",\"\\ud800\"]}", err, sizeof(err)),
              "[\"body\",\"inputs\",1]");
    CHECK(strstr(err, "lone UTF-16 surrogate \\ud800") != NULL);
    CHECK(refused("[\"\\udc00\"]"));
    CHECK(refused("[\"\\ud800\\u0041\"]"));
    CHECK(refused("[\"\\udc00\\ud800\"]"));
    CHECK(refused("[\"\\ud800\"]"));
    CHECK(!refused("[\"\\ud83d\\ude00\"]"));
    /* Raw control characters must be escaped; escapes are JSON's. */
    CHECK_STR(loc_of("{\"k\":\"a\tb\"}", err, sizeof(err)), "[\"body\",\"k\"]");
    CHECK(strstr(err, "U+0009") != NULL);
    CHECK(refused("[\"\\x41\"]"));
    CHECK(refused("[\"\\u12\"]"));
    CHECK(refused("[\"\\u0000\"]"));
    CHECK(refused("[\"abc]"));
    /* A problem in a key is placed at its object. */
    CHECK_STR(loc_of("{\"a\":{\"ok\":1,\"b\\ud800\":1}}", err, sizeof(err)), "[\"body\",\"a\"]");
    /* Keys on the path are given decoded. */
    CHECK_STR(loc_of("{\"\\u00e9t\\u00e9\":[NaN]}", err, sizeof(err)),
              "[\"body\",\"\xc3\xa9t\xc3\xa9\",0]");
}

static void grammar(void)
{
    char err[256];
    CHECK_STR(loc_of("{\"a\":1,}", err, sizeof(err)), "[\"body\"]");
    CHECK(refused("[1,]"));
    CHECK(refused("{'a':1}"));
    CHECK(refused("{a:1}"));
    CHECK(refused("[1 2]"));
    CHECK(refused("[tru]"));
    CHECK(refused("[True]"));
    CHECK(refused("{\"a\":1} x"));
    CHECK(refused("{\"a\":1 /* c */}"));
    CHECK(refused("[1]\f"));
    CHECK(refused(""));
    CHECK(refused("   "));
    CHECK_STR(loc_of("{\"a\":[1,{\"b\":", err, sizeof(err)), "[\"body\",\"a\",1,\"b\"]");
    CHECK(strstr(err, "unexpected end of input") != NULL);
    /* As deep as json-c takes for the caller's max_depth, and no deeper. */
    CHECK(tg_json_strict_check("[[1]]", 5, 3, err, sizeof(err), NULL) == TG_OK);
    CHECK(tg_json_strict_check("[[[1]]]", 7, 3, err, sizeof(err), NULL) == TG_EINVAL);
    CHECK(strstr(err, "nesting deeper than 2 levels") != NULL);
}

/* What is accepted reaches the upstream's body byte for byte, numbers included, also after
 * the copies the merge makes. */
static void numbers_are_forwarded_as_written(void)
{
    const char *text = "{\"a\":1.10,\"b\":18446744073709551615,\"c\":-9223372036854775808,"
                       "\"d\":1E+2,\"e\":5e-324,\"f\":0.1e1,\"g\":-0.0,\"h\":[true,false,null],"
                       "\"i\":\"\\\"\\\\\\n\"}";
    char err[256];
    json_object *loc = NULL;
    json_object *o = tg_json_parse_input(text, strlen(text), TG_JSON_MAX_DEPTH, err,
                                         sizeof(err), &loc);
    CHECK(o != NULL);
    CHECK(loc == NULL);
    json_object *copy = NULL;
    CHECK(json_object_deep_copy(o, &copy, NULL) == 0);
    CHECK_STR(tg_json_str(o, NULL), text);
    CHECK_STR(tg_json_str(copy, NULL), text);
    json_object_put(copy);
    json_object_put(o);
    /* A surrogate pair is one character. */
    o = tg_json_parse_input("[\"\\ud83d\\ude00\"]", 16, 8, err, sizeof(err), NULL);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(o, 0)), "\xf0\x9f\x98\x80");
    json_object_put(o);
}

/* A text that is one bare number is whole at its end (json-c waits for more digits unless
 * told the input ended): an MCP header value sealed as its JSON text, 5, reads back. */
static void a_bare_number_is_a_whole_text(void)
{
    char err[256] = "";
    static const char *const texts[] = {"5", "-12", "3.25", "1e3", "0"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_object *o = tg_json_parse(texts[i], strlen(texts[i]), 8, err, sizeof(err));
        CHECK(o != NULL);
        if (o != NULL)
            CHECK_STR(tg_json_str(o, NULL), texts[i]);
        json_object_put(o);
    }
    /* A number cut short is still not one. */
    CHECK(tg_json_parse("-", 1, 8, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("1e", 2, 8, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("5 x", 3, 8, err, sizeof(err)) == NULL);
}

/* Each thread keeps its tokeners between parses: a parse that stopped half-way (a text cut
 * short, too deep, not JSON) leaves nothing to the next one, whatever depth each asks. */
static void a_kept_tokener_starts_afresh(void)
{
    char err[256] = "";
    static const char *const broken[] = {"{\"a\": [1, 2", "\"abc", "[[[[1]]]]", "{\"a\" 1}",
                                         "tru"};
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        int depth = i == 2 ? 3 : 8;
        CHECK(tg_json_parse(broken[i], strlen(broken[i]), depth, err, sizeof(err)) == NULL);
        static const char good[] = "{\"b\": [true]}";
        json_object *o = tg_json_parse(good, strlen(good), depth, err, sizeof(err));
        CHECK(o != NULL);
        if (o != NULL)
            CHECK_STR(tg_json_str(o, NULL), "{\"b\":[true]}");
        json_object_put(o);
        o = tg_json_parse("\"x\"", 3, depth == 3 ? 8 : 3, err, sizeof(err));
        CHECK(o != NULL && strcmp(json_object_get_string(o), "x") == 0);
        json_object_put(o);
    }
    /* The depth is the one asked for, not that of the tokener kept before. */
    for (int i = 0; i < 3; i++) {
        json_object *o = tg_json_parse("[[[1]]]", 7, i == 1 ? 2 : 8, err, sizeof(err));
        CHECK((o != NULL) == (i != 1));
        json_object_put(o);
    }
}

static void *parse_often(void *arg)
{
    char err[256];
    long ok = 0;
    for (int i = 0; i < 2000; i++) {
        static const char text[] = "{\"n\": [1, 2, 3]}";
        json_object *o = tg_json_parse(text, strlen(text), (i & 1) ? 8 : 4, err, sizeof(err));
        ok += o != NULL && json_object_array_length(json_object_object_get(o, "n")) == 3;
        json_object_put(o);
    }
    *(long *)arg = ok;
    return NULL;
}

static void *parse_once(void *arg)
{
    char err[256];
    json_object *o = tg_json_parse("[1]", 3, 8, err, sizeof(err));
    *(long *)arg = o != NULL && json_object_array_length(o) == 1;
    json_object_put(o);
    return NULL;
}

/* Threads that parse at once each use their own, and give them back when they end (the
 * sanitizer build reports any left behind). A thread that kept fewer tokeners than it may
 * (one depth only, as most workers) ends as well: the daemon's workers end so at SIGTERM,
 * and freeing the empty slot once made it crash there. */
static void threads_keep_their_own_tokeners(void)
{
    pthread_t t[4];
    long ok[4] = {0};
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, i == 3 ? parse_once : parse_often, &ok[i]) == 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(ok[i] == (i == 3 ? 1 : 2000));
    }
}

/* A parse (tg_json_parse, tg_json_parse_text) runs on the "C" locale object and puts the
 * thread's own locale back, whether the thread was on the global locale or on one of its
 * own; numbers read with a '.' either way. */
static void a_parse_leaves_the_threads_locale_as_it_was(void)
{
    char err[256] = "";
    locale_t own = duplocale(LC_GLOBAL_LOCALE);
    CHECK(own != (locale_t)0);
    for (int i = 0; i < 2; i++) {
        locale_t before = i == 0 ? uselocale((locale_t)0) : own;
        if (i == 1)
            uselocale(own);
        json_object *o = tg_json_parse("[1.5, 2]", 8, 8, err, sizeof(err));
        CHECK(o != NULL && json_object_get_double(json_object_array_get_idx(o, 0)) == 1.5);
        json_object_put(o);
        CHECK(tg_json_parse("[1.5", 4, 8, err, sizeof(err)) == NULL); /* a failure too */
        CHECK(uselocale((locale_t)0) == before);
        o = tg_json_parse_text("{\"a\": 2.5}");
        CHECK(o != NULL && json_object_get_double(json_object_object_get(o, "a")) == 2.5);
        json_object_put(o);
        CHECK(tg_json_parse_text("{\"a\": ") == NULL);
        CHECK(uselocale((locale_t)0) == before);
    }
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(own);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"nan_and_infinity_are_refused", nan_and_infinity_are_refused},
        {"numbers_json_c_cannot_hold_are_refused", numbers_json_c_cannot_hold_are_refused},
        {"numbers_not_in_json_form_are_refused", numbers_not_in_json_form_are_refused},
        {"strings_follow_rfc_8259", strings_follow_rfc_8259},
        {"grammar", grammar},
        {"numbers_are_forwarded_as_written", numbers_are_forwarded_as_written},
        {"a_bare_number_is_a_whole_text", a_bare_number_is_a_whole_text},
        {"a_kept_tokener_starts_afresh", a_kept_tokener_starts_afresh},
        {"threads_keep_their_own_tokeners", threads_keep_their_own_tokeners},
        {"a_parse_leaves_the_threads_locale_as_it_was",
         a_parse_leaves_the_threads_locale_as_it_was},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
