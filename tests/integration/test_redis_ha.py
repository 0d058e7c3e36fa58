"""Redis high availability through the real executable, against real redis-server processes
started here on free loopback ports (issue 15):

- Sentinel: a master, a replica and three sentinels (all with passwords); the master is
  killed mid-run: entries written before are hits after the failover, no call fails or
  waits past its bound, and the plugin finds the new master by itself;
- Cluster: three masters made with `redis-cli --cluster create`; two plugin processes share
  entries; a data source's slot moved with CLUSTER SETSLOT and MIGRATE while traffic runs
  (ASK, then MOVED; no wrong answer); one node killed (its data sources fail open, the others
  keep their hits).

Waits are bounded polls; every server and plugin is stopped by the test that started it."""
import random
import subprocess
import threading
import time

from harness import Plugin, call_resource, wait_for
from redis_procs import (CALL_BOUND_S, REDIS_CLI, REDIS_SERVER, ScaleBase, Server, key_slot,
                         need)
from test_cache import ERROR, OK, metrics, redis_warnings


# ---- Sentinel --------------------------------------------------------------------------------

DATA_PW = "data-pw-7f3a"
SENTINEL_PW = "sentinel-pw-91c2"


@need(REDIS_SERVER)
class RedisSentinelTest(ScaleBase):
    def setUp(self):
        super().setUp()
        auth = ["--masterauth", DATA_PW]
        self.master = Server(password=DATA_PW, args=auth)
        self.addCleanup(self.master.cleanup)
        self.replica = Server(password=DATA_PW,
                              args=auth + ["--replicaof", "127.0.0.1", str(self.master.port)])
        self.addCleanup(self.replica.cleanup)
        conf = ("sentinel monitor mymaster 127.0.0.1 %d 2\n"
                "sentinel auth-pass mymaster %s\n"
                "sentinel down-after-milliseconds mymaster 400\n"
                "sentinel failover-timeout mymaster 4000\n"
                "sentinel parallel-syncs mymaster 1\n"
                "requirepass %s\nsentinel sentinel-pass %s\n"
                % (self.master.port, DATA_PW, SENTINEL_PW, SENTINEL_PW))
        self.sentinels = []
        for _ in range(3):
            s = Server(conf=conf, password=SENTINEL_PW)
            self.addCleanup(s.cleanup)
            self.sentinels.append(s)

        def ready():
            if self.replica.info("replication").get("master_link_status") != "up":
                return False
            for s in self.sentinels:
                m = s.command("SENTINEL", "MASTER", "mymaster")
                d = dict(zip(m[::2], m[1::2]))
                if d.get(b"num-other-sentinels") != b"2" or d.get(b"num-slaves") != b"1":
                    return False
            return True

        self.assertTrue(wait_for(ready, timeout=20, interval=0.1),
                        "sentinels did not find each other and the replica")
        self.plugin = Plugin()
        self.addCleanup(self.plugin.stop)
        self.watch(self.plugin)

    def sentinel_master(self):
        r = self.sentinels[0].command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return int(r[1])

    def test_master_killed_mid_run(self):
        url = "redis-sentinel://%s/mymaster" % ",".join(
            "127.0.0.1:%d" % s.port for s in self.sentinels)
        ds = self.ds({"backend": "redis", "redisUrl": url, "redisPassword": DATA_PW,
                      "redisSentinelPassword": SENTINEL_PW})
        status, msg = self.health_of(ds)
        self.assertEqual(status, OK, msg)
        self.assertIn("master mymaster at 127.0.0.1:%d" % self.master.port, msg)
        paths = ["/s/%d" % i for i in range(20)]
        bodies = {}
        for p in paths:
            x, bodies[p], _ = self.get(ds, "proxy" + p)
            self.assertEqual(x, "MISS")
        # everything written has reached the replica
        self.assertTrue(wait_for(lambda: len(self.replica.keys()) == len(self.master.keys()),
                                 timeout=10))
        self.assertEqual(sum(self.up.count(p) for p in paths), 20)

        stop = threading.Event()
        problems, calls, took_all = [], [0], []

        def traffic():
            rnd = random.Random(5)
            while not stop.is_set():
                # paths of its own: the entries written before stay as they were
                p = "/s/traffic-%d" % rnd.randrange(30)
                t0 = time.monotonic()
                try:
                    code, _, body, _ = self.call(ds, "proxy" + p, timeout=10)
                except Exception as e:  # noqa: BLE001 - reported below
                    problems.append("call %s failed: %s" % (p, e))
                    continue
                took = time.monotonic() - t0
                took_all.append(took)
                calls[0] += 1
                if code != 200 or self.body_path(body) != p:
                    problems.append("%s: %s %r" % (p, code, body[:100]))
                if took > CALL_BOUND_S:
                    problems.append("%s took %.2f s" % (p, took))

        threads = [threading.Thread(target=traffic) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            self.master.kill()
            self.assertTrue(wait_for(lambda: self.sentinel_master() == self.replica.port,
                                     timeout=20, interval=0.1), "no failover")
            # the plugin follows by itself: the entries written before the failover are hits
            self.assertTrue(wait_for(lambda: self.xc(ds, "proxy" + paths[0]) == "HIT",
                                     timeout=15, interval=0.2), "never a hit after failover")
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(problems, [])
        self.assertGreater(calls[0], 10)
        took_all.sort()
        self.assertLess(took_all[len(took_all) // 2], 0.5, "median call during the failover")
        for p in paths:
            x, body, _ = self.get(ds, "proxy" + p)
            self.assertEqual((x, body), ("HIT", bodies[p]), p)
        m = metrics(self.plugin)
        self.assertGreaterEqual(m["cachingproxy_redis_failovers_total"], 1)
        self.assertGreater(m['cachingproxy_redis_node_errors_total{node="127.0.0.1:%d"}'
                             % self.master.port], 0)
        status, msg = self.health_of(ds)
        self.assertEqual(status, OK, msg)
        self.assertIn("master mymaster at 127.0.0.1:%d" % self.replica.port, msg)
        # one warning for the outage, and no password in any log line
        self.assertLessEqual(len(redis_warnings(self.plugin)), 2)
        self.assertNotIn(DATA_PW, self.plugin.stderr_text())
        self.assertNotIn(SENTINEL_PW, self.plugin.stderr_text())

    def test_forced_failover(self):
        """SENTINEL FAILOVER: the old master lives on as a replica (the sentinels close its
        clients' connections); the plugin must write to the new master, not to the replica
        still listening at the old address. (A READONLY answer is in test_cache_redis.c.)"""
        url = "redis-sentinel://%s/mymaster" % ",".join(
            "127.0.0.1:%d" % s.port for s in self.sentinels)
        ds = self.ds({"backend": "redis", "redisUrl": url, "redisPassword": DATA_PW,
                      "redisSentinelPassword": SENTINEL_PW})
        x, body, _ = self.get(ds, "proxy/f/before")
        self.assertEqual(x, "MISS")
        self.assertTrue(wait_for(lambda: len(self.replica.keys()) == len(self.master.keys()),
                                 timeout=10))
        self.sentinels[1].command("SENTINEL", "FAILOVER", "mymaster")
        self.assertTrue(wait_for(lambda: self.sentinel_master() == self.replica.port,
                                 timeout=20, interval=0.1), "no failover")
        self.assertTrue(wait_for(lambda: self.master.info("replication").get("role") == "slave",
                                 timeout=20, interval=0.1), "the old master was not demoted")
        i = [0]

        def stored_on_new_master():
            i[0] += 1
            path = "proxy/f/after-%d" % i[0]
            self.assertEqual(self.xc(ds, path), "MISS")
            return self.xc(ds, path) == "HIT"

        self.assertTrue(wait_for(stored_on_new_master, timeout=15, interval=0.1))
        self.assertEqual(self.get(ds, "proxy/f/before")[:2], ("HIT", body))
        m = metrics(self.plugin)
        self.assertGreaterEqual(m["cachingproxy_redis_failovers_total"], 1)
        prefix = b"cachingproxy:{1:%s}:" % ds.uid.encode()
        self.assertGreaterEqual(len([k for k in self.replica.keys() if k.startswith(prefix)]), 3)
        status, msg = self.health_of(ds)
        self.assertEqual(status, OK, msg)
        self.assertIn("master mymaster at 127.0.0.1:%d" % self.replica.port, msg)

    def test_wrong_sentinel_password(self):
        url = "redis-sentinel://127.0.0.1:%d/mymaster" % self.sentinels[0].port
        ds = self.ds({"backend": "redis", "redisUrl": url, "redisPassword": DATA_PW,
                      "redisSentinelPassword": "wrong"})
        self.assertEqual(self.xc(ds, "proxy/s/x"), "MISS")
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("redisSentinelPassword", msg)

    def test_unknown_master_name(self):
        url = "redis-sentinel://127.0.0.1:%d/nosuchmaster" % self.sentinels[0].port
        ds = self.ds({"backend": "redis", "redisUrl": url, "redisPassword": DATA_PW,
                      "redisSentinelPassword": SENTINEL_PW})
        status, msg = self.health_of(ds)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("nosuchmaster", msg)


# ---- Cluster ---------------------------------------------------------------------------------

@need(REDIS_SERVER, REDIS_CLI)
class RedisClusterTest(ScaleBase):
    """Three masters, no replicas; cluster-require-full-coverage no, so that a dead node only
    takes its own slots away (as the README advises)."""

    @classmethod
    def setUpClass(cls):
        cls.nodes = []
        try:
            for _ in range(3):
                cls.nodes.append(Server(args=["--cluster-enabled", "yes",
                                              "--cluster-config-file", "nodes.conf",
                                              "--cluster-node-timeout", "1000",
                                              "--cluster-require-full-coverage", "no"]))
            r = subprocess.run([REDIS_CLI, "--cluster", "create"] +
                               ["127.0.0.1:%d" % n.port for n in cls.nodes] +
                               ["--cluster-replicas", "0", "--cluster-yes"],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("cluster create failed: %s" % r.stdout.decode()[-500:])

            def ok():
                return all(b"cluster_state:ok" in n.command("CLUSTER", "INFO")
                           for n in cls.nodes)

            if not wait_for(ok, timeout=20, interval=0.1):
                raise RuntimeError("the cluster did not become ok")
            cls.ids = {n.port: n.command("CLUSTER", "MYID").decode() for n in cls.nodes}
            cls.p1 = Plugin()
            cls.p2 = Plugin()
        except Exception:
            for n in cls.nodes:
                n.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in (cls.p1, cls.p2):
            p.stop()
        for n in cls.nodes:
            n.cleanup()

    def setUp(self):
        super().setUp()
        self.plugin = self.p1
        self.watch(self.p1, self.p2)
        self.url = "redis-cluster://%s" % ",".join("127.0.0.1:%d" % n.port
                                                    for n in self.nodes[:2])

    def owner(self, slot, among=None):
        """The node serving slot, per the cluster's own map."""
        for start, end, master, *_ in self.nodes[-1 if among is None else among].command(
                "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == master[1])
        return None

    def ds_on(self, node, tag):
        """A data source whose slot the given node serves."""
        for i in range(10000):
            uid = "%s%d" % (tag, i)
            if self.owner(key_slot(b"1:" + uid.encode())) is node:
                return self.ds({"backend": "redis", "redisUrl": self.url}, uid=uid)
        raise AssertionError("no uid for that node")

    def test_1_processes_share_entries_on_every_node(self):
        for n in self.nodes:
            ds = self.ds_on(n, "share")
            x, body, _ = self.get(ds, "proxy/c/1", self.p1)
            self.assertEqual(x, "MISS")
            self.assertEqual(self.get(ds, "proxy/c/1", self.p2, login="bob")[:2], ("HIT", body))
            prefix = b"cachingproxy:{1:%s}:" % ds.uid.encode()
            for other in self.nodes:  # the entry and its index live on the slot's node only
                mine = [k for k in other.keys() if k.startswith(prefix)]
                self.assertEqual(len(mine), 2 if other is n else 0, (other.port, mine))
            status, msg = self.health_of(ds, self.p2)
            self.assertEqual(status, OK, msg)
            self.assertIn("redis cluster, node 127.0.0.1:%d" % n.port, msg)

    def test_2_slot_moved_during_traffic(self):
        src, dst = self.nodes[0], self.nodes[1]
        moving = self.ds_on(src, "mig")
        staying = self.ds_on(dst, "stay")
        slot = key_slot(b"1:" + moving.uid.encode())
        paths = ["/m/%d" % i for i in range(12)]
        for ds in (moving, staying):
            for p in paths:
                self.assertEqual(self.xc(ds, "proxy" + p, self.p1), "MISS")
        m0 = metrics(self.p1)
        stop = threading.Event()
        problems, calls = [], [0]

        def traffic(plugin, seed):
            rnd = random.Random(seed)
            while not stop.is_set():
                ds = rnd.choice((moving, staying))
                p = rnd.choice(paths + ["/m/new-%d" % rnd.randrange(100)])
                t0 = time.monotonic()
                try:
                    code, _, body, _ = call_resource(plugin, ds, "proxy" + p, timeout=10)
                except Exception as e:  # noqa: BLE001 - reported below
                    problems.append("call failed: %s" % e)
                    continue
                calls[0] += 1
                if code != 200 or self.body_path(body) != p:
                    problems.append("%s: %s %r" % (p, code, body[:100]))
                if time.monotonic() - t0 > CALL_BOUND_S:
                    problems.append("%s slow" % p)

        threads = [threading.Thread(target=traffic, args=(p, i))
                   for i, p in enumerate((self.p1, self.p2))]
        for t in threads:
            t.start()
        try:
            dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src.port])
            src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst.port])
            while True:
                keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
                if not keys:
                    break
                src.command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
            # every key has left the source, the slot is still its: the source answers ASK
            for p in paths:
                self.assertEqual(self.xc(moving, "proxy" + p, self.p1), "HIT", p)
            for n in self.nodes:
                n.command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst.port])
            self.assertTrue(wait_for(lambda: self.owner(slot, among=0) is dst, timeout=10))
            for p in paths:  # the source now answers MOVED
                self.assertEqual(self.xc(moving, "proxy" + p, self.p2), "HIT", p)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(problems, [])
        self.assertGreater(calls[0], 20)
        m = metrics(self.p1)
        self.assertGreater(m['cachingproxy_redis_redirects_total{type="ask"}'],
                           m0['cachingproxy_redis_redirects_total{type="ask"}'])
        self.assertGreater(metrics(self.p2)['cachingproxy_redis_redirects_total{type="moved"}'],
                           0)
        status, msg = self.health_of(moving, self.p1)
        self.assertEqual(status, OK, msg)
        self.assertIn("node 127.0.0.1:%d" % dst.port, msg)
        prefix = b"cachingproxy:{1:%s}:" % moving.uid.encode()
        self.assertEqual([k for k in src.keys() if k.startswith(prefix)], [])
        # the purge index moved with the entries: purging by prefix still works
        self.assertEqual(self.purge(moving, "/m/1", self.p2)["purged"], 3)  # /m/1, /m/10, /m/11
        self.assertEqual(self.xc(moving, "proxy/m/10", self.p1), "MISS")
        self.assertEqual(self.xc(moving, "proxy/m/2", self.p1), "HIT")

    def test_3_node_killed_fails_open(self):
        dead, alive = self.nodes[2], self.nodes[1]
        lost = self.ds_on(dead, "lost")
        kept = self.ds_on(alive, "kept")
        for ds in (lost, kept):
            self.assertEqual(self.xc(ds, "proxy/k", self.p1), "MISS")
            self.assertEqual(self.xc(ds, "proxy/k", self.p2), "HIT")
        dead.kill()
        n = self.up.count()
        worst = 0
        for i in range(10):
            t0 = time.monotonic()
            self.assertEqual(self.xc(lost, "proxy/k", self.p1), "MISS")
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(self.xc(kept, "proxy/k", self.p1), "HIT")
        self.assertLess(worst, 1.0)
        self.assertEqual(self.up.count(), n + 10)
        status, msg = self.health_of(lost, self.p1)
        self.assertEqual(status, ERROR, msg)
        self.assertIn("127.0.0.1:%d" % dead.port, msg)
        self.assertEqual(self.health_of(kept, self.p1)[0], OK)
        m = metrics(self.p1)
        self.assertGreater(m['cachingproxy_redis_node_errors_total{node="127.0.0.1:%d"}'
                             % dead.port], 0)
