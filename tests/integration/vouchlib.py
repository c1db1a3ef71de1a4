"""Helpers for the vouch integration tests.

Runs the real binaries (vouchd, vouchctl) against a throwaway PostgreSQL
cluster made by ops/devdb, writes their configuration and keys, and
offers a small HTTP client plus assertions for the problem+json errors
of the contract.
"""

import datetime
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import psycopg2
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEVDB = os.path.join(REPO, "ops", "devdb")

UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
TIME_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ZERO_HASH = "0" * 64

# Lines in a log that mean a sanitizer caught something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:",
                   "ERROR: LeakSanitizer")

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def build_dir():
    """The directory holding vouchd and vouchctl."""
    b = os.environ.get("VOUCH_BUILD", "build")
    return b if os.path.isabs(b) else os.path.join(REPO, b)


def vouchd_bin():
    return os.path.join(build_dir(), "vouchd")


def vouchctl_bin():
    return os.path.join(build_dir(), "vouchctl")


def sanitizer_env():
    """The environment for a child process, with sanitizer options."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return env


def sanitizer_report(text):
    """The part of text from the first sanitizer report on, or None."""
    for mark in SANITIZER_MARKS:
        i = text.find(mark)
        if i >= 0:
            return text[max(0, i - 200):i + 4000]
    return None


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=60):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --- PostgreSQL ------------------------------------------------------------

class PgCluster:
    """A cluster run by ops/devdb in a directory of its own."""

    _names = itertools.count(1)

    def __init__(self, directory):
        self.dir = directory
        self.url = None

    def start(self):
        r = subprocess.run([DEVDB, "start", self.dir], capture_output=True,
                           text=True, timeout=90)
        if r.returncode != 0:
            raise RuntimeError("ops/devdb start %s failed:\n%s%s"
                               % (self.dir, r.stdout, r.stderr))
        self.url = r.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self):
        subprocess.run([DEVDB, "stop", self.dir], capture_output=True,
                       text=True, timeout=60)

    def db_url(self, name):
        """The URL of database name on this cluster."""
        u = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(u._replace(path="/" + name))

    def create_database(self):
        """Create a fresh, empty database and return its URL."""
        name = "vouch_%d_%d" % (os.getpid(), next(self._names))
        conn = psycopg2.connect(self.db_url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE "%s"' % name)
        finally:
            conn.close()
        return self.db_url(name)


def sql(url, query, params=None, fetch=True):
    """Run one statement on the database at url and return its rows."""
    conn = psycopg2.connect(url)
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute(query, params)
                if fetch and cur.description is not None:
                    return cur.fetchall()
                return cur.rowcount
    finally:
        conn.close()


# --- configuration and keys --------------------------------------------------

def make_keys(directory):
    """Write a P-256 signing key and a 32-byte secrets key, mode 0600."""
    signing = os.path.join(directory, "token-key.pem")
    secret = os.path.join(directory, "secret.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", signing],
                   check=True, capture_output=True)
    with open(secret, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(signing, 0o600)
    os.chmod(secret, 0o600)
    return signing, secret


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def toml_text(conf):
    """TOML for a dict of sections, each a dict of keys."""
    out = []
    for section, keys in conf.items():
        out.append("[%s]" % section)
        for k, v in keys.items():
            out.append("%s = %s" % (k, toml_value(v)))
        out.append("")
    return "\n".join(out)


def merge_conf(base, extra):
    """base updated section by section with extra (None drops a key)."""
    out = {s: dict(k) for s, k in base.items()}
    for section, keys in (extra or {}).items():
        dst = out.setdefault(section, {})
        for k, v in keys.items():
            if v is None:
                dst.pop(k, None)
            else:
                dst[k] = v
    return out


def base_conf(port, db_url, signing, secret):
    return {
        "server": {"listen": "127.0.0.1:%d" % port,
                   "public_url": "http://127.0.0.1:%d" % port},
        "log": {"level": "debug"},
        "database": {"url": db_url},
        "tokens": {"signing_key_file": signing},
        "secrets": {"key_file": secret},
        "auth": {"rate_limit_per_minute": 600000,
                 "rate_limit_burst": 100000},
    }


# --- the binaries ------------------------------------------------------------

def run_vouchctl(config, *args, timeout=60):
    """Run vouchctl -c config args...; fails on a sanitizer report."""
    r = subprocess.run([vouchctl_bin(), "-c", config] + list(args),
                       capture_output=True, text=True, timeout=timeout,
                       env=sanitizer_env())
    rep = sanitizer_report(r.stderr)
    assert rep is None, "vouchctl %s: sanitizer report:\n%s" % (args, rep)
    return r


def run_vouchd_check(config, timeout=30):
    """Run vouchd -c config --check."""
    r = subprocess.run([vouchd_bin(), "-c", config, "--check"],
                       capture_output=True, text=True, timeout=timeout,
                       env=sanitizer_env())
    rep = sanitizer_report(r.stderr)
    assert rep is None, "vouchd --check: sanitizer report:\n%s" % rep
    return r


class Api(requests.Session):
    """A session bound to one server, with an optional API key."""

    def __init__(self, base, key=None):
        super().__init__()
        self.base = base
        self.key = key
        if key is not None:
            self.headers["Authorization"] = "Bearer " + key

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.base + url
        kwargs.setdefault("timeout", 15)
        return super().request(method, url, *args, **kwargs)

    def list_all(self, path, params=None, limit=None):
        """Follow next_cursor through every page; returns all items."""
        params = dict(params or {})
        if limit is not None:
            params["limit"] = limit
        items = []
        for _ in range(10000):
            r = self.get(path, params=params)
            assert r.status_code == 200, describe(r)
            body = r.json()
            assert set(body) >= {"items", "next_cursor"}, body
            items.extend(body["items"])
            if body["next_cursor"] is None:
                return items
            assert isinstance(body["next_cursor"], str) and \
                body["next_cursor"], body
            params["cursor"] = body["next_cursor"]
        raise AssertionError("%s: cursors never end" % path)


class Tenant:
    """An MSP with its first admin, as vouchctl tenant create made it."""

    def __init__(self, server, created):
        self.server = server
        self.msp_id = created["msp_id"]
        self.technician_id = created["technician_id"]
        self.api_key = created["api_key"]
        self.api = server.client(self.api_key)

    def customer(self, name="Ajax Ltd", **fields):
        body = dict(name=name, **fields)
        r = self.api.post("/v1/customers", json=body)
        assert r.status_code == 201, describe(r)
        return r.json()

    def user(self, customer_id, display_name="Tom Jones", **fields):
        body = dict(customer_id=customer_id, display_name=display_name,
                    **fields)
        r = self.api.post("/v1/users", json=body)
        assert r.status_code == 201, describe(r)
        return r.json()

    def technician(self, role="technician", display_name="Pat Tech",
                   email=None):
        email = email or "tech-%s@msp.example" % os.urandom(4).hex()
        r = self.api.post("/v1/technicians", json={
            "display_name": display_name, "email": email, "role": role})
        assert r.status_code == 201, describe(r)
        return r.json()

    def events(self, **params):
        return self.api.list_all("/v1/events", params=params, limit=500)


class Vouchd:
    """One vouchd process with its own config, keys, database and log."""

    _ids = itertools.count(1)

    def __init__(self, workdir, db_url, conf=None):
        self.n = next(self._ids)
        self.dir = os.path.join(workdir, "vouchd-%d" % self.n)
        os.makedirs(self.dir)
        self.db_url = db_url
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.signing, self.secret = make_keys(self.dir)
        self.conf = merge_conf(base_conf(self.port, db_url, self.signing,
                                         self.secret), conf)
        self.config = os.path.join(self.dir, "vouch.toml")
        self.log = os.path.join(self.dir, "vouchd.log")
        self.proc = None
        self.write_config()

    def write_config(self):
        with open(self.config, "w") as f:
            f.write(toml_text(self.conf))

    def start(self, wait=True):
        """Start; when another process took the port first, take another."""
        for attempt in range(3):
            self.spawn()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except AssertionError:
                text = self.log_text()
                if self.alive() or attempt == 2 or not (
                        "in use" in text or "cannot listen" in text):
                    raise
            self.set_port(free_port())
        return self

    def set_port(self, port):
        self.port = port
        self.base = "http://127.0.0.1:%d" % port
        self.conf["server"]["listen"] = "127.0.0.1:%d" % port
        if "public_url" in self.conf["server"]:
            self.conf["server"]["public_url"] = self.base
        self.write_config()

    def spawn(self):
        logf = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                [vouchd_bin(), "-c", self.config], stdin=subprocess.DEVNULL,
                stdout=logf, stderr=logf, env=sanitizer_env())
        finally:
            logf.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_status(self, path, status, timeout):
        """Poll path until it answers status; returns the last reply."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if not self.alive():
                raise AssertionError(
                    "vouchd exited (%s) while waiting for %s %d; log:\n%s"
                    % (self.proc.returncode, path, status, tail(self.log)))
            try:
                last = requests.get(self.base + path, timeout=2)
                if last.status_code == status:
                    return last
            except requests.RequestException:
                last = None
            if time.monotonic() > deadline:
                raise AssertionError(
                    "%s did not answer %d within %.0f s (last: %s); log:\n%s"
                    % (path, status, timeout,
                       describe(last) if last is not None else "no reply",
                       tail(self.log)))
            time.sleep(0.1)

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        return self.wait_status("/readyz", 200, timeout)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop with sig; returns (exit code, seconds taken)."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("vouchd ignored %s for %.0f s; log:\n%s"
                                 % (sig.name, timeout, tail(self.log)))
        return rc, time.monotonic() - t0

    def log_text(self):
        try:
            with open(self.log, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def check_log(self):
        rep = sanitizer_report(self.log_text())
        assert rep is None, "vouchd %d: sanitizer report:\n%s" % (self.n,
                                                                  rep)

    def finish(self):
        """Stop (if running), then insist on a clean exit and log."""
        if self.proc is None:
            return
        was_running = self.proc.poll() is None
        rc, _ = self.stop()
        self.check_log()
        if was_running:
            assert rc == 0, "vouchd exited %s after SIGTERM; log:\n%s" % (
                rc, tail(self.log))

    def client(self, key=None):
        return Api(self.base, key)

    def ctl(self, *args, **kw):
        return run_vouchctl(self.config, *args, **kw)

    def tenant(self, name=None):
        name = name or "MSP %s" % os.urandom(3).hex()
        r = self.ctl("tenant", "create", "--name", name)
        assert r.returncode == 0, "tenant create: %d\n%s%s" % (
            r.returncode, r.stdout, r.stderr)
        return Tenant(self, json.loads(r.stdout))


# --- assertions ----------------------------------------------------------------

def describe(r):
    """A short text of a reply for assertion messages."""
    if r is None:
        return "no reply"
    body = r.text
    if len(body) > 600:
        body = body[:600] + "..."
    return "%s %s -> %d %s\n%s" % (r.request.method, r.request.url,
                                   r.status_code,
                                   r.headers.get("Content-Type"), body)


def assert_problem(r, status, code, field=None):
    """r is an RFC 9457 problem with this status and code (and field)."""
    assert r.status_code == status, describe(r)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == \
        "application/problem+json", describe(r)
    assert r.headers.get("X-Request-Id"), "no X-Request-Id: " + describe(r)
    body = r.json()
    for k in ("type", "title", "detail", "code"):
        assert isinstance(body.get(k), str), "%s missing: %s" % (
            k, describe(r))
    assert body.get("status") == status, describe(r)
    assert body["code"] == code, describe(r)
    if field is not None:
        assert body.get("field") == field, describe(r)
    return body


def assert_json(r, status):
    """r has this status and a JSON body; returns the body."""
    assert r.status_code == status, describe(r)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", \
        describe(r)
    assert r.headers.get("X-Request-Id"), "no X-Request-Id: " + describe(r)
    return r.json()


def parse_time(s):
    """An RFC 3339 UTC string as an aware datetime."""
    assert isinstance(s, str) and TIME_RE.match(s), "not RFC 3339 UTC: %r" % s
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def rfc3339(dt):
    return dt.astimezone(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def is_uuid(s):
    return isinstance(s, str) and bool(UUID_RE.match(s))


def parallel(fn, args, workers=8):
    """Run fn over args on threads; returns the results in order."""
    results = [None] * len(args)
    errors = []

    def work(i, a):
        try:
            results[i] = fn(a)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, a))
               for i, a in enumerate(args)]
    for i in range(0, len(threads), workers):
        batch = threads[i:i + workers]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
    if errors:
        raise errors[0]
    return results
