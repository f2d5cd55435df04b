#!/usr/bin/env python3
"""Tests of the upstream simulator's read-only paths (tests/sim, binary tg_sim) over the
wire: a group's runs and events as server-sent event streams, runs, their inputs and
results, each answer checked against Parallel's OpenAPI document when it is at hand.

Stdlib only; the simulator is started as in test_simulator.py (from $TG_SIM)."""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_simulator import KEY_A, KEY_B, TIME, SharedSimulatorCase, inputs  # noqa: E402

# Beside the checkout, the project's shared/ folder holds the upstream's OpenAPI document.
OPENAPI_PATHS = (os.environ.get("TG_UPSTREAM_OPENAPI", ""),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                              "shared", "upstream", "parallel-openapi.json"))


def load_openapi():
    """Parallel's OpenAPI document when it is at hand, else None (the field checks written
    out in the tests still run)."""
    for path in OPENAPI_PATHS:
        if path and os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return None


OPENAPI = load_openapi()
JSON_TYPES = {"string": str, "object": dict, "array": list, "boolean": bool,
              "null": type(None), "integer": int, "number": (int, float)}


def schema_problems(value, schema, path="$"):
    """What keeps value from matching an OpenAPI 3.1 schema (the subset the Task API uses:
    $ref, anyOf, oneOf, const, enum, type, required, properties, additionalProperties,
    items); an empty list when it matches."""
    if "$ref" in schema:
        node = OPENAPI
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return schema_problems(value, node, path)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = [s for s in schema[key] if not schema_problems(value, s, path)]
            if not fits or (key == "oneOf" and len(fits) > 1):
                return ["%s: %d of the %s alternatives fit %r" % (path, len(fits), key, value)]
            return []
    if "const" in schema and value != schema["const"]:
        return ["%s: %r is not %r" % (path, value, schema["const"])]
    if "enum" in schema and value not in schema["enum"]:
        return ["%s: %r not in %r" % (path, value, schema["enum"])]
    want = schema.get("type")
    if want is not None:
        ok = isinstance(value, JSON_TYPES[want])
        if want in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return ["%s: %r is not of type %s" % (path, value, want)]
    problems = []
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append("%s: %s is missing" % (path, name))
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                problems += schema_problems(item, props[name], path + "." + name)
            elif isinstance(extra, dict):
                problems += schema_problems(item, extra, path + "." + name)
            elif extra is False:
                problems.append("%s: unexpected %s" % (path, name))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], "%s[%d]" % (path, i))
    return problems


class SSEStream:
    """A server-sent event stream read event by event, as a client of the upstream would."""

    def __init__(self, sim, path, key=KEY_A, timeout=10):
        self.conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
        self.conn.request("GET", path, headers={"x-api-key": key})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self):
        """The next event as (event name, data parsed as JSON, monotonic arrival time), or
        None when the stream has ended."""
        name, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                if name is not None or data:
                    raise AssertionError("stream ended inside an event")
                return None
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if name is None and not data:
                    continue
                return name, json.loads("\n".join(data)), time.monotonic()
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)

    def all(self):
        events = []
        while True:
            ev = self.next()
            if ev is None:
                return events
            events.append(ev)

    def close(self):
        self.conn.close()


class ReadCase(SharedSimulatorCase):
    """What the tests of runs and their reads share, on a simulator whose runs end only on
    demand (each test sets the clock it needs)."""

    SIM_ARGS = ("--run-ms", "manual", "--quiet")

    def setUp(self):
        super().setUp()
        self.settings(run_ms=-1, interval_ms=0)

    def settings(self, **values):
        status, data = self.sim.ctl("POST", "/runs", values)
        self.assertEqual(status, 200, data)
        return data

    def complete(self, **body):
        status, data = self.sim.ctl("POST", "/runs/complete", body)
        self.assertEqual(status, 200, data)
        return data["ended"]

    def group_with_runs(self, batch, key=KEY_A, **extra):
        gid = self.sim.create_group(key)
        status, _, data = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid,
                                        dict(extra, inputs=batch), key=key)
        self.assertEqual(status, 200, data)
        return gid, data["run_ids"]

    def get(self, path, key=KEY_A, **kw):
        return self.sim.call("GET", path, key=key, **kw)

    def assert_schema(self, value, name):
        """value matches components/schemas/name of the OpenAPI (when it is at hand)."""
        if OPENAPI is not None:
            self.assertEqual(schema_problems(value, {"$ref": "#/components/schemas/" + name}),
                             [], json.dumps(value))

    def assert_task_run(self, run, run_id, gid, status=None):
        """run is a TaskRun: the fields the OpenAPI requires, with their types."""
        for field, kind in (("run_id", str), ("interaction_id", str), ("status", str),
                            ("is_active", bool), ("processor", str), ("created_at", str),
                            ("modified_at", str)):
            self.assertIsInstance(run[field], kind, (field, run))
        self.assertEqual(run["run_id"], run_id)
        self.assertEqual(run["taskgroup_id"], gid)
        self.assertRegex(run["created_at"], TIME)
        self.assertRegex(run["modified_at"], TIME)
        self.assertEqual(run["is_active"], run["status"] in ("queued", "running"))
        if status is not None:
            self.assertEqual(run["status"], status)
        self.assert_schema(run, "TaskRun")

    def assert_error(self, status, data, expected_status, message=None):
        self.assertEqual(status, expected_status, data)
        self.assertEqual(data["type"], "error")
        self.assertTrue(data["error"]["ref_id"])
        if message is not None:
            self.assertEqual(data["error"]["message"], message)

    def open_stream(self, path, key=KEY_A, timeout=10):
        stream = SSEStream(self.sim, path, key=key, timeout=timeout)
        self.addCleanup(stream.close)
        return stream


class ReadPathTest(ReadCase):
    """The upstream's read-only paths."""

    # ---- a run ----------------------------------------------------------------------

    def test_run_by_group_and_by_id_carries_its_metadata(self):
        gid, ids = self.group_with_runs(
            [{"processor": "core", "input": "a", "metadata": {"tag": "tg-1", "n": 2, "ok": True}},
             {"processor": "base-fast", "input": {"x": 1}}])
        for prefix in ("/v1", "/v1beta"):
            status, _, run = self.get("%s/tasks/groups/%s/runs/%s" % (prefix, gid, ids[0]))
            self.assertEqual(status, 200, run)
            self.assert_task_run(run, ids[0], gid, "queued")
            self.assertEqual(run["processor"], "core")
            self.assertEqual(run["metadata"], {"tag": "tg-1", "n": 2, "ok": True})
            self.assertIsNone(run["error"])
        status, _, run = self.get("/v1/tasks/runs/" + ids[1])
        self.assertEqual(status, 200)
        self.assert_task_run(run, ids[1], gid)
        self.assertIsNone(run["metadata"])
        # Parallel serves a run by id and its result under /v1 only.
        self.assert_error(*self.get("/v1beta/tasks/runs/" + ids[1])[::2], 404, "Not Found")
        log = self.requests_after(0)
        self.assertEqual([(e["method"], e["status"]) for e in log],
                         [("POST", 200), ("POST", 200), ("GET", 200), ("GET", 200),
                          ("GET", 200), ("GET", 404)])
        self.assertEqual(log[2]["path"], "/v1/tasks/groups/%s/runs/%s" % (gid, ids[0]))
        self.assertEqual(log[2]["headers"]["x-api-key"], KEY_A)

    def requests_after(self, n):
        status, data = self.sim.ctl("GET", "/requests")
        self.assertEqual(status, 200)
        return data[n:]

    def test_read_paths_are_the_owners_only(self):
        gid, ids = self.group_with_runs(inputs(1))
        other, other_ids = self.group_with_runs(inputs(1))
        paths = {"/v1/tasks/groups/%s/runs/%s" % (gid, ids[0]): "TaskGroup not found",
                 "/v1beta/tasks/groups/%s/runs/%s" % (gid, ids[0]): "TaskGroup not found",
                 "/v1/tasks/runs/" + ids[0]: "Run id not found",
                 "/v1/tasks/runs/%s/result?timeout=0" % ids[0]:
                     "Run failed or run id not found",
                 "/v1/tasks/groups/%s/runs" % gid: "TaskGroup not found",
                 "/v1beta/tasks/groups/%s/events" % gid: "TaskGroup not found"}
        for path, message in paths.items():
            status, _, data = self.get(path, key=KEY_B)
            self.assert_error(status, data, 404, message)
            self.assertEqual(self.get(path, key=None)[0], 401, path)
        # A run of another group, under this group; runs that do not exist.
        status, _, data = self.get("/v1/tasks/groups/%s/runs/%s" % (gid, other_ids[0]))
        self.assert_error(status, data, 404, "Run id not found")
        for path in ("/v1/tasks/runs/trun_" + "0" * 32,
                     "/v1/tasks/groups/%s/runs/trun_%s" % (gid, "0" * 32)):
            self.assert_error(*self.get(path)[::2], 404, "Run id not found")
        self.assertEqual(self.get("/v1/tasks/runs/%s" % ids[0])[0], 200)

    # ---- results and the run lifecycle --------------------------------------------------

    def test_result_waits_then_answers_when_the_run_completes(self):
        gid, ids = self.group_with_runs([{"processor": "base", "input": "France GDP?",
                                          "metadata": {"k": "v"}}],
                                        default_task_spec={"output_schema": "text"})
        path = "/v1/tasks/runs/%s/result" % ids[0]
        start = time.monotonic()
        status, _, data = self.get(path + "?timeout=1")
        waited = time.monotonic() - start
        self.assert_error(status, data, 408, "Request timed out; run still active")
        self.assertGreaterEqual(waited, 0.9)
        self.assertLess(waited, 4)
        self.assert_error(*self.get(path + "?timeout=soon")[::2], 422)

        answer = {}

        def wait_for_result():
            answer["got"] = self.get(path + "?timeout=20", timeout=30)
            answer["at"] = time.monotonic()

        waiter = threading.Thread(target=wait_for_result)
        waiter.start()
        time.sleep(0.3)
        self.assertNotIn("got", answer)  # still waiting for the run
        done_at = time.monotonic()
        self.assertEqual(self.complete(run_ids=ids), 1)
        waiter.join(10)
        status, _, result = answer["got"]
        self.assertEqual(status, 200, result)
        self.assertLess(answer["at"] - done_at, 3)
        self.assert_task_run(result["run"], ids[0], gid, "completed")
        self.assertEqual(result["run"]["metadata"], {"k": "v"})
        self.assertEqual(result["output"]["type"], "text")
        self.assertEqual(result["output"]["basis"], [])
        self.assertIn("France GDP?", result["output"]["content"])
        self.assert_schema(result, "TaskRunResult")
        self.assertEqual(self.get(path + "?timeout=0")[2], result)  # deterministic

    def test_outputs_follow_the_task_spec(self):
        schema = {"type": "json", "json_schema": {"type": "object", "properties": {
            "gdp": {"type": "string"}, "year": {"type": "integer"}, "share": {"type": "number"},
            "listed": {"type": "boolean"}, "tags": {"type": "array"},
            "size": {"type": "string", "enum": ["small", "large"]}}}}
        gid, ids = self.group_with_runs(
            [{"processor": "base", "input": "x", "task_spec": {"output_schema": schema}},
             {"processor": "base", "input": "y"},
             {"processor": "base", "input": "z", "task_spec": {"output_schema": {"type": "auto"}}}])
        self.complete(taskgroup_id=gid)
        outputs = [self.get("/v1/tasks/runs/%s/result" % rid)[2]["output"] for rid in ids]
        self.assertEqual(outputs[0], {"basis": [], "type": "json", "content": {
            "gdp": "simulated gdp", "year": 1, "share": 1.5, "listed": True, "tags": [],
            "size": "small"}})
        for out in outputs[1:]:  # no task spec, or an auto schema: JSON and the schema chosen
            self.assertEqual(out["type"], "json")
            self.assertIsInstance(out["content"], dict)
            self.assertEqual(out["output_schema"]["type"], "object")
        for out in outputs:
            self.assert_schema(out, "TaskRunJsonOutput")

    def test_failed_and_cancelled_runs(self):
        gid, ids = self.group_with_runs(inputs(3))
        self.assertEqual(self.complete(run_ids=[ids[0]], status="failed"), 1)
        self.assertEqual(self.complete(run_ids=[ids[1]], status="cancelled"), 1)
        self.assertEqual(self.complete(run_ids=[ids[0]]), 0)  # already over
        status, _, run = self.get("/v1/tasks/runs/" + ids[0])
        self.assert_task_run(run, ids[0], gid, "failed")
        self.assertIsInstance(run["error"]["message"], str)
        self.assertIsInstance(run["error"]["ref_id"], str)
        for rid in ids[:2]:
            self.assert_error(*self.get("/v1/tasks/runs/%s/result" % rid)[::2], 404,
                              "Run failed or run id not found")
        status, _, group = self.get("/v1/tasks/groups/" + gid)
        self.assertEqual(group["status"]["task_run_status_counts"],
                         {"failed": 1, "cancelled": 1, "queued": 1})
        self.assertTrue(group["status"]["is_active"])
        self.assertEqual(self.sim.ctl("POST", "/runs/complete", {"run_ids": ["trun_x"]})[0], 404)
        self.assertEqual(self.sim.ctl("POST", "/runs/complete", {"status": "done"})[0], 400)
        self.assertEqual(self.sim.ctl("POST", "/runs/complete",
                                      {"taskgroup_id": "tgrp_nothing"})[0], 404)

    def test_runs_complete_on_the_clock(self):
        self.settings(run_ms=300)
        gid, ids = self.group_with_runs(inputs(2))
        self.assertEqual(self.get("/v1/tasks/runs/" + ids[0])[2]["status"], "queued")
        status, _, result = self.get("/v1/tasks/runs/%s/result?timeout=10" % ids[0])
        self.assertEqual(status, 200, result)
        self.assertEqual(result["run"]["status"], "completed")
        status, _, group = self.get("/v1beta/tasks/groups/" + gid)
        self.assertEqual(group["status"]["task_run_status_counts"], {"completed": 2})
        self.assertFalse(group["status"]["is_active"])
        self.assertEqual(self.sim.ctl("GET", "/stream")[1], {"run_ms": 300, "interval_ms": 0})
        for bad in ({"run_ms": -2}, {"interval_ms": -1}, {"colour": 1}, [1]):
            self.assertEqual(self.sim.ctl("POST", "/runs", bad)[0], 400, bad)

    # ---- the runs stream -------------------------------------------------------------

    def test_runs_stream_is_sent_event_by_event(self):
        gid, ids = self.group_with_runs(inputs(3))
        self.settings(interval_ms=600)
        stream = self.open_stream("/v1/tasks/groups/%s/runs" % gid)
        self.assertEqual(stream.status, 200)
        self.assertEqual(stream.resp.getheader("Content-Type"), "text/event-stream")
        self.assertEqual(stream.resp.getheader("Transfer-Encoding"), "chunked")
        first = stream.next()
        self.assertIsNotNone(first)
        rest = stream.all()
        ended = time.monotonic()
        # Two pauses of 0.6 s came after the first event: it was sent on its own.
        self.assertGreaterEqual(ended - first[2], 1.0)
        events = [first] + rest
        self.assertEqual([data["run"]["run_id"] for _, data, _ in events], ids)
        for name, data, _ in events:
            self.assertEqual(name, "task_run.state")
            self.assertEqual(data["type"], "task_run.state")
            self.assertIsInstance(data["event_id"], str)
            self.assertIsNone(data["input"])
            self.assertIsNone(data["output"])
            self.assert_task_run(data["run"], data["run"]["run_id"], gid)
            self.assertTrue(data["run"]["is_active"])  # the stream does not wait for runs
            self.assert_schema(data, "TaskRunEvent")
        self.assertEqual(len({data["event_id"] for _, data, _ in events}), 3)

    def test_runs_stream_inputs_outputs_filter_and_resume(self):
        batch = [{"processor": "base", "input": "q%d" % i, "metadata": {"row": i},
                  "mcp_servers": [{"name": "m", "url": "https://m.example",
                                   "headers": {"authorization": "secret"}}]}
                 for i in range(2)]
        gid, first_ids = self.group_with_runs(batch)
        status, _, second = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid,
                                          {"inputs": inputs(2)}, key=KEY_A)
        self.assertEqual(status, 200)
        self.complete(run_ids=first_ids + second["run_ids"][:1])
        base = "/v1beta/tasks/groups/%s/runs" % gid
        events = [d for _, d, _ in self.open_stream(
            base + "?include_input=true&include_output=1").all()]
        self.assertEqual(len(events), 4)
        self.assertEqual(events[0]["input"]["input"], "q0")
        self.assertEqual(events[0]["input"]["metadata"], {"row": 0})
        self.assertNotIn("headers", events[0]["input"]["mcp_servers"][0])  # write-only
        self.assertEqual(events[0]["output"]["type"], "json")
        self.assertIsNone(events[3]["output"])  # still queued: no output yet
        for data in events:
            self.assert_schema(data, "TaskRunEvent")
        # status filter; resuming after an event and from an add-runs run_cursor
        done = [d["run"]["run_id"] for _, d, _ in self.open_stream(base + "?status=completed").all()]
        self.assertEqual(done, first_ids + second["run_ids"][:1])
        after = self.open_stream(base + "?last_event_id=" + events[0]["event_id"]).all()
        self.assertEqual([d["run"]["run_id"] for _, d, _ in after],
                         first_ids[1:] + second["run_ids"])
        resumed = self.open_stream(base + "?last_event_id=" + second["run_cursor"]).all()
        self.assertEqual([d["run"]["run_id"] for _, d, _ in resumed], second["run_ids"])
        for query, name in (("last_event_id=bogus", "last_event_id"),
                            ("include_input=maybe", "include_input"),
                            ("status=done", "status")):
            status, _, data = self.get(base + "?" + query)
            self.assertEqual(status, 422, query)
            self.assertEqual(data["detail"][0]["loc"], ["query", name])

    # ---- the events stream -----------------------------------------------------------

    def test_events_stream_follows_the_group_until_it_is_done(self):
        gid, ids = self.group_with_runs(inputs(2))
        stream = self.open_stream("/v1/tasks/groups/%s/events?timeout=20" % gid)
        self.assertEqual(stream.resp.getheader("Content-Type"), "text/event-stream")
        name, data, _ = stream.next()
        self.assertEqual((name, data["type"]), ("task_group_status", "task_group_status"))
        self.assertEqual(data["status"]["task_run_status_counts"], {"queued": 2})
        self.assertTrue(data["status"]["is_active"])
        self.assert_schema(data, "TaskGroupStatusEvent")
        for rid in ids:  # each run's first state: queued
            name, data, _ = stream.next()
            self.assertEqual(name, "task_run.state")
            self.assert_task_run(data["run"], rid, gid, "queued")
            self.assert_schema(data, "TaskRunEvent")
        # Manual runs start 0.1 s after they were added: both run, and the group says so.
        running = [stream.next() for _ in range(3)]
        self.assertEqual([(n, d["run"]["status"]) for n, d, _ in running[:2]],
                         [("task_run.state", "running")] * 2)
        self.assertEqual(running[2][1]["status"]["task_run_status_counts"], {"running": 2})
        self.complete(run_ids=ids[:1])
        name, data, _ = stream.next()
        self.assertEqual(name, "task_run.state")
        self.assert_task_run(data["run"], ids[0], gid, "completed")
        self.assertIsNone(data["run"]["error"])
        self.assert_schema(data, "TaskRunEvent")
        name, data, _ = stream.next()
        self.assertEqual(name, "task_group_status")
        self.assertEqual(data["status"]["task_run_status_counts"], {"completed": 1, "running": 1})
        self.complete(run_ids=ids[1:], status="failed")
        rest = stream.all()  # the run, the group's last status, then the end
        self.assertEqual([n for n, _, _ in rest], ["task_run.state", "task_group_status"])
        self.assertEqual(rest[0][1]["run"]["status"], "failed")
        self.assertEqual(rest[0][1]["run"]["error"]["message"], "Simulated failure")
        self.assertFalse(rest[1][1]["status"]["is_active"])
        for _, d, _ in rest:
            self.assert_schema(d, "TaskRunEvent" if d["type"] == "task_run.state"
                               else "TaskGroupStatusEvent")

    def test_events_stream_resumes_and_times_out(self):
        gid, ids = self.group_with_runs(inputs(1))
        self.complete(taskgroup_id=gid)  # before it started: queued, then completed
        path = "/v1beta/tasks/groups/%s/events" % gid
        events = [d for _, d, _ in self.open_stream(path).all()]  # over: no wait
        self.assertEqual([(d["type"], d.get("run", {}).get("status")) for d in events],
                         [("task_group_status", None), ("task_run.state", "queued"),
                          ("task_run.state", "completed"), ("task_group_status", None)])
        ids_seen = [d["event_id"] for d in events]
        self.assertEqual(len(set(ids_seen)), 4)
        for i, eid in enumerate(ids_seen):  # resuming after any event gives the rest
            resumed = [d for _, d, _ in self.open_stream(path + "?last_event_id=" + eid).all()]
            self.assertEqual(resumed, events[i + 1:])
        # Runs added later: the add's event_cursor resumes right before them; the stream
        # then stays open while they are active, until its timeout.
        status, _, added = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid,
                                         {"inputs": inputs(1)}, key=KEY_A)
        start = time.monotonic()
        tail = self.open_stream(path + "?timeout=0.5&last_event_id=" + added["event_cursor"]).all()
        self.assertLess(time.monotonic() - start, 4)
        self.assertEqual([d["type"] for _, d, _ in tail][:2],
                         ["task_group_status", "task_run.state"])
        self.assertEqual(tail[0][1]["status"]["num_task_runs"], 2)
        self.assertEqual(tail[1][1]["run"]["run_id"], added["run_ids"][0])
        same = self.open_stream(path + "?timeout=0&last_event_id=" + ids_seen[-1]).all()
        self.assertEqual([d for _, d, _ in same], [d for _, d, _ in tail][:len(same)])
        for query in ("timeout=soon", "last_event_id=" + ids_seen[0].replace("ecur", "rcur")):
            status, _, data = self.get(path + "?" + query)
            self.assertEqual(status, 422, query)

    def test_runs_fail_when_they_ask_to(self):
        """A run fails with its own error when its metadata says sim_outcome "failed" (the
        message from sim_error) or its input starts with "fail:"; the others complete."""
        self.settings(run_ms=300)
        gid, ids = self.group_with_runs([
            {"processor": "base", "input": "fine"},
            {"processor": "base", "input": "x",
             "metadata": {"sim_outcome": "failed", "sim_error": "Quota exceeded"}},
            {"processor": "base", "input": "fail: no sources found"},
            {"processor": "base", "input": "y", "metadata": {"sim_outcome": "cancelled"}}])
        events = [d for _, d, _ in self.open_stream(
            "/v1/tasks/groups/%s/events?timeout=20" % gid).all()]
        states = {}
        for d in events:
            if d["type"] == "task_run.state":
                states.setdefault(d["run"]["run_id"], []).append(d["run"]["status"])
                self.assert_schema(d, "TaskRunEvent")
        self.assertEqual(states, {ids[0]: ["queued", "running", "completed"],
                                  ids[1]: ["queued", "running", "failed"],
                                  ids[2]: ["queued", "running", "failed"],
                                  ids[3]: ["queued", "running", "cancelled"]})
        runs = {rid: self.get("/v1/tasks/runs/" + rid)[2] for rid in ids}
        self.assertIsNone(runs[ids[0]]["error"])
        self.assertEqual(runs[ids[1]]["error"]["message"], "Quota exceeded")
        self.assertEqual(runs[ids[2]]["error"]["message"], "no sources found")
        self.assertFalse(events[-1]["status"]["is_active"])
        self.assertEqual(events[-1]["status"]["task_run_status_counts"],
                         {"completed": 1, "failed": 2, "cancelled": 1})
        # /_sim/runs/complete without a status ends a run as it asked to.
        self.settings(run_ms=-1)
        gid, ids = self.group_with_runs([{"processor": "base", "input": "fail: later"}])
        self.assertEqual(self.complete(taskgroup_id=gid), 1)
        self.assertEqual(self.get("/v1/tasks/runs/" + ids[0])[2]["status"], "failed")

    def test_connection_is_reused_after_a_stream(self):
        gid, ids = self.group_with_runs(inputs(2))
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            conn.request("GET", "/v1/tasks/groups/%s/runs" % gid, headers={"x-api-key": KEY_A})
            first = conn.getresponse()
            body = first.read().decode()
            self.assertEqual(body.count("event: task_run.state\ndata: "), 2)
            sock = conn.sock
            conn.request("GET", "/v1/tasks/runs/" + ids[0], headers={"x-api-key": KEY_A})
            second = conn.getresponse()
            self.assertEqual(json.loads(second.read())["run_id"], ids[0])
            self.assertIs(conn.sock, sock)
        finally:
            conn.close()

    def test_http10_stream_ends_with_the_connection(self):
        gid, ids = self.group_with_runs(inputs(2))
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(b"GET /v1/tasks/groups/%s/runs HTTP/1.0\r\nx-api-key: %s\r\n\r\n"
                      % (gid.encode(), KEY_A.encode()))
            f = s.makefile("rb")
            self.assertEqual(f.readline(), b"HTTP/1.1 200 OK\r\n")
            head = {}
            for line in iter(f.readline, b"\r\n"):
                name, _, value = line.decode().partition(":")
                head[name.lower()] = value.strip()
            body = f.read().decode()  # up to the close
        self.assertEqual(head["connection"], "close")
        self.assertNotIn("transfer-encoding", head)
        events = [e for e in body.split("\n\n") if e]
        self.assertEqual([json.loads(e.split("data: ", 1)[1])["run"]["run_id"] for e in events],
                         ids)

    # ---- faults on the read paths ------------------------------------------------------

    def test_faults_apply_to_the_read_paths(self):
        gid, ids = self.group_with_runs(inputs(2))
        other, _ = self.group_with_runs(inputs(1))
        self.fault(kind="status", status=503, match="stream_runs", path=gid)
        self.assertEqual(len(self.open_stream("/v1/tasks/groups/%s/runs" % other).all()), 1)
        status, _, data = self.get("/v1/tasks/groups/%s/runs" % gid)
        self.assert_error(status, data, 503)
        self.fault(kind="status", status=429, match="get_result", retry_after="2")
        status, resp, _ = self.get("/v1/tasks/runs/%s/result?timeout=0" % ids[0])
        self.assertEqual((status, resp.getheader("Retry-After")), (429, "2"))
        # A stream that breaks after its first event.
        self.fault(kind="reset", apply=True, match="stream_events")
        stream = self.open_stream("/v1/tasks/groups/%s/events" % gid)
        self.assertEqual(stream.next()[0], "task_group_status")
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            stream.all()
        self.fault(kind="malformed", match="stream_runs")
        stream = self.open_stream("/v1/tasks/groups/%s/runs" % gid)
        with self.assertRaises(ValueError):
            stream.next()
        self.assertEqual(self.sim.ctl("GET", "/faults")[1], {"faults": []})
        log = self.requests_after(0)
        # The broken streams had begun with a 200.
        self.assertEqual([e["status"] for e in log[-5:]], [200, 503, 429, 200, 200])

    def fault(self, **fault):
        status, data = self.sim.ctl("POST", "/faults", fault)
        self.assertEqual(status, 200, data)


WEBHOOK_SECRET_RAW = b"sim webhook secret 0123456789abcdef"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_SECRET_RAW).decode()
OLD_SECRET = "a plain text secret"


class Receiver:
    """A webhook receiver on a free port: records every POST (headers, body) and answers
    each with the next of the statuses it is given (200 once they run out)."""

    def __init__(self, statuses=()):
        outer = self
        self.got = []
        self.statuses = list(statuses)
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks/parallel" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return list(self.got)
            time.sleep(0.05)
        raise AssertionError("%d webhook(s) received, %d expected" % (len(self.got), n))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def signature(secret, headers, body):
    mac = hmac.new(secret, ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"]))
                   .encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookTest(ReadCase):
    """Runs that ask for task_run.status webhooks are POSTed when they complete or fail,
    signed with every --webhook-secret, sent again on a non-2xx and on demand."""

    SIM_ARGS = ("--run-ms", "manual", "--quiet", "--webhook-secret", WEBHOOK_SECRET,
                "--webhook-secret", OLD_SECRET)

    def hooked(self, url, n, **run):
        hook = {"url": url, "event_types": ["task_run.status"]}
        return self.group_with_runs([dict({"processor": "base", "input": "q%d" % i,
                                           "webhook": hook}, **run) for i in range(n)])

    def test_deliveries_are_signed_task_run_status_posts(self):
        rx = Receiver()
        self.addCleanup(rx.close)
        gid, ids = self.hooked(rx.url, 2)
        _, plain = self.group_with_runs(inputs(1))  # no webhook: nothing sent
        _, others = self.group_with_runs([{"processor": "base", "input": "z", "webhook": {
            "url": rx.url}}])  # no event types: nothing sent
        self.complete(run_ids=ids[:1])
        self.complete(run_ids=ids[1:], status="failed")
        self.complete(run_ids=plain + others)
        got = rx.wait(2)
        time.sleep(0.3)
        self.assertEqual(len(rx.got), 2)
        bodies = [json.loads(b) for _, b in got]
        self.assertEqual(sorted((b["data"]["run_id"], b["data"]["status"]) for b in bodies),
                         sorted([(ids[0], "completed"), (ids[1], "failed")]))
        for (headers, body), data in zip(got, bodies):
            self.assertEqual(data["type"], "task_run.status")
            self.assertRegex(data["timestamp"], TIME)
            self.assert_task_run(data["data"], data["data"]["run_id"], gid)
            self.assertNotIn("output", data["data"])
            self.assertEqual(headers["content-type"], "application/json")
            self.assertRegex(headers["webhook-id"], r"^msg_[0-9a-f]{32}$")
            self.assertLess(abs(int(headers["webhook-timestamp"]) - time.time()), 30)
            sigs = headers["webhook-signature"].split(" ")
            self.assertEqual(sigs, [signature(WEBHOOK_SECRET_RAW, headers, body),
                                    signature(OLD_SECRET.encode(), headers, body)])
        failed = [b for b in bodies if b["data"]["status"] == "failed"][0]
        self.assertEqual(failed["data"]["error"]["message"], "Simulated failure")
        status, listed = self.sim.ctl("GET", "/webhooks")
        mine = [d for d in listed if d["run_id"] in ids]
        self.assertEqual(len(mine), 2)
        self.assertTrue(all(d["delivered"] and d["attempts"] == 1 and d["status"] == 200
                            for d in mine), mine)

    def test_a_refused_delivery_is_sent_again_with_its_id_and_resent_on_demand(self):
        rx = Receiver(statuses=[500])
        self.addCleanup(rx.close)
        gid, ids = self.hooked(rx.url, 1)
        self.complete(run_ids=ids)
        got = rx.wait(2, timeout=15)  # the retry comes 5 s after the refusal
        self.assertEqual(got[0][0]["webhook-id"], got[1][0]["webhook-id"])
        self.assertEqual(got[0][1], got[1][1])
        delivery = [d for d in self.sim.ctl("GET", "/webhooks")[1] if d["run_id"] == ids[0]][0]
        self.assertEqual((delivery["attempts"], delivery["delivered"]), (2, True))
        status, answer = self.sim.ctl("POST", "/webhooks/resend", {"id": delivery["id"]})
        self.assertEqual((status, answer), (200, {"id": delivery["id"], "status": 200}))
        got = rx.wait(3)
        self.assertEqual(got[2][0]["webhook-id"], delivery["id"])
        self.assertEqual(got[2][1], got[0][1])
        self.assertEqual(self.sim.ctl("POST", "/webhooks/resend", {"id": "msg_none"})[0], 404)
        self.assertEqual(self.sim.ctl("POST", "/webhooks/resend", {})[0], 400)


if __name__ == "__main__":
    unittest.main()
