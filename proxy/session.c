/*
 * session.c - the client side of one connection: accepting it under the
 * connection limits, the greeting, and the pre-authentication SMTP
 * dialogue the proxy speaks itself (DESIGN.md, "Pre-auth dialogue").
 *
 * Input path: uv_read lands in the worker's shared buffer; complete command
 * lines are handled in place (linebuf), each through the command table,
 * their replies appended to a small output buffer that is written once per
 * read.  Replies therefore leave in command order however the client
 * pipelines.  When the output toward a client that does not read passes
 * SESSION_WRITE_HIGH, the session stops reading and parks the unprocessed
 * input until the queue drains below SESSION_WRITE_LOW: memory per session
 * is bounded whatever the client does.
 */
#include "proxy/session.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/authclient.h"
#include "proxy/proxyproto.h"
#include "proxy/relay.h"
#include "proxy/session-private.h"
#include "proxy/shared.h"
#include "proxy/worker.h"
#include "tls/tls-conn.h"

const char *const session_state_names[] = {
	[SESSION_PROXY] = "proxy",
	[SESSION_HANDSHAKE] = "handshake",
	[SESSION_GREETING] = "greeting",
	[SESSION_COMMAND] = "command",
	[SESSION_AUTH_INPUT] = "auth_input",
	[SESSION_AUTH_WAIT] = "auth_wait",
	[SESSION_AUTH_DELAY] = "auth_delay",
	[SESSION_RELAY_CONNECT] = "relay_connect",
	[SESSION_DATA_WAIT] = "data_wait",
	[SESSION_DATA] = "data",
	[SESSION_DATA_DISCARD] = "data_discard",
	[SESSION_CLOSING] = "closing",
	[SESSION_LINGER] = "linger",
	[SESSION_CLOSED] = "closed",
};
static_assert(sizeof(session_state_names) / sizeof(session_state_names[0]) ==
		      SESSION_STATE_COUNT,
	      "one name per session state");

static void session_destroy(struct session *s);
static void session_read_start(struct session *s);
static void session_on_timer(uv_timer_t *t);
static void session_starttls(struct session *s, size_t leftover);
static void session_greet(struct session *s);
static void session_drain_check(struct session *s);
static void session_proxy_input(struct session *s, const char *data,
				size_t len);

/* ---- output ---- */

static void session_on_write(uv_write_t *req, int status)
{
	struct session_write *wr = (struct session_write *)req;
	struct session *s = wr->s;

	s->write_queued -= wr->len;
	if (status == 0)
		s->bytes_out += wr->len;
	free(wr);
	if (status < 0 && status != UV_ECANCELED) {
		if (s->state < SESSION_CLOSED) {
			s->close_reason = "write error";
			session_destroy(s);
		}
		return;
	}
	if (s->state == SESSION_CLOSING && s->write_queued == 0) {
		session_enter_state(s, SESSION_LINGER);
		return;
	}
	if (s->blocked && s->write_queued <= SESSION_WRITE_LOW) {
		/* The client read our replies: take up its parked input. */
		s->blocked = false;
		session_resume(s);
	}
}

/* Hands bytes to the socket; the copy lives until the write completes. */
static void session_send_raw(struct session *s, const char *data, size_t len)
{
	struct session_write *wr;
	uv_buf_t buf;
	int r;

	if (len == 0 || s->state >= SESSION_LINGER)
		return;
	wr = xmalloc(sizeof(*wr) + len);
	wr->s = s;
	wr->len = len;
	memcpy(wr->data, data, len);
	buf = uv_buf_init(wr->data, (unsigned)len);
	r = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &buf, 1,
		     session_on_write);
	if (r < 0) {
		free(wr);
		s->close_reason = "write error";
		session_destroy(s);
		return;
	}
	s->write_queued += len;
}

bool session_tls_active(const struct session *s)
{
	return s->tls != NULL && tls_conn_handshake_done(s->tls);
}

void session_flush(struct session *s)
{
	size_t len = s->out_len;

	if (len == 0)
		return;
	s->out_len = 0;
	if (s->tls != NULL) {
		/* Nothing is written in the clear once TLS has started; the
		 * handshake itself produces no replies. */
		if (session_tls_active(s) &&
		    tls_conn_write(s->tls, s->out, len) != TLS_OK) {
			log_info(s->sid, "event=tls_error ip=%s reason=\"%s\"",
				 s->ip, tls_conn_error(s->tls));
			session_destroy(s);
		}
	} else {
		session_send_raw(s, s->out, len);
	}
	if (s->out_cap > SESSION_OUT_FLUSH) {
		/* Keep idle sessions small: drop a buffer a big batch grew. */
		free(s->out);
		s->out = NULL;
		s->out_cap = 0;
	}
}

/* Appends one reply line; fmt carries no CRLF.  While relayed replies are
 * owed, a local one waits its turn in the reply queue. */
void session_reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	session_reply_raw(s, line, (size_t)n);
}

void session_reply_raw(struct session *s, const char *text, size_t len)
{
	if (s->state >= SESSION_CLOSING)
		return;
	if (s->slots_head != NULL) {
		/* Behind a reply the backend still owes (RFC 2920 order). */
		struct reply_slot *slot = xmalloc(sizeof(*slot) + len);

		memset(slot, 0, sizeof(*slot));
		slot->len = len;
		memcpy(slot->text, text, len);
		s->slots_tail->next = slot;
		s->slots_tail = slot;
		s->nslots++;
		return;
	}
	session_out_write(s, text, len);
}

void session_out_write(struct session *s, const char *text, size_t len)
{
	if (s->state >= SESSION_CLOSING)
		return;
	if (s->out_cap - s->out_len < len) {
		s->out_cap = s->out_len + len + 512;
		s->out = xrealloc(s->out, s->out_cap);
	}
	memcpy(s->out + s->out_len, text, len);
	s->out_len += len;
	if (s->out_len >= SESSION_OUT_FLUSH)
		session_flush(s);
}

/* A negative reply to a client command: logged, counted against
 * max_errors (Postfix's smtpd_hard_error_limit), and past the limit the
 * session ends with 421. */
void session_refuse(struct session *s, enum smtp_verb verb, const char *fmt,
		    ...)
{
	char reply[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reply, sizeof(reply), fmt, ap);
	va_end(ap);
	session_reply(s, "%s", reply);
	log_info(s->sid, "event=reject ip=%s cmd=%s reply=\"%s\"", s->ip,
		 smtp_verb_name(verb), reply);
	if (++s->errors >= s->cfg->limits.max_errors) {
		session_reply(s, "421 4.7.0 %s Error: too many errors",
			      s->cfg->server.hostname);
		log_info(s->sid, "event=reject ip=%s reason=too_many_errors",
			 s->ip);
		session_close(s, "too many errors");
	}
}

/* ---- the command table ---- */

static void session_reset_helo(struct session *s)
{
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
}

/* DESIGN.md: AUTH is offered only over TLS, unless the listener explicitly
 * allows plaintext authentication (meant for loopback testing). */
bool session_auth_offered(const struct session *s)
{
	return s->user == NULL &&
	       (session_tls_active(s) || s->listener->allow_plaintext_auth);
}

/* RFC 3207 §4: with require_tls, a STARTTLS listener refuses mail and
 * authentication commands until TLS is up. */
bool session_needs_starttls(const struct session *s)
{
	return s->listener->mode == LISTENER_STARTTLS &&
	       s->listener->require_tls && !session_tls_active(s);
}

static void cmd_ehlo(struct session *s, const struct smtp_cmd *cmd)
{
	const struct config *cfg = s->cfg;
	bool ehlo = cmd->verb == SMTP_VERB_EHLO;

	if (cmd->args_len == 0 || cmd->args_len > SESSION_HELO_MAX ||
	    memchr(cmd->args, ' ', cmd->args_len) != NULL) {
		session_refuse(s, cmd->verb, "501 5.5.4 Syntax: %s hostname",
			       ehlo ? "EHLO" : "HELO");
		return;
	}
	/* RFC 5321 §4.1.4: EHLO/HELO also resets any transaction. */
	session_reset_helo(s);
	s->helo = xmemdup(cmd->args, cmd->args_len);
	s->esmtp = ehlo;
	if (!ehlo) {
		session_reply(s, "250 %s", cfg->server.hostname);
		return;
	}
	{
		char lines[16][64];
		size_t n = 0;

		if (s->listener->mode == LISTENER_STARTTLS && s->tls == NULL)
			snprintf(lines[n++], sizeof(lines[0]), "STARTTLS");
		n += session_ehlo_caps(s, lines + n, 12);
		if (session_auth_offered(s))
			snprintf(lines[n++], sizeof(lines[0]), "AUTH%s%s",
				 cfg->auth.mechanisms & AUTH_MECH_PLAIN
					 ? " PLAIN"
					 : "",
				 cfg->auth.mechanisms & AUTH_MECH_LOGIN
					 ? " LOGIN"
					 : "");
		session_reply(s, "250%c%s", n > 0 ? '-' : ' ',
			      cfg->server.hostname);
		for (size_t i = 0; i < n; i++)
			session_reply(s, "250%c%s", i + 1 < n ? '-' : ' ',
				      lines[i]);
	}
}

static void cmd_starttls(struct session *s, const struct smtp_cmd *cmd)
{
	if (s->listener->mode != LISTENER_STARTTLS || s->w->tls == NULL) {
		session_refuse(s, cmd->verb, "502 5.5.1 Command not implemented");
		return;
	}
	if (s->tls != NULL) {
		session_refuse(s, cmd->verb, "503 5.5.1 TLS already active");
		return;
	}
	if (cmd->args_len != 0) {
		session_refuse(s, cmd->verb, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* The handshake starts once this batch of input has been looked at:
	 * session_process() stops here and session_starttls() checks that
	 * nothing followed the command. */
	s->starttls_pending = true;
}

static void cmd_auth_required(struct session *s, const struct smtp_cmd *cmd)
{
	if (session_needs_starttls(s)) {
		session_refuse(s, cmd->verb,
			       "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	session_refuse(s, cmd->verb, "530 5.7.0 Authentication required");
}

static void cmd_noop(struct session *s, const struct smtp_cmd *cmd)
{
	/* RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored. */
	session_reply(s, "250 2.0.0 OK");
}

static void cmd_rset(struct session *s, const struct smtp_cmd *cmd)
{
	if (cmd->args_len != 0) {
		session_refuse(s, cmd->verb, "501 5.5.4 Syntax: RSET");
		return;
	}
	session_reply(s, "250 2.0.0 OK");
}

static void cmd_quit(struct session *s, const struct smtp_cmd *cmd)
{
	if (cmd->args_len != 0) {
		session_refuse(s, cmd->verb, "501 5.5.4 Syntax: QUIT");
		return;
	}
	session_reply(s, "221 2.0.0 %s closing connection",
		      s->cfg->server.hostname);
	session_close(s, "quit");
}

static void cmd_help(struct session *s, const struct smtp_cmd *cmd)
{
	session_reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH NOOP "
			 "RSET QUIT HELP; MAIL RCPT DATA after AUTH");
}

static void cmd_not_implemented(struct session *s, const struct smtp_cmd *cmd)
{
	session_refuse(s, cmd->verb, "502 5.5.1 Command not implemented");
}

static void cmd_unknown(struct session *s, const struct smtp_cmd *cmd)
{
	session_refuse(s, cmd->verb, "500 5.5.1 Command unrecognized");
}

typedef void session_cmd_fn(struct session *s, const struct smtp_cmd *cmd);

/* Every verb and what the pre-auth dialogue does with it.  Nothing here
 * reaches a backend: before AUTH the proxy answers everything itself. */
static session_cmd_fn *const session_commands[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = cmd_unknown,
	[SMTP_VERB_EHLO] = cmd_ehlo,
	[SMTP_VERB_HELO] = cmd_ehlo,
	[SMTP_VERB_STARTTLS] = cmd_starttls,
	[SMTP_VERB_AUTH] = cmd_auth,
	[SMTP_VERB_MAIL] = cmd_auth_required,
	[SMTP_VERB_RCPT] = cmd_auth_required,
	[SMTP_VERB_DATA] = cmd_auth_required,
	[SMTP_VERB_BDAT] = cmd_auth_required,
	[SMTP_VERB_VRFY] = cmd_auth_required,
	[SMTP_VERB_EXPN] = cmd_auth_required,
	[SMTP_VERB_NOOP] = cmd_noop,
	[SMTP_VERB_RSET] = cmd_rset,
	[SMTP_VERB_QUIT] = cmd_quit,
	[SMTP_VERB_HELP] = cmd_help,
	[SMTP_VERB_ETRN] = cmd_not_implemented,
	[SMTP_VERB_TURN] = cmd_not_implemented,
	[SMTP_VERB_ATRN] = cmd_not_implemented,
	[SMTP_VERB_XCLIENT] = cmd_not_implemented,
	[SMTP_VERB_XFORWARD] = cmd_not_implemented,
};

static void session_command(struct session *s, const char *line, size_t len)
{
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
		/* Arguments may one day hold AUTH secrets: log the verb only. */
		log_debug(s->sid, "event=command verb=\"%s\"",
			  sanitize(text, sizeof(text), cmd.verb_text,
				   cmd.verb_len));
	}
	if (s->user != NULL)
		session_relay_command(s, &cmd);  /* after AUTH: the relay */
	else
		session_commands[cmd.verb](s, &cmd);
}

/* ---- input ---- */

bool session_over_limits(const struct session *s)
{
	return s->write_queued + s->out_len > SESSION_WRITE_HIGH ||
	       s->nslots >= SESSION_SLOTS_MAX ||
	       (s->relay != NULL &&
		relay_write_queued(s->relay) > RELAY_WRITE_HIGH);
}

/* Whether input lines are taken now; otherwise they wait, parked. */
static bool session_taking_input(const struct session *s)
{
	return (s->state == SESSION_COMMAND ||
		s->state == SESSION_AUTH_INPUT || s->state == SESSION_DATA ||
		s->state == SESSION_DATA_DISCARD) &&
	       !s->blocked && !s->starttls_pending;
}

static void session_free_parked(struct session *s)
{
	if (s->parked != NULL) {
		/* It may hold an AUTH response. */
		explicit_bzero(s->parked, s->parked_len);
		free(s->parked);
	}
	s->parked = NULL;
	s->parked_len = 0;
}

/* Keeps input that arrived while the session cannot take it, and stops
 * reading until session_resume(): what is held is at most one read's
 * worth beyond what was already there. */
static void session_park(struct session *s, const char *data, size_t len)
{
	if (len == 0)
		return;
	s->parked = xrealloc(s->parked, s->parked_len + len);
	memcpy(s->parked + s->parked_len, data, len);
	s->parked_len += len;
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->tcp);
		s->reading = false;
	}
}

/* Runs the input lines in data[0..len) while the session takes them, and
 * parks the rest. */
void session_process(struct session *s, const char *data, size_t len)
{
	size_t off = 0;

	while (off < len && session_taking_input(s)) {
		const char *line;
		size_t line_len, used;

		if (s->state == SESSION_DATA ||
		    s->state == SESSION_DATA_DISCARD) {
			/* Message bytes: not lines, never buffered. */
			off += session_data_input(s, data + off, len - off);
			continue;
		}
		if (session_over_limits(s)) {
			/* A client that pipelines without reading, or faster
			 * than the backend answers. */
			session_flush(s);
			s->blocked = true;
			break;
		}
		switch (linebuf_next(&s->lines, data + off, len - off, &used,
				     &line, &line_len)) {
		case LINEBUF_LINE:
			if (s->state == SESSION_AUTH_INPUT)
				session_sasl_line(s, line, line_len);
			else
				session_command(s, line, line_len);
			break;
		case LINEBUF_TOO_LONG:
			if (s->state == SESSION_AUTH_INPUT)
				session_sasl_abort(s);
			session_refuse(s, SMTP_VERB_UNKNOWN,
				       "500 5.5.6 Line too long");
			break;
		case LINEBUF_NEED_MORE:
			break;
		}
		off += used;
	}
	if (s->starttls_pending) {
		session_starttls(s, len - off);
		return;
	}
	if (off < len && s->state < SESSION_CLOSING)
		session_park(s, data + off, len - off);
}

/* The session can take input again (write queue drained, AUTH answered,
 * failure delay over): run what was parked, then read again. */
void session_resume(struct session *s)
{
	while (s->parked != NULL && session_taking_input(s)) {
		char *parked = s->parked;
		size_t parked_len = s->parked_len;

		s->parked = NULL;
		s->parked_len = 0;
		session_process(s, parked, parked_len);
		explicit_bzero(parked, parked_len);
		free(parked);
	}
	session_flush(s);
	if (s->parked == NULL && session_taking_input(s))
		session_read_start(s);
	session_drain_check(s);
}

static void session_early_talker(struct session *s)
{
	log_info(s->sid, "event=reject ip=%s reason=early_talker", s->ip);
	session_reply(s, "554 5.5.1 %s Protocol error: talking before the "
			 "greeting", s->cfg->server.hostname);
	session_close(s, "early talker");
}

/* Client bytes in the clear: from the socket, or decrypted. */
static void session_on_plaintext(struct session *s, const char *data,
				 size_t len)
{
	switch (s->state) {
	case SESSION_GREETING:
		session_early_talker(s);
		break;
	case SESSION_COMMAND:
	case SESSION_AUTH_INPUT:
	case SESSION_DATA:
	case SESSION_DATA_DISCARD:
		session_timer_start(s, s->cfg->limits.idle_timeout_ms);
		/* fall through */
	case SESSION_AUTH_WAIT:
	case SESSION_AUTH_DELAY:
	case SESSION_RELAY_CONNECT:
	case SESSION_DATA_WAIT:
		if (s->parked != NULL || !session_taking_input(s))
			session_park(s, data, len);
		else
			session_process(s, data, len);
		break;
	default:
		/* Closing: input is drained and dropped. */
		break;
	}
}

static void session_tls_send(void *arg, const char *data, size_t len)
{
	session_send_raw(arg, data, len);
}

static void session_tls_plaintext(void *arg, const char *data, size_t len)
{
	session_on_plaintext(arg, data, len);
}

static void session_tls_handshake_done(void *arg)
{
	struct session *s = arg;
	const char *subject = tls_conn_peer_subject(s->tls);
	const char *sni = tls_conn_sni(s->tls);
	char sni_text[SANITIZE_BUFSIZE];
	char subject_text[SANITIZE_BUFSIZE];

	log_info(s->sid,
		 "event=tls ip=%s version=%s cipher=%s sni=\"%s\" "
		 "sni_match=%s resumed=%s client_cert=\"%s\"",
		 s->ip, tls_conn_version(s->tls), tls_conn_cipher(s->tls),
		 sni ? sanitize(sni_text, sizeof(sni_text), sni, strlen(sni))
		     : "",
		 sni == NULL ? "none"
			     : tls_conn_sni_matched(s->tls) ? "yes" : "no",
		 tls_conn_resumed(s->tls) ? "yes" : "no",
		 subject ? sanitize(subject_text, sizeof(subject_text),
				    subject, strlen(subject))
			 : "");
	if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
		/* RFC 8314 §3.3: the greeting comes after the handshake. */
		session_greet(s);
	} else {
		/* RFC 3207 §4.2: no greeting; the client starts with EHLO. */
		session_enter_state(s, SESSION_COMMAND);
	}
}

static const struct tls_conn_callbacks session_tls_callbacks = {
	.send = session_tls_send,
	.plaintext = session_tls_plaintext,
	.handshake_done = session_tls_handshake_done,
};

static void session_tls_start(struct session *s)
{
	s->tls = tls_conn_create(s->w->tls, &session_tls_callbacks, s);
	session_enter_state(s, SESSION_HANDSHAKE);
	/* Also when STARTTLS came from parked input, with reading stopped. */
	session_read_start(s);
}

static void session_starttls(struct session *s, size_t leftover)
{
	s->starttls_pending = false;
	if (leftover > 0 || linebuf_has_partial(&s->lines) ||
	    s->parked_len > 0) {
		/* CVE-2011-0411: bytes pipelined after STARTTLS were sent in
		 * the clear and would be taken as coming from inside TLS.
		 * RFC 3207 §4.2 says to discard all knowledge from before
		 * TLS; a client that does this is broken or hostile, so the
		 * connection is dropped instead. */
		log_info(s->sid,
			 "event=reject ip=%s reason=starttls_injection "
			 "bytes=%zu",
			 s->ip, leftover + s->lines.len + s->parked_len);
		session_close(s, "plaintext after STARTTLS");
		return;
	}
	session_flush(s);
	/* Everything learnt before TLS is forgotten (RFC 3207 §4.2). */
	session_reset_helo(s);
	linebuf_reset(&s->lines);
	session_tls_start(s);
}

static void session_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct session *s = h->data;
	struct worker *w = s->w;

	/* The read callback consumes the buffer before returning; the flag
	 * only guards that invariant. */
	assert(!w->read_buf_busy);
	w->read_buf_busy = true;
	*buf = uv_buf_init(w->read_buf, sizeof(w->read_buf));
}

static void session_on_read(uv_stream_t *stream, ssize_t nread,
			    const uv_buf_t *buf)
{
	struct session *s = stream->data;

	s->w->read_buf_busy = false;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (s->state == SESSION_LINGER) {
			session_destroy(s);
			return;
		}
		s->close_reason = nread == UV_EOF ? "client closed"
						  : uv_strerror((int)nread);
		if (nread == UV_EOF && s->write_queued > 0) {
			/* Let the replies already in flight finish. */
			uv_read_stop(stream);
			s->reading = false;
			session_close(s, s->close_reason);
		} else {
			session_destroy(s);
		}
		return;
	}
	s->bytes_in += (uint64_t)nread;
	if (s->state == SESSION_PROXY) {
		session_proxy_input(s, buf->base, (size_t)nread);
		session_flush(s);
		return;
	}
	if (s->tls == NULL || s->state >= SESSION_CLOSING) {
		session_on_plaintext(s, buf->base, (size_t)nread);
	} else {
		switch (tls_conn_feed(s->tls, buf->base, (size_t)nread)) {
		case TLS_OK:
			break;
		case TLS_CLOSED:
			session_close(s, "client closed TLS");
			break;
		case TLS_ERROR:
			log_info(s->sid,
				 "event=tls_error ip=%s state=%s reason=\"%s\"",
				 s->ip, session_state_names[s->state],
				 tls_conn_error(s->tls));
			/* Let the alert OpenSSL queued reach the client. */
			session_close(s, "TLS error");
			return;
		}
	}
	session_flush(s);
}

static void session_read_start(struct session *s)
{
	int r;

	if (s->reading)
		return;
	r = uv_read_start((uv_stream_t *)&s->tcp, session_on_alloc,
			  session_on_read);
	if (r < 0) {
		s->close_reason = uv_strerror(r);
		session_destroy(s);
		return;
	}
	s->reading = true;
}

/* ---- timers and state ---- */

static void session_on_timer(uv_timer_t *t)
{
	struct session *s = t->data;

	switch (s->state) {
	case SESSION_PROXY:
		log_info(s->sid, "event=reject ip=%s reason=proxy_header_timeout",
			 s->ip);
		s->close_reason = "PROXY header timeout";
		session_destroy(s);
		return;
	case SESSION_HANDSHAKE:
		log_info(s->sid, "event=tls_error ip=%s reason=\"handshake "
				 "timeout\"",
			 s->ip);
		s->close_reason = "TLS handshake timeout";
		session_destroy(s);
		return;
	case SESSION_GREETING:
		session_reply(s, "220 %s ESMTP", s->cfg->server.hostname);
		session_enter_state(s, SESSION_COMMAND);
		break;
	case SESSION_AUTH_DELAY:
		session_auth_delay_done(s);
		break;
	case SESSION_COMMAND:
	case SESSION_AUTH_INPUT:
	case SESSION_AUTH_WAIT:
	case SESSION_RELAY_CONNECT:
	case SESSION_DATA_WAIT:
	case SESSION_DATA:
	case SESSION_DATA_DISCARD:
		log_info(s->sid, "event=timeout ip=%s state=%s", s->ip,
			 session_state_names[s->state]);
		session_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			      s->cfg->server.hostname);
		session_close(s, "idle timeout");
		break;
	case SESSION_CLOSING:
	case SESSION_LINGER:
		/* The client would not take our last reply, or would not
		 * close: give up on it. */
		session_destroy(s);
		return;
	default:
		return;
	}
	session_flush(s);
}

static void session_on_shutdown(uv_shutdown_t *req, int status)
{
	/* Nothing to do: the linger read or timer ends the session. */
}

void session_timer_start(struct session *s, uint64_t ms)
{
	uv_timer_start(&s->timer, session_on_timer, ms, 0);
}

void session_enter_state(struct session *s, enum session_state state)
{
	log_debug(s->sid, "event=state from=%s to=%s",
		  session_state_names[s->state], session_state_names[state]);
	s->state = state;
	switch (state) {
	case SESSION_PROXY:
	case SESSION_HANDSHAKE:
		session_timer_start(s, s->cfg->limits.handshake_timeout_ms);
		break;
	case SESSION_COMMAND:
		session_timer_start(s, s->cfg->limits.idle_timeout_ms);
		break;
	case SESSION_CLOSING:
		session_timer_start(s, SESSION_LINGER_MS);
		break;
	case SESSION_LINGER:
		/* Half-close after the last reply, then drain input until
		 * the client closes or the linger timer fires. */
		session_timer_start(s, SESSION_LINGER_MS);
		if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp,
				session_on_shutdown) < 0) {
			session_destroy(s);
			return;
		}
		session_read_start(s);
		break;
	default:
		break;
	}
}

/* ---- life cycle ---- */

void session_close(struct session *s, const char *reason)
{
	if (s->state >= SESSION_CLOSING)
		return;
	if (s->close_reason == NULL)
		s->close_reason = reason;
	/* An answer from the helper must not bring the session back. */
	if (s->auth_pending != NULL) {
		auth_client_cancel(s->auth_pending);
		s->auth_pending = NULL;
	}
	session_slots_close(s);
	session_flush(s);
	if (session_tls_active(s))
		tls_conn_shutdown(s->tls);  /* close_notify after the reply */
	session_enter_state(s, SESSION_CLOSING);
	if (s->write_queued == 0)
		session_enter_state(s, SESSION_LINGER);
}

static void session_on_handle_closed(uv_handle_t *h)
{
	struct session *s = h->data;
	struct worker *w = s->w;

	if (--s->open_handles > 0)
		return;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	w->nsessions--;
	atomic_fetch_sub(&w->shared->sessions, 1);
	atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
	config_unref(s->cfg);
	linebuf_reset(&s->lines);
	tls_conn_destroy(s->tls);
	free(s->out);
	session_free_parked(s);
	free(s->proxy_buf);
	free(s->helo);
	free(s->user);
	free(s);
}

/* Ends the session now: logs it, releases its counts and closes its
 * handles; the memory goes in session_on_handle_closed. */
static void session_destroy(struct session *s)
{
	if (s->state == SESSION_CLOSED)
		return;
	s->state = SESSION_CLOSED;
	session_auth_cleanup(s);
	/* Mid-DATA this closes the backend without the terminator: the
	 * backend discards the partial message. */
	session_relay_cleanup(s);
	if (s->addr != NULL) {
		shared_addr_disconnect(s->w->shared, s->addr);
		s->addr = NULL;
	}
	log_info(s->sid,
		 "event=disconnect ip=%s duration_ms=%llu bytes_in=%llu "
		 "bytes_out=%llu reason=\"%s\"",
		 s->ip,
		 (unsigned long long)(uv_now(&s->w->loop) - s->start_ms),
		 (unsigned long long)s->bytes_in,
		 (unsigned long long)s->bytes_out,
		 s->close_reason ? s->close_reason : "closed");
	uv_close((uv_handle_t *)&s->tcp, session_on_handle_closed);
	uv_close((uv_handle_t *)&s->timer, session_on_handle_closed);
}

/* Who the client is: from the socket, or from a PROXY header.  The
 * per-address count follows it. */
static void session_set_peer(struct session *s,
			     const struct sockaddr_storage *sa)
{
	const struct sockaddr_storage ss = *sa;

	if (s->addr != NULL) {
		shared_addr_disconnect(s->w->shared, s->addr);
		s->addr = NULL;
	}
	snprintf(s->ip, sizeof(s->ip), "unknown");
	s->port = 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		uv_ip4_name(sin, s->ip, sizeof(s->ip));
		s->port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		uv_ip6_name(sin6, s->ip, sizeof(s->ip));
		s->port = ntohs(sin6->sin6_port);
	}
	{
		struct addrkey key;

		if (addrkey_from_sockaddr(&key, (struct sockaddr *)&ss) == 0)
			s->addr = shared_addr_connect(s->w->shared, &key,
						      &s->addr_count);
	}
}

static void session_peer(struct session *s)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) != 0)
		ss.ss_family = AF_UNSPEC;
	session_set_peer(s, &ss);
}

/* True if the client sent bytes before we could possibly have greeted it.
 * Such bytes are already in the socket at accept time, so peeking cannot
 * mistake a fast, correct client for an early talker. */
static bool session_talked_first(struct session *s)
{
	uv_os_fd_t fd;
	char c;

	if (uv_fileno((uv_handle_t *)&s->tcp, &fd) != 0)
		return false;
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* The greeting, or with greeting_delay a pause first in which any client
 * input marks an early talker (as sendmail's greet_pause). */
static void session_greet(struct session *s)
{
	if (s->cfg->limits.greeting_delay_ms > 0) {
		session_enter_state(s, SESSION_GREETING);
		session_timer_start(s, s->cfg->limits.greeting_delay_ms);
		return;
	}
	session_reply(s, "220 %s ESMTP", s->cfg->server.hostname);
	session_enter_state(s, SESSION_COMMAND);
}

/* The client is known (socket or PROXY header): apply the connection
 * limits, then greet it or start TLS.  leftover: client bytes that came
 * with a PROXY header. */
static void session_admit(struct session *s, const char *leftover,
			  size_t leftover_len)
{
	const struct config_limits *lim = &s->cfg->limits;
	struct worker *w = s->w;

	if (w->stopping) {
		session_reply(s, "421 4.3.2 %s Service shutting down",
			      s->cfg->server.hostname);
		session_close(s, "shutting down");
	} else if (s->open_at_accept > lim->max_connections) {
		log_info(s->sid, "event=reject ip=%s reason=max_connections",
			 s->ip);
		session_reply(s, "421 4.7.0 %s Too many connections",
			      s->cfg->server.hostname);
		session_close(s, "max_connections");
	} else if (s->addr != NULL &&
		   s->addr_count > lim->max_connections_per_address) {
		log_info(s->sid,
			 "event=reject ip=%s reason=max_connections_per_address",
			 s->ip);
		session_reply(s,
			      "421 4.7.0 %s Too many connections from your "
			      "address",
			      s->cfg->server.hostname);
		session_close(s, "max_connections_per_address");
	} else if (s->listener->mode != LISTENER_IMPLICIT_TLS &&
		   (leftover_len > 0 || session_talked_first(s))) {
		/* (With implicit TLS the client speaks first: its
		 * ClientHello.) */
		session_early_talker(s);
	} else if (s->listener->mode == LISTENER_IMPLICIT_TLS) {
		session_tls_start(s);
		session_read_start(s);
		if (leftover_len > 0 &&
		    tls_conn_feed(s->tls, leftover, leftover_len) == TLS_ERROR) {
			log_info(s->sid, "event=tls_error ip=%s reason=\"%s\"",
				 s->ip, tls_conn_error(s->tls));
			session_close(s, "TLS error");
		}
	} else {
		session_greet(s);
		session_read_start(s);
	}
	session_flush(s);
}

/* Bytes on a proxy_protocol listener before the header is complete.  The
 * header comes from our own load balancer: anything else is dropped. */
static void session_proxy_input(struct session *s, const char *data,
				size_t len)
{
	struct proxyproto_info info;
	enum proxyproto_result r;
	size_t take = PROXYPROTO_V2_MAX - s->proxy_len, consumed = 0;
	char orig[sizeof(s->ip)];

	if (take > len)
		take = len;
	memcpy(s->proxy_buf + s->proxy_len, data, take);
	s->proxy_len += take;
	r = proxyproto_parse(s->proxy_buf, s->proxy_len, &info, &consumed);
	if (r == PROXYPROTO_INCOMPLETE && s->proxy_len < PROXYPROTO_V2_MAX)
		return;
	if (r != PROXYPROTO_OK) {
		log_info(s->sid, "event=reject ip=%s reason=bad_proxy_header",
			 s->ip);
		s->close_reason = "bad PROXY header";
		session_destroy(s);
		return;
	}
	snprintf(orig, sizeof(orig), "%s", s->ip);
	if (info.has_addr)
		session_set_peer(s, &info.src);
	log_info(s->sid, "event=proxy ip=%s port=%u via=%s version=%d", s->ip,
		 s->port, orig, info.version);
	{
		/* What followed the header in this read is the client's. */
		size_t before = s->proxy_len - take;
		size_t rest_off = consumed > before ? consumed - before : 0;
		unsigned char *buf = s->proxy_buf;

		s->proxy_buf = NULL;
		s->proxy_len = 0;
		if (consumed < before) {
			/* Cannot happen: the parser stops at the header's
			 * end, which the earlier reads had not reached. */
			free(buf);
			session_destroy(s);
			return;
		}
		free(buf);
		session_admit(s, data + rest_off, len - rest_off);
	}
}

static void session_start(struct session *s)
{
	session_peer(s);
	log_info(s->sid, "event=connect ip=%s port=%u listener=%s worker=%u",
		 s->ip, s->port, s->listener->name, s->w->index);
	if (s->listener->proxy_protocol && !s->w->stopping) {
		/* The real client's address comes first, before TLS. */
		s->proxy_buf = xmalloc(PROXYPROTO_V2_MAX);
		session_enter_state(s, SESSION_PROXY);
		session_read_start(s);
		return;
	}
	session_admit(s, NULL, 0);
}

void session_accept(struct worker *w, size_t listener, int fd)
{
	struct session *s = xcalloc(1, sizeof(*s));
	int r;

	s->w = w;
	s->cfg = config_ref(w->cfg);
	/* The listener sections of every configuration a reload installs
	 * mirror the first one's, index for index. */
	s->listener = &s->cfg->listeners[listener];
	s->start_ms = uv_now(&w->loop);
	s->state = SESSION_GREETING;  /* nothing is read before start */
	snprintf(s->sid, sizeof(s->sid), "%016llx",
		 (unsigned long long)shared_next_sid(w->shared));
	linebuf_init(&s->lines, w->cfg->limits.max_line_length);

	uv_tcp_init(&w->loop, &s->tcp);
	uv_timer_init(&w->loop, &s->timer);
	s->tcp.data = s;
	s->timer.data = s;
	s->open_handles = 2;
	s->next = w->sessions;
	if (w->sessions != NULL)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
	/* The count this session saw, not a later reading: of two sessions
	 * arriving at once on two loops, only the one over the limit is. */
	s->open_at_accept = atomic_fetch_add(&w->shared->sessions, 1) + 1;

	r = uv_tcp_open(&s->tcp, fd);
	if (r < 0) {
		log_warn(NULL, "event=accept_error error=\"%s\"",
			 uv_strerror(r));
		close(fd);
		s->close_reason = "accept failed";
		session_destroy(s);
		return;
	}
	uv_tcp_nodelay(&s->tcp, 1);
	session_start(s);
}

/* Nothing in progress: no reply owed, no transaction, no exchange. */
static bool session_idle(const struct session *s)
{
	return (s->state == SESSION_HANDSHAKE ||
		s->state == SESSION_GREETING || s->state == SESSION_COMMAND ||
		s->state == SESSION_AUTH_INPUT) &&
	       s->slots_head == NULL && s->sendq_head == NULL;
}

/* A draining session ends as soon as it is idle. */
static void session_drain_check(struct session *s)
{
	if (!s->draining || s->state >= SESSION_CLOSING || !session_idle(s))
		return;
	if (s->state != SESSION_HANDSHAKE)
		session_reply(s, "421 4.3.2 %s Service shutting down",
			      s->cfg->server.hostname);
	session_close(s, "shutting down");
	session_flush(s);
}

void session_shutdown(struct session *s)
{
	if (s->state >= SESSION_CLOSING)
		return;
	s->draining = true;
	session_drain_check(s);
}

void session_force_close(struct session *s)
{
	if (s->state >= SESSION_CLOSED)
		return;
	/* Mid-DATA the backend is closed without the terminator: the message
	 * is not delivered and the client, seeing no reply, sends it again
	 * later.  Nothing is half-delivered. */
	s->close_reason = "shutdown timeout";
	session_destroy(s);
}

struct session *session_next(struct session *s)
{
	return s->next;
}
