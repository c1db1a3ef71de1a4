"""Tenants never see or touch each other's objects: every attempt with
another MSP's key answers 404 and changes nothing."""

import json
import uuid

import pytest

from vouchlib import assert_json, assert_problem, describe


@pytest.fixture
def world(msp_a, msp_b):
    """Objects of MSP A, and what A sees of them before B tries anything."""
    c = msp_a.customer("Secret Customer", external_ref="A-1")
    u = msp_a.user(c["id"], "Secret User", email="secret@a.example",
                   phone="+15550000001", login="secret")
    t = msp_a.technician(display_name="Secret Tech")
    # B has objects of its own too.
    bc = msp_b.customer("B Customer")
    msp_b.user(bc["id"], "B User")
    snap = snapshot(msp_a)
    return {"c": c, "u": u, "t": t, "snap": snap}


def snapshot(msp):
    return {
        "customers": msp.api.list_all("/v1/customers"),
        "users": msp.api.list_all("/v1/users"),
        "technicians": msp.api.list_all("/v1/technicians"),
        "events": msp.events(),
    }


def a_ids(msp_a, world):
    ids = {msp_a.msp_id, msp_a.technician_id, world["c"]["id"],
           world["u"]["id"], world["t"]["id"]}
    ids |= {e["id"] for e in world["snap"]["events"]}
    return ids


def assert_unchanged(msp_a, world):
    now = snapshot(msp_a)
    assert now == world["snap"]


def test_reads_are_404(msp_a, msp_b, world):
    b = msp_b.api
    assert_problem(b.get("/v1/customers/" + world["c"]["id"]), 404,
                   "not_found")
    assert_problem(b.get("/v1/users/" + world["u"]["id"]), 404, "not_found")
    assert_problem(b.get("/v1/technicians/" + world["t"]["id"]), 404,
                   "not_found")
    assert_problem(b.get("/v1/technicians/" + msp_a.technician_id), 404,
                   "not_found")
    assert_problem(b.get("/v1/events", params={"user_id":
                                               world["u"]["id"]}),
                   404, "not_found")
    assert_problem(b.get("/v1/events/export",
                         params={"user_id": world["u"]["id"]}),
                   404, "not_found")


def test_404_looks_like_a_missing_object(msp_a, msp_b, world):
    # Same reply as for an id nobody has, so existence does not leak.
    ghost = str(uuid.uuid4())
    for path, theirs_id in (("/v1/customers/", world["c"]["id"]),
                            ("/v1/users/", world["u"]["id"]),
                            ("/v1/technicians/", world["t"]["id"])):
        theirs = msp_b.api.get(path + theirs_id)
        missing = msp_b.api.get(path + ghost)
        assert theirs.status_code == missing.status_code == 404
        t, m = theirs.json(), missing.json()
        for k in ("type", "title", "status", "code"):
            assert t[k] == m[k], (t, m)
        assert theirs_id not in theirs.text


def test_patch_user_is_404(msp_a, msp_b, world):
    for body in ({"display_name": "pwned"}, {"status": "disabled"},
                 {"email": None, "phone": None}, {}):
        r = msp_b.api.patch("/v1/users/" + world["u"]["id"], json=body)
        assert_problem(r, 404, "not_found")
    assert_unchanged(msp_a, world)


def test_revoke_technician_is_404(msp_a, msp_b, world):
    for tid in (world["t"]["id"], msp_a.technician_id):
        r = msp_b.api.delete("/v1/technicians/" + tid)
        assert_problem(r, 404, "not_found")
    # A's keys still work.
    assert msp_a.api.get("/v1/customers").status_code == 200
    tapi = msp_a.server.client(world["t"]["api_key"])
    assert tapi.get("/v1/customers").status_code == 200
    assert_unchanged(msp_a, world)


def test_create_user_in_their_customer_is_404(msp_a, msp_b, world):
    r = msp_b.api.post("/v1/users", json={"customer_id": world["c"]["id"],
                                          "display_name": "Planted"})
    assert_problem(r, 404, "not_found", field="customer_id")
    assert_unchanged(msp_a, world)
    assert not any(u["display_name"] == "Planted"
                   for u in msp_b.api.list_all("/v1/users"))


def test_technician_role_of_b_also_404(msp_a, msp_b, world):
    t = msp_b.technician(role="technician")
    api = msp_b.server.client(t["api_key"])
    assert_problem(api.get("/v1/customers/" + world["c"]["id"]), 404,
                   "not_found")
    assert_problem(api.get("/v1/users/" + world["u"]["id"]), 404,
                   "not_found")
    r = api.patch("/v1/users/" + world["u"]["id"], json={"login": "x"})
    assert_problem(r, 404, "not_found")
    r = api.post("/v1/users", json={"customer_id": world["c"]["id"],
                                    "display_name": "Planted"})
    assert_problem(r, 404, "not_found", field="customer_id")
    assert_unchanged(msp_a, world)


def test_lists_never_show_theirs(msp_a, msp_b, world):
    ids = a_ids(msp_a, world)
    b = msp_b.api
    seen = []
    for path in ("/v1/customers", "/v1/users", "/v1/technicians",
                 "/v1/events"):
        seen += b.list_all(path)
        seen += b.list_all(path, limit=1)
    for params in ({"q": "secret"}, {"q": "Secret User"},
                   {"customer_id": world["c"]["id"]}):
        r = b.get("/v1/users", params=params)
        assert r.status_code in (200, 404), describe(r)
        if r.status_code == 200:
            assert r.json()["items"] == [], r.json()
    text = json.dumps(seen)
    for i in ids:
        assert i not in text, "MSP A's %s shows to MSP B" % i
    for word in ("Secret", "secret@a.example", "+15550000001"):
        assert word not in text


def test_export_and_verify_are_per_tenant(msp_a, msp_b, world):
    ids = a_ids(msp_a, world)
    b = msp_b.api
    text = b.get("/v1/events/export").text
    text += b.get("/v1/events/export", params={"format": "csv"}).text
    for i in ids:
        assert i not in text
    body = assert_json(b.get("/v1/events/verify"), 200)
    assert body["intact"] is True
    assert body["last_seq"] == len(msp_b.events())


def test_their_cursor_shows_nothing_of_theirs(msp_a, msp_b, world):
    msp_a.customer("Secret Two")
    msp_a.user(world["c"]["id"], "Secret Two")
    ids = a_ids(msp_a, world)
    for path in ("/v1/customers", "/v1/users", "/v1/technicians",
                 "/v1/events"):
        body = assert_json(msp_a.api.get(path, params={"limit": 1}), 200)
        cur = body["next_cursor"]
        assert cur, path
        r = msp_b.api.get(path, params={"cursor": cur})
        assert r.status_code in (200, 422), describe(r)
        for i in ids:
            assert i not in r.text, "%s with A's cursor shows %s" % (path, i)
        assert "Secret" not in r.text


def test_a_still_sees_everything(msp_a, msp_b, world):
    assert_json(msp_a.api.get("/v1/customers/" + world["c"]["id"]), 200)
    assert_json(msp_a.api.get("/v1/users/" + world["u"]["id"]), 200)
    assert_json(msp_a.api.get("/v1/technicians/" + world["t"]["id"]), 200)
    got = msp_a.events(user_id=world["u"]["id"])
    assert [e["type"] for e in got] == ["user.created"]
