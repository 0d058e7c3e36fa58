"""Redis security through the real executable, against real redis-server processes started
here on free loopback ports (issue 15):

- TLS (rediss://) with certificates made here by the openssl CLI (Debian's redis-server speaks
  TLS itself): a hit over TLS, a wrong CA refused with a clear health message, the host name
  checked, redisTlsSkipVerify, client certificates, bad TLS material;
- encryption of values: no upstream byte readable in Redis, key rotation without a flush, a
  flipped byte or a value moved to another key is a miss (deleted, counted), a bad key refuses
  Redis (fail closed) with a message naming the variable.
"""
import base64
import json
import os
import ssl

from certs import Certs
from harness import Plugin, hval
from redis_procs import REDIS_SERVER, ScaleBase, Server, need
from test_cache import ERROR, OK, metrics, redis_warnings


# ---- TLS ------------------------------------------------------------------------------------

@need(REDIS_SERVER, "/usr/bin/openssl")
class RedisTlsTest(ScaleBase):
    """Debian's redis-server is built with TLS: the servers speak TLS themselves."""

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        c = cls.certs
        ctx = ssl.create_default_context(cafile=c.ca_path)
        ctx.load_cert_chain(c.client_path, c.client_key_path)
        common = ["--tls-cert-file", c.server_path, "--tls-key-file", c.server_key_path,
                  "--tls-ca-cert-file", c.ca_path]
        # one server that takes any client, one that wants a client certificate; both on
        # 127.0.0.1 and 127.0.0.2 (the certificate names only the first)
        cls.open = Server(tls=ctx, tls_args=common + ["--tls-auth-clients", "no"],
                          args=["--bind", "127.0.0.1", "127.0.0.2"])
        cls.mtls = Server(tls=ctx, tls_args=common + ["--tls-auth-clients", "yes"])
        cls.plain = Server()
        cls.p = Plugin()

    @classmethod
    def tearDownClass(cls):
        cls.p.stop()
        for s in (cls.open, cls.mtls, cls.plain):
            s.cleanup()
        cls.certs.cleanup()

    def setUp(self):
        super().setUp()
        self.plugin = self.p
        self.watch(self.p)

    def tls_ds(self, server=None, host="127.0.0.1", **cache):
        c = {"backend": "redis",
             "redisUrl": "rediss://%s:%d" % (host, (server or self.open).port),
             "redisTlsCACert": self.certs.ca_pem}
        c.update(cache)
        return self.ds(c)

    def test_hit_over_tls_and_health_names_the_node(self):
        ds = self.tls_ds()
        self.assertEqual(self.xc(ds, "proxy/tls/1"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/tls/1", login="bob"), "HIT")
        self.assertEqual(self.up.count(), 1)
        keys = [k for k in self.open.keys() if k.startswith(b"cachingproxy:{1:%s}:" %
                                                             ds.uid.encode())]
        self.assertEqual(len(keys), 2, keys)  # the entry and the purge index
        status, msg = self.health_of(ds)
        self.assertEqual(status, OK, msg)
        self.assertIn("redis over TLS at 127.0.0.1:%d" % self.open.port, msg)

    def test_wrong_ca_is_refused_with_a_clear_health_message(self):
        ds = self.tls_ds(redisTlsCACert=self.certs.otherca_pem)
        for _ in range(2):  # fail open: answered from the upstream
            self.assertEqual(self.xc(ds, "proxy/tls/wrong-ca"), "MISS")
        self.assertEqual(self.up.count(), 2)
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("certificate verify failed", msg)
        self.assertIn("redisTlsCACert", msg)
        self.assertIn("redis over TLS at 127.0.0.1:%d" % self.open.port, msg)
        self.assertGreaterEqual(len(redis_warnings(self.p)), 1)

    def test_skip_verify(self):
        ds = self.tls_ds(redisTlsCACert=self.certs.otherca_pem, redisTlsSkipVerify=True)
        self.assertEqual(self.xc(ds, "proxy/tls/skip"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/tls/skip"), "HIT")

    def test_host_name_is_checked(self):
        ds = self.tls_ds(host="127.0.0.2")
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("does not name 127.0.0.2", msg)
        ds = self.tls_ds(host="localhost")  # a DNS name of the certificate
        self.assertEqual(self.health_of(ds)[0], OK)
        ds = self.tls_ds(host="127.0.0.2", redisTlsSkipVerify=True)
        self.assertEqual(self.health_of(ds)[0], OK)

    def test_client_certificate(self):
        ds = self.tls_ds(self.mtls)
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("redisTlsClientCert", msg)
        ds = self.tls_ds(self.mtls, redisTlsClientCert=self.certs.client_pem,
                         redisTlsClientKey=self.certs.client_key_pem)
        self.assertEqual(self.xc(ds, "proxy/tls/mtls"), "MISS")
        self.assertEqual(self.xc(ds, "proxy/tls/mtls"), "HIT")
        status, msg = self.health_of(ds)
        self.assertEqual(status, OK, msg)
        # the client key never reaches a log line
        key_line = self.certs.client_key_pem.splitlines()[1]
        self.assertNotIn(key_line, self.p.stderr_text())

    def test_tls_to_a_plain_port_fails_clearly(self):
        ds = self.tls_ds(self.plain)
        self.assertEqual(self.xc(ds, "proxy/tls/plain"), "MISS")
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("TLS", msg)

    def test_bad_tls_material_names_the_key(self):
        ds = self.tls_ds(redisTlsCACert="not a certificate")
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("redisTlsCACert", msg)


# ---- encryption ------------------------------------------------------------------------------

KEYS_ENV = "CACHINGPROXY_CACHE_ENCRYPTION_KEYS"


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


@need(REDIS_SERVER)
class RedisEncryptionTest(ScaleBase):
    MARK = b"UPSTREAM-SECRET-7d1e"

    @classmethod
    def setUpClass(cls):
        cls.redis = Server()
        cls.k1, cls.k2 = new_key(), new_key()

    @classmethod
    def tearDownClass(cls):
        cls.redis.cleanup()

    def setUp(self):
        super().setUp()
        self.up.default = lambda r: (200, {"Content-Type": "application/json",
                                           "X-Mark": self.MARK.decode()},
                                     b'{"answer":"%s","path":"%s","n":%d}'
                                     % (self.MARK, r.path.encode(), self.up.count()))

    def start(self, keys):
        p = Plugin(env={KEYS_ENV: keys} if keys is not None else None)
        self.addCleanup(p.stop)
        self.watch(p)
        self.plugin = p
        return p

    def rds(self, uid=None):
        return self.ds({"backend": "redis", "redisUrl": "redis://127.0.0.1:%d" % self.redis.port},
                       uid=uid)

    def entry_keys(self, ds):
        prefix = b"cachingproxy:{1:%s}:" % ds.uid.encode()
        return [k for k in self.redis.keys() if k.startswith(prefix)
                and not k.endswith(b"::index") and not k.endswith(b":lock")]

    def test_no_upstream_byte_readable_in_redis(self):
        p = self.start(self.k1)
        ds = self.rds()
        for i in range(5):
            self.assertEqual(self.xc(ds, "proxy/enc/i%d" % i), "MISS")
            x, body, h = self.get(ds, "proxy/enc/i%d" % i)
            self.assertEqual(x, "HIT")
            self.assertIn(self.MARK, body)
            self.assertEqual(hval(h, "X-Mark"), self.MARK.decode())
        values = []
        for k in self.redis.keys():
            t = self.redis.command("TYPE", k)
            if t == "string":
                values.append(self.redis.command("GET", k))
            elif t == "zset":
                values += self.redis.command("ZRANGE", k, 0, -1)
        self.assertGreaterEqual(len(values), 6)
        for v in values:
            self.assertNotIn(self.MARK, v)
            self.assertNotIn(b"answer", v)
            self.assertNotIn(b"application/json", v)
            self.assertNotIn(b"/enc", v)  # the paths in the purge index are sealed too
        for k in self.entry_keys(ds):
            self.assertEqual(self.redis.command("GET", k)[:4], b"CPS1")
        self.assertNotIn(self.k1, p.stderr_text())
        # purge by prefix opens the sealed index
        self.assertEqual(self.purge(ds, "/enc")["purged"], 5)
        self.assertEqual(self.xc(ds, "proxy/enc/i1"), "MISS")

    def test_rotation_keeps_old_entries_readable(self):
        ds = self.rds()
        p = self.start(self.k1)
        x, old_body, _ = self.get(ds, "proxy/enc/r-old")
        self.assertEqual(x, "MISS")
        (old_key,) = self.entry_keys(ds)
        old_value = self.redis.command("GET", old_key)
        p.stop()
        p = self.start(self.k2 + "," + self.k1)
        self.assertEqual(self.get(ds, "proxy/enc/r-old")[:2], ("HIT", old_body))
        self.assertEqual(self.xc(ds, "proxy/enc/r-new"), "MISS")
        new_key_name = next(k for k in self.entry_keys(ds) if k != old_key)
        new_value = self.redis.command("GET", new_key_name)
        self.assertNotEqual(old_value[4:8], new_value[4:8])  # sealed under the new key's id
        p.stop()
        # the old key dropped: its entries are misses, deleted and counted
        p = self.start(self.k2)
        self.assertEqual(self.xc(ds, "proxy/enc/r-new"), "HIT")
        self.assertEqual(self.xc(ds, "proxy/enc/r-old"), "MISS")
        self.assertEqual(metrics(p)["cachingproxy_redis_decrypt_failures_total"], 1)
        self.assertEqual(self.xc(ds, "proxy/enc/r-old"), "HIT")  # stored again, new key

    def test_flipped_byte_or_moved_value_is_a_miss(self):
        p = self.start(self.k1)
        ds = self.rds()
        for q in ("a", "b"):
            self.assertEqual(self.xc(ds, "proxy/enc/f-" + q), "MISS")
        ka, kb = self.entry_keys(ds)
        value = self.redis.command("GET", ka)
        # a's value copied under b's key: authentic, but sealed for another key
        self.redis.command("SET", kb, value, "PX", 60000)
        flipped = bytearray(value)
        flipped[len(value) // 2] ^= 0x01
        self.redis.command("SET", ka, bytes(flipped), "PX", 60000)
        n = self.up.count()
        for q in ("a", "b"):
            x, body, _ = self.get(ds, "proxy/enc/f-" + q)
            self.assertEqual(x, "MISS")
            self.assertEqual(json.loads(body)["path"], "/enc/f-" + q)
        self.assertEqual(self.up.count(), n + 2)  # both went to the upstream, then were stored
        self.assertEqual(metrics(p)["cachingproxy_redis_decrypt_failures_total"], 2)
        for q in ("a", "b"):
            self.assertEqual(self.xc(ds, "proxy/enc/f-" + q), "HIT")

    def test_bad_key_refuses_redis(self):
        p = self.start("c2hvcnQ=," + self.k1)
        ds = self.rds()
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn(KEYS_ENV, msg)
        self.assertIn("key 1 of 2", msg)
        self.assertNotIn(self.k1, msg)
        code, _, body, _ = self.call(ds, "proxy/enc")
        self.assertNotEqual(code, 200)
        self.assertIn(KEYS_ENV.encode(), body)
        self.assertEqual(self.entry_keys(ds), [])  # nothing written in clear
        self.assertEqual(self.up.count(), 0)
        self.assertNotIn(self.k1, p.stderr_text())
        # a memory data source of the same process is unaffected
        mem = self.ds({})
        self.assertEqual(self.xc(mem, "proxy/enc"), "MISS")
