#!/usr/bin/env python3
"""Reconciliation and safe retries (docs/guarantees.md): an upstream that times out after
accepting leaves the submission unknown, and `taskgate reconcile` makes it accepted with the
very run ids the upstream created; nothing created makes it failed; the start-up pass does
the same; the gateway retries by itself only when the upstream cannot have acted."""

import json
import os
import socket
import sys
import threading
import time
import unittest

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
