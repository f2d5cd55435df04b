"""The upstream-compatible paths, driven as an SDK drives them: the team token in x-api-key,
the upstream's request shapes, the upstream's answers passed through as they came, every
call recorded with interface 'upstream-compatible', and reads only of what the team made."""

import http.client
import json
import time
import unittest

from harness import StackTestCase

KEY_A = "par-key-compat-a"
KEY_B = "par-key-compat-b"
KEY_SHARED = "par-key-compat-shared"


def sdk_headers(token, **extra):
    h = {"x-api-key": token, "Content-Type": "application/json", "Accept": "application/json"}
    h.update(extra)
    return h


class CompatTest(StackTestCase):
    def setUp(self):
        self.s = self.stack(keys=[KEY_A, KEY_SHARED], conf={"chunk_size": 3})
        self.s.add_team("alpha", KEY_A, preset={"processor": "core",
                                                "metadata": {"cost_center": "cc-1"}})
        self.token, _ = self.s.issue_token("alpha")

    def post(self, path, body, token=None, **headers):
        raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
        status, hdrs, data = self.s.http("POST", path, raw,
                                         sdk_headers(token or self.token, **headers))
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed, hdrs

    def get(self, path, token=None):
        status, hdrs, data = self.s.http("GET", path, None,
                                         {"x-api-key": token or self.token})
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed, hdrs

    def new_group(self, api="/v1", token=None, body=None):
        status, group, _ = self.post(api + "/tasks/groups", body or {}, token)
        self.assertEqual(status, 200, group)
        return group["taskgroup_id"]

    def test_create_group_passes_the_upstream_answer_and_is_recorded(self):
        status, group, _ = self.post("/v1/tasks/groups", {"metadata": {"project": "x"}})
        self.assertEqual(status, 200, group)
        self.assertRegex(group["taskgroup_id"], r"^tgrp_")
        self.assertEqual(group["metadata"], {"project": "x"})
        self.assertIn("status", group)
        rows = self.s.db("SELECT interface, state, taskgroup_id, num_inputs FROM "
                         "audit_submissions WHERE taskgroup_id = ?", (group["taskgroup_id"],))
        self.assertEqual([tuple(r) for r in rows],
                         [("upstream-compatible", "accepted", group["taskgroup_id"], 0)])
        sent = [r for r in self.s.sim_requests() if r["method"] == "POST"]
        self.assertEqual(sent[-1]["path"], "/v1/tasks/groups")

    def test_add_runs_fills_defaults_tags_runs_and_records_them(self):
        gid = self.new_group()
        body = {"inputs": [{"input": "What is 2+2?"},
                           {"input": {"q": "x"}, "processor": "base",
                            "metadata": {"mine": "1"}}],
                "default_task_spec": {"output_schema": {"type": "text"}}}
        status, answer, _ = self.post("/v1/tasks/groups/%s/runs" % gid, body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(len(answer["run_ids"]), 2)
        self.assertIn("status", answer)
        runs = self.s.sim_group(gid)
        self.assertEqual([r.get("processor") for r in runs], ["core", "base"])
        meta = [r.get("metadata") or {} for r in runs]
        self.assertEqual(meta[0].get("cost_center"), "cc-1")
        self.assertEqual(meta[1].get("mine"), "1")
        self.assertEqual(meta[1].get("cost_center"), "cc-1")
        rows = self.s.db("SELECT run_id FROM audit_runs WHERE taskgroup_id = ? "
                         "ORDER BY input_index", (gid,))
        self.assertEqual([r[0] for r in rows], answer["run_ids"])
        iface = self.s.db_value("SELECT s.interface FROM audit_runs r JOIN audit_submissions s "
                                "ON s.submission_id = r.submission_id WHERE r.run_id = ?",
                                (answer["run_ids"][0],))
        self.assertEqual(iface, "upstream-compatible")

    def test_beta_paths_go_upstream_as_beta(self):
        gid = self.new_group("/v1beta")
        status, answer, _ = self.post("/v1beta/tasks/groups/%s/runs" % gid,
                                      {"inputs": [{"input": "a"}]})
        self.assertEqual(status, 200, answer)
        paths = [r["path"] for r in self.s.sim_requests() if r["method"] == "POST"]
        self.assertEqual(paths[-2:], ["/v1beta/tasks/groups",
                                      "/v1beta/tasks/groups/%s/runs" % gid])

    def test_more_inputs_than_a_chunk_answer_as_one(self):
        gid = self.new_group()
        status, first, _ = self.post("/v1/tasks/groups/%s/runs" % gid, {"inputs": [{"input": "0"}]})
        self.assertEqual(status, 200, first)
        body = {"inputs": [{"input": "q%d" % i} for i in range(7)]}
        status, answer, _ = self.post("/v1/tasks/groups/%s/runs" % gid, body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(len(answer["run_ids"]), 7)
        self.assertEqual(len(set(answer["run_ids"])), 7)
        # The cursors are the first call's: the client's streams start before every new run.
        cursor = self.s.db_value(
            "SELECT c.run_cursor FROM upstream_calls c JOIN submissions s ON s.id = "
            "c.submission_id WHERE s.taskgroup_id = ? AND c.first_input = 0 AND "
            "s.num_inputs = 7", (gid,))
        self.assertIsNotNone(cursor)
        self.assertEqual(answer["run_cursor"], cursor)
        calls = self.s.db_value("SELECT count(*) FROM upstream_calls c JOIN submissions s "
                                "ON s.id = c.submission_id WHERE s.taskgroup_id = ? AND "
                                "c.operation = 'add_runs'", (gid,))
        self.assertEqual(calls, 1 + 3)
        self.assertEqual([r["run_id"] for r in self.s.sim_group(gid)][1:], answer["run_ids"])

    def test_retrieve_group_is_relayed(self):
        gid = self.new_group()
        self.post("/v1/tasks/groups/%s/runs" % gid, {"inputs": [{"input": "a"}]})
        status, group, _ = self.get("/v1/tasks/groups/" + gid)
        self.assertEqual(status, 200, group)
        self.assertEqual(group["taskgroup_id"], gid)
        self.assertEqual(group["status"]["num_task_runs"], 1)

    def test_another_team_sharing_the_key_sees_404_everywhere(self):
        self.s.add_team("beta", KEY_A)
        other, _ = self.s.issue_token("beta")
        gid = self.new_group()
        _, answer, _ = self.post("/v1/tasks/groups/%s/runs" % gid, {"inputs": [{"input": "a"}]})
        run_id = answer["run_ids"][0]
        before = len(self.s.sim_requests())
        for path in ("/v1/tasks/groups/" + gid, "/v1beta/tasks/groups/" + gid,
                     "/v1/tasks/groups/%s/runs" % gid, "/v1/tasks/groups/%s/events" % gid,
                     "/v1/tasks/groups/%s/runs/%s" % (gid, run_id),
                     "/v1/tasks/runs/" + run_id, "/v1/tasks/runs/%s/result" % run_id):
            with self.subTest(path=path):
                status, err, _ = self.get(path, other)
                self.assertEqual(status, 404, err)
                self.assertIn("ref_id", err["error"])
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                   {"inputs": [{"input": "b"}]}, other)
        self.assertEqual(status, 404, err)
        self.assertEqual(len(self.s.sim_requests()), before, "nothing may go upstream")
        rejected = self.s.db_value("SELECT count(*) FROM audit_submissions WHERE team = 'beta' "
                                   "AND state = 'rejected'")
        self.assertEqual(rejected, 1)

    def test_a_group_made_outside_the_gateway_is_not_the_teams(self):
        status, _, _ = self.get("/v1/tasks/groups/tgrp_made_elsewhere")
        self.assertEqual(status, 404)

    def test_errors_use_the_upstream_shapes_and_statuses(self):
        status, err, _ = self.post("/v1/tasks/groups", {}, token="tg_" + "0" * 48)
        self.assertEqual(status, 401)
        self.assertIn("message", err["error"])
        gid = self.new_group()
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                   {"inputs": [{"input": "a", "processor": 7}, "x"]})
        self.assertEqual(status, 422, err)
        locs = [p["loc"] for p in err["detail"]]
        self.assertIn(["body", "inputs", 0, "processor"], locs)
        self.assertIn(["body", "inputs", 1], locs)
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid, "{not json")
        self.assertEqual(status, 422, err)
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid, {})
        self.assertEqual(status, 422, err)
        self.assertIn(["body", "inputs"], [p["loc"] for p in err["detail"]])

    def test_bodies_that_are_not_json_are_refused_at_their_place(self):
        """RFC 8259 only, and numbers as written or refused: NaN, Infinity, an integer
        json-c would saturate, a double that would become 0, a lone surrogate."""
        gid = self.new_group()
        path = "/v1/tasks/groups/%s/runs" % gid
        cases = [
            ('{"inputs": [{"input": {"x": NaN}}]}', ["body", "inputs", 0, "input", "x"]),
            ('{"inputs": [{"input": "a", "metadata": {"n": Infinity}}]}',
             ["body", "inputs", 0, "metadata", "n"]),
            ('{"inputs": [{"input": "a"}, {"input": [-Infinity]}]}',
             ["body", "inputs", 1, "input", 0]),
            ('{"inputs": [{"input": {"n": 1%s}}]}' % ("0" * 40),
             ["body", "inputs", 0, "input", "n"]),
            ('{"inputs": [{"input": {"n": 1e-99999}}]}', ["body", "inputs", 0, "input", "n"]),
            ('{"inputs": [{"input": "\\ud800"}]}', ["body", "inputs", 0, "input"]),
            ('{"inputs": [{"input": "a"}], "default_task_spec": {"output_schema": 1.}}',
             ["body", "default_task_spec", "output_schema"]),
        ]
        self.s.sim_clear()
        for body, loc in cases:
            with self.subTest(body=body):
                status, err, _ = self.post(path, body)
                self.assertEqual(status, 422, err)
                self.assertEqual([p["loc"] for p in err["detail"]], [loc], err)
                self.assertEqual(err["detail"][0]["type"], "json_invalid")
                self.assertRegex(err["detail"][0]["msg"], r"not valid JSON: .* at offset \d+")
        self.assertEqual([r for r in self.s.sim_requests() if r["method"] == "POST"], [])
        status, answer, _ = self.post(path, '{"inputs": [{"input": {"n": 1.10, "m": 1E+2}}]}')
        self.assertEqual(status, 200, answer)
        _, _, log = self.s._request(self.s.sim_port, "GET", "/_sim/requests", None, {}, 10)
        self.assertIn(b'"n":1.10,"m":1E+2', log)

    def test_enforced_preset_fields_are_refused_per_run(self):
        self.s.set_preset("alpha", "default", {"processor": "core", "enforced": ["processor"]})
        gid = self.new_group()
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                   {"inputs": [{"input": "a"},
                                               {"input": "b", "processor": "ultra"}]})
        self.assertEqual(status, 422, err)
        self.assertEqual([p["loc"] for p in err["detail"]], [["body", "inputs", 1, "processor"]])

    def test_upstream_errors_pass_through_with_retry_after(self):
        gid = self.new_group()
        # 30 s is more than upstream_retry_max_wait_ms (10 s): passed on, not waited for.
        self.s.sim_fault(kind="status", status=429, retry_after=30, match="add_runs")
        status, err, hdrs = self.post("/v1/tasks/groups/%s/runs" % gid,
                                      {"inputs": [{"input": "a"}]})
        self.assertEqual(status, 429, err)
        self.assertEqual(hdrs.get("retry-after"), "30")
        self.assertIn("error", err)

    def test_upstream_unreachable_is_a_502_in_the_error_shape(self):
        gid = self.new_group()
        self.s.sim_fault(kind="reset", match="add_runs")
        status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                   {"inputs": [{"input": "a"}]})
        self.assertIn(status, (502, 504), err)
        self.assertIn("message", err["error"])

    def test_audit_and_admin_tokens_may_not_add_or_read_runs(self):
        gid = self.new_group()
        before = len(self.s.sim_requests())
        for role in ("audit", "admin"):
            token, _ = self.s.issue_token("alpha", role=role)
            with self.subTest(role=role):
                status, err, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                           {"inputs": [{"input": "a"}]}, token)
                self.assertEqual(status, 403, err)
                status, err, _ = self.post("/v1/tasks/groups", {}, token)
                self.assertEqual(status, 403, err)
                status, err = self.s.json_req("POST", "/v1/runs", {"inputs": ["a"]},
                                              token=token)[:2]
                self.assertEqual(status, 403, err)
                status, err, _ = self.get("/v1/tasks/groups/" + gid, token)
                self.assertEqual(status, 403, err)
        self.assertEqual(len(self.s.sim_requests()), before)

    def add_runs(self, gid, n):
        status, answer, _ = self.post("/v1/tasks/groups/%s/runs" % gid,
                                      {"inputs": [{"input": "q%d" % i} for i in range(n)]})
        self.assertEqual(status, 200, answer)
        return answer["run_ids"]

    def test_an_event_stream_is_relayed_as_it_arrives(self):
        gid = self.new_group()
        run_ids = self.add_runs(gid, 3)
        self.s._sim("POST", "/_sim/stream", {"interval_ms": 700})
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
        try:
            started = time.monotonic()
            conn.request("GET", "/v1/tasks/groups/%s/runs" % gid,
                         headers={"x-api-key": self.token, "Accept": "text/event-stream"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.getheader("Content-Type", "").startswith("text/event-stream"))
            events, buf, first_at = [], b"", None
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    if first_at is None:
                        first_at = time.monotonic()
                    events.append(raw.decode())
            ended = time.monotonic()
        finally:
            conn.close()
        self.assertEqual(len(events), 3, events)
        data = [json.loads(e.split("data: ", 1)[1]) for e in events]
        self.assertEqual([d["run"]["run_id"] for d in data], run_ids)
        # Two pauses of 0.7 s came after the first event: it was relayed before them, not
        # buffered until the stream ended.
        self.assertGreater(ended - first_at, 1.0, (started, first_at, ended))

    def test_reads_of_one_run_its_result_and_the_group_events(self):
        self.s._sim("POST", "/_sim/runs", {"run_ms": -1})
        gid = self.new_group()
        first, second = self.add_runs(gid, 2)
        status, run, _ = self.get("/v1/tasks/groups/%s/runs/%s" % (gid, first))
        self.assertEqual((status, run["run_id"], run["is_active"]), (200, first, True))
        status, run, _ = self.get("/v1/tasks/runs/" + second)
        self.assertEqual((status, run["run_id"]), (200, second))
        # Not ready within the client's timeout: the upstream's 408 comes back as it is.
        status, err, _ = self.get("/v1/tasks/runs/%s/result?timeout=1" % first)
        self.assertEqual(status, 408, err)
        self.s._sim("POST", "/_sim/runs/complete", {"taskgroup_id": gid})
        status, result, _ = self.get("/v1/tasks/runs/%s/result?timeout=5" % first)
        self.assertEqual(status, 200, result)
        self.assertEqual(result["run"]["run_id"], first)
        self.assertIn("content", result["output"])
        status, hdrs, body = self.s.http("GET", "/v1beta/tasks/groups/%s/events" % gid, None,
                                         {"x-api-key": self.token})
        self.assertEqual(status, 200)
        events = [json.loads(line[6:]) for line in body.decode().splitlines()
                  if line.startswith("data: ")]
        types = [e["type"] for e in events]
        self.assertIn("task_group_status", types)
        self.assertEqual(sorted(e["run"]["run_id"] for e in events
                                if e["type"] == "task_run.state"
                                and e["run"]["status"] == "completed"), sorted([first, second]))
        # A run id that is not the team's, even one that exists upstream under the group.
        status, _, _ = self.get("/v1/tasks/groups/%s/runs/trun_not_ours" % gid)
        self.assertEqual(status, 404)

    def test_a_result_timeout_is_a_whole_number_of_seconds(self):
        """?timeout= is refused unless it is one whole number of seconds (it was read as an
        hour); absent, the upstream's default applies."""
        gid = self.new_group()
        run_id = self.add_runs(gid, 1)[0]
        self.s._sim("POST", "/_sim/runs/complete", {"taskgroup_id": gid})
        self.s.sim_clear()
        for query in ("timeout=-5", "timeout=abc", "timeout=1.5", "timeout=", "timeout",
                      "timeout=%2D5", "timeout=+5", "timeout=5&timeout=6", "timeout=0x10"):
            with self.subTest(query=query):
                started = time.monotonic()
                status, err, _ = self.get("/v1/tasks/runs/%s/result?%s" % (run_id, query))
                self.assertEqual(status, 422, err)
                self.assertEqual([p["loc"] for p in err["detail"]], [["query", "timeout"]])
                self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(self.s.sim_requests(), [])
        for query in ("", "?timeout=0", "?timeout=5", "?timeout=%35", "?timeout=99999"):
            with self.subTest(query=query):
                status, result, _ = self.get("/v1/tasks/runs/%s/result%s" % (run_id, query))
                self.assertEqual(status, 200, result)
                self.assertEqual(result["run"]["run_id"], run_id)

    def test_a_read_of_an_unreachable_upstream_is_a_502(self):
        gid = self.new_group()
        self.s.sim_fault(kind="reset", match="get_group")
        status, err, _ = self.get("/v1/tasks/groups/" + gid)
        self.assertEqual(status, 502, err)
        self.assertIn("message", err["error"])

    def test_wrong_method_is_405(self):
        status, hdrs, _ = self.s.http("DELETE", "/v1/tasks/groups", None,
                                      {"x-api-key": self.token})
        self.assertEqual(status, 405)
        self.assertEqual(hdrs.get("allow"), "POST")



class LongReadShareTest(StackTestCase):
    """Event streams and awaited results are held by nginx, not by the daemon's workers;
    a team may hold long_reads_per_team of them at once, and past it gets 429 with
    Retry-After in the upstream's shape while other teams' reads and every submission are
    served."""

    def test_a_team_at_its_limit_gets_429_and_another_team_is_served(self):
        s = self.stack(keys=[KEY_A, KEY_B], conf={"long_reads_per_team": 2, "threads": 2})
        groups, tokens = {}, {}
        for team, key in (("alpha", KEY_A), ("beta", KEY_B)):
            s.add_team(team, key, preset={"processor": "core"})
            tokens[team], _ = s.issue_token(team)
            status, _, data = s.http("POST", "/v1/tasks/groups", "{}", sdk_headers(tokens[team]))
            self.assertEqual(status, 200, data)
            groups[team] = json.loads(data)["taskgroup_id"]
            runs = json.dumps({"inputs": [{"input": "q%d" % i} for i in range(3)]})
            status, _, data = s.http("POST", "/v1/tasks/groups/%s/runs" % groups[team], runs,
                                     sdk_headers(tokens[team]))
            self.assertEqual(status, 200, data)
        s._sim("POST", "/_sim/stream", {"interval_ms": 1000})

        def open_stream(team):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            c.request("GET", "/v1/tasks/groups/%s/runs" % groups[team],
                      headers={"x-api-key": tokens[team], "Accept": "text/event-stream"})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.read1(65536))  # the first event: the stream is open
            return c

        held = [open_stream("alpha"), open_stream("alpha")]
        try:
            # More streams than the daemon has threads: none of them holds one.
            held.append(open_stream("beta"))
            path = "/v1/tasks/groups/%s/runs" % groups["alpha"]
            status, hdrs, data = s.http("GET", path, None, {"x-api-key": tokens["alpha"],
                                                            "Accept": "text/event-stream"})
            self.assertEqual(status, 429, data)
            self.assertTrue(hdrs.get("retry-after", "").isdigit(), hdrs)
            err = json.loads(data)
            self.assertIn("long_reads_per_team", err["error"]["message"])
            self.assertEqual(err["error"]["ref_id"], hdrs.get("x-request-id"))
            self.assertNotIn("beta", data.decode())
            # A plain read is not a long one: not counted.
            status, _, data = s.http("GET", "/v1/tasks/groups/" + groups["alpha"], None,
                                     {"x-api-key": tokens["alpha"]})
            self.assertEqual(status, 200, data)
            # Team beta still reads, and both teams' submissions are answered.
            held.append(open_stream("beta"))
            for team in ("alpha", "beta"):
                status, _, data = s.http("POST", "/v1/runs", json.dumps({"inputs": ["x"]}),
                                         {"Authorization": "Bearer " + tokens[team],
                                          "Content-Type": "application/json"})
                self.assertEqual(status, 200, data)
            status, _, _ = s.http("GET", "/healthz")
            self.assertEqual(status, 200)
        finally:
            held[0].close()
        # One of alpha's over, its next stream is proxied.
        deadline = time.monotonic() + 5
        while True:
            status, _, data = s.http("GET", path, None, {"x-api-key": tokens["alpha"],
                                                         "Accept": "text/event-stream"})
            if status != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200, data)
        self.assertEqual(data.count(b"\n\n"), 3)
        for c in held[1:]:
            c.close()
        metrics = s.http("GET", "/metrics")[2].decode()
        self.assertIn('taskgate_long_reads_authorised_total{team="alpha"}', metrics)
        self.assertIn('taskgate_reads_authorised_total{kind="stream"}', metrics)


if __name__ == "__main__":
    unittest.main()
