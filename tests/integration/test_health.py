"""Health, readiness and metrics endpoints, request ids and stopping."""

import re
import signal
import time

import pytest
import requests

from vouchlib import assert_json, describe


def test_healthz(anon):
    r = anon.get("/healthz")
    assert assert_json(r, 200) == {"status": "ok"}


def test_readyz_when_ready(anon):
    r = anon.get("/readyz")
    assert assert_json(r, 200) == {"status": "ready"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_ignore_a_bad_credential(anon, path):
    r = anon.get(path, headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 200, describe(r)


METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? '
    r'(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)( -?[0-9]+)?$')


def parse_metrics(text):
    """(name, labels dict, value) for every sample line; checks syntax."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE"):
                parts = line.split()
                assert len(parts) == 4 and parts[3] in (
                    "counter", "gauge", "histogram", "summary",
                    "untyped"), line
            continue
        m = METRIC_LINE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        labels = {}
        if m.group(2):
            body = m.group(2)[1:-1]
            for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|'
                                  r'\\.)*)",?', body):
                labels[lm.group(1)] = lm.group(2)
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def test_metrics_format_and_content(anon, msp_a):
    assert anon.get("/healthz").status_code == 200
    r = msp_a.api.post("/v1/customers", json={"name": "Metered"})
    assert r.status_code == 201, describe(r)
    r = msp_a.api.get("/v1/customers/not-a-uuid")
    assert r.status_code == 404, describe(r)

    r = anon.get("/metrics")
    assert r.status_code == 200, describe(r)
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain"), ctype
    assert "version=0.0.4" in ctype, ctype
    assert r.headers.get("X-Request-Id")

    samples = parse_metrics(r.text)
    reqs = [(labels, v) for name, labels, v in samples
            if name == "vouch_http_requests_total"]
    assert reqs, "no vouch_http_requests_total samples"
    for labels, _ in reqs:
        assert {"route", "method", "status"} <= set(labels), labels

    def count(method, status, route_part):
        return sum(v for labels, v in reqs
                   if labels["method"] == method
                   and labels["status"] == status
                   and route_part in labels["route"])

    assert count("GET", "200", "healthz") >= 1
    assert count("POST", "201", "customers") >= 1
    assert count("GET", "404", "") >= 1

    assert any(name.startswith("vouch_db_") for name, _, _ in samples), \
        "no vouch_db_ lines"


def test_metrics_route_label_is_the_pattern(anon, msp_a):
    # A label per concrete id would grow without bound.
    c = msp_a.customer("Labelled")
    assert msp_a.api.get("/v1/customers/" + c["id"]).status_code == 200
    text = anon.get("/metrics").text
    assert c["id"] not in text


def test_metrics_counts_grow(anon):
    def healthz_count():
        total = 0
        for name, labels, v in parse_metrics(anon.get("/metrics").text):
            if name == "vouch_http_requests_total" and \
                    labels.get("method") == "GET" and \
                    labels.get("status") == "200" and \
                    "healthz" in labels.get("route", ""):
                total += v
        return total

    before = healthz_count()
    for _ in range(3):
        assert anon.get("/healthz").status_code == 200
    assert healthz_count() >= before + 3


def test_request_ids_differ(anon):
    ids = set()
    for path in ("/healthz", "/healthz", "/readyz", "/nope", "/v1/users"):
        r = anon.get(path)
        rid = r.headers.get("X-Request-Id")
        assert rid, "no X-Request-Id: " + describe(r)
        ids.add(rid)
    assert len(ids) == 5, ids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(make_vouchd, sig):
    v = make_vouchd()
    # An idle keep-alive connection must not hold the stop up.
    s = requests.Session()
    assert s.get(v.base + "/healthz", timeout=5).status_code == 200
    rc, took = v.stop(sig)
    assert rc == 0, "exit %s after %s" % (rc, sig.name)
    assert took < 5, "took %.1f s to stop" % took
    v.check_log()
    s.close()


def test_requests_during_stop_get_a_clean_answer(make_vouchd):
    v = make_vouchd()
    t = v.tenant()
    rc_holder = {}

    # A request sent right after SIGTERM is answered (or refused at
    # connect), never cut off half way, and the process still exits 0.
    s = t.api
    assert s.get("/v1/customers").status_code == 200
    v.proc.send_signal(signal.SIGTERM)
    try:
        r = s.get("/v1/customers")
        rc_holder["status"] = r.status_code
    except requests.ConnectionError:
        rc_holder["status"] = None
    deadline = time.monotonic() + 5
    while v.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not v.alive(), "still running 5 s after SIGTERM"
    assert v.proc.returncode == 0
    assert rc_holder["status"] in (200, 503, None), rc_holder
