"""The bound on the answers the daemon builds (max_answer_bytes), through real nginx and the
daemon: a read whose whole answer would pass it (an audit list, a CSV export, a group's
audit, a history page) gets a 400 in the upstream's error shape (a page for the browser),
never a 200 with part of the rows; the same data read in smaller pages is answered whole;
the refusals are counted in /metrics; a submission's answer, which tells of runs already
created, is never refused for its size. Run through ctest or directly with TG_BIN, TG_SIM,
TG_NGINX and TG_SOURCE_DIR set."""

import csv
import io
import json
import os
import re
import sys
import unittest
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Stack  # noqa: E402

BOUND = 65536          # max_answer_bytes: its smallest value
SUBS = 400             # submissions written directly, two runs each: lists well past BOUND
BIG_RUNS = 400         # runs of one submission, in one group: its page and group pass BOUND
START = datetime(2025, 3, 1, tzinfo=timezone.utc)


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


class AnswerBoundTest(unittest.TestCase):
    """One stack with max_answer_bytes = 64k, filled once; the tests only read it (but for
    the submission test, which adds its own)."""

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(name=cls.__name__, keys=["par-alpha"],
                      conf={"max_answer_bytes": "64k", "max_body_bytes": "64k"})
        cls.s.start()
        try:
            cls.s.add_team("alpha", "par-alpha", preset={"processor": "core"})
            cls.token, cls.token_id = cls.s.issue_token("alpha", label="alpha-ci")
            cls.auditor, _ = cls.s.issue_token("alpha", role="audit", label="auditor")
            cls.fill()
        except BaseException:
            cls.s.stop(keep=True)
            raise
        cls.failed = False

    @classmethod
    def tearDownClass(cls):
        cls.s.stop(keep=cls.failed)

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        try:
            return super().run(result)
        finally:
            if result is not None and len(result.failures) + len(result.errors) > before:
                type(self).failed = True

    @classmethod
    def fill(cls):
        """SUBS accepted submissions with a call and two runs each, and one (cls.big) with
        BIG_RUNS runs of long inputs in group cls.big_group, in the documented shapes."""
        conn = cls.s.db_connect()
        team_id = conn.execute("SELECT id FROM teams WHERE name = 'alpha'").fetchone()[0]

        def submission(sid, at, group, inputs):
            conn.execute(
                "INSERT INTO submissions (id, team_id, token_id, request_id, received_at,"
                " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state,"
                " http_status, upstream_status, error, request)"
                " VALUES (?, ?, ?, ?, ?, ?, '10.0.0.1', 'simplified', ?, ?, 'accepted', 200,"
                " 200, NULL, ?)",
                (sid, team_id, cls.token_id, "req_" + sid, rfc3339(at),
                 rfc3339(at + timedelta(milliseconds=5)), group, len(inputs),
                 json.dumps({"inputs": inputs})))
            conn.execute(
                "INSERT INTO upstream_calls (submission_id, seq, operation, method, path,"
                " first_input, num_inputs, started_at, finished_at, duration_ms, outcome,"
                " http_status, run_cursor, event_cursor, error)"
                " VALUES (?, 0, 'add_runs', 'POST', ?, 0, ?, ?, ?, 5, 'ok', 200, ?, ?, NULL)",
                (sid, "/v1/tasks/groups/%s/runs" % group, len(inputs), rfc3339(at),
                 rfc3339(at + timedelta(milliseconds=5)), "rcur_" + sid, "ecur_" + sid))
            for j in range(len(inputs)):
                conn.execute("INSERT INTO runs (run_id, submission_id, call_seq, input_index,"
                             " processor) VALUES (?, ?, 0, ?, 'base')",
                             ("trun_%s_%d" % (sid, j), sid, j))

        try:
            conn.execute("BEGIN IMMEDIATE")
            for i in range(SUBS):
                submission("sub_bound%04d" % i, START + timedelta(minutes=i),
                           "tgrp_bound%02d" % (i % 10), ["bound %d" % i, "again %d" % i])
            cls.big, cls.big_group = "sub_boundbig", "tgrp_boundbig"
            submission(cls.big, START - timedelta(days=1), cls.big_group,
                       ["input %d %s" % (j, "y" * 150) for j in range(BIG_RUNS)])
            conn.execute("COMMIT")
        finally:
            conn.close()

    # ---- helpers ----------------------------------------------------------------------------

    def get(self, path, token=None, headers=None):
        hdrs = {"Authorization": "Bearer " + (token or self.auditor)}
        hdrs.update(headers or {})
        return self.s.http("GET", path, None, hdrs)

    def assertTooLarge(self, status, rh, data, what):
        """The refusal: 400, the upstream's error shape, nothing of the rows."""
        self.assertEqual(status, 400, "%s answered %d: %s" % (what, status, data[:300]))
        self.assertEqual(rh.get("content-type"), "application/json", what)
        self.assertNotIn("x-next-cursor", rh, what)
        self.assertLess(len(data), 4096, what)
        body = json.loads(data.decode("utf-8"))
        self.assertEqual(body["type"], "error", body)
        self.assertEqual(body["error"]["ref_id"], rh.get("x-request-id"), body)
        self.assertIn("max_answer_bytes", body["error"]["message"])
        self.assertEqual(body["error"]["detail"], {"max_answer_bytes": BOUND}, body)
        return body["error"]["message"]

    def metric(self):
        status, _, data = self.s.http("GET", "/metrics")
        self.assertEqual(status, 200)
        m = re.search(rb"^taskgate_answers_too_large_total (\d+)$", data, re.M)
        self.assertIsNotNone(m, "no taskgate_answers_too_large_total in /metrics")
        return int(m.group(1))

    def all_pages(self, path, key="data"):
        rows, cursor = [], None
        while True:
            p = path if cursor is None else path + "&cursor=" + cursor
            status, rh, data = self.get(p)
            self.assertEqual(status, 200, "%s: %s" % (p, data[:300]))
            self.assertLessEqual(len(data), BOUND)
            body = json.loads(data.decode("utf-8"))
            rows += body[key]
            cursor = body["next_cursor"]
            if cursor is None:
                return rows

    # ---- lists and exports ------------------------------------------------------------------

    def test_a_list_past_the_bound_is_refused_whole(self):
        before = self.metric()
        for path in ("/v1/audit/submissions?limit=1000", "/v1/audit/runs?limit=1000"):
            status, rh, data = self.get(path)
            msg = self.assertTooLarge(status, rh, data, path)
            self.assertIn("limit", msg)
            self.assertIn("next_cursor", msg)
        self.assertEqual(self.metric(), before + 2)

    def test_a_csv_export_past_the_bound_is_refused_not_cut(self):
        for path, headers in (("/v1/audit/runs?format=csv&limit=1000", None),
                              ("/v1/audit/submissions?limit=1000", {"Accept": "text/csv"})):
            status, rh, data = self.get(path, headers=headers)
            self.assertTooLarge(status, rh, data, path)

    def test_narrower_reads_under_the_bound_are_answered_whole(self):
        status, rh, data = self.get("/v1/audit/runs?format=csv&limit=100")
        self.assertEqual(status, 200, data[:300])
        self.assertLessEqual(len(data), BOUND)
        table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        self.assertEqual(len(table), 101)  # the header and every row asked for
        self.assertTrue(data.endswith(b"\r\n"))
        self.assertIn("x-next-cursor", rh)
        # A narrower since gives a short list whole.
        since = rfc3339(START + timedelta(minutes=SUBS - 10))
        until = rfc3339(START + timedelta(minutes=SUBS))
        status, rh, data = self.get("/v1/audit/submissions?limit=1000&since=%s&until=%s"
                                    % (since, until))
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(len(json.loads(data.decode("utf-8"))["data"]), 10)
        # Every row, page by page under the bound.
        subs = self.all_pages("/v1/audit/submissions?limit=100&until=" + until)
        self.assertEqual(len(subs), SUBS + 1)
        self.assertEqual(len({r["submission_id"] for r in subs}), SUBS + 1)
        runs = self.all_pages("/v1/audit/runs?limit=100&until=" + until)
        self.assertEqual(len(runs), 2 * SUBS + BIG_RUNS)

    def test_a_group_past_the_bound_is_refused_and_pages_under_it(self):
        path = "/v1/audit/groups/%s?limit=1000" % self.big_group
        status, rh, data = self.get(path)
        self.assertTooLarge(status, rh, data, path)
        runs = self.all_pages("/v1/audit/groups/%s?limit=100" % self.big_group, key="runs")
        self.assertEqual(len(runs), BIG_RUNS)

    def test_one_object_past_the_bound_is_refused(self):
        path = "/v1/audit/submissions/" + self.big
        status, rh, data = self.get(path)
        self.assertTooLarge(status, rh, data, path)
        status, _, data = self.get("/v1/audit/submissions/sub_bound0001")
        self.assertEqual(status, 200, data[:300])
        self.assertEqual(len(json.loads(data.decode("utf-8"))["runs"]), 2)

    # ---- the browser ------------------------------------------------------------------------

    def history(self, path):
        """The page hands the token back in its form (its own answer to its own holder);
        the rest of it is scanned for secrets."""
        s = self.s
        status, rh, data = s._request(s.port, "POST", path, "token=" + self.token,
                                      {"Content-Type": "application/x-www-form-urlencoded",
                                       "Accept": "text/html"})
        s.record_answer("the history page " + path, data.replace(self.token.encode(), b"tg_"))
        return status, rh, data

    def test_a_history_page_past_the_bound_is_an_error_page(self):
        status, rh, data = self.history("/history/" + self.big)
        self.assertEqual(status, 400, data[:300])
        self.assertTrue(rh.get("content-type", "").startswith("text/html"), rh)
        page = data.decode("utf-8")
        self.assertIn("larger than the gateway builds at once", page)
        self.assertNotIn("trun_" + self.big, page)
        self.assertTrue(page.rstrip().endswith("</html>"), page[-200:])
        status, _, data = self.history("/history/sub_bound0001")
        self.assertEqual(status, 200, data[:300])
        self.assertIn(b"trun_sub_bound0001_1", data)
        status, _, data = self.history("/history")
        self.assertEqual(status, 200, data[:300])

    # ---- writes -----------------------------------------------------------------------------

    def test_a_submissions_answer_is_never_refused_for_its_size(self):
        """Its runs exist once the upstream created them: the answer that lists them is sent
        whole even past the bound (it is bounded by max_body_bytes and
        max_inputs_per_submission instead)."""
        inputs = ["i%d" % i for i in range(2500)]
        status, answer, _ = self.s.json_req("POST", "/v1/runs", {"inputs": inputs},
                                            token=self.token, timeout=60)
        self.assertEqual(status, 200, answer)
        self.assertEqual(len(answer["run_ids"]), len(inputs))
        self.assertGreater(len(json.dumps(answer)), BOUND)


if __name__ == "__main__":
    unittest.main(verbosity=2)
