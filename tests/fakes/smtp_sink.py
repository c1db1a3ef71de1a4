#!/usr/bin/python3
"""A real, small SMTP server for the tests: it accepts mail and records it.

It speaks EHLO/HELO, STARTTLS (advertised when it has a certificate),
AUTH PLAIN and LOGIN (when --user and --password are given), MAIL, RCPT,
DATA, RSET, NOOP, VRFY and QUIT, undoes dot-stuffing, and appends one JSON
object per accepted message to --record: {"ev": "message", "from", "to"
(a list), "data" (the whole message), "tls", "auth"}. With
--record-connects it also writes {"ev": "connect", "tls"} per connection.
It prints "ready PORT" once listening and exits 0 on SIGTERM.

Faults: --fail-rcpt ADDR:CODE answers RCPT for ADDR with CODE (repeatable),
--fail-data CODE answers the end of DATA with CODE, --data-delay-ms N
waits before that answer, --greeting-delay-ms N waits before the greeting,
--require-starttls refuses MAIL before STARTTLS, --implicit-tls starts TLS
at once (smtps).
"""

import argparse
import base64
import binascii
import json
import os
import signal
import socketserver
import ssl
import sys
import threading
import time

MAX_LINE = 4096
MAX_MESSAGE = 10 * 1024 * 1024
MAX_RCPT = 100
HOSTNAME = "sink.test"


class Recorder:
    """Append-only NDJSON file shared by the connection threads."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, obj):
        if self.file is None:
            return
        with self.lock:
            self.file.write(json.dumps(obj) + "\n")
            self.file.flush()


class Closed(Exception):
    """The client went away or broke the protocol beyond repair."""


class Session:
    """One SMTP connection, from greeting to QUIT."""

    def __init__(self, opts, recorder, sock, tls):
        self.opts = opts
        self.recorder = recorder
        self.sock = sock
        self.tls = tls
        self.buf = b""
        self.greeted = False
        self.user = None
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    # --- wire -------------------------------------------------------------

    def reply(self, code, *lines):
        lines = lines or ("",)
        out = b""
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += ("%d%s%s\r\n" % (code, sep, text)).encode()
        try:
            self.sock.sendall(out)
        except OSError as e:
            raise Closed() from e

    def read_line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                self.reply(500, "5.5.2 line too long")
                raise Closed()
            try:
                chunk = self.sock.recv(65536)
            except (OSError, ssl.SSLError) as e:
                raise Closed() from e
            if not chunk:
                raise Closed()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line[:-1] if line.endswith(b"\r") else line

    # --- commands ---------------------------------------------------------

    def offers_starttls(self):
        return (self.opts.tls_cert is not None and not self.tls
                and not self.opts.implicit_tls)

    def offers_auth(self):
        # Like most servers, no AUTH in clear text when TLS is available.
        return self.opts.user is not None and (
            self.tls or self.opts.tls_cert is None)

    def cmd_ehlo(self, arg):
        if not arg:
            return self.reply(501, "5.5.4 EHLO needs a domain")
        self.greeted = True
        self.reset()
        ext = ["%s greets %s" % (HOSTNAME, arg), "8BITMIME",
               "SIZE %d" % MAX_MESSAGE, "ENHANCEDSTATUSCODES"]
        if self.offers_starttls():
            ext.append("STARTTLS")
        if self.offers_auth():
            ext.append("AUTH PLAIN LOGIN")
        self.reply(250, *ext)

    def cmd_helo(self, arg):
        if not arg:
            return self.reply(501, "5.5.4 HELO needs a domain")
        self.greeted = True
        self.reset()
        self.reply(250, HOSTNAME)

    def cmd_starttls(self, arg):
        if not self.offers_starttls():
            return self.reply(502, "5.5.1 STARTTLS not offered")
        if arg:
            return self.reply(501, "5.5.4 no arguments allowed")
        self.reply(220, "2.0.0 ready to start TLS")
        # Anything the client sent after STARTTLS in clear text is dropped.
        self.buf = b""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.opts.tls_cert, self.opts.tls_key)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raise Closed() from e
        self.tls = True
        self.greeted = False
        self.user = None
        self.reset()

    def check_plain(self, blob):
        try:
            parts = base64.b64decode(blob, validate=True).split(b"\0")
        except (binascii.Error, ValueError):
            return None
        if len(parts) != 3:
            return None
        return self.check_login(parts[1], parts[2])

    def check_login(self, user, password):
        if (user == self.opts.user.encode()
                and password == self.opts.password.encode()):
            return user.decode()
        return None

    def read_auth_line(self):
        line = self.read_line().decode("ascii", "replace")
        if line == "*":
            self.reply(501, "5.0.0 authentication cancelled")
            return None
        return line

    def read_b64(self, prompt):
        self.reply(334, prompt)
        line = self.read_auth_line()
        if line is None:
            return None
        try:
            return base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return b"\xff"

    def cmd_auth(self, arg):
        if not self.offers_auth():
            return self.reply(503, "5.5.1 AUTH not offered")
        if self.user is not None:
            return self.reply(503, "5.5.1 already authenticated")
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if not initial:
                self.reply(334, "")
                initial = self.read_auth_line()
                if initial is None:
                    return
            user = self.check_plain(initial)
        elif mech == "LOGIN":
            name = (base64.b64decode(initial) if initial
                    else self.read_b64("VXNlcm5hbWU6"))
            if name is None:
                return
            password = self.read_b64("UGFzc3dvcmQ6")
            if password is None:
                return
            user = self.check_login(name, password)
        else:
            return self.reply(504, "5.5.4 mechanism not supported")
        if user is None:
            return self.reply(535, "5.7.8 authentication credentials invalid")
        self.user = user
        self.reply(235, "2.7.0 authentication successful")

    @staticmethod
    def path_arg(arg, keyword):
        """The address in 'FROM:<a@b> PARAMS', or None when malformed."""
        if not arg.upper().startswith(keyword + ":"):
            return None
        rest = arg[len(keyword) + 1:].strip()
        if not rest.startswith("<") or ">" not in rest:
            return None
        return rest[1:rest.index(">")]

    def cmd_mail(self, arg):
        if not self.greeted:
            return self.reply(503, "5.5.1 say EHLO first")
        if self.opts.require_starttls and not self.tls:
            return self.reply(530, "5.7.0 must issue a STARTTLS command first")
        if self.opts.user is not None and self.user is None:
            return self.reply(530, "5.7.0 authentication required")
        if self.mail_from is not None:
            return self.reply(503, "5.5.1 nested MAIL command")
        addr = self.path_arg(arg, "FROM")
        if addr is None:
            return self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
        self.mail_from = addr
        self.reply(250, "2.1.0 ok")

    def cmd_rcpt(self, arg):
        if self.mail_from is None:
            return self.reply(503, "5.5.1 need MAIL first")
        addr = self.path_arg(arg, "TO")
        if addr is None or not addr:
            return self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
        if len(self.rcpts) >= MAX_RCPT:
            return self.reply(452, "4.5.3 too many recipients")
        code = self.opts.fail_rcpt.get(addr.lower())
        if code is not None:
            status = "5.1.1" if code >= 500 else "4.2.1"
            return self.reply(code, "%s <%s> refused" % (status, addr))
        self.rcpts.append(addr)
        self.reply(250, "2.1.5 ok")

    def read_data(self):
        lines, size = [], 0
        while True:
            line = self.read_line()
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line) + 2
            if size <= MAX_MESSAGE:
                lines.append(line)
        if size > MAX_MESSAGE:
            return None
        return b"".join(x + b"\r\n" for x in lines)

    def cmd_data(self, arg):
        if self.mail_from is None or not self.rcpts:
            return self.reply(503, "5.5.1 need MAIL and RCPT first")
        self.reply(354, "end data with <CR><LF>.<CR><LF>")
        data = self.read_data()
        if self.opts.data_delay_ms:
            time.sleep(self.opts.data_delay_ms / 1000.0)
        if data is None:
            self.reset()
            return self.reply(552, "5.3.4 message too big")
        if self.opts.fail_data:
            code = self.opts.fail_data
            self.reset()
            return self.reply(code, "%s message refused" % (
                "5.6.0" if code >= 500 else "4.3.0"))
        self.recorder.write({
            "ev": "message", "from": self.mail_from, "to": self.rcpts,
            "data": data.decode("utf-8", "replace"), "tls": self.tls,
            "auth": self.user})
        self.reset()
        self.reply(250, "2.0.0 ok: queued")

    def run(self):
        if self.opts.greeting_delay_ms:
            time.sleep(self.opts.greeting_delay_ms / 1000.0)
        self.reply(220, "%s ESMTP sink" % HOSTNAME)
        handlers = {
            "EHLO": self.cmd_ehlo, "HELO": self.cmd_helo,
            "STARTTLS": self.cmd_starttls, "AUTH": self.cmd_auth,
            "MAIL": self.cmd_mail, "RCPT": self.cmd_rcpt,
            "DATA": self.cmd_data,
        }
        while True:
            line = self.read_line().decode("utf-8", "replace")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self.reply(221, "2.0.0 bye")
                return
            if verb == "RSET":
                self.reset()
                self.reply(250, "2.0.0 ok")
            elif verb == "NOOP":
                self.reply(250, "2.0.0 ok")
            elif verb == "VRFY":
                self.reply(252, "2.5.0 cannot verify")
            elif verb in handlers:
                handlers[verb](arg.strip())
            else:
                self.reply(502, "5.5.2 command not recognised")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, opts, recorder):
        self.opts = opts
        self.recorder = recorder
        super().__init__(addr, Handler)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        opts, sock = self.server.opts, self.request
        sock.settimeout(60)
        tls = False
        if opts.implicit_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
            try:
                sock = ctx.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                if opts.record_connects:
                    self.server.recorder.write(
                        {"ev": "connect", "tls": False, "handshake": "failed"})
                return
            tls = True
        if opts.record_connects:
            self.server.recorder.write({"ev": "connect", "tls": tls})
        session = Session(opts, self.server.recorder, sock, tls)
        try:
            session.run()
        except Closed:
            pass
        finally:
            try:
                session.sock.close()
            except OSError:
                pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--record")
    p.add_argument("--record-connects", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--fail-rcpt", action="append", default=[],
                   metavar="ADDR:CODE")
    p.add_argument("--fail-data", type=int, metavar="CODE")
    p.add_argument("--data-delay-ms", type=int, default=0)
    p.add_argument("--greeting-delay-ms", type=int, default=0)
    opts = p.parse_args(argv)

    if (opts.tls_cert is None) != (opts.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    if opts.implicit_tls and opts.tls_cert is None:
        p.error("--implicit-tls needs --tls-cert and --tls-key")
    if opts.require_starttls and opts.tls_cert is None:
        p.error("--require-starttls needs --tls-cert and --tls-key")
    if (opts.user is None) != (opts.password is None):
        p.error("--user and --password go together")
    fails = {}
    for spec in opts.fail_rcpt:
        addr, _, code = spec.rpartition(":")
        if not addr or not code.isdigit() or not 400 <= int(code) <= 599:
            p.error("--fail-rcpt wants ADDR:CODE with a 4xx or 5xx code")
        fails[addr.lower()] = int(code)
    opts.fail_rcpt = fails
    if opts.fail_data is not None and not 400 <= opts.fail_data <= 599:
        p.error("--fail-data wants a 4xx or 5xx code")
    host, _, port = opts.listen.rpartition(":")
    opts.listen = (host, int(port))
    return opts


def main(argv):
    opts = parse_args(argv)
    recorder = Recorder(opts.record)
    server = Server(opts.listen, opts, recorder)

    def stop(signum, frame):
        with recorder.lock:
            sys.stdout.flush()
            os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
