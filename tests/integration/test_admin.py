"""Administration over HTTP (/v1/admin/...) for admin tokens, the admin change log read
back (GET /v1/audit/admin, `taskgate audit admin`), and the retention prune (`taskgate
audit prune`), through real nginx, the daemon and the simulator. A team made and keyed over
HTTP submits through the simulator; keys never appear in an answer, a log or the database
outside the team's own key column; every change is in the admin log with fingerprints;
other roles get 403; the prune removes old settled records only, is logged, and leaves the
append-only triggers on. Run through ctest or directly with TG_BIN, TG_SIM, TG_NGINX and
TG_SOURCE_DIR set."""

import csv
import glob
import io
import json
import os
import secrets
import sys
import unittest
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BACKEND, DB_INTEGRITY, StackTestCase, TOKEN_RE,  # noqa: E402
                     key_fingerprint)

ADMIN_COLUMNS = ["id", "at", "actor", "actor_team", "interface", "action", "object_type",
                 "object_id", "team", "before", "after", "remote_addr"]
TEAM_ERR = ("a team name is 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter "
            "or a digit")


def new_key(team):
    return "par-%s-%s" % (team, secrets.token_hex(16))


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


class AdminTest(StackTestCase):

    def setup(self, keys=()):
        """A stack with team ops (made by the CLI, as an operator bootstraps) and an admin,
        an audit and a submit token of ops."""
        self.ops_key = new_key("ops")
        s = self.stack(keys=[self.ops_key] + list(keys))
        s.add_team("ops", self.ops_key, preset={"processor": "core"})
        self.admin, self.admin_id = s.issue_token("ops", role="admin", label="root-admin")
        self.auditor, _ = s.issue_token("ops", role="audit", label="auditor")
        self.submitter, _ = s.issue_token("ops", label="ci")
        self.seen = []  # every answer body, to search for secrets
        return s

    def call(self, method, path, body=None, token=None, expect=None):
        s = self.stacks_last
        hdrs = {"Accept": "application/json"}
        data = None
        if body is not None:
            hdrs["Content-Type"] = "application/json"
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        status, rh, raw = s.http(method, path, data, hdrs)
        self.seen.append(raw.decode("utf-8", "replace"))
        parsed = json.loads(raw) if raw else None
        if expect is not None:
            self.assertEqual(status, expect, "%s %s: %s" % (method, path, raw[:500]))
        return status, parsed, rh

    @property
    def stacks_last(self):
        return self._stacks[-1]

    def assert422(self, method, path, body, loc, token=None):
        _, answer, _ = self.call(method, path, body, token or self.admin, expect=422)
        locs = [d["loc"] for d in answer["detail"]]
        self.assertIn(loc, locs, answer)
        for d in answer["detail"]:
            self.assertTrue(d["msg"] and d["type"], d)
        return answer["detail"]

    def admin_rows(self, since_id=0):
        return [dict(r) for r in self.stacks_last.db(
            "SELECT * FROM audit_admin WHERE id > ? ORDER BY id", (since_id,))]

    def assert_no_secret(self, secret):
        """secret appears in no answer, no log of the daemon or nginx, and nowhere in the
        database but the team's own key column."""
        s = self.stacks_last
        for body in self.seen:
            self.assertNotIn(secret, body, "a secret in an HTTP answer")
        for path in glob.glob(s.path("*.log")):
            if os.path.basename(path).startswith("sim"):
                continue  # the upstream's own log: it is sent the key
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                self.assertNotIn(secret, f.read(), "a secret in " + path)
        for t in s.db_tables():
            for c, typ in s.db_columns(t):
                if (t, c) == ("teams", "upstream_key"):
                    continue
                # The column's text; PostgreSQL's bytea as its bytes, not their hex.
                text = "encode(%s, 'escape')" % c if typ == "bytea" else "CAST(%s AS TEXT)" % c
                n = s.db_value("SELECT count(*) FROM %s WHERE replace(%s, ?, '') <> %s"
                               % (t, text, text), (secret,))
                self.assertEqual(n, 0, "a secret in %s.%s" % (t, c))

    # ---- the whole round ------------------------------------------------------------------

    def test_team_key_preset_token_over_http_then_submit(self):
        k1, k2 = new_key("research"), new_key("research2")
        s = self.setup(keys=[k1, k2])
        before = max(r["id"] for r in self.admin_rows())

        _, team, _ = self.call("POST", "/v1/admin/teams", {"name": "research", "key": k1},
                               self.admin, expect=201)
        self.assertEqual((team["name"], team["key_fingerprint"], team["tokens"]),
                         ("research", key_fingerprint(k1), 0))
        _, listed, _ = self.call("GET", "/v1/admin/teams", None, self.admin, expect=200)
        self.assertEqual([t["name"] for t in listed["data"]], ["ops", "research"])
        self.assertEqual(listed["data"][1]["key_fingerprint"], key_fingerprint(k1))

        preset = {"processor": "core", "metadata": {"cost_center": "R&D"},
                  "mcp_servers": [{"name": "m", "url": "https://mcp.example.com",
                                   "headers": {"Authorization": "Bearer mcp-secret-1"}}]}
        _, shown, _ = self.call("PUT", "/v1/admin/teams/research/presets/default", preset,
                                self.admin, expect=200)
        self.assertEqual(shown["preset"]["metadata"], {"cost_center": "R&D"})
        self.assertRegex(shown["preset"]["mcp_servers"][0]["headers"]["Authorization"],
                         r"^sha256:[0-9a-f]{12}$")
        _, shown, _ = self.call("GET", "/v1/admin/teams/research/presets/default", None,
                                self.admin, expect=200)
        self.assertEqual((shown["team"], shown["name"], shown["preset"]["processor"]),
                         ("research", "default", "core"))
        _, names, _ = self.call("GET", "/v1/admin/teams/research/presets", None, self.admin,
                                expect=200)
        self.assertEqual([p["name"] for p in names["data"]], ["default"])
        # The CLI reads what HTTP stored: one store, one validation.
        r = s.cli("preset", "show", "research", "default")
        self.assertEqual(json.loads(r.stdout)["metadata"], {"cost_center": "R&D"})

        _, issued, _ = self.call("POST", "/v1/admin/tokens",
                                 {"team": "research", "label": "ci", "expires": "30d"},
                                 self.admin, expect=201)
        token = issued["token"]
        self.assertRegex(token, TOKEN_RE)
        self.seen.pop()  # the one answer that shows the token; no other may
        self.assertEqual((issued["team"], issued["role"], issued["label"], issued["revoked_at"]),
                         ("research", "submit", "ci", None))
        self.assertIsNotNone(issued["expires_at"])
        _, tokens, _ = self.call("GET", "/v1/admin/tokens?team=research", None, self.admin,
                                 expect=200)
        self.assertEqual([t["id"] for t in tokens["data"]], [issued["id"]])
        self.assertNotIn("token", tokens["data"][0])
        self.assertNotIn(token, json.dumps(tokens))

        # The token submits, and the upstream gets the key set over HTTP.
        s.sim_clear()
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q1"]}, token=token)
        self.assertEqual(status, 200, answer)
        self.assertEqual({r["headers"].get("x-api-key") for r in s.sim_requests()}, {k1})
        sent = [r for r in s.sim_requests() if r["path"].endswith("/runs")][0]
        self.assertEqual(sent["body"]["inputs"][0]["processor"], "core")
        self.assertEqual(sent["body"]["inputs"][0]["mcp_servers"][0]["headers"]["Authorization"],
                         "Bearer mcp-secret-1")

        # A new key over HTTP: the next submission goes out with it.
        _, team, _ = self.call("PUT", "/v1/admin/teams/research/key", {"key": k2}, self.admin,
                               expect=200)
        self.assertEqual(team["key_fingerprint"], key_fingerprint(k2))
        s.sim_clear()
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q2"]}, token=token)
        self.assertEqual(status, 200, answer)
        self.assertEqual({r["headers"].get("x-api-key") for r in s.sim_requests()}, {k2})

        # Revoked over HTTP: the token no longer works.
        _, revoked, _ = self.call("DELETE", "/v1/admin/tokens/" + issued["id"], None,
                                  self.admin, expect=200)
        self.assertIsNotNone(revoked["revoked_at"])
        self.assertNotIn("token", revoked)
        status, _, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q3"]}, token=token)
        self.assertEqual(status, 401)
        self.call("DELETE", "/v1/admin/tokens/" + issued["id"], None, self.admin, expect=404)

        # Every change is on record under the admin token, keys as fingerprints.
        rows = self.admin_rows(before)
        self.assertEqual([(r["action"], r["object_id"]) for r in rows],
                         [("team.add", "research"), ("preset.set", "research/default"),
                          ("token.issue", issued["id"]), ("team.set_key", "research"),
                          ("token.revoke", issued["id"])])
        for r in rows:
            self.assertEqual((r["actor"], r["actor_team"], r["interface"], r["remote_addr"]),
                             ("token:" + self.admin_id, "ops", "http", "127.0.0.1"))
            self.assertEqual(r["team"], "research")
        self.assertEqual(json.loads(rows[0]["after"])["key_fingerprint"], key_fingerprint(k1))
        self.assertEqual(json.loads(rows[3]["before"])["key_fingerprint"], key_fingerprint(k1))
        self.assertEqual(json.loads(rows[3]["after"])["key_fingerprint"], key_fingerprint(k2))
        self.assertRegex(json.loads(rows[1]["after"])["mcp_servers"][0]["headers"]
                         ["Authorization"], r"^sha256:")
        for secret in (k1, k2, token, "mcp-secret-1"):
            if secret != "mcp-secret-1":
                self.assert_no_secret(secret)
        for body in self.seen:
            self.assertNotIn("mcp-secret-1", body)

    # ---- who may ---------------------------------------------------------------------------

    def test_other_roles_get_403_and_no_token_401(self):
        s = self.setup()
        before = self.admin_rows()
        routes = [("GET", "/v1/admin/teams", None), ("POST", "/v1/admin/teams",
                                                     {"name": "x", "key": "k"}),
                  ("PUT", "/v1/admin/teams/ops/key", {"key": "stolen"}),
                  ("GET", "/v1/admin/teams/ops/presets"),
                  ("GET", "/v1/admin/teams/ops/presets/default"),
                  ("PUT", "/v1/admin/teams/ops/presets/default", {"processor": "pro"}),
                  ("GET", "/v1/admin/tokens"), ("POST", "/v1/admin/tokens", {"team": "ops"}),
                  ("DELETE", "/v1/admin/tokens/" + self.admin_id)]
        for route in routes:
            method, path, body = (route + (None,))[:3]
            for token, want in ((self.submitter, 403), (self.auditor, 403), (None, 401)):
                with self.subTest(method=method, path=path, want=want):
                    _, answer, _ = self.call(method, path, body, token, expect=want)
                    self.assertEqual(answer["type"], "error")
                    self.assertTrue(answer["error"]["message"])
                    self.assertIn("ref_id", answer["error"])
        self.assertEqual(self.admin_rows(), before, "a refused request changed something")
        self.assertEqual(s.db_value("SELECT key_fingerprint FROM teams WHERE name = 'ops'"),
                         key_fingerprint(self.ops_key))
        # The admin log: audit and admin tokens read it, a submit token does not.
        self.call("GET", "/v1/audit/admin", None, self.submitter, expect=403)
        self.call("GET", "/v1/audit/admin", None, None, expect=401)
        for token in (self.auditor, self.admin):
            _, body, _ = self.call("GET", "/v1/audit/admin", None, token, expect=200)
            self.assertEqual(len(body["data"]), len(before))
        # Paths and methods it does not serve.
        self.call("GET", "/v1/admin/nothing", None, self.admin, expect=404)
        self.call("GET", "/v1/admin/teams/ops/key/x", None, self.admin, expect=404)
        _, _, rh = self.call("GET", "/v1/admin/teams/ops/key", None, self.admin, expect=405)
        self.assertEqual(rh.get("allow"), "PUT")

    # ---- refused arguments -------------------------------------------------------------------

    def test_bad_arguments_are_422_with_locs_and_change_nothing(self):
        s = self.setup()
        before = self.admin_rows()
        self.assert422("POST", "/v1/admin/teams", {"name": "research"}, ["body", "key"])
        self.assert422("POST", "/v1/admin/teams", {"name": "a b", "key": "k"}, ["body", "name"])
        self.assert422("POST", "/v1/admin/teams", {"name": "x", "key": "has space"},
                       ["body", "key"])
        self.assert422("POST", "/v1/admin/teams", {"name": "x", "key": 5}, ["body", "key"])
        self.assert422("POST", "/v1/admin/teams", {"name": "x", "key": "k", "colour": "red"},
                       ["body", "colour"])
        self.assert422("POST", "/v1/admin/teams", "{not json", ["body"])
        self.assert422("POST", "/v1/admin/teams", "[1]", ["body"])
        self.assert422("PUT", "/v1/admin/teams/a%20b/key", {"key": "k"}, ["path", "team"])
        self.assert422("PUT", "/v1/admin/teams/ops/key", {}, ["body", "key"])
        detail = self.assert422("PUT", "/v1/admin/teams/ops/presets/bad",
                                {"metadata": {"averyveryverylongkey": 1},
                                 "source_policy": {"include_domains": ["localhost"]}},
                                ["body", "metadata", "averyveryverylongkey"])
        self.assertIn(["body", "source_policy", "include_domains", "0"],
                      [[str(p) for p in d["loc"]] for d in detail])
        self.assert422("PUT", "/v1/admin/teams/ops/presets/b%20c", {}, ["path", "preset"])
        self.assert422("POST", "/v1/admin/tokens", {"team": "ops", "role": "root"},
                       ["body", "role"])
        self.assert422("POST", "/v1/admin/tokens", {"team": "nobody"}, ["body", "team"])
        self.assert422("POST", "/v1/admin/tokens", {"team": "ops", "expires": "soon"},
                       ["body", "expires"])
        self.assert422("POST", "/v1/admin/tokens", {}, ["body", "team"])
        self.assert422("GET", "/v1/admin/tokens?team=a%20b", None, ["query", "team"])
        self.assert422("DELETE", "/v1/admin/tokens/not-a-token", None, ["path", "token_id"])
        # Conflicts and unknown objects.
        self.call("POST", "/v1/admin/teams", {"name": "ops", "key": "k2"}, self.admin,
                  expect=409)
        self.call("PUT", "/v1/admin/teams/nobody/key", {"key": "k"}, self.admin, expect=404)
        self.call("GET", "/v1/admin/teams/ops/presets/none", None, self.admin, expect=404)
        self.call("GET", "/v1/admin/teams/nobody/presets", None, self.admin, expect=404)
        status, _, _ = s.http("POST", "/v1/admin/teams", "name=x",
                              {"Authorization": "Bearer " + self.admin,
                               "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 415)
        self.assertEqual(self.admin_rows(), before)
        self.assertEqual(s.db_value("SELECT count(*) FROM teams"), 1)
        self.assertEqual(s.db_value("SELECT count(*) FROM presets"), 1)

    def test_team_names_have_one_grammar_on_the_cli_and_over_http(self):
        """A name that could not be addressed as /v1/admin/teams/{name} (or typed as an
        argument) is refused alike by `taskgate team add` and POST /v1/admin/teams."""
        s = self.setup()
        before = self.admin_rows()
        bad = ["..", ".", "a/b", "", "x" * 65, "-x", ".hidden", "_x", "a b", "é"]
        for name in bad:
            with self.subTest(http=name):
                detail = self.assert422("POST", "/v1/admin/teams", {"name": name, "key": "k"},
                                        ["body", "name"])
                self.assertIn(TEAM_ERR, [d["msg"] for d in detail])
            with self.subTest(cli=name):
                r = s.cli("team", "add", name, input=new_key("x") + "\n")
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(TEAM_ERR, r.stderr)
            with self.subTest(preset=name):
                r = s.cli("preset", "set", "ops", name, "-", input="{}")
                self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertEqual(self.admin_rows(), before)
        self.assertEqual(s.db_value("SELECT count(*) FROM teams"), 1)
        # The audit filter takes the same grammar.
        status, answer, _ = self.call("GET", "/v1/audit/submissions?team=..", None,
                                      self.auditor, expect=422)
        self.assertEqual([d["loc"] for d in answer["detail"]], [["query", "team"]])
        # Names in the grammar work everywhere, also at its limits.
        for name in ("Team.A_1-x", "a..b", "9", "z" * 64):
            with self.subTest(good=name):
                self.call("POST", "/v1/admin/teams", {"name": name, "key": new_key("g")},
                          self.admin, expect=201)
                self.call("GET", "/v1/admin/teams/%s/presets" % name, None, self.admin,
                          expect=200)
        s.cli_ok("team", "add", "cli.Team-2", input=new_key("c") + "\n")
        self.call("PUT", "/v1/admin/teams/cli.Team-2/presets/p.1", {"processor": "core"},
                  self.admin, expect=200)

    # ---- the admin log, read back ---------------------------------------------------------

    def test_key_change_in_the_admin_log_over_http_and_cli(self):
        s = self.setup()
        k1, k2, k3 = new_key("r1"), new_key("r2"), new_key("r3")
        self.call("POST", "/v1/admin/teams", {"name": "research", "key": k1}, self.admin,
                  expect=201)
        self.call("PUT", "/v1/admin/teams/research/key", {"key": k2}, self.admin, expect=200)
        r = s.cli("team", "set-key", "research", input=k3 + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.seen.append(r.stdout + r.stderr)

        path = "/v1/audit/admin?action=team.set_key&object=research"
        _, body, _ = self.call("GET", path, None, self.auditor, expect=200)
        rows = body["data"]
        self.assertEqual(len(rows), 2)
        newest, older = rows  # newest first
        self.assertRegex(newest["actor"], r"^os:\S+$")
        self.assertEqual((newest["interface"], newest["actor_team"]), ("cli", None))
        self.assertEqual((older["actor"], older["interface"], older["actor_team"]),
                         ("token:" + self.admin_id, "http", "ops"))
        self.assertEqual(older["before"], {"name": "research",
                                           "key_fingerprint": key_fingerprint(k1)})
        self.assertEqual(older["after"]["key_fingerprint"], key_fingerprint(k2))
        self.assertEqual((newest["before"]["key_fingerprint"],
                          newest["after"]["key_fingerprint"]),
                         (key_fingerprint(k2), key_fingerprint(k3)))
        self.assertEqual(list(newest), ADMIN_COLUMNS)

        # CSV parses back into the same rows; the CLI gives the same JSON and CSV.
        status, rh, raw = s.http("GET", path + "&format=csv",
                                 headers={"Authorization": "Bearer " + self.auditor})
        self.assertEqual((status, rh.get("content-type")), (200, "text/csv; charset=utf-8"))
        self.seen.append(raw.decode())
        table = list(csv.reader(io.StringIO(raw.decode(), newline="")))
        self.assertEqual(table[0], ADMIN_COLUMNS)
        self.assertEqual([json.loads(row[10]) for row in table[1:]],
                         [row["after"] for row in rows])
        r = s.cli("audit", "admin", "--action", "team.set_key", "--object", "research", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), body)
        r = s.cli("audit", "admin", "--action", "team.set_key", "--team", "research", "--csv")
        self.assertEqual(list(csv.reader(io.StringIO(r.stdout, newline=""))), table)
        r = s.cli("audit", "admin", "--object-type", "team")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("at "), r.stdout)
        self.assertEqual(len(lines), 1 + 4)  # team.add ops, research; two set_key
        self.assertIn(key_fingerprint(k3), r.stdout)
        self.seen.append(r.stdout)
        for key in (k1, k2, k3):
            self.assert_no_secret(key)
        # Filters are checked like the other lists'.
        for q, loc in (("object_type=user", "object_type"), ("action=Team", "action"),
                       ("since=x", "since"), ("state=failed", "state")):
            self.assert422("GET", "/v1/audit/admin?" + q, None, ["query", loc], self.auditor)
        self.call("GET", "/v1/audit/admin/1", None, self.auditor, expect=404)

    def test_admin_log_pages_each_change_once(self):
        s = self.setup()
        for i in range(23):
            self.call("PUT", "/v1/admin/teams/ops/presets/p%02d" % i, {"processor": "base"},
                      self.admin, expect=200)
        expected = [dict(r) for r in s.db("SELECT * FROM audit_admin ORDER BY at DESC, id DESC")]
        for e in expected:
            for k in ("before", "after"):
                e[k] = json.loads(e[k]) if e[k] is not None else None
        rows, cursor, pages = [], None, 0
        while True:
            path = "/v1/audit/admin?limit=4" + ("&cursor=" + cursor if cursor else "")
            _, body, rh = self.call("GET", path, None, self.admin, expect=200)
            rows += body["data"]
            pages += 1
            cursor = body["next_cursor"]
            self.assertEqual(rh.get("x-next-cursor"), cursor)
            if cursor is None:
                break
        self.assertEqual(rows, expected)
        self.assertEqual(pages, (len(expected) + 3) // 4)
        _, body, _ = self.call("GET", "/v1/audit/admin?team=ops&object_type=preset&limit=1000",
                               None, self.admin, expect=200)
        self.assertEqual(len(body["data"]), 24)  # the default preset and 23 more

    # ---- retention ----------------------------------------------------------------------------

    def insert_old(self, s):
        """Old records (2025) of team ops in every state, each settled one with a call and a
        run, and old audit reads; returns {state: submission id}."""
        conn = s.db_connect()
        ids = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            team_id = conn.execute("SELECT id FROM teams WHERE name = 'ops'").fetchone()[0]
            at = datetime(2025, 3, 1, tzinfo=timezone.utc)
            for i, state in enumerate(["accepted", "failed", "rejected", "pending", "unknown",
                                       "accepted"]):
                sid = "sub_old%02d" % i
                ids.setdefault(state, sid)
                t = rfc3339(at + timedelta(days=i))
                conn.execute(
                    "INSERT INTO submissions (id, team_id, received_at, interface, num_inputs,"
                    " state, request) VALUES (?, ?, ?, 'simplified', 1, ?, '{}')",
                    (sid, team_id, t, state))
                if state != "rejected":
                    conn.execute(
                        "INSERT INTO upstream_calls (submission_id, seq, operation, method,"
                        " path, first_input, num_inputs, started_at, outcome)"
                        " VALUES (?, 0, 'add_runs', 'POST', '/v1/tasks/groups/g/runs', 0, 1,"
                        " ?, 'ok')", (sid, t))
                    conn.execute("INSERT INTO runs (run_id, submission_id, call_seq,"
                                 " input_index) VALUES (?, ?, 0, 0)", ("trun_old%02d" % i, sid))
            for i in range(3):
                conn.execute("INSERT INTO audit_reads (at, actor, interface, query, rows)"
                             " VALUES (?, 'os:someone', 'cli', 'audit runs', 1)",
                             (rfc3339(at + timedelta(hours=i)),))
            conn.execute("COMMIT")
        finally:
            conn.close()
        return ids

    def test_prune_removes_old_settled_records_only_and_is_logged(self):
        s = self.setup()
        ids = self.insert_old(s)
        status, recent, _ = s.json_req("POST", "/v1/runs", {"inputs": ["new"]},
                                       token=self.submitter)
        self.assertEqual(status, 200, recent)
        self.call("GET", "/v1/audit/submissions", None, self.auditor, expect=200)
        counts = lambda: {t: s.db_value("SELECT count(*) FROM " + t)  # noqa: E731
                          for t in ("submissions", "upstream_calls", "runs", "audit_reads",
                                    "admin_log")}
        start = counts()

        r = s.cli("audit", "prune", "--before", "2025-06-01", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("would delete", r.stdout)
        self.assertRegex(r.stdout, r"submissions\s+4\n")
        self.assertRegex(r.stdout, r"upstream_calls\s+3\n")
        self.assertRegex(r.stdout, r"runs\s+3\n")
        self.assertRegex(r.stdout, r"audit_reads\s+3\n")
        self.assertIn("kept 2 submissions", r.stdout)
        after_dry = counts()
        self.assertEqual({k: v for k, v in after_dry.items() if k != "audit_reads"},
                         {k: v for k, v in start.items() if k != "audit_reads"})

        r = s.cli("audit", "prune", "--before", "2025-06-01T00:00:00Z")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("deleted the audit records received before 2025-06-01T00:00:00.000Z",
                      r.stdout)
        self.assertIn("pending or unknown", r.stdout)
        left = {row[0] for row in s.db("SELECT id FROM submissions")}
        self.assertEqual(left, {ids["pending"], ids["unknown"], recent["submission_id"]})
        # The open ones keep their calls and runs; the recent one keeps everything.
        self.assertEqual({row[0] for row in s.db("SELECT submission_id FROM runs")}, left)
        self.assertEqual(s.db_value("SELECT count(*) FROM audit_reads WHERE at < '2025-06'"), 0)
        self.assertGreater(s.db_value("SELECT count(*) FROM audit_reads"), 0)
        if BACKEND == "sqlite":
            # PostgreSQL checks foreign keys on every statement, and its prune guard is a
            # setting of the prune's own transaction; the refusals below show it is gone.
            self.assertEqual(s.db("PRAGMA foreign_key_check"), [])
            self.assertEqual(s.db_value("SELECT count(*) FROM audit_prune_guard"), 0)
        # Logged, with who and the counts; the admin log itself is kept whole.
        log = self.admin_rows()[-1]
        self.assertEqual((log["action"], log["object_type"], log["object_id"], log["interface"]),
                         ("audit.prune", "audit", "before 2025-06-01T00:00:00.000Z", "cli"))
        self.assertRegex(log["actor"], r"^os:\S+$")
        self.assertEqual(json.loads(log["after"]),
                         {"before": "2025-06-01T00:00:00.000Z", "submissions": 4,
                          "upstream_calls": 3, "runs": 3, "audit_reads": 3, "kept_open": 2})
        self.assertEqual(s.db_value("SELECT count(*) FROM admin_log"), start["admin_log"] + 1)
        _, body, _ = self.call("GET", "/v1/audit/admin?action=audit.prune", None, self.auditor,
                               expect=200)
        self.assertEqual(len(body["data"]), 1)

        # Pruning again finds nothing more; still logged.
        r = s.cli("audit", "prune", "--before", "2025-06-01")
        self.assertRegex(r.stdout, r"submissions\s+0\n")

        # The records are still append-only outside a prune.
        conn = s.db_connect()
        try:
            for sql in ("DELETE FROM submissions WHERE id = '%s'" % recent["submission_id"],
                        "DELETE FROM runs", "DELETE FROM upstream_calls",
                        "DELETE FROM audit_reads", "DELETE FROM admin_log",
                        "UPDATE runs SET processor = 'x'", "UPDATE admin_log SET actor = 'x'",
                        "UPDATE submissions SET error = 'x' WHERE id = '%s'"
                        % recent["submission_id"]):
                with self.subTest(sql=sql):
                    with self.assertRaises(DB_INTEGRITY) as cm:
                        conn.execute(sql)
                    self.assertRegex(str(cm.exception), "append-only|audit records|settled")
        finally:
            conn.close()

    def test_prune_usage(self):
        s = self.setup()
        future = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%d")
        for args, says in ((["audit", "prune"], "needs --before"),
                           (["audit", "prune", "--before", "last week"], "--before"),
                           (["audit", "prune", "--before", future], "in the future"),
                           (["audit", "prune", "--before", "2025-01-01", "--force"],
                            "unexpected")):
            with self.subTest(args=args):
                r = s.cli(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(says, r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM admin_log WHERE action ="
                                    " 'audit.prune'"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
