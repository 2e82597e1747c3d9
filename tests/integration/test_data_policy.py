"""What the DATA scanner makes of a dot after a bare newline and of NUL
bytes (issue 11; proxy/datascan.h), as the backend and the client see it:

- a "." at the start of a line that a bare LF or bare CR started is the
  client's content: it reaches the backend stuffed ("line\\n.\\nnext" as
  "line\\r\\n..\\r\\nnext"), smtp-sink's dump shows the "." line, and it is
  never an end of data; ".." there is two dots of content;
- [relay] nul_bytes: reject (the default) answers 554 5.6.0 once the
  client's end of data came, delivers nothing (smtp-sink keeps no dump,
  the recording backend's transaction never ends), logs
  event=transaction_abort reason=nul_bytes, and the session goes on;
  strip delivers the message without its NULs; pass delivers them, with
  a line that starts with NULs and a dot stuffed where the dot stands
  ("\\0." sent as "\\0..");
- "\\r\\n\\0.\\r\\n" inside a message ends nothing under any policy, also
  at a backend that drops every NUL before it reads the lines, and at one
  that cuts each line at its first NUL (reads lines as C strings, as
  OpenSMTPD does): there ".\\0." would be the line ".", an end of data.

Loopback only; every wait is bounded.
"""

import contextlib
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tlsutil  # noqa: E402
from harness import WAIT  # noqa: E402
from test_relay import BODY, SMUGGLED, RelayTestCase  # noqa: E402


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


def lf(data):
    return data.replace(b"\r\n", b"\n")


# The look-alikes of a line "." that a bare LF or CR starts; each ends
# that line with a bare LF, a bare CR or a CR LF.
SOFT_DOT_LINES = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\n.\r",
                  b"\r.\n"]

# NULs where they matter: inside a line, before a dot at a line start,
# after the client's stuffing dot, and alone on a line.
NUL_MESSAGE = (b"Subject: nul\r\n\r\n"
               b"a\x00b\r\n"
               b"\x00.\r\n"
               b".\x00.x\r\n"
               b"\x00\r\n"
               b"end\r\n.\r\n")
# What a backend receives (after 354, before the terminator) ...
NUL_MESSAGE_STRIPPED = (b"Subject: nul\r\n\r\n"
                        b"ab\r\n"
                        b"..\r\n"
                        b"..x\r\n"
                        b"\r\n"
                        b"end\r\n")
NUL_MESSAGE_PASSED = (b"Subject: nul\r\n\r\n"
                      b"a\x00b\r\n"
                      b"\x00..\r\n"
                      b"\x00..x\r\n"
                      b"\x00\r\n"
                      b"end\r\n")

# "\r\n\0.\r\n" in the middle of a message, commands behind it.
NUL_DOT_SMUGGLING = (b"Subject: smuggling\r\n\r\nbefore\r\n\x00.\r\n" +
                     SMUGGLED + b"\r\n.\r\n")


def nul_dot_smuggling_twice(newline):
    """A line "\\0." after newline, commands and a message, and a second
    "\\0." line: to a backend that took "\\0." (or what it was sent as)
    for an end of data, a whole second transaction."""
    return (b"Subject: smuggling\r\n\r\nbefore" + newline +
            b"\x00.\r\n" + SMUGGLED + b"\x00.\r\nafter\r\n.\r\n")


class FilteringHop:
    """A TCP hop in front of backend (a RecordingBackend) that passes
    what the proxy sends through a filter, one per connection (made by
    the filter_factory class attribute: bytes in, bytes out, keeping what
    state it needs); replies pass unchanged.  The proxy's [backend]
    address is .address.  Stopped at the test's cleanup."""

    @staticmethod
    def filter_factory():
        return lambda data: data

    def __init__(self, test, backend):
        self.backend_port = backend.port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.open = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        test.addCleanup(self.stop)

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.backend_port), WAIT)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(120)
            with self.lock:
                self.open += [client, upstream]
            for src, dst, filt in ((client, upstream, self.filter_factory()),
                                   (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(src, dst, filt),
                                 daemon=True).start()

    @staticmethod
    def _pipe(src, dst, filt):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                data = filt(data) if filt else data
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def stop(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(WAIT)
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.close()


class NulDroppingHop(FilteringHop):
    """Deletes every NUL byte on the way to the backend, as an MTA that
    drops NULs before it reads lines would."""

    @staticmethod
    def filter_factory():
        return lambda data: data.replace(b"\x00", b"")


class LineCutter:
    """The filter of NulCuttingHop for one connection: passes each line
    once its LF came, cut at its first NUL (the CR LF kept)."""

    def __init__(self):
        self.buf = b""

    def __call__(self, data):
        self.buf += data
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        out = []
        for line in lines:
            cr = line.endswith(b"\r")
            line = (line[:-1] if cr else line).split(b"\x00", 1)[0]
            out.append(line + (b"\r\n" if cr else b"\n"))
        return b"".join(out)


class NulCuttingHop(FilteringHop):
    """Cuts each line at its first NUL on the way to the backend, as an
    MTA that handles the lines it reads as C strings does (OpenSMTPD:
    io_getline, then strcmp(line, ".") for the end of data)."""

    filter_factory = LineCutter


class DataPolicyTestCase(RelayTestCase):

    def data_only(self, relay):
        """relay keys, and no Received: header, so that what the backend
        receives is compared byte for byte with what the client sent."""
        keys = {"received_header": "no"}
        keys.update(relay)
        return keys

    def assertNoMoreReplies(self, client):
        # The rest of the message was message, not commands.
        self.assertFalse(client.pending(0.3),
                         "more than one reply to the message: %r" %
                         client.buf)

    def assertNothingSmuggled(self, backend):
        self.assertFalse([l for l in backend.all_lines()
                          if b"evil" in l or b"victim" in l],
                         "smuggled commands were read as commands")


# ------------------------------------------- a dot after a bare newline

class DotAfterBareNewline(DataPolicyTestCase):

    def test_dot_after_a_bare_lf_or_cr_reaches_the_backend_stuffed(self):
        backend = self.recorder()
        proxy = self.proxy(backend, relay=self.data_only(
            {"bare_newline": "normalize"}))
        client = self.login(proxy)
        for i, soft in enumerate(SOFT_DOT_LINES):
            with self.subTest(soft=soft):
                data = b"Subject: dots\r\n\r\nline" + soft + \
                    b"next\r\n.\r\n"
                self.assertReply(self.send_raw_data(client, data), 250)
                self.assertNoMoreReplies(client)
                tx = backend.wait_complete(i + 1)[i]
                self.assertEqual(tx.data, b"Subject: dots\r\n\r\n"
                                 b"line\r\n..\r\nnext\r\n")
                self.assertEqual(tx.message(), b"Subject: dots\r\n\r\n"
                                 b"line\r\n.\r\nnext\r\n")
        self.assertEqual(len(backend.complete_transactions()),
                         len(SOFT_DOT_LINES))

    def test_two_dots_after_a_bare_lf_are_two_dots_of_content(self):
        backend = self.recorder()
        proxy = self.proxy(backend, relay=self.data_only({}))
        client = self.login(proxy)
        data = b"Subject: dots\r\n\r\nline\n..\r\nnext\r\n.\r\n"
        self.assertReply(self.send_raw_data(client, data), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual(tx.data,
                         b"Subject: dots\r\n\r\nline\r\n...\r\nnext\r\n")
        self.assertEqual(tx.message(),
                         b"Subject: dots\r\n\r\nline\r\n..\r\nnext\r\n")

    def test_dot_after_a_bare_lf_is_a_dot_line_in_smtp_sinks_dump(self):
        sink = self.sink()
        proxy = self.proxy(sink, relay=self.data_only({}))
        client = self.login(proxy)
        data = b"Subject: dots\r\n\r\nline\n.\nnext\r\n.\r\n"
        self.assertReply(self.send_raw_data(client, data), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.message,
                         b"Subject: dots\n\nline\n.\nnext\n")


# ------------------------------------------------------------ nul_bytes

class NulBytes(DataPolicyTestCase):

    def test_nul_bytes_default_reject_is_554_5_6_0_and_nothing_delivered(
            self):
        backend = self.recorder()
        proxy = self.proxy(backend)     # nul_bytes not set: reject
        client = self.login(proxy)
        sid = proxy.session_id(client)
        data = (b"Subject: nul\r\n\r\nbefore\r\nhas a \x00 in it\r\n"
                b"RSET\r\nNOOP\r\nafter the nul\r\n.\r\n")
        self.assertReply(self.send_raw_data(client, data), 554, "5.6.0")
        self.assertNoMoreReplies(client)
        line = proxy.wait_log(r"\bsid=%s\b" % sid,
                              r"\bevent=transaction_abort\b")
        self.assertEqual(harness.parse_log_fields(line)["reason"],
                         "nul_bytes")
        # The backend got the start of it and then lost the connection:
        # no end of data, so nothing it could deliver.
        backend.wait(lambda b: [c for c in b.session_connections()
                                if c.closed and c.transactions],
                     "the aborted message's connection closed")
        self.assertEqual(backend.complete_transactions(), [])
        self.assertFalse([t for t in backend.transactions()
                          if b"\x00" in t.data or b"after the nul" in
                          t.data],
                         "the NUL or what followed reached the backend")
        # The session goes on: the next message is delivered.
        self.assertReply(self.send_message(client), 250)
        done = backend.wait_complete(1)
        self.assertEqual(len(done), 1, done)
        self.assertIn(b"Hello Bob", done[0].message())
        self.assertReply(client.command("QUIT"), 221)

    def test_nul_bytes_reject_leaves_no_dump_in_smtp_sink(self):
        sink = self.sink()
        proxy = self.proxy(sink, relay=self.data_only(
            {"nul_bytes": "reject"}))
        client = self.login(proxy)
        data = b"Subject: nul\r\n\r\nrefused\r\n\x00\r\n" + \
            b"x" * 70000 + b"\r\n.\r\n"
        self.assertReply(self.send_raw_data(client, data), 554, "5.6.0")
        self.assertReply(self.send_message(client), 250)
        sink.wait_messages(1)
        time.sleep(0.3)
        messages = sink.messages()
        self.assertEqual(len(messages), 1, messages)
        self.assertEqual(messages[0].message, lf(BODY))

    def test_nul_bytes_strip_delivers_the_message_without_nuls(self):
        backend = self.recorder()
        proxy = self.proxy(backend, relay=self.data_only(
            {"nul_bytes": "strip"}))
        client = self.login(proxy)
        sid = proxy.session_id(client)
        self.assertReply(self.send_raw_data(client, NUL_MESSAGE), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual(tx.data, NUL_MESSAGE_STRIPPED)
        # The size logged is what was sent.
        fields = self.transaction_line(proxy, sid)
        self.assertEqual(int(fields["size"]), len(NUL_MESSAGE_STRIPPED))

    def test_nul_bytes_strip_in_smtp_sinks_dump(self):
        sink = self.sink()
        proxy = self.proxy(sink, relay=self.data_only(
            {"nul_bytes": "strip"}))
        client = self.login(proxy)
        self.assertReply(self.send_raw_data(client, NUL_MESSAGE), 250)
        message = sink.wait_messages(1)[0]
        self.assertEqual(message.message,
                         b"Subject: nul\n\nab\n.\n.x\n\nend\n")

    def test_nul_bytes_pass_delivers_nuls_stuffed_where_the_dot_stands(
            self):
        backend = self.recorder()
        proxy = self.proxy(backend, relay=self.data_only(
            {"nul_bytes": "pass"}))
        client = self.login(proxy)
        self.assertReply(self.send_raw_data(client, NUL_MESSAGE), 250)
        tx = backend.wait_complete(1)[0]
        self.assertEqual(tx.data, NUL_MESSAGE_PASSED)
        # Un-stuffed, the client's content with its NULs, and a dot more
        # after the NULs that start a line before a dot.
        self.assertEqual(tx.message(), b"Subject: nul\r\n\r\n"
                         b"a\x00b\r\n\x00..\r\n\x00..x\r\n\x00\r\nend\r\n")

    def check_nul_dot_line_ends_nothing(self, policy):
        """NUL_DOT_SMUGGLING under policy: one reply; the backend's
        transactions; no smuggled command at the backend."""
        backend = self.recorder()
        proxy = self.proxy(backend, relay=self.data_only(
            {"nul_bytes": policy}))
        client = self.login(proxy)
        reply = self.send_raw_data(client, NUL_DOT_SMUGGLING)
        self.assertNoMoreReplies(client)
        self.assertReply(client.command("NOOP"), 250)
        self.assertNothingSmuggled(backend)
        return reply, client, backend

    def check_nul_dot_line_delivered_as_text(self, policy, line):
        """Under policy the message is delivered whole, "\\r\\n\\0.\\r\\n"
        in it sent as line."""
        reply, _, backend = self.check_nul_dot_line_ends_nothing(policy)
        self.assertReply(reply, 250)
        done = backend.wait_complete(1)
        self.assertEqual(len(done), 1, done)
        self.assertIn(b"before\r\n" + line + b"\r\nMAIL FROM:<evil@x>",
                      done[0].data)
        self.assertIn(b"\r\nsmuggled\r\n", done[0].data)

    def test_nul_dot_line_ends_nothing_with_nul_bytes_pass(self):
        self.check_nul_dot_line_delivered_as_text("pass", b"\x00..")

    def test_nul_dot_line_ends_nothing_with_nul_bytes_strip(self):
        self.check_nul_dot_line_delivered_as_text("strip", b"..")

    def test_nul_dot_line_ends_nothing_with_nul_bytes_reject(self):
        reply, client, backend = self.check_nul_dot_line_ends_nothing(
            "reject")
        self.assertReply(reply, 554, "5.6.0")
        self.assertReply(self.send_message(client), 250)
        done = backend.wait_complete(1)
        self.assertEqual(len(done), 1, done)
        self.assertNotIn(b"smuggled", done[0].data)
        self.assertNothingSmuggled(backend)

    def test_nul_dot_line_ends_nothing_at_a_backend_that_drops_nuls(self):
        backend = self.recorder()
        hop = NulDroppingHop(self, backend)
        proxy = self.proxy(hop.address, relay=self.data_only(
            {"nul_bytes": "pass"}))
        client = self.login(proxy)
        self.assertReply(self.send_raw_data(client, NUL_DOT_SMUGGLING), 250)
        self.assertNoMoreReplies(client)
        done = backend.wait_complete(1)
        self.assertEqual(len(done), 1, done)
        # What the backend read once the NULs were gone: "..", the line
        # ".", and the smuggled commands as text.
        self.assertIn(b"before\r\n..\r\nMAIL FROM:<evil@x>", done[0].data)
        self.assertIn(b"\r\nsmuggled\r\n", done[0].data)
        self.assertReply(client.command("NOOP"), 250)
        self.assertNothingSmuggled(backend)

    def test_nul_dot_lines_end_nothing_at_a_backend_that_cuts_lines_at_nul(
            self):
        # Sent as ".\0.", the line "\0." would be "." at such a backend:
        # the end of the message after "before", the smuggled commands a
        # second transaction.  Sent as "\0..", it is an empty line.
        for newline in (b"\r\n", b"\n"):
            with self.subTest(newline=newline):
                backend = self.recorder()
                hop = NulCuttingHop(self, backend)
                proxy = self.proxy(hop.address, relay=self.data_only(
                    {"nul_bytes": "pass"}))
                client = self.login(proxy)
                data = nul_dot_smuggling_twice(newline)
                self.assertReply(self.send_raw_data(client, data), 250)
                backend.wait_complete(1)
                time.sleep(0.3)
                self.assertNothingSmuggled(backend)
                done = backend.complete_transactions()
                self.assertEqual(len(done), 1, done)
                self.assertEqual(len(backend.transactions()), 1,
                                 backend.transactions())
                self.assertNoMoreReplies(client)
                self.assertReply(client.command("NOOP"), 250)
                # The client's message, every line cut at its first NUL
                # ("\0.." to ""): nothing else, nothing more.
                self.assertEqual(done[0].data, b"Subject: smuggling\r\n\r\n"
                                 b"before\r\n\r\n" + SMUGGLED +
                                 b"\r\nafter\r\n")


if __name__ == "__main__":
    unittest.main()
