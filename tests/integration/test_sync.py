"""Directory sync against a real Samba AD DC: users imported and kept
up to date by objectGUID, the connection test, the bind password kept
out of every answer and log, unreachable and hung directories, and
tenant isolation of the directory endpoints.
"""

import time
import uuid

import pytest

from vouchlib import assert_json, assert_problem, describe, is_uuid

pytest.register_assert_rewrite("synclib")
from synclib import (  # noqa: E402
    Directory, SilentListener, parse_time, unix_time, wait_until)

pytest_plugins = ["verifylib", "synclib"]


def customer_events(d, type_):
    return [e for e in d.events(type=type_)
            if e["subject"] == {"type": "customer", "id": d.cid}]


# --- import and update -----------------------------------------------------

def test_sync_imports_users(directory):
    d = directory
    a = d.add_user(display_name="Alice Smith", mail="alice@ajax.example",
                   mobile="+15551230001")
    b = d.add_user()                    # no display name, mail or mobile
    c = d.add_user(mobile="+44 (0)7700-900.123")
    e = d.add_user(mobile="+44 7700 900123")
    f = d.add_user(mobile="555-1234")   # no country code: not E.164
    conf = d.configure()
    assert conf["url"] == d.dc.url and conf["base_dn"] == d.ou, conf
    assert conf["login_attribute"] == "userPrincipalName", conf

    synced = d.wait_synced()
    assert synced["last_error"] is None, synced
    assert synced["users"] == 5, synced
    users = d.users()
    assert set(users) == {a.guid, b.guid, c.guid, e.guid, f.guid}, users

    ua = users[a.guid]
    assert is_uuid(ua["id"]) and ua["customer_id"] == d.cid
    assert ua["login"] == a.upn
    assert ua["display_name"] == "Alice Smith"
    assert ua["email"] == "alice@ajax.example"
    assert ua["phone"] == "+15551230001"
    assert ua["status"] == "active"
    info = ua["directory"]
    assert info["guid"] == a.guid
    assert info["locked_out"] is False and info["disabled"] is False
    expires = unix_time(a.attrs()["msDS-UserPasswordExpiryTimeComputed"])
    assert abs(parse_time(info["password_expires_at"]).timestamp()
               - expires) < 2, (info, expires)

    ub = users[b.guid]
    assert ub["login"] == b.upn
    assert ub["display_name"], ub      # something readable, not empty
    assert ub["email"] is None and ub["phone"] is None, ub

    # Formatted mobile numbers are used once their digits are E.164.
    assert users[e.guid]["phone"] == "+447700900123"
    assert users[c.guid]["phone"] == "+447700900123"
    assert users[f.guid]["phone"] is None

    # The same user is readable on its own and findable by login.
    r = d.api.get("/v1/users/%s" % ua["id"])
    assert assert_json(r, 200)["directory"]["guid"] == a.guid
    found = d.api.list_all("/v1/users", params={"customer_id": d.cid,
                                                "q": a.sam})
    assert [u["id"] for u in found] == [ua["id"]], found

    ev = customer_events(d, "directory.synced")
    assert ev and ev[-1]["data"]["created"] == 5, ev
    assert ev[-1]["actor"]["type"] == "system", ev[-1]


def test_rename_keeps_the_same_user(directory):
    d = directory
    u = d.add_user(display_name="Carol Jones", mail="carol@ajax.example")
    d.configure()
    d.wait_synced()
    before = d.user(u)

    new_sam = d.dc.name("r")
    d.dc.rename(u, surname="Smith", display_name="Carol Smith",
                new_sam=new_sam)
    d.dc.modify(u.dn, mail="carol.smith@ajax.example",
                mobile="+15557654321")
    d.sync()

    users = d.users()
    assert len(users) == 1, users
    after = users[u.guid]
    assert after["id"] == before["id"]
    assert after["display_name"] == "Carol Smith"
    assert after["login"] == u.upn and u.upn.startswith(new_sam + "@")
    assert after["email"] == "carol.smith@ajax.example"
    assert after["phone"] == "+15557654321"
    assert parse_time(after["updated_at"]) > parse_time(before["updated_at"])

    # Nothing changed since: a further sync keeps one user, as it was.
    d.sync()
    again = d.users()
    assert list(again) == [u.guid] and again[u.guid]["id"] == before["id"]
    assert again[u.guid]["display_name"] == "Carol Smith"


def test_changed_attributes_follow(directory):
    d = directory
    u = d.add_user(display_name="Dan Old", mobile="+15550000001")
    d.configure()
    d.wait_synced()
    assert d.user(u)["phone"] == "+15550000001"

    v = d.add_user(display_name="Eve New")
    d.dc.modify(u.dn, displayName="Dan New")
    d.sync()
    users = d.users()
    assert set(users) == {u.guid, v.guid}
    assert users[u.guid]["display_name"] == "Dan New"
    assert users[v.guid]["display_name"] == "Eve New"
    assert d.get()["users"] == 2


def test_login_attribute_sam_account_name(directory):
    d = directory
    u = d.add_user(display_name="Frank Sam")
    conf = d.configure(login_attribute="sAMAccountName")
    assert conf["login_attribute"] == "sAMAccountName"
    d.wait_synced()
    assert d.user(u)["login"] == u.sam


def test_a_user_made_by_hand_is_not_touched(directory):
    d = directory
    manual = d.world.user
    d.add_user(display_name="Gina Dir")
    d.configure()
    d.wait_synced()
    r = d.api.get("/v1/users/%s" % manual["id"])
    body = assert_json(r, 200)
    assert body["display_name"] == manual["display_name"]
    assert body.get("directory") is None, body


# --- the connection test ----------------------------------------------------

def test_directory_test_reports_ok_and_count(directory):
    d = directory
    for _ in range(3):
        d.add_user()
    d.configure()
    assert d.test() == {"ok": True, "users": 3}

    d.add_user()
    assert d.test() == {"ok": True, "users": 4}


def test_directory_test_bad_password(directory):
    d = directory
    # A throwaway account binds, so its lockout harms no other test.
    binder = d.add_user()
    d.add_user()
    wrong = "Wrong-" + uuid.uuid4().hex
    d.configure(bind_dn=binder.dn, bind_password=wrong)
    body = d.test()
    assert body["ok"] is False, body
    assert "users" not in body or not body["users"], body
    assert wrong not in str(body)

    # The sync the PUT asked for fails the same way, and says so.
    got = wait_until(lambda: (lambda x: x if x["last_error"] else None)(
        d.get()), 30, "last_error after a bad bind")
    assert got["last_sync_at"] is None, got
    assert wrong not in str(got)
    assert customer_events(d, "directory.sync_failed")

    # The right password makes it work again.
    d.configure(bind_dn=binder.dn, bind_password=binder.password)
    assert d.test() == {"ok": True, "users": 2}


def test_directory_test_without_directory(directory):
    r = directory.api.post(directory.path("/test"))
    assert_problem(r, 404, "not_found")
    r = directory.api.get(directory.path())
    assert_problem(r, 404, "not_found")
    r = directory.api.post(directory.path("/sync"))
    assert_problem(r, 404, "not_found")


# --- the bind password stays secret -----------------------------------------

def test_bind_password_never_shown(directory, vserver):
    d = directory
    secret = d.dc.bind_password
    d.add_user()
    texts = []

    r = d.put()
    texts.append(r.text)
    body = assert_json(r, 200)
    assert "bind_password" not in body and "password" not in str(
        sorted(body)), body
    d.wait_synced()
    texts.append(d.api.get(d.path()).text)
    texts.append(d.api.post(d.path("/test")).text)
    texts.append(d.api.post(d.path("/sync")).text)
    d.wait_synced()

    # A bad password, stored and tried, must not show either.
    wrong = "Wrong-" + uuid.uuid4().hex
    binder = d.add_user()
    texts.append(d.put(bind_dn=binder.dn, bind_password=wrong).text)
    texts.append(d.api.post(d.path("/test")).text)
    wait_until(lambda: d.get()["last_error"], 30, "the failed sync")
    texts.append(d.api.get(d.path()).text)

    for path, params in (("/v1/events", {"limit": 500}),
                         ("/v1/events/export", {"format": "ndjson"}),
                         ("/v1/events/export", {"format": "csv"})):
        r = d.api.get(path, params=params)
        assert r.status_code == 200, describe(r)
        texts.append(r.text)
    assert any("directory.configured" in t for t in texts[-3:])

    for t in texts:
        assert secret not in t
        assert wrong not in t
    log = vserver.log_text()
    assert secret not in log, "the bind password is in vouchd's log"
    assert wrong not in log, "a bind password is in vouchd's log"


# --- failures ---------------------------------------------------------------

def test_unreachable_directory_is_reported_and_retried(vserver, dc):
    down = Directory(vserver, dc)
    up = Directory(vserver, dc, tenant=down.tenant)
    port = SilentListener.free_port()
    url = "ldaps://127.0.0.1:%d" % port
    down.configure(url=url, sync_interval=30)
    u = up.add_user()
    t0 = time.monotonic()
    up.configure()

    # The other customer syncs at once.
    up.wait_synced(timeout=15)
    assert u.guid in up.users()
    assert time.monotonic() - t0 < 15

    failed = wait_until(lambda: (lambda x: x if x["last_error"] else None)(
        down.get()), 30, "last_error of the unreachable directory")
    assert failed["last_sync_at"] is None
    assert isinstance(failed["last_error"], str) and failed["last_error"]
    ev = customer_events(down, "directory.sync_failed")
    assert len(ev) == 1, ev
    assert ev[0]["actor"]["type"] == "system"

    # Retried: something listening there now sees vouch come back.
    listener = SilentListener(port)
    try:
        wait_until(lambda: listener.conns, 45, "a retry of the sync")
    finally:
        listener.close()

    # Still one event for the same outage, still reported.
    time.sleep(1)
    assert down.get()["last_error"]
    assert len(customer_events(down, "directory.sync_failed")) == 1


def test_hung_directory_does_not_stall_others(vserver, dc):
    """A directory that accepts connections but never answers holds one
    sync for the LDAP timeouts (15 s each); others go on meanwhile, and
    the hung one is reported once its time is up."""
    listener = SilentListener()
    try:
        hung = Directory(vserver, dc)
        hung.configure(url="ldaps://127.0.0.1:%d" % listener.port)
        wait_until(lambda: listener.conns, 15, "the hung directory's sync")
        t_hung = time.monotonic()

        up = Directory(vserver, dc, tenant=hung.tenant)
        u = up.add_user()
        t0 = time.monotonic()
        up.configure()
        up.wait_synced(timeout=10)
        assert time.monotonic() - t0 < 10
        assert u.guid in up.users()
        assert hung.get()["last_sync_at"] is None

        got = wait_until(lambda: (lambda x: x if x["last_error"] else None)(
            hung.get()), 40, "the hung directory to be reported")
        took = time.monotonic() - t_hung
        assert took < 15 + 15 + 5, "reported after %.0f s" % took
        assert got["last_sync_at"] is None
    finally:
        listener.close()


def test_sync_asked_for_during_a_sync_is_not_lost(directory):
    """Settings changed (or a sync asked for) while a sync runs: the next
    sync starts as soon as the running one ends, not an interval later."""
    d = directory
    u = d.add_user()
    listener = SilentListener()
    try:
        d.configure(url="ldaps://127.0.0.1:%d" % listener.port)
        wait_until(lambda: listener.conns, 15, "the sync of the hung URL")
        d.configure()                   # the right URL, while it hangs
        d.request_sync()
    finally:
        listener.close()                # the hung sync fails now
    t0 = time.monotonic()
    d.wait_synced(timeout=30)
    took = time.monotonic() - t0
    assert took < 8, "the sync asked for came %.1f s late" % took
    assert u.guid in d.users()
    assert d.get()["last_error"] is None


# --- validation and isolation ------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("kind", "openldap"), ("url", "http://127.0.0.1"), ("bind_dn", ""),
    ("bind_password", None), ("base_dn", 7), ("ca_file", "relative.pem"),
    ("login_attribute", "mail"), ("sync_interval", 29),
    ("sync_interval", "300"),
])
def test_directory_put_validation(directory, field, value):
    body = directory.body()
    if value is None:
        body.pop(field)
    else:
        body[field] = value
    r = directory.api.put(directory.path(), json=body)
    assert_problem(r, 422, "validation_failed", field)
    assert_problem(directory.api.get(directory.path()), 404, "not_found")


def test_directory_settings_are_for_admins(directory):
    d = directory
    d.configure()
    tech = d.tenant.technician()
    api = d.server.client(tech["api_key"])
    for method, path, body in (
            ("put", d.path(), d.body()), ("get", d.path(), None),
            ("post", d.path("/test"), None), ("post", d.path("/sync"), None),
            ("put", "/v1/customers/%s/alert-policy" % d.cid,
             {"expiry_days": [7], "channels": ["push"]})):
        r = getattr(api, method)(path, json=body)
        assert_problem(r, 403, "forbidden")


def test_cross_tenant_directory_is_not_found(vserver, dc):
    a = Directory(vserver, dc)
    b = Directory(vserver, dc)
    a.configure()
    a.policy(expiry_days=[5], channels=["email"], on_expired=True,
             on_lockout=False)
    before = a.get()
    other = b.api
    paths = [("get", a.path(), None), ("put", a.path(), a.body()),
             ("post", a.path("/test"), None),
             ("post", a.path("/sync"), None),
             ("get", "/v1/customers/%s/alert-policy" % a.cid, None),
             ("put", "/v1/customers/%s/alert-policy" % a.cid,
              {"expiry_days": [1], "channels": ["push"]})]
    for method, path, body in paths:
        r = getattr(other, method)(path, json=body)
        assert_problem(r, 404, "not_found")
    missing = "/v1/customers/%s" % uuid.uuid4()
    for method, suffix in (("get", "/directory"), ("post", "/directory/test"),
                           ("post", "/directory/sync"),
                           ("get", "/alert-policy")):
        r = getattr(a.api, method)(missing + suffix)
        assert_problem(r, 404, "not_found")

    after = a.get()
    assert after["updated_at"] == before["updated_at"]
    r = a.api.get("/v1/customers/%s/alert-policy" % a.cid)
    assert assert_json(r, 200)["expiry_days"] == [5]
