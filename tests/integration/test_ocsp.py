"""OCSP stapling from a file ([tls] and [sni] ocsp_response, tls/ocsp.h) as
openssl s_client -status sees it: a good response is stapled, over
implicit TLS and after STARTTLS, each [sni] certificate with its own; a
stale one is not, with one "event=ocsp state=stale" warning; one for another
certificate or saying "revoked" is refused at start ("state=refused") and
the proxy runs without it; SIGHUP picks up a refreshed file; -t prints the
status line or a warning; clients that do not ask see no difference.

The CA is made with the openssl command; the responses offline with
"openssl ocsp -index", the stale one under faketime three days back (its
nextUpdate two days ago).  Those tests skip when openssl or faketime is
missing.  Loopback only; every command runs with a timeout.
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import tlsutil  # noqa: E402
from harness import HOSTNAME, WAIT, ProxyTestCase  # noqa: E402
from tlsutil import OTHER_HOSTNAME, TlsProxy, implicit  # noqa: E402

STAPLED = "OCSP Response Status: successful"
GOOD = "Cert Status: good"
NOT_SENT = "OCSP response: no response sent"


def setUpModule():
    harness.require_binary()
    pki()


class OcspPki(tlsutil.Pki):
    """A CA with an OCSP index, two server certificates (test.example and
    other.example, each in a chain file with the CA after it) and the
    responses the tests need, made once per process.

    ca:            (cert, key) of the CA, which also signs the responses
    server, other: (chain file, key)
    good, other_good:  responses saying good for server and other
    revoked:       a response saying revoked for server
    stale:         good for server, nextUpdate two days ago (None without
                   faketime)
    """

    def __init__(self):
        directory = tempfile.mkdtemp(prefix="submitproxy-ocsp-pki-")
        super().__init__(directory)
        self.ca_pair = self.ca("ca", "submitproxy OCSP test CA")
        self.server = self.chain("server", HOSTNAME, "Default",
                                 ips=["127.0.0.1"])
        self.other = self.chain("other", OTHER_HOSTNAME, "Other")
        self.index = self._path("index", ".txt")
        self.revoked_index = self._path("revoked-index", ".txt")
        with open(self.index, "w") as f:
            f.write(self.index_line("V", self.server[0]))
            f.write(self.index_line("V", self.other[0]))
        with open(self.revoked_index, "w") as f:
            f.write(self.index_line("R", self.server[0]))
        self.good = self.respond("good", self.server[0])
        self.other_good = self.respond("other-good", self.other[0])
        self.revoked = self.respond("revoked", self.server[0],
                                    index=self.revoked_index)
        faketime = shutil.which("faketime")
        self.stale = None
        if faketime:
            self.stale = self.respond("stale", self.server[0],
                                      wrapper=[faketime, "-f", "-3d"])
        # The proxy reads these again after dropping privileges.
        tlsutil.make_readable_after_drop(directory)
        for name in os.listdir(directory):
            os.chmod(os.path.join(directory, name), 0o644)

    def chain(self, name, hostname, organization, ips=()):
        """A leaf for hostname signed by the CA, in a chain file with the
        CA after it (the issuer must be there to check the responses)."""
        leaf, key = self.issue(name + "-leaf", self.ca_pair, hostname,
                               organization=organization, dns=[hostname],
                               ips=ips)
        path = self._path(name, ".pem")
        with open(path, "w") as out:
            for part in (leaf, self.ca_pair[0]):
                with open(part) as f:
                    out.write(f.read())
        return path, key

    def serial(self, cert):
        """The serial number of a PEM certificate, in hex as openssl
        prints it."""
        out = tlsutil.run([self.openssl, "x509", "-in", cert, "-noout",
                           "-serial"]).stdout
        return out.strip().split("=", 1)[1]

    def index_line(self, status, cert):
        """A line of "openssl ca"'s index.txt: status, expiry, revocation
        time (status R only), serial, file name, subject."""
        subject = tlsutil.run([self.openssl, "x509", "-in", cert, "-noout",
                               "-subject", "-nameopt", "compat"]) \
            .stdout.strip().split("=", 1)[1].strip()
        revoked = "240101000000Z" if status == "R" else ""
        return "\t".join([status, "491231235959Z", revoked,
                          self.serial(cert), "unknown", subject]) + "\n"

    def respond(self, name, cert, index=None, wrapper=()):
        """An OCSP response for cert made offline from an index, signed by
        the CA, valid for a day from its thisUpdate: its path."""
        path = self._path(name, ".der")
        tlsutil.run(list(wrapper) + [
            self.openssl, "ocsp", "-index", index or self.index,
            "-rsigner", self.ca_pair[0], "-rkey", self.ca_pair[1],
            "-CA", self.ca_pair[0], "-issuer", self.ca_pair[0],
            "-cert", cert, "-respout", path, "-ndays", "1", "-no_nonce"])
        return path


_pki = None


def pki():
    global _pki
    if _pki is None:
        _pki = OcspPki()
        atexit.register(shutil.rmtree, _pki.dir, True)
    return _pki


def stale():
    if pki().stale is None:
        raise unittest.SkipTest("the faketime command is not installed")
    return pki().stale


class OcspTestCase(ProxyTestCase):

    def setUp(self):
        """A directory of our own for files a test replaces."""
        self.dir = tempfile.mkdtemp(prefix="submitproxy-ocsp-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        tlsutil.make_readable_after_drop(self.dir)

    def live(self, source, name="live.der"):
        """A copy of source that the test may replace later."""
        path = os.path.join(self.dir, name)
        tlsutil.replace_file(source, path)
        return path

    def proxy(self, ocsp=None, sni_ocsp=None, start=True):
        """A proxy with pki().server in [tls] and ocsp as its response; and,
        if sni_ocsp is given, [sni other.example] with its own."""
        tls = {"ocsp_response": ocsp} if ocsp else {}
        extra = {}
        if sni_ocsp is not None:
            extra["sni " + OTHER_HOSTNAME] = {
                "certificate": pki().other[0], "key": pki().other[1],
                "ocsp_response": sni_ocsp}
        return TlsProxy(self, pki(), cert=pki().server, tls=tls,
                        extra=extra, start=start)

    def s_client(self, proxy, status=True, listener="implicit",
                 servername=HOSTNAME, version=None):
        """openssl s_client through the greeting and QUIT: its stdout."""
        args = [pki().openssl, "s_client", "-connect",
                "127.0.0.1:%d" % proxy.port(listener),
                "-servername", servername, "-CAfile", pki().ca_pair[0],
                "-verify_return_error", "-ign_eof", "-crlf"]
        if status:
            args.append("-status")
        if version:
            args.append(version)
        if listener == "starttls":
            args += ["-starttls", "smtp", "-name", "client.example"]
        result = tlsutil.run(args, input="QUIT\n", check=False)
        if result.returncode != 0 or not re.search(r"221[ -]",
                                                   result.stdout):
            self.fail("s_client exited %d without a 221:\n%s%s\n---- "
                      "submitproxy log ----\n%s"
                      % (result.returncode, result.stdout, result.stderr,
                         proxy.log()))
        return result.stdout

    def assertStapled(self, out, cert=None):
        self.assertIn(STAPLED, out)
        self.assertIn(GOOD, out)
        if cert is not None:
            self.assertRegex(out, r"Serial Number: %s\b"
                             % re.escape(pki().serial(cert)))

    def assertNotStapled(self, out):
        self.assertIn(NOT_SENT, out)
        self.assertNotIn(STAPLED, out)


class Stapling(OcspTestCase):

    def test_good_response_is_stapled_over_implicit_tls(self):
        proxy = self.proxy(pki().good)
        self.assertStapled(self.s_client(proxy), pki().server[0])
        self.assertEqual(proxy.log_lines(r"\bevent=ocsp\b"), [])

    def test_good_response_is_stapled_over_tls_1_2(self):
        proxy = self.proxy(pki().good)
        self.assertStapled(self.s_client(proxy, version="-tls1_2"))

    def test_good_response_is_stapled_after_starttls(self):
        proxy = self.proxy(pki().good)
        self.assertStapled(self.s_client(proxy, listener="starttls"))

    def test_clients_not_asking_for_status_get_no_staple_and_carry_on(self):
        proxy = self.proxy(pki().good)
        out = self.s_client(proxy, status=False)
        self.assertNotIn("OCSP response", out)
        self.assertIn("Verify return code: 0 (ok)", out)
        # Python's ssl never sends status_request.
        client = implicit(proxy, tlsutil.client_context(pki().ca_pair[0]))
        self.assertReply(client.command("EHLO client.example"), 250)

    def test_without_ocsp_response_nothing_is_stapled(self):
        proxy = self.proxy()
        self.assertNotStapled(self.s_client(proxy))


class NotStapled(OcspTestCase):

    def assertRefusedAtStart(self, proxy, reason):
        line = proxy.wait_log(r"\bevent=ocsp\b", r"\bstate=refused\b")
        self.assertIn(reason, line)
        self.assertEqual(len(proxy.log_lines(r"\bevent=ocsp\b")), 1,
                         proxy.log())
        # The proxy runs, with the certificate and without a staple.
        self.assertNotStapled(self.s_client(proxy))

    def test_stale_response_is_not_stapled_and_warned_about_once(self):
        proxy = self.proxy(stale())
        self.assertNotStapled(self.s_client(proxy))
        self.assertNotStapled(self.s_client(proxy))
        lines = proxy.log_lines(r"\bevent=ocsp\b")
        self.assertEqual(len(lines), 1, proxy.log())
        fields = harness.parse_log_fields(lines[0])
        self.assertEqual(fields["state"], "stale", lines[0])
        self.assertEqual(fields["file"], stale(), lines[0])
        self.assertRegex(fields["next_update"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", lines[0])

    def test_response_for_another_certificate_is_refused_at_start(self):
        proxy = self.proxy(pki().other_good)
        self.assertRefusedAtStart(proxy, "not for this certificate")

    def test_revoked_response_is_refused_at_start(self):
        proxy = self.proxy(pki().revoked)
        self.assertRefusedAtStart(proxy, "revoked")

    def test_a_file_that_is_not_a_response_is_refused_at_start(self):
        proxy = self.proxy(pki().server[0])
        self.assertRefusedAtStart(proxy, "not a DER OCSP response")

    def test_a_missing_file_is_refused_and_the_proxy_starts(self):
        missing = os.path.join(self.dir, "missing.der")
        proxy = self.proxy(missing)
        self.assertRefusedAtStart(proxy, "cannot open")


class PerSni(OcspTestCase):

    def test_each_sni_certificate_staples_its_own_response(self):
        proxy = self.proxy(pki().good, sni_ocsp=pki().other_good)
        self.assertStapled(self.s_client(proxy, servername=OTHER_HOSTNAME),
                           pki().other[0])
        self.assertStapled(self.s_client(proxy), pki().server[0])
        self.assertStapled(self.s_client(proxy, listener="starttls",
                                         servername=OTHER_HOSTNAME),
                           pki().other[0])

    def test_a_refused_sni_response_leaves_the_default_one_alone(self):
        # The [tls] response named for the [sni] certificate.
        proxy = self.proxy(pki().good, sni_ocsp=pki().good)
        line = proxy.wait_log(r"\bevent=ocsp\b", r"\bstate=refused\b")
        self.assertIn("not for this certificate", line)
        self.assertNotStapled(self.s_client(proxy,
                                            servername=OTHER_HOSTNAME))
        self.assertStapled(self.s_client(proxy), pki().server[0])


class Reload(OcspTestCase):

    def test_sighup_after_refreshing_a_stale_file_staples_again(self):
        path = self.live(stale())
        proxy = self.proxy(path)
        self.assertNotStapled(self.s_client(proxy))
        tlsutil.replace_file(pki().good, path)
        proxy.reload("ok")
        self.assertStapled(self.s_client(proxy), pki().server[0])

    def test_a_bad_file_at_reload_does_not_fail_the_reload(self):
        path = self.live(pki().good)
        proxy = self.proxy(path)
        self.assertStapled(self.s_client(proxy))
        tlsutil.replace_file(pki().revoked, path)
        proxy.reload("ok")
        proxy.wait_log(r"\bevent=ocsp\b", r"\bstate=refused\b", r"revoked")
        # TLS goes on, with the certificate and without the staple.
        self.assertNotStapled(self.s_client(proxy))


class CheckFlag(OcspTestCase):

    def check(self, proxy):
        """submitproxy -t on the proxy's config (not started)."""
        result = subprocess.run(
            [harness.binary(), "-t", "-c", proxy.config_path],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=WAIT)
        self.assertEqual(result.returncode, 0,
                         "exit %d\n%s%s" % (result.returncode, result.stdout,
                                            result.stderr))
        return result

    def test_check_prints_the_status_line_of_a_good_response(self):
        proxy = self.proxy(pki().good, sni_ocsp=pki().other_good,
                           start=False)
        result = self.check(proxy)
        for path in (pki().good, pki().other_good):
            self.assertRegex(
                result.stdout,
                r"(?m)^tls: %s: OCSP response status=good "
                r"thisUpdate=\S+Z nextUpdate=\S+Z$" % re.escape(path))
        self.assertNotIn("warning", result.stderr)

    def test_check_warns_about_a_revoked_or_stale_response(self):
        proxy = self.proxy(pki().revoked, sni_ocsp=stale(), start=False)
        result = self.check(proxy)
        self.assertRegex(result.stderr, r"(?m)^%s: warning: .*revoked"
                         % re.escape(pki().revoked))
        # The stale one is for test.example, here in [sni other.example]:
        # it is refused as being for another certificate.
        self.assertRegex(result.stderr, r"(?m)^%s: warning: .*not for this "
                         r"certificate" % re.escape(stale()))
        self.assertNotIn("OCSP response status=", result.stdout)

    def test_check_warns_that_a_response_is_stale(self):
        proxy = self.proxy(stale(), start=False)
        result = self.check(proxy)
        self.assertRegex(result.stderr, r"(?m)^%s: warning: OCSP response "
                         r"is stale \(nextUpdate=\S+Z\)" % re.escape(stale()))


if __name__ == "__main__":
    unittest.main()
