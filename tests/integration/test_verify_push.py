"""Push verifications end to end: a technician asks, the fakes of APNs
and FCM receive the push, a device (in Python) reads its prompt and
sends a decision signed with its own key; the verification, the audit
trail and the push payloads are checked against the contract.
"""

import time

import pytest

from vouchlib import assert_json, assert_problem, describe, parallel

pytest.register_assert_rewrite("verifylib")
from verifylib import (  # noqa: E402
    BAD_APNS, DEAD_APNS, DEAD_FCM, Watch, World, assert_no_secrets, epoch,
    hs256_confusion, public_pem, unsigned, wait_until, watch_and_leave,
    while_expired_and_locked)

pytest_plugins = ["verifylib"]


def event_types(world, vid):
    return [e["type"] for e in world.events() if e["subject"]["id"] == vid]


def sent(world, device):
    """A push verification delivered to device; returns (v, prompt)."""
    v = world.verify(reason="password reset", ticket={"system": "psa",
                                                      "id": "T-1"})
    world.wait_status(v["id"], "sent")
    return v, device.prompt(v["id"])


def test_approve_with_the_right_number(world, venv):
    device = world.device(name="Tom's iPhone")
    v = world.verify(reason="password reset",
                     ticket={"system": "psa", "id": "T-42"})
    assert v["status"] in ("pending", "sent"), v
    assert v["method"] == "push" and v["direction"] == "verify_user"
    assert v["user_id"] == world.user["id"]
    assert v["technician_id"] == world.tenant.technician_id
    assert isinstance(v["match_code"], int) and 10 <= v["match_code"] <= 99
    assert v["outcome"] is None and v["decided_at"] is None
    assert v["ticket"] == {"system": "psa", "id": "T-42"}
    assert epoch(v["expires_at"]) > time.time() + 30

    after = world.wait_status(v["id"], "sent")
    assert after["sent_at"] is not None
    venv.apns.wait_requests(device.push_token)

    p = device.prompt(v["id"])
    assert p["kind"] == "verify_user"
    assert p["msp_name"] == world.msp_name
    assert p["technician_name"] == "Administrator"
    assert p["reason"] == "password reset"
    assert p["ticket"] == {"system": "psa", "id": "T-42"}
    assert "match_code" not in p
    opts = p["match_options"]
    assert len(opts) == 3 and len(set(opts)) == 3, opts
    assert v["match_code"] in opts
    assert all(isinstance(n, int) and 10 <= n <= 99 for n in opts)

    assert device.approve(v["id"], v["match_code"]) == {"status": "approved"}
    done = world.get(v["id"])
    assert done["status"] == "approved"
    assert done["outcome"] == "approved_on_device"
    assert done["decided_at"] is not None
    assert v["id"] not in [x["id"] for x in device.prompts()]

    types = event_types(world, v["id"])
    assert types == ["verification.created", "verification.sent",
                     "verification.approved"], types
    ev = [e for e in world.events(type="verification.approved")
          if e["subject"]["id"] == v["id"]][0]
    assert ev["actor"] == {"type": "device", "id": device.id}


def test_wrong_number_is_denied_as_mismatch(world):
    device = world.device()
    v, p = sent(world, device)
    wrong = [n for n in p["match_options"] if n != v["match_code"]][0]
    assert device.approve(v["id"], wrong) == {"status": "denied"}
    done = world.get(v["id"])
    assert (done["status"], done["outcome"]) == ("denied", "number_mismatch")
    assert "verification.denied" in event_types(world, v["id"])


def test_approval_without_a_number_is_a_mismatch(world):
    device = world.device()
    v, _ = sent(world, device)
    r = device.decide(v["id"], "approved", None)
    assert assert_json(r, 200) == {"status": "denied"}
    assert world.get(v["id"])["outcome"] == "number_mismatch"


def test_deny(world):
    device = world.device()
    v, _ = sent(world, device)
    assert device.deny(v["id"]) == {"status": "denied"}
    done = world.get(v["id"])
    assert (done["status"], done["outcome"]) == ("denied",
                                                 "denied_on_device")


def test_cancel(world):
    device = world.device()
    v, _ = sent(world, device)
    r = world.api.post("/v1/verifications/%s/cancel" % v["id"])
    done = assert_json(r, 200)
    assert (done["status"], done["outcome"]) == ("canceled", "canceled")
    assert v["id"] not in [x["id"] for x in device.prompts()]

    assert_problem(world.api.post("/v1/verifications/%s/cancel" % v["id"]),
                   409, "conflict")
    assert_problem(device.decide(v["id"], "approved", v["match_code"]),
                   409, "conflict")
    assert "verification.canceled" in event_types(world, v["id"])


def test_marked_by_hand_needs_a_note_and_is_audited(world):
    device = world.device()
    v, _ = sent(world, device)
    url = "/v1/verifications/%s/decision" % v["id"]
    assert_problem(world.api.post(url, json={"result": "approved"}), 422,
                   "validation_failed", "note")
    assert_problem(world.api.post(url, json={"result": "maybe",
                                             "note": "x"}),
                   422, "validation_failed", "result")
    r = world.api.post(url, json={"result": "approved",
                                  "note": "known voice, called back"})
    done = assert_json(r, 200)
    assert (done["status"], done["outcome"]) == ("approved",
                                                 "marked_by_technician")
    assert_problem(world.api.post(url, json={"result": "denied",
                                             "note": "again"}),
                   409, "conflict")
    ev = [e for e in world.events(type="verification.approved")
          if e["subject"]["id"] == v["id"]][0]
    assert ev["data"]["note"] == "known voice, called back"
    assert ev["actor"]["type"] == "technician"


def test_expiry(make_vouchd, venv):
    server = make_vouchd(conf=venv.conf({"verification": {"push_ttl": 10}}))
    world = World(server)
    device = world.device()
    v = world.verify()
    ttl = epoch(v["expires_at"]) - epoch(v["created_at"])
    assert 9 <= ttl <= 11, v
    world.wait_status(v["id"], "sent")
    done = world.wait_status(v["id"], "expired", timeout=20)
    assert done["outcome"] == "timed_out"
    assert epoch(done["decided_at"]) >= epoch(v["expires_at"]) - 1
    assert device.prompts() == []
    assert_problem(device.decide(v["id"], "approved", v["match_code"]),
                   409, "conflict")
    assert "verification.expired" in event_types(world, v["id"])


def test_verify_technician_names_the_technician(world, venv):
    tech = world.tenant.technician(display_name="Pat Tech")
    api = world.server.client(tech["api_key"])
    device = world.device()
    r = api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "push",
        "direction": "verify_technician", "reason": "your laptop"})
    v = assert_json(r, 201)
    assert v["direction"] == "verify_technician"
    assert v["technician_id"] == tech["id"]
    p = device.prompt(v["id"])
    assert p["kind"] == "verify_technician"
    assert p["technician_name"] == "Pat Tech"
    assert v["match_code"] in p["match_options"]

    req = venv.apns.wait_requests(device.push_token)[0]
    alert = req["json"]["aps"]["alert"]
    assert "Pat Tech" in alert["title"] + alert["body"], alert

    assert device.approve(v["id"], v["match_code"]) == {"status": "approved"}


def test_verify_technician_needs_push(world):
    r = world.api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "sms",
        "direction": "verify_technician"})
    assert_problem(r, 422, "validation_failed", "direction")


def test_two_devices_get_the_contract_payloads(world, venv):
    ios = world.device(platform="ios", name="iPhone")
    android = world.device(platform="android", name="Pixel")
    v = world.verify()
    world.wait_status(v["id"], "sent")
    secrets = [v["match_code"]] + device_options(ios, v["id"])
    allowed = [v["id"], ios.push_token, android.push_token]
    for r in venv.apns.wait_requests(ios.push_token) + \
            venv.fcm.wait_requests(android.push_token):
        for secret in (ios.token, android.token):
            assert secret not in r["body"]
            assert secret.split(".")[2] not in r["body"]

    a = venv.apns.wait_requests(ios.push_token)
    assert len(a) == 1, a
    a = a[0]
    assert a["method"] == "POST" and a["status"] == 200, a
    assert a["path"] == "/3/device/" + ios.push_token
    h = a["headers"]
    assert h["apns-push-type"] == "alert"
    assert h["apns-priority"] == "10"
    assert h["apns-collapse-id"] == v["id"]
    assert abs(int(h["apns-expiration"]) - epoch(v["expires_at"])) <= 1, h
    assert h["apns-topic"] == "com.example.vouch"
    body = a["json"]
    assert set(body) == {"aps", "vouch"}, body
    assert body["vouch"] == {"type": "prompt", "id": v["id"]}
    aps = body["aps"]
    assert isinstance(aps["alert"]["title"], str) and aps["alert"]["title"]
    assert isinstance(aps["alert"]["body"], str) and aps["alert"]["body"]
    assert aps["sound"] == "default"
    assert isinstance(aps["category"], str) and aps["category"]
    assert_no_secrets(body, secrets, allowed)

    f = venv.fcm.wait_requests(android.push_token)
    assert len(f) == 1, f
    f = f[0]
    assert f["status"] == 200, f
    assert f["path"] == "/v1/projects/vouch-test/messages:send"
    msg = f["json"]["message"]
    assert msg["token"] == android.push_token
    assert msg["data"]["vouch_type"] == "prompt"
    assert msg["data"]["vouch_id"] == v["id"]
    assert msg["android"]["priority"] == "HIGH"
    ttl = msg["android"]["ttl"]
    assert ttl.endswith("s"), ttl
    left = epoch(v["expires_at"]) - epoch(v["created_at"])
    assert left - 10 <= float(ttl[:-1]) <= left + 1, (ttl, left)
    assert_no_secrets(f["json"], secrets, allowed)

    # Either phone may answer; the other one's prompt is then gone.
    assert android.approve(v["id"], v["match_code"]) == {
        "status": "approved"}
    assert ios.prompts() == []
    assert_problem(ios.decide(v["id"], "denied"), 409, "conflict")


def device_options(device, vid):
    return device.prompt(vid)["match_options"]


def test_user_without_devices_fails_at_once(world, venv):
    r = world.api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "push"})
    v = assert_json(r, 201)
    assert (v["status"], v["outcome"]) == ("failed", "no_active_device")
    assert v["decided_at"] is not None
    assert "verification.failed" in event_types(world, v["id"])


def test_revoked_device_gets_no_push(world):
    device = world.device()
    assert world.api.delete("/v1/devices/%s" % device.id).status_code == 204
    v = world.verify()
    assert (v["status"], v["outcome"]) == ("failed", "no_active_device")


@pytest.mark.parametrize("platform,token", [("ios", DEAD_APNS),
                                            ("android", DEAD_FCM)])
def test_dead_token_unregisters_the_device(world, venv, platform, token):
    device = world.device(platform=platform, push_token=token)
    v = world.verify()
    fake = venv.apns if platform == "ios" else venv.fcm
    wait_until(lambda: [r for r in fake.requests(token)
                        if r["status"] in (404, 410)], 15,
               "the fake's refusal")
    done = world.wait_status(v["id"], "failed")
    assert done["outcome"] == "delivery_failed"

    r = world.api.get("/v1/users/%s/devices" % world.user["id"])
    items = assert_json(r, 200)["items"]
    assert [d["status"] for d in items] == ["unregistered"], items
    evs = [e for e in world.events(type="device.unregistered")
           if e["subject"]["id"] == device.id]
    assert len(evs) == 1, evs
    assert evs[0]["actor"]["type"] == "system"

    # The app still works and a new push token makes the device active.
    assert device.prompts() == []
    fresh = "ab" * 32 if platform == "ios" else "fresh:" + "f" * 140
    r = device.http.put("/v1/device/push-token", json={"push_token": fresh})
    assert r.status_code == 204, describe(r)
    items = world.api.get("/v1/users/%s/devices"
                          % world.user["id"]).json()["items"]
    assert items[0]["status"] == "active", items


def test_decisions_that_do_not_check_out_are_refused(world):
    device = world.device()
    other = world.device()
    v, _ = sent(world, device)
    v2 = world.verify()
    vid, num = v["id"], v["match_code"]

    def refused(r):
        assert_problem(r, 422, "validation_failed", "decision")

    # Signed by another device's key, claiming to be this device.
    refused(device.decide(vid, "approved", num, key=other.key))
    # A decision naming another device.
    refused(device.decide(vid, "approved", num, did=other.id))
    # A decision for another prompt, sent to this one.
    refused(device.post_decision(vid, device.sign(
        device.claims(v2["id"], "approved", num))))
    # Stale and future iat.
    refused(device.decide(vid, "approved", num, iat=int(time.time()) - 400))
    refused(device.decide(vid, "approved", num, iat=int(time.time()) + 400))
    # No iat, a bad res, a text num.
    claims = device.claims(vid, "approved", num)
    del claims["iat"]
    refused(device.post_decision(vid, device.sign(claims)))
    refused(device.decide(vid, "maybe", num))
    refused(device.decide(vid, "approved", str(num)))
    # Algorithm confusion and an unsigned token.
    refused(device.post_decision(vid, hs256_confusion(
        device.claims(vid, "approved", num), public_pem(device.key))))
    refused(device.post_decision(vid, unsigned(
        device.claims(vid, "approved", num))))
    # Garbage.
    refused(device.post_decision(vid, "not.a.jws"))

    assert world.get(vid)["status"] == "sent"

    good = device.sign(device.claims(vid, "approved", num))
    assert assert_json(device.post_decision(vid, good), 200) == {
        "status": "approved"}
    # The same decision replayed, and any later one: conflict.
    assert_problem(device.post_decision(vid, good), 409, "conflict")
    assert_problem(other.decide(vid, "denied"), 409, "conflict")
    assert world.get(vid)["status"] == "approved"


def test_decision_on_a_code_verification_is_not_found(world):
    device = world.device()
    v = world.verify(method="email")
    assert_problem(device.decide(v["id"], "approved", 10), 404, "not_found")


def test_prompts_are_the_users_own(world):
    mine = world.device()
    someone = world.new_user(display_name="Someone Else")
    theirs = world.device(user=someone)
    v = world.verify()
    assert [p["id"] for p in mine.prompts()] == [v["id"]]
    assert theirs.prompts() == []
    assert_problem(theirs.decide(v["id"], "approved", v["match_code"]),
                   404, "not_found")
    assert world.get(v["id"])["status"] in ("pending", "sent")


def test_revoked_device_token_is_refused_at_once(world):
    device = world.device()
    v, _ = sent(world, device)
    assert device.prompts_request().status_code == 200
    r = world.api.delete("/v1/devices/%s" % device.id)
    assert r.status_code == 204, describe(r)
    assert_problem(device.prompts_request(), 401, "unauthorized")
    assert_problem(device.decide(v["id"], "approved", v["match_code"]),
                   401, "unauthorized")
    r = device.http.put("/v1/device/push-token", json={"push_token": "ab" *
                                                        32})
    assert_problem(r, 401, "unauthorized")
    assert world.get(v["id"])["status"] == "sent"


def test_listing_by_user_and_status(world):
    device = world.device()
    v1, _ = sent(world, device)
    device.deny(v1["id"])
    v2 = world.verify()
    r = world.api.get("/v1/verifications", params={
        "user_id": world.user["id"], "status": "denied"})
    ids = [x["id"] for x in assert_json(r, 200)["items"]]
    assert ids == [v1["id"]]
    everything = world.api.list_all("/v1/verifications",
                                    {"user_id": world.user["id"]}, limit=1)
    assert [x["id"] for x in everything] == [v1["id"], v2["id"]]
    assert_problem(world.api.get("/v1/verifications",
                                 params={"status": "bogus"}),
                   422, "validation_failed", "status")


def test_user_and_technician_limits(make_vouchd, venv):
    server = make_vouchd(conf=venv.conf({"verification": {
        "user_limit": 2, "technician_limit": 3}}))
    world = World(server)
    world.device()
    world.verify()
    world.verify()
    r = world.api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "push"})
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0, r.headers

    # Another user is not limited by it, but the technician's own limit
    # comes next.
    other = world.new_user(display_name="Other User")
    world.device(user=other)
    world.verify(user=other)
    r = world.api.post("/v1/verifications", json={
        "user_id": other["id"], "method": "push"})
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0, r.headers

    # Another technician may still verify that user.
    tech = world.tenant.technician()
    world.verify(user=other, api=server.client(tech["api_key"]))


def test_decision_after_the_prompt_expired_is_refused(world):
    device = world.device()
    v, _ = sent(world, device)
    r = while_expired_and_locked(world.server, v["id"], lambda: device.decide(
        v["id"], "approved", v["match_code"]))
    done = world.wait_status(v["id"], "expired", timeout=5)
    assert done["outcome"] == "timed_out", done
    assert r.status_code == 409 or r.json() == {"status": "expired"}, \
        describe(r)


def test_push_to_a_platform_without_its_provider_fails(make_vouchd, venv):
    conf = venv.conf()
    del conf["apns"]
    server = make_vouchd(conf=conf)
    world = World(server)
    world.device(platform="ios")
    v = world.verify()
    done = world.wait_status(v["id"], "failed")
    assert done["outcome"] == "delivery_failed"


def test_credentials_do_not_cross_between_apis(world):
    device = world.device()
    assert_problem(device.http.get("/v1/verifications"), 401,
                   "unauthorized")
    assert_problem(device.http.get("/v1/users/%s/devices"
                                   % world.user["id"]), 401, "unauthorized")
    assert_problem(world.api.get("/v1/device/prompts"), 401,
                   "unauthorized")
    assert_problem(world.server.client().get("/v1/device/prompts"), 401,
                   "unauthorized")


def test_bad_requests(world):
    api = world.api
    assert_problem(api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "carrier-pigeon"}),
        422, "validation_failed", "method")
    assert_problem(api.post("/v1/verifications", json={"method": "push"}),
                   422, "validation_failed", "user_id")
    assert_problem(api.post("/v1/verifications", json={
        "user_id": "not-a-uuid", "method": "push"}),
        422, "validation_failed", "user_id")
    assert_problem(api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "push",
        "ticket": {"system": "psa"}}), 422, "validation_failed", "ticket")
    r = api.post("/v1/verifications", json={
        "user_id": "00000000-0000-4000-8000-000000000000",
        "method": "push"})
    assert_problem(r, 404, "not_found")
    nophone = world.new_user(display_name="No Phone", phone=None)
    assert_problem(api.post("/v1/verifications", json={
        "user_id": nophone["id"], "method": "sms"}),
        422, "validation_failed", "method")
    assert_problem(api.get("/v1/verifications/not-a-uuid"), 404,
                   "not_found")


def test_push_refused_for_now_is_retried(make_vouchd, venv, extra_fakes):
    apns = extra_fakes("apns", {"rules": [
        {"nth": 1, "status": 429, "reason": "TooManyRequests",
         "retry_after": 1}]})
    server = make_vouchd(conf=venv.conf(apns=apns))
    world = World(server)
    device = world.device()
    v = world.verify()
    done = world.wait_status(v["id"], "sent", timeout=15)
    reqs = apns.requests(device.push_token)
    assert [r["status"] for r in reqs] == [429, 200], reqs
    assert all(r["headers"]["apns-collapse-id"] == v["id"] for r in reqs)
    assert epoch(done["sent_at"]) >= epoch(v["created_at"]) + 0.9
    assert device.approve(v["id"], v["match_code"]) == {"status": "approved"}


def test_push_refused_for_good_fails_the_verification(world, venv):
    device = world.device(push_token=BAD_APNS)
    v = world.verify()
    done = world.wait_status(v["id"], "failed")
    assert done["outcome"] == "delivery_failed"
    assert len(venv.apns.requests(BAD_APNS)) >= 1
    items = world.api.get("/v1/users/%s/devices"
                          % world.user["id"]).json()["items"]
    assert items[0]["id"] == device.id and items[0]["status"] != "revoked"


def test_watchers_that_leave_early_do_no_harm(world):
    device = world.device()
    v = world.verify()
    for _ in range(3):
        watch_and_leave(world.server, world.tenant.api_key, v["id"])
    stays = Watch(world.api, v["id"])
    world.wait_status(v["id"], "sent")
    assert device.approve(v["id"], v["match_code"]) == {"status": "approved"}
    stays.wait_end()
    assert stays.statuses()[-1] == "approved"
    r = world.server.client().get("/healthz")
    assert r.status_code == 200


def test_two_phones_answering_at_once_decide_once(world):
    phones = [world.device(), world.device(platform="android")]
    v, _ = sent(world, phones[0])
    replies = parallel(lambda d: d.decide(v["id"], "approved",
                                          v["match_code"]), phones)
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 409], [describe(r) for r in replies]
    approved = [e for e in world.events(type="verification.approved")
                if e["subject"]["id"] == v["id"]]
    assert len(approved) == 1, approved
