"""Code verifications by SMS and email: the code the caller reads back
is taken from what the fake SMS API and the SMTP sink received, then
checked through the API (right, wrong with attempts left, too many).
"""

import re

import pytest

from vouchlib import assert_json, assert_problem, describe, parallel, sql

pytest.register_assert_rewrite("verifylib")
from verifylib import (  # noqa: E402
    World, backdate, code_in, mail_body, while_expired_and_locked)

pytest_plugins = ["verifylib"]


def sent_code(world, venv, method, user=None):
    """A code verification and the code its message carried."""
    user = user or world.user
    v = world.verify(user=user, method=method)
    assert v["match_code"] is None, v
    assert v["status"] in ("pending", "sent"), v
    if method == "sms":
        msg = venv.sinks.wait_text(user["phone"])
        assert msg["from"] == "+15550001111"
        text = msg["body"]
    else:
        msg = venv.sinks.wait_mail(user["email"])
        text = mail_body(msg)
    world.wait_status(v["id"], "sent")
    return v, code_in(text), text


def post_code(world, vid, code):
    return world.api.post("/v1/verifications/%s/code" % vid,
                          json={"code": code})


def wrong(code):
    return "%06d" % ((int(code) + 1) % 1000000)


@pytest.mark.parametrize("method", ["sms", "email"])
def test_right_code_approves(world, venv, method):
    v, code, text = sent_code(world, venv, method)
    assert len(code) == 6
    assert world.msp_name in text
    done = assert_json(post_code(world, v["id"], code), 200)
    assert (done["status"], done["outcome"]) == ("approved", "code_correct")
    assert done["decided_at"] is not None
    assert_problem(post_code(world, v["id"], code), 409, "conflict")
    types = [e["type"] for e in world.events()
             if e["subject"]["id"] == v["id"]]
    assert types == ["verification.created", "verification.sent",
                     "verification.approved"], types
    # The code is never stored or shown in the clear.
    assert code not in str(world.get(v["id"]))
    assert code not in str([e["data"] for e in world.events()])


def test_wrong_code_leaves_attempts(world, venv):
    v, code, _ = sent_code(world, venv, "sms")
    first = assert_json(post_code(world, v["id"], wrong(code)), 200)
    assert first["status"] == "sent"
    second = assert_json(post_code(world, v["id"], wrong(wrong(code))), 200)
    assert second["status"] == "sent"
    assert second["attempts_left"] == first["attempts_left"] - 1 >= 1
    done = assert_json(post_code(world, v["id"], code), 200)
    assert (done["status"], done["outcome"]) == ("approved", "code_correct")
    rejected = [e for e in world.events(type="verification.code_rejected")
                if e["subject"]["id"] == v["id"]]
    assert len(rejected) == 2, rejected


def test_too_many_wrong_codes_deny(world, venv):
    v, code, _ = sent_code(world, venv, "email")
    left = None
    for _ in range(30):
        body = assert_json(post_code(world, v["id"], wrong(code)), 200)
        if body["status"] != "sent":
            break
        assert left is None or body["attempts_left"] == left - 1
        left = body["attempts_left"]
    assert (body["status"], body["outcome"]) == ("denied",
                                                 "too_many_attempts")
    assert left == 1, "the last allowed attempt ended it"
    # Even the right code is refused now.
    assert_problem(post_code(world, v["id"], code), 409, "conflict")


def test_code_format_is_checked(world, venv):
    v, code, _ = sent_code(world, venv, "sms")
    for bad in ("12345", "123456789", "12a456", "", 123456):
        assert_problem(post_code(world, v["id"], bad), 422,
                       "validation_failed", "code")
    assert world.get(v["id"])["attempts_left"] is not None
    assert world.get(v["id"])["status"] == "sent"
    assert_json(post_code(world, v["id"], code), 200)


def test_code_on_a_push_verification_conflicts(world):
    world.device()
    v = world.verify()
    assert_problem(post_code(world, v["id"], "123456"), 409, "conflict")


def test_codes_have_the_configured_digits(make_vouchd, venv):
    server = make_vouchd(conf=venv.conf({"verification": {
        "code_digits": 8, "code_attempts": 1}}))
    world = World(server)
    v, code, _ = sent_code(world, venv, "sms")
    assert len(code) == 8, code
    body = assert_json(post_code(world, v["id"], "%08d" % (
        (int(code) + 1) % 10**8)), 200)
    assert (body["status"], body["outcome"]) == ("denied",
                                                 "too_many_attempts")


def test_missing_channel_fails_with_a_clear_outcome(make_vouchd, venv):
    server = make_vouchd(conf=venv.conf({"sms": {"api_base": None,
                                                 "account_sid": None,
                                                 "auth_token_file": None,
                                                 "from": None,
                                                 "ca_file": None}}))
    world = World(server)
    v = world.verify(method="sms")
    assert (v["status"], v["outcome"]) == ("failed", "delivery_failed")


def test_code_message_names_no_secret_but_the_code(world, venv):
    v, code, text = sent_code(world, venv, "sms")
    assert re.search(r"\b%s\b" % code, text)
    assert v["id"] not in text


def test_code_verification_expires(world, venv):
    v, code, _ = sent_code(world, venv, "sms")
    backdate(world.server, v["id"])
    done = world.wait_status(v["id"], "expired", timeout=5)
    assert done["outcome"] == "timed_out"
    assert_problem(post_code(world, v["id"], code), 409, "conflict")


def test_code_after_its_expiry_is_refused(world, venv):
    v, code, _ = sent_code(world, venv, "email")
    r = while_expired_and_locked(world.server, v["id"],
                                 lambda: post_code(world, v["id"], code))
    done = world.wait_status(v["id"], "expired", timeout=5)
    assert done["outcome"] == "timed_out", done
    assert r.status_code == 409 or r.json()["status"] == "expired", \
        describe(r)


def test_code_is_stored_only_as_a_keyed_hash(world, venv):
    v, code, _ = sent_code(world, venv, "sms")
    db = world.server.db_url
    row = sql(db, "SELECT v::text FROM verifications v WHERE id = %s",
              (v["id"],))[0][0]
    assert code not in row
    jobs = sql(db, "SELECT o::text, o.payload FROM outbox o"
               " WHERE verification_id = %s", (v["id"],))
    assert len(jobs) == 1
    assert code not in jobs[0][0]
    assert jobs[0][1] is None, "the sealed code outlived its delivery"


def test_concurrent_wrong_codes_spend_exactly_the_attempts(world, venv):
    v, code, _ = sent_code(world, venv, "sms")
    attempts = world.get(v["id"])["attempts_left"]
    guesses = [wrong(code)] * (attempts + 5)
    replies = parallel(lambda c: post_code(world, v["id"], c), guesses,
                       workers=len(guesses))
    codes = [r.status_code for r in replies]
    assert codes.count(200) == attempts, codes
    assert codes.count(409) == 5, codes
    done = world.get(v["id"])
    assert (done["status"], done["outcome"]) == ("denied",
                                                 "too_many_attempts")
    rejected = [e for e in world.events(type="verification.code_rejected")
                if e["subject"]["id"] == v["id"]]
    assert len(rejected) == attempts, rejected
