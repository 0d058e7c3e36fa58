"""Issue 12: live data through the real executable with a real gRPC client. A QueryData query
with live: true names a channel in its frame's meta; SubscribeStream checks it for the user
(a status, never a gRPC error); RunStream streams one poller's frames (JSON: the schema once,
then data) whatever the number of subscribers, and with Redis one poll per interval between
processes; cancelling stops polling; an upstream outage becomes a notice; a shutdown ends the
streams."""
import base64
import json
import os
import queue
import threading
import time
import unittest

import grpc

from backends import BackendCase
from harness import Plugin, call_resource, context, pb, wait_for
from test_cache import metrics

INTERVAL = 500  # ms: the shortest poll interval the plugin allows


class Ticker:
    """An upstream route answering one point for the moment it is called (time = its poll's
    `to`, so each poll brings one new row), counting calls; `down` answers 503."""

    def __init__(self, up, path="/live"):
        self.calls = 0
        self.down = False
        self.lock = threading.Lock()
        up.routes[path] = self

    def __call__(self, r):
        import urllib.parse
        q = urllib.parse.parse_qs(urllib.parse.urlparse(r.path).query)
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.down:
            return 503, {"Content-Type": "application/json"}, b'{"error":"maintenance"}'
        to = int(q["to"][0])
        body = {"points": [{"time": to - 1, "v": n}]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def count(self):
        with self.lock:
            return self.calls


def live_model(**kw):
    m = {"path": "/live", "params": {"from": "${__from}", "to": "${__to}"}, "root": "points",
         "format": "timeseries", "live": True, "liveInterval": "%dms" % INTERVAL}
    m.update(kw)
    return m


def channel_path(ch):
    """The channel's path part: what Grafana passes to the plugin ("ds/<uid>/" removed)."""
    parts = ch.split("/", 2)
    assert parts[0] == "ds", ch
    return parts[2]


class Stream:
    """A RunStream call read on a thread of its own: packets (decoded JSON) in a queue."""

    def __init__(self, plugin, ds, path, **user):
        self.packets = queue.Queue()
        self.status = None
        req = pb.RunStreamRequest(pluginContext=context(ds, **user), path=path)
        self.call = plugin.stream.RunStream(req, timeout=60)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for p in self.call:
                self.packets.put(json.loads(p.data))
            self.status = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.status = e.code()
        self.packets.put(None)

    def take(self, n, timeout=15):
        out = []
        deadline = time.time() + timeout
        while len(out) < n:
            p = self.packets.get(timeout=max(0.1, deadline - time.time()))
            if p is None:
                raise AssertionError("the stream ended (%s) after %d packets" % (self.status, len(out)))
            out.append(p)
        return out

    def cancel(self):
        self.call.cancel()
        self.thread.join(timeout=10)


class Base(BackendCase):
    uid_prefix = "st"
    plugin_per_test = True

    def setUp(self):
        super().setUp()
        self.ticker = Ticker(self.up)

    def channel(self, ds, model=None, plugin=None, **user):
        now = int(time.time() * 1000)
        m = dict(model or live_model(), refId="A")
        q = pb.DataQuery(refId="A", json=json.dumps(m).encode(),
                         timeRange=pb.TimeRange(fromEpochMS=now - 300000, toEpochMS=now),
                         intervalMS=1000, maxDataPoints=300)
        res = (plugin or self.p).data.QueryData(
            pb.QueryDataRequest(pluginContext=context(ds, **user), queries=[q]),
            timeout=30).responses["A"]
        self.assertEqual(res.status, 200, res.error)
        from test_query import HAVE_ARROW, NODE, decode
        if not (NODE and HAVE_ARROW):
            self.skipTest("needs node and tests/node/node_modules (npm ci)")
        meta = json.loads(decode(res.frames[0])["metadata"]["meta"])
        self.assertIn("channel", meta)
        return meta["channel"]

    def subscribe(self, ds, path, plugin=None, **user):
        return (plugin or self.p).stream.SubscribeStream(
            pb.SubscribeStreamRequest(pluginContext=context(ds, **user), path=path),
            timeout=20).status

    def gauge(self, what, plugin=None):
        return metrics(plugin or self.p)['cachingproxy_live_active{what="%s"}' % what]


class StreamTests(Base):
    def test_channel_subscribe_and_publish(self):
        ds = self.ds(rules=[{"effect": "deny", "users": ["mallory"]}])
        # a short query: its channel is the query itself
        ch = self.channel(ds, {"path": "/live?from=${__from}&to=${__to}", "live": True,
                               "liveInterval": "%dms" % INTERVAL})
        self.assertTrue(ch.startswith("ds/%s/poll/" % ds.uid), ch)
        self.assertNotIn("/poll/id/", ch)
        self.assertLessEqual(len(ch), 160)
        path = channel_path(ch)
        # the path is the query itself: base64url of the stream query
        q = json.loads(base64.urlsafe_b64decode(path[5:] + "=" * (-len(path[5:]) % 4)))
        self.assertEqual(q["path"], "/live?from=${__from}&to=${__to}")
        self.assertEqual(q["intervalMs"], INTERVAL)
        self.assertEqual(q["rangeMs"], 300000)
        self.assertNotIn("live", q)
        OK = pb.SubscribeStreamResponse.OK
        self.assertEqual(self.subscribe(ds, path), OK)
        self.assertEqual(self.subscribe(ds, path, login=None), OK)  # Grafana's own
        self.assertEqual(self.subscribe(ds, path, login="mallory"),
                         pb.SubscribeStreamResponse.PERMISSION_DENIED)
        for bad in ("poll/%%%", "poll/", "other/x", "poll/id/nope", "poll/" + base64.urlsafe_b64encode(
                b'{"path":"/x"}').decode().rstrip("=")):
            self.assertEqual(self.subscribe(ds, bad), pb.SubscribeStreamResponse.NOT_FOUND, bad)
        # a query outside allowedPaths is a denied path
        ds2 = self.ds(allowedPaths=["/ok/**"])
        self.assertEqual(self.subscribe(ds2, path), pb.SubscribeStreamResponse.PERMISSION_DENIED)
        pub = self.p.stream.PublishStream(pb.PublishStreamRequest(
            pluginContext=context(ds), path=path, data=b"{}"), timeout=10)
        self.assertEqual(pub.status, pb.PublishStreamResponse.PERMISSION_DENIED)
        pub = self.p.stream.PublishStream(pb.PublishStreamRequest(
            pluginContext=context(ds), path="chat", data=b"{}"), timeout=10)
        self.assertEqual(pub.status, pb.PublishStreamResponse.NOT_FOUND)
        # nothing was polled by subscribing
        self.assertEqual(self.ticker.count(), 1)  # the QueryData call itself

    def test_two_subscribers_share_one_poll_per_interval(self):
        ds = self.ds()
        path = channel_path(self.channel(ds))
        before = self.ticker.count()
        a = Stream(self.p, ds, path)
        b = Stream(self.p, ds, path, login="bob", role="Editor")
        self.addCleanup(a.cancel)
        self.addCleanup(b.cancel)
        pa, pb_ = a.take(5), b.take(5)
        polls = self.ticker.count() - before
        # one poller: about one upstream call per interval for both subscribers together
        self.assertLessEqual(polls, 5 + 3)
        self.assertEqual(self.gauge("streams"), 1)
        self.assertEqual(self.gauge("subscribers"), 2)
        # the schema once, then data only; one new row per poll
        self.assertIn("schema", pa[0])
        self.assertIn("data", pa[0])
        self.assertEqual([f["name"] for f in pa[0]["schema"]["fields"]], ["time", "v"])
        for p in pa[1:] + pb_[1:]:
            self.assertNotIn("schema", p)
            self.assertEqual(len(p["data"]["values"][0]), 1)
        times = [p["data"]["values"][0][0] for p in pa]
        self.assertEqual(times, sorted(set(times)))  # never a row twice
        # a frame is counted once its send has started, which can be just after the client
        # already has it: the count catches up within moments
        self.assertTrue(wait_for(
            lambda: metrics(self.p)["cachingproxy_live_frames_total"] >= 10, timeout=5))
        m = metrics(self.p)
        self.assertGreaterEqual(m['cachingproxy_live_polls_total{result="started"}'], 5)

    def test_cancelling_every_subscriber_stops_polling(self):
        ds = self.ds()
        path = channel_path(self.channel(ds))
        a, b = Stream(self.p, ds, path), Stream(self.p, ds, path)
        a.take(2)
        b.take(2)
        a.cancel()
        b.take(1)  # the other subscriber goes on
        b.cancel()
        self.assertEqual(a.status, grpc.StatusCode.CANCELLED)
        self.assertTrue(wait_for(lambda: self.gauge("streams") == 0, timeout=2.5))
        self.assertEqual(self.gauge("subscribers"), 0)
        n = self.ticker.count()
        t = time.time() + 4 * INTERVAL / 1000  # a wait for time: polls would come in it
        wait_for(lambda: time.time() >= t, timeout=5)
        self.assertEqual(self.ticker.count(), n)

    def test_denied_user_cannot_run(self):
        ds = self.ds(rules=[{"effect": "deny", "users": ["mallory"]}])
        path = channel_path(self.channel(ds))
        s = Stream(self.p, ds, path, login="mallory")
        with self.assertRaises(AssertionError):
            s.take(1, timeout=10)
        self.assertEqual(s.status, grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.ticker.count(), 1)

    def test_per_user_answers_make_per_user_channels(self):
        # Grafana runs one stream per channel for all its subscribers: with answers per user a
        # channel is its owner's, and nobody else may subscribe to it or run it
        ds = self.ds({"scope": "user"})
        alice = channel_path(self.channel(ds, login="alice"))
        bob = channel_path(self.channel(ds, login="bob"))
        self.assertNotEqual(alice, bob)
        OK = pb.SubscribeStreamResponse.OK
        self.assertEqual(self.subscribe(ds, alice, login="alice"), OK)
        self.assertEqual(self.subscribe(ds, bob, login="bob"), OK)
        self.assertEqual(self.subscribe(ds, alice, login="bob"),
                         pb.SubscribeStreamResponse.PERMISSION_DENIED)
        s = Stream(self.p, ds, alice, login="bob")
        with self.assertRaises(AssertionError):
            s.take(1, timeout=10)
        self.assertEqual(s.status, grpc.StatusCode.PERMISSION_DENIED)
        # shared answers keep one channel for everyone
        shared = self.ds()
        self.assertEqual(channel_path(self.channel(shared, login="alice")),
                         channel_path(self.channel(shared, login="bob")))

    def test_a_settings_change_restarts_the_stream_with_the_new_settings(self):
        tokens = []
        self.up.routes["/live"] = lambda r: (tokens.append(r.header("Authorization")) or
                                             self.ticker(r))
        old = self.ds(authType="bearer")
        old.decryptedSecureJsonData["bearerToken"] = "OLD-token"
        path = channel_path(self.channel(old))
        s = Stream(self.p, old, path)
        s.take(1)
        new = pb.DataSourceInstanceSettings()
        new.CopyFrom(old)
        new.decryptedSecureJsonData["bearerToken"] = "NEW-token"
        new.lastUpdatedMS = old.lastUpdatedMS + 1000
        self.assertEqual(call_resource(self.p, new, "proxy/x")[0], 200)  # rebuilds the instance
        # the running stream ends (Grafana then runs it again), with the new settings
        self.assertTrue(wait_for(lambda: s.status is not None, timeout=15), "the stream went on")
        self.assertEqual(s.status, grpc.StatusCode.UNAVAILABLE)
        n = len(tokens)
        again = Stream(self.p, new, path)
        again.take(1)
        self.assertTrue(all(t == "Bearer NEW-token" for t in tokens[n:]), tokens[n:])
        again.cancel()

    def test_upstream_outage_is_a_notice_and_the_stream_goes_on(self):
        ds = self.ds()
        path = channel_path(self.channel(ds))
        s = Stream(self.p, ds, path)
        self.addCleanup(s.cancel)
        s.take(2)
        self.ticker.down = True
        notice = None
        for p in s.take(6):
            meta = p.get("schema", {}).get("meta", {})
            if meta.get("notices"):
                notice = meta["notices"][0]
                break
        self.assertIsNotNone(notice)
        self.assertEqual(notice["severity"], "error")
        self.assertIn("503", notice["text"])
        self.ticker.down = False
        # back: the schema again (the notice is gone), then rows
        for p in s.take(8):
            if "schema" in p and not p["schema"].get("meta", {}).get("notices"):
                self.assertEqual(len(p["data"]["values"][0]), 1)
                break
        else:
            self.fail("the stream did not recover")
        self.assertIsNone(s.status)

    def test_long_query_gets_a_short_id_channel(self):
        ds = self.ds()
        ch = self.channel(ds, live_model(headers={"X-Pad": "p" * 300}))
        self.assertIn("/poll/id/", ch)
        self.assertLessEqual(len(ch), 160)
        path = channel_path(ch)
        self.assertEqual(self.subscribe(ds, path), pb.SubscribeStreamResponse.OK)
        s = Stream(self.p, ds, path)
        self.addCleanup(s.cancel)
        self.assertIn("schema", s.take(1)[0])
        self.assertEqual(self.up.last().header("X-Pad"), "p" * 300)

    def test_polls_are_not_in_the_access_log(self):
        import tempfile
        d = tempfile.mkdtemp()
        log = os.path.join(d, "access.csv")
        p = Plugin(env={"CACHINGPROXY_ACCESS_LOG": log})
        self.addCleanup(p.stop)
        ds = self.ds()
        path = channel_path(self.channel(ds, plugin=p))
        self.assertEqual(self.subscribe(ds, path, plugin=p), pb.SubscribeStreamResponse.OK)
        s = Stream(p, ds, path)
        s.take(3)
        s.cancel()
        p.stop()
        with open(log) as f:
            lines = [l for l in f.read().splitlines()[1:] if l]
        # the QueryData that named the channel, and nothing of the subscription or its polls
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(",QUERY,/live?", lines[0])
        self.assertGreaterEqual(self.ticker.count(), 4)

    def test_shutdown_ends_open_streams(self):
        ds = self.ds()
        path = channel_path(self.channel(ds))
        s = Stream(self.p, ds, path)
        s.take(1)
        t0 = time.time()
        from harness import goplugin_pb2
        self.p.controller.Shutdown(goplugin_pb2.Empty(), timeout=2)
        s.thread.join(timeout=5)
        # UNAVAILABLE, not OK: Grafana resubscribes to the next plugin process
        self.assertEqual(s.status, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.p.wait_exit(5), 0)
        self.assertLess(time.time() - t0, 3)


class RedisStreamTests(Base):
    backend = "redis"

    def test_two_processes_poll_once_per_interval_between_them(self):
        ds = self.ds({"queryTtl": "1s"})
        path = channel_path(self.channel(ds))
        other = Plugin()
        self.addCleanup(other.stop)
        before = self.ticker.count()
        a, b = Stream(self.p, ds, path), Stream(other, ds, path)
        self.addCleanup(a.cancel)
        self.addCleanup(b.cancel)
        a.take(6)
        b.take(6)
        polls = self.ticker.count() - before
        # each process polls every interval; the Redis lock and entry leave one upstream call
        # per interval between them (not two)
        self.assertLessEqual(polls, 6 + 3)
        self.assertGreaterEqual(metrics(other)['cachingproxy_live_polls_total{result="started"}'], 6)

    def test_an_id_channel_resolves_in_another_process(self):
        ds = self.ds()
        ch = self.channel(ds, live_model(headers={"X-Pad": "q" * 300}))
        self.assertIn("/poll/id/", ch)
        other = Plugin()
        self.addCleanup(other.stop)
        path = channel_path(ch)
        self.assertTrue(wait_for(lambda: self.subscribe(ds, path, plugin=other) ==
                                 pb.SubscribeStreamResponse.OK, timeout=5))


if __name__ == "__main__":
    unittest.main()
