"""Fixtures for the policy tests (issue 12: address prefixes, failures per
login, send limits per login, state shared through Redis).

    pam = policyutil.CountingPam(self, {"alice": pw})    # counts PAM calls
    backend = policyutil.FilteringBackend(self, reject_rcpt=r"reject")
    proxy = policyutil.PolicyProxy(self, pam, backend, auth={...})
    client = policyutil.pp_client(self, proxy, "2001:db8:1:2::7")
    redis = policyutil.RedisServer(self)                 # its own socket

CountingPam    a pamutil.MatrixPam whose "auth" stack starts with
               pam_exec running a script that appends one line
               ("auth USER RHOST") to a file per PAM authentication call,
               so a test can tell that PAM was (or was not) asked.
FilteringBackend
               a backends.RecordingBackend that refuses the RCPTs whose
               command line matches reject_rcpt (550 5.1.1) and the
               messages whose data matches reject_data (554 5.7.1).
PolicyProxy    a submitproxy whose SMTP listener "pp" expects a PROXY
               protocol header (so a test chooses any IPv4 or IPv6 source
               address) and allows AUTH in the clear, with PAM from a
               CountingPam and the backend given.
pp_client      a harness.Raw client through that listener, its PROXY
               header (v1 or v2) naming the source address chosen, past
               the greeting and EHLO.
RedisServer    redis-server on a Unix socket in a temporary directory
               (--port 0, no persistence), killed at cleanup; kill(),
               start() again on the same socket, suspend() (SIGSTOP) and
               resume(), and cli() through redis-cli.

Loopback only; every wait is bounded by harness.WAIT; standard library
plus redis-server, redis-cli (Debian redis-server, redis-tools) and
pam_wrapper.
"""

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import unittest

import backends
import harness
import pamutil
import tlsutil
from harness import WAIT

CLIENT = "client.example"


# ------------------------------------------------------------ addresses

def prefix_of(ip, ipv4_prefix=32, ipv6_prefix=64):
    """The prefix text the proxy logs for ip ("2001:db8:1:2::/64",
    "192.0.2.0/24"); an IPv4-mapped IPv6 address counts as IPv4."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = ipv4_prefix if addr.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network("%s/%d" % (addr, bits), strict=False))


def in_64(base, n):
    """The n-th address (n >= 1) of the /64 of base: "2001:db8:1:2::"
    -> 2001:db8:1:2::n, spread over the interface identifier."""
    net = ipaddress.ip_network(base + "/64", strict=False)
    host = (n * 0x9e3779b97f4a7c15) & ((1 << 64) - 1) or n
    return str(net.network_address + host)


def nth_64(n, base="2001:db8:100::"):
    """One address in the n-th /64 after base's (a distinct /64 per n)."""
    net = ipaddress.ip_network(base + "/64", strict=False)
    return str(net.network_address + (n << 64) + 1)


# ------------------------------------------------------------ PROXY header

def proxy_header(src, sport=40000, dst=None, dport=587, version=1):
    """A PROXY protocol header (v1 text or v2 binary) for a TCP connection
    from src:sport to dst:dport; IPv6 when src has a colon."""
    six = ":" in src
    if dst is None:
        dst = "::1" if six else "127.0.0.1"
    if version == 1:
        return ("PROXY %s %s %s %d %d\r\n"
                % ("TCP6" if six else "TCP4", src, dst, sport,
                   dport)).encode("ascii")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    family = socket.AF_INET6 if six else socket.AF_INET
    addrs = socket.inet_pton(family, src) + socket.inet_pton(family, dst) + \
        struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x21 if six else 0x11]) + \
        struct.pack("!H", len(addrs)) + addrs


_sport = [20000]


def pp_connect(test, proxy, src, listener="pp", version=1):
    """A harness.Raw client of proxy's PROXY-protocol listener, its header
    saying the connection comes from src; closed at cleanup.  Nothing is
    read yet."""
    host, port = proxy.addresses(listener)[0]
    client = harness.Raw(port, host=host)
    test.addCleanup(client.close)
    _sport[0] = _sport[0] + 1 if _sport[0] < 65000 else 20001
    client.send(proxy_header(src, _sport[0], version=version))
    client.source_ip = src
    return client


def pp_client(test, proxy, src, listener="pp", version=1, ehlo=True):
    """pp_connect(), the 220 read and (if ehlo) EHLO answered 250; the
    EHLO reply is in .ehlo."""
    client = pp_connect(test, proxy, src, listener, version)
    reply = client.read_reply()
    test.assertEqual(reply[0], 220, "greeting for a client from %s: %r"
                     % (src, reply))
    if ehlo:
        client.ehlo = client.command("EHLO " + CLIENT)
        test.assertEqual(client.ehlo[0], 250, client.ehlo)
    return client


# ------------------------------------------------------------------ PAM

class CountingPam(pamutil.MatrixPam):
    """MatrixPam with "auth optional pam_exec.so quiet SCRIPT" first: the
    script appends "auth USER RHOST" to self.calls_path on every
    authentication PAM runs, so calls() says how often PAM was asked."""

    def __init__(self, test, users, service=pamutil.SERVICE):
        super().__init__(test, users, service=service)
        if not self.pam_exec:
            raise unittest.SkipTest("pam_exec.so is not installed (Debian "
                                    "package libpam-modules)")
        # The PAM workers may run as another user than the test: the
        # directory and the file are open to every one.
        self.calls_dir = tempfile.mkdtemp(prefix="submitproxy-pamcalls-")
        test.addCleanup(shutil.rmtree, self.calls_dir, True)
        os.chmod(self.calls_dir, 0o777)
        os.chmod(self.dir, 0o755)
        self.calls_path = os.path.join(self.calls_dir, "calls")
        with open(self.calls_path, "w"):
            pass
        os.chmod(self.calls_path, 0o666)
        self.script = os.path.join(self.dir, "count-pam-call")
        with open(self.script, "w") as f:
            f.write("#!/bin/sh\n"
                    "printf '%%s %%s %%s\\n' \"$PAM_TYPE\" \"$PAM_USER\" "
                    "\"${PAM_RHOST:--}\" >> %s\n"
                    "exit 0\n" % self.calls_path)
        os.chmod(self.script, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP |
                 stat.S_IROTH | stat.S_IXOTH)
        path = os.path.join(self.services_dir, service)
        with open(path) as f:
            lines = f.read()
        with open(path, "w") as f:
            f.write("auth optional %s quiet %s\n%s"
                    % (self.pam_exec, self.script, lines))

    def calls(self, user=None):
        """[(user, rhost)] of every PAM authentication so far (of user
        only, if given)."""
        with open(self.calls_path) as f:
            rows = [line.split() for line in f if line.strip()]
        found = [(r[1] if len(r) > 1 else "", r[2] if len(r) > 2 else "")
                 for r in rows if r and r[0] == "auth"]
        if user is not None:
            found = [c for c in found if c[0] == user]
        return found

    def count(self, user=None):
        return len(self.calls(user))


# -------------------------------------------------------------- backend

class FilteringBackend(backends.RecordingBackend):
    """A RecordingBackend that refuses some recipients and messages:
    a RCPT line matching reject_rcpt (a regex, bytes or str) gets
    rcpt_reply, a message whose data matches reject_data gets
    data_reply.  Everything is still recorded (a refused RCPT is in the
    transaction's rcpts: it reached the backend)."""

    def __init__(self, test, reject_rcpt=None, reject_data=None,
                 rcpt_reply="550 5.1.1 <refused>: Recipient address "
                            "rejected",
                 data_reply="554 5.7.1 Message refused", **kw):
        def regex(pattern):
            if pattern is None:
                return None
            if isinstance(pattern, str):
                pattern = pattern.encode()
            return re.compile(pattern)
        self.reject_rcpt = regex(reject_rcpt)
        self.reject_data = regex(reject_data)
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        super().__init__(test, **kw)

    def _reply(self, conn, verb, text):
        if verb == "RCPT" and self.reject_rcpt is not None and conn.lines \
                and self.reject_rcpt.search(conn.lines[-1]):
            text = self.rcpt_reply
        elif verb == "." and self.reject_data is not None and \
                conn.transactions and \
                self.reject_data.search(conn.transactions[-1].data):
            text = self.data_reply
        super()._reply(conn, verb, text)

    def rcpt_lines(self):
        """Every RCPT command line the backend received (bytes)."""
        return [line for line in self.all_lines()
                if backends.command_verb(line) == "RCPT"]

    def mail_lines(self):
        return [line for line in self.all_lines()
                if backends.command_verb(line) == "MAIL"]


# ---------------------------------------------------------------- proxy

class PolicyProxy(tlsutil.TlsProxy):
    """A submitproxy whose only SMTP listener "pp" is plain, expects a
    PROXY header and allows AUTH PLAIN/LOGIN in the clear; PAM from pam
    (a CountingPam or MatrixPam), backend at backend (anything with an
    .address, or an address string).

    auth, limits, policy, server, extra: keys for those sections (auth
    and server over the defaults below).
    """

    AUTH_DEFAULTS = {"mechanisms": "PLAIN LOGIN", "failure_delay": "10ms",
                     "max_failures": 100}

    def __init__(self, test, pam, backend, auth=None, limits=None,
                 policy=None, server=None, extra=None, start=True):
        self.pam = pam
        self.backend = backend
        auth_keys = dict(self.AUTH_DEFAULTS)
        auth_keys["pam_service"] = pam.service
        auth_keys.update(auth or {})
        address = backend if isinstance(backend, str) else backend.address
        sections = {"auth": auth_keys,
                    "backend": {"address": address, "connect_timeout": "3s",
                                "timeout": "15s"}}
        if policy:
            sections["policy"] = dict(policy)
        if server:
            merged = dict(harness.DEFAULT_CONFIG["server"])
            merged.update(server)
            sections["server"] = merged
        for name, keys in (extra or {}).items():
            sections[name] = keys
        listeners = {"plain": None, "starttls": None, "implicit": None,
                     "pp": {"mode": "plain", "proxy_protocol": "yes",
                            "require_tls": "no",
                            "allow_plaintext_auth": "yes"}}
        super().__init__(test, tlsutil.shared_pki(), start=start,
                         listeners=listeners, limits=limits, extra=sections)

    def start(self):
        with pamutil._environment(self.pam.environment()):
            super().start()

    def _network_pids(self):
        """The network processes named by "event=start ... pid=N" lines
        that are still running the binary under test."""
        binary = os.path.realpath(harness.binary())
        pids = set()
        for line in self.log_lines(r"\bevent=start\b", r"\bpid=\d+"):
            pid = int(harness.parse_log_fields(line)["pid"])
            with contextlib.suppress(OSError):
                if os.path.realpath("/proc/%d/exe" % pid) == binary:
                    pids.add(pid)
        return pids

    def stop(self):
        # harness kills the process it started when SIGTERM did not end
        # it; a network process hung the same way would be left behind.
        network = self._network_pids() if self.process is not None \
            else set()
        # Nothing secret may reach the log (as pamutil.PamProxy checks).
        try:
            super().stop()
        finally:
            for pid in network & self._network_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            log = self.log()
            for user, password in self.pam.users.items():
                for secret in pamutil.secret_forms(user, password):
                    if secret in log:
                        raise AssertionError("a password of %s is in the "
                                             "log" % user)

    def fields(self, *patterns):
        """parse_log_fields() of every log line matching the patterns."""
        return [harness.parse_log_fields(line)
                for line in self.log_lines(*patterns)]


def write_file(path, text, mode=0o644):
    """Writes text to path atomically (a rename), readable after the
    privilege drop."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---------------------------------------------------------------- Redis

def redis_commands():
    """(redis-server, redis-cli) paths.  Missing: SkipTest, except when
    $CI is "true", where a missing redis is an error (AssertionError):
    CI must run these tests."""
    server = backends.find_command("redis-server")
    cli = backends.find_command("redis-cli")
    missing = [name for name, path in (("redis-server (Debian package "
                                        "redis-server)", server),
                                       ("redis-cli (Debian package "
                                        "redis-tools)", cli)) if not path]
    if missing:
        message = "not installed: %s" % ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(message + " (CI=true: the Redis tests "
                                 "must run, not be skipped)")
        raise unittest.SkipTest(message)
    return server, cli


class RedisServer:
    """redis-server listening on DIR/redis.sock (mode 777, so the proxy's
    network process can connect after dropping root) and, with tcp=True,
    on 127.0.0.1:PORT too (else on no TCP port); no persistence; a
    password (requirepass) if given; killed at the test's cleanup (SIGCONT
    first if it was suspended).  url: the redis+unix:// URL of the socket
    (tcp_url(): the redis:// one)."""

    def __init__(self, test, start=True, tcp=False, password=None):
        self.test = test
        self.server_exe, self.cli_exe = redis_commands()
        self.dir = tempfile.mkdtemp(prefix="submitproxy-redis-")
        os.chmod(self.dir, 0o755)
        test.addCleanup(self._remove_dir)
        self.path = os.path.join(self.dir, "redis.sock")
        self.url = "redis+unix://" + self.path
        self.password = password
        self.port = harness.free_ports(["127.0.0.1"])[0] if tcp else 0
        self.log_path = os.path.join(self.dir, "redis.log")
        self.process = None
        self.suspended = False
        self.starts = 0
        test.addCleanup(self.stop)
        if start:
            self.start()

    def _remove_dir(self):
        if os.environ.get("SUBMITPROXY_KEEP_TMP"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        """Starts redis-server (again) on the same socket and waits until
        it answers PING."""
        assert self.process is None or self.process.poll() is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._log = open(self.log_path, "ab")
        args = [self.server_exe, "--port", str(self.port),
                "--unixsocket", self.path, "--unixsocketperm", "777",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--daemonize", "no", "--loglevel", "notice"]
        if self.port:
            args += ["--bind", "127.0.0.1"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=self._log,
                                        cwd=self.dir)
        self.starts += 1
        deadline = time.monotonic() + WAIT
        while True:
            if self.process.poll() is not None:
                raise AssertionError("redis-server exited with %s: %s"
                                     % (self.process.returncode, self.log()))
            if os.path.exists(self.path) and self.ping():
                return
            if time.monotonic() > deadline:
                raise AssertionError("redis-server not answering on %s "
                                     "within %.0f s: %s"
                                     % (self.path, WAIT, self.log()))
            time.sleep(0.05)

    def log(self):
        with contextlib.suppress(OSError), open(self.log_path) as f:
            return f.read()
        return ""

    def running(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        """SIGKILL, waited for: every client connection is cut."""
        if self.running():
            if self.suspended:
                self.resume()
            self.process.kill()
            self.process.wait(WAIT)
        if self.process is not None:
            self._log.close()

    def stop(self):
        if self.process is None:
            return
        if self.running():
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        with contextlib.suppress(Exception):
            self._log.close()
        self.process = None

    def suspend(self):
        """SIGSTOP: connections stay open, nothing is answered."""
        os.kill(self.process.pid, signal.SIGSTOP)
        self.suspended = True
        deadline = time.monotonic() + WAIT
        while tlsutil.process_state(self.process.pid) not in ("T", "t"):
            if time.monotonic() > deadline:
                raise AssertionError("redis-server not stopped by SIGSTOP")
            time.sleep(0.01)

    def resume(self):
        if self.suspended and self.running():
            os.kill(self.process.pid, signal.SIGCONT)
        self.suspended = False

    def tcp_url(self, db=None):
        """redis://[:PASSWORD@]127.0.0.1:PORT[/db] (tcp=True only)."""
        assert self.port, "RedisServer(tcp=True) for a TCP URL"
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s127.0.0.1:%d%s" % (
            auth, self.port, "" if db is None else "/%d" % db)

    # -- client

    def _cli_args(self):
        args = [self.cli_exe, "-s", self.path]
        if self.password:
            args += ["--no-auth-warning", "-a", self.password]
        return args

    def cli(self, *args, check=True, db=None):
        """redis-cli -s SOCKET [-n db] args...: its stdout (str)."""
        base = self._cli_args() + ([] if db is None else ["-n", str(db)])
        try:
            result = subprocess.run(base + [str(a) for a in args],
                                    stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True,
                                    timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError("redis-cli %s did not finish within "
                                 "%.0f s" % (" ".join(map(str, args)),
                                             WAIT)) from None
        if check and (result.returncode != 0 or
                      result.stdout.startswith("ERR")):
            raise AssertionError("redis-cli %s: %s%s"
                                 % (" ".join(map(str, args)), result.stdout,
                                    result.stderr))
        return result.stdout

    def ping(self):
        try:
            result = subprocess.run(self._cli_args() + ["PING"],
                                    stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True,
                                    timeout=2)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0 and result.stdout.strip() == "PONG"

    def keys(self, pattern="*", db=None):
        """Every key matching pattern in db (default 0; SCAN, not KEYS)."""
        out = self.cli("--scan", "--pattern", pattern, db=db)
        return sorted(line for line in out.splitlines() if line)

    def pttl(self, key, db=None):
        return int(self.cli("PTTL", key, db=db).strip())


def random_key_prefix():
    return "sptest-%s:" % secrets.token_hex(4)
