"""Simplified submissions in full (POST /v1/runs): JSON, urlencoded and multipart bodies, the
merge of global defaults, team presets and the submission, validation before anything goes
upstream, unusual but valid shapes, byte-identical forwarding across body encodings,
chunking, group creation, HTML answers, a newcomer's form post, and client headers passed
upstream (checked before anything is created; a request that cannot be sent is failed).

Real nginx, the real daemon and the upstream simulator (tests/sim) through the harness;
one Stack per test class, the simulator's request log cleared before every test.
Run through ctest (`ctest -R test_submissions`) or directly with TG_BIN, TG_SIM, TG_NGINX
and TG_SOURCE_DIR set."""

import html
import json
import os
import re
import secrets
import sys
import unittest
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Stack, fcgi_exchange, strip_run_tags  # noqa: E402

CREATE_GROUP_RE = re.compile(r"^/v1(beta)?/tasks/groups$")
ADD_RUNS_RE = re.compile(r"^/v1(beta)?/tasks/groups/([^/]+)/runs$")
RUN_ID_RE = re.compile(r"^trun_[0-9a-f]+$")

JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"
ACCEPT_JSON = "application/json"
ACCEPT_BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"

BETA_EVENTS = "events-sse-2025-07-24"
BETA_WEBHOOK = "webhook-2025-08-12"
BETA_MCP = "mcp-server-2025-07-17"
BETA_FIELD_BASIS = "field-basis-2025-11-25"

# The presets most classes start from (see standard_teams).
ALPHA_DEFAULT = {"processor": "core"}
ALPHA_STRICT = {
    "processor": "core",
    "metadata": {"cc": "R1"},
    "source_policy": {"exclude_domains": ["reddit.com"]},
    "enforced": ["source_policy.exclude_domains", "metadata.cc"],
    "allowed_processors": ["core", "pro"],
}
ALPHA_DEEP = {"processor": "pro", "default_task_spec": {"output_schema": {"type": "auto"}}}
ALPHA_EVENTS = {"processor": "core", "enable_events": True}
BETA_DEFAULT = {
    "processor": "core",
    "metadata": {"cost_center": "R&D", "team": "beta"},
    "source_policy": {"exclude_domains": ["reddit.com"], "include_domains": ["example.com"]},
    "default_task_spec": {"output_schema": "a short factual answer"},
}


# ---- helpers ------------------------------------------------------------------------------

def new_key(team):
    """A Parallel-looking key unique to this run."""
    return "par-%s-%s" % (team, secrets.token_hex(16))


def create_group_requests(reqs):
    return [r for r in reqs if r["method"] == "POST" and CREATE_GROUP_RE.match(r["path"])]


def add_runs_requests(reqs):
    return [r for r in reqs if r["method"] == "POST" and ADD_RUNS_RE.match(r["path"])]


def group_of(req):
    return ADD_RUNS_RE.match(req["path"]).group(2)


def sim_cursors(group, call_index):
    """The (run_cursor, event_cursor) the simulator returns for the call_index-th add-runs
    call to group (0-based; the first call of a group has none)."""
    if call_index == 0:
        return None, None
    hexid = group[len("tgrp_"):]
    return "rcur_%s_%d" % (hexid, call_index), "ecur_%s_%d" % (hexid, call_index)


def beta_names(value):
    """The names in a parallel-beta header value, in order, as sent."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


def urlencoded(fields):
    """A browser's application/x-www-form-urlencoded body for [(name, value), ...]:
    UTF-8, spaces as '+', everything else percent-encoded."""
    return urllib.parse.urlencode(list(fields), encoding="utf-8").encode("ascii")


def multipart(parts, boundary=None):
    """A browser's multipart/form-data body for [(name, value), ...] where value is a str
    (a text field) or (filename, content_type, bytes) (a file). Names go in raw UTF-8, as
    browsers send them. Returns (body, content_type)."""
    boundary = boundary or "----taskgateTestBoundary" + secrets.token_hex(8)
    out = bytearray()
    for name, value in parts:
        out += b"--" + boundary.encode("ascii") + b"\r\n"
        if isinstance(value, tuple):
            filename, ctype, data = value
            out += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
                    % (name, filename)).encode("utf-8")
            out += ("Content-Type: %s\r\n\r\n" % ctype).encode("ascii")
            out += data
        else:
            out += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode("utf-8")
            out += value.encode("utf-8")
        out += b"\r\n"
    out += b"--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary


def expected_body(inputs, fields, spec=None):
    """The add-runs body the gateway should send: every input with the merged fields, the
    task spec once as default_task_spec."""
    body = {"inputs": [dict({"input": i}, **fields) for i in inputs]}
    if spec is not None:
        body["default_task_spec"] = spec
    return body


def nested(depth, leaf="bottom"):
    """An object nested depth levels deep: {"d":{"d":…{"d":leaf}}}."""
    v = leaf
    for _ in range(depth):
        v = {"d": v}
    return v


# ---- the shared-stack base -----------------------------------------------------------------

class SharedStackTest(unittest.TestCase):
    """One Stack per class (tests that do not interfere share it); the simulator's log and
    faults are cleared before every test. The stack's directory is kept when any test of the
    class failed."""

    STACK = {}  # Stack keyword arguments

    @classmethod
    def setUpClass(cls):
        cls.failed = False
        cls.s = Stack(name=cls.__name__, **dict(cls.STACK))
        cls.s.start()  # stops what it started and raises when a part fails
        try:
            cls.tokens = {}
            cls.keys = {}
            cls.prepare()
        except BaseException:
            cls.s.stop(keep=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.stop(keep=cls.failed)

    @classmethod
    def prepare(cls):
        """Adds teams and tokens; standard_teams by default."""
        cls.standard_teams()

    @classmethod
    def team(cls, name, preset=None, presets=None):
        key = new_key(name)
        cls.keys[name] = key
        cls.s.add_team(name, key, preset=preset)
        for pname, body in (presets or {}).items():
            cls.s.set_preset(name, pname, body)
        cls.tokens[name], _ = cls.s.issue_token(name, label=name + "-tests")

    @classmethod
    def standard_teams(cls):
        cls.team("alpha", ALPHA_DEFAULT, {"strict": ALPHA_STRICT, "deep": ALPHA_DEEP,
                                          "events": ALPHA_EVENTS})
        cls.team("beta", BETA_DEFAULT)
        cls.team("bare")  # no preset at all

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        try:
            return super().run(result)
        finally:
            if result is not None and len(result.failures) + len(result.errors) > before:
                type(self).failed = True

    def setUp(self):
        self.s.sim_clear_faults()
        self.s.sim_clear()

    def tearDown(self):
        self.assertTrue(self.s.daemon_alive(), "the daemon died:\n" +
                        self.s.daemon_log()[-3000:])

    # ---- requests ----

    def post(self, body, content_type=JSON_CT, team="alpha", token=None, headers=None,
             accept=ACCEPT_JSON, timeout=60):
        """POST /v1/runs. body: a dict/list (sent as JSON), str or bytes (as is). The team's
        token goes in Authorization unless token is False (none) or a string (that one).
        Returns (status, parsed JSON or None, headers, raw bytes)."""
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        hdrs = {}
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if accept is not None:
            hdrs["Accept"] = accept
        if token is None:
            token = self.tokens[team]
        if token:
            hdrs["Authorization"] = "Bearer " + token
        hdrs.update(headers or {})
        status, rh, raw = self.s.http("POST", "/v1/runs", body, hdrs, timeout)
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            parsed = None
        return status, parsed, rh, raw

    def post_form(self, fields, **kw):
        return self.post(urlencoded(fields), FORM_CT, **kw)

    def post_multipart(self, parts, **kw):
        body, ctype = multipart(parts)
        return self.post(body, ctype, **kw)

    def assertAccepted(self, status, answer, n_inputs, what=""):
        self.assertEqual(status, 200, "%s: POST /v1/runs answered %d: %r" % (what, status, answer))
        self.assertIsInstance(answer, dict, what)
        self.assertEqual(answer.get("status"), "accepted", answer)
        self.assertRegex(answer.get("submission_id") or "", r"^sub_", answer)
        self.assertRegex(answer.get("taskgroup_id") or "", r"^tgrp_", answer)
        ids = answer.get("run_ids") or []
        self.assertEqual(len(ids), n_inputs, "%s: %r" % (what, answer))
        self.assertEqual(len(set(ids)), n_inputs, "run ids repeat: %r" % answer)
        for rid in ids:
            self.assertRegex(rid, RUN_ID_RE)
        return answer

    def only_add_runs(self, n=1):
        """The add-runs requests the simulator received (exactly n)."""
        reqs = self.sim_requests()
        adds = add_runs_requests(reqs)
        self.assertEqual(len(adds), n, "upstream requests: %s" % json.dumps(reqs)[:3000])
        return adds

    def assertErrorShape(self, body, status=None):
        what = "answer%s: %r" % (" to a %d" % status if status else "", body)
        self.assertIsInstance(body, dict, what)
        self.assertEqual(body.get("type"), "error", what)
        err = body.get("error")
        self.assertIsInstance(err, dict, what)
        self.assertIsInstance(err.get("ref_id"), str, what)
        self.assertTrue(err["ref_id"], what)
        self.assertIsInstance(err.get("message"), str, what)
        self.assertTrue(err["message"], what)
        return err

    def assertValidationShape(self, body):
        self.assertIsInstance(body, dict, body)
        detail = body.get("detail")
        self.assertIsInstance(detail, list, body)
        self.assertTrue(detail, "a 422 with no problems: %r" % body)
        for p in detail:
            self.assertIsInstance(p, dict, body)
            self.assertIsInstance(p.get("loc"), list, p)
            self.assertEqual(p["loc"][:1], ["body"], p)
            self.assertIsInstance(p.get("msg"), str, p)
            self.assertTrue(p["msg"], p)
            self.assertIsInstance(p.get("type"), str, p)
            self.assertTrue(p["type"], p)
        return detail

    def sim_requests(self):
        """The simulator's request log, read leniently: when invalid UTF-8 got through to
        the simulator its log holds those bytes, which Stack.sim_requests cannot decode."""
        status, _, raw = Stack._request(self.s.sim_port, "GET", "/_sim/requests", None, {}, 10)
        self.assertEqual(status, 200, raw[:300])
        # The run tag is checked by test_idempotency.py; here the bodies are compared as
        # the merge made them.
        return strip_run_tags(json.loads(raw.decode("utf-8", errors="replace")))

    def assertNothingUpstream(self, what=""):
        reqs = self.sim_requests()
        self.assertEqual(reqs, [], "%s: a refused submission went upstream: %s"
                         % (what, json.dumps(reqs)[:2000]))

    def count_state(self, state, http_status=None):
        if http_status is None:
            return self.s.db_value("SELECT count(*) FROM audit_submissions WHERE state = ?",
                                   (state,))
        return self.s.db_value("SELECT count(*) FROM audit_submissions WHERE state = ? AND "
                               "http_status = ?", (state, http_status))

    def assertNoPending(self):
        rows = self.s.db("SELECT submission_id FROM audit_submissions WHERE state = 'pending'")
        self.assertEqual([r[0] for r in rows], [], "submissions left pending")


# ---- 3. bad bodies ---------------------------------------------------------------------------

MAX_INPUTS = 50  # max_inputs_per_submission in BadBodiesTest's stack


class Bad:
    """One bad body: what to send and what must come back.

    kind:   "json" (body is a dict/list/str, or bytes sent as is), "form" (a list of pairs),
            "multipart" (a list of parts), or "raw" (bytes with content_type)
    loc:    a loc one of the problems must have; locs: any of these; loc_prefix: a problem's
            loc must start with it (for parse errors, which may add an offset)
    status: the answer's status (a tuple: any of them); 422 answers carry detail, others the
            error shape
    msg_re: a regex some problem's msg (or the error message) must match
    """

    def __init__(self, name, body, loc=None, status=422, kind="json", team="alpha",
                 locs=None, loc_prefix=None, msg_re=None, content_type=None):
        self.name, self.body, self.status, self.kind, self.team = name, body, status, kind, team
        self.locs = [loc] if loc is not None else list(locs or [])
        self.loc_prefix = loc_prefix
        self.msg_re = msg_re
        self.content_type = content_type


def long_inputs(n):
    return ["question %d" % i for i in range(n)]


BAD_JSON = [
    # inputs
    Bad("inputs missing", {"processor": "core"}, ["body", "inputs"]),
    Bad("inputs null", {"inputs": None}, ["body", "inputs"]),
    Bad("inputs a string", {"inputs": "what is 2+2?"}, ["body", "inputs"]),
    Bad("inputs an object", {"inputs": {"q": "x"}}, ["body", "inputs"]),
    Bad("inputs empty", {"inputs": []}, ["body", "inputs"]),
    Bad("inputs over max_inputs_per_submission", {"inputs": long_inputs(MAX_INPUTS + 1)},
        ["body", "inputs"]),
    Bad("an input a number", {"inputs": ["ok", 5]}, ["body", "inputs", 1]),
    Bad("an input a list", {"inputs": [["a", "b"]]}, ["body", "inputs", 0]),
    Bad("an input null", {"inputs": ["ok", "ok too", None]}, ["body", "inputs", 2]),
    Bad("an input a boolean", {"inputs": [True]}, ["body", "inputs", 0]),
    Bad("an empty string input", {"inputs": ["ok", ""]}, ["body", "inputs", 1]),
    Bad("an input over 25,000 characters", {"inputs": ["x" * 25001]}, ["body", "inputs", 0]),
    Bad("task spec + input over 25,000 characters",
        {"inputs": ["fine", "y" * 24950], "output": "s" * 100}, ["body", "inputs", 1]),
    Bad("an object input over 25,000 characters", {"inputs": [{"text": "z" * 25000}]},
        ["body", "inputs", 0]),
    # processor
    Bad("processor missing everywhere", {"inputs": ["q"]}, ["body", "processor"], team="bare"),
    Bad("processor a number", {"inputs": ["q"], "processor": 5}, ["body", "processor"]),
    Bad("processor empty", {"inputs": ["q"], "processor": ""}, ["body", "processor"]),
    # metadata
    Bad("metadata not an object", {"inputs": ["q"], "metadata": "ticket=1"},
        ["body", "metadata"]),
    Bad("metadata key of 17 characters", {"inputs": ["q"], "metadata": {"abcdefghijklmnopq": 1}},
        ["body", "metadata", "abcdefghijklmnopq"]),
    Bad("metadata key of 17 non-ASCII characters",
        {"inputs": ["q"], "metadata": {"é" * 17: "v"}}, ["body", "metadata", "é" * 17]),
    Bad("metadata key with dots, too long", {"inputs": ["q"],
                                             "metadata": {"cost.center.code.x": "v"}},
        ["body", "metadata", "cost.center.code.x"]),
    Bad("metadata key of 120 characters", {"inputs": ["q"], "metadata": {"k" * 120: "v"}},
        ["body", "metadata", "k" * 120]),
    Bad("metadata value of 513 characters", {"inputs": ["q"], "metadata": {"k": "v" * 513}},
        ["body", "metadata", "k"]),
    Bad("metadata value a list", {"inputs": ["q"], "metadata": {"k": ["a"]}},
        ["body", "metadata", "k"]),
    Bad("metadata value an object", {"inputs": ["q"], "metadata": {"k": {"a": 1}}},
        ["body", "metadata", "k"]),
    # domains
    Bad("include + exclude over 200 entries",
        {"inputs": ["q"], "include_domains": ["d%d.example.com" % i for i in range(150)],
         "exclude_domains": ["e%d.example.com" % i for i in range(51)]},
        locs=[["body", "include_domains"], ["body", "exclude_domains"]]),
    Bad("domain localhost", {"inputs": ["q"], "include_domains": ["localhost"]},
        ["body", "include_domains", 0]),
    Bad("domain with a scheme", {"inputs": ["q"], "include_domains": ["ok.com", "http://x.com"]},
        ["body", "include_domains", 1]),
    Bad("domain a..b", {"inputs": ["q"], "exclude_domains": ["a..b"]},
        ["body", "exclude_domains", 0]),
    Bad("domain with a path", {"inputs": ["q"], "include_domains": ["example.com/news"]},
        ["body", "include_domains", 0]),
    Bad("domain not a string", {"inputs": ["q"], "include_domains": [5]},
        ["body", "include_domains", 0]),
    Bad("include_domains a string", {"inputs": ["q"], "include_domains": "a.com,b.com"},
        ["body", "include_domains"]),
    # schemas
    Bad("output {type: weird}", {"inputs": ["q"], "output": {"type": "weird"}},
        ["body", "output"]),
    Bad("output {type: json} without json_schema", {"inputs": ["q"], "output": {"type": "json"}},
        ["body", "output"]),
    Bad("output a number", {"inputs": ["q"], "output": 42}, ["body", "output"]),
    Bad("output {type: 5}", {"inputs": ["q"], "output": {"type": 5}}, ["body", "output"]),
    Bad("input_schema {type: weird}", {"inputs": ["q"], "input_schema": {"type": "weird"}},
        ["body", "input_schema"]),
    Bad("input_schema {type: auto}", {"inputs": ["q"], "input_schema": {"type": "auto"}},
        ["body", "input_schema"]),
    # webhook
    Bad("webhook_url ftp://", {"inputs": ["q"], "webhook_url": "ftp://hooks.example.com/x"},
        ["body", "webhook_url"]),
    Bad("webhook_url javascript:", {"inputs": ["q"], "webhook_url": "javascript:alert(1)"},
        ["body", "webhook_url"]),
    Bad("webhook event_types other than task_run.status",
        {"inputs": ["q"], "webhook": {"url": "https://hooks.example.com/x",
                                      "event_types": ["task_run.progress"]}},
        ["body", "webhook", "event_types"]),
    # mcp_servers
    Bad("mcp_servers entry without name",
        {"inputs": ["q"], "mcp_servers": [{"url": "https://mcp.example.com/sse"}]},
        ["body", "mcp_servers", 0, "name"]),
    Bad("mcp_servers second entry without url",
        {"inputs": ["q"], "mcp_servers": [{"name": "a", "url": "https://a.example.com"},
                                          {"name": "b"}]},
        ["body", "mcp_servers", 1, "url"]),
    Bad("mcp_servers not a list", {"inputs": ["q"], "mcp_servers": {"name": "a"}},
        ["body", "mcp_servers"]),
    # taskgroup_id
    Bad("taskgroup_id with a slash", {"inputs": ["q"], "taskgroup_id": "tgrp_a/runs"},
        ["body", "taskgroup_id"]),
    Bad("taskgroup_id with a space", {"inputs": ["q"], "taskgroup_id": "tgrp_a b"},
        ["body", "taskgroup_id"]),
    Bad("taskgroup_id path traversal", {"inputs": ["q"], "taskgroup_id": "../../v1/x"},
        ["body", "taskgroup_id"]),
    Bad("taskgroup_id a number", {"inputs": ["q"], "taskgroup_id": 17},
        ["body", "taskgroup_id"]),
    # A well-formed id of a group none of the team's submissions created (test_ownership.py
    # has another team's): refused like the upstream-compatible path refuses it.
    Bad("taskgroup_id not the team's", {"inputs": ["q"], "taskgroup_id": "tgrp_0123abcdef"},
        status=404, msg_re=r"^no such task group for this team$"),
    # idempotency_key: never dropped, or every repeat would create runs again
    Bad("idempotency_key a number", {"inputs": ["q"], "idempotency_key": 12345},
        ["body", "idempotency_key"]),
    Bad("idempotency_key a boolean", {"inputs": ["q"], "idempotency_key": True},
        ["body", "idempotency_key"]),
    Bad("idempotency_key a list", {"inputs": ["q"], "idempotency_key": ["k"]},
        ["body", "idempotency_key"]),
    Bad("idempotency_key an object", {"inputs": ["q"], "idempotency_key": {"k": "v"}},
        ["body", "idempotency_key"]),
    Bad("idempotency_key empty", {"inputs": ["q"], "idempotency_key": ""},
        ["body", "idempotency_key"]),
    Bad("idempotency_key too long", {"inputs": ["q"], "idempotency_key": "k" * 256},
        ["body", "idempotency_key"]),
    Bad("idempotency_key with a control character", {"inputs": ["q"], "idempotency_key": "a\nb"},
        ["body", "idempotency_key"]),
    # preset and policy
    Bad("unknown preset", {"inputs": ["q"], "preset": "nope"}, ["body", "preset"]),
    Bad("preset not a string", {"inputs": ["q"], "preset": ["strict"]}, ["body", "preset"]),
    Bad("enforced exclude_domains changed",
        {"inputs": ["q"], "preset": "strict", "exclude_domains": ["x.com"]},
        ["body", "exclude_domains"]),
    Bad("enforced exclude_domains removed",
        {"inputs": ["q"], "preset": "strict", "exclude_domains": None},
        ["body", "exclude_domains"]),
    Bad("enforced metadata.cc changed",
        {"inputs": ["q"], "preset": "strict", "metadata": {"cc": "R2", "other": "ok"}},
        ["body", "metadata", "cc"]),
    Bad("processor not in allowed_processors",
        {"inputs": ["q"], "preset": "strict", "processor": "base"}, ["body", "processor"]),
    # enable_events
    Bad("enable_events a string", {"inputs": ["q"], "enable_events": "yes"},
        ["body", "enable_events"]),
    Bad("enable_events a number", {"inputs": ["q"], "enable_events": 1},
        ["body", "enable_events"]),
    # the body itself
    Bad("body a JSON list", [{"inputs": ["q"]}], ["body"]),
    Bad("body a JSON string", '"inputs"', ["body"]),
    Bad("body JSON null", "null", ["body"]),
    Bad("invalid JSON: truncated", '{"inputs": ["q"', loc_prefix=["body"]),
    Bad("invalid JSON: trailing garbage", '{"inputs": ["q"]} x', loc_prefix=["body"]),
    Bad("invalid JSON: single quotes", "{'inputs': ['q']}", loc_prefix=["body"]),
    Bad("empty body", b"", loc_prefix=["body"]),
    Bad("invalid UTF-8 in a string", b'{"inputs": ["caf\xe9"]}', loc_prefix=["body"]),
    Bad("invalid UTF-8: overlong encoding", b'{"inputs": ["\xc0\xaf"]}', loc_prefix=["body"]),
    Bad("invalid UTF-8: an encoded surrogate", b'{"inputs": ["\xed\xa0\x80"]}',
        loc_prefix=["body"]),
    Bad("invalid UTF-8: beyond U+10FFFF", b'{"inputs": ["\xf4\x90\x80\x80"]}',
        loc_prefix=["body"]),
    Bad("invalid UTF-8 in a metadata key", b'{"inputs": ["q"], "metadata": {"\xc0\xaf": "v"}}',
        loc_prefix=["body"]),
    Bad("a NUL byte in the body", b'{"inputs": ["a\x00b"]}', loc_prefix=["body"]),
    Bad("nesting deeper than 32", {"inputs": [nested(40)]}, loc_prefix=["body"]),
    # Not JSON as RFC 8259 defines it, or a number json-c cannot hold as written: each
    # refused at its place, never forwarded as a bare token or a changed value.
    Bad("NaN", '{"inputs": [{"x": NaN}]}', ["body", "inputs", 0, "x"],
        msg_re=r"NaN and Infinity are not JSON"),
    Bad("Infinity", '{"inputs": ["q"], "metadata": {"n": Infinity}}', ["body", "metadata", "n"]),
    Bad("-Infinity", '{"inputs": ["q", {"y": [1, -Infinity]}]}', ["body", "inputs", 1, "y", 1]),
    Bad("an integer beyond 2^64", '{"inputs": ["q"], "metadata": {"n": 1%s}}' % ("0" * 40),
        ["body", "metadata", "n"], msg_re=r"beyond what the gateway forwards exactly"),
    Bad("a double that underflows to 0", '{"inputs": [{"x": 1e-99999}]}',
        ["body", "inputs", 0, "x"], msg_re=r"too small for a double"),
    Bad("a double beyond its range", '{"inputs": [{"x": 1e400}]}', ["body", "inputs", 0, "x"]),
    Bad("a lone surrogate", '{"inputs": ["ok", "\\ud800"]}', ["body", "inputs", 1],
        msg_re=r"lone UTF-16 surrogate"),
    Bad("a number with a bare '.'", '{"inputs": [{"x": 1.}]}', ["body", "inputs", 0, "x"]),
    Bad("a raw tab in a string", '{"inputs": ["a\tb"]}', ["body", "inputs", 0],
        msg_re=r"control character"),
    Bad("duplicate top-level key", '{"inputs": ["a"], "inputs": ["b"]}', status=(400, 422),
        loc_prefix=["body"], msg_re=r"(?i)inputs.*(twice|duplicate|repeat)|"
                                    r"(twice|duplicate|repeat).*inputs"),
    Bad("duplicate key in metadata",
        '{"inputs": ["a"], "metadata": {"k": "1", "k": "2"}}', status=(400, 422),
        loc_prefix=["body"], msg_re=r"(?i)\bk\b.*(twice|duplicate|repeat)|"
                                    r"(twice|duplicate|repeat).*\bk\b"),
]

BAD_FORMS = [
    Bad("form: no inputs", [("processor", "core"), ("output", "x")], ["body", "inputs"],
        kind="form"),
    Bad("form: only blank lines", [("inputs", "\r\n\r\n\r\n")], ["body", "inputs"],
        kind="form"),
    Bad("form: over max_inputs_per_submission",
        [("inputs", "\r\n".join(long_inputs(MAX_INPUTS + 1)))], ["body", "inputs"], kind="form"),
    Bad("form: input over 25,000 characters", [("inputs", "ok\r\n" + "x" * 25001)],
        ["body", "inputs", 1], kind="form"),
    Bad("form: enable_events=maybe", [("inputs", "q"), ("enable_events", "maybe")],
        ["body", "enable_events"], kind="form"),
    Bad("form: implausible domain", [("inputs", "q"), ("include_domains", "example.com,localhost")],
        ["body", "include_domains", 1], kind="form"),
    Bad("form: metadata key too long", [("inputs", "q"), ("metadata.abcdefghijklmnopq", "v")],
        locs=[["body", "metadata", "abcdefghijklmnopq"], ["body", "metadata.abcdefghijklmnopq"]],
        kind="form"),
    Bad("form: taskgroup_id with a slash", [("inputs", "q"), ("taskgroup_id", "a/b")],
        ["body", "taskgroup_id"], kind="form"),
    Bad("form: unknown preset", [("inputs", "q"), ("preset", "nope")], ["body", "preset"],
        kind="form"),
    Bad("form: webhook_url not http(s)", [("inputs", "q"), ("webhook_url", "ftp://x.example")],
        ["body", "webhook_url"], kind="form"),
    Bad("form: enforced exclude_domains",
        [("inputs", "q"), ("preset", "strict"), ("exclude_domains", "x.com")],
        ["body", "exclude_domains"], kind="form"),
    Bad("form: enforced metadata.cc",
        [("inputs", "q"), ("preset", "strict"), ("metadata.cc", "other")],
        locs=[["body", "metadata", "cc"], ["body", "metadata.cc"]], kind="form"),
    Bad("form: processor not allowed",
        [("inputs", "q"), ("preset", "strict"), ("processor", "ultra")],
        ["body", "processor"], kind="form"),
    Bad("form: processor missing everywhere", [("inputs", "q")], ["body", "processor"],
        kind="form", team="bare"),
    Bad("form: invalid UTF-8 after percent-decoding", b"inputs=caf%E9", status=(400, 422),
        loc_prefix=["body"], kind="raw", content_type=FORM_CT),
    Bad("multipart: empty inputs_file", [("inputs_file", ("q.txt", "text/plain", b""))],
        ["body", "inputs"], kind="multipart"),
    Bad("multipart: implausible exclude domain",
        [("inputs", "q"), ("exclude_domains", "reddit.com\r\na..b")],
        ["body", "exclude_domains", 1], kind="multipart"),
    Bad("multipart: a CSV row with too few fields",
        [("inputs_file", ("rows.csv", "text/csv", b"company,country\r\nAcme,France\r\nGlobex\r\n"))],
        ["body", "inputs_file", 3], kind="multipart"),
    Bad("multipart: no closing boundary",
        b'--XyZ\r\nContent-Disposition: form-data; name="inputs"\r\n\r\nq\r\n',
        status=(400, 422), loc_prefix=["body"], kind="raw",
        content_type="multipart/form-data; boundary=XyZ"),
]


class BadBodiesTest(SharedStackTest):
    """3. Validation before anything goes upstream: every bad body gets its status and the
    loc of its problem, nothing reaches the simulator, and a rejected record is written."""

    STACK = {"conf": {"max_inputs_per_submission": MAX_INPUTS}}

    def send_bad(self, case):
        if case.kind == "json":
            body = case.body if isinstance(case.body, (bytes, str)) else json.dumps(case.body)
            return self.post(body, JSON_CT, team=case.team)
        if case.kind == "form":
            return self.post_form(case.body, team=case.team)
        if case.kind == "multipart":
            return self.post_multipart(case.body, team=case.team)
        return self.post(case.body, case.content_type, team=case.team)

    def check_bad(self, case):
        rejected = self.count_state("rejected")
        self.s.sim_clear()
        status, answer, _, raw = self.send_bad(case)
        statuses = case.status if isinstance(case.status, tuple) else (case.status,)
        self.assertIn(status, statuses, "answer: %s" % raw[:600])
        if status == 422:
            detail = self.assertValidationShape(answer)
            locs = [p["loc"] for p in detail]
            msgs = [p["msg"] for p in detail]
            if case.locs:
                self.assertTrue(any(loc in locs for loc in case.locs),
                                "expected a problem at %s; got %s" % (
                                    " or ".join(json.dumps(loc, ensure_ascii=False)
                                                for loc in case.locs),
                                    json.dumps(detail, ensure_ascii=False)[:1500]))
            if case.loc_prefix:
                n = len(case.loc_prefix)
                self.assertTrue(any(loc[:n] == case.loc_prefix for loc in locs),
                                "no problem under %r: %r" % (case.loc_prefix, detail))
        else:
            err = self.assertErrorShape(answer, status)
            msgs = [err["message"]]
            self.assertFalse(case.locs and case.loc_prefix is None,
                             "expected a 422 with a loc, got %d: %r" % (status, answer))
        if case.msg_re:
            self.assertTrue(any(re.search(case.msg_re, m) for m in msgs),
                            "no message matching %r in %r" % (case.msg_re, msgs))
        self.assertNothingUpstream(case.name)
        self.assertEqual(self.count_state("rejected"), rejected + 1,
                         "no rejected record for the refused submission")
        self.assertNoPending()

    def test_bad_json_bodies(self):
        self.assertGreaterEqual(len(BAD_JSON), 30)
        for case in BAD_JSON:
            with self.subTest(case.name):
                self.check_bad(case)

    def test_bad_form_bodies(self):
        for case in BAD_FORMS:
            with self.subTest(case.name):
                self.check_bad(case)

    def test_rejected_record_has_the_status(self):
        before = self.count_state("rejected", 422)
        status, answer, _, _ = self.post({"inputs": []})
        self.assertEqual(status, 422, answer)
        self.assertEqual(self.count_state("rejected", 422), before + 1)
        row = self.s.db("SELECT * FROM audit_submissions WHERE state = 'rejected' "
                        "ORDER BY received_at DESC LIMIT 1")[0]
        self.assertEqual((row["team"], row["interface"], row["http_status"]),
                         ("alpha", "simplified", 422))
        self.assertIsNone(row["upstream_status"])
        self.assertIsNotNone(row["completed_at"])
        self.assertNothingUpstream()

    def test_every_problem_in_one_answer(self):
        body = {
            "inputs": ["ok", 5, ""],
            "metadata": {"abcdefghijklmnopq": "x", "k": ["list"]},
            "include_domains": ["localhost"],
            "output": {"type": "weird"},
            "taskgroup_id": "a b",
            "webhook_url": "ftp://x.example",
            "enable_events": "yes",
            "mcp_servers": [{"url": "https://m.example.com"}],
        }
        status, answer, _, raw = self.post(body)
        self.assertEqual(status, 422, raw[:500])
        locs = [p["loc"] for p in self.assertValidationShape(answer)]
        for loc in (["body", "inputs", 1], ["body", "inputs", 2],
                    ["body", "metadata", "abcdefghijklmnopq"], ["body", "metadata", "k"],
                    ["body", "include_domains", 0], ["body", "output"],
                    ["body", "taskgroup_id"], ["body", "webhook_url"],
                    ["body", "enable_events"], ["body", "mcp_servers", 0, "name"]):
            with self.subTest(loc=loc):
                self.assertIn(loc, locs)
        self.assertNothingUpstream()

    def test_unsupported_content_type_is_415(self):
        rejected = self.count_state("rejected")
        status, answer, _, raw = self.post("inputs: what?", "text/plain")
        self.assertEqual(status, 415, raw[:500])
        self.assertErrorShape(answer, 415)
        self.assertNothingUpstream()
        self.assertEqual(self.count_state("rejected"), rejected + 1)

    def test_nul_escape_is_refused_or_kept_whole(self):
        """A \\u0000 inside a JSON string is valid JSON; the gateway may refuse it, but must
        never cut the string (or a metadata key) short at the NUL."""
        status, answer, _, raw = self.post({"inputs": ["before\u0000after"],
                                            "metadata": {"a\u0000b": "v"}})
        if status == 422:
            self.assertValidationShape(answer)
            self.assertNothingUpstream()
            return
        self.assertEqual(status, 200, raw[:500])
        sent = self.only_add_runs()[0]["body"]["inputs"][0]
        self.assertEqual(sent["input"], "before\u0000after")
        self.assertEqual(sent.get("metadata"), {"a\u0000b": "v"})


# ---- 2. merge ----------------------------------------------------------------------------------

class MergeTest(SharedStackTest):
    """2. global defaults ← the team's preset ← the submission."""

    def merged(self, body, team="beta", n_calls=1):
        status, answer, _, raw = self.post(body, team=team)
        self.assertAccepted(status, answer, len(body["inputs"]), raw[:300])
        return self.only_add_runs(n_calls)[0]["body"]

    def test_preset_alone(self):
        got = self.merged({"inputs": ["q1", "q2"]})
        self.assertEqual(got, expected_body(
            ["q1", "q2"],
            {"processor": "core", "metadata": {"cost_center": "R&D", "team": "beta"},
             "source_policy": {"exclude_domains": ["reddit.com"],
                               "include_domains": ["example.com"]}},
            {"output_schema": "a short factual answer"}))

    def test_rules(self):
        preset_meta = {"cost_center": "R&D", "team": "beta"}
        preset_sp = {"exclude_domains": ["reddit.com"], "include_domains": ["example.com"]}
        preset_spec = {"output_schema": "a short factual answer"}
        cases = [
            ("metadata merges key by key; null drops a key",
             {"metadata": {"ticket": "OPS-1", "cost_center": None}},
             {"processor": "core", "metadata": {"team": "beta", "ticket": "OPS-1"},
              "source_policy": preset_sp}, preset_spec),
            ("lists are replaced, not appended",
             {"include_domains": ["b.org", ".gov"]},
             {"processor": "core", "metadata": preset_meta,
              "source_policy": {"exclude_domains": ["reddit.com"],
                                "include_domains": ["b.org", ".gov"]}}, preset_spec),
            ("an empty list replaces too",
             {"exclude_domains": []},
             {"processor": "core", "metadata": preset_meta,
              "source_policy": {"exclude_domains": [], "include_domains": ["example.com"]}},
             preset_spec),
            ("exclude_domains null removes the list",
             {"exclude_domains": None},
             {"processor": "core", "metadata": preset_meta,
              "source_policy": {"include_domains": ["example.com"]}}, preset_spec),
            ("both domain lists null remove the source policy",
             {"exclude_domains": None, "include_domains": None},
             {"processor": "core", "metadata": preset_meta}, preset_spec),
            ("metadata null removes all metadata",
             {"metadata": None},
             {"processor": "core", "source_policy": preset_sp}, preset_spec),
            ("processor overrides, the rest stays",
             {"processor": "pro"},
             {"processor": "pro", "metadata": preset_meta, "source_policy": preset_sp},
             preset_spec),
            ("output overrides the preset's output schema",
             {"output": {"type": "auto"}},
             {"processor": "core", "metadata": preset_meta, "source_policy": preset_sp},
             {"output_schema": {"type": "auto"}}),
            ("output null removes the preset's task spec",
             {"output": None},
             {"processor": "core", "metadata": preset_meta, "source_policy": preset_sp}, None),
            ("input_schema adds to the preset's task spec",
             {"input_schema": "a company name"},
             {"processor": "core", "metadata": preset_meta, "source_policy": preset_sp},
             {"output_schema": "a short factual answer", "input_schema": "a company name"}),
        ]
        for name, fields, want_fields, want_spec in cases:
            with self.subTest(name):
                self.s.sim_clear()
                body = dict({"inputs": ["q"]}, **fields)
                self.assertEqual(self.merged(body), expected_body(["q"], want_fields, want_spec))

    def test_named_preset(self):
        got = self.merged({"inputs": ["q"], "preset": "deep"}, team="alpha")
        self.assertEqual(got, expected_body(["q"], {"processor": "pro"},
                                            {"output_schema": {"type": "auto"}}))
        self.s.sim_clear()
        got = self.merged({"inputs": ["q"], "preset": "deep", "processor": "core",
                           "output": "one word"}, team="alpha")
        self.assertEqual(got, expected_body(["q"], {"processor": "core"},
                                            {"output_schema": "one word"}))

    def test_policy_allows_restating_and_allowed_values(self):
        got = self.merged({"inputs": ["q"], "preset": "strict", "processor": "pro",
                           "exclude_domains": ["reddit.com"],
                           "metadata": {"cc": "R1", "extra": "y"}}, team="alpha")
        self.assertEqual(got, expected_body(
            ["q"], {"processor": "pro", "metadata": {"cc": "R1", "extra": "y"},
                    "source_policy": {"exclude_domains": ["reddit.com"]}}))
        self.s.sim_clear()
        got = self.merged({"inputs": ["q"], "preset": "strict",
                           "include_domains": ["example.org"]}, team="alpha")
        self.assertEqual(got, expected_body(
            ["q"], {"processor": "core", "metadata": {"cc": "R1"},
                    "source_policy": {"exclude_domains": ["reddit.com"],
                                      "include_domains": ["example.org"]}}))

    def test_preset_fields_reach_audit_runs(self):
        status, answer, _, _ = self.post({"inputs": ["a", "b"], "processor": "pro"}, team="beta")
        self.assertAccepted(status, answer, 2)
        procs = self.s.db("SELECT processor FROM audit_runs WHERE submission_id = ? "
                          "ORDER BY input_index", (answer["submission_id"],))
        self.assertEqual([r[0] for r in procs], ["pro", "pro"])


class GlobalDefaultsAndChunkSizeTest(SharedStackTest):
    """2 (global defaults) and 6 (chunk_size from the config): default_processor under every
    preset; chunk_size = 300 gives ceil(n/300) add-runs calls."""

    STACK = {"conf": {"default_processor": "base", "chunk_size": 300}}

    def test_global_default_processor(self):
        status, answer, _, raw = self.post({"inputs": ["q"]}, team="bare")
        self.assertAccepted(status, answer, 1, raw[:300])
        self.assertEqual(self.only_add_runs()[0]["body"],
                         expected_body(["q"], {"processor": "base"}))
        self.s.sim_clear()
        status, answer, _, _ = self.post({"inputs": ["q"]}, team="alpha")
        self.assertAccepted(status, answer, 1)
        self.assertEqual(self.only_add_runs()[0]["body"]["inputs"][0]["processor"], "core",
                         "the preset must win over the global default")
        self.s.sim_clear()
        status, answer, _, _ = self.post({"inputs": ["q"], "processor": "pro"}, team="bare")
        self.assertAccepted(status, answer, 1)
        self.assertEqual(self.only_add_runs()[0]["body"]["inputs"][0]["processor"], "pro")

    def test_chunk_size_300(self):
        for n in (1, 299, 300, 301, 700):
            with self.subTest(n=n):
                self.s.sim_clear()
                inputs = ["chunk question %d" % i for i in range(n)]
                status, answer, _, raw = self.post({"inputs": inputs})
                self.assertAccepted(status, answer, n, raw[:300])
                calls = -(-n // 300)
                adds = self.only_add_runs(calls)
                sizes = [len(a["body"]["inputs"]) for a in adds]
                self.assertEqual(sizes, [min(300, n - 300 * i) for i in range(calls)])
                self.assertEqual([i["input"] for a in adds for i in a["body"]["inputs"]],
                                 inputs)
                self.assertEqual({group_of(a) for a in adds}, {answer["taskgroup_id"]})
                self.assertEqual([(c["first_input"], c["num_inputs"]) for c in answer["calls"]],
                                 [(300 * i, s) for i, s in enumerate(sizes)])
                runs = self.s.sim_group(answer["taskgroup_id"])
                self.assertEqual([r["run_id"] for r in runs], answer["run_ids"])


# ---- 4. good bodies of unusual shapes ------------------------------------------------------------

OBJECT_INPUTS = [
    {"company": "Zürich Versicherungs-Gesellschaft AG",
     "hq": {"city": "Zürich", "geo": {"lat": 47.3769, "lon": 8.5417}},
     "founded": 1872, "employees": 55000, "ratio": -0.25, "tiny": 1e-07, "big": 9007199254740993,
     "listed": True, "delisted": False, "note": None,
     "tags": ["insurance", "保険", "страхование"], "emoji": "🚀"},
    "a plain string between objects",
    {"empty_list": [], "empty_object": {}, "deep": [[1, [2, [3, {"x": None}]]]]},
]

JSON_SCHEMA = {"type": "object",
               "properties": {"answer": {"type": "string", "description": "réponse"},
                              "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
               "required": ["answer"], "additionalProperties": False}
UNTYPED_SCHEMA = {"properties": {"answer": {"type": "string"}}, "required": ["answer"]}
MCP = [{"type": "url", "name": "crm", "url": "https://mcp.example.com/sse",
        "headers": {"Authorization": "Bearer mcp-secret", "X-Team": "équipe"},
        "allowed_tools": ["lookup", "search"]}]
META_16 = "ключключключключ"  # 16 characters, 32 bytes

# (name, extra submission fields, inputs, expected extra run fields, expected task spec,
#  beta names that must be in parallel-beta)
GOOD = [
    ("object inputs with nested objects, unicode, numbers", {}, OBJECT_INPUTS, {}, None, []),
    ("strings with quotes, escapes, emoji and markup", {},
     ['He said "hi" \\ bye', "line 1\nline 2\ttab", "😀 日本 é", "</script><b>&amp;</b>",
      "\u2028\u2029", "x" * 25000], {}, None, []),
    ("object input 25 levels deep", {}, [nested(25)], {}, None, []),
    ("bare-string output schema", {"output": "a one-line answer"}, ["q"], {},
     {"output_schema": "a one-line answer"}, []),
    ("output {type: auto}", {"output": {"type": "auto"}}, ["q"], {},
     {"output_schema": {"type": "auto"}}, []),
    ("output {type: text, description}",
     {"output": {"type": "text", "description": "a paragraph"}}, ["q"], {},
     {"output_schema": {"type": "text", "description": "a paragraph"}}, []),
    ("output {type: json, json_schema}",
     {"output": {"type": "json", "json_schema": JSON_SCHEMA}}, ["q"], {},
     {"output_schema": {"type": "json", "json_schema": JSON_SCHEMA}}, []),
    ("untyped JSON schema as output is wrapped", {"output": UNTYPED_SCHEMA}, ["q"], {},
     {"output_schema": {"type": "json", "json_schema": UNTYPED_SCHEMA}}, []),
    ("input_schema and output together",
     {"input_schema": {"type": "json", "json_schema": UNTYPED_SCHEMA}, "output": "yes or no"},
     ["q"], {},
     {"output_schema": "yes or no",
      "input_schema": {"type": "json", "json_schema": UNTYPED_SCHEMA}}, []),
    (".gov suffix and unusual but plausible domains",
     {"include_domains": [".gov", "sub.example.co.uk", "bücher.de", "xn--bcher-kva.de",
                          "a-b.example.com", "1.example.net"],
      "exclude_domains": [".mil", "EXAMPLE.ORG"]},
     ["q"], {"source_policy": {"include_domains": [".gov", "sub.example.co.uk", "bücher.de",
                                                   "xn--bcher-kva.de", "a-b.example.com",
                                                   "1.example.net"],
                               "exclude_domains": [".mil", "EXAMPLE.ORG"]}}, None, []),
    ("metadata with int, float, bool, a 16-character key and a 512-character value",
     {"metadata": {"n": 42, "f": 1.5, "neg": -7, "b": True, "off": False, META_16: "v",
                   "long": "é" * 512, "gone": None}},
     ["q"], {"metadata": {"n": 42, "f": 1.5, "neg": -7, "b": True, "off": False, META_16: "v",
                          "long": "é" * 512}}, None, []),
    ("unknown top-level fields pass into every input untouched",
     {"memory_scope_key": "x", "advanced_settings": {"a": {"b": [1, None, 2.5]}, "c": "ü"},
      "previous_interaction_id": "trun_0123456789abcdef"},
     ["q1", {"k": "v"}, "q3"],
     {"memory_scope_key": "x", "advanced_settings": {"a": {"b": [1, None, 2.5]}, "c": "ü"},
      "previous_interaction_id": "trun_0123456789abcdef"}, None, []),
    ("mcp_servers with headers", {"mcp_servers": MCP}, ["q1", "q2"], {"mcp_servers": MCP}, None,
     [BETA_MCP]),
    ("enable_events true", {"enable_events": True}, ["q"], {"enable_events": True}, None,
     [BETA_EVENTS]),
    ("webhook_url becomes a webhook",
     {"webhook_url": "https://hooks.example.com/taskgate?team=a&x=%C3%A9"}, ["q"],
     {"webhook": {"url": "https://hooks.example.com/taskgate?team=a&x=%C3%A9",
                  "event_types": ["task_run.status"]}}, None, [BETA_WEBHOOK]),
    ("a webhook object passes as it is",
     {"webhook": {"url": "http://hooks.example.com/x", "event_types": ["task_run.status"]}},
     ["q"], {"webhook": {"url": "http://hooks.example.com/x",
                         "event_types": ["task_run.status"]}}, None, [BETA_WEBHOOK]),
    ("another processor", {"processor": "ultra8x"}, ["q"], {"processor": "ultra8x"}, None, []),
]


class GoodBodiesTest(SharedStackTest):
    """4. Unusual but valid shapes reach the simulator unchanged."""

    def check_good(self, fields, inputs, want_fields, want_spec, betas, headers=None,
                   content_type=JSON_CT):
        body = dict({"inputs": inputs}, **fields)
        status, answer, _, raw = self.post(json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                           content_type, headers=headers)
        self.assertAccepted(status, answer, len(inputs), raw[:500])
        add = self.only_add_runs()[0]
        run_fields = dict({"processor": "core"}, **want_fields)
        self.assertEqual(add["body"], expected_body(inputs, run_fields, want_spec))
        beta = add["headers"].get("parallel-beta")
        for name in betas:
            self.assertIn(name, beta_names(beta), "parallel-beta: %r" % beta)
        runs = self.s.sim_group(answer["taskgroup_id"])
        self.assertEqual([r["run_id"] for r in runs], answer["run_ids"])
        self.assertEqual([r["input"] for r in runs], inputs)
        return add

    def test_good_bodies(self):
        self.assertGreaterEqual(len(GOOD), 10)
        for name, fields, inputs, want_fields, want_spec, betas in GOOD:
            with self.subTest(name):
                self.s.sim_clear()
                self.check_good(fields, inputs, want_fields, want_spec, betas)

    def test_no_beta_header_without_features(self):
        add = self.check_good({}, ["q"], {}, None, [])
        self.assertEqual(beta_names(add["headers"].get("parallel-beta")), [])

    def test_enable_events_false_needs_no_beta(self):
        add = self.check_good({"enable_events": False}, ["q"], {"enable_events": False}, None, [])
        self.assertNotIn(BETA_EVENTS, beta_names(add["headers"].get("parallel-beta")))

    def test_client_beta_is_passed_along_deduplicated(self):
        for client in (BETA_FIELD_BASIS, "%s, %s" % (BETA_EVENTS, BETA_FIELD_BASIS),
                       "%s,%s,%s" % (BETA_FIELD_BASIS, BETA_FIELD_BASIS, BETA_EVENTS)):
            with self.subTest(client=client):
                self.s.sim_clear()
                add = self.check_good({"enable_events": True}, ["q"], {"enable_events": True},
                                      None, [BETA_EVENTS, BETA_FIELD_BASIS],
                                      headers={"parallel-beta": client})
                names = beta_names(add["headers"].get("parallel-beta"))
                self.assertEqual(sorted(names), sorted(set(names)), "repeated: %r" % names)
                self.assertEqual(set(names), {BETA_EVENTS, BETA_FIELD_BASIS})

    def test_all_features_need_all_betas(self):
        add = self.check_good(
            {"enable_events": True, "mcp_servers": MCP,
             "webhook_url": "https://hooks.example.com/h"},
            ["q"], {"enable_events": True, "mcp_servers": MCP,
                    "webhook": {"url": "https://hooks.example.com/h",
                                "event_types": ["task_run.status"]}},
            None, [BETA_EVENTS, BETA_MCP, BETA_WEBHOOK])
        names = beta_names(add["headers"].get("parallel-beta"))
        self.assertEqual(len(names), len(set(names)), names)

    def test_numbers_reach_the_upstream_as_written(self):
        """Numbers are forwarded as the client wrote them: no rounding, no saturation, no
        reformatting (the simulator logs what it read, numbers' text included)."""
        numbers = ('"a":1.10,"b":18446744073709551615,"c":-9223372036854775808,"d":1E+2,'
                   '"e":5e-324,"f":0.1e1')
        status, answer, _, raw = self.post('{"inputs":[{%s}]}' % numbers)
        self.assertAccepted(status, answer, 1, raw[:500])
        self.only_add_runs()
        status, _, log = Stack._request(self.s.sim_port, "GET", "/_sim/requests", None, {}, 10)
        self.assertEqual(status, 200)
        self.assertIn(numbers.encode(), log)

    def test_json_with_charset(self):
        self.check_good({"output": "ok"}, ["é"], {}, {"output_schema": "ok"}, [],
                        content_type="application/json; charset=utf-8")

    def test_json_schema_with_type_object_as_output(self):
        """The most common JSON schema, {"type":"object","properties":…}, is a JSON schema
        (README: output is "a text description, typed schema, or a JSON schema"): it must
        be wrapped as {"type":"json","json_schema":…}, not refused as an unknown type."""
        self.check_good({"output": JSON_SCHEMA}, ["q"], {},
                        {"output_schema": {"type": "json", "json_schema": JSON_SCHEMA}}, [])

    def test_existing_group(self):
        status, first, _, _ = self.post({"inputs": ["one"]})
        self.assertAccepted(status, first, 1)
        self.s.sim_clear()
        status, second, _, _ = self.post({"inputs": ["two", "three"],
                                          "taskgroup_id": first["taskgroup_id"]})
        self.assertAccepted(status, second, 2)
        self.assertEqual(second["taskgroup_id"], first["taskgroup_id"])
        reqs = self.sim_requests()
        self.assertEqual(create_group_requests(reqs), [])
        self.assertEqual([group_of(a) for a in add_runs_requests(reqs)], [first["taskgroup_id"]])
        runs = self.s.sim_group(first["taskgroup_id"])
        self.assertEqual([r["run_id"] for r in runs], first["run_ids"] + second["run_ids"])


# ---- 1. bodies: forms ----------------------------------------------------------------------------

class FormBodiesTest(SharedStackTest):
    """1. application/x-www-form-urlencoded and multipart/form-data, as browsers send them."""

    def accepted_form(self, send, n, **kw):
        status, answer, _, raw = send(**kw)
        self.assertAccepted(status, answer, n, raw[:500])
        return answer, self.only_add_runs()[0]

    FULL_FIELDS = [
        ("inputs", "What is the capital of France?\r\n\r\nOù est la gare ? 日本\r\n"
                   '{"company": "Acme", "year": 2024, "tags": ["a", "ü"]}\r\n\r\nlast line\r\n'),
        ("processor", "pro"),
        ("output", "one line, please"),
        ("input_schema", "a question"),
        ("include_domains", "example.com,wikipedia.org\r\n.gov"),
        ("exclude_domains", "reddit.com"),
        ("metadata.ticket", "OPS-7"),
        ("metadata.café", "naïve 日本"),
        ("webhook_url", "https://hooks.example.com/tg?a=1&b=2"),
        ("enable_events", "on"),
        ("idempotency_key", "idem-" + "1234"),
    ]
    FULL_INPUTS = ["What is the capital of France?", "Où est la gare ? 日本",
                   {"company": "Acme", "year": 2024, "tags": ["a", "ü"]}, "last line"]
    FULL_RUN = {
        "processor": "pro",
        "source_policy": {"include_domains": ["example.com", "wikipedia.org", ".gov"],
                          "exclude_domains": ["reddit.com"]},
        "metadata": {"ticket": "OPS-7", "café": "naïve 日本"},
        "webhook": {"url": "https://hooks.example.com/tg?a=1&b=2",
                    "event_types": ["task_run.status"]},
        "enable_events": True,
    }
    FULL_SPEC = {"output_schema": "one line, please", "input_schema": "a question"}

    def check_full(self, add):
        self.assertEqual(add["body"], expected_body(self.FULL_INPUTS, self.FULL_RUN,
                                                    self.FULL_SPEC))
        names = beta_names(add["headers"].get("parallel-beta"))
        self.assertIn(BETA_EVENTS, names)
        self.assertIn(BETA_WEBHOOK, names)
        self.assertNotIn("idem-1234", json.dumps(add["body"]),
                         "idempotency_key is a control field, not a run field")

    def test_urlencoded_every_field(self):
        # Its own Idempotency-Key: with the multipart test's key, the same request in this
        # stack would rightly be answered from the record without going upstream.
        fields = [(k, v + "-urlencoded" if k == "idempotency_key" else v)
                  for k, v in self.FULL_FIELDS]
        _, add = self.accepted_form(self.post_form, 4, fields=fields)
        self.check_full(add)

    def test_multipart_every_field(self):
        _, add = self.accepted_form(self.post_multipart, 4, parts=self.FULL_FIELDS)
        self.check_full(add)

    def test_urlencoded_with_charset_and_plus_signs(self):
        body = ("inputs=What+is+1%2B1%3F%0D%0AA%26B+%3D+%22quoted%22&processor=core"
                "&metadata.k=a+b%2Bc").encode("ascii")
        status, answer, _, raw = self.post(body, FORM_CT + "; charset=UTF-8")
        self.assertAccepted(status, answer, 2, raw[:500])
        self.assertEqual(self.only_add_runs()[0]["body"], expected_body(
            ["What is 1+1?", 'A&B = "quoted"'], {"processor": "core", "metadata": {"k": "a b+c"}}))

    def test_repeated_input_fields(self):
        fields = [("input", "first question"), ("input", "Zweite Frage: Größe?"),
                  ("input", "三番目"), ("processor", "base")]
        _, add = self.accepted_form(self.post_form, 3, fields=fields)
        self.assertEqual(add["body"], expected_body(
            ["first question", "Zweite Frage: Größe?", "三番目"], {"processor": "base"}))

    def test_empty_fields_are_absent(self):
        """What a browser sends when only the textarea was filled in: every other field
        empty. The result is the preset alone, and a new group."""
        names = ["taskgroup_id", "preset", "processor", "output", "input_schema",
                 "include_domains", "exclude_domains", "metadata.ticket", "webhook_url",
                 "enable_events", "idempotency_key", "input"]
        for send in (self.post_form, self.post_multipart):
            with self.subTest(send.__name__):
                self.s.sim_clear()
                fields = [("inputs", "only question\r\n")] + [(n, "") for n in names]
                key = "fields" if send == self.post_form else "parts"
                answer, add = self.accepted_form(send, 1, **{key: fields})
                self.assertEqual(add["body"], expected_body(["only question"],
                                                            {"processor": "core"}))
                self.assertEqual(len(create_group_requests(self.sim_requests())), 1)

    def test_empty_enable_events_keeps_the_preset(self):
        """An empty enable_events field is absent, like every empty field: it must not
        turn off a preset's enable_events: true."""
        for send, key in ((self.post_form, "fields"), (self.post_multipart, "parts")):
            with self.subTest(send.__name__):
                self.s.sim_clear()
                fields = [("inputs", "q"), ("preset", "events"), ("enable_events", "")]
                _, add = self.accepted_form(send, 1, **{key: fields})
                self.assertEqual(add["body"], expected_body(["q"], {"processor": "core",
                                                                    "enable_events": True}))
                self.assertIn(BETA_EVENTS, beta_names(add["headers"].get("parallel-beta")))

    def test_token_field_instead_of_headers(self):
        token = self.tokens["alpha"]
        for send, key in ((self.post_form, "fields"), (self.post_multipart, "parts")):
            with self.subTest(send.__name__):
                self.s.sim_clear()
                fields = [("token", token), ("inputs", "q1\r\nq2")]
                answer, add = self.accepted_form(send, 2, token=False, **{key: fields})
                self.assertEqual(add["body"], expected_body(["q1", "q2"], {"processor": "core"}))
                self.assertNotIn(token, json.dumps(self.sim_requests()),
                                 "the team token went upstream")
                row = self.s.db("SELECT team, request FROM submissions s JOIN audit_submissions "
                                "a ON a.submission_id = s.id WHERE s.id = ?",
                                (answer["submission_id"],))
                self.assertEqual(row[0]["team"], "alpha")
                self.assertNotIn(token, row[0]["request"] or "",
                                 "the token is stored in the submission's request")

    def test_bad_token_field_is_401(self):
        status, answer, _, raw = self.post_form(
            [("token", "tg_" + "0" * 48), ("inputs", "q")], token=False)
        self.assertEqual(status, 401, raw[:300])
        self.assertErrorShape(answer, 401)
        self.assertNothingUpstream()

    def test_enable_events_spellings(self):
        for value in ("on", "true", "1", "yes"):
            with self.subTest(value=value):
                self.s.sim_clear()
                _, add = self.accepted_form(self.post_form, 1,
                                            fields=[("inputs", "q"), ("enable_events", value)])
                self.assertEqual(add["body"]["inputs"][0].get("enable_events"), True)
                self.assertIn(BETA_EVENTS, beta_names(add["headers"].get("parallel-beta")))

    def test_inputs_file_text(self):
        data = "first line\r\n\r\nsecond: é 日本\r\n\r\nthird without newline".encode("utf-8")
        _, add = self.accepted_form(self.post_multipart, 3, parts=[
            ("inputs_file", ("questions.txt", "text/plain", data)), ("processor", "core")])
        self.assertEqual([i["input"] for i in add["body"]["inputs"]],
                         ["first line", "second: é 日本", "third without newline"])

    CSV = ('company,country\r\n'
           'Acme,France\r\n'
           '"Globex, Inc.",日本\r\n'
           '"Say ""hi"" Ltd",Côte d\'Ivoire\r\n'
           '\r\n').encode("utf-8")
    CSV_INPUTS = [{"company": "Acme", "country": "France"},
                  {"company": "Globex, Inc.", "country": "日本"},
                  {"company": 'Say "hi" Ltd', "country": "Côte d'Ivoire"}]

    def test_inputs_file_csv_by_name(self):
        _, add = self.accepted_form(self.post_multipart, 3, parts=[
            ("inputs_file", ("companies.csv", "application/octet-stream", self.CSV))])
        self.assertEqual([i["input"] for i in add["body"]["inputs"]], self.CSV_INPUTS)

    def test_inputs_file_csv_by_content_type(self):
        _, add = self.accepted_form(self.post_multipart, 3, parts=[
            ("inputs_file", ("export", "text/csv", self.CSV)), ("processor", "pro")])
        self.assertEqual(add["body"], expected_body(self.CSV_INPUTS, {"processor": "pro"}))

    def test_inputs_file_csv_from_a_spreadsheet(self):
        """Excel's "CSV UTF-8": a byte-order mark, and LF line ends from other tools."""
        data = b"\xef\xbb\xbf" + self.CSV.replace(b"\r\n", b"\n")
        _, add = self.accepted_form(self.post_multipart, 3, parts=[
            ("inputs_file", ("Export (1).CSV", "application/vnd.ms-excel", data))])
        self.assertEqual([i["input"] for i in add["body"]["inputs"]], self.CSV_INPUTS)

    def test_form_taskgroup_id_and_preset(self):
        status, first, _, _ = self.post({"inputs": ["seed"]})
        self.assertAccepted(status, first, 1)
        self.s.sim_clear()
        answer, add = self.accepted_form(self.post_form, 2, fields=[
            ("inputs", "a\r\nb"), ("taskgroup_id", first["taskgroup_id"]), ("preset", "deep")])
        self.assertEqual(answer["taskgroup_id"], first["taskgroup_id"])
        self.assertEqual(create_group_requests(self.sim_requests()), [])
        self.assertEqual(group_of(add), first["taskgroup_id"])
        self.assertEqual(add["body"], expected_body(["a", "b"], {"processor": "pro"},
                                                    {"output_schema": {"type": "auto"}}))

    def test_lines_that_are_not_json_objects_are_strings(self):
        text = '{not json}\r\n["a", "b"]\r\n42\r\n{"ok": true}\r\n'
        _, add = self.accepted_form(self.post_form, 4, fields=[("inputs", text)])
        self.assertEqual([i["input"] for i in add["body"]["inputs"]],
                         ["{not json}", '["a", "b"]', "42", {"ok": True}])

    def test_domain_lists_tolerate_spaces(self):
        """People type "a.com, b.org": the separator's spaces are not part of a domain."""
        _, add = self.accepted_form(self.post_form, 1, fields=[
            ("inputs", "q"), ("include_domains", "example.com, wikipedia.org ,\r\n .gov")])
        self.assertEqual(add["body"]["inputs"][0].get("source_policy"),
                         {"include_domains": ["example.com", "wikipedia.org", ".gov"]})


# ---- 5. byte-identical across encodings -------------------------------------------------------------

class ByteIdenticalTest(SharedStackTest):
    """5. The same submission as JSON, urlencoded and multipart: identical upstream bodies."""

    INPUTS = ["What is the capital of France?", "Où se trouve 日本 ? 1+1=2 & 50% off",
              {"company": "Acme", "year": 2024, "city": "Zürich"}]

    def test_same_submission_three_encodings(self):
        as_json = {"inputs": self.INPUTS, "processor": "pro", "output": "a one-line answer",
                   "include_domains": ["example.com", "wikipedia.org"],
                   "metadata": {"k": "v é"}}
        textarea = "\r\n".join([self.INPUTS[0], self.INPUTS[1],
                                '{"company": "Acme", "year": 2024, "city": "Zürich"}'])
        fields = [("inputs", textarea), ("processor", "pro"), ("output", "a one-line answer"),
                  ("include_domains", "example.com,wikipedia.org"), ("metadata.k", "v é")]
        sends = [
            ("json", lambda: self.post(json.dumps(as_json, ensure_ascii=False).encode("utf-8"))),
            ("urlencoded", lambda: self.post_form(fields)),
            ("multipart", lambda: self.post_multipart(fields)),
        ]
        bodies = {}
        for name, send in sends:
            self.s.sim_clear()
            status, answer, _, raw = send()
            self.assertAccepted(status, answer, 3, "%s: %s" % (name, raw[:500]))
            add = self.only_add_runs()[0]
            bodies[name] = add
        want = expected_body(self.INPUTS, {"processor": "pro",
                                           "source_policy": {"include_domains":
                                                             ["example.com", "wikipedia.org"]},
                                           "metadata": {"k": "v é"}},
                             {"output_schema": "a one-line answer"})
        self.assertEqual(bodies["json"]["body"], want)
        ref = json.dumps(bodies["json"]["body"], sort_keys=False, ensure_ascii=False)
        for name in ("urlencoded", "multipart"):
            with self.subTest(name):
                self.assertEqual(bodies[name]["body"], want)
                self.assertEqual(json.dumps(bodies[name]["body"], sort_keys=False,
                                            ensure_ascii=False), ref,
                                 "the upstream body differs in order or form from JSON's")
                if "body_raw" in bodies["json"] or "body_raw" in bodies[name]:
                    self.assertEqual(bodies[name].get("body_raw"),
                                     bodies["json"].get("body_raw"))
                self.assertEqual(bodies[name]["headers"].get("parallel-beta"),
                                 bodies["json"]["headers"].get("parallel-beta"))


# ---- 6. chunking ------------------------------------------------------------------------------------

class ChunkingTest(SharedStackTest):
    """6. 2,500 inputs: three add-runs calls of 1000/1000/500 to one group, in order."""

    N = 2500

    @classmethod
    def prepare(cls):
        cls.team("alpha", ALPHA_DEFAULT)

    def inputs(self, tag):
        return [{"n": i, "q": "%s object %d" % (tag, i)} if i % 250 == 0
                else "%s question %04d: what is %d squared?" % (tag, i, i)
                for i in range(self.N)]

    def test_2500_inputs_in_three_chunks(self):
        inputs = self.inputs("ok")
        status, answer, _, raw = self.post({"inputs": inputs, "output": "a number"})
        self.assertAccepted(status, answer, self.N, raw[:500])
        group = answer["taskgroup_id"]

        reqs = self.sim_requests()
        self.assertEqual(len(create_group_requests(reqs)), 1, "exactly one group")
        adds = add_runs_requests(reqs)
        self.assertEqual([len(a["body"]["inputs"]) for a in adds], [1000, 1000, 500])
        self.assertEqual([group_of(a) for a in adds], [group] * 3)
        self.assertEqual([i["input"] for a in adds for i in a["body"]["inputs"]], inputs)
        for a in adds:
            self.assertEqual(a["body"].get("default_task_spec"), {"output_schema": "a number"})
            self.assertEqual(a["status"], 200)

        runs = self.s.sim_group(group)
        self.assertEqual([r["run_id"] for r in runs], answer["run_ids"])
        self.assertEqual([r["input"] for r in runs], inputs)

        want_cursors = [sim_cursors(group, i) for i in range(3)]
        self.assertEqual([(c["first_input"], c["num_inputs"], c["http_status"])
                          for c in answer["calls"]],
                         [(0, 1000, 200), (1000, 1000, 200), (2000, 500, 200)])
        self.assertEqual([(c["run_cursor"], c["event_cursor"]) for c in answer["calls"]],
                         want_cursors)
        self.assertEqual((answer["run_cursor"], answer["event_cursor"]), (None, None))

        sub = answer["submission_id"]
        calls = self.s.db("SELECT * FROM upstream_calls WHERE submission_id = ? ORDER BY seq",
                          (sub,))
        self.assertEqual([c["operation"] for c in calls],
                         ["create_group", "add_runs", "add_runs", "add_runs"])
        adds_rows = calls[1:]
        self.assertEqual([(c["first_input"], c["num_inputs"], c["outcome"], c["http_status"])
                          for c in adds_rows],
                         [(0, 1000, "ok", 200), (1000, 1000, "ok", 200), (2000, 500, "ok", 200)])
        self.assertEqual([(c["run_cursor"], c["event_cursor"]) for c in adds_rows], want_cursors)
        self.assertIsNotNone(adds_rows[1]["run_cursor"])
        self.assertNotEqual(adds_rows[1]["run_cursor"], adds_rows[2]["run_cursor"])

        rows = self.s.db("SELECT run_id, input_index, call_seq, run_cursor FROM audit_runs "
                         "WHERE submission_id = ? ORDER BY input_index", (sub,))
        self.assertEqual([r["run_id"] for r in rows], answer["run_ids"])
        self.assertEqual([r["input_index"] for r in rows], list(range(self.N)))
        by_seq = {c["seq"]: c["run_cursor"] for c in adds_rows}
        for i in (0, 999, 1000, 1999, 2000, 2499):
            self.assertEqual(rows[i]["call_seq"], adds_rows[i // 1000]["seq"], i)
            self.assertEqual(rows[i]["run_cursor"], by_seq[rows[i]["call_seq"]], i)
        sub_row = self.s.db("SELECT * FROM audit_submissions WHERE submission_id = ?", (sub,))[0]
        self.assertEqual((sub_row["state"], sub_row["num_inputs"], sub_row["taskgroup_id"]),
                         ("accepted", self.N, group))

    def test_failure_on_the_second_chunk(self):
        self.s.sim_fault(match="add_runs", skip=1, kind="status", status=500)
        inputs = self.inputs("fail")
        status, answer, _, raw = self.post({"inputs": inputs})
        self.assertEqual(status, 502, raw[:800])
        err = self.assertErrorShape(answer, 502)
        detail = err.get("detail") or {}
        self.assertRegex(detail.get("submission_id") or "", r"^sub_", err)
        self.assertEqual(detail.get("state"), "failed", err)
        self.assertEqual(detail.get("accepted_inputs"), 1000)
        group = detail.get("taskgroup_id")
        self.assertRegex(group or "", r"^tgrp_")

        adds = add_runs_requests(self.sim_requests())
        self.assertEqual([(len(a["body"]["inputs"]), a["status"]) for a in adds],
                         [(1000, 200), (1000, 500)], "the third chunk must never be sent")
        runs = self.s.sim_group(group)
        self.assertEqual(len(runs), 1000)
        self.assertEqual(detail.get("run_ids"), [r["run_id"] for r in runs],
                         "error.detail must list the 1000 accepted run ids in order")

        sub = detail["submission_id"]
        row = self.s.db("SELECT * FROM audit_submissions WHERE submission_id = ?", (sub,))[0]
        self.assertEqual((row["state"], row["http_status"], row["upstream_status"]),
                         ("failed", 502, 500))
        self.assertTrue(row["error"])
        rows = self.s.db("SELECT run_id FROM audit_runs WHERE submission_id = ? "
                         "ORDER BY input_index", (sub,))
        self.assertEqual([r[0] for r in rows], detail["run_ids"])
        calls = self.s.db("SELECT operation, outcome, http_status, first_input FROM "
                          "upstream_calls WHERE submission_id = ? ORDER BY seq", (sub,))
        self.assertEqual([tuple(c) for c in calls],
                         [("create_group", "ok", 200, None), ("add_runs", "ok", 200, 0),
                          ("add_runs", "error", 500, 1000)])
        self.assertNoPending()


# ---- 7. group creation --------------------------------------------------------------------------------

class GroupCreationTest(SharedStackTest):
    """7. Without taskgroup_id exactly one group is made, its metadata naming team and
    submission."""

    def test_one_group_named_after_team_and_submission(self):
        for team in ("alpha", "beta"):
            with self.subTest(team=team):
                self.s.sim_clear()
                status, answer, _, _ = self.post({"inputs": ["a", "b", "c"]}, team=team)
                self.assertAccepted(status, answer, 3)
                reqs = self.sim_requests()
                creates = create_group_requests(reqs)
                self.assertEqual(len(creates), 1, reqs)
                self.assertLess(reqs.index(creates[0]), reqs.index(add_runs_requests(reqs)[0]))
                want = {"taskgate_team": team, "taskgate_sub": answer["submission_id"]}
                self.assertEqual((creates[0]["body"] or {}).get("metadata"), want)
                self.assertEqual(creates[0]["headers"].get("x-api-key"), self.keys[team])
                dump = self.s._sim("GET", "/_sim/groups/" + answer["taskgroup_id"])
                self.assertEqual(dump.get("metadata"), want)
                row = self.s.db("SELECT taskgroup_id FROM audit_submissions "
                                "WHERE submission_id = ?", (answer["submission_id"],))
                self.assertEqual(row[0][0], answer["taskgroup_id"])
                first = self.s.db("SELECT operation, outcome FROM upstream_calls WHERE "
                                  "submission_id = ? AND seq = 0", (answer["submission_id"],))
                self.assertEqual(tuple(first[0]), ("create_group", "ok"))

    def test_taskgroup_id_creates_none(self):
        status, first, _, _ = self.post({"inputs": ["a"]})
        self.assertAccepted(status, first, 1)
        self.s.sim_clear()
        status, answer, _, _ = self.post({"inputs": ["b"], "taskgroup_id": first["taskgroup_id"]})
        self.assertAccepted(status, answer, 1)
        self.assertEqual(create_group_requests(self.sim_requests()), [])


# ---- 8. HTML ------------------------------------------------------------------------------------------

class HtmlTest(SharedStackTest):
    """8. A browser (Accept prefers text/html) gets HTML pages, with everything escaped."""

    def assertHtml(self, headers, raw):
        self.assertTrue(headers.get("content-type", "").startswith("text/html"), headers)
        self.assertIn("content-security-policy", headers)
        self.assertTrue(headers["content-security-policy"].strip())
        return raw.decode("utf-8")

    def assertNoScriptButOurs(self, page):
        """The only script on a page is the gateway's own file; user text never becomes one."""
        tags = re.findall(r"<script[^>]*>", page, re.IGNORECASE)
        self.assertEqual(tags, ['<script src="/static/taskgate.js" defer>'] * len(tags),
                         "user text reached the page unescaped")
        self.assertLessEqual(len(tags), 1)

    def test_success_page_lists_every_run(self):
        inputs = ["q%d" % i for i in range(12)]
        status, _, headers, raw = self.post({"inputs": inputs}, accept=ACCEPT_BROWSER)
        self.assertEqual(status, 200, raw[:500])
        page = self.assertHtml(headers, raw)
        adds = self.only_add_runs()
        group = group_of(adds[0])
        runs = self.s.sim_group(group)
        self.assertEqual(len(runs), 12)
        for r in runs:
            self.assertIn(r["run_id"], page)
        self.assertIn(group, page)
        self.assertNoScriptButOurs(page)

    def test_problem_page_lists_problems_escaped(self):
        body = {"inputs": ["ok", ""],
                "metadata": {"<script>alert(1)</script>": "x"},
                "include_domains": ["<img src=x onerror=alert(1)>"]}
        status, answer, _, _ = self.post(body)
        self.assertEqual(status, 422)
        detail = self.assertValidationShape(answer)
        status, _, headers, raw = self.post(body, accept=ACCEPT_BROWSER)
        self.assertEqual(status, 422, raw[:500])
        page = self.assertHtml(headers, raw)
        self.assertNoScriptButOurs(page)
        self.assertNotIn("<img", page.lower(), "user text reached the page unescaped")
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)
        text = html.unescape(page)
        for p in detail:
            self.assertIn(p["msg"], text, "problem missing from the page: %r" % p)
        self.assertIn("<script>alert(1)</script>", text)
        self.assertNothingUpstream()

    def test_browser_form_post(self):
        """The browser case in full: a urlencoded form with the token in a field."""
        fields = [("token", self.tokens["alpha"]), ("inputs", "first\r\nsecond <b>\r\n"),
                  ("metadata.note", "<i>hi</i>")]
        status, _, headers, raw = self.post_form(fields, token=False, accept=ACCEPT_BROWSER)
        self.assertEqual(status, 200, raw[:500])
        page = self.assertHtml(headers, raw)
        add = self.only_add_runs()[0]
        self.assertEqual([i["input"] for i in add["body"]["inputs"]], ["first", "second <b>"])
        for r in self.s.sim_group(group_of(add)):
            self.assertIn(r["run_id"], page)
        self.assertNotIn("<i>hi", page)
        self.assertNotIn(self.tokens["alpha"], page)

    def test_json_when_json_is_preferred(self):
        for accept in ("*/*", "application/json, text/html;q=0.5", None):
            with self.subTest(accept=accept):
                status, answer, headers, raw = self.post({"inputs": ["q"]}, accept=accept)
                self.assertAccepted(status, answer, 1, raw[:300])
                self.assertTrue(headers.get("content-type", "").startswith("application/json"))


# ---- 9. a newcomer's form post ----------------------------------------------------------------------------

class NewcomerTest(SharedStackTest):
    """9. curl --data-urlencode "inputs@questions.txt" with 20 questions → 20 run ids."""

    QUESTIONS = ["What is the tallest mountain in %s?" % c for c in (
        "France", "Japan (日本)", "Côte d'Ivoire", "Peru", "Nepal", "Chile", "Kenya", "Italy",
        "Norway", "Iceland", "Canada", "Mexico", "Spain", "Greece", "Turkey", "Iran", "Egypt",
        "Brazil", "New Zealand", "Österreich")]

    def test_twenty_questions(self):
        text = "\n".join(self.QUESTIONS) + "\n"
        # curl --data-urlencode "inputs@questions.txt" -d processor=base: %20 for spaces,
        # curl's default Content-Type and Accept.
        body = ("inputs=" + urllib.parse.quote(text, safe="") + "&processor=base").encode("ascii")
        status, answer, headers, raw = self.post(body, FORM_CT, accept="*/*")
        self.assertAccepted(status, answer, 20, raw[:500])
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        add = self.only_add_runs()[0]
        self.assertEqual(add["body"], expected_body(self.QUESTIONS, {"processor": "base"}))
        runs = self.s.sim_group(answer["taskgroup_id"])
        self.assertEqual([r["run_id"] for r in runs], answer["run_ids"])
        rows = self.s.db("SELECT run_id FROM audit_runs WHERE submission_id = ? "
                         "ORDER BY input_index", (answer["submission_id"],))
        self.assertEqual([r[0] for r in rows], answer["run_ids"])


# ---- 3. body size --------------------------------------------------------------------------------------

class BodyLimitTest(SharedStackTest):
    """3. A body over max_body_bytes gets 413 in the error shape; nothing goes upstream."""

    STACK = {"conf": {"max_body_bytes": 4096}}

    @classmethod
    def prepare(cls):
        cls.team("alpha", ALPHA_DEFAULT)

    def test_over_the_limit(self):
        big = {"inputs": ["question %04d with some padding to make it longer" % i
                          for i in range(120)]}
        payload = json.dumps(big).encode()
        self.assertGreater(len(payload), 4096)
        form, ctype = multipart([("inputs", "\r\n".join(big["inputs"]))])
        for name, body, ct in (("json", payload, JSON_CT), ("multipart", form, ctype),
                               ("urlencoded", urlencoded([("inputs", "\n".join(big["inputs"]))]),
                                FORM_CT)):
            with self.subTest(name):
                status, answer, headers, raw = self.post(body, ct)
                self.assertEqual(status, 413, raw[:300])
                self.assertTrue(headers.get("content-type", "").startswith("application/json"),
                                headers)
                self.assertErrorShape(answer, 413)
                self.assertNothingUpstream()

    def test_under_the_limit(self):
        inputs = ["question %04d with some padding" % i for i in range(90)]
        payload = json.dumps({"inputs": inputs}).encode()
        self.assertLess(len(payload), 4096)
        status, answer, _, raw = self.post(payload)
        self.assertAccepted(status, answer, 90, raw[:300])


# ---- 10. client headers and the send path ------------------------------------------------------

def fcgi_post(sock_path, path, body, params):
    """POST body to path straight over the daemon's FastCGI socket (no nginx), with params
    added to the ones nginx would send. Returns (status, headers, body bytes)."""
    env = {"REQUEST_METHOD": "POST", "DOCUMENT_URI": path, "REQUEST_URI": path,
           "QUERY_STRING": "", "CONTENT_TYPE": JSON_CT, "CONTENT_LENGTH": str(len(body)),
           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
           "HTTP_ACCEPT": ACCEPT_JSON}
    env.update(params)
    stdout, _, _ = fcgi_exchange(sock_path, env, ([body] if body else []) + [b""])
    head, _, data = stdout.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
    return int(headers.get("Status", "200").split()[0]), headers, data


class HeadersTest(SharedStackTest):
    """10. A client header the gateway passes upstream (parallel-beta) that cannot be sent
    is refused before anything is created (no group either): 422 at ["header", name], a
    rejected record. And the upstream client's refusal to send is never ignored: a request
    it could not send is a failed submission with a not_sent call, never unknown."""

    BAD_BETAS = [
        ("over 1,000 bytes", ",".join("beta-%03d" % i for i in range(120))),
        ("a control character", BETA_EVENTS + "\x01"),
        ("DEL", BETA_EVENTS + "\x7f"),
        ("a tab inside a name", "events\tsse"),
        ("a name with a slash", "a/b"),
    ]

    def own_group(self):
        status, answer, _, _ = self.post({"inputs": ["first"]})
        self.assertAccepted(status, answer, 1)
        self.s.sim_clear()
        return answer["taskgroup_id"]

    def assertHeaderRefused(self, status, answer, raw, rejected):
        self.assertEqual(status, 422, raw[:600])
        self.assertEqual([p["loc"] for p in answer["detail"]], [["header", "parallel-beta"]],
                         answer)
        self.assertEqual(self.count_state("rejected", 422), rejected + 1)
        self.assertNothingUpstream("a bad parallel-beta")
        self.assertNoPending()

    def test_bad_beta_is_refused_before_a_group_is_made(self):
        for name, value in self.BAD_BETAS:
            with self.subTest(name):
                rejected = self.count_state("rejected", 422)
                status, answer, _, raw = self.post({"inputs": ["q"]},
                                                   headers={"parallel-beta": value})
                self.assertHeaderRefused(status, answer, raw, rejected)

    def test_bad_beta_into_a_named_group_is_refused(self):
        gid = self.own_group()
        for name, value in self.BAD_BETAS:
            with self.subTest(name):
                rejected = self.count_state("rejected", 422)
                status, answer, _, raw = self.post({"inputs": ["q"], "taskgroup_id": gid},
                                                   headers={"parallel-beta": value})
                self.assertHeaderRefused(status, answer, raw, rejected)

    def test_bad_beta_on_the_compat_paths(self):
        gid = self.own_group()
        for path in ("/v1/tasks/groups", "/v1/tasks/groups/%s/runs" % gid):
            for name, value in self.BAD_BETAS:
                with self.subTest(path=path, beta=name):
                    rejected = self.count_state("rejected", 422)
                    status, answer, _ = self.s.json_req(
                        "POST", path, {"inputs": [{"input": "q"}]} if "runs" in path else {},
                        headers={"x-api-key": self.tokens["alpha"], "parallel-beta": value})
                    self.assertHeaderRefused(status, answer, json.dumps(answer).encode(),
                                             rejected)
        # Reads pass the header on too: the same check, before the upstream is asked.
        status, answer, _ = self.s.json_req("GET", "/v1/tasks/groups/" + gid, headers={
            "x-api-key": self.tokens["alpha"], "parallel-beta": self.BAD_BETAS[0][1]})
        self.assertEqual(status, 422, answer)
        self.assertEqual(answer["detail"][0]["loc"], ["header", "parallel-beta"])
        self.assertNothingUpstream("a read with a bad parallel-beta")

    def test_long_valid_beta_is_passed_on(self):
        value = ", ".join([BETA_FIELD_BASIS, BETA_EVENTS] * 10)  # 470 bytes
        status, answer, _, _ = self.post({"inputs": ["q"]}, headers={"parallel-beta": value})
        self.assertAccepted(status, answer, 1)
        names = beta_names(self.only_add_runs()[0]["headers"].get("parallel-beta"))
        self.assertEqual(sorted(names), sorted([BETA_FIELD_BASIS, BETA_EVENTS]))

    def test_a_request_that_cannot_be_sent_fails_and_may_be_sent_again(self):
        # Only a request id forged past nginx (straight over the FastCGI socket) still
        # reaches the upstream client unsendable; whichever call it is, nothing leaves.
        gid = self.own_group()
        for name, body in (("create a group", {"inputs": ["q"]}),
                           ("add runs", {"inputs": ["q"], "taskgroup_id": gid})):
            with self.subTest(name):
                status, _, raw = fcgi_post(
                    self.s.sock_path, "/v1/runs", json.dumps(body).encode(),
                    {"REQUEST_ID": "req-forged\x01", "HTTP_AUTHORIZATION":
                     "Bearer " + self.tokens["alpha"]})
                answer = json.loads(raw)
                self.assertEqual(status, 502, answer)
                err = self.assertErrorShape(answer, 502)
                self.assertIn("nothing was sent", err["message"])
                self.assertIn("may be sent again", err["message"])
                sub = err["detail"]["submission_id"]
                self.assertEqual(err["detail"]["state"], "failed")
                row = self.s.db("SELECT state, http_status FROM audit_submissions WHERE "
                                "submission_id = ?", (sub,))[0]
                self.assertEqual(tuple(row), ("failed", 502))
                calls = self.s.db("SELECT operation, outcome, http_status FROM audit_calls "
                                  "WHERE submission_id = ? ORDER BY seq", (sub,))
                self.assertEqual([tuple(c) for c in calls],
                                 [("create_group" if "group" in name else "add_runs",
                                   "not_sent", None)])
                self.assertNothingUpstream(name)
                self.assertNoPending()


if __name__ == "__main__":
    unittest.main()
