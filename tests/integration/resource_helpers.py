"""Helpers for test_resource.py: an HTTPS variant of harness.Upstream (same recording handler,
optionally requiring a client certificate), a raw socket server for answers the harness
handler cannot produce (chunked framing, hop-by-hop headers, repeated headers), and small
utilities."""
import http.server
import json
import socket
import ssl
import threading
import time

from harness import Upstream, free_port

closed_port = free_port




def stream_bytes(total):
    """The exact body harness.Upstream's {"stream": total} action sends."""
    chunk = bytes(range(256)) * 256
    reps, rest = divmod(total, len(chunk))
    return chunk * reps + chunk[:rest]


def error_json(body):
    """Parses a plugin error body {"error": str, "status": int}."""
    j = json.loads(body)
    assert isinstance(j, dict) and isinstance(j.get("error"), str) and \
        isinstance(j.get("status"), int), body
    return j


class TLSUpstream:
    """harness.Upstream served over TLS. The recording handler of a plain Upstream is reused
    (so routes, requests and count() behave the same); the TLS handshake runs in the
    per-connection thread. With client_ca the server requires a client certificate signed by
    it; the subjects of accepted client certificates are recorded in peer_cns, failed
    handshakes in handshake_errors."""

    def __init__(self, certfile, keyfile, client_ca=None):
        self.up = Upstream()
        self.up.server.shutdown()
        self.up.server.server_close()
        handler = self.up.server.RequestHandlerClass
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        self.peer_cns = []
        self.handshake_errors = []
        outer = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def finish_request(self, request, client_address):
                request.settimeout(10)
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    outer.handshake_errors.append(str(e))
                    return
                try:
                    cert = tls.getpeercert()
                    if cert:
                        for rdn in cert.get("subject", ()):
                            for k, v in rdn:
                                if k == "commonName":
                                    outer.peer_cns.append(v)
                    tls.settimeout(None)
                    self.RequestHandlerClass(tls, client_address, self)
                finally:
                    try:
                        tls.close()
                    except OSError:
                        pass

        self.server = Server(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.routes = self.up.routes
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path=None):
        return self.up.count(path)

    def last(self):
        return self.up.last()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RawServer:
    """A loopback server that reads one HTTP/1.1 request per connection (headers and a
    Content-Length body), records it, writes `response` and closes. `response` is bytes, a
    function(raw request) -> bytes, or a list of parts: bytes are written, a number is a pause
    in seconds (for answers that stall half-way)."""

    def __init__(self, response):
        self.response = response
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.closed = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            head, _, body = data.partition(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v.strip())
            while len(body) < n:
                part = conn.recv(65536)
                if not part:
                    break
                body += part
            raw = head + b"\r\n\r\n" + body
            with self.lock:
                self.requests.append(raw)
            out = self.response(raw) if callable(self.response) else self.response
            for part in (out if isinstance(out, list) else [out]):
                if isinstance(part, (int, float)):
                    time.sleep(part)
                else:
                    conn.sendall(part)
        except OSError:
            pass
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def chunked(body, size=4096):
    """body in HTTP/1.1 chunked framing."""
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"
