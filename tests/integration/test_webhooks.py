#!/usr/bin/env python3
"""Parallel's webhooks (docs/run-outcomes.md): POST /v1/webhooks/parallel through nginx. A
correctly signed task_run.status delivery is recorded once even when sent three times; a
wrong signature, a missing header, a timestamp 10 minutes old and a signature by a secret
rotated out get 401 in the upstream's error shape and change nothing; a valid signature
among several is accepted; a preset may ask for the gateway's webhook on every run it
sends, and the simulator then delivers its signed webhooks to the gateway; with the event
streams followed too, a change is still recorded once. The secrets appear in no answer,
log or database file (the harness scans them). Both backends (TG_TEST_DATABASE)."""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import StackTestCase  # noqa: E402
from test_track import metric, wait_for  # noqa: E402

KEY = "par-key-hooks"
NEW_RAW, OTHER_RAW, OLD_RAW = (secrets.token_bytes(32) for _ in range(3))
NEW, OTHER, OLD = ("whsec_" + base64.b64encode(b).decode() for b in (NEW_RAW, OTHER_RAW, OLD_RAW))
PATH = "/v1/webhooks/parallel"


def sign(raw, wid, ts, body):
    mac = hmac.new(raw, ("%s.%s." % (wid, ts)).encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookCase(StackTestCase):
    def hooked(self, track=0, public=True):
        """A stack whose daemon knows NEW and OTHER; the simulator signs with NEW and OLD
        (rotated out here). With public, the daemon's public URL is nginx's, and the team's
        preset asks for the gateway's webhook."""
        s = self.stack(keys=[KEY], sim_args=["--webhook-secret", NEW, "--webhook-secret", OLD],
                       conf={"webhook_secrets": NEW + " " + OTHER, "track_groups_max": track})
        for secret in (NEW, OTHER, OLD):
            homes = ("taskgate.conf", "hooks.secrets") if secret != OLD else ()
            s.add_secret(secret, "webhook secret", homes)
            s.add_secret(secret[6:], "webhook secret's base64", homes)
        if public:
            s.extra_conf["webhook_public_url"] = "http://127.0.0.1:%d" % s.port
            s._write_conf()
            s.restart_daemon()
        s.add_team("a", KEY, preset={"processor": "base", "gateway_webhook": True})
        self.token, _ = s.issue_token("a")
        s._sim("POST", "/_sim/runs", {"run_ms": -1})
        return s

    def submit(self, s, inputs, **fields):
        status, body, _ = s.json_req("POST", "/v1/runs", dict(fields, inputs=inputs),
                                     token=self.token)
        self.assertEqual(status, 200, body)
        return body

    def sim_run(self, s, run_id):
        status, _, raw = s._request(s.sim_port, "GET", "/v1/tasks/runs/" + run_id, None,
                                    {"x-api-key": KEY}, 10)
        self.assertEqual(status, 200)
        return json.loads(raw)

    def deliver(self, s, run, wid=None, ts=None, signature=None, raws=(NEW_RAW,), drop=(),
                body=None):
        """POSTs a task_run.status delivery of run through nginx, signed with raws (or the
        signature given); drop leaves headers out. (status, parsed answer)."""
        wid = wid or "msg_" + secrets.token_hex(16)
        ts = str(int(time.time())) if ts is None else str(ts)
        if body is None:
            body = json.dumps({"timestamp": run["modified_at"], "type": "task_run.status",
                               "data": run}).encode()
        if signature is None:
            signature = " ".join(sign(r, wid, ts, body) for r in raws)
        headers = {"Content-Type": "application/json", "webhook-id": wid,
                   "webhook-timestamp": ts, "webhook-signature": signature}
        for h in drop:
            del headers[h]
        status, _, data = s.http("POST", PATH, body, headers)
        return status, json.loads(data) if data else None

    def records(self, s):
        return {
            "status": [tuple(r) for r in s.db("SELECT run_id, status, error, source FROM"
                                              " run_status ORDER BY run_id")],
            "changes": [tuple(r) for r in s.db("SELECT run_id, status, source, event_id FROM"
                                               " run_status_changes ORDER BY id")],
            "deliveries": [tuple(r) for r in s.db("SELECT webhook_id, outcome FROM"
                                                  " webhook_deliveries ORDER BY webhook_id")],
        }

    def sim_deliveries(self, s, run_id):
        return [d for d in s._sim("GET", "/_sim/webhooks") if d["run_id"] == run_id]


class WebhookTest(WebhookCase):
    def test_a_signed_webhook_is_recorded_once_even_when_sent_three_times(self):
        s = self.hooked()
        sub = self.submit(s, ["fail: the source went away"])
        rid = sub["run_ids"][0]
        # The preset asked for the gateway's webhook on the run, with its beta name.
        add = [r for r in s.sim_requests() if r["path"].endswith("/runs")][-1]
        hook = add["body"]["inputs"][0]["webhook"]
        self.assertEqual(hook, {"url": "http://127.0.0.1:%d%s" % (s.port, PATH),
                                "event_types": ["task_run.status"]})
        self.assertIn("webhook-2025-08-12", add["headers"]["parallel-beta"])
        s._sim("POST", "/_sim/runs/complete", {"run_ids": [rid]})
        delivery = wait_for("the simulator's delivery answered", lambda: [
            d for d in self.sim_deliveries(s, rid) if d["delivered"]])[0]
        self.assertEqual((delivery["status"], delivery["attempts"]), (200, 1))
        for _ in range(2):  # Parallel's retries: the same webhook-id, signed anew
            self.assertEqual(s._sim("POST", "/_sim/webhooks/resend", {"id": delivery["id"]}),
                             {"id": delivery["id"], "status": 200})
        got = self.records(s)
        self.assertEqual(got["status"], [(rid, "failed", "the source went away", "webhook")])
        self.assertEqual(got["changes"], [(rid, "failed", "webhook", delivery["id"])])
        self.assertEqual(got["deliveries"], [(delivery["id"], "recorded")])
        row = s.db("SELECT status, error, completed_at FROM audit_runs WHERE run_id = ?",
                   (rid,))[0]
        self.assertEqual((row["status"], row["error"]), ("failed", "the source went away"))
        self.assertIsNotNone(row["completed_at"])
        text = s.http("GET", "/metrics")[2].decode()
        self.assertEqual(metric(text, "taskgate_webhooks_received_total", outcome="recorded"), 1)
        self.assertEqual(metric(text, "taskgate_webhooks_duplicates_total"), 2)
        self.assertEqual(metric(text, "taskgate_run_status_changes_total", team="a",
                                status="failed"), 1)

    def test_unsigned_badly_signed_stale_or_rotated_out_webhooks_get_401(self):
        s = self.hooked(public=False)
        sub = self.submit(s, ["one"])
        rid = sub["run_ids"][0]
        s._sim("POST", "/_sim/runs/complete", {"run_ids": [rid]})
        run = self.sim_run(s, rid)
        before = self.records(s)
        now = int(time.time())
        cases = {
            "a wrong signature": dict(signature="v1," + base64.b64encode(
                secrets.token_bytes(32)).decode()),
            "no webhook-signature": dict(drop=["webhook-signature"]),
            "no webhook-id": dict(drop=["webhook-id"]),
            "no webhook-timestamp": dict(drop=["webhook-timestamp"]),
            "a timestamp 10 minutes old": dict(ts=now - 600),
            "a timestamp 10 minutes ahead": dict(ts=now + 600),
            "a secret rotated out": dict(raws=(OLD_RAW,)),
            "a signature of another body": dict(body=b'{"type":"task_run.status","data":{}}',
                                                signature=sign(NEW_RAW, "msg_x", now, b"{}"),
                                                wid="msg_x"),
            "not a v1 signature": dict(signature="v2," + sign(NEW_RAW, "msg_y", now, b"")[3:],
                                       wid="msg_y"),
        }
        for what, kw in cases.items():
            with self.subTest(what):
                status, answer = self.deliver(s, run, **kw)
                self.assertEqual(status, 401, answer)
                self.assertEqual(set(answer), {"type", "error"})
                self.assertEqual(answer["type"], "error")
                self.assertIsInstance(answer["error"]["ref_id"], str)
                self.assertIn("webhook-", answer["error"]["message"])
        self.assertEqual(self.records(s), before)
        text = s.http("GET", "/metrics")[2].decode()
        self.assertEqual(metric(text, "taskgate_webhooks_refused_total", reason="missing"), 3)
        self.assertEqual(metric(text, "taskgate_webhooks_refused_total", reason="stale"), 2)
        self.assertEqual(metric(text, "taskgate_webhooks_refused_total", reason="forged"), 4)
        # Only POST is taken; nginx hands the path to the daemon like any other.
        self.assertEqual(s.http("GET", PATH)[0], 405)

    def test_a_valid_signature_among_several_is_accepted(self):
        s = self.hooked(public=False)
        ids = self.submit(s, ["one", "two", "three"])["run_ids"]
        s._sim("POST", "/_sim/runs/complete", {"run_ids": ids})
        runs = [self.sim_run(s, i) for i in ids]
        bogus = "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
        # a rotation: the old secret's signature first, then one by a secret configured
        status, answer = self.deliver(s, runs[0], raws=(OLD_RAW, NEW_RAW))
        self.assertEqual((status, answer), (200, {"received": True, "outcome": "recorded"}))
        wid, ts, body = "msg_" + secrets.token_hex(8), int(time.time()), None
        body = json.dumps({"timestamp": "t", "type": "task_run.status",
                           "data": runs[1]}).encode()
        status, answer = self.deliver(s, runs[1], wid=wid, ts=ts, body=body, signature=" ".join(
            [bogus, "v2,abc", sign(OTHER_RAW, wid, ts, body)]))
        self.assertEqual(status, 200, answer)
        # A genuine delivery about a run that is not the gateway's, or not about a run:
        # acknowledged, nothing recorded.
        foreign = dict(runs[2], run_id="trun_" + "0" * 32, taskgroup_id="tgrp_" + "0" * 32)
        self.assertEqual(self.deliver(s, foreign)[1]["outcome"], "ignored")
        self.assertEqual(self.deliver(s, runs[2], body=b'{"type":"task_run.progress"}')[1]
                         ["outcome"], "invalid")
        got = self.records(s)
        self.assertEqual([(c[0], c[1], c[2]) for c in got["changes"]],
                         [(ids[0], "completed", "webhook"), (ids[1], "completed", "webhook")])
        self.assertEqual(sorted(o for _, o in got["deliveries"]),
                         ["ignored", "recorded", "recorded"])

    def test_with_the_event_streams_followed_too_a_change_is_recorded_once(self):
        s = self.hooked(track=500)
        ids = self.submit(s, ["one", "two"])["run_ids"]
        wait_for("the runs followed", lambda: len(s.db(
            "SELECT 1 FROM run_status WHERE status = 'running'")) == 2)
        s._sim("POST", "/_sim/runs/complete", {"run_ids": ids})
        wait_for("both deliveries answered", lambda: all(
            any(d["delivered"] for d in self.sim_deliveries(s, i)) for i in ids))
        wait_for("both outcomes", lambda: len(s.db(
            "SELECT 1 FROM run_status WHERE status = 'completed'")) == 2)
        time.sleep(0.5)
        changes = [(c[0], c[1]) for c in self.records(s)["changes"]]
        for i in ids:
            self.assertEqual([st for r, st in changes if r == i],
                             ["queued", "running", "completed"])
        outcomes = sorted(o for _, o in self.records(s)["deliveries"])
        self.assertEqual(len(outcomes), 2)
        self.assertTrue(set(outcomes) <= {"recorded", "known"}, outcomes)

    def test_secrets_are_checked_at_start_and_never_shown(self):
        s = self.hooked(public=False)
        r = s.cli_ok("config")
        self.assertIn('webhook_secrets = "" # 2 set, not shown', r.stdout)
        # A secrets file others may read stops the daemon's start, naming the file only.
        path = s.path("hooks.secrets")
        with open(path, "w") as f:
            f.write(OTHER + "\n")
        os.chmod(path, 0o644)
        s.stop_daemon()
        s.extra_conf["webhook_secrets_file"] = path
        s._write_conf()
        with self.assertRaises(Exception):
            s._start_daemon()
        self.assertIn("group or others may read it", s.daemon_log())
        os.chmod(path, 0o600)
        s._start_daemon()
        sub = self.submit(s, ["x"])
        s._sim("POST", "/_sim/runs/complete", {"run_ids": sub["run_ids"]})
        run = self.sim_run(s, sub["run_ids"][0])
        self.assertEqual(self.deliver(s, run, raws=(OTHER_RAW,))[0], 200)


class NoSecretTest(StackTestCase):
    def test_without_a_secret_every_webhook_is_refused(self):
        s = self.stack(keys=[KEY])
        body = b'{"type":"task_run.status","data":{}}'
        status, _, data = s.http("POST", PATH, body, {"webhook-id": "msg_1",
                                                      "webhook-timestamp": str(int(time.time())),
                                                      "webhook-signature": "v1,abc"})
        self.assertEqual(status, 401)
        self.assertIn("no webhook secret", json.loads(data)["error"]["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
