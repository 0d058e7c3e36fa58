"""The installable plugin folder and its zip (make package): plugin.json valid, files in place,
module.js an AMD module exporting the data source plugin, the executable runnable by a plugin
host (go-plugin handshake, then CheckHealth on the provisioned settings), and the plugin id the
same everywhere.

Environment: CP_BUILD_DIR (the CMake build), CP_PACKAGE_DIR (the dist folder under test),
CP_PACKAGE_ZIP_DIR (where its zip is).
"""
import json
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import time
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
import yaml  # noqa: E402

PLUGIN_ID = "seed-cachingproxy-datasource"
ID_PATTERN = re.compile(r"^[0-9a-z]+\-([0-9a-z]+\-)?(app|panel|datasource)$")
DIST = os.environ.get("CP_PACKAGE_DIR", os.path.join(ROOT, "dist"))
ZIP_DIR = os.environ.get("CP_PACKAGE_ZIP_DIR", os.path.dirname(DIST))
EXE = os.path.join(DIST, "gpx_cachingproxy_linux_amd64")
PROVISIONING = os.path.join(ROOT, "config", "provisioning")


def project_version():
    m = re.search(r"project\(cachingproxy VERSION (\S+)", harness.read_text(os.path.join(ROOT, "CMakeLists.txt")))
    return m.group(1)


def plugin_json():
    with open(os.path.join(DIST, "plugin.json")) as f:
        return json.load(f)


def interpolate_env(text, values):
    """Grafana's ${VAR} expansion in provisioning files, with the test's values."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), "x"), text)


def localize(value, http_base, redis_url):
    """The same settings with every URL pointing at this machine's loopback servers."""
    if isinstance(value, dict):
        return {k: localize(v, http_base, redis_url) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, http_base, redis_url) for v in value]
    if isinstance(value, str):
        value = re.sub(r"^https?://[^/]+", http_base, value)
        value = re.sub(r"^redis://[^/]+", redis_url, value)
    return value


class PluginJson(unittest.TestCase):
    def test_required_keys_and_values(self):
        p = plugin_json()
        for key in ("id", "type", "name", "info", "dependencies"):
            self.assertIn(key, p)
        self.assertRegex(p["id"], ID_PATTERN)
        self.assertEqual(p["id"], PLUGIN_ID)
        self.assertEqual(p["type"], "datasource")
        self.assertIs(p["backend"], True)
        self.assertEqual(p["executable"], "gpx_cachingproxy")
        self.assertIs(p["alerting"], True)
        self.assertIs(p["streaming"], True)
        info = p["info"]
        self.assertEqual(info["version"], project_version())
        self.assertRegex(info["updated"], r"^\d{4}-\d{2}-\d{2}$")
        self.assertGreaterEqual(len(info["keywords"]), 1)
        self.assertTrue(info["description"])
        for size in ("small", "large"):
            logo = info["logos"][size]
            self.assertFalse(os.path.isabs(logo))
            self.assertTrue(logo.endswith(".svg"))
            with open(os.path.join(DIST, logo)) as f:
                self.assertIn("<svg", f.read())
        self.assertRegex(p["dependencies"]["grafanaDependency"], r"^>=\d+\.\d+\.\d+$")
        self.assertNotIn("%", json.dumps(p), "a template variable was left unfilled")

    def test_package_json_version_is_the_project_version(self):
        with open(os.path.join(ROOT, "frontend", "package.json")) as f:
            self.assertEqual(json.load(f)["version"], project_version())


class Layout(unittest.TestCase):
    def test_files(self):
        names = set(os.listdir(DIST))
        for f in ("plugin.json", "module.js", "gpx_cachingproxy_linux_amd64", "README.md", "CHANGELOG.md", "LICENSE", "img"):
            self.assertIn(f, names)
        with open(os.path.join(DIST, "LICENSE")) as f:
            self.assertIn("Apache License", f.read(500))
        with open(os.path.join(DIST, "README.md")) as f:
            readme = f.read()
        self.assertIn(PLUGIN_ID, readme)
        self.assertIn(project_version(), readme)
        self.assertNotIn("%VERSION%", readme)
        # nothing a Grafana plugin folder must not hold
        for dirpath, _, files in os.walk(DIST):
            for f in files:
                self.assertFalse(os.path.islink(os.path.join(dirpath, f)), f)

    def test_executable(self):
        st = os.stat(EXE)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o755)
        with open(EXE, "rb") as f:
            head = f.read(20)
        self.assertEqual(head[:4], b"\x7fELF")
        self.assertEqual(int.from_bytes(head[18:20], "little"), 62, "not x86-64")
        self.assertFalse(os.path.exists(os.path.join(DIST, "gpx_cachingproxy_linux_arm64")))

    def test_module_js_is_an_amd_module_exporting_the_plugin(self):
        node = shutil.which("node")
        out = subprocess.run([node, os.path.join(HERE, "load_module.cjs"), DIST], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        m = json.loads(out)
        self.assertIn("plugin", m["exports"])
        # Grafana's shared packages come from the host, never from the bundle
        self.assertTrue(set(m["deps"]) >= {"react", "@grafana/data", "@grafana/ui", "@grafana/runtime"})
        self.assertLess(os.path.getsize(os.path.join(DIST, "module.js")), 300_000)
        p = m["plugin"]
        self.assertTrue(p["extendsDataSourceWithBackend"])
        self.assertEqual(p["configEditor"], "function")
        self.assertEqual(p["queryEditor"], "function")
        self.assertEqual(p["defaultQuery"], {"method": "GET", "path": "/", "format": "table"})
        # dashboard variables expanded by the host, the plugin's time placeholders kept
        self.assertEqual(p["applied"]["path"], "/prod/x?from=${__from}&to=${__to:s}")

    def test_zip(self):
        zpath = os.path.join(ZIP_DIR, "%s-%s.zip" % (PLUGIN_ID, project_version()))
        with zipfile.ZipFile(zpath) as z:
            names = z.namelist()
            self.assertEqual({n.split("/")[0] for n in names}, {PLUGIN_ID})
            files = {n[len(PLUGIN_ID) + 1:] for n in names if not n.endswith("/")}
            on_disk = {os.path.relpath(os.path.join(d, f), DIST) for d, _, fs in os.walk(DIST) for f in fs}
            self.assertEqual(files, on_disk)
            exe = z.getinfo(PLUGIN_ID + "/gpx_cachingproxy_linux_amd64")
            self.assertEqual((exe.external_attr >> 16) & 0o777, 0o755)
            with open(EXE, "rb") as f:
                self.assertEqual(z.read(exe), f.read())


class Ids(unittest.TestCase):
    def test_the_id_is_the_same_everywhere(self):
        pid = plugin_json()["id"]
        readme = harness.read_text(os.path.join(ROOT, "README.md"))
        self.assertIn(pid, readme)
        self.assertIn("gpx_cachingproxy", readme)
        ini = harness.read_text(os.path.join(PROVISIONING, "grafana.ini"))
        self.assertRegex(ini, r"(?m)^allow_loading_unsigned_plugins = %s$" % re.escape(pid))
        self.assertIn("[plugin.%s]" % pid, ini)
        files = sorted(os.listdir(os.path.join(PROVISIONING, "datasources")))
        self.assertEqual(len(files), 2)
        for f in files:
            doc = yaml.safe_load(harness.read_text(os.path.join(PROVISIONING, "datasources", f)))
            self.assertEqual(doc["apiVersion"], 1)
            for ds in doc["datasources"]:
                self.assertEqual(ds["type"], pid)
        self.assertIn("PLUGIN_ID=%s" % pid, harness.read_text(os.path.join(HERE, "..", "scripts", "package.sh")))
        self.assertIn(pid, harness.read_text(os.path.join(DIST, "README.md")))
        # the plugin reports this id back in its logs and the harness speaks as Grafana with it
        self.assertIn('"%s"' % pid, harness.read_text(os.path.join(ROOT, "tests", "integration", "harness.py")))


class Host(unittest.TestCase):
    """The packaged executable, started as Grafana's plugin host starts it."""

    def test_handshake_line(self):
        env = harness.grafana_env()
        self.assertEqual(env["PLUGIN_PROTOCOL_VERSIONS"], "2")
        self.assertEqual(env["grafana_plugin_type"], "datasource")  # go-plugin's magic cookie
        proc = subprocess.Popen([EXE], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        try:
            line = b""
            deadline = time.time() + 10
            while not line.endswith(b"\n") and time.time() < deadline:
                r, _, _ = select.select([proc.stdout], [], [], deadline - time.time())
                if r:
                    ch = os.read(proc.stdout.fileno(), 1)
                    if not ch:
                        break
                    line += ch
            # CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK|ADDR|PROTOCOL[|SERVER-CERT]
            self.assertRegex(line.decode(), r"^1\|2\|unix\|/[^|]+\|grpc(\|[^|]*)?\n$")
            sock = line.decode().split("|")[3]
            self.assertTrue(stat.S_ISSOCK(os.stat(sock).st_mode))
        finally:
            proc.terminate()
            self.assertIsNotNone(proc.wait(timeout=5))
            proc.stdout.close()

    def test_without_the_cookie_it_refuses_to_run(self):
        env = harness.grafana_env()
        del env["grafana_plugin_type"]
        r = subprocess.run([EXE], env=env, capture_output=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")

    def test_provisioned_settings_pass_the_plugin_settings_check(self):
        up = harness.Upstream()
        up.routes["/oauth/token"] = lambda r: (200, {"Content-Type": "application/json"},
                                               b'{"access_token": "t", "token_type": "Bearer", "expires_in": 3600}')
        plugin = harness.Plugin(exe=EXE)
        try:
            base = up.url
            for f in sorted(os.listdir(os.path.join(PROVISIONING, "datasources"))):
                text = interpolate_env(harness.read_text(os.path.join(PROVISIONING, "datasources", f)), {})
                for ds in yaml.safe_load(text)["datasources"]:
                    # nothing leaves the machine: the upstream, token URL and Redis are local
                    jd = localize(ds.get("jsonData"), base, "redis://127.0.0.1:%d" % harness.free_port())
                    self.assertNotIn("example.com", json.dumps(jd))
                    s = harness.settings(base, jd, ds.get("secureJsonData"), uid=ds["uid"])
                    r = plugin.diag.CheckHealth(harness.pb.CheckHealthRequest(pluginContext=harness.context(s)),
                                                timeout=30)
                    self.assertFalse(r.message.startswith("Settings:"), "%s: %s" % (f, r.message))
                    print("%s: %s" % (f, r.message), file=sys.stderr)
            # the check above can fail: a bad key is reported as a settings error
            bad = harness.settings(base, {"cache": {"backend": "disk"}}, uid="bad")
            r = plugin.diag.CheckHealth(harness.pb.CheckHealthRequest(pluginContext=harness.context(bad)), timeout=30)
            self.assertTrue(r.message.startswith("Settings:"), r.message)
            self.assertIn("jsonData.cache.backend", r.message)
        finally:
            plugin.stop()
            up.close()


if __name__ == "__main__":
    unittest.main()
