#!/usr/bin/env python3
"""Tests of the upstream simulator (tests/sim, binary tg_sim) over the wire.

Stdlib only. The binary comes from $TG_SIM, or else $TG_BUILD_DIR/tests/tg_sim; the test
fails when neither names an executable. Each simulator runs on a free port in a temporary
directory and is always stopped, even when a test fails.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

KEY_A = "key-a-0123456789"
KEY_B = "key-b-0123456789"
RUN_ID = re.compile(r"^trun_[0-9a-f]{32}$")
GROUP_ID = re.compile(r"^tgrp_[0-9a-f]{32}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def find_binary():
    path = os.environ.get("TG_SIM")
    if not path and os.environ.get("TG_BUILD_DIR"):
        path = os.path.join(os.environ["TG_BUILD_DIR"], "tests", "tg_sim")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("tg_sim not found: set TG_SIM (or TG_BUILD_DIR) to the built "
                           "simulator (got %r)" % path)
    return path


class Simulator:
    """One tg_sim process on a free port, with its stderr kept in a temporary file."""

    def __init__(self, *args):
        binary = find_binary()
        self.tmp = tempfile.TemporaryDirectory(prefix="tg_sim_test_")
        port_file = os.path.join(self.tmp.name, "port")
        self.stderr_path = os.path.join(self.tmp.name, "stderr")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--port-file", port_file] + list(args),
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log()
                self.tmp.cleanup()
                raise RuntimeError("tg_sim did not start:\n" + log)
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read().strip())

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """Stops the process; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode

    def cleanup(self):
        """Stops the process and removes its directory; fails when it did not exit 0 or
        a sanitizer reported something."""
        status = self.stop()
        log = self.log()
        self.tmp.cleanup()
        if status != 0 or "Sanitizer" in log or "runtime error" in log:
            raise AssertionError("tg_sim exited %s:\n%s" % (status, log[-5000:]))

    # ---- HTTP helpers ----------------------------------------------------------------

    def call(self, method, path, body=None, key=None, headers=None, timeout=10, raw=False):
        """One request on a fresh connection: (status, headers, parsed JSON body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if key is not None:
                hdrs["x-api-key"] = key
            data = None
            if body is not None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            check_json_headers(resp, payload)
            return resp.status, resp, payload if raw else json.loads(payload)
        finally:
            conn.close()

    def ctl(self, method, path, body=None):
        status, _, data = self.call(method, "/_sim" + path, body)
        return status, data

    def create_group(self, key=KEY_A, metadata=None):
        body = {} if metadata is None else {"metadata": metadata}
        status, _, data = self.call("POST", "/v1/tasks/groups", body, key=key)
        assert status == 200, (status, data)
        return data["taskgroup_id"]

    def add_runs(self, group, runs, key=KEY_A, prefix="/v1", timeout=10):
        return self.call("POST", "%s/tasks/groups/%s/runs" % (prefix, group),
                         {"inputs": runs}, key=key, timeout=timeout)


def check_json_headers(resp, payload):
    """Every answer is JSON-typed with a Content-Length that matches its body."""
    assert resp.getheader("Content-Type") == "application/json", resp.getheaders()
    assert int(resp.getheader("Content-Length")) == len(payload), resp.getheaders()


def inputs(n, processor="base"):
    return [{"processor": processor, "input": "question %d" % i} for i in range(n)]


def read_raw_response(f):
    """Reads one HTTP response from a binary file: (status, headers dict, body bytes)."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


class SharedSimulatorCase(unittest.TestCase):
    """A test class whose tests share one simulator (accounts KEY_A and KEY_B, started with
    SIM_ARGS besides); each test starts with an empty log and fault queue."""

    SIM_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.sim = Simulator("--key", KEY_A, "--key", KEY_B, *cls.SIM_ARGS)

    @classmethod
    def tearDownClass(cls):
        cls.sim.cleanup()

    def setUp(self):
        self.assertEqual(self.sim.ctl("DELETE", "/faults")[0], 200)
        self.assertEqual(self.sim.ctl("DELETE", "/requests")[0], 200)


class SimulatorTest(SharedSimulatorCase):
    """The write paths, the control API and faults."""

    def requests(self):
        status, data = self.sim.ctl("GET", "/requests")
        self.assertEqual(status, 200)
        return data

    def runs_of(self, group):
        status, data = self.sim.ctl("GET", "/groups/" + group)
        self.assertEqual(status, 200)
        return data["runs"]

    def fault(self, **fault):
        status, data = self.sim.ctl("POST", "/faults", fault)
        self.assertEqual(status, 200, data)
        return data

    # ---- authentication --------------------------------------------------------------

    def test_missing_and_wrong_key_are_refused_and_logged(self):
        status, _, data = self.sim.call("POST", "/v1/tasks/groups", {})
        self.assertEqual(status, 401)
        self.assertEqual(data["type"], "error")
        self.assertTrue(data["error"]["ref_id"])
        status, _, data = self.sim.call("POST", "/v1/tasks/groups", {}, key="wrong")
        self.assertEqual(status, 401)
        self.assertEqual(data["error"]["message"], "Invalid API key")
        log = self.requests()
        self.assertEqual([e["status"] for e in log], [401, 401])
        self.assertEqual([e["seq"] for e in log], [log[0]["seq"], log[0]["seq"] + 1])
        self.assertNotIn("x-api-key", log[0]["headers"])
        self.assertEqual(log[1]["headers"]["x-api-key"], "wrong")
        self.assertEqual(log[1]["path"], "/v1/tasks/groups")
        self.assertEqual(log[1]["body"], {})
        self.assertEqual(self.sim.ctl("GET", "/stats")[1]["requests_logged"], 2)

    # ---- the API ---------------------------------------------------------------------

    def test_create_group_and_add_runs(self):
        status, _, group = self.sim.call("POST", "/v1/tasks/groups",
                                         {"metadata": {"team": "x", "n": 3}}, key=KEY_A)
        self.assertEqual(status, 200)
        gid = group["taskgroup_id"]
        self.assertRegex(gid, GROUP_ID)
        self.assertEqual(group["metadata"], {"team": "x", "n": 3})
        self.assertRegex(group["created_at"], TIME)
        self.assertEqual(group["status"]["num_task_runs"], 0)
        self.assertFalse(group["status"]["is_active"])

        batch = [{"processor": "base", "input": "a", "metadata": {"row": 1}},
                 {"processor": "core-fast", "input": {"country": "France"}},
                 {"processor": "ultra8x", "input": "c"}]
        status, _, first = self.sim.add_runs(gid, batch)
        self.assertEqual(status, 200, first)
        ids = first["run_ids"]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 3)
        for rid in ids:
            self.assertRegex(rid, RUN_ID)
        self.assertIsNone(first["run_cursor"])
        self.assertIsNone(first["event_cursor"])
        st = first["status"]
        self.assertEqual(st["num_task_runs"], 3)
        self.assertEqual(st["task_run_status_counts"], {"queued": 3})
        self.assertTrue(st["is_active"])
        self.assertIsNone(st["status_message"])
        self.assertRegex(st["modified_at"], TIME)

        status, _, second = self.sim.add_runs(gid, inputs(2), prefix="/v1beta")
        self.assertEqual(status, 200, second)
        self.assertIsInstance(second["run_cursor"], str)
        self.assertIsInstance(second["event_cursor"], str)
        self.assertTrue(second["run_cursor"] and second["event_cursor"])
        self.assertEqual(second["status"]["num_task_runs"], 5)
        # The gateway's tests know these: "before the add-runs call numbered 1".
        self.assertEqual((second["run_cursor"], second["event_cursor"]),
                         ("rcur_%s_1" % gid[5:], "ecur_%s_1" % gid[5:]))
        status, _, third = self.sim.add_runs(gid, inputs(1))
        self.assertNotEqual(third["run_cursor"], second["run_cursor"])
        self.assertNotEqual(third["event_cursor"], second["event_cursor"])

        runs = self.runs_of(gid)
        self.assertEqual([r["run_id"] for r in runs[:3]], ids)
        self.assertEqual(runs[0], {"run_id": ids[0], "processor": "base", "input": "a",
                                   "metadata": {"row": 1}})
        self.assertEqual(runs[1]["input"], {"country": "France"})
        self.assertIsNone(runs[1]["metadata"])
        self.assertEqual(len(runs), 6)

        status, _, got = self.sim.call("GET", "/v1/tasks/groups/%s?x=1" % gid, key=KEY_A)
        self.assertEqual(status, 200)
        self.assertEqual(got["taskgroup_id"], gid)
        self.assertEqual(got["status"]["num_task_runs"], 6)
        self.assertEqual(got["metadata"], {"team": "x", "n": 3})

    def test_query_string_is_logged_apart(self):
        gid = self.sim.create_group()
        self.sim.call("POST", "/v1/tasks/groups/%s/runs?refresh_status=false" % gid,
                      {"inputs": inputs(1)}, key=KEY_A)
        entry = self.requests()[-1]
        self.assertEqual(entry["path"], "/v1/tasks/groups/%s/runs" % gid)
        self.assertEqual(entry["query"], "refresh_status=false")
        self.assertEqual(entry["status"], 200)
        self.assertEqual(entry["body"], {"inputs": inputs(1)})

    def test_unknown_group_and_other_account(self):
        gid = self.sim.create_group(KEY_A)
        for key, group in ((KEY_A, "tgrp_" + "0" * 32), (KEY_B, gid)):
            status, _, data = self.sim.add_runs(group, inputs(1), key=key)
            self.assertEqual(status, 404)
            self.assertEqual(data["error"]["message"], "TaskGroup not found")
            status, _, data = self.sim.call("GET", "/v1/tasks/groups/" + group, key=key)
            self.assertEqual(status, 404)
        status, _, data = self.sim.call("GET", "/v1/tasks/other", key=KEY_A)
        self.assertEqual(status, 404)
        self.assertEqual(data["error"]["message"], "Not Found")
        self.assertEqual(self.runs_of(gid), [])

    def test_validation_lists_every_problem(self):
        gid = self.sim.create_group()
        body = {
            "default_task_spec": {"input_schema": "x"},
            "inputs": [
                {"processor": "base", "input": "fine"},
                {"processor": "base", "input": "x",
                 "metadata": {"way_too_long_key_here": 1, "ok": "v" * 513, "list": [1]}},
                {"input": 5},
                "not an object",
                {"processor": "base", "input": "x",
                 "source_policy": {"include_domains": ["a.com"] * 150,
                                   "exclude_domains": ["b.com"] * 51},
                 "task_spec": {"input_schema": "x"},
                 "webhook": {"event_types": ["task_run.status", "other"]},
                 "mcp_servers": [{"name": "m"}]},
            ],
        }
        status, _, data = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid, body,
                                        key=KEY_A)
        self.assertEqual(status, 422, data)
        locs = {tuple(d["loc"]) for d in data["detail"]}
        expected = {
            ("body", "default_task_spec", "output_schema"),
            ("body", "inputs", 1, "metadata", "way_too_long_key_here"),
            ("body", "inputs", 1, "metadata", "ok"),
            ("body", "inputs", 1, "metadata", "list"),
            ("body", "inputs", 2, "processor"),
            ("body", "inputs", 2, "input"),
            ("body", "inputs", 3),
            ("body", "inputs", 4, "source_policy"),
            ("body", "inputs", 4, "task_spec", "output_schema"),
            ("body", "inputs", 4, "webhook", "url"),
            ("body", "inputs", 4, "webhook", "event_types", 1),
            ("body", "inputs", 4, "mcp_servers", 0, "url"),
        }
        self.assertEqual(locs, expected)
        for d in data["detail"]:
            self.assertTrue(d["msg"])
            self.assertTrue(d["type"])
        types = {tuple(d["loc"]): d["type"] for d in data["detail"]}
        self.assertEqual(types[("body", "inputs", 2, "processor")], "missing")
        self.assertEqual(types[("body", "inputs", 1, "metadata", "ok")], "string_too_long")
        self.assertEqual(self.runs_of(gid), [])

    def test_input_count_limits(self):
        gid = self.sim.create_group()
        status, _, data = self.sim.add_runs(gid, inputs(1001))
        self.assertEqual(status, 422)
        self.assertEqual([d["loc"] for d in data["detail"]], [["body", "inputs"]])
        self.assertEqual(data["detail"][0]["type"], "too_long")
        for bad in ([], "x"):
            status, _, data = self.sim.add_runs(gid, bad)
            self.assertEqual(status, 422)
            self.assertEqual(data["detail"][0]["loc"], ["body", "inputs"])
        status, _, data = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid, {},
                                        key=KEY_A)
        self.assertEqual((status, data["detail"][0]["type"]), (422, "missing"))
        self.assertEqual(self.runs_of(gid), [])
        status, _, data = self.sim.add_runs(gid, inputs(1000))
        self.assertEqual(status, 200)
        self.assertEqual(len(set(data["run_ids"])), 1000)

    def test_bad_json_and_non_object_bodies(self):
        gid = self.sim.create_group()
        path = "/v1/tasks/groups/%s/runs" % gid
        for body in (b'{"inputs": [', b"[1, 2]", b"null", b"\xff\xfe"):
            status, _, data = self.sim.call("POST", path, body, key=KEY_A)
            self.assertEqual(status, 422, body)
            self.assertEqual(data["detail"][0]["loc"][0], "body")
        log = self.requests()[-4:]
        self.assertEqual(log[0]["body_raw"], '{"inputs": [')
        self.assertIsNone(log[0]["body"])
        self.assertEqual(log[1]["body"], [1, 2])
        self.assertNotIn("body_raw", log[1])
        self.assertEqual(log[3]["body_raw"], "\ufffd\ufffd")
        status, _, _ = self.sim.call("POST", "/v1/tasks/groups", b"{oops", key=KEY_A)
        self.assertEqual(status, 422)
        status, _, data = self.sim.call("POST", "/v1/tasks/groups",
                                        {"metadata": {"k": {"nested": 1}}}, key=KEY_A)
        self.assertEqual(status, 422)
        self.assertEqual(data["detail"][0]["loc"], ["body", "metadata", "k"])

    def test_unknown_processor_is_forbidden(self):
        gid = self.sim.create_group()
        status, _, data = self.sim.add_runs(gid, inputs(2) + inputs(1, "foo"))
        self.assertEqual(status, 403)
        self.assertEqual(data["type"], "error")
        self.assertEqual(data["error"]["message"], "Invalid processor: foo")
        self.assertEqual(self.runs_of(gid), [])
        for name in ("lite", "pro-fast", "ultra2x", "core2x-fast"):
            self.assertEqual(self.sim.add_runs(gid, inputs(1, name))[0], 200, name)

    def test_unknown_fields_pass(self):
        gid = self.sim.create_group()
        run = {"processor": "base", "input": "x", "memory_scope_key": "m", "future": {"a": 1},
               "enable_events": True, "previous_interaction_id": None,
               "advanced_settings": {"whatever": 1},
               "task_spec": {"output_schema": {"type": "auto"}, "brand_new": 1},
               "webhook": {"url": "https://h.example/x", "event_types": ["task_run.status"],
                           "secret_thing": 1},
               "mcp_servers": [{"name": "m", "url": "https://m.example", "type": "url",
                                "headers": {"k": "v"}, "extra": 1}]}
        status, _, data = self.sim.call(
            "POST", "/v1/tasks/groups/%s/runs" % gid,
            {"inputs": [run], "default_task_spec": {"output_schema": "text"}, "new_top": [1]},
            key=KEY_A, headers={"parallel-beta": "webhook-2025-08-12,unknown-beta"})
        self.assertEqual(status, 200, data)
        entry = self.requests()[-1]
        self.assertEqual(entry["body"]["inputs"][0], run)
        self.assertEqual(entry["headers"]["parallel-beta"], "webhook-2025-08-12,unknown-beta")

    # ---- faults ----------------------------------------------------------------------

    def test_fault_status_429_with_retry_after(self):
        gid = self.sim.create_group()
        self.assertEqual(self.fault(match="add_runs", kind="status", status=429,
                                    retry_after="7"), {"queued": 1})
        status, resp, data = self.sim.add_runs(gid, inputs(2))
        self.assertEqual(status, 429)
        self.assertEqual(resp.getheader("Retry-After"), "7")
        self.assertEqual(data["type"], "error")
        self.assertEqual(self.runs_of(gid), [])
        self.assertEqual(self.sim.add_runs(gid, inputs(2))[0], 200)
        self.assertEqual([e["status"] for e in self.requests()[-2:]], [429, 200])

    def test_fault_status_500_skip_times_and_match(self):
        gid = self.sim.create_group()
        self.fault(match="add_runs", kind="status", status=500, skip=1, times=2)
        self.assertEqual(self.sim.call("GET", "/v1/tasks/groups/" + gid, key=KEY_A)[0], 200)
        results = [self.sim.add_runs(gid, inputs(1))[0] for _ in range(4)]
        self.assertEqual(results, [200, 500, 500, 200])
        self.assertEqual(len(self.runs_of(gid)), 2)
        self.assertEqual(self.sim.ctl("GET", "/faults")[1], {"faults": []})

    def test_fault_status_with_body_422_and_list(self):
        groups = self.sim.ctl("GET", "/stats")[1]["groups"]
        self.assertEqual(self.sim.ctl("POST", "/faults", {"faults": [
            {"kind": "status", "status": 502, "body": "<html>bad gateway</html>"},
            {"kind": "status", "status": 422, "match": "create_group"}]})[1], {"queued": 2})
        self.assertEqual(len(self.sim.ctl("GET", "/faults")[1]["faults"]), 2)
        status, _, raw = self.sim.call("POST", "/v1/tasks/groups", {}, key=KEY_A, raw=True)
        self.assertEqual((status, raw), (502, b"<html>bad gateway</html>"))
        status, _, data = self.sim.call("POST", "/v1/tasks/groups", {}, key=KEY_A)
        self.assertEqual(status, 422)
        self.assertIn("loc", data["detail"][0])
        self.assertEqual(self.sim.ctl("GET", "/stats")[1]["groups"], groups)

    def test_fault_delay(self):
        gid = self.sim.create_group()
        self.fault(kind="delay", delay_ms=400)
        start = time.monotonic()
        status, _, data = self.sim.add_runs(gid, inputs(1))
        self.assertGreaterEqual(time.monotonic() - start, 0.4)
        self.assertEqual(status, 200)
        self.assertEqual(len(self.runs_of(gid)), 1)

    def test_fault_malformed(self):
        gid = self.sim.create_group()
        self.fault(kind="malformed", match="add_runs")
        status, _, raw = self.sim.call("POST", "/v1/tasks/groups/%s/runs" % gid,
                                       {"inputs": inputs(3)}, key=KEY_A, raw=True)
        self.assertEqual(status, 200)
        with self.assertRaises(ValueError):
            json.loads(raw)
        self.assertEqual(len(self.runs_of(gid)), 3)

    def raw_add_runs(self, gid, n, timeout=10):
        """Sends an add-runs request on a raw socket; returns the socket."""
        body = json.dumps({"inputs": inputs(n)}).encode()
        s = socket.create_connection(("127.0.0.1", self.sim.port), timeout=timeout)
        s.sendall(b"POST /v1/tasks/groups/%s/runs HTTP/1.1\r\nx-api-key: %s\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (gid.encode(), KEY_A.encode(),
                                                     len(body), body))
        return s

    def test_fault_reset(self):
        gid = self.sim.create_group()
        self.fault(kind="reset", times=2)
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.sim.add_runs(gid, inputs(2))
        with self.raw_add_runs(gid, 1) as s:
            with self.assertRaises(ConnectionResetError):  # a reset, not an orderly close
                s.recv(100)
        self.assertEqual(self.runs_of(gid), [])
        self.assertEqual([e["status"] for e in self.requests()[-2:]], [0, 0])
        self.assertEqual(self.sim.add_runs(gid, inputs(2))[0], 200)

    def test_fault_reset_applied(self):
        gid = self.sim.create_group()
        self.fault(kind="reset", apply=True)
        with self.raw_add_runs(gid, 2) as s:
            with self.assertRaises(ConnectionResetError):
                s.recv(100)
        self.assertEqual(len(self.runs_of(gid)), 2)

    def test_fault_reset_applied_on_a_reused_connection(self):
        """"reused": the fault waits for a request that is not its connection's first;
        the log says which connection each request came on, and its place there."""
        gid = self.sim.create_group()
        self.fault(kind="reset", match="add_runs", apply=True, reused=True)
        self.assertTrue(self.sim.ctl("GET", "/faults")[1]["faults"][0]["reused"])
        self.assertEqual(self.sim.add_runs(gid, inputs(1))[0], 200)  # a fresh connection
        body = json.dumps({"inputs": inputs(2)})
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            for expect_reset in (False, True):
                conn.request("POST", "/v1/tasks/groups/%s/runs" % gid, body=body,
                             headers={"x-api-key": KEY_A, "Content-Type": "application/json"})
                if not expect_reset:
                    resp = conn.getresponse()
                    self.assertEqual(resp.status, 200)
                    resp.read()
                    continue
                with self.assertRaises(ConnectionResetError):  # no byte of answer
                    conn.getresponse()
        finally:
            conn.close()
        self.assertEqual(len(self.runs_of(gid)), 1 + 2 + 2)  # the reset one was created
        log = self.requests()
        self.assertEqual([(e["status"], e["on_connection"]) for e in log],
                         [(200, 1), (200, 1), (200, 1), (0, 2)])
        self.assertEqual(log[2]["connection"], log[3]["connection"])
        self.assertEqual(len({e["connection"] for e in log}), 3)
        self.assertEqual(self.sim.ctl("GET", "/faults")[1], {"faults": []})

    def test_fault_hang_applied(self):
        gid = self.sim.create_group()
        self.fault(kind="hang", match="add_runs", apply=True)
        start = time.monotonic()
        with self.assertRaises(socket.timeout):
            self.sim.add_runs(gid, inputs(4), timeout=0.5)
        self.assertLess(time.monotonic() - start, 5)
        runs = self.runs_of(gid)
        self.assertEqual(len(runs), 4)
        self.assertEqual(runs[0]["input"], "question 0")
        entry = self.requests()[-1]
        self.assertEqual((entry["status"], entry["body"]["inputs"]), (0, inputs(4)))

    def test_fault_hang_ends_after_delay(self):
        gid = self.sim.create_group()
        self.fault(kind="hang", delay_ms=300, apply=False)
        start = time.monotonic()
        with self.raw_add_runs(gid, 1) as s:
            self.assertEqual(s.recv(100), b"")  # closed without a byte of answer
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        self.assertEqual(self.runs_of(gid), [])

    def test_bad_faults_are_refused(self):
        for bad in ({"kind": "nope"}, {"kind": "status"}, {"kind": "status", "status": 99},
                    {"kind": "delay", "colour": "red"}, {"match": "add_runs"},
                    {"kind": "delay", "times": 0}, {"kind": "reset", "reused": 1},
                    {"faults": {"kind": "delay"}},
                    {"faults": [{"kind": "delay"}, {"kind": "bad"}]}, [1], "x"):
            status, data = self.sim.ctl("POST", "/faults", bad)
            self.assertEqual(status, 400, bad)
            self.assertEqual(data["type"], "error")
        status, _, _ = self.sim.call("POST", "/_sim/faults", b"{not json", raw=True)
        self.assertEqual(status, 400)
        self.assertEqual(self.sim.ctl("GET", "/faults")[1], {"faults": []})

    # ---- control side ----------------------------------------------------------------

    def test_control_requests_are_not_logged_and_stats(self):
        before = self.sim.ctl("GET", "/stats")[1]
        gid = self.sim.create_group()
        self.sim.add_runs(gid, inputs(3))
        self.sim.ctl("GET", "/groups/" + gid)
        after = self.sim.ctl("GET", "/stats")[1]
        self.assertEqual(after["requests"] - before["requests"], 2)
        self.assertEqual(after["runs_created"] - before["runs_created"], 3)
        self.assertEqual(after["groups"] - before["groups"], 1)
        self.assertEqual(len(self.requests()), 2)
        self.assertEqual(self.sim.ctl("GET", "/groups/tgrp_unknown")[0], 404)
        self.assertEqual(self.sim.ctl("GET", "/nothing")[0], 404)

    # ---- HTTP ------------------------------------------------------------------------

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            conn.request("POST", "/v1/tasks/groups", "{}", {"x-api-key": KEY_A})
            first = conn.getresponse()
            gid = json.loads(first.read())["taskgroup_id"]
            sock = conn.sock
            self.assertIsNotNone(sock)
            conn.request("POST", "/v1/tasks/groups/%s/runs" % gid,
                         json.dumps({"inputs": inputs(1)}), {"x-api-key": KEY_A})
            second = conn.getresponse()
            self.assertEqual(second.status, 200)
            second.read()
            self.assertIs(conn.sock, sock)
            conn.request("GET", "/v1/tasks/groups/" + gid,
                         headers={"x-api-key": KEY_A, "Connection": "close"})
            third = conn.getresponse()
            self.assertEqual(third.getheader("Connection"), "close")
            third.read()
            self.assertTrue(third.will_close)
        finally:
            conn.close()

    def test_http10_closes_and_pipelining(self):
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(b"GET /_sim/stats HTTP/1.0\r\n\r\n")
            f = s.makefile("rb")
            status, headers, _ = read_raw_response(f)
            self.assertEqual(status, 200)
            self.assertEqual(f.read(), b"")
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(b"GET /_sim/stats HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /v1/tasks/groups HTTP/1.1\r\nX-API-Key: " + KEY_A.encode() +
                      b"\r\nContent-Length: 2\r\n\r\n{}")
            f = s.makefile("rb")
            self.assertEqual(read_raw_response(f)[0], 200)
            status, _, body = read_raw_response(f)
            self.assertEqual(status, 200)
            self.assertRegex(json.loads(body)["taskgroup_id"], GROUP_ID)
        self.assertEqual(self.requests()[-1]["headers"]["x-api-key"], KEY_A)

    def test_chunked_request_body(self):
        gid = self.sim.create_group()
        body = json.dumps({"inputs": inputs(3)}).encode()
        pieces = [body[:10], body[10:11], body[11:]]
        wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
        head = ("POST /v1/tasks/groups/%s/runs HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n"
                "Transfer-Encoding: chunked\r\n\r\n" % (gid, KEY_A)).encode()
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(head + wire + b"0\r\nX-Trailer: y\r\n\r\n")
            status, _, data = read_raw_response(s.makefile("rb"))
        self.assertEqual(status, 200, data)
        self.assertEqual(len(json.loads(data)["run_ids"]), 3)
        # http.client's own chunked encoding, from an iterable body
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            conn.request("POST", "/v1/tasks/groups/%s/runs" % gid, iter(pieces),
                         {"x-api-key": KEY_A}, encode_chunked=True)
            self.assertEqual(conn.getresponse().status, 200)
        finally:
            conn.close()
        self.assertEqual(len(self.runs_of(gid)), 6)
        self.assertEqual(self.requests()[-1]["headers"]["transfer-encoding"], "chunked")

    def test_expect_100_continue(self):
        body = b'{"metadata": {"a": true}}'
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(b"POST /v1/tasks/groups HTTP/1.1\r\nx-api-key: " + KEY_A.encode() +
                      b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            f = s.makefile("rb")
            self.assertEqual(f.readline(), b"HTTP/1.1 100 Continue\r\n")
            self.assertEqual(f.readline(), b"\r\n")
            s.sendall(body)
            status, _, data = read_raw_response(f)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)["metadata"], {"a": True})

    def test_garbage_gets_400_and_close(self):
        for junk in (b"GARBAGE\r\n\r\n", b"GET /x HTTP/9.9\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                     b"GET /x HTTP/1.1\r\nbad header\r\n\r\n",
                     b"POST /v1/tasks/groups HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
                s.sendall(junk)
                f = s.makefile("rb")
                status, headers, body = read_raw_response(f)
                self.assertEqual(status, 400, junk)
                self.assertEqual(headers["connection"], "close")
                self.assertEqual(json.loads(body)["type"], "error")
                self.assertEqual(f.read(), b"")
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(os.urandom(5000))  # no request line end at all; then hang up
        self.assertEqual(self.sim.ctl("GET", "/stats")[0], 200)

    def test_body_too_large(self):
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(b"POST /v1/tasks/groups HTTP/1.1\r\nx-api-key: " + KEY_A.encode() +
                      b"\r\nContent-Length: %d\r\n\r\n" % (64 * 1024 * 1024 + 1))
            status, headers, _ = read_raw_response(s.makefile("rb"))
        self.assertEqual(status, 413)
        self.assertEqual(self.requests()[-1]["status"], 413)

    def test_300_concurrent_connections(self):
        gid = self.sim.create_group()
        socks = []
        try:
            for _ in range(320):
                socks.append(socket.create_connection(("127.0.0.1", self.sim.port), timeout=30))
            body = json.dumps({"inputs": inputs(1)}).encode()
            req = (b"POST /v1/tasks/groups/%s/runs HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (gid.encode(), KEY_A.encode(), len(body),
                                                      body))
            for s in socks:
                s.sendall(req)
            statuses = [read_raw_response(s.makefile("rb"))[0] for s in socks]
        finally:
            for s in socks:
                s.close()
        self.assertEqual(statuses, [200] * 320)
        runs = self.runs_of(gid)
        self.assertEqual(len({r["run_id"] for r in runs}), 320)

    def test_parallel_clients(self):
        gid = self.sim.create_group()
        errors = []

        def worker():
            try:
                for _ in range(10):
                    status, _, data = self.sim.add_runs(gid, inputs(5))
                    if status != 200:
                        errors.append((status, data))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        status, _, data = self.sim.call("GET", "/v1/tasks/groups/" + gid, key=KEY_A)
        self.assertEqual(data["status"]["num_task_runs"], 16 * 10 * 5)


class ProcessTest(unittest.TestCase):
    """Tests that need a simulator of their own: options, latency, signals."""

    def start(self, *args):
        sim = Simulator(*args)
        self.addCleanup(sim.cleanup)
        return sim

    def test_latency(self):
        sim = self.start("--latency-ms", "300", "--quiet")
        start = time.monotonic()
        self.assertEqual(sim.call("POST", "/v1/tasks/groups", {}, key="any-key")[0], 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        start = time.monotonic()
        self.assertEqual(sim.ctl("GET", "/stats")[0], 200)
        self.assertLess(time.monotonic() - start, 0.25)
        self.assertNotIn("POST", sim.log())

    def test_without_keys_any_key_is_its_own_account(self):
        sim = self.start()
        gid = sim.create_group("one")
        self.assertEqual(sim.add_runs(gid, inputs(1), key="one")[0], 200)
        self.assertEqual(sim.add_runs(gid, inputs(1), key="two")[0], 404)
        self.assertEqual(sim.call("POST", "/v1/tasks/groups", {})[0], 401)

    def test_sigterm_exits_zero_promptly(self):
        sim = self.start()
        gid = sim.create_group("k")
        sim.ctl("POST", "/faults", {"kind": "hang", "match": "add_runs"})
        s = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
        try:
            body = b'{"inputs":[{"processor":"base","input":"x"}]}'
            s.sendall(b"POST /v1/tasks/groups/%s/runs HTTP/1.1\r\nx-api-key: k\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (gid.encode(), len(body), body))
            time.sleep(0.2)
            start = time.monotonic()
            sim.proc.send_signal(signal.SIGTERM)
            self.assertEqual(sim.proc.wait(10), 0, sim.log())
            self.assertLess(time.monotonic() - start, 3)
        finally:
            s.close()
        self.assertIn("tg_sim listening on 127.0.0.1:%d" % sim.port, sim.log())

    def test_sigint_exits_zero(self):
        sim = self.start("--quiet")
        self.assertEqual(sim.ctl("GET", "/stats")[0], 200)
        sim.proc.send_signal(signal.SIGINT)
        self.assertEqual(sim.proc.wait(10), 0, sim.log())

    def test_usage_errors_exit_2(self):
        for args in (["--bogus"], ["--port", "abc"], ["--port", "70000"], ["--port"],
                     ["--latency-ms", "-1"], ["--key", ""], ["stray"], ["--run-ms", "-5"],
                     ["--run-ms", "soon"], ["--stream-interval-ms", "x"]):
            res = subprocess.run([find_binary()] + args, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(res.returncode, 2, args)
            self.assertIn(b"tg_sim", res.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
