"""Tenants never reach each other's verifications or devices: every new
endpoint answers 404 to another MSP's key (or device) and changes
nothing."""

import pytest

from vouchlib import assert_problem

pytest.register_assert_rewrite("verifylib")
from verifylib import Device, World  # noqa: E402

pytest_plugins = ["verifylib"]


def state(world, vid):
    return (world.get(vid),
            world.api.get("/v1/users/%s/devices"
                          % world.user["id"]).json(),
            [e["id"] for e in world.events()])


def test_every_new_endpoint_is_404_across_tenants(vserver):
    a = World(vserver)
    b = World(vserver)
    device_a = a.device()
    device_b = b.device()
    push = a.verify()
    a.wait_status(push["id"], "sent")
    code = a.verify(method="email")
    a.wait_status(code["id"], "sent")
    before = state(a, push["id"])

    bapi = b.api
    for vid in (push["id"], code["id"]):
        assert_problem(bapi.get("/v1/verifications/%s" % vid), 404,
                       "not_found")
        assert_problem(bapi.get("/v1/verifications/%s/watch" % vid), 404,
                       "not_found")
        assert_problem(bapi.post("/v1/verifications/%s/code" % vid,
                                 json={"code": "123456"}),
                       404, "not_found")
        assert_problem(bapi.post("/v1/verifications/%s/decision" % vid,
                                 json={"result": "approved",
                                       "note": "trust me"}),
                       404, "not_found")
        assert_problem(bapi.post("/v1/verifications/%s/cancel" % vid),
                       404, "not_found")
    assert [v["id"] for v in bapi.list_all("/v1/verifications")] == []
    # A filter naming A's user reveals nothing: an empty list or 404.
    r = bapi.get("/v1/verifications", params={"user_id": a.user["id"]})
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert r.json()["items"] == []
    else:
        assert_problem(r, 404, "not_found")

    assert_problem(bapi.post("/v1/verifications", json={
        "user_id": a.user["id"], "method": "push"}), 404, "not_found")
    assert_problem(bapi.post("/v1/users/%s/enrollments" % a.user["id"],
                             json={}), 404, "not_found")
    assert_problem(bapi.post("/v1/users/%s/enrollments" % a.user["id"],
                             json={"send_via": "email"}), 404, "not_found")
    assert_problem(bapi.get("/v1/users/%s/devices" % a.user["id"]), 404,
                   "not_found")
    assert_problem(bapi.delete("/v1/devices/%s" % device_a.id), 404,
                   "not_found")

    # B's device sees none of A's prompts and cannot decide them.
    assert device_b.prompts() == []
    assert_problem(device_b.decide(push["id"], "approved",
                                   push["match_code"]), 404, "not_found")

    assert state(a, push["id"]) == before
    assert device_a.prompts()[0]["id"] == push["id"]
    assert device_a.approve(push["id"], push["match_code"]) == {
        "status": "approved"}


def test_enrolment_code_of_one_tenant_enrols_into_that_tenant(vserver):
    a = World(vserver)
    b = World(vserver)
    code = a.enrollment()["code"]
    d = Device(vserver.base)
    d.enroll(code)
    assert [x["id"] for x in a.api.get(
        "/v1/users/%s/devices" % a.user["id"]).json()["items"]] == [d.id]
    assert_problem(b.api.delete("/v1/devices/%s" % d.id), 404, "not_found")
    assert b.api.get("/v1/users/%s/devices"
                     % b.user["id"]).json()["items"] == []
