"""SMTP AUTH (RFC 4954, RFC 4616 PLAIN, the LOGIN mechanism) as real clients
see it, against the proxy's auth helper running real PAM (DESIGN.md
"Authentication"):

- logins with smtplib and swaks over STARTTLS and implicit TLS, PLAIN and
  LOGIN; wrong passwords, unknown users, the raw SASL exchange (334
  challenges, "*" cancel, bad base64, authzid), mechanisms offered;
- where AUTH is allowed (TLS, EHLO first, once per session);
- throttling: a failure delay doubling per failure, a connection closed
  after max_failures, an address refused after address_failure_limit
  failures in address_failure_window;
- one log line per success and per failure (and the fail2ban filter that
  reads them), and no password or its base64 in the log, ever: every
  PamProxy checks its log when it stops;
- the helper: slow PAM neither blocks the event loop nor serializes logins,
  a killed PAM worker turns its request into 454 and is replaced, and a
  PAM answer slower than [auth] timeout is a 454;
- as root, the real pam_unix with a throw-away system user: right password,
  locked account, expired account.

PAM: pam_wrapper + pam_matrix (pamutil.MatrixPam) for everything that does
not need root; pamutil.UnixPam when running as root (skipped otherwise).
Loopback only; configured delays are short and every wait is bounded; no
test asserts that something happened *quickly*, only in which order or
after at least how long.
"""

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pamutil  # noqa: E402
import tlsutil  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402
from pamutil import b64  # noqa: E402

USER = "alice"
CLIENT = "client.example"
USERNAME_PROMPT = "VXNlcm5hbWU6"   # base64 "Username:"
PASSWORD_PROMPT = "UGFzc3dvcmQ6"   # base64 "Password:"


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()    # SkipTest here, once, without openssl


def pki():
    return tlsutil.shared_pki()


def client_context():
    return tlsutil.client_context(None)


class AuthTestCase(ProxyTestCase):

    def setUp(self):
        self.password = pamutil.random_password()
        self.wrong = pamutil.random_password("wrong")

    # -- proxies

    def proxy(self, auth=None, slow=None, users=None, **kw):
        """A PamProxy over pam_wrapper with USER and self.password (or
        users), the slow stack if slow (seconds)."""
        if users is None:
            users = {USER: self.password}
        pam = pamutil.MatrixPam(self, users, slow=slow)
        proxy = pamutil.PamProxy(self, pki(), pam, auth=auth, **kw)
        proxy.add_secret(*pamutil.secret_forms(USER, self.wrong))
        return proxy

    # -- clients

    def tls_client(self, proxy, listener="starttls", source=None):
        """A Raw client through TLS (STARTTLS or implicit, after the
        listener's mode) and EHLO; the EHLO reply is in .ehlo."""
        client = proxy.connect(listener, source=source)
        mode = proxy.sections["listener " + listener]["mode"]
        if mode == "implicit-tls":
            client.wrap_tls(client_context())
            self.assertReply(client.read_reply(), 220)
        else:
            self.assertReply(client.read_reply(), 220)
            self.assertReply(client.command("EHLO " + CLIENT), 250)
            self.assertReply(client.command("STARTTLS"), 220)
            client.wrap_tls(client_context())
        client.ehlo = client.command("EHLO " + CLIENT)
        self.assertReply(client.ehlo, 250)
        return client

    def plain(self, proxy, user, password, authzid=""):
        """The base64 PLAIN message, remembered as a secret."""
        blob = b64("%s\0%s\0%s" % (authzid, user, password))
        proxy.add_secret(blob, password, b64(password))
        return blob

    def auth_plain(self, proxy, client, user=USER, password=None,
                   timeout=None):
        """AUTH PLAIN with an initial response; returns the reply."""
        password = self.password if password is None else password
        return client.command("AUTH PLAIN " + self.plain(proxy, user,
                                                         password),
                              timeout=timeout)

    def assertOk(self, reply):
        self.assertReply(reply, 235, "2.7.0", "Authentication successful")

    def smtplib_login(self, proxy, mechanism, implicit=False):
        """Logs in with smtplib, letting it pick only mechanism; returns
        login()'s (code, text)."""
        if implicit:
            smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("implicit"),
                                    local_hostname=CLIENT, timeout=WAIT,
                                    context=client_context())
        else:
            smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                                local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        if not implicit:
            smtp.ehlo()
            smtp.starttls(context=client_context())
        smtp.ehlo()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        self.assertIn(mechanism, offered,
                      "EHLO over TLS offers AUTH %s" % " ".join(offered))
        smtp.esmtp_features["auth"] = mechanism
        return smtp.login(USER, self.password)

    def swaks(self, proxy, mechanism, implicit=False):
        swaks = shutil.which("swaks")
        if not swaks:
            self.skipTest("the swaks command is not installed")
        listener = "implicit" if implicit else "starttls"
        args = [swaks, "--server", "127.0.0.1",
                "--port", str(proxy.port(listener)),
                "--ehlo", CLIENT,
                "--tls-on-connect" if implicit else "--tls",
                "--auth", mechanism, "--auth-user", USER,
                "--auth-password", self.password,
                "--quit-after", "AUTH", "--timeout", str(int(WAIT))]
        try:
            result = subprocess.run(args, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True,
                                    errors="replace", timeout=2 * WAIT)
        except subprocess.TimeoutExpired as e:
            self.fail("swaks did not finish within %.0f s: %r"
                      % (2 * WAIT, e.stdout))
        return result


# ------------------------------------------------------------------ logins

class Login(AuthTestCase):

    def test_smtplib_plain_over_starttls_is_235(self):
        proxy = self.proxy()
        code, text = self.smtplib_login(proxy, "PLAIN")
        self.assertEqual((code, text), (235, b"2.7.0 Authentication "
                                             b"successful"))

    def test_smtplib_login_over_starttls_is_235(self):
        proxy = self.proxy()
        code, text = self.smtplib_login(proxy, "LOGIN")
        self.assertEqual((code, text), (235, b"2.7.0 Authentication "
                                             b"successful"))

    def test_smtplib_plain_over_implicit_tls_is_235(self):
        proxy = self.proxy()
        code, text = self.smtplib_login(proxy, "PLAIN", implicit=True)
        self.assertEqual((code, text), (235, b"2.7.0 Authentication "
                                             b"successful"))

    def test_smtplib_login_over_implicit_tls_is_235(self):
        proxy = self.proxy()
        code, text = self.smtplib_login(proxy, "LOGIN", implicit=True)
        self.assertEqual((code, text), (235, b"2.7.0 Authentication "
                                             b"successful"))

    def test_swaks_auth_plain_over_starttls_succeeds(self):
        proxy = self.proxy()
        result = self.swaks(proxy, "PLAIN")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"(?m)^<~\s+235 2\.7\.0 ")

    def test_swaks_auth_login_over_starttls_succeeds(self):
        proxy = self.proxy()
        result = self.swaks(proxy, "LOGIN")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"(?m)^<~\s+235 2\.7\.0 ")

    def test_swaks_auth_plain_over_implicit_tls_succeeds(self):
        proxy = self.proxy()
        result = self.swaks(proxy, "PLAIN", implicit=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"(?m)^<~\s+235 2\.7\.0 ")

    def test_wrong_password_is_535_5_7_8(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535, "5.7.8")

    def test_unknown_user_is_535_5_7_8(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, user="nobody",
                                         password=self.wrong),
                         535, "5.7.8")

    def test_session_goes_on_after_535_and_a_retry_can_succeed(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535, "5.7.8")
        self.assertOk(self.auth_plain(proxy, client))


# ---------------------------------------------------------- SASL exchange

class SaslExchange(AuthTestCase):

    def test_auth_plain_without_initial_response_gets_an_empty_334(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertEqual(client.command("AUTH PLAIN"), (334, [""]))
        self.assertEqual(client.last_reply_lines, [b"334 "])
        self.assertOk(client.command(self.plain(proxy, USER, self.password)))

    def test_auth_login_prompts_for_username_then_password(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        proxy.add_secret(b64(self.password))
        self.assertEqual(client.command("AUTH LOGIN"),
                         (334, [USERNAME_PROMPT]))
        self.assertEqual(client.command(b64(USER)), (334, [PASSWORD_PROMPT]))
        self.assertOk(client.command(b64(self.password)))

    def test_auth_login_with_initial_username_prompts_for_password(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        proxy.add_secret(b64(self.password))
        self.assertEqual(client.command("AUTH LOGIN " + b64(USER)),
                         (334, [PASSWORD_PROMPT]))
        self.assertOk(client.command(b64(self.password)))

    def test_star_cancels_auth_plain_with_501_5_7_0(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(client.command("AUTH PLAIN"), 334)
        self.assertReply(client.command("*"), 501, "5.7.0")
        # The exchange is over: commands are commands again.
        self.assertReply(client.command("NOOP"), 250)

    def test_star_cancels_auth_login_at_the_password_prompt_with_501_5_7_0(
            self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(client.command("AUTH LOGIN " + b64(USER)), 334)
        self.assertReply(client.command("*"), 501, "5.7.0")
        self.assertReply(client.command("NOOP"), 250)

    def test_bad_base64_initial_response_is_501_5_5_2(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(client.command("AUTH PLAIN !!!!"), 501, "5.5.2")

    def test_bad_base64_response_to_334_is_501_5_5_2(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(client.command("AUTH PLAIN"), 334)
        self.assertReply(client.command("!!!!"), 501, "5.5.2")
        self.assertReply(client.command("NOOP"), 250)

    def test_authzid_other_than_the_user_is_535_5_7_8(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        blob = self.plain(proxy, USER, self.password, authzid="other")
        self.assertReply(client.command("AUTH PLAIN " + blob), 535, "5.7.8")

    def test_authzid_equal_to_the_user_is_accepted(self):
        # RFC 4616 section 2: an authzid that is the authcid's own
        # identity asks for nothing more.
        proxy = self.proxy()
        client = self.tls_client(proxy)
        blob = self.plain(proxy, USER, self.password, authzid=USER)
        self.assertOk(client.command("AUTH PLAIN " + blob))

    def test_unknown_mechanism_is_504_5_5_4(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(client.command("AUTH CRAM-MD5"), 504, "5.5.4")
        self.assertReply(client.command("NOOP"), 250)

    def test_ehlo_offers_auth_plain_login_by_default(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertEqual(tlsutil.ehlo_auth(client.ehlo), ["PLAIN", "LOGIN"])

    def test_mechanisms_plain_offers_only_plain_and_refuses_login_504(self):
        proxy = self.proxy(auth={"mechanisms": "PLAIN"})
        client = self.tls_client(proxy)
        self.assertEqual(tlsutil.ehlo_auth(client.ehlo), ["PLAIN"])
        self.assertReply(client.command("AUTH LOGIN"), 504, "5.5.4")
        self.assertOk(self.auth_plain(proxy, client))


# ------------------------------------------------ where AUTH is allowed

class AuthPlacement(AuthTestCase):

    def test_auth_before_ehlo_is_503_5_5_1(self):
        proxy = self.proxy()
        client = proxy.connect("implicit")
        client.wrap_tls(client_context())
        self.assertReply(client.read_reply(), 220)
        self.assertReply(self.auth_plain(proxy, client), 503, "5.5.1")

    def test_second_auth_after_success_is_503_5_5_1(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, client))
        self.assertReply(self.auth_plain(proxy, client), 503, "5.5.1")

    def test_mail_after_235_is_not_refused_as_unauthenticated(self):
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, client))
        reply = client.command("MAIL FROM:<a@b>")
        if reply[0] == 451:
            # No relay yet: a temporary refusal, never a pretended 250.
            self.assertReply(reply, 451, "4.3.0")
        else:
            self.assertNotEqual(reply[0], 530, harness.reply_text(reply))

    def test_auth_before_starttls_with_require_tls_is_530_must_starttls(self):
        proxy = self.proxy()
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(self.auth_plain(proxy, client), 530, "5.7.0",
                         "Must issue a STARTTLS command first")

    def test_auth_before_starttls_without_require_tls_is_538_5_7_11(self):
        proxy = self.proxy(listeners={
            "starttls": {"mode": "starttls", "require_tls": "no"}})
        client = self.ehloed(proxy, listener="starttls")
        self.assertReply(self.auth_plain(proxy, client), 538, "5.7.11")

    def test_plain_listener_with_allow_plaintext_auth_accepts_auth(self):
        proxy = self.proxy(listeners={
            "clear": {"mode": "plain", "require_tls": "no",
                      "allow_plaintext_auth": "yes"}})
        client = self.ehloed(proxy, listener="clear")
        self.assertIn("PLAIN", tlsutil.ehlo_auth(
            client.command("EHLO " + CLIENT)) or [])
        self.assertOk(self.auth_plain(proxy, client))


# --------------------------------------------------------------- throttling

def timed(function, *args, **kw):
    start = time.monotonic()
    result = function(*args, **kw)
    return result, time.monotonic() - start


class Throttling(AuthTestCase):

    def test_failure_reply_waits_failure_delay_doubling_per_failure(self):
        proxy = self.proxy(auth={"failure_delay": "1s", "max_failures": 3})
        client = self.tls_client(proxy)
        reply, first = timed(self.auth_plain, proxy, client,
                             password=self.wrong)
        self.assertReply(reply, 535, "5.7.8")
        reply, second = timed(self.auth_plain, proxy, client,
                              password=self.wrong)
        self.assertReply(reply, 535, "5.7.8")
        self.assertGreaterEqual(first, 0.9, "first 535 after %.2f s" % first)
        self.assertGreaterEqual(second, 1.8,
                                "second 535 after %.2f s" % second)

    def test_max_failures_th_failure_gets_421_4_7_0_and_is_disconnected(
            self):
        proxy = self.proxy(auth={"failure_delay": "100ms",
                                 "max_failures": 3})
        client = self.tls_client(proxy)
        for _ in range(2):
            self.assertReply(self.auth_plain(proxy, client,
                                             password=self.wrong),
                             535, "5.7.8")
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         421, "4.7.0")
        client.expect_closed()

    def address_limit_proxy(self, **auth):
        keys = {"address_failure_limit": 2, "max_failures": 10,
                "failure_delay": "100ms"}
        keys.update(auth)
        return self.proxy(auth=keys)

    def fail_twice_from_loopback(self, proxy):
        """Two failed AUTHs from 127.0.0.1, on two connections."""
        for _ in range(2):
            client = self.tls_client(proxy)
            self.assertReply(self.auth_plain(proxy, client,
                                             password=self.wrong),
                             535, "5.7.8")
            client.close()

    def test_address_over_failure_limit_gets_454_even_with_right_password(
            self):
        proxy = self.address_limit_proxy()
        self.fail_twice_from_loopback(proxy)
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 454, "4.7.0")
        proxy.wait_log(r"\breason=address_auth_limit\b")

    def test_address_failure_limit_does_not_refuse_another_address(self):
        if not harness.can_bind("127.0.0.2"):
            self.skipTest("cannot bind 127.0.0.2")
        proxy = self.address_limit_proxy()
        self.fail_twice_from_loopback(proxy)
        self.assertReply(self.auth_plain(proxy, self.tls_client(proxy)),
                         454, "4.7.0")
        other = self.tls_client(proxy, source="127.0.0.2")
        self.assertOk(self.auth_plain(proxy, other))

    def test_address_failure_limit_lifts_after_the_window(self):
        proxy = self.address_limit_proxy(address_failure_window="2s")
        self.fail_twice_from_loopback(proxy)
        self.assertReply(self.auth_plain(proxy, self.tls_client(proxy)),
                         454, "4.7.0")
        time.sleep(3)
        self.assertOk(self.auth_plain(proxy, self.tls_client(proxy)))


# ------------------------------------------------------------------ logging

class Logging(AuthTestCase):

    def test_login_logs_auth_ok_with_address_user_and_mechanism(self):
        proxy = self.proxy()
        plain = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, plain))
        login = self.tls_client(proxy)
        proxy.add_secret(b64(self.password))
        self.assertReply(login.command("AUTH LOGIN " + b64(USER)), 334)
        self.assertOk(login.command(b64(self.password)))
        for client, mech in ((plain, "PLAIN"), (login, "LOGIN")):
            fields = proxy.session_log(client, r"\bevent=auth_ok\b")
            self.assertEqual((fields.get("ip"), fields.get("user"),
                              fields.get("mech")),
                             ("127.0.0.1", USER, mech), fields)

    def test_each_failure_logs_one_auth_fail_line(self):
        proxy = self.proxy(auth={"failure_delay": "100ms",
                                 "max_failures": 10})
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535)
        proxy.add_secret(*pamutil.secret_forms("nobody", self.wrong))
        self.assertReply(client.command("AUTH LOGIN " + b64("nobody")), 334)
        self.assertReply(client.command(b64(self.wrong)), 535)
        blob = self.plain(proxy, USER, self.password, authzid="other")
        self.assertReply(client.command("AUTH PLAIN " + blob), 535)
        self.assertReply(client.command("NOOP"), 250)
        lines = proxy.session_lines(client, r"\bevent=auth_fail\b")
        self.assertEqual(len(lines), 3, "\n".join(lines))
        got = [harness.parse_log_fields(line) for line in lines]
        # The user of a refused authzid is not checked: the exchange may
        # be refused before the user name is taken apart.
        self.assertEqual([(f.get("ip"), f.get("user"), f.get("mech"))
                          for f in got[:2]] + [(got[2].get("ip"),
                                                got[2].get("mech"))],
                         [("127.0.0.1", USER, "PLAIN"),
                          ("127.0.0.1", "nobody", "LOGIN"),
                          ("127.0.0.1", "PLAIN")], "\n".join(lines))
        for line, fields in zip(lines, got):
            self.assertRegex(line, r'\bevent=auth_fail ip=127\.0\.0\.1 '
                                   r'user="[^"]*" mech=\S+ reason=\S+')
            self.assertTrue(fields.get("reason"), line)

    def test_passwords_and_their_base64_never_reach_the_log(self):
        proxy = self.proxy(auth={"failure_delay": "100ms",
                                 "max_failures": 10})
        proxy.add_secret(b64(self.password), b64(self.wrong))
        client = self.tls_client(proxy)
        # Every path a secret goes through: initial response, 334
        # answers, LOGIN steps, failures, cancel, garbage, success.
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535)
        self.assertReply(client.command("AUTH PLAIN"), 334)
        self.assertReply(client.command(
            self.plain(proxy, USER, self.wrong)), 535)
        self.assertReply(client.command("AUTH LOGIN"), 334)
        self.assertReply(client.command(b64(USER)), 334)
        self.assertReply(client.command(b64(self.wrong)), 535)
        self.assertReply(client.command("AUTH LOGIN " + b64(USER)), 334)
        self.assertReply(client.command("*"), 501)
        garbage = self.plain(proxy, USER, self.password)[:-2] + "!!"
        proxy.add_secret(garbage)
        self.assertReply(client.command("AUTH PLAIN " + garbage), 501)
        self.assertReply(client.command("AUTH LOGIN " + b64(USER)), 334)
        self.assertOk(client.command(b64(self.password)))
        client.command("QUIT")
        proxy.stop()    # raises if a secret is in the log


# ----------------------------------------------------------------- fail2ban

class Fail2ban(AuthTestCase):
    """The shipped fail2ban filter finds the client address in each
    event=auth_fail line and ignores successful logins."""

    def setUp(self):
        super().setUp()
        self.filters = pamutil.fail2ban_filters(harness.source_root())
        if not self.filters:
            self.skipTest("no fail2ban filter (a file with a failregex "
                          "under systemd/ or config/ named for fail2ban)")

    def auth_lines(self):
        """One event=auth_fail and one event=auth_ok line, as logged."""
        proxy = self.proxy()
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535)
        self.assertOk(self.auth_plain(proxy, client))
        client.command("QUIT")
        fail_lines = proxy.log_lines(r"\bevent=auth_fail\b")
        ok_lines = proxy.log_lines(r"\bevent=auth_ok\b")
        self.assertEqual((len(fail_lines), len(ok_lines)), (1, 1),
                         proxy.log())
        return fail_lines[0], ok_lines[0]

    def hosts(self, path, line):
        """The hosts the filter at path finds in line, by Python's re with
        <HOST> as (?P<host>\\S+); [] if an ignoreregex matches."""
        regexes = [pamutil.fail2ban_python_regex(r) for r in
                   pamutil.fail2ban_option(path, "failregex")]
        ignores = [pamutil.fail2ban_python_regex(r) for r in
                   pamutil.fail2ban_option(path, "ignoreregex")]
        self.assertTrue(regexes, "%s: no failregex" % path)
        if any(r.search(line) for r in ignores):
            return []
        return [m.group("host") for m in (r.search(line) for r in regexes)
                if m]

    def test_failregex_finds_the_address_in_auth_fail_lines(self):
        fail_line, ok_line = self.auth_lines()
        for path in self.filters:
            self.assertEqual(self.hosts(path, fail_line)[:1], ["127.0.0.1"],
                             "%s does not find 127.0.0.1 in %r"
                             % (path, fail_line))
            self.assertEqual(self.hosts(path, ok_line), [],
                             "%s matches a successful login %r"
                             % (path, ok_line))

    def test_failregex_finds_the_address_in_user_throttled_lines(self):
        # An address guessing at a login throttled from everywhere is
        # refused without PAM (event=auth_refused): one to ban as well.
        proxy = self.proxy(auth={"user_failure_limit": 1,
                                 "failure_delay": "10ms",
                                 "max_failures": 10})
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         535)
        self.assertReply(self.auth_plain(proxy, client, password=self.wrong),
                         454, "4.7.0")
        client.command("QUIT")
        line = proxy.wait_log(r"\bevent=auth_refused\b.*"
                              r"\breason=user_throttled\b")
        for path in self.filters:
            self.assertEqual(self.hosts(path, line)[:1], ["127.0.0.1"],
                             "%s does not find 127.0.0.1 in %r"
                             % (path, line))

    def test_crafted_user_name_cannot_make_the_filter_find_another_address(
            self):
        proxy = self.proxy(auth={"failure_delay": "100ms",
                                 "max_failures": 10})
        client = self.tls_client(proxy)
        for user in ('x event=auth_fail ip=192.0.2.9 y',
                     'x" event=auth_fail ip=192.0.2.9 "',
                     '" ip=192.0.2.9'):
            self.assertReply(self.auth_plain(proxy, client, user=user,
                                             password=self.wrong), 535)
        client.command("QUIT")
        lines = proxy.log_lines(r"192\.0\.2\.9")
        self.assertTrue(lines, proxy.log())
        for path in self.filters:
            for line in proxy.log().splitlines():
                for host in self.hosts(path, line):
                    self.assertEqual(host, "127.0.0.1",
                                     "%s finds %s in %r" % (path, host,
                                                            line))

    def test_failregex_finds_the_address_as_the_systemd_journal_shows_it(
            self):
        # With backend = systemd, fail2ban (filtersystemd.py,
        # formatJournalEntry) matches "HOSTNAME IDENTIFIER[PID]: MESSAGE",
        # the date coming from the journal entry, not from the text.
        if "systemd" not in pamutil.fail2ban_jail_backends(
                harness.source_root()):
            self.skipTest("no fail2ban jail with backend = systemd")
        fail_line, ok_line = self.auth_lines()
        prefix = "mail.example submitproxy[4242]: "
        for path in self.filters:
            self.assertEqual(self.hosts(path, prefix + fail_line)[:1],
                             ["127.0.0.1"],
                             "%s does not find 127.0.0.1 in the journal "
                             "line %r" % (path, prefix + fail_line))
            self.assertEqual(self.hosts(path, prefix + ok_line), [])

    def test_fail2ban_regex_counts_the_auth_fail_line_and_not_auth_ok(self):
        fail2ban_regex = shutil.which("fail2ban-regex")
        if not fail2ban_regex:
            self.skipTest("fail2ban-regex is not installed (Debian package "
                          "fail2ban)")
        fail_line, ok_line = self.auth_lines()
        log = os.path.join(tempfile.mkdtemp(prefix="submitproxy-f2b-"),
                           "submitproxy.log")
        self.addCleanup(shutil.rmtree, os.path.dirname(log), True)
        with open(log, "w") as f:
            f.write(fail_line + "\n" + ok_line + "\n")
        for path in self.filters:
            result = subprocess.run([fail2ban_regex, log, path],
                                    capture_output=True, text=True,
                                    timeout=3 * WAIT)
            self.assertRegex(result.stdout,
                             r"(?m)^Lines: 2 lines, 0 ignored, 1 matched",
                             "fail2ban-regex %s %s on\n%s\n%s\n%s%s"
                             % (log, path, fail_line, ok_line,
                                result.stdout, result.stderr))


# ------------------------------------------------------------ the helper

class Helper(AuthTestCase):

    def test_slow_pam_blocks_neither_the_event_loop_nor_other_logins(self):
        proxy = self.proxy(slow=2, auth={"helper_workers": 4,
                                         "timeout": "60s"})
        count = 20
        clients = [self.tls_client(proxy) for _ in range(count)]
        blob = self.plain(proxy, USER, self.password)
        order = []
        lock = threading.Lock()
        sent = [threading.Event() for _ in range(count)]
        replies = [None] * count

        def login(index):
            try:
                clients[index].send("AUTH PLAIN %s\r\n" % blob)
                sent[index].set()
                reply = clients[index].read_reply(timeout=90)
                with lock:
                    order.append("auth")
                replies[index] = reply
            except BaseException as e:  # reported by the main thread
                replies[index] = e
                sent[index].set()

        threads = [threading.Thread(target=login, args=(i,), daemon=True)
                   for i in range(count)]
        for thread in threads:
            thread.start()
        for event in sent:
            self.assertTrue(event.wait(WAIT), "a login thread never sent")
        observer = self.greeted(proxy, listener="starttls")
        ehlo = observer.command("EHLO " + CLIENT)
        with lock:
            order.append("ehlo")
        self.assertReply(ehlo, 250)
        # All four workers run PAM at once (each has its pam_exec child).
        deadline = time.monotonic() + WAIT
        busy = []
        while len(busy) < 4 and time.monotonic() < deadline:
            busy = proxy.busy_workers()
            time.sleep(0.02)
        self.assertEqual(len(busy), 4, "PAM workers busy at once: %r of %r"
                         % (busy, proxy.worker_pids()))
        deadline = time.monotonic() + 120
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            self.assertFalse(thread.is_alive(), "a login never finished")
        self.assertEqual(order.index("ehlo"), 0,
                         "a client's EHLO was answered only after %d of "
                         "the slow AUTHs: %r"
                         % (order.index("ehlo"), order))
        failed = [(i, r) for i, r in enumerate(replies)
                  if not (isinstance(r, tuple) and r[0] == 235)]
        self.assertEqual(failed, [], "logins that did not get 235")

    def test_killed_pam_worker_turns_its_auth_into_454_and_is_replaced(self):
        proxy = self.proxy(slow=2, auth={"helper_workers": 2})
        workers = proxy.wait_workers(2)
        client = self.tls_client(proxy)
        blob = self.plain(proxy, USER, self.password)
        client.send("AUTH PLAIN %s\r\n" % blob)
        proxy.wait_busy_worker()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        self.assertReply(client.read_reply(), 454, "4.7.0")
        # The helper says so, and starts new workers.
        for pid in workers:
            proxy.wait_log(r"\bevent=auth_worker_exit\b",
                           r"\bpid=%d\b" % pid)
        proxy.wait_workers(2, exclude=workers)
        # A new AUTH on the same connection, else (while the helper is
        # still catching up) on fresh connections, ends in 235.
        attempts = [self.auth_plain(proxy, client, timeout=WAIT)]
        deadline = time.monotonic() + WAIT
        while attempts[-1][0] != 235 and time.monotonic() < deadline:
            self.assertEqual(attempts[-1][0], 454, attempts)
            time.sleep(0.2)
            attempts.append(self.auth_plain(proxy, self.tls_client(proxy),
                                            timeout=WAIT))
        self.assertOk(attempts[-1])

    def test_pam_slower_than_auth_timeout_is_454_and_the_session_goes_on(
            self):
        proxy = self.proxy(slow=2, auth={"timeout": "1s"})
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client), 454, "4.7.0")
        self.assertReply(client.command("NOOP"), 250)


# ------------------------------------------------------------- pam_unix

class PamUnix(AuthTestCase):
    """The real pam_unix (as root): a system user, /etc/pam.d service."""

    def unix_proxy(self, prepare=None):
        pam = pamutil.UnixPam(self, self.password)
        if prepare:
            prepare(pam)
        proxy = pamutil.PamProxy(self, pki(), pam)
        proxy.add_secret(*pamutil.secret_forms(pam.user, self.wrong))
        return pam, proxy

    def test_system_user_logs_in_through_pam_unix(self):
        pam, proxy = self.unix_proxy()
        client = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, client, user=pam.user))
        fields = proxy.session_log(client, r"\bevent=auth_ok\b")
        self.assertEqual(fields.get("user"), pam.user)

    def test_a_changed_pam_stack_takes_effect_at_the_next_login(self):
        # One worker serves every login, and it keeps the stack's modules
        # loaded between them (auth_pam_hold_modules()): PAM must still
        # read the stack at each login.  (pam_wrapper reads its copy of
        # the services once: this needs the real /etc/pam.d.)
        pam = pamutil.UnixPam(self, self.password)
        proxy = pamutil.PamProxy(self, pki(), pam,
                                 auth={"helper_workers": 1})
        proxy.add_secret(*pamutil.secret_forms(pam.user, self.wrong))
        client = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, client, user=pam.user))
        client.close()
        with open(pam.service_path) as f:
            saved = f.read()
        with open(pam.service_path, "w") as f:
            f.write("auth required pam_deny.so\n"
                    "account required pam_deny.so\n")
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, user=pam.user),
                         535, "5.7.8")
        client.close()
        with open(pam.service_path, "w") as f:
            f.write(saved)
        client = self.tls_client(proxy)
        self.assertOk(self.auth_plain(proxy, client, user=pam.user))

    def test_system_user_with_wrong_password_is_535(self):
        pam, proxy = self.unix_proxy()
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, user=pam.user,
                                         password=self.wrong),
                         535, "5.7.8")

    def test_locked_system_account_is_535_with_the_right_password(self):
        pam, proxy = self.unix_proxy(lambda pam: pam.lock())
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, user=pam.user),
                         535, "5.7.8")

    def test_expired_system_account_is_535_with_the_right_password(self):
        pam, proxy = self.unix_proxy(lambda pam: pam.expire())
        client = self.tls_client(proxy)
        self.assertReply(self.auth_plain(proxy, client, user=pam.user),
                         535, "5.7.8")


if __name__ == "__main__":
    unittest.main()
