"""Email and SMS through server/notify.c.

Each test starts the fakes it needs (tests/fakes/smtp_sink.py and
fake_sms.py) on free loopback ports, then runs the notify driver (built
into $VOUCH_BUILD/tests/notify/) with a configuration and a list of jobs,
and checks the outcomes it prints against what the fakes recorded.
"""

import base64
import datetime
import email
import email.policy
import email.utils
import http.client
import json
import os
import re
import select
import signal
import smtplib
import ssl
import subprocess
import time
import urllib.parse

import pytest

import vouchlib

FAKES = os.path.join(vouchlib.REPO, "tests", "fakes")
SINK = os.path.join(FAKES, "smtp_sink.py")
FAKE_SMS = os.path.join(FAKES, "fake_sms.py")
MAKE_TEST_CA = os.path.join(FAKES, "make-test-ca")
PYTHON = "/usr/bin/python3"

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "token-0123456789"
SENDER = "+15005550006"
FROM = "Vouch Desk <noreply@msp.example>"


def driver_bin():
    return os.path.join(vouchlib.build_dir(), "tests", "notify",
                        "notify-driver")


# --- certificates ----------------------------------------------------------

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_ca(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost."""
    if os.access(MAKE_TEST_CA, os.X_OK):
        subprocess.run([MAKE_TEST_CA, directory], check=True,
                       capture_output=True)
        return
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    openssl("genpkey", *ec, "-out", p("ca.key"))
    openssl("req", "-x509", "-new", "-key", p("ca.key"), "-days", "30",
            "-subj", "/CN=notify test CA", "-out", p("ca.pem"),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    openssl("genpkey", *ec, "-out", p("server.key"))
    openssl("req", "-new", "-key", p("server.key"), "-subj", "/CN=localhost",
            "-out", p("server.csr"))
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                "extendedKeyUsage = serverAuth\n")
    openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"),
            "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "30",
            "-extfile", p("ext.cnf"), "-out", p("server.pem"))


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The trusted test CA, and a second CA the client does not trust."""
    good = str(tmp_path_factory.mktemp("notify-ca"))
    other = str(tmp_path_factory.mktemp("notify-other-ca"))
    make_ca(good)
    make_ca(other)
    return {
        "ca": os.path.join(good, "ca.pem"),
        "cert": os.path.join(good, "server.pem"),
        "key": os.path.join(good, "server.key"),
        "untrusted_cert": os.path.join(other, "server.pem"),
        "untrusted_key": os.path.join(other, "server.key"),
    }


# --- fakes -----------------------------------------------------------------

class Fake:
    """One fake server process, its port and its record."""

    def __init__(self, script, args, record):
        self.record_path = record
        self.proc = subprocess.Popen([PYTHON, script] + args,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            self.proc.kill()
            raise AssertionError("%s did not start: %r %s" % (
                script, line, self.proc.stderr.read()))
        self.port = int(line.split()[1])

    def records(self):
        if not os.path.exists(self.record_path):
            return []
        with open(self.record_path, encoding="utf-8") as f:
            return [json.loads(x) for x in f if x.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("fake did not stop on SIGTERM")
        err = self.proc.stderr.read()
        assert self.proc.returncode == 0, "fake exited %s: %s" % (
            self.proc.returncode, err)
        assert "Traceback" not in err, err


@pytest.fixture
def fakes(tmp_path):
    """Factory: fakes.sink(*args) and fakes.sms(*args) -> Fake."""
    started = []

    class Factory:
        @staticmethod
        def sink(*args):
            rec = str(tmp_path / ("sink-%d.ndjson" % len(started)))
            f = Fake(SINK, ["--listen", "127.0.0.1:0", "--record", rec]
                     + list(args), rec)
            started.append(f)
            return f

        @staticmethod
        def sms(certs, *args, plan=None):
            rec = str(tmp_path / ("sms-%d.ndjson" % len(started)))
            extra = []
            if plan is not None:
                path = str(tmp_path / ("plan-%d.json" % len(started)))
                with open(path, "w") as fp:
                    json.dump(plan, fp)
                extra = ["--plan", path]
            cert = certs.get("use_cert", certs["cert"])
            key = certs.get("use_key", certs["key"])
            f = Fake(FAKE_SMS, ["--listen", "127.0.0.1:0", "--record", rec,
                                "--cert", cert, "--key", key, "--sid", SID,
                                "--token", TOKEN] + extra + list(args), rec)
            started.append(f)
            return f

    yield Factory
    for f in started:
        f.stop()


# --- the driver ------------------------------------------------------------

class Run:
    """What one driver run printed."""

    def __init__(self, proc, elapsed):
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.outcomes = []
        self.metrics = None
        self.error = None
        for line in proc.stdout.splitlines():
            obj = json.loads(line)
            if "job" in obj:
                self.outcomes.append(obj)
            elif "metrics" in obj:
                self.metrics = obj["metrics"]
            elif "error" in obj:
                self.error = obj["error"]
        self.outcomes.sort(key=lambda o: o["job"])

    def only(self):
        assert len(self.outcomes) == 1, self.outcomes
        return self.outcomes[0]


def secret_file(tmp_path, name, text):
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def write_conf(tmp_path, email=None, sms=None):
    signing, secret = vouchlib.make_keys(str(tmp_path))
    conf = {"log": {"level": "debug"},
            "tokens": {"signing_key_file": signing},
            "secrets": {"key_file": secret}}
    if email is not None:
        conf["email"] = email
    if sms is not None:
        conf["sms"] = sms
    path = str(tmp_path / "notify.toml")
    with open(path, "w") as f:
        f.write(vouchlib.toml_text(conf))
    return path


def run_driver(tmp_path, jobs, email=None, sms=None, args=(), expect_rc=0):
    """Run the driver over jobs; checks its exit and the sanitizers."""
    binary = driver_bin()
    assert os.access(binary, os.X_OK), \
        "%s is missing: build the notify driver" % binary
    conf = write_conf(tmp_path, email, sms)
    stdin = "".join(json.dumps(j) + "\n" for j in jobs)
    start = time.monotonic()
    proc = subprocess.run([binary, "--conf", conf] + list(args),
                          input=stdin, capture_output=True, text=True,
                          timeout=90, env=vouchlib.sanitizer_env())
    elapsed = time.monotonic() - start
    rep = vouchlib.sanitizer_report(proc.stderr)
    assert rep is None, "sanitizer report:\n%s" % rep
    assert proc.returncode == expect_rc, "driver exited %d:\n%s\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    return Run(proc, elapsed)


def email_conf(fake, certs=None, scheme="smtp", host="127.0.0.1", **extra):
    conf = {"smtp_url": "%s://%s:%d" % (scheme, host, fake.port),
            "from": FROM}
    if certs is not None:
        conf["ca_file"] = certs["ca"]
    conf.update(extra)
    return conf


def sms_conf(tmp_path, fake, certs, token=TOKEN):
    return {"api_base": "https://127.0.0.1:%d" % fake.port,
            "account_sid": SID,
            "auth_token_file": secret_file(tmp_path, "sms-token", token),
            "from": SENDER, "ca_file": certs["ca"]}


def mail_job(to="tom@ajax.example", subject="Your code", text="Code: 1"):
    return {"channel": "email", "to": to, "subject": subject, "text": text}


def sms_job(to="+447700900123", text="Your vouch code is 428913"):
    return {"channel": "sms", "to": to, "text": text}


def messages(fake):
    return [r for r in fake.records() if r.get("ev") == "message"]


def free_port():
    return vouchlib.free_port()


# --- email -----------------------------------------------------------------

BODY = ("Hello Tom,\n\nyour vouch code is 428913.\n.\n"
        "A line with = signs and trailing blanks   \n"
        "Ünïcödé text and a long line: " + "x" * 120 + "\n")
SUBJECT = "Grüße – your code from the helpdesk"


def test_email_over_starttls(tmp_path, fakes, certs):
    sink = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--require-starttls")
    run = run_driver(tmp_path, [mail_job(subject=SUBJECT, text=BODY)],
                     email=email_conf(sink, certs))

    out = run.only()
    assert out["outcome"] == "sent", out
    assert out["status"] == 250
    [rec] = messages(sink)
    assert rec["tls"] is True
    assert rec["from"] == "noreply@msp.example"
    assert rec["to"] == ["tom@ajax.example"]

    raw = rec["data"]
    head = raw.split("\r\n\r\n", 1)[0]
    assert "\r\nSubject: =?UTF-8?B?" in "\r\n" + head
    assert all(len(line) <= 998 for line in raw.split("\r\n"))
    assert not re.search(r"[^\r]\n", raw), "bare LF in the message"
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == SUBJECT
    assert msg["From"].addresses[0].display_name == "Vouch Desk"
    assert msg["From"].addresses[0].addr_spec == "noreply@msp.example"
    assert msg["To"].addresses[0].addr_spec == "tom@ajax.example"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert re.fullmatch(r"<[0-9a-f]{32}@msp\.example>", msg["Message-ID"])
    sent = email.utils.parsedate_to_datetime(msg["Date"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - sent).total_seconds()) < 300
    assert msg.get_content().replace("\r\n", "\n") == BODY

    # The log names the domain only, never the address or the code.
    assert "*@ajax.example" in run.stderr
    assert "tom@ajax.example" not in run.stderr
    assert "428913" not in run.stderr


def test_email_over_smtps(tmp_path, fakes, certs):
    sink = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--implicit-tls")
    run = run_driver(tmp_path, [mail_job()],
                     email=email_conf(sink, certs, scheme="smtps"))
    assert run.only()["outcome"] == "sent", run.outcomes
    [rec] = messages(sink)
    assert rec["tls"] is True


def test_email_loopback_without_starttls(tmp_path, fakes):
    """smtp:// to 127.x uses STARTTLS only when the server offers it."""
    sink = fakes.sink()
    run = run_driver(tmp_path, [mail_job()], email=email_conf(sink))
    assert run.only()["outcome"] == "sent", run.outcomes
    [rec] = messages(sink)
    assert rec["tls"] is False


def test_email_other_hosts_require_starttls(tmp_path, fakes, certs):
    """smtp:// to a name that is not a 127.x address insists on TLS."""
    plain = fakes.sink("--record-connects")
    run = run_driver(tmp_path, [mail_job()],
                     email=email_conf(plain, host="localhost"))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert "STARTTLS" in out["detail"]
    assert messages(plain) == []

    tls = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"])
    run = run_driver(tmp_path, [mail_job()],
                     email=email_conf(tls, certs, host="localhost"))
    assert run.only()["outcome"] == "sent", run.outcomes
    assert messages(tls)[0]["tls"] is True


def test_email_login(tmp_path, fakes, certs):
    sink = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--user", "vouch", "--password", "pa55word")
    good = email_conf(sink, certs, username="vouch",
                      password_file=secret_file(tmp_path, "pw", "pa55word"))
    run = run_driver(tmp_path, [mail_job()], email=good)
    assert run.only()["outcome"] == "sent", run.outcomes
    assert messages(sink)[0]["auth"] == "vouch"
    assert "pa55word" not in run.stderr

    bad = dict(good, password_file=secret_file(tmp_path, "pw2", "wrong"))
    run = run_driver(tmp_path, [mail_job()], email=bad)
    out = run.only()
    assert out["outcome"] == "failed", out
    assert "login" in out["detail"]
    assert len(messages(sink)) == 1


def test_email_recipient_refused(tmp_path, fakes):
    sink = fakes.sink("--fail-rcpt", "gone@ajax.example:550",
                      "--fail-rcpt", "busy@ajax.example:450")
    run = run_driver(tmp_path, [mail_job(to="gone@ajax.example"),
                                mail_job(to="busy@ajax.example"),
                                mail_job(to="tom@ajax.example")],
                     email=email_conf(sink))
    gone, busy, tom = run.outcomes
    assert gone["outcome"] == "failed" and gone["status"] == 550, gone
    assert busy["outcome"] == "retry" and busy["status"] == 450, busy
    assert tom["outcome"] == "sent", tom
    assert [m["to"] for m in messages(sink)] == [["tom@ajax.example"]]


def test_email_data_refused_for_now(tmp_path, fakes):
    sink = fakes.sink("--fail-data", "451")
    run = run_driver(tmp_path, [mail_job()], email=email_conf(sink))
    out = run.only()
    assert out["outcome"] == "retry" and out["status"] == 451, out


def test_email_server_down(tmp_path):
    conf = {"smtp_url": "smtp://127.0.0.1:%d" % free_port(), "from": FROM}
    run = run_driver(tmp_path, [mail_job()], email=conf)
    out = run.only()
    assert out["outcome"] == "retry", out
    assert out["status"] == 0


def test_email_timeout(tmp_path, fakes):
    sink = fakes.sink("--data-delay-ms", "4000")
    run = run_driver(tmp_path, [mail_job()], email=email_conf(sink),
                     args=["--timeout-ms", "800"])
    out = run.only()
    assert out["outcome"] == "retry", out
    assert "timed out" in out["detail"].lower() or "timeout" in \
        out["detail"].lower(), out
    assert out["ms"] < 3000


def test_email_untrusted_certificate(tmp_path, fakes, certs):
    sink = fakes.sink("--tls-cert", certs["untrusted_cert"],
                      "--tls-key", certs["untrusted_key"],
                      "--require-starttls")
    run = run_driver(tmp_path, [mail_job()], email=email_conf(sink, certs))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert out["detail"].startswith("tls: "), out
    assert "certificate" in out["detail"], out
    assert messages(sink) == []


@pytest.mark.parametrize("job", [
    mail_job(subject="Hi\r\nBcc: evil@attacker.example"),
    mail_job(subject="Hi\nBcc: evil@attacker.example"),
    mail_job(to="tom@ajax.example\r\nBcc: evil@attacker.example"),
    mail_job(to="Tom <tom@ajax.example>"),
])
def test_email_header_injection(tmp_path, fakes, job):
    sink = fakes.sink("--record-connects")
    run = run_driver(tmp_path, [job], email=email_conf(sink))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert sink.records() == [], "the server was contacted"


def test_email_unconfigured(tmp_path):
    run = run_driver(tmp_path, [mail_job(), sms_job()])
    assert [o["outcome"] for o in run.outcomes] == ["unconfigured"] * 2


# --- SMS -------------------------------------------------------------------

def test_sms_sent(tmp_path, fakes, certs):
    api = fakes.sms(certs)
    text = "Your vouch code is 428913 & that's it: ünï + 100%"
    run = run_driver(tmp_path, [sms_job(text=text)],
                     sms=sms_conf(tmp_path, api, certs))
    out = run.only()
    assert out["outcome"] == "sent", out
    assert out["status"] == 201
    [rec] = api.records()
    assert rec["method"] == "POST"
    assert rec["path"] == "/2010-04-01/Accounts/%s/Messages.json" % SID
    assert (rec["to"], rec["from"], rec["body"]) == (
        "+447700900123", SENDER, text)
    assert rec["status"] == 201
    assert out["id"] == rec["sid"] and out["id"].startswith("SM")

    assert "*0123" in run.stderr
    assert "+447700900123" not in run.stderr
    assert "428913" not in run.stderr
    assert TOKEN not in run.stderr


def test_sms_invalid_number(tmp_path, fakes, certs):
    api = fakes.sms(certs, plan={"rules": [
        {"to": "+15005550001", "status": 400, "code": 21211,
         "message": "The 'To' number +15005550001 is not a valid phone "
                    "number."}]})
    run = run_driver(tmp_path, [sms_job(to="+15005550001")],
                     sms=sms_conf(tmp_path, api, certs))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert out["status"] == 400
    assert "21211" in out["detail"]
    assert "+15005550001" not in out["detail"]


def test_sms_refused_before_sending(tmp_path, fakes, certs):
    api = fakes.sms(certs)
    run = run_driver(tmp_path, [sms_job(to="07700900123"),
                                sms_job(text=""), sms_job(text="x" * 1601)],
                     sms=sms_conf(tmp_path, api, certs))
    assert [o["outcome"] for o in run.outcomes] == ["failed"] * 3
    assert api.records() == []


def test_sms_rate_limited(tmp_path, fakes, certs):
    api = fakes.sms(certs, plan={"rules": [
        {"to": "+447700900123", "status": 429, "code": 20429,
         "retry_after": 7}]})
    run = run_driver(tmp_path, [sms_job()],
                     sms=sms_conf(tmp_path, api, certs))
    out = run.only()
    assert out["outcome"] == "retry", out
    assert out["status"] == 429
    assert out["retry_after"] == 7


def test_sms_service_unavailable(tmp_path, fakes, certs):
    api = fakes.sms(certs, plan={"rules": [{"every": 1, "status": 503}]})
    run = run_driver(tmp_path, [sms_job()],
                     sms=sms_conf(tmp_path, api, certs))
    out = run.only()
    assert out["outcome"] == "retry", out
    assert out["status"] == 503
    assert out["retry_after"] == -1


def test_sms_wrong_token(tmp_path, fakes, certs):
    api = fakes.sms(certs)
    run = run_driver(tmp_path, [sms_job()],
                     sms=sms_conf(tmp_path, api, certs, token="not-it"))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert out["status"] == 401
    assert [r["status"] for r in api.records()] == [401]


def test_sms_untrusted_certificate(tmp_path, fakes, certs):
    api = fakes.sms(dict(certs, use_cert=certs["untrusted_cert"],
                         use_key=certs["untrusted_key"]))
    run = run_driver(tmp_path, [sms_job()],
                     sms=sms_conf(tmp_path, api, certs))
    out = run.only()
    assert out["outcome"] == "failed", out
    assert out["detail"].startswith("tls: ") and "certificate" in \
        out["detail"], out
    assert api.records() == []


def test_sms_timeout(tmp_path, fakes, certs):
    api = fakes.sms(certs, plan={"rules": [{"every": 1, "delay_ms": 4000}]})
    run = run_driver(tmp_path, [sms_job()],
                     sms=sms_conf(tmp_path, api, certs),
                     args=["--timeout-ms", "800"])
    out = run.only()
    assert out["outcome"] == "retry", out
    assert out["ms"] < 3000


# --- both ------------------------------------------------------------------

def test_fifty_parallel_sends(tmp_path, fakes, certs):
    sink = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--data-delay-ms", "100")
    api = fakes.sms(certs, plan={"rules": [{"every": 1, "delay_ms": 100}]})
    jobs = []
    for i in range(50):
        jobs.append(mail_job(to="user%d@ajax.example" % i,
                             subject="code %d" % i))
        jobs.append(sms_job(to="+4477009%05d" % i, text="code %d" % i))
    run = run_driver(tmp_path, jobs, email=email_conf(sink, certs),
                     sms=sms_conf(tmp_path, api, certs), args=["--metrics"])

    assert len(run.outcomes) == 100
    assert all(o["outcome"] == "sent" for o in run.outcomes), [
        o for o in run.outcomes if o["outcome"] != "sent"]
    assert sorted(m["to"][0] for m in messages(sink)) == sorted(
        "user%d@ajax.example" % i for i in range(50))
    assert sorted(r["to"] for r in api.records()) == sorted(
        "+4477009%05d" % i for i in range(50))
    # One after the other, 100 sends would take 100 * 100 ms at least.
    assert run.elapsed < 8, run.elapsed
    assert 'vouch_notify_sent_total{channel="email",outcome="sent"} 50\n' \
        in run.metrics
    assert 'vouch_notify_sent_total{channel="sms",outcome="sent"} 50\n' \
        in run.metrics
    assert 'vouch_notify_in_flight{channel="sms"} 0\n' in run.metrics


def test_slow_smtp_server_does_not_hold_up_sms(tmp_path, fakes, certs):
    """libcurl waits for the reply to the end of DATA inside the multi
    handle; that wait must not stall the loop the SMS run on."""
    sink = fakes.sink("--data-delay-ms", "3000")
    api = fakes.sms(certs)
    run = run_driver(tmp_path, [mail_job(), sms_job(), sms_job()],
                     email=email_conf(sink),
                     sms=sms_conf(tmp_path, api, certs))
    mail, sms1, sms2 = run.outcomes
    assert mail["outcome"] == "sent" and mail["ms"] >= 2900, mail
    assert sms1["outcome"] == "sent" and sms1["ms"] < 1500, sms1
    assert sms2["outcome"] == "sent" and sms2["ms"] < 1500, sms2


def test_free_completes_pending_sends(tmp_path, fakes, certs):
    """Freeing the notifier ends every pending send, once, as failed."""
    api = fakes.sms(certs, plan={"rules": [{"every": 1, "delay_ms": 5000}]})
    sink = fakes.sink("--greeting-delay-ms", "5000")
    run = run_driver(tmp_path, [sms_job(), sms_job(), mail_job()],
                     email=email_conf(sink),
                     sms=sms_conf(tmp_path, api, certs),
                     args=["--free-after-ms", "500", "--metrics"])
    assert [o["outcome"] for o in run.outcomes] == ["failed"] * 3
    assert all(o["detail"] == "shutting down" for o in run.outcomes)
    assert 'vouch_notify_in_flight{channel="sms"} 2\n' in run.metrics
    assert 'vouch_notify_in_flight{channel="email"} 1\n' in run.metrics
    assert run.elapsed < 4


def test_bad_configuration_is_refused(tmp_path, fakes, certs):
    conf = {"api_base": "https://127.0.0.1:1", "account_sid": "AC/../x",
            "auth_token_file": secret_file(tmp_path, "t", TOKEN),
            "from": SENDER}
    run = run_driver(tmp_path, [], sms=conf, expect_rc=1)
    assert "account_sid" in run.error


# --- the fakes themselves ----------------------------------------------------

def test_sink_speaks_smtp(fakes, certs):
    sink = fakes.sink("--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--user", "u", "--password", "p",
                      "--fail-rcpt", "no@x.example:550")
    ctx = ssl.create_default_context(cafile=certs["ca"])
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as c:
        c.ehlo("test")
        assert c.has_extn("starttls") and not c.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused):
            c.sendmail("a@x.example", ["b@x.example"], "x")
        c.starttls(context=ctx)
        c.ehlo("test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("u", "wrong")
        c.login("u", "p")
        refused = c.sendmail("a@x.example", ["b@x.example", "no@x.example"],
                             "Subject: s\r\n\r\n.leading dot\r\n.\r\n")
        assert list(refused) == ["no@x.example"]
    [rec] = messages(sink)
    assert rec["tls"] is True and rec["auth"] == "u"
    assert rec["to"] == ["b@x.example"]
    assert rec["data"] == "Subject: s\r\n\r\n.leading dot\r\n.\r\n"


def sms_request(fake, certs, body, auth=(SID, TOKEN), method="POST",
                sid=SID):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    conn = http.client.HTTPSConnection("127.0.0.1", fake.port, context=ctx,
                                       timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(
            ("%s:%s" % auth).encode()).decode()
    conn.request(method, "/2010-04-01/Accounts/%s/Messages.json" % sid,
                 body=urllib.parse.urlencode(body), headers=headers)
    r = conn.getresponse()
    out = (r.status, json.loads(r.read()), r.getheader("Retry-After"))
    conn.close()
    return out


def test_fake_sms_validates_like_twilio(fakes, certs):
    api = fakes.sms(certs, plan={"rules": [
        {"nth": 7, "status": 429, "code": 20429, "retry_after": 3}]})
    ok = {"To": "+447700900123", "From": SENDER, "Body": "hi"}
    cases = [
        (dict(ok), {}, 201, None),
        (dict(ok), {"auth": (SID, "bad")}, 401, 20003),
        (dict(ok), {"auth": None}, 401, 20003),
        (dict(ok, To="07700 900123"), {}, 400, 21211),
        ({"From": SENDER, "Body": "hi"}, {}, 400, 21604),
        (dict(ok, Body="x" * 1601), {}, 400, 21617),
        (dict(ok), {}, 429, 20429),
        (dict(ok), {"sid": "AC999"}, 404, 20404),
        (dict(ok), {"method": "PUT"}, 405, 20004),
    ]
    for body, kw, status, code in cases:
        got, obj, retry = sms_request(api, certs, body, **kw)
        assert got == status, (body, kw, obj)
        if code is None:
            assert obj["status"] == "queued" and obj["sid"].startswith("SM")
        else:
            assert obj["code"] == code and obj["status"] == status
            assert set(obj) == {"code", "message", "more_info", "status"}
        assert retry == ("3" if status == 429 else None)
    assert [r["status"] for r in api.records()] == [c[2] for c in cases]
