"""State shared through Redis ([policy] store = redis+unix://..., issue 12),
with a real redis-server started by each test on a Unix socket in a
temporary directory (policyutil.RedisServer):

- two submitproxy instances on one Redis share every counter: address
  failures and login failures on one throttle the other, a prefix known
  on one is known on the other, recipients sent through one limit the
  other, and the first refusal of a window is logged once for both;
- every key is under [policy] key_prefix and has a TTL;
- Redis killed: with on_store_error = local both keep serving (logins,
  mail delivered) and log event=policy_store state=down once, at warn
  level; with tempfail AUTH is 454 4.7.0 (event=auth_tempfail
  reason=policy_store) and, in a session already logged in, MAIL is
  451 4.3.0 when send limits are on; Redis back on the same socket:
  state=up is logged and shared counting resumes;
- Redis stopped (SIGSTOP): every AUTH is still answered within a
  generous bound (the deadline is [policy] timeout = 250ms), with local
  a login succeeds.

Missing redis-server or redis-cli skips the module, except with CI=true,
where it is an error.  Loopback only; every loop and wait is bounded;
the only timing assertion is the SIGSTOP bound.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import policyutil  # noqa: E402
import tlsutil  # noqa: E402
from harness import WAIT  # noqa: E402
from policyutil import in_64, nth_64, pp_client  # noqa: E402
from test_policy import ADDRESS_THROTTLED, USER_THROTTLED, \
    PolicyTestCase  # noqa: E402

# Reconnects back off for at most 5 s: twice that, and some, for Redis
# to be used again after it is back.
RECONNECT_WAIT = 20.0
# An AUTH while Redis is stopped: answered within this (the deadline of
# each Redis call is [policy] timeout = 250ms).
STALL_BOUND = 10.0


def setUpModule():
    harness.require_binary()
    tlsutil.shared_pki()
    policyutil.redis_commands()


class RedisTestCase(PolicyTestCase):

    def setUp(self):
        super().setUp()
        self.redis = policyutil.RedisServer(self)
        self.key_prefix = policyutil.random_key_prefix()

    def instances(self, count=2, on_store_error="local", auth=None,
                  limits=None, policy=None, store=None, **backend_kw):
        """count proxies on one PAM (calls counted together), one backend
        and store (default: self.redis's socket)."""
        self.pam = policyutil.CountingPam(self, self.passwords)
        self.backend = policyutil.FilteringBackend(self, **backend_kw)
        keys = {"store": store or self.redis.url,
                "key_prefix": self.key_prefix,
                "timeout": "250ms", "on_store_error": on_store_error}
        keys.update(policy or {})
        return [policyutil.PolicyProxy(self, self.pam, self.backend,
                                       auth=auth, limits=limits,
                                       policy=keys)
                for _ in range(count)]

    def store_lines(self, proxy, state):
        return proxy.log_lines(r"\bevent=policy_store\b",
                               r"\bstate=%s\b" % state)

    def wait_store_up(self, proxy, ip, before=0):
        """Logs in from ip on proxy every half second until a new
        event=policy_store state=up line (more than before) appears
        (Redis is used again); bounded by RECONNECT_WAIT."""
        deadline = time.monotonic() + RECONNECT_WAIT
        while len(self.store_lines(proxy, "up")) <= before:
            if time.monotonic() > deadline:
                proxy._fail_with_log("no event=policy_store state=up "
                                     "within %.0f s of Redis coming back"
                                     % RECONNECT_WAIT)
            self.attempt(proxy, ip)
            time.sleep(0.5)


# ================================================================ shared

class Shared(RedisTestCase):

    def test_address_failures_on_one_instance_throttle_the_other(self):
        a, b = self.instances(auth={"address_failure_limit": 2,
                                    "user_failure_limit": 1000})
        base = "2001:db8:70:1::"
        self.fail_auth(a, in_64(base, 1))
        self.fail_auth(a, in_64(base, 2))
        calls = self.pam.count()
        self.assertReply(self.attempt(b, in_64(base, 3)), 454, "4.7.0",
                         ADDRESS_THROTTLED)
        self.assertEqual(self.pam.count(), calls)
        line = b.wait_log(r"\bevent=reject\b",
                          r"\breason=address_auth_limit\b")
        self.assertEqual(harness.parse_log_fields(line).get("prefix"),
                         "2001:db8:70:1::/64", line)
        # Another prefix is not affected on either.
        self.login(b, "2001:db8:70:2::1")
        self.login(a, "2001:db8:70:2::1")

    def test_login_failures_on_one_instance_throttle_the_other(self):
        a, b = self.instances(auth={"user_failure_limit": 3,
                                    "address_failure_limit": 1000})
        known = "2001:db8:71:1::5"
        self.login(a, known).close()
        for n in range(3):
            self.fail_auth(a, nth_64(n, "2001:db8:7100::"))
        calls = self.pam.count()
        self.assertReply(self.attempt(b, "2001:db8:71:9::1"), 454, "4.7.0",
                         USER_THROTTLED)
        self.assertReply(self.attempt(a, "192.0.2.71"), 454, "4.7.0",
                         USER_THROTTLED)
        self.assertEqual(self.pam.count(), calls,
                         "PAM was asked for a throttled login")
        fields = b.fields(r"\bevent=auth_refused\b",
                          r"\breason=user_throttled\b")
        self.assertEqual([(f.get("user"), f.get("prefix")) for f in fields],
                         [("alice", "2001:db8:71:9::/64")])
        # The prefix alice logged in from on a is known on b.
        self.login(b, in_64(known, 9))
        # bob is not affected.
        self.login(b, "2001:db8:71:9::1", user="bob")

    def test_a_known_prefix_is_forgotten_after_known_address_window(self):
        a, b = self.instances(auth={"user_failure_limit": 2,
                                    "address_failure_limit": 1000,
                                    "known_address_window": "2s"})
        known = "2001:db8:72:1::5"
        self.login(a, known).close()
        self.fail_auth(a, "192.0.2.75")
        self.fail_auth(b, "192.0.2.76")
        self.login(b, in_64(known, 6)).close()
        # The mark expires with its window (a Redis TTL), the failures
        # (user_failure_window = 1h) do not.
        time.sleep(3)
        self.assertReply(self.attempt(b, in_64(known, 7)), 454, "4.7.0",
                         USER_THROTTLED)

    def test_send_counts_on_one_instance_limit_the_other(self):
        a, b = self.instances(limits={"user_recipients_per_hour": 5})
        on_a = self.login(a, "192.0.2.72")
        self.assertReply(self.send_message(
            on_a, ["a%d@example.net" % n for n in range(3)]), 250)
        on_b = self.login(b, "192.0.2.73")
        self.assertReply(self.send_message(
            on_b, ["b%d@example.net" % n for n in range(2)]), 250)
        self.assertReply(self.mail(on_b), 250)
        self.assertReply(self.rcpt(on_b, "b-over@example.net"), 451,
                         "4.7.1", "Sending limit reached: 5 recipients per "
                         "hour; try again later")
        self.assertReply(self.mail(on_a), 250)
        self.assertReply(self.rcpt(on_a, "a-over@example.net"), 451,
                         "4.7.1")
        self.assertEqual(len(self.relayed_rcpts()), 5, self.relayed_rcpts())
        for proxy in (a, b):
            proxy.wait_log(r"\bevent=reject\b",
                           r"\breason=user_recipients_per_hour\b")
        # The first refusal of the window is logged once, by one of them.
        lines = a.log_lines(r"\bevent=limit_reached\b") + \
            b.log_lines(r"\bevent=limit_reached\b")
        self.assertEqual(len(lines), 1, "\n".join(lines))
        fields = harness.parse_log_fields(lines[0])
        self.assertEqual({k: fields.get(k) for k in
                          ("level", "user", "limit", "count", "max",
                           "window")},
                         {"level": "warn", "user": "alice",
                          "limit": "user_recipients_per_hour", "count": "5",
                          "max": "5", "window": "1h"}, lines[0])

    def test_messages_sent_through_one_instance_limit_the_other(self):
        a, b = self.instances(limits={"user_messages_per_hour": 2})
        on_a = self.login(a, "2001:db8:73::1")
        self.assertReply(self.send_message(on_a, ["x@example.net"]), 250)
        self.assertReply(self.send_message(on_a, ["y@example.net"]), 250)
        on_b = self.login(b, "2001:db8:73::2")
        self.assertReply(self.mail(on_b), 451, "4.7.1",
                         "Sending limit reached: 2 messages per hour; "
                         "try again later")

    def test_keys_are_under_key_prefix_and_expire(self):
        a, b = self.instances(auth={"user_failure_limit": 10},
                              limits={"user_messages_per_hour": 10,
                                      "user_recipients_per_hour": 10,
                                      "user_recipients_per_day": 10})
        self.fail_auth(a, "2001:db8:74::1")
        self.fail_auth(b, "192.0.2.74", user="bob")
        client = self.login(b, "2001:db8:74::2")
        self.assertReply(self.send_message(client, ["k@example.net"]), 250)
        self.assertReply(self.mail(client), 250)
        for n in range(10):
            self.rcpt(client, "k%d@example.net" % n)
        keys = self.redis.keys("*")
        self.assertTrue(keys, "no key in Redis after failures, a login and "
                              "a message")
        outside = [k for k in keys if not k.startswith(self.key_prefix)]
        self.assertEqual(outside, [], "keys outside key_prefix %r"
                         % self.key_prefix)
        self.assertEqual(self.redis.keys(self.key_prefix + "*"), keys)
        for key in keys:
            ttl = self.redis.pttl(key)
            self.assertGreater(ttl, 0, "key %r has PTTL %d (-1: no expiry)"
                               % (key, ttl))


# ================================================================= URLs

class StoreUrls(RedisTestCase):

    def shared_address_limit(self, a, b, base):
        self.fail_auth(a, in_64(base, 1))
        self.fail_auth(a, in_64(base, 2))
        self.assertReply(self.attempt(b, in_64(base, 3)), 454, "4.7.0",
                         ADDRESS_THROTTLED)

    def test_unix_url_with_db_keeps_its_keys_in_that_database(self):
        a, b = self.instances(store=self.redis.url + "?db=3",
                              auth={"address_failure_limit": 2})
        self.shared_address_limit(a, b, "2001:db8:75:1::")
        self.login(b, "2001:db8:75:2::1")
        self.assertTrue(self.redis.keys(self.key_prefix + "*", db=3))
        self.assertEqual(self.redis.keys("*", db=0), [])

    def test_tcp_url_with_password_and_db(self):
        password = "redis-" + os.urandom(8).hex()
        redis = policyutil.RedisServer(self, tcp=True, password=password)
        a, b = self.instances(store=redis.tcp_url(db=2),
                              auth={"address_failure_limit": 2})
        self.shared_address_limit(a, b, "2001:db8:76:1::")
        self.assertTrue(redis.keys(self.key_prefix + "*", db=2))
        self.assertEqual(redis.keys("*", db=0), [])
        self.assertEqual(self.redis.keys("*"), [])
        for proxy in (a, b):
            self.assertNotIn(password, proxy.log(),
                             "the Redis password is in the log")

    def test_reload_moves_an_instance_from_memory_to_redis(self):
        a, b = self.instances(auth={"address_failure_limit": 2})
        # a starts on the in-process store ...
        a.stop()
        a.sections["policy"]["store"] = "memory"
        self.rewrite(a)
        a.start()
        base = "2001:db8:77:1::"
        self.fail_auth(b, in_64(base, 1))
        self.fail_auth(b, in_64(base, 2))
        self.login(a, in_64(base, 3))
        # ... and is moved to Redis by a reload: b's failures count.
        a.sections["policy"]["store"] = self.redis.url
        self.rewrite(a)
        a.reload()
        self.assertReply(self.attempt(a, in_64(base, 4)), 454, "4.7.0",
                         ADDRESS_THROTTLED)

    def rewrite(self, proxy):
        policyutil.write_file(proxy.config_path,
                              harness.render_config(proxy.sections))


# ============================================================ store down

class StoreDown(RedisTestCase):

    def deliver(self, proxy, ip, n):
        client = self.login(proxy, ip)
        self.assertReply(self.send_message(client,
                                           ["down%d@example.net" % n]), 250)
        self.assertReply(client.command("QUIT"), 221)

    def test_local_keeps_serving_without_redis_and_shares_again_after(self):
        a, b = self.instances(auth={"address_failure_limit": 2,
                                    "user_failure_limit": 1000},
                              limits={"user_recipients_per_hour": 100})
        self.deliver(a, "192.0.2.80", 0)
        self.redis.kill()
        delivered = 1
        for n in range(3):
            for proxy in (a, b):
                self.deliver(proxy, "2001:db8:80:%d::1" % n, delivered)
                delivered += 1
        self.backend.wait_complete(delivered)
        for proxy in (a, b):
            line = proxy.wait_log(r"\bevent=policy_store\b",
                                  r"\bstate=down\b")
            self.assertEqual(harness.parse_log_fields(line).get("level"),
                             "warn", line)
        # Once per change of state, however many sessions came after.
        for proxy in (a, b):
            self.deliver(proxy, "192.0.2.81", delivered)
            delivered += 1
            self.assertEqual(len(self.store_lines(proxy, "down")), 1,
                             "\n".join(self.store_lines(proxy, "down")))
        # Redis back on the same socket (empty): each instance says so,
        # and counts are shared again.
        ups = {id(p): len(self.store_lines(p, "up")) for p in (a, b)}
        self.redis.start()
        for proxy in (a, b):
            self.wait_store_up(proxy, "192.0.2.82", before=ups[id(proxy)])
        base = "2001:db8:81:1::"
        self.fail_auth(a, in_64(base, 1))
        self.fail_auth(a, in_64(base, 2))
        self.assertReply(self.attempt(b, in_64(base, 3)), 454, "4.7.0",
                         ADDRESS_THROTTLED)

    def test_tempfail_refuses_auth_and_mail_while_redis_is_down(self):
        a, = self.instances(count=1, on_store_error="tempfail",
                            limits={"user_recipients_per_hour": 100})
        session = self.login(a, "2001:db8:82::1")
        self.assertReply(self.send_message(session, ["t@example.net"]), 250)
        self.redis.kill()
        reply = self.attempt(a, "2001:db8:82::2")
        self.assertReply(reply, 454, "4.7.0",
                         "Temporary authentication failure")
        line = a.wait_log(r"\bevent=auth_tempfail\b")
        self.assertEqual(harness.parse_log_fields(line).get("reason"),
                         "policy_store", line)
        self.assertReply(self.mail(session), 451, "4.3.0",
                         "Temporary failure checking sending limits, try "
                         "again later")
        self.assertReply(session.command("RSET"), 250)
        self.assertReply(session.command("NOOP"), 250)
        # Back: logins and mail work again (bounded by the back-off).
        self.redis.start()
        deadline = time.monotonic() + RECONNECT_WAIT
        while True:
            reply = self.attempt(a, "2001:db8:82::3")
            if reply[0] == 235:
                break
            self.assertReply(reply, 454, "4.7.0")
            if time.monotonic() > deadline:
                self.fail("AUTH still %r %.0f s after Redis came back"
                          % (reply, RECONNECT_WAIT))
            time.sleep(0.5)
        self.assertReply(self.send_message(session, ["t2@example.net"]),
                         250)

    def test_tempfail_with_send_limits_off_lets_mail_through(self):
        a, = self.instances(count=1, on_store_error="tempfail",
                            limits={"user_messages_per_hour": 0,
                                    "user_recipients_per_hour": 0,
                                    "user_recipients_per_day": 0})
        session = self.login(a, "2001:db8:83::1")
        self.redis.kill()
        self.assertReply(self.send_message(session, ["o@example.net"]), 250)


# ============================================================= lifecycle

class Lifecycle(RedisTestCase):
    """SIGTERM ends a proxy on a Redis store as on the memory store: the
    process exits 0 (harness.Proxy.stop() fails the test otherwise, after
    2 x WAIT), whatever state the store is in."""

    def stop_cleanly(self, proxy):
        proxy.stop()
        self.assertFalse(proxy.running())

    def test_sigterm_exits_with_redis_up(self):
        a, = self.instances(count=1)
        self.login(a, "192.0.2.110").close()
        self.stop_cleanly(a)

    def test_sigterm_exits_with_redis_down(self):
        a, = self.instances(count=1)
        self.login(a, "192.0.2.111").close()
        self.redis.kill()
        self.login(a, "192.0.2.111").close()
        self.stop_cleanly(a)

    def test_sigterm_exits_with_redis_stopped(self):
        a, = self.instances(count=1)
        self.login(a, "192.0.2.112").close()
        self.redis.suspend()
        self.stop_cleanly(a)


# =============================================================== stalled

class Stalled(RedisTestCase):

    def timed_auth(self, proxy, ip, user="alice"):
        """AUTH PLAIN from a new session; (reply, seconds the AUTH took).
        The read waits longer than STALL_BOUND so a slow answer is
        measured, not a harness timeout."""
        client = pp_client(self, proxy, ip)
        start = time.monotonic()
        reply = client.command("AUTH PLAIN " + policyutil.pamutil.b64(
            "\0%s\0%s" % (user, self.passwords[user])),
            timeout=3 * STALL_BOUND)
        elapsed = time.monotonic() - start
        return client, reply, elapsed

    def test_stopped_redis_with_local_still_answers_and_logs_in(self):
        a, b = self.instances(limits={"user_recipients_per_hour": 100})
        self.login(a, "192.0.2.90").close()
        self.redis.suspend()
        for n, proxy in enumerate((a, b, a, b)):
            client, reply, elapsed = self.timed_auth(
                proxy, "2001:db8:90:%d::1" % n)
            self.assertReply(reply, 235, "2.7.0")
            self.assertLess(elapsed, STALL_BOUND,
                            "AUTH answered after %.1f s" % elapsed)
            start = time.monotonic()
            self.assertReply(self.send_message(client,
                                               ["s%d@example.net" % n]),
                             250)
            self.assertLess(time.monotonic() - start, 3 * STALL_BOUND)
        self.redis.resume()
        self.login(a, "192.0.2.91")
        self.login(b, "192.0.2.91")

    def test_stopped_redis_with_tempfail_answers_454(self):
        a, = self.instances(count=1, on_store_error="tempfail")
        self.login(a, "192.0.2.92").close()
        self.redis.suspend()
        for n in range(3):
            _, reply, elapsed = self.timed_auth(a, "2001:db8:92:%d::1" % n)
            self.assertReply(reply, 454, "4.7.0",
                             "Temporary authentication failure")
            self.assertLess(elapsed, STALL_BOUND,
                            "AUTH answered after %.1f s" % elapsed)
        self.redis.resume()


if __name__ == "__main__":
    unittest.main()
