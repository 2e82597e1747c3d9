#!/usr/bin/env python3
"""CPU and memory of submitproxy's relay, side by side with nginx's mail
proxy, against the same smtp-sink (DESIGN.md "Tests and measurements").

A benchmark, not a test: it prints figures and exits 0 unless something
stops it from measuring.  Per proxy, in one run:

  sessions   N full sessions (connect, STARTTLS handshake, EHLO, AUTH
             PLAIN, one small message, QUIT) from T client threads:
             CPU ms per session; --latency sessions from one client,
             one after the other: wall-clock ms per session; then
             --implicit sessions on the implicit-TLS port;
  large      M messages of S MB, each in its own session: CPU ms per MB
             relayed;
  idle       K connections through TLS and AUTH, left idle: VmRSS growth
             per connection;
  syscalls   after those, with every process of the server under
             `strace -c -f`, L full sessions from one client: system
             calls per session (total and by name).  Never at the same
             time as a CPU phase (strace slows a server down many times).

CPU is utime + stime from /proc/PID/stat, read before and after each
phase; "whole service" is the sum over every process of the server.
Every server is up at once and the CPU phases run in --rounds rounds
(default 3): in each, every server gets its share of the sessions and
then of the large messages, one server at a time, the order turning
from round to round (the server measured first in a run pays more:
cold caches, the clock ramping up), and each server's CPU is summed
over the rounds.  The idle and system call phases follow, one server
at a time.

Before the servers, the floor on this machine: tls_floor (built next to
the binary, in BUILD/tests/bench/, or --tls-floor) times OpenSSL's own
server-side TLS 1.3 handshake with the certificate the servers serve,
and `openssl speed -evp aes-128-gcm` the bulk cipher; every CPU figure
is then printed as a multiple of those too.  For submitproxy the network process (its pid is in the
"event=start ... pid=N" log line) and the auth side (the process started,
which runs PAM, and its PAM worker children) are reported separately; for
nginx the mail worker and a second nginx that answers auth_http (always
"Auth-Status: OK") are.  nginx checks no password at all, submitproxy runs
PAM (pam_wrapper + pam_matrix): the auth columns are not like for like.

    SUBMITPROXY=build/proxy/submitproxy python3 tests/bench/bench_relay.py
        [--sessions 300] [--latency 100] [--implicit 300] [--threads 4]
        [--large 10]
        [--large-mb 10]
        [--idle 500] [--serial 200] [--no-nginx] [--max-seconds 900]
        [--floor-handshakes 2000] [--tls-floor PATH] [--no-floor]
        [--rounds 3] [--baseline OTHER-BUILD/proxy/submitproxy]

--baseline measures another build the same way in the same run (e.g. the
one before a change), so that a regression shows as a ratio, not as a
figure from another day.

nginx is used when /usr/sbin/nginx and its mail module are installed
(Debian: apt-get install nginx-light libnginx-mod-mail); otherwise only
submitproxy is measured.  Loopback only; every phase is bounded in time
and count; Python standard library plus the openssl command, smtp-sink
and pam_wrapper (and strace, for the system calls: --serial 0 or no
strace leaves them out).
"""

import argparse
import os
import re
import resource
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import backends  # noqa: E402
import harness  # noqa: E402
import tlsutil  # noqa: E402

USER = "alice"
SMALL = (b"From: alice@example.com\r\nTo: bob@example.net\r\n"
         b"Subject: bench\r\n\r\n" + b"A small message body line.\r\n" * 30)
NGINX = "/usr/sbin/nginx"
NGINX_MAIL_MODULES = ["/usr/lib/nginx/modules/ngx_mail_module.so",
                      "/usr/lib64/nginx/modules/ngx_mail_module.so"]
STRACE = shutil.which("strace")
# How the system call table lists names (top N by count, per server).
SYSCALL_TOP = 8


class Cleanups:
    """What harness.Proxy and backends expect of a TestCase."""

    def __init__(self):
        self._cleanups = []

    def addCleanup(self, function, *args, **kw):
        self._cleanups.append((function, args, kw))

    def run(self):
        while self._cleanups:
            function, args, kw = self._cleanups.pop()
            try:
                function(*args, **kw)
            except Exception as e:  # report, go on cleaning
                sys.stderr.write("cleanup %s: %s\n"
                                 % (getattr(function, "__name__", function),
                                    e))


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise SystemExit("bench_relay: out of time during %s" % what)


def client_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------ the targets

class Target:
    """A proxy under measurement: its STARTTLS port, password, and the
    process groups whose CPU and memory are read."""

    name = "?"
    port = None
    password = None

    def groups(self):
        """{"network": [pids], "auth": [pids]}"""
        raise NotImplementedError

    def cpu(self):
        out = {}
        for group, pids in self.groups().items():
            out[group] = sum(backends.proc_cpu_ms(p) or 0.0 for p in pids)
        return out

    def rss(self, group="network"):
        return sum(backends.proc_rss_kb(p) or 0 for p in
                   self.groups()[group])

    def open_fds(self):
        """File descriptors open in the network processes (connections
        still held: client, backend and auth sockets)."""
        count = 0
        for pid in self.groups()["network"]:
            try:
                count += len(os.listdir("/proc/%d/fd" % pid))
            except OSError:
                pass
        return count


class SubmitproxyTarget(Target):
    """submitproxy (the binary in $SUBMITPROXY); server: [server] keys;
    cert: a (certificate, key) pair to serve instead of the test PKI's."""

    name = "submitproxy"

    def __init__(self, scope, sink, server=None, cert=None):
        keys = {"log_level": "info"}
        keys.update(server or {})
        self.proxy = backends.RelayProxy(
            scope, sink,
            server=keys,
            limits={"max_connections": "5000",
                    "max_connections_per_address": "5000",
                    "max_message_size": "50M",
                    "idle_timeout": "600s",
                    # Off, as nginx has none: the bench sends thousands
                    # of messages as one login (issue 12's defaults
                    # would refuse the 201st within the hour).
                    "user_messages_per_hour": "0",
                    "user_recipients_per_hour": "0",
                    "user_recipients_per_day": "0"},
            backend_keys={"timeout": "120s"},
            auth={"failure_delay": "100ms", "helper_workers": 4},
            start=False)
        if cert is not None:
            self.proxy.sections["tls"].update(
                {"certificate": cert[0], "key": cert[1]})
            with open(self.proxy.config_path, "w") as f:
                f.write(harness.render_config(self.proxy.sections))
        self.proxy.start()
        # Its own: a baseline is measured while $SUBMITPROXY names the
        # build under test again.
        self.binary = harness.binary()
        self.port = self.proxy.port("sub")
        self.implicit_port = self.proxy.port("subs")
        self.password = self.proxy.password
        self.network = self.proxy.network_pid()

    def groups(self):
        return {"network": [self.network],
                "auth": self.proxy.helper_pids(self.binary)}


def _children(pid):
    return backends._children(pid)


class NginxTarget(Target):
    """nginx's mail proxy (workers worker processes; a STARTTLS and an
    implicit-TLS server, smtp_auth plain login, XCLIENT at its default,
    on, as submitproxy's is: smtp-sink offers it, and both send it) with
    auth_http answered by a second nginx."""

    name = "nginx-mail"

    def __init__(self, scope, sink, pki, workers=1):
        module = next((m for m in NGINX_MAIL_MODULES if os.path.exists(m)),
                      None)
        if not os.access(NGINX, os.X_OK) or module is None:
            raise RuntimeError("nginx or its mail module is not installed "
                               "(apt-get install nginx-light "
                               "libnginx-mod-mail)")
        self.dir = tempfile.mkdtemp(prefix="bench-nginx-")
        os.chmod(self.dir, 0o755)
        scope.addCleanup(shutil.rmtree, self.dir, True)
        self.port, self.implicit_port, auth_port = harness.free_ports(
            ["127.0.0.1", "127.0.0.1", "127.0.0.1"])
        sink_host, sink_port = harness.parse_address(sink.address)
        self.password = "any-password"
        common = ("worker_processes {workers};\n"
                  "daemon off;\n"
                  "worker_rlimit_nofile 20000;\n"
                  "error_log %s/{name}-error.log warn;\n"
                  "pid %s/{name}.pid;\n"
                  "events {{ worker_connections 8000; }}\n"
                  % (self.dir, self.dir))
        auth_conf = common.format(name="auth", workers=1) + """
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    server {
        listen 127.0.0.1:%(auth_port)d;
        location /auth {
            add_header Auth-Status OK;
            add_header Auth-Server %(sink_host)s;
            add_header Auth-Port %(sink_port)d;
            return 204;
        }
    }
}
""" % {"dir": self.dir, "auth_port": auth_port, "sink_host": sink_host,
       "sink_port": sink_port}
        mail_conf = ("load_module %s;\n" % module) + \
            common.format(name="mail", workers=workers) + """
mail {
    server_name %(hostname)s;
    auth_http 127.0.0.1:%(auth_port)d/auth;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.2 TLSv1.3;
    smtp_capabilities "SIZE 52428800" 8BITMIME PIPELINING ENHANCEDSTATUSCODES;
    server {
        listen 127.0.0.1:%(port)d;
        protocol smtp;
        starttls only;
        smtp_auth plain login;
        proxy_timeout 600s;
    }
    server {
        listen 127.0.0.1:%(implicit_port)d ssl;
        protocol smtp;
        smtp_auth plain login;
        proxy_timeout 600s;
    }
}
""" % {"hostname": harness.HOSTNAME, "auth_port": auth_port,
       "cert": pki.server[0], "key": pki.server[1], "port": self.port,
       "implicit_port": self.implicit_port}
        self.processes = {}
        for name, text in (("auth", auth_conf), ("mail", mail_conf)):
            path = os.path.join(self.dir, name + ".conf")
            with open(path, "w") as f:
                f.write(text)
            log = open(os.path.join(self.dir, name + ".out"), "wb")
            scope.addCleanup(log.close)
            process = subprocess.Popen(
                [NGINX, "-p", self.dir, "-c", path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            scope.addCleanup(self._stop, process)
            self.processes[name] = process
        backends._wait_listening(auth_port, self.processes["auth"],
                                 "nginx auth_http")
        backends._wait_listening(self.port, self.processes["mail"],
                                 "nginx mail")
        backends.wait_for(lambda: _children(self.processes["mail"].pid),
                          "nginx mail worker")

    @staticmethod
    def _stop(process):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def groups(self):
        mail = self.processes["mail"].pid
        auth = self.processes["auth"].pid
        return {"network": sorted(_children(mail)),
                "master": [mail],
                "auth": [auth] + sorted(_children(auth))}


# ------------------------------------------------------------ strace -c

def parse_strace_summary(text):
    """strace -c's table: ({syscall: (calls, errors)}, total calls)."""
    counts, total = {}, None
    for line in text.splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(fields) < 5 or not re.match(r"^[\d.]+$", fields[0]):
            continue
        calls = int(fields[3])
        errors = int(fields[4]) if len(fields) == 6 else 0
        if fields[-1] == "total":
            total = calls
        else:
            counts[fields[-1]] = (calls, errors)
    if total is None and counts:
        raise RuntimeError("strace -c summary without a total line")
    return counts, total or 0


class Strace:
    """`strace -c -f -p PID ...` over a set of processes (-f: every
    thread of each, and what they fork while traced) until stop()."""

    def __init__(self, scope, pids, directory, label):
        if not pids:
            raise RuntimeError("strace %s: no process to attach" % label)
        self.pids = list(pids)
        self.label = label
        self.out_path = os.path.join(directory, "strace-%s.out" % label)
        self.err_path = os.path.join(directory, "strace-%s.err" % label)
        args = [STRACE, "-c", "-f", "-o", self.out_path]
        for pid in self.pids:
            args += ["-p", str(pid)]
        # stderr to a file, not a pipe: strace reports every process it
        # follows there, and a full pipe would stop it (and the tracees).
        self.err = open(self.err_path, "wb")
        scope.addCleanup(self.err.close)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL,
                                        stderr=self.err)
        scope.addCleanup(self._kill)

    def _stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def wait_attached(self, timeout):
        """Until strace has said "Process PID attached" for every PID
        (with -f it says so once it has seized all of PID's threads)."""
        def attached():
            if self.process.poll() is not None:
                raise RuntimeError("strace %s exited with %s: %s"
                                   % (self.label, self.process.returncode,
                                      self._stderr().strip()))
            text = self._stderr()
            return all(re.search(r"\bProcess %d attached" % pid, text)
                       for pid in self.pids)
        backends.wait_for(attached, "strace %s attached to %s"
                          % (self.label, self.pids), timeout=timeout)

    def stop(self, timeout=20):
        """SIGINT (strace detaches and writes its summary), a bounded
        wait; returns parse_strace_summary() of the summary."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise RuntimeError("strace %s did not stop within %d s of "
                               "SIGINT" % (self.label, timeout))
        with open(self.out_path, errors="replace") as f:
            return parse_strace_summary(f.read())

    def _kill(self):
        # The kernel detaches the tracees of a tracer that dies.
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_settled(target, fds, timeout):
    """Until the network processes hold no more descriptors than fds
    (every connection of the phase before closed on the server's side
    too), or timeout seconds; returns whether they did."""
    end = time.monotonic() + timeout
    while target.open_fds() > fds:
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def count_syscalls(target, args, deadline, scope, fds):
    """args.serial sessions from one client with every process of target
    under strace -c, one strace per group of target.groups(); fds: what
    the network processes hold when idle.  Returns the result keys."""
    result = {}
    directory = tempfile.mkdtemp(prefix="bench-strace-")
    scope.addCleanup(shutil.rmtree, directory, True)
    # What the idle phase left (closes still being handled) is not the
    # serial phase's.
    if not wait_settled(target, fds, 10):
        result["syscall_notes"] = ["connections of the idle phase were "
                                   "still open when strace attached"]
    phase = Deadline(min(deadline.left(), args.serial_seconds))
    tracers = {}
    try:
        for group, pids in target.groups().items():
            tracers[group] = Strace(scope, pids, directory,
                                    "%s-%s" % (target.name, group))
        for tracer in tracers.values():
            tracer.wait_attached(max(min(phase.left(), 30), 1))
        done, errors, seconds = run_sessions(target, args.serial, 1, phase)
        # The last session's end on the server's side (its close, the
        # backend's QUIT) is the phase's too.
        wait_settled(target, fds, 5)
    finally:
        counts, failures = {}, []
        for group, tracer in tracers.items():
            try:
                counts[group] = tracer.stop()
            except (RuntimeError, OSError, ValueError) as e:
                failures.append(str(e))
    if failures:
        raise RuntimeError("; ".join(failures))
    result["serial_sessions"] = done
    result["serial_errors"] = errors
    result["serial_seconds"] = seconds
    per = max(done, 1)
    result["syscalls"] = {group: ({name: (calls / per, errs / per)
                                   for name, (calls, errs) in table.items()},
                                  total / per)
                          for group, (table, total) in counts.items()}
    return result


# ------------------------------------------------------------ the clients

def _logged_in_transaction(smtp, password, body):
    """On a session past TLS: EHLO, AUTH PLAIN, one message, QUIT; closes
    the connection whatever happens."""
    try:
        smtp.ehlo()
        smtp.login(USER, password)
        refused = smtp.sendmail("alice@example.com", ["bob@example.net"],
                                body)
        if refused:
            raise RuntimeError("refused: %r" % refused)
        smtp.quit()
    finally:
        smtp.close()


def session(port, password, body=SMALL, context=None):
    """One full session: STARTTLS, AUTH PLAIN, one message, QUIT."""
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example",
                        timeout=60)
    try:
        smtp.ehlo()
        smtp.starttls(context=context or client_context())
    except BaseException:
        smtp.close()
        raise
    _logged_in_transaction(smtp, password, body)


def implicit_session(port, password, body=SMALL, context=None):
    """One full session on the implicit-TLS port: TLS, EHLO, AUTH PLAIN,
    one message, QUIT."""
    smtp = smtplib.SMTP_SSL("127.0.0.1", port,
                            local_hostname="bench.example", timeout=60,
                            context=context or client_context())
    _logged_in_transaction(smtp, password, body)


def run_implicit_sessions(target, count, threads, deadline):
    return run_sessions(target, count, threads, deadline,
                        one=lambda port, password, context:
                        implicit_session(target.implicit_port, password,
                                         context=context))


def run_sessions(target, count, threads, deadline, one=None):
    """count sessions from threads threads; returns (done, errors, s).
    one(port, password, context=...) is a session (default: session)."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "errors": []}
    context = client_context()

    def worker():
        while deadline.left() > 0:
            with lock:
                if state["next"] >= count:
                    return
                state["next"] += 1
            try:
                (one or session)(target.port, target.password,
                                 context=context)
                with lock:
                    state["done"] += 1
            except Exception as e:
                with lock:
                    state["errors"].append(repr(e))
    started = time.monotonic()
    pool = [threading.Thread(target=worker, daemon=True)
            for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max(deadline.left(), 0.1))
    return state["done"], state["errors"], time.monotonic() - started


def large_body(megabytes):
    line = b"%s\r\n" % (b"L" * 76)
    count = megabytes * 1024 * 1024 // len(line)
    return b"Subject: large\r\n\r\n" + line * count


def open_idle(target, count, threads, deadline):
    """count connections through STARTTLS and AUTH, left open; returns
    (list of smtplib.SMTP, errors)."""
    lock = threading.Lock()
    opened, errors = [], []
    state = {"next": 0}
    context = client_context()

    def worker():
        while deadline.left() > 0:
            with lock:
                if state["next"] >= count:
                    return
                state["next"] += 1
            try:
                smtp = smtplib.SMTP("127.0.0.1", target.port,
                                    local_hostname="bench.example",
                                    timeout=60)
                smtp.ehlo()
                smtp.starttls(context=context)
                smtp.ehlo()
                smtp.login(USER, target.password)
                with lock:
                    opened.append(smtp)
            except Exception as e:
                with lock:
                    errors.append(repr(e))
    pool = [threading.Thread(target=worker, daemon=True)
            for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max(deadline.left(), 0.1))
    return opened, errors


# ------------------------------------------------------------ the floor

def tls_floor_binary(args):
    """--tls-floor, or tests/bench/tls_floor in the build directory of
    $SUBMITPROXY (BUILD/proxy/submitproxy)."""
    if args.tls_floor:
        return os.path.abspath(args.tls_floor)
    build = os.path.dirname(os.path.dirname(os.path.realpath(
        harness.binary())))
    return os.path.join(build, "tests", "bench", "tls_floor")


def run_tls_floor(binary, options, timeout):
    """tls_floor's output: {"line": its first line, name: float, ...}."""
    done = subprocess.run([binary] + options, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True)
    if done.returncode != 0:
        raise RuntimeError("%s exited with %d: %s"
                           % (binary, done.returncode, done.stderr.strip()))
    lines = done.stdout.splitlines()
    out = {"line": lines[0] if lines else ""}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == 2:
            out[fields[0]] = float(fields[1])
    if "server_handshake_cpu_ms" not in out:
        raise RuntimeError("%s: no server_handshake_cpu_ms in %r"
                           % (binary, done.stdout))
    return out


def openssl_speed_aes(timeout):
    """`openssl speed -evp aes-128-gcm -bytes 16384`: the 16384-byte
    column in 1000s of bytes per second."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("no openssl command")
    done = subprocess.run([openssl, "speed", "-evp", "aes-128-gcm",
                           "-bytes", "16384", "-seconds", "2"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, text=True)
    if done.returncode != 0:
        raise RuntimeError("openssl speed exited with %d: %s"
                           % (done.returncode, done.stderr.strip()))
    # "type             16384 bytes" then "AES-128-GCM   3905486.85k"
    sizes = values = None
    for line in done.stdout.splitlines():
        if line.startswith("type "):
            sizes = re.findall(r"(\d+) bytes", line)
        elif sizes is not None and line.upper().startswith("AES-128-GCM"):
            values = re.findall(r"([\d.]+)k\b", line)
    if not sizes or not values or len(sizes) != len(values) or \
            "16384" not in sizes:
        raise RuntimeError("openssl speed: no 16384-byte figure in %r"
                           % done.stdout)
    return float(values[sizes.index("16384")])


def measure_floor(args, pki):
    """{"handshake": tls_floor's output with the bench's certificate,
    "handshake_rsa": the same with a generated RSA-2048 key,
    "aes_ms_mb": CPU ms per MB (2^20 bytes) of AES-128-GCM,
    "aes_mb_s": the same in MB/s, "notes": [...]}: what can be had."""
    floor = {"notes": []}
    binary = tls_floor_binary(args)
    if not os.access(binary, os.X_OK):
        floor["notes"].append("handshake not measured: no %s (build it: "
                              "ninja -C BUILD tests/bench/tls_floor, or "
                              "pass --tls-floor)" % binary)
    else:
        count = str(args.floor_handshakes)
        try:
            floor["handshake"] = run_tls_floor(
                binary, ["-n", count, "--cert", pki.server[0],
                         "--key", pki.server[1]], 300)
            floor["handshake_rsa"] = run_tls_floor(
                binary, ["-n", str(max(args.floor_handshakes // 4, 1)),
                         "--rsa"], 300)
        except (RuntimeError, OSError, ValueError,
                subprocess.TimeoutExpired) as e:
            floor["notes"].append("handshake not measured: %s" % e)
    try:
        kbytes = openssl_speed_aes(120)
        floor["aes_ms_mb"] = 1024.0 * 1024.0 / kbytes
        floor["aes_mb_s"] = kbytes * 1000.0 / (1024.0 * 1024.0)
    except (RuntimeError, OSError, ValueError,
            subprocess.TimeoutExpired) as e:
        floor["notes"].append("AES-128-GCM not measured: %s" % e)
    return floor


# ---------------------------------------------------------- measurements

def split(total, parts):
    """total as parts near-equal counts (the first ones one larger)."""
    return [total // parts + (1 if i < total % parts else 0)
            for i in range(parts)]


def session_phase(target, result, name, cpu_key, run):
    """One round's share of a session phase for one target: run(target)
    returns (done, errors, seconds), added to result[name + "_sessions"]
    (for "sessions": result["sessions"]) and name + "_seconds"; the CPU
    it took, per group, to result[cpu_key] unless cpu_key is None."""
    before = target.cpu() if cpu_key else None
    done, errors, seconds = run(target)
    if name == "sessions":
        count_key, seconds_key = "sessions", "session_seconds"
    else:
        count_key, seconds_key = name + "_sessions", name + "_seconds"
    result[count_key] += done
    result["session_errors"] += errors
    result[seconds_key] += seconds
    if cpu_key:
        after = target.cpu()
        for group in after:
            result[cpu_key][group] = result[cpu_key].get(group, 0.0) + \
                after[group] - before.get(group, 0.0)


def cpu_rounds(targets, args, deadline):
    """The CPU phases, every target up at once: args.rounds rounds, each
    a share of the sessions and then of the large messages for every
    target in turn, the order turning from round to round (the first
    server measured in a run pays more: caches, clock ramp-up, the
    sink's first connections), CPU deltas summed over the rounds.
    Returns a result dict per target, in the order given."""
    results = [{"name": t.name, "sessions": 0, "session_errors": [],
                "session_seconds": 0.0, "large_messages": 0,
                "large_errors": [], "large_mb": 0.0,
                "large_seconds": 0.0, "implicit_sessions": 0,
                "implicit_seconds": 0.0, "latency_sessions": 0,
                "latency_seconds": 0.0,
                "cpu_s": {}, "cpu_i": {}, "cpu_l": {}}
               for t in targets]
    # Warm-up: PAM workers, TLS contexts, the backend probe.
    for target in targets:
        run_sessions(target, 8, 2, deadline)
    rounds = max(1, args.rounds)
    body = large_body(args.large_mb)
    sessions = split(args.sessions, rounds)
    implicit = split(args.implicit, rounds)
    latency = split(args.latency, rounds)
    large = split(args.large, rounds)
    for k in range(rounds):
        order = [(i + k) % len(targets) for i in range(len(targets))]
        for i in order:
            session_phase(targets[i], results[i], "sessions", "cpu_s",
                          lambda t: run_sessions(t, sessions[k],
                                                 args.threads, deadline))
            deadline.check("sessions")
        for i in order:
            session_phase(targets[i], results[i], "latency", None,
                          lambda t: run_sessions(t, latency[k], 1,
                                                 deadline))
            deadline.check("sessions in a row")
        for i in order:
            session_phase(targets[i], results[i], "implicit", "cpu_i",
                          lambda t: run_implicit_sessions(
                              t, implicit[k], args.threads, deadline))
            deadline.check("implicit-TLS sessions")
        for i in order:
            target, result = targets[i], results[i]
            before = target.cpu()
            started = time.monotonic()
            for _ in range(large[k]):
                if deadline.left() <= 0:
                    break
                try:
                    session(target.port, target.password, body=body)
                    result["large_messages"] += 1
                    result["large_mb"] += len(body) / (1024.0 * 1024.0)
                except Exception as e:
                    result["large_errors"].append(repr(e))
            after = target.cpu()
            result["large_seconds"] += time.monotonic() - started
            for group in after:
                result["cpu_l"][group] = result["cpu_l"].get(group, 0.0) \
                    + after[group] - before.get(group, 0.0)
            deadline.check("large messages")
    for result in results:
        done = max(result["sessions"], 1)
        megabytes = max(result["large_mb"], 1e-9)
        for group, ms in result["cpu_s"].items():
            result["cpu_session_" + group] = ms / done
        result["cpu_session_whole"] = sum(result["cpu_s"].values()) / done
        done = max(result["implicit_sessions"], 1)
        for group, ms in result["cpu_i"].items():
            result["cpu_implicit_" + group] = ms / done
        result["cpu_implicit_whole"] = sum(result["cpu_i"].values()) / done
        for group, ms in result["cpu_l"].items():
            result["cpu_mb_" + group] = ms / megabytes
        result["cpu_mb_whole"] = sum(result["cpu_l"].values()) / megabytes
        if result["latency_sessions"]:
            result["latency_ms"] = 1000.0 * result["latency_seconds"] / \
                result["latency_sessions"]
        result["large_mb_per_s"] = result["large_mb"] / \
            max(result["large_seconds"], 1e-9)
        del result["cpu_s"], result["cpu_i"], result["cpu_l"]
    return results


def measure_rest(target, result, args, deadline, scope=None):
    """After the CPU phases, one target at a time: the idle connections'
    memory, then (args.serial > 0, strace found, scope given for
    strace's files) the system call count.  Adds to result."""
    time.sleep(0.5)
    fds_idle = target.open_fds()
    rss_before = target.rss("network")
    auth_before = target.rss("auth")
    opened, errors = open_idle(target, args.idle, args.threads, deadline)
    time.sleep(1.0)
    rss_after = target.rss("network")
    auth_after = target.rss("auth")
    result["idle"] = len(opened)
    result["idle_errors"] = errors
    result["rss_before_kb"] = rss_before
    result["rss_after_kb"] = rss_after
    result["rss_idle_kb"] = (rss_after - rss_before) / max(len(opened), 1)
    result["rss_idle_auth_kb"] = \
        (auth_after - auth_before) / max(len(opened), 1)
    for smtp in opened:
        try:
            smtp.close()
        except OSError:
            pass
    deadline.check("idle connections")

    if args.serial > 0 and scope is not None:
        if STRACE is None:
            result["syscall_notes"] = ["not counted: no strace command"]
        else:
            result.update(count_syscalls(target, args, deadline, scope,
                                         fds_idle))
    return result


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.2f" % (a / b)


def syscall_total(result, side):
    """System calls per session of one side ("network", "auth") or of
    the whole service ("whole": every group, nginx's master included)."""
    table = result.get("syscalls")
    if table is None:
        return None
    if side == "whole":
        return sum(total for _, total in table.values())
    return table[side][1] if side in table else None


def print_table(results, rows):
    """rows: (label, key or function of a result, format); a column per
    result, then the first's ratio to each of the others."""
    names = [r["name"] for r in results]
    header = "%-40s" % "" + "".join("%16s" % n for n in names)
    # Ratios of the first (the build under test) to each of the others.
    for other in names[1:]:
        header += "%16s" % ("sp/%s" % other)
    print(header)
    for label, key, fmt in rows:
        values = [key(r) if callable(key) else r.get(key) for r in results]
        cells = "".join("%16s" % (fmt % v if v is not None else "-")
                        for v in values)
        line = "%-40s%s" % (label, cells)
        for other in values[1:]:
            line += "%16s" % ratio(values[0], other)
        print(line)


def report_syscalls(results):
    """Per server: system calls per session by name, per side: the top
    SYSCALL_TOP of the whole service and of each side."""
    for r in results:
        for note in r.get("syscall_notes", []):
            print("%s system calls: %s" % (r["name"], note))
        table = r.get("syscalls")
        if table is None:
            continue
        groups = [g for g in ("network", "auth") if g in table] + \
            sorted(g for g in table if g not in ("network", "auth"))
        names = {}
        for group in groups:
            for name, (calls, _) in table[group][0].items():
                names[name] = names.get(name, 0.0) + calls
        # The top SYSCALL_TOP of the whole service and of each side.
        top = set(sorted(names, key=lambda n: (-names[n], n))[:SYSCALL_TOP])
        for group in groups:
            calls = table[group][0]
            top |= set(sorted((n for n in calls if calls[n][0] > 0),
                              key=lambda n: (-calls[n][0], n))[:SYSCALL_TOP])
        top = sorted(top, key=lambda n: (-names[n], n))
        print()
        print("%s: system calls per session (strace -c -f, %d serial "
              "sessions, %.1f s under strace): %.1f"
              % (r["name"], r["serial_sessions"], r["serial_seconds"],
                 syscall_total(r, "whole")))
        print("  %-18s" % "syscall" + "".join("%10s" % g for g in groups)
              + "%10s%10s" % ("whole", "failed"))
        for name in top:
            cells = "".join("%10.1f" % table[g][0].get(name, (0, 0))[0]
                            for g in groups)
            failed = sum(table[g][0].get(name, (0, 0))[1] for g in groups)
            print("  %-18s%s%10.1f%10.1f" % (name, cells, names[name],
                                             failed))
        cells = "".join("%10.1f" % (table[g][1] - sum(
            table[g][0].get(n, (0, 0))[0] for n in top)) for g in groups)
        print("  %-18s%s%10.1f" % ("(others)", cells,
                                    syscall_total(r, "whole") -
                                    sum(names[n] for n in top)))
        cells = "".join("%10.1f" % table[g][1] for g in groups)
        print("  %-18s%s%10.1f" % ("total", cells,
                                    syscall_total(r, "whole")))
        if r.get("serial_errors"):
            print("  serial_errors: %d, first: %s"
                  % (len(r["serial_errors"]), r["serial_errors"][0]))


def report_floor(results, floor):
    """The floor, and every CPU figure as a multiple of it."""
    print()
    print("floor (this machine, no sockets):")
    for note in floor["notes"]:
        print("  " + note)
    handshake = floor.get("handshake", {}).get("server_handshake_cpu_ms")
    aes = floor.get("aes_ms_mb")
    if handshake is not None:
        h = floor["handshake"]
        print("  TLS 1.3 handshake, server side, CPU ms:   %.3f (median "
              "%.3f; with SSL_new/SSL_free %.3f; client side %.3f)"
              % (handshake, h.get("server_handshake_cpu_ms_median", 0),
                 h.get("server_ssl_cpu_ms", 0),
                 h.get("client_handshake_cpu_ms", 0)))
        print("    " + h["line"])
    rsa = floor.get("handshake_rsa", {}).get("server_handshake_cpu_ms")
    if rsa is not None:
        print("  the same with RSA-2048 (generated), CPU ms: %.3f" % rsa)
    if aes is not None:
        print("  AES-128-GCM (openssl speed -evp, 16384-byte blocks): "
              "%.3f ms/MB (%.0f MB/s)" % (aes, floor["aes_mb_s"]))
    rows = []
    if handshake is not None:
        for label, key in (("network", "cpu_session_network"),
                           ("auth side", "cpu_session_auth"),
                           ("whole service", "cpu_session_whole")):
            rows.append(("CPU/session %s, x handshake" % label,
                         lambda r, k=key: r[k] / handshake
                         if r.get(k) is not None else None, "%.2f"))
        rows.append(("CPU/implicit session whole, x handshake",
                     lambda r: r["cpu_implicit_whole"] / handshake
                     if r.get("cpu_implicit_whole") is not None else None,
                     "%.2f"))
    if aes is not None:
        for label, key in (("network", "cpu_mb_network"),
                           ("whole service", "cpu_mb_whole")):
            rows.append(("CPU/MB %s, x AES-128-GCM" % label,
                         lambda r, k=key: r[k] / aes
                         if r.get(k) is not None else None, "%.2f"))
    if rows and results:
        print_table(results, rows)


def report(results, floor=None):
    rows = [
        ("sessions completed", "sessions", "%d"),
        ("sessions/s (wall clock)",
         lambda r: r["sessions"] / max(r["session_seconds"], 1e-9), "%.1f"),
        ("CPU ms/session, network", "cpu_session_network", "%.3f"),
        ("CPU ms/session, auth side", "cpu_session_auth", "%.3f"),
        ("CPU ms/session, whole service", "cpu_session_whole", "%.3f"),
        ("one client, ms/session in a row", "latency_ms", "%.2f"),
        ("implicit-TLS sessions completed", "implicit_sessions", "%d"),
        ("CPU ms/implicit session, network", "cpu_implicit_network",
         "%.3f"),
        ("CPU ms/implicit session, auth side", "cpu_implicit_auth",
         "%.3f"),
        ("CPU ms/implicit session, whole", "cpu_implicit_whole", "%.3f"),
        ("syscalls/session, network",
         lambda r: syscall_total(r, "network"), "%.1f"),
        ("syscalls/session, auth side",
         lambda r: syscall_total(r, "auth"), "%.1f"),
        ("syscalls/session, whole service",
         lambda r: syscall_total(r, "whole"), "%.1f"),
        ("MB relayed (large)", "large_mb", "%.1f"),
        ("MB/s relayed (wall clock)", "large_mb_per_s", "%.1f"),
        ("CPU ms/MB, network", "cpu_mb_network", "%.3f"),
        ("CPU ms/MB, auth side", "cpu_mb_auth", "%.3f"),
        ("CPU ms/MB, whole service", "cpu_mb_whole", "%.3f"),
        ("idle auth. connections", "idle", "%d"),
        ("network RSS before idle, kB", "rss_before_kb", "%d"),
        ("network RSS with idle, kB", "rss_after_kb", "%d"),
        ("RSS kB/idle conn, network", "rss_idle_kb", "%.1f"),
        ("RSS kB/idle conn, auth side", "rss_idle_auth_kb", "%.1f"),
    ]
    print_table(results, rows)
    for r in results:
        for key in ("session_errors", "large_errors", "idle_errors"):
            if r.get(key):
                print("%s %s: %d, first: %s" % (r["name"], key,
                                               len(r[key]), r[key][0]))
    print("(nginx 'auth side' = the nginx answering auth_http, which "
          "checks no password; submitproxy's runs PAM.  'whole service' = "
          "every process of the server: network + auth side, and nginx's "
          "mail master.  CPU is never measured under strace.)")
    report_syscalls(results)
    if floor is not None:
        report_floor(results, floor)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--implicit", type=int, default=300,
                        help="sessions on the implicit-TLS port")
    parser.add_argument("--latency", type=int, default=100,
                        help="STARTTLS sessions in a row from one client: "
                        "wall-clock ms per session")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--large-mb", type=int, default=10)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--serial", type=int, default=200,
                        help="sessions from one client under strace -c "
                        "(0: no system call count)")
    parser.add_argument("--serial-seconds", type=float, default=300,
                        help="bound on the serial phase, per server")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--floor-handshakes", type=int, default=2000,
                        help="handshakes tls_floor times (RSA: a quarter)")
    parser.add_argument("--tls-floor", metavar="PATH",
                        help="the tls_floor binary (default: "
                        "tests/bench/tls_floor in $SUBMITPROXY's build)")
    parser.add_argument("--no-floor", action="store_true",
                        help="neither tls_floor nor openssl speed")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the CPU phases in this many rounds, the "
                        "servers' order turning")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--baseline", metavar="BINARY",
                        help="another submitproxy build, measured the "
                        "same way in this run")
    args = parser.parse_args()
    for name in ("sessions", "implicit", "latency", "threads", "large",
                 "large_mb", "idle", "serial", "rounds"):
        if not 0 <= getattr(args, name) <= 20000:
            parser.error("--%s out of range" % name.replace("_", "-"))
    if not 1 <= args.floor_handshakes <= 100000:
        parser.error("--floor-handshakes out of range")
    if not harness.binary():
        parser.error("set SUBMITPROXY to the submitproxy binary")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.idle + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    deadline = Deadline(args.max_seconds)
    scope = Cleanups()
    results = []
    floor = None
    try:
        pki = tlsutil.shared_pki()
        if not args.no_floor:
            # First, while nothing else of the bench runs.
            floor = measure_floor(args, pki)
        sink = backends.SmtpSink(scope, dump=False,
                                 max_connections=2 * args.idle + 100)
        print("smtp-sink at %s; %d STARTTLS + %d implicit-TLS sessions x "
              "%d threads, %d x %d MB, %d idle, %d serial under strace, "
              "%d rounds"
              % (sink.address, args.sessions, args.implicit, args.threads,
                 args.large, args.large_mb, args.idle, args.serial,
                 max(1, args.rounds)))
        sys.stdout.flush()
        targets = [SubmitproxyTarget(scope, sink)]
        if args.baseline:
            under_test = os.environ["SUBMITPROXY"]
            os.environ["SUBMITPROXY"] = os.path.abspath(args.baseline)
            try:
                baseline = SubmitproxyTarget(scope, sink)
                baseline.name = "baseline"
                targets.append(baseline)
            finally:
                os.environ["SUBMITPROXY"] = under_test
        if not args.no_nginx:
            try:
                targets.append(NginxTarget(scope, sink, pki))
            except (RuntimeError, AssertionError) as e:
                print("nginx not measured: %s" % e)
        results = cpu_rounds(targets, args, deadline)
        for target, result in zip(targets, results):
            measure_rest(target, result, args, deadline, scope)
    finally:
        scope.run()
    report(results, floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
