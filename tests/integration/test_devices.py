"""Devices and enrolment: codes made by a technician (shown once, or
sent by email or SMS), enrolment by the app with its own P-256 key, the
device list, revocation, and the limits on enrolment attempts.
"""

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vouchlib import assert_json, assert_problem, describe, is_uuid, sql

pytest.register_assert_rewrite("verifylib")
from verifylib import (  # noqa: E402
    ENROLL_CODE_RE, Device, World, epoch, mail_body, public_pem)

pytest_plugins = ["verifylib"]


def test_enrolment_code_and_device_list(world):
    e = world.enrollment()
    assert set(e) >= {"code", "expires_at"}, e
    assert ENROLL_CODE_RE.fullmatch(e["code"]), e
    left = epoch(e["expires_at"]) - time.time()
    assert 86400 - 120 < left <= 86400 + 5, e

    r = world.api.get("/v1/users/%s/devices" % world.user["id"])
    assert assert_json(r, 200) == {"items": []}

    d = Device(world.server.base, "android", name="Pixel 8")
    body = d.enroll(e["code"])
    assert set(body) >= {"device_id", "token", "expires_at"}
    assert epoch(body["expires_at"]) > time.time() + 86400

    items = assert_json(world.api.get("/v1/users/%s/devices"
                                      % world.user["id"]), 200)["items"]
    assert len(items) == 1, items
    dev = items[0]
    assert dev["id"] == d.id and is_uuid(dev["id"])
    assert (dev["platform"], dev["name"], dev["status"]) == (
        "android", "Pixel 8", "active")
    assert dev["created_at"] and dev["last_seen_at"]
    assert "push_token" not in dev and "public_key" not in dev
    assert d.push_token not in str(items)

    ev = [x for x in world.events(type="device.enrolled")
          if x["subject"]["id"] == d.id]
    assert len(ev) == 1, ev
    assert d.push_token not in str(ev) and d.token not in str(ev)
    assert e["code"] not in str(world.events())


def test_code_is_single_use(world):
    code = world.enrollment()["code"]
    Device(world.server.base).enroll(code)
    r = Device(world.server.base).enroll_request(code)
    assert_problem(r, 401, "unauthorized")
    assert len(world.api.get("/v1/users/%s/devices"
                             % world.user["id"]).json()["items"]) == 1


def test_code_is_forgiving_in_case_and_dashes(world):
    code = world.enrollment()["code"]
    typed = code.replace("-", " ").lower()
    assert assert_json(Device(world.server.base).enroll_request(typed),
                       201)["device_id"]


@pytest.mark.parametrize("code", ["AAAA-BBBB-CCCC", "ACDE-FGHJ-KMNP",
                                  "garbage", "x" * 64, "0000-0000-0000"])
def test_unknown_or_malformed_codes_get_401_alike(world, code):
    world.enrollment()
    r = Device(world.server.base).enroll_request(code)
    body = assert_problem(r, 401, "unauthorized")
    assert "expired" not in body["detail"] and "used" not in body["detail"]


def other_keys():
    p384 = ec.generate_private_key(ec.SECP384R1())
    k1 = ec.generate_private_key(ec.SECP256K1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    private = p256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    good = public_pem(p256)
    return [public_pem(p384), public_pem(k1), public_pem(rsa_key),
            private, good.replace("A", "B", 5), good[:60],
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
            "not a key", 42, None]


def test_bad_public_keys_get_422_and_keep_the_code(world):
    code = world.enrollment()["code"]
    d = Device(world.server.base)
    for key in other_keys():
        r = d.enroll_request(code, public_key=key)
        assert_problem(r, 422, "validation_failed", "public_key")
    # The refusals did not use the code up.
    d.enroll(code)


def test_other_bad_enrolments(world):
    code = world.enrollment()["code"]
    d = Device(world.server.base)
    assert_problem(d.enroll_request(code, platform="windows"), 422,
                   "validation_failed", "platform")
    assert_problem(d.enroll_request(code, push_token=""), 422,
                   "validation_failed", "push_token")
    r = d.http.post("/v1/device/enroll", data="{", headers={
        "Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_json")
    d.enroll(code)


def test_enrolment_code_sent_by_email(world, venv):
    e = world.enrollment(send_via="email")
    mail = venv.sinks.wait_mail(world.user["email"])
    text = mail_body(mail)
    m = ENROLL_CODE_RE.search(text)
    assert m and m.group(1) == e["code"], text
    assert world.msp_name in text or world.msp_name in mail["data"]
    Device(world.server.base).enroll(m.group(1))


def test_enrolment_code_sent_by_sms(world, venv):
    e = world.enrollment(send_via="sms")
    text = venv.sinks.wait_text(world.user["phone"])["body"]
    assert e["code"] in text, text


def test_send_via_needs_the_address(world):
    nomail = world.new_user(display_name="No Mail", email=None)
    r = world.api.post("/v1/users/%s/enrollments" % nomail["id"],
                       json={"send_via": "email"})
    assert_problem(r, 422, "validation_failed", "send_via")
    r = world.api.post("/v1/users/%s/enrollments" % world.user["id"],
                       json={"send_via": "pigeon"})
    assert_problem(r, 422, "validation_failed", "send_via")


def test_revocation(world):
    d = world.device()
    other = world.device()
    assert d.prompts() == []
    r = world.api.delete("/v1/devices/%s" % d.id)
    assert r.status_code == 204, describe(r)
    assert_problem(d.prompts_request(), 401, "unauthorized")
    assert other.prompts() == []

    items = {x["id"]: x for x in world.api.get(
        "/v1/users/%s/devices" % world.user["id"]).json()["items"]}
    assert items[d.id]["status"] == "revoked"
    assert items[other.id]["status"] == "active"
    ev = [x for x in world.events(type="device.revoked")
          if x["subject"]["id"] == d.id]
    assert len(ev) == 1 and ev[0]["actor"]["type"] == "technician", ev

    # Its token cannot be renewed with its key either.
    claims = {"did": d.id, "iat": int(time.time())}
    r = d.http.post("/v1/device/token", json={"assertion": d.sign(claims)})
    assert_problem(r, 401, "unauthorized")


def test_token_renewal_with_the_device_key(world):
    d = world.device()
    claims = {"did": d.id, "iat": int(time.time())}
    r = d.http.post("/v1/device/token", json={"assertion": d.sign(claims)})
    body = assert_json(r, 200)
    assert body["token"] and body["expires_at"]
    d.set_token(body["token"])
    assert d.prompts() == []

    other = world.device()
    r = d.http.post("/v1/device/token", json={
        "assertion": d.sign(claims, key=other.key)})
    assert_problem(r, 422, "validation_failed", "assertion")
    stale = {"did": d.id, "iat": int(time.time()) - 1000}
    r = d.http.post("/v1/device/token", json={"assertion": d.sign(stale)})
    assert_problem(r, 422, "validation_failed", "assertion")


def test_a_forged_device_token_is_refused(world):
    d = world.device()
    head, body, sig = d.token.split(".")
    d.set_token("%s.%s.%s" % (head, body, sig[::-1]))
    assert_problem(d.prompts_request(), 401, "unauthorized")
    d.set_token("garbage")
    assert_problem(d.prompts_request(), 401, "unauthorized")


def test_enrolment_attempts_are_limited_per_address(make_vouchd, venv):
    server = make_vouchd(conf=venv.conf({"verification": {
        "enroll_per_minute": 3}}))
    world = World(server)
    code = world.enrollment()["code"]
    d = Device(server.base)
    for _ in range(3):
        assert_problem(d.enroll_request("AAAA-BBBB-CCCC"), 401,
                       "unauthorized")
    r = d.enroll_request(code)
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1, r.headers
    # The code itself was not spent by the refused attempt.
    assert world.api.get("/v1/users/%s/devices"
                         % world.user["id"]).json()["items"] == []


def test_expired_code_gets_401(world):
    code = world.enrollment()["code"]
    sql(world.server.db_url, "UPDATE enrollments SET expires_at = now()"
        " - interval '1 second' WHERE user_id = %s", (world.user["id"],),
        fetch=False)
    assert_problem(Device(world.server.base).enroll_request(code), 401,
                   "unauthorized")


def test_used_expired_and_unknown_codes_look_alike(world):
    used = world.enrollment()["code"]
    Device(world.server.base).enroll(used)
    other = world.new_user(display_name="Late User")
    expired = world.enrollment(user=other)["code"]
    sql(world.server.db_url, "UPDATE enrollments SET expires_at = now()"
        " - interval '1 second' WHERE user_id = %s", (other["id"],),
        fetch=False)
    seen = []
    for code in (used, expired, "ACDE-FGHJ-KMNP", "nonsense"):
        r = Device(world.server.base).enroll_request(code)
        body = assert_problem(r, 401, "unauthorized")
        seen.append((body["type"], body["title"], body["detail"]))
    assert len(set(seen)) == 1, seen


def test_enrolment_code_is_not_stored_in_the_clear(world):
    code = world.enrollment()["code"]
    rows = sql(world.server.db_url, "SELECT e::text FROM enrollments e"
               " WHERE user_id = %s", (world.user["id"],))
    assert len(rows) == 1
    for form in (code, code.replace("-", "")):
        assert form not in rows[0][0] and form.lower() not in rows[0][0]
