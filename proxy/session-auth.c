/* session-auth.c - see session-auth.h */
#include "proxy/session-auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/authclient.h"
#include "proxy/metrics.h"
#include "proxy/policy.h"

struct session_auth {
	struct session_auth_env env;
	struct sasl_state sasl;
	enum sasl_mech mech;	  /* of the last AUTH, for logs */
	struct sasl_creds *creds; /* only during an exchange; wiped */
	struct auth_pending *pending;
	struct policy_req *check; /* the policy's, before PAM */
	char *user;	   /* user tried (for auth_fail logs) */
	size_t user_len;
	uint32_t failures; /* on this connection */
};

static void session_auth_creds_free(struct session_auth *a)
{
	if (a->creds != NULL) {
		sasl_creds_wipe(a->creds);
		free(a->creds);
		a->creds = NULL;
	}
}

struct session_auth *session_auth_create(const struct session_auth_env *env)
{
	struct session_auth *a = xcalloc(1, sizeof(*a));

	a->env = *env;
	return a;
}

void session_auth_destroy(struct session_auth *a)
{
	if (a == NULL)
		return;
	if (a->pending != NULL)
		auth_client_cancel(a->pending);
	policy_cancel(a->check);
	session_auth_creds_free(a);
	free(a->user);
	free(a);
}

const char *session_auth_user(const struct session_auth *a)
{
	return a != NULL && a->user != NULL ? a->user : "";
}

const char *session_auth_mech(const struct session_auth *a)
{
	return sasl_mech_name(a != NULL ? a->mech : SASL_MECH_NONE);
}

void session_auth_count(const struct session_auth *a,
			enum metrics_auth_result result)
{
	enum sasl_mech mech = a != NULL ? a->mech : SASL_MECH_NONE;

	switch (mech) {
	case SASL_MECH_PLAIN:
		metrics_auth(METRICS_MECH_PLAIN, result);
		break;
	case SASL_MECH_LOGIN:
		metrics_auth(METRICS_MECH_LOGIN, result);
		break;
	case SASL_MECH_EXTERNAL:
		metrics_auth(METRICS_MECH_EXTERNAL, result);
		break;
	default:
		break;
	}
}

static void result_set(struct session_auth_result *r,
		       enum session_auth_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void result_set(struct session_auth_result *r,
		       enum session_auth_outcome outcome, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof(*r));
	r->outcome = outcome;
	va_start(ap, fmt);
	vsnprintf(r->reply, sizeof(r->reply), fmt, ap);
	va_end(ap);
}

void session_auth_abort(struct session_auth *a)
{
	session_auth_creds_free(a);
	a->sasl.mech = SASL_MECH_NONE;
}

/* One line per attempt that did not log in (fail2ban reads auth_fail). */
static void session_auth_log(const struct session_auth *a, const char *event,
			     const char *reason)
{
	char user[SANITIZE_BUFSIZE];

	log_info(a->env.sid, "event=%s ip=%s user=\"%s\" mech=%s reason=%s",
		 event, a->env.ip,
		 sanitize(user, sizeof(user), session_auth_user(a),
			  strlen(session_auth_user(a))),
		 session_auth_mech(a), reason);
}

/* A failed login: one log line for fail2ban, and a delay that doubles
 * with each failure on this connection (the session's timer, never a
 * sleep: nothing else waits). */
static void session_auth_failed(struct session_auth *a, const char *reason,
				struct session_auth_result *r)
{
	uint64_t delay = a->env.cfg->auth.failure_delay_ms;
	uint32_t shift;

	a->failures++;
	if (a->env.addr != NULL)
		policy_auth_failed(a->env.policy, a->env.cfg, a->env.addr,
				   a->user, a->user_len);
	session_auth_log(a, "auth_fail", reason);
	/* The failure that reaches max_failures is answered 421 and ends
	 * the session (proxy/session.c): counted as that, not as a 535. */
	session_auth_count(a, session_auth_too_many(a)
				  ? METRICS_AUTH_THROTTLED_CONNECTION
				  : METRICS_AUTH_BAD_CREDENTIALS);
	shift = a->failures - 1 < 6 ? a->failures - 1 : 6;
	memset(r, 0, sizeof(*r));
	r->outcome = SESSION_AUTH_FAILED;
	r->delay_ms = delay << shift;
	a->sasl.mech = SASL_MECH_NONE;
}

bool session_auth_too_many(const struct session_auth *a)
{
	return a->failures >= a->env.cfg->auth.max_failures;
}

static void session_auth_tempfail(struct session_auth *a, const char *reason,
				  struct session_auth_result *r)
{
	session_auth_log(a, "auth_tempfail", reason);
	session_auth_count(a, strcmp(reason, "policy_store") == 0
				  ? METRICS_AUTH_STORE_UNAVAILABLE
				  : METRICS_AUTH_HELPER_UNAVAILABLE);
	a->sasl.mech = SASL_MECH_NONE;
	result_set(r, SESSION_AUTH_TEMPFAIL,
		   "454 4.7.0 Temporary authentication failure");
}

/* The helper's answer, as the session's result. */
static void session_auth_on_answer(void *arg, const struct auth_response *resp)
{
	struct session_auth *a = arg;
	struct session_auth_result r;
	char user[SANITIZE_BUFSIZE];

	a->pending = NULL;
	switch (resp->result) {
	case AUTH_RESULT_OK:
		log_info(a->env.sid, "event=auth_ok ip=%s user=\"%s\" mech=%s",
			 a->env.ip,
			 sanitize(user, sizeof(user), resp->user,
				  strlen(resp->user)),
			 session_auth_mech(a));
		a->sasl.mech = SASL_MECH_NONE;
		if (a->env.addr != NULL)
			policy_auth_succeeded(a->env.policy, a->env.cfg,
					      a->env.addr, a->user,
					      a->user_len);
		memset(&r, 0, sizeof(r));
		r.outcome = SESSION_AUTH_OK;
		r.user = resp->user;
		break;
	case AUTH_RESULT_FAIL:
		session_auth_failed(a, resp->reason, &r);
		break;
	case AUTH_RESULT_TEMPFAIL:
	default:
		session_auth_tempfail(a, resp->reason, &r);
		break;
	}
	a->env.done(a->env.arg, &r);
}

/* Hands complete credentials to the auth helper. */
static void session_auth_to_helper(struct session_auth *a,
				   struct session_auth_result *r)
{
	struct sasl_creds *creds = a->creds;

	if (a->env.client != NULL)
		a->pending = auth_client_submit(a->env.client, creds->user,
						creds->password, a->env.ip,
						session_auth_on_answer, a);
	session_auth_creds_free(a);
	if (a->pending == NULL) {
		session_auth_tempfail(a, "helper_unavailable", r);
		return;
	}
	memset(r, 0, sizeof(*r));
	r->outcome = SESSION_AUTH_WAITING;
}

/* The policy's verdict on the credentials: PAM is asked, or the client
 * is refused without it (a throttled address or login: no answer about
 * the password, right or wrong). */
static void session_auth_checked(struct session_auth *a,
				 const struct policy_auth_verdict *v,
				 struct session_auth_result *r)
{
	const char *prefix = a->env.addr->prefix;
	char user[SANITIZE_BUFSIZE];

	switch (v->result) {
	case POLICY_AUTH_ALLOW:
		session_auth_to_helper(a, r);
		return;
	case POLICY_AUTH_ADDRESS_THROTTLED:
		session_auth_count(a, METRICS_AUTH_THROTTLED_ADDRESS);
		log_info(a->env.sid,
			 "event=reject ip=%s prefix=%s "
			 "reason=address_auth_limit failures=%llu",
			 a->env.ip, prefix,
			 (unsigned long long)v->address_failures);
		result_set(r, SESSION_AUTH_TEMPFAIL,
			   "454 4.7.0 Too many authentication failures from "
			   "your address, try again later");
		break;
	case POLICY_AUTH_USER_THROTTLED:
		session_auth_count(a, METRICS_AUTH_THROTTLED_USER);
		/* fail2ban reads this too: an address guessing at a
		 * throttled login is one to ban. */
		log_info(a->env.sid,
			 "event=auth_refused ip=%s prefix=%s user=\"%s\" "
			 "mech=%s reason=user_throttled failures=%llu",
			 a->env.ip, prefix,
			 sanitize(user, sizeof(user), a->user, a->user_len),
			 session_auth_mech(a),
			 (unsigned long long)v->user_failures);
		result_set(r, SESSION_AUTH_TEMPFAIL,
			   "454 4.7.0 Too many failed logins for this "
			   "account, try again later");
		break;
	case POLICY_AUTH_STORE_ERROR:
		session_auth_creds_free(a);
		session_auth_tempfail(a, "policy_store", r);
		return;
	}
	session_auth_creds_free(a);
	a->sasl.mech = SASL_MECH_NONE;
}

static void session_auth_on_check(void *arg,
				  const struct policy_auth_verdict *v)
{
	struct session_auth *a = arg;
	struct session_auth_result r;

	a->check = NULL;
	session_auth_checked(a, v, &r);
	if (r.outcome != SESSION_AUTH_WAITING)
		a->env.done(a->env.arg, &r);
}

/* A login by client certificate: PAM's account check for it (an expired
 * or locked account is refused like a wrong password), no policy check
 * (the throttles are against password guessing, and there is no password
 * to guess). */
static void session_auth_account(struct session_auth *a,
				 struct session_auth_result *r)
{
	const char *login = a->env.cert_login;

	free(a->user);
	a->user = xstrdup(login);
	a->user_len = strlen(login);
	if (a->env.client != NULL)
		a->pending = auth_client_account(a->env.client, login, a->env.ip,
						 session_auth_on_answer, a);
	if (a->pending == NULL) {
		session_auth_tempfail(a, "helper_unavailable", r);
		return;
	}
	memset(r, 0, sizeof(*r));
	r->outcome = SESSION_AUTH_WAITING;
}

/* AUTH EXTERNAL's authzid (in a->creds->user): none, or the certificate's
 * own login (RFC 4422 Appendix A: the server may refuse any other; we act
 * for no one but the certificate's owner). */
static void session_auth_external(struct session_auth *a,
				  struct session_auth_result *r)
{
	const char *login = a->env.cert_login;
	struct sasl_creds *creds = a->creds;

	if (creds->user_len != 0 &&
	    (creds->user_len != strlen(login) ||
	     memcmp(creds->user, login, creds->user_len) != 0)) {
		free(a->user);
		a->user = xmemdup(creds->user, creds->user_len);
		a->user_len = creds->user_len;
		session_auth_creds_free(a);
		session_auth_failed(a, "authzid_mismatch", r);
		return;
	}
	session_auth_creds_free(a);
	session_auth_account(a, r);
}

void session_auth_implicit(struct session_auth *a,
			   struct session_auth_result *r)
{
	a->mech = SASL_MECH_EXTERNAL;
	session_auth_account(a, r);
}

/* Complete credentials: the policy first (prefix and login throttles),
 * then PAM. */
static void session_auth_submit(struct session_auth *a,
				struct session_auth_result *r)
{
	struct sasl_creds *creds = a->creds;
	struct policy_auth_verdict v;

	if (a->mech == SASL_MECH_EXTERNAL) {
		session_auth_external(a, r);
		return;
	}
	free(a->user);
	a->user = xmemdup(creds->user, creds->user_len);
	a->user_len = creds->user_len;
	if (a->env.addr == NULL) {
		/* No IP address (a PROXY header's LOCAL or UNIX source):
		 * nothing to count on. */
		session_auth_to_helper(a, r);
		return;
	}
	a->check = policy_auth_check(a->env.policy, a->env.cfg, a->env.addr,
				     a->user, a->user_len, &v,
				     session_auth_on_check, a);
	if (a->check != NULL) {
		/* The credentials wait with us, to be wiped. */
		memset(r, 0, sizeof(*r));
		r->outcome = SESSION_AUTH_WAITING;
		return;
	}
	session_auth_checked(a, &v, r);
}

static void session_auth_status(struct session_auth *a, enum sasl_status status,
				const char *challenge,
				struct session_auth_result *r)
{
	switch (status) {
	case SASL_CONTINUE:
		result_set(r, SESSION_AUTH_CHALLENGE, "334 %s", challenge);
		return;
	case SASL_OK:
		session_auth_submit(a, r);
		return;
	case SASL_AUTHZID_MISMATCH:
		/* RFC 4616 §2: we act for no one but the user itself. */
		free(a->user);
		a->user = xmemdup(a->creds->user, a->creds->user_len);
		a->user_len = a->creds->user_len;
		session_auth_creds_free(a);
		session_auth_failed(a, "authzid_mismatch", r);
		return;
	default:
		break;
	}
	session_auth_abort(a);
	switch (status) {
	case SASL_CANCELLED:
		result_set(r, SESSION_AUTH_REFUSED,
			   "501 5.7.0 Authentication cancelled");
		break;
	case SASL_BAD_BASE64:
		result_set(r, SESSION_AUTH_REFUSED,
			   "501 5.5.2 Invalid base64 data");
		break;
	case SASL_UNKNOWN_MECH:
		result_set(r, SESSION_AUTH_REFUSED,
			   "504 5.5.4 Unrecognized authentication type");
		break;
	default:
		result_set(r, SESSION_AUTH_REFUSED,
			   "501 5.5.2 Invalid authentication data");
		break;
	}
}

void session_auth_response(struct session_auth *a, const char *line, size_t len,
			   struct session_auth_result *r)
{
	const char *challenge = "";
	enum sasl_status status;

	status = sasl_step(&a->sasl, line, len, a->creds, &challenge);
	session_auth_status(a, status, challenge, r);
}

void session_auth_start(struct session_auth *a, const char *args,
			size_t args_len, struct session_auth_result *r)
{
	static const char syntax[] =
	    "501 5.5.4 Syntax: AUTH mechanism [initial-response]";
	const char *initial = NULL, *challenge = "";
	size_t mech_len, initial_len = 0;
	enum sasl_status status;
	enum sasl_mech mech;
	unsigned allowed;

	for (mech_len = 0; mech_len < args_len && args[mech_len] != ' ' &&
			   args[mech_len] != '\t';
	     mech_len++)
		;
	if (mech_len == 0) {
		result_set(r, SESSION_AUTH_REFUSED, "%s", syntax);
		return;
	}
	if (mech_len < args_len) {
		initial = args + mech_len;
		initial_len = args_len - mech_len;
		while (initial_len > 0 &&
		       (*initial == ' ' || *initial == '\t')) {
			initial++;
			initial_len--;
		}
		if (memchr(initial, ' ', initial_len) != NULL) {
			result_set(r, SESSION_AUTH_REFUSED, "%s", syntax);
			return;
		}
	}
	mech = sasl_mech_from_name(args, mech_len);
	if (mech == SASL_MECH_EXTERNAL && a->env.cert_login == NULL) {
		/* Not offered: no certificate, or one that did not verify
		 * or maps to no login (the tls event said which). */
		/* Not a failed login (fail2ban reads auth_*): a client that
		 * tries a mechanism it was not offered. */
		log_info(a->env.sid,
			 "event=reject ip=%s cmd=AUTH mech=EXTERNAL "
			 "reason=no_certificate_login",
			 a->env.ip);
		result_set(r, SESSION_AUTH_REFUSED,
			   "504 5.5.4 Unrecognized authentication type");
		return;
	}
	allowed = mech == SASL_MECH_PLAIN	 ? AUTH_MECH_PLAIN
		  : mech == SASL_MECH_LOGIN	 ? AUTH_MECH_LOGIN
		  : mech == SASL_MECH_EXTERNAL ? AUTH_MECH_EXTERNAL
					       : 0;
	if (((a->env.cfg->auth.mechanisms | AUTH_MECH_EXTERNAL) & allowed) ==
	    0) {
		result_set(r, SESSION_AUTH_REFUSED,
			   "504 5.5.4 Unrecognized authentication type");
		return;
	}
	session_auth_creds_free(a);
	a->creds = xcalloc(1, sizeof(*a->creds));
	memset(&a->sasl, 0, sizeof(a->sasl));
	a->mech = mech;
	/* Two statements: the challenge is set by sasl_start(), and the order
	 * in which a call's arguments are evaluated is unspecified. */
	status = sasl_start(&a->sasl, mech, initial, initial_len, a->creds,
			    &challenge);
	session_auth_status(a, status, challenge, r);
}
