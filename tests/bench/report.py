"""The benchmark's report: the figures as a text table with the issue's targets (PASS/MISS,
never an error), the same as JSON, and, when gnuplot is installed, latency against offered
load as a PNG. Standard library only."""

import json
import os
import shutil
import subprocess

MB = 1024  # kB per MB, as VmHWM is given in kB


def _f(v, fmt="%.0f", none="-"):
    return none if v is None else fmt % v


def _ms(us):
    return None if us is None else us / 1000.0


def _target(r, name, value, limit, ok, shown):
    r.setdefault("targets", []).append({
        "target": name, "value": value, "limit": limit,
        "result": "n/a" if value is None else ("PASS" if ok(value) else "MISS"),
        "shown": shown})


def _saturated(run):
    return run["offered"] > 0 and run["ok_rps"] < 0.95 * run["offered"]


def targets(r):
    """Fills r['targets'] from the figures; a figure that was not measured is n/a."""
    r["targets"] = []
    st = r["parts"].get("static", {})
    mx = st.get("max")
    ratio = mx["ratio"] if mx else None
    _target(r, "G/B throughput >= 0.5", ratio, 0.5, lambda v: v >= 0.5, _f(ratio, "%.2f"))
    gf = mx.get("ratio_gf") if mx else None
    _target(r, "G/F throughput >= 0.5 (F: the bare relay)", gf, 0.5, lambda v: v >= 0.5,
            _f(gf, "%.2f"))
    half_g = next((p for p in st.get("latency_g", []) if abs(p["frac"] - 0.5) < 1e-9
                   and "F" in p), None)
    over_f = None
    if half_g:
        over_f = _ms(half_g["G"]["latency_us"]["p99"] - half_g["F"]["latency_us"]["p99"])
    _target(r, "G's p99 - F's p99 <= 2 ms at half G's max", over_f, 2.0,
            lambda v: v <= 2.0, _f(over_f, "%.2f ms"))
    pg_ratio = backend_ratio(r)
    _target(r, "G on PostgreSQL / G on SQLite >= 0.5 (requests/s)", pg_ratio, 0.5,
            lambda v: v >= 0.5, _f(pg_ratio, "%.2f"))
    half = next((p for p in st.get("latency", []) if abs(p["frac"] - 0.5) < 1e-9), None)
    added = None
    if half:
        added = _ms(half["G"]["latency_us"]["p99"] - half["B"]["latency_us"]["p99"])
    _target(r, "p99 added by the gateway <= 2 ms at half B's max", added, 2.0,
            lambda v: v <= 2.0, _f(added, "%.2f ms"))
    slow = r["parts"].get("slow", {})
    frac = slow.get("fraction_of_ideal")
    _target(r, "slow upstream: >= 95% of ideal", frac, 0.95, lambda v: v >= 0.95,
            _f(None if frac is None else frac * 100, "%.1f%%"))
    large = r["parts"].get("large", {})
    n = _f(large.get("inputs"), "%d", "10000")
    # The first submission on the new database is the "one submission"; the later
    # ones already find 10,000, 20,000... runs, and the grown case is the median of its own.
    fresh = (large.get("fresh") or {}).get("repeats") or [{}]
    gw = fresh[0].get("gateway_ms")
    _target(r, "%s inputs: <= 150 ms of gateway time (new database)" % n, gw, 150,
            lambda v: v <= 150, _f(gw, "%.0f ms"))
    grown = large.get("grown") or {}
    gw = grown.get("gateway_ms_median")
    _target(r, "%s inputs: <= 150 ms of gateway time (runs table not empty)" % n, gw, 150,
            lambda v: v <= 150, "%s (median; %s runs stored before)"
            % (_f(gw, "%.0f ms"), _f(grown.get("runs_before"), "%d")))
    # On the new database only: later, the RSS left by the sustained loop would be counted.
    hwm = ((large.get("fresh") or {}).get("rss_kb") or {}).get("VmHWM")
    hwm_mb = None if hwm is None else hwm / MB
    _target(r, "%s inputs: <= 64 MB RSS, VmHWM (new database)" % n,
            hwm_mb, 64, lambda v: v <= 64, _f(hwm_mb, "%.1f MB"))


    for key, label in (("scale", ""), ("scale_pg", " on PostgreSQL")):
        sc = r["parts"].get(key, {})
        if key == "scale_pg" and not sc:
            continue
        slowest = None
        for row in sc.get("reads") or []:
            for how in ("http", "cli"):
                x = row.get(how)
                if x is None:
                    continue
                ms = x["ms"] if x["status"] in (200, 0) else None
                if ms is None:
                    slowest = float("inf")
                elif slowest is None or ms > slowest:
                    slowest = ms
        runs = (sc.get("store") or {}).get("runs")
        _target(r, "audit at scale%s: every read < 50 ms (%s runs)" % (label, _f(runs, "%d", "?")),
                slowest, 50, lambda v: v < 50,
                "slowest %s" % ("a read failed" if slowest == float("inf")
                                else _f(slowest, "%.1f ms")))
        ratio = scale_ratio(sc)
        _target(r, "audit at scale%s: 10,000 inputs <= 1.5 x a new store" % label, ratio, 1.5,
                lambda v: v <= 1.5, _f(ratio, "%.2f x"))


def scale_ratio(sc):
    """The 10,000-input submission's median gateway time on the filled store over the
    first one's on the new store; None unless both ran."""
    fresh = (sc.get("fresh") or {}).get("gateway_ms_median")
    grown = (sc.get("grown") or {}).get("gateway_ms_median")
    if fresh is None or grown is None:
        return None
    return grown / fresh if fresh > 0 else None


def backend_ratio(r):
    """G's best requests/s on PostgreSQL over G's on SQLite, None unless both ran."""
    sq = (r["parts"].get("static", {}).get("max") or {}).get("G")
    pg = (r["parts"].get("pg", {}).get("max") or {}).get("G")
    if not sq or not pg or sq["ok_rps"] <= 0:
        return None
    return pg["ok_rps"] / sq["ok_rps"]


def _backends(w, r):
    """G's maximum on each backend, side by side."""
    sq = r["parts"].get("static", {}).get("max")
    pgp = r["parts"].get("pg", {})
    pg = pgp.get("max")
    if not pg:
        return
    srv = pgp.get("server") or {}
    w("G on each backend: the same stand-in, site, 32 daemon threads and wrk (%d connections, "
      "%d s, best of %d rounds);" % (pg["conns"], pg["secs"], len(pg["rounds"]["G"])))
    w("PostgreSQL %s on a unix socket, its own server in a temporary directory, "
      "synchronous_commit %s, fsync %s (%s)" % (
          srv.get("version", "?"), srv.get("synchronous_commit", "?"), srv.get("fsync", "?"),
          srv.get("wal_sync_method", "?")))
    w("  %-11s %10s  %-24s %7s %16s %16s" % ("", "requests/s", "rounds", "errors",
                                             "daemon us/req", "server us/req"))
    for name, m in (("SQLite", sq), ("PostgreSQL", pg)):
        if not m:
            w("  %-11s %10s  (did not run)" % (name, "-"))
            continue
        g = m["G"]
        w("  %-11s %10s  %-24s %7d %16s %16s" % (
            name, _f(g["ok_rps"]), ", ".join(_f(x["ok_rps"]) for x in m["rounds"]["G"]),
            g["error_count"],
            _f(g.get("daemon_cpu_us_per_request")), _f(g.get("server_cpu_us_per_request"))))
    ratio = backend_ratio(r)
    w("  PG/SQLite %s (target >= 0.5: %s)" % (
        _f(ratio, "%.3f"), "n/a" if ratio is None else ("PASS" if ratio >= 0.5 else "MISS")))
    w("  (us/req: CPU per request in the best round; server: the postmaster and its backends)")
    if pgp.get("states"):
        w("  PostgreSQL submissions by state once the daemon stopped: %s"
          % json.dumps(pgp["states"], sort_keys=True))
    if pgp.get("transactions_per_submission") is not None:
        w("  server transactions per submission (commits of its database, reads included): "
          "%.2f" % pgp["transactions_per_submission"])
    fl = pgp.get("floor") or {}
    if fl.get("tps"):
        w("  floor: pgbench of tests/bench/floor.sql (the same two write transactions, no "
          "gateway), %d clients, %d s: %s submissions/s" % (fl["clients"], fl["secs"],
                                                           _f(fl["tps"])))
    w("")


def _mem(kb):
    """'VmHWM x MB (now: anon y MB, file z MB)' from a vm_status dict."""
    kb = kb or {}
    return "VmHWM %.1f MB (now: RSS anon %.1f MB, file-backed %.1f MB)" % (
        kb.get("VmHWM", 0) / MB, kb.get("RssAnon", 0) / MB, kb.get("RssFile", 0) / MB)


def _statuses(runs):
    """The answers of wrk runs by status, summed ('-' when they were not counted)."""
    total = {}
    for run in runs:
        for status, n in (run.get("statuses") or {}).items():
            total[status] = total.get(status, 0) + n
    if not total:
        return "-"
    return " ".join("%s: %d" % (k, total[k]) for k in sorted(total))


def _run_row(name, run):
    lat = run["latency_us"]
    sat = "  (saturated)" if _saturated(run) else ""
    other = {k: v for k, v in (run.get("statuses") or {}).items() if k != "200"}
    if other:
        sat += "  (not 200: %s)" % ", ".join("%s: %d" % (k, other[k]) for k in sorted(other))
    return "  %-3s %9s %9s %9s %9s %9s %7d%s" % (
        name, _f(run["offered"]) if run["offered"] else "max", _f(run["ok_rps"]),
        _f(_ms(lat["p50"]), "%.2f"), _f(_ms(lat["p99"]), "%.2f"), _f(_ms(lat["max"]), "%.1f"),
        run["error_count"], sat)


def _load_row(p):
    """How full the machine was during F's and G's runs at one rate, and what G's threads
    waited for a core."""
    g = p["G"]
    waits = sorted(g.get("core_wait_us_per_request", {}).items(), key=lambda kv: -kv[1])
    return ("      busy: F %.0f %%, G %.0f %%; CPU per request F %.0f us, G %.0f us; G waited %s"
            % (p["F"]["machine_busy"] * 100, g["machine_busy"] * 100,
               p["F"].get("cpu_us_per_request", 0), g.get("cpu_us_per_request", 0),
               ", ".join("%s %.0f us" % kv for kv in waits[:3]) or "-"))


def table(r):
    out = []
    w = out.append
    w("taskgate benchmark, %s mode, %s, %s CPUs, load average %.2f before / %.2f after, "
      "%.0f s" % (r["mode"], r["started"], r["cpus"], r["loadavg_before"][0],
                  r["loadavg_after"][0], r["elapsed_s"]))
    if r["mode"] == "quick":
        w("(quick mode: tiny loads to keep the script working; the figures mean little)")
    w("")
    st = r["parts"].get("static", {})
    mx = st.get("max")
    if mx:
        w("B = nginx proxy_pass to the static stand-in (adds x-api-key); F = nginx (G's site) -> "
          "a bare FastCGI relay")
        w("(tests/bench/relay.c, %d threads with a libcurl handle each: no JSON, database or "
          "auth) -> the same stand-in;" % st.get("relay_threads", 16))
        w("G = nginx -> taskgate (FastCGI, real site, SQLite audit, %d threads) -> the same "
          "stand-in." % st.get("daemon_threads", 32))
        w("B and G share one front nginx worker, F has its own; wrk -t%d; 2 cores shared by all."
          % r["profile"]["wrk_threads"])
        w("")
        w("Maximum throughput (wrk, %d connections, %d s, best of %d rounds)"
          % (mx["conns"], mx["secs"], len(mx["rounds"]["B"])))
        w("  %-3s %12s  %-28s %7s %9s  %s" % ("", "requests/s", "rounds", "errors",
                                              "us CPU/req", "answers by status"))
        for k in ("B", "F", "G"):
            if k not in mx:
                continue
            rounds = ", ".join(_f(x["ok_rps"]) for x in mx["rounds"][k])
            w("  %-3s %12s  %-28s %7d %9s  %s" % (
                k, _f(mx[k]["ok_rps"]), rounds, mx[k]["error_count"],
                _f(mx[k].get("daemon_cpu_us_per_request")), _statuses(mx["rounds"][k])))
        w("  G/B %.3f   F/B %s   G/F %s" % (mx["ratio"], _f(mx.get("ratio_fb"), "%.3f"),
                                           _f(mx.get("ratio_gf"), "%.3f")))
        if mx.get("share_refusals") is not None:
            w("  the daemon refused %.0f of G's submissions over these rounds for the team's "
              "worker share (429, taskgate_worker_share_refusals_total)" % mx["share_refusals"])
        cpu = mx["G"].get("daemon_cpu_us_per_request")
        if cpu is not None:
            w("  (us CPU/req: the daemon's, or the relay's, CPU per request in its best round; "
              "G's daemon used %.0f%% of one core)" % (cpu * mx["G"]["rps"] / 1e4))
        gc = mx.get("group_commit")
        if gc:
            w("  group commit over the G rounds: %.1f writes per transaction, %.1f WAL pages "
              "per request" % (gc["writes_per_transaction"], gc["wal_pages_per_request"]))
        w("")
    _backends(w, r)
    if st.get("latency"):
        w("Latency at a fixed offered load (wrk + tests/bench/wrk.lua pacing, %d connections, "
          "%d s each)" % (r["profile"]["lat_conns"], r["profile"]["lat_secs"]))
        w("  %-3s %9s %9s %9s %9s %9s %7s" % ("", "offered/s", "achieved", "p50 ms", "p99 ms",
                                              "max ms", "errors"))
        loads = False
        for key, whose in (("latency_g", "G"), ("latency", "B")):
            for p in st.get(key) or []:
                vs_f = ""
                if "F" in p:
                    vs_f = ", G's p99 - F's p99 = %.2f ms" % _ms(
                        p["G"]["latency_us"]["p99"] - p["F"]["latency_us"]["p99"])
                w(" %3.0f%% of %s's max: G's p99 - B's p99 = %.2f ms%s"
                  % (p["frac"] * 100, whose,
                     _ms(p["G"]["latency_us"]["p99"] - p["B"]["latency_us"]["p99"]), vs_f))
                for k in ("B", "F", "G"):
                    if k in p:
                        w(_run_row(k, p[k]))
                if "machine_busy" in p["G"] and "machine_busy" in p.get("F", {}):
                    w(_load_row(p))
                    loads = True
        w("  (saturated: achieved < 95% of offered; its latencies are then closed-loop, "
          "measured from the send)")
        if loads:
            w("  (busy: the share of the cores used by everything while it ran; waited: "
              "per request, its threads' time runnable without a core, by thread)")
        w("")
    if st.get("rss_kb"):
        w("Daemon after the B/G runs: %s" % _mem(st["rss_kb"]))
        w("  submissions by state once it stopped: %s" % json.dumps(st.get("states", {})))
        files = st.get("files_running")
        if files:
            w("  database %.1f MB, its WAL %.1f MB (while the daemon ran)"
              % (files["db"] / 2**20, files["db_wal"] / 2**20))
        w("")
    slow = r["parts"].get("slow", {})
    if "rps" in slow:
        w("Slow upstream (tg_sim --latency-ms %d), %d clients one submission after another, "
          "threads = %d, %.1f s window"
          % (slow["upstream_latency_ms"], slow["clients"], slow["threads"], slow["window_s"]))
        w("  submissions/s %.1f (plain count %.1f) of ideal %.1f = %.1f%%; %d answers, %d "
          "errors" % (slow["rps"], slow["rps_plain"], slow["ideal_rps"],
                      slow["fraction_of_ideal"] * 100, slow["completed"], slow["errors"]))
        lat = slow["latency_ms"]
        w("  latency p50 %s ms, p99 %s ms, max %s ms" % (
            _f(lat["p50"], "%.1f"), _f(lat["p99"], "%.1f"), _f(lat["max"], "%.1f")))
        w("  daemon %s" % _mem(slow.get("rss_kb")))
        w("")
    large = r["parts"].get("large", {})
    if large.get("fresh"):
        w("One submission of %d inputs (%d bytes) to tg_sim without latency; gateway time = "
          "total_ms - upstream_ms of the daemon's log line;" % (large["inputs"],
                                                                 large["body_bytes"]))
        w("'between calls': from each add-runs answer to the next call (or to completion), "
          "from upstream_calls and submissions:")
        w("reading the answer, recording its 1,000 runs, building the next body; so runs/s "
          "recorded is a lower bound")
        for key in ("fresh", "grown"):
            part = large.get(key)
            if not part:
                continue
            w("  with %d runs already in the database; RSS before them %.1f MB; daemon %s%s:"
              % (part["runs_before"], part["rss_before_kb"].get("VmRSS", 0) / MB,
                 _mem(part["rss_kb"]),
                 "" if part["peak_reset"] else " (peak not reset: since start-up)"))
            for i, x in enumerate(part["repeats"]):
                w("  #%d  gateway %4d ms (total %d, upstream %d; client saw %.0f ms), %d calls; "
                  "between calls %.0f ms -> >= %s runs/s recorded"
                  % (i + 1, x["gateway_ms"], x["total_ms"], x["upstream_ms"], x["client_ms"],
                     x["calls"], x["record_gaps_ms"], _f(x["record_runs_per_s"])))
        w("")
    loop = large.get("store_loop")
    if loop:
        w("Audit store, sustained: %d clients sending %d-input submissions to tg_sim for %.0f s; "
          "SELECT count(*) FROM runs" % (loop["clients"], loop["inputs_per_submission"],
                                         loop["secs"]))
        w("  sampled every 0.25 s: %s runs/s recorded end to end (answers by status: %s)"
          % (_f(loop["runs_per_s"]), json.dumps(loop["statuses"])))
        w("  (a lower bound on the store alone: each run also crosses nginx, JSON, tg_sim)")
        w("  daemon %s" % _mem(loop.get("rss_kb")))
        files = large.get("files")
        if files:
            w("  database %.1f MB, its WAL %.1f MB (while the daemon ran)"
              % (files["db"] / 2**20, files["db_wal"] / 2**20))
        w("")
    for key in ("scale", "scale_pg"):
        if r["parts"].get(key, {}).get("reads"):
            _scale(w, r["parts"][key])
    streams = r["parts"].get("streams", {})
    if streams.get("with"):
        _streams(w, streams)
    w("Targets (from the issue; never fail the script):")
    for t in r.get("targets", []):
        w("  %-5s %-64s %s" % (t["result"], t["target"], t["shown"]))
    w("")
    for s in r["skipped"]:
        w("SKIPPED %s" % s)
    for f in r["failures"]:
        w("FAILED to run: %s: %s" % (f["part"], f["error"]))
    return "\n".join(out) + "\n"


def _scale(w, sc):
    """The audit at scale: the fill, the store, every read, the large submission, the prune."""
    fill, store = sc["fill"], sc["store"]
    w("Audit at scale (%s): the store filled through the gateway to %d runs in %d submissions "
      "(%.0f s, %s runs/s; answers %s)" % (sc.get("backend", "sqlite"), store["runs"],
                                          store["submissions"], fill["secs"],
                                          _f(fill["runs_per_s"]), json.dumps(fill["statuses"])))
    w("  database %.1f MB + WAL %.1f MB = %s bytes per run"
      % (store["files"]["db"] / 2**20, store["files"]["db_wal"] / 2**20,
         _f(store["bytes_per_run"])))
    w("  each read: median of %s over HTTP (an audit token, through nginx) and with the CLI "
      "(`taskgate audit`, process start included)" % "the repeats")
    w("  %-36s %10s %8s %9s   %10s %8s %9s" % ("read", "HTTP ms", "max", "bytes", "CLI ms",
                                               "max", "bytes"))
    for row in sc["reads"]:
        cells = []
        for how in ("http", "cli"):
            x = row.get(how)
            if x is None:
                cells.append("%10s %8s %9s" % ("-", "", ""))
            elif x["status"] not in (200, 0):
                cells.append("%10s %8s %9s" % ("(%s)" % x["status"], "", ""))
            else:
                cells.append("%10.1f %8.1f %9d" % (x["ms"], x["max_ms"], x["bytes"]))
        w("  %-36s %s   %s" % (row["read"], cells[0], cells[1]))
    w("  10,000 inputs, on the filled store and on a new one beside it in turn (each into a new "
      "group):")
    for key, label in (("fresh", "new store"), ("grown", "filled store")):
        part = sc.get(key)
        if part:
            w("    %-12s (%7d runs before): gateway %s ms; the daemon's CPU %s ms"
              % (label, part["runs_before"],
                 ", ".join("%d" % x["gateway_ms"] for x in part["repeats"]),
                 ", ".join("%.0f" % x.get("daemon_cpu_ms", 0) for x in part["repeats"])))
    ratio = scale_ratio(sc)
    if ratio is not None:
        cpu = [(sc.get(k) or {}).get("daemon_cpu_ms_median") for k in ("fresh", "grown")]
        w("    median on the filled store / on the new store: gateway time %.2f%s"
          % (ratio, ", CPU %.2f" % (cpu[1] / cpu[0]) if None not in cpu and cpu[0] else ""))
    for key in ("summary_exact", "summary_exact_after_prune"):
        if key in sc:
            w("  audit_summary adds up to the tables (%s): %s"
              % ("after the prune" if key.endswith("prune") else "filled",
                 "n/a (no audit_summary)" if sc[key] is None else json.dumps(sc[key])))
    pr = sc.get("prune")
    if pr:
        lat = pr["latency_ms"]
        w("  taskgate audit prune --before %s: %.1f s, deleted %s; one client submitting "
          "meanwhile: %d answers %s," % (pr["before"], pr["secs"], json.dumps(pr["deleted"]),
                                         pr["submissions_during"], json.dumps(pr["statuses"])))
        w("    latency p50 %s ms, p99 %s ms, max %s ms" % (
            _f(lat["p50"], "%.1f"), _f(lat["p99"], "%.1f"), _f(lat["max"], "%.1f")))
        after = sc.get("store_after_prune")
        if after:
            w("  after the prune: %d runs, %d submissions" % (after["runs"],
                                                             after["submissions"]))
    w("")


def _streams(w, st):
    """The stream part: submissions with and without the streams, memory per stream."""
    op, held, closed = st["opened"], st.get("held") or {}, st.get("closed") or {}
    w("Event streams: %d group event streams (GET /v1/tasks/groups/{id}/events) through the "
      "same nginx, each authorised" % st["streams"])
    w("by the daemon, then proxied by nginx to the stand-in (one small write a second per "
      "stream); submissions as G above")
    w("  %d of %d open after %.2f s (answers by status: %s); %d authorised by the daemon; "
      "still open after the load: %s; ended early: %s"
      % (op["open"], op["requested"], op["open_s"] or 0, json.dumps(op["statuses"],
                                                                   sort_keys=True),
         st.get("authorised", 0), _f(held.get("open"), "%d"),
         _f(closed.get("ended"), "%d")))
    w("  %-16s %10s %9s %9s %9s %9s %9s %7s %6s" % (
        "", "max req/s", "offered/s", "achieved", "p50 ms", "p99 ms", "max ms", "errors",
        "free"))
    for key, name in (("without", "without streams"), ("with", "with %d open" % op["open"])):
        x = st[key]
        lat = x["rate"]["latency_us"]
        w("  %-16s %10s %9s %9s %9s %9s %9s %7d %6s%s" % (
            name, _f(x["max"]["ok_rps"]), _f(x["rate"]["offered"]), _f(x["rate"]["ok_rps"]),
            _f(_ms(lat["p50"]), "%.2f"), _f(_ms(lat["p99"]), "%.2f"),
            _f(_ms(lat["max"]), "%.1f"), x["max"]["error_count"] + x["rate"]["error_count"],
            _f(x.get("workers_free_min"), "%d"),
            "  (saturated)" if _saturated(x["rate"]) else ""))
    w("  (wrk: the maximum with %d connections for %d s, then %.0f%% of the maximum without "
      "streams with %d connections" % (st["conns"], st["max_secs"], st["frac"] * 100,
                                       st["lat_conns"]))
    w("  for %d s; free: the fewest of the daemon's free workers during the fixed rate, "
      "taskgate_workers_free every 0.2 s)" % st["lat_secs"])
    for key, name in (("without", "without streams"), ("with", "with the streams")):
        cpu = st[key].get("cpu_pct") or {}
        w("  CPU during the fixed rate, %s: daemon %.0f%%, nginx %.0f%%, stand-in %.0f%%%s "
          "of one core" % (name, cpu.get("daemon", 0), cpu.get("nginx", 0),
                           cpu.get("standin", 0),
                           ", streams' client %.0f%%" % cpu["holder"] if "holder" in cpu else ""))
    w("  free workers at rest: %s without streams, %s with them open"
      % (_f(st["without"].get("workers_free_rest"), "%d"),
         _f(st["with"].get("workers_free_rest"), "%d")))
    mem = st["memory"]
    per = st["per_stream_kb"]
    for who, name in (("nginx", "nginx's worker"), ("daemon", "the daemon")):
        w("  %-15s VmRSS %.1f MB before, %.1f MB with the streams open (%+.1f kB per stream), "
          "%.1f MB once closed" % (name, mem["before"][who].get("VmRSS", 0) / MB,
                                   mem["open"][who].get("VmRSS", 0) / MB, per[who],
                                   (mem.get("closed") or {}).get(who, {}).get("VmRSS", 0) / MB))
    w("")


def plot(r, out):
    """latency.dat always; latency.png when gnuplot is installed. Returns a note."""
    st = r["parts"].get("static", {})
    points = sorted((st.get("latency") or []) + (st.get("latency_g") or []),
                    key=lambda p: p["offered"])
    if not points:
        return "no latency points to plot"
    dat = os.path.join(out, "latency.dat")
    with open(dat, "w") as f:
        f.write("# offered/s  B_achieved B_p50_ms B_p99_ms  G_achieved G_p50_ms G_p99_ms "
                "G_saturated\n")
        for p in points:
            b, g = p["B"], p["G"]
            f.write("%.1f  %.1f %.3f %.3f  %.1f %.3f %.3f %d\n" % (
                p["offered"], b["ok_rps"], _ms(b["latency_us"]["p50"]),
                _ms(b["latency_us"]["p99"]), g["ok_rps"], _ms(g["latency_us"]["p50"]),
                _ms(g["latency_us"]["p99"]), 1 if _saturated(g) else 0))
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not installed: no latency.png (data in latency.dat)"
    png = os.path.join(out, "latency.png")
    script = "\n".join([
        "set terminal png size 900,640",
        "set output '%s'" % png,
        "set title 'taskgate: latency against offered load (B = nginx proxy, G = taskgate)'",
        "set xlabel 'offered load, requests/s'",
        "set ylabel 'latency, ms'",
        "set logscale xy",
        "set grid",
        "set key outside below",
        "plot '%s' using 1:3 with linespoints lc 1 pt 7 title 'B p50', "
        "'' using 1:4 with linespoints lc 2 pt 5 title 'B p99', "
        "'' using 1:($8 == 0 ? $6 : 1/0) with linespoints lc 3 pt 7 title 'G p50', "
        "'' using 1:($8 == 0 ? $7 : 1/0) with linespoints lc 4 pt 5 title 'G p99', "
        "'' using 1:($8 == 1 ? $6 : 1/0) with points lc 3 pt 6 "
        "title 'G p50, saturated (achieved < 95%% of offered)', "
        "'' using 1:($8 == 1 ? $7 : 1/0) with points lc 4 pt 4 title 'G p99, saturated'" % dat,
    ])
    res = subprocess.run([gnuplot], input=script, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        return "gnuplot failed: %s" % res.stderr.strip()[-300:]
    return "plot: %s" % png


def write(r, out):
    """Writes bench-results.txt, bench-results.json and the plot to out; the text."""
    targets(r)
    note = plot(r, out)
    text = table(r) + note + "\n"
    with open(os.path.join(out, "bench-results.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "bench-results.json"), "w") as f:
        json.dump(r, f, indent=1, sort_keys=True)
        f.write("\n")
    return text
