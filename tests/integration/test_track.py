#!/usr/bin/env python3
"""What came of each run, from the group event streams (docs/run-outcomes.md): runs
submitted through the gateway complete or fail upstream and within seconds audit_runs shows
each one's outcome with the simulator's error; every status change is recorded once, in
order; a kill -9 while following resumes from the event id stored (the simulator's request
log shows it) with no change missed or recorded twice; a group is followed again when runs
are added to it; a stream cut short is read again from its place; a group the upstream no
longer knows is given up; 500 groups are followed at once on the daemon's one tracker thread
while submissions keep their latency. Both backends (TG_TEST_DATABASE)."""

import json
import os
import re
import signal
import statistics
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase  # noqa: E402

KEY = "par-key-track"
FINAL = ("completed", "failed", "cancelled")


def wait_for(what, fn, timeout=15, step=0.1):
    """fn()'s first truthy value within timeout s; AssertionError naming what otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("%s: not within %s s (last: %r)" % (what, timeout, last))


def metric(text, name, **labels):
    """The value of one sample of the /metrics text, 0 when absent."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted(x for x in (m.group(2) or "").split(",") if x))
        if got == want:
            return float(m.group(3))
    return 0.0


class TrackCase(StackTestCase):
    def tracked(self, **conf):
        conf.setdefault("track_groups_max", 500)
        s = self.stack(keys=[KEY], conf=conf)
        s.add_team("a", KEY, preset={"processor": "base"})
        self.token, _ = s.issue_token("a")
        return s

    def submit(self, s, inputs, **fields):
        status, body, _ = s.json_req("POST", "/v1/runs", dict(fields, inputs=inputs),
                                     token=self.token)
        self.assertEqual(status, 200, body)
        return body

    def changes(self, s):
        """{run_id: [status, ...]} in the order recorded."""
        out = {}
        for r in s.db("SELECT run_id, status FROM run_status_changes ORDER BY id"):
            out.setdefault(r["run_id"], []).append(r["status"])
        return out

    def finals(self, s, ids):
        """{run_id: (status, error)} of audit_runs once every run of ids has a final
        status, else None."""
        rows = {r["run_id"]: (r["status"], r["error"])
                for r in s.db("SELECT run_id, status, error FROM audit_runs")}
        if all(rows.get(i, (None,))[0] in FINAL for i in ids):
            return {i: rows[i] for i in ids}
        return None

    def sim_events(self, s, gid):
        """(run_id, status) of every task_run.state event of the group, as the simulator
        streams them."""
        status, _, raw = s._request(s.sim_port, "GET", "/v1/tasks/groups/%s/events?timeout=0"
                                    % gid, None, {"x-api-key": KEY}, 10)
        self.assertEqual(status, 200)
        out = []
        for line in raw.decode().splitlines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev["type"] == "task_run.state":
                    out.append((ev["run"]["run_id"], ev["run"]["status"]))
        return out

    def event_reads(self, s, gid):
        """The query strings of the tracker's reads of gid's events stream, in order."""
        path = "/v1/tasks/groups/%s/events" % gid
        return [r["query"] for r in s.sim_requests()
                if r["method"] == "GET" and r["path"] == path]


class RunOutcomesTest(TrackCase):
    def test_runs_complete_upstream_and_audit_runs_shows_each_outcome(self):
        s = self.tracked()
        a = self.submit(s, ["a1", "a2"])
        b = self.submit(s, ["fail: no sources found", "b2"])
        c = self.submit(s, ["c1"], metadata={"sim_outcome": "failed",
                                             "sim_error": "Quota exceeded"})
        d = self.submit(s, ["a3"], taskgroup_id=a["taskgroup_id"])
        ids = a["run_ids"] + b["run_ids"] + c["run_ids"] + d["run_ids"]
        t0 = time.monotonic()
        got = wait_for("every run's outcome in audit_runs", lambda: self.finals(s, ids))
        took = time.monotonic() - t0
        sys.stderr.write("\n[track] %d runs in 3 groups: every outcome recorded %.2f s after "
                         "the last submission\n" % (len(ids), took))
        want = {i: ("completed", None) for i in ids}
        want[b["run_ids"][0]] = ("failed", "no sources found")
        want[c["run_ids"][0]] = ("failed", "Quota exceeded")
        self.assertEqual(got, want)
        rows = s.db("SELECT run_id, submitted_at, completed_at FROM audit_runs")
        for r in rows:
            self.assertGreaterEqual(r["completed_at"], r["submitted_at"][:19], dict(r))
        # Every change once, in order, as the upstream's stream told it.
        changes = self.changes(s)
        for i in ids:
            self.assertEqual(changes[i], ["queued", "running", want[i][0]], i)
        told = set()
        for gid in {a["taskgroup_id"], b["taskgroup_id"], c["taskgroup_id"]}:
            told |= set(self.sim_events(s, gid))
        self.assertEqual({(i, st) for i, sts in changes.items() for st in sts}, told)
        # The view of every change names the run's submission and team.
        view = s.db("SELECT run_id, submission_id, team, source FROM audit_run_status_changes")
        self.assertEqual(len(view), 3 * len(ids))
        subs = {i: x["submission_id"] for x in (a, b, c, d) for i in x["run_ids"]}
        for r in view:
            self.assertEqual((r["submission_id"], r["team"], r["source"]),
                             (subs[r["run_id"]], "a", "events"))
        # No run active: no group followed any more, each one's place kept.
        wait_for("the groups settled", lambda: all(
            r["state"] == "idle" and r["owner"] is None
            for r in s.db("SELECT state, owner FROM track_groups")))
        self.assertEqual(s.db_value("SELECT count(*) FROM track_groups"), 3)
        self.assertEqual(s.db_value("SELECT count(*) FROM track_groups WHERE last_event_id"
                                    " IS NULL"), 0)
        text = s.http("GET", "/metrics")[2].decode()
        self.assertEqual(metric(text, "taskgate_run_status_changes_total", team="a",
                                status="completed"), 4)
        self.assertEqual(metric(text, "taskgate_run_status_changes_total", team="a",
                                status="failed"), 2)
        self.assertEqual(metric(text, "taskgate_run_status_changes_total", team="a",
                                status="queued"), 6)
        self.assertEqual(metric(text, "taskgate_track_groups_followed"), 0)
        self.assertGreaterEqual(metric(text, "taskgate_track_lag_seconds_count"), 18)
        self.assertGreater(metric(text, "taskgate_track_events_total"), 18)

    def test_the_audit_answers_what_came_of_each_run(self):
        """/v1/audit/runs and `taskgate audit runs` show each run's status, error and end,
        and status= / --status keep the runs whose current status it is."""
        s = self.tracked()
        ok = self.submit(s, ["fine", "also fine"])
        bad = self.submit(s, ["fail: no sources found"])
        ids = ok["run_ids"] + bad["run_ids"]
        wait_for("every outcome", lambda: self.finals(s, ids))
        auditor, _ = s.issue_token("a", role="audit")
        status, body, _ = s.json_req("GET", "/v1/audit/runs?status=failed", token=auditor)
        self.assertEqual(status, 200, body)
        self.assertEqual([(r["run_id"], r["status"], r["error"]) for r in body["data"]],
                         [(bad["run_ids"][0], "failed", "no sources found")])
        self.assertIsNotNone(body["data"][0]["completed_at"])
        status, body, _ = s.json_req("GET", "/v1/audit/runs?status=completed&team=a",
                                     token=auditor)
        self.assertEqual(sorted(r["run_id"] for r in body["data"]), sorted(ok["run_ids"]))
        status, body, _ = s.json_req("GET", "/v1/audit/runs/" + bad["run_ids"][0],
                                     token=self.token)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["run"]["status"], "failed")
        self.assertEqual(s.json_req("GET", "/v1/audit/runs?status=done", token=auditor)[0], 422)
        out = s.cli_ok("audit", "runs", "--status", "failed", "--json").stdout
        self.assertEqual([r["run_id"] for r in json.loads(out)["data"]], bad["run_ids"])
        out = s.cli_ok("audit", "runs", "--status", "completed", "--csv").stdout
        header = out.splitlines()[0].split(",")
        self.assertEqual(header[-3:], ["status", "error", "completed_at"])
        self.assertEqual(len(out.splitlines()), 3)
        r = s.cli("audit", "runs", "--status", "done")
        self.assertEqual(r.returncode, 2)
        self.assertIn("the status is one of queued", r.stderr)

    def test_a_group_is_followed_again_when_runs_are_added(self):
        s = self.tracked()
        s._sim("POST", "/_sim/runs", {"run_ms": -1})
        a = self.submit(s, ["one"])
        gid = a["taskgroup_id"]
        wait_for("the run queued and running", lambda: self.changes(s).get(a["run_ids"][0])
                 == ["queued", "running"])
        s._sim("POST", "/_sim/runs/complete", {"taskgroup_id": gid})
        wait_for("the group idle", lambda: s.db_value(
            "SELECT state FROM track_groups WHERE taskgroup_id = ?", (gid,)) == "idle")
        place = s.db_value("SELECT last_event_id FROM track_groups")
        reads = len(self.event_reads(s, gid))
        time.sleep(1.5)  # idle: nobody reads its stream
        self.assertEqual(len(self.event_reads(s, gid)), reads)
        b = self.submit(s, ["two", "three"], taskgroup_id=gid)
        wait_for("the new runs followed", lambda: all(
            self.changes(s).get(i) == ["queued", "running"] for i in b["run_ids"]))
        self.assertEqual(self.event_reads(s, gid)[reads],
                         "last_event_id=" + urllib.parse.quote(place, safe=""))
        s._sim("POST", "/_sim/runs/complete", {"taskgroup_id": gid})
        got = wait_for("their outcome", lambda: self.finals(s, a["run_ids"] + b["run_ids"]))
        self.assertEqual(set(got.values()), {("completed", None)})
        self.assertEqual(self.changes(s)[a["run_ids"][0]], ["queued", "running", "completed"])

    def test_a_stream_cut_short_is_read_again_from_its_place(self):
        s = self.tracked()
        s._sim("POST", "/_sim/runs", {"run_ms": -1})
        # The first read of the stream breaks after one event, the second ends after one
        # without a proper end: each time the tracker resumes after what it recorded.
        s.sim_fault(kind="reset", match="stream_events", apply=True, times=2)
        a = self.submit(s, ["one", "two"])
        gid = a["taskgroup_id"]
        wait_for("both runs running", lambda: all(
            self.changes(s).get(i) == ["queued", "running"] for i in a["run_ids"]),
            timeout=20)
        s._sim("POST", "/_sim/runs/complete", {"taskgroup_id": gid})
        wait_for("their outcome", lambda: self.finals(s, a["run_ids"]), timeout=20)
        for i in a["run_ids"]:
            self.assertEqual(self.changes(s)[i], ["queued", "running", "completed"])
        reads = self.event_reads(s, gid)
        self.assertGreaterEqual(len(reads), 3, reads)
        self.assertEqual(reads[0], "")
        self.assertTrue(all(q.startswith("last_event_id=") for q in reads[1:]), reads)
        text = s.http("GET", "/metrics")[2].decode()
        self.assertGreaterEqual(metric(text, "taskgate_track_reconnects_total"), 2)

    def test_a_group_the_upstream_does_not_know_is_given_up(self):
        s = self.tracked()
        s._sim("POST", "/_sim/runs", {"run_ms": -1})
        s.sim_fault(kind="status", status=404, match="stream_events", times=-1)
        a = self.submit(s, ["one"])
        wait_for("the group given up", lambda: s.db_value(
            "SELECT state FROM track_groups WHERE taskgroup_id = ?", (a["taskgroup_id"],))
            == "gone")
        self.assertIn("404", s.db_value("SELECT detail FROM track_groups"))
        self.assertIsNone(s.db_value("SELECT owner FROM track_groups"))
        self.assertIn("is no longer followed", s.daemon_log())


class KillWhileFollowingTest(TrackCase):
    def test_kill_9_while_following_resumes_from_the_stored_event_id(self):
        s = self.tracked()
        s._sim("POST", "/_sim/runs", {"run_ms": -1, "interval_ms": 150})
        a = self.submit(s, ["r%d" % i for i in range(6)])
        gid, ids = a["taskgroup_id"], a["run_ids"]
        # The events come 0.15 s apart: kill the daemon while it is reading them.
        wait_for("some changes recorded", lambda: sum(map(len, self.changes(s).values())) >= 4)
        s.daemon_signal(signal.SIGKILL)
        self.assertEqual(s.daemon_wait(10), -signal.SIGKILL)
        before = self.changes(s)
        place = s.db_value("SELECT last_event_id FROM track_groups WHERE taskgroup_id = ?",
                           (gid,))
        self.assertIsNotNone(place)
        reads = len(self.event_reads(s, gid))
        # While nobody follows, the runs end (some fail); then the daemon starts again.
        s._sim("POST", "/_sim/runs/complete", {"run_ids": ids[:3]})
        s._sim("POST", "/_sim/runs/complete", {"run_ids": ids[3:], "status": "failed"})
        s.restart_daemon()
        got = wait_for("every outcome after the restart", lambda: self.finals(s, ids),
                       timeout=30)
        self.assertEqual([got[i][0] for i in ids], ["completed"] * 3 + ["failed"] * 3)
        # It resumed where the records stopped: the simulator's log shows the event id.
        self.assertEqual(self.event_reads(s, gid)[reads],
                         "last_event_id=" + urllib.parse.quote(place, safe=""))
        after = self.changes(s)
        for i in ids:
            final = "completed" if i in ids[:3] else "failed"
            self.assertEqual(after[i], ["queued", "running", final], i)
            self.assertEqual(after[i][:len(before.get(i, []))], before.get(i, []), i)
        self.assertEqual(sum(map(len, after.values())),
                         len(self.sim_events(s, gid)))


class FollowManyTest(TrackCase):
    GROUPS = 500  # track_groups_max: one of them takes the latency probes' runs

    def daemon_threads(self, s):
        with open("/proc/%d/status" % s.daemon_proc.pid) as f:
            return int(re.search(r"^Threads:\s+(\d+)$", f.read(), re.M).group(1))

    def latencies(self, s, gid, n):
        out = []
        for i in range(n):
            t0 = time.monotonic()
            self.submit(s, ["probe %d" % i], taskgroup_id=gid)
            out.append(time.monotonic() - t0)
        return out

    def count(self, s, status):
        return s.db_value("SELECT count(*) FROM run_status WHERE status = ?", (status,))

    def test_500_groups_followed_at_once_on_one_thread(self):
        s = self.tracked(track_groups_max=self.GROUPS)
        s._sim("POST", "/_sim/runs", {"run_ms": -1})
        threads_before = self.daemon_threads(s)
        probe = self.submit(s, ["probe"])["taskgroup_id"]
        base = self.latencies(s, probe, 30)
        for i in range(self.GROUPS - 1):
            self.submit(s, ["g%d" % i])
        runs = self.GROUPS + 30
        t0 = time.monotonic()
        wait_for("every run running, every stream open", lambda: self.count(s, "running") ==
                 runs, timeout=60, step=0.5)
        followed_in = time.monotonic() - t0
        text = s.http("GET", "/metrics")[2].decode()
        self.assertEqual(metric(text, "taskgate_track_groups_followed"), self.GROUPS)
        self.assertEqual(metric(text, "taskgate_track_groups_waiting"), 0)
        self.assertEqual(self.daemon_threads(s), threads_before)
        opened = {r["path"] for r in s.sim_requests()
                  if r["method"] == "GET" and r["path"].endswith("/events")}
        self.assertEqual(len(opened), self.GROUPS)
        during = self.latencies(s, probe, 30)
        runs += 30
        t1 = time.monotonic()
        s._sim("POST", "/_sim/runs/complete", {})
        wait_for("every run completed", lambda: self.count(s, "completed") == runs,
                 timeout=60, step=0.5)
        recorded_in = time.monotonic() - t1
        wait_for("every group settled", lambda: s.db_value(
            "SELECT count(*) FROM track_groups WHERE state = 'idle'") == self.GROUPS,
            timeout=60, step=0.5)
        p50 = statistics.median(base) * 1000, statistics.median(during) * 1000
        sys.stderr.write("\n[track] %d groups followed at once (all running %.1f s after the "
                         "last was created) on %d daemon threads, as before; submission p50 "
                         "%.1f ms before, %.1f ms while following (max %.1f ms); %d "
                         "completions recorded in %.1f s\n"
                         % (self.GROUPS, followed_in, threads_before, p50[0], p50[1],
                            max(during) * 1000, runs, recorded_in))
        self.assertLess(p50[1], max(5 * p50[0], 50.0))
        changes = self.changes(s)
        self.assertEqual(len(changes), runs)
        self.assertTrue(all(v[-1] == "completed" and v[0] == "queued" and len(set(v)) == len(v)
                            for v in changes.values()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
