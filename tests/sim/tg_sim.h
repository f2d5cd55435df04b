/* tg_sim.h: what the parts of the upstream simulator share: the server and command line
 * (tg_sim.c), the HTTP/1.1 protocol (tg_sim_http.c), the imitated Task Group API
 * (tg_sim_api.c) and its body checks (tg_sim_check.c), the /_sim control side with the
 * request log and faults (tg_sim_ctl.c), the webhooks runs send (tg_sim_webhook.c), and
 * helpers (tg_sim_util.c). Test code only. */
#ifndef TG_SIM_H
#define TG_SIM_H

#include <json-c/json.h>
#include <pthread.h>
#include <stddef.h>

#include "tg_http_reason.h"

/* The one mutex around all shared state: groups, request log, faults, counters. Every
 * read or write of that state, and every json-c object it owns, happens under it. */
extern pthread_mutex_t sim_lock;

/* A request as the HTTP layer hands it to the handlers; all of it is owned by the HTTP
 * layer and stays valid until the response is sent. */
struct sim_header {
    char *name;  /* lowercased; unique (repeated headers are joined with ", ") */
    char *value; /* trimmed */
};

struct sim_request {
    char method[16];
    char *path;  /* raw path without the query */
    char *query; /* text after '?', "" when there is none */
    struct sim_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated; NULL when the request had no body */
    size_t body_len;
    int json_valid;            /* the body is one strict JSON text (even "null") */
    struct json_object *json;  /* that text parsed; NULL for "null" or invalid */
    size_t json_error_at;      /* byte offset of the parse error when invalid */
    /* Set by the server (tg_sim.c) after the HTTP layer read the request: */
    long conn_id;  /* the connection it came on: 1, 2, ... in the order they were accepted */
    long conn_nth; /* its place on that connection: 1 for the first request, 2 on reuse, ... */
};

/* A response; body is malloc'ed and owned by the response (sim_response_free). */
struct sim_response {
    int status;
    char *body;
    size_t body_len;
    char *retry_after; /* malloc'ed value of a Retry-After header, or NULL */
};

/* A growing byte buffer with a hard maximum (a la curl's dynbuf). Appends return 0, or -1
 * when the maximum would be passed; the buffer then keeps what it had. */
struct sim_buf {
    char *p; /* NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    size_t max;
};

/* ---- shared helpers (tg_sim_util.c) --------------------------------------------------- */

/* Allocation that never returns NULL: the simulator is a test tool, and running out of
 * memory there is best reported by stopping loudly. */
void *sim_xmalloc(size_t n);
void *sim_xrealloc(void *p, size_t n);
char *sim_xstrdup(const char *s);
char *sim_xstrndup(const char *s, size_t n);

int sim_buf_add(struct sim_buf *b, const void *data, size_t n);
int sim_buf_adds(struct sim_buf *b, const char *s);
int sim_buf_addf(struct sim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as a JSON string literal; s must be valid UTF-8 (see sim_utf8_clean). */
int sim_buf_add_json_string(struct sim_buf *b, const char *s, size_t n);
void sim_buf_free(struct sim_buf *b);

/* A malloc'ed copy of s[0..n) with every invalid UTF-8 sequence replaced by U+FFFD. */
char *sim_utf8_clean(const char *s, size_t n, size_t *out_len);
/* Number of code points in a valid UTF-8 string. */
size_t sim_utf8_length(const char *s, size_t n);

/* The value of header lname (lowercase), or NULL. */
const char *sim_header(const struct sim_request *req, const char *lname);
/* Fills buf (at least 28 bytes) with the current time as 2025-04-24T18:56:22.513132Z. */
void sim_now_rfc3339(char *buf, size_t size);
/* The same for the time ago_ms milliseconds ago. */
void sim_rfc3339_ago(char *buf, size_t size, long long ago_ms);
/* Milliseconds on the monotonic clock. */
long long sim_mono_ms(void);
/* Writes prefix followed by 32 random hex digits into out. */
void sim_random_id(char *out, size_t size, const char *prefix);
/* Finds query parameter name in query ("a=1&b=2") and percent-decodes its value into out
 * ('+' is a space; tg_query_decode_form): 1 when found, 0 when absent, -1 when its value is
 * malformed (a bad escape, a NUL, invalid UTF-8) or longer than size - 1. */
int sim_query_get(const char *query, const char *name, char *out, size_t size);
/* Fills buf with n random bytes from the kernel. */
void sim_random(void *buf, size_t n);
/* Sleeps ms milliseconds (restarting after signals). */
void sim_sleep_ms(long ms);

/* Sets resp to status with obj serialized as its body; takes ownership of obj. */
void sim_response_json(struct sim_response *resp, int status, struct json_object *obj);
/* The ErrorResponse shape {"type":"error","error":{"ref_id","message"}}. */
void sim_response_error(struct sim_response *resp, int status, const char *message);
/* The HTTPValidationError shape with one entry at loc ["body"] (or ["body", at] when
 * at >= 0). */
void sim_response_detail(struct sim_response *resp, const char *msg, const char *type, long at);
void sim_response_free(struct sim_response *resp);

/* ---- HTTP/1.1 (tg_sim_http.c) -------------------------------------------------------- */

#define SIM_CONN_BUF 65536 /* a connection's read buffer; also the header section limit */
#define SIM_BODY_MAX ((size_t)64 * 1024 * 1024)

/* One client connection; buf (SIM_CONN_BUF bytes) holds in [start, end) what was received
 * and not yet consumed, which may be the start of a pipelined next request. */
struct sim_conn {
    int fd;
    int http10; /* the last request read was HTTP/1.0 */
    char *buf;
    size_t start, end;
};

/* Outcomes of reading a request. */
enum sim_rd {
    SIM_RD_OK,
    SIM_RD_EOF,           /* the client closed between requests */
    SIM_RD_IOERR,         /* the connection broke mid-request */
    SIM_RD_BAD,           /* 400 */
    SIM_RD_TOOBIG,        /* 413: body past SIM_BODY_MAX */
    SIM_RD_HEAD_TOOBIG,   /* 431 */
    SIM_RD_UNSUPPORTED    /* 501: a transfer coding other than chunked */
};

/* Reads one request into req (zeroed by the caller; free it with sim_request_free even on
 * failure). *keep says whether the connection may serve another request after it. */
enum sim_rd sim_http_read(struct sim_conn *c, struct sim_request *req, int *keep);
void sim_request_free(struct sim_request *req);
/* Sends resp in one write, with "Connection: close" unless keep; 0 or -1. */
int sim_http_send(const struct sim_conn *c, const struct sim_response *resp, int keep,
                  int head_only);
/* A server-sent event stream: its head (chunked for HTTP/1.1, else closed at the end),
 * one event ("event: <type>\ndata: <json>\n\n") per write, and its end. 0 or -1 when
 * the client is gone. */
int sim_http_stream_begin(const struct sim_conn *c, int keep);
int sim_http_stream_event(const struct sim_conn *c, const char *type, const char *json,
                          size_t len);
int sim_http_stream_end(const struct sim_conn *c);

/* ---- the imitated API (tg_sim_api.c, tg_sim_check.c) --------------------------------- */

/* The valid keys (when none are given every non-empty key is valid, its own account),
 * how long runs take (ms; -1: until completed through /_sim) and the pause between two
 * stream events. */
void sim_api_init(char **keys, size_t nkeys, long run_ms, long stream_interval_ms);
/* Which operation a request is, for matching faults. */
enum sim_op { SIM_OP_OTHER, SIM_OP_CREATE_GROUP, SIM_OP_ADD_RUNS, SIM_OP_GET_GROUP,
              SIM_OP_GET_GROUP_RUN, SIM_OP_STREAM_RUNS, SIM_OP_STREAM_EVENTS, SIM_OP_GET_RUN,
              SIM_OP_GET_RESULT };
enum sim_op sim_api_classify(const struct sim_request *req);
/* Whether op answers with a server-sent event stream (sim_stream_handle). */
int sim_api_is_stream(enum sim_op op);
/* Processes an API request that is not a stream: checks, creates what it asks for, fills
 * resp. May block (a run result waits for the run). */
void sim_api_handle(const struct sim_request *req, struct sim_response *resp);
/* The account (API key) of req when it is valid; otherwise fills resp with the 401 and
 * returns NULL. */
const char *sim_api_account(const struct sim_request *req, struct sim_response *resp);

/* How a stream is cut short by a fault: not at all, by a broken first event after which
 * the stream ends, or by stopping right after the first event (the caller then resets or
 * hangs the connection). */
enum sim_cut { SIM_CUT_NONE, SIM_CUT_MALFORMED, SIM_CUT_STOP };
/* What became of a stream. */
enum sim_streamed {
    SIM_STREAM_ANSWER, /* nothing sent: resp holds an answer (an error) to send instead */
    SIM_STREAM_DONE,   /* sent to the end; the connection may serve another request */
    SIM_STREAM_CLOSE,  /* sent, or broken off by the client; the connection must close */
    SIM_STREAM_CUT     /* stopped after the first event as cut asked */
};
/* Serves a stream operation on c (tg_sim_stream.c); seq is its request log entry, marked
 * 200 before the stream starts. */
enum sim_streamed sim_stream_handle(const struct sim_conn *c, const struct sim_request *req,
                                    int keep, enum sim_cut cut, long seq,
                                    struct sim_response *resp);
/* The /_sim/groups/{id} view, or a 404. */
void sim_api_dump_group(const char *id, struct sim_response *resp);
/* Totals since start; call with sim_lock held. */
void sim_api_counts(long *runs_created, long *groups);

/* The validation errors (FastAPI's "detail" list) of a create-group or add-runs body,
 * which must be a JSON object; a new array, empty when the body is fine. */
struct json_object *sim_check_create_group(struct json_object *body);
struct json_object *sim_check_add_runs(struct json_object *body);
/* The first processor of inputs (a checked "inputs" array) that Parallel does not offer,
 * or NULL; the string belongs to inputs. */
const char *sim_check_processors(struct json_object *inputs);

/* ---- request log and faults (tg_sim_ctl.c) ------------------------------------------- */

enum sim_fault_kind { SIM_FAULT_STATUS, SIM_FAULT_DELAY, SIM_FAULT_MALFORMED, SIM_FAULT_RESET,
                      SIM_FAULT_HANG };

/* One application of a fault, copied out of the queue. */
struct sim_fault {
    enum sim_fault_kind kind;
    int status;
    char *body;        /* malloc'ed or NULL */
    char *retry_after; /* malloc'ed or NULL */
    long delay_ms;
    int apply;
};

/* Records an API request in the log; returns its sequence number. */
long sim_log_request(const struct sim_request *req);
/* Sets the answered status of entry seq (gone after a clear: then nothing happens). */
void sim_log_status(long seq, int status);
/* Takes the fault that applies to req, if any: returns 1 and fills f (free it with
 * sim_fault_free), or returns 0. */
int sim_fault_take(const struct sim_request *req, struct sim_fault *f);
void sim_fault_free(struct sim_fault *f);
/* The name of a fault kind, for the stderr log. */
const char *sim_fault_name(enum sim_fault_kind kind);
/* Handles a request under /_sim. */
void sim_ctl_handle(const struct sim_request *req, struct sim_response *resp);

/* ---- webhooks (tg_sim_webhook.c) ----------------------------------------------------- */

/* Reads the secrets deliveries are signed with (none: they go unsigned; exits 2 on one
 * that is not usable) and starts the thread that sends them. */
void sim_webhook_init(char **secrets, size_t n, int quiet);
/* Queues a task_run.status delivery of body (malloc'ed JSON text, taken over) for run_id
 * to url (copied); call with sim_lock held. */
void sim_webhook_queue(const char *url, const char *run_id, char *body);
/* Handles GET /_sim/webhooks and POST /_sim/webhooks/resend. */
void sim_webhook_ctl(const struct sim_request *req, struct sim_response *resp);

#endif
