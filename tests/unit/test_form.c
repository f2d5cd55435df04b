/* Unit tests of the form decoder: urlencoded and multipart bodies must become exactly the
 * JSON submission a JSON client would have sent, and broken bodies must be refused. */
#include <stdlib.h>
#include <string.h>

#include "tg_form.h"
#include "tg_json.h"
#include "tg_test.h"

#define URLENC "application/x-www-form-urlencoded"
#define MULTI "multipart/form-data; boundary=XyZ"

/* Decodes body[0..len) and describes the outcome: the JSON text, then " problems " and the
 * detail array when there are problems, or "error: " and the reason. */
static const char *decode_n(const char *ct, const char *body, size_t len)
{
    static char out[8192];
    char err[256] = "";
    json_object *detail = json_object_new_array();
    json_object *obj = NULL;
    int rc = tg_form_decode(ct, body, len, &obj, detail, err, sizeof(err));
    if (rc != TG_OK) {
        snprintf(out, sizeof(out), "error: %s", err);
        if (obj != NULL || json_object_array_length(detail) != 0)
            snprintf(out, sizeof(out), "error with output or problems: %s", err);
    } else if (json_object_array_length(detail) > 0) {
        snprintf(out, sizeof(out), "%s problems %s", tg_json_str(obj, NULL),
                 tg_json_str(detail, NULL));
    } else {
        snprintf(out, sizeof(out), "%s", tg_json_str(obj, NULL));
    }
    json_object_put(obj);
    json_object_put(detail);
    return out;
}

static const char *decode(const char *ct, const char *body)
{
    return decode_n(ct, body, strlen(body));
}

static const char *url(const char *body)
{
    return decode(URLENC, body);
}

struct pair {
    const char *name;
    const char *value;
};

/* The pairs as a browser would urlencode them. */
static void urlencode(struct tg_buf *b, const struct pair *p)
{
    tg_buf_clear(b);
    for (; p->name != NULL; p++) {
        const char *parts[2] = {p->name, p->value};
        if (b->len > 0)
            tg_buf_adds(b, "&");
        for (int k = 0; k < 2; k++) {
            for (const unsigned char *c = (const unsigned char *)parts[k]; *c != '\0'; c++) {
                if (*c == ' ')
                    tg_buf_adds(b, "+");
                else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || strchr("-._*", *c) != NULL)
                    tg_buf_add(b, c, 1);
                else
                    tg_buf_printf(b, "%%%02X", *c);
            }
            if (k == 0)
                tg_buf_adds(b, "=");
        }
    }
}

/* The pairs as a browser would send them as multipart/form-data with boundary XyZ. */
static void multipart(struct tg_buf *b, const struct pair *p)
{
    tg_buf_clear(b);
    tg_buf_adds(b, "");
    for (; p->name != NULL; p++)
        tg_buf_printf(b, "--XyZ\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n",
                      p->name, p->value);
    tg_buf_adds(b, "--XyZ--\r\n");
}

static void urlencoded_textarea(void)
{
    CHECK_STR(url("inputs=first+line%0D%0A%0D%0A++%09%0D%0A++second%20line++%0D%0A"
                  "caf%C3%A9+au+lait%0D%0A&processor=core"),
              "{\"inputs\":[\"first line\",\"second line\",\"café au lait\"],"
              "\"processor\":\"core\"}");
    /* A lone LF works as well as CRLF; the last line needs no line end. */
    CHECK_STR(url("inputs=a%0Ab%0A%0Ac"), "{\"inputs\":[\"a\",\"b\",\"c\"]}");
    /* Inner whitespace stays. */
    CHECK_STR(url("inputs=++a++b++"), "{\"inputs\":[\"a  b\"]}");
}

static void json_object_lines(void)
{
    /* {"company":"Acme","n":1} / {not json / ["a"] / {"a":1,"a":2} (repeated key) */
    CHECK_STR(url("inputs=%7B%22company%22%3A%22Acme%22%2C%22n%22%3A1%7D%0D%0A"
                  "%7Bnot+json%0D%0A%5B%22a%22%5D%0D%0A%7B%22a%22%3A1%2C%22a%22%3A2%7D"),
              "{\"inputs\":[{\"company\":\"Acme\",\"n\":1},\"{not json\",\"[\\\"a\\\"]\","
              "\"{\\\"a\\\":1,\\\"a\\\":2}\"]}");
    /* Leading whitespace before the brace is trimmed first. */
    CHECK_STR(url("input=++%7B%22x%22%3Atrue%7D++"), "{\"inputs\":[{\"x\":true}]}");
    /* A line that is not JSON as RFC 8259 defines it ({"n":NaN}, a number json-c would
     * saturate, a lone surrogate) stays text: nothing that is not JSON goes upstream. */
    CHECK_STR(url("input=%7B%22n%22%3ANaN%7D&input=%7B%22n%22%3A1" "0000000000000000000000%7D&"
                  "input=%7B%22s%22%3A%22%5Cud800%22%7D&input=%7B%22n%22%3A1.10%7D"),
              "{\"inputs\":[\"{\\\"n\\\":NaN}\",\"{\\\"n\\\":10000000000000000000000}\","
              "\"{\\\"s\\\":\\\"\\\\ud800\\\"}\",{\"n\":1.10}]}");
}

static void repeated_input_and_order(void)
{
    CHECK_STR(url("input=a&input=&input=+++&input=%7B%22x%22%3A1%7D&input=+b+c+"),
              "{\"inputs\":[\"a\",{\"x\":1},\"b c\"]}");
    /* Inputs keep body order across fields; keys come in order of first value. */
    CHECK_STR(url("processor=core&input=one&inputs=two%0Athree&preset=fast&input=four"),
              "{\"processor\":\"core\",\"inputs\":[\"one\",\"two\",\"three\",\"four\"],"
              "\"preset\":\"fast\"}");
    /* A multi-line "input" is one input. */
    CHECK_STR(url("input=line+1%0D%0Aline+2"), "{\"inputs\":[\"line 1\\r\\nline 2\"]}");
    /* No inputs at all: the key is absent, so the handler reports it missing. */
    CHECK_STR(url("inputs=%0D%0A+%0D%0A&input=&processor=core"), "{\"processor\":\"core\"}");
}

static void domains(void)
{
    CHECK_STR(url("include_domains=a.com,+b.com%0D%0Ac.com,,+&exclude_domains="
                  "&include_domains=d.com&exclude_domains=x.org"),
              "{\"include_domains\":[\"a.com\",\"b.com\",\"c.com\",\"d.com\"],"
              "\"exclude_domains\":[\"x.org\"]}");
    CHECK_STR(url("include_domains=+,+%0A&input=x"), "{\"inputs\":[\"x\"]}");
}

static void metadata(void)
{
    CHECK_STR(url("metadata.team=search&metadata.cost_center=42&metadata.empty=&"
                  "metadata.note=+two+words+&metadata.team=search"),
              "{\"metadata\":{\"team\":\"search\",\"cost_center\":\"42\","
              "\"note\":\"two words\"}}");
    CHECK_STR(url("metadata.=x&metadata.team=a&metadata.team=b"),
              "{\"metadata\":{\"team\":\"a\"}} problems [{\"loc\":[\"body\",\"metadata.\"],"
              "\"msg\":\"a metadata field is named metadata.KEY with a non-empty KEY\","
              "\"type\":\"value_error\"},{\"loc\":[\"body\",\"metadata.team\"],"
              "\"msg\":\"given more than once with different values\","
              "\"type\":\"value_error\"}]");
    /* "metadata" alone is not a metadata field. */
    CHECK_STR(url("metadata=x&metadatax.a=b"), "{}");
    /* A browser's key/value rows: each value pairs with the key before it; rows with an
     * empty key or value are absent; a value without a key is ignored. */
    CHECK_STR(url("metadata_key=team&metadata_value=+blue+&metadata_key=&metadata_value=x&"
                  "metadata_key=empty&metadata_value=&metadata_value=orphan&"
                  "metadata_key=a.b&metadata_value=1&metadata_key=team&metadata_value=red"),
              "{\"metadata\":{\"team\":\"blue\",\"a.b\":\"1\"}} problems [{\"loc\":[\"body\","
              "\"metadata.team\"],\"msg\":\"given more than once with different values\","
              "\"type\":\"value_error\"}]");
    CHECK_STR(url("metadata_key=dangling"), "{}");
}

static void enable_events(void)
{
    static const char *const yes[] = {"on", "true", "1", "yes", "YES", "+On+"};
    static const char *const no[] = {"off", "false", "0", "no", "NO", "False"};
    char body[64];
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(body, sizeof(body), "enable_events=%s", yes[i]);
        CHECK_STR(url(body), "{\"enable_events\":true}");
        snprintf(body, sizeof(body), "enable_events=%s", no[i]);
        CHECK_STR(url(body), "{\"enable_events\":false}");
    }
    /* An empty field is an absent one, as for every other field. */
    CHECK_STR(url("enable_events"), "{}");
    CHECK_STR(url("enable_events="), "{}");
    CHECK_STR(url("input=x"), "{\"inputs\":[\"x\"]}"); /* unchecked: absent */
    /* A hidden fallback before the checkbox: the last value wins, the first sets the order. */
    CHECK_STR(url("enable_events=0&processor=core&enable_events=1"),
              "{\"enable_events\":true,\"processor\":\"core\"}");
    CHECK_STR(url("enable_events=maybe"),
              "{} problems [{\"loc\":[\"body\",\"enable_events\"],\"msg\":\"Input should be a "
              "valid boolean, unable to interpret input\",\"type\":\"bool_parsing\"}]");
}

static void single_fields(void)
{
    /* Empty and whitespace-only values leave the field out. */
    CHECK_STR(url("processor=&preset=+&taskgroup_id=%0D%0A&output=&webhook_url=&token="
                  "&idempotency_key=&input_schema=&inputs="),
              "{}");
    CHECK_STR(url("taskgroup_id=tgrp_1&preset=fast&processor=+core+&output=the+GDP&"
                  "input_schema=a+country&webhook_url=https%3A%2F%2Fh.example%2Fx&"
                  "token=tg_abc&idempotency_key=k1"),
              "{\"taskgroup_id\":\"tgrp_1\",\"preset\":\"fast\",\"processor\":\"core\","
              "\"output\":\"the GDP\",\"input_schema\":\"a country\","
              "\"webhook_url\":\"https://h.example/x\",\"token\":\"tg_abc\","
              "\"idempotency_key\":\"k1\"}");
    /* A schema pasted as JSON is the JSON schema a JSON client would send. */
    CHECK_STR(url("output=%7B%22type%22%3A%22auto%22%7D&input_schema=%7Bbroken"),
              "{\"output\":{\"type\":\"auto\"},\"input_schema\":\"{broken\"}");
    /* The same value twice is fine; a different one is reported once. */
    CHECK_STR(url("processor=core&processor=core&processor=pro&processor=&processor=lite"),
              "{\"processor\":\"core\"} problems [{\"loc\":[\"body\",\"processor\"],"
              "\"msg\":\"given more than once with different values\","
              "\"type\":\"value_error\"}]");
}

static void urlencoded_syntax(void)
{
    /* ';' is data, a pair without '=' has an empty value, empty pairs are skipped, and
     * unknown fields (buttons, checkboxes) are ignored. */
    CHECK_STR(url("processor=a;b&&submit=Send&remember&=x&input=1&"),
              "{\"processor\":\"a;b\",\"inputs\":[\"1\"]}");
    CHECK_STR(url("pro%63essor=core&input=a%2Bb+c"),
              "{\"processor\":\"core\",\"inputs\":[\"a+b c\"]}");
    CHECK_STR(url(""), "{}");
    CHECK_STR(decode_n(URLENC, NULL, 0), "{}");
}

static const struct pair submission[] = {
    {"inputs", "What is the GDP of France?\r\n\r\n{\"country\":\"Japan\",\"year\":2024}\r\n"},
    {"input", "caf\xc3\xa9 \"quoted\" & 100% + more"},
    {"processor", "core"},
    {"output", "{\"type\":\"json\",\"json_schema\":{\"type\":\"object\",\"properties\":"
               "{\"gdp\":{\"type\":\"string\"}}}}"},
    {"include_domains", "imf.org, worldbank.org"},
    {"metadata.team", "econ"},
    {"enable_events", "on"},
    {"webhook_url", "https://hooks.example.com/p?a=1&b=2"},
    {"submit", "Start runs"},
    {NULL, NULL},
};

static const char *submission_json =
    "{\"inputs\":[\"What is the GDP of France?\",{\"country\":\"Japan\",\"year\":2024},"
    "\"café \\\"quoted\\\" & 100% + more\"],\"processor\":\"core\",\"output\":{\"type\":"
    "\"json\",\"json_schema\":{\"type\":\"object\",\"properties\":{\"gdp\":{\"type\":"
    "\"string\"}}}},\"include_domains\":"
    "[\"imf.org\",\"worldbank.org\"],\"metadata\":{\"team\":\"econ\"},"
    "\"enable_events\":true,\"webhook_url\":\"https://hooks.example.com/p?a=1&b=2\"}";

static void same_for_every_encoding(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    char err[128];
    json_object *sent = tg_json_parse(submission_json, strlen(submission_json),
                                      TG_JSON_MAX_DEPTH, err, sizeof(err));
    CHECK(sent != NULL);
    char expected[2048];
    snprintf(expected, sizeof(expected), "%s", tg_json_str(sent, NULL));
    json_object_put(sent);

    urlencode(&b, submission);
    CHECK_STR(decode_n(URLENC, b.data, b.len), expected);
    urlencode(&b, submission);
    CHECK_STR(decode_n(URLENC "; charset=UTF-8", b.data, b.len), expected);
    multipart(&b, submission);
    CHECK_STR(decode_n(MULTI, b.data, b.len), expected);
    tg_buf_free(&b);
}

static void multipart_syntax(void)
{
    /* Quoted boundary with odd characters, case-insensitive parameter name, preamble and
     * epilogue, an unquoted name, a part without a name, headers in any case. */
    const char *body =
        "This is the preamble.\r\n"
        "--a'b(c)=d:e\r\n"
        "content-disposition: form-data; name=processor\r\n\r\n"
        "core\r\n"
        "--a'b(c)=d:e\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "no name: ignored\r\n"
        "--a'b(c)=d:e  \r\n"
        "Content-Disposition: form-data; name=\"inputs\"\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "x\r\n--not the boundary\r\ny\r\n"
        "--a'b(c)=d:e--\r\n"
        "epilogue --a'b(c)=d:e\r\n";
    CHECK_STR(decode("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a'b(c)=d:e\"", body),
              "{\"processor\":\"core\",\"inputs\":[\"x\",\"--not the boundary\",\"y\"]}");
    /* LF-only line ends, and a final boundary without a line end. */
    CHECK_STR(decode(MULTI, "--XyZ\nContent-Disposition: form-data; name=\"input\"\n\nhi\n"
                            "--XyZ--"),
                "{\"inputs\":[\"hi\"]}");
    /* Escaped quotes in a quoted name, and a filename that mentions name=. */
    CHECK_STR(decode(MULTI, "--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\n"
                            "1\r\n--XyZ\r\nContent-Disposition: form-data; filename=\"x; "
                            "name=input\"; name=\"inputs_file\"\r\n\r\nfrom file\r\n"
                            "--XyZ\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n"
                            "\r\n--XyZ--\r\n"),
              "{\"inputs\":[\"from file\"]}");
    /* Empty parts and a part whose headers run to the delimiter. */
    CHECK_STR(decode(MULTI, "--XyZ\r\n--XyZ\r\n\r\n--XyZ\r\nContent-Disposition: form-data; "
                            "name=processor\r\n--XyZ--"),
              "{}");
    CHECK_STR(decode(MULTI, "--XyZ--\r\n"), "{}");
    /* Other uploads are ignored whatever they hold. */
    static const char bin[] = "--XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; "
                              "filename=\"a.png\"\r\n\r\n\x89PNG\0\xff\xfe\r\n--XyZ--\r\n";
    CHECK_STR(decode_n(MULTI, bin, sizeof(bin) - 1), "{}");
}

/* A multipart body with one file part named inputs_file. */
static const char *upload(const char *filename, const char *type, const char *content)
{
    static char body[4096];
    snprintf(body, sizeof(body),
             "--XyZ\r\nContent-Disposition: form-data; name=\"inputs_file\"; filename=\"%s\"\r\n"
             "Content-Type: %s\r\n\r\n%s\r\n--XyZ--\r\n", filename, type, content);
    return decode(MULTI, body);
}

static void inputs_file_lines(void)
{
    CHECK_STR(upload("list.txt", "text/plain", "a\r\n\r\n  b  \n{\"k\":\"v\"}\n"),
              "{\"inputs\":[\"a\",\"b\",{\"k\":\"v\"}]}");
    CHECK_STR(upload("", "application/octet-stream", ""), "{}"); /* no file chosen */
    CHECK_STR(upload("bom.txt", "text/plain", "\xef\xbb\xbfx"), "{\"inputs\":[\"x\"]}");
}

static void inputs_file_csv(void)
{
    const char *csv = "company,note\r\n"
                      "\"Acme, Inc.\",\"said \"\"hi\"\"\nthen left\"\r\n"
                      "\r\n"
                      "Beta,\r\n"
                      "\"\",plain";
    const char *want = "{\"inputs\":[{\"company\":\"Acme, Inc.\",\"note\":\"said \\\"hi\\\"\\n"
                       "then left\"},{\"company\":\"Beta\",\"note\":\"\"},{\"company\":\"\","
                       "\"note\":\"plain\"}]}";
    CHECK_STR(upload("companies.CSV", "application/octet-stream", csv), want);
    CHECK_STR(upload("export", "text/csv; charset=utf-8", csv), want);
    /* LF line ends, a spreadsheet BOM, one column. */
    CHECK_STR(upload("one.csv", "text/csv", "\xef\xbb\xbfname\nAcme\nBeta\n"),
              "{\"inputs\":[{\"name\":\"Acme\"},{\"name\":\"Beta\"}]}");
    CHECK_STR(upload("head.csv", "text/csv", "name\n"), "{}");
}

static void inputs_file_csv_problems(void)
{
    CHECK_STR(upload("x.csv", "text/csv", "a,b\n1,2\n3\n\n4,5,6\n7,8"),
              "{\"inputs\":[{\"a\":\"1\",\"b\":\"2\"},{\"a\":\"7\",\"b\":\"8\"}]} problems "
              "[{\"loc\":[\"body\",\"inputs_file\",3],\"msg\":\"row 3 of the CSV has 1 fields "
              "but the header has 2\",\"type\":\"value_error\"},{\"loc\":[\"body\","
              "\"inputs_file\",5],\"msg\":\"row 5 of the CSV has 3 fields but the header has "
              "2\",\"type\":\"value_error\"}]");
    CHECK_STR(upload("x.csv", "text/csv", "a\n1\n\"open\nstill open"),
              "{\"inputs\":[{\"a\":\"1\"}]} problems [{\"loc\":[\"body\",\"inputs_file\",3],"
              "\"msg\":\"a quoted CSV field is not closed\",\"type\":\"value_error\"}]");
    CHECK_STR(upload("x.csv", "text/csv", "a,a\n1,2"),
              "{} problems [{\"loc\":[\"body\",\"inputs_file\",1],\"msg\":\"the CSV header "
              "names a column \\\"a\\\" twice\",\"type\":\"value_error\"}]");
    CHECK_STR(upload("x.csv", "text/csv", "a,\n1,2"),
              "{} problems [{\"loc\":[\"body\",\"inputs_file\",1],\"msg\":\"column 2 of the "
              "CSV header has no name\",\"type\":\"value_error\"}]");
}

static void urlencoded_errors(void)
{
    CHECK_STR(url("input=%G1"), "error: bad percent escape at byte 6 of the body");
    CHECK_STR(url("input=ab%4"), "error: bad percent escape at byte 8 of the body");
    CHECK_STR(url("input=ab%"), "error: bad percent escape at byte 8 of the body");
    CHECK_STR(url("x=1&in%zzput=a"), "error: bad percent escape at byte 6 of the body");
    CHECK_STR(url("input=%C3%28"), "error: the value of field \"input\" is not valid UTF-8");
    CHECK_STR(url("input=%C0%AF"), "error: the value of field \"input\" is not valid UTF-8");
    CHECK_STR(url("input=%ED%A0%80"), "error: the value of field \"input\" is not valid UTF-8");
    CHECK_STR(url("input=%F4%90%80%80"),
              "error: the value of field \"input\" is not valid UTF-8");
    CHECK_STR(url("input=%E2%82"), "error: the value of field \"input\" is not valid UTF-8");
    CHECK_STR(url("input=a%00b"), "error: the value of field \"input\" contains a NUL byte");
    CHECK_STR(url("in%FFput=a"), "error: a field name is not valid UTF-8 (\"in?put\")");
    CHECK_STR(decode_n(URLENC, "input=a\0b", 9),
              "error: the value of field \"input\" contains a NUL byte");
    /* Even ignored fields must decode. */
    CHECK_STR(url("submit=%ZZ&input=a"), "error: bad percent escape at byte 7 of the body");
    /* 4-byte characters are fine. */
    CHECK_STR(url("input=%F0%9F%98%80"), "{\"inputs\":[\"\xf0\x9f\x98\x80\"]}");
    /* Not a form at all, and the detail is left alone on errors. */
    CHECK_STR(decode("application/json", "{}"),
              "error: the body is not a form (application/x-www-form-urlencoded or "
              "multipart/form-data)");
    CHECK_STR(decode_n(NULL, "", 0),
              "error: the body is not a form (application/x-www-form-urlencoded or "
              "multipart/form-data)");
}

static void multipart_errors(void)
{
    const char *ok = "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\na\r\n--XyZ--";
    CHECK_STR(decode("multipart/form-data", ok),
              "error: the multipart/form-data Content-Type has no boundary");
    CHECK_STR(decode("multipart/form-data; boundary=", ok),
              "error: the multipart/form-data Content-Type has no boundary");
    CHECK_STR(decode("multipart/form-data; boundary=\"\"", ok),
              "error: the multipart/form-data Content-Type has no boundary");
    char ct[200], body[400];
    char b70[71], b71[72];
    memset(b70, 'b', 70);
    b70[70] = '\0';
    memset(b71, 'b', 71);
    b71[71] = '\0';
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", b70);
    snprintf(body, sizeof(body), "--%s\r\nContent-Disposition: form-data; name=input\r\n\r\n"
             "a\r\n--%s--\r\n", b70, b70);
    CHECK_STR(decode(ct, body), "{\"inputs\":[\"a\"]}");
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s; x=1", b71);
    CHECK_STR(decode(ct, body), "error: the multipart boundary is longer than 70 characters");

    CHECK_STR(decode(MULTI, "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\na\r\n"),
              "error: the multipart body does not end with its closing boundary");
    CHECK_STR(decode(MULTI, "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\na\r\n"
                            "--XyZ\r\n"),
              "error: the multipart body does not end with its closing boundary");
    CHECK_STR(decode(MULTI, "--XyZ-"), "error: the multipart body does not contain its boundary");
    CHECK_STR(decode(MULTI, ""), "error: the multipart body does not contain its boundary");
    CHECK_STR(decode(MULTI, "--XyZW\r\n--XyZW--"),
              "error: the multipart body does not contain its boundary");
    CHECK_STR(decode(MULTI, "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\n"
                            "\xc3\x28\r\n--XyZ--"),
              "error: the value of field \"input\" is not valid UTF-8");
    static const char nul[] = "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\n"
                              "a\0b\r\n--XyZ--";
    CHECK_STR(decode_n(MULTI, nul, sizeof(nul) - 1),
              "error: the value of field \"input\" contains a NUL byte");
    CHECK_STR(upload("x.csv", "text/csv", "a\n\xff"),
              "error: the value of field \"inputs_file\" is not valid UTF-8");
}

static void multipart_limits(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    for (int i = 0; i < TG_FORM_MAX_PARTS; i++)
        tg_buf_adds(&b, "--XyZ\r\nContent-Disposition: form-data; name=input\r\n\r\nx\r\n");
    tg_buf_adds(&b, "--XyZ--");
    const char *got = decode_n(MULTI, b.data, b.len);
    CHECK(strncmp(got, "{\"inputs\":[\"x\",", 15) == 0);
    tg_buf_clear(&b);
    for (int i = 0; i <= TG_FORM_MAX_PARTS; i++)
        tg_buf_adds(&b, "--XyZ\r\n\r\n\r\n");
    tg_buf_adds(&b, "--XyZ--");
    CHECK_STR(decode_n(MULTI, b.data, b.len),
              "error: the multipart body has more than 10000 parts");

    tg_buf_clear(&b);
    tg_buf_adds(&b, "--XyZ\r\nContent-Disposition: form-data; name=input\r\nX-Long: ");
    for (int i = 0; i < TG_FORM_MAX_PART_HEADERS; i++)
        tg_buf_adds(&b, "x");
    tg_buf_adds(&b, "\r\n\r\na\r\n--XyZ--");
    CHECK_STR(decode_n(MULTI, b.data, b.len),
              "error: a multipart part has more than 16384 bytes of headers");
    tg_buf_free(&b);
}

static void big_textarea(void)
{
    /* 10,000 lines of about 100 bytes each: a 1 MiB textarea decoded in one go. */
    struct tg_buf b;
    tg_buf_init(&b, 2 << 20);
    tg_buf_adds(&b, "processor=core&inputs=");
    for (int i = 0; i < 10000; i++)
        tg_buf_printf(&b, "Question+number+%05d%%3A+what+is+the+population+of+the+city+with+"
                      "the+tallest+building+in+the+world%%3F%%0D%%0A", i);
    int64_t start = tg_mono_us();
    char err[128];
    json_object *detail = json_object_new_array();
    json_object *obj = NULL;
    int rc = tg_form_decode(URLENC, b.data, b.len, &obj, detail, err, sizeof(err));
    int64_t took = tg_mono_us() - start;
    fprintf(stderr, "     big_textarea: %zu bytes, 10000 lines decoded in %.1f ms\n", b.len,
            (double)took / 1000.0);
    CHECK(rc == TG_OK);
    CHECK(b.len > 1000000);
    json_object *inputs = tg_json_get(obj, "inputs");
    CHECK(json_object_array_length(inputs) == 10000);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(inputs, 9999)),
              "Question number 09999: what is the population of the city with the tallest "
              "building in the world?");
    CHECK(json_object_array_length(detail) == 0);
    json_object_put(obj);
    json_object_put(detail);
    tg_buf_free(&b);
}

static void too_many_inputs(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 4 << 20);
    tg_buf_adds(&b, "inputs=");
    for (int i = 0; i <= TG_FORM_MAX_INPUTS; i++)
        tg_buf_add(&b, "a%0A", 4);
    tg_buf_adds(&b, "&input=b");
    char err[128];
    json_object *detail = json_object_new_array();
    json_object *obj = NULL;
    int rc = tg_form_decode(URLENC, b.data, b.len, &obj, detail, err, sizeof(err));
    CHECK(rc == TG_OK);
    CHECK(json_object_array_length(tg_json_get(obj, "inputs")) == TG_FORM_MAX_INPUTS);
    CHECK_STR(tg_json_str(detail, NULL),
              "[{\"loc\":[\"body\",\"inputs\"],\"msg\":\"a submission holds at most "
              "1000000 inputs\",\"type\":\"too_long\"}]");
    json_object_put(obj);
    json_object_put(detail);
    tg_buf_free(&b);
}

static void detail_untouched_on_error(void)
{
    json_object *detail = json_object_new_array();
    json_object *obj = NULL;
    char err[128];
    /* The first pair adds a problem before the second turns out undecodable. */
    const char *body = "enable_events=maybe&x=%";
    int rc = tg_form_decode(URLENC, body, strlen(body), &obj, detail, err, sizeof(err));
    CHECK(rc == TG_EINVAL);
    CHECK(obj == NULL);
    CHECK(json_object_array_length(detail) == 0);
    json_object_put(obj);
    json_object_put(detail);
}

static void is_form(void)
{
    CHECK(tg_form_is_form("application/x-www-form-urlencoded"));
    CHECK(tg_form_is_form("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"));
    CHECK(tg_form_is_form("multipart/form-data; boundary=x"));
    CHECK(tg_form_is_form(" multipart/form-data"));
    CHECK(!tg_form_is_form("application/json"));
    CHECK(!tg_form_is_form("multipart/mixed; boundary=x"));
    CHECK(!tg_form_is_form("multipart/form-datax"));
    CHECK(!tg_form_is_form(""));
    CHECK(!tg_form_is_form(NULL));
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"urlencoded_textarea", urlencoded_textarea},
        {"json_object_lines", json_object_lines},
        {"repeated_input_and_order", repeated_input_and_order},
        {"domains", domains},
        {"metadata", metadata},
        {"enable_events", enable_events},
        {"single_fields", single_fields},
        {"urlencoded_syntax", urlencoded_syntax},
        {"same_for_every_encoding", same_for_every_encoding},
        {"multipart_syntax", multipart_syntax},
        {"inputs_file_lines", inputs_file_lines},
        {"inputs_file_csv", inputs_file_csv},
        {"inputs_file_csv_problems", inputs_file_csv_problems},
        {"urlencoded_errors", urlencoded_errors},
        {"multipart_errors", multipart_errors},
        {"multipart_limits", multipart_limits},
        {"big_textarea", big_textarea},
        {"too_many_inputs", too_many_inputs},
        {"detail_untouched_on_error", detail_untouched_on_error},
        {"is_form", is_form},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
