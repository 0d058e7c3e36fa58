#!/usr/bin/python3
"""The demo behind `make run`: the standalone server (`gpx_cachingproxy serve`) with
config/standalone.json in front of a small, slow demo JSON API that this script serves, until
Ctrl-C. Prints two requests to paste: the first is a MISS that waits for the upstream, the
second a HIT from the shared memory cache. Needs only python3 and the built executable."""
import argparse
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "demo-upstream-token"  # what the demo upstream expects; the server injects it


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def demo_upstream(port, delay):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                self.reply(401, {"error": "missing or wrong bearer token"})
                return
            path = self.path.split("?")[0]
            if path == "/health":
                self.reply(200, {"ok": True})
                return
            if path == "/api/metrics":
                print("  upstream: GET %s (%.0f ms: an expensive call)" % (self.path, delay * 1000),
                      flush=True)
                time.sleep(delay)
                now = int(time.time()) * 1000
                self.reply(200, {"items": [{"ts": now - (5 - i) * 60000, "cpu": round(0.4 + i / 20, 2),
                                            "host": "web-%d" % (i % 2)} for i in range(6)]})
                return
            self.reply(404, {"error": "no such path", "path": path})

        do_HEAD = do_GET

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--config", default=os.path.join(ROOT, "config", "standalone.json"))
    ap.add_argument("--delay", type=float, default=0.3, help="demo upstream latency (s)")
    args = ap.parse_args()
    exe = os.path.join(args.build, "gpx_cachingproxy")

    with open(args.config) as f:
        cfg = json.load(f)
    config = args.config
    listen_port = int(cfg["listen"].rsplit(":", 1)[1])
    up_port = int(cfg["datasources"][0]["url"].rsplit(":", 1)[1])
    if not port_free(listen_port) or not port_free(up_port):
        # the usual ports are taken: the same configuration on free ones
        listen_port, up_port = free_port(), free_port()
        cfg["listen"] = "127.0.0.1:%d" % listen_port
        cfg["datasources"][0]["url"] = "http://127.0.0.1:%d" % up_port
        config = os.path.join(args.build, "standalone-demo.json")
        with open(config, "w") as f:
            json.dump(cfg, f, indent=2)
        print("ports 8080/8081 are taken: using %s (listen %s)" % (config, cfg["listen"]))

    upstream = demo_upstream(up_port, args.delay)
    env = dict(os.environ, DEMO_UPSTREAM_TOKEN=TOKEN,
               CACHINGPROXY_LOG_LEVEL=os.environ.get("CACHINGPROXY_LOG_LEVEL", "warn"))
    # a session of its own: Ctrl-C reaches this script only, which stops the server once
    server = subprocess.Popen([exe, "serve", "--config", config], env=env,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    base = "http://127.0.0.1:%d" % listen_port
    deadline = time.time() + 10
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            print("the standalone server did not start (exit %s)" % server.poll(), file=sys.stderr)
            upstream.shutdown()
            return 1
        time.sleep(0.05)

    key = cfg["apiKeys"][0]["key"]
    url = base + "/api/datasources/uid/demo/resources/proxy/api/metrics"
    print("""
cachingproxy standalone server on %(base)s, config %(config)s
in front of a demo upstream on http://127.0.0.1:%(up)d (slow: %(ms).0f ms per call; it wants a
bearer token that only the server knows, from ${DEMO_UPSTREAM_TOKEN} in the config).

Paste these. The first is a MISS (it waits for the upstream), the second a HIT from the cache:

  curl -i -H 'Authorization: Bearer %(key)s' %(url)s
  curl -i -H 'Authorization: Bearer %(key)s' %(url)s

Also: the same as bob (shared cache: HIT),
  curl -i -H 'Authorization: Bearer %(bob)s' %(url)s
a query answered as Grafana's data frame JSON,
  curl -s -H 'Authorization: Bearer %(key)s' -H 'Content-Type: application/json' %(base)s/api/ds/query \\
    -d '{"from":"now-1h","to":"now","queries":[{"refId":"A","datasource":{"uid":"demo"},"path":"/api/metrics","root":"items"}]}'
and %(base)s/metrics, %(base)s/healthz. Ctrl-C stops.
""" % {"base": base, "config": os.path.relpath(config, ROOT), "up": up_port, "ms": args.delay * 1000,
       "key": key, "bob": cfg["apiKeys"][1]["key"], "url": url}, flush=True)

    def stop(signum, frame):
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    rc = server.wait()
    upstream.shutdown()
    print("stopped (server exit %d)" % rc)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
