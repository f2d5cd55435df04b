"""Runs taskgate's browser tests: starts a real stack (nginx, the daemon, the upstream
simulator; tests/integration/harness.py), makes a team with two presets and a token, then
runs browser.test.js (playwright-core driving Debian's chromium) against it.

Environment: as the integration tests (TG_BIN, TG_SIM, TG_NGINX, TG_SOURCE_DIR), plus
TG_BROWSER_OUT, where screenshots go (default: ./browser-out), and CHROMIUM (default
/usr/bin/chromium). Installs the npm packages (npm ci) when node_modules is missing.
    python3 tests/browser/run.py            run the tests
    python3 tests/browser/run.py --serve    start the stack, print its URL and a token, wait
"""

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Stack, tail  # noqa: E402


def npm_ci():
    if os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, env=env, check=True)


def stop_on_term(signum, frame):
    raise KeyboardInterrupt  # the stack is stopped on the way out, as on Ctrl-C


def main():
    signal.signal(signal.SIGTERM, stop_on_term)
    serve = "--serve" in sys.argv[1:]
    out = os.path.abspath(os.environ.get("TG_BROWSER_OUT", "browser-out"))
    os.makedirs(out, exist_ok=True)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not serve:
        if not os.access(chromium, os.X_OK):
            sys.stderr.write("no Chromium at %s: install Debian's chromium "
                             "(bash scripts/deps.sh --test does)\n" % chromium)
            return 1
        npm_ci()
    ok = False
    # The daemon follows the runs it starts, so that the history shows what came of them.
    s = Stack(name="browser", conf={"track_groups_max": 500})
    try:
        s.start()
        s.add_team("demo", "par-key-demo", preset={"processor": "base"})
        s.set_preset("demo", "deep", {"processor": "core"})
        token, _ = s.issue_token("demo", label="browser-test")
        # A submission the upstream refused, for the history's page of a failed one.
        s.sim_fault(match="add_runs", kind="status", status=500)
        status, body, _ = s.json_req("POST", "/v1/runs", {"inputs": ["refused"]}, token=token)
        if status != 502:
            raise RuntimeError("the failing submission answered %s: %s" % (status, body))
        failed = body["error"]["detail"]["submission_id"]
        # Spend for the usage page: runs of two processors, against a monthly budget.
        s.cli_ok("team", "budget", "demo", "--monthly", "5", "--daily", "1")
        for processor, n in (("base", 4), ("core", 3), ("pro", 1)):
            status, body, _ = s.json_req("POST", "/v1/runs", {
                "inputs": ["usage %d" % i for i in range(n)], "processor": processor},
                token=token)
            if status != 200:
                raise RuntimeError("a usage submission answered %s: %s" % (status, body))
        base = "http://127.0.0.1:%d" % s.port
        if serve:
            print("taskgate at %s\ntoken %s\n(Ctrl-C or SIGTERM stops it)" % (base, token), flush=True)
            while True:
                time.sleep(3600)
        env = dict(os.environ, TG_BROWSER_URL=base, TG_BROWSER_TOKEN=token,
                   TG_BROWSER_OUT=out, CHROMIUM=chromium, TG_BROWSER_FAILED_SUB=failed,
                   TG_BROWSER_SIM="http://127.0.0.1:%d" % s.sim_port)
        r = subprocess.run(["node", "--test", "--test-reporter=spec",
                            os.path.join(HERE, "browser.test.js")], cwd=HERE, env=env)
        ok = r.returncode == 0
        if not ok:
            sys.stderr.write("daemon log tail:\n%s\n" % tail(s.daemon_log_path))
        return r.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        s.stop(keep=not ok and not serve)


if __name__ == "__main__":
    sys.exit(main())
