"""vouchctl device simulate (the app, from a terminal) and vouchctl push
send (one test notification through the configured APNs or FCM client),
run as real commands against the shared server and the push fakes.
"""

import json
import os
import re
import stat
import subprocess

import pytest

import vouchlib

pytest.register_assert_rewrite("verifylib")
from verifylib import DEAD_APNS, DEAD_FCM, fcm_like_token  # noqa: E402

pytest_plugins = ["verifylib"]

ENROLLED_RE = re.compile(r"^enrolled device ([0-9a-f-]{36}) ", re.M)


def simulate(server, *args, stdin=None, cwd=None, timeout=40):
    r = subprocess.run(
        [vouchlib.vouchctl_bin(), "-c", server.config, "device",
         "simulate"] + [str(a) for a in args],
        input=stdin if stdin is not None else "", capture_output=True,
        text=True, timeout=timeout, cwd=cwd, env=vouchlib.sanitizer_env())
    rep = vouchlib.sanitizer_report(r.stderr)
    assert rep is None, "vouchctl: sanitizer report:\n%s" % rep
    return r


def show(r):
    return "exit %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout,
                                                   r.stderr)


def assert_private(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)


def assert_no_secret_printed(r, state):
    for secret in (state["token"], state["private_key"]):
        assert secret not in r.stdout + r.stderr
    body = state["private_key"].splitlines()[1]
    assert body not in r.stdout + r.stderr


def test_simulate_enrols_and_approves_a_real_prompt(world, tmp_path):
    world.device()          # so the verification has a phone to go to
    v = world.verify(reason="reset")
    world.wait_status(v["id"], "sent")
    code = world.enrollment()["code"]
    state_path = str(tmp_path / "sim.json")

    r = simulate(world.server, "--code", code, "--platform", "android",
                 "--name", "Simulated", "--state", state_path,
                 "--pick", v["match_code"], "--once", "--timeout", 20)
    assert r.returncode == 0, show(r)
    m = ENROLLED_RE.search(r.stdout)
    assert m, show(r)
    device_id = m.group(1)
    assert "prompt %s" % v["id"] in r.stdout, show(r)
    assert world.msp_name in r.stdout and "Administrator" in r.stdout
    opts = re.search(r"options: (\d+) (\d+) (\d+)", r.stdout)
    assert opts and str(v["match_code"]) in opts.groups(), show(r)
    assert "approved with %d -> status approved" % v["match_code"] \
        in r.stdout, show(r)

    done = world.get(v["id"])
    assert (done["status"], done["outcome"]) == ("approved",
                                                 "approved_on_device")
    ev = [e for e in world.events(type="verification.approved")
          if e["subject"]["id"] == v["id"]][0]
    assert ev["actor"] == {"type": "device", "id": device_id}

    devices = {d["id"]: d for d in world.api.get(
        "/v1/users/%s/devices" % world.user["id"]).json()["items"]}
    assert devices[device_id]["platform"] == "android"
    assert devices[device_id]["name"] == "Simulated"

    assert_private(state_path)
    with open(state_path) as f:
        state = json.load(f)
    assert state["device_id"] == device_id
    assert "BEGIN PRIVATE KEY" in state["private_key"]
    assert_no_secret_printed(r, state)


def test_simulate_resumes_asks_and_denies(world, tmp_path):
    code = world.enrollment()["code"]
    state_path = str(tmp_path / "dev.json")
    r = simulate(world.server, "--code", code, "--state", state_path,
                 "--timeout", 1)
    assert r.returncode == 1, show(r)
    assert "no prompt came" in r.stderr, show(r)
    assert_private(state_path)
    with open(state_path) as f:
        state = json.load(f)

    # Interactive: the number the technician reads out, from stdin.
    v = world.verify()
    r = simulate(world.server, "--state", state_path, "--once",
                 "--timeout", 20, stdin="%d\n" % v["match_code"])
    assert r.returncode == 0, show(r)
    assert "resumed device %s" % state["device_id"] in r.stdout
    assert "approved with %d -> status approved" % v["match_code"] \
        in r.stdout, show(r)
    assert world.get(v["id"])["outcome"] == "approved_on_device"

    # An empty line denies.
    v = world.verify()
    r = simulate(world.server, "--state", state_path, "--once",
                 "--timeout", 20, stdin="\n")
    assert r.returncode == 0, show(r)
    assert "denied -> status denied" in r.stdout, show(r)
    assert world.get(v["id"])["outcome"] == "denied_on_device"

    # --deny, and a wrong --pick.
    v = world.verify()
    r = simulate(world.server, "--state", state_path, "--deny", "--once",
                 "--timeout", 20)
    assert r.returncode == 0 and "status denied" in r.stdout, show(r)
    v = world.verify()
    wrong = 10 if v["match_code"] != 10 else 11
    r = simulate(world.server, "--state", state_path, "--pick", wrong,
                 "--once", "--timeout", 20)
    assert r.returncode == 0, show(r)
    assert "approved with %d -> status denied" % wrong in r.stdout
    assert world.get(v["id"])["outcome"] == "number_mismatch"
    assert_no_secret_printed(r, state)

    # Revoked: the next poll is refused and the command fails.
    world.api.delete("/v1/devices/%s" % state["device_id"])
    r = simulate(world.server, "--state", state_path, "--once",
                 "--timeout", 5)
    assert r.returncode == 1, show(r)
    assert "401" in r.stderr, show(r)


def test_simulate_default_state_file(world, tmp_path):
    code = world.enrollment()["code"]
    r = simulate(world.server, "--code", code, "--timeout", 1,
                 cwd=str(tmp_path))
    m = ENROLLED_RE.search(r.stdout)
    assert m, show(r)
    path = tmp_path / "var" / ("device-%s.json" % m.group(1))
    assert path.exists(), show(r)
    assert_private(str(path))
    assert stat.S_IMODE(os.stat(tmp_path / "var").st_mode) & 0o077 == 0


def test_simulate_refused_code_fails(world, tmp_path):
    state_path = tmp_path / "none.json"
    r = simulate(world.server, "--code", "ACDE-FGHJ-KMNP", "--state",
                 str(state_path), "--once", "--timeout", 5)
    assert r.returncode == 1, show(r)
    assert "401" in r.stderr and "unauthorized" in r.stderr, show(r)
    assert not state_path.exists()


def test_simulate_refuses_a_readable_state_file(world, tmp_path):
    code = world.enrollment()["code"]
    path = str(tmp_path / "s.json")
    r = simulate(world.server, "--code", code, "--state", path, "--timeout",
                 1)
    assert os.path.exists(path), show(r)
    os.chmod(path, 0o644)
    r = simulate(world.server, "--state", path, "--once", "--timeout", 1)
    assert r.returncode == 1, show(r)
    assert "state file" in r.stderr, show(r)


@pytest.mark.parametrize("args", [
    [], ["--platform", "windows", "--code", "X"], ["--pick", "5", "--deny",
                                                   "--code", "X"],
    ["--code"], ["--bogus", "1", "--code", "X"]])
def test_simulate_usage_errors(vserver, args):
    r = simulate(vserver, *args)
    assert r.returncode == 2, show(r)
    assert "device simulate" in r.stderr


def push_send(config, platform, token):
    return vouchlib.run_vouchctl(config, "push", "send", "--platform",
                                 platform, "--token", token)


@pytest.mark.parametrize("platform", ["ios", "android"])
def test_push_send_delivers(vserver, venv, platform):
    token = os.urandom(32).hex() if platform == "ios" else fcm_like_token()
    r = push_send(vserver.config, platform, token)
    assert r.returncode == 0, show(r)
    assert r.stdout.strip() == "delivered", show(r)
    fake = venv.apns if platform == "ios" else venv.fcm
    req = fake.wait_requests(token)[0]
    assert req["status"] == 200
    if platform == "ios":
        assert req["json"]["vouch"]["type"] == "test"
        assert req["headers"]["apns-push-type"] == "alert"
    else:
        assert req["json"]["message"]["data"]["vouch_type"] == "test"


@pytest.mark.parametrize("platform,token,want", [
    ("ios", DEAD_APNS, "410 Unregistered"),
    ("android", DEAD_FCM, "404 UNREGISTERED")])
def test_push_send_reports_the_refusal(vserver, platform, token, want):
    r = push_send(vserver.config, platform, token)
    assert r.returncode == 1, show(r)
    assert want in r.stdout, show(r)
    assert "delivered" not in r.stdout.replace("not delivered", "")


def test_push_send_bad_token_and_usage(vserver):
    r = push_send(vserver.config, "ios", "not-hex")
    assert r.returncode == 1, show(r)
    assert r.stdout.startswith("not delivered"), show(r)
    r = vouchlib.run_vouchctl(vserver.config, "push", "send", "--platform",
                              "ios")
    assert r.returncode == 2, show(r)
    r = vouchlib.run_vouchctl(vserver.config, "push", "send", "--platform",
                              "blackberry", "--token", "x")
    assert r.returncode == 2, show(r)


def test_push_send_unconfigured_provider_exits_2(vserver, tmp_path):
    conf = vouchlib.merge_conf(vserver.conf, {})
    del conf["fcm"]
    path = tmp_path / "nofcm.toml"
    path.write_text(vouchlib.toml_text(conf))
    r = push_send(str(path), "android", fcm_like_token())
    assert r.returncode == 2, show(r)
    assert "[fcm]" in r.stderr, show(r)
    # The other provider is still there.
    r = push_send(str(path), "ios", os.urandom(32).hex())
    assert r.returncode == 0, show(r)
