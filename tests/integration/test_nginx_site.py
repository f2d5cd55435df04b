"""`taskgate nginx-site`: the nginx site rendered from the daemon's config is one nginx
accepts, for the simulator (plain HTTP to an address) and for Parallel (verified TLS to a
name, with a resolver), and carries the config's values; a config it cannot render is
refused with the reason. (The integration tests all run nginx with this site: this file
checks what they cannot, the Parallel side and the refusals.)"""

import os
import subprocess
import tempfile
import unittest

from harness import child_env, env_path


def render(conf_lines, env=None):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "taskgate.conf")
        with open(path, "w") as f:
            f.write("".join("%s = %s\n" % kv for kv in conf_lines))
        e = child_env()
        e.update(env or {})
        return subprocess.run([env_path("TG_BIN"), "--config", path, "nginx-site"],
                              capture_output=True, text=True, env=e, timeout=30)


def nginx_accepts(site):
    """Whether `nginx -t` accepts site inside an http {} block; (ok, what nginx said)."""
    with tempfile.TemporaryDirectory() as d:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, "tmp", sub))
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(site)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n"
                    "access_log off;\nclient_body_temp_path %s/tmp/body;\n"
                    "proxy_temp_path %s/tmp/proxy;\nfastcgi_temp_path %s/tmp/fastcgi;\n"
                    "uwsgi_temp_path %s/tmp/uwsgi;\nscgi_temp_path %s/tmp/scgi;\n"
                    "include %s/site.conf;\n}\n" % ((d,) * 8))
        r = subprocess.run([env_path("TG_NGINX"), "-t", "-p", d + "/", "-c",
                            os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0, r.stderr


class NginxSiteTest(unittest.TestCase):
    def test_parallel_is_read_over_verified_tls_with_a_resolver(self):
        r = render([("listen", "/run/tg/taskgate.sock"), ("upstream_url", "https://api.parallel.ai"),
                    ("nginx_resolver", "192.0.2.53 [2001:db8::53]:5353"),
                    ("nginx_listen", "127.0.0.1:8443"), ("max_body_bytes", "2M"),
                    ("long_reads_per_team", "77")])
        self.assertEqual(r.returncode, 0, r.stderr)
        site = r.stdout
        for line in ("proxy_pass https://api.parallel.ai:443$taskgate_path;",
                     "proxy_ssl_server_name on;", "proxy_ssl_name api.parallel.ai;",
                     "proxy_ssl_verify on;",
                     "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
                     "resolver 192.0.2.53 [2001:db8::53]:5353 valid=60s;",
                     "proxy_set_header Host api.parallel.ai;",
                     "server unix:/run/tg/taskgate.sock;", "listen 127.0.0.1:8443;",
                     "client_max_body_size 2097152;",
                     "limit_conn taskgate_long_reads 77;",
                     "fastcgi_buffering on;", "fastcgi_max_temp_file_size 67108864;",
                     "proxy_set_header x-api-key $taskgate_key;",
                     "proxy_pass_request_headers off;"):
            self.assertIn(line, site)
        # The client's token and headers never go upstream: only the listed ones do.
        self.assertNotIn("$http_x_api_key", site)
        self.assertNotIn("$http_authorization", site)
        ok, said = nginx_accepts(site)
        self.assertTrue(ok, said)

    def test_the_simulator_is_an_address_with_kept_connections_and_no_tls(self):
        r = render([("upstream_url", "http://127.0.0.1:8090")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("server 127.0.0.1:8090;", r.stdout)
        self.assertIn("proxy_pass http://taskgate_parallel$taskgate_path;", r.stdout)
        self.assertNotIn("proxy_ssl", r.stdout)
        self.assertNotIn("resolver ", r.stdout)
        ok, said = nginx_accepts(r.stdout)
        self.assertTrue(ok, said)

    def test_a_base_path_and_a_port_are_kept(self):
        r = render([("upstream_url", "https://parallel.example.com:8443/prefix"),
                    ("nginx_resolver", "127.0.0.1")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("proxy_pass https://parallel.example.com:8443/prefix$taskgate_path;",
                      r.stdout)
        self.assertIn("proxy_set_header Host parallel.example.com:8443;", r.stdout)
        ok, said = nginx_accepts(r.stdout)
        self.assertTrue(ok, said)

    def test_the_submission_timeout_covers_every_call(self):
        r = render([("upstream_timeout_ms", "100000"), ("upstream_connect_timeout_ms", "5000"),
                    ("upstream_retry_max_wait_ms", "0"), ("chunk_size", "500"),
                    ("max_inputs_per_submission", "1000"), ("upstream_url", "http://127.0.0.1:9")])
        self.assertEqual(r.returncode, 0, r.stderr)
        # A group and two chunks, 105 s each, and a margin.
        self.assertIn("fastcgi_read_timeout 345s;", r.stdout)

    def test_what_cannot_be_rendered_is_refused_with_the_reason(self):
        r = render([("upstream_url", "https://api.parallel.ai/v?x=1")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("upstream_url", r.stderr)
        self.assertEqual(r.stdout, "")
        r = render([("nginx_resolver", "1.2.3.4; include /etc/passwd")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nginx_resolver", r.stderr)
        r = render([], env={"TASKGATE_UPSTREAM_URL": "https://user@api.parallel.ai"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("credentials", r.stderr)


if __name__ == "__main__":
    unittest.main()
