#!/usr/bin/env python3
"""Estimated spend and budgets (docs/usage-and-budgets.md), on both stores:

  * a hard monthly budget of $0.10 with processor base ($0.01 a run): submissions of 3, 3
    and 3 accepted, one of 2 refused with 402 in the upstream's error shape (naming the
    budget, its period and what remains; nothing about other teams), a rejected record and
    nothing sent upstream, then one of 1 accepted; across the month boundary (the test
    clock, test_clock_file) the budget starts again;
  * a failed call's runs were never created and give their estimate back; an unknown
    submission holds its estimate until reconciliation settles it;
  * submissions racing for the last dollars never take a team past its budget (on
    PostgreSQL through two daemons on one database);
  * usage (GET /v1/audit/usage, `taskgate audit usage`, the audit_usage view) equals the
    runs of audit_runs times the price table, exactly, after a price change with an
    effective date too; a submit token reads its own team's usage only;
  * bad budget values and unknown teams are refused (CLI and /v1/admin), a budget change is
    in the admin log, and a database that cannot be read refuses (fails closed);
  * a soft budget admits past its amount and says so once: a log line and the metric.
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
from calendar import timegm
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BACKEND, StackTestCase, pg_server  # noqa: E402

KEY = "par-key-budgets"
KEY_B = "par-key-budgets-b"


def ms_of(text):
    """Milliseconds since the epoch of a UTC time written 2031-01-31T23:58:00."""
    return timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) * 1000


class Clock:
    """The test clock file: the gateway's time is the real time plus the number it holds."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tg-clock-")
        self.path = os.path.join(self.dir, "clock")
        self.set_offset(0)

    def set_offset(self, ms):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % ms)
        os.replace(tmp, self.path)

    def set(self, text):
        """Sets the gateway's clock to text (UTC), from now on running as the real one."""
        self.set_offset(ms_of(text) - int(time.time() * 1000))
        time.sleep(0.2)  # the daemon reads the file again every 50 ms

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def prices_table(s):
    """{processor: [(effective_from, micro_per_run), ...]} from the database, by date."""
    out = {}
    for row in s.db("SELECT processor, effective_from, micro_per_run FROM prices "
                    "ORDER BY processor, effective_from"):
        out.setdefault(row[0], []).append((row[1], row[2]))
    return out


def price_of(table, processor, day):
    """The price table's rule, written again: a -fast variant costs what its base does; the
    price in force on the submission's UTC day; 0 for a processor the table does not list."""
    listed = processor[:-5] if processor.endswith("-fast") and len(processor) > 5 else processor
    micro = 0
    for eff, m in table.get(listed, []):
        if eff <= day:
            micro = m
    return micro


class BudgetsTest(StackTestCase):

    def setUp(self):
        self.clock = Clock()
        self.addCleanup(self.clock.remove)

    def start(self, **conf):
        c = {"test_clock_file": self.clock.path, "threads": 24}
        c.update(conf)
        return self.stack(keys=[KEY, KEY_B], upstream_timeout_ms=1000, conf=c)

    @staticmethod
    def post(s, token, n, extra=None):
        body = {"inputs": ["q%d" % i for i in range(n)]}
        body.update(extra or {})
        return s.json_req("POST", "/v1/runs", body, token=token)

    def sent_runs(self, s):
        return sum(len(r["body"]["inputs"]) for r in s.sim_requests()
                   if r["method"] == "POST" and r["path"].endswith("/runs"))

    def assert_402(self, s, status, body, period, remaining, estimate, sent_before):
        self.assertEqual(status, 402, body)
        self.assertEqual(body["type"], "error", body)
        err = body["error"]
        self.assertTrue(err.get("ref_id"), body)
        d = err["detail"]
        self.assertEqual((d["budget"], d["period"], d["remaining_usd"], d["estimate_usd"],
                          d["state"]), ("monthly", period, remaining, estimate, "rejected"), d)
        self.assertIn("monthly budget for %s" % period, err["message"])
        self.assertIn("nothing was sent", err["message"])
        self.assertEqual(s.db_value("SELECT state || ' ' || http_status FROM submissions "
                                    "WHERE id = ?", (d["submission_id"],)), "rejected 402")
        self.assertEqual(self.sent_runs(s), sent_before, "a refused submission went upstream")
        return d

    # ---- the issue's example -----------------------------------------------------------

    def test_ten_cents_of_base_then_402_then_a_new_month(self):
        s = self.start()
        self.clock.set("2031-01-31T23:58:00")
        s.add_team("a", KEY, preset={"processor": "base"})
        s.add_team("b", KEY_B, preset={"processor": "ultra8x"})
        token, _ = s.issue_token("a")
        token_b, _ = s.issue_token("b")
        s.cli_ok("team", "budget", "a", "--monthly", "0.10")
        s.cli_ok("team", "budget", "b", "--monthly", "4321.98")
        st, body, _ = self.post(s, token_b, 1)  # another team's spend: $2.40
        self.assertEqual(st, 200, body)

        for n in (3, 3, 3):
            st, body, _ = self.post(s, token, n)
            self.assertEqual(st, 200, body)
            self.assertEqual(len(body["run_ids"]), n)
        sent = self.sent_runs(s)
        st, body, _ = self.post(s, token, 2)
        d = self.assert_402(s, st, body, "2031-01", "0.01", "0.02", sent)
        text = json.dumps(body)
        for other in ('"b"', "4321.98", "2.40", "ultra8x", "team b"):
            self.assertNotIn(other, text, "the 402 tells of another team")
        self.assertEqual(set(d), {"submission_id", "state", "budget", "period", "budget_usd",
                                  "spent_usd", "remaining_usd", "estimate_usd"})
        self.assertEqual((d["budget_usd"], d["spent_usd"]), ("0.10", "0.09"))

        st, body, _ = self.post(s, token, 1)
        self.assertEqual(st, 200, body)
        sent = self.sent_runs(s)
        st, body, _ = self.post(s, token, 1)
        self.assert_402(s, st, body, "2031-01", "0.00", "0.01", sent)
        budget = s.json_req("GET", "/v1/admin/teams/a/budget",
                            token=s.issue_token("a", role="admin")[0])
        self.assertEqual(budget[0], 200, budget)
        self.assertEqual((budget[1]["month"], budget[1]["month_spent_usd"],
                          budget[1]["month_remaining_usd"]), ("2031-01", "0.10", "0.00"))

        # A new UTC month: the budget starts again.
        self.clock.set("2031-02-01T00:00:10")
        st, body, _ = self.post(s, token, 3)
        self.assertEqual(st, 200, body)
        usage = s.json_req("GET", "/v1/audit/usage?by=month", token=token)[1]
        self.assertEqual([(u["month"], u["runs"], u["est_cost_usd"]) for u in usage["usage"]],
                         [("2031-01", 10, "0.10"), ("2031-02", 3, "0.03")])
        self.assertEqual(usage["total"], {"runs": 13, "est_cost_micro": 130000,
                                          "est_cost_usd": "0.13"})
        self.assertEqual(s.db_value("SELECT month || ' ' || month_micro FROM team_budgets "
                                    "WHERE team_id = (SELECT id FROM teams WHERE name = 'a')"),
                         "2031-02 30000")

    def test_failed_runs_give_back_and_unknown_holds_until_reconciled(self):
        s = self.start()
        self.clock.set("2031-05-20T10:00:00")
        s.add_team("a", KEY, preset={"processor": "base"})
        token, _ = s.issue_token("a")
        s.cli_ok("team", "budget", "a", "--monthly", "0.10")
        self.assertEqual(self.post(s, token, 5)[0], 200)
        # A call the upstream refuses created no runs: its estimate is given back.
        s.sim_fault(match="add_runs", kind="status", status=400)
        st, body, _ = self.post(s, token, 5)
        self.assertNotEqual(st, 200, body)
        s.sim_clear_faults()
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?",
                                    (body["error"]["detail"]["submission_id"],)), "failed")
        self.assertEqual(self.post(s, token, 3)[0], 200)  # 8 of 10 cents
        # A call whose outcome is unknown (nothing created, as it turns out) holds its 2
        # cents until it is reconciled.
        s.sim_fault(match="add_runs", kind="hang", apply=False, delay_ms=3000)
        st, body, _ = self.post(s, token, 2)
        self.assertEqual(st, 504, body)
        unknown = body["error"]["detail"]["submission_id"]
        s.sim_clear_faults()
        time.sleep(3)
        sent = self.sent_runs(s)
        st, body, _ = self.post(s, token, 1)
        self.assert_402(s, st, body, "2031-05", "0.00", "0.01", sent)
        r = s.cli("reconcile", unknown)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (unknown,)),
                         "failed")
        st, body, _ = self.post(s, token, 2)
        self.assertEqual(st, 200, body)
        st, body, _ = self.post(s, token, 1)
        self.assertEqual(st, 402, body)
        usage = s.json_req("GET", "/v1/audit/usage", token=token)[1]
        self.assertEqual(usage["total"]["runs"], 10)
        self.assertEqual(usage["total"]["est_cost_usd"], "0.10")

    # ---- racing for the last dollars -----------------------------------------------------

    def race(self, stacks, token, clients):
        results, lock = [], threading.Lock()

        def one(i):
            r = self.post(stacks[i % len(stacks)], token, 1)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return [r[0] for r in results]

    def test_racing_submissions_never_pass_the_budget(self):
        s = self.start()
        self.clock.set("2031-06-15T12:00:00")
        stacks = [s]
        if BACKEND == "postgresql":
            from test_pg_cluster import SecondDaemon
            second = SecondDaemon(s, {"test_clock_file": self.clock.path, "threads": 24})
            self._stacks.append(second)
            second.start()
            stacks.append(second)
        s.add_team("a", KEY, preset={"processor": "core"})  # $0.025 a run
        token, _ = s.issue_token("a")
        s.cli_ok("team", "budget", "a", "--monthly", "0.20")  # room for 8 runs
        s.sim_fault(match="add_runs", kind="delay", delay_ms=300, times=-1)
        statuses = self.race(stacks, token, 16)  # within a team's share of the workers
        s.sim_clear_faults()
        self.assertEqual(sorted(statuses), [200] * 8 + [402] * 8, statuses)
        self.assertEqual(self.sent_runs(s), 8)
        self.assertEqual(s.db_value("SELECT count(*) FROM audit_runs WHERE team = 'a'"), 8)
        self.assertEqual(s.db_value("SELECT month_micro FROM team_budgets"), 200000)
        self.assertEqual(s.db_value("SELECT count(*) FROM budget_holds WHERE open = 1"), 0)

    # ---- usage equals the runs times the price table -------------------------------------

    def test_usage_is_audit_runs_times_the_price_table(self):
        s = self.start()
        self.clock.set("2031-03-10T12:00:00")
        s.add_team("p", KEY, preset={"processor": "core"})
        s.add_team("q", KEY_B, preset={"processor": "lite"})
        token, _ = s.issue_token("p")
        token_q, _ = s.issue_token("q")
        audit, _ = s.issue_token("p", role="audit")
        for n, extra in ((3, None), (2, {"processor": "base-fast"}), (1, {"processor": "pro"}),
                         (4, {"processor": "core-fast"})):
            self.assertEqual(self.post(s, token, n, extra)[0], 200)
        self.assertEqual(self.post(s, token_q, 7)[0], 200)
        # A price change from tomorrow: what was recorded today keeps today's price.
        r = s.cli("price", "set", "core", "30", "--from", "2031-03-10")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("not after today", r.stderr)
        s.cli_ok("price", "set", "core", "30", "--from", "2031-03-11")
        self.assertEqual(self.post(s, token, 2)[0], 200)  # still the 10th: $25 a thousand
        self.clock.set("2031-03-11T09:00:00")
        self.assertEqual(self.post(s, token, 5)[0], 200)  # the 11th: $30
        self.assertEqual(self.post(s, token, 1, {"processor": "ultra2x"})[0], 200)

        table = prices_table(s)
        self.assertEqual([e for e in table["core"]], [("1970-01-01", 25000),
                                                      ("2031-03-11", 30000)])
        published = {"lite": 5, "base": 10, "core": 25, "core2x": 50, "pro": 100, "ultra": 300,
                     "ultra2x": 600, "ultra4x": 1200, "ultra8x": 2400}  # USD per 1,000 runs
        self.assertEqual({p: v[0] for p, v in table.items()},
                         {p: ("1970-01-01", usd * 1000) for p, usd in published.items()})
        listed = s.cli_ok("price", "list").stdout
        self.assertIn("ultra8x    1970-01-01      2400.00  published", listed)
        self.assertIn("core       2031-03-11        30.00  operator", listed)
        expect = {}
        for run in s.db("SELECT team, processor, submitted_at FROM audit_runs"):
            day = run[2][:10]
            key = (run[0], day, run[1])
            runs, micro = expect.get(key, (0, 0))
            expect[key] = (runs + 1, micro + price_of(table, run[1], day))
        status, usage, _ = s.json_req("GET", "/v1/audit/usage", token=audit)
        self.assertEqual(status, 200, usage)
        got = {(u["team"], u["day"], u["processor"]): (u["runs"], u["est_cost_micro"])
               for u in usage["usage"]}
        self.assertEqual(got, expect)
        self.assertEqual(got[("p", "2031-03-10", "core")], (5, 125000))
        self.assertEqual(got[("p", "2031-03-11", "core")], (5, 150000))
        self.assertEqual(got[("p", "2031-03-10", "base-fast")], (2, 20000))
        self.assertEqual(usage["total"]["est_cost_micro"], sum(v[1] for v in expect.values()))
        # The view, the CLI and CSV say the same.
        view = {(r[0], r[1], r[2]): (r[3], r[4]) for r in s.db(
            "SELECT team, day, processor, runs, est_cost_micro FROM audit_usage")}
        self.assertEqual(view, expect)
        cli = json.loads(s.cli_ok("audit", "usage", "--json").stdout)
        self.assertEqual(cli, usage)
        table_out = s.cli_ok("audit", "usage", "--by", "month", "--team", "p").stdout
        self.assertIn("2031-03", table_out)
        self.assertNotIn(" q ", table_out)
        csv = s.http("GET", "/v1/audit/usage?by=month",
                     headers={"Authorization": "Bearer " + audit, "Accept": "text/csv"})
        self.assertEqual(csv[0], 200)
        lines = csv[2].decode().split("\r\n")
        self.assertEqual(lines[0], "team,month,processor,runs,est_cost_micro,est_cost_usd")
        self.assertIn("p,2031-03,core,10,275000,0.275", lines)
        # Every call's runs are priced too.
        self.assertEqual(s.db_value("SELECT sum(est_cost_micro) FROM audit_costs"),
                         usage["total"]["est_cost_micro"])
        # A submit token reads its own team's usage, and nothing of another's.
        mine = s.json_req("GET", "/v1/audit/usage", token=token)[1]
        self.assertEqual({u["team"] for u in mine["usage"]}, {"p"})
        other = s.json_req("GET", "/v1/audit/usage?team=q", token=token)[1]
        self.assertEqual(other["usage"], [])
        theirs = s.json_req("GET", "/v1/audit/usage?team=q", token=token_q)[1]
        self.assertEqual([(u["processor"], u["runs"], u["est_cost_usd"]) for u in theirs["usage"]],
                         [("lite", 7, "0.035")])
        bad = s.json_req("GET", "/v1/audit/usage?by=week", token=audit)
        self.assertEqual(bad[0], 422, bad)
        self.assertEqual(bad[1]["detail"][0]["loc"], ["query", "by"])
        self.assertEqual(s.json_req("GET", "/v1/audit/usage?color=red", token=audit)[0], 422)
        self.assertGreater(s.db_value("SELECT count(*) FROM audit_reads WHERE query LIKE "
                                      "'%/v1/audit/usage%'"), 0)

    # ---- error paths ---------------------------------------------------------------------

    def test_bad_budget_values_and_unknown_teams(self):
        s = self.start()
        s.add_team("a", KEY, preset={"processor": "base"})
        admin, _ = s.issue_token("a", role="admin")
        submit, _ = s.issue_token("a")
        for args in (["--monthly", "-1"], ["--monthly", "abc"], ["--monthly", "1.1234567"],
                     ["--monthly", "1", "--daily", "2"], ["--monthly"], ["--weekly", "1"]):
            r = s.cli("team", "budget", "a", *args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
        r = s.cli("team", "budget", "nosuch", "--monthly", "1")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no team 'nosuch'", r.stderr)
        self.assertEqual(s.db_value("SELECT count(*) FROM team_budgets"), 0)

        for body, where in (({"monthly_usd": "x"}, "monthly_usd"),
                            ({"monthly_usd": 1.5}, "monthly_usd"),
                            ({"monthly_usd": "1", "daily_usd": "3"}, "daily_usd"),
                            ({"soft": "yes"}, "soft"), ({"weekly_usd": "1"}, "weekly_usd")):
            st, ans, _ = s.json_req("PUT", "/v1/admin/teams/a/budget", body, token=admin)
            self.assertEqual(st, 422, (body, ans))
            self.assertEqual(ans["detail"][0]["loc"], ["body", where], ans)
        st, ans, _ = s.json_req("PUT", "/v1/admin/teams/nosuch/budget", {"monthly_usd": "1"},
                                token=admin)
        self.assertEqual(st, 404, ans)
        self.assertEqual(s.json_req("PUT", "/v1/admin/teams/a/budget", {"monthly_usd": "1"},
                                    token=submit)[0], 403)
        st, ans, _ = s.json_req("PUT", "/v1/admin/teams/a/budget",
                                {"monthly_usd": "12.5", "daily_usd": "1", "soft": True},
                                token=admin)
        self.assertEqual(st, 200, ans)
        self.assertEqual((ans["monthly_usd"], ans["daily_usd"], ans["soft"]),
                         ("12.50", "1.00", True))
        s.cli_ok("team", "budget", "a", "--monthly", "0")
        out = s.cli_ok("team", "budget", "a").stdout
        self.assertIn("monthly=0.00 daily=1.00 soft", out)
        log = s.db("SELECT actor, interface, before, after FROM admin_log "
                   "WHERE action = 'team.budget' ORDER BY id")
        self.assertEqual(len(log), 2)
        self.assertEqual(log[0][1], "http")
        self.assertEqual(json.loads(log[0][3]), {"monthly_usd": "12.50", "daily_usd": "1.00",
                                                 "soft": True})
        self.assertEqual(log[1][1], "cli")
        self.assertEqual(json.loads(log[1][2])["monthly_usd"], "12.50")
        self.assertEqual(json.loads(log[1][3])["monthly_usd"], "0.00")
        r = s.cli("price", "set", "base-fast", "10")
        self.assertEqual(r.returncode, 2, r.stderr)
        r = s.cli("price", "set", "base", "10.0001")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_database_that_cannot_be_read_refuses(self):
        """The budget's row locked by another session past the busy timeout: the submission
        is refused with 503 and nothing is sent, never admitted unchecked."""
        s = self.start(db_busy_timeout_ms=500)
        s.add_team("a", KEY, preset={"processor": "base"})
        token, _ = s.issue_token("a")
        s.cli_ok("team", "budget", "a", "--monthly", "1")
        taken, done = threading.Event(), threading.Event()
        if BACKEND == "postgresql":
            sql = "BEGIN; LOCK TABLE team_budgets IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); ROLLBACK;"
            t = threading.Thread(target=lambda: pg_server().psql(sql, dbname=s.pg_dbname))
            t.start()
            deadline = time.monotonic() + 5
            while s.db_value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = "
                             "l.relation WHERE c.relname = 'team_budgets' AND l.granted AND "
                             "l.mode = 'AccessExclusiveLock'") != 1:
                self.assertLess(time.monotonic(), deadline, "could not take the lock")
                time.sleep(0.02)
        else:
            import sqlite3

            def hold():
                conn = sqlite3.connect(s.db_path, isolation_level=None, timeout=5)
                conn.execute("BEGIN EXCLUSIVE")
                taken.set()
                done.wait(3)
                conn.execute("ROLLBACK")
                conn.close()

            t = threading.Thread(target=hold)
            t.start()
            self.assertTrue(taken.wait(5))
        try:
            st, body, _ = self.post(s, token, 1)
        finally:
            done.set()
            t.join()
        self.assertEqual(st, 503, body)
        self.assertEqual(body["type"], "error")
        self.assertEqual(self.sent_runs(s), 0)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state IN "
                                    "('pending', 'accepted')"), 0)
        self.assertEqual(self.post(s, token, 1)[0], 200)

    def test_soft_budget_reports_once_and_never_refuses(self):
        s = self.start()
        self.clock.set("2031-07-01T08:00:00")
        s.add_team("a", KEY, preset={"processor": "base"})
        token, _ = s.issue_token("a")
        s.cli_ok("team", "budget", "a", "--monthly", "0.05", "--soft")
        for n in (3, 3, 3):
            self.assertEqual(self.post(s, token, n)[0], 200)
        metrics = s.http("GET", "/metrics")[2].decode()
        self.assertIn('taskgate_budget_crossed_total{team="a",budget="monthly"} 1', metrics)
        self.assertIn('taskgate_team_spend_usd{team="a"} 0.09', metrics)
        self.assertIn('taskgate_team_budget_remaining_usd{team="a",period="month"} -0.04',
                      metrics)
        log = s.daemon_log()
        self.assertEqual(log.count("passed its soft monthly budget"), 1, log[-2000:])


if __name__ == "__main__":
    unittest.main()
