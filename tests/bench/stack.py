"""The benchmark's processes: the static upstream stand-in (nginx), the upstream simulator,
the daemon, the bare relay (F) and the front nginx (the real site for G and F, the baseline
for B), each in one working directory on free loopback ports, always stopped again.
Standard library only.

Every process is started in its own session, and its pid and executable are appended to
a pid file, so that tests/bench/run can kill what is left if this Python process dies
without cleaning up.
"""

import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
# The integration tests' harness owns the small helpers both need.
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from harness import TOKEN_RE, child_env, free_port, tail  # noqa: E402


class BenchError(RuntimeError):
    """A part of the benchmark could not run; the message says why (with log tails)."""


def fill(template_name, values):
    """The template tests/bench/NAME with every @KEY@ replaced (nginx uses $ itself)."""
    with open(os.path.join(HERE, template_name), "r") as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError("%s: no value for %s" % (template_name, ", ".join(sorted(set(left)))))
    return text


def vm_status(pid):
    """{'VmHWM': kB, 'VmRSS': kB, 'RssAnon': kB, 'RssFile': kB} of a live process, or {}
    when it is gone. RssFile counts file pages mapped in (SQLite's mmap), once per mapping."""
    out = {}
    try:
        with open("/proc/%d/status" % pid, "r") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[name] = int(rest.split()[0])
    except OSError:
        return {}
    return out


def children(pid):
    """The pids whose parent is pid (from /proc/PID/task/PID/children, or a walk of /proc
    where the kernel lacks that file)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid), "r") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "r") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(name))
    return out


def reset_peak(pid):
    """Resets VmHWM of a live process to its current RSS (writing 5 to clear_refs, Linux
    4.0 and later), so that the next peak read is that of what follows. False when the
    kernel or the permissions do not allow it."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    """User and system CPU time a live process has used so far, in seconds (0 when gone)."""
    try:
        with open("/proc/%d/stat" % pid, "r") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies():
    """(busy, all) CPU time of the whole machine so far, in clock ticks, from /proc/stat's
    first line: all is every state but guest time, busy all but idle and iowait."""
    with open("/proc/stat", "r") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def thread_times(pid):
    """A live process's threads summed by name: {comm: [on-CPU ns, ns waiting runnable for
    a core, times scheduled in]}, from /proc/PID/task/*/schedstat; {} when it is gone."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm", "r") as f:
                comm = f.read().strip()
            with open(base + "schedstat", "r") as f:
                run, wait, slices = (int(x) for x in f.read().split()[:3])
        except (OSError, ValueError):
            continue
        total = out.setdefault(comm, [0, 0, 0])
        total[0] += run
        total[1] += wait
        total[2] += slices
    return out


def file_sizes(db_path):
    """Sizes in bytes of the database and its WAL (0 when absent)."""
    out = {}
    for suffix in ("", "-wal"):
        try:
            out["db" + suffix.replace("-", "_")] = os.path.getsize(db_path + suffix)
        except OSError:
            out["db" + suffix.replace("-", "_")] = 0
    return out


def request(port, method, path, body=None, headers=None, timeout=60):
    """One HTTP request to 127.0.0.1:port; (status, headers lowercased, body bytes)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def json_answer(data):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class Procs:
    """The processes this run started, stopped in reverse order by stop_all()."""

    def __init__(self, pidfile=None):
        self.pidfile = pidfile
        self.live = []

    def spawn(self, argv, log_path, cwd, env=None):
        log = open(log_path, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                 start_new_session=True)
        finally:
            log.close()
        self.live.append(p)
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write("%d %s\n" % (p.pid, os.path.realpath(argv[0])))
        return p

    def adopt(self, pid, exe):
        """Lists a process started by another program (the PostgreSQL server, which pg_ctl
        starts) in the pid file, so that tests/bench/run kills it if we die. Stopping it
        stays the starter's job."""
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write("%d %s\n" % (pid, os.path.realpath(exe)))

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig, waits up to timeout s, then kills p's whole process group (nginx's
        workers are in it). Returns the exit code."""
        if p is None:
            return None
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                # Still alive, so its group id is still ours: the group goes (workers too).
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    p.kill()
                p.wait(5)
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def mark(self):
        """A mark for stop_since(): how many processes are running now."""
        return len(self.live)

    def stop_since(self, mark):
        """Stops, newest first, every process started after mark() and still running."""
        for p in reversed(list(self.live[mark:])):
            try:
                self.stop(p, signal.SIGTERM, 15.0)
            except Exception:  # keep stopping the rest
                pass

    def stop_all(self):
        for p in reversed(list(self.live)):
            try:
                self.stop(p, signal.SIGTERM, 5.0)
            except Exception:  # keep stopping the rest
                pass


def wait_port(proc, port, what, log_path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError("%s exited with %s:\n%s" % (what, proc.returncode, tail(log_path)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError("%s did not answer on port %d within %.0f s:\n%s"
                             % (what, port, timeout, tail(log_path)))
        time.sleep(0.02)


def nginx_user():
    # As root, nginx's workers would run as nobody and could not reach the daemon's socket
    # in our directory; the integration harness does the same.
    return "user root;" if os.geteuid() == 0 else ""


def make_tmp_dirs(d):
    for sub in ("body", "fastcgi", "proxy", "uwsgi", "scgi"):
        os.makedirs(os.path.join(d, "tmp", sub), exist_ok=True)


class Nginx:
    """One nginx (daemon off, one worker) whose config text is made by conf(ports)."""

    def __init__(self, procs, nginx_bin, d, name, conf, nports):
        self.procs, self.bin, self.dir, self.name = procs, nginx_bin, d, name
        self.conf, self.nports = conf, nports
        self.proc = None
        self.ports = None

    def start(self):
        make_tmp_dirs(self.dir)
        conf_path = os.path.join(self.dir, self.name + ".conf")
        log_path = os.path.join(self.dir, self.name + ".out")
        err_path = os.path.join(self.dir, self.name + "-error.log")
        last = None
        for _attempt in range(3):  # a port may be taken between picking and binding
            self.ports = [free_port() for _ in range(self.nports)]
            with open(conf_path, "w") as f:
                f.write(self.conf(self.ports))
            argv = [self.bin, "-p", self.dir + "/", "-c", conf_path, "-e", err_path]
            self.proc = self.procs.spawn(argv, log_path, self.dir)
            try:
                for port in self.ports:
                    wait_port(self.proc, port, "nginx (%s)" % self.name, err_path)
                return self
            except BenchError as e:
                last = e
                self.procs.stop(self.proc)
                self.proc = None
                if "Address already in use" not in tail(err_path):
                    raise
        raise last

    def workers(self):
        """The pids of the master's children (its workers), [] when it is gone."""
        return children(self.proc.pid) if self.proc is not None else []

    def workers_memory(self):
        """vm_status of each worker, summed field by field, with 'workers': how many."""
        total = {"workers": 0}
        for pid in self.workers():
            vm = vm_status(pid)
            if vm:
                total["workers"] += 1
                for k, v in vm.items():
                    total[k] = total.get(k, 0) + v
        return total

    def stop(self):
        self.procs.stop(self.proc, signal.SIGTERM, 10.0)
        self.proc = None


# The stand-in's group event stream: bytes a second after the first event (see
# standin.conf.in), and how many events its file holds (at 64 bytes a second, hours of them).
STREAM_RATE = 64
STREAM_EVENTS = 4096


def write_events(path):
    """The stand-in's event stream: task_group_status events in the upstream's form, the
    group's one run still running; returns the size in bytes of the first event (the
    stand-in sends it and the answer's head, under 512 bytes, at once)."""
    first = None
    with open(path, "w") as f:
        for i in range(STREAM_EVENTS):
            event = ('event: task_group_status\ndata: {"type":"task_group_status",'
                     '"event_id":"bench-%06d","status":{"num_task_runs":1,'
                     '"task_run_status_counts":{"running":1},"is_active":true,'
                     '"status_message":null,"modified_at":"2025-01-01T00:00:00.000000Z"}}\n\n'
                     % i)
            if first is None:
                first = len(event)
            f.write(event)
    return first


def start_standin(procs, nginx_bin, d, key):
    """The static stand-in; returns the Nginx (its port is .ports[0])."""
    www = os.path.join(d, "standin-www")
    os.makedirs(www, exist_ok=True)
    first = write_events(os.path.join(www, "events.sse"))

    def conf(ports):
        return fill("standin.conf.in", {"USER": nginx_user(), "DIR": d, "PORT": ports[0],
                                        "KEY": key, "STREAM_FIRST": first + 512,
                                        "STREAM_RATE": STREAM_RATE})
    return Nginx(procs, nginx_bin, d, "standin", conf, 1).start()


def start_sim(procs, sim_bin, d, latency_ms=0):
    """tg_sim on a free port, quiet; returns (proc, port)."""
    port_file = os.path.join(d, "sim.port")
    log_path = os.path.join(d, "sim.log")
    argv = [sim_bin, "--port", "0", "--port-file", port_file, "--quiet"]
    if latency_ms:
        argv += ["--latency-ms", str(latency_ms)]
    proc = procs.spawn(argv, log_path, d)
    deadline = time.monotonic() + 10
    while True:
        try:
            with open(port_file, "r") as f:
                text = f.read().strip()
            if text.isdigit():
                return proc, int(text)
        except OSError:
            pass
        if proc.poll() is not None:
            raise BenchError("tg_sim exited with %s:\n%s" % (proc.returncode, tail(log_path)))
        if time.monotonic() > deadline:
            raise BenchError("tg_sim wrote no port file within 10 s:\n%s" % tail(log_path))
        time.sleep(0.02)


def gateway_create_group(port, token):
    """Creates a task group through the gateway (nginx on port, the team's token), so that
    the group is the team's and submissions may add runs to it; its id."""
    status, _, data = request(port, "POST", "/v1/tasks/groups",
                              json.dumps({"metadata": {"project": "bench"}}),
                              {"x-api-key": token, "Content-Type": "application/json"})
    answer = json_answer(data)
    if status != 200 or not isinstance(answer, dict) or "taskgroup_id" not in answer:
        raise BenchError("the gateway refused to create a group: %d %r" % (status, data[:300]))
    return answer["taskgroup_id"]


class Daemon:
    """taskgate serve with a generated config in directory d, its team and token; its
    database is taskgate.db in d unless database (a postgresql:// URI, say) is given."""

    def __init__(self, procs, bin_path, d, upstream_url, conf=None, database=None):
        self.procs, self.bin, self.dir = procs, bin_path, d
        self.conf_path = os.path.join(d, "taskgate.conf")
        self.db_path = os.path.join(d, "taskgate.db")
        self.sock_path = os.path.join(d, "taskgate.sock")
        self.log_path = os.path.join(d, "taskgate.log")
        self.proc = None
        keys = [
            ("listen", self.sock_path),
            ("socket_mode", "0666"),
            ("database", database or self.db_path),
            ("upstream_url", upstream_url),
            ("upstream_connect_timeout_ms", "1000"),
            ("log_level", "info"),
            # The bench drives one team over more connections than the daemon has threads:
            # the smallest reserve, so that its share (threads - 1) and not the reserve is
            # what G measures; a submission past the share is a fast 429 the bench counts.
            ("worker_reserve", "1"),
        ]
        keys = [kv for kv in keys if kv[0] not in (conf or {})]
        keys += list((conf or {}).items())
        with open(self.conf_path, "w") as f:
            f.write("# written by tests/bench/stack.py; unlisted keys keep their defaults\n")
            for k, v in keys:
                f.write("%s = %s\n" % (k, v))

    def cli(self, *args, input=None):
        r = subprocess.run([self.bin, "--config", self.conf_path] + list(args), input=input,
                           capture_output=True, text=True, timeout=60, cwd=self.dir,
                           env=child_env())
        if r.returncode != 0:
            raise BenchError("taskgate %s exited %d: %s" % (" ".join(args), r.returncode,
                                                            r.stderr.strip()))
        return r.stdout

    def setup_team(self, team, key, preset):
        """init, team add (key on stdin), preset default, token issue; returns the token."""
        self.cli("init")
        self.cli("team", "add", team, input=key + "\n")
        self.cli("preset", "set", team, "default", "-", input=json.dumps(preset))
        token = self.cli("token", "issue", team, "--label", "bench").strip()
        if not TOKEN_RE.match(token):
            raise BenchError("token issue printed %r, not a token" % token)
        return token

    def start(self):
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.proc = self.procs.spawn([self.bin, "--config", self.conf_path, "serve"],
                                     self.log_path, self.dir, env=child_env())
        deadline = time.monotonic() + 10
        while True:
            try:
                if stat.S_ISSOCK(os.stat(self.sock_path).st_mode):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise BenchError("the daemon exited with %s:\n%s"
                                 % (self.proc.returncode, tail(self.log_path)))
            if time.monotonic() > deadline:
                raise BenchError("the daemon made no socket within 10 s:\n%s"
                                 % tail(self.log_path))
            time.sleep(0.02)

    def memory(self):
        return vm_status(self.proc.pid) if self.proc is not None else {}

    def reset_peak(self):
        return self.proc is not None and reset_peak(self.proc.pid)

    def cpu(self):
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def stop(self, timeout=15.0):
        code = self.procs.stop(self.proc, signal.SIGTERM, timeout)
        self.proc = None
        return code

    def log_lines(self):
        with open(self.log_path, "r", encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()


def site_conf(daemon, port, conf_path=None):
    """The site `taskgate nginx-site` renders from the daemon's config (or conf_path),
    listening on port (as tests/integration/harness.py does)."""
    env = child_env()
    env["TASKGATE_NGINX_LISTEN"] = "127.0.0.1:%d" % port
    r = subprocess.run([daemon.bin, "--config", conf_path or daemon.conf_path, "nginx-site"],
                       capture_output=True, text=True, timeout=60, env=env)
    if r.returncode != 0:
        raise BenchError("taskgate nginx-site exited %d: %s" % (r.returncode, r.stderr.strip()))
    return r.stdout


def start_front(procs, nginx_bin, d, daemon, key=None, standin_port=None):
    """The front nginx: G (the real site) on .ports[0] and, with standin_port, B on
    .ports[1]."""
    with_b = standin_port is not None

    def conf(ports):
        with open(os.path.join(d, "site-g.conf"), "w") as f:
            f.write(site_conf(daemon, ports[0]))
        if with_b:
            with open(os.path.join(d, "site-b.conf"), "w") as f:
                f.write(fill("baseline.conf.in", {"PORT": ports[1], "KEY": key,
                                                  "STANDIN_PORT": standin_port}))
        return fill("front.conf.in", {"USER": nginx_user(), "DIR": d})
    return Nginx(procs, nginx_bin, d, "front", conf, 2 if with_b else 1).start()


def wait_socket(proc, path, what, log_path, timeout=10.0):
    """Waits until the unix socket path exists (proc listens on it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise BenchError("%s exited with %s:\n%s" % (what, proc.returncode, tail(log_path)))
        if time.monotonic() > deadline:
            raise BenchError("%s made no socket within %.0f s:\n%s" % (what, timeout,
                                                                        tail(log_path)))
        time.sleep(0.02)


def start_relay(procs, relay_bin, d, url, key, threads):
    """tests/bench/relay.c on the unix socket d/relay.sock, POSTing every body to url with
    the team's key; returns (proc, socket path)."""
    sock = os.path.join(d, "relay.sock")
    log_path = os.path.join(d, "relay.out")
    if os.path.exists(sock):
        os.unlink(sock)
    proc = procs.spawn([relay_bin, sock, url, key, str(threads)], log_path, d)
    wait_socket(proc, sock, "the relay", log_path)
    return proc, sock


def start_front_f(procs, nginx_bin, d, daemon, relay_sock):
    """F's front nginx, in d/front-f: front.conf.in and the site `taskgate nginx-site`
    renders from the daemon's own config with only `listen` changed to the relay's socket,
    so that nginx does for F exactly what it does for G. Its port is .ports[0]."""
    fd = os.path.join(d, "front-f")
    os.makedirs(fd, exist_ok=True)
    conf_path = os.path.join(fd, "taskgate.conf")
    with open(daemon.conf_path, "r") as f:
        lines = [l for l in f if not l.startswith("listen ")]
    with open(conf_path, "w") as f:
        f.writelines(lines)
        f.write("listen = %s\n" % relay_sock)

    def conf(ports):
        with open(os.path.join(fd, "site-f.conf"), "w") as f:
            f.write(site_conf(daemon, ports[0], conf_path))
        return fill("front.conf.in", {"USER": nginx_user(), "DIR": fd})
    return Nginx(procs, nginx_bin, fd, "front", conf, 1).start()
