"""TLS helpers for submitproxy's integration tests and benchmarks.

Builds on harness.py without changing it:

    pki = tlsutil.shared_pki()          # a CA and certificates, made once
    proxy = tlsutil.TlsProxy(self, pki) # [tls], starttls/implicit listeners
    client = tlsutil.starttls(self.ehloed(proxy, listener="starttls"),
                              pki.client_context())
    client = tlsutil.implicit(proxy, pki.client_context())  # greeted
    proxy.reload("ok")                  # SIGHUP, wait for event=reload
    fields = proxy.session_log(client, r"\bevent=tls\b")

Certificates are made with the openssl command (no Python package needed):
a throw-away CA, server certificates for test.example (default) and
other.example (SNI), and client certificates signed by that CA or by a
second CA the proxy does not trust.  All keys are EC P-256, so they are
quick to make.

Loopback only; every external command runs with a timeout; Python standard
library only.
"""

import atexit
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import unittest
import warnings

import harness
from harness import HOSTNAME, WAIT, Proxy

OTHER_HOSTNAME = "other.example"


# ---------------------------------------------------------------- commands

def require_command(name):
    """The path of an external command, or unittest.SkipTest saying it is
    not installed."""
    path = shutil.which(name)
    if not path:
        raise unittest.SkipTest("the %s command is not installed" % name)
    return path


def run(args, input=None, timeout=WAIT, check=True):
    """Runs a command (stdin from input, or /dev/null), returns the
    CompletedProcess with text stdout and stderr.  A command still running
    after timeout is killed and the test fails with what it printed."""
    try:
        result = subprocess.run(
            args, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s did not finish within %.0f s; stdout %r, "
                             "stderr %r" % (" ".join(args), timeout,
                                            e.stdout, e.stderr)) from None
    if check and result.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s%s"
                             % (" ".join(args), result.returncode,
                                result.stdout, result.stderr))
    return result


class Interactive:
    """A command driven through pipes, line by line (openssl s_client with
    its "R" and "k" command letters).  stderr goes to stdout.  Every read
    is bounded; the process is killed at the test's cleanup if still
    running."""

    def __init__(self, test, args):
        self.args = args
        self.output = ""
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        test.addCleanup(self.close)

    def send(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def expect(self, pattern, timeout=WAIT):
        """Reads until the output (from the start) matches pattern; returns
        the match.  Fails with the output so far at EOF or timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while True:
            m = regex.search(self.output)
            if m:
                return m
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("%s: no %r within %.0f s; output:\n%s"
                                     % (self.args[0], pattern, timeout,
                                        self.output))
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError("%s exited (%s) before %r; output:\n%s"
                                     % (self.args[0], self.process.wait(WAIT),
                                        pattern, self.output))
            self.output += data.decode("utf-8", "replace")

    def wait(self, timeout=WAIT):
        """Waits for the process to exit (closing nothing); returns its
        status and reads the rest of its output, or None if still running
        after timeout."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.output += self.process.stdout.read().decode("utf-8", "replace")
        return status

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        for f in (self.process.stdin, self.process.stdout):
            try:
                f.close()
            except OSError:
                pass


# ------------------------------------------------------------ certificates

class Pki:
    """A directory of certificates made with the openssl command.

    ca(name) makes a self-signed CA; issue() makes a leaf signed by one.
    Every method returns paths; subject() reads a certificate back."""

    def __init__(self, directory):
        self.openssl = require_command("openssl")
        self.dir = directory
        self._serial = int(time.time() * 1000) & 0xffffffff

    def _path(self, name, suffix):
        return os.path.join(self.dir, name + suffix)

    def _openssl(self, *args):
        run([self.openssl] + list(args))

    def ca(self, name, common_name=None):
        """A self-signed CA certificate and key: (cert path, key path)."""
        cert, key = self._path(name, ".pem"), self._path(name, ".key")
        self._openssl(
            "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % (common_name or name),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", key, "-out", cert)
        return cert, key

    def issue(self, name, ca, common_name, organization=None, dns=(),
              ips=(), client=False, key=None):
        """A leaf certificate for common_name signed by ca (a (cert, key)
        pair from ca()): (cert path, key path).  key reuses an existing
        private key file instead of making a new one."""
        cert = self._path(name, ".pem")
        csr = self._path(name, ".csr")
        ext = self._path(name, ".ext")
        subject = "/CN=%s" % common_name
        if organization:
            subject += "/O=%s" % organization
        if key is None:
            key = self._path(name, ".key")
            self._openssl("req", "-new", "-newkey", "ec",
                          "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-subj", subject, "-keyout", key, "-out", csr)
        else:
            self._openssl("req", "-new", "-key", key, "-subj", subject,
                          "-out", csr)
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature",
                 "extendedKeyUsage=%s" % ("clientAuth" if client
                                          else "serverAuth"),
                 "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid,issuer"]
        alt = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        if alt:
            lines.append("subjectAltName=" + ",".join(alt))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._serial += 1
        self._openssl("x509", "-req", "-in", csr, "-CA", ca[0],
                      "-CAkey", ca[1], "-set_serial", str(self._serial),
                      "-days", "2", "-extfile", ext, "-out", cert)
        os.unlink(csr)
        os.unlink(ext)
        return cert, key

    def subject(self, cert_path):
        """The subject of a PEM certificate file, RFC 2253 style
        ("O=Renewed,CN=test.example")."""
        return run([self.openssl, "x509", "-in", cert_path, "-noout",
                    "-subject", "-nameopt", "RFC2253"]).stdout \
            .strip().split("=", 1)[1]


def der_subject(der):
    """The subject of a DER certificate (getpeercert(binary_form=True)),
    RFC 2253 style, read with the openssl command."""
    openssl = require_command("openssl")
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = run([openssl, "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
              input=pem).stdout.strip()
    return out.split("=", 1)[1]


def peer_subject(sock):
    """The subject of the certificate the server presented on an SSL
    socket, whether or not the context verified it."""
    return der_subject(sock.getpeercert(binary_form=True))


class SharedPki(Pki):
    """The certificates most tests use, made once per process.

    ca / ca_cert:     the CA the tests trust (and client_ca in the proxy)
    server:           CN=test.example, SAN test.example and 127.0.0.1
    other:            CN=other.example, for [sni other.example]
    client:           CN=client.example, clientAuth, signed by ca
    rogue_ca, rogue_client: a CA the proxy does not trust, and a client
                      certificate it signed
    """

    def __init__(self):
        directory = tempfile.mkdtemp(prefix="submitproxy-pki-")
        atexit.register(shutil.rmtree, directory, True)
        super().__init__(directory)
        self.ca_pair = self.ca("ca", "submitproxy test CA")
        self.ca_cert = self.ca_pair[0]
        self.server = self.issue("server", self.ca_pair, HOSTNAME,
                                 organization="Default",
                                 dns=[HOSTNAME], ips=["127.0.0.1"])
        self.other = self.issue("other", self.ca_pair, OTHER_HOSTNAME,
                                organization="Other", dns=[OTHER_HOSTNAME])
        self.client = self.issue("client", self.ca_pair, "client.example",
                                 organization="Client", client=True)
        self.rogue_ca = self.ca("rogue-ca", "rogue CA")
        self.rogue_client = self.issue("rogue-client", self.rogue_ca,
                                       "rogue.example", client=True)
        # A reload re-reads [tls] files after the privilege drop: let
        # harness.TEST_USER read these throw-away keys.
        make_readable_after_drop(directory)
        if os.geteuid() == 0:
            for name in os.listdir(directory):
                os.chmod(os.path.join(directory, name), 0o644)

    def client_context(self, verify=True, **kw):
        """client_context() trusting this CA (verify=True) or trusting
        nothing and checking nothing (verify=False)."""
        return client_context(self.ca_cert if verify else None, **kw)


_shared = None


def shared_pki():
    """The process-wide SharedPki, made on first use (SkipTest without the
    openssl command)."""
    global _shared
    if _shared is None:
        _shared = SharedPki()
    return _shared


# ------------------------------------------------------------ SSL contexts

def client_context(ca=None, minimum=None, maximum=None, alpn=None,
                   cert=None, ciphers=None):
    """An SSLContext for a client.

    ca:       a CA file to verify the server against (hostname checked);
              None: no verification at all.
    minimum, maximum: ssl.TLSVersion bounds.
    alpn:     protocols offered by ALPN (None: no ALPN extension).
    cert:     a (certificate, key) pair to present as client certificate.
    ciphers:  an OpenSSL cipher string (TLS 1.2 and below)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(ca)
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    return context


def legacy_client_context(maximum):
    """A client that speaks at most an old protocol version (TLSv1 or
    TLSv1_1) with security level 0, so that this side does not refuse
    first.  Returns None if the local OpenSSL cannot be set up so."""
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            # Deprecated is the point: this client is the old one.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
    except (ssl.SSLError, ValueError):
        return None
    return context


# ------------------------------------------------------------------ Proxy

def tls_config(pki, cert=None, tls=None, sni=None, listeners=None,
               limits=None, extra=None):
    """Config overrides for Proxy: a [tls] section with cert (default
    pki.server) plus tls's keys, [sni NAME] sections from sni (a dict
    name -> (cert, key)), and listeners (a dict name -> keys; default a
    STARTTLS listener "starttls" and an implicit-TLS listener "implicit"
    besides harness's plain one)."""
    cert = cert or pki.server
    sections = {"tls": {"certificate": cert[0], "key": cert[1]}}
    sections["tls"].update(tls or {})
    for name, pair in (sni or {}).items():
        sections["sni " + name] = {"certificate": pair[0], "key": pair[1]}
    if listeners is None:
        listeners = {
            "starttls": {"mode": "starttls", "require_tls": "yes"},
            "implicit": {"mode": "implicit-tls"},
        }
    for name, keys in listeners.items():
        if keys is None:
            sections["listener " + name] = None
            continue
        section = {"address": "127.0.0.1:{port}"}
        section.update(keys)
        sections["listener " + name] = section
    sections["limits"] = dict(limits or {})
    for name, keys in (extra or {}).items():
        sections[name] = keys
    return sections


class TlsProxy(Proxy):
    """A Proxy with TLS configured by tls_config() (keyword arguments are
    passed on), plus what TLS tests need: the pid, SIGHUP reloads and the
    log lines of one client's session."""

    def __init__(self, test, pki, start=True, **kw):
        super().__init__(test, tls_config(pki, **kw), start=start)

    @property
    def pid(self):
        """The process we started (it may be the auth helper, which
        forwards SIGHUP and SIGTERM to the network process)."""
        return self.process.pid

    @property
    def network_pid(self):
        """The process that holds the listeners and the sessions: the pid=
        of the "event=start" log line when there is one (the binary forks
        an auth helper), else the process we started."""
        line = self.wait_log(r"\bevent=start\b")
        pid = harness.parse_log_fields(line).get("pid")
        return int(pid) if pid else self.process.pid

    def suspend(self):
        """SIGSTOP to the network process; returns once it is stopped.
        Registers a SIGCONT for the test's cleanup (before stop())."""
        pid = self.network_pid
        os.kill(pid, signal.SIGSTOP)
        self.test.addCleanup(self.resume)
        self._suspended = pid
        deadline = time.monotonic() + WAIT
        while process_state(pid) not in ("T", "t"):
            if time.monotonic() > deadline:
                raise AssertionError("pid %d not stopped after SIGSTOP"
                                     % pid)
            time.sleep(0.01)

    def resume(self):
        pid = getattr(self, "_suspended", None)
        if pid is not None:
            self._suspended = None
            os.kill(pid, signal.SIGCONT)

    def reload(self, expect="ok"):
        """Sends SIGHUP and waits for the next "event=reload status=..."
        line; asserts its status is expect and returns the line."""
        before = len(self.log_lines(r"\bevent=reload\b"))
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while True:
            lines = self.log_lines(r"\bevent=reload\b")
            if len(lines) > before:
                line = lines[before]
                if not re.search(r"\bstatus=%s\b" % re.escape(expect), line):
                    self._fail_with_log("reload: expected status=%s, got %r"
                                        % (expect, line))
                return line
            if time.monotonic() > deadline:
                self._fail_with_log("no event=reload line within %.0f s of "
                                    "SIGHUP" % WAIT)
            time.sleep(0.05)

    def wait_log_count(self, count, *patterns):
        """Waits until at least count log lines match every pattern."""
        deadline = time.monotonic() + WAIT
        while len(self.log_lines(*patterns)) < count:
            if time.monotonic() > deadline:
                self._fail_with_log("fewer than %d log lines matching %s "
                                    "within %.0f s" % (count, patterns, WAIT))
            time.sleep(0.05)

    def session_id(self, client):
        """The sid of the session of a Raw client (or any socket), found by
        the client's local port in the event=connect line."""
        sock = client.sock if isinstance(client, harness.Raw) else client
        port = sock.getsockname()[1]
        patterns = (r"\bevent=connect\b", r"\bport=%d\b" % port)
        self.wait_log(*patterns)
        # The latest: an earlier, closed session may have had the port.
        line = self.log_lines(*patterns)[-1]
        return harness.parse_log_fields(line)["sid"]

    def session_log(self, client, *patterns):
        """Waits for a log line of the client's session matching every
        pattern and returns its fields."""
        sid = self.session_id(client)
        return harness.parse_log_fields(self.wait_log(
            r"\bsid=%s(\s|$)" % re.escape(sid), *patterns))

    def session_lines(self, client, *patterns):
        sid = self.session_id(client)
        return self.log_lines(r"\bsid=%s(\s|$)" % re.escape(sid), *patterns)


def process_state(pid):
    """The state letter of /proc/PID/stat ("R", "S", "T", ...), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def make_readable_after_drop(directory):
    """Lets the proxy's unprivileged user (harness.TEST_USER when the
    tests run as root) read files created later in directory: mkdtemp()
    makes it 0700 and root's.  Files copied in by replace_file() are
    0644."""
    if os.geteuid() == 0:
        os.chmod(directory, 0o755)


def replace_file(source, destination):
    """Copies source over destination atomically (write aside, rename), as
    certbot and friends deploy a renewed certificate."""
    tmp = destination + ".new"
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, destination)


# ----------------------------------------------------------------- clients

def wait_accepted(proxy, client):
    """Waits until the proxy has accepted the client's connection on an
    implicit-TLS listener and is waiting for its ClientHello (the debug
    line "event=state from=greeting to=handshake" of its session, or a
    refusal).

    Builds up to 2026-11-25 12:01 took a ClientHello already queued at
    accept time for an early talker and answered 554 in plaintext; that
    rule has its own test (test_client_hello_already_queued_at_accept_is_
    not_an_early_talker).  Waiting here keeps each other test about its
    own rule."""
    sid = proxy.session_id(client)
    if proxy.sections.get("server", {}).get("log_level") != "debug":
        # No state lines at this level; the connect line is logged at
        # accept time, which is nearly as good.
        return
    proxy.wait_log(r"\bsid=%s(\s|$)" % re.escape(sid),
                   r"\bevent=(state from=\S+ to=handshake|reject)\b")


class BioClient:
    """A TLS client over memory BIOs on a connected socket, for tests that
    need the raw bytes of a flight: start() returns the ClientHello without
    sending it; finish_handshake() then drives the handshake over the
    socket; read_line() reads decrypted data."""

    def __init__(self, sock, context, server_hostname=HOSTNAME):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=server_hostname)
        self.plain = b""

    def start(self):
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def _pump(self, deadline):
        """Sends what the TLS state wants sent and feeds it one read."""
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("TLS: nothing from the server within "
                                 "%.0f s" % WAIT)
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("TLS: the server closed the connection")
        self.incoming.write(data)

    def finish_handshake(self, send_last_flight=True):
        """Drives the handshake to its end; the client's last flight
        (Finished) stays in self.outgoing unless send_last_flight."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump(deadline)
        if send_last_flight:
            data = self.outgoing.read()
            if data:
                self.sock.sendall(data)

    def read_line(self):
        deadline = time.monotonic() + WAIT
        while b"\n" not in self.plain:
            try:
                self.plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._pump(deadline)
        line, self.plain = self.plain.split(b"\n", 1)
        return line + b"\n"


def starttls(client, context=None, server_hostname=HOSTNAME):
    """On a Raw client past EHLO: STARTTLS, expect 220, then the TLS
    handshake.  Returns the client."""
    code, lines = client.command("STARTTLS")
    if code != 220:
        raise AssertionError("STARTTLS: expected 220, got %d %r"
                             % (code, lines))
    client.wrap_tls(context, server_hostname=server_hostname)
    return client


def implicit(proxy, context=None, listener="implicit",
             server_hostname=HOSTNAME, greeting=True):
    """A Raw client connected to an implicit-TLS listener, through the
    handshake and (greeting=True) past a 220 greeting read over TLS.
    Closed at the test's cleanup."""
    client = proxy.connect(listener)
    wait_accepted(proxy, client)
    client.wrap_tls(context, server_hostname=server_hostname)
    if greeting:
        code, lines = client.read_reply()
        if code != 220:
            raise AssertionError("implicit TLS greeting: expected 220, got "
                                 "%d %r" % (code, lines))
    return client


def handshake_fails(proxy, listener, context, server_hostname=HOSTNAME,
                    starttls_first=False):
    """Tries a handshake that should fail (after greeting, EHLO and
    STARTTLS if starttls_first); returns the exception the client saw (an
    SSLError or a connection error), or raises AssertionError saying what
    it got instead."""
    client = proxy.connect(listener)
    if not starttls_first:
        wait_accepted(proxy, client)
    if starttls_first:
        code, lines = client.read_reply()
        if code != 220:
            raise AssertionError("greeting: %d %r" % (code, lines))
        client.command("EHLO client.example")
        code, lines = client.command("STARTTLS")
        if code != 220:
            raise AssertionError("STARTTLS: %d %r" % (code, lines))
    try:
        client.wrap_tls(context, server_hostname=server_hostname)
    except (ssl.SSLError, OSError) as e:
        return e
    try:
        # TLS 1.3: the server's verdict on the client's last flight only
        # shows when the client reads.
        data = client.sock.recv(1024)
    except (ssl.SSLError, OSError) as e:
        return e
    raise AssertionError("the handshake succeeded (%s, %s) and the server "
                         "sent %r" % (client.sock.version(),
                                      client.sock.cipher(), data))


def ehlo_keywords(reply):
    """Upper-cased first words of the lines after the first of an EHLO
    reply."""
    return [line.split()[0].upper() for line in reply[1][1:] if line.split()]


def ehlo_auth(reply):
    """The mechanisms of the AUTH line of an EHLO reply, or None."""
    for line in reply[1][1:]:
        words = line.upper().split()
        if words and words[0] == "AUTH":
            return words[1:]
    return None
