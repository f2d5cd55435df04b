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


class KillUnderLoadTest(StackTestCase):
    def test_kill_9_under_load(self):
        rnd = random.Random(int(os.environ.get("TG_CRASH_SEED", "7")))
        s = self.stack(keys=[KEY], upstream_timeout_ms=5000, conf={"chunk_size": 2})
        s.add_team("load", KEY, preset={"processor": "core"})
        token, _ = s.issue_token("load")
        # A little upstream latency widens the moments a kill can fall into.
        s.sim_fault(kind="delay", delay_ms=120, times=-1)

        given = {}        # run id -> input text, from every 200 any client got
        inputs_of = {}    # idempotency key -> its inputs
        unanswered = []   # keys that never got a 200
        lock = threading.Lock()
        stop_at = time.monotonic() + DEADLINE_S

        def client(c):
            crng = random.Random(c)
            for i in range(PER_CLIENT):
                key = "c%d-%d" % (c, i)
                inputs = ["%s-in%d" % (key, j) for j in range(crng.randint(1, 3))]
                with lock:
                    inputs_of[key] = inputs
                body = json.dumps({"inputs": inputs})
                h = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                     "Accept": "application/json", "Idempotency-Key": key}
                done = False
                while not done and time.monotonic() < stop_at:
                    try:
                        status, _, data = s.http("POST", "/v1/runs", body, h, timeout=30)
                    except OSError:
                        status, data = 0, b""
                    if status == 200:
                        answer = json.loads(data)
                        self.assertEqual(len(answer["run_ids"]), len(inputs))
                        with lock:
                            for rid, text in zip(answer["run_ids"], inputs):
                                given[rid] = text
                        done = True
                    elif status in (0, 409, 429, 500, 502, 503, 504):  # 429: the team's share of workers
                        time.sleep(0.1)
                    else:
                        self.fail("unexpected %d: %r" % (status, data[:300]))
                if not done:
                    with lock:
                        unanswered.append(key)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        kills = 0
        while kills < KILLS and any(t.is_alive() for t in threads):
            time.sleep(rnd.uniform(0.2, 0.8))
            s.daemon_signal(signal.SIGKILL)
            s.daemon_wait(10)
            kills += 1
            s.restart_daemon()
        for t in threads:
            t.join(DEADLINE_S)
        self.assertEqual(kills, KILLS, "the load ended before every kill")
        self.assertEqual(unanswered, [], "clients gave up")

        # Settle whatever the last kills left, then look at everything.
        s.stop_daemon()
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state IN "
                                    "('pending', 'unknown')"), 0)

        recorded = {row["run_id"]: row["submission_id"]
                    for row in s.db("SELECT run_id, submission_id FROM audit_runs")}
        missing = [rid for rid in given if rid not in recorded]
        self.assertEqual(missing, [], "run ids a client was given but the database lacks")

        groups = [row[0] for row in s.db("SELECT DISTINCT taskgroup_id FROM submissions "
                                         "WHERE taskgroup_id IS NOT NULL")]
        created = {}
        for g in groups:
            for run in s.sim_group(g):
                created[run["run_id"]] = run.get("input")
        self.assertEqual(s.sim_stats()["runs_created"], len(created),
                         "runs were created in a group the database does not know")
        unaccounted = [rid for rid in created if rid not in recorded]
        self.assertEqual(unaccounted, [], "runs the simulator created that are not recorded")
        texts = [str(v) for v in created.values()]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        self.assertEqual(dupes, [], "inputs created twice")
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

        given, inputs_of, unanswered = {}, {}, []
        lock = threading.Lock()
        stop_at = time.monotonic() + DEADLINE_S

        def client(c):
            crng = random.Random(c)
            for i in range(PER_CLIENT):
                key = "g%d-%d" % (c, i)
                inputs = ["%s-in%d" % (key, j) for j in range(crng.randint(1, 30))]
                with lock:
                    inputs_of[key] = inputs
                body = json.dumps({"inputs": inputs, "taskgroup_id": group})
                hk = dict(h, **{"Idempotency-Key": key})
                done = False
                while not done and time.monotonic() < stop_at:
                    try:
                        status, _, data = s.http("POST", "/v1/runs", body, hk, timeout=30)
                    except OSError:
                        status, data = 0, b""
                    if status == 200:
                        answer = json.loads(data)
                        with lock:
                            given.update(zip(answer["run_ids"], inputs))
                        done = True
                    elif status in (0, 409, 429, 500, 502, 503, 504):
                        time.sleep(0.1)
                    else:
                        self.fail("unexpected %d: %r" % (status, data[:300]))
                if not done:
                    with lock:
                        unanswered.append(key)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        kills = 0
        while kills < 5 and any(t.is_alive() for t in threads):
            time.sleep(rnd.uniform(0.3, 1.0))
            s.daemon_signal(signal.SIGKILL)
            s.daemon_wait(10)
            kills += 1
            s.restart_daemon()
        restarted = time.monotonic()
        left = s.db_value("SELECT count(*) FROM submissions WHERE state = 'unknown'")
        for t in threads:
            t.join(DEADLINE_S)
        self.assertEqual(kills, 5, "the load ended before every kill")
        self.assertEqual(unanswered, [], "clients gave up")

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

        recorded = {row["run_id"]: row["submission_id"]
                    for row in s.db("SELECT run_id, submission_id FROM audit_runs")}
        missing = [rid for rid in given if rid not in recorded]
        self.assertEqual(missing, [], "run ids a client was given but the database lacks")
        created = {run["run_id"]: run.get("input") for run in s.sim_group(group)}
        self.assertEqual(s.sim_stats()["runs_created"], len(created))
        unaccounted = [rid for rid in created if rid not in recorded]
        self.assertEqual(unaccounted, [], "runs the simulator created that are not recorded")
        texts = [str(v) for v in created.values()]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        self.assertEqual(dupes, [], "inputs created twice")
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
