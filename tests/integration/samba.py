"""A throwaway Samba AD domain controller for the integration tests.

SambaAD starts and stops a DC through ops/samba-ad, in a directory of its
own and on a loopback address no other DC answers on, and offers what a
test needs to shape the directory: users made with samba-tool, many users
at once through ldbadd, reads with ldbsearch and edits with ldbmodify.

The session-scoped `samba_ad` fixture gives one DC to a whole session;
import it into a test module (`from samba import samba_ad`) to use it.
"""

import base64
import os
import socket
import subprocess

import pytest

import vouchlib

SAMBA_AD = os.path.join(vouchlib.REPO, "ops", "samba-ad")
REALM = "adtest.test"
BASE_DN = "DC=adtest,DC=test"
USERS_DN = "CN=Users," + BASE_DN
LDAP_PORTS = (389, 636, 3268, 3269)

# ldbmodify may set attributes LDAP refuses (pwdLastSet in the past).
PROVISION_CONTROL = "local_oid:1.3.6.1.4.1.7165.4.3.12:0"

# A DC left behind by a crashed session stops by itself after this.
MAX_RUNTIME = 3600

# The DC's files belong to root (ops/samba-ad runs samba as root).
AS_ROOT = [] if os.geteuid() == 0 else ["sudo", "-n"]


def address_free(addr):
    """True when nothing answers on addr's LDAP ports."""
    for port in LDAP_PORTS:
        with socket.socket() as s:
            s.settimeout(1)
            try:
                s.connect((addr, port))
                return False
            except OSError:
                pass
    return True


def free_loopback_address(first=2):
    """A loopback address (127.0.0.N) with no LDAP server on it."""
    for n in range(first, 250):
        addr = "127.0.0.%d" % n
        if address_free(addr):
            return addr
    raise RuntimeError("no free loopback address for a Samba DC")


def filetime(unix_seconds):
    """Unix seconds as an AD FILETIME (100 ns ticks since 1601)."""
    return (int(unix_seconds) + 11644473600) * 10 ** 7


def parse_ldif(text):
    """Entries of ldbsearch output as dicts of attribute -> [values]."""
    entries, cur, last = [], None, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(" ") and cur is not None and last is not None:
            cur[last][-1] += line[1:]
            continue
        if not line.strip():
            cur, last = None, None
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if value.startswith(":"):
            value = base64.b64decode(value[1:].strip()).decode(
                "utf-8", "replace")
        else:
            value = value.strip()
        if cur is None:
            cur = {}
            entries.append(cur)
        cur.setdefault(name, []).append(value)
        last = name
    return entries


class SambaAD:
    """One DC run by ops/samba-ad in a directory of its own."""

    def __init__(self, directory, addr=None):
        self.dir = directory
        self.addr = addr
        self.env = {}

    def _run(self, args, timeout=120, input_text=None, env=None):
        e = dict(os.environ)
        e.update(env or {})
        r = subprocess.run(args, capture_output=True, text=True,
                           timeout=timeout, input=input_text, env=e)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s%s"
                               % (" ".join(args[:3]), r.returncode,
                                  r.stdout[-3000:], r.stderr[-3000:]))
        return r.stdout

    def install(self):
        """Install the Samba packages (quick when present)."""
        self._run([SAMBA_AD, "install"], timeout=900)

    def start(self):
        """Provision if needed, start, and read the settings."""
        if self.addr is None:
            self.addr = free_loopback_address()
        out = self._run([SAMBA_AD, "start", self.dir, self.addr],
                        timeout=180,
                        env={"SAMBA_AD_MAX_RUNTIME": str(MAX_RUNTIME)})
        self.env = {}
        for line in out.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("AD_"):
                self.env[name] = value
        if "AD_URL" not in self.env:
            raise RuntimeError("ops/samba-ad start printed no AD_URL:\n"
                               + out)
        return self.env

    def stop(self):
        subprocess.run([SAMBA_AD, "stop", self.dir], capture_output=True,
                       text=True, timeout=60)

    def running(self):
        return subprocess.run([SAMBA_AD, "status", self.dir],
                              capture_output=True, timeout=30
                              ).returncode == 0

    @property
    def settings(self):
        """The environment the directory driver reads its settings from."""
        return {k: self.env[k] for k in ("AD_URL", "AD_BIND_DN",
                                         "AD_BIND_PASSWORD", "AD_BASE_DN",
                                         "AD_CA_FILE")}

    @property
    def tls_dir(self):
        return os.path.join(self.dir, "tls")

    # --- shaping the directory ---------------------------------------------

    def samba_tool(self, *args, timeout=120):
        return self._run(AS_ROOT + ["samba-tool"] + list(args)
                         + ["-s", self.env["AD_SMB_CONF"]], timeout=timeout)

    def create_user(self, name, password, mail=None, phone=None,
                    must_change=False):
        """Create CN=name,CN=Users with samba-tool; returns the UPN."""
        args = ["user", "create", name, password, "--use-username-as-cn"]
        if mail:
            args.append("--mail-address=" + mail)
        if phone:
            args.append("--telephone-number=" + phone)
        if must_change:
            args.append("--must-change-at-next-login")
        self.samba_tool(*args)
        return "%s@%s" % (name, REALM)

    def user_dn(self, name):
        return "CN=%s,%s" % (name, USERS_DN)

    def add_users(self, prefix, count):
        """Add count users at once with ldbadd; returns their UPNs."""
        ldif, logins = [], []
        for i in range(count):
            name = "%s%05d" % (prefix, i)
            logins.append("%s@%s" % (name, REALM))
            ldif.append("dn: %s\nobjectClass: user\nsAMAccountName: %s\n"
                        "userPrincipalName: %s@%s\ndisplayName: %s %d\n"
                        "mail: %s@example.com\n"
                        % (self.user_dn(name), name, name, REALM, prefix,
                           i, name))
        self._run(AS_ROOT + ["ldbadd", "--nosync", "-H",
                             self.env["AD_SAM_LDB"]],
                  input_text="\n".join(ldif), timeout=600)
        return logins

    def modify(self, dn, changes, control=None):
        """Apply {attr: value} replacements to dn with ldbmodify."""
        ldif = "dn: %s\nchangetype: modify\n" % dn
        for attr, value in changes.items():
            ldif += "replace: %s\n%s: %s\n-\n" % (attr, attr, value)
        args = AS_ROOT + ["ldbmodify", "-H", self.env["AD_SAM_LDB"]]
        if control:
            args.append("--controls=" + control)
        self._run(args, input_text=ldif)

    def set_pwd_last_set(self, name, unix_seconds):
        """Backdate a user's pwdLastSet (LDAP only accepts 0 and -1)."""
        self.modify(self.user_dn(name),
                    {"pwdLastSet": filetime(unix_seconds)},
                    control=PROVISION_CONTROL)

    def entry(self, dn, *attrs):
        """The attributes of one entry, read from the database."""
        out = self._run(AS_ROOT + ["ldbsearch", "-H",
                                   self.env["AD_SAM_LDB"], "-b", dn,
                                   "-s", "base"] + list(attrs))
        entries = parse_ldif(out)
        if len(entries) != 1:
            raise RuntimeError("%s: %d entries" % (dn, len(entries)))
        return entries[0]


@pytest.fixture(scope="session")
def samba_ad(workdir):
    """One Samba AD DC for the session, stopped at its end."""
    dc = SambaAD(os.path.join(workdir, "samba-ad"))
    dc.install()
    dc.start()
    yield dc
    dc.stop()
