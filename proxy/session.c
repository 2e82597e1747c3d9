/*
 * session.c - one client connection: admission, the greeting, the command
 * dispatcher, and the session's life (see session.h).
 *
 * Input: session-io hands over client bytes in the clear; complete lines
 * go through the command table (session-cmd.h), each to its handler here
 * (before AUTH: the proxy answers everything itself) or to the relay
 * (after AUTH).  Replies, local and relayed, leave in command order
 * through the reply queue, batched into one write per read.  While the
 * session cannot take input (a reply owed to a command that ends a
 * pipelined group, too much output, a slow backend) it returns what it
 * did not take and session-io parks it: memory per session stays bounded
 * whatever the client does.
 *
 * Timeouts: [limits] idle_timeout is a deadline per command: it starts
 * again when a whole command line, a whole SASL response or message bytes
 * arrive, never for part of a line (a client trickling a line byte by
 * byte is closed at the deadline, as Postfix's smtpd_timeout does).
 */
#include "proxy/session.h"

#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/addrtable.h"
#include "proxy/linebuf.h"
#include "proxy/logratelimit.h"
#include "proxy/metrics.h"
#include "proxy/proxyproto.h"
#include "proxy/replyq.h"
#include "proxy/sendermap.h"
#include "proxy/session-auth.h"
#include "proxy/session-cmd.h"
#include "proxy/session-ehlo.h"
#include "proxy/session-io.h"
#include "proxy/session-relay.h"
#include "proxy/policy.h"
#include "proxy/shared.h"
#include "proxy/userlimits.h"
#include "proxy/smtp-parse.h"
#include "proxy/smtp-relay-parse.h"
#include "tls/tls-conn.h"

/* Replies owed at once (local and relayed): past this the session stops
 * reading commands until the backend has answered some (a client that
 * pipelines without end must not grow our memory). */
#define SESSION_REPLIES_MAX 100
/* RFC 4954 §4: a SASL response line may be up to 12288 octets. */
#define SESSION_SASL_LINE_MAX 12288

enum session_phase {
	SESSION_PHASE_PROXY,	     /* reading the PROXY protocol header */
	SESSION_PHASE_HANDSHAKE,     /* TLS handshake (implicit or STARTTLS) */
	SESSION_PHASE_GREETING,	     /* greeting delayed: input is early talk */
	SESSION_PHASE_PREAUTH,	     /* commands, answered by the proxy */
	SESSION_PHASE_AUTH_INPUT,    /* 334 sent: a SASL response is due */
	SESSION_PHASE_AUTH_WAIT,     /* credentials with the auth helper */
	SESSION_PHASE_AUTH_DELAY,    /* failed: the reply waits out a delay */
	SESSION_PHASE_HANDOVER,	     /* PAM said yes: the backend connects */
	SESSION_PHASE_AUTHENTICATED, /* commands, relayed */
	SESSION_PHASE_POLICY_WAIT,   /* a MAIL waits for the send counts */
	SESSION_PHASE_DATA_WAIT,     /* DATA relayed: its reply is owed */
	SESSION_PHASE_DATA,	     /* message bytes (relayed or discarded) */
	SESSION_PHASE_QUIT,	     /* QUIT relayed: the rest is dropped */
	SESSION_PHASE_LAST_REPLY,    /* closing once a message's reply is in */
	SESSION_PHASE_ENDED,	     /* closing: nothing more is taken */
	SESSION_PHASE_COUNT
};

static const char *const session_phase_names[] = {
    [SESSION_PHASE_PROXY] = "proxy",
    [SESSION_PHASE_HANDSHAKE] = "handshake",
    [SESSION_PHASE_GREETING] = "greeting",
    [SESSION_PHASE_PREAUTH] = "command", /* as the logs always said */
    [SESSION_PHASE_AUTH_INPUT] = "auth_input",
    [SESSION_PHASE_AUTH_WAIT] = "auth_wait",
    [SESSION_PHASE_AUTH_DELAY] = "auth_delay",
    [SESSION_PHASE_HANDOVER] = "handover",
    [SESSION_PHASE_AUTHENTICATED] = "relay",
    [SESSION_PHASE_POLICY_WAIT] = "policy_wait",
    [SESSION_PHASE_DATA_WAIT] = "data_wait",
    [SESSION_PHASE_DATA] = "data",
    [SESSION_PHASE_QUIT] = "quit",
    [SESSION_PHASE_LAST_REPLY] = "last_reply",
    [SESSION_PHASE_ENDED] = "ended",
};
static_assert(sizeof(session_phase_names) / sizeof(session_phase_names[0]) ==
		  SESSION_PHASE_COUNT,
	      "one name per session phase");

struct session {
	const struct session_env *env;
	struct config *cfg; /* held for the session's life */
	const struct config_listener *listener;
	struct session_hook hook; /* the owner's */

	struct session_io *io;
	uv_timer_t timer; /* greeting, handshake, idle, auth delay */
	int open_handles; /* the timer, and the io as one */
	bool destroyed;

	enum session_phase phase;
	char sid[17];
	char ip[46];
	unsigned port;
	struct addr_entry *addr; /* counted in the shared address table */
	uint32_t addr_count;	 /* connections from it, with this one */
	struct policy_addr paddr; /* its prefix, valid when addr != NULL */
	uint32_t open_at_accept; /* sessions of every loop, with this one */

	unsigned char *proxy_buf; /* PROXY header so far (that phase only) */
	size_t proxy_len;

	struct linebuf lines;
	struct replyq replies;
	bool starttls;	  /* 220 queued: TLS starts after the line */
	bool client_done; /* the client sent EOF: answer, then end */
	bool draining;	  /* the server is stopping */

	char *helo; /* EHLO/HELO argument (this TLS state) */
	bool esmtp;
	bool helo_after_auth; /* EHLO/HELO after AUTH (junk if again) */
	uint32_t errors;      /* max_errors */
	uint32_t junk;	      /* max_junk_commands */

	struct session_auth *auth;   /* from the first AUTH */
	/* certificate_login = implicit: the EHLO/HELO that logs in waits
	 * for the login (PENDING); one that failed is not tried again. */
	enum {
		SESSION_IMPLICIT_NONE,
		SESSION_IMPLICIT_PENDING,
		SESSION_IMPLICIT_REFUSED,
	} implicit;
	struct session_relay *relay; /* from PAM's yes */
	/* A MAIL held while the policy store reads the login's send
	 * counts (SESSION_PHASE_POLICY_WAIT). */
	struct policy_req *send_req;
	char *held_mail; /* its arguments */
	size_t held_mail_len;
	struct user_send_limits held_limits;

	uint64_t start_ms;
	const char *close_reason;
};

static void session_destroy(struct session *s);
static void session_close(struct session *s, const char *reason);
static void session_greet(struct session *s);
static void session_drain_check(struct session *s);
static void session_on_timer(uv_timer_t *t);
static void session_handover(struct session *s, const char *user);

struct session_hook *session_hook(struct session *s)
{
	return &s->hook;
}

static bool session_authenticated(const struct session *s)
{
	return s->phase >= SESSION_PHASE_AUTHENTICATED &&
	       s->phase <= SESSION_PHASE_QUIT;
}

static void session_timer_start(struct session *s, uint64_t ms)
{
	uv_timer_start(&s->timer, session_on_timer, ms, 0);
}

/* The per-command deadline starts again. */
static void session_idle_restart(struct session *s)
{
	session_timer_start(s, s->cfg->limits.idle_timeout_ms);
}

static void session_enter_phase(struct session *s, enum session_phase phase)
{
	log_debug(s->sid, "event=state from=%s to=%s",
		  session_phase_names[s->phase], session_phase_names[phase]);
	s->phase = phase;
	switch (phase) {
	case SESSION_PHASE_PROXY:
	case SESSION_PHASE_HANDSHAKE:
		session_timer_start(s, s->cfg->limits.handshake_timeout_ms);
		break;
	case SESSION_PHASE_GREETING:
		session_timer_start(s, s->cfg->limits.greeting_delay_ms);
		break;
	case SESSION_PHASE_QUIT: /* the relay's timeout bounds these */
	case SESSION_PHASE_LAST_REPLY:
	case SESSION_PHASE_ENDED:
		uv_timer_stop(&s->timer);
		break;
	default:
		break;
	}
}

/* ---- output ---- */

static void session_emit(void *arg, const char *text, size_t len)
{
	struct session *s = arg;

	session_io_write(s->io, text, len);
}

/* Appends one reply line (fmt without CR LF), in its turn. */
static void session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void session_reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (s->phase == SESSION_PHASE_ENDED)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	replyq_local(&s->replies, line, (size_t)n);
}

/* A negative reply to a client command: logged (with reason= when one is
 * given), counted against max_errors (Postfix's smtpd_hard_error_limit),
 * and past the limit the session ends with 421. */
static void session_refuse_why(struct session *s, enum smtp_verb verb,
			       const char *reason, const char *reply)
{
	char text[SANITIZE_BUFSIZE];

	session_reply(s, "%s", reply);
	log_info(s->sid, "event=reject ip=%s cmd=%s%s%s reply=\"%s\"", s->ip,
		 smtp_verb_name(verb), reason != NULL ? " reason=" : "",
		 reason != NULL ? reason : "",
		 sanitize(text, sizeof(text), reply, strlen(reply)));
	if (++s->errors >= s->cfg->limits.max_errors) {
		session_reply(s, "421 4.7.0 %s Error: too many errors",
			      s->cfg->server.hostname);
		log_info(s->sid, "event=reject ip=%s reason=too_many_errors",
			 s->ip);
		session_close(s, "too many errors");
	}
}

static void session_refuse(struct session *s, enum smtp_verb verb,
			   const char *reply)
{
	session_refuse_why(s, verb, NULL, reply);
}

/* Whether input must wait: too much owed to the client or the backend. */
static bool session_over_limits(const struct session *s)
{
	return session_io_output_high(s->io) ||
	       replyq_owed(&s->replies) >= SESSION_REPLIES_MAX ||
	       (s->relay != NULL && session_relay_busy(s->relay));
}

/* The session can take input again: parked input first, then reading. */
static void session_resume(struct session *s)
{
	if (s->phase == SESSION_PHASE_ENDED)
		return;
	session_io_resume(s->io);
	session_drain_check(s);
}

/* ---- the pre-auth commands ---- */

/* The login the client's verified certificate maps to, NULL if none. */
static const char *session_cert_login(const struct session *s)
{
	if (!session_io_tls_active(s->io))
		return NULL;
	return tls_conn_peer_login(session_io_tls(s->io), NULL);
}

/* certificate_login = implicit, and a certificate to log in with that
 * has not been refused yet. */
static bool session_implicit_login(const struct session *s)
{
	return s->listener->certificate_login == CERT_LOGIN_IMPLICIT &&
	       s->implicit != SESSION_IMPLICIT_REFUSED &&
	       session_cert_login(s) != NULL;
}

/* The mechanisms the EHLO reply offers (AUTH_MECH_*), 0 for no AUTH. */
static unsigned session_auth_mechs(const struct session *s)
{
	/* DESIGN.md: AUTH is offered only over TLS, unless the listener
	 * explicitly allows plaintext authentication (for loopback
	 * testing). */
	if (session_authenticated(s) || session_implicit_login(s) ||
	    !(session_io_tls_active(s->io) || s->listener->allow_plaintext_auth))
		return 0;
	if (s->listener->certificate_login == CERT_LOGIN_IMPLICIT)
		return s->cfg->auth.mechanisms; /* the implicit login failed */
	return s->cfg->auth.mechanisms |
	       (session_cert_login(s) != NULL ? AUTH_MECH_EXTERNAL : 0);
}

static bool session_auth_offered(const struct session *s)
{
	return session_auth_mechs(s) != 0;
}

static void session_reset_helo(struct session *s)
{
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
}

static void session_implicit_start(struct session *s);

/* The reply to the EHLO or HELO in s->helo, before AUTH. */
static void session_ehlo_answer(struct session *s)
{
	const struct config *cfg = s->cfg;
	struct ehlo_caps probed;
	bool known;
	char lines[16][64];
	size_t n;

	if (!s->esmtp) {
		session_reply(s, "250 %s", cfg->server.hostname);
		return;
	}
	known = shared_backend_caps(s->env->shared, cfg, &probed);
	n = session_ehlo_lines(cfg, known ? &probed : NULL,
			       s->listener->mode == LISTENER_STARTTLS &&
				   session_io_tls(s->io) == NULL,
			       session_auth_mechs(s), lines, 16);
	session_reply(s, "250%c%s", n > 0 ? '-' : ' ', cfg->server.hostname);
	for (size_t i = 0; i < n; i++)
		session_reply(s, "250%c%s", i + 1 < n ? '-' : ' ', lines[i]);
}

static void cmd_ehlo(struct session *s, const struct smtp_cmd *cmd)
{
	/* RFC 5321 §4.1.4: EHLO/HELO also resets any transaction. */
	session_reset_helo(s);
	s->helo = xmemdup(cmd->args, cmd->args_len);
	s->esmtp = cmd->verb == SMTP_VERB_EHLO;
	if (session_implicit_login(s)) {
		/* Answered by the backend once logged in. */
		session_implicit_start(s);
		return;
	}
	session_ehlo_answer(s);
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* The handshake starts once this line has been taken: the input
	 * loop checks that nothing followed it. */
	s->starttls = true;
}

static void session_auth_answer(struct session *s,
				const struct session_auth_result *r);

static void session_on_auth(void *arg, const struct session_auth_result *r)
{
	struct session *s = arg;

	if (s->phase != SESSION_PHASE_AUTH_WAIT)
		return;
	session_auth_answer(s, r);
	session_io_flush(s->io);
}

/* The session's AUTH state, made on first use. */
static void session_auth_need(struct session *s)
{
	if (s->auth == NULL) {
		struct session_auth_env env = {
		    .loop = s->env->loop,
		    .cfg = s->cfg,
		    .client = s->env->auth,
		    .policy = s->env->policy,
		    .addr = s->addr != NULL ? &s->paddr : NULL,
		    .ip = s->ip,
		    .cert_login = session_cert_login(s),
		    .sid = s->sid,
		    .done = session_on_auth,
		    .arg = s,
		};

		s->auth = session_auth_create(&env);
	}
}

static void cmd_auth(struct session *s, const struct smtp_cmd *cmd)
{
	struct session_auth_result r;

	session_auth_need(s);
	session_auth_start(s->auth, cmd->args, cmd->args_len, &r);
	session_auth_answer(s, &r);
}

/* certificate_login = implicit: the EHLO/HELO in s->helo logs the
 * certificate's login in (PAM's account check, then the backend), and is
 * then relayed, so that its reply is the one every EHLO after AUTH gets.
 * Commands pipelined behind it wait, parked. */
static void session_implicit_start(struct session *s)
{
	struct session_auth_result r;

	session_auth_need(s);
	s->implicit = SESSION_IMPLICIT_PENDING;
	session_auth_implicit(s->auth, &r);
	session_auth_answer(s, &r);
}

/* The implicit login did not happen: a refused account gets the EHLO
 * answered as before AUTH (and then 530 to MAIL: a permanent refusal, as
 * for a password login); a temporary failure gets 421, so that the
 * client's queue tries again later rather than bounce. */
static void session_implicit_failed(struct session *s, bool temporary)
{
	s->implicit = SESSION_IMPLICIT_REFUSED;
	if (temporary) {
		session_reply(s,
			      "421 4.7.0 %s Temporary authentication failure, "
			      "try again later",
			      s->cfg->server.hostname);
		session_close(s, "implicit login failed");
		return;
	}
	session_ehlo_answer(s);
	session_enter_phase(s, SESSION_PHASE_PREAUTH);
	session_idle_restart(s);
	session_resume(s);
}

static void cmd_noop(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "250 2.0.0 OK");
}

static void cmd_rset(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "250 2.0.0 OK");
}

static void cmd_quit(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "221 2.0.0 %s closing connection",
		      s->cfg->server.hostname);
	session_close(s, "quit");
}

static void cmd_help(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP "
			 "RSET QUIT HELP; MAIL RCPT DATA after AUTH");
}

typedef void session_cmd_fn(struct session *s, const struct smtp_cmd *cmd);

/* The proxy's own handlers, for the verbs the table lets through before
 * AUTH (session-cmd.c: SESSION_CMD_PREAUTH). */
static session_cmd_fn *const session_local_handlers[SMTP_VERB_COUNT] = {
    [SMTP_VERB_EHLO] = cmd_ehlo,	 [SMTP_VERB_HELO] = cmd_ehlo,
    [SMTP_VERB_STARTTLS] = cmd_starttls, [SMTP_VERB_AUTH] = cmd_auth,
    [SMTP_VERB_NOOP] = cmd_noop,	 [SMTP_VERB_RSET] = cmd_rset,
    [SMTP_VERB_QUIT] = cmd_quit,	 [SMTP_VERB_HELP] = cmd_help,
};

/* ---- AUTH ---- */

/* A failed login, once its delay is over: 535, or past max_failures on
 * this connection 421 and the end. */
static void session_auth_failure_answer(struct session *s)
{
	if (s->implicit == SESSION_IMPLICIT_PENDING) {
		session_implicit_failed(s, false);
		return;
	}
	if (session_auth_too_many(s->auth)) {
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
	session_enter_phase(s, SESSION_PHASE_PREAUTH);
	session_idle_restart(s);
	session_resume(s);
}

/* What the auth module decided, as replies and phases. */
static void session_auth_answer(struct session *s,
				const struct session_auth_result *r)
{
	if (s->implicit == SESSION_IMPLICIT_PENDING &&
	    (r->outcome == SESSION_AUTH_TEMPFAIL ||
	     r->outcome == SESSION_AUTH_REFUSED)) {
		session_implicit_failed(s, true);
		return;
	}
	switch (r->outcome) {
	case SESSION_AUTH_CHALLENGE:
		session_reply(s, "%s", r->reply);
		if (s->phase != SESSION_PHASE_AUTH_INPUT) {
			session_enter_phase(s, SESSION_PHASE_AUTH_INPUT);
			/* Responses may be longer than commands. */
			s->lines.max = SESSION_SASL_LINE_MAX;
		}
		return;
	case SESSION_AUTH_WAITING:
		s->lines.max = s->cfg->limits.max_line_length;
		session_enter_phase(s, SESSION_PHASE_AUTH_WAIT);
		return;
	case SESSION_AUTH_REFUSED:
		s->lines.max = s->cfg->limits.max_line_length;
		session_enter_phase(s, SESSION_PHASE_PREAUTH);
		session_refuse(s, SMTP_VERB_AUTH, r->reply);
		break;
	case SESSION_AUTH_TEMPFAIL:
		s->lines.max = s->cfg->limits.max_line_length;
		session_reply(s, "%s", r->reply);
		session_enter_phase(s, SESSION_PHASE_PREAUTH);
		break;
	case SESSION_AUTH_FAILED:
		s->lines.max = s->cfg->limits.max_line_length;
		session_enter_phase(s, SESSION_PHASE_AUTH_DELAY);
		if (r->delay_ms > 0) {
			session_timer_start(s, r->delay_ms);
			return;
		}
		/* failure_delay = 0: answer now */
		session_auth_failure_answer(s);
		return;
	case SESSION_AUTH_OK:
		session_handover(s, r->user);
		return;
	}
	if (s->phase == SESSION_PHASE_PREAUTH) {
		session_idle_restart(s);
		session_resume(s);
	}
}

/* ---- the relay ---- */

static void session_relay_client_of(const struct session *s,
				    struct session_relay_client *c)
{
	const struct tls_conn *tls = session_io_tls(s->io);

	memset(c, 0, sizeof(*c));
	if (session_io_tls_active(s->io)) {
		c->tls_version = tls_conn_version(tls);
		c->tls_cipher = tls_conn_cipher(tls);
	}
}

static void session_relay_cmd(struct session *s, const struct smtp_cmd *cmd);

/* The EHLO/HELO that logged in implicitly goes to the backend now. */
static void session_implicit_relay_ehlo(struct session *s)
{
	size_t len = strlen(s->helo);
	char *args = xmemdup(s->helo, len); /* s->helo is replaced */
	struct smtp_cmd cmd = {
	    .verb = s->esmtp ? SMTP_VERB_EHLO : SMTP_VERB_HELO,
	    .verb_text = s->esmtp ? "EHLO" : "HELO",
	    .verb_len = 4,
	    .args = args,
	    .args_len = len,
	};

	session_relay_cmd(s, &cmd);
	free(args);
}

static void session_on_relay_ready(void *arg)
{
	struct session *s = arg;

	if (s->phase != SESSION_PHASE_HANDOVER)
		return;
	/* Hand-over complete: PAM and the backend both said yes. */
	session_auth_count(s->auth, METRICS_AUTH_OK);
	if (s->implicit == SESSION_IMPLICIT_PENDING) {
		session_enter_phase(s, SESSION_PHASE_AUTHENTICATED);
		s->implicit = SESSION_IMPLICIT_NONE;
		session_implicit_relay_ehlo(s);
		if (s->phase == SESSION_PHASE_ENDED)
			return;
	} else {
		session_reply(s, "235 2.7.0 Authentication successful");
		session_enter_phase(s, SESSION_PHASE_AUTHENTICATED);
	}
	session_idle_restart(s);
	session_resume(s);
	session_io_flush(s->io);
}

static void session_on_relay_unavailable(void *arg, const char *why)
{
	struct session *s = arg;
	char user[SANITIZE_BUFSIZE];
	const char *name = session_relay_user(s->relay);

	if (s->phase != SESSION_PHASE_HANDOVER)
		return;
	/* The client stays and may try again. */
	session_auth_count(s->auth, METRICS_AUTH_BACKEND_UNAVAILABLE);
	log_info(s->sid,
		 "event=auth_tempfail ip=%s user=\"%s\" "
		 "reason=backend_unavailable backend=%s tried=%u "
		 "error=\"%s\"",
		 s->ip, sanitize(user, sizeof(user), name, strlen(name)),
		 session_relay_backend(s->relay), session_relay_tried(s->relay),
		 why);
	/* The relay's last act was this call: it may go. */
	session_relay_destroy(s->relay);
	s->relay = NULL;
	/* RFC 4954 §6: 454 4.7.0 is the temporary server failure in answer
	 * to AUTH, and the session stays open for the client to try again
	 * (a 421 would close it).  The words are for the user: "temporary
	 * authentication failure" after a right password made people doubt
	 * it.  Only a right password comes here, and the 235 would have
	 * told it just the same, so saying "accepted" gives nothing away. */
	if (s->implicit == SESSION_IMPLICIT_PENDING) {
		session_implicit_failed(s, true);
		session_io_flush(s->io);
		return;
	}
	session_reply(s, "454 4.7.0 Login accepted, but the mail service is "
			 "temporarily unavailable; try again later");
	session_enter_phase(s, SESSION_PHASE_PREAUTH);
	session_idle_restart(s);
	session_resume(s);
	session_io_flush(s->io);
}

static void session_on_relay_data_reply(void *arg, bool go)
{
	struct session *s = arg;

	if (s->phase != SESSION_PHASE_DATA_WAIT)
		return;
	if (!go) {
		session_enter_phase(s, SESSION_PHASE_AUTHENTICATED);
		return;
	}
	if (s->client_done) {
		/* The client left before sending the message: the backend
		 * gets no terminator and discards the transaction.  The close
		 * comes from the progress callback that follows (never from
		 * here: the relay goes on after this returns). */
		session_enter_phase(s, SESSION_PHASE_AUTHENTICATED);
		return;
	}
	session_enter_phase(s, SESSION_PHASE_DATA);
	session_io_set_bulk(s->io, true);
}

static void session_on_relay_message_done(void *arg, bool delivered)
{
	struct session *s = arg;

	/* Real work was done: junk is counted anew. */
	if (delivered)
		s->junk = 0;
}

static void session_on_relay_quit(void *arg)
{
	struct session *s = arg;

	session_close(s, "quit");
	session_io_flush(s->io);
}

static void session_on_relay_lost(void *arg)
{
	struct session *s = arg;

	if (s->phase == SESSION_PHASE_ENDED)
		return;
	/* In last_reply the session's last word is already queued (and
	 * went out behind the 451). */
	if (s->phase != SESSION_PHASE_LAST_REPLY)
		session_reply(s,
			      "421 4.4.2 %s Backend connection lost, closing "
			      "connection",
			      s->cfg->server.hostname);
	session_close(s, "backend lost");
	session_io_flush(s->io);
}

/* A reply went out or the backend caught up. */
static void session_on_relay_progress(void *arg)
{
	struct session *s = arg;

	if (s->phase == SESSION_PHASE_ENDED)
		return;
	if (s->phase == SESSION_PHASE_LAST_REPLY &&
	    !session_relay_owes_message(s->relay)) {
		/* The message's reply went out (and was logged): now. */
		session_close(s, s->close_reason);
	} else if (s->client_done && !session_relay_owes(s->relay) &&
		   s->phase != SESSION_PHASE_DATA_WAIT) {
		/* Everything the client sent before it left is answered. */
		session_close(s, s->close_reason);
	} else {
		session_resume(s);
	}
	session_io_flush(s->io);
}

static const struct session_relay_callbacks session_relay_callbacks = {
    .ready = session_on_relay_ready,
    .unavailable = session_on_relay_unavailable,
    .data_reply = session_on_relay_data_reply,
    .message_done = session_on_relay_message_done,
    .quit = session_on_relay_quit,
    .lost = session_on_relay_lost,
    .progress = session_on_relay_progress,
};

/* PAM said yes: DESIGN.md, 235 only once the backend said yes too. */
static void session_handover(struct session *s, const char *user)
{
	struct session_relay_env env = {
	    .loop = s->env->loop,
	    .cfg = s->cfg,
	    .shared = s->env->shared,
	    .policy = s->env->policy,
	    .sendermap = &s->env->sendermap,
	    .replies = &s->replies,
	    .data_buf = s->env->data_buf,
	    .data_chunk = s->env->data_chunk,
	    .sid = s->sid,
	    .ip = s->ip,
	    .port = s->port,
	    .cb = &session_relay_callbacks,
	    .arg = s,
	};

	session_enter_phase(s, SESSION_PHASE_HANDOVER);
	s->relay = session_relay_create(&env, user, s->helo);
}

static void session_relay_cmd(struct session *s, const struct smtp_cmd *cmd);

/* A MAIL held for the send counts is dropped: its answer must not bring
 * a closing session back to relaying. */
static void session_drop_held_mail(struct session *s)
{
	policy_cancel(s->send_req);
	s->send_req = NULL;
	free(s->held_mail);
	s->held_mail = NULL;
}

/* The held MAIL goes on, its counts known. */
static void session_on_send_counts(void *arg,
				   const struct policy_send_counts *c)
{
	struct session *s = arg;
	struct smtp_cmd cmd = {
	    .verb = SMTP_VERB_MAIL,
	    .verb_text = "MAIL",
	    .verb_len = 4,
	    .args = s->held_mail,
	    .args_len = s->held_mail_len,
	};

	s->send_req = NULL;
	if (s->phase != SESSION_PHASE_POLICY_WAIT) {
		/* Never: closing cancels the request. */
		free(s->held_mail);
		s->held_mail = NULL;
		return;
	}
	session_enter_phase(s, SESSION_PHASE_AUTHENTICATED);
	session_relay_send_limits(s->relay, &s->held_limits, c);
	session_relay_cmd(s, &cmd);
	free(s->held_mail);
	s->held_mail = NULL;
	if (s->phase == SESSION_PHASE_ENDED)
		return;
	session_io_flush(s->io);
	session_resume(s);
}

/* Before a MAIL: the login's send limits, and when one is on, what it
 * has sent in their windows.  True when the MAIL waits for the store
 * (the session takes no input meanwhile, so pipelined commands keep
 * their order). */
static bool session_send_gate(struct session *s, const struct smtp_cmd *cmd)
{
	const char *user = session_relay_user(s->relay);
	struct user_send_limits lim;
	struct policy_send_counts c;

	userlimits_get(s->env->userlimits, s->cfg, user, strlen(user), &lim);
	if (lim.messages_per_hour == 0 && lim.recipients_per_hour == 0 &&
	    lim.recipients_per_day == 0) {
		session_relay_send_limits(s->relay, &lim, NULL);
		return false;
	}
	s->send_req = policy_send_counts(s->env->policy, s->cfg, user,
					 strlen(user), &c,
					 session_on_send_counts, s);
	if (s->send_req == NULL) {
		session_relay_send_limits(s->relay, &lim, &c);
		return false;
	}
	s->held_limits = lim;
	s->held_mail = xmemdup(cmd->args, cmd->args_len);
	s->held_mail_len = cmd->args_len;
	session_enter_phase(s, SESSION_PHASE_POLICY_WAIT);
	return true;
}

/* A command after AUTH, which the table said to relay. */
/* Whether a relay refusal came from the policy (a send limit, the
 * store), not from the client's command. */
static bool session_policy_refusal(const char *reason)
{
	if (reason == NULL)
		return false;
	for (int i = 0; i < POLICY_LIMIT_COUNT; i++)
		if (strcmp(reason, policy_limit_name(i)) == 0)
			return true;
	return strcmp(reason, "policy_store") == 0;
}

static void session_relay_cmd(struct session *s, const struct smtp_cmd *cmd)
{
	struct session_relay_client client;
	const char *reason;
	char refusal[600], text[SANITIZE_BUFSIZE];

	session_relay_client_of(s, &client);
	if (session_relay_command(s->relay, cmd, &client, refusal,
				  sizeof(refusal),
				  &reason) == SESSION_RELAY_REFUSED) {
		if (session_policy_refusal(reason)) {
			/* A send limit is no client error: a client with
			 * more recipients than its limit has left gets a
			 * 451 for each of the rest (max_recipients bounds
			 * them), not a 421 at max_errors. */
			const char *user = session_relay_user(s->relay);
			char reply[SANITIZE_BUFSIZE];

			session_reply(s, "%s", refusal);
			log_info(s->sid,
				 "event=reject ip=%s cmd=%s reason=%s "
				 "user=\"%s\" reply=\"%s\"",
				 s->ip, smtp_verb_name(cmd->verb), reason,
				 sanitize(text, sizeof(text), user,
					  strlen(user)),
				 sanitize(reply, sizeof(reply), refusal,
					  strlen(refusal)));
			return;
		}
		session_refuse_why(s, cmd->verb, reason, refusal);
		return;
	}
	switch (cmd->verb) {
	case SMTP_VERB_DATA:
		/* Nothing more is read as a command until the backend has
		 * answered: 354 makes what follows message bytes. */
		session_enter_phase(s, SESSION_PHASE_DATA_WAIT);
		break;
	case SMTP_VERB_QUIT:
		/* Nothing after QUIT reaches the backend. */
		session_enter_phase(s, SESSION_PHASE_QUIT);
		break;
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		free(s->helo);
		s->helo = xmemdup(cmd->args, cmd->args_len);
		s->helo_after_auth = true;
		break;
	default:
		break;
	}
}

/* ---- the dispatcher ---- */

static void session_command(struct session *s, const char *line, size_t len)
{
	struct session_cmd_verdict verdict;
	struct session_cmd_env env;
	struct smtp_cmd cmd;
	char text[SANITIZE_BUFSIZE];

	if (s->draining) {
		/* Stopping: a new command is not started. */
		session_reply(s, "421 4.3.2 %s Service shutting down",
			      s->cfg->server.hostname);
		session_close(s, "shutting down");
		return;
	}
	switch (smtp_cmd_parse(line, len, &cmd)) {
	case SMTP_CMD_EMPTY:
		session_refuse(s, SMTP_VERB_UNKNOWN,
			       "500 5.5.2 Error: bad syntax");
		return;
	case SMTP_CMD_BAD_CHAR:
		session_refuse(s, SMTP_VERB_UNKNOWN,
			       "500 5.5.2 Invalid character in command");
		return;
	case SMTP_CMD_OK:
		break;
	}
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		/* Arguments may hold AUTH secrets: log the verb only. */
		log_debug(
		    s->sid, "event=command verb=\"%s\"",
		    sanitize(text, sizeof(text), cmd.verb_text, cmd.verb_len));
	}
	env = (struct session_cmd_env){
	    .authenticated = session_authenticated(s),
	    .tls = session_io_tls_active(s->io),
	    .starttls_offered =
		s->listener->mode == LISTENER_STARTTLS && s->env->tls != NULL,
	    .tls_required = s->listener->mode == LISTENER_STARTTLS &&
			    s->listener->require_tls &&
			    !session_io_tls_active(s->io),
	    .esmtp = s->esmtp,
	    .helo_seen =
		session_authenticated(s) ? s->helo_after_auth : s->helo != NULL,
	    .auth_offered = session_auth_offered(s),
	};
	session_cmd_check(&env, &cmd, &verdict);
	if (verdict.action == SESSION_CMD_REFUSE) {
		session_refuse(s, cmd.verb, verdict.reply);
		return;
	}
	if (verdict.junk && s->cfg->limits.max_junk_commands > 0 &&
	    ++s->junk > s->cfg->limits.max_junk_commands) {
		/* Postfix's smtpd_junk_command_limit: a client that only
		 * keeps the connection busy. */
		log_info(
		    s->sid,
		    "event=reject ip=%s cmd=%s reason=too_many_junk_commands",
		    s->ip, smtp_verb_name(cmd.verb));
		session_reply(s, "421 4.7.0 %s Error: too many junk commands",
			      s->cfg->server.hostname);
		session_close(s, "too many junk commands");
		return;
	}
	if (verdict.action == SESSION_CMD_RELAY) {
		if (cmd.verb == SMTP_VERB_MAIL && session_send_gate(s, &cmd))
			return;
		session_relay_cmd(s, &cmd);
	} else
		session_local_handlers[cmd.verb](s, &cmd);
}

/* ---- input ---- */

/* Whether input lines are taken now; otherwise they wait, parked. */
static bool session_taking_input(const struct session *s)
{
	return s->phase == SESSION_PHASE_PREAUTH ||
	       s->phase == SESSION_PHASE_AUTH_INPUT ||
	       s->phase == SESSION_PHASE_AUTHENTICATED ||
	       s->phase == SESSION_PHASE_DATA;
}

/* The index of the session's [listener], for the metrics' labels (the
 * listener sections of every configuration mirror the first one's,
 * session_accept()). */
static size_t session_listener_index(const struct session *s)
{
	return (size_t)(s->listener - s->cfg->listeners);
}

static void session_early_talker(struct session *s)
{
	metrics_conn_refused(session_listener_index(s),
			     METRICS_REFUSED_EARLY_TALKER);
	log_info(s->sid, "event=reject ip=%s reason=early_talker", s->ip);
	session_reply(s,
		      "554 5.5.1 %s Protocol error: talking before the "
		      "greeting",
		      s->cfg->server.hostname);
	session_close(s, "early talker");
}

/* Whether this listener's handshakes ask for a client certificate. */
static enum tls_client_certs session_client_certs(const struct session *s)
{
	switch (s->listener->client_certificates) {
	case CLIENT_CERTS_REQUIRED:
		return TLS_CLIENT_CERTS_REQUIRED;
	case CLIENT_CERTS_OPTIONAL:
		return TLS_CLIENT_CERTS_OPTIONAL;
	case CLIENT_CERTS_OFF:
	default:
		return TLS_CLIENT_CERTS_OFF;
	}
}

/* STARTTLS was answered; rest: client bytes after its line. */
static void session_starttls(struct session *s, size_t rest)
{
	s->starttls = false;
	if (rest > 0 || linebuf_has_partial(&s->lines)) {
		/* CVE-2011-0411: bytes pipelined after STARTTLS were sent in
		 * the clear and would be taken as coming from inside TLS.
		 * RFC 3207 §4.2 says to discard all knowledge from before
		 * TLS; a client that does this is broken or hostile, so the
		 * connection is dropped instead. */
		log_info(s->sid,
			 "event=reject ip=%s reason=starttls_injection "
			 "bytes=%zu",
			 s->ip, rest + s->lines.len);
		session_close(s, "plaintext after STARTTLS");
		return;
	}
	/* Everything learnt before TLS is forgotten (RFC 3207 §4.2). */
	session_reset_helo(s);
	linebuf_reset(&s->lines);
	session_enter_phase(s, SESSION_PHASE_HANDSHAKE);
	session_io_start_tls(s->io, s->env->tls, session_client_certs(s), NULL,
			     0);
}

/* Runs the input in data[0..len) while the session takes it; returns how
 * much it took. */
static size_t session_process(struct session *s, char *data, size_t len)
{
	size_t off = 0;

	while (off < len && session_taking_input(s)) {
		const char *line;
		size_t line_len, used;
		bool secret;

		if (s->phase == SESSION_PHASE_DATA) {
			/* Message bytes: not lines, never buffered. */
			bool done = false;
			size_t took;

			if (session_relay_busy(s->relay)) {
				/* The backend is slower than the client: this
				 * input waits, parked, and reading stops until
				 * the backend has taken its queue (otherwise
				 * each TLS record would be taken whole and the
				 * queue toward the backend grow without
				 * bound). */
				break;
			}
			took = session_relay_data(s->relay, data + off,
						  len - off, &done);

			off += took;
			if (took > 0)
				session_idle_restart(s); /* DATA progress */
			if (done) {
				session_io_set_bulk(s->io, false);
				session_enter_phase(
				    s, SESSION_PHASE_AUTHENTICATED);
			} else if (took == 0 || session_relay_busy(s->relay)) {
				break; /* the backend is slower */
			}
			continue;
		}
		if (session_over_limits(s)) {
			/* A client that pipelines without reading, or faster
			 * than the backend answers. */
			session_io_flush(s->io);
			break;
		}
		secret = s->phase == SESSION_PHASE_AUTH_INPUT;
		switch (linebuf_next(&s->lines, data + off, len - off, &used,
				     &line, &line_len)) {
		case LINEBUF_LINE:
			session_idle_restart(s); /* a whole command */
			if (secret) {
				struct session_auth_result r;

				session_auth_response(s->auth, line, line_len,
						      &r);
				session_auth_answer(s, &r);
			} else {
				secret = line_len >= 4 &&
					 strncasecmp(line, "AUTH", 4) == 0;
				session_command(s, line, line_len);
			}
			if (secret) {
				/* Dovecot's smtp_command_parser_clear: the
				 * line lies in our buffer (the loop's read
				 * buffer, TLS's, or the partial line's), and
				 * its end in this input. */
				explicit_bzero((char *)line, line_len);
				explicit_bzero(data + off, used);
			}
			break;
		case LINEBUF_TOO_LONG:
			if (secret) {
				session_auth_abort(s->auth);
				s->lines.max = s->cfg->limits.max_line_length;
				session_enter_phase(s, SESSION_PHASE_PREAUTH);
			}
			session_refuse(s, SMTP_VERB_UNKNOWN,
				       "500 5.5.6 Line too long");
			break;
		case LINEBUF_NEED_MORE:
			/* The start of a line, copied into the line buffer
			 * (which wipes it): it may be an AUTH's. */
			explicit_bzero(data + off, used);
			break;
		}
		off += used;
		if (s->starttls) {
			session_starttls(s, len - off);
			return len;
		}
	}
	if (s->phase >= SESSION_PHASE_QUIT)
		return len; /* nothing after QUIT (or a close) is read */
	return off;
}

/* ---- PROXY protocol ---- */

static void session_admit(struct session *s, const char *leftover,
			  size_t leftover_len);
static void session_set_peer(struct session *s,
			     const struct sockaddr_storage *sa);

/* Bytes on a proxy_protocol listener before the header is complete.  The
 * header comes from our own load balancer: anything else is dropped. */
static size_t session_proxy_input(struct session *s, const char *data,
				  size_t len)
{
	struct proxyproto_info info;
	enum proxyproto_result r;
	size_t take = PROXYPROTO_V2_MAX - s->proxy_len, consumed = 0;
	size_t before, rest_off;
	char orig[sizeof(s->ip)];

	if (take > len)
		take = len;
	memcpy(s->proxy_buf + s->proxy_len, data, take);
	s->proxy_len += take;
	r = proxyproto_parse(s->proxy_buf, s->proxy_len, &info, &consumed);
	if (r == PROXYPROTO_INCOMPLETE && s->proxy_len < PROXYPROTO_V2_MAX)
		return len;
	before = s->proxy_len - take;
	free(s->proxy_buf);
	s->proxy_buf = NULL;
	s->proxy_len = 0;
	/* The parser stops at the header's end, which the earlier reads
	 * had not reached. */
	if (r != PROXYPROTO_OK || consumed < before) {
		metrics_conn_refused(session_listener_index(s),
				     METRICS_REFUSED_PROXY_ERROR);
		log_info(s->sid, "event=reject ip=%s reason=bad_proxy_header",
			 s->ip);
		s->close_reason = "bad PROXY header";
		session_destroy(s);
		return len;
	}
	snprintf(orig, sizeof(orig), "%s", s->ip);
	if (info.has_addr)
		session_set_peer(s, &info.src);
	log_info(s->sid, "event=proxy ip=%s port=%u via=%s version=%d", s->ip,
		 s->port, orig, info.version);
	/* What followed the header in this read is the client's. */
	rest_off = consumed - before;
	session_admit(s, data + rest_off, len - rest_off);
	return len;
}

/* ---- connection events ---- */

static size_t session_on_input(void *arg, char *data, size_t len)
{
	struct session *s = arg;

	switch (s->phase) {
	case SESSION_PHASE_PROXY:
		return session_proxy_input(s, data, len);
	case SESSION_PHASE_GREETING:
		session_early_talker(s);
		return len;
	case SESSION_PHASE_PREAUTH:
	case SESSION_PHASE_AUTH_INPUT:
	case SESSION_PHASE_AUTHENTICATED:
	case SESSION_PHASE_DATA: {
		size_t taken;

		/* What this read sends the backend (a pipelined group, a
		 * message's chunks and its dot) leaves in one write.  The
		 * relay may be gone or new by the end: uncorking the one
		 * there is then is all it takes (a new one was never
		 * corked, a destroyed one's bytes went with it). */
		session_relay_cork(s->relay);
		taken = session_process(s, data, len);
		session_relay_uncork(s->relay);
		return taken;
	}
	case SESSION_PHASE_AUTH_WAIT:
	case SESSION_PHASE_AUTH_DELAY:
	case SESSION_PHASE_HANDOVER:
	case SESSION_PHASE_POLICY_WAIT:
	case SESSION_PHASE_DATA_WAIT:
		return 0;	      /* parked until the reply it waits for */
	case SESSION_PHASE_HANDSHAKE: /* TLS hands over nothing before */
	case SESSION_PHASE_QUIT:
	case SESSION_PHASE_LAST_REPLY:
	case SESSION_PHASE_ENDED:
	case SESSION_PHASE_COUNT:
		break;
	}
	return len;
}

/* The client sends no more.  Whatever it sent whole is still answered:
 * once a message's terminator went to the backend, its reply is waited
 * for (up to [backend] timeout), given to a client that still reads
 * (half-close), and logged in every case. */
static void session_on_eof(void *arg, bool tls)
{
	struct session *s = arg;
	const char *reason = tls ? "client closed TLS" : "client closed";

	if (s->close_reason == NULL)
		s->close_reason = reason;
	if (session_authenticated(s) && s->phase != SESSION_PHASE_DATA &&
	    s->relay != NULL && session_relay_owes(s->relay)) {
		s->client_done = true;
		/* The relay's timeout bounds the wait, not idle_timeout. */
		uv_timer_stop(&s->timer);
		return;
	}
	if (s->phase == SESSION_PHASE_QUIT)
		return; /* the backend's 221 ends it */
	session_close(s, reason);
}

/* ---- handshake results: the event=tls and event=tls_fail lines, and
 * their counters ---- */

static enum metrics_tls_failure session_tls_failure_metric(enum tls_failure f)
{
	switch (f) {
	case TLS_FAILURE_NO_SHARED_CIPHER:
		return METRICS_TLS_FAIL_NO_SHARED_CIPHER;
	case TLS_FAILURE_PROTOCOL_VERSION:
		return METRICS_TLS_FAIL_PROTOCOL_VERSION;
	case TLS_FAILURE_ALPN:
		return METRICS_TLS_FAIL_ALPN;
	case TLS_FAILURE_CERTIFICATE_REQUIRED:
		return METRICS_TLS_FAIL_CERTIFICATE_REQUIRED;
	case TLS_FAILURE_BAD_CERTIFICATE:
		return METRICS_TLS_FAIL_BAD_CERTIFICATE;
	case TLS_FAILURE_SERVER_CERTIFICATE_REFUSED:
		return METRICS_TLS_FAIL_SERVER_CERTIFICATE_REFUSED;
	case TLS_FAILURE_NOT_TLS:
		return METRICS_TLS_FAIL_NOT_TLS;
	case TLS_FAILURE_CLOSED:
		return METRICS_TLS_FAIL_CLOSED;
	case TLS_FAILURE_NONE:
	case TLS_FAILURE_OTHER:
	case TLS_FAILURE_COUNT:
		break;
	}
	return METRICS_TLS_FAIL_OTHER;
}

/* A handshake that failed (reason: a tls_failure_name() token, or
 * "timeout"; detail: the words for it).  Always counted; logged as one
 * event=tls_fail line, at most one per client prefix per window and a
 * budget of lines per loop per window where the loop has a limiter
 * (env->tls_fail_log), so that a scanner cannot flood the log: the next
 * line that gets through says how many were held back (suppressed=N: its
 * prefix's, and the loop's over its budget, any prefix's). */
static void session_tls_failed(struct session *s, const char *reason,
			       enum metrics_tls_failure why, const char *detail)
{
	const struct tls_conn *tls = session_io_tls(s->io);
	enum metrics_tls_version client_max = metrics_tls_version_wire(
	    tls != NULL ? tls_conn_client_max_version(tls) : 0);
	char detail_text[SANITIZE_BUFSIZE];
	char suppressed_text[40] = "";
	uint64_t suppressed = 0, held = 0;
	const void *key = s->ip;
	size_t key_len = strlen(s->ip);

	metrics_tls_failed(session_listener_index(s), why, client_max);
	if (s->env->tls_fail_log != NULL) {
		/* The prefix the per-address limits count (a /64 is one
		 * IPv6 client), else the address as text. */
		if (s->addr != NULL) {
			key = &s->paddr.key;
			key_len = sizeof(s->paddr.key);
		}
		if (!logratelimit_allow(s->env->tls_fail_log, key, key_len,
					uv_now(s->env->loop), &suppressed))
			return;
		held = logratelimit_take_held(s->env->tls_fail_log);
	}
	if (suppressed > 0 || held > 0)
		snprintf(suppressed_text, sizeof(suppressed_text),
			 " suppressed=%" PRIu64, suppressed + held);
	sanitize(detail_text, sizeof(detail_text), detail, strlen(detail));
	log_info(s->sid,
		 "event=tls_fail ip=%s listener=%s reason=%s "
		 "client_max_version=%s detail=\"%s\"%s",
		 s->ip, s->listener->name, reason,
		 metrics_tls_version_name(client_max), detail_text,
		 suppressed_text);
}

/* A handshake done: the counters by version, cipher, group and SNI, and
 * how far a client certificate got (the getters report a certificate's
 * subject and fingerprint only when it verified, its verify error when
 * it did not: presented is either). */
static void session_tls_count(const struct session *s,
			      const struct tls_conn *tls)
{
	size_t listener = session_listener_index(s);
	bool verified = tls_conn_peer_sha256(tls) != NULL ||
			tls_conn_peer_subject(tls) != NULL;
	enum metrics_sni sni = METRICS_SNI_UNMATCHED;

	if (tls_conn_sni(tls) == NULL)
		sni = METRICS_SNI_ABSENT;
	else if (tls_conn_sni_matched(tls))
		sni = METRICS_SNI_MATCHED;
	metrics_tls_ok(listener, tls_conn_version(tls), tls_conn_cipher(tls),
		       tls_conn_group(tls), sni);
	if (verified || tls_conn_peer_error(tls) != NULL)
		metrics_tls_client_cert(listener, METRICS_CERT_PRESENTED);
	if (verified)
		metrics_tls_client_cert(listener, METRICS_CERT_VERIFIED);
	if (tls_conn_peer_login(tls, NULL) != NULL)
		metrics_tls_client_cert(listener, METRICS_CERT_MAPPED);
}

static void session_on_handshake_done(void *arg)
{
	struct session *s = arg;
	const struct tls_conn *tls = session_io_tls(s->io);
	const char *subject = tls_conn_peer_subject(tls);
	const char *sni = tls_conn_sni(tls);
	const char *sha256 = tls_conn_peer_sha256(tls);
	const char *cert_error = tls_conn_peer_error(tls);
	int rule = 0;
	const char *login = tls_conn_peer_login(tls, &rule);
	char sni_text[SANITIZE_BUFSIZE];
	char subject_text[SANITIZE_BUFSIZE];
	char cert[2 * SANITIZE_BUFSIZE + 128];

	/* The certificate's part: what it is and what it logs in as when it
	 * verified (sha256 is what a client_cert_map rule names), why not
	 * when it did not. */
	{
		char login_text[SANITIZE_BUFSIZE];
		char rule_text[32] = "";

		if (login != NULL)
			snprintf(rule_text, sizeof(rule_text), " cert_rule=%d",
				 rule);
		snprintf(cert, sizeof(cert),
			 "%s%s cert_login=\"%s\"%s cert_error=\"%s\"",
			 sha256 != NULL ? " cert_sha256=" : "",
			 sha256 != NULL ? sha256 : "",
			 login != NULL ? sanitize(login_text, sizeof(login_text),
						  login, strlen(login))
				       : "",
			 rule_text, cert_error != NULL ? cert_error : "");
	}
	session_tls_count(s, tls);
	log_info(s->sid,
		 "event=tls ip=%s version=%s cipher=%s group=%s sni=\"%s\" "
		 "sni_match=%s resumed=%s client_cert=\"%s\"%s",
		 s->ip, tls_conn_version(tls), tls_conn_cipher(tls),
		 tls_conn_group(tls),
		 sni ? sanitize(sni_text, sizeof(sni_text), sni, strlen(sni))
		     : "",
		 sni == NULL		     ? "none"
		 : tls_conn_sni_matched(tls) ? "yes"
					     : "no",
		 tls_conn_resumed(tls) ? "yes" : "no",
		 subject ? sanitize(subject_text, sizeof(subject_text), subject,
				    strlen(subject))
			 : "",
		 cert);
	if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
		/* RFC 8314 §3.3: the greeting comes after the handshake. */
		session_greet(s);
	} else {
		/* RFC 3207 §4.2: no greeting; the client starts with EHLO. */
		session_enter_phase(s, SESSION_PHASE_PREAUTH);
		session_idle_restart(s);
	}
}

static void session_on_drained(void *arg)
{
	struct session *s = arg;

	session_resume(s);
	session_io_flush(s->io);
}

static void session_on_io_failed(void *arg, enum session_io_error error,
				 const char *why)
{
	struct session *s = arg;

	switch (error) {
	case SESSION_IO_TLS_ERROR:
		if (s->phase == SESSION_PHASE_HANDSHAKE) {
			enum tls_failure f =
			    tls_conn_failure(session_io_tls(s->io));

			if (f == TLS_FAILURE_NONE)
				f = TLS_FAILURE_OTHER;
			session_tls_failed(s, tls_failure_name(f),
					   session_tls_failure_metric(f), why);
			/* A FIN in the handshake: what the disconnect line
			 * said for it before it counted as a failure. */
			if (f == TLS_FAILURE_CLOSED && s->close_reason == NULL)
				s->close_reason = "client closed";
		} else {
			log_info(s->sid,
				 "event=tls_error ip=%s state=%s reason=\"%s\"",
				 s->ip, session_phase_names[s->phase], why);
		}
		/* Let the alert OpenSSL queued reach the client. */
		session_close(s, "TLS error");
		return;
	case SESSION_IO_WRITE_ERROR:
		if (s->close_reason == NULL)
			s->close_reason = "write error";
		/* A reset met while writing the server's flight. */
		if (s->phase == SESSION_PHASE_HANDSHAKE &&
		    session_io_tls(s->io) != NULL &&
		    tls_conn_client_max_version(session_io_tls(s->io)) != 0)
			session_tls_failed(s, "closed", METRICS_TLS_FAIL_CLOSED,
					   why);
		break;
	case SESSION_IO_READ_ERROR:
		if (s->close_reason == NULL)
			s->close_reason = why;
		/* A reset after the ClientHello is a handshake the client
		 * gave up on, as a FIN there is (tls_conn_eof()). */
		if (s->phase == SESSION_PHASE_HANDSHAKE &&
		    session_io_tls(s->io) != NULL &&
		    tls_conn_client_max_version(session_io_tls(s->io)) != 0)
			session_tls_failed(s, "closed", METRICS_TLS_FAIL_CLOSED,
					   why);
		break;
	}
	if (s->relay != NULL && session_relay_owes_message(s->relay)) {
		/* The client is gone, the message may not be: its reply is
		 * still waited for and logged, then the session ends.  A MAIL
		 * it held for the send counts goes nowhere. */
		session_drop_held_mail(s);
		s->client_done = true;
		uv_timer_stop(&s->timer);
		return;
	}
	session_destroy(s);
}

static void session_on_io_done(void *arg)
{
	session_destroy(arg);
}

static void session_on_handle_closed(uv_handle_t *h);

static void session_on_io_closed(void *arg)
{
	session_on_handle_closed(
	    (uv_handle_t *)&((struct session *)arg)->timer);
}

static const struct session_io_callbacks session_io_callbacks = {
    .input = session_on_input,
    .eof = session_on_eof,
    .handshake_done = session_on_handshake_done,
    .drained = session_on_drained,
    .failed = session_on_io_failed,
    .done = session_on_io_done,
    .closed = session_on_io_closed,
};

/* ---- timers ---- */

static void session_on_timer(uv_timer_t *t)
{
	struct session *s = t->data;

	switch (s->phase) {
	case SESSION_PHASE_PROXY:
		metrics_conn_refused(session_listener_index(s),
				     METRICS_REFUSED_PROXY_ERROR);
		log_info(s->sid,
			 "event=reject ip=%s reason=proxy_header_timeout",
			 s->ip);
		s->close_reason = "PROXY header timeout";
		session_destroy(s);
		return;
	case SESSION_PHASE_HANDSHAKE:
		session_tls_failed(s, "timeout", METRICS_TLS_FAIL_TIMEOUT,
				   "handshake timeout");
		s->close_reason = "TLS handshake timeout";
		session_destroy(s);
		return;
	case SESSION_PHASE_GREETING:
		session_reply(s, "220 %s ESMTP", s->cfg->server.hostname);
		session_enter_phase(s, SESSION_PHASE_PREAUTH);
		session_idle_restart(s);
		break;
	case SESSION_PHASE_AUTH_DELAY:
		/* The failure delay is over: answer the AUTH. */
		session_auth_failure_answer(s);
		break;
	case SESSION_PHASE_ENDED:
	case SESSION_PHASE_COUNT:
		return;
	default:
		log_info(s->sid, "event=timeout ip=%s state=%s", s->ip,
			 session_phase_names[s->phase]);
		session_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			      s->cfg->server.hostname);
		session_close(s, "idle timeout");
		break;
	}
	session_io_flush(s->io);
}

/* ---- life ---- */

static void session_close(struct session *s, const char *reason)
{
	static const char closing[] = "451 4.4.2 Connection closing\r\n";

	if (s->phase == SESSION_PHASE_ENDED || s->destroyed)
		return;
	if (s->close_reason == NULL || strcmp(reason, "quit") == 0)
		s->close_reason = reason;
	/* A MAIL held for the send counts is never relayed once closing,
	 * not even while a message's reply is still waited for. */
	session_drop_held_mail(s);
	if (s->relay != NULL && session_relay_owes_message(s->relay)) {
		/* A message's terminator went to the backend: the backend
		 * may deliver it, so its reply is waited for (up to
		 * [backend] timeout), answered in its place before the
		 * replies queued behind it, and logged; then the close.
		 * Answering 451 now would make the client send it again. */
		if (s->phase != SESSION_PHASE_LAST_REPLY)
			session_enter_phase(s, SESSION_PHASE_LAST_REPLY);
		return;
	}
	/* An answer from the helper or the policy store must not bring the
	 * session back. */
	session_auth_destroy(s->auth);
	s->auth = NULL;
	policy_cancel(s->send_req);
	s->send_req = NULL;
	/* Every owed reply is answered now, in order (relayed ones with a
	 * 451), so the client sees the last reply (a 421) where it
	 * belongs; the backend goes at once, without the terminator of a
	 * message in progress. */
	replyq_finish(&s->replies, closing, sizeof(closing) - 1);
	session_relay_destroy(s->relay);
	s->relay = NULL;
	session_enter_phase(s, SESSION_PHASE_ENDED);
	session_io_close(s->io);
}

static void session_on_handle_closed(uv_handle_t *h)
{
	struct session *s = h->data;

	if (--s->open_handles > 0)
		return;
	s->env->removed(s->env->owner, s);
	atomic_fetch_sub(&s->env->shared->sessions, 1);
	config_unref(s->cfg);
	linebuf_reset(&s->lines);
	replyq_clear(&s->replies);
	free(s->proxy_buf);
	free(s->helo);
	free(s->held_mail);
	free(s);
}

/* Ends the session now: logs it, releases its counts and closes its
 * handles; the memory goes in session_on_handle_closed. */
static void session_destroy(struct session *s)
{
	if (s->destroyed)
		return;
	s->destroyed = true;
	if (s->phase != SESSION_PHASE_ENDED)
		session_enter_phase(s, SESSION_PHASE_ENDED);
	session_auth_destroy(s->auth);
	s->auth = NULL;
	policy_cancel(s->send_req);
	s->send_req = NULL;
	/* Mid-DATA this closes the backend without the terminator: the
	 * backend discards the partial message. */
	session_relay_destroy(s->relay);
	s->relay = NULL;
	if (s->addr != NULL) {
		shared_addr_disconnect(s->env->shared, s->addr);
		s->addr = NULL;
	}
	metrics_session_closed(uv_now(s->env->loop) - s->start_ms);
	log_info(s->sid,
		 "event=disconnect ip=%s duration_ms=%llu bytes_in=%llu "
		 "bytes_out=%llu reason=\"%s\"",
		 s->ip,
		 (unsigned long long)(uv_now(s->env->loop) - s->start_ms),
		 (unsigned long long)session_io_bytes_in(s->io),
		 (unsigned long long)session_io_bytes_out(s->io),
		 s->close_reason ? s->close_reason : "closed");
	session_io_destroy(s->io);
	uv_close((uv_handle_t *)&s->timer, session_on_handle_closed);
}

/* Who the client is: from the socket, or from a PROXY header.  The
 * per-address count follows it. */
static void session_set_peer(struct session *s,
			     const struct sockaddr_storage *sa)
{
	const struct sockaddr_storage ss = *sa;

	if (s->addr != NULL) {
		shared_addr_disconnect(s->env->shared, s->addr);
		s->addr = NULL;
	}
	snprintf(s->ip, sizeof(s->ip), "unknown");
	s->port = 0;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		uv_ip4_name(sin, s->ip, sizeof(s->ip));
		s->port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)&ss;

		uv_ip6_name(sin6, s->ip, sizeof(s->ip));
		s->port = ntohs(sin6->sin6_port);
	}
	if (policy_addr_from(&s->paddr, (const struct sockaddr *)&ss,
			     s->cfg) == 0)
		s->addr = shared_addr_connect(s->env->shared, &s->paddr.key,
					      &s->addr_count);
}

/* The greeting, or with greeting_delay a pause first in which any client
 * input marks an early talker (as sendmail's greet_pause). */
static void session_greet(struct session *s)
{
	if (s->cfg->limits.greeting_delay_ms > 0) {
		session_enter_phase(s, SESSION_PHASE_GREETING);
		return;
	}
	session_reply(s, "220 %s ESMTP", s->cfg->server.hostname);
	session_enter_phase(s, SESSION_PHASE_PREAUTH);
	session_idle_restart(s);
}

/* A connection over a limit: a 421 in the clear, except on an implicit-TLS
 * listener, where the client's first bytes are a ClientHello and
 * plaintext would be a protocol error, not a reply: there it is closed
 * without a byte (cheaper, too, than a handshake for a client we refuse,
 * exactly when the server is busiest). */
static void session_refuse_connection(struct session *s, const char *reason,
				      enum metrics_refusal why,
				      const char *reply)
{
	metrics_conn_refused(session_listener_index(s), why);
	if (s->addr != NULL)
		/* The prefix the per-address counts key on. */
		log_info(s->sid, "event=reject ip=%s prefix=%s reason=%s",
			 s->ip, s->paddr.prefix, reason);
	else
		log_info(s->sid, "event=reject ip=%s reason=%s", s->ip, reason);
	if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
		s->close_reason = reason;
		session_destroy(s);
		return;
	}
	session_reply(s, "421 4.7.0 %s %s", s->cfg->server.hostname, reply);
	session_close(s, reason);
}

/* The client is known (socket or PROXY header): apply the connection
 * limits, then greet it or start TLS.  leftover: client bytes that came
 * with a PROXY header. */
static void session_admit(struct session *s, const char *leftover,
			  size_t leftover_len)
{
	const struct config_limits *lim = &s->cfg->limits;

	if (s->env->stopping) {
		metrics_conn_refused(session_listener_index(s),
				     METRICS_REFUSED_SHUTTING_DOWN);
		if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
			s->close_reason = "shutting down";
			session_destroy(s);
			return;
		}
		session_reply(s, "421 4.3.2 %s Service shutting down",
			      s->cfg->server.hostname);
		session_close(s, "shutting down");
	} else if (s->open_at_accept > lim->max_connections) {
		session_refuse_connection(s, "max_connections",
					  METRICS_REFUSED_MAX_CONNECTIONS,
					  "Too many connections");
	} else if (s->addr != NULL &&
		   s->addr_count > lim->max_connections_per_address) {
		session_refuse_connection(s, "max_connections_per_address",
					  METRICS_REFUSED_PER_ADDRESS,
					  "Too many connections from your "
					  "address");
	} else if (s->listener->mode != LISTENER_IMPLICIT_TLS &&
		   (leftover_len > 0 || session_io_input_pending(s->io))) {
		/* (With implicit TLS the client speaks first: its
		 * ClientHello.) */
		session_early_talker(s);
	} else if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
		session_enter_phase(s, SESSION_PHASE_HANDSHAKE);
		session_io_start_tls(s->io, s->env->tls,
				     session_client_certs(s), leftover,
				     leftover_len);
	} else {
		session_greet(s);
		session_io_read_start(s->io);
	}
	if (!s->destroyed)
		session_io_flush(s->io);
}

static void session_start(struct session *s)
{
	struct sockaddr_storage ss;

	session_io_peer(s->io, &ss);
	session_set_peer(s, &ss);
	metrics_conn_accepted(session_listener_index(s));
	log_info(s->sid, "event=connect ip=%s port=%u listener=%s worker=%u",
		 s->ip, s->port, s->listener->name, s->env->worker_index);
	if (s->listener->proxy_protocol && !s->env->stopping) {
		/* The real client's address comes first, before TLS. */
		s->proxy_buf = xmalloc(PROXYPROTO_V2_MAX);
		session_enter_phase(s, SESSION_PHASE_PROXY);
		session_io_read_start(s->io);
		return;
	}
	session_admit(s, NULL, 0);
}

void session_accept(const struct session_env *env, size_t listener, int fd)
{
	struct session *s = xcalloc(1, sizeof(*s));
	const char *error = NULL;

	s->env = env;
	s->cfg = config_ref(env->cfg);
	/* The listener sections of every configuration a reload installs
	 * mirror the first one's, index for index. */
	s->listener = &s->cfg->listeners[listener];
	s->start_ms = uv_now(env->loop);
	s->phase = SESSION_PHASE_GREETING; /* nothing is read before start */
	snprintf(s->sid, sizeof(s->sid), "%016llx",
		 (unsigned long long)shared_next_sid(env->shared));
	linebuf_init(&s->lines, s->cfg->limits.max_line_length);
	replyq_init(&s->replies, session_emit, s);
	uv_timer_init(env->loop, &s->timer);
	s->timer.data = s;
	/* The count this session saw, not a later reading: of two sessions
	 * arriving at once on two loops, only the one over the limit is. */
	s->open_at_accept = atomic_fetch_add(&env->shared->sessions, 1) + 1;
	env->added(env->owner, s);

	s->io = session_io_create(env->loop, fd, s->sid, env->read_buf,
				  env->read_buf_size, &session_io_callbacks, s,
				  &error);
	if (s->io == NULL) {
		log_warn(NULL, "event=accept_error error=\"%s\"", error);
		s->destroyed = true;
		s->open_handles = 1;
		uv_close((uv_handle_t *)&s->timer, session_on_handle_closed);
		return;
	}
	s->open_handles = 2; /* the timer, and the io */
	session_start(s);
}

/* Nothing in progress: no reply owed, no transaction, no exchange. */
static bool session_idle(const struct session *s)
{
	return (s->phase == SESSION_PHASE_HANDSHAKE ||
		s->phase == SESSION_PHASE_GREETING ||
		s->phase == SESSION_PHASE_PREAUTH ||
		s->phase == SESSION_PHASE_AUTH_INPUT ||
		s->phase == SESSION_PHASE_AUTHENTICATED) &&
	       replyq_owed(&s->replies) == 0 &&
	       (s->relay == NULL || !session_relay_owes(s->relay));
}

/* A draining session ends as soon as it is idle. */
static void session_drain_check(struct session *s)
{
	if (!s->draining || s->phase == SESSION_PHASE_ENDED || s->destroyed ||
	    !session_idle(s))
		return;
	if (s->phase != SESSION_PHASE_HANDSHAKE)
		session_reply(s, "421 4.3.2 %s Service shutting down",
			      s->cfg->server.hostname);
	session_close(s, "shutting down");
	session_io_flush(s->io);
}

void session_shutdown(struct session *s)
{
	if (s->phase == SESSION_PHASE_ENDED || s->destroyed)
		return;
	s->draining = true;
	session_drain_check(s);
}

void session_force_close(struct session *s)
{
	if (s->destroyed)
		return;
	/* Mid-DATA the backend is closed without the terminator: the message
	 * is not delivered and the client, seeing no reply, sends it again
	 * later.  Nothing is half-delivered. */
	s->close_reason = "shutdown timeout";
	session_destroy(s);
}
