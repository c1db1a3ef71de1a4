"""vouchd -c FILE --check, and refusing bad configuration at start."""

import os
import re
import subprocess

import pytest

import vouchlib
from vouchlib import run_vouchd_check, toml_text


@pytest.fixture
def conf_dir(tmp_path):
    d = tmp_path / "conf"
    d.mkdir()
    signing, secret = vouchlib.make_keys(str(d))
    return d, signing, secret


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def good_text(signing, secret):
    return toml_text(vouchlib.base_conf(
        18080, "postgresql://postgres@127.0.0.1:1/vouch", signing, secret))


def test_good_file_passes(conf_dir):
    d, signing, secret = conf_dir
    path = write(d / "good.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 0, r.stderr


def test_minimal_file_passes(conf_dir):
    # Every other key has a default.
    d, signing, secret = conf_dir
    path = write(d / "min.toml", toml_text({
        "server": {"listen": "127.0.0.1:18081"},
        "database": {"url": "postgresql://127.0.0.1:1/vouch"},
        "tokens": {"signing_key_file": signing},
        "secrets": {"key_file": secret},
    }))
    r = run_vouchd_check(path)
    assert r.returncode == 0, r.stderr


def test_every_error_reported_with_line(conf_dir):
    d, signing, secret = conf_dir
    lines = [
        "# a file with several mistakes",                   # 1
        "[server]",                                         # 2
        'listen = "127.0.0.1:18082"',                       # 3
        "no_such_key = 1",                                  # 4 unknown
        'max_body_bytes = "big"',                           # 5 type
        "[database]",                                       # 6
        'url = "postgresql://127.0.0.1:1/vouch"',           # 7
        "pool_size = -5",                                   # 8 range
        "[tokens]",                                         # 9
        'signing_key_file = "%s"' % signing,                # 10
        "[secrets]",                                        # 11
        'key_file = "%s"' % secret,                         # 12
        "[auth]",                                           # 13
        "rate_limit_per_minute = true",                     # 14 type
        "",
    ]
    path = write(d / "bad.toml", "\n".join(lines))
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    for line in (4, 5, 8, 14):
        assert re.search(r"(^|\s)%s:%d: \S" % (re.escape(path), line),
                         r.stderr, re.M), \
            "no %s:%d: error in:\n%s" % (path, line, r.stderr)
    for line in (3, 7, 10, 12):
        assert "%s:%d:" % (path, line) not in r.stderr, r.stderr


def test_syntax_errors_reported_with_line(conf_dir):
    d, signing, secret = conf_dir
    good = good_text(signing, secret)
    n = len(good.splitlines())
    text = good.rstrip("\n") + "\n" + "\n".join([
        "[email]",                  # n + 1
        'from = "vouch@example',    # n + 2: unterminated string
        "",
    ])
    path = write(d / "syntax.toml", text)
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "%s:%d:" % (path, n + 2) in r.stderr, r.stderr


def test_unknown_section_reported(conf_dir):
    d, signing, secret = conf_dir
    text = good_text(signing, secret) + "[nonsense]\nx = 1\n"
    path = write(d / "section.toml", text)
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"%s:\d+:" % re.escape(path), r.stderr), r.stderr


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.toml")
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert path in r.stderr, r.stderr


@pytest.mark.parametrize("which", ["signing", "secret"])
def test_readable_secret_refused_by_check(conf_dir, which):
    d, signing, secret = conf_dir
    target = signing if which == "signing" else secret
    os.chmod(target, 0o644)
    path = write(d / "loose.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert target in r.stderr, r.stderr


def test_readable_secret_refused_at_start(conf_dir):
    d, signing, secret = conf_dir
    os.chmod(secret, 0o640)
    path = write(d / "loose.toml", good_text(signing, secret))
    r = subprocess.run([vouchlib.vouchd_bin(), "-c", path],
                       capture_output=True, text=True, timeout=30,
                       env=vouchlib.sanitizer_env())
    assert r.returncode != 0, r.stderr
    assert secret in r.stderr, r.stderr
    assert vouchlib.sanitizer_report(r.stderr) is None, r.stderr


def test_missing_secret_file_refused(conf_dir):
    d, signing, secret = conf_dir
    gone = str(d / "gone.key")
    path = write(d / "gone.toml", good_text(signing, gone))
    r = run_vouchd_check(path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert gone in r.stderr, r.stderr


def test_bad_config_refused_at_start(conf_dir):
    d, signing, secret = conf_dir
    conf = vouchlib.merge_conf(vouchlib.base_conf(
        18083, "postgresql://127.0.0.1:1/vouch", signing, secret),
        {"server": {"bogus": 1}})
    path = write(d / "start.toml", toml_text(conf))
    r = subprocess.run([vouchlib.vouchd_bin(), "-c", path],
                       capture_output=True, text=True, timeout=30,
                       env=vouchlib.sanitizer_env())
    assert r.returncode != 0, r.stderr
    assert re.search(r"%s:\d+:" % re.escape(path), r.stderr), r.stderr
    assert vouchlib.sanitizer_report(r.stderr) is None, r.stderr


def test_server_runs_with_only_required_keys(make_vouchd):
    v = make_vouchd(conf={"log": {"level": None},
                          "auth": {"rate_limit_per_minute": None,
                                   "rate_limit_burst": None},
                          "server": {"public_url": None}})
    t = v.tenant()
    assert t.api.get("/v1/customers").status_code == 200


@pytest.mark.parametrize("last", [b"\n", b"\r", b" ", b"\0"])
def test_raw_secret_with_any_last_byte(conf_dir, last):
    # 32 random bytes may end in any byte, a line break included.
    d, signing, secret = conf_dir
    with open(secret, "wb") as f:
        f.write(os.urandom(31) + last)
    path = write(d / "raw.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 0, r.stderr


def test_hex_secret_accepted(conf_dir):
    d, signing, secret = conf_dir
    with open(secret, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    path = write(d / "hex.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("size", [0, 16, 31, 33, 63, 65])
def test_secret_of_wrong_size_refused(conf_dir, size):
    d, signing, secret = conf_dir
    with open(secret, "wb") as f:
        f.write(b"\x01" * size)
    path = write(d / "size.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 1, r.stderr
    assert secret in r.stderr, r.stderr


def test_bad_signing_key_refused(conf_dir):
    d, signing, secret = conf_dir
    with open(signing, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nnonsense\n"
                "-----END PRIVATE KEY-----\n")
    path = write(d / "sign.toml", good_text(signing, secret))
    r = run_vouchd_check(path)
    assert r.returncode == 1, r.stderr
    assert signing in r.stderr, r.stderr
