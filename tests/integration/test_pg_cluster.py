#!/usr/bin/env python3
"""Two taskgate daemons, each behind its own nginx, on ONE PostgreSQL database and one
simulator, raced against each other through admission (tg_pg_admission.c); run by the
suite's PostgreSQL variant (TG_TEST_DATABASE=postgresql), skipped on SQLite:

  * many clients on both daemons: every run id any client got is in audit_runs exactly once;
  * a team limit of N runs per minute, hammered through both: exactly N runs admitted;
  * a team limit of N in flight, hammered through both while the upstream is slow: exactly N;
  * the same Idempotency-Key sent to both at once: one add-runs upstream, the other client
    told it is in progress (409) or given the same answer, and a repeat after is that answer;
  * a daemon starting (or housekeeping) beside another's in-flight submission leaves it
    pending; after kill -9 of its daemon it stays pending until the lease runs out, then
    becomes unknown and is reconciled by the survivor, its run recorded once;
  * what one daemon keeps of its reads (a team's key, its preset, the groups it owns) is
    never used once another daemon, or psql, changed it: the very next submission sees the
    change;
  * PostgreSQL restarted under load through both: 503 in the upstream's error shape while
    it is down with nothing sent, nothing sent upstream that is not recorded, every run a
    client was given recorded once, and both daemons serving again soon after.

By hand: TG_TEST_DATABASE=postgresql ctest --test-dir build -R test_pg_cluster
"""

import json
import os
import sys
import threading
import time
import unittest
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import RUN_TAG_RE, Stack, StackTestCase  # noqa: E402

KEY = "par-key-cluster"
KEY2 = "par-key-cluster-2"


class SecondDaemon(Stack):
    """A daemon and nginx of their own on the first stack's database and simulator."""

    def __init__(self, first, conf=None):
        c = {"database": first.pg_dsn,
             "upstream_url": "http://127.0.0.1:%d" % first.sim_port,
             "key_file": first.key_file_path}
        c.update(conf or {})
        super().__init__(sim=False, name="tg-second", conf=c)
        self.scan_on_stop = False  # its own database is unused; the first's is scanned


def adds(reqs):
    return [r for r in reqs if r["method"] == "POST" and r["path"].endswith("/runs")]


@unittest.skipUnless(harness.BACKEND == "postgresql", "two daemons share a PostgreSQL database")
class TwoDaemonsTest(StackTestCase):
    # The second daemon settles and reconciles what a daemon gone left every second.
    HOUSEKEEPING = {"housekeeping_interval_s": 1, "reconcile_after_s": 1}
    # Room for every client's submission at once on each daemon (a team's share of the
    # workers is threads - worker_reserve).
    THREADS = {"threads": 16}

    def setUp(self):
        self.a = self.stack(keys=[KEY, KEY2], name="tg-first", conf=self.THREADS)
        self.b = SecondDaemon(self.a, dict(self.HOUSEKEEPING, **self.THREADS))
        self._stacks.append(self.b)
        self.b.start()

    def team(self, name, *limits):
        self.a.add_team(name, KEY, preset={"processor": "core"})
        if limits:
            self.a.cli_ok("team", "limits", name, *limits)
        return self.a.issue_token(name)[0]

    @staticmethod
    def post(stack, token, inputs, headers=None):
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
             "Accept": "application/json"}
        h.update(headers or {})
        st, hdrs, data = stack.http("POST", "/v1/runs", json.dumps({"inputs": inputs}), h,
                                    timeout=60)
        return st, hdrs, data

    def race(self, n, fn):
        """fn(i) in n threads released together; their results in no particular order."""
        out, lock = [], threading.Lock()
        gate = threading.Barrier(n)

        def one(i):
            gate.wait()
            r = fn(i)
            with lock:
                out.append(r)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(out), n, "a client got no answer")
        return out

    def both(self, i):
        return self.a if i % 2 == 0 else self.b

    @staticmethod
    def fresh_minute():
        if time.time() % 60 > 45:
            time.sleep(61 - time.time() % 60)

    def test_many_clients_every_run_once(self):
        token = self.team("many")

        def client(i):
            got = []
            for _ in range(10):
                st, _, d = self.post(self.both(i), token, ["x%d" % i, "y%d" % i])
                got.append((st, json.loads(d)))
            return got

        results = [r for rs in self.race(16, client) for r in rs]
        self.assertEqual([st for st, _ in results if st != 200], [])
        ids = [rid for _, d in results for rid in d["run_ids"]]
        self.assertEqual(len(ids), 320)
        self.assertEqual(len(set(ids)), 320)
        rows = self.a.db("SELECT run_id, count(*) AS n FROM audit_runs GROUP BY run_id")
        self.assertEqual(sorted(r[0] for r in rows), sorted(ids))
        self.assertEqual({r[1] for r in rows}, {1})
        self.assertEqual(self.a.db_value(
            "SELECT count(*) FROM submissions WHERE state = 'accepted'"), 160)

    def test_runs_per_minute_admits_exactly_the_limit(self):
        token = self.team("rpm", "--runs-per-minute", "10")
        self.fresh_minute()
        results = self.race(30, lambda i: self.post(self.both(i), token, ["r%d" % i]))
        statuses = sorted(r[0] for r in results)
        self.assertEqual((statuses.count(200), statuses.count(429)), (10, 20), statuses)
        self.assertEqual(sum(len(r["body"]["inputs"]) for r in adds(self.a.sim_requests())),
                         10)
        self.assertEqual(self.a.db_value("SELECT sum(runs) FROM team_usage"), 10)
        self.assertEqual(self.a.db_value(
            "SELECT count(*) FROM submissions WHERE state = 'rejected' AND http_status = 429"),
            20)

    def test_in_flight_admits_exactly_the_limit(self):
        token = self.team("fly", "--in-flight", "3")
        self.a.sim_fault(match="add_runs", kind="delay", delay_ms=1500, times=-1)
        results = self.race(12, lambda i: self.post(self.both(i), token, ["f%d" % i]))
        self.a.sim_clear_faults()
        statuses = sorted(r[0] for r in results)
        self.assertEqual((statuses.count(200), statuses.count(429)), (3, 9), statuses)
        self.assertEqual(len(adds(self.a.sim_requests())), 3)

    def test_same_key_on_both_daemons_sends_once(self):
        token = self.team("idem")
        self.a.sim_fault(match="add_runs", kind="delay", delay_ms=300, times=-1)
        for k in range(10):
            key = {"Idempotency-Key": "both-%d" % k}
            self.a.sim_clear()
            results = self.race(2, lambda i: self.post(self.both(i), token, ["k"], key))
            statuses = sorted(r[0] for r in results)
            self.assertIn(statuses, ([200, 200], [200, 409]), [r[2] for r in results])
            ok = [r[2] for r in results if r[0] == 200]
            if len(ok) == 2:
                self.assertEqual(ok[0], ok[1], "a replay is the first answer")
            self.assertEqual(len(adds(self.a.sim_requests())), 1, key)
            for s in (self.a, self.b):
                st, _, d = self.post(s, token, ["k"], key)
                self.assertEqual((st, d), (200, ok[0]))
            self.assertEqual(len(adds(self.a.sim_requests())), 1, key)
        self.a.sim_clear_faults()
        self.assertEqual(self.a.db_value(
            "SELECT count(*) FROM submissions WHERE state = 'accepted'"), 10)

    def burst(self, token, body):
        """body sent by 12 clients at once (the team's share of the workers) to the second
        daemon, three times, so that its workers each take some; every answer must be 200.
        The add-runs requests the simulator got."""
        self.a.sim_clear()
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        for _ in range(3):
            results = self.race(12, lambda i: self.b.http("POST", "/v1/runs", json.dumps(body),
                                                          h, timeout=60))
            self.assertEqual([r[0] for r in results if r[0] != 200], [],
                             [r[2][:300] for r in results if r[0] != 200])
        return adds(self.a.sim_requests())

    def test_what_a_daemon_keeps_of_its_reads_follows_every_change(self):
        token = self.team("kept")
        st, _, d = self.post(self.b, token, ["g"])
        self.assertEqual(st, 200, d)
        group = json.loads(d)["taskgroup_id"]
        body = {"taskgroup_id": group, "inputs": ["x"]}

        def processors(sent):
            return {r["body"]["inputs"][0]["processor"] for r in sent}

        sent = self.burst(token, body)  # read and kept by every worker
        self.assertEqual((len(sent), processors(sent)), (36, {"core"}))
        # The preset changed by the other daemon's host: the next submissions use it.
        self.a.set_preset("kept", "default", {"processor": "ultra"})
        self.assertEqual(processors(self.burst(token, body)), {"ultra"})
        # ... and by hand in psql, which no daemon hears of but through the database.
        harness.pg_server().psql("UPDATE presets SET body = '{\"processor\": \"base\"}'"
                                 " WHERE name = 'default'", dbname=self.a.pg_dbname)
        self.assertEqual(processors(self.burst(token, body)), {"base"})
        # The group's creating submission pruned: the group is no longer the team's.
        self.a.sim_clear()
        time.sleep(0.1)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        time.sleep(0.1)
        self.a.cli_ok("audit", "prune", "--before", now)
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        results = self.race(12, lambda i: self.b.http("POST", "/v1/runs", json.dumps(body), h))
        self.assertEqual({r[0] for r in results}, {404}, [r[2][:300] for r in results])
        self.assertEqual(adds(self.a.sim_requests()), [])
        # The team's key, changed on the other host: sent from the next submission on (to
        # new groups: the upstream's groups belong to the key that made them).
        self.a.cli_ok("team", "set-key", "kept", input=KEY2 + "\n")
        sent = self.burst(token, {"inputs": ["z"]})
        self.assertEqual({r["headers"].get("x-api-key") for r in sent}, {KEY2})

    def state(self, sub_id):
        return self.a.db_value("SELECT state FROM submissions WHERE id = ?", (sub_id,))

    def in_flight_on_a(self, token, delay_ms):
        """A submission sent through the first daemon, its add-runs held delay_ms upstream;
        its id once it is pending, and the thread waiting for its answer."""
        self.a.sim_fault(match="add_runs", kind="delay", delay_ms=delay_ms, times=-1)
        t = threading.Thread(target=lambda: self.post(self.a, token, ["slow"]), daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sub = self.a.db_value("SELECT id FROM submissions WHERE state = 'pending'")
            # Pending is written before the group is created: in flight means the add-runs
            # has reached the upstream (it logs a request when it arrives, before the delay).
            if sub and adds(self.a.sim_requests()):
                return sub, t
            time.sleep(0.05)
        self.fail("no pending submission with its add-runs upstream")

    def test_a_peer_starting_leaves_in_flight_submissions_alone(self):
        token = self.team("peer")
        sub, t = self.in_flight_on_a(token, 4000)
        self.b.restart_daemon()  # its start-up settles what daemons gone left
        time.sleep(1.5)          # and a housekeeping pass or two
        self.assertEqual(self.state(sub), "pending")
        t.join(30)
        self.assertEqual(self.state(sub), "accepted")

    def test_kill_9_hands_pending_submissions_on_after_the_lease(self):
        token = self.team("dead")
        sub, _ = self.in_flight_on_a(token, 1500)
        self.a.daemon_signal(9)
        self.a.daemon_wait()
        killed = time.monotonic()
        time.sleep(2)  # the upstream creates the run; nobody records it
        while time.monotonic() - killed < 20:
            self.assertEqual(self.state(sub), "pending", "settled while the lease was live")
            time.sleep(1)
        deadline = killed + 60
        while self.state(sub) in ("pending", "unknown") and time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertEqual(self.state(sub), "accepted", self.b.daemon_log()[-2000:])
        self.assertGreaterEqual(time.monotonic() - killed, 25)
        self.assertEqual(self.a.db_value(
            "SELECT count(*) FROM audit_runs WHERE submission_id = ?", (sub,)), 1)
        self.assertEqual(len(adds(self.a.sim_requests())), 1)
        # The survivor still serves.
        st, _, _ = self.post(self.b, token, ["after"])
        self.assertEqual(st, 200)

    def test_postgresql_restarted_under_load(self):
        token = self.team("restart")
        stop = threading.Event()
        answers, lock = [], threading.Lock()

        def client(i):
            n = 0
            while not stop.is_set():
                st, _, d = self.post(self.both(i), token, ["c%d-%d" % (i, n)])
                n += 1
                with lock:
                    answers.append((time.monotonic(), i % 2, st, d))
                if st != 200:
                    time.sleep(0.05)  # as a client backs off

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            with self.a.pg_server_down("fast"):
                down = time.monotonic()
                time.sleep(3)
            back = time.monotonic()
            # Both daemons serve again soon after, with no restart.
            serving = set()
            while len(serving) < 2 and time.monotonic() - back < 10:
                with lock:
                    serving = {w for at, w, st, _ in answers if at > back and st == 200}
                time.sleep(0.1)
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(serving, {0, 1}, "a daemon did not serve again within 10 s")
        self.assertTrue(self.a.daemon_alive() and self.b.daemon_alive())

        statuses = [st for _, _, st, _ in answers]
        self.assertGreater(sum(1 for at, _, st, _ in answers if down < at < back and st == 503),
                           0, "no 503 while the server was down")
        # A request caught between its add-runs and recording it is told so (500, to be
        # reconciled); any other failure is a 503 that sent nothing.
        self.assertEqual(set(statuses) - {200, 500, 503}, set(), statuses)
        given = []
        for _, _, st, d in answers:
            body = json.loads(d)
            if st == 200:
                given += body["run_ids"]
                continue
            self.assertEqual(body["type"], "error", body)
            self.assertTrue(body["error"]["ref_id"], body)
            self.assertIn("do not resubmit" if st == 500 else "nothing was sent upstream",
                          body["error"]["message"])

        # What the upstream did while the database could not record it is settled now.
        deadline = time.monotonic() + 30
        while self.a.db_value("SELECT count(*) FROM submissions "
                              "WHERE state IN ('pending', 'unknown')") != 0:
            self.assertLess(time.monotonic(), deadline, "submissions left unsettled: %r" % (
                self.a.db("SELECT id, state FROM submissions "
                          "WHERE state IN ('pending', 'unknown')"),))
            time.sleep(0.5)

        rows = self.a.db("SELECT run_id, submission_id FROM audit_runs")
        recorded = {r[0]: r[1] for r in rows}
        self.assertEqual(len(recorded), len(rows), "a run recorded twice")
        self.assertEqual([rid for rid in given if rid not in recorded], [],
                         "run ids a client was given but the database lacks")
        self.assertEqual(len(given), len(set(given)))
        # Nothing sent that is not recorded: every add-runs names a recorded submission, and
        # every run the upstream created is in audit_runs.
        subs = {r[0] for r in self.a.db("SELECT id FROM submissions")}
        for req in adds(self.a.sim_requests()):
            for run in req["body"]["inputs"]:
                m = RUN_TAG_RE.match(run["metadata"]["taskgate"])
                self.assertTrue(m and m.group(1) in subs, run["metadata"])
        created = []
        for g in {r[0] for r in self.a.db("SELECT DISTINCT taskgroup_id FROM submissions "
                                           "WHERE taskgroup_id IS NOT NULL")}:
            created += [run["run_id"] for run in self.a.sim_group(g)]
        self.assertEqual(self.a.sim_stats()["runs_created"], len(created),
                         "runs created in a group the database does not know")
        self.assertEqual(sorted(created), sorted(recorded))
        sys.stderr.write("[restart] answers %r, runs %d\n" % (
            {st: statuses.count(st) for st in set(statuses)}, len(created)))


if __name__ == "__main__":
    unittest.main()
