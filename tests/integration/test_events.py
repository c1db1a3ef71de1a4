"""The audit trail: events per change, the hash chain, filters, export,
verification and tampering."""

import csv
import datetime
import hashlib
import io
import json
import re
import time
import uuid

import psycopg2
import pytest
import requests

from vouchlib import (HASH_RE, ZERO_HASH, assert_json, assert_problem,
                      describe, is_uuid, parallel, parse_time, rfc3339, sql)

EVENT_FIELDS = {"seq", "id", "type", "at", "actor", "subject", "data",
                "prev_hash", "hash"}
CSV_HEADER = ["seq", "id", "type", "at", "actor_type", "actor_id",
              "subject_type", "subject_id", "data", "prev_hash", "hash"]


def check_chain(events):
    """Events are seq 1..N, gapless, each linked to the one before."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), \
        [e["seq"] for e in events]
    prev = ZERO_HASH
    for e in events:
        assert EVENT_FIELDS <= set(e), e
        assert is_uuid(e["id"]), e
        parse_time(e["at"])
        assert HASH_RE.match(e["hash"].lower()), e
        assert e["prev_hash"].lower() == prev.lower(), e
        assert e["actor"]["type"] in ("technician", "system"), e
        assert e["subject"]["type"] in ("customer", "user", "technician",
                                        "msp"), e
        assert isinstance(e["data"], dict), e
        prev = e["hash"]
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["hash"] for e in events}) == len(events)


def verify(msp):
    return assert_json(msp.api.get("/v1/events/verify"), 200)


def assert_intact(msp, last_seq):
    body = verify(msp)
    assert body.get("intact") is True, body
    assert body.get("last_seq") == last_seq, body


def assert_broken(msp, seq):
    body = verify(msp)
    assert body.get("intact") is False, body
    assert body.get("broken_at") == seq, body


# --- events per change ---------------------------------------------------------

def test_new_tenant_events(msp_a):
    evs = msp_a.events()
    check_chain(evs)
    assert len(evs) == 2, evs
    by_type = {e["type"]: e for e in evs}
    assert set(by_type) == {"msp.created", "technician.created"}
    m = by_type["msp.created"]
    assert m["subject"] == {"type": "msp", "id": msp_a.msp_id}
    assert m["actor"]["type"] == "system"
    t = by_type["technician.created"]
    assert t["subject"] == {"type": "technician", "id": msp_a.technician_id}
    assert t["actor"]["type"] == "system"
    assert_intact(msp_a, 2)


def test_every_change_appends_one(msp_a):
    me = {"type": "technician", "id": msp_a.technician_id}
    c = msp_a.customer("Ajax")
    u = msp_a.user(c["id"], "Tom", email="tom@ajax.example")
    r = msp_a.api.patch("/v1/users/" + u["id"], json={"phone":
                                                      "+15551234567"})
    assert r.status_code == 200, describe(r)
    t = msp_a.technician()
    r = msp_a.api.delete("/v1/technicians/" + t["id"])
    assert r.status_code == 204, describe(r)

    # Reads and refused writes append nothing.
    msp_a.api.get("/v1/customers")
    msp_a.api.get("/v1/users/" + u["id"])
    msp_a.api.post("/v1/customers", json={"name": ""})
    msp_a.api.patch("/v1/users/" + u["id"], json={"phone": "bad"})

    evs = msp_a.events()
    check_chain(evs)
    tail = [(e["type"], e["subject"], e["actor"]) for e in evs[2:]]
    assert tail == [
        ("customer.created", {"type": "customer", "id": c["id"]}, me),
        ("user.created", {"type": "user", "id": u["id"]}, me),
        ("user.updated", {"type": "user", "id": u["id"]}, me),
        ("technician.created", {"type": "technician", "id": t["id"]}, me),
        ("technician.revoked", {"type": "technician", "id": t["id"]}, me),
    ], tail
    for e in evs:
        at = parse_time(e["at"])
        now = datetime.datetime.now(datetime.timezone.utc)
        assert abs((now - at).total_seconds()) < 120, e
    assert_intact(msp_a, 7)


def test_events_hold_no_keys(msp_a):
    t = msp_a.technician()
    text = json.dumps(msp_a.events())
    r = msp_a.api.get("/v1/events/export", params={"format": "csv"})
    text += r.text
    r = msp_a.api.get("/v1/events/export")
    text += r.text
    for key in (t["api_key"], msp_a.api_key):
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() not in text.lower()


def test_seq_gapless_under_concurrency(msp_a):
    def make(i):
        r = requests.post(msp_a.server.base + "/v1/customers",
                          json={"name": "Busy %d" % i}, timeout=15,
                          headers={"Authorization": "Bearer " +
                                   msp_a.api_key})
        assert r.status_code == 201, describe(r)
        return r.json()["id"]

    ids = parallel(make, list(range(40)), workers=10)
    evs = msp_a.events()
    check_chain(evs)
    assert len(evs) == 42
    assert {e["subject"]["id"] for e in evs[2:]} == set(ids)
    assert_intact(msp_a, 42)


def test_tenants_have_their_own_sequences(msp_a, msp_b):
    msp_a.customer("a1")
    msp_a.customer("a2")
    msp_b.customer("b1")
    a = msp_a.events()
    b = msp_b.events()
    check_chain(a)
    check_chain(b)
    assert len(a) == 4 and len(b) == 3
    assert {e["id"] for e in a}.isdisjoint({e["id"] for e in b})


# --- filters and paging ------------------------------------------------------

@pytest.fixture
def history(msp_a):
    c = msp_a.customer("Hist")
    u1 = msp_a.user(c["id"], "One")
    u2 = msp_a.user(c["id"], "Two")
    r = msp_a.api.patch("/v1/users/" + u1["id"], json={"login": "one"})
    assert r.status_code == 200, describe(r)
    return c, u1, u2


def test_filter_type(msp_a, history):
    got = msp_a.events(type="user.created")
    assert [e["type"] for e in got] == ["user.created", "user.created"]
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs)
    assert msp_a.events(type="no.such.type") == []


def test_filter_user(msp_a, history):
    c, u1, u2 = history
    got = msp_a.events(user_id=u1["id"])
    assert [e["type"] for e in got] == ["user.created", "user.updated"]
    assert all(e["subject"] == {"type": "user", "id": u1["id"]} for e in got)
    got = msp_a.events(user_id=u2["id"])
    assert [e["type"] for e in got] == ["user.created"]
    got = msp_a.events(user_id=u1["id"], type="user.updated")
    assert [e["type"] for e in got] == ["user.updated"]


def test_filter_user_unknown_or_bad(msp_a, history):
    r = msp_a.api.get("/v1/events", params={"user_id": str(uuid.uuid4())})
    assert r.status_code in (200, 404), describe(r)
    if r.status_code == 200:
        assert r.json()["items"] == []
    r = msp_a.api.get("/v1/events", params={"user_id": "nope"})
    assert r.status_code in (404, 422), describe(r)


def test_filter_time(msp_a):
    msp_a.customer("before")
    time.sleep(0.3)
    msp_a.customer("after")
    evs = msp_a.events()
    t_before = parse_time(evs[-2]["at"])
    t_after = parse_time(evs[-1]["at"])
    assert t_after - t_before > datetime.timedelta(milliseconds=200)
    mid = rfc3339(t_before + (t_after - t_before) / 2)

    got = msp_a.events(since=mid)
    assert [e["seq"] for e in got] == [evs[-1]["seq"]]
    got = msp_a.events(until=mid)
    assert [e["seq"] for e in got] == [e["seq"] for e in evs[:-1]]

    past = "2000-01-01T00:00:00Z"
    future = "2999-01-01T00:00:00.5Z"
    assert len(msp_a.events(since=past)) == len(evs)
    assert msp_a.events(since=future) == []
    assert msp_a.events(until=past) == []
    assert len(msp_a.events(until=future)) == len(evs)
    assert msp_a.events(since=future, until=past) == []


@pytest.mark.parametrize("field", ["since", "until"])
@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z",
                                   "2026-01-01", "2026-01-01T25:00:00Z",
                                   "1700000000"])
def test_bad_time(msp_a, field, value):
    r = msp_a.api.get("/v1/events", params={field: value})
    assert_problem(r, 422, "validation_failed", field=field)
    r = msp_a.api.get("/v1/events/export", params={field: value})
    assert_problem(r, 422, "validation_failed", field=field)


def test_time_with_offset(msp_a):
    # RFC 3339 allows an offset; the instant is what counts.
    n = len(msp_a.events())
    got = msp_a.events(since="2000-01-01T05:00:00+05:00")
    assert len(got) == n


def test_paging(msp_a):
    for i in range(9):
        msp_a.customer("pg%d" % i)
    whole = msp_a.events()
    assert len(whole) == 11
    for limit in (1, 2, 4, 10, 11):
        got = msp_a.api.list_all("/v1/events", limit=limit)
        assert got == whole, limit
    got = msp_a.api.list_all("/v1/events", {"type": "customer.created"},
                             limit=4)
    assert got == [e for e in whole if e["type"] == "customer.created"]


@pytest.mark.parametrize("limit", ["0", "501", "x"])
def test_bad_limit(msp_a, limit):
    r = msp_a.api.get("/v1/events", params={"limit": limit})
    assert_problem(r, 422, "validation_failed", field="limit")


def test_bad_cursor(msp_a):
    r = msp_a.api.get("/v1/events", params={"cursor": "garbage"})
    assert_problem(r, 422, "validation_failed", field="cursor")


# --- export ------------------------------------------------------------------

def test_export_ndjson(msp_a, history):
    whole = msp_a.events()
    for params in ({}, {"format": "ndjson"}):
        r = msp_a.api.get("/v1/events/export", params=params)
        assert r.status_code == 200, describe(r)
        ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
        assert ctype == "application/x-ndjson", ctype
        assert r.headers.get("X-Request-Id")
        assert r.text.endswith("\n")
        lines = r.text.splitlines()
        assert all(line.strip() for line in lines), r.text
        assert [json.loads(line) for line in lines] == whole


def test_export_filters(msp_a, history):
    c, u1, u2 = history
    r = msp_a.api.get("/v1/events/export", params={"type": "user.created"})
    got = [json.loads(line) for line in r.text.splitlines()]
    assert got == msp_a.events(type="user.created")
    r = msp_a.api.get("/v1/events/export", params={"user_id": u1["id"],
                                                   "format": "csv"})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert [row[2] for row in rows[1:]] == ["user.created", "user.updated"]
    r = msp_a.api.get("/v1/events/export",
                      params={"since": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.text.strip() == "", describe(r)


def test_export_csv(msp_a, history):
    whole = msp_a.events()
    r = msp_a.api.get("/v1/events/export", params={"format": "csv"})
    assert r.status_code == 200, describe(r)
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    assert ctype == "text/csv", ctype
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert rows[0] == CSV_HEADER, rows[0]
    assert len(rows) == len(whole) + 1
    for row, e in zip(rows[1:], whole):
        rec = dict(zip(CSV_HEADER, row))
        assert int(rec["seq"]) == e["seq"]
        assert rec["id"] == e["id"]
        assert rec["type"] == e["type"]
        assert parse_time(rec["at"]) == parse_time(e["at"])
        assert rec["actor_type"] == e["actor"]["type"]
        assert rec["actor_id"] == (e["actor"]["id"] or "")
        assert rec["subject_type"] == e["subject"]["type"]
        assert rec["subject_id"] == e["subject"]["id"]
        assert json.loads(rec["data"]) == e["data"]
        assert rec["prev_hash"] == e["prev_hash"]
        assert rec["hash"] == e["hash"]


def test_export_csv_quotes_text(msp_a):
    # Names with commas and quotes must not break the rows.
    c = msp_a.customer('Smith, "Jones" and Co')
    msp_a.user(c["id"], 'O\'Neil, "Pat", Jr', login='a"b,c')
    r = msp_a.api.get("/v1/events/export", params={"format": "csv"})
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert rows[0] == CSV_HEADER
    assert all(len(row) == len(CSV_HEADER) for row in rows), rows
    assert len(rows) == 1 + len(msp_a.events())


@pytest.mark.parametrize("fmt", ["xml", "json", "CSV", ""])
def test_export_bad_format(msp_a, fmt):
    r = msp_a.api.get("/v1/events/export", params={"format": fmt})
    assert_problem(r, 422, "validation_failed", field="format")


def test_export_large(msp_a):
    def make(i):
        r = requests.post(msp_a.server.base + "/v1/customers",
                          json={"name": "Bulk %03d " % i + "x" * 150},
                          timeout=15,
                          headers={"Authorization": "Bearer " +
                                   msp_a.api_key})
        assert r.status_code == 201, describe(r)

    parallel(make, list(range(300)), workers=10)
    r = msp_a.api.get("/v1/events/export")
    assert r.status_code == 200, describe(r)
    evs = [json.loads(line) for line in r.text.splitlines()]
    check_chain(evs)
    assert len(evs) == 302


# --- verification and tampering ------------------------------------------------

@pytest.fixture
def chain(msp_a):
    """A tenant with seven events: seq 3..7 made through the API."""
    c = msp_a.customer("Chain")
    u = msp_a.user(c["id"], "Linked")
    msp_a.api.patch("/v1/users/" + u["id"], json={"display_name": "L2"})
    t = msp_a.technician()
    msp_a.api.delete("/v1/technicians/" + t["id"])
    evs = msp_a.events()
    check_chain(evs)
    assert len(evs) == 7
    return msp_a


def tamper(msp, statement, *params):
    return sql(msp.server.db_url, statement, params, fetch=False)


def test_verify_intact(chain, msp_b):
    assert_intact(chain, 7)
    assert_intact(msp_b, 2)


def test_verify_survives_a_noop_update(chain):
    tamper(chain, "UPDATE events SET data = data::text::jsonb "
           "WHERE msp_id = %s", chain.msp_id)
    assert_intact(chain, 7)


EDITS = {
    "data": "data = data || '{\"tampered\": true}'::jsonb",
    "data_value": "data = '{}'::jsonb",
    "type": "type = 'customer.deleted'",
    "at": "at = at + interval '1 second'",
    "actor_type": "actor_type = 'system'",
    "actor_id": "actor_id = '00000000-0000-4000-8000-000000000001'",
    "subject_type": "subject_type = 'msp'",
    "subject_id": "subject_id = '00000000-0000-4000-8000-000000000002'",
    "id": "id = '00000000-0000-4000-8000-000000000003'",
    "hash": "hash = repeat('a', 64)",
    "prev_hash": "prev_hash = repeat('b', 64)",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_edit_breaks_chain(chain, msp_b, column):
    n = tamper(chain, "UPDATE events SET " + EDITS[column] +
               " WHERE msp_id = %s AND seq = 4", chain.msp_id)
    assert n == 1
    assert_broken(chain, 4)
    assert_intact(msp_b, 2)


def test_edit_last_event(chain):
    tamper(chain, "UPDATE events SET " + EDITS["data"] +
           " WHERE msp_id = %s AND seq = 7", chain.msp_id)
    assert_broken(chain, 7)


def test_edit_first_event(chain):
    tamper(chain, "UPDATE events SET " + EDITS["type"] +
           " WHERE msp_id = %s AND seq = 1", chain.msp_id)
    assert_broken(chain, 1)


def test_delete_middle_event(chain, msp_b):
    n = tamper(chain, "DELETE FROM events WHERE msp_id = %s AND seq = 4",
               chain.msp_id)
    assert n == 1
    assert_broken(chain, 5)
    assert_intact(msp_b, 2)


def test_delete_first_event(chain):
    tamper(chain, "DELETE FROM events WHERE msp_id = %s AND seq = 1",
           chain.msp_id)
    body = verify(chain)
    assert body.get("intact") is False, body
    assert body.get("broken_at") in (1, 2), body


def test_swap_events(chain, msp_b):
    conn = psycopg2.connect(chain.server.db_url)
    try:
        with conn, conn.cursor() as cur:
            q = "UPDATE events SET seq = %s WHERE msp_id = %s AND seq = %s"
            cur.execute(q, (-1, chain.msp_id, 3))
            cur.execute(q, (3, chain.msp_id, 4))
            cur.execute(q, (4, chain.msp_id, -1))
    finally:
        conn.close()
    assert_broken(chain, 3)
    assert_intact(msp_b, 2)


def test_rehashed_edit_still_caught(chain):
    # Rewriting an event and recomputing a plain SHA-256 over it is not
    # enough: the next event still links to the old hash.
    tamper(chain, "UPDATE events SET type = 'customer.deleted', "
           "hash = encode(sha256(convert_to(id::text || type, 'UTF8')), "
           "'hex') WHERE msp_id = %s AND seq = 3", chain.msp_id)
    body = verify(chain)
    assert body.get("intact") is False, body
    assert body.get("broken_at") in (3, 4), body


def test_vouchctl_audit_verify(chain, msp_b):
    srv = chain.server
    r = srv.ctl("audit", "verify", "--msp", chain.msp_id)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)

    tamper(chain, "UPDATE events SET " + EDITS["data"] +
           " WHERE msp_id = %s AND seq = 5", chain.msp_id)
    r = srv.ctl("audit", "verify", "--msp", chain.msp_id)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert re.search(r"(?<![0-9])5(?![0-9])", out), out

    r = srv.ctl("audit", "verify", "--msp", msp_b.msp_id)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_appends_continue_the_chain(chain):
    chain.customer("after verify")
    evs = chain.events()
    check_chain(evs)
    assert_intact(chain, 8)
