"""Customers: create, read, list, validation and paging."""

import datetime
import uuid

import pytest
import requests

from vouchlib import (assert_json, assert_problem, describe, is_uuid,
                      parallel, parse_time)

FIELDS = {"id", "name", "external_ref", "created_at"}


def test_create_and_get(msp_a):
    before = datetime.datetime.now(datetime.timezone.utc)
    r = msp_a.api.post("/v1/customers",
                       json={"name": "Ajax Ltd", "external_ref": "PSA-17"})
    c = assert_json(r, 201)
    assert FIELDS <= set(c), c
    assert is_uuid(c["id"]), c
    assert c["name"] == "Ajax Ltd"
    assert c["external_ref"] == "PSA-17"
    at = parse_time(c["created_at"])
    assert abs((at - before).total_seconds()) < 60, (at, before)

    got = assert_json(msp_a.api.get("/v1/customers/" + c["id"]), 200)
    assert got == c


def test_external_ref_optional_and_nullable(msp_a):
    c = msp_a.customer("No ref")
    assert c["external_ref"] is None
    r = msp_a.api.post("/v1/customers",
                       json={"name": "Null ref", "external_ref": None})
    assert assert_json(r, 201)["external_ref"] is None


def test_unknown_fields_ignored(msp_a):
    r = msp_a.api.post("/v1/customers", json={
        "name": "Extra", "colour": "blue", "id": str(uuid.uuid4()),
        "created_at": "2000-01-01T00:00:00Z"})
    c = assert_json(r, 201)
    assert c["name"] == "Extra"
    assert "colour" not in c
    assert parse_time(c["created_at"]).year > 2000


def test_name_bounds(msp_a):
    assert msp_a.customer("x")["name"] == "x"
    assert msp_a.customer("n" * 200)["name"] == "n" * 200
    # Characters, not bytes: 200 two-byte characters fit.
    name = "\u00e9" * 200
    assert msp_a.customer(name)["name"] == name
    assert msp_a.customer("\u00c5lesund \u2603 \U0001f600")["name"] == \
        "\u00c5lesund \u2603 \U0001f600"


@pytest.mark.parametrize("body,field", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"name": "\u00e9" * 201}, "name"),
    ({"name": None}, "name"),
    ({"name": 42}, "name"),
    ({"name": ["a"]}, "name"),
    ({"name": {"a": 1}}, "name"),
    ({"name": True}, "name"),
    ({"name": "ok", "external_ref": "r" * 201}, "external_ref"),
    ({"name": "ok", "external_ref": 5}, "external_ref"),
    ({"name": "ok", "external_ref": ["r"]}, "external_ref"),
    ({"name": "ok", "external_ref": False}, "external_ref"),
])
def test_validation(msp_a, body, field):
    r = msp_a.api.post("/v1/customers", json=body)
    assert_problem(r, 422, "validation_failed", field=field)
    assert msp_a.api.list_all("/v1/customers") == []


@pytest.mark.parametrize("raw", ["[]", '"name"', "42", "null", "true"])
def test_body_not_an_object(msp_a, raw):
    r = msp_a.api.post("/v1/customers", data=raw,
                       headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), describe(r)
    assert_problem(r, r.status_code,
                   "invalid_json" if r.status_code == 400
                   else "validation_failed")


def test_external_ref_bound(msp_a):
    c = msp_a.customer("Max ref", external_ref="r" * 200)
    assert c["external_ref"] == "r" * 200


@pytest.mark.parametrize("cid", ["not-a-uuid", "123", str(uuid.uuid4()),
                                 str(uuid.uuid4()).upper() + "0",
                                 "%27%20OR%201=1--"])
def test_get_unknown(msp_a, cid):
    r = msp_a.api.get("/v1/customers/" + cid)
    assert_problem(r, 404, "not_found")


def test_list_order_and_shape(msp_a):
    made = [msp_a.customer("C%02d" % i) for i in range(5)]
    body = assert_json(msp_a.api.get("/v1/customers"), 200)
    assert set(body) >= {"items", "next_cursor"}
    assert body["next_cursor"] is None
    assert body["items"] == made


def test_list_default_limit_is_50(msp_a):
    def make(i):
        r = requests.post(msp_a.server.base + "/v1/customers",
                          json={"name": "D%02d" % i}, timeout=15,
                          headers={"Authorization": "Bearer " +
                                   msp_a.api_key})
        assert r.status_code == 201, describe(r)
        return r.json()

    parallel(make, list(range(51)))
    body = assert_json(msp_a.api.get("/v1/customers"), 200)
    assert len(body["items"]) == 50
    assert body["next_cursor"]
    rest = assert_json(msp_a.api.get(
        "/v1/customers", params={"cursor": body["next_cursor"]}), 200)
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


def test_paging_returns_every_item_once(msp_a):
    def make(i):
        r = requests.post(msp_a.server.base + "/v1/customers",
                          json={"name": "P%02d" % i}, timeout=15,
                          headers={"Authorization": "Bearer " +
                                   msp_a.api_key})
        assert r.status_code == 201, describe(r)
        return r.json()

    made = parallel(make, list(range(23)))
    whole = assert_json(msp_a.api.get("/v1/customers",
                                      params={"limit": 500}), 200)
    assert whole["next_cursor"] is None
    ref = whole["items"]
    assert sorted(c["id"] for c in ref) == sorted(c["id"] for c in made)
    times = [parse_time(c["created_at"]) for c in ref]
    assert times == sorted(times), "not ordered by created_at"
    for limit in (1, 3, 7, 22, 23, 24):
        got = msp_a.api.list_all("/v1/customers", limit=limit)
        assert [c["id"] for c in got] == [c["id"] for c in ref], limit


def test_paging_page_sizes(msp_a):
    for i in range(5):
        msp_a.customer("S%d" % i)
    r = msp_a.api.get("/v1/customers", params={"limit": 2})
    body = assert_json(r, 200)
    assert len(body["items"]) == 2 and body["next_cursor"]
    r = msp_a.api.get("/v1/customers", params={"limit": 5})
    body = assert_json(r, 200)
    assert len(body["items"]) == 5
    # A full last page may or may not carry a cursor; if it does, the
    # next page is empty and ends the list.
    if body["next_cursor"] is not None:
        r = msp_a.api.get("/v1/customers",
                          params={"limit": 5, "cursor": body["next_cursor"]})
        body = assert_json(r, 200)
        assert body == {"items": [], "next_cursor": None} or \
            (body["items"] == [] and body["next_cursor"] is None), body


def test_new_items_after_cursor(msp_a):
    a = msp_a.customer("first")
    body = assert_json(msp_a.api.get("/v1/customers",
                                     params={"limit": 1}), 200)
    assert body["items"] == [a]
    b = msp_a.customer("second")
    cur = body["next_cursor"]
    if cur is not None:
        body = assert_json(msp_a.api.get(
            "/v1/customers", params={"limit": 1, "cursor": cur}), 200)
        assert body["items"] == [b]
    assert msp_a.api.list_all("/v1/customers", limit=1) == [a, b]


@pytest.mark.parametrize("limit", ["0", "501", "x", "-1", "1.5",
                                   "99999999999999999999"])
def test_bad_limit(msp_a, limit):
    r = msp_a.api.get("/v1/customers", params={"limit": limit})
    assert_problem(r, 422, "validation_failed", field="limit")


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "a" * 300,
                                    "eyJ4IjoxfQ", "%00"])
def test_bad_cursor(msp_a, cursor):
    msp_a.customer("Cursed")
    r = msp_a.api.get("/v1/customers", params={"cursor": cursor})
    assert_problem(r, 422, "validation_failed", field="cursor")


def test_tampered_cursor(msp_a):
    for i in range(3):
        msp_a.customer("T%d" % i)
    body = assert_json(msp_a.api.get("/v1/customers",
                                     params={"limit": 1}), 200)
    cur = body["next_cursor"]
    assert cur
    bad = cur[:-2] + ("AA" if cur[-2:] != "AA" else "BB")
    r = msp_a.api.get("/v1/customers", params={"cursor": bad})
    # Either refused, or read as some position; never a server error.
    assert r.status_code in (200, 422), describe(r)
    if r.status_code == 422:
        assert_problem(r, 422, "validation_failed", field="cursor")


def test_sql_text_is_data(msp_a):
    name = "Robert'); DROP TABLE customers;--"
    c = msp_a.customer(name)
    assert assert_json(msp_a.api.get("/v1/customers/" + c["id"]),
                       200)["name"] == name
    assert len(msp_a.api.list_all("/v1/customers")) == 1
