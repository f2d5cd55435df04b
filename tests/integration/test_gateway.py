"""End-to-end tests of the foundation: real nginx with the project's site file, the real
daemon and the upstream simulator, driven over loopback the way a team's script would.
Run through ctest (`ctest -L integration`) or directly with TG_BIN, TG_SIM, TG_NGINX and
TG_SOURCE_DIR set."""

import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BACKEND, TOKEN_ID_RE, TOKEN_RE, StackTestCase,  # noqa: E402
                     key_fingerprint, strip_run_tags)

CREATE_GROUP_RE = re.compile(r"^/v1(beta)?/tasks/groups$")
ADD_RUNS_RE = re.compile(r"^/v1(beta)?/tasks/groups/([^/]+)/runs$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def new_key(team):
    """A Parallel-looking key that is unique to this run, so finding it anywhere means a leak."""
    return "par-%s-%s" % (team, secrets.token_hex(16))


def create_group_requests(reqs):
    return [r for r in reqs if r["method"] == "POST" and CREATE_GROUP_RE.match(r["path"])]


def add_runs_requests(reqs):
    return [r for r in reqs if r["method"] == "POST" and ADD_RUNS_RE.match(r["path"])]


def sim_cursors(group, call_index):
    """The (run_cursor, event_cursor) the simulator (tests/sim/tg_sim_api.c) returns for the
    call_index-th add-runs call to group (0-based; the first call has none)."""
    if call_index == 0:
        return None, None
    hexid = group[len("tgrp_"):]
    return "rcur_%s_%d" % (hexid, call_index), "ecur_%s_%d" % (hexid, call_index)


def group_of(req):
    return ADD_RUNS_RE.match(req["path"]).group(2)


class GatewayTestCase(StackTestCase):
    def assertErrorShape(self, body, status=None):
        """The upstream's error shape {"type":"error","error":{"ref_id","message"}}."""
        what = "answer%s: %r" % (" to a %d" % status if status else "", body)
        self.assertIsInstance(body, dict, what)
        self.assertEqual(body.get("type"), "error", what)
        err = body.get("error")
        self.assertIsInstance(err, dict, what)
        self.assertIsInstance(err.get("ref_id"), str, what)
        self.assertTrue(err["ref_id"], what)
        self.assertIsInstance(err.get("message"), str, what)
        self.assertTrue(err["message"], what)
        return err

    def submit(self, s, body, token, **kw):
        return s.json_req("POST", "/v1/runs", body, token=token, **kw)

    def submit_ok(self, s, body, token, **kw):
        status, answer, _ = self.submit(s, body, token, **kw)
        self.assertEqual(status, 200, "POST /v1/runs answered %d: %r" % (status, answer))
        self.assertIsInstance(answer, dict)
        self.assertEqual(answer.get("status"), "accepted", answer)
        self.assertRegex(answer.get("submission_id") or "", r"^sub_", answer)
        self.assertRegex(answer.get("taskgroup_id") or "", r"^tgrp_", answer)
        inputs = body["inputs"]
        self.assertEqual(len(answer.get("run_ids") or []), len(inputs), answer)
        self.assertEqual(len(set(answer["run_ids"])), len(inputs), "run ids repeat: %r" % answer)
        return answer

    def assertNoPending(self, s):
        pending = s.db("SELECT submission_id FROM audit_submissions WHERE state = 'pending'")
        self.assertEqual([r[0] for r in pending], [], "submissions left pending")


class SubmitTest(GatewayTestCase):
    """1. A team's script submits inputs and gets every run id back, in order, on record."""

    def test_json_submission_reaches_upstream_and_is_recorded(self):
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        token, token_id = s.issue_token("alpha", label="alpha-ci")
        inputs = ["What is the capital of France?", {"company": "Acme", "year": 2024},
                  "Third question"]

        answer = self.submit_ok(s, {"inputs": inputs}, token)
        group = answer["taskgroup_id"]

        # Upstream saw one group creation, then one add-runs call with the team's key.
        reqs = s.sim_requests()
        self.assertEqual(len(reqs), 2, "upstream requests: %r" % reqs)
        self.assertEqual(len(create_group_requests(reqs)), 1, reqs)
        adds = add_runs_requests(reqs)
        self.assertEqual(len(adds), 1, reqs)
        self.assertLess(reqs.index(create_group_requests(reqs)[0]), reqs.index(adds[0]))
        self.assertEqual(group_of(adds[0]), group)
        for r in reqs:
            self.assertEqual(r["headers"].get("x-api-key"), key, "upstream got the wrong key")
            self.assertEqual(r["status"], 200, r)
        self.assertNotIn(token, json.dumps(reqs), "the gateway token was sent upstream")
        sent = adds[0]["body"]["inputs"]
        self.assertEqual([i["input"] for i in sent], inputs)
        self.assertEqual([i.get("processor") for i in sent], ["core"] * 3,
                         "the team preset's processor was not applied")

        # The run ids come back in input order: the simulator's group holds them that way.
        runs = s.sim_group(group)
        self.assertEqual([r["run_id"] for r in runs], answer["run_ids"])
        self.assertEqual([r["input"] for r in runs], inputs)

        # One upstream call for 3 inputs; a group's first add-runs has no cursors yet.
        calls = answer.get("calls")
        self.assertEqual(len(calls), 1, answer)
        self.assertEqual((calls[0]["first_input"], calls[0]["num_inputs"],
                          calls[0]["http_status"]), (0, 3, 200), calls)
        self.assertIsNone(calls[0].get("run_cursor"), calls)
        self.assertIsNone(calls[0].get("event_cursor"), calls)

        # The audit trail has the submission and every run in order.
        sub = s.db("SELECT * FROM audit_submissions WHERE submission_id = ?",
                   (answer["submission_id"],))
        self.assertEqual(len(sub), 1)
        sub = sub[0]
        self.assertEqual((sub["team"], sub["token_label"], sub["token_id"], sub["interface"]),
                         ("alpha", "alpha-ci", token_id, "simplified"))
        self.assertEqual((sub["state"], sub["http_status"], sub["upstream_status"]),
                         ("accepted", 200, 200))
        self.assertEqual((sub["taskgroup_id"], sub["num_inputs"]), (group, 3))
        self.assertEqual(sub["remote_addr"], "127.0.0.1")
        self.assertRegex(sub["received_at"], TIME_RE)
        self.assertRegex(sub["completed_at"] or "", TIME_RE)
        self.assertLessEqual(sub["received_at"], sub["completed_at"])
        rows = s.db("SELECT * FROM audit_runs WHERE submission_id = ? ORDER BY input_index",
                    (answer["submission_id"],))
        self.assertEqual([(r["run_id"], r["input_index"]) for r in rows],
                         list(zip(answer["run_ids"], range(3))))
        for r in rows:
            self.assertEqual((r["team"], r["token_label"], r["taskgroup_id"], r["processor"]),
                             ("alpha", "alpha-ci", group, "core"))
            self.assertIsNone(r["run_cursor"])
            self.assertIsNone(r["event_cursor"])

        # A second submission to the same group: no new group, and now the cursors are real.
        s.sim_clear()
        more = ["Fourth", "Fifth"]
        answer2 = self.submit_ok(s, {"inputs": more, "taskgroup_id": group}, token)
        self.assertEqual(answer2["taskgroup_id"], group)
        self.assertNotEqual(answer2["submission_id"], answer["submission_id"])
        reqs = s.sim_requests()
        self.assertEqual(create_group_requests(reqs), [], "a new group was created")
        adds = add_runs_requests(reqs)
        self.assertEqual(len(adds), 1, reqs)
        self.assertEqual(group_of(adds[0]), group)
        self.assertEqual([r["run_id"] for r in s.sim_group(group)],
                         answer["run_ids"] + answer2["run_ids"])
        call = answer2["calls"][0]
        self.assertEqual((call["first_input"], call["num_inputs"]), (0, 2))
        self.assertEqual((call.get("run_cursor"), call.get("event_cursor")),
                         sim_cursors(group, 1), "not the cursors the simulator returned")
        self.assertEqual(answer2.get("run_cursor"), call["run_cursor"])
        self.assertEqual(answer2.get("event_cursor"), call["event_cursor"])
        rows = s.db("SELECT * FROM audit_runs WHERE submission_id = ? ORDER BY input_index",
                    (answer2["submission_id"],))
        self.assertEqual([(r["run_id"], r["input_index"]) for r in rows],
                         list(zip(answer2["run_ids"], range(2))))
        for r in rows:
            self.assertEqual((r["run_cursor"], r["event_cursor"]),
                             (call["run_cursor"], call["event_cursor"]))
        states = s.db("SELECT state, http_status FROM audit_submissions")
        self.assertEqual([tuple(r) for r in states], [("accepted", 200)] * 2)


class AuthTest(GatewayTestCase):
    """2. Without a valid token nothing goes upstream and nothing is recorded."""

    def test_bad_tokens_get_401_and_nothing_goes_upstream(self):
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        revoked, revoked_id = s.issue_token("alpha", label="old")
        s.revoke_token(revoked_id)
        body = {"inputs": ["hello"]}
        cases = [
            ("no token", {}),
            ("unknown Bearer token", {"Authorization": "Bearer tg_" + secrets.token_hex(24)}),
            ("unknown x-api-key", {"x-api-key": "tg_" + secrets.token_hex(24)}),
            ("malformed token", {"Authorization": "Bearer not-a-token"}),
            ("the team's Parallel key", {"x-api-key": key}),
            ("revoked Bearer token", {"Authorization": "Bearer " + revoked}),
            ("revoked x-api-key", {"x-api-key": revoked}),
        ]
        for what, headers in cases:
            with self.subTest(what):
                status, answer, _ = s.json_req("POST", "/v1/runs", body, headers=headers)
                self.assertEqual(status, 401, "%s: %r" % (what, answer))
                self.assertErrorShape(answer, 401)
        self.assertEqual(s.sim_requests(), [], "a rejected request went upstream")
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions"), 0,
                         "a 401 without a known team was recorded")

        # An expired token is refused the same way.
        past = "2001-01-01T00:00:00Z"
        r = s.cli("token", "issue", "alpha", "--expires", past)
        if r.returncode != 0:  # the CLI may refuse a date in the past: expire one shortly
            soon = datetime.now(timezone.utc) + timedelta(seconds=2)
            r = s.cli("token", "issue", "alpha", "--expires",
                      soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.assertEqual(r.returncode, 0, r.stderr)
            time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.5)
        expired = r.stdout.strip()
        status, answer, _ = self.submit(s, body, expired)
        self.assertEqual(status, 401, answer)
        self.assertErrorShape(answer, 401)
        self.assertEqual(s.sim_requests(), [], "an expired token's request went upstream")

    def test_changes_by_the_cli_hold_at_once_on_every_worker(self):
        """Workers answer a token they checked before from memory: a preset changed or the
        token revoked from the command line holds for the very next submission, whichever
        worker takes it and whatever its body."""
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        token, token_id = s.issue_token("alpha")

        def burst(bodies):
            """Five at a time (under the team's worker share), each thread in turn."""
            results = [None] * len(bodies)

            def one(k):
                for i in range(k, len(bodies), 5):
                    try:
                        results[i] = self.submit(s, bodies[i], token, timeout=30)
                    except Exception as e:  # reported below
                        results[i] = e
            threads = [threading.Thread(target=one, args=(k,)) for k in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for r in results:
                self.assertNotIsInstance(r, Exception)
            return results

        # Many at once, so that many workers have the token in memory.
        for status, answer, _ in burst([{"inputs": ["w%d" % i]} for i in range(48)]):
            self.assertEqual(status, 200, answer)

        s.set_preset("alpha", "default", {"processor": "lite"})
        s.sim_clear()
        for status, answer, _ in burst([{"inputs": ["p%d" % i]} for i in range(24)]):
            self.assertEqual(status, 200, answer)
        sent = [i for r in add_runs_requests(s.sim_requests()) for i in r["body"]["inputs"]]
        self.assertEqual(len(sent), 24)
        self.assertEqual({i.get("processor") for i in sent}, {"lite"})

        s.revoke_token(token_id)
        s.sim_clear()
        before = s.db_value("SELECT count(*) FROM submissions")
        bodies = [{"inputs": ["r%d" % i]} for i in range(16)] + \
                 [{"inputs": []} for _ in range(8)] + ["{not json" for _ in range(8)]
        for status, answer, _ in burst(bodies):
            self.assertEqual(status, 401, answer)
            self.assertErrorShape(answer, 401)
        self.assertEqual(s.sim_requests(), [], "a revoked token's request went upstream")
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions"), before,
                         "a revoked token's request was recorded")
        if BACKEND == "sqlite":  # PostgreSQL's handles read every token they check
            status, _, text = s.http("GET", "/metrics")
            self.assertEqual(status, 200)
            m = re.search(rb"^taskgate_auth_rechecks_total (\d+)$", text, re.M)
            self.assertIsNotNone(m, "no taskgate_auth_rechecks_total")
            self.assertGreater(int(m.group(1)), 0, "no submission met a changed token")

    def test_both_header_styles_work(self):
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        token, _ = s.issue_token("alpha")
        for what, headers in (("Authorization: Bearer", {"Authorization": "Bearer " + token}),
                              ("x-api-key", {"x-api-key": token})):
            with self.subTest(what):
                status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q1", "q2"]},
                                               headers=headers)
                self.assertEqual(status, 200, "%s: %r" % (what, answer))
                self.assertEqual(len(answer["run_ids"]), 2)
        adds = add_runs_requests(s.sim_requests())
        self.assertEqual(len(adds), 2)
        self.assertEqual([a["headers"].get("x-api-key") for a in adds], [key, key])
        self.assertEqual(s.db_value("SELECT count(*) FROM audit_submissions "
                                    "WHERE state = 'accepted'"), 2)


class UpstreamFailureTest(GatewayTestCase):
    """3. Upstream errors and silences reach the client as 502 / 504 and stay on record."""

    def test_upstream_500_is_502_and_failed(self):
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        token, _ = s.issue_token("alpha")
        s.sim_fault(match="add_runs", kind="status", status=500)

        status, answer, _ = self.submit(s, {"inputs": ["a", "b", "c"]}, token)
        self.assertEqual(status, 502, answer)
        err = self.assertErrorShape(answer, 502)
        self.assertRegex(err["message"], re.compile(r"500|upstream|parallel", re.I))
        detail = err.get("detail") or {}
        self.assertRegex(detail.get("submission_id") or "", r"^sub_", err)
        with self.subTest("error.detail.state"):
            self.assertEqual(detail.get("state"), "failed", err)

        self.assertEqual([r["status"] for r in add_runs_requests(s.sim_requests())], [500])
        rows = s.db("SELECT * FROM audit_submissions WHERE submission_id = ?",
                    (detail["submission_id"],))
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row["state"], row["http_status"], row["upstream_status"]),
                         ("failed", 502, 500))
        self.assertTrue(row["error"], "no error text on a failed submission")
        self.assertIsNotNone(row["completed_at"])
        self.assertEqual(s.db_value("SELECT count(*) FROM audit_runs"), 0)
        self.assertNoPending(s)

    def test_upstream_silence_is_504_and_unknown(self):
        key = new_key("alpha")
        s = self.stack(keys=[key], upstream_timeout_ms=1500)
        s.add_team("alpha", key, preset={"processor": "core"})
        token, _ = s.issue_token("alpha")
        # The runs are created upstream but the answer never comes: only an operator can
        # tell, so the gateway must say "unknown", not "failed".
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=20000)

        t0 = time.monotonic()
        status, answer, _ = self.submit(s, {"inputs": ["a", "b", "c"]}, token, timeout=20)
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 504, answer)
        self.assertLess(elapsed, 6.0, "a 1.5 s upstream timeout took %.1f s" % elapsed)
        err = self.assertErrorShape(answer, 504)
        self.assertRegex(err["message"], re.compile(r"time|1500|answer|respond", re.I))
        detail = err.get("detail") or {}
        self.assertRegex(detail.get("submission_id") or "", r"^sub_", err)
        with self.subTest("error.detail.state"):
            self.assertEqual(detail.get("state"), "unknown", err)

        rows = s.db("SELECT * FROM audit_submissions WHERE submission_id = ?",
                    (detail["submission_id"],))
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row["state"], row["http_status"]), ("unknown", 504))
        with self.subTest("upstream_status"):
            # The schema: "the last upstream call's HTTP status". The add-runs call got no
            # answer, so there is none; the group creation's 200 would read as success.
            self.assertIsNone(row["upstream_status"],
                              "upstream_status of a submission whose last call got no answer")
        self.assertTrue(row["error"], "no error text on an unknown submission")
        self.assertIsNotNone(row["completed_at"])
        # The record names the group, so the operator can find the runs that did start.
        self.assertRegex(row["taskgroup_id"] or "", r"^tgrp_")
        self.assertEqual(len(s.sim_group(row["taskgroup_id"])), 3)
        self.assertNoPending(s)


class TeamIsolationTest(GatewayTestCase):
    """4. Each team's requests carry its own key and defaults; keys never leak."""

    def test_teams_use_their_own_keys_and_presets(self):
        key_a, key_b = new_key("a"), new_key("b")
        s = self.stack(keys=[key_a, key_b])
        preset_a = {"processor": "core", "metadata": {"team": "a"}}
        preset_b = {"processor": "pro", "metadata": {"team": "b"}}
        s.add_team("team-a", key_a, preset=preset_a)
        s.add_team("team-b", key_b, preset=preset_b)
        tok_a, _ = s.issue_token("team-a")
        tok_b, _ = s.issue_token("team-b")

        bodies = []
        for token, inputs, team_key, preset in ((tok_a, ["a1", "a2"], key_a, preset_a),
                                                (tok_b, ["b1", "b2", "b3"], key_b, preset_b)):
            s.sim_clear()
            status, answer, _ = self.submit(s, {"inputs": inputs}, token)
            self.assertEqual(status, 200, answer)
            bodies.append(json.dumps(answer))
            reqs = strip_run_tags(s.sim_requests())
            self.assertEqual(len(reqs), 2, reqs)
            for r in reqs:
                self.assertEqual(r["headers"].get("x-api-key"), team_key)
            sent = add_runs_requests(reqs)[0]["body"]["inputs"]
            self.assertEqual([i["input"] for i in sent], inputs)
            for i in sent:
                self.assertEqual(i.get("processor"), preset["processor"], i)
                self.assertEqual(i.get("metadata"), preset["metadata"], i)

        # The submission's own field wins over the preset; the rest of the preset stays.
        s.sim_clear()
        status, answer, _ = self.submit(s, {"inputs": ["a3"], "processor": "base"}, tok_a)
        self.assertEqual(status, 200, answer)
        bodies.append(json.dumps(answer))
        sent = add_runs_requests(strip_run_tags(s.sim_requests()))[0]["body"]["inputs"]
        self.assertEqual(sent[0].get("processor"), "base", sent)
        self.assertEqual(sent[0].get("metadata"), {"team": "a"}, sent)
        self.assertEqual(s.db_value("SELECT processor FROM audit_runs WHERE run_id = ?",
                                    (answer["run_ids"][0],)), "base")

        teams = s.db("SELECT team, count(*) AS n FROM audit_runs GROUP BY team ORDER BY team")
        self.assertEqual([tuple(r) for r in teams], [("team-a", 3), ("team-b", 3)])

        # Stop the daemon so that everything it logged is on disk, then look for the keys.
        self.assertEqual(s.stop_daemon(), 0, "the daemon did not exit 0 on SIGTERM")
        log = s.daemon_log()
        for name, key in (("team-a", key_a), ("team-b", key_b)):
            self.assertNotIn(key, log, "%s's key is in the daemon log" % name)
            for body in bodies:
                self.assertNotIn(key, body, "%s's key is in a response" % name)


class ShutdownTest(GatewayTestCase):
    """5. SIGTERM lets requests in flight finish and record their runs."""

    def test_sigterm_finishes_requests_in_flight(self):
        key = new_key("alpha")
        s = self.stack(keys=[key])
        s.add_team("alpha", key, preset={"processor": "core"})
        token, _ = s.issue_token("alpha")
        s.sim_fault(kind="delay", delay_ms=1500, times=4)

        results = [None] * 4

        def submit(i):
            try:
                results[i] = self.submit(s, {"inputs": ["q%d-0" % i, "q%d-1" % i]}, token,
                                         timeout=30)
            except Exception as e:  # reported below, with the others
                results[i] = e

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        # SIGTERM once all four are inside the daemon: at least 300 ms in, and every one
        # written as pending (which happens before anything goes upstream).
        time.sleep(0.3)
        while time.monotonic() - t0 < 1.2:
            if s.db_value("SELECT count(*) FROM submissions WHERE state = 'pending'") == 4:
                break
            time.sleep(0.05)
        pending = s.db_value("SELECT count(*) FROM submissions WHERE state = 'pending'")
        s.daemon_signal(signal.SIGTERM)
        self.assertEqual(pending, 4, "not all four submissions were in flight at SIGTERM")

        code = s.daemon_wait(10)
        for t in threads:
            t.join(30)
        self.assertEqual(code, 0, "the daemon did not exit 0 within 10 s of SIGTERM")
        for i, res in enumerate(results):
            with self.subTest(request=i):
                self.assertNotIsInstance(res, Exception)
                status, answer, _ = res
                self.assertEqual(status, 200, answer)
                self.assertEqual(len(answer["run_ids"]), 2, answer)

        subs = s.db("SELECT submission_id, state FROM audit_submissions")
        self.assertEqual(sorted(r["state"] for r in subs), ["accepted"] * 4)
        ok = [r for r in results if not isinstance(r, Exception) and r[0] == 200]
        for _, answer, _ in ok:
            rows = s.db("SELECT run_id FROM audit_runs WHERE submission_id = ? "
                        "ORDER BY input_index", (answer["submission_id"],))
            self.assertEqual([r[0] for r in rows], answer["run_ids"])


class RecordingFailureTest(GatewayTestCase):
    """The upstream accepted, but the answer cannot be recorded: never 'pending' forever,
    never a 503 that invites a blind retry."""

    def test_unrecordable_answer_settles_unknown(self):
        s = self.stack()
        s.add_team("rec", new_key("rec"), preset={"processor": "core"})
        token, _ = s.issue_token("rec")
        first = self.submit_ok(s, {"inputs": ["q"]}, token)
        # The upstream answers the next add-runs with a run id the database already holds.
        body = json.dumps({"status": {"num_task_runs": 2, "task_run_status_counts": {},
                                      "is_active": True, "status_message": None,
                                      "modified_at": None},
                           "run_ids": first["run_ids"], "run_cursor": "r", "event_cursor": "e"})
        s.sim_fault(match="add_runs", kind="status", status=200, body=body)
        status, answer, _ = self.submit(s, {"inputs": ["q2"], "taskgroup_id":
                                            first["taskgroup_id"]}, token)
        self.assertEqual(status, 500, answer)
        err = self.assertErrorShape(answer, 500)
        self.assertEqual(err["detail"]["state"], "unknown", err)
        self.assertIn("do not resubmit", err["message"])
        sub = err["detail"]["submission_id"]
        self.assertEqual(s.db_value("SELECT state FROM audit_submissions WHERE submission_id = ?",
                                    (sub,)), "unknown")
        self.assertNoPending(s)


class CrashRecoveryTest(GatewayTestCase):
    """kill -9 while a submission is in flight: on restart it is unknown, never pending."""

    def test_pending_becomes_unknown_after_a_crash(self):
        # Without the start-up reconcile pass, which would settle it at once
        # (test_reconcile.py covers that).
        s = self.stack(upstream_timeout_ms=30000, conf={"reconcile_on_start": 0})
        s.add_team("crash", new_key("crash"), preset={"processor": "core"})
        token, _ = s.issue_token("crash")
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=20000)
        answers = []
        t = threading.Thread(target=lambda: answers.append(
            self.submit(s, {"inputs": ["q"]}, token, timeout=30)))
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if s.db_value("SELECT count(*) FROM audit_submissions WHERE state = 'pending'"):
                break
            time.sleep(0.05)
        sub = s.db_value("SELECT submission_id FROM audit_submissions WHERE state = 'pending'")
        self.assertIsNotNone(sub, "the submission was never recorded as pending")
        s.daemon_signal(signal.SIGKILL)
        t.join(30)
        self.assertEqual(answers[0][0], 503, answers)  # nginx's own answer, in the error shape
        self.assertErrorShape(answers[0][1], 503)
        s.stop_daemon()
        s.restart_daemon()
        row = s.db("SELECT state, error FROM audit_submissions WHERE submission_id = ?", (sub,))[0]
        self.assertEqual(row["state"], "unknown")
        self.assertIn("daemon stopped", row["error"])
        self.assertIn("now 'unknown'", s.daemon_log())
        self.assertNoPending(s)


class SecretsInRecordsTest(GatewayTestCase):
    """MCP server headers are credentials: forwarded upstream, fingerprinted in the record."""

    def test_mcp_header_values_are_not_stored(self):
        s = self.stack()
        s.add_team("mcp", new_key("mcp"), preset={"processor": "core"})
        token, _ = s.issue_token("mcp")
        secret = "Bearer mcp-" + secrets.token_hex(12)
        body = {"inputs": ["q"], "mcp_servers": [
            {"type": "url", "name": "crm", "url": "https://mcp.example.com/sse",
             "headers": {"Authorization": secret}}]}
        answer = self.submit_ok(s, body, token)
        sent = add_runs_requests(s.sim_requests())[0]
        self.assertEqual(sent["body"]["inputs"][0]["mcp_servers"][0]["headers"]["Authorization"],
                         secret, "the upstream needs the real header")
        self.assertIn("mcp-server-2025-07-17", sent["headers"].get("parallel-beta", ""))
        stored = s.db_value("SELECT request FROM submissions WHERE id = ?",
                            (answer["submission_id"],))
        self.assertNotIn(secret, stored)
        self.assertNotIn(secret.split(" ")[1], stored)
        self.assertRegex(json.loads(stored)["mcp_servers"][0]["headers"]["Authorization"],
                         r"^sha256:[0-9a-f]{12}$")
        for suffix in ("", "-wal"):  # WAL mode: fresh rows sit in the -wal file
            if os.path.exists(s.db_path + suffix):
                with open(s.db_path + suffix, "rb") as f:
                    self.assertNotIn(secret.split(" ")[1].encode(), f.read(), suffix)


class CliTest(GatewayTestCase):
    """6. The taskgate command an operator types."""

    def test_cli_basics(self):
        s = self.stack(sim=False, daemon=False, nginx=False)

        r = s.cli("--help", config=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("token issue", r.stdout)

        r = s.cli("frobnicate")
        self.assertEqual(r.returncode, 2, "unknown subcommand: %r" % (r,))
        self.assertTrue(r.stderr.strip(), "an unknown subcommand says nothing on stderr")

        key = new_key("ops")
        r = s.cli("team", "add", "ops", input=key + "\n")
        # A bad preset is refused with every problem named, and nothing is stored.
        bad = json.dumps({"metadata": {"averyveryverylongkey": 1},
                          "source_policy": {"include_domains": ["localhost"]}})
        rp = s.cli("preset", "set", "ops", "bad", "-", input=bad)
        self.assertEqual(rp.returncode, 1, rp)
        self.assertIn("metadata.averyveryverylongkey: metadata keys may have at most 16 "
                      "characters", rp.stderr)
        self.assertIn("source_policy.include_domains.0: expected a domain", rp.stderr)
        self.assertEqual(s.cli("preset", "list", "ops").stdout, "")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(key, r.stdout + r.stderr)
        # Stored sealed (AES-256-GCM under the key file), never as typed; that it is the
        # key typed is checked end to end by test_secrets.py (the upstream receives it).
        stored = s.db_value("SELECT upstream_key FROM teams WHERE name = 'ops'")
        self.assertTrue(stored.startswith("tgk1."), "the key is not stored sealed: %r" % stored)
        self.assertNotIn(key, stored)
        r = s.cli("team", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ops", r.stdout)
        self.assertNotIn(key, r.stdout + r.stderr, "team list shows the Parallel key")
        self.assertIn(key_fingerprint(key), r.stdout, "team list shows no key fingerprint")

        r = s.cli("token", "issue", "ops", "--label", "deploy")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^tg_[0-9a-f]{48}\n?$", "stdout must hold the token alone")
        token = r.stdout.strip()
        self.assertRegex(token, TOKEN_RE)
        m = TOKEN_ID_RE.search(r.stderr)
        self.assertIsNotNone(m, "no id=tok_… on stderr: %r" % r.stderr)
        token_id = m.group(1)
        self.assertNotIn(token, r.stderr)
        row = s.db("SELECT hash FROM tokens WHERE id = ?", (token_id,))
        self.assertEqual(row[0]["hash"], hashlib.sha256(token.encode()).hexdigest())
        r = s.cli("token", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(token_id, r.stdout)
        self.assertNotIn(token, r.stdout, "token list shows the token itself")

        for _ in range(2):
            r = s.cli("init")
            self.assertEqual(r.returncode, 0, "init again: %s" % r.stderr)
        r = s.cli("team", "list")
        self.assertIn("ops", r.stdout, "init again lost the teams")
        self.assertEqual(s.db_value("SELECT count(*) FROM tokens"), 1)


if __name__ == "__main__":
    unittest.main()
