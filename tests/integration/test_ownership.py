#!/usr/bin/env python3
"""Whose a task group is: a team adds runs only to groups its own submissions created, on
both interfaces, through the one ownership check they share. Two teams on one Parallel key
(as the README expects) are the case that matters: the upstream would take either's runs
into either's group, so the gateway must refuse before anything is sent."""

import json
import os
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase  # noqa: E402

KEY = "par-key-ownership-shared"
NOT_OURS = "no such task group for this team"


def adds(reqs, group=None):
    """The add-runs requests in a simulator log (to group, when given)."""
    return [r for r in reqs if r["method"] == "POST" and r["path"].endswith("/runs") and
            (group is None or "/groups/%s/" % group in r["path"])]


class OwnershipTest(StackTestCase):
    def setUp(self):
        self.s = self.stack(keys=[KEY])
        self.s.add_team("alpha", KEY, preset={"processor": "core"})
        self.s.add_team("beta", KEY, preset={"processor": "core"})
        self.tokens = {t: self.s.issue_token(t)[0] for t in ("alpha", "beta")}

    def runs(self, team, body, headers=None):
        """POST /v1/runs as team: (status, parsed answer)."""
        st, answer, _ = self.s.json_req("POST", "/v1/runs", body, headers=headers,
                                        token=self.tokens[team])
        return st, answer

    def compat(self, team, path, body):
        """A POST on the upstream-compatible paths as team, the token in x-api-key."""
        st, answer, _ = self.s.json_req("POST", path, body,
                                        headers={"x-api-key": self.tokens[team]})
        return st, answer

    def assertRefused(self, st, answer, team, interface):
        self.assertEqual(st, 404, answer)
        self.assertEqual(answer["type"], "error", answer)
        self.assertEqual(answer["error"]["message"], NOT_OURS, answer)
        row = self.s.db("SELECT team, interface, state, http_status, taskgroup_id FROM "
                        "audit_submissions ORDER BY received_at DESC, submission_id DESC "
                        "LIMIT 1")[0]
        # The refused submission does not name the group as its own.
        self.assertEqual(tuple(row), (team, interface, "rejected", 404, None))

    def test_another_teams_group_through_v1_runs_is_404_and_nothing_is_sent(self):
        st, first = self.runs("alpha", {"inputs": ["a1", "a2"]})
        self.assertEqual(st, 200, first)
        gid = first["taskgroup_id"]
        self.s.sim_clear()
        for body, headers in (({"inputs": ["planted"], "taskgroup_id": gid}, None),
                              ({"inputs": ["planted"], "taskgroup_id": gid},
                               {"Idempotency-Key": "b-1"}),
                              ({"inputs": ["planted"], "taskgroup_id": gid,
                                "idempotency_key": "b-2"}, None)):
            with self.subTest(headers=headers, body=body):
                st, answer = self.runs("beta", body, headers)
                self.assertRefused(st, answer, "beta", "simplified")
        self.assertEqual(self.s.sim_requests(), [], "a refused submission went upstream")
        self.assertEqual([r["input"] for r in self.s.sim_group(gid)], ["a1", "a2"])
        self.assertEqual(self.s.db_value("SELECT count(*) FROM audit_submissions WHERE "
                                         "team = 'beta' AND state <> 'rejected'"), 0)
        # The team whose group it is still adds to it.
        st, more = self.runs("alpha", {"inputs": ["a3"], "taskgroup_id": gid})
        self.assertEqual(st, 200, more)
        self.assertEqual(len(adds(self.s.sim_requests(), gid)), 1)

    def test_both_interfaces_refuse_alike(self):
        # A group made on the upstream-compatible path is its team's on both interfaces.
        st, group = self.compat("alpha", "/v1/tasks/groups", {})
        self.assertEqual(st, 200, group)
        gid = group["taskgroup_id"]
        st, answer = self.runs("alpha", {"inputs": ["mine"], "taskgroup_id": gid})
        self.assertEqual(st, 200, answer)
        self.s.sim_clear()
        st, answer = self.runs("beta", {"inputs": ["x"], "taskgroup_id": gid})
        self.assertRefused(st, answer, "beta", "simplified")
        st, answer = self.compat("beta", "/v1/tasks/groups/%s/runs" % gid,
                                 {"inputs": [{"input": "x", "processor": "core"}]})
        self.assertRefused(st, answer, "beta", "upstream-compatible")
        self.assertEqual(adds(self.s.sim_requests()), [])

    def test_a_group_no_team_made_is_404_on_both_interfaces(self):
        gid = "tgrp_" + "0" * 32
        st, answer = self.runs("alpha", {"inputs": ["x"], "taskgroup_id": gid})
        self.assertRefused(st, answer, "alpha", "simplified")
        st, answer = self.compat("alpha", "/v1/tasks/groups/%s/runs" % gid,
                                 {"inputs": [{"input": "x"}]})
        self.assertRefused(st, answer, "alpha", "upstream-compatible")
        self.assertEqual(self.s.sim_requests(), [])

    def test_a_group_created_on_a_second_attempt_is_the_teams(self):
        # The first create-group call is refused with Retry-After and sent again: the
        # group comes from the submission's second call, and is still the team's.
        self.s.sim_fault(match="create_group", kind="status", status=429, retry_after=1)
        st, first = self.runs("alpha", {"inputs": ["a1"]})
        self.assertEqual(st, 200, first)
        outcomes = [tuple(r) for r in self.s.db(
            "SELECT operation, outcome FROM audit_calls WHERE submission_id = ? ORDER BY seq",
            (first["submission_id"],))]
        self.assertEqual(outcomes[:2], [("create_group", "error"), ("create_group", "ok")])
        gid = first["taskgroup_id"]
        st, more = self.runs("alpha", {"inputs": ["a2"], "taskgroup_id": gid})
        self.assertEqual(st, 200, more)
        st, answer = self.compat("alpha", "/v1/tasks/groups/%s/runs" % gid,
                                 {"inputs": [{"input": "a3"}]})
        self.assertEqual(st, 200, answer)
        self.assertEqual([r["input"] for r in self.s.sim_group(gid)], ["a1", "a2", "a3"])


if __name__ == "__main__":
    unittest.main()
