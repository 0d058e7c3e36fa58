"""Throwaway TLS material for the integration tests, made at test time with the `openssl` CLI
into a temporary directory (nothing generated is committed): a CA, a server certificate for
127.0.0.1/localhost signed by it, a client certificate signed by it, and an unrelated CA."""
import os
import shutil
import subprocess
import tempfile


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[:2]), r.stderr.decode()))


def _key(cwd, name):
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-out", name + ".key"], cwd)


def _ca(cwd, name, cn):
    _key(cwd, name)
    _openssl(["req", "-x509", "-new", "-key", name + ".key", "-out", name + ".pem", "-days", "2",
              "-subj", "/CN=" + cn,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd)


def _leaf(cwd, name, cn, ca, ext, serial):
    _key(cwd, name)
    _openssl(["req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn],
             cwd)
    with open(os.path.join(cwd, name + ".ext"), "w") as f:
        f.write(ext)
    _openssl(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-set_serial", str(serial), "-days", "2", "-out", name + ".pem",
              "-extfile", name + ".ext"], cwd)


class Certs:
    """Paths (attributes ending in _path) and PEM texts of the generated material."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cp-certs-")
        d = self.dir
        _ca(d, "ca", "cachingproxy test CA")
        _ca(d, "otherca", "unrelated test CA")
        _leaf(d, "server", "localhost", "ca",
              "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n", 1001)
        _leaf(d, "client", "cp-client", "ca",
              "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
              "extendedKeyUsage=clientAuth\n", 1002)
        for name in ("ca", "otherca", "server", "client"):
            setattr(self, name + "_path", os.path.join(d, name + ".pem"))
            setattr(self, name + "_key_path", os.path.join(d, name + ".key"))
            with open(os.path.join(d, name + ".pem")) as f:
                setattr(self, name + "_pem", f.read())
            with open(os.path.join(d, name + ".key")) as f:
                setattr(self, name + "_key_pem", f.read())

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
