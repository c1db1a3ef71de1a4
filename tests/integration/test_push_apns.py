"""The push library against the fake APNs, through tests/push/push-driver.

Each test starts fake_apns with a fault plan on a free loopback port, runs
the driver (the real library) and asserts on both what the driver
reported and what the fake recorded: nothing lost, nothing reported
twice, the stream limit kept, dead peers noticed, tokens shared.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "push"))

import pushfakes  # noqa: E402
from pushfakes import Fake, apns_args, drive  # noqa: E402

pytestmark = pytest.mark.skipif(
    bool(pushfakes.missing_binaries()),
    reason="push driver or fakes not built: %s" %
    pushfakes.missing_binaries())

DEAD = "dead" * 16


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return pushfakes.make_ca(tmp_path_factory.mktemp("push-ca"))


@pytest.fixture
def fake(ca, tmp_path):
    started = []

    def start(plan=None, args=()):
        f = Fake("apns", ca, str(tmp_path), plan, args)
        started.append(f)
        return f

    yield start
    for f in started:
        f.stop()


def answered(fake):
    """apns-id -> number of 200 answers the fake gave it."""
    out = {}
    for r in fake.events("request"):
        if r.get("status") == 200:
            i = r["headers"]["apns-id"]
            out[i] = out.get(i, 0) + 1
    return out


def assert_each_once(run, n):
    per = run.by_index()
    assert sorted(per) == list(range(n))
    assert all(len(v) == 1 for v in per.values()), \
        [v for v in per.values() if len(v) > 1][:3]
    assert run.summary["duplicates"] == 0
    assert run.summary["missing"] == 0


def test_burst_delivered_with_headers_and_one_token(fake, ca):
    f = fake()
    run = drive(apns_args(f, ca) + [
        "-n", 200, "--push-type", "background", "--priority", 5,
        "--expiration", 0, "--collapse-id", "verify-7"])
    assert_each_once(run, 200)
    assert run.summary["delivered"] == 200

    reqs = f.events("request")
    assert len(reqs) == 200
    ids = answered(f)
    assert set(ids) == {c["id"] for c in run.completions}
    assert set(ids.values()) == {1}
    h = reqs[-1]["headers"]
    assert h["apns-topic"] == pushfakes.TOPIC
    assert h["apns-push-type"] == "background"
    assert h["apns-priority"] == "5"
    assert h["apns-expiration"] == "0"
    assert h["apns-collapse-id"] == "verify-7"
    jwt = reqs[0]["jwt"]
    assert jwt["header"]["alg"] == "ES256"
    assert jwt["header"]["kid"] == pushfakes.KID
    assert jwt["claims"]["iss"] == pushfakes.TEAM
    # One provider token for the whole burst.
    assert len({r["headers"]["authorization"] for r in reqs}) == 1
    assert len(f.events("token")) == 1
    # The fake starts at one stream before the first valid token: never
    # more than that, not even before its SETTINGS were acknowledged.
    assert f.events("violation") == []
    assert f.events("refused") == []
    assert len(f.events("connect")) == 1


def test_caller_apns_id_is_sent_and_echoed(fake, ca):
    f = fake()
    uuid = "123E4567-E89B-12D3-A456-426614174000"
    run = drive(apns_args(f, ca) + ["--apns-id", uuid])
    assert run.completions[0]["id"].upper() == uuid
    assert f.events("request")[0]["headers"]["apns-id"] == uuid


def test_goaway_mid_burst_loses_nothing_reports_nothing_twice(fake, ca):
    f = fake({"rules": [{"nth": 60, "goaway": True}]})
    run = drive(apns_args(f, ca) + ["-n", 400])
    assert_each_once(run, 400)
    assert run.summary["delivered"] == 400
    assert run.summary["failed"] == 0 and run.summary["retry"] == 0
    assert run.summary["resent"] >= 1
    assert len(f.events("connect")) >= 2
    ids = answered(f)
    assert len(ids) == 400 and set(ids.values()) == {1}
    assert f.events("violation") == []


def test_stream_limit_lowered_mid_connection_is_respected(fake, ca):
    # Answers take 20 ms, so streams stay open on the fake; the limit
    # drops to 2 at the 20th request while 50 notifications are pending.
    f = fake({"rules": [{"nth": 20, "max_streams": 2},
                        {"every": 1, "delay_ms": 20}]})
    run = drive(apns_args(f, ca) + ["-n", 120, "--window", 50])
    assert_each_once(run, 120)
    assert run.summary["delivered"] == 120
    assert [e["max_streams"] for e in f.events("settings")][-1] == 2
    # None may pass the limit once acknowledged; only a stream or two
    # sent while the new SETTINGS was on its way may be refused (and
    # re-sent). A client ignoring the new limit gets dozens refused.
    assert f.events("violation") == []
    assert len(f.events("refused")) <= 5
    assert run.summary["resent"] <= 5


def test_silent_peer_detected_by_ping_timeout(fake, ca):
    f = fake({"rules": [{"nth": 1, "stall": True}], "ignore_pings": True})
    run = drive(apns_args(f, ca) + [
        "--ping-interval-ms", 300, "--ping-timeout-ms", 400,
        "--timeout-ms", 10000])
    c = run.completions[0]
    assert c["outcome"] == "delivered"
    # Ping at 0.3 s, dead at 0.7 s, re-sent after a short back-off: far
    # sooner than the 10 s request timeout.
    assert c["t_ms"] < 3000, c
    assert "no ping ack within 400 ms" in run.stderr
    assert run.summary["reconnects"] >= 1
    assert run.summary["resent"] == 1
    assert len(f.events("connect")) >= 2


def test_stalled_stream_times_out(fake, ca):
    f = fake({"rules": [{"nth": 1, "stall": True}]})
    run = drive(apns_args(f, ca) + ["--timeout-ms", 800,
                                    "--ping-interval-ms", 200])
    c = run.completions[0]
    assert c["outcome"] == "retry"
    assert c["reason"] == "Timeout"
    assert 700 <= c["t_ms"] < 3000, c
    # Pings kept being answered: the connection was not blamed.
    assert run.summary["reconnects"] == 0


def test_410_reports_dead_token_with_timestamp(fake, ca):
    f = fake({"rules": [{"token": DEAD, "status": 410,
                         "reason": "Unregistered",
                         "timestamp": 1700000000000}]})
    run = drive(apns_args(f, ca) + ["-n", 2, "--token",
                                    DEAD + "," + "00ab" * 16])
    per = run.by_index()
    dead, alive = per[0][0], per[1][0]
    assert dead["outcome"] == "token_dead"
    assert dead["status"] == 410
    assert dead["reason"] == "Unregistered"
    assert dead["timestamp"] == 1700000000000
    assert alive["outcome"] == "delivered"


@pytest.mark.parametrize("status,reason,after", [
    (429, "TooManyRequests", 2),
    (503, "ServiceUnavailable", 1),
])
def test_retry_after_is_honoured(fake, ca, status, reason, after):
    f = fake({"rules": [{"nth": 1, "status": status, "reason": reason,
                         "retry_after": after}]})
    run = drive(apns_args(f, ca) + ["--retries", 1])
    first, second = run.by_index()[0]
    assert first["outcome"] == "retry"
    assert first["status"] == status and first["reason"] == reason
    assert first["retry_ms"] == after * 1000
    assert second["outcome"] == "delivered"
    # Not before: the second attempt went out after Retry-After.
    assert second["t_ms"] - first["t_ms"] >= after * 1000 - 5
    assert len(f.events("request")) == 2


def test_token_rotation_across_connections_stays_under_limit(fake, ca):
    # One stream per connection forces bursts across the pool of four;
    # the token is rotated every second for about four seconds.
    f = fake(args=["--max-streams", 1, "--token-updates", 6])
    run = drive(apns_args(f, ca) + [
        "--pool", 4, "--token-age", 1, "-n", 128, "--interval-ms", 250,
        "--burst", 8])
    assert run.summary["delivered"] == 128, run.summary
    assert all(c["reason"] != "TooManyProviderTokenUpdates"
               for c in run.completions)
    tokens = f.events("token")
    assert all(t["accepted"] for t in tokens)
    assert 3 <= len(tokens) <= 7
    conns = {r["conn"] for r in f.events("request")}
    assert len(conns) >= 3
    assert run.summary["token_refreshes"] >= 2
    assert f.events("violation") == []


def test_expired_provider_token_rotates_once_and_reconnects(fake, ca):
    f = fake({"rules": [{"nth": 1, "status": 403,
                         "reason": "ExpiredProviderToken"}]})
    run = drive(apns_args(f, ca))
    assert run.completions[0]["outcome"] == "delivered"
    reqs = f.events("request")
    assert len(reqs) == 2
    assert reqs[0]["headers"]["authorization"] != \
        reqs[1]["headers"]["authorization"]
    assert reqs[0]["conn"] != reqs[1]["conn"]
    assert run.summary["resent"] == 1


def test_expired_provider_token_again_is_not_a_storm(fake, ca):
    f = fake({"rules": [{"every": 1, "status": 403,
                         "reason": "ExpiredProviderToken"}]})
    run = drive(apns_args(f, ca) + ["-n", 3])
    assert [c["outcome"] for c in run.completions] == ["retry"] * 3
    assert all(c["reason"] == "ExpiredProviderToken"
               for c in run.completions)
    auths = {r["headers"]["authorization"] for r in f.events("request")}
    assert len(auths) == 2


def test_refused_stream_is_resent(fake, ca):
    f = fake({"rules": [{"nth": 3, "refuse": True}]})
    run = drive(apns_args(f, ca) + ["-n", 10])
    assert_each_once(run, 10)
    assert run.summary["delivered"] == 10
    assert run.summary["resent"] == 1
    assert len(f.events("request")) == 11


def test_closed_socket_requests_are_resent(fake, ca):
    f = fake({"rules": [{"nth": 5, "close": True}]})
    run = drive(apns_args(f, ca) + ["-n", 50])
    assert_each_once(run, 50)
    assert run.summary["delivered"] == 50
    assert len(f.events("connect")) == 2


def test_queue_bound_holds_under_flood(fake, ca):
    f = fake()
    small = drive(apns_args(f, ca) + ["--flood", 100000,
                                      "--queue-limit", 1000])
    big = drive(apns_args(f, ca) + ["--flood", 1000000,
                                    "--queue-limit", 1000])
    for run, n in ((small, 100000), (big, 1000000)):
        assert run.flood["accepted"] == 1000
        assert run.flood["refused_retry"] == n - 1000
        assert run.summary["delivered"] == 1000
        assert run.summary["rejected"] == n - 1000
    # Memory does not grow with the size of the flood.
    grow_small = small.flood["rss_after_kb"] - small.flood["rss_before_kb"]
    grow_big = big.flood["rss_after_kb"] - big.flood["rss_before_kb"]
    assert grow_big < 16 * 1024, big.flood
    assert grow_big < grow_small + 4 * 1024, (small.flood, big.flood)


def test_unknown_ca_is_refused(fake, ca):
    f = fake()
    args = [a for a in apns_args(f, ca)]
    i = args.index("--ca")
    del args[i:i + 2]
    run = drive(args + ["--timeout-ms", 1000])
    assert run.completions[0]["outcome"] == "retry"
    assert run.completions[0]["reason"] == "Timeout"
    assert "certificate" in run.stderr
    assert f.events("request") == []


def test_host_name_is_verified_through_dns(fake, ca):
    f = fake()
    args = apns_args(f, ca)
    args[args.index("--endpoint") + 1] = "https://localhost:%d" % f.port
    run = drive(args)
    assert run.completions[0]["outcome"] == "delivered"


def test_metrics_text(fake, ca, tmp_path):
    f = fake({"rules": [{"nth": 2, "status": 400,
                         "reason": "BadDeviceToken"}]})
    path = str(tmp_path / "metrics.txt")
    drive(apns_args(f, ca) + ["-n", 3, "--metrics", path])
    text = open(path).read()
    assert 'vouch_push_submitted_total{provider="apns"} 3\n' in text
    assert ('vouch_push_outcomes_total{provider="apns",outcome="failed",'
            'reason="BadDeviceToken"} 1\n') in text
    assert ('vouch_push_completed_total{provider="apns",'
            'outcome="delivered"} 2\n') in text
    assert 'vouch_push_latency_seconds_count{provider="apns"} 3\n' in text
    assert 'vouch_push_connections_up{provider="apns"} 1\n' in text


def test_peer_that_always_closes_causes_no_connect_storm(fake, ca):
    f = fake({"rules": [{"every": 1, "close": True}]})
    run = drive(apns_args(f, ca) + ["--timeout-ms", 8000])
    c = run.completions[0]
    assert (c["outcome"], c["reason"]) == ("retry", "ConnectionLost")
    # First try plus three re-sends, each after a growing back-off
    # (at least 125 + 250 + 500 ms).
    assert len(f.events("connect")) == 4
    assert c["t_ms"] > 850, c

    f = fake({"rules": [{"every": 1, "close": True}]})
    run = drive(apns_args(f, ca) + ["-n", 5, "--timeout-ms", 3000])
    assert run.summary["retry"] == 5
    assert len(f.events("connect")) <= 7


def test_unreachable_peer_is_retried_with_backoff(ca):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    run = drive(["--provider", "apns", "--endpoint",
                 "https://127.0.0.1:%d" % port, "--ca",
                 os.path.join(ca, "ca.pem"), "--team-id", pushfakes.TEAM,
                 "--key-id", pushfakes.KID, "--key",
                 os.path.join(ca, "apns-key.p8"), "--topic", pushfakes.TOPIC,
                 "-n", 20, "--timeout-ms", 3000])
    assert run.summary["retry"] == 20
    # 0, ~0.2, ~0.4, ~0.8, ~1.6 s: a handful of attempts, not a storm.
    assert 3 <= run.summary["connects"] <= 7, run.summary
