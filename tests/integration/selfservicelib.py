"""Fixtures and helpers for the self-service tests.

A vouchd wired to the push fakes and message sinks (verifylib) with a
[selfservice] table of its own (a banned-password list, limits loose
enough for tests that start many sessions), a tenant whose customer has
a directory on an OU of the session's Samba AD DC (synclib), users made
in AD and synced, and a client for the session routes.

Test modules load this file as a plugin:
pytest_plugins = ["verifylib", "synclib", "selfservicelib"].
"""

import hashlib
import os
import random
import time

import jwt
import pytest

import verifylib
import vouchlib
from synclib import Directory, new_password
from verifylib import code_in, mail_body, new_email, new_phone, wait_until
from vouchlib import assert_json, describe

# Passwords on the test list, each good enough for the domain's rules.
BANNED = ("Summer2024!", "P@ssw0rd123", "Welcome#2025", "Qwerty-12345")

SESSION_KEYS = {"session_id", "token", "expires_at", "factors", "purpose"}


def write_banned_list(path, passwords, filler=20000):
    """A breached-password list: random SHA-1 hashes plus the given
    passwords', "HEX:COUNT" lines sorted by hash."""
    rng = random.Random(7)
    hashes = {"%040X" % rng.getrandbits(160) for _ in range(filler)}
    hashes.update(hashlib.sha1(p.encode()).hexdigest().upper()
                  for p in passwords)
    with open(path, "w") as f:
        for h in sorted(hashes):
            f.write("%s:%d\r\n" % (h, rng.randint(1, 99999)))
    return path


def selfservice_conf(banned_file, **overrides):
    s = {"banned_passwords_file": banned_file,
         "login_starts_per_minute": 1000,
         "address_starts_per_minute": 100000,
         "code_attempts": 3}
    s.update(overrides)
    return {"selfservice": s}


@pytest.fixture(scope="session")
def banned_file(workdir):
    return write_banned_list(os.path.join(workdir, "banned.txt"), BANNED)


@pytest.fixture(scope="session")
def ssserver(pg, workdir, venv, banned_file):
    """The vouchd the self-service tests share."""
    v = vouchlib.Vouchd(workdir, pg.create_database(),
                        venv.conf(selfservice_conf(banned_file)))
    v.start()
    yield v
    v.finish()


class Session:
    """A self-service session seen from the page: its id and token."""

    def __init__(self, server, body):
        self.server = server
        self.body = body
        self.id = body["session_id"]
        self.token = body["token"]
        self.http = server.client(self.token)

    def path(self, tail=""):
        return "/v1/selfservice/sessions/%s%s" % (self.id, tail)

    def get(self):
        return self.http.get(self.path())

    def state(self):
        return assert_json(self.get(), 200)

    def challenge(self, factor):
        return self.http.post(self.path("/challenge"),
                              json={"factor": factor})

    def verify(self, code):
        return self.http.post(self.path("/verify"), json={"code": code})

    def policy(self):
        return self.http.get(self.path("/policy"))

    def password(self, new, unlock=None):
        body = {"new_password": new}
        if unlock is not None:
            body["unlock"] = unlock
        return self.http.post(self.path("/password"), json=body)

    def unlock(self):
        return self.http.post(self.path("/unlock"))


def start(server, login, purpose="reset"):
    """POST /v1/selfservice/sessions; returns the reply."""
    return server.client().post("/v1/selfservice/sessions",
                                json={"login": login, "purpose": purpose})


def start_session(server, login, purpose="reset"):
    r = start(server, login, purpose)
    body = assert_json(r, 202)
    assert set(body) == SESSION_KEYS, body
    return Session(server, body)


class Account:
    """A user made in AD with mail and mobile, synced into vouch."""

    def __init__(self, site, dir_user, vouch_user):
        self.site = site
        self.dir = dir_user
        self.user = vouch_user
        self.login = dir_user.upn
        self.password = dir_user.password
        self.email = dir_user.mail
        self.phone = dir_user.mobile

    def binds(self, password):
        """True when AD accepts a bind with this password."""
        r = self.site.dc.bind(self.login, password)
        return r.returncode == 0

    def events(self, type_=None):
        params = {"user_id": self.user["id"]}
        if type_ is not None:
            params["type"] = type_
        return [e for e in self.site.tenant.events(**params)
                if e["subject"]["id"] == self.user["id"]]


class Site:
    """A tenant on the self-service server whose customer has a directory
    on an OU of its own, with helpers to make accounts and read codes."""

    def __init__(self, server, dc, venv):
        self.server = server
        self.dc = dc
        self.venv = venv
        self.directory = Directory(server, dc)
        self.world = self.directory.world
        self.tenant = self.world.tenant
        self.api = self.world.api
        self.msp_name = self.world.msp_name
        self.configured = False

    def accounts(self, n=1, **kw):
        """Make n AD users (mail, mobile, a display name), sync them."""
        made = []
        for i in range(n):
            name = kw.get("display_name") or "Pat%s Example%s" % (
                os.urandom(2).hex(), os.urandom(2).hex())
            made.append(self.directory.add_user(
                display_name=name, mail=new_email("ss"),
                mobile=new_phone(), password=kw.get("password")))
        if not self.configured:
            self.directory.configure()
            self.configured = True
            self.directory.wait_synced()
        else:
            self.directory.sync()
        return [Account(self, d, self.directory.user(d)) for d in made]

    def account(self, **kw):
        return self.accounts(1, **kw)[0]

    def device(self, account, platform="ios"):
        return self.world.device(account.user, platform=platform)

    # --- codes ---------------------------------------------------------

    def mail_code(self, account, count=1):
        msg = self.venv.sinks.wait_mail(account.email, count)
        return code_in(mail_body(msg))

    def sms_code(self, account, count=1):
        msg = self.venv.sinks.wait_text(account.phone, count)
        return code_in(msg["body"])

    def verified(self, account, purpose="reset", factor="email"):
        """A session of account verified by an emailed (or texted)
        code."""
        s = start_session(self.server, account.login, purpose)
        before = len(self.venv.sinks.mails(account.email)) if \
            factor == "email" else len(self.venv.sinks.texts(account.phone))
        assert_json(s.challenge(factor), 202)
        code = self.mail_code(account, before + 1) if factor == "email" \
            else self.sms_code(account, before + 1)
        assert assert_json(s.verify(code), 200) == {"verified": True}
        return s


@pytest.fixture
def site(ssserver, dc, venv):
    """A fresh tenant with a customer whose directory is a fresh OU."""
    return Site(ssserver, dc, venv)


def device_assertion(device, purpose, **override):
    """The JWS the app sends to start a verified session."""
    claims = {"did": device.id, "iat": int(time.time()),
              "purpose": purpose}
    claims.update(override)
    return jwt.encode(claims, device.key, algorithm="ES256")


def strong_password():
    return new_password()


def wait_no_mail(sinks, email, seconds=2.0):
    """Nothing arrives for email within seconds."""
    time.sleep(seconds)
    assert sinks.mails(email) == [], sinks.mails(email)


__all__ = ["BANNED", "SESSION_KEYS", "Session", "Site", "Account", "start",
           "start_session", "device_assertion", "strong_password",
           "wait_no_mail", "write_banned_list", "selfservice_conf",
           "wait_until", "describe", "verifylib"]
