"""A test case base for suites that run against the memory and the Redis backend: a
redis-server on loopback for the Redis classes, a fresh upstream per test, and data source
settings with a uid of their own per call."""
import itertools
import os
import unittest

from harness import Plugin, Upstream, settings
from test_cache import REDIS_SERVER, RedisServer

_uids = itertools.count(1)


class BackendCase(unittest.TestCase):
    backend = "memory"
    redis = None
    uid_prefix = "b"
    plugin_per_test = False  # else one plugin process for the class

    @classmethod
    def setUpClass(cls):
        if cls.backend == "redis":
            if not os.path.exists(REDIS_SERVER):
                raise unittest.SkipTest("redis-server is not installed")
            cls.redis = RedisServer()
        if not cls.plugin_per_test:
            cls.p = Plugin()

    @classmethod
    def tearDownClass(cls):
        if not cls.plugin_per_test:
            cls.p.stop()
        if cls.redis:
            cls.redis.kill()

    def setUp(self):
        self.up = Upstream()
        self.addCleanup(self.up.close)
        if self.plugin_per_test:
            self.p = Plugin()
            self.addCleanup(self.p.stop)

    def ds(self, cache=None, **jd):
        c = {"backend": self.backend}
        if self.backend == "redis":
            c["redisUrl"] = "redis://127.0.0.1:%d" % self.redis.port
        c.update(cache or {})
        jd["cache"] = c
        return settings(self.up.url, jd, uid="%s%s%d" % (self.uid_prefix, self.backend, next(_uids)))
