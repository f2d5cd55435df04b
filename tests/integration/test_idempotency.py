#!/usr/bin/env python3
"""Repeats of a submission must never create runs twice (docs/guarantees.md): the duplicate
table, each row asserting how many add-runs requests reached the simulator; the run tag every
forwarded run carries; a failed submission repeated with its key sends only what is missing;
the same on the upstream-compatible path."""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import RUN_TAG_RE, StackTestCase  # noqa: E402

KEY = "par-key-idem"


def adds(reqs):
    return [r for r in reqs if r["method"] == "POST" and r["path"].endswith("/runs")]


class IdempotencyTest(StackTestCase):
    def setUp(self):
        self.s = self.stack(keys=[KEY], upstream_timeout_ms=1500, conf={"chunk_size": 2})
        self.s.add_team("t", KEY, preset={"processor": "core"})
        self.token, self.token_id = self.s.issue_token("t")

    def post(self, body, headers=None, path="/v1/runs"):
        h = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json",
             "Accept": "application/json"}
        h.update(headers or {})
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        status, hdrs, data = self.s.http("POST", path, raw, h, timeout=30)
        return status, hdrs, data

    def runs_upstream(self):
        return sum(len(r["body"]["inputs"]) for r in adds(self.s.sim_requests())
                   if r["status"] == 200 or r["status"] == 0)

    # ---- the duplicate table --------------------------------------------------------------

    def test_same_key_same_body_is_answered_from_the_record(self):
        body = {"inputs": ["a", "b", "c"]}
        st1, h1, d1 = self.post(body, {"Idempotency-Key": "k-1"})
        self.assertEqual(st1, 200, d1)
        # Keys in another order are the same request.
        st2, h2, d2 = self.post('{"inputs": ["a", "b", "c"]}', {"Idempotency-Key": "k-1"})
        self.assertEqual(st2, 200, d2)
        self.assertEqual(d2, d1, "a replay is the first answer, byte for byte")
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        self.assertNotIn("idempotent-replayed", h1)
        self.assertEqual(len(adds(self.s.sim_requests())), 2)  # 3 inputs in chunks of 2
        self.assertEqual(self.runs_upstream(), 3)
        self.assertEqual(self.s.db_value("SELECT count(*) FROM submissions"), 1)

    def test_same_key_other_body_is_422(self):
        st1, _, d1 = self.post({"inputs": ["a"]}, {"Idempotency-Key": "k-2"})
        self.assertEqual(st1, 200, d1)
        st2, _, d2 = self.post({"inputs": ["b"]}, {"Idempotency-Key": "k-2"})
        self.assertEqual(st2, 422, d2)
        err = json.loads(d2)
        self.assertEqual(err["detail"][0]["loc"], ["header", "Idempotency-Key"])
        self.assertIn(json.loads(d1)["submission_id"], err["detail"][0]["msg"])
        self.assertEqual(self.runs_upstream(), 1)
        self.assertEqual(self.s.db_value(
            "SELECT count(*) FROM submissions WHERE state = 'rejected' AND http_status = 422"), 1)

    def test_concurrent_same_key_sends_once(self):
        self.s.sim_fault(match="add_runs", kind="delay", delay_ms=800, times=-1)
        results = []
        lock = threading.Lock()

        def one():
            r = self.post({"inputs": ["x"]}, {"Idempotency-Key": "k-3"})
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses.count(200), 1, statuses)
        self.assertEqual(statuses.count(409), 5, [r[2] for r in results])
        for st, h, _ in results:
            if st == 409:
                self.assertEqual(h.get("retry-after"), "1")
        self.assertEqual(len(adds(self.s.sim_requests())), 1)
        # Once the first is answered, a repeat is its answer.
        ok = [r for r in results if r[0] == 200][0]
        st, _, d = self.post({"inputs": ["x"]}, {"Idempotency-Key": "k-3"})
        self.assertEqual((st, d), (200, ok[2]))
        self.assertEqual(len(adds(self.s.sim_requests())), 1)

    def test_sdk_retry_without_key_after_a_timeout_creates_nothing_twice(self):
        # The upstream creates the runs, then never answers: the gateway times out (504,
        # unknown). The SDK retries the same body (x-stainless-retry-count: 1).
        self.s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=5000)
        body = {"inputs": ["p", "q"]}
        st1, _, d1 = self.post(body, {"x-stainless-retry-count": "0"})
        self.assertEqual(st1, 504, d1)
        first = json.loads(d1)["error"]["detail"]["submission_id"]
        self.assertEqual(self.s.db_value("SELECT state FROM submissions WHERE id = ?", (first,)),
                         "unknown")
        st2, _, d2 = self.post(body, {"x-stainless-retry-count": "1"})
        self.assertEqual(st2, 200, d2)
        answer = json.loads(d2)
        group = answer["taskgroup_id"]
        created = [r["run_id"] for r in self.s.sim_group(group)]
        self.assertEqual(answer["run_ids"], created)
        self.assertEqual(len(adds(self.s.sim_requests())), 1, "the retry was sent upstream")
        # The first is reconciled (accepted, its runs recorded); the retry reused them.
        self.assertEqual(self.s.db_value("SELECT state FROM submissions WHERE id = ?", (first,)),
                         "accepted")
        self.assertEqual(sorted(r[0] for r in self.s.db(
            "SELECT run_id FROM audit_runs WHERE submission_id = ?", (first,))), sorted(created))
        self.assertEqual(self.s.db_value(
            "SELECT resumes FROM submissions WHERE id = ?", (answer["submission_id"],)), first)

    def test_without_retry_header_a_repeat_is_a_new_submission(self):
        """Not deduplicated: no key, and not an SDK's retry (documented)."""
        for _ in range(2):
            st, _, d = self.post({"inputs": ["same"]})
            self.assertEqual(st, 200, d)
        self.assertEqual(self.runs_upstream(), 2)
        # An SDK's first try (retry count 0) of a body it sent before is a new request too.
        for _ in range(2):
            st, _, d = self.post({"inputs": ["sdk"]}, {"x-stainless-retry-count": "0"})
            self.assertEqual(st, 200, d)
        self.assertEqual(self.runs_upstream(), 4)

    def test_sdk_retry_of_an_accepted_request_is_replayed(self):
        st1, _, d1 = self.post({"inputs": ["r"]}, {"x-stainless-retry-count": "0"})
        st2, h2, d2 = self.post({"inputs": ["r"]}, {"x-stainless-retry-count": "2"})
        self.assertEqual((st1, st2), (200, 200))
        self.assertEqual(d1, d2)
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        self.assertEqual(self.runs_upstream(), 1)

    # ---- resuming, the form field, the tag ------------------------------------------------

    def test_failed_chunk_repeated_with_its_key_sends_only_what_is_missing(self):
        self.s.sim_fault(match="add_runs", kind="status", status=500, skip=1)
        body = {"inputs": ["a", "b", "c", "d"]}
        st1, _, d1 = self.post(body, {"Idempotency-Key": "k-resume"})
        self.assertEqual(st1, 502, d1)
        detail = json.loads(d1)["error"]["detail"]
        self.assertEqual(detail["accepted_inputs"], 2)
        first_ids = detail["run_ids"]
        st2, _, d2 = self.post(body, {"Idempotency-Key": "k-resume"})
        self.assertEqual(st2, 200, d2)
        answer = json.loads(d2)
        self.assertEqual(answer["run_ids"][:2], first_ids)
        self.assertEqual(len(answer["run_ids"]), 4)
        self.assertEqual(answer["taskgroup_id"], detail["taskgroup_id"])
        sent = [r["body"]["inputs"] for r in adds(self.s.sim_requests())]
        self.assertEqual([[i["input"] for i in x] for x in sent],
                         [["a", "b"], ["c", "d"], ["c", "d"]])  # the 500, then only c, d
        self.assertEqual(self.runs_upstream(), 4)
        self.assertEqual(len(self.s.sim_group(answer["taskgroup_id"])), 4)

    def test_form_field_idempotency_key(self):
        form = "inputs=one%0Atwo&idempotency_key=form-key-1"
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        st1, _, d1 = self.post(form, h)
        st2, _, d2 = self.post(form, h)
        self.assertEqual((st1, st2), (200, 200), (d1, d2))
        self.assertEqual(d1, d2)
        self.assertEqual(self.runs_upstream(), 2)
        stored = self.s.db_value("SELECT request FROM submissions")
        self.assertNotIn("form-key-1", stored)

    def test_every_run_carries_its_tag(self):
        self.s.set_preset("t", "default", {"processor": "core", "metadata": {"cc": "x"}})
        st, _, d = self.post({"inputs": ["a", "b", "c"], "metadata": {"own": "1"}})
        self.assertEqual(st, 200, d)
        sub = json.loads(d)["submission_id"]
        tags = []
        for i, r in enumerate(adds(self.s.sim_requests())):
            for run in r["body"]["inputs"]:
                meta = run["metadata"]
                self.assertEqual((meta["cc"], meta["own"]), ("x", "1"), "team keys kept")
                m = RUN_TAG_RE.match(meta["taskgate"])
                self.assertIsNotNone(m, meta)
                self.assertLessEqual(len(meta["taskgate"]), 512)
                tags.append(m.groups())
        self.assertEqual(tags, [(sub, "1", "0", "2"), (sub, "1", "0", "2"), (sub, "2", "2", "1")])

    def test_the_tag_key_is_reserved(self):
        st, _, d = self.post({"inputs": ["a"], "metadata": {"taskgate": "mine"}})
        self.assertEqual(st, 422, d)
        self.assertEqual(json.loads(d)["detail"][0]["loc"], ["body", "metadata", "taskgate"])
        self.assertEqual(adds(self.s.sim_requests()), [])

    def test_compat_runs_are_tagged_and_the_key_reserved(self):
        st, _, d = self.post({}, {"x-api-key": self.token}, path="/v1/tasks/groups")
        path = "/v1/tasks/groups/%s/runs" % json.loads(d)["taskgroup_id"]
        st, _, d = self.post({"inputs": [{"input": "a", "metadata": {"taskgate": "x"}}]},
                             path=path)
        self.assertEqual(st, 422, d)
        self.assertEqual(json.loads(d)["detail"][0]["loc"],
                         ["body", "inputs", 0, "metadata", "taskgate"])
        st, _, d = self.post({"inputs": [{"input": "a", "metadata": {"mine": "1"}}]}, path=path)
        self.assertEqual(st, 200, d)
        meta = adds(self.s.sim_requests())[0]["body"]["inputs"][0]["metadata"]
        self.assertEqual(meta["mine"], "1")
        self.assertIsNotNone(RUN_TAG_RE.match(meta["taskgate"]), meta)

    def test_bad_key_is_422(self):
        st, _, d = self.post({"inputs": ["a"]}, {"Idempotency-Key": "x" * 256})
        self.assertEqual(st, 422, d)
        self.assertEqual(adds(self.s.sim_requests()), [])

    def test_body_key_that_is_not_a_string_is_422_every_time(self):
        # Dropped, such a key would let every repeat create the runs again.
        for value in (12345, True, ["k"], {"k": "v"}, "", "k" * 256):
            with self.subTest(value=value):
                for _ in range(2):
                    st, _, d = self.post({"inputs": ["a"], "idempotency_key": value})
                    self.assertEqual(st, 422, d)
                    self.assertEqual([p["loc"] for p in json.loads(d)["detail"]],
                                     [["body", "idempotency_key"]])
        self.assertEqual(adds(self.s.sim_requests()), [])
        self.assertEqual(self.s.sim_requests(), [], "a group was made for a refused request")
        self.assertEqual(self.s.db_value("SELECT count(*) FROM submissions WHERE state = "
                                         "'rejected' AND http_status = 422"), 12)
        self.assertEqual(self.s.db_value("SELECT count(*) FROM idempotency"), 0)

    def test_unusable_header_key_is_422_on_both_interfaces(self):
        st, _, d = self.post({}, {"x-api-key": self.token}, path="/v1/tasks/groups")
        runs_path = "/v1/tasks/groups/%s/runs" % json.loads(d)["taskgroup_id"]
        self.s.sim_clear()
        for path, body in (("/v1/runs", {"inputs": ["a"]}),
                           (runs_path, {"inputs": [{"input": "a"}]}),
                           ("/v1/tasks/groups", {})):
            for key in ("", "x" * 256, "caf\u00e9"):
                with self.subTest(path=path, key=key):
                    st, _, d = self.post(body, {"Idempotency-Key": key}, path=path)
                    self.assertEqual(st, 422, d)
                    self.assertEqual(json.loads(d)["detail"][0]["loc"],
                                     ["header", "Idempotency-Key"])
        self.assertEqual(self.s.sim_requests(), [])

    def test_compat_path_replays_the_upstreams_answer(self):
        st, _, d = self.post({}, {"x-api-key": self.token}, path="/v1/tasks/groups")
        self.assertEqual(st, 200, d)
        gid = json.loads(d)["taskgroup_id"]
        path = "/v1/tasks/groups/%s/runs" % gid
        body = {"inputs": [{"input": "z", "processor": "core"}]}
        st1, _, d1 = self.post(body, {"Idempotency-Key": "c-1"}, path=path)
        st2, h2, d2 = self.post(body, {"Idempotency-Key": "c-1"}, path=path)
        self.assertEqual((st1, st2), (200, 200), (d1, d2))
        self.assertEqual(d1, d2)
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        self.assertEqual(len(adds(self.s.sim_requests())), 1)



class ExpiryTest(StackTestCase):
    def test_expired_records_are_removed_while_serving(self):
        # Every SDK request leaves a record with its answer; they must not pile up until
        # the next restart.
        s = self.stack(keys=[KEY], conf={"retry_dedupe_window_s": 1, "idempotency_ttl_s": 1,
                                         "housekeeping_interval_s": 1})
        s.add_team("t", KEY, preset={"processor": "core"})
        token, _ = s.issue_token("t")
        h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        for i, extra in enumerate(({"x-stainless-retry-count": "0"},
                                   {"x-stainless-retry-count": "0"},
                                   {"Idempotency-Key": "k-expiry"})):
            st, _, data = s.http("POST", "/v1/runs", json.dumps({"inputs": ["e%d" % i]}),
                                 dict(h, **extra))
            self.assertEqual(st, 200, data)
        self.assertEqual(s.db_value("SELECT count(*) FROM idempotency"), 3)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and s.db_value("SELECT count(*) FROM idempotency"):
            time.sleep(0.2)
        self.assertEqual(s.db_value("SELECT count(*) FROM idempotency"), 0)
        # The submissions they named stay: only the records expire.
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state = 'accepted'"),
                         3)

if __name__ == "__main__":
    unittest.main()
