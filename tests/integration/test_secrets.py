"""Secrets: upstream keys sealed at rest (AES-256-GCM under the key file, bound to the
team), key rotation that loses nothing, the token rules, and a scan that finds no key or
token in any log, answer, CLI output or the database file's bytes after every interface
has been driven through its error paths. The harness scans every stack at stop as well
(Stack.scan_secrets); this file also proves that scan can fail."""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BACKEND, SecretLeak, Stack, StackTestCase, key_fingerprint  # noqa: E402

KEY_A = "par-secret-a-5d1e9c7b3a0f42e6b8c1"
KEY_B = "par-secret-b-93f0a2c4e6b8d1f3a5c7"
KEY_X = "par-secret-x-refused-by-the-upstream"  # a key the simulator does not accept
MCP_SECRET = "Bearer mcp-header-secret-7c2e4a6b"
PRESET = {"processor": "core"}


def raw_db_bytes(s):
    """The database as bytes, the way a copy of it would be read: the SQLite file and its
    -wal, or on PostgreSQL the database's dump (every row as any client reads it)."""
    if BACKEND == "postgresql":
        return s.pg_dump()
    data = b""
    for suffix in ("", "-wal"):
        try:
            with open(s.db_path + suffix, "rb") as f:
                data += f.read()
        except FileNotFoundError:
            pass
    return data


def restart(s):
    """Restarts the daemon and waits until it answers: its socket exists a moment before it
    listens (bind, then listen), and nginx is refused in between."""
    s.restart_daemon()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body, _ = s.json_req("GET", "/healthz")
        if status == 200 or "not answering" not in json.dumps(body):
            return
        time.sleep(0.05)


def kid(s):
    """The key id `taskgate keys status` reports."""
    r = s.cli_ok("keys", "status")
    m = re.search(r"key_id=([0-9a-f]{8}) ", r.stdout)
    assert m, r.stdout
    return m.group(1)


class ScanTest(unittest.TestCase):
    """The scan itself: it must find a key in clear, hex or base64 and never print it."""

    def test_scan_finds_every_form_and_names_no_secret(self):
        import base64
        s = Stack(sim=False, daemon=False, name="scan")
        s.start()
        try:
            s.add_team("a", KEY_A)
            s.scan_secrets()  # clean so far
            for form, text in (("clear", KEY_A),
                               ("hex", KEY_A.encode().hex()),
                               ("base64", base64.b64encode(b"xy" + KEY_A.encode()).decode())):
                with self.subTest(form=form):
                    path = s.path("planted.log")
                    with open(path, "w") as f:
                        f.write("line before " + text + " line after\n")
                    with self.assertRaises(SecretLeak) as cm:
                        s.scan_secrets()
                    self.assertIn("planted.log", str(cm.exception))
                    self.assertIn(key_fingerprint(KEY_A), str(cm.exception))
                    self.assertNotIn(KEY_A, str(cm.exception))
                    os.unlink(path)
            s.record_answer("a fake answer", "token: " + KEY_A)
            with self.assertRaises(SecretLeak):
                s.scan_secrets()
            s.answers.clear()
        finally:
            s.stop()


def grow(path):
    with open(path, "ab") as f:
        f.write(b"x")


class SecretsTest(StackTestCase):

    def setUp(self):
        self.s = self.stack(keys=[KEY_A, KEY_B], upstream_timeout_ms=800)
        s = self.s
        s.add_team("a", KEY_A, preset=PRESET)
        s.add_team("b", KEY_B, preset=PRESET)
        s.add_team("x", KEY_X, preset=PRESET)
        s.add_secret(MCP_SECRET, "key")
        self.tok_a, self.tok_a_id = s.issue_token("a", label="ci")
        self.tok_b, _ = s.issue_token("b")
        self.tok_x, _ = s.issue_token("x")
        self.audit, _ = s.issue_token("a", role="audit")
        self.revoked, revoked_id = s.issue_token("a")
        s.revoke_token(revoked_id)
        self.expired, _ = s.issue_token("a", expires="2001-01-01T00:00:00Z")

    def submit(self, token, body=None, **kw):
        return self.s.json_req("POST", "/v1/runs", body or {"inputs": ["q"]}, token=token, **kw)

    # ---- keys at rest ------------------------------------------------------------------

    def test_keys_are_stored_sealed_and_reach_the_upstream_intact(self):
        s = self.s
        key_id = kid(s)
        rows = s.db("SELECT name, upstream_key, key_id FROM teams ORDER BY name")
        self.assertEqual([r["name"] for r in rows], ["a", "b", "x"])
        for r in rows:
            self.assertRegex(r["upstream_key"], r"^tgk1\.%s\.[A-Za-z0-9+/]+=*$" % key_id)
            self.assertEqual(r["key_id"], key_id)
        # Two sealings of equal text differ: a fresh nonce each time.
        s.cli_ok("team", "set-key", "b", input=KEY_B + "\n")
        self.assertNotEqual(s.db_value("SELECT upstream_key FROM teams WHERE name = 'b'"),
                            rows[1]["upstream_key"])
        status, body, _ = self.submit(self.tok_a)
        self.assertEqual(status, 200, body)
        self.assertEqual({r["headers"].get("x-api-key") for r in s.sim_requests()}, {KEY_A})
        for secret in (KEY_A, KEY_B, KEY_X):
            self.assertNotIn(secret.encode(), raw_db_bytes(s))
        mode = os.stat(s.key_file_path).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        self.assertEqual(os.path.getsize(s.key_file_path), 32)

    def test_a_key_copied_to_another_team_does_not_decrypt(self):
        s = self.s
        conn = s.db_connect()
        try:
            conn.execute("UPDATE teams SET upstream_key = (SELECT upstream_key FROM teams"
                         " WHERE name = 'a') WHERE name = 'b'")
        finally:
            conn.close()
        s.sim_clear()
        status, body, _ = self.submit(self.tok_b)
        self.assertEqual(status, 503, body)
        self.assertIn("nothing was sent upstream", body["error"]["message"])
        self.assertEqual(s.sim_requests(), [])
        self.assertIn("cannot be decrypted", s.daemon_log())
        # Team a's own key is untouched.
        self.assertEqual(self.submit(self.tok_a)[0], 200)

    # ---- rotation ------------------------------------------------------------------------

    def test_rotate_reencrypts_every_key_while_the_daemon_runs(self):
        s = self.s
        old_kid = kid(s)
        with open(s.key_file_path, "rb") as f:
            old_key = f.read()
        before = {r["name"]: r["upstream_key"] for r in s.db("SELECT * FROM teams")}
        r = s.cli_ok("keys", "rotate")
        self.assertIn("re-encrypted 3 team key(s)", r.stderr)
        new_kid = kid(s)
        self.assertNotEqual(new_kid, old_kid)
        with open(s.key_file_path + ".old", "rb") as f:
            self.assertEqual(f.read(), old_key, "the previous key file was not kept")
        self.assertEqual(os.stat(s.key_file_path).st_mode & 0o777, 0o600)
        after = {r["name"]: (r["upstream_key"], r["key_id"]) for r in s.db("SELECT * FROM teams")}
        for name, (sealed, key_id) in after.items():
            self.assertEqual(key_id, new_kid)
            self.assertNotEqual(sealed, before[name])
        log = s.db("SELECT actor, action, before, after FROM audit_admin"
                   " WHERE action = 'keys.rotate'")
        self.assertEqual(len(log), 1)
        self.assertEqual(json.loads(log[0]["before"]), {"key_ids": [old_kid]})
        self.assertEqual(json.loads(log[0]["after"]), {"key_id": new_kid, "teams": 3})
        self.assertTrue(log[0]["actor"].startswith("os:"))
        # The running daemon picks the new key file up by itself.
        s.sim_clear()
        status, body, _ = self.submit(self.tok_a)
        self.assertEqual(status, 200, body)
        self.assertEqual({r["headers"].get("x-api-key") for r in s.sim_requests()}, {KEY_A})
        self.assertEqual(s.json_req("GET", "/healthz")[0], 200)

    def test_an_interrupted_rotation_loses_nothing(self):
        s = self.s
        s.cli_ok("keys", "rotate")
        # The state a crash after the commit and before the renames leaves: the database is
        # sealed under the new key, which is still only in KEY_FILE.new.
        k = s.key_file_path
        os.replace(k, k + ".new")
        os.replace(k + ".old", k)
        restart(s)
        status, body, _ = self.submit(self.tok_a)
        self.assertEqual(status, 200, body)
        r = s.cli_ok("keys", "rotate")
        self.assertIn("finishing an interrupted rotation", r.stderr)
        self.assertFalse(os.path.exists(k + ".new"))
        status, body, _ = self.submit(self.tok_a)
        self.assertEqual(status, 200, body)
        # A crash before the commit: a fresh .new no value uses yet is simply taken.
        with open(k + ".new", "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(os.urandom(32))
        s.cli_ok("keys", "rotate")
        self.assertEqual(self.submit(self.tok_a)[0], 200)

    # ---- key file trouble ----------------------------------------------------------------

    def test_key_file_trouble_is_a_clear_error_and_healthz_says_why(self):
        s = self.s
        k = s.key_file_path
        cases = [("missing", lambda: os.replace(k, k + ".bak"), "missing"),
                 ("wrong size", lambda: grow(k), "33 bytes"),
                 ("readable by others", lambda: os.chmod(k, 0o644), "chmod 600")]
        with open(k, "rb") as f:
            good = f.read()
        for name, damage, why in cases:
            with self.subTest(name):
                s.stop_daemon()
                damage()
                restart(s)
                self.assertIn(why, s.daemon_log())
                status, body, _ = s.json_req("GET", "/healthz")
                self.assertEqual(status, 503, body)
                self.assertIn(why, body["error"]["message"])
                s.sim_clear()
                status, body, _ = self.submit(self.tok_a)
                self.assertEqual(status, 503, body)
                self.assertEqual(s.sim_requests(), [])
                # init refuses to make a new key file for a database of sealed keys.
                r = s.cli("init")
                self.assertNotEqual(r.returncode, 0, r.stderr)
                self.assertIn(why, r.stderr)
                if os.path.exists(k + ".bak"):
                    os.replace(k + ".bak", k)
                with open(k, "wb") as f:
                    f.write(good)
                os.chmod(k, 0o600)
                self.assertEqual(s.json_req("GET", "/healthz")[0], 200)
                self.assertEqual(self.submit(self.tok_a)[0], 200)

    # ---- tokens ----------------------------------------------------------------------------

    def test_token_rules(self):
        s = self.s
        self.assertRegex(self.tok_a, r"^tg_[0-9a-f]{48}$")  # a prefix and 192 random bits
        stored = s.db("SELECT hash FROM tokens")
        self.assertFalse(any(self.tok_a in r["hash"] for r in stored))
        for name, token in (("revoked", self.revoked), ("expired", self.expired),
                            ("unknown", "tg_" + "0" * 48),
                            ("one character off", self.tok_a[:-1] + ("0" if self.tok_a[-1] != "0"
                                                                      else "1")),
                            ("prefix only", self.tok_a[:20])):
            with self.subTest(name):
                status, body, _ = self.submit(token)
                self.assertEqual(status, 401, body)
                self.assertNotIn(token, json.dumps(body))
        self.assertEqual(self.submit(self.tok_a)[0], 200)

    # ---- every interface, error paths included, then the scan ----------------------------

    def test_no_secret_anywhere_after_every_interface_and_error_path(self):
        s = self.s
        mcp = {"inputs": ["q"], "mcp_servers": [{"name": "m", "url": "https://mcp.example",
                                                 "headers": {"Authorization": MCP_SECRET}}]}
        s.sim_fault(match="add_runs", kind="status", status=500)
        calls = [
            ("ok", lambda: self.submit(self.tok_a)),
            ("mcp headers", lambda: self.submit(self.tok_a, mcp)),
            ("x-api-key", lambda: s.json_req("POST", "/v1/runs", {"inputs": ["q"]},
                                             headers={"x-api-key": self.tok_b})),
            ("form token", lambda: s.http("POST", "/v1/runs",
                                          "token=%s&inputs=q" % self.tok_a,
                                          {"Content-Type": "application/x-www-form-urlencoded"})),
            ("html", lambda: s.http("POST", "/v1/runs", '{"inputs":["q"]}',
                                    {"Authorization": "Bearer " + self.tok_a,
                                     "Accept": "text/html"})),
            ("401", lambda: self.submit(self.revoked)),
            ("422", lambda: self.submit(self.tok_a, {"inputs": [], "metadata": {"k" * 20: 1}})),
            ("upstream refuses the key", lambda: self.submit(self.tok_x)),
            ("audit list", lambda: s.json_req("GET", "/v1/audit/submissions", token=self.audit)),
            ("audit csv", lambda: s.http("GET", "/v1/audit/submissions?format=csv",
                                         headers={"Authorization": "Bearer " + self.audit})),
            ("audit with a submit token", lambda: s.json_req("GET", "/v1/audit/runs",
                                                             token=self.tok_b)),
            ("healthz", lambda: s.http("GET", "/healthz")),
            ("metrics", lambda: s.http("GET", "/metrics")),
        ]
        statuses = {}
        for name, call in calls:
            statuses[name] = call()[0]
        self.assertEqual(statuses["401"], 401)
        self.assertEqual(statuses["422"], 422)
        self.assertEqual(statuses["upstream refuses the key"], 502)
        self.assertEqual(statuses["ok"], 502)  # the injected upstream 500
        s.sim_clear_faults()
        s.sim_fault(match="add_runs", kind="hang", delay_ms=3000)
        status, body, _ = self.submit(self.tok_a)
        self.assertEqual(status, 504, body)
        s.sim_clear_faults()
        # Every submission's detail through the audit API, stored requests included.
        for row in s.db("SELECT id FROM submissions"):
            status, _, _ = s.json_req("GET", "/v1/audit/submissions/" + row["id"],
                                      token=self.audit)
            self.assertEqual(status, 200)
        for args in (("team", "list"), ("token", "list"), ("config",), ("keys", "status"),
                     ("audit", "submissions"), ("preset", "show", "a", "default")):
            s.cli_ok(*args)
        s.cli_ok("keys", "rotate")
        self.assertEqual(self.submit(self.tok_a)[0], 200)
        stored = s.db("SELECT request FROM submissions WHERE request LIKE '%mcp_servers%'")
        self.assertTrue(stored, "the MCP submission was not stored")
        self.assertNotIn(MCP_SECRET, stored[0]["request"])
        # The scan at stop covers logs, configs, answers and the database; the daemon is
        # stopped first so the database is checkpointed as a backup would copy it.
        s.stop_daemon()
        s.scan_secrets()
        data = raw_db_bytes(s)
        for secret in (KEY_A, KEY_B, KEY_X, MCP_SECRET, self.tok_a, self.tok_b, self.audit):
            self.assertNotIn(secret.encode(), data)


def mcp(*headers):
    """mcp_servers with one server per dict of headers."""
    return [{"name": "m%d" % i, "url": "https://mcp%d.example" % i, "headers": h}
            for i, h in enumerate(headers)]


class McpHeaderSecretsTest(StackTestCase):
    """MCP server header values (credentials for someone else's server) go upstream as
    sent and are nowhere else in clear: a distinct secret in every place the upstream's
    schema allows one (a run input's mcp_servers: the simplified body, each inputs[i] of an
    add-runs body, a preset; and default_task_spec, where a client may put one too), on
    every interface, through success and error paths; then every audit answer in every
    format, the CLI, the logs and the database file with its WAL are scanned."""

    def test_mcp_header_secrets_are_fingerprints_everywhere_but_upstream(self):
        s = self.stack(keys=[KEY_A, KEY_B])
        s.add_team("a", KEY_A, preset=PRESET)
        s.add_team("b", KEY_B, preset=PRESET)
        tok_a, _ = s.issue_token("a")
        tok_b, _ = s.issue_token("b")
        audit, _ = s.issue_token("b", role="audit")
        admin, _ = s.issue_token("a", role="admin")
        secrets = {}

        def secret(place):
            value = "mcp-secret-%02d-%s" % (len(secrets), os.urandom(8).hex())
            secrets[value] = place
            return value

        def compat(path, body):
            status, _, data = s.http("POST", path, json.dumps(body),
                                     {"x-api-key": tok_a, "Content-Type": "application/json"})
            return status, data

        # Presets: one stored by the CLI, one over HTTP by an admin.
        cli_preset = {"processor": "core", "mcp_servers": mcp(
            {"Authorization": secret("preset (CLI)")})}
        s.set_preset("a", "mcp", cli_preset)
        status, _, _ = s.json_req("PUT", "/v1/admin/teams/b/presets/mcp", {
            "processor": "core", "mcp_servers": mcp({"Authorization": secret("preset (HTTP)"),
                                                     "X-Other": secret("preset (HTTP) 2")})},
            token=admin)
        self.assertEqual(status, 200)
        # ... and replaced, so the admin log has one as "before" too.
        s.set_preset("a", "mcp", dict(cli_preset, metadata={"k": "v"}))
        forwarded = set(secrets)

        # The simplified interface: JSON, JSON over a preset, a form over a preset.
        body = {"inputs": ["q"], "mcp_servers": mcp({"Authorization": secret("simplified"),
                                                     "X-Key": secret("simplified 2")})}
        status, answer, _ = s.json_req("POST", "/v1/runs", body, token=tok_a)
        self.assertEqual(status, 200, answer)
        forwarded |= {k for k, v in secrets.items() if v.startswith("simplified")}
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"], "preset": "mcp"},
                                       token=tok_b)
        self.assertEqual(status, 200, answer)
        status, _, _ = s.http("POST", "/v1/runs", "token=%s&inputs=q&preset=mcp" % tok_a,
                              {"Content-Type": "application/x-www-form-urlencoded",
                               "Accept": "application/json"})
        self.assertEqual(status, 200)
        status, answer, _ = s.json_req("POST", "/v1/runs", {
            "inputs": ["q"], "metadata": {"k" * 20: 1},
            "mcp_servers": mcp({"Authorization": secret("simplified, refused")})}, token=tok_a)
        self.assertEqual(status, 422, answer)

        # The upstream-compatible interface: every input, /v1 and /v1beta, errors too.
        for api in ("/v1", "/v1beta"):
            status, data = compat(api + "/tasks/groups", {})
            self.assertEqual(status, 200, data)
            gid = json.loads(data)["taskgroup_id"]
            one, two = secret(api + " inputs[0]"), secret(api + " inputs[1]")
            status, data = compat("%s/tasks/groups/%s/runs" % (api, gid), {"inputs": [
                {"input": "a", "processor": "core", "mcp_servers": mcp({"Authorization": one})},
                {"input": "b", "processor": "core",
                 "mcp_servers": mcp({}, {"X-Key": two, "Authorization": secret(api + " 2nd")})},
            ]})
            self.assertEqual(status, 200, data)
            forwarded |= {k for k, v in secrets.items() if v.startswith(api + " ")}
        status, data = compat("/v1/tasks/groups/%s/runs" % gid, {
            "inputs": [{"input": "a", "processor": "core"}],
            "default_task_spec": {"output_schema": "x",
                                  "mcp_servers": mcp({"Authorization": secret("spec")})}})
        self.assertIn(status, (200, 422), data)
        status, data = compat("/v1/tasks/groups/%s/runs" % gid, {"inputs": [
            {"input": "a", "processor": "core", "metadata": {"k" * 20: 1},
             "mcp_servers": mcp({"Authorization": secret("compat, refused")})}]})
        self.assertEqual(status, 422, data)
        s.sim_fault(match="add_runs", kind="status", status=500)
        status, data = compat("/v1/tasks/groups/%s/runs" % gid, {"inputs": [
            {"input": "a", "processor": "core",
             "mcp_servers": mcp({"Authorization": secret("compat, upstream failed")})}]})
        self.assertGreaterEqual(status, 500, data)
        s.sim_clear_faults()

        # What goes upstream carries the real values.
        sent = json.dumps(s.sim_requests())
        for value in forwarded:
            self.assertIn(value, sent, "%s did not reach the upstream" % secrets[value])

        # Every audit answer, in every format, on every interface.
        ids = [r["id"] for r in s.db("SELECT id FROM submissions ORDER BY received_at")]
        self.assertGreaterEqual(len(ids), 9)
        auth = {"Authorization": "Bearer " + audit}
        for sid in ids:
            status, detail, _ = s.json_req("GET", "/v1/audit/submissions/" + sid, token=audit)
            self.assertEqual(status, 200)
            s.http("GET", "/v1/audit/submissions/%s?format=csv" % sid, headers=auth)
            # The history page hands the token back in its form (its own answer to its
            # own holder); the rest of the page is scanned.
            status, _, page = s._request(s.port, "POST", "/history/" + sid, "token=" + audit,
                                         {"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(status, 200)
            s.record_answer("the history page of " + sid, page.replace(audit.encode(), b"tg_"))
            for fmt in ((), ("--json",), ("--csv",)):
                s.cli_ok("audit", "submission", sid, *fmt)
        for path in ("/v1/audit/submissions", "/v1/audit/admin", "/v1/audit/runs"):
            s.http("GET", path, headers=auth)
            s.http("GET", path + "?format=csv", headers=auth)
        for fmt in ((), ("--json",), ("--csv",)):
            s.cli_ok("audit", "admin", *fmt)
            s.cli_ok("audit", "submissions", *fmt)
        stored = json.loads(s.db_value("SELECT request FROM submissions WHERE request LIKE"
                                       " '%X-Key%' AND interface = 'upstream-compatible'"))
        self.assertEqual(stored["inputs"][1]["mcp_servers"][1]["headers"]["X-Key"],
                         key_fingerprint([k for k, v in secrets.items()
                                          if v == "/v1 inputs[1]"][0]))
        shown = json.loads(s.cli_ok("preset", "show", "a", "mcp").stdout)
        status, over_http, _ = s.json_req("GET", "/v1/admin/teams/b/presets/mcp", token=admin)
        self.assertEqual(status, 200)
        # Fingerprints where the values were, in the form the README gives.
        self.assertEqual(shown["mcp_servers"][0]["headers"]["Authorization"],
                         key_fingerprint(cli_preset["mcp_servers"][0]["headers"]["Authorization"]))
        for value in over_http["preset"]["mcp_servers"][0]["headers"].values():
            self.assertRegex(value, r"^sha256:[0-9a-f]{12}$")

        # Preset values are sealed under the key file like the team keys, so a rotation
        # re-seals them and they still reach the upstream.
        sealed = s.db_value("SELECT body FROM presets WHERE name = 'mcp' AND team_id ="
                            " (SELECT id FROM teams WHERE name = 'b')")
        self.assertRegex(json.loads(sealed)["mcp_servers"][0]["headers"]["Authorization"],
                         r"^tgk1\.%s\." % kid(s))
        s.cli_ok("keys", "rotate")
        self.assertEqual(json.loads(s.db_value(
            "SELECT after FROM audit_admin WHERE action = 'keys.rotate'"))["presets"], 2)
        s.sim_clear()
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"], "preset": "mcp"},
                                       token=tok_b)
        self.assertEqual(status, 200, answer)
        self.assertIn([k for k, v in secrets.items() if v == "preset (HTTP)"][0],
                      json.dumps(s.sim_requests()))

        # Nowhere in clear (nor hex nor base64): answers and CLI outputs above, every log
        # (the simulator's is the upstream's side, and it records no bodies), the database
        # and its WAL, as the daemon leaves them and as a checkpoint writes them.
        for value, place in secrets.items():
            s.add_secret(value, "key")
        s.scan_secrets()
        s.stop_daemon()
        s.scan_secrets()
        data = raw_db_bytes(s)
        for value, place in secrets.items():
            self.assertNotIn(value.encode(), data, "the secret of %s is in the database" % place)


class ClearKeyMigrationTest(StackTestCase):
    """A database whose keys an older taskgate stored in clear: the daemon's start-up
    encrypts them (init does the same), and the file keeps no copy of the clear text."""

    def test_start_encrypts_clear_preset_mcp_headers(self):
        s = self.stack(keys=[KEY_A])
        s.add_team("a", KEY_A, preset=PRESET)
        token, _ = s.issue_token("a")
        s.stop_daemon()
        clear = {"processor": "core", "mcp_servers": mcp({"Authorization": MCP_SECRET})}
        conn = s.db_connect()
        try:
            conn.execute("UPDATE presets SET body = ?", (json.dumps(clear),))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.assertIn(MCP_SECRET.encode(), raw_db_bytes(s))
        restart(s)
        self.assertIn("MCP header values of 1 preset(s) stored in clear are now encrypted",
                      s.daemon_log())
        s.sim_clear()
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, body)
        self.assertIn(MCP_SECRET, json.dumps(s.sim_requests()))
        s.stop_daemon()
        self.assertNotIn(MCP_SECRET.encode(), raw_db_bytes(s))

    def test_start_encrypts_clear_keys_and_leaves_no_trace(self):
        s = self.stack(keys=[KEY_A])
        s.add_team("a", KEY_A, preset=PRESET)
        token, _ = s.issue_token("a")
        s.stop_daemon()
        conn = s.db_connect()
        try:
            conn.execute("UPDATE teams SET upstream_key = ?, key_id = NULL", (KEY_A,))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.assertIn(KEY_A.encode(), raw_db_bytes(s))
        restart(s)
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, body)
        self.assertIn("stored in clear are now encrypted", s.daemon_log())
        self.assertEqual(s.db_value("SELECT count(*) FROM audit_admin"
                                    " WHERE action = 'keys.encrypt'"), 1)
        self.assertIsNotNone(s.db_value("SELECT key_id FROM teams"))
        s.stop_daemon()
        self.assertNotIn(KEY_A.encode(), raw_db_bytes(s))


if __name__ == "__main__":
    unittest.main(verbosity=2)
