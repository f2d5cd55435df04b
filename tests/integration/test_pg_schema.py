"""The PostgreSQL schema (sql/postgres/) against the SQLite one (sql/sqlite/), without the C
backend: a throwaway PostgreSQL server (pgserver.py) gets 001..004 through psql, a SQLite
database gets its schema from `taskgate init` (TG_BIN; else sql/sqlite/*.sql applied as the
C migrator does), and the two must agree: the same migrations and schema version, the same
tables, columns and indexes, the same views with the same columns in the same order, the
same rows from every view and from every ready query of the two audit-queries.sql files on
the same fixture, the same refusals by the append-only triggers (same messages) and the
CHECKs, and the prune guard letting a prune delete. Skipped when the PostgreSQL server
binaries are missing. Run through ctest or directly."""

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgserver import PgServer, pg_bindir, psql_path  # noqa: E402

SOURCE_DIR = os.environ.get("TG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SQLITE_DIR = os.path.join(SOURCE_DIR, "sql", "sqlite")
PG_DIR = os.path.join(SOURCE_DIR, "sql", "postgres")
MIGRATION_RE = re.compile(r"^(\d{3})_.*\.sql$")
# Tables only one side has: SQLite's prune guard (PostgreSQL's is a setting) and the
# migrator's version table (SQLite's is PRAGMA user_version).
SQLITE_ONLY_TABLES = {"audit_prune_guard"}
PG_ONLY_TABLES = {"schema_version"}
SQLITE_TO_PG_TYPE = {"INTEGER": "bigint", "TEXT": "text", "BLOB": "bytea"}
# Indexes whose columns differ on purpose (sql/postgres/012_scale.sql says why): the name and
# the table are the same, the columns each backend's.
INDEX_COLUMNS = {"runs_id": {"sqlite": ["bucket", "run_id"], "pg": ["run_id"]}}


def migrations(d):
    return sorted(f for f in os.listdir(d) if MIGRATION_RE.match(f))


def lit(v):
    """v as an SQL literal both dialects read alike."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        raise TypeError("booleans are 0/1 integers in this schema")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return None  # per dialect, see Db.lit
    return "'%s'" % str(v).replace("'", "''")


def parse_queries(path):
    """[(name, sql)] of an audit-queries.sql: each query follows "-- name: x", ends with ";"."""
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    parts = re.split(r"(?m)^-- name: *(\S+) *\n", text)
    out = []
    for name, body in zip(parts[1::2], parts[2::2]):
        sql = "\n".join(ln for ln in body.strip().splitlines()
                        if not ln.startswith("--")).strip()
        out.append((name, sql.rstrip(";").strip()))
    return out


def bind(sql, params):
    """sql with each :name replaced by the literal of params[name]."""
    def one(m):
        return lit(params[m.group(1)])
    return re.sub(r"(?<![:\w]):([a-z_]+)\b", one, sql)


def sort_key(row):
    return [(v is not None, str(type(v)), v) for v in row]


# ---- the two databases --------------------------------------------------------------------

class SqliteDb:
    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")  # as the C store does

    def lit(self, v):
        return "X'%s'" % v.hex() if isinstance(v, bytes) else lit(v)

    def query(self, sql):
        cur = self.conn.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, [list(r) for r in cur.fetchall()]

    def attempt(self, sql, setup=()):
        """Runs setup then sql in a transaction rolled back: (None, rowcount) or (error, None)."""
        self.conn.execute("BEGIN")
        try:
            for s in setup:
                self.conn.execute(s)
            cur = self.conn.execute(sql)
            return None, cur.rowcount
        except sqlite3.Error as e:
            return str(e), None
        finally:
            self.conn.execute("ROLLBACK")


class PgDb:
    def __init__(self, server, dbname=None):
        self.server = server
        self.dbname = dbname

    def lit(self, v):
        return "'\\x%s'::bytea" % v.hex() if isinstance(v, bytes) else lit(v)

    def run(self, script, check=True):
        return self.server.psql(script, dbname=self.dbname,
                                args=("-At", "-v", "VERBOSITY=verbose"), check=check)

    def query(self, sql):
        """(columns, rows) of sql; row_to_json keeps the names, order, types and NULLs."""
        r = self.run("SELECT row_to_json(q)::text FROM (%s) q;" % sql)
        rows = [json.loads(ln, object_pairs_hook=list) for ln in r.stdout.splitlines() if ln]
        cols = self.columns_of(sql) if not rows else [k for k, _ in rows[0]]
        return cols, [[v for _, v in row] for row in rows]

    def columns_of(self, sql):
        """The result's column names, from psql's \\gdesc (the query is not run)."""
        r = self.run("%s \\gdesc\n" % sql)
        return [ln.split("|")[0] for ln in r.stdout.splitlines() if ln]

    def attempt(self, sql, setup=()):
        script = "BEGIN;\n%s\n%s;\nROLLBACK;\n" % ("".join(s + ";\n" for s in setup), sql)
        r = self.server.psql(script, dbname=self.dbname, args=("-v", "VERBOSITY=verbose"),
                             check=False, quiet=False)
        if r.returncode != 0:
            m = re.search(r"ERROR:\s+([0-9A-Z]{5}): (.*)", r.stderr)
            if not m:
                raise AssertionError("unexpected psql failure: %s" % r.stderr)
            return (m.group(1), m.group(2)), None
        return None, r


class PgSchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if pg_bindir() is None or psql_path() is None:
            raise unittest.SkipTest("PostgreSQL is not installed (no initdb/pg_ctl/postgres "
                                    "or psql; Debian: apt-get install postgresql)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="tg-pg-schema-")
        cls.pg = PgServer()
        cls.pg.start()
        cls.pg_version = cls.pg.apply_migrations(PG_DIR)
        cls.pgdb = PgDb(cls.pg)
        cls.sqlite_path = os.path.join(cls.tmp.name, "taskgate.db")
        cls.sqlite_version = cls.sqlite_init(cls.sqlite_path)
        cls.lite = SqliteDb(cls.sqlite_path)
        cls.load_fixture()

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "lite"):
            cls.lite.conn.close()
        if hasattr(cls, "pg"):
            cls.pg.stop()
        if hasattr(cls, "tmp"):
            cls.tmp.cleanup()

    @classmethod
    def sqlite_init(cls, path):
        """The SQLite reference: `taskgate init` when TG_BIN is there, else the files."""
        tg_bin = os.environ.get("TG_BIN")
        if tg_bin and os.access(tg_bin, os.X_OK):
            conf = os.path.join(cls.tmp.name, "taskgate.conf")
            with open(conf, "w") as f:
                f.write("database = %s\n" % path)
            env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
            r = subprocess.run([tg_bin, "--config", conf, "init"], capture_output=True,
                               text=True, timeout=60, cwd=cls.tmp.name, env=env)
            if r.returncode != 0:
                raise RuntimeError("taskgate init failed: %s%s" % (r.stdout, r.stderr))
        else:
            conn = sqlite3.connect(path, isolation_level=None)
            for name in migrations(SQLITE_DIR):
                with open(os.path.join(SQLITE_DIR, name)) as f:
                    sql = f.read()
                conn.executescript("BEGIN;\n%s\nPRAGMA user_version = %d;\nCOMMIT;"
                                   % (sql, int(name[:3])))
            conn.close()
        conn = sqlite3.connect(path)
        v = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.close()
        return v

    # ---- the fixture: the same rows into both ---------------------------------------------

    TEAMS = [
        # name, upstream_key, key_fingerprint, created_at, updated_at, key_id (no id: both
        # number them 1, 2, 3)
        ("research", "tgk1.0a0b0c0d.AAAA", "sha256:0123456789ab", "2026-11-01T09:00:00.000Z",
         "2026-11-02T10:00:00.000Z", "0a0b0c0d"),
        ("Beta", "par-clear-key", "sha256:ba5eba11ba5e", "2026-11-01T09:30:00.000Z",
         "2026-11-01T09:30:00.000Z", None),
        ("alpha", "tgk1.0a0b0c0d.BBBB", "sha256:feedfacecafe", "2026-11-01T10:00:00.000Z",
         "2026-11-01T10:00:00.000Z", "0a0b0c0d"),
    ]

    @classmethod
    def fixture(cls):
        """[(table, {column: value})] in insertion order (parents first)."""
        rows = []
        for t in cls.TEAMS:
            rows.append(("teams", dict(zip(("name", "upstream_key", "key_fingerprint",
                                            "created_at", "updated_at", "key_id"), t))))
        tok = ("id", "team_id", "role", "label", "hash", "created_at", "expires_at",
               "revoked_at")
        for t in [
            ("tok_aaaa", 1, "submit", "alice laptop", "h1" * 32, "2026-11-01T09:01:00.000Z",
             None, None),
            ("tok_bbbb", 1, "audit", None, "h2" * 32, "2026-11-01T09:02:00.000Z",
             "2026-12-01T00:00:00.000Z", None),
            ("tok_cccc", 2, "submit", "ci 'nightly'", "h3" * 32, "2026-11-01T09:31:00.000Z",
             None, "2026-11-02T08:00:00.000Z"),
            ("tok_dddd", 3, "admin", "ops", "h4" * 32, "2026-11-01T10:01:00.000Z", None, None),
        ]:
            rows.append(("tokens", dict(zip(tok, t))))
        rows.append(("presets", {"team_id": 1, "name": "fast", "updated_at":
                                 "2026-11-01T09:05:00.000Z",
                                 "body": '{"processor":"base","default_task_spec":null}'}))
        sub = ("id", "team_id", "token_id", "request_id", "received_at", "completed_at",
               "remote_addr", "interface", "taskgroup_id", "num_inputs", "state",
               "http_status", "upstream_status", "error", "request", "resumes")
        subs = [
            ("sub_01", 1, "tok_aaaa", "req01", "2026-11-01T12:00:00.000Z",
             "2026-11-01T12:00:01.250Z", "10.0.0.1", "simplified", "tgrp_1", 3, "accepted",
             200, 200, None, '{"inputs":["a","b","c"]}', None),
            ("sub_02", 1, "tok_aaaa", "req02", "2026-11-01T13:00:00.000Z",
             "2026-11-01T13:00:30.000Z", "10.0.0.1", "upstream-compatible", "tgrp_1", 2,
             "failed", 502, 502, "upstream answered 502", '{"inputs":["d","e"]}', None),
            ("sub_03", 2, "tok_cccc", "req03", "2026-11-01T23:59:59.999Z", None, "10.0.0.2",
             "simplified", "tgrp_2", 1, "unknown", None, None, "timeout", None, None),
            ("sub_04", 2, None, None, "2026-11-02T00:00:00.000Z", "2026-11-02T00:00:00.010Z",
             None, "simplified", None, 1, "rejected", 422, None, "bad input: \u00e9\u00e8",
             None, None),
            ("sub_05", 1, "tok_aaaa", "req05", "2026-11-02T08:00:00.000Z", None, "10.0.0.1",
             "simplified", "tgrp_3", 2, "pending", None, None, None, '{"inputs":["x","y"]}',
             None),
            ("sub_06", 2, "tok_cccc", "req06", "2026-11-02T09:00:00.000Z",
             "2026-11-02T09:00:02.000Z", "10.0.0.2", "simplified", "tgrp_2", 1, "accepted",
             200, 200, None, None, "sub_03"),
            ("sub_07", 3, "tok_dddd", "req07", "2026-11-02T10:00:00.000Z",
             "2026-11-02T10:00:05.000Z", "::1", "upstream-compatible", "tgrp_4", 1, "failed",
             503, None, "no answer", None, None),
        ]
        for s in subs:
            rows.append(("submissions", dict(zip(sub, s))))
        call = ("submission_id", "seq", "operation", "method", "path", "first_input",
                "num_inputs", "started_at", "finished_at", "duration_ms", "outcome",
                "http_status", "run_cursor", "event_cursor", "error")
        calls = [
            ("sub_01", 0, "create_group", "POST", "/v1beta/tasks/groups", None, None,
             "2026-11-01T12:00:00.010Z", "2026-11-01T12:00:00.110Z", 100, "ok", 200, None,
             None, None),
            ("sub_01", 1, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_1/runs", 0, 3,
             "2026-11-01T12:00:00.120Z", "2026-11-01T12:00:01.200Z", 1080, "ok", 200,
             "cur_r1", "cur_e1", None),
            ("sub_02", 0, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_1/runs", 0, 1,
             "2026-11-01T13:00:00.010Z", "2026-11-01T13:00:00.500Z", 490, "ok", 200,
             "cur_r2", "cur_e2", None),
            ("sub_02", 1, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_1/runs", 1, 1,
             "2026-11-01T13:00:00.600Z", "2026-11-01T13:00:30.000Z", 29400, "error", 502,
             None, None, "upstream answered 502"),
            ("sub_03", 0, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_2/runs", 0, 1,
             "2026-11-02T00:00:00.000Z", None, None, "unknown", None, None, None, "timeout"),
            ("sub_06", 0, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_2/runs", 0, 1,
             "2026-11-02T09:00:00.100Z", "2026-11-02T09:00:01.900Z", 1800, "ok", 200,
             "cur_r6", None, None),
            ("sub_07", 0, "create_group", "POST", "/v1beta/tasks/groups", None, None,
             "2026-11-02T10:00:00.001Z", "2026-11-02T10:00:05.000Z", 4999, "error", None,
             None, None, "connection reset"),
            ("sub_07", 1, "add_runs", "POST", "/v1beta/tasks/groups/tgrp_4/runs", 0, 1,
             "2026-11-02T10:00:05.000Z", None, None, "not_sent", None, None, None, None),
        ]
        for c in calls:
            rows.append(("upstream_calls", dict(zip(call, c))))
        run = ("run_id", "submission_id", "call_seq", "input_index", "processor")
        for r in [("trun_1a", "sub_01", 1, 0, "base"), ("trun_1b", "sub_01", 1, 1, "base"),
                  ("trun_1c", "sub_01", 1, 2, None), ("trun_2a", "sub_02", 0, 0, "core"),
                  ("trun_6a", "sub_06", 0, 0, "lite")]:
            rows.append(("runs", dict(zip(run, r))))
        # What the store counts for the rows above (one row split over two shards, and a
        # row that nets to zero, as PostgreSQL's sessions and state changes leave them).
        cnt = ("team_id", "day", "state", "processor", "shard", "submissions", "runs")
        for c in [(1, "2026-11-01", "accepted", "base", 0, 1, 1),
                  (1, "2026-11-01", "accepted", "base", 3, 0, 1),
                  (1, "2026-11-01", "accepted", "", 0, 1, 1),
                  (1, "2026-11-01", "failed", "core", 0, 1, 1),
                  (2, "2026-11-01", "unknown", "", 0, 1, 0),
                  (2, "2026-11-02", "rejected", "", 0, 1, 0),
                  (1, "2026-11-02", "pending", "", 0, 1, 0),
                  (1, "2026-11-02", "accepted", "", 7, 0, 0),
                  (2, "2026-11-02", "accepted", "lite", 0, 1, 1),
                  (3, "2026-11-02", "failed", "", 0, 1, 0)]:
            rows.append(("summary_counts", dict(zip(cnt, c))))
        adm = ("at", "actor", "actor_team", "interface", "action", "object_type",
               "object_id", "team", "before", "after", "remote_addr")
        for a in [
            ("2026-11-01T09:00:00.000Z", "os:root", None, "cli", "team.add", "team",
             "research", "research", None,
             '{"name":"research","key_fingerprint":"sha256:aaaaaaaaaaaa"}', None),
            ("2026-11-01T09:01:00.000Z", "os:root", None, "cli", "token.issue", "token",
             "tok_aaaa", "research", None, '{"id":"tok_aaaa","role":"submit"}', None),
            ("2026-11-01T09:30:00.000Z", "os:root", None, "cli", "team.add", "team", "Beta",
             "Beta", None, '{"name":"Beta","key_fingerprint":"sha256:ba5eba11ba5e"}', None),
            ("2026-11-02T10:00:00.000Z", "token:tok_dddd", "ops", "http", "team.set_key",
             "team", "research", "research",
             '{"name":"research","key_fingerprint":"sha256:aaaaaaaaaaaa"}',
             '{"name":"research","key_fingerprint":"sha256:0123456789ab"}', "10.9.9.9"),
            ("2026-11-02T10:00:00.000Z", "token:tok_dddd", "ops", "http", "preset.set",
             "preset", "research/fast", "research", None,
             '{"name": "fast", "body": {"processor": "base", "x": [1, 2.5, true, null]}}',
             "10.9.9.9"),
            ("2026-11-02T11:00:00.000Z", "os:root", None, "cli", "token.revoke", "token",
             "tok_cccc", "Beta", '{"id":"tok_cccc"}', None, None),
        ]:
            rows.append(("admin_log", dict(zip(adm, a))))
        rd = ("at", "actor", "actor_team", "interface", "query", "remote_addr", "rows")
        for a in [("2026-11-02T12:00:00.000Z", "token:tok_bbbb", "research", "http",
                   "GET /v1/audit/runs?team=research", "10.0.0.3", 4),
                  ("2026-11-02T12:05:00.000Z", "os:root", None, "cli", "audit runs", None,
                   None)]:
            rows.append(("audit_reads", dict(zip(rd, a))))
        rows.append(("idempotency", {
            "team_id": 1, "kind": "key", "key": "k-1", "request_hash": "ab" * 32,
            "submission_id": "sub_01", "created_at": "2026-11-01T12:00:00.000Z",
            "expires_ms": 1793620800000, "answer_status": 200,
            "answer_type": "application/json", "answer_body": b'{"ok":true}\x00\xff'}))
        rows.append(("idempotency", {
            "team_id": 2, "kind": "retry", "key": "tok_cccc:" + "cd" * 32,
            "request_hash": "cd" * 32, "submission_id": "sub_06",
            "created_at": "2026-11-02T09:00:00.000Z", "expires_ms": 1793707200000,
            "answer_status": None, "answer_type": None, "answer_body": None}))
        rows.append(("team_limits", {"team_id": 1, "runs_per_minute": 60, "in_flight": 0,
                                     "updated_at": "2026-11-01T09:10:00.000Z"}))
        rows.append(("team_limits", {"team_id": 2, "updated_at": "2026-11-01T09:40:00.000Z"}))
        rows.append(("team_usage", {"team_id": 1, "minute": 29886480, "runs": 3}))
        rows.append(("reconciliations", {
            "submission_id": "sub_03", "at": "2026-11-02T08:30:00.000Z",
            "actor": "daemon:start", "taskgroup_id": "tgrp_2", "outcome": "error",
            "detail": "upstream unreachable"}))
        # What came of the runs (version 8): the add-runs calls above made their groups'
        # track_groups rows through the trigger; trun_1c has no status yet, trun_9z is not
        # a run of the gateway's (not in audit_run_status_changes).
        chg = ("run_id", "taskgroup_id", "status", "error", "changed_at", "source",
               "event_id", "recorded_at")
        for c in [("trun_1a", "tgrp_1", "queued", None, "2026-11-01T12:00:01.300Z", "events",
                   "ecur_1", "2026-11-01T12:00:01.400Z"),
                  ("trun_1a", "tgrp_1", "running", None, "2026-11-01T12:00:02.000Z", "events",
                   "ecur_2", "2026-11-01T12:00:02.100Z"),
                  ("trun_1a", "tgrp_1", "completed", None, "2026-11-01T12:05:00.000Z",
                   "webhook", "msg_1", "2026-11-01T12:05:00.200Z"),
                  ("trun_1b", "tgrp_1", "failed", "no sources: \u00e9", "2026-11-01T12:03:00.000Z",
                   "events", "ecur_3", "2026-11-01T12:03:00.050Z"),
                  ("trun_6a", "tgrp_2", "running", None, "2026-11-02T09:00:03.000Z", "events",
                   None, "2026-11-02T09:00:03.500Z"),
                  ("trun_9z", "tgrp_2", "queued", None, "2026-11-02T09:00:03.000Z", "events",
                   None, "2026-11-02T09:00:03.500Z")]:
            rows.append(("run_status_changes", dict(zip(chg, c))))
        st = ("run_id", "taskgroup_id", "status", "error", "changed_at", "completed_at",
              "source", "recorded_at")
        for r in [("trun_1a", "tgrp_1", "completed", None, "2026-11-01T12:05:00.000Z",
                   "2026-11-01T12:05:00.000Z", "webhook", "2026-11-01T12:05:00.200Z"),
                  ("trun_1b", "tgrp_1", "failed", "no sources: \u00e9",
                   "2026-11-01T12:03:00.000Z", "2026-11-01T12:03:00.000Z", "events",
                   "2026-11-01T12:03:00.050Z"),
                  ("trun_6a", "tgrp_2", "running", None, "2026-11-02T09:00:03.000Z", None,
                   "events", "2026-11-02T09:00:03.500Z")]:
            rows.append(("run_status", dict(zip(st, r))))
        rows.append(("webhook_deliveries", {
            "webhook_id": "msg_1", "received_at": "2026-11-01T12:05:00.200Z",
            "run_id": "trun_1a", "status": "completed", "outcome": "recorded"}))
        return rows

    @classmethod
    def insert_sql(cls, db, table, row):
        return "INSERT INTO %s (%s) VALUES (%s)" % (
            table, ", ".join(row), ", ".join(db.lit(v) for v in row.values()))

    @classmethod
    def sqlite_priced(cls):
        """What SQLite's store writes in its code as it records the fixture's runs (the
        costs, tg_sqlite_usage_runs), which PostgreSQL's trigger on runs writes in the
        INSERT itself (sql/postgres/012_scale.sql): the published prices of base, core and
        lite, nothing for a run without a processor."""
        rows = []
        cost = ("submission_id", "call_seq", "processor", "runs", "est_cost_micro")
        for c in [("sub_01", 1, "", 1, 0), ("sub_01", 1, "base", 2, 20000),
                  ("sub_02", 0, "core", 1, 25000), ("sub_06", 0, "lite", 1, 5000)]:
            rows.append(("call_costs", dict(zip(cost, c))))
        day = ("team_id", "day", "processor", "runs", "est_cost_micro")
        for d in [(1, "2026-11-01", "", 1, 0), (1, "2026-11-01", "base", 2, 20000),
                  (1, "2026-11-01", "core", 1, 25000), (2, "2026-11-02", "lite", 1, 5000)]:
            rows.append(("usage_days", dict(zip(day, d))))
        return rows

    @classmethod
    def load_fixture(cls):
        rows = cls.fixture()
        cls.lite.conn.execute("BEGIN")
        for table, row in rows + cls.sqlite_priced():
            cls.lite.conn.execute(cls.insert_sql(cls.lite, table, row))
        cls.lite.conn.execute("COMMIT")
        cls.load_pg(cls.pgdb, rows)

    @classmethod
    def load_pg(cls, db, rows=None):
        db.run("BEGIN;\n%s;\nCOMMIT;\n" % ";\n".join(
            cls.insert_sql(db, t, r) for t, r in (rows or cls.fixture())))

    # ---- catalogues ---------------------------------------------------------------------

    def sqlite_names(self, kind):
        return sorted(r[0] for r in self.lite.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'",
            (kind,)))

    def pg_rows(self, sql):
        return [ln.split("|") for ln in self.pgdb.run(sql + ";").stdout.splitlines() if ln]

    def pg_names(self, relkind):
        return sorted(r[0] for r in self.pg_rows(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = '%s'" % relkind))

    def pg_columns(self, rel):
        """[(name, type, collation, not null)] of a table or view, in order."""
        return [tuple(r) for r in self.pg_rows(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
            " coalesce(co.collname, ''), a.attnotnull"
            " FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation"
            " WHERE a.attrelid = 'public.%s'::regclass AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum" % rel)]

    # ---- the tests ----------------------------------------------------------------------

    def test_migrations_match_and_versions_agree(self):
        self.assertEqual([f[:3] for f in migrations(PG_DIR)],
                         [f[:3] for f in migrations(SQLITE_DIR)])
        self.assertEqual(migrations(PG_DIR), migrations(SQLITE_DIR),
                         "each PostgreSQL migration is named as its SQLite twin")
        latest = int(migrations(SQLITE_DIR)[-1][:3])
        self.assertEqual(self.sqlite_version, latest)
        self.assertEqual(self.pg_version, latest)
        self.assertEqual(self.pg.schema_version(), latest)
        self.assertEqual(self.pg_rows("SELECT count(*) FROM schema_version"), [["1"]])

    def test_tables_and_columns_match(self):
        lite = set(self.sqlite_names("table")) - SQLITE_ONLY_TABLES
        pg = set(self.pg_names("r")) - PG_ONLY_TABLES
        self.assertEqual(pg, lite)
        for table in sorted(lite):
            want = []
            for _, name, typ, notnull, _, pk in self.lite.conn.execute(
                    "PRAGMA table_info(%s)" % table):
                want.append((name, SQLITE_TO_PG_TYPE[typ], "C" if typ == "TEXT" else "",
                             "t" if (notnull or pk) else "f"))
            got = self.pg_columns(table)
            # SQLite lets a TEXT PRIMARY KEY hold NULL (a legacy quirk); the gateway never
            # writes one, PostgreSQL's primary keys are NOT NULL.
            self.assertEqual(got, want, table)

    def test_primary_keys_and_foreign_keys_match(self):
        for table in sorted(set(self.sqlite_names("table")) - SQLITE_ONLY_TABLES):
            pk = [r[1] for r in sorted((r for r in self.lite.conn.execute(
                "PRAGMA table_info(%s)" % table) if r[5]), key=lambda r: r[5])]
            got = self.pg_rows(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid ="
                " i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'public.%s'"
                "::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)"
                % table)
            self.assertEqual([r[0] for r in got], pk, table)
            fks = sorted((r[2], r[3], r[4] or "") for r in self.lite.conn.execute(
                "PRAGMA foreign_key_list(%s)" % table))
            got = sorted(tuple(r) for r in self.pg_rows(
                "SELECT cf.relname, a.attname, coalesce(af.attname, '')"
                " FROM pg_constraint k JOIN pg_class cf ON cf.oid = k.confrelid,"
                " unnest(k.conkey, k.confkey) AS u(c, f)"
                " JOIN pg_attribute a ON a.attrelid = 'public.%s'::regclass AND a.attnum = u.c"
                " JOIN pg_attribute af ON af.attnum = u.f"
                " WHERE k.conrelid = 'public.%s'::regclass AND k.contype = 'f'"
                " AND af.attrelid = k.confrelid" % (table, table)))
            # SQLite names no parent column when it is the parent's primary key.
            fks = [(p, c, f or c_pk) for (p, c, f), c_pk in
                   ((fk, self.pk_of(fk[0])) for fk in fks)]
            self.assertEqual(sorted(got), sorted(fks), table)

    def pk_of(self, table):
        rows = [r for r in self.lite.conn.execute("PRAGMA table_info(%s)" % table) if r[5]]
        return rows[0][1] if len(rows) == 1 else ""

    def test_indexes_match(self):
        want = {}
        for name in self.sqlite_names("index"):
            tbl, sql = self.lite.conn.execute(
                "SELECT tbl_name, sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
            cols = [r[2] for r in self.lite.conn.execute("PRAGMA index_info(%s)" % name)]
            partial = " WHERE " in sql.upper()
            want[name] = (tbl, cols, partial)
        got = {}
        for name, tbl, cols, partial in self.pg_rows(
                "SELECT c.relname, t.relname, (SELECT string_agg(a.attname, ',' ORDER BY"
                " array_position(i.indkey::int2[], a.attnum)) FROM pg_attribute a WHERE a.attrelid ="
                " t.oid AND a.attnum = ANY(i.indkey)), i.indpred IS NOT NULL"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON"
                " n.oid = t.relnamespace WHERE n.nspname = 'public' AND NOT i.indisprimary"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid ="
                " i.indexrelid)"):
            got[name] = (tbl, cols.split(","), partial == "t")
        for name, cols in INDEX_COLUMNS.items():
            self.assertEqual((want[name][1], got[name][1]), (cols["sqlite"], cols["pg"]), name)
            want[name] = got[name] = (want[name][0], [], want[name][2])
        self.assertEqual(got, want)
        # UNIQUE columns (teams.name, tokens.hash): SQLite's autoindexes, PostgreSQL's
        # unique constraints.
        want = sorted([tbl, r[2]] for tbl in self.sqlite_names("table")
                      for idx in self.lite.conn.execute("PRAGMA index_list(%s)" % tbl)
                      if idx[3] == "u" for r in self.lite.conn.execute(
                          "PRAGMA index_info(%s)" % idx[1]))
        got = sorted(self.pg_rows(
            "SELECT t.relname, a.attname FROM pg_constraint k JOIN pg_class t ON"
            " t.oid = k.conrelid JOIN pg_attribute a ON a.attrelid = t.oid AND"
            " a.attnum = ANY(k.conkey) WHERE k.contype = 'u'"
            " AND t.relnamespace = 'public'::regnamespace"))
        self.assertEqual(got, want)

    def test_views_have_the_same_columns(self):
        views = self.sqlite_names("view")
        self.assertEqual(self.pg_names("v"), views)
        self.assertTrue({"audit_submissions", "audit_runs", "audit_calls",
                         "audit_admin"} <= set(views))
        for v in views:
            want = [r[1] for r in self.lite.conn.execute("PRAGMA table_info(%s)" % v)]
            self.assertEqual([c[0] for c in self.pg_columns(v)], want, v)

    def test_views_give_the_same_rows(self):
        for v in self.sqlite_names("view"):
            lcols, lrows = self.lite.query("SELECT * FROM %s" % v)
            pcols, prows = self.pgdb.query("SELECT * FROM %s" % v)
            self.assertEqual(pcols, lcols, v)
            self.assertGreater(len(lrows), 0, "the fixture leaves %s empty" % v)
            self.assertEqual(sorted(prows, key=sort_key), sorted(lrows, key=sort_key), v)

    def test_tables_hold_the_same_rows(self):
        """Ids numbered alike, defaults alike, bytes alike: the tables read back the same."""
        for table in sorted(set(self.sqlite_names("table")) - SQLITE_ONLY_TABLES):
            order = ", ".join(r[1] for r in self.lite.conn.execute(
                "PRAGMA table_info(%s)" % table))
            cols = [r[1] for r in self.lite.conn.execute("PRAGMA table_info(%s)" % table)]
            if table == "track_groups":  # SQLite's add counter (see the test below)
                cols = [c for c in cols if c not in ("adds", "updated_at")]
                order = ", ".join(cols)
            sel = ", ".join("hex(%s) AS %s" % (c, c) if c == "answer_body" else c
                            for c in cols)
            psel = ", ".join("upper(encode(%s, 'hex')) AS %s" % (c, c) if c == "answer_body"
                             else c for c in cols)
            lrows = self.lite.query("SELECT %s FROM %s ORDER BY %s" % (sel, table, order))
            prows = self.pgdb.query("SELECT %s FROM %s ORDER BY %s" % (psel, table, order))
            # SQLite's hex(NULL) is '', encode(NULL) is NULL.
            lr = [[None if (c == "answer_body" and v == "") else v
                   for c, v in zip(cols, row)] for row in lrows[1]]
            self.assertEqual(prows[0], lrows[0], table)
            self.assertEqual(prows[1], lr, table)

    def query_params(self):
        everything = {"since": "0000", "until": "9999"}
        base = {"team": "research", "token_id": "tok_aaaa", "taskgroup_id": "tgrp_1",
                "run_id": "trun_1b", "submission_id": "sub_02", "limit": 4,
                "object_type": "team", "object_id": "research"}
        sets = [dict(base, **everything),
                # a date alone, the edges of a day (23:59:59.999 in, 00:00:00.000 out)
                dict(base, since="2026-11-01", until="2026-11-02", team="Beta",
                     token_id="tok_cccc", taskgroup_id="tgrp_2", run_id="trun_6a",
                     submission_id="sub_07", limit=2, object_type="token",
                     object_id="tok_cccc"),
                dict(base, since="2026-11-01T13:00:00.000Z", until="2026-11-02T10:00:00.000Z",
                     limit=100, object_type="preset", object_id="research/fast"),
                dict(base, since="2026-11-02", until="2026-11-01", team="nobody",
                     run_id="trun_none")]
        return sets

    def test_ready_queries_give_the_same_rows(self):
        lite = parse_queries(os.path.join(SQLITE_DIR, "audit-queries.sql"))
        pg = parse_queries(os.path.join(PG_DIR, "audit-queries.sql"))
        self.assertEqual([n for n, _ in pg], [n for n, _ in lite])
        self.assertGreaterEqual(len(lite), 10)
        nonempty = set()
        for (name, lsql), (_, psql) in zip(lite, pg):
            for params in self.query_params():
                lcols, lrows = self.lite.query(bind(lsql, params))
                pcols, prows = self.pgdb.query(bind(psql, params))
                what = "%s with %s" % (name, params)
                self.assertEqual(pcols, lcols, what)
                self.assertEqual(prows, lrows, what)  # the same order too
                if lrows:
                    nonempty.add(name)
        self.assertEqual(nonempty, {n for n, _ in lite},
                         "every ready query answers rows on some fixture window")

    def test_ready_queries_need_their_null_order(self):
        """The two queries that differ do so for a reason: SQLite's text run on PostgreSQL
        orders the NULLs of the fixture elsewhere."""
        lite = dict(parse_queries(os.path.join(SQLITE_DIR, "audit-queries.sql")))
        params = self.query_params()[0]
        for name in ("failed_calls_by_status", "slowest_calls"):
            p = dict(params, limit=100)
            _, want = self.lite.query(bind(lite[name], p))
            _, got = self.pgdb.query(bind(lite[name], p))
            self.assertNotEqual(got, want, name)
            self.assertEqual(sorted(got, key=sort_key), sorted(want, key=sort_key), name)

    def test_byte_order_whatever_the_database_locale(self):
        """Text columns are COLLATE "C": in a database whose default collation is ICU's
        en-US (where 'alpha' sorts before 'Beta'), sorts, min/max and the windows still
        follow SQLite's byte order."""
        r = self.pg.psql("CREATE DATABASE taskgate_icu TEMPLATE template0 ENCODING 'UTF8'"
                         " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'",
                         dbname="postgres", check=False)
        if r.returncode != 0:
            self.skipTest("this PostgreSQL has no ICU collations: %s" % r.stderr.strip())
        self.pg.apply_migrations(PG_DIR, dbname="taskgate_icu")
        icu = PgDb(self.pg, "taskgate_icu")
        self.load_pg(icu)
        _, rows = icu.query("SELECT x FROM (VALUES ('alpha'), ('Beta')) v(x) ORDER BY x")
        self.assertEqual(rows, [["alpha"], ["Beta"]], "the database's own order is not bytes")
        for sql in ["SELECT team, submission_id FROM audit_submissions ORDER BY team, 2",
                    "SELECT min(team) AS lo, max(team) AS hi, max(error) AS e FROM audit_submissions",
                    "SELECT team, count(*) AS n FROM audit_calls GROUP BY team ORDER BY team"]:
            self.assertEqual(icu.query(sql), self.lite.query(sql), sql)
        lite = parse_queries(os.path.join(SQLITE_DIR, "audit-queries.sql"))
        pg = parse_queries(os.path.join(PG_DIR, "audit-queries.sql"))
        for (name, lsql), (_, psql) in zip(lite, pg):
            for params in self.query_params():
                self.assertEqual(icu.query(bind(psql, params)),
                                 self.lite.query(bind(lsql, params)), name)

    def test_add_runs_calls_mark_their_groups_to_follow(self):
        """Every add-runs call that may have created runs (ok, unknown) puts its group in
        track_groups in its own transaction, with the call's time, once per group; other
        calls do not (a failed add, a group creation, a call never sent)."""
        sql = ("SELECT taskgroup_id, team_id, state, adds, last_event_id, owner, since,"
               " updated_at FROM track_groups ORDER BY taskgroup_id")
        want = [["tgrp_1", 1, "follow", 2, None, None, "2026-11-01T12:00:00.120Z",
                 "2026-11-01T13:00:00.010Z"],
                ["tgrp_2", 2, "follow", 2, None, None, "2026-11-02T00:00:00.000Z",
                 "2026-11-02T09:00:00.100Z"]]
        self.assertEqual(self.lite.query(sql)[1], want)
        # PostgreSQL keeps no counter (adds from many daemons would queue on the row): a
        # group already followed is left as it is, and the tracker counts the calls.
        self.assertEqual(self.pgdb.query(sql)[1],
                         [r[:3] + [0] + r[4:7] + [r[6]] for r in want])
        # An idle group asked again: 'follow' since the new call, its place kept.
        call = ("INSERT INTO upstream_calls (submission_id, seq, operation, method, path,"
                " started_at, outcome) VALUES ('sub_06', 5, 'add_runs', 'POST', '/x',"
                " '2026-11-03T00:00:00.000Z', 'ok')")
        setup = ["UPDATE track_groups SET state = 'idle', last_event_id = 'e9'"
                 " WHERE taskgroup_id = 'tgrp_2'", call]
        again = ("SELECT state, adds, last_event_id, since FROM track_groups"
                 " WHERE taskgroup_id = 'tgrp_2'")
        self.lite.conn.execute("BEGIN")
        try:
            for q in setup:
                self.lite.conn.execute(q)
            lrow = self.lite.query(again)[1]
        finally:
            self.lite.conn.execute("ROLLBACK")
        r = self.pgdb.run("BEGIN;\n%s;\n%s;\nROLLBACK;" % (";\n".join(setup), again))
        self.assertEqual(lrow, [["follow", 3, "e9", "2026-11-03T00:00:00.000Z"]])
        self.assertIn("follow|0|e9|2026-11-03T00:00:00.000Z", r.stdout.splitlines())

    # ---- append-only ------------------------------------------------------------------

    REFUSED = [
        "UPDATE admin_log SET actor = 'os:mallory' WHERE id = 1",
        "DELETE FROM admin_log WHERE id = 2",
        "UPDATE audit_reads SET rows = 0",
        "DELETE FROM audit_reads",
        "UPDATE runs SET processor = 'pro' WHERE run_id = 'trun_1a'",
        "DELETE FROM runs WHERE run_id = 'trun_1c'",
        "UPDATE upstream_calls SET outcome = 'ok' WHERE submission_id = 'sub_03'",
        "DELETE FROM upstream_calls WHERE submission_id = 'sub_07' AND seq = 1",
        # settled: accepted, failed, rejected
        "UPDATE submissions SET error = 'x' WHERE id = 'sub_01'",
        "UPDATE submissions SET state = 'accepted' WHERE id = 'sub_02'",
        "UPDATE submissions SET completed_at = NULL WHERE id = 'sub_04'",
        # settled and its identity changed: the same trigger refuses first on both
        "UPDATE submissions SET request_id = 'other' WHERE id = 'sub_01'",
        # open, but who/when/what changed, or back to pending
        "UPDATE submissions SET team_id = 1 WHERE id = 'sub_03'",
        "UPDATE submissions SET token_id = NULL WHERE id = 'sub_05'",
        "UPDATE submissions SET request_id = NULL WHERE id = 'sub_03'",
        "UPDATE submissions SET received_at = '2026-11-03T00:00:00.000Z' WHERE id = 'sub_05'",
        "UPDATE submissions SET remote_addr = '10.6.6.6' WHERE id = 'sub_03'",
        "UPDATE submissions SET interface = 'upstream-compatible' WHERE id = 'sub_05'",
        "UPDATE submissions SET num_inputs = 3 WHERE id = 'sub_05'",
        "UPDATE submissions SET request = '{}' WHERE id = 'sub_05'",
        "UPDATE submissions SET request = NULL WHERE id = 'sub_05'",
        "UPDATE submissions SET state = 'pending' WHERE id = 'sub_03'",
        "UPDATE submissions SET id = 'sub_99' WHERE id = 'sub_05'",
        "DELETE FROM submissions WHERE id = 'sub_05'",
        "UPDATE reconciliations SET outcome = 'accepted'",
        "UPDATE run_status_changes SET status = 'completed' WHERE run_id = 'trun_6a'",
        "DELETE FROM run_status_changes WHERE run_id = 'trun_1b'",
    ]
    ALLOWED = [
        ("UPDATE submissions SET state = 'accepted', http_status = 200, upstream_status = 200,"
         " completed_at = '2026-11-02T08:00:01.000Z', taskgroup_id = 'tgrp_3'"
         " WHERE id = 'sub_05'", 1),
        ("UPDATE submissions SET state = 'failed', error = 'gone' WHERE id = 'sub_03'", 1),
        ("UPDATE submissions SET state = 'unknown' WHERE id = 'sub_05'", 1),
        ("UPDATE submissions SET state = 'pending' WHERE id = 'sub_05'", 1),
        ("UPDATE submissions SET interface = 'x' WHERE id = 'nope'", 0),
        ("DELETE FROM reconciliations", 1),  # not guarded in SQLite either
        ("UPDATE teams SET key_id = NULL", 3),
        ("UPDATE run_status SET status = 'completed' WHERE run_id = 'trun_6a'", 1),
        ("UPDATE track_groups SET state = 'idle', owner = NULL", 2),
        ("DELETE FROM webhook_deliveries", 1),
    ]

    def test_append_only_triggers_refuse_alike(self):
        for sql in self.REFUSED:
            lerr, lcount = self.lite.attempt(sql)
            perr, pres = self.pgdb.attempt(sql)
            self.assertIsNotNone(lerr, "SQLite let through: %s" % sql)
            self.assertIsNotNone(perr, "PostgreSQL let through: %s (SQLite: %s)" % (sql, lerr))
            self.assertEqual(perr, ("23000", lerr), sql)

    def test_allowed_updates_pass_alike(self):
        for sql, n in self.ALLOWED:
            lerr, lcount = self.lite.attempt(sql)
            self.assertIsNone(lerr, sql)
            self.assertEqual(lcount, n, sql)
            perr, pres = self.pgdb.attempt(sql)
            self.assertIsNone(perr, sql)
            self.assertIn("%s %d" % (sql.split()[0], n), pres.stdout, sql)

    def test_truncate_is_refused(self):
        for table, msg in [
                ("admin_log", "admin_log is append-only: rows are deleted only by an audit prune"),
                ("audit_reads",
                 "audit_reads is append-only: rows are deleted only by an audit prune"),
                ("runs", "runs are audit records: they are deleted only by an audit prune"),
                ("upstream_calls",
                 "upstream_calls are audit records: they are deleted only by an audit prune"),
                ("submissions",
                 "submissions are audit records: they are deleted only by an audit prune"),
                ("run_status_changes",
                 "run_status_changes is append-only: rows are deleted only by an audit prune")]:
            perr, _ = self.pgdb.attempt("TRUNCATE %s CASCADE" % table)
            self.assertEqual(perr, ("23000", msg), table)

    PRUNE = [
        "DELETE FROM runs WHERE submission_id IN ('sub_01', 'sub_02')",
        "DELETE FROM upstream_calls WHERE submission_id IN ('sub_01', 'sub_02')",
        "DELETE FROM idempotency WHERE submission_id IN ('sub_01', 'sub_02')",
        "DELETE FROM submissions WHERE id IN ('sub_01', 'sub_02')",
        "DELETE FROM admin_log WHERE at < '2026-11-02'",
    ]

    def test_prune_guard_lets_a_prune_delete(self):
        last = "DELETE FROM audit_reads WHERE at < '2026-11-03'"
        lerr, lcount = self.lite.attempt(
            last, setup=["INSERT INTO audit_prune_guard (active) VALUES (1)"] + self.PRUNE)
        self.assertIsNone(lerr)
        self.assertEqual(lcount, 2)
        perr, pres = self.pgdb.attempt(
            last, setup=["SET LOCAL taskgate.audit_prune = 'on'"] + self.PRUNE)
        self.assertIsNone(perr)
        self.assertIn("DELETE 2", pres.stdout)
        # A prune takes the pruned runs' status and changes with them, and no other run's.
        check = ("SELECT (SELECT count(*) FROM run_status) AS st,"
                 " (SELECT count(*) FROM run_status_changes) AS ch")
        lerr, _ = self.lite.attempt(check, setup=["INSERT INTO audit_prune_guard (active)"
                                                  " VALUES (1)"] + self.PRUNE)
        self.assertIsNone(lerr)
        self.lite.conn.execute("BEGIN")
        try:
            self.lite.conn.execute("INSERT INTO audit_prune_guard (active) VALUES (1)")
            for sql in self.PRUNE:
                self.lite.conn.execute(sql)
            left = self.lite.query(check + ", (SELECT group_concat(run_id) FROM run_status)"
                                   " AS ids")[1]
        finally:
            self.lite.conn.execute("ROLLBACK")
        self.assertEqual(left, [[1, 2, "trun_6a"]])
        r = self.pgdb.run("BEGIN; SET LOCAL taskgate.audit_prune = 'on';\n%s;\n%s,"
                          " (SELECT string_agg(run_id, ',') FROM run_status) AS ids;"
                          " ROLLBACK;" % (";\n".join(self.PRUNE), check))
        self.assertIn("1|2|trun_6a", r.stdout.splitlines())
        # The guard is off again once the transaction ends (rolled back above, and a
        # committed transaction likewise: SET LOCAL never outlives it).
        perr, _ = self.pgdb.attempt(self.PRUNE[0])
        self.assertEqual(perr, ("23000", "runs are audit records: they are deleted only by an"
                                " audit prune"))
        r = self.pgdb.run("BEGIN; SET LOCAL taskgate.audit_prune = 'on'; COMMIT;"
                          " SELECT tg_audit_prune_active();")
        self.assertEqual(r.stdout.split()[-1], "f")
        # and the guard set, then switched off before logging the prune, refuses again
        perr, _ = self.pgdb.attempt(self.PRUNE[0], setup=[
            "SET LOCAL taskgate.audit_prune = 'on'", "SET LOCAL taskgate.audit_prune = 'off'"])
        self.assertIsNotNone(perr)

    # ---- checks -----------------------------------------------------------------------

    BAD_INSERTS = [
        ("tokens", {"id": "tok_x", "team_id": 1, "role": "root", "hash": "hx",
                    "created_at": "2026-11-01T00:00:00.000Z"}),
        ("tokens", {"id": "tok_x", "team_id": 9, "role": "submit", "hash": "hx",
                    "created_at": "2026-11-01T00:00:00.000Z"}),          # no such team
        ("teams", {"name": "research", "upstream_key": "k", "key_fingerprint": "f",
                   "created_at": "t", "updated_at": "t"}),              # name taken
        ("submissions", {"id": "sub_x", "team_id": 1, "received_at": "t",
                         "interface": "simplified", "num_inputs": 1, "state": "done"}),
        ("upstream_calls", {"submission_id": "sub_01", "seq": 9, "operation": "get",
                            "method": "GET", "path": "/", "started_at": "t",
                            "outcome": "ok"}),
        ("upstream_calls", {"submission_id": "sub_01", "seq": 9, "operation": "add_runs",
                            "method": "GET", "path": "/", "started_at": "t",
                            "outcome": "maybe"}),
        ("runs", {"run_id": "trun_x", "submission_id": "sub_01", "call_seq": 7,
                  "input_index": 0}),                                    # no such call
        ("idempotency", {"team_id": 1, "kind": "other", "key": "k", "request_hash": "h",
                         "submission_id": "s", "created_at": "t", "expires_ms": 1}),
        ("idempotency", {"team_id": 1, "kind": "key", "key": "k-1", "request_hash": "h",
                         "submission_id": "s", "created_at": "t", "expires_ms": 1}),  # dup
        ("team_limits", {"team_id": 3, "runs_per_minute": -1, "updated_at": "t"}),
        ("team_limits", {"team_id": 3, "in_flight": -1, "updated_at": "t"}),
        ("reconciliations", {"submission_id": "sub_03", "at": "t", "actor": "a",
                             "outcome": "maybe"}),
        ("run_status", {"run_id": "trun_x", "taskgroup_id": "g", "status": "done",
                        "changed_at": "t", "source": "events", "recorded_at": "t"}),
        ("run_status", {"run_id": "trun_x", "taskgroup_id": "g", "status": "queued",
                        "changed_at": "t", "source": "email", "recorded_at": "t"}),
        ("run_status_changes", {"run_id": "trun_x", "taskgroup_id": "g", "status": "lost",
                                "changed_at": "t", "source": "events", "recorded_at": "t"}),
        ("track_groups", {"taskgroup_id": "tgrp_x", "team_id": 9, "state": "follow",
                          "since": "t", "updated_at": "t"}),             # no such team
        ("track_groups", {"taskgroup_id": "tgrp_x", "team_id": 1, "state": "paused",
                          "since": "t", "updated_at": "t"}),
        ("webhook_deliveries", {"webhook_id": "msg_1", "received_at": "t",
                                "outcome": "recorded"}),                 # dup
        ("webhook_deliveries", {"webhook_id": "msg_x", "received_at": "t", "outcome": "lost"}),
    ]
    GOOD_AT = "2026-11-03T00:00:00.000Z"
    BAD_AT = ["2026-11-03T00:00:00Z", "2026-11-03T00:00:00.000", "2026-11-03 00:00:00.000Z",
              "2026-11-03T00:00:00.000Z ", "2026-1a-03T00:00:00.000Z", "2026-11-03T00:00:00,000Z",
              "x2026-11-03T00:00:00.000Z"]
    BAD_JSON = ["{", "{'a':1}", "", "[1,]", "nul", '{"a":1}}']
    GOOD_JSON = ['{"a":[1,2,{"b":null}]}', "[]", "1", '"s"', ' {"a" : true} ', "null"]

    def admin_row(self, **kw):
        row = {"at": self.GOOD_AT, "actor": "os:root", "interface": "cli",
               "action": "team.add", "object_type": "team", "object_id": "x"}
        row.update(kw)
        return row

    def refused_alike(self, table, row, refused):
        lerr, _ = self.lite.attempt(self.insert_sql(self.lite, table, row))
        perr, _ = self.pgdb.attempt(self.insert_sql(self.pgdb, table, row))
        what = "%s %s: SQLite %s, PostgreSQL %s" % (table, row, lerr, perr)
        self.assertEqual(lerr is not None, refused, what)
        self.assertEqual(perr is not None, refused, what)
        if perr is not None:
            # a CHECK, UNIQUE or FOREIGN KEY violation, as SQLite's SQLITE_CONSTRAINT
            self.assertEqual(perr[0][:2], "23", what)

    def test_checks_refuse_alike(self):
        for table, row in self.BAD_INSERTS:
            self.refused_alike(table, row, True)
        for bad in self.BAD_AT:
            self.refused_alike("admin_log", self.admin_row(at=bad), True)
            self.refused_alike("audit_reads", {"at": bad, "actor": "a", "interface": "cli"},
                               True)
        self.refused_alike("admin_log", self.admin_row(interface="tty"), True)
        for bad in self.BAD_JSON:
            self.refused_alike("admin_log", self.admin_row(before=bad), True)
            self.refused_alike("admin_log", self.admin_row(after=bad), True)
        for good in self.GOOD_JSON:
            self.refused_alike("admin_log", self.admin_row(before=good, after=good), False)
        self.refused_alike("audit_reads", {"at": self.GOOD_AT, "actor": "a",
                                           "interface": "http"}, False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
