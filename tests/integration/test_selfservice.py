"""Self-service password reset and account unlock through the real
vouchd, PostgreSQL, Samba AD DC and the push, SMS and mail fakes: resets
proved by an SMS code, a push approval or the app, an unlock proved by an
email code, the password rules (vouch's, the banned list's and AD's own),
and what a session may not do (act unverified, act on another session or
another MSP's users).
"""

import json
import os
import random
import subprocess
import time

import pytest

import vouchlib
from vouchlib import assert_json, assert_problem, describe, is_uuid, \
    parse_time

pytest.register_assert_rewrite("verifylib", "synclib", "selfservicelib")
from selfservicelib import (  # noqa: E402
    BANNED, Session, device_assertion, start, start_session,
    strong_password, wait_no_mail)
from verifylib import assert_no_secrets, wait_until  # noqa: E402

pytest_plugins = ["verifylib", "synclib", "selfservicelib"]


def event_types(account):
    return [e["type"] for e in account.events()]


def assert_password_nowhere(server, *passwords):
    """The passwords are in no row (events included) and no log line."""
    log = server.log_text()
    dump = subprocess.run(["pg_dump", "--data-only", server.db_url],
                          capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    for password in passwords:
        assert password not in log, "a password in vouchd's log"
        assert password not in dump.stdout, "a password in the database"


# --- resets and unlocks ----------------------------------------------------

def test_reset_by_sms_code(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    assert is_uuid(s.id) and s.token.startswith("ss_"), s.body
    assert s.body["factors"] == ["push", "sms", "email"]
    assert s.body["purpose"] == "reset"
    parse_time(s.body["expires_at"])

    before = s.state()
    assert before["verified"] is False and before["status"] == "open"
    assert before["msp_name"] is None, "MSP named before verification"

    assert assert_json(s.challenge("sms"), 202)["factor"] == "sms"
    code = site.sms_code(acct)
    assert assert_json(s.verify(code), 200) == {"verified": True}
    after = s.state()
    assert after["verified"] is True and after["status"] == "verified"
    assert after["msp_name"] == site.msp_name

    new = strong_password()
    body = assert_json(s.password(new), 200)
    assert body["password_reset"] is True and body["unlocked"] is False
    assert acct.binds(new), "the new password does not bind"
    assert not acct.binds(acct.password), "the old password still binds"
    assert s.state()["status"] == "done"

    types = event_types(acct)
    for t in ("selfservice.started", "selfservice.challenged",
              "selfservice.verified", "password.reset"):
        assert t in types, types
    reset = [e for e in acct.events("password.reset")][-1]
    assert reset["data"]["session_id"] == s.id
    assert reset["data"]["factor"] == "sms"

    # The confirmation: the user has no device, so by email.
    mail = site.venv.sinks.wait_mail(acct.email)
    from verifylib import mail_body
    text = mail_body(mail)
    assert "wasn't you" in text and "helpdesk" in text, text
    assert new not in text

    # A used session cannot reset again.
    assert_problem(s.password(strong_password()), 409, "conflict")
    assert_password_nowhere(site.server, new)
    assert new not in json.dumps(site.tenant.events())


def test_reset_by_push(site, venv):
    acct = site.account()
    phone = site.device(acct)
    s = start_session(site.server, acct.login)
    r = assert_json(s.challenge("push"), 202)
    match = r["match_code"]
    assert isinstance(match, int) and 10 <= match <= 99, r

    prompt = wait_until(lambda: next(
        (p for p in phone.prompts() if p["kind"] == "selfservice"), None),
        10, "a self-service prompt")
    assert prompt["msp_name"] == site.msp_name
    assert match in prompt["match_options"], prompt
    assert len(set(prompt["match_options"])) == 3, prompt
    assert prompt["id"] != s.id, "the prompt id is the session id"

    # The push names the prompt and carries no number.
    req = venv.apns.wait_requests(phone.push_token)[-1]
    payload = req["json"]
    assert payload["vouch"] == {"type": "prompt", "id": prompt["id"]}, \
        payload
    assert_no_secrets(payload, prompt["match_options"], [prompt["id"]])

    assert phone.approve(prompt["id"], match) == {"status": "approved"}
    st = s.state()
    assert st["verified"] is True and st["factor"] == "push", st
    assert st["msp_name"] == site.msp_name
    assert prompt["id"] not in [p["id"] for p in phone.prompts()]

    new = strong_password()
    assert assert_json(s.password(new), 200)["password_reset"] is True
    assert acct.binds(new) and not acct.binds(acct.password)

    # The confirmation goes to the phone.
    notices = wait_until(lambda: [
        q for q in venv.apns.requests(phone.push_token)
        if (q["json"] or {}).get("vouch", {}).get("type") ==
        "password_reset"], 10, "a password_reset push")
    assert "wasn't you" in notices[0]["json"]["aps"]["alert"]["body"]
    verified = acct.events("selfservice.verified")[-1]
    assert verified["actor"] == {"type": "device", "id": phone.id}


@pytest.mark.parametrize("how", ["denied", "wrong_number"])
def test_push_denied_or_wrong_number_ends_the_session(site, how):
    acct = site.account()
    phone = site.device(acct)
    s = start_session(site.server, acct.login)
    match = assert_json(s.challenge("push"), 202)["match_code"]
    prompt = wait_until(lambda: next(
        (p for p in phone.prompts() if p["kind"] == "selfservice"), None),
        10, "a self-service prompt")
    if how == "denied":
        r = phone.deny(prompt["id"])
    else:
        wrong = next(n for n in prompt["match_options"] if n != match)
        r = phone.approve(prompt["id"], wrong)
    assert r == {"status": "denied"}
    st = s.state()
    assert st["status"] == "dead" and st["verified"] is False
    assert st["outcome"] == ("denied_on_device" if how == "denied"
                             else "number_mismatch")
    assert_problem(s.password(strong_password()), 403, "not_verified")
    assert_problem(phone.decide(prompt["id"], "approved", match), 409,
                   "conflict")
    assert acct.binds(acct.password)
    assert "selfservice.failed" in event_types(acct)


def test_unlock_by_email_code(site):
    acct = site.account()
    site.dc.bad_binds(acct.dir, 3)
    assert site.dc.locked(acct.dir), "the account did not lock"
    assert not acct.binds(acct.password)

    s = site.verified(acct, purpose="unlock", factor="email")
    assert_problem(s.password(strong_password()), 409, "conflict")
    body = assert_json(s.unlock(), 200)
    assert body["unlocked"] is True and body["password_reset"] is False
    assert not site.dc.locked(acct.dir)
    assert acct.binds(acct.password), "the unlocked account cannot bind"
    ev = acct.events("account.unlocked")
    assert ev and ev[-1]["data"]["source"] == "selfservice", ev
    assert ev[-1]["data"]["session_id"] == s.id
    assert_problem(s.unlock(), 409, "conflict")


def test_reset_can_unlock_too(site):
    acct = site.account()
    site.dc.bad_binds(acct.dir, 3)
    assert site.dc.locked(acct.dir)
    s = site.verified(acct, factor="sms")
    new = strong_password()
    body = assert_json(s.password(new, unlock=True), 200)
    assert body == {"status": "done", "password_reset": True,
                    "unlocked": True}
    assert not site.dc.locked(acct.dir)
    assert acct.binds(new)
    assert "account.unlocked" in event_types(acct)


def test_reset_from_the_app(site):
    acct = site.account()
    phone = site.device(acct)
    http = phone.http

    r = http.post("/v1/device/selfservice", json={
        "purpose": "reset", "assertion": device_assertion(phone, "reset")})
    body = assert_json(r, 201)
    assert body["verified"] is True and body["factor"] == "device", body
    assert body["msp_name"] == site.msp_name
    s = Session(site.server, body)
    new = strong_password()
    assert assert_json(s.password(new), 200)["password_reset"] is True
    assert acct.binds(new) and not acct.binds(acct.password)
    started = acct.events("selfservice.started")[-1]
    assert started["data"]["source"] == "app"
    assert started["actor"] == {"type": "device", "id": phone.id}


def test_app_start_needs_a_good_signature(site):
    from cryptography.hazmat.primitives.asymmetric import ec
    acct = site.account()
    phone = site.device(acct)
    other_key = ec.generate_private_key(ec.SECP256R1())

    def post(assertion, purpose="reset", http=None):
        return (http or phone.http).post("/v1/device/selfservice", json={
            "purpose": purpose, "assertion": assertion})

    assert_problem(post(device_assertion(phone, "reset").replace(
        "e", "f", 1) + "x"), 422, "validation_failed", "assertion")
    import jwt as pyjwt
    forged = pyjwt.encode({"did": phone.id, "iat": int(time.time()),
                           "purpose": "reset"}, other_key, algorithm="ES256")
    assert_problem(post(forged), 422, "validation_failed", "assertion")
    assert_problem(post(device_assertion(phone, "unlock")), 422,
                   "validation_failed", "assertion")
    assert_problem(post(device_assertion(phone, "reset",
                                         iat=int(time.time()) - 3600)),
                   422, "validation_failed", "assertion")
    assert_problem(post(device_assertion(phone, "reset"),
                        http=site.server.client()), 401, "unauthorized")
    assert acct.events("selfservice.started") == []


# --- the password rules ------------------------------------------------------

def test_weak_banned_and_refused_passwords(site):
    acct = site.account(display_name="Robin Quarrington")
    s = site.verified(acct)
    policy = assert_json(s.policy(), 200)
    assert policy["min_length"] >= 8 and policy["complexity"] is True
    assert policy["banned_list"] is True

    local = acct.login.split("@")[0]
    cases = [
        ("Ab1-xyz", "min_length"),
        ("onlylowercaseletters", "complexity"),
        ("Zz-9" + local.upper(), "contains_login"),
        ("Quarrington-77", "contains_name"),
        (BANNED[0], "banned"),
    ]
    for password, rule in cases:
        r = s.password(password)
        body = assert_problem(r, 422, "password_policy", "new_password")
        assert body["rule"] == rule, (password, body)
        assert password not in r.text

    # AD has the last word: vouch counts "\u00e9" as a letter of another
    # script (three kinds with the small letters and digits), AD as a
    # small letter (two kinds) and refuses.
    refused = "abcd\u00e9fgh12"
    r = s.password(refused)
    body = assert_problem(r, 422, "password_policy", "new_password")
    assert body["rule"] == "directory", body

    assert acct.binds(acct.password), "AD changed after a refusal"
    rejected = acct.events("selfservice.password_rejected")
    assert [e["data"]["rule"] for e in rejected] == [
        "min_length", "complexity", "contains_login", "contains_name",
        "banned", "directory"], rejected
    assert "password.reset" not in event_types(acct)

    # The session may still choose a good one.
    new = strong_password()
    assert_json(s.password(new), 200)
    assert acct.binds(new)
    assert_password_nowhere(site.server, new, refused,
                            *[p for p, _ in cases])


def test_password_field_is_checked(site):
    acct = site.account()
    s = site.verified(acct)
    assert_problem(s.http.post(s.path("/password"), json={}), 422,
                   "validation_failed", "new_password")
    assert_problem(s.http.post(s.path("/password"), json={
        "new_password": 12345678}), 422, "validation_failed", "new_password")
    assert_problem(s.http.post(s.path("/password"), json={
        "new_password": "x" * 257}), 422, "validation_failed",
        "new_password")
    assert_problem(s.password(strong_password(), unlock="yes"), 422,
                   "validation_failed", "unlock")
    assert acct.binds(acct.password)


# --- what a session may not do ----------------------------------------------

def test_unknown_and_known_logins_look_the_same(site):
    acct = site.account()
    unknown = "nobody-%s@%s" % (os.urandom(4).hex(), site.dc.realm)
    k = start_session(site.server, acct.login)
    u = start_session(site.server, unknown)
    assert set(k.body) == set(u.body)
    assert k.body["factors"] == u.body["factors"]
    assert set(k.state()) == set(u.state())

    for factor in ("sms", "push"):
        rk, ru = k.challenge(factor), u.challenge(factor)
        assert rk.status_code == ru.status_code == 202, (describe(rk),
                                                         describe(ru))
        assert set(rk.json()) == set(ru.json())
    ek, eu = k.verify("000000"), u.verify("000000")
    assert ek.status_code == eu.status_code == 409  # the push is current
    assert_json(k.challenge("email"), 202)    # the third and last
    assert_json(u.challenge("email"), 202)
    bk = assert_problem(k.verify("000001"), 422, "wrong_code", "code")
    bu = assert_problem(u.verify("000001"), 422, "wrong_code", "code")
    assert set(bk) == set(bu) and bk["attempts_left"] == bu[
        "attempts_left"]
    assert_problem(u.password(strong_password()), 403, "not_verified")


def test_start_takes_the_same_time_for_unknown_logins(site):
    """Medians of many starts, in random order, each after the server
    has finished the work of the one before (the known login's audit
    event is written after its answer)."""
    acct = site.account()
    anon = site.server.client()
    ghost = "ghost-%s@%s" % (os.urandom(3).hex(), site.dc.realm)
    times = {"known": [], "unknown": []}
    order = ["known", "unknown"] * 60
    random.Random(5).shuffle(order)
    for kind in order:
        login = acct.login if kind == "known" else ghost
        time.sleep(0.005)
        t0 = time.perf_counter()
        r = anon.post("/v1/selfservice/sessions",
                      json={"login": login, "purpose": "reset"})
        times[kind].append(time.perf_counter() - t0)
        assert r.status_code == 202, describe(r)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    slow, fast = max(med.values()), min(med.values())
    assert slow - fast < 0.25 * slow + 0.001, med
    wait_until(lambda: len(acct.events("selfservice.started")) == 60, 10,
               "an event for each start of the known login")


def test_challenge_takes_the_same_time_for_unknown_logins(site):
    """A code is queued and sent for the known login only, after the
    answer; the answer itself takes as long either way."""
    acct = site.account()
    ghost = "ghost-%s@%s" % (os.urandom(3).hex(), site.dc.realm)
    times = {"known": [], "unknown": []}
    order = ["known", "unknown"] * 40
    random.Random(9).shuffle(order)
    for kind in order:
        s = start_session(site.server, acct.login if kind == "known"
                          else ghost)
        time.sleep(0.01)
        t0 = time.perf_counter()
        r = s.challenge("email")
        times[kind].append(time.perf_counter() - t0)
        assert r.status_code == 202, describe(r)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    slow, fast = max(med.values()), min(med.values())
    assert slow - fast < 0.25 * slow + 0.001, med
    site.venv.sinks.wait_mail(acct.email, 40)


def test_login_shared_by_two_users_is_treated_as_unknown(site):
    acct = site.account()
    # The same login, in another case, under another MSP's customer.
    b = site.server.tenant("MSP twin")
    cust = b.customer()
    b.user(cust["id"], display_name="Twin", login=acct.login.upper(),
           email="twin-%s@example.com" % os.urandom(3).hex())
    s = start_session(site.server, acct.login)
    assert_json(s.challenge("email"), 202)
    wait_no_mail(site.venv.sinks, acct.email)
    assert acct.events("selfservice.started") == []


def test_code_brute_force_stops_at_the_limit(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    assert_json(s.challenge("email"), 202)
    code = site.mail_code(acct)
    wrong = [c for c in ("111111", "222222", "333333", "444444")
             if c != code]
    b = assert_problem(s.verify(wrong[0]), 422, "wrong_code", "code")
    assert b["attempts_left"] == 2
    b = assert_problem(s.verify(wrong[1]), 422, "wrong_code", "code")
    assert b["attempts_left"] == 1
    b = assert_problem(s.verify(wrong[2]), 422, "too_many_attempts",
                       "code")
    assert b["attempts_left"] == 0
    # Dead: even the right code, or a new code, is refused.
    assert_problem(s.verify(code), 422, "too_many_attempts")
    assert_problem(s.challenge("email"), 422, "too_many_attempts")
    st = s.state()
    assert st["status"] == "dead" and st["outcome"] == "too_many_attempts"
    assert_problem(s.password(strong_password()), 403, "not_verified")
    assert "selfservice.failed" in event_types(acct)


def test_parallel_wrong_codes_spend_only_the_attempts(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    assert_json(s.challenge("email"), 202)
    code = site.mail_code(acct)
    guesses = ["%06d" % n for n in range(100000, 100030)
               if "%06d" % n != code]
    replies = vouchlib.parallel(lambda c: s.verify(c).json(), guesses)
    assert all(r.get("code") in ("wrong_code", "too_many_attempts")
               for r in replies), replies
    assert sum(r.get("code") == "wrong_code" for r in replies) == 2
    assert_problem(s.verify(code), 422, "too_many_attempts")


def test_unverified_session_cannot_reset_or_unlock(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    assert_problem(s.password(strong_password()), 403, "not_verified")
    assert_json(s.challenge("email"), 202)
    assert_problem(s.password(strong_password()), 403, "not_verified")
    assert_problem(s.policy(), 403, "not_verified")
    u = start_session(site.server, acct.login, "unlock")
    assert_problem(u.unlock(), 403, "not_verified")
    assert acct.binds(acct.password)
    assert "password.reset" not in event_types(acct)


def test_a_session_cannot_act_on_another(site):
    a, b = site.accounts(2)
    sa = site.verified(a)
    sb = start_session(site.server, b.login)

    # A's token on B's session: not found; no token or a bad one: 401.
    mixed = Session(site.server, dict(sb.body, token=sa.token))
    assert_problem(mixed.password(strong_password()), 404, "not_found")
    assert_problem(mixed.get(), 404, "not_found")
    assert_problem(mixed.challenge("email"), 404, "not_found")
    bare = site.server.client()
    assert_problem(bare.get(sb.path()), 401, "unauthorized")
    assert_problem(bare.post(sb.path("/password"), json={
        "new_password": strong_password()}), 401, "unauthorized")
    forged = Session(site.server, dict(sb.body,
                                       token="ss_" + "A" * 43))
    assert_problem(forged.get(), 401, "unauthorized")
    assert_problem(sa.http.get("/v1/selfservice/sessions/not-a-uuid"),
                   404, "not_found")
    assert b.binds(b.password)


def test_a_session_of_one_msp_cannot_touch_another(site, ssserver, dc,
                                                   venv):
    from selfservicelib import Site
    other = Site(ssserver, dc, venv)
    a = site.account()
    b = other.account()
    phone_b = other.device(b)
    sa = site.verified(a)
    sb = start_session(ssserver, b.login)
    assert_json(sb.challenge("push"), 202)
    prompt_b = wait_until(lambda: next(
        (p for p in phone_b.prompts() if p["kind"] == "selfservice"), None),
        10, "the other MSP's prompt")

    # MSP A's verified session on MSP B's session id.
    cross = Session(ssserver, dict(sb.body, token=sa.token))
    assert_problem(cross.password(strong_password()), 404, "not_found")
    assert_problem(cross.unlock(), 404, "not_found")
    # A device of MSP A cannot decide MSP B's prompt.
    phone_a = site.device(a)
    assert_problem(phone_a.decide(prompt_b["id"], "approved", 10), 404,
                   "not_found")
    assert sb.state()["status"] == "open"
    # MSP A's trail names nothing of MSP B's user, and the reverse.
    assert b.user["id"] not in json.dumps(site.tenant.events())
    assert b.binds(b.password)


def test_starts_are_limited_per_login_and_address(make_vouchd, venv,
                                                  banned_file):
    from selfservicelib import selfservice_conf
    v = make_vouchd(venv.conf(selfservice_conf(
        banned_file, login_starts_per_minute=3,
        address_starts_per_minute=8)))
    for _ in range(3):
        assert_json(start(v, "someone@x.example"), 202)
    r = start(v, "SomeOne@X.example")      # the same login, any case
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
    for i in range(5):
        assert_json(start(v, "other%d@x.example" % i), 202)
    r = start(v, "yet-another@x.example")
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0


def test_challenges_per_session_are_limited(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    codes = []
    for n in (1, 2, 3):
        assert_json(s.challenge("email"), 202)
        codes.append(site.mail_code(acct, n))
    r = s.challenge("email")
    assert_problem(r, 429, "rate_limited")
    assert r.headers.get("Retry-After")
    # Only the newest code counts.
    if codes[0] != codes[2]:
        assert_problem(s.verify(codes[0]), 422, "wrong_code")
    assert_json(s.verify(codes[2]), 200)


def test_start_and_challenge_bodies_are_checked(site):
    anon = site.server.client()
    url = "/v1/selfservice/sessions"
    assert_problem(anon.post(url, json={"purpose": "reset"}), 422,
                   "validation_failed", "login")
    assert_problem(anon.post(url, json={"login": "x", "purpose": "fly"}),
                   422, "validation_failed", "purpose")
    assert_problem(anon.post(url, json={"login": "", "purpose": "reset"}),
                   422, "validation_failed", "login")
    s = start_session(site.server, "whoever@x.example")
    assert_problem(s.challenge("fax"), 422, "validation_failed", "factor")
    assert_problem(s.verify("12ab56"), 422, "validation_failed", "code")
    assert_problem(s.verify("123"), 422, "validation_failed", "code")


def test_sessions_expire(make_vouchd, venv, banned_file):
    from selfservicelib import selfservice_conf
    v = make_vouchd(venv.conf(selfservice_conf(banned_file)))
    s = start_session(v, "late@x.example")
    vouchlib.sql(v.db_url, "UPDATE selfservice_sessions SET expires_at ="
                 " now() - interval '1 second' WHERE id = %s", (s.id,),
                 fetch=False)
    assert_problem(s.get(), 401, "unauthorized")
    assert_problem(s.challenge("email"), 401, "unauthorized")


def test_an_expired_code_is_refused_without_an_attempt(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    assert_json(s.challenge("email"), 202)
    code = site.mail_code(acct)
    vouchlib.sql(site.server.db_url, "UPDATE selfservice_sessions SET"
                 " code_expires_at = now() - interval '1 second'"
                 " WHERE id = %s", (s.id,), fetch=False)
    assert_problem(s.verify(code), 422, "code_expired", "code")
    assert s.state()["attempts_left"] == 3
    assert_json(s.challenge("email"), 202)
    assert_json(s.verify(site.mail_code(acct, 2)), 200)


def test_tokens_and_logins_are_stored_hashed(site):
    acct = site.account()
    s = start_session(site.server, acct.login)
    rows = vouchlib.sql(site.server.db_url,
                        "SELECT row_to_json(s)::text FROM"
                        " selfservice_sessions s WHERE id = %s", (s.id,))
    text = rows[0][0]
    assert s.token not in text and s.token[3:] not in text
    assert acct.login not in text and acct.login.lower() not in text


# --- the page ----------------------------------------------------------------

def test_reset_page_is_served_with_a_strict_policy(site):
    r = site.server.client().get("/reset")
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe" not in csp, csp
    assert "script-src 'sha256-" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    html = r.text
    assert "<script src" not in html and "http://" not in html \
        and "https://" not in html, "the page loads something from away"
    assert site.msp_name not in html
