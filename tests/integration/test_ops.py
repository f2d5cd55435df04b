"""Operations: /metrics in Prometheus text format (checked with a parser, not a grep) whose
counters move as requests are made, and /healthz turning 503 when the database cannot be
read (the SQLite file replaced or gone; the PostgreSQL server stopped, or its database
dropped) or the key file is unsafe, naming no path, server or password to anyone but
loopback clients, and 200 again once the database is back. Real nginx,
daemon and simulator, as everywhere in tests/integration."""

import http.client
import json
import math
import os
import re
import shutil
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BACKEND, StackTestCase, pg_server, sqlite_only  # noqa: E402

pg_only = unittest.skipUnless(BACKEND == "postgresql", "about a PostgreSQL server")

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
SAMPLE_RE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(ValueError):
    pass


def parse_exposition(text):
    """Parses Prometheus text format 0.0.4 strictly: every sample belongs to a family whose
    TYPE came first, names and labels are well formed, values are floats, a histogram's
    buckets are cumulative and end with +Inf equal to _count. Returns
    {(name, frozenset(labels.items())): value} and {family: type}."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    types, samples, seen_help = {}, {}, set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            if name in seen_help:
                raise ExpositionError("line %d: second HELP for %s" % (n, name))
            seen_help.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in TYPES or parts[2] in types:
                raise ExpositionError("line %d: bad or repeated TYPE: %r" % (n, line))
            types[parts[2]] = parts[3]
            continue
        if line.startswith("#") or line == "":
            raise ExpositionError("line %d: unexpected %r" % (n, line))
        m = SAMPLE_RE.match(line)
        if not m:
            raise ExpositionError("line %d: not a sample: %r" % (n, line))
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        if family not in types:
            raise ExpositionError("line %d: %s has no TYPE before it" % (n, name))
        try:
            v = float(value)  # "+Inf" and "NaN" are valid floats
        except ValueError:
            raise ExpositionError("line %d: %r is not a number" % (n, value)) from None
        key = (name, frozenset(LABEL_RE.findall(labels)))
        if key in samples:
            raise ExpositionError("line %d: duplicate sample %r" % (n, line))
        samples[key] = v
    for family, kind in types.items():
        if kind == "histogram":
            check_histogram(family, samples)
    return samples, types


def check_histogram(family, samples):
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items()
                      if k[0] == family + "_bucket"), key=lambda b: b[0])
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ExpositionError("%s has no +Inf bucket" % family)
    counts = [v for _, v in buckets]
    if counts != sorted(counts):
        raise ExpositionError("%s buckets are not cumulative: %r" % (family, counts))
    if counts[-1] != samples.get((family + "_count", frozenset()), None):
        raise ExpositionError("%s +Inf bucket differs from _count" % family)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(StackTestCase):
    def scrape(self, s):
        status, headers, body = s.http("GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        return parse_exposition(body.decode("utf-8"))[0]

    def test_parser_refuses_bad_expositions(self):
        for bad in ["x 1\n", "# TYPE x counter\nx{a=\"1\" 1\n", "# TYPE x counter\nx one\n",
                    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                    "h_count 1\nh_sum 0\n", "# TYPE x counter\nx 1"]:
            with self.subTest(bad=bad):
                with self.assertRaises(ExpositionError):
                    parse_exposition(bad)

    def test_counters_move(self):
        s = self.stack()
        s.add_team("ops", "par-ops-key", preset={"processor": "core"})
        token, _ = s.issue_token("ops")
        started = time.monotonic()
        before = self.scrape(s)
        # The harness runs 8 workers; the scrape itself occupies one.
        self.assertEqual(value(before, "taskgate_workers_free"), 7.0)

        ok = s.json_req("POST", "/v1/runs", {"inputs": ["a", "b", "c"]}, token=token)
        self.assertEqual(ok[0], 200, ok)
        bad = s.json_req("POST", "/v1/runs", {"inputs": []}, token=token)
        self.assertEqual(bad[0], 422)
        s.sim_fault(match="add_runs", kind="status", status=500)
        failed = s.json_req("POST", "/v1/runs", {"inputs": ["x"]}, token=token)
        self.assertEqual(failed[0], 502)
        after = self.scrape(s)
        elapsed = time.monotonic() - started

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("taskgate_requests_total", interface="simplified", status="200"), 1)
        self.assertEqual(moved("taskgate_requests_total", interface="simplified", status="422"), 1)
        self.assertEqual(moved("taskgate_requests_total", interface="simplified", status="502"), 1)
        self.assertEqual(moved("taskgate_submissions_total", state="accepted"), 1)
        self.assertEqual(moved("taskgate_submissions_total", state="rejected"), 1)
        self.assertEqual(moved("taskgate_submissions_total", state="failed"), 1)
        self.assertEqual(moved("taskgate_runs_created_total", team="ops"), 3)
        self.assertEqual(moved("taskgate_upstream_calls_total", operation="create_group",
                               status="200"), 2)
        self.assertEqual(moved("taskgate_upstream_calls_total", operation="add_runs",
                               status="200"), 1)
        self.assertEqual(moved("taskgate_upstream_calls_total", operation="add_runs",
                               status="500"), 1)
        self.assertEqual(moved("taskgate_upstream_duration_seconds_count"), 4)
        self.assertGreater(moved("taskgate_db_transactions_total"), 0)
        # Each submission was admitted and settled (two writes), the rejected one recorded
        # (one); group commit may put several writes in one transaction, never fewer.
        self.assertGreaterEqual(moved("taskgate_db_writes_total"), 5)
        self.assertLessEqual(moved("taskgate_db_transactions_total"),
                             moved("taskgate_db_writes_total"))
        if BACKEND == "sqlite":
            self.assertGreater(moved("taskgate_db_wal_frames_total"), 0)
            # The one writer was held by those transactions, and for no longer than the
            # requests took between the two scrapes.
            held = moved("taskgate_db_writer_held_seconds_total", by="writes")
            self.assertGreater(held, 0)
            self.assertLess(held, elapsed)
        else:  # SQLite's shared writer's pages; PostgreSQL's WAL is the server's own
            self.assertEqual(value(after, "taskgate_db_wal_frames_total"), 0)
            self.assertEqual(value(after, "taskgate_db_writer_held_seconds_total", by="writes"),
                             0)
        self.assertIn(("taskgate_db_writer_held_seconds_total",
                       frozenset({("by", "checkpoints")})), after)
        # Each write's wait for its transaction, as a histogram whose sum is the counter's:
        # on SQLite every write's (the writer's queue), on PostgreSQL each BEGIN's.
        if BACKEND == "sqlite":
            self.assertEqual(moved("taskgate_db_wait_seconds_count"),
                             moved("taskgate_db_writes_total"))
        else:
            self.assertLessEqual(moved("taskgate_db_wait_seconds_count"),
                                 moved("taskgate_db_transactions_total"))
        self.assertAlmostEqual(value(after, "taskgate_db_wait_seconds_sum"),
                               value(after, "taskgate_db_wait_seconds_total"), places=5)
        self.assertLessEqual(moved("taskgate_db_wait_seconds_sum"), elapsed)
        # No PostgreSQL session ended under a query: none was made again.
        for outcome in ("answered", "failed"):
            self.assertIn(("taskgate_db_queries_again_total",
                           frozenset({("outcome", outcome)})), after)
            self.assertEqual(value(after, "taskgate_db_queries_again_total", outcome=outcome), 0)
        # Nothing these submissions wrote failed half-way: no group was run again.
        self.assertIn(("taskgate_db_group_redos_total", frozenset()), after)
        self.assertEqual(value(after, "taskgate_db_group_redos_total"), 0)
        # Nothing changed the token or the team meanwhile: no submission was taken again.
        self.assertIn(("taskgate_auth_rechecks_total", frozenset()), after)
        self.assertEqual(value(after, "taskgate_auth_rechecks_total"), 0)
        # Only this scrape is in flight while it is rendered.
        self.assertEqual(value(after, "taskgate_requests_in_flight"), 1.0)

    def test_threads_are_named_for_top(self):
        """An operator tells the daemon's threads apart in top -H: its workers, and on
        SQLite the one writer everybody waits for and its checkpointer."""
        s = self.stack()
        task = "/proc/%d/task" % s.daemon_proc.pid
        names = []
        for tid in os.listdir(task):
            with open(os.path.join(task, tid, "comm")) as f:
                names.append(f.read().strip())
        self.assertEqual(names.count("tg-worker"), 8, names)  # the harness runs 8
        if BACKEND == "sqlite":
            self.assertEqual(names.count("tg-writer"), 1, names)
            self.assertEqual(names.count("tg-checkpoint"), 1, names)
        else:
            self.assertNotIn("tg-writer", names)

    def test_open_submissions_are_counted_from_the_database(self):
        s = self.stack(upstream_timeout_ms=1000)
        s.add_team("ops", "par-ops-key", preset={"processor": "core"})
        token, _ = s.issue_token("ops")
        samples = self.scrape(s)
        self.assertIn(("taskgate_submissions_open", frozenset({("state", "unknown")})), samples)
        self.assertEqual(value(samples, "taskgate_submissions_open", state="unknown"), 0)
        s.sim_fault(match="add_runs", kind="hang", apply=True, delay_ms=1500)
        st, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["x"]}, token=token)
        self.assertEqual(st, 504, body)
        samples = self.scrape(s)
        self.assertEqual(value(samples, "taskgate_submissions_open", state="unknown"), 1)
        self.assertEqual(value(samples, "taskgate_submissions_open", state="pending"), 0)
        time.sleep(0.8)  # the hung call ends upstream; its run exists
        r = s.cli("reconcile")
        self.assertEqual(r.returncode, 0, r.stderr)
        samples = self.scrape(s)
        self.assertEqual(value(samples, "taskgate_submissions_open", state="unknown"), 0)


class HealthTest(StackTestCase):
    def test_healthz_and_metrics_name_the_daemon_and_its_store(self):
        s = self.stack()
        status, hdrs, data = s.http("GET", "/healthz")
        self.assertEqual(status, 200, data)
        body = json.loads(data)
        self.assertEqual(body["status"], "ok")
        self.assertRegex(body["daemon"], r"^dmn_[0-9a-f]{16}$")
        self.assertEqual(body["store"], BACKEND)
        self.assertEqual(hdrs.get("x-taskgate-daemon"), body["daemon"])
        metrics = s.http("GET", "/metrics")[2].decode()
        self.assertIn('taskgate_daemon_info{daemon="%s",store="%s"} 1'
                      % (body["daemon"], BACKEND), metrics)
        # A new daemon on the same store is another daemon.
        s.stop_daemon()
        s._start_daemon()
        self.assertNotEqual(json.loads(s.http("GET", "/healthz")[2])["daemon"], body["daemon"])

    @sqlite_only
    def test_healthz_follows_the_database(self):
        s = self.stack()
        status, _, body = s.http("GET", "/healthz")
        self.assertEqual(status, 200, body)
        # The database file is replaced by something that is not a database.
        shutil.move(s.db_path, s.db_path + ".moved")
        with open(s.db_path, "wb") as f:
            f.write(b"this is not a database" * 100)
        status, headers, body = s.http("GET", "/healthz")
        self.assertEqual(status, 503, body)
        self.assertIn(b'"type":"error"', body)
        self.assertIn(b"not a database", body)
        # And back.
        os.replace(s.db_path + ".moved", s.db_path)
        status, _, body = s.http("GET", "/healthz")
        self.assertEqual(status, 200, body)

    @pg_only
    def test_healthz_follows_the_server(self):
        s = self.stack()
        self.assertEqual(s.http("GET", "/healthz")[0], 200)
        for mode in ("fast", "immediate"):
            with self.subTest(mode=mode):
                with s.pg_server_down(mode):
                    status, _, body = s.http("GET", "/healthz")
                    self.assertEqual(status, 503, body)
                    self.assertIn(b'"type":"error"', body)
                    self.assertIn(b"the database cannot be reached: connect to PostgreSQL", body)
                # And back, with no restart of the daemon.
                status, _, body = s.http("GET", "/healthz")
                self.assertEqual(status, 200, body)

    @pg_only
    def test_healthz_is_ok_again_once_the_server_is_back_after_a_failed_write(self):
        # A write that failed while the server was down is the last write the daemon knows
        # of; once the server answers again /healthz must say so at once, not only after
        # some later write happens to succeed (an idle daemon may make none for minutes).
        s = self.stack()
        s.add_team("ops", "par-ops-key", preset={"processor": "core"})
        token, _ = s.issue_token("ops")
        with s.pg_server_down("immediate"):
            status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
            self.assertEqual(status, 503, answer)
            # The run tracker's own writes (it looks for groups to follow) fail too.
            deadline = time.monotonic() + 15
            while "run tracking: connect to PostgreSQL" not in s.daemon_log():
                self.assertLess(time.monotonic(), deadline, "the tracker wrote nothing")
                time.sleep(0.1)
        status, _, body = s.http("GET", "/healthz")
        self.assertEqual(status, 200, body)
        status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, answer)

    def public_health(self, s):
        """/healthz as a client on another machine sees it. nginx listens on 127.0.0.1 only,
        so the client connects from 127.0.0.2: on Linux all of 127/8 reaches loopback, and
        nginx's /metrics allow-list and the daemon count only 127.0.0.1 and ::1 as local."""
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10,
                                          source_address=("127.0.0.2", 0))
        try:
            conn.request("GET", "/healthz", headers={"Accept": "application/json",
                                                     "X-Forwarded-For": "127.0.0.1"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        s.record_answer("public /healthz", data)
        return resp.status, json.loads(data.decode("utf-8"))

    def test_an_unsafe_key_file_stops_submissions_and_is_told_without_its_path(self):
        s = self.stack()
        s.add_team("ops", "par-ops-key", preset={"processor": "core"})
        token, _ = s.issue_token("ops")
        self.assertEqual(self.public_health(s)[0], 200)
        key = s.key_file_path
        os.chmod(key, 0o644)
        try:
            status, body = self.public_health(s)
            self.assertEqual(status, 503, body)
            msg = body["error"]["message"]
            self.assertEqual(msg, "the key file has unsafe permissions")
            self.assertNotIn("/", msg)
            # Loopback clients and the log get the details.
            status, local, _ = s.json_req("GET", "/healthz")
            self.assertEqual(status, 503, local)
            self.assertIn(key, local["error"]["message"])
            self.assertIn("chmod 600", local["error"]["message"])
            self.assertIn(key, s.daemon_log())
            # As the README says: no submission while the key file is unsafe.
            s.sim_clear()
            status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
            self.assertEqual(status, 503, body)
            self.assertEqual(s.sim_requests(), [])
            status, body, _ = s.json_req("POST", "/v1/tasks/groups", {}, token=token)
            self.assertEqual(status, 503, body)
            self.assertEqual(s.sim_requests(), [])
        finally:
            os.chmod(key, 0o600)
        self.assertEqual(self.public_health(s)[0], 200)
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
        self.assertEqual(status, 200, body)

    @sqlite_only
    def test_a_database_problem_is_told_without_its_path(self):
        s = self.stack()
        shutil.move(s.db_path, s.db_path + ".moved")
        with open(s.db_path, "wb") as f:
            f.write(b"this is not a database" * 100)
        try:
            status, body = self.public_health(s)
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["message"], "the database cannot be read")
        finally:
            os.replace(s.db_path + ".moved", s.db_path)

    @pg_only
    def test_a_server_problem_is_told_without_its_address(self):
        """The URI names the server and may hold a password: neither reaches a client. (The
        test server trusts its socket's clients, so it ignores the password.)"""
        s = self.stack()
        password = "pg-password-5e2b7c91d4"
        s.stop_daemon()
        s.extra_conf["database"] = s.pg_dsn + "&password=" + password
        s._write_conf()
        s._start_daemon()
        s.add_team("ops", "par-ops-key", preset={"processor": "core"})
        token, _ = s.issue_token("ops")
        with s.pg_server_down():
            status, body = self.public_health(s)
            self.assertEqual(status, 503, body)
            self.assertEqual(body["error"]["message"], "the database cannot be reached")
            # Loopback clients and the log get the details, which name the socket (as
            # SQLite's name the file) but never the password.
            status, local, _ = s.json_req("GET", "/healthz")
            self.assertEqual(status, 503, local)
            self.assertIn(pg_server().socket_dir, local["error"]["message"])
            status, answer, _ = s.json_req("POST", "/v1/runs", {"inputs": ["q"]}, token=token)
            self.assertEqual(status, 503, answer)
            for where, text in (("/healthz", json.dumps(local)),
                                ("a submission's answer", json.dumps(answer)),
                                ("the daemon's log", s.daemon_log())):
                self.assertNotIn(password, text, where)
                self.assertNotIn("postgresql://", text, where)
        self.assertEqual(self.public_health(s)[0], 200)

    @sqlite_only
    def test_healthz_when_the_database_is_gone(self):
        s = self.stack()
        os.remove(s.db_path)
        status, _, body = s.http("GET", "/healthz")
        self.assertEqual(status, 503, body)

    @pg_only
    def test_healthz_when_the_server_database_is_gone(self):
        s = self.stack()
        self.assertEqual(s.http("GET", "/healthz")[0], 200)
        s.scan_on_stop = False  # nothing left to scan
        pg_server().psql('DROP DATABASE "%s" WITH (FORCE)' % s.pg_dbname, dbname="postgres")
        status, _, body = s.http("GET", "/healthz")
        self.assertEqual(status, 503, body)
        self.assertIn(b"the database cannot be reached", body)
        self.assertIn(b"does not exist", body)


if __name__ == "__main__":
    unittest.main()
