"""The backend side speaks only what the MTA offered (issue 11), as a
client and the backend MTA see it:

- MAIL and RCPT parameters go to the backend only for an extension the
  backend connection in use announced: SIZE (which the proxy always
  announces and enforces itself) is dropped for a backend without it, so
  smtplib and swaks deliver through a HELO-only smtp-sink and through a
  backend that, like Exim after HELO, answers 501 to any parameter;
- DSN's RET=/ENVID= (MAIL) and NOTIFY=/ORCPT= (RCPT), DELIVERBY's BY=,
  SMTPUTF8 and BODY= to a backend without the extension, BODY=BINARYMIME
  always, and unknown parameters get 555 5.5.4 from the proxy, naming the
  parameter, are logged (event=reject reason=...) and are not relayed;
  with the extension they pass as written; a parameter given twice is
  501;
- a non-ASCII address without SMTPUTF8 (on the MAIL, for a RCPT on its
  transaction's MAIL), or with SMTPUTF8 to a backend without it, gets 553
  5.6.7 and never reaches the backend (RFC 6531 section 3.2, 3.7.4);
- EHLO and HELO after AUTH are answered by the proxy from the backend
  connection's capabilities and never relayed (OpenSMTPD answers a
  second EHLO "503 5.5.1 Invalid command: Already identified"), in order
  behind pipelined commands; mid-transaction they reset it with an RSET
  the client never sees (a refused RSET is a backend failure); the new
  HELO name is the Received header's;
- 8BITMIME is announced only when the backend has it, and BODY=8BITMIME
  to a backend without it is refused;
- commands queued while the session connects to the backend again (after
  an aborted message) are filtered with the new connection's extensions.

Backends and the logged-in proxy come from backends.py; the two scripted
backends that play Exim and OpenSMTPD are here.  Loopback only; every wait
is bounded.
"""

import os
import re
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402
from backends import DEFAULT_CAPS, FULL_CAPS, command_verb  # noqa: E402
from harness import HOSTNAME, WAIT  # noqa: E402
from test_relay import (BODY, RelayTestCase, client_context,  # noqa: E402
                        dot_stuff, lf)

USER = backends.RelayProxy.USER
CLIENT = "client.example"
SENDER = "alice@example.com"
RCPT = "bob@example.net"
UTF8_SENDER = "j\u00f6rg@example.org"
UTF8_RCPT = "\u00e9l\u00e8ve@example.net"


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


def without(caps, *names):
    """caps without the keywords names."""
    return [c for c in caps if c.split()[0].upper() not in names]


def has_parameters(line):
    """Whether a MAIL or RCPT line (bytes) carries anything after its
    path."""
    return re.search(rb">\s*\S", line) is not None


class HeloParamRefusingBackend(backends.RecordingBackend):
    """A non-ESMTP backend (EHLO refused, HELO works) that, as Exim does
    after HELO, answers 501 to any MAIL or RCPT parameter."""

    def __init__(self, test, **kw):
        super().__init__(test, esmtp=False, **kw)

    def _reply(self, conn, verb, text):
        if verb in ("MAIL", "RCPT") and has_parameters(conn.lines[-1]):
            text = "501 5.5.4 Parameters need EHLO"
        super()._reply(conn, verb, text)


class IdentifiedOnceBackend(backends.RecordingBackend):
    """An ESMTP backend that, as OpenSMTPD does, refuses a second EHLO or
    HELO on a connection (XCLIENT, which starts the session anew,
    excepted)."""

    def _reply(self, conn, verb, text):
        if verb in ("EHLO", "HELO"):
            since = []
            for line in conn.lines:
                if command_verb(line) == "XCLIENT":
                    since = []
                elif command_verb(line) in ("EHLO", "HELO"):
                    since.append(line)
            if len(since) > 1:
                text = "503 5.5.1 Invalid command: Already identified"
        super()._reply(conn, verb, text)


class ParamsTestCase(RelayTestCase):

    def logged_in(self, backend, **kw):
        """A RelayProxy in front of backend and a client logged in."""
        proxy = self.proxy(backend, **kw)
        return proxy, self.login(proxy)

    def session_lines(self, backend):
        """The command lines of the session's backend connections."""
        return [line for c in backend.session_connections()
                for line in c.lines]

    def mail_rcpt_lines(self, backend):
        return [line for line in self.session_lines(backend)
                if command_verb(line) in ("MAIL", "RCPT")]

    def assertNotRelayed(self, client, backend, fragment):
        """No command line of a session's backend connection holds
        fragment (bytes), once a NOOP the client sends now has arrived
        there."""
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        lines = self.session_lines(backend)
        self.assertEqual([l for l in lines if fragment in l], [], lines)

    def assertRefusalLogged(self, proxy, client, cmd, reason):
        self.assertTrue(proxy.session_log(
            client, r"\bevent=reject\b", r"\bcmd=%s\b" % cmd,
            r"\breason=%s\b" % reason))

    def smtplib_send(self, proxy):
        """smtplib over STARTTLS: returns the proxy's ESMTP features as
        smtplib saw them after AUTH."""
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("sub"),
                            local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.starttls(context=client_context())
        smtp.ehlo()
        smtp.login(USER, proxy.password)
        features = dict(smtp.esmtp_features)
        self.assertEqual(smtp.sendmail(SENDER, [RCPT], BODY), {})
        smtp.quit()
        return features

    def swaks_send(self, proxy):
        swaks = tlsutil.require_command("swaks")
        path = os.path.join(proxy.dir, "message.txt")
        with open(path, "wb") as f:
            f.write(lf(BODY)[:-1])
        result = tlsutil.run(
            [swaks, "--server", "127.0.0.1", "--port", str(proxy.port("sub")),
             "--ehlo", "swaks.example", "--tls", "--auth", "PLAIN",
             "--auth-user", USER, "--auth-password", proxy.password,
             "--from", SENDER, "--to", RCPT, "--data", "@" + path,
             "--timeout", str(int(WAIT))],
            timeout=3 * WAIT, check=False)
        self.assertEqual(result.returncode, 0, "swaks failed:\n%s%s"
                         % (result.stdout, result.stderr))


# ------------------------------------------------------ HELO-only backends

class HeloOnlyBackend(ParamsTestCase):

    def test_smtplib_and_swaks_deliver_through_a_helo_only_smtp_sink(self):
        sink = self.sink(["-e"])
        proxy = self.proxy(sink)
        features = self.smtplib_send(proxy)
        # smtplib sends SIZE= because the proxy announces SIZE.
        self.assertIn("size", features)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.mail, "<%s>" % SENDER)
        self.assertEqual(message.rcpts, ["<%s>" % RCPT])
        self.assertEqual(message.without_first_header(), lf(BODY))
        # (swaks 20201014 sends no parameter: it delivers either way.)
        self.swaks_send(proxy)
        messages = sink.wait_messages(2)
        self.assertEqual(messages[1].mail, "<%s>" % SENDER)
        self.assertEqual(messages[1].without_first_header(), lf(BODY))

    def test_smtplib_and_swaks_deliver_through_a_backend_refusing_parameters(
            self):
        backend = HeloParamRefusingBackend(self)
        proxy = self.proxy(backend)
        self.smtplib_send(proxy)
        done = backend.wait_complete(1)
        self.assertEqual(done[0].mail, b"MAIL FROM:<%s>" % SENDER.encode())
        self.assertEqual(done[0].rcpts, [b"RCPT TO:<%s>" % RCPT.encode()])
        self.assertTrue(done[0].message().startswith(b"Received: "))
        self.swaks_send(proxy)
        done = backend.wait_complete(2)
        self.assertIn(b"Hello Bob,", done[1].message())
        self.assertEqual([l for l in self.mail_rcpt_lines(backend)
                          if has_parameters(l)], [])

    def test_size_is_still_the_proxys_to_check_for_a_helo_only_backend(self):
        backend = HeloParamRefusingBackend(self)
        proxy, client = self.logged_in(
            backend, limits={"max_message_size": "10K"})
        self.assertReply(client.command("MAIL FROM:<%s> SIZE=20000"
                                        % SENDER), 552, "5.3.4")
        self.assertReply(client.command("MAIL FROM:<%s> SIZE=1x"
                                        % SENDER), 501, "5.5.4")
        self.assertReply(client.command("MAIL FROM:<%s> SIZE=2000"
                                        % SENDER), 250)
        self.assertReply(client.command("NOOP"), 250)
        self.assertEqual(self.mail_rcpt_lines(backend),
                         [b"MAIL FROM:<%s>" % SENDER.encode()])

    def test_parameters_a_helo_only_backend_lacks_are_555(self):
        backend = HeloParamRefusingBackend(self)
        proxy, client = self.logged_in(backend)
        for param in ("BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8", "RET=HDRS",
                      "ENVID=x", "BY=60;R"):
            self.assertReply(client.command("MAIL FROM:<%s> %s"
                                            % (SENDER, param)),
                             555, "5.5.4", text=param.split("=")[0])
        self.assertReply(client.command("NOOP"), 250)
        self.assertEqual(self.mail_rcpt_lines(backend), [])


# -------------------------------------------------------------------- DSN

class Dsn(ParamsTestCase):

    DSN_MAIL = "MAIL FROM:<%s> RET=HDRS ENVID=QQ314159" % SENDER
    DSN_RCPT = ("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE "
            "ORCPT=rfc822;bob+40example.net" % RCPT)

    def test_dsn_parameters_without_dsn_are_555_not_relayed_with_it_pass(
            self):
        backend = self.recorder(caps=without(DEFAULT_CAPS, "DSN"))
        proxy, client = self.logged_in(backend)
        for param in ("RET=HDRS", "ENVID=QQ314159"):
            self.assertReply(client.command("MAIL FROM:<%s> %s"
                                            % (SENDER, param)),
                             555, "5.5.4", text=param.split("=")[0])
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        for param in ("NOTIFY=SUCCESS,FAILURE",
                      "ORCPT=rfc822;bob+40example.net"):
            reply = client.command("RCPT TO:<%s> %s" % (RCPT, param))
            self.assertReply(reply, 555, "5.5.4", text=param.split("=")[0])
            self.assertIn("DSN", reply[1][0])
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("NOOP"), 250)
        self.assertEqual(self.mail_rcpt_lines(backend),
                         [b"MAIL FROM:<%s>" % SENDER.encode(),
                          b"RCPT TO:<%s>" % RCPT.encode()])
        self.assertRefusalLogged(proxy, client, "RCPT", "param_not_offered")

        # A backend with DSN gets them as the client wrote them.
        with_dsn = self.recorder()
        proxy, client = self.logged_in(with_dsn)
        self.assertReply(client.command(self.DSN_MAIL), 250)
        self.assertReply(client.command(self.DSN_RCPT), 250)
        self.assertReply(client.command("NOOP"), 250)
        with_dsn.wait_line(r"^NOOP")
        self.assertEqual(self.mail_rcpt_lines(with_dsn),
                         [self.DSN_MAIL.encode(), self.DSN_RCPT.encode()])

    def test_deliverby_without_deliverby_is_555_and_with_it_passes(self):
        backend = self.recorder(caps=DEFAULT_CAPS + ["DELIVERBY 60"])
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s> BY=120;R" % SENDER),
                         250)
        backend.wait_line(r"BY=120;R$")
        other = self.recorder()
        proxy, client = self.logged_in(other)
        self.assertReply(client.command("MAIL FROM:<%s> BY=120;R" % SENDER),
                         555, "5.5.4", text="DELIVERBY")
        self.assertNotRelayed(client, other, b"BY=")

    def test_unknown_parameter_is_555_even_with_every_extension(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s> X-PRIORITY=1"
                                        % SENDER), 555, "5.5.4",
                         text="X-PRIORITY")
        self.assertReply(client.command("MAIL FROM:<%s> XCLIENT" % SENDER),
                         555, "5.5.4", text="XCLIENT")
        self.assertNotRelayed(client, backend, b"MAIL")
        self.assertRefusalLogged(proxy, client, "MAIL", "unknown_param")

    def test_parameter_given_twice_is_501(self):
        backend = self.recorder()
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s> RET=HDRS ret=FULL"
                                        % SENDER), 501, "5.5.4", text="RET")
        self.assertNotRelayed(client, backend, b"MAIL")

    def test_refusals_in_a_pipelined_group_are_answered_in_order(self):
        backend = self.recorder(caps=without(DEFAULT_CAPS, "DSN"),
                                delays={"MAIL": 0.3})
        proxy, client = self.logged_in(backend)
        client.send(("MAIL FROM:<%s>\r\nRCPT TO:<%s> NOTIFY=NEVER\r\n"
                     "RCPT TO:<%s>\r\nNOOP\r\n" % (SENDER, RCPT, RCPT))
                    .encode())
        replies = [client.read_reply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 555, 250, 250],
                         replies)


# --------------------------------------------------------------- SMTPUTF8

class SmtpUtf8(ParamsTestCase):

    def test_non_ascii_sender_is_553_5_6_7_without_smtputf8_relayed_with_it(
            self):
        backend = self.recorder()
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s>" % UTF8_SENDER),
                         553, "5.6.7", text="SMTPUTF8")
        self.assertNotRelayed(client, backend, b"MAIL")
        self.assertRefusalLogged(proxy, client, "MAIL", "utf8_required")

        # With SMTPUTF8, to a backend that offers it: relayed as written.
        mail = "MAIL FROM:<%s> SMTPUTF8" % UTF8_SENDER
        rcpt = "RCPT TO:<%s>" % UTF8_RCPT
        self.assertReply(client.command(mail), 250)
        self.assertReply(client.command(rcpt), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        done = backend.wait_complete(1)
        self.assertEqual(done[0].mail, mail.encode("utf-8"))
        self.assertEqual(done[0].rcpts, [rcpt.encode("utf-8")])

    def test_non_ascii_recipient_without_smtputf8_on_the_mail_is_553(self):
        backend = self.recorder()
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % UTF8_RCPT), 553,
                         "5.6.7")
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertNotRelayed(client, backend, UTF8_RCPT.encode("utf-8"))

    def test_vrfy_expn_help_noop_arguments_are_plain_ascii_or_501(self):
        backend = self.recorder(caps=backends.DEFAULT_CAPS + ["SMTPUTF8"])
        proxy, client = self.logged_in(backend)
        for verb in ("VRFY", "EXPN", "HELP", "NOOP"):
            for arg in ("j\u00f6rg", "a\tb"):
                self.assertReply(client.command("%s %s" % (verb, arg)),
                                 501, "5.5.2")
        self.assertRefusalLogged(proxy, client, "VRFY", "non_ascii_argument")
        self.assertReply(client.command("VRFY bob"), 252)
        self.assertNotRelayed(client, backend, "j\u00f6rg".encode("utf-8"))
        self.assertNotRelayed(client, backend, b"\t")

    def test_smtputf8_to_a_backend_without_it(self):
        backend = self.recorder(caps=without(DEFAULT_CAPS, "SMTPUTF8"))
        proxy, client = self.logged_in(backend)
        ehlo = client.command("EHLO x.example")
        self.assertNotIn("SMTPUTF8", tlsutil.ehlo_keywords(ehlo), ehlo)
        self.assertReply(client.command("MAIL FROM:<%s> SMTPUTF8"
                                        % UTF8_SENDER), 553, "5.6.7",
                         text="not supported")
        self.assertReply(client.command("MAIL FROM:<%s> SMTPUTF8" % SENDER),
                         555, "5.5.4", text="SMTPUTF8")
        self.assertNotRelayed(client, backend, b"MAIL")


# ---------------------------------------------------------- EHLO after AUTH

class EhloAfterAuth(ParamsTestCase):

    def ehlo_count(self, backend):
        return [command_verb(l) for l in self.session_lines(backend)].count(
            "EHLO")

    def test_second_ehlo_gets_the_proxys_list_not_the_backends_503(self):
        backend = IdentifiedOnceBackend(self, caps=FULL_CAPS)
        proxy, client = self.logged_in(backend, backend_keys={"xclient": "no"})
        reply = client.command("EHLO again.example")
        self.assertReply(reply, 250)
        self.assertEqual(reply[1][0], HOSTNAME)
        keywords = tlsutil.ehlo_keywords(reply)
        for keyword in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN",
                        "ENHANCEDSTATUSCODES"):
            self.assertIn(keyword, keywords, reply)
        for keyword in ("STARTTLS", "AUTH", "XCLIENT", "CHUNKING",
                        "BINARYMIME", "X-UNKNOWN"):
            self.assertNotIn(keyword, keywords, reply)
        self.assertReply(self.send_message(client), 250)
        self.assertEqual(self.ehlo_count(backend), 1,
                         self.session_lines(backend))

    def test_helo_after_auth_gets_250_and_the_proxys_name(self):
        backend = IdentifiedOnceBackend(self)
        proxy, client = self.logged_in(backend)
        self.assertEqual(client.command("HELO again.example"),
                         (250, [HOSTNAME]))
        self.assertReply(self.send_message(client), 250)
        self.assertNotIn("HELO", [command_verb(l) for l in
                                  self.session_lines(backend)])

    def test_pipelined_mail_rcpt_ehlo_are_answered_in_order(self):
        backend = IdentifiedOnceBackend(self, delays={"MAIL": 0.3,
                                                      "RCPT": 0.2})
        proxy, client = self.logged_in(backend)
        client.send(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nEHLO again.example"
                     "\r\nNOOP\r\n" % (SENDER, RCPT)).encode())
        replies = [client.read_reply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 250, 250, 250],
                         replies)
        self.assertTrue(replies[0][1][0].startswith("2.1.0"), replies)
        self.assertTrue(replies[1][1][0].startswith("2.1.5"), replies)
        self.assertEqual(replies[2][1][0], HOSTNAME, replies)
        self.assertIn("PIPELINING", tlsutil.ehlo_keywords(replies[2]))
        self.assertTrue(replies[3][1][0].startswith("2.0.0"), replies)
        # The RSET's own 250 was not the client's: nothing more came.
        self.assertFalse(client.pending(0.3), client.buf)

    def test_ehlo_mid_transaction_resets_it_with_an_rset_at_the_backend(
            self):
        backend = IdentifiedOnceBackend(self)
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("EHLO again.example"), 250)
        verbs = [command_verb(l) for l in self.session_lines(backend)]
        self.assertEqual(verbs[-3:], ["MAIL", "RCPT", "RSET"], verbs)
        # RFC 5321 4.1.4: the transaction is gone (the backend says so).
        self.assertEqual(client.command("DATA")[0], 503)
        # A new one works, and carries the new name.
        self.assertReply(self.send_message(client), 250)
        done = backend.wait_complete(1)
        self.assertTrue(done[0].message().startswith(
            b"Received: from again.example "), done[0].message()[:120])

    def test_ehlo_outside_a_transaction_sends_no_rset(self):
        backend = IdentifiedOnceBackend(self)
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("EHLO again.example"), 250)
        self.assertReply(self.send_message(client), 250)
        self.assertReply(client.command("EHLO third.example"), 250)
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        self.assertNotIn("RSET", [command_verb(l) for l in
                                  self.session_lines(backend)])

    def test_refused_rset_behind_an_ehlo_is_a_backend_failure(self):
        backend = IdentifiedOnceBackend(
            self, replies={"RSET": "554 5.3.0 cannot reset"})
        proxy, client = self.logged_in(backend)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("EHLO again.example"), 451, "4.4.2")
        self.assertReply(client.read_reply(), 421, "4.4.2")
        client.expect_closed()

    def test_ehlo_after_auth_with_a_helo_only_backend(self):
        backend = HeloParamRefusingBackend(self)
        proxy, client = self.logged_in(backend)
        reply = client.command("EHLO again.example")
        self.assertReply(reply, 250)
        self.assertEqual(sorted(tlsutil.ehlo_keywords(reply)),
                         ["LIMITS", "PIPELINING", "SIZE"], reply)
        self.assertEqual(client.command("HELO again.example"),
                         (250, [HOSTNAME]))
        self.assertReply(self.send_message(client), 250)
        # Only the hand-over's EHLO (refused) and HELO.
        self.assertEqual([command_verb(l) for l in self.session_lines(backend)
                          if command_verb(l) in ("EHLO", "HELO")],
                         ["EHLO", "HELO"], self.session_lines(backend))


# --------------------------------------------------------------- 8BITMIME

class EightBitMime(ParamsTestCase):

    def test_body_8bitmime_to_a_backend_without_8bitmime(self):
        backend = self.recorder(caps=without(DEFAULT_CAPS, "8BITMIME"))
        proxy = self.proxy(backend)
        proxy.wait_probe()
        client = self.tls_client(proxy)
        self.assertNotIn("8BITMIME", tlsutil.ehlo_keywords(client.ehlo))
        self.assertReply(self.auth(proxy, client), 235)
        self.assertNotIn("8BITMIME", tlsutil.ehlo_keywords(
            client.command("EHLO " + CLIENT)))
        self.assertReply(client.command("MAIL FROM:<%s> BODY=8BITMIME"
                                        % SENDER), 555, "5.5.4",
                         text="8BITMIME")
        self.assertNotRelayed(client, backend, b"MAIL")
        self.assertRefusalLogged(proxy, client, "MAIL", "param_not_offered")

    def test_body_binarymime_is_555_even_when_the_backend_has_it(self):
        backend = self.recorder(caps=FULL_CAPS)
        proxy, client = self.logged_in(backend, backend_keys={"xclient": "no"})
        self.assertReply(client.command("MAIL FROM:<%s> BODY=BINARYMIME"
                                        % SENDER), 555, "5.5.4",
                         text="BINARYMIME")
        self.assertReply(client.command("MAIL FROM:<%s> BODY=8BITMIME"
                                        % SENDER), 250)
        self.assertNotRelayed(client, backend, b"BINARYMIME")


# -------------------------------------------------------------- reconnect

class Reconnect(ParamsTestCase):

    def test_commands_queued_while_reconnecting_meet_the_new_connection(
            self):
        # A message over max_message_size drops the backend connection;
        # what the client pipelines next is queued while the session
        # connects again, when the new connection's extensions are not
        # known yet: they decide when the commands go.
        backend = self.recorder()
        proxy, client = self.logged_in(
            backend, limits={"max_message_size": "1K"})
        big = b"Subject: big\r\n\r\n" + b"x" * 4000 + b"\r\n"
        self.assertReply(self.send_message(client, body=big), 552, "5.3.4")
        backend.caps = without(DEFAULT_CAPS, "DSN", "SIZE")
        client.send(("RSET\r\nMAIL FROM:<%s> RET=HDRS\r\n"
                     "MAIL FROM:<%s> SIZE=100\r\nEHLO again.example\r\n"
                     % (SENDER, SENDER)).encode())
        replies = [client.read_reply() for _ in range(4)]
        self.assertEqual([r[0] for r in replies], [250, 555, 250, 250],
                         replies)
        self.assertIn("DSN", replies[1][1][0])
        keywords = tlsutil.ehlo_keywords(replies[3])
        self.assertNotIn("DSN", keywords, replies[3])
        self.assertIn("SIZE", keywords, replies[3])   # the proxy's own
        self.assertReply(client.command("NOOP"), 250)
        backend.wait_line(r"^NOOP")
        last = backend.session_connections()[-1]
        mails = [l for l in last.lines if command_verb(l) == "MAIL"]
        self.assertEqual(mails, [b"MAIL FROM:<%s>" % SENDER.encode()],
                         last.lines)
        self.assertRefusalLogged(proxy, client, "MAIL", "param_not_offered")


if __name__ == "__main__":
    unittest.main()
