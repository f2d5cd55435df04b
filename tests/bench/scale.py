"""The benchmark's "audit at scale" part (issue 17): a store filled through the gateway to a
million runs, then every audit read over HTTP and with the CLI timed on it, the store's bytes
per run, the 10,000-input submission on it against a new store, and a prune of half of it
while submissions go on. Run by bench.py (Bench.part_scale); standard library only."""

import http.client
import json
import os
import statistics
import subprocess
import threading
import time

from stack import BenchError, child_env, request


def fill(port, token, groups, inputs, target_runs, runs_now, clients=2):
    """clients threads sending submissions of `inputs` inputs, round robin over groups,
    until the runs recorded reach target_runs (counted from the answers: runs_now plus
    `inputs` per accepted submission). Returns {runs, submissions, secs, runs_per_s,
    statuses, marks}: marks are (runs, time) pairs a few times along the way, so that a
    reader can ask for "the runs since" a point of the fill."""
    lock = threading.Lock()
    state = {"runs": runs_now, "submissions": 0, "statuses": {}, "next": 0, "marks": []}
    bodies = [json.dumps({"taskgroup_id": g, "inputs": ["q%d %d" % (j, i)
                                                        for i in range(inputs)]})
              for j, g in enumerate(groups)]
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    step = max(inputs, (target_runs - runs_now) // 10)

    def client():
        conn = None
        while True:
            with lock:
                if state["runs"] >= target_runs:
                    break
                body = bodies[state["next"] % len(bodies)]
                state["next"] += 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request("POST", "/v1/runs", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = None
            with lock:
                state["statuses"][str(status)] = state["statuses"].get(str(status), 0) + 1
                if status == 200:
                    before = state["runs"]
                    state["runs"] += inputs
                    state["submissions"] += 1
                    if before // step != state["runs"] // step:
                        state["marks"].append((state["runs"], utc_now()))
                elif status not in (429, 503):
                    raise BenchError("a fill submission answered %d" % status)
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    errors = []

    def run():
        try:
            client()
        except BenchError as e:
            errors.append(str(e))
            with lock:
                state["runs"] = target_runs  # stops the others

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(errors[0])
    secs = time.monotonic() - t0
    added = state["submissions"] * inputs
    return {"runs": state["runs"], "submissions": state["submissions"], "secs": secs,
            "runs_per_s": added / secs if secs > 0 else None, "statuses": state["statuses"],
            "marks": state["marks"]}


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%03dZ" % (
        int(time.time() * 1000) % 1000)


def http_read(port, token, path, repeats):
    """GET path `repeats` times: {status, bytes, ms (median), max_ms, rows}."""
    times, status, size, rows = [], None, 0, None
    headers = {"Authorization": "Bearer " + token}
    for _ in range(repeats):
        t0 = time.perf_counter()
        status, hdrs, data = request(port, "GET", path, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        size = len(data)
    if status == 200 and not path.endswith("csv"):
        a = json.loads(data)
        rows = sum(len(v) for v in a.values() if isinstance(v, list))
    elif status == 200:
        rows = max(0, data.count(b"\r\n") - 1)
    return {"status": status, "bytes": size, "ms": statistics.median(times),
            "max_ms": max(times), "rows": rows}


def cli_read(daemon, args, repeats):
    """`taskgate audit ARGS` `repeats` times: {status (exit code), bytes, ms, max_ms}; its
    time includes starting the process and opening the store."""
    times, code, size = [], None, 0
    argv = [daemon.bin, "--config", daemon.conf_path, "audit"] + list(args)
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, timeout=120, cwd=daemon.dir,
                           env=child_env())
        times.append((time.perf_counter() - t0) * 1000)
        code, size = r.returncode, len(r.stdout)
    return {"status": code, "bytes": size, "ms": statistics.median(times),
            "max_ms": max(times)}


def reads(port, daemon, audit, ids, repeats):
    """Every audit read the issue lists, over HTTP (the audit token) and with the CLI; ids:
    run, submission, group, team, since. [{read, http, cli}]."""
    run, sub, group, team, since = (ids[k] for k in ("run", "submission", "group", "team",
                                                     "since"))
    first = http_read(port, audit, "/v1/audit/groups/%s?limit=100" % group, 1)
    cursor = None
    if first["status"] == 200:
        _, hdrs, _ = request(port, "GET", "/v1/audit/groups/%s?limit=100" % group,
                             headers={"Authorization": "Bearer " + audit})
        cursor = hdrs.get("x-next-cursor")
    table = [
        ("run by id", "/v1/audit/runs/%s" % run, ["run", run, "--json"]),
        ("submission by id (with its runs)", "/v1/audit/submissions/%s" % sub,
         ["submission", sub, "--json"]),
        ("group page, first (limit 100)", "/v1/audit/groups/%s?limit=100" % group,
         ["group", group, "--limit", "100", "--json"]),
        ("group page, next (cursor)", "/v1/audit/groups/%s?limit=100&cursor=%s"
         % (group, cursor) if cursor else None,
         ["group", group, "--limit", "100", "--cursor", cursor, "--json"] if cursor else None),
        ("a team's runs since (limit 100)", "/v1/audit/runs?team=%s&since=%s&limit=100"
         % (team, since), ["runs", "--team", team, "--since", since, "--limit", "100",
                           "--json"]),
        ("a team's submissions (limit 100)", "/v1/audit/submissions?team=%s&limit=100" % team,
         ["submissions", "--team", team, "--limit", "100", "--json"]),
        ("submissions by state (failed)", "/v1/audit/submissions?state=failed&limit=100",
         ["submissions", "--state", "failed", "--limit", "100", "--json"]),
        ("summary, every team", "/v1/audit/summary", ["summary", "--json"]),
        ("summary, a team since", "/v1/audit/summary?team=%s&since=%s" % (team, since[:10]),
         ["summary", "--team", team, "--since", since[:10], "--json"]),
        ("summary, durations by processor", "/v1/audit/summary?part=durations",
         ["summary", "--part", "durations", "--json"]),
        ("CSV export of runs (1,000 rows)", "/v1/audit/runs?since=%s&limit=1000&format=csv"
         % since, ["runs", "--since", since, "--limit", "1000", "--csv"]),
        ("CSV export of submissions", "/v1/audit/submissions?limit=1000&format=csv",
         ["submissions", "--limit", "1000", "--csv"]),
    ]
    out = []
    for name, path, args in table:
        row = {"read": name}
        row["http"] = http_read(port, audit, path, repeats) if path else None
        row["cli"] = cli_read(daemon, args, repeats) if args else None
        out.append(row)
    return out


def prune_under_load(port, token, daemon, group, before):
    """`taskgate audit prune --before BEFORE` while one client sends one-input submissions
    one after another: the prune's time and counts, and the submissions' latencies while it
    ran (p50, p99, max)."""
    body = json.dumps({"taskgroup_id": group, "inputs": ["q"]})
    lat, statuses = [], {}
    done = threading.Event()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/runs", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        conn.close()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    time.sleep(0.5)  # the client's first answers, before the prune starts
    n_before = len(lat)
    t0 = time.monotonic()
    r = subprocess.run([daemon.bin, "--config", daemon.conf_path, "audit", "prune",
                        "--before", before], capture_output=True, text=True, timeout=3600,
                       cwd=daemon.dir, env=child_env())
    secs = time.monotonic() - t0
    during = sorted(lat[n_before:])
    done.set()
    t.join(120)
    if r.returncode != 0:
        raise BenchError("audit prune exited %d: %s" % (r.returncode, r.stderr.strip()))
    counts = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return {"secs": secs, "deleted": counts, "submissions_during": len(during),
            "statuses": statuses,
            "latency_ms": {"p50": pct(during, 50), "p99": pct(during, 99),
                           "max": during[-1] if during else None}}


def pct(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def store_figures(value, sizes):
    """Runs and submissions stored, the store's size (sizes(): {"db", "db_wal"} in bytes)
    and bytes per run."""
    runs = value("SELECT count(*) FROM runs")
    subs = value("SELECT count(*) FROM submissions")
    files = sizes()
    total = files["db"] + files["db_wal"]
    return {"runs": runs, "submissions": subs, "files": files,
            "bytes_per_run": total / runs if runs else None}


def summary_check(value):
    """Whether audit_summary's runs and submissions add up to the tables' counts, and the
    durations' runs to the completed runs counted (None when the store has no
    audit_summary: a build before it)."""
    try:
        runs = value("SELECT coalesce(sum(runs), 0) FROM audit_summary")
        subs = value("SELECT count(*) FROM submissions s WHERE NOT EXISTS"
                     " (SELECT 1 FROM runs r WHERE r.submission_id = s.id)")
        none = value("SELECT coalesce(sum(submissions), 0) FROM audit_summary"
                     " WHERE processor IS NULL AND runs = 0")
    except Exception:  # noqa: BLE001 - no such table (sqlite3's or psql's error)
        return None
    out = {"runs_match": runs == value("SELECT count(*) FROM runs"),
           "runless_match": none == subs}
    try:
        counted = value("SELECT coalesce(sum(runs), 0) FROM duration_counts")
        out["durations_match"] = counted == value(
            "SELECT count(*) FROM run_status WHERE duration_ms IS NOT NULL")
        out["completed_counted"] = counted
    except Exception:  # noqa: BLE001 - a build before the durations
        pass
    return out
