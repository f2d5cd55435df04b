"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, the server
listening on a unix socket in that directory only (no TCP), one database, trust
authentication, stopped and removed at the end.

    from pgserver import PgServer, pg_bindir
    with PgServer() as pg:              # or pg = PgServer(); pg.start(); ...; pg.stop()
        pg.psql("SELECT 1")
        pg.apply_migrations("sql/postgres")   # what `taskgate init` does, through psql
        conf["database"] = pg.dsn      # postgresql:///taskgate?host=/tmp/tg-pg-x&user=taskgate

PostgreSQL refuses to run as root: when the tests run as root, initdb and the server run as
an unprivileged user (TG_PG_OS_USER, default nobody) through runuser, and own the directory;
the clients (psql, the daemon) still run as the caller and connect over the socket as the
database superuser named by `user`. The binaries come from TG_PG_BINDIR, else from
`pg_config --bindir`, else from the newest /usr/lib/postgresql/*/bin; pg_bindir() says None
when there are none, for a test to skip."""

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from urllib.parse import quote

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")


def _has_tools(d):
    return bool(d) and all(os.access(os.path.join(d, t), os.X_OK) for t in SERVER_TOOLS)


def pg_bindir():
    """The directory holding initdb, pg_ctl and postgres, or None."""
    d = os.environ.get("TG_PG_BINDIR")
    if d:
        return d if _has_tools(d) else None
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                           timeout=10).stdout.strip()
        if _has_tools(d):
            return d
    except (OSError, subprocess.SubprocessError):
        pass

    def version(path):
        m = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(m.group(1)) if m else -1
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_tools(d):
            return d
    return None


def psql_path(bindir=None):
    """psql: the server's own when it is there, else the one on PATH."""
    if bindir and os.access(os.path.join(bindir, "psql"), os.X_OK):
        return os.path.join(bindir, "psql")
    return shutil.which("psql")


def client_env():
    """Our environment without the libpq variables (PGHOST, PGUSER, ...): the DSN says all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class PgError(RuntimeError):
    pass


class PgServer:
    """One PostgreSQL server in a temporary directory. Parameters:
    base     where to make the directory (default: the system's temporary directory; kept
             short, since a unix socket's path is limited to about 100 bytes)
    dbname   the database created at start; user: the superuser's name
    fsync    False (default) for speed: a test server need not survive a power cut
    settings more postgresql.conf settings, e.g. {"max_connections": 200}
    keep     leave the directory (data and server.log) after stop()"""

    def __init__(self, base=None, dbname="taskgate", user="taskgate", fsync=False,
                 settings=None, keep=False):
        self.base = base
        self.dbname = dbname
        self.user = user
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.keep = keep
        self.bindir = pg_bindir()
        self.dir = None
        self.running = False
        self.os_user = None

    # ---- paths and addresses ------------------------------------------------------------

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    @property
    def socket_dir(self):
        return self.dir

    @property
    def port(self):
        """The server's port: its socket's name (DIR/.s.PGSQL.PORT), and its TCP port when
        settings make it listen on one."""
        return int(self.settings.get("port", 5432))

    def dsn_for(self, dbname):
        return "postgresql:///%s?host=%s&port=%d&user=%s" % (
            quote(dbname, safe=""), quote(self.socket_dir, safe=""), self.port,
            quote(self.user, safe=""))

    def tcp_dsn_for(self, dbname, host="127.0.0.1"):
        """The same database over TCP, for a server started with listen_addresses set."""
        return "postgresql://%s@%s:%d/%s" % (quote(self.user, safe=""), host, self.port,
                                             quote(dbname, safe=""))

    @property
    def dsn(self):
        """The libpq URI of the database: postgresql:///taskgate?host=DIR&user=taskgate."""
        return self.dsn_for(self.dbname)

    def log(self, lines=40):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # ---- start and stop -----------------------------------------------------------------

    def _as_owner(self, argv):
        return (["runuser", "-u", self.os_user, "--"] + argv) if self.os_user else argv

    def _run_owner(self, argv, what, timeout=120):
        r = subprocess.run(self._as_owner(argv), capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir, env=client_env())
        if r.returncode != 0:
            raise PgError("%s exited %d\nstdout: %s\nstderr: %s\nserver log:\n%s"
                          % (what, r.returncode, r.stdout, r.stderr, self.log()))
        return r

    def start(self):
        if self.bindir is None:
            raise PgError("no PostgreSQL server binaries (initdb, pg_ctl, postgres): install "
                          "Debian's postgresql or set TG_PG_BINDIR")
        self.dir = tempfile.mkdtemp(prefix="tg-pg-", dir=self.base)
        if len(self.dir) > 80:  # the socket's path, DIR/.s.PGSQL.5432, must fit in sun_path
            shutil.rmtree(self.dir)
            self.dir = tempfile.mkdtemp(prefix="tg-pg-")
        try:
            if os.geteuid() == 0:
                import pwd
                self.os_user = os.environ.get("TG_PG_OS_USER", "nobody")
                pw = pwd.getpwnam(self.os_user)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            self._run_owner([os.path.join(self.bindir, "initdb"), "-D", self.data_dir,
                             "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C",
                             "--no-sync", "--no-instructions"], "initdb")
            conf = {
                "listen_addresses": "''",
                "unix_socket_directories": "'%s'" % self.socket_dir.replace("'", "''"),
                "unix_socket_permissions": "0700",
                "fsync": "on" if self.fsync else "off",
                "full_page_writes": "on" if self.fsync else "off",
                "logging_collector": "off",
                "log_min_messages": "warning",
            }
            conf.update({k: str(v) for k, v in self.settings.items()})
            # Appended by the server's owner: the data directory is its alone.
            text = "".join("%s = %s\n" % kv for kv in conf.items())
            r = subprocess.run(self._as_owner(
                ["sh", "-c", 'cat >> "$1"', "sh", os.path.join(self.data_dir, "postgresql.conf")]),
                input=text, capture_output=True, text=True, timeout=30, cwd=self.dir)
            if r.returncode != 0:
                raise PgError("cannot write postgresql.conf: %s" % r.stderr)
            self.server_start()
            self.psql("CREATE DATABASE %s" % quote_ident(self.dbname), dbname="postgres")
        except BaseException:
            self.stop()
            raise
        return self

    def server_start(self):
        """Starts the server on the existing data directory (after server_stop())."""
        self._run_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data_dir,
                         "-l", self.log_path, "-w", "-t", "60", "start"], "pg_ctl start")
        self.running = True

    def server_stop(self, mode="fast"):
        """Stops the server, keeping its data: mode "fast" (disconnects clients, clean),
        "immediate" (like a crash), or "smart" (waits for clients to leave)."""
        if self.running:
            self.running = False
            self._run_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.data_dir,
                             "-m", mode, "-w", "-t", "60", "stop"], "pg_ctl stop")

    def stop(self):
        """Stops the server and, unless keep, removes its directory."""
        try:
            self.server_stop()
        except (PgError, subprocess.SubprocessError):
            pass
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()

    # ---- clients ------------------------------------------------------------------------

    def psql(self, sql=None, file=None, dbname=None, args=(), check=True, quiet=True,
             timeout=120):
        """Runs psql -X -v ON_ERROR_STOP=1 on sql (stdin) or file, with -q unless not quiet
        (then stdout carries the command tags, "UPDATE 2"); returns the CompletedProcess
        (stdout, stderr as text); raises PgError on failure when check."""
        argv = [psql_path(self.bindir), "-X", "-v", "ON_ERROR_STOP=1",
                "-d", self.dsn_for(dbname or self.dbname)] + (["-q"] if quiet else []) + list(args)
        if file is not None:
            argv += ["-f", file]
        r = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout,
                           env=client_env())
        if check and r.returncode != 0:
            raise PgError("psql exited %d\nstdout: %s\nstderr: %s"
                          % (r.returncode, r.stdout, r.stderr))
        return r

    def apply_migrations(self, sql_dir, upto=None, dbname=None):
        """Applies sql_dir/NNN_*.sql newer than the database's schema_version, each in one
        transaction with the version update, under the migration advisory lock: what
        `taskgate init` does on PostgreSQL. Returns the version reached."""
        files = sorted(f for f in os.listdir(sql_dir) if re.match(r"^\d{3}_.*\.sql$", f))
        have = self.schema_version(dbname)
        for name in files:
            v = int(name[:3])
            if v <= have or (upto is not None and v > upto):
                continue
            script = ("BEGIN;\n"
                      "SELECT pg_advisory_xact_lock(%d);\n"
                      "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);\n"
                      "\\i %s\n"
                      "DELETE FROM schema_version;\n"
                      "INSERT INTO schema_version VALUES (%d);\n"
                      "COMMIT;\n" % (MIGRATION_LOCK, quote_psql(os.path.join(sql_dir, name)), v))
            self.psql(script, dbname=dbname)
            have = v
        return have

    def schema_version(self, dbname=None):
        """The database's schema version: schema_version's row, 0 before any migration."""
        r = self.psql("SELECT to_regclass('schema_version') IS NOT NULL",
                      dbname=dbname, args=("-At",))
        if r.stdout.strip() != "t":
            return 0
        r = self.psql("SELECT coalesce(max(version), 0) FROM schema_version",
                      dbname=dbname, args=("-At",))
        return int(r.stdout.strip())


# The advisory lock key every migrator takes, the C store's (gateway/store/postgres/), so that
# a psql-driven migration and `taskgate init` exclude each other too.
MIGRATION_LOCK = 7470617367617465


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_psql(path):
    return "'%s'" % path.replace("\\", "\\\\").replace("'", "\\'")


def wait_ready(pg, timeout=30):
    """Waits until the server answers (after a restart, say)."""
    deadline = time.monotonic() + timeout
    while True:
        r = pg.psql("SELECT 1", check=False)
        if r.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise PgError("the server did not come back: %s" % r.stderr)
        time.sleep(0.1)
