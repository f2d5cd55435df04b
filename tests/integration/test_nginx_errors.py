"""What nginx refuses by itself, before the daemon reads a byte (malformed HTTP: duplicate
headers, a negative or doubled length, a bad chunk, an unknown transfer coding, a header too
large), answers in the upstream's error shape for programs and as a page for browsers,
keeps nginx's status, and sends nothing upstream.

Raw bytes over a socket, since http.client refuses to send most of these requests.
Run through ctest (`ctest -R test_nginx_errors`)."""

import json
import os
import socket
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import StackTestCase  # noqa: E402

ACCEPT_BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


def raw_request(port, data, timeout=10):
    """Sends data as it is and reads until nginx closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class NginxRefusalTest(StackTestCase):
    """11. nginx's own 400s (and 411, 414, 494, 501) are JSON in the upstream's shape, or a
    page for a browser; the daemon and the upstream see nothing."""

    def setUp(self):
        self.s = self.stack(keys=["par-key-a"])
        self.s.add_team("a", "par-key-a", preset={"processor": "base"})
        self.token, _ = self.s.issue_token("a")
        self.s.sim_clear()

    def request(self, extra_headers, body=b"", accept="application/json",
                target="/v1/runs"):
        token = "tg_" + "0" * 48 if b"Authorization" in extra_headers else self.token
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                "Accept: %s\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n" % (target, accept, token))
        return raw_request(self.s.port, head.encode() + extra_headers + b"\r\n" + body)

    CASES = [
        ("negative Content-Length", b"Content-Length: -5\r\n", b'{"inputs":["x"]}', 400),
        ("two Content-Length", b"Content-Length: 16\r\nContent-Length: 16\r\n",
         b'{"inputs":["x"]}', 400),
        ("Content-Length and chunked",
         b"Content-Length: 16\r\nTransfer-Encoding: chunked\r\n",
         b'10\r\n{"inputs":["x"]}\r\n0\r\n\r\n', 400),
        ("bad chunk", b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", 400),
        # nginx's info-level log line for this one carries both header values: the request
        # below sends no real token twice (docs/operations.md, nginx: keep error_log above info).
        ("two Authorization", b"Authorization: Bearer tg_other\r\nContent-Length: 16\r\n",
         b'{"inputs":["x"]}', 400),
        ("unknown transfer coding", b"Transfer-Encoding: gzip\r\n", b"", 501),
        ("header too large", b"X-Padding: " + b"a" * 70000 + b"\r\nContent-Length: 2\r\n",
         b"{}", 400),
    ]

    def test_refusals_are_json_for_programs(self):
        for name, headers, body, want in self.CASES:
            with self.subTest(name):
                status, hdrs, data = self.request(headers, body)
                self.assertEqual(status, want, data[:300])
                self.assertTrue(hdrs.get("content-type", "").startswith("application/json"),
                                (hdrs, data[:300]))
                answer = json.loads(data)
                self.assertEqual(answer.get("type"), "error", answer)
                self.assertTrue(answer["error"].get("ref_id"), answer)
                self.assertIn("not valid HTTP", answer["error"].get("message", ""))
        self.assertNothingSent()

    def test_refusals_are_pages_for_browsers(self):
        for name, headers, body, want in self.CASES[:2]:
            with self.subTest(name):
                status, hdrs, data = self.request(headers, body, accept=ACCEPT_BROWSER)
                self.assertEqual(status, want, data[:300])
                self.assertTrue(hdrs.get("content-type", "").startswith("text/html"), hdrs)
                self.assertIn(b"That request could not be read", data)
                self.assertIn(b"nothing was sent", data)
                self.assertNotIn(b"<center>nginx", data)
        self.assertNothingSent()

    def test_uri_too_long(self):
        status, hdrs, data = self.request(b"Content-Length: 2\r\n", b"{}",
                                          target="/v1/runs?" + "a" * 70000)
        self.assertIn(status, (400, 414), data[:300])
        self.assertTrue(hdrs.get("content-type", "").startswith("application/json"), hdrs)
        self.assertEqual(json.loads(data).get("type"), "error")
        self.assertNothingSent()

    def assertNothingSent(self):
        self.assertEqual(self.s.sim_requests(), [], "the upstream saw a request")
        rows = self.s.db("SELECT count(*) FROM audit_submissions")
        self.assertEqual(rows[0][0], 0, "the daemon recorded a submission")


if __name__ == "__main__":
    unittest.main()
