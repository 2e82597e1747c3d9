"""The [metrics] endpoint (issue 14): GET /metrics and GET /healthz as a
scraper, Prometheus, promtool and HAProxy see them.

- after a scripted mix of sessions (logins by PLAIN and LOGIN, wrong
  passwords, a TLS 1.2 client, a handshake with no shared cipher, one
  from a client whose best version is too old, plaintext on the
  implicit-TLS port, one message to two recipients, a login while the
  backend is down), /metrics shows exactly those counts, and the
  sessions gauge goes back to 0 once every client has closed;
- `promtool check metrics` accepts a scrape;
- a real Prometheus, started here with a 1 s scrape interval, scrapes the
  endpoint and answers a query for a counter through its HTTP API (slow:
  a few seconds for Prometheus to start and scrape);
- /healthz: 200 with the backend up, 503 with a one-line reason once the
  backend is stopped and the probe noticed, 200 again after it returns;
  HAProxy with the example's `option httpchk` marks the instance DOWN and
  UP again (read from its stats socket);
- [metrics] allow: a scrape from an address outside it is closed without
  an HTTP byte, and logged once (event=reject reason=metrics_not_allowed);
- a SIGHUP counts as a reload, ok or failed;
- a scrape storm (50 scrapes a second for 5 s) while 100 sessions log in
  and send: every session succeeds, every scrape is a 200 that parses.

The TLS families (submitproxy_tls_*) are filled by the TLS session code's
handshake callbacks (proxy/session.c); their assertions here are the
issue's spec and fail on a build that does not count handshakes.

Backends: Postfix's smtp-sink (backends.SmtpSink).  Loopback only; every
wait is bounded; no test asserts how fast something happened.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import metricsutil  # noqa: E402
import tlsutil  # noqa: E402
from backends import SmtpSink  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402
from metricsutil import MetricsProxy  # noqa: E402
import pamutil  # noqa: E402
from pamutil import b64  # noqa: E402

CLIENT = "client.example"
SENDER = "alice@example.com"
RCPTS = ["bob@example.net", "carol@example.net"]
BODY = (b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.net>\r\n"
        b"Subject: metrics test\r\n"
        b"\r\n"
        b"Counted, not read.\r\n")

# The server's TLS 1.2 list: one cipher, so that a client offering
# another shares none (the certificates are EC P-256).
SERVER_CIPHER = "ECDHE-ECDSA-CHACHA20-POLY1305"
OTHER_CIPHER = "ECDHE-ECDSA-AES256-GCM-SHA384"

def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()
    backends.require_sbin_command("smtp-sink", "postfix")


def context(**kw):
    return tlsutil.client_context(None, **kw)


class MetricsTestCase(ProxyTestCase):

    def proxy(self, sink=None, **kw):
        if sink is None:
            sink = SmtpSink(self)
        return MetricsProxy(self, sink, **kw)

    # -- sessions (harness.Raw, so that each command is one the test
    #    chose: smtplib tries every mechanism it knows after a failure)

    def starttls_client(self, proxy, ctx=None):
        client = proxy.connect("sub")
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        tlsutil.starttls(client, ctx or context())
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        return client

    def implicit_client(self, proxy, ctx=None):
        client = tlsutil.implicit(proxy, ctx or context(), listener="subs")
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        return client

    def auth_plain(self, proxy, client, password=None):
        password = proxy.password if password is None else password
        return client.command("AUTH PLAIN " + b64(
            "\0%s\0%s" % (proxy.USER, password)))

    def auth_login(self, proxy, client, password=None):
        password = proxy.password if password is None else password
        self.assertReply(client.command("AUTH LOGIN"), 334)
        self.assertReply(client.command(b64(proxy.USER)), 334)
        return client.command(b64(password))

    def send_message(self, client, rcpts=RCPTS):
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        for rcpt in rcpts:
            self.assertReply(client.command("RCPT TO:<%s>" % rcpt), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(BODY + b".\r\n")
        self.assertReply(client.read_reply(), 250)

    def quit(self, client):
        self.assertReply(client.command("QUIT"), 221)
        client.expect_closed()
        client.close()

    def smtplib_session(self, proxy, password, message=True):
        """One whole session through smtplib (STARTTLS, AUTH PLAIN only,
        one message): raises on any failure."""
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("sub"),
                            local_hostname=CLIENT, timeout=2 * WAIT)
        try:
            smtp.ehlo()
            smtp.starttls(context=context())
            smtp.ehlo()
            smtp.esmtp_features["auth"] = "PLAIN"
            smtp.login(proxy.USER, password)
            if message:
                refused = smtp.sendmail(SENDER, RCPTS[:1], BODY)
                if refused:
                    raise AssertionError("refused: %r" % refused)
            smtp.quit()
        finally:
            smtp.close()

    # -- assertions

    def assertValue(self, scrape, want, name, **labels):
        got = scrape.value(name, **labels)
        self.assertEqual(got, want, "%s%r is %r, expected %r\n%s"
                         % (name, labels, got, want,
                            "\n".join(l for l in scrape.text.splitlines()
                                      if l.startswith(name))))

    def assertTable(self, scrape, name, want, **fixed):
        """Every series of name with the fixed labels: those in want
        ({label value tuple: count}, keyed on the labels not fixed, in
        sorted label-name order) have that count, every other one 0."""
        series = scrape.series(name, **fixed)
        self.assertTrue(series, "no series %s%r" % (name, fixed))
        got = {}
        for labels, value in series:
            key = tuple(v for k, v in sorted(labels.items())
                        if k not in fixed)
            got[key] = got.get(key, 0) + value
        self.assertEqual({k: v for k, v in got.items() if v},
                         {k: v for k, v in want.items() if v},
                         "%s%r" % (name, fixed))


# ================================================================== counts

class Counts(MetricsTestCase):

    def scripted_mix(self):
        """Runs the mix of sessions, waits until every one is closed and
        counted, and returns (the scrape, the accepted connections by
        listener, whether the TLS 1.0 client ran, the sink)."""
        sink = SmtpSink(self)
        proxy = self.proxy(sink, tls={"ciphers": SERVER_CIPHER})
        before = metricsutil.scrape(proxy)
        accepted = {"sub": 0, "subs": 0}

        # 1. PLAIN over STARTTLS (TLS 1.3), one message to two recipients.
        client = self.starttls_client(proxy)
        accepted["sub"] += 1
        self.assertReply(self.auth_plain(proxy, client), 235, "2.7.0")
        self.send_message(client)
        self.quit(client)
        sink.wait_messages(1)

        # 2. LOGIN over implicit TLS from a TLS 1.2 client.
        ctx12 = context(maximum=ssl.TLSVersion.TLSv1_2)
        client = self.implicit_client(proxy, ctx12)
        accepted["subs"] += 1
        self.assertEqual(client.sock.version(), "TLSv1.2")
        self.assertEqual(client.sock.cipher()[0], SERVER_CIPHER)
        self.assertReply(self.auth_login(proxy, client), 235, "2.7.0")
        self.quit(client)

        # 3., 4. Wrong passwords, by PLAIN and by LOGIN.
        client = self.starttls_client(proxy)
        accepted["sub"] += 1
        self.assertReply(self.auth_plain(proxy, client, "wrong-1"), 535)
        self.quit(client)
        client = self.implicit_client(proxy)
        accepted["subs"] += 1
        self.assertReply(self.auth_login(proxy, client, "wrong-2"), 535)
        self.quit(client)

        # 5. A TLS 1.2 client offering only a cipher the server refuses.
        tlsutil.handshake_fails(proxy, "subs", context(
            maximum=ssl.TLSVersion.TLSv1_2, ciphers=OTHER_CIPHER))
        accepted["subs"] += 1
        # (event=tls_error before the TLS telemetry, event=tls_fail since.)
        proxy.wait_log(r"\bevent=tls_(error|fail)\b", r"no.shared.cipher")

        # 6. A client whose best is TLS 1.0 (min_version is TLS 1.2).
        legacy = tlsutil.legacy_client_context(ssl.TLSVersion.TLSv1)
        if legacy is not None:
            tlsutil.handshake_fails(proxy, "subs", legacy)
            accepted["subs"] += 1

        # 7. Plaintext SMTP on the implicit-TLS port.
        raw = proxy.connect("subs")
        tlsutil.wait_accepted(proxy, raw)
        accepted["subs"] += 1
        try:
            raw.send(b"EHLO " + CLIENT.encode() + b"\r\n")
            raw.read_until_closed()
        except OSError:
            pass
        raw.close()

        # 8. The backend gone: the right password, then 454 (and the
        #    client may stay).
        sink.stop()
        client = self.starttls_client(proxy)
        accepted["sub"] += 1
        self.assertReply(self.auth_plain(proxy, client), 454, "4.7.0",
                         "mail service is temporarily unavailable")
        self.quit(client)

        # Closing is asynchronous: the sessions gauge and the duration
        # histogram follow the clients' close.
        total = sum(accepted.values())
        backends.wait_for(lambda: metricsutil.scrape(proxy).value(
            "submitproxy_session_duration_seconds_count") == total,
            "every session closed and counted")
        after = metricsutil.wait_value(proxy, 0, "submitproxy_sessions")
        self.assertEqual(before.value("submitproxy_sessions"), 0)
        return after, accepted, legacy is not None, sink

    def test_a_scripted_mix_of_sessions_shows_exactly_its_counts(self):
        after, accepted, legacy, sink = self.scripted_mix()

        # Connections, by listener.
        self.assertTable(after, "submitproxy_connections_accepted_total",
                         {("sub",): accepted["sub"],
                          ("subs",): accepted["subs"]})
        self.assertEqual(after.total("submitproxy_connections_refused_total"),
                         0)

        # AUTH by mechanism and result.
        self.assertTable(after, "submitproxy_auth_attempts_total", {
            ("PLAIN", "ok"): 1,
            ("LOGIN", "ok"): 1,
            ("PLAIN", "bad_credentials"): 1,
            ("LOGIN", "bad_credentials"): 1,
            ("PLAIN", "backend_unavailable"): 1,
        })

        # The one message.
        self.assertValue(after, 1, "submitproxy_transactions_total",
                         reply="2xx")
        self.assertValue(after, 0, "submitproxy_transactions_total",
                         reply="4xx")
        self.assertValue(after, 0, "submitproxy_transactions_total",
                         reply="5xx")
        self.assertValue(after, len(RCPTS),
                         "submitproxy_recipients_accepted_total")
        size = after.value("submitproxy_message_bytes_total")
        self.assertGreaterEqual(size, len(BODY),
                                "the message's bytes, as relayed")
        self.assertValue(after, 1, "submitproxy_message_size_bytes_count")
        self.assertValue(after, size, "submitproxy_message_size_bytes_sum")

        # The backend: two hand-overs, one refusal (nobody listening).
        backend = sink.address
        self.assertValue(after, 2, "submitproxy_backend_connect_seconds_count",
                         backend=backend)
        self.assertTable(after, "submitproxy_backend_errors_total",
                         {(backend, "refused"): 1})
        self.assertGreaterEqual(
            after.value("submitproxy_backend_probes_total", backend=backend,
                        result="ok"), 1, "the start's probe")

        # The auth helper: five passwords checked, all answered.
        self.assertTable(after, "submitproxy_auth_helper_requests_total",
                         {("answered",): 5})
        self.assertValue(after, 0, "submitproxy_auth_helper_requests_in_flight")
        self.assertValue(after, 5, "submitproxy_auth_helper_answer_seconds_count")
        self.assertGreaterEqual(after.value("submitproxy_auth_helper_workers",
                                            state="alive"), 1)

        # Nothing reloaded; the build and start are there.
        self.assertEqual(after.total("submitproxy_config_reloads_total"), 0)
        self.assertEqual(len(after.series("submitproxy_build_info")), 1)
        self.assertGreater(after.value("process_start_time_seconds"), 0)

    def test_the_mix_shows_its_tls_handshakes_and_failures(self):
        """The submitproxy_tls_* families, which the TLS session code's
        handshake callbacks fill (proxy/session.c)."""
        after, accepted, legacy, sink = self.scripted_mix()
        # TLS (the session's handshake callbacks): the handshakes by
        # listener and version, the failures by reason, the old client by
        # its best version, SNI for every handshake (the clients send
        # test.example), no client certificate.
        handshakes = {}
        for labels, value in after.series("submitproxy_tls_handshakes_total"):
            if value:
                key = (labels["listener"], labels["version"])
                handshakes[key] = handshakes.get(key, 0) + value
        self.assertEqual(handshakes, {("sub", "TLSv1.3"): 3,
                                      ("subs", "TLSv1.3"): 1,
                                      ("subs", "TLSv1.2"): 1},
                         "submitproxy_tls_handshakes_total by listener and "
                         "version")
        self.assertEqual(after.total("submitproxy_tls_handshakes_total",
                                     listener="subs", version="TLSv1.2",
                                     cipher=SERVER_CIPHER), 1,
                         "the TLS 1.2 handshake under its cipher")
        failures = {("subs", "no_shared_cipher"): 1,
                    ("subs", "not_tls"): 1}
        if legacy:
            failures[("subs", "protocol_version")] = 1
        self.assertTable(after, "submitproxy_tls_handshake_failures_total",
                         failures)
        self.assertTable(after, "submitproxy_tls_old_protocol_clients_total",
                         {("TLSv1", "subs"): 1} if legacy
                         else {})
        self.assertEqual(after.total("submitproxy_tls_sni_total"), 5,
                         "SNI counted once per completed handshake")
        self.assertEqual(after.total("submitproxy_tls_sni_total",
                                     sni="absent"), 0)
        self.assertEqual(
            after.total("submitproxy_tls_client_certificates_total"), 0)

    def test_endpoint_answers_only_get_and_head_on_two_paths(self):
        proxy = self.proxy()
        status, body, _ = metricsutil.get(proxy, "/nothing")
        self.assertEqual(status, 404, body)
        status, body, headers = metricsutil.get(proxy, "/metrics",
                                                method="POST")
        self.assertEqual(status, 405, body)
        self.assertIn("GET", headers.get("Allow", ""))
        status, body, _ = metricsutil.get(proxy, "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        status, body, headers = metricsutil.get(proxy, "/healthz")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Cache-Control"), "no-store")


class Refusals(MetricsTestCase):

    def test_refusals_and_throttles_are_counted_by_reason(self):
        proxy = self.proxy(
            limits={"greeting_delay": "500ms",
                    "max_connections_per_address": 1},
            auth={"max_failures": 2, "address_failure_limit": 2,
                  "failure_delay": "100ms"})

        # A second connection from the address while the first is open.
        first = proxy.connect("sub")
        proxy.session_id(first)
        second = proxy.connect("sub")
        code, _ = second.read_reply()
        self.assertEqual(code // 100, 4)
        second.read_until_closed()
        proxy.wait_log(r"\breason=max_connections_per_address\b")
        first.close()
        second.close()
        metricsutil.wait_value(proxy, 0, "submitproxy_sessions")

        # Talking before the greeting.
        early = proxy.connect("sub")
        early.send(b"EHLO " + CLIENT.encode() + b"\r\n")
        self.assertReply(early.read_reply(), 554)
        early.read_until_closed()
        early.close()
        # One connection at a time from here: each waits for the last to
        # be gone on the proxy's side too.
        metricsutil.wait_value(proxy, 0, "submitproxy_sessions")

        # max_failures: the second wrong password ends the session.
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, "wrong-1"), 535)
        self.assertReply(self.auth_plain(proxy, client, "wrong-2"), 421)
        client.read_until_closed()
        client.close()
        metricsutil.wait_value(proxy, 0, "submitproxy_sessions")

        # address_failure_limit: those two failures refuse the address,
        # even with the right password.
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 454, "4.7.0")
        self.quit(client)

        after = metricsutil.wait_value(proxy, 0, "submitproxy_sessions")
        self.assertTable(after, "submitproxy_connections_accepted_total",
                         {("sub",): 5, ("subs",): 0})
        self.assertTable(after, "submitproxy_connections_refused_total",
                         {("sub", "max_connections_per_address"): 1,
                          ("sub", "early_talker"): 1})
        self.assertTable(after, "submitproxy_auth_attempts_total", {
            ("PLAIN", "bad_credentials"): 1,
            ("PLAIN", "throttled_connection"): 1,
            ("PLAIN", "throttled_address"): 1,
        })
        self.assertTable(after, "submitproxy_auth_helper_requests_total",
                         {("answered",): 2})
        self.assertEqual(after.total("submitproxy_transactions_total"), 0)


# =============================================================== promtool

class Promtool(MetricsTestCase):

    def test_promtool_check_metrics_accepts_a_scrape(self):
        promtool = tlsutil.require_command("promtool")
        proxy = self.proxy(tls={"ciphers": SERVER_CIPHER})
        # Some traffic first, so that the labelled families have series.
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 235)
        self.send_message(client)
        self.quit(client)
        client = self.implicit_client(
            proxy, context(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertReply(self.auth_login(proxy, client, "wrong"), 535)
        self.quit(client)
        tlsutil.handshake_fails(proxy, "subs", context(
            maximum=ssl.TLSVersion.TLSv1_2, ciphers=OTHER_CIPHER))

        text = metricsutil.scrape(proxy).text
        result = subprocess.run([promtool, "check", "metrics"], input=text,
                                capture_output=True, text=True,
                                timeout=2 * WAIT)
        self.assertEqual(result.returncode, 0,
                         "promtool check metrics:\n%s%s\n---- the scrape "
                         "----\n%s" % (result.stdout, result.stderr, text))


# ============================================================= Prometheus

class Prometheus(MetricsTestCase):

    def start_prometheus(self, target):
        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not os.access(exe, os.X_OK):
            self.skipTest("prometheus is not installed (Debian package "
                          "prometheus)")
        directory = tempfile.mkdtemp(prefix="submitproxy-prometheus-")
        self.addCleanup(shutil.rmtree, directory, True)
        port = metricsutil.free_port()
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: submitproxy\n"
                    "    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        log_path = os.path.join(directory, "prometheus.log")
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [exe, "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(directory, "data"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=directory)

        def stop():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(WAIT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(WAIT)
        self.addCleanup(stop)
        self.prometheus_log = log_path
        return process, port

    def api(self, port, path, **params):
        url = "http://127.0.0.1:%d%s?%s" % (port, path,
                                            urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return json.loads(response.read().decode())

    def test_slow_a_real_prometheus_scrapes_and_answers_a_query(self):
        """Slow: Prometheus takes a few seconds to start and scrape."""
        proxy = self.proxy()
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 235)
        self.quit(client)
        target = proxy.sections["metrics"]["address"]
        process, port = self.start_prometheus(target)

        query = 'submitproxy_auth_attempts_total{mechanism="PLAIN",' \
                'result="ok"}'
        deadline = time.monotonic() + 30
        last = None
        while True:
            if process.poll() is not None:
                with open(self.prometheus_log, errors="replace") as f:
                    self.fail("prometheus exited with %s:\n%s"
                              % (process.returncode, f.read()))
            try:
                last = self.api(port, "/api/v1/query", query=query)
                result = last.get("data", {}).get("result", [])
                if result:
                    break
            except (OSError, ValueError) as e:
                last = e
            if time.monotonic() > deadline:
                try:
                    targets = self.api(port, "/api/v1/targets")
                except (OSError, ValueError) as e:
                    targets = e
                with open(self.prometheus_log, errors="replace") as f:
                    self.fail("no answer to %s within 30 s: %r\ntargets: "
                              "%r\n%s" % (query, last, targets, f.read()))
            time.sleep(0.5)
        self.assertEqual(len(result), 1, result)
        self.assertEqual(result[0]["metric"]["job"], "submitproxy")
        self.assertEqual(result[0]["metric"]["instance"], target)
        self.assertEqual(result[0]["value"][1], "1", result)
        targets = self.api(port, "/api/v1/targets")["data"]["activeTargets"]
        self.assertEqual([t["health"] for t in targets], ["up"], targets)


# ================================================================= health

def haproxy_stat(sock_path, backend, server):
    """One server's row of HAProxy's `show stat` ({column: value}), or
    None."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT)
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode("utf-8", "replace").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    return None


def example_httpchk():
    """The health-check lines of config/haproxy.cfg.example's first
    backend that has `option httpchk` (the check and what it expects), or
    None when the example has none yet."""
    path = os.path.join(harness.source_root(), "config",
                        "haproxy.cfg.example")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    for block in re.split(r"(?m)^(?=backend\s)", text):
        if not block.startswith("backend"):
            continue
        lines = [l.strip() for l in block.splitlines()]
        check = [l for l in lines if l.startswith("option httpchk") or
                 l.startswith("http-check ")]
        if check and check[0].startswith("option httpchk"):
            return check
    return None


class Health(MetricsTestCase):

    BACKEND = {"probe_interval": "1s", "retry_interval": "1s"}

    def healthz(self, proxy):
        status, body, _ = metricsutil.get(proxy, "/healthz")
        return status, body

    def wait_health(self, proxy, status, timeout=3 * WAIT):
        deadline = time.monotonic() + timeout
        while True:
            got = self.healthz(proxy)
            if got[0] == status:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("/healthz still %r after %.0f s, not %d"
                                     % (got, timeout, status))
            time.sleep(0.1)

    def test_healthz_is_503_while_the_backend_is_stopped(self):
        sink = SmtpSink(self)
        proxy = self.proxy(sink, backend_keys=self.BACKEND)
        status, body = self.healthz(proxy)
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("ok"), body)

        sink.stop()
        status, body = self.wait_health(proxy, 503)
        self.assertEqual(body, "no backend up (1 down)\n",
                         "one line saying why")
        self.assertValue(metricsutil.scrape(proxy), 0,
                         "submitproxy_backend_up", backend=sink.address)

        sink.start()
        status, body = self.wait_health(proxy, 200)
        self.assertEqual(body, "ok: 1 of 1 backends up\n")
        # And a login works again.
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 235)
        self.quit(client)
        self.assertValue(metricsutil.scrape(proxy), 1,
                         "submitproxy_backend_up", backend=sink.address)

    def test_healthz_is_503_after_three_helper_timeouts_in_a_row(self):
        password = pamutil.random_password()
        pam = pamutil.MatrixPam(self, {MetricsProxy.USER: password},
                                slow=2)
        proxy = self.proxy(pam=pam, auth={"timeout": "1s"})
        self.assertEqual(self.healthz(proxy)[0], 200)
        client = self.starttls_client(proxy)
        for n in range(3):
            self.assertReply(self.auth_plain(proxy, client), 454, "4.7.0")
            if n < 2:
                self.assertEqual(self.healthz(proxy)[0], 200,
                                 "%d timeouts in a row" % (n + 1))
        status, body = self.healthz(proxy)
        self.assertEqual(
            (status, body),
            (503, "auth helper not answering: 3 requests timed out in a "
                  "row\n"))
        scrape = metricsutil.scrape(proxy)
        self.assertTable(scrape, "submitproxy_auth_helper_requests_total",
                         {("timeout",): 3})
        self.assertTable(scrape, "submitproxy_auth_attempts_total",
                         {("PLAIN", "helper_unavailable"): 3})
        self.quit(client)

    def test_healthz_is_503_stopping_while_sessions_drain(self):
        proxy = self.proxy(server={"shutdown_timeout": "20s"})
        self.assertEqual(self.healthz(proxy)[0], 200)
        # A transaction in progress holds the drain open.
        client = self.starttls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 235)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        proxy.process.send_signal(signal.SIGTERM)
        proxy.wait_log(r"\bevent=stop\b")
        status, body = self.wait_health(proxy, 503)
        self.assertEqual(body, "stopping\n")
        self.assertTrue(proxy.running(), "still draining")
        # Whatever the drain answers the QUIT (a 421 for a session it
        # ends), the session ends and the process with it.
        client.command("QUIT")
        client.close()

    def test_haproxy_httpchk_marks_the_instance_down_and_up(self):
        haproxy = backends.require_sbin_command("haproxy", "haproxy")
        sink = SmtpSink(self)
        proxy = self.proxy(sink, backend_keys=self.BACKEND)
        directory = tempfile.mkdtemp(prefix="submitproxy-haproxy-")
        self.addCleanup(shutil.rmtree, directory, True)
        stats = os.path.join(directory, "haproxy.sock")
        # The example's own check lines: the test fails if the example
        # loses them.
        check = example_httpchk()
        self.assertIsNotNone(check, "config/haproxy.cfg.example has a "
                             "backend with option httpchk")
        self.assertTrue(any("/healthz" in l for l in check), check)
        front = metricsutil.free_port()
        cfg = os.path.join(directory, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n"
                    "    maxconn 100\n"
                    "    stats socket %s level admin\n"
                    "defaults\n"
                    "    mode tcp\n"
                    "    timeout connect 2s\n"
                    "    timeout client 30s\n"
                    "    timeout server 30s\n"
                    "    timeout check 2s\n"
                    "frontend submissions\n"
                    "    bind 127.0.0.1:%d\n"
                    "    default_backend submitproxy\n"
                    "backend submitproxy\n"
                    "%s"
                    "    server sp1 127.0.0.1:%d check port %d inter 500 "
                    "fall 2 rise 2\n"
                    % (stats, front,
                       "".join("    %s\n" % l for l in check),
                       proxy.port("subs"), proxy.metrics_port()))
        log_path = os.path.join(directory, "haproxy.log")
        log = open(log_path, "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen([haproxy, "-db", "-f", cfg],
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=log, cwd=directory)

        def stop():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(WAIT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(WAIT)
        self.addCleanup(stop)

        def state():
            """(status, check_status) of sp1: ("UP", "L7OK") after a
            200, ("DOWN", "L7STS") after enough 503s."""
            if process.poll() is not None:
                with open(log_path, errors="replace") as f:
                    raise AssertionError("haproxy exited with %s:\n%s"
                                         % (process.returncode, f.read()))
            try:
                row = haproxy_stat(stats, "submitproxy", "sp1")
            except OSError:
                return None     # the socket is not there yet
            return (row.get("status"), row.get("check_status")) \
                if row else None

        def wait_state(want):
            try:
                backends.wait_for(lambda: state() == want,
                                  "haproxy: sp1 %s" % (want,),
                                  timeout=3 * WAIT, interval=0.1)
            except AssertionError as e:
                with open(log_path, errors="replace") as f:
                    raise AssertionError("%s (last %r)\n%s"
                                         % (e, state(), f.read())) from None

        # A check answered 200 first (servers start UP before any check).
        wait_state(("UP", "L7OK"))
        sink.stop()
        wait_state(("DOWN", "L7STS"))
        self.assertEqual(self.healthz(proxy)[0], 503)
        sink.start()
        wait_state(("UP", "L7OK"))
        self.assertEqual(self.healthz(proxy)[0], 200)


# ================================================================== allow

class Allow(MetricsTestCase):

    def test_a_scrape_from_outside_allow_is_closed_without_a_reply(self):
        if not harness.can_bind("127.0.0.2"):
            self.skipTest("127.0.0.2 is not usable here")
        proxy = self.proxy(metrics={"allow": "127.0.0.2/32, ::1"})
        host, port = metricsutil.metrics_address(proxy)

        data = metricsutil.connect_refused_or_closed(host, port,
                                                     source="127.0.0.1")
        self.assertEqual(data, b"", "not a byte of HTTP")
        proxy.wait_log(r"\bevent=reject\b", r"\breason=metrics_not_allowed\b")
        lines = proxy.log_lines(r"\bevent=reject\b",
                                r"\breason=metrics_not_allowed\b")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("ip=127.0.0.1 ", lines[0] + " ")

        # From inside the list: served.
        scrape = metricsutil.scrape(proxy, source="127.0.0.2")
        self.assertIsNotNone(scrape.value("submitproxy_sessions"))
        self.assertEqual(len(proxy.log_lines(
            r"\breason=metrics_not_allowed\b")), 1)

    def test_a_reload_keeps_the_allow_list_it_started_with(self):
        if not harness.can_bind("127.0.0.2"):
            self.skipTest("127.0.0.2 is not usable here")
        proxy = self.proxy(metrics={"allow": "127.0.0.2/32"})
        sections = harness.merge_config(proxy.sections,
                                        {"metrics": {"allow": "127.0.0.1"}})
        with open(proxy.config_path, "w") as f:
            f.write(harness.render_config(sections))
        proxy.reload("ok")
        proxy.wait_log(r"\bevent=reload_ignored\b", r"\bsection=metrics\b")
        host, port = metricsutil.metrics_address(proxy)
        self.assertEqual(metricsutil.connect_refused_or_closed(
            host, port, source="127.0.0.1"), b"")
        metricsutil.scrape(proxy, source="127.0.0.2")


# ================================================================= reload

class Reload(MetricsTestCase):

    def test_reloads_are_counted_by_result(self):
        proxy = self.proxy()
        start = metricsutil.scrape(proxy)
        self.assertValue(start, 0, "submitproxy_config_reloads_total",
                         result="ok")
        self.assertValue(start, 0, "submitproxy_config_reloads_total",
                         result="failed")
        started = start.value("process_start_time_seconds")
        self.assertValue(
            start, started,
            "submitproxy_config_last_reload_success_timestamp_seconds")

        # Whole seconds: make the reload's time differ from the start's.
        time.sleep(1.1)
        proxy.reload("ok")
        after_ok = metricsutil.scrape(proxy)
        self.assertValue(after_ok, 1, "submitproxy_config_reloads_total",
                         result="ok")
        self.assertValue(after_ok, 0, "submitproxy_config_reloads_total",
                         result="failed")
        last = after_ok.value(
            "submitproxy_config_last_reload_success_timestamp_seconds")
        self.assertGreater(last, started)

        broken = harness.merge_config(proxy.sections,
                                      {"server": {"colour": "blue"}})
        with open(proxy.config_path, "w") as f:
            f.write(harness.render_config(broken))
        proxy.reload("failed")
        after_failed = metricsutil.scrape(proxy)
        self.assertValue(after_failed, 1, "submitproxy_config_reloads_total",
                         result="ok")
        self.assertValue(after_failed, 1, "submitproxy_config_reloads_total",
                         result="failed")
        self.assertValue(
            after_failed, last,
            "submitproxy_config_last_reload_success_timestamp_seconds")


# ============================================================ scrape storm

class Storm(MetricsTestCase):

    SESSIONS = 100
    THREADS = 4
    SCRAPES_PER_SECOND = 50
    STORM_SECONDS = 5

    def test_a_scrape_storm_while_sessions_run_fails_nothing(self):
        proxy = self.proxy(auth={"failure_delay": "100ms"})
        done = threading.Event()
        scrape_results = []     # (status or exception, parsed ok)
        session_errors = []
        lock = threading.Lock()

        def storm():
            interval = 1.0 / self.SCRAPES_PER_SECOND
            start = time.monotonic()
            # At least STORM_SECONDS, and on until the sessions are done;
            # never past 120 s.
            while time.monotonic() - start < 120:
                if done.is_set() and \
                        time.monotonic() - start >= self.STORM_SECONDS:
                    break
                t0 = time.monotonic()
                try:
                    status, body, _ = metricsutil.get(proxy, "/metrics")
                    try:
                        metricsutil.parse(body)
                        parsed = True
                    except metricsutil.ExpositionError as e:
                        parsed = e
                    scrape_results.append((status, parsed))
                except OSError as e:
                    scrape_results.append((e, False))
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))

        counter = iter(range(self.SESSIONS))

        def sessions():
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                try:
                    self.smtplib_session(proxy, proxy.password)
                except Exception as e:  # noqa: BLE001 - reported below
                    session_errors.append((n, repr(e)))

        scraper = threading.Thread(target=storm, daemon=True)
        scraper.start()
        workers = [threading.Thread(target=sessions, daemon=True)
                   for _ in range(self.THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
        done.set()
        scraper.join(180)
        self.assertFalse(any(w.is_alive() for w in workers),
                         "sessions still running after 300 s")
        self.assertFalse(scraper.is_alive(), "scraper still running")

        self.assertEqual(session_errors, [], "every session succeeds")
        bad = [r for r in scrape_results if r != (200, True)]
        self.assertEqual(bad, [], "every scrape a 200 that parses")
        self.assertGreaterEqual(
            len(scrape_results),
            self.STORM_SECONDS * self.SCRAPES_PER_SECOND // 2,
            "the storm scraped")

        final = metricsutil.wait_value(proxy, 0, "submitproxy_sessions")
        self.assertValue(final, self.SESSIONS,
                         "submitproxy_auth_attempts_total",
                         mechanism="PLAIN", result="ok")
        self.assertValue(final, self.SESSIONS,
                         "submitproxy_transactions_total", reply="2xx")
        self.assertValue(final, self.SESSIONS,
                         "submitproxy_connections_accepted_total",
                         listener="sub")


if __name__ == "__main__":
    unittest.main()
