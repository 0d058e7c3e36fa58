#!/usr/bin/python3
"""The demo behind `make run`: the real plugin, launched the way Grafana launches it, in
front of a small demo upstream with a slow endpoint, showing what the shared cache does
for several users. Uses only Debian's python3 + grpcio and the test harness's launcher."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--delay", type=float, default=0.25, help="demo upstream latency (s)")
    args = ap.parse_args()
    os.environ["CP_BUILD_DIR"] = os.path.abspath(args.build)

    from harness import Plugin, Upstream, call_resource, context, hval, pb, settings

    up = Upstream()

    def items(r):
        time.sleep(args.delay)  # an expensive upstream call
        body = {"items": [{"ts": 1700000000000 + i * 60000, "cpu": 0.5 + i / 10, "host": "web-%d" % (i % 2)}
                          for i in range(6)]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
    up.routes["/api/metrics"] = items
    up.routes["/health"] = lambda r: (200, {}, b"ok")

    plugin = Plugin(env={"CACHINGPROXY_LOG_LEVEL": "warn"})
    print("plugin started by the go-plugin handshake: %s" % plugin.handshake)
    ds = settings(up.url, {"healthPath": "/health", "authType": "bearer",
                           "cache": {"backend": "memory", "resourceTtl": "30s"}},
                  {"bearerToken": "demo-secret-token"}, uid="demo")
    try:
        h = plugin.diag.CheckHealth(pb.CheckHealthRequest(pluginContext=context(ds)), timeout=10)
        print("CheckHealth: %s - %s" % (pb.CheckHealthResponse.HealthStatus.Name(h.status), h.message))

        print("\nresource calls (GET proxy/api/metrics), upstream latency %.0f ms:" % (args.delay * 1000))
        for user in ("alice", "bob", "carol", "alice"):
            t0 = time.time()
            st, hd, body, _ = call_resource(plugin, ds, "proxy/api/metrics", login=user)
            print("  %-6s -> %d  X-Cache %-5s %6.1f ms  %d bytes" % (
                user, st, hval(hd, "X-Cache"), (time.time() - t0) * 1000, len(body)))

        print("\nqueries (timeseries from the same endpoint):")
        q = {"path": "/api/metrics", "root": "items", "format": "timeseries"}
        for user in ("dave", "erin"):
            t0 = time.time()
            req = pb.QueryDataRequest(pluginContext=context(ds, login=user), queries=[pb.DataQuery(
                refId="A", json=json.dumps(q).encode(),
                timeRange=pb.TimeRange(fromEpochMS=1700000000000, toEpochMS=1700003600000))])
            r = plugin.data.QueryData(req, timeout=10).responses["A"]
            print("  %-6s -> status %d, %d Arrow frame(s) of %d bytes, %6.1f ms" % (
                user, r.status, len(r.frames), len(r.frames[0]) if r.frames else 0,
                (time.time() - t0) * 1000))

        st, _, body, _ = call_resource(plugin, ds, "cache/stats", login="admin", role="Admin")
        stats = json.loads(body)
        print("\ncache/stats: %s" % json.dumps(stats))
        print("upstream calls made: %d (for %d client requests)" % (up.count("/api/metrics"), 6))
        m = plugin.diag.CollectMetrics(pb.CollectMetricsRequest(), timeout=10).metrics.prometheus.decode()
        print("\nmetrics excerpt:")
        for line in m.splitlines():
            if line.startswith(("cachingproxy_cache_requests_total{kind=\"resource\"",
                                "cachingproxy_upstream_requests_total{status=\"2xx\"",
                                "process_resident_memory_bytes")):
                print("  " + line)
    finally:
        rc = plugin.stop()
        up.close()
    print("\nplugin stopped (exit %d); the bearer token never left the plugin: %s" % (
        rc, "demo-secret-token" not in plugin.stderr_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
