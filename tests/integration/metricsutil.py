"""The [metrics] endpoint as a scraper sees it, for submitproxy's
integration tests and benchmarks.

    proxy = metricsutil.MetricsProxy(self, sink)       # sub, subs, [metrics]
    scrape = metricsutil.scrape(proxy)                 # a parsed Exposition
    scrape.value("submitproxy_auth_attempts_total",
                 mechanism="PLAIN", result="ok")       # 1.0
    status, body = metricsutil.get(proxy, "/healthz")  # (200, "ok: ...")

parse() reads the Prometheus text format (version 0.0.4) strictly:
# HELP and # TYPE once per family and before its samples, label values
with only the \\\\, \\" and \\n escapes, every line a sample or one of
those comments; anything else raises ExpositionError.

MetricsProxy is a tlsutil.TlsProxy with a STARTTLS listener "sub", an
implicit-TLS listener "subs", PAM users through pam_wrapper (as
backends.RelayProxy), [backend] at an SmtpSink and [metrics] address on
a free loopback port; it waits until the endpoint is listening.

Loopback only, every wait bounded; Python standard library only.
"""

import http.client
import math
import os
import re
import socket
import time

import backends
import harness
import tlsutil
from harness import WAIT


class ExpositionError(AssertionError):
    pass


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"' % r"[a-zA-Z_][a-zA-Z0-9_]*")
_SAMPLE = re.compile(r"(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$" % _NAME)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value):
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], value)


def _parse_labels(text, line):
    labels = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ExpositionError("bad labels at %r in %r" % (text[pos:],
                                                              line))
        name = m.group(1)
        if name in labels:
            raise ExpositionError("label %s twice in %r" % (name, line))
        labels[name] = _unescape(m.group(2))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ExpositionError("junk after a label in %r" % line)
            pos += 1
    return labels


class Exposition:
    """A parsed scrape: .families {name: {"type", "help"}} and .samples
    [(name, {label: value}, float)] in text order."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        if text and not text.endswith("\n"):
            raise ExpositionError("the text does not end with a newline")
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                parts = line.split(" ", 3)
                if len(parts) < 4 or not re.fullmatch(_NAME, parts[2]):
                    raise ExpositionError("bad comment %r" % line)
                kind, name, rest = parts[1], parts[2], parts[3]
                family = self.families.setdefault(name, {})
                key = kind.lower()
                if key in family:
                    raise ExpositionError("second # %s for %s" % (kind, name))
                if family.get("samples"):
                    raise ExpositionError("# %s of %s after its samples"
                                          % (kind, name))
                if kind == "TYPE" and rest not in (
                        "counter", "gauge", "histogram", "summary",
                        "untyped"):
                    raise ExpositionError("bad type in %r" % line)
                family[key] = rest
                continue
            if line.startswith("#") or not line:
                raise ExpositionError("unexpected line %r" % line)
            m = _SAMPLE.match(line)
            if not m:
                raise ExpositionError("bad sample line %r" % line)
            name, labels_text, value = m.group(1), m.group(2), m.group(3)
            labels = _parse_labels(labels_text or "", line)
            try:
                number = float(value)
            except ValueError:
                raise ExpositionError("bad value in %r" % line) from None
            family = self._family_of(name)
            if family is None:
                raise ExpositionError("sample %r before its # TYPE" % line)
            if "help" not in self.families[family]:
                raise ExpositionError("sample %r before its # HELP" % line)
            self.families[family]["samples"] = True
            self.samples.append((name, labels, number))
        self._check_histograms()

    def _family_of(self, name):
        if "type" in self.families.get(name, {}):
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                base = name[:-len(suffix)]
                if self.families.get(base, {}).get("type") == "histogram":
                    return base
        return None

    def _check_histograms(self):
        """Buckets cumulative in order of le, +Inf last and equal to
        _count, a _sum beside: per series of every histogram."""
        for family, info in self.families.items():
            if info.get("type") != "histogram":
                continue
            series = {}
            for name, labels, value in self.samples:
                if name == family + "_bucket":
                    rest = tuple(sorted((k, v) for k, v in labels.items()
                                        if k != "le"))
                    series.setdefault(rest, []).append(
                        (float(labels["le"]), value))
            for rest, buckets in series.items():
                les = [le for le, _ in buckets]
                counts = [n for _, n in buckets]
                if les != sorted(les) or len(set(les)) != len(les) or \
                        not math.isinf(les[-1]):
                    raise ExpositionError("%s%r: le not ascending to +Inf: "
                                          "%r" % (family, rest, les))
                if counts != sorted(counts):
                    raise ExpositionError("%s%r: buckets not cumulative: %r"
                                          % (family, rest, counts))
                labels = dict(rest)
                if self.value(family + "_count", **labels) != counts[-1]:
                    raise ExpositionError("%s%r: _count is not the +Inf "
                                          "bucket" % (family, rest))
                if self.value(family + "_sum", **labels) is None:
                    raise ExpositionError("%s%r: no _sum" % (family, rest))

    def series(self, name, **labels):
        """[(labels, value)] of name whose labels include labels."""
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x)
                                     for k, x in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample name{labels} with exactly those
        labels, or None."""
        found = [v for n, l, v in self.samples
                 if n == name and l == {k: str(x) for k, x in labels.items()}]
        if len(found) > 1:
            raise ExpositionError("%s%r twice" % (name, labels))
        return found[0] if found else None

    def total(self, name, **labels):
        """The sum of the samples of name whose labels include labels."""
        return sum(v for _, v in self.series(name, **labels))


def parse(text):
    return Exposition(text)


# ------------------------------------------------------------------- HTTP

def metrics_address(proxy):
    return harness.parse_address(proxy.sections["metrics"]["address"])


def get(proxy, path, source=None, method="GET", timeout=WAIT):
    """(status, body text, headers) of one request to the proxy's
    [metrics] address, from source (an address to bind) if given."""
    host, port = metrics_address(proxy)
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout,
        source_address=(source, 0) if source else None)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, body, dict(response.getheaders())
    finally:
        conn.close()


def scrape(proxy, source=None):
    """GET /metrics: asserts 200 and the text format's content type, and
    returns the parsed Exposition."""
    status, body, headers = get(proxy, "/metrics", source=source)
    if status != 200:
        raise AssertionError("GET /metrics: %d %r" % (status, body[:200]))
    content_type = headers.get("Content-Type", "")
    if not content_type.startswith("text/plain; version=0.0.4"):
        raise AssertionError("GET /metrics: Content-Type %r" % content_type)
    return parse(body)


def wait_value(proxy, want, name, timeout=WAIT, **labels):
    """Scrapes until name{labels} == want (closing a session is
    asynchronous: its gauge and histogram follow the client's close);
    returns the last Exposition."""
    deadline = time.monotonic() + timeout
    while True:
        exposition = scrape(proxy)
        got = exposition.value(name, **labels)
        if got == want:
            return exposition
        if time.monotonic() > deadline:
            raise AssertionError("%s%r is %r, not %r, after %.0f s"
                                 % (name, labels, got, want, timeout))
        time.sleep(0.05)


# ------------------------------------------------------------------ Proxy

class MetricsProxy(tlsutil.TlsProxy):
    """A submitproxy with a STARTTLS listener "sub", an implicit-TLS
    listener "subs", PAM users (default {"alice": password}; the password
    in .password; or pam, a pamutil.MatrixPam, and its users), its backend
    at backend (an SmtpSink or an address) and [metrics] address =
    127.0.0.1:{port} plus metrics's keys.

    tls, limits, auth, backend_keys, server: keys for those sections."""

    USER = "alice"

    def __init__(self, test, backend, users=None, metrics=None, tls=None,
                 limits=None, auth=None, backend_keys=None, server=None,
                 pam=None, start=True):
        if pam is not None:
            users = pam.users
        elif users is None:
            users = {self.USER: "pw-" + os.urandom(8).hex()}
        self.users = dict(users)
        self.password = self.users.get(self.USER)
        self.pam = pam or backends.matrix_pam(test, self.users)
        address = backend if isinstance(backend, str) else backend.address
        backend_section = {"address": address, "xclient": "auto",
                           "connect_timeout": "3s", "timeout": "15s"}
        backend_section.update(backend_keys or {})
        auth_section = {"pam_service": self.pam.service,
                        "mechanisms": "PLAIN LOGIN",
                        "failure_delay": "100ms"}
        auth_section.update(auth or {})
        metrics_section = {"address": "127.0.0.1:{port}"}
        metrics_section.update(metrics or {})
        server_section = dict(harness.DEFAULT_CONFIG["server"])
        server_section.update(server or {})
        extra = {"server": server_section, "auth": auth_section,
                 "backend": backend_section, "metrics": metrics_section}
        listeners = {"plain": None,
                     "sub": {"mode": "starttls", "require_tls": "yes"},
                     "subs": {"mode": "implicit-tls"}}
        super().__init__(test, tlsutil.shared_pki(), start=start,
                         listeners=listeners, limits=limits, tls=tls,
                         extra=extra)

    def start(self):
        with backends.environment(self.pam.environment()):
            super().start()
        # The endpoint starts after the privilege drop, after the SMTP
        # listeners: wait for its line, then for the socket.
        self.wait_log(r"\bevent=listen\b", r"\blistener=metrics\b")
        host, port = metrics_address(self)
        backends.wait_for(lambda: harness._proc_listening(host, port)
                          is not False, "metrics endpoint listening")

    def stop(self):
        try:
            super().stop()
        finally:
            log = self.log()
            for user, password in self.users.items():
                for secret in (password, backends.plain_blob(user, password)):
                    if secret in log:
                        raise AssertionError("a password is in the log")

    @property
    def network_pid(self):
        """The network process: the pid= of the "event=start ... pid=N"
        line (tlsutil's property takes the first event=start line, which
        at log_level debug is one without a pid)."""
        line = self.wait_log(r"\bevent=start\b", r"\bpid=\d+")
        return int(harness.parse_log_fields(line)["pid"])

    def metrics_port(self):
        return metrics_address(self)[1]


def free_port(host="127.0.0.1"):
    return harness.free_ports([host])[0]


def connect_refused_or_closed(host, port, source=None, timeout=WAIT):
    """Connects to host:port (from source), sends a GET and returns
    everything the server sent before closing (b"" for a close without a
    byte); a reset counts as a close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
        data = b""
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            raise AssertionError("the connection stayed open %.0f s; got %r"
                                 % (timeout, data)) from None
        return data
