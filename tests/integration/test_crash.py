#!/usr/bin/env python3
"""kill -9 under load (docs/guarantees.md): 200 submissions from 8 client threads on
loopback, each with its own Idempotency-Key and repeated (as a careful client does) after a
5xx or 409, while the daemon is killed with SIGKILL 4 times at random moments and restarted
each time. Afterwards: every run id any client was given is in audit_runs; every run the
simulator created is accounted for (accepted, or unknown and then reconciled) and recorded
once; no submission is left pending or unknown; no input was created twice."""

import json
import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase  # noqa: E402

KEY = "par-key-crash"
CLIENTS = 8
PER_CLIENT = 25
KILLS = 4
DEADLINE_S = 240


class KeyedLoad:
    """CLIENTS threads, each sending PER_CLIENT submissions of its own Idempotency-Key and
    repeating one (as a careful client does) after a 5xx, 409, 429 (the team's share of
    workers) or a connection cut, while the daemon is killed with SIGKILL `kills` times at
    random moments and restarted. given: run id -> input text, from every 200 any client
    got; inputs_of: key -> its inputs; unanswered: keys that never got a 200."""

    def __init__(self, test, s, token, prefix, sizes, extra=None):
        self.test, self.s, self.prefix, self.sizes, self.extra = test, s, prefix, sizes, extra
        self.headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.given, self.inputs_of, self.unanswered = {}, {}, []
        self.lock = threading.Lock()
        self.stop_at = time.monotonic() + DEADLINE_S

    def submit(self, key, inputs):
        body = dict(self.extra or {}, inputs=inputs)
        data, h = json.dumps(body), dict(self.headers, **{"Idempotency-Key": key})
        while time.monotonic() < self.stop_at:
            try:
                status, _, answer = self.s.http("POST", "/v1/runs", data, h, timeout=30)
            except OSError:
                status, answer = 0, b""
            if status == 200:
                run_ids = json.loads(answer)["run_ids"]
                self.test.assertEqual(len(run_ids), len(inputs))
                with self.lock:
                    self.given.update(zip(run_ids, inputs))
                return
            if status not in (0, 409, 429, 500, 502, 503, 504):
                self.test.fail("unexpected %d: %r" % (status, answer[:300]))
            time.sleep(0.1)
        with self.lock:
            self.unanswered.append(key)

    def client(self, c):
        crng = random.Random(c)
        for i in range(PER_CLIENT):
            key = "%s%d-%d" % (self.prefix, c, i)
            inputs = ["%s-in%d" % (key, j) for j in range(crng.randint(*self.sizes))]
            with self.lock:
                self.inputs_of[key] = inputs
            self.submit(key, inputs)

    def run_with_kills(self, kills, rnd, pause):
        """Starts the clients, kills and restarts the daemon `kills` times `pause` (a range
        of seconds) apart, and returns once every client is done: the monotonic time of the
        last restart."""
        threads = [threading.Thread(target=self.client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        done = 0
        while done < kills and any(t.is_alive() for t in threads):
            time.sleep(rnd.uniform(*pause))
            self.s.daemon_signal(signal.SIGKILL)
            self.s.daemon_wait(10)
            done += 1
            self.s.restart_daemon()
        restarted = time.monotonic()
        self.unknown_after_restart = self.s.db_value(
            "SELECT count(*) FROM submissions WHERE state = 'unknown'")
        for t in threads:
            t.join(DEADLINE_S)
        self.test.assertEqual(done, kills, "the load ended before every kill")
        self.test.assertEqual(self.unanswered, [], "clients gave up")
        return restarted

    def check_records(self, created):
        """created: run id -> input of every run the simulator created. Every run a client
        was given and every run created is in audit_runs; no input was created twice."""
        recorded = {row["run_id"] for row in self.s.db("SELECT run_id FROM audit_runs")}
        missing = [rid for rid in self.given if rid not in recorded]
        self.test.assertEqual(missing, [], "run ids a client was given but the database lacks")
        unaccounted = [rid for rid in created if rid not in recorded]
        self.test.assertEqual(unaccounted, [],
                              "runs the simulator created that are not recorded")
        texts = [str(v) for v in created.values()]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        self.test.assertEqual(dupes, [], "inputs created twice")


class KillUnderLoadTest(StackTestCase):
    def test_kill_9_under_load(self):
        rnd = random.Random(int(os.environ.get("TG_CRASH_SEED", "7")))
        s = self.stack(keys=[KEY], upstream_timeout_ms=5000, conf={"chunk_size": 2})
        s.add_team("load", KEY, preset={"processor": "core"})
        token, _ = s.issue_token("load")
        # A little upstream latency widens the moments a kill can fall into.
        s.sim_fault(kind="delay", delay_ms=120, times=-1)

        load = KeyedLoad(self, s, token, "c", (1, 3))
        load.run_with_kills(KILLS, rnd, (0.2, 0.8))
        inputs_of, kills = load.inputs_of, KILLS

        # Settle whatever the last kills left, then look at everything.
        s.stop_daemon()
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state IN "
                                    "('pending', 'unknown')"), 0)


        groups = [row[0] for row in s.db("SELECT DISTINCT taskgroup_id FROM submissions "
                                         "WHERE taskgroup_id IS NOT NULL")]
        created = {}
        for g in groups:
            for run in s.sim_group(g):
                created[run["run_id"]] = run.get("input")
        self.assertEqual(s.sim_stats()["runs_created"], len(created),
                         "runs were created in a group the database does not know")
        load.check_records(created)
        self.assertEqual(len(created), sum(len(v) for v in inputs_of.values()))
        states = dict((row[0], row[1]) for row in s.db(
            "SELECT state, count(*) FROM submissions GROUP BY state"))
        sys.stderr.write("[crash] kills=%d submissions by state %r, runs %d, reconciliations %s\n"
                         % (kills, states, len(created),
                            s.db_value("SELECT count(*) FROM reconciliations")))


class KillUnderLoadOneGroupTest(StackTestCase):
    """kill -9 under load into one large group (docs/guarantees.md, "Reconciliation"): a
    group of 20,000 runs, then 8 client threads adding to it (each submission with its own
    Idempotency-Key, repeated after a 5xx, 409 or 429) while the daemon is killed with
    SIGKILL 5 times and restarted. Each start-up pass reads the group once, from the last
    cursor known before the submissions it left unknown, not from the group's beginning:
    after the last restart every submission is settled within 60 s, every run recorded
    once, no input created twice."""

    PREFILL = 20
    SETTLE_S = 60

    def test_kill_9_under_load_into_one_group(self):
        rnd = random.Random(int(os.environ.get("TG_CRASH_SEED", "7")))
        s = self.stack(keys=[KEY], upstream_timeout_ms=5000, conf={"chunk_size": 10})
        s.add_team("load", KEY, preset={"processor": "core"})
        token, _ = s.issue_token("load")
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
             "Accept": "application/json"}
        group = None
        for k in range(self.PREFILL):
            body = {"inputs": ["pre%d-%d" % (k, i) for i in range(1000)]}
            if group is not None:
                body["taskgroup_id"] = group
            status, _, data = s.http("POST", "/v1/runs", json.dumps(body), h, timeout=60)
            self.assertEqual(status, 200, data[:300])
            group = json.loads(data)["taskgroup_id"]
        # Reconciliation counts a call as before an unknown submission only 10 s ahead of it
        # (hosts' clocks): from here on, the prefill's calls are such calls.
        time.sleep(10.5)
        s.sim_fault(kind="delay", delay_ms=120, times=-1)

        load = KeyedLoad(self, s, token, "g", (1, 30), extra={"taskgroup_id": group})
        restarted = load.run_with_kills(5, rnd, (0.3, 1.0))
        inputs_of, kills, left = load.inputs_of, 5, load.unknown_after_restart

        # The daemon settles what the last kill left by itself.
        while s.db_value("SELECT count(*) FROM submissions WHERE state IN "
                         "('pending', 'unknown')") > 0:
            self.assertLess(time.monotonic() - restarted, self.SETTLE_S,
                            "submissions still unsettled %d s after the last restart"
                            % self.SETTLE_S)
            time.sleep(0.2)
        settled_s = time.monotonic() - restarted
        metrics = s.http("GET", "/metrics")[2].decode()
        events = [ln.split()[1] for ln in metrics.splitlines()
                  if ln.startswith("taskgate_reconcile_events_read_total ")][0]

        # Every read started from a cursor: the prefill's calls were answered long before.
        details = [row[0] for row in s.db("SELECT detail FROM reconciliations")]
        self.assertTrue(details)
        self.assertEqual([d for d in details if "from the beginning" in d], [])
        passes = [ln for ln in s.daemon_log().splitlines() if "reconcile pass (daemon:start)" in ln]

        created = {run["run_id"]: run.get("input") for run in s.sim_group(group)}
        self.assertEqual(s.sim_stats()["runs_created"], len(created))
        load.check_records(created)
        self.assertEqual(len(created), self.PREFILL * 1000 +
                         sum(len(v) for v in inputs_of.values()))
        sys.stderr.write("[crash one group] kills=%d, group of %d runs, %d unknown after the "
                         "last restart, all settled %.1f s after it, the last daemon's "
                         "reconciliation read %s events, reconciliations %s; start-up "
                         "passes:\n  %s\n"
                         % (kills, len(created), left, settled_s, events,
                            s.db_value("SELECT count(*) FROM reconciliations"),
                            "\n  ".join(ln.split("msg=", 1)[-1] for ln in passes)))


if __name__ == "__main__":
    unittest.main()
