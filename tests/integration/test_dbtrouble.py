"""Database trouble: the database locked by another process (SQLite's file, or PostgreSQL
tables another session holds), read-only, full (SQLite), or a PostgreSQL server stopped
and started again. The gateway must wait out a short lock, and otherwise answer a clear
503 in the upstream's error shape, send nothing upstream, keep running and keep answering
/healthz; a server that comes back is used again without a restart; what the upstream did
while the database could not record it is settled once it can."""

import os
import pwd
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BACKEND, StackTestCase, pg_server, sqlite_only  # noqa: E402
from pgserver import client_env, psql_path  # noqa: E402

pg_only = unittest.skipUnless(BACKEND == "postgresql", "about a PostgreSQL server")

KEY = "par-dbtrouble-0f3c5e7a9b1d2c4e"
PRESET = {"processor": "core"}


def start_daemon(s):
    """Starts the daemon and waits until it answers: its socket exists a moment before it
    listens, and nginx is refused in between."""
    s._start_daemon()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body, _ = s.json_req("GET", "/healthz")
        if status == 200 or "not answering" not in str(body):
            return
        time.sleep(0.05)


class DbTroubleTest(StackTestCase):

    def start(self, **conf):
        s = self.stack(keys=[KEY], conf=conf)
        s.add_team("a", KEY, preset=PRESET)
        token, _ = s.issue_token("a")
        return s, token

    def submit(self, s, token, timeout=30):
        return s.json_req("POST", "/v1/runs", {"inputs": ["q1", "q2"]}, token=token,
                          timeout=timeout)

    def assert_db_503(self, s, status, body, sent_before):
        self.assertEqual(status, 503, body)
        self.assertEqual(body.get("type"), "error", body)
        msg = body["error"]["message"]
        self.assertIn("nothing was sent upstream", msg)
        self.assertTrue(body["error"].get("ref_id"), body)
        self.assertEqual(len(s.sim_requests()), sent_before, "something was sent upstream")
        self.assertTrue(s.daemon_alive(), "the daemon died")

    # ---- locked -------------------------------------------------------------------------

    # The tables a submission writes, which another PostgreSQL session locks.
    PG_TABLES = ("submissions", "upstream_calls", "runs")

    def hold_lock(self, s, seconds):
        """Another process's write transaction on the database for seconds (WAL: readers
        go on, writers wait). Returns the thread; the lock is taken when this returns."""
        if BACKEND == "postgresql":
            return self.hold_pg_lock(s, seconds)
        taken = threading.Event()

        def run():
            conn = sqlite3.connect(s.db_path, isolation_level=None, timeout=5)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                taken.set()
                time.sleep(seconds)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        t = threading.Thread(target=run)
        t.start()
        self.assertTrue(taken.wait(5), "could not take the lock")
        return t

    def hold_pg_lock(self, s, seconds):
        """The same on PostgreSQL: another session's transaction holding the tables a
        submission writes in EXCLUSIVE mode (reads go on, writes wait), as psql would."""
        sql = ("BEGIN; LOCK TABLE %s IN EXCLUSIVE MODE; SELECT pg_sleep(%s); ROLLBACK;"
               % (", ".join(self.PG_TABLES), seconds))
        t = threading.Thread(target=lambda: pg_server().psql(sql, dbname=s.pg_dbname))
        t.start()
        held = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = "
                "current_database()) AND l.mode = 'ExclusiveLock' AND l.granted AND "
                "c.relname IN (%s)" % ", ".join("'%s'" % n for n in self.PG_TABLES))
        deadline = time.monotonic() + 5
        while s.db_value(held) != len(self.PG_TABLES):
            self.assertLess(time.monotonic(), deadline, "could not take the lock")
            time.sleep(0.02)
        return t

    def test_locked_for_a_few_seconds_requests_wait_then_succeed(self):
        s, token = self.start(db_busy_timeout_ms=10000)
        t = self.hold_lock(s, 2.5)
        t0 = time.monotonic()
        status, body, _ = self.submit(s, token)
        waited = time.monotonic() - t0
        t.join()
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["run_ids"]), 2)
        self.assertGreater(waited, 1.5, "the request did not wait for the lock")
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?",
                                    (body["submission_id"],)), "accepted")
        self.assertEqual(len(s.sim_requests()), 2)  # create group + add runs

    def test_locked_past_the_busy_timeout_is_503_with_nothing_sent(self):
        s, token = self.start(db_busy_timeout_ms=500)
        t = self.hold_lock(s, 3)
        try:
            status, body, _ = self.submit(s, token)
        finally:
            t.join()
        self.assert_db_503(s, status, body, 0)
        # Once the lock is gone the same submission goes through.
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)

    def test_no_busy_timeout_fails_at_once(self):
        """db_busy_timeout_ms = 0 waits for no lock (on PostgreSQL a lock_timeout of 0
        would mean waiting for ever)."""
        s, token = self.start(db_busy_timeout_ms=0)
        t = self.hold_lock(s, 3)
        try:
            t0 = time.monotonic()
            status, body, _ = self.submit(s, token)
            waited = time.monotonic() - t0
        finally:
            t.join()
        self.assert_db_503(s, status, body, 0)
        self.assertLess(waited, 1.5, "the request waited for the lock")

    # ---- read-only ------------------------------------------------------------------------

    def make_read_only(self, s):
        """Restarts the daemon on a database file it cannot write. root ignores file modes,
        so under root the daemon runs as nobody (config key `user`) over files it owns."""
        s.stop_daemon()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            s.extra_conf["user"] = "nobody"
            s._write_conf()
            for name in os.listdir(s.dir):
                if name.startswith("taskgate.db"):
                    os.chown(s.path(name), nobody.pw_uid, nobody.pw_gid)
            os.chown(s.dir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(s.db_path, 0o444)
        start_daemon(s)

    @sqlite_only
    def test_read_only_database_is_503_and_nothing_sent(self):
        s, token = self.start()
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)
        self.make_read_only(s)
        s.sim_clear()
        before = s.db_value("SELECT count(*) FROM submissions")

        status, body, _ = self.submit(s, token)
        self.assert_db_503(s, status, body, 0)
        status, health, _ = s.json_req("GET", "/healthz")
        self.assertEqual(status, 503, health)
        self.assertIn("read-only", health["error"]["message"])
        # Reads still work: the audit API answers from the read-only file.
        self.assertEqual(s.db_value("SELECT count(*) FROM submissions"), before)
        self.assertNotIn("Segmentation", s.daemon_log())
        os.chmod(s.db_path, 0o644)

    @pg_only
    def test_read_only_server_is_503_nothing_sent_and_writes_again(self):
        """PostgreSQL's read-only database (a standby after a failover would refuse writes
        the same way): the daemon's sessions, ended by an administrator, come back
        read-only."""
        s, token = self.start()
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)
        pg = pg_server()
        alter = 'ALTER DATABASE "%s" %%s default_transaction_read_only' % s.pg_dbname
        pg.psql(alter % "SET" + " = on", dbname="postgres")
        try:
            self.assertGreater(s.pg_end_sessions(), 0)
            s.sim_clear()
            before = s.db_value("SELECT count(*) FROM submissions")
            status, body, _ = self.submit(s, token)
            self.assert_db_503(s, status, body, 0)
            status, health, _ = s.json_req("GET", "/healthz")
            self.assertEqual(status, 503, health)
            self.assertIn("cannot be written", health["error"]["message"])
            self.assertIn("read-only", health["error"]["message"])
            # Reads still work: the records are all there.
            self.assertEqual(s.db_value("SELECT count(*) FROM submissions"), before)
        finally:
            pg.psql(alter % "RESET", dbname="postgres")
        # Writable again, once its sessions are made anew: the same daemon serves.
        s.pg_end_sessions()
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)
        self.wait_for("/healthz back to 200",
                      lambda: s.json_req("GET", "/healthz")[0] == 200, 10)
        self.assertEqual(len(s.sim_requests()), 2)  # create group + add runs

    @pg_only
    def test_session_ended_during_a_read_is_answered_from_a_new_one(self):
        """A session the server ends while one of its reads runs (an administrator's
        pg_terminate_backend, a restart): the read is made again on a new connection,
        and the client is answered as if nothing had happened, not 503. The token check,
        every request's first statement, is held by a lock until its session is ended."""
        s, token = self.start(db_busy_timeout_ms=10000)
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)
        s.sim_clear()
        pg = pg_server()
        # ACCESS EXCLUSIVE: even reads of tokens wait, until the lock goes with its
        # session (ended below, so that nothing depends on a sleep's length).
        locker = subprocess.Popen(
            [psql_path(pg.bindir), "-X", "-q", "-d", pg.dsn_for(s.pg_dbname),
             "-c", "BEGIN; LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE;"
                   " SELECT pg_sleep(30); ROLLBACK;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env())
        try:
            def sessions(where):
                return pg.psql("SELECT pid FROM pg_stat_activity WHERE datname ="
                               " current_database() AND pid <> pg_backend_pid() AND " + where,
                               dbname=s.pg_dbname, args=("-At",)).stdout.split()
            locker_pid = None
            deadline = time.monotonic() + 10
            while locker_pid is None:
                self.assertLess(time.monotonic(), deadline, "could not take the lock")
                found = sessions("query LIKE '%LOCK TABLE tokens%' AND wait_event = 'PgSleep'")
                locker_pid = found[0] if found else None
                time.sleep(0.02)
            answer = {}
            t = threading.Thread(target=lambda: answer.update(r=self.submit(s, token)))
            t.start()
            waiting = []
            deadline = time.monotonic() + 10
            while not waiting:
                self.assertLess(time.monotonic(), deadline, "the token check did not wait")
                waiting = sessions("wait_event_type = 'Lock' AND query LIKE '%FROM tokens%'")
                time.sleep(0.02)
            pg.psql("SELECT pg_terminate_backend(%d)" % int(waiting[0]), dbname=s.pg_dbname)
            time.sleep(0.3)  # the ended session's read is made again, and waits anew
            pg.psql("SELECT pg_terminate_backend(%d)" % int(locker_pid), dbname=s.pg_dbname)
            t.join(30)
            self.assertFalse(t.is_alive(), "the submission was not answered")
        finally:
            locker.kill()
            locker.wait()
        status, body, _ = answer["r"]
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["run_ids"]), 2)
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?",
                                    (body["submission_id"],)), "accepted")
        self.assertEqual(len(s.sim_requests()), 2)  # create group + add runs
        self.assertIn("terminating connection due to administrator command; the query was"
                      " made again on a new connection", s.daemon_log())
        status, _, metrics = s.http("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('taskgate_db_queries_again_total{outcome="answered"} 1\n',
                      metrics.decode())

    # ---- full ----------------------------------------------------------------------------

    # A PostgreSQL database has no size cap of the gateway's to fill (db_max_pages is
    # SQLite's); a server out of disk refuses writes as a read-only one does, above.
    @sqlite_only

    def test_full_database_is_503_nothing_sent_and_health_says_so(self):
        s, token = self.start()
        pages = s.db_value("PRAGMA page_count")
        s.stop_daemon()
        s.extra_conf["db_max_pages"] = pages + 2
        s._write_conf()
        start_daemon(s)
        s.sim_clear()
        big = ["x" * 3000 + str(i) for i in range(40)]  # ~120 kB of request to store
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": big}, token=token)
        self.assert_db_503(s, status, body, 0)
        self.assertIn("full", s.daemon_log())
        # The database is read fine, but it does not take the writes: /healthz says so.
        status, health, _ = s.json_req("GET", "/healthz")
        self.assertEqual(status, 503, health)
        self.assertIn("cannot be written", health["error"]["message"])
        self.assertIn("full", health["error"]["message"])
        # A small submission that still fits goes through: the daemon is not wedged.
        status, body, _ = self.submit(s, token)
        self.assertIn(status, (200, 503), body)
        self.assertTrue(s.daemon_alive())

    # ---- after the upstream call ----------------------------------------------------------

    def wait_for(self, what, probe, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            got = probe()
            if got:
                return got
            if time.monotonic() > deadline:
                self.fail("%s: not within %d s" % (what, timeout))
            time.sleep(0.1)

    def test_write_failure_after_the_upstream_call_is_settled_while_serving(self):
        """The upstream creates the runs; then every write of the database fails (locked by
        another process past the busy timeout). The client is told not to resubmit, and
        once the database takes writes again the daemon itself marks the submission
        unknown, reconciles it and frees its in-flight slot: no restart."""
        s, token = self.start(db_busy_timeout_ms=300, reconcile_after_s=1,
                              housekeeping_interval_s=1)
        s.cli_ok("team", "limits", "a", "--in-flight", "1")
        pid = s.daemon_proc.pid
        s.sim_fault(match="add_runs", kind="delay", delay_ms=1500)
        answer = {}
        t = threading.Thread(target=lambda: answer.update(r=self.submit(s, token)))
        t.start()
        # The group is recorded before add-runs goes out: lock the database then, while the
        # simulator sits on the add-runs request.
        self.wait_for("the group's creation recorded", lambda: s.db_value(
            "SELECT count(*) FROM upstream_calls WHERE operation = 'create_group'"), 10)
        lock = self.hold_lock(s, 4)
        t.join()
        status, body, _ = answer["r"]
        self.assertEqual(status, 500, body)
        self.assertIn("do not resubmit", body["error"]["message"])
        sub = body["error"]["detail"]["submission_id"]
        self.assertEqual(s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)),
                         "pending")
        status, health, _ = s.json_req("GET", "/healthz")
        self.assertEqual(status, 503, health)
        self.assertIn("database", health["error"]["message"])
        lock.join()

        # The database takes writes again: unknown, then reconciled from the upstream's
        # runs, all by the running daemon.
        self.wait_for("the submission settled", lambda: s.db_value(
            "SELECT state FROM submissions WHERE id = ?", (sub,)) == "accepted")
        self.assertEqual(s.db_value("SELECT count(*) FROM runs WHERE submission_id = ?",
                                    (sub,)), 2)
        self.wait_for("/healthz back to 200",
                      lambda: s.json_req("GET", "/healthz")[0] == 200, 10)
        self.assertIn("is now 'unknown'", s.daemon_log())
        # The in-flight slot is free: the team submits again.
        status, body, _ = self.submit(s, token)
        self.assertEqual(status, 200, body)
        self.assertEqual(s.daemon_proc.pid, pid)
        self.assertTrue(s.daemon_alive())


@pg_only
class ServerDownTest(StackTestCase):
    """The PostgreSQL server stopped under a running daemon and started again: a 503 with
    nothing sent while it is down, and the same daemon serving again when it is back."""

    def start(self, **conf):
        s = self.stack(keys=[KEY], conf=conf)
        s.add_team("a", KEY, preset=PRESET)
        token, _ = s.issue_token("a")
        return s, token

    def submit(self, s, token):
        return s.json_req("POST", "/v1/runs", {"inputs": ["q1", "q2"]}, token=token)

    def assert_down_503(self, status, body):
        self.assertEqual(status, 503, body)
        self.assertEqual(body.get("type"), "error", body)
        self.assertTrue(body["error"].get("ref_id"), body)
        self.assertIn("nothing was sent upstream", body["error"]["message"])

    def test_stopped_server_is_503_with_nothing_sent_and_used_again_when_back(self):
        s, token = self.start()
        pid = s.daemon_proc.pid
        self.assertEqual(self.submit(s, token)[0], 200)
        for mode in ("fast", "immediate"):
            with self.subTest(mode=mode):
                s.sim_clear()
                with s.pg_server_down(mode):
                    for _ in range(3):
                        self.assert_down_503(*self.submit(s, token)[:2])
                    # The SDKs' path too.
                    status, body, _ = s.json_req("POST", "/v1/tasks/groups", {},
                                                 headers={"x-api-key": token})
                    self.assert_down_503(status, body)
                    status, health, _ = s.json_req("GET", "/healthz")
                    self.assertEqual(status, 503, health)
                    self.assertTrue(health["error"]["message"].startswith(
                        "the database cannot be reached"), health)
                    self.assertEqual(s.sim_requests(), [], "something was sent upstream")
                    self.assertTrue(s.daemon_alive())
                # Back: the first requests succeed, on every worker's connection made
                # again (none is refused for a connection the server closed meanwhile).
                for _ in range(10):
                    status, body, _ = self.submit(s, token)
                    self.assertEqual(status, 200, body)
                self.assertEqual(s.json_req("GET", "/healthz")[0], 200)
                self.assertEqual(s.daemon_proc.pid, pid, "the daemon was restarted")
        self.assertNotIn("terminating connection", "\n".join(
            line for line in s.daemon_log().splitlines() if not line.startswith("ts=")),
            "libpq's own words on stderr, outside the structured log")

    def test_server_stopped_while_the_upstream_creates_the_runs(self):
        """The add-runs is upstream when the server stops: the runs exist but cannot be
        recorded. The client is told not to resubmit; once the server is back the daemon
        marks the submission unknown and reconciles it: its runs recorded once, nothing
        sent again."""
        s, token = self.start(reconcile_after_s=1, housekeeping_interval_s=1)
        pid = s.daemon_proc.pid
        s.sim_fault(match="add_runs", kind="delay", delay_ms=3000)
        answer = {}
        t = threading.Thread(target=lambda: answer.update(r=self.submit(s, token)))
        t.start()

        def adds():
            return [r for r in s.sim_requests()
                    if r["method"] == "POST" and r["path"].endswith("/runs")]
        deadline = time.monotonic() + 10
        while not adds():
            self.assertLess(time.monotonic(), deadline, "no add-runs reached the upstream")
            time.sleep(0.05)
        with s.pg_server_down("fast"):
            t.join(30)
            status, body, _ = answer["r"]
            self.assertEqual(status, 500, body)
            self.assertIn("do not resubmit", body["error"]["message"])
            detail = body["error"]["detail"]
            self.assertEqual(detail["state"], "pending")
            self.assertEqual(len(detail["run_ids"]), 2)
            status, health, _ = s.json_req("GET", "/healthz")
            self.assertEqual(status, 503, health)
        sub = detail["submission_id"]
        deadline = time.monotonic() + 20
        while s.db_value("SELECT state FROM submissions WHERE id = ?", (sub,)) != "accepted":
            self.assertLess(time.monotonic(), deadline, "the submission was not settled")
            time.sleep(0.2)
        self.assertEqual(sorted(r[0] for r in s.db(
            "SELECT run_id FROM audit_runs WHERE submission_id = ?", (sub,))),
            sorted(detail["run_ids"]))
        self.assertEqual(len(adds()), 1, "sent twice")
        self.assertIn("is now 'unknown'", s.daemon_log())
        deadline = time.monotonic() + 10
        while s.json_req("GET", "/healthz")[0] != 200:
            self.assertLess(time.monotonic(), deadline, "/healthz stayed 503")
            time.sleep(0.2)
        self.assertEqual(self.submit(s, token)[0], 200)
        self.assertEqual(s.daemon_proc.pid, pid)


@pg_only
class TcpKeepaliveTest(StackTestCase):
    """Over TCP, a server host that vanishes without closing its connections is noticed
    within the daemons' 30-second lease: every connection the daemon holds probes an idle
    peer after 10 s (the system's default is two hours), unless the URI says otherwise."""

    def tcp_server(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        from pgserver import PgServer
        pg = PgServer(settings={"listen_addresses": "'127.0.0.1'", "port": port})
        pg.start()
        self.addCleanup(pg.stop)
        return pg

    def keepalive_timers(self, port):
        """Seconds left on the keepalive timer of each established connection to port."""
        out = subprocess.run(["ss", "-tnoH", "state", "established", "( dport = :%d )" % port],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        unit = {"ms": 0.001, "sec": 1, "min": 60}
        timers = []
        for line in out.splitlines():
            m = re.search(r"timer:\(keepalive,([\d.]+)(ms|sec|min)", line)
            timers.append(float(m.group(1)) * unit[m.group(2)] if m else None)
        return timers

    def test_connections_probe_an_idle_server_within_the_lease(self):
        pg = self.tcp_server()
        for case, dsn, most in (
                ("default", pg.tcp_dsn_for(pg.dbname), 10),
                ("the URI's own", pg.tcp_dsn_for(pg.dbname) + "?keepalives_idle=100", 100)):
            with self.subTest(case=case):
                pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
                s = self.stack(keys=[KEY], conf={"database": dsn})
                s.add_team("a", KEY, preset=PRESET)
                token, _ = s.issue_token("a")
                status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q1"]},
                                             token=token)
                self.assertEqual(status, 200, body)
                timers = self.keepalive_timers(pg.port)
                self.assertTrue(timers, "the daemon holds no TCP connection to the server")
                for t in timers:
                    self.assertIsNotNone(t, "a connection without keepalives: %s" % timers)
                    self.assertLessEqual(t, most, timers)
                    self.assertGreater(t, most / 2 if most > 10 else 0, timers)
                s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
