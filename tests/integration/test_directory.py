"""server/directory.c against a real Active Directory (Samba AD DC).

Every operation runs through tests/directory/directory-driver, which
drives the real module on its own event loop and prints the results as
JSON, along with the longest stall of its loop. The DC is provisioned
once per session by samba.py (ops/samba-ad).
"""

import itertools
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import vouchlib
from samba import REALM  # noqa: E402

_names = itertools.count(1)


def driver_bin():
    return os.path.join(vouchlib.build_dir(), "tests", "directory",
                        "directory-driver")


def run(dc, op, login=None, password=None, env=None, args=(),
        timeout=60):
    """Run the driver and return its whole output (results, loop gap)."""
    binary = driver_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail("%s is missing: build it (make all)" % binary)
    e = vouchlib.sanitizer_env()
    e.update(dc.settings)
    e.update(env or {})
    if password is not None:
        e["DIRECTORY_PASSWORD"] = password
    cmd = [binary] + list(args) + [op] + ([login] if login else [])
    r = subprocess.run(cmd, env=e, capture_output=True, text=True,
                       timeout=timeout)
    report = vouchlib.sanitizer_report(r.stderr)
    assert report is None, report
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # Passwords never show, neither in results nor in log lines.
    for secret in (password, e.get("AD_BIND_PASSWORD")):
        if secret and len(secret) >= 6:
            assert secret not in r.stdout and secret not in r.stderr
    for res in out["results"]:
        assert res is not None
        assert res.get("inside_submit") is not True
    out["stderr"] = r.stderr
    return out


def one(dc, op, login=None, password=None, env=None, args=(), timeout=60):
    """Run one operation and return its result."""
    out = run(dc, op, login, password, env, args, timeout)
    assert len(out["results"]) == 1
    res = out["results"][0]
    res["loop_max_gap_ms"] = out["loop_max_gap_ms"]
    return res


def new_user(dc, password="Start-Passw0rd", **kw):
    """A fresh user; returns (name, login)."""
    name = "u%d-%d" % (os.getpid() % 10000, next(_names))
    return name, dc.create_user(name, password, **kw)


def assert_status(res, status, *words):
    assert res["status"] == status, res
    for w in words:
        assert w.lower() in res["detail"].lower(), res


# --- binding and reading ---------------------------------------------------

def test_service_bind_ok_and_bad_password(samba_ad):
    res = one(samba_ad, "test")
    assert_status(res, "OK")
    assert res["count"] >= 2          # Administrator and the service account

    res = one(samba_ad, "test", env={"AD_BIND_PASSWORD": "Wrong-Passw0rd"})
    assert_status(res, "BAD_CREDENTIALS", "service account", "52e")

    # Any other operation reports it as a failure of the setup, never as
    # the end-user's own bad password.
    _, login = new_user(samba_ad)
    res = one(samba_ad, "check", login, "Start-Passw0rd",
              env={"AD_BIND_PASSWORD": "Wrong-Passw0rd"})
    assert_status(res, "FAILED", "service account")


def test_search_returns_users_with_state(samba_ad):
    name, login = new_user(samba_ad, mail="found@example.com",
                           phone="+15550100")
    samba_ad.modify(samba_ad.user_dn(name), {"mobile": "+15550199",
                                            "displayName": "Found User"})
    entry = samba_ad.entry(samba_ad.user_dn(name), "objectGUID",
                           "pwdLastSet", "uSNChanged")

    res = one(samba_ad, "search")
    assert_status(res, "OK")
    users = {u["login"]: u for u in res["users"]}
    assert login in users
    u = users[login]
    assert u["guid"] == entry["objectGUID"][0]
    assert u["dn"].lower() == samba_ad.user_dn(name).lower()
    assert u["display_name"] == "Found User"
    assert u["mail"] == "found@example.com"
    assert u["mobile"] == "+15550199"
    assert u["usn_changed"] == int(entry["uSNChanged"][0])
    assert res["max_usn"] >= u["usn_changed"]
    assert abs(u["when_changed"] - time.time()) < 600

    # Expiry: pwdLastSet plus the 42-day maximum age.
    set_at = int(entry["pwdLastSet"][0]) // 10 ** 7 - 11644473600
    assert u["pwd_last_set"] == set_at
    assert u["password_expires"] == set_at + 42 * 86400
    assert not u["password_expired"]
    assert u["lockout_time"] == 0 and not u["locked"]
    assert not u["disabled"] and u["account_control"] & 0x200

    # The service account never expires.
    svc = [x for x in res["users"] if x["dn"].startswith("CN=vouch-svc,")]
    assert svc and svc[0]["password_expires"] is None

    # Find reads the same user; the sAMAccountName login works too.
    res = one(samba_ad, "find", login)
    assert_status(res, "OK")
    assert [x["guid"] for x in res["users"]] == [u["guid"]]
    res = one(samba_ad, "find", name,
              env={"AD_LOGIN_ATTRIBUTE": "sAMAccountName"})
    assert_status(res, "OK")
    assert res["users"][0]["login"] == name


def test_incremental_search_by_usn(samba_ad):
    name, login = new_user(samba_ad)
    res = one(samba_ad, "search")
    since = res["max_usn"] + 1

    res = one(samba_ad, "search", args=("-u", str(since)))
    assert_status(res, "OK")
    assert res["users"] == []

    samba_ad.modify(samba_ad.user_dn(name), {"mobile": "+15550123"})
    res = one(samba_ad, "search", args=("-u", str(since)))
    assert_status(res, "OK")
    assert [u["login"] for u in res["users"]] == [login]
    assert res["max_usn"] >= since


def test_unknown_users_and_filter_injection(samba_ad):
    res = one(samba_ad, "find", "nobody-here@" + REALM)
    assert_status(res, "NO_SUCH_USER", "nobody-here")
    # A wildcard is a literal character, not a match-anything.
    res = one(samba_ad, "check", "*", "Any-Passw0rd")
    assert_status(res, "NO_SUCH_USER")
    res = one(samba_ad, "find", "*)(objectClass=*")
    assert_status(res, "NO_SUCH_USER")


def test_read_policy_matches_provisioning(samba_ad):
    res = one(samba_ad, "policy")
    assert_status(res, "OK")
    assert res["policy"] == {
        "min_length": 7, "history_length": 0, "complexity": True,
        "max_age": 42 * 86400, "min_age": 0, "lockout_threshold": 3,
        "lockout_duration": 60, "lockout_window": 60,
    }


# --- passwords -------------------------------------------------------------

def test_reset_then_bind_with_new_password(samba_ad):
    _, login = new_user(samba_ad, password="Old-Passw0rd")
    assert_status(one(samba_ad, "check", login, "Old-Passw0rd"), "OK")

    res = one(samba_ad, "reset", login, "N3w-Passw\u00f6rd-\u20ac")
    assert_status(res, "OK")
    assert_status(one(samba_ad, "check", login, "N3w-Passw\u00f6rd-\u20ac"),
                  "OK")
    assert_status(one(samba_ad, "check", login, "Old-Passw0rd"),
                  "BAD_CREDENTIALS", "52e")


def test_policy_violation_leaves_ad_unchanged(samba_ad):
    name, login = new_user(samba_ad, password="Kept-Passw0rd")
    before = samba_ad.entry(samba_ad.user_dn(name), "pwdLastSet")

    res = one(samba_ad, "reset", login, "Ab1")
    assert_status(res, "POLICY_VIOLATION", "0000052D", "too short")
    res = one(samba_ad, "reset", login, "onlylowercase")
    assert_status(res, "POLICY_VIOLATION", "0000052D")

    after = samba_ad.entry(samba_ad.user_dn(name), "pwdLastSet")
    assert after["pwdLastSet"] == before["pwdLastSet"]
    assert_status(one(samba_ad, "check", login, "Kept-Passw0rd"), "OK")
    assert_status(one(samba_ad, "check", login, "Ab1"), "BAD_CREDENTIALS")


def test_empty_password_never_binds(samba_ad):
    name, login = new_user(samba_ad)
    res = one(samba_ad, "check", login, "")
    assert_status(res, "BAD_CREDENTIALS", "empty")
    # It did not even count as a bad attempt.
    entry = samba_ad.entry(samba_ad.user_dn(name), "badPwdCount")
    assert entry.get("badPwdCount", ["0"]) == ["0"]


def test_lockout_then_unlock(samba_ad):
    name, login = new_user(samba_ad, password="Right-Passw0rd")
    for _ in range(3):
        res = one(samba_ad, "check", login, "Wrong-Passw0rd")
        assert res["status"] in ("BAD_CREDENTIALS", "LOCKED_OUT"), res

    res = one(samba_ad, "check", login, "Right-Passw0rd")
    assert_status(res, "LOCKED_OUT", "775")
    res = one(samba_ad, "find", login)
    u = res["users"][0]
    assert u["locked"] and u["computed_control"] & 0x10
    assert abs(u["lockout_time"] - time.time()) < 300

    assert_status(one(samba_ad, "unlock", login), "OK")
    u = one(samba_ad, "find", login)["users"][0]
    assert not u["locked"] and u["lockout_time"] == 0
    assert_status(one(samba_ad, "check", login, "Right-Passw0rd"), "OK")


def test_must_change_and_expired(samba_ad):
    _, login = new_user(samba_ad, password="Fresh-Passw0rd",
                        must_change=True)
    res = one(samba_ad, "check", login, "Fresh-Passw0rd")
    assert_status(res, "MUST_CHANGE", "773")

    name, login = new_user(samba_ad, password="Aged-Passw0rd")
    samba_ad.set_pwd_last_set(name, time.time() - 50 * 86400)
    res = one(samba_ad, "check", login, "Aged-Passw0rd")
    assert_status(res, "PASSWORD_EXPIRED", "532")
    u = res["users"][0]
    assert u["password_expired"]
    assert u["password_expires"] < time.time()


# --- failures of the connection ---------------------------------------------

FAST = {"AD_CONNECT_TIMEOUT_MS": "1500", "AD_TIMEOUT_MS": "3000"}


def test_unreachable_port_fails_fast(samba_ad):
    port = vouchlib.free_port()
    for scheme in ("ldaps", "ldap"):
        env = dict(FAST, AD_URL="%s://127.0.0.1:%d" % (scheme, port))
        res = one(samba_ad, "test", env=env)
        assert_status(res, "UNREACHABLE", "contact")
        assert res["elapsed_ms"] < 1500


class SilentServer:
    """Accepts TCP connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_silent_server_fails_within_timeouts(samba_ad):
    srv = SilentServer()
    try:
        # A TLS handshake that never completes (ldaps) and a StartTLS
        # request never answered (ldap) both end in bounded time, and the
        # loop keeps turning meanwhile.
        for scheme, limit in (("ldaps", 1500), ("ldap", 3000)):
            env = dict(FAST, AD_URL="%s://127.0.0.1:%d" % (scheme,
                                                          srv.port))
            res = one(samba_ad, "test", env=env)
            assert res["status"] == "UNREACHABLE", res
            assert limit * 0.8 <= res["elapsed_ms"] < limit + 2000, res
            assert res["loop_max_gap_ms"] < res["elapsed_ms"] / 2, res
    finally:
        srv.close()


def make_ca(tmp_path, name):
    """A self-signed CA unrelated to the DC's; returns (cert, key)."""
    cert, key = tmp_path / (name + ".pem"), tmp_path / (name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=" + name], check=True,
                   capture_output=True)
    return str(cert), str(key)


def test_wrong_ca_is_a_clear_tls_failure(samba_ad, tmp_path):
    other, _ = make_ca(tmp_path, "other CA")
    addr = samba_ad.addr
    for url, step in (("ldaps://" + addr, "connect"),
                      ("ldap://" + addr, "start tls")):
        res = one(samba_ad, "test", env={"AD_CA_FILE": other,
                                         "AD_URL": url})
        assert_status(res, "UNREACHABLE", step, "TLS", "certificate",
                      "refused", "local issuer")

    res = one(samba_ad, "test", env={"AD_CA_FILE": str(tmp_path / "none")})
    assert_status(res, "FAILED", "CA file")


def test_certificate_for_another_host(samba_ad, tmp_path):
    # A TLS server whose certificate comes from the right CA but names
    # another address.
    tls = samba_ad.tls_dir
    key, csr, cert = (str(tmp_path / n) for n in ("k.pem", "r.pem",
                                                  "c.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.254\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", csr, "-subj", "/CN=elsewhere"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA",
                    samba_ad.env["AD_CA_FILE"], "-CAkey",
                    os.path.join(tls, "ca.key"), "-CAcreateserial",
                    "-CAserial", str(tmp_path / "ca.srl"), "-days", "2",
                    "-extfile", str(ext), "-out", cert], check=True,
                   capture_output=True)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(c, server_side=True) as t:
                    t.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        res = one(samba_ad, "test",
                  env={"AD_URL": "ldaps://127.0.0.1:%d" % port})
        assert_status(res, "UNREACHABLE", "TLS", "mismatch")
    finally:
        lsock.close()


# --- many users, many operations ---------------------------------------------

def test_paged_search_of_2000_users(samba_ad):
    logins = set(samba_ad.add_users("bulk%d-" % os.getpid(), 2000))

    res = one(samba_ad, "search", timeout=120)
    assert_status(res, "OK")
    found = [u for u in res["users"] if u["login"] in logins]
    assert len(found) == 2000
    assert len({u["guid"] for u in res["users"]}) == len(res["users"])
    assert res["pages"] >= len(res["users"]) // 500
    assert res["loop_max_gap_ms"] < max(res["elapsed_ms"] / 2, 250)

    # Counting agrees, with pages as large as AD allows.
    count = one(samba_ad, "test", env={"AD_PAGE_SIZE": "1000"})
    assert_status(count, "OK")
    assert count["count"] == len(res["users"])
    assert count["pages"] >= 3

    # A cap on the number of users fails the search instead of
    # truncating it.
    res = one(samba_ad, "search", env={"AD_MAX_USERS": "1000"})
    assert_status(res, "FAILED", "more than 1000 users")


def test_concurrent_operations_and_cancel(samba_ad):
    out = run(samba_ad, "test", args=("-t", "4", "-n", "12"))
    assert [r["status"] for r in out["results"]] == ["OK"] * 12

    # Stopping the pool at once: queued jobs complete as cancelled.
    out = run(samba_ad, "test", args=("-t", "1", "-n", "4", "-c"))
    statuses = [r["status"] for r in out["results"]]
    cancelled = [r for r in out["results"]
                 if r["status"] == "FAILED" and "cancelled" in r["detail"]]
    assert len(cancelled) >= 3, statuses
    assert set(statuses) <= {"OK", "FAILED"}
