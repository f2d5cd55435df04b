"""The audit trail in SQL (schema version 2, sql/<backend>/002_audit.sql): the views audit_calls
and audit_admin, every ready query of the backend's audit-queries.sql run against a database
filled by the real gateway (real nginx, daemon and simulator), the indexes those queries rely
on, the append-only triggers and the prune guard, and `taskgate init` upgrading a version-1
database without losing a row. On SQLite or PostgreSQL (TG_TEST_DATABASE, see harness.py).
Run through ctest or directly with TG_BIN, TG_SIM, TG_NGINX and TG_SOURCE_DIR set."""

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import unittest
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlparse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BACKEND, DB_INTEGRITY, Stack, db_connect, key_fingerprint,  # noqa: E402
                     pg_server, sqlite_only)

SOURCE_DIR = os.environ.get("TG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SQL_DIR = os.path.join(SOURCE_DIR, "sql", "postgres" if BACKEND == "postgresql" else "sqlite")
QUERIES_PATH = os.path.join(SQL_DIR, "audit-queries.sql")
# The schema version this build migrates to: the highest NNN_*.sql of the backend.
LATEST = max(int(n[:3]) for n in os.listdir(SQL_DIR) if re.match(r"^\d{3}_.*\.sql$", n))

VIEWS = {"audit_submissions", "audit_runs", "audit_calls", "audit_admin",
         "audit_run_status_changes", "audit_summary"}
AUDIT_CALLS_COLUMNS = [
    "submission_id", "team", "seq", "operation", "method", "path", "first_input", "num_inputs",
    "started_at", "finished_at", "duration_ms", "outcome", "http_status", "run_cursor",
    "event_cursor", "error", "taskgroup_id"]
AUDIT_ADMIN_COLUMNS = [
    "id", "at", "actor", "actor_team", "interface", "action", "object_type", "object_id",
    "team", "before", "after", "remote_addr"]
# The table each alias in the views' FROM clauses stands for; the big ones must never be
# scanned by the key queries.
BIG_TABLES = {"s": "submissions", "r": "runs", "a": "admin_log", "c": "upstream_calls"}
KEY_QUERIES = ("runs_of_group", "token_submissions", "token_runs", "team_key_changes")
ADMIN_INSERT = (
    "INSERT INTO admin_log (at, actor, actor_team, interface, action, object_type, object_id,"
    " team, before, after, remote_addr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
TRIGGER_MESSAGES = r"append-only|audit records|settled submission|open submission"


def new_key(team):
    return "par-%s-%s" % (team, secrets.token_hex(16))


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def strip_comments(sql):
    return re.sub(r"(?m)--.*$", "", sql)


def parse_queries(path=QUERIES_PATH):
    """[(name, comment, sql)] from audit-queries.sql: each query follows a "-- name: x" line,
    its comment lines come first and it ends with ";"."""
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    parts = re.split(r"(?m)^-- name: *(\S+) *\n", text)
    out = []
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = body.strip().splitlines()
        comment = [ln for ln in lines if ln.startswith("--")]
        sql = "\n".join(ln for ln in lines if not ln.startswith("--")).strip()
        out.append((name, "\n".join(comment), sql))
    return out


def query_params(sql):
    return sorted(set(re.findall(r":([a-z_]+)", strip_comments(sql))))


def documented_params(comment):
    m = re.search(r"(?m)^-- Parameters: (.*)$", comment)
    return sorted(set(re.findall(r":([a-z_]+)", m.group(1)))) if m else None


def rows_of(conn, sql, params=()):
    """The rows of a query on a db_connect() session, as tuples."""
    return [tuple(r) for r in conn.execute(sql, params)]


def columns_of(conn, table):
    """A table's column names in order, on a db_connect() session."""
    if BACKEND == "postgresql":
        return [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name = ? ORDER BY ordinal_position", (table,))]
    return [r[1] for r in conn.execute("PRAGMA table_info(%s)" % table)]


def schema_version_of(conn):
    if BACKEND == "postgresql":
        return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return conn.execute("PRAGMA user_version").fetchone()[0]


def new_database(s, name):
    """An empty database beside the stack's, as a config's database value: a file in the
    stack's directory, or a database of the stack's PostgreSQL server."""
    if BACKEND == "postgresql":
        dbname = "%s_%s" % (s.pg_dbname, name)
        pg_server().psql('CREATE DATABASE "%s"' % dbname, dbname="postgres")
        return pg_server().dsn_for(dbname)
    return s.path(name + ".db")


def pg_scans(plan):
    """[(node, table, [property lines])] of the scans in an EXPLAIN text: a node's line
    ("->  Index Scan using submissions_group on submissions s"), then its properties
    ("Index Cond: ...") until the next node."""
    scans = []
    for line in plan:
        text = line.strip()
        node = text[len("->"):].strip() if text.startswith("->") else text
        m = re.match(r"((?:Seq|Index|Index Only|Bitmap Heap) Scan(?: using \S+)?) on (\w+)",
                     node)
        if m:
            scans.append((m.group(1), m.group(2), []))
        elif text.startswith("->") or not scans:
            scans.append((node, None, []))
        else:
            scans[-1][2].append(text)
    return [s for s in scans if s[1] is not None]


def pg_dbname(dsn):
    """The database a postgresql:///name?host=... URI names."""
    return unquote(urlparse(dsn).path.lstrip("/"))


def database_bytes(database):
    """What a copy of database holds, as bytes: the file and its -wal, or the dump."""
    if BACKEND == "postgresql":
        r = subprocess.run([os.path.join(pg_server().bindir, "pg_dump"), "-d", database],
                           capture_output=True, timeout=60, check=True)
        return r.stdout
    data = b""
    for suffix in ("", "-wal"):
        if os.path.exists(database + suffix):
            with open(database + suffix, "rb") as f:
                data += f.read()
    return data


class AuditSqlTest(unittest.TestCase):
    """One stack, filled once by real submissions; the tests only read it, or write inside a
    transaction they roll back, or work on a copy."""

    @classmethod
    def setUpClass(cls):
        cls.failed = False
        cls.keys = {"alpha": new_key("alpha"), "beta": new_key("beta")}
        # The daemon follows the runs, so that the views of what came of them have rows.
        cls.s = Stack(name=cls.__name__, keys=list(cls.keys.values()),
                      upstream_timeout_ms=1000, conf={"chunk_size": 2,
                                                      "track_groups_max": 100})
        cls.s.start()
        try:
            cls.populate()
        except BaseException:
            cls.s.stop(keep=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.stop(keep=cls.failed)

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        try:
            return super().run(result)
        finally:
            if result is not None and len(result.failures) + len(result.errors) > before:
                type(self).failed = True

    # ---- the populated database --------------------------------------------------------------

    @classmethod
    def post(cls, team, body, timeout=30):
        return cls.s.json_req("POST", "/v1/runs", body, token=cls.tokens[team], timeout=timeout)

    @classmethod
    def accepted(cls, team, body):
        status, answer, _ = cls.post(team, body)
        if status != 200:
            raise AssertionError("POST /v1/runs for %s answered %d: %r" % (team, status, answer))
        return answer

    @classmethod
    def detail(cls, answer):
        return ((answer or {}).get("error") or {}).get("detail") or {}

    @classmethod
    def populate(cls):
        s = cls.s
        cls.tokens, cls.token_ids = {}, {}
        for team in ("alpha", "beta"):
            s.add_team(team, cls.keys[team], preset={"processor": "core"})
            cls.tokens[team], cls.token_ids[team] = s.issue_token(team, label=team + "-ci")

        # alpha: 5 inputs in chunks of 2 (a group creation and 3 add-runs calls), then one
        # more input into the same group.
        cls.multi = cls.accepted("alpha", {"inputs": ["a1", "a2", "a3", "a4", "a5"]})
        cls.group = cls.multi["taskgroup_id"]
        cls.more = cls.accepted("alpha", {"inputs": ["a6"], "taskgroup_id": cls.group})
        # beta: one accepted submission of 2 inputs; the second run fails upstream.
        cls.beta = cls.accepted("beta", {"inputs": ["b1", "fail: b2 found no sources"]})

        # alpha: rejected (an unknown preset): 422, nothing upstream.
        status, answer, _ = cls.post("alpha", {"inputs": ["q"], "preset": "nope"})
        if status != 422:
            raise AssertionError("expected a 422, got %d: %r" % (status, answer))

        # beta: failed (upstream answers 500 to the add-runs call).
        s.sim_fault(match="add_runs", kind="status", status=500)
        status, answer, _ = cls.post("beta", {"inputs": ["b3"]})
        if status != 502:
            raise AssertionError("expected a 502, got %d: %r" % (status, answer))
        cls.failed_id = cls.detail(answer).get("submission_id")

        # alpha: unknown (the add-runs call gets no answer within upstream_timeout_ms).
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=3000)
        status, answer, _ = cls.post("alpha", {"inputs": ["a7", "a8"]}, timeout=20)
        if status != 504:
            raise AssertionError("expected a 504, got %d: %r" % (status, answer))
        cls.unknown_id = cls.detail(answer).get("submission_id")
        s.sim_clear_faults()

        # Every run of the gateway's ends upstream within a second (the simulator's clock)
        # and is recorded: the accepted submissions' 8 runs.
        deadline = time.monotonic() + 20
        while s.db_value("SELECT count(*) FROM audit_runs WHERE completed_at IS NOT NULL") < 8:
            if time.monotonic() > deadline:
                raise AssertionError("the runs' outcomes were not recorded within 20 s")
            time.sleep(0.1)

        rows = s.db("SELECT submission_id FROM audit_submissions WHERE state = 'rejected'")
        if len(rows) != 1:
            raise AssertionError("expected one rejected submission, got %d" % len(rows))
        cls.rejected_id = rows[0][0]

        # The admin change log, in the documented shape (the C side writing it is built
        # separately): keys only as fingerprints, token ids never tokens.
        now = datetime.now(timezone.utc)
        fp = {t: key_fingerprint(k) for t, k in cls.keys.items()}
        cls.new_alpha_key = new_key("alpha2")
        fp_new = key_fingerprint(cls.new_alpha_key)
        admin_tok = "tok_" + secrets.token_hex(8)
        cls.admin_rows = [
            (rfc3339(now - timedelta(minutes=50)), "os:root", None, "cli", "team.add", "team",
             "alpha", "alpha", None, json.dumps({"name": "alpha", "key_fingerprint": fp["alpha"]}),
             None),
            (rfc3339(now - timedelta(minutes=40)), "os:root", None, "cli", "token.issue",
             "token", cls.token_ids["alpha"], "alpha", None,
             json.dumps({"id": cls.token_ids["alpha"], "team": "alpha", "role": "submit",
                         "label": "alpha-ci", "expires_at": None}), None),
            (rfc3339(now - timedelta(minutes=30)), "token:" + admin_tok, "alpha", "http",
             "team.set_key", "team", "alpha", "alpha",
             json.dumps({"name": "alpha", "key_fingerprint": fp["alpha"]}),
             json.dumps({"name": "alpha", "key_fingerprint": fp_new}), "127.0.0.1"),
            (rfc3339(now - timedelta(minutes=20)), "os:ops", None, "cli", "team.set_key", "team",
             "beta", "beta", json.dumps({"name": "beta", "key_fingerprint": fp["beta"]}),
             json.dumps({"name": "beta", "key_fingerprint": "sha256:" + "0" * 12}), None),
            (rfc3339(now - timedelta(minutes=10)), "token:" + admin_tok, "alpha", "http",
             "preset.set", "preset", "alpha/default", "alpha",
             json.dumps({"processor": "base"}), json.dumps({"processor": "core"}), "10.0.0.7"),
            (rfc3339(now - timedelta(minutes=5)), "os:root", None, "cli", "token.revoke", "token",
             admin_tok, "alpha", json.dumps({"id": admin_tok, "revoked_at": None}),
             json.dumps({"id": admin_tok, "revoked_at": rfc3339(now)}), None),
        ]
        conn = s.db_connect()
        try:
            cls.admin_ids = [conn.execute(ADMIN_INSERT + " RETURNING id", row).fetchone()[0]
                             for row in cls.admin_rows]
            conn.execute("INSERT INTO audit_reads (at, actor, actor_team, interface, query,"
                         " remote_addr, rows) VALUES (?, ?, ?, 'http', ?, '127.0.0.1', 6)",
                         (rfc3339(now), "token:" + admin_tok, "alpha",
                          "GET /v1/audit/runs?taskgroup_id=" + cls.group))
        finally:
            conn.close()
        cls.admin_by_id = dict(zip(cls.admin_ids, cls.admin_rows))

        cls.queries = {name: sql for name, _, sql in parse_queries()}
        cls.params = {
            "since": "0000", "until": "9999", "team": "alpha",
            "token_id": cls.token_ids["alpha"], "taskgroup_id": cls.group,
            "run_id": cls.beta["run_ids"][1], "submission_id": cls.multi["submission_id"],
            "limit": 3, "object_type": "team", "object_id": "alpha",
        }

    def run_query(self, name, **override):
        sql = self.queries[name]
        params = {p: override.get(p, self.params[p]) for p in query_params(sql)}
        return self.s.db(sql, params)

    # ---- the populated database has rows in every view ---------------------------------------

    def test_every_view_has_rows(self):
        states = {r[0]: r[1] for r in self.s.db(
            "SELECT state, count(*) FROM audit_submissions GROUP BY state")}
        self.assertEqual(states, {"accepted": 3, "rejected": 1, "failed": 1, "unknown": 1})
        self.assertEqual(self.s.db_value("SELECT count(*) FROM audit_runs"), 8)
        for view in VIEWS:
            with self.subTest(view=view):
                self.assertGreater(self.s.db_value("SELECT count(*) FROM %s" % view), 0)
        self.assertEqual(self.s.schema_version(), LATEST)

    def test_audit_calls(self):
        cols = [c for c, _ in self.s.db_columns("audit_calls")]
        self.assertEqual(cols, AUDIT_CALLS_COLUMNS)
        self.assertEqual(self.s.db_value("SELECT count(*) FROM audit_calls"),
                         self.s.db_value("SELECT count(*) FROM upstream_calls"))
        rows = self.s.db("SELECT * FROM audit_calls WHERE submission_id = ? ORDER BY seq",
                         (self.multi["submission_id"],))
        self.assertEqual([(r["seq"], r["operation"], r["first_input"], r["num_inputs"],
                           r["outcome"], r["http_status"]) for r in rows],
                         [(0, "create_group", None, rows[0]["num_inputs"], "ok", 200),
                          (1, "add_runs", 0, 2, "ok", 200), (2, "add_runs", 2, 2, "ok", 200),
                          (3, "add_runs", 4, 1, "ok", 200)])
        for r in rows:
            self.assertEqual((r["team"], r["taskgroup_id"], r["method"]),
                             ("alpha", self.group, "POST"))
        self.assertIsNotNone(rows[2]["run_cursor"], "the second chunk's cursor is on record")
        outcomes = {r["submission_id"]: (r["outcome"], r["http_status"]) for r in self.s.db(
            "SELECT * FROM audit_calls WHERE operation = 'add_runs' AND outcome <> 'ok'")}
        self.assertEqual(outcomes, {self.failed_id: ("error", 500),
                                    self.unknown_id: ("unknown", None)})

    def test_audit_admin(self):
        cols = [c for c, _ in self.s.db_columns("audit_admin")]
        self.assertEqual(cols, AUDIT_ADMIN_COLUMNS)
        rows = {r["id"]: tuple(r)[1:] for r in self.s.db("SELECT * FROM audit_admin")}
        for rid, want in self.admin_by_id.items():
            self.assertEqual(rows.get(rid), want)
        # Whoever writes the log, a team's key appears in it only as its fingerprint.
        dump = json.dumps([list(r) for r in rows.values()])
        for key in list(self.keys.values()) + [self.new_alpha_key]:
            self.assertNotIn(key, dump, "an upstream key in the admin log")
            self.assertNotIn(key[4:], dump, "part of an upstream key in the admin log")
        for r in self.s.db("SELECT before, after FROM audit_admin WHERE object_type = 'team'"):
            for doc in (r["before"], r["after"]):
                if doc is not None and "key_fingerprint" in json.loads(doc):
                    self.assertRegex(json.loads(doc)["key_fingerprint"],
                                     r"^sha256:[0-9a-f]{12}$")
        # The gateway's own rows: `taskgate team add` (run by the harness) is on record
        # under the OS user, with the key's fingerprint.
        cli = self.s.db("SELECT * FROM audit_admin WHERE action = 'team.add' AND id NOT IN (%s)"
                        % ",".join(str(i) for i in self.admin_ids))
        self.assertEqual(sorted(r["object_id"] for r in cli), ["alpha", "beta"])
        for r in cli:
            self.assertRegex(r["actor"], r"^os:\S+$")
            self.assertEqual((r["interface"], r["team"], r["before"]),
                             ("cli", r["object_id"], None))
            self.assertEqual(json.loads(r["after"]).get("key_fingerprint"),
                             key_fingerprint(self.keys[r["object_id"]]))

    def test_admin_log_checks(self):
        conn = self.s.db_connect()
        try:
            good = list(self.admin_rows[0])
            for col, value in ((3, "ssh"), (0, "2026-01-01 00:00:00"), (9, "{not json")):
                with self.subTest(column=col, value=value):
                    row = list(good)
                    row[col] = value
                    with self.assertRaises(DB_INTEGRITY):
                        conn.execute(ADMIN_INSERT, row)
        finally:
            conn.close()

    # ---- the ready queries -------------------------------------------------------------------

    def test_queries_file_is_well_formed(self):
        parsed = parse_queries()
        names = [n for n, _, _ in parsed]
        self.assertEqual(len(names), len(set(names)), "query names repeat")
        for want in ("runs_per_team_per_day", "failures_and_unknowns", "runs_of_group",
                     "token_submissions", "token_runs", "team_key_changes", "who_started_run",
                     "team_submissions_by_state", "failed_calls_by_status", "open_submissions",
                     "slowest_calls"):
            self.assertIn(want, names)
        for name, comment, sql in parsed:
            with self.subTest(query=name):
                self.assertTrue(sql.endswith(";"), "no ; at the end")
                self.assertEqual(sql.count(";"), 1, "one statement per query")
                self.assertGreaterEqual(len(comment.splitlines()), 2, "no comment block")
                self.assertEqual(documented_params(comment), query_params(sql),
                                 "the Parameters: line does not list the parameters used")
                sources = set(re.findall(r"(?i)\b(?:FROM|JOIN)\s+([a-z_]+)",
                                         strip_comments(sql)))
                self.assertTrue(sources, "reads nothing")
                self.assertLessEqual(sources, VIEWS, "reads a base table")
                self.assertTrue(sqlite3.complete_statement(sql))
        # Nothing in the file is a migration, and the file is not named like one.
        self.assertFalse(re.match(r"^\d{3}_", os.path.basename(QUERIES_PATH)))

    def test_every_query_runs(self):
        for name, sql in self.queries.items():
            with self.subTest(query=name):
                rows = self.run_query(name)
                self.assertGreater(len(rows), 0, "no rows from a populated database")

    def test_summary(self):
        """The summary, counted by the store, says what the views say."""
        rows = self.run_query("summary")
        self.assertEqual(sum(r["runs"] for r in rows),
                         self.s.db_value("SELECT count(*) FROM audit_runs"))
        per_day = {(r["team"], r["day"]): r["runs"] for r in self.run_query(
            "runs_per_team_per_day")}
        got = {}
        for r in rows:
            got[(r["team"], r["day"])] = got.get((r["team"], r["day"]), 0) + r["runs"]
        self.assertEqual({k: v for k, v in got.items() if v}, per_day)
        # Each submission here has runs of one processor at most: counted once.
        states = {}
        for r in rows:
            states[r["state"]] = states.get(r["state"], 0) + r["submissions"]
        self.assertEqual(states, {"accepted": 3, "rejected": 1, "failed": 1, "unknown": 1})
        self.assertEqual(self.run_query("summary", since="9999"), [])

    def test_runs_per_team_per_day(self):
        rows = self.run_query("runs_per_team_per_day")
        self.assertEqual(sum(r["runs"] for r in rows),
                         self.s.db_value("SELECT count(*) FROM audit_runs"))
        per_team = {}
        for r in rows:
            self.assertRegex(r["day"], r"^\d{4}-\d\d-\d\d$")
            per_team[r["team"]] = per_team.get(r["team"], 0) + r["runs"]
        self.assertEqual(per_team, {"alpha": 6, "beta": 2})
        # A window that ends before everything has nothing.
        self.assertEqual(self.run_query("runs_per_team_per_day", until="2000"), [])

    def test_failures_and_unknowns(self):
        rows = self.run_query("failures_and_unknowns")
        self.assertEqual({r["submission_id"]: r["state"] for r in rows},
                         {self.failed_id: "failed", self.unknown_id: "unknown"})
        by_id = {r["submission_id"]: r for r in rows}
        self.assertEqual((by_id[self.failed_id]["team"], by_id[self.failed_id]["http_status"],
                          by_id[self.failed_id]["upstream_status"]), ("beta", 502, 500))
        self.assertEqual((by_id[self.unknown_id]["team"], by_id[self.unknown_id]["http_status"],
                          by_id[self.unknown_id]["token_label"]), ("alpha", 504, "alpha-ci"))
        for r in rows:
            self.assertEqual(r["runs_recorded"], 0)
            self.assertTrue(r["error"])

    def test_runs_of_group(self):
        rows = self.run_query("runs_of_group")
        want = self.multi["run_ids"] + self.more["run_ids"]
        self.assertEqual([r["run_id"] for r in rows], want)
        self.assertEqual([r["run_id"] for r in self.s.sim_group(self.group)], want,
                         "not the simulator's order")
        self.assertEqual([r["submission_id"] for r in rows],
                         [self.multi["submission_id"]] * 5 + [self.more["submission_id"]])
        for r in rows:
            self.assertEqual((r["team"], r["token_label"], r["token_id"], r["state"],
                              r["processor"]),
                             ("alpha", "alpha-ci", self.token_ids["alpha"], "accepted", "core"))

    def test_what_a_token_did(self):
        subs = self.run_query("token_submissions")
        self.assertEqual([r["submission_id"] for r in subs][:2],
                         [self.multi["submission_id"], self.more["submission_id"]])
        self.assertEqual({r["submission_id"]: (r["state"], r["runs"]) for r in subs},
                         {self.multi["submission_id"]: ("accepted", 5),
                          self.more["submission_id"]: ("accepted", 1),
                          self.rejected_id: ("rejected", 0),
                          self.unknown_id: ("unknown", 0)})
        runs = self.run_query("token_runs")
        self.assertEqual([r["run_id"] for r in runs],
                         self.multi["run_ids"] + self.more["run_ids"])
        beta = self.run_query("token_runs", token_id=self.token_ids["beta"])
        self.assertEqual([r["run_id"] for r in beta], self.beta["run_ids"])
        self.assertEqual(self.run_query("token_submissions", token_id="tok_nobody"), [])

    def test_who_changed_a_teams_key(self):
        rows = self.run_query("team_key_changes")
        ids = [r["id"] for r in rows]
        mine = [rid for rid, row in self.admin_by_id.items()
                if row[6] == "alpha" and row[4] in ("team.add", "team.set_key")]
        self.assertEqual(len(mine), 2)
        for rid in mine:
            self.assertIn(rid, ids)
        for r in rows:  # rows the C side wrote must match the filter too
            self.assertIn(r["action"], ("team.add", "team.set_key"))
        self.assertEqual([(r["at"], r["id"]) for r in rows],
                         sorted((r["at"], r["id"]) for r in rows))
        change = next(r for r in rows if r["id"] == mine[1])
        self.assertEqual((change["actor"], change["actor_team"], change["interface"],
                          change["remote_addr"]),
                         (self.admin_by_id[mine[1]][1], "alpha", "http", "127.0.0.1"))
        self.assertEqual(json.loads(change["before"])["key_fingerprint"],
                         key_fingerprint(self.keys["alpha"]))
        self.assertEqual(json.loads(change["after"])["key_fingerprint"],
                         key_fingerprint(self.new_alpha_key))
        beta_change = [rid for rid, row in self.admin_by_id.items() if row[6] == "beta"]
        self.assertNotIn(beta_change[0], ids, "another team's key change")

    def test_who_started_run(self):
        for run_id, team, sub in ((self.beta["run_ids"][1], "beta", self.beta),
                                  (self.multi["run_ids"][3], "alpha", self.multi)):
            with self.subTest(run_id=run_id):
                rows = self.run_query("who_started_run", run_id=run_id)
                self.assertEqual(len(rows), 1)
                r = rows[0]
                self.assertEqual((r["team"], r["token_label"], r["token_id"], r["submission_id"],
                                  r["remote_addr"], r["interface"], r["taskgroup_id"]),
                                 (team, team + "-ci", self.token_ids[team], sub["submission_id"],
                                  "127.0.0.1", "simplified", sub["taskgroup_id"]))
        self.assertEqual(self.run_query("who_started_run", run_id="trun_nope"), [])

    def test_team_submissions_by_state(self):
        got = {r["state"]: (r["submissions"], r["inputs"])
               for r in self.run_query("team_submissions_by_state")}
        self.assertEqual(got, {"accepted": (2, 6), "rejected": (1, got["rejected"][1]),
                               "unknown": (1, 2)})
        got = {r["state"]: r["submissions"]
               for r in self.run_query("team_submissions_by_state", team="beta")}
        self.assertEqual(got, {"accepted": 1, "failed": 1})

    def test_failed_calls_by_status(self):
        got = {(r["outcome"], r["http_status"]): (r["calls"], r["submissions"])
               for r in self.run_query("failed_calls_by_status")}
        self.assertEqual(got, {("error", 500): (1, 1), ("unknown", None): (1, 1)})

    def test_open_submissions(self):
        rows = self.run_query("open_submissions")
        self.assertEqual([(r["submission_id"], r["state"], r["calls_unanswered"],
                           r["runs_recorded"]) for r in rows],
                         [(self.unknown_id, "unknown", 1, 0)])
        self.assertRegex(rows[0]["taskgroup_id"] or "", r"^tgrp_",
                         "the operator needs the group to reconcile")
        self.assertEqual(self.run_query("open_submissions", until="2000"), [])

    def test_slowest_calls(self):
        rows = self.run_query("slowest_calls")
        self.assertEqual(len(rows), 3)
        durations = [r["duration_ms"] for r in rows]
        self.assertEqual(durations, sorted(durations, reverse=True))
        self.assertEqual(durations[0], self.s.db_value(
            "SELECT max(duration_ms) FROM upstream_calls"))
        # The call that waited for the whole upstream timeout is the slowest.
        self.assertEqual((rows[0]["submission_id"], rows[0]["outcome"]),
                         (self.unknown_id, "unknown"))

    def test_submission_calls_and_admin_queries(self):
        rows = self.run_query("submission_calls")
        self.assertEqual([r["operation"] for r in rows],
                         ["create_group", "add_runs", "add_runs", "add_runs"])
        changes = self.run_query("admin_changes")
        ids = [r["id"] for r in changes]
        for rid in self.admin_ids:
            self.assertIn(rid, ids)
        self.assertEqual([r["at"] for r in changes], sorted((r["at"] for r in changes),
                                                            reverse=True))
        history = self.run_query("object_history", object_type="token",
                                 object_id=self.admin_rows[5][6])
        self.assertEqual([r["action"] for r in history], ["token.revoke"])

    def test_run_outcome_queries(self):
        rows = self.run_query("run_outcomes_by_team")
        self.assertEqual([(r["team"], r["status"], r["runs"]) for r in rows],
                         [("alpha", "completed", 6), ("beta", "completed", 1),
                          ("beta", "failed", 1)])
        rows = self.run_query("failed_runs")
        self.assertEqual([(r["run_id"], r["team"], r["error"]) for r in rows],
                         [(self.beta["run_ids"][1], "beta", "b2 found no sources")])
        rows = self.run_query("run_status_history")
        self.assertEqual([(r["status"], r["source"]) for r in rows],
                         [("queued", "events"), ("running", "events"), ("failed", "events")])
        self.assertEqual(rows[-1]["error"], "b2 found no sources")

    @sqlite_only  # SQLite's plans; test_key_queries_can_use_indexes_on_postgresql below
    def test_key_queries_use_indexes(self):
        plans = {}
        for name, sql in self.queries.items():
            params = {p: self.params[p] for p in query_params(sql)}
            plans[name] = [r[3] for r in self.s.db("EXPLAIN QUERY PLAN " + sql, params)]
        for name, plan in plans.items():
            with self.subTest(query=name):
                scans = [ln for ln in plan
                         if re.match(r"SCAN (\w+)", ln)
                         and re.match(r"SCAN (\w+)", ln).group(1) in BIG_TABLES]
                self.assertEqual(scans, [], "\n".join(plan))
        for name in KEY_QUERIES:
            with self.subTest(query=name):
                self.assertFalse([ln for ln in plans[name] if ln.startswith("SCAN")],
                                 "\n".join(plans[name]))
        self.assertIn("USING INDEX submissions_group",
                      " ".join(plans["runs_of_group"]))
        self.assertIn("USING INDEX submissions_token", " ".join(plans["token_runs"]))
        self.assertIn("USING INDEX admin_log_object", " ".join(plans["team_key_changes"]))

    @unittest.skipUnless(BACKEND == "postgresql", "PostgreSQL's plans")
    def test_key_queries_can_use_indexes_on_postgresql(self):
        """test_key_queries_use_indexes on PostgreSQL, whose planner reads tables this small
        whole whatever their indexes: with sequential scans priced out (enable_seqscan off;
        a plan still has one where no index serves), no query reads a big table by a Seq
        Scan, the key queries read none whole (nor by an index scan without an Index Cond),
        and they use the indexes made for them."""
        conn = self.s.db_connect()
        try:
            conn.execute("SET enable_seqscan = off")
            plans = {}
            for name, sql in self.queries.items():
                params = {p: self.params[p] for p in query_params(sql)}
                plans[name] = [r[0] for r in conn.execute("EXPLAIN " + sql, params)]
        finally:
            conn.close()
        for name, plan in plans.items():
            with self.subTest(query=name):
                self.assertEqual([n for n, table, _ in pg_scans(plan)
                                  if n.startswith("Seq Scan") and table in BIG_TABLES.values()],
                                 [], "\n".join(plan))
        for name in KEY_QUERIES:
            with self.subTest(query=name):
                whole = [n for n, table, props in pg_scans(plans[name])
                         if table in BIG_TABLES.values() and not n.startswith("Bitmap Heap")
                         and not any(p.startswith(("Index Cond:", "Recheck Cond:"))
                                     for p in props)]
                self.assertEqual(whole, [], "\n".join(plans[name]))
        self.assertIn("submissions_group", " ".join(plans["runs_of_group"]))
        self.assertIn("submissions_token", " ".join(plans["token_runs"]))
        self.assertIn("admin_log_object", " ".join(plans["team_key_changes"]))

    # ---- append-only records and the prune guard ---------------------------------------------

    def assertRefused(self, conn, sql, params=(), why=TRIGGER_MESSAGES):
        """sql fails with a constraint error whose message matches why (by default: one
        of the append-only triggers, not some other constraint)."""
        with self.assertRaises(DB_INTEGRITY, msg=sql) as cm:
            conn.execute(sql, params)
        self.assertRegex(str(cm.exception), why)

    def test_audit_records_are_append_only(self):
        conn = self.s.db_connect()
        sub = self.multi["submission_id"]
        run = self.multi["run_ids"][0]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO audit_reads (at, actor, interface, query, rows)"
                         " VALUES ('2026-01-01T00:00:00.000Z', 'os:root', 'cli', 'x', 1)")
            refused = [
                ("UPDATE submissions SET state = 'failed' WHERE id = ?", (sub,)),
                ("UPDATE submissions SET error = 'x' WHERE id = ?", (sub,)),
                ("UPDATE submissions SET state = 'accepted' WHERE id = ?", (self.failed_id,)),
                ("UPDATE submissions SET http_status = 500 WHERE id = ?", (self.rejected_id,)),
                ("DELETE FROM submissions WHERE id = ?", (self.rejected_id,)),
                ("DELETE FROM submissions WHERE id = ?", (sub,)),
                ("UPDATE runs SET processor = 'pro' WHERE run_id = ?", (run,)),
                ("DELETE FROM runs WHERE run_id = ?", (run,)),
                ("UPDATE upstream_calls SET http_status = 500 WHERE submission_id = ?", (sub,)),
                ("DELETE FROM upstream_calls WHERE submission_id = ?", (self.failed_id,)),
                ("UPDATE admin_log SET actor = 'os:nobody' WHERE id = ?", (self.admin_ids[2],)),
                ("DELETE FROM admin_log WHERE id = ?", (self.admin_ids[2],)),
                ("UPDATE audit_reads SET rows = 0", ()),
                ("DELETE FROM audit_reads", ()),
                # An open (unknown) submission may be settled, but who asked what is fixed
                # and it never goes back to pending.
                ("UPDATE submissions SET team_id = team_id + 1 WHERE id = ?", (self.unknown_id,)),
                ("UPDATE submissions SET request = '{}' WHERE id = ?", (self.unknown_id,)),
                ("UPDATE submissions SET state = 'pending' WHERE id = ?", (self.unknown_id,)),
            ]
            for sql, params in refused:
                with self.subTest(sql=sql):
                    self.assertRefused(conn, sql, params)
            # What the gateway does to an open submission still works: reconciliation
            # settles an unknown one.
            cur = conn.execute("UPDATE submissions SET state = 'accepted', completed_at = ?"
                               " WHERE id = ? AND state = 'unknown'",
                               ("2026-01-01T00:00:00.000Z", self.unknown_id))
            self.assertEqual(cur.rowcount, 1)
            self.assertRefused(conn, "UPDATE submissions SET state = 'failed' WHERE id = ?",
                               (self.unknown_id,))
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        self.assertEqual(self.s.db_value("SELECT state FROM submissions WHERE id = ?",
                                         (self.unknown_id,)), "unknown")
        self.assertEqual(self.s.db_value("SELECT count(*) FROM runs"), 8)

    # The prune guard: SQLite's is a row of audit_prune_guard, PostgreSQL's a setting of the
    # transaction (sql/*/002_audit.sql), each set and cleared as `taskgate audit prune` does.
    if BACKEND == "postgresql":
        GUARD_ON = "SET LOCAL taskgate.audit_prune = 'on'"
        GUARD_OFF = "SET LOCAL taskgate.audit_prune = 'off'"
    else:
        GUARD_ON = "INSERT INTO audit_prune_guard (active) VALUES (1)"
        GUARD_OFF = "DELETE FROM audit_prune_guard"

    def copy_database(self, name):
        """A copy of the stack's database to change and commit to: the file backed up, or
        a new PostgreSQL database loaded from the stack's dump."""
        copy = new_database(self.s, name)
        if BACKEND == "postgresql":
            pg_server().psql(self.s.pg_dump().decode("utf-8"), dbname=pg_dbname(copy))
            return copy
        src = sqlite3.connect("file:%s?mode=ro" % self.s.db_path, uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return copy

    def test_prune_inside_the_guard(self):
        """A prune copies what the prune command does, on a copy of the database."""
        conn = db_connect(self.copy_database("prune_copy"))
        try:
            cutoff = conn.execute("SELECT received_at FROM submissions WHERE id = ?",
                                  (self.beta["submission_id"],)).fetchone()[0]
            admin_cutoff = self.admin_rows[3][0]
            old = [r[0] for r in conn.execute(
                "SELECT id FROM submissions WHERE received_at < ?", (cutoff,))]
            self.assertEqual(sorted(old), sorted([self.multi["submission_id"],
                                                  self.more["submission_id"]]))
            old_sql = "(SELECT id FROM submissions WHERE received_at < :cutoff)"
            steps = [
                "DELETE FROM runs WHERE submission_id IN " + old_sql,
                "DELETE FROM upstream_calls WHERE submission_id IN " + old_sql,
                "DELETE FROM submissions WHERE received_at < :cutoff",
                "DELETE FROM admin_log WHERE at < :admin_cutoff",
                "DELETE FROM audit_reads WHERE at < :admin_cutoff",
            ]
            args = {"cutoff": cutoff, "admin_cutoff": admin_cutoff}

            # Without the guard the very first step is refused.
            conn.execute("BEGIN IMMEDIATE")
            self.assertRefused(conn, steps[0], args)
            conn.execute("ROLLBACK")

            conn.execute("BEGIN IMMEDIATE")
            conn.execute(self.GUARD_ON)
            if BACKEND == "sqlite":
                # One guard at most, and only the value 1.
                self.assertRefused(conn, "INSERT INTO audit_prune_guard (active) VALUES (1)",
                                   why="UNIQUE")
                self.assertRefused(conn, "INSERT INTO audit_prune_guard (active) VALUES (2)",
                                   why="CHECK")
            deleted = [conn.execute(sql, args).rowcount for sql in steps]
            # Updates stay refused even under the guard.
            self.assertRefused(conn, "UPDATE runs SET processor = 'x'")
            self.assertRefused(conn, "UPDATE admin_log SET actor = 'x'")
            conn.execute(self.GUARD_OFF)
            # Once the guard is gone, within the same transaction, deletes fail again.
            self.assertRefused(conn, "DELETE FROM audit_reads")
            conn.execute(ADMIN_INSERT, (rfc3339(datetime.now(timezone.utc)), "os:root", None,
                                        "cli", "audit.prune", "audit", "before " + cutoff,
                                        None, None, json.dumps({"submissions": len(old)}),
                                        None))
            conn.execute("COMMIT")
            # 5 + 1 runs; a group creation and 3 chunks, then 1 chunk; 2 submissions.
            self.assertEqual(deleted[:3], [6, 4 + 1, 2])
            self.assertGreaterEqual(deleted[3], 3)

            if BACKEND == "sqlite":
                # (PostgreSQL's guard ends with its transaction; its foreign keys are
                # checked by every statement.)
                self.assertEqual(
                    conn.execute("SELECT count(*) FROM audit_prune_guard").fetchone()[0], 0)
                self.assertEqual(conn.execute("PRAGMA foreign_key_check").fetchall(), [])
            left = {r[0] for r in conn.execute("SELECT submission_id FROM audit_submissions")}
            self.assertEqual(left, {self.beta["submission_id"], self.rejected_id,
                                    self.failed_id, self.unknown_id})
            self.assertEqual(conn.execute("SELECT count(*) FROM audit_runs").fetchone()[0], 2)
            admin = {r[0]: r[1] for r in conn.execute("SELECT id, action FROM audit_admin")}
            self.assertEqual(admin[max(admin)], "audit.prune")
            self.assertEqual([i in admin for i in self.admin_ids], [False] * 3 + [True] * 3)
            # After the prune, everything is protected again.
            self.assertRefused(conn, "DELETE FROM submissions WHERE id = ?", (self.rejected_id,))
            self.assertRefused(conn, "DELETE FROM admin_log")
        finally:
            conn.close()  # rolls back what a failure left open

    # ---- upgrading a version-1 database ------------------------------------------------------

    def new_v1_database(self):
        """A database at schema version 1, as an older taskgate left it."""
        database = new_database(self.s, "v1")
        if BACKEND == "postgresql":
            pg_server().apply_migrations(SQL_DIR, upto=1, dbname=pg_dbname(database))
            return database
        with open(os.path.join(SQL_DIR, "001_init.sql"), "r", encoding="utf-8") as f:
            v1 = f.read()
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            conn.executescript(v1)
            conn.execute("PRAGMA user_version = 1")
        finally:
            conn.close()
        return database

    def schema_names(self, conn):
        """The names of the tables, indexes and triggers of a database."""
        if BACKEND == "postgresql":
            return {r[0] for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'i') UNION SELECT tgname FROM pg_trigger"
                " WHERE NOT tgisinternal")}
        return {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')")}

    def test_init_upgrades_a_v1_database(self):
        tables = ("teams", "tokens", "presets", "submissions", "upstream_calls", "runs")
        database = self.new_v1_database()
        clear_keys = {}
        conn = db_connect(database)
        try:
            # Version 1's columns: later migrations may add some to these tables.
            v1_cols = {t: columns_of(conn, t) for t in tables}
            conn.execute("BEGIN")
            for t in tables:
                cols = ", ".join(v1_cols[t])
                for row in self.s.db("SELECT %s FROM %s" % (cols, t)):
                    conn.execute("INSERT INTO %s (%s) VALUES (%s)"
                                 % (t, cols, ", ".join("?" * len(row))), tuple(row))
            # Version 1 stored the upstream keys in clear.
            for name, key in rows_of(conn, "SELECT name, 'par-v1-' || name || '-"
                                     + secrets.token_hex(12) + "' FROM teams"):
                clear_keys[name] = key
                conn.execute("UPDATE teams SET upstream_key = ? WHERE name = ?", (key, name))
                self.s.add_secret(key, "key")  # on SQLite, the scan at stop reads v1.db too
            conn.execute("COMMIT")
            before = {t: rows_of(conn, "SELECT * FROM %s ORDER BY 1, 2" % t) for t in tables}
            # Version 1's view columns: later versions may add some at the end.
            view_cols = {v: columns_of(conn, v) for v in ("audit_submissions", "audit_runs")}
            before_views = {v: rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2"
                                       % (", ".join(cols), v))
                            for v, cols in view_cols.items()}
        finally:
            conn.close()
        self.assertEqual(len(before["runs"]), 8)
        self.assertIn(clear_keys["alpha"].encode(), database_bytes(database))

        conf = self.s.path("v1.conf")
        with open(self.s.conf_path, "r") as f:
            text = f.read()
        text, n = re.subn(r"(?m)^database = .*$", lambda m: "database = " + database, text)
        self.assertEqual(n, 1)
        with open(conf, "w") as f:
            f.write(text)

        # The binary refuses an old database until it is migrated.
        r = self.s.cli("--config", conf, "team", "list", config=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("taskgate init", r.stderr)

        r = self.s.cli("--config", conf, "init", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("from schema version 1 to %d" % LATEST, r.stderr)
        self.assertIn("%d upstream key(s) stored in clear are now encrypted" % len(clear_keys),
                      r.stderr)
        r = self.s.cli("--config", conf, "init", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("up to date", r.stderr)
        r = self.s.cli("--config", conf, "team", "list", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("alpha", r.stdout)

        conn = db_connect(database)
        try:
            self.assertEqual(schema_version_of(conn), LATEST)
            for t in tables:
                with self.subTest(table=t):
                    # Every version 1 column as it was, but the keys (now sealed).
                    keep = [c for c in v1_cols[t] if c != "upstream_key"]
                    self.assertEqual(
                        rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2" % (", ".join(keep), t)),
                        [tuple(row[v1_cols[t].index(c)] for c in keep) for row in before[t]])
            # The clear keys were encrypted: sealed text under the key file, in one logged step.
            for name, stored, kid in rows_of(conn, "SELECT name, upstream_key, key_id FROM teams"):
                self.assertTrue(stored.startswith("tgk1.%s." % kid), stored)
                self.assertNotIn(clear_keys[name], stored)
            for v, rows in before_views.items():
                self.assertEqual(columns_of(conn, v)[:len(view_cols[v])], view_cols[v], v)
                self.assertEqual(rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2"
                                         % (", ".join(view_cols[v]), v)), rows)
            self.assertEqual(conn.execute("SELECT count(*) FROM audit_calls").fetchone()[0],
                             len(before["upstream_calls"]))
            self.assertEqual([r[0] for r in conn.execute("SELECT action FROM audit_admin")],
                             ["keys.encrypt"])
            names = self.schema_names(conn)
            for want in ("admin_log", "audit_reads", "runs_no_delete",
                         "submissions_settled_no_update", "submissions_token",
                         "admin_log_object"):
                self.assertIn(want, names)
            if BACKEND == "sqlite":
                self.assertIn("audit_prune_guard", names)  # PostgreSQL's is a setting
                self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            conn.close()
        # Nothing of the clear keys is left for a copy of the database to give away.
        data = database_bytes(database)
        for name, key in clear_keys.items():
            self.assertNotIn(key.encode(), data, "team %s's clear key is still stored" % name)

    # ---- upgrading a version-11 database ------------------------------------------------------

    # What versions 6 to 11 keep and version 12 rebuilds or recounts, parents first.
    V11_TABLES = ("teams", "tokens", "presets", "submissions", "upstream_calls", "runs",
                 "run_status", "run_status_changes")

    # What version 11 priced as the runs went in, which version 12 keeps.
    USAGE_TABLES = ("call_costs", "usage_days")

    def new_v11_database(self):
        """A database at schema version 11 (the last before the runs' new layout), filled
        with the stack's records as an older taskgate wrote them (version 11's trigger
        prices its runs as they go in)."""
        database = new_database(self.s, "v11")
        if BACKEND == "postgresql":
            pg_server().apply_migrations(SQL_DIR, upto=11, dbname=pg_dbname(database))
        else:
            conn = sqlite3.connect(database, isolation_level=None)
            try:
                for name in sorted(n for n in os.listdir(SQL_DIR) if re.match(r"^\d{3}_", n)):
                    if int(name[:3]) > 11:
                        break
                    with open(os.path.join(SQL_DIR, name), "r", encoding="utf-8") as f:
                        conn.executescript("BEGIN;\n%s\nPRAGMA user_version = %d;\nCOMMIT;"
                                           % (f.read(), int(name[:3])))
            finally:
                conn.close()
        conn = db_connect(database)
        try:
            self.assertEqual(schema_version_of(conn), 11)
            cols = {t: columns_of(conn, t) for t in self.V11_TABLES}
            conn.execute("BEGIN")
            for t in self.V11_TABLES:
                names = ", ".join(cols[t])
                for row in self.s.db("SELECT %s FROM %s" % (names, t)):
                    conn.execute("INSERT INTO %s (%s) VALUES (%s)"
                                 % (t, names, ", ".join("?" * len(row))), tuple(row))
            conn.execute("COMMIT")
        finally:
            conn.close()
        return database, cols

    def index_columns(self, conn, table):
        """{index name: [columns]} of a table's indexes (the primary key's included)."""
        if BACKEND == "postgresql":
            out = {}
            for name, ddl in rows_of(conn, "SELECT c.relname, pg_get_indexdef(i.indexrelid)"
                                     " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                                     " WHERE i.indrelid = ?::regclass", (table,)):
                cols = re.search(r"USING \w+ \(([^)]*)\)", ddl).group(1)
                out[name] = [c.strip().split()[0] for c in cols.split(",")]
            return out
        return {r[1]: [c[2] for c in conn.execute("PRAGMA index_info(%s)" % r[1])]
                for r in conn.execute("PRAGMA index_list(%s)" % table)}

    def test_init_upgrades_a_v11_database(self):
        """Version 12 on a store of version 11: the runs rebuilt by submission with every row
        and what versions 2 and 8 made on them (the triggers, audit_runs' status columns,
        the view of status changes), one index per purpose on the submissions, and the
        summary and the completed runs' durations counted from the records."""
        database, cols = self.new_v11_database()
        views = ("audit_submissions", "audit_runs", "audit_run_status_changes")
        conn = db_connect(database)
        try:
            before = {t: rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2" % (", ".join(c), t))
                      for t, c in cols.items()}
            view_cols = {v: columns_of(conn, v) for v in views}
            before_views = {v: rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2, 3"
                                       % (", ".join(c), v)) for v, c in view_cols.items()}
            usage_before = {t: rows_of(conn, "SELECT * FROM %s ORDER BY 1, 2, 3" % t)
                            for t in self.USAGE_TABLES}
        finally:
            conn.close()
        self.assertGreater(len(usage_before["call_costs"]), 0)
        self.assertIn("completed_at", view_cols["audit_runs"])
        self.assertGreaterEqual(len(before["runs"]), 8)
        self.assertGreater(len(before_views["audit_run_status_changes"]), 0)
        self.assertTrue(any(r[view_cols["audit_runs"].index("status")] is not None
                            for r in before_views["audit_runs"]))

        if BACKEND == "sqlite":  # the stack's sealed keys, under the stack's key file
            shutil.copy2(self.s.db_path + ".key", database + ".key")
        conf = self.s.path("v11.conf")
        with open(self.s.conf_path, "r") as f:
            text = f.read()
        text, n = re.subn(r"(?m)^database = .*$", lambda m: "database = " + database, text)
        self.assertEqual(n, 1)
        with open(conf, "w") as f:
            f.write(text)
        r = self.s.cli("--config", conf, "init", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("from schema version 11 to %d" % LATEST, r.stderr)
        r = self.s.cli("--config", conf, "audit", "summary", "--json", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout)["data"]
        durations = json.loads(r.stdout)["durations"]

        conn = db_connect(database)
        try:
            self.assertEqual(schema_version_of(conn), LATEST)
            for t, c in cols.items():
                with self.subTest(table=t):
                    self.assertEqual(rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2"
                                             % (", ".join(c), t)), before[t])
            # Version 11's costs as they were: version 12 prices new runs in the store's
            # code, not by a trigger, and leaves what was priced alone.
            for t, rows in usage_before.items():
                with self.subTest(table=t):
                    self.assertEqual(rows_of(conn, "SELECT * FROM %s ORDER BY 1, 2, 3" % t), rows)
            for v, c in view_cols.items():
                with self.subTest(view=v):
                    self.assertEqual(columns_of(conn, v)[:len(c)], c)
                    self.assertEqual(rows_of(conn, "SELECT %s FROM %s ORDER BY 1, 2, 3"
                                             % (", ".join(c), v)), before_views[v])
            # The summary is the records' own counts.
            truth = sorted(rows_of(conn,
                "SELECT s.team AS team, substr(s.received_at, 1, 10) AS day,"
                " r.processor AS processor, s.state AS state,"
                " count(DISTINCT s.submission_id) AS submissions, count(r.run_id) AS runs"
                " FROM audit_submissions s"
                " LEFT JOIN audit_runs r ON r.submission_id = s.submission_id"
                " GROUP BY 1, 2, 3, 4"), key=lambda r: tuple((v is None, v) for v in r))
            got = sorted(((x["team"], x["day"], x["processor"], x["state"], x["submissions"],
                           x["runs"]) for x in summary),
                         key=lambda r: tuple((v is None, v) for v in r))
            self.assertEqual(got, truth)
            self.assertEqual(sorted(rows_of(conn, "SELECT team, day, processor, state,"
                                            " submissions, runs FROM audit_summary"),
                                    key=lambda r: tuple((v is None, v) for v in r)), truth)
            # The completed runs' durations, counted from the records too: how many and the
            # longest of each team's processor, from the start of the call that created it.
            done = {}
            for team, proc, end, start in rows_of(conn,
                    "SELECT r.team, r.processor, r.completed_at, c.started_at FROM audit_runs r"
                    " JOIN audit_calls c ON c.submission_id = r.submission_id"
                    " AND c.seq = r.call_seq WHERE r.status = 'completed'"):
                ms = max(0, round((datetime.strptime(end, "%Y-%m-%dT%H:%M:%S.%fZ") -
                                   datetime.strptime(start, "%Y-%m-%dT%H:%M:%S.%fZ"))
                                  .total_seconds() * 1000))
                done.setdefault((team, proc), []).append(ms)
            self.assertGreater(len(done), 0)
            self.assertEqual({(d["team"], d["processor"]): (d["runs"], d["max_ms"])
                              for d in durations},
                             {k: (len(v), max(v)) for k, v in done.items()})
            # One index per purpose on the submissions: the group's pages and
            # reconciliation's walk share submissions_group_time, and the open ones are read
            # from the audit's submissions_state_time (version 14 dropped version 6's
            # partial submissions_open, which held the same entries).
            idx = self.index_columns(conn, "submissions")
            self.assertEqual([n for n, c in idx.items() if c[0] == "taskgroup_id"],
                             ["submissions_group_time"])
            self.assertEqual(idx["submissions_group_time"], ["taskgroup_id", "received_at", "id"])
            self.assertEqual(idx["submissions_state_time"], ["state", "received_at", "id"])
            self.assertNotIn("submissions_open", idx)
            runs_idx = self.index_columns(conn, "runs")
            self.assertIn(["submission_id", "input_index"], runs_idx.values())
            self.assertEqual(runs_idx["runs_id"],
                             ["run_id"] if BACKEND == "postgresql" else ["bucket", "run_id"])
            names = self.schema_names(conn)
            for want in ("runs_no_update", "runs_no_delete", "runs_prune_status",
                         "summary_counts", "run_buckets"):
                self.assertIn(want, names)
            if BACKEND == "sqlite":
                self.assertNotIn("runs_cost", names)  # went with the old table
                self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
                self.assertEqual(conn.execute("PRAGMA foreign_key_check").fetchall(), [])
                self.assertRefused(conn, "DELETE FROM runs")
                # Version 15's CHECKs, edited in place: what a submission writes builds no
                # temporary table, and a state or outcome they do not know is still refused.
                for sql in ("INSERT INTO submissions (id, team_id, received_at, interface,"
                            " num_inputs, state) VALUES (?, ?, ?, ?, ?, ?)",
                            "UPDATE submissions SET state = ?, completed_at = ? WHERE id = ?",
                            "INSERT INTO upstream_calls (submission_id, seq, operation, method,"
                            " path, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)"):
                    ops = [r[1] for r in conn.execute("EXPLAIN " + sql, (None,) * sql.count("?"))]
                    self.assertNotIn("OpenEphemeral", ops, sql)
                team = conn.execute("SELECT min(id) FROM teams").fetchone()[0]
                self.assertRefused(conn, "INSERT INTO submissions (id, team_id, received_at,"
                                   " interface, num_inputs, state) VALUES ('sub_v15', %d,"
                                   " '2026-01-01T00:00:00.000Z', 'simplified', 1, 'done')" % team,
                                   why="CHECK constraint failed")
                self.assertRefused(conn, "INSERT INTO upstream_calls (submission_id, seq,"
                                   " operation, method, path, started_at, outcome) SELECT id, 99,"
                                   " 'add_runs', 'POST', '/', received_at, 'maybe'"
                                   " FROM submissions LIMIT 1", why="CHECK constraint failed")
        finally:
            conn.close()
        # The upgraded store prunes as a new one: a prune of everything settled takes the
        # runs' status and changes with them (runs_prune_status) and the summary's counts.
        orphans = ("SELECT (SELECT count(*) FROM run_status st WHERE NOT EXISTS (SELECT 1"
                   " FROM runs r WHERE r.run_id = st.run_id)) + (SELECT count(*) FROM"
                   " run_status_changes x WHERE NOT EXISTS (SELECT 1 FROM runs r"
                   " WHERE r.run_id = x.run_id))")
        conn = db_connect(database)
        try:
            orphans_before = conn.execute(orphans).fetchone()[0]
        finally:
            conn.close()
        r = self.s.cli("--config", conf, "audit", "prune", "--before",
                       rfc3339(datetime.now(timezone.utc)), config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        conn = db_connect(database)
        try:
            self.assertEqual(conn.execute(
                "SELECT count(*) FROM runs r JOIN submissions s ON s.id = r.submission_id"
                " WHERE s.state NOT IN ('pending', 'unknown')").fetchone()[0], 0)
            self.assertEqual(conn.execute(orphans).fetchone()[0], orphans_before)
            self.assertEqual(conn.execute("SELECT count(*) FROM audit_summary WHERE state"
                                          " NOT IN ('pending', 'unknown')").fetchone()[0], 0)
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
