#!/usr/bin/env python3
"""G alone, two builds side by side: what one change buys, on a machine too noisy for two
runs of tests/bench/run taken one after the other to tell a few per cent apart.

    tests/bench/pair.py BUILD_A BUILD_B [--secs 8] [--rounds 6] [--rate 0] [--conns 64]

Each build gets a stack of its own (static stand-in, daemon with its team, front nginx with
the real site), both started before the first round; then wrk sends one-input submissions
to one stack at a time, the order of the two alternating round by round, so that what the
machine does meanwhile falls on both alike. --rate 0 is as fast as they go; a rate is
offered through wrk.lua's pacing (the latencies are then the ones to read). Per round and
build it prints requests/s answered 2xx, the daemon's CPU per request, p50/p99, and from
/metrics the writes per transaction, WAL pages per transaction and how much of the round the
one SQLite writer was held (by write transactions, and by checkpoints: near 100 % in all,
writes queue), and the share of writes that waited over 2 ms for their transaction (the
histogram taskgate_db_wait_seconds; nan from a build without it); at the end the medians.
Standard library only; exit status 1 when a stack could not run (the reason is printed).
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import KEY, PRESET, TEAM, Bench, gateway_create_group, start_front, start_standin  # noqa: E402
from stack import BenchError, Daemon, Procs, request, thread_times  # noqa: E402

COUNTERS = ("taskgate_db_writes_total", "taskgate_db_transactions_total",
            "taskgate_db_wal_frames_total", 'taskgate_db_writer_held_seconds_total{by="writes"}',
            'taskgate_db_writer_held_seconds_total{by="checkpoints"}',
            'taskgate_db_wait_seconds_bucket{le="0.002"}', "taskgate_db_wait_seconds_count")


def counters(port):
    status, _, data = request(port, "GET", "/metrics")
    if status != 200:
        raise BenchError("/metrics answered %d" % status)
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        m = re.match(r'^([a-z_]+(?:\{[a-z]+="[^"]+"\})?) ([0-9.e+-]+)$', line)
        if m and m.group(1) in COUNTERS:
            out[m.group(1)] = float(m.group(2))
    return out


def slow_share(delta):
    """The share of writes that waited over 2 ms for their transaction, in per cent (nan
    from a build without the histogram)."""
    n = delta["taskgate_db_wait_seconds_count"]
    return 100.0 * (n - delta[COUNTERS[5]]) / n if n > 0 else float("nan")


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs=2, metavar="BUILD", help="build directories (taskgate)")
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s offered; 0: all")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--wrk", default=shutil.which("wrk"))
    a = ap.parse_args()
    if not a.wrk:
        print("pair.py: wrk is missing (tests/bench/run installs it)", file=sys.stderr)
        return 1
    for b in a.builds:
        if not os.access(os.path.join(b, "taskgate"), os.X_OK):
            print("pair.py: %s/taskgate is missing: build first" % b, file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="tg-pair.")
    procs = Procs()
    args = types.SimpleNamespace(wrk=a.wrk, nginx=a.nginx)
    runner = Bench(args, {"wrk_threads": 2}, procs, work, work)
    sides, daemons = [], []
    try:
        for name, build in zip("AB", a.builds):
            d = os.path.join(work, name)
            os.makedirs(d)
            os.chmod(d, 0o755)
            st = start_standin(procs, a.nginx, d, KEY)
            dm = Daemon(procs, os.path.join(build, "taskgate"), d,
                        "http://127.0.0.1:%d" % st.ports[0])
            token = dm.setup_team(TEAM, KEY, PRESET)
            dm.start()
            daemons.append(dm)
            port = start_front(procs, a.nginx, d, dm, KEY, st.ports[0]).ports[0]
            body = json.dumps({"taskgroup_id": gateway_create_group(port, token),
                               "inputs": ["q"]})
            runner.wrk(d, "warm", port, "/v1/runs", body, token, 2, a.conns, a.rate)
            sides.append((name, d, dm, token, port, body))
        res = {name: [] for name in "AB"}
        for i in range(a.rounds):
            for name, d, dm, token, port, body in (sides if i % 2 == 0 else sides[::-1]):
                m0, c0, t0 = counters(port), dm.cpu(), thread_times(dm.proc.pid)
                r = runner.wrk(d, "round%d" % i, port, "/v1/runs", body, token, a.secs,
                               a.conns, a.rate)
                m1, cpu, t1 = counters(port), dm.cpu() - c0, thread_times(dm.proc.pid)
                n = max(1, r["requests"])
                per = {k: [(t1[k][j] - t0.get(k, [0, 0, 0])[j]) / n for j in range(3)]
                       for k in t1}
                wk, wr = per.get("tg-worker", [0, 0, 0]), per.get("tg-writer", [0, 0, 0])
                ck = per.get("tg-checkpoint", [0, 0, 0])
                delta = {k: m1.get(k, 0) - m0.get(k, 0) for k in COUNTERS}
                tx = max(1.0, delta["taskgate_db_transactions_total"])
                lat = r.get("latency_us", {})
                row = (r["ok_rps"], cpu * 1e6 / max(1, r["requests"]), lat.get("p50", 0) / 1e3,
                       lat.get("p99", 0) / 1e3, delta["taskgate_db_writes_total"] / tx,
                       delta["taskgate_db_wal_frames_total"] / tx,
                       100.0 * delta[COUNTERS[3]] / a.secs, 100.0 * delta[COUNTERS[4]] / a.secs,
                       slow_share(delta), wk[0] / 1e3, wr[0] / 1e3, wk[1] / 1e3, wk[2] + wr[2],
                       ck[0] / 1e3)
                res[name].append(row)
                print("%s round %d: %6.0f req/s  %4.0f us CPU/req  p50 %.2f ms  p99 %.2f ms"
                      "  %.1f writes/tx  %.1f WAL pages/tx  writer held %.0f%% + %.0f%% by"
                      " checkpoints  %.2f%% of writes queued > 2 ms  CPU/req: workers %.0f us,"
                      " writer %.0f us; workers waited %.0f us for a core, %.1f switches/req;"
                      " checkpointer %.0f us" % ((name, i) + row), flush=True)
        print("medians over %d rounds of %d s, %s:" % (
            a.rounds, a.secs, "as fast as they go" if a.rate <= 0 else "%.0f/s offered" % a.rate))
        for name, build in zip("AB", a.builds):
            cols = list(zip(*res[name]))
            m = [median(cols[k]) for k in (0, 1, 9, 10, 13, 3, 5, 6, 7, 8, 11, 12)]
            print("  %s %s: %.0f req/s, %.0f us CPU/req (workers %.0f, writer %.0f, checkpointer"
                  " %.0f), p99 %.2f ms, %.1f WAL pages/tx, writer held %.0f%% + %.0f%%, %.2f%%"
                  " of writes queued > 2 ms, workers waited %.0f us for a core, %.1f switches/req"
                  % tuple([name, build] + m))
        return 0
    except BenchError as e:
        print("pair.py: %s" % e, file=sys.stderr)
        return 1
    finally:
        for dm in daemons:
            try:
                dm.stop()
            except (BenchError, OSError):
                pass
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
