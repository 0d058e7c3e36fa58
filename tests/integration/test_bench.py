"""Issue 11: cachingproxy-bench end to end. The sim command's interface and figures against an
independent model, the CSV reader's errors, short grpc runs whose report must add up (hits +
misses = requests; upstream calls = the simulator's own count = the plugin's count = MISS +
BYPASS + REVALIDATED answers, or the pieces split queries fetched), a replay with its timing and
users, Ctrl-C giving a partial report, the split and revalidation presets (issues 14 and 13),
the HTML page opened in headless Chromium with a screenshot kept in the build directory, and
the core preset's short form, whose bursts and loops must add up."""
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

    def test_http_runs_add_up(self):
        """The same workloads against the standalone server (issue 9): resource calls with
        X-Cache and queries with their frame's cache status, whose bookkeeping must add up as
        the plugin's does."""
        for kind in ("resource", "query"):
            p = run(["http", "--quick", "--kind", kind, "--keys", "200", "--zipf", "1.1",
                     "--latency", "1ms..4ms", "--concurrency", "4",
                     "--json", self.path(kind + ".json")])
            self.assertEqual(p.returncode, 0, p.stderr)
            r = self.load(kind + ".json")["runs"][0]
            self.assertEqual((r["group"], r["mode"], r["backend"]), ("http", "http", "memory"))
            self.assertGreater(r["requests"], 50)
            self.assertEqual(r["errors"], 0)
            self.assertGreater(r["hitRatio"], 0.3)
            self.check_consistent(r)
        p = run(["http", "--mode", "ftp"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--mode must be grpc or http", p.stderr)

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
        by = tot["byCache"]
        # the simulator's own count, the plugin's count and the answers that went upstream
        self.assertEqual(tot["upstreamCalls"], plugin["upstreamRequests"])
        if r["jsonData"]["cache"].get("querySplit"):
            # a split query makes one upstream call per piece it fetched, as its answer says
            self.assertEqual(tot["upstreamCalls"], plugin["piecesFetched"])
            self.assertEqual(tot["pieces"], {"hit": plugin["piecesHit"],
                                             "fetched": plugin["piecesFetched"]})
        else:
            self.assertEqual(tot["upstreamCalls"], by["MISS"] + by["BYPASS"] + by["REVALIDATED"])
            self.assertEqual(plugin["hits"], by["HIT"])
            self.assertEqual(plugin["misses"], by["MISS"])
            self.assertEqual(tot["pieces"], {"hit": 0, "fetched": 0})
        # a 304 is an answer the plugin counted as revalidated, and nothing else is
        self.assertEqual(plugin["revalidated"], by["REVALIDATED"])
        self.assertEqual(tot["upstreamNotModified"], by["REVALIDATED"])
        self.assertLessEqual(tot["upstreamNotModified"], tot["upstreamConditional"])
        self.assertEqual(r["upstreamCalls"] + r["warmup"]["upstreamCalls"], tot["upstreamCalls"])
        self.assertEqual(r["upstreamBytes"] + r["warmup"]["upstreamBytes"], tot["upstreamBytes"])
        self.assertEqual(sum(t["requests"] for t in r["timeline"]), tot["requests"])
        self.assertEqual(sum(t["upstreamCalls"] for t in r["timeline"]), tot["upstreamCalls"])
        self.assertEqual(sum(t["upstreamBytes"] for t in r["timeline"]), tot["upstreamBytes"])
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

    # ---- preset core (short: bookkeeping, not figures) ------------------------------------------

    def test_core_preset_quick_adds_up(self):
        p = run(["preset", "core", "--quick", "--json", self.path("core.json")], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("core: goals", p.stdout)
        core = self.load("core.json")["core"]
        self.assertEqual(len(core["bursts"]), 3)
        for b in core["bursts"]:
            n = b["calls"]
            # every call answered, each one a distinct miss the upstream saw (how many it held
            # at once depends on the machine's load: test_core asserts the overlap)
            self.assertEqual(b["answered"], n, b)
            self.assertEqual(b["failed"] + b["httpErrors"], 0, b)
            self.assertEqual(b["byCache"]["MISS"], n, b)
            self.assertEqual(b["upstream"]["requests"], n, b)
            self.assertGreater(b["upstream"]["heldAtOnce"], 0, b)
            self.assertGreaterEqual(b["wallOverLatency"], 1.0, b)
            self.assertGreater(b["threadsPeak"], 0, b)
            self.assertGreater(b["rssPeakMiB"], 0, b)
        targets = {(c["group"], c["target"], c["inFlight"]) for c in core["loops"]}
        for t in ("plugin", "bare in-process", "bare child process"):
            self.assertIn(("forwarding", t, 8), targets)
            self.assertIn(("memoryHit", t, 1), targets)
            self.assertIn(("memoryHit", t, 8), targets)
        for c in core["loops"]:
            self.assertGreater(c["calls"], 0, c)
            self.assertEqual(c["failed"] + c["httpErrors"], 0, c)
            self.assertEqual(c["xcacheShare"], 1.0, c)  # BYPASS (cache off) or HIT throughout
        self.assertEqual(len(core["goals"]), 5)
        # without --before the memory hit cannot be judged against the build before
        self.assertIsNone(core["goals"][-1]["met"])
        self.assertTrue(core["plugin"]["cleanExit"])
        r = run(["report", self.path("core.json"), "--html", self.path("core.html")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("core: goals", r.stdout)
        self.assertGreater(os.path.getsize(self.path("core.html")), 100000)
        bad = run(["preset", "core", "--before", "/nonexistent/gpx_cachingproxy"])
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--before", bad.stderr)

    # ---- the simulator as a time-filtering API ----------------------------------------------

    def test_query_step_answers_follow_the_range(self):
        """--query-step: each upstream answer holds the rows of its query's range (the last
        hour, one a minute), so bytes per call stay those of 60 rows whatever the workload."""
        p = run(["grpc", "--quick", "--kind", "query", "--keys", "50", "--query-step", "1m",
                 "--time-align", "0s", "--concurrency", "2", "--json", self.path("q.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        r = self.load("q.json")["runs"][0]
        self.check_consistent(r)
        self.assertEqual(r["upstream"]["queryStepMs"], 60000)
        tot = r["total"]
        self.assertGreater(tot["upstreamCalls"], 100)
        per_call = tot["upstreamBytes"] / tot["upstreamCalls"]
        # 60 rows {"time":1700000000000,"value":123.45,"count":678}: 45 to 55 bytes a row
        self.assertTrue(60 * 40 <= per_call <= 60 * 56, per_call)

    # ---- split and revalidation presets ------------------------------------------------------

    def test_split_preset(self):
        """Issue 14: users refreshing a dashboard over the last 6 hours, split off, 1h and 15m,
        on a virtual clock. Refreshes fetch only their newest piece, so split keeps the calls
        and cuts the bytes; every count agrees with the simulator's and the plugin's."""
        p = run(["preset", "split", "--quick", "--json", self.path("s.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("split: upstream load against \"split off\"", p.stdout)
        doc = self.load("s.json")
        runs = {r["label"]: r for r in doc["runs"]}
        self.assertEqual([r["label"] for r in doc["runs"]], ["split off", "split 1h", "split 15m"])
        panels = 6
        for r in doc["runs"]:
            self.assertEqual(r["group"], "split")
            self.check_consistent(r)
            self.assertEqual(r["errors"], 0)
            self.assertEqual(r["workload"]["clock"], "trace")
            self.assertEqual(r["workload"]["rangeS"], 6 * 3600)
            self.assertEqual(r["upstream"]["queryStepMs"], 60000)
            self.assertEqual(r["compare"]["baseline"], "split off")
            for what in ("Calls", "Bytes"):
                self.assertAlmostEqual(r["compare"]["upstream%sRatio" % what],
                                       r["upstream" + what] / runs["split off"]["upstream" + what],
                                       places=3)
            cache = r["jsonData"]["cache"]
            # the plugin's stable line (its wall clock - splitStableAfter) is an hour boundary
            # 10 minutes before the dashboard's clock starts: 60 to 120 minutes before now
            after_ms = int(cache["splitStableAfter"].rstrip("ms"))
            self.assertTrue(60 * 60000 <= after_ms <= 121 * 60000, cache)
            self.assertEqual(r["total"]["requests"], r["workload"]["traceRequests"])
        off, h1, m15 = runs["split off"], runs["split 1h"], runs["split 15m"]
        self.assertNotIn("querySplit", off["jsonData"]["cache"])
        self.assertEqual(h1["jsonData"]["cache"]["querySplit"], "3600000ms")
        self.assertEqual(m15["jsonData"]["cache"]["querySplit"], "900000ms")
        # unsplit: every answer is one upstream call of the whole 6 hours or a hit
        self.assertEqual(off["total"]["byCache"]["PARTIAL"], 0)
        # 1h: 6 h not on the hour are 7 pieces; after the first load every refresh that is
        # not a plain hit fetched exactly one piece, its newest
        tot = h1["total"]
        self.assertEqual(tot["pieces"]["hit"] + tot["pieces"]["fetched"], 7 * tot["requests"])
        self.assertEqual(h1["byCache"]["MISS"], 0)
        self.assertGreater(h1["byCache"]["PARTIAL"], 0)
        self.assertEqual(h1["pieces"]["fetched"], h1["byCache"]["PARTIAL"])
        self.assertEqual(m15["byCache"]["MISS"], 0)
        # the same refreshes reach the upstream (one newest piece per timeAlign step where the
        # unsplit query fetches its whole range), plus the first load's 6 older pieces a panel
        self.assertLessEqual(abs(tot["upstreamCalls"] - (off["total"]["upstreamCalls"]
                                                         + 6 * panels)),
                             0.1 * off["total"]["upstreamCalls"])
        # ... and a small share of the bytes: the newest piece holds 10 to 20 minutes of rows
        self.assertLess(h1["upstreamBytes"], 0.15 * off["upstreamBytes"])
        self.assertLess(tot["upstreamBytes"], 0.2 * off["total"]["upstreamBytes"])
        self.assertLess(m15["upstreamBytes"], h1["upstreamBytes"])
        self.assertGreater(h1["pieces"]["hit"] / (h1["pieces"]["hit"] + h1["pieces"]["fetched"]),
                           0.9)

    def test_revalidation_preset(self):
        """Issue 13: a short TTL on an upstream with ETags whose content rarely changes. With
        revalidation the expired entries come back as 304s without bodies; without it every
        refresh transfers the body again."""
        p = run(["preset", "revalidation", "--quick", "--json", self.path("r.json")])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("revalidation: upstream load against \"revalidate off\"", p.stdout)
        doc = self.load("r.json")
        self.assertEqual([r["label"] for r in doc["runs"]], ["revalidate on", "revalidate off"])
        on, off = doc["runs"]
        self.assertIs(on["jsonData"]["cache"]["revalidate"], True)
        self.assertIs(off["jsonData"]["cache"]["revalidate"], False)
        for r in doc["runs"]:
            self.assertEqual(r["group"], "revalidation")
            self.check_consistent(r)
            self.assertEqual(r["errors"], 0)
            self.assertTrue(r["upstream"]["validators"])
            self.assertEqual(r["upstream"]["changeEveryS"], 30)
        # without revalidation nothing conditional ever reaches the upstream
        self.assertEqual(off["total"]["upstreamConditional"], 0)
        self.assertEqual(off["total"]["byCache"]["REVALIDATED"], 0)
        self.assertEqual(off["upstreamNotModifiedShare"], 0)
        # with it, most refreshes are 304s, and the bodies that still cross are few
        self.assertGreater(on["upstreamNotModified"], 0)
        self.assertGreater(on["upstreamNotModifiedShare"], 0.5)
        self.assertAlmostEqual(on["upstreamNotModifiedShare"],
                               on["upstreamNotModified"] / on["upstreamCalls"], places=5)
        self.assertLess(on["upstreamBytes"], 0.6 * off["upstreamBytes"])
        self.assertLess(on["compare"]["upstreamBytesRatio"], 0.6)
        self.assertEqual(off["compare"]["upstreamBytesRatio"], 1)
        # revalidation changes what a refresh transfers, not how often one happens
        self.assertLess(on["upstreamCalls"], 1.3 * off["upstreamCalls"])
        self.assertGreater(on["upstreamCalls"], 0.7 * off["upstreamCalls"])

    def test_new_options_are_listed_and_checked(self):
        p = run(["preset", "--help"])
        self.assertEqual(p.returncode, 0)
        for name in ("backends", "policies", "timealign", "split", "revalidation", "all"):
            self.assertIn("  " + name, p.stdout)
        p = run(["preset", "nosuch"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("split, revalidation", p.stderr)
        p = run(["grpc", "--change-every", "500ms"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--change-every must be at least 1s", p.stderr)
        p = run(["grpc", "--query-step", "soon"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--query-step", p.stderr)
        p = run(["grpc", "--help"])
        for opt in ("--query-step", "--validators", "--change-every"):
            self.assertIn(opt, p.stdout)

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
        self.assertEqual(groups.count("split"), 3)
        self.assertEqual(groups.count("revalidation"), 2)
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
        # a group compared with a baseline (split, revalidation) draws its upstream load too
        ncompared = len({r["group"] for r in doc["runs"] if "compare" in r})
        self.assertEqual(ncompared, 2)
        self.assertEqual(summary["runs"], len(doc["runs"]))
        self.assertTrue(summary["sim"])
        self.assertEqual(summary["charts"], 5 * ngroups + 1 + ncompared)
        self.assertEqual(len(summary["canvases"]), summary["charts"])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(shot), 50000)


if __name__ == "__main__":
    unittest.main()
