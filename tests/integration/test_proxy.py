"""PROXY protocol listeners (proxy_protocol = yes), alone and behind a real
HAProxy in front of two submitproxy instances: the real client's address,
not the load balancer's, is what the proxy logs, limits, and hands to the
backend (XCLIENT ADDR= and the Received header)."""

import os
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

import backends
import harness
import pamutil
import tlsutil

WAIT = harness.WAIT
USER, PASSWORD = "alice", "proxy-secret"


def setUpModule():
    harness.require_binary()


def xclient_backend(test):
    """The recording backend, offering XCLIENT as Postfix does."""
    return backends.RecordingBackend(
        test, caps=backends.DEFAULT_CAPS +
        ["XCLIENT NAME ADDR PORT PROTO HELO LOGIN"])


def start_proxy(test, backend, mode="plain", limits=None):
    """A submitproxy whose only SMTP listener "pp" expects a PROXY header,
    with a pam_wrapper login USER/PASSWORD."""
    pam = pamutil.MatrixPam(test, {USER: PASSWORD})
    listeners = {"starttls": None, "implicit": None,
                 "pp": {"mode": mode, "proxy_protocol": "yes",
                        "require_tls": "no",
                        "allow_plaintext_auth": "yes"}}
    sections = tlsutil.tls_config(
        tlsutil.shared_pki(), listeners=listeners, limits=limits,
        extra={"auth": {"pam_service": pam.service,
                        "failure_delay": "200ms"},
               "backend": {"address": "127.0.0.1:%d" % backend.port}})
    sections["listener plain"] = None
    proxy = harness.Proxy(test, sections, start=False)
    with pamutil._environment(pam.environment()):
        proxy.start()
    return proxy


def v2_header(src, sport, dst="127.0.0.1", dport=587):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + \
        struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


class ProxyHeader(unittest.TestCase):
    """The header's rules, with raw sockets."""

    def setUp(self):
        self.backend = xclient_backend(self)
        self.proxy = start_proxy(self, self.backend,
                                 limits={"handshake_timeout": "1s"})

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.proxy.port("pp")),
                                     WAIT)
        self.addCleanup(s.close)
        return s

    def test_v1_header_gives_the_real_client_address(self):
        s = self.connect()
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 587\r\n")
        self.assertTrue(s.recv(100).startswith(b"220 "))
        s.close()
        self.proxy.wait_log(r"event=proxy ip=192\.0\.2\.7 port=40000 "
                            r"via=127\.0\.0\.1 version=1")

    def test_v2_header_gives_the_real_client_address(self):
        s = self.connect()
        s.sendall(v2_header("198.51.100.9", 41000))
        self.assertTrue(s.recv(100).startswith(b"220 "))
        s.close()
        self.proxy.wait_log(r"event=proxy ip=198\.51\.100\.9 port=41000 "
                            r"via=127\.0\.0\.1 version=2")

    def test_header_split_across_packets_is_reassembled(self):
        s = self.connect()
        for part in (b"PROXY TC", b"P4 192.0.2.8 127.0", b".0.1 4 587\r\n"):
            s.sendall(part)
            time.sleep(0.2)
        self.assertTrue(s.recv(100).startswith(b"220 "))
        s.close()
        self.proxy.wait_log(r"event=proxy ip=192\.0\.2\.8 ")

    def expect_dropped(self, s):
        s.settimeout(WAIT)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        self.assertNotIn(b"220", data)

    def test_connection_without_header_is_dropped_without_greeting(self):
        s = self.connect()
        s.sendall(b"EHLO x\r\n")
        self.expect_dropped(s)
        self.proxy.wait_log(r"reason=bad_proxy_header")

    def test_wrong_v2_signature_is_dropped(self):
        s = self.connect()
        s.sendall(b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x0c" +
                  b"\x00" * 12)
        self.expect_dropped(s)

    def test_v1_header_without_crlf_in_107_bytes_is_dropped(self):
        s = self.connect()
        s.sendall(b"PROXY TCP4 " + b"1" * 120)
        self.expect_dropped(s)

    def test_truncated_header_times_out(self):
        s = self.connect()
        s.sendall(b"PROXY TCP4 192.0.2.9")
        self.expect_dropped(s)
        self.proxy.wait_log(r"reason=proxy_header_timeout")

    def test_client_bytes_after_header_before_greeting_are_early_talk(self):
        s = self.connect()
        s.sendall(b"PROXY TCP4 192.0.2.10 127.0.0.1 5 587\r\nEHLO x\r\n")
        data = s.recv(200)
        self.assertTrue(data.startswith(b"554"), data)

    def test_per_address_limit_counts_the_real_client(self):
        self.proxy.stop()
        proxy = start_proxy(self, self.backend,
                            limits={"max_connections_per_address": "1"})
        port = proxy.port("pp")
        a = socket.create_connection(("127.0.0.1", port), WAIT)
        a.sendall(b"PROXY TCP4 192.0.2.20 127.0.0.1 5 587\r\n")
        self.assertTrue(a.recv(100).startswith(b"220"))
        b = socket.create_connection(("127.0.0.1", port), WAIT)
        b.sendall(b"PROXY TCP4 192.0.2.21 127.0.0.1 6 587\r\n")
        self.assertTrue(b.recv(100).startswith(b"220"),
                        "another real client from the same balancer")
        c = socket.create_connection(("127.0.0.1", port), WAIT)
        c.sendall(b"PROXY TCP4 192.0.2.20 127.0.0.1 7 587\r\n")
        self.assertTrue(c.recv(100).startswith(b"421 4.7.0"))
        for s in (a, b, c):
            s.close()
        proxy.stop()


@unittest.skipUnless(shutil.which("haproxy"), "haproxy is not installed")
class BehindHaproxy(unittest.TestCase):
    """A real HAProxy (TCP mode, send-proxy-v2 to one instance, send-proxy
    v1 to the other) in front of two submitproxy instances: the address
    the backend MTA sees is the client's."""

    def setUp(self):
        self.backend = xclient_backend(self)
        self.proxies = [start_proxy(self, self.backend, mode="implicit-tls")
                        for _ in range(2)]
        self.dir = tempfile.mkdtemp(prefix="submitproxy-haproxy-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 100\n"
                    "defaults\n    mode tcp\n    timeout connect 5s\n"
                    "    timeout client 60s\n    timeout server 60s\n"
                    "frontend smtps\n    bind 127.0.0.1:%d\n"
                    "    default_backend submitproxy\n"
                    "backend submitproxy\n    balance roundrobin\n"
                    "    server a 127.0.0.1:%d send-proxy-v2\n"
                    "    server b 127.0.0.1:%d send-proxy\n"
                    % (self.port, self.proxies[0].port("pp"),
                       self.proxies[1].port("pp")))
        self.haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.addCleanup(self._stop_haproxy)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.fail("haproxy did not start: %s"
                      % self.haproxy.stderr.read().decode(errors="replace"))

    def _stop_haproxy(self):
        self.haproxy.terminate()
        try:
            self.haproxy.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.haproxy.kill()
            self.haproxy.wait()

    def send_mail(self, body):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP_SSL("127.0.0.1", self.port, context=context,
                              timeout=WAIT,
                              source_address=("127.0.0.2", 0)) as smtp:
            smtp.login(USER, PASSWORD)
            smtp.sendmail("alice@example.com", ["bob@example.com"], body)

    def test_real_client_address_reaches_the_backend_through_both(self):
        for n in range(2):
            self.send_mail("Subject: via haproxy %d\r\n\r\nhello\r\n" % n)
        self.backend.wait_complete(2)
        lines = self.backend.all_lines()
        xclient = [l for l in lines if l.startswith(b"XCLIENT")]
        self.assertEqual(len(xclient), 2, lines)
        for line in xclient:
            self.assertIn(b"ADDR=127.0.0.2", line)
            self.assertIn(b"LOGIN=alice", line)
        received = [t.message().split(b"\r\n", 1)[0]
                    for t in self.backend.complete_transactions()]
        self.assertEqual(len(received), 2, received)
        for line in received:
            self.assertTrue(line.startswith(b"Received: from"), line)
            self.assertIn(b"([127.0.0.2])", line)
        # Round robin: each instance served one, one over v2, one over v1.
        self.proxies[0].wait_log(r"event=proxy ip=127\.0\.0\.2 .*version=2")
        self.proxies[1].wait_log(r"event=proxy ip=127\.0\.0\.2 .*version=1")


if __name__ == "__main__":
    unittest.main()
