"""Issue 14: split queries through the real executable. A query's time range is cut into
epoch-aligned pieces, each fetched and cached on its own, and joined into one frame that equals
the unsplit answer row for row; a refreshing dashboard then fetches only its newest piece.
Memory and Redis (two processes sharing one Redis), piece failures, overlapping ranges from
another user, stable pieces kept longer, clear errors."""
import json
import os
import threading
import time
import unittest
import urllib.parse

from backends import BackendCase
from harness import Plugin, call_resource, context, pb, wait_for
from test_cache import metrics
from test_query import HAVE_ARROW, NODE, decode

HOUR = 3600 * 1000
MINUTE = 60 * 1000


class Series:
    """An upstream route answering the points of [from, to) (epoch ms, half-open), one a
    minute, as a time-filtering API does; records the ranges it was asked for. Ranges listed
    in `fail` answer 500; `text_from` makes "v" a string for points at or after it."""

    def __init__(self, up, path="/series"):
        self.asked = []
        self.fail = set()
        self.text_from = None
        self.no_time = False
        self.lock = threading.Lock()
        up.routes[path] = self

    def __call__(self, r):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(r.path).query)
        frm, to = int(q["from"][0]), int(q["to"][0])
        with self.lock:
            self.asked.append((frm, to))
        if (frm, to) in self.fail:
            return 500, {"Content-Type": "application/json"}, b'{"error":"backend down"}'
        first = -(-frm // MINUTE) * MINUTE
        pts = []
        for t in range(first, to, MINUTE):
            v = (t // MINUTE) % 97 + 0.5
            if self.text_from is not None and t >= self.text_from:
                v = "v%d" % t
            p = {"v": v, "host": "h%d" % ((t // MINUTE) % 3)}
            if not self.no_time:
                p["time"] = t
            pts.append(p)
        pts.reverse()  # newest first, as many APIs answer: timeseries sorts them
        return 200, {"Content-Type": "application/json"}, json.dumps({"points": pts}).encode()

    def calls(self):
        with self.lock:
            return list(self.asked)

    def reset(self):
        with self.lock:
            self.asked.clear()


def pieces(frm, to, split=HOUR):
    """The pieces the plugin cuts [frm, to) into."""
    out, p = [], frm - frm % split
    while p < to:
        out.append((p, min(p + split, to)))
        p += split
    return out


def model(split="1h", **kw):
    m = {"path": "/series", "params": {"from": "${__from}", "to": "${__to}"}, "root": "points",
         "format": "timeseries", "columns": [{"selector": "time", "type": "time", "timeFormat": "unixms"},
                                             {"selector": "v", "name": "v"},
                                             {"selector": "host", "name": "host"}]}
    if split is not None:
        m["split"] = split
    m.update(kw)
    return m


def rows(frame):
    """A decoded frame's rows as tuples, in order."""
    return list(zip(*frame["columns"]))


@unittest.skipUnless(NODE and HAVE_ARROW, "needs node and tests/node/node_modules (npm ci)")
class Base(BackendCase):
    uid_prefix = "sp"

    def setUp(self):
        super().setUp()
        self.series = Series(self.up)
        # a range in the past ending at minute 20 of an hour: 30 s later it is still in that
        # hour, so exactly one piece (the newest) changes
        now = int(time.time() * 1000)
        self.to = (now - 20 * MINUTE) // HOUR * HOUR + 20 * MINUTE
        self.frm = self.to - 6 * HOUR

    def query(self, ds, m, frm=None, to=None, plugin=None, ref="A", **user):
        frm = self.frm if frm is None else frm
        to = self.to if to is None else to
        q = pb.DataQuery(refId=ref, json=json.dumps(dict(m, refId=ref)).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=frm, toEpochMS=to),
                         intervalMS=60000, maxDataPoints=1000)
        req = pb.QueryDataRequest(pluginContext=context(ds, **user), queries=[q])
        return (plugin or self.p).data.QueryData(req, timeout=30).responses[ref]

    def frame(self, res):
        self.assertEqual(res.status, 200, res.error)
        self.assertEqual(len(res.frames), 1)
        f = decode(res.frames[0])
        return f, json.loads(f["metadata"]["meta"])["custom"]

    def stats(self, ds, plugin=None):
        code, _, body, _ = call_resource(plugin or self.p, ds, "cache/stats", timeout=20)
        self.assertEqual(code, 200)
        return json.loads(body)


class SplitTests:
    def test_refresh_fetches_only_the_newest_piece_and_equals_unsplit(self):
        ds = self.ds()
        want = pieces(self.frm, self.to)
        self.assertEqual(len(want), 7)  # 6 h from minute 20: 7 pieces
        f1, c1 = self.frame(self.query(ds, model()))
        self.assertEqual(sorted(self.series.calls()), want)
        self.assertEqual(c1["cache"], "miss")
        self.assertEqual(c1["cachePieces"], {"hit": 0, "fetched": 7})

        # the same dashboard 30 s later: only the newest piece is new
        self.series.reset()
        f2, c2 = self.frame(self.query(ds, model(), self.frm + 30000, self.to + 30000))
        newest = (self.to - 20 * MINUTE, self.to + 30000)
        self.assertEqual(self.series.calls(), [newest])
        self.assertEqual(c2["cache"], "partial")
        self.assertEqual(c2["cachePieces"], {"hit": 6, "fetched": 1})

        # row for row what one unsplit call over the same range returns
        self.series.reset()
        u, cu = self.frame(self.query(ds, model(split="off"), self.frm + 30000, self.to + 30000))
        self.assertEqual(self.series.calls(), [(self.frm + 30000, self.to + 30000)])
        self.assertNotIn("cachePieces", cu)
        self.assertEqual([f["name"] for f in f2["fields"]], [f["name"] for f in u["fields"]])
        self.assertEqual([f["type"] for f in f2["fields"]], [f["type"] for f in u["fields"]])
        r2, ru = rows(f2), rows(u)
        self.assertEqual(len(ru), 360)
        self.assertEqual(r2, ru)
        # and the first answer too, against its own unsplit range
        u1, _ = self.frame(self.query(ds, model(split="off")))
        self.assertEqual(rows(f1), rows(u1))
        times = [int(r[0]) for r in r2]
        self.assertEqual(times, sorted(times))

        # the very same range again: every piece from the cache
        self.series.reset()
        _, c3 = self.frame(self.query(ds, model(), self.frm + 30000, self.to + 30000))
        self.assertEqual(self.series.calls(), [])
        self.assertEqual(c3["cache"], "hit")
        self.assertEqual(c3["cachePieces"], {"hit": 7, "fetched": 0})

        st = self.stats(ds)["splitPieces"]
        self.assertEqual(st, {"hit": 6 + 7, "fetched": 7 + 1})
        m = metrics(self.p)
        self.assertGreaterEqual(m['cachingproxy_query_pieces_total{result="hit"}'], 13)
        self.assertGreaterEqual(m['cachingproxy_query_pieces_total{result="fetched"}'], 8)

    def test_overlapping_range_of_another_user_reuses_pieces(self):
        ds = self.ds()
        self.frame(self.query(ds, model(), login="alice"))
        self.series.reset()
        frm, to = self.frm - 2 * HOUR, self.to - 2 * HOUR
        f, c = self.frame(self.query(ds, model(), frm, to, login="bob", role="Editor"))
        # bob's range: two older pieces, and his newest (partial) piece, are new
        fresh = [p for p in pieces(frm, to) if p not in pieces(self.frm, self.to)]
        self.assertEqual(len(fresh), 3)
        self.assertEqual(sorted(self.series.calls()), sorted(fresh))
        self.assertEqual(c["cachePieces"], {"hit": 4, "fetched": 3})
        u, _ = self.frame(self.query(ds, model(split="off"), frm, to, login="bob"))
        self.assertEqual(rows(f), rows(u))

    def test_a_failing_piece_fails_the_query_with_its_range_and_the_others_stay_cached(self):
        ds = self.ds()
        all_pieces = pieces(self.frm, self.to)
        bad = all_pieces[1]
        self.series.fail.add(bad)
        res = self.query(ds, model())
        self.assertEqual(res.status, 500)
        self.assertIn("piece [", res.error)
        self.assertIn(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(bad[0] / 1000)), res.error)
        self.assertIn("upstream answered 500", res.error)
        self.assertEqual(len(res.frames), 0)
        first = self.series.calls()
        self.assertIn(bad, first)
        fetched = sorted(set(first) - {bad})
        self.assertGreaterEqual(len(fetched), 3)  # the others of the first four at least
        # once the upstream is back, the pieces fetched before come from the cache
        self.series.fail.clear()
        self.series.reset()
        f, c = self.frame(self.query(ds, model()))
        self.assertEqual(sorted(self.series.calls()), sorted(set(all_pieces) - set(fetched)))
        self.assertEqual(c["cachePieces"], {"hit": len(fetched), "fetched": 7 - len(fetched)})
        u, _ = self.frame(self.query(ds, model(split="off")))
        self.assertEqual(rows(f), rows(u))

    def test_stable_pieces_live_for_querySplitTtl_and_the_newest_for_queryTtl(self):
        # a threshold half way through an hour, so no piece ends near it
        now = int(time.time() * 1000)
        cut = now // HOUR * HOUR - 150 * MINUTE
        ds = self.ds({"queryTtl": "1s", "querySplitTtl": "1h",
                      "splitStableAfter": "%dms" % (now - cut)})
        to = now // 10000 * 10000  # a relative range ending now (timeAlign 10s)
        frm = to - 6 * HOUR
        self.frame(self.query(ds, model(), frm, to))
        self.assertEqual(len(self.series.calls()), len(pieces(frm, to)))
        # once the query lifetime has passed, the pieces ending after the threshold are
        # fetched again and the stable ones are still hits
        t = time.time() + 1.2
        wait_for(lambda: time.time() >= t, timeout=3)
        self.series.reset()
        _, c = self.frame(self.query(ds, model(), frm, to))
        changing = [p for p in pieces(frm, to) if p[1] > cut]
        self.assertEqual(sorted(self.series.calls()), changing)
        self.assertEqual(c["cachePieces"], {"hit": len(pieces(frm, to)) - len(changing),
                                            "fetched": len(changing)})

    def test_data_source_default_and_alerting(self):
        ds = self.ds({"querySplit": "2h"})
        # no split in the query: the data source's querySplit; an alert has no user
        res = self.query(ds, model(split=None), login=None)
        f, c = self.frame(res)
        self.assertEqual(sorted(self.series.calls()), pieces(self.frm, self.to, 2 * HOUR))
        self.assertEqual(c["cache"], "miss")
        # a query without the time range is not split by the default, and answers
        self.up.routes["/static"] = lambda r: (200, {"Content-Type": "application/json"},
                                               b'[{"time": 1700000000000, "v": 1}]')
        f, c = self.frame(self.query(ds, {"path": "/static"}))
        self.assertEqual(c["cache"], "miss")
        self.assertNotIn("cachePieces", c)
        # "off" in the query wins over the default
        self.series.reset()
        self.frame(self.query(ds, model(split="off")))
        self.assertEqual(self.series.calls(), [(self.frm, self.to)])

    def test_clear_errors(self):
        ds = self.ds()
        # split without the time range in the request
        res = self.query(ds, {"path": "/static", "split": "1h"})
        self.assertEqual(res.status, 400)
        self.assertIn("split needs the time range", res.error)
        # not a duration
        res = self.query(ds, model(split="soon"))
        self.assertEqual(res.status, 400)
        self.assertIn("split must be a duration", res.error)
        # too many pieces
        res = self.query(ds, model(split="1s"))
        self.assertEqual(res.status, 400)
        self.assertIn("at most 1000", res.error)
        self.assertIn("querySplit", res.error)
        # no time column
        self.series.no_time = True
        res = self.query(ds, model(columns=None, format="table"))
        self.assertEqual(res.status, 400, res.error)
        self.assertIn("split needs a time column", res.error)
        self.series.no_time = False
        # frames that cannot be joined: "v" a number in early pieces, text in later ones
        self.series.text_from = self.to - 2 * HOUR
        res = self.query(ds, model(columns=None, format="table", cacheTtl="0s"))
        self.assertEqual(res.status, 400, res.error)
        self.assertIn('column "v"', res.error)
        self.assertIn("split", res.error)
        self.assertEqual(len(res.frames), 0)
        # the plugin keeps serving
        self.series.text_from = None
        self.frame(self.query(ds, model()))


class MemorySplit(Base, SplitTests):
    backend = "memory"


class RedisSplit(Base, SplitTests):
    backend = "redis"

    def test_a_second_process_on_the_same_redis_reuses_every_piece(self):
        ds = self.ds()
        f1, _ = self.frame(self.query(ds, model()))
        self.series.reset()
        other = Plugin()
        self.addCleanup(other.stop)
        f2, c2 = self.frame(self.query(ds, model(), plugin=other))
        self.assertEqual(self.series.calls(), [])
        self.assertEqual(c2["cachePieces"], {"hit": 7, "fetched": 0})
        self.assertEqual(rows(f1), rows(f2))


if __name__ == "__main__":
    unittest.main()
