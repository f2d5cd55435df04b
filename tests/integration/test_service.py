"""Running as a service: `cmake --install` lays out the binary, config, SQL, nginx site and
systemd units; started as root with `user` set, the daemon serves as that user; a user
that does not exist stops start-up with a clear message."""

import os
import pwd
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import StackTestCase, env_path  # noqa: E402


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


class InstallTest(unittest.TestCase):
    def test_cmake_install_layout(self):
        build = os.path.dirname(env_path("TG_BIN"))
        with tempfile.TemporaryDirectory() as prefix:
            r = subprocess.run(["cmake", "--install", build, "--prefix", prefix],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            for path in ["bin/taskgate", "etc/taskgate/taskgate.conf",
                         "share/taskgate/sql/001_init.sql", "share/taskgate/nginx/taskgate.conf",
                         "lib/systemd/system/taskgate.service",
                         "lib/systemd/system/taskgate.socket"]:
                self.assertTrue(os.path.isfile(os.path.join(prefix, path)), path)
            # The installed config loads as it is.
            r = subprocess.run([os.path.join(prefix, "bin/taskgate"), "--config",
                                os.path.join(prefix, "etc/taskgate/taskgate.conf"), "config"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("upstream_url = https://api.parallel.ai", r.stdout)


@unittest.skipUnless(os.geteuid() == 0, "switching users needs root")
class PrivilegeTest(StackTestCase):
    def test_root_drops_to_user(self):
        nobody = pwd.getpwnam("nobody")
        s = self.stack()
        s.add_team("svc", "par-svc-key", preset={"processor": "core"})
        token, _ = s.issue_token("svc")
        self.assertEqual(s.stop_daemon(), 0)
        for root, dirs, files in os.walk(s.dir):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), nobody.pw_uid, nobody.pw_gid)
        os.chown(s.dir, nobody.pw_uid, nobody.pw_gid)
        with open(s.conf_path, "a") as f:
            f.write("user = nobody\n")
        s.restart_daemon()
        # The socket appears before the switch; an answered request comes after it.
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, answer)
        self.assertEqual(proc_uid(s.daemon_proc.pid), [nobody.pw_uid] * 4)
        self.assertIn("running as user nobody", s.daemon_log())
        self.assertEqual(s.stop_daemon(), 0)

    def test_unknown_user_stops_start_up(self):
        s = self.stack(daemon=False)
        with open(s.conf_path, "a") as f:
            f.write("user = no-such-user-here\n")
        r = subprocess.run([s.bin, "--config", s.conf_path, "serve"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(r.returncode, 1)
        self.assertIn("user 'no-such-user-here' (config key `user`) does not exist", r.stderr)


if __name__ == "__main__":
    unittest.main()
