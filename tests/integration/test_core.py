"""The event-driven core through the real executable: upstream transfers overlap on the event
loop whatever their number (the plugin's thread count does not grow), a cancelled call closes
its upstream connection, a client that stops reading pauses the upstream transfer, and
maxConnections caps the connections the upstream sees. The upstreams here count what they see
themselves (requests in flight at once, open connections, bytes written), never a clock."""
import http.server
import os
import socket
import threading
import time
import unittest

import grpc

from harness import Plugin, call_resource, context, pb, settings, wait_for

_uid = [0]


def new_uid():
    _uid[0] += 1
    return "core%d" % _uid[0]


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def gauge(plugin, name):
    m = plugin.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10)
    for line in m.metrics.prometheus.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            k, _, v = line.rpartition(" ")
            if k == name or k.startswith(name + "{"):
                return k, float(v)
    return None


def metric(plugin, series):
    m = plugin.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10)
    for line in m.metrics.prometheus.decode().splitlines():
        k, _, v = line.rpartition(" ")
        if k == series:
            return float(v)
    raise AssertionError("no series " + series)


class HeldUpstream:
    """HTTP/1.1 on loopback that holds every request until released (or hold seconds pass),
    counting requests in flight at once and connections open at once."""

    def __init__(self, hold=30.0, body=b"ok"):
        self.lock = threading.Lock()
        self.inflight = self.peak = self.seen = 0
        self.conns = self.peak_conns = 0
        self.release = threading.Event()
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with up.lock:
                    up.conns += 1
                    up.peak_conns = max(up.peak_conns, up.conns)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with up.lock:
                        up.conns -= 1

            def do_GET(self):
                with up.lock:
                    up.inflight += 1
                    up.seen += 1
                    up.peak = max(up.peak, up.inflight)
                up.release.wait(hold)
                with up.lock:
                    up.inflight -= 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 2048

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class WatchedSocketServer:
    """A raw server: answers a head, then either streams a body as fast as the peer takes it
    (counting the bytes written), or waits; records when each peer closed its side."""

    def __init__(self, stream_bytes=0, chunk_delay=0.0):
        self.stream_bytes = stream_bytes
        self.chunk_delay = chunk_delay
        self.written = 0
        self.accepted = 0
        self.closed_at = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            if self.stream_bytes:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % self.stream_bytes)
                chunk = b"x" * 65536
                while self.written < self.stream_bytes and not self.stop.is_set():
                    conn.sendall(chunk)
                    with self.lock:
                        self.written += len(chunk)
                    if self.chunk_delay:
                        time.sleep(self.chunk_delay)
            else:
                while not self.stop.is_set():  # wait for the peer to go
                    conn.settimeout(0.05)
                    try:
                        if conn.recv(1) == b"":
                            break
                    except socket.timeout:
                        continue
            with self.lock:
                self.closed_at.append(time.time())
        except OSError:
            with self.lock:
                self.closed_at.append(time.time())
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def levels_off(up, pause):
    """A check for wait_for: what the upstream has written did not grow for pause seconds."""
    def check():
        a = up.written
        time.sleep(pause)
        return up.written == a
    return check


class CoreTest(unittest.TestCase):
    def setUp(self):
        self.p = Plugin()
        self.addCleanup(self.p.stop)

    def test_512_distinct_slow_misses_overlap(self):
        up = HeldUpstream(hold=30)
        self.addCleanup(up.close)
        ds = settings(up.url, {"cache": {"backend": "off"}, "timeout": 60}, uid=new_uid())
        n = 512
        results = [None] * n
        base_threads = threads_of(self.p.proc.pid)

        def one(i):
            try:
                results[i] = call_resource(self.p, ds, "proxy/item/%d" % i, timeout=90)[0]
            except grpc.RpcError as e:
                results[i] = e
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        # every call reaches the upstream before any is answered: they overlap
        reached = wait_for(lambda: up.inflight >= 500, timeout=60, interval=0.05)
        peak_threads = threads_of(self.p.proc.pid)
        up.release.set()
        for t in ts:
            t.join(120)
        self.assertTrue(reached, "only %d upstream requests in flight at once" % up.peak)
        self.assertGreaterEqual(up.peak, 500)
        self.assertEqual(results.count(200), n, [r for r in results if r != 200][:3])
        # the plugin's threads do not grow with the calls in flight
        self.assertLessEqual(peak_threads, 24, (base_threads, peak_threads))
        self.assertLessEqual(peak_threads, base_threads + 4, (base_threads, peak_threads))

    def watched(self, jd, path="proxy/wait", **server):
        """A WatchedSocketServer (server: its options; by default it answers nothing), a data
        source on it with jsonData jd, and a GET of path."""
        up = WatchedSocketServer(**server)
        self.addCleanup(up.close)
        ds = settings(up.url, jd, uid=new_uid())
        req = pb.CallResourceRequest(pluginContext=context(ds), path=path, method="GET", url=path)
        return up, req

    def test_cancelled_call_closes_its_upstream_connection(self):
        up, req = self.watched({"cache": {"backend": "off"}, "timeout": 60})
        call = self.p.resource.CallResource(req, timeout=60)
        self.assertTrue(wait_for(lambda: up.accepted == 1, timeout=10))
        t_cancel = time.time()
        call.cancel()
        self.assertTrue(wait_for(lambda: len(up.closed_at) == 1, timeout=5),
                        "the upstream connection stayed open after the call was cancelled")
        self.assertLess(up.closed_at[0] - t_cancel, 2.0)
        # and a deadline that passes does the same
        call = self.p.resource.CallResource(req, timeout=0.5)
        with self.assertRaises(grpc.RpcError) as cm:
            list(call)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertTrue(wait_for(lambda: len(up.closed_at) == 2, timeout=5))
        self.assertEqual(up.accepted, 2)

    def test_cancelled_leader_goes_on_for_its_waiters_then_stops(self):
        up, req = self.watched({"cache": {"backend": "memory"}, "timeout": 60})
        leader = self.p.resource.CallResource(req, timeout=60)
        self.assertTrue(wait_for(lambda: up.accepted == 1, timeout=10))
        waiters = [self.p.resource.CallResource(req, timeout=60) for _ in range(3)]
        self.assertTrue(wait_for(
            lambda: metric(self.p, "cachingproxy_coalesced_waiting") == 3, timeout=10))
        leader.cancel()
        # the waiters still want the answer: the transfer goes on (the leader's cancel is
        # handled within milliseconds; a close would show well inside this time)
        self.assertFalse(wait_for(lambda: len(up.closed_at) > 0, timeout=0.5))
        self.assertEqual(metric(self.p, "cachingproxy_coalesced_waiting"), 3)
        for w in waiters:
            w.cancel()
        t_cancel = time.time()
        self.assertTrue(wait_for(lambda: len(up.closed_at) == 1, timeout=5),
                        "the upstream connection stayed open after every caller left")
        self.assertLess(up.closed_at[0] - t_cancel, 1.0)
        self.assertEqual(up.accepted, 1)
        self.assertTrue(wait_for(
            lambda: metric(self.p, "cachingproxy_coalesced_waiting") == 0, timeout=5))

    def test_slow_leader_does_not_hold_back_its_waiters(self):
        total = 8 << 20  # 32 gRPC messages; streamed by the upstream over about 1.3 s
        up, req = self.watched({"cache": {"backend": "memory", "maxEntryBytes": 4 * total},
                                "timeout": 6}, "proxy/big", stream_bytes=total, chunk_delay=0.01)
        leader = self.p.resource.CallResource(req, timeout=30)
        first = next(leader)  # then its client reads nothing for a while
        self.assertEqual(first.code, 200)
        res = [None] * 3

        def waiter(i):
            try:
                got, t0 = 0, time.time()
                for msg in self.p.resource.CallResource(req, timeout=30):
                    got += len(msg.body)
                res[i] = (got, time.time() - t0)
            except grpc.RpcError as e:
                res[i] = e
        ts = [threading.Thread(target=waiter, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        # every waiter had the whole answer, long before the 6 s timeout the stalled leader
        # would have run into
        for r in res:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], total)
            self.assertLess(r[1], 5.0)
        self.assertEqual(up.accepted, 1)
        # and the leader's client, reading again, gets the rest of the same answer
        got = len(first.body)
        for msg in leader:
            got += len(msg.body)
        self.assertEqual(got, total)

    def test_slow_reader_of_an_answer_too_large_to_keep_gets_all_of_it(self):
        total = 192 << 20  # more than every buffer on the way
        # kept while it fits in maxEntryBytes (the slow reader falls behind the transfer),
        # then no longer: the transfer waits for the reader again, nothing lost or doubled
        up, req = self.watched({"cache": {"backend": "memory", "maxEntryBytes": 1 << 20},
                                "timeout": 60, "maxResponseBytes": 2 * total}, "proxy/big",
                               stream_bytes=total)
        call = self.p.resource.CallResource(req, timeout=60)
        first = next(call)
        self.assertEqual(first.code, 200)

        self.assertTrue(wait_for(levels_off(up, 0.2), timeout=20, interval=0.01))
        self.assertLess(up.written, 96 << 20, "the transfer did not wait for the reader")
        got = len(first.body)
        for msg in call:
            got += len(msg.body)
        self.assertEqual(got, total)

    def test_paused_reader_pauses_the_upstream(self):
        total = 1 << 30  # 1 GiB: far more than any buffer on the way
        up, req = self.watched({"cache": {"backend": "off"}, "timeout": 120,
                                "maxResponseBytes": 2 * total}, "proxy/big", stream_bytes=total)
        call = self.p.resource.CallResource(req, timeout=120)
        first = next(call)
        self.assertEqual(first.code, 200)
        # the client reads nothing more: what the upstream can write levels off
        self.assertTrue(wait_for(levels_off(up, 0.3), timeout=20, interval=0.01))
        stalled_at = up.written
        self.assertLess(stalled_at, 96 << 20, "the plugin kept reading with nobody reading it")
        # reading again resumes the transfer
        got = len(first.body)
        for msg in call:
            got += len(msg.body)
            if got > stalled_at + (64 << 20):
                break
        self.assertGreater(up.written, stalled_at)
        call.cancel()

    def test_max_connections_caps_the_upstream(self):
        up = HeldUpstream(hold=30)
        self.addCleanup(up.close)
        ds = settings(up.url, {"cache": {"backend": "off"}, "timeout": 60, "maxConnections": 4},
                      uid=new_uid())
        n = 40
        results = [None] * n

        def one(i):
            try:
                results[i] = call_resource(self.p, ds, "proxy/c/%d" % i, timeout=90)[0]
            except grpc.RpcError as e:
                results[i] = e
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        self.assertTrue(wait_for(lambda: up.inflight == 4, timeout=20))
        # the other calls wait in the plugin's queue, and the gauge says so
        self.assertTrue(wait_for(lambda: metric(self.p, 'cachingproxy_upstream_inflight'
                                                         '{state="queued"}') >= n - 4,
                                 timeout=20))
        up.release.set()
        for t in ts:
            t.join(120)
        self.assertEqual(results.count(200), n, [r for r in results if r != 200][:3])
        self.assertEqual(up.seen, n)
        self.assertLessEqual(up.peak_conns, 4)
        self.assertLessEqual(up.peak, 4)


if __name__ == "__main__":
    unittest.main()
