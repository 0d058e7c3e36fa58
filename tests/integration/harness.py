"""Test harness: the real plugin executable launched the way Grafana launches it, a real gRPC
client over its unix socket, and a real HTTP upstream on loopback that records every request.

Run with Debian's /usr/bin/python3 (it has grpcio). The stubs are generated from proto/ at
import time into the build directory with grpc_tools.
"""
import http.server
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CP_BUILD_DIR", os.path.join(ROOT, "build"))
EXE = os.path.join(BUILD, "gpx_cachingproxy")
STUBS = os.path.join(BUILD, "pystubs")


def _generate_stubs():
    os.makedirs(STUBS, exist_ok=True)
    marker = os.path.join(STUBS, "backend_pb2_grpc.py")
    protos = [os.path.join(ROOT, "proto", p) for p in ("backend.proto", "health.proto", "goplugin.proto")]
    newest = max(os.path.getmtime(p) for p in protos)
    if os.path.exists(marker) and os.path.getmtime(marker) >= newest:
        return
    lock = os.path.join(STUBS, ".lock")
    with open(lock, "w") as lf:
        import fcntl
        fcntl.flock(lf, fcntl.LOCK_EX)
        if os.path.exists(marker) and os.path.getmtime(marker) >= newest:
            return
        from grpc_tools import protoc
        args = ["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + STUBS,
                "--grpc_python_out=" + STUBS] + protos
        if protoc.main(args) != 0:
            raise RuntimeError("stub generation failed")


_generate_stubs()
sys.path.insert(0, STUBS)
import grpc  # noqa: E402
import backend_pb2 as pb  # noqa: E402
import backend_pb2_grpc as pbg  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
import goplugin_pb2  # noqa: E402
import goplugin_pb2_grpc  # noqa: E402

GRPC_OPTIONS = [("grpc.max_receive_message_length", 512 << 20),
                ("grpc.max_send_message_length", 512 << 20)]


# ---- upstream ------------------------------------------------------------------------------

class Recorded:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records requests. Routes map a path
    (without query) to a function(Recorded) -> (status, headers dict, body bytes), or to a
    special action dict: {"delay": s}, {"reset": True}, {"stream": n_bytes} (with "cut": m,
    only m of the n bytes announced are sent, then after "stall" seconds the connection
    closes)."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.routes = {}
        self.default = lambda r: (200, {"Content-Type": "application/json"},
                                  json.dumps({"path": r.path, "n": self.count()}).encode())
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Recorded(self.command, self.path, list(self.headers.items()), body)
                with up.lock:
                    up.requests.append(rec)
                route = up.routes.get(self.path.split("?")[0], up.default)
                if isinstance(route, dict):
                    if route.get("delay"):
                        time.sleep(route["delay"])
                    if route.get("reset"):
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        self.connection.close()
                        self.close_connection = True
                        return
                    if route.get("stream"):
                        total = route["stream"]
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream")
                        self.send_header("Content-Length", str(total))
                        self.end_headers()
                        chunk = bytes(range(256)) * 256
                        sent, until = 0, route.get("cut", total)
                        while sent < until:
                            part = chunk[: min(len(chunk), until - sent)]
                            self.wfile.write(part)
                            sent += len(part)
                        if until < total:  # stalls a moment ("stall" s), then dies
                            self.wfile.flush()
                            time.sleep(route.get("stall", 0))
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                        return
                    route = route.get("then", up.default)
                status, headers, out = route(rec)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path=None):
        with self.lock:
            if path is None:
                return len(self.requests)
            return sum(1 for r in self.requests if r.path.split("?")[0] == path)

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---- plugin --------------------------------------------------------------------------------

def grafana_env(extra=None):
    """The environment go-plugin gives a Grafana plugin: the cookie and the PLUGIN_* variables,
    without PATH, HOME or TMPDIR (Grafana's pluginsSkipHostEnvVars mode)."""
    env = {
        "grafana_plugin_type": "datasource",
        "PLUGIN_MIN_PORT": "10000",
        "PLUGIN_MAX_PORT": "25000",
        "PLUGIN_PROTOCOL_VERSIONS": "2",
        "GF_VERSION": "11.3.0",
        "CACHINGPROXY_LOG_LEVEL": "debug",
    }
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    if extra:
        env.update(extra)
    return env


class Plugin:
    """The executable under test, launched like go-plugin launches it."""

    def __init__(self, env=None, exe=EXE, wrapper=None):
        self.env = grafana_env(env)
        argv = (wrapper or []) + [exe]
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        self._err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_thread.start()
        self.handshake = self._read_handshake(timeout=10)
        parts = self.handshake.split("|")
        assert parts[0] == "1" and parts[1] == "2" and parts[4] == "grpc", self.handshake
        self.network, self.address = parts[2], parts[3]
        target = "unix:" + self.address if self.network == "unix" else self.address
        self.channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.diag = pbg.DiagnosticsStub(self.channel)
        self.resource = pbg.ResourceStub(self.channel)
        self.data = pbg.DataStub(self.channel)
        self.stream = pbg.StreamStub(self.channel)
        self.controller = goplugin_pb2_grpc.GRPCControllerStub(self.channel)

    def _read_handshake(self, timeout):
        deadline = time.time() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no handshake line; stderr: %s" % self.stderr_text())
            r, _, _ = select.select([fd], [], [], left)
            if r:
                ch = os.read(fd, 1)
                if not ch:
                    raise RuntimeError("plugin exited before the handshake; stderr: %s"
                                       % self.stderr_text())
                line += ch
        return line.decode().strip()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode(errors="replace").rstrip("\n"))

    def stderr_text(self):
        return "\n".join(self.stderr_lines)

    def logs(self):
        out = []
        for l in self.stderr_lines:
            try:
                out.append(json.loads(l))
            except ValueError:
                out.append({"@raw": l})
        return out

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Stops it the way go-plugin's Kill does: Shutdown, close, wait up to 2 s."""
        if self.proc.poll() is None:
            try:
                self.controller.Shutdown(goplugin_pb2.Empty(), timeout=2)
            except grpc.RpcError:
                pass
        self.channel.close()
        rc = self.wait_exit(5)
        if rc is None:
            self.proc.kill()
            rc = self.proc.wait()
        self._err_thread.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        # in sanitizer builds, any report of the plugin process fails the test that ran it
        reports = [l for l in self.stderr_lines if "Sanitizer" in l or "runtime error:" in l]
        if reports:
            raise AssertionError("sanitizer report from the plugin:\n" + self.stderr_text())
        return rc


# ---- request builders -------------------------------------------------------------------------

def settings(url, json_data=None, secure=None, uid="ds1", basic_auth=False, basic_user="",
             updated=1000, name="Caching proxy"):
    s = pb.DataSourceInstanceSettings(id=7, uid=uid, name=name, url=url,
                                      basicAuthEnabled=basic_auth, basicAuthUser=basic_user,
                                      jsonData=json.dumps(json_data or {}).encode(),
                                      lastUpdatedMS=updated)
    for k, v in (secure or {}).items():
        s.decryptedSecureJsonData[k] = v
    return s


def context(ds, login="alice", role="Viewer", email=None, org=1):
    pc = pb.PluginContext(orgId=org, pluginId="seed-cachingproxy-datasource",
                          dataSourceInstanceSettings=ds)
    if login is not None:
        pc.user.CopyFrom(pb.User(login=login, name=login.title(), email=email or login + "@example.com",
                                 role=role))
    return pc


def call_resource(plugin, ds, path, method="GET", body=b"", headers=None, url=None, timeout=30,
                  **user):
    """Returns (status, headers dict name->list, body bytes, number of messages)."""
    req = pb.CallResourceRequest(pluginContext=context(ds, **user), path=path, method=method,
                                 url=url if url is not None else path, body=body)
    for k, v in (headers or {}).items():
        req.headers[k].values.extend(v if isinstance(v, list) else [v])
    status, hdrs, out, n = None, {}, b"", 0
    for msg in plugin.resource.CallResource(req, timeout=timeout):
        if n == 0:
            status = msg.code
            hdrs = {k: list(v.values) for k, v in msg.headers.items()}
        out += msg.body
        n += 1
    return status, hdrs, out, n


def hval(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v[0] if v else None
    return None


def free_port():
    """A loopback port nobody listens on now (bound, then released): for servers a test starts,
    or as an upstream that refuses connections."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_text(path):
    with open(path) as f:
        return f.read()


def wait_for(pred, timeout=5.0, interval=0.02):
    """Polls a condition until it holds or the deadline passes (no fixed sleeps)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
