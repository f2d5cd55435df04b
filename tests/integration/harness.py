"""Integration-test harness for taskgate: starts the upstream simulator, the daemon and a
real nginx (with the site `taskgate nginx-site` renders) on free loopback ports in a temporary
directory, offers helpers to drive them, and always stops them again. Standard library only.

Environment (set by ctest, see tests/CMakeLists.txt):
  TG_BIN         the taskgate binary        TG_SIM        the upstream simulator
  TG_NGINX       nginx                      TG_SOURCE_DIR the source tree
  TG_TEST_OUT    where temporary directories go (optional; the system temp dir otherwise)
  TG_TEST_DATABASE  "sqlite" (default: a file in each stack's directory) or "postgresql": one
                 throwaway server per test process (pgserver.py), a database of its own per
                 stack. Tests of what only a file can do (its permissions, a full disk) say
                 so with @sqlite_only.

Tests read the daemon's database with Stack.db() and write to it (rows in the schema's
shape, a key an older version stored in clear) through Stack.db_connect(), a session with
sqlite3's small surface on either backend; DB_ERRORS and DB_INTEGRITY are what its refusals
raise.

Typical use:

    with Stack(keys=["par-key-a"]) as s:
        s.add_team("a", "par-key-a", preset={"processor": "core"})
        token, token_id = s.issue_token("a")
        status, body, headers = s.json_req("POST", "/v1/runs", {"inputs": ["x"]}, token=token)

A Stack keeps its directory (logs, database, configs) when the test failed and removes it
otherwise. Inside unittest, StackTestCase.stack() ties that decision to the test's outcome,
which also catches failures reported through subTest.
"""

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

__all__ = ["Stack", "StackError", "StackTestCase", "SecretLeak", "env_path", "free_port",
           "tail", "secret_forms", "strip_run_tags", "RUN_TAG_RE", "BACKEND", "sqlite_only",
           "pg_server", "db_connect", "DB_ERRORS", "DB_INTEGRITY", "PgStatementError",
           "PgIntegrityError"]

# Which store the stacks use (TG_TEST_DATABASE, see the module's text).
BACKEND = "postgresql" if os.environ.get("TG_TEST_DATABASE", "sqlite").startswith("postgres") \
    else "sqlite"
# A test of the SQLite file itself (its permissions, its size, its WAL): skipped on PostgreSQL.
sqlite_only = unittest.skipIf(BACKEND != "sqlite", "about the SQLite file; the store is PostgreSQL")

_pg = None
_pg_databases = 0


def pg_server():
    """The test process's PostgreSQL server, started on first use and stopped at exit."""
    global _pg
    if _pg is None:
        import atexit
        from pgserver import PgServer
        _pg = PgServer(settings={"max_connections": 300})
        _pg.start()
        atexit.register(_pg.stop)
    return _pg


class Row(tuple):
    """A result row read by index or by column name, like sqlite3.Row."""

    def __new__(cls, pairs):
        r = super().__new__(cls, [v for _, v in pairs])
        r._names = [k for k, _ in pairs]
        return r

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self._names)


TOKEN_RE = re.compile(r"^tg_[0-9a-f]{48}$")
# The gateway's run tag in each forwarded run's metadata: submission, call seq, first input,
# inputs in the call.
RUN_TAG_RE = re.compile(r"^(sub_[0-9a-f]{32})\.(\d+)\.(\d+)\.(\d+)$")
TOKEN_ID_RE = re.compile(r"id=(tok_[0-9a-f]+)")
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


class StackError(RuntimeError):
    """A part of the stack failed to start or to answer; the message has the log tail."""


class SecretLeak(AssertionError):
    """An upstream key or a token the stack handed out was found where it must never be:
    a log, the database file, a config, an HTTP answer or a CLI output. The message names
    the secret by a label and the place, never by its value."""


def secret_forms(secret, encoded=True):
    """The byte strings that betray secret: itself and, when encoded is true, its hex (both
    cases) and its base64 (standard and URL-safe) at each of the three alignments a value
    can have inside a longer base64 text (the characters that depend on neighbours are
    dropped). Each form is (name, bytes)."""
    raw = secret.encode("utf-8")
    forms = [("clear", raw)]
    if not encoded:
        return forms
    forms += [("hex", raw.hex().encode()), ("HEX", raw.hex().upper().encode())]
    for shift in range(3):
        for name, enc in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = enc(b"\0" * shift + raw + b"\0\0\0")
            inner = text[4 if shift else 0:-4 - 4]
            if len(inner) >= 16:
                forms.append((name, inner.rstrip(b"=")))
    return forms


def env_path(name):
    """The path in environment variable name; raises a clear error when it is not set."""
    value = os.environ.get(name)
    if not value:
        raise StackError(
            "environment variable %s is not set (run through ctest, or export TG_BIN, "
            "TG_SIM, TG_NGINX and TG_SOURCE_DIR)" % name)
    return value


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    """The last lines of a text file, or a note that it is missing."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return "(%s: %s)" % (path, e.strerror)
    return "\n".join(text.splitlines()[-lines:]) or "(%s is empty)" % path


def strip_run_tags(reqs):
    """The simulator's request log with the gateway's run tag (metadata key "taskgate")
    checked and taken out of every add-runs input, and a metadata left empty by that
    removed: what the request was before the gateway tagged it. Raises ValueError on a
    malformed tag."""
    for r in reqs:
        body = r.get("body")
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list):
            continue
        for run in inputs:
            meta = run.get("metadata") if isinstance(run, dict) else None
            if not isinstance(meta, dict) or "taskgate" not in meta:
                continue
            if not RUN_TAG_RE.match(str(meta["taskgate"])):
                raise ValueError("malformed run tag %r" % meta["taskgate"])
            del meta["taskgate"]
            if not meta:
                del run["metadata"]
    return reqs


def fcgi_exchange(sock_path, params, stdin_chunks, probe_close=False):
    """One request straight over the daemon's FastCGI socket (no nginx), sent as nginx
    sends it without keeping the connection: params, then stdin_chunks as stdin records
    (end them with b"" for the end of stdin). Reads the answer until the daemon stops
    sending. Returns (its stdout bytes, whether FCGI_END_REQUEST came, closed): with
    probe_close, closed says whether, our side left open, the daemon had closed the
    connection 0.3 s later (a write to it fails) rather than only shut its sending side
    down while it waits for ours to close; otherwise None."""
    def record(kind, content):
        pad = -len(content) % 8
        return (bytes([1, kind]) + (1).to_bytes(2, "big") + len(content).to_bytes(2, "big")
                + bytes([pad, 0]) + content + b"\0" * pad)

    def length(n):
        return bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")

    pairs = b"".join(length(len(k.encode())) + length(len(v.encode())) + k.encode() + v.encode()
                     for k, v in params.items())
    out = record(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + record(4, pairs) + record(4, b"")
    out += b"".join(record(5, chunk) for chunk in stdin_chunks)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(out)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        stdout, ended = b"", False
        while len(buf) >= 8:
            kind, clen, pad = buf[1], int.from_bytes(buf[4:6], "big"), buf[6]
            if kind == 6:  # FCGI_STDOUT
                stdout += buf[8:8 + clen]
            elif kind == 3:  # FCGI_END_REQUEST
                ended = True
            buf = buf[8 + clen + pad:]
        closed = None
        if probe_close:
            time.sleep(0.3)
            try:
                s.send(b"x")
                closed = False
            except (BrokenPipeError, ConnectionResetError):
                closed = True
    return stdout, ended, closed


def child_env():
    """The environment for the daemon and the CLI: ours without TASKGATE_* overrides, so a
    developer's shell cannot change what the generated config says."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}


# ---- database sessions: Stack.db() on PostgreSQL, db_connect() -------------------------


def _pg_literal(v):
    """A Python value as a PostgreSQL literal: the tests' queries carry their parameters in
    the text, since psql binds none."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "'\\x%s'::bytea" % bytes(v).hex()
    return "'" + str(v).replace("'", "''") + "'"


# What _pg_bind looks at: quoted text and comments (left alone), ? and :name marks.
_SQL_TOKEN_RE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*"""
                           r"""|\?|(?<![:\w]):([A-Za-z_]\w*)""")


def _pg_bind(sql, params):
    """sql with its ? marks (params a sequence) or :name marks (params a mapping) replaced
    by literals, as sqlite3 binds them; raises ValueError when they do not match."""
    named = hasattr(params, "keys")
    values = iter(() if named else params)
    used = []

    def one(m):
        text = m.group(0)
        if text == "?" and not named:
            try:
                v = next(values)
            except StopIteration:
                raise ValueError("more ? marks than parameters in %r" % sql) from None
            used.append(v)
            return _pg_literal(v)
        if m.group(1) and named:
            if m.group(1) not in params:
                raise ValueError("no parameter :%s for %r" % (m.group(1), sql))
            return _pg_literal(params[m.group(1)])
        return text
    out = _SQL_TOKEN_RE.sub(one, sql)
    if not named and len(used) != len(params):
        raise ValueError("%d ? marks, %d parameters in %r" % (len(used), len(params), sql))
    return out


def _pg_rows_query(sql):
    """A query whose rows psql prints as one JSON array (names, order, types and NULLs
    kept); the line break lets the query end in a comment."""
    return "SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM (\n%s\n) q" % sql


def _pg_parse_rows(text):
    return [Row(list(r.items())) for r in json.loads(text.strip() or "[]",
                                                     object_pairs_hook=dict)]


class PgStatementError(Exception):
    """A statement PostgreSQL refused in a db_connect() session: sqlstate is its code
    ("23514"), str() its message, as sqlite3.Error's is SQLite's."""

    def __init__(self, sqlstate, message):
        super().__init__(message)
        self.sqlstate = sqlstate


class PgIntegrityError(PgStatementError):
    """A constraint refused the statement (SQLSTATE class 23: a CHECK, UNIQUE, FOREIGN KEY,
    or one of the append-only triggers, which raise 23000): sqlite3.IntegrityError's twin."""


# What a db_connect() session raises when the database refuses a statement, and the part of
# it that is a constraint's (an append-only trigger's, a CHECK's) refusal.
DB_ERRORS = (sqlite3.Error, PgStatementError)
DB_INTEGRITY = (sqlite3.IntegrityError, PgIntegrityError)


class PgSessionEnded(StackError):
    """The psql of a PgSession ended: it lost its server (stopped, restarted) or could not
    reach it."""


class _SqliteSession(sqlite3.Connection):
    """sqlite3's connection whose `with` block closes it (as a PgSession's does), instead
    of committing and staying open."""

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


class PgCursor:
    """The result of one PgSession.execute(): rows (Row), rowcount as sqlite3 counts it."""

    def __init__(self, rows, rowcount):
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class PgSession:
    """One open psql on a PostgreSQL database, with the part of sqlite3's connection the
    tests use: execute(sql, params) -> cursor (fetchone, fetchall, iteration, rowcount),
    close(), and a `with` block that closes it. Statements run one at a time in autocommit,
    as sqlite3 with isolation_level=None; BEGIN opens a transaction. As in SQLite, a refused
    statement inside a transaction is undone alone and the transaction goes on (psql's
    ON_ERROR_ROLLBACK); it raises PgIntegrityError for a constraint, else PgStatementError.

    The dialect is translated only where SQLite's spelling has no other meaning: ? and :name
    parameters become literals, BEGIN IMMEDIATE/EXCLUSIVE/DEFERRED is BEGIN, and the PRAGMAs
    that set what PostgreSQL always does or has no file for (foreign_keys, wal_checkpoint)
    do nothing; any other PRAGMA raises ValueError. SELECT, WITH and VALUES, and statements
    with RETURNING, give Rows (bytea as its '\\x...' text); anything else that prints
    (EXPLAIN, SHOW) gives one single-column Row per line.

    read_only makes every transaction read-only (Stack.db's reads). One thread at a time;
    PgSessionEnded when psql ended (its server went away)."""

    PRAGMA_NOOPS = ("foreign_keys", "wal_checkpoint")
    TIMEOUT = 60  # seconds for one statement's answer

    def __init__(self, dsn, read_only=False):
        from pgserver import client_env, pg_bindir, psql_path
        psql = psql_path(pg_bindir())
        if psql is None:
            raise StackError("no psql: install Debian's postgresql-client")
        self.dsn = dsn
        self._statements = 0
        self._buf = b""
        self._proc = subprocess.Popen(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0", "-v", "ON_ERROR_ROLLBACK=on",
             "-d", dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=client_env())
        try:
            self._run("SET default_transaction_read_only = %s" % ("on" if read_only else "off"))
        except BaseException:
            self.close()
            raise

    def execute(self, sql, params=()):
        text = sql.strip().rstrip(";").strip()
        head = text.split(None, 1)[0].upper() if text else ""
        if head == "PRAGMA":
            name = re.match(r"(?i)PRAGMA\s+(\w+)", text)
            if name and name.group(1).lower() in self.PRAGMA_NOOPS:
                return PgCursor([], -1)
            raise ValueError("%r has no PostgreSQL twin here: ask per backend" % sql)
        if re.match(r"(?i)BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b", text):
            text = "BEGIN"
        returning = re.search(r"(?i)\bRETURNING\b", text)
        text = _pg_bind(text, params)
        if head in ("SELECT", "WITH", "VALUES"):
            rows = _pg_parse_rows(self._run(_pg_rows_query(text))[0])
            return PgCursor(rows, -1)
        if returning:
            rows = _pg_parse_rows(self._run(
                "WITH q AS (\n%s\n) SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM q"
                % text)[0])
            return PgCursor(rows, len(rows))
        out, count = self._run(text)
        return PgCursor([Row([("line", ln)]) for ln in out.splitlines()], count)

    def _run(self, text):
        """Sends one statement, then has psql print a marker, the statement's SQLSTATE and
        row count, its error message and the marker again; returns (what the statement
        printed, its row count) or raises what it was refused for."""
        if self._proc is None:
            raise sqlite3.ProgrammingError("the session is closed")
        self._statements += 1
        mark = "@@tg-session-%d@@" % self._statements
        # The ; on a line of its own: the statement may end in a -- comment.
        try:
            self._proc.stdin.write(("%s\n;\n\\echo %s :SQLSTATE :ROW_COUNT\n"
                                    "\\echo :LAST_ERROR_MESSAGE\n\\echo %s\n"
                                    % (text, mark, mark)).encode("utf-8"))
            self._proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise PgSessionEnded("psql on %s ended" % self.dsn) from None
        out = []
        line = self._readline()
        while not line.startswith(mark + " "):
            out.append(line)
            line = self._readline()
        state, count = line.split()[1:3]
        message = []
        line = self._readline()
        while line != mark + "\n":
            message.append(line)
            line = self._readline()
        if state != "00000":
            cls = PgIntegrityError if state.startswith("23") else PgStatementError
            raise cls(state, "".join(message).strip())
        return "".join(out), int(count) if count.isdigit() else -1

    def _readline(self):
        deadline = time.monotonic() + self.TIMEOUT
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([self._proc.stdout], [], [], max(left, 0))[0]
            chunk = os.read(self._proc.stdout.fileno(), 65536) if ready else None
            if not chunk:
                self.close()
                if ready:
                    raise PgSessionEnded("psql on %s ended" % self.dsn)
                raise StackError("psql on %s gave no answer within %d s"
                                 % (self.dsn, self.TIMEOUT))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8") + "\n"

    def close(self):
        """Ends psql; an open transaction is rolled back, as closing a sqlite3 connection
        does."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)
        proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


def db_connect(database):
    """A write-capable session on database, a config's database value: a PostgreSQL URI
    (a PgSession) or a SQLite file (a sqlite3 connection in autocommit, foreign keys on as
    the daemon has them, rows as sqlite3.Row). Both run one statement per execute(); the
    caller opens transactions with BEGIN and closes the session."""
    if database.startswith(("postgresql:", "postgres:")):
        return PgSession(database)
    conn = sqlite3.connect(database, timeout=10, isolation_level=None, factory=_SqliteSession)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Stack:
    """The simulator, the daemon and nginx, running in one temporary directory.

    keys:                the Parallel keys the simulator accepts (none: it accepts any key)
    upstream_timeout_ms: the daemon's upstream_timeout_ms
    conf:                extra config keys (dict), written after the standard ones
    sim, daemon, nginx:  which parts to start (a CLI-only test needs neither daemon nor nginx)
    sim_args:            more arguments for the simulator (e.g. "--webhook-secret", S)
    name:                a prefix for the directory name, to find kept logs

    The daemon's run tracker reads the upstream on its own (every group's event stream), so
    a test that counts the simulator's requests or injects faults would see its reads too:
    it is off (track_groups_max = 0) unless a test sets track_groups_max in conf.
    """

    def __init__(self, keys=(), upstream_timeout_ms=5000, conf=None, sim=True, daemon=True,
                 nginx=True, name="tg", sim_args=()):
        self.keys = list(keys)
        self.sim_args = list(sim_args)
        self.upstream_timeout_ms = upstream_timeout_ms
        self.extra_conf = dict(conf or {})
        self.want_sim = sim
        self.want_daemon = daemon
        self.want_nginx = nginx and daemon
        self.name = name
        self.bin = env_path("TG_BIN")
        self.sim_bin = env_path("TG_SIM") if sim else None
        self.nginx_bin = env_path("TG_NGINX") if self.want_nginx else None
        self.source_dir = env_path("TG_SOURCE_DIR") if self.want_nginx else None
        self.dir = None
        self.sock_dir = None  # a short directory for the socket when self.dir is too deep
        self.port = None
        self.sim_port = None
        self.sim_proc = None
        self.daemon_proc = None
        self.nginx_proc = None
        self.daemon_exit = None  # the daemon's exit code once it has ended
        self._pg_reader = None   # the PgSession of db() on PostgreSQL, once used
        self._pg_reader_lock = threading.Lock()
        self.started = False
        self.stopped = False
        # The secret scan (see scan_secrets): every upstream key and token this stack
        # handed out, and what its users were answered.
        self.secrets = {}        # secret -> label ("key 1 sha256:…", "token tok_…")
        self.secret_homes = {}   # secret -> files (relative) meant to hold it
        self.answers = []        # (what, bytes): HTTP answers through nginx, CLI outputs
        self.answers_size = 0
        self.scan_on_stop = True
        for key in self.keys:
            self.add_secret(key, "key")

    # ---- paths --------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def conf_path(self):
        return self.path("taskgate.conf")

    @property
    def db_path(self):
        return self.path("taskgate.db")

    @property
    def database(self):
        """The config's database value: the SQLite file, or this stack's PostgreSQL URI."""
        return self.pg_dsn if BACKEND == "postgresql" else self.db_path

    @property
    def sock_path(self):
        return os.path.join(self.sock_dir or self.dir, "taskgate.sock")

    @property
    def daemon_log_path(self):
        return self.path("taskgate.log")

    def daemon_log(self):
        """Everything the daemon wrote to stderr so far."""
        with open(self.daemon_log_path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()

    # ---- start --------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop(keep=exc_type is not None)
        return False

    def start(self):
        """Starts every part; on any failure stops what did start and raises StackError."""
        if self.started:
            return self
        self.started = True
        out = os.environ.get("TG_TEST_OUT")
        if out:
            os.makedirs(out, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=self.name + "-", dir=out or None)
        os.chmod(self.dir, 0o755)
        if len(os.path.join(self.dir, "taskgate.sock")) > SOCKET_PATH_MAX:
            self.sock_dir = tempfile.mkdtemp(prefix="tgs-")
            os.chmod(self.sock_dir, 0o755)
        try:
            if self.want_sim:
                self._start_sim()
            if BACKEND == "postgresql":
                self._create_pg_database()
            self._write_conf()
            self.cli_ok("init")
            if self.want_daemon:
                self._start_daemon()
            if self.want_nginx:
                self._start_nginx()
        except BaseException:
            self.stop(keep=True)
            raise
        return self

    def _spawn(self, argv, log_name, env=None):
        log = open(self.path(log_name), "ab")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.dir, env=env,
                                    start_new_session=True)
        finally:
            log.close()

    def _start_sim(self):
        port_file = self.path("sim.port")
        argv = [self.sim_bin, "--port", "0", "--port-file", port_file]
        for key in self.keys:
            argv += ["--key", key]
        argv += self.sim_args
        self.sim_proc = self._spawn(argv, "sim.log")
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(port_file, "r") as f:
                    text = f.read().strip()
                if text.isdigit():
                    self.sim_port = int(text)
                    break
            except OSError:
                pass
            if self.sim_proc.poll() is not None:
                raise StackError("the simulator exited with %s before writing its port:\n%s"
                                 % (self.sim_proc.returncode, tail(self.path("sim.log"))))
            if time.monotonic() > deadline:
                raise StackError("the simulator wrote no port file within 10 s:\n%s"
                                 % tail(self.path("sim.log")))
            time.sleep(0.02)

    def _create_pg_database(self):
        global _pg_databases
        pg = pg_server()
        _pg_databases += 1
        self.pg_dbname = "tg_%d_%d" % (os.getpid(), _pg_databases)
        pg.psql('CREATE DATABASE "%s"' % self.pg_dbname, dbname="postgres")
        self.pg_dsn = pg.dsn_for(self.pg_dbname)

    def _write_conf(self):
        upstream = ("http://127.0.0.1:%d" % self.sim_port if self.sim_port
                    else "http://127.0.0.1:9")  # discard port: nothing answers there
        conf = [
            ("listen", self.sock_path),
            ("socket_mode", "0660"),
            ("database", self.database),
            ("upstream_url", upstream),
            ("threads", "8"),
            ("upstream_timeout_ms", str(self.upstream_timeout_ms)),
            ("upstream_connect_timeout_ms", "1000"),
            ("log_level", "debug"),
            ("track_groups_max", "0"),
        ]
        if BACKEND == "postgresql":
            conf.append(("key_file", self.path("taskgate.db.key")))
        keys = dict(conf)
        for k, v in self.extra_conf.items():
            if k in keys:
                conf = [(ck, cv) for ck, cv in conf if ck != k]
            conf.append((k, str(v)))
        with open(self.conf_path, "w") as f:
            f.write("# written by tests/integration/harness.py\n")
            for k, v in conf:
                f.write("%s = %s\n" % (k, v))

    def _start_daemon(self):
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.daemon_exit = None
        try:
            log_start = os.path.getsize(self.daemon_log_path)
        except OSError:
            log_start = 0
        self.daemon_proc = self._spawn([self.bin, "--config", self.conf_path, "serve"],
                                       "taskgate.log", env=child_env())
        # Ready means serving: the socket exists and start-up (settling what a crash left
        # pending) is over, which the daemon says in its log.
        deadline = time.monotonic() + 10
        while True:
            try:
                quiet = self.extra_conf.get("log_level") in ("warn", "error")
                if (stat.S_ISSOCK(os.stat(self.sock_path).st_mode) and
                        (quiet or self._daemon_said("taskgate serving on", log_start))):
                    break
            except OSError:
                pass
            if self.daemon_proc.poll() is not None:
                self.daemon_exit = self.daemon_proc.returncode
                raise StackError("the daemon exited with %s before creating %s:\n%s"
                                 % (self.daemon_exit, self.sock_path,
                                    tail(self.daemon_log_path)))
            if time.monotonic() > deadline:
                raise StackError("the daemon created no socket %s within 10 s:\n%s"
                                 % (self.sock_path, tail(self.daemon_log_path)))
            time.sleep(0.02)

    def _daemon_said(self, text, offset):
        with open(self.daemon_log_path, "rb") as f:
            f.seek(offset)
            return text.encode() in f.read()

    def _site_conf(self):
        """The site `taskgate nginx-site` renders from the daemon's own config, listening
        on this stack's port: what an operator installs, with nothing rewritten."""
        env = child_env()
        env["TASKGATE_NGINX_LISTEN"] = "127.0.0.1:%d" % self.port
        p = subprocess.run([self.bin, "--config", self.conf_path, "nginx-site"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise StackError("taskgate nginx-site failed (%d): %s"
                             % (p.returncode, p.stderr.decode(errors="replace")))
        return p.stdout.decode()

    def _nginx_conf(self):
        d = self.dir
        lines = []
        if os.geteuid() == 0:
            lines.append("user root;")  # so the workers can reach the daemon's socket
        lines += [
            "daemon off;",
            "worker_processes 1;",
            "pid %s/nginx.pid;" % d,
            "error_log %s/nginx-error.log info;" % d,
            # Room for thousands of open streams (each is two connections: the client's
            # and the upstream's).
            "worker_rlimit_nofile 16384;",
            "events { worker_connections 8192; }",
            "http {",
            "    access_log %s/access.log;" % d,
            "    client_body_temp_path %s/tmp/body;" % d,
            "    fastcgi_temp_path %s/tmp/fastcgi;" % d,
            "    proxy_temp_path %s/tmp/proxy;" % d,
            "    uwsgi_temp_path %s/tmp/uwsgi;" % d,
            "    scgi_temp_path %s/tmp/scgi;" % d,
            "    include %s/site.conf;" % d,
            "}",
        ]
        return "\n".join(lines) + "\n"

    def _start_nginx(self):
        for sub in ("body", "fastcgi", "proxy", "uwsgi", "scgi"):
            os.makedirs(self.path("tmp", sub), exist_ok=True)
        last_error = None
        for _attempt in range(3):  # another process may take the port between pick and bind
            self.port = free_port()
            with open(self.path("site.conf"), "w") as f:
                f.write(self._site_conf())
            with open(self.path("nginx.conf"), "w") as f:
                f.write(self._nginx_conf())
            # -e: nginx opens its compiled-in error log before reading the config otherwise.
            argv = [self.nginx_bin, "-p", self.dir + "/", "-c", self.path("nginx.conf"),
                    "-e", self.path("nginx-error.log")]
            self.nginx_proc = self._spawn(argv, "nginx.out")
            deadline = time.monotonic() + 10
            while True:
                if self.nginx_proc.poll() is not None:
                    last_error = StackError(
                        "nginx exited with %s:\n%s\n%s" % (
                            self.nginx_proc.returncode, tail(self.path("nginx.out")),
                            tail(self.path("nginx-error.log"))))
                    self.nginx_proc = None
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise StackError("nginx did not answer on port %d within 10 s:\n%s"
                                     % (self.port, tail(self.path("nginx-error.log"))))
                time.sleep(0.02)
            if "Address already in use" not in str(last_error):
                raise last_error
        raise last_error

    # ---- stop ---------------------------------------------------------------------------

    @staticmethod
    def _end(proc, sig, timeout, group=False):
        """Sends sig to proc, waits up to timeout s, then kills it (its process group when
        group is true: nginx's workers). Returns the exit code."""
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if group:  # nginx's workers too: their group is the master's pid
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        proc.kill()
                else:
                    proc.kill()
                proc.wait(5)
        return proc.returncode

    def stop_daemon(self, timeout=10):
        """SIGTERM, then SIGKILL after timeout s; returns (and keeps) the exit code."""
        if self.daemon_proc is not None:
            self.daemon_exit = self._end(self.daemon_proc, signal.SIGTERM, timeout)
            self.daemon_proc = None
        return self.daemon_exit

    def stop(self, keep=False):
        """Stops nginx, the daemon and the simulator (always, whatever happened before), then
        removes the directory unless keep is true, in which case its path is printed."""
        if self.stopped:
            return
        self.stopped = True
        errors = []
        for step in (lambda: self._end(self.nginx_proc, signal.SIGQUIT, 10, group=True),
                     self.stop_daemon,
                     lambda: self._end(self.sim_proc, signal.SIGTERM, 5)):
            try:
                step()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        self.nginx_proc = self.sim_proc = None
        with self._pg_reader_lock:
            if self._pg_reader is not None:
                self._pg_reader.close()
                self._pg_reader = None
        if self.dir is None:
            return
        leak = None
        if self.scan_on_stop:
            try:
                self.scan_secrets()
            except SecretLeak as e:
                leak, keep = e, True
        if keep:
            sys.stderr.write("\n[harness] kept %s (logs: taskgate.log, sim.log, "
                             "nginx-error.log)\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.sock_dir is not None:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
        if leak is not None:
            raise leak
        if errors:
            raise errors[0]

    # ---- the secret scan ------------------------------------------------------------------

    ANSWERS_MAX = 64 * 1024 * 1024  # answers kept for the scan; past it they are checked at once

    def add_secret(self, secret, kind, homes=()):
        """Registers an upstream key (kind "key"), a token (kind "token") or another secret
        (kind names it: "webhook secret") that must never show up in a log, the database, a
        config, an answer or a CLI output; homes names the files of the stack's directory
        that are meant to hold it (the config that sets a webhook secret)."""
        secret = secret.strip()
        if len(secret) < 8 or secret in self.secrets:
            return
        if kind == "key":
            label = "upstream key %s" % key_fingerprint(secret)
        else:
            label = "%s sha256:%s" % ("token" if kind == "token" else kind,
                                      hashlib.sha256(secret.encode()).hexdigest()[:12])
        self.secrets[secret] = label
        self.secret_homes[secret] = set(homes)

    def record_answer(self, what, data):
        """Keeps an answer (bytes or str) for the scan at stop."""
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not data:
            return
        if self.answers_size + len(data) > self.ANSWERS_MAX:
            self._check_bytes(what, data)
            return
        self.answers.append((what, data))
        self.answers_size += len(data)

    def _forms(self, where=None):
        for secret, label in self.secrets.items():
            if where in self.secret_homes.get(secret, ()):
                continue
            for form, needle in secret_forms(secret, encoded=label.startswith("upstream")):
                yield label, form, needle

    def _check_bytes(self, where, data, found=None):
        """Adds to found (or raises at once) every secret form in data."""
        hits = [] if found is None else found
        for label, form, needle in self._forms(where):
            i = data.find(needle)
            if i >= 0:
                hits.append("%s (%s) in %s at byte %d" % (label, form, where, i))
        if found is None and hits:
            raise SecretLeak("secrets leaked:\n  " + "\n  ".join(hits))
        return hits

    def scan_paths(self):
        """The files the scan reads: everything in the stack's directory (logs, the
        database and its -wal/-shm, configs) except the key files and nginx's buffers of
        client request bodies."""
        key_base = os.path.basename(self.key_file_path)
        for root, dirs, files in os.walk(self.dir):
            if root == self.dir and "tmp" in dirs:
                dirs.remove("tmp")
            for name in files:
                if root == self.dir and (name == key_base or name.startswith(key_base + ".")):
                    continue
                path = os.path.join(root, name)
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path

    def scan_secrets(self):
        """Raises SecretLeak when any registered key or token (in clear; keys also hex and
        base64) is in a file of scan_paths() or a recorded answer."""
        if not self.secrets or self.dir is None:
            return
        hits = []
        for path in self.scan_paths():
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            self._check_bytes(os.path.relpath(path, self.dir), data, hits)
        for what, data in self.answers:
            self._check_bytes(what, data, hits)
        if BACKEND == "postgresql" and getattr(self, "pg_dsn", None):
            self._check_bytes("the PostgreSQL database", self.pg_dump(), hits)
        if hits:
            raise SecretLeak("secrets leaked (the directory is kept):\n  "
                             + "\n  ".join(hits[:50]))

    @property
    def key_file_path(self):
        return self.extra_conf.get("key_file") or self.db_path + ".key"  # also on PostgreSQL

    # ---- the daemon ---------------------------------------------------------------------

    def daemon_signal(self, sig):
        self.daemon_proc.send_signal(sig)

    def daemon_wait(self, timeout=10):
        """The daemon's exit code, or None when it is still running after timeout s."""
        try:
            self.daemon_exit = self.daemon_proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.daemon_exit

    def daemon_alive(self):
        return self.daemon_proc is not None and self.daemon_proc.poll() is None

    def restart_daemon(self):
        """Stops the daemon (SIGTERM) and starts it again on the same socket and database.
        Returns the old process's exit code."""
        code = self.stop_daemon()
        self._start_daemon()
        return code

    # ---- the CLI ------------------------------------------------------------------------

    def cli(self, *args, input=None, timeout=30, config=True):
        """Runs taskgate [--config DIR/taskgate.conf] ARGS; never raises on a failing exit."""
        argv = [self.bin] + (["--config", self.conf_path] if config else []) + list(args)
        if list(args[:2]) in (["team", "add"], ["team", "set-key"]) and input:
            self.add_secret(input.splitlines()[0] if input.strip() else input, "key")
        r = subprocess.run(argv, input=input, capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir, env=child_env())
        what = "the output of taskgate %s" % " ".join(args[:3])
        if list(args[:2]) == ["token", "issue"] and TOKEN_RE.match(r.stdout.strip()):
            self.add_secret(r.stdout.strip(), "token")  # stdout is the one place it belongs
        else:
            self.record_answer(what + " (stdout)", r.stdout)
        self.record_answer(what + " (stderr)", r.stderr)
        return r

    def cli_ok(self, *args, input=None, timeout=30):
        """Like cli() but raises StackError unless the command exits 0."""
        r = self.cli(*args, input=input, timeout=timeout)
        if r.returncode != 0:
            raise StackError("taskgate %s exited %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def add_team(self, name, key, preset=None):
        """Adds a team with its Parallel key (given on stdin) and, when preset is a dict,
        its `default` preset."""
        self.cli_ok("team", "add", name, input=key + "\n")
        if preset is not None:
            self.set_preset(name, "default", preset)

    def set_preset(self, team, name, body):
        self.cli_ok("preset", "set", team, name, "-", input=json.dumps(body))

    def issue_token(self, team, role="submit", label=None, expires=None):
        """Issues a token; returns (token, token_id)."""
        args = ["token", "issue", team, "--role", role]
        if label is not None:
            args += ["--label", label]
        if expires is not None:
            args += ["--expires", expires]
        r = self.cli_ok(*args)
        token = r.stdout.strip()
        if not TOKEN_RE.match(token):
            raise StackError("token issue printed %r on stdout, not a token" % r.stdout)
        m = TOKEN_ID_RE.search(r.stderr)
        if not m:
            raise StackError("token issue wrote no id=tok_… on stderr: %r" % r.stderr)
        return token, m.group(1)

    def revoke_token(self, token_id):
        self.cli_ok("token", "revoke", token_id)

    # ---- HTTP through nginx --------------------------------------------------------------

    @staticmethod
    def _request(port, method, path, body=None, headers=None, timeout=30):
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, hdrs, data
        finally:
            conn.close()

    def http(self, method, path, body=None, headers=None, timeout=30):
        """One request to nginx; returns (status, headers with lowercased names, body bytes)
        whatever the status."""
        status, hdrs, data = self._request(self.port, method, path, body, headers, timeout)
        what = "the answer to %s %s (%d)" % (method, path.split("?")[0][:80], status)
        self.record_answer(what, json.dumps(hdrs) + "\n")
        self.record_answer(what, data)
        return status, hdrs, data

    def json_req(self, method, path, body=None, headers=None, token=None, timeout=30):
        """Sends body as JSON (a str or bytes is sent as is) with token as a Bearer token when
        given; returns (status, parsed JSON or None, headers)."""
        hdrs = {"Accept": "application/json"}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
            if not isinstance(body, (str, bytes)):
                body = json.dumps(body)
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        hdrs.update(headers or {})
        status, rh, data = self.http(method, path, body, hdrs, timeout)
        try:
            parsed = json.loads(data.decode("utf-8")) if data else None
        except (UnicodeDecodeError, ValueError):
            parsed = None
        return status, parsed, rh

    # ---- the simulator's control side -----------------------------------------------------

    def _sim(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        status, _, raw = self._request(self.sim_port, method, path, data, hdrs, 10)
        if status != 200:
            raise StackError("simulator %s %s answered %d: %s"
                             % (method, path, status, raw[:500]))
        return json.loads(raw.decode("utf-8"))

    def sim_requests(self):
        """The API requests the simulator received, oldest first."""
        return self._sim("GET", "/_sim/requests")

    def sim_clear(self):
        self._sim("DELETE", "/_sim/requests")

    def sim_fault(self, **fault):
        return self._sim("POST", "/_sim/faults", fault)

    def sim_clear_faults(self):
        self._sim("DELETE", "/_sim/faults")

    def sim_group(self, group_id):
        """The runs the simulator holds for group_id, in the order they were added."""
        answer = self._sim("GET", "/_sim/groups/" + group_id)
        if isinstance(answer, dict) and "runs" in answer:
            return answer["runs"]
        return answer

    def sim_stats(self):
        return self._sim("GET", "/_sim/stats")

    # ---- the database --------------------------------------------------------------------

    def db(self, sql, params=()):
        """Rows (sqlite3.Row, or Row on PostgreSQL) of one read-only query on the daemon's
        database; params fill the query's ? marks (a sequence) or :name marks (a mapping)."""
        if BACKEND == "postgresql":
            return self._pg_rows(sql, params)
        conn = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def _pg_rows(self, sql, params):
        """On a read-only session kept for the stack's reads (a psql each would cost more
        than most queries), opened again once when it was lost with its server."""
        with self._pg_reader_lock:
            for retry in (False, True):
                try:
                    if self._pg_reader is None:
                        self._pg_reader = PgSession(self.pg_dsn, read_only=True)
                    return self._pg_reader.execute(sql, params).fetchall()
                except PgSessionEnded:
                    self._pg_reader = None
                    if retry:
                        raise

    def db_connect(self):
        """A session that may write to the daemon's database (see db_connect()): for the
        rows a test puts in place in the schema's shape. Close it when done."""
        return db_connect(self.database)

    def pg_dump(self):
        """The stack's whole PostgreSQL database as text (the secret scan reads it)."""
        pg = pg_server()
        r = subprocess.run([os.path.join(pg.bindir, "pg_dump"), "-d", self.pg_dsn],
                           capture_output=True, timeout=60)
        return r.stdout

    def db_value(self, sql, params=()):
        rows = self.db(sql, params)
        return rows[0][0] if rows else None

    # ---- PostgreSQL trouble (the server is the test process's: every stack's) --------------

    @contextlib.contextmanager
    def pg_server_down(self, mode="fast"):
        """Stops the PostgreSQL server (pg_ctl stop -m mode: "fast" or "immediate") for the
        with block, then starts it and waits until it answers, however the block ended."""
        from pgserver import wait_ready
        pg = pg_server()
        pg.server_stop(mode)
        try:
            yield pg
        finally:
            if not pg.running:
                pg.server_start()
            wait_ready(pg)

    def pg_end_sessions(self):
        """Ends every session on this stack's database but the query's own, as an
        administrator's pg_terminate_backend would; returns how many. Returns once those
        sessions are gone: pg_terminate_backend only signals them, and a daemon that
        looked at its connection before the server's farewell arrived would meet the
        end of the session in its next statement instead of reconnecting first."""
        pg = pg_server()
        # In the select list, not the WHERE clause: evaluated only for the rows kept.
        pids = [line.split("|")[0] for line in pg.psql(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
            dbname=self.pg_dbname, args=("-At",)).stdout.split() if line.strip()]
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            left = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s)"
                           % ", ".join(str(int(p)) for p in pids),
                           dbname=self.pg_dbname, args=("-At",)).stdout.strip()
            if left == "0":
                break
            time.sleep(0.02)
        return len(pids)

    def db_tables(self):
        """The names of the database's tables (not views), sorted."""
        if BACKEND == "postgresql":
            sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema ="
                   " 'public' AND table_type = 'BASE TABLE'")
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return sorted(r[0] for r in self.db(sql))

    def db_columns(self, rel):
        """[(name, type)] of a table or view in order; the type as the backend names it
        ("TEXT", "bytea")."""
        if BACKEND == "postgresql":
            return [(r[0], r[1]) for r in self.db(
                "SELECT column_name, data_type FROM information_schema.columns WHERE"
                " table_schema = 'public' AND table_name = ? ORDER BY ordinal_position",
                (rel,))]
        return [(r["name"], r["type"]) for r in self.db("PRAGMA table_info(%s)" % rel)]

    def schema_version(self):
        """The schema version the database is at (SQLite's user_version, PostgreSQL's
        schema_version row)."""
        if BACKEND == "postgresql":
            return self.db_value("SELECT max(version) FROM schema_version")
        return self.db_value("PRAGMA user_version")


class StackTestCase(unittest.TestCase):
    """A TestCase whose stack() starts a Stack that is stopped after the test, keeping its
    directory when the test failed or errored (subTest failures included)."""

    def stack(self, **kwargs):
        kwargs.setdefault("name", self.id().rsplit(".", 1)[-1])
        s = Stack(**kwargs)
        self._stacks.append(s)
        s.start()
        return s

    def run(self, result=None):
        if result is None:
            return super().run(result)
        self._stacks = []
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            for s in reversed(self._stacks):
                try:
                    s.stop(keep=failed)
                except SecretLeak:  # a leak fails the test, whatever else happened
                    result.addFailure(self, sys.exc_info())
                except Exception as e:  # a stop that fails must not hide the test's outcome
                    sys.stderr.write("[harness] stopping %s: %s\n" % (s.dir, e))


def key_fingerprint(key):
    """The fingerprint the schema documents for an upstream key: sha256: + 12 hex digits."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
