"""The push library against the fake FCM (and its OAuth token endpoint),
through tests/push/push-driver.

Each test starts fake_fcm on a free loopback port with a fault plan,
points a copy of the test service account at its /token, runs the driver
(the real library) and asserts on the driver's output and the fake's
record: one token for many sends, refresh before expiry, one refresh on
a 401, FCM errors mapped, Retry-After honoured, GOAWAY survived.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "push"))

import pushfakes  # noqa: E402
from pushfakes import Fake, drive, fcm_args  # noqa: E402

pytestmark = pytest.mark.skipif(
    bool(pushfakes.missing_binaries()),
    reason="push driver or fakes not built: %s" %
    pushfakes.missing_binaries())


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return pushfakes.make_ca(tmp_path_factory.mktemp("push-ca"))


@pytest.fixture
def fcm(ca, tmp_path):
    """Start fake_fcm; returns (fake, driver arguments)."""
    started = []

    def start(plan=None, args=()):
        f = Fake("fcm", ca, str(tmp_path), plan, args)
        started.append(f)
        sa = pushfakes.fcm_service_account(ca, f, str(tmp_path))
        return f, fcm_args(f, ca, sa)

    yield start
    for f in started:
        f.stop()


def sends(fake):
    return [r for r in fake.events("request")
            if r["path"].endswith("/messages:send")]


def test_one_token_for_many_sends(fcm):
    f, args = fcm()
    run = drive(args + ["-n", 200])
    assert run.summary["delivered"] == 200
    assert run.summary["duplicates"] == 0
    oauth = f.events("oauth")
    assert len(oauth) == 1 and oauth[0]["status"] == 200
    assert oauth[0]["client_email"] == pushfakes.EMAIL
    reqs = sends(f)
    assert len(reqs) == 200
    assert all(r["status"] == 200 for r in reqs)
    assert len({r["headers"]["authorization"] for r in reqs}) == 1
    body = json.loads(reqs[0]["body"])
    assert body["message"]["token"].startswith("fcm-device-token-")
    assert body["message"]["android"]["priority"] == "HIGH"
    assert reqs[0]["path"] == "/v1/projects/%s/messages:send" % \
        pushfakes.PROJECT
    names = {c["id"] for c in run.completions}
    assert all(n.startswith("projects/%s/messages/" % pushfakes.PROJECT)
               for n in names)
    assert len(names) == 200
    assert f.events("violation") == []
    # Closing the token connection after use is not a lost connection.
    assert run.summary["reconnects"] == 0


def test_token_refreshed_ahead_of_expiry(fcm):
    f, args = fcm(args=["--token-ttl", 2])
    run = drive(args + ["-n", 45, "--interval-ms", 100])
    assert run.summary["delivered"] == 45
    # A 2 s token is refreshed a few times in 4.5 s, not per send.
    oauth = f.events("oauth")
    assert 2 <= len(oauth) <= 10, oauth
    # Refreshed before expiry: no send was ever refused for its token.
    assert all(r["status"] == 200 for r in sends(f))
    assert len({r["headers"]["authorization"] for r in sends(f)}) >= 2


def test_401_refreshes_once(fcm):
    f, args = fcm({"rules": [{"nth": 1, "status": 401,
                              "reason": "UNAUTHENTICATED"}]})
    run = drive(args + ["-n", 1])
    assert run.completions[0]["outcome"] == "delivered"
    assert len(f.events("oauth")) == 2
    assert run.summary["resent"] == 1


def test_unregistered_is_a_dead_token(fcm):
    f, args = fcm({"rules": [{"token": "gone-token", "status": 404,
                              "reason": "UNREGISTERED"}]})
    run = drive(args + ["-n", 2, "--token", "gone-token,live-token"])
    per = run.by_index()
    assert per[0][0]["outcome"] == "token_dead"
    assert per[0][0]["reason"] == "UNREGISTERED"
    assert per[0][0]["status"] == 404
    assert per[1][0]["outcome"] == "delivered"


@pytest.mark.parametrize("status,reason,outcome", [
    (400, "INVALID_ARGUMENT", "failed"),
    (403, "SENDER_ID_MISMATCH", "failed"),
    (401, "THIRD_PARTY_AUTH_ERROR", "failed"),
    (500, "INTERNAL", "retry"),
])
def test_errors_map_to_outcomes(fcm, status, reason, outcome):
    f, args = fcm({"rules": [{"token": "t1", "status": status,
                              "reason": reason}]})
    run = drive(args + ["--token", "t1"])
    c = run.completions[0]
    assert (c["outcome"], c["status"], c["reason"]) == \
        (outcome, status, reason)


def test_quota_exceeded_waits_for_retry_after(fcm):
    f, args = fcm({"rules": [{"nth": 1, "status": 429,
                              "reason": "QUOTA_EXCEEDED",
                              "retry_after": 1}]})
    run = drive(args + ["--retries", 1])
    first, second = run.by_index()[0]
    assert first["outcome"] == "retry" and first["retry_ms"] == 1000
    assert second["outcome"] == "delivered"
    assert second["t_ms"] - first["t_ms"] >= 995


def test_goaway_mid_burst(fcm):
    f, args = fcm({"rules": [{"nth": 40, "goaway": True}]})
    run = drive(args + ["-n", 150])
    per = run.by_index()
    assert sorted(per) == list(range(150))
    assert all(len(v) == 1 for v in per.values())
    assert run.summary["delivered"] == 150
    ok = [r for r in sends(f) if r["status"] == 200]
    assert len(ok) == 150
    assert f.events("violation") == []


def test_token_endpoint_refusal_fails_waiting_sends(fcm):
    f, args = fcm({"rules": [{"path": "/token", "status": 400,
                              "reason": "invalid_grant"}]})
    run = drive(args + ["-n", 3, "--timeout-ms", 5000])
    assert [c["outcome"] for c in run.completions] == ["failed"] * 3
    assert all(c["reason"] == "AuthRejected" for c in run.completions)
    assert sends(f) == []
