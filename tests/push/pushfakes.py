"""Start the push fakes and run push-driver against them.

Used by tests/integration/test_push_*.py. Every fake runs on a free
loopback port with a throwaway CA from tests/fakes/make-test-ca, writes
its NDJSON record into the test's directory, and is stopped by pid.
Binaries come from $VOUCH_BUILD (default build) under the repo root.
"""

import itertools
import json
import os
import select
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("VOUCH_BUILD", "build"))
DRIVER = os.path.join(BUILD, "tests", "push", "push-driver")
FAKES = os.path.join(BUILD, "tests", "fakes")
MAKE_CA = os.path.join(ROOT, "tests", "fakes", "make-test-ca")

TEAM = "TEAM123456"
KID = "KEY1234567"
TOPIC = "com.example.vouch"
PROJECT = "vouch-test"
EMAIL = "vouch@vouch-test.iam.gserviceaccount.com"

_serial = itertools.count(1)


def missing_binaries():
    """Names of the programs these tests need that are not built."""
    need = [DRIVER, os.path.join(FAKES, "fake_apns"),
            os.path.join(FAKES, "fake_fcm")]
    return [p for p in need if not os.access(p, os.X_OK)]


def make_ca(directory):
    subprocess.run([MAKE_CA, str(directory)], check=True,
                   stdout=subprocess.DEVNULL)
    return str(directory)


class Fake:
    """One fake_apns or fake_fcm process with a plan and a record."""

    def __init__(self, kind, ca, workdir, plan=None, args=()):
        self.kind = kind
        self.ca = ca
        self.serial = next(_serial)
        self.record = os.path.join(workdir, "%s-%d-record.ndjson" %
                                   (kind, self.serial))
        cmd = [os.path.join(FAKES, "fake_" + kind),
               "--listen", "127.0.0.1:0",
               "--cert", os.path.join(ca, "server.pem"),
               "--key", os.path.join(ca, "server.key"),
               "--record", self.record]
        if kind == "apns":
            cmd += ["--team-id", TEAM, "--key-id", KID, "--topic", TOPIC,
                    "--public-key", os.path.join(ca, "apns-key.pub.pem")]
        else:
            cmd += ["--project", PROJECT, "--client-email", EMAIL,
                    "--sa-public-key", os.path.join(ca, "fcm-sa.pub.pem")]
        if plan is not None:
            path = os.path.join(workdir, "%s-%d-plan.json" %
                                (kind, self.serial))
            with open(path, "w") as f:
                json.dump(plan, f)
            cmd += ["--plan", path]
        cmd += [str(a) for a in args]
        self.stderr = open(os.path.join(workdir, "%s-%d.err" %
                                        (kind, self.serial)), "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.port = self._ready()

    def _ready(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError("fake_%s did not start: %r" % (self.kind,
                                                              line))
        return int(line.split()[1])

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def events(self, ev=None):
        """The record so far, optionally only events named ev."""
        out = []
        if not os.path.exists(self.record):
            return out
        with open(self.record) as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    if ev is None or obj.get("ev") == ev:
                        out.append(obj)
        return out

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


def fcm_service_account(ca, fake, workdir):
    """A copy of the test service account pointing at the fake's /token."""
    with open(os.path.join(ca, "fcm-sa.json")) as f:
        text = f.read()
    text = text.replace("__TOKEN_URI__", fake.url + "/token")
    path = os.path.join(workdir, "sa.json")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


class Run:
    """What one push-driver run printed."""

    def __init__(self, proc, elapsed):
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.lines = [json.loads(l) for l in proc.stdout.splitlines()
                      if l.startswith("{")]
        self.completions = [l for l in self.lines if "outcome" in l]
        summaries = [l for l in self.lines if l.get("summary")]
        self.summary = summaries[-1] if summaries else None
        floods = [l for l in self.lines if "flood" in l]
        self.flood = floods[0] if floods else None

    def by_index(self):
        out = {}
        for c in self.completions:
            out.setdefault(c["i"], []).append(c)
        return out


def apns_args(fake, ca):
    return ["--provider", "apns", "--endpoint", fake.url,
            "--ca", os.path.join(ca, "ca.pem"), "--team-id", TEAM,
            "--key-id", KID, "--key", os.path.join(ca, "apns-key.p8"),
            "--topic", TOPIC]


def fcm_args(fake, ca, sa_path):
    return ["--provider", "fcm", "--endpoint", fake.url,
            "--ca", os.path.join(ca, "ca.pem"), "--sa", sa_path]


def drive(args, timeout=60):
    """Run push-driver with args and parse its output."""
    t = time.monotonic()
    proc = subprocess.run([DRIVER, "--log"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)
    run = Run(proc, time.monotonic() - t)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.summary is not None, run.stderr[-3000:]
    return run
