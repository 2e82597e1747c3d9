"""TLS as real clients see it (DESIGN.md "TLS" and the STARTTLS part of
"Pre-auth dialogue"): STARTTLS and implicit TLS, what EHLO offers before and
after, STARTTLS command injection (CVE-2011-0411), plaintext on a TLS port,
handshake timeouts, protocol versions and cipher settings, SNI, ALPN
(ALPACA), certificate reload on SIGHUP, client certificates, session
resumption and the "event=tls" log line.

Clients: raw sockets with Python's ssl, smtplib, and where installed
openssl s_client, swaks, curl and gnutls-cli (each such test is skipped
with a message when its command is missing).  Certificates are made with the openssl
command by tlsutil.py.  Loopback only; configured timeouts are short and
every wait is bounded (harness.WAIT).
"""

import os
import re
import shutil
import smtplib
import socket
import ssl
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tlsutil  # noqa: E402
from harness import HOSTNAME, WAIT, ProxyTestCase  # noqa: E402
from tlsutil import (OTHER_HOSTNAME, TlsProxy, ehlo_auth,  # noqa: E402
                     ehlo_keywords, handshake_fails, implicit, starttls)

MUST_STARTTLS = "Must issue a STARTTLS command first"


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()    # SkipTest here, once, without openssl


def pki():
    return tlsutil.shared_pki()


def tls_fields(proxy, client):
    """The fields of the "event=tls" log line of a Raw client's session."""
    return proxy.session_log(client, r"\bevent=tls\b")


def wrap_tls(client, context, server_hostname=HOSTNAME, session=None):
    """Raw.wrap_tls with an SSLSession to resume."""
    if client.buf:
        raise AssertionError("plaintext received before TLS: %r"
                             % client.buf)
    client.sock = context.wrap_socket(client.sock,
                                      server_hostname=server_hostname,
                                      session=session)
    return client


def close_tls(client):
    """QUIT, then a clean TLS close (both close_notify alerts), so that the
    session is resumable by session id as well as by ticket."""
    client.command("QUIT")
    try:
        client.sock.unwrap()
    except (ssl.SSLError, OSError):
        pass
    client.close()


class TlsTestCase(ProxyTestCase):

    def proxy(self, **kw):
        return TlsProxy(self, pki(), **kw)

    def run_client(self, proxy, args, input, expect_success=True):
        """Runs a client command (bounded); if its exit status is not the
        expected one, fails with its output and the proxy's log."""
        result = tlsutil.run(args, input=input, check=False)
        if (result.returncode == 0) != expect_success:
            self.fail("%s exited with %d:\n%s%s\n---- submitproxy log "
                      "----\n%s" % (" ".join(args), result.returncode,
                                    result.stdout, result.stderr,
                                    proxy.log()))
        return result

    def starttls_client(self, proxy, context=None, listener="starttls",
                        server_hostname=HOSTNAME):
        """A client through EHLO, STARTTLS and the handshake (not yet
        past the second EHLO)."""
        client = self.ehloed(proxy, listener=listener)
        return starttls(client, context or pki().client_context(),
                        server_hostname=server_hostname)


# -------------------------------------------------------------- STARTTLS

class StartTls(TlsTestCase):

    def test_ehlo_before_tls_offers_starttls_and_not_auth(self):
        proxy = self.proxy()
        client = self.greeted(proxy, listener="starttls")
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertIn("STARTTLS", ehlo_keywords(reply), reply)
        self.assertIsNone(ehlo_auth(reply), reply)

    def test_starttls_answers_220_ready_then_the_handshake_completes(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220, "2.0.0",
                         "Ready to start TLS")
        client.wrap_tls(pki().client_context())
        self.assertIn(client.sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Default,CN=%s" % HOSTNAME)

    def test_no_greeting_is_repeated_after_starttls(self):
        # RFC 3207 §4.2: after the handshake the client speaks first.
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertEqual(reply[1][0].split()[0], HOSTNAME, reply)

    def test_ehlo_after_starttls_offers_auth_plain_login_and_not_starttls(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertNotIn("STARTTLS", ehlo_keywords(reply), reply)
        self.assertEqual(ehlo_auth(reply), ["PLAIN", "LOGIN"], reply)

    def test_starttls_inside_tls_is_refused_with_503(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertReply(client.command("STARTTLS"), 503, "5.5.1")
        # The session goes on, still encrypted.
        self.assertReply(client.command("NOOP"), 250)

    def test_starttls_with_an_argument_is_refused_with_501(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS now"), 501)
        # Still in plaintext, and STARTTLS still works.
        starttls(client, pki().client_context())
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_starttls_on_a_plain_listener_is_502(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="plain")
        self.assertReply(client.command("STARTTLS"), 502, "5.5.1")
        self.assertReply(client.command("NOOP"), 250)

    def test_mail_before_tls_is_refused_530_must_issue_starttls(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("MAIL FROM:<a@example.org>"), 530,
                         "5.7.0", MUST_STARTTLS)

    def test_auth_before_tls_is_refused_530_must_issue_starttls(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("AUTH PLAIN AHVzZXIAcGFzcw=="), 530,
                         "5.7.0", MUST_STARTTLS)

    def test_mail_after_tls_is_refused_530_authentication_required(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertReply(client.command("MAIL FROM:<a@example.org>"), 530,
                         "5.7.0", "Authentication required")

    def test_auth_over_tls_with_unknown_credentials_is_never_accepted(self):
        # Over TLS AUTH is allowed; credentials nobody has are refused
        # (454 4.7.0 while authentication is not wired up, 535 once it
        # is), never 235.  Short auth delays: no PAM service is set up.
        proxy = self.proxy(extra={"auth": {"failure_delay": "0s",
                                           "timeout": "1s"}})
        client = self.starttls_client(proxy)
        self.assertReply(client.command("EHLO client.example"), 250)
        code, lines = client.command("AUTH PLAIN AHVzZXIAcGFzcw==")
        self.assertIn(code, (454, 535), lines)

    def test_auth_after_starttls_without_a_new_ehlo_is_503(self):
        # RFC 3207 §4.2: the EHLO from before TLS is forgotten.
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(client.command("AUTH PLAIN AHVzZXIAcGFzcw=="), 503,
                         "5.5.1")

    def test_ehlo_pipelined_with_starttls_in_one_send_is_accepted(self):
        # RFC 2920: STARTTLS may end a pipelined group.
        proxy = self.proxy()
        client = self.greeted(proxy, listener="starttls")
        client.send(b"EHLO client.example\r\nSTARTTLS\r\n")
        self.assertReply(client.read_reply(), 250)
        self.assertReply(client.read_reply(), 220, "2.0.0")
        client.wrap_tls(pki().client_context())
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_plaintext_pipelined_after_starttls_closes_the_connection(self):
        # CVE-2011-0411: a command sent in the clear behind STARTTLS must
        # never be executed as if it had come through TLS.
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        client.send(b"STARTTLS\r\nNOOP\r\n")
        self.assertReply(client.read_reply(), 220)
        client.expect_closed()
        proxy.session_log(client, r"\bevent=reject\b",
                          r"\breason=starttls_injection\b")

    def test_partial_line_pipelined_after_starttls_closes_the_connection(self):
        # CVE-2011-0411 with half a command: it would be completed by the
        # first bytes sent inside TLS.
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        client.send(b"STARTTLS\r\nRSE")
        self.assertReply(client.read_reply(), 220)
        client.expect_closed()
        proxy.session_log(client, r"\bevent=reject\b",
                          r"\breason=starttls_injection\b")

    def test_plaintext_sent_after_the_220_is_not_answered(self):
        # The injected bytes arrive after the 220 and before a handshake:
        # they are not TLS, so the connection ends without a reply to them.
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        client.send(b"NOOP\r\n")
        data = client.read_until_closed()
        self.assertNotIn(b"250", data)
        proxy.session_log(client, r"\bevent=tls_fail\b",
                          r"\breason=not_tls\b")

    def test_require_tls_no_still_keeps_auth_off_the_clear_link(self):
        proxy = self.proxy(listeners={
            "starttls": {"mode": "starttls", "require_tls": "no"}})
        client = self.ehloed(proxy, listener="starttls")
        reply = client.command("EHLO client.example")
        self.assertIn("STARTTLS", ehlo_keywords(reply), reply)
        self.assertIsNone(ehlo_auth(reply), reply)
        mail = client.command("MAIL FROM:<a@example.org>")
        self.assertReply(mail, 530, "5.7.0", "Authentication required")
        self.assertEqual(client.command("AUTH PLAIN AHVzZXIAcGFzcw==")[0],
                         538)

    def test_quit_over_tls_is_answered_221_and_ends_with_close_notify(self):
        # A truncation (TCP FIN without close_notify) would look like an
        # attack to a careful client and makes session-id resumption fail.
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(client.command("QUIT"), 221)
        client.sock.settimeout(WAIT)
        client.sock.unwrap()  # raises SSLEOFError without close_notify

    def test_client_close_notify_is_answered_with_close_notify(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(client.command("EHLO client.example"), 250)
        client.sock.settimeout(WAIT)
        client.sock.unwrap()  # raises unless the proxy answers in kind
        proxy.session_log(client, r"\bevent=disconnect\b")

    def test_ehlo_sent_with_the_client_finished_is_answered(self):
        # TLS 1.3 clients may send their first command in the same
        # segment as their Finished message.
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        tls = tlsutil.BioClient(client.sock, pki().client_context(
            minimum=ssl.TLSVersion.TLSv1_3))
        client.sock.sendall(tls.start())
        tls.finish_handshake(send_last_flight=False)
        tls.tls.write(b"EHLO client.example\r\n")
        client.sock.sendall(tls.outgoing.read())  # Finished + EHLO
        line = tls.read_line()
        self.assertTrue(line.startswith(b"250-%s" % HOSTNAME.encode()), line)

    def test_corrupted_record_after_the_handshake_ends_the_session(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        tls = tlsutil.BioClient(client.sock, pki().client_context())
        client.sock.sendall(tls.start())
        tls.finish_handshake()
        # An application-data record whose authentication tag is wrong.
        client.sock.sendall(b"\x17\x03\x03\x00\x20" + b"\xa5" * 32)
        client.read_until_closed()
        fields = proxy.session_log(client, r"\bevent=tls_error\b")
        self.assertEqual(fields.get("state"), "command", fields)
        self.assertTrue(proxy.running())

    def test_idle_timeout_after_tls_is_a_421_sent_over_tls(self):
        proxy = self.proxy(limits={"idle_timeout": "1s"})
        client = self.starttls_client(proxy)
        self.assertReply(client.read_reply(timeout=WAIT), 421, "4.4.2")
        client.expect_closed()

    def test_starttls_behind_parked_pipelined_input_completes_the_handshake(
            self):
        # The client reads nothing until it has sent everything: the
        # replies to the NOOPs pile up, the proxy parks the rest of its
        # input and stops reading, and STARTTLS comes out of that parked
        # input once the client reads.  The handshake then must be read.
        # (9000 NOOPs: no junk limit here.)
        proxy = self.proxy(limits={"max_junk_commands": "0"})
        client = self.ehloed(proxy, listener="starttls")
        # A small receive buffer: the replies back up at the proxy however
        # large the system's default buffers are.
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.send(b"NOOP\r\n" * 9000 + b"STARTTLS\r\n")
        codes = [client.read_reply()[0] for _ in range(9001)]
        self.assertEqual(codes, [250] * 9000 + [220])
        try:
            client.wrap_tls(pki().client_context())
        except (ssl.SSLError, OSError) as e:
            self.fail("TLS handshake after STARTTLS from parked input: %r"
                      % e)
        self.assertReply(client.command("EHLO client.example"), 250)


# ---------------------------------------------------------- implicit TLS

class ImplicitTls(TlsTestCase):

    def test_greeting_is_sent_over_tls_after_the_handshake(self):
        # A plaintext greeting before the handshake would have broken it.
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.wrap_tls(pki().client_context())
        code, lines = client.read_reply()
        self.assertEqual(code, 220, lines)
        self.assertEqual(lines, ["%s ESMTP" % HOSTNAME])

    def test_ehlo_offers_auth_plain_login_and_never_starttls(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertNotIn("STARTTLS", ehlo_keywords(reply), reply)
        self.assertEqual(ehlo_auth(reply), ["PLAIN", "LOGIN"], reply)

    def test_starttls_on_implicit_tls_is_refused_and_the_session_goes_on(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        self.assertReply(client.command("EHLO client.example"), 250)
        code, lines = client.command("STARTTLS")
        self.assertIn(code, (502, 503), lines)
        self.assertReply(client.command("NOOP"), 250)

    def test_mail_over_implicit_tls_is_refused_530_authentication_required(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertReply(client.command("MAIL FROM:<a@example.org>"), 530,
                         "5.7.0", "Authentication required")

    def test_early_talker_inside_implicit_tls_gets_554_over_tls(self):
        # greeting_delay counts from the end of the handshake (RFC 8314
        # §3.3: the greeting comes after it); a client that talks first
        # is refused inside TLS.
        proxy = self.proxy(limits={"greeting_delay": "1s"})
        client = implicit(proxy, pki().client_context(),
                          greeting=False)
        client.send(b"EHLO client.example\r\n")
        self.assertReply(client.read_reply(), 554)
        client.read_until_closed()
        proxy.session_log(client, r"\bevent=reject\b",
                          r"\breason=early_talker\b")

    def test_replies_larger_than_a_tls_record_all_arrive(self):
        # 5000 pipelined NOOPs in one send: about 30 KiB of input and of
        # replies, more than one 16 KiB TLS record each way.  (No junk
        # limit for these NOOPs.)
        proxy = self.proxy(limits={"max_junk_commands": "0"})
        client = implicit(proxy, pki().client_context())
        count = 5000
        client.send(b"NOOP\r\n" * count)
        for i in range(count):
            code, lines = client.read_reply()
            self.assertEqual(code, 250, "reply %d: %r" % (i, lines))
        self.assertReply(client.command("QUIT"), 221)

    def test_client_hello_arriving_one_byte_at_a_time_completes(self):
        # TCP may deliver a record in any number of pieces.
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = tlsutil.BioClient(client.sock, pki().client_context())
        hello = tls.start()
        for i in range(len(hello)):
            client.sock.sendall(hello[i:i + 1])
        tls.finish_handshake()
        self.assertEqual(tls.read_line(), b"220 %s ESMTP\r\n"
                         % HOSTNAME.encode())

    def test_plaintext_on_the_implicit_tls_port_is_closed_and_logged(self):
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.send(b"EHLO client.example\r\n")
        data = client.read_until_closed()
        self.assertNotIn(b"220", data)
        self.assertNotIn(b"250", data)
        fields = proxy.session_log(client, r"\bevent=tls_fail\b")
        self.assertEqual(fields.get("reason"), "not_tls", fields)
        self.assertEqual(fields.get("listener"), "implicit", fields)
        self.assertEqual(fields.get("client_max_version"), "unknown", fields)
        self.assertIn("plaintext", fields.get("detail", ""), fields)
        # The proxy keeps serving.
        implicit(proxy, pki().client_context())

    def test_client_hello_already_queued_at_accept_is_not_an_early_talker(self):
        # On an implicit-TLS port the client speaks first: a ClientHello
        # that is in the socket before the proxy accepts (a busy proxy) is
        # not "talking before the greeting".  The proxy is stopped so that
        # the ClientHello is queued before accept().
        proxy = self.proxy()
        proxy.suspend()
        # The kernel completes the TCP handshake from the listen backlog.
        client = proxy.connect("implicit")
        context = pki().client_context()
        tls = context.wrap_socket(client.sock, server_hostname=HOSTNAME,
                                  do_handshake_on_connect=False)
        client.sock = tls
        tls.setblocking(False)
        try:
            tls.do_handshake()    # sends the ClientHello, cannot finish
        except ssl.SSLWantReadError:
            pass
        tls.setblocking(True)
        proxy.resume()
        tls.settimeout(WAIT)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            self.fail("handshake failed (%r); log:\n%s" % (e, proxy.log()))
        self.assertReply(client.read_reply(), 220)


class ConnectionSlots(TlsTestCase):

    def test_failed_and_timed_out_handshakes_release_their_connection_slots(self):
        proxy = self.proxy(limits={"max_connections_per_address": "2",
                                   "handshake_timeout": "1s"})
        for _ in range(3):      # refused by ALPN
            handshake_fails(proxy, "implicit",
                            pki().client_context(alpn=["http/1.1"]))
        for _ in range(2):      # silent until the handshake timeout
            proxy.connect("implicit").expect_closed()
        for _ in range(2):      # reset in the middle of the handshake
            client = proxy.connect("implicit")
            tlsutil.wait_accepted(proxy, client)
            client.sock.sendall(tlsutil.BioClient(
                client.sock, pki().client_context()).start())
            client.abort()
        proxy.wait_log_count(7, r"\bevent=disconnect\b")
        # Both slots are free again: two sessions at once get through.
        first = implicit(proxy, pki().client_context())
        second = implicit(proxy, pki().client_context())
        self.assertReply(first.command("NOOP"), 250)
        self.assertReply(second.command("NOOP"), 250)

    def test_client_resetting_mid_handshake_does_not_disturb_others(self):
        proxy = self.proxy()
        other = implicit(proxy, pki().client_context())
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock.sendall(tlsutil.BioClient(
            client.sock, pki().client_context()).start())
        client.abort()
        proxy.wait_log_count(1, r"\bevent=disconnect\b")
        self.assertReply(other.command("NOOP"), 250)
        implicit(proxy, pki().client_context())


# ------------------------------------------------------ handshake timeout

class HandshakeTimeout(TlsTestCase):

    def assertHandshakeTimeoutLogged(self, proxy, client):
        fields = proxy.session_log(client, r"\bevent=tls_fail\b",
                                   r"\breason=timeout\b")
        self.assertEqual(fields.get("detail"), "handshake timeout", fields)

    def test_silent_client_on_implicit_tls_is_dropped_at_handshake_timeout(self):
        proxy = self.proxy(limits={"handshake_timeout": "1s"})
        client = proxy.connect("implicit")
        client.expect_closed(timeout=WAIT)
        self.assertHandshakeTimeoutLogged(proxy, client)

    def test_silent_client_after_starttls_is_dropped_at_handshake_timeout(self):
        proxy = self.proxy(limits={"handshake_timeout": "1s",
                                   "idle_timeout": "1h"})
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        client.expect_closed(timeout=WAIT)
        self.assertHandshakeTimeoutLogged(proxy, client)

    def test_client_stalling_inside_the_client_hello_is_dropped(self):
        # A record header announcing 512 bytes, then nothing.
        proxy = self.proxy(limits={"handshake_timeout": "1s"})
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        client.read_until_closed(timeout=WAIT)
        self.assertHandshakeTimeoutLogged(proxy, client)

    def test_handshake_timeout_does_not_cut_an_established_session(self):
        proxy = self.proxy(limits={"handshake_timeout": "1s",
                                   "idle_timeout": "1h"})
        client = implicit(proxy, pki().client_context())
        # Wait for a later session to time out: by then the first one's
        # handshake timer would have fired too, had it been left running.
        late = proxy.connect("implicit")
        late.expect_closed(timeout=WAIT)
        self.assertReply(client.command("NOOP"), 250)


# ------------------------------------------------ versions and ciphers

class ProtocolVersions(TlsTestCase):

    def assertLegacyRefused(self, maximum):
        context = tlsutil.legacy_client_context(maximum)
        if context is None:
            self.skipTest("the local OpenSSL cannot make a %s client"
                          % maximum.name)
        proxy = self.proxy()
        handshake_fails(proxy, "implicit", context)
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        fields = harness.parse_log_fields(line)
        self.assertEqual(fields.get("reason"), "protocol_version", line)
        self.assertEqual(fields.get("client_max_version"),
                         {ssl.TLSVersion.TLSv1: "TLSv1",
                          ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[maximum], line)
        self.assertFalse(proxy.log_lines(r"\bevent=tls\b"), proxy.log())
        # And the proxy still serves a modern client.
        implicit(proxy, pki().client_context())

    def test_tls_1_1_client_is_refused_by_default(self):
        self.assertLegacyRefused(ssl.TLSVersion.TLSv1_1)

    def test_tls_1_0_client_is_refused_by_default(self):
        self.assertLegacyRefused(ssl.TLSVersion.TLSv1)

    def test_tls_1_1_refusal_is_logged_as_unsupported_protocol(self):
        context = tlsutil.legacy_client_context(ssl.TLSVersion.TLSv1_1)
        if context is None:
            self.skipTest("the local OpenSSL cannot make a TLS 1.1 client")
        proxy = self.proxy()
        handshake_fails(proxy, "implicit", context)
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        self.assertRegex(line, r'detail="unsupported protocol"', line)

    def test_openssl_s_client_tls1_1_is_refused_by_default(self):
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy()
        result = tlsutil.run(
            [openssl, "s_client", "-connect",
             "127.0.0.1:%d" % proxy.port("starttls"), "-starttls", "smtp",
             "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-ign_eof",
             "-crlf"],
            input="EHLO client.example\r\nQUIT\r\n", check=False)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertNotIn("AUTH PLAIN", result.stdout)
        proxy.wait_log(r"\bevent=tls_fail\b", r"\breason=protocol_version\b",
                       r"\bclient_max_version=TLSv1\.1\b")
        self.assertFalse(proxy.log_lines(r"\bevent=tls\b"), proxy.log())
        implicit(proxy, pki().client_context())

    def test_tls_1_2_client_is_accepted_by_default(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(client.sock.version(), "TLSv1.2")
        self.assertEqual(tls_fields(proxy, client)["version"], "TLSv1.2")

    def test_tls_1_3_is_negotiated_when_both_sides_can(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        self.assertEqual(client.sock.version(), "TLSv1.3")

    def test_min_version_tls_1_3_refuses_a_tls_1_2_client(self):
        proxy = self.proxy(tls={"min_version": "TLSv1.3"})
        handshake_fails(proxy, "implicit", pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2))
        proxy.wait_log(r"\bevent=tls_fail\b", r"\breason=protocol_version\b",
                       r"\bclient_max_version=TLSv1\.2\b")
        self.assertFalse(proxy.log_lines(r"\bevent=tls\b"), proxy.log())

    def test_min_version_tls_1_3_refuses_a_tls_1_2_client_after_starttls(self):
        proxy = self.proxy(tls={"min_version": "TLSv1.3"})
        handshake_fails(proxy, "starttls", pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2), starttls_first=True)
        proxy.wait_log(r"\bevent=tls_fail\b", r"\blistener=starttls\b",
                       r"\breason=protocol_version\b",
                       r"\bclient_max_version=TLSv1\.2\b")

    def test_min_version_tls_1_3_accepts_a_tls_1_3_client(self):
        proxy = self.proxy(tls={"min_version": "TLSv1.3"})
        client = implicit(proxy, pki().client_context())
        self.assertEqual(client.sock.version(), "TLSv1.3")

    def test_ciphersuites_limits_the_tls_1_3_suites(self):
        suite = "TLS_CHACHA20_POLY1305_SHA256"
        proxy = self.proxy(tls={"ciphersuites": suite})
        client = implicit(proxy, pki().client_context())
        self.assertEqual(client.sock.cipher()[0], suite)
        self.assertEqual(tls_fields(proxy, client)["cipher"], suite)

    def test_ciphers_limits_the_tls_1_2_ciphers(self):
        cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
        proxy = self.proxy(tls={"ciphers": cipher})
        client = implicit(proxy, pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(client.sock.cipher()[0], cipher)
        self.assertEqual(tls_fields(proxy, client)["cipher"], cipher)

    def test_tls_1_2_client_without_a_shared_cipher_is_refused(self):
        proxy = self.proxy(tls={"ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"})
        handshake_fails(proxy, "implicit", pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2,
            ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        self.assertIn("reason=no_shared_cipher", line)
        self.assertIn('detail="no shared cipher"', line)

    def test_server_cipher_preference_wins_over_the_client_order(self):
        # The server's list puts CHACHA20 first; the client prefers AES.
        proxy = self.proxy(tls={
            "ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305:"
                       "ECDHE-ECDSA-AES256-GCM-SHA384"})
        client = implicit(proxy, pki().client_context(
            maximum=ssl.TLSVersion.TLSv1_2,
            ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:"
                    "ECDHE-ECDSA-CHACHA20-POLY1305"))
        self.assertEqual(client.sock.cipher()[0],
                         "ECDHE-ECDSA-CHACHA20-POLY1305")

    def test_client_initiated_renegotiation_is_refused(self):
        # DESIGN "no renegotiation" (and CVE-2011-1473 renegotiation DoS):
        # s_client's "R" asks for a second TLS 1.2 handshake; the proxy
        # refuses it and never logs a second "event=tls".
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy(limits={"idle_timeout": "1h"})
        client = tlsutil.Interactive(self, [
            openssl, "s_client", "-connect",
            "127.0.0.1:%d" % proxy.port("starttls"), "-starttls", "smtp",
            "-tls1_2", "-no_ign_eof", "-crlf"])
        client.expect(r"250 LIMITS RCPTMAX=")
        client.send("R\n")
        client.expect(r"RENEGOTIATING")
        status = client.wait()
        if status is None:
            # Still connected: the renegotiation must not have happened.
            client.send("NOOP\n")
            client.expect(r"250 2\.0\.0")
        self.assertEqual(len(proxy.log_lines(r"\bevent=tls\b")), 1,
                         proxy.log())
        self.assertNotRegex(client.output, r"(?s)RENEGOTIATING.*"
                            r"(verify return|Cipher is)", client.output)

    def test_tls_1_3_key_update_from_the_client_is_honoured(self):
        # RFC 8446 §4.6.3: the session goes on under new keys.
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy(limits={"idle_timeout": "1h"})
        client = tlsutil.Interactive(self, [
            openssl, "s_client", "-connect",
            "127.0.0.1:%d" % proxy.port("starttls"), "-starttls", "smtp",
            "-tls1_3", "-no_ign_eof", "-crlf"])
        client.expect(r"250 LIMITS RCPTMAX=")
        client.send("K\n")     # KeyUpdate, asking the server to update too
        client.expect(r"KEYUPDATE")
        client.send("NOOP\n")
        client.expect(r"250 2\.0\.0")
        client.send("quit\n")  # lower case: "Q..." is s_client's quit
        client.expect(r"221 ")


# -------------------------------------------------------- openssl s_client

class OpensslSClient(TlsTestCase):

    def s_client(self, proxy, listener, version, starttls_smtp):
        openssl = tlsutil.require_command("openssl")
        args = [openssl, "s_client", "-connect",
                "127.0.0.1:%d" % proxy.port(listener), version,
                "-servername", HOSTNAME, "-CAfile", pki().ca_cert,
                "-verify_return_error", "-ign_eof", "-crlf"]
        if starttls_smtp:
            args += ["-starttls", "smtp", "-name", "client.example"]
        return self.run_client(proxy, args, "EHLO client.example\nQUIT\n")

    def assertSession(self, result, version):
        out = result.stdout
        if version == "TLSv1.3":
            self.assertIn("New, TLSv1.3", out)
        else:
            self.assertRegex(out, r"Protocol\s*:\s*TLSv1\.2")
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertRegex(out, r"250[ -]AUTH PLAIN LOGIN")
        self.assertNotIn("250-STARTTLS", out.split("---")[-1])
        self.assertRegex(out, r"221[ -]")

    def test_s_client_starttls_smtp_tls1_2(self):
        proxy = self.proxy()
        self.assertSession(self.s_client(proxy, "starttls", "-tls1_2", True),
                           "TLSv1.2")

    def test_s_client_starttls_smtp_tls1_3(self):
        proxy = self.proxy()
        self.assertSession(self.s_client(proxy, "starttls", "-tls1_3", True),
                           "TLSv1.3")

    def test_s_client_implicit_tls1_2(self):
        proxy = self.proxy()
        result = self.s_client(proxy, "implicit", "-tls1_2", False)
        self.assertSession(result, "TLSv1.2")
        self.assertIn("220 %s ESMTP" % HOSTNAME, result.stdout)

    def test_s_client_implicit_tls1_3(self):
        proxy = self.proxy()
        result = self.s_client(proxy, "implicit", "-tls1_3", False)
        self.assertSession(result, "TLSv1.3")
        self.assertIn("220 %s ESMTP" % HOSTNAME, result.stdout)


# ---------------------------------------------------------------- smtplib

class Smtplib(TlsTestCase):

    def test_smtplib_starttls_verifies_the_certificate_and_then_sees_auth(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                            local_hostname="client.example", timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        self.assertTrue(smtp.has_extn("starttls"))
        self.assertFalse(smtp.has_extn("auth"))
        code, _ = smtp.starttls(context=pki().client_context())
        self.assertEqual(code, 220)
        smtp.ehlo()
        self.assertFalse(smtp.has_extn("starttls"))
        self.assertEqual(smtp.esmtp_features.get("auth", "").split(),
                         ["PLAIN", "LOGIN"])
        with self.assertRaises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.org", ["b@example.org"], b"x\r\n")
        self.assertEqual(refused.exception.smtp_code, 530)
        self.assertEqual(smtp.quit()[0], 221)

    def test_smtplib_smtp_ssl_verifies_the_certificate_and_sees_auth(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("implicit"),
                                local_hostname="client.example",
                                context=pki().client_context(), timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        self.assertFalse(smtp.has_extn("starttls"))
        self.assertEqual(smtp.esmtp_features.get("auth", "").split(),
                         ["PLAIN", "LOGIN"])
        self.assertEqual(smtp.quit()[0], 221)

    def test_smtplib_starttls_with_an_unverified_context_works(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                            timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.starttls(context=pki().client_context(verify=False))
        self.assertEqual(smtp.ehlo()[0], 250)
        self.assertEqual(smtp.noop()[0], 250)
        self.assertEqual(smtp.quit()[0], 221)


# ------------------------------------------------------------ swaks, curl

class Swaks(TlsTestCase):

    def swaks(self, proxy, listener, flag):
        swaks = tlsutil.require_command("swaks")
        return self.run_client(
            proxy, [swaks, "--server", "127.0.0.1", "--port",
                    str(proxy.port(listener)), flag, "--quit-after", "EHLO",
                    "--ehlo", "client.example", "--to", "b@example.org"],
            None)

    def test_swaks_starttls_sees_auth_plain_login_over_tls(self):
        proxy = self.proxy()
        out = self.swaks(proxy, "starttls", "--tls").stdout
        self.assertIn("STARTTLS", out)
        self.assertRegex(out, r"TLS started")
        after_tls = out.split("TLS started", 1)[1]
        self.assertIn("AUTH PLAIN LOGIN", after_tls)
        self.assertNotIn("250-STARTTLS", after_tls)

    def test_swaks_implicit_tls_sees_auth_plain_login(self):
        proxy = self.proxy()
        out = self.swaks(proxy, "implicit", "--tlsc").stdout
        self.assertRegex(out, r"TLS started")
        self.assertIn("220 %s ESMTP" % HOSTNAME, out)
        self.assertIn("AUTH PLAIN LOGIN", out)
        self.assertNotIn("STARTTLS", out.split("TLS started", 1)[1])


class Curl(TlsTestCase):

    def curl(self, proxy, url, *flags):
        curl = tlsutil.require_command("curl")
        with tempfile.NamedTemporaryFile("w", suffix=".eml",
                                         delete=False) as f:
            f.write("Subject: test\r\n\r\nbody\r\n")
        self.addCleanup(os.unlink, f.name)
        # curl must fail: MAIL needs AUTH.
        result = self.run_client(
            proxy, [curl, "-v", "--max-time", str(int(WAIT)), "--cacert",
                    pki().ca_cert] + list(flags) +
            [url, "--mail-from", "a@example.org", "--mail-rcpt",
             "b@example.org", "-T", f.name], None, expect_success=False)
        return result.stderr

    def test_curl_ssl_reqd_starttls_completes_the_handshake_then_gets_530(self):
        proxy = self.proxy()
        err = self.curl(proxy, "smtp://127.0.0.1:%d/client.example"
                        % proxy.port("starttls"), "--ssl-reqd")
        self.assertIn("> STARTTLS", err)
        self.assertRegex(err, r"SSL connection using TLSv1\.[23]")
        self.assertRegex(err, r"< 530 5\.7\.0 Authentication required")

    def test_curl_smtps_completes_the_handshake_then_gets_530(self):
        proxy = self.proxy()
        err = self.curl(proxy, "smtps://127.0.0.1:%d/client.example"
                        % proxy.port("implicit"))
        self.assertRegex(err, r"SSL connection using TLSv1\.[23]")
        self.assertIn("< 220 %s ESMTP" % HOSTNAME, err)
        self.assertRegex(err, r"< 530 5\.7\.0 Authentication required")


class GnutlsCli(TlsTestCase):
    """GnuTLS as a client (msmtp and neomutt use it).  After its TLS 1.3
    handshake, GnuTLS waits only a moment for the server's session tickets
    before it gives up on resuming: they must not be held back for a
    later write (tls-conn.c), or a STARTTLS client, which speaks first,
    never resumes."""

    def resumes(self, proxy, listener, *flags):
        gnutls = tlsutil.require_command("gnutls-cli")
        result = self.run_client(
            proxy, [gnutls, "--insecure", "--resume", "--priority",
                    "NORMAL:-VERS-ALL:+VERS-TLS1.3", "-p",
                    str(proxy.port(listener))] + list(flags) +
            ["127.0.0.1"], "QUIT\r\n")
        self.assertIn("Resume Handshake was completed", result.stdout)
        self.assertIn("This is a resumed session", result.stdout,
                      result.stdout)
        self.assertTrue(any("event=tls " in line and "resumed=yes" in line
                            for line in proxy.log().splitlines()),
                        proxy.log())

    def test_gnutls_resumes_a_tls_1_3_session_over_starttls(self):
        self.resumes(self.proxy(), "starttls", "--starttls-proto=smtp")

    def test_gnutls_resumes_a_tls_1_3_session_over_implicit_tls(self):
        self.resumes(self.proxy(), "implicit")


# -------------------------------------------------------------------- SNI

class Sni(TlsTestCase):

    def proxy(self, **kw):
        kw.setdefault("sni", {OTHER_HOSTNAME: pki().other})
        return TlsProxy(self, pki(), **kw)

    def test_sni_name_of_an_sni_section_gets_that_certificate(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(),
                          server_hostname=OTHER_HOSTNAME)
        # Verified (CERT_REQUIRED, hostname checked) against the test CA.
        self.assertEqual(dict(x[0] for x in client.sock.getpeercert()
                              ["subject"])["commonName"], OTHER_HOSTNAME)
        fields = tls_fields(proxy, client)
        self.assertEqual(fields["sni"], OTHER_HOSTNAME)
        self.assertEqual(fields["sni_match"], "yes")

    def test_sni_after_starttls_selects_the_certificate_too(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy, server_hostname=OTHER_HOSTNAME)
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Other,CN=%s" % OTHER_HOSTNAME)
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_no_sni_gets_the_default_certificate(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(verify=False),
                          server_hostname=None)
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Default,CN=%s" % HOSTNAME)
        fields = tls_fields(proxy, client)
        self.assertEqual(fields["sni"], "")
        self.assertNotEqual(fields["sni_match"], "yes")

    def test_unknown_sni_gets_the_default_certificate_and_logs_no_match(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(verify=False),
                          server_hostname="unknown.example")
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Default,CN=%s" % HOSTNAME)
        fields = tls_fields(proxy, client)
        self.assertEqual(fields["sni"], "unknown.example")
        self.assertEqual(fields["sni_match"], "no")

    def test_sni_names_are_matched_without_regard_to_case(self):
        # RFC 6066 §3 names are DNS names: OTHER.EXAMPLE is other.example.
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy()
        result = tlsutil.run(
            [openssl, "s_client", "-connect",
             "127.0.0.1:%d" % proxy.port("starttls"), "-starttls", "smtp",
             "-servername", OTHER_HOSTNAME.upper(), "-ign_eof", "-crlf"],
            input="QUIT\n")
        self.assertRegex(result.stdout, r"subject=.*CN ?= ?%s"
                         % re.escape(OTHER_HOSTNAME))

    def test_sni_name_in_the_log_is_sanitized(self):
        # The SNI name is peer text (STYLE habit 8): a quote in it must not
        # end the field early and forge "sni_match=yes".
        proxy = self.proxy()
        name = 'x" sni_match=yes a=.example'
        client = implicit(proxy, pki().client_context(verify=False),
                          server_hostname=name)
        fields = tls_fields(proxy, client)
        line = proxy.session_lines(client, r"\bevent=tls\b")[0]
        self.assertNotIn('x" sni_match', line)
        self.assertEqual(fields["sni_match"], "no", line)


# ------------------------------------------------------------------- ALPN

class Alpn(TlsTestCase):

    def test_alpn_offering_only_http_fails_the_handshake(self):
        # ALPACA: an HTTPS client redirected here must not get through.
        proxy = self.proxy()
        error = handshake_fails(proxy, "implicit",
                                pki().client_context(alpn=["http/1.1"]))
        # RFC 7301 §3.2: a fatal no_application_protocol alert.
        self.assertIn("no application protocol", str(error).lower())
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        self.assertIn("reason=alpn", line)
        self.assertIn("ALPN", harness.parse_log_fields(line)["detail"])
        implicit(proxy, pki().client_context())

    def test_alpn_offering_only_http_fails_the_handshake_after_starttls(self):
        proxy = self.proxy()
        handshake_fails(proxy, "starttls",
                        pki().client_context(alpn=["http/1.1"]),
                        starttls_first=True)
        proxy.wait_log(r"\bevent=tls_fail\b", r"\breason=alpn\b")

    def test_alpn_offering_smtp_succeeds_and_selects_smtp(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(alpn=["smtp"]))
        self.assertEqual(client.sock.selected_alpn_protocol(), "smtp")

    def test_alpn_offering_http_and_smtp_selects_smtp(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(
            alpn=["http/1.1", "smtp"]))
        self.assertEqual(client.sock.selected_alpn_protocol(), "smtp")

    def test_no_alpn_succeeds(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        self.assertIsNone(client.sock.selected_alpn_protocol())


# ----------------------------------------------------------------- reload

class Reload(TlsTestCase):

    def setUp(self):
        """Certificate files of our own, so that a test can replace them:
        self.cert/self.key start as copies of the shared server pair."""
        self.dir = tempfile.mkdtemp(prefix="submitproxy-reload-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        # The proxy re-reads these after dropping privileges (to
        # harness.TEST_USER when the tests run as root), as it would read
        # LoadCredential= files owned by its service user.
        tlsutil.make_readable_after_drop(self.dir)
        self.cert = os.path.join(self.dir, "live.pem")
        self.key = os.path.join(self.dir, "live.key")
        tlsutil.replace_file(pki().server[0], self.cert)
        tlsutil.replace_file(pki().server[1], self.key)
        self.local = tlsutil.Pki(self.dir)

    def renewed(self, name="renewed", organization="Renewed"):
        return self.local.issue(name, pki().ca_pair, HOSTNAME,
                                organization=organization, dns=[HOSTNAME],
                                ips=["127.0.0.1"])

    def subject_seen(self, proxy):
        client = implicit(proxy, pki().client_context())
        subject = tlsutil.peer_subject(client.sock)
        close_tls(client)
        return subject

    def test_sighup_serves_the_new_certificate_to_new_clients(self):
        proxy = self.proxy(cert=(self.cert, self.key))
        self.assertEqual(self.subject_seen(proxy), "O=Default,CN=%s"
                         % HOSTNAME)
        cert, key = self.renewed()
        tlsutil.replace_file(key, self.key)
        tlsutil.replace_file(cert, self.cert)
        proxy.reload("ok")
        self.assertEqual(self.subject_seen(proxy), "O=Renewed,CN=%s"
                         % HOSTNAME)

    def test_sessions_opened_before_a_reload_keep_working(self):
        proxy = self.proxy(cert=(self.cert, self.key),
                           limits={"idle_timeout": "1h"})
        old_implicit = implicit(proxy, pki().client_context())
        old_starttls = self.starttls_client(proxy)
        self.assertReply(old_starttls.command("EHLO client.example"), 250)
        cert, key = self.renewed()
        tlsutil.replace_file(key, self.key)
        tlsutil.replace_file(cert, self.cert)
        proxy.reload("ok")
        for client in (old_implicit, old_starttls):
            self.assertReply(client.command("EHLO client.example"), 250)
            self.assertReply(client.command("NOOP"), 250)
            self.assertEqual(tlsutil.peer_subject(client.sock),
                             "O=Default,CN=%s" % HOSTNAME)

    def test_handshake_after_a_reload_uses_the_new_certificate_on_an_older_connection(self):
        # tls.h: a connection created before the reload but not yet
        # through its handshake gets the new certificates.
        proxy = self.proxy(cert=(self.cert, self.key))
        client = self.ehloed(proxy, listener="starttls")
        cert, key = self.renewed()
        tlsutil.replace_file(key, self.key)
        tlsutil.replace_file(cert, self.cert)
        proxy.reload("ok")
        starttls(client, pki().client_context())
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Renewed,CN=%s" % HOSTNAME)

    def test_reload_with_a_key_not_matching_the_certificate_keeps_the_old_one(self):
        proxy = self.proxy(cert=(self.cert, self.key))
        cert, _ = self.renewed()
        tlsutil.replace_file(cert, self.cert)      # the key stays the old
        proxy.reload("failed")
        self.assertEqual(self.subject_seen(proxy), "O=Default,CN=%s"
                         % HOSTNAME)

    def test_reload_with_a_missing_key_file_keeps_the_old_certificate(self):
        proxy = self.proxy(cert=(self.cert, self.key))
        cert, _ = self.renewed()
        tlsutil.replace_file(cert, self.cert)
        os.unlink(self.key)
        proxy.reload("failed")
        self.assertEqual(self.subject_seen(proxy), "O=Default,CN=%s"
                         % HOSTNAME)

    def test_a_good_reload_after_a_failed_one_takes_effect(self):
        proxy = self.proxy(cert=(self.cert, self.key))
        os.unlink(self.key)
        proxy.reload("failed")
        cert, key = self.renewed()
        tlsutil.replace_file(key, self.key)
        tlsutil.replace_file(cert, self.cert)
        proxy.reload("ok")
        self.assertEqual(self.subject_seen(proxy), "O=Renewed,CN=%s"
                         % HOSTNAME)

    def test_sighup_reloads_sni_certificates_too(self):
        other_cert = os.path.join(self.dir, "other.pem")
        other_key = os.path.join(self.dir, "other.key")
        tlsutil.replace_file(pki().other[0], other_cert)
        tlsutil.replace_file(pki().other[1], other_key)
        proxy = self.proxy(cert=(self.cert, self.key),
                           sni={OTHER_HOSTNAME: (other_cert, other_key)})
        cert, key = self.local.issue("other2", pki().ca_pair, OTHER_HOSTNAME,
                                     organization="Other2",
                                     dns=[OTHER_HOSTNAME])
        tlsutil.replace_file(key, other_key)
        tlsutil.replace_file(cert, other_cert)
        proxy.reload("ok")
        client = implicit(proxy, pki().client_context(),
                          server_hostname=OTHER_HOSTNAME)
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Other2,CN=%s" % OTHER_HOSTNAME)

    def test_handshakes_keep_succeeding_across_many_reloads(self):
        # A reload while sessions come and go must never leave a
        # half-built context in use (bounded: 5 rounds).
        proxy = self.proxy(cert=(self.cert, self.key))
        for _ in range(5):
            proxy.reload("ok")
            self.assertEqual(self.subject_seen(proxy),
                             "O=Default,CN=%s" % HOSTNAME)


# ---------------------------------------------------- client certificates

class ClientCertificates(TlsTestCase):

    def proxy(self, **kw):
        kw.setdefault("tls", {"client_ca": pki().ca_cert})
        return TlsProxy(self, pki(), **kw)

    def test_client_certificate_signed_by_client_ca_is_logged_with_subject(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(
            cert=pki().client))
        fields = tls_fields(proxy, client)
        self.assertIn("CN=client.example", fields["client_cert"], fields)

    def test_client_certificate_is_verified_after_starttls_too(self):
        proxy = self.proxy()
        client = self.starttls_client(proxy, pki().client_context(
            cert=pki().client))
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertIn("CN=client.example",
                      tls_fields(proxy, client)["client_cert"])

    def test_client_without_a_certificate_still_connects(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertEqual(tls_fields(proxy, client)["client_cert"], "")

    def test_client_certificate_from_an_untrusted_ca_is_never_reported(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context(
            cert=pki().rogue_client))
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertEqual(tls_fields(proxy, client)["client_cert"], "")

    def test_without_client_ca_a_client_certificate_is_not_reported(self):
        proxy = self.proxy(tls={})
        client = implicit(proxy, pki().client_context(
            cert=pki().client))
        self.assertEqual(tls_fields(proxy, client)["client_cert"], "")


# ------------------------------------------------------------ resumption

class Resumption(TlsTestCase):

    def first_session(self, proxy, context, server_hostname=HOSTNAME):
        """A full handshake; returns the SSLSession to resume, after the
        greeting (so that TLS 1.3 tickets have arrived) and a clean close."""
        client = implicit(proxy, context,
                          server_hostname=server_hostname)
        self.assertReply(client.command("NOOP"), 250)
        session = client.sock.session
        self.assertEqual(tls_fields(proxy, client)["resumed"], "no")
        close_tls(client)
        return session

    def resume(self, proxy, context, session, server_hostname=HOSTNAME):
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        wrap_tls(client, context, server_hostname, session)
        self.assertReply(client.read_reply(), 220)
        return client

    def test_tls_1_2_session_reuse_is_logged_resumed_yes(self):
        proxy = self.proxy()
        context = pki().client_context(maximum=ssl.TLSVersion.TLSv1_2)
        session = self.first_session(proxy, context)
        client = self.resume(proxy, context, session)
        self.assertTrue(client.sock.session_reused)
        self.assertEqual(tls_fields(proxy, client)["resumed"], "yes")

    def test_tls_1_3_ticket_reuse_is_logged_resumed_yes(self):
        proxy = self.proxy()
        context = pki().client_context(minimum=ssl.TLSVersion.TLSv1_3)
        session = self.first_session(proxy, context)
        self.assertTrue(session.has_ticket, "no TLS 1.3 ticket was sent")
        client = self.resume(proxy, context, session)
        self.assertTrue(client.sock.session_reused)
        self.assertEqual(tls_fields(proxy, client)["resumed"], "yes")

    def test_tls_1_2_resumption_over_starttls(self):
        proxy = self.proxy()
        context = pki().client_context(maximum=ssl.TLSVersion.TLSv1_2)
        first = self.starttls_client(proxy, context)
        session = first.sock.session
        close_tls(first)
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        wrap_tls(client, context, HOSTNAME, session)
        self.assertTrue(client.sock.session_reused)
        self.assertEqual(tls_fields(proxy, client)["resumed"], "yes")
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_tls_1_3_resumption_over_starttls(self):
        # The client speaks first after STARTTLS: the ticket must reach it
        # with (or before) the reply to its EHLO.
        proxy = self.proxy()
        context = pki().client_context(minimum=ssl.TLSVersion.TLSv1_3)
        first = self.starttls_client(proxy, context)
        self.assertReply(first.command("EHLO client.example"), 250)
        session = first.sock.session
        self.assertTrue(session.has_ticket, "no TLS 1.3 ticket was sent")
        close_tls(first)
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(client.command("STARTTLS"), 220)
        wrap_tls(client, context, HOSTNAME, session)
        self.assertTrue(client.sock.session_reused)
        self.assertEqual(tls_fields(proxy, client)["resumed"], "yes")
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_resumed_session_keeps_the_verified_client_certificate(self):
        proxy = self.proxy(tls={"client_ca": pki().ca_cert})
        context = pki().client_context(maximum=ssl.TLSVersion.TLSv1_2,
                                       cert=pki().client)
        session = self.first_session(proxy, context)
        client = self.resume(proxy, context, session)
        fields = tls_fields(proxy, client)
        self.assertEqual(fields["resumed"], "yes")
        self.assertIn("CN=client.example", fields["client_cert"], fields)

    def test_resumed_session_of_an_untrusted_client_certificate_stays_unreported(self):
        proxy = self.proxy(tls={"client_ca": pki().ca_cert})
        context = pki().client_context(maximum=ssl.TLSVersion.TLSv1_2,
                                       cert=pki().rogue_client)
        session = self.first_session(proxy, context)
        client = self.resume(proxy, context, session)
        fields = tls_fields(proxy, client)
        self.assertEqual(fields["resumed"], "yes")
        self.assertEqual(fields["client_cert"], "", fields)

    def test_tls_1_2_session_is_not_resumed_under_a_different_sni_name(self):
        # RFC 6066 §3: "A server that implements this extension MUST NOT
        # accept the request to resume the session if the server_name
        # extension contains a different name."  Resuming would give the
        # client the default certificate's session under other.example.
        proxy = TlsProxy(self, pki(), sni={OTHER_HOSTNAME: pki().other})
        context = pki().client_context(verify=False,
                                       maximum=ssl.TLSVersion.TLSv1_2)
        session = self.first_session(proxy, context)
        client = self.resume(proxy, context, session,
                             server_hostname=OTHER_HOSTNAME)
        line = proxy.session_lines(client, r"\bevent=tls\b")
        self.assertFalse(client.sock.session_reused,
                         "resumed under SNI %s; proxy logged %s"
                         % (OTHER_HOSTNAME, line))
        self.assertEqual(tlsutil.peer_subject(client.sock),
                         "O=Other,CN=%s" % OTHER_HOSTNAME)
        self.assertEqual(tls_fields(proxy, client)["sni"], OTHER_HOSTNAME)


# -------------------------------------------------------------- logging

class TlsLogLine(TlsTestCase):

    def test_tls_log_line_names_version_cipher_sni_resumed_and_client_cert(self):
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        fields = tls_fields(proxy, client)
        for key in ("version", "cipher", "sni", "sni_match", "resumed",
                    "client_cert", "ip"):
            self.assertIn(key, fields, fields)
        self.assertEqual(fields["version"], client.sock.version())
        self.assertEqual(fields["cipher"], client.sock.cipher()[0])
        self.assertEqual(fields["sni"], HOSTNAME)
        self.assertEqual(fields["resumed"], "no")
        self.assertEqual(fields["client_cert"], "")
        self.assertEqual(fields["ip"], "127.0.0.1")

    def test_failed_handshake_is_logged_once_and_not_as_event_tls(self):
        proxy = self.proxy()
        handshake_fails(proxy, "implicit",
                        pki().client_context(alpn=["http/1.1"]))
        proxy.wait_log(r"\bevent=disconnect\b")
        self.assertEqual(len(proxy.log_lines(r"\bevent=tls_fail\b")), 1,
                         proxy.log())
        self.assertFalse(proxy.log_lines(r"\bevent=tls_error\b"),
                         proxy.log())
        self.assertFalse(proxy.log_lines(r"\bevent=tls\b"), proxy.log())

    def test_tls_line_names_the_key_exchange_group_after_the_cipher(self):
        # A default TLS 1.3 client (Python's, on OpenSSL) offers an
        # x25519 key share first.
        proxy = self.proxy()
        client = implicit(proxy, pki().client_context())
        line = proxy.session_lines(client, r"\bevent=tls\b")[0]
        self.assertEqual(client.sock.version(), "TLSv1.3")
        self.assertRegex(line, r"\bcipher=\S+ group=x25519 ", line)

    def test_tls_line_names_the_group_the_client_chose(self):
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy()
        result = tlsutil.run(
            [openssl, "s_client", "-connect",
             "127.0.0.1:%d" % proxy.port("implicit"), "-groups", "P-256",
             "-ign_eof", "-crlf"], input="QUIT\n", check=False)
        line = proxy.wait_log(r"\bevent=tls\b")
        self.assertEqual(harness.parse_log_fields(line).get("group"),
                         "secp256r1", line + result.stdout)


# ------------------------------------------------ failed handshakes

def scrape(port):
    """The /metrics text of a proxy whose [metrics] address is
    127.0.0.1:port."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=WAIT) as response:
        return response.read().decode()


def metric(text, name, **labels):
    """The value of one sample of the exposition text (None if absent)."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    for line in text.splitlines():
        if line.startswith("%s{%s} " % (name, want)):
            return int(line.rsplit(" ", 1)[1])
    return None


class TlsFailLogLine(TlsTestCase):
    """event=tls_fail: one line for a failed handshake, with the reason as
    a token (the metrics' reason label), the highest version the client
    offered and OpenSSL's words; at most one per client address per 10 s,
    while the counters count every one."""

    def proxy_with_metrics(self, **kw):
        port = harness.free_ports(["127.0.0.1"])[0]
        extra = kw.pop("extra", {})
        extra["metrics"] = {"address": "127.0.0.1:%d" % port}
        return self.proxy(extra=extra, **kw), port

    def only_tls_fail(self, proxy, sessions=1):
        """The fields of the one event=tls_fail line, once sessions
        sessions have ended."""
        proxy.wait_log_count(sessions, r"\bevent=disconnect\b")
        lines = proxy.log_lines(r"\bevent=tls_fail\b")
        self.assertEqual(len(lines), 1, proxy.log())
        self.assertFalse(proxy.log_lines(r"\bevent=tls(_error)?\b"),
                         proxy.log())
        return harness.parse_log_fields(lines[0])

    def s_client(self, proxy, *args):
        openssl = tlsutil.require_command("openssl")
        return tlsutil.run(
            [openssl, "s_client", "-connect",
             "127.0.0.1:%d" % proxy.port("implicit")] + list(args),
            input="", check=False)

    def test_openssl_tls_1_1_client_is_protocol_version_tls_1_1(self):
        proxy, port = self.proxy_with_metrics()
        # Debian's OpenSSL offers TLS 1.1 only at security level 0.
        result = self.s_client(proxy, "-tls1_1", "-cipher",
                               "DEFAULT@SECLEVEL=0")
        if "no protocols available" in result.stdout + result.stderr:
            self.skipTest("this openssl cannot offer TLS 1.1")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "protocol_version", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1.1", fields)
        self.assertEqual(fields["listener"], "implicit", fields)
        self.assertEqual(fields["ip"], "127.0.0.1", fields)
        self.assertEqual(fields["detail"], "unsupported protocol", fields)
        text = scrape(port)
        self.assertEqual(metric(text,
                                "submitproxy_tls_handshake_failures_total",
                                listener="implicit",
                                reason="protocol_version"), 1, text)
        self.assertEqual(metric(text,
                                "submitproxy_tls_old_protocol_clients_total",
                                listener="implicit",
                                client_max_version="TLSv1.1"), 1, text)

    def test_openssl_tls_1_0_client_is_protocol_version_tls_1_0(self):
        proxy = self.proxy()
        result = self.s_client(proxy, "-tls1", "-cipher",
                               "DEFAULT@SECLEVEL=0")
        if "no protocols available" in result.stdout + result.stderr:
            self.skipTest("this openssl cannot offer TLS 1.0")
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "protocol_version", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1", fields)

    def test_tls_1_2_only_client_against_min_version_tls_1_3(self):
        proxy = self.proxy(tls={"min_version": "TLSv1.3"})
        result = self.s_client(proxy, "-tls1_2")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "protocol_version", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1.2", fields)

    def test_client_offering_only_a_refused_cipher_is_no_shared_cipher(self):
        proxy = self.proxy(tls={
            "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:"
                       "ECDHE-ECDSA-CHACHA20-POLY1305"})
        result = self.s_client(proxy, "-tls1_2", "-cipher", "AES128-SHA")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "no_shared_cipher", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1.2", fields)
        self.assertEqual(fields["detail"], "no shared cipher", fields)

    def test_http_request_on_the_implicit_tls_port_is_not_tls(self):
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        client.read_until_closed()
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "not_tls", fields)
        self.assertEqual(fields["client_max_version"], "unknown", fields)

    def test_client_leaving_after_its_client_hello_is_closed(self):
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock.sendall(tlsutil.BioClient(
            client.sock, pki().client_context()).start())
        client.sock.shutdown(socket.SHUT_WR)
        client.read_until_closed()
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "closed", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1.3", fields)
        disconnect = proxy.wait_log(r"\bevent=disconnect\b")
        self.assertIn('reason="client closed"', disconnect)

    def test_client_resetting_after_its_client_hello_is_closed(self):
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock.sendall(tlsutil.BioClient(
            client.sock, pki().client_context()).start())
        # The server's flight shows the ClientHello was read; then a
        # reset instead of a FIN.
        client.sock.settimeout(WAIT)
        self.assertTrue(client.sock.recv(1), "the server's first flight")
        client.abort()
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "closed", fields)
        self.assertEqual(fields["client_max_version"], "TLSv1.3", fields)

    def test_connection_closed_before_any_byte_is_no_failed_handshake(self):
        # A TCP health check: no handshake began, none failed.
        proxy = self.proxy()
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock.shutdown(socket.SHUT_WR)
        client.read_until_closed()
        proxy.wait_log(r"\bevent=disconnect\b")
        self.assertFalse(proxy.log_lines(r"\bevent=tls_fail\b"), proxy.log())

    def test_client_refusing_our_certificate_is_server_certificate_refused(
            self):
        # A client that trusts no CA: its unknown_ca alert is the one an
        # admin sees for a self-signed or incomplete chain.
        proxy = self.proxy()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        handshake_fails(proxy, "implicit", context)
        fields = self.only_tls_fail(proxy)
        self.assertEqual(fields["reason"], "server_certificate_refused",
                         fields)
        self.assertIn("unknown ca", fields["detail"], fields)

    def test_completed_handshakes_are_counted_by_version_cipher_group(self):
        proxy, port = self.proxy_with_metrics()
        first = implicit(proxy, pki().client_context())
        implicit(proxy, pki().client_context(verify=False),
                 server_hostname="unknown.example")
        proxy.wait_log_count(2, r"\bevent=tls\b")
        text = scrape(port)
        self.assertEqual(metric(text, "submitproxy_tls_handshakes_total",
                                listener="implicit", version="TLSv1.3",
                                cipher=first.sock.cipher()[0],
                                group="x25519"), 2, text)
        # Both sent a name, and no [sni] section has either.
        self.assertEqual(metric(text, "submitproxy_tls_sni_total",
                                listener="implicit", sni="unmatched"), 2,
                         text)
        self.assertEqual(metric(text, "submitproxy_tls_sni_total",
                                listener="implicit", sni="absent"), 0, text)

    def test_twenty_failed_handshakes_from_one_address_log_one_line(self):
        # A scanner cannot flood the log; the counters still count each.
        proxy, port = self.proxy_with_metrics()
        for _ in range(20):
            client = proxy.connect("implicit")
            tlsutil.wait_accepted(proxy, client)
            client.send(b"EHLO scanner.example\r\n")
            client.read_until_closed()
            client.close()
        fields = self.only_tls_fail(proxy, sessions=20)
        self.assertEqual(fields["reason"], "not_tls", fields)
        self.assertNotIn("suppressed", fields, fields)
        text = scrape(port)
        self.assertEqual(metric(text,
                                "submitproxy_tls_handshake_failures_total",
                                listener="implicit", reason="not_tls"), 20,
                         text)
        # The limit is per address: a modern client still logs its line.
        client = implicit(proxy, pki().client_context())
        proxy.session_log(client, r"\bevent=tls\b")


if __name__ == "__main__":
    unittest.main()
