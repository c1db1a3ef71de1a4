"""Watching verifications live and running several vouchd processes on
one database: the event stream shows every transition in order and ends
after the final one, a watcher on one process sees a decision made
through another, and a delivery a killed process held is finished by
the other once its lease runs out.
"""

import signal
import time

import pytest

from vouchlib import assert_problem

pytest.register_assert_rewrite("verifylib")
from verifylib import (  # noqa: E402
    SLOW_APNS, SLOW_MS, Watch, World, assert_transitions)

pytest_plugins = ["verifylib"]


def test_watch_sees_every_transition_in_order(world, venv):
    # The fake holds this token's push for a while, so the stream opens
    # while the verification is still pending.
    device = world.device(push_token=SLOW_APNS)
    v = world.verify()
    watch = Watch(world.api, v["id"])
    assert watch.status_code == 200
    assert watch.resp.headers["Content-Type"].startswith(
        "text/event-stream")
    watch.wait_status("pending", timeout=5)
    watch.wait_status("sent", timeout=SLOW_MS / 1000 + 10)
    device.approve(v["id"], v["match_code"])
    watch.wait_end()
    seen = assert_transitions(watch.events, "approved")
    assert seen == ["pending", "sent", "approved"], seen
    last = watch.events[-1][1]
    assert last["id"] == v["id"]
    assert last["outcome"] == "approved_on_device"
    assert last == world.get(v["id"])


def test_watch_of_a_final_verification_ends_at_once(world):
    r = world.api.post("/v1/verifications", json={
        "user_id": world.user["id"], "method": "push"})
    v = r.json()
    assert v["status"] == "failed"
    watch = Watch(world.api, v["id"], timeout=10)
    watch.wait_end(timeout=5)
    assert [d["status"] for _, d in watch.events] == ["failed"]


def test_watch_ends_on_cancel_and_expiry_like_any_final(world):
    world.device()
    v = world.verify()
    watch = Watch(world.api, v["id"])
    watch.wait(lambda: watch.events, 5, "the first event")
    world.api.post("/v1/verifications/%s/cancel" % v["id"])
    watch.wait_end()
    assert_transitions(watch.events, "canceled")


def test_watch_of_an_unknown_verification_is_404(world):
    r = world.api.get("/v1/verifications/%s/watch"
                      % "00000000-0000-4000-8000-000000000000")
    assert_problem(r, 404, "not_found")


def test_many_watchers_all_see_the_end(world):
    device = world.device()
    v = world.verify()
    watches = [Watch(world.api, v["id"]) for _ in range(5)]
    world.wait_status(v["id"], "sent")
    device.deny(v["id"])
    for w in watches:
        w.wait_end()
        assert_transitions(w.events, "denied")


def shared_conf(venv, first, extra=None):
    """The conf of a second process on the first one's database: same
    token signing key and secrets key."""
    conf = venv.conf(extra)
    conf["tokens"] = {"signing_key_file": first.signing}
    conf["secrets"] = {"key_file": first.secret}
    return conf


def test_watcher_on_one_process_sees_a_decision_made_on_another(
        make_vouchd, venv):
    a = make_vouchd(conf=venv.conf())
    b = make_vouchd(conf=shared_conf(venv, a), db_url=a.db_url)
    on_a = World(a)
    device = on_a.device()
    # The device and the technician talk to process b.
    device.http.base = b.base
    api_b = b.client(on_a.tenant.api_key)
    v = on_a.verify(api=api_b)
    watch = Watch(on_a.api, v["id"])
    on_a.wait_status(v["id"], "sent", api=api_b)
    device.approve(v["id"], v["match_code"])
    watch.wait_end()
    assert assert_transitions(watch.events, "approved")[-1] == "approved"

    # And the other way round: created on a, denied through b, watched
    # on both.
    v2 = on_a.verify()
    wa, wb = Watch(on_a.api, v2["id"]), Watch(api_b, v2["id"])
    on_a.wait_status(v2["id"], "sent")
    device.deny(v2["id"])
    for w in (wa, wb):
        w.wait_end()
        assert_transitions(w.events, "denied")


def test_killed_process_delivery_is_taken_over_after_the_lease(
        make_vouchd, venv, extra_fakes):
    # This APNs never answers its first request: the process that sent
    # it is killed while it waits.
    apns = extra_fakes("apns", {"rules": [{"nth": 1, "stall": True}]})
    conf = venv.conf(apns=apns)
    a = make_vouchd(conf=conf)
    b = make_vouchd(conf=shared_conf(venv, a, conf), db_url=a.db_url,
                    start=False)
    world = World(a)
    device = world.device()
    v = world.verify()
    first = apns.wait_requests(device.push_token)[0]
    assert first["action"] == "stall", first
    assert world.get(v["id"])["status"] == "pending"

    t_kill = time.monotonic()
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    b.start()
    api_b = b.client(world.tenant.api_key)
    done = world.wait_status(v["id"], "sent", timeout=20, api=api_b)
    took = time.monotonic() - t_kill
    assert done["sent_at"] is not None

    reqs = apns.requests(device.push_token)
    assert len(reqs) == 2, reqs
    second = reqs[1]
    assert second["status"] == 200 and second["action"] == "answer", second
    assert second["headers"]["apns-collapse-id"] == v["id"]
    assert second["json"]["vouch"] == {"type": "prompt", "id": v["id"]}
    assert took < 15, took

    # The prompt works through the survivor.
    device.http.base = b.base
    assert device.approve(v["id"], v["match_code"]) == {"status": "approved"}
    sent_events = [e for e in api_b.list_all(
        "/v1/events", {"type": "verification.sent"}, limit=500)
        if e["subject"]["id"] == v["id"]]
    assert len(sent_events) == 1, sent_events
