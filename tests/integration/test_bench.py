"""Issue 11: cachingproxy-bench end to end. The sim command's interface and figures against an
independent model, the CSV reader's errors, short grpc runs whose report must add up (hits +
misses = requests; upstream calls = the simulator's own count = the plugin's count = MISS +
BYPASS answers), a replay with its timing and users, Ctrl-C giving a partial report, and the
HTML page opened in headless Chromium with a screenshot kept in the build directory."""
import collections
import json
import os
import select
import signal
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CP_BUILD_DIR", os.path.join(ROOT, "build"))
BENCH = os.path.join(BUILD, "cachingproxy-bench")
WEB = os.path.join(ROOT, "bench", "web")


def run(args, timeout=120, **kw):
    return subprocess.run([BENCH] + args, capture_output=True, text=True, timeout=timeout, **kw)


def lru_model(keys, times, cap, ttl):
    """Reference LRU in Python: expired entries leave first, then the least recently used."""
    cache = collections.OrderedDict()  # key -> store time, most recent last
    hits = 0
    for k, t in zip(keys, times):
        if k is None:
            continue
        if k in cache and (ttl == 0 or t < cache[k] + ttl):
            hits += 1
            cache.move_to_end(k)
            continue
        cache.pop(k, None)
        for old in [x for x, st in cache.items() if ttl and t >= st + ttl]:
            del cache[old]
        if len(cache) >= cap:
            cache.popitem(last=False)
        cache[k] = t
    return hits


class BenchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cpbench-test-")
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def load(self, name):
        with open(self.path(name)) as f:
            return json.load(f)

    # ---- sim ----------------------------------------------------------------------------------

    def test_sim_interface_and_figures(self):
        # out of order, a header, an empty user (bypassed under --scope user), a QUERY line
        lines = ["ts,user,role,method,path"]
        rows = []
        import random
        rnd = random.Random(7)
        t = 1700000000.0
        for i in range(400):
            t += rnd.choice([0, 0.5, 1, 2])
            user = rnd.choice(["u1", "u2", "u3", ""])
            method = rnd.choice(["GET", "GET", "QUERY"])
            path = "/p/%d?x=1,2" % int(rnd.paretovariate(1.2))
            rows.append((t, user, method, path))
        in_file = list(reversed(rows[:50])) + rows[50:]
        for r in in_file:
            lines.append("%.1f,%s,Viewer,%s,%s" % r)
        trace = self.write("t.csv", "\n".join(lines) + "\n")
        for scope, ttl in (("shared", 0), ("user", 30), ("shared", 7)):
            args = ["sim", "--trace", trace, "--sizes", "1,3,10", "--json", self.path("o.json")]
            if scope != "shared":
                args += ["--scope", scope]
            if ttl:
                args += ["--ttl", "%ds" % ttl]
            p = run(args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("ours", p.stdout)
            doc = self.load("o.json")
            self.assertEqual(set(doc), {"requests", "results"})
            self.assertEqual(doc["requests"], 400)
            res = doc["results"]
            self.assertEqual([(r["size"], r["policy"]) for r in res],
                             [(s, p) for s in (1, 3, 10) for p in ("ours", "lru", "opt")])
            ordered = sorted(in_file, key=lambda r: r[0])  # stable, as the reader sorts
            keys = [None if scope == "user" and not r[1] else
                    (r[2], r[3], r[1] if scope == "user" else None) for r in ordered]
            times = [round(r[0] * 1000) for r in ordered]
            for r in res:
                self.assertEqual(set(r), {"policy", "size", "ttl", "hits", "misses", "hitRatio"})
                self.assertEqual(r["ttl"], ttl)
                self.assertEqual(r["hits"] + r["misses"], 400)
                self.assertAlmostEqual(r["hitRatio"], r["hits"] / 400)
                if r["policy"] == "lru":
                    self.assertEqual(r["hits"], lru_model(keys, times, r["size"], ttl * 1000))
            if ttl == 0:  # the optimum bounds every policy; LRU and OPT grow with the size
                for s in (1, 3, 10):
                    h = {r["policy"]: r["hits"] for r in res if r["size"] == s}
                    self.assertGreaterEqual(h["opt"], h["lru"])
                    self.assertGreaterEqual(h["opt"], h["ours"])
                for pol in ("lru", "opt"):
                    hs = [r["hits"] for r in res if r["policy"] == pol]
                    self.assertEqual(hs, sorted(hs))

    def test_sim_bad_line_is_named_and_usage_checked(self):
        trace = self.write("bad.csv", "ts,user,role,method,path\n1,a,Viewer,GET,/x\n"
                                      "soon,a,Viewer,GET,/y\n")
        p = run(["sim", "--trace", trace, "--sizes", "2", "--json", self.path("o.json")])
        self.assertEqual(p.returncode, 1)
        self.assertIn(trace + ":3:", p.stderr)
        self.assertIn("ts must be epoch seconds", p.stderr)
        self.assertFalse(os.path.exists(self.path("o.json")))
        p = run(["sim", "--trace", trace, "--sizes", "2"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--json", p.stderr)
        p = run(["sim", "--trace", trace, "--sizes", "0,3", "--json", self.path("o.json")])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--sizes", p.stderr)

    def test_http_mode_is_not_available_yet(self):
        p = run(["http"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("not available yet", p.stderr)
        self.assertIn("issue 9", p.stderr)

    # ---- grpc ---------------------------------------------------------------------------------

    def check_consistent(self, r):
        """The bookkeeping every run must satisfy."""
        for part in (r, r["total"]):
            self.assertEqual(part["hits"] + part["misses"], part["requests"])
            self.assertEqual(sum(part["byCache"].values()) + part["failed"], part["requests"])
        tot = r["total"]
        self.assertEqual(tot["requests"], r["requests"] + r["warmup"]["requests"])
        self.assertEqual(tot["failed"], 0)
        self.assertEqual(tot["byCache"]["none"], 0)
        plugin = tot["plugin"]
        # the simulator's own count, the plugin's count and the answers that went upstream
        self.assertEqual(tot["upstreamCalls"], plugin["upstreamRequests"])
        self.assertEqual(tot["upstreamCalls"], tot["byCache"]["MISS"] + tot["byCache"]["BYPASS"])
        self.assertEqual(plugin["hits"], tot["byCache"]["HIT"])
        self.assertEqual(plugin["misses"], tot["byCache"]["MISS"])
        self.assertEqual(r["upstreamCalls"] + r["warmup"]["upstreamCalls"], tot["upstreamCalls"])
        self.assertEqual(sum(t["requests"] for t in r["timeline"]), tot["requests"])
        self.assertEqual(sum(t["upstreamCalls"] for t in r["timeline"]), tot["upstreamCalls"])
        lat = r["latencyMs"]
        self.assertTrue(0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"])
        self.assertEqual(sum(r["latencyHistogram"]["counts"]), r["requests"])
        self.assertTrue(r["cleanExit"])
        self.assertGreater(r["pluginRssMiB"]["max"], 1)

    def test_grpc_run_adds_up(self):
        p = run(["grpc", "--quick", "--keys", "300", "--zipf", "1.1", "--latency", "1ms..4ms",
                 "--concurrency", "4", "--json", self.path("r.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("hit ratio", p.stdout)
        doc = self.load("r.json")
        self.assertEqual(doc["schema"], 1)
        self.assertFalse(doc["interrupted"])
        r = doc["runs"][0]
        self.assertEqual((r["label"], r["group"], r["mode"], r["backend"]),
                         ("memory", "grpc", "grpc", "memory"))
        self.assertGreater(r["requests"], 100)
        self.assertEqual(r["errors"], 0)
        self.assertGreater(r["hitRatio"], 0.5)  # 300 keys, a 30 s lifetime, Zipf 1.1
        self.check_consistent(r)

    def test_grpc_upstream_errors_are_answers_not_hits(self):
        p = run(["grpc", "--quick", "--backend", "off", "--keys", "50", "--error-rate", "0.3",
                 "--latency", "1ms", "--concurrency", "2", "--json", self.path("r.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.load("r.json")["runs"][0]
        self.check_consistent(r)
        tot = r["total"]
        self.assertEqual(tot["hits"], 0)
        self.assertEqual(tot["byCache"]["BYPASS"], tot["requests"])
        # every simulated 503 reached a client as an error answer, and nothing else did
        self.assertEqual(tot["errors"], tot["upstreamErrors"])
        self.assertTrue(0.15 < tot["upstreamErrors"] / tot["upstreamCalls"] < 0.45)

    def test_replay_keeps_timing_users_and_queries(self):
        lines = []
        t0 = 1700000000.0
        empty_users = 0
        for i in range(120):
            user = "" if i % 10 == 0 else "u%d" % (i % 3)
            empty_users += user == ""
            method, path = ("QUERY", "/q/k%d?from=1&to=2" % (i % 4)) if i % 5 == 0 \
                else ("GET", "/w/k%d" % (i % 7))
            lines.append("%.3f,%s,Viewer,%s,%s" % (t0 + i * 0.01, user, method, path))
        trace = self.write("r.csv", "\n".join(lines) + "\n")
        start = time.monotonic()
        p = run(["grpc", "--replay", trace, "--speed", "2", "--scope", "user", "--warmup", "0",
                 "--json", self.path("r.json")])
        elapsed = time.monotonic() - start
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.load("r.json")["runs"][0]
        self.assertEqual(r["total"]["requests"], 120)
        self.assertEqual(r["requests"], 120)
        self.assertEqual(r["workload"]["replay"], trace)
        # 1.19 s of recorded traffic at twice the pace: never sooner than 0.59 s
        self.assertGreaterEqual(r["total"]["seconds"], 0.59)
        self.assertGreaterEqual(elapsed, 0.59)
        # a per-user cache without a user is bypassed; queries report their cache status too
        self.assertEqual(r["total"]["byCache"]["BYPASS"], empty_users)
        self.assertEqual(r["total"]["byCache"]["none"], 0)
        self.assertGreater(r["total"]["hits"], 0)
        self.check_consistent(r)

    def test_sim_and_the_plugin_agree_when_everything_fits(self):
        # one request at a time, a cache that holds every key for a day: only first requests
        # miss, in the what-if and in the real plugin alike
        import random
        rnd = random.Random(3)
        lines = ["%.3f,u%d,Viewer,GET,/w/k%d" % (1700000000 + i * 0.002, i % 5,
                                                 int(rnd.paretovariate(1.1)) % 40)
                 for i in range(300)]
        distinct = len({ln.split(",")[4] for ln in lines})
        trace = self.write("f.csv", "\n".join(lines) + "\n")
        p = run(["sim", "--trace", trace, "--sizes", "1000", "--json", self.path("s.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        for r in self.load("s.json")["results"]:
            self.assertEqual(r["hits"], 300 - distinct)
        p = run(["grpc", "--replay", trace, "--speed", "0", "--concurrency", "1", "--ttl", "1d",
                 "--warmup", "0", "--json", self.path("g.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.load("g.json")["runs"][0]
        self.assertEqual(r["requests"], 300)
        self.assertEqual(r["byCache"]["HIT"], 300 - distinct)
        self.assertEqual(r["upstreamCalls"], distinct)
        self.check_consistent(r)

    def test_ctrl_c_gives_a_partial_report(self):
        proc = subprocess.Popen([BENCH, "grpc", "--duration", "60s", "--warmup", "0",
                                 "--latency", "1ms", "--progress", "--json", self.path("p.json"),
                                 "--html", self.path("p.html")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            seen = ""
            while "requests" not in seen and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stderr], [], [], 1)
                if ready:
                    seen += proc.stderr.readline()
            self.assertIn("requests", seen, "no progress line within 30 s")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("(partial)", out)
        doc = self.load("p.json")
        self.assertTrue(doc["interrupted"])
        r = doc["runs"][0]
        self.assertTrue(r["interrupted"])
        self.assertGreater(r["requests"], 0)
        self.assertLess(r["seconds"], 30)
        self.assertTrue(r["cleanExit"])
        self.assertTrue(os.path.getsize(self.path("p.html")) > 100000)

    def test_redis_missing_is_skipped_with_a_note(self):
        p = run(["preset", "backends", "--quick", "--redis-server", "/nonexistent/redis-server",
                 "--json", self.path("b.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = self.load("b.json")
        self.assertEqual([r["label"] for r in doc["runs"]], ["memory", "off"])
        self.assertTrue(any("redis" in n.lower() and "skipped" in n for n in doc["notes"]))
        self.assertIn("skipped", p.stdout)
        for r in doc["runs"]:
            self.check_consistent(r)
        self.assertEqual(doc["runs"][1]["hitRatio"], 0)

    @unittest.skipUnless(os.path.exists("/usr/bin/redis-server"), "redis-server is not installed")
    def test_preset_redis_modes_side_by_side(self):
        p = run(["preset", "redis", "--quick", "--json", self.path("r.json")], timeout=180)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = self.load("r.json")
        labels = [r["label"] for r in doc["runs"]]
        modes = ["plain", "plain, encrypted", "TLS", "cluster"]
        self.assertEqual(labels, ["%s, 1 caller" % m for m in modes] +
                         ["%s, 8 callers" % m for m in modes], doc.get("notes"))
        for r in doc["runs"]:
            self.assertEqual(r["group"], "redis")
            self.check_consistent(r)
            self.assertEqual(r["failed"], 0)
            self.assertGreater(r["hitRatio"], 0.9, r["label"])  # the warm-up fetched every key
            self.assertTrue(r["cleanExit"])
        urls = [r["jsonData"]["cache"]["redisUrl"] for r in doc["runs"]]
        self.assertTrue(urls[2].startswith("rediss://"))
        self.assertTrue(urls[3].startswith("redis-cluster://"))
        self.assertIn("== redis: measured window", p.stdout)

    # ---- the HTML page ------------------------------------------------------------------------

    def test_html_report_in_headless_chromium(self):
        html, shot = self.path("report.html"), os.path.join(BUILD, "bench-screenshots",
                                                           "report.png")
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        if os.path.exists(shot):
            os.unlink(shot)
        p = run(["preset", "all", "--quick", "--json", self.path("all.json"), "--html", html],
                timeout=240)
        self.assertEqual(p.returncode, 0, p.stderr)
        doc = self.load("all.json")
        groups = [r["group"] for r in doc["runs"]]
        self.assertEqual(groups.count("timeAlign"), 4)
        self.assertIn("sim", doc)
        for r in doc["runs"]:
            self.check_consistent(r)
        # timeAlign 0 keys every query by its own millisecond; a coarser step shares entries
        ta = {r["label"]: r["hitRatio"] for r in doc["runs"] if r["group"] == "timeAlign"}
        self.assertLess(ta["timeAlign 0s"], 0.1)
        self.assertGreater(ta["timeAlign 10s"], 0.5)
        with open(html) as f:
            page = f.read()
        self.assertIn("Chart.js v", page)  # the library is inlined, not linked
        self.assertNotIn("<script src", page)
        node = subprocess.run(["node", os.path.join(WEB, "screenshot.mjs"), html, shot],
                              capture_output=True, text=True, timeout=120, cwd=WEB)
        self.assertEqual(node.returncode, 0, node.stderr)
        summary = json.loads(node.stdout.strip().splitlines()[-1])
        ngroups = len(set(groups))
        self.assertEqual(summary["runs"], len(doc["runs"]))
        self.assertTrue(summary["sim"])
        self.assertEqual(summary["charts"], 5 * ngroups + 1)
        self.assertEqual(len(summary["canvases"]), summary["charts"])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(shot), 50000)


if __name__ == "__main__":
    unittest.main()
