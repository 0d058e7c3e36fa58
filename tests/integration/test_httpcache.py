"""HTTP caching as the best reverse proxies do it, through the real executable with real
upstreams, with the memory and the Redis backend: conditional revalidation (a 304 renews an
entry without its body), Cache-Status (RFC 9211) on every resource answer, Vary variants,
hit-for-miss notes (unshareable answers go upstream side by side), X-Cache-Skip."""
import itertools
import json
import threading
import time
import unittest

from backends import BackendCase
from harness import call_resource, context, hval, pb, settings, wait_for
from test_cache import metrics

_uids = itertools.count(1)


class Recorder:
    """An upstream route answering with an ETag and Last-Modified, honouring If-None-Match and
    If-Modified-Since with 304, counting body bytes it sent and the conditions it saw."""

    def __init__(self, up, path, body=b'{"v":1}', etag='"v1"', max_age=None,
                 last_modified="Sun, 06 Dec 2026 00:00:00 GMT", extra=None):
        self.body, self.etag, self.last_modified = body, etag, last_modified
        self.max_age, self.extra = max_age, extra or {}
        self.body_bytes = 0
        self.conditions = []
        self.answers = []
        self.lock = threading.Lock()
        up.routes[path] = self

    def __call__(self, r):
        inm, ims = r.header("If-None-Match"), r.header("If-Modified-Since")
        h = dict(self.extra)
        if self.etag:
            h["ETag"] = self.etag
        if self.last_modified:
            h["Last-Modified"] = self.last_modified
        if self.max_age is not None:
            h["Cache-Control"] = "max-age=%d" % self.max_age
        with self.lock:
            self.conditions.append((inm, ims))
            fresh = (inm is not None and self.etag and inm == self.etag) or \
                (inm is None and ims is not None and ims == self.last_modified)
            self.answers.append(304 if fresh else 200)
            if fresh:
                return 304, h, b""
            self.body_bytes += len(self.body)
        h["Content-Type"] = "application/json"
        return 200, h, self.body


class Base(BackendCase):
    uid_prefix = "hc"

    def call(self, ds, path, **kw):
        kw.setdefault("timeout", 20)
        code, h, body, _ = call_resource(self.p, ds, path, **kw)
        return code, h, body

    def expire(self, seconds):
        """Lets a lifetime of `seconds` pass (a wait for time itself, not for a result)."""
        t = time.time() + seconds + 0.05
        wait_for(lambda: time.time() >= t, timeout=seconds + 2, interval=0.02)

    def stats(self, ds):
        return json.loads(self.call(ds, "cache/stats")[2])


class RevalidationTests:
    def test_304_renews_without_the_body(self):
        rec = Recorder(self.up, "/doc", body=b'{"big":"' + b"x" * 5000 + b'"}')
        ds = self.ds({"resourceTtl": "1s"})
        code, h, body = self.call(ds, "proxy/doc")
        self.assertEqual((code, hval(h, "X-Cache")), (200, "MISS"))
        sent = rec.body_bytes
        self.expire(1)
        before = metrics(self.p)['cachingproxy_cache_requests_total{kind="resource",result="revalidated"}']
        code, h, body2 = self.call(ds, "proxy/doc")
        self.assertEqual((code, hval(h, "X-Cache")), (200, "REVALIDATED"))
        self.assertEqual(body2, body)
        self.assertEqual(rec.conditions[-1][0], '"v1"', "the refresh was not conditional")
        self.assertEqual(rec.answers[-1], 304)
        self.assertEqual(rec.body_bytes, sent, "the body was transferred again")
        self.assertRegex(hval(h, "Cache-Status"), r"^cachingproxy; fwd=stale; fwd-status=304; stored; ttl=")
        self.assertEqual(hval(h, "ETag"), '"v1"')
        # renewed: a hit now, and counted
        code, h, _ = self.call(ds, "proxy/doc")
        self.assertEqual(hval(h, "X-Cache"), "HIT")
        self.assertEqual(len(rec.answers), 2)
        self.assertEqual(self.stats(ds)["revalidated"], 1)
        after = metrics(self.p)['cachingproxy_cache_requests_total{kind="resource",result="revalidated"}']
        self.assertEqual(after - before, 1)

    def test_last_modified_alone(self):
        rec = Recorder(self.up, "/lm", etag=None)
        ds = self.ds({"resourceTtl": "1s"})
        self.assertEqual(hval(self.call(ds, "proxy/lm")[1], "X-Cache"), "MISS")
        self.expire(1)
        code, h, body = self.call(ds, "proxy/lm")
        self.assertEqual((hval(h, "X-Cache"), body), ("REVALIDATED", b'{"v":1}'))
        self.assertEqual(rec.conditions[-1], (None, rec.last_modified))

    def test_304_lifetime_from_its_cache_control(self):
        rec = Recorder(self.up, "/cc", max_age=1)
        ds = self.ds({"resourceTtl": "1h"})
        self.call(ds, "proxy/cc")
        self.expire(1)
        rec.max_age = 60  # the 304 says a minute
        self.assertEqual(hval(self.call(ds, "proxy/cc")[1], "X-Cache"), "REVALIDATED")
        h = self.call(ds, "proxy/cc")[1]
        self.assertEqual(hval(h, "X-Cache"), "HIT")
        ttl = int(hval(h, "Cache-Status").split("ttl=")[1])
        self.assertTrue(55 <= ttl <= 60, ttl)

    def test_changed_etag_is_a_full_refresh(self):
        rec = Recorder(self.up, "/chg")
        ds = self.ds({"resourceTtl": "1s"})
        self.call(ds, "proxy/chg")
        self.expire(1)
        rec.etag, rec.body = '"v2"', b'{"v":2}'
        code, h, body = self.call(ds, "proxy/chg")
        self.assertEqual((hval(h, "X-Cache"), body), ("MISS", b'{"v":2}'))
        self.assertEqual(rec.conditions[-1][0], '"v1"')
        self.assertRegex(hval(h, "Cache-Status"), r"fwd=stale; fwd-status=200; stored")
        self.assertEqual(self.call(ds, "proxy/chg")[2], b'{"v":2}')

    def test_client_conditions_are_answered_from_the_entry(self):
        Recorder(self.up, "/cond")
        ds = self.ds({"resourceTtl": "1s"})
        self.call(ds, "proxy/cond")
        self.expire(1)
        code, h, body = self.call(ds, "proxy/cond", headers={"If-None-Match": '"v1"'})
        self.assertEqual((code, hval(h, "X-Cache"), body), (304, "REVALIDATED", b""))

    def test_no_cache_refresh_is_conditional(self):
        rec = Recorder(self.up, "/nc")
        ds = self.ds({"resourceTtl": "1h"})
        self.call(ds, "proxy/nc")
        h = self.call(ds, "proxy/nc", role="Editor", headers={"Cache-Control": "no-cache"})[1]
        self.assertEqual(hval(h, "X-Cache"), "REVALIDATED")
        self.assertEqual(rec.answers, [200, 304])

    def test_background_refresh_is_conditional(self):
        rec = Recorder(self.up, "/swr")
        ds = self.ds({"resourceTtl": "1s", "staleWhileRevalidate": "1h"})
        self.call(ds, "proxy/swr")
        self.expire(1)
        h = self.call(ds, "proxy/swr")[1]
        self.assertEqual(hval(h, "X-Cache"), "STALE")
        self.assertRegex(hval(h, "Cache-Status"), r"hit; ttl=-\d+; detail=stale-while-revalidate")
        self.assertTrue(wait_for(lambda: len(rec.answers) == 2, timeout=10))
        self.assertEqual(rec.answers[-1], 304)
        self.assertTrue(wait_for(lambda: hval(self.call(ds, "proxy/swr")[1], "X-Cache") == "HIT",
                                 timeout=10))
        self.assertEqual(rec.body_bytes, len(rec.body))

    def test_waiters_share_one_conditional_request(self):
        gate = threading.Event()
        rec = Recorder(self.up, "/co")
        ds = self.ds({"resourceTtl": "1s"})
        self.call(ds, "proxy/co")
        self.expire(1)

        def held(r):
            gate.wait(10)
            return rec(r)
        self.up.routes["/co"] = held
        out = []
        ts = [threading.Thread(target=lambda: out.append(self.call(ds, "proxy/co")))
              for _ in range(6)]
        for t in ts:
            t.start()
        self.assertTrue(wait_for(lambda: metrics(self.p)["cachingproxy_coalesced_waiting"] >= 5,
                                 timeout=10))
        gate.set()
        for t in ts:
            t.join(20)
        self.assertEqual(len(rec.answers), 2)
        xs = sorted(hval(h, "X-Cache") for _, h, _ in out)
        self.assertEqual(xs, ["HIT"] * 5 + ["REVALIDATED"])
        self.assertTrue(all(b == b'{"v":1}' for _, _, b in out))
        collapsed = [hval(h, "Cache-Status") for _, h, _ in out if hval(h, "X-Cache") == "HIT"]
        self.assertTrue(all("collapsed" in c for c in collapsed), collapsed)

    def test_query_frame_reused_on_304(self):
        rec = Recorder(self.up, "/q", body=json.dumps([{"v": 1}, {"v": 2}]).encode())
        ds = self.ds({"queryTtl": "1s"})
        q = pb.DataQuery(refId="A", json=json.dumps({"path": "/q"}).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=1000, toEpochMS=2000))

        def run():
            req = pb.QueryDataRequest(pluginContext=context(ds), queries=[q])
            return self.p.data.QueryData(req, timeout=20).responses["A"]
        a = run()
        self.assertEqual(a.status, 200, a.error)
        self.expire(1)
        b = run()
        self.assertEqual(b.status, 200, b.error)
        self.assertEqual(rec.answers, [200, 304])
        self.assertEqual(len(b.frames), 1)
        self.assertEqual(self.stats(ds)["revalidated"], 1)
        self.assertGreater(len(b.frames[0]), 100)


class StatusTests:
    def test_cache_status_for_each_path(self):
        self.up.routes["/plain"] = lambda r: (200, {"Content-Type": "text/plain"}, b"p")
        self.up.routes["/nostore"] = lambda r: (200, {"Cache-Control": "no-store"}, b"n")
        self.up.routes["/private"] = lambda r: (200, {"Cache-Control": "private"}, b"p")
        self.up.routes["/cookie"] = lambda r: (200, {"Set-Cookie": "a=b"}, b"c")
        self.up.routes["/err"] = lambda r: (500, {}, b"e")
        self.up.routes["/huge"] = lambda r: (200, {}, b"h" * 5000)
        ds = self.ds({"maxEntryBytes": 1024})
        st = lambda path, **kw: hval(self.call(ds, path, **kw)[1], "Cache-Status")
        self.assertEqual(st("proxy/plain"), "cachingproxy; fwd=uri-miss; fwd-status=200; stored")
        self.assertRegex(st("proxy/plain"), r"^cachingproxy; hit; ttl=(29|30)$")
        self.assertEqual(st("proxy/plain", method="POST"), "cachingproxy; fwd=method")
        self.assertEqual(st("proxy/plain", role="Editor", headers={"X-Cache-Skip": "true"}),
                         "cachingproxy; fwd=bypass; detail=skip")
        for path, detail in (("nostore", "no-store"), ("private", "private"),
                             ("cookie", "set-cookie"), ("huge", "too-large")):
            self.assertEqual(st("proxy/" + path),
                             "cachingproxy; fwd=uri-miss; fwd-status=200; detail=" + detail, path)
        self.assertEqual(st("proxy/err"), "cachingproxy; fwd=uri-miss; fwd-status=500; detail=status")
        off = settings(self.up.url, {"cache": {"backend": "off"}}, uid="hcoff%d" % next(_uids))
        self.assertEqual(hval(call_resource(self.p, off, "proxy/plain")[1], "Cache-Status"),
                         "cachingproxy; fwd=bypass")

    def test_not_found_ttl_bounds_the_upstreams_max_age(self):
        self.up.routes["/gone"] = lambda r: (404, {"Cache-Control": "max-age=86400"}, b"no")
        ds = self.ds({"notFoundTtl": "10s"})
        self.call(ds, "proxy/gone")
        h = self.call(ds, "proxy/gone")[1]
        self.assertEqual(hval(h, "X-Cache"), "HIT")
        ttl = int(hval(h, "Cache-Status").split("ttl=")[1].split(";")[0])
        self.assertLessEqual(ttl, 10)

    def test_stale_while_revalidate_needs_a_refresh_it_can_start(self):
        # forwardOAuth: the user's token is not kept for a background refresh, so an expired
        # answer is fetched again rather than served stale with nothing renewing it
        self.up.routes["/me"] = lambda r: (200, {}, b"v%d" % self.up.count("/me"))
        ds = self.ds({"resourceTtl": "1s", "staleWhileRevalidate": "1m"},
                     authType="forwardOAuth", oauthPassThru=True)
        tok = {"Authorization": "Bearer user-tok"}
        self.assertEqual(self.call(ds, "proxy/me", headers=tok)[2], b"v1")
        self.expire(1)
        x = self.call(ds, "proxy/me", headers=tok)
        self.assertEqual((hval(x[1], "X-Cache"), x[2]), ("MISS", b"v2"))

    def test_x_cache_skip_only_for_editors(self):
        self.up.routes["/s"] = lambda r: (200, {}, b"%d" % self.up.count())
        ds = self.ds()
        self.assertEqual(hval(self.call(ds, "proxy/s")[1], "X-Cache"), "MISS")
        skip = {"X-Cache-Skip": "true"}
        self.assertEqual(hval(self.call(ds, "proxy/s", headers=skip)[1], "X-Cache"), "HIT")
        h = self.call(ds, "proxy/s", role="Editor", headers=skip)[1]
        self.assertEqual(hval(h, "X-Cache"), "BYPASS")
        self.assertEqual(self.up.count("/s"), 2)


class VaryTests:
    def test_variants_per_header_value(self):
        def neg(r):
            acc = r.header("Accept") or "none"
            return 200, {"Vary": "Accept", "Content-Type": "text/plain"}, acc.encode()
        self.up.routes["/neg"] = neg
        ds = self.ds()
        a = self.call(ds, "proxy/neg", login="u1", headers={"Accept": "application/json"})
        b = self.call(ds, "proxy/neg", login="u2", headers={"Accept": "text/csv"})
        self.assertEqual((a[2], b[2]), (b"application/json", b"text/csv"))
        self.assertEqual([hval(x[1], "X-Cache") for x in (a, b)], ["MISS", "MISS"])
        c = self.call(ds, "proxy/neg", login="u3", headers={"Accept": "application/json"})
        d = self.call(ds, "proxy/neg", login="u4", headers={"Accept": "text/csv"})
        e = self.call(ds, "proxy/neg", login="u5")
        self.assertEqual((c[2], hval(c[1], "X-Cache")), (b"application/json", "HIT"))
        self.assertEqual((d[2], hval(d[1], "X-Cache")), (b"text/csv", "HIT"))
        self.assertEqual(e[2], b"none")  # no Accept goes upstream for a client that names none
        self.assertEqual(self.up.count("/neg"), 3)

    def test_accept_language_when_forwarded(self):
        def lang(r):
            return 200, {"Vary": "Accept-Language, Accept"}, (r.header("Accept-Language") or "-").encode()
        self.up.routes["/lang"] = lang
        ds = self.ds(forwardHeaders=["Accept", "Accept-Language"])
        self.assertEqual(self.call(ds, "proxy/lang", headers={"Accept-Language": "fr"})[2], b"fr")
        self.assertEqual(self.call(ds, "proxy/lang", headers={"Accept-Language": "de"})[2], b"de")
        h, body = self.call(ds, "proxy/lang", headers={"Accept-Language": "fr"})[1:]
        self.assertEqual((body, hval(h, "X-Cache")), (b"fr", "HIT"))
        self.assertEqual(self.up.count("/lang"), 2)
        # a Vary on a header clients cannot forward makes no variants (the upstream never sees
        # the client's value)
        self.up.routes["/ua"] = lambda r: (200, {"Vary": "User-Agent"}, b"same")
        self.call(ds, "proxy/ua", headers={"User-Agent": "a"})
        self.assertEqual(hval(self.call(ds, "proxy/ua", headers={"User-Agent": "b"})[1],
                              "X-Cache"), "HIT")

    def test_vary_beyond_what_a_key_holds_is_not_stored(self):
        names = ["X-Organisation-Tenant-Identifier-%02d" % i for i in range(10)]
        self.up.routes["/wide"] = lambda r: (200, {"Vary": ", ".join(names)}, (
            r.header(names[0]) or "-").encode())
        ds = self.ds(forwardHeaders=names)
        a = self.call(ds, "proxy/wide", login="u1", headers={names[0]: "tenant-a"})
        b = self.call(ds, "proxy/wide", login="u2", headers={names[0]: "tenant-b"})
        self.assertEqual((a[2], b[2]), (b"tenant-a", b"tenant-b"))
        self.assertEqual([hval(x[1], "X-Cache") for x in (a, b)], ["MISS", "MISS"])
        self.assertIn("detail=vary", hval(a[1], "Cache-Status"))

    def test_every_value_of_a_varying_header_is_in_the_key(self):
        self.up.routes["/tenant"] = lambda r: (200, {"Vary": "X-Tenant"}, ",".join(
            v for k, v in r.headers if k.lower() == "x-tenant").encode())
        ds = self.ds(forwardHeaders=["X-Tenant"])
        evil = self.call(ds, "proxy/tenant", login="mallory", headers={"X-Tenant": ["a", "evil"]})
        self.assertEqual(evil[2], b"a,evil")
        victim = self.call(ds, "proxy/tenant", login="victim", headers={"X-Tenant": "a"})
        self.assertEqual((victim[2], hval(victim[1], "X-Cache")), (b"a", "MISS"))
        again = self.call(ds, "proxy/tenant", login="other", headers={"X-Tenant": ["a", "evil"]})
        self.assertEqual((again[2], hval(again[1], "X-Cache")), (b"a,evil", "HIT"))

    def test_vary_star_is_never_stored(self):
        self.up.routes["/star"] = lambda r: (200, {"Vary": "*"}, b"x")
        ds = self.ds()
        for _ in range(2):
            self.assertEqual(hval(self.call(ds, "proxy/star")[1], "X-Cache"), "MISS")
        self.assertEqual(self.up.count("/star"), 2)


class HitForMissTests:
    def test_unshareable_answers_go_upstream_side_by_side(self):
        lock = threading.Lock()
        state = {"now": 0, "peak": 0, "n": 0}

        def mine(r):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
                state["n"] += 1
                n = state["n"]
            time.sleep(0.3)
            with lock:
                state["now"] -= 1
            return 200, {"Cache-Control": "private"}, b"for %s #%d" % (r.header("X-User") or b"", n)
        self.up.routes["/mine"] = mine
        ds = self.ds()
        first = self.call(ds, "proxy/mine", login="alice")
        self.assertEqual(hval(first[1], "X-Cache"), "MISS")
        out = [None] * 6
        gate = threading.Barrier(6)

        def one(i):
            gate.wait()
            out[i] = self.call(ds, "proxy/mine", login="u%d" % i)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        bodies = {o[2] for o in out}
        self.assertEqual(len(bodies), 6, "an answer meant for one caller reached another")
        self.assertGreater(state["peak"], 1, "the calls queued behind one another")
        self.assertEqual(self.up.count("/mine"), 7)


class MemoryRevalidation(Base, RevalidationTests):
    backend = "memory"


class RedisRevalidation(Base, RevalidationTests):
    backend = "redis"


class MemoryStatus(Base, StatusTests):
    backend = "memory"


class MemoryVary(Base, VaryTests):
    backend = "memory"


class RedisVary(Base, VaryTests):
    backend = "redis"


class MemoryHitForMiss(Base, HitForMissTests):
    backend = "memory"


class RedisHitForMiss(Base, HitForMissTests):
    backend = "redis"


if __name__ == "__main__":
    unittest.main()
