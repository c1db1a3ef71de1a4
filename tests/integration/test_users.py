"""End-users: create, read, update, search, validation."""

import uuid

import pytest

from vouchlib import (assert_json, assert_problem, describe, is_uuid,
                      parse_time)

FIELDS = {"id", "customer_id", "display_name", "email", "phone", "login",
          "status", "created_at"}


@pytest.fixture
def cust(msp_a):
    return msp_a.customer("Ajax Ltd")


def post(msp, body):
    return msp.api.post("/v1/users", json=body)


def test_create_full(msp_a, cust):
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "Tom Jones",
                     "email": "tom@ajax.example", "phone": "+15551234567",
                     "login": "tom@ajax.local"})
    u = assert_json(r, 201)
    assert FIELDS <= set(u), u
    assert is_uuid(u["id"])
    assert u["customer_id"] == cust["id"]
    assert u["display_name"] == "Tom Jones"
    assert u["email"] == "tom@ajax.example"
    assert u["phone"] == "+15551234567"
    assert u["login"] == "tom@ajax.local"
    assert u["status"] == "active"
    parse_time(u["created_at"])
    assert assert_json(msp_a.api.get("/v1/users/" + u["id"]), 200) == u


def test_create_minimal(msp_a, cust):
    u = msp_a.user(cust["id"], "Min")
    assert u["email"] is None and u["phone"] is None and u["login"] is None
    assert u["status"] == "active"


def test_create_with_nulls(msp_a, cust):
    u = msp_a.user(cust["id"], "Nulls", email=None, phone=None, login=None)
    assert u["email"] is None and u["phone"] is None and u["login"] is None


def test_status_not_settable_on_create(msp_a, cust):
    # Unknown or read-only fields are ignored: a new user is active.
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "S",
                     "status": "disabled"})
    assert r.status_code in (201, 422), describe(r)
    if r.status_code == 201:
        assert r.json()["status"] == "active"


@pytest.mark.parametrize("phone", ["+15551234567", "+12345678",
                                   "+123456789012345", "+447911123456",
                                   "+9" + "1" * 14])
def test_good_phones(msp_a, cust, phone):
    assert msp_a.user(cust["id"], "P", phone=phone)["phone"] == phone


@pytest.mark.parametrize("phone", [
    "15551234567", "+05551234567", "+1234567", "+1234567890123456",
    "+1555abc4567", "+1 555 123 4567", "+1-555-123-4567", "+", "",
    "++15551234567", "+15551234567\n", " +15551234567", "\uff0b15551234567",
    "+\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", 15551234567,
])
def test_bad_phones(msp_a, cust, phone):
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "P",
                     "phone": phone})
    assert_problem(r, 422, "validation_failed", field="phone")


@pytest.mark.parametrize("email", ["a@b", "tom@ajax.example",
                                   "x" * 64 + "@" + "d" * 189,
                                   "first.last+tag@sub.example.org"])
def test_good_emails(msp_a, cust, email):
    assert msp_a.user(cust["id"], "E", email=email)["email"] == email


@pytest.mark.parametrize("email", [
    "no-at.example", "two@@ajax.example", "a@b@c", "tom jones@ajax.example",
    "tom@ajax example", "x" * 64 + "@" + "d" * 190, "", "@", 7,
    "tom@ajax.example\t", ["tom@ajax.example"],
])
def test_bad_emails(msp_a, cust, email):
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "E",
                     "email": email})
    assert_problem(r, 422, "validation_failed", field="email")


def test_login_bounds(msp_a, cust):
    assert msp_a.user(cust["id"], "L", login="l" * 256)["login"] == "l" * 256
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "L",
                     "login": "l" * 257})
    assert_problem(r, 422, "validation_failed", field="login")
    r = post(msp_a, {"customer_id": cust["id"], "display_name": "L",
                     "login": 12})
    assert_problem(r, 422, "validation_failed", field="login")


@pytest.mark.parametrize("name", [None, "", "n" * 201, 3, ["n"], False])
def test_bad_display_name(msp_a, cust, name):
    r = post(msp_a, {"customer_id": cust["id"], "display_name": name})
    assert_problem(r, 422, "validation_failed", field="display_name")


def test_missing_display_name(msp_a, cust):
    r = post(msp_a, {"customer_id": cust["id"]})
    assert_problem(r, 422, "validation_failed", field="display_name")


def test_display_name_bounds(msp_a, cust):
    assert msp_a.user(cust["id"], "d" * 200)["display_name"] == "d" * 200
    assert msp_a.user(cust["id"], "\u00f8" * 200)["display_name"] == \
        "\u00f8" * 200


@pytest.mark.parametrize("cid", ["not-a-uuid", "", 17, None,
                                 "12345678-1234-1234-1234-12345678901"])
def test_bad_customer_id(msp_a, cid):
    msp_a.customer("exists")
    r = post(msp_a, {"customer_id": cid, "display_name": "X"})
    assert_problem(r, 422, "validation_failed", field="customer_id")


def test_missing_customer_id(msp_a):
    r = post(msp_a, {"display_name": "X"})
    assert_problem(r, 422, "validation_failed", field="customer_id")


def test_unknown_customer(msp_a):
    r = post(msp_a, {"customer_id": str(uuid.uuid4()), "display_name": "X"})
    assert_problem(r, 404, "not_found", field="customer_id")
    assert msp_a.api.list_all("/v1/users") == []


# --- PATCH -------------------------------------------------------------------

@pytest.fixture
def tom(msp_a, cust):
    return msp_a.user(cust["id"], "Tom Jones", email="tom@ajax.example",
                      phone="+15551234567", login="tom@ajax.local")


def patch(msp, uid, body):
    return msp.api.patch("/v1/users/" + uid, json=body)


def test_patch_fields(msp_a, tom):
    r = patch(msp_a, tom["id"], {"display_name": "Thomas Jones",
                                 "phone": "+447911123456"})
    u = assert_json(r, 200)
    assert u["display_name"] == "Thomas Jones"
    assert u["phone"] == "+447911123456"
    assert u["email"] == tom["email"] and u["login"] == tom["login"]
    assert u["id"] == tom["id"] and u["customer_id"] == tom["customer_id"]
    assert u["created_at"] == tom["created_at"]
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200) == u


def test_patch_null_clears(msp_a, tom):
    u = assert_json(patch(msp_a, tom["id"], {"email": None, "phone": None,
                                             "login": None}), 200)
    assert u["email"] is None and u["phone"] is None and u["login"] is None
    assert u["display_name"] == tom["display_name"]
    got = assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200)
    assert got["email"] is None and got["phone"] is None
    assert got["login"] is None


def test_patch_absent_keeps(msp_a, tom):
    u = assert_json(patch(msp_a, tom["id"], {}), 200)
    assert {k: u[k] for k in FIELDS} == {k: tom[k] for k in FIELDS}


def test_patch_status(msp_a, tom):
    u = assert_json(patch(msp_a, tom["id"], {"status": "disabled"}), 200)
    assert u["status"] == "disabled"
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]),
                       200)["status"] == "disabled"
    u = assert_json(patch(msp_a, tom["id"], {"status": "active"}), 200)
    assert u["status"] == "active"


@pytest.mark.parametrize("body,field", [
    ({"status": "deleted"}, "status"),
    ({"status": ""}, "status"),
    ({"status": None}, "status"),
    ({"status": 1}, "status"),
    ({"status": "ACTIVE"}, "status"),
    ({"display_name": ""}, "display_name"),
    ({"display_name": None}, "display_name"),
    ({"display_name": "d" * 201}, "display_name"),
    ({"email": "nope"}, "email"),
    ({"phone": "555-1234"}, "phone"),
    ({"login": "l" * 257}, "login"),
    ({"customer_id": None}, "customer_id"),
])
def test_patch_validation(msp_a, tom, body, field):
    r = patch(msp_a, tom["id"], body)
    assert_problem(r, 422, "validation_failed", field=field)
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200) == tom


def test_patch_customer_id_refused(msp_a, tom):
    other = msp_a.customer("Other")
    for cid in (other["id"], tom["customer_id"]):
        r = patch(msp_a, tom["id"], {"customer_id": cid})
        assert_problem(r, 422, "validation_failed", field="customer_id")
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200) == tom


def test_patch_is_all_or_nothing(msp_a, tom):
    r = patch(msp_a, tom["id"], {"display_name": "Changed",
                                 "phone": "bad"})
    assert_problem(r, 422, "validation_failed", field="phone")
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200) == tom


@pytest.mark.parametrize("uid", ["not-a-uuid", str(uuid.uuid4())])
def test_patch_unknown(msp_a, uid):
    r = patch(msp_a, uid, {"display_name": "x"})
    assert_problem(r, 404, "not_found")


@pytest.mark.parametrize("uid", ["not-a-uuid", str(uuid.uuid4()), "0"])
def test_get_unknown(msp_a, uid):
    assert_problem(msp_a.api.get("/v1/users/" + uid), 404, "not_found")


def test_patch_needs_json(msp_a, tom):
    r = msp_a.api.patch("/v1/users/" + tom["id"], data="status=disabled",
                        headers={"Content-Type":
                                 "application/x-www-form-urlencoded"})
    assert_problem(r, 415, "unsupported_media_type")
    r = msp_a.api.patch("/v1/users/" + tom["id"], data="{",
                        headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_json")
    assert assert_json(msp_a.api.get("/v1/users/" + tom["id"]), 200) == tom


# --- lists and search ----------------------------------------------------------

@pytest.fixture
def people(msp_a):
    c1 = msp_a.customer("One")
    c2 = msp_a.customer("Two")
    u = {
        "alice": msp_a.user(c1["id"], "Alice Smith",
                            email="alice@one.example"),
        "bob": msp_a.user(c1["id"], "Bob", login="ONE\\BOBBY"),
        "carol": msp_a.user(c2["id"], "Carol", email="carol@Example.COM"),
        "pct": msp_a.user(c2["id"], "100% Done"),
        "dan": msp_a.user(c2["id"], "Dan_Under"),
    }
    return c1, c2, u


def names(items):
    return sorted(i["display_name"] for i in items)


def test_list_all_users(msp_a, people):
    items = msp_a.api.list_all("/v1/users")
    assert names(items) == sorted(u["display_name"]
                                  for u in people[2].values())
    for i in items:
        assert FIELDS <= set(i), i


def test_list_by_customer(msp_a, people):
    c1, c2, u = people
    got = msp_a.api.list_all("/v1/users", {"customer_id": c1["id"]})
    assert names(got) == ["Alice Smith", "Bob"]
    got = msp_a.api.list_all("/v1/users", {"customer_id": c2["id"]})
    assert names(got) == ["100% Done", "Carol", "Dan_Under"]


@pytest.mark.parametrize("q,expect", [
    ("smith", ["Alice Smith"]),
    ("ALICE@ONE", ["Alice Smith"]),
    ("bobby", ["Bob"]),
    ("one\\b", ["Bob"]),
    ("example.com", ["Carol"]),
    ("example", ["Alice Smith", "Carol"]),
    ("zzz", []),
    ("%", ["100% Done"]),
    ("_", ["Dan_Under"]),
    ("a%e", []),
    ("o_e", []),
    ("'", []),
])
def test_search(msp_a, people, q, expect):
    got = msp_a.api.list_all("/v1/users", {"q": q})
    assert names(got) == sorted(expect), q


def test_search_with_customer(msp_a, people):
    c1, c2, u = people
    got = msp_a.api.list_all("/v1/users", {"q": "example",
                                           "customer_id": c2["id"]})
    assert names(got) == ["Carol"]


def test_search_pages(msp_a):
    c = msp_a.customer("Many")
    for i in range(7):
        msp_a.user(c["id"], "Match %d" % i)
        msp_a.user(c["id"], "Other %d" % i)
    got = msp_a.api.list_all("/v1/users", {"q": "match"}, limit=2)
    assert names(got) == ["Match %d" % i for i in range(7)]


def test_list_bad_customer_filter(msp_a, people):
    r = msp_a.api.get("/v1/users", params={"customer_id": "nope"})
    assert_problem(r, 422, "validation_failed", field="customer_id")


def test_list_unknown_customer_filter(msp_a, people):
    r = msp_a.api.get("/v1/users", params={"customer_id": str(uuid.uuid4())})
    assert r.status_code in (200, 404), describe(r)
    if r.status_code == 200:
        assert r.json()["items"] == []


@pytest.mark.parametrize("limit", ["0", "501", "x"])
def test_list_bad_limit(msp_a, limit):
    r = msp_a.api.get("/v1/users", params={"limit": limit})
    assert_problem(r, 422, "validation_failed", field="limit")


def test_list_bad_cursor(msp_a, people):
    r = msp_a.api.get("/v1/users", params={"cursor": "garbage"})
    assert_problem(r, 422, "validation_failed", field="cursor")
