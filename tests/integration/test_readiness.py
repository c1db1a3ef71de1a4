"""Readiness follows PostgreSQL: losing the database turns /readyz and the
API to 503, and its return brings them back without a restart."""

import os
import tempfile
import threading
import time

import pytest
import requests

import vouchlib
from vouchlib import assert_json, assert_problem, describe


@pytest.fixture
def own_pg(workdir):
    """A cluster of this test's own, which it may stop and start."""
    d = tempfile.mkdtemp(prefix="pg-own-", dir=workdir)
    os.chmod(d, 0o755)
    cluster = vouchlib.PgCluster(d)
    cluster.start()
    yield cluster
    cluster.stop()


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = fn()
        if ok:
            return last
        time.sleep(0.1)
    raise AssertionError("%s not within %.0f s; last: %s" % (
        what, timeout, describe(last) if isinstance(
            last, requests.Response) else last))


def test_database_loss_and_return(own_pg, make_vouchd):
    v = make_vouchd(db_url=own_pg.create_database(),
                    conf={"database": {"connect_timeout": 2}})
    t = v.tenant()
    c = t.customer("Before")
    anon = v.client()

    own_pg.stop()
    t0 = time.monotonic()

    def readyz_503():
        r = anon.get("/readyz")
        return r.status_code == 503, r

    r = wait_for(readyz_503, 10, "/readyz 503 after the database stopped")
    assert r.headers.get("Content-Type", "").startswith(
        "application/problem+json"), describe(r)
    assert_problem(r, 503, "unavailable")
    took = time.monotonic() - t0

    # The process lives on; the API says unavailable, quickly.
    assert_json(anon.get("/healthz"), 200)
    for method, path, body in (("GET", "/v1/customers", None),
                               ("POST", "/v1/customers", {"name": "lost"}),
                               ("GET", "/v1/customers/" + c["id"], None),
                               ("GET", "/v1/events", None)):
        s = time.monotonic()
        r = t.api.request(method, path, json=body, timeout=20)
        assert_problem(r, 503, "unavailable")
        assert time.monotonic() - s < 12, "%s %s took too long" % (method,
                                                                   path)
    assert_json(anon.get("/healthz"), 200)
    m = anon.get("/metrics")
    assert m.status_code == 200, describe(m)

    own_pg.start()

    def readyz_200():
        r = anon.get("/readyz")
        return r.status_code == 200, r

    wait_for(readyz_200, 15, "/readyz 200 after the database returned")

    def post_works():
        r = t.api.post("/v1/customers", json={"name": "After"})
        return r.status_code == 201, r

    wait_for(post_works, 5, "a POST after the database returned")
    names = [x["name"] for x in t.api.list_all("/v1/customers")]
    assert names == ["Before", "After"], names
    assert "lost" not in names
    r = t.api.get("/v1/events/verify")
    assert assert_json(r, 200)["intact"] is True
    assert took < 10


def test_start_before_database(own_pg, make_vouchd):
    url = own_pg.create_database()
    own_pg.stop()
    v = make_vouchd(db_url=url, start=False,
                    conf={"database": {"connect_timeout": 2}})
    v.start(wait=False)
    r = v.wait_status("/healthz", 200, 15)
    assert_json(r, 200)
    r = requests.get(v.base + "/readyz", timeout=5)
    assert_problem(r, 503, "unavailable")

    own_pg.start()
    v.wait_ready(timeout=20)
    t = v.tenant()
    assert t.api.get("/v1/customers").status_code == 200


def test_two_servers_migrate_one_database(pg, make_vouchd):
    url = pg.create_database()
    a = make_vouchd(db_url=url, start=False)
    b = make_vouchd(db_url=url, start=False)
    a.start(wait=False)
    b.start(wait=False)
    a.wait_ready()
    b.wait_ready()
    t = a.tenant()
    c = t.customer("Shared")
    # The other process serves the same data.
    api_b = b.client(t.api_key)
    assert assert_json(api_b.get("/v1/customers/" + c["id"]), 200) == c
    r = api_b.post("/v1/customers", json={"name": "Via B"})
    assert_json(r, 201)
    evs = t.events()
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert assert_json(api_b.get("/v1/events/verify"), 200)["intact"]


def test_revocation_seen_by_other_process(pg, make_vouchd):
    url = pg.create_database()
    a = make_vouchd(db_url=url)
    b = make_vouchd(db_url=url)
    t = a.tenant()
    tech = t.technician()
    on_b = b.client(tech["api_key"])
    assert on_b.get("/v1/customers").status_code == 200
    r = t.api.delete("/v1/technicians/" + tech["id"])
    assert r.status_code == 204, describe(r)
    # The other process hears of it through PostgreSQL; allow it the
    # moment that takes, no more.
    deadline = time.monotonic() + 1.0
    while True:
        r = on_b.get("/v1/customers")
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert_problem(r, 401, "unauthorized")


def test_concurrent_appends_from_two_processes(pg, make_vouchd):
    url = pg.create_database()
    a = make_vouchd(db_url=url)
    b = make_vouchd(db_url=url)
    t = a.tenant()
    errors = []

    def hammer(server, tag):
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + t.api_key
        for i in range(25):
            r = s.post(server.base + "/v1/customers",
                       json={"name": "%s%d" % (tag, i)}, timeout=15)
            if r.status_code != 201:
                errors.append(describe(r))

    th = [threading.Thread(target=hammer, args=(a, "a")),
          threading.Thread(target=hammer, args=(b, "b"))]
    for x in th:
        x.start()
    for x in th:
        x.join()
    assert not errors, errors[:3]
    evs = t.events()
    assert [e["seq"] for e in evs] == list(range(1, 53))
    body = assert_json(t.api.get("/v1/events/verify"), 200)
    assert body["intact"] is True and body["last_seq"] == 52, body
