"""A bounded load of server-sent event streams over loopback: opens COUNT streams through
nginx at a bounded number of opens in flight, holds them while the caller does something
else, and says for each what a client saw (status, time to its first event, events
received, how it ended). Standard library only (asyncio on one background thread).

Bounded by design: loopback addresses only, at most COUNT_MAX streams, every stream closed
by close() or at the hold deadline, whichever comes first.

As a module (tests/integration/test_nginx_waits.py):

    load = StreamLoad(port, [(path, {"x-api-key": token})], count=2000)
    load.open(timeout=60)        # returns once every stream has its first event or failed
    ...                          # the streams stay open
    load.close(); load.summary()

As a script, for a stack already running:

    python3 streamload.py --port 8080 --path /v1/tasks/groups/tgrp_x/runs \\
        --header 'x-api-key: tg_...' --count 2000 --hold 10
"""

import argparse
import asyncio
import ipaddress
import json
import sys
import threading
import time

COUNT_MAX = 10000       # the most streams one load opens
HOLD_MAX = 600.0        # the longest a stream is held, in seconds


class Stream:
    """What one client saw. ended: None while open, then "clean" (the chunked answer's end
    arrived), "eof" (the connection closed without it), "reset", "closed" (by us) or
    "error: ..." (before or while reading the head)."""

    __slots__ = ("index", "status", "headers", "started", "first_event_at", "events",
                 "bytes", "head", "ended", "ended_at", "_body", "_raw")
    HEAD_MAX = 4096  # the first bytes of the body kept (head), for a caller's checks

    def __init__(self, index):
        self.index = index
        self.status = None
        self.headers = {}
        self.started = None
        self.first_event_at = None
        self.events = 0
        self.bytes = 0
        self.head = b""
        self.ended = None
        self.ended_at = None
        self._body = b""   # de-chunked bytes not yet split into events
        self._raw = b""    # chunked bytes not yet de-chunked

    def feed(self, data):
        """Takes chunked body bytes; returns True once the final chunk has arrived."""
        self.bytes += len(data)
        self._raw += data
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(self._raw[:line_end].split(b";")[0] or b"0", 16)
            if size == 0:
                return True
            if len(self._raw) < line_end + 2 + size + 2:
                return False
            piece = self._raw[line_end + 2:line_end + 2 + size]
            if len(self.head) < self.HEAD_MAX:
                self.head += piece[:self.HEAD_MAX - len(self.head)]
            self._body += piece
            self._raw = self._raw[line_end + 2 + size + 2:]
            while b"\n\n" in self._body:
                _, self._body = self._body.split(b"\n\n", 1)
                self.events += 1
                if self.first_event_at is None:
                    self.first_event_at = time.monotonic()


class StreamLoad:
    """count streams of targets (a list of (path, headers), used in turn) to port on host,
    at most concurrency of them opening at once, each closed after hold seconds at most."""

    def __init__(self, port, targets, count, host="127.0.0.1", concurrency=100, hold=120.0):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("streamload only talks to loopback addresses, not %s" % host)
        if not 0 < count <= COUNT_MAX:
            raise ValueError("count must be 1..%d" % COUNT_MAX)
        self.host, self.port = host, port
        self.targets = list(targets)
        self.count = count
        self.concurrency = concurrency
        self.hold = min(float(hold), HOLD_MAX)
        self.streams = [Stream(i) for i in range(count)]
        self.open_started = self.open_ended = None
        self._loop = asyncio.new_event_loop()
        self._thread = None
        self._tasks = []
        self._opened = threading.Event()

    # ---- the caller's side ------------------------------------------------------------

    def open(self, timeout=60.0):
        """Opens every stream; returns once each has its first event or has failed, or after
        timeout s. Returns the seconds that took."""
        self.open_started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="streamload", daemon=True)
        self._thread.start()
        self._opened.wait(timeout)
        self.open_ended = time.monotonic()
        return self.open_ended - self.open_started

    def close(self, timeout=10.0):
        """Closes every stream still open and stops the background thread."""
        if self._thread is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._cancel_all)
        except RuntimeError:  # every stream had ended: the loop is over and closed
            pass
        self._thread.join(timeout)
        self._thread = None

    def wait_ended(self, timeout):
        """Waits up to timeout s for every stream to end by itself; True when all did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s.ended is not None for s in self.streams):
                return True
            time.sleep(0.05)
        return all(s.ended is not None for s in self.streams)

    def summary(self):
        """Counts by status and by ending, and the time to the first event (s)."""
        by_status, by_end, firsts = {}, {}, []
        for s in self.streams:
            by_status[str(s.status)] = by_status.get(str(s.status), 0) + 1
            end = (s.ended or "open").split(":")[0]
            by_end[end] = by_end.get(end, 0) + 1
            if s.first_event_at is not None:
                firsts.append(s.first_event_at - s.started)
        firsts.sort()
        out = {"streams": self.count, "status": by_status, "ended": by_end,
               "with_first_event": len(firsts),
               "events": sum(s.events for s in self.streams)}
        if self.open_ended is not None:
            out["open_s"] = round(self.open_ended - self.open_started, 3)
        if firsts:
            out["first_event_p50_ms"] = round(firsts[len(firsts) // 2] * 1000, 1)
            out["first_event_max_ms"] = round(firsts[-1] * 1000, 1)
        return out

    # ---- the loop's side ----------------------------------------------------------------

    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    def _cancel_all(self):
        for t in self._tasks:
            t.cancel()

    async def _main(self):
        gate = asyncio.Semaphore(self.concurrency)
        self._tasks = [asyncio.ensure_future(self._one(s, gate)) for s in self.streams]
        watcher = asyncio.ensure_future(self._wait_open())
        await asyncio.gather(*self._tasks, return_exceptions=True)
        watcher.cancel()
        self._opened.set()

    async def _wait_open(self):
        while not all(s.first_event_at is not None or s.ended is not None
                      for s in self.streams):
            await asyncio.sleep(0.02)
        self._opened.set()

    async def _one(self, s, gate):
        path, headers = self.targets[s.index % len(self.targets)]
        head = "GET %s HTTP/1.1\r\nHost: %s:%d\r\n" % (path, self.host, self.port)
        head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        writer = None
        released = False
        await gate.acquire()
        try:
            s.started = time.monotonic()
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(head.encode("latin-1"))
            await writer.drain()
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            s.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    s.headers[k.strip().lower()] = v.strip()
            if s.headers.get("transfer-encoding", "").lower() != "chunked":
                # A whole answer (an error): read it and end.
                n = int(s.headers.get("content-length", "0") or 0)
                if n:
                    s.head = await reader.readexactly(n)
                    s.bytes = len(s.head)
                s.ended = "clean"
                return
            deadline = s.started + self.hold
            while True:
                if s.first_event_at is not None and not released:
                    gate.release()
                    released = True
                left = deadline - time.monotonic()
                if left <= 0:
                    s.ended = "closed"
                    return
                try:
                    data = await asyncio.wait_for(reader.read(65536), left)
                except asyncio.TimeoutError:
                    s.ended = "closed"
                    return
                if not data:
                    s.ended = "eof"
                    return
                if s.feed(data):
                    s.ended = "clean"
                    return
        except asyncio.CancelledError:
            s.ended = s.ended or "closed"
        except ConnectionResetError:
            s.ended = "reset"
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            s.ended = "error: %s" % (e.__class__.__name__,)
        finally:
            s.ended_at = time.monotonic()
            if not released:
                gate.release()
            if writer is not None:
                writer.close()


def main(argv):
    p = argparse.ArgumentParser(description="Open COUNT event streams through nginx on "
                                "loopback, hold them HOLD s, print what the clients saw.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True, action="append")
    p.add_argument("--header", action="append", default=[],
                   help="NAME: VALUE, sent with every stream")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--hold", type=float, default=10.0)
    a = p.parse_args(argv)
    headers = dict(h.split(":", 1) for h in a.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    headers.setdefault("Accept", "text/event-stream")
    load = StreamLoad(a.port, [(path, headers) for path in a.path], a.count,
                      concurrency=a.concurrency, hold=a.hold)
    load.open(timeout=a.hold)
    time.sleep(max(0.0, a.hold - (time.monotonic() - load.open_started)))
    load.close()
    json.dump(load.summary(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
