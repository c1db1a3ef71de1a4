"""Checks of the push fakes themselves (fake_apns, fake_fcm).

Each test starts its own fake on a free loopback port with a throwaway CA
from make-test-ca, drives it over TLS with Python's h2 and ssl modules, and
reads the NDJSON record. Frames are also parsed raw (hyperframe + hpack) so
protocol faults (GOAWAY, RST_STREAM, SETTINGS) can be asserted exactly.

Run: /usr/bin/python3 -m pytest -q tests/fakes
(VOUCH_BUILD=build/san to test the sanitizer build.)
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hyperframe.frame import Frame, HeadersFrame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("VOUCH_BUILD", "build")
FAKES = os.path.join(ROOT, BUILD, "tests", "fakes")

TEAM = "TEAM123456"
KID = "KEY1234567"
TOPIC = "com.example.vouch"
DEVICE = "ab" * 32
EMAIL = "vouch@vouch-test.iam.gserviceaccount.com"
PROJECT = "vouch-test"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
PAYLOAD = b'{"aps":{"alert":"Is this you?"}}'

REFUSED_STREAM = 7
PROTOCOL_ERROR = 1
ENHANCE_YOUR_CALM = 11
MAX_CONCURRENT_STREAMS = 3


# --- fixtures -------------------------------------------------------------

@pytest.fixture(scope="session")
def binaries():
    """Build the fakes once (a no-op when up to date) and return paths."""
    if "VOUCH_BUILD" not in os.environ:
        subprocess.run(["make", "-s", "-C", ROOT,
                        f"{BUILD}/tests/fakes/fake_apns",
                        f"{BUILD}/tests/fakes/fake_fcm"], check=True)
    paths = {n: os.path.join(FAKES, n) for n in ("fake_apns", "fake_fcm")}
    for p in paths.values():
        assert os.access(p, os.X_OK), f"{p} is not built"
    return paths


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    subprocess.run([os.path.join(ROOT, "tests", "fakes", "make-test-ca"),
                    str(d)], check=True)
    return d


class Fake:
    """One running fake process: its port, record and plan files."""

    def __init__(self, binary, certs, tmp, args, plan=None, record=True):
        self.record_path = tmp / f"record-{uuid.uuid4().hex[:8]}.ndjson"
        self.plan_path = tmp / f"plan-{uuid.uuid4().hex[:8]}.json"
        cmd = [binary, "--listen", "127.0.0.1:0",
               "--cert", str(certs / "server.pem"),
               "--key", str(certs / "server.key")] + list(args)
        if record:
            cmd += ["--record", str(self.record_path)]
        if plan is not None:
            self.plan_path.write_text(json.dumps(plan))
            cmd += ["--plan", str(self.plan_path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"ready (\d+)\n", line)
        assert m, f"no ready line: {line!r} {self.proc.stderr.read()}"
        self.port = int(m.group(1))
        self.ca = str(certs / "ca.pem")

    def records(self, ev=None):
        """The records (of kind EV), without their wall-clock "ts"."""
        if not self.record_path.exists():
            return []
        out = [json.loads(l) for l in
               self.record_path.read_text().splitlines() if l]
        for r in out:
            assert isinstance(r.pop("ts"), float)
        return [r for r in out if ev is None or r["ev"] == ev]

    def wait_for(self, ev, timeout=3.0):
        """The records of kind EV, polling until there is at least one."""
        deadline = time.monotonic() + timeout
        while not self.records(ev) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.records(ev)

    def client(self, **kw):
        return H2Client(self.port, self.ca, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("fake did not stop on SIGTERM")
            assert rc == 0, self.proc.stderr.read()


@pytest.fixture
def start(binaries, certs, tmp_path):
    """Factory: start("fake_apns", args, plan=...) -> Fake; stops them."""
    started = []

    def _start(name, args, plan=None, record=True):
        f = Fake(binaries[name], certs, tmp_path, args, plan, record)
        started.append(f)
        return f

    yield _start
    for f in started:
        f.stop()


def apns_args(certs, *extra):
    return ["--team-id", TEAM, "--key-id", KID, "--topic", TOPIC,
            "--public-key", str(certs / "apns-key.pub.pem")] + list(extra)


def fcm_args(certs, *extra):
    return ["--project", PROJECT, "--client-email", EMAIL,
            "--sa-public-key", str(certs / "fcm-sa.pub.pem")] + list(extra)


@pytest.fixture
def apns(start, certs):
    return lambda *extra, plan=None: start(
        "fake_apns", apns_args(certs, *extra), plan)


@pytest.fixture
def fcm(start, certs):
    return lambda *extra, plan=None: start(
        "fake_fcm", fcm_args(certs, *extra), plan)


# --- an HTTP/2 client with a raw frame log ---------------------------------

class Stream:
    def __init__(self):
        self.headers = None
        self.data = b""
        self.chunks = []
        self.ended = False
        self.reset = None

    @property
    def status(self):
        return int(self.headers[":status"]) if self.headers else None

    def json(self):
        return json.loads(self.data)


class H2Client:
    """h2 over ssl; every received frame is also logged raw in .frames."""

    def __init__(self, port, ca, host="127.0.0.1", alpn=("h2",)):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection((host, port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.authority = f"{host}:{port}"
        cfg = h2.config.H2Configuration(client_side=True,
                                        header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.streams = {}
        self.frames = []
        self.goaway = None
        self.closed = False
        self.h2_broken = False
        self.settings = []
        self.ping_acks = 0
        self._raw = b""
        self._hpack = hpack.Decoder()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, method, path, headers=(), body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"),
                (":authority", self.authority), (":path", path)]
        self.conn.send_headers(sid, hdrs + list(headers),
                               end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.streams[sid] = Stream()
        return sid

    def send_raw_headers(self, sid, headers, end=True):
        """HEADERS bypassing h2's own stream limit (to break the rules)."""
        f = HeadersFrame(sid)
        f.data = self.conn.encoder.encode(headers)
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        self.sock.sendall(f.serialize())
        self.streams[sid] = Stream()

    def ping(self):
        self.conn.ping(b"12345678")
        self.flush()

    def _log_raw(self, data):
        self._raw += data
        while len(self._raw) >= 9:
            frame, length = Frame.parse_frame_header(
                memoryview(self._raw[:9]))
            if len(self._raw) < 9 + length:
                break
            frame.parse_body(memoryview(self._raw[9:9 + length]))
            self._raw = self._raw[9 + length:]
            entry = {"type": frame.type, "stream": frame.stream_id,
                     "flags": set(frame.flags), "frame": frame}
            if isinstance(frame, HeadersFrame):
                entry["headers"] = dict(self._hpack.decode(frame.data))
            self.frames.append(entry)
            if frame.type == 0x7:
                self.goaway = frame

    def _event(self, ev):
        s = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            s.headers = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            s.data += ev.data
            s.chunks.append(ev.data)
            self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            s.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if s is not None:
                s.reset = ev.error_code
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for code, ch in ev.changed_settings.items():
                self.settings.append((int(code), ch.new_value))
        elif isinstance(ev, h2.events.PingAckReceived):
            self.ping_acks += 1

    def pump(self, until=lambda: False, timeout=3.0):
        """Read and handle frames until UNTIL() holds, EOF or timeout."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return until()
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                self.closed = True
                continue
            self._log_raw(data)
            if self.h2_broken:
                continue
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                # h2 refuses frames after GOAWAY; the raw log keeps going.
                self.h2_broken = True
                continue
            for ev in events:
                self._event(ev)
            try:
                self.flush()
            except OSError:
                pass
        return True

    def wait(self, sid, timeout=3.0):
        s = self.streams[sid]
        assert self.pump(lambda: s.ended or s.reset is not None, timeout), \
            f"no answer on stream {sid}"
        return s

    def max_streams(self):
        vals = [v for c, v in self.settings if c == MAX_CONCURRENT_STREAMS]
        return vals[-1] if vals else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- tokens ----------------------------------------------------------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


_TOKENS = {}


def apns_token(certs, iat=None, kid=KID, iss=TEAM, key=None):
    """An ES256 provider token. The plain one is made once and reused, as
    a client must: every new signature counts as a token update."""
    plain = iat is None and kid == KID and iss == TEAM and key is None
    if plain and certs in _TOKENS:
        return _TOKENS[certs]
    key = key or (certs / "apns-key.p8").read_bytes()
    tok = jwt.encode({"iss": iss, "iat": int(time.time()) if iat is None
                      else iat}, key, algorithm="ES256",
                     headers={"kid": kid})
    if plain:
        _TOKENS[certs] = tok
    return tok


def apns_headers(certs, token=None, **over):
    h = {"apns-topic": TOPIC, "apns-push-type": "alert",
         "apns-priority": "10", "apns-expiration": "0",
         "authorization": "bearer " + (token or apns_token(certs))}
    h.update(over)
    return [(k, v) for k, v in h.items() if v is not None]


def apns_send(c, certs, device=DEVICE, body=PAYLOAD, method="POST",
              headers=None, end=True, **over):
    return c.send(method, f"/3/device/{device}",
                  headers if headers is not None else
                  apns_headers(certs, **over), body, end)


def sa_key(certs):
    return json.loads((certs / "fcm-sa.json").read_text())["private_key"]


def fcm_assertion(certs, port, **over):
    now = int(time.time())
    claims = {"iss": EMAIL, "scope": SCOPE,
              "aud": f"https://127.0.0.1:{port}/token",
              "iat": now, "exp": now + 3600}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, sa_key(certs), algorithm="RS256")


def fcm_token_request(c, assertion,
                      grant="urn:ietf:params:oauth:grant-type:jwt-bearer"):
    body = f"grant_type={grant}&assertion={assertion}".replace(":", "%3A")
    sid = c.send("POST", "/token",
                 [("content-type", "application/x-www-form-urlencoded")],
                 body.encode())
    return c.wait(sid)


def fcm_login(c, certs, port):
    s = fcm_token_request(c, fcm_assertion(certs, port))
    assert s.status == 200, s.data
    return s.json()["access_token"]


def fcm_send(c, token, message=None, body=None, project=PROJECT):
    if body is None:
        body = json.dumps({"message": message or {
            "token": "device-token-1", "data": {"verify": "42"},
            "android": {"priority": "HIGH", "ttl": "30s"}}}).encode()
    hdrs = [("content-type", "application/json")]
    if token is not None:
        hdrs.append(("authorization", "Bearer " + token))
    return c.send("POST", f"/v1/projects/{project}/messages:send", hdrs,
                  body)


# --- APNs --------------------------------------------------------------------

def test_apns_valid_request_and_record(apns, certs):
    fake = apns()
    c = fake.client()
    s = c.wait(apns_send(c, certs))
    assert s.status == 200 and s.data == b""
    assert uuid.UUID(s.headers["apns-id"])

    given = str(uuid.uuid4())
    s = c.wait(apns_send(c, certs, **{"apns-id": given}))
    assert s.status == 200 and s.headers["apns-id"] == given
    c.close()

    reqs = fake.records("request")
    assert [r["status"] for r in reqs] == [200, 200]
    assert reqs[0]["n"] == 1 and reqs[1]["n"] == 2
    assert reqs[0]["path"] == f"/3/device/{DEVICE}"
    assert reqs[0]["headers"]["apns-topic"] == TOPIC
    assert json.loads(reqs[0]["body"]) == json.loads(PAYLOAD)
    assert reqs[0]["jwt"]["header"]["kid"] == KID
    assert reqs[0]["jwt"]["claims"]["iss"] == TEAM
    assert reqs[0]["action"] == "answer" and reqs[0]["reason"] is None
    assert fake.records("connect")[0]["conn"] == reqs[0]["conn"]
    assert len(fake.records("token")) == 1


def other_ec_key():
    k = ec.generate_private_key(ec.SECP256R1())
    return k.private_bytes(serialization.Encoding.PEM,
                           serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def hs256_confusion(certs):
    """An HS256 token keyed with the public key's PEM bytes."""
    h = b64u(json.dumps({"alg": "HS256", "kid": KID, "typ": "JWT"}).encode())
    c = b64u(json.dumps({"iss": TEAM, "iat": int(time.time())}).encode())
    key = (certs / "apns-key.pub.pem").read_bytes()
    sig = hmac.new(key, f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{b64u(sig)}"


def alg_none(certs):
    h = b64u(json.dumps({"alg": "none", "kid": KID}).encode())
    c = b64u(json.dumps({"iss": TEAM, "iat": int(time.time())}).encode())
    return f"{h}.{c}."


APNS_FAILURES = [
    # (name, request changes, status, reason)
    ("method", {"method": "GET", "body": None}, 405, "MethodNotAllowed"),
    ("path", {"path": "/3/devices/" + DEVICE}, 404, "BadPath"),
    ("no device", {"device": ""}, 400, "MissingDeviceToken"),
    ("device", {"device": "zz" * 32}, 400, "BadDeviceToken"),
    ("short device", {"device": "ab" * 31}, 400, "BadDeviceToken"),
    ("apns-id", {"apns-id": "not-a-uuid"}, 400, "BadMessageId"),
    ("no topic", {"apns-topic": None}, 400, "MissingTopic"),
    ("bad topic", {"apns-topic": "com example"}, 400, "BadTopic"),
    ("topic", {"apns-topic": "com.other.app"}, 400, "TopicDisallowed"),
    ("topic suffix", {"apns-topic": TOPIC + ".voip"}, 400,
     "DeviceTokenNotForTopic"),
    ("collapse", {"apns-collapse-id": "x" * 65}, 400, "BadCollapseId"),
    ("priority", {"apns-priority": "7"}, 400, "BadPriority"),
    ("push type", {"apns-push-type": "shout"}, 400, "InvalidPushType"),
    ("expiration", {"apns-expiration": "soon"}, 400, "BadExpirationDate"),
    ("duplicate", {"dup": True}, 400, "DuplicateHeaders"),
    ("no token", {"authorization": None}, 403, "MissingProviderToken"),
    ("not bearer", {"authorization": "basic abc"}, 403,
     "InvalidProviderToken"),
    ("garbage", {"token": "a.b.c"}, 403, "InvalidProviderToken"),
    ("other key", {"token_fn": lambda c: apns_token(c, key=other_ec_key())},
     403, "InvalidProviderToken"),
    ("kid", {"token_fn": lambda c: apns_token(c, kid="OTHERKEY00")}, 403,
     "InvalidProviderToken"),
    ("iss", {"token_fn": lambda c: apns_token(c, iss="OTHERTEAM0")}, 403,
     "InvalidProviderToken"),
    ("hs256", {"token_fn": hs256_confusion}, 403, "InvalidProviderToken"),
    ("alg none", {"token_fn": alg_none}, 403, "InvalidProviderToken"),
    ("old iat", {"token_fn": lambda c: apns_token(
        c, iat=int(time.time()) - 3700)}, 403, "ExpiredProviderToken"),
    ("future iat", {"token_fn": lambda c: apns_token(
        c, iat=int(time.time()) + 600)}, 403, "InvalidProviderToken"),
    ("empty", {"body": b""}, 400, "PayloadEmpty"),
    ("not json", {"body": b"hello"}, 400, "PayloadEmpty"),
    ("too large", {"body": b'{"a":"' + b"x" * 4100 + b'"}'}, 413,
     "PayloadTooLarge"),
    # order: header checks come before the token, the token before payload
    ("order", {"apns-priority": "7", "authorization": None}, 400,
     "BadPriority"),
    ("order2", {"authorization": None, "body": b""}, 403,
     "MissingProviderToken"),
]


@pytest.mark.parametrize("name,change,status,reason", APNS_FAILURES,
                         ids=[f[0] for f in APNS_FAILURES])
def test_apns_validation(apns, certs, name, change, status, reason):
    fake = apns()
    c = fake.client()
    change = dict(change)
    method = change.pop("method", "POST")
    body = change.pop("body", PAYLOAD)
    path = change.pop("path", None)
    device = change.pop("device", DEVICE)
    dup = change.pop("dup", False)
    token = change.pop("token", None)
    fn = change.pop("token_fn", None)
    if fn is not None:
        token = fn(certs)
    hdrs = apns_headers(certs, token=token, **change)
    if dup:
        hdrs.append(("apns-push-type", "alert"))
    sid = c.send(method, path or f"/3/device/{device}", hdrs, body)
    s = c.wait(sid)
    assert s.status == status
    assert s.json()["reason"] == reason
    assert uuid.UUID(s.headers["apns-id"])
    # Payload checks come after a valid token, which raises the limit.
    c.pump(timeout=0.1)
    want = 1000 if reason.startswith("Payload") else 1
    assert c.max_streams() == want
    rec = fake.records("request")[0]
    assert rec["status"] == status and rec["reason"] == reason


def test_apns_stream_limit_raised_by_valid_token(apns, certs):
    fake = apns("--max-streams", "50")
    c = fake.client()
    c.pump(lambda: c.max_streams() is not None)
    assert c.max_streams() == 1

    s = c.wait(apns_send(c, certs, authorization=None))
    assert s.status == 403
    c.pump(timeout=0.2)
    assert c.max_streams() == 1

    s = c.wait(apns_send(c, certs))
    assert s.status == 200
    assert c.pump(lambda: c.max_streams() == 50)
    # Now several streams at once are fine.
    sids = [apns_send(c, certs) for _ in range(20)]
    assert all(c.wait(sid).status == 200 for sid in sids)
    assert fake.records("settings")[0]["max_streams"] == 50
    assert fake.records("violation") == []


def test_apns_violation_is_a_connection_error(apns, certs):
    fake = apns()
    c = fake.client()
    c.pump(lambda: c.max_streams() == 1)
    c.pump(timeout=0.2)            # our SETTINGS ACK reaches the fake
    sid = apns_send(c, certs, body=None, end=False)   # stays open
    hdrs = [(":method", "POST"), (":scheme", "https"),
            (":authority", c.authority), (":path", f"/3/device/{DEVICE}")]
    c.send_raw_headers(sid + 2, hdrs + apns_headers(certs))
    assert c.pump(lambda: c.goaway is not None)
    assert c.goaway.error_code == PROTOCOL_ERROR
    v = fake.records("violation")
    assert v and v[0]["open"] == 2 and v[0]["limit"] == 1


def test_apns_token_updates_limited(apns, certs):
    fake = apns("--token-updates", "1")
    c = fake.client()
    now = int(time.time())
    a, b, third = (apns_token(certs, iat=now - i) for i in range(3))
    assert c.wait(apns_send(c, certs, token=a)).status == 200
    assert c.wait(apns_send(c, certs, token=b)).status == 200
    s = c.wait(apns_send(c, certs, token=third))
    assert s.status == 429
    assert s.json()["reason"] == "TooManyProviderTokenUpdates"
    assert c.wait(apns_send(c, certs, token=b)).status == 200
    toks = fake.records("token")
    assert [t["accepted"] for t in toks] == [True, True, False]
    assert toks[0]["key_id"] == KID and toks[0]["iat"] == now


def test_apns_plan_status_rules(apns, certs):
    dead = "cd" * 32
    fake = apns(plan={"rules": [
        {"token": dead, "status": 410, "reason": "Unregistered",
         "timestamp": 1700000000000},
        {"every": 3, "status": 503, "retry_after": 2},
    ]})
    c = fake.client()
    s = c.wait(apns_send(c, certs, device=dead))
    assert s.status == 410
    assert s.json() == {"reason": "Unregistered", "timestamp": 1700000000000}
    assert c.wait(apns_send(c, certs)).status == 200
    s = c.wait(apns_send(c, certs))
    assert s.status == 503 and s.headers["retry-after"] == "2"
    assert s.json()["reason"] == "ServiceUnavailable"
    assert [r["status"] for r in fake.records("request")] == [410, 200, 503]


def test_apns_plan_410_default_timestamp(apns, certs):
    fake = apns(plan={"rules": [{"nth": 1, "status": 410}]})
    c = fake.client()
    before = int(time.time() * 1000)
    s = c.wait(apns_send(c, certs))
    assert s.status == 410 and s.json()["reason"] == "Unregistered"
    assert before <= s.json()["timestamp"] <= before + 5000


def raised_client(fake, certs):
    """A client whose first request authenticated the connection."""
    c = fake.client()
    assert c.wait(apns_send(c, certs)).status == 200
    c.pump(lambda: c.max_streams() == 1000)
    return c


def test_apns_goaway_waits_for_lower_streams(apns, certs):
    fake = apns(plan={"rules": [
        {"nth": 2, "delay_ms": 400},
        {"nth": 3, "goaway": True},
    ]})
    c = raised_client(fake, certs)      # request 1 on stream 1
    slow = apns_send(c, certs)           # request 2, stream 3, delayed
    time.sleep(0.05)
    gone = apns_send(c, certs)           # request 3, stream 5: GOAWAY
    assert c.pump(lambda: c.goaway is not None)
    assert c.goaway.last_stream_id == slow
    assert c.goaway.error_code == 0
    assert c.pump(lambda: c.closed, timeout=3)
    answered = {f["stream"] for f in c.frames if f["type"] == 0x1}
    goaway_at = [i for i, f in enumerate(c.frames) if f["type"] == 0x7][0]
    late = [f for f in c.frames[goaway_at:] if f["stream"] == slow]
    assert late and late[0]["headers"][":status"] == "200"
    assert gone not in answered
    acts = [r["action"] for r in fake.records("request")]
    assert acts == ["answer", "delay", "goaway"]
    c.close()
    assert fake.wait_for("close")[-1]["why"] == "goaway"


def test_apns_refuse_and_stall(apns, certs):
    fake = apns(plan={"rules": [
        {"nth": 2, "refuse": True},
        {"nth": 3, "stall": True},
    ]})
    c = raised_client(fake, certs)
    s = c.wait(apns_send(c, certs))
    assert s.reset == REFUSED_STREAM and s.headers is None
    stalled = apns_send(c, certs)
    after = apns_send(c, certs)
    assert c.wait(after).status == 200
    c.pump(timeout=0.5)
    assert c.streams[stalled].headers is None
    assert c.streams[stalled].reset is None
    acts = [r["action"] for r in fake.records("request")]
    assert acts == ["answer", "refuse", "stall", "answer"]


def test_apns_close(apns, certs):
    fake = apns(plan={"rules": [{"nth": 1, "close": True}]})
    c = fake.client()
    sid = apns_send(c, certs)
    assert c.pump(lambda: c.closed)
    assert c.streams[sid].headers is None and c.goaway is None
    assert fake.wait_for("close")[-1]["why"] == "plan close"


def test_apns_lower_max_streams(apns, certs):
    fake = apns(plan={"rules": [{"nth": 2, "max_streams": 2}]})
    c = raised_client(fake, certs)
    assert c.wait(apns_send(c, certs)).status == 200
    assert c.pump(lambda: c.max_streams() == 2)
    assert c.conn.remote_settings.max_concurrent_streams == 2


def test_apns_pings(apns, certs):
    fake = apns()
    c = fake.client()
    c.ping()
    assert c.pump(lambda: c.ping_acks == 1)
    ignoring = apns(plan={"ignore_pings": True})
    d = ignoring.client()
    d.ping()
    d.pump(timeout=0.5)
    assert d.ping_acks == 0
    assert ignoring.records("ping") == [
        {"ev": "ping", "conn": 1, "acked": False}]
    assert fake.records("ping")[0]["acked"] is True


def test_apns_plan_reload_on_sighup(apns, certs):
    fake = apns(plan={"rules": []})
    c = fake.client()
    assert c.wait(apns_send(c, certs)).status == 200
    fake.plan_path.write_text(json.dumps(
        {"rules": [{"every": 1, "status": 500}]}))
    fake.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    s = c.wait(apns_send(c, certs))
    assert s.status == 500 and s.json()["reason"] == "InternalServerError"
    fake.plan_path.write_text("{not json")
    fake.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert c.wait(apns_send(c, certs)).status == 500   # old plan kept


@pytest.mark.parametrize("plan", [
    {"rules": [{"nth": 1}]},
    {"rules": [{"nth": 1, "every": 2, "refuse": True}]},
    {"rules": [{"nth": 1, "refuse": True, "colour": "red"}]},
    {"rules": {}},
    {"ignore_pings": 1},
])
def test_bad_plan_is_refused(binaries, certs, tmp_path, plan):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(plan))
    r = subprocess.run([binaries["fake_apns"], "--cert",
                        str(certs / "server.pem"), "--key",
                        str(certs / "server.key"), "--plan", str(p)] +
                       apns_args(certs), capture_output=True, text=True,
                       timeout=5)
    assert r.returncode == 2 and "plan" in r.stderr


def test_alpn_h2_required(apns, certs):
    fake = apns()
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        fake.client(alpn=("http/1.1",))


def test_apns_localhost_certificate(apns, certs):
    fake = apns()
    c = fake.client(host="localhost")
    assert c.wait(apns_send(c, certs)).status == 200


# --- FCM ---------------------------------------------------------------------

def test_fcm_oauth_and_send(fcm, certs):
    fake = fcm("--token-ttl", "120")
    c = fake.client()
    c.pump(lambda: c.max_streams() is not None)
    assert c.max_streams() == 100

    s = fcm_token_request(c, fcm_assertion(certs, fake.port))
    assert s.status == 200
    body = s.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120
    token = body["access_token"]

    s = c.wait(fcm_send(c, token))
    assert s.status == 200
    assert re.fullmatch(rf"projects/{PROJECT}/messages/\S+",
                        s.json()["name"])
    # Google's shape: the JSON in one DATA frame, then an empty DATA frame
    # carrying END_STREAM.
    data = [f for f in c.frames if f["type"] == 0x0 and f["stream"] == 3]
    assert len(data) == 2 and data[0]["frame"].data
    assert data[1]["frame"].data == b"" and "END_STREAM" in data[1]["flags"]

    s = c.wait(c.send("POST", f"/v1/projects/{PROJECT}/messages:send",
                      [("authorization", "Bearer " + token)],
                      json.dumps({"message": {"topic": "news"},
                                  "validate_only": True}).encode()))
    assert s.json()["name"] == f"projects/{PROJECT}/messages/fake_message_id"

    o = fake.records("oauth")
    assert o[0]["status"] == 200 and o[0]["client_email"] == EMAIL
    assert o[0]["jwt"]["header"]["alg"] == "RS256"
    r = fake.records("request")
    assert [x["status"] for x in r] == [200, 200] and r[0]["n"] == 1
    assert json.loads(r[0]["body"])["message"]["token"] == "device-token-1"


def test_fcm_unauthenticated(fcm, certs):
    fake = fcm("--token-ttl", "1")
    c = fake.client()
    for token in (None, "ya29.made-up"):
        s = c.wait(fcm_send(c, token))
        assert s.status == 401
        assert s.json()["error"]["status"] == "UNAUTHENTICATED"
        assert s.json()["error"]["code"] == 401
    token = fcm_login(c, certs, fake.port)
    assert c.wait(fcm_send(c, token)).status == 200
    time.sleep(1.2)
    assert c.wait(fcm_send(c, token)).status == 401


OAUTH_FAILURES = [
    ("iss", {"iss": "evil@example.com"}),
    ("scope", {"scope": "https://www.googleapis.com/auth/cloud-platform"}),
    ("aud", {"aud": "https://oauth2.googleapis.com/token"}),
    ("long", {"exp": int(time.time()) + 7200}),
    ("expired", {"iat": int(time.time()) - 7200,
                 "exp": int(time.time()) - 3700}),
    ("future", {"iat": int(time.time()) + 600,
                "exp": int(time.time()) + 900}),
    ("no exp", {"exp": None}),
]


@pytest.mark.parametrize("name,over", OAUTH_FAILURES,
                         ids=[f[0] for f in OAUTH_FAILURES])
def test_fcm_oauth_claims_rejected(fcm, certs, name, over):
    fake = fcm()
    c = fake.client()
    s = fcm_token_request(c, fcm_assertion(certs, fake.port, **over))
    assert s.status == 400 and s.json()["error"] == "invalid_grant"
    assert fake.records("oauth")[0]["status"] == 400


def test_fcm_oauth_signature_and_alg(fcm, certs):
    fake = fcm()
    c = fake.client()
    now = int(time.time())
    claims = {"iss": EMAIL, "scope": SCOPE, "iat": now, "exp": now + 3600,
              "aud": f"https://127.0.0.1:{fake.port}/token"}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    h = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    b = b64u(json.dumps(claims).encode())
    key = (certs / "fcm-sa.pub.pem").read_bytes()
    sig = hmac.new(key, f"{h}.{b}".encode(), hashlib.sha256).digest()
    for assertion in (forged, f"{h}.{b}.{b64u(sig)}", "not-a-jwt"):
        s = fcm_token_request(c, assertion)
        assert s.status == 400 and s.json()["error"] == "invalid_grant"
    s = fcm_token_request(c, fcm_assertion(certs, fake.port),
                          grant="client_credentials")
    assert s.status == 400 and s.json()["error"] == "unsupported_grant_type"


FCM_BAD_MESSAGES = [
    ("two targets", {"token": "t", "topic": "news"}),
    ("no target", {"data": {"a": "b"}}),
    ("empty token", {"token": ""}),
    ("data int", {"token": "t", "data": {"n": 1}}),
    ("reserved from", {"token": "t", "data": {"from": "x"}}),
    ("reserved google", {"token": "t", "data": {"google.x": "y"}}),
    ("reserved gcm", {"token": "t", "data": {"gcm.n": "y"}}),
    ("priority", {"token": "t", "android": {"priority": "URGENT"}}),
    ("ttl", {"token": "t", "android": {"ttl": "30"}}),
    ("ttl unit", {"token": "t", "android": {"ttl": "30m"}}),
    ("unknown field", {"token": "t", "colour": "red"}),
    ("android data", {"token": "t", "android": {"data": {"a": 2}}}),
    ("apns payload", {"token": "t", "apns": {"payload": "x"}}),
]


@pytest.mark.parametrize("name,msg", FCM_BAD_MESSAGES,
                         ids=[f[0] for f in FCM_BAD_MESSAGES])
def test_fcm_message_rejected(fcm, certs, name, msg):
    fake = fcm()
    c = fake.client()
    token = fcm_login(c, certs, fake.port)
    s = c.wait(fcm_send(c, token, message=msg))
    assert s.status == 400
    err = s.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT" and err["code"] == 400
    assert err["details"] == [{
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "INVALID_ARGUMENT"}]


def test_fcm_body_rules(fcm, certs):
    fake = fcm()
    c = fake.client()
    token = fcm_login(c, certs, fake.port)
    big = {"token": "t", "data": {"x": "y" * 4100}}
    for body in (json.dumps({"message": big}).encode(), b"{nope",
                 json.dumps({"message": {"token": "t"}, "x": 1}).encode()):
        s = c.wait(fcm_send(c, token, body=body))
        assert s.status == 400
    ok = {"token": "t", "android": {"ttl": "3.5s", "priority": "NORMAL"},
          "notification": {"title": "hi"}, "apns": {
              "headers": {"apns-priority": "10"}, "payload": {"aps": {}}}}
    assert c.wait(fcm_send(c, token, message=ok)).status == 200
    s = c.wait(fcm_send(c, token, project="someone-else"))
    assert s.status == 403


def test_fcm_plan_rules(fcm, certs):
    fake = fcm(plan={"rules": [
        {"token": "dead", "status": 404, "reason": "UNREGISTERED"},
        {"nth": 2, "status": 429, "retry_after": 7},
        {"nth": 3, "refuse": True},
    ]})
    c = fake.client()
    token = fcm_login(c, certs, fake.port)
    s = c.wait(fcm_send(c, token, message={"token": "dead"}))
    assert s.status == 404
    err = s.json()["error"]
    assert err["status"] == "NOT_FOUND"
    assert err["details"][0]["errorCode"] == "UNREGISTERED"
    s = c.wait(fcm_send(c, token))
    assert s.status == 429 and s.headers["retry-after"] == "7"
    assert s.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    assert c.wait(fcm_send(c, token)).reset == REFUSED_STREAM
    assert c.wait(fcm_send(c, token)).status == 200
    assert [r["n"] for r in fake.records("request")] == [1, 2, 3, 4]


def test_fcm_token_endpoint_fault(fcm, certs):
    fake = fcm(plan={"rules": [{"path": "/token", "status": 503,
                                "retry_after": 1}]})
    c = fake.client()
    s = fcm_token_request(c, fcm_assertion(certs, fake.port))
    assert s.status == 503 and s.headers["retry-after"] == "1"
    assert "access_token" not in s.json()


def test_fcm_too_many_pings(fcm, certs):
    fake = fcm()
    c = fake.client()
    token = fcm_login(c, certs, fake.port)
    for _ in range(2):
        c.ping()
    assert c.pump(lambda: c.ping_acks == 2)
    assert c.goaway is None
    assert c.wait(fcm_send(c, token)).status == 200   # a request resets
    for _ in range(3):
        c.ping()
    assert c.pump(lambda: c.goaway is not None)
    assert c.goaway.error_code == ENHANCE_YOUR_CALM
    assert c.goaway.additional_data == b"too_many_pings"
    assert c.pump(lambda: c.closed)


# --- fast mode under h2load ---------------------------------------------------

def h2load(port, path, payload, headers, n=20000):
    cmd = ["h2load", "-n", str(n), "-c", "1", "-m", "100", "-d",
           str(payload)]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd + [f"https://127.0.0.1:{port}{path}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    done = re.search(r"(\d+) succeeded", r.stdout)
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", r.stdout)
    codes = re.search(r"status codes: (\d+) 2xx", r.stdout)
    assert done and int(done.group(1)) == n, r.stdout
    assert codes and int(codes.group(1)) == n, r.stdout
    return float(rate.group(1))


@pytest.mark.skipif(shutil.which("h2load") is None, reason="no h2load")
def test_fast_mode_under_h2load(start, certs, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_bytes(b'{"aps":{"alert":"' + b"x" * 170 + b'"}}')
    fake = start("fake_apns", ["--fast"], record=False)
    rate = h2load(fake.port, f"/3/device/{DEVICE}", payload,
                  ["apns-topic: " + TOPIC, "apns-push-type: alert"])
    print(f"\nfake_apns --fast: {rate:.0f} req/s over one TLS connection")

    fake = start("fake_fcm", ["--fast"], record=False)
    rate = h2load(fake.port, f"/v1/projects/{PROJECT}/messages:send",
                  payload, ["content-type: application/json"])
    print(f"fake_fcm --fast: {rate:.0f} req/s over one TLS connection")
