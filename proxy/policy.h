/*
 * policy.h - the limits the gate enforces beyond one connection
 * (DESIGN.md, "Policy and shared state"), on the counters of a store
 * (proxy/store.h): the in-process one (proxy/memstore.h, default) or
 * Redis (proxy/redisstore.h, shared by every instance).
 *
 *   af:PREFIX        authentication failures from an address prefix, in
 *                    [auth] address_failure_window
 *   uf:LOGIN         authentication failures for a login, from anywhere,
 *                    in [auth] user_failure_window
 *   ka:PREFIX LOGIN  LOGIN logged in from PREFIX within
 *                    [auth] known_address_window (a mark)
 *   mh:LOGIN         messages the backend accepted in the hour
 *   rh:LOGIN, rd:LOGIN  recipients it accepted in the hour, the day
 *   lr:KIND:LOGIN    the first refusal of this window was logged
 *
 * PREFIX is the client address cut to [limits] ipv4_prefix / ipv6_prefix
 * ("2001:db8:1:2::/64"); an IPv4-mapped IPv6 address counts as IPv4.
 * LOGIN is the name the client gave, lower-cased (ASCII): PAM itself
 * gets the name as given, but a PAM backend that matches names without
 * regard to case (LDAP, sssd, winbind) would let a guesser spread its
 * guesses over "alice", "Alice", "ALICE" if each had its own counter.
 *
 * A login over user_failure_limit is refused without asking PAM, except
 * from a prefix where it logged in successfully within
 * known_address_window: its owner keeps working from known places while
 * a guessing botnet stops getting answers.  A successful login never
 * counts against anyone.
 *
 * When Redis fails ([policy] on_store_error): "local" runs the same
 * operations on the in-process store, "tempfail" makes the checks answer
 * POLICY_STORE_ERROR (454 at AUTH, 451 at MAIL and RCPT) and drops the
 * updates.  Each change of the store's state is logged once
 * (event=policy_store state=up|down).
 *
 * Answers: a check returns NULL when it is answered at once (the memory
 * store; Redis not up with on_store_error = local), its verdict filled;
 * otherwise it returns a request and its callback runs on a later loop
 * turn, never from inside the call.  policy_cancel() before the callback
 * means it never runs.  Updates (failed, succeeded, accepted) are fire
 * and forget.
 *
 * Ownership: one struct policy per event loop (the worker's), used only
 * on that loop's thread; the memory store it falls back to is the
 * process's (proxy/shared.h).
 */
#ifndef SUBMITPROXY_POLICY_H
#define SUBMITPROXY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proxy/addrtable.h"

struct config;
struct policy;
struct policy_req;
struct shared;

/* A client address as the per-address counters see it. */
struct policy_addr {
	struct addrkey key; /* cut to the prefix */
	char prefix[64];    /* "192.0.2.0/24", "2001:db8::/64" */
};

/* Fills pa from sa cut to cfg's prefixes; -1 for a non-IP family. */
int policy_addr_from(struct policy_addr *pa, const struct sockaddr *sa,
		     const struct config *cfg);

struct policy *policy_create(uv_loop_t *loop, struct shared *sh,
			     const struct config *cfg);
/* A reload: cfg's [policy] from now on; a store that changed is
 * connected anew (requests in flight on the old one finish there). */
void policy_reconfigure(struct policy *p, const struct config *cfg);
/* The loop ends: see redisstore_close(); p is gone on return. */
void policy_close(struct policy *p);

void policy_cancel(struct policy_req *req);

/* ---- authentication ---- */

enum policy_auth_result {
	POLICY_AUTH_ALLOW,
	POLICY_AUTH_ADDRESS_THROTTLED, /* address_failure_limit */
	POLICY_AUTH_USER_THROTTLED,    /* user_failure_limit, unknown prefix */
	POLICY_AUTH_STORE_ERROR,       /* Redis failed, on_store_error=tempfail */
};

struct policy_auth_verdict {
	enum policy_auth_result result;
	uint64_t address_failures; /* in their windows, as read */
	uint64_t user_failures;
	bool known;		   /* the login succeeded from this prefix */
};

typedef void policy_auth_cb(void *arg, const struct policy_auth_verdict *v);

/* Before PAM is asked about user from addr.  See Answers. */
struct policy_req *policy_auth_check(struct policy *p,
				     const struct config *cfg,
				     const struct policy_addr *addr,
				     const char *user, size_t user_len,
				     struct policy_auth_verdict *v,
				     policy_auth_cb *cb, void *arg);

/* PAM said no: one more failure for the prefix and for the login. */
void policy_auth_failed(struct policy *p, const struct config *cfg,
			const struct policy_addr *addr, const char *user,
			size_t user_len);

/* PAM said yes: the prefix is known for the login from now on. */
void policy_auth_succeeded(struct policy *p, const struct config *cfg,
			   const struct policy_addr *addr, const char *user,
			   size_t user_len);

/* ---- sending ---- */

enum policy_limit {
	POLICY_LIMIT_MESSAGES_HOUR,
	POLICY_LIMIT_RECIPIENTS_HOUR,
	POLICY_LIMIT_RECIPIENTS_DAY,
	POLICY_LIMIT_COUNT
};

/* "user_messages_per_hour", ... as the log and the config say. */
const char *policy_limit_name(enum policy_limit which);

struct policy_send_counts {
	bool store_error; /* Redis failed, on_store_error=tempfail */
	uint64_t count[POLICY_LIMIT_COUNT];
	uint64_t ttl_ms[POLICY_LIMIT_COUNT]; /* left in each window */
};

typedef void policy_send_cb(void *arg, const struct policy_send_counts *c);

/* What the login has sent in its windows (at MAIL).  See Answers. */
struct policy_req *policy_send_counts(struct policy *p,
				      const struct config *cfg,
				      const char *user, size_t user_len,
				      struct policy_send_counts *c,
				      policy_send_cb *cb, void *arg);

/* The backend said 250 to a RCPT of the login. */
void policy_recipient_accepted(struct policy *p, const struct config *cfg,
			       const char *user, size_t user_len);

/* The backend accepted a message of the login (the final 250). */
void policy_message_accepted(struct policy *p, const struct config *cfg,
			     const char *user, size_t user_len);

/* A command was refused for which over limit (count: what the login had
 * sent; ttl_ms: left in that window): logs event=limit_reached at warn
 * level the first time in the window, across instances with Redis. */
void policy_limit_reached(struct policy *p, const struct config *cfg,
			  const char *sid, const char *user, size_t user_len,
			  enum policy_limit which, uint64_t limit,
			  uint64_t count, uint64_t ttl_ms);

#endif
