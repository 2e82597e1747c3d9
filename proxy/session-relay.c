/*
 * session-relay.c - the session after AUTH (DESIGN.md, "Relay"): the
 * backend connection made at hand-over, the command whitelist, EHLO
 * rewriting, the ordered reply queue, and DATA through the scanner.
 *
 * Reply order (RFC 2920): every command takes a slot in s->slots, local
 * replies and relayed ones alike; a relayed slot is answered when the
 * backend's reply arrives (the backend answers in order), and local
 * replies queued behind it wait for it.  A backend without PIPELINING is
 * fed one command at a time from s->sendq.
 *
 * The backend trusts us; we trust the client with nothing: only
 * whitelisted commands, rewritten where needed, reach it, and message
 * bytes reach it only re-encoded by the DATA scanner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/datascan.h"
#include "proxy/relay.h"
#include "proxy/sendermap.h"
#include "proxy/session-private.h"
#include "proxy/shared.h"
#include "proxy/smtp-relay-parse.h"
#include "proxy/worker.h"
#include "tls/tls-conn.h"

/* What an EHLO may announce to clients: the pass-through list. */
#define SESSION_EHLO_PASS                                                    \
	(EHLO_CAP_SIZE | EHLO_CAP_8BITMIME | EHLO_CAP_PIPELINING |            \
	 EHLO_CAP_ENHANCEDSTATUSCODES | EHLO_CAP_SMTPUTF8 | EHLO_CAP_DSN |   \
	 EHLO_CAP_DELIVERBY)

/* Before any probe has succeeded: what the proxy itself guarantees. */
#define SESSION_EHLO_CONSERVATIVE                                            \
	(EHLO_CAP_SIZE | EHLO_CAP_PIPELINING | EHLO_CAP_ENHANCEDSTATUSCODES)

static void session_relay_pump(struct session *s);

/* ---- capabilities ---- */

/* PIPELINING and SIZE are the proxy's own: it takes pipelined commands
 * whatever the backend does, and enforces max_message_size itself. */
static size_t session_caps_render(const struct session *s,
				  const struct ehlo_caps *from, char lines[][64],
				  size_t max)
{
	struct ehlo_caps caps = *from;

	caps.caps |= EHLO_CAP_PIPELINING | EHLO_CAP_SIZE;
	return ehlo_caps_render(&caps, SESSION_EHLO_PASS,
				s->cfg->limits.max_message_size, lines, max);
}

size_t session_ehlo_caps(struct session *s, char lines[][64], size_t max)
{
	struct ehlo_caps conservative, probed;

	if (shared_backend_caps(s->w->shared, &probed))
		return session_caps_render(s, &probed, lines, max);
	memset(&conservative, 0, sizeof(conservative));
	conservative.caps = SESSION_EHLO_CONSERVATIVE;
	return session_caps_render(s, &conservative, lines, max);
}

/* ---- the reply queue ---- */

static struct reply_slot *session_slot_push_relayed(struct session *s,
						    enum smtp_verb verb)
{
	struct reply_slot *slot = xcalloc(1, sizeof(*slot));

	slot->verb = verb;
	slot->relayed = true;
	if (s->slots_tail != NULL)
		s->slots_tail->next = slot;
	else
		s->slots_head = slot;
	s->slots_tail = slot;
	s->nslots++;
	return slot;
}

static void session_tx_free(struct session_tx *tx)
{
	if (tx == NULL)
		return;
	free(tx->sender);
	free(tx->first_rcpt);
	free(tx);
}

static void session_slot_free(struct reply_slot *slot)
{
	free(slot->path);
	session_tx_free(slot->tx);
	free(slot);
}

/* Answers the head slot with text, then every local reply queued behind
 * it, up to the next one the backend still owes. */
static void session_slot_answer(struct session *s, const char *text,
				size_t len)
{
	struct reply_slot *slot = s->slots_head;

	s->slots_head = slot->next;
	if (s->slots_head == NULL)
		s->slots_tail = NULL;
	s->nslots--;
	session_slot_free(slot);
	session_out_write(s, text, len);
	while (s->slots_head != NULL && !s->slots_head->relayed) {
		slot = s->slots_head;
		s->slots_head = slot->next;
		if (s->slots_head == NULL)
			s->slots_tail = NULL;
		s->nslots--;
		session_out_write(s, slot->text, slot->len);
		session_slot_free(slot);
	}
}

void session_slots_close(struct session *s)
{
	static const char aborted[] = "451 4.4.2 Connection closing\r\n";

	while (s->slots_head != NULL) {
		struct reply_slot *slot = s->slots_head;

		s->slots_head = slot->next;
		s->nslots--;
		if (slot->relayed)
			session_out_write(s, aborted, sizeof(aborted) - 1);
		else
			session_out_write(s, slot->text, slot->len);
		session_slot_free(slot);
	}
	s->slots_tail = NULL;
}

static void session_slots_clear(struct session *s)
{
	while (s->slots_head != NULL) {
		struct reply_slot *slot = s->slots_head;

		s->slots_head = slot->next;
		session_slot_free(slot);
	}
	s->slots_tail = NULL;
	s->nslots = 0;
}

static void session_sendq_clear(struct session *s)
{
	while (s->sendq_head != NULL) {
		struct relayed_line *l = s->sendq_head;

		s->sendq_head = l->next;
		free(l);
	}
	s->sendq_tail = NULL;
}

/* ---- the transaction ---- */

static void session_tx_reset(struct session *s)
{
	free(s->tx.sender);
	free(s->tx.first_rcpt);
	memset(&s->tx, 0, sizeof(s->tx));
}

static void session_log_transaction(struct session *s,
				    const struct session_tx *tx,
				    uint64_t size,
				    const struct relay_reply *reply)
{
	char user[SANITIZE_BUFSIZE], from[SANITIZE_BUFSIZE];
	char text[SANITIZE_BUFSIZE];
	size_t first = reply->len;
	const char *crlf = memchr(reply->text, '\r', reply->len);

	if (crlf != NULL)
		first = (size_t)(crlf - reply->text);
	log_info(s->sid,
		 "event=transaction ip=%s user=\"%s\" from=<%s> rcpts=%u "
		 "size=%llu reply=\"%s\"",
		 s->ip, sanitize(user, sizeof(user), s->user, strlen(s->user)),
		 tx->sender ? sanitize(from, sizeof(from), tx->sender,
				       strlen(tx->sender))
			    : "",
		 (unsigned)tx->rcpts_ok, (unsigned long long)size,
		 sanitize(text, sizeof(text), reply->text, first));
}

/* ---- talking to the backend ---- */

static void session_relay_lost(struct session *s, const char *why);

/* Queues a command for the backend; its reply takes a slot now. */
static struct reply_slot *session_relay_send(struct session *s,
					     enum smtp_verb verb,
					     const char *text, size_t len)
{
	struct relayed_line *l = xmalloc(sizeof(*l) + len + 2);
	struct reply_slot *slot;

	l->next = NULL;
	memcpy(l->text, text, len);
	memcpy(l->text + len, "\r\n", 2);
	l->len = len + 2;
	if (s->sendq_tail != NULL)
		s->sendq_tail->next = l;
	else
		s->sendq_head = l;
	s->sendq_tail = l;
	slot = session_slot_push_relayed(s, verb);
	if (s->relay == NULL) {
		/* Dropped after an aborted message: connect again (EHLO and
		 * XCLIENT included) before this command goes. */
		session_relay_start(s);
		return slot;
	}
	session_relay_pump(s);
	return slot;
}

/* Sends what the backend may take now: everything with PIPELINING, one
 * command at a time without it (RFC 2920 is a promise the backend made,
 * or did not). */
static void session_relay_pump(struct session *s)
{
	bool pipelining;

	if (s->relay == NULL || s->state == SESSION_RELAY_CONNECT ||
	    s->state == SESSION_AUTH_WAIT)
		return;
	pipelining = (relay_caps(s->relay)->caps & EHLO_CAP_PIPELINING) != 0;
	while (s->sendq_head != NULL && (pipelining || s->in_flight == 0)) {
		struct relayed_line *l = s->sendq_head;

		s->sendq_head = l->next;
		if (s->sendq_head == NULL)
			s->sendq_tail = NULL;
		s->in_flight++;
		relay_send_command(s->relay, l->text, l->len);
		free(l);
	}
}

/* The backend's EHLO reply, as the client sees it: our name first, then
 * only the pass-through extensions (no STARTTLS, AUTH, XCLIENT, XFORWARD,
 * CHUNKING, BINARYMIME, ETRN or anything unknown), SIZE capped. */
static void session_answer_ehlo(struct session *s,
				const struct relay_reply *reply)
{
	char lines[16][64], buf[16 * 72 + 256];
	struct ehlo_caps caps;
	size_t n, off = 0, pos = 0, i;

	if (reply->code != 250) {
		session_slot_answer(s, reply->text, reply->len);
		return;
	}
	memset(&caps, 0, sizeof(caps));
	/* Skip the first line (the backend's name), read the others. */
	for (i = 0; pos < reply->len; i++) {
		const char *line = reply->text + pos;
		const char *end = memchr(line, '\r', reply->len - pos);
		size_t len = end ? (size_t)(end - line) : reply->len - pos;

		if (i > 0 && len > 4)
			ehlo_caps_add_line(&caps, line + 4, len - 4);
		pos += len + 2;
	}
	n = session_caps_render(s, &caps, lines, 16);
	off += (size_t)snprintf(buf + off, sizeof(buf) - off, "250%c%s\r\n",
				n > 0 ? '-' : ' ', s->cfg->server.hostname);
	for (i = 0; i < n && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
					"250%c%s\r\n", i + 1 < n ? '-' : ' ',
					lines[i]);
	session_slot_answer(s, buf, off < sizeof(buf) ? off : sizeof(buf));
}

static void session_received_header(struct session *s)
{
	char date[64], helo[SANITIZE_BUFSIZE], rcpt[SANITIZE_BUFSIZE];
	char tls_part[160], rcpt_part[SANITIZE_BUFSIZE + 16];
	char header[2048];
	struct tm tm;
	time_t now = time(NULL);
	bool tls = session_tls_active(s);
	int n;

	localtime_r(&now, &tm);
	/* RFC 5322 §3.3 date-time. */
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	sanitize(helo, sizeof(helo), s->helo ? s->helo : "unknown",
		 s->helo ? strlen(s->helo) : 7);
	tls_part[0] = rcpt_part[0] = '\0';
	if (tls)
		snprintf(tls_part, sizeof(tls_part),
			 "\r\n\t(version=%s cipher=%s)", tls_conn_version(s->tls),
			 tls_conn_cipher(s->tls));
	/* "for" only with a single recipient: with several, it would tell
	 * each of them who else (Bcc) got the message. */
	if (s->tx.rcpts_ok == 1 && s->tx.first_rcpt != NULL)
		snprintf(rcpt_part, sizeof(rcpt_part), "\r\n\tfor <%s>",
			 sanitize(rcpt, sizeof(rcpt), s->tx.first_rcpt,
				  strlen(s->tx.first_rcpt)));
	n = snprintf(header, sizeof(header),
		     "Received: from %s ([%s%s]) (authenticated)\r\n"
		     "\tby %s (submitproxy) with %s id %s%s%s;\r\n\t%s\r\n",
		     helo, strchr(s->ip, ':') ? "IPv6:" : "", s->ip,
		     s->cfg->server.hostname, tls ? "ESMTPSA" : "ESMTPA", s->sid,
		     tls_part, rcpt_part, date);
	if (n > 0 && (size_t)n < sizeof(header)) {
		relay_send_data(s->relay, header, (size_t)n);
		s->scan.size += (uint64_t)n;
	}
}

static void session_data_start(struct session *s)
{
	datascan_init(&s->scan);
	s->abort_reply = NULL;
	session_enter_state(s, SESSION_DATA);
	tls_conn_set_bulk(s->tls, true);
	if (s->cfg->relay.received_header)
		session_received_header(s);
}

static void session_relay_on_reply(void *arg, const struct relay_reply *reply)
{
	struct session *s = arg;
	struct reply_slot *slot = s->slots_head;
	bool ok = reply->code >= 200 && reply->code < 300;

	if (s->state >= SESSION_CLOSING)
		return;

	if (s->in_flight > 0)
		s->in_flight--;
	if (slot == NULL || !slot->relayed) {
		session_relay_lost(s, "reply nobody asked for");
		return;
	}
	switch (slot->verb) {
	case SMTP_VERB_EHLO:
		session_answer_ehlo(s, reply);
		break;
	case SMTP_VERB_HELO:
		if (reply->code == 250) {
			char line[300];
			int n = snprintf(line, sizeof(line), "250 %s\r\n",
					 s->cfg->server.hostname);

			session_slot_answer(s, line, (size_t)n);
		} else {
			session_slot_answer(s, reply->text, reply->len);
		}
		break;
	case SMTP_VERB_MAIL:
		s->tx.mail_ok = ok;
		session_slot_answer(s, reply->text, reply->len);
		break;
	case SMTP_VERB_RCPT:
		if (ok) {
			s->tx.rcpts_ok++;
			if (s->tx.first_rcpt == NULL && slot->path != NULL) {
				s->tx.first_rcpt = slot->path;
				slot->path = NULL;
			}
		}
		session_slot_answer(s, reply->text, reply->len);
		break;
	case SMTP_VERB_DATA:
		if (slot->data_end) {
			/* Never our 250: the backend's own verdict, logged
			 * with the transaction it ended (the client may have
			 * pipelined the next one already). */
			if (slot->tx != NULL)
				session_log_transaction(s, slot->tx,
							slot->tx->size, reply);
			session_slot_answer(s, reply->text, reply->len);
			break;
		}
		s->data_pending = false;
		session_slot_answer(s, reply->text, reply->len);
		if (reply->code == 354 && s->state == SESSION_DATA_WAIT) {
			session_data_start(s);
		} else if (s->state == SESSION_DATA_WAIT) {
			session_enter_state(s, SESSION_COMMAND);
		}
		break;
	case SMTP_VERB_QUIT:
		session_slot_answer(s, reply->text, reply->len);
		session_close(s, "quit");
		return;
	default:
		session_slot_answer(s, reply->text, reply->len);
		break;
	}
	session_relay_pump(s);
	if (s->blocked && !session_over_limits(s))
		s->blocked = false;
	session_resume(s);
}

static void session_relay_on_ready(void *arg)
{
	struct session *s = arg;

	if (s->state == SESSION_AUTH_WAIT) {
		/* Hand-over complete: PAM and the backend both said yes. */
		s->user = s->pending_user;
		s->pending_user = NULL;
		session_reply(s, "235 2.7.0 Authentication successful");
		session_enter_state(s, SESSION_COMMAND);
	} else if (s->state == SESSION_RELAY_CONNECT) {
		/* A DATA among the commands that waited: nothing more is a
		 * command until its reply. */
		session_enter_state(s, s->data_pending ? SESSION_DATA_WAIT
						       : SESSION_COMMAND);
		session_relay_pump(s);
	} else {
		return; /* closing: nothing to do */
	}
	session_resume(s);
}

static void session_relay_on_failed(void *arg, const char *why)
{
	struct session *s = arg;

	if (s->state >= SESSION_CLOSING) {
		/* After QUIT (or while we close anyway) the backend going
		 * away is the expected end. */
		relay_destroy(s->relay);
		s->relay = NULL;
		return;
	}
	if (s->state == SESSION_AUTH_WAIT && s->pending_user != NULL) {
		char user[SANITIZE_BUFSIZE];

		/* The client stays and may try again. */
		log_info(s->sid,
			 "event=auth_tempfail ip=%s user=\"%s\" "
			 "reason=backend_unavailable",
			 s->ip,
			 sanitize(user, sizeof(user), s->pending_user,
				  strlen(s->pending_user)));
		free(s->pending_user);
		s->pending_user = NULL;
		relay_destroy(s->relay);
		s->relay = NULL;
		session_reply(s, "454 4.7.0 Temporary authentication failure");
		session_enter_state(s, SESSION_COMMAND);
		session_resume(s);
		return;
	}
	session_relay_lost(s, why);
}

/* The backend is gone mid-session: nothing the client sent is known to
 * be delivered, so it must not believe otherwise.  The reply owed first
 * gets 451, then the session ends with 421 and the client retries later. */
static void session_relay_lost(struct session *s, const char *why)
{
	log_info(s->sid, "event=backend_lost ip=%s state=%s error=\"%s\"",
		 s->ip, session_state_names[s->state], why);
	relay_destroy(s->relay);
	s->relay = NULL;
	session_sendq_clear(s);
	s->in_flight = 0;
	if (s->slots_head != NULL && s->slots_head->relayed &&
	    s->state != SESSION_DATA)
		session_slot_answer(s, "451 4.4.2 Backend connection lost\r\n",
				    35);
	session_slots_clear(s);
	session_reply(s, "421 4.4.2 %s Backend connection lost, closing "
			 "connection",
		      s->cfg->server.hostname);
	session_close(s, "backend lost");
}

static void session_relay_on_drained(void *arg)
{
	struct session *s = arg;

	if (s->blocked && !session_over_limits(s)) {
		s->blocked = false;
		session_resume(s);
	}
}

static const struct relay_callbacks session_relay_callbacks = {
	.ready = session_relay_on_ready,
	.failed = session_relay_on_failed,
	.reply = session_relay_on_reply,
	.drained = session_relay_on_drained,
};

void session_relay_start(struct session *s)
{
	struct relay_client client = {
		.addr = s->ip,
		.port = s->port,
		.helo = s->helo,
		.login = s->user ? s->user : s->pending_user,
		.sid = s->sid,
	};

	if (s->state >= SESSION_CLOSING)
		return;
	s->relay = relay_create(&s->w->loop, s->cfg, &client,
				&session_relay_callbacks, s);
	s->in_flight = 0;
	if (s->state != SESSION_AUTH_WAIT)
		session_enter_state(s, SESSION_RELAY_CONNECT);
}

void session_relay_cleanup(struct session *s)
{
	relay_destroy(s->relay);
	s->relay = NULL;
	session_sendq_clear(s);
	session_slots_clear(s);
	session_tx_reset(s);
	free(s->pending_user);
	s->pending_user = NULL;
}

/* ---- commands after AUTH ---- */

static struct reply_slot *session_relay_verb(struct session *s,
					     const struct smtp_cmd *cmd)
{
	char line[4096];
	int n;

	n = snprintf(line, sizeof(line), "%s%s%.*s", smtp_verb_name(cmd->verb),
		     cmd->args_len ? " " : "", (int)cmd->args_len, cmd->args);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		session_refuse(s, cmd->verb, "500 5.5.6 Line too long");
		return NULL;
	}
	return session_relay_send(s, cmd->verb, line, (size_t)n);
}

static void session_relay_mail(struct session *s, const struct smtp_cmd *cmd)
{
	char path[512], rewritten[4096], line[4200], text[SANITIZE_BUFSIZE];
	uint64_t size = 0;
	int n;

	if (mail_from_rewrite(cmd->args, cmd->args_len, path, sizeof(path),
			      rewritten, sizeof(rewritten)) < 0) {
		session_refuse(s, cmd->verb,
			       "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (mail_from_size(cmd->args, cmd->args_len, &size) < 0) {
		session_refuse(s, cmd->verb, "501 5.5.4 Bad SIZE parameter");
		return;
	}
	if (size > s->cfg->limits.max_message_size) {
		session_refuse(s, cmd->verb,
			       "552 5.3.4 Message size exceeds fixed maximum "
			       "message size");
		return;
	}
	if (s->w->sendermap != NULL &&
	    !sendermap_allows(s->w->sendermap, s->user, path)) {
		/* As Postfix's reject_sender_login_mismatch. */
		log_info(s->sid,
			 "event=reject ip=%s reason=sender_map from=<%s>",
			 s->ip, sanitize(text, sizeof(text), path,
					 strlen(path)));
		session_refuse(s, cmd->verb,
			       "553 5.7.1 Sender address rejected: not owned "
			       "by user %s",
			       sanitize(text, sizeof(text), s->user,
					strlen(s->user)));
		return;
	}
	session_tx_reset(s);
	s->tx.sender = xstrdup(path);
	n = snprintf(line, sizeof(line), "MAIL %s", rewritten);
	session_relay_send(s, cmd->verb, line, (size_t)n);
}

static void session_relay_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	struct reply_slot *slot;
	const char *lt, *gt;

	if (rcpt_to_check(cmd->args, cmd->args_len) < 0) {
		session_refuse(s, cmd->verb,
			       "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->tx.rcpts_sent >= s->cfg->limits.max_recipients) {
		session_refuse(s, cmd->verb, "452 4.5.3 Too many recipients");
		return;
	}
	s->tx.rcpts_sent++;
	lt = memchr(cmd->args, '<', cmd->args_len);
	gt = lt ? memchr(lt, '>', cmd->args_len - (size_t)(lt - cmd->args))
		: NULL;
	slot = session_relay_verb(s, cmd);
	if (slot != NULL && lt != NULL && gt != NULL)
		slot->path = xmemdup(lt + 1, (size_t)(gt - lt - 1));
}

void session_relay_command(struct session *s, const struct smtp_cmd *cmd)
{
	switch (cmd->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		if (cmd->args_len == 0 || cmd->args_len > SESSION_HELO_MAX ||
		    memchr(cmd->args, ' ', cmd->args_len) != NULL) {
			session_refuse(s, cmd->verb,
				       "501 5.5.4 Syntax: %s hostname",
				       smtp_verb_name(cmd->verb));
			return;
		}
		free(s->helo);
		s->helo = xmemdup(cmd->args, cmd->args_len);
		session_tx_reset(s);
		if (cmd->verb == SMTP_VERB_EHLO && s->relay != NULL &&
		    !relay_esmtp(s->relay)) {
			/* A backend that speaks no ESMTP gets HELO; the
			 * client still gets an EHLO answer, with what the
			 * proxy itself offers. */
			char line[300];
			int n = snprintf(line, sizeof(line), "HELO %.*s",
					 (int)cmd->args_len, cmd->args);

			session_relay_send(s, SMTP_VERB_EHLO, line, (size_t)n);
			return;
		}
		session_relay_verb(s, cmd);
		return;
	case SMTP_VERB_MAIL:
		session_relay_mail(s, cmd);
		return;
	case SMTP_VERB_RCPT:
		session_relay_rcpt(s, cmd);
		return;
	case SMTP_VERB_DATA:
		if (cmd->args_len != 0) {
			session_refuse(s, cmd->verb, "501 5.5.4 Syntax: DATA");
			return;
		}
		if (session_relay_verb(s, cmd) == NULL)
			return;
		/* Nothing more is read as a command until the backend has
		 * answered: 354 makes what follows message bytes.  (While
		 * the backend reconnects, the state says so; the ready
		 * callback then enters DATA_WAIT.) */
		s->data_pending = true;
		if (s->state == SESSION_COMMAND)
			session_enter_state(s, SESSION_DATA_WAIT);
		return;
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
		if (cmd->args_len != 0) {
			session_refuse(s, cmd->verb, "501 5.5.4 Syntax: %s",
				       smtp_verb_name(cmd->verb));
			return;
		}
		if (cmd->verb == SMTP_VERB_RSET)
			session_tx_reset(s);
		session_relay_verb(s, cmd);
		return;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
	case SMTP_VERB_HELP:
		session_relay_verb(s, cmd);
		return;
	case SMTP_VERB_AUTH:
		/* RFC 4954 §4: no AUTH after a successful one. */
		session_refuse(s, cmd->verb, "503 5.5.1 Already authenticated");
		return;
	case SMTP_VERB_STARTTLS:
		session_refuse(s, cmd->verb,
			       "503 5.5.1 STARTTLS not allowed now");
		return;
	case SMTP_VERB_BDAT:
	case SMTP_VERB_XCLIENT:
	case SMTP_VERB_XFORWARD:
	case SMTP_VERB_ETRN:
	case SMTP_VERB_TURN:
	case SMTP_VERB_ATRN:
		/* Never forwarded: the backend trusts us, so these would be
		 * the client's to abuse (XCLIENT spoofing, CHUNKING without
		 * the scanner, queue runs). */
		session_refuse(s, cmd->verb, "502 5.5.1 Command not implemented");
		return;
	case SMTP_VERB_UNKNOWN:
	default:
		session_refuse(s, cmd->verb, "500 5.5.1 Command unrecognized");
		return;
	}
}

/* ---- DATA ---- */

/* Stops relaying the message: the backend connection is closed without
 * the terminator, so the backend discards what it got; the client's
 * bytes are read to their end of data and then answered with reply. */
static void session_data_abort(struct session *s, const char *reply,
			       const char *reason)
{
	log_info(s->sid, "event=transaction_abort ip=%s reason=%s size=%llu",
		 s->ip, reason, (unsigned long long)s->scan.size);
	relay_destroy(s->relay);
	s->relay = NULL;
	session_sendq_clear(s);
	s->in_flight = 0;
	s->abort_reply = reply;
	session_enter_state(s, SESSION_DATA_DISCARD);
}

size_t session_data_input(struct session *s, const char *data, size_t len)
{
	char *out = s->w->data_buf;
	size_t taken = 0;

	while (taken < len) {
		size_t chunk = len - taken, out_len = 0, consumed = 0;
		enum datascan_result r;

		if (chunk > WORKER_DATA_CHUNK)
			chunk = WORKER_DATA_CHUNK;
		r = datascan_feed(&s->scan, data + taken, chunk, out, &out_len,
				  &consumed);
		taken += consumed;
		if (s->state == SESSION_DATA) {
			if (s->scan.size > s->cfg->limits.max_message_size) {
				session_data_abort(
					s,
					"552 5.3.4 Message size exceeds fixed "
					"maximum message size",
					"size");
			} else if (s->scan.bare_newlines > 0 &&
				   s->cfg->relay.bare_newline ==
					   BARE_NEWLINE_REJECT) {
				session_data_abort(
					s,
					"550 5.6.0 Message contains bare CR or "
					"LF",
					"bare_newline");
			} else {
				relay_send_data(s->relay, out, out_len);
			}
		}
		if (s->state != SESSION_DATA && s->state != SESSION_DATA_DISCARD)
			return len; /* the backend went away: we are closing */
		if (r == DATASCAN_DONE) {
			if (s->state == SESSION_DATA) {
				struct reply_slot *slot;

				slot = session_relay_send(s, SMTP_VERB_DATA,
							  ".", 1);
				slot->data_end = true;
				/* The transaction ends here for the client,
				 * which may pipeline the next MAIL now. */
				slot->tx = xmalloc(sizeof(*slot->tx));
				*slot->tx = s->tx;
				slot->tx->size = s->scan.size;
				memset(&s->tx, 0, sizeof(s->tx));
			} else {
				session_reply(s, "%s", s->abort_reply);
				session_tx_reset(s);
			}
			tls_conn_set_bulk(s->tls, false);
			session_enter_state(s, SESSION_COMMAND);
			return taken;
		}
		if (s->relay != NULL &&
		    relay_write_queued(s->relay) > RELAY_WRITE_HIGH) {
			/* The backend is slower than the client: stop reading
			 * the client until it catches up. */
			s->blocked = true;
			return taken;
		}
	}
	return taken;
}
