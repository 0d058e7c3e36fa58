"""Issue 3: the launch contract, health, CheckHealth, CollectMetrics, malformed input and the
process lifecycle, against the real executable and a real loopback upstream."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import grpc

from harness import (EXE, Plugin, Upstream, goplugin_pb2, grafana_env, health_pb2, pb,
                     context, read_text, settings, wait_for)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


class LaunchTest(unittest.TestCase):
    def setUp(self):
        self.up = Upstream()
        self.plugins = []

    def tearDown(self):
        for p in self.plugins:
            if p.proc.poll() is None:
                p.stop()
        self.up.close()

    def start(self, **kw):
        p = Plugin(**kw)
        self.plugins.append(p)
        return p

    def check(self, p, ds, **user):
        return p.diag.CheckHealth(pb.CheckHealthRequest(pluginContext=context(ds, **user)),
                                  timeout=30)

    def test_handshake_line_and_socket(self):
        with tempfile.TemporaryDirectory() as d:
            p = self.start(env={"PLUGIN_UNIX_SOCKET_DIR": d})
            self.assertRegex(p.handshake, r"^1\|2\|unix\|[^|]+\|grpc\|?$")
            self.assertEqual(os.path.dirname(p.address), d)
            self.assertRegex(os.path.basename(p.address), r"^plugin\d+$")
            self.assertTrue(os.path.exists(p.address))
            self.assertEqual(p.stop(), 0)
            self.assertFalse(os.path.exists(p.address), "socket left behind")

    def test_without_cookie_refuses_politely(self):
        env = grafana_env()
        del env["grafana_plugin_type"]
        r = subprocess.run([EXE], env=env, capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"This binary is a plugin", r.stderr)

    def test_protocol_version_negotiation(self):
        p = self.start(env={"PLUGIN_PROTOCOL_VERSIONS": "1,2,3"})
        self.assertEqual(p.handshake.split("|")[1], "2")

    def test_tcp_when_socket_path_too_long(self):
        with tempfile.TemporaryDirectory() as d:
            deep = os.path.join(d, "x" * 100)
            os.makedirs(deep)
            p = self.start(env={"PLUGIN_UNIX_SOCKET_DIR": deep, "PLUGIN_MIN_PORT": "20000",
                                "PLUGIN_MAX_PORT": "21000"})
            self.assertEqual(p.network, "tcp")
            host, port = p.address.split(":")
            self.assertEqual(host, "127.0.0.1")
            self.assertTrue(20000 <= int(port) <= 21000)
            r = p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
            self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)

    def test_tcp_when_the_socket_path_cannot_be_in_a_handshake_line(self):
        with tempfile.TemporaryDirectory() as d:
            odd = os.path.join(d, "a|b")
            os.makedirs(odd)
            p = self.start(env={"PLUGIN_UNIX_SOCKET_DIR": odd})
            self.assertEqual(p.network, "tcp")
            r = p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
            self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)

    def test_health_service(self):
        p = self.start()
        for svc in ("", "plugin"):
            r = p.health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
            self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as e:
            p.health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_check_health_ok(self):
        self.up.routes["/status"] = lambda r: (200, {}, b"fine")
        p = self.start()
        ds = settings(self.up.url, {"healthPath": "/status"})
        r = self.check(p, ds)
        self.assertEqual(r.status, pb.CheckHealthResponse.OK, r.message)
        self.assertIn("Upstream OK (200", r.message)
        self.assertEqual(self.up.count("/status"), 1)
        details = json.loads(r.jsonDetails)
        self.assertIsInstance(details, dict)
        self.assertEqual(details["status"], 200)

    def test_check_health_sends_credentials(self):
        p = self.start()
        ds = settings(self.up.url, {"authType": "bearer"}, {"bearerToken": "tok-123456"})
        r = self.check(p, ds)
        self.assertEqual(r.status, pb.CheckHealthResponse.OK, r.message)
        self.assertEqual(self.up.last().header("Authorization"), "Bearer tok-123456")
        self.assertEqual(self.up.last().path, "/")

    def test_check_health_rejected_credentials(self):
        self.up.routes["/"] = lambda r: (401, {}, b"no")
        p = self.start()
        ds = settings(self.up.url, {}, {"basicAuthPassword": "pw-abcdef"}, basic_auth=True,
                      basic_user="bob")
        r = self.check(p, ds)
        self.assertEqual(r.status, pb.CheckHealthResponse.ERROR)
        self.assertIn("401", r.message)
        self.assertIn("check the credentials", r.message)
        self.assertTrue(self.up.last().header("Authorization").startswith("Basic "))

    def test_check_health_unreachable(self):
        p = self.start()
        s = __import__("socket").socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = self.check(p, settings("http://127.0.0.1:%d" % port))
        self.assertEqual(r.status, pb.CheckHealthResponse.ERROR)
        self.assertIn("unreachable", r.message)

    def test_check_health_bad_settings_name_the_key(self):
        p = self.start()
        cases = [
            ({"timeout": "soon"}, "jsonData.timeout"),
            ({"cache": {"backend": "disk"}}, "jsonData.cache.backend"),
            ({"cache": {"resourceTtl": "5 parsecs"}}, "jsonData.cache.resourceTtl"),
            ({"authType": "bearer"}, "bearerToken"),
            ({"rules": [{"effect": "maybe"}]}, "jsonData.rules[0].effect"),
            ({"allowedPaths": ["no-slash"]}, "jsonData.allowedPaths"),
            ({"cache": {"redisUrl": "memcached://h:11211"}}, "jsonData.cache.redisUrl"),
        ]
        for jd, key in cases:
            r = self.check(p, settings(self.up.url, jd, uid="bad"))
            self.assertEqual(r.status, pb.CheckHealthResponse.ERROR, jd)
            self.assertIn(key, r.message)
        r = self.check(p, settings("", {}, uid="nourl"))
        self.assertIn("url", r.message)
        bad = settings(self.up.url, uid="badjson")
        bad.jsonData = b"{not json"
        r = self.check(p, bad)
        self.assertIn("jsonData", r.message)
        self.assertEqual(self.up.count(), 0, "bad settings must not reach the upstream")
        # and it keeps serving good settings
        r = self.check(p, settings(self.up.url))
        self.assertEqual(r.status, pb.CheckHealthResponse.OK, r.message)

    def test_settings_change_rebuilds_instance(self):
        other = Upstream()
        try:
            p = self.start()
            r = self.check(p, settings(self.up.url, updated=1))
            self.assertEqual(r.status, pb.CheckHealthResponse.OK)
            r = self.check(p, settings(other.url, updated=2))
            self.assertEqual(r.status, pb.CheckHealthResponse.OK)
            self.assertEqual(other.count(), 1)
            self.assertEqual(self.up.count(), 1)
        finally:
            other.close()

    def test_collect_metrics(self):
        p = self.start()
        self.check(p, settings(self.up.url))
        r = p.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10)
        text = r.metrics.prometheus.decode()
        for fam in ("cachingproxy_cache_requests_total", "cachingproxy_cache_entries",
                    "cachingproxy_cache_bytes", "cachingproxy_cache_evictions_total",
                    "cachingproxy_coalesced_requests_total",
                    "cachingproxy_upstream_requests_total",
                    "cachingproxy_upstream_duration_seconds",
                    "cachingproxy_authz_decisions_total", "cachingproxy_redis_errors_total",
                    "process_resident_memory_bytes", "process_cpu_seconds_total",
                    "process_open_fds", "process_start_time_seconds"):
            self.assertIn("# HELP %s " % fam, text)
            self.assertRegex(text, r"# TYPE %s (counter|gauge|histogram)\n" % fam)
        rss = int(re.search(r"^process_resident_memory_bytes (\d+)$", text, re.M).group(1))
        self.assertGreater(rss, 1 << 20)
        self.assertRegex(text, r'cachingproxy_upstream_requests_total\{status="2xx"\} 1\n')
        self.assertRegex(text, r"cachingproxy_upstream_duration_seconds_count 1\n")
        self.assertRegex(text, r'cachingproxy_upstream_duration_seconds_bucket\{le="\+Inf"\} 1\n')
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? [0-9.e+-]+$')

    def test_malformed_messages_get_invalid_argument(self):
        p = self.start()
        for method in ("/pluginv2.Diagnostics/CheckHealth", "/pluginv2.Resource/CallResource",
                       "/grpc.health.v1.Health/Check", "/pluginv2.Diagnostics/CollectMetrics"):
            call = p.channel.unary_unary(method, request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
            with self.assertRaises(grpc.RpcError) as e:
                if method.endswith("CallResource"):
                    stream = p.channel.unary_stream(method, request_serializer=lambda b: b,
                                                    response_deserializer=lambda b: b)
                    list(stream(b"\xff\xff\xff\xff\x0f", timeout=5))
                else:
                    call(b"\xff\xff\xff\xff\x0f", timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, method)
        call = p.channel.unary_unary("/pluginv2.Nope/Nothing", request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as e:
            call(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        r = p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)

    def test_shutdown_exits_promptly(self):
        p = self.start()
        t0 = time.time()
        p.controller.Shutdown(goplugin_pb2.Empty(), timeout=5)
        rc = p.wait_exit(2.0)
        self.assertEqual(rc, 0, "did not exit within 2 s of Shutdown")
        self.assertLess(time.time() - t0, 2.0)
        self.assertFalse(os.path.exists(p.address))

    def test_stdio_and_broker_streams_held_open_until_shutdown(self):
        # go-plugin's host opens these two streams right after connecting; they must stay
        # open (no messages, no error) and end cleanly when the plugin stops
        p = self.start()
        stdio = p.channel.unary_stream("/plugin.GRPCStdio/StreamStdio",
                                       request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)(b"", timeout=30)
        broker = p.channel.stream_stream("/plugin.GRPCBroker/StartStream",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)(iter(()), timeout=30)
        r = p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)
        self.assertTrue(stdio.is_active() and broker.is_active())
        t0 = time.time()
        p.controller.Shutdown(goplugin_pb2.Empty(), timeout=5)
        self.assertEqual(list(stdio), [])
        self.assertEqual(stdio.code(), grpc.StatusCode.OK)
        self.assertEqual(p.wait_exit(2.0), 0)
        self.assertLess(time.time() - t0, 2.0)

    def test_sigint_ignored_sigterm_stops(self):
        p = self.start()
        p.proc.send_signal(signal.SIGINT)
        r = p.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
        self.assertEqual(r.status, health_pb2.HealthCheckResponse.SERVING)
        self.assertIsNone(p.proc.poll())
        p.proc.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(3), 0)

    def test_exits_when_parent_dies(self):
        # the plugin's parent is a shell that we kill; the plugin must notice and leave
        p = self.start(wrapper=["/bin/sh", "-c", '"$0" & wait'])
        shell = p.proc.pid
        children = wait_for(lambda: read_text("/proc/%d/task/%d/children" % (shell, shell)).split())
        self.assertTrue(children)
        child = int(children[0])
        os.kill(shell, signal.SIGKILL)
        p.proc.wait(timeout=5)
        p.channel.close()

        def gone():
            try:
                with open("/proc/%d/stat" % child) as f:
                    return f.read().split()[2] == "Z"
            except FileNotFoundError:
                return True
        self.assertTrue(wait_for(gone, timeout=5), "plugin outlived its parent")

    def test_logs_are_hclog_json_lines(self):
        self.up.routes["/"] = lambda r: (500, {}, b"x")
        p = self.start()
        self.check(p, settings(self.up.url))
        p.stop()
        self.assertTrue(p.stderr_lines)
        for line in p.stderr_lines:
            obj = json.loads(line)
            self.assertIn(obj["@level"], ("trace", "debug", "info", "warn", "error"))
            self.assertIsInstance(obj["@message"], str)
            self.assertRegex(obj["@timestamp"], TS)
        msgs = [json.loads(l)["@message"] for l in p.stderr_lines]
        self.assertIn("plugin started", msgs)

    def test_secrets_never_logged(self):
        secret = "topsecret-bearer-98765"
        self.up.routes["/"] = lambda r: (403, {}, secret.encode())
        p = self.start()
        r = self.check(p, settings(self.up.url, {"authType": "bearer"}, {"bearerToken": secret}))
        self.assertEqual(r.status, pb.CheckHealthResponse.ERROR)
        self.assertNotIn(secret, r.message)
        p.stop()
        self.assertNotIn(secret, p.stderr_text())


if __name__ == "__main__":
    unittest.main()
