"""Issue 11, recording real traffic: CACHINGPROXY_ACCESS_LOG=FILE through the real executable,
as a Grafana plugin and as the standalone server. Resource calls and queries of several users
become trace lines (`ts,user,role,method,path`) with keyed pseudonyms; no login, email, token,
API key or injected credential reaches the file; the file loads in `cachingproxy-bench sim`;
the key survives a restart or comes from CACHINGPROXY_ACCESS_LOG_KEY; the header is written
once; SIGTERM leaves every line whole, in-flight calls included."""
import hashlib
import hmac
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import unittest
import urllib.parse

from harness import BUILD, Plugin, Upstream, call_resource, context, pb, settings, wait_for
from test_standalone import ALICE, BOB, ORG2, RES, Server, base_config, free_port, get, request

BENCH = os.path.join(BUILD, "cachingproxy-bench")
HEADER = "ts,user,role,method,path"
FROM, TO = 1700000003000, 1700003605000  # aligned to timeAlign 10s: ...000000, ...610000
API_KEY = "SECRET-QUERY-KEY-4242"
USER_TOKEN = "user-oauth-token-9f8e7d"


def pseudonym(key, org, login):
    return hmac.new(key.encode(), ("%d:%s" % (org, login)).encode(), hashlib.sha256).hexdigest()[:16]


def read_log(path):
    """(header line, [(ts, user, role, method, path)]); every line must be whole."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("ascii")  # printable ASCII only
    assert text.endswith("\n"), "last line cut: %r" % text[-80:]
    lines = text[:-1].split("\n")
    recs = []
    for line in lines[1:]:
        ts, user, role, method, p = line.split(",", 4)
        recs.append((float(ts), user, role, method, p))
    return lines[0], recs


def key_of(log):
    with open(log + ".key") as f:
        return f.readline().rstrip("\n")


def query(ref, model, frm=FROM, to=TO):
    return pb.DataQuery(refId=ref, json=json.dumps(dict(model, refId=ref)).encode(),
                        timeRange=pb.TimeRange(fromEpochMS=frm, toEpochMS=to), intervalMS=1000,
                        maxDataPoints=100)


def points(r):
    """An upstream answering rows with a time inside the asked range (split queries cut it)."""
    q = urllib.parse.parse_qs(urllib.parse.urlparse(r.path).query)
    frm = int(q.get("from", [FROM])[0])
    return 200, {"Content-Type": "application/json"}, json.dumps(
        {"points": [{"time": frm, "v": 1}]}).encode()


def metric(plugin, name):
    text = plugin.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10).metrics.prometheus
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no sample of " + name)


class PluginAccessLogTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cp-accesslog-")
        self.log = os.path.join(self.dir, "access.csv")
        self.up = Upstream()
        self.up.routes["/series"] = points
        self.plugin = None

    def tearDown(self):
        if self.plugin:
            self.plugin.stop()
        self.up.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, **env):
        env.setdefault("CACHINGPROXY_ACCESS_LOG", self.log)
        self.plugin = Plugin(env=env)
        return self.plugin

    def stop(self):
        rc = self.plugin.stop()
        self.plugin = None
        return rc

    def ds(self, **jd):
        base = {"authType": "apiKey", "apiKeyQueryParam": "api_key",
                "rules": [{"effect": "deny", "paths": ["/secret/**"]}]}
        base.update(jd)
        return settings(self.up.url, base, secure={"apiKey": API_KEY})

    def run_queries(self, ds, queries, **user):
        req = pb.QueryDataRequest(pluginContext=context(ds, **user), queries=queries)
        return self.plugin.data.QueryData(req, timeout=30).responses

    def test_resources_and_queries_of_two_users(self):
        p = self.start()
        ds = self.ds()
        alice = dict(login="alice", role="Viewer")
        bob = dict(login="bob", role="Editor")
        url = "proxy/items/1?x=1&y=a%20b"
        self.assertEqual(call_resource(p, ds, "proxy/items/1", url=url,
                                       headers={"Authorization": "Bearer " + USER_TOKEN},
                                       **alice)[0], 200)
        self.assertEqual(call_resource(p, ds, "proxy/items/1", url=url, **bob)[0], 200)
        self.assertEqual(call_resource(p, ds, "proxy/items", method="post", body=b'{"a":1}',
                                       **bob)[0], 200)
        self.assertEqual(call_resource(p, ds, "proxy/secret/x", **alice)[0], 403)  # a rule
        self.assertEqual(call_resource(p, ds, "proxy/a/../b", **alice)[0], 400)  # admission
        # a client that writes the data source's own secret into its URL
        self.assertEqual(call_resource(p, ds, "proxy/items/2", url="proxy/items/2?k=" + API_KEY,
                                       **alice)[0], 200)
        self.assertEqual(call_resource(p, ds, "cache/stats", **alice)[0], 200)  # not upstream
        self.assertEqual(call_resource(p, ds, "nothing", **alice)[0], 404)
        # the credential went upstream as a query parameter
        self.assertTrue(any(("api_key=" + API_KEY) in r.path for r in self.up.requests))

        r = self.run_queries(ds, [query("A", {"path": "/q/${__from}", "root": "$",
                                              "params": {"to": "${__to:s}", "s": "a b,c"}})],
                             **alice)
        self.assertEqual(r["A"].status, 200, r["A"].error)
        split = {"path": "/series", "params": {"from": "${__from}", "to": "${__to}"},
                 "root": "points", "split": "1h"}
        before = self.up.count("/series")
        r = self.run_queries(ds, [query("S", split)], **bob)
        self.assertEqual(r["S"].status, 200, r["S"].error)
        self.assertEqual(self.up.count("/series") - before, 2)  # two pieces upstream
        r = self.run_queries(ds, [query("alert", {"path": "alert", "params": {"v": "1"},
                                                  "root": "$"})], login=None)
        self.assertEqual(r["alert"].status, 200, r["alert"].error)
        bad = self.run_queries(ds, [query("B", {"path": 7})], **alice)
        self.assertEqual(bad["B"].status, 400)  # no path to record

        wait_for(lambda: metric(p, "cachingproxy_access_log_lines_total") == 9)
        self.assertEqual(metric(p, "cachingproxy_access_log_lines_total"), 9)
        self.assertEqual(metric(p, "cachingproxy_access_log_dropped_total"), 0)
        self.assertEqual(self.stop(), 0)

        header, recs = read_log(self.log)
        self.assertEqual(header, HEADER)
        key = key_of(self.log)
        a, b = pseudonym(key, 1, "alice"), pseudonym(key, 1, "bob")
        self.assertNotEqual(a, b)
        want = [(a, "Viewer", "GET", "/items/1?x=1&y=a%20b"),
                (b, "Editor", "GET", "/items/1?x=1&y=a%20b"),
                (b, "Editor", "POST", "/items"),
                (a, "Viewer", "GET", "/secret/x"),
                (a, "Viewer", "GET", "/a/../b"),
                (a, "Viewer", "GET", "/items/2?k=[redacted]"),
                (a, "Viewer", "QUERY", "/q/1700000000000?to=1700003610&s=a%20b%2Cc"),
                (b, "Editor", "QUERY", "/series?from=1700000000000&to=1700003610000"),
                ("", "", "QUERY", "/alert?v=1")]
        self.assertEqual([r[1:] for r in recs], want)
        with open(self.log) as f:
            text = f.read().lower()
        for secret in ("alice", "bob", "example.com", API_KEY.lower(), "api_key", USER_TOKEN,
                       key[:16]):
            self.assertNotIn(secret, text)
        # the file and the key are the operator's alone
        self.assertEqual(stat.S_IMODE(os.stat(self.log).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.log + ".key").st_mode), 0o600)
        # arrival times: now, in order
        ts = [r[0] for r in recs]
        self.assertEqual(ts, sorted(ts))

        # the benchmark's what-if reads it as it is
        out = os.path.join(self.dir, "sim.json")
        res = subprocess.run([BENCH, "sim", "--trace", self.log, "--sizes", "10", "--json", out],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(out) as f:
            sim = json.load(f)
        self.assertEqual(sim["requests"], 9)
        ours = [x for x in sim["results"] if x["policy"] == "ours"][0]
        self.assertEqual((ours["hits"], ours["misses"]), (1, 8))  # /items/1 asked twice

    def test_key_is_stable_across_a_restart(self):
        ds = self.ds()
        for _ in range(2):
            p = self.start()
            self.assertEqual(call_resource(p, ds, "proxy/items/1", login="alice")[0], 200)
            self.assertEqual(self.stop(), 0)
        with open(self.log) as f:
            self.assertEqual(f.read().count(HEADER), 1)
        header, recs = read_log(self.log)
        self.assertEqual(len(recs), 2)
        self.assertEqual(recs[0][1], recs[1][1])
        self.assertEqual(recs[0][1], pseudonym(key_of(self.log), 1, "alice"))
        # the same login in another org is another pseudonym
        p = self.start()
        self.assertEqual(call_resource(p, ds, "proxy/items/1", login="alice", org=2)[0], 200)
        self.assertEqual(self.stop(), 0)
        _, recs = read_log(self.log)
        self.assertEqual(recs[2][1], pseudonym(key_of(self.log), 2, "alice"))
        self.assertNotEqual(recs[2][1], recs[0][1])

    def test_key_from_the_environment(self):
        shared = "replica-shared-key-0001"
        p = self.start(CACHINGPROXY_ACCESS_LOG_KEY=shared)
        ds = self.ds()
        self.assertEqual(call_resource(p, ds, "proxy/items/1", login="alice")[0], 200)
        self.assertEqual(self.stop(), 0)
        _, recs = read_log(self.log)
        self.assertEqual(recs[0][1], pseudonym(shared, 1, "alice"))
        self.assertFalse(os.path.exists(self.log + ".key"))
        # a second process with the same key, on another file: the same pseudonym
        other = os.path.join(self.dir, "other.csv")
        p = self.start(CACHINGPROXY_ACCESS_LOG=other, CACHINGPROXY_ACCESS_LOG_KEY=shared)
        self.assertEqual(call_resource(p, ds, "proxy/items/2", login="alice")[0], 200)
        self.assertEqual(self.stop(), 0)
        self.assertEqual(read_log(other)[1][0][1], recs[0][1])
        # a key too short to protect the pseudonyms: the plugin serves, without a log
        third = os.path.join(self.dir, "third.csv")
        p = self.start(CACHINGPROXY_ACCESS_LOG=third, CACHINGPROXY_ACCESS_LOG_KEY="tiny-k3y")
        self.assertEqual(call_resource(p, ds, "proxy/items/3", login="alice")[0], 200)
        logs = [l for l in p.logs() if l.get("@message") == "access log off: it could not be opened"]
        self.assertEqual(len(logs), 1, p.stderr_text())
        self.assertEqual(logs[0]["@level"], "error")
        self.assertIn("CACHINGPROXY_ACCESS_LOG_KEY", logs[0]["error"])
        self.assertNotIn("tiny-k3y", p.stderr_text())
        self.assertEqual(self.stop(), 0)
        self.assertFalse(os.path.exists(third))

    def test_sigterm_writes_every_line_whole(self):
        # FILE is a FIFO nobody reads yet: the writer stalls once the pipe is full, lines wait
        # in the queue, and calls go on regardless; after SIGTERM every queued line must still
        # come out, whole, before the process ends
        fifo = os.path.join(self.dir, "access.fifo")
        os.mkfifo(fifo, 0o600)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.up.routes["/slow"] = {"delay": 0.5}
        p = self.start(CACHINGPROXY_ACCESS_LOG=fifo)
        ds = self.ds(rules=[])
        n_fast, n_slow, pad = 1200, 16, "p" * 60
        errors = []

        def fast(k):
            for i in range(k, n_fast, 4):
                k = i % 10  # ten upstream calls, then memory hits (the fast path)
                st = call_resource(p, ds, "proxy/f/%d" % k, url="proxy/f/%d?%s=%d" % (k, pad, k),
                                   login="u%d" % (i % 7))[0]
                if st != 200:
                    errors.append(st)

        threads = [threading.Thread(target=fast, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        slow_status = []

        def slow(i):
            try:
                slow_status.append(call_resource(p, ds, "proxy/slow", url="proxy/slow?i=%d" % i,
                                                 login="w")[0])
            except Exception as e:  # noqa: BLE001 - recorded, checked below
                slow_status.append(repr(e))

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(n_slow)]
        for t in threads:
            t.start()
        self.assertTrue(wait_for(lambda: self.up.count("/slow") == n_slow, timeout=10))
        # the pipe holds 64 KiB: most lines still wait in the plugin
        self.assertLess(metric(p, "cachingproxy_access_log_lines_total"), n_fast)
        self.assertEqual(metric(p, "cachingproxy_access_log_dropped_total"), 0)
        p.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        # the calls are over and the process is on its way out: only now is the FIFO read, so
        # what is still queued reaches it only if the exit writes the queue out first
        os.set_blocking(rfd, True)
        chunks = []
        while True:
            b = os.read(rfd, 65536)
            if not b:
                break  # the plugin closed its end
            chunks.append(b)
        os.close(rfd)
        self.assertEqual(p.wait_exit(5), 0)
        self.assertEqual(slow_status, [200] * n_slow)  # the drain let them finish
        self.assertEqual(self.stop(), 0)
        closed = [l for l in p.logs() if l.get("@message") == "access log closed"]
        self.assertEqual([(c["lines"], c["dropped"]) for c in closed], [(n_fast + n_slow, 0)])
        text = b"".join(chunks).decode("ascii")
        self.assertTrue(text.endswith("\n"), (len(text), text[-200:], p.stderr_text()[-3000:]))
        paths = []
        for line in text[:-1].split("\n"):
            ts, user, role, method, path = line.split(",", 4)
            self.assertEqual((len(user), role, method), (16, "Viewer", "GET"))
            paths.append(path)
        self.assertEqual(sorted(paths),
                         sorted(["/f/%d?%s=%d" % (i % 10, pad, i % 10) for i in range(n_fast)] +
                                ["/slow?i=%d" % i for i in range(n_slow)]))


class StandaloneAccessLogTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cp-accesslog-")
        self.log = os.path.join(self.dir, "access.csv")
        self.up = Upstream()
        self.port = free_port()
        self.srv = None

    def tearDown(self):
        if self.srv and self.srv.proc.poll() is None:
            self.srv.stop()
        self.up.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_standalone_records_keys_users(self):
        cfg = base_config(self.up.url, self.port, ds_extra={
            "jsonData": {"authType": "apiKey", "apiKeyQueryParam": "key"},
            "secureJsonData": {"apiKey": "${CP_TEST_UPSTREAM_TOKEN}"}})
        self.srv = Server(cfg, env={"CACHINGPROXY_ACCESS_LOG": self.log}).wait_ready()
        self.assertEqual(get(self.port, RES + "proxy/items/1?b=2&a=%2F", key=ALICE)[0], 200)
        self.assertEqual(get(self.port, RES + "proxy/items/1?b=2&a=%2F", key=BOB)[0], 200)
        self.assertIn("key=upstream-secret-token", self.up.last().path)
        self.assertEqual(get(self.port, RES + "cache/stats", key=ALICE)[0], 200)
        self.assertEqual(get(self.port, RES + "proxy/items/1")[0], 401)  # no key: not in
        self.assertEqual(get(self.port, "/api/datasources/uid/api/resources/proxy/x",
                             key=ORG2)[0], 404)  # another org's: never reaches a pipeline
        q = {"from": str(FROM), "to": str(TO), "queries": [
            {"refId": "A", "datasource": {"uid": "api"}, "path": "/series",
             "params": {"from": "${__from}", "to": "${__to}"}, "root": "points"}]}
        self.up.routes["/series"] = points
        st, _, body = request(self.port, "POST", "/api/ds/query", key=BOB, body=q)
        self.assertEqual(st, 200, body)
        self.assertTrue(wait_for(lambda: "cachingproxy_access_log_lines_total 3\n" in
                                 get(self.port, "/metrics")[2].decode()))
        self.assertEqual(self.srv.stop(), 0)

        header, recs = read_log(self.log)
        self.assertEqual(header, HEADER)
        key = key_of(self.log)
        a, b = pseudonym(key, 1, "alice"), pseudonym(key, 1, "bob")
        self.assertEqual([r[1:] for r in recs],
                         [(a, "Viewer", "GET", "/items/1?b=2&a=%2F"),
                          (b, "Editor", "GET", "/items/1?b=2&a=%2F"),
                          (b, "Editor", "QUERY", "/series?from=1700000000000&to=1700003610000")])
        with open(self.log) as f:
            text = f.read()
        for secret in ("alice", "bob", "example.com", ALICE, BOB, ORG2, "upstream-secret-token",
                       "key="):
            self.assertNotIn(secret, text)

    def test_standalone_refuses_a_log_it_cannot_open(self):
        cfg = base_config(self.up.url, self.port)
        bad = os.path.join(self.dir, "no", "such", "dir.csv")
        self.srv = Server(cfg, env={"CACHINGPROXY_ACCESS_LOG": bad})
        self.assertEqual(self.srv.finish(), 1)
        self.assertIn("access log: " + bad + ".key:", self.srv.text())


if __name__ == "__main__":
    unittest.main()
