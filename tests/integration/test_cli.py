"""The command line: -V, -h, and -t checking a configuration file.

DESIGN.md "Configuration": `submitproxy -t -c FILE` checks it, prints each
error with file:line, and exits non-zero; unknown keys are errors.
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def setUpModule():
    harness.require_binary()


def run(*args):
    """Runs the binary with args; returns the CompletedProcess (text)."""
    return subprocess.run([harness.binary()] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=harness.WAIT)


VALID_CONFIG = """\
[server]
hostname = test.example
log_level = debug

[listener plain]
address = 127.0.0.1:2525
mode = plain
require_tls = no
allow_plaintext_auth = no

[limits]
max_line_length = 512
idle_timeout = 1s
greeting_delay = 500ms

[backend]
address = 127.0.0.1:25
"""


def line_of(text, needle):
    """1-based number of the first line of text containing needle."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise ValueError("%r not in the config" % needle)


class CommandLine(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="submitproxy-cli-")
        self.addCleanup(self.dir.cleanup)

    def config_file(self, text):
        path = os.path.join(self.dir.name, "submitproxy.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def describe(self, result):
        return "exit %d\nstdout: %r\nstderr: %r" % (
            result.returncode, result.stdout, result.stderr)

    def test_version_flag_prints_version_and_exits_0(self):
        result = run("-V")
        self.assertEqual(result.returncode, 0, self.describe(result))
        self.assertRegex(result.stdout, r"\d+\.\d+", self.describe(result))

    def test_help_flag_prints_usage_and_exits_0(self):
        result = run("-h")
        self.assertEqual(result.returncode, 0, self.describe(result))
        self.assertRegex(result.stdout, r"(?i)usage", self.describe(result))
        self.assertIn("-c", result.stdout, self.describe(result))

    def example_config(self):
        path = os.path.join(harness.source_root(), "config",
                            "submitproxy.conf")
        self.assertTrue(os.path.isfile(path),
                        "example config missing: %s" % path)
        with open(path) as f:
            return f.read()

    def test_check_accepts_the_example_config(self):
        # -t loads the certificates the example names; point those two
        # keys at a real pair and leave every other line as shipped.
        text = self.example_config()
        cert, key = harness.make_certificate(self.dir.name)
        edited = re.sub(r"(?m)^certificate = /etc/submitproxy/cert\.pem$",
                        "certificate = " + cert, text)
        edited = re.sub(r"(?m)^key = /etc/submitproxy/key\.pem$",
                        "key = " + key, edited)
        self.assertEqual(len(edited.splitlines()), len(text.splitlines()))
        self.assertNotIn("/etc/submitproxy/cert.pem", edited)
        result = run("-t", "-c", self.config_file(edited))
        self.assertEqual(result.returncode, 0, self.describe(result))

    def test_check_rejects_a_missing_certificate_naming_it(self):
        text = self.example_config()
        missing = os.path.join(self.dir.name, "missing-cert.pem")
        _, key = harness.make_certificate(self.dir.name)
        text = re.sub(r"(?m)^certificate = .*$", "certificate = " + missing,
                      text, count=1)
        text = re.sub(r"(?m)^key = .*$", "key = " + key, text, count=1)
        result = run("-t", "-c", self.config_file(text))
        self.assertNotEqual(result.returncode, 0, self.describe(result))
        self.assertIn(missing, result.stderr, self.describe(result))

    def test_check_accepts_a_valid_config(self):
        result = run("-t", "-c", self.config_file(VALID_CONFIG))
        self.assertEqual(result.returncode, 0, self.describe(result))

    def test_check_rejects_unknown_key_with_file_and_line(self):
        text = VALID_CONFIG.replace(
            "mode = plain\n", "mode = plain\nfrobnicate = yes\n")
        path = self.config_file(text)
        result = run("-t", "-c", path)
        self.assertNotEqual(result.returncode, 0, self.describe(result))
        self.assertIn("%s:%d:" % (path, line_of(text, "frobnicate")),
                      result.stderr, self.describe(result))

    def test_check_rejects_bad_value_with_file_and_line(self):
        bad_values = [
            ("mode = plain", "mode = carrier-pigeon"),
            ("idle_timeout = 1s", "idle_timeout = soon"),
            ("greeting_delay = 500ms", "greeting_delay = 500 fortnights"),
            ("max_line_length = 512", "max_line_length = 100"),
            ("require_tls = no", "require_tls = perhaps"),
            ("address = 127.0.0.1:2525", "address = 127.0.0.1:99999"),
        ]
        for good, bad in bad_values:
            with self.subTest(bad=bad):
                text = VALID_CONFIG.replace(good, bad)
                self.assertNotEqual(text, VALID_CONFIG)
                path = self.config_file(text)
                result = run("-t", "-c", path)
                self.assertNotEqual(result.returncode, 0,
                                    self.describe(result))
                self.assertIn("%s:%d:" % (path, line_of(text, bad)),
                              result.stderr, self.describe(result))

    def test_check_reports_every_error_not_just_the_first(self):
        text = VALID_CONFIG.replace(
            "mode = plain\n", "mode = plain\nfrobnicate = yes\n").replace(
            "idle_timeout = 1s", "idle_timeout = soon")
        path = self.config_file(text)
        result = run("-t", "-c", path)
        self.assertNotEqual(result.returncode, 0, self.describe(result))
        for needle in ("frobnicate", "idle_timeout"):
            self.assertIn("%s:%d:" % (path, line_of(text, needle)),
                          result.stderr, self.describe(result))

    def user_limits_config(self, limits_text):
        """VALID_CONFIG naming a user_limits file of limits_text."""
        path = os.path.join(self.dir.name, "user_limits")
        with open(path, "w") as f:
            f.write(limits_text)
        return path, VALID_CONFIG.replace(
            "greeting_delay = 500ms\n",
            "greeting_delay = 500ms\nuser_limits = %s\n" % path)

    def test_check_accepts_a_good_user_limits_file(self):
        _, text = self.user_limits_config(
            "# robots send more\n"
            "newsletter messages_per_hour=2000 recipients_per_day=100000\n"
            "Alice recipients_per_day=0\n"
            "* messages_per_hour=100\n")
        result = run("-t", "-c", self.config_file(text))
        self.assertEqual(result.returncode, 0, self.describe(result))
        self.assertIn("configuration OK", result.stdout,
                      self.describe(result))

    def test_check_rejects_a_bad_user_limits_file_with_file_and_line(self):
        path, text = self.user_limits_config(
            "alice messages_per_hour=5\n"
            "bob\n"
            "# a comment\n"
            "ALICE recipients_per_day=1\n"
            "carol colour=blue\n"
            "dave recipients_per_day=4294967296\n")
        result = run("-t", "-c", self.config_file(text))
        self.assertNotEqual(result.returncode, 0, self.describe(result))
        self.assertEqual(result.stderr.splitlines(), [
            '%s:2: no key=value after login "bob"' % path,
            '%s:4: login "alice" given twice (first on line 1)' % path,
            '%s:5: unknown key "colour" (messages_per_hour, '
            'recipients_per_hour, recipients_per_day)' % path,
            '%s:6: bad number "4294967296" for recipients_per_day '
            '(0 to 4294967295)' % path,
        ], self.describe(result))
        self.assertNotIn("configuration OK", result.stdout,
                         self.describe(result))

    def test_check_rejects_a_missing_user_limits_file_naming_it(self):
        path, text = self.user_limits_config("")
        os.unlink(path)
        result = run("-t", "-c", self.config_file(text))
        self.assertNotEqual(result.returncode, 0, self.describe(result))
        self.assertIn(path, result.stderr, self.describe(result))

    def test_missing_config_file_exits_non_zero_naming_the_file(self):
        path = os.path.join(self.dir.name, "does-not-exist.conf")
        for args in (["-t", "-c", path], ["-c", path]):
            with self.subTest(args=args):
                result = run(*args)
                self.assertNotEqual(result.returncode, 0,
                                    self.describe(result))
                self.assertIn(path, result.stderr, self.describe(result))


if __name__ == "__main__":
    unittest.main()
