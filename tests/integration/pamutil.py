"""PAM set-up for submitproxy's AUTH integration tests.

Two ways to give the auth helper a real PAM stack:

  MatrixPam   pam_wrapper + pam_matrix (no root needed): the proxy is
              started with libpam_wrapper.so preloaded, which makes PAM read
              its service files from a test directory; pam_matrix checks
              passwords against a "user:password:service" file there.
              slow=True puts pam_exec running "/bin/sleep N" in front of it,
              a PAM module that blocks for N seconds.
  UnixPam     the real pam_unix with a throw-away system user and a service
              file in /etc/pam.d (root only: SkipTest otherwise).  Both are
              removed at the test's cleanup, whether it passed or failed.

    pam = pamutil.MatrixPam(self, {"alice": password})
    proxy = pamutil.PamProxy(self, pki, pam, auth={"failure_delay": "1s"})

PamProxy is a tlsutil.TlsProxy (STARTTLS listener "starttls", implicit-TLS
listener "implicit", harness's plain listener "plain") with an [auth]
section for the PAM service, the environment pam_wrapper needs, and a
stub SMTP backend.  It knows the helper's process tree (network process,
PAM workers) and, when it stops, fails the test if any secret it was told
about (passwords, and the base64 forms a client sends) is in the log.

Python standard library only; every wait is bounded by harness.WAIT.
"""

import base64
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import harness
import tlsutil
from harness import WAIT

SERVICE = "submitproxy"

LIBRARY_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                "/usr/lib64", "/usr/lib"]


def _find(*relative):
    """The first existing LIBRARY_DIRS/relative[i], or None."""
    for directory in LIBRARY_DIRS:
        for rel in relative:
            path = os.path.join(directory, rel)
            if os.path.exists(path):
                return path
    return None


def pam_wrapper_paths():
    """(libpam_wrapper.so, pam_matrix.so, pam_exec.so or None); SkipTest
    when pam_wrapper is not installed (Debian: libpam-wrapper)."""
    library = _find("libpam_wrapper.so", "libpam_wrapper.so.0")
    matrix = _find("pam_wrapper/pam_matrix.so")
    if not library or not matrix:
        raise unittest.SkipTest(
            "pam_wrapper is not installed (libpam_wrapper.so and "
            "pam_wrapper/pam_matrix.so; Debian package libpam-wrapper)")
    return library, matrix, _find("security/pam_exec.so")


def write_other_service(services_dir):
    """A deny-all "other" service in a pam_wrapper service directory.
    libpam reads the fallback service "other" with every service, from
    pam_wrapper's copy of the directory as from /etc/pam.d; without one
    each PAM transaction logs "PWRAP_ERROR ... _pam_init_handlers: no
    default config other" into the proxy's log."""
    deny = _find("security/pam_deny.so")
    if not deny:
        return
    with open(os.path.join(services_dir, "other"), "w") as f:
        for kind in ("auth", "account", "password", "session"):
            f.write("%s required %s\n" % (kind, deny))


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def secret_forms(user, password):
    """What a client may send that reveals password: the password, its
    base64 (AUTH LOGIN) and the base64 of the PLAIN messages for user."""
    return {password, b64(password),
            b64("\0%s\0%s" % (user, password)),
            b64("%s\0%s\0%s" % (user, user, password))}


def asan_options_preload_ok():
    """$ASAN_OPTIONS plus verify_asan_link_order=0: ASan insists on being
    first in the library list, and a preloaded library comes before it."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return (asan + ":" if asan else "") + "verify_asan_link_order=0"


# ------------------------------------------------------------- pam_wrapper

class MatrixPam:
    """A pam_wrapper service directory: the service file SERVICE with
    pam_matrix over a password file holding users ({name: password}).

    slow: seconds a pam_exec "/bin/sleep" module blocks each "auth" call
    before pam_matrix runs (None: no such module)."""

    def __init__(self, test, users, slow=None, service=SERVICE):
        self.library, self.matrix, self.pam_exec = pam_wrapper_paths()
        if slow is not None and not self.pam_exec:
            raise unittest.SkipTest("pam_exec.so is not installed (Debian "
                                    "package libpam-modules)")
        self.service = service
        self.users = dict(users)
        self.dir = tempfile.mkdtemp(prefix="submitproxy-pam-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.passdb = os.path.join(self.dir, "passdb")
        with open(self.passdb, "w") as f:
            for name, password in self.users.items():
                f.write("%s:%s:%s\n" % (name, password, service))
        lines = []
        if slow is not None:
            lines.append("auth required %s quiet /bin/sleep %s"
                         % (self.pam_exec, slow))
        lines.append("auth required %s passdb=%s" % (self.matrix, self.passdb))
        lines.append("account required %s passdb=%s"
                     % (self.matrix, self.passdb))
        self.services_dir = os.path.join(self.dir, "services")
        os.mkdir(self.services_dir)
        with open(os.path.join(self.services_dir, service), "w") as f:
            f.write("\n".join(lines) + "\n")
        write_other_service(self.services_dir)

    def environment(self):
        """Variables to start the proxy with."""
        return {"LD_PRELOAD": self.library, "PAM_WRAPPER": "1",
                "PAM_WRAPPER_SERVICE_DIR": self.services_dir,
                # pam_wrapper dlopen()s libpam with RTLD_DEEPBIND, which
                # the sanitizer runtime refuses (google/sanitizers#611);
                # this pam_wrapper reads the switch under uid_wrapper's
                # name, newer ones under their own.
                "UID_WRAPPER_DISABLE_DEEPBIND": "1",
                "PAM_WRAPPER_DISABLE_DEEPBIND": "1",
                "ASAN_OPTIONS": asan_options_preload_ok()}

    def secrets(self):
        found = set()
        for name, password in self.users.items():
            found |= secret_forms(name, password)
        return found


# ----------------------------------------------------------------- pam_unix

def require_root(what):
    if os.geteuid() != 0:
        raise unittest.SkipTest("%s needs root (it creates a system user and "
                                "a file in /etc/pam.d); run the suite as "
                                "root, as CI does" % what)


def _run(args, input=None):
    try:
        result = subprocess.run(args, input=input, capture_output=True,
                                text=True, timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not finish within %.0f s"
                             % (" ".join(args), WAIT)) from None
    if result.returncode != 0:
        raise AssertionError("%s exited with %d: %s%s"
                             % (" ".join(args), result.returncode,
                                result.stdout, result.stderr))
    return result


class UnixPam:
    """A system user sp-test-<random> with password, and a PAM service
    submitproxy-test-<random> in /etc/pam.d using pam_unix for "auth" and
    "account".  Root only.  Removed at the test's cleanup."""

    def __init__(self, test, password):
        require_root("the pam_unix test")
        for command in ("useradd", "userdel", "usermod", "chpasswd", "chage"):
            if not shutil.which(command):
                raise unittest.SkipTest("the %s command is not installed"
                                        % command)
        if not _find("security/pam_unix.so"):
            raise unittest.SkipTest("pam_unix.so is not installed")
        if not os.path.isdir("/etc/pam.d"):
            raise unittest.SkipTest("no /etc/pam.d")
        tag = secrets.token_hex(4)
        self.user = "sp-test-" + tag
        self.password = password
        self.service = "submitproxy-test-" + tag
        self.service_path = os.path.join("/etc/pam.d", self.service)
        # Cleanups first: they must run even if a step below fails.
        test.addCleanup(self._remove_user)
        test.addCleanup(self._remove_service)
        with open(self.service_path, "w") as f:
            f.write("# submitproxy integration test, removed when it ends\n"
                    "auth required pam_unix.so\n"
                    "account required pam_unix.so\n")
        shell = "/usr/sbin/nologin"
        if not os.path.exists(shell):
            shell = "/bin/false"
        _run(["useradd", "-M", "-s", shell, self.user])
        _run(["chpasswd"], input="%s:%s\n" % (self.user, password))

    def lock(self):
        _run(["usermod", "-L", self.user])

    def expire(self):
        """The account expired (the password itself is still right)."""
        _run(["chage", "-E", "0", self.user])

    def environment(self):
        """Under ASan, crypt_r() is intercepted, and the interceptor finds
        the real function only if libcrypt is loaded at start: pam_unix
        brings it in later with dlopen(), and its call through the
        interceptor then jumps to address 0.  Preloading libcrypt (which
        pam_unix loads anyway) makes the sanitized build testable with
        the real pam_unix; it changes nothing for a plain build."""
        libcrypt = _find("libcrypt.so.1")
        if not libcrypt:
            return {}
        return {"LD_PRELOAD": libcrypt,
                "ASAN_OPTIONS": asan_options_preload_ok()}

    def secrets(self):
        return secret_forms(self.user, self.password)

    def _remove_user(self):
        subprocess.run(["userdel", self.user], capture_output=True,
                       timeout=WAIT)

    def _remove_service(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.service_path)


# ------------------------------------------------------------ stub backend

class StubBackend:
    """A minimal ESMTP server on 127.0.0.1 that accepts everything, so that
    a login still ends in 235 once the proxy connects to its backend at
    AUTH success.  Lines received are kept in .received."""

    def __init__(self, test):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self._lock = threading.Lock()
        self._stopping = False
        self._connections = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        test.addCleanup(self.stop)

    def stop(self):
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(WAIT)

    def _accept(self):
        while not self._stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(60)
        buf = b""
        in_data = False
        try:
            conn.sendall(b"220 backend.example ESMTP stub\r\n")
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.rstrip(b"\r")
                    if in_data:
                        if line == b".":
                            in_data = False
                            conn.sendall(b"250 2.0.0 queued\r\n")
                        continue
                    with self._lock:
                        self.received.append(line)
                    verb = line.split(b" ", 1)[0].upper()
                    if verb == b"EHLO":
                        conn.sendall(b"250-backend.example\r\n"
                                     b"250-PIPELINING\r\n"
                                     b"250-8BITMIME\r\n"
                                     b"250 SIZE 104857600\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        conn.sendall(b"354 go ahead\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 2.0.0 bye\r\n")
                        return
                    else:
                        conn.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()


# ------------------------------------------------------------------ Proxy

@contextlib.contextmanager
def _environment(variables):
    """Sets variables in this process's environment for the duration (the
    proxy is started with the environment of the test process)."""
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


def _children(pid):
    """Pids of the children of process pid (every thread's), from /proc."""
    found = set()
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found |= {int(p) for p in f.read().split()}
        except OSError:
            pass
    return found


def _test_failed(test):
    """Whether the unittest result already holds a failure or error of
    test."""
    result = getattr(getattr(test, "_outcome", None), "result", None)
    for failed, _ in (getattr(result, "failures", []) +
                      getattr(result, "errors", [])):
        if failed is test:
            return True
    return False


class PamProxy(tlsutil.TlsProxy):
    """A TlsProxy whose auth helper uses pam (a MatrixPam or UnixPam).

    auth:    [auth] keys over the defaults below (the PAM service is set
             from pam).
    server:  [server] keys over harness's.
    listeners, limits, tls: as tlsutil.tls_config().
    """

    AUTH_DEFAULTS = {
        "mechanisms": "PLAIN LOGIN",
        "failure_delay": "200ms",
    }

    def __init__(self, test, pki, pam, auth=None, server=None, start=True,
                 **kw):
        self.pam = pam
        self.secrets = set(pam.secrets())
        self.backend = StubBackend(test)
        auth_keys = dict(self.AUTH_DEFAULTS)
        auth_keys["pam_service"] = pam.service
        auth_keys.update(auth or {})
        extra = {"auth": auth_keys,
                 "backend": {"address": "127.0.0.1:%d" % self.backend.port}}
        if server:
            extra["server"] = server
        super().__init__(test, pki, start=start, extra=extra, **kw)

    def start(self):
        with _environment(self.pam.environment()):
            super().start()

    # -- secrets

    def add_secret(self, *values):
        """Values that must never appear in the log (a wrong password, the
        base64 a test sent)."""
        self.secrets.update(v for v in values if v)

    def leaked_secrets(self):
        """[(secret, log line), ...] for every secret found in the log or
        on stdout."""
        text = self.log()
        try:
            with open(self.stdout_path, "rb") as f:
                text += f.read().decode("utf-8", "replace")
        except OSError:
            pass
        leaks = []
        for secret in sorted(self.secrets):
            for line in text.splitlines():
                if secret in line:
                    leaks.append((secret, line))
        return leaks

    def stop(self):
        # harness prints the log when its own check sees the test failed;
        # inside a cleanup that check cannot tell (unittest resets its
        # flag per cleanup), the test result can.
        show_log = _test_failed(self.test) and not self._test_failed()
        try:
            super().stop()
        finally:
            if show_log:
                sys.stderr.write("\n---- submitproxy stderr (%s) ----\n%s"
                                 "---- end ----\n"
                                 % (self.log_path, self.log()))
            leaks = self.leaked_secrets()
            if leaks:
                raise AssertionError(
                    "a secret is in the log: %s"
                    % "; ".join("%r in %r" % leak for leak in leaks[:5]))

    # -- processes

    @property
    def helper_pid(self):
        """The auth helper: the process the test started."""
        return self.process.pid

    def network_pid(self):
        """The network process, from the "event=start ... pid=N" line."""
        line = self.wait_log(r"\bevent=start\b", r"\bpid=\d+")
        return int(harness.parse_log_fields(line)["pid"])

    def worker_pids(self):
        """The PAM worker processes: the helper's children other than the
        network process that run the proxy's binary (not, say, a command
        a PAM module started)."""
        binary = os.path.realpath(harness.binary())
        pids = []
        for pid in _children(self.helper_pid) - {self.network_pid()}:
            try:
                if os.path.realpath("/proc/%d/exe" % pid) != binary:
                    continue
            except OSError:
                continue
            pids.append(pid)
        return sorted(pids)

    def wait_workers(self, count, exclude=(), timeout=WAIT):
        """Waits until the helper has count workers, none of them in
        exclude (pids of workers that were killed); returns their pids."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) == count and not set(pids) & set(exclude):
                return pids
            if time.monotonic() > deadline:
                self._fail_with_log(
                    "expected %d PAM workers (not %s) within %.0f s, the "
                    "helper %d has %s" % (count, list(exclude), timeout,
                                          self.helper_pid, pids))
            time.sleep(0.05)

    def busy_workers(self):
        """Workers that have a child process (with the slow stack: the
        /bin/sleep that pam_exec runs)."""
        return [pid for pid in self.worker_pids() if _children(pid)]

    def wait_busy_worker(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            busy = self.busy_workers()
            if busy:
                return busy
            if time.monotonic() > deadline:
                self._fail_with_log("no PAM worker busy within %.0f s"
                                    % timeout)
            time.sleep(0.02)


def random_password(prefix="pw"):
    """A password no log line can contain by chance."""
    return "%s-%s" % (prefix, secrets.token_hex(8))


def fail2ban_filters(root):
    """Files under root/systemd and root/config whose path names fail2ban
    and that hold a failregex."""
    found = []
    for top in ("systemd", "config"):
        for directory, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(directory, name)
                if "fail2ban" not in os.path.relpath(path, root):
                    continue
                try:
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                except (OSError, UnicodeDecodeError):
                    continue
                if re.search(r"^\s*failregex\s*=", text, re.M):
                    found.append(path)
    return sorted(found)


def fail2ban_jail_backends(root):
    """The backend = values of the fail2ban jail files (files naming
    fail2ban under root/systemd or root/config that hold an "enabled" or
    "filter" key), lower-cased."""
    backends = []
    for top in ("systemd", "config"):
        for directory, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(directory, name)
                if "fail2ban" not in os.path.relpath(path, root):
                    continue
                if not fail2ban_option(path, "filter"):
                    continue
                backends += [v.lower() for v in
                             fail2ban_option(path, "backend")]
    return backends


def fail2ban_option(path, option):
    """The regexes of a fail2ban filter option (failregex, ignoreregex):
    one per line, continuation lines included, %% unescaped."""
    values = []
    in_option = False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = re.match(r"^(\w+)\s*=\s?(.*)$", line)
            if m:
                in_option = m.group(1) == option
                if in_option and m.group(2).strip():
                    values.append(m.group(2).strip())
                continue
            if in_option and line[:1] in (" ", "\t") and line.strip() \
                    and not line.lstrip().startswith(("#", ";")):
                values.append(line.strip())
            elif not line.strip():
                continue
            else:
                in_option = False
    return [v.replace("%%", "%") for v in values]


def fail2ban_python_regex(failregex):
    """A fail2ban failregex as a Python regex: <HOST> (and <ADDR>, <IP4>)
    become a named group host."""
    named = [False]

    def host(match):
        if named[0]:
            return r"\S+"
        named[0] = True
        return r"(?P<host>\S+)"
    return re.compile(re.sub(r"<(?:HOST|ADDR|IP4|IP6)>", host, failregex))
