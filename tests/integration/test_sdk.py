"""The official TypeScript SDK (parallel-web from npm), a 1.x and a 0.3.x generation, pointed
at nginx with a team token: every call goes through the gateway, and the runs it creates are
in audit_runs afterwards. The SDK side (tests/sdk/sdk_test.mjs) asserts its own return values
and typed errors; this side checks the records and what reached the upstream."""

import json
import os
import shutil
import subprocess
import unittest

from harness import StackTestCase, env_path

KEY = "par-key-sdk"


def sdk_dir():
    return os.path.join(env_path("TG_SOURCE_DIR"), "tests", "sdk")


class SdkTest(StackTestCase):
    def setUp(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "Node.js is needed for the SDK tests (scripts/deps.sh)")
        modules = os.path.join(sdk_dir(), "node_modules")
        self.assertTrue(os.path.isdir(modules),
                        "run `npm ci` in tests/sdk first (test.sh does it)")
        self.node = node
        self.s = self.stack(keys=[KEY])
        self.s.add_team("svc", KEY)
        self.token, _ = self.s.issue_token("svc", label="sdk-service")

    def run_sdk(self, generation):
        env = dict(os.environ, TG_BASE_URL="http://127.0.0.1:%d" % self.s.port,
                   TG_TOKEN=self.token)
        env.pop("PARALLEL_API_KEY", None)
        proc = subprocess.run([self.node, os.path.join(sdk_dir(), "sdk_test.mjs"), generation],
                              env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0,
                         "SDK %s failed:\n%s\n%s" % (generation, proc.stdout, proc.stderr))
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def check_records(self, generation, out, api):
        gid = out["taskgroup_id"]
        rows = self.s.db("SELECT r.run_id, s.interface, s.team, s.state FROM audit_runs r "
                         "JOIN audit_submissions s ON s.submission_id = r.submission_id "
                         "WHERE r.taskgroup_id = ? ORDER BY r.input_index", (gid,))
        self.assertEqual([r[0] for r in rows], out["run_ids"])
        for r in rows:
            self.assertEqual(tuple(r)[1:], ("upstream-compatible", "svc", "accepted"))
        posts = [r["path"] for r in self.s.sim_requests() if r["method"] == "POST"]
        self.assertIn(api + "/tasks/groups/%s/runs" % gid, posts)
        # The team token never reaches the upstream: the team's key does.
        for r in self.s.sim_requests():
            self.assertNotIn(self.token, json.dumps(r))

    def test_sdk_1x_uses_the_v1_paths(self):
        out = self.run_sdk("1")
        self.check_records("1", out, "/v1")

    def test_sdk_03x_uses_the_v1beta_paths(self):
        out = self.run_sdk("0.3")
        self.check_records("0.3", out, "/v1beta")


if __name__ == "__main__":
    unittest.main()
