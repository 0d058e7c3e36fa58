"""Regressions from an attack on the plugin, each through the real executable with real
loopback upstreams: coalescing when the upstream fails, redaction of every credential the
plugin sends (and of each secret's common encodings), deny rules against the spellings an
upstream treats as the same path, raw protobuf bytes that are not messages, and the smaller
limits (CONNECT/TRACE, oversized secrets and headers, huge settings lists, connect timeouts).
"""
import base64
import hashlib
import hmac as hmaclib
import itertools
import json
import os
import threading
import time
import unittest
import urllib.parse

import grpc

from harness import (BUILD, Plugin, Upstream, call_resource, context, hval, pb, settings,
                     wait_for)

MODULE_DIR = os.path.join(BUILD, "modules")
_uids = itertools.count(1)


def new_uid():
    return "hard%d" % next(_uids)


def error_of(body):
    j = json.loads(body)
    assert isinstance(j.get("error"), str) and isinstance(j.get("status"), int), body
    return j


class Base(unittest.TestCase):
    plugin_env = {"CACHINGPROXY_MODULE_DIR": MODULE_DIR, "CACHINGPROXY_LOG_LEVEL": "trace"}

    def setUp(self):
        self.up = Upstream()
        self.up.server.handle_error = lambda *a: None
        self.addCleanup(self.up.close)
        self.p = Plugin(env=self.plugin_env)
        self.stopped = False
        self.addCleanup(self.stop)

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.p.stop()

    def ds(self, json_data=None, secure=None, url=None, **kw):
        return settings(url or self.up.url, json_data or {}, secure, uid=new_uid(), **kw)

    def call(self, ds, path, **kw):
        kw.setdefault("timeout", 20)
        return call_resource(self.p, ds, path, **kw)

    def concurrently(self, n, fn):
        """Runs fn(i) in n threads started together; returns their results in order."""
        out = [None] * n
        gate = threading.Barrier(n)

        def run(i):
            gate.wait()
            try:
                out[i] = fn(i)
            except Exception as e:  # noqa: BLE001 - reported by the caller's assertions
                out[i] = e
        ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        return out


class Gate:
    """An upstream route that holds every request until released, counting how many are in
    flight at once (its own count, not a clock)."""

    def __init__(self, answer):
        self.answer = answer
        self.lock = threading.Lock()
        self.inflight = self.peak = self.seen = 0
        self.release = threading.Event()

    def __call__(self, rec):
        with self.lock:
            self.inflight += 1
            self.seen += 1
            self.peak = max(self.peak, self.inflight)
        self.release.wait(30)
        with self.lock:
            self.inflight -= 1
        return self.answer(rec)


# ---- 1. coalescing under failure ---------------------------------------------------------------

class CoalescingUnderFailureTest(Base):
    def waiting(self):
        """The plugin's gauge of calls waiting now for an identical call's outcome."""
        m = self.p.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10)
        for line in m.metrics.prometheus.decode().splitlines():
            if line.startswith("cachingproxy_coalesced_waiting "):
                return int(float(line.split()[1]))
        raise AssertionError("no cachingproxy_coalesced_waiting gauge")

    def pile_up(self, gate, n, fn, release=True):
        """One call reaches the held upstream, n-1 more wait for it inside the plugin, then
        the upstream answers (release), or is left to time out; returns every call's result,
        the leader's first."""
        self.addCleanup(gate.release.set)
        res = [None] * n

        def run(i):
            try:
                res[i] = fn(i)
            except Exception as e:  # noqa: BLE001 - reported by the caller's assertions
                res[i] = e
        ts = [threading.Thread(target=run, args=(0,))]
        ts[0].start()
        self.assertTrue(wait_for(lambda: gate.seen == 1, 15))
        ts += [threading.Thread(target=run, args=(i,)) for i in range(1, n)]
        for t in ts[1:]:
            t.start()
        self.assertTrue(wait_for(lambda: self.waiting() == n - 1, 15), self.waiting())
        if release:
            gate.release.set()
        for t in ts:
            t.join(30)
        return res

    def test_waiters_share_a_timeout(self):
        """20 identical calls to an upstream that never answers in time: one upstream
        request, and every call ends with the leader's 504 (no waiter fetches on its own)."""
        gate = Gate(lambda r: (200, {}, b"too late"))
        self.up.routes["/hang"] = gate
        ds = self.ds({"timeout": 5})
        res = self.pile_up(gate, 20, lambda i: self.call(ds, "proxy/hang"), release=False)
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 504, r[2][:300])
            self.assertIn("did not answer", error_of(r[2])["error"])
        self.assertEqual(gate.seen, 1)
        self.assertEqual(self.waiting(), 0)

    def test_waiters_share_a_5xx_answer(self):
        gate = Gate(lambda r: (503, {"Content-Type": "text/plain", "Retry-After": "7"},
                               b"maintenance window"))
        self.up.routes["/down"] = gate
        ds = self.ds()
        res = self.pile_up(gate, 10, lambda i: self.call(ds, "proxy/down"))
        self.assertEqual(gate.seen, 1, "waiters fetched on their own")
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 503)
            self.assertEqual(r[2], b"maintenance window")
            self.assertEqual(hval(r[1], "Retry-After"), "7")
            self.assertEqual(hval(r[1], "X-Cache"), "MISS")

    def test_stale_if_error_applies_to_each_waiter(self):
        gate = Gate(lambda r: (500, {}, b"broken"))
        self.up.routes["/flaky"] = lambda r: (200, {"Content-Type": "application/json"},
                                              b'{"v":1}')
        ds = self.ds({"cache": {"resourceTtl": "1s", "staleIfError": "1h"}})
        t_stored = time.time()
        self.assertEqual(self.call(ds, "proxy/flaky")[0], 200)
        self.up.routes["/flaky"] = gate
        # the entry's 1 s lifetime has to pass before the upstream is asked again
        self.assertTrue(wait_for(lambda: time.time() > t_stored + 1.1, 5))
        res = self.pile_up(gate, 10, lambda i: self.call(ds, "proxy/flaky"))
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 200)
            self.assertEqual(r[2], b'{"v":1}')
            self.assertEqual(hval(r[1], "X-Cache"), "STALE")
        self.assertEqual(gate.seen, 1)

    def test_per_user_answers_are_never_shared_and_go_upstream_side_by_side(self):
        n = itertools.count(1)
        lock = threading.Lock()
        inflight = [0, 0]  # now, peak

        def route(r):
            with lock:
                inflight[0] += 1
                inflight[1] = max(inflight[1], inflight[0])
                k = next(n)
            time.sleep(0.15)
            with lock:
                inflight[0] -= 1
            return 200, {"Set-Cookie": "session=s%d" % k, "Content-Type": "text/plain"}, \
                b"for caller %d" % k
        self.up.routes["/me"] = route
        ds = self.ds()
        res = self.concurrently(6, lambda i: self.call(ds, "proxy/me", login="u%d" % i))
        bodies = set()
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r[0], 200)
            cookie = hval(r[1], "Set-Cookie")
            self.assertEqual(r[2], b"for caller " + cookie.split("=s")[1].encode())
            bodies.add(r[2])
        self.assertEqual(len(bodies), 6, "an answer with a cookie went to two callers")
        self.assertEqual(self.up.count("/me"), 6)
        # the first such answer leaves a hit-for-miss note: the others do not queue
        self.assertGreater(inflight[1], 1, "the calls waited for each other")

    def test_query_waiters_share_an_error(self):
        self.qgate = Gate(lambda r: (200, {}, b"[]"))
        self.up.routes["/qhang"] = self.qgate
        ds = self.ds({"timeout": 5})
        q = pb.DataQuery(refId="A", json=json.dumps({"path": "/qhang"}).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=1000, toEpochMS=2000))

        def one(i):
            req = pb.QueryDataRequest(pluginContext=context(ds, login="u%d" % i), queries=[q])
            return self.p.data.QueryData(req, timeout=20).responses["A"]
        res = self.pile_up(self.qgate, 8, one, release=False)
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r.status, 504, r.error)
        self.assertEqual(self.qgate.seen, 1)


# ---- 2. redaction of every credential the plugin sends -------------------------------------------

def echo(r):
    """An upstream that answers 400 with everything it received, JSON-encoded."""
    body = json.dumps({"path": r.path, "headers": dict(r.headers)}).encode()
    return 400, {"Content-Type": "application/json"}, body


class RedactionTest(Base):
    def query_error(self, ds, path="/echo", **user):
        q = pb.DataQuery(refId="A", json=json.dumps({"path": path}).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=1000, toEpochMS=2000))
        req = pb.QueryDataRequest(pluginContext=context(ds, **user), queries=[q])
        r = self.p.data.QueryData(req, timeout=20).responses["A"]
        self.assertEqual(r.status, 400, r.error)
        self.assertIn("upstream answered 400", r.error)
        return r.error

    def assert_clean(self, texts, needles):
        self.stop()
        logs = self.p.stderr_text()
        self.assertIn("query failed", logs)
        for s in needles:
            for t in texts + [logs]:
                self.assertNotIn(s, t, "a credential reached a user-visible text")
        # the echo itself did reach the error text: it was redacted, not lost
        self.assertTrue(any("[redacted]" in t for t in texts), texts)

    def test_basic_auth_header_and_its_base64(self):
        self.up.routes["/echo"] = echo
        ds = self.ds({}, {"basicAuthPassword": "pw-Basic-9911"}, basic_auth=True,
                     basic_user="bob")
        b64 = base64.b64encode(b"bob:pw-Basic-9911").decode()
        err = self.query_error(ds)
        self.assertEqual(self.up.last().header("Authorization"), "Basic " + b64)
        self.assert_clean([err], [b64, "pw-Basic-9911"])

    def test_json_escaped_secret(self):
        self.up.routes["/echo"] = echo
        token = 'tok"en\\with-quote-and-backslash'
        ds = self.ds({"authType": "bearer"}, {"bearerToken": token})
        err = self.query_error(ds)
        escaped = json.dumps(token)[1:-1]
        self.assertIn('\\"', escaped)
        self.assert_clean([err], [escaped, token])

    def test_url_encoded_api_key(self):
        self.up.routes["/echo"] = echo
        key = "key with/slash+plus&amp"
        ds = self.ds({"authType": "apiKey", "apiKeyQueryParam": "k"}, {"apiKey": key})
        err = self.query_error(ds)
        self.assertIn(urllib.parse.quote(key, safe=""), self.up.last().path)
        self.assert_clean([err], [key, urllib.parse.quote(key, safe=""),
                                  urllib.parse.quote_plus(key)])

    def test_api_key_header(self):
        self.up.routes["/echo"] = echo
        ds = self.ds({"authType": "apiKey", "apiKeyHeader": "X-Key"}, {"apiKey": "ak-7766-secret"})
        err = self.query_error(ds)
        self.assert_clean([err], ["ak-7766-secret"])

    def test_oauth2_access_token(self):
        self.up.routes["/echo"] = echo
        self.up.routes["/token"] = lambda r: (200, {"Content-Type": "application/json"},
                                              b'{"access_token":"at-5544-live","expires_in":3600}')
        ds = self.ds({"authType": "oauth2", "oauth2TokenUrl": self.up.url + "/token",
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": "cs-3322"})
        err = self.query_error(ds)
        self.assertEqual(self.up.last().header("Authorization"), "Bearer at-5544-live")
        self.assert_clean([err], ["at-5544-live", "cs-3322"])

    def test_hmac_signature(self):
        self.up.routes["/echo"] = echo
        ds = self.ds({"authType": "hmac"}, {"hmacSecret": "hm-1234-key"})
        err = self.query_error(ds)
        sig = self.up.last().header("X-Signature")
        self.assertTrue(sig and len(sig) == 64)
        self.assert_clean([err], [sig, "hm-1234-key"])

    def test_module_added_header(self):
        self.up.routes["/echo"] = echo
        ds = self.ds({"authType": "module", "authModule": "example",
                      "authModuleConfig": {"header": "X-Mod", "token": "mod-tok-8080"}})
        err = self.query_error(ds)
        self.assertEqual(self.up.last().header("X-Mod"), "mod-tok-8080")
        self.assert_clean([err], ["mod-tok-8080"])

    def test_forwarded_user_token(self):
        self.up.routes["/echo"] = echo
        ds = self.ds({"authType": "forwardOAuth", "oauthPassThru": True})
        q = pb.DataQuery(refId="A", json=json.dumps({"path": "/echo"}).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=1000, toEpochMS=2000))
        req = pb.QueryDataRequest(pluginContext=context(ds), queries=[q])
        req.headers["Authorization"] = "Bearer user-tok-4242"
        r = self.p.data.QueryData(req, timeout=20).responses["A"]
        self.assertEqual(r.status, 400)
        self.assert_clean([r.error], ["user-tok-4242"])


# ---- 3. deny rules against other spellings of a path ---------------------------------------------

SPELLINGS = [
    ("proxy/SECRET-AREA", None),
    ("proxy/Secret-Area/doc", None),
    ("proxy/secret-area;x", None),
    ("proxy/secret-area;jsessionid=1/doc", None),
    ("proxy/secret-area.", None),
    ("proxy/secret-area./doc", None),
    ("proxy/secret-area..", None),
    ("proxy/secret-area ", "proxy/secret-area%20"),
    ("proxy/secret-area", "proxy/secret-%61rea"),
    ("proxy/SECRET-area;x./doc", None),
]


class PathSpellingTest(Base):
    def rules_ds(self):
        return self.ds({"cache": {"backend": "off"},
                        "rules": [{"effect": "deny", "paths": ["/secret-area", "/secret-area/**"]}]})

    def test_each_spelling_is_denied_before_the_upstream(self):
        ds = self.rules_ds()
        for path, url in SPELLINGS:
            with self.subTest(path=path):
                code, _, body, _ = self.call(ds, path, url=url)
                self.assertEqual(code, 403, (path, body[:200]))
        self.assertEqual(self.up.count(), 0, [r.path for r in self.up.requests])

    def test_queries_take_the_same_policy(self):
        ds = self.rules_ds()
        for path in ["/SECRET-AREA", "/secret-area;x", "/secret-area.", "/Secret-Area/doc"]:
            q = pb.DataQuery(refId="A", json=json.dumps({"path": path}).encode())
            req = pb.QueryDataRequest(pluginContext=context(ds), queries=[q])
            r = self.p.data.QueryData(req, timeout=20).responses["A"]
            self.assertEqual(r.status, 403, (path, r.error))
        self.assertEqual(self.up.count(), 0)

    def test_neighbours_still_pass(self):
        ds = self.rules_ds()
        for path in ["proxy/secret-areas", "proxy/public;v=1/x", "proxy/area/secret-area.txt"]:
            code, _, body, _ = self.call(ds, path)
            self.assertEqual(code, 200, (path, body[:200]))
        self.assertEqual(self.up.count(), 3)

    def test_allow_rules_stay_exact(self):
        """An allow rule does not widen to other spellings: with defaultAction deny, only the
        exact path is allowed."""
        ds = self.ds({"cache": {"backend": "off"}, "defaultAction": "deny",
                      "rules": [{"effect": "allow", "paths": ["/open/**"]}]})
        self.assertEqual(self.call(ds, "proxy/open/x")[0], 200)
        self.assertEqual(self.call(ds, "proxy/OPEN/x")[0], 403)
        self.assertEqual(self.up.count(), 1)


# ---- 4. raw bytes that are not messages ------------------------------------------------------------

RAW = [bytes.fromhex("ffffffffffffffffffffff01"), bytes.fromhex("ffffffffffffffffffff01"),
       bytes.fromhex("12ffffffffffffffff7f41"), bytes.fromhex("0a"), bytes.fromhex("1a05414243")]
METHODS = ["/pluginv2.Resource/CallResource", "/pluginv2.Data/QueryData",
           "/pluginv2.Diagnostics/CheckHealth", "/grpc.health.v1.Health/Check"]


class RawBytesTest(Base):
    def test_malformed_messages_are_invalid_argument(self):
        for m in METHODS:
            stream = m.endswith("CallResource")
            if stream:
                fn = self.p.channel.unary_stream(m, request_serializer=None,
                                                 response_deserializer=None)
            else:
                fn = self.p.channel.unary_unary(m, request_serializer=None,
                                                response_deserializer=None)
            for raw in RAW:
                with self.subTest(method=m, raw=raw.hex()):
                    with self.assertRaises(grpc.RpcError) as cm:
                        out = fn(raw, timeout=10)
                        if stream:
                            list(out)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # still serving
        from harness import health_pb2
        r = self.p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
        self.assertEqual(r.status, 1)


# ---- 5. smaller limits ------------------------------------------------------------------------------

class LimitsTest(Base):
    def test_connect_and_trace_are_refused_405(self):
        ds = self.ds({"cache": {"backend": "off"}})
        for m in ["CONNECT", "TRACE", "connect"]:
            code, _, body, _ = self.call(ds, "proxy/x", method=m)
            self.assertEqual(code, 405, body)
            self.assertIn("never forwarded", error_of(body)["error"])
        q = pb.DataQuery(refId="A", json=json.dumps({"path": "/x", "method": "TRACE"}).encode())
        r = self.p.data.QueryData(pb.QueryDataRequest(pluginContext=context(ds), queries=[q]),
                                  timeout=20).responses["A"]
        self.assertEqual(r.status, 405)
        self.assertEqual(self.up.count(), 0)

    def test_oversized_bearer_token_names_the_limit(self):
        ds = self.ds({"authType": "bearer"}, {"bearerToken": "t" * (1 << 20)})
        code, _, body, _ = self.call(ds, "proxy/x")
        self.assertEqual(code, 400)
        err = error_of(body)["error"]
        self.assertIn("bearerToken", err)
        self.assertIn("16384", err)
        self.assertEqual(self.up.count(), 0)

    def test_oversized_forwarded_header_is_413(self):
        ds = self.ds({"cache": {"backend": "off"}})
        code, _, body, _ = self.call(ds, "proxy/x", headers={"Accept": "a" * (1 << 20)})
        self.assertEqual(code, 413)
        self.assertIn("65536", error_of(body)["error"])
        q = pb.DataQuery(refId="A", json=json.dumps(
            {"path": "/x", "headers": {"X-Big": "b" * (1 << 20)}}).encode())
        r = self.p.data.QueryData(pb.QueryDataRequest(pluginContext=context(ds), queries=[q]),
                                  timeout=20).responses["A"]
        self.assertEqual(r.status, 413, r.error)
        self.assertEqual(self.up.count(), 0)

    def test_100k_allowed_paths(self):
        paths = ["/p%d/**" % i for i in range(100000)] + ["/ok/**"]
        ds = self.ds({"cache": {"backend": "off"}, "allowedPaths": paths})
        code, _, body, _ = self.call(ds, "proxy/ok/1", timeout=60)
        self.assertEqual(code, 200, body[:300])
        self.assertEqual(self.call(ds, "proxy/nope", timeout=60)[0], 404)

    def test_health_check_gives_up_at_the_connect_timeout(self):
        iface = next((n for n in sorted(os.listdir("/sys/class/net")) if n != "lo"), None)
        if iface is None:
            self.skipTest("no network interface for a link-local address")
        ds = self.ds({"timeout": 60}, url="http://[fe80::1%%25%s]:9" % iface)
        t0 = time.time()
        r = self.p.diag.CheckHealth(pb.CheckHealthRequest(pluginContext=context(ds)), timeout=70)
        took = time.time() - t0
        self.assertEqual(r.status, 2)  # ERROR
        self.assertIn("unreachable", r.message.lower())
        if "within 10 s" in r.message:
            self.assertLess(took, 30)  # the 10 s connect timeout, not the 60 s call timeout
        self.assertNotIn("within 60 s", r.message)


if __name__ == "__main__":
    unittest.main()
