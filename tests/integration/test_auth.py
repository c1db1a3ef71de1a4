"""API keys, roles and the per-key rate limit."""

import time
import uuid

import pytest
import requests

from vouchlib import assert_json, assert_problem, describe

PROTECTED = [
    ("GET", "/v1/customers"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers/%s" % uuid.uuid4()),
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/%s" % uuid.uuid4()),
    ("PATCH", "/v1/users/%s" % uuid.uuid4()),
    ("GET", "/v1/technicians"),
    ("POST", "/v1/technicians"),
    ("GET", "/v1/technicians/%s" % uuid.uuid4()),
    ("DELETE", "/v1/technicians/%s" % uuid.uuid4()),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/export"),
    ("GET", "/v1/events/verify"),
]


def call(session, method, path, headers=None):
    kw = {"headers": headers or {}}
    if method in ("POST", "PATCH", "PUT"):
        kw["json"] = {}
    return session.request(method, path, **kw)


@pytest.mark.parametrize("method,path", PROTECTED)
def test_no_credential(anon, method, path):
    assert_problem(call(anon, method, path), 401, "unauthorized")


def test_bad_headers(anon, msp_a):
    key = msp_a.api_key
    bad = [
        "Basic " + key,
        "Bearer",
        "Bearer ",
        "Bearer  ",
        key,
        "Bearer " + key + "x",
        "Bearer " + key[:-1],
        "Bearer " + key[:-1] + ("A" if key[-1] != "A" else "B"),
        "Bearer x" + key,
        "Bearer " + key + " " + key,
        "Bearer " + "a" * 5000,
        "Bearer \u00e9\u00e9",
        "Token " + key,
    ]
    for h in bad:
        r = anon.get("/v1/customers",
                     headers={"Authorization": h.encode("utf-8")})
        assert_problem(r, 401, "unauthorized")
    # The good one still works after all that.
    r = anon.get("/v1/customers", headers={"Authorization": "Bearer " + key})
    assert r.status_code == 200, describe(r)


def test_401_before_404(anon):
    r = anon.get("/v1/customers/%s" % uuid.uuid4())
    assert_problem(r, 401, "unauthorized")
    r = anon.get("/v1/users/not-a-uuid")
    assert_problem(r, 401, "unauthorized")


def test_401_before_body_checks(anon):
    r = anon.post("/v1/customers", data="{not json",
                  headers={"Content-Type": "application/json"})
    assert_problem(r, 401, "unauthorized")
    r = anon.post("/v1/customers", data="x",
                  headers={"Content-Type": "text/plain"})
    assert r.status_code in (401, 415), describe(r)


def test_key_is_not_echoed(anon, msp_a):
    r = anon.get("/v1/customers",
                 headers={"Authorization": "Bearer " + msp_a.api_key + "z"})
    assert r.status_code == 401
    assert msp_a.api_key not in r.text


def test_admin_key_works(msp_a):
    body = assert_json(msp_a.api.get("/v1/customers"), 200)
    assert body["items"] == []


@pytest.fixture
def tech(msp_a):
    """A technician (not admin) of MSP A, with a session."""
    t = msp_a.technician(role="technician")
    t["api"] = msp_a.server.client(t["api_key"])
    return t


def test_technician_barred_from_technicians(msp_a, tech):
    api = tech["api"]
    assert_problem(api.get("/v1/technicians"), 403, "forbidden")
    assert_problem(api.get("/v1/technicians/" + msp_a.technician_id),
                   403, "forbidden")
    assert_problem(api.post("/v1/technicians", json={
        "display_name": "Sneaky", "email": "s@x.example",
        "role": "admin"}), 403, "forbidden")
    assert_problem(api.delete("/v1/technicians/" + msp_a.technician_id),
                   403, "forbidden")
    # Nothing happened: the admin is still there and still works.
    body = assert_json(msp_a.api.get("/v1/technicians"), 200)
    ids = [t["id"] for t in body["items"]]
    assert msp_a.technician_id in ids
    assert not any(t["display_name"] == "Sneaky" for t in body["items"])


def test_technician_can_use_customers_users_events(tech):
    api = tech["api"]
    r = api.post("/v1/customers", json={"name": "By a tech"})
    c = assert_json(r, 201)
    assert assert_json(api.get("/v1/customers/" + c["id"]), 200)["id"] == \
        c["id"]
    assert_json(api.get("/v1/customers"), 200)
    r = api.post("/v1/users", json={"customer_id": c["id"],
                                    "display_name": "U"})
    u = assert_json(r, 201)
    r = api.patch("/v1/users/" + u["id"], json={"display_name": "U2"})
    assert assert_json(r, 200)["display_name"] == "U2"
    assert_json(api.get("/v1/users"), 200)
    assert_json(api.get("/v1/users/" + u["id"]), 200)
    assert_json(api.get("/v1/events"), 200)
    assert_json(api.get("/v1/events/verify"), 200)
    r = api.get("/v1/events/export")
    assert r.status_code == 200, describe(r)


def test_actor_is_the_technician(msp_a, tech):
    r = tech["api"].post("/v1/customers", json={"name": "Acted"})
    c = assert_json(r, 201)
    evs = [e for e in msp_a.events(type="customer.created")
           if e["subject"]["id"] == c["id"]]
    assert len(evs) == 1, evs
    assert evs[0]["actor"] == {"type": "technician", "id": tech["id"]}


# --- rate limiting ---------------------------------------------------------

@pytest.fixture
def limited(make_vouchd):
    return make_vouchd(conf={"auth": {"rate_limit_per_minute": 60,
                                      "rate_limit_burst": 5}})


def burst(api, n):
    return [api.get("/v1/customers") for _ in range(n)]


def test_rate_limit(limited):
    a = limited.tenant()
    b = limited.tenant()
    t = a.technician(role="technician")
    api = limited.client(t["api_key"])

    replies = burst(api, 20)
    codes = [r.status_code for r in replies]
    assert codes[:5] == [200] * 5, codes
    assert 429 in codes, codes
    assert set(codes) <= {200, 429}, codes
    ok = codes.count(200)
    assert ok <= 8, "a burst of 5 at 1/s let %d through" % ok

    limited_reply = [r for r in replies if r.status_code == 429][-1]
    assert_problem(limited_reply, 429, "rate_limited")
    ra = limited_reply.headers.get("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, ra
    assert int(ra) <= 60, ra

    # Other keys, in this MSP or another, are not affected.
    assert a.api.get("/v1/customers").status_code == 200
    assert b.api.get("/v1/customers").status_code == 200

    # Still limited now, fine again once Retry-After has passed.
    r = api.get("/v1/customers")
    assert r.status_code == 429, describe(r)
    time.sleep(int(r.headers["Retry-After"]) + 0.2)
    r = api.get("/v1/customers")
    assert r.status_code == 200, describe(r)


def test_rate_limit_covers_writes(limited):
    a = limited.tenant()
    reader = limited.client(a.technician()["api_key"])
    codes = [a.api.post("/v1/customers",
                        json={"name": "c%d" % i}).status_code
             for i in range(20)]
    assert 429 in codes, codes
    made = len(reader.list_all("/v1/customers"))
    assert made == codes.count(201), (made, codes)


def test_probes_not_rate_limited(limited):
    codes = [requests.get(limited.base + "/healthz", timeout=5).status_code
             for _ in range(20)]
    assert codes == [200] * 20, codes
