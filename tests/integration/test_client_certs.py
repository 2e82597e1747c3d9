"""Machines log in with TLS client certificates (issue 13): the
certificate-to-login map ([tls] client_cert_map), AUTH EXTERNAL (RFC 4422
Appendix A, RFC 4954), [listener] client_certificates = required,
[listener] certificate_login = implicit, revocation ([tls] client_crl,
checked for the whole chain), [sni] client_ca and resumption across SNI
names, and the "event=tls" log line.

Certificates come from certca.py (a root, an intermediate, mapped,
unmapped, expired, revoked, other-CA and embedded-NUL client
certificates), PAM from pam_wrapper + pam_matrix (pamutil.MatrixPam; as
root also the real pam_unix), the backend is a recording fake MTA that
offers XCLIENT (it shows XCLIENT LOGIN=) or, as root, a private Postfix
with XCLIENT whose Received: header shows "(Authenticated sender:
LOGIN)".  Clients: raw sockets with Python's ssl, smtplib, msmtp, curl,
swaks (certificate_login = implicit only: swaks 20201014.0 has no
EXTERNAL, "*** EXTERNAL is not a recognized auth type") and openssl
s_client; each test of a missing command is skipped with a message.

Client command lines found to work for AUTH EXTERNAL (each checked
against what it sends on the wire):

  smtplib   smtp.auth("EXTERNAL", external_auth())  where the callable
            returns None when called without a challenge (so smtplib
            sends "AUTH EXTERNAL" with no initial response) and "" for
            the 334 (an empty line).  smtp.auth("EXTERNAL", lambda
            challenge=None: "") sends "AUTH EXTERNAL " (a trailing blank:
            smtplib cannot send RFC 4954's "=") and then an empty line for
            the 334; the proxy takes a trailing blank as no initial
            response (as it does for PLAIN today), so that works too.
            For "=": smtp.docmd("AUTH", "EXTERNAL =").
  msmtp     msmtp -C /dev/null --host=127.0.0.1 --port=P
            --domain=client.example --tls=on --tls-starttls=on|off
            --tls-trust-file=ROOT --tls-cert-file=CHAIN --tls-key-file=KEY
            --auth=external --user=LOGIN --from=SENDER RCPT < MESSAGE
            (msmtp 1.8.23 with GNU SASL: --user is needed; it is sent as
            the authzid after the 334.  Without it msmtp sends nothing
            after the 334 and goes on with MAIL FROM.)
  curl      curl --url smtp://127.0.0.1:P/client.example --ssl-reqd
            --cacert ROOT --cert CHAIN --key KEY
            --login-options AUTH=EXTERNAL --mail-from SENDER
            --mail-rcpt RCPT -T MESSAGE
            (curl 7.88.1: "AUTH EXTERNAL", then "=" after the 334; with
            --user LOGIN: it sends base64(LOGIN) after the 334; with
            --sasl-ir: "AUTH EXTERNAL =".  smtps:// for implicit TLS.)

LOG FIELDS ASSUMED (the C side is not merged yet; align one side):

  event=tls ip=... version=... cipher=... sni="..." sni_match=...
      resumed=... client_cert="SUBJECT" cert_login="LOGIN"
      cert_error="REASON"
    client_cert  as today: the verified subject (RFC 2253), "" when no
                 certificate was presented or it did not verify
    cert_login   the client_cert_map login of the verified certificate,
                 "" when none (no certificate, not verified, no rule)
    cert_error   why a certificate the client presented is not used:
                 OpenSSL's verify error string, X509_verify_cert_error_
                 string() ("certificate revoked", "certificate has
                 expired", "self-signed certificate in certificate chain",
                 "unable to get certificate CRL"), "" when it verified or
                 none was presented.  Each refused certificate here fails
                 verification with exactly one error, so the first error
                 and SSL_get_verify_result()'s are the same
    All three are always present on the line (empty when not set).
  event=auth_ok ip=... user="LOGIN" mech=EXTERNAL
    also for certificate_login = implicit, once the EHLO/HELO logged in
  event=auth_fail ip=... user="LOGIN" mech=EXTERNAL reason=REASON
    reason=authzid_mismatch  another authzid (as PLAIN's)
    reason=perm_denied       pam_acct_mgmt refused (pam_matrix: the user's
                             service field names another service)
    reason=acct_expired      pam_unix, chage -E 0
  AUTH EXTERNAL without a mapped certificate: 504 5.5.4, no auth_fail
    line (like any mechanism not offered); the one line saying why is
    the event=tls line (cert_login="", and cert_error= if it did not
    verify).
  event=tls_fail ip=... listener=... reason=... client_max_version=...
      detail="..."
    client_certificates = required refusing a handshake: one line, no
    event=tls line; reason=certificate_required when none was sent
    (detail: "client certificate required") and reason=bad_certificate
    when one was sent and refused, the detail naming the verify error
    ("... certificate revoked", "... certificate has expired", "...
    self-signed certificate in certificate chain").

BEHAVIOUR ASSUMED beyond the issue's text (tests named in brackets):

  - The answer to the 334 of "AUTH EXTERNAL" may be an empty line (RFC
    4954), "=" (curl) or base64 of the login (msmtp), and "AUTH EXTERNAL "
    with a trailing blank is no initial response (smtplib) [AuthExternal].
  - The map and the verdict are taken at the end of the handshake
    (tls-conn.h): a session opened before a SIGHUP that brings in a CRL
    revoking its certificate still logs in [test_sighup_rereads_the_crl].
  - certificate_login = implicit runs the PAM account check too: a locked
    account is one auth_fail line and MAIL stays 530
    [ImplicitLogin.test_pam_locked_mapped_account_is_not_logged_in].
  - client_crl without the CRL of one CA of the chain refuses the
    certificate ("unable to get certificate CRL") [Refusals.test_crl_*].
  - -t reads the map and the CRL file: a bad rule is reported as
    "MAPFILE:LINE: ...", a missing file by its path [ConfigCheck].

Loopback only; every wait is bounded (harness.WAIT); no test asserts how
fast something happened.
"""

import contextlib
import os
import re
import shutil
import smtplib
import ssl
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import certca  # noqa: E402
import harness  # noqa: E402
import pamutil  # noqa: E402
import tlsutil  # noqa: E402
from harness import HOSTNAME, WAIT, ProxyTestCase  # noqa: E402
from pamutil import b64  # noqa: E402
from tlsutil import ehlo_auth, handshake_fails  # noqa: E402

LOGIN = "monitor"
CLIENT = "client.example"
SENDER = "monitor@example.com"
RCPT = "ops@example.net"

# What OpenSSL's X509_verify_cert_error_string() says.
REVOKED = "certificate revoked"
EXPIRED = "certificate has expired"
UNTRUSTED_ROOT = "self-signed certificate in certificate chain"
NO_CRL = "unable to get certificate CRL"

# The recording backend offers XCLIENT with LOGIN, so the proxy sends it.
XCLIENT_CAPS = ["PIPELINING", "SIZE 1000000", "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"]


def setUpModule():
    harness.require_binary()
    certca.shared()     # SkipTest here, once, without openssl


def ca():
    return certca.shared()


def message(subject):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n"
            "Sent with a client certificate.\r\n"
            % (SENDER, RCPT, subject)).encode()


def context(cert=None, **kw):
    """A client context that verifies the proxy against the test root and
    presents cert (a certca.Cert: its chain and key) if given."""
    return tlsutil.client_context(ca().root.cert,
                                  cert=cert.pair if cert else None, **kw)


def external_auth(authzid=""):
    """An smtplib auth object for EXTERNAL: no initial response unless an
    authzid is given (smtplib cannot send "="), then the authzid (or the
    empty response) for the 334."""
    def auth(challenge=None):
        if challenge is None:
            return authzid or None
        return authzid
    return auth


def write_map(path, rules):
    with open(path, "w") as f:
        f.write("\n".join(rules) + "\n")
    os.chmod(path, 0o644)


def default_rules():
    """The mapped certificate by subject (a DN with a blank: the login is
    the last word), plus rules that would give a login to the revoked,
    expired and other-CA certificates if they verified: only
    verification keeps them out."""
    authority = ca()
    return [
        "# machines that submit with a certificate (issue 13 tests)",
        "",
        "subject:%s %s" % (authority.subject(authority.mapped), LOGIN),
        "san-dns:revoked.example.com %s" % LOGIN,
        "san-dns:expired.example.com %s" % LOGIN,
        "sha256:%s %s" % (authority.fingerprint(authority.other), LOGIN),
    ]


class _ClassScope:
    """Lets backends.SmtpSink/PostfixInstance (which register their
    cleanups on a test) live for a whole test class."""

    def __init__(self, cls):
        self.cls = cls

    def addCleanup(self, function, *args, **kwargs):
        self.cls.addClassCleanup(function, *args, **kwargs)


# ------------------------------------------------------------------ Proxy

class CertProxy(pamutil.PamProxy):
    """A PamProxy (auth helper on pam, secrets checked at stop) with the
    certca certificates:

      [tls]  certificate = ca.server, client_ca = the root, client_crl =
             both CRLs, client_cert_map = a file of rules (default
             default_rules()); tls: keys over these (None removes one)
      [sni NAME] from sni: {name: {"certificate":..., "key":...,
             "client_ca":...}}
      listeners "starttls" (STARTTLS, require_tls), "implicit" (implicit
             TLS), "required" / "required_starttls" (client_certificates
             = required), "machines" (STARTTLS, certificate_login =
             implicit), besides harness's plain one
      [backend] backend: an address, or anything with .address/.port;
             default a RecordingBackend offering XCLIENT (.backend)
      [metrics] address = 127.0.0.1:metrics_port, if given
    """

    LISTENERS = {
        "starttls": {"mode": "starttls", "require_tls": "yes"},
        "implicit": {"mode": "implicit-tls"},
        "required": {"mode": "implicit-tls",
                     "client_certificates": "required"},
        "required_starttls": {"mode": "starttls", "require_tls": "yes",
                              "client_certificates": "required"},
        "machines": {"mode": "starttls", "require_tls": "yes",
                     "certificate_login": "implicit"},
    }

    def __init__(self, test, pam, backend=None, rules=None, tls=None,
                 sni=None, listeners=None, auth=None, server=None,
                 metrics_port=None, start=True):
        authority = ca()
        self.pam = pam
        self.secrets = set(pam.secrets())
        if backend is None:
            backend = backends.RecordingBackend(test, caps=XCLIENT_CAPS)
        self.backend = backend
        if isinstance(backend, str):
            address = backend
        elif getattr(backend, "address", None):
            address = backend.address
        else:
            address = "127.0.0.1:%d" % backend.port
        self.map_dir = tempfile.mkdtemp(prefix="submitproxy-certmap-")
        os.chmod(self.map_dir, 0o755)
        test.addCleanup(shutil.rmtree, self.map_dir, True)
        self.map_path = os.path.join(self.map_dir, "client-cert-map")
        write_map(self.map_path, default_rules() if rules is None else rules)
        tls_keys = {"client_ca": authority.client_ca,
                    "client_crl": authority.crl_file,
                    "client_cert_map": self.map_path}
        tls_keys.update(tls or {})
        auth_keys = dict(self.AUTH_DEFAULTS)
        auth_keys["pam_service"] = pam.service
        auth_keys.update(auth or {})
        extra = {"auth": auth_keys,
                 "backend": {"address": address, "xclient": "auto",
                             "connect_timeout": "3s", "timeout": "15s"}}
        for name, keys in (sni or {}).items():
            extra["sni " + name] = dict(keys)
        if metrics_port is not None:
            extra["metrics"] = {"address": "127.0.0.1:%d" % metrics_port}
        if server:
            merged = dict(harness.DEFAULT_CONFIG["server"])
            merged.update(server)
            extra["server"] = merged
        tlsutil.TlsProxy.__init__(
            self, test, authority, start=start,
            cert=(authority.server.cert, authority.server.key),
            tls=tls_keys,
            listeners=dict(self.LISTENERS if listeners is None
                           else listeners),
            extra=extra)

    def rewrite_map(self, rules):
        write_map(self.map_path + ".new", rules)
        os.replace(self.map_path + ".new", self.map_path)


# --------------------------------------------------------------- test case

class CertTestCase(ProxyTestCase):

    def setUp(self):
        self.password = pamutil.random_password()

    # -- proxies

    def matrix_pam(self, users=None, locked=()):
        """pam_matrix with LOGIN (self.password) and users; each name in
        locked is a user whose account check fails (pam_matrix: the
        passdb line names another service, so pam_acct_mgmt says
        PAM_PERM_DENIED)."""
        all_users = {LOGIN: self.password}
        all_users.update(users or {})
        pam = pamutil.MatrixPam(self, all_users)
        with open(pam.passdb, "a") as f:
            for name in locked:
                f.write("%s:%s:%s-elsewhere\n"
                        % (name, pamutil.random_password(), pam.service))
        return pam

    def proxy(self, users=None, locked=(), pam=None, **kw):
        return CertProxy(self, pam or self.matrix_pam(users, locked), **kw)

    # -- clients

    def client(self, proxy, cert=None, listener="implicit", ehlo=True,
               server_hostname=HOSTNAME, **kw):
        """A Raw client on listener through TLS (implicit, or EHLO and
        STARTTLS) presenting cert, and EHLO over TLS unless ehlo=False;
        the EHLO reply is in .ehlo."""
        ctx = context(cert, **kw)
        mode = proxy.sections["listener " + listener]["mode"]
        if mode == "implicit-tls":
            client = tlsutil.implicit(proxy, ctx, listener=listener,
                                      server_hostname=server_hostname)
        else:
            client = self.ehloed(proxy, listener=listener)
            tlsutil.starttls(client, ctx, server_hostname=server_hostname)
        client.ehlo = None
        if ehlo:
            client.ehlo = client.command("EHLO " + CLIENT)
            self.assertReply(client.ehlo, 250)
        return client

    def deliver(self, client, subject):
        """MAIL, RCPT, DATA and a message on a logged-in Raw client."""
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(client.command("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(client.command("DATA"), 354)
        client.send(message(subject) + b".\r\n")
        self.assertReply(client.read_reply(), 250)

    # -- assertions

    def assertOk(self, reply):
        self.assertReply(reply, 235, "2.7.0")

    def assertExternalOffered(self, client):
        mechs = ehlo_auth(client.ehlo) or []
        self.assertIn("EXTERNAL", mechs, client.ehlo)
        # EXTERNAL comes in addition to the password mechanisms.
        self.assertIn("PLAIN", mechs, client.ehlo)
        self.assertIn("LOGIN", mechs, client.ehlo)

    def assertExternalNotOffered(self, client):
        self.assertNotIn("EXTERNAL", ehlo_auth(client.ehlo) or [],
                         client.ehlo)

    def tls_fields(self, proxy, client):
        return proxy.session_log(client, r"\bevent=tls\b")

    def assertTlsLine(self, proxy, client, client_cert, cert_login,
                      cert_error=""):
        """The session's event=tls line: client_cert (a subject, "" or a
        regex when compiled), cert_login and cert_error as given."""
        fields = self.tls_fields(proxy, client)
        for key in ("client_cert", "cert_login", "cert_error"):
            self.assertIn(key, fields, fields)
        if isinstance(client_cert, re.Pattern):
            self.assertRegex(fields["client_cert"], client_cert, fields)
        else:
            self.assertEqual(fields["client_cert"], client_cert, fields)
        self.assertEqual(fields["cert_login"], cert_login, fields)
        self.assertEqual(fields["cert_error"], cert_error, fields)
        return fields

    def assertOneSessionLine(self, proxy, client, *patterns):
        """Exactly one log line of the client's session matches every
        pattern; returns its fields."""
        fields = proxy.session_log(client, *patterns)
        lines = proxy.session_lines(client, *patterns)
        self.assertEqual(len(lines), 1, "\n".join(lines))
        return fields

    def assertAuthOk(self, proxy, client, login=LOGIN):
        fields = self.assertOneSessionLine(proxy, client,
                                           r"\bevent=auth_ok\b")
        self.assertEqual((fields.get("ip"), fields.get("user"),
                          fields.get("mech")),
                         ("127.0.0.1", login, "EXTERNAL"), fields)
        return fields

    def assertAuthFail(self, proxy, client, reason=None, login=None):
        fields = self.assertOneSessionLine(proxy, client,
                                           r"\bevent=auth_fail\b")
        self.assertEqual(fields.get("mech"), "EXTERNAL", fields)
        self.assertTrue(fields.get("reason"), fields)
        if reason is not None:
            self.assertEqual(fields["reason"], reason, fields)
        if login is not None:
            self.assertEqual(fields.get("user"), login, fields)
        self.assertFalse(proxy.session_lines(client, r"\bevent=auth_ok\b"))
        return fields

    def assertBackendLogin(self, proxy, login=LOGIN):
        """The recording backend got XCLIENT ... LOGIN=login."""
        lines = proxy.backend.wait_line(r"^XCLIENT .*\bLOGIN=%s(\s|$)"
                                        % re.escape(login))
        self.assertTrue(lines)

    def assertNoBackendSession(self, proxy):
        """Nothing but the capability probe reached the backend."""
        self.assertEqual(proxy.backend.session_connections(), [])


# ---------------------------------------------------------- AUTH EXTERNAL

class AuthExternal(CertTestCase):

    def test_ehlo_offers_external_with_a_mapped_certificate(self):
        proxy = self.proxy()
        self.assertExternalOffered(self.client(proxy, ca().mapped))

    def test_ehlo_offers_external_after_starttls_and_no_auth_before(self):
        proxy = self.proxy()
        client = self.greeted(proxy, listener="starttls")
        before = client.command("EHLO " + CLIENT)
        self.assertReply(before, 250)
        self.assertIsNone(ehlo_auth(before), before)
        tlsutil.starttls(client, context(ca().mapped))
        client.ehlo = client.command("EHLO " + CLIENT)
        self.assertExternalOffered(client)

    def test_ehlo_without_a_certificate_does_not_offer_external(self):
        proxy = self.proxy()
        client = self.client(proxy)
        self.assertExternalNotOffered(client)
        self.assertEqual(ehlo_auth(client.ehlo), ["PLAIN", "LOGIN"])
        self.assertTlsLine(proxy, client, "", "")

    def test_ehlo_with_an_unmapped_certificate_does_not_offer_external(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().unmapped)
        self.assertExternalNotOffered(client)
        self.assertTlsLine(proxy, client,
                           ca().subject(ca().unmapped), "")

    def test_auth_external_equals_is_235_and_the_backend_gets_the_login(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)
        self.assertBackendLogin(proxy)
        self.deliver(client, "external equals")
        tx = proxy.backend.wait_complete(1)[0]
        self.assertIn(b"Subject: external equals", tx.message())
        self.assertReply(client.command("QUIT"), 221)

    def test_auth_external_over_starttls_is_235(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped, listener="starttls")
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)
        self.assertBackendLogin(proxy)

    def test_authzid_equal_to_the_mapped_login_is_235(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertOk(client.command("AUTH EXTERNAL " + b64(LOGIN)))
        self.assertAuthOk(proxy, client)
        self.assertBackendLogin(proxy)

    def test_no_initial_response_gets_an_empty_334_and_an_empty_line_is_235(
            self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertEqual(client.command("AUTH EXTERNAL"), (334, [""]))
        self.assertOk(client.command(""))
        self.assertAuthOk(proxy, client)

    def test_equals_sign_answering_the_334_is_235_as_curl_sends_it(self):
        # curl 7.88.1 --login-options AUTH=EXTERNAL without --user.
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertEqual(client.command("AUTH EXTERNAL"), (334, [""]))
        self.assertOk(client.command("="))
        self.assertAuthOk(proxy, client)

    def test_trailing_blank_is_no_initial_response_as_smtplib_sends_it(self):
        # smtplib's auth() with an auth object returning "".
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertEqual(client.command("AUTH EXTERNAL "), (334, [""]))
        self.assertOk(client.command(""))
        self.assertAuthOk(proxy, client)

    def test_authzid_answering_the_334_is_235_as_msmtp_sends_it(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertEqual(client.command("AUTH EXTERNAL"), (334, [""]))
        self.assertOk(client.command(b64(LOGIN)))
        self.assertAuthOk(proxy, client)

    def test_another_authzid_is_535_5_7_8(self):
        proxy = self.proxy(users={"alice": pamutil.random_password()})
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("AUTH EXTERNAL " + b64("alice")),
                         535, "5.7.8")
        self.assertAuthFail(proxy, client, reason="authzid_mismatch")
        self.assertNoBackendSession(proxy)
        # The session goes on, and the right identity still logs in.
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)

    def test_another_authzid_after_the_334_is_535_5_7_8(self):
        proxy = self.proxy(users={"alice": pamutil.random_password()})
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("AUTH EXTERNAL"), 334)
        self.assertReply(client.command(b64("alice")), 535, "5.7.8")
        self.assertAuthFail(proxy, client, reason="authzid_mismatch")

    def test_star_cancels_auth_external_with_501_5_7_0(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("AUTH EXTERNAL"), 334)
        self.assertReply(client.command("*"), 501, "5.7.0")
        self.assertFalse(proxy.session_lines(client, r"\bevent=auth_ok\b"))

    def test_bad_base64_authzid_is_501_5_5_2(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("AUTH EXTERNAL !!!!"), 501, "5.5.2")

    def test_auth_external_without_a_certificate_is_504_5_5_4(self):
        proxy = self.proxy()
        client = self.client(proxy)
        self.assertReply(client.command("AUTH EXTERNAL ="), 504, "5.5.4")
        self.assertFalse(proxy.session_lines(
            client, r"\bevent=auth_(ok|fail|tempfail|refused)\b"))
        self.assertNoBackendSession(proxy)

    def test_auth_external_with_an_unmapped_certificate_is_504_5_5_4(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().unmapped)
        self.assertReply(client.command("AUTH EXTERNAL ="), 504, "5.5.4")
        self.assertReply(client.command("AUTH EXTERNAL " + b64(LOGIN)), 504,
                         "5.5.4")
        self.assertFalse(proxy.session_lines(client, r"\bevent=auth_ok\b"))
        self.assertNoBackendSession(proxy)

    def test_second_auth_after_external_is_503_5_5_1(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertReply(client.command("AUTH EXTERNAL ="), 503, "5.5.1")

    def test_mail_before_auth_with_a_mapped_certificate_is_530(self):
        # certificate_login = external (the default): the certificate
        # alone does not log in.
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530,
                         "5.7.0")

    def test_password_login_still_works_beside_a_mapped_certificate(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        blob = b64("\0%s\0%s" % (LOGIN, self.password))
        proxy.add_secret(blob)
        self.assertOk(client.command("AUTH PLAIN " + blob))
        fields = proxy.session_log(client, r"\bevent=auth_ok\b")
        self.assertEqual(fields.get("mech"), "PLAIN", fields)

    def test_pam_locked_mapped_account_is_535_after_the_account_check(self):
        proxy = self.proxy(rules=["san-dns:%s locked" % certca.HOST_CN],
                           locked=["locked"])
        client = self.client(proxy, ca().host)
        # Offered: the certificate maps; PAM decides at AUTH.
        self.assertExternalOffered(client)
        self.assertReply(client.command("AUTH EXTERNAL ="), 535, "5.7.8")
        self.assertAuthFail(proxy, client, reason="perm_denied",
                            login="locked")
        self.assertNoBackendSession(proxy)

    def test_mapped_login_unknown_to_pam_is_535(self):
        proxy = self.proxy(rules=["san-dns:%s ghost" % certca.HOST_CN])
        client = self.client(proxy, ca().host)
        self.assertReply(client.command("AUTH EXTERNAL ="), 535, "5.7.8")
        self.assertAuthFail(proxy, client, login="ghost")
        self.assertNoBackendSession(proxy)

    def test_tls_line_names_the_certificate_and_its_login(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped)
        fields = self.assertTlsLine(
            proxy, client, "O=Example Machines,CN=monitor.example.com", LOGIN)
        self.assertEqual(len(proxy.session_lines(client, r"\bevent=tls\b")),
                         1)
        self.assertEqual(fields["resumed"], "no")


# -------------------------------------------------------- the map's rules

class MapRules(CertTestCase):
    """Each kind of rule gives the mapped certificate its own login."""

    def login_with(self, rules, login):
        proxy = self.proxy(users={login: pamutil.random_password()},
                           rules=rules)
        client = self.client(proxy, ca().mapped)
        self.assertExternalOffered(client)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client, login)
        self.assertBackendLogin(proxy, login)
        self.assertEqual(self.tls_fields(proxy, client)["cert_login"], login)
        return proxy

    def test_sha256_rule_in_openssl_colon_form(self):
        self.login_with(["sha256:%s fp-colon" % ca().fingerprint(ca().mapped)],
                        "fp-colon")

    def test_sha256_rule_in_lower_case_hex(self):
        self.login_with(["sha256:%s fp-hex" % ca().sha256(ca().mapped)],
                        "fp-hex")

    def test_subject_rule(self):
        self.login_with(["subject:O=Example Machines,CN=%s by-subject"
                         % certca.MAPPED_CN], "by-subject")

    def test_san_email_rule(self):
        self.login_with(["san-email:%s by-email" % certca.MAPPED_EMAIL],
                        "by-email")

    def test_san_dns_rule(self):
        self.login_with(["san-dns:%s by-dns" % certca.MAPPED_CN], "by-dns")

    def test_san_dns_rule_is_case_insensitive(self):
        self.login_with(["san-dns:%s by-dns" % certca.MAPPED_CN.upper()],
                        "by-dns")

    def test_first_matching_rule_wins(self):
        self.login_with(["# comment",
                         "san-dns:nothing.example.com nobody-here",
                         "",
                         "san-email:%s first" % certca.MAPPED_EMAIL,
                         "san-dns:%s second" % certca.MAPPED_CN,
                         "sha256:%s third" % ca().sha256(ca().mapped)],
                        "first")

    def test_a_rule_for_another_certificate_does_not_match(self):
        proxy = self.proxy(rules=[
            "sha256:%s %s" % (ca().sha256(ca().unmapped), LOGIN),
            "san-email:someone@example.com %s" % LOGIN,
            "subject:CN=%s %s" % (certca.MAPPED_CN, LOGIN)])  # O= missing
        client = self.client(proxy, ca().mapped)
        self.assertExternalNotOffered(client)
        self.assertTlsLine(proxy, client, ca().subject(ca().mapped), "")

    def test_sighup_rereads_the_map(self):
        proxy = self.proxy(users={"renamed": pamutil.random_password()})
        first = self.client(proxy, ca().mapped)
        self.assertOk(first.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, first, LOGIN)
        proxy.rewrite_map(["san-dns:%s renamed" % certca.MAPPED_CN])
        proxy.reload("ok")
        second = self.client(proxy, ca().mapped)
        self.assertOk(second.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, second, "renamed")
        proxy.rewrite_map(["# nobody"])
        proxy.reload("ok")
        third = self.client(proxy, ca().mapped)
        self.assertExternalNotOffered(third)


# --------------------------------------------------------------- refusals

class Refusals(CertTestCase):
    """Certificates that must not log in, on an optional listener: the
    handshake succeeds, EXTERNAL is not offered, AUTH EXTERNAL is 504,
    and the one event=tls line says why."""

    def assertRefused(self, proxy, cert, cert_error, listener="implicit"):
        client = self.client(proxy, cert, listener=listener)
        self.assertExternalNotOffered(client)
        self.assertReply(client.command("AUTH EXTERNAL ="), 504, "5.5.4")
        self.assertNoBackendSession(proxy)
        self.assertFalse(proxy.session_lines(client, r"\bevent=auth_ok\b"))
        self.assertTlsLine(proxy, client, "", "", cert_error)
        lines = proxy.session_lines(client, re.escape(cert_error))
        self.assertEqual(len(lines), 1, "\n".join(lines))
        return client

    def test_revoked_certificate_is_not_used(self):
        self.assertRefused(self.proxy(), ca().revoked, REVOKED)

    def test_revoked_certificate_is_not_used_after_starttls(self):
        self.assertRefused(self.proxy(), ca().revoked, REVOKED,
                           listener="starttls")

    def test_revoked_certificate_logs_in_without_client_crl(self):
        # The control: the CRL, not the map, keeps it out.
        proxy = self.proxy(tls={"client_crl": None})
        client = self.client(proxy, ca().revoked)
        self.assertExternalOffered(client)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)

    def test_sighup_rereads_the_crl(self):
        crl_dir = tempfile.mkdtemp(prefix="submitproxy-crl-")
        os.chmod(crl_dir, 0o755)
        self.addCleanup(shutil.rmtree, crl_dir, True)
        crl = os.path.join(crl_dir, "crls.pem")
        tlsutil.replace_file(ca().crl_file_clean, crl)
        proxy = self.proxy(tls={"client_crl": crl})
        before = self.client(proxy, ca().revoked)
        self.assertExternalOffered(before)
        tlsutil.replace_file(ca().crl_file, crl)
        proxy.reload("ok")
        self.assertRefused(proxy, ca().revoked, REVOKED)
        # A session opened before the reload keeps its verdict.
        self.assertOk(before.command("AUTH EXTERNAL ="))

    def test_crl_of_the_intermediate_missing_refuses_the_leaf(self):
        # Only the root's CRL: the leaf's status is unknown.
        proxy = self.proxy(tls={"client_crl": ca().root.crl})
        self.assertRefused(proxy, ca().mapped, NO_CRL)

    def test_crl_of_the_root_missing_refuses_the_chain(self):
        # Only the intermediate's CRL: the intermediate's own status is
        # unknown, so the whole chain is checked (CRL_CHECK_ALL).
        proxy = self.proxy(tls={"client_crl": ca().intermediate.crl})
        self.assertRefused(proxy, ca().mapped, NO_CRL)

    def test_expired_certificate_is_not_used(self):
        self.assertRefused(self.proxy(), ca().expired, EXPIRED)

    def test_certificate_from_another_ca_is_not_used(self):
        # Same subject and SAN as the mapped one, and a sha256 rule names
        # it: only the trust check keeps it out.
        self.assertRefused(self.proxy(), ca().other, UNTRUSTED_ROOT)

    def test_unmapped_certificate_is_logged_once_with_no_login(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().unmapped)
        self.assertReply(client.command("AUTH EXTERNAL ="), 504, "5.5.4")
        self.assertTlsLine(proxy, client, ca().subject(ca().unmapped), "")
        lines = proxy.session_lines(client, r"stranger\.example\.com")
        self.assertEqual(len(lines), 1, "\n".join(lines))

    # -- CN and SAN with an embedded NUL (CVE-2009-4565 class)

    def nul_case(self, rule):
        """rule maps host.example.com to "host": the real host
        certificate logs in with it, the NUL one (host.example.com\\0.
        evil.test) does not."""
        proxy = self.proxy(users={"host": pamutil.random_password()},
                           rules=[rule])
        good = self.client(proxy, ca().host)
        self.assertExternalOffered(good)
        self.assertOk(good.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, good, "host")
        bad = self.client(proxy, ca().nul)
        self.assertExternalNotOffered(bad)
        self.assertReply(bad.command("AUTH EXTERNAL ="), 504, "5.5.4")
        self.assertReply(bad.command("AUTH EXTERNAL " + b64("host")), 504,
                         "5.5.4")
        fields = self.assertTlsLine(
            proxy, bad, re.compile(r"^CN=host\.example\.com\S+evil\.test$"),
            "")
        # The subject is logged escaped, never cut at the NUL.
        self.assertNotEqual(fields["client_cert"], "CN=" + certca.HOST_CN)
        self.assertNotIn("\0", proxy.log())
        self.assertFalse(proxy.session_lines(bad, r"\bevent=auth_ok\b"))

    def test_subject_rule_does_not_match_a_cn_with_an_embedded_nul(self):
        self.nul_case("subject:CN=%s host" % certca.HOST_CN)

    def test_san_dns_rule_does_not_match_a_san_with_an_embedded_nul(self):
        self.nul_case("san-dns:%s host" % certca.HOST_CN)


# ---------------------------------------------------------------- counters

class Counters(CertTestCase):
    """/metrics counts client certificates by how far each got: presented
    (verified or not), verified, mapped to a login."""

    def scrape(self, port):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                    timeout=WAIT) as response:
            return response.read().decode()

    def test_client_certificates_are_counted_presented_verified_mapped(self):
        port = harness.free_ports(["127.0.0.1"])[0]
        proxy = self.proxy(metrics_port=port)
        self.client(proxy, ca().mapped)    # presented, verified, mapped
        self.client(proxy, ca().unmapped)  # presented, verified
        self.client(proxy, ca().revoked)   # presented, refused
        self.client(proxy)                 # none
        proxy.wait_log_count(4, r"\bevent=tls\b")
        text = self.scrape(port)
        for stage, count in (("presented", 3), ("verified", 2),
                             ("mapped", 1)):
            sample = ('submitproxy_tls_client_certificates_total'
                      '{listener="implicit",stage="%s"} %d' % (stage, count))
            self.assertIn(sample, text.splitlines(), text)


# --------------------------------------------- client_certificates = required

class Required(CertTestCase):

    def assertRefusedAtHandshake(self, proxy, token, detail,
                                 listener="required", cert=None, **kw):
        starttls_first = listener == "required_starttls"
        handshake_fails(proxy, listener, context(cert, **kw),
                        starttls_first=starttls_first)
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        fields = harness.parse_log_fields(line)
        self.assertEqual(fields.get("reason"), token, line)
        self.assertEqual(fields.get("listener"), listener, line)
        self.assertRegex(fields.get("detail", ""), detail, line)
        proxy.wait_log(r"\bevent=disconnect\b")
        self.assertEqual(len(proxy.log_lines(r"\bevent=tls_fail\b")), 1,
                         proxy.log())
        self.assertFalse(proxy.log_lines(r"\bevent=tls\b"), proxy.log())
        self.assertFalse(proxy.log_lines(
            r"\bevent=auth_(ok|fail|tempfail|refused)\b"), proxy.log())
        self.assertNoBackendSession(proxy)
        return line

    def test_implicit_tls_without_a_certificate_is_refused_tls_1_3(self):
        self.assertRefusedAtHandshake(self.proxy(), "certificate_required",
                                      r"(?i)certificate",
                                      minimum=ssl.TLSVersion.TLSv1_3)

    def test_implicit_tls_without_a_certificate_is_refused_tls_1_2(self):
        self.assertRefusedAtHandshake(self.proxy(), "certificate_required",
                                      r"(?i)certificate",
                                      maximum=ssl.TLSVersion.TLSv1_2)

    def test_starttls_without_a_certificate_is_refused_after_starttls(self):
        self.assertRefusedAtHandshake(self.proxy(), "certificate_required",
                                      r"(?i)certificate",
                                      listener="required_starttls")

    def test_revoked_certificate_is_refused_at_the_handshake(self):
        self.assertRefusedAtHandshake(self.proxy(), "bad_certificate",
                                      re.escape(REVOKED), cert=ca().revoked)

    def test_expired_certificate_is_refused_at_the_handshake(self):
        self.assertRefusedAtHandshake(self.proxy(), "bad_certificate",
                                      re.escape(EXPIRED), cert=ca().expired)

    def test_certificate_from_another_ca_is_refused_at_the_handshake(self):
        self.assertRefusedAtHandshake(self.proxy(), "bad_certificate",
                                      re.escape(UNTRUSTED_ROOT),
                                      cert=ca().other)

    def test_mapped_certificate_is_greeted_and_logs_in(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped, listener="required")
        self.assertExternalOffered(client)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)
        self.assertBackendLogin(proxy)

    def test_mapped_certificate_logs_in_after_starttls(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped,
                             listener="required_starttls")
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client)

    def test_verified_unmapped_certificate_passes_the_handshake(self):
        # required asks for a verified certificate, not a mapped one.
        proxy = self.proxy()
        client = self.client(proxy, ca().unmapped, listener="required")
        self.assertExternalNotOffered(client)
        self.assertTlsLine(proxy, client, ca().subject(ca().unmapped), "")

    def test_optional_listener_beside_it_still_takes_clients_without(self):
        proxy = self.proxy()
        client = self.client(proxy)
        self.assertTlsLine(proxy, client, "", "")

    def test_s_client_without_a_certificate_gets_no_greeting(self):
        openssl = tlsutil.require_command("openssl")
        proxy = self.proxy()
        result = tlsutil.run(
            [openssl, "s_client", "-connect",
             "127.0.0.1:%d" % proxy.port("required"),
             "-servername", HOSTNAME, "-CAfile", ca().root.cert,
             "-ign_eof", "-nocommands", "-crlf"], input="", check=False)
        out = result.stdout + result.stderr
        self.assertNotRegex(out, r"(?m)^220[ -]", out)
        self.assertRegex(out, r"(?i)alert", out)
        line = proxy.wait_log(r"\bevent=tls_fail\b")
        self.assertRegex(line, r'\breason=certificate_required\b', line)
        self.assertRegex(line, r'detail="[^"]*(?i:certificate)', line)


# ------------------------------------------------ certificate_login = implicit

class ImplicitLogin(CertTestCase):

    def test_mapped_certificate_sends_mail_after_ehlo_without_auth(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped, listener="machines")
        # Logged in already: AUTH is not offered at all.
        self.assertIsNone(ehlo_auth(client.ehlo), client.ehlo)
        self.deliver(client, "implicit login")
        self.assertAuthOk(proxy, client)
        self.assertBackendLogin(proxy)
        tx = proxy.backend.wait_complete(1)[0]
        self.assertIn(b"Subject: implicit login", tx.message())

    def test_helo_logs_in_too(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped, listener="machines",
                             ehlo=False)
        self.assertReply(client.command("HELO " + CLIENT), 250)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 250)
        self.assertAuthOk(proxy, client)

    def test_without_a_certificate_mail_is_530(self):
        proxy = self.proxy()
        client = self.client(proxy, listener="machines")
        self.assertExternalNotOffered(client)
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530,
                         "5.7.0")
        self.assertNoBackendSession(proxy)

    def test_unmapped_certificate_mail_is_530(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().unmapped, listener="machines")
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530,
                         "5.7.0")
        self.assertFalse(proxy.session_lines(client, r"\bevent=auth_ok\b"))
        self.assertNoBackendSession(proxy)

    def test_revoked_certificate_mail_is_530(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().revoked, listener="machines")
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530,
                         "5.7.0")
        self.assertTlsLine(proxy, client, "", "", REVOKED)

    def test_without_a_certificate_a_password_login_still_works(self):
        proxy = self.proxy()
        client = self.client(proxy, listener="machines")
        self.assertEqual(ehlo_auth(client.ehlo), ["PLAIN", "LOGIN"])
        blob = b64("\0%s\0%s" % (LOGIN, self.password))
        proxy.add_secret(blob)
        self.assertOk(client.command("AUTH PLAIN " + blob))
        self.deliver(client, "password on the machines listener")

    def test_pam_locked_mapped_account_is_not_logged_in(self):
        # Assumed: the account check runs for implicit logins as well; a
        # refused account is one auth_fail line and MAIL stays 530.
        proxy = self.proxy(rules=["san-dns:%s locked" % certca.HOST_CN],
                           locked=["locked"])
        client = self.client(proxy, ca().host, listener="machines")
        self.assertReply(client.command("MAIL FROM:<%s>" % SENDER), 530,
                         "5.7.0")
        self.assertAuthFail(proxy, client, reason="perm_denied",
                            login="locked")
        self.assertNoBackendSession(proxy)

    def test_swaks_with_a_certificate_delivers_without_auth(self):
        swaks = tlsutil.require_command("swaks")
        # swaks sends only the leaf (CTX_use_certificate_file): this proxy
        # trusts the intermediate as well.
        proxy = self.proxy(tls={"client_ca": ca().ca_bundle})
        authority = ca()
        result = tlsutil.run(
            [swaks, "--server", "127.0.0.1", "--port",
             str(proxy.port("machines")), "--tls",
             "--tls-cert", authority.mapped.cert,
             "--tls-key", authority.mapped.key,
             "--ehlo", CLIENT, "--from", SENDER, "--to", RCPT,
             "--header", "Subject: swaks implicit",
             "--timeout", str(int(WAIT))], check=False)
        self.assertEqual(result.returncode, 0,
                         result.stdout + result.stderr + proxy.log())
        self.assertIn("<-  250", result.stdout)
        self.assertBackendLogin(proxy)
        proxy.wait_log(r"\bevent=auth_ok\b", r'user="%s"' % LOGIN,
                       r"\bmech=EXTERNAL\b")

    def test_smtplib_sendmail_without_login(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("machines"),
                            local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.starttls(context=context(ca().mapped))
        smtp.ehlo()
        self.assertFalse(smtp.has_extn("auth"))
        self.assertEqual(smtp.sendmail(SENDER, [RCPT],
                                       message("smtplib implicit")), {})
        self.assertEqual(smtp.quit()[0], 221)
        self.assertBackendLogin(proxy)


# ------------------------------------------------------------- resumption

class Resumption(CertTestCase):
    """[tls] and [sni a.example] have no client CA, [sni b.example] has
    one: a session made under a.example never resumes under b.example
    (nor the other way round)."""

    def proxy(self, **kw):
        authority = ca()
        sni = {certca.SNI_A: {"certificate": authority.sni_a.cert,
                              "key": authority.sni_a.key},
               certca.SNI_B: {"certificate": authority.sni_b.cert,
                              "key": authority.sni_b.key,
                              "client_ca": authority.client_ca}}
        # No [tls] client_ca: no "required" listener either.
        listeners = {"implicit": CertProxy.LISTENERS["implicit"]}
        return super().proxy(tls={"client_ca": None}, sni=sni,
                             listeners=listeners, **kw)

    def first_session(self, proxy, ctx, name):
        client = tlsutil.implicit(proxy, ctx, server_hostname=name)
        self.assertReply(client.command("NOOP"), 250)
        session = client.sock.session
        fields = self.tls_fields(proxy, client)
        self.assertEqual(fields["resumed"], "no")
        close_tls(client)
        return session, fields

    def resume(self, proxy, ctx, session, name):
        client = proxy.connect("implicit")
        tlsutil.wait_accepted(proxy, client)
        client.sock = ctx.wrap_socket(client.sock, server_hostname=name,
                                      session=session)
        self.assertReply(client.read_reply(), 220)
        client.ehlo = client.command("EHLO " + CLIENT)
        return client

    def check_a_then_b(self, **kw):
        proxy = self.proxy()
        ctx = context(ca().mapped, **kw)
        session, first = self.first_session(proxy, ctx, certca.SNI_A)
        client = self.resume(proxy, ctx, session, certca.SNI_B)
        fields = self.tls_fields(proxy, client)
        self.assertFalse(client.sock.session_reused, fields)
        self.assertEqual(fields["resumed"], "no", fields)
        self.assertEqual(fields["sni"], certca.SNI_B)
        # Under a.example no certificate was asked for.
        self.assertEqual((first["client_cert"], first.get("cert_login")),
                         ("", ""), first)
        # A full handshake under b.example: it asked for the certificate.
        self.assertEqual(fields["client_cert"], ca().subject(ca().mapped),
                         fields)
        self.assertEqual(fields.get("cert_login"), LOGIN, fields)
        self.assertExternalOffered(client)
        self.assertOk(client.command("AUTH EXTERNAL ="))

    def test_tls_1_2_session_from_a_does_not_resume_under_b(self):
        self.check_a_then_b(maximum=ssl.TLSVersion.TLSv1_2)

    def test_tls_1_3_ticket_from_a_does_not_resume_under_b(self):
        self.check_a_then_b(minimum=ssl.TLSVersion.TLSv1_3)

    def check_b_then_a(self, **kw):
        proxy = self.proxy()
        ctx = context(ca().mapped, **kw)
        session, first = self.first_session(proxy, ctx, certca.SNI_B)
        client = self.resume(proxy, ctx, session, certca.SNI_A)
        fields = self.tls_fields(proxy, client)
        self.assertFalse(client.sock.session_reused, fields)
        self.assertEqual((fields["resumed"], fields["client_cert"]),
                         ("no", ""), fields)
        self.assertEqual(first.get("cert_login"), LOGIN, first)
        self.assertEqual(fields.get("cert_login"), "", fields)
        self.assertExternalNotOffered(client)

    def test_tls_1_2_session_with_a_certificate_from_b_does_not_resume_under_a(
            self):
        self.check_b_then_a(maximum=ssl.TLSVersion.TLSv1_2)

    def test_tls_1_3_ticket_with_a_certificate_from_b_does_not_resume_under_a(
            self):
        self.check_b_then_a(minimum=ssl.TLSVersion.TLSv1_3)

    def test_resumption_under_the_same_name_keeps_the_login(self):
        # The control: resumption itself works, and keeps the mapping.
        proxy = self.proxy()
        ctx = context(ca().mapped, maximum=ssl.TLSVersion.TLSv1_2)
        session, _ = self.first_session(proxy, ctx, certca.SNI_B)
        client = self.resume(proxy, ctx, session, certca.SNI_B)
        fields = self.tls_fields(proxy, client)
        self.assertTrue(client.sock.session_reused, fields)
        self.assertEqual((fields["resumed"], fields.get("cert_login")),
                         ("yes", LOGIN), fields)
        self.assertOk(client.command("AUTH EXTERNAL ="))

    def test_without_client_ca_for_the_name_no_certificate_is_asked(self):
        proxy = self.proxy()
        client = self.client(proxy, ca().mapped,
                             server_hostname=certca.SNI_A)
        self.assertExternalNotOffered(client)
        self.assertTlsLine(proxy, client, "", "")


def close_tls(client):
    """QUIT and a clean TLS close, so the session is resumable by id."""
    client.command("QUIT")
    with contextlib.suppress(ssl.SSLError, OSError):
        client.sock.unwrap()
    client.close()


# ----------------------------------------------------------- real clients

class RealClients(CertTestCase):
    """Real clients log in with a certificate and deliver one message
    each.  As root through a private Postfix (XCLIENT LOGIN= shows as
    "(Authenticated sender: monitor)" in its Received: header) relaying
    to smtp-sink; otherwise through the recording backend (its XCLIENT
    line shows LOGIN=)."""

    sink = postfix = None
    postfix_skipped = None

    @classmethod
    def setUpClass(cls):
        scope = _ClassScope(cls)
        try:
            cls.sink = backends.SmtpSink(scope)
            cls.postfix = backends.PostfixInstance(scope, relayhost=cls.sink)
        except unittest.SkipTest as e:
            cls.postfix = None
            cls.postfix_skipped = str(e)

    def proxy(self, **kw):
        if self.postfix is not None:
            kw.setdefault("backend", self.postfix.address)
        return super().proxy(**kw)

    def subject(self):
        return "cert test %s" % self.id().rsplit(".", 1)[-1]

    def message_file(self, subject):
        fd, path = tempfile.mkstemp(prefix="submitproxy-msg-", suffix=".eml")
        with os.fdopen(fd, "wb") as f:
            f.write(message(subject))
        self.addCleanup(os.unlink, path)
        return path

    def assertDelivered(self, proxy, subject, login=LOGIN):
        proxy.wait_log(r"\bevent=auth_ok\b", r'user="%s"' % re.escape(login),
                       r"\bmech=EXTERNAL\b")
        if self.postfix is None:
            self.assertBackendLogin(proxy, login)
            txs = proxy.backend.wait(
                lambda b: [t for t in b.complete_transactions()
                           if ("Subject: " + subject).encode()
                           in t.message()],
                "the message %r" % subject)
            self.assertEqual(len(txs), 1)
            return

        def found():
            return [m for m in self.sink.messages()
                    if m.raw.endswith(b"\n\n") and
                    ("Subject", subject) in m.headers()]
        try:
            msgs = backends.wait_for(found, "the message %r at smtp-sink"
                                     % subject, timeout=4 * WAIT)
        except AssertionError as e:
            raise AssertionError("%s\nPostfix maillog:\n%s"
                                 % (e, self.postfix.log())) from None
        self.assertEqual(len(msgs), 1)
        name, value = msgs[0].headers()[0]
        self.assertEqual(name, "Received")
        self.assertIn("(Authenticated sender: %s)" % login, value)

    # -- smtplib

    def smtplib_auth(self, smtp, auth_object):
        """smtp.auth("EXTERNAL", auth_object): (code, text), a test
        failure (not an error) if smtplib raises."""
        try:
            return smtp.auth("EXTERNAL", auth_object)
        except smtplib.SMTPAuthenticationError as e:
            self.fail("AUTH EXTERNAL: %d %r" % (e.smtp_code, e.smtp_error))

    def test_smtplib_starttls_auth_external(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                            local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.starttls(context=context(ca().mapped))
        smtp.ehlo()
        self.assertIn("EXTERNAL", smtp.esmtp_features["auth"].split())
        code, text = self.smtplib_auth(smtp, external_auth())
        self.assertEqual(code, 235, text)
        self.assertEqual(smtp.sendmail(SENDER, [RCPT],
                                       message(self.subject())), {})
        self.assertEqual(smtp.quit()[0], 221)
        self.assertDelivered(proxy, self.subject())

    def test_smtplib_smtp_ssl_auth_external_equals(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("implicit"),
                                local_hostname=CLIENT, timeout=WAIT,
                                context=context(ca().mapped))
        self.addCleanup(smtp.close)
        smtp.ehlo()
        code, text = smtp.docmd("AUTH", "EXTERNAL =")
        self.assertEqual(code, 235, text)
        self.assertEqual(smtp.sendmail(SENDER, [RCPT],
                                       message(self.subject())), {})
        smtp.quit()
        self.assertDelivered(proxy, self.subject())

    def test_smtplib_auth_external_with_the_login_as_authzid(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("implicit"),
                                local_hostname=CLIENT, timeout=WAIT,
                                context=context(ca().mapped))
        self.addCleanup(smtp.close)
        smtp.ehlo()
        code, text = self.smtplib_auth(smtp, external_auth(LOGIN))
        self.assertEqual(code, 235, text)
        smtp.sendmail(SENDER, [RCPT], message(self.subject()))
        smtp.quit()
        self.assertDelivered(proxy, self.subject())

    def test_smtplib_auth_external_with_an_auth_object_returning_empty(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP("127.0.0.1", proxy.port("starttls"),
                            local_hostname=CLIENT, timeout=WAIT)
        self.addCleanup(smtp.close)
        smtp.ehlo()
        smtp.starttls(context=context(ca().mapped))
        smtp.ehlo()
        code, text = self.smtplib_auth(smtp, lambda challenge=None: "")
        self.assertEqual(code, 235, text)
        smtp.sendmail(SENDER, [RCPT], message(self.subject()))
        smtp.quit()
        self.assertDelivered(proxy, self.subject())

    def test_smtplib_auth_external_with_another_authzid_is_535(self):
        proxy = self.proxy()
        smtp = smtplib.SMTP_SSL("127.0.0.1", proxy.port("implicit"),
                                local_hostname=CLIENT, timeout=WAIT,
                                context=context(ca().mapped))
        self.addCleanup(smtp.close)
        smtp.ehlo()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as refused:
            smtp.auth("EXTERNAL", external_auth("root"))
        self.assertEqual(refused.exception.smtp_code, 535)

    # -- msmtp

    def msmtp(self, proxy, listener, starttls, user=LOGIN):
        msmtp = tlsutil.require_command("msmtp")
        authority = ca()
        args = [msmtp, "-C", "/dev/null", "--host=127.0.0.1",
                "--port=%d" % proxy.port(listener), "--domain=" + CLIENT,
                "--timeout=%d" % int(WAIT), "--tls=on",
                "--tls-starttls=" + ("on" if starttls else "off"),
                "--tls-trust-file=" + authority.root.cert,
                "--tls-cert-file=" + authority.mapped.chain,
                "--tls-key-file=" + authority.mapped.key,
                "--auth=external"]
        if user:
            args.append("--user=" + user)
        args += ["--from=" + SENDER, RCPT]
        with open(self.message_file(self.subject())) as f:
            return tlsutil.run(args, input=f.read(), check=False)

    def test_msmtp_starttls_auth_external(self):
        proxy = self.proxy()
        result = self.msmtp(proxy, "starttls", True)
        self.assertEqual(result.returncode, 0,
                         result.stdout + result.stderr + proxy.log())
        self.assertDelivered(proxy, self.subject())

    def test_msmtp_implicit_tls_auth_external(self):
        proxy = self.proxy()
        result = self.msmtp(proxy, "implicit", False)
        self.assertEqual(result.returncode, 0,
                         result.stdout + result.stderr + proxy.log())
        self.assertDelivered(proxy, self.subject())

    # -- curl

    def curl(self, proxy, url, *flags):
        curl = tlsutil.require_command("curl")
        authority = ca()
        args = [curl, "-v", "--max-time", str(int(WAIT)), "--url", url,
                "--cacert", authority.root.cert,
                "--cert", authority.mapped.chain,
                "--key", authority.mapped.key,
                "--login-options", "AUTH=EXTERNAL"] + list(flags) + [
                "--mail-from", SENDER, "--mail-rcpt", RCPT,
                "-T", self.message_file(self.subject())]
        result = tlsutil.run(args, check=False)
        self.assertEqual(result.returncode, 0,
                         result.stdout + result.stderr + proxy.log())
        return result.stderr

    def test_curl_starttls_auth_external(self):
        proxy = self.proxy()
        err = self.curl(proxy, "smtp://127.0.0.1:%d/%s"
                        % (proxy.port("starttls"), CLIENT), "--ssl-reqd")
        self.assertIn("> AUTH EXTERNAL", err)
        self.assertIn("< 235 2.7.0", err)
        self.assertDelivered(proxy, self.subject())

    def test_curl_smtps_auth_external_initial_response(self):
        proxy = self.proxy()
        err = self.curl(proxy, "smtps://127.0.0.1:%d/%s"
                        % (proxy.port("implicit"), CLIENT), "--sasl-ir")
        self.assertIn("> AUTH EXTERNAL =", err)
        self.assertDelivered(proxy, self.subject())

    def test_curl_auth_external_with_user_as_authzid(self):
        proxy = self.proxy()
        self.curl(proxy, "smtps://127.0.0.1:%d/%s"
                  % (proxy.port("implicit"), CLIENT), "--user", LOGIN + ":")
        self.assertDelivered(proxy, self.subject())

    # -- openssl s_client

    def test_openssl_s_client_auth_external(self):
        openssl = tlsutil.require_command("openssl")
        authority = ca()
        proxy = self.proxy()
        client = tlsutil.Interactive(self, [
            openssl, "s_client", "-connect",
            "127.0.0.1:%d" % proxy.port("starttls"), "-starttls", "smtp",
            "-name", CLIENT, "-servername", HOSTNAME,
            "-CAfile", authority.root.cert, "-verify_return_error",
            "-cert", authority.mapped.cert, "-key", authority.mapped.key,
            "-cert_chain", authority.intermediate.cert,
            "-ign_eof", "-nocommands", "-crlf"])
        client.expect(r"Verify return code: 0 \(ok\)")
        client.send("EHLO %s\n" % CLIENT)
        client.expect(r"250[ -]AUTH [^\n]*EXTERNAL")
        client.send("AUTH EXTERNAL =\n")
        client.expect(r"235 2\.7\.0")
        client.send("MAIL FROM:<%s>\n" % SENDER)
        client.expect(r"250 2\.1\.0")
        client.send("RCPT TO:<%s>\n" % RCPT)
        client.expect(r"250 2\.1\.5")
        client.send("DATA\n")
        client.expect(r"354 ")
        client.send(message(self.subject()).decode().replace("\r\n", "\n")
                    + ".\n")
        client.expect(r"250 2\.0\.0")
        client.send("QUIT\n")
        client.expect(r"221 ")
        self.assertDelivered(proxy, self.subject())


# ---------------------------------------------------------------- pam_unix

class PamUnix(CertTestCase):
    """As root: the real pam_unix's account check for a mapped login."""

    def unix_proxy(self):
        pam = pamutil.UnixPam(self, pamutil.random_password())
        proxy = self.proxy(pam=pam, rules=[
            "san-dns:%s %s" % (certca.MAPPED_CN, pam.user)])
        return pam, proxy

    def test_mapped_system_account_logs_in_without_a_password(self):
        pam, proxy = self.unix_proxy()
        client = self.client(proxy, ca().mapped)
        self.assertOk(client.command("AUTH EXTERNAL ="))
        self.assertAuthOk(proxy, client, pam.user)
        self.assertBackendLogin(proxy, pam.user)

    def test_expired_system_account_is_535(self):
        pam, proxy = self.unix_proxy()
        pam.expire()
        client = self.client(proxy, ca().mapped)
        self.assertReply(client.command("AUTH EXTERNAL ="), 535, "5.7.8")
        self.assertAuthFail(proxy, client, reason="acct_expired",
                            login=pam.user)
        self.assertNoBackendSession(proxy)


# ------------------------------------------------------------------ -t

class ConfigCheck(CertTestCase):
    """submitproxy -t with the new keys."""

    def config(self, tls_extra="", listener_extra="", map_text=None):
        directory = tempfile.mkdtemp(prefix="submitproxy-certcfg-")
        self.addCleanup(shutil.rmtree, directory, True)
        authority = ca()
        map_path = os.path.join(directory, "client-cert-map")
        if map_text is not None:
            with open(map_path, "w") as f:
                f.write(map_text)
        text = ("[server]\nhostname = %s\n\n"
                "[listener sub]\naddress = 127.0.0.1:2587\n"
                "mode = starttls\n%s\n"
                "[tls]\ncertificate = %s\nkey = %s\n%s\n"
                "[backend]\naddress = 127.0.0.1:25\n"
                % (HOSTNAME, listener_extra, authority.server.cert,
                   authority.server.key,
                   tls_extra.replace("MAP", map_path)))
        path = os.path.join(directory, "submitproxy.conf")
        with open(path, "w") as f:
            f.write(text)
        return path, map_path, text

    def check(self, path):
        return tlsutil.run([harness.binary(), "-t", "-c", path],
                           check=False)

    def test_required_without_client_ca_is_an_error(self):
        path, _, text = self.config(
            listener_extra="client_certificates = required\n")
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0, result)
        self.assertIn("client_ca", result.stdout + result.stderr)

    def test_implicit_login_without_a_map_is_an_error(self):
        path, _, _ = self.config(
            tls_extra="client_ca = %s\n" % ca().client_ca,
            listener_extra="certificate_login = implicit\n")
        result = self.check(path)
        self.assertNotEqual(result.returncode, 0, result)
        self.assertIn("client_cert_map", result.stdout + result.stderr)

    def test_a_good_map_passes(self):
        path, _, _ = self.config(
            tls_extra="client_ca = %s\nclient_crl = %s\n"
                      "client_cert_map = MAP\n"
                      % (ca().client_ca, ca().crl_file),
            listener_extra="client_certificates = required\n"
                           "certificate_login = implicit\n",
            map_text="\n".join(default_rules()) + "\n")
        result = self.check(path)
        self.assertEqual(result.returncode, 0,
                         result.stdout + result.stderr)

    def test_a_bad_map_line_is_reported_with_its_file_and_line(self):
        path, map_path, _ = self.config(
            tls_extra="client_ca = %s\nclient_cert_map = MAP\n"
                      % ca().client_ca,
            map_text="# ok\nsan-dns:%s monitor\nsha256:zz-not-hex monitor\n"
                     % certca.MAPPED_CN)
        result = self.check(path)
        out = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, out)
        self.assertIn("%s:3" % map_path, out)

    def test_a_missing_map_file_is_an_error(self):
        path, map_path, _ = self.config(
            tls_extra="client_ca = %s\nclient_cert_map = MAP\n"
                      % ca().client_ca)
        result = self.check(path)
        out = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, out)
        self.assertIn(map_path, out)

    def test_a_missing_crl_file_is_an_error(self):
        path, _, _ = self.config(
            tls_extra="client_ca = %s\nclient_crl = /nonexistent/crls.pem\n"
                      % ca().client_ca)
        result = self.check(path)
        out = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, out)
        self.assertIn("/nonexistent/crls.pem", out)


if __name__ == "__main__":
    unittest.main()
