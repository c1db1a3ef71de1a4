"""Fixtures and helpers for the directory sync and alert tests.

The session's throwaway Samba AD domain controller (samba.py, through
ops/samba-ad) serves every test. Each test works in an organizational
unit of its own, so the customers it configures see only the users it
made. Users are made over LDAPS as the service account; expiry is
simulated by backdating pwdLastSet on the DC's sam.ldb, and lockouts
come from real failed binds. The benchmark (tests/bench/directory)
uses SambaDC on a DC of its own.

Test modules load this file as a plugin (pytest_plugins = ["verifylib",
"synclib"]); the push fakes and message sinks come from verifylib.
"""

import base64
import datetime
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

import verifylib
import vouchlib

from verifylib import wait_until
from vouchlib import assert_json, describe

SAMBA_AD = os.path.join(vouchlib.REPO, "ops", "samba-ad")
FILETIME_OFFSET = 11644473600           # seconds from 1601 to 1970
MAX_PWD_AGE_DAYS = 42                   # ops/samba-ad's domain policy
DAY = 86400
LDAP_PORTS = (389, 636, 3268, 3269)
LOCAL_OID = "local_oid:1.3.6.1.4.1.7165.4.3.12:0"

# The attributes vouch reads, for comparing with what it stored.
USER_ATTRS = ("userPrincipalName", "sAMAccountName", "displayName", "mail",
              "mobile", "objectGUID", "pwdLastSet",
              "msDS-UserPasswordExpiryTimeComputed",
              "msDS-User-Account-Control-Computed", "lockoutTime")


def filetime(unix_seconds):
    """Unix seconds as an AD FILETIME (100 ns ticks since 1601)."""
    return int((unix_seconds + FILETIME_OFFSET) * 10**7)


def unix_time(ft):
    return int(ft) / 10**7 - FILETIME_OFFSET


def unicode_pwd(password):
    """The base64 unicodePwd value of a password."""
    return base64.b64encode(('"%s"' % password).encode("utf-16-le")).decode()


def new_password():
    return "Pw-%s-x9Z" % os.urandom(5).hex()


def address_free(addr):
    """True when nothing answers on the address's LDAP ports."""
    for port in LDAP_PORTS:
        with socket.socket() as s:
            s.settimeout(0.5)
            try:
                s.connect((addr, port))
                return False
            except OSError:
                pass
    return True


def pick_address():
    """A loopback address with no directory on it (VOUCH_SAMBA_ADDR wins)."""
    if os.environ.get("VOUCH_SAMBA_ADDR"):
        return os.environ["VOUCH_SAMBA_ADDR"]
    for last in range(40, 100):
        addr = "127.0.0.%d" % last
        if address_free(addr):
            return addr
    raise AssertionError("no free loopback address for a Samba DC")


def parse_ldif(text):
    """ldapsearch -LLL output as a list of {attr: [values]} with "dn";
    base64 values are decoded to bytes."""
    entries = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            if value.startswith(":"):
                value = base64.b64decode(value[1:].strip())
            else:
                value = value.strip()
            if name == "dn":
                entry["dn"] = value
            else:
                entry.setdefault(name, []).append(value)
        if "dn" in entry:
            entries.append(entry)
    return entries


class DirUser:
    """A user the test made in the DC."""

    def __init__(self, dc, dn, sam, upn, password, display_name, mail,
                 mobile):
        self.dc = dc
        self.dn = dn
        self.sam = sam
        self.upn = upn
        self.password = password
        self.display_name = display_name
        self.mail = mail
        self.mobile = mobile
        self.guid = dc.guid(dn)

    def attrs(self):
        return self.dc.read(self.dn)


class SambaDC:
    """A domain controller run by ops/samba-ad in a directory of its own."""

    def __init__(self, directory, addr=None):
        self.dir = directory
        self.addr = addr or pick_address()
        self.env = {}
        self.serial = 0
        self.lock = threading.Lock()

    # --- life ---------------------------------------------------------

    def start(self):
        if shutil.which("samba") is None or \
                shutil.which("ldbmodify") is None:
            r = subprocess.run([SAMBA_AD, "install"], capture_output=True,
                               text=True, timeout=900)
            assert r.returncode == 0, "ops/samba-ad install failed:\n%s%s" \
                % (r.stdout, r.stderr)
        r = subprocess.run([SAMBA_AD, "start", self.dir, self.addr],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, "ops/samba-ad start failed:\n%s%s" % (
            r.stdout, r.stderr)
        env = {}
        for line in r.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                env[k] = v
        return self.use(env)

    def use(self, env):
        """Take the settings ops/samba-ad printed (AD_URL=... lines)."""
        self.env = dict(env)
        self.url = self.env["AD_URL"]
        self.base_dn = self.env["AD_BASE_DN"]
        self.bind_dn = self.env["AD_BIND_DN"]
        self.bind_password = self.env["AD_BIND_PASSWORD"]
        self.ca_file = self.env["AD_CA_FILE"]
        self.sam_ldb = self.env["AD_SAM_LDB"]
        self.smb_conf = self.env["AD_SMB_CONF"]
        self.realm = self.env["AD_REALM"].lower()
        return self

    def stop(self):
        subprocess.run([SAMBA_AD, "stop", self.dir], capture_output=True,
                       text=True, timeout=60)

    # --- LDAP and ldb tools -----------------------------------------------

    def tool_env(self):
        env = dict(os.environ)
        env["LDAPTLS_CACERT"] = self.ca_file
        env["LDAPTLS_REQCERT"] = "hard"
        return env

    def run(self, cmd, stdin=None, check=True, timeout=60):
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                           timeout=timeout, env=self.tool_env())
        if check:
            assert r.returncode == 0, "%s failed (%d):\n%s%s" % (
                " ".join(cmd[:2]), r.returncode, r.stdout, r.stderr)
        return r

    def ldapmodify(self, ldif):
        """Apply an LDIF (with changetype lines) as the service account."""
        return self.run(["ldapmodify", "-x", "-H", self.url, "-D",
                         self.bind_dn, "-w", self.bind_password], ldif)

    def search(self, base, filt="(objectClass=*)", attrs=(), scope="sub"):
        r = self.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no",
                      "-H", self.url, "-D", self.bind_dn, "-w",
                      self.bind_password, "-b", base, "-s", scope, filt]
                     + list(attrs))
        return parse_ldif(r.stdout)

    def read(self, dn):
        """The attributes vouch reads of one entry, first values only."""
        entries = self.search(dn, attrs=USER_ATTRS, scope="base")
        assert len(entries) == 1, entries
        return {k: (v[0] if k != "dn" else v)
                for k, v in entries[0].items()}

    def guid(self, dn):
        raw = self.read(dn)["objectGUID"]
        return str(uuid.UUID(bytes_le=raw))

    def ldbmodify(self, ldif):
        """Modify sam.ldb directly (what LDAP refuses, like pwdLastSet)."""
        return self.run(["ldbmodify", "-H", self.sam_ldb,
                         "--controls=" + LOCAL_OID], ldif)

    # --- test data --------------------------------------------------------

    def name(self, prefix):
        with self.lock:
            self.serial += 1
            return "%s%d%s" % (prefix, self.serial, os.urandom(2).hex())

    def new_ou(self):
        """A fresh organizational unit; returns its DN."""
        dn = "OU=%s,%s" % (self.name("t"), self.base_dn)
        self.ldapmodify("dn: %s\nchangetype: add\n"
                        "objectClass: organizationalUnit\n" % dn)
        return dn

    def add_user(self, ou, display_name=None, mail=None, mobile=None,
                 password=None, sam=None):
        """Create an enabled user in ou; returns a DirUser."""
        sam = sam or self.name("u")
        upn = "%s@%s" % (sam, self.realm)
        password = password or new_password()
        dn = "CN=%s,%s" % (sam, ou)
        lines = ["dn: " + dn, "changetype: add", "objectClass: user",
                 "sAMAccountName: " + sam, "userPrincipalName: " + upn,
                 "unicodePwd:: " + unicode_pwd(password),
                 "userAccountControl: 512"]
        if display_name:
            lines.append("displayName: " + display_name)
        if mail:
            lines.append("mail: " + mail)
        if mobile:
            lines.append("mobile: " + mobile)
        self.ldapmodify("\n".join(lines) + "\n")
        return DirUser(self, dn, sam, upn, password, display_name, mail,
                       mobile)

    def modify(self, dn, **attrs):
        """Replace attributes over LDAP (None deletes one)."""
        lines = ["dn: " + dn, "changetype: modify"]
        for k, v in attrs.items():
            if v is None:
                lines += ["delete: " + k, "-"]
            else:
                lines += ["replace: " + k, "%s: %s" % (k, v), "-"]
        self.ldapmodify("\n".join(lines) + "\n")

    def rename(self, user, surname, display_name, new_sam):
        """Rename with samba-tool: new CN, display name, account name and
        UPN; returns the new DN and UPN."""
        upn = "%s@%s" % (new_sam, self.realm)
        self.run(["samba-tool", "user", "rename", user.sam,
                  "--surname=" + surname, "--display-name=" + display_name,
                  "--force-new-cn=" + new_sam, "--samaccountname=" + new_sam,
                  "--upn=" + upn, "-s", self.smb_conf], timeout=120)
        entries = self.search(self.base_dn, "(sAMAccountName=%s)" % new_sam,
                              ["userPrincipalName"])
        assert len(entries) == 1, entries
        user.dn = entries[0]["dn"]
        user.sam = new_sam
        user.upn = upn
        user.display_name = display_name
        return user

    def set_pwd_last_set(self, user, unix_seconds):
        """Backdate (or move) a user's pwdLastSet on sam.ldb."""
        self.ldbmodify("dn: %s\nchangetype: modify\nreplace: pwdLastSet\n"
                       "pwdLastSet: %d\n" % (user.dn,
                                             filetime(unix_seconds)))

    def expire_in(self, user, seconds):
        """Make the user's password expire this many seconds from now."""
        self.set_pwd_last_set(user, time.time() + seconds
                              - MAX_PWD_AGE_DAYS * DAY)

    def bind(self, login, password):
        """One simple bind over LDAPS; returns the ldapsearch result."""
        return self.run(["ldapsearch", "-x", "-LLL", "-H", self.url, "-D",
                         login, "-w", password, "-b", "", "-s", "base",
                         "dnsHostName"], check=False)

    def bad_binds(self, user, count=3):
        """Fail count binds with a wrong password (AD 52e each time)."""
        for _ in range(count):
            r = self.bind(user.upn, "Wrong-" + os.urandom(4).hex())
            assert r.returncode == 49, "bind with a wrong password: %d %s" \
                % (r.returncode, r.stderr)

    def locked(self, user):
        return int(user.attrs().get(
            "msDS-User-Account-Control-Computed", "0")) & 16 != 0


@pytest.fixture(scope="session")
def dc(request):
    """The session's Samba AD domain controller: samba.py's, shared with
    the directory module's tests. VOUCH_SAMBA_DIR names a DC directory
    to use instead (started if needed, left running), which saves the
    provisioning when running these tests again and again."""
    keep = os.environ.get("VOUCH_SAMBA_DIR")
    if not keep:
        ad = request.getfixturevalue("samba_ad")
        yield SambaDC(ad.dir, ad.addr).use(ad.env)
        return
    addr = None
    if os.path.exists(os.path.join(keep, "addr")):
        with open(os.path.join(keep, "addr")) as f:
            addr = f.read().strip()
    yield SambaDC(keep, addr).start()


# --- vouch's side ------------------------------------------------------------

def parse_time(s):
    return vouchlib.parse_time(s)


class Directory:
    """A tenant's customer with a directory on an OU of the session's DC,
    and helpers for its settings, syncs and alerts."""

    def __init__(self, server, dc, tenant=None, world=None):
        self.server = server
        self.dc = dc
        self.world = world or verifylib.World(server, tenant)
        self.tenant = self.world.tenant
        self.api = self.world.api
        self.customer = self.world.customer
        self.cid = self.customer["id"]
        self.ou = dc.new_ou()

    def path(self, suffix=""):
        return "/v1/customers/%s/directory%s" % (self.cid, suffix)

    def body(self, **override):
        b = {"kind": "active_directory", "url": self.dc.url,
             "bind_dn": self.dc.bind_dn,
             "bind_password": self.dc.bind_password, "base_dn": self.ou,
             "ca_file": self.dc.ca_file}
        b.update(override)
        return {k: v for k, v in b.items() if v is not None}

    def put(self, api=None, **override):
        return (api or self.api).put(self.path(), json=self.body(**override))

    def configure(self, **override):
        """PUT the directory; returns the body."""
        return assert_json(self.put(**override), 200)

    def get(self, api=None):
        r = (api or self.api).get(self.path())
        return assert_json(r, 200)

    def test(self, api=None):
        r = (api or self.api).post(self.path("/test"))
        return assert_json(r, 200)

    def request_sync(self, api=None):
        r = (api or self.api).post(self.path("/sync"))
        assert r.status_code == 202, describe(r)
        return r

    def wait_synced(self, after=None, timeout=30, api=None):
        """Wait until last_sync_at is set (and later than after, a
        datetime); returns the directory."""
        def check():
            d = self.get(api)
            if d.get("last_sync_at") is None:
                return None
            if after is not None and parse_time(d["last_sync_at"]) <= after:
                return None
            return d
        return wait_until(check, timeout, "a sync of customer %s" % self.cid,
                          interval=0.1)

    def sync(self, timeout=30, api=None):
        """Ask for a sync and wait for it to be applied."""
        before = datetime.datetime.now(datetime.timezone.utc)
        self.request_sync(api)
        return self.wait_synced(before, timeout, api)

    def policy(self, **body):
        r = self.api.put("/v1/customers/%s/alert-policy" % self.cid,
                         json=body)
        return assert_json(r, 200)

    def users(self):
        """The customer's users that came from the directory, by guid."""
        items = self.api.list_all("/v1/users",
                                  params={"customer_id": self.cid},
                                  limit=500)
        return {u["directory"]["guid"]: u for u in items
                if u.get("directory")}

    def user(self, dir_user):
        users = self.users()
        assert dir_user.guid in users, "user %s (%s) not synced: %s" % (
            dir_user.upn, dir_user.guid, sorted(users))
        return users[dir_user.guid]

    def add_user(self, **kw):
        return self.dc.add_user(self.ou, **kw)

    def events(self, **params):
        return self.tenant.events(**params)

    def alerts(self, user_id):
        """The alert.sent events of one vouch user."""
        return [e for e in self.events(type="alert.sent", user_id=user_id)
                if e["subject"]["id"] == user_id]

    def device(self, user, platform="ios"):
        return self.world.device(user, platform=platform)


@pytest.fixture
def directory(vserver, dc):
    """A fresh tenant and customer on the shared server, with an OU."""
    return Directory(vserver, dc)


class SilentListener:
    """A TCP listener that accepts and never answers (a hung directory);
    counts the connections it saw."""

    def __init__(self, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def free_port():
        """A loopback port with nothing listening a moment ago."""
        return vouchlib.free_port()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()
