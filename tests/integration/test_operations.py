"""Running submitproxy as a service (submitproxy(8), submitproxy.conf(5)
[server], the systemd units), as an operator and a client see it:

- privilege separation (root only): the network process runs as [server]
  user with no capabilities, the auth helper and its PAM workers
  ("sp-auth-worker") keep root; a [server] user that does not exist stops
  the start, user = root is allowed with a warning; a real pam_unix login
  still works once the network process has dropped root;
- readiness (sd_notify(3)): READY=1 once the listeners accept, RELOADING=1
  then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, all sent to
  $NOTIFY_SOCKET;
- socket activation (systemd-socket-activate): a socket passed under a
  listener's name is served instead of the listener's configured address,
  which is never bound; two named sockets go to their two listeners;
- graceful stop on SIGTERM: no new connections, idle sessions get
  421 4.3.2, a message in DATA may finish within [server]
  shutdown_timeout and is delivered, the proxy exits 0; a transaction
  still open when shutdown_timeout runs out is cut and delivers nothing;
- SIGHUP with an unchanged configuration reloads (event=reload status=ok)
  and the proxy keeps serving old and new clients; SIGHUP with a broken
  file logs each problem as one event=reload_error (file, line, error),
  writes nothing else, and the old configuration keeps serving;
- the service unit's capability bounding set and ExecReload= (root only):
  run with only those capabilities, the helper can still forward the
  reload and SIGTERM to the network process (CAP_KILL);
- `meson install --destdir`: the binary, man pages, systemd units,
  sysusers.d entry and documentation land under the prefix; the
  configuration and PAM service are copied to etc only where absent; the
  installed pieces agree with each other (ExecStart, FileDescriptorName,
  [server] user, pam_service); systemd-analyze verify accepts the units.

The process model: the process started is the auth helper; its child is the
network process ("event=start ... pid=N"), which drops to [server] user
after binding (harness sets user = nobody when the tests run as root).

Loopback only; every wait is bounded (20 s at most); no test asserts how
fast something happened.  Python standard library plus the commands named
(systemd-socket-activate, smtp-sink, meson, systemd-analyze, useradd).
"""

import configparser
import contextlib
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
import pamutil  # noqa: E402
import tlsutil  # noqa: E402
from backends import RecordingBackend, RelayProxy, SmtpSink  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402

CLIENT = "client.example"
SENDER = "alice@example.com"
RCPT = "bob@example.net"
WORKER_NAME = "sp-auth-worker"


def setUpModule():
    harness.require_binary()


def require_root(what):
    if os.geteuid() != 0:
        raise unittest.SkipTest("%s needs root (the privilege drop only "
                                "happens when started as root)" % what)


# ----------------------------------------------------------------- /proc

def proc_status(pid):
    """{"Uid": ["0", "0", "0", "0"], ...} from /proc/PID/status."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()
    return fields


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def children(pid):
    """Pids of the children of pid (every thread's), from /proc."""
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


def wait_auth_workers(proxy):
    """The helper's children named sp-auth-worker (at least one, waited
    for)."""
    helper = proxy.process.pid
    return backends.wait_for(
        lambda: sorted(p for p in children(helper)
                       if proc_comm(p) == WORKER_NAME),
        "a %s child of the helper %d" % (WORKER_NAME, helper))


def network_pid(proxy):
    line = proxy.wait_log(r"\bevent=start\b", r"\bpid=\d+")
    return int(harness.parse_log_fields(line)["pid"])


# ------------------------------------------------------------ processes

def wait_exit(test, proxy, timeout):
    """Waits up to timeout for the proxy (the helper) to exit by itself;
    returns its status and takes over what Proxy.stop() would check at
    cleanup (a sanitizer report).  Fails the test, with the log, if it is
    still running (cleanup then kills it)."""
    process = proxy.process
    try:
        status = process.wait(timeout)
    except subprocess.TimeoutExpired:
        proxy._fail_with_log("submitproxy still running %.0f s later"
                             % timeout)
    proxy.process = None
    proxy._stderr.close()
    proxy._stdout.close()
    log = proxy.log()
    report = harness.SANITIZER_REPORT.search(log)
    if report:
        test.fail("sanitizer report in stderr: %r"
                  % log[report.start():report.start() + 200])
    return status


def run_to_exit(proxy, timeout=WAIT):
    """Runs the binary on proxy's config (a Proxy made with start=False)
    until it exits by itself, stderr to proxy's log; returns the status.
    The process runs in its own group, killed whole if it overstays."""
    with open(proxy.log_path, "wb") as err:
        process = subprocess.Popen(
            [harness.binary(), "-c", proxy.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            cwd=proxy.dir, start_new_session=True)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(WAIT)
            proxy._fail_with_log("submitproxy still running %.0f s after "
                                 "start" % timeout)


# --------------------------------------------------------------- clients

def client_context():
    return tlsutil.client_context(None)


def login(test, proxy, listener):
    """A Raw client of a RelayProxy past TLS, EHLO and AUTH PLAIN (235)."""
    client = proxy.connect(listener)
    if proxy.sections["listener " + listener]["mode"] == "implicit-tls":
        tlsutil.wait_accepted(proxy, client)
        client.wrap_tls(client_context())
        test.assertReply(client.read_reply(), 220)
    else:
        test.assertReply(client.read_reply(), 220)
        test.assertReply(client.command("EHLO " + CLIENT), 250)
        tlsutil.starttls(client, client_context())
    test.assertReply(client.command("EHLO " + CLIENT), 250)
    test.assertReply(client.command(
        "AUTH PLAIN " + backends.plain_blob(proxy.USER, proxy.password)),
        235)
    return client


def open_transaction(test, client, first_part):
    """MAIL, RCPT, DATA (354), then first_part of the message."""
    test.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
    test.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
    test.assertReply(client.command("DATA"), 354)
    client.send(first_part)


def reply_or_close(client, line=None, timeout=WAIT):
    """Sends line (if any) and returns the next reply, or None when the
    server closes the connection instead."""
    if line is not None:
        try:
            client.send(line.encode() + b"\r\n")
        except OSError:
            return None
    try:
        first = client.read_line(timeout)
    except OSError:
        return None
    if first is None:
        return None
    client.buf = first + b"\r\n" + client.buf
    return client.read_reply(timeout)


def turned_away(host, port):
    """What a new client gets from a stopping proxy: "refused", "closed"
    (EOF or reset without a word), or the first line it was sent."""
    try:
        client = harness.Raw(port, host=host)
    except ConnectionRefusedError:
        return "refused"
    with client:
        try:
            line = client.read_line(WAIT)
        except (ConnectionResetError, OSError):
            return "closed"
        return "closed" if line is None else line.decode("utf-8", "replace")


# ============================================================ privileges

class PrivilegeDrop(ProxyTestCase):
    """Started as root, only the network process gives root up."""

    def setUp(self):
        require_root("the privilege drop test")
        try:
            self.nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")

    def test_network_process_uids_are_all_the_server_user(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        status = proc_status(network_pid(proxy))
        self.assertEqual(status["Uid"], [str(self.nobody.pw_uid)] * 4,
                         "real, effective, saved and fs uid")

    def test_network_process_gids_are_the_server_users_group_alone(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        status = proc_status(network_pid(proxy))
        self.assertEqual(status["Gid"], [str(self.nobody.pw_gid)] * 4,
                         "real, effective, saved and fs gid")
        self.assertLessEqual(set(status.get("Groups", [])),
                             {str(self.nobody.pw_gid)},
                             "supplementary groups other than nobody's")

    def test_network_process_holds_no_capabilities(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        status = proc_status(network_pid(proxy))
        for name in ("CapPrm", "CapEff"):
            self.assertEqual(int(status[name][0], 16), 0,
                             "%s: %s" % (name, status[name]))

    def test_drop_is_logged_with_user_uid_and_gid(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        fields = harness.parse_log_fields(proxy.wait_log(
            r"\bevent=privileges\b"))
        self.assertEqual(fields.get("user"), "nobody")
        self.assertEqual(fields.get("uid"), str(self.nobody.pw_uid))
        self.assertEqual(fields.get("gid"), str(self.nobody.pw_gid))

    def test_auth_helper_keeps_uid_0(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        network_pid(proxy)   # started, and past the drop
        self.assertEqual(proc_status(proxy.process.pid)["Uid"], ["0"] * 4)

    def test_pam_workers_keep_uid_0(self):
        proxy = harness.Proxy(self, {"server": {"user": "nobody"}})
        network_pid(proxy)
        workers = wait_auth_workers(proxy)
        for pid in workers:
            self.assertEqual(proc_status(pid)["Uid"], ["0"] * 4,
                             "PAM worker %d" % pid)

    def test_nonexistent_server_user_stops_the_start_naming_the_user(self):
        user = "sp-nosuch-%s" % os.urandom(4).hex()
        proxy = harness.Proxy(self, {"server": {"user": user}}, start=False)
        status = run_to_exit(proxy)
        self.assertNotEqual(status, 0, proxy.log())
        lines = proxy.log_lines(re.escape(user), r"does not exist")
        self.assertTrue(lines, "no log line saying %s does not exist:\n%s"
                        % (user, proxy.log()))

    def test_server_user_root_keeps_uid_0_with_a_warning(self):
        proxy = harness.Proxy(self, {"server": {"user": "root"}})
        self.assertEqual(proc_status(network_pid(proxy))["Uid"], ["0"] * 4)
        proxy.wait_log(r"\blevel=warn", r"\broot\b")
        self.assertReply(proxy.connect().read_reply(), 220)

    def test_pam_unix_login_works_after_the_network_process_dropped_root(
            self):
        password = pamutil.random_password()
        pam = pamutil.UnixPam(self, password)
        proxy = pamutil.PamProxy(self, tlsutil.shared_pki(), pam,
                                 server={"user": "nobody"})
        self.assertEqual(proc_status(proxy.network_pid())["Uid"][1],
                         str(self.nobody.pw_uid))
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                            local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.starttls(context=client_context())
        code, _ = smtp.login(pam.user, password)
        self.assertEqual(code, 235)
        proxy.wait_log(r"\bevent=auth_ok\b", r'\buser="?%s"?(\s|$)'
                       % re.escape(pam.user))
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()


# ============================================================== sd_notify

class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; keeps
    every message received, each as its list of "KEY=VALUE" lines.

    Reachable by any user, as /run/systemd/notify is: the network process
    sends once it runs as [server] user."""

    def __init__(self, test):
        self.dir = tempfile.mkdtemp(prefix="submitproxy-notify-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        test.addCleanup(self.sock.close)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.messages = []

    def wait_for(self, assignment, after=0, alive=None, timeout=WAIT):
        """Index of the first message (from index after on) that holds the
        line assignment, e.g. "READY=1"; waits for it, failing early if
        alive() turns false."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if assignment in self.messages[i]:
                    return i
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (alive is not None and not alive()):
                raise AssertionError(
                    "no %s notification%s; received %r"
                    % (assignment, "" if remaining <= 0 else
                       " before the proxy exited", self.messages))
            ready, _, _ = select.select([self.sock], [], [],
                                        min(remaining, 0.1))
            if ready:
                data = self.sock.recv(65536)
                self.messages.append(
                    data.decode("utf-8", "replace").split("\n"))


class NotifyProxy(harness.Proxy):
    """A Proxy started with $NOTIFY_SOCKET, whose start() returns when
    READY=1 arrives rather than when the ports are seen listening (so
    that a test can check the ports against READY=1)."""

    def __init__(self, test, notify, config=None):
        self.notify = notify
        super().__init__(test, config)

    def start(self):
        with backends.environment({"NOTIFY_SOCKET": self.notify.path}):
            super().start()

    def _wait_listening(self):
        try:
            self.notify.wait_for("READY=1", alive=self.running)
        except AssertionError as e:
            self._fail_to_start(str(e))


class SdNotify(ProxyTestCase):

    def test_ready_is_sent_once_the_listener_accepts_connections(self):
        notify = NotifySocket(self)
        proxy = NotifyProxy(self, notify)
        # READY=1 has arrived: the port must answer now, without waiting.
        with socket.create_connection(("127.0.0.1", proxy.port()), WAIT):
            pass
        self.assertReply(proxy.connect().read_reply(), 220)

    def test_sighup_sends_reloading_then_ready(self):
        notify = NotifySocket(self)
        proxy = NotifyProxy(self, notify)
        before = len(notify.messages)
        proxy.process.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=before,
                                    alive=proxy.running)
        notify.wait_for("READY=1", after=reloading + 1, alive=proxy.running)
        self.assertReply(proxy.connect().read_reply(), 220)

    def test_sigterm_sends_stopping_and_exits_0(self):
        notify = NotifySocket(self)
        proxy = NotifyProxy(self, notify)
        before = len(notify.messages)
        proxy.process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", after=before)
        self.assertEqual(wait_exit(self, proxy, WAIT), 0, proxy.log())


# ===================================================== socket activation

class ActivatedProxy(harness.Proxy):
    """submitproxy started by systemd-socket-activate, which listens on
    127.0.0.1:PORT for each name in names (passed as --fdname, in order)
    and execs the proxy, with those sockets as fds 3, 4, ..., when the
    first connection arrives.  The config's own listener addresses get
    ports distinct from the activation ports."""

    def __init__(self, test, config, names):
        self.tool = shutil.which("systemd-socket-activate")
        if not self.tool:
            raise unittest.SkipTest("systemd-socket-activate is not "
                                    "installed (Debian package systemd)")
        self.names = list(names)
        super().__init__(test, config, start=False)
        configured = {port for name in self.listener_names()
                      for _, port in self.addresses(name)}
        ports = []
        while len(ports) < len(self.names):
            ports = [p for p in harness.free_ports(
                ["127.0.0.1"] * len(self.names)) if p not in configured]
        self.activation_ports = dict(zip(self.names, ports))
        self.start()

    def start(self):
        assert self.process is None
        args = [self.tool]
        for name in self.names:
            args += ["-l", "127.0.0.1:%d" % self.activation_ports[name]]
        args.append("--fdname=" + ":".join(self.names))
        # It passes only a few variables on; the sanitizers' must reach.
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if var in os.environ:
                args += ["-E", "%s=%s" % (var, os.environ[var])]
        args += ["--", harness.binary(), "-c", self.config_path]
        self._stderr = open(self.log_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        try:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=self._stdout,
                stderr=self._stderr, cwd=self.dir)
        except BaseException:
            self._stderr.close()
            self._stdout.close()
            raise
        self.test.addCleanup(self.stop)
        for name in self.names:
            port = self.activation_ports[name]

            def listening(port=port):
                if self.process.poll() is not None:
                    self._fail_to_start("systemd-socket-activate exited "
                                        "with %s" % self.process.returncode)
                return harness._proc_listening("127.0.0.1", port)
            backends.wait_for(listening, "systemd-socket-activate listening "
                              "on 127.0.0.1:%d" % port)

    def connect_activated(self, name):
        client = harness.Raw(self.activation_ports[name])
        self.test.addCleanup(client.close)
        return client


def configured_port_is_free(test, proxy, name):
    """The listener's configured address is neither listening nor
    accepting."""
    host, port = proxy.addresses(name)[0]
    test.assertFalse(harness._proc_listening(host, port),
                     "listener %s bound its configured %s:%d"
                     % (name, host, port))
    with test.assertRaises(ConnectionRefusedError):
        with socket.create_connection((host, port), WAIT):
            pass


class SocketActivation(ProxyTestCase):

    PLAIN = {"address": "127.0.0.1:{port}", "mode": "plain",
             "require_tls": "no", "allow_plaintext_auth": "no"}

    def test_passed_socket_is_served_instead_of_the_configured_address(self):
        proxy = ActivatedProxy(self, {"listener plain": None,
                                      "listener submission": self.PLAIN},
                               ["submission"])
        client = proxy.connect_activated("submission")
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + CLIENT), 250)
        proxy.wait_log(r"\bevent=listen\b", r"\blistener=submission\b",
                       r"\baddress=fd:3(\s|$)")
        configured_port_is_free(self, proxy, "submission")

    def test_two_passed_sockets_go_to_the_listeners_named_for_them(self):
        pki = tlsutil.shared_pki()
        config = tlsutil.tls_config(pki, listeners={
            "plain": None,
            "submission": {"mode": "starttls", "require_tls": "yes"},
            "submissions": {"mode": "implicit-tls"},
        })
        proxy = ActivatedProxy(self, config, ["submission", "submissions"])
        starttls = proxy.connect_activated("submission")
        self.assertReply(starttls.read_reply(), 220)
        ehlo = starttls.command("EHLO " + CLIENT)
        self.assertReply(ehlo, 250)
        self.assertIn("STARTTLS", tlsutil.ehlo_keywords(ehlo))
        tlsutil.starttls(starttls, client_context())
        self.assertReply(starttls.command("NOOP"), 250)

        implicit = proxy.connect_activated("submissions")
        implicit.wrap_tls(client_context())
        self.assertReply(implicit.read_reply(), 220)
        ehlo = implicit.command("EHLO " + CLIENT)
        self.assertNotIn("STARTTLS", tlsutil.ehlo_keywords(ehlo))

        proxy.wait_log(r"\bevent=listen\b", r"\blistener=submission\b",
                       r"\baddress=fd:3(\s|$)")
        proxy.wait_log(r"\bevent=listen\b", r"\blistener=submissions\b",
                       r"\baddress=fd:4(\s|$)")
        configured_port_is_free(self, proxy, "submission")
        configured_port_is_free(self, proxy, "submissions")


# ================================================= the unit's capabilities

def unit_capabilities():
    """The CapabilityBoundingSet= of systemd/submitproxy.service.in, as
    setpriv(1) names them ("setuid", "kill", ...)."""
    path = os.path.join(harness.source_root(), "systemd",
                        "submitproxy.service.in")
    caps = []
    for value in unit_values(path, "CapabilityBoundingSet"):
        caps += [c.lower()[len("cap_"):] for c in value.split()]
    return caps


class UnitCapsProxy(harness.Proxy):
    """The binary run, as root, with no capabilities but those the
    service unit leaves it (setpriv --bounding-set): what systemd does."""

    def __init__(self, test, config=None):
        self.caps = unit_capabilities()
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise unittest.SkipTest("setpriv (util-linux) is not installed")
        self.wrapper = [setpriv, "--bounding-set",
                        ",".join(["-all"] + ["+" + c for c in self.caps]),
                        "--"]
        super().__init__(test, config)


class UnitCapabilities(ProxyTestCase):

    def test_unit_reload_and_stop_reach_the_network_process(
            self):
        # The helper (root) forwards SIGHUP and SIGTERM to the network
        # process, which runs as [server] user: that takes CAP_KILL.
        require_root("the capability bounding set")
        proxy = UnitCapsProxy(self)
        self.assertIn("kill", proxy.caps)
        line = proxy.wait_log(r"\bevent=privileges\b")
        self.assertIn("user=" + harness.TEST_USER, line)
        self.assertReply(self.greeted(proxy).command("NOOP"), 250)

        # The unit's own ExecReload=, with $MAINPID as systemd sets it.
        path = os.path.join(harness.source_root(), "systemd",
                            "submitproxy.service.in")
        reload_command = shlex.split(unit_values(path, "ExecReload")[0])
        subprocess.run(reload_command, check=True, timeout=WAIT,
                       env=dict(os.environ,
                                MAINPID=str(proxy.process.pid)))
        proxy.wait_log(r"\bevent=reload\b", r"\bstatus=ok\b")
        proxy.process.send_signal(signal.SIGTERM)
        self.assertEqual(wait_exit(self, proxy, WAIT), 0, proxy.log())
        self.assertNotRegex(proxy.log(), r"forwarded_to=\d+ error=")


# ========================================================= graceful stop

class GracefulStop(ProxyTestCase):

    def setUp(self):
        tlsutil.shared_pki()

    def test_sigterm_lets_the_message_in_data_finish_and_closes_the_rest(
            self):
        sink = SmtpSink(self)
        proxy = RelayProxy(self, sink, server={"shutdown_timeout": "10s"})
        a = login(self, proxy, "sub")
        b = login(self, proxy, "subs")
        open_transaction(self, a, b"Subject: graceful stop\r\n\r\n"
                         b"first half\r\n")
        backends.wait_for(sink.dump_files, "the open transaction at the "
                          "backend")

        proxy.process.send_signal(signal.SIGTERM)
        proxy.wait_log(r"\bevent=stop\b")

        # No new client is served.
        outcome = turned_away(*proxy.addresses("sub")[0])
        self.assertTrue(outcome in ("refused", "closed") or
                        outcome.startswith("421"),
                        "a new connection after SIGTERM got %r" % outcome)

        # The idle client B: 421 4.3.2 at once or on its next command.
        if b.pending(3.0):
            reply = reply_or_close(b)
        else:
            reply = reply_or_close(b, "NOOP")
        self.assertIsNotNone(reply, "B was closed without a 421")
        self.assertReply(reply, 421, "4.3.2")
        b.read_until_closed()

        # A finishes its message; the backend takes it.
        a.send(b"second half\r\n.\r\n")
        self.assertReply(a.read_reply(), 250)
        messages = sink.wait_messages(1)
        self.assertEqual(len(messages), 1, messages)
        self.assertIn(b"first half\nsecond half\n", messages[0].message)

        # And is then sent away.
        reply = reply_or_close(a, "NOOP")
        if reply is not None:
            self.assertReply(reply, 421, "4.3.2")

        self.assertEqual(wait_exit(self, proxy, 10 + 5), 0, proxy.log())

    def test_transaction_open_at_shutdown_timeout_is_cut_and_not_delivered(
            self):
        backend = RecordingBackend(self)
        proxy = RelayProxy(self, backend, server={"shutdown_timeout": "1s"})
        a = login(self, proxy, "subs")
        open_transaction(self, a, b"Subject: stalled\r\n\r\npartial\r\n")
        backend.wait(lambda be: [t for t in be.transactions()
                                 if b"partial" in t.data],
                     "the partial message at the backend")

        proxy.process.send_signal(signal.SIGTERM)
        said = a.read_until_closed(WAIT)
        self.assertFalse(said.startswith(b"2"),
                         "the cut transaction got %r" % said)
        if said:
            self.assertRegex(said, rb"^421[ -]")
        self.assertEqual(wait_exit(self, proxy, WAIT), 0, proxy.log())

        backend.wait(lambda be: all(c.closed
                                    for c in be.session_connections()),
                     "the proxy to close its backend connection")
        self.assertEqual(backend.complete_transactions(), [])


# ================================================================ reload

class Reload(ProxyTestCase):

    def test_sighup_with_unchanged_config_reloads_and_keeps_serving(self):
        pki = tlsutil.shared_pki()
        proxy = tlsutil.TlsProxy(self, pki)
        before = self.ehloed(proxy, listener="starttls")

        proxy.reload("ok")

        self.assertReply(before.command("NOOP"), 250)
        tlsutil.starttls(before, pki.client_context())
        self.assertReply(before.command("EHLO " + CLIENT), 250)
        after = tlsutil.implicit(proxy, pki.client_context())
        self.assertReply(after.command("EHLO " + CLIENT), 250)
        self.assertTrue(proxy.running())

    def test_sighup_with_two_bad_keys_logs_two_reload_errors_and_keeps_old(
            self):
        proxy = harness.Proxy(self)
        before = self.ehloed(proxy)
        broken = harness.merge_config(proxy.sections, {
            "server": {"hostname": "changed.example", "colour": "blue"},
            "limits": {"max_bogus": "3"},
        })
        text = harness.render_config(broken)
        with open(proxy.config_path, "w") as f:
            f.write(text)
        lines = text.splitlines()
        want = {lines.index("colour = blue") + 1:
                'unknown key \\x22colour\\x22 in [server]',
                lines.index("max_bogus = 3") + 1:
                'unknown key \\x22max_bogus\\x22 in [limits]'}

        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_log(r"\bevent=reload\b", r"\bstatus=failed\b")

        errors = proxy.log_lines(r"\bevent=reload_error\b")
        self.assertEqual(len(errors), 2, proxy.log())
        got = {}
        for line in errors:
            self.assertRegex(line, r"^ts=\S+ level=error event=reload_error ")
            fields = harness.parse_log_fields(line)
            self.assertEqual(fields["file"], proxy.config_path, line)
            got[int(fields["line"])] = fields["error"]
        self.assertEqual(got, want)
        # Nothing but log events: no raw "FILE:LINE: message" line.
        raw = [line for line in proxy.log().splitlines()
               if not line.startswith("ts=")]
        self.assertEqual(raw, [])

        # The old configuration serves old and new clients.
        self.assertReply(before.command("NOOP"), 250)
        after = proxy.connect()
        code, text_lines = after.read_reply()
        self.assertEqual(code, 220)
        self.assertIn(harness.HOSTNAME, text_lines[0])
        self.assertNotIn("changed.example", text_lines[0])
        self.assertReply(after.command("EHLO " + CLIENT), 250)
        self.assertTrue(proxy.running())

    def test_sighup_with_a_broken_sender_map_logs_reload_errors(self):
        # The sender map is read on reload too: its problems are log
        # events like the configuration's, never raw "PATH:LINE" lines.
        proxy = harness.Proxy(self)
        directory = tempfile.mkdtemp(prefix="submitproxy-map-")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "sender_map")
        with open(path, "w") as f:
            f.write("alice\nbob @@bad\n")
        os.chmod(path, 0o644)
        with open(proxy.config_path, "w") as f:
            f.write(harness.render_config(harness.merge_config(
                proxy.sections, {"relay": {"sender_map": path}})))

        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_log(r"\bevent=reload\b", r"\bstatus=failed\b")

        errors = proxy.log_lines(r"\bevent=reload_error\b")
        self.assertEqual(len(errors), 2, proxy.log())
        lines = []
        for line in errors:
            fields = harness.parse_log_fields(line)
            self.assertEqual(fields["file"], path, line)
            lines.append(int(fields["line"]))
        self.assertEqual(sorted(lines), [1, 2])
        raw = [line for line in proxy.log().splitlines()
               if not line.startswith("ts=")]
        self.assertEqual(raw, [])
        self.assertTrue(proxy.running())

    def test_sighup_with_a_broken_user_limits_file_keeps_the_old_set(self):
        # [limits] user_limits is read at start and on reload; a file
        # with errors is logged line by line and the running set stays.
        directory = tempfile.mkdtemp(prefix="submitproxy-limits-")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "user_limits")
        good = "alice messages_per_hour=5\n* recipients_per_day=10\n"
        with open(path, "w") as f:
            f.write(good)
        os.chmod(path, 0o644)
        proxy = harness.Proxy(self, {"limits": {"user_limits": path}})
        before = self.ehloed(proxy)
        with open(path, "w") as f:
            f.write("alice messages_per_hour=5\nbob\n"
                    "ALICE recipients_per_day=1\n* colour=blue\n")

        proxy.process.send_signal(signal.SIGHUP)
        failed = proxy.wait_log(r"\bevent=reload\b", r"\bstatus=failed\b")
        self.assertIn('error="user_limits"', failed)

        errors = proxy.log_lines(r"\bevent=reload_error\b")
        self.assertEqual(len(errors), 3, proxy.log())
        got = {}
        for line in errors:
            fields = harness.parse_log_fields(line)
            self.assertEqual(fields["file"], path, line)
            got[int(fields["line"])] = fields["error"]
        self.assertEqual(sorted(got), [2, 3, 4])
        self.assertIn("no key=value after login", got[2])
        self.assertIn("given twice (first on line 1)", got[3])
        self.assertIn("unknown key", got[4])
        raw = [line for line in proxy.log().splitlines()
               if not line.startswith("ts=")]
        self.assertEqual(raw, [])

        # Still serving, old clients and new.
        self.assertTrue(proxy.running())
        self.assertReply(before.command("NOOP"), 250)
        self.ehloed(proxy)

        # Mended, the next SIGHUP takes it.
        with open(path, "w") as f:
            f.write(good)
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_log(r"\bevent=reload\b", r"\bstatus=ok\b")
        self.assertTrue(proxy.running())


# =============================================================== install

MAN_COMPLAINT = re.compile(r"Command 'man [^']*' failed")


def run_bounded(args, timeout=2 * WAIT):
    """Runs a command in its own process group, output to a file (so that
    a grandchild keeping a pipe open cannot hang the test); kills the whole
    group if it outlasts timeout.  Returns a CompletedProcess (text)."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(WAIT)
            status = None
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if status is None:
        raise AssertionError("%s did not finish within %.0f s:\n%s"
                             % (" ".join(args), timeout, text))
    return subprocess.CompletedProcess(args, status, text, "")


def read_ini(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def unit_values(path, key):
    """Every value of key= in a systemd unit file."""
    values = []
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), line)
            if m:
                values.append(m.group(1))
    return values


class Installation:
    """`meson install --destdir` of the build directory holding the binary
    under test (SUBMITPROXY=BUILD/proxy/submitproxy), into a fresh
    directory; paths found by walking it, not by assuming the prefix."""

    def __init__(self, cleanup):
        meson = shutil.which("meson")
        if not meson:
            raise unittest.SkipTest("meson is not installed")
        self.meson = meson
        self.build = os.path.dirname(os.path.dirname(harness.binary()))
        if not os.path.isdir(os.path.join(self.build, "meson-private")):
            raise unittest.SkipTest("%s is not a meson build directory"
                                    % self.build)
        logs = os.path.join(self.build, "meson-logs")
        if not os.access(logs, os.W_OK):
            raise unittest.SkipTest("meson install writes its log to %s, "
                                    "which this user cannot write" % logs)
        self.dest = tempfile.mkdtemp(prefix="submitproxy-install-")
        cleanup(shutil.rmtree, self.dest, True)
        self.install()
        binary = self.find("sbin/submitproxy")
        self.prefix = os.path.dirname(os.path.dirname(binary))
        self.etc = os.path.dirname(os.path.dirname(
            self.find("etc/submitproxy/submitproxy.conf")))

    def install(self):
        # --no-rebuild: install what is under test, leave the build alone.
        result = run_bounded([self.meson, "install", "-C", self.build,
                              "--destdir", self.dest, "--no-rebuild"])
        if result.returncode != 0:
            raise AssertionError("meson install failed (%d):\n%s%s"
                                 % (result.returncode, result.stdout,
                                    result.stderr))
        return result

    def files(self):
        """Every installed file, relative to the destdir."""
        found = []
        for directory, _, names in os.walk(self.dest):
            for name in names:
                found.append(os.path.relpath(os.path.join(directory, name),
                                             self.dest))
        return sorted(found)

    def find(self, suffix):
        """The one installed file whose path ends with /suffix."""
        matches = [f for f in self.files() if ("/" + f).endswith("/" + suffix)]
        if len(matches) != 1:
            raise AssertionError("expected one installed .../%s, found %r "
                                 "among %r" % (suffix, matches, self.files()))
        return os.path.join(self.dest, matches[0])

    def under_prefix(self, relative):
        return os.path.join(self.prefix, relative)

    def runtime_path(self, installed):
        """Where an installed file lives once the package is in place."""
        return "/" + os.path.relpath(installed, self.dest)

    def unit_dir(self):
        return self.under_prefix("lib/systemd/system")


class Install(unittest.TestCase):

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.inst = Installation(cls.addClassCleanup)

    def assertInstalled(self, relative):
        path = self.inst.under_prefix(relative)
        self.assertTrue(os.path.isfile(path),
                        "%s is not installed under the prefix %s; "
                        "installed: %r" % (relative, self.inst.prefix,
                                           self.inst.files()))
        self.assertGreater(os.path.getsize(path), 0, "%s is empty" % path)
        return path

    def test_install_puts_the_binary_in_sbin_and_it_runs(self):
        path = self.assertInstalled("sbin/submitproxy")
        self.assertTrue(os.access(path, os.X_OK), "%s not executable" % path)
        result = tlsutil.run([path, "-V"])
        self.assertIn("submitproxy", result.stdout)

    def test_install_puts_both_man_pages_in_their_sections(self):
        self.assertInstalled("share/man/man8/submitproxy.8")
        self.assertInstalled("share/man/man5/submitproxy.conf.5")

    def test_install_puts_the_service_and_both_socket_units(self):
        for unit in ("submitproxy.service", "submitproxy-submission.socket",
                     "submitproxy-submissions.socket"):
            self.assertInstalled("lib/systemd/system/" + unit)

    def test_install_puts_the_sysusers_entry(self):
        self.assertInstalled("lib/sysusers.d/submitproxy.conf")

    def test_install_puts_the_examples_in_the_doc_directory(self):
        for name in ("submitproxy.conf.example", "pam.d-submitproxy",
                     "fail2ban-filter.conf", "fail2ban-jail.conf"):
            self.assertInstalled("share/doc/submitproxy/" + name)

    def test_install_copies_the_config_and_pam_service_to_etc(self):
        doc = self.inst.under_prefix("share/doc/submitproxy")
        pairs = [("submitproxy/submitproxy.conf", "submitproxy.conf.example"),
                 ("pam.d/submitproxy", "pam.d-submitproxy")]
        for installed, example in pairs:
            with open(os.path.join(self.inst.etc, installed), "rb") as f:
                got = f.read()
            with open(os.path.join(doc, example), "rb") as f:
                self.assertEqual(got, f.read(), installed)

    def test_installed_config_passes_the_config_check_but_its_files(self):
        # The example names /etc/submitproxy/cert.pem, which a fresh system
        # does not have: the check may complain about those files only.
        path = os.path.join(self.inst.etc, "submitproxy/submitproxy.conf")
        result = tlsutil.run([harness.binary(), "-t", "-c", path],
                             check=False)
        if result.returncode != 0:
            for line in result.stderr.splitlines():
                self.assertRegex(line, r"/etc/submitproxy/(cert|key)\.pem",
                                 "the installed config has an error other "
                                 "than a missing certificate:\n%s"
                                 % result.stderr)

    def test_second_install_keeps_an_edited_config_and_pam_service(self):
        inst = Installation(self.addCleanup)
        edited = {}
        for relative in ("submitproxy/submitproxy.conf", "pam.d/submitproxy"):
            path = os.path.join(inst.etc, relative)
            with open(path, "ab") as f:
                f.write(b"# edited by the administrator\n")
            with open(path, "rb") as f:
                edited[path] = f.read()
        inst.install()
        for path, content in edited.items():
            with open(path, "rb") as f:
                self.assertEqual(f.read(), content,
                                 "%s was overwritten by the second install"
                                 % path)

    def test_service_starts_the_installed_binary_on_the_installed_config(
            self):
        unit = self.assertInstalled("lib/systemd/system/submitproxy.service")
        binary = self.inst.runtime_path(self.inst.under_prefix(
            "sbin/submitproxy"))
        config = self.inst.runtime_path(os.path.join(
            self.inst.etc, "submitproxy/submitproxy.conf"))
        starts = unit_values(unit, "ExecStart")
        self.assertEqual(starts, ["%s -c %s" % (binary, config)])
        for pre in unit_values(unit, "ExecStartPre"):
            self.assertTrue(pre.startswith(binary + " "), pre)

    def test_socket_unit_names_are_listeners_of_the_installed_config(self):
        config = read_ini(os.path.join(self.inst.etc,
                                       "submitproxy/submitproxy.conf"))
        for unit in ("submitproxy-submission.socket",
                     "submitproxy-submissions.socket"):
            path = self.inst.under_prefix("lib/systemd/system/" + unit)
            names = unit_values(path, "FileDescriptorName")
            self.assertEqual(len(names), 1, "%s: %r" % (unit, names))
            section = "listener " + names[0]
            self.assertIn(section, config.sections(), unit)
            ports = {harness.parse_address(a)[1] for a in
                     config[section]["address"].split(",")}
            listen = unit_values(path, "ListenStream")
            self.assertEqual({int(v.rsplit(":", 1)[-1]) for v in listen},
                             ports, "%s listens where [%s] does not"
                             % (unit, section))

    def test_sysusers_creates_the_user_of_the_installed_config(self):
        config = read_ini(os.path.join(self.inst.etc,
                                       "submitproxy/submitproxy.conf"))
        user = config["server"]["user"]
        path = self.assertInstalled("lib/sysusers.d/submitproxy.conf")
        with open(path) as f:
            users = [line.split()[1] for line in f
                     if line.split() and line.split()[0] == "u"]
        self.assertIn(user, users)

    def test_installed_pam_service_is_the_one_the_config_names(self):
        config = read_ini(os.path.join(self.inst.etc,
                                       "submitproxy/submitproxy.conf"))
        service = config["auth"].get("pam_service", "submitproxy")
        self.assertTrue(os.path.isfile(os.path.join(self.inst.etc, "pam.d",
                                                    service)),
                        "no %s/pam.d/%s" % (self.inst.etc, service))

    def test_systemd_analyze_verify_accepts_the_installed_units(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        work = tempfile.mkdtemp(prefix="submitproxy-verify-")
        self.addCleanup(shutil.rmtree, work, True)
        # Can it verify at all here?  A trivial unit must pass.
        probe = os.path.join(work, "submitproxy-probe.service")
        with open(probe, "w") as f:
            f.write("[Service]\nType=oneshot\nExecStart=%s\n"
                    % (shutil.which("true") or "/bin/true"))
        result = run_bounded([analyze, "verify", probe])
        if result.returncode != 0:
            self.skipTest("systemd-analyze verify cannot run here: %s"
                          % (result.stderr.strip() or result.stdout.strip()))
        os.unlink(probe)
        # The units name the runtime paths (PREFIX/sbin/submitproxy): point
        # them into the destdir, where the files are.
        units = []
        for name in ("submitproxy.service", "submitproxy-submission.socket",
                     "submitproxy-submissions.socket"):
            with open(os.path.join(self.inst.unit_dir(), name)) as f:
                text = f.read()
            for top in (self.inst.prefix, self.inst.etc):
                runtime = self.inst.runtime_path(top)
                text = re.sub(r"(?<![\w/])%s/" % re.escape(runtime),
                              top + "/", text)
            path = os.path.join(work, name)
            with open(path, "w") as f:
                f.write(text)
            units.append(path)
        result = run_bounded([analyze, "verify"] + units)
        complaints = [line for line in
                      (result.stdout + result.stderr).splitlines()
                      if line.strip() and not MAN_COMPLAINT.search(line)]
        self.assertEqual(complaints, [],
                         "systemd-analyze verify (status %d):\n%s%s"
                         % (result.returncode, result.stdout, result.stderr))


if __name__ == "__main__":
    unittest.main()
