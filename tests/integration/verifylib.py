"""Fixtures and helpers for the caller-verification tests.

Starts the push fakes (fake_apns, fake_fcm from tests/fakes) with a test
CA, the SMTP sink and the fake SMS API, and a vouchd whose [apns], [fcm],
[email] and [sms] point at them. Offers a device written in Python (a
P-256 key from `cryptography`, ES256 decisions signed with PyJWT), a
reader of the verification event stream, and waits on the fakes' records.

Test modules load this file as a plugin (pytest_plugins = ["verifylib"])
so the session fixtures are shared by every module that uses them.
"""

import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import jwt
import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import vouchlib
from vouchlib import describe

FAKES_SRC = os.path.join(vouchlib.REPO, "tests", "fakes")
PYTHON = "/usr/bin/python3"

TEAM = "TEAM123456"
KID = "KEY1234567"
TOPIC = "com.example.vouch"
PROJECT = "vouch-test"
SA_EMAIL = "vouch@vouch-test.iam.gserviceaccount.com"
SMS_SID = "AC" + "0123456789abcdef" * 2
SMS_TOKEN = "sms-secret-" + "7" * 21
SMS_FROM = "+15550001111"
MAIL_FROM = "vouch <vouch@msp.example>"

# Device tokens the session's fakes treat specially (see FAKE_PLAN).
DEAD_APNS = "dead" * 16
DEAD_FCM = "dead-fcm:" + "D" * 140
SLOW_APNS = "5105" * 16
SLOW_MS = 1500
BAD_APNS = "bad0" * 16

FAKE_PLAN = {"rules": [
    {"token": DEAD_APNS, "status": 410, "reason": "Unregistered",
     "timestamp": 1700000000000},
    {"token": DEAD_FCM, "status": 404, "reason": "UNREGISTERED"},
    {"token": SLOW_APNS, "delay_ms": SLOW_MS},
    {"token": BAD_APNS, "status": 400, "reason": "BadDeviceToken"},
]}

FINAL = ("approved", "denied", "expired", "canceled", "failed")
ORDER = {"pending": 0, "sent": 1}
ORDER.update({s: 2 for s in FINAL})

BASE_VERIFY_CONF = {
    "outbox": {"lease_seconds": 3, "poll_ms": 200},
    "verification": {"enroll_per_minute": 100000},
}


# --- processes that print "ready PORT" ---------------------------------------

class ReadyProcess:
    """A child that prints one "ready PORT" line once it listens."""

    def __init__(self, cmd, log):
        self.log = log
        with open(log, "ab") as errf:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=errf, env=vouchlib.sanitizer_env())
        line = self.proc.stdout.readline().decode(errors="replace")
        m = re.fullmatch(r"ready (\d+)\n", line)
        if m is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not start: %r\n%s"
                                 % (cmd[0], line, vouchlib.tail(log)))
        self.port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        rep = vouchlib.sanitizer_report(vouchlib.tail(self.log, 400))
        assert rep is None, "%s: sanitizer report:\n%s" % (self.log, rep)


def read_ndjson(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass        # a line being written
    return out


def wait_until(fn, timeout, what, interval=0.05):
    """Poll fn until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


# --- the push fakes ----------------------------------------------------------

def make_ca(directory):
    subprocess.run([os.path.join(FAKES_SRC, "make-test-ca"), directory],
                   check=True, capture_output=True, timeout=60)
    return directory


class PushFake(ReadyProcess):
    """fake_apns or fake_fcm on a free port, with a plan and a record."""

    def __init__(self, kind, ca, directory, plan=None):
        tag = "%s-%s" % (kind, uuid.uuid4().hex[:8])
        self.kind = kind
        self.ca = ca
        self.record = os.path.join(directory, tag + ".ndjson")
        self.plan_path = os.path.join(directory, tag + "-plan.json")
        self.write_plan(plan or {"rules": []})
        binary = os.path.join(vouchlib.build_dir(), "tests", "fakes",
                              "fake_" + kind)
        cmd = [binary, "--listen", "127.0.0.1:0",
               "--cert", os.path.join(ca, "server.pem"),
               "--key", os.path.join(ca, "server.key"),
               "--record", self.record, "--plan", self.plan_path]
        if kind == "apns":
            cmd += ["--team-id", TEAM, "--key-id", KID, "--topic", TOPIC,
                    "--public-key", os.path.join(ca, "apns-key.pub.pem"),
                    "--token-updates", "100000"]
        else:
            cmd += ["--project", PROJECT, "--client-email", SA_EMAIL,
                    "--sa-public-key", os.path.join(ca, "fcm-sa.pub.pem")]
        super().__init__(cmd, os.path.join(directory, tag + ".log"))
        self.endpoint = "https://127.0.0.1:%d" % self.port

    def write_plan(self, plan):
        with open(self.plan_path, "w") as f:
            json.dump(plan, f)

    def set_plan(self, plan):
        """Replace the fault plan (the fake re-reads it on SIGHUP)."""
        self.write_plan(plan)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)

    def requests(self, token=None):
        """Recorded requests, each with its parsed body and device token."""
        out = []
        for r in read_ndjson(self.record):
            if r.get("ev") != "request":
                continue
            try:
                r["json"] = json.loads(r.get("body") or "null")
            except ValueError:
                r["json"] = None
            if self.kind == "apns":
                r["token"] = r.get("path", "").rpartition("/")[2]
            else:
                msg = (r["json"] or {}).get("message") or {}
                r["token"] = msg.get("token")
            if token is None or r["token"] == token:
                out.append(r)
        return out

    def wait_requests(self, token, count=1, timeout=15):
        return wait_until(
            lambda: (lambda rs: rs if len(rs) >= count else None)(
                self.requests(token)),
            timeout, "%d %s request(s) for token ...%s"
            % (count, self.kind, token[-6:]))


def fcm_service_account(ca, fake, directory):
    """fcm-sa.json with its token URI pointing at fake (mode 0600)."""
    with open(os.path.join(ca, "fcm-sa.json")) as f:
        text = f.read()
    path = os.path.join(directory, "fcm-sa-%d.json" % fake.port)
    with open(path, "w") as f:
        f.write(text.replace("__TOKEN_URI__",
                             "https://127.0.0.1:%d/token" % fake.port))
    os.chmod(path, 0o600)
    return path


def push_conf(ca, apns, fcm, directory):
    """[apns] and [fcm] sections for a vouchd using these fakes."""
    ca_file = os.path.join(ca, "ca.pem")
    return {
        "apns": {"enabled": True, "team_id": TEAM, "key_id": KID,
                 "key_file": os.path.join(ca, "apns-key.p8"),
                 "topic": TOPIC, "endpoint": apns.endpoint,
                 "ca_file": ca_file, "connections": 1},
        "fcm": {"enabled": True,
                "service_account_file": fcm_service_account(ca, fcm,
                                                            directory),
                "endpoint": fcm.endpoint, "ca_file": ca_file,
                "connections": 1},
    }


# --- the SMTP sink and the SMS API -------------------------------------------

class Sinks:
    """smtp_sink.py and fake_sms.py, with readers of what they got."""

    def __init__(self, ca, directory):
        self.ca = ca
        self.dir = directory
        self.mail_record = os.path.join(directory, "mail.ndjson")
        self.sms_record = os.path.join(directory, "sms.ndjson")
        self.smtp = ReadyProcess(
            [PYTHON, os.path.join(FAKES_SRC, "smtp_sink.py"), "--listen",
             "127.0.0.1:0", "--record", self.mail_record],
            os.path.join(directory, "smtp.log"))
        self.sms = ReadyProcess(
            [PYTHON, os.path.join(FAKES_SRC, "fake_sms.py"), "--listen",
             "127.0.0.1:0", "--cert", os.path.join(ca, "server.pem"),
             "--key", os.path.join(ca, "server.key"), "--sid", SMS_SID,
             "--token", SMS_TOKEN, "--record", self.sms_record],
            os.path.join(directory, "sms.log"))
        self.sms_token_file = os.path.join(directory, "sms-token")
        with open(self.sms_token_file, "w") as f:
            f.write(SMS_TOKEN)
        os.chmod(self.sms_token_file, 0o600)

    def conf(self):
        return {
            "email": {"smtp_url": "smtp://127.0.0.1:%d" % self.smtp.port,
                      "from": MAIL_FROM},
            "sms": {"api_base": "https://127.0.0.1:%d" % self.sms.port,
                    "account_sid": SMS_SID,
                    "auth_token_file": self.sms_token_file,
                    "from": SMS_FROM,
                    "ca_file": os.path.join(self.ca, "ca.pem")},
        }

    def mails(self, to):
        return [m for m in read_ndjson(self.mail_record)
                if m.get("ev") == "message" and to in m.get("to", [])]

    def texts(self, to):
        return [m for m in read_ndjson(self.sms_record)
                if m.get("to") == to and m.get("status") == 201]

    def wait_mail(self, to, count=1, timeout=15):
        return wait_until(lambda: (lambda ms: ms if len(ms) >= count
                                   else None)(self.mails(to)),
                          timeout, "mail to %s" % to)[count - 1]

    def wait_text(self, to, count=1, timeout=15):
        return wait_until(lambda: (lambda ms: ms if len(ms) >= count
                                   else None)(self.texts(to)),
                          timeout, "SMS to %s" % to)[count - 1]

    def stop(self):
        self.smtp.stop()
        self.sms.stop()


def mail_body(message):
    """The text of a recorded mail, quoted-printable undone."""
    msg = email.message_from_string(message["data"],
                                    policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",)) or msg
    return part.get_content()


def code_in(text, digits=(6, 8)):
    """The one run of 6 to 8 digits in text (a verification code)."""
    found = re.findall(r"(?<!\d)(\d{%d,%d})(?!\d)" % digits, text)
    assert len(found) == 1, "expected one code in %r" % text
    return found[0]


ENROLL_CODE_RE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})\b")


# --- the vouchd of these tests -----------------------------------------------

class Env:
    """The fakes of a session and how to point a vouchd at them."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "verify")
        os.makedirs(self.dir, exist_ok=True)
        self.ca = make_ca(os.path.join(self.dir, "ca"))
        self.apns = PushFake("apns", self.ca, self.dir, FAKE_PLAN)
        self.fcm = PushFake("fcm", self.ca, self.dir, FAKE_PLAN)
        self.sinks = Sinks(self.ca, self.dir)

    def conf(self, extra=None, apns=None, fcm=None):
        """A full vouchd conf: fakes, sinks, test settings, then extra."""
        base = vouchlib.merge_conf(
            push_conf(self.ca, apns or self.apns, fcm or self.fcm,
                      self.dir), self.sinks.conf())
        base = vouchlib.merge_conf(base, BASE_VERIFY_CONF)
        return vouchlib.merge_conf(base, extra)

    def fake(self, kind, plan=None):
        return PushFake(kind, self.ca, self.dir, plan)

    def stop(self):
        for p in (self.apns, self.fcm, self.sinks):
            p.stop()


@pytest.fixture(scope="session")
def venv(workdir):
    """The session's push fakes and message sinks."""
    env = Env(workdir)
    yield env
    env.stop()


@pytest.fixture(scope="session")
def vserver(pg, workdir, venv):
    """The vouchd the verification tests share, wired to the fakes."""
    v = vouchlib.Vouchd(workdir, pg.create_database(), venv.conf())
    v.start()
    yield v
    v.finish()


@pytest.fixture
def extra_fakes(venv):
    """Factory for fakes with a plan of their own; stopped afterwards."""
    started = []

    def make(kind, plan=None):
        f = venv.fake(kind, plan)
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


def new_phone():
    return "+1555%07d" % (int.from_bytes(os.urandom(3), "big") % 10**7)


def new_email(tag="user"):
    return "%s-%s@customer.example" % (tag, os.urandom(4).hex())


class World:
    """A tenant on a server with a customer and a user with email and
    phone, and helpers for its devices and verifications."""

    def __init__(self, server, tenant=None):
        self.server = server
        self.msp_name = None        # unknown for a tenant made elsewhere
        if tenant is None:
            self.msp_name = "MSP " + "".join(
                chr(ord("a") + b % 26) for b in os.urandom(6))
            tenant = server.tenant(self.msp_name)
        self.tenant = tenant
        self.api = self.tenant.api
        self.customer = self.tenant.customer()
        self.user = self.new_user()

    def new_user(self, **fields):
        """A user with a fresh email and phone; a field given as None is
        left out."""
        fields.setdefault("email", new_email())
        fields.setdefault("phone", new_phone())
        fields = {k: v for k, v in fields.items() if v is not None}
        return self.tenant.user(self.customer["id"], **fields)

    def enrollment(self, user=None, **body):
        user = user or self.user
        r = self.api.post("/v1/users/%s/enrollments" % user["id"],
                          json=body)
        assert r.status_code == 201, describe(r)
        return r.json()

    def device(self, user=None, platform="ios", push_token=None,
               name=None):
        """Enrol a new Python device for user (default: the user)."""
        d = Device(self.server.base, platform, push_token, name)
        d.enroll(self.enrollment(user)["code"])
        return d

    def verify(self, user=None, method="push", api=None, **body):
        user = user or self.user
        body = dict(user_id=user["id"], method=method, **body)
        r = (api or self.api).post("/v1/verifications", json=body)
        assert r.status_code == 201, describe(r)
        v = r.json()
        assert vouchlib.is_uuid(v["id"]), v
        return v

    def get(self, vid, api=None):
        r = (api or self.api).get("/v1/verifications/%s" % vid)
        assert r.status_code == 200, describe(r)
        return r.json()

    def wait_status(self, vid, status, timeout=15, api=None):
        """Poll the verification until its status is status."""
        last = {}

        def check():
            last["v"] = self.get(vid, api)
            return last["v"] if last["v"]["status"] == status else None
        try:
            return wait_until(check, timeout, "verification %s %s"
                              % (vid, status), interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s; last state %s" % (e, last.get("v")))

    def events(self, **params):
        return self.tenant.events(**params)


@pytest.fixture
def world(vserver):
    """A fresh tenant with a customer and a user on the shared server."""
    return World(vserver)


# --- a device in Python ------------------------------------------------------

def fcm_like_token():
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
        "0123456789-_"
    raw = os.urandom(156)
    chars = "".join(alphabet[b % len(alphabet)] for b in raw)
    return chars[:22] + ":APA91b" + chars[22:]


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Device:
    """The mobile app: a P-256 key, an enrolment, prompts and decisions."""

    def __init__(self, base, platform="ios", push_token=None, name=None,
                 key=None):
        self.base = base
        self.platform = platform
        self.push_token = push_token or (
            os.urandom(32).hex() if platform == "ios" else fcm_like_token())
        self.name = name
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.id = None
        self.token = None
        self.http = vouchlib.Api(base)

    def enroll_request(self, code, **override):
        body = {"code": code, "platform": self.platform,
                "push_token": self.push_token,
                "public_key": public_pem(self.key)}
        if self.name is not None:
            body["name"] = self.name
        body.update(override)
        return self.http.post("/v1/device/enroll", json=body)

    def enroll(self, code):
        r = self.enroll_request(code)
        body = vouchlib.assert_json(r, 201)
        assert vouchlib.is_uuid(body["device_id"]), body
        assert isinstance(body["token"], str) and body["token"], body
        vouchlib.parse_time(body["expires_at"])
        self.id = body["device_id"]
        self.set_token(body["token"])
        return body

    def set_token(self, token):
        self.token = token
        self.http.headers["Authorization"] = "Bearer " + token

    def prompts_request(self):
        return self.http.get("/v1/device/prompts")

    def prompts(self):
        r = self.prompts_request()
        body = vouchlib.assert_json(r, 200)
        return body["items"]

    def prompt(self, vid, timeout=10):
        """The open prompt with this id, waiting for it to show."""
        return wait_until(
            lambda: next((p for p in self.prompts() if p["id"] == vid),
                         None), timeout, "prompt %s" % vid, interval=0.1)

    def claims(self, vid, res, num=None, **override):
        c = {"vid": vid, "res": res, "num": num, "did": self.id,
             "iat": int(time.time())}
        c.update(override)
        return c

    def sign(self, claims, key=None):
        return jwt.encode(claims, key or self.key, algorithm="ES256")

    def post_decision(self, vid, jws):
        return self.http.post("/v1/device/prompts/%s/decision" % vid,
                              json={"decision": jws})

    def decide(self, vid, res, num=None, key=None, **override):
        """Sign and send a decision; returns the reply."""
        return self.post_decision(vid, self.sign(
            self.claims(vid, res, num, **override), key))

    def approve(self, vid, num):
        r = self.decide(vid, "approved", num)
        return vouchlib.assert_json(r, 200)

    def deny(self, vid):
        r = self.decide(vid, "denied")
        return vouchlib.assert_json(r, 200)


def hs256_confusion(claims, pem):
    """A JWS whose alg is HS256 keyed with the device's public key PEM."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(pem.encode(), ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(mac))


def unsigned(claims):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return "%s.%s." % (head, b64(json.dumps(claims).encode()))


# --- the event stream --------------------------------------------------------

class Watch:
    """GET /v1/verifications/{id}/watch read on a thread."""

    def __init__(self, api, vid, timeout=40):
        self.events = []
        self.ended = False
        self.error = None
        self.cond = threading.Condition()
        self.resp = api.get("/v1/verifications/%s/watch" % vid,
                            stream=True, timeout=(5, timeout))
        self.status_code = self.resp.status_code
        if self.status_code == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            self.ended = True

    def _run(self):
        buf = ""
        try:
            for chunk in self.resp.iter_content(chunk_size=None,
                                                decode_unicode=True):
                buf += chunk
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    self._block(block)
        except Exception as e:      # the test sees it through .error
            self.error = e
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def _block(self, block):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if event is None and not data:
            return
        with self.cond:
            self.events.append((event, json.loads("\n".join(data))))
            self.cond.notify_all()

    def statuses(self):
        with self.cond:
            return [d["status"] for _, d in self.events]

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "watch: timed out waiting for %s; got %s (ended %s,"
                        " error %r)" % (what, [d["status"] for _, d in
                                               self.events],
                                        self.ended, self.error))
                self.cond.wait(left)

    def wait_status(self, status, timeout=15):
        self.wait(lambda: any(d["status"] == status
                              for _, d in self.events), timeout, status)

    def wait_end(self, timeout=15):
        self.wait(lambda: self.ended, timeout, "the end of the stream")
        assert self.error is None, "watch failed: %r" % self.error


def watch_and_leave(server, key, vid, timeout=5):
    """Open a watch on a bare socket, read its first event, then hang up
    (a client that goes away in the middle of the stream)."""
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=timeout) as s:
        s.sendall(("GET /v1/verifications/%s/watch HTTP/1.1\r\n"
                   "Host: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                   "Accept: text/event-stream\r\n\r\n"
                   % (vid, server.port, key)).encode())
        data = b""
        while b"\n\n" not in data.partition(b"event: status")[2]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b"event: status" in data, data[:400]


def assert_transitions(events, final):
    """The events of a watch are status events, in state-machine order,
    without repeats, and end with final."""
    assert events, "no events"
    seen = []
    for name, data in events:
        assert name == "status", events
        seen.append(data["status"])
    ranks = [ORDER[s] for s in seen]
    assert ranks == sorted(ranks), "out of order: %s" % seen
    assert len(set(seen)) == len(seen), "repeated: %s" % seen
    assert seen[-1] == final, seen
    assert all(s not in FINAL for s in seen[:-1]), seen
    return seen


# --- the database behind a server --------------------------------------------

def backdate(server, vid, seconds=1):
    """Move a verification's expires_at into the past."""
    vouchlib.sql(server.db_url, "UPDATE verifications SET expires_at ="
                 " now() - make_interval(secs => %s) WHERE id = %s",
                 (seconds, vid), fetch=False)


def while_expired_and_locked(server, vid, action, hold=1.0):
    """Run action() on a thread while the verification's row is locked
    with its expires_at already past, then let go.

    Holding the row keeps the expiry timer (which skips locked rows) from
    marking it expired first, so what action does at the expiry moment is
    seen deterministically. Returns action's result.
    """
    conn = psycopg2.connect(server.db_url)
    result = {}

    def run():
        try:
            result["value"] = action()
        except BaseException as e:
            result["error"] = e
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE verifications SET expires_at = now() -"
                        " interval '1 second' WHERE id = %s", (vid,))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(hold)
        conn.commit()
        t.join(30)
    finally:
        conn.close()
    if "error" in result:
        raise result["error"]
    return result["value"]


# --- payload checks ----------------------------------------------------------

def assert_no_secrets(payload, secrets, allowed):
    """No number of secrets appears in payload, except inside the
    allowed strings (ids and tokens, which are random)."""
    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                assert not re.search(r"match|code|option|otp", k, re.I), \
                    "key %s in push payload" % path + "." + k
                walk(x, path + "." + k)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, "%s[%d]" % (path, i))
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, (int, float)):
            assert v not in secrets, "%s = %s in push payload" % (path, v)
        else:
            s = str(v)
            for a in allowed:
                s = s.replace(a, "")
            for n in secrets:
                assert not re.search(r"(?<!\d)%s(?!\d)" % n, s), \
                    "%s in %s = %r" % (n, path, v)
    walk(payload, "")


def epoch(ts):
    return vouchlib.parse_time(ts).timestamp()
