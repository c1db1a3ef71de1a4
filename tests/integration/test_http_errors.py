"""HTTP-level errors: bad JSON, media types, body size, unknown routes,
wrong methods, and the problem+json shape of every error."""

import json
import socket
import uuid

import pytest
import requests

from vouchlib import assert_json, assert_problem, describe

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("raw", [
    "{", '{"name": "x"', '{"name": x}', "{'name': 'x'}", '{"name": "x",}',
    '{"name": "x"} trailing', '{"name": "x"}{"name": "y"}', "nul",
    '{"name": "\\ud800"}', '{"name": "x\x01"}',
])
def test_bad_json(msp_a, raw):
    r = msp_a.api.post("/v1/customers", data=raw.encode(), headers=JSON)
    assert_problem(r, 400, "invalid_json")
    assert msp_a.api.list_all("/v1/customers") == []


def test_invalid_utf8(msp_a):
    r = msp_a.api.post("/v1/customers", data=b'{"name": "\xff\xfe"}',
                       headers=JSON)
    assert_problem(r, 400, "invalid_json")


def test_empty_body(msp_a):
    r = msp_a.api.post("/v1/customers", data=b"", headers=JSON)
    assert r.status_code in (400, 422), describe(r)
    assert_problem(r, r.status_code, "invalid_json" if r.status_code == 400
                   else "validation_failed")


def test_duplicate_keys_do_not_crash(msp_a):
    r = msp_a.api.post("/v1/customers", data=b'{"name": "a", "name": "b"}',
                       headers=JSON)
    assert r.status_code in (201, 400, 422), describe(r)


def test_deep_nesting(msp_a):
    raw = '{"name": "x", "pad": ' + "[" * 5000 + "]" * 5000 + "}"
    r = msp_a.api.post("/v1/customers", data=raw, headers=JSON)
    assert r.status_code in (201, 400, 413, 422), describe(r)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/xml",
                                   "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x",
                                   "application/jsonx", "json"])
def test_wrong_content_type(msp_a, ctype):
    headers = {} if ctype is None else {"Content-Type": ctype}
    r = msp_a.api.post("/v1/customers", data=b'{"name": "typed"}',
                       headers=headers)
    assert_problem(r, 415, "unsupported_media_type")
    assert msp_a.api.list_all("/v1/customers") == []


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8",
                                   "application/json;charset=UTF-8",
                                   "Application/JSON"])
def test_json_content_type_variants(msp_a, ctype):
    r = msp_a.api.post("/v1/customers", data=b'{"name": "typed"}',
                       headers={"Content-Type": ctype})
    assert_json(r, 201)


def test_415_on_every_body_route(msp_a):
    c = msp_a.customer()
    u = msp_a.user(c["id"])
    hdr = {"Content-Type": "text/plain"}
    for method, path in (("POST", "/v1/customers"), ("POST", "/v1/users"),
                         ("PATCH", "/v1/users/" + u["id"]),
                         ("POST", "/v1/technicians")):
        r = msp_a.api.request(method, path, data=b"{}", headers=hdr)
        assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/nope", "/v1", "/v1/", "/v1/nope",
                                  "/v1/customers/x/y", "/v2/customers",
                                  "/V1/CUSTOMERS", "/healthz/x",
                                  "/v1/customers%2F" + str(uuid.uuid4())])
def test_unknown_route(msp_a, path):
    r = msp_a.api.get(path)
    assert_problem(r, 404, "not_found")


def test_unknown_route_without_key(anon):
    r = anon.get("/definitely/not/here")
    assert r.status_code in (401, 404), describe(r)
    assert_problem(r, r.status_code, "not_found" if r.status_code == 404
                   else "unauthorized")


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/v1/customers", {"GET", "POST"}),
    ("PUT", "/v1/customers", {"GET", "POST"}),
    ("PATCH", "/v1/customers/{c}", {"GET"}),
    ("DELETE", "/v1/users", {"GET", "POST"}),
    ("PUT", "/v1/users/{u}", {"GET", "PATCH"}),
    ("POST", "/v1/users/{u}", {"GET", "PATCH"}),
    ("PATCH", "/v1/technicians", {"GET", "POST"}),
    ("POST", "/v1/technicians/{t}", {"GET", "DELETE"}),
    ("POST", "/v1/events", {"GET"}),
    ("DELETE", "/v1/events/verify", {"GET"}),
    ("POST", "/v1/events/export", {"GET"}),
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/readyz", {"GET"}),
    ("POST", "/metrics", {"GET"}),
])
def test_wrong_method(msp_a, method, path, allowed):
    ids = {"c": str(uuid.uuid4()), "u": str(uuid.uuid4()),
           "t": str(uuid.uuid4())}
    path = path.format(**ids)
    r = msp_a.api.request(method, path, json={})
    assert_problem(r, 405, "method_not_allowed")
    allow = r.headers.get("Allow")
    assert allow, "no Allow header: " + describe(r)
    got = {m.strip().upper() for m in allow.split(",") if m.strip()}
    got.discard("HEAD")
    got.discard("OPTIONS")
    assert got == allowed, (allow, allowed)


def test_every_error_is_a_problem(msp_a, anon):
    replies = [
        anon.get("/v1/customers"),
        msp_a.api.get("/v1/customers/" + str(uuid.uuid4())),
        msp_a.api.post("/v1/customers", data=b"{", headers=JSON),
        msp_a.api.post("/v1/customers", json={}),
        msp_a.api.delete("/v1/customers"),
    ]
    for r in replies:
        assert 400 <= r.status_code < 500
        body = assert_problem(r, r.status_code, r.json().get("code"))
        assert body["title"] and body["detail"]


def test_large_header_refused_cleanly(msp_a):
    try:
        r = msp_a.api.get("/v1/customers",
                          headers={"X-Filler": "f" * 20000})
    except requests.ConnectionError:
        r = None
    if r is not None:
        assert 400 <= r.status_code < 500, describe(r)
    # And the server carries on.
    assert msp_a.api.get("/v1/customers").status_code == 200


def test_long_path(msp_a):
    try:
        r = msp_a.api.get("/v1/customers/" + "a" * 9000)
    except requests.ConnectionError:
        r = None
    if r is not None:
        assert r.status_code in (404, 414, 431, 400), describe(r)
    assert msp_a.api.get("/v1/customers").status_code == 200


def test_garbage_request_line(vouchd, msp_a):
    with socket.create_connection(("127.0.0.1", vouchd.port),
                                  timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" +
                  b"\x00" * 64 + b"\r\n\r\n")
        try:
            s.recv(4096)
        except (socket.timeout, ConnectionError):
            pass
    assert msp_a.api.get("/v1/customers").status_code == 200


def test_query_string_on_post_ignored(msp_a):
    r = msp_a.api.post("/v1/customers?limit=x", json={"name": "q"})
    assert_json(r, 201)


# --- the body limit ------------------------------------------------------------

@pytest.fixture
def small(make_vouchd):
    v = make_vouchd(conf={"server": {"max_body_bytes": 1024}})
    return v, v.tenant()


def test_body_too_large(small):
    v, t = small
    body = json.dumps({"name": "big", "pad": "p" * 2048}).encode()
    assert len(body) > 2048
    r = t.api.post("/v1/customers", data=body, headers=JSON)
    assert_problem(r, 413, "too_large")
    assert t.api.list_all("/v1/customers") == []


def test_body_under_limit(small):
    v, t = small
    body = json.dumps({"name": "fits", "pad": "p" * 900}).encode()
    assert len(body) < 1024
    r = t.api.post("/v1/customers", data=body, headers=JSON)
    assert_json(r, 201)


def test_chunked_body_too_large(small):
    v, t = small

    def chunks():
        yield b'{"name": "chunky", "pad": "'
        for _ in range(8):
            yield b"p" * 256
        yield b'"}'

    try:
        r = t.api.post("/v1/customers", data=chunks(), headers=JSON)
    except requests.ConnectionError:
        r = None
    if r is not None:
        assert_problem(r, 413, "too_large")
    assert t.api.list_all("/v1/customers") == []


def test_large_body_on_patch(small):
    v, t = small
    c = t.customer()
    u = t.user(c["id"])
    body = json.dumps({"display_name": "x", "pad": "p" * 2048}).encode()
    r = t.api.patch("/v1/users/" + u["id"], data=body, headers=JSON)
    assert_problem(r, 413, "too_large")
    assert t.api.get("/v1/users/" + u["id"]).json() == u


def test_default_limit_is_64k(msp_a):
    ok = json.dumps({"name": "near", "pad": "p" * 60000}).encode()
    assert_json(msp_a.api.post("/v1/customers", data=ok, headers=JSON), 201)
    big = json.dumps({"name": "over", "pad": "p" * 70000}).encode()
    r = msp_a.api.post("/v1/customers", data=big, headers=JSON)
    assert_problem(r, 413, "too_large")
