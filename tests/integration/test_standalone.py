"""The standalone server (`gpx_cachingproxy serve --config FILE`) over real HTTP: every route,
API keys, the shared cache across keys, /api/ds/query frames, the request body limit, bad
configuration files, and graceful shutdown on SIGTERM and SIGINT under load."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import EXE, Upstream, free_port, wait_for

ALICE, BOB, CAROL, ORG2 = "alice-key-0001", "bob-key-00002", "carol-key-0003", "org2-key-00004"


def base_config(upstream_url, port, ds_extra=None, top=None):
    ds = {"uid": "api", "name": "API", "url": upstream_url,
          "jsonData": {"authType": "bearer", "timeout": 10,
                       "cache": {"backend": "memory", "resourceTtl": "60s"}},
          "secureJsonData": {"bearerToken": "${CP_TEST_UPSTREAM_TOKEN}"}}
    for k, v in (ds_extra or {}).items():
        if k == "jsonData":
            ds["jsonData"].update(v)
        else:
            ds[k] = v
    cfg = {"listen": "127.0.0.1:%d" % port, "threads": 2, "shutdownTimeout": "10s",
           "datasources": [ds],
           "apiKeys": [{"key": ALICE, "login": "alice", "email": "alice@example.com", "role": "Viewer"},
                       {"key": BOB, "login": "bob", "email": "bob@example.com", "role": "Editor"},
                       {"key": CAROL, "login": "carol", "role": "Admin"},
                       {"key": ORG2, "login": "dave", "role": "Admin", "orgId": 2}]}
    cfg.update(top or {})
    return cfg


def sanitizer_env():
    env = {k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "PATH")}
    env["CP_TEST_UPSTREAM_TOKEN"] = "upstream-secret-token"
    env["CACHINGPROXY_LOG_LEVEL"] = "info"
    return env


class Server:
    """gpx_cachingproxy serve with a configuration written to a temporary file."""

    def __init__(self, cfg, env=None, raw=None):
        self.dir = tempfile.mkdtemp(prefix="cp-standalone-")
        self.path = os.path.join(self.dir, "cfg.json")
        with open(self.path, "w") as f:
            f.write(raw if raw is not None else json.dumps(cfg, indent=2))
        self.env = sanitizer_env()
        self.env.update(env or {})
        self.port = None
        if cfg is not None and cfg["listen"].rsplit(":", 1)[-1].isdigit():
            self.port = int(cfg["listen"].rsplit(":", 1)[1])
        self.proc = subprocess.Popen([EXE, "serve", "--config", self.path], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self):
        return "\n".join(self.lines)

    def wait_ready(self):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("server exited %s: %s" % (self.proc.returncode, self.text()))
            try:
                return get(self.port, "/healthz")[0] == 200
            except OSError:
                return False
        assert wait_for(up, timeout=10), self.text()
        return self

    def finish(self, timeout=10):
        """Waits for the exit; checks there was no sanitizer report."""
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        reports = [l for l in self.lines if "Sanitizer" in l or "runtime error:" in l]
        if reports:
            raise AssertionError("sanitizer report from the server:\n" + self.text())
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish()


def request(port, method, path, key=None, body=None, headers=None, timeout=15, conn=None):
    """One request; returns (status, headers dict lower-case, body bytes)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


def get(port, path, key=None, **kw):
    return request(port, "GET", path, key=key, **kw)


RES = "/api/datasources/uid/api/resources/"


class StandaloneTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream()
        self.up.routes["/slow"] = {"delay": 0.6}
        self.port = free_port()
        self.srv = None

    def tearDown(self):
        if self.srv and self.srv.proc.poll() is None:
            self.assertEqual(self.srv.stop(), 0)
        self.up.close()

    def start(self, **kw):
        self.srv = Server(base_config(self.up.url, self.port, **kw)).wait_ready()
        return self.srv

    # ---- open routes ---------------------------------------------------------------------

    def test_healthz_and_metrics_need_no_key(self):
        self.start()
        st, h, body = get(self.port, "/healthz")
        self.assertEqual((st, json.loads(body)), (200, {"status": "ok"}))
        self.assertEqual(get(self.port, RES + "proxy/a", key=ALICE)[0], 200)
        self.assertEqual(get(self.port, RES + "proxy/a", key=ALICE)[0], 200)
        st, h, body = get(self.port, "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"), h)
        text = body.decode()
        for fam in ("cachingproxy_cache_requests_total", "cachingproxy_cache_entries",
                    "cachingproxy_cache_bytes", "cachingproxy_cache_evictions_total",
                    "cachingproxy_coalesced_requests_total", "cachingproxy_upstream_requests_total",
                    "cachingproxy_upstream_duration_seconds", "cachingproxy_authz_decisions_total",
                    "cachingproxy_redis_errors_total", "process_resident_memory_bytes"):
            self.assertIn("# HELP %s " % fam, text)
            self.assertIn("# TYPE %s " % fam, text)
        self.assertIn('cachingproxy_cache_requests_total{kind="resource",result="hit"} 1\n', text)
        self.assertIn('cachingproxy_cache_requests_total{kind="resource",result="miss"} 1\n', text)
        self.assertIn("cachingproxy_cache_entries 1\n", text)
        self.assertIn("cachingproxy_instances 1\n", text)
        self.assertEqual(request(self.port, "POST", "/healthz")[0], 405)

    def test_unknown_route_and_uid_are_404(self):
        self.start()
        st, _, body = get(self.port, "/api/nothing", key=ALICE)
        self.assertEqual((st, json.loads(body)), (404, {"message": "Not found"}))
        st, _, body = get(self.port, "/api/datasources/uid/nope/resources/proxy/a", key=ALICE)
        self.assertEqual((st, json.loads(body)), (404, {"message": "Data source not found"}))
        # a key of another org does not see the data source either
        st, _, body = get(self.port, RES + "proxy/a", key=ORG2)
        self.assertEqual(st, 404)
        st, _, body = get(self.port, RES + "nothing", key=ALICE)
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(body)["status"], 404)  # the pipeline's own error shape
        self.assertEqual(self.up.count(), 0)

    # ---- resources, keys, cache ------------------------------------------------------------

    def test_resource_miss_then_hit_with_injected_credentials(self):
        self.start()
        self.up.routes["/items/1"] = lambda r: (200, {"Content-Type": "application/json", "ETag": '"v1"'},
                                                b'{"id":1,"name":"one"}')
        st, h, body = get(self.port, RES + "proxy/items/1?b=2&a=1", key=ALICE)
        self.assertEqual((st, h["x-cache"], body), (200, "MISS", b'{"id":1,"name":"one"}'))
        rec = self.up.last()
        self.assertEqual(rec.path, "/items/1?b=2&a=1")
        self.assertEqual(rec.header("Authorization"), "Bearer upstream-secret-token")
        st, h, body = get(self.port, RES + "proxy/items/1?b=2&a=1", key=ALICE)
        self.assertEqual((st, h["x-cache"], body), (200, "HIT", b'{"id":1,"name":"one"}'))
        self.assertEqual(h["content-length"], str(len(body)))
        self.assertEqual(h["etag"], '"v1"')
        self.assertIn("age", h)
        self.assertEqual(self.up.count("/items/1"), 1)
        # a percent-encoded path reaches the upstream encoded once
        self.assertEqual(get(self.port, RES + "proxy/items/a%20b", key=ALICE)[0], 200)
        self.assertEqual(self.up.last().path, "/items/a%20b")
        st, _, body = get(self.port, RES + "proxy/items/%2e%2e/x", key=ALICE)
        self.assertEqual(st, 400)
        st, _, body = get(self.port, RES + "proxy/items/%zz", key=ALICE)
        self.assertEqual((st, json.loads(body)["message"]), (400, "bad percent-encoding in the URL"))

    def test_missing_or_unknown_key_is_401_and_never_upstream(self):
        self.start()
        st, h, body = get(self.port, RES + "proxy/a")
        self.assertEqual((st, json.loads(body)), (401, {"message": "Unauthorized"}))
        self.assertEqual(h["www-authenticate"], "Bearer")
        st, _, body = get(self.port, RES + "proxy/a", key="not-a-known-key")
        self.assertEqual((st, json.loads(body)), (401, {"message": "Invalid API key"}))
        st, _, _ = get(self.port, RES + "proxy/a", headers={"Authorization": "Basic " + ALICE})
        self.assertEqual(st, 401)
        st, _, _ = request(self.port, "POST", "/api/ds/query", body={"queries": []})
        self.assertEqual(st, 401)
        self.assertEqual(self.up.count(), 0)
        # a valid key reaches the upstream, but the key itself never does, in no header
        self.assertEqual(get(self.port, RES + "proxy/b", key=ALICE,
                             headers={"X-Api-Key": "x", "Accept": "application/json"})[0], 200)
        self.assertEqual(self.up.count(), 1)
        for name, value in self.up.last().headers:
            self.assertNotIn(ALICE, value, name)
        self.assertNotIn(ALICE, self.srv.text())

    def test_cache_is_shared_across_keys(self):
        self.start()
        st, h, first = get(self.port, RES + "proxy/shared", key=ALICE)
        self.assertEqual((st, h["x-cache"]), (200, "MISS"))
        st, h, second = get(self.port, RES + "proxy/shared", key=BOB)
        self.assertEqual((st, h["x-cache"], second), (200, "HIT", first))
        self.assertEqual(self.up.count("/shared"), 1)
        st, _, body = get(self.port, RES + "cache/stats", key=BOB)
        stats = json.loads(body)
        self.assertEqual((stats["backend"], stats["hits"], stats["misses"], stats["entries"]),
                         ("memory", 1, 1, 1))

    def test_rules_see_the_keys_role_and_purge_is_admin_only(self):
        self.start(ds_extra={"jsonData": {"defaultAction": "deny", "rules": [
            {"effect": "allow", "roles": ["Editor"]},
            {"effect": "allow", "roles": ["Viewer"], "methods": ["GET"]}]}})
        st, _, body = request(self.port, "POST", RES + "proxy/items", key=ALICE, body=b"{}")
        self.assertEqual(st, 403)
        self.assertEqual(json.loads(body)["status"], 403)
        self.assertEqual(self.up.count(), 0)
        self.assertEqual(request(self.port, "POST", RES + "proxy/items", key=BOB, body=b"{}")[0], 200)
        self.assertEqual(self.up.last().body, b"{}")
        self.assertEqual(get(self.port, RES + "proxy/p/1", key=ALICE)[0], 200)
        st, _, _ = request(self.port, "POST", RES + "cache/purge", key=BOB, body={})
        self.assertEqual(st, 403)
        st, _, body = request(self.port, "POST", RES + "cache/purge", key=CAROL, body={"prefix": "/p"})
        self.assertEqual((st, json.loads(body)), (200, {"purged": 1}))
        self.assertEqual(get(self.port, RES + "proxy/p/1", key=ALICE)[1]["x-cache"], "MISS")

    def test_keep_alive_and_body_limit(self):
        self.start(top={"maxBodyBytes": 1000})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for path in ("/healthz", RES + "proxy/k1", RES + "proxy/k1", "/api/x"):
                st, h, _ = request(self.port, "GET", path, key=ALICE, conn=c)
                self.assertNotEqual(h.get("connection"), "close", path)
            sock = c.sock
            self.assertEqual(request(self.port, "GET", RES + "proxy/k2", conn=c)[0], 401)
            self.assertIs(c.sock, sock, "the connection was not kept alive")
        finally:
            c.close()
        st, h, body = request(self.port, "POST", RES + "proxy/big", key=BOB, body=b"x" * 1001)
        self.assertEqual((st, json.loads(body)), (413, {"message": "Request body too large"}))
        # a chunked body is cut at the limit too
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("POST", RES + "proxy/big", body=iter([b"y" * 600, b"y" * 600]),
                      headers={"Authorization": "Bearer " + BOB}, encode_chunked=True)
            r = c.getresponse()
            self.assertEqual(r.status, 413)
            r.read()
        finally:
            c.close()
        self.assertEqual(self.up.count("/big"), 0)
        self.assertEqual(request(self.port, "POST", RES + "proxy/big", key=BOB, body=b"z" * 999)[0], 200)

    def test_refused_request_with_a_large_body_gets_its_answer(self):
        self.start(top={"maxBodyBytes": 1000})
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"b" * (2 << 20))
            f.flush()
            for key, path, want in ((None, RES + "proxy/big", 401),
                                    ("nobody-key-0000", RES + "proxy/big", 401),
                                    (ALICE, "/api/datasources/uid/nope/resources/x", 413),
                                    (None, "/api/nothing", 404)):
                cmd = ["curl", "-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                       "--data-binary", "@" + f.name, "http://127.0.0.1:%d%s" % (self.port, path)]
                if key:
                    cmd[1:1] = ["-H", "Authorization: Bearer " + key]
                out = subprocess.run(cmd, capture_output=True, timeout=30)
                self.assertEqual(out.returncode, 0, (path, out.stderr))
                body, _, code = out.stdout.rpartition(b"\n")
                self.assertEqual(int(code), want, path)
                self.assertIn("message", json.loads(body), path)
        self.assertEqual(self.up.count("/big"), 0)
        self.assertEqual(get(self.port, "/healthz")[0], 200)

    def test_head_answers_the_upstreams_length(self):
        self.start(ds_extra={"jsonData": {"cache": {"backend": "off"}}})
        st, h, body = get(self.port, RES + "proxy/sized", key=ALICE)
        self.assertEqual(st, 200)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("HEAD", RES + "proxy/sized", headers={"Authorization": "Bearer " + ALICE})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Length"), str(len(body)))
            self.assertEqual(r.read(), b"")
            # and the connection goes on with the next request
            c.request("GET", "/healthz")
            self.assertEqual(c.getresponse().status, 200)
        finally:
            c.close()
        self.assertEqual(self.up.last().method, "HEAD")

    def test_large_answer_streams_whole(self):
        self.start(ds_extra={"jsonData": {"cache": {"backend": "off"}}})
        self.up.routes["/blob"] = {"stream": 5 * 1024 * 1024}
        st, h, body = get(self.port, RES + "proxy/blob", key=ALICE, timeout=30)
        self.assertEqual((st, h["x-cache"], len(body)), (200, "BYPASS", 5 * 1024 * 1024))
        self.assertEqual(body[:512], (bytes(range(256)) * 2))
        self.assertEqual(h.get("transfer-encoding"), "chunked")

    def test_answer_cut_short_upstream_is_not_a_complete_200(self):
        self.start(ds_extra={"jsonData": {"cache": {"backend": "off"}}})
        # the part sent has left for the client when the upstream breaks off
        self.up.routes["/short"] = {"stream": 100000, "cut": 70013, "stall": 0.3}
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", RES + "proxy/short", headers={"Authorization": "Bearer " + ALICE})
            r = c.getresponse()
            self.assertEqual(r.status, 200)  # the head left before the upstream broke off
            with self.assertRaises(http.client.IncompleteRead) as cm:
                r.read()
            # what arrived is the upstream's bytes only, no error text glued onto them
            self.assertLessEqual(len(cm.exception.partial), 70013)
            self.assertNotIn(b'"error"', cm.exception.partial[-200:])
        finally:
            c.close()
        # and the server goes on serving
        self.assertEqual(get(self.port, "/healthz")[0], 200)

    # ---- queries -------------------------------------------------------------------------------

    def test_ds_query_answers_frames_as_json(self):
        self.start()
        self.up.routes["/series"] = lambda r: (200, {"Content-Type": "application/json"}, json.dumps(
            {"data": {"rows": [{"ts": 1700000000000, "v": 1.5, "host": "a"},
                               {"ts": 1700000060000, "v": 2.5, "host": "b"}]}}).encode())
        q = {"from": "1700000000000", "to": "1700003600000", "queries": [
            {"refId": "A", "datasource": {"uid": "api", "type": "seed-cachingproxy-datasource"},
             "path": "/series", "params": {"from": "${__from}"}, "root": "data.rows",
             "intervalMs": 1000, "maxDataPoints": 100},
            {"refId": "B", "datasource": {"uid": "api"}, "path": "/series", "root": "data.rows",
             "columns": [{"selector": "ts", "name": "Time", "type": "time", "timeFormat": "unixms"},
                         {"selector": "v", "name": "Value", "type": "number"}],
             "format": "timeseries"}]}
        st, h, body = request(self.port, "POST", "/api/ds/query", key=ALICE, body=q)
        self.assertEqual(st, 200, body)
        res = json.loads(body)["results"]
        a = res["A"]
        self.assertEqual(a["status"], 200)
        fa = a["frames"][0]
        self.assertEqual(fa["schema"]["refId"], "A")
        self.assertEqual([f["name"] for f in fa["schema"]["fields"]], ["ts", "v", "host"])
        self.assertEqual(fa["schema"]["fields"][0]["type"], "time")
        self.assertEqual(fa["data"]["values"], [[1700000000000, 1700000060000], [1.5, 2.5], ["a", "b"]])
        self.assertEqual(fa["schema"]["meta"]["custom"]["cache"], "miss")
        fb = res["B"]["frames"][0]
        self.assertEqual([f["name"] for f in fb["schema"]["fields"]], ["Time", "Value"])
        self.assertEqual(fb["data"]["values"], [[1700000000000, 1700000060000], [1.5, 2.5]])
        self.assertEqual(fb["schema"]["meta"]["type"], "timeseries-wide")
        # the placeholder got the request's from, aligned to timeAlign (10 s)
        self.assertTrue(any(r.path == "/series?from=1700000000000" for r in self.up.requests))
        # the query's GET carries none of the POST's own body headers
        for r in self.up.requests:
            self.assertIsNone(r.header("Content-Type"), r.path)
        # again: hits, and the upstream is not called
        n = self.up.count()
        st, _, body = request(self.port, "POST", "/api/ds/query", key=BOB, body=q)
        res = json.loads(body)["results"]
        self.assertEqual(st, 200)
        self.assertEqual(res["A"]["frames"][0]["schema"]["meta"]["custom"]["cache"], "hit")
        self.assertEqual(res["A"]["frames"][0]["data"]["values"][1], [1.5, 2.5])
        self.assertEqual(self.up.count(), n)

    def test_ds_query_errors(self):
        self.start()
        self.up.routes["/boom"] = lambda r: (500, {}, b"broken")
        q = {"from": "now-1h", "to": "now", "queries": [
            {"refId": "ok", "datasource": {"uid": "api"}, "path": "/fine", "root": "$"},
            {"refId": "bad", "datasource": {"uid": "api"}, "path": "/boom"}]}
        st, _, body = request(self.port, "POST", "/api/ds/query", key=ALICE, body=q)
        self.assertEqual(st, 400)  # as Grafana: a failed query makes the answer 400
        res = json.loads(body)["results"]
        self.assertEqual(res["ok"]["status"], 200)
        self.assertEqual((res["bad"]["status"], res["bad"]["errorSource"]), (500, "downstream"))
        self.assertIn("upstream answered 500", res["bad"]["error"])
        st, _, body = request(self.port, "POST", "/api/ds/query", key=ALICE, body={
            "queries": [{"refId": "A", "datasource": {"uid": "nope"}}]})
        self.assertEqual((st, json.loads(body)), (404, {"message": "Data source not found"}))
        st, _, body = request(self.port, "POST", "/api/ds/query", key=ALICE, body=b"{not json")
        self.assertEqual(st, 400)
        self.assertIn("message", json.loads(body))
        st, _, _ = request(self.port, "POST", "/api/ds/query", key=ALICE, body={"queries": [{"refId": "A"}]})
        self.assertEqual(st, 400)
        st, _, _ = request(self.port, "POST", "/api/ds/query", key=ALICE, body={
            "from": "yesterday", "queries": [{"refId": "A", "datasource": {"uid": "api"}}]})
        self.assertEqual(st, 400)
        self.assertEqual(get(self.port, "/api/ds/query", key=ALICE)[0], 405)
        # Grafana's relative times, rounded to a unit (the end of the range up to its unit's end)
        n = self.up.count()
        st, _, body = request(self.port, "POST", "/api/ds/query", key=ALICE, body={
            "from": "now-7d/d", "to": "now/d", "queries": [
                {"refId": "A", "datasource": {"uid": "api"}, "path": "/fine",
                 "params": {"from": "${__from}", "to": "${__to}"}}]})
        self.assertEqual(st, 200, body)
        q = self.up.requests[n].path
        frm, to = (int(v.split("=")[1]) for v in q.split("?")[1].split("&"))
        self.assertEqual(frm % 86400000, 0, q)
        # (placeholders see the range aligned to timeAlign, 10 s: the end rounded up to the
        # next day's start)
        self.assertEqual(to % 86400000, 0, q)
        self.assertEqual((to - frm) // 86400000, 8, q)
        # one refId twice (a missing one is "A"): refused, not a result lost to a duplicate key
        for qs in ([{"refId": "X", "datasource": {"uid": "api"}, "path": "/fine"},
                    {"refId": "X", "datasource": {"uid": "api"}, "path": "/fine"}],
                   [{"datasource": {"uid": "api"}, "path": "/fine"},
                    {"refId": "A", "datasource": {"uid": "api"}, "path": "/fine"}]):
            st, _, body = request(self.port, "POST", "/api/ds/query", key=ALICE,
                                  body={"queries": qs})
            self.assertEqual(st, 400, body)
            self.assertIn("used twice", json.loads(body)["message"])

    # ---- shutdown -------------------------------------------------------------------------------

    def graceful(self, sig, n):
        self.start()
        results = [None] * n

        def one(i):
            try:
                results[i] = get(self.port, RES + "proxy/slow?i=%d" % i, key=ALICE, timeout=20)
            except Exception as e:  # noqa: BLE001 - recorded and asserted below
                results[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        # every request is in flight, waiting on the slow upstream
        self.assertTrue(wait_for(lambda: self.up.count("/slow") == n, timeout=10))
        self.srv.proc.send_signal(sig)
        self.assertTrue(wait_for(lambda: "standalone server stopping" in self.srv.text(), timeout=5))
        # no new connection is accepted meanwhile
        self.assertIsNone(self.srv.proc.poll())
        with self.assertRaises(OSError):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(100):
                    raise ConnectionResetError("closed without an answer")
            finally:
                s.close()
        for t in threads:
            t.join(timeout=20)
        for i, r in enumerate(results):
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200, r)
            self.assertEqual(r[1]["x-cache"], "MISS")
            self.assertEqual(json.loads(r[2])["path"], "/slow?i=%d" % i)
        self.assertEqual(self.srv.finish(timeout=10), 0)
        self.assertIn("standalone server stopped", self.srv.text())

    def test_sigterm_lets_requests_in_flight_finish(self):
        self.graceful(signal.SIGTERM, 8)

    def test_sigint_lets_requests_in_flight_finish(self):
        self.graceful(signal.SIGINT, 3)


class ConfigTest(unittest.TestCase):
    """A bad file stops the start with a message naming the key (and the line for JSON)."""

    def fails(self, raw=None, cfg=None, env=None):
        srv = Server(cfg, env=env, raw=raw)
        rc = srv.finish(timeout=10)
        self.assertNotEqual(rc, 0)
        return srv.text()

    def good(self):
        return base_config("http://127.0.0.1:9", free_port())

    def test_not_json_names_the_line(self):
        text = self.fails(raw='{\n  "listen": "127.0.0.1:1",\n  "datasources": [,]\n}\n')
        self.assertIn("cfg.json:3:", text)
        self.assertIn("not valid JSON", text)

    def test_bad_cache_backend(self):
        cfg = self.good()
        cfg["datasources"][0]["jsonData"]["cache"]["backend"] = "disk"
        text = self.fails(cfg=cfg)
        self.assertIn("datasources[0].jsonData.cache.backend: must be memory, redis or off", text)

    def test_missing_url(self):
        cfg = self.good()
        del cfg["datasources"][0]["url"]
        self.assertIn("datasources[0].url: is required", self.fails(cfg=cfg))

    def test_unknown_environment_variable(self):
        cfg = self.good()
        cfg["datasources"][0]["secureJsonData"]["bearerToken"] = "${CP_TEST_SURELY_UNSET}"
        text = self.fails(cfg=cfg)
        self.assertIn("datasources[0].secureJsonData.bearerToken: environment variable "
                      "CP_TEST_SURELY_UNSET is not set", text)

    def test_other_mistakes_name_their_key(self):
        cases = [
            ({"apiKeys": [{"key": "short", "login": "x"}]}, "apiKeys[0].key"),
            ({"apiKeys": [{"key": "long-enough-key", "login": "x", "role": "King"}]}, "apiKeys[0].role"),
            ({"listen": "nowhere"}, "listen:"),
            ({"datasources": []}, "datasources: is required"),
            ({"lsiten": "x"}, "lsiten: unknown key"),
        ]
        for top, needle in cases:
            cfg = self.good()
            cfg.update(top)
            self.assertIn(needle, self.fails(cfg=cfg), top)
        cfg = self.good()
        cfg["datasources"].append(dict(cfg["datasources"][0]))
        self.assertIn("datasources[1].uid", self.fails(cfg=cfg))
        cfg = self.good()
        cfg["datasources"][0]["jsonData"]["timeout"] = "soon"
        self.assertIn("datasources[0].jsonData.timeout", self.fails(cfg=cfg))

    def test_missing_file_and_usage(self):
        r = subprocess.run([EXE, "serve", "--config", "/nonexistent/cfg.json"], capture_output=True,
                           timeout=10, env=sanitizer_env())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"/nonexistent/cfg.json: cannot read", r.stderr)
        r = subprocess.run([EXE, "serve"], capture_output=True, timeout=10, env=sanitizer_env())
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--config", r.stderr)

    def test_shipped_config_starts(self):
        """config/standalone.json is valid (its secret from the environment)."""
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "config", "standalone.json")) as f:
            cfg = json.load(f)
        port = free_port()
        cfg["listen"] = "127.0.0.1:%d" % port
        srv = Server(cfg, env={"DEMO_UPSTREAM_TOKEN": "t0ken-for-test"}).wait_ready()
        self.assertEqual(get(port, "/api/datasources/uid/demo/resources/cache/stats",
                             key=cfg["apiKeys"][0]["key"])[0], 200)
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
