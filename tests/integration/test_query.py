"""Issue 6: QueryData through the real executable: table and time series frames decoded by an
independent Arrow implementation (apache-arrow under Node), placeholders as the upstream sees
them, per-query errors, concurrency, authorization and cross-user caching."""
import datetime
import gzip
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from harness import ROOT, Plugin, Upstream, context, pb, settings, wait_for

NODE = shutil.which("node")
DUMP = os.path.join(ROOT, "tests", "node", "dump_frame.mjs")
HAVE_ARROW = os.path.isdir(os.path.join(ROOT, "tests", "node", "node_modules", "apache-arrow"))


def decode(frame_bytes):
    """Decodes one Arrow IPC file with apache-arrow (Node)."""
    with tempfile.NamedTemporaryFile(suffix=".arrow", delete=False) as f:
        f.write(frame_bytes)
        path = f.name
    try:
        out = subprocess.run([NODE, DUMP, path], capture_output=True, timeout=60, text=True)
        if out.returncode != 0:
            raise AssertionError("apache-arrow could not decode the frame: " + out.stderr)
        return json.loads(out.stdout)
    finally:
        os.unlink(path)


def query(ref, model, frm=1700000000000, to=1700003600000, interval=1000, mdp=500):
    return pb.DataQuery(refId=ref, json=json.dumps(dict(model, refId=ref)).encode(),
                        timeRange=pb.TimeRange(fromEpochMS=frm, toEpochMS=to),
                        intervalMS=interval, maxDataPoints=mdp)


def iso_ns(s):
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return str(int(d.timestamp()) * 10**9 + d.microsecond * 1000)


@unittest.skipUnless(NODE and HAVE_ARROW, "needs node and tests/node/node_modules (npm ci)")
class QueryTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream()
        self.plugin = Plugin()

    def tearDown(self):
        self.plugin.stop()
        self.up.close()

    def run_queries(self, ds, queries, headers=None, **user):
        req = pb.QueryDataRequest(pluginContext=context(ds, **user), queries=queries)
        for k, v in (headers or {}).items():
            req.headers[k] = v
        return self.plugin.data.QueryData(req, timeout=30).responses

    def json_route(self, path, doc, status=200):
        self.up.routes[path] = lambda r: (status, {"Content-Type": "application/json"},
                                          json.dumps(doc).encode())

    def test_table_frame(self):
        self.json_route("/items", {"data": {"items": [
            {"name": "a", "value": 1.5, "ok": True, "n": 3},
            {"name": "b", "value": None, "ok": False, "n": -7},
            {"name": "c\u00e9", "ok": True, "n": 9}]}})
        ds = settings(self.up.url)
        r = self.run_queries(ds, [query("A", {"path": "/items", "root": "data.items"})])["A"]
        self.assertEqual(r.status, 200, r.error)
        self.assertEqual(r.error, "")
        self.assertEqual(len(r.frames), 1)
        f = decode(r.frames[0])
        self.assertEqual(f["metadata"]["name"], "A")
        self.assertEqual(f["metadata"]["refId"], "A")
        meta = json.loads(f["metadata"]["meta"])
        self.assertEqual(meta["type"], "table")
        self.assertEqual(meta["custom"]["cache"], "miss")
        names = [x["name"] for x in f["fields"]]
        self.assertEqual(names, ["name", "value", "ok", "n"])
        types = {x["name"]: (x["type"], x["metadata"]["tstype"]) for x in f["fields"]}
        self.assertEqual(types["name"], ("utf8", "string"))
        self.assertEqual(types["value"], ("float64", "number"))
        self.assertEqual(types["ok"], ("bool", "boolean"))
        self.assertEqual(types["n"], ("int64", "number"))
        self.assertEqual(f["rows"], 3)
        self.assertEqual(f["columns"][0], ["a", "b", "c\u00e9"])
        self.assertEqual(f["columns"][1], [1.5, None, None])
        self.assertEqual(f["columns"][2], [True, False, True])
        self.assertEqual(f["columns"][3], ["3", "-7", "9"])

    def test_compressed_answers_are_read(self):
        doc = json.dumps([{"v": 1}, {"v": 2}]).encode()

        def route(r):
            if "gzip" in (r.header("Accept-Encoding") or ""):
                return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, \
                    gzip.compress(doc)
            return 200, {"Content-Type": "application/json"}, doc
        self.up.routes["/gz"] = route
        ds = settings(self.up.url)
        # a client's own Accept-Encoding (forwarded by default) does not reach the upstream:
        # libcurl offers the codings it can undo, and undoes them before the frame is made
        r = self.run_queries(ds, [query("A", {"path": "/gz"})],
                             headers={"http_Accept-Encoding": "x-unknown"})["A"]
        self.assertEqual(r.status, 200, r.error)
        f = decode(r.frames[0])
        self.assertEqual(f["columns"][0], ["1", "2"])
        sent = self.up.last().header("Accept-Encoding") or ""
        self.assertIn("gzip", sent)
        self.assertNotIn("x-unknown", sent)

    def test_timeseries_frame_time_first_and_sorted(self):
        rows = [{"value": 2.0, "ts": "2026-01-01T00:00:10Z"},
                {"value": 1.0, "ts": "2026-01-01T00:00:00Z"},
                {"value": 3.0, "ts": "2026-01-01T00:00:20.5Z"}]
        self.json_route("/series", rows)
        ds = settings(self.up.url)
        r = self.run_queries(ds, [query("T", {"path": "/series", "format": "timeseries"})])["T"]
        self.assertEqual(r.status, 200, r.error)
        f = decode(r.frames[0])
        self.assertEqual(f["fields"][0]["name"], "ts")
        self.assertEqual(f["fields"][0]["type"], "timestamp[ns]")
        self.assertEqual(f["fields"][0]["metadata"]["tstype"], "time")
        self.assertFalse(f["fields"][0]["nullable"])
        self.assertEqual(f["columns"][0], [iso_ns("2026-01-01T00:00:00Z"),
                                           iso_ns("2026-01-01T00:00:10Z"),
                                           iso_ns("2026-01-01T00:00:20.5Z")])
        self.assertEqual(f["columns"][1], [1.0, 2.0, 3.0])
        self.assertEqual(json.loads(f["metadata"]["meta"])["type"], "timeseries-wide")

    def test_explicit_columns_and_array_rows(self):
        self.json_route("/prom", {"items": [{"points": [[1700000001000, "1.5"],
                                                        [1700000000000, "0.5"]]}]})
        ds = settings(self.up.url)
        model = {"path": "/prom", "root": "items[0].points", "format": "timeseries",
                 "columns": [{"selector": "0", "name": "Time", "type": "time",
                              "timeFormat": "unixms"},
                             {"selector": "1", "name": "Value", "type": "number"}]}
        r = self.run_queries(ds, [query("P", model)])["P"]
        self.assertEqual(r.status, 200, r.error)
        f = decode(r.frames[0])
        self.assertEqual([x["name"] for x in f["fields"]], ["Time", "Value"])
        self.assertEqual(f["columns"][0], [str(1700000000000 * 10**6), str(1700000001000 * 10**6)])
        self.assertEqual(f["columns"][1], [0.5, 1.5])
        self.json_route("/secs", [{"t": 1700000000.25, "v": 1}])
        model = {"path": "/secs", "columns": [{"selector": "t", "type": "time", "timeFormat": "unixs"},
                                              {"selector": "v"}]}
        f = decode(self.run_queries(ds, [query("S", model)])["S"].frames[0])
        self.assertEqual(f["columns"][0], [str(1700000000250 * 10**6)])
        self.assertEqual(f["fields"][1]["type"], "int64")

    def test_failing_query_beside_good_one(self):
        self.json_route("/good", [{"a": 1}])
        self.up.routes["/bad"] = lambda r: (500, {}, b"boom")
        self.up.routes["/html"] = lambda r: (200, {"Content-Type": "text/html"}, b"<html>")
        ds = settings(self.up.url)
        res = self.run_queries(ds, [query("G", {"path": "/good"}), query("B", {"path": "/bad"}),
                                    query("H", {"path": "/html"}),
                                    query("W", {"path": 42}),
                                    query("R", {"path": "/good", "root": "nothere"}),
                                    query("F", {"path": "/good", "format": "pie"})])
        self.assertEqual(res["G"].status, 200)
        self.assertEqual(decode(res["G"].frames[0])["columns"][0], ["1"])
        self.assertEqual(res["B"].status, 500)
        self.assertIn("upstream answered 500", res["B"].error)
        self.assertEqual(res["B"].errorSource, "downstream")
        self.assertEqual(len(res["B"].frames), 0)
        self.assertEqual(res["H"].status, 502)
        self.assertIn("not JSON", res["H"].error)
        self.assertEqual(res["W"].status, 400)
        self.assertIn("path must be a string", res["W"].error)
        self.assertEqual(res["W"].errorSource, "plugin")
        self.assertEqual(res["R"].status, 400)
        self.assertIn("nothere", res["R"].error)
        self.assertEqual(res["F"].status, 400)
        self.assertIn("format", res["F"].error)

    def test_placeholders_seen_by_upstream_after_alignment(self):
        self.json_route("/range/1699999990000/1700003610000", [{"x": 1}])
        ds = settings(self.up.url, {"cache": {"timeAlign": "10s"}})
        model = {"method": "POST", "path": "/range/${__from}/${__to}",
                 "params": {"from_s": "${__from:s}", "iso": "${__from:iso}",
                            "step": "${__interval_ms}", "mdp": "${__maxDataPoints}", "n": 5,
                            "tags": ["a", "b"]},
                 "headers": {"Content-Type": "application/json", "Authorization": "evil"},
                 "body": "{\"to\": ${__to}, \"toIso\": \"${__to:iso}\", \"raw\": \"$__from\"}"}
        r = self.run_queries(ds, [query("A", model, frm=1699999995123, to=1700003604999,
                                        interval=15000, mdp=321)])["A"]
        self.assertEqual(r.status, 200, r.error)
        rec = self.up.last()
        self.assertEqual(rec.method, "POST")
        path, qs = rec.path.split("?")
        # the start aligned down, the end up (to 1700003604999 -> 1700003610000)
        self.assertEqual(path, "/range/1699999990000/1700003610000")
        params = dict(p.split("=", 1) for p in qs.split("&") if not p.startswith("tags"))
        self.assertEqual(params["from_s"], "1699999990")
        self.assertEqual(params["iso"], "2023-11-14T22%3A13%3A10.000Z")
        self.assertEqual(params["step"], "15000")
        self.assertEqual(params["mdp"], "321")
        self.assertEqual(params["n"], "5")
        self.assertEqual([p for p in qs.split("&") if p.startswith("tags")], ["tags=a", "tags=b"])
        body = json.loads(rec.body)
        self.assertEqual(body, {"to": 1700003610000, "toIso": "2023-11-14T23:13:30.000Z",
                                "raw": "1699999990000"})
        self.assertEqual(rec.header("Content-Type"), "application/json")
        self.assertIsNone(rec.header("Authorization"), "a query must not set credentials")

    def test_short_and_extreme_ranges(self):
        self.json_route("/r/1700000000000/1700000010000", [{"x": 1}])
        ds = settings(self.up.url, {"cache": {"timeAlign": "10s"}})
        model = {"path": "/r/${__from}/${__to}"}
        # 5 s inside one 10 s step: aligned outwards, not to an empty range
        r = self.run_queries(ds, [query("A", model, frm=1700000003000, to=1700000008000)])["A"]
        self.assertEqual(r.status, 200, r.error)
        self.assertEqual(self.up.last().path, "/r/1700000000000/1700000010000")
        n = self.up.count()
        for frm, to in ((-(1 << 63), 1700000000000), (1700000000000, (1 << 63) - 1)):
            r = self.run_queries(ds, [query("A", dict(model, split="1s"), frm=frm, to=to)])["A"]
            self.assertEqual(r.status, 400)
            self.assertIn("out of bounds", r.error)
        self.assertEqual(self.up.count(), n)

    def test_second_user_served_from_cache(self):
        self.json_route("/expensive", [{"v": 1}])
        ds = settings(self.up.url)
        a = self.run_queries(ds, [query("A", {"path": "/expensive"}, frm=1700000001000,
                                        to=1700003601000)], login="alice")["A"]
        self.assertEqual(a.status, 200, a.error)
        self.assertEqual(json.loads(decode(a.frames[0])["metadata"]["meta"])["custom"]["cache"], "miss")
        # another user, a slightly later "last 1h": same aligned range, served from the cache
        b = self.run_queries(ds, [query("A", {"path": "/expensive"}, frm=1700000004000,
                                        to=1700003604000)], login="bob")["A"]
        self.assertEqual(b.status, 200, b.error)
        self.assertEqual(json.loads(decode(b.frames[0])["metadata"]["meta"])["custom"]["cache"], "hit")
        self.assertEqual(self.up.count("/expensive"), 1)
        # a per-query cacheTtl of 0 bypasses the cache
        c = self.run_queries(ds, [query("A", {"path": "/expensive", "cacheTtl": 0})])["A"]
        self.assertEqual(json.loads(decode(c.frames[0])["metadata"]["meta"])["custom"]["cache"], "bypass")
        self.assertEqual(self.up.count("/expensive"), 2)
        # and an admin's rule "never cache" (ttl 0) is not lifted by a query's cacheTtl
        self.json_route("/never", [{"v": 3}])
        ds = settings(self.up.url, {"cache": {"rules": [{"paths": ["/never"], "ttl": 0}]}})
        for login in ("alice", "bob"):
            d = self.run_queries(ds, [query("A", {"path": "/never", "cacheTtl": "1h"})],
                                 login=login)["A"]
            self.assertEqual(d.status, 200, d.error)
            self.assertEqual(
                json.loads(decode(d.frames[0])["metadata"]["meta"])["custom"]["cache"], "bypass")
        self.assertEqual(self.up.count("/never"), 2)

    def test_denied_query_gets_403_in_its_refid(self):
        self.json_route("/secret", [{"v": 1}])
        self.json_route("/open", [{"v": 2}])
        ds = settings(self.up.url, {"rules": [{"effect": "deny", "paths": ["/secret"],
                                               "roles": ["Viewer"]}]})
        res = self.run_queries(ds, [query("S", {"path": "/secret"}), query("O", {"path": "/open"})],
                               role="Editor")
        self.assertEqual(res["S"].status, 403)
        self.assertIn("denied", res["S"].error)
        self.assertEqual(res["O"].status, 200)
        self.assertEqual(self.up.count("/secret"), 0)

    def test_queries_of_one_request_run_concurrently(self):
        barrier = threading.Barrier(3, timeout=10)

        def meet(r):
            barrier.wait()  # returns only when all three queries are in flight at once
            return 200, {}, b'[{"v": 1}]'
        self.up.routes["/slow"] = meet
        ds = settings(self.up.url, {"cache": {"backend": "off"}})
        res = self.run_queries(ds, [query(r, {"path": "/slow", "params": {"q": r}})
                                    for r in ("A", "B", "C")])
        for r in ("A", "B", "C"):
            self.assertEqual(res[r].status, 200, res[r].error)
        self.assertFalse(barrier.broken)

    def test_alerting_call_without_user(self):
        self.json_route("/alert", [{"v": 1}])
        ds = settings(self.up.url)
        res = self.run_queries(ds, [query("A", {"path": "/alert"})], headers={"FromAlert": "true"},
                               login=None)
        self.assertEqual(res["A"].status, 200, res["A"].error)

    def test_bad_settings_answer_every_query(self):
        ds = settings(self.up.url, {"timeout": "never"})
        res = self.run_queries(ds, [query("A", {"path": "/x"}), query("B", {"path": "/y"})])
        for r in ("A", "B"):
            self.assertEqual(res[r].status, 400)
            self.assertIn("jsonData.timeout", res[r].error)
        self.assertEqual(self.up.count(), 0)

    def test_query_headers_cannot_smuggle_a_request(self):
        self.json_route("/public", [{"v": 1}])
        ds = settings(self.up.url, {"authType": "bearer", "allowedPaths": ["/public"]},
                      {"bearerToken": "tok-smuggle-123"})
        evil = "X-A: 1\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\nX-Z"
        res = self.run_queries(ds, [query("A", {"path": "/public", "headers": {evil: "v"}}),
                                    query("B", {"path": "/public", "headers": {"X-Ok": "a\r\nb"}})])
        for r in ("A", "B"):
            self.assertEqual(res[r].status, 400, res[r].error)
            self.assertIn("header", res[r].error)
        self.assertEqual(self.up.count(), 0)

    def test_one_readers_long_cache_ttl_does_not_hold_for_others(self):
        self.json_route("/ttl", [{"v": 1}])
        ds = settings(self.up.url, {"cache": {"queryTtl": "1s"}})
        long = self.run_queries(ds, [query("A", {"path": "/ttl", "cacheTtl": 3600})],
                                login="mallory")["A"]
        self.assertEqual(long.status, 200, long.error)

        def cache_state():
            r = self.run_queries(ds, [query("A", {"path": "/ttl"})], login="alice")["A"]
            return json.loads(decode(r.frames[0])["metadata"]["meta"])["custom"]["cache"]
        seen = []
        self.assertTrue(wait_for(lambda: seen.append(cache_state()) or seen[-1] == "miss",
                                 timeout=6, interval=0.2), seen)
        self.assertEqual(self.up.count("/ttl"), 2)

    def test_times_beyond_2262_do_not_break_the_plugin(self):
        self.json_route("/far", [{"time": "2300-01-01T00:00:00Z", "v": 1},
                                 {"time": "2023-11-14T22:13:20Z", "v": 2}])
        ds = settings(self.up.url)
        r = self.run_queries(ds, [query("A", {"path": "/far"})])["A"]
        self.assertEqual(r.status, 200, r.error)
        f = decode(r.frames[0])
        self.assertEqual(f["fields"][0]["type"], "utf8")  # not every value is a time
        r = self.run_queries(ds, [query("T", {"path": "/far", "format": "timeseries",
                                              "columns": [{"selector": "time", "type": "time"},
                                                          {"selector": "v"}]})])["T"]
        self.assertEqual(r.status, 400)
        self.assertIn("no valid time", r.error)
        self.assertIsNone(self.plugin.proc.poll())

    def test_upstream_echoing_credentials_is_redacted(self):
        self.up.routes["/echo"] = lambda rq: (500, {}, ("denied: " + (rq.header("Authorization") or "")).encode())
        ds = settings(self.up.url, {"authType": "bearer"}, {"bearerToken": "tok-echo-98765"})
        r = self.run_queries(ds, [query("A", {"path": "/echo"})])["A"]
        self.assertEqual(r.status, 500)
        self.assertIn("[redacted]", r.error)
        self.assertNotIn("tok-echo-98765", r.error)

    def test_malformed_query_json(self):
        ds = settings(self.up.url)
        q = pb.DataQuery(refId="X", json=b"[1,2", timeRange=pb.TimeRange(fromEpochMS=1, toEpochMS=2))
        res = self.run_queries(ds, [q])
        self.assertEqual(res["X"].status, 400)
        self.assertIn("not a JSON object", res["X"].error)


if __name__ == "__main__":
    unittest.main()
