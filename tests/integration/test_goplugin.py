"""The launch contract proven with HashiCorp's own go-plugin client (the library Grafana uses):
goplugin/host.go starts the real executable through plugin.NewClient with Grafana's handshake
config, pings it, calls Diagnostics/CheckHealth and CollectMetrics through stubs generated from
proto/backend.proto, and stops it with client.Kill().

Everything is built in GOPATH mode from Debian's golang-*-dev packages (no module proxy):
  golang-go, golang-github-hashicorp-go-plugin-dev, golang-google-grpc-dev,
  golang-goprotobuf-dev (protoc-gen-go 1.3, `plugins=grpc` form), protobuf-compiler.
Generated code, the Go build cache and the host binary live under the build directory.
"""
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BUILD, EXE, ROOT, Upstream, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_SRC = os.path.join(HERE, "goplugin", "host.go")
PROTO_DIR = os.path.join(ROOT, "proto")
PROTO = os.path.join(PROTO_DIR, "backend.proto")
GOPATH = os.path.join(BUILD, "gopath")
GEN_DIR = os.path.join(GOPATH, "src", "cachingproxy", "pluginv2")
GEN_FILE = os.path.join(GEN_DIR, "backend.pb.go")
GOCACHE = os.path.join(BUILD, "gocache")
HOST = os.path.join(BUILD, "goplugin-host")
SYSTEM_GOPATH = "/usr/share/gocode"

GO = shutil.which("go") or ("/usr/lib/go/bin/go" if os.path.exists("/usr/lib/go/bin/go") else None)

SUMMARY = re.compile(r'^goplugin-host: handshake ok, ping ok, CheckHealth (OK|ERROR) "(.*)", '
                     r'metrics ok, kill (\d+)ms, exit 0$', re.M)


def go_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update({
        "GO111MODULE": "off",
        "GOPATH": GOPATH + os.pathsep + SYSTEM_GOPATH,
        "GOCACHE": GOCACHE,
        "GOENV": "off",          # HOME may be unset in CI
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    })
    return env


def _run(argv, env, what, timeout=240):
    r = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s\n%s\n%s" % (what, r.returncode, " ".join(argv),
                                                           r.stdout.decode(errors="replace"),
                                                           r.stderr.decode(errors="replace")))


def _newer(target, *sources):
    return os.path.exists(target) and all(os.path.getmtime(target) >= os.path.getmtime(s)
                                          for s in sources)


def build_host():
    """Generates cachingproxy/pluginv2 from proto/backend.proto and builds the host. Both steps
    are skipped when their outputs are newer than their inputs; go's build cache under the build
    directory makes a rebuild cheap anyway."""
    os.makedirs(GEN_DIR, exist_ok=True)
    os.makedirs(GOCACHE, exist_ok=True)
    env = go_env()
    with open(os.path.join(GOPATH, ".lock"), "w") as lf:
        fcntl.flock(lf, fcntl.LOCK_EX)
        if not _newer(GEN_FILE, PROTO):
            protoc = shutil.which("protoc")
            if not protoc:
                raise RuntimeError("protoc not found (Debian package protobuf-compiler)")
            gen = "/usr/bin/protoc-gen-go" if os.path.exists("/usr/bin/protoc-gen-go") \
                else shutil.which("protoc-gen-go")
            if not gen:
                raise RuntimeError("protoc-gen-go not found (Debian package golang-goprotobuf-dev)")
            # backend.proto has no go_package option: map it with M. protoc-gen-go 1.3 names the
            # output after the .proto file, so write straight into the package directory.
            _run([protoc, "--plugin=protoc-gen-go=" + gen, "-I" + PROTO_DIR,
                  "--go_out=plugins=grpc,Mbackend.proto=cachingproxy/pluginv2:" + GEN_DIR, PROTO],
                 env, "protoc")
        if not _newer(HOST, HOST_SRC, GEN_FILE):
            tmp = HOST + ".tmp"
            _run([GO, "build", "-o", tmp, HOST_SRC], env, "go build")
            os.replace(tmp, HOST)




@unittest.skipUnless(GO, "go is not installed")
class GoPluginHostTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build_host()

    def setUp(self):
        self.up = Upstream()
        self.sockdir = tempfile.mkdtemp(prefix="gp")

    def tearDown(self):
        self.up.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def run_host(self, url, expect):
        # The host's own environment is what go-plugin hands on to the plugin (plus the cookie
        # and PLUGIN_* variables it adds itself), as in Grafana.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PLUGIN_UNIX_SOCKET_DIR": self.sockdir,
               "CACHINGPROXY_LOG_LEVEL": "debug"}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        t0 = time.time()
        r = subprocess.run([HOST, "-plugin", EXE, "-url", url, "-expect", expect],
                           env=env, capture_output=True, timeout=60)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        diag = "exit %d after %.1fs\nstdout:\n%s\ngo-plugin log (stderr):\n%s" % (
            r.returncode, time.time() - t0, out, err)
        return r.returncode, out, err, diag

    def check_common(self, rc, out, err, diag):
        self.assertEqual(rc, 0, diag)
        m = SUMMARY.search(out)
        self.assertIsNotNone(m, diag)
        self.assertLess(int(m.group(3)), 2000, "Kill fell back to SIGKILL\n" + diag)
        self.assertIn("plugin process exited", err, diag)
        self.assertNotIn("plugin failed to exit gracefully", err, diag)
        # The plugin's stderr lines reached go-plugin's logger and were parsed as hclog JSON
        # entries (an unparsed line would be re-logged raw, starting with '{').
        plugin_lines = [l for l in err.splitlines() if "goplugin-host.gpx_cachingproxy:" in l]
        self.assertTrue(plugin_lines, diag)
        self.assertFalse([l for l in plugin_lines
                          if re.search(r"goplugin-host\.gpx_cachingproxy: \{", l)], diag)
        self.assertEqual(os.listdir(self.sockdir), [], "socket left behind\n" + diag)
        return m

    def test_handshake_health_metrics_kill(self):
        rc, out, err, diag = self.run_host(self.up.url, "OK")
        m = self.check_common(rc, out, err, diag)
        self.assertEqual(m.group(1), "OK", diag)
        self.assertGreaterEqual(self.up.count(), 1, "CheckHealth never reached the upstream")
        self.assertIn("using plugin: version=2", err, diag)

    def test_health_error_is_a_proper_status(self):
        url = "http://127.0.0.1:%d" % free_port()
        rc, out, err, diag = self.run_host(url, "ERROR")
        m = self.check_common(rc, out, err, diag)
        self.assertEqual(m.group(1), "ERROR", diag)
        self.assertTrue(m.group(2), "ERROR without a message\n" + diag)

    def test_host_reports_a_mismatch(self):
        # The host itself must fail loudly when the status is not the expected one, otherwise
        # the two tests above prove nothing.
        url = "http://127.0.0.1:%d" % free_port()
        rc, out, err, diag = self.run_host(url, "OK")
        self.assertEqual(rc, 1, diag)
        self.assertRegex(out, r"goplugin-host: FAIL: CheckHealth: status ERROR", diag)
        self.assertIn("plugin process exited", err, diag)


if __name__ == "__main__":
    unittest.main()
