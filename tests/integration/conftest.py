"""Fixtures for the vouch integration tests.

One PostgreSQL cluster serves the whole session; every vouchd gets a
database of its own. Most tests share one vouchd and make fresh tenants
(msp_a, msp_b); tests that need special settings start their own with
make_vouchd.
"""

import os
import shutil
import signal
import tempfile

import pytest

# Shared helper modules get pytest's assertion messages too.
pytest.register_assert_rewrite("vouchlib", "verifylib", "synclib",
                               "selfservicelib", "samba")

import vouchlib  # noqa: E402

# One Samba AD DC for the whole session, whichever module asks first: a
# fixture imported into several modules would be set up once per module.
from samba import samba_ad  # noqa: E402,F401

# A test that hangs longer than this fails instead of stalling the suite.
TEST_TIMEOUT = int(os.environ.get("VOUCH_TEST_TIMEOUT", "120"))


def pytest_configure(config):
    for binary in (vouchlib.vouchd_bin(), vouchlib.vouchctl_bin()):
        if not os.access(binary, os.X_OK):
            raise pytest.UsageError(
                "%s is missing: run make (or set VOUCH_BUILD)" % binary)


def _alarm_cb(signum, frame):
    raise TimeoutError("test ran longer than %d s" % TEST_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    old = signal.signal(signal.SIGALRM, _alarm_cb)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def workdir():
    """A base directory the postgres user can traverse."""
    base = tempfile.mkdtemp(prefix="vouch-it-")
    os.chmod(base, 0o755)
    yield base
    if os.environ.get("VOUCH_KEEP") is None:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(workdir):
    """The session's PostgreSQL cluster."""
    cluster = vouchlib.PgCluster(os.path.join(workdir, "pg"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def make_vouchd(pg, workdir):
    """Factory: make_vouchd(conf=None, start=True, db_url=None) -> Vouchd.

    Each gets a fresh database unless db_url is given; conf is merged
    over the base settings by section. All are stopped at teardown, which
    fails on an unclean exit or a sanitizer report.
    """
    started = []

    def make(conf=None, start=True, db_url=None):
        url = db_url or pg.create_database()
        v = vouchlib.Vouchd(workdir, url, conf)
        started.append(v)
        if start:
            v.start()
        return v

    yield make
    errors = []
    for v in started:
        try:
            v.finish()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.fixture(scope="session")
def vouchd(pg, workdir):
    """The vouchd most tests share."""
    v = vouchlib.Vouchd(workdir, pg.create_database())
    v.start()
    yield v
    v.finish()


@pytest.fixture
def msp_a(vouchd):
    """A fresh tenant on the shared server (admin key in .api)."""
    return vouchd.tenant("MSP A")


@pytest.fixture
def msp_b(vouchd):
    """A second fresh tenant on the shared server."""
    return vouchd.tenant("MSP B")


@pytest.fixture
def anon(vouchd):
    """A client of the shared server with no credential."""
    return vouchd.client()
