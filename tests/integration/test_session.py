"""The session layer's own rules (DESIGN.md "Pre-auth dialogue", "Relay",
"Configuration" [limits]), as a client and a backend MTA see them:

- QUIT ends the session: whatever a client pipelines behind QUIT is never
  relayed, answered or acted upon, and does not bring the proxy down
  (heap corruption / use-after-free when the backend closes after 221
  while pipelined RCPTs are still queued);
- a backend that resets the connection (RST) in the middle of a
  transaction or on the end of data: the client gets 4xx (451 to the
  pending command and/or 421 4.4.2), never a 250, and the proxy serves
  the next session;
- a client that half-closes or closes right after the end of data still
  gets (or at least logs) the backend's reply: the message is not lost
  and the audit trail has its event=transaction line;
- [limits] idle_timeout is a deadline per command: a line (or a SASL
  response) trickled one byte at a time does not push it back, while a
  complete command each time does;
- [limits] max_junk_commands: NOOPs beyond the limit end the session with
  421 4.7.0, before and after AUTH; the count starts again after a
  delivered message;
- an implicit-TLS listener never writes plaintext: a connection refused
  for max_connections_per_address gets no cleartext "421";
- no AUTH secret (the password, the base64 of an AUTH PLAIN response or
  of an AUTH LOGIN password) is left anywhere in the network process's
  writable memory after the 235, over a plain link or STARTTLS
  (DESIGN.md "Passwords are wiped from memory after use");
- [limits] max_line_length: a MAIL FROM or RCPT TO line up to the limit
  (long with ESMTP parameters) reaches the backend byte for byte.

The proxy runs a plain listener with plaintext AUTH allowed (loopback
testing only), real PAM through pam_wrapper and a RecordingBackend (or a
subclass that resets or lingers).  Loopback only; every wait and every
loop is bounded in time and in count.  Python standard library only.
"""

import base64
import contextlib
import os
import re
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402
from backends import RecordingBackend, RelayProxy  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402
from test_relay import BODY, dot_stuff, parse_replies  # noqa: E402

USER = RelayProxy.USER
CLIENT = "client.example"
SENDER = "alice@example.com"
RCPT = "bob@example.net"

# A listener where AUTH works without TLS (meant for loopback tests).
PLAINTEXT_AUTH = {"plain": {"mode": "plain", "require_tls": "no",
                            "allow_plaintext_auth": "yes"}}

IDLE_TIMEOUT = 3.0          # seconds, [limits] idle_timeout in these tests
TRICKLE_LIMIT = 12.0        # how long a trickling client keeps at it


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


def reset(sock):
    """Closes sock with a TCP RST (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def non_tls_bytes(data):
    """What of data is not a sequence of TLS records (RFC 8446 5.1:
    type 20-23, version 3.x, a 2-byte length, that many bytes); a last
    record cut short counts as TLS.  b"" when all of it is."""
    offset = 0
    while offset < len(data):
        header = data[offset:offset + 5]
        if header[0] not in (20, 21, 22, 23) or \
                (len(header) > 1 and header[1] != 3):
            return data[offset:]
        if len(header) < 5:
            return b""
        offset += 5 + struct.unpack("!H", header[3:5])[0]
    return b""


# ----------------------------------------------------------------- backends

class ResettingBackend(RecordingBackend):
    """A RecordingBackend that, on the nth command verb of a connection
    ("." is the end of data), resets the connection instead of answering;
    it does so on the first `times` connections where that happens, then
    answers like a RecordingBackend."""

    def __init__(self, test, verb, nth=1, times=1, **kw):
        self.reset_verb = verb
        self.reset_nth = nth
        self.reset_times = times
        self.resets = 0
        self._counts = {}
        super().__init__(test, **kw)

    def _reply(self, conn, verb, text):
        if verb == self.reset_verb:
            with self.changed:
                n = self._counts.get(id(conn), 0) + 1
                self._counts[id(conn)] = n
                fire = n == self.reset_nth and self.resets < self.reset_times
                if fire:
                    self.resets += 1
                    self.changed.notify_all()
            if fire:
                reset(conn.sock)
                raise ConnectionResetError("reset on purpose at %s #%d"
                                           % (verb, n))
        super()._reply(conn, verb, text)


class LingeringQuitBackend(RecordingBackend):
    """A RecordingBackend that, after its 221 to QUIT, keeps the connection
    open and records (in conn.raw) whatever else arrives for up to linger
    seconds, so that a command relayed after QUIT is seen."""

    def __init__(self, test, linger=1.0, **kw):
        self.linger = linger
        super().__init__(test, **kw)

    def _reply(self, conn, verb, text):
        super()._reply(conn, verb, text)
        if verb != "QUIT":
            return
        deadline = time.monotonic() + self.linger
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            conn.sock.settimeout(remaining)
            try:
                data = conn.sock.recv(65536)
            except socket.timeout:
                return
            if not data:
                return
            with self.changed:
                conn.raw += data
                self.changed.notify_all()


# ---------------------------------------------------------------- test case

class SessionTestCase(ProxyTestCase):
    """A RelayProxy on a plaintext-AUTH listener "plain" and helpers."""

    def proxy(self, backend, limits=None, listeners=None, **kw):
        return RelayProxy(self, backend, limits=limits,
                          listeners=listeners or PLAINTEXT_AUTH, **kw)

    def auth(self, proxy, client):
        return client.command("AUTH PLAIN " + backends.plain_blob(
            USER, proxy.users[USER]))

    def login(self, proxy, client=None):
        """A client past the greeting, EHLO and AUTH PLAIN (235)."""
        client = client or self.ehloed(proxy)
        self.assertReply(self.auth(proxy, client), 235, "2.7.0")
        return client

    def network_alive(self, proxy):
        """Whether the network process (the one that holds the sessions;
        the process the test started is the auth helper) still runs."""
        if not proxy.running():
            return False
        pid = getattr(proxy, "session_test_network_pid", None)
        if pid is None:
            pid = proxy.session_test_network_pid = proxy.network_pid()
        return tlsutil.process_state(pid) not in (None, "Z", "X")

    def assertAlive(self, proxy, what=""):
        self.assertTrue(self.network_alive(proxy),
                        "the proxy's network process is gone%s" % what)

    def assertDelivers(self, proxy, backend):
        """A new session is greeted, logs in and has a message accepted,
        and the backend has it."""
        self.assertAlive(proxy)
        before = len(backend.complete_transactions())
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        self.assertReply(client.command("QUIT"), 221)
        backend.wait_complete(before + 1)

    def read_replies_until_closed(self, client, timeout=WAIT):
        """Every complete reply until the proxy closes the connection, and
        whatever partial data came last."""
        data = client.read_until_closed(timeout)
        replies = parse_replies(data)
        tail = data.split(b"\r\n")[-1]
        return replies, tail, data

    def trickle(self, client, data, interval=1.0, limit=TRICKLE_LIMIT):
        """Sends data one byte every interval seconds (never a line end)
        for at most limit seconds, stopping as soon as the proxy sends
        anything or closes.  Returns (seconds from the start to the first
        byte or EOF from the proxy, or None if nothing came; what was
        received until the proxy closed)."""
        self.assertNotIn(b"\n", data)
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < limit:
            if sent < len(data):
                try:
                    client.send(data[sent:sent + 1])
                except OSError:
                    pass        # closed under us: read what is there
                sent += 1
            if client.pending(interval):
                elapsed = time.monotonic() - start
                return elapsed, client.read_until_closed(WAIT)
        return None, b""

    def assertClosedAtIdleDeadline(self, elapsed, received, what):
        self.assertIsNotNone(
            elapsed, "%s: still open after %.0f s of trickling with "
            "idle_timeout %.0f s (the deadline is pushed back by each byte)"
            % (what, TRICKLE_LIMIT, IDLE_TIMEOUT))
        replies = parse_replies(received)
        self.assertTrue(replies, "%s: closed without a reply after %.1f s "
                        "(received %r)" % (what, elapsed, received))
        self.assertReply(replies[-1], 421, "4.4.2")
        self.assertIn("timeout", " ".join(replies[-1][1]).lower(), replies)
        # Not early either: the deadline is idle_timeout after the last
        # reply (timers do not fire early; half a second for slack).
        self.assertGreaterEqual(elapsed, IDLE_TIMEOUT - 0.5, replies)


# --------------------------------------------------------------------- QUIT

class Quit(SessionTestCase):

    SESSIONS = 600
    CLIENTS = 4
    RCPTS_AFTER_QUIT = 100
    TIME_LIMIT = 30.0       # seconds for all the sessions together

    def test_quit_then_pipelined_rcpts_do_not_crash(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend)
        self.assertAlive(proxy)
        group = b"QUIT\r\n" + (b"RCPT TO:<r@example.net>\r\n" *
                               self.RCPTS_AFTER_QUIT)
        port = proxy.port("plain")
        deadline = time.monotonic() + self.TIME_LIMIT
        lock = threading.Lock()
        started = [0]
        done = [0]
        wrong = []

        def one_session():
            """None if the client saw 221 and then EOF, else what it saw."""
            try:
                with harness.Raw(port, timeout=3) as client:
                    self.assertReply(client.read_reply(), 220)
                    self.assertReply(client.command("EHLO " + CLIENT), 250)
                    self.assertReply(self.auth(proxy, client), 235)
                    self.assertReply(
                        client.command("MAIL FROM:<%s>" % SENDER), 250)
                    client.send(group)
                    replies, tail, data = \
                        self.read_replies_until_closed(client, timeout=3)
            except (AssertionError, OSError) as e:
                return "%s: %s" % (type(e).__name__, e)
            if [code for code, _ in replies] != [221] or tail:
                return data[:300]
            return None

        def run():
            while time.monotonic() < deadline:
                with lock:
                    if started[0] >= self.SESSIONS:
                        return
                    started[0] += 1
                    i = started[0]
                if not self.network_alive(proxy):
                    return
                problem = one_session()
                with lock:
                    if problem is None:
                        done[0] += 1
                    else:
                        wrong.append((i, problem))

        # A few clients at once: more interleavings of a backend closing
        # after its 221 with RCPTs still being read from a client.
        threads = [threading.Thread(target=run, daemon=True)
                   for _ in range(self.CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.TIME_LIMIT + 2 * WAIT)
        self.assertFalse([t for t in threads if t.is_alive()],
                         "client threads still running")
        self.assertAlive(proxy, " after %d sessions with commands "
                         "pipelined behind QUIT" % started[0])
        self.assertEqual(wrong[:3], [], "%d of %d sessions went wrong "
                         "(want exactly one 221 and then EOF)"
                         % (len(wrong), started[0]))
        self.assertGreater(done[0], 20, "too few sessions in %.0f s"
                           % self.TIME_LIMIT)
        self.assertDelivers(proxy, backend)

    def test_nothing_relayed_after_authenticated_quit(self):
        backend = LingeringQuitBackend(self, linger=1.5)
        proxy = self.proxy(backend)
        client = self.login(proxy)
        # A NOOP first, so that this session's backend connection is not
        # taken for the capability probe (EHLO and QUIT only).
        self.assertReply(client.command("NOOP"), 250)
        client.send(b"QUIT\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                    b"NOOP\r\n")
        replies, tail, data = self.read_replies_until_closed(client)

        def session_quit(b):
            return [c for c in b.snapshot()
                    if "NOOP" in c.verbs() and "QUIT" in c.verbs()]
        conn = backend.wait(session_quit, "the session's QUIT relayed")[0]
        # Whatever the proxy would relay after QUIT arrives within the
        # backend's linger time: wait for the connection to end.
        backend.wait(lambda b: conn.closed, "the backend connection to end",
                     timeout=WAIT)
        after = conn.raw.split(b"QUIT\r\n", 1)[1]
        self.assertEqual(after, b"", "relayed after QUIT")
        for other in backend.snapshot():
            if b"QUIT\r\n" in other.raw:
                self.assertEqual(other.raw.split(b"QUIT\r\n", 1)[1], b"",
                                 "relayed after QUIT: %r" % other)
        self.assertEqual([c for c in backend.snapshot()
                          if b"a@b" in c.raw or b"c@d" in c.raw], [])
        # The client: the backend's 221, then the close.
        self.assertEqual([r[0] for r in replies], [221], data)
        self.assertEqual(tail, b"", data)


# ------------------------------------------------------------ backend reset

class BackendReset(SessionTestCase):

    def assertOnly4xxThenClosed(self, replies, data):
        self.assertTrue(replies, "no reply at all after the reset: %r"
                        % data)
        for reply in replies:
            self.assertEqual(reply[0] // 100, 4,
                             "after the backend reset: %r" % (replies,))
            self.assertEnhancedClass(reply, 4)

    def test_backend_reset_on_second_rcpt(self):
        backend = ResettingBackend(self, "RCPT", nth=2)
        proxy = self.proxy(backend)
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<one@example.net>"), 250)
        client.send(b"RCPT TO:<two@example.net>\r\n")
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertOnly4xxThenClosed(replies, data)
        self.assertTrue(any(r[0] == 421 and r[1][0].startswith("4.4.2")
                            for r in replies) or replies[0][0] == 451,
                        replies)
        self.assertEqual(backend.resets, 1)
        self.assertDelivers(proxy, backend)

    def test_backend_reset_on_second_rcpt_pipelined(self):
        backend = ResettingBackend(self, "RCPT", nth=2)
        proxy = self.proxy(backend)
        client = self.login(proxy)
        client.send(b"MAIL FROM:<%s>\r\nRCPT TO:<one@example.net>\r\n"
                    b"RCPT TO:<two@example.net>\r\n"
                    b"RCPT TO:<three@example.net>\r\nDATA\r\n"
                    % SENDER.encode())
        replies, tail, data = self.read_replies_until_closed(client)
        # MAIL and the first RCPT were accepted by the backend, but the
        # proxy may or may not have read those replies before the reset:
        # 250s, then only 4xx (never a 354), then the close.
        codes = [r[0] for r in replies]
        accepted = 0
        while accepted < len(codes) and codes[accepted] == 250:
            accepted += 1
        self.assertLessEqual(accepted, 2, replies)
        self.assertOnly4xxThenClosed(replies[accepted:], data)
        self.assertLessEqual(len(replies), 5 + 1,
                             "more replies than commands (+ a 421): %r"
                             % (replies,))
        self.assertEqual(backend.resets, 1)
        self.assertDelivers(proxy, backend)

    def test_backend_reset_on_terminator(self):
        backend = ResettingBackend(self, ".")
        proxy = self.proxy(backend)
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertOnly4xxThenClosed(replies, data)
        self.assertNotIn(b"250", data)
        self.assertEqual(backend.resets, 1)
        proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                       r"\bevent=disconnect\b")
        self.assertEqual(proxy.log_lines(r"\bevent=transaction\b",
                                         r'\breply="?2'), [],
                         "a transaction logged as accepted")
        # But logged: the message went to the backend, which may have
        # kept it; the audit trail says so.
        lost = proxy.log_lines(r"\bsid=%s\b" % re.escape(sid),
                               r"\bevent=transaction\b")
        self.assertEqual(len(lost), 1, proxy.log())
        fields = harness.parse_log_fields(lost[0])
        self.assertEqual(fields.get("reply"), "", lost[0])
        self.assertIn("backend connection lost", fields.get("error", ""))
        self.assertDelivers(proxy, backend)


# ----------------------------------------------------- close after the dot

class CloseAfterTerminator(SessionTestCase):

    DELAY = 0.5     # the backend's end-of-data reply comes this late

    def start_message(self, proxy):
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        return client

    def test_half_close_after_terminator_gets_reply(self):
        backend = RecordingBackend(self, delays={".": self.DELAY})
        proxy = self.proxy(backend)
        client = self.start_message(proxy)
        sid = proxy.session_id(client)
        client.send(dot_stuff(BODY))
        client.shutdown_write()
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertTrue(replies, "closed with no reply to the end of data")
        self.assertReply(replies[0], 250, "2.0.0", "queued as REC1")
        backend.wait_complete(1)
        line = proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                              r"\bevent=transaction\b")
        self.assertIn("queued as REC1",
                      harness.parse_log_fields(line).get("reply", ""))

    def test_close_after_terminator_logs_transaction(self):
        backend = RecordingBackend(self, delays={".": self.DELAY})
        proxy = self.proxy(backend)
        client = self.start_message(proxy)
        sid = proxy.session_id(client)
        client.send(dot_stuff(BODY))
        client.close()
        done = backend.wait_complete(1)
        self.assertTrue(done[0].message().endswith(b"Bye.\r\n"), done)
        line = proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                              r"\bevent=transaction\b")
        fields = harness.parse_log_fields(line)
        self.assertTrue(fields.get("reply", "").startswith("250 "), line)
        self.assertIn("queued as REC1", fields["reply"])

    def test_client_gone_before_354_sends_no_terminator(self):
        # DATA, then the client half-closes before the backend's 354:
        # the proxy must neither feed the backend a message nor end it
        # (no terminator: the backend discards the transaction), and it
        # must not touch a session relay it freed (ASan).
        backend = RecordingBackend(self, delays={"DATA": self.DELAY})
        proxy = self.proxy(backend)
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        client.send(b"DATA\r\n")
        client.shutdown_write()
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertEqual([r[0] for r in replies], [354], data)
        proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                       r"\bevent=disconnect\b")
        self.assertEqual(backend.complete_transactions(), [])
        self.assertDelivers(proxy, backend)

    def test_idle_timeout_after_terminator_still_answers_the_message(self):
        # The client waits for a slow backend: the idle deadline passes
        # while the message's reply is owed.  The message may be
        # delivered, so its reply comes first (and is logged), then the
        # 421; a 451 would make the client send it again.
        backend = RecordingBackend(self, delays={".": 2.5})
        proxy = self.proxy(backend, limits={"idle_timeout": "1s"})
        client = self.start_message(proxy)
        sid = proxy.session_id(client)
        client.send(dot_stuff(BODY))
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertEqual([r[0] for r in replies], [250, 421], data)
        self.assertReply(replies[0], 250, "2.0.0", "queued as REC1")
        self.assertReply(replies[1], 421, "4.4.2")
        line = proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                              r"\bevent=transaction\b")
        self.assertIn("queued as REC1",
                      harness.parse_log_fields(line).get("reply", ""))

    def test_client_reset_after_terminator_logs_transaction(self):
        # A client that resets the connection right after the message:
        # nothing can be answered, but the backend's verdict is still
        # waited for and logged.
        backend = RecordingBackend(self, delays={".": self.DELAY})
        proxy = self.proxy(backend)
        client = self.start_message(proxy)
        sid = proxy.session_id(client)
        client.send(dot_stuff(BODY))
        time.sleep(0.1)     # the terminator is with the backend
        reset(client.sock)
        backend.wait_complete(1)
        line = proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                              r"\bevent=transaction\b")
        self.assertIn("queued as REC1",
                      harness.parse_log_fields(line).get("reply", ""))
        self.assertDelivers(proxy, backend)


    def test_quit_behind_a_slow_message_gets_the_backends_221(self):
        # ".", QUIT pipelined; the backend is slower than idle_timeout:
        # after QUIT the wait is the backend's (its timeout), so the
        # client gets the message's reply and the 221, no 421.
        backend = RecordingBackend(self, delays={".": 2.5})
        proxy = self.proxy(backend, limits={"idle_timeout": "1s"})
        client = self.start_message(proxy)
        client.send(dot_stuff(BODY) + b"QUIT\r\n")
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertEqual([r[0] for r in replies], [250, 221], data)

    def test_backend_lost_behind_a_closing_session_says_421_once(self):
        # The idle deadline passes while the message's reply is owed (the
        # 421 is queued behind it), then the backend dies: the message
        # gets 451, and the client one 421, not a second one.
        class SlowThenReset(RecordingBackend):
            def _reply(self, conn, verb, text):
                if verb == ".":
                    time.sleep(2.0)
                    reset(conn.sock)
                    raise ConnectionResetError("reset on purpose")
                super()._reply(conn, verb, text)

        backend = SlowThenReset(self)
        proxy = self.proxy(backend, limits={"idle_timeout": "1s"})
        client = self.start_message(proxy)
        client.send(dot_stuff(BODY))
        replies, tail, data = self.read_replies_until_closed(client)
        self.assertEqual([r[0] for r in replies], [451, 421], data)


class AbortedMessage(SessionTestCase):

    def test_ehlo_pipelined_after_an_aborted_message_shows_the_new_connection(
            self):
        # A message over max_message_size drops the backend connection;
        # an EHLO pipelined behind the next command, queued while the
        # backend connects again, is answered by the proxy once that
        # connection is ready, with its extensions (they are unknown
        # before), and is not relayed.
        backend = RecordingBackend(self, caps=backends.FULL_CAPS)
        proxy = self.proxy(backend, limits={"max_message_size": "1K"})
        client = self.login(proxy)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(b"Subject: big\r\n\r\n" + b"x" * 4000 +
                              b"\r\n"))
        self.assertReply(client.read_reply(), 552, "5.3.4")
        # The next connection offers less.
        backend.caps = ["PIPELINING", "SIZE 1000000"]
        client.send(b"RSET\r\nEHLO " + CLIENT.encode() + b"\r\n")
        self.assertReply(client.read_reply(), 250)
        code, lines = client.read_reply()
        self.assertEqual(code, 250, lines)
        keywords = [l.split()[0].upper() for l in lines[1:]]
        self.assertNotIn("8BITMIME", keywords, lines)
        self.assertIn("PIPELINING", keywords, lines)
        sessions = [c for c in backend.session_connections()
                    if "RSET" in c.verbs()]
        self.assertTrue(sessions, backend.snapshot())
        self.assertEqual(sessions[-1].verbs()[-1], "RSET", sessions[-1])
        self.assertNotIn(b"EHLO " + CLIENT.encode(), sessions[-1].lines)


class StallingBackend:
    """A minimal ESMTP backend that, after its 354, reads nothing for
    stall seconds, then takes the message and answers 250."""

    def __init__(self, test, stall):
        self.stall = stall
        self.messages = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        test.addCleanup(self.sock.close)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(60)
            f = conn.makefile("rb")
            conn.sendall(b"220 stall.example ESMTP\r\n")
            for line in f:
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-stall.example\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    time.sleep(self.stall)
                    tail = b""
                    while not tail.endswith(b"\r\n.\r\n"):
                        chunk = f.read1(1 << 20)
                        if not chunk:
                            return
                        tail = (tail + chunk)[-5:]
                    self.messages += 1
                    conn.sendall(b"250 2.0.0 taken\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")


class BackPressure(SessionTestCase):

    SIZE = 24 * 1024 * 1024
    STALL = 3.0
    GROWTH_LIMIT_KB = 8 * 1024

    def test_message_to_a_stalled_backend_keeps_memory_bounded(self):
        # DESIGN.md: when the backend's write queue passes a threshold,
        # reading from the client stops until it drains.  A backend that
        # stops reading mid-message must not make the proxy buffer what
        # a fast client sends (it once took every TLS record whole).
        backend = StallingBackend(self, self.STALL)
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + \
            "quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        with backends.environment({"ASAN_OPTIONS": asan}):
            proxy = self.proxy(backend.address,
                               limits={"max_message_size": "50M"},
                               backend_keys={"timeout": "60s"},
                               listeners={"sub": {"mode": "starttls"}})
        # Over TLS: each record then reaches the session on its own.
        client = proxy.connect("sub")
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        tlsutil.starttls(client, tlsutil.shared_pki().client_context())
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        self.login(proxy, client)
        pid = proxy.network_pid()
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        baseline = backends.proc_rss_kb(pid)
        line = b"x" * 78 + b"\r\n"
        payload = line * (self.SIZE // len(line)) + b".\r\n"
        samples = []
        sender = threading.Thread(
            target=lambda: client.sock.sendall(payload), daemon=True)
        sender.start()
        deadline = time.monotonic() + self.STALL
        while time.monotonic() < deadline:
            rss = backends.proc_rss_kb(pid)
            if rss:
                samples.append(rss)
            time.sleep(0.02)
        sender.join(6 * WAIT)
        self.assertFalse(sender.is_alive(), "the message did not go out")
        self.assertReply(client.read_reply(timeout=6 * WAIT), 250)
        self.assertEqual(backend.messages, 1)
        growth = max(samples) - baseline
        self.assertLess(growth, self.GROWTH_LIMIT_KB,
                        "network process grew by %d kB while the backend "
                        "read nothing" % growth)


class DisconnectPoints(SessionTestCase):
    """Either side goes away at every step of a whole session: the proxy
    survives each (ASan in CI), and the next session still delivers."""

    STEPS = ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "BODY", "DOT", "QUIT"]

    def dialogue(self, proxy, client, upto):
        """Runs the session's steps before upto; returns False once the
        proxy closed (which a backend going away may cause)."""
        plain = backends.plain_blob(USER, proxy.users[USER])
        script = {
            "EHLO": ("EHLO " + CLIENT, None),
            "AUTH": ("AUTH PLAIN " + plain, None),
            "MAIL": ("MAIL FROM:<%s>" % SENDER, None),
            "RCPT": ("RCPT TO:<%s>" % RCPT, None),
            "DATA": ("DATA", None),
            "BODY": (None, dot_stuff(BODY)[:-3]),
            "DOT": (None, b".\r\n"),
            "QUIT": ("QUIT", None),
        }
        for step in self.STEPS[:self.STEPS.index(upto)]:
            line, raw = script[step]
            try:
                if line is not None:
                    client.command(line)
                elif step == "DOT":
                    client.send(raw)
                    client.read_reply()
                else:
                    client.send(raw)
            except (OSError, AssertionError, EOFError):
                return False
        return True

    def test_client_goes_away_at_every_step(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend)
        for step in self.STEPS:
            for how in ("close", "half-close", "reset"):
                client = proxy.connect("plain")
                client.read_reply()
                self.dialogue(proxy, client, step)
                if how == "close":
                    client.close()
                elif how == "half-close":
                    client.shutdown_write()
                    client.read_until_closed(WAIT)
                else:
                    reset(client.sock)
                self.assertAlive(proxy, " after a client %s before %s"
                                 % (how, step))
        self.assertDelivers(proxy, backend)

    def test_backend_goes_away_at_every_step(self):
        for verb in ("EHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"):
            backend = ResettingBackend(self, verb, nth=2 if verb == "EHLO"
                                       else 1)
            proxy = self.proxy(backend)
            client = proxy.connect("plain")
            client.read_reply()
            self.dialogue(proxy, client, "QUIT")
            with contextlib.suppress(OSError, AssertionError, EOFError):
                client.command("QUIT")
            client.close()
            self.assertAlive(proxy, " after the backend reset at %s" % verb)
            self.assertDelivers(proxy, backend)
            proxy.stop()


# ------------------------------------------------------------ idle timeout

class IdleDeadline(SessionTestCase):

    LIMITS = {"idle_timeout": "%ds" % IDLE_TIMEOUT}

    def test_trickled_command_line_closed_at_idle_timeout(self):
        proxy = harness.Proxy(self, {"limits": self.LIMITS})
        client = self.ehloed(proxy)
        elapsed, received = self.trickle(
            client, b"NOOP this line never ends, one byte a second")
        self.assertClosedAtIdleDeadline(elapsed, received, "before AUTH")

    def test_trickled_command_line_after_auth_closed_at_idle_timeout(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend, limits=self.LIMITS)
        client = self.login(proxy)
        elapsed, received = self.trickle(
            client, b"MAIL FROM:<one-byte-a-second@example.com>")
        self.assertClosedAtIdleDeadline(elapsed, received, "after AUTH")

    def test_complete_command_every_two_seconds_is_not_closed(self):
        proxy = harness.Proxy(self, {"limits": self.LIMITS})
        client = self.ehloed(proxy)
        start = time.monotonic()
        for _ in range(4):          # 8 s, well past one idle_timeout
            self.assertFalse(client.pending(2.0),
                             "the proxy spoke (or closed) %.1f s in: %r"
                             % (time.monotonic() - start, client.buf))
            self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("QUIT"), 221)

    def test_idle_timeout_applies_to_sasl_response(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend, limits=self.LIMITS)
        client = self.ehloed(proxy)
        self.assertReply(client.command("AUTH LOGIN"), 334)
        response = base64.b64encode(b"a-user-name-trickled@example.com")
        elapsed, received = self.trickle(client, response)
        self.assertClosedAtIdleDeadline(elapsed, received,
                                        "in the AUTH LOGIN dialogue")
        self.assertNoSession(backend)

    def assertNoSession(self, backend):
        self.assertEqual(backend.session_connections(), [])


# ----------------------------------------------------------- junk commands

class JunkCommands(SessionTestCase):

    LIMIT = 5
    LIMITS = {"max_junk_commands": LIMIT}

    def assertJunkLimit(self, client):
        for _ in range(self.LIMIT):
            self.assertReply(client.command("NOOP"), 250)
        reply = client.command("NOOP")
        self.assertReply(reply, 421, "4.7.0")
        client.expect_closed()

    def test_max_junk_commands(self):
        proxy = harness.Proxy(self, {"limits": self.LIMITS})
        client = self.ehloed(proxy)
        self.assertJunkLimit(client)
        self.assertReply(self.greeted(proxy).command("QUIT"), 221)

    def test_max_junk_commands_after_auth(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend, limits=self.LIMITS)
        client = self.login(proxy)
        self.assertJunkLimit(client)
        noops = [c.verbs().count("NOOP") for c in backend.snapshot()]
        self.assertLessEqual(max(noops or [0]), self.LIMIT,
                             "NOOPs beyond the limit reached the backend")

    def test_max_junk_commands_count_restarts_after_a_message(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend, limits=self.LIMITS)
        client = self.login(proxy)
        for _ in range(self.LIMIT):
            self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        for _ in range(self.LIMIT):
            self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("QUIT"), 221)
        backend.wait_complete(1)


# ------------------------------------------------------------ implicit TLS

class ImplicitTlsRefusal(SessionTestCase):

    def test_implicit_tls_over_address_limit_writes_no_plaintext(self):
        proxy = tlsutil.TlsProxy(
            self, tlsutil.shared_pki(),
            listeners={"plain": None, "implicit": {"mode": "implicit-tls"}},
            limits={"max_connections_per_address": 1,
                    "handshake_timeout": "2s"})
        first = tlsutil.implicit(proxy, tlsutil.client_context())
        second = proxy.connect("implicit")
        hello = tlsutil.BioClient(second.sock,
                                  tlsutil.client_context()).start()
        self.assertTrue(hello, "no ClientHello to send")
        with contextlib.suppress(OSError):
            second.send(hello)
        data = second.read_until_closed(WAIT)
        self.assertIsNone(re.match(rb"\d{3}[ -]", data),
                          "plaintext SMTP on an implicit-TLS port: %r"
                          % data[:100])
        # Nothing, or nothing but TLS records (an alert, a handshake).
        self.assertEqual(non_tls_bytes(data), b"",
                         "not TLS on an implicit-TLS port")
        # Refused by the limit, not by anything else.
        proxy.wait_log(r"\bevent=reject\b",
                       r"\breason=max_connections_per_address\b")
        # The first connection is unharmed.
        self.assertReply(first.command("EHLO " + CLIENT), 250)


# ------------------------------------------------------- secrets in memory

def process_regions(pid, max_region=1 << 30, chunk=8 << 20, overlap=4096):
    """Yields (address, mapping name, bytes) for the private writable
    mappings (rw-p: heap, stacks, .data/.bss, anonymous mmaps) of process
    pid, read from /proc/PID/mem in chunks of chunk bytes that overlap
    by overlap bytes (so that a string up to that long across a chunk
    boundary is found).  Regions over max_region bytes (sanitizer shadow
    memory) are left out.  Raises unittest.SkipTest if /proc/PID/mem
    cannot be read at all."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read().splitlines()
        fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    except OSError as e:
        raise unittest.SkipTest("cannot read the memory of pid %d: %s"
                                % (pid, e))
    read_any = False
    try:
        for line in maps:
            fields = line.split(None, 5)
            perms = fields[1]
            if not (perms.startswith("rw") and perms[3] == "p"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5].strip() if len(fields) > 5 else ""
            if end - start > max_region:
                continue
            address = start
            while address < end:
                size = min(chunk + overlap, end - address)
                try:
                    data = os.pread(fd, size, address)
                except OSError:
                    break       # unmapped meanwhile, or a guard page
                read_any = True
                yield address, name, data
                address += chunk
    finally:
        os.close(fd)
    if not read_any:
        raise unittest.SkipTest("no writable mapping of pid %d could be "
                                "read from /proc/%d/mem" % (pid, pid))


def secret_needles(label, secret, window=24, step=12):
    """(what, bytes) pairs to look for: secret itself and every window-byte
    slice of it at step-byte offsets, so that a copy partly overwritten
    since is still found.  A slice of a long random string cannot occur
    by chance."""
    secret = secret.encode() if isinstance(secret, str) else secret
    needles = [(label, secret)]
    for offset in range(0, max(1, len(secret) - window + 1), step):
        needles.append(("%s[%d:%d]" % (label, offset, offset + window),
                        secret[offset:offset + window]))
    return needles


def find_in_memory(pid, needles):
    """Where each needle is in pid's writable memory: a list of
    (what, address, mapping name, the bytes around it)."""
    found = []
    seen = set()
    for address, name, data in process_regions(pid):
        for what, needle in needles:
            at = data.find(needle)
            while at >= 0:
                where = address + at
                if (what, where) not in seen:
                    seen.add((what, where))
                    found.append((what, "0x%x" % where, name or "anon",
                                  data[max(0, at - 40):
                                       at + len(needle) + 40]))
                at = data.find(needle, at + 1)
    return found


class SecretsInMemory(SessionTestCase):
    """After the 235 nothing of the AUTH exchange that could give the
    password away is left in the network process: not the password, not
    the base64 of the PLAIN response, not the base64 of the LOGIN
    password, in the heap, the worker's read buffer, the line buffers or
    TLS's buffers (session.c wipes AUTH lines and SASL responses in place;
    tls-conn.c wipes decrypted records; OpenSSL cleanses its own).  The
    slices of secret_needles() matter: without SSL_OP_CLEANSE_PLAINTEXT
    what is left of the AUTH line in OpenSSL's record buffer is only part
    of it."""

    PLAIN_USER = USER
    LOGIN_USER = "bob"

    def setUp(self):
        # Long and unique: no chance match, and long enough that a copy
        # survives in a buffer a shorter read later reuses.
        self.plain_password = "plain-" + os.urandom(48).hex()
        self.login_password = "login-" + os.urandom(48).hex()
        # The control: a name the session keeps (for XCLIENT HELO= and
        # the Received header), so the scan is seen to reach its memory.
        self.helo = "helo-%s.example" % os.urandom(8).hex()

    def start(self, listeners):
        backend = RecordingBackend(self)
        proxy = RelayProxy(self, backend, listeners=listeners,
                           users={self.PLAIN_USER: self.plain_password,
                                  self.LOGIN_USER: self.login_password})
        return backend, proxy

    def needles(self, login=True):
        plain = backends.plain_blob(self.PLAIN_USER, self.plain_password)
        needles = (secret_needles("PLAIN password", self.plain_password) +
                   secret_needles("AUTH PLAIN response", plain))
        if login:
            needles += (
                secret_needles("LOGIN password", self.login_password) +
                secret_needles("AUTH LOGIN response", base64.b64encode(
                    self.login_password.encode())))
        return needles

    def assertNotInMemory(self, proxy, needles, when, control=True):
        """None of needles in the network process's memory (and, with
        control, the sessions' EHLO name is: the scan reached them)."""
        control_needle = ("control", self.helo.encode())
        found = find_in_memory(proxy.network_pid(),
                               needles + [control_needle])
        seen = [f for f in found if f[0] == "control"]
        found = [f for f in found if f[0] != "control"]
        if control:
            self.assertTrue(seen, "%s: the scan did not find the session's "
                            "EHLO name %r: it does not see the heap"
                            % (when, self.helo))
        if found:
            whole = [f for f in found if "[" not in f[0]] or found
            self.fail("%s: AUTH secrets in the network process's memory "
                      "(%d matches of: %s); e.g. (what, address, mapping, "
                      "around it) %r"
                      % (when, len(found),
                         ", ".join(sorted({f[0] for f in whole})),
                         whole[:2]))

    def auth_plain(self, client):
        self.assertReply(client.command(
            "AUTH PLAIN " + backends.plain_blob(
                self.PLAIN_USER, self.plain_password)), 235, "2.7.0")

    def auth_login(self, client):
        self.assertReply(client.command("AUTH LOGIN"), 334)
        self.assertReply(client.command(base64.b64encode(
            self.LOGIN_USER.encode())), 334)
        self.assertReply(client.command(base64.b64encode(
            self.login_password.encode())), 235, "2.7.0")

    def check_sessions(self, proxy, connect, what):
        """AUTH PLAIN (initial response) in one session, memory checked
        after its 235; AUTH LOGIN in a second one, checked after its 235;
        both checked again after both sessions ended."""
        first = connect()
        self.auth_plain(first)
        self.assertNotInMemory(proxy, self.needles(login=False),
                               "%s, after AUTH PLAIN's 235" % what)
        second = connect()
        self.auth_login(second)
        self.assertNotInMemory(proxy, self.needles(),
                               "%s, after AUTH LOGIN's 235" % what)
        for client in (first, second):
            sid = proxy.session_id(client)
            self.assertReply(client.command("QUIT"), 221)
            client.expect_closed()
            client.close()      # no linger waiting for our FIN
            proxy.wait_log(r"\bsid=%s\b" % re.escape(sid),
                           r"\bevent=disconnect\b")
        # The EHLO name may be gone with the sessions: no control.
        self.assertNotInMemory(proxy, self.needles(),
                               "%s, after both sessions ended" % what,
                               control=False)

    def test_auth_secrets_not_left_in_network_process_memory(self):
        backend, proxy = self.start(PLAINTEXT_AUTH)

        def connect():
            client = self.greeted(proxy)
            self.assertReply(client.command("EHLO " + self.helo), 250)
            return client
        self.check_sessions(proxy, connect, "plain listener")

    def test_auth_secrets_not_left_in_memory_after_starttls(self):
        listeners = dict(PLAINTEXT_AUTH)
        listeners["sub"] = {"mode": "starttls", "require_tls": "yes"}
        backend, proxy = self.start(listeners)

        def connect():
            client = self.ehloed(proxy, listener="sub")
            tlsutil.starttls(client, tlsutil.client_context())
            self.assertReply(client.command("EHLO " + self.helo), 250)
            return client
        self.check_sessions(proxy, connect, "STARTTLS")


# -------------------------------------------------------------- long lines

class LongLines(SessionTestCase):
    """A command line up to [limits] max_line_length reaches the backend
    byte for byte.  The length comes from an ESMTP parameter the backend
    offers (DSN's ENVID= and ORCPT=, whose length the proxy leaves to the
    backend): a path itself is refused beyond RFC 5321's 256 octets (501
    5.5.4, unit-tested in test_relay_parse and test_session_cmd), and a
    parameter the backend does not offer with 555."""

    MAX_LINE = 8000
    LENGTH = 5000       # bytes in each long line, without CRLF

    def padded(self, command, parameter):
        """command followed by parameter (e.g. "ENVID=") and as many "v"
        as make LENGTH bytes in all."""
        line = command + " " + parameter
        line += "v" * (self.LENGTH - len(line))
        self.assertEqual(len(line), self.LENGTH)
        return line

    def test_long_command_relayed_up_to_max_line_length(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend,
                           limits={"max_line_length": self.MAX_LINE})
        client = self.login(proxy)
        rcpt = self.padded("RCPT TO:<%s>" % RCPT, "ORCPT=rfc822;")
        mail = self.padded("MAIL FROM:<%s>" % SENDER, "ENVID=")

        # A long RCPT TO (the relay once cut relayed lines at 4096 bytes
        # with "500 5.5.6 Line too long", whatever max_line_length said).
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command(rcpt), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        # A long MAIL FROM (its rewrite once went through a fixed
        # buffer).
        self.assertReply(client.command(mail), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(dot_stuff(BODY))
        self.assertReply(client.read_reply(), 250)
        self.assertReply(client.command("QUIT"), 221)

        done = backend.wait_complete(2)
        self.assertEqual(done[0].rcpts, [rcpt.encode()])
        self.assertEqual(done[1].mail, mail.encode())
        self.assertEqual(done[1].rcpts, [("RCPT TO:<%s>" % RCPT).encode()])
        # Byte for byte on the wire, each a whole CRLF-terminated line.
        conn = [c for c in backend.session_connections()
                if rcpt.encode() in c.raw][0]
        self.assertIn(b"\r\n" + rcpt.encode() + b"\r\n", conn.raw)
        self.assertIn(b"\r\n" + mail.encode() + b"\r\n", conn.raw)


if __name__ == "__main__":
    unittest.main()
