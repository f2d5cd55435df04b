"""The audit reads of the PostgreSQL store answer exactly as SQLite's: the same records
loaded into both backends, `taskgate audit ...` gives the same bytes (JSON, CSV, the table),
the same exit status and messages, the same pages and cursors, the same prune counts and
admin-log row, on a database of the "C" locale and on one whose default collation is ICU's
en-US (which orders "B" after "a" and "_" elsewhere than bytes do). Concurrent prunes on one
server delete each record once. Runs through the real binary against a throwaway server
(pgserver.py); skipped when PostgreSQL is not installed."""

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgserver import PgServer, pg_bindir  # noqa: E402

SRC = os.environ.get("TG_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("TG_BIN", os.path.join(SRC, "build", "taskgate"))


# ---- the fixture: the same rows into both ------------------------------------------------

def tm(day, sec, ms):
    return "2026-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        1 + day // 28, 1 + day % 28, sec // 3600 % 24, sec // 60 % 60, sec % 60, ms)


GROUPS = ["tgrp_aa", "tgrp_AB", "tgrp__c", "tgrp_d-1"]


def fixture(seed=7, nsubs=260):
    """(table, {column: value}) rows: ids that sort differently by bytes and by locale,
    ties on every key, NULLs, non-ASCII text, JSON with its own spacing."""
    rnd = random.Random(seed)
    rows = []
    teams = ["a", "B", "_z", "team-\u00e9"]
    for i, n in enumerate(teams, 1):
        rows.append(("teams", dict(id=i, name=n, upstream_key="k%d" % i,
                                   key_fingerprint="sha256:%012d" % i,
                                   created_at=tm(0, 0, 0), updated_at=tm(0, 0, 0))))
    toks = []
    for i in range(6):
        tid = "tok_%s%d" % (rnd.choice(["A", "b", "_", "Z"]), i)
        toks.append(tid)
        rows.append(("tokens", dict(id=tid, team_id=1 + i % 4, role="submit",
                                    label=rnd.choice([None, "ci", "Label \u2713", "a b"]),
                                    hash="h%d" % i, created_at=tm(0, 0, 0))))
    seen = set()
    for i in range(nsubs):
        sid = "sub_" + "".join(rnd.choice("abcXYZ_-019") for _ in range(6))
        if sid in seen:
            continue
        seen.add(sid)
        day, sec = rnd.randrange(20), rnd.choice([0, 1, 3600, rnd.randrange(86400)])
        ms = rnd.choice([0, 0, 999, rnd.randrange(1000)])
        state = rnd.choice(["pending", "accepted", "accepted", "rejected", "failed", "unknown"])
        n = rnd.randrange(1, 5)
        rows.append(("submissions", dict(
            id=sid, team_id=1 + rnd.randrange(4), token_id=rnd.choice(toks + [None]),
            request_id=rnd.choice([None, "rq%d" % i]), received_at=tm(day, sec, ms),
            completed_at=None if state == "pending" else tm(day, sec, min(ms + 1, 999)),
            remote_addr=rnd.choice([None, "10.0.0.1", "::1"]),
            interface=rnd.choice(["simplified", "upstream-compatible"]),
            taskgroup_id=rnd.choice(GROUPS + [None]), num_inputs=n, state=state,
            http_status=rnd.choice([None, 200, 422]), upstream_status=rnd.choice([None, 200, 500]),
            error=rnd.choice([None, "boom", "\u00fcber"]),
            request=rnd.choice([None, json.dumps({"inputs": ["x"] * n, "t": "\u00e9 \"q\""}),
                                '{ "a" : [1,2 ,3] }']))))
        if state in ("accepted", "failed", "unknown") and rnd.random() < 0.8:
            first = 0
            for seq in range(rnd.randrange(1, 3)):
                k = rnd.randrange(1, 3)
                rows.append(("upstream_calls", dict(
                    submission_id=sid, seq=seq, operation=rnd.choice(["create_group", "add_runs"]),
                    method="POST", path="/v1beta/tasks/groups/x/runs", first_input=first,
                    num_inputs=k, started_at=tm(day, sec, ms),
                    finished_at=rnd.choice([None, tm(day, sec, ms)]),
                    duration_ms=rnd.choice([None, 12, 0]),
                    outcome=rnd.choice(["ok", "error", "unknown"]),
                    http_status=rnd.choice([None, 200]), run_cursor=rnd.choice([None, "rc1"]),
                    event_cursor=rnd.choice([None, "ec1"]), error=None)))
                for j in range(k):
                    rows.append(("runs", dict(run_id="run_%s_%d_%d" % (sid[4:], seq, j),
                                              submission_id=sid, call_seq=seq,
                                              input_index=first + j,
                                              processor=rnd.choice([None, "base", "core"]))))
                first += k
    aid = 0
    for i in range(90):
        aid += rnd.randrange(1, 3)
        rows.append(("admin_log", dict(
            id=aid, at=tm(rnd.randrange(20), rnd.choice([0, 5, rnd.randrange(86400)]),
                          rnd.choice([0, 5])),
            actor=rnd.choice(["os:root", "token:tok_x"]), actor_team=rnd.choice([None, "a"]),
            interface=rnd.choice(["cli", "http"]),
            action=rnd.choice(["team.add", "token.issue", "preset.set"]),
            object_type=rnd.choice(["team", "token", "preset"]),
            object_id=rnd.choice(["a", "B", "tok_1", "a/p"]), team=rnd.choice([None, "a", "B"]),
            before=rnd.choice([None, '{"name":"a"}', '{ "x" : 1 }']),
            after=rnd.choice([None, '{"name":"a","key_fingerprint":"sha256:0"}']),
            remote_addr=rnd.choice([None, "127.0.0.1"]))))
    for i in range(30):
        rows.append(("audit_reads", dict(
            id=i + 1, at=tm(rnd.randrange(20), rnd.randrange(86400), 0), actor="os:root",
            actor_team=None, interface="cli", query="audit x", remote_addr=None,
            rows=rnd.choice([None, 3]))))
    return rows


def sql_lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("'", "''") + "'"


def insert_script(rows):
    return "\n".join("INSERT INTO %s (%s) VALUES (%s);" % (
        t, ", ".join(r), ", ".join(sql_lit(v) for v in r.values())) for t, r in rows)


# ---- the test ------------------------------------------------------------------------------

class PgAuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if pg_bindir() is None:
            raise unittest.SkipTest("PostgreSQL's server is not installed")
        cls.tmp = tempfile.TemporaryDirectory(prefix="tg-pgaudit-")
        cls.key = os.path.join(cls.tmp.name, "key")
        with open(cls.key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(cls.key, 0o600)
        cls.pg = PgServer()
        cls.pg.start()
        cls.rows = fixture()
        cls.lite, cls.pgdb = cls.pair("reads")
        # The same on a database whose default collation is not bytewise, when the server
        # has ICU.
        cls.icu = None
        r = cls.pg.psql("CREATE DATABASE reads_icu TEMPLATE template0 LOCALE_PROVIDER icu "
                        "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'", dbname="postgres", check=False)
        if r.returncode == 0:
            cls.icu = cls.load_pg("reads_icu")

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        cls.tmp.cleanup()

    @classmethod
    def taskgate(cls, database, *args, check=False):
        env = dict(os.environ, TASKGATE_DATABASE=database, TASKGATE_KEY_FILE=cls.key)
        r = subprocess.run([BIN, "--config", "/dev/null"] + list(args), env=env,
                           capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("taskgate %s: %d %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    @classmethod
    def load_pg(cls, name):
        dsn = cls.pg.dsn_for(name)
        cls.taskgate(dsn, "init", check=True)
        cls.pg.psql("BEGIN;\n" + insert_script(cls.rows) + "\nCOMMIT;\n" +
                    "".join("SELECT setval(pg_get_serial_sequence('%s', 'id'), "
                            "(SELECT max(id) FROM %s));\n" % (t, t)
                            for t in ("teams", "admin_log", "audit_reads")), dbname=name)
        return dsn

    @classmethod
    def pair(cls, name):
        """A fresh SQLite file and PostgreSQL database, both holding the fixture."""
        path = os.path.join(cls.tmp.name, name + ".db")
        cls.taskgate(path, "init", check=True)
        db = sqlite3.connect(path)
        db.executescript("BEGIN;\n" + insert_script(cls.rows) + "\nCOMMIT;\n")
        db.close()
        cls.pg.psql("CREATE DATABASE %s" % name, dbname="postgres")
        return path, cls.load_pg(name)

    def audit(self, database, *args):
        r = self.taskgate(database, "audit", *args)
        return r.returncode, r.stdout, r.stderr

    def assert_alike(self, args, pg=None, lite=None):
        want = self.audit(lite or self.lite, *args)
        got = self.audit(pg or self.pgdb, *args)
        self.assertEqual(got, want, "audit %s" % " ".join(args))
        return want

    def some(self, sql):
        db = sqlite3.connect(self.lite)
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()

    def commands(self):
        sub = self.some("SELECT id FROM submissions WHERE state = 'accepted' AND id IN "
                        "(SELECT submission_id FROM runs) ORDER BY id LIMIT 1")
        run = self.some("SELECT run_id FROM runs ORDER BY run_id DESC LIMIT 1")
        lists = [
            ["submissions"], ["submissions", "--team", "a"], ["submissions", "--state", "unknown"],
            ["submissions", "--interface", "simplified", "--group", "tgrp_AB"],
            ["submissions", "--since", "2026-01-05", "--until", "2026-01-09T01:00:00.001Z"],
            ["unknown"], ["unknown", "--team", "B", "--until", "2026-01-12"],
            ["runs"], ["runs", "--team", "a"], ["runs", "--group", "tgrp_d-1"],
            ["runs", "--since", "2026-01-10"],
            ["admin"], ["admin", "--team", "a"], ["admin", "--object", "a/p"],
            ["admin", "--object-type", "token", "--action", "token.issue"],
            ["submission", sub], ["submission", "sub_nope"], ["run", run], ["run", "run_nope"],
            ["group", "tgrp_AB"], ["group", "tgrp_nope"],
        ]
        for cmd in lists:
            for fmt in ([], ["--json"], ["--csv"]):
                yield cmd + fmt
        yield ["submissions", "--json", "--limit", "5"]
        yield ["group", "tgrp_aa", "--json", "--limit", "3"]

    def test_lists_and_objects_answer_alike(self):
        answered = 0
        for args in self.commands():
            rc, out, _ = self.assert_alike(args)
            answered += rc == 0 and len(out) > 400
            if self.icu:
                self.assert_alike(args, pg=self.icu)
        self.assertGreater(answered, 40, "the fixture answers most reads with rows")

    def walk(self, database, args, limit):
        pages, cursor = [], None
        while True:
            rc, out, err = self.audit(database, *(args + ["--json", "--limit", str(limit)] +
                                                 (["--cursor", cursor] if cursor else [])))
            self.assertEqual(rc, 0, err)
            pages.append(out)
            cursor = json.loads(out).get("next_cursor")
            if not cursor:
                return pages

    def test_pages_and_cursors_walk_alike(self):
        for args in (["submissions"], ["unknown"], ["runs"], ["admin"], ["runs", "--team", "B"],
                     ["group", "tgrp_AB"]):
            want = self.walk(self.lite, args, 11)
            self.assertGreater(len(want), 2, args)
            self.assertEqual(self.walk(self.pgdb, args, 11), want, args)
            if self.icu:
                self.assertEqual(self.walk(self.icu, args, 11), want, args)

    def test_a_filter_no_text_can_equal_matches_nothing(self):
        """Bytes that are not UTF-8 (PostgreSQL refuses them as text): no rows, as SQLite."""
        rc, out, err = self.assert_alike(["admin", "--object", "x\udcff\udcc3y", "--csv"])
        self.assertEqual((rc, out.count(b"\n")), (0, 1), err)

    def prune_rows(self, database):
        """The admin log's prune rows and the records left, without the times of now."""
        rc, out, err = self.audit(database, "admin", "--action", "audit.prune", "--json")
        self.assertEqual(rc, 0, err)
        logged = [(r["actor"], r["object_id"], r["after"]) for r in json.loads(out)["data"]]
        left = [self.audit(database, k, "--csv") for k in ("submissions", "runs", "unknown")]
        return logged, left

    def test_prune_removes_and_logs_alike(self):
        lite, pg = self.pair("prune")
        for args in (["prune", "--before", "2026-01-10", "--dry-run"],
                     ["prune", "--before", "2026-01-10"], ["prune", "--before", "2026-01-10"]):
            rc, out, err = self.assert_alike(args, pg=pg, lite=lite)
            self.assertEqual(rc, 0, err)
        self.assertEqual(self.prune_rows(pg), self.prune_rows(lite))
        logged = self.prune_rows(pg)[0]
        self.assertEqual(len(logged), 2)
        self.assertGreater(logged[1][2]["submissions"], 0)  # newest first: the second did none
        self.assertEqual(logged[0][2]["submissions"], 0)
        # The guard was the prune's own: the records are append-only again.
        r = self.pg.psql("DELETE FROM runs", dbname="prune", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("deleted only by an audit prune", r.stderr)

    def test_concurrent_prunes_delete_each_record_once(self):
        _, pg = self.pair("prune_race")
        rc, out, err = self.audit(pg, "prune", "--before", "2026-01-15", "--dry-run")
        self.assertEqual(rc, 0, err)
        results = []

        def prune():
            results.append(self.audit(pg, "prune", "--before", "2026-01-15"))
        threads = [threading.Thread(target=prune) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r[0] for r in results], [0, 0, 0], [r[2] for r in results])
        rc, out, err = self.audit(pg, "admin", "--action", "audit.prune", "--json")
        counts = [r["after"] for r in json.loads(out)["data"]]
        self.assertEqual(len(counts), 3)
        for what in ("submissions", "upstream_calls", "runs", "audit_reads"):
            done = sorted(c[what] for c in counts)
            self.assertEqual(done[:2], [0, 0], (what, counts))
            self.assertGreater(done[2], 0, (what, counts))
        r = self.pg.psql("SELECT count(*) FROM submissions WHERE received_at < "
                         "'2026-01-15T00:00:00.000Z' AND state NOT IN ('pending', 'unknown')",
                         dbname="prune_race", args=("-At",))
        self.assertEqual(r.stdout.strip(), "0")

    def test_reads_are_logged_alike(self):
        lite, pg = self.pair("readlog")
        for args in (["submissions", "--team", "a", "--csv"], ["run", "run_nope"],
                     ["group", "tgrp_AB", "--limit", "2", "--json"]):
            self.assert_alike(args, pg=pg, lite=lite)
        q = "SELECT actor, actor_team, interface, query, remote_addr, rows FROM audit_reads " \
            "WHERE at > '2026-06' ORDER BY id"
        db = sqlite3.connect(lite)
        want = [tuple("" if v is None else str(v) for v in r) for r in db.execute(q)]
        db.close()
        got = [tuple(line.split("\x1f")) for line in self.pg.psql(
            q, dbname="readlog", args=("-At", "-F", "\x1f")).stdout.splitlines()]
        self.assertEqual(got, want)
        self.assertEqual(len(want), 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
