#!/usr/bin/python3
"""A Twilio-compatible SMS API for the tests, over HTTPS (HTTP/1.1).

POST /2010-04-01/Accounts/{sid}/Messages.json with HTTP basic auth
sid:token and a form (To, From, Body) answers 201 and a message resource,
or Twilio's error shape {"code", "message", "more_info", "status"}: 401
code 20003 for bad credentials, 404 code 20404 for another account or
path, 405 for another method, 400 with 21604/21603/21602 for a missing
To/From/Body, 21211 for a To that is not E.164, 21212 for a bad From and
21617 for a Body over 1600 characters.

Every request is appended to --record as one JSON object: {"n", "method",
"path", "to", "from", "body", "status", "code", "sid"}. It prints
"ready PORT" once listening and exits 0 on SIGTERM.

--plan FILE (re-read on SIGHUP) holds {"rules": [...]}; the first rule
matching a request applies. Match on {"to": "+1..."} (the To field),
{"every": N} (every Nth request) or {"nth": N} (only the Nth); requests
are counted from 1 in arrival order. Actions: "status" and "code" (and
"message") to answer that error after authentication, "retry_after"
(seconds, sent as Retry-After), "delay_ms" to wait before answering,
"close": true to drop the connection without an answer.
"""

import argparse
import base64
import binascii
import http.server
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse

MAX_BODY = 64 * 1024
BODY_MAX_CHARS = 1600
PATH_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
E164_RE = re.compile(r"^\+[1-9][0-9]{7,14}$")
ALNUM_SENDER_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")

ERROR_TEXT = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource %s was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number %s is not a valid phone number.",
    21212: "The 'From' number %s is not a valid phone number, shortcode, "
           "or alphanumeric sender ID.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


class State:
    """What the handler threads share: options, plan, counter, record."""

    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.Lock()
        self.count = 0
        self.rules = []
        self.record = open(opts.record, "a", encoding="utf-8") \
            if opts.record else None
        self.load_plan()

    def load_plan(self):
        rules = []
        if self.opts.plan:
            with open(self.opts.plan, encoding="utf-8") as f:
                rules = json.load(f).get("rules", [])
        with self.lock:
            self.rules = rules

    def next_request(self):
        with self.lock:
            self.count += 1
            return self.count

    def rule_for(self, n, to):
        with self.lock:
            rules = list(self.rules)
        for rule in rules:
            if "to" in rule and rule["to"] == to:
                return rule
            if "every" in rule and rule["every"] > 0 and \
                    n % rule["every"] == 0:
                return rule
            if "nth" in rule and rule["nth"] == n:
                return rule
        return None

    def write(self, obj):
        if self.record is None:
            return
        with self.lock:
            self.record.write(json.dumps(obj) + "\n")
            self.record.flush()


def twilio_error(status, code, *args, message=None):
    text = message or ERROR_TEXT.get(code, "Error")
    if args and "%s" in text:
        text = text % args
    return status, {
        "code": code, "message": text,
        "more_info": "https://www.twilio.com/docs/errors/%d" % code,
        "status": status,
    }


def rfc2822_now():
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-sms/1"
    sys_version = ""
    timeout = 60

    def setup(self):
        self.request.settimeout(self.timeout)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.request.close()
            raise
        super().setup()

    def log_message(self, fmt, *args):
        pass

    @property
    def state(self):
        return self.server.state

    # --- reading ----------------------------------------------------------

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return None
        length = int(length)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def credentials_ok(self, sid):
        auth = self.headers.get("Authorization", "")
        scheme, _, blob = auth.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(
                blob, validate=True).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return False
        opts = self.state.opts
        return (secrets.compare_digest(user, opts.sid)
                and secrets.compare_digest(password, opts.token)
                and sid == opts.sid)

    @staticmethod
    def form_fields(ctype, raw):
        if raw is None or not ctype.lower().startswith(
                "application/x-www-form-urlencoded"):
            return {}
        try:
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8"),
                                           keep_blank_values=True,
                                           strict_parsing=False)
        except UnicodeDecodeError:
            return {}
        fields = {}
        for key, value in pairs:
            fields.setdefault(key, value)
        return fields

    # --- answering --------------------------------------------------------

    def answer(self, status, obj, retry_after=None, auth_challenge=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if auth_challenge:
            self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def validate(self, fields):
        to, sender, text = (fields.get("To"), fields.get("From"),
                            fields.get("Body"))
        if not to:
            return twilio_error(400, 21604)
        if not sender:
            return twilio_error(400, 21603)
        if not text:
            return twilio_error(400, 21602)
        if not E164_RE.match(to):
            return twilio_error(400, 21211, to)
        if not (E164_RE.match(sender) or ALNUM_SENDER_RE.match(sender)):
            return twilio_error(400, 21212, sender)
        if len(text) > BODY_MAX_CHARS:
            return twilio_error(400, 21617)
        return None

    def created(self, sid, fields):
        msg_sid = "SM" + secrets.token_hex(16)
        now = rfc2822_now()
        text = fields["Body"]
        return 201, {
            "sid": msg_sid, "account_sid": sid, "to": fields["To"],
            "from": fields["From"], "body": text, "status": "queued",
            "num_segments": str(max(1, (len(text) + 152) // 153)),
            "num_media": "0", "direction": "outbound-api",
            "api_version": "2010-04-01", "date_created": now,
            "date_updated": now, "date_sent": None, "price": None,
            "price_unit": "USD", "error_code": None, "error_message": None,
            "messaging_service_sid": None,
            "uri": "/2010-04-01/Accounts/%s/Messages/%s.json" % (
                sid, msg_sid),
            "subresource_uris": {"media": "/2010-04-01/Accounts/%s/Messages/"
                                 "%s/Media.json" % (sid, msg_sid)},
        }

    def handle_messages(self, n, sid, fields):
        """Returns (status, body, retry_after) or None to drop the line."""
        if not self.credentials_ok(sid):
            status, body = twilio_error(401, 20003)
            return status, body, None, True
        rule = self.state.rule_for(n, fields.get("To"))
        retry_after = None
        if rule is not None:
            if rule.get("delay_ms"):
                time.sleep(rule["delay_ms"] / 1000.0)
            if rule.get("close"):
                return None
            retry_after = rule.get("retry_after")
            if "status" in rule:
                status, body = twilio_error(
                    rule["status"], rule.get("code", rule["status"]),
                    message=rule.get("message"))
                return status, body, retry_after, False
        err = self.validate(fields)
        if err is not None:
            return err[0], err[1], retry_after, False
        status, body = self.created(sid, fields)
        return status, body, retry_after, False

    def do_POST(self):
        raw = self.read_body()
        n = self.state.next_request()
        path = urllib.parse.urlsplit(self.path).path
        m = PATH_RE.match(path)
        fields = self.form_fields(self.headers.get("Content-Type", ""), raw)
        if raw is None:
            result = twilio_error(400, 20001, message="Request body is "
                                  "missing or too large") + (None, False)
            self.close_connection = True
        elif m is None or m.group(1) != self.state.opts.sid:
            result = twilio_error(404, 20404, path) + (None, False)
        else:
            result = self.handle_messages(n, m.group(1), fields)
        self.finish_request(n, path, fields, result)

    def finish_request(self, n, path, fields, result):
        record = {"n": n, "method": self.command, "path": path,
                  "to": fields.get("To"), "from": fields.get("From"),
                  "body": fields.get("Body")}
        if result is None:
            record.update(status=None, code=None, sid=None, action="close")
            self.state.write(record)
            self.close_connection = True
            return
        status, body, retry_after, challenge = result
        record.update(status=status, code=body.get("code"),
                      sid=body.get("sid") if status == 201 else None)
        self.state.write(record)
        self.answer(status, body, retry_after, challenge)

    def other_method(self):
        n = self.state.next_request()
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        path = urllib.parse.urlsplit(self.path).path
        if PATH_RE.match(path):
            result = twilio_error(405, 20004) + (None, False)
        else:
            result = twilio_error(404, 20404, path) + (None, False)
        self.finish_request(n, path, {}, result)

    do_GET = do_PUT = do_DELETE = do_PATCH = other_method


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state, ctx):
        super().__init__(addr, Handler)
        self.state = state
        self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                      do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        # A client that gives up during the handshake is not our failure.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--sid", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--plan")
    p.add_argument("--record")
    opts = p.parse_args(argv)
    host, _, port = opts.listen.rpartition(":")
    opts.listen = (host, int(port))
    return opts


def main(argv):
    opts = parse_args(argv)
    state = State(opts)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts.cert, opts.key)
    ctx.set_alpn_protocols(["http/1.1"])
    server = Server(opts.listen, state, ctx)

    def stop(signum, frame):
        with state.lock:
            sys.stdout.flush()
            os._exit(0)

    def reload(signum, frame):
        threading.Thread(target=state.load_plan, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    print("ready %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
