"""The gate's policies (issue 12) with the in-process store ([policy]
store = memory, the default), as clients and an operator see them:

- address prefixes ([limits] ipv4_prefix = 32, ipv6_prefix = 64): the
  per-address counters (address_failure_limit, max_connections_per_address)
  key on the prefix: 64 addresses in one IPv6 /64 hit address_failure_limit
  together, the next /64 is unaffected, ipv6_prefix = 128 restores the
  per-address behaviour, an IPv4-mapped IPv6 address counts as IPv4; the
  refusal (454 4.7.0) comes once the credentials are complete and before
  PAM is asked; log lines name the full address and the prefix;
- failures per login across addresses ([auth] user_failure_limit,
  user_failure_window, known_address_window): credential stuffing from 200
  addresses, one guess each, is answered 454 without asking PAM once the
  login has user_failure_limit failures, except from a prefix where the
  login succeeded before; another login is unaffected; case does not
  split the count;
- send limits per login ([limits] user_messages_per_hour,
  user_recipients_per_hour, user_recipients_per_day, user_limits FILE):
  what the backend accepted counts, the command over the limit gets
  451 4.7.1 and is not relayed, the session goes on, the first refusal in
  a window is logged once at warn level; the file raises one user's
  limit and a SIGHUP reload of it applies to the next MAIL;
- EHLO advertises LIMITS RCPTMAX= (RFC 9422) before and after AUTH.

Many source addresses come from the PROXY protocol listener: the header
names any IPv4 or IPv6 source.  PAM calls are counted by a pam_exec module
in front of pam_matrix (policyutil.CountingPam).  Loopback only; every
loop and wait is bounded; no test asserts how fast something happened.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import policyutil  # noqa: E402
import tlsutil  # noqa: E402
from harness import WAIT, ProxyTestCase  # noqa: E402
from pamutil import b64, random_password  # noqa: E402
from policyutil import in_64, nth_64, pp_client, pp_connect, \
    prefix_of  # noqa: E402

ADDRESS_THROTTLED = ("Too many authentication failures from your address, "
                     "try again later")
USER_THROTTLED = "Too many failed logins for this account, try again later"
SENDER = "alice@example.com"


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()


class PolicyTestCase(ProxyTestCase):
    """A proxy with alice and bob in PAM (calls counted), a filtering
    recording backend, and helpers to log in and send through the PROXY
    listener from any address."""

    def setUp(self):
        self.passwords = {"alice": random_password("alice"),
                          "bob": random_password("bob")}
        self.wrong = random_password("wrong")

    def proxy(self, auth=None, limits=None, policy=None, extra=None,
              backend=None, **backend_kw):
        self.pam = policyutil.CountingPam(self, self.passwords)
        self.backend = backend or policyutil.FilteringBackend(
            self, **backend_kw)
        return policyutil.PolicyProxy(self, self.pam, self.backend,
                                      auth=auth, limits=limits,
                                      policy=policy, extra=extra)

    # -- AUTH

    def auth_plain(self, client, user, password):
        return client.command("AUTH PLAIN " + b64("\0%s\0%s"
                                                  % (user, password)))

    def attempt(self, proxy, ip, user="alice", password=None):
        """A new session from ip, AUTH PLAIN as user; returns the reply
        (the client is closed)."""
        if password is None:
            password = self.passwords[user]
        client = pp_client(self, proxy, ip)
        reply = self.auth_plain(client, user, password)
        client.close()
        return reply

    def login(self, proxy, ip, user="alice"):
        """A session from ip logged in as user (235)."""
        client = pp_client(self, proxy, ip)
        self.assertReply(self.auth_plain(client, user, self.passwords[user]),
                         235, "2.7.0")
        client.user = user
        return client

    def fail_auth(self, proxy, ip, user="alice"):
        """One failed AUTH (535) from ip as user."""
        self.assertReply(self.attempt(proxy, ip, user, self.wrong),
                         535, "5.7.8")

    def assertAddressThrottled(self, reply):
        self.assertReply(reply, 454, "4.7.0", ADDRESS_THROTTLED)

    def assertUserThrottled(self, reply):
        self.assertReply(reply, 454, "4.7.0", USER_THROTTLED)

    # -- sending

    def rcpt(self, client, address):
        return client.command("RCPT TO:<%s>" % address)

    def mail(self, client, sender=SENDER):
        return client.command("MAIL FROM:<%s>" % sender)

    def data(self, client, body="Subject: policy test\r\n\r\nhello\r\n"):
        self.assertReply(client.command("DATA"), 354)
        return client.command(body + ".")

    def send_message(self, client, rcpts, body=None):
        """MAIL, the RCPTs (each 250), DATA; returns the final reply."""
        self.assertReply(self.mail(client), 250)
        for address in rcpts:
            self.assertReply(self.rcpt(client, address), 250)
        return self.data(client, *(() if body is None else (body,)))

    def relayed_rcpts(self):
        return [line.decode() for line in self.backend.rcpt_lines()]


# ============================================================== prefixes

class Prefixes(PolicyTestCase):

    def prefix_proxy(self, limit, limits=None, **auth):
        keys = {"address_failure_limit": limit,
                # Every failure here is alice's: the per-login limit must
                # not be what refuses.
                "user_failure_limit": 100000}
        keys.update(auth)
        return self.proxy(auth=keys, limits=limits)

    def reject_fields(self, proxy, reason):
        return proxy.fields(r"\bevent=reject\b", r"\breason=%s\b" % reason)

    def test_64_addresses_of_one_ipv6_64_hit_address_failure_limit_together(
            self):
        proxy = self.prefix_proxy(64)
        base = "2001:db8:1:2::"
        addresses = [in_64(base, n) for n in range(1, 65)]
        self.assertEqual(len(set(addresses)), 64)
        self.assertEqual({prefix_of(a) for a in addresses},
                         {"2001:db8:1:2::/64"})
        for n, ip in enumerate(addresses, 1):
            reply = self.attempt(proxy, ip, password=self.wrong)
            self.assertEqual(reply[0], 535, "failure %d of 64 in the /64 "
                             "(from %s): %r" % (n, ip, reply))
        calls = self.pam.count()
        self.assertEqual(calls, 64)
        # A 65th address of that /64, with the right password.
        ip = in_64(base, 1000)
        self.assertAddressThrottled(self.attempt(proxy, ip))
        self.assertEqual(self.pam.count(), calls,
                         "PAM was asked for a throttled prefix")
        line = proxy.wait_log(r"\bevent=reject\b",
                              r"\breason=address_auth_limit\b")
        fields = harness.parse_log_fields(line)
        self.assertEqual((fields.get("ip"), fields.get("prefix")),
                         (ip, "2001:db8:1:2::/64"), line)
        self.assertRegex(line, r"\bevent=reject ip=\S+ prefix=\S+ "
                               r"reason=address_auth_limit\b")
        # The next /64 is another prefix.
        self.login(proxy, "2001:db8:1:3::1")

    def test_ipv6_prefix_128_counts_each_address_alone(self):
        proxy = self.prefix_proxy(2, limits={"ipv6_prefix": 128})
        ip = "2001:db8:7:7::1"
        self.fail_auth(proxy, ip)
        self.fail_auth(proxy, ip)
        self.assertAddressThrottled(self.attempt(proxy, ip))
        fields = proxy.fields(r"\bevent=reject\b",
                              r"\breason=address_auth_limit\b")
        self.assertEqual([(f.get("ip"), f.get("prefix")) for f in fields],
                         [(ip, "2001:db8:7:7::1/128")])
        # Its neighbour in the same /64 is on its own.
        self.login(proxy, "2001:db8:7:7::2")

    def test_ipv6_default_prefix_64_throttles_the_neighbour(self):
        proxy = self.prefix_proxy(2)
        self.fail_auth(proxy, "2001:db8:7:7::1")
        self.fail_auth(proxy, "2001:db8:7:7::1")
        self.assertAddressThrottled(self.attempt(proxy, "2001:db8:7:7::2"))

    def test_ipv4_prefix_24_throttles_the_whole_24(self):
        proxy = self.prefix_proxy(2, limits={"ipv4_prefix": 24})
        self.fail_auth(proxy, "192.0.2.1")
        self.fail_auth(proxy, "192.0.2.2")
        self.assertAddressThrottled(self.attempt(proxy, "192.0.2.200"))
        fields = self.reject_fields(proxy, "address_auth_limit")
        self.assertEqual([(f.get("ip"), f.get("prefix")) for f in fields],
                         [("192.0.2.200", "192.0.2.0/24")])
        self.login(proxy, "192.0.3.1")

    def test_ipv4_default_prefix_32_keeps_addresses_apart(self):
        proxy = self.prefix_proxy(2)
        self.fail_auth(proxy, "198.51.100.1")
        self.fail_auth(proxy, "198.51.100.1")
        self.assertAddressThrottled(self.attempt(proxy, "198.51.100.1"))
        fields = self.reject_fields(proxy, "address_auth_limit")
        self.assertEqual([(f.get("ip"), f.get("prefix")) for f in fields],
                         [("198.51.100.1", "198.51.100.1/32")])
        self.login(proxy, "198.51.100.2")

    def test_ipv4_mapped_ipv6_address_counts_as_ipv4(self):
        proxy = self.prefix_proxy(2)
        # Two failures from ::ffff:192.0.2.9 (IPv6 on the wire, v1 and v2
        # headers): the IPv4 address 192.0.2.9 is throttled ...
        client = pp_connect(self, proxy, "::ffff:192.0.2.9", version=1)
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + policyutil.CLIENT), 250)
        self.assertReply(self.auth_plain(client, "alice", self.wrong), 535)
        client.close()
        client = pp_connect(self, proxy, "::ffff:192.0.2.9", version=2)
        self.assertReply(client.read_reply(), 220)
        self.assertReply(client.command("EHLO " + policyutil.CLIENT), 250)
        self.assertReply(self.auth_plain(client, "alice", self.wrong), 535)
        client.close()
        self.assertAddressThrottled(self.attempt(proxy, "192.0.2.9"))
        fields = self.reject_fields(proxy, "address_auth_limit")
        self.assertEqual([f.get("prefix") for f in fields],
                         ["192.0.2.9/32"], fields)
        # ... and another mapped address is not in an IPv6 ::ffff:0:0/64
        # with it: with ipv4_prefix = 32 it is its own.
        self.login(proxy, "::ffff:192.0.2.10")

    def test_address_check_waits_for_the_complete_credentials(self):
        proxy = self.prefix_proxy(2)
        ip = "2001:db8:9:9::1"
        self.fail_auth(proxy, ip)
        self.fail_auth(proxy, ip)
        calls = self.pam.count()
        # AUTH LOGIN: both prompts come, the 454 answers the password.
        client = pp_client(self, proxy, ip)
        self.assertEqual(client.command("AUTH LOGIN")[0], 334)
        self.assertEqual(client.command(b64("alice"))[0], 334)
        self.assertAddressThrottled(
            client.command(b64(self.passwords["alice"])))
        # AUTH PLAIN without an initial response: the 334, then 454.
        self.assertEqual(client.command("AUTH PLAIN"), (334, [""]))
        self.assertAddressThrottled(client.command(
            b64("\0alice\0%s" % self.passwords["alice"])))
        self.assertEqual(self.pam.count(), calls,
                         "PAM was asked for a throttled prefix")
        self.assertReply(client.command("NOOP"), 250)
        self.assertEqual(len(self.reject_fields(proxy,
                                                "address_auth_limit")), 2)

    def test_max_connections_per_address_counts_the_prefix(self):
        proxy = self.prefix_proxy(100, limits={
            "max_connections_per_address": 2})
        held = [pp_client(self, proxy, "2001:db8:5:6::%d" % n, ehlo=False)
                for n in (1, 2)]
        refused = pp_connect(self, proxy, "2001:db8:5:6::3")
        self.assertReply(refused.read_reply(), 421, "4.7.0")
        refused.expect_closed()
        line = proxy.wait_log(r"\bevent=reject\b",
                              r"\breason=max_connections_per_address\b")
        fields = harness.parse_log_fields(line)
        self.assertEqual((fields.get("ip"), fields.get("prefix")),
                         ("2001:db8:5:6::3", "2001:db8:5:6::/64"), line)
        # The next /64, and an IPv4 address, are other prefixes.
        pp_client(self, proxy, "2001:db8:5:7::1", ehlo=False)
        pp_client(self, proxy, "192.0.2.33", ehlo=False)
        for client in held:
            self.assertReply(client.command("NOOP"), 250)

    def test_max_connections_per_address_with_ipv6_prefix_128(self):
        proxy = self.prefix_proxy(100, limits={
            "max_connections_per_address": 1, "ipv6_prefix": 128})
        pp_client(self, proxy, "2001:db8:5:6::1", ehlo=False)
        pp_client(self, proxy, "2001:db8:5:6::2", ehlo=False)
        refused = pp_connect(self, proxy, "2001:db8:5:6::1")
        self.assertReply(refused.read_reply(), 421, "4.7.0")
        line = proxy.wait_log(r"\breason=max_connections_per_address\b")
        self.assertEqual(harness.parse_log_fields(line).get("prefix"),
                         "2001:db8:5:6::1/128", line)


# ======================================================= login failures

class LoginFailures(PolicyTestCase):

    def user_proxy(self, limit, **auth):
        keys = {"user_failure_limit": limit,
                # Each address guesses once or twice: never the address
                # limit that refuses.
                "address_failure_limit": 100000}
        keys.update(auth)
        return self.proxy(auth=keys)

    def refused_fields(self, proxy):
        return proxy.fields(r"\bevent=auth_refused\b",
                            r"\breason=user_throttled\b")

    def test_credential_stuffing_from_200_addresses(self):
        proxy = self.user_proxy(20)
        known = "2001:db8:a11c:e::10"
        # alice logged in once from her usual /64.
        self.login(proxy, known).close()
        self.assertEqual(self.pam.count("alice"), 1)
        # 200 addresses, each in its own /64 or its own IPv4 address,
        # one wrong guess each.
        attackers = [nth_64(n) for n in range(150)] + \
            ["203.0.113.%d" % n for n in range(1, 51)]
        self.assertEqual(len({prefix_of(a) for a in attackers}), 200)
        replies = []
        for ip in attackers:
            replies.append((ip, self.attempt(proxy, ip,
                                             password=self.wrong)))
        for n, (ip, reply) in enumerate(replies[:20], 1):
            self.assertEqual(reply[0], 535, "guess %d from %s, under the "
                             "limit: %r" % (n, ip, reply))
        for n, (ip, reply) in enumerate(replies[20:], 21):
            self.assertReply(reply, 454, "4.7.0", USER_THROTTLED)
        # PAM was asked for the first 20 guesses only.
        self.assertEqual(self.pam.count("alice"), 1 + 20, self.pam.calls())
        # One auth_refused line per refusal, shaped for fail2ban.
        refused = self.refused_fields(proxy)
        self.assertEqual(len(refused), 180)
        for fields, (ip, _) in zip(refused, replies[20:]):
            self.assertEqual((fields.get("ip"), fields.get("prefix"),
                              fields.get("user"), fields.get("mech")),
                             (ip, prefix_of(ip), "alice", "PLAIN"), fields)
            self.assertGreaterEqual(int(fields.get("failures", "-1")), 20,
                                    fields)
        for line in proxy.log_lines(r"\bevent=auth_refused\b"):
            self.assertRegex(line, r'\bevent=auth_refused ip=\S+ prefix=\S+ '
                                   r'user="alice" mech=PLAIN '
                                   r'reason=user_throttled failures=\d+')
        # alice from her known /64 (another address in it) still logs in,
        # with PAM asked.
        self.login(proxy, in_64(known, 77))
        self.assertEqual(self.pam.count("alice"), 22)
        # bob, from one of the guessing addresses, is not affected.
        self.login(proxy, attackers[-1], user="bob")
        self.fail_auth(proxy, attackers[-2], user="bob")

    def test_known_prefix_still_gets_535_for_a_wrong_password_and_it_counts(
            self):
        proxy = self.user_proxy(2)
        known = "192.0.2.50"
        self.login(proxy, known).close()
        self.fail_auth(proxy, "198.51.100.1")
        self.fail_auth(proxy, "198.51.100.2")
        self.assertUserThrottled(self.attempt(proxy, "198.51.100.3"))
        before = self.pam.count("alice")
        # From the known address: PAM is asked, a wrong password is 535.
        self.fail_auth(proxy, known)
        self.assertEqual(self.pam.count("alice"), before + 1)
        self.login(proxy, known)
        # The failure from the known address counted: failures= grew.
        self.assertUserThrottled(self.attempt(proxy, "198.51.100.4"))
        counts = [int(f["failures"]) for f in self.refused_fields(proxy)]
        self.assertEqual(len(counts), 2, counts)
        self.assertGreater(counts[1], counts[0], counts)

    def test_throttled_login_gets_454_without_pam_for_auth_login_too(self):
        proxy = self.user_proxy(2)
        self.fail_auth(proxy, "2001:db8:b::1")
        self.fail_auth(proxy, "2001:db8:c::1")
        before = self.pam.count()
        client = pp_client(self, proxy, "2001:db8:d::1")
        self.assertEqual(client.command("AUTH LOGIN")[0], 334)
        self.assertEqual(client.command(b64("alice"))[0], 334)
        self.assertUserThrottled(client.command(
            b64(self.passwords["alice"])))
        self.assertEqual(self.pam.count(), before)
        fields = self.refused_fields(proxy)
        self.assertEqual([(f.get("ip"), f.get("prefix"), f.get("user"),
                           f.get("mech")) for f in fields],
                         [("2001:db8:d::1", "2001:db8:d::/64", "alice",
                           "LOGIN")])
        # The session goes on; bob may log in on it.
        self.assertReply(self.auth_plain(client, "bob",
                                         self.passwords["bob"]), 235)

    def test_login_names_count_without_regard_to_case(self):
        proxy = self.user_proxy(3)
        self.fail_auth(proxy, "2001:db8:e:1::1", user="ALICE")
        self.fail_auth(proxy, "2001:db8:e:2::1", user="Alice")
        self.fail_auth(proxy, "2001:db8:e:3::1", user="alice")
        self.assertUserThrottled(self.attempt(proxy, "2001:db8:e:4::1"))
        self.assertUserThrottled(self.attempt(proxy, "2001:db8:e:5::1",
                                              user="aLiCe",
                                              password=self.wrong))
        users = [f.get("user") for f in self.refused_fields(proxy)]
        self.assertEqual(len(users), 2, users)
        self.assertEqual(users[0], "alice")
        self.assertEqual(users[1].lower(), "alice")

    def test_another_login_is_not_affected(self):
        proxy = self.user_proxy(2)
        for n in range(3):
            self.attempt(proxy, nth_64(n), password=self.wrong)
        self.assertUserThrottled(self.attempt(proxy, nth_64(10)))
        self.login(proxy, nth_64(11), user="bob")
        self.fail_auth(proxy, nth_64(12), user="bob")

    def test_successful_logins_never_count(self):
        proxy = self.user_proxy(2)
        self.fail_auth(proxy, nth_64(1))
        for n in range(2, 8):
            self.login(proxy, nth_64(n)).close()
        # One failure only: a new prefix still gets PAM's answer.
        self.login(proxy, nth_64(20))
        self.fail_auth(proxy, nth_64(21))
        self.assertUserThrottled(self.attempt(proxy, nth_64(22)))

    def test_user_failure_window_lifts_the_refusal(self):
        proxy = self.user_proxy(2, user_failure_window="2s")
        self.fail_auth(proxy, nth_64(1))
        self.fail_auth(proxy, nth_64(2))
        self.assertUserThrottled(self.attempt(proxy, nth_64(3)))
        # The window is 2 s: after it, PAM answers again.
        time.sleep(3)
        self.assertReply(self.attempt(proxy, nth_64(4)), 235, "2.7.0")


# ========================================================== send limits

class SendLimits(PolicyTestCase):

    def limit_lines(self, proxy):
        return proxy.log_lines(r"\bevent=limit_reached\b")

    def reject_lines(self, proxy, limit):
        return proxy.log_lines(r"\bevent=reject\b", r"\breason=%s\b" % limit)

    def test_sixth_recipient_gets_451_and_is_not_relayed(self):
        proxy = self.proxy(limits={"user_recipients_per_hour": 5})
        client = self.login(proxy, "2001:db8:50::1")
        self.assertReply(self.mail(client), 250)
        for n in range(1, 6):
            self.assertReply(self.rcpt(client, "r%d@example.net" % n), 250)
        self.assertReply(self.rcpt(client, "r6@example.net"), 451, "4.7.1",
                         "Sending limit reached: 5 recipients per hour; "
                         "try again later")
        # The message goes to the five; the session continues.
        self.assertReply(self.data(client), 250)
        txs = self.backend.wait_complete(1)
        self.assertEqual(len(txs[0].rcpts), 5, txs[0].rcpts)
        self.assertNotIn("RCPT TO:<r6@example.net>", self.relayed_rcpts())
        self.assertReply(client.command("RSET"), 250)
        self.assertReply(self.mail(client), 250)
        self.assertReply(self.rcpt(client, "r7@example.net"), 451, "4.7.1")
        self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("RSET"), 250)
        self.assertReply(client.command("QUIT"), 221)
        self.assertEqual(len(self.relayed_rcpts()), 5, self.relayed_rcpts())

    def test_limit_reached_is_logged_once_for_several_refusals(self):
        proxy = self.proxy(limits={"user_recipients_per_hour": 5})
        client = self.login(proxy, "192.0.2.60")
        self.assertReply(self.send_message(
            client, ["r%d@example.net" % n for n in range(1, 6)]), 250)
        self.assertReply(self.mail(client), 250)
        for n in range(3):
            self.assertReply(self.rcpt(client, "x%d@example.net" % n), 451)
        client.close()
        # A new session of the same login: still over, still one line.
        other = self.login(proxy, "2001:db8:51::1")
        self.assertReply(self.mail(other), 250)
        self.assertReply(self.rcpt(other, "y@example.net"), 451, "4.7.1")
        self.assertReply(other.command("QUIT"), 221)
        proxy.wait_log_count(4, r"\bevent=reject\b",
                             r"\breason=user_recipients_per_hour\b")
        self.assertEqual(len(self.reject_lines(
            proxy, "user_recipients_per_hour")), 4)
        lines = self.limit_lines(proxy)
        self.assertEqual(len(lines), 1, "\n".join(lines))
        fields = harness.parse_log_fields(lines[0])
        self.assertEqual(fields.get("level"), "warn", lines[0])
        self.assertEqual({k: fields.get(k) for k in
                          ("user", "limit", "count", "max", "window")},
                         {"user": "alice",
                          "limit": "user_recipients_per_hour",
                          "count": "5", "max": "5", "window": "1h"},
                         lines[0])

    def test_recipients_the_backend_refused_do_not_count(self):
        proxy = self.proxy(limits={"user_recipients_per_hour": 3},
                           reject_rcpt=r"<refuse")
        client = self.login(proxy, "2001:db8:52::1")
        self.assertReply(self.mail(client), 250)
        sequence = ["ok1", "refuse1", "ok2", "refuse2", "refuse3", "ok3"]
        for name in sequence:
            expected = 550 if name.startswith("refuse") else 250
            reply = self.rcpt(client, name + "@example.net")
            self.assertEqual(reply[0], expected, (name, reply))
        self.assertReply(self.rcpt(client, "ok4@example.net"), 451, "4.7.1",
                         "Sending limit reached: 3 recipients per hour")
        self.assertEqual([l.split("<")[1].split("@")[0]
                          for l in self.relayed_rcpts()], sequence)

    def test_messages_per_hour_refuses_the_mail_command(self):
        proxy = self.proxy(limits={"user_messages_per_hour": 2})
        client = self.login(proxy, "2001:db8:53::1")
        for n in range(2):
            self.assertReply(self.send_message(client, ["m%d@example.net"
                                                        % n]), 250)
        self.backend.wait_complete(2)
        mails = len(self.backend.mail_lines())
        self.assertReply(self.mail(client), 451, "4.7.1",
                         "Sending limit reached: 2 messages per hour; "
                         "try again later")
        self.assertEqual(len(self.backend.mail_lines()), mails,
                         "the refused MAIL was relayed")
        self.assertReply(client.command("RSET"), 250)
        self.assertReply(self.mail(client), 451, "4.7.1")
        self.assertReply(client.command("NOOP"), 250)
        self.assertReply(client.command("QUIT"), 221)
        lines = self.limit_lines(proxy)
        self.assertEqual(len(lines), 1, "\n".join(lines))
        fields = harness.parse_log_fields(lines[0])
        self.assertEqual({k: fields.get(k) for k in
                          ("level", "user", "limit", "count", "max",
                           "window")},
                         {"level": "warn", "user": "alice",
                          "limit": "user_messages_per_hour", "count": "2",
                          "max": "2", "window": "1h"}, lines[0])
        self.assertEqual(len(self.reject_lines(proxy,
                                               "user_messages_per_hour")), 2)

    def test_a_message_the_backend_refused_does_not_count(self):
        proxy = self.proxy(limits={"user_messages_per_hour": 2},
                           reject_data=r"X-Refuse-Me")
        client = self.login(proxy, "2001:db8:54::1")
        for _ in range(2):
            reply = self.send_message(
                client, ["a@example.net"],
                "Subject: no\r\nX-Refuse-Me: yes\r\n\r\nhello\r\n")
            self.assertReply(reply, 554)
        for _ in range(2):
            self.assertReply(self.send_message(client, ["a@example.net"]),
                             250)
        self.assertReply(self.mail(client), 451, "4.7.1",
                         "2 messages per hour")

    def test_recipients_per_day(self):
        proxy = self.proxy(limits={"user_recipients_per_hour": 0,
                                   "user_recipients_per_day": 3})
        client = self.login(proxy, "192.0.2.70")
        self.assertReply(self.send_message(
            client, ["d%d@example.net" % n for n in range(3)]), 250)
        self.assertReply(self.mail(client), 250)
        self.assertReply(self.rcpt(client, "d4@example.net"), 451, "4.7.1",
                         "Sending limit reached: 3 recipients per day; "
                         "try again later")
        self.assertEqual(len(self.reject_lines(proxy,
                                               "user_recipients_per_day")),
                         1)
        lines = self.limit_lines(proxy)
        self.assertEqual(len(lines), 1, "\n".join(lines))
        fields = harness.parse_log_fields(lines[0])
        self.assertEqual((fields.get("level"), fields.get("limit"),
                          fields.get("count"), fields.get("max")),
                         ("warn", "user_recipients_per_day", "3", "3"),
                         lines[0])
        self.assertIn(fields.get("window"), ("1d", "24h"), lines[0])

    def test_counts_add_up_across_sessions_and_addresses(self):
        proxy = self.proxy(limits={"user_recipients_per_hour": 5})
        first = self.login(proxy, "192.0.2.80")
        self.assertReply(self.send_message(
            first, ["a%d@example.net" % n for n in range(3)]), 250)
        second = self.login(proxy, "2001:db8:55::1")
        self.assertReply(self.send_message(
            second, ["b%d@example.net" % n for n in range(2)]), 250)
        self.assertReply(self.mail(first), 250)
        self.assertReply(self.rcpt(first, "c@example.net"), 451, "4.7.1")
        # bob has his own count.
        bob = self.login(proxy, "192.0.2.80", user="bob")
        self.assertReply(self.send_message(
            bob, ["b%d@example.net" % n for n in range(5)]), 250)

    def test_limits_off_by_zero(self):
        proxy = self.proxy(limits={"user_messages_per_hour": 0,
                                   "user_recipients_per_hour": 0,
                                   "user_recipients_per_day": 0})
        client = self.login(proxy, "192.0.2.81")
        for n in range(3):
            self.assertReply(self.send_message(
                client, ["z%d-%d@example.net" % (n, m) for m in range(10)]),
                250)
        self.assertEqual(self.limit_lines(proxy), [])

    def user_limits_proxy(self, text, limits):
        directory = tempfile.mkdtemp(prefix="submitproxy-ulim-")
        os.chmod(directory, 0o755)
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "user_limits")
        policyutil.write_file(path, text)
        keys = dict(limits)
        keys["user_limits"] = path
        return self.proxy(limits=keys), path

    def fill(self, proxy, user, ip, count):
        """count recipients of user, all 250, then the next one's reply."""
        client = self.login(proxy, ip, user=user)
        self.assertReply(self.mail(client), 250)
        for n in range(count):
            self.assertReply(self.rcpt(client, "%s-%d@example.net"
                                       % (user, n)), 250)
        return client, self.rcpt(client, "%s-over@example.net" % user)

    def test_user_limits_file_raises_one_users_limit(self):
        proxy, _ = self.user_limits_proxy(
            "# alice sends more\nAlice recipients_per_hour=8\n",
            {"user_recipients_per_hour": 5})
        _, reply = self.fill(proxy, "alice", "192.0.2.90", 8)
        self.assertReply(reply, 451, "4.7.1",
                         "Sending limit reached: 8 recipients per hour")
        _, reply = self.fill(proxy, "bob", "192.0.2.91", 5)
        self.assertReply(reply, 451, "4.7.1",
                         "Sending limit reached: 5 recipients per hour")

    def test_user_limits_star_line_is_the_default(self):
        proxy, _ = self.user_limits_proxy(
            "alice recipients_per_hour=4\n*     recipients_per_hour=2 "
            "messages_per_hour=50\n",
            {"user_recipients_per_hour": 100})
        _, reply = self.fill(proxy, "bob", "192.0.2.92", 2)
        self.assertReply(reply, 451, "4.7.1", "2 recipients per hour")
        _, reply = self.fill(proxy, "alice", "192.0.2.93", 4)
        self.assertReply(reply, 451, "4.7.1", "4 recipients per hour")

    def test_sighup_reload_of_user_limits_applies_to_the_next_mail(self):
        proxy, path = self.user_limits_proxy(
            "alice recipients_per_hour=3\n", {"user_recipients_per_hour": 5})
        client, reply = self.fill(proxy, "alice", "192.0.2.94", 3)
        self.assertReply(reply, 451, "4.7.1", "3 recipients per hour")
        self.assertReply(client.command("RSET"), 250)
        policyutil.write_file(path, "alice recipients_per_hour=6\n")
        proxy.reload()
        self.assertReply(self.mail(client), 250)
        for n in range(3):
            self.assertReply(self.rcpt(client, "more%d@example.net" % n),
                             250)
        self.assertReply(self.rcpt(client, "over@example.net"), 451,
                         "4.7.1", "6 recipients per hour")

    def test_broken_user_limits_file_on_reload_keeps_the_old_limits(self):
        proxy, path = self.user_limits_proxy(
            "alice recipients_per_hour=3\n", {"user_recipients_per_hour": 5})
        policyutil.write_file(path, "alice recipients_per_hour=lots\n")
        before = len(proxy.log_lines(r"\bevent=reload"))
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_log_count(before + 1, r"\bevent=reload")
        _, reply = self.fill(proxy, "alice", "192.0.2.95", 3)
        self.assertReply(reply, 451, "4.7.1", "3 recipients per hour")


# ============================================================== workers

class Workers(PolicyTestCase):
    """[server] workers = 2: one in-process store for both event loops.
    Sessions are held open together so that the least-loaded hand-off
    puts them on both loops."""

    def workers_proxy(self, auth=None, limits=None):
        self.pam = policyutil.CountingPam(self, self.passwords)
        self.backend = policyutil.FilteringBackend(self)
        return policyutil.PolicyProxy(self, self.pam, self.backend,
                                      auth=auth, limits=limits,
                                      server={"workers": 2})

    def spread(self, proxy, ips):
        clients = [pp_client(self, proxy, ip) for ip in ips]
        loops = {harness.parse_log_fields(line).get("worker")
                 for line in proxy.log_lines(r"\bevent=connect\b")}
        self.assertGreaterEqual(len(loops - {None}), 2,
                                "sessions all on one loop: %s" % loops)
        return clients

    def test_login_failures_on_both_loops_add_up(self):
        proxy = self.workers_proxy(auth={"user_failure_limit": 3,
                                         "address_failure_limit": 1000})
        clients = self.spread(proxy, [nth_64(n) for n in range(4)])
        for client in clients[:3]:
            self.assertReply(self.auth_plain(client, "alice", self.wrong),
                             535)
        self.assertUserThrottled(self.auth_plain(
            clients[3], "alice", self.passwords["alice"]))
        for client in clients[:3]:
            self.assertUserThrottled(self.auth_plain(
                client, "alice", self.passwords["alice"]))

    def test_address_prefix_failures_on_both_loops_add_up(self):
        proxy = self.workers_proxy(auth={"address_failure_limit": 3,
                                         "user_failure_limit": 1000})
        base = "2001:db8:e0:1::"
        clients = self.spread(proxy, [in_64(base, n) for n in range(1, 5)])
        for client in clients[:3]:
            self.assertReply(self.auth_plain(client, "alice", self.wrong),
                             535)
        for client in clients:
            self.assertAddressThrottled(self.auth_plain(
                client, "alice", self.passwords["alice"]))

    def test_recipients_on_both_loops_add_up(self):
        proxy = self.workers_proxy(limits={"user_recipients_per_hour": 4})
        clients = self.spread(proxy, ["192.0.2.%d" % n
                                      for n in range(120, 124)])
        for client in clients:
            self.assertReply(self.auth_plain(client, "alice",
                                             self.passwords["alice"]), 235)
        for client in clients[:2]:
            self.assertReply(self.send_message(
                client, ["w1@example.net", "w2@example.net"]), 250)
        for client in clients:
            self.assertReply(self.mail(client), 250)
            self.assertReply(self.rcpt(client, "w3@example.net"), 451,
                             "4.7.1", "4 recipients per hour")
        self.assertEqual(len(proxy.log_lines(r"\bevent=limit_reached\b")),
                         1)


# ============================================================== LIMITS

class LimitsKeyword(PolicyTestCase):

    def limits_keywords(self, reply):
        """The parameters of the EHLO reply's LIMITS line(s), e.g.
        [["RCPTMAX=7"]]."""
        return [line.split()[1:] for line in reply[1]
                if line.split()[:1] == ["LIMITS"]]

    def rcptmax(self, reply):
        """The RCPTMAX= values of the LIMITS lines."""
        return [p.split("=", 1)[1] for params in self.limits_keywords(reply)
                for p in params if p.upper().startswith("RCPTMAX=")]

    def test_ehlo_advertises_rcptmax_before_and_after_auth(self):
        proxy = self.proxy(limits={"max_recipients": 7})
        client = pp_client(self, proxy, "192.0.2.100")
        self.assertEqual(len(self.limits_keywords(client.ehlo)), 1,
                         client.ehlo)
        self.assertEqual(self.rcptmax(client.ehlo), ["7"], client.ehlo)
        self.assertReply(self.auth_plain(client, "alice",
                                         self.passwords["alice"]), 235)
        reply = client.command("EHLO " + policyutil.CLIENT)
        self.assertReply(reply, 250)
        self.assertEqual(self.rcptmax(reply), ["7"], reply)
        # The value is enforced.
        self.assertReply(self.mail(client), 250)
        for n in range(7):
            self.assertReply(self.rcpt(client, "l%d@example.net" % n), 250)
        reply = self.rcpt(client, "l7@example.net")
        self.assertEqual(reply[0] // 100, 4, reply)

    def test_default_rcptmax_is_max_recipients_default(self):
        proxy = self.proxy()
        client = pp_client(self, proxy, "192.0.2.101")
        self.assertEqual(self.rcptmax(client.ehlo), ["100"], client.ehlo)


# ================================================================ config

class PolicyConfig(ProxyTestCase):
    """-t checks a Redis URL's syntax only: no server needs to be there."""

    def check(self, store):
        proxy = harness.Proxy(self, {"policy": {"store": store}},
                              start=False)
        return subprocess.run([harness.binary(), "-t", "-c",
                               proxy.config_path], capture_output=True,
                              text=True, timeout=WAIT,
                              stdin=subprocess.DEVNULL)

    def test_t_accepts_a_redis_url_nobody_listens_on(self):
        for store in ("redis+unix:///nonexistent/redis.sock?db=2",
                      "redis://127.0.0.1:1/3", "memory"):
            result = self.check(store)
            self.assertEqual(result.returncode, 0,
                             "%s: %s%s" % (store, result.stdout,
                                           result.stderr))

    def test_t_refuses_a_broken_user_limits_file(self):
        proxy = harness.Proxy(self, {}, start=False)
        path = os.path.join(proxy.dir, "user_limits")
        policyutil.write_file(path, "# comment\nalice messages_per_hour=1 "
                                    "colour=blue\n")
        proxy.sections["limits"]["user_limits"] = path
        policyutil.write_file(proxy.config_path,
                              harness.render_config(proxy.sections))
        result = subprocess.run([harness.binary(), "-t", "-c",
                                 proxy.config_path], capture_output=True,
                                text=True, timeout=WAIT,
                                stdin=subprocess.DEVNULL)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("%s:2" % path, result.stdout + result.stderr)

    def test_t_refuses_a_malformed_store(self):
        for store in ("redis:/x", "mysql://localhost", "redis://host:99999"):
            result = self.check(store)
            self.assertNotEqual(result.returncode, 0,
                                "%s accepted: %s" % (store, result.stdout))


if __name__ == "__main__":
    unittest.main()
