"""Technicians: create with a key shown once, list, read, revoke."""

import hashlib
import json
import uuid

import pytest

from vouchlib import (assert_json, assert_problem, describe, is_uuid,
                      parse_time)

FIELDS = {"id", "display_name", "email", "role", "created_at"}
SECRET_NAMES = {"api_key", "key", "key_hash", "api_key_hash", "hash",
                "secret", "password", "token"}


def assert_no_secret(obj, *keys):
    """Neither a key nor an obvious digest of it shows in obj."""
    text = json.dumps(obj)
    for k in keys:
        assert k not in text, "a key shows in %s" % text
        for h in (hashlib.sha256(k.encode()).hexdigest(),
                  hashlib.sha256(k.encode()).hexdigest().upper()):
            assert h not in text, "a key's hash shows in %s" % text
    assert not SECRET_NAMES & set(obj), obj


def test_create(msp_a):
    r = msp_a.api.post("/v1/technicians", json={
        "display_name": "Pat Tech", "email": "pat@msp.example",
        "role": "technician"})
    t = assert_json(r, 201)
    assert FIELDS | {"api_key"} <= set(t), t
    assert is_uuid(t["id"])
    assert t["display_name"] == "Pat Tech"
    assert t["email"] == "pat@msp.example"
    assert t["role"] == "technician"
    parse_time(t["created_at"])
    assert isinstance(t["api_key"], str) and len(t["api_key"]) >= 20
    assert t["api_key"] != msp_a.api_key

    # The key works at once.
    api = msp_a.server.client(t["api_key"])
    assert api.get("/v1/customers").status_code == 200


def test_create_admin(msp_a):
    t = msp_a.technician(role="admin")
    assert t["role"] == "admin"
    api = msp_a.server.client(t["api_key"])
    r = api.post("/v1/technicians", json={
        "display_name": "Made by second admin", "email": "m@x.example",
        "role": "technician"})
    assert_json(r, 201)


def test_keys_differ(msp_a):
    keys = {msp_a.technician()["api_key"] for _ in range(5)}
    assert len(keys) == 5


def test_get_and_list_show_no_key(msp_a):
    t = msp_a.technician(display_name="Quiet")
    key = t.pop("api_key")

    got = assert_json(msp_a.api.get("/v1/technicians/" + t["id"]), 200)
    assert FIELDS <= set(got), got
    assert_no_secret(got, key, msp_a.api_key)
    assert {k: got[k] for k in FIELDS} == {k: t[k] for k in FIELDS}

    items = msp_a.api.list_all("/v1/technicians")
    ids = [i["id"] for i in items]
    assert msp_a.technician_id in ids and t["id"] in ids
    for i in items:
        assert FIELDS <= set(i), i
        assert_no_secret(i, key, msp_a.api_key)
    first = [i for i in items if i["id"] == msp_a.technician_id][0]
    assert first["role"] == "admin"


def test_list_pages(msp_a):
    made = [msp_a.technician(display_name="T%d" % i)["id"]
            for i in range(6)]
    got = [i["id"] for i in msp_a.api.list_all("/v1/technicians", limit=2)]
    assert len(got) == len(set(got)) == 7
    assert set(made) | {msp_a.technician_id} == set(got)


@pytest.mark.parametrize("body,field", [
    ({"email": "a@x.example", "role": "admin"}, "display_name"),
    ({"display_name": "", "email": "a@x.example", "role": "admin"},
     "display_name"),
    ({"display_name": "d" * 201, "email": "a@x.example", "role": "admin"},
     "display_name"),
    ({"display_name": 5, "email": "a@x.example", "role": "admin"},
     "display_name"),
    ({"display_name": "D", "role": "admin"}, "email"),
    ({"display_name": "D", "email": "nope", "role": "admin"}, "email"),
    ({"display_name": "D", "email": "a b@x.example", "role": "admin"},
     "email"),
    ({"display_name": "D", "email": None, "role": "admin"}, "email"),
    ({"display_name": "D", "email": "a@x.example"}, "role"),
    ({"display_name": "D", "email": "a@x.example", "role": "root"}, "role"),
    ({"display_name": "D", "email": "a@x.example", "role": "Admin"}, "role"),
    ({"display_name": "D", "email": "a@x.example", "role": None}, "role"),
    ({"display_name": "D", "email": "a@x.example", "role": ["admin"]},
     "role"),
])
def test_validation(msp_a, body, field):
    r = msp_a.api.post("/v1/technicians", json=body)
    assert_problem(r, 422, "validation_failed", field=field)
    assert len(msp_a.api.list_all("/v1/technicians")) == 1


def test_revoke(msp_a):
    t = msp_a.technician()
    api = msp_a.server.client(t["api_key"])
    assert api.get("/v1/customers").status_code == 200

    r = msp_a.api.delete("/v1/technicians/" + t["id"])
    assert r.status_code == 204, describe(r)
    assert r.content == b""
    assert r.headers.get("X-Request-Id")

    # Refused on the very next request, on the same connection too.
    assert_problem(api.get("/v1/customers"), 401, "unauthorized")
    fresh = msp_a.server.client(t["api_key"])
    assert_problem(fresh.get("/v1/customers"), 401, "unauthorized")

    # Revoking again: it is gone.
    assert_problem(msp_a.api.delete("/v1/technicians/" + t["id"]),
                   404, "not_found")


def test_revoke_admin_by_admin(msp_a):
    other = msp_a.technician(role="admin")
    other_api = msp_a.server.client(other["api_key"])
    r = other_api.delete("/v1/technicians/" + msp_a.technician_id)
    assert r.status_code == 204, describe(r)
    assert_problem(msp_a.api.get("/v1/customers"), 401, "unauthorized")
    assert other_api.get("/v1/customers").status_code == 200


def test_revoke_self_is_conflict(msp_a):
    assert_problem(msp_a.api.delete("/v1/technicians/" +
                                    msp_a.technician_id), 409, "conflict")
    assert msp_a.api.get("/v1/customers").status_code == 200


def test_revoke_keeps_other_keys(msp_a):
    t1 = msp_a.technician()
    t2 = msp_a.technician()
    r = msp_a.api.delete("/v1/technicians/" + t1["id"])
    assert r.status_code == 204, describe(r)
    api2 = msp_a.server.client(t2["api_key"])
    assert api2.get("/v1/customers").status_code == 200


@pytest.mark.parametrize("tid", ["not-a-uuid", str(uuid.uuid4())])
def test_unknown(msp_a, tid):
    assert_problem(msp_a.api.get("/v1/technicians/" + tid), 404,
                   "not_found")
    assert_problem(msp_a.api.delete("/v1/technicians/" + tid), 404,
                   "not_found")


def test_revoked_key_on_every_route(msp_a):
    c = msp_a.customer()
    u = msp_a.user(c["id"])
    t = msp_a.technician(role="admin")
    api = msp_a.server.client(t["api_key"])
    assert msp_a.api.delete("/v1/technicians/" + t["id"]).status_code == 204
    for method, path, body in [
            ("GET", "/v1/customers", None),
            ("POST", "/v1/customers", {"name": "x"}),
            ("GET", "/v1/customers/" + c["id"], None),
            ("GET", "/v1/users/" + u["id"], None),
            ("PATCH", "/v1/users/" + u["id"], {"display_name": "pwned"}),
            ("POST", "/v1/users", {"customer_id": c["id"],
                                   "display_name": "x"}),
            ("GET", "/v1/technicians", None),
            ("POST", "/v1/technicians", {"display_name": "x",
                                         "email": "x@x.example",
                                         "role": "admin"}),
            ("DELETE", "/v1/technicians/" + msp_a.technician_id, None),
            ("GET", "/v1/events", None),
            ("GET", "/v1/events/export", None)]:
        r = api.request(method, path, json=body)
        assert_problem(r, 401, "unauthorized")
    assert msp_a.api.get("/v1/customers").status_code == 200
    assert assert_json(msp_a.api.get("/v1/users/" + u["id"]),
                       200)["display_name"] == u["display_name"]
    assert len(msp_a.api.list_all("/v1/customers")) == 1
