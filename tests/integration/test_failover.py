"""Several backends ([backend] address is a list, README "Several
backends"), as clients, the backends and the log see it:

- failover at AUTH: the first backend down at start, killed between
  sessions, killed during a session (that session gets 421, the next
  goes to the second), a failover that skips a backend down, the
  reconnect after an aborted message; every backend down: the right password gets
  "454 4.7.0 Login accepted, but the mail service is temporarily
  unavailable", nothing is delivered, and the client logs in on the same
  connection once a backend is back; a backend back up is used again
  after its back-off (retry_interval); each change of state is logged
  exactly once (event=backend_state);
- a backend's own xclient= in the list;
- a reload that adds a backend keeps the state of those it kept;
- the pre-auth EHLO shows what every backend up offers;
- the probe: none during steady traffic (the sessions' hand-overs tell
  the proxy what it needs), one after probe_interval of idling.

Real backends: Postfix's smtp-sink (backends.SmtpSink) and the recording
fake MTA (backends.RecordingBackend).  Loopback only; every wait is
bounded; no test asserts how fast something happened.
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402
from backends import RecordingBackend, RelayProxy, SmtpSink  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402

CLIENT = "client.example"
SENDER = "alice@example.com"
RCPT = "bob@example.net"
BODY = (b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.net>\r\n"
        b"Subject: failover test\r\n"
        b"\r\n"
        b"Hello Bob.\r\n")

ALL_DOWN = ("454 4.7.0 Login accepted, but the mail service is "
            "temporarily unavailable; try again later")

# A plaintext listener that offers AUTH (loopback tests only): the rules
# here are about backends, not TLS.
LISTENERS = {"plain": {"mode": "plain", "require_tls": "no",
                       "allow_plaintext_auth": "yes"}}


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


def addresses(*backends_):
    return ", ".join(b if isinstance(b, str) else b.address
                     for b in backends_)


class FailoverTestCase(ProxyTestCase):

    def proxy(self, *backend_list, backend_keys=None, **kw):
        keys = {"address": addresses(*backend_list)}
        keys.update(backend_keys or {})
        return RelayProxy(self, backend_list[0], backend_keys=keys,
                          listeners=LISTENERS, **kw)

    def stopped_sink(self):
        """An smtp-sink whose port nobody listens on until start()."""
        return SmtpSink(self, start=False)

    # -- clients

    def client(self, proxy):
        client = proxy.connect("plain")
        self.assertReply(client.read_reply(), 220)
        client.ehlo = client.command("EHLO " + CLIENT)
        self.assertReply(client.ehlo, 250)
        return client

    def auth(self, proxy, client):
        return client.command("AUTH PLAIN " + backends.plain_blob(
            proxy.USER, proxy.password))

    def login(self, proxy):
        client = self.client(proxy)
        self.assertReply(self.auth(proxy, client), 235, "2.7.0")
        return client

    def send_message(self, client):
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(BODY + b".\r\n")
        return client.read_reply()

    def deliver(self, proxy):
        """One session: login, one message (250), QUIT; returns its sid."""
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(self.send_message(client), 250)
        self.assertReply(client.command("QUIT"), 221)
        client.expect_closed()
        return sid

    # -- the log

    def states(self, proxy, backend):
        """The state= of each event=backend_state line of backend."""
        address = backend if isinstance(backend, str) else backend.address
        lines = proxy.log_lines(r"\bevent=backend_state\b",
                                r"\bbackend=%s(\s|$)" % re.escape(address))
        return [harness.parse_log_fields(l)["state"] for l in lines]

    def wait_state(self, proxy, backend, state, count=1):
        """Waits until backend's count-th change of state is to state."""
        def seen():
            states = self.states(proxy, backend)
            return len(states) >= count and states[count - 1] == state
        backends.wait_for(seen, "%s %s (change %d)" % (
            backend.address, state, count), timeout=2 * WAIT)

    def failover(self, proxy, sid=None):
        """(from, to) of the (session's) event=backend_failover line."""
        patterns = [r"\bevent=backend_failover\b"]
        if sid:
            patterns.append(r"\bsid=%s\b" % sid)
        fields = harness.parse_log_fields(proxy.wait_log(*patterns))
        return fields["from"], fields["to"]

    def assertStates(self, proxy, backend, expected):
        self.assertEqual(self.states(proxy, backend), expected,
                         "changes of state of %s" % backend.address)

    def assertStateLine(self, proxy, backend, state):
        """The first event=backend_state line of backend for state has
        the documented shape and level (warn down, info up)."""
        line = proxy.wait_log(r"\bevent=backend_state\b",
                              r"\bbackend=%s\b" % re.escape(backend.address),
                              r"\bstate=%s\b" % state)
        level = "warn" if state == "down" else "info"
        self.assertRegex(line, r"\blevel=%s\b.*\bevent=backend_state "
                         r"backend=\S+ state=%s reason=\"[^\"]+\"" %
                         (level, state))



class HeloJudgingBackend(RecordingBackend):
    """A backend with XCLIENT that, like Postfix with
    reject_non_fqdn_helo_hostname, refuses the EHLO after XCLIENT when
    the client's HELO name has no dot."""

    def _reply(self, conn, verb, text):
        if (verb == "EHLO" and any(l.startswith(b"XCLIENT ")
                                   for l in conn.lines)):
            name = conn.lines[-1].split(b" ", 1)[-1]
            if b"." not in name:
                text = ("504 5.5.2 <%s>: Helo command rejected: need "
                        "fully-qualified hostname" % name.decode())
        super()._reply(conn, verb, text)


class SilentBackend:
    """Accepts connections and never says a word (a wedged MTA)."""

    def __init__(self, test):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        test.addCleanup(self.sock.close)

# ------------------------------------------------------------ failover

class Failover(FailoverTestCase):

    def test_first_down_at_start_sessions_go_to_the_second(self):
        first, second = self.stopped_sink(), SmtpSink(self)
        proxy = self.proxy(first, second)
        self.wait_state(proxy, first, "down")
        self.wait_state(proxy, second, "up")
        for _ in range(3):
            self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(3)), 3)
        # The first was skipped, not tried and failed over each time.
        self.assertEqual(proxy.log_lines(r"\bevent=backend_failover\b"), [])
        self.assertStates(proxy, first, ["down"])
        self.assertStates(proxy, second, ["up"])
        self.assertStateLine(proxy, first, "down")
        self.assertStateLine(proxy, second, "up")

    def test_first_killed_between_sessions_fails_over_once(self):
        first, second = SmtpSink(self), SmtpSink(self)
        proxy = self.proxy(first, second)
        self.wait_state(proxy, first, "up")
        self.wait_state(proxy, second, "up")
        self.deliver(proxy)
        self.assertEqual(len(first.wait_messages(1)), 1)
        first.kill()
        # The next session finds out at its hand-over: the client sees
        # only its 235.
        sid = self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(1)), 1)
        self.assertEqual(self.failover(proxy, sid),
                         (first.address, second.address))
        self.assertRegex(
            proxy.wait_log(r"\bevent=backend_error\b", r"\bsid=%s\b" % sid),
            r"\bbackend=%s\b" % re.escape(first.address))
        # Later sessions go to the second without trying the first.
        self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(2)), 2)
        self.assertEqual(len(proxy.log_lines(r"\bevent=backend_failover\b")),
                         1)
        self.assertEqual(len(first.messages()), 1)
        self.assertStates(proxy, first, ["up", "down"])
        self.assertStates(proxy, second, ["up"])

    def test_first_killed_during_a_session_gives_421_then_the_second(self):
        first, second = SmtpSink(self), SmtpSink(self)
        proxy = self.proxy(first, second)
        self.wait_state(proxy, second, "up")
        client = self.login(proxy)
        first.kill()
        backends.assert_backend_lost_reply(self, client, SENDER)
        proxy.wait_log(r"\bevent=backend_lost\b",
                       r"\bbackend=%s\b" % re.escape(first.address))
        # The next session goes to the second.
        self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(1)), 1)
        self.assertEqual(first.messages(), [])
        self.assertStates(proxy, first, ["up", "down"])

    def test_all_down_the_right_password_gets_454_and_may_retry(self):
        first, second = self.stopped_sink(), self.stopped_sink()
        proxy = self.proxy(first, second)
        self.wait_state(proxy, first, "down")
        self.wait_state(proxy, second, "down")
        client = self.client(proxy)
        reply = self.auth(proxy, client)
        self.assertReply(reply, 454, "4.7.0")
        self.assertEqual(harness.reply_text(reply), ALL_DOWN)
        # Still connected, still logged out.
        self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530)
        # Each was tried, in order: the log names the last and the count.
        line = proxy.wait_log(r"\bevent=auth_tempfail\b",
                              r"\breason=backend_unavailable\b")
        fields = harness.parse_log_fields(line)
        self.assertEqual((fields["backend"], fields["tried"]),
                         (second.address, "2"))
        # One comes back: the same connection logs in and delivers,
        # before any probe has seen it (all down: a session still tries).
        second.start()
        self.assertReply(self.auth(proxy, client), 235, "2.7.0")
        self.assertReply(self.send_message(client), 250)
        self.assertEqual(len(second.wait_messages(1)), 1)
        self.assertEqual(first.messages(), [])
        self.assertStates(proxy, first, ["down"])
        self.assertStates(proxy, second, ["down", "up"])

    def test_first_back_up_is_used_again_after_its_back_off(self):
        first, second = self.stopped_sink(), SmtpSink(self)
        proxy = self.proxy(first, second,
                           backend_keys={"retry_interval": "2s"})
        self.wait_state(proxy, first, "down")
        self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(1)), 1)
        # While it stays down it is re-probed every retry_interval, and
        # that is no warning each time: its one backend_state line says
        # it is down.
        first_re = r"\bbackend=%s\b" % re.escape(first.address)
        proxy.wait_log_count(3, r"\bevent=backend_probe\b",
                             r"\bstatus=failed\b", first_re)
        self.assertEqual(proxy.log_lines(r"\blevel=warn\b",
                                         r"\bevent=backend_error\b",
                                         first_re), [])
        first.start()
        # The probe retries it every retry_interval and calls it up.
        self.wait_state(proxy, first, "up", count=2)
        proxy.wait_log(r"\bevent=backend_probe\b", r"\bstatus=ok\b",
                       r"\bbackend=%s\b" % re.escape(first.address))
        self.deliver(proxy)
        self.assertEqual(len(first.wait_messages(1)), 1)
        self.assertEqual(len(second.messages()), 1)
        self.assertStates(proxy, first, ["down", "up"])
        self.assertStates(proxy, second, ["up"])

    def test_three_backends_failover_skips_the_one_down(self):
        first, second, third = (SmtpSink(self), self.stopped_sink(),
                                SmtpSink(self))
        proxy = self.proxy(first, second, third)
        self.wait_state(proxy, second, "down")
        self.wait_state(proxy, third, "up")
        self.deliver(proxy)
        self.assertEqual(len(first.wait_messages(1)), 1)
        first.kill()
        sid = self.deliver(proxy)
        self.assertEqual(len(third.wait_messages(1)), 1)
        self.assertEqual(self.failover(proxy, sid),
                         (first.address, third.address))
        self.assertEqual(
            proxy.log_lines(r"\bevent=backend_error\b",
                            r"\bsid=%s\b" % sid,
                            r"\bbackend=%s\b" % re.escape(second.address)),
            [], "the backend down was tried while another was left")
        self.assertStates(proxy, first, ["up", "down"])
        self.assertStates(proxy, second, ["down"])
        self.assertStates(proxy, third, ["up"])

    def test_reconnect_after_an_aborted_message_fails_over(self):
        first, second = SmtpSink(self), SmtpSink(self)
        proxy = self.proxy(first, second, limits={"max_message_size": "1K"})
        self.wait_state(proxy, second, "up")
        client = self.login(proxy)
        # Over max_message_size: the proxy drops its backend connection
        # (so the backend discards the message) and connects again for
        # the next command.
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(BODY + b"x" * 2000 + b"\r\n.\r\n")
        self.assertReply(client.read_reply(), 552)
        first.kill()
        self.assertReply(self.send_message(client), 250)
        self.assertEqual(len(second.wait_messages(1)), 1)
        # smtp-sink, killed, may leave the aborted message's dump file
        # behind, empty or cut: never a whole one.
        self.assertEqual([m for m in first.messages()
                          if m.raw.endswith(b"\n\n")], [])
        self.assertEqual(self.failover(proxy),
                         (first.address, second.address))
        self.assertStates(proxy, first, ["up", "down"])

    def test_a_backend_that_never_greets_is_left_at_handover_timeout(self):
        # It accepts and says nothing: the next backend is tried after
        # handover_timeout, not after [backend] timeout (300 s here).
        silent, sink = SilentBackend(self), SmtpSink(self)
        proxy = self.proxy(silent, sink,
                           backend_keys={"handover_timeout": "1s",
                                         "timeout": "300s",
                                         "probe_interval": "1h"})
        sid = self.deliver(proxy)
        self.assertEqual(len(sink.wait_messages(1)), 1)
        self.assertEqual(self.failover(proxy, sid),
                         (silent.address, sink.address))
        line = proxy.wait_log(r"\bevent=backend_failover\b",
                              r"\bsid=%s\b" % sid)
        self.assertIn('error="hand-over timeout"', line)

    def test_a_refusal_of_one_client_marks_no_backend_down(self):
        caps = backends.DEFAULT_CAPS + ["XCLIENT NAME ADDR PORT HELO LOGIN"]
        first = HeloJudgingBackend(self, caps=caps)
        second = HeloJudgingBackend(self, caps=caps)
        proxy = self.proxy(first, second)
        proxy.wait_probe()
        # "laptop" is refused by both after XCLIENT: that client gets the
        # 454, and nobody else loses a backend.
        client = proxy.connect("plain")
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO laptop"), 250)
        reply = self.auth(proxy, client)
        self.assertReply(reply, 454, "4.7.0")
        client.close()
        self.assertNotIn("down", self.states(proxy, first))
        self.assertNotIn("down", self.states(proxy, second))
        self.deliver(proxy)
        first.wait_complete(1)
        self.assertEqual(second.complete_transactions(), [])

# ------------------------------------------------------------- xclient

class PerBackendXclient(FailoverTestCase):

    def test_each_backend_gets_its_own_xclient(self):
        xclient = backends.DEFAULT_CAPS + ["XCLIENT NAME ADDR PORT PROTO "
                                           "HELO LOGIN"]
        first = RecordingBackend(self, caps=xclient)
        second = RecordingBackend(self, caps=xclient)
        proxy = self.proxy("%s xclient=no" % first.address, second,
                           backend_keys={"xclient": "yes"})
        self.wait_state(proxy, first, "up")
        self.wait_state(proxy, second, "up")
        self.deliver(proxy)
        first.wait_complete(1)
        session = first.session_connections()[0]
        self.assertNotIn("XCLIENT", session.verbs(), session.lines)
        first.stop()
        self.deliver(proxy)
        second.wait_complete(1)
        session = second.session_connections()[0]
        self.assertIn("XCLIENT", session.verbs(), session.lines)
        self.assertStates(proxy, first, ["up", "down"])


# -------------------------------------------------------------- reload

class Reload(FailoverTestCase):

    def test_reload_adds_a_backend_and_keeps_the_state_of_the_first(self):
        first = RecordingBackend(self)
        proxy = self.proxy(first)
        self.wait_state(proxy, first, "up")
        first.wait(lambda b: [c for c in b.snapshot() if c.is_probe()],
                   "the probe at start")
        self.deliver(proxy)
        first.wait_complete(1)
        second = SmtpSink(self)
        sections = {name: dict(keys) for name, keys in proxy.sections.items()}
        sections["backend"]["address"] = addresses(first, second)
        with open(proxy.config_path, "w") as f:
            f.write(harness.render_config(sections))
        proxy.reload("ok")
        # The added one is probed at once; the kept one is not: it keeps
        # its state (no second "up") and its recent use.
        self.wait_state(proxy, second, "up")
        self.deliver(proxy)
        first.wait_complete(2)
        self.assertEqual(len([c for c in first.snapshot() if c.is_probe()]),
                         1, first.snapshot())
        self.assertStates(proxy, first, ["up"])
        # The added one is a failover now.
        first.stop()
        self.deliver(proxy)
        self.assertEqual(len(second.wait_messages(1)), 1)
        self.assertStates(proxy, first, ["up", "down"])


# ------------------------------------------------- pre-auth capabilities

def keywords(reply):
    return tlsutil.ehlo_keywords(reply)


def size_of(reply):
    for line in reply[1][1:]:
        words = line.split()
        if words and words[0].upper() == "SIZE" and len(words) > 1:
            return int(words[1])
    return None


class Capabilities(FailoverTestCase):

    def test_pre_auth_ehlo_shows_what_every_backend_up_offers(self):
        # The first lacks SMTPUTF8 and DSN and has the larger SIZE.
        first = RecordingBackend(self, caps=["PIPELINING", "SIZE 2000000",
                                             "8BITMIME",
                                             "ENHANCEDSTATUSCODES"])
        second = RecordingBackend(self)     # DEFAULT_CAPS: SIZE 1000000
        proxy = self.proxy(first, second)
        self.wait_state(proxy, first, "up")
        self.wait_state(proxy, second, "up")
        ehlo = self.client(proxy).ehlo
        for keyword in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"):
            self.assertIn(keyword, keywords(ehlo), ehlo)
        for keyword in ("SMTPUTF8", "DSN"):
            self.assertNotIn(keyword, keywords(ehlo), ehlo)
        self.assertEqual(size_of(ehlo), 1000000, ehlo)
        # The first goes down (a session fails over): only the second's.
        first.stop()
        self.deliver(proxy)
        second.wait_complete(1)
        self.assertStates(proxy, first, ["up", "down"])
        ehlo = self.client(proxy).ehlo
        for keyword in ("SMTPUTF8", "DSN", "8BITMIME"):
            self.assertIn(keyword, keywords(ehlo), ehlo)
        self.assertEqual(size_of(ehlo), 1000000, ehlo)


# --------------------------------------------------------------- probe

PROBE_INTERVAL = 5.0    # seconds


class Probe(FailoverTestCase):

    def probes(self, backend):
        return [c for c in backend.snapshot() if c.is_probe()]

    def test_no_probe_during_steady_traffic_one_after_idling(self):
        backend = RecordingBackend(self)
        proxy = self.proxy(backend, backend_keys={
            "probe_interval": "%ds" % PROBE_INTERVAL})
        backend.wait(lambda b: self.probes(b), "the probe at start")
        proxy.wait_probe()
        # Sessions about every second for three probe intervals: each
        # hand-over refreshes what the probe would learn.
        sessions = 0
        end = time.monotonic() + 3 * PROBE_INTERVAL
        while time.monotonic() < end:
            self.deliver(proxy)
            sessions += 1
            time.sleep(0.8)
        backend.wait_complete(sessions)
        self.assertEqual(len(self.probes(backend)), 1,
                         "probe connections during steady traffic: %r"
                         % self.probes(backend))
        self.assertEqual(len(backend.session_connections()), sessions)
        # Idle: one probe once probe_interval has passed without a
        # session, and no other before the next interval.
        backend.wait(lambda b: len(self.probes(b)) >= 2,
                     "a probe after probe_interval of idling",
                     timeout=PROBE_INTERVAL + WAIT)
        time.sleep(PROBE_INTERVAL / 2)
        self.assertEqual(len(self.probes(backend)), 2, self.probes(backend))
        self.assertEqual(len(backend.session_connections()), sessions)


if __name__ == "__main__":
    unittest.main()
