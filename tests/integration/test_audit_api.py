"""The audit trail's read interfaces: GET /v1/audit/submissions[/{id}], /v1/audit/runs[/{id}]
and /v1/audit/groups/{id} through real nginx and the daemon, and `taskgate audit ...`.
Team isolation (a submit token sees its own team only, by every path), keyset pagination
over more than 1,000 submissions, CSV that parses back into the JSON's rows, the detail
answers' calls and cursors, filters and their 422s, and the log of every read
(audit_reads). Run through ctest or directly with TG_BIN, TG_SIM, TG_NGINX and
TG_SOURCE_DIR set."""

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

from harness import Stack, StackTestCase  # noqa: E402

SUB_COLUMNS = [
    "submission_id", "team", "token_label", "received_at", "completed_at", "remote_addr",
    "interface", "taskgroup_id", "num_inputs", "state", "http_status", "upstream_status",
    "error", "token_id", "request_id"]
RUN_COLUMNS = [
    "run_id", "submission_id", "team", "token_label", "submitted_at", "taskgroup_id",
    "input_index", "processor", "run_cursor", "event_cursor", "call_seq", "status", "error",
    "completed_at"]
SUB_ORDER = " ORDER BY received_at DESC, submission_id DESC"
RUN_ORDER = " ORDER BY submitted_at DESC, submission_id DESC, input_index"
BULK = 1000
BULK_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
# Values CSV must quote: a comma, quotes, a line break, and text beyond ASCII.
AWKWARD = 'upstream said "no", try again,\nlater \u2014 \u00fcn\u00efcode'


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def sim_cursors(group, call_index):
    """The cursors tests/sim returns for the call_index-th add-runs call to group."""
    if call_index == 0:
        return None, None
    hexid = group[len("tgrp_"):]
    return "rcur_%s_%d" % (hexid, call_index), "ecur_%s_%d" % (hexid, call_index)


def as_csv(value):
    return "" if value is None else str(value)


class AuditApiTest(unittest.TestCase):
    """One stack, filled once by real submissions and by 1,000 submissions written directly
    in the documented shapes; the tests only read it."""

    @classmethod
    def setUpClass(cls):
        cls.failed = False
        cls.s = Stack(name=cls.__name__, keys=["par-alpha", "par-beta"],
                      conf={"chunk_size": 2})
        cls.s.start()
        try:
            cls.populate()
        except BaseException:
            cls.s.stop(keep=True)
            raise

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

    # ---- the populated database ------------------------------------------------------------

    @classmethod
    def post(cls, team, body):
        return cls.s.json_req("POST", "/v1/runs", body, token=cls.tokens[team])

    @classmethod
    def populate(cls):
        s = cls.s
        s.add_team("alpha", "par-alpha", preset={"processor": "core"})
        s.add_team("beta", "par-beta", preset={"processor": "core"})
        cls.tokens, cls.token_ids = {}, {}
        for team in ("alpha", "beta"):
            cls.tokens[team], cls.token_ids[team] = s.issue_token(team, label=team + "-ci")
        cls.auditor, cls.auditor_id = s.issue_token("beta", role="audit", label="auditor")
        cls.admin, cls.admin_id = s.issue_token("alpha", role="admin", label="admin")

        cls.real = {"alpha": {}, "beta": {}}
        for team in ("alpha", "beta"):
            real = cls.real[team]
            # accepted: 3 inputs in chunks of 2, then one more input into the same group, so
            # that the group's later add-runs calls carry cursors.
            status, answer, _ = cls.post(team, {"inputs": [team + "1", team + "2", team + "3"]})
            assert status == 200, answer
            real["accepted"] = answer
            status, more, _ = cls.post(team, {"inputs": [team + "4"],
                                              "taskgroup_id": answer["taskgroup_id"]})
            assert status == 200, more
            real["more"] = more
            # rejected: no inputs.
            status, answer, _ = cls.post(team, {"inputs": []})
            assert status == 422, answer
            # failed: the upstream refuses the add-runs call.
            s.sim_fault(match="add_runs", kind="status", status=500)
            status, answer, _ = cls.post(team, {"inputs": ["doomed"]})
            assert status == 502, answer
            real["failed"] = answer["error"]["detail"]["submission_id"]
            real["rejected"] = s.db_value(
                "SELECT submission_id FROM audit_submissions WHERE team = ? AND state ="
                " 'rejected'", (team,))
        s.sim_clear_faults()
        cls.bulk_insert()

    @classmethod
    def bulk_insert(cls):
        """1,000 submissions of both teams, three at a time sharing one timestamp (so that
        pages must break ties by id), in every state and both interfaces; the accepted ones
        with a call and two runs, the failed ones with a refused call."""
        states = ["accepted", "rejected", "failed", "unknown", "pending", "accepted"]
        conn = cls.s.db_connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i in range(BULK):
                team = "alpha" if i % 2 == 0 else "beta"
                team_id = conn.execute("SELECT id FROM teams WHERE name = ?", (team,)).fetchone()[0]
                sid = "sub_bulk%04d%s" % (i, "x" * (i % 3))
                at = BULK_START + timedelta(hours=i // 3)
                state = states[i % len(states)]
                group = None if state == "rejected" else "tgrp_bulk%02d_%s" % (i % 10, team)
                status = {"accepted": 200, "rejected": 422, "failed": 502, "unknown": 504}
                conn.execute(
                    "INSERT INTO submissions (id, team_id, token_id, request_id, received_at,"
                    " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state,"
                    " http_status, upstream_status, error, request)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 2, ?, ?, ?, ?, ?)",
                    (sid, team_id, cls.token_ids[team], "req%04d" % i, rfc3339(at),
                     None if state == "pending" else rfc3339(at + timedelta(milliseconds=5)),
                     "10.0.%d.%d" % (i // 250, i % 250),
                     "upstream-compatible" if i % 4 == 0 else "simplified", group, state,
                     status.get(state), {"accepted": 200, "failed": 500}.get(state),
                     AWKWARD if state in ("failed", "rejected") else None,
                     json.dumps({"inputs": ["bulk %d" % i, {"n": i}]})))
                if state in ("accepted", "failed"):
                    ok = state == "accepted"
                    conn.execute(
                        "INSERT INTO upstream_calls (submission_id, seq, operation, method, path,"
                        " first_input, num_inputs, started_at, finished_at, duration_ms, outcome,"
                        " http_status, run_cursor, event_cursor, error)"
                        " VALUES (?, 0, 'add_runs', 'POST', ?, 0, 2, ?, ?, 5, ?, ?, ?, ?, ?)",
                        (sid, "/v1/tasks/groups/%s/runs" % group, rfc3339(at),
                         rfc3339(at + timedelta(milliseconds=5)), "ok" if ok else "error",
                         200 if ok else 500, "rcur_bulk_%d" % i if ok else None,
                         "ecur_bulk_%d" % i if ok else None, None if ok else AWKWARD))
                    for j in range(2 if ok else 0):
                        conn.execute("INSERT INTO runs (run_id, submission_id, call_seq,"
                                     " input_index, processor) VALUES (?, ?, 0, ?, 'base')",
                                     ("trun_bulk%04d_%d" % (i, j), sid, j))
            conn.execute("COMMIT")
        finally:
            conn.close()

    # ---- helpers ----------------------------------------------------------------------------

    def get(self, path, token=None, headers=None, api_key=False):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["x-api-key" if api_key else "Authorization"] = (
                token if api_key else "Bearer " + token)
        status, rh, data = self.s.http("GET", path, None, hdrs)
        return status, data, rh

    def get_json(self, path, token, expect=200):
        status, data, rh = self.get(path, token)
        body = json.loads(data.decode("utf-8")) if data else None
        self.assertEqual(status, expect, "%s answered %d: %s" % (path, status, data[:500]))
        return body, rh

    @staticmethod
    def with_cursor(path, cursor):
        return path + ("&" if "?" in path else "?") + "cursor=" + cursor

    def all_pages(self, path, token, key="data"):
        """Every row of a list, following next_cursor; returns (rows, number of pages)."""
        rows, pages, cursor = [], 0, None
        while True:
            body, rh = self.get_json(path if cursor is None else self.with_cursor(path, cursor),
                                     token)
            pages += 1
            rows += body[key]
            cursor = body["next_cursor"]
            self.assertEqual(rh.get("x-next-cursor"), cursor)
            if cursor is None:
                return rows, pages
            self.assertLess(pages, 2000, "pagination does not end")

    def all_csv_pages(self, path, token, accept_header=False):
        """Every CSV page of a list, following X-Next-Cursor; returns (header, rows)."""
        header, rows, cursor = None, [], None
        while True:
            p = path if cursor is None else self.with_cursor(path, cursor)
            headers = {"Accept": "text/csv"} if accept_header else None
            status, data, rh = self.get(p, token, headers=headers)
            self.assertEqual(status, 200, data[:300])
            self.assertEqual(rh.get("content-type"), "text/csv; charset=utf-8")
            table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
            self.assertTrue(table, "a CSV answer without its header row")
            if header is None:
                header = table[0]
            self.assertEqual(table[0], header)
            rows += table[1:]
            cursor = rh.get("x-next-cursor")
            if cursor is None:
                return header, rows

    def db_rows(self, sql, params=()):
        return [dict(r) for r in self.s.db(sql, params)]

    def assertNotFound(self, path, token):
        status, data, _ = self.get(path, token)
        self.assertEqual(status, 404, "%s: %s" % (path, data[:300]))
        body = json.loads(data.decode("utf-8"))
        self.assertEqual(body.get("type"), "error", body)
        return body["error"]["message"]

    def assert422(self, path, loc, token=None):
        status, data, _ = self.get(path, token or self.auditor)
        self.assertEqual(status, 422, "%s: %s" % (path, data[:300]))
        detail = json.loads(data.decode("utf-8"))["detail"]
        self.assertIn(loc, [d["loc"] for d in detail], detail)
        for d in detail:
            self.assertTrue(d["msg"] and d["type"], d)

    def beta_ids(self):
        subs = [r["submission_id"] for r in self.db_rows(
            "SELECT submission_id FROM audit_submissions WHERE team = 'beta'")]
        runs = [r["run_id"] for r in self.db_rows(
            "SELECT run_id FROM audit_runs WHERE team = 'beta'")]
        groups = [r["taskgroup_id"] for r in self.db_rows(
            "SELECT DISTINCT taskgroup_id FROM audit_submissions WHERE team = 'beta'"
            " AND taskgroup_id IS NOT NULL")]
        return subs, runs, groups

    # ---- team isolation ---------------------------------------------------------------------

    def test_submit_token_sees_nothing_of_another_team(self):
        a = self.tokens["alpha"]
        subs, runs, groups = self.beta_ids()
        self.assertGreater(len(subs), 500)
        real = self.real["beta"]
        for sid in [real["accepted"]["submission_id"], real["more"]["submission_id"],
                    real["rejected"], real["failed"]] + subs[::50]:
            msg = self.assertNotFound("/v1/audit/submissions/" + sid, a)
            # The answer is the one for an id that never existed: no existence oracle.
            self.assertEqual(msg.replace(sid, "X"), self.assertNotFound(
                "/v1/audit/submissions/sub_never", a).replace("sub_never", "X"))
        for run in real["accepted"]["run_ids"] + runs[::50]:
            self.assertNotFound("/v1/audit/runs/" + run, a)
        own_group = self.real["alpha"]["accepted"]["taskgroup_id"]
        cursor = self.get_json("/v1/audit/groups/%s?limit=1" % own_group, a)[0]["next_cursor"]
        for group in [real["accepted"]["taskgroup_id"]] + groups:
            self.assertNotFound("/v1/audit/groups/" + group, a)
            self.assertNotFound("/v1/audit/groups/%s?cursor=%s" % (group, cursor), a)

        # Lists: a team filter naming another team is an empty list, never its rows.
        for path in ("/v1/audit/submissions?team=beta", "/v1/audit/runs?team=beta",
                     "/v1/audit/submissions?taskgroup_id=" + real["accepted"]["taskgroup_id"],
                     "/v1/audit/runs?taskgroup_id=" + real["accepted"]["taskgroup_id"]):
            body, _ = self.get_json(path, a)
            self.assertEqual(body, {"data": [], "next_cursor": None}, path)
        # Following every cursor, in JSON and CSV, by Bearer and by x-api-key.
        rows, pages = self.all_pages("/v1/audit/submissions?limit=50", a)
        self.assertGreater(pages, 5)
        self.assertEqual({r["team"] for r in rows}, {"alpha"})
        self.assertEqual(len(rows), self.s.db_value(
            "SELECT count(*) FROM audit_submissions WHERE team = 'alpha'"))
        runs_seen, _ = self.all_pages("/v1/audit/runs?limit=100", a)
        self.assertEqual({r["team"] for r in runs_seen}, {"alpha"})
        header, table = self.all_csv_pages("/v1/audit/submissions?format=csv&limit=200", a)
        self.assertEqual({r[header.index("team")] for r in table}, {"alpha"})
        self.assertEqual(len(table), len(rows))
        header, table = self.all_csv_pages("/v1/audit/runs?limit=300", a, accept_header=True)
        self.assertEqual({r[header.index("team")] for r in table}, {"alpha"})
        status, data, _ = self.get("/v1/audit/submissions?team=beta&format=csv", a)
        self.assertEqual((status, data.decode()), (200, ",".join(SUB_COLUMNS) + "\r\n"))
        status, data, _ = self.get("/v1/audit/submissions?limit=1000", a, api_key=True)
        self.assertEqual(status, 200)
        self.assertEqual({r["team"] for r in json.loads(data)["data"]}, {"alpha"})
        # Its own records it does see.
        own = self.real["alpha"]["accepted"]
        self.get_json("/v1/audit/submissions/" + own["submission_id"], a)
        self.get_json("/v1/audit/runs/" + own["run_ids"][0], a)
        self.get_json("/v1/audit/groups/" + own["taskgroup_id"], a)

    def test_audit_and_admin_tokens_see_every_team(self):
        for token in (self.auditor, self.admin):
            rows, _ = self.all_pages("/v1/audit/submissions?limit=1000", token)
            self.assertEqual({r["team"] for r in rows}, {"alpha", "beta"})
            for team in ("alpha", "beta"):
                real = self.real[team]
                self.get_json("/v1/audit/submissions/" + real["failed"], token)
                self.get_json("/v1/audit/runs/" + real["accepted"]["run_ids"][1], token)
                self.get_json("/v1/audit/groups/" + real["accepted"]["taskgroup_id"], token)
                body, _ = self.get_json("/v1/audit/submissions?team=%s&limit=1000" % team, token)
                self.assertEqual({r["team"] for r in body["data"]}, {team})

    # ---- pagination -------------------------------------------------------------------------

    def test_pagination_returns_each_submission_once_newest_first(self):
        expected = self.db_rows("SELECT * FROM audit_submissions" + SUB_ORDER)
        self.assertGreater(len(expected), BULK)
        for limit, min_pages in ((7, len(expected) // 7), (1000, 2)):
            with self.subTest(limit=limit):
                rows, pages = self.all_pages("/v1/audit/submissions?limit=%d" % limit,
                                             self.auditor)
                ids = [r["submission_id"] for r in rows]
                self.assertEqual(len(ids), len(set(ids)), "a submission came twice")
                self.assertEqual(rows, expected)
                self.assertGreaterEqual(pages, min_pages)
        # The default page is 100 rows.
        body, _ = self.get_json("/v1/audit/submissions", self.auditor)
        self.assertEqual(body["data"], expected[:100])
        self.assertIsNotNone(body["next_cursor"])
        # Runs page the same way: newest submission first, input order within one.
        expected_runs = self.db_rows("SELECT * FROM audit_runs" + RUN_ORDER)
        rows, _ = self.all_pages("/v1/audit/runs?limit=7", self.auditor)
        self.assertEqual(rows, expected_runs)
        # A cursor continues its own kind of list only.
        body, _ = self.get_json("/v1/audit/submissions?limit=3", self.auditor)
        self.assert422(self.with_cursor("/v1/audit/runs", body["next_cursor"]),
                       ["query", "cursor"])

    # ---- CSV --------------------------------------------------------------------------------

    def test_csv_parses_back_into_the_json_rows(self):
        for path, columns in (("/v1/audit/submissions?limit=1000", SUB_COLUMNS),
                              ("/v1/audit/runs?limit=1000", RUN_COLUMNS),
                              ("/v1/audit/submissions?state=failed&limit=1000", SUB_COLUMNS)):
            with self.subTest(path=path):
                rows, _ = self.all_pages(path, self.auditor)
                for accept in (False, True):
                    p = path if accept else path + "&format=csv"
                    header, table = self.all_csv_pages(p, self.auditor, accept_header=accept)
                    self.assertEqual(header, columns)
                    self.assertEqual(table, [[as_csv(r[c]) for c in columns] for r in rows])
        # The awkward values did need quoting, and came back whole.
        _, table = self.all_csv_pages("/v1/audit/submissions?state=failed&format=csv",
                                      self.auditor)
        self.assertIn(AWKWARD, [cell for row in table for cell in row])
        # JSON stays the default, even for a browser's Accept; format=json wins over Accept.
        for headers, path in (({"Accept": "text/html,*/*;q=0.8"}, "/v1/audit/submissions"),
                              ({"Accept": "text/csv"}, "/v1/audit/submissions?format=json"),
                              ({"Accept": "application/json, text/csv;q=0.5"},
                               "/v1/audit/submissions")):
            status, data, rh = self.get(path, self.auditor, headers=headers)
            self.assertEqual((status, rh.get("content-type")), (200, "application/json"))
        # A one-object CSV is its row; a group's CSV is its runs.
        sub = self.real["alpha"]["accepted"]
        status, data, _ = self.get("/v1/audit/submissions/%s?format=csv"
                                   % sub["submission_id"], self.auditor)
        table = list(csv.reader(io.StringIO(data.decode(), newline="")))
        self.assertEqual(table[0], SUB_COLUMNS + ["request"])
        self.assertEqual(len(table), 2)
        self.assertEqual(json.loads(table[1][-1]), {"inputs": ["alpha1", "alpha2", "alpha3"]})
        _, table = self.all_csv_pages("/v1/audit/groups/%s?format=csv&limit=2"
                                      % sub["taskgroup_id"], self.auditor)
        self.assertEqual(sorted(r[0] for r in table),
                         sorted(sub["run_ids"] + self.real["alpha"]["more"]["run_ids"]))

    # ---- one object -------------------------------------------------------------------------

    def test_submission_detail_has_calls_runs_and_cursors(self):
        for team in ("alpha", "beta"):
            real = self.real[team]
            first, more = real["accepted"], real["more"]
            group = first["taskgroup_id"]
            body, _ = self.get_json("/v1/audit/submissions/" + more["submission_id"],
                                    self.tokens[team])
            expected = self.db_rows("SELECT * FROM audit_submissions WHERE submission_id = ?",
                                    (more["submission_id"],))[0]
            request = body["submission"].pop("request")
            self.assertEqual(body["submission"], expected)
            self.assertEqual(request, {"inputs": [team + "4"], "taskgroup_id": group})
            self.assertEqual(len(body["calls"]), 1)
            call = body["calls"][0]
            # The group's third add-runs call (the first submission made two).
            self.assertEqual((call["run_cursor"], call["event_cursor"]), sim_cursors(group, 2))
            self.assertEqual((call["outcome"], call["http_status"], call["operation"]),
                             ("ok", 200, "add_runs"))
            self.assertEqual([r["run_id"] for r in body["runs"]], more["run_ids"])
            self.assertEqual(body["runs"][0]["run_cursor"], call["run_cursor"])

            body, _ = self.get_json("/v1/audit/submissions/" + first["submission_id"],
                                    self.auditor)
            self.assertEqual(body["calls"], self.db_rows(
                "SELECT * FROM audit_calls WHERE submission_id = ? ORDER BY seq",
                (first["submission_id"],)))
            self.assertEqual([c["operation"] for c in body["calls"]],
                             ["create_group", "add_runs", "add_runs"])
            self.assertEqual([(c["run_cursor"], c["event_cursor"]) for c in body["calls"][1:]],
                             [sim_cursors(group, 0), sim_cursors(group, 1)])
            self.assertEqual(body["runs"], self.db_rows(
                "SELECT * FROM audit_runs WHERE submission_id = ? ORDER BY input_index",
                (first["submission_id"],)))
            self.assertEqual([r["run_id"] for r in body["runs"]], first["run_ids"])
            self.assertEqual([r["run_cursor"] for r in body["runs"]],
                             [None, None, sim_cursors(group, 1)[0]])

            body, _ = self.get_json("/v1/audit/submissions/" + real["failed"], self.admin)
            self.assertEqual(body["submission"]["state"], "failed")
            self.assertEqual([(c["outcome"], c["http_status"]) for c in body["calls"]],
                             [("ok", 200), ("error", 500)])
            self.assertEqual(body["runs"], [])
            body, _ = self.get_json("/v1/audit/submissions/" + real["rejected"], self.auditor)
            self.assertEqual((body["submission"]["state"], body["calls"], body["runs"]),
                             ("rejected", [], []))

    def test_run_and_group_detail(self):
        real = self.real["alpha"]
        run_id = real["accepted"]["run_ids"][2]
        body, _ = self.get_json("/v1/audit/runs/" + run_id, self.tokens["alpha"])
        self.assertEqual(body["run"], self.db_rows(
            "SELECT * FROM audit_runs WHERE run_id = ?", (run_id,))[0])
        self.assertEqual(body["submission"]["submission_id"],
                         real["accepted"]["submission_id"])
        self.assertEqual(body["submission"]["request"]["inputs"], ["alpha1", "alpha2", "alpha3"])

        group = real["accepted"]["taskgroup_id"]
        body, _ = self.get_json("/v1/audit/groups/" + group, self.auditor)
        self.assertEqual(body["taskgroup_id"], group)
        self.assertEqual(body["submissions"], self.db_rows(
            "SELECT * FROM audit_submissions WHERE taskgroup_id = ?" + SUB_ORDER, (group,)))
        self.assertEqual(body["runs"], self.db_rows(
            "SELECT * FROM audit_runs WHERE taskgroup_id = ?" + RUN_ORDER, (group,)))
        self.assertEqual((body["submissions_truncated"], body["next_cursor"]), (False, None))
        # Paged: the submissions come with the first page, the runs page by page.
        bulk_group = "tgrp_bulk02_alpha"
        expected = self.db_rows("SELECT * FROM audit_runs WHERE taskgroup_id = ?" + RUN_ORDER,
                                (bulk_group,))
        self.assertGreater(len(expected), 10)
        first, _ = self.get_json("/v1/audit/groups/%s?limit=3" % bulk_group, self.auditor)
        self.assertEqual(len(first["submissions"]), self.s.db_value(
            "SELECT count(*) FROM audit_submissions WHERE taskgroup_id = ?", (bulk_group,)))
        rows, cursor = first["runs"], first["next_cursor"]
        while cursor is not None:
            page, _ = self.get_json("/v1/audit/groups/%s?limit=3&cursor=%s"
                                    % (bulk_group, cursor), self.tokens["alpha"])
            self.assertNotIn("submissions", page)
            rows += page["runs"]
            cursor = page["next_cursor"]
        self.assertEqual(rows, expected)

    # ---- filters ----------------------------------------------------------------------------

    def test_filters_select_the_right_rows(self):
        group = self.real["beta"]["accepted"]["taskgroup_id"]
        t = lambda h: rfc3339(BULK_START + timedelta(hours=h))  # noqa: E731
        cases = [
            ("state=failed", "state = 'failed'", ()),
            ("state=unknown", "state = 'unknown'", ()),
            ("state=pending", "state = 'pending'", ()),
            ("interface=upstream-compatible", "interface = 'upstream-compatible'", ()),
            ("interface=simplified&state=rejected",
             "interface = 'simplified' AND state = 'rejected'", ()),
            ("taskgroup_id=" + group, "taskgroup_id = ?", (group,)),
            ("taskgroup_id=tgrp_bulk03_beta&state=accepted",
             "taskgroup_id = 'tgrp_bulk03_beta' AND state = 'accepted'", ()),
            ("since=" + t(100), "received_at >= ?", (t(100),)),
            ("until=" + t(100), "received_at < ?", (t(100),)),
            ("since=%s&until=%s" % (t(10), t(20)), "received_at >= ? AND received_at < ?",
             (t(10), t(20))),
            # An offset (as %2B, or as a bare '+', which the gateway never reads as a
            # space) and a plain date mean the same instants.
            ("since=2025-01-05T01:00:00%2B01:00&until=2025-01-06",
             "received_at >= ? AND received_at < ?", (t(96), t(120))),
            ("since=2025-01-05T01:30:00+01:30&until=2025-01-05T20:00:00.000-04:00",
             "received_at >= ? AND received_at < ?", (t(96), t(120))),
            ("team=beta&state=accepted&interface=simplified",
             "team = 'beta' AND state = 'accepted' AND interface = 'simplified'", ()),
        ]
        for query, where, params in cases:
            with self.subTest(query=query):
                expected = self.db_rows("SELECT * FROM audit_submissions WHERE " + where
                                        + SUB_ORDER, params)
                self.assertTrue(expected, "the case selects nothing: " + query)
                rows, _ = self.all_pages("/v1/audit/submissions?limit=1000&" + query,
                                         self.auditor)
                self.assertEqual(rows, expected)
                # A submit token gets the same filter within its own team.
                rows, _ = self.all_pages("/v1/audit/submissions?limit=1000&" + query,
                                         self.tokens["alpha"])
                self.assertEqual(rows, [r for r in expected if r["team"] == "alpha"])
        for query, where, params in (
                ("taskgroup_id=tgrp_bulk04_alpha", "taskgroup_id = 'tgrp_bulk04_alpha'", ()),
                ("team=beta&since=%s&until=%s" % (t(30), t(60)),
                 "team = 'beta' AND submitted_at >= ? AND submitted_at < ?", (t(30), t(60)))):
            with self.subTest(runs=query):
                rows, _ = self.all_pages("/v1/audit/runs?limit=1000&" + query, self.auditor)
                expected = self.db_rows("SELECT * FROM audit_runs WHERE " + where + RUN_ORDER,
                                        params)
                self.assertTrue(expected)
                self.assertEqual(rows, expected)
        # An empty value is no filter.
        body, _ = self.get_json("/v1/audit/submissions?state=&limit=5", self.auditor)
        self.assertEqual(len(body["data"]), 5)

    def test_bad_filters_are_422_with_their_loc(self):
        for path, loc in [
                ("/v1/audit/submissions?since=yesterday", ["query", "since"]),
                ("/v1/audit/submissions?until=2025-13-01", ["query", "until"]),
                # Days a month does not have are refused, not rolled into the next month.
                ("/v1/audit/submissions?since=2026-02-31", ["query", "since"]),
                ("/v1/audit/submissions?since=2025-02-29", ["query", "since"]),
                ("/v1/audit/submissions?until=2026-04-31T00:00:00Z", ["query", "until"]),
                ("/v1/audit/runs?since=2026-06-31T12:00:00%2B02:00", ["query", "since"]),
                ("/v1/audit/submissions?since=2025-01-01T00:00:00%2001:00", ["query", "since"]),
                ("/v1/audit/submissions?state=done", ["query", "state"]),
                ("/v1/audit/submissions?interface=soap", ["query", "interface"]),
                ("/v1/audit/submissions?limit=0", ["query", "limit"]),
                ("/v1/audit/submissions?limit=1001", ["query", "limit"]),
                ("/v1/audit/submissions?limit=ten", ["query", "limit"]),
                ("/v1/audit/submissions?limit=5&limit=6", ["query", "limit"]),
                ("/v1/audit/submissions?cursor=garbage", ["query", "cursor"]),
                ("/v1/audit/submissions?cursor=s7a7a", ["query", "cursor"]),
                ("/v1/audit/submissions?team=no%20such%20team", ["query", "team"]),
                ("/v1/audit/submissions?taskgroup_id=tgrp_%2e%2e%2fx", ["query", "taskgroup_id"]),
                ("/v1/audit/submissions?format=xml", ["query", "format"]),
                ("/v1/audit/submissions?colour=red", ["query", "colour"]),
                ("/v1/audit/runs?state=accepted", ["query", "state"]),
                ("/v1/audit/runs/trun_x?limit=5", ["query", "limit"]),
                ("/v1/audit/groups/tgrp_x?team=alpha", ["query", "team"]),
                ("/v1/audit/submissions/sub%20x", ["path", "submission_id"]),
                ("/v1/audit/runs/trun;drop", ["path", "run_id"]),
                ("/v1/audit/groups/" + "g" * 129, ["path", "taskgroup_id"])]:
            with self.subTest(path=path):
                self.assert422(path, loc, self.tokens["beta"])
        self.assert422("/v1/audit/admin?until=2026-11-31", ["query", "until"], self.auditor)
        # Several problems are answered together.
        status, data, _ = self.get("/v1/audit/submissions?since=x&until=y&state=z",
                                   self.auditor)
        self.assertEqual(status, 422)
        self.assertEqual([d["loc"] for d in json.loads(data)["detail"]],
                         [["query", "since"], ["query", "until"], ["query", "state"]])

    def test_other_answers(self):
        status, data, _ = self.get("/v1/audit/submissions")
        self.assertEqual(status, 401, data)
        status, data, _ = self.get("/v1/audit/submissions", "tg_" + "0" * 48)
        self.assertEqual(status, 401, data)
        status, rh, data = self.s.http("POST", "/v1/audit/submissions", "{}",
                                       {"Authorization": "Bearer " + self.auditor})
        self.assertEqual((status, rh.get("allow")), (405, "GET, HEAD"))
        for path in ("/v1/audit/", "/v1/audit/nothing", "/v1/audit/groups",
                     "/v1/audit/submissions/a/b"):
            self.assertNotFound(path, self.auditor)
        status, rh, data = self.s.http("HEAD", "/v1/audit/submissions?limit=2",
                                       headers={"Authorization": "Bearer " + self.auditor})
        self.assertEqual((status, data), (200, b""))

    # ---- the log of reads -------------------------------------------------------------------

    def test_every_read_is_logged(self):
        before = self.s.db_value("SELECT max(id) FROM audit_reads") or 0
        alpha = self.real["alpha"]["accepted"]
        reads = [  # (token, token id, team, path, rows or None)
            (self.tokens["alpha"], self.token_ids["alpha"], "alpha",
             "/v1/audit/submissions?limit=3&state=accepted", 3),
            (self.tokens["alpha"], self.token_ids["alpha"], "alpha",
             "/v1/audit/submissions/" + alpha["submission_id"], 1 + 3 + 3),
            (self.auditor, self.auditor_id, "beta", "/v1/audit/runs/" + alpha["run_ids"][0], 2),
            (self.auditor, self.auditor_id, "beta",
             "/v1/audit/runs?format=csv&limit=4", 4),
            (self.admin, self.admin_id, "alpha",
             "/v1/audit/groups/" + alpha["taskgroup_id"], 2 + 4),
            (self.tokens["beta"], self.token_ids["beta"], "beta",
             "/v1/audit/submissions/" + alpha["submission_id"], None),
            (self.tokens["beta"], self.token_ids["beta"], "beta",
             "/v1/audit/submissions?since=never", None),
        ]
        for token, _, _, path, _ in reads:
            self.get(path, token)
        self.get("/v1/audit/submissions")  # no token: nobody to name, nothing read
        logged = self.db_rows("SELECT * FROM audit_reads WHERE id > ? ORDER BY id", (before,))
        self.assertEqual(len(logged), len(reads), logged)
        for row, (_, token_id, team, path, rows) in zip(logged, reads):
            self.assertEqual((row["actor"], row["actor_team"], row["interface"], row["query"],
                              row["remote_addr"], row["rows"]),
                             ("token:" + token_id, team, "http", "GET " + path, "127.0.0.1",
                              rows))

    # ---- the CLI ----------------------------------------------------------------------------

    def cli_json(self, *args):
        r = self.s.cli("audit", *args, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_cli_commands(self):
        s = self.s
        before = s.db_value("SELECT max(id) FROM audit_reads") or 0
        # --json is the HTTP answer; lists read every page unless --limit.
        http, _ = self.get_json("/v1/audit/submissions?limit=5&state=failed", self.auditor)
        self.assertEqual(self.cli_json("submissions", "--limit", "5", "--state", "failed"), http)
        everything = self.cli_json("submissions")
        self.assertEqual(everything["data"],
                         self.db_rows("SELECT * FROM audit_submissions" + SUB_ORDER))
        self.assertIsNone(everything["next_cursor"])
        page2 = self.cli_json("submissions", "--limit", "5", "--state", "failed",
                              "--cursor", http["next_cursor"])
        self.assertEqual(page2["data"], self.db_rows(
            "SELECT * FROM audit_submissions WHERE state = 'failed'" + SUB_ORDER)[5:10])
        sub = self.real["beta"]["accepted"]
        for args, path in ((["submission", sub["submission_id"]],
                            "/v1/audit/submissions/" + sub["submission_id"]),
                           (["run", sub["run_ids"][0]], "/v1/audit/runs/" + sub["run_ids"][0]),
                           (["group", sub["taskgroup_id"]],
                            "/v1/audit/groups/" + sub["taskgroup_id"])):
            http, _ = self.get_json(path, self.auditor)
            self.assertEqual(self.cli_json(*args), http, args)
        group = self.cli_json("group", "tgrp_bulk05_beta")
        self.assertEqual(group["runs"], self.db_rows(
            "SELECT * FROM audit_runs WHERE taskgroup_id = 'tgrp_bulk05_beta'" + RUN_ORDER))
        runs = self.cli_json("runs", "--team", "beta", "--since", "2025-01-03")
        self.assertEqual(runs["data"], self.db_rows(
            "SELECT * FROM audit_runs WHERE team = 'beta' AND submitted_at >= '2025-01-03'"
            + RUN_ORDER))
        unknown = self.cli_json("unknown")
        self.assertEqual(unknown["data"], self.db_rows(
            "SELECT * FROM audit_submissions WHERE state IN ('pending', 'unknown')"
            " ORDER BY received_at, submission_id"))

        # --csv: the same rows.
        r = s.cli("audit", "runs", "--group", "tgrp_bulk01_beta", "--csv")
        self.assertEqual(r.returncode, 0, r.stderr)
        table = list(csv.reader(io.StringIO(r.stdout, newline="")))
        expected = self.db_rows("SELECT * FROM audit_runs WHERE taskgroup_id ="
                                " 'tgrp_bulk01_beta'" + RUN_ORDER)
        self.assertEqual(table, [RUN_COLUMNS] + [[as_csv(e[c]) for c in RUN_COLUMNS]
                                                 for e in expected])

        # The table for people: a header line, then one aligned line per row.
        r = s.cli("audit", "submissions", "--state", "failed", "--team", "alpha")
        self.assertEqual(r.returncode, 0, r.stderr)
        failed = self.db_rows("SELECT submission_id FROM audit_submissions WHERE state ="
                              " 'failed' AND team = 'alpha'" + SUB_ORDER)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1 + len(failed), r.stdout[:500])
        self.assertTrue(lines[0].startswith("received_at"), lines[0])
        self.assertEqual([ln.split()[1] for ln in lines[1:]],
                         [f["submission_id"] for f in failed])
        column = lines[0].index("submission_id")
        self.assertTrue(all(ln[column:].startswith("sub_") for ln in lines[1:]))
        self.assertNotIn("\x1b", r.stdout)
        r = s.cli("audit", "submission", self.real["alpha"]["accepted"]["submission_id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("calls: 3\n", r.stdout)
        self.assertIn("runs: 3\n", r.stdout)
        self.assertIn(sim_cursors(self.real["alpha"]["accepted"]["taskgroup_id"], 1)[0],
                      r.stdout)
        r = s.cli("audit", "unknown", "--team", "alpha", "--until", "2025-01-01")
        self.assertEqual((r.returncode, r.stdout), (0, "(no rows)\n"))

        # Every one of those reads is logged under the OS user.
        logged = self.db_rows("SELECT * FROM audit_reads WHERE id > ? ORDER BY id", (before,))
        cli = [row for row in logged if row["interface"] == "cli"]
        self.assertEqual(len(cli), 13, logged)
        for row in cli:
            self.assertRegex(row["actor"], r"^os:\S+$")
            self.assertIsNone(row["actor_team"])
            self.assertIsNone(row["remote_addr"])
            self.assertTrue(row["query"].startswith("audit "), row)
        self.assertEqual((cli[0]["query"], cli[0]["rows"]),
                         ("audit submissions --limit 5 --state failed --json", 5))
        self.assertEqual(cli[1]["rows"], len(everything["data"]))

    def test_cli_usage_and_errors(self):
        for args, says in ((["audit"], "needs a command"),
                           (["audit", "everything"], "unknown audit command"),
                           (["audit", "submissions", "--state", "done"], "--state"),
                           (["audit", "submissions", "--since", "soon"], "--since"),
                           (["audit", "submissions", "--since", "2026-02-31"], "--since"),
                           (["audit", "runs", "--until", "2026-09-31T00:00:00Z"], "--until"),
                           (["audit", "submissions", "--limit", "0"], "--limit"),
                           (["audit", "submissions", "--team"], "needs a value"),
                           (["audit", "submissions", "--json", "--csv"], "one of"),
                           (["audit", "runs", "--state", "accepted"], "takes no option"),
                           (["audit", "run", "--limit", "3"], "needs an id"),
                           (["audit", "submission"], "needs an id"),
                           (["audit", "submission", "sub x"], "bad id"),
                           (["audit", "group", "g", "--limit", "3", "x"], "unexpected")):
            with self.subTest(args=args):
                r = self.s.cli(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(says, r.stderr)
                self.assertIn("audit submissions", r.stderr)  # the usage follows
                self.assertEqual(r.stdout, "")
        for args in (["audit", "--help"], ["audit", "help"]):
            r = self.s.cli(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("audit submission SUB_ID", r.stdout)
        r = self.s.cli("audit", "submission", "sub_never")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no submission 'sub_never'", r.stderr)
        self.assertEqual(self.s.db_value("SELECT rows IS NULL FROM audit_reads WHERE query ="
                                         " 'audit submission sub_never'"), 1)


class ExportEscapingTest(StackTestCase):
    """Stored text that reaches a spreadsheet or a terminal: a CSV cell a spreadsheet would
    run as a formula is written as text (OWASP's rule: a leading single quote, quoted), in
    the HTTP export and the CLI's --csv alike; every table the CLI prints shows control
    characters visibly instead of sending them to the terminal."""

    FORMULA = '=HYPERLINK("http://x")'
    CONTROL = "ops\n\x1b[31mred"
    LEADERS = ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]

    def check_csv(self, text, what, translated=False):
        """translated: text went through Python's universal newlines (a CLI output), which
        turn a CR into a LF."""
        self.assertIn('"\'=HYPERLINK(""http://x"")"', text, what)
        labels = {r["token_label"] for r in csv.DictReader(io.StringIO(text, newline=""))}
        self.assertIn("'" + self.FORMULA, labels, what)
        self.assertNotIn(self.FORMULA, labels, what)
        self.assertIn(self.CONTROL, labels, what)  # no formula: kept as it is, quoted
        for lead in self.LEADERS:
            lead = lead.replace("\r", "\n") if translated else lead
            self.assertIn("'" + lead, labels, what)
            self.assertNotIn(lead, labels, what)

    def test_formulas_in_csv_and_controls_in_cli_tables_are_neutralised(self):
        s = self.stack(keys=["par-alpha"])
        s.add_team("alpha", "par-alpha", preset={"processor": "core"})
        tokens = [s.issue_token("alpha", label=label)[0]
                  for label in [self.FORMULA, self.CONTROL] + self.LEADERS]
        audit, _ = s.issue_token("alpha", role="audit", label="\x1b]0;title\x07")
        ids = []
        for token in tokens:
            status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
            self.assertEqual(status, 200, body)
            ids.append(body["submission_id"])

        auth = {"Authorization": "Bearer " + audit}
        for path in ("/v1/audit/submissions?format=csv", "/v1/audit/runs?format=csv"):
            status, _, data = s.http("GET", path, headers=auth)
            self.assertEqual(status, 200)
            self.check_csv(data.decode("utf-8"), path)
        status, _, data = s.http("GET", "/v1/audit/submissions/%s?format=csv" % ids[0],
                                 headers=auth)
        self.assertIn('"\'=HYPERLINK(""http://x"")"', data.decode("utf-8"))
        for what in ("submissions", "runs"):
            self.check_csv(s.cli_ok("audit", what, "--csv").stdout, "audit %s --csv" % what,
                           translated=True)
        # Integer columns stay numbers; JSON stays as it is.
        rows = list(csv.DictReader(io.StringIO(
            s.cli_ok("audit", "submissions", "--csv").stdout, newline="")))
        self.assertTrue(all(r["http_status"] == "200" for r in rows))
        # JSON carries the labels as JSON strings, escaped.
        status, listed, _ = s.json_req("GET", "/v1/audit/submissions", token=audit)
        self.assertIn(self.CONTROL, {r["token_label"] for r in listed["data"]})

        # Tables for people: one line per row, no control character reaches the terminal.
        def no_controls(out, what):
            self.assertFalse(re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out), (what, out))
        r = s.cli_ok("token", "list")
        no_controls(r.stdout, "token list")
        self.assertEqual(len(r.stdout.splitlines()), len(tokens) + 1, r.stdout)
        self.assertIn("ops\\n\\x1b[31mred", r.stdout)
        self.assertIn("\\x1b]0;title\\x07", r.stdout)
        self.assertIn(self.FORMULA, r.stdout)
        self.assertIn("\\tx", r.stdout)
        for args in (("team", "list"), ("preset", "list", "alpha"), ("keys", "status"),
                     ("audit", "submissions"), ("audit", "runs"), ("audit", "admin"),
                     ("audit", "submission", ids[1]), ("audit", "run", s.db_value(
                         "SELECT run_id FROM runs WHERE submission_id = ?", (ids[1],)))):
            r = s.cli(*args)
            self.assertIn(r.returncode, (0, 1), (args, r.stderr))
            no_controls(r.stdout, args)
        r = s.cli_ok("audit", "submission", ids[1])
        self.assertIn("ops\\n\\x1b[31mred", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
