/*
 * test_policy.c - the limits of proxy/policy.h on the in-process store:
 * prefixes (IPv4, IPv6 /64, IPv4-mapped), failures per prefix and per
 * login with the known-address exemption, case folding, the send counts
 * and the once-per-window flag.  The memory store answers at once, so
 * every check here returns NULL with its verdict filled; the Redis store
 * runs the same operations (tests/unit/test_store.c holds them to the
 * same table).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "config/storeurl.h"
#include "proxy/policy.h"
#include "proxy/shared.h"
#include "tests/unit/tap.h"

static struct config *test_config(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	atomic_init(&cfg->refs, 1);
	cfg->limits.ipv4_prefix = 32;
	cfg->limits.ipv6_prefix = 64;
	cfg->auth.address_failure_limit = 3;
	cfg->auth.address_failure_window_ms = 600000;
	cfg->auth.user_failure_limit = 2;
	cfg->auth.user_failure_window_ms = 3600000;
	cfg->auth.known_address_window_ms = 86400000;
	storeurl_memory(&cfg->policy.store);
	cfg->policy.key_prefix = strdup("t:");
	cfg->policy.timeout_ms = 250;
	cfg->policy.on_store_error = STORE_ERROR_LOCAL;
	return cfg;
}

static struct policy_addr addr_of(const struct config *cfg, const char *ip)
{
	struct sockaddr_storage ss;
	struct policy_addr pa;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	if (policy_addr_from(&pa, (struct sockaddr *)&ss, cfg) < 0)
		memset(&pa, 0, sizeof(pa));
	return pa;
}

static void never(void *arg, const struct policy_auth_verdict *v)
{
	(void)arg;
	(void)v;
	TAP_OK(0, "the memory store never answers later");
}

static enum policy_auth_result check(struct policy *p, struct config *cfg,
				     const char *ip, const char *user)
{
	struct policy_addr pa = addr_of(cfg, ip);
	struct policy_auth_verdict v;
	struct policy_req *req;

	req = policy_auth_check(p, cfg, &pa, user, strlen(user), &v, never,
				NULL);
	if (req != NULL) {
		policy_cancel(req);
		return (enum policy_auth_result)-1;
	}
	return v.result;
}

static void fail(struct policy *p, struct config *cfg, const char *ip,
		 const char *user)
{
	struct policy_addr pa = addr_of(cfg, ip);

	policy_auth_failed(p, cfg, &pa, user, strlen(user));
}

static void test_prefixes(struct config *cfg)
{
	struct policy_addr pa;

	pa = addr_of(cfg, "192.0.2.77");
	TAP_EQ_STR(pa.prefix, "192.0.2.77/32", "IPv4: the whole address");
	pa = addr_of(cfg, "2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	TAP_EQ_STR(pa.prefix, "2001:db8:1:2::/64", "IPv6: its /64");
	pa = addr_of(cfg, "::ffff:192.0.2.77");
	TAP_EQ_STR(pa.prefix, "192.0.2.77/32",
		   "IPv4-mapped IPv6 counts as IPv4");
	cfg->limits.ipv4_prefix = 24;
	cfg->limits.ipv6_prefix = 128;
	pa = addr_of(cfg, "192.0.2.77");
	TAP_EQ_STR(pa.prefix, "192.0.2.0/24", "ipv4_prefix = 24");
	pa = addr_of(cfg, "2001:db8:1:2::5");
	TAP_EQ_STR(pa.prefix, "2001:db8:1:2::5/128",
		   "ipv6_prefix = 128: each address alone");
	cfg->limits.ipv6_prefix = 0;
	pa = addr_of(cfg, "2001:db8:1:2::5");
	TAP_EQ_STR(pa.prefix, "::/0", "ipv6_prefix = 0: all as one");
	cfg->limits.ipv6_prefix = 61;
	pa = addr_of(cfg, "2001:db8:1:ffff::1");
	TAP_EQ_STR(pa.prefix, "2001:db8:1:fff8::/61",
		   "a prefix that cuts a byte");
	cfg->limits.ipv4_prefix = 32;
	cfg->limits.ipv6_prefix = 64;
}

static void test_address_failures(struct policy *p, struct config *cfg)
{
	TAP_EQ_INT(check(p, cfg, "2001:db8:a::1", "u1"), POLICY_AUTH_ALLOW,
		   "a fresh prefix is allowed");
	fail(p, cfg, "2001:db8:a::1", "u1");
	fail(p, cfg, "2001:db8:a::2", "u2");
	fail(p, cfg, "2001:db8:a:0:ffff::3", "u3");
	TAP_EQ_INT(check(p, cfg, "2001:db8:a::99", "u4"),
		   POLICY_AUTH_ADDRESS_THROTTLED,
		   "three addresses of one /64 throttle the whole /64");
	TAP_EQ_INT(check(p, cfg, "2001:db8:b::1", "u4"), POLICY_AUTH_ALLOW,
		   "the next /64 is not affected");
}

static void test_user_failures(struct policy *p, struct config *cfg)
{
	struct policy_addr home = addr_of(cfg, "198.51.100.1");
	struct policy_auth_verdict v;

	/* alice logs in from home once: that prefix is known. */
	policy_auth_succeeded(p, cfg, &home, "alice", 5);
	fail(p, cfg, "203.0.113.1", "alice");
	TAP_EQ_INT(check(p, cfg, "203.0.113.2", "alice"), POLICY_AUTH_ALLOW,
		   "one failure for a login: still asked");
	fail(p, cfg, "203.0.113.3", "ALICE");
	TAP_EQ_INT(check(p, cfg, "203.0.113.4", "alice"),
		   POLICY_AUTH_USER_THROTTLED,
		   "two failures from two addresses (one as ALICE) throttle "
		   "alice from a new address");
	TAP_EQ_INT(check(p, cfg, "203.0.113.4", "Alice"),
		   POLICY_AUTH_USER_THROTTLED, "whatever the case");
	TAP_EQ_INT(check(p, cfg, "198.51.100.1", "alice"), POLICY_AUTH_ALLOW,
		   "alice from her known prefix is still asked");
	TAP_EQ_INT(check(p, cfg, "203.0.113.4", "bob"), POLICY_AUTH_ALLOW,
		   "bob is not affected");
	TAP_OK(policy_auth_check(p, cfg, &home, "alice", 5, &v, never,
				 NULL) == NULL &&
		   v.known && v.user_failures == 2,
	       "the verdict says known, with the login's failures");
	policy_auth_succeeded(p, cfg, &home, "alice", 5);
	TAP_EQ_INT(check(p, cfg, "203.0.113.5", "alice"),
		   POLICY_AUTH_USER_THROTTLED,
		   "a success does not clear the failures of others");
}

static struct policy_send_counts counts(struct policy *p, struct config *cfg,
					const char *user)
{
	struct policy_send_counts c;
	struct policy_req *req;

	memset(&c, 0xff, sizeof(c));
	req = policy_send_counts(p, cfg, user, strlen(user), &c, NULL, NULL);
	TAP_OK(req == NULL, "send counts from memory are answered at once");
	return c;
}

static void test_send_counts(struct policy *p, struct config *cfg)
{
	struct policy_send_counts c = counts(p, cfg, "carol");

	TAP_OK(!c.store_error && c.count[0] == 0 && c.count[1] == 0 &&
		   c.count[2] == 0,
	       "nothing sent yet");
	for (int i = 0; i < 3; i++)
		policy_recipient_accepted(p, cfg, "carol", 5);
	policy_message_accepted(p, cfg, "Carol", 5);
	c = counts(p, cfg, "CAROL");
	TAP_EQ_INT(c.count[POLICY_LIMIT_MESSAGES_HOUR], 1, "one message");
	TAP_EQ_INT(c.count[POLICY_LIMIT_RECIPIENTS_HOUR], 3,
		   "three recipients in the hour");
	TAP_EQ_INT(c.count[POLICY_LIMIT_RECIPIENTS_DAY], 3,
		   "and in the day");
	TAP_OK(c.ttl_ms[POLICY_LIMIT_RECIPIENTS_HOUR] > 3500000 &&
		   c.ttl_ms[POLICY_LIMIT_RECIPIENTS_HOUR] <= 3600000,
	       "the hour's window has about an hour left");
	TAP_OK(c.ttl_ms[POLICY_LIMIT_RECIPIENTS_DAY] > 86000000,
	       "the day's about a day");
	c = counts(p, cfg, "dave");
	TAP_EQ_INT(c.count[POLICY_LIMIT_RECIPIENTS_HOUR], 0,
		   "another login counts apart");
}

static void test_limit_reached_once(struct policy *p, struct config *cfg,
				    struct shared *sh)
{
	struct store_op op;

	policy_limit_reached(p, cfg, "sid1", "erin", 4,
			     POLICY_LIMIT_RECIPIENTS_HOUR, 5, 5, 60000);
	policy_limit_reached(p, cfg, "sid2", "ERIN", 4,
			     POLICY_LIMIT_RECIPIENTS_HOUR, 5, 5, 60000);
	memset(&op, 0, sizeof(op));
	op.kind = STORE_GET;
	store_key(&op, "lr:rh::", "erin", 4);
	memstore_exec(sh->mem, &op, 1, memstore_now_ms());
	TAP_EQ_INT(op.value, 1, "the flag is set once for the window");
	TAP_OK(op.ttl_ms > 0 && op.ttl_ms <= 60000,
	       "and ends with the counter's window");
}

int main(void)
{
	struct config *cfg = test_config();
	struct shared sh;
	struct policy *p;
	uv_loop_t loop;

	uv_loop_init(&loop);
	shared_init(&sh, 1, 2);
	p = policy_create(&loop, &sh, cfg);
	test_prefixes(cfg);
	test_address_failures(p, cfg);
	test_user_failures(p, cfg);
	test_send_counts(p, cfg);
	test_limit_reached_once(p, cfg, &sh);
	policy_close(p);
	TAP_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0,
		   "the memory store leaves nothing on the loop");
	uv_loop_close(&loop);
	shared_finish(&sh);
	config_free(cfg);
	return tap_done();
}
