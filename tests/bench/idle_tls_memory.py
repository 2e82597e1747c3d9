#!/usr/bin/env python3
"""Memory per idle connection of submitproxy: TLS and plain, side by side.

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  For each kind of connection it starts a fresh
submitproxy (tests/integration/harness.py), reads the network process's
VmRSS from /proc/PID/status, opens N connections (implicit TLS: full
handshake and the 220 greeting read over TLS; plain: the 220 greeting),
lets them sit idle, reads VmRSS again and prints

    idle TLS connections: N, proxy RSS before X KiB, after Y KiB,
    per connection Z KiB

DESIGN.md "TLS": SSL_MODE_RELEASE_BUFFERS or equivalent so that an idle
connection costs little memory.

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/idle_tls_memory.py
        [--count N] [--tls-version 1.2|1.3] [--max-seconds S]

Loopback only; Python standard library and the openssl command (for the
certificate).  Every wait is bounded; the whole run gives up after
--max-seconds.
"""

import argparse
import os
import resource
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402
import tlsutil  # noqa: E402

SLACK_FDS = 64      # listeners, log files, the auth helper's pipes, ...


class Cleanups:
    """What harness.Proxy expects of a unittest.TestCase: addCleanup()."""

    def __init__(self):
        self._cleanups = []

    def addCleanup(self, function, *args, **kw):
        self._cleanups.append((function, args, kw))

    def run(self):
        errors = []
        while self._cleanups:
            function, args, kw = self._cleanups.pop()
            try:
                function(*args, **kw)
            except Exception as e:  # report, go on cleaning
                errors.append("%s: %s" % (getattr(function, "__name__",
                                                  function), e))
        return errors


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, what):
        if time.monotonic() > self.end:
            raise SystemExit("gave up after %.0f s (--max-seconds) while %s"
                             % (self.seconds, what))


def raise_fd_limit(wanted):
    """Raises this process's RLIMIT_NOFILE soft limit towards wanted (as
    far as the hard limit allows); children inherit it.  Returns the new
    soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/%d/status" % pid)


def fd_limit_of(pid):
    try:
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3]
    except OSError:
        pass
    return "?"


def start_proxy(cleanups, pki, count):
    """A fresh submitproxy with the plain listener and an implicit-TLS
    listener, limits high enough for count idle connections, info logs."""
    limits = {
        "max_connections": str(count + 100),
        "max_connections_per_address": str(count + 100),
        "idle_timeout": "1h",
        "handshake_timeout": "10m",
    }
    proxy = tlsutil.TlsProxy(
        cleanups, pki, limits=limits,
        listeners={"implicit": {"mode": "implicit-tls"}},
        extra={"server": {"hostname": harness.HOSTNAME,
                          "log_level": "info"}})
    return proxy


def wait_connect_lines(proxy, listener, count, deadline):
    """Waits until the proxy logged count "event=connect" lines for the
    listener: by then it has accepted every connection made so far."""
    pattern = (r"\bevent=connect\b", r"\blistener=%s\b" % listener)
    while len(proxy.log_lines(*pattern)) < count:
        deadline.check("waiting for the proxy to accept %d connections "
                       "(%d so far)" % (count,
                                        len(proxy.log_lines(*pattern))))
        if not proxy.running():
            raise SystemExit("submitproxy exited:\n%s" % proxy.log()[-2000:])
        time.sleep(0.05)


def read_greeting(sock, deadline):
    data = b""
    while not data.endswith(b"\r\n"):
        deadline.check("reading a greeting")
        chunk = sock.recv(512)
        if not chunk:
            raise ConnectionError("closed before the greeting; got %r"
                                  % data)
        data += chunk
    if not data.startswith(b"220 "):
        raise ConnectionError("greeting %r" % data)


def open_connections(proxy, listener, count, context, deadline):
    """count connections to the listener, each through the handshake (if
    context) and the 220 greeting.  TCP connections are all made first and
    the handshakes start once the proxy has accepted them all, so that no
    ClientHello is queued before accept (the binary would take it for an
    early talker).  A refused handshake is retried (bounded); returns
    (sockets, retries)."""
    host, port = proxy.addresses(listener)[0]
    raw = []
    for _ in range(count):
        deadline.check("connecting")
        raw.append(socket.create_connection((host, port),
                                            timeout=harness.WAIT))
    wait_connect_lines(proxy, listener, count, deadline)
    done, retries, accepted = [], 0, count
    for sock in raw:
        while True:
            deadline.check("handshaking")
            try:
                if context is not None:
                    sock = context.wrap_socket(
                        sock, server_hostname=harness.HOSTNAME)
                read_greeting(sock, deadline)
                done.append(sock)
                break
            except (ssl.SSLError, ConnectionError, OSError) as e:
                sock.close()
                retries += 1
                if retries > count:
                    raise SystemExit("too many refused handshakes (%d), "
                                     "last: %s" % (retries, e))
                sock = socket.create_connection((host, port),
                                                timeout=harness.WAIT)
                accepted += 1
                wait_connect_lines(proxy, listener, accepted, deadline)
    return done, retries


def measure(kind, count, context, listener, pki, deadline, settle):
    cleanups = Cleanups()
    sockets = []
    try:
        proxy = start_proxy(cleanups, pki, count)
        pid = proxy.network_pid
        time.sleep(settle)
        before = vm_rss_kib(pid)
        started = time.monotonic()
        sockets, retries = open_connections(proxy, listener, count, context,
                                            deadline)
        elapsed = time.monotonic() - started
        time.sleep(settle)     # idle
        after = vm_rss_kib(pid)
        version = ""
        if context is not None and sockets:
            version = " (%s, %s)" % (sockets[0].version(),
                                     sockets[0].cipher()[0])
        print("idle %s connections: %d, proxy RSS before %d KiB, after %d "
              "KiB, per connection %.1f KiB%s"
              % (kind, len(sockets), before, after,
                 (after - before) / max(len(sockets), 1), version))
        print("    opened in %.1f s; network pid %d (max open files %s); "
              "refused handshakes retried: %d"
              % (elapsed, pid, fd_limit_of(pid), retries))
        sys.stdout.flush()
        return before, after
    finally:
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass
        for error in cleanups.run():
            print("    cleanup: %s" % error)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000,
                        help="idle connections of each kind (default 1000)")
    parser.add_argument("--tls-version", choices=("1.2", "1.3"),
                        default=None, help="pin the TLS version "
                        "(default: the best both sides have)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to let the proxy settle before each "
                        "RSS reading (default 1)")
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="give up after this long (default 300)")
    args = parser.parse_args()

    if not harness.binary():
        default = os.path.join(harness.source_root(), "build", "proxy",
                               "submitproxy")
        os.environ["SUBMITPROXY"] = default
    if not os.access(harness.binary(), os.X_OK):
        raise SystemExit("no submitproxy binary at %s (set SUBMITPROXY)"
                         % harness.binary())

    wanted = args.count + SLACK_FDS
    limit = raise_fd_limit(wanted)
    count = args.count
    if limit < wanted:
        count = max(limit - SLACK_FDS, 1)
        print("RLIMIT_NOFILE is %d: measuring %d connections instead of %d"
              % (limit, count, args.count))
    deadline = Deadline(args.max_seconds)

    pki = tlsutil.shared_pki()
    context = tlsutil.client_context(pki.ca_cert)
    if args.tls_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    elif args.tls_version == "1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3

    print("submitproxy %s, %d connections per kind, RLIMIT_NOFILE %d"
          % (harness.binary(), count, limit))
    tls = measure("TLS", count, context, "implicit", pki, deadline,
                  args.settle)
    plain = measure("plain", count, None, "plain", pki, deadline,
                    args.settle)
    extra = ((tls[1] - tls[0]) - (plain[1] - plain[0])) / count
    print("TLS costs %.1f KiB more per idle connection than plain" % extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
