"""The resource proxy (SPEC.md sections 3, 4, 5): forwarding, credential injection for every
authType, TLS towards the upstream, authorization (rules, authzUrl, modules), path safety,
streaming and size limits, upstream failures, secrets kept out of logs and errors, and the
cache/stats and cache/purge resources. Everything goes through the real executable over gRPC
against real loopback servers."""
import base64
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
import unittest
import urllib.parse

import grpc

from certs import Certs
from harness import BUILD, Plugin, Upstream, call_resource, hval, settings, wait_for
from resource_helpers import (RawServer, TLSUpstream, chunked, closed_port, error_json,
                              stream_bytes)

MODULE_DIR = os.path.join(BUILD, "modules")
MiB = 1 << 20
CALL_TIMEOUT = 15

PLUGIN = None
_uids = itertools.count(1)


def new_uid():
    return "res%d" % next(_uids)


def setUpModule():
    global PLUGIN
    PLUGIN = Plugin(env={"CACHINGPROXY_MODULE_DIR": MODULE_DIR})


def restart_if_dead():
    """Returns None when the shared plugin is alive, else its exit status after replacing it."""
    global PLUGIN
    rc = PLUGIN.proc.poll()
    if rc is None:
        return None
    try:
        PLUGIN.stop()
    except Exception:  # noqa: BLE001 - it is dead already; only the pipes are left to close
        pass
    PLUGIN = Plugin(env={"CACHINGPROXY_MODULE_DIR": MODULE_DIR})
    return rc


def tearDownModule():
    if PLUGIN is not None:
        PLUGIN.stop()


class Base(unittest.TestCase):
    """A shared plugin process, a fresh recording upstream per test and a fresh data source
    uid per settings object. Pure forwarding tests turn the cache off (X-Cache: BYPASS)."""

    def setUp(self):
        restart_if_dead()
        self.p = PLUGIN
        self.up = Upstream()
        self.up.server.handle_error = lambda *a: None  # resets and aborts are on purpose here
        self.addCleanup(self.up.close)

    def tearDown(self):
        rc = restart_if_dead()
        # a crash is reported by the test that caused it; the next test gets a fresh process
        self.assertIsNone(rc, "the plugin died during this test (signal %s)" % -(rc or 0))

    def ds(self, json_data=None, secure=None, url=None, cache=False, **kw):
        jd = {} if cache else {"cache": {"backend": "off"}}
        jd.update(json_data or {})
        return settings(url if url is not None else self.up.url, jd, secure, uid=new_uid(), **kw)

    def call(self, ds, path, plugin=None, **kw):
        kw.setdefault("timeout", CALL_TIMEOUT)
        return call_resource(plugin or self.p, ds, path, **kw)

    def assert_error(self, res, status, *needles):
        code, hdrs, body, _ = res
        self.assertEqual(code, status, body[:500])
        j = error_json(body)
        self.assertEqual(j["status"], status, j)
        self.assertTrue(j["error"], j)
        for n in needles:
            self.assertIn(n.lower(), j["error"].lower(), j)
        return j


# ---- 1. forwarding ------------------------------------------------------------------------

class ForwardingTest(Base):
    def test_method_path_query_body_and_base_path(self):
        ds = self.ds(url=self.up.url + "/base")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            body = b"" if method == "GET" else b"\x00payload \xff\r\n" + method.encode()
            code, hdrs, out, _ = self.call(ds, "proxy/items/42", method=method, body=body,
                                           url="proxy/items/42?a=1&b=x%20y&a=2&c=")
            self.assertEqual(code, 200, out)
            rec = self.up.last()
            self.assertEqual(rec.method, method)
            self.assertEqual(rec.path, "/base/items/42?a=1&b=x%20y&a=2&c=")
            self.assertEqual(rec.body, body)
            # no header the client did not send (libcurl would add these two)
            self.assertIsNone(rec.header("Content-Type"), method)
            self.assertIsNone(rec.header("Accept"), method)
            self.assertEqual(json.loads(out)["path"], "/base/items/42?a=1&b=x%20y&a=2&c=")
            self.assertEqual(hval(hdrs, "X-Cache"), "BYPASS")
        self.assertEqual(self.up.count(), 6)
        code, hdrs, out, _ = self.call(ds, "proxy/items/42", method="HEAD")
        self.assertEqual(code, 200)
        self.assertEqual(out, b"")
        self.assertEqual(self.up.last().method, "HEAD")
        # the length a GET would have, as the upstream said
        self.up.routes["/base/fixed"] = lambda r: (200, {}, b"x" * 1234)
        code, hdrs, out, _ = self.call(ds, "proxy/fixed", method="HEAD")
        self.assertEqual((code, out, hval(hdrs, "Content-Length")), (200, b"", "1234"))

    def test_path_is_reencoded_and_edges(self):
        ds = self.ds(url=self.up.url + "/base/")
        cases = [("proxy/items/a b/\u00e9", "proxy/items/a%20b/%C3%A9", "/base/items/a%20b/%C3%A9"),
                 ("proxy/items/", "proxy/items/", "/base/items/"),
                 ("proxy/a:b@c;d=e,f", "proxy/a:b@c;d=e,f", "/base/a:b@c;d=e,f"),
                 ("proxy/q", "/proxy/q?", "/base/q")]
        for path, url, want in cases:
            code, _, out, _ = self.call(ds, path, url=url)
            self.assertEqual(code, 200, (path, out))
            self.assertEqual(self.up.last().path, want, path)

    def test_status_and_response_headers(self):
        self.up.routes["/teapot"] = lambda r: (418, {
            "Content-Type": "text/x-test", "X-Up": "yes", "Keep-Alive": "timeout=5",
            "Connection": "keep-alive, X-Hop", "X-Hop": "hop", "Proxy-Connection": "x",
            "Cache-Control": "no-store"}, b"short and stout")
        ds = self.ds()
        code, hdrs, out, _ = self.call(ds, "proxy/teapot")
        self.assertEqual(code, 418)
        self.assertEqual(out, b"short and stout")
        self.assertEqual(hval(hdrs, "Content-Type"), "text/x-test")
        self.assertEqual(hval(hdrs, "X-Up"), "yes")
        for hop in ("Connection", "Keep-Alive", "X-Hop", "Proxy-Connection",
                    "Transfer-Encoding"):
            self.assertIsNone(hval(hdrs, hop), hop)
        self.up.routes["/missing"] = lambda r: (404, {}, b"nope")
        self.up.routes["/boom"] = lambda r: (503, {"Retry-After": "7"}, b"down")
        code, _, out, _ = self.call(ds, "proxy/missing")
        self.assertEqual((code, out), (404, b"nope"))
        code, hdrs, out, _ = self.call(ds, "proxy/boom")
        self.assertEqual((code, out), (503, b"down"))
        self.assertEqual(hval(hdrs, "Retry-After"), "7")

    def test_chunked_upstream_and_repeated_headers(self):
        body = bytes(range(256)) * 100
        raw = (b"HTTP/1.1 201 Created\r\nContent-Type: application/octet-stream\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close, X-Drop\r\nKeep-Alive: 5\r\n"
               b"X-Drop: 1\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n"
               + chunked(body, 1000))
        srv = RawServer(raw)
        self.addCleanup(srv.close)
        code, hdrs, out, _ = self.call(self.ds(url=srv.url), "proxy/c")
        self.assertEqual(code, 201)
        self.assertEqual(out, body)
        for hop in ("Transfer-Encoding", "Connection", "Keep-Alive", "X-Drop", "Trailer",
                    "Upgrade"):
            self.assertIsNone(hval(hdrs, hop), hop)
        multi = [v for k, vs in hdrs.items() if k.lower() == "x-multi" for v in vs]
        self.assertEqual(sorted(multi), ["a", "b"])

    def test_request_headers_allow_list(self):
        ds = self.ds()
        sent = {"Accept": "application/x-mine", "Accept-Encoding": "identity",
                "Content-Type": "text/x-body", "If-None-Match": '"etag-1"',
                "If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT", "X-Custom": "nope",
                "Cookie": "grafana_session=abc", "Authorization": "Bearer grafana-user-token",
                "X-ID-Token": "grafana-id", "X-Grafana-Org-Id": "1", "Host": "evil.example",
                "Proxy-Authorization": "Basic eA=="}
        code, _, out, _ = self.call(ds, "proxy/h", method="POST", body=b"{}", headers=sent)
        self.assertEqual(code, 200, out)
        rec = self.up.last()
        for k in ("Accept", "Accept-Encoding", "Content-Type", "If-None-Match",
                  "If-Modified-Since"):
            self.assertEqual(rec.header(k), sent[k], k)
        for k in ("X-Custom", "Cookie", "Authorization", "X-ID-Token", "X-Grafana-Org-Id",
                  "Proxy-Authorization"):
            self.assertIsNone(rec.header(k), k)
        self.assertEqual(rec.header("Host"), "127.0.0.1:%d" % self.up.port)

    def test_forward_headers_setting_and_header_injection(self):
        ds = self.ds({"forwardHeaders": ["X-Custom", "Cookie", "Authorization", "X-ID-Token"]})
        code, _, _, _ = self.call(ds, "proxy/h", headers={
            "X-Custom": "yes", "Cookie": "c=1", "Authorization": "Bearer u", "X-ID-Token": "i",
            "Accept": "application/x-mine"})
        self.assertEqual(code, 200)
        rec = self.up.last()
        self.assertEqual(rec.header("X-Custom"), "yes")
        for k in ("Cookie", "Authorization", "X-ID-Token"):
            self.assertIsNone(rec.header(k), k)
        self.assertNotEqual(rec.header("Accept"), "application/x-mine")
        # a header value carrying CR/LF never splits into a second upstream header
        ds = self.ds()
        code, _, _, _ = self.call(ds, "proxy/h", headers={
            "Accept": "text/plain\r\nX-Injected: 1", "Content-Type": "a\nX-Injected2: 2"})
        self.assertIn(code, (200, 400))
        for r in self.up.requests:
            self.assertIsNone(r.header("X-Injected"))
            self.assertIsNone(r.header("X-Injected2"))

    def test_allowed_paths_relative_to_base(self):
        ds = self.ds({"allowedPaths": ["/items/**", "/one/*/x"]}, url=self.up.url + "/base")
        for path in ("proxy/items", "proxy/items/1", "proxy/items/1/2", "proxy/one/a/x"):
            code, _, out, _ = self.call(ds, path)
            self.assertEqual(code, 200, (path, out))
        self.assertEqual(self.up.last().path, "/base/one/a/x")
        n = self.up.count()
        for path in ("proxy/base/items/1", "proxy/itemsx", "proxy/other", "proxy/one/a/b/x",
                     "proxy/one/a/x/y", "proxy"):
            self.assert_error(self.call(ds, path), 404)
        self.assertEqual(self.up.count(), n, "a refused path reached the upstream")


# ---- 2. credentials -----------------------------------------------------------------------

class CredentialsTest(Base):
    def last_auth(self):
        return self.up.last().header("Authorization")

    def test_none_sends_no_credentials(self):
        code, _, _, _ = self.call(self.ds(), "proxy/x", headers={"Authorization": "Bearer u"})
        self.assertEqual(code, 200)
        self.assertIsNone(self.last_auth())
        self.assertIsNone(self.up.last().header("X-API-Key"))

    def test_basic_grafana_fields(self):
        want = "Basic " + base64.b64encode(b"bob:s3cr3t:pw\xc3\xa9").decode()
        for jd in ({}, {"authType": "basic"}):
            ds = self.ds(jd, {"basicAuthPassword": "s3cr3t:pw\u00e9"}, basic_auth=True,
                         basic_user="bob")
            code, _, _, _ = self.call(ds, "proxy/x", headers={"Authorization": "Bearer u"})
            self.assertEqual(code, 200)
            self.assertEqual(self.last_auth(), want)

    def test_bearer(self):
        ds = self.ds({"authType": "bearer"}, {"bearerToken": "tok-abc.def"})
        code, _, _, _ = self.call(ds, "proxy/x", headers={"Authorization": "Bearer user"})
        self.assertEqual(code, 200)
        self.assertEqual(self.last_auth(), "Bearer tok-abc.def")
        self.assertEqual(len([k for k, _ in self.up.last().headers
                              if k.lower() == "authorization"]), 1)

    def test_api_key_header_and_query(self):
        ds = self.ds({"authType": "apiKey"}, {"apiKey": "key-123"})
        self.assertEqual(self.call(ds, "proxy/x")[0], 200)
        self.assertEqual(self.up.last().header("X-API-Key"), "key-123")
        ds = self.ds({"authType": "apiKey", "apiKeyHeader": "X-Token"}, {"apiKey": "key-456"})
        self.assertEqual(self.call(ds, "proxy/x")[0], 200)
        self.assertEqual(self.up.last().header("X-Token"), "key-456")
        self.assertIsNone(self.up.last().header("X-API-Key"))
        ds = self.ds({"authType": "apiKey", "apiKeyQueryParam": "api_key"},
                     {"apiKey": "k&v=1 2"})
        self.assertEqual(self.call(ds, "proxy/x", url="proxy/x?a=1")[0], 200)
        rec = self.up.last()
        self.assertTrue(rec.path.startswith("/x?a=1&"), rec.path)
        q = urllib.parse.parse_qs(rec.path.split("?", 1)[1])
        self.assertEqual(q, {"a": ["1"], "api_key": ["k&v=1 2"]})
        self.assertIsNone(rec.header("X-API-Key"))
        self.assertEqual(self.call(ds, "proxy/y")[0], 200)
        self.assertEqual(urllib.parse.parse_qs(self.up.last().path.split("?", 1)[1]),
                         {"api_key": ["k&v=1 2"]})
        # a parameter of the same name from the client (in any spelling) never reaches the
        # upstream: the credential's is the only one
        for url in ("proxy/z?api_key=mine&b=2", "proxy/z?b=2&api%5Fkey=mine&api_key",
                    "proxy/z?api_key=a&api_key=b&b=2"):
            self.assertEqual(self.call(ds, "proxy/z", url=url)[0], 200, url)
            q = urllib.parse.parse_qs(self.up.last().path.split("?", 1)[1],
                                      keep_blank_values=True)
            self.assertEqual(q, {"b": ["2"], "api_key": ["k&v=1 2"]}, url)
        self.assertEqual(self.call(ds, "proxy/z", url="proxy/z?api_key=mine")[0], 200)
        self.assertEqual(self.up.last().path, "/z?api_key=k%26v%3D1%202")

    def test_custom_headers(self):
        ds = self.ds({"authType": "bearer", "httpHeaderName1": "X-Tenant",
                      "httpHeaderName2": "X-Env"},
                     {"bearerToken": "t0k", "httpHeaderValue1": "tenant-1",
                      "httpHeaderValue2": "prod"})
        self.assertEqual(self.call(ds, "proxy/x", headers={"X-Tenant": "forged"})[0], 200)
        rec = self.up.last()
        self.assertEqual(rec.header("X-Tenant"), "tenant-1")
        self.assertEqual(rec.header("X-Env"), "prod")
        self.assertEqual(rec.header("Authorization"), "Bearer t0k")

    def check_hmac(self, rec, secret, header="X-Signature", algo=hashlib.sha256):
        ts = rec.header("X-Timestamp")
        self.assertIsNotNone(ts)
        self.assertLess(abs(int(ts) - time.time()), 30)
        msg = "%s\n%s\n%s\n%s" % (rec.method, rec.path, ts, hashlib.sha256(rec.body).hexdigest())
        want = hmac.new(secret, msg.encode(), algo).hexdigest()
        self.assertEqual(rec.header(header), want)

    def test_hmac_signature(self):
        ds = self.ds({"authType": "hmac"}, {"hmacSecret": "hm-secret"},
                     url=self.up.url + "/v2")
        self.assertEqual(self.call(ds, "proxy/sig/a b", url="proxy/sig/a%20b?z=1&a=%2F")[0], 200)
        rec = self.up.last()
        self.assertEqual(rec.path, "/v2/sig/a%20b?z=1&a=%2F")
        self.check_hmac(rec, b"hm-secret")
        body = b'{"q": "select 1"}\n'
        self.assertEqual(self.call(ds, "proxy/sig", method="POST", body=body)[0], 200)
        rec = self.up.last()
        self.assertEqual(rec.body, body)
        self.check_hmac(rec, b"hm-secret")
        ds = self.ds({"authType": "hmac", "hmacHeader": "X-Sig", "hmacAlgorithm": "sha512"},
                     {"hmacSecret": "other"})
        self.assertEqual(self.call(ds, "proxy/p", method="PUT", body=b"x")[0], 200)
        rec = self.up.last()
        self.assertIsNone(rec.header("X-Signature"))
        self.check_hmac(rec, b"other", "X-Sig", hashlib.sha512)

    # -- oauth2 client credentials --

    def token_route(self, expires_in=3600, status=200, delay=None):
        state = {"n": 0}
        lock = threading.Lock()

        def route(rec):
            with lock:
                state["n"] += 1
                n = state["n"]
            if status != 200:
                return status, {"Content-Type": "application/json"}, b'{"error":"invalid_client"}'
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"access_token": "at-%d" % n, "token_type": "bearer",
                 "expires_in": expires_in}).encode()
        self.up.routes["/oauth/token"] = {"delay": delay, "then": route} if delay else route

    def oauth_ds(self, **extra):
        jd = {"authType": "oauth2", "oauth2TokenUrl": self.up.url + "/oauth/token",
              "oauth2ClientId": "cid", "oauth2Scopes": ["read", "write"],
              "oauth2Audience": "api://x"}
        jd.update(extra)
        return self.ds(jd, {"oauth2ClientSecret": "csecret"})

    def data_auths(self):
        return [r.header("Authorization") for r in self.up.requests if r.path == "/data"]

    def test_oauth2_token_fetched_once_and_shared(self):
        self.token_route()
        ds = self.oauth_ds()
        for login, role in (("alice", "Viewer"), ("bob", "Editor"), ("carol", "Admin"),
                            ("alice", "Viewer"), ("dave", "Viewer")):
            code, _, out, _ = self.call(ds, "proxy/data", login=login, role=role)
            self.assertEqual(code, 200, out)
        self.assertEqual(self.up.count("/oauth/token"), 1)
        self.assertEqual(self.data_auths(), ["Bearer at-1"] * 5)
        tok = [r for r in self.up.requests if r.path == "/oauth/token"][0]
        self.assertEqual(tok.method, "POST")
        self.assertTrue(tok.header("Content-Type").startswith("application/x-www-form-urlencoded"))
        form = urllib.parse.parse_qs(tok.body.decode())
        self.assertEqual(form["grant_type"], ["client_credentials"])
        self.assertEqual(form["scope"], ["read write"])
        self.assertEqual(form["audience"], ["api://x"])
        basic = "Basic " + base64.b64encode(b"cid:csecret").decode()
        self.assertTrue(tok.header("Authorization") == basic or
                        (form.get("client_id") == ["cid"] and
                         form.get("client_secret") == ["csecret"]), (tok.headers, form))

    def test_oauth2_one_fetch_under_concurrency(self):
        self.token_route(delay=0.3)
        ds = self.oauth_ds()
        results = []

        def one(i):
            results.append(self.call(ds, "proxy/data", login="u%d" % i)[0])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CALL_TIMEOUT)
        self.assertEqual(results, [200] * 8)
        self.assertEqual(self.up.count("/oauth/token"), 1)
        self.assertEqual(self.data_auths(), ["Bearer at-1"] * 8)

    def test_oauth2_refreshed_before_expiry(self):
        # lifetime 2 s: the margin max(5 s, 10%) is capped at half the lifetime, so the token
        # is refreshed about 1 s after it was fetched, before it expires at 2 s
        self.token_route(expires_in=2)
        ds = self.oauth_ds()
        t0 = time.time()
        self.assertEqual(self.call(ds, "proxy/data")[0], 200)
        fetched = time.time()
        self.assertEqual(self.call(ds, "proxy/data")[0], 200)
        if time.time() - t0 < 0.8:
            self.assertEqual(self.up.count("/oauth/token"), 1, "refreshed far too early")

        def refreshed():
            self.assertEqual(self.call(ds, "proxy/data")[0], 200)
            return self.data_auths()[-1] == "Bearer at-2"
        self.assertTrue(wait_for(refreshed, timeout=4, interval=0.05), self.data_auths())
        elapsed = time.time() - fetched
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 2.0, "the token was used up to its expiry")
        self.assertEqual(self.up.count("/oauth/token"), 2)
        self.assertEqual(self.data_auths()[0], "Bearer at-1")

    def test_oauth2_token_failure_is_502_without_secrets(self):
        self.token_route(status=401)
        ds = self.oauth_ds()
        res = self.call(ds, "proxy/data")
        j = self.assert_error(res, 502, "oauth2", "401")
        self.assertNotIn("csecret", res[2].decode())
        self.assertEqual(j["error"].lower().count("oauth2 token"), 1, j)
        self.assertEqual(self.up.count("/data"), 0)
        ds = self.ds({"authType": "oauth2",
                      "oauth2TokenUrl": "http://127.0.0.1:%d/t" % closed_port(),
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": "csecret"})
        res = self.call(ds, "proxy/data")
        self.assertNotIn("csecret", res[2].decode())
        self.assertEqual(self.up.count("/data"), 0)
        # because oauth2.c formats err->msg with itself as an argument
        j2 = self.assert_error(res, 502, "oauth2", "127.0.0.1", "unreachable")
        self.assertEqual(j2["error"].lower().count("oauth2 token"), 1, j2)

    # -- forwarded OAuth --

    def test_forward_oauth(self):
        ds = self.ds({"authType": "forwardOAuth", "oauthPassThru": True})
        code, _, out, _ = self.call(ds, "proxy/me", headers={"Authorization": "Bearer user-tok",
                                                              "X-ID-Token": "idt"})
        self.assertEqual(code, 200, out)
        rec = self.up.last()
        self.assertEqual(rec.header("Authorization"), "Bearer user-tok")
        self.assertEqual(rec.header("X-ID-Token"), "idt")
        code, _, _, _ = self.call(ds, "proxy/me", headers={"Authorization": "Bearer other-tok"},
                                  login="bob")
        self.assertEqual(code, 200)
        self.assertEqual(self.up.last().header("Authorization"), "Bearer other-tok")
        self.assertIsNone(self.up.last().header("X-ID-Token"))
        n = self.up.count()
        self.assert_error(self.call(ds, "proxy/me"), 400, "oauth")
        self.assertEqual(self.up.count(), n)
        # without Grafana's oauthPassThru the settings are refused, naming the key
        bad = self.ds({"authType": "forwardOAuth"})
        self.assert_error(self.call(bad, "proxy/me", headers={"Authorization": "Bearer x"}),
                          400, "oauthPassThru")
        self.assertEqual(self.up.count(), n)

    # -- auth module --

    def test_module_injects_and_denies(self):
        ds = self.ds({"authType": "module", "authModule": "example",
                      "authModuleConfig": {"header": "X-Example-Token", "token": "mod-tok",
                                           "denyPrefix": "/admin", "requireUser": True}})
        code, _, out, _ = self.call(ds, "proxy/items/1")
        self.assertEqual(code, 200, out)
        self.assertEqual(self.up.last().header("X-Example-Token"), "mod-tok")
        n = self.up.count()
        self.assert_error(self.call(ds, "proxy/admin"), 403)
        self.assert_error(self.call(ds, "proxy/admin/users", method="DELETE"), 403)
        self.assert_error(self.call(ds, "proxy/items/1", login=None), 403)
        self.assertEqual(self.up.count(), n, "a call the module denied reached the upstream")
        self.assertEqual(self.call(ds, "proxy/administrator")[0], 200)

    def test_module_outside_module_dir_refused(self):
        for name in ("../modules/example", "/tmp/example", "nosuch"):
            ds = self.ds({"authType": "module", "authModule": name})
            self.assert_error(self.call(ds, "proxy/x"), 400, "authModule")
        self.assertEqual(self.up.count(), 0)


# ---- 2b. TLS towards the upstream ----------------------------------------------------------

class TLSTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def tls_up(self, client_ca=None):
        up = TLSUpstream(self.certs.server_path, self.certs.server_key_path, client_ca)
        self.addCleanup(up.close)
        return up

    def test_server_verification(self):
        c = self.certs
        up = self.tls_up()
        self.assert_error(self.call(self.ds(url=up.url), "proxy/x"), 502)
        self.assertEqual(up.count(), 0)
        self.assertEqual(self.call(self.ds({"tlsSkipVerify": True}, url=up.url), "proxy/x")[0],
                         200)
        ds = self.ds({"tlsAuthWithCACert": True}, {"tlsCACert": c.ca_pem}, url=up.url)
        code, _, out, _ = self.call(ds, "proxy/x", url="proxy/x?y=1")
        self.assertEqual(code, 200, out)
        self.assertEqual(up.last().path, "/x?y=1")
        ds = self.ds({"tlsAuthWithCACert": True}, {"tlsCACert": c.otherca_pem}, url=up.url)
        self.assert_error(self.call(ds, "proxy/x"), 502)
        self.assertEqual(up.count(), 2)

    def test_client_certificate(self):
        c = self.certs
        up = self.tls_up(client_ca=c.ca_path)
        ds = self.ds({"tlsAuthWithCACert": True}, {"tlsCACert": c.ca_pem}, url=up.url)
        self.assert_error(self.call(ds, "proxy/x"), 502)
        self.assertEqual(up.count(), 0)
        ds = self.ds({"tlsAuthWithCACert": True, "tlsAuth": True},
                     {"tlsCACert": c.ca_pem, "tlsClientCert": c.client_pem,
                      "tlsClientKey": c.client_key_pem}, url=up.url)
        code, _, out, _ = self.call(ds, "proxy/x")
        self.assertEqual(code, 200, out)
        self.assertEqual(up.count(), 1)
        self.assertIn("cp-client", up.peer_cns)
        ds = self.ds({"tlsSkipVerify": True, "tlsAuth": True},
                     {"tlsClientCert": c.client_pem, "tlsClientKey": c.client_key_pem},
                     url=up.url)
        self.assertEqual(self.call(ds, "proxy/x")[0], 200)


# ---- 3. authorization -----------------------------------------------------------------------

class AuthorizationTest(Base):
    def expect(self, ds, path, status, method="GET", **user):
        before = self.up.count()
        res = self.call(ds, path, method=method, **user)
        if status == 403:
            self.assert_error(res, 403)
            self.assertEqual(self.up.count(), before, "a denied call reached the upstream")
        else:
            self.assertEqual(res[0], status, (path, user, res[2][:300]))
            self.assertEqual(self.up.count(), before + 1)

    def test_roles_hierarchy(self):
        ds = self.ds({"rules": [{"effect": "allow", "roles": ["Editor"]}],
                      "defaultAction": "deny"})
        self.expect(ds, "proxy/x", 403, role="Viewer")
        self.expect(ds, "proxy/x", 200, role="Editor")
        self.expect(ds, "proxy/x", 200, role="Admin")
        self.expect(ds, "proxy/x", 403, role="None")
        self.expect(ds, "proxy/x", 403, login=None)

    def test_users_by_login_or_email_and_first_match(self):
        ds = self.ds({"rules": [{"effect": "allow", "users": ["alice", "Carol@Corp.example"]},
                                {"effect": "deny", "roles": ["Viewer"]}]})
        self.expect(ds, "proxy/x", 200, login="alice", role="Viewer")
        self.expect(ds, "proxy/x", 403, login="bob", role="Viewer")
        self.expect(ds, "proxy/x", 403, login="bob", role="Admin")
        self.expect(ds, "proxy/x", 200, login="cc", email="carol@corp.example", role="Viewer")
        self.expect(ds, "proxy/x", 200, login=None)  # neither rule applies: defaultAction allow

    def test_orgs_methods_paths(self):
        ds = self.ds({"rules": [{"effect": "deny", "orgs": [2]},
                                {"effect": "deny", "methods": ["DELETE", "post"]},
                                {"effect": "deny", "paths": ["/admin/**", "/u/*/secret"]},
                                {"effect": "allow", "roles": ["Admin"], "paths": ["/adm-only"]},
                                {"effect": "deny", "paths": ["/adm-only"]}]})
        self.expect(ds, "proxy/x", 403, org=2)
        self.expect(ds, "proxy/x", 200, org=1)
        self.expect(ds, "proxy/x", 200, org=3)
        self.expect(ds, "proxy/x", 403, method="DELETE")
        self.expect(ds, "proxy/x", 403, method="POST")
        self.expect(ds, "proxy/x", 200, method="PUT")
        self.expect(ds, "proxy/admin", 403)
        self.expect(ds, "proxy/admin/a/b", 403, role="Admin")
        self.expect(ds, "proxy/adminx", 200)
        self.expect(ds, "proxy/u/a/secret", 403)
        self.expect(ds, "proxy/u/a/b/secret", 200)
        self.expect(ds, "proxy/adm-only", 403, role="Editor")
        self.expect(ds, "proxy/adm-only", 200, role="Admin")

    def test_default_deny_and_anonymous(self):
        ds = self.ds({"rules": [{"effect": "allow", "roles": ["Viewer"], "paths": ["/a/**"]},
                                {"effect": "allow", "methods": ["GET"], "paths": ["/public/**"]}],
                      "defaultAction": "deny"})
        self.expect(ds, "proxy/a/1", 200, role="Viewer")
        self.expect(ds, "proxy/b/1", 403, role="Admin")
        self.expect(ds, "proxy/a/1", 403, login=None)
        self.expect(ds, "proxy/public/1", 200, login=None)
        self.expect(ds, "proxy/public/1", 403, login=None, method="POST")

    def test_denied_before_cache(self):
        self.up.routes["/c"] = lambda r: (200, {"Cache-Control": "max-age=60"}, b"cached!")
        ds = self.ds({"rules": [{"effect": "allow", "roles": ["Admin"]}],
                      "defaultAction": "deny"}, cache=True)
        code, hdrs, out, _ = self.call(ds, "proxy/c", role="Admin")
        self.assertEqual((code, out, hval(hdrs, "X-Cache")), (200, b"cached!", "MISS"))
        code, hdrs, out, _ = self.call(ds, "proxy/c", role="Admin", login="other")
        self.assertEqual((code, out, hval(hdrs, "X-Cache")), (200, b"cached!", "HIT"))
        for user in ({"role": "Viewer"}, {"role": "Editor"}, {"login": None}):
            res = self.call(ds, "proxy/c", **user)
            self.assert_error(res, 403)
            self.assertNotIn(b"cached!", res[2])
        self.assertEqual(self.up.count(), 1)

    # -- external authorization service --

    def authz_service(self, delay=None):
        svc = Upstream()
        self.addCleanup(svc.close)
        decisions = {"alice": 200, "bob": 403, "carol": 500, "": 200}

        def route(rec):
            j = json.loads(rec.body)
            return decisions.get(j["user"]["login"], 403), {}, b"{}"
        svc.routes["/authz"] = {"delay": delay, "then": route} if delay else route
        return svc

    def test_authz_allow_deny_and_body(self):
        svc = self.authz_service()
        ds = self.ds({"authzUrl": svc.url + "/authz"}, url=self.up.url + "/base")
        self.expect(ds, "proxy/items/1", 200, login="alice", role="Editor", org=3)
        rec = svc.last()
        self.assertEqual(rec.method, "POST")
        self.assertTrue(rec.header("Content-Type").startswith("application/json"))
        self.assertEqual(json.loads(rec.body), {
            "user": {"login": "alice", "email": "alice@example.com", "role": "Editor"},
            "orgId": 3, "method": "GET", "path": "/items/1", "datasourceUid": ds.uid})
        self.expect(ds, "proxy/items/1", 403, login="bob")
        self.expect(ds, "proxy/items/1", 403, login="carol")   # 500: fail closed
        self.expect(ds, "proxy/items/1", 403, login="zed")
        # rules are checked first: a rule denial never asks the service
        n = svc.count()
        ds2 = self.ds({"authzUrl": svc.url + "/authz",
                       "rules": [{"effect": "deny", "paths": ["/no/**"]}]})
        self.expect(ds2, "proxy/no/1", 403, login="alice")
        self.assertEqual(svc.count(), n)

    def test_authz_decisions_cached(self):
        svc = self.authz_service()
        ds = self.ds({"authzUrl": svc.url + "/authz", "authzCacheTtl": "30s"})
        for _ in range(3):
            self.expect(ds, "proxy/items/1", 200, login="alice")
        self.assertEqual(svc.count(), 1)
        for _ in range(3):
            self.expect(ds, "proxy/items/1", 403, login="bob")
        self.assertEqual(svc.count(), 2)
        self.expect(ds, "proxy/items/2", 200, login="alice")
        self.expect(ds, "proxy/items/1", 200, login="alice", method="POST")
        self.assertEqual(svc.count(), 4)

    def test_authz_cache_expires(self):
        svc = self.authz_service()
        ds = self.ds({"authzUrl": svc.url + "/authz", "authzCacheTtl": "1s"})
        t0 = time.time()
        self.expect(ds, "proxy/x", 200, login="alice")
        self.expect(ds, "proxy/x", 200, login="alice")
        if time.time() - t0 < 0.8:
            self.assertEqual(svc.count(), 1)

        def asked_again():
            self.assertEqual(self.call(ds, "proxy/x", login="alice")[0], 200)
            return svc.count() >= 2
        self.assertTrue(wait_for(asked_again, timeout=4, interval=0.05))
        self.assertGreater(time.time() - t0, 0.8)

    def test_authz_down_or_slow_fails_closed(self):
        ds = self.ds({"authzUrl": "http://127.0.0.1:%d/authz" % closed_port()})
        self.expect(ds, "proxy/x", 403, login="alice", role="Admin")
        self.expect(ds, "proxy/x", 403, login="alice", role="Admin")
        svc = self.authz_service(delay=3)
        ds = self.ds({"authzUrl": svc.url + "/authz", "timeout": 1})
        t0 = time.time()
        self.expect(ds, "proxy/x", 403, login="alice")
        self.assertLess(time.time() - t0, 2.5)


# ---- 4. path safety -------------------------------------------------------------------------

HOSTILE = [
    # (path as Grafana decodes it, url as Grafana passes it)
    ("proxy/../secret", "proxy/../secret"),
    ("proxy/a/../../x", "proxy/a/../../x"),
    ("proxy/./x", "proxy/./x"),
    ("proxy/x/..", "proxy/x/.."),
    ("proxy/..", "proxy/.."),
    ("proxy/../x", "proxy/%2e%2e/x"),
    ("proxy/../x", "proxy/.%2E/x"),
    ("proxy/a/../../x", "proxy/a/%2e%2e/%2e%2e/x"),
    ("proxy/%2e%2e/x", "proxy/%252e%252e/x"),
    ("proxy/a%2f..%2fx", "proxy/a%252f..%252fx"),
    ("proxy/%c0%ae%c0%ae/x", "proxy/%25c0%25ae%25c0%25ae/x"),
    ("proxy//../secret", "proxy/%2F..%2Fsecret"),
    ("proxy/a/b", "proxy/a%2Fb"),
    ("proxy//evil.com/x", "proxy//evil.com/x"),
    ("proxy/a//b", "proxy/a//b"),
    ("proxy/http://evil/x", "proxy/http://evil/x"),
    ("proxy/https:/evil", "proxy/https:/evil"),
    ("proxy/C:/windows", "proxy/C:/windows"),
    ("proxy/a\\..\\..\\x", "proxy/a\\..\\..\\x"),
    ("proxy/a\\..\\..\\x", "proxy/a%5C..%5C..%5Cx"),
    ("proxy/..\\x", "proxy/..%5cx"),
    ("proxy/a\x00b", "proxy/a%00b"),
    ("proxy/a\r\nX-Injected: 1", "proxy/a%0D%0AX-Injected:%201"),
    ("proxy/a\r\nX-Injected: 1", "proxy/a\r\nX-Injected: 1"),
    ("proxy/a\tb", "proxy/a%09b"),
    ("proxy/a\x7fb", "proxy/a%7Fb"),
    ("proxy/a", "proxy/b"),
    ("proxy/a", "proxy/a/../a"),
    ("proxy/a/../b", "proxy/b"),
    ("proxy/a", "cache/purge"),
    ("proxy/a", "proxyx/a"),
    ("proxy/a?x=1", "proxy/a%3Fx=1"),
    ("proxy/a#frag", "proxy/a%23frag"),
    ("proxy/a", "proxy/a#frag"),
    ("proxy/a", "proxy/a?x=1 HTTP/1.1\r\nHost: evil"),
    ("proxy/a", "proxy/a%zz"),
    ("proxy/a", "proxy/a%"),
    ("/proxy/../x", "/proxy/../x"),
    ("proxy/" + "a" * 9000, "proxy/" + "a" * 9000),
]


class PathSafetyTest(Base):
    def test_escapes_refused_400(self):
        ds = self.ds(url=self.up.url + "/base")
        failures = []
        for path, url in HOSTILE:
            code, _, body, _ = self.call(ds, path, url=url)
            ok = code == 400
            if ok:
                j = error_json(body)
                ok = j["status"] == 400
            if not ok:
                failures.append((path[:40], url[:40], code, body[:120],
                                 [r.path for r in self.up.requests][-1:]))
        self.assertEqual(failures, [], "hostile paths not refused with 400")
        self.assertEqual([r.path for r in self.up.requests], [],
                         "a hostile path reached the upstream")
        self.assertGreaterEqual(len(HOSTILE), 15)
        # the same data source still forwards a normal call
        self.assertEqual(self.call(ds, "proxy/ok", url="proxy/ok?x=1")[0], 200)
        self.assertEqual(self.up.last().path, "/base/ok?x=1")

    def test_nul_bytes_refused(self):
        ds = self.ds(url=self.up.url + "/base")
        failures = []
        for path, url, method in (("proxy/a\x00/../../etc", "proxy/a\x00/../../etc", "GET"),
                                  ("proxy/a", "proxy/a?x=\x00/../../etc", "GET"),
                                  ("proxy/a", "proxy/a", "G\x00ET"),
                                  ("proxy/a", "proxy/a", "GET\x00")):
            code, _, body, _ = self.call(ds, path, url=url, method=method)
            if code != 400:
                failures.append((path, url, method, code, body[:80]))
        self.assertEqual(failures, [], "NUL bytes not refused with 400")
        self.assertEqual([r.path for r in self.up.requests], [],
                         "a request holding a NUL reached the upstream")

    def test_escapes_with_allowed_paths(self):
        ds = self.ds({"allowedPaths": ["/api/**"]})
        for path, url in (("proxy/api/../secret", "proxy/api/../secret"),
                          ("proxy/api/../secret", "proxy/api/%2e%2e/secret"),
                          ("proxy/api//evil", "proxy/api//evil")):
            self.assert_error(self.call(ds, path, url=url), 400)
        for path in ("proxy/secret", "proxy/apiary", "proxy/API/x"):
            self.assert_error(self.call(ds, path), 404)
        self.assertEqual(self.up.count(), 0)
        self.assertEqual(self.call(ds, "proxy/api/x")[0], 200)

    def test_invalid_methods_refused(self):
        ds = self.ds()
        for m in ("", "GE T", "GET\r\n", "GET\r\nX: y", "G(ET)", "GET/", "\u00c9T", "A" * 40,
                  " GET", "GET "):
            self.assert_error(self.call(ds, "proxy/x", method=m), 400)
        self.assertEqual(self.up.count(), 0)

    def test_unknown_resources(self):
        ds = self.ds()
        for path in ("", "nope", "proxyx/a", "cache", "cache/stats/x", "../proxy/x"):
            code, _, body, _ = self.call(ds, path)
            self.assertIn(code, (400, 404), (path, body))
            error_json(body)
        self.assertEqual(self.up.count(), 0)


# ---- 5. streaming and size limits -----------------------------------------------------------

class StreamingTest(Base):
    def test_large_body_streams_uncached(self):
        size = 20 * MiB
        self.up.routes["/big"] = {"stream": size}
        want = stream_bytes(size)
        for ds, xcache in ((self.ds(), "BYPASS"), (self.ds(cache=True), "MISS")):
            for _ in range(2):
                before = self.up.count("/big")
                code, hdrs, out, n = self.call(ds, "proxy/big", timeout=60)
                self.assertEqual(code, 200)
                self.assertGreater(n, 1, "a 20 MiB body came in one message")
                self.assertEqual(len(out), size)
                self.assertTrue(out == want, "the streamed body differs")
                self.assertEqual(hval(hdrs, "X-Cache"), xcache)
                self.assertEqual(self.up.count("/big"), before + 1,
                                 "a body above maxEntryBytes was served from the cache")

    def test_max_response_bytes(self):
        self.up.routes["/big"] = {"stream": 2 * MiB}
        ds = self.ds({"maxResponseBytes": MiB})
        self.assert_error(self.call(ds, "proxy/big"), 502, "maxResponseBytes")
        ds = self.ds({"maxResponseBytes": 2 * MiB})
        self.assertEqual(len(self.call(ds, "proxy/big")[2]), 2 * MiB)

    def test_max_response_bytes_without_content_length(self):
        body = b"z" * 100000
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + chunked(body, 8192))
        srv = RawServer(raw)
        self.addCleanup(srv.close)
        ds = self.ds({"maxResponseBytes": 50000}, url=srv.url)
        code, hdrs, out, _ = self.call(ds, "proxy/x")
        self.assertEqual(code, 502, out[:200])
        j = error_json(out)
        self.assertIn("maxResponseBytes", j["error"])
        self.assertEqual(self.call(self.ds(), "proxy/alive")[0], 200)

    def test_max_response_bytes_after_stream_started(self):
        # once body messages have gone out, the only honest outcome is a failed stream
        # (or a 502 before anything was sent), never a 200 whose body is silently cut.
        body = b"y" * (3 * MiB)
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + chunked(body, 65536))
        srv = RawServer(raw)
        self.addCleanup(srv.close)
        ds = self.ds({"maxResponseBytes": MiB}, url=srv.url)
        try:
            code, hdrs, out, _ = self.call(ds, "proxy/x")
        except grpc.RpcError as e:
            self.assertNotEqual(e.code(), grpc.StatusCode.OK)
        else:
            self.assertEqual(code, 502, "a cut body was answered as %s (%d bytes)"
                             % (code, len(out)))
        self.assertEqual(self.call(self.ds(), "proxy/alive")[0], 200)

    def test_max_request_bytes(self):
        ds = self.ds({"maxRequestBytes": 1024})
        self.assertEqual(self.call(ds, "proxy/in", method="POST", body=b"a" * 1024)[0], 200)
        self.assertEqual(self.up.last().body, b"a" * 1024)
        n = self.up.count()
        self.assert_error(self.call(ds, "proxy/in", method="POST", body=b"a" * 1025), 413,
                          "maxRequestBytes")
        self.assertEqual(self.up.count(), n)

    def test_large_request_body_forwarded(self):
        body = os.urandom(3 * MiB)
        code, _, out, _ = self.call(self.ds(), "proxy/in", method="PUT", body=body, timeout=30)
        self.assertEqual(code, 200, out[:200])
        self.assertTrue(self.up.last().body == body)


# ---- 6. upstream failures -------------------------------------------------------------------

class UpstreamFailureTest(Base):
    def still_serving(self, ds):
        code, _, out, _ = self.call(ds, "proxy/fine")
        self.assertEqual(code, 200, out)

    def test_down(self):
        ds = self.ds(url="http://127.0.0.1:%d" % closed_port())
        t0 = time.time()
        self.assert_error(self.call(ds, "proxy/x"), 502)
        self.assertLess(time.time() - t0, 5)
        self.still_serving(self.ds())

    def test_slow_times_out(self):
        self.up.routes["/slow"] = {"delay": 3}
        ds = self.ds({"timeout": 1})
        t0 = time.time()
        j = self.assert_error(self.call(ds, "proxy/slow"), 504)
        self.assertLess(time.time() - t0, 1.5)
        self.assertGreater(time.time() - t0, 0.8)
        self.assertIn("127.0.0.1", j["error"])
        self.still_serving(ds)

    def test_connection_reset(self):
        self.up.routes["/reset"] = {"reset": True}
        ds = self.ds()
        self.assert_error(self.call(ds, "proxy/reset"), 502)
        self.still_serving(ds)

    def test_garbage_and_silent_close(self):
        for raw in (b"this is not http\r\n\r\n", b""):
            srv = RawServer(raw)
            self.addCleanup(srv.close)
            self.assert_error(self.call(self.ds(url=srv.url), "proxy/x"), 502)
            self.assertEqual(srv.count(), 1)
        self.still_serving(self.ds())

    def failed_after_head(self, raw, want=502, **jd):
        """An upstream that fails after its status line and headers: the client must get a
        502/504 (or a failed stream), never a 200 with a cut body, and the plugin must live."""
        srv = RawServer(raw)
        self.addCleanup(srv.close)
        t0 = time.time()
        try:
            code, _, out, _ = self.call(self.ds(jd, url=srv.url), "proxy/x")
        except grpc.RpcError as e:
            self.assertNotEqual(e.code(), grpc.StatusCode.OK)
        else:
            self.assertEqual(code, want, "a cut body was answered as %s: %r" % (code, out[:80]))
            error_json(out)
        self.assertLess(time.time() - t0, 5)
        self.assertIsNone(self.p.proc.poll(), "the plugin crashed")
        self.still_serving(self.ds())

    def test_body_cut_short(self):
        self.failed_after_head(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10)

    def test_body_stalls_past_timeout(self):
        self.failed_after_head([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", 2.5],
                               want=504, timeout=1)

    def test_failures_counted_and_cache_keeps_working(self):
        self.up.routes["/reset"] = {"reset": True}
        ds = self.ds(cache=True)
        self.assert_error(self.call(ds, "proxy/reset"), 502)
        self.assertEqual(hval(self.call(ds, "proxy/fine")[1], "X-Cache"), "MISS")
        self.assertEqual(hval(self.call(ds, "proxy/fine")[1], "X-Cache"), "HIT")
        stats = json.loads(self.call(ds, "cache/stats")[2])
        self.assertGreaterEqual(stats["errors"], 1)


# ---- 7. secrets -----------------------------------------------------------------------------

class SecretsTest(Base):
    def test_secrets_never_in_logs_or_errors(self):
        p = Plugin(env={"CACHINGPROXY_MODULE_DIR": MODULE_DIR})
        stopped = []
        self.addCleanup(lambda: stopped or p.stop())
        down = "http://127.0.0.1:%d" % closed_port()
        self.up.routes["/oauth/token"] = lambda r: (401, {}, b'{"error":"invalid_client"}')
        self.up.routes["/good/token"] = lambda r: (200, {"Content-Type": "application/json"},
                                                   b'{"access_token":"SECRET-access-7a8b",'
                                                   b'"expires_in":3600}')
        self.up.routes["/unauth"] = lambda r: (401, {"WWW-Authenticate": "Basic"}, b"no")
        self.up.routes["/fail"] = lambda r: (500, {}, b"err")
        secrets = ["SECRET-bearer-9f8e7d", "SECRET-basicpw-1a2b", "SECRET-apikey-3c4d",
                   "SECRET-oauth-5e6f", "SECRET-access-7a8b", "SECRET-hmac-9c0d",
                   "SECRET-hdr-1e2f", "SECRET-usertok-4f5a", "SECRET-idtok-6b7c"]
        basic_b64 = base64.b64encode(b"bob:SECRET-basicpw-1a2b").decode()
        cases = [
            (self.ds({"authType": "bearer"}, {"bearerToken": secrets[0]}, url=down), "proxy/x", {}),
            (self.ds({}, {"basicAuthPassword": secrets[1]}, basic_auth=True, basic_user="bob"),
             "proxy/unauth", {}),
            (self.ds({}, {"basicAuthPassword": secrets[1]}, basic_auth=True, basic_user="bob",
                     url=down), "proxy/x", {}),
            (self.ds({"authType": "apiKey", "apiKeyQueryParam": "k"}, {"apiKey": secrets[2]},
                     url=down), "proxy/x", {}),
            (self.ds({"authType": "apiKey", "apiKeyQueryParam": "k", "timeout": 1},
                     {"apiKey": secrets[2]}), "proxy/fail", {}),
            (self.ds({"authType": "oauth2", "oauth2TokenUrl": self.up.url + "/oauth/token",
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": secrets[3]}),
             "proxy/x", {}),
            (self.ds({"authType": "oauth2", "oauth2TokenUrl": down + "/token",
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": secrets[3]}),
             "proxy/x", {}),
            (self.ds({"authType": "oauth2", "oauth2TokenUrl": self.up.url + "/good/token",
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": secrets[3]}),
             "proxy/fail", {}),
            (self.ds({"authType": "oauth2", "oauth2TokenUrl": self.up.url + "/good/token",
                      "oauth2ClientId": "cid"}, {"oauth2ClientSecret": secrets[3]}, url=down),
             "proxy/x", {}),
            (self.ds({"authType": "hmac"}, {"hmacSecret": secrets[5]}, url=down), "proxy/x", {}),
            (self.ds({"httpHeaderName1": "X-Key"}, {"httpHeaderValue1": secrets[6]}, url=down),
             "proxy/x", {}),
            (self.ds({"authType": "forwardOAuth", "oauthPassThru": True}, url=down), "proxy/x",
             {"Authorization": "Bearer " + secrets[7], "X-ID-Token": secrets[8]}),
            (self.ds({"authType": "bearer", "rules": [{"effect": "deny"}]},
                     {"bearerToken": secrets[0]}), "proxy/x", {"Cookie": "s=" + secrets[7]}),
            (self.ds({"authType": "bearer", "timeout": "soon"}, {"bearerToken": secrets[0]}),
             "proxy/x", {}),
        ]
        bodies = []
        for ds, path, headers in cases:
            code, hdrs, body, _ = self.call(ds, path, plugin=p, headers=headers)
            bodies.append((code, body, json.dumps(hdrs)))
        statuses = [c for c, _, _ in bodies]
        self.assertEqual(statuses, [502, 401, 502, 502, 500, 502, 502, 500, 502, 502, 502, 502,
                                    403, 400])
        self.assertEqual(self.up.count("/good/token"), 2)
        stopped.append(p.stop())
        logs = p.stderr_text()
        self.assertIn("upstream call failed", logs)
        needles = secrets + [basic_b64, urllib.parse.quote(secrets[2])]
        for s in needles:
            self.assertNotIn(s, logs, "a secret is in the logs")
            for code, body, hdrs in bodies:
                self.assertNotIn(s.encode(), body, "a secret is in an error body")
                self.assertNotIn(s, hdrs)


# ---- 8. cache resources ---------------------------------------------------------------------

STATS_KEYS = {"backend", "entries", "bytes", "hits", "misses", "stale", "revalidated", "bypass", "coalesced",
              "hitRatio", "upstreamRequests", "errors", "splitPieces"}


class CacheResourcesTest(Base):
    def xcache(self, ds, path, **kw):
        code, hdrs, out, _ = self.call(ds, path, **kw)
        self.assertEqual(code, 200, out)
        return hval(hdrs, "X-Cache")

    def stats(self, ds):
        code, hdrs, out, _ = self.call(ds, "cache/stats")
        self.assertEqual(code, 200, out)
        self.assertTrue(hval(hdrs, "Content-Type").startswith("application/json"))
        j = json.loads(out)
        self.assertEqual(set(j), STATS_KEYS)
        return j

    def test_stats_and_purge(self):
        ds = self.ds(cache=True)
        self.assertEqual(self.stats(ds)["entries"], 0)
        self.assertEqual(self.xcache(ds, "proxy/a/1"), "MISS")
        code, hdrs, _, _ = self.call(ds, "proxy/a/1")
        self.assertEqual(hval(hdrs, "X-Cache"), "HIT")
        self.assertRegex(hval(hdrs, "Age"), r"^\d+$")
        self.assertEqual(self.xcache(ds, "proxy/b"), "MISS")
        self.assertEqual(self.xcache(ds, "proxy/b", method="POST"), "BYPASS")
        self.assertEqual(self.up.count(), 3)
        s = self.stats(ds)
        self.assertEqual(s["backend"], "memory")
        self.assertEqual((s["entries"], s["hits"], s["misses"], s["bypass"], s["stale"]),
                         (2, 1, 2, 1, 0))
        self.assertEqual(s["upstreamRequests"], 3)
        self.assertGreater(s["bytes"], 0)
        self.assertAlmostEqual(s["hitRatio"], 1 / 3, places=3)
        for user in ({"role": "Viewer"}, {"role": "Editor"}, {"login": None}):
            self.assert_error(self.call(ds, "cache/purge", method="POST", body=b"{}", **user), 403)
        code, _, _, _ = self.call(ds, "cache/purge", method="GET", role="Admin")
        self.assertNotEqual(code, 200)
        self.assertEqual(self.stats(ds)["entries"], 2)
        self.assert_error(self.call(ds, "cache/purge", method="POST", body=b"[1]",
                                    role="Admin"), 400)
        code, _, out, _ = self.call(ds, "cache/purge", method="POST", body=b'{"prefix":"/a"}',
                                    role="Admin")
        self.assertEqual((code, json.loads(out)), (200, {"purged": 1}))
        self.assertEqual(self.xcache(ds, "proxy/b"), "HIT")
        self.assertEqual(self.xcache(ds, "proxy/a/1"), "MISS")
        code, _, out, _ = self.call(ds, "cache/purge", method="POST", body=b"{}", role="Admin")
        self.assertEqual((code, json.loads(out)), (200, {"purged": 2}))
        self.assertEqual(self.stats(ds)["entries"], 0)
        self.assertEqual(self.xcache(ds, "proxy/b"), "MISS")
        # another data source's entries are its own
        other = self.ds(cache=True)
        self.assertEqual(self.xcache(other, "proxy/b"), "MISS")
        code, _, out, _ = self.call(ds, "cache/purge", method="POST", role="Admin")
        self.assertEqual(json.loads(out), {"purged": 1})
        self.assertEqual(self.xcache(other, "proxy/b"), "HIT")

    def test_stats_cache_off(self):
        ds = self.ds()
        self.assertEqual(self.xcache(ds, "proxy/a"), "BYPASS")
        s = self.stats(ds)
        self.assertEqual(s["backend"], "off")
        self.assertEqual((s["entries"], s["bypass"], s["upstreamRequests"]), (0, 1, 1))
        code, _, _, _ = self.call(ds, "cache/stats", method="POST")
        self.assertNotEqual(code, 200)


class ReviewRegressionTest(Base):
    """Cases a review of the code against SPEC found; each failed before its fix."""

    def test_org_rules_apply_to_calls_without_a_user(self):
        ds = self.ds({"rules": [{"effect": "deny", "orgs": [2]}]})
        self.assert_error(self.call(ds, "proxy/x", login=None, org=2), 403)
        self.assertEqual(self.call(ds, "proxy/x", login=None, org=1)[0], 200)
        self.assertEqual(self.up.count(), 1)

    def test_dot_dot_with_parameters_is_a_dot_segment(self):
        ds = self.ds({"allowedPaths": ["/api/public/**"]})
        for path in ("proxy/api/public/..;/admin", "proxy/api/public/.;x/a"):
            self.assert_error(self.call(ds, path), 400)
        self.assertEqual(self.up.count(), 0)

    def test_resources_inside_the_upstream_path(self):
        ds = self.ds()
        code, _, out, _ = self.call(ds, "proxy/k8s/resources/pods",
                                    url="proxy/k8s/resources/pods?x=1")
        self.assertEqual(code, 200, out)
        self.assertEqual(self.up.last().path, "/k8s/resources/pods?x=1")

    def test_head_of_a_large_body(self):
        self.up.routes["/huge"] = lambda r: (200, {"Content-Length-Hint": "x"}, b"y" * 4096)
        ds = self.ds({"maxResponseBytes": 1024})
        code, _, out, _ = self.call(ds, "proxy/huge", method="HEAD")
        self.assertEqual(code, 200, out)
        self.assertEqual(out, b"")

    def test_lower_case_method_goes_upstream_upper_case(self):
        ds = self.ds()
        self.assertEqual(self.call(ds, "proxy/m", method="get")[0], 200)
        self.assertEqual(self.up.last().method, "GET")
        self.assertEqual(self.up.last().body, b"")

    def test_header_values_that_are_not_utf8(self):
        raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Disposition: attachment; "
               b"filename=caf\xe9.txt\r\nConnection: close\r\n\r\nok")
        srv = RawServer(raw)
        self.addCleanup(srv.close)
        code, hdrs, out, _ = self.call(self.ds(url=srv.url), "proxy/f")
        self.assertEqual((code, out), (200, b"ok"))
        self.assertEqual(hval(hdrs, "Content-Disposition"), "attachment; filename=caf?.txt")


if __name__ == "__main__":
    unittest.main()
