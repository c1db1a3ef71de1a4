"""Alerts from directory state against a real Samba AD DC: a lockout
pushes account_locked within one sync interval, expiring and expired
passwords alert once per threshold (across restarts and processes),
only the nearest of several crossed thresholds is sent, alerts fall back
to SMS and email, and a device reports a lockout it did not cause.
"""

import json
import threading
import time

import pytest

from vouchlib import assert_json, assert_problem, describe

pytest.register_assert_rewrite("synclib")
from synclib import DAY, Directory  # noqa: E402
from verifylib import TEAM, TOPIC  # noqa: E402

pytest_plugins = ["verifylib", "synclib"]


def kinds(alerts):
    return [(e["data"]["kind"], e["data"]["threshold"], e["data"]["channel"])
            for e in alerts]


def assert_alert_push(req, kind, body_words=()):
    """A recorded APNs request is an alert push of this kind."""
    h = req["headers"]
    assert req["status"] == 200, req
    assert h["apns-push-type"] == "alert"
    assert h["apns-priority"] == "10"
    assert h["apns-topic"] == TOPIC
    assert req["jwt"]["claims"]["iss"] == TEAM
    assert int(h["apns-expiration"]) > time.time(), h
    p = req["json"]
    assert set(p) == {"aps", "vouch"}, p
    assert p["vouch"]["type"] == kind, p
    assert isinstance(p["vouch"]["id"], str) and p["vouch"]["id"], p
    assert h.get("apns-collapse-id") == p["vouch"]["id"], h
    alert = p["aps"]["alert"]
    assert alert["title"] and alert["body"], p
    assert p["aps"]["sound"] == "default", p
    for w in body_words:
        assert w in alert["body"], alert
    return p


def alert_events(d, user_id, kind=None):
    return [e for e in d.alerts(user_id)
            if kind is None or e["data"]["kind"] == kind]


# --- lockout ----------------------------------------------------------------

def test_lockout_pushes_within_one_interval(vserver, venv, dc):
    """The one test that waits for the interval itself (30 s)."""
    d = Directory(vserver, dc)
    u = d.add_user(display_name="Liam Locked", mail="liam@ajax.example")
    d.configure(sync_interval=30)
    d.wait_synced()
    user = d.user(u)
    device = d.device(user)
    assert d.user(u)["directory"]["locked_out"] is False

    d.dc.bad_binds(u, 3)
    assert d.dc.locked(u), "three bad binds did not lock the account"
    t0 = time.monotonic()
    req = venv.apns.wait_requests(device.push_token, timeout=30 + 10)[0]
    took = time.monotonic() - t0
    assert took <= 30 + 5, "account_locked came after %.0f s" % took

    p = assert_alert_push(req, "account_locked", ["locked"])
    text = json.dumps(p)
    assert u.password not in text and u.upn not in text

    info = d.user(u)["directory"]
    assert info["locked_out"] is True, info
    ev = [e for e in d.events(type="account.locked_out")
          if e["subject"]["id"] == user["id"]]
    assert len(ev) == 1, ev
    assert ev[0]["subject"]["type"] == "user"
    assert kinds(alert_events(d, user["id"])) == [
        ("account_locked", 0, "push")]

    # The same lockout alerts once, however often vouch looks again.
    d.sync()
    d.sync()
    time.sleep(1)
    assert len(venv.apns.requests(device.push_token)) == 1
    assert len(alert_events(d, user["id"])) == 1


def test_lockout_report_from_the_device(world):
    device = world.device()
    r = device.http.post("/v1/device/lockout-report",
                         json={"note": "I was asleep"})
    assert r.status_code in (200, 201, 202, 204), describe(r)
    ev = [e for e in world.events(type="account.lockout_reported")
          if e["subject"]["id"] == world.user["id"]]
    assert len(ev) == 1, ev
    assert ev[0]["subject"]["type"] == "user"
    assert ev[0]["actor"] == {"type": "device", "id": device.id}
    assert ev[0]["data"].get("note") == "I was asleep", ev[0]

    # Without a note too.
    r = device.http.post("/v1/device/lockout-report", json={})
    assert r.status_code in (200, 201, 202, 204), describe(r)

    # Only a device may report, with a token that works.
    anon = world.server.client()
    r = anon.post("/v1/device/lockout-report", json={})
    assert_problem(r, 401, "unauthorized")
    r = world.api.post("/v1/device/lockout-report", json={})
    assert_problem(r, 401, "unauthorized")
    r = device.http.post("/v1/device/lockout-report", json={"note": 5})
    assert_problem(r, 422, "validation_failed", "note")
    world.api.delete("/v1/devices/%s" % device.id)
    r = device.http.post("/v1/device/lockout-report", json={})
    assert_problem(r, 401, "unauthorized")
    assert len([e for e in world.events(type="account.lockout_reported")
                if e["subject"]["id"] == world.user["id"]]) == 2


# --- expiry -----------------------------------------------------------------

def test_nearest_of_several_thresholds_only(vserver, venv, dc):
    d = Directory(vserver, dc)
    u = d.add_user(display_name="Nina Near")
    d.configure()
    d.wait_synced()
    user = d.user(u)
    device = d.device(user)

    # 2.5 days left: 14, 7 and 3 are all crossed at once.
    d.dc.expire_in(u, 2.5 * DAY)
    d.sync()
    req = venv.apns.wait_requests(device.push_token)[0]
    assert_alert_push(req, "password_expiring", ["3 days"])
    time.sleep(1)
    assert len(venv.apns.requests(device.push_token)) == 1
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expiring", 3, "push")]

    # A later threshold of the same password still fires, once.
    d.dc.expire_in(u, 0.5 * DAY)        # a new pwdLastSet: a new password
    d.sync()
    venv.apns.wait_requests(device.push_token, 2)
    d.sync()
    time.sleep(1)
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expiring", 3, "push"), ("password_expiring", 1, "push")]
    assert len(venv.apns.requests(device.push_token)) == 2


def test_expired_password_alerts_on_android(vserver, venv, dc):
    d = Directory(vserver, dc)
    u = d.add_user(display_name="Omar Old")
    d.configure()
    d.wait_synced()
    user = d.user(u)
    device = d.device(user, platform="android")
    d.dc.expire_in(u, -3600)
    d.sync()
    req = venv.fcm.wait_requests(device.push_token)[0]
    msg = req["json"]["message"]
    assert msg["data"]["vouch_type"] == "password_expired", msg
    assert msg["data"]["vouch_id"], msg
    assert msg["android"]["priority"] == "HIGH", msg
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expired", 0, "push")]
    assert d.user(u)["directory"]["password_expires_at"] is not None

    d.sync()
    time.sleep(1)
    assert len(venv.fcm.requests(device.push_token)) == 1


def test_policy_turns_alerts_off(vserver, venv, dc):
    d = Directory(vserver, dc)
    d.policy(expiry_days=[3], channels=["push", "sms", "email"],
             on_expired=False, on_lockout=False)
    far = d.add_user(mobile="+15553000001")
    gone = d.add_user(mobile="+15553000002")
    locked = d.add_user(mobile="+15553000003")
    d.configure()
    d.wait_synced()
    d.dc.expire_in(far, 5 * DAY)        # outside the only threshold
    d.dc.expire_in(gone, -DAY)          # expired, but on_expired is off
    d.dc.bad_binds(locked, 3)           # locked, but on_lockout is off
    d.sync()
    assert d.user(locked)["directory"]["locked_out"] is True
    time.sleep(2)
    for du in (far, gone, locked):
        assert alert_events(d, d.user(du)["id"]) == []
        assert venv.sinks.texts(du.mobile) == []


def test_alerts_fall_back_to_sms_then_email(vserver, venv, dc):
    d = Directory(vserver, dc)
    both = d.add_user(display_name="Sam Sms", mobile="+15554000001",
                      mail="sam.%s@ajax.example" % time.time_ns())
    mail_only = d.add_user(display_name="Emma Mail",
                           mail="emma.%s@ajax.example" % time.time_ns())
    nothing = d.add_user(display_name="Ned None")
    d.configure()
    d.wait_synced()
    for du in (both, mail_only, nothing):
        d.dc.expire_in(du, 6.5 * DAY)
    d.sync()

    sms = venv.sinks.wait_text(both.mobile)
    assert "7 days" in sms["body"] and d.world.msp_name in sms["body"], sms
    mail = venv.sinks.wait_mail(mail_only.mail)
    assert d.world.msp_name in mail["data"], mail
    time.sleep(1)
    assert venv.sinks.mails(both.mail) == []
    assert kinds(alert_events(d, d.user(both)["id"])) == [
        ("password_expiring", 7, "sms")]
    assert kinds(alert_events(d, d.user(mail_only)["id"])) == [
        ("password_expiring", 7, "email")]
    assert alert_events(d, d.user(nothing)["id"]) == []

    # Push is preferred once the user has a device; the policy can
    # exclude SMS.
    d2 = Directory(vserver, dc, tenant=d.tenant)
    d2.policy(expiry_days=[14, 7], channels=["push", "email"],
              on_expired=True, on_lockout=True)
    dev_user = d2.add_user(mobile="+15554000002")
    no_sms = d2.add_user(mobile="+15554000003",
                         mail="nosms.%s@ajax.example" % time.time_ns())
    d2.configure()
    d2.wait_synced()
    device = d2.device(d2.user(dev_user))
    d2.dc.expire_in(dev_user, 10 * DAY)
    d2.dc.expire_in(no_sms, 10 * DAY)
    d2.sync()
    req = venv.apns.wait_requests(device.push_token)[0]
    assert_alert_push(req, "password_expiring", ["10 days"])
    venv.sinks.wait_mail(no_sms.mail)
    time.sleep(1)
    assert venv.sinks.texts(dev_user.mobile) == []
    assert venv.sinks.texts(no_sms.mobile) == []


def test_alert_policy_defaults_and_validation(directory):
    d = directory
    path = "/v1/customers/%s/alert-policy" % d.cid
    body = assert_json(d.api.get(path), 200)
    assert body["expiry_days"] == [14, 7, 3, 1], body
    assert body["channels"] == ["push", "sms", "email"], body
    assert body["on_expired"] is True and body["on_lockout"] is True

    put = d.policy(expiry_days=[10, 2], channels=["email"],
                   on_expired=False, on_lockout=True)
    assert put["expiry_days"] == [10, 2] and put["channels"] == ["email"]
    assert put["on_expired"] is False and put["on_lockout"] is True
    assert assert_json(d.api.get(path), 200) == put
    assert [e for e in d.events(type="alert_policy.updated")
            if e["subject"]["id"] == d.cid]

    for field, value in (("expiry_days", []), ("expiry_days", [-1]),
                         ("expiry_days", ["7"]), ("channels", ["fax"]),
                         ("channels", "push"), ("on_expired", "yes")):
        b = {"expiry_days": [7], "channels": ["push"]}
        b[field] = value
        r = d.api.put(path, json=b)
        assert_problem(r, 422, "validation_failed", field)
    assert assert_json(d.api.get(path), 200) == put


# --- restarts and several processes ------------------------------------------

def test_one_alert_per_threshold_across_restarts_and_processes(
        make_vouchd, venv, dc):
    a = make_vouchd(conf=venv.conf())
    b = make_vouchd(conf=venv.conf({
        "secrets": {"key_file": a.secret},
        "tokens": {"signing_key_file": a.signing}}), db_url=a.db_url)
    d = Directory(a, dc)
    d.policy(expiry_days=[14, 7], channels=["push"], on_expired=True,
             on_lockout=True)
    u = d.add_user(display_name="Rita Restart")
    d.configure()
    d.wait_synced()
    user = d.user(u)
    device = d.device(user)
    api_b = b.client(d.tenant.api_key)

    d.dc.expire_in(u, 5.5 * DAY)        # 6 days left: 14 and 7 crossed
    d.sync()
    venv.apns.wait_requests(device.push_token)
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expiring", 7, "push")]

    # Both processes sync at once, several times.
    def sync_on(api):
        for _ in range(3):
            d.sync(api=api)
    threads = [threading.Thread(target=sync_on, args=(api,))
               for api in (d.api, api_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    # A restart forgets nothing.
    rc, _ = a.stop()
    assert rc == 0
    a.start()
    d.sync()
    d.sync(api=api_b)
    time.sleep(1.5)
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expiring", 7, "push")]
    assert len(venv.apns.requests(device.push_token)) == 1

    # A new, nearer threshold for the same password fires once more.
    d.policy(expiry_days=[14, 7, 6], channels=["push"], on_expired=True,
             on_lockout=True)
    threads = [threading.Thread(target=lambda api=api: d.sync(api=api))
               for api in (d.api, api_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    venv.apns.wait_requests(device.push_token, 2)
    time.sleep(1.5)
    assert kinds(alert_events(d, user["id"])) == [
        ("password_expiring", 7, "push"), ("password_expiring", 6, "push")]
    assert len(venv.apns.requests(device.push_token)) == 2
