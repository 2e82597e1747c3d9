"""Black-box harness for submitproxy integration tests.

The binary under test is named by the environment variable SUBMITPROXY (the
built executable).  Every test module calls ``require_binary()`` from its
``setUpModule()`` so that the whole module is skipped, with a message saying
why, when the variable is unset.

    proxy = Proxy(self, {"limits": {"idle_timeout": "1s"}})
    client = proxy.connect()            # a Raw client, closed at cleanup
    code, lines = client.read_reply()   # (220, ["test.example ESMTP"])

Everything here talks to loopback addresses only, every wait is bounded by a
deadline, and no test passes or fails on how long something took: timeouts
in the proxy are configured short and the tests wait generously (10 s by
default) for the event they expect.

Python standard library only.
"""

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HOSTNAME = "test.example"
WAIT = 10.0  # seconds: the generous bound for every expected event

# What a sanitizer prints when it finds a bug.  ASan and LSan reports start
# with "ERROR: AddressSanitizer"/"ERROR: LeakSanitizer"; UBSan prints
# "FILE:LINE:COL: runtime error: ...".
SANITIZER_REPORT = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")


def binary():
    """The binary under test, as an absolute path (the proxy runs in its
    temporary directory), or None."""
    path = os.environ.get("SUBMITPROXY")
    return os.path.abspath(path) if path else None


def require_binary():
    """Raises unittest.SkipTest (call it from setUpModule) unless the
    binary under test is named by $SUBMITPROXY and is executable."""
    path = binary()
    if not path:
        raise unittest.SkipTest(
            "SUBMITPROXY is not set: point it at the built submitproxy "
            "binary (e.g. SUBMITPROXY=build/proxy/submitproxy)")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(
            "SUBMITPROXY=%s is not an executable file" % path)


def source_root():
    """The source tree: $SUBMITPROXY_SOURCE_ROOT, else two levels up from
    this file (tests/integration/ -> the repository root)."""
    root = os.environ.get("SUBMITPROXY_SOURCE_ROOT")
    if root:
        return root
    return os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))


# ---------------------------------------------------------------- addresses

def can_bind(host):
    """True if a TCP socket can be bound to host (e.g. "::1", "127.0.0.2")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


def free_ports(hosts):
    """One free TCP port per entry of hosts, all distinct: binds port 0 on
    each host, reads the port, and closes only once all are picked, so the
    kernel cannot hand out the same port twice."""
    held = []
    try:
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            held.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def format_address(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def parse_address(text):
    """"127.0.0.1:25" or "[::1]:25" -> (host, port)."""
    text = text.strip()
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text) or \
        re.fullmatch(r"([^:\[\]]+):(\d+)", text)
    if not m:
        raise ValueError("not an address: %r" % text)
    return m.group(1), int(m.group(2))


def _proc_listening(host, port):
    """Whether a socket is in LISTEN state on host:port, read from
    /proc/net/tcp{,6}.  Returns None when /proc cannot tell (not Linux)."""
    try:
        packed = socket.inet_pton(
            socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return None
    # /proc prints each 32-bit word of the address in host byte order.
    words = [packed[i:i + 4] for i in range(0, len(packed), 4)]
    want = "".join("%08X" % int.from_bytes(w, sys.byteorder) for w in words)
    want = "%s:%04X" % (want, port)
    table = "/proc/net/tcp6" if len(packed) == 16 else "/proc/net/tcp"
    try:
        with open(table) as f:
            next(f)
            for row in f:
                fields = row.split()
                if fields[1].upper() == want and fields[3] == "0A":
                    return True
    except OSError:
        return None
    return False


# ------------------------------------------------------------ certificates

def make_certificate(directory, hostname=HOSTNAME, name="cert"):
    """A fresh self-signed certificate and key for hostname, made with the
    openssl command in directory: returns (certificate path, key path).
    Raises unittest.SkipTest when openssl is not installed."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise unittest.SkipTest("the openssl command is not installed")
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=" + hostname,
         "-addext", "subjectAltName=DNS:" + hostname,
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=True, timeout=WAIT)
    return cert, key


# ------------------------------------------------------------------ config

# Started as root (CI), the network process drops to [server] user; the
# default "submitproxy" account does not exist on a test machine, so the
# tests run it as "nobody" (the drop itself is exercised every time).
TEST_USER = "nobody" if os.geteuid() == 0 else "submitproxy"

DEFAULT_CONFIG = {
    "server": {
        "hostname": HOSTNAME,
        "log_level": "debug",
        "user": TEST_USER,
    },
    "listener plain": {
        "address": "127.0.0.1:{port}",
        "mode": "plain",
        "require_tls": "no",
        "allow_plaintext_auth": "no",
    },
    "limits": {},
    "backend": {
        # A port nobody listens on: nothing may reach a backend before AUTH.
        "address": "127.0.0.1:{port}",
    },
}


def merge_config(base, overrides):
    """Returns base with overrides applied: a section mapped to None is
    removed, a key mapped to None is removed, anything else is set."""
    merged = {name: dict(keys) for name, keys in base.items()}
    for name, keys in (overrides or {}).items():
        if keys is None:
            merged.pop(name, None)
            continue
        section = merged.setdefault(name, {})
        for key, value in keys.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return merged


def _value_text(value):
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def render_config(sections):
    """INI text for a dict {section: {key: value}}, in the dict's order."""
    out = []
    for name, keys in sections.items():
        out.append("[%s]" % name)
        for key, value in keys.items():
            out.append("%s = %s" % (key, _value_text(value)))
        out.append("")
    return "\n".join(out)


def _assign_ports(sections):
    """Replaces each "{port}" in an address value by a free port on that
    address's host.  Returns the new sections."""
    sections = {name: dict(keys) for name, keys in sections.items()}
    slots = []
    for name, keys in sections.items():
        address = keys.get("address")
        if not isinstance(address, str) or "{port}" not in address:
            continue
        for item in address.split(","):
            item = item.strip()
            if item.endswith(":{port}"):
                host = item[:-len(":{port}")].strip("[]")
                slots.append((name, item, host))
    ports = free_ports([host for _, _, host in slots])
    for (name, item, host), port in zip(slots, ports):
        keys = sections[name]
        keys["address"] = keys["address"].replace(
            item, format_address(host, port), 1)
    return sections


# ------------------------------------------------------------------ Proxy

class Proxy:
    """One running submitproxy, stopped and checked at the test's cleanup.

    config: overrides merged into DEFAULT_CONFIG (see merge_config); in an
    "address" value, each "HOST:{port}" gets a free port on HOST.  Pass
    {"listener plain": None} to drop the default listener.
    """

    # A command (and its arguments) the binary is run under, e.g. setpriv.
    wrapper = ()

    def __init__(self, test, config=None, start=True):
        self.test = test
        self.sections = _assign_ports(merge_config(DEFAULT_CONFIG, config))
        self.dir = tempfile.mkdtemp(prefix="submitproxy-test-")
        # SIGHUP re-reads the configuration in the network process, which
        # runs as TEST_USER after the privilege drop: it must be able to.
        os.chmod(self.dir, 0o755)
        test.addCleanup(self._remove_dir)
        self.config_path = os.path.join(self.dir, "submitproxy.conf")
        with open(self.config_path, "w") as f:
            f.write(render_config(self.sections))
        os.chmod(self.config_path, 0o644)
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.process = None
        if start:
            self.start()

    # -- addresses

    def listener_names(self):
        return [name[len("listener "):] for name in self.sections
                if name.startswith("listener ")]

    def addresses(self, listener="plain"):
        """[(host, port), ...] of a listener, in config order."""
        section = self.sections["listener " + listener]
        return [parse_address(a) for a in section["address"].split(",")]

    def port(self, listener="plain"):
        """The port of the listener's first address."""
        return self.addresses(listener)[0][1]

    def host(self, listener="plain"):
        return self.addresses(listener)[0][0]

    # -- life cycle

    def start(self):
        assert self.process is None
        self._stderr = open(self.log_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        try:
            self.process = subprocess.Popen(
                list(self.wrapper) + [binary(), "-c", self.config_path],
                stdin=subprocess.DEVNULL, stdout=self._stdout,
                stderr=self._stderr, cwd=self.dir)
        except BaseException:
            self._stderr.close()
            self._stdout.close()
            raise
        # Registered after the test's earlier cleanups, so it runs before
        # them; clients made by connect() register later and close first.
        self.test.addCleanup(self.stop)
        self._wait_listening()

    def _wait_listening(self):
        """Waits until every listener address is listening.

        Checks /proc/net/tcp{,6} rather than connecting, because a probe
        connection would be a session that counts against max_connections
        and max_connections_per_address until the proxy notices it closed.
        Falls back to connecting where /proc cannot tell."""
        pending = [a for name in self.listener_names()
                   for a in self.addresses(name)]
        deadline = time.monotonic() + WAIT
        while pending:
            if self.process.poll() is not None:
                self._fail_to_start(
                    "submitproxy exited with status %s before listening on %s"
                    % (self.process.returncode,
                       ", ".join(format_address(*a) for a in pending)))
            host, port = pending[0]
            listening = _proc_listening(host, port)
            if listening is None:
                try:
                    with socket.create_connection((host, port), 1.0):
                        listening = True
                except OSError:
                    listening = False
            if listening:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                self._fail_to_start(
                    "submitproxy is not listening on %s after %.0f s"
                    % (format_address(host, port), WAIT))
            time.sleep(0.02)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """SIGTERM, wait (bounded), SIGKILL if needed; then fail the test if
        the proxy died by a signal, exited non-zero, or a sanitizer spoke."""
        if self.process is None:
            return
        process, self.process = self.process, None
        problems = []
        if process.poll() is not None:
            problems.append("submitproxy exited during the test (status %s)"
                            % process.returncode)
        else:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=2 * WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WAIT)
                problems.append("submitproxy did not exit within %.0f s of "
                                "SIGTERM; killed" % (2 * WAIT))
        status = process.returncode
        if status < 0 and not problems:
            problems.append("submitproxy died by signal %s"
                            % signal.Signals(-status).name)
        elif status > 0 and not problems:
            problems.append("submitproxy exited with status %d after "
                            "SIGTERM" % status)
        self._stderr.close()
        self._stdout.close()
        log = self.log()
        report = SANITIZER_REPORT.search(log)
        if report:
            problems.append("sanitizer report in stderr: %r"
                            % log[report.start():report.start() + 200])
        if problems or self._test_failed():
            sys.stderr.write("\n---- submitproxy stderr (%s) ----\n%s"
                             "---- end ----\n" % (self.log_path, log))
        if problems:
            raise AssertionError("; ".join(problems))

    def _test_failed(self):
        """Whether the test has failed so far.  Asked from a cleanup, where
        unittest's outcome.success is True again (each cleanup runs as a
        test part of its own): the result's failures and errors say."""
        outcome = getattr(self.test, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        for test, _ in (list(getattr(result, "failures", [])) +
                        list(getattr(result, "errors", []))):
            if getattr(test, "test_case", test) is self.test:
                return True
        return not getattr(outcome, "success", True)

    def _remove_dir(self):
        if os.environ.get("SUBMITPROXY_KEEP_TMP"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- log

    def log(self):
        """Everything the proxy wrote to stderr so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, *patterns):
        """The log lines matching every regex in patterns."""
        regexes = [re.compile(p) for p in patterns]
        return [line for line in self.log().splitlines()
                if all(r.search(line) for r in regexes)]

    def wait_log(self, *patterns, timeout=WAIT):
        """Waits until one log line matches every regex in patterns and
        returns that line (the first such line)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(*patterns)
            if lines:
                return lines[0]
            if time.monotonic() > deadline:
                self._fail_with_log("no log line matching %s within %.0f s"
                                    % (" and ".join(map(repr, patterns)),
                                       timeout))
            time.sleep(0.05)

    def _fail_to_start(self, message):
        """Stops a proxy that did not come up (stop() then has nothing
        more to report) and fails with its log."""
        process, self.process = self.process, None
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
        self._stderr.close()
        self._stdout.close()
        self._fail_with_log(message)

    def _fail_with_log(self, message):
        raise AssertionError("%s\n---- submitproxy stderr ----\n%s"
                             "---- end ----" % (message, self.log()))

    # -- clients

    def connect(self, listener="plain", index=0, source=None, timeout=WAIT):
        """A Raw client connected to the listener's index-th address, from
        source (an address to bind first) if given; closed at cleanup."""
        host, port = self.addresses(listener)[index]
        client = Raw(port, host=host, source=source, timeout=timeout)
        self.test.addCleanup(client.close)
        return client


def parse_log_fields(line):
    """{"key": "value"} from one key=value log line (quotes removed)."""
    fields = {}
    for m in re.finditer(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)', line):
        value = m.group(2)
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        fields[m.group(1)] = value
    return fields


# -------------------------------------------------------------------- Raw

class Raw:
    """A bare SMTP client over a socket, for saying exactly the bytes a test
    needs (pipelined groups, NUL bytes, over-long lines, early talk).

    Every read is bounded by a deadline and raises AssertionError (a test
    failure) with what arrived so far when the expected data does not come.
    wrap_tls() swaps the socket for an SSL one; reads work the same after.
    """

    def __init__(self, port, host="127.0.0.1", source=None, timeout=WAIT):
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""          # received, not yet consumed
        self.received = b""     # everything ever received (plaintext)
        self.sent = b""         # everything ever sent (plaintext)
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def local_address(self):
        return self.sock.getsockname()[:2]

    # -- sending

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)
        self.sent += data

    def command(self, line, timeout=None):
        """Sends one command line (CRLF added) and returns its reply."""
        self.send(line.encode("utf-8") + b"\r\n"
                  if isinstance(line, str) else line + b"\r\n")
        return self.read_reply(timeout)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self):
        """Closes with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()

    # -- TLS

    def wrap_tls(self, context=None, server_hostname=HOSTNAME):
        """Starts a TLS handshake on the connection (after STARTTLS's 220,
        or at once for implicit TLS).  Plaintext already buffered is an
        error: RFC 3207 section 4.2 says it must not be there."""
        if self.buf:
            raise AssertionError("plaintext received before TLS: %r"
                                 % self.buf)
        if context is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(self.sock,
                                        server_hostname=server_hostname)
        return self.sock

    # -- receiving

    def _recv(self, deadline):
        """Reads more bytes into buf; returns False on EOF or reset."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLZeroReturnError,
                ssl.SSLEOFError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.received += data
        return True

    def read_line(self, timeout=None):
        """One line ending in LF, without its CRLF/LF; None at EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            try:
                if not self._recv(deadline):
                    return None
            except socket.timeout:
                raise AssertionError("no complete line within %.0f s; "
                                     "partial: %r" % (timeout or self.timeout,
                                                      self.buf)) from None
        line, self.buf = self.buf.split(b"\n", 1)
        return line[:-1] if line.endswith(b"\r") else line

    def read_reply(self, timeout=None):
        """One complete reply, single or multi-line ("250-a" ... "250 z"):
        (code, [text of each line after "NNN-" or "NNN "])."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        raw = []
        while True:
            try:
                line = self.read_line(max(deadline - time.monotonic(), 0.001))
            except AssertionError as e:
                raise AssertionError("no complete reply within %.0f s; got "
                                     "%r then: %s" % (timeout, raw, e)) \
                    from None
            if line is None:
                raise AssertionError("connection closed before a complete "
                                     "reply; got %r, partial %r"
                                     % (raw, self.buf))
            raw.append(line)
            m = re.fullmatch(rb"(\d{3})([ -])(.*)", line, re.S) or \
                re.fullmatch(rb"(\d{3})()", line)
            if not m:
                raise AssertionError("malformed reply line %r (after %r)"
                                     % (line, raw[:-1]))
            if m.group(1) != raw[0][:3]:
                raise AssertionError("reply code changed within a multi-line "
                                     "reply: %r" % raw)
            if m.group(2) != b"-":
                code = int(m.group(1))
                texts = [r[4:].decode("utf-8", "replace") for r in raw]
                self.last_reply_lines = raw
                return code, texts

    def read_until_closed(self, timeout=None):
        """Everything until the server closes the connection (EOF or RST),
        including what was already buffered."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        try:
            while self._recv(deadline):
                pass
        except socket.timeout:
            raise AssertionError("connection still open after %.0f s; "
                                 "received %r" % (timeout, self.buf)) \
                from None
        data, self.buf = self.buf, b""
        return data

    def expect_closed(self, timeout=None):
        """Asserts that the server closes the connection without sending
        anything more."""
        data = self.read_until_closed(timeout)
        if data:
            raise AssertionError("expected the connection to close, "
                                 "got %r first" % data)

    def pending(self, wait=0.0):
        """Whether bytes (or EOF) are ready to read within wait seconds."""
        if self.buf or self.eof:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        ready, _, _ = select.select([self.sock], [], [], wait)
        return bool(ready)


# ------------------------------------------------------------ assertions

def reply_text(reply):
    code, lines = reply
    return "\n".join("%d %s" % (code, t) for t in lines)


class ProxyTestCase(unittest.TestCase):
    """Assertions about replies, phrased as what the client sees."""

    maxDiff = None

    def assertReply(self, reply, code, enhanced=None, text=None):
        """reply has this code, its first line starts with the enhanced
        status code (RFC 3463) if given, and contains text if given."""
        got_code, lines = reply
        self.assertEqual(got_code, code,
                         "expected %d, got:\n%s" % (code, reply_text(reply)))
        if enhanced is not None:
            self.assertTrue(
                lines[0] == enhanced or lines[0].startswith(enhanced + " "),
                "expected enhanced status %s, got:\n%s"
                % (enhanced, reply_text(reply)))
        if text is not None:
            self.assertIn(text, "\n".join(lines),
                          "expected %r in:\n%s" % (text, reply_text(reply)))

    def assertEnhancedClass(self, reply, klass):
        """The first line carries an enhanced status code of class klass
        (2, 4 or 5)."""
        self.assertRegex(reply[1][0], r"^%d\.\d{1,3}\.\d{1,3}( |$)" % klass,
                         "expected a %d.x.x enhanced status code in:\n%s"
                         % (klass, reply_text(reply)))

    def greeted(self, proxy, **kw):
        """A client connected to proxy that has read a 220 greeting."""
        client = proxy.connect(**kw)
        self.assertReply(client.read_reply(), 220)
        return client

    def ehloed(self, proxy, **kw):
        """A client past the greeting and a successful EHLO."""
        client = self.greeted(proxy, **kw)
        self.assertReply(client.command("EHLO client.example"), 250)
        return client
