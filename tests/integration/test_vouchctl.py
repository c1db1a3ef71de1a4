"""vouchctl: migrate, tenant create, audit verify, and its usage errors."""

import json
import re

import pytest

import vouchlib
from vouchlib import assert_json, is_uuid, sql


@pytest.fixture
def idle(pg, make_vouchd):
    """A configuration on a fresh database, with no vouchd running."""
    return make_vouchd(start=False)


def tables(url):
    rows = sql(url, "SELECT table_name FROM information_schema.tables "
               "WHERE table_schema = 'public'")
    return {r[0] for r in rows}


def test_migrate_is_idempotent(idle):
    assert tables(idle.db_url) == set()
    r = idle.ctl("migrate")
    assert r.returncode == 0, (r.stdout, r.stderr)
    after = tables(idle.db_url)
    assert "events" in after, after
    r = idle.ctl("migrate")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert tables(idle.db_url) == after

    # vouchd starts on the migrated database and finds nothing to do.
    idle.start()
    t = idle.tenant()
    assert t.api.get("/v1/customers").status_code == 200


def test_migrate_after_vouchd(vouchd):
    r = vouchd.ctl("migrate")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert vouchd.client().get("/readyz").status_code == 200


def test_tenant_create(vouchd):
    r = vouchd.ctl("tenant", "create", "--name", "Acme IT")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert set(out) == {"msp_id", "technician_id", "api_key"}, out
    assert is_uuid(out["msp_id"]) and is_uuid(out["technician_id"])
    assert isinstance(out["api_key"], str) and len(out["api_key"]) >= 20
    api = vouchd.client(out["api_key"])
    body = assert_json(api.get("/v1/technicians/" + out["technician_id"]),
                       200)
    assert body["role"] == "admin"
    assert out["api_key"] not in r.stderr


def test_tenant_create_twice_differs(vouchd):
    a = json.loads(vouchd.ctl("tenant", "create", "--name", "Same").stdout)
    b = json.loads(vouchd.ctl("tenant", "create", "--name", "Same").stdout)
    assert a["msp_id"] != b["msp_id"]
    assert a["api_key"] != b["api_key"]


def test_tenant_create_before_vouchd_runs(idle):
    # An operator may create the first tenant before ever starting vouchd.
    r = idle.ctl("migrate")
    assert r.returncode == 0, r.stderr
    r = idle.ctl("tenant", "create", "--name", "Early")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    idle.start()
    api = idle.client(out["api_key"])
    assert api.get("/v1/customers").status_code == 200


@pytest.mark.parametrize("args", [
    [], ["tenant"], ["tenant", "create"], ["tenant", "create", "--name"],
    ["tenant", "create", "--name", ""], ["nonsense"],
    ["audit", "verify"], ["audit", "verify", "--msp", "not-a-uuid"],
])
def test_usage_errors(vouchd, args):
    r = vouchd.ctl(*args)
    assert r.returncode != 0, (args, r.stdout, r.stderr)
    assert r.stderr.strip(), (args, r.stdout)


def test_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nnope = 1\n")
    r = vouchlib.run_vouchctl(str(bad), "migrate")
    assert r.returncode != 0
    assert "%s:2:" % bad in r.stderr, r.stderr


def test_unreachable_database(tmp_path, idle):
    conf = vouchlib.merge_conf(idle.conf, {"database": {
        "url": "postgresql://postgres@127.0.0.1:%d/vouch"
        % vouchlib.free_port(), "connect_timeout": 2}})
    path = tmp_path / "down.toml"
    path.write_text(vouchlib.toml_text(conf))
    r = vouchlib.run_vouchctl(str(path), "migrate", timeout=30)
    assert r.returncode != 0
    assert r.stderr.strip()


def test_audit_verify(msp_a, msp_b):
    srv = msp_a.server
    msp_a.customer("x")
    r = srv.ctl("audit", "verify", "--msp", msp_a.msp_id)
    assert r.returncode == 0, (r.stdout, r.stderr)
    sql(srv.db_url, "UPDATE events SET type = 'msp.deleted' "
        "WHERE msp_id = %s AND seq = 2", (msp_a.msp_id,), fetch=False)
    r = srv.ctl("audit", "verify", "--msp", msp_a.msp_id)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert re.search(r"(?<![0-9])2(?![0-9])", r.stdout + r.stderr), r
    r = srv.ctl("audit", "verify", "--msp", msp_b.msp_id)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_help_lists_commands(vouchd):
    r = vouchlib.run_vouchctl(vouchd.config, "--help")
    text = r.stdout + r.stderr
    for word in ("migrate", "tenant", "audit"):
        assert word in text, text
