"""The self-service page at /reset in headless Chromium (Debian's
chromium driven by playwright-core from tests/browser), against the real
vouchd and the real Samba AD: a full reset by email code, after which the
new password binds and the old one does not.

Needs /usr/bin/chromium (ops/install-deps) and `npm ci` in tests/browser;
the test is skipped, saying which, when either is missing.
"""

import os
import shutil
import subprocess

import pytest

import vouchlib

pytest.register_assert_rewrite("verifylib", "synclib", "selfservicelib")
from selfservicelib import strong_password  # noqa: E402

pytest_plugins = ["verifylib", "synclib", "selfservicelib"]

BROWSER_DIR = os.path.join(vouchlib.REPO, "tests", "browser")
CHROMIUM = os.environ.get("VOUCH_CHROMIUM", "/usr/bin/chromium")


def browser_ready():
    """None when the browser test can run, else why not."""
    if not os.access(CHROMIUM, os.X_OK):
        return "%s is missing (ops/install-deps installs chromium)" % CHROMIUM
    if shutil.which("node") is None:
        return "node is missing"
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules",
                                      "playwright-core")):
        return "playwright-core is missing (run npm ci in tests/browser)"
    return None


@pytest.mark.skipif(browser_ready() is not None,
                    reason=browser_ready() or "")
def test_reset_by_email_code_in_the_browser(site, workdir):
    acct = site.account()
    new = strong_password()
    artifacts = os.path.join(workdir, "browser")
    os.makedirs(artifacts, exist_ok=True)
    env = dict(os.environ, VOUCH_URL=site.server.base,
               VOUCH_LOGIN=acct.login, VOUCH_EMAIL=acct.email,
               VOUCH_MAIL_RECORD=site.venv.sinks.mail_record,
               VOUCH_NEW_PASSWORD=new, VOUCH_MSP_NAME=site.msp_name,
               VOUCH_ARTIFACTS=artifacts, VOUCH_CHROMIUM=CHROMIUM)
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "reset_page.js")],
                       cwd=BROWSER_DIR, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), \
        "the page failed (screenshot in %s):\n%s%s" % (artifacts, r.stdout,
                                                       r.stderr[-3000:])

    assert acct.binds(new), "the password set on the page does not bind"
    assert not acct.binds(acct.password), "the old password still binds"
    types = [e["type"] for e in acct.events()]
    assert "selfservice.verified" in types and "password.reset" in types, \
        types
    reset = acct.events("password.reset")[-1]
    assert reset["data"]["factor"] == "email", reset
