"""submitproxy --check-backend: each backend talked to as the proxy would,
and a report of what a client will see and what may go wrong.

Issue 11: for each backend in order, its greeting and EHLO as it gave
them (or the HELO fallback), the EHLO a client sees before and after AUTH,
every capability dropped and why, XCLIENT (offered, used, accepted with
this proxy's attributes), whether the backend takes MAIL FROM:<> without
authentication (and whether the same port answers at this host's other
addresses), how it treats a bare LF, QUIT.  Exit 0 all good, 1 warnings,
2 a backend the proxy cannot use (or a configuration error); --json the
same facts as one JSON object.

Backends: Postfix's smtp-sink (ESMTP, -e HELO only, -p no PIPELINING,
-C no XCLIENT), the recording backend (a backend that refuses XCLIENT),
a private Postfix (root only) and a port nobody listens on.  Loopback
only: the one test that needs a non-loopback address makes its own in a
private network namespace (root only).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backends  # noqa: E402
import harness  # noqa: E402
from harness import WAIT  # noqa: E402

# The check waits a second for a second reply to its bare-LF line, and at
# most the configured timeouts for anything else.
RUN_TIMEOUT = 6 * WAIT


def setUpModule():
    harness.require_binary()


def down_address():
    """A loopback address where nothing listens."""
    return "127.0.0.1:%d" % harness.free_ports(["127.0.0.1"])[0]


def check_config(directory, addresses, backend_keys=None, limits=None):
    """A configuration file in directory whose [backend] address lists
    addresses (strings); returns its path."""
    sections = {
        "server": {"hostname": harness.HOSTNAME, "user": harness.TEST_USER},
        "listener plain": {"address": "127.0.0.1:%d"
                           % harness.free_ports(["127.0.0.1"])[0],
                           "mode": "plain"},
        "limits": dict(limits or {}),
        "backend": {"address": ", ".join(addresses),
                    "connect_timeout": "2s", "timeout": "5s"},
    }
    sections["backend"].update(backend_keys or {})
    path = os.path.join(directory, "submitproxy.conf")
    with open(path, "w") as f:
        f.write(harness.render_config(sections))
    return path


def run_binary(*args):
    return subprocess.run([harness.binary()] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=RUN_TIMEOUT)


def section(text, title):
    """The lines indented under the first line that starts with title
    (after its own indentation), up to the next line indented as little.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(title):
            indent = len(line) - len(stripped)
            body = []
            for following in lines[i + 1:]:
                if len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following.strip())
            return body
    raise AssertionError("no section %r in:\n%s" % (title, text))


def backend_part(text, number):
    """The report of backend number (1-based)."""
    m = re.search(r"(?ms)^backend %d of \d+:.*?^  result: \S+$" % number,
                  text)
    if not m:
        raise AssertionError("no backend %d in:\n%s" % (number, text))
    return m.group(0)


class CheckBackend(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="submitproxy-check-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def check(self, addresses, *extra, backend_keys=None, limits=None):
        """Runs --check-backend; returns (exit status, stdout, stderr)."""
        path = check_config(self.dir, addresses, backend_keys, limits)
        result = run_binary("--check-backend", "-c", path, *extra)
        out = result.stdout.decode("utf-8", "replace")
        err = result.stderr.decode("utf-8", "replace")
        self.last = "exit %d\nstdout:\n%s\nstderr:\n%s" % (
            result.returncode, out, err)
        self.assertNotRegex(err, harness.SANITIZER_REPORT, self.last)
        return result.returncode, out, err

    def check_json(self, addresses, **kwargs):
        rc, out, _ = self.check(addresses, "--json", **kwargs)
        report = json.loads(out)
        self.assertEqual(report["exit_status"], rc, self.last)
        return rc, report

    # -- smtp-sink, the three shapes of an MTA

    def test_esmtp_backend_greeting_ehlo_views_and_dropped_capabilities(self):
        sink = backends.SmtpSink(self)
        rc, out, _ = self.check([sink.address])
        self.assertEqual(rc, 0, self.last)
        part = backend_part(out, 1)
        raw = section(part, "greeting and EHLO, as the backend sent them")
        self.assertEqual(raw[0], "< 220 smtp-sink ESMTP", self.last)
        self.assertIn("> EHLO %s" % harness.HOSTNAME, raw)
        for line in ("< 250-PIPELINING", "< 250-8BITMIME",
                     "< 250-AUTH PLAIN LOGIN", "< 250-XCLIENT NAME HELO",
                     "< 250-XFORWARD NAME ADDR PROTO HELO"):
            self.assertIn(line, raw, self.last)
        before = section(part, "a client sees before AUTH")
        self.assertEqual(before[0], "250-%s" % harness.HOSTNAME, self.last)
        self.assertIn("250-8BITMIME", before, self.last)
        self.assertIn("250-SIZE 52428800", before, self.last)
        self.assertEqual(before[-1], "250 AUTH PLAIN LOGIN", self.last)
        after = section(part, "a client sees after AUTH")
        self.assertIn("250-8BITMIME", after, self.last)
        self.assertFalse([l for l in after if "AUTH" in l or "XCLIENT" in l
                          or "XFORWARD" in l], self.last)
        caps = section(part, "capabilities:")
        self.assertIn("passed   PIPELINING", caps, self.last)
        self.assertIn("dropped  AUTH PLAIN LOGIN: the proxy authenticates "
                      "clients itself (PAM)", caps, self.last)
        self.assertIn("dropped  XCLIENT NAME HELO: used by the proxy only, "
                      "for its own hand-over", caps, self.last)
        self.assertTrue([l for l in caps
                         if l.startswith("dropped  XFORWARD")], self.last)
        self.assertIn("added    SIZE 52428800: the proxy enforces "
                      "max_message_size itself", caps, self.last)
        self.assertTrue([l for l in caps if l.startswith("missing  SMTPUTF8")],
                        self.last)
        # XCLIENT as relay.c sends it: only the attributes listed.
        self.assertIn("XCLIENT: offered (NAME HELO); xclient = auto: the "
                      "proxy sends it at each hand-over", part, self.last)
        self.assertIn("> XCLIENT NAME=[UNAVAILABLE] HELO=%s"
                      % harness.HOSTNAME, part, self.last)
        self.assertIn("XCLIENT accepted", part, self.last)
        mail = section(part, "MAIL FROM:<> without authentication")
        self.assertEqual(mail[:4], ["> MAIL FROM:<>", "< 250 2.1.0 Ok",
                                    "> RSET", "< 250 2.1.0 Ok"], self.last)
        self.assertIn("accepted: the backend trusts this host", mail[4])
        bare = section(part, "a bare LF in a command line")
        self.assertEqual(bare[0], r"> NOOP\x0aNOOP", self.last)
        self.assertIn("1 reply: the backend does not take a bare LF as the "
                      "end of a command line", bare, self.last)
        self.assertIn("< 221 Bye", section(part, "end:"), self.last)
        self.assertRegex(part, r"(?m)^  result: ok$")
        self.assertIn("1 backend: 1 ok; exit status 0", out, self.last)
        # Nothing was queued: no transaction reached the end of data.
        self.assertEqual(sink.messages(), [])

    def test_helo_only_backend_clients_see_no_8bitmime(self):
        sink = backends.SmtpSink(self, options=["-e"])
        rc, out, _ = self.check([sink.address])
        self.assertEqual(rc, 0, self.last)
        raw = section(out, "greeting and EHLO, as the backend sent them")
        self.assertEqual(raw, ["< 220 smtp-sink",
                               "> EHLO %s" % harness.HOSTNAME,
                               "< 500 5.5.1 Error: unknown command",
                               "> HELO %s" % harness.HOSTNAME,
                               "< 250 smtp-sink"], self.last)
        for title in ("a client sees before AUTH", "a client sees after AUTH"):
            view = section(out, title)
            self.assertIn("250-PIPELINING", view, self.last)
            for ext in ("8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"):
                self.assertFalse([l for l in view if ext in l], self.last)
        self.assertIn("missing  8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, "
                      "DSN, DELIVERBY: not offered by the backend, so a "
                      "client does not see them", out, self.last)
        self.assertIn("note: the backend speaks no ESMTP (EHLO refused, "
                      "HELO accepted): a client is shown only PIPELINING "
                      "and SIZE, the proxy's own, and no 8BITMIME", out,
                      self.last)
        self.assertIn("XCLIENT: not tried (no ESMTP)", out, self.last)

    def test_backend_without_pipelining_is_fed_one_command_at_a_time(self):
        sink = backends.SmtpSink(self, options=["-p"])
        rc, out, _ = self.check([sink.address])
        self.assertEqual(rc, 0, self.last)
        raw = section(out, "greeting and EHLO, as the backend sent them")
        self.assertNotIn("< 250-PIPELINING", raw, self.last)
        self.assertIn("250-PIPELINING", section(out, "a client sees before "
                                                     "AUTH"), self.last)
        self.assertIn("added    PIPELINING: the proxy takes pipelined "
                      "commands itself and gives this backend one at a "
                      "time", section(out, "capabilities:"), self.last)

    # -- XCLIENT

    def test_postfix_offers_and_accepts_xclient(self):
        sink = backends.SmtpSink(self)
        postfix = backends.PostfixInstance(self, relayhost=sink)
        rc, out, _ = self.check([postfix.address])
        self.assertEqual(rc, 0, self.last)
        self.assertRegex(out, r"XCLIENT: offered \([^)]*\bLOGIN\b[^)]*\); "
                         r"xclient = auto: the proxy sends it at each "
                         r"hand-over")
        self.assertRegex(out, r"> XCLIENT NAME=\[UNAVAILABLE\] "
                         r"ADDR=192\.0\.2\.1 PORT=49152 HELO=test\.example "
                         r"LOGIN=submitproxy-check PROTO=ESMTP")
        self.assertIn("XCLIENT accepted", out, self.last)
        caps = section(out, "capabilities:")
        self.assertTrue([l for l in caps if l.startswith("dropped  XCLIENT")],
                        self.last)
        self.assertTrue([l for l in caps if l.startswith("dropped  ETRN")],
                        self.last)
        self.assertTrue([l for l in caps if l.startswith("dropped  CHUNKING: "
                                                         "BDAT is not "
                                                         "relayed")],
                        self.last)
        # Postfix 3.7 ends a command line at a bare LF unless told not to.
        self.assertRegex(out, r"(?m)^    (1 reply|2 replies): the backend")
        # MAIL FROM:<> then RSET: nothing is left in the queue.
        incoming = os.path.join(postfix.queue_dir, "incoming")
        backends.wait_for(lambda: not os.listdir(incoming),
                          "an empty incoming queue")
        self.assertEqual(sink.messages(), [])

    def test_postfix_not_trusting_this_host_for_xclient_is_a_warning(self):
        sink = backends.SmtpSink(self)
        postfix = backends.PostfixInstance(self, relayhost=sink)
        postfix._postconf("-e", "smtpd_authorized_xclient_hosts=")
        postfix._run_postfix("reload")

        def refused():
            rc, out, _ = self.check([postfix.address])
            return (rc, out) if "insufficient authorization" in out else None
        rc, out = backends.wait_for(refused, "the reloaded Postfix",
                                    timeout=3 * WAIT, interval=0.5)
        self.assertEqual(rc, 1, self.last)
        self.assertIn("XCLIENT: not offered; xclient = auto: the proxy does "
                      "not use it", out, self.last)
        self.assertIn("warning: the backend knows XCLIENT but refuses it "
                      "from this host (550 5.7.0 Error: insufficient "
                      "authorization) (Postfix: "
                      "smtpd_authorized_xclient_hosts does not include "
                      "127.0.0.1)", out, self.last)

    def test_backend_refusing_xclient_from_this_host_is_a_warning(self):
        # Postfix's way: XCLIENT not listed for an unauthorized host, and
        # refused when sent anyway.
        rec = backends.RecordingBackend(self, replies={
            "XCLIENT": "550 5.7.0 Error: insufficient authorization"})
        rc, out, _ = self.check([rec.address])
        self.assertEqual(rc, 1, self.last)
        self.assertIn("> XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.1", out)
        self.assertIn("XCLIENT refused", out, self.last)
        self.assertIn("warning: the backend knows XCLIENT but refuses it "
                      "from this host (550 5.7.0 Error: insufficient "
                      "authorization)", out, self.last)
        self.assertRegex(out, r"(?m)^  result: warning$")
        self.assertIn("1 backend: 1 warning; exit status 1", out)
        # Nothing but the check's own commands reached it.
        verbs = rec.all_verbs()
        self.assertNotIn("RCPT", verbs)
        self.assertNotIn("DATA", verbs)

    def test_xclient_offered_but_refused_fails_every_hand_over(self):
        rec = backends.RecordingBackend(
            self, caps=backends.DEFAULT_CAPS + [
                "XCLIENT NAME ADDR PORT PROTO HELO LOGIN"],
            replies={"XCLIENT": "550 5.7.0 Error: insufficient "
                                "authorization"})
        rc, out, _ = self.check([rec.address])
        self.assertEqual(rc, 2, self.last)
        self.assertIn("error: XCLIENT refused (550 5.7.0 Error: "
                      "insufficient authorization)", out, self.last)
        self.assertIn("which then fails (AUTH is answered 454)", out)
        # xclient=no on that backend: the proxy does not send it.
        rc, out, _ = self.check(["%s xclient=no" % rec.address])
        self.assertEqual(rc, 1, self.last)
        self.assertIn("warning: XCLIENT offered but refused", out, self.last)

    def test_xclient_yes_with_a_backend_without_it_is_an_error(self):
        sink = backends.SmtpSink(self, options=["-C"])
        rc, out, _ = self.check([sink.address],
                                backend_keys={"xclient": "yes"})
        self.assertEqual(rc, 2, self.last)
        self.assertIn("error: xclient = yes, but the backend does not offer "
                      "XCLIENT", out, self.last)
        self.assertIn("every hand-over fails", out, self.last)

    def test_xclient_yes_with_a_helo_only_backend_is_an_error(self):
        sink = backends.SmtpSink(self, options=["-e"])
        rc, out, _ = self.check([sink.address],
                                backend_keys={"xclient": "yes"})
        self.assertEqual(rc, 2, self.last)
        self.assertIn("error: xclient = yes, but the backend speaks no "
                      "ESMTP", out, self.last)

    # -- unreachable backends

    def test_backend_down_is_unreachable_exit_2(self):
        address = down_address()
        rc, out, _ = self.check([address])
        self.assertEqual(rc, 2, self.last)
        self.assertIn("error: unreachable: connect to %s: Connection refused"
                      % address, out, self.last)
        self.assertRegex(out, r"(?m)^  result: unreachable$")
        self.assertIn("1 backend: 1 unreachable; exit status 2", out)

    def test_two_backends_one_up_one_down_each_named(self):
        sink = backends.SmtpSink(self)
        down = down_address()
        rc, out, _ = self.check([sink.address, down])
        self.assertEqual(rc, 2, self.last)
        first, second = backend_part(out, 1), backend_part(out, 2)
        self.assertTrue(first.startswith("backend 1 of 2: %s (xclient = auto)"
                                         % sink.address), self.last)
        self.assertRegex(first, r"(?m)^  result: ok$")
        self.assertTrue(second.startswith("backend 2 of 2: %s" % down))
        self.assertIn("unreachable", second)
        self.assertRegex(second, r"(?m)^  result: unreachable$")
        self.assertIn("2 backends: 1 ok, 1 unreachable; exit status 2", out)

    def test_two_backends_the_pre_auth_ehlo_is_what_both_offer(self):
        full = backends.SmtpSink(self)
        helo_only = backends.SmtpSink(self, options=["-e"])
        rc, out, _ = self.check([full.address, helo_only.address])
        self.assertEqual(rc, 0, self.last)
        self.assertIn("250-8BITMIME", backend_part(out, 1), self.last)
        summary = out[out.index("a client sees before AUTH while the "
                                "backends that answered are up"):]
        self.assertNotIn("8BITMIME", summary, self.last)
        self.assertIn("250-PIPELINING", summary, self.last)
        rc, report = self.check_json([full.address, helo_only.address])
        common = report["client_ehlo_before_auth_all_up"]
        self.assertTrue(any("PIPELINING" in line for line in common), common)
        self.assertFalse(any("8BITMIME" in line for line in common), common)

    # -- JSON

    def test_json_report_has_the_same_facts(self):
        sink = backends.SmtpSink(self, options=["-e"])
        rec = backends.RecordingBackend(self, caps=backends.FULL_CAPS)
        down = down_address()
        rc, report = self.check_json([rec.address, sink.address, down])
        self.assertEqual(rc, 2, self.last)
        self.assertEqual(report["hostname"], harness.HOSTNAME)
        first, second, third = report["backends"]
        self.assertEqual([b["address"] for b in report["backends"]],
                         [rec.address, sink.address, down])
        self.assertEqual(first["status"], "ok", self.last)
        self.assertTrue(first["esmtp"])
        self.assertEqual(first["greeting"]["code"], 220)
        self.assertEqual(first["ehlo"]["reply"][0], "250-backend.example")
        fates = {c["capability"]: c for c in first["capabilities"]}
        self.assertEqual(fates["STARTTLS"]["fate"], "dropped")
        self.assertEqual(fates["STARTTLS"]["reason"],
                         "the proxy terminates TLS itself")
        self.assertEqual(fates["CHUNKING"]["reason"], "BDAT is not relayed")
        self.assertEqual(fates["X-UNKNOWN"]["reason"],
                         "not on the pass-through list")
        self.assertEqual(fates["SIZE 1000000"]["fate"], "passed")
        self.assertEqual(fates["8BITMIME"]["shown_as"], "8BITMIME")
        self.assertEqual(first["client_ehlo_before_auth"][-1],
                         "250 AUTH PLAIN LOGIN")
        self.assertNotIn("250-STARTTLS", first["client_ehlo_before_auth"])
        xclient = first["xclient"]
        self.assertTrue(xclient["offered"])
        self.assertEqual(xclient["attributes"],
                         ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN"])
        self.assertTrue(xclient["used_by_proxy"])
        self.assertEqual(xclient["outcome"], "accepted")
        self.assertIn("LOGIN=submitproxy-check", xclient["sent"]["command"])
        self.assertEqual(first["mail_without_auth"]["code"], 250)
        self.assertEqual(first["rset"]["code"], 250)
        self.assertEqual(first["bare_lf"]["sent"], "NOOP\nNOOP\r\n")
        self.assertEqual(first["bare_lf"]["replies"], 2)
        self.assertTrue(first["bare_lf"]["line_end"])
        self.assertTrue([f for f in first["findings"]
                         if f["severity"] == "note" and "bare LF" in f["text"]])
        self.assertEqual(first["quit"]["code"], 221)
        self.assertFalse(second["esmtp"])
        self.assertEqual(second["helo"]["code"], 250)
        self.assertIn("8BITMIME", second["not_offered"])
        self.assertEqual(second["bare_lf"]["replies"], 1)
        self.assertEqual(third["status"], "unreachable")
        self.assertFalse(third["reachable"])
        self.assertEqual(third["stopped_at"], "connect")
        self.assertIn("Connection refused", third["error"])

    def test_peer_text_escaped_for_the_terminal_and_in_json(self):
        # A control byte makes the greeting malformed (the proxy refuses
        # it too); it is shown escaped, and kept exactly in the JSON.
        greeting = "220 evil\x1b[2J \u00fcml\u00e4ut \"q\" \\ ESMTP"
        rec = backends.RecordingBackend(self, replies={"GREETING": greeting})
        rc, out, _ = self.check([rec.address])
        self.assertEqual(rc, 2, self.last)
        self.assertNotIn("\x1b", out)
        self.assertIn(r'< 220 evil\x1b[2J \xc3\xbcml\xc3\xa4ut "q" \\ ESMTP',
                      out, self.last)
        self.assertIn("error: greeting: a malformed reply line", out)
        rc, report = self.check_json([rec.address])
        self.assertEqual(rc, 2)
        self.assertEqual(report["backends"][0]["greeting"]["reply"],
                         [greeting])
        self.assertEqual(report["backends"][0]["stopped_at"], "greeting")

    # -- the command line

    def test_configuration_error_exit_2_with_file_and_line(self):
        path = check_config(self.dir, ["127.0.0.1:25"])
        with open(path, "a") as f:
            f.write("frobnicate = yes\n")
        with open(path) as f:
            line = len(f.read().splitlines())
        result = run_binary("--check-backend", "-c", path)
        self.assertEqual(result.returncode, 2, result)
        self.assertIn(("%s:%d:" % (path, line)).encode(), result.stderr)
        self.assertEqual(result.stdout, b"")

    def test_json_alone_or_with_t_is_a_usage_error(self):
        path = check_config(self.dir, ["127.0.0.1:25"])
        for args in (["--json", "-c", path],
                     ["-t", "--check-backend", "-c", path]):
            with self.subTest(args=args):
                result = run_binary(*args)
                self.assertEqual(result.returncode, 2, result)
                self.assertIn(b"usage", result.stderr)

    def test_help_names_check_backend(self):
        result = run_binary("-h")
        self.assertEqual(result.returncode, 0)
        self.assertIn(b"--check-backend", result.stdout)


# Runs inside a private network namespace (unshare --net): loopback and a
# veth pair with 198.51.100.7 (TEST-NET-2), an smtp-sink listening on
# every address, and the check against its loopback address.
EXPOSURE_SCRIPT = textwrap.dedent("""\
    import socket, subprocess, sys, time
    binary, config, sink, port = sys.argv[1:5]
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", "cb0", "type", "veth", "peer", "name",
                 "cb1"],
                ["ip", "addr", "add", "198.51.100.7/32", "dev", "cb0"],
                ["ip", "link", "set", "cb0", "up"],
                ["ip", "link", "set", "cb1", "up"]):
        if subprocess.run(cmd).returncode != 0:
            sys.exit(77)
    proc = subprocess.Popen([sink, "-u", "nobody", "0.0.0.0:" + port, "10"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(78)
                time.sleep(0.05)
        result = subprocess.run([binary, "--check-backend", "-c", config],
                                timeout=50)
        sys.exit(result.returncode)
    finally:
        proc.terminate()
        proc.wait(10)
""")


class Exposure(unittest.TestCase):

    def test_backend_port_answering_at_another_address_is_a_warning(self):
        if not backends.is_root():
            raise unittest.SkipTest("a private network namespace needs root")
        unshare = backends.find_command("unshare")
        if not unshare or not backends.find_command("ip"):
            raise unittest.SkipTest("unshare or ip is not installed")
        probe = subprocess.run([unshare, "--net", "true"],
                               capture_output=True, timeout=WAIT)
        if probe.returncode != 0:
            raise unittest.SkipTest("unshare --net: %r" % probe.stderr[-200:])
        sink = backends.require_sbin_command("smtp-sink", "postfix")
        directory = tempfile.mkdtemp(prefix="submitproxy-check-")
        self.addCleanup(shutil.rmtree, directory, True)
        port = 2525
        config = check_config(directory, ["127.0.0.1:%d" % port])
        result = subprocess.run(
            [unshare, "--net", sys.executable, "-c", EXPOSURE_SCRIPT,
             harness.binary(), config, sink, str(port)],
            stdin=subprocess.DEVNULL, capture_output=True,
            timeout=RUN_TIMEOUT)
        out = result.stdout.decode("utf-8", "replace")
        if result.returncode in (77, 78):
            raise unittest.SkipTest("no private network namespace here (%d): "
                                    "%s" % (result.returncode,
                                            result.stderr[-300:]))
        described = "exit %d\n%s\n%s" % (result.returncode, out,
                                         result.stderr.decode())
        self.assertEqual(result.returncode, 1, described)
        self.assertIn("198.51.100.7:2525: ANSWERS: 220 smtp-sink ESMTP", out,
                      described)
        self.assertIn("warning: the backend's port answers at "
                      "198.51.100.7:2525 (220 smtp-sink ESMTP): whoever "
                      "reaches that address bypasses the proxy", out,
                      described)


if __name__ == "__main__":
    unittest.main()
