"""The shared cache (SPEC.md sections 4 and 6) through the real executable: the memory backend's
semantics (eligibility, scopes, Cache-Control, stale windows, refresh, stats, purge, metrics),
in-process coalescing, and the Redis backend against a real redis-server on a free loopback
port: sharing across processes and restarts, cross-process coalescing, purge, corrupted
values, outages (kill, hang, restart, nothing listening) and AUTH.

Waits are bounded polls (harness.wait_for) or gates the test opens itself; nothing sleeps to
hide a race."""
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (Plugin, Upstream, call_resource, context, free_port, hval, pb, settings,
                     wait_for)

REDIS_SERVER = "/usr/bin/redis-server"
CALL_TIMEOUT = 15
OK = pb.CheckHealthResponse.OK
ERROR = pb.CheckHealthResponse.ERROR

_uids = itertools.count(1)


def new_uid(tag="c"):
    return "%s%d" % (tag, next(_uids))




# ---- a real redis-server and a minimal RESP client --------------------------------------------

class RedisError(Exception):
    pass


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ValueError("bad RESP line %r" % line)


class RedisServer:
    """redis-server on 127.0.0.1 without persistence; start() waits until PING answers."""

    def __init__(self, password=None, port=None):
        self.password = password
        self.proc = None
        for _ in range(5):
            self.port = port or free_port()
            if self.start(fatal=port is not None):
                return
        raise RuntimeError("redis-server would not start")

    def start(self, fatal=True):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if wait_for(lambda: self.proc.poll() is not None or self.ping(), timeout=10) and \
                self.proc.poll() is None:
            return True
        self.kill()
        if fatal:
            raise RuntimeError("redis-server on port %d did not answer PING" % self.port)
        return False

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def command(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            f = s.makefile("rb")
            cmds = ([("AUTH", self.password)] if self.password else []) + [args]
            s.sendall(b"".join(_resp_encode(c) for c in cmds))
            replies = [_resp_read(f) for _ in cmds]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies[-1]

    def scan(self, pattern):
        keys, cursor = [], b"0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys += batch
            if cursor in (b"0", "0"):
                return keys

    def commands_processed(self):
        info = self.command("INFO", "stats")
        info = info.decode() if isinstance(info, bytes) else info
        for line in info.splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":")[1])
        raise AssertionError("no total_commands_processed in INFO")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


def need_redis(cls):
    return unittest.skipUnless(os.path.exists(REDIS_SERVER), REDIS_SERVER + " is not installed")(cls)


# ---- plugin helpers ---------------------------------------------------------------------------

def metrics(p):
    text = p.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10).metrics.prometheus
    out = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def cache_requests(p, kind="resource"):
    m = metrics(p)
    return {r: m['cachingproxy_cache_requests_total{kind="%s",result="%s"}' % (kind, r)]
            for r in ("hit", "miss", "stale", "bypass")}


def health(p, ds):
    r = p.diag.CheckHealth(pb.CheckHealthRequest(pluginContext=context(ds)), timeout=15)
    return r.status, r.message


def coalesced_waiting(p):
    """Calls of p waiting now for an identical call's outcome."""
    return metrics(p).get("cachingproxy_coalesced_waiting", 0)


def redis_warnings(p):
    """Warn/error log lines whose message is about Redis."""
    return [l for l in p.logs() if l.get("@level") in ("warn", "error")
            and "redis" in str(l.get("@message", "")).lower()]


class Base(unittest.TestCase):
    plugin = None

    def setUp(self):
        self.up = Upstream()
        self.addCleanup(self.up.close)
        self.watched = []

    def watch(self, *plugins):
        """Checks, after the test, that these plugins wrote only JSON log lines meanwhile
        (SPEC.md section 8; a sanitizer report would not be one)."""
        for p in plugins:
            self.watched.append((p, len(p.stderr_lines)))

    def tearDown(self):
        for p, start in self.watched:
            raw = [l for l in p.logs()[start:] if "@raw" in l]
            self.assertEqual(raw, [], "non-JSON lines on the plugin's stderr")

    def ds(self, cache=None, url=None, uid=None, **jd):
        j = {"cache": cache or {}}
        j.update(jd)
        secure = {}
        if "redisPassword" in j["cache"]:
            j["cache"] = dict(j["cache"])
            secure["redisPassword"] = j["cache"].pop("redisPassword")
        return settings(url or self.up.url, j, secure, uid=uid or new_uid())

    def call(self, ds, path, plugin=None, **kw):
        kw.setdefault("timeout", CALL_TIMEOUT)
        return call_resource(plugin or self.plugin, ds, path, **kw)

    def get(self, ds, path, plugin=None, status=200, **kw):
        """(X-Cache, body, headers) of a call that must answer status."""
        code, hdrs, out, _ = self.call(ds, path, plugin, **kw)
        self.assertEqual(code, status, out[:300])
        return hval(hdrs, "X-Cache"), out, hdrs

    def xc(self, ds, path, plugin=None, **kw):
        return self.get(ds, path, plugin, **kw)[0]

    def stats(self, ds, plugin=None):
        code, _, out, _ = self.call(ds, "cache/stats", plugin)
        self.assertEqual(code, 200, out)
        return json.loads(out)

    def purge(self, ds, prefix=None, plugin=None):
        body = json.dumps({"prefix": prefix} if prefix else {}).encode()
        code, _, out, _ = self.call(ds, "cache/purge", plugin, method="POST", body=body,
                                    role="Admin")
        self.assertEqual(code, 200, out)
        return json.loads(out)

    def concurrent(self, jobs):
        """Runs the callables together (released by one barrier); returns their results."""
        barrier = threading.Barrier(len(jobs))
        results = [None] * len(jobs)

        def run(i):
            barrier.wait(timeout=10)
            try:
                results[i] = jobs[i]()
            except Exception as e:  # noqa: BLE001 - reported by the caller's assertions
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        return threads, results


# ---- a. memory backend --------------------------------------------------------------------------

MEMORY_PLUGIN = None


def setUpModule():
    global MEMORY_PLUGIN
    MEMORY_PLUGIN = Plugin()


def tearDownModule():
    if MEMORY_PLUGIN is not None:
        MEMORY_PLUGIN.stop()


class MemoryBase(Base):
    def setUp(self):
        super().setUp()
        self.plugin = MEMORY_PLUGIN
        self.watch(self.plugin)
        self.assertIsNone(self.plugin.proc.poll(), "the plugin died in an earlier test")

    def tearDown(self):
        self.assertIsNone(self.plugin.proc.poll(), "the plugin died during this test")
        super().tearDown()


class MemoryCacheTest(MemoryBase):
    def test_miss_then_hit_for_another_user_with_age(self):
        ds = self.ds()
        x, body1, h = self.get(ds, "proxy/items/1", login="alice")
        self.assertEqual(x, "MISS")
        x, body2, h = self.get(ds, "proxy/items/1", login="bob", role="Editor")
        self.assertEqual(x, "HIT")
        self.assertEqual(body2, body1)
        self.assertRegex(hval(h, "Age") or "", r"^\d+$")
        self.assertLessEqual(int(hval(h, "Age")), 1)
        self.assertEqual(hval(h, "Content-Type"), "application/json")
        self.assertEqual(self.up.count(), 1)
        # Age counts whole seconds since the upstream answered
        aged = wait_for(lambda: int(hval(self.get(ds, "proxy/items/1")[2], "Age")) >= 1,
                        timeout=4, interval=0.2)
        self.assertTrue(aged, "Age never reached 1 s")
        self.assertEqual(self.up.count(), 1)

    def test_bypass_cases(self):
        ds = self.ds()
        self.assertEqual(self.xc(ds, "proxy/p"), "MISS")
        for method in ("POST", "PUT", "DELETE"):
            self.assertEqual(self.xc(ds, "proxy/p", method=method, body=b"{}"), "BYPASS")
        self.assertEqual(self.up.count(), 4)
        self.assertEqual(self.xc(ds, "proxy/p"), "HIT")

        off = self.ds({"backend": "off"})
        self.assertEqual([self.xc(off, "proxy/p") for _ in range(2)], ["BYPASS"] * 2)
        self.assertEqual(self.up.count(), 6)

        rule0 = self.ds({"rules": [{"paths": ["/live/**"], "ttl": 0}]})
        self.assertEqual([self.xc(rule0, "proxy/live/x") for _ in range(2)], ["BYPASS"] * 2)
        self.assertEqual([self.xc(rule0, "proxy/other") for _ in range(2)], ["MISS", "HIT"])
        ttl0 = self.ds({"resourceTtl": "0"})
        self.assertEqual([self.xc(ttl0, "proxy/p") for _ in range(2)], ["BYPASS"] * 2)
        self.assertEqual(self.up.count(), 11)

        user = self.ds({"scope": "user"})
        self.assertEqual([self.xc(user, "proxy/p", login=None) for _ in range(2)],
                         ["BYPASS"] * 2)
        self.assertEqual(self.xc(user, "proxy/p", login="alice"), "MISS")
        self.assertEqual(self.xc(user, "proxy/p", login=None), "BYPASS")
        self.assertEqual(self.up.count(), 15)

    def test_scope_user(self):
        ds = self.ds({"scope": "user"})
        _, a1 = self.get(ds, "proxy/me", login="alice")[:2]
        _, b1 = self.get(ds, "proxy/me", login="bob")[:2]
        self.assertNotEqual(a1, b1)
        self.assertEqual(self.up.count(), 2)
        self.assertEqual(self.get(ds, "proxy/me", login="alice")[:2], ("HIT", a1))
        self.assertEqual(self.get(ds, "proxy/me", login="bob")[:2], ("HIT", b1))
        # the same login in another org is another user
        self.assertEqual(self.xc(ds, "proxy/me", login="alice", org=2), "MISS")
        self.assertEqual(self.up.count(), 3)

    def test_scope_org(self):
        ds = self.ds({"scope": "org"})
        self.assertEqual(self.xc(ds, "proxy/o", login="alice", org=1), "MISS")
        self.assertEqual(self.xc(ds, "proxy/o", login="bob", org=2), "MISS")
        self.assertEqual(self.xc(ds, "proxy/o", login="carol", org=1), "HIT")
        self.assertEqual(self.xc(ds, "proxy/o", login="dave", org=2), "HIT")
        self.assertEqual(self.up.count(), 2)

    def test_shared_scope_is_one_data_source(self):
        ds = self.ds()
        self.assertEqual(self.xc(ds, "proxy/s", login="alice", org=1), "MISS")
        self.assertEqual(self.xc(ds, "proxy/s", login="bob", org=1), "HIT")
        self.assertEqual(self.xc(ds, "proxy/s", login=None), "HIT")
        # uids are unique only within an org: the same uid in another org is another data
        # source (other credentials, other users) and shares nothing
        self.assertEqual(self.xc(ds, "proxy/s", login="mallory", org=2), "MISS")
        self.assertEqual(self.up.count(), 2)

    def cc_route(self, value):
        return lambda r: (200, {"Cache-Control": value, "Content-Type": "text/plain"},
                          ("%s #%d" % (value, self.up.count())).encode())

    def test_respect_cache_control(self):
        for path, value in (("/nostore", "no-store"), ("/private", "private, max-age=600"),
                            ("/nocache", "no-cache"), ("/m1", "max-age=1"),
                            ("/s1", "max-age=600, s-maxage=1"),
                            ("/s600", "max-age=1, s-maxage=600")):
            self.up.routes[path] = self.cc_route(value)
        ds = self.ds({"resourceTtl": "5m"})
        for path in ("/nostore", "/private", "/nocache"):
            self.assertEqual([self.xc(ds, "proxy" + path) for _ in range(2)], ["MISS"] * 2, path)
            self.assertEqual(self.up.count(path), 2, path)
        for path in ("/m1", "/s1", "/s600"):
            self.assertEqual([self.xc(ds, "proxy" + path) for _ in range(2)], ["MISS", "HIT"],
                             path)
        # max-age=1 and s-maxage=1 expire after a second; s-maxage=600 wins over max-age=1
        for path in ("/m1", "/s1"):
            self.assertTrue(wait_for(lambda: self.xc(ds, "proxy" + path) == "MISS", timeout=5,
                                     interval=0.1), path + " never expired")
            self.assertEqual(self.up.count(path), 2, path)
        self.assertEqual(self.xc(ds, "proxy/s600"), "HIT")
        self.assertEqual(self.up.count("/s600"), 1)

        # respectCacheControl false: the directives are ignored
        ignore = self.ds({"respectCacheControl": False})
        self.assertEqual([self.xc(ignore, "proxy/nostore") for _ in range(2)], ["MISS", "HIT"])
        self.assertEqual([self.xc(ignore, "proxy/private") for _ in range(2)], ["MISS", "HIT"])

    def test_errors_and_cookies_not_cached(self):
        self.up.routes["/e500"] = lambda r: (500, {}, b"boom")
        self.up.routes["/e503"] = lambda r: (503, {}, b"later")
        self.up.routes["/cookie"] = lambda r: (200, {"Set-Cookie": "sid=%d" % self.up.count()},
                                               b"personal")
        ds = self.ds()
        for path, status in (("/e500", 500), ("/e503", 503), ("/cookie", 200)):
            for _ in range(2):
                self.assertEqual(self.xc(ds, "proxy" + path, status=status), "MISS", path)
            self.assertEqual(self.up.count(path), 2, path)
        # no answer is kept (each call above went upstream): only the cookie answer's
        # hit-for-miss note
        self.assertEqual(self.stats(ds)["entries"], 1)

    def test_no_cache_request_refreshes_for_editors_only(self):
        ds = self.ds()
        nc = {"Cache-Control": "no-cache"}
        _, v1 = self.get(ds, "proxy/r", role="Viewer")[:2]
        self.assertEqual(self.get(ds, "proxy/r", role="Viewer", headers=nc)[:2], ("HIT", v1))
        self.assertEqual(self.up.count(), 1)
        _, v2 = self.get(ds, "proxy/r", role="Editor", headers=nc)[:2]
        self.assertEqual(self.up.count(), 2)
        self.assertNotEqual(v2, v1)
        self.assertEqual(self.get(ds, "proxy/r", role="Viewer")[:2], ("HIT", v2))
        _, v3 = self.get(ds, "proxy/r", role="Admin", headers=nc)[:2]
        self.assertEqual(self.up.count(), 3)
        self.assertEqual(self.get(ds, "proxy/r", role="Viewer")[:2], ("HIT", v3))

    def test_stale_while_revalidate(self):
        release = threading.Event()
        version = itertools.count(1)

        def route(r):
            v = next(version)
            if v > 1:
                release.wait(10)  # the refresh stays in flight until the test lets it go
            return 200, {"Content-Type": "text/plain"}, b"v%d" % v

        self.up.routes["/swr"] = route
        ds = self.ds({"resourceTtl": "1s", "staleWhileRevalidate": "1m"})
        self.assertEqual(self.get(ds, "proxy/swr")[:2], ("MISS", b"v1"))
        seen = []
        self.assertTrue(wait_for(lambda: seen.append(self.get(ds, "proxy/swr")[:2]) or
                                 seen[-1][0] != "HIT", timeout=5, interval=0.1))
        self.assertEqual(seen[-1], ("STALE", b"v1"))
        # every answer while the refresh is in flight is the old one, at once
        for _ in range(5):
            t0 = time.monotonic()
            x, body, h = self.get(ds, "proxy/swr")
            self.assertEqual((x, body), ("STALE", b"v1"))
            self.assertRegex(hval(h, "Age") or "", r"^\d+$")
            self.assertLess(time.monotonic() - t0, 1.0)
        self.assertTrue(wait_for(lambda: self.up.count("/swr") == 2, timeout=5))
        release.set()
        after = []
        self.assertTrue(wait_for(lambda: after.append(self.get(ds, "proxy/swr")[:2]) or
                                 after[-1] == ("HIT", b"v2"), timeout=5, interval=0.05))
        # until the refresh is stored the old answer is still served stale, never anything else
        self.assertTrue(all(a == ("STALE", b"v1") for a in after[:-1]), after)
        self.assertEqual(self.up.count("/swr"), 2, "exactly one background refresh")
        self.assertEqual(self.stats(ds)["stale"], 6 + len(after) - 1)

    def test_stale_if_error(self):
        state = {"status": 200}
        self.up.routes["/sie"] = lambda r: (state["status"], {"Content-Type": "text/plain"},
                                            b"answer %d" % self.up.count())
        ds = self.ds({"resourceTtl": "1s", "staleIfError": "1m"})
        _, good = self.get(ds, "proxy/sie")[:2]
        self.assertEqual(self.xc(ds, "proxy/sie"), "HIT")
        state["status"] = 503
        # once expired, the 503 is not shown: the stale answer is
        self.assertTrue(wait_for(lambda: self.xc(ds, "proxy/sie") != "HIT", timeout=5,
                                 interval=0.1))
        self.assertEqual(self.get(ds, "proxy/sie")[:2], ("STALE", good))
        n = self.up.count("/sie")
        self.assertEqual(self.get(ds, "proxy/sie")[:2], ("STALE", good))
        self.assertEqual(self.up.count("/sie"), n + 1, "each stale-if-error call tries again")
        # upstream down: still the stale answer
        self.up.close()
        self.assertEqual(self.get(ds, "proxy/sie")[:2], ("STALE", good))
        # without staleIfError the failure shows
        plain = self.ds({"resourceTtl": "1s"}, url=self.up.url)
        self.assertEqual(self.call(plain, "proxy/sie")[0], 502)

    def test_stats_match(self):
        ds = self.ds()
        self.assertEqual(self.xc(ds, "proxy/a", login="alice"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/a", login="bob"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/a", login="carol"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/b"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/b", method="POST"), "BYPASS")
        self.assertEqual(self.call(ds, "proxy/../x")[0], 400)
        s = self.stats(ds)
        self.assertEqual(s["backend"], "memory")
        self.assertEqual((s["entries"], s["hits"], s["misses"], s["stale"], s["bypass"],
                          s["coalesced"], s["upstreamRequests"], s["errors"]),
                         (2, 2, 2, 0, 1, 0, 3, 1))
        self.assertGreater(s["bytes"], 0)
        self.assertAlmostEqual(s["hitRatio"], 0.5, places=3)

    def test_purge_by_prefix(self):
        ds = self.ds()
        for path in ("/a/1", "/a/2", "/ab", "/b/1"):
            self.assertEqual(self.xc(ds, "proxy" + path), "MISS")
        self.assertEqual(self.purge(ds, "/a/"), {"purged": 2})
        self.assertEqual(self.xc(ds, "proxy/a/1"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/ab"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/b/1"), "HIT")
        self.assertEqual(self.purge(ds, "/nothing"), {"purged": 0})
        self.assertEqual(self.purge(ds), {"purged": 3})
        self.assertEqual(self.stats(ds)["entries"], 0)
        self.assertEqual(self.xc(ds, "proxy/b/1"), "MISS")

    def test_metrics_count_once_per_request(self):
        ds = self.ds()
        before, before_q = cache_requests(self.plugin), cache_requests(self.plugin, "query")
        self.assertEqual(self.xc(ds, "proxy/m"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/m"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/m"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/m", method="POST"), "BYPASS")
        self.assertEqual(self.xc(ds, "proxy/m", role="Editor",
                                 headers={"Cache-Control": "no-cache"}), "MISS")
        after = cache_requests(self.plugin)
        self.assertEqual({k: after[k] - before[k] for k in after},
                         {"hit": 2, "miss": 2, "stale": 0, "bypass": 1})
        self.assertEqual(cache_requests(self.plugin, "query"), before_q)


# ---- b. coalescing in one process ----------------------------------------------------------------

class CoalescingTest(MemoryBase):
    def test_twenty_identical_calls_one_upstream_call(self):
        gate = threading.Event()

        def slow(r):
            gate.wait(10)
            return 200, {"Content-Type": "text/plain"}, b"slow answer %d" % self.up.count()

        self.up.routes["/slow"] = slow
        ds = self.ds()
        before, m0 = cache_requests(self.plugin), metrics(self.plugin)
        threads, results = self.concurrent([lambda: self.call(ds, "proxy/slow")] * 20)
        # open the gate once the leader reached the upstream and the other 19 calls wait
        # for it in the plugin
        self.assertTrue(wait_for(lambda: self.up.count("/slow") >= 1 and
                                 coalesced_waiting(self.plugin) >= 19, timeout=10))
        gate.set()
        for t in threads:
            t.join(CALL_TIMEOUT + 5)
        for r in results:
            self.assertNotIsInstance(r, Exception)
            self.assertEqual(r[0], 200, r)
        bodies = {r[2] for r in results}
        self.assertEqual(len(bodies), 1, bodies)
        self.assertEqual(self.up.count("/slow"), 1)
        xcs = sorted(hval(r[1], "X-Cache") for r in results)
        self.assertEqual(xcs, ["HIT"] * 19 + ["MISS"])
        s = self.stats(ds)
        self.assertEqual((s["misses"], s["hits"], s["coalesced"], s["upstreamRequests"]),
                         (1, 19, 19, 1))
        after, m1 = cache_requests(self.plugin), metrics(self.plugin)
        self.assertEqual((after["miss"] - before["miss"], after["hit"] - before["hit"]), (1, 19))
        self.assertEqual(m1["cachingproxy_coalesced_requests_total"] -
                         m0["cachingproxy_coalesced_requests_total"], 19)


# ---- c. Redis: shared across processes -----------------------------------------------------------

@need_redis
class RedisSharedTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer()
        cls.p1 = Plugin()
        cls.p2 = Plugin()

    @classmethod
    def tearDownClass(cls):
        for p in (cls.p1, cls.p2):
            p.stop()
        cls.redis.kill()

    def setUp(self):
        super().setUp()
        self.plugin = self.p1
        self.watch(self.p1, self.p2)

    def tearDown(self):
        for p in (self.p1, self.p2):
            self.assertIsNone(p.proc.poll(), "a plugin died during this test")
        super().tearDown()

    def rds(self, **cache):
        c = {"backend": "redis", "redisUrl": "redis://127.0.0.1:%d" % self.redis.port}
        c.update(cache)
        return self.ds(c)

    def test_processes_share_entries(self):
        ds = self.rds()
        x, body, _ = self.get(ds, "proxy/shared/1", self.p1)
        self.assertEqual(x, "MISS")
        x, body2, h = self.get(ds, "proxy/shared/1", self.p2, login="bob")
        self.assertEqual((x, body2), ("HIT", body))
        self.assertRegex(hval(h, "Age") or "", r"^\d+$")
        self.assertEqual(self.up.count(), 1)
        self.assertEqual(self.stats(ds, self.p2)["backend"], "redis")
        keys = self.redis.scan("cachingproxy:{1:%s}:*" % ds.uid)
        entries = [k for k in keys if not k.endswith(b"::index") and not k.endswith(b":lock")]
        self.assertEqual(len(entries), 1, keys)
        self.assertRegex(entries[0].decode(), r"^cachingproxy:\{1:%s\}:[0-9a-f]{64}$" % ds.uid)
        ttl = self.redis.command("PTTL", entries[0])
        self.assertTrue(0 < ttl <= 30000, ttl)
        self.assertEqual(self.redis.command("EXISTS", entries[0] + b":lock"), 0, "lock released")

    def test_entries_survive_a_restart(self):
        ds = self.rds()
        x, body, _ = self.get(ds, "proxy/persist", self.p1)
        self.assertEqual(x, "MISS")
        p3 = Plugin()
        self.watch(p3)
        try:
            self.assertEqual(self.get(ds, "proxy/persist", p3)[:2], ("HIT", body))
        finally:
            self.assertEqual(p3.stop(), 0)
        p4 = Plugin()
        self.watch(p4)
        try:
            self.assertEqual(self.get(ds, "proxy/persist", p4)[:2], ("HIT", body))
        finally:
            p4.stop()
        self.assertEqual(self.up.count(), 1)

    def test_coalescing_across_processes(self):
        gate = threading.Event()

        def slow(r):
            gate.wait(10)
            return 200, {}, b"slow %d" % self.up.count()

        self.up.routes["/slow"] = slow
        ds = self.rds()
        jobs = [lambda p=p: self.call(ds, "proxy/slow", p) for p in (self.p1, self.p2)] * 10
        threads, results = self.concurrent(jobs)
        # one leader per process: p1's at the upstream, p2's waiting on the Redis lock; the
        # other nine of each wait in their process for their leader
        self.assertTrue(wait_for(lambda: self.up.count("/slow") >= 1 and
                                 coalesced_waiting(self.p1) >= 9 and
                                 coalesced_waiting(self.p2) >= 9, timeout=10))
        gate.set()
        for t in threads:
            t.join(CALL_TIMEOUT + 5)
        for r in results:
            self.assertNotIsInstance(r, Exception)
            self.assertEqual(r[0], 200, r)
        self.assertLessEqual(self.up.count("/slow"), 2)
        self.assertEqual(self.up.count("/slow"), len({r[2] for r in results}))

    def test_a_note_is_never_the_other_processs_answer(self):
        # p1 leads at the upstream, p2 waits on the Redis lock; p1 leaves a note (the answer
        # was its caller's alone, or varies): p2 asks the upstream itself, never answers a note
        for path, extra in (("/cookie", {"Set-Cookie": "s=1"}), ("/varies", {"Vary": "X-Tenant"})):
            gate = threading.Event()

            def slow(r, extra=extra, gate=gate):
                gate.wait(10)
                return 200, extra, b"answer for " + (r.header("X-Tenant") or "-").encode()
            self.up.routes[path] = slow
            ds = self.ds({"backend": "redis",
                          "redisUrl": "redis://127.0.0.1:%d" % self.redis.port},
                         forwardHeaders=["X-Tenant"])
            hdrs = {"X-Tenant": "a"}
            jobs = [lambda: self.call(ds, "proxy" + path, self.p1, headers=hdrs),
                    lambda: self.call(ds, "proxy" + path, self.p2, login="bob", headers=hdrs)]
            threads, results = self.concurrent(jobs)
            self.assertTrue(wait_for(lambda: self.up.count(path) >= 1, timeout=10))
            # p2 polls Redis for the entry (the only commands while p1's upstream call waits)
            n0 = self.redis.commands_processed()
            self.assertTrue(wait_for(lambda: self.redis.commands_processed() >= n0 + 12,
                                     timeout=10))
            self.assertEqual(self.up.count(path), 1)
            gate.set()
            for t in threads:
                t.join(CALL_TIMEOUT + 5)
            for r in results:
                self.assertNotIsInstance(r, Exception)
                self.assertEqual((r[0], r[2]), (200, b"answer for a"), (path, r))

    def test_purge_in_one_process_purges_for_both(self):
        ds = self.rds()
        for path in ("/a/1", "/a/2", "/b/1"):
            self.assertEqual(self.xc(ds, "proxy" + path, self.p1), "MISS")
            self.assertEqual(self.xc(ds, "proxy" + path, self.p2), "HIT")
        self.assertEqual(self.purge(ds, "/a/", self.p2), {"purged": 2})
        self.assertEqual(self.xc(ds, "proxy/a/1", self.p1), "MISS")
        self.assertEqual(self.xc(ds, "proxy/a/2", self.p2), "MISS")
        self.assertEqual(self.xc(ds, "proxy/b/1", self.p1), "HIT")
        self.assertEqual(self.purge(ds, None, self.p1), {"purged": 3})
        for p in (self.p2, self.p1):
            self.assertEqual(self.xc(ds, "proxy/b/1", p), "MISS" if p is self.p2 else "HIT")
        # another data source on the same Redis keeps its entries
        other = self.rds()
        self.assertEqual(self.xc(other, "proxy/b/1", self.p1), "MISS")
        self.purge(ds, None, self.p2)
        self.assertEqual(self.xc(other, "proxy/b/1", self.p2), "HIT")

    def test_corrupted_values_are_misses(self):
        ds = self.rds()
        x, body, _ = self.get(ds, "proxy/c", self.p1)
        self.assertEqual(x, "MISS")
        keys = [k for k in self.redis.scan("cachingproxy:{1:%s}:*" % ds.uid)
                if not k.endswith(b"::index") and not k.endswith(b":lock")]
        self.assertEqual(len(keys), 1, keys)
        key = keys[0]
        valid = self.redis.command("GET", key)
        flipped = bytearray(valid)
        flipped[len(valid) // 2] ^= 0x20
        rnd = random.Random(7)
        corruptions = [b"garbage", b"", valid[:-3], bytes(flipped), valid + b"x",
                       bytes(rnd.getrandbits(8) for _ in range(len(valid))), b"\x00" * 64]
        for i, bad in enumerate(corruptions):
            self.redis.command("SET", key, bad, "PX", 60000)
            n = self.up.count()
            for p in (self.p1, self.p2):
                code, hdrs, out, _ = self.call(ds, "proxy/c", p)
                self.assertEqual(code, 200, (i, out))
                if p is self.p1:
                    self.assertEqual(hval(hdrs, "X-Cache"), "MISS", i)
                    self.assertEqual(self.up.count(), n + 1, i)
                else:
                    self.assertEqual(hval(hdrs, "X-Cache"), "HIT", i)  # p1 stored a good one
        self.assertNotEqual(self.redis.command("GET", key), corruptions[-1])


# ---- d. Redis faults ------------------------------------------------------------------------------

@need_redis
class RedisFaultTest(Base):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer()
        self.addCleanup(self.redis.kill)
        self.plugin = Plugin()
        self.addCleanup(self.plugin.stop)
        self.watch(self.plugin)
        self.assertEqual(self.xc(self.ds(), "proxy/warm-up"), "MISS")  # the process, not Redis

    def rds(self, url=None):
        return self.ds({"backend": "redis",
                        "redisUrl": url or "redis://127.0.0.1:%d" % self.redis.port})

    def timed(self, ds, path):
        t0 = time.monotonic()
        code, hdrs, out, _ = self.call(ds, path)
        took = time.monotonic() - t0
        self.assertEqual(code, 200, out)
        self.assertLess(took, 1.0, "%s took %.3f s" % (path, took))
        return hval(hdrs, "X-Cache")

    def test_near_cache_answers_while_redis_is_down(self):
        ds = self.ds({"backend": "redis", "nearCacheTtl": "30s",
                      "redisUrl": "redis://127.0.0.1:%d" % self.redis.port})
        self.assertEqual(self.xc(ds, "proxy/hot"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/hot"), "HIT")
        self.redis.kill()
        # Redis is gone: the hot key still comes from the memory tier in front of it,
        # a cold key goes to the upstream
        before = self.up.count()
        self.assertEqual(self.timed(ds, "proxy/hot"), "HIT")
        self.assertEqual(self.up.count(), before)
        self.assertEqual(self.timed(ds, "proxy/cold"), "MISS")
        self.assertEqual(self.up.count(), before + 1)

    def assert_uncached_calls(self, ds, n, tag):
        before = self.up.count()
        for i in range(n):
            self.assertEqual(self.timed(ds, "proxy/%s/%d" % (tag, i % 3)), "MISS", (tag, i))
        self.assertEqual(self.up.count(), before + n)

    def test_outage_restart_and_health(self):
        ds = self.rds()
        # warm-up (instance creation, first connections) is not what the latency bound is about
        self.assertEqual([self.xc(ds, "proxy/k") for _ in range(2)], ["MISS", "HIT"])
        self.assertEqual(health(self.plugin, ds)[0], OK)
        self.assertEqual(redis_warnings(self.plugin), [])
        errors0 = metrics(self.plugin)["cachingproxy_redis_errors_total"]

        for outage in (1, 2):
            self.redis.kill()
            self.assert_uncached_calls(ds, 12, "down%d" % outage)
            self.assertIsNone(self.plugin.proc.poll())
            warns = redis_warnings(self.plugin)
            self.assertEqual(len(warns), outage, warns)
            self.assertEqual(warns[-1]["@level"], "warn")
            self.assertGreater(metrics(self.plugin)["cachingproxy_redis_errors_total"], errors0)
            status, msg = health(self.plugin, ds)
            self.assertEqual(status, ERROR, msg)
            self.assertRegex(msg.lower(), r"redis|cache")
            # calls keep working after the health check too
            self.assert_uncached_calls(ds, 3, "after-health%d" % outage)

            self.redis.start()
            # caching resumes by itself: a call is stored (MISS) and the next one hits
            path = "proxy/back%d" % outage
            seen = []
            self.assertTrue(wait_for(lambda: seen.append(self.timed(ds, path)) or
                                     seen[-1] == "HIT", timeout=8, interval=0.1),
                            "caching did not resume: %s" % seen)
            self.assertIn("MISS", seen)
            self.assertTrue(wait_for(lambda: health(self.plugin, ds)[0] == OK, timeout=5,
                                     interval=0.2), health(self.plugin, ds))
            warns = redis_warnings(self.plugin)
            self.assertEqual(len(warns), outage, warns)

    def test_hung_redis_bounded_latency(self):
        ds = self.rds()
        self.assertEqual([self.xc(ds, "proxy/h") for _ in range(2)], ["MISS", "HIT"])
        self.redis.pause()
        try:
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 3:
                self.assertIn(self.timed(ds, "proxy/hung/%d" % (n % 4)), ("MISS",))
                n += 1
            self.assertGreater(n, 10)
            self.assertEqual(len(redis_warnings(self.plugin)), 1)
        finally:
            self.redis.resume()
        self.assertTrue(wait_for(lambda: self.timed(ds, "proxy/after-hang") == "HIT", timeout=8,
                                 interval=0.1))

    def test_nothing_listening(self):
        ds = self.rds("redis://127.0.0.1:%d" % free_port())
        self.assert_uncached_calls(ds, 10, "nobody")
        self.assertEqual(len(redis_warnings(self.plugin)), 1)
        status, msg = health(self.plugin, ds)
        self.assertEqual(status, ERROR, msg)
        self.assertRegex(msg.lower(), r"redis|cache")
        self.assertGreater(metrics(self.plugin)["cachingproxy_redis_errors_total"], 0)


# ---- e. Redis AUTH --------------------------------------------------------------------------------

PASSWORD = "pw123456"
WRONG = "wrong-pw-987"


@need_redis
class RedisAuthTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer(password=PASSWORD)
        cls.p = Plugin()

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        cls.redis.kill()

    def setUp(self):
        super().setUp()
        self.plugin = self.p
        self.watch(self.p)

    def tearDown(self):
        self.assertIsNone(self.p.proc.poll(), "the plugin died during this test")
        log = self.p.stderr_text()
        for secret in (PASSWORD, WRONG):
            self.assertNotIn(secret, log)
        super().tearDown()

    def rds(self, password, url=None):
        c = {"backend": "redis", "redisUrl": url or "redis://127.0.0.1:%d" % self.redis.port}
        if password is not None:
            c["redisPassword"] = password
        return self.ds(c)

    def test_password_works(self):
        ds = self.rds(PASSWORD)
        self.assertEqual([self.xc(ds, "proxy/auth") for _ in range(2)], ["MISS", "HIT"])
        status, msg = health(self.p, ds)
        self.assertEqual(status, OK, msg)
        self.assertNotIn(PASSWORD, msg)

    def test_password_in_url_works(self):
        ds = self.rds(None, url="redis://:%s@127.0.0.1:%d" % (PASSWORD, self.redis.port))
        self.assertEqual([self.xc(ds, "proxy/url-auth") for _ in range(2)], ["MISS", "HIT"])

    def test_wrong_password_fresh_health_check(self):
        ds = self.rds(WRONG + "-fresh")  # a password of its own: a pool nobody used yet
        status, msg = health(self.p, ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("authentication failed", msg.lower())
        self.assertNotIn(WRONG, msg)

    def test_wrong_or_missing_password_uncached(self):
        for pw in (WRONG, None):
            ds = self.rds(pw)
            n = self.up.count()
            self.assertEqual([self.xc(ds, "proxy/wrong") for _ in range(3)], ["MISS"] * 3)
            self.assertEqual(self.up.count(), n + 3)
            status, msg = health(self.p, ds)
            self.assertEqual(status, ERROR, msg)

    def test_missing_password_health_names_authentication(self):
        ds = self.rds(None)
        status, msg = health(self.p, ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("auth", msg.lower())

    def test_wrong_password_health_after_calls(self):
        ds = self.rds(WRONG + "x")
        self.assertEqual(self.xc(ds, "proxy/w2"), "MISS")
        status, msg = health(self.p, ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("authentication failed", msg.lower())


if __name__ == "__main__":
    unittest.main()
