#!/usr/bin/env python3
"""taskgate's benchmark (run it through tests/bench/run): B, nginx proxying straight to a
static upstream stand-in, F, nginx -> a bare FastCGI relay (relay.c) -> the same stand-in,
and G, nginx -> taskgate -> the same stand-in; G again with
the daemon on a local PostgreSQL server instead of SQLite; then a slow upstream (tg_sim --latency-ms), one large submission, the audit store's recording rate,
the audit at scale (scale.py: a store of a million runs, every audit read, a prune under
load), and G's submissions with and without event streams open through nginx. Writes bench-results.txt, bench-results.json and, with gnuplot, latency.png to the
output directory. Standard library only.

Exit status: 0 when every part ran (whatever the figures), 1 when a part failed to run,
2 on a usage error. Targets are printed as PASS/MISS and never change the exit status.
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree, however we are started

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time

import report
import scale
from stack import (BenchError, Daemon, Procs, HERE, TOP, children, cpu_seconds, file_sizes,
                   json_answer, machine_jiffies, request, thread_times, gateway_create_group,
                   start_front, start_front_f, start_relay, start_sim, start_standin, tail)
from pgserver import PgServer, pg_bindir, psql_path  # tests/integration, on stack's path

KEY = "par-bench-key"
RELAY_THREADS = 16  # F's threads, each with its own libcurl handle (issue 20)
PARTS = ("static", "pg", "slow", "large", "scale", "streams")
NAMED_PARTS = ("scale-pg",)  # run only when --parts names them
TEAM = "bench"
PRESET = {"processor": "base"}

PROFILES = {
    "full": {
        "warm_secs": 1, "max_rounds": 2, "max_secs": 6, "max_conns": 64, "wrk_threads": 2,
        "lat_fracs": [0.10, 0.25, 0.50, 0.75, 0.90], "lat_fracs_g": [0.25, 0.50, 0.75, 0.90],
        "lat_secs": 6, "lat_conns": 64,
        "slow_latency_ms": 1000, "slow_clients": 256, "slow_threads": 300,
        "slow_warm": 2.5, "slow_window": 10.0,
        "bulk_inputs": 10000, "bulk_repeats": 3, "bulk_repeats_after": 2,
        "store_secs": 8.0, "store_clients": 2, "store_inputs": 1000,
        "streams": 2000, "stream_max_secs": 4, "stream_lat_frac": 0.50, "stream_lat_secs": 6,
        "stream_open_secs": 30.0,
        "scale_runs": 1000000, "scale_inputs": 1000, "scale_groups": 10, "scale_repeats": 5,
        "scale_bulk_repeats": 7,
    },
    "quick": {
        "warm_secs": 0, "max_rounds": 1, "max_secs": 1, "max_conns": 16, "wrk_threads": 2,
        "lat_fracs": [0.50], "lat_fracs_g": [0.50], "lat_secs": 1, "lat_conns": 16,
        "slow_latency_ms": 200, "slow_clients": 32, "slow_threads": 40,
        "slow_warm": 0.5, "slow_window": 1.5,
        "bulk_inputs": 10000, "bulk_repeats": 1, "bulk_repeats_after": 1,
        "store_secs": 1.0, "store_clients": 2, "store_inputs": 1000,
        "streams": 50, "stream_max_secs": 1, "stream_lat_frac": 0.50, "stream_lat_secs": 1,
        "stream_open_secs": 10.0,
        "scale_runs": 20000, "scale_inputs": 1000, "scale_groups": 4, "scale_repeats": 1,
        "scale_bulk_repeats": 1,
    },
}


class Bench:
    def __init__(self, args, profile, procs, work, out):
        self.args, self.p, self.procs, self.work, self.out = args, profile, procs, work, out
        self.results = {"parts": {}, "failures": [], "skipped": []}
        self.wrk_runs = 0

    # ---- helpers ------------------------------------------------------------------------

    def subdir(self, name):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        return d

    def say(self, text):
        sys.stderr.write("[bench] %s\n" % text)
        sys.stderr.flush()

    def wrk(self, d, label, port, path, body, token, secs, conns, rate=0, statuses=True):
        """One wrk run; its summary dict plus ok_rps (non-error answers per second) and,
        unless statuses is false, the answers by status (a Lua call per answer in wrk,
        which B, the fastest, is spared)."""
        threads = self.p["wrk_threads"]
        env = dict(os.environ, BENCH_METHOD="POST", BENCH_PATH=path, BENCH_BODY=body,
                   BENCH_TOKEN=token or "", BENCH_RATE="%.3f" % rate,
                   BENCH_THREADS=str(threads), BENCH_STATUSES="1" if statuses else "0")
        self.wrk_runs += 1
        log = os.path.join(d, "wrk-%02d-%s.out" % (self.wrk_runs, label))
        argv = [self.args.wrk, "-t%d" % threads, "-c%d" % max(conns, threads),
                "-d%ds" % secs, "--timeout", "10s", "-s", os.path.join(HERE, "wrk.lua"),
                "http://127.0.0.1:%d%s" % (port, path)]
        proc = self.procs.spawn(argv, log, d, env=env)
        try:
            proc.wait(secs + 30)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            raise BenchError("wrk (%s) did not finish within %d s" % (label, secs + 30))
        self.procs.stop(proc)
        if proc.returncode != 0:
            raise BenchError("wrk (%s) exited %d:\n%s" % (label, proc.returncode, tail(log)))
        with open(log, "r", errors="replace") as f:
            lines = [l for l in f if l.startswith("BENCH_RESULT ")]
        if not lines:
            raise BenchError("wrk (%s) printed no summary:\n%s" % (label, tail(log)))
        r = json.loads(lines[-1][len("BENCH_RESULT "):])
        secs_run = r["duration_us"] / 1e6
        errors = sum(r["errors"].values())
        r["rps"] = r["requests"] / secs_run if secs_run > 0 else 0.0
        r["ok_rps"] = max(0, r["requests"] - r["errors"]["status"]) / secs_run if secs_run else 0
        r["error_count"] = errors
        r["offered"] = rate
        if r["requests"] - r["errors"]["status"] <= 0:
            raise BenchError("wrk (%s): no successful answer at all (%r)" % (label, r["errors"]))
        return r

    # ---- part A: B against G, against the static stand-in ---------------------------------

    def smoke_b(self, port, group, path=None):
        """One add-runs call through B (or F, on path)."""
        body = json.dumps({"inputs": [{"input": "q", "processor": "base"}]})
        status, _, data = request(port, "POST", path or "/v1/tasks/groups/%s/runs" % group,
                                  body, {"Content-Type": "application/json"})
        a = json_answer(data)
        if status != 200 or not isinstance(a, dict) or len(a.get("run_ids") or []) != 1:
            raise BenchError("%s answered %d %r" % ("F" if path else "B", status, data[:300]))

    def smoke_g(self, port, token, body, expect_runs):
        status, _, data = request(port, "POST", "/v1/runs", body,
                                  {"Content-Type": "application/json",
                                   "Authorization": "Bearer " + token})
        a = json_answer(data)
        if (status != 200 or not isinstance(a, dict) or a.get("status") != "accepted"
                or len(a.get("run_ids") or []) != expect_runs):
            raise BenchError("G answered %d %r" % (status, data[:400]))
        return a

    def part_static(self):
        """Throughput and fixed-rate latency of B, F and G against the static stand-in."""
        d = self.subdir("static")
        res = self.results["parts"].setdefault("static", {})
        mark = self.procs.mark()
        daemon = front = None
        try:
            standin = start_standin(self.procs, self.args.nginx, d, KEY)
            daemon = Daemon(self.procs, self.args.taskgate, d,
                            "http://127.0.0.1:%d" % standin.ports[0])
            token = daemon.setup_team(TEAM, KEY, PRESET)
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon, KEY,
                                standin.ports[0])
            self.static_runs(d, res, daemon, token, standin, *front.ports)
        finally:
            self.stop_stack(res, mark, front, daemon)
        # Read once the daemon has finished what wrk left in flight and has stopped.
        res["states"] = self.db_states(daemon.db_path)
        res["files"] = file_sizes(daemon.db_path)

    def stop_stack(self, res, mark, front, daemon):
        """Stops nginx first (no new requests), then the daemon (its exit code is kept),
        then whatever else the part started."""
        if front is not None:
            front.stop()
        if daemon is not None and daemon.proc is not None:
            res["daemon_exit"] = daemon.stop()
        self.procs.stop_since(mark)

    def start_f(self, d, daemon, standin, b_path):
        """F: the bare relay POSTing to B's upstream path on the stand-in, behind a front
        nginx of its own with G's site; (relay's pid, its port)."""
        relay, sock = start_relay(self.procs, self.args.relay, d,
                                  "http://127.0.0.1:%d%s" % (standin.ports[0], b_path), KEY,
                                  RELAY_THREADS)
        front_f = start_front_f(self.procs, self.args.nginx, d, daemon, sock)
        return relay.pid, front_f.ports[0]

    def static_runs(self, d, res, daemon, token, standin, g_port, b_port):
        p = self.p
        res["daemon_threads"] = 32
        res["relay_threads"] = RELAY_THREADS
        # A group the team made through the gateway: only those take its submissions.
        group = gateway_create_group(g_port, token)
        b_path = "/v1/tasks/groups/%s/runs" % group
        b_body = json.dumps({"inputs": [{"input": "q", "processor": "base"}]})
        g_body = json.dumps({"taskgroup_id": group, "inputs": ["q"]})
        relay_pid, f_port = self.start_f(d, daemon, standin, b_path)
        self.smoke_b(b_port, group)
        self.smoke_b(f_port, group, "/v1/runs")
        self.smoke_g(g_port, token, g_body, 1)
        self.smoke_g(g_port, token, g_body, 1)  # a second one: run ids must not clash
        self.smoke_g(g_port, token, json.dumps({"inputs": ["q"]}), 1)  # group creation

        def run_b(label, secs, conns, rate=0):
            return self.wrk(d, label, b_port, b_path, b_body, None, secs, conns, rate,
                            statuses=False)

        def run_f(label, secs, conns, rate=0):
            # The upstream's body, which the relay passes on as it is, on G's path.
            return self.wrk(d, label, f_port, "/v1/runs", b_body, None, secs, conns, rate)

        def run_g(label, secs, conns, rate=0):
            return self.wrk(d, label, g_port, "/v1/runs", g_body, token, secs, conns, rate)

        def max_f():
            cpu0 = cpu_seconds(relay_pid)
            f = run_f("max-F", p["max_secs"], p["max_conns"])
            f["daemon_cpu_us_per_request"] = ((cpu_seconds(relay_pid) - cpu0) * 1e6
                                              / max(1, f["requests"]))
            return f

        if p["warm_secs"]:
            run_b("warm-B", p["warm_secs"], p["max_conns"])
            run_f("warm-F", p["warm_secs"], p["max_conns"])
            run_g("warm-G", p["warm_secs"], p["max_conns"])
        rounds = {"B": [], "F": [], "G": []}
        db0 = self.db_counters(g_port)
        refused0 = self.metric(g_port, "taskgate_worker_share_refusals_total")
        for i in range(p["max_rounds"]):
            self.say("max throughput, round %d of %d" % (i + 1, p["max_rounds"]))
            rounds["B"].append(run_b("max-B", p["max_secs"], p["max_conns"]))
            rounds["F"].append(max_f())
            rounds["G"].append(self.max_g(d, g_port, g_body, token, daemon))
        best = {k: max(v, key=lambda r: r["ok_rps"]) for k, v in rounds.items()}
        res["max"] = {"rounds": rounds, "B": best["B"], "F": best["F"], "G": best["G"],
                      "conns": p["max_conns"], "secs": p["max_secs"],
                      "ratio": best["G"]["ok_rps"] / best["B"]["ok_rps"],
                      "ratio_fb": best["F"]["ok_rps"] / best["B"]["ok_rps"],
                      "ratio_gf": best["G"]["ok_rps"] / best["F"]["ok_rps"]}
        res["max"]["share_refusals"] = (self.metric(g_port, "taskgate_worker_share_refusals_total")
                                        - refused0)
        db1 = self.db_counters(g_port)
        tx = db1.get("taskgate_db_transactions_total", 0) - db0.get(
            "taskgate_db_transactions_total", 0)
        if tx > 0:
            g_requests = sum(r["requests"] for r in rounds["G"])
            res["max"]["group_commit"] = {
                "transactions": tx,
                "writes_per_transaction": (db1["taskgate_db_writes_total"]
                                           - db0["taskgate_db_writes_total"]) / tx,
                "wal_pages_per_request": (db1["taskgate_db_wal_frames_total"]
                                          - db0["taskgate_db_wal_frames_total"])
                / max(1, g_requests)}
        res["rss_after_max_kb"] = daemon.memory()

        # Loads G can carry first (fractions of its own maximum, F at the same rates), while
        # the database is still small; then the fractions of B's maximum that the issue
        # names, which saturate G.
        for key, whose, fracs in (("latency_g", "G", p["lat_fracs_g"]),
                                  ("latency", "B", p["lat_fracs"])):
            points = []
            for frac in fracs:
                rate = frac * best[whose]["ok_rps"]
                self.say("fixed rate %.0f%% of %s's max: %.0f requests/s"
                         % (frac * 100, whose, rate))
                point = {"frac": frac, "offered": rate,
                         "B": run_b("rate-B", p["lat_secs"], p["lat_conns"], rate)}
                if whose == "G":
                    point["F"] = self.loaded(lambda: run_f("rate-F", p["lat_secs"],
                                                           p["lat_conns"], rate), relay_pid)
                    point["G"] = self.loaded(lambda: run_g("rate-G", p["lat_secs"],
                                                           p["lat_conns"], rate),
                                             daemon.proc.pid)
                else:
                    point["G"] = run_g("rate-G", p["lat_secs"], p["lat_conns"], rate)
                points.append(point)
            res[key] = points
        res["rss_kb"] = daemon.memory()
        res["files_running"] = file_sizes(daemon.db_path)

    @staticmethod
    def loaded(run, pid):
        """run() (one wrk run) with what the machine and process pid did meanwhile: the
        share of the two cores busy, and per request answered the process's CPU and, by
        thread name, the time its threads waited runnable for a core: how loaded the
        machine was, which at half of G's maximum G itself makes it."""
        busy0, all0 = machine_jiffies()
        threads0 = thread_times(pid)
        res = run()
        busy1, all1 = machine_jiffies()
        threads1 = thread_times(pid)
        n = max(1, res["requests"])
        res["machine_busy"] = (busy1 - busy0) / max(1, all1 - all0)
        res["cpu_us_per_request"] = sum(
            v[0] - threads0.get(k, [0, 0, 0])[0] for k, v in threads1.items()) / 1e3 / n
        res["core_wait_us_per_request"] = {
            k: (v[1] - threads0.get(k, [0, 0, 0])[1]) / 1e3 / n for k, v in threads1.items()
            if v[0] > threads0.get(k, [0, 0, 0])[0]}
        return res

    def max_g(self, d, port, body, token, daemon, server_pid=None):
        """One round of G's maximum (the profile's connections and seconds, the same on
        either backend), with the daemon's CPU per request and, given the PostgreSQL
        server's postmaster, the server's (its backends are the postmaster's children)."""
        p = self.p
        cpu0 = daemon.cpu()
        srv0 = tree_cpu(server_pid) if server_pid else None
        g = self.wrk(d, "max-G", port, "/v1/runs", body, token, p["max_secs"], p["max_conns"])
        g["daemon_cpu_us_per_request"] = (daemon.cpu() - cpu0) * 1e6 / max(1, g["requests"])
        if srv0 is not None:
            srv1 = tree_cpu(server_pid)
            used = sum(v - srv0.get(pid, 0.0) for pid, v in srv1.items())
            g["server_cpu_us_per_request"] = used * 1e6 / max(1, g["requests"])
        return g

    # ---- part P: G again, the daemon on PostgreSQL ------------------------------------------

    def part_pg(self):
        """G's maximum as in part_static (same stand-in, site, daemon threads and wrk
        settings), the daemon's store a local PostgreSQL server: initdb in a temporary
        directory, unix socket only, fsync and synchronous_commit on, so that every commit
        is as durable as SQLite's."""
        p = self.p
        d = self.subdir("pg")
        res = self.results["parts"].setdefault("pg", {})
        mark = self.procs.mark()
        pg = daemon = front = None
        try:
            self.say("G on PostgreSQL: a server in a temporary directory (initdb)")
            pg = PgServer(fsync=True, settings={"max_connections": 200})
            pg.start()
            server_pid = postmaster_pid(pg)
            self.procs.adopt(server_pid, os.path.join(pg.bindir, "postgres"))
            row = pg.psql("SELECT current_setting('server_version'), "
                          "current_setting('synchronous_commit'), current_setting('fsync'), "
                          "current_setting('wal_sync_method')", args=("-At",)).stdout
            res["server"] = dict(zip(("version", "synchronous_commit", "fsync",
                                      "wal_sync_method"), row.strip().split("|")))
            standin = start_standin(self.procs, self.args.nginx, d, KEY)
            daemon = Daemon(self.procs, self.args.taskgate, d,
                            "http://127.0.0.1:%d" % standin.ports[0],
                            {"key_file": os.path.join(d, "taskgate.key")}, database=pg.dsn)
            token = daemon.setup_team(TEAM, KEY, PRESET)
            tx0 = int(pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = "
                              "current_database()", args=("-At",)).stdout.strip())
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon)
            port = front.ports[0]
            res["daemon_threads"] = 32
            group = gateway_create_group(port, token)
            body = json.dumps({"taskgroup_id": group, "inputs": ["q"]})
            self.smoke_g(port, token, body, 1)
            self.smoke_g(port, token, body, 1)
            if p["warm_secs"]:
                self.wrk(d, "warm-G", port, "/v1/runs", body, token, p["warm_secs"],
                         p["max_conns"])
            rounds = []
            for i in range(p["max_rounds"]):
                self.say("G on PostgreSQL, max throughput, round %d of %d"
                         % (i + 1, p["max_rounds"]))
                rounds.append(self.max_g(d, port, body, token, daemon, server_pid))
            res["max"] = {"rounds": {"G": rounds}, "G": max(rounds, key=lambda r: r["ok_rps"]),
                          "conns": p["max_conns"], "secs": p["max_secs"]}
            res["rss_kb"] = daemon.memory()
        finally:
            try:
                self.stop_stack(res, mark, front, daemon)
                if pg is not None and pg.running and daemon is not None:
                    # Once the daemon has finished what wrk left in flight and has stopped
                    # (its backends have ended, so their counts are in the statistics).
                    out = pg.psql("SELECT state, count(*) FROM submissions GROUP BY state",
                                  args=("-At",), check=False).stdout
                    res["states"] = {s: int(n) for s, n in
                                     (l.split("|") for l in out.splitlines() if "|" in l)}
                    n = sum(res["states"].values())
                    tx = pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = "
                                 "current_database()", args=("-At",), check=False).stdout
                    if n and tx.strip().isdigit():
                        res["transactions_per_submission"] = (int(tx) - tx0) / n
                if pg is not None and pg.running and res.get("max"):
                    res["floor"] = self.pg_floor(d, pg)
            finally:
                if pg is not None:
                    pg.stop()

    def pg_floor(self, d, pg):
        """pgbench's submissions/s of floor.sql (the same two transactions without the
        gateway) on the same server, in a database of its own, with 16 clients for as long
        as one round of G."""
        pgbench = os.path.join(pg.bindir, "pgbench")
        if not os.access(pgbench, os.X_OK):
            return {"skipped": "no pgbench beside the server"}
        pg.psql("CREATE DATABASE floor", dbname="postgres")
        pg.apply_migrations(os.path.join(TOP, "sql", "postgres"), dbname="floor")
        pg.psql("INSERT INTO teams (name, upstream_key, key_fingerprint, created_at, updated_at)"
                " VALUES ('floor', 'k', 'f', 't', 't');"
                " INSERT INTO tokens (id, team_id, role, hash, created_at)"
                " VALUES ('tok_floor', 1, 'submit', 'h', 't')", dbname="floor")
        self.say("pgbench: floor.sql on the same server, 16 clients")
        log = os.path.join(d, "pgbench.out")
        proc = self.procs.spawn([pgbench, "-n", "-M", "prepared", "-c", "16", "-j", "2",
                                 "-T", str(self.p["max_secs"]), "-f",
                                 os.path.join(HERE, "floor.sql"), pg.dsn_for("floor")],
                                log, d, env={k: v for k, v in os.environ.items()
                                             if not k.startswith("PG")})
        try:
            proc.wait(self.p["max_secs"] + 60)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc)
            raise BenchError("pgbench did not finish within %d s" % (self.p["max_secs"] + 60))
        self.procs.stop(proc)
        with open(log, "r", errors="replace") as f:
            text = f.read()
        m = re.search(r"^tps = ([0-9.]+)", text, re.M)
        if proc.returncode != 0 or m is None:
            raise BenchError("pgbench exited %s:\n%s" % (proc.returncode, tail(log)))
        return {"tps": float(m.group(1)), "clients": 16, "secs": self.p["max_secs"]}

    @staticmethod
    def db_counters(port):
        """The daemon's taskgate_db_* counters, from /metrics through the front nginx."""
        status, _, data = request(port, "GET", "/metrics")
        if status != 200:
            raise BenchError("/metrics answered %d" % status)
        values = {}
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith("taskgate_db_"):
                name, _, value = line.partition(" ")
                values[name] = float(value)
        return values

    @staticmethod
    def db_states(db_path):
        conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT state, count(*) FROM submissions GROUP BY state")
            return {state: n for state, n in rows}
        finally:
            conn.close()

    # ---- part S: a slow upstream and many clients ---------------------------------------

    def part_slow(self):
        p = self.p
        d = self.subdir("slow")
        res = self.results["parts"].setdefault("slow", {})
        latency = p["slow_latency_ms"]
        clients = p["slow_clients"]
        mark = self.procs.mark()
        daemon = front = None
        try:
            _, sim_port = start_sim(self.procs, self.args.sim, d, latency)
            daemon = Daemon(self.procs, self.args.taskgate, d,
                            "http://127.0.0.1:%d" % sim_port, {"threads": p["slow_threads"]})
            token = daemon.setup_team(TEAM, KEY, PRESET)
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon)
            port = front.ports[0]
            gid = gateway_create_group(port, token)
            body = json.dumps({"taskgroup_id": gid, "inputs": ["q"]})
            self.smoke_g(port, token, body, 1)
            self.say("slow upstream: %d ms, %d clients, %.1f s" % (latency, clients,
                                                                   p["slow_warm"] + p["slow_window"]))
            res.update(closed_loop(port, token, body, clients, p["slow_warm"],
                                   p["slow_window"]))
            res.update({"upstream_latency_ms": latency, "clients": clients,
                        "threads": p["slow_threads"],
                        "ideal_rps": clients * 1000.0 / latency})
            res["fraction_of_ideal"] = res["rps"] / res["ideal_rps"]
            res["rss_kb"] = daemon.memory()
            if res["completed"] == 0:
                raise BenchError("no submission completed in the window")
        finally:
            self.stop_stack(res, mark, front, daemon)

    # ---- part L: one large submission, and the store's recording rate ---------------------

    def part_large(self):
        p = self.p
        d = self.subdir("large")
        res = self.results["parts"].setdefault("large", {})
        mark = self.procs.mark()
        daemon = front = None
        try:
            _, sim_port = start_sim(self.procs, self.args.sim, d, 0)
            daemon = Daemon(self.procs, self.args.taskgate, d, "http://127.0.0.1:%d" % sim_port)
            token = daemon.setup_team(TEAM, KEY, PRESET)
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon)
            port = front.ports[0]
            gid = gateway_create_group(port, token)
            self.smoke_g(port, token, json.dumps({"taskgroup_id": gid, "inputs": ["q"]}), 1)
            n = p["bulk_inputs"]
            body = json.dumps({"taskgroup_id": gid,
                               "inputs": ["question number %d" % i for i in range(n)]})
            res["inputs"] = n
            res["body_bytes"] = len(body)
            res["fresh"] = self.bulk(port, token, body, n, daemon, p["bulk_repeats"])

            self.say("recording rate: %d clients of %d-input submissions for %.1f s"
                     % (p["store_clients"], p["store_inputs"], p["store_secs"]))
            body = json.dumps({"taskgroup_id": gid,
                               "inputs": ["q %d" % i for i in range(p["store_inputs"])]})
            daemon.reset_peak()
            res["store_loop"] = store_loop(port, token, body, daemon.db_path,
                                           p["store_clients"], p["store_secs"])
            res["store_loop"]["rss_kb"] = daemon.memory()
            res["store_loop"]["inputs_per_submission"] = p["store_inputs"]
            # Again, now that the runs table is no longer nearly empty.
            body = json.dumps({"taskgroup_id": gid,
                               "inputs": ["question number %d" % i for i in range(n)]})
            res["grown"] = self.bulk(port, token, body, n, daemon, p["bulk_repeats_after"])
            res["files"] = file_sizes(daemon.db_path)
        finally:
            self.stop_stack(res, mark, front, daemon)

    def bulk(self, port, token, body, n, daemon, repeats, value=None):
        """repeats submissions of body (n inputs), one after another; their times and the
        daemon's peak RSS while they ran (from the RSS before them when the peak can be
        reset, else since the daemon started). value: the store's query function when it is
        not the daemon's SQLite file (then the time between calls is not read)."""
        runs_before = (value or (lambda sql: self.db_value(daemon.db_path, sql)))(
            "SELECT count(*) FROM runs")
        peak_reset = daemon.reset_peak()
        rss_before = daemon.memory()
        reps = []
        for i in range(repeats):
            self.say("one submission of %d inputs (%d of %d), %d runs already stored"
                     % (n, i + 1, repeats, runs_before))
            reps.append(self.bulk_one(port, token, body, n, daemon, value))
        return {"runs_before": runs_before, "repeats": reps,
                "gateway_ms_median": statistics.median(r["gateway_ms"] for r in reps),
                "rss_before_kb": rss_before, "rss_kb": daemon.memory(),
                "peak_reset": peak_reset}

    def bulk_one(self, port, token, body, n, daemon, value=None):
        """One submission of body (n inputs): its times, and the daemon's CPU meanwhile."""
        cpu0 = daemon.cpu()
        t0 = time.monotonic()
        a = self.smoke_g(port, token, body, n)
        rep = {"submission_id": a["submission_id"], "calls": len(a.get("calls") or []),
               "client_ms": (time.monotonic() - t0) * 1000,
               "daemon_cpu_ms": (daemon.cpu() - cpu0) * 1000}
        rep.update(log_times(daemon, a["submission_id"]))
        if value is None:
            rep.update(record_gaps(daemon.db_path, a["submission_id"], n))
        return rep

    def alternate(self, sides, n, repeats):
        """sides: {name: (port, token, daemon, value)}; repeats rounds of one submission of n
        inputs on each side in turn, each side into a new group of its own, so that the
        machine's other load weighs on every side alike. {name: bulk()'s figures}."""
        out = {}
        bodies = {}
        for name, (port, token, daemon, value) in sides.items():
            body = json.dumps({"taskgroup_id": gateway_create_group(port, token),
                               "inputs": ["question number %d" % i for i in range(n)]})
            bodies[name] = body
            runs = (value or (lambda sql, d=daemon: self.db_value(d.db_path, sql)))(
                "SELECT count(*) FROM runs")
            out[name] = {"runs_before": runs, "repeats": [], "rss_before_kb": daemon.memory(),
                         "peak_reset": daemon.reset_peak()}
        for i in range(repeats):
            for name, (port, token, daemon, value) in sides.items():
                self.say("one submission of %d inputs on the %s store (%d of %d)"
                         % (n, name, i + 1, repeats))
                out[name]["repeats"].append(self.bulk_one(port, token, bodies[name], n,
                                                          daemon, value))
        for name, (_, _, daemon, _) in sides.items():
            reps = out[name]["repeats"]
            out[name]["gateway_ms_median"] = statistics.median(r["gateway_ms"] for r in reps)
            out[name]["daemon_cpu_ms_median"] = statistics.median(r["daemon_cpu_ms"]
                                                                  for r in reps)
            out[name]["rss_kb"] = daemon.memory()
        return out

    @staticmethod
    def db_value(db_path, sql):
        conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    # ---- part A: the audit at scale ----------------------------------------------------------

    def part_scale(self):
        self.scale_run("scale", None)

    def part_scale_pg(self):
        """part_scale with the daemon on a PostgreSQL server of its own (as part_pg's)."""
        pg = None
        try:
            self.say("audit at scale on PostgreSQL: a server in a temporary directory")
            pg = PgServer(fsync=True, settings={"max_connections": 200})
            pg.start()
            self.procs.adopt(postmaster_pid(pg), os.path.join(pg.bindir, "postgres"))
            self.scale_run("scale_pg", pg)
        finally:
            if pg is not None:
                pg.stop()

    def scale_run(self, name, pg):
        """The store (SQLite, or the server pg) filled through the gateway to
        p['scale_runs'] runs (submissions of p['scale_inputs'] inputs over p['scale_groups']
        groups of one team, a few more of a second team, some refused upstream), then: every
        audit read timed over HTTP and with the CLI, bytes per run, the 10,000-input
        submission on it and on a new store beside it in turn, and a prune of the first half
        while one client goes on submitting."""
        p = self.p
        d = self.subdir(name)
        res = self.results["parts"].setdefault(name, {})
        mark = self.procs.mark()
        daemon = front = None
        try:
            _, sim_port = start_sim(self.procs, self.args.sim, d, 0)
            # The run tracker off (track_groups_max = 0, as where webhooks alone record
            # outcomes, or another daemon follows): this part times the records' own
            # writes and reads at size; following a million runs' lifecycles while they are
            # made is the tracker's load (docs/benchmark.md, "Audit at scale").
            conf = {"track_groups_max": "0"}
            if pg is None:
                daemon = Daemon(self.procs, self.args.taskgate, d,
                                "http://127.0.0.1:%d" % sim_port, conf)
            else:
                daemon = Daemon(self.procs, self.args.taskgate, d,
                                "http://127.0.0.1:%d" % sim_port,
                                dict(conf, key_file=os.path.join(d, "taskgate.key")),
                                database=pg.dsn)
            res["backend"] = "sqlite" if pg is None else "postgresql"
            value = self.store_value(daemon, pg)
            token = daemon.setup_team(TEAM, KEY, PRESET)
            daemon.cli("team", "add", "other", input=KEY + "\n")
            daemon.cli("preset", "set", "other", "default", "-", input=json.dumps(PRESET))
            other = daemon.cli("token", "issue", "other", "--label", "bench").strip()
            audit = daemon.cli("token", "issue", TEAM, "--role", "audit",
                               "--label", "auditor").strip()
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon)
            port = front.ports[0]
            groups = [gateway_create_group(port, token) for _ in range(p["scale_groups"])]
            n = p["bulk_inputs"]
            # A second team, and submissions the upstream refuses (an unknown processor).
            other_group = gateway_create_group(port, other)
            for _ in range(3):
                self.smoke_g(port, other, json.dumps({"taskgroup_id": other_group,
                                                      "inputs": ["q"] * 10}), 10)
            for _ in range(3):
                request(port, "POST", "/v1/runs",
                        json.dumps({"taskgroup_id": groups[0], "inputs": ["q"],
                                    "processor": "no-such-processor"}),
                        {"Content-Type": "application/json", "Authorization": "Bearer " + token})
            runs_now = value("SELECT count(*) FROM runs")
            started = scale.utc_now()
            self.say("audit at scale: filling to %d runs (%d-input submissions)"
                     % (p["scale_runs"], p["scale_inputs"]))
            res["fill"] = scale.fill(port, token, groups, p["scale_inputs"], p["scale_runs"],
                                     runs_now)
            res["fill"]["started"] = started
            time.sleep(3)  # the fill's last WAL checkpoints, which would be timed otherwise
            if pg is not None:
                # The statistics autovacuum gathers within a minute of such a fill, without
                # which the planner takes the tables for nearly empty.
                pg.psql("ANALYZE")
            res["store"] = scale.store_figures(value, self.store_bytes(daemon, pg))
            # The 10,000-input submission on the filled store and on a new one beside it (a
            # second daemon and front on the same simulator), in turn, each into a new group
            # (the simulator walks the runs of the group it adds to, on the same 2 cores).
            twin = self.subdir(name + "-new")
            if pg is None:
                daemon2 = Daemon(self.procs, self.args.taskgate, twin,
                                 "http://127.0.0.1:%d" % sim_port, conf)
            else:
                pg.psql("CREATE DATABASE twin", dbname="postgres")
                daemon2 = Daemon(self.procs, self.args.taskgate, twin,
                                 "http://127.0.0.1:%d" % sim_port,
                                 dict(conf, key_file=os.path.join(twin, "taskgate.key")),
                                 database=pg.dsn_for("twin"))
            token2 = daemon2.setup_team(TEAM, KEY, PRESET)
            daemon2.start()
            front2 = start_front(self.procs, self.args.nginx, twin, daemon2)
            value2 = None if pg is None else self.store_value(daemon2, pg, "twin")
            sides = {"new": (front2.ports[0], token2, daemon2, value2),
                     "filled": (port, token, daemon, None if pg is None else value)}
            both = self.alternate(sides, n, p["scale_bulk_repeats"])
            res["fresh"], res["grown"] = both["new"], both["filled"]
            front2.stop()
            daemon2.stop()
            marks = res["fill"]["marks"]
            since = marks[-2][1] if len(marks) >= 2 else started
            sub = value("SELECT id FROM submissions WHERE num_inputs = %d ORDER BY received_at"
                        " DESC LIMIT 1 OFFSET 5" % p["scale_inputs"])
            run = value("SELECT run_id FROM runs WHERE submission_id = '%s' AND input_index ="
                        " 500" % sub)
            ids = {"run": run, "submission": sub, "group": groups[1], "team": TEAM,
                   "since": since}
            res["ids"] = ids
            self.say("audit at scale: timing the audit reads")
            res["reads"] = scale.reads(port, daemon, audit, ids, p["scale_repeats"])
            res["summary_exact"] = scale.summary_check(value)
            half = marks[len(marks) // 2][1] if marks else started
            self.say("audit at scale: pruning what came before %s under load" % half)
            # A group made now: a prune may take the submission that made an older one.
            res["prune"] = scale.prune_under_load(port, token, daemon,
                                                  gateway_create_group(port, token), half)
            res["prune"]["before"] = half
            res["summary_exact_after_prune"] = scale.summary_check(value)
            res["store_after_prune"] = scale.store_figures(value, self.store_bytes(daemon, pg))
        finally:
            self.stop_stack(res, mark, front, daemon)

    def store_value(self, daemon, pg, dbname=None):
        """value(sql): the first column of the first row of sql on the daemon's store (on
        pg, the database dbname: the server's own by default)."""
        if pg is None:
            return lambda sql: self.db_value(daemon.db_path, sql)

        def value(sql):
            r = pg.psql(sql, dbname=dbname, args=("-At",), check=False)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip())
            out = r.stdout.strip().splitlines()
            return None if not out else int(out[0]) if out[0].lstrip("-").isdigit() else out[0]
        return value

    @staticmethod
    def store_bytes(daemon, pg):
        """What the store takes: the database and its WAL, or the server's database."""
        if pg is None:
            return lambda: file_sizes(daemon.db_path)
        return lambda: {"db": int(pg.psql("SELECT pg_database_size(current_database())",
                                          args=("-At",)).stdout.strip()), "db_wal": 0}

    # ---- part E: submissions with and without many event streams open ----------------------

    def part_streams(self):
        """Submission throughput and p99 against the static stand-in, first with no stream
        open, then with p['streams'] group event streams open through the same nginx (which
        proxies them to the stand-in after the daemon's authorisation); the RSS of nginx's
        worker and of the daemon before and after the streams opened."""
        p = self.p
        n = p["streams"]
        d = self.subdir("streams")
        res = self.results["parts"].setdefault("streams", {})
        res.update({"streams": n, "conns": p["max_conns"], "lat_conns": p["lat_conns"],
                    "max_secs": p["stream_max_secs"], "lat_secs": p["stream_lat_secs"],
                    "frac": p["stream_lat_frac"]})
        mark = self.procs.mark()
        daemon = front = None
        try:
            standin = start_standin(self.procs, self.args.nginx, d, KEY)
            # Above n, so that the per-team limit (its default is 1,000) is not what is measured.
            daemon = Daemon(self.procs, self.args.taskgate, d,
                            "http://127.0.0.1:%d" % standin.ports[0],
                            {"long_reads_per_team": max(1000, 2 * n)})
            token = daemon.setup_team(TEAM, KEY, PRESET)
            daemon.start()
            front = start_front(self.procs, self.args.nginx, d, daemon)
            self.stream_runs(d, res, standin, daemon, front, token)
        finally:
            self.stop_stack(res, mark, front, daemon)

    def stream_runs(self, d, res, standin, daemon, front, token):
        p = self.p
        port = front.ports[0]
        group = gateway_create_group(port, token)
        body = json.dumps({"taskgroup_id": group, "inputs": ["q"]})
        self.smoke_g(port, token, body, 1)

        def load(label):
            """The same two wrk runs with and without the streams: the maximum, then the
            fixed rate set by the first maximum; during the fixed rate, the daemon's fewest
            free workers and the CPU each process used (% of one core)."""
            mx = self.wrk(d, "max-G-" + label, port, "/v1/runs", body, token,
                          p["stream_max_secs"], p["max_conns"])
            rate = res.setdefault("offered", p["stream_lat_frac"] * mx["ok_rps"])
            self.say("streams: fixed rate %.0f requests/s, %s" % (rate, label))
            pids = {"daemon": [daemon.proc.pid], "nginx": front.workers(),
                    "standin": standin.workers()}
            if holders:  # the streams' client: the benchmark's, not the gateway's
                pids["holder"] = [holders[0].proc.pid]
            cpu0 = {k: sum(cpu_seconds(x) for x in v) for k, v in pids.items()}
            t0 = time.monotonic()
            sampler = FreeWorkers(port)
            try:
                fixed = self.wrk(d, "rate-G-" + label, port, "/v1/runs", body, token,
                                 p["stream_lat_secs"], p["lat_conns"], rate)
            finally:
                sampler.stop()
            secs = time.monotonic() - t0
            cpu = {k: (sum(cpu_seconds(x) for x in v) - cpu0[k]) * 100 / secs
                   for k, v in pids.items()}
            return {"max": mx, "rate": fixed, "workers_free_min": sampler.least,
                    "workers_free_rest": sampler.first, "cpu_pct": cpu}

        holders = []

        if p["warm_secs"]:
            self.wrk(d, "warm-G", port, "/v1/runs", body, token, p["warm_secs"], p["max_conns"])
        self.say("streams: submissions without streams")
        res["without"] = load("without")
        authorised0 = self.metric(port, 'taskgate_long_reads_authorised_total{team="%s"}' % TEAM)
        mem = res["memory"] = {"before": self.stream_memory(front, daemon)}

        self.say("streams: opening %d event streams" % p["streams"])
        path = "/v1/tasks/groups/%s/events" % group
        hold = p["stream_open_secs"] + 2 * (p["stream_max_secs"] + p["stream_lat_secs"]) + 60
        holder = StreamHolder(self.procs, d, port, path, token, p["streams"],
                              p["stream_open_secs"], hold)
        holders.append(holder)
        try:
            res["opened"] = holder.wait_open(p["stream_open_secs"] + 15)
            if res["opened"]["open"] == 0:
                raise BenchError("no event stream opened: %r\n%s"
                                 % (res["opened"], tail(holder.log)))
            time.sleep(1.0)  # every stream past its first event and nginx's first rate tick
            mem["open"] = self.stream_memory(front, daemon)
            res["authorised"] = self.metric(
                port, 'taskgate_long_reads_authorised_total{team="%s"}' % TEAM) - authorised0
            self.say("streams: submissions with %d streams open" % res["opened"]["open"])
            res["with"] = load("with")
            res["held"] = holder.state()  # still open after the load?
        finally:
            res["closed"] = holder.stop()
        time.sleep(0.5)
        mem["closed"] = self.stream_memory(front, daemon)
        opened = res["opened"]["open"]
        res["per_stream_kb"] = {
            who: (mem["open"][who].get("VmRSS", 0) - mem["before"][who].get("VmRSS", 0)) / opened
            for who in ("nginx", "daemon")}

    @staticmethod
    def stream_memory(front, daemon):
        return {"nginx": front.workers_memory(), "daemon": daemon.memory()}

    @staticmethod
    def metric(port, name):
        """One sample of the daemon's /metrics (0 when absent)."""
        status, _, data = request(port, "GET", "/metrics")
        if status != 200:
            raise BenchError("/metrics answered %d" % status)
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    # ---- running the parts ----------------------------------------------------------------

    def run_part(self, name, fn):
        t0 = time.monotonic()
        try:
            fn()
        except BenchError as e:
            self.results["failures"].append({"part": name, "error": str(e)})
            self.say("part %s FAILED: %s" % (name, e))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a bug or an unexpected answer: the part did not run
            self.results["failures"].append({"part": name, "error": "%s: %s"
                                             % (type(e).__name__, e)})
            self.say("part %s FAILED: %s: %s" % (name, type(e).__name__, e))
        finally:
            self.results["parts"].setdefault(name, {})["elapsed_s"] = time.monotonic() - t0


# ---- the PostgreSQL part's helpers -------------------------------------------------------

def postmaster_pid(pg):
    """The server's pid: the first line of its data directory's postmaster.pid."""
    with open(os.path.join(pg.data_dir, "postmaster.pid"), "r") as f:
        return int(f.readline().strip())


def tree_cpu(pid):
    """{pid: CPU seconds} of a process and its children (a postmaster and its backends)."""
    return {x: cpu_seconds(x) for x in [pid] + children(pid)}


# ---- the stream part's helpers --------------------------------------------------------------

class FreeWorkers:
    """Samples taskgate_workers_free from /metrics every 0.2 s on a thread until stop():
    .first (the first sample, before any load) and .least (the fewest seen)."""

    def __init__(self, port):
        self.port = port
        self.first = self.least = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.is_set():
            try:
                v = Bench.metric(self.port, "taskgate_workers_free")
            except (OSError, BenchError):
                v = None
            if v is not None:
                self.first = v if self.first is None else self.first
                self.least = v if self.least is None else min(self.least, v)
            self.done.wait(0.2)

    def stop(self):
        self.done.set()
        self.thread.join(10)


class StreamHolder:
    """tests/bench/streams.py holding count event streams open through nginx on port."""

    def __init__(self, procs, d, port, path, token, count, open_secs, hold):
        self.procs = procs
        self.state_path = os.path.join(d, "streams.json")
        self.log = os.path.join(d, "streams.out")
        env = dict(os.environ, BENCH_TOKEN=token)
        argv = [sys.executable, "-B", os.path.join(HERE, "streams.py"), "--port", str(port),
                "--path", path, "--count", str(count), "--state", self.state_path,
                "--open-secs", "%.1f" % open_secs, "--hold", "%.1f" % hold]
        self.proc = procs.spawn(argv, self.log, d, env=env)

    def state(self):
        try:
            with open(self.state_path, "r") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait_open(self, timeout):
        """The state once every stream has answered (phase 'open')."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if st is not None and st["phase"] != "opening":
                return st
            if self.proc.poll() is not None:
                raise BenchError("streams.py exited %s:\n%s" % (self.proc.returncode,
                                                                tail(self.log)))
            if time.monotonic() > deadline:
                raise BenchError("the streams were not open within %.0f s: %r" % (timeout, st))
            time.sleep(0.1)

    def stop(self):
        """Closes every stream (SIGTERM); the last state."""
        self.procs.stop(self.proc, signal.SIGTERM, 15.0)
        return self.state()


# ---- load generators in Python (low rates) ------------------------------------------------

def post_loop(port, token, body, until, record):
    """Posts body on one kept-alive connection until the monotonic time until; calls
    record(start, end, status) per answer."""
    import http.client
    conn = None
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    while time.monotonic() < until:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.monotonic()
        try:
            conn.request("POST", "/v1/runs", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = None
        record(t0, time.monotonic(), status)
    if conn is not None:
        conn.close()


def closed_loop(port, token, body, clients, warm, window):
    """clients threads, each sending one submission after another for warm + window
    seconds. The rate is measured in the window only: for each client, (k - 1) answers
    over the time between its first and last answer in the window, summed over clients
    (unbiased by where the window's edges fall); the plain count over the window is given
    too."""
    per_client = [[] for _ in range(clients)]
    old = threading.stack_size(256 * 1024)
    start = time.monotonic() + 0.2
    until = start + warm + window
    threads = []
    try:
        for i in range(clients):
            rec = per_client[i].append
            t = threading.Thread(target=lambda rec=rec: post_loop(
                port, token, body, until, lambda s, e, st: rec((s, e, st))), daemon=True)
            t.start()
            threads.append(t)
    finally:
        threading.stack_size(old)
    for t in threads:
        t.join(until - time.monotonic() + 120)
    w0, w1 = start + warm, start + warm + window
    rate, completed, errors, lat = 0.0, 0, 0, []
    for answers in per_client:
        ends = [e for s, e, st in answers if w0 <= e <= w1 and st == 200]
        errors += sum(1 for s, e, st in answers if w0 <= e <= w1 and st != 200)
        lat += [(e - s) * 1000 for s, e, st in answers if w0 <= e <= w1 and st == 200]
        completed += len(ends)
        if len(ends) >= 2:
            rate += (len(ends) - 1) / (ends[-1] - ends[0])
    lat.sort()
    return {"rps": rate, "rps_plain": completed / window, "completed": completed,
            "errors": errors, "window_s": window,
            "latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99),
                           "max": lat[-1] if lat else None},
            "alive_threads": sum(1 for t in threads if t.is_alive())}


def store_loop(port, token, body, db_path, clients, secs):
    """clients threads submitting body for secs seconds while a reader counts the rows of
    `runs` every 0.25 s; the rate is the slope between the first sample after 0.5 s and
    the last one."""
    statuses = {}
    lock = threading.Lock()

    def rec(s, e, st):
        with lock:
            statuses[st] = statuses.get(st, 0) + 1

    start = time.monotonic()
    until = start + secs
    threads = [threading.Thread(target=post_loop, args=(port, token, body, until, rec),
                                daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    samples = []
    conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        while time.monotonic() < until:
            n = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            samples.append((time.monotonic() - start, n))
            time.sleep(0.25)
    finally:
        conn.close()
    for t in threads:
        t.join(120)
    use = [s for s in samples if s[0] >= 0.5] or samples
    rate = None
    if len(use) >= 2 and use[-1][0] > use[0][0]:
        rate = (use[-1][1] - use[0][1]) / (use[-1][0] - use[0][0])
    return {"runs_per_s": rate, "statuses": {str(k): v for k, v in statuses.items()},
            "samples": len(samples), "secs": secs, "clients": clients}


def pct(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


# ---- reading the daemon's records ---------------------------------------------------------

def log_times(daemon, submission_id):
    """upstream_ms and total_ms from the daemon's request line for this submission."""
    for _ in range(50):  # the line is written just after the answer
        for line in reversed(daemon.log_lines()):
            if "submission_id=%s" % submission_id in line and "msg=request" in line:
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                up, total = int(fields["upstream_ms"]), int(fields["total_ms"])
                return {"upstream_ms": up, "total_ms": total, "gateway_ms": total - up}
        time.sleep(0.05)
    raise BenchError("no request line for %s in the daemon's log:\n%s"
                     % (submission_id, tail(daemon.log_path)))


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def record_gaps(db_path, submission_id, n):
    """The time between one upstream call's end and the next call's start (and, after the
    last, the submission's completion), summed: where the runs are recorded, plus reading
    the answer and building the next chunk, so an upper bound on the recording time."""
    conn = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        calls = conn.execute("SELECT started_at, finished_at FROM upstream_calls"
                             " WHERE submission_id = ? ORDER BY seq", (submission_id,)).fetchall()
        done = conn.execute("SELECT completed_at FROM submissions WHERE id = ?",
                            (submission_id,)).fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM runs WHERE submission_id = ?",
                            (submission_id,)).fetchone()[0]
    finally:
        conn.close()
    if runs != n:
        raise BenchError("submission %s has %d runs recorded, not %d" % (submission_id, runs, n))
    starts = [parse_time(s) for s, _ in calls] + [parse_time(done)]
    gaps = [starts[i + 1] - parse_time(f) for i, (_, f) in enumerate(calls)]
    total = sum(gaps)
    return {"record_gaps_ms": total, "record_runs_per_s": n / total * 1000 if total > 0 else None}


# ---- main -----------------------------------------------------------------------------------

def find_wrk(args):
    if args.wrk:
        return args.wrk if os.access(args.wrk, os.X_OK) else None
    found = shutil.which("wrk")
    if found or args.no_install:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        sys.stderr.write("[bench] wrk is missing: apt-get install -y wrk\n")
        r = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.stderr.write("[bench] apt-get install wrk failed: %s\n" % r.stderr.strip()[-300:])
    return shutil.which("wrk")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="tests/bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a few seconds: every part once with tiny loads (for CI)")
    ap.add_argument("--build", default=os.path.join(TOP, "build"),
                    help="the build directory (DIR/taskgate, DIR/tests/tg_sim)")
    ap.add_argument("--out", help="where the results go (default: a new temporary directory)")
    ap.add_argument("--nginx", help="the nginx binary (default: nginx on PATH, /usr/sbin/nginx)")
    ap.add_argument("--wrk", help="the wrk binary (default: wrk on PATH, installed with "
                    "apt-get when missing and we are root)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install wrk when it is missing")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="the parts to run, comma-separated (default: all of %s; %s, the "
                    "audit at scale on PostgreSQL, only when named)"
                    % (",".join(PARTS), ",".join(NAMED_PARTS)))
    ap.add_argument("--pidfile", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.parts = [x for x in args.parts.split(",") if x]
    unknown = [x for x in args.parts if x not in PARTS + NAMED_PARTS]
    if unknown or not args.parts:
        ap.error("--parts: %s is not a part (%s)" % (",".join(unknown) or "nothing",
                                                    ",".join(PARTS + NAMED_PARTS)))
    build = os.path.abspath(args.build)
    args.taskgate = os.path.join(build, "taskgate")
    args.sim = os.path.join(build, "tests", "tg_sim")
    args.relay = os.path.join(build, "tests", "tg_bench_relay")
    for path in (args.taskgate, args.sim, args.relay):
        if not os.access(path, os.X_OK):
            ap.error("%s is missing: build first (cmake --build %s --target taskgate tg_sim "
                     "tg_bench_relay)" % (path, build))
    args.nginx = args.nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(args.nginx, os.X_OK):
        ap.error("nginx not found (give --nginx PATH)")
    return args


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv):
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    mode = "quick" if args.quick else "full"
    out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix="taskgate-bench-")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tgb-")  # short: the daemon's socket path lives here
    os.chmod(work, 0o755)
    if args.pidfile:  # so that tests/bench/run can say where the logs are if we are killed
        with open(args.pidfile + ".workdir", "w") as f:
            f.write(work + "\n")
    procs = Procs(args.pidfile)
    bench = Bench(args, PROFILES[mode], procs, work, out)
    r = bench.results
    r.update({"mode": mode, "started": datetime.datetime.now(datetime.timezone.utc)
              .strftime("%Y-%m-%dT%H:%M:%SZ"), "cpus": os.cpu_count(),
              "loadavg_before": os.getloadavg(), "build": os.path.abspath(args.build),
              "parts_asked": args.parts,
              "profile": PROFILES[mode]})
    t0 = time.monotonic()

    try:
        asked = args.wrk
        parts = args.parts
        args.wrk = find_wrk(args) if {"static", "pg", "streams"} & set(parts) else None
        if args.wrk:
            if "static" in parts:
                bench.run_part("static", bench.part_static)
            bindir = pg_bindir()
            if "pg" not in parts:
                pass
            elif bindir and psql_path(bindir):
                bench.run_part("pg", bench.part_pg)
            else:
                r["skipped"].append("G on PostgreSQL: no PostgreSQL server binaries (initdb, "
                                    "pg_ctl, postgres, psql; apt-get install postgresql, or "
                                    "set TG_PG_BINDIR)")
                bench.say("SKIPPED G on PostgreSQL: PostgreSQL's binaries not found")
        elif {"static", "pg"} & set(parts):
            r["skipped"].append("B/F/G throughput and latency, and G on PostgreSQL: wrk %s "
                                "(apt-get install wrk)"
                                % ("%s is not executable" % asked if asked
                                   else "is not installed"))
            bench.say("SKIPPED B/F/G throughput and latency: wrk not found")
        if "slow" in parts:
            bench.run_part("slow", bench.part_slow)
        if "large" in parts:
            bench.run_part("large", bench.part_large)
        if "scale" in parts:
            bench.run_part("scale", bench.part_scale)
        if "scale-pg" in parts:
            bench.run_part("scale_pg", bench.part_scale_pg)
        if "streams" not in parts:
            pass
        elif args.wrk:
            bench.run_part("streams", bench.part_streams)
        else:
            r["skipped"].append("submissions with event streams open: wrk is missing")
    except BaseException as e:  # a signal (SystemExit) or Ctrl-C: report what was done
        r["failures"].append({"part": "run", "error": "interrupted (%s)" % type(e).__name__})
        raise
    finally:
        procs.stop_all()
        r["elapsed_s"] = time.monotonic() - t0
        r["loadavg_after"] = os.getloadavg()
        text = report.write(r, out)
        sys.stdout.write(text)
        failed = bool(r["failures"])
        if failed or args.keep:
            sys.stdout.write("working directory kept (logs): %s\n" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        sys.stdout.write("results: %s\n" % out)
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
