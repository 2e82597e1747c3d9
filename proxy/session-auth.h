/*
 * session-auth.h - SMTP AUTH (RFC 4954) for one session: the SASL
 * exchange (PLAIN, LOGIN, and EXTERNAL for a client certificate that maps
 * to a login, whose login gets PAM's account check only), the request to the auth helper, and brute-force throttling (a
 * growing per-connection delay, a per-connection limit, and, once the
 * credentials are complete and before PAM is asked, the policy's limits
 * per address prefix and per login: proxy/policy.h).  It never sleeps and
 * never answers the client itself: each step returns what the session
 * should say and do, and the answers of the policy store and the helper
 * come back through one callback.
 *
 * Ownership: the session creates it at its first AUTH and destroys it
 * with itself; destroying cancels a pending policy or helper request (the
 * callback then never runs) and wipes any credentials held.
 */
#ifndef SUBMITPROXY_SESSION_AUTH_H
#define SUBMITPROXY_SESSION_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "proxy/metrics.h"

struct auth_client;
struct config;
struct policy;
struct policy_addr;
struct session_auth;

enum session_auth_outcome {
	/* reply is a 334 challenge: the next line is a SASL response. */
	SESSION_AUTH_CHALLENGE,
	/* reply refuses the command (syntax, mechanism): counted against
	 * max_errors; the exchange is over. */
	SESSION_AUTH_REFUSED,
	/* reply (454) is a temporary refusal: the exchange is over. */
	SESSION_AUTH_TEMPFAIL,
	/* The credentials are with the policy store or the helper: done()
	 * will follow. */
	SESSION_AUTH_WAITING,
	/* A failed login, logged: wait delay_ms, then ask
	 * session_auth_failure_reply(). */
	SESSION_AUTH_FAILED,
	/* PAM said yes: user is who the client is (PAM_USER). */
	SESSION_AUTH_OK,
};

struct session_auth_result {
	enum session_auth_outcome outcome;
	char reply[600];   /* CHALLENGE, REFUSED, TEMPFAIL: without CR LF */
	uint64_t delay_ms; /* FAILED */
	const char *user;  /* OK: valid during the callback */
};

/* The helper's answer (OK, FAILED or TEMPFAIL), on the loop. */
typedef void session_auth_done_fn(void *arg,
				  const struct session_auth_result *result);

struct session_auth_env {
	uv_loop_t *loop;
	const struct config *cfg;
	struct auth_client *client; /* NULL: nobody can log in here */
	struct policy *policy;	    /* the loop's: failures per prefix, login */
	const struct policy_addr *addr; /* the client's prefix, or NULL */
	const char *ip;		    /* for PAM_RHOST and the logs */
	/* The login [tls] client_cert_map gives the client's verified
	 * certificate (AUTH EXTERNAL), NULL if none.  Lives as long as the
	 * session's TLS connection, which outlives this. */
	const char *cert_login;
	const char *sid;
	session_auth_done_fn *done;
	void *arg;
};

struct session_auth *session_auth_create(const struct session_auth_env *env);
void session_auth_destroy(struct session_auth *a);

/* AUTH <mechanism> [initial-response]: args as the client sent them (the
 * checks of the command table already passed). */
void session_auth_start(struct session_auth *a, const char *args,
			size_t args_len, struct session_auth_result *result);

/* certificate_login = implicit: logs the certificate's login in without
 * an AUTH command (as AUTH EXTERNAL with no authzid would).  Returns
 * WAITING (done() follows) or TEMPFAIL. */
void session_auth_implicit(struct session_auth *a,
			   struct session_auth_result *result);

/* One SASL response line (never logged: it holds a secret). */
void session_auth_response(struct session_auth *a, const char *line, size_t len,
			   struct session_auth_result *result);

/* A response line too long: the exchange is aborted. */
void session_auth_abort(struct session_auth *a);

/* Counts the last AUTH's end under its mechanism (proxy/metrics.h).  The
 * module counts every end it decides; the session counts the two it
 * learns later: logged in (the backend took the session) and
 * backend_unavailable. */
void session_auth_count(const struct session_auth *a,
			enum metrics_auth_result result);

/* The failure delay is over: true if that was one failure too many on
 * this connection (the session ends with 421), else the 535 is due. */
bool session_auth_too_many(const struct session_auth *a);

/* For logs: the user of the last attempt ("" if none) and its
 * mechanism. */
const char *session_auth_user(const struct session_auth *a);
const char *session_auth_mech(const struct session_auth *a);

#endif
