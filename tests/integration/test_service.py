"""Running as a service: `cmake --install` lays out the binary, config, SQL, nginx site and
systemd units; started as root with `user` set, the daemon serves as that user; a user
that does not exist stops start-up with a clear message; one daemon per SQLite database (a
second one refuses to start and touches neither the first one's submissions nor its
socket; on PostgreSQL, where several share one, a second on the first's socket refuses
the same way); the database files (SQLite's), the key file and the socket are not open to
other local users."""

import grp
import os
import pwd
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BACKEND, StackTestCase, env_path, sqlite_only  # noqa: E402

pg_only = unittest.skipUnless(BACKEND == "postgresql", "about a PostgreSQL server")


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
                         "share/taskgate/sql/001_init.sql",
                         "lib/systemd/system/taskgate.service",
                         "lib/systemd/system/taskgate.socket"]:
                self.assertTrue(os.path.isfile(os.path.join(prefix, path)), path)
            # The installed config loads as it is.
            r = subprocess.run([os.path.join(prefix, "bin/taskgate"), "--config",
                                os.path.join(prefix, "etc/taskgate/taskgate.conf"), "config"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("upstream_url = https://api.parallel.ai", r.stdout)
            # And so does the nginx site for it: Parallel over verified TLS.
            r = subprocess.run([os.path.join(prefix, "bin/taskgate"), "--config",
                                os.path.join(prefix, "etc/taskgate/taskgate.conf"),
                                "nginx-site"], capture_output=True, text=True,
                               env=dict(os.environ, TASKGATE_NGINX_RESOLVER="127.0.0.1"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("proxy_ssl_verify on;", r.stdout)


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


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class OneDaemonPerDatabaseTest(StackTestCase):
    def conf_with(self, s, name, **keys):
        """s's config with keys replaced, written to name; returns its path."""
        with open(s.conf_path) as f:
            text = f.read()
        for k, v in keys.items():
            text, n = re.subn(r"(?m)^%s = .*$" % k, "%s = %s" % (k, v), text)
            if n == 0:
                text += "%s = %s\n" % (k, v)
        path = s.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def serve(self, s, conf):
        return subprocess.run([s.bin, "--config", conf, "serve"], capture_output=True,
                              text=True, timeout=20)

    def in_flight(self, s):
        """A submission in flight in s's daemon, pending while the upstream sits on it; the
        thread that waits for its answer (into answer["r"])."""
        s.add_team("svc", "par-svc-key", preset={"processor": "core"})
        token, _ = s.issue_token("svc")
        s.sim_fault(match="add_runs", kind="delay", delay_ms=3000)
        answer = {}
        t = threading.Thread(target=lambda: answer.update(r=s.json_req(
            "POST", "/v1/runs", {"inputs": ["q"]}, token=token)))
        t.start()
        deadline = time.monotonic() + 10
        while s.db_value("SELECT count(*) FROM submissions WHERE state = 'pending'") != 1:
            self.assertLess(time.monotonic(), deadline, "no pending submission")
            time.sleep(0.05)
        return t, answer

    def assert_first_untouched(self, s, sock, t, answer):
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state = 'pending'"),
                         1)
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions WHERE state = 'unknown'"),
                         0)
        self.assertEqual(s.db_value("SELECT count(*) FROM reconciliations"), 0)
        now = os.stat(s.sock_path)
        self.assertEqual((now.st_dev, now.st_ino), (sock.st_dev, sock.st_ino))
        t.join()
        status, body, _ = answer["r"]
        self.assertEqual(status, 200, body)
        self.assertEqual(s.json_req("GET", "/healthz")[0], 200)
        # The CLI still works beside the daemon.
        s.cli_ok("team", "list")

    @sqlite_only
    def test_a_second_daemon_refuses_and_leaves_the_first_alone(self):
        s = self.stack()
        t, answer = self.in_flight(s)
        sock = os.stat(s.sock_path)
        other = os.path.join(os.path.dirname(s.sock_path), "second.sock")  # as short a path
        for name, listen in (("same socket", s.sock_path), ("another socket", other)):
            with self.subTest(name):
                r = self.serve(s, self.conf_with(s, "second.conf", listen=listen))
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("another taskgate daemon (pid %d" % s.daemon_proc.pid, r.stderr)
                self.assertIn("one daemon per database", r.stderr)
                self.assertFalse(os.path.exists(other))
        # Another database on the first one's socket: the socket is not taken either.
        r = self.serve(s, self.conf_with(s, "third.conf", database=s.path("other.db")))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("another process is listening on %s" % s.sock_path, r.stderr)
        self.assert_first_untouched(s, sock, t, answer)

    @pg_only
    def test_a_second_daemon_on_the_same_socket_refuses_and_leaves_the_first_alone(self):
        """On PostgreSQL several daemons share the database (test_pg_cluster.py), each on a
        socket of its own: one started on another's socket refuses, touching neither that
        socket nor the in-flight submissions."""
        s = self.stack()
        t, answer = self.in_flight(s)
        sock = os.stat(s.sock_path)
        r = self.serve(s, s.conf_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("another process is listening on %s" % s.sock_path, r.stderr)
        self.assert_first_untouched(s, sock, t, answer)

    def test_the_socket_is_left_alone_when_it_is_no_longer_ours(self):
        s = self.stack()
        # Someone replaced the socket file (another daemon's, say) while this one ran.
        os.rename(s.sock_path, s.sock_path + ".old")
        with open(s.sock_path, "w") as f:
            f.write("not ours")
        self.assertEqual(s.stop_daemon(), 0)
        self.assertTrue(os.path.exists(s.sock_path))
        os.unlink(s.sock_path)
        os.rename(s.sock_path + ".old", s.sock_path)
        s._start_daemon()
        self.assertEqual(s.stop_daemon(), 0)
        self.assertFalse(os.path.exists(s.sock_path), "its own socket is removed on exit")


class FileModeTest(StackTestCase):
    """The database holds every team's inputs, the key file the keys; the socket speaks
    FastCGI past nginx's rules: none of them is open to other local users."""

    @sqlite_only
    def test_database_files_and_socket_modes(self):
        s = self.stack()
        s.add_team("svc", "par-svc-key", preset={"processor": "core"})
        token, _ = s.issue_token("svc")
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, body)
        for suffix in ("", "-wal", "-shm", ".key", ".lock"):
            with self.subTest(suffix):
                self.assertEqual(mode(s.db_path + suffix), 0o600, suffix)
        self.assertEqual(mode(s.sock_path), 0o660)

    @pg_only
    def test_key_file_and_socket_modes(self):
        """On PostgreSQL the records are in the server's data directory (initdb's, 0700);
        what the gateway keeps in files of its own is the key file, and the socket."""
        s = self.stack()
        s.add_team("svc", "par-svc-key", preset={"processor": "core"})
        token, _ = s.issue_token("svc")
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, body)
        self.assertEqual(mode(s.key_file_path), 0o600)
        self.assertEqual(mode(s.sock_path), 0o660)
        self.assertFalse([n for n in os.listdir(s.dir) if n.startswith("taskgate.db")
                          and n != os.path.basename(s.key_file_path)],
                         "files of a SQLite database beside a PostgreSQL one")

    @sqlite_only
    def test_an_open_database_is_closed_at_start(self):
        s = self.stack()
        s.stop_daemon()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(s.db_path + suffix):
                os.chmod(s.db_path + suffix, 0o644)
        s._start_daemon()
        for suffix in ("", "-wal", "-shm"):
            with self.subTest(suffix):
                self.assertEqual(mode(s.db_path + suffix), 0o600, suffix)
        self.assertIn("readable by group or others", s.daemon_log())

    @unittest.skipUnless(os.geteuid() == 0, "giving a file another group needs root")
    def test_socket_group(self):
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid)
        s = self.stack(conf={"socket_group": group.gr_name})
        self.assertEqual(os.stat(s.sock_path).st_gid, group.gr_gid)
        self.assertEqual(mode(s.sock_path), 0o660)
        self.assertEqual(s.json_req("GET", "/healthz")[0], 200)
        r = subprocess.run([s.bin, "--config", s.conf_path, "config"], capture_output=True,
                           text=True)
        self.assertIn("socket_group = %s" % group.gr_name, r.stdout)


if __name__ == "__main__":
    unittest.main()
