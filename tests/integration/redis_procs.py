"""Real redis-server processes for the Redis-at-scale suites (test_redis_secure.py,
test_redis_ha.py): servers, sentinels and cluster nodes on free loopback ports, each in a
directory of its own, with a RESP client (TLS too); the cluster's key slots computed
independently of the plugin; and a test base passing every Redis secret as secureJsonData."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import context, free_port, pb, settings, wait_for
from test_cache import REDIS_SERVER, Base, RedisError, _resp_encode, _resp_read, new_uid

REDIS_CLI = "/usr/bin/redis-cli"
# A call made while Redis fails over must still answer within this: Redis operations are
# bounded by their timeouts and the breaker, but a cross-process lock taken just before the
# failover (and copied to the replica) makes the next miss of that key wait out the pipeline's
# 5 s bound on another process's fetch.
CALL_BOUND_S = 6.5


def need(*paths):
    missing = [p for p in paths if not os.path.exists(p)]
    return unittest.skipIf(missing, "%s not installed" % ", ".join(missing))


def crc16(data):
    """CRC16-CCITT (XMODEM), bit by bit: an implementation independent of the plugin's."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_slot(key):
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % 16384


def cluster_port():
    """A free port whose cluster bus port (port + 10000) is free and in range too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no port pair for a cluster node")


# ---- servers --------------------------------------------------------------------------------

class Server:
    """A redis-server (or, with sentinel=True, a sentinel) on 127.0.0.1 in a directory of its
    own, and a RESP client for it (over TLS when tls is an ssl context)."""

    def __init__(self, args=(), password=None, tls=None, tls_args=(), conf=None, sentinel=False,
                 host="127.0.0.1"):
        self.password, self.tls, self.host = password, tls, host
        self.dir = tempfile.mkdtemp(prefix="cp-redis-")
        self.proc = None
        cluster = "--cluster-enabled" in args
        for _ in range(5):
            self.port = cluster_port() if cluster else free_port()
            if tls:
                argv = ["--port", "0", "--tls-port", str(self.port)] + list(tls_args)
            else:
                argv = ["--port", str(self.port)]
            argv += ["--save", "", "--appendonly", "no", "--dir", self.dir] + list(args)
            if password:
                argv += ["--requirepass", password]
            if conf is not None:
                path = os.path.join(self.dir, "sentinel.conf")
                with open(path, "w") as f:
                    f.write("port %d\nbind 127.0.0.1\ndir %s\n%s" % (self.port, self.dir, conf))
                argv = [path, "--sentinel"]
            elif sentinel:
                raise ValueError("a sentinel needs its configuration")
            if "--bind" not in argv and conf is None:
                argv += ["--bind", "127.0.0.1"]
            self.argv = [REDIS_SERVER] + argv
            if self.start():
                return
        raise RuntimeError("redis-server would not start: %s" % " ".join(self.argv))

    def start(self):
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for(lambda: self.proc.poll() is not None or self.ping(), timeout=10) and \
                self.proc.poll() is None:
            return True
        self.kill()
        return False

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except (OSError, RedisError, ValueError):
            return False

    def command(self, *args):
        raw = socket.create_connection((self.host, self.port), timeout=5)
        with (self.tls.wrap_socket(raw, server_hostname=self.host) if self.tls else raw) as s:
            f = s.makefile("rb")
            cmds = ([("AUTH", self.password)] if self.password else []) + [args]
            s.sendall(b"".join(_resp_encode(c) for c in cmds))
            replies = [_resp_read(f) for _ in cmds]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies[-1]

    def info(self, section):
        text = self.command("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)

    def keys(self):
        out, cursor = [], b"0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "COUNT", 1000)
            out += batch
            if cursor in (b"0", "0"):
                return out

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=10)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class ScaleBase(Base):
    """Base's helpers, with every Redis secure setting passed as secureJsonData."""

    SECURE = ("redisPassword", "redisSentinelPassword", "redisTlsCACert", "redisTlsClientCert",
              "redisTlsClientKey")

    def ds(self, cache=None, url=None, uid=None, **jd):
        cache = dict(cache or {})
        secure = {k: cache.pop(k) for k in self.SECURE if k in cache}
        j = {"cache": cache}
        j.update(jd)
        return settings(url or self.up.url, j, secure, uid=uid or new_uid("r"))

    def health_of(self, ds, plugin=None):
        r = (plugin or self.plugin).diag.CheckHealth(
            pb.CheckHealthRequest(pluginContext=context(ds)), timeout=15)
        return r.status, r.message

    def body_path(self, body):
        return json.loads(body)["path"]
