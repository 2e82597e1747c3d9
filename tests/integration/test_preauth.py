"""The pre-auth dialogue the proxy speaks itself (DESIGN.md "Pre-auth
dialogue"), observed by real clients on a plain listener: greeting, EHLO,
local commands, refusals before AUTH, line limits, pipelining, early
talkers, timeouts, error and connection limits, logging, and survival of
abusive clients.
"""

import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOSTNAME, WAIT, Proxy, ProxyTestCase  # noqa: E402

DEFAULT_MAX_MESSAGE_SIZE = 52428800


def setUpModule():
    harness.require_binary()


def ehlo_keywords(reply):
    """The EHLO keywords (upper-cased first word of each line after the
    first) of a 250 reply."""
    return [line.split()[0].upper() for line in reply[1][1:] if line.split()]


def ehlo_lines(reply):
    """EHLO lines after the first, upper-cased keyword and its arguments."""
    return [" ".join([line.split()[0].upper()] + line.split()[1:])
            for line in reply[1][1:] if line.split()]


class Greeting(ProxyTestCase):

    def test_greeting_is_220_hostname_esmtp(self):
        proxy = Proxy(self)
        client = proxy.connect()
        code, lines = client.read_reply()
        self.assertEqual(code, 220, lines)
        self.assertEqual(len(lines), 1, "greeting is one line: %r" % lines)
        self.assertTrue(lines[0].startswith(HOSTNAME + " ESMTP"),
                        "greeting text %r" % lines[0])


class Ehlo(ProxyTestCase):

    def test_ehlo_reply_is_multiline_250_starting_with_hostname(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertGreater(len(reply[1]), 1, "multi-line: %r" % (reply,))
        self.assertEqual(reply[1][0].split()[0], HOSTNAME, reply)

    def test_ehlo_advertises_pipelining_enhancedstatuscodes_and_size(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        keywords = ehlo_keywords(reply)
        self.assertIn("PIPELINING", keywords, reply)
        self.assertIn("ENHANCEDSTATUSCODES", keywords, reply)
        self.assertIn("SIZE %d" % DEFAULT_MAX_MESSAGE_SIZE, ehlo_lines(reply),
                      reply)

    def test_ehlo_size_is_the_configured_max_message_size(self):
        proxy = Proxy(self, {"limits": {"max_message_size": "10M"}})
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertIn("SIZE %d" % (10 * 1024 * 1024), ehlo_lines(reply),
                      reply)

    def test_ehlo_on_plain_listener_does_not_offer_starttls(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        self.assertNotIn("STARTTLS", ehlo_keywords(reply), reply)

    def test_ehlo_on_plain_listener_does_not_offer_auth_without_allow_plaintext_auth(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        for keyword in ehlo_keywords(reply):
            self.assertFalse(keyword.startswith("AUTH"), reply)

    def test_ehlo_on_plain_listener_offers_auth_plain_login_with_allow_plaintext_auth(self):
        proxy = Proxy(self, {"listener plain": {"allow_plaintext_auth": "yes"}})
        client = self.greeted(proxy)
        reply = client.command("EHLO client.example")
        self.assertReply(reply, 250)
        auth = [line.upper().split() for line in reply[1][1:]
                if line.upper().startswith("AUTH ")]
        self.assertEqual(len(auth), 1, reply)
        self.assertIn("PLAIN", auth[0], reply)
        self.assertIn("LOGIN", auth[0], reply)

    def test_smtplib_ehlo_sees_pipelining_and_size(self):
        proxy = Proxy(self)
        smtp = smtplib.SMTP(timeout=WAIT)
        self.addCleanup(smtp.close)
        code, _ = smtp.connect("127.0.0.1", proxy.port())
        self.assertEqual(code, 220)
        code, _ = smtp.ehlo("client.example")
        self.assertEqual(code, 250)
        self.assertTrue(smtp.does_esmtp)
        self.assertTrue(smtp.has_extn("pipelining"), smtp.esmtp_features)
        self.assertTrue(smtp.has_extn("size"), smtp.esmtp_features)
        self.assertEqual(smtp.esmtp_features["size"],
                         str(DEFAULT_MAX_MESSAGE_SIZE))
        code, _ = smtp.quit()
        self.assertEqual(code, 221)

    def test_helo_replies_250_hostname(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        reply = client.command("HELO client.example")
        self.assertReply(reply, 250)
        self.assertEqual(len(reply[1]), 1, reply)
        self.assertEqual(reply[1][0].split()[0], HOSTNAME, reply)

    def test_ehlo_without_argument_is_501_5_5_4(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        self.assertReply(client.command("EHLO"), 501, "5.5.4")


class LocalCommands(ProxyTestCase):

    def test_noop_is_250_2_0_0(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_rset_is_250_2_0_0(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("RSET"), 250, "2.0.0")

    def test_rset_with_argument_is_501_5_5_4(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("RSET now"), 501, "5.5.4")

    def test_help_is_214(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("HELP"), 214)

    def test_quit_is_221_2_0_0_and_closes(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("QUIT"), 221, "2.0.0")
        client.expect_closed()

    def test_verbs_are_case_insensitive(self):
        client = self.greeted(Proxy(self))
        self.assertReply(client.command("ehlo client.example"), 250)
        self.assertReply(client.command("NoOp"), 250, "2.0.0")
        self.assertReply(client.command("rset"), 250, "2.0.0")
        self.assertReply(client.command("Helo client.example"), 250)
        self.assertReply(client.command("qUiT"), 221, "2.0.0")


class RefusedBeforeAuth(ProxyTestCase):

    TRANSACTION_COMMANDS = [
        "MAIL FROM:<a@b>",
        "RCPT TO:<a@b>",
        "DATA",
        "BDAT 10 LAST",
        "VRFY x",
        "EXPN x",
    ]

    def test_transaction_commands_before_auth_are_530_5_7_0(self):
        proxy = Proxy(self)
        for command in self.TRANSACTION_COMMANDS:
            with self.subTest(command=command):
                # A fresh session each: a refused DATA or BDAT must not
                # leave anything that could be read as message content.
                client = self.ehloed(proxy)
                self.assertReply(client.command(command), 530, "5.7.0",
                                 "Authentication required")
                self.assertReply(client.command("QUIT"), 221)
                client.expect_closed()

    def test_data_refused_before_auth_leaves_the_session_in_command_mode(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("DATA"), 530, "5.7.0")
        # Were this a message body, NOOP would get no reply of its own.
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_unknown_verb_is_500_5_5_1(self):
        client = self.ehloed(Proxy(self))
        self.assertReply(client.command("FOO"), 500, "5.5.1")
        self.assertReply(client.command("FOO bar baz"), 500, "5.5.1")

    def test_unimplemented_verbs_are_502_5_5_1(self):
        proxy = Proxy(self)
        client = self.ehloed(proxy)
        for command in ["ETRN example.com", "TURN", "XCLIENT ADDR=192.0.2.1",
                        "XFORWARD ADDR=192.0.2.1"]:
            with self.subTest(command=command):
                self.assertReply(client.command(command), 502, "5.5.1")


class LineLimits(ProxyTestCase):

    CONFIG = {"limits": {"max_line_length": 512}}

    def test_line_longer_than_max_line_length_is_500_5_5_6_once_and_session_continues(self):
        client = self.ehloed(Proxy(self, self.CONFIG))
        client.send(b"NOOP " + b"x" * 100000 + b"\r\n")
        self.assertReply(client.read_reply(), 500, "5.5.6")
        # The next reply answers NOOP: the long line got exactly one reply.
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_long_line_sent_in_chunks_with_pauses_is_500_5_5_6_once(self):
        client = self.ehloed(Proxy(self, self.CONFIG))
        client.send(b"NOOP ")
        for _ in range(10):
            client.send(b"x" * 10000)
            time.sleep(0.05)
        client.send(b"\r\n")
        self.assertReply(client.read_reply(), 500, "5.5.6")
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_line_of_exactly_max_line_length_is_parsed_as_a_command(self):
        client = self.ehloed(Proxy(self, self.CONFIG))
        line = b"FOO " + b"x" * (512 - 4)
        self.assertEqual(len(line), 512)
        # 5.5.1 (unknown verb), not 5.5.6 (too long): the line was read.
        self.assertReply(client.command(line), 500, "5.5.1")
        self.assertReply(client.command(line + b"x"), 500, "5.5.6")
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_nul_byte_in_command_is_500_5_5_2(self):
        client = self.ehloed(Proxy(self))
        for line in [b"NO\x00OP", b"NOOP\x00", b"EHLO client\x00.example"]:
            with self.subTest(line=line):
                self.assertReply(client.command(line), 500, "5.5.2")
        self.assertReply(client.command("NOOP"), 250, "2.0.0")

    def test_bare_lf_ends_a_command_line(self):
        client = self.greeted(Proxy(self))
        client.send(b"NOOP\n")
        self.assertReply(client.read_reply(), 250, "2.0.0")
        client.send(b"EHLO client.example\n")
        self.assertReply(client.read_reply(), 250)


class Pipelining(ProxyTestCase):

    def test_pipelined_commands_are_answered_in_order(self):
        client = self.greeted(Proxy(self))
        client.send(b"EHLO client.example\r\nNOOP\r\nMAIL FROM:<a@b>\r\n"
                    b"FOO\r\nRSET\r\nQUIT\r\n")
        ehlo = client.read_reply()
        self.assertReply(ehlo, 250)
        self.assertGreater(len(ehlo[1]), 1, "EHLO is multi-line: %r" % (ehlo,))
        self.assertReply(client.read_reply(), 250, "2.0.0")   # NOOP
        self.assertReply(client.read_reply(), 530, "5.7.0")   # MAIL
        self.assertReply(client.read_reply(), 500, "5.5.1")   # FOO
        self.assertReply(client.read_reply(), 250, "2.0.0")   # RSET
        self.assertReply(client.read_reply(), 221, "2.0.0")   # QUIT
        client.expect_closed()


class EarlyTalker(ProxyTestCase):

    def test_client_talking_before_greeting_gets_554_and_is_dropped(self):
        # 2 s rather than 1 s: the client's EHLO must land inside the
        # window even if this process stalls right after connect().
        proxy = Proxy(self, {"limits": {"greeting_delay": "2s"}})
        client = proxy.connect()
        client.send(b"EHLO client.example\r\n")
        reply = client.read_reply()
        self.assertReply(reply, 554)
        self.assertEnhancedClass(reply, 5)
        client.expect_closed()

    def test_client_waiting_for_delayed_greeting_is_served(self):
        proxy = Proxy(self, {"limits": {"greeting_delay": "1s"}})
        client = proxy.connect()
        code, lines = client.read_reply()
        self.assertEqual(code, 220, lines)
        self.assertTrue(lines[0].startswith(HOSTNAME + " ESMTP"), lines)
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertReply(client.command("QUIT"), 221)


class Timeouts(ProxyTestCase):

    def test_idle_client_gets_421_4_4_2_and_is_disconnected(self):
        proxy = Proxy(self, {"limits": {"idle_timeout": "1s"}})
        client = self.ehloed(proxy)
        self.assertReply(client.read_reply(timeout=WAIT), 421, "4.4.2")
        client.expect_closed()
        disconnect = harness.parse_log_fields(
            proxy.wait_log(r"\bevent=disconnect\b"))
        self.assertIn("timeout", disconnect.get("reason", "").lower(),
                      disconnect)

    def test_idle_timeout_applies_before_the_first_command(self):
        proxy = Proxy(self, {"limits": {"idle_timeout": "1s"}})
        client = self.greeted(proxy)
        self.assertReply(client.read_reply(timeout=WAIT), 421, "4.4.2")
        client.expect_closed()


class ErrorLimit(ProxyTestCase):

    def test_too_many_errors_get_421_4_7_0_and_disconnect(self):
        proxy = Proxy(self, {"limits": {"max_errors": 3}})
        client = self.ehloed(proxy)
        answered_normally = 0
        for _ in range(10):
            reply = client.command("FOO")
            if reply[0] == 421:
                break
            self.assertReply(reply, 500, "5.5.1")
            answered_normally += 1
        else:
            self.fail("no 421 after 10 unknown commands with max_errors = 3")
        self.assertReply(reply, 421, "4.7.0")
        self.assertGreaterEqual(answered_normally, 2)
        client.expect_closed()


class ConnectionLimits(ProxyTestCase):

    def new_session_eventually_greeted(self, proxy, **kw):
        """Connects until a session is greeted with 220 (bounded): the proxy
        notices a closed connection asynchronously, so the first attempt
        right after a close may still be counted against the limit."""
        deadline = time.monotonic() + WAIT
        while True:
            client = proxy.connect(**kw)
            reply = client.read_reply()
            if reply[0] == 220:
                return client
            self.assertReply(reply, 421, "4.7.0")
            client.close()
            if time.monotonic() > deadline:
                self.fail("no new session accepted within %.0f s" % WAIT)
            time.sleep(0.5)

    def test_connection_beyond_max_connections_gets_421_4_7_0(self):
        proxy = Proxy(self, {"limits": {"max_connections": 2}})
        first = self.greeted(proxy)
        self.greeted(proxy)
        third = proxy.connect()
        self.assertReply(third.read_reply(), 421, "4.7.0")
        third.expect_closed()
        self.assertReply(first.command("QUIT"), 221)
        first.expect_closed()
        fourth = self.new_session_eventually_greeted(proxy)
        self.assertReply(fourth.command("EHLO client.example"), 250)

    @unittest.skipUnless(harness.can_bind("127.0.0.2"),
                         "127.0.0.2 is not a local address here")
    def test_connection_beyond_max_connections_per_address_gets_421_4_7_0(self):
        proxy = Proxy(self, {
            "listener plain": {"address": "127.0.0.1:{port}, 127.0.0.2:{port}"},
            "limits": {"max_connections": 10,
                       "max_connections_per_address": 1}})
        self.greeted(proxy, index=0)
        second = proxy.connect(index=0)
        self.assertReply(second.read_reply(), 421, "4.7.0")
        second.expect_closed()
        other = proxy.connect(index=1, source="127.0.0.2")
        self.assertReply(other.read_reply(), 220)

    @unittest.skipUnless(harness.can_bind("127.0.0.2"),
                         "127.0.0.2 is not a local address here")
    def test_listener_with_two_addresses_serves_on_both(self):
        proxy = Proxy(self, {"listener plain": {
            "address": "127.0.0.1:{port}, 127.0.0.2:{port}"}})
        for index in range(2):
            with self.subTest(address=proxy.addresses()[index]):
                client = self.greeted(proxy, index=index)
                self.assertReply(client.command("QUIT"), 221)


class Ipv6(ProxyTestCase):

    @unittest.skipUnless(harness.can_bind("::1"), "::1 is not available")
    def test_ipv6_listener_serves_the_greeting(self):
        proxy = Proxy(self, {"listener plain": {"address": "[::1]:{port}"}})
        client = proxy.connect()
        code, lines = client.read_reply()
        self.assertEqual(code, 220, lines)
        self.assertTrue(lines[0].startswith(HOSTNAME + " ESMTP"), lines)
        self.assertReply(client.command("EHLO client.example"), 250)
        proxy.wait_log(r"\bevent=connect\b", r"\bip=\[?::1\b")


@unittest.skipUnless(shutil.which("swaks"), "swaks is not installed")
class Swaks(ProxyTestCase):

    def swaks(self, proxy, *args):
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % proxy.port(),
             "--helo", "client.example", "--timeout", "%d" % WAIT] +
            list(args),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=3 * WAIT)
        return result, "exit %d\n%s%s" % (result.returncode, result.stdout,
                                          result.stderr)

    def test_swaks_sees_greeting_and_pipelining(self):
        proxy = Proxy(self)
        result, output = self.swaks(proxy, "--quit-after", "EHLO")
        self.assertEqual(result.returncode, 0, output)
        self.assertRegex(output, r"(?m)^<-  220 %s ESMTP" % re.escape(HOSTNAME))
        self.assertRegex(output, r"(?m)^<-  250-PIPELINING")

    def test_swaks_mail_is_refused_530_5_7_0_before_auth(self):
        proxy = Proxy(self)
        result, output = self.swaks(proxy, "--to", "a@example.com",
                                    "--from", "b@example.com")
        self.assertNotEqual(result.returncode, 0, output)
        self.assertRegex(output, r"(?m)^ -> MAIL FROM:<b@example\.com>\s*\n"
                                 r"<\*\* +530 5\.7\.0")


class Logging(ProxyTestCase):

    def session(self, proxy):
        """connect, EHLO, MAIL (refused), QUIT; returns the client."""
        client = self.ehloed(proxy)
        self.assertReply(client.command("MAIL FROM:<a@b>"), 530)
        self.assertReply(client.command("QUIT"), 221)
        client.expect_closed()
        return client

    def connect_and_disconnect_lines(self, proxy):
        connect = harness.parse_log_fields(proxy.wait_log(
            r"\bevent=connect\b", r"\bip=127\.0\.0\.1\b",
            r"\blistener=plain\b", r"\bsid=\S+"))
        sid = connect["sid"]
        disconnect = harness.parse_log_fields(proxy.wait_log(
            r"\bevent=disconnect\b", r"\bsid=%s(\s|$)" % re.escape(sid)))
        return sid, connect, disconnect

    def test_session_logs_connect_and_disconnect_with_one_sid(self):
        proxy = Proxy(self)
        self.session(proxy)
        sid, connect, disconnect = self.connect_and_disconnect_lines(proxy)
        for key in ("duration_ms", "bytes_in", "bytes_out", "reason"):
            self.assertIn(key, disconnect, disconnect)
        for key in ("duration_ms", "bytes_in", "bytes_out"):
            self.assertRegex(disconnect[key], r"^\d+$", disconnect)

    def test_refused_mail_is_logged_with_the_session_sid(self):
        proxy = Proxy(self)
        self.session(proxy)
        sid, _, _ = self.connect_and_disconnect_lines(proxy)
        refusals = proxy.log_lines(r"\bsid=%s(\s|$)" % re.escape(sid),
                                   r"\b530\b", r"\bMAIL\b")
        self.assertTrue(refusals, "no log line with sid=%s, MAIL and 530:"
                        "\n%s" % (sid, proxy.log()))

    def test_disconnect_log_counts_the_bytes_exchanged(self):
        proxy = Proxy(self)
        client = self.session(proxy)
        _, _, disconnect = self.connect_and_disconnect_lines(proxy)
        self.assertEqual(int(disconnect["bytes_in"]), len(client.sent),
                         disconnect)
        self.assertEqual(int(disconnect["bytes_out"]), len(client.received),
                         disconnect)


class Robustness(ProxyTestCase):

    def test_client_half_close_ends_the_session(self):
        proxy = Proxy(self)
        client = self.greeted(proxy)
        client.send(b"EHLO client.example\r\n")
        client.shutdown_write()
        # Whatever the proxy answers to the EHLO, it then closes.
        client.read_until_closed()

    def test_server_survives_abusive_clients(self):
        proxy = Proxy(self, {"limits": {"max_line_length": 512}})

        half_closed = self.greeted(proxy)
        half_closed.send(b"EHLO client.example\r\nNOOP\r\n")
        half_closed.shutdown_write()

        garbage = self.greeted(proxy)
        garbage.send(bytes(range(256)) * 8 + b"\r\n" + bytes(range(256)))
        garbage.close()

        mid_line = self.greeted(proxy)
        mid_line.send(b"EHLO client.exa")
        mid_line.close()

        mid_long_line = self.greeted(proxy)
        mid_long_line.send(b"NOOP " + b"x" * 5000)
        mid_long_line.close()

        reset = self.greeted(proxy)
        reset.send(b"EHLO client.example\r\nNOOP\r\n")
        reset.abort()

        before_greeting = proxy.connect()
        before_greeting.abort()

        half_closed.read_until_closed()
        half_closed.close()

        client = self.greeted(proxy)
        self.assertReply(client.command("EHLO client.example"), 250)
        self.assertReply(client.command("QUIT"), 221)
        client.expect_closed()
        self.assertTrue(proxy.running())


if __name__ == "__main__":
    unittest.main()
