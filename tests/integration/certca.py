"""A small certificate authority for the client-certificate tests (issue 13),
made with the openssl command in a temporary directory, once per process.

    ca = certca.shared()                  # made on first use, cached
    ca.root.cert, ca.intermediate.cert    # the chain
    ca.client_ca                          # the root: [tls] client_ca
    ca.crl_file                           # both CRLs: [tls] client_crl
    ca.mapped.chain, ca.mapped.key        # what a client presents
    ca.mapped.pair                        # (chain, key) for tlsutil
    ca.fingerprint(ca.mapped)             # "AB:CD:..." (openssl's form)
    ca.sha256(ca.mapped)                  # "abcd..." (64 lower-case hex)
    ca.subject(ca.mapped)                 # "O=Example Machines,CN=monitor..."

What it holds (every key EC P-256):

  root            self-signed CA "submitproxy test root", CA:TRUE
  intermediate    signed by root, CA:TRUE pathlen:0; signs every client
                  certificate below
  server          CN=test.example, SAN test.example and IP 127.0.0.1,
                  signed by root: the proxy's [tls] certificate
  sni_a, sni_b    CN=a.example / CN=b.example (SAN the same), signed by
                  root: two [sni] sections for the resumption test
  mapped          CN=monitor.example.com, O=Example Machines; SAN
                  DNS:monitor.example.com, email:monitor@example.com
  unmapped        CN=stranger.example.com, SAN DNS:stranger.example.com
  expired         CN=expired.example.com, valid 2020-01-01..2020-02-01
                  (openssl ca -startdate/-enddate: no faketime needed)
  revoked         CN=revoked.example.com, revoked (keyCompromise) in the
                  intermediate's CRL
  host            CN=host.example.com, SAN DNS:host.example.com: what
                  the NUL certificate pretends to be (a positive control)
  nul             CN and SAN dNSName "host.example.com\\0.evil.test": made
                  as "host.example.comX.evil.test", the X patched to 0x00
                  in the DER TBSCertificate and the TBS signed again with
                  the intermediate's key (the openssl command cannot put a
                  NUL in a name); verifies like any other certificate
  other_root      a second self-signed CA the proxy does not trust
  other           CN=monitor.example.com (the mapped names!) signed by
                  other_root: a certificate that must not log in even
                  though its subject and SAN match rules; its chain is
                  the leaf and other_root, so that verifying it fails with
                  one error only, "self-signed certificate in certificate
                  chain" (the leaf alone fails twice: "unable to get local
                  issuer certificate", then "unable to verify the first
                  certificate")

Client certificates carry extendedKeyUsage clientAuth.  Each client
certificate's .chain is the leaf followed by the intermediate (what
SSL_CTX_use_certificate_chain_file, curl --cert, msmtp's tls_cert_file and
Python's load_cert_chain send), .cert is the leaf alone (what swaks
--tls-cert and s_client -cert send).

The CRLs: the root's (root.crl, empty: the intermediate is not revoked)
and the intermediate's (intermediate.crl, revoked is in it), both valid
for 30 days, concatenated in crl_file, so that a check of the whole chain
(X509_V_FLAG_CRL_CHECK_ALL) finds one for each CA.  crl_file_clean is the
same pair with the intermediate's CRL from before the revocation
(intermediate_crl_clean), for a SIGHUP that brings the revocation in.

Self-check (makes everything and checks it with openssl verify, openssl
x509 and Python's ssl):  python3 tests/integration/certca.py

Python standard library and the openssl command only; every command is
bounded by a timeout.
"""

import atexit
import hashlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HOSTNAME  # noqa: E402

TIMEOUT = 30.0          # seconds for one openssl command (key generation)

SNI_A = "a.example"
SNI_B = "b.example"
MAPPED_CN = "monitor.example.com"
MAPPED_EMAIL = "monitor@example.com"
HOST_CN = "host.example.com"
NUL_PLACEHOLDER = b"host.example.comX.evil.test"
NUL_NAME = b"host.example.com\x00.evil.test"


def require_openssl():
    path = shutil.which("openssl")
    if not path:
        raise unittest.SkipTest("the openssl command is not installed")
    return path


def _run(args, input=None, check=True):
    """Runs a command, stdout/stderr captured (bytes); fails with both."""
    try:
        result = subprocess.run(
            args, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not finish within %.0f s"
                             % (" ".join(args), TIMEOUT)) from None
    if check and result.returncode != 0:
        raise AssertionError("%s exited with %d:\n%s%s"
                             % (" ".join(args), result.returncode,
                                result.stdout.decode("utf-8", "replace"),
                                result.stderr.decode("utf-8", "replace")))
    return result


# ------------------------------------------------------------------- DER

def der_read(data, offset=0):
    """One DER TLV at data[offset:]: (tag byte, offset of the contents,
    length of the contents).  Single-byte tags only (all X.509 needs
    here); definite lengths only (DER)."""
    tag = data[offset]
    if tag & 0x1f == 0x1f:
        raise ValueError("multi-byte tag at %d" % offset)
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, first
    count = first & 0x7f
    if count == 0 or count > 4:
        raise ValueError("bad length of length %d at %d" % (count, offset))
    length = int.from_bytes(data[offset + 2:offset + 2 + count], "big")
    if length < 0x80 or data[offset + 2] == 0:
        raise ValueError("non-minimal length at %d" % offset)
    return tag, offset + 2 + count, length


def der_length(length):
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag, contents):
    return bytes([tag]) + der_length(len(contents)) + contents


def der_certificate_parts(der):
    """(tbs, signatureAlgorithm, signature BIT STRING contents) of a DER
    Certificate, each the complete TLV except the last (its contents,
    unused-bits byte included)."""
    tag, start, length = der_read(der, 0)
    if tag != 0x30 or start + length != len(der):
        raise ValueError("not one DER SEQUENCE")
    parts = []
    offset = start
    while offset < start + length:
        tag, cstart, clen = der_read(der, offset)
        end = cstart + clen
        parts.append((tag, der[offset:end], der[cstart:end]))
        offset = cstart + clen
    if len(parts) != 3 or [p[0] for p in parts] != [0x30, 0x30, 0x03]:
        raise ValueError("not a Certificate: %r" % [p[0] for p in parts])
    return parts[0][1], parts[1][1], parts[2][2]


def der_certificate(tbs, algorithm, signature):
    """Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING (signature,
    no unused bits) }."""
    return der_tlv(0x30, tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


# ---------------------------------------------------------- certificates

class Cert:
    """One certificate: .cert (leaf PEM), .key, .chain (leaf and the
    intermediates, PEM), .der (path of the DER form), .name."""

    def __init__(self, name, cert, key, chain=None):
        self.name = name
        self.cert = cert
        self.key = key
        self.chain = chain or cert
        self.der = None

    @property
    def pair(self):
        """(chain, key): tlsutil.client_context(cert=...)."""
        return (self.chain, self.key)

    def __repr__(self):
        return "<Cert %s %s>" % (self.name, self.cert)


class Authority(Cert):
    """A CA usable with "openssl ca": its directory, index and config;
    .crl once gencrl() ran."""

    def __init__(self, name, cert, key, directory, config):
        super().__init__(name, cert, key)
        self.dir = directory
        self.config = config
        self.crl = None


CA_CONFIG = """\
[ca]
default_ca = ca_section

[ca_section]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
certificate = {cert}
private_key = {key}
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
name_opt = ca_default
cert_opt = ca_default
preserve = yes

[policy_any]
commonName = supplied
organizationName = optional
"""


class CertAuthorities:
    """Everything listed in the module docstring, made in directory."""

    def __init__(self, directory):
        self.openssl = require_openssl()
        self.dir = directory
        self.root = self._root("root", "submitproxy test root")
        self.intermediate = self._intermediate("intermediate",
                                               "submitproxy test intermediate",
                                               self.root)
        self.other_root = self._root("other-root", "another test root")

        self.server = self._issue("server", self.root, HOSTNAME,
                                  san=["DNS:" + HOSTNAME, "IP:127.0.0.1"],
                                  usage="serverAuth")
        self.sni_a = self._issue("sni-a", self.root, SNI_A,
                                 san=["DNS:" + SNI_A], usage="serverAuth")
        self.sni_b = self._issue("sni-b", self.root, SNI_B,
                                 san=["DNS:" + SNI_B], usage="serverAuth")

        inter = self.intermediate
        self.mapped = self._issue(
            "mapped", inter, MAPPED_CN, organization="Example Machines",
            san=["DNS:" + MAPPED_CN, "email:" + MAPPED_EMAIL])
        self.unmapped = self._issue("unmapped", inter, "stranger.example.com",
                                    san=["DNS:stranger.example.com"])
        self.expired = self._issue("expired", inter, "expired.example.com",
                                   san=["DNS:expired.example.com"],
                                   startdate="20200101000000Z",
                                   enddate="20200201000000Z")
        self.revoked = self._issue("revoked", inter, "revoked.example.com",
                                   san=["DNS:revoked.example.com"])
        self.host = self._issue("host", inter, HOST_CN,
                                san=["DNS:" + HOST_CN])
        self.nul = self._nul_certificate()
        self.other = self._issue(
            "other", self.other_root, MAPPED_CN,
            organization="Example Machines",
            san=["DNS:" + MAPPED_CN, "email:" + MAPPED_EMAIL],
            chain=self.other_root)

        self.root.crl = self._gencrl(self.root)
        # The intermediate's CRL before and after the revocation.
        self.intermediate_crl_clean = self._gencrl(inter, "intermediate-clean")
        self._openssl("ca", "-config", inter.config, "-batch",
                      "-revoke", self.revoked.cert,
                      "-crl_reason", "keyCompromise")
        inter.crl = self._gencrl(inter)
        self.crl_file = os.path.join(directory, "crls.pem")
        self._concat(self.crl_file, [inter.crl, self.root.crl])
        self.crl_file_clean = os.path.join(directory, "crls-clean.pem")
        self._concat(self.crl_file_clean,
                     [self.intermediate_crl_clean, self.root.crl])
        # [tls] client_ca: the root only; clients send the intermediate.
        self.client_ca = self.root.cert
        # For clients verifying the server, and for a client_ca that
        # holds the whole chain.
        self.ca_bundle = os.path.join(directory, "root+intermediate.pem")
        self._concat(self.ca_bundle, [self.root.cert, inter.cert])
        for cert in self.all_certs():
            cert.der = os.path.join(directory, cert.name + ".der")
            if not os.path.exists(cert.der):
                self._openssl("x509", "-in", cert.cert, "-outform", "DER",
                              "-out", cert.der)
        self._make_readable()

    # -- helpers

    def _openssl(self, *args, input=None, check=True):
        return _run([self.openssl] + list(args), input=input, check=check)

    def _path(self, *names):
        return os.path.join(self.dir, *names)

    @staticmethod
    def _concat(out, paths):
        with open(out, "wb") as f:
            for path in paths:
                with open(path, "rb") as g:
                    data = g.read()
                f.write(data if data.endswith(b"\n") else data + b"\n")

    def _make_readable(self):
        """A reload re-reads [tls] files after the privilege drop: let
        harness.TEST_USER read these throw-away keys (tlsutil does the
        same)."""
        if os.geteuid() != 0:
            return
        for top, dirs, files in os.walk(self.dir):
            os.chmod(top, 0o755)
            for name in files:
                os.chmod(os.path.join(top, name), 0o644)

    def _ca_dir(self, name, cert, key):
        directory = self._path(name + ".ca")
        os.mkdir(directory)
        os.mkdir(os.path.join(directory, "newcerts"))
        open(os.path.join(directory, "index.txt"), "w").close()
        with open(os.path.join(directory, "index.txt.attr"), "w") as f:
            f.write("unique_subject = no\n")
        with open(os.path.join(directory, "serial"), "w") as f:
            # Distinct serials per CA (an index per CA).
            f.write("%X\n" % (0x1000 + len(os.listdir(self.dir)) * 0x100))
        with open(os.path.join(directory, "crlnumber"), "w") as f:
            f.write("01\n")
        config = os.path.join(directory, "ca.cnf")
        with open(config, "w") as f:
            f.write(CA_CONFIG.format(dir=directory, cert=cert, key=key))
        return Authority(name, cert, key, directory, config)

    def _newkey(self, name):
        key = self._path(name + ".key")
        self._openssl("genpkey", "-algorithm", "EC",
                      "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def _root(self, name, common_name):
        cert = self._path(name + ".pem")
        key = self._newkey(name)
        self._openssl("req", "-x509", "-new", "-key", key, "-days", "30",
                      "-sha256", "-subj", "/CN=" + common_name,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-addext", "subjectKeyIdentifier=hash",
                      "-out", cert)
        return self._ca_dir(name, cert, key)

    def _extfile(self, name, lines):
        path = self._path(name + ".ext")
        with open(path, "w") as f:
            f.write("[ext]\n" + "\n".join(lines) + "\n")
        return path

    def _sign(self, name, issuer, csr, ext, startdate=None, enddate=None):
        cert = self._path(name + ".pem")
        args = ["ca", "-config", issuer.config, "-batch", "-notext",
                "-in", csr, "-out", cert, "-extfile", ext,
                "-extensions", "ext"]
        if startdate:
            args += ["-startdate", startdate]
        if enddate:
            args += ["-enddate", enddate]
        else:
            args += ["-days", "30"]
        self._openssl(*args)
        os.unlink(csr)
        os.unlink(ext)
        return cert

    def _csr(self, name, key, subject):
        csr = self._path(name + ".csr")
        self._openssl("req", "-new", "-key", key, "-subj", subject,
                      "-out", csr)
        return csr

    def _intermediate(self, name, common_name, issuer):
        key = self._newkey(name)
        csr = self._csr(name, key, "/CN=" + common_name)
        ext = self._extfile(name, [
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "keyUsage=critical,keyCertSign,cRLSign",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid:always"])
        cert = self._sign(name, issuer, csr, ext)
        return self._ca_dir(name, cert, key)

    def _issue(self, name, issuer, common_name, organization=None, san=(),
               usage="clientAuth", startdate=None, enddate=None, chain=True):
        key = self._newkey(name)
        subject = "/CN=" + common_name
        if organization:
            subject += "/O=" + organization
        csr = self._csr(name, key, subject)
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature",
                 "extendedKeyUsage=" + usage,
                 "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid,issuer"]
        if san:
            lines.append("subjectAltName=" + ",".join(san))
        ext = self._extfile(name, lines)
        cert = self._sign(name, issuer, csr, ext, startdate, enddate)
        full = None
        if chain is True and issuer is not self.root:
            chain = issuer
        if isinstance(chain, Cert):
            full = self._path(name + ".chain.pem")
            self._concat(full, [cert, chain.cert])
        return Cert(name, cert, key, full)

    def _gencrl(self, authority, name=None):
        crl = self._path((name or authority.name) + ".crl.pem")
        self._openssl("ca", "-config", authority.config, "-batch",
                      "-gencrl", "-crldays", "30", "-out", crl)
        return crl

    def _nul_certificate(self):
        """The NUL certificate (see the module docstring)."""
        made = self._issue("nul-template", self.intermediate,
                           NUL_PLACEHOLDER.decode(),
                           san=["DNS:" + NUL_PLACEHOLDER.decode()])
        der = self._openssl("x509", "-in", made.cert, "-outform",
                            "DER").stdout
        tbs, algorithm, _ = der_certificate_parts(der)
        if tbs.count(NUL_PLACEHOLDER) != 2:
            raise AssertionError("the placeholder is %d times in the TBS, "
                                 "expected 2 (CN and SAN)"
                                 % tbs.count(NUL_PLACEHOLDER))
        patched = tbs.replace(NUL_PLACEHOLDER, NUL_NAME)
        tbs_path = self._path("nul.tbs")
        with open(tbs_path, "wb") as f:
            f.write(patched)
        signature = self._openssl("dgst", "-sha256", "-sign",
                                  self.intermediate.key, tbs_path).stdout
        os.unlink(tbs_path)
        new = der_certificate(patched, algorithm, signature)
        der_path = self._path("nul.der")
        with open(der_path, "wb") as f:
            f.write(new)
        pem = self._path("nul.pem")
        with open(pem, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(new))
        key = self._path("nul.key")
        os.replace(made.key, key)
        for path in (made.cert, made.chain):
            os.unlink(path)
        chain = self._path("nul.chain.pem")
        self._concat(chain, [pem, self.intermediate.cert])
        cert = Cert("nul", pem, key, chain)
        cert.der = der_path
        return cert

    # -- reading back

    def all_certs(self):
        return [self.root, self.intermediate, self.other_root, self.server,
                self.sni_a, self.sni_b, self.mapped, self.unmapped,
                self.expired, self.revoked, self.host, self.nul, self.other]

    def clients(self):
        """{name: Cert} of the client certificates."""
        return {c.name: c for c in (self.mapped, self.unmapped, self.expired,
                                    self.revoked, self.host, self.nul,
                                    self.other)}

    def fingerprint(self, cert):
        """SHA-256 fingerprint as openssl prints it ("AB:CD:...")."""
        out = self._openssl("x509", "-in", cert.cert, "-noout",
                            "-fingerprint", "-sha256").stdout.decode()
        m = re.search(r"=\s*([0-9A-Fa-f:]+)\s*$", out.strip())
        if not m:
            raise AssertionError("no fingerprint in %r" % out)
        return m.group(1)

    def sha256(self, cert):
        """SHA-256 fingerprint, 64 lower-case hex digits (what
        tls_conn_peer_sha256() returns)."""
        return self.fingerprint(cert).replace(":", "").lower()

    def subject(self, cert):
        """The subject, RFC 2253 style, as a client_cert_map "subject:"
        rule names it (escapes as openssl prints them)."""
        out = self._openssl("x509", "-in", cert.cert, "-noout", "-subject",
                            "-nameopt", "RFC2253").stdout.decode()
        return out.strip().split("=", 1)[1]

    def verify(self, cert, crl=False):
        """openssl verify of cert against root with what the client sends
        (its chain) as untrusted certificates, with the CRLs
        (-crl_check_all) if crl; (ok, output)."""
        args = ["verify", "-CAfile", self.root.cert, "-untrusted",
                cert.chain, "-purpose", "sslclient"]
        if crl:
            args += ["-crl_check_all", "-CRLfile", self.crl_file]
        result = self._openssl(*(args + [cert.cert]), check=False)
        out = (result.stdout + result.stderr).decode("utf-8", "replace")
        return result.returncode == 0, out


_shared = None


def shared():
    """The process-wide CertAuthorities, made on first use (SkipTest
    without the openssl command); removed when the process exits."""
    global _shared
    if _shared is None:
        require_openssl()
        directory = tempfile.mkdtemp(prefix="submitproxy-certca-")
        if not os.environ.get("SUBMITPROXY_KEEP_TMP"):
            atexit.register(shutil.rmtree, directory, True)
        _shared = CertAuthorities(directory)
    return _shared


# ------------------------------------------------------------ self-check

class SelfCheck(unittest.TestCase):
    """python3 tests/integration/certca.py: the fixture is what it says."""

    @classmethod
    def setUpClass(cls):
        cls.ca = shared()

    def assertVerifies(self, cert, crl=True):
        ok, out = self.ca.verify(cert, crl=crl)
        self.assertTrue(ok, "%s: %s" % (cert.name, out))

    def assertRefused(self, cert, message, crl=True):
        ok, out = self.ca.verify(cert, crl=crl)
        self.assertFalse(ok, "%s verified: %s" % (cert.name, out))
        self.assertIn(message, out)

    def test_good_client_certificates_verify_with_the_crls(self):
        for cert in (self.ca.mapped, self.ca.unmapped, self.ca.host):
            self.assertVerifies(cert)

    def test_expired_is_refused_as_expired(self):
        self.assertRefused(self.ca.expired, "certificate has expired")

    def test_revoked_verifies_without_crl_and_is_revoked_with_it(self):
        self.assertVerifies(self.ca.revoked, crl=False)
        self.assertRefused(self.ca.revoked, "certificate revoked")

    def test_other_ca_is_refused(self):
        self.assertRefused(self.ca.other,
                           "self-signed certificate in certificate chain")

    def test_nul_certificate_parses_verifies_and_holds_the_nul(self):
        text = self.ca._openssl("x509", "-inform", "DER", "-in",
                                self.ca.nul.der, "-noout",
                                "-text").stdout.decode("utf-8", "replace")
        self.assertIn("Signature Algorithm: ecdsa-with-SHA256", text)
        self.assertIn("Subject: CN = host.example.com\\00.evil.test", text)
        # OpenSSL 3 will not print a SAN with a NUL (CVE-2021-3712
        # hardening), it dumps the extension instead; Python's decoder
        # shows both names whole.
        self.assertIn("X509v3 Subject Alternative Name", text)
        decoded = ssl._ssl._test_decode_cert(self.ca.nul.cert)
        name = NUL_NAME.decode()
        self.assertEqual(decoded["subject"], ((("commonName", name),),))
        self.assertEqual(decoded["subjectAltName"], (("DNS", name),))
        with open(self.ca.nul.der, "rb") as f:
            der = f.read()
        self.assertEqual(der.count(NUL_NAME), 2)
        self.assertNotIn(NUL_PLACEHOLDER, der)
        self.assertVerifies(self.ca.nul)
        # The subject as the proxy's RFC 2253 form would show it: not the
        # bare host name.
        self.assertNotEqual(self.ca.subject(self.ca.nul), "CN=" + HOST_CN)

    def test_fingerprint_is_the_sha256_of_the_der(self):
        for cert in self.ca.clients().values():
            with open(cert.der, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            self.assertEqual(self.ca.sha256(cert), digest, cert.name)
            self.assertRegex(self.ca.fingerprint(cert),
                             r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")

    def test_mapped_subject_and_names(self):
        self.assertEqual(self.ca.subject(self.ca.mapped),
                         "O=Example Machines,CN=" + MAPPED_CN)
        text = self.ca._openssl("x509", "-in", self.ca.mapped.cert,
                                "-noout", "-ext",
                                "subjectAltName,extendedKeyUsage") \
            .stdout.decode()
        self.assertIn("DNS:" + MAPPED_CN, text)
        self.assertIn("email:" + MAPPED_EMAIL, text)
        self.assertIn("TLS Web Client Authentication", text)

    def test_chains_load_into_python_ssl(self):
        for cert in self.ca.clients().values():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_cert_chain(cert.chain, cert.key)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(self.ca.server.cert, self.ca.server.key)
        server.load_verify_locations(self.ca.client_ca)
        server.load_verify_locations(self.ca.crl_file)

    def test_chain_files_hold_leaf_then_intermediate(self):
        with open(self.ca.mapped.chain) as f:
            blocks = f.read().count("BEGIN CERTIFICATE")
        self.assertEqual(blocks, 2)
        with open(self.ca.other.chain) as f:
            self.assertIn(open(self.ca.other_root.cert).read(), f.read())

    def test_crl_file_holds_both_crls(self):
        with open(self.ca.crl_file) as f:
            self.assertEqual(f.read().count("BEGIN X509 CRL"), 2)

    def test_clean_crls_do_not_revoke_and_each_ca_needs_its_crl(self):
        args = ["verify", "-CAfile", self.ca.root.cert, "-untrusted",
                self.ca.intermediate.cert, "-crl_check_all"]
        ok = self.ca._openssl(*(args + ["-CRLfile", self.ca.crl_file_clean,
                                        self.ca.revoked.cert]), check=False)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        for crl in (self.ca.root.crl, self.ca.intermediate.crl):
            one = self.ca._openssl(*(args + ["-CRLfile", crl,
                                             self.ca.mapped.cert]),
                                   check=False)
            self.assertNotEqual(one.returncode, 0, crl)
            self.assertIn(b"unable to get certificate CRL",
                          one.stdout + one.stderr)


if __name__ == "__main__":
    unittest.main()
