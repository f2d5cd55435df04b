/* Unit tests of text shown to people on a terminal (tg_core.h): every control character
 * written visibly, truncation by code points and by room. */
#include <string.h>

#include "tg_core.h"
#include "tg_test.h"

static const char *shown(const char *s, size_t max)
{
    static char out[256];
    return tg_shown(s, max, out, sizeof(out));
}

static void controls_are_visible(void)
{
    CHECK_STR(shown("plain label", 100), "plain label");
    CHECK_STR(shown(NULL, 100), "-");
    CHECK_STR(shown("a\nb\rc\td", 100), "a\\nb\\rc\\td");
    CHECK_STR(shown("\n\x1b[31mred", 100), "\\n\\x1b[31mred");
    CHECK_STR(shown("bell\x07 del\x7f", 100), "bell\\x07 del\\x7f");
    /* C1 controls as UTF-8 (U+009B is CSI on some terminals), and as a raw byte. */
    CHECK_STR(shown("x\xc2\x9b" "31m", 100), "x\\u009b31m");
    CHECK_STR(shown("x\x9b" "31m", 100), "x\\x9b31m");
    /* Bidirectional overrides reorder what follows them. */
    CHECK_STR(shown("abc\xe2\x80\xae" "fdp.exe", 100), "abc\\u202efdp.exe");
    CHECK_STR(shown("\xe2\x81\xa6" "x", 100), "\\u2066x");
    /* Other text beyond ASCII is copied. */
    CHECK_STR(shown("caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x99\x82", 100),
              "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x99\x82");
    /* A truncated sequence is not UTF-8. */
    CHECK_STR(shown("end\xe2\x80", 100), "end\\xe2\\x80");
}

static void truncation(void)
{
    CHECK_STR(shown("abcdef", 3), "abc...");
    CHECK_STR(shown("abc", 3), "abc");
    CHECK_STR(shown("\xc3\xa9\xc3\xa9\xc3\xa9", 2), "\xc3\xa9\xc3\xa9...");
    char small[8];
    CHECK_STR(tg_shown("abcdefgh", 100, small, sizeof(small)), "abcd...");
    CHECK_STR(tg_shown("abcdefg", 100, small, sizeof(small)), "abcdefg");
    CHECK_STR(tg_shown("\x1b\x1b", 100, small, sizeof(small)), "\\x1b...");
    char tiny[3] = "zz";
    CHECK_STR(tg_shown("abc", 100, tiny, sizeof(tiny)), "");
}

static void into_a_buffer(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 1024);
    CHECK(tg_buf_add_shown(&b, "=HYPERLINK(\"x\")\n\x1b[0m", 100) == TG_OK);
    CHECK_STR(tg_buf_str(&b), "=HYPERLINK(\"x\")\\n\\x1b[0m");
    tg_buf_clear(&b);
    CHECK(tg_buf_add_shown(&b, "abcdef", 2) == TG_OK);
    CHECK_STR(tg_buf_str(&b), "ab...");
    tg_buf_clear(&b);
    CHECK(tg_buf_add_shown(&b, NULL, 2) == TG_OK);
    CHECK_STR(tg_buf_str(&b), "-");
    tg_buf_free(&b);
    tg_buf_init(&b, 5);
    CHECK(tg_buf_add_shown(&b, "\x01\x02", 10) == TG_ETOOBIG);
    tg_buf_free(&b);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"controls_are_visible", controls_are_visible},
        {"truncation", truncation},
        {"into_a_buffer", into_a_buffer},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
