"""Several event loops ([server] workers = N, submitproxy.conf(5)), as an
operator and clients see them:

- the start line names the number of loops; "auto" runs one per CPU;
- connections are handed to the least-loaded loop, so sessions held open
  at once spread evenly ("event=connect ... worker=N");
- every loop speaks the whole dialogue: pre-auth, STARTTLS and implicit
  TLS, AUTH through its own channel to the auth helper, the relay;
- limits hold across loops: max_connections_per_address and
  max_connections count the sessions of every loop, and AUTH failures on
  one loop throttle the address on another (address_failure_limit); far
  over max_connections, accepting is held until sessions end;
- SIGHUP reaches every loop: new sessions on each use the new
  configuration;
- SIGTERM drains every loop: a message in DATA on one loop finishes and
  is delivered while idle sessions on the other get 421 4.3.2, and the
  process exits 0;
- many concurrent sessions over four loops all get their answers;
- a loop's stack is its own size, whatever ulimit -s says.

Loopback only; every wait is bounded; no test asserts how fast something
happened.  Python standard library plus smtp-sink and pam_wrapper.
"""

import contextlib
import os
import re
import signal
import ssl
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402
from backends import RelayProxy, SmtpSink  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402
# The service-level helpers (login, a transaction left open, waiting for
# the exit) are the operations tests' own.
from test_operations import (login, open_transaction,  # noqa: E402
                             reply_or_close, turned_away, wait_exit)

CLIENT = "client.example"


def setUpModule():
    harness.require_binary()


def workers_config(n, **sections):
    """Overrides for harness.Proxy: [server] workers = n plus sections."""
    server = dict(harness.DEFAULT_CONFIG["server"])
    server["workers"] = n
    config = {"server": server}
    config.update(sections)
    return config


def worker_of(proxy, client):
    """The loop a client's session runs on, from its event=connect line
    (found by the client's local port)."""
    port = client.local_address()[1]
    line = proxy.wait_log(r"\bevent=connect\b", r"\bport=%d\b" % port,
                          r"\bworker=\d+\b")
    return int(harness.parse_log_fields(line)["worker"])


def greeted_clients(test, proxy, count, listener="plain"):
    """count clients connected one after the other, each greeted (so its
    session has started) before the next connects; all held open."""
    clients = []
    for _ in range(count):
        client = proxy.connect(listener)
        test.assertReply(client.read_reply(), 220)
        clients.append(client)
    return clients


# ================================================================ spread

class Spread(ProxyTestCase):

    def test_start_line_names_the_number_of_loops(self):
        proxy = harness.Proxy(self, workers_config(2))
        proxy.wait_log(r"\bevent=start\b", r"\bworkers=2\b")

    def test_auto_runs_one_loop_per_cpu(self):
        proxy = harness.Proxy(self, workers_config("auto"))
        cpus = min(len(os.sched_getaffinity(0)), 64)
        line = proxy.wait_log(r"\bevent=start\b", r"\bworkers=\d+\b")
        # The proxy counts online CPUs; this process may be confined to
        # fewer (a cpuset), never to more.
        self.assertGreaterEqual(
            int(harness.parse_log_fields(line)["workers"]), cpus, line)

    def test_sessions_held_open_spread_evenly_over_both_loops(self):
        proxy = harness.Proxy(self, workers_config(2))
        clients = greeted_clients(self, proxy, 4)
        loops = sorted(worker_of(proxy, c) for c in clients)
        self.assertEqual(loops, [0, 0, 1, 1],
                         "four sessions held open went to loops %r" % loops)

    def test_a_freed_loop_takes_the_next_connection(self):
        proxy = harness.Proxy(self, workers_config(2))
        first, second = greeted_clients(self, proxy, 2)
        freed = worker_of(proxy, first)
        self.assertNotEqual(freed, worker_of(proxy, second))
        self.assertReply(first.command("QUIT"), 221)
        first.expect_closed()
        proxy.wait_log(r"\bevent=disconnect\b")
        third = greeted_clients(self, proxy, 1)[0]
        self.assertEqual(worker_of(proxy, third), freed,
                         "the new session should go to the idle loop")

    def test_every_loop_speaks_the_pre_auth_dialogue(self):
        proxy = harness.Proxy(self, workers_config(2))
        clients = greeted_clients(self, proxy, 2)
        self.assertEqual(sorted(worker_of(proxy, c) for c in clients),
                         [0, 1])
        for client in clients:
            code, lines = client.command("EHLO " + CLIENT)
            self.assertEqual(code, 250)
            self.assertIn("PIPELINING", lines)
            self.assertReply(client.command("MAIL FROM:<a@example.com>"),
                             530, "5.7.0")
            self.assertReply(client.command("NOOP"), 250)
            self.assertReply(client.command("QUIT"), 221)

    def resumed_on_the_other_loop(self, maximum=None, minimum=None):
        """A full handshake on one loop, closed cleanly (so its session
        id is resumable too), then a resumption: round robin sends it to
        the other loop.  Returns whether the session was reused."""
        pki = tlsutil.shared_pki()
        proxy = tlsutil.TlsProxy(self, pki, extra={
            "server": workers_config(2)["server"]})
        context = pki.client_context(minimum=minimum, maximum=maximum)
        first = tlsutil.implicit(proxy, context)
        self.assertReply(first.command("NOOP"), 250)  # tickets arrived
        session = first.sock.session
        first_loop = worker_of(proxy, first)
        self.assertReply(first.command("QUIT"), 221)
        with contextlib.suppress(ssl.SSLError, OSError):
            first.sock.unwrap()
        first.close()
        second = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, second)
        second.sock = context.wrap_socket(
            second.sock, server_hostname=harness.HOSTNAME, session=session)
        self.assertReply(second.read_reply(), 220)
        self.assertNotEqual(worker_of(proxy, second), first_loop)
        return second.sock.session_reused

    def test_tls_1_2_session_ids_resume_on_another_loop(self):
        # One session cache for every loop (one SSL_CTX, tls/tls-server.c).
        self.assertTrue(self.resumed_on_the_other_loop(
            maximum=ssl.TLSVersion.TLSv1_2))

    def test_tls_1_3_tickets_resume_on_another_loop(self):
        # One set of ticket keys for every loop.
        self.assertTrue(self.resumed_on_the_other_loop(
            minimum=ssl.TLSVersion.TLSv1_3))


# ================================================================ limits

class Limits(ProxyTestCase):

    def test_per_address_limit_counts_sessions_on_every_loop(self):
        proxy = harness.Proxy(self, workers_config(
            2, limits={"max_connections_per_address": 2}))
        held = greeted_clients(self, proxy, 2)
        self.assertEqual(sorted(worker_of(proxy, c) for c in held), [0, 1])
        third = proxy.connect()
        self.assertReply(third.read_reply(), 421, "4.7.0")
        third.expect_closed()
        proxy.wait_log(r"\bevent=reject\b",
                       r"\breason=max_connections_per_address\b")
        # One leaves: there is room again.
        self.assertReply(held[0].command("QUIT"), 221)
        held[0].expect_closed()
        proxy.wait_log(r"\bevent=disconnect\b", r"\breason=\"?quit")
        greeted_clients(self, proxy, 1)

    def test_max_connections_counts_sessions_on_every_loop(self):
        proxy = harness.Proxy(self, workers_config(
            2, limits={"max_connections": 3,
                       "max_connections_per_address": 100}))
        held = greeted_clients(self, proxy, 3)
        self.assertEqual(sorted(worker_of(proxy, c) for c in held),
                         [0, 0, 1])
        fourth = proxy.connect()
        self.assertReply(fourth.read_reply(), 421, "4.7.0")
        fourth.expect_closed()
        proxy.wait_log(r"\bevent=reject\b", r"\breason=max_connections\b")


    def test_accepting_is_held_far_over_max_connections_then_resumes(
            self):
        # Sessions over max_connections are still accepted, to hear 421;
        # max_connections + max_connections/8 + 16 of them at once (here
        # 4 + 0 + 16) mean the loops are behind: accepting is held and
        # the rest wait in the kernel's backlog until sessions end.
        proxy = harness.Proxy(self, workers_config(
            2, limits={"max_connections": 4,
                       "max_connections_per_address": 1000}))
        clients = [proxy.connect() for _ in range(4 + 16 + 5)]
        proxy.wait_log(r"\bevent=accept_held\b", r"\blimit=20\b")
        # Everyone is answered in the end, held ones included, once the
        # refused sessions are gone: four 220s, 421 for the others.
        codes = [c.read_reply()[0] for c in clients]
        self.assertEqual(codes.count(220), 4, codes)
        self.assertEqual(codes.count(421), len(clients) - 4, codes)
        proxy.wait_log(r"\bevent=accept_resumed\b")


# ======================================================= auth and relay

class Relay(ProxyTestCase):

    def setUp(self):
        tlsutil.shared_pki()

    def test_logins_on_both_loops_deliver_through_their_own_channels(self):
        sink = SmtpSink(self)
        proxy = RelayProxy(self, sink, server={"workers": 2})
        a = login(self, proxy, "sub")
        b = login(self, proxy, "subs")
        self.assertEqual(sorted([worker_of(proxy, a), worker_of(proxy, b)]),
                         [0, 1])
        for client, name in ((a, b"from loop a"), (b, b"from loop b")):
            open_transaction(self, client, b"Subject: " + name +
                             b"\r\n\r\n" + name + b"\r\n.\r\n")
            self.assertReply(client.read_reply(), 250)
        messages = sink.wait_messages(2)
        bodies = b"".join(m.message for m in messages)
        self.assertIn(b"from loop a", bodies)
        self.assertIn(b"from loop b", bodies)

    def test_a_small_stack_limit_does_not_reach_the_loops(self):
        # Under ulimit -s 256 (KiB) a loop's thread still has its own 8
        # MiB stack (WORKER_STACK_SIZE): a message's 256 KiB reads are
        # decrypted onto it, sixteen records at a time.
        prlimit = tlsutil.require_command("prlimit")
        sink = SmtpSink(self)
        proxy = RelayProxy(self, sink, start=False)
        proxy.wrapper = (prlimit, "--stack=262144", "--")
        proxy.start()
        client = login(self, proxy, "subs")
        line = b"L" * 76 + b"\r\n"
        open_transaction(self, client, b"Subject: large\r\n\r\n" +
                         line * 30000 + b".\r\n")
        self.assertReply(client.read_reply(), 250)
        [message] = sink.wait_messages(1)
        self.assertEqual(message.message.count(b"L" * 76), 30000)

    def test_auth_failures_on_one_loop_throttle_the_address_on_another(
            self):
        proxy = RelayProxy(self, "127.0.0.1:9", server={"workers": 2},
                           auth={"address_failure_limit": 2,
                                 "max_failures": 10,
                                 "failure_delay": "100ms"})
        first = self.starttls_client(proxy)
        wrong = backends.plain_blob(proxy.USER, "wrong-" + proxy.password)
        for _ in range(2):
            self.assertReply(first.command("AUTH PLAIN " + wrong),
                             535, "5.7.8")
        # Held open: the next connection goes to the other loop.
        second = self.starttls_client(proxy)
        self.assertNotEqual(worker_of(proxy, first),
                            worker_of(proxy, second))
        self.assertReply(second.command(
            "AUTH PLAIN " + backends.plain_blob(proxy.USER,
                                                proxy.password)),
            454, "4.7.0")
        proxy.wait_log(r"\breason=address_auth_limit\b")

    def starttls_client(self, proxy):
        client = proxy.connect("sub")
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        tlsutil.starttls(client, tlsutil.client_context(None))
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        return client


# =============================================================== signals

class Signals(ProxyTestCase):

    def test_sighup_reaches_every_loop(self):
        proxy = harness.Proxy(self, workers_config(2))
        before = greeted_clients(self, proxy, 2)
        sections = {name: dict(keys)
                    for name, keys in proxy.sections.items()}
        sections["server"]["hostname"] = "reloaded.example"
        with open(proxy.config_path, "w") as f:
            f.write(harness.render_config(sections))
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_log(r"\bevent=reload\b", r"\bstatus=ok\b")
        # Sessions from before keep their configuration.
        for client in before:
            self.assertReply(client.command("QUIT"), 221,
                             text="test.example")
        proxy.wait_log(r"\bevent=disconnect\b")
        after = []
        for _ in range(2):
            client = proxy.connect()
            code, lines = client.read_reply()
            self.assertEqual(code, 220)
            self.assertRegex(lines[0], r"^reloaded\.example\b")
            after.append(client)
        self.assertEqual(sorted(worker_of(proxy, c) for c in after),
                         [0, 1])

    def test_sigterm_lets_data_finish_on_one_loop_and_stops_the_other(
            self):
        sink = SmtpSink(self)
        proxy = RelayProxy(self, sink, server={"workers": 2,
                                               "shutdown_timeout": "10s"})
        idle = login(self, proxy, "sub")
        busy = login(self, proxy, "subs")
        self.assertNotEqual(worker_of(proxy, idle), worker_of(proxy, busy))
        open_transaction(self, busy, b"Subject: drain\r\n\r\nfirst\r\n")
        backends.wait_for(sink.dump_files, "the open transaction at the "
                          "backend")

        proxy.process.send_signal(signal.SIGTERM)
        proxy.wait_log(r"\bevent=stop\b")
        outcome = turned_away(*proxy.addresses("sub")[0])
        self.assertTrue(outcome in ("refused", "closed") or
                        outcome.startswith("421"),
                        "a new connection after SIGTERM got %r" % outcome)

        reply = reply_or_close(idle) if idle.pending(3.0) else \
            reply_or_close(idle, "NOOP")
        self.assertIsNotNone(reply, "the idle session closed without 421")
        self.assertReply(reply, 421, "4.3.2")

        busy.send(b"second\r\n.\r\n")
        self.assertReply(busy.read_reply(), 250)
        messages = sink.wait_messages(1)
        self.assertIn(b"first\nsecond\n", messages[0].message)
        self.assertEqual(wait_exit(self, proxy, 10 + 5), 0, proxy.log())


# ================================================================ stress

class Concurrency(ProxyTestCase):

    CLIENTS = 40

    def test_forty_concurrent_sessions_on_four_loops_all_answered(self):
        proxy = harness.Proxy(self, workers_config(
            4, limits={"max_connections_per_address": 100}))
        barrier = threading.Barrier(self.CLIENTS, timeout=WAIT)
        failures = []
        ports = []
        lock = threading.Lock()

        def session():
            try:
                with harness.Raw(proxy.port(), host=proxy.host()) as c:
                    with lock:
                        ports.append(c.local_address()[1])
                    code, _ = c.read_reply()
                    # Hold every session open at once, then talk.
                    barrier.wait()
                    replies = [code, c.command("EHLO " + CLIENT)[0],
                               c.command("NOOP")[0],
                               c.command("RCPT TO:<x@example.org>")[0],
                               c.command("QUIT")[0]]
                    if replies != [220, 250, 250, 530, 221]:
                        raise AssertionError(replies)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(repr(e))

        threads = [threading.Thread(target=session)
                   for _ in range(self.CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * WAIT)
        self.assertFalse(any(t.is_alive() for t in threads),
                         "client threads still running")
        self.assertEqual(failures, [])
        seen = {}
        for line in proxy.log_lines(r"\bevent=connect\b"):
            loop = harness.parse_log_fields(line)["worker"]
            seen[loop] = seen.get(loop, 0) + 1
        self.assertEqual(sorted(seen), ["0", "1", "2", "3"],
                         "sessions per loop: %r" % seen)
        proxy.wait_log(r"\bevent=disconnect\b")
        proxy.process.send_signal(signal.SIGTERM)
        self.assertEqual(wait_exit(self, proxy, WAIT), 0, proxy.log())
        self.assertEqual(len(re.findall(r"\bevent=disconnect\b",
                                        proxy.log())),
                         self.CLIENTS)


if __name__ == "__main__":
    unittest.main()
