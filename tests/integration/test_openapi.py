"""The OpenAPI document at /openapi.json: served as it is in the tree,
OpenAPI 3.1, every route of server/api_routes.c described with its
method and credential, and the real answers of the server matching the
schemas it lists, key for key.
"""

import json
import os
import re
import time

import pytest
import requests

import vouchlib
from vouchlib import assert_json, describe

pytest.register_assert_rewrite("verifylib")
from verifylib import Device, Watch, wait_until  # noqa: E402

pytest_plugins = ["verifylib"]

DOC_PATH = os.path.join(vouchlib.REPO, "server", "openapi.json")
ROUTES_PATH = os.path.join(vouchlib.REPO, "server", "api_routes.c")

# One entry of the route table: { "GET", "/x", handler, AUTH_X, false },
# possibly wrapped over lines.
ROUTE_RE = re.compile(
    r'\{\s*"([A-Z]+)"\s*,\s*"([^"]+)"\s*,\s*(\w+)\s*,\s*(AUTH_\w+)\s*,'
    r'\s*(true|false)\s*\}')

# The security requirement each credential level of the table must have.
SECURITY = {
    "AUTH_NONE": [],
    "AUTH_TECHNICIAN": [{"apiKey": []}],
    "AUTH_ADMIN": [{"apiKey": ["admin"]}],
    "AUTH_DEVICE": [{"deviceToken": []}],
    "AUTH_SESSION": [{"selfServiceSession": []}],
    "AUTH_SELFSERVICE": [{"selfServiceSession": []}],
}

# Routes the table leaves open (AUTH_NONE) because their handler checks
# the self-service session token itself; test_selfservice_answers makes
# sure each of them answers 401 without one.
SESSION_ROUTE = re.compile(r"^/v1/selfservice/sessions/\{id\}")

BODY_METHODS = ("POST", "PUT", "PATCH")

# An id no tenant has.
NO_SUCH = "00000000-0000-4000-8000-000000000000"

FORMATS = {
    "uuid": vouchlib.UUID_RE,
    "date-time": vouchlib.TIME_RE,
}


def route_table():
    """[(method, path, auth, body_optional)] from server/api_routes.c."""
    with open(ROUTES_PATH) as f:
        src = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    routes = [(m, p, "AUTH_SESSION" if a == "AUTH_NONE" and
               SESSION_ROUTE.match(p) else a, o == "true")
              for m, p, _, a, o in ROUTE_RE.findall(src)]
    assert len(routes) >= 30, "route table not parsed: %d routes" % len(
        routes)
    return routes


@pytest.fixture(scope="module")
def doc():
    with open(DOC_PATH) as f:
        return json.load(f)


def resolve(doc, node):
    """Follow $ref until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert part in node, "dangling $ref %s" % ref
            node = node[part]
    return node


def operation(doc, method, path):
    op = doc["paths"].get(path, {}).get(method.lower())
    assert op is not None, "%s %s is not documented" % (method, path)
    return op


def reply_schema(doc, method, path, status, ctype="application/json"):
    """The schema the document gives for this answer."""
    op = operation(doc, method, path)
    reply = resolve(doc, op["responses"].get(str(status)))
    assert reply is not None, "%s %s: no %d reply documented" % (
        method, path, status)
    content = reply.get("content", {})
    assert ctype in content, "%s %s %d: no %s body documented (%s)" % (
        method, path, status, ctype, list(content))
    return content[ctype]["schema"]


# --- a small JSON Schema checker for the keywords the document uses ----------

def type_ok(value, name):
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value,
                                                                  bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise AssertionError("unknown type %r in the document" % name)


def check_string(value, schema, where, errors):
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append("%s: %r does not match %s" % (where, value,
                                                    schema["pattern"]))
    if len(value) < schema.get("minLength", 0) or \
            len(value) > schema.get("maxLength", len(value)):
        errors.append("%s: length %d out of bounds" % (where, len(value)))
    fmt = FORMATS.get(schema.get("format"))
    if fmt is not None and not fmt.match(value):
        errors.append("%s: %r is not a %s" % (where, value,
                                              schema["format"]))


def check_object(doc, value, schema, where, errors):
    props = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            errors.append("%s: %s is missing" % (where, key))
    if schema.get("additionalProperties") is False:
        for key in value:
            if key not in props:
                errors.append("%s: %s is not documented" % (where, key))
    for key, sub in props.items():
        if key in value:
            check(doc, value[key], sub, "%s.%s" % (where, key), errors)


def check(doc, value, schema, where, errors):
    """Append to errors every way value breaks schema."""
    schema = resolve(doc, schema)
    if "oneOf" in schema:
        fits = 0
        for sub in schema["oneOf"]:
            e = []
            check(doc, value, sub, where, e)
            fits += not e
        if fits != 1:
            errors.append("%s: %r fits %d of oneOf" % (where, value, fits))
        return
    if "const" in schema and value != schema["const"]:
        errors.append("%s: %r is not %r" % (where, value, schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: %r is not one of %s" % (where, value,
                                                   schema["enum"]))
    if "type" in schema:
        types = schema["type"]
        types = [types] if isinstance(types, str) else types
        if not any(type_ok(value, t) for t in types):
            errors.append("%s: %r is not %s" % (where, value, types))
            return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if value < schema.get("minimum", value) or \
                value > schema.get("maximum", value):
            errors.append("%s: %r out of range" % (where, value))
    elif isinstance(value, str):
        check_string(value, schema, where, errors)
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or \
                len(value) > schema.get("maxItems", len(value)):
            errors.append("%s: %d items out of bounds" % (where,
                                                          len(value)))
        for i, item in enumerate(value):
            check(doc, item, schema.get("items", {}),
                  "%s[%d]" % (where, i), errors)
    elif isinstance(value, dict):
        check_object(doc, value, schema, where, errors)


def assert_fits(doc, value, schema, what):
    errors = []
    check(doc, value, schema, what, errors)
    assert not errors, "%s does not match the document:\n  %s\n%s" % (
        what, "\n  ".join(errors), json.dumps(value, indent=1)[:2000])


def assert_reply(doc, r, method, path, status):
    """r is the documented answer of method path with status: its
    content type and body fit the document, and the body has exactly
    the keys the document lists."""
    assert r.status_code == status, describe(r)
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    schema = reply_schema(doc, method, path, status,
                          "application/problem+json"
                          if ctype == "application/problem+json"
                          else "application/json")
    body = r.json()
    assert_fits(doc, body, schema, "%s %s %d" % (method, path, status))
    top = resolve(doc, schema)
    if "properties" in top:
        keys = set(body)
        assert set(top.get("required", [])) <= keys <= set(
            top["properties"]), "%s %s %d: keys %s, documented %s" % (
                method, path, status, sorted(keys), sorted(top["properties"]))
    return body


# --- the document itself -----------------------------------------------------

def test_served_as_in_the_tree(anon, doc):
    r = anon.get("/openapi.json")
    served = assert_json(r, 200)
    assert served == doc, "the served document differs from " \
        "server/openapi.json: rebuild vouchd"
    assert re.match(r"^3\.1\.\d+$", served["openapi"]), served["openapi"]
    assert served["info"]["title"] == "vouch"
    assert served["info"]["version"]


def test_file_layout():
    with open(DOC_PATH) as f:
        text = f.read()
    assert "\t" not in text, "tabs in server/openapi.json"
    assert text.endswith("}\n")
    prev = 0
    for n, line in enumerate(text.splitlines(), 1):
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, "line %d: odd indentation" % n
        assert indent <= prev + 2, "line %d: indented by more than 2" % n
        assert line == line.rstrip(), "line %d: trailing space" % n
        prev = indent


def test_every_route_documented(doc):
    missing = []
    for method, path, auth, _ in route_table():
        if method.lower() not in doc["paths"].get(path, {}):
            missing.append("%s %s" % (method, path))
    assert not missing, "routes of server/api_routes.c missing from " \
        "server/openapi.json:\n  " + "\n  ".join(missing)


def test_no_operation_without_a_route(doc):
    routes = {(m.lower(), p) for m, p, _, _ in route_table()}
    extra = ["%s %s" % (m.upper(), p) for p, item in doc["paths"].items()
             for m in item if m in ("get", "put", "post", "delete",
                                    "patch", "head", "options")
             and (m, p) not in routes]
    assert not extra, "documented but not routed:\n  " + "\n  ".join(extra)


def test_credentials_and_bodies_match_the_table(doc):
    schemes = doc["components"]["securitySchemes"]
    for name in ("apiKey", "deviceToken", "selfServiceSession"):
        assert schemes[name]["type"] == "http", name
        assert schemes[name]["scheme"] == "bearer", name

    for method, path, auth, body_optional in route_table():
        op = operation(doc, method, path)
        assert auth in SECURITY, "%s %s: unknown credential %s" % (
            method, path, auth)
        assert op.get("security", doc.get("security")) == SECURITY[auth], \
            "%s %s: security %s, the table says %s" % (
                method, path, op.get("security"), auth)
        if auth != "AUTH_NONE":
            assert "401" in op["responses"], (method, path)
        if auth == "AUTH_ADMIN":
            assert "403" in op["responses"], (method, path)
        if method not in BODY_METHODS:
            assert "requestBody" not in op, (method, path)
            continue
        body = resolve(doc, op.get("requestBody"))
        if body is None:
            assert body_optional, "%s %s needs a body the document " \
                "does not describe" % (method, path)
            continue
        assert body.get("required", False) == (not body_optional), \
            "%s %s: requestBody.required disagrees with the table" % (
                method, path)
        assert "application/json" in body["content"], (method, path)
        for code in ("415", "422"):
            assert code in op["responses"], (method, path, code)


def answer_exact(doc, reply, what):
    """A JSON answer's object schemas list every key they may send and
    require each one (null stands for "none"), so a real answer has
    exactly the documented keys."""
    schema = reply.get("content", {}).get("application/json", {}).get(
        "schema")
    if schema is None:
        return
    schema = resolve(doc, schema)
    for sub in schema.get("oneOf", [schema]):
        sub = resolve(doc, sub)
        if "properties" not in sub:
            continue
        assert sub.get("additionalProperties") is False, what
        assert set(sub["required"]) == set(sub["properties"]), what


def test_document_is_consistent(doc):
    ids = set()

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(doc, node)
            for k, v in node.items():
                walk(v, where + "/" + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s/%d" % (where, i))
    walk(doc, "#")

    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            assert op["operationId"] not in ids, op["operationId"]
            ids.add(op["operationId"])
            params = [resolve(doc, p) for p in op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, (method, path, declared)
            assert op["responses"], (method, path)
            for code, reply in op["responses"].items():
                reply = resolve(doc, reply)
                assert reply.get("description"), (method, path, code)
                if code.startswith("2"):
                    answer_exact(doc, reply, (method, path, code))
                if code.startswith(("4", "5")) or code == "default":
                    assert "application/problem+json" in reply["content"], \
                        (method, path, code)

    for name, schema in doc["components"]["schemas"].items():
        if schema.get("type") == "object" and \
                schema.get("additionalProperties") is False:
            props = set(schema["properties"])
            assert set(schema.get("required", [])) <= props, name

    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status",
                                        "detail", "code"}
    assert "field" in problem["properties"]


# --- real answers against the document ---------------------------------------

def test_health_answers(anon, doc):
    assert_reply(doc, anon.get("/healthz"), "GET", "/healthz", 200)
    assert_reply(doc, anon.get("/readyz"), "GET", "/readyz", 200)
    r = anon.get("/metrics")
    assert r.status_code == 200
    ctype = r.headers["Content-Type"]
    assert ctype in operation(doc, "GET", "/metrics")["responses"]["200"][
        "content"], ctype


def test_customer_answers(msp_a, doc):
    api = msp_a.api
    r = api.post("/v1/customers", json={"name": "Ajax", "external_ref": "P1"})
    c = assert_reply(doc, r, "POST", "/v1/customers", 201)
    assert set(c) == {"id", "name", "external_ref", "created_at"}
    assert_reply(doc, api.get("/v1/customers/" + c["id"]), "GET",
                 "/v1/customers/{id}", 200)
    page = assert_reply(doc, api.get("/v1/customers", params={"limit": 1}),
                        "GET", "/v1/customers", 200)
    assert len(page["items"]) == 1

    assert_reply(doc, api.get("/v1/customers/" + NO_SUCH), "GET",
                 "/v1/customers/{id}", 404)
    body = assert_reply(doc, api.post("/v1/customers", json={"name": 7}),
                        "POST", "/v1/customers", 422)
    assert body["field"] == "name"
    assert_reply(doc, vouchlib.Api(api.base).get("/v1/customers"), "GET",
                 "/v1/customers", 401)


def test_user_answers(msp_a, doc):
    api = msp_a.api
    c = msp_a.customer()
    r = api.post("/v1/users", json={
        "customer_id": c["id"], "display_name": "Tom", "login": "tom@ajax",
        "email": "tom@ajax.example", "phone": "+15551234567"})
    u = assert_reply(doc, r, "POST", "/v1/users", 201)
    r = api.patch("/v1/users/" + u["id"], json={"status": "disabled",
                                                "phone": None})
    assert assert_reply(doc, r, "PATCH", "/v1/users/{id}", 200)[
        "status"] == "disabled"
    assert_reply(doc, api.get("/v1/users/" + u["id"]), "GET",
                 "/v1/users/{id}", 200)
    assert_reply(doc, api.get("/v1/users", params={"customer_id": c["id"],
                                                   "q": "tom"}),
                 "GET", "/v1/users", 200)
    body = assert_reply(doc, api.post("/v1/users", json={
        "customer_id": c["id"], "display_name": "x", "phone": "555"}),
        "POST", "/v1/users", 422)
    assert body["field"] == "phone"
    body = assert_reply(doc, api.post("/v1/users", json={
        "customer_id": NO_SUCH, "display_name": "x"}),
        "POST", "/v1/users", 404)
    assert body["field"] == "customer_id"


def test_technician_answers(msp_a, doc):
    api = msp_a.api
    r = api.post("/v1/technicians", json={
        "display_name": "Pat", "email": "pat@msp.example",
        "role": "technician"})
    t = assert_reply(doc, r, "POST", "/v1/technicians", 201)
    assert t["api_key"].startswith("vk_")
    assert_reply(doc, api.get("/v1/technicians/" + t["id"]), "GET",
                 "/v1/technicians/{id}", 200)
    assert_reply(doc, api.get("/v1/technicians"), "GET", "/v1/technicians",
                 200)
    tech = msp_a.server.client(t["api_key"])
    assert_reply(doc, tech.get("/v1/technicians"), "GET",
                 "/v1/technicians", 403)
    r = api.delete("/v1/technicians/" + t["id"])
    assert r.status_code == 204, describe(r)
    assert "204" in operation(doc, "DELETE", "/v1/technicians/{id}")[
        "responses"]
    got = assert_reply(doc, api.get("/v1/technicians/" + t["id"]), "GET",
                       "/v1/technicians/{id}", 200)
    assert got["revoked_at"] is not None


def test_verification_and_device_answers(msp_a, doc):
    """On a server without push, SMS or email: every verification fails
    at once, which still shows every field."""
    api = msp_a.api
    u = msp_a.user(msp_a.customer()["id"], phone="+15557654321")
    r = api.post("/v1/verifications", json={
        "user_id": u["id"], "method": "push", "reason": "reset",
        "ticket": {"system": "psa", "id": "T-1"}})
    v = assert_reply(doc, r, "POST", "/v1/verifications", 201)
    assert (v["status"], v["outcome"]) == ("failed", "no_active_device")
    r = api.post("/v1/verifications", json={"user_id": u["id"],
                                            "method": "sms"})
    s = assert_reply(doc, r, "POST", "/v1/verifications", 201)
    assert s["outcome"] == "delivery_failed" and s["match_code"] is None
    assert_reply(doc, api.get("/v1/verifications/" + v["id"]), "GET",
                 "/v1/verifications/{id}", 200)
    assert_reply(doc, api.get("/v1/verifications",
                              params={"user_id": u["id"]}),
                 "GET", "/v1/verifications", 200)
    assert_reply(doc, api.post("/v1/verifications/%s/cancel" % v["id"]),
                 "POST", "/v1/verifications/{id}/cancel", 409)

    w = Watch(api, v["id"], timeout=15)
    assert w.status_code == 200
    assert w.resp.headers["Content-Type"].split(";")[0] in operation(
        doc, "GET", "/v1/verifications/{id}/watch")["responses"]["200"][
        "content"]
    w.wait_end()
    assert [name for name, _ in w.events] == ["status"]
    assert_fits(doc, w.events[0][1], {"$ref": "#/components/schemas/"
                                      "Verification"}, "watch data")

    r = api.post("/v1/users/%s/enrollments" % u["id"])
    assert_reply(doc, r, "POST", "/v1/users/{id}/enrollments", 201)
    assert_reply(doc, api.get("/v1/users/%s/devices" % u["id"]), "GET",
                 "/v1/users/{id}/devices", 200)


def test_directory_and_policy_answers(msp_a, doc):
    api = msp_a.api
    c = msp_a.customer()
    base = "/v1/customers/%s/" % c["id"]
    assert_reply(doc, api.get(base + "alert-policy"), "GET",
                 "/v1/customers/{id}/alert-policy", 200)
    r = api.put(base + "alert-policy", json={
        "expiry_days": [7, 1], "channels": ["push"], "on_expired": False})
    assert_reply(doc, r, "PUT", "/v1/customers/{id}/alert-policy", 200)
    assert_reply(doc, api.get(base + "directory"), "GET",
                 "/v1/customers/{id}/directory", 404)

    # A port nothing listens on: the test answers at once, ok false.
    r = api.put(base + "directory", json={
        "kind": "active_directory", "url": "ldap://127.0.0.1:%d"
        % vouchlib.free_port(), "bind_dn": "CN=svc,DC=ajax,DC=example",
        "bind_password": "secret-pw-1", "base_dn": "DC=ajax,DC=example",
        "sync_interval": 3600})
    d = assert_reply(doc, r, "PUT", "/v1/customers/{id}/directory", 200)
    assert "bind_password" not in d
    assert_reply(doc, api.get(base + "directory"), "GET",
                 "/v1/customers/{id}/directory", 200)
    t = assert_reply(doc, api.post(base + "directory/test"), "POST",
                     "/v1/customers/{id}/directory/test", 200)
    assert t["ok"] is False, t
    assert_reply(doc, api.post(base + "directory/sync"), "POST",
                 "/v1/customers/{id}/directory/sync", 202)


def test_event_answers(msp_a, doc):
    api = msp_a.api
    msp_a.customer()
    page = assert_reply(doc, api.get("/v1/events"), "GET", "/v1/events",
                        200)
    assert page["items"]
    assert_reply(doc, api.get("/v1/events/verify"), "GET",
                 "/v1/events/verify", 200)
    assert_reply(doc, api.get("/v1/events", params={"since": "yesterday"}),
                 "GET", "/v1/events", 422)
    body = assert_reply(doc, api.get("/v1/events",
                                     params={"user_id": NO_SUCH}),
                        "GET", "/v1/events", 404)
    assert body["field"] == "user_id"

    content = operation(doc, "GET", "/v1/events/export")["responses"][
        "200"]["content"]
    r = api.get("/v1/events/export")
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"] in content
    for n, line in enumerate(r.text.splitlines()):
        assert_fits(doc, json.loads(line),
                    {"$ref": "#/components/schemas/Event"},
                    "export line %d" % (n + 1))
    r = api.get("/v1/events/export", params={"format": "csv"})
    assert r.status_code == 200, describe(r)
    assert r.headers["Content-Type"] in content


def test_device_api_answers(world, doc):
    """The app's side, on the server wired to the push fakes."""
    device = Device(world.server.base, name="Tom's iPhone")
    r = device.enroll_request(world.enrollment()["code"])
    body = assert_reply(doc, r, "POST", "/v1/device/enroll", 201)
    device.id = body["device_id"]
    device.set_token(body["token"])

    v = world.verify(reason="unlock", ticket={"system": "psa", "id": "9"})
    world.wait_status(v["id"], "sent")
    wait_until(lambda: device.prompts(), 10, "a prompt")
    page = assert_reply(doc, device.prompts_request(), "GET",
                        "/v1/device/prompts", 200)
    assert page["items"][0]["id"] == v["id"]
    r = device.decide(v["id"], "approved", v["match_code"])
    assert assert_reply(doc, r, "POST", "/v1/device/prompts/{id}/decision",
                        200) == {"status": "approved"}
    r = device.decide(v["id"], "approved", v["match_code"])
    assert_reply(doc, r, "POST", "/v1/device/prompts/{id}/decision", 409)

    assertion = device.sign({"did": device.id, "iat": int(time.time())})
    r = requests.post(world.server.base + "/v1/device/token",
                      json={"assertion": assertion}, timeout=15)
    assert_reply(doc, r, "POST", "/v1/device/token", 200)
    r = device.http.put("/v1/device/push-token",
                        json={"push_token": os.urandom(32).hex()})
    assert r.status_code == 204, describe(r)
    r = device.http.post("/v1/device/lockout-report",
                         json={"note": "not me"})
    assert_reply(doc, r, "POST", "/v1/device/lockout-report", 201)
    r = vouchlib.Api(world.server.base).get("/v1/device/prompts")
    assert_reply(doc, r, "GET", "/v1/device/prompts", 401)


def test_selfservice_answers(anon, doc):
    """A session for a login nobody has: it takes a challenge, refuses
    every code and may not change anything, all without a directory."""
    session_routes = [(m, p) for m, p, auth, _ in route_table()
                      if auth == "AUTH_SESSION"]
    assert len(session_routes) >= 6, session_routes
    for method, path in session_routes:
        url = path.replace("{id}", NO_SUCH)
        r = anon.request(method, url, json={} if method in BODY_METHODS
                         else None)
        assert_reply(doc, r, method, path, 401)

    login = "nobody-%s@ajax.example" % os.urandom(4).hex()
    r = anon.post("/v1/selfservice/sessions",
                  json={"login": login, "purpose": "reset"})
    s = assert_reply(doc, r, "POST", "/v1/selfservice/sessions", 202)
    http = vouchlib.Api(anon.base, s["token"])
    base = "/v1/selfservice/sessions/" + s["session_id"]
    one = "/v1/selfservice/sessions/{id}"

    st = assert_reply(doc, http.get(base), "GET", one, 200)
    assert (st["status"], st["verified"], st["msp_name"]) == (
        "open", False, None), st
    assert_reply(doc, http.get("/v1/selfservice/sessions/" + NO_SUCH),
                 "GET", one, 404)
    body = assert_reply(doc, anon.post("/v1/selfservice/sessions",
                                       json={"login": login}),
                        "POST", "/v1/selfservice/sessions", 422)
    assert body["field"] == "purpose"

    st = assert_reply(doc, http.post(base + "/challenge",
                                     json={"factor": "sms"}),
                      "POST", one + "/challenge", 202)
    assert st["factor"] == "sms" and st["code_expires_at"], st
    body = assert_reply(doc, http.post(base + "/verify",
                                       json={"code": "000000"}),
                        "POST", one + "/verify", 422)
    assert (body["code"], body["field"]) == ("wrong_code", "code"), body
    assert body["attempts_left"] == st["attempts_left"] - 1, body
    body = assert_reply(doc, http.post(base + "/verify",
                                       json={"code": "12ab56"}),
                        "POST", one + "/verify", 422)
    assert (body["code"], body["field"]) == ("validation_failed", "code")

    for method, tail, req in (("GET", "/policy", None),
                              ("POST", "/password",
                               {"new_password": "Xq7-long-enough!"}),
                              ("POST", "/unlock", None)):
        r = http.request(method, base + tail, json=req)
        body = assert_reply(doc, r, method, one + tail, 403)
        assert body["code"] == "not_verified", body

    r = anon.get("/reset")
    assert r.status_code == 200, describe(r)
    reply = operation(doc, "GET", "/reset")["responses"]["200"]
    assert r.headers["Content-Type"] in reply["content"]
    for name, header in reply["headers"].items():
        assert name in r.headers, name
        if "const" in header.get("schema", {}):
            assert r.headers[name] == header["schema"]["const"], name


def test_selfservice_push_and_app_answers(world, doc):
    """A known login (its customer has a directory nobody answers for):
    a push challenge shows on the user's device as a self-service
    prompt, the approval verifies the session, and the app starts a
    verified session of its own."""
    api = world.api
    login = "ss-%s@ajax.example" % os.urandom(4).hex()
    user = world.new_user(login=login)
    r = api.put("/v1/customers/%s/directory" % world.customer["id"], json={
        "kind": "active_directory", "url": "ldap://127.0.0.1:%d"
        % vouchlib.free_port(), "bind_dn": "CN=svc,DC=ajax,DC=example",
        "bind_password": "secret-pw-1", "base_dn": "DC=ajax,DC=example"})
    assert r.status_code == 200, describe(r)
    device = world.device(user)

    r = world.server.client().post("/v1/selfservice/sessions", json={
        "login": login.upper(), "purpose": "reset"})
    s = assert_reply(doc, r, "POST", "/v1/selfservice/sessions", 202)
    http = world.server.client(s["token"])
    base = "/v1/selfservice/sessions/" + s["session_id"]
    one = "/v1/selfservice/sessions/{id}"
    st = assert_reply(doc, http.post(base + "/challenge",
                                     json={"factor": "push"}),
                      "POST", one + "/challenge", 202)
    assert 10 <= st["match_code"] <= 99, st
    # A push is verified on the device, not by a code.
    assert_reply(doc, http.post(base + "/verify", json={"code": "000000"}),
                 "POST", one + "/verify", 409)

    prompt = wait_until(lambda: next(
        (p for p in device.prompts() if p["kind"] == "selfservice"), None),
        10, "a self-service prompt")
    page = assert_reply(doc, device.prompts_request(), "GET",
                        "/v1/device/prompts", 200)
    assert prompt in page["items"]
    assert prompt["purpose"] == "reset", prompt
    r = device.decide(prompt["id"], "approved", st["match_code"])
    assert assert_reply(doc, r, "POST", "/v1/device/prompts/{id}/decision",
                        200) == {"status": "approved"}

    st = assert_reply(doc, http.get(base), "GET", one, 200)
    assert st["verified"] is True and st["msp_name"], st
    # Nothing listens on the directory's port.
    body = assert_reply(doc, http.get(base + "/policy"), "GET",
                        one + "/policy", 503)
    assert body["code"] == "unavailable", body
    # Started for a reset, not an unlock.
    assert_reply(doc, http.post(base + "/unlock"), "POST", one + "/unlock",
                 409)

    def app_start(purpose, signed):
        return device.http.post("/v1/device/selfservice", json={
            "purpose": purpose, "assertion": device.sign({
                "did": device.id, "iat": int(time.time()),
                "purpose": signed})})

    body = assert_reply(doc, app_start("unlock", "reset"), "POST",
                        "/v1/device/selfservice", 422)
    assert body["field"] == "assertion", body
    a = assert_reply(doc, app_start("unlock", "unlock"), "POST",
                     "/v1/device/selfservice", 201)
    st = assert_reply(doc, world.server.client(a["token"]).get(
        "/v1/selfservice/sessions/" + a["session_id"]), "GET", one, 200)
    assert (st["purpose"], st["factor"]) == ("unlock", "device"), st
