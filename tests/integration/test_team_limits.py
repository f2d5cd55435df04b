#!/usr/bin/env python3
"""Per-team limits (docs/guarantees.md): runs per minute and submissions in flight, set with
`taskgate team limits`, stored in the database and logged in admin_log; beyond a limit a 429
with Retry-After, a 'rejected' record and nothing sent. One table drives every limit."""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase  # noqa: E402

KEY = "par-key-limits"

# (limit option, value, what to submit, expected statuses). A submission is either a number
# of inputs sent one after the other, or ("parallel", n, inputs) for n at once while the
# upstream takes 1 s per add-runs call.
TABLE = [
    ("--runs-per-minute", 5, [3, 2, 1], [200, 200, 429]),
    ("--runs-per-minute", 5, [6], [429]),
    ("--runs-per-minute", 0, [4, 4, 4], [200, 200, 200]),
    ("--in-flight", 1, [("parallel", 3, 1)], [200, 429, 429]),
    ("--in-flight", 2, [("parallel", 3, 1)], [200, 200, 429]),
    ("--in-flight", 0, [("parallel", 3, 1)], [200, 200, 200]),
]


class LimitsTest(StackTestCase):
    def post(self, s, token, n):
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
             "Accept": "application/json"}
        body = json.dumps({"inputs": ["q%d" % i for i in range(n)]})
        status, hdrs, data = s.http("POST", "/v1/runs", body, h, timeout=30)
        return status, hdrs, json.loads(data)

    def wait_for_a_fresh_minute(self):
        """Runs per minute are counted per clock minute: keep a row inside one."""
        if time.time() % 60 > 52:
            time.sleep(61 - time.time() % 60)

    def test_table(self):
        s = self.stack(keys=[KEY])
        for i, (option, value, sends, expect) in enumerate(TABLE):
            with self.subTest(option=option, value=value, sends=sends):
                team = "team%d" % i
                s.add_team(team, KEY, preset={"processor": "core"})
                token, _ = s.issue_token(team)
                r = s.cli_ok("team", "limits", team, option, str(value))
                self.assertIn("%s=%d" % (option[2:].replace("-", "_"), value), r.stdout)
                self.wait_for_a_fresh_minute()
                s.sim_clear()
                results = []
                for send in sends:
                    if isinstance(send, tuple):
                        results += self.parallel(s, token, send[1], send[2])
                    else:
                        results.append(self.post(s, token, send))
                statuses = [r[0] for r in results]
                self.assertEqual(sorted(statuses), sorted(expect), [r[2] for r in results])
                sent = sum(len(r["body"]["inputs"]) for r in s.sim_requests()
                           if r["path"].endswith("/runs"))
                admitted = sum(len(a["run_ids"]) for st, _, a in results if st == 200)
                self.assertEqual(sent, admitted, "a refused submission went upstream")
                for st, hdrs, answer in results:
                    if st != 429:
                        continue
                    self.assertTrue(hdrs.get("retry-after", "").isdigit(), hdrs)
                    self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
                    self.assertLessEqual(int(hdrs["retry-after"]), 60)
                    d = answer["error"]["detail"]
                    self.assertEqual((d["limit"], d["value"], d["state"]),
                                     (option[2:].replace("-", "_"), value, "rejected"))
                    self.assertEqual(s.db_value(
                        "SELECT state || ' ' || http_status FROM submissions WHERE id = ?",
                        (d["submission_id"],)), "rejected 429")
                s.sim_clear_faults()

    def parallel(self, s, token, n, inputs):
        s.sim_fault(match="add_runs", kind="delay", delay_ms=1000, times=-1)
        out, lock = [], threading.Lock()

        def one():
            r = self.post(s, token, inputs)
            with lock:
                out.append(r)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(30)
        s.sim_clear_faults()
        return out

    def test_worker_share_keeps_a_reserve(self):
        """One team's slow submissions hold at most threads - worker_reserve workers: past
        that its next gets 429 with Retry-After (a rejected record, nothing sent), while
        another team's submission and /healthz are answered at once."""
        s = self.stack(keys=[KEY, KEY + "-b"], conf={"threads": 4, "worker_reserve": 2})
        s.add_team("a", KEY, preset={"processor": "core"})
        s.add_team("b", KEY + "-b", preset={"processor": "core"})
        token_a, _ = s.issue_token("a")
        token_b, _ = s.issue_token("b")
        # The add-runs calls of team A's first two submissions take 4 s each.
        s.sim_fault(match="add_runs", kind="delay", delay_ms=4000, times=2)
        slow, lock = [], threading.Lock()

        def one():
            r = self.post(s, token_a, 1)
            with lock:
                slow.append(r)

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.time() + 5
        while time.time() < deadline and sum(
                1 for r in s.sim_requests() if r["path"].endswith("/runs")) < 2:
            time.sleep(0.05)
        self.assertEqual(sum(1 for r in s.sim_requests() if r["path"].endswith("/runs")), 2)
        sent_before = len(s.sim_requests())

        for _ in range(2):  # without the share these take the last two workers
            t0 = time.time()
            status, hdrs, answer = self.post(s, token_a, 1)
            self.assertLess(time.time() - t0, 1.0)
            self.assertEqual(status, 429, answer)
            self.assertEqual(hdrs.get("retry-after"), "1")
            self.assertEqual(answer["type"], "error")
            self.assertIn("ref_id", answer["error"])
            self.assertIn("worker_reserve", answer["error"]["message"])
            self.assertNotIn("team", json.dumps(answer["error"]["detail"]))
            d = answer["error"]["detail"]
            self.assertEqual((d["limit"], d["value"], d["used"], d["state"]),
                             ("worker_share", 2, 2, "rejected"))
            self.assertEqual(s.db_value(
                "SELECT state || ' ' || http_status FROM submissions WHERE id = ?",
                (d["submission_id"],)), "rejected 429")
        self.assertEqual(len(s.sim_requests()), sent_before, "a refused submission went upstream")

        t0 = time.time()
        status, _, answer = self.post(s, token_b, 1)
        self.assertEqual(status, 200, answer)
        self.assertLess(time.time() - t0, 1.0, "team B waited for team A's submissions")
        t0 = time.time()
        status, _, _ = s.http("GET", "/healthz", timeout=10)
        self.assertEqual(status, 200)
        self.assertLess(time.time() - t0, 1.0, "/healthz waited for team A's submissions")
        status, _, body = s.http("GET", "/metrics")
        self.assertIn(b"taskgate_worker_share_refusals_total 2", body)

        for t in threads:
            t.join(30)
        self.assertEqual([r[0] for r in slow], [200, 200], [r[2] for r in slow])
        # Released once answered: A may submit again.
        s.sim_clear_faults()
        self.assertEqual(self.post(s, token_a, 1)[0], 200)

    def test_cli_shows_and_logs_limits(self):
        s = self.stack(keys=[KEY], daemon=False)
        s.add_team("t", KEY)
        r = s.cli_ok("team", "limits", "t")
        self.assertEqual(r.stdout.strip(), "team=t runs_per_minute=0 in_flight=0")
        s.cli_ok("team", "limits", "t", "--runs-per-minute", "120", "--in-flight", "4")
        r = s.cli_ok("team", "limits", "t", "--in-flight", "0")
        self.assertEqual(r.stdout.strip(), "team=t runs_per_minute=120 in_flight=0")
        log = s.db("SELECT action, before, after FROM audit_admin WHERE action = 'team.limits' "
                   "ORDER BY id")
        self.assertEqual([json.loads(x["after"]) for x in log],
                         [{"runs_per_minute": 120, "in_flight": 4},
                          {"runs_per_minute": 120, "in_flight": 0}])
        self.assertNotEqual(s.cli("team", "limits", "nosuch", "--in-flight", "1").returncode, 0)
        self.assertEqual(s.cli("team", "limits", "t", "--in-flight", "-1").returncode, 2)


if __name__ == "__main__":
    unittest.main()
