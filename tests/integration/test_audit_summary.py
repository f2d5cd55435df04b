#!/usr/bin/env python3
"""The audit summary (GET /v1/audit/summary, `taskgate audit summary`, the view
audit_summary) and the group page's pages, through real nginx, the daemon and the simulator,
on either backend (TG_TEST_DATABASE). The summary is exact against the records it counts
(audit_submissions and audit_runs) after every kind of change: submissions accepted,
rejected and failed, runs of several processors in one submission, a daemon killed with a
submission pending (settled as unknown at its restart), a reconciliation, a prune. A submit
token sees its own team's rows only. The durations of completed runs by processor are
those of the records (the simulator's --run-ms, set per submission). A task group's page
walks its runs with limit and cursor over HTTP and with the CLI, in the order of the
view."""

import csv
import io
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BACKEND, StackTestCase, pg_server  # noqa: E402

KEYS = ["par-sum-a", "par-sum-b"]
COLUMNS = ["team", "day", "processor", "state", "submissions", "runs"]
# What the summary must say: the records, counted by the view's contract.
TRUTH = ("SELECT s.team AS team, substr(s.received_at, 1, 10) AS day, r.processor AS processor,"
         " s.state AS state, count(DISTINCT s.submission_id) AS submissions,"
         " count(r.run_id) AS runs"
         " FROM audit_submissions s LEFT JOIN audit_runs r ON r.submission_id = s.submission_id"
         " GROUP BY s.team, substr(s.received_at, 1, 10), r.processor, s.state")


def key(row):
    return tuple((v is None, v) for v in row)


def utc_now(delta=timedelta()):
    t = datetime.now(timezone.utc) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


class Base(StackTestCase):
    def start(self, **conf):
        c = {"chunk_size": 2, "reconcile_on_start": 0}
        c.update(conf)
        s = self.stack(keys=KEYS, upstream_timeout_ms=1500, conf=c)
        s.add_team("a", KEYS[0], preset={"processor": "base"})
        s.add_team("b", KEYS[1], preset={"processor": "core"})
        self.tok = {t: s.issue_token(t)[0] for t in ("a", "b")}
        self.auditor = s.issue_token("a", role="audit")[0]
        self.s = s
        return s

    def post(self, team, body, expect=None):
        status, answer, _ = self.s.json_req("POST", "/v1/runs", body, token=self.tok[team],
                                            timeout=60)
        if expect is not None:
            self.assertEqual(status, expect, answer)
        return answer

    def sdk_runs(self, team, inputs):
        """Runs through the upstream's own paths, each with its own processor."""
        h = {"x-api-key": self.tok[team], "Content-Type": "application/json"}
        status, _, data = self.s.http("POST", "/v1/tasks/groups", "{}", h)
        self.assertEqual(status, 200, data)
        group = json.loads(data)["taskgroup_id"]
        status, _, data = self.s.http("POST", "/v1/tasks/groups/%s/runs" % group,
                                      json.dumps({"inputs": inputs}), h)
        self.assertEqual(status, 200, data)
        return group

    def summary(self, query="", token=None, part="data"):
        """The summary's counts (part "data") or its durations ("durations")."""
        status, data, _ = self.get("/v1/audit/summary" + query, token or self.auditor)
        self.assertEqual(status, 200, data)
        body = json.loads(data)
        self.assertEqual(set(body), {"data", "durations"})
        return body[part]

    def get(self, path, token, headers=None):
        h = {"Authorization": "Bearer " + token}
        h.update(headers or {})
        status, rh, data = self.s.http("GET", path, None, h)
        return status, data, rh

    def truth(self, where=""):
        return sorted((tuple(r) for r in self.s.db(TRUTH.replace(" GROUP BY", where +
                                                                 " GROUP BY"))), key=key)

    def assertExact(self, when):
        """The summary over HTTP and in the view equals the records' counts."""
        rows = self.summary()
        got = sorted((tuple(r[c] for c in COLUMNS) for r in rows), key=key)
        self.assertEqual(got, self.truth(), when)
        view = sorted((tuple(r) for r in self.s.db(
            "SELECT team, day, processor, state, submissions, runs FROM audit_summary")),
            key=key)
        self.assertEqual(view, got, when)
        # The answer's order: day, team, processor (none first), state.
        order = [(r["day"], r["team"], r["processor"] or "", r["state"]) for r in rows]
        self.assertEqual(order, sorted(order), when)
        return rows


class SummaryTest(Base):
    def test_summary_matches_the_records_everywhere(self):
        s = self.start()
        self.post("a", {"inputs": ["x", "y", "z"]}, 200)
        self.post("a", {"inputs": ["one"], "processor": "core"}, 200)
        self.post("a", {"inputs": []}, 422)
        s.sim_fault(match="add_runs", kind="status", status=500, times=1)
        self.post("a", {"inputs": ["refused"]}, 502)
        self.sdk_runs("a", [{"input": "p", "processor": "lite"},
                            {"input": "q", "processor": "ultra"},
                            {"input": "r", "processor": "lite"}])
        self.post("b", {"inputs": ["b1", "b2", "b3"]}, 200)
        rows = self.assertExact("submissions of each kind")
        states = {(r["team"], r["processor"], r["state"]): (r["submissions"], r["runs"])
                  for r in rows}
        self.assertEqual(states[("a", "base", "accepted")], (1, 3))
        self.assertEqual(states[("a", "lite", "accepted")], (1, 2))  # one submission, two
        self.assertEqual(states[("a", "ultra", "accepted")], (1, 1))  # processors
        self.assertEqual(states[("a", None, "rejected")], (1, 0))
        self.assertEqual(states[("a", None, "failed")], (1, 0))
        self.assertEqual(states[("b", "core", "accepted")], (1, 3))
        self.assertTrue(all(isinstance(r["runs"], int) and isinstance(r["submissions"], int)
                            for r in rows))

        # CSV: the same rows, under a header of the same columns.
        status, data, rh = self.get("/v1/audit/summary?format=csv", self.auditor)
        self.assertEqual((status, rh.get("content-type")), (200, "text/csv; charset=utf-8"))
        table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        self.assertEqual(table[0], COLUMNS)
        self.assertEqual(table[1:], [["" if r[c] is None else str(r[c]) for c in COLUMNS]
                                     for r in rows])
        # The CLI: the same JSON, the same CSV, and a table for people.
        r = s.cli("audit", "summary", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["data"], rows)
        r = s.cli("audit", "summary", "--csv")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data.decode("utf-8").replace("\r\n", "\n"))  # text mode
        r = s.cli("audit", "summary", "--team", "b", "--part", "counts")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["day", "team", "processor", "state",
                                            "submissions", "runs"])
        self.assertEqual([ln.split()[1:] for ln in lines[1:]], [["b", "core", "accepted",
                                                                 "1", "3"]])
        # Both parts: each under its title (no run has completed here: no durations).
        r = s.cli("audit", "summary", "--team", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "data: 1")
        self.assertEqual(lines[1].split(), ["day", "team", "processor", "state",
                                            "submissions", "runs"])
        self.assertEqual(lines[2].split()[1:], ["b", "core", "accepted", "1", "3"])
        self.assertEqual(lines[3:], ["durations: 0"])
        # Every read is logged, as the other audit reads.
        self.assertGreaterEqual(s.db_value("SELECT count(*) FROM audit_reads WHERE query"
                                           " LIKE '%summary%'"), 4)

    def test_a_submit_token_sees_its_own_team(self):
        s = self.start()
        self.post("a", {"inputs": ["x"]}, 200)
        self.post("b", {"inputs": ["y", "z"]}, 200)
        own = self.summary(token=self.tok["a"])
        self.assertEqual({r["team"] for r in own}, {"a"})
        self.assertEqual(own, [r for r in self.summary() if r["team"] == "a"])
        self.assertEqual(self.summary("?team=b", token=self.tok["a"]), [])
        self.assertEqual([(r["team"], r["runs"]) for r in self.summary("?team=b")], [("b", 2)])
        # A team that does not exist: no rows, not an error; a bad name: 422.
        self.assertEqual(self.summary("?team=nobody"), [])
        status, data, _ = self.get("/v1/audit/summary?team=no%20such", self.auditor)
        self.assertEqual(status, 422, data)
        self.assertEqual(json.loads(data)["detail"][0]["loc"], ["query", "team"])
        for bad in ("?limit=1", "?cursor=x", "?state=accepted"):
            status, data, _ = self.get("/v1/audit/summary" + bad, self.auditor)
            self.assertEqual(status, 422, (bad, data))
        r = s.cli("audit", "summary", "--limit", "1")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_since_and_until_pick_whole_days(self):
        self.start()
        self.post("a", {"inputs": ["x"]}, 200)
        today = utc_now()[:10]
        tomorrow = utc_now(timedelta(days=1))[:10]
        self.assertEqual([r["day"] for r in self.summary("?since=" + today)], [today])
        # A time within the day: the whole day is in.
        self.assertEqual([r["day"] for r in self.summary("?since=%sT23:59:59Z" % today)],
                         [today])
        self.assertEqual(self.summary("?since=" + tomorrow), [])
        # until excludes the day it begins; a time past the day's start includes it.
        self.assertEqual(self.summary("?until=" + today), [])
        self.assertEqual([r["day"] for r in self.summary("?until=%sT00:00:00.001Z" % today)],
                         [today])
        self.assertEqual([r["day"] for r in self.summary("?until=" + tomorrow)], [today])

    def test_exact_through_a_kill_a_reconciliation_and_a_prune(self):
        s = self.start()
        self.post("a", {"inputs": ["x", "y", "z"]}, 200)
        self.post("b", {"inputs": ["w"]}, 200)
        # The third chunk hangs upstream: pending with two calls' runs when the daemon dies.
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=20000, skip=2)
        answers = []
        t = threading.Thread(target=lambda: answers.append(self.post(
            "a", {"inputs": ["p", "q", "r", "s", "t", "u"]})), daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if s.db_value("SELECT count(*) FROM runs r JOIN submissions u ON u.id ="
                          " r.submission_id WHERE u.state = 'pending'") == 4:
                break
            time.sleep(0.05)
        self.assertExact("pending with runs")
        s.daemon_signal(signal.SIGKILL)
        s.daemon_wait()
        s.sim_clear_faults()
        s.restart_daemon()
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state ="
                                    " 'unknown'"), 1)
        rows = self.assertExact("settled as unknown at the restart")
        self.assertIn(("a", "base", "unknown", 1, 4),
                      [tuple(r[c] for c in COLUMNS if c != "day") for r in rows])
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state ="
                                    " 'unknown'"), 0)
        rows = self.assertExact("reconciled")
        self.assertNotIn("unknown", {r["state"] for r in rows})
        # A prune of everything settled so far (now: a cutoff never in the future).
        time.sleep(0.01)
        r = s.cli("audit", "prune", "--before", utc_now())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions"), 0)
        self.assertEqual(self.summary(), [])
        # Every count taken away (PostgreSQL's may be spread over shards that sum to 0).
        self.assertEqual(tuple(s.db("SELECT coalesce(sum(submissions), 0) AS subs,"
                                    " coalesce(sum(runs), 0) AS runs FROM summary_counts")[0]),
                         (0, 0))
        # Counting goes on after it.
        self.post("b", {"inputs": ["again"]}, 200)
        self.assertEqual([(r["team"], r["submissions"], r["runs"])
                          for r in self.assertExact("after the prune")], [("b", 1, 1)])


def ms_of(t):
    """An RFC 3339 UTC millisecond time as stored, in ms since the epoch."""
    d = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(round(d.timestamp() * 1000))


DURATION_COLUMNS = ["team", "processor", "runs", "mean_ms", "p50_ms", "p90_ms", "max_ms"]


class DurationTest(Base):
    """How long completed runs took, by processor: the simulator completes each run
    --run-ms (here set per submission) after it was added, the tracker records it, and the
    summary's durations say how many, the mean, p50, p90 and the longest of each team's
    processor, over HTTP and the CLI, in JSON, CSV and a table."""

    def run_ms(self, ms):
        self.s._sim("POST", "/_sim/runs", {"run_ms": ms})

    def durations_of(self, where=""):
        """{(team, processor): sorted durations} of the completed runs, from the records:
        each run's completion less the start of the call that created it."""
        out = {}
        for r in self.s.db(
                "SELECT r.team, r.processor, r.completed_at, c.started_at FROM audit_runs r"
                " JOIN audit_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq"
                " WHERE r.status = 'completed'" + where):
            out.setdefault((r["team"], r["processor"]), []).append(
                max(0, ms_of(r["completed_at"]) - ms_of(r["started_at"])))
        return {k: sorted(v) for k, v in out.items()}

    def wait_completed(self, n):
        deadline = time.monotonic() + 30
        done = 0
        while time.monotonic() < deadline:
            done = self.s.db_value("SELECT count(*) FROM audit_runs WHERE status = 'completed'")
            if done == n:
                return
            time.sleep(0.1)
        self.fail("%d of %d runs completed" % (done, n))

    def assertDurations(self, rows, truth):
        got = {(r["team"], r["processor"]): r for r in rows}
        self.assertEqual(set(got), set(truth))
        for k, ds in truth.items():
            r = got[k]
            self.assertEqual(r["runs"], len(ds), k)
            self.assertEqual(r["mean_ms"], int(sum(ds) / len(ds) + 0.5), k)
            self.assertEqual(r["max_ms"], ds[-1], k)
            for name, p in (("p50_ms", 50), ("p90_ms", 90)):
                true = ds[max(1, -(-len(ds) * p // 100)) - 1]
                # Told as the longest duration of its bucket: a duration some run took, not
                # less than the true one and within a tenth of it.
                self.assertIn(r[name], ds, (k, name))
                self.assertGreaterEqual(r[name], true, (k, name))
                self.assertLessEqual(r[name], max(true * 1.1, true + 1), (k, name))
        order = [(r["team"], r["processor"] or "") for r in rows]
        self.assertEqual(order, sorted(order))

    def test_durations_by_processor(self):
        s = self.start(track_groups_max=500, chunk_size=100)
        self.run_ms(300)
        self.post("a", {"inputs": ["a%d" % i for i in range(5)]}, 200)
        self.run_ms(1200)
        self.post("a", {"inputs": ["c%d" % i for i in range(3)], "processor": "core"}, 200)
        self.run_ms(700)
        self.post("b", {"inputs": ["b1", "b2"]}, 200)
        self.wait_completed(10)
        self.assertExact("runs followed to their end")  # the counts, untouched by statuses
        truth = self.durations_of()
        self.assertEqual({k: len(v) for k, v in truth.items()},
                         {("a", "base"): 5, ("a", "core"): 3, ("b", "core"): 2})
        # The simulator's durations, with the little the call took on the way (its clock
        # and the gateway's may round the same instant to milliseconds 1 apart).
        for k, want in ((("a", "base"), 300), (("a", "core"), 1200), (("b", "core"), 700)):
            self.assertTrue(all(want - 2 <= d < want + 500 for d in truth[k]), (k, truth[k]))
        rows = self.summary(part="durations")
        self.assertDurations(rows, truth)
        self.assertTrue(all(isinstance(r[c], int) for r in rows for c in DURATION_COLUMNS[2:]))
        self.assertEqual(list(rows[0]), DURATION_COLUMNS)

        # A submit token sees its own team's; the window is on the submission's day.
        own = self.summary(token=self.tok["b"], part="durations")
        self.assertEqual([(r["team"], r["processor"], r["runs"]) for r in own],
                         [("b", "core", 2)])
        tomorrow = utc_now(timedelta(days=1))[:10]
        self.assertEqual(self.summary("?since=" + tomorrow, part="durations"), [])
        self.assertEqual(self.summary("?team=a", part="durations"),
                         [r for r in rows if r["team"] == "a"])

        # part=durations: CSV of the durations, and JSON of them alone; part=counts, the
        # counts alone.
        status, data, _ = self.get("/v1/audit/summary?format=csv&part=durations", self.auditor)
        self.assertEqual(status, 200, data)
        table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        self.assertEqual(table[0], DURATION_COLUMNS)
        self.assertEqual(table[1:], [[str(r[c]) for c in DURATION_COLUMNS] for r in rows])
        status, data, _ = self.get("/v1/audit/summary?part=durations", self.auditor)
        self.assertEqual(json.loads(data), {"durations": rows})
        status, data, _ = self.get("/v1/audit/summary?part=counts", self.auditor)
        self.assertEqual(set(json.loads(data)), {"data"})
        status, data, _ = self.get("/v1/audit/summary?part=runs", self.auditor)
        self.assertEqual(status, 422, data)
        # The CLI: the same JSON and CSV, and the table's durations part.
        r = s.cli("audit", "summary", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["durations"], rows)
        r = s.cli("audit", "summary", "--csv", "--part", "durations")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data_csv(rows))
        r = s.cli("audit", "summary")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        at = lines.index("durations: 3")
        self.assertEqual(lines[at + 1].split(), DURATION_COLUMNS)
        self.assertEqual([ln.split() for ln in lines[at + 2:]],
                         [[str(row[c]) for c in DURATION_COLUMNS] for row in rows])

        # The counts are the store's own, kept with the records: a prune takes them away.
        self.assertEqual(s.db_value("SELECT count(*) FROM run_status"
                                    " WHERE duration_ms IS NOT NULL"), 10)
        time.sleep(0.01)
        r = s.cli("audit", "prune", "--before", utc_now())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.summary(part="durations"), [])
        self.assertEqual(self.summary(), [])
        self.assertEqual(s.db_value("SELECT count(*) FROM run_status"), 0)
        self.assertEqual(tuple(s.db("SELECT coalesce(sum(runs), 0) AS runs,"
                                    " coalesce(sum(total_ms), 0) AS total"
                                    " FROM duration_counts")[0]), (0, 0))


def data_csv(rows):
    """The durations' CSV as the CLI prints it (text mode: LF line ends)."""
    return "".join(",".join(str(v) for v in line) + "\n"
                   for line in [DURATION_COLUMNS] + [[r[c] for c in DURATION_COLUMNS]
                                                     for r in rows])


class CompactTest(Base):
    def write(self, sql):
        """sql run on the store as its owner would, by hand."""
        if BACKEND == "postgresql":
            pg_server().psql(sql, dbname=self.s.pg_dbname)
            return
        conn = sqlite3.connect(self.s.db_path, timeout=10, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()

    def test_housekeeping_folds_past_days(self):
        """A past day's counts spread over sessions' shards (as PostgreSQL leaves them) end in
        one row each, and rows that hold nothing go; the summary reads the same."""
        s = self.start(housekeeping_interval_s=1)
        self.post("a", {"inputs": ["x"]}, 200)
        team = s.db_value("SELECT id FROM teams WHERE name = 'a'")
        self.write("INSERT INTO summary_counts (team_id, day, state, processor, shard,"
                   " submissions, runs) VALUES (%d, '2026-01-02', 'accepted', 'core', 7, 2, 5),"
                   " (%d, '2026-01-02', 'accepted', 'core', 9, 1, 4),"
                   " (%d, '2026-01-02', 'pending', '', 3, 0, 0)" % (team, team, team))
        before = self.summary()
        self.assertIn(("2026-01-02", "core", 3, 9),
                      [(r["day"], r["processor"], r["submissions"], r["runs"]) for r in before])
        deadline = time.monotonic() + 15
        rows = None
        while time.monotonic() < deadline:
            rows = [tuple(r) for r in s.db("SELECT state, processor, shard, submissions, runs"
                                           " FROM summary_counts WHERE day = '2026-01-02'")]
            if rows == [("accepted", "core", 0, 3, 9)]:
                break
            time.sleep(0.2)
        self.assertEqual(rows, [("accepted", "core", 0, 3, 9)])
        self.assertEqual(self.summary(), before)


class GroupPageTest(Base):
    def test_a_groups_runs_page_by_page(self):
        s = self.start()
        first = self.post("a", {"inputs": ["g%d" % i for i in range(7)]}, 200)
        group = first["taskgroup_id"]
        for n in (5, 1, 4):
            self.post("a", {"taskgroup_id": group, "inputs": ["h%d" % i for i in range(n)]}, 200)
        want = [dict(r) for r in s.db(
            "SELECT * FROM audit_runs WHERE taskgroup_id = ?"
            " ORDER BY submitted_at DESC, submission_id DESC, input_index", (group,))]
        self.assertEqual(len(want), 17)
        subs = s.db_value("SELECT count(*) FROM audit_submissions WHERE taskgroup_id = ?",
                          (group,))
        # HTTP: the first page carries the group's submissions, every page at most `limit`
        # runs and the cursor of the next one.
        rows, cursor, pages = [], None, 0
        while True:
            path = "/v1/audit/groups/%s?limit=4" % group
            if cursor:
                path += "&cursor=" + cursor
            status, data, rh = self.get(path, self.tok["a"])
            self.assertEqual(status, 200, data)
            page = json.loads(data)
            self.assertLessEqual(len(page["runs"]), 4)
            if pages == 0:
                self.assertEqual(len(page["submissions"]), subs)
                self.assertFalse(page["submissions_truncated"])
            else:
                self.assertNotIn("submissions", page)
            self.assertEqual(rh.get("x-next-cursor"), page["next_cursor"])
            rows += page["runs"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(rows, want)
        self.assertEqual(pages, 5)
        # The CLI reads every page itself, or one page and prints the next cursor.
        r = s.cli("audit", "group", group, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["runs"], want)
        r = s.cli("audit", "group", group, "--limit", "6", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        page = json.loads(r.stdout)
        self.assertEqual(page["runs"], want[:6])
        r = s.cli("audit", "group", group, "--limit", "6", "--cursor", page["next_cursor"],
                  "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["runs"], want[6:12])


if __name__ == "__main__":
    unittest.main(verbosity=2)
