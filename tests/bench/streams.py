#!/usr/bin/env python3
"""The benchmark's event-stream holder: opens COUNT event streams through the front nginx on
127.0.0.1:PORT (GET PATH with the team's token from BENCH_TOKEN), keeps them open reading
what arrives, and closes them all on SIGTERM, SIGINT or SIGHUP, when the process that
started it is gone, or HOLD seconds after it started, whichever comes first. Loopback only,
at most MAX_COUNT streams and MAX_HOLD seconds whatever it is asked; the soft RLIMIT_NOFILE
is raised to the hard one. Standard library only (asyncio); bench.py starts it and reads
its state file.

The state file (written whole, then renamed into place) is JSON:
  {"phase": "opening"|"open"|"done", "requested", "open" (streams that answered 200 and sent
   their first bytes and are still open), "statuses" ({"200": n, "429": n, "0": connection
   failed, ...}), "ended" (streams that ended after opening), "open_s" (seconds until every
   stream had answered), "bytes", "events" (blank-line-ended events read), "errors" (a few
   examples)}.
"phase" is "open" once every stream has answered (or OPEN_SECS passed), rewritten every
second while they are held, "done" at the end.
"""

import sys

sys.dont_write_bytecode = True

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import time

MAX_COUNT = 10000
MAX_HOLD = 600.0
HEAD_MAX = 16384


def raise_nofile(needed):
    """Raises the soft RLIMIT_NOFILE to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        sys.stderr.write("streams.py: RLIMIT_NOFILE is %d, fewer than the %d descriptors %d "
                         "streams need; some will fail to open\n" % (soft, needed, needed - 64))
    return soft


class Holder:
    def __init__(self, args):
        self.a = args
        self.statuses = {}
        self.open = 0
        self.ended = 0
        self.answered = 0
        self.bytes = 0
        self.events = 0
        self.errors = []
        self.t0 = time.monotonic()
        self.open_s = None
        self.stop = asyncio.Event()
        self.all_answered = asyncio.Event()

    def note(self, status, error=None):
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.answered += 1
        if error and len(self.errors) < 5:
            self.errors.append(error)
        if self.answered >= self.a.count:
            self.all_answered.set()

    def state(self, phase):
        return {"phase": phase, "requested": self.a.count, "open": self.open,
                "statuses": self.statuses, "ended": self.ended, "open_s": self.open_s,
                "bytes": self.bytes, "events": self.events, "errors": self.errors}

    def write_state(self, phase):
        tmp = self.a.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state(phase), f)
        os.replace(tmp, self.a.state)

    async def one(self, i, gate):
        """One stream: connect, ask, read the head; on 200 count it open once its first
        bytes arrive and read until it ends or we stop."""
        a = self.a
        writer = None
        opened = False
        try:
            async with gate:  # a bounded number of connections being opened at once
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", a.port), 10)
                writer.write(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\n"
                              "Accept: text/event-stream\r\nUser-Agent: taskgate-bench\r\n"
                              "\r\n" % (a.path, a.token)).encode("ascii"))
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                if len(head) > HEAD_MAX:
                    raise ValueError("an answer head of %d bytes" % len(head))
                parts = head.split(b"\r\n", 1)[0].split()
                status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
                if status != 200:
                    body = await asyncio.wait_for(reader.read(512), 5)
                    self.note(status, "stream %d: %d %s" % (i, status,
                                                            body.decode("utf-8", "replace")))
                    return
                first = await asyncio.wait_for(reader.read(65536), 30)
                if not first:
                    self.note(200, "stream %d: 200 but ended before any byte" % i)
                    self.ended += 1
                    return
                self.bytes += len(first)
                self.events += first.count(b"\n\n")
                self.open += 1
                # Woken once 4 kB have arrived (or at the end) rather than for each of the
                # upstream's small writes: the holder's CPU is the benchmark's, not the
                # gateway's, and shares the cores with what is measured.
                sock = writer.get_extra_info("socket")
                if sock is not None and hasattr(socket, "SO_RCVLOWAT"):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 4096)
                opened = True
                self.note(200)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.bytes += len(data)
                self.events += data.count(b"\n\n")
            self.open -= 1
            opened = False
            self.ended += 1
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            if opened:
                self.open -= 1
                self.ended += 1
                if len(self.errors) < 5:
                    self.errors.append("stream %d ended: %s" % (i, type(e).__name__))
            else:
                self.note(0, "stream %d: %s: %s" % (i, type(e).__name__, e))
        finally:
            if writer is not None:
                writer.close()

    async def run(self):
        a = self.a
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stop.set)
        watcher = asyncio.ensure_future(self.watch_parent())
        self.write_state("opening")
        gate = asyncio.Semaphore(a.parallel)
        tasks = [asyncio.ensure_future(self.one(i, gate)) for i in range(a.count)]
        hold_end = self.t0 + a.hold
        stopper = asyncio.ensure_future(self.stop.wait())
        answered = asyncio.ensure_future(self.all_answered.wait())
        await asyncio.wait([stopper, answered],
                           timeout=min(a.open_secs, max(0.0, hold_end - time.monotonic())),
                           return_when=asyncio.FIRST_COMPLETED)
        self.open_s = time.monotonic() - self.t0
        self.write_state("open")
        while not self.stop.is_set() and time.monotonic() < hold_end:
            await asyncio.wait([stopper], timeout=min(1.0, max(0.0, hold_end - time.monotonic())))
            self.write_state("open")  # so that the state says how many are still open
        for t in tasks + [stopper, answered, watcher]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.write_state("done")

    async def watch_parent(self):
        """Stops when the process that started us is gone (we were handed to another)."""
        parent = os.getppid()
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        self.stop.set()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="the front nginx on 127.0.0.1")
    ap.add_argument("--path", required=True, help="the stream's path and query")
    ap.add_argument("--count", type=int, required=True, help="streams to open (at most %d)"
                    % MAX_COUNT)
    ap.add_argument("--state", required=True, help="the state file to write")
    ap.add_argument("--open-secs", type=float, default=30.0,
                    help="give up waiting for answers after this long (default 30)")
    ap.add_argument("--hold", type=float, default=120.0,
                    help="close everything this long after starting (at most %.0f)" % MAX_HOLD)
    ap.add_argument("--parallel", type=int, default=64,
                    help="connections being opened at once (default 64)")
    a = ap.parse_args(argv)
    a.token = os.environ.get("BENCH_TOKEN", "")  # not in argv, where ps would show it
    if not a.token:
        ap.error("BENCH_TOKEN (the team's token, sent as x-api-key) is not set")
    if not 1 <= a.count <= MAX_COUNT or not 1 <= a.port <= 65535 or a.parallel < 1:
        ap.error("count must be 1 to %d, port 1 to 65535, parallel 1 or more" % MAX_COUNT)
    if not a.path.startswith("/") or any(c in a.path + a.token for c in "\r\n "):
        ap.error("the path must start with / and neither it nor the token may hold blanks")
    a.hold = min(max(a.hold, 1.0), MAX_HOLD)
    a.open_secs = min(max(a.open_secs, 1.0), a.hold)
    raise_nofile(a.count + 64)
    asyncio.run(Holder(a).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
