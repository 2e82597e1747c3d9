"""The relay after AUTH (DESIGN.md "Relay"), as a backend MTA and a client
see it:

- end to end through Postfix's smtp-sink with real clients (smtplib,
  swaks, curl) over STARTTLS and implicit TLS: the message arrives
  byte for byte under a Received: header naming the client, the proxy,
  ESMTPSA, the session id and the TLS version;
- nothing reaches the backend before AUTH (a recording fake backend tells
  the proxy's capability probe from a session);
- the command whitelist: XCLIENT, XFORWARD, AUTH, STARTTLS, BDAT, ETRN and
  unknown verbs are answered locally and never relayed;
- EHLO answers before and after AUTH (after AUTH from the backend
  connection's capabilities, never relayed), SIZE capping;
- XCLIENT towards the backend (only the attributes it lists; xclient =
  no), the AUTH= parameter of MAIL removed;
- SMTP smuggling (CVE-2023-51764 class): every bare CR/LF variant of an
  end of data reaches the backend as text in one transaction, or is
  refused with bare_newline = reject;
- sender_map, max_recipients, pipelined groups answered in order;
- failures: backend down at AUTH, backend gone mid-session, client gone
  mid-DATA, oversized message, a non-ESMTP and a non-PIPELINING backend,
  a Unix socket backend; the transaction log line; a 20 MB message with
  bounded memory;
- as root, a private Postfix behind the proxy: its Received: header shows
  the real client address and login, passed with XCLIENT.

Backends and the logged-in proxy come from backends.py.  Loopback only;
every wait is bounded; no test asserts how fast something happened.
"""

import contextlib
import hashlib
import os
import re
import select
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402
from backends import (FULL_CAPS, RecordingBackend, RelayProxy,  # noqa: E402
                      SmtpSink)
from harness import HOSTNAME, WAIT, ProxyTestCase  # noqa: E402

USER = RelayProxy.USER
CLIENT = "client.example"
SENDER = "alice@example.com"
RCPT = "bob@example.net"

BODY = (b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.net>\r\n"
        b"Subject: relay test\r\n"
        b"\r\n"
        b"Hello Bob,\r\n"
        b".a line that starts with a dot\r\n"
        b"..and one with two\r\n"
        b"\r\n"
        b"Bye.\r\n")

# The end-of-data look-alikes of the SMTP smuggling papers (SEC Consult,
# December 2023): none of them is CRLF.CRLF.
SMUGGLING_VARIANTS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n",
                      b"\r\n.\r", b"\r\n.\x00\r\n"]
SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
            b"smuggled\r\n")


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


def client_context():
    return tlsutil.client_context(None)


def dot_stuff(body):
    """body (CRLF lines) dot-stuffed and terminated: what goes after 354."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + l if l.startswith(b".") else l for l in lines]
    return b"".join(l + b"\r\n" for l in stuffed) + b".\r\n"


def lf(data):
    return data.replace(b"\r\n", b"\n")


def smuggling_body(variant):
    return (b"Subject: smuggling\r\n\r\nbefore" + variant + SMUGGLED +
            b"\r\n")


def xclient_attributes(line):
    """{"ADDR": "1.2.3.4", ...} from an XCLIENT command line."""
    text = line.decode("latin-1") if isinstance(line, bytes) else line
    words = text.split()[1:]
    return dict(w.split("=", 1) for w in words)


def xtext_decode(text):
    """The bytes an xtext value (RFC 3461 section 4) stands for."""
    return re.sub(rb"\+([0-9A-F]{2})",
                  lambda m: bytes([int(m.group(1), 16)]),
                  text.encode("ascii"))


def parse_replies(data):
    """[(code, [text of each line])] of the complete replies in data (the
    bytes a client received), single or multi-line; a partial last line is
    left out."""
    replies = []
    lines = []
    for line in data.split(b"\r\n")[:-1]:
        lines.append(line)
        if line[3:4] != b"-":
            replies.append((int(lines[0][:3]),
                            [l[4:].decode("utf-8", "replace")
                             for l in lines]))
            lines = []
    return replies


class RelayTestCase(ProxyTestCase):
    """Clients that log in through a RelayProxy and send mail."""

    def sink(self, options=(), **kw):
        return SmtpSink(self, options=options, **kw)

    def recorder(self, **kw):
        return RecordingBackend(self, **kw)

    def proxy(self, backend, **kw):
        return RelayProxy(self, backend, **kw)

    # -- clients

    def tls_client(self, proxy, listener="sub", helo=CLIENT, source=None):
        """A Raw client through TLS and EHLO (reply in .ehlo)."""
        client = proxy.connect(listener, source=source)
        mode = proxy.sections["listener " + listener]["mode"]
        if mode == "implicit-tls":
            tlsutil.wait_accepted(proxy, client)
            client.wrap_tls(client_context())
            self.assertReply(client.read_reply(), 220)
        else:
            self.assertReply(client.read_reply(), 220)
            self.assertReply(client.command("EHLO " + helo), 250)
            tlsutil.starttls(client, client_context())
        client.ehlo = client.command("EHLO " + helo)
        self.assertReply(client.ehlo, 250)
        return client

    def auth(self, proxy, client, user=USER, password=None):
        password = proxy.users[user] if password is None else password
        return client.command("AUTH PLAIN " +
                              backends.plain_blob(user, password))

    def login(self, proxy, listener="sub", helo=CLIENT, user=USER,
              source=None):
        """A Raw client past TLS, EHLO and a successful AUTH PLAIN."""
        client = self.tls_client(proxy, listener, helo=helo, source=source)
        self.assertReply(self.auth(proxy, client, user), 235, "2.7.0")
        return client

    def send_message(self, client, body=BODY, sender=SENDER, rcpts=(RCPT,)):
        """MAIL, RCPTs, DATA (all expected to succeed), the dot-stuffed
        body; returns the reply to the end of data."""
        self.assertReply(client.command("MAIL FROM:<%s>" % sender), 250)
        for rcpt in rcpts:
            self.assertReply(client.command("RCPT TO:<%s>" % rcpt), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(body))
        return client.read_reply()

    def send_raw_data(self, client, data, sender=SENDER, rcpts=(RCPT,)):
        """Like send_message but data goes after 354 as it is (it must
        carry its own end of data)."""
        self.assertReply(client.command("MAIL FROM:<%s>" % sender), 250)
        for rcpt in rcpts:
            self.assertReply(client.command("RCPT TO:<%s>" % rcpt), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(data)
        return client.read_reply()

    # -- the proxy's log

    def transaction_line(self, proxy, sid=None):
        patterns = [r"\bevent=transaction\b"]
        if sid:
            patterns.append(r"\bsid=%s\b" % re.escape(sid))
        return harness.parse_log_fields(proxy.wait_log(*patterns))

    def tls_version(self, proxy, sid):
        line = proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                              r"\bevent=tls\b")
        return harness.parse_log_fields(line)["version"]

    # -- assertions

    def assertReceivedByProxy(self, message, helo, sid, tls_version,
                              ip="127.0.0.1"):
        """The first header of message is the proxy's Received: naming the
        client's EHLO and address, the proxy, ESMTPSA, the session id and
        the TLS version."""
        first_line = re.split(rb"\r?\n", message, 1)[0].decode(
            "utf-8", "replace")
        self.assertTrue(
            first_line.startswith("Received: from %s ([%s]) (authenticated)"
                                  % (helo, ip)),
            "first line of the message: %r" % first_line)
        name, value = backends.parse_headers(message)[0]
        self.assertEqual(name, "Received")
        self.assertRegex(value, r"\bby %s \(submitproxy\) with ESMTPSA id "
                         r"%s\b" % (re.escape(HOSTNAME), re.escape(sid)))
        self.assertIn(tls_version, value)

    def assertNoSessionReachedBackend(self, backend):
        sessions = backend.session_connections()
        self.assertEqual(sessions, [],
                         "connections to the backend that were not the "
                         "capability probe: %r" % sessions)


# ------------------------------------------------------ end to end, smtp-sink

class EndToEnd(RelayTestCase):

    def check_delivery(self, proxy, sink, helo, body=BODY, sid=None):
        """One message in the sink: the body as sent (LF line ends: the
        dump is written line by line) under the proxy's Received:."""
        message = sink.wait_messages(1)[0]
        fields = self.transaction_line(proxy, sid)
        sid = fields["sid"]
        self.assertTrue(message.mail.startswith("<%s>" % SENDER),
                        message.mail)
        self.assertEqual([r.split()[0] for r in message.rcpts],
                         ["<%s>" % RCPT])
        self.assertReceivedByProxy(message.message, helo, sid,
                                   self.tls_version(proxy, sid))
        self.assertEqual(message.without_first_header(), lf(body))
        return message

    def smtplib_send(self, proxy, implicit):
        if implicit:
            smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("subs"),
                                    local_hostname=CLIENT, timeout=WAIT,
                                    context=client_context())
        else:
            smtp = smtplib.SMTP("127.0.0.1", proxy.port("sub"),
                                local_hostname=CLIENT, timeout=WAIT)
            smtp.ehlo()
            smtp.starttls(context=client_context())
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.login(USER, proxy.password)
        refused = smtp.sendmail(SENDER, [RCPT], BODY)
        self.assertEqual(refused, {})
        smtp.quit()

    def test_smtplib_over_starttls_delivers_under_a_received_header(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.smtplib_send(proxy, implicit=False)
        self.check_delivery(proxy, sink, CLIENT)

    def test_smtplib_over_implicit_tls_delivers_under_a_received_header(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.smtplib_send(proxy, implicit=True)
        self.check_delivery(proxy, sink, CLIENT)

    def swaks(self, proxy, implicit):
        swaks = tlsutil.require_command("swaks")
        path = os.path.join(proxy.dir, "message.txt")
        with open(path, "wb") as f:
            # swaks ends the data with CRLF.CRLF after the last line
            # whatever that line ends with.
            f.write(lf(BODY)[:-1])
        args = [swaks, "--server", "127.0.0.1",
                "--port", str(proxy.port("subs" if implicit else "sub")),
                "--ehlo", "swaks.example",
                "--tls-on-connect" if implicit else "--tls",
                "--auth", "PLAIN", "--auth-user", USER,
                "--auth-password", proxy.password,
                "--from", SENDER, "--to", RCPT,
                "--data", "@" + path, "--timeout", str(int(WAIT))]
        result = tlsutil.run(args, timeout=3 * WAIT, check=False)
        # swaks prints the password's base64 in its transcript: not ours.
        self.assertEqual(result.returncode, 0,
                         "swaks failed:\n%s%s" % (result.stdout,
                                                  result.stderr))
        # "<-" in the clear, "<~" over TLS.
        self.assertRegex(result.stdout, r"<[-~]\s+250 ")

    def test_swaks_over_starttls_delivers(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.swaks(proxy, implicit=False)
        self.check_delivery(proxy, sink, "swaks.example")

    def test_swaks_over_implicit_tls_delivers(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.swaks(proxy, implicit=True)
        self.check_delivery(proxy, sink, "swaks.example")

    def curl(self, proxy, implicit):
        curl = tlsutil.require_command("curl")
        path = os.path.join(proxy.dir, "message.eml")
        with open(path, "wb") as f:
            f.write(BODY)
        if implicit:
            url = "smtps://127.0.0.1:%d/curl.example" % proxy.port("subs")
            tls = []
        else:
            url = "smtp://127.0.0.1:%d/curl.example" % proxy.port("sub")
            tls = ["--ssl-reqd"]
        args = [curl, "-sS", "-k", "--max-time", str(int(2 * WAIT))] + \
            tls + [url, "--user", "%s:%s" % (USER, proxy.password),
                   "--login-options", "AUTH=PLAIN",
                   "--mail-from", SENDER, "--mail-rcpt", RCPT, "-T", path]
        result = tlsutil.run(args, timeout=3 * WAIT, check=False)
        self.assertEqual(result.returncode, 0,
                         "curl failed:\n%s%s" % (result.stdout,
                                                 result.stderr))

    def test_curl_with_ssl_reqd_over_starttls_delivers(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.curl(proxy, implicit=False)
        self.check_delivery(proxy, sink, "curl.example")

    def test_curl_smtps_over_implicit_tls_delivers(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        self.curl(proxy, implicit=True)
        self.check_delivery(proxy, sink, "curl.example")

    def test_raw_client_message_arrives_byte_for_byte(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 250)
        self.check_delivery(proxy, sink, CLIENT,
                            sid=proxy.session_id(client))

    def test_received_header_no_adds_no_header(self):
        sink = self.sink()
        proxy = self.proxy(sink, relay={"received_header": "no"})
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.message, lf(BODY))


# ------------------------------------------------------- before AUTH: nothing

REFUSED_BEFORE_AUTH = {"MAIL", "RCPT", "DATA", "BDAT", "XCLIENT", "XFORWARD",
                       "ETRN", "VRFY", "EXPN"}


class NothingBeforeAuth(RelayTestCase):

    def test_nothing_reaches_the_backend_before_auth(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy = self.proxy(backend)
        proxy.wait_probe()
        # In the clear, then over TLS: every command an unauthenticated
        # client might try, and a failed AUTH.
        client = self.greeted(proxy, listener="sub")
        for line in ("EHLO " + CLIENT, "MAIL FROM:<%s>" % SENDER,
                     "RCPT TO:<%s>" % RCPT, "DATA", "NOOP"):
            client.command(line)
        tlsutil.starttls(client, client_context())
        for line in ("EHLO " + CLIENT, "MAIL FROM:<%s>" % SENDER,
                     "RCPT TO:<%s>" % RCPT, "DATA", "VRFY alice",
                     "EXPN staff", "BDAT 10 LAST", "XCLIENT ADDR=1.2.3.4",
                     "XFORWARD ADDR=1.2.3.4", "ETRN example.com", "HELP",
                     "RSET", "NOOP"):
            reply = client.command(line)
            if backends.command_verb(line) in REFUSED_BEFORE_AUTH:
                self.assertGreaterEqual(reply[0], 500,
                                        "%s: %r" % (line, reply))
        reply = self.auth(proxy, client, USER, "wrong-" + proxy.password)
        self.assertReply(reply, 535, "5.7.8")
        self.assertReply(client.command("QUIT"), 221)
        client.expect_closed()
        proxy.wait_log(r"\bevent=disconnect\b",
                       r"\bsid=%s\b" % proxy.session_id(client))
        self.assertNoSessionReachedBackend(backend)
        # The same backend does see a session once a client logs in (the
        # check above can tell the difference).
        self.login(proxy)
        backend.wait(lambda b: b.session_connections(),
                     "a session connection after AUTH")

    def test_failed_auth_opens_no_backend_connection(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy = self.proxy(backend)
        proxy.wait_probe()
        before = len(backend.snapshot())
        client = self.tls_client(proxy)
        self.assertReply(self.auth(proxy, client, USER, "nope"), 535)
        self.assertReply(self.auth(proxy, client, "mallory", "nope"), 535)
        self.assertReply(client.command("NOOP"), 250)
        self.assertNoSessionReachedBackend(backend)
        self.assertEqual(len(backend.snapshot()), before,
                         "a failed AUTH connected to the backend: %r"
                         % backend.snapshot()[before:])


# ------------------------------------------------- after AUTH: the whitelist

class Whitelist(RelayTestCase):

    LOCAL = [
        ("XCLIENT ADDR=1.2.3.4", 502, "XCLIENT"),
        ("XFORWARD ADDR=1.2.3.4 NAME=spoofed.example", 502, "XFORWARD"),
        ("AUTH PLAIN AGFsaWNlAHB3", 503, "AUTH"),
        ("STARTTLS", 503, "STARTTLS"),
        ("BDAT 10 LAST", 502, "BDAT"),
        ("ETRN example.com", 502, "ETRN"),
        ("FOO bar", 500, "FOO"),
    ]

    def check_local(self, line, code, verb):
        backend = self.recorder(caps=FULL_CAPS)
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(client.command(line), code, "5.5.1")
        # A command that is relayed, after it: once its reply is back,
        # the refused one would have reached the backend before it.
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        session = backend.session_connections()
        self.assertEqual(len(session), 1, session)
        # The backend offers XCLIENT: the proxy's own hand-over sends one.
        own = 1 if verb == "XCLIENT" else 0
        self.assertEqual(session[0].verbs().count(verb), own,
                         "%s reached the backend: %r"
                         % (verb, session[0].lines))
        self.assertNotIn(line.encode(), session[0].lines)

    def test_xclient_after_auth_is_502_and_never_relayed(self):
        self.check_local(*self.LOCAL[0])

    def test_xforward_after_auth_is_502_and_never_relayed(self):
        self.check_local(*self.LOCAL[1])

    def test_auth_after_auth_is_503_and_never_relayed(self):
        self.check_local(*self.LOCAL[2])

    def test_starttls_after_auth_is_503_and_never_relayed(self):
        self.check_local(*self.LOCAL[3])

    def test_bdat_after_auth_is_502_and_never_relayed(self):
        self.check_local(*self.LOCAL[4])

    def test_etrn_after_auth_is_502_and_never_relayed(self):
        self.check_local(*self.LOCAL[5])

    def test_unknown_verb_after_auth_is_500_and_never_relayed(self):
        self.check_local(*self.LOCAL[6])

    def test_whitelisted_verbs_reach_the_backend(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)
        for line, code in (("NOOP", 250), ("RSET", 250), ("VRFY bob", 252),
                           ("HELP", 214)):
            self.assertReply(client.command(line), code)
        self.assertReply(client.command("QUIT"), 221)
        backend.wait_line(r"^QUIT")
        verbs = backend.session_connections()[0].verbs()
        for verb in ("NOOP", "RSET", "VRFY", "HELP", "QUIT"):
            self.assertIn(verb, verbs)


# ----------------------------------------------------------------- EHLO

HIDDEN = ["STARTTLS", "AUTH", "XCLIENT", "XFORWARD", "CHUNKING",
          "BINARYMIME", "ETRN", "X-UNKNOWN"]
KEPT = ["PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES"]


def size_of(reply):
    for line in reply[1][1:]:
        words = line.split()
        if words and words[0].upper() == "SIZE":
            return int(words[1]) if len(words) > 1 else None
    return None


class Ehlo(RelayTestCase):

    def ehlo_after_auth(self, caps=FULL_CAPS, limits=None):
        backend = self.recorder(caps=caps)
        proxy = self.proxy(backend, limits=limits)
        client = self.login(proxy)
        reply = client.command("EHLO relayed.example")
        self.assertReply(reply, 250)
        return backend, client, reply

    def test_ehlo_after_auth_is_answered_by_the_proxy_not_relayed(self):
        # The backend had the proxy's EHLO at the hand-over; a second one
        # is refused by some MTAs (OpenSMTPD: 503 5.5.1).
        backend, client, _ = self.ehlo_after_auth()
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        self.assertNotIn(b"EHLO relayed.example", backend.all_lines())

    def test_ehlo_after_auth_names_the_proxy_on_its_first_line(self):
        _, client, reply = self.ehlo_after_auth()
        self.assertTrue(client.last_reply_lines[0].startswith(
            b"250-" + HOSTNAME.encode()), client.last_reply_lines)
        self.assertNotIn("backend.example", "\n".join(reply[1]))

    def test_ehlo_after_auth_hides_what_the_proxy_does_not_pass(self):
        _, _, reply = self.ehlo_after_auth()
        keywords = tlsutil.ehlo_keywords(reply)
        for keyword in HIDDEN:
            self.assertNotIn(keyword, keywords, reply)

    def test_ehlo_after_auth_keeps_what_the_backend_has_and_the_proxy_passes(
            self):
        _, _, reply = self.ehlo_after_auth()
        keywords = tlsutil.ehlo_keywords(reply)
        for keyword in KEPT:
            self.assertIn(keyword, keywords, reply)

    def test_ehlo_after_auth_size_is_the_backend_size_when_smaller(self):
        _, _, reply = self.ehlo_after_auth(limits={"max_message_size":
                                                   "50M"})
        self.assertEqual(size_of(reply), 1000000, reply)

    def test_ehlo_after_auth_size_is_max_message_size_when_smaller(self):
        _, _, reply = self.ehlo_after_auth(limits={"max_message_size":
                                                   "10K"})
        self.assertEqual(size_of(reply), 10240, reply)

    def test_ehlo_before_auth_shows_only_the_intersection(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy = self.proxy(backend)
        proxy.wait_probe()
        client = self.tls_client(proxy)
        keywords = tlsutil.ehlo_keywords(client.ehlo)
        for keyword in ["STARTTLS", "XCLIENT", "XFORWARD", "CHUNKING",
                        "BINARYMIME", "ETRN", "X-UNKNOWN"]:
            self.assertNotIn(keyword, keywords, client.ehlo)
        for keyword in ["PIPELINING", "8BITMIME", "SMTPUTF8",
                        "ENHANCEDSTATUSCODES"]:
            self.assertIn(keyword, keywords, client.ehlo)
        # The proxy's own AUTH, not the backend's.
        self.assertEqual(tlsutil.ehlo_auth(client.ehlo), ["PLAIN", "LOGIN"])
        self.assertEqual(size_of(client.ehlo), 1000000, client.ehlo)

    def test_ehlo_before_auth_omits_extensions_the_backend_lacks(self):
        backend = self.recorder(caps=["SIZE 5000"])
        proxy = self.proxy(backend)
        proxy.wait_probe()
        client = self.tls_client(proxy)
        keywords = tlsutil.ehlo_keywords(client.ehlo)
        for keyword in ["8BITMIME", "SMTPUTF8", "DSN"]:
            self.assertNotIn(keyword, keywords, client.ehlo)
        self.assertEqual(size_of(client.ehlo), 5000, client.ehlo)


# --------------------------------------------------------------- XCLIENT

class Xclient(RelayTestCase):

    def session_lines(self, backend):
        backend.wait(lambda b: b.session_connections(), "a session")
        return backend.session_connections()[0].lines

    def test_xclient_carries_name_addr_port_helo_login_proto(self):
        backend = self.recorder(caps=caps_with(
            "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"))
        proxy = self.proxy(backend)
        client = self.login(proxy)
        lines = self.session_lines(backend)
        xclient = [l for l in lines if l.startswith(b"XCLIENT ")]
        self.assertEqual(len(xclient), 1, lines)
        self.assertEqual(xclient_attributes(xclient[0]), {
            "NAME": "[UNAVAILABLE]", "ADDR": "127.0.0.1",
            "PORT": str(client.local_address()[1]), "HELO": CLIENT,
            "LOGIN": USER, "PROTO": "ESMTP"})
        # Postfix answers XCLIENT with a new greeting: EHLO again.
        after = lines[lines.index(xclient[0]) + 1:]
        self.assertTrue(after and backends.command_verb(after[0]) == "EHLO",
                        lines)

    def test_xclient_values_are_xtext(self):
        backend = self.recorder(caps=caps_with("XCLIENT ADDR HELO LOGIN"))
        proxy = self.proxy(backend)
        self.login(proxy, helo="a+b=c.example")
        lines = self.session_lines(backend)
        xclient = [l for l in lines if l.startswith(b"XCLIENT ")]
        self.assertEqual(xclient_attributes(xclient[0])["HELO"],
                         "a+2Bb+3Dc.example")

    def test_xclient_sends_only_the_attributes_the_backend_lists(self):
        backend = self.recorder(caps=caps_with("XCLIENT ADDR LOGIN"))
        proxy = self.proxy(backend)
        self.login(proxy)
        lines = self.session_lines(backend)
        xclient = [l for l in lines if l.startswith(b"XCLIENT ")]
        self.assertEqual(xclient_attributes(xclient[0]),
                         {"ADDR": "127.0.0.1", "LOGIN": USER})

    def test_xclient_no_sends_no_xclient(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy = self.proxy(backend, backend_keys={"xclient": "no"})
        client = self.login(proxy)
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        self.assertNotIn("XCLIENT", backend.all_verbs())

    def test_xclient_yes_with_a_helo_only_backend_is_454(self):
        # xclient = yes promises that the backend sees the real client:
        # an MTA without ESMTP cannot, so no session is handed over.
        backend = self.recorder(esmtp=False)
        proxy = self.proxy(backend, backend_keys={"xclient": "yes"})
        client = self.tls_client(proxy)
        self.assertReply(self.auth(proxy, client), 454, "4.7.0")
        proxy.wait_log(r"\bevent=auth_tempfail\b",
                       r"\breason=backend_unavailable\b",
                       r"speaks no ESMTP")
        self.assertNotIn("MAIL", backend.all_verbs())

    def test_xclient_auto_without_xclient_offered_sends_none(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        self.assertNotIn("XCLIENT", backend.all_verbs())

    def test_mail_auth_parameter_is_removed(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s> AUTH=<>" % SENDER),
                         250)
        self.assertReply(client.command("RSET"), 250)
        self.assertReply(client.command(
            "MAIL FROM:<%s> BODY=8BITMIME AUTH=<> " % SENDER), 250)
        backend.wait(lambda b: b.all_verbs().count("MAIL") == 2, "2 MAIL")
        mails = [l for l in backend.all_lines() if l.startswith(b"MAIL")]
        self.assertEqual(mails[0], b"MAIL FROM:<%s>" % SENDER.encode())
        self.assertEqual(mails[1].rstrip(),
                         b"MAIL FROM:<%s> BODY=8BITMIME" % SENDER.encode())

    def test_xclient_with_a_255_byte_8bit_helo_and_a_long_login_is_sent_whole(
            self):
        # Each EHLO byte >= 0x80 and each "+" of the login is three
        # characters of xtext: more than 1000 together, which the line
        # (up to 2048 bytes) takes; too long would be 454 4.7.0, never a
        # crash.
        helo = bytes(0x80 + i % 0x80 for i in range(255))
        user = "v" * 20 + "+" * 100
        backend = self.recorder(caps=caps_with(
            "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"))
        proxy = self.proxy(backend, users={user: "pw-" +
                                           os.urandom(8).hex()})
        client = self.greeted(proxy, listener="sub")
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        tlsutil.starttls(client, client_context())
        self.assertReply(client.command(b"EHLO " + helo), 250)
        self.assertReply(self.auth(proxy, client, user), 235, "2.7.0")
        lines = self.session_lines(backend)
        xclient = [l for l in lines if l.startswith(b"XCLIENT ")]
        self.assertEqual(len(xclient), 1, lines)
        attributes = xclient_attributes(xclient[0])
        self.assertEqual(xtext_decode(attributes["HELO"]), helo, xclient)
        self.assertEqual(xtext_decode(attributes["LOGIN"]), user.encode(),
                         xclient)
        self.assertReply(client.command("NOOP"), 250)
        # The proxy goes on serving.
        self.greeted(proxy, listener="sub")


def caps_with(*caps):
    return backends.DEFAULT_CAPS + list(caps)


# ------------------------------------------------------------- smuggling

class Smuggling(RelayTestCase):

    def test_end_of_data_look_alikes_reach_the_backend_as_text(self):
        backend = self.recorder()
        # nul_bytes = pass: the NUL variant reaches the backend too
        # (test_data_policy.py has the other policies).
        proxy = self.proxy(backend, relay={"nul_bytes": "pass"})
        client = self.login(proxy)
        for i, variant in enumerate(SMUGGLING_VARIANTS):
            with self.subTest(variant=variant):
                data = b"Subject: smuggling\r\n\r\nbefore" + variant + \
                    SMUGGLED + b"\r\n.\r\n"
                self.assertReply(self.send_raw_data(client, data), 250)
                # Nothing more from the proxy: one reply, one message.
                self.assertFalse(client.pending(0.3),
                                 "more after the 250: %r" % client.buf)
                done = backend.wait_complete(i + 1)
                self.assertEqual(len(done), i + 1,
                                 "transactions: %r" % done)
                tx = done[i]
                self.assertEqual(backends.bare_newlines(tx.data), [],
                                 "bare CR/LF at the backend: %r" % tx.data)
                self.assertIn(b"MAIL FROM:<evil@x>", tx.message())
                self.assertIn(b"smuggled", tx.message())
        self.assertReply(client.command("NOOP"), 250)
        mails = [l for l in backend.all_lines() if l.startswith(b"MAIL")]
        self.assertEqual(len(mails), len(SMUGGLING_VARIANTS), mails)
        self.assertFalse([l for l in backend.all_lines() if b"evil" in l or
                          b"victim" in l],
                         "smuggled commands were read as commands")

    def test_bare_newline_reject_refuses_with_550_5_6_0(self):
        backend = self.recorder()
        proxy = self.proxy(backend, relay={"bare_newline": "reject"})
        for variant in SMUGGLING_VARIANTS:
            if b"\x00" in variant:
                continue    # no bare CR or LF in it: nothing to reject
            with self.subTest(variant=variant):
                done_before = len(backend.complete_transactions())
                client = self.login(proxy)
                data = b"Subject: smuggling\r\n\r\nbefore" + variant + \
                    SMUGGLED + b"\r\n.\r\n"
                self.assertReply(self.send_raw_data(client, data), 550,
                                 "5.6.0")
                # The session goes on: a clean message is delivered.
                self.assertReply(self.send_message(client), 250)
                done = backend.wait_complete(done_before + 1)
                self.assertEqual(len(done), done_before + 1, done)
                self.assertEqual(strip_received(done[-1].message()), BODY)
                self.assertFalse([t for t in backend.transactions()
                                  if b"smuggled" in t.data and t.complete],
                                 "the refused message was completed")
                self.assertReply(client.command("QUIT"), 221)


def strip_received(message):
    if message.startswith(b"Received:"):
        return backends.strip_first_header(message)
    return message


# ------------------------------------------------------------ sender_map

class SenderMap(RelayTestCase):

    USERS = {"alice": "pw-alice-5c1f", "bob": "pw-bob-77ae",
             "admin": "pw-admin-90d2"}

    def setUp(self):
        self.backend = self.recorder()
        directory = tempfile.mkdtemp(prefix="submitproxy-sendermap-")
        os.chmod(directory, 0o755)
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "sender_map")
        with open(path, "w") as f:
            f.write("# login  address\n"
                    "alice  alice@example.com\n"
                    "bob    @example.org\n"
                    "admin  *\n")
        os.chmod(path, 0o644)
        self.proxy_ = self.proxy(self.backend, users=self.USERS,
                                 relay={"sender_map": path})
        self.noops = 0

    def mail(self, user, sender):
        """MAIL FROM:<sender> after logging in as user; returns the reply
        once a NOOP behind it has reached the backend."""
        client = self.login(self.proxy_, user=user)
        reply = client.command("MAIL FROM:<%s>" % sender)
        self.assertReply(client.command("NOOP"), 250)
        self.noops += 1
        self.backend.wait(lambda b: b.all_verbs().count("NOOP") >=
                          self.noops, "NOOP at the backend")
        return reply

    def relayed(self, sender):
        return [l for l in self.backend.all_lines()
                if l.startswith(b"MAIL") and sender.encode() in l]

    def test_sender_map_lets_a_login_use_its_own_address(self):
        self.assertReply(self.mail("alice", "alice@example.com"), 250)
        self.assertTrue(self.relayed("alice@example.com"))

    def test_sender_map_refuses_another_address_with_553_5_7_1(self):
        self.assertReply(self.mail("alice", "other@example.com"), 553,
                         "5.7.1")
        self.assertEqual(self.relayed("other@example.com"), [])

    def test_sender_map_domain_rule_allows_any_address_in_the_domain(self):
        self.assertReply(self.mail("bob", "anyone@example.org"), 250)
        self.assertReply(self.mail("bob", "bob@example.com"), 553, "5.7.1")
        self.assertEqual(self.relayed("bob@example.com"), [])

    def test_sender_map_star_allows_any_address(self):
        self.assertReply(self.mail("admin", "whoever@elsewhere.test"), 250)

    def test_sender_map_allows_the_null_sender(self):
        client = self.login(self.proxy_, user="alice")
        self.assertReply(client.command("MAIL FROM:<>"), 250)


# ---------------------------------------------------- limits, pipelining

class Recipients(RelayTestCase):

    def test_third_recipient_over_max_recipients_2_is_452_4_5_3_locally(self):
        backend = self.recorder()
        proxy = self.proxy(backend, limits={"max_recipients": "2"})
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<r1@example.net>"), 250)
        self.assertReply(client.command("RCPT TO:<r2@example.net>"), 250)
        self.assertReply(client.command("RCPT TO:<r3@example.net>"), 452,
                         "4.5.3")
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual([r.split(b":", 1)[1] for r in tx.rcpts],
                         [b"<r1@example.net>", b"<r2@example.net>"])

    def test_max_recipients_applies_to_a_transaction_pipelined_after_data(
            self):
        # The backend answers the end of data late: the next MAIL and
        # RCPT, pipelined with it, are relayed before that answer comes.
        backend = self.recorder(delays={".": 0.5})
        proxy = self.proxy(backend, limits={"max_recipients": "2"})
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<first@example.com>"),
                         250)
        self.assertReply(client.command("RCPT TO:<r1@example.net>"), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY) + b"MAIL FROM:<second@example.com>\r\n"
                    b"RCPT TO:<x@example.com>\r\n")
        replies = [client.read_reply() for _ in range(3)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250], replies)
        self.assertReply(client.command("RCPT TO:<y@example.com>"), 250)
        self.assertReply(client.command("RCPT TO:<z@example.com>"), 452,
                         "4.5.3")
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        tx = backend.wait_complete(2)[1]
        self.assertEqual([r.split(b":", 1)[1] for r in tx.rcpts],
                         [b"<x@example.com>", b"<y@example.com>"])


class Pipelining(RelayTestCase):

    def read_replies(self, client, count):
        return [client.read_reply() for _ in range(count)]

    def test_local_refusal_in_a_pipelined_group_is_answered_in_order(self):
        # The backend answers RCPT slowly: a local reply must still wait
        # for the relayed replies of the commands before it.
        backend = self.recorder(delays={"RCPT": 0.2})
        proxy = self.proxy(backend)
        client = self.login(proxy)
        client.send(b"MAIL FROM:<%s>\r\nRCPT TO:<r1@example.net>\r\n"
                    b"RCPT TO:bad\r\nRCPT TO:<r3@example.net>\r\nDATA\r\n"
                    % SENDER.encode())
        replies = self.read_replies(client, 5)
        self.assertEqual([r[0] for r in replies], [250, 250, 501, 250, 354],
                         replies)
        self.assertIn("2.1.5", replies[1][1][0])
        self.assertIn("2.1.5", replies[3][1][0])
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual(len(tx.rcpts), 2, tx)

    def test_recipient_over_the_limit_in_a_pipelined_group_is_in_order(self):
        backend = self.recorder(delays={"RCPT": 0.2})
        proxy = self.proxy(backend, limits={"max_recipients": "2"})
        client = self.login(proxy)
        client.send(b"MAIL FROM:<%s>\r\nRCPT TO:<r1@example.net>\r\n"
                    b"RCPT TO:<r2@example.net>\r\nRCPT TO:<r3@example.net>"
                    b"\r\nDATA\r\n" % SENDER.encode())
        replies = self.read_replies(client, 5)
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 452, 354],
                         replies)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)

    def test_too_many_errors_behind_a_relayed_command_answers_all_then_421(
            self):
        # NOOP is still owed by the slow backend when the third error
        # closes the session: it is answered (the backend's 250, or 451
        # 4.4.2 if it is not in yet), then the 500s, then the 421.
        backend = self.recorder(delays={"NOOP": 1.0})
        proxy = self.proxy(backend, limits={"max_errors": "3"})
        client = self.login(proxy)
        client.send(b"NOOP\r\n" + b"FOO\r\n" * 5)
        data = client.read_until_closed(timeout=2 * WAIT)
        replies = parse_replies(data)
        self.assertEqual([r[0] for r in replies][1:], [500, 500, 500, 421],
                         data)
        self.assertIn(replies[0][0], (250, 451), data)
        if replies[0][0] == 451:
            self.assertReply(replies[0], 451, "4.4.2")
        self.assertReply(replies[-1], 421, "4.7.0", "too many errors")


# ---------------------------------------------------------------- failures

class Failures(RelayTestCase):

    def test_backend_down_at_auth_is_454_and_the_session_goes_on(self):
        port = harness.free_ports(["127.0.0.1"])[0]
        proxy = self.proxy("127.0.0.1:%d" % port)
        client = self.tls_client(proxy)
        self.assertReply(self.auth(proxy, client), 454, "4.7.0")
        self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530)
        # Once the backend is up, AUTH again on the same session works.
        backend = RecordingBackend(self, port=port)
        self.assertReply(self.auth(proxy, client), 235, "2.7.0")
        self.assertReply(self.send_message(client), 250)
        backend.wait_complete(1)

    def assertBackendLostReply(self, client):
        backends.assert_backend_lost_reply(self, client, SENDER)

    def test_smtp_sink_killed_after_auth_gives_4_4_2_and_a_close(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        client = self.login(proxy)
        sink.kill()
        self.assertBackendLostReply(client)

    def test_backend_closing_after_auth_gives_4_4_2_and_a_close(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)  # 235: the backend connection is up
        backend.stop()
        self.assertBackendLostReply(client)

    def test_silent_backend_gives_4_4_2_and_a_close(self):
        backend = self.recorder(delays={"MAIL": 3 * 2})
        proxy = self.proxy(backend, backend_keys={"timeout": "1s"})
        client = self.login(proxy)
        self.assertBackendLostReply(client)

    def test_end_of_data_reply_is_the_backends_own(self):
        backend = self.recorder(replies={".": "554 5.7.1 Rejected by "
                                              "policy"})
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 554, "5.7.1",
                         "Rejected by policy")
        fields = self.transaction_line(proxy, proxy.session_id(client))
        self.assertTrue(fields["reply"].startswith("554 "), fields)

    def test_client_gone_mid_data_delivers_nothing_to_smtp_sink(self):
        sink = self.sink()
        proxy = self.proxy(sink)
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 2000)
        # smtp-sink holds a dump file while the transaction is open.
        backends.wait_for(sink.dump_files, "the open transaction's dump")
        client.abort()
        proxy.wait_log(r"\bsid=%s\b" % sid, r"\bevent=disconnect\b")
        backends.wait_for(lambda: not sink.dump_files(),
                          "smtp-sink to drop the unfinished transaction")
        time.sleep(0.5)
        self.assertEqual(sink.messages(), [])

    def test_client_gone_mid_data_completes_no_transaction(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(b"Subject: cut\r\n\r\npartial line\r\n")
        backend.wait(lambda b: [t for t in b.transactions()
                                if b"partial" in t.data], "partial data")
        client.close()
        backend.wait(lambda b: [c for c in b.session_connections()
                                if c.closed],
                     "the proxy to close its backend connection")
        self.assertEqual(backend.complete_transactions(), [])

    def test_oversized_message_is_552_5_3_4_and_the_session_goes_on(self):
        sink = self.sink()
        proxy = self.proxy(sink, limits={"max_message_size": "10K"})
        client = self.login(proxy)
        big = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 512
        reply = self.send_message(client, body=big)
        self.assertReply(reply, 552, "5.3.4")
        self.assertReply(self.send_message(client), 250)
        messages = sink.wait_messages(1)
        time.sleep(0.3)
        messages = sink.messages()
        self.assertEqual(len(messages), 1, messages)
        self.assertEqual(messages[0].without_first_header(), lf(BODY))

    def test_non_esmtp_backend_still_answers_client_ehlo_with_250(self):
        sink = self.sink(["-e"])
        proxy = self.proxy(sink)
        client = self.login(proxy)
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        self.assertReply(self.send_message(client), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.without_first_header(), lf(BODY))

    def test_non_esmtp_backend_delivers(self):
        sink = self.sink(["-e"])
        proxy = self.proxy(sink)
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.without_first_header(), lf(BODY))

    def test_backend_without_pipelining_takes_a_pipelined_group(self):
        sink = self.sink(["-p"])
        proxy = self.proxy(sink)
        client = self.login(proxy)
        client.send(b"MAIL FROM:<%s>\r\nRCPT TO:<r1@example.net>\r\n"
                    b"RCPT TO:<r2@example.net>\r\nDATA\r\n"
                    % SENDER.encode())
        replies = [client.read_reply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 354],
                         replies)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual([r.split()[0] for r in message.rcpts],
                         ["<r1@example.net>", "<r2@example.net>"])
        self.assertEqual(message.without_first_header(), lf(BODY))

    def test_data_relayed_while_the_backend_reconnects_makes_message_text(
            self):
        # After a message aborted for size the proxy has no backend
        # connection: a DATA that comes first makes it connect again, and
        # the backend's 354 only arrives after that.  What the client
        # sends behind the 354 is message text, never commands.  (The
        # backend here takes DATA without MAIL, so that DATA itself waits
        # for the connection; after a MAIL it is the MAIL that waits, and
        # DATA is only read once the backend is back.)
        backend = self.recorder(lax_data=True)
        proxy = self.proxy(backend, limits={"max_message_size": "10K"})
        client = self.login(proxy)
        big = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 512
        self.assertReply(self.send_message(client, body=big), 552, "5.3.4")
        self.assertReply(client.command("DATA"), 354)
        client.send(b"Subject: after a reconnect\r\n\r\n"
                    b"RCPT TO:<injected@x>\r\n.\r\n")
        self.assertReply(client.read_reply(), 250)
        self.assertFalse(client.pending(0.3),
                         "more after the 250: %r" % client.buf)
        done = backend.wait_complete(1)
        self.assertEqual(len(done), 1, backend.transactions())
        self.assertIn(b"\r\nRCPT TO:<injected@x>\r\n", done[0].message())
        self.assertEqual([l for l in backend.all_lines()
                          if b"injected" in l], [],
                         "message text was relayed as a command")


# ---------------------------------------------------- Unix socket, logging

class UnixSocket(RelayTestCase):

    def test_unix_socket_backend_delivers(self):
        directory = tempfile.mkdtemp(prefix="submitproxy-unix-")
        os.chmod(directory, 0o755)
        self.addCleanup(shutil.rmtree, directory, True)
        backend = self.recorder(unix=os.path.join(directory, "smtp.sock"))
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual(strip_received(tx.message()), BODY)

    def test_smtp_sink_on_a_unix_socket_delivers(self):
        sink = self.sink(unix=True)
        proxy = self.proxy(sink)
        client = self.login(proxy)
        self.assertReply(self.send_message(client), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.without_first_header(), lf(BODY))


class Logging(RelayTestCase):

    def test_each_message_logs_one_transaction_line(self):
        backend = self.recorder()
        proxy = self.proxy(backend)
        client = self.login(proxy)
        sid = proxy.session_id(client)
        reply = self.send_message(client, rcpts=(RCPT, "carol@example.net"))
        self.assertReply(reply, 250)
        fields = self.transaction_line(proxy, sid)
        self.assertEqual(fields["user"], USER)
        self.assertEqual(fields["from"], "<%s>" % SENDER)
        self.assertEqual(fields["rcpts"], "2")
        self.assertGreaterEqual(int(fields["size"]), len(BODY))
        self.assertTrue(fields["reply"].startswith("250 "), fields)
        self.assertIn("queued as REC1", fields["reply"])
        self.assertReply(self.send_message(client), 250)
        backend.wait_complete(2)
        lines = proxy.log_lines(r"\bevent=transaction\b",
                                r"\bsid=%s\b" % sid)
        self.assertEqual(len(lines), 2, lines)

    def test_transaction_line_names_its_own_sender_when_the_next_is_pipelined(
            self):
        # The backend answers the end of data late: the next MAIL and
        # RCPT, pipelined with it, are relayed before that answer comes.
        backend = self.recorder(delays={".": 0.5})
        proxy = self.proxy(backend)
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(client.command("MAIL FROM:<first@example.com>"),
                         250)
        self.assertReply(client.command("RCPT TO:<r1@example.net>"), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY) + b"MAIL FROM:<second@example.com>\r\n"
                    b"RCPT TO:<x@example.com>\r\n")
        replies = [client.read_reply() for _ in range(3)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250], replies)
        self.assertReply(client.command("RCPT TO:<y@example.com>"), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        patterns = (r"\bevent=transaction\b", r"\bsid=%s\b" % sid)
        proxy.wait_log_count(2, *patterns)
        first, second = [harness.parse_log_fields(line)
                         for line in proxy.log_lines(*patterns)]
        self.assertEqual((first["from"], first["rcpts"]),
                         ("<first@example.com>", "1"), first)
        self.assertEqual((second["from"], second["rcpts"]),
                         ("<second@example.com>", "2"), second)


# ----------------------------------------------------------- large message

def _uses_asan(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


class LargeMessage(RelayTestCase):

    SIZE = 20 * 1024 * 1024
    RSS_LIMIT_KB = 64 * 1024

    def test_20_mb_message_is_relayed_byte_exact_with_bounded_memory(self):
        sink = self.sink()
        # Under AddressSanitizer, freed memory sits in a quarantine (256 MB
        # by default) and shows in VmRSS: keep it small so that VmRSS
        # reflects what the proxy holds.
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + \
            "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        with backends.environment({"ASAN_OPTIONS": asan}):
            proxy = self.proxy(sink, limits={"max_message_size": "50M"},
                               backend_keys={"timeout": "60s"})
        client = self.login(proxy)
        pid = proxy.network_pid()
        line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                b"VWXYZ+/=-_.,;:!?")
        lines = [b"Subject: twenty megabytes", b""]
        total = 0
        i = 0
        while total < self.SIZE:
            text = b"%08d " % i + line
            if i % 97 == 0:
                text = b"." + text      # dot-stuffing on the way
            lines.append(text)
            total += len(text) + 2
            i += 1
        body = b"\r\n".join(lines) + b"\r\n"
        expected = hashlib.sha256(lf(body)).hexdigest()
        payload = dot_stuff(body)
        baseline = backends.proc_rss_kb(pid)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss = backends.proc_rss_kb(pid)
                if rss:
                    samples.append(rss)
                stop.wait(0.01)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
            self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
            self.assertReply(client.command("DATA"), 354)
            step = 256 * 1024
            for offset in range(0, len(payload), step):
                client.send(payload[offset:offset + step])
            reply = client.read_reply(timeout=6 * WAIT)
        finally:
            stop.set()
            sampler.join(WAIT)
        self.assertReply(reply, 250)
        message = sink.wait_messages(1, timeout=6 * WAIT)[0]
        got = hashlib.sha256(message.without_first_header()).hexdigest()
        self.assertEqual(got, expected, "the dumped body differs")
        peak = max(samples)
        sys.stderr.write("\n[large message] network process VmRSS: "
                         "baseline %d kB, peak %d kB over %d samples\n"
                         % (baseline, peak, len(samples)))
        self.assertGreater(len(samples), 3)
        if _uses_asan(pid):
            # ASan's shadow memory: bound the growth only.
            self.assertLess(peak - baseline, 32 * 1024,
                            "VmRSS grew by %d kB" % (peak - baseline))
        else:
            self.assertLess(peak, self.RSS_LIMIT_KB,
                            "VmRSS peaked at %d kB" % peak)


# ------------------------------------------------------------- reply queue

class ReplyQueue(RelayTestCase):

    FLOOD_BYTES = 50 * 1024 * 1024
    FLOOD_SECONDS = 8
    RSS_LIMIT_KB = 64 * 1024

    def test_client_pipelining_without_reading_keeps_memory_bounded(self):
        # A backend without PIPELINING takes one NOOP at a time, while the
        # client writes NOOPs as fast as it can and reads nothing: the
        # proxy must stop reading (the client's send() then blocks, as it
        # should) rather than queue every reply it owes.
        sink = self.sink(["-p"])
        # As in LargeMessage: a small ASan quarantine, so that VmRSS
        # reflects what the proxy holds.
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + \
            "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        with backends.environment({"ASAN_OPTIONS": asan}):
            # Tens of thousands of NOOPs: no junk limit here.
            proxy = self.proxy(sink, listeners={"plain": {
                "mode": "plain", "require_tls": "no",
                "allow_plaintext_auth": "yes"}},
                limits={"max_junk_commands": "0"})
        client = self.ehloed(proxy)
        self.assertReply(self.auth(proxy, client), 235, "2.7.0")
        pid = proxy.network_pid()
        asan_build = _uses_asan(pid)
        baseline = backends.proc_rss_kb(pid)
        limit = baseline + 32 * 1024 if asan_build else self.RSS_LIMIT_KB
        noop = b"NOOP\r\n"
        chunk = noop * 10000
        sock = client.sock
        # A fixed send buffer (Linux grows it up to 4 MB otherwise), so
        # that the NOOPs still queued when the client reads are few.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.setblocking(False)
        sent = 0
        peak = baseline
        deadline = time.monotonic() + self.FLOOD_SECONDS
        while sent < self.FLOOD_BYTES and time.monotonic() < deadline:
            peak = max(peak, backends.proc_rss_kb(pid) or 0)
            if peak >= limit:
                break
            try:
                sent += sock.send(chunk[sent % len(chunk):])
            except BlockingIOError:
                select.select([], [sock], [], 0.05)
        peak = max(peak, backends.proc_rss_kb(pid) or 0)
        self.assertLess(peak, limit,
                        "network process VmRSS %d kB (from %d kB) after %d "
                        "bytes of NOOPs" % (peak, baseline, sent))
        # Now read: the end of the last NOOP and a QUIT go as the proxy
        # takes them.
        out = noop[sent % len(noop):] if sent % len(noop) else b""
        noops = (sent + len(out)) // len(noop)
        out += b"QUIT\r\n"
        received = bytearray()
        deadline = time.monotonic() + 6 * WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail("not closed within %.0f s after QUIT; %d of %d "
                          "replies in" % (6 * WAIT,
                                          received.count(b"\r\n"),
                                          noops + 1))
            readable, writable, _ = select.select(
                [sock], [sock] if out else [], [], remaining)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    out = out[sock.send(out):]
            if readable:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    break
                received += data
        lines = bytes(received).split(b"\r\n")
        self.assertEqual(lines[-1], b"", "a partial last line")
        codes = [line[:4] for line in lines[:-1]]
        wrong = [(i, lines[i]) for i, code in enumerate(codes[:noops])
                 if code != b"250 "]
        self.assertEqual(wrong[:5], [], "replies to the %d NOOPs" % noops)
        self.assertEqual(len(codes), noops + 1,
                         "%d NOOPs and QUIT, %d replies; the last: %r"
                         % (noops, len(codes), lines[-6:]))
        self.assertEqual(codes[-1], b"221 ", lines[-2])


# ------------------------------------------------------------- real Postfix

class RealPostfix(RelayTestCase):

    def setUp(self):
        self.sink_ = self.sink()
        self.postfix = backends.PostfixInstance(self, relayhost=self.sink_)
        self.proxy_ = self.proxy(self.postfix)
        # Any loopback address other than the proxy's connecting one, so
        # that the client's address can only have come through XCLIENT.
        if not harness.can_bind("127.0.0.2"):
            self.skipTest("cannot bind 127.0.0.2")
        client = self.login(self.proxy_, source="127.0.0.2")
        self.assertReply(self.send_message(client), 250)
        self.assertReply(client.command("QUIT"), 221)
        try:
            self.message = self.sink_.wait_messages(1, timeout=4 * WAIT)[0]
        except AssertionError as e:
            raise AssertionError("%s\nPostfix maillog:\n%s"
                                 % (e, self.postfix.log())) from None
        self.postfix_received = self.message.headers()[0]

    def test_postfix_received_header_shows_the_client_address(self):
        name, value = self.postfix_received
        self.assertEqual(name, "Received")
        self.assertIn("by postfix.test (Postfix)", value)
        self.assertIn("[127.0.0.2]", value)

    def test_postfix_received_header_shows_the_login(self):
        self.assertIn("(Authenticated sender: %s)" % USER,
                      self.postfix_received[1])

    def test_postfix_received_header_names_the_client_ehlo(self):
        # XCLIENT HELO= is only useful if the EHLO sent after XCLIENT
        # does not replace it with the proxy's own name.
        self.assertRegex(self.postfix_received[1],
                         r"^from %s \(" % re.escape(CLIENT))

    def test_postfix_passes_on_the_proxy_received_header_and_the_body(self):
        rest = backends.strip_first_header(self.message.message)
        self.assertTrue(rest.startswith(b"Received: from %s ([127.0.0.2]) "
                                        b"(authenticated)"
                                        % CLIENT.encode()), rest[:200])
        self.assertIn(b"Hello Bob,\n.a line that starts with a dot\n"
                      b"..and one with two\n", rest)


if __name__ == "__main__":
    unittest.main()
