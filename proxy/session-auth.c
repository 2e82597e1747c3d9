/*
 * session-auth.c - SMTP AUTH (RFC 4954) in the session: the SASL exchange,
 * the request to the auth helper, the answer, and brute-force throttling
 * (a growing per-connection delay, a per-connection limit, a per-address
 * limit in a time window), all without sleeping: the event loop never
 * waits for PAM or for a delay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "config/config.h"
#include "proxy/authclient.h"
#include "common/log.h"
#include "proxy/session-private.h"
#include "proxy/shared.h"
#include "common/util.h"
#include "proxy/worker.h"

static void session_creds_free(struct session *s)
{
	if (s->creds != NULL) {
		sasl_creds_wipe(s->creds);
		free(s->creds);
		s->creds = NULL;
	}
}

/* The exchange ended without reaching the helper. */
void session_sasl_abort(struct session *s)
{
	session_creds_free(s);
	s->sasl.mech = SASL_MECH_NONE;
	s->lines.max = s->cfg->limits.max_line_length;
	if (s->state == SESSION_AUTH_INPUT)
		session_enter_state(s, SESSION_COMMAND);
}

static const char *session_mech_name(const struct session *s)
{
	return sasl_mech_name(s->auth_mech);
}

/* An address with address_failure_limit failures inside
 * address_failure_window gets 454 without PAM being asked, until the
 * window has passed. */
static bool session_address_throttled(struct session *s)
{
	const struct config *cfg = s->cfg;

	/* The table is shared by every event loop: failures on one count
	 * on all. */
	return s->addr != NULL &&
	       shared_addr_throttled(s->w->shared, s->addr,
				     uv_now(&s->w->loop),
				     cfg->auth.address_failure_window_ms,
				     cfg->auth.address_failure_limit);
}

static void session_count_address_failure(struct session *s)
{
	if (s->addr != NULL)
		shared_addr_failed(s->w->shared, s->addr, uv_now(&s->w->loop),
				   s->cfg->auth.address_failure_window_ms);
}

/* A failed login: one log line for fail2ban, then the reply waits out a
 * delay that doubles with each failure on this connection (a timer, never
 * a sleep: nothing else waits). */
static void session_auth_failed(struct session *s, const char *reason)
{
	char user[SANITIZE_BUFSIZE];
	uint64_t delay = s->cfg->auth.failure_delay_ms;
	uint32_t shift;

	s->auth_failures++;
	session_count_address_failure(s);
	log_info(s->sid, "event=auth_fail ip=%s user=\"%s\" mech=%s reason=%s",
		 s->ip,
		 s->auth_user ? sanitize(user, sizeof(user), s->auth_user,
					 strlen(s->auth_user))
			      : "",
		 session_mech_name(s), reason);
	shift = s->auth_failures - 1 < 6 ? s->auth_failures - 1 : 6;
	delay <<= shift;
	session_enter_state(s, SESSION_AUTH_DELAY);
	if (delay == 0)
		session_auth_delay_done(s); /* failure_delay = 0: answer now */
	else
		session_timer_start(s, delay);
}

/* The failure delay is over: answer the AUTH. */
void session_auth_delay_done(struct session *s)
{
	s->sasl.mech = SASL_MECH_NONE;
	if (s->auth_failures >= s->cfg->auth.max_failures) {
		log_info(s->sid, "event=reject ip=%s reason=max_auth_failures",
			 s->ip);
		session_reply(s,
			      "421 4.7.0 %s Error: too many authentication "
			      "failures",
			      s->cfg->server.hostname);
		session_close(s, "too many authentication failures");
		return;
	}
	session_reply(s, "535 5.7.8 Authentication credentials invalid");
	session_enter_state(s, SESSION_COMMAND);
	session_resume(s);
}

static void session_on_auth(void *arg, const struct auth_response *resp)
{
	struct session *s = arg;
	char user[SANITIZE_BUFSIZE];

	s->auth_pending = NULL;
	if (s->state >= SESSION_CLOSING)
		return;
	switch (resp->result) {
	case AUTH_RESULT_OK:
		log_info(s->sid, "event=auth_ok ip=%s user=\"%s\" mech=%s", s->ip,
			 sanitize(user, sizeof(user), resp->user,
				  strlen(resp->user)),
			 session_mech_name(s));
		s->sasl.mech = SASL_MECH_NONE;
		/* DESIGN.md: 235 only after PAM and the backend both said
		 * yes; the relay answers the client when it is ready. */
		s->pending_user = xstrdup(resp->user);
		session_relay_start(s);
		return;
	case AUTH_RESULT_FAIL:
		session_auth_failed(s, resp->reason);
		return;
	case AUTH_RESULT_TEMPFAIL:
	default:
		log_info(s->sid,
			 "event=auth_tempfail ip=%s user=\"%s\" mech=%s "
			 "reason=%s",
			 s->ip,
			 s->auth_user ? sanitize(user, sizeof(user),
						 s->auth_user,
						 strlen(s->auth_user))
				      : "",
			 session_mech_name(s), resp->reason);
		s->sasl.mech = SASL_MECH_NONE;
		session_reply(s, "454 4.7.0 Temporary authentication failure");
		session_enter_state(s, SESSION_COMMAND);
		break;
	}
	session_resume(s);
}

/* Hands complete credentials to the auth helper. */
static void session_auth_submit(struct session *s)
{
	struct sasl_creds *creds = s->creds;

	s->lines.max = s->cfg->limits.max_line_length;
	free(s->auth_user);
	s->auth_user = xmemdup(creds->user, creds->user_len);
	if (s->w->auth != NULL)
		s->auth_pending = auth_client_submit(
			s->w->auth, creds->user, creds->password, s->ip,
			session_on_auth, s);
	session_creds_free(s);
	if (s->auth_pending == NULL) {
		struct auth_response resp;

		memset(&resp, 0, sizeof(resp));
		resp.result = AUTH_RESULT_TEMPFAIL;
		snprintf(resp.reason, sizeof(resp.reason), "helper_unavailable");
		session_enter_state(s, SESSION_AUTH_WAIT);
		session_on_auth(s, &resp);
		return;
	}
	session_enter_state(s, SESSION_AUTH_WAIT);
}

static void session_sasl_status(struct session *s, enum sasl_status status,
				const char *challenge)
{
	switch (status) {
	case SASL_CONTINUE:
		session_reply(s, "334 %s", challenge);
		if (s->state != SESSION_AUTH_INPUT) {
			session_enter_state(s, SESSION_AUTH_INPUT);
			/* Responses may be longer than commands. */
			s->lines.max = SESSION_SASL_LINE_MAX;
		}
		return;
	case SASL_OK:
		session_auth_submit(s);
		return;
	case SASL_AUTHZID_MISMATCH:
		/* RFC 4616 §2: we act for no one but the user itself. */
		free(s->auth_user);
		s->auth_user = xmemdup(s->creds->user, s->creds->user_len);
		session_creds_free(s);
		session_auth_failed(s, "authzid_mismatch");
		return;
	default:
		break;
	}
	session_sasl_abort(s);
	switch (status) {
	case SASL_CANCELLED:
		session_refuse(s, SMTP_VERB_AUTH,
			       "501 5.7.0 Authentication cancelled");
		break;
	case SASL_BAD_BASE64:
		session_refuse(s, SMTP_VERB_AUTH,
			       "501 5.5.2 Invalid base64 data");
		break;
	case SASL_UNKNOWN_MECH:
		session_refuse(s, SMTP_VERB_AUTH,
			       "504 5.5.4 Unrecognized authentication type");
		break;
	default:
		session_refuse(s, SMTP_VERB_AUTH,
			       "501 5.5.2 Invalid authentication data");
		break;
	}
}

/* A client response line during AUTH: never logged, it holds a secret. */
void session_sasl_line(struct session *s, const char *line, size_t len)
{
	const char *challenge = "";
	enum sasl_status status;

	status = sasl_step(&s->sasl, line, len, s->creds, &challenge);
	session_sasl_status(s, status, challenge);
}

void cmd_auth(struct session *s, const struct smtp_cmd *cmd)
{
	const char *mech_name = cmd->args, *initial = NULL;
	size_t mech_len, initial_len = 0;
	const char *challenge = "";
	enum sasl_status status;
	enum sasl_mech mech;
	unsigned allowed;

	if (session_needs_starttls(s)) {
		session_refuse(s, cmd->verb,
			       "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if (!s->esmtp) {
		/* RFC 4954 §4: AUTH is an ESMTP extension, announced by EHLO
		 * (which must be sent again after STARTTLS). */
		session_refuse(s, cmd->verb, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (s->user != NULL) {
		/* RFC 4954 §4: no second AUTH after success. */
		session_refuse(s, cmd->verb, "503 5.5.1 Already authenticated");
		return;
	}
	if (!session_auth_offered(s)) {
		/* RFC 4954 §4: 538 when the mechanism needs encryption. */
		session_refuse(s, cmd->verb,
			       "538 5.7.11 Encryption required for requested "
			       "authentication mechanism");
		return;
	}
	for (mech_len = 0; mech_len < cmd->args_len &&
			   cmd->args[mech_len] != ' ' &&
			   cmd->args[mech_len] != '\t';
	     mech_len++)
		;
	if (mech_len == 0) {
		session_refuse(s, cmd->verb,
			       "501 5.5.4 Syntax: AUTH mechanism "
			       "[initial-response]");
		return;
	}
	if (mech_len < cmd->args_len) {
		initial = cmd->args + mech_len;
		initial_len = cmd->args_len - mech_len;
		while (initial_len > 0 && (*initial == ' ' || *initial == '\t')) {
			initial++;
			initial_len--;
		}
		if (memchr(initial, ' ', initial_len) != NULL) {
			session_refuse(s, cmd->verb,
				       "501 5.5.4 Syntax: AUTH mechanism "
				       "[initial-response]");
			return;
		}
	}
	mech = sasl_mech_from_name(mech_name, mech_len);
	allowed = mech == SASL_MECH_PLAIN   ? AUTH_MECH_PLAIN
		  : mech == SASL_MECH_LOGIN ? AUTH_MECH_LOGIN
					    : 0;
	if ((s->cfg->auth.mechanisms & allowed) == 0) {
		session_refuse(s, cmd->verb,
			       "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (session_address_throttled(s)) {
		log_info(s->sid, "event=reject ip=%s reason=address_auth_limit",
			 s->ip);
		session_reply(s, "454 4.7.0 Too many authentication failures "
				 "from your address, try again later");
		return;
	}
	s->creds = xcalloc(1, sizeof(*s->creds));
	memset(&s->sasl, 0, sizeof(s->sasl));
	s->auth_mech = mech;
	/* Two statements: the challenge is set by sasl_start(), and the order
	 * in which a call's arguments are evaluated is unspecified. */
	status = sasl_start(&s->sasl, mech, initial, initial_len, s->creds,
			    &challenge);
	session_sasl_status(s, status, challenge);
}

/* Releases what AUTH holds when the session ends. */
void session_auth_cleanup(struct session *s)
{
	if (s->auth_pending != NULL) {
		auth_client_cancel(s->auth_pending);
		s->auth_pending = NULL;
	}
	session_creds_free(s);
	free(s->auth_user);
	s->auth_user = NULL;
}
