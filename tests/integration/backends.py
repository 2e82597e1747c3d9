"""Backends for submitproxy's relay tests, and a proxy that logs in.

    sink = backends.SmtpSink(self, options=["-e"])      # Postfix's smtp-sink
    rec = backends.RecordingBackend(self, caps=[...])    # fake MTA, records all
    pf = backends.PostfixInstance(self, relayhost=sink)  # private Postfix (root)
    proxy = backends.RelayProxy(self, rec, relay={"bare_newline": "reject"})

SmtpSink runs /usr/sbin/smtp-sink with -d, so that every complete mail
transaction is dumped to a file; messages() parses the dumps (smtp-sink's
own X-Client-Addr/X-Helo-Args/X-Mail-Args/X-Rcpt-Args records and its
Received header, then the message as received, dot-unstuffed, one line
per LF).  smtp-sink removes the dump of a transaction that did not end
with CRLF.CRLF, so "nothing delivered" is "no dump file".

RecordingBackend is an ESMTP server in a thread that answers from a
script and records, per connection, every byte received, every command
line and every transaction (MAIL, RCPTs, the DATA bytes exactly as they
arrived, and whether they ended with CRLF.CRLF).  The proxy's probe
(EHLO, QUIT: at start, while the backend is down, and after
probe_interval without a session) connects to it too: BackendConnection.
is_probe() tells such a connection from a session's.

PostfixInstance is a throw-away Postfix (its own config, queue and data
directories, an smtpd on 127.0.0.1:PORT trusting 127.0.0.0/8 for XCLIENT,
relaying everything to relayhost): root only, SkipTest otherwise.

RelayProxy is a tlsutil.TlsProxy with a STARTTLS listener "sub", an
implicit-TLS listener "subs", [auth] on pam_wrapper + pam_matrix (users
from a dict; pamutil.MatrixPam when it is there, a minimal equivalent
otherwise) and [backend] pointing at one of the above.

Loopback only, every wait bounded by harness.WAIT; standard library only.
"""

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import tlsutil
from harness import WAIT

try:
    import pamutil
except ImportError:     # pragma: no cover - pamutil is someone else's file
    pamutil = None

SBIN = ["/usr/sbin", "/usr/local/sbin", "/sbin"]


def find_command(name):
    """The path of name on $PATH or in an sbin directory, or None."""
    path = shutil.which(name)
    if path:
        return path
    for directory in SBIN:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_sbin_command(name, package):
    path = find_command(name)
    if not path:
        raise unittest.SkipTest("%s is not installed (Debian package %s)"
                                % (name, package))
    return path


def is_root():
    return os.geteuid() == 0


def wait_for(predicate, what, timeout=WAIT, interval=0.02):
    """Polls predicate() until it returns something true; returns that, or
    raises AssertionError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0f s" % (what, timeout))
        time.sleep(interval)


def _mkdtemp(prefix, mode=0o755):
    directory = tempfile.mkdtemp(prefix=prefix)
    os.chmod(directory, mode)
    return directory


def _remove_tree(directory):
    if os.environ.get("SUBMITPROXY_KEEP_TMP"):
        return
    shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(port, process, what, log_path=None):
    def listening():
        if process is not None and process.poll() is not None:
            text = ""
            if log_path:
                with contextlib.suppress(OSError), open(log_path) as f:
                    text = f.read()
            raise AssertionError("%s exited with %s before listening: %s"
                                 % (what, process.returncode, text))
        state = harness._proc_listening("127.0.0.1", port)
        if state is None:
            try:
                with socket.create_connection(("127.0.0.1", port), 1.0):
                    return True
            except OSError:
                return False
        return state
    wait_for(listening, "%s listening on 127.0.0.1:%d" % (what, port))


# ---------------------------------------------------------------- smtp-sink

class SinkMessage:
    """One transaction dumped by smtp-sink.

    client_addr, proto, helo: smtp-sink's X-Client-Addr, X-Client-Proto,
    X-Helo-Args; mail: X-Mail-Args; rcpts: the X-Rcpt-Args, in order;
    message: the message as received, dot-unstuffed, lines ending in LF
    (smtp-sink writes lines, not bytes: CRLF became LF)."""

    def __init__(self, path, data):
        self.path = path
        self.raw = data
        self.records = []
        lines = data.split(b"\n")
        i = 0
        while i < len(lines) and not lines[i].startswith(b"Received:"):
            name, _, value = lines[i].partition(b":")
            self.records.append((name.decode("latin-1"),
                                 value.strip().decode("utf-8", "replace")))
            i += 1
        # smtp-sink's own Received: one line and its continuations.
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b"\t", b" "):
            j += 1
        self.sink_received = b"\n".join(lines[i:j])
        rest = b"\n".join(lines[j:])
        # The dump ends with an empty line after the message.
        if rest.endswith(b"\n\n"):
            rest = rest[:-1]
        self.message = rest

    def record(self, name):
        values = [v for n, v in self.records if n == name]
        return values[0] if values else None

    @property
    def client_addr(self):
        return self.record("X-Client-Addr")

    @property
    def proto(self):
        return self.record("X-Client-Proto")

    @property
    def helo(self):
        return self.record("X-Helo-Args")

    @property
    def mail(self):
        return self.record("X-Mail-Args")

    @property
    def rcpts(self):
        return [v for n, v in self.records if n == "X-Rcpt-Args"]

    def headers(self):
        """[(name, unfolded value)] of the message's header section."""
        return parse_headers(self.message)

    def without_first_header(self):
        """The message with its first header field (all of its lines)
        removed: what the client sent, if the proxy added one header."""
        return strip_first_header(self.message)

    def __repr__(self):
        return "<SinkMessage %s %r>" % (self.path, self.raw[:300])


def parse_headers(message):
    """[(name, unfolded value)] of the header section of message (bytes,
    lines ending in LF or CRLF), up to the first empty line."""
    fields = []
    for line in re.split(rb"\r?\n", message):
        if line == b"":
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip().decode(
                "utf-8", "replace"))
            continue
        name, _, value = line.partition(b":")
        fields.append((name.decode("latin-1"),
                       value.strip().decode("utf-8", "replace")))
    return fields


def strip_first_header(message):
    m = re.match(rb"[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*", message)
    return message[m.end():] if m else message


class SmtpSink:
    """smtp-sink on 127.0.0.1:PORT (or unix:PATH with unix=True), dumping
    each transaction to a file.  options: extra smtp-sink flags, e.g.
    ["-e"] (no ESMTP), ["-p"] (no PIPELINING), ["-C"] (no XCLIENT).
    dump=False throws messages away (benchmarks).  Stopped at the test's
    cleanup."""

    def __init__(self, test, options=(), unix=False, max_connections=None,
                 dump=True, start=True):
        self.exe = require_sbin_command("smtp-sink", "postfix")
        self.dir = _mkdtemp("submitproxy-sink-")
        test.addCleanup(_remove_tree, self.dir)
        self.dump_dir = os.path.join(self.dir, "dump")
        os.mkdir(self.dump_dir)
        # smtp-sink runs as nobody when started as root.
        os.chmod(self.dump_dir, 0o1777)
        self.unix = unix
        if unix:
            self.path = os.path.join(self.dir, "sink.sock")
            self.address = "unix:" + self.path
            self.endpoint = "unix:" + self.path
            self.port = None
        else:
            self.port = harness.free_ports(["127.0.0.1"])[0]
            self.address = "127.0.0.1:%d" % self.port
            self.endpoint = self.address
        self.options = list(options)
        self.dump = dump
        if max_connections:
            self.options += ["-m", str(max_connections)]
        self.log_path = os.path.join(self.dir, "smtp-sink.log")
        self.process = None
        test.addCleanup(self.stop)
        if start:
            self.start()

    def start(self):
        args = [self.exe]
        if is_root():
            args += ["-u", "nobody"]
        if self.dump:
            args += ["-d", os.path.join(self.dump_dir, "%M.")]
        args += self.options
        args += [self.endpoint, "256"]
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=self._log)
        if self.unix:
            wait_for(lambda: os.path.exists(self.path) or
                     self.process.poll() is not None,
                     "smtp-sink socket %s" % self.path)
            if self.process.poll() is not None:
                raise AssertionError("smtp-sink exited: %s" % self.log())
        else:
            _wait_listening(self.port, self.process, "smtp-sink",
                            self.log_path)

    def log(self):
        with contextlib.suppress(OSError), open(self.log_path) as f:
            return f.read()
        return ""

    def kill(self):
        """SIGKILL: every connection it had is closed by the kernel."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self.process = None
        self._log.close()

    @property
    def pid(self):
        return self.process.pid

    def dump_files(self):
        try:
            names = os.listdir(self.dump_dir)
        except OSError:
            return []
        paths = [os.path.join(self.dump_dir, n) for n in names]
        return sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, p))

    def messages(self):
        """Every dumped transaction, oldest first."""
        found = []
        for path in self.dump_files():
            with contextlib.suppress(FileNotFoundError), \
                    open(path, "rb") as f:
                found.append(SinkMessage(path, f.read()))
        return found

    def wait_messages(self, count, timeout=WAIT):
        """Waits until count transactions are dumped (files complete: each
        ends with the empty line smtp-sink writes last) and returns them."""
        def ready():
            msgs = self.messages()
            if len(msgs) >= count and all(m.raw.endswith(b"\n\n")
                                          for m in msgs):
                return msgs
            return None
        try:
            return wait_for(ready, "%d smtp-sink dump file(s)" % count,
                            timeout)
        except AssertionError as e:
            raise AssertionError("%s; have %r" % (e, self.messages())) \
                from None


# ------------------------------------------------------- recording backend

DEFAULT_CAPS = ["PIPELINING", "SIZE 1000000", "8BITMIME",
                "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"]

# Everything an MTA may announce, most of which the proxy must hide.
FULL_CAPS = ["STARTTLS", "AUTH PLAIN LOGIN",
             "XCLIENT NAME ADDR PORT PROTO HELO LOGIN",
             "XFORWARD NAME ADDR PROTO HELO", "CHUNKING", "BINARYMIME",
             "ETRN", "SIZE 1000000", "8BITMIME", "PIPELINING", "SMTPUTF8",
             "DSN", "ENHANCEDSTATUSCODES", "X-UNKNOWN"]

PROBE_VERBS = {"EHLO", "HELO", "QUIT"}


def command_verb(line):
    """The upper-cased verb of a command line (bytes or str)."""
    if isinstance(line, bytes):
        line = line.decode("latin-1")
    word = line.split(" ", 1)[0]
    return word.split(":", 1)[0].upper()


class Transaction:
    """One MAIL ... DATA ... end of data at the recording backend.

    data: the bytes after the 354, exactly as received, up to and
    excluding the terminating ".\\r\\n" (so still dot-stuffed, and ending
    with the CRLF before the dot when complete); complete: whether
    CRLF.CRLF arrived."""

    def __init__(self, mail):
        self.mail = mail
        self.rcpts = []
        self.data = b""
        self.data_started = False
        self.complete = False

    def message(self):
        """data dot-unstuffed (RFC 5321 4.5.2)."""
        lines = self.data.split(b"\r\n")
        return b"\r\n".join(l[1:] if l.startswith(b".") else l
                            for l in lines)

    def __repr__(self):
        return "<Transaction %r rcpts=%r complete=%s data=%r>" % (
            self.mail, self.rcpts, self.complete, self.data[:200])


class BackendConnection:
    """One connection the recording backend accepted."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.raw = b""          # every byte received
        self.lines = []         # command lines (bytes, without CRLF)
        self.transactions = []
        self.closed = False     # by either side

    def verbs(self):
        return [command_verb(line) for line in self.lines]

    def is_probe(self):
        """Only EHLO/HELO/QUIT: what the proxy's capability probe sends
        (and nothing a session after AUTH could do)."""
        return set(self.verbs()) <= PROBE_VERBS

    def __repr__(self):
        return "<BackendConnection %r lines=%r>" % (self.peer, self.lines)


class RecordingBackend:
    """A scripted ESMTP server in a thread that records everything.

    caps:     EHLO keywords after the first line (default DEFAULT_CAPS).
    esmtp:    False: EHLO is refused with 500 (HELO works).
    replies:  {verb: reply line} overriding the defaults (e.g. {"RCPT":
              "550 5.1.1 unknown"}); "." is the end-of-data reply.
    delays:   {verb: seconds} to wait before answering that verb.
    unix:     a Unix socket path to listen on instead of 127.0.0.1.
    port:     a fixed TCP port (default: a free one).
    lax_data: True: DATA without MAIL is answered with the DATA reply
              (354) and starts a transaction whose mail is None, as a
              careless MTA might.
    """

    DEFAULT_REPLIES = {
        "GREETING": "220 backend.example ESMTP recorder",
        "HELO": "250 backend.example",
        "XCLIENT": "220 backend.example ESMTP recorder",
        "MAIL": "250 2.1.0 Ok",
        "RCPT": "250 2.1.5 Ok",
        "DATA": "354 End data with <CR><LF>.<CR><LF>",
        ".": "250 2.0.0 Ok: queued as REC{n}",
        "RSET": "250 2.0.0 Ok",
        "NOOP": "250 2.0.0 Ok",
        "VRFY": "252 2.0.0 Cannot VRFY user",
        "EXPN": "502 5.5.1 EXPN not available",
        "HELP": "214 2.0.0 recorder help",
        "QUIT": "221 2.0.0 Bye",
    }

    def __init__(self, test, caps=None, esmtp=True, replies=None,
                 delays=None, unix=None, port=None, lax_data=False):
        self.caps = list(DEFAULT_CAPS if caps is None else caps)
        self.lax_data = lax_data
        self.esmtp = esmtp
        self.replies = dict(self.DEFAULT_REPLIES)
        self.replies.update(replies or {})
        self.delays = dict(delays or {})
        self.connections = []
        # Re-entrant: wait() holds it while predicates take snapshots.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._stopping = False
        self._count = 0
        if unix:
            self.path = unix
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unix)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix)
            os.chmod(unix, 0o777)
            self.address = "unix:" + unix
            self.port = None
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port or 0))
            self.port = self.sock.getsockname()[1]
            self.address = "127.0.0.1:%d" % self.port
        self.sock.listen(128)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        test.addCleanup(self.stop)

    # -- control

    def stop(self):
        """Stops listening and closes every connection."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.close_connections()
        self._thread.join(WAIT)

    def close_connections(self):
        """Closes every open connection from this side (a backend that
        dies mid-session); keeps listening."""
        with self.lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.sock.close()

    # -- what was seen

    def snapshot(self):
        with self.lock:
            return list(self.connections)

    def session_connections(self):
        """Connections that sent anything but EHLO/HELO/QUIT."""
        return [c for c in self.snapshot() if not c.is_probe()]

    def all_lines(self):
        return [line for c in self.snapshot() for line in c.lines]

    def all_verbs(self):
        return [command_verb(line) for line in self.all_lines()]

    def transactions(self):
        return [t for c in self.snapshot() for t in c.transactions]

    def complete_transactions(self):
        return [t for t in self.transactions() if t.complete]

    def wait(self, predicate, what, timeout=WAIT):
        """Waits until predicate(self) is true (re-checked on each
        event); returns its value."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                value = predicate(self)
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        "backend: %s: not within %.0f s; connections: %r"
                        % (what, timeout, self.connections))
                self.changed.wait(min(remaining, 0.1))

    def wait_complete(self, count, timeout=WAIT):
        return self.wait(lambda b: len(b.complete_transactions()) >= count
                         and b.complete_transactions(),
                         "%d complete transaction(s)" % count, timeout)

    def wait_line(self, pattern, timeout=WAIT):
        """Waits for a command line (bytes) matching pattern (str)."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str)
                           else pattern)
        return self.wait(lambda b: [l for l in b.all_lines()
                                    if regex.search(l)],
                         "a command line matching %r" % pattern, timeout)

    # -- server

    def _accept(self):
        while not self._stopping:
            try:
                sock, peer = self.sock.accept()
            except OSError:
                return
            conn = BackendConnection(sock, peer)
            with self.changed:
                self.connections.append(conn)
                self.changed.notify_all()
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _reply(self, conn, verb, text):
        delay = self.delays.get(verb)
        if delay:
            time.sleep(delay)
        conn.sock.sendall(text.encode("utf-8") + b"\r\n")

    def _ehlo_reply(self):
        lines = ["backend.example"] + self.caps
        return "\r\n".join("250%s%s" % ("-" if i + 1 < len(lines) else " ",
                                        line)
                           for i, line in enumerate(lines))

    def _serve(self, conn):
        conn.sock.settimeout(120)
        buf = b""
        tx = None
        in_data = False
        scan_from = 0
        try:
            self._reply(conn, "GREETING", self.replies["GREETING"])
            while True:
                data = conn.sock.recv(65536)
                if not data:
                    return
                with self.changed:
                    conn.raw += data
                    self.changed.notify_all()
                buf += data
                while True:
                    if in_data:
                        # End of data is CRLF.CRLF and nothing else; the
                        # CRLF before the dot is the last line's.
                        with self.changed:
                            tx.data += buf
                            self.changed.notify_all()
                        buf = b""
                        probe = b"\r\n" + tx.data
                        end = probe.find(b"\r\n.\r\n", scan_from)
                        if end < 0:
                            scan_from = max(0, len(probe) - 4)
                            break
                        buf = probe[end + 5:]
                        with self.changed:
                            tx.data = probe[2:end + 2]
                            tx.complete = True
                            self._count += 1
                            n = self._count
                            self.changed.notify_all()
                        in_data = False
                        tx = None
                        self._reply(conn, ".",
                                    self.replies["."].format(n=n))
                        continue
                    if b"\n" not in buf:
                        break
                    line, buf = buf.split(b"\n", 1)
                    line = line[:-1] if line.endswith(b"\r") else line
                    with self.changed:
                        conn.lines.append(line)
                        self.changed.notify_all()
                    verb = command_verb(line)
                    if verb == "EHLO":
                        if self.esmtp:
                            self._reply(conn, verb, self._ehlo_reply())
                        else:
                            self._reply(conn, verb,
                                        "500 5.5.1 Error: unknown command")
                    elif verb == "MAIL":
                        with self.changed:
                            tx = Transaction(line)
                            conn.transactions.append(tx)
                        self._reply(conn, verb, self.replies["MAIL"])
                    elif verb == "RCPT":
                        if tx is not None:
                            tx.rcpts.append(line)
                        self._reply(conn, verb, self.replies["RCPT"])
                    elif verb == "DATA":
                        reply = self.replies["DATA"]
                        if tx is None and self.lax_data:
                            with self.changed:
                                tx = Transaction(None)
                                conn.transactions.append(tx)
                        if tx is None:
                            reply = "503 5.5.1 Error: need MAIL command"
                        elif reply.startswith("354"):
                            tx.data_started = True
                            in_data = True
                            scan_from = 0
                        self._reply(conn, verb, reply)
                    elif verb == "QUIT":
                        self._reply(conn, verb, self.replies["QUIT"])
                        return
                    elif verb == "RSET":
                        tx = None
                        self._reply(conn, verb, self.replies["RSET"])
                    elif verb in self.replies:
                        self._reply(conn, verb, self.replies[verb])
                    else:
                        self._reply(conn, verb,
                                    "502 5.5.2 Error: command not "
                                    "recognized")
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
            with self.changed:
                conn.closed = True
                self.changed.notify_all()


def bare_newlines(data):
    """Offsets of every CR not followed by LF and every LF not preceded by
    CR in data."""
    found = []
    for m in re.finditer(rb"\r(?!\n)|(?<!\r)\n", data):
        found.append(m.start())
    return found


# ------------------------------------------------------------------ Postfix

class PostfixInstance:
    """A private Postfix: config, queue and data directories in a temp
    directory, an smtpd on 127.0.0.1:PORT, mynetworks and XCLIENT trust
    127.0.0.0/8, everything relayed to relayhost (an SmtpSink), logging
    to a file (maillog_file).  Root only.  Stopped at the test's cleanup,
    whether the test passed or not."""

    def __init__(self, test, relayhost):
        if not is_root():
            raise unittest.SkipTest("a private Postfix instance needs root "
                                    "(its queue is owned by the postfix "
                                    "user)")
        self.postfix = require_sbin_command("postfix", "postfix")
        self.postconf = require_sbin_command("postconf", "postfix")
        # Debian's postfix installed with "No configuration" (as
        # scripts/install-deps.sh does) may leave /etc/postfix bare; the
        # package's pristine copies serve as well.
        master = next((p for p in ("/etc/postfix/master.cf",
                                   "/usr/share/postfix/master.cf.dist")
                       if os.path.exists(p)), None)
        if master is None:
            raise unittest.SkipTest("no master.cf to copy")
        dynamicmaps = next((p for p in ("/etc/postfix/dynamicmaps.cf",
                                        "/usr/share/postfix/dynamicmaps.cf")
                            if os.path.exists(p)), None)
        try:
            import pwd
            pwd.getpwnam("postfix")
        except KeyError:
            raise unittest.SkipTest("no postfix user") from None
        self.test = test
        self.dir = _mkdtemp("submitproxy-postfix-")
        test.addCleanup(_remove_tree, self.dir)
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            os.mkdir(d)
        shutil.chown(self.data_dir, "postfix")
        shutil.copy(master, os.path.join(self.config_dir, "master.cf"))
        if dynamicmaps is not None:
            shutil.copy(dynamicmaps,
                        os.path.join(self.config_dir, "dynamicmaps.cf"))
        open(os.path.join(self.config_dir, "main.cf"), "w").close()
        self.port = harness.free_ports(["127.0.0.1"])[0]
        self.address = "127.0.0.1:%d" % self.port
        host, port = harness.parse_address(relayhost.address)
        self._postconf(
            "-e",
            "compatibility_level=3.6",
            "queue_directory=" + self.queue_dir,
            "data_directory=" + self.data_dir,
            "maillog_file=" + self.maillog,
            "maillog_file_prefixes=" + self.dir,
            "syslog_name=postfix-submitproxy-test",
            "inet_interfaces=127.0.0.1",
            "inet_protocols=ipv4",
            "myhostname=postfix.test",
            "mydomain=test",
            "myorigin=postfix.test",
            "mydestination=",
            "relay_domains=",
            "local_recipient_maps=",
            "alias_maps=",
            "alias_database=",
            "mynetworks=127.0.0.0/8",
            "smtpd_authorized_xclient_hosts=127.0.0.0/8",
            "smtpd_sasl_authenticated_header=yes",
            "smtpd_relay_restrictions=permit_mynetworks, reject",
            "relayhost=[%s]:%d" % (host, port),
            "smtp_tls_security_level=none",
            "smtpd_tls_security_level=none",
            "mail_owner=postfix",
            "setgid_group=postdrop",
            "biff=no")
        # No chroot (the queue is not set up as one); our own smtpd only.
        self._postconf("-F", "*/*/chroot = n")
        self._postconf("-M#", "smtp/inet")
        self._postconf("-M", "%s/inet = %s inet n - n - - smtpd"
                       % (self.address, self.address))
        test.addCleanup(self.stop)
        self.started = False
        self._run_postfix("start")
        self.started = True
        _wait_listening(self.port, None, "postfix smtpd")

    def _postconf(self, *args):
        tlsutil.run([self.postconf, "-c", self.config_dir] + list(args))

    def _run_postfix(self, action, check=True):
        result = tlsutil.run([self.postfix, "-c", self.config_dir, action],
                             timeout=3 * WAIT, check=False)
        if check and result.returncode != 0:
            raise AssertionError("postfix %s failed (%d): %s%s\nmaillog:\n%s"
                                 % (action, result.returncode, result.stdout,
                                    result.stderr, self.log()))
        return result

    def log(self):
        with contextlib.suppress(OSError), open(self.maillog) as f:
            return f.read()
        return ""

    def master_pid(self):
        path = os.path.join(self.queue_dir, "pid", "master.pid")
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            return int(f.read().strip())
        return None

    def stop(self):
        if not self.started:
            # A failed start may still have left a master running.
            pid = self.master_pid()
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
            return
        self.started = False
        pid = self.master_pid()
        self._run_postfix("stop", check=False)
        if pid:
            def gone():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return False
            try:
                wait_for(gone, "postfix master %d to exit" % pid)
            except AssertionError:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


# -------------------------------------------------------------------- PAM

class _MinimalPam:
    """pam_wrapper + pam_matrix, for when pamutil is not there."""

    def __init__(self, test, users, service="submitproxy"):
        library = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
        matrix = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
        if not (os.path.exists(library) and os.path.exists(matrix)):
            raise unittest.SkipTest("pam_wrapper is not installed (Debian "
                                    "package libpam-wrapper)")
        self.library = library
        self.service = service
        self.users = dict(users)
        self.dir = _mkdtemp("submitproxy-pam-")
        test.addCleanup(_remove_tree, self.dir)
        passdb = os.path.join(self.dir, "passdb")
        with open(passdb, "w") as f:
            for name, password in self.users.items():
                f.write("%s:%s:%s\n" % (name, password, service))
        self.services_dir = os.path.join(self.dir, "services")
        os.mkdir(self.services_dir)
        with open(os.path.join(self.services_dir, service), "w") as f:
            f.write("auth required %s passdb=%s\n" % (matrix, passdb))
            f.write("account required %s passdb=%s\n" % (matrix, passdb))
        # The fallback service "other", deny-all: without it pam_wrapper
        # logs "PWRAP_ERROR ... no default config other" at each login.
        deny = "/usr/lib/x86_64-linux-gnu/security/pam_deny.so"
        if os.path.exists(deny):
            with open(os.path.join(self.services_dir, "other"), "w") as f:
                for kind in ("auth", "account", "password", "session"):
                    f.write("%s required %s\n" % (kind, deny))

    def environment(self):
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        return {"LD_PRELOAD": self.library, "PAM_WRAPPER": "1",
                "PAM_WRAPPER_SERVICE_DIR": self.services_dir,
                "ASAN_OPTIONS": asan}


def matrix_pam(test, users):
    """A pam_wrapper service "submitproxy" accepting users ({name: pw})."""
    if pamutil is not None and hasattr(pamutil, "MatrixPam"):
        return pamutil.MatrixPam(test, users)
    return _MinimalPam(test, users)


@contextlib.contextmanager
def environment(variables):
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def plain_blob(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password))
                            .encode()).decode()


# ------------------------------------------------------------------ Proxy

def _children(pid):
    found = set()
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError), \
                open("/proc/%d/task/%s/children" % (pid, task)) as f:
            found |= {int(p) for p in f.read().split()}
    return found


def proc_cpu_ms(pid):
    """utime + stime of a process, in milliseconds (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid):
    """VmRSS of a process in kB (None if gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RelayProxy(tlsutil.TlsProxy):
    """A submitproxy with a STARTTLS listener "sub", an implicit-TLS
    listener "subs", PAM users (default {"alice": password}, the password
    in .password) and its backend at backend (an SmtpSink, a
    RecordingBackend, a PostfixInstance or an address string).

    backend_keys, limits, relay, auth, server: keys for those sections
    (server and auth over the defaults)."""

    USER = "alice"

    def __init__(self, test, backend, users=None, backend_keys=None,
                 limits=None, relay=None, auth=None, server=None,
                 listeners=None, start=True):
        if users is None:
            users = {self.USER: "pw-" + os.urandom(8).hex()}
        self.users = dict(users)
        self.password = self.users.get(self.USER)
        self.pam = matrix_pam(test, self.users)
        address = backend if isinstance(backend, str) else backend.address
        backend_section = {"address": address, "xclient": "auto",
                           "connect_timeout": "3s", "timeout": "15s"}
        backend_section.update(backend_keys or {})
        auth_section = {"pam_service": self.pam.service,
                        "mechanisms": "PLAIN LOGIN",
                        "failure_delay": "100ms"}
        auth_section.update(auth or {})
        extra = {"auth": auth_section, "backend": backend_section}
        if relay:
            extra["relay"] = dict(relay)
        if server:
            merged = dict(harness.DEFAULT_CONFIG["server"])
            merged.update(server)
            extra["server"] = merged
        if listeners is None:
            listeners = {"plain": None,
                         "sub": {"mode": "starttls", "require_tls": "yes"},
                         "subs": {"mode": "implicit-tls"}}
        super().__init__(test, tlsutil.shared_pki(), start=start,
                         listeners=listeners, limits=limits, extra=extra)

    def start(self):
        with environment(self.pam.environment()):
            super().start()

    def stop(self):
        try:
            super().stop()
        finally:
            log = self.log()
            for user, password in self.users.items():
                for secret in (password, plain_blob(user, password)):
                    if secret in log:
                        raise AssertionError("a password is in the log")

    # -- processes

    def network_pid(self):
        """The network process, from "event=start ... pid=N"."""
        line = self.wait_log(r"\bevent=start\b", r"\bpid=\d+")
        return int(harness.parse_log_fields(line)["pid"])

    def helper_pids(self, binary=None):
        """The process started (auth helper) and its children that run
        the proxy's binary (default: $SUBMITPROXY's), other than the
        network process."""
        binary = os.path.realpath(binary or harness.binary())
        network = self.network_pid()
        pids = [self.process.pid]
        for pid in sorted(_children(self.process.pid) - {network}):
            with contextlib.suppress(OSError):
                if os.path.realpath("/proc/%d/exe" % pid) == binary:
                    pids.append(pid)
        return pids

    def wait_probe(self):
        """Waits for the first successful backend capability probe."""
        return self.wait_log(r"\bevent=backend_probe\b", r"\bstatus=ok\b")


# ------------------------------------------------------------- assertions

def assert_backend_lost_reply(test, client, sender):
    """A logged-in client whose backend died: its next command (a MAIL)
    gets 421 or 451 4.4.2, then the connection closes with no 250."""
    try:
        client.send(b"MAIL FROM:<%s>\r\n" % sender.encode())
    except OSError:
        pass    # already closed: the 421 is buffered
    reply = client.read_reply()
    test.assertIn(reply[0], (421, 451), reply)
    test.assertEnhancedClass(reply, 4)
    test.assertTrue(reply[1][0].startswith("4.4.2"), reply)
    rest = client.read_until_closed()
    test.assertNotIn(b"250", rest)
