#!/usr/bin/env python3
"""Reconciliation and safe retries (docs/guarantees.md): an upstream that times out after
accepting leaves the submission unknown, and `taskgate reconcile` makes it accepted with the
very run ids the upstream created; nothing created makes it failed; the start-up pass does
the same; the gateway retries by itself only when the upstream cannot have acted."""

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase, free_port  # noqa: E402

KEY = "par-key-recon"


def adds(reqs):
    return [r for r in reqs if r["method"] == "POST" and r["path"].endswith("/runs")]


class Base(StackTestCase):
    def start(self, **kw):
        kw.setdefault("keys", [KEY])
        kw.setdefault("upstream_timeout_ms", 1500)
        conf = {"chunk_size": 2, "reconcile_on_start": 0}
        conf.update(kw.pop("conf", {}))
        self.s = self.stack(conf=conf, **kw)
        self.s.add_team("r", KEY, preset={"processor": "core"})
        self.token, _ = self.s.issue_token("r")
        return self.s

    def post(self, body, headers=None):
        h = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json",
             "Accept": "application/json"}
        h.update(headers or {})
        status, hdrs, data = self.s.http("POST", "/v1/runs", json.dumps(body), h, timeout=60)
        return status, hdrs, json.loads(data)

    def reconcile_to_accepted(self, s, sub, group):
        """`taskgate reconcile sub` settles it accepted, with the group's runs upstream as
        its runs, in input order."""
        r = s.cli("reconcile", sub)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("accepted", r.stdout)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "accepted")
        self.assertEqual([x[0] for x in s.db("SELECT run_id FROM audit_runs WHERE "
                                             "submission_id = ? ORDER BY input_index", (sub,))],
                         [x["run_id"] for x in s.sim_group(group)])

    def assertSummaryExact(self, s, when):
        """The audit summary (audit_summary, counted with the records) equals the records'
        own counts: reconciliation moves the counts with what it settles and finds."""
        def rows(sql):
            return sorted((tuple(r) for r in s.db(sql)),
                          key=lambda r: tuple((v is None, v) for v in r))
        truth = rows("SELECT s.team AS team, substr(s.received_at, 1, 10) AS day,"
                     " r.processor AS processor, s.state AS state,"
                     " count(DISTINCT s.submission_id) AS submissions, count(r.run_id) AS runs"
                     " FROM audit_submissions s"
                     " LEFT JOIN audit_runs r ON r.submission_id = s.submission_id"
                     " GROUP BY 1, 2, 3, 4")
        self.assertEqual(rows("SELECT team, day, processor, state, submissions, runs"
                              " FROM audit_summary"), truth, when)

    def state_once_settled(self, sub, within):
        """The submission's state once it is no longer unknown, or after within seconds."""
        deadline = time.monotonic() + within
        state = None
        while time.monotonic() < deadline:
            state = self.s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,))
            if state != "unknown":
                break
            time.sleep(0.1)
        return state


class ReconcileTest(Base):
    def test_timeout_after_accepting_then_reconcile(self):
        s = self.start()
        # The second chunk is created upstream but never answered.
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=4000, skip=1)
        st, _, err = self.post({"inputs": ["a", "b", "c", "d", "e"]})
        self.assertEqual(st, 504, err)
        detail = err["error"]["detail"]
        sub, group = detail["submission_id"], detail["taskgroup_id"]
        self.assertEqual(detail["state"], "unknown")
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "unknown")
        self.assertEqual(s.db_value("SELECT count(*) FROM runs WHERE submission_id = ?",
                                    (sub,)), 2)
        time.sleep(2.6)  # the hung connection ends; the third chunk was never sent
        created = [r["run_id"] for r in s.sim_group(group)]
        self.assertEqual(len(created), 4)

        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(sub, r.stdout)
        row = s.db("SELECT state, error FROM submissions WHERE id = ?", (sub,))[0]
        # 4 of 5 inputs exist: partial, recorded exactly, and said so.
        self.assertEqual(row["state"], "failed")
        self.assertIn("4 of 5 inputs", row["error"])
        self.assertIn("inputs 4", row["error"])
        runs = s.db("SELECT run_id, input_index, call_seq FROM audit_runs WHERE submission_id = ?"
                    " ORDER BY input_index", (sub,))
        self.assertEqual([x["run_id"] for x in runs], created)
        self.assertEqual([x["input_index"] for x in runs], [0, 1, 2, 3])
        rec = s.db("SELECT actor, outcome, runs_found FROM reconciliations WHERE submission_id = ?",
                   (sub,))
        self.assertEqual([(x["outcome"], x["runs_found"]) for x in rec], [("partial", 4)])  # every run with its tag
        self.assertTrue(rec[0]["actor"].startswith("os:"))
        # Nothing left: a second run changes nothing.
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 settled", r.stderr)

    def test_whole_submission_timed_out_after_accepting_becomes_accepted(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=3000)
        st, _, err = self.post({"inputs": ["only"]})
        self.assertEqual(st, 504, err)
        sub = err["error"]["detail"]["submission_id"]
        group = err["error"]["detail"]["taskgroup_id"]
        self.reconcile_to_accepted(s, sub, group)

    def test_nothing_created_becomes_failed(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="hang", apply=False, delay_ms=3000)
        st, _, err = self.post({"inputs": ["x"]})
        self.assertEqual(st, 504, err)
        sub = err["error"]["detail"]["submission_id"]
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stderr)
        row = s.db("SELECT state, error FROM submissions WHERE id = ?", (sub,))[0]
        self.assertEqual(row["state"], "failed")
        self.assertIn("no run of this submission exists", row["error"])

    def test_upstream_unreadable_leaves_it_unknown(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=3000)
        st, _, err = self.post({"inputs": ["x"]})
        sub = err["error"]["detail"]["submission_id"]
        s.sim_fault(match="stream_runs", kind="status", status=500)
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "unknown")
        self.assertEqual(s.db_value("SELECT outcome FROM reconciliations"), "error")

    def test_start_up_pass_reconciles(self):
        s = self.start(conf={"reconcile_on_start": 1})
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=2000)
        st, _, err = self.post({"inputs": ["x", "y"]})
        self.assertEqual(st, 504, err)
        sub = err["error"]["detail"]["submission_id"]
        time.sleep(0.6)
        s.restart_daemon()
        self.assertEqual(self.state_once_settled(sub, 10), "accepted")
        self.assertEqual(s.db_value("SELECT actor FROM reconciliations"), "daemon:start")

    def test_periodic_pass_reconciles_while_serving(self):
        s = self.start(conf={"reconcile_after_s": 1, "housekeeping_interval_s": 1})
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=2000)
        st, _, err = self.post({"inputs": ["x", "y"]})
        self.assertEqual(st, 504, err)
        sub = err["error"]["detail"]["submission_id"]
        # No restart and no command: the daemon settles it by itself.
        self.assertEqual(self.state_once_settled(sub, 15), "accepted")
        self.assertEqual(s.db_value("SELECT count(*) FROM runs WHERE submission_id = ?",
                                    (sub,)), 2)
        self.assertEqual([tuple(r) for r in s.db("SELECT actor, outcome FROM reconciliations")],
                         [("daemon:periodic", "accepted")])

    def test_periodic_pass_waits_before_trying_again(self):
        # An upstream that cannot be read: one attempt per reconcile_after_s, not one per
        # housekeeping_interval_s.
        s = self.start(conf={"reconcile_after_s": 3, "housekeeping_interval_s": 1})
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=2000)
        s.sim_fault(match="stream_runs", kind="status", status=500, times=100)
        st, _, err = self.post({"inputs": ["x"]})
        self.assertEqual(st, 504, err)
        sub = err["error"]["detail"]["submission_id"]
        time.sleep(6.5)
        tries = s.db_value("SELECT count(*) FROM reconciliations WHERE submission_id = ?",
                           (sub,))
        self.assertGreaterEqual(tries, 1)
        self.assertLessEqual(tries, 2)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "unknown")


def tags(run):
    return (run.get("metadata") or {}).get("taskgate", "")


def runs_of(group_runs, sub):
    """The run ids of sub among a group's runs (the simulator's, in the order created)."""
    return [r["run_id"] for r in group_runs if tags(r).startswith(sub + ".")]


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


# What a pass subtracts from the earliest unknown submission's time before it looks for the
# last call answered before it (for the clocks of hosts sharing a PostgreSQL store).
CLOCK_SKEW_S = 10


class GroupReadTest(Base):
    """One read per group, from the last known cursor (docs/guarantees.md, "Reconciliation"):
    the unknown submissions of a group are settled from one read of its runs stream that
    starts at the run_cursor of the last call answered before the earliest of them."""

    def group_reads(self, group):
        return [r for r in self.s.sim_requests()
                if r["method"] == "GET" and r["path"] == "/v1/tasks/groups/%s/runs" % group]

    def unknown(self, body, status=502):
        st, _, err = self.post(body)
        self.assertEqual(st, status, err)
        self.assertEqual(err["error"]["detail"]["state"], "unknown")
        return err["error"]["detail"]["submission_id"]

    def stream_from(self, group, cursor):
        """The run ids the simulator's runs stream of group lists after cursor."""
        q = "?" + urllib.parse.urlencode({"last_event_id": cursor}) if cursor else ""
        conn = http.client.HTTPConnection("127.0.0.1", self.s.sim_port, timeout=30)
        try:
            conn.request("GET", "/v1/tasks/groups/%s/runs%s" % (group, q),
                         headers={"x-api-key": KEY})
            resp = conn.getresponse()
            body = resp.read().decode()
        finally:
            conn.close()
        self.assertEqual(resp.status, 200, body[:300])
        return [json.loads(ln[5:])["run"]["run_id"] for ln in body.splitlines()
                if ln.startswith("data:")]

    def test_one_read_per_group_from_the_last_cursor(self):
        s = self.start(conf={"chunk_size": 500})
        # A group of 4,000 runs, in eight add-runs calls, all answered.
        st, _, first = self.post({"inputs": ["f0-%d" % i for i in range(1000)]})
        self.assertEqual(st, 200, first)
        group = first["taskgroup_id"]
        for k in range(1, 4):
            st, _, last = self.post({"inputs": ["f%d-%d" % (k, i) for i in range(1000)],
                                     "taskgroup_id": group})
            self.assertEqual(st, 200, last)
        call = s.db("SELECT seq, run_cursor FROM upstream_calls WHERE submission_id = ? "
                    "ORDER BY seq DESC LIMIT 1", (last["submission_id"],))[0]
        cursor = call["run_cursor"]
        self.assertTrue(cursor)
        time.sleep(CLOCK_SKEW_S + 0.5)

        # Unknown submissions into it, with an accepted one between them.
        s.sim_fault(match="add_runs", kind="reset", apply=True)
        u1 = self.unknown({"inputs": ["u1-a", "u1-b"], "taskgroup_id": group})
        st, _, mid = self.post({"inputs": ["m-%d" % i for i in range(300)],
                                "taskgroup_id": group})
        self.assertEqual(st, 200, mid)
        s.sim_fault(match="add_runs", kind="reset", apply=True, skip=1)
        u2 = self.unknown({"inputs": ["u2-%d" % i for i in range(1200)], "taskgroup_id": group})
        s.sim_fault(match="add_runs", kind="reset", apply=False)
        u3 = self.unknown({"inputs": ["u3"], "taskgroup_id": group})
        # The daemon killed while a call that created its runs has not answered: the call
        # is never recorded, and the submission is unknown once the daemon is back.
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=5000)
        t = threading.Thread(target=lambda: self.s.http(
            "POST", "/v1/runs", json.dumps({"inputs": ["u4-a", "u4-b", "u4-c"],
                                            "taskgroup_id": group}),
            {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"},
            timeout=30))
        t.start()
        deadline = time.monotonic() + 10
        while not [r for r in s.sim_group(group) if tags(r).count(".") and
                   "u4-a" in json.dumps(r.get("input"))]:
            self.assertLess(time.monotonic(), deadline, "the hung call created nothing")
            time.sleep(0.05)
        s.daemon_signal(signal.SIGKILL)
        s.daemon_wait(10)
        t.join(30)
        s.restart_daemon()
        u4 = s.db_value("SELECT id FROM submissions WHERE state = 'unknown' AND id NOT IN "
                        "(?, ?, ?)", (u1, u2, u3))
        self.assertIsNotNone(u4)
        lag = metric(s.http("GET", "/metrics")[2].decode(), "taskgate_reconcile_lag_seconds")
        self.assertGreater(lag, 0)
        self.assertSummaryExact(s, "four unknown")

        created = s.sim_group(group)
        s.sim_clear()
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        # One read of the group for the four, from the cursor of the last call answered
        # before the first of them was received.
        reads = self.group_reads(group)
        self.assertEqual(len(reads), 1, [x["query"] for x in reads])
        self.assertEqual(urllib.parse.parse_qs(reads[0]["query"]), {"last_event_id": [cursor]})
        start = [x["run_id"] for x in created].index(last["run_ids"][-500])
        events = len(created) - start
        self.assertEqual(start, 3500)  # the runs before the cursor's call are not read again
        rows = s.db("SELECT submission_id, outcome, runs_found, detail FROM reconciliations "
                    "ORDER BY id")
        self.assertEqual(sorted(x["submission_id"] for x in rows), sorted([u1, u2, u3, u4]))
        said = "read from cursor %s (call %s#%d), %d events read" % (
            cursor, last["submission_id"], call["seq"], events)
        for row in rows:
            self.assertIn(said, row["detail"])

        # Each settled as its own runs say, with exactly the runs it created.
        outcome = {x["submission_id"]: (x["outcome"], x["runs_found"]) for x in rows}
        self.assertEqual(outcome, {u1: ("accepted", 2), u2: ("partial", 1000),
                                   u3: ("failed", 0), u4: ("accepted", 3)})
        states = dict(s.db("SELECT id, state FROM submissions WHERE id IN (?, ?, ?, ?)",
                           (u1, u2, u3, u4)))
        self.assertEqual(states, {u1: "accepted", u2: "failed", u3: "failed", u4: "accepted"})
        for sub in (u1, u2, u4):
            self.assertEqual([x[0] for x in s.db("SELECT run_id FROM runs WHERE submission_id = ?"
                                                 " ORDER BY input_index", (sub,))],
                             runs_of(created, sub))
        self.assertIn("1000 of 1200 inputs", s.db_value("SELECT error FROM submissions "
                                                        "WHERE id = ?", (u2,)))
        # The call the daemon never recorded now is, with the cursor the upstream would have
        # answered: its runs are the first the stream lists from there.
        found = s.db("SELECT outcome, run_cursor FROM upstream_calls WHERE submission_id = ? "
                     "AND operation = 'add_runs'", (u4,))
        self.assertEqual(len(found), 1)
        self.assertEqual(found[0]["outcome"], "unknown")
        self.assertEqual(self.stream_from(group, found[0]["run_cursor"])[:3],
                         runs_of(created, u4))
        self.assertSummaryExact(s, "settled from one read")
        lag = metric(s.http("GET", "/metrics")[2].decode(), "taskgate_reconcile_lag_seconds")
        self.assertEqual(lag, 0)

    def test_no_cursor_known_reads_from_the_beginning(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=3000)
        st, _, err = self.post({"inputs": ["x", "y"]})
        self.assertEqual(st, 504, err)
        sub, group = err["error"]["detail"]["submission_id"], err["error"]["detail"]["taskgroup_id"]
        s.sim_clear()
        self.reconcile_to_accepted(s, sub, group)
        reads = self.group_reads(group)
        self.assertEqual([x["query"] for x in reads], [""])
        self.assertIn("read from the beginning: no cursor known, 2 events read",
                      s.db_value("SELECT detail FROM reconciliations WHERE submission_id = ?",
                                 (sub,)))

    def test_a_read_cut_short_goes_on_where_it_stopped(self):
        # One second per read, the simulator 2 ms per event: 2,000 runs take four reads.
        s = self.start(conf={"reconcile_pass_s": 1, "reconcile_after_s": 300,
                             "housekeeping_interval_s": 1, "chunk_size": 1000})
        st, _, first = self.post({"inputs": ["seed"]})
        group = first["taskgroup_id"]
        s.sim_fault(match="add_runs", kind="reset", apply=True)
        early = self.unknown({"inputs": ["e-a", "e-b"], "taskgroup_id": group})
        for k in range(2):
            st, _, answer = self.post({"inputs": ["f%d-%d" % (k, i) for i in range(1000)],
                                       "taskgroup_id": group})
            self.assertEqual(st, 200, answer)
        s.sim_fault(match="add_runs", kind="reset", apply=True)
        late = self.unknown({"inputs": ["l-a"], "taskgroup_id": group})
        s._sim("POST", "/_sim/stream", {"interval_ms": 2})

        # The command's pass is cut after a second: what it found whole is settled, the
        # rest is left with where to go on from.
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (early,)),
                         "accepted")
        row = s.db("SELECT outcome, detail, resume_cursor FROM reconciliations "
                   "WHERE submission_id = ?", (late,))[0]
        self.assertEqual(row["outcome"], "error")
        self.assertIn("cut short", row["detail"])
        self.assertTrue(row["resume_cursor"])
        self.assertSummaryExact(s, "a read cut short")

        # The daemon's periodic passes go on at once (no reconcile_after_s for a read cut
        # short), each from where the one before stopped, until it is found.
        deadline = time.monotonic() + 30
        while s.db_value("SELECT state FROM submissions WHERE id = ?", (late,)) == "unknown":
            self.assertLess(time.monotonic(), deadline, "never settled")
            time.sleep(0.2)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (late,)),
                         "accepted")
        self.assertEqual([x[0] for x in s.db("SELECT run_id FROM runs WHERE submission_id = ?",
                                             (late,))], runs_of(s.sim_group(group), late))
        tries = s.db("SELECT actor, outcome, resume_cursor FROM reconciliations "
                     "WHERE submission_id = ? ORDER BY id", (late,))
        self.assertGreaterEqual(len(tries), 3)
        self.assertEqual(tries[-1]["outcome"], "accepted")
        self.assertTrue(all(x["actor"] == "daemon:periodic" for x in tries[1:]))
        starts = [urllib.parse.parse_qs(x["query"]).get("last_event_id", [None])[0]
                  for x in self.group_reads(group)]
        self.assertEqual(starts, [None] + [x["resume_cursor"] for x in tries[:-1]])
        self.assertSummaryExact(s, "settled at last")


class RetryTest(Base):
    def test_429_with_retry_after_is_sent_again(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="status", status=429, retry_after=1)
        t0 = time.monotonic()
        st, _, answer = self.post({"inputs": ["a"]})
        self.assertEqual(st, 200, answer)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual([r["status"] for r in adds(s.sim_requests())], [429, 200])
        calls = s.db("SELECT seq, outcome, http_status, error FROM audit_calls WHERE "
                     "submission_id = ? ORDER BY seq", (answer["submission_id"],))
        self.assertEqual([(c["outcome"], c["http_status"]) for c in calls],
                         [("ok", 200), ("error", 429), ("ok", 200)])
        self.assertIn("sent again after 1000 ms", calls[1]["error"])

    def test_503_with_retry_after_beyond_the_budget_is_passed_on(self):
        s = self.start(conf={"upstream_retry_max_wait_ms": 500})
        s.sim_fault(match="add_runs", kind="status", status=503, retry_after=2)
        st, hdrs, err = self.post({"inputs": ["a"]})
        self.assertEqual(st, 502, err)
        self.assertEqual(len(adds(s.sim_requests())), 1)

    def test_500_is_never_sent_again(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="status", status=500, retry_after=1)
        st, _, err = self.post({"inputs": ["a"]})
        self.assertEqual(st, 502, err)
        self.assertEqual(len(adds(s.sim_requests())), 1)

    def test_429_without_retry_after_is_not_sent_again(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="status", status=429)
        st, _, err = self.post({"inputs": ["a"]})
        self.assertEqual(st, 429, err)
        self.assertEqual(len(adds(s.sim_requests())), 1)

    def test_timeout_is_never_sent_again(self):
        s = self.start()
        s.sim_fault(match="add_runs", kind="hang", apply=False, delay_ms=3000)
        st, _, err = self.post({"inputs": ["a"]})
        self.assertEqual(st, 504, err)
        time.sleep(0.2)
        self.assertEqual(len(adds(s.sim_requests())), 1)
        self.assertEqual(err["error"]["detail"]["state"], "unknown")

    def test_connection_refused_then_upstream_comes_up(self):
        """The upstream is not listening yet: nothing can have been sent, so the gateway
        tries again (backoff 100, 200, 400 ms, …) and succeeds once it listens."""
        port = free_port()
        s = self.start(conf={"upstream_url": "http://127.0.0.1:%d" % port})
        relay = Relay(port, s.sim_port)
        threading.Timer(0.5, relay.start).start()
        try:
            st, _, answer = self.post({"inputs": ["late"]})
        finally:
            time.sleep(0.6)
            relay.stop()
        self.assertEqual(st, 200, answer)
        calls = s.db("SELECT operation, outcome FROM audit_calls WHERE submission_id = ? "
                     "ORDER BY seq", (answer["submission_id"],))
        outcomes = [(c["operation"], c["outcome"]) for c in calls]
        self.assertIn(("create_group", "not_sent"), outcomes)
        self.assertEqual(outcomes[-2:], [("create_group", "ok"), ("add_runs", "ok")])
        self.assertEqual(len(s.sim_requests()), 2)


class ConnectionLostTest(Base):
    """The upstream acts, then the kept-alive connection it came on is reset before a byte
    of answer. libcurl would send such a request again by itself on a new connection (it
    does for a reused connection that dies "early"); the gateway must not let it: one set
    of runs upstream, the submission unknown, reconciliation finds that one set."""

    def test_reset_after_creating_on_a_reused_connection_is_not_sent_again(self):
        # One worker: one libcurl handle, so one kept-alive connection to the upstream.
        s = self.start(conf={"threads": 1})
        st, _, first = self.post({"inputs": ["warm"]})
        self.assertEqual(st, 200, first)
        s.sim_fault(match="add_runs", kind="reset", apply=True, reused=True)
        st, _, err = self.post({"inputs": ["a", "b"]})  # chunk_size 2: one add-runs
        reqs = s.sim_requests()
        group = (err.get("taskgroup_id") or err.get("error", {}).get("detail", {})
                 .get("taskgroup_id"))
        sent = [r for r in adds(reqs) if group in r["path"]]
        # Exactly one add-runs for it, and it went on the connection the first submission
        # used (so the test did put a reused connection to the trial).
        self.assertEqual(len(sent), 1, [(r["path"], r["connection"], r["status"]) for r in sent])
        self.assertEqual(sent[0]["connection"], reqs[0]["connection"])
        self.assertGreater(sent[0]["on_connection"], 2)
        self.assertEqual(len(s.sim_group(group)), 2)  # one set of runs, created once

        # The client is told the outcome is unknown; the record says so, one row per call.
        self.assertEqual(st, 502, err)
        detail = err["error"]["detail"]
        sub = detail["submission_id"]
        self.assertEqual(detail["state"], "unknown")
        self.assertIn("unknown", err["error"]["message"])
        self.assertIn("not sent again", err["error"]["message"])
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "unknown")
        calls = s.db("SELECT operation, outcome, http_status FROM audit_calls WHERE "
                     "submission_id = ? ORDER BY seq", (sub,))
        self.assertEqual([tuple(c) for c in calls],
                         [("create_group", "ok", 200), ("add_runs", "unknown", None)])

        # Reconciliation settles it as it settles a timeout: accepted, with those runs.
        self.reconcile_to_accepted(s, sub, group)
        self.assertEqual(len(adds(s.sim_requests())), 2)  # reconciling sent nothing

    def test_create_group_reset_on_a_reused_connection_is_not_sent_again(self):
        s = self.start(conf={"threads": 1})
        st, _, first = self.post({"inputs": ["warm"]})
        self.assertEqual(st, 200, first)
        groups = s.sim_stats()["groups"]
        s.sim_fault(match="create_group", kind="reset", apply=True, reused=True)
        st, _, err = self.post({"inputs": ["a"]})
        self.assertEqual(st, 502, err)
        self.assertEqual(err["error"]["detail"]["state"], "unknown")
        creates = [r for r in s.sim_requests() if r["path"] == "/v1/tasks/groups"]
        self.assertEqual([(r["status"], r["connection"]) for r in creates],
                         [(200, creates[0]["connection"]), (0, creates[0]["connection"])])
        self.assertEqual(s.sim_stats()["groups"], groups + 1)  # created once
        self.assertEqual(len(adds(s.sim_requests())), 1)  # nothing added to a guessed group
        calls = s.db("SELECT operation, outcome FROM audit_calls WHERE submission_id = ? "
                     "ORDER BY seq", (err["error"]["detail"]["submission_id"],))
        self.assertEqual([tuple(c) for c in calls], [("create_group", "unknown")])


class Relay:
    """A TCP relay from port to the simulator, started late: until then connections to port
    are refused."""

    def __init__(self, port, target):
        self.port, self.target = port, target
        self.sock = None
        self.stopped = False

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopped = True
        if self.sock is not None:
            self.sock.close()


if __name__ == "__main__":
    unittest.main()
