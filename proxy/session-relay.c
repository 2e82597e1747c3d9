/* session-relay.c - see session-relay.h */
#include "proxy/metrics.h"
#include "proxy/session-relay.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/datascan.h"
#include "proxy/relay.h"
#include "proxy/replyq.h"
#include "proxy/policy.h"
#include "proxy/userlimits.h"
#include "proxy/sendermap.h"
#include "proxy/session-ehlo.h"
#include "proxy/shared.h"
#include "proxy/smtp-relay-parse.h"

enum session_relay_state {
	SESSION_RELAY_HANDOVER,	  /* first connect, before the 235 */
	SESSION_RELAY_CONNECTING, /* again, after an aborted message */
	SESSION_RELAY_READY,
	SESSION_RELAY_NONE, /* no backend: dropped with a message */
	SESSION_RELAY_DEAD, /* lost or unavailable: nothing more */
	SESSION_RELAY_STATE_COUNT
};

static const char *const session_relay_state_names[] = {
    [SESSION_RELAY_HANDOVER] = "handover",
    [SESSION_RELAY_CONNECTING] = "connecting",
    [SESSION_RELAY_READY] = "ready",
    [SESSION_RELAY_NONE] = "none",
    [SESSION_RELAY_DEAD] = "dead",
};
static_assert(sizeof(session_relay_state_names) /
		      sizeof(session_relay_state_names[0]) ==
		  SESSION_RELAY_STATE_COUNT,
	      "one name per session relay state");

/* The mail transaction as the proxy sees it (OpenSMTPD's smtp_tx):
 * created at MAIL, ended by the end of data, RSET, EHLO/HELO or a new
 * MAIL.  Relayed commands whose replies will still update it hold a
 * reference, so that a pipelined RSET cannot free it under them. */
struct session_tx {
	unsigned refs;
	char *sender;	     /* reverse path, "" = <> */
	uint32_t rcpts_sent; /* RCPTs relayed (max_recipients) */
	uint32_t rcpts_ok;   /* RCPTs the backend accepted */
	char *first_rcpt;    /* first accepted forward path */
	uint64_t size;	     /* set at end of data */
	bool smtputf8;	     /* the MAIL said SMTPUTF8 (RFC 6531 §3.4) */
};

/* A command for the backend, complete before it is queued: its line and
 * what its reply needs.  Some take a place in the queue without going to
 * the backend: the proxy answers them itself (local) when their turn
 * comes, so that replies stay in command order (RFC 2920 §3.1). */
struct relay_cmd {
	struct relay_cmd *next;
	enum smtp_verb verb;   /* as the client's reply is shaped */
	bool sent;	       /* went to the backend: its reply is owed */
	bool local;	       /* answered by the proxy with reply, in turn */
	bool swallow;	       /* its reply is the proxy's, not the client's */
	bool data_end;	       /* the "." ending a message */
	bool counted;	       /* RCPT, end of data: under send limits */
	char *reply;	       /* local: the answer (CR LF), once decided */
	char *path;	       /* RCPT: its forward path */
	struct session_tx *tx; /* RCPT, end of data: a reference */
	size_t len;
	char line[]; /* with CR LF */
};

struct session_relay {
	struct session_relay_env env;
	enum session_relay_state state;
	struct relay *relay;
	/* The backend of env.cfg's list connected or being connected to, and
	 * those this connect has tried (bit i: list[i]; README "Several
	 * backends"). */
	const struct config_backend *backend;
	uint32_t tried;
	unsigned ntried;
	char *user;
	char *helo; /* the client's, for XCLIENT and Received */

	/* Dispatched ones first (sent, or local with their answer), then
	 * the unsent. */
	struct relay_cmd *head, *tail;
	struct relay_cmd *unsent;
	uint32_t nsent; /* sent, reply owed */

	struct session_tx *tx; /* the transaction in progress, or NULL */
	bool in_data;	       /* after the 354, until the end of data */
	bool discard;	       /* an aborted message, read to its end */
	const char *abort_reply;
	struct datascan scan;
	/* For the Received header, from the last DATA: the TLS names are
	 * OpenSSL's static strings. */
	struct session_relay_client data_client;

	/* Send limits (proxy/policy.h), as set at the last MAIL: what the
	 * login had sent by then (sent), and what this session has sent
	 * since (accepted, counted in the store as it was) or has in
	 * flight (relayed, its reply not in yet). */
	bool limits_on;
	struct user_send_limits limits;
	struct policy_send_counts sent;
	uint32_t rcpts_since, rcpts_pending;
	uint32_t msgs_since, msgs_pending;
};

static void session_relay_enter_state(struct session_relay *sr,
				      enum session_relay_state state)
{
	log_debug(sr->env.sid, "event=session_relay_state from=%s to=%s",
		  session_relay_state_names[sr->state],
		  session_relay_state_names[state]);
	sr->state = state;
}

/* ---- the transaction ---- */

static struct session_tx *session_tx_create(const char *sender)
{
	struct session_tx *tx = xcalloc(1, sizeof(*tx));

	tx->refs = 1;
	tx->sender = xstrdup(sender);
	return tx;
}

static struct session_tx *session_tx_ref(struct session_tx *tx)
{
	if (tx != NULL)
		tx->refs++;
	return tx;
}

static void session_tx_unref(struct session_tx *tx)
{
	if (tx == NULL || --tx->refs > 0)
		return;
	free(tx->sender);
	free(tx->first_rcpt);
	free(tx);
}

static void session_relay_tx_end(struct session_relay *sr)
{
	session_tx_unref(sr->tx);
	sr->tx = NULL;
}

/* One line per message whose terminator went to the backend: with the
 * backend's reply (its first line), or, reply NULL, with why none came
 * (the backend may still have delivered it). */
static void session_relay_log_transaction(struct session_relay *sr,
					  const struct session_tx *tx,
					  const struct relay_reply *reply,
					  const char *error)
{
	char user[SANITIZE_BUFSIZE], from[SANITIZE_BUFSIZE];
	char text[SANITIZE_BUFSIZE] = "";
	size_t first;
	const char *crlf;

	if (reply != NULL) {
		crlf = memchr(reply->text, '\r', reply->len);
		first =
		    crlf != NULL ? (size_t)(crlf - reply->text) : reply->len;
		sanitize(text, sizeof(text), reply->text, first);
		metrics_transaction(reply->code, tx->rcpts_ok, tx->size);
	}
	log_info(sr->env.sid,
		 "event=transaction ip=%s user=\"%s\" from=<%s> rcpts=%u "
		 "size=%llu reply=\"%s\"%s%s%s",
		 sr->env.ip,
		 sanitize(user, sizeof(user), sr->user, strlen(sr->user)),
		 sanitize(from, sizeof(from), tx->sender, strlen(tx->sender)),
		 (unsigned)tx->rcpts_ok, (unsigned long long)tx->size, text,
		 error ? " error=\"" : "", error ? error : "",
		 error ? "\"" : "");
}

/* ---- capabilities ---- */

static size_t session_caps_render(const struct config *cfg,
				  const struct ehlo_caps *from,
				  char lines[][64], size_t max)
{
	size_t n = ehlo_caps_client(from, cfg->limits.max_message_size, lines,
				    max);

	return n + session_ehlo_limits(cfg, lines + n, max - n);
}

/* ---- the command queue ---- */

static void relay_cmd_free(struct relay_cmd *c)
{
	free(c->reply);
	free(c->path);
	session_tx_unref(c->tx);
	free(c);
}

static void session_relay_cmds_clear(struct session_relay *sr)
{
	while (sr->head != NULL) {
		struct relay_cmd *c = sr->head;

		sr->head = c->next;
		relay_cmd_free(c);
	}
	sr->tail = sr->unsent = NULL;
	sr->nsent = 0;
}

static struct relay_cmd *session_relay_pop(struct session_relay *sr)
{
	struct relay_cmd *c = sr->head;

	sr->head = c->next;
	if (sr->head == NULL)
		sr->tail = NULL;
	return c;
}

static void session_relay_answer(struct session_relay *sr, const char *text,
				 size_t len)
{
	bool owed = replyq_answer(sr->env.replies, text, len);

	/* Every command but a swallowed one took its place when queued. */
	assert(owed);
	(void)owed;
}

/* The commands the proxy answers itself leave the queue when they reach
 * its head: behind every reply owed before them. */
static void session_relay_answer_local(struct session_relay *sr)
{
	while (sr->head != NULL && sr->head->local && sr->head->reply != NULL) {
		struct relay_cmd *c = session_relay_pop(sr);

		session_relay_answer(sr, c->reply, strlen(c->reply));
		relay_cmd_free(c);
	}
}

/* EHLO/HELO after AUTH, answered from the capabilities of the connection
 * in use: our name first, then what a client is shown for them
 * (ehlo_caps_client(): pass-through extensions, SIZE capped). */
static char *session_relay_ehlo_reply(const struct session_relay *sr,
				      enum smtp_verb verb,
				      const struct ehlo_caps *caps)
{
	const char *host = sr->env.cfg->server.hostname;
	char lines[16][64];
	size_t n = 0, size, off;
	char *buf;

	if (verb == SMTP_VERB_EHLO)
		n = session_caps_render(sr->env.cfg, caps, lines, 16);
	size = strlen(host) + 8 + n * (sizeof(lines[0]) + 8);
	buf = xmalloc(size);
	off =
	    (size_t)snprintf(buf, size, "250%c%s\r\n", n > 0 ? '-' : ' ', host);
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, size - off, "250%c%s\r\n",
					i + 1 < n ? '-' : ' ', lines[i]);
	return buf;
}

/* The log line of a MAIL or RCPT refused as it was to go (the ones
 * refused when queued are logged by the session, as every refusal). */
static void session_relay_log_refusal(const struct session_relay *sr,
				      enum smtp_verb verb, const char *reason,
				      const char *reply)
{
	char text[SANITIZE_BUFSIZE];

	log_info(sr->env.sid,
		 "event=reject ip=%s cmd=%s reason=%s reply=\"%s\"", sr->env.ip,
		 smtp_verb_name(verb), reason,
		 sanitize(text, sizeof(text), reply, strlen(reply)));
}

/* A MAIL or RCPT line, filtered again for the connection it goes to (see
 * session_relay_dispatch()).  Returns false when it may not go: c is
 * then answered here, with the refusal it would have had when queued. */
static bool session_relay_refilter(struct session_relay *sr,
				   struct relay_cmd *c, unsigned caps)
{
	enum smtp_args_cmd kind =
	    c->verb == SMTP_VERB_MAIL ? SMTP_ARGS_MAIL : SMTP_ARGS_RCPT;
	/* "MAIL " or "RCPT " and the arguments, without CR LF. */
	size_t args_len = c->len - 7, size = c->len + 1;
	char *out = xmalloc(size), reply[600];
	struct smtp_args a;
	enum smtp_args_verdict v;

	v = smtp_args_filter(kind, c->line + 5, args_len, caps,
			     c->tx != NULL && c->tx->smtputf8, out, size, &a);
	if (v == SMTP_ARGS_OK) {
		/* Never longer than the line it came from. */
		memcpy(c->line, out, a.out_len);
		memcpy(c->line + a.out_len, "\r\n", 2);
		c->len = a.out_len + 2;
		free(out);
		return true;
	}
	free(out);
	if (c->counted) {
		/* Never relayed: not in flight any more. */
		sr->rcpts_pending--;
		c->counted = false;
	}
	smtp_args_reply(kind, v, &a, reply, sizeof(reply));
	session_relay_log_refusal(sr, c->verb, smtp_args_verdict_name(v),
				  reply);
	c->local = true;
	c->reply = xasprintf("%s\r\n", reply);
	return false;
}

/* What a command becomes is decided when it goes, not when it was
 * queued: only then are the capabilities of the connection it goes to
 * known.  After an aborted message the session queues commands while it
 * connects again (SESSION_RELAY_CONNECTING), perhaps to a backend with
 * fewer extensions than the last; relay_caps() is valid only once that
 * connection is ready, which is when the pump runs.  Commands checked
 * when queued against a ready connection pass again unchanged.  Returns
 * false when the proxy answers c itself. */
static bool session_relay_dispatch(struct session_relay *sr,
				   struct relay_cmd *c)
{
	const struct ehlo_caps *caps = relay_caps(sr->relay);

	if (c->local) {
		c->reply = session_relay_ehlo_reply(sr, c->verb, caps);
		return false;
	}
	if (c->verb == SMTP_VERB_MAIL || c->verb == SMTP_VERB_RCPT)
		return session_relay_refilter(sr, c, caps->caps);
	return true;
}

/* Sends what the backend may take now: everything with PIPELINING, one
 * command at a time without it (RFC 2920 is a promise the backend made,
 * or did not); then answers what the proxy answers itself and whose turn
 * it is. */
static void session_relay_pump(struct session_relay *sr)
{
	bool pipelining;

	if (sr->state != SESSION_RELAY_READY)
		return;
	pipelining = (relay_caps(sr->relay)->caps & EHLO_CAP_PIPELINING) != 0;
	while (sr->unsent != NULL && (pipelining || sr->nsent == 0)) {
		struct relay_cmd *c = sr->unsent;

		sr->unsent = c->next;
		if (!session_relay_dispatch(sr, c))
			continue;
		c->sent = true;
		sr->nsent++;
		/* A failed write is reported later, from the relay's
		 * callbacks: c stays valid here. */
		relay_send_command(sr->relay, c->line, c->len);
	}
	session_relay_answer_local(sr);
}

static const struct relay_callbacks session_relay_callbacks;

/* Connects to the next backend this connect has not tried: the first
 * healthy one of the list, or, when every one left is down, the first of
 * those (shared_backend_pick()).  False once all have been tried.  The
 * relay reports on a later loop turn, never from in here. */
static bool session_relay_try_next(struct session_relay *sr)
{
	const struct config *cfg = sr->env.cfg;
	struct relay_client client = {
	    .addr = sr->env.ip,
	    .port = sr->env.port,
	    .helo = sr->helo,
	    .login = sr->user,
	    .sid = sr->env.sid,
	};
	int i = shared_backend_pick(sr->env.shared, cfg, sr->tried);

	if (i < 0)
		return false;
	sr->tried |= UINT32_C(1) << i;
	sr->ntried++;
	sr->backend = &cfg->backend.list[i];
	sr->relay = relay_create(sr->env.loop, cfg, sr->backend, &client,
				 &session_relay_callbacks, sr);
	return true;
}

/* The hand-over, and the reconnect after an aborted message: a fresh
 * choice each time, so a backend that went down meanwhile is skipped. */
static void session_relay_connect(struct session_relay *sr)
{
	bool started;

	sr->tried = 0;
	sr->ntried = 0;
	started = session_relay_try_next(sr);
	/* Nothing tried yet: the list (at least one) has a candidate. */
	assert(started);
	(void)started;
}

/* Queues a whole command: verb NAME args, or line when given. */
static struct relay_cmd *session_relay_queue(struct session_relay *sr,
					     enum smtp_verb verb,
					     const char *text, size_t len)
{
	struct relay_cmd *c = xcalloc(1, sizeof(*c) + len + 2);

	c->verb = verb;
	memcpy(c->line, text, len);
	memcpy(c->line + len, "\r\n", 2);
	c->len = len + 2;
	return c;
}

/* Takes the command's reply place (unless its reply is swallowed) and
 * sends it when the backend may take it: the command is complete by
 * now. */
static void session_relay_push(struct session_relay *sr, struct relay_cmd *c)
{
	if (sr->tail != NULL)
		sr->tail->next = c;
	else
		sr->head = c;
	sr->tail = c;
	if (sr->unsent == NULL)
		sr->unsent = c;
	if (!c->swallow)
		replyq_expect(sr->env.replies);
	if (sr->state == SESSION_RELAY_NONE) {
		/* Dropped after an aborted message: connect again (EHLO and
		 * XCLIENT included) before this command goes. */
		session_relay_enter_state(sr, SESSION_RELAY_CONNECTING);
		session_relay_connect(sr);
		return;
	}
	session_relay_pump(sr);
}

/* "VERB args" as the backend gets it. */
static struct relay_cmd *session_relay_verb(struct session_relay *sr,
					    const struct smtp_cmd *cmd)
{
	const char *name = smtp_verb_name(cmd->verb);
	size_t name_len = strlen(name);
	struct relay_cmd *c =
	    xcalloc(1, sizeof(*c) + name_len + 1 + cmd->args_len + 2);
	size_t off = name_len;

	c->verb = cmd->verb;
	memcpy(c->line, name, name_len);
	if (cmd->args_len > 0) {
		c->line[off++] = ' ';
		memcpy(c->line + off, cmd->args, cmd->args_len);
		off += cmd->args_len;
	}
	memcpy(c->line + off, "\r\n", 2);
	c->len = off + 2;
	return c;
}

/* ---- replies ---- */

static void
session_relay_received_header(struct session_relay *sr,
			      const struct session_relay_client *client)
{
	char date[64], helo[SANITIZE_BUFSIZE], rcpt[SANITIZE_BUFSIZE];
	char tls_part[160], rcpt_part[SANITIZE_BUFSIZE + 16];
	char header[2048];
	struct tm tm;
	time_t now = time(NULL);
	bool tls = client->tls_version != NULL;
	const struct session_tx *tx = sr->tx;
	int n;

	localtime_r(&now, &tm);
	/* RFC 5322 §3.3 date-time. */
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	sanitize(helo, sizeof(helo), sr->helo ? sr->helo : "unknown",
		 sr->helo ? strlen(sr->helo) : 7);
	tls_part[0] = rcpt_part[0] = '\0';
	if (tls)
		snprintf(tls_part, sizeof(tls_part),
			 "\r\n\t(version=%s cipher=%s)", client->tls_version,
			 client->tls_cipher);
	/* "for" only with a single recipient: with several, it would tell
	 * each of them who else (Bcc) got the message. */
	if (tx != NULL && tx->rcpts_ok == 1 && tx->first_rcpt != NULL)
		snprintf(rcpt_part, sizeof(rcpt_part), "\r\n\tfor <%s>",
			 sanitize(rcpt, sizeof(rcpt), tx->first_rcpt,
				  strlen(tx->first_rcpt)));
	n = snprintf(header, sizeof(header),
		     "Received: from %s ([%s%s]) (authenticated)\r\n"
		     "\tby %s (submitproxy) with %s id %s%s%s;\r\n\t%s\r\n",
		     helo, strchr(sr->env.ip, ':') ? "IPv6:" : "", sr->env.ip,
		     sr->env.cfg->server.hostname, tls ? "ESMTPSA" : "ESMTPA",
		     sr->env.sid, tls_part, rcpt_part, date);
	if (n > 0 && (size_t)n < sizeof(header)) {
		relay_send_data(sr->relay, header, (size_t)n);
		sr->scan.size += (uint64_t)n;
	}
}

static void session_relay_lost(struct session_relay *sr, const char *why);

/* [relay] nul_bytes for the scanner.  RFC 5322 §3.5 (body text is
 * %d1-127) and RFC 2045 §2.7, §2.8 (7bit and 8bit data have no NULs)
 * allow none in a message, sendmail refuses such a message (554 5.6.1),
 * and a backend that drops NULs before it looks for the end of data could
 * read "\r\n\0.\r\n" as one.  So reject (the default) aborts the
 * message, strip removes them, and pass sends them stuffed so that
 * neither kind of backend reads an end there (datascan.h). */
static enum datascan_nul_mode
session_relay_nul_mode(enum nul_bytes_policy policy)
{
	switch (policy) {
	case NUL_BYTES_PASS:
		return DATASCAN_NUL_PASS;
	case NUL_BYTES_STRIP:
		return DATASCAN_NUL_STRIP;
	case NUL_BYTES_REJECT:
		break;
	}
	return DATASCAN_NUL_REJECT;
}

static void session_relay_on_reply(void *arg, const struct relay_reply *reply)
{
	struct session_relay *sr = arg;
	struct relay_cmd *c = sr->head;
	bool ok = reply->code >= 200 && reply->code < 300;

	if (c == NULL || !c->sent) {
		/* The relay counts the replies it is owed, and local
		 * commands at the head are answered at once: cannot
		 * happen. */
		assert(!"reply to no command");
		return;
	}
	session_relay_pop(sr);
	sr->nsent--;
	if (c->swallow) {
		relay_cmd_free(c);
		if (!ok) {
			/* The proxy's own RSET (behind an EHLO) failed: the
			 * backend's state is not what the client was told. */
			session_relay_lost(sr, "backend refused RSET");
			return;
		}
		session_relay_pump(sr);
		sr->env.cb->progress(sr->env.arg);
		return;
	}
	switch (c->verb) {
	case SMTP_VERB_RCPT:
		if (c->counted) {
			/* Only what the backend accepted counts. */
			sr->rcpts_pending--;
			if (ok) {
				sr->rcpts_since++;
				policy_recipient_accepted(sr->env.policy,
							  sr->env.cfg, sr->user,
							  strlen(sr->user));
			}
		}
		if (ok && c->tx != NULL) {
			c->tx->rcpts_ok++;
			if (c->tx->first_rcpt == NULL && c->path != NULL) {
				c->tx->first_rcpt = c->path;
				c->path = NULL;
			}
		}
		session_relay_answer(sr, reply->text, reply->len);
		break;
	case SMTP_VERB_DATA:
		if (c->data_end) {
			/* Never our 250: the backend's own verdict, logged
			 * with the transaction it ended (the client may have
			 * pipelined the next one already). */
			if (c->tx != NULL)
				session_relay_log_transaction(sr, c->tx, reply,
							      NULL);
			if (c->counted) {
				sr->msgs_pending--;
				if (ok) {
					sr->msgs_since++;
					policy_message_accepted(
					    sr->env.policy, sr->env.cfg,
					    sr->user, strlen(sr->user));
				}
			}
			session_relay_answer(sr, reply->text, reply->len);
			relay_cmd_free(c);
			sr->env.cb->message_done(sr->env.arg, ok);
			session_relay_pump(sr);
			sr->env.cb->progress(sr->env.arg);
			return;
		}
		session_relay_answer(sr, reply->text, reply->len);
		relay_cmd_free(c);
		if (reply->code == 354) {
			datascan_init(&sr->scan,
				      session_relay_nul_mode(
					  sr->env.cfg->relay.nul_bytes));
			sr->in_data = true;
			sr->discard = false;
			sr->abort_reply = NULL;
			/* The Received: line waits for the message's first
			 * bytes and leaves with them in one write (the
			 * session uncorks once it has handled the client's
			 * read: session_relay_uncork()). */
			relay_cork(sr->relay);
			if (sr->env.cfg->relay.received_header)
				session_relay_received_header(sr,
							      &sr->data_client);
		}
		sr->env.cb->data_reply(sr->env.arg, reply->code == 354);
		sr->env.cb->progress(sr->env.arg);
		return;
	case SMTP_VERB_QUIT:
		session_relay_answer(sr, reply->text, reply->len);
		relay_cmd_free(c);
		sr->env.cb->quit(sr->env.arg);
		return;
	default:
		session_relay_answer(sr, reply->text, reply->len);
		break;
	}
	relay_cmd_free(c);
	session_relay_pump(sr);
	sr->env.cb->progress(sr->env.arg);
}

static void session_relay_on_ready(void *arg)
{
	struct session_relay *sr = arg;
	bool handover = sr->state == SESSION_RELAY_HANDOVER;

	/* The backend is up, and what it just announced is what the
	 * pre-auth EHLO may promise of it: no probe is needed while
	 * sessions keep coming (proxy/probe.h). */
	shared_backend_up(sr->env.shared, sr->backend, relay_caps(sr->relay),
			  "session", sr->env.sid);
	session_relay_enter_state(sr, SESSION_RELAY_READY);
	if (handover) {
		sr->env.cb->ready(sr->env.arg);
		return;
	}
	session_relay_pump(sr);
	sr->env.cb->progress(sr->env.arg);
}

/* The backend is gone mid-session: nothing the client sent is known to
 * be delivered, so it must not believe otherwise.  The reply owed first
 * gets 451; the session then ends with 421 and the client retries. */
static void session_relay_lost(struct session_relay *sr, const char *why)
{
	static const char lost[] = "451 4.4.2 Backend connection lost\r\n";

	log_info(sr->env.sid,
		 "event=backend_lost ip=%s backend=%s state=%s in_data=%s "
		 "error=\"%s\"",
		 sr->env.ip, sr->backend->address,
		 session_relay_state_names[sr->state],
		 sr->in_data ? "yes" : "no", why);
	/* The audit trail has every message that went to the backend, also
	 * those whose fate is unknown. */
	for (const struct relay_cmd *c = sr->head; c != NULL; c = c->next)
		if (c->data_end && c->tx != NULL)
			session_relay_log_transaction(
			    sr, c->tx, NULL,
			    "backend connection lost before its reply");
	relay_destroy(sr->relay);
	sr->relay = NULL;
	session_relay_enter_state(sr, SESSION_RELAY_DEAD);
	session_relay_cmds_clear(sr);
	if (replyq_relayed(sr->env.replies) > 0 && !sr->in_data)
		replyq_answer(sr->env.replies, lost, sizeof(lost) - 1);
	replyq_clear(sr->env.replies);
	sr->env.cb->lost(sr->env.arg);
}

/* A hand-over failed (connect, greeting, EHLO, XCLIENT, timeout: all that
 * relay.c reports before ready): that backend is down, and the next one
 * is tried.  True if one is being tried; false once all have been. */
static bool session_relay_failover(struct session_relay *sr, const char *why)
{
	const char *failed = sr->backend->address;

	/* A backend that refused this client (relay_client_refused()) is
	 * still up for everyone else; another one may take the client. */
	if (!relay_client_refused(sr->relay))
		shared_backend_down(sr->env.shared, sr->env.cfg, sr->backend,
				    why, sr->env.sid);
	relay_destroy(sr->relay);
	sr->relay = NULL;
	if (!session_relay_try_next(sr))
		return false;
	log_info(sr->env.sid,
		 "event=backend_failover ip=%s from=%s to=%s error=\"%s\"",
		 sr->env.ip, failed, sr->backend->address, why);
	return true;
}

static void session_relay_on_failed(void *arg, const char *why)
{
	struct session_relay *sr = arg;

	if ((sr->state == SESSION_RELAY_HANDOVER ||
	     sr->state == SESSION_RELAY_CONNECTING) &&
	    session_relay_failover(sr, why))
		return;
	if (sr->state == SESSION_RELAY_HANDOVER) {
		session_relay_cmds_clear(sr);
		session_relay_enter_state(sr, SESSION_RELAY_DEAD);
		sr->env.cb->unavailable(sr->env.arg, why);
		return;
	}
	if (sr->head != NULL && sr->head->sent &&
	    sr->head->verb == SMTP_VERB_QUIT) {
		/* After QUIT the backend closing is the expected end; its
		 * 221 did not come, so the proxy says it. */
		char line[300];
		int n = snprintf(line, sizeof(line),
				 "221 2.0.0 %s closing connection\r\n",
				 sr->env.cfg->server.hostname);

		relay_destroy(sr->relay);
		sr->relay = NULL;
		session_relay_cmds_clear(sr);
		session_relay_enter_state(sr, SESSION_RELAY_DEAD);
		replyq_answer(sr->env.replies, line, (size_t)n);
		sr->env.cb->quit(sr->env.arg);
		return;
	}
	session_relay_lost(sr, why);
}

static void session_relay_on_drained(void *arg)
{
	struct session_relay *sr = arg;

	sr->env.cb->progress(sr->env.arg);
}

static const struct relay_callbacks session_relay_callbacks = {
    .ready = session_relay_on_ready,
    .failed = session_relay_on_failed,
    .reply = session_relay_on_reply,
    .drained = session_relay_on_drained,
};

/* ---- life ---- */

struct session_relay *session_relay_create(const struct session_relay_env *env,
					   const char *user, const char *helo)
{
	struct session_relay *sr = xcalloc(1, sizeof(*sr));

	sr->env = *env;
	sr->user = xstrdup(user);
	sr->helo = helo ? xstrdup(helo) : NULL;
	sr->state = SESSION_RELAY_HANDOVER;
	session_relay_connect(sr);
	return sr;
}

void session_relay_destroy(struct session_relay *sr)
{
	if (sr == NULL)
		return;
	/* Mid-DATA this closes the backend without the terminator: the
	 * backend discards the partial message. */
	relay_destroy(sr->relay);
	session_relay_cmds_clear(sr);
	session_relay_tx_end(sr);
	free(sr->user);
	free(sr->helo);
	free(sr);
}

const char *session_relay_user(const struct session_relay *sr)
{
	return sr->user;
}

const char *session_relay_backend(const struct session_relay *sr)
{
	return sr->backend->address;
}

unsigned session_relay_tried(const struct session_relay *sr)
{
	return sr->ntried;
}

void session_relay_cork(struct session_relay *sr)
{
	if (sr != NULL)
		relay_cork(sr->relay);
}

void session_relay_uncork(struct session_relay *sr)
{
	if (sr != NULL)
		relay_uncork(sr->relay);
}

bool session_relay_busy(const struct session_relay *sr)
{
	return sr->relay != NULL &&
	       relay_write_queued(sr->relay) > RELAY_WRITE_HIGH;
}

bool session_relay_owes(const struct session_relay *sr)
{
	return sr->head != NULL;
}

bool session_relay_owes_message(const struct session_relay *sr)
{
	for (const struct relay_cmd *c = sr->head; c != NULL; c = c->next)
		if (c->data_end)
			return true;
	return false;
}

/* ---- commands ---- */

static void refusal_set(char *refusal, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refusal_set(char *refusal, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(refusal, size, fmt, ap);
	va_end(ap);
}

/* The extensions a MAIL or RCPT is checked against when queued: those of
 * the connection once it is ready; while it connects again, all the
 * proxy could offer, so that only what no backend could take is refused
 * now and the rest when the command goes (session_relay_dispatch()). */
static unsigned session_relay_caps_now(const struct session_relay *sr)
{
	if (sr->state == SESSION_RELAY_READY)
		return relay_caps(sr->relay)->caps;
	return EHLO_CAPS_PASS;
}

/* MAIL and RCPT through smtp_args_filter(): a refusal is answered now,
 * with its reason for the log line; otherwise out holds the line. */
static bool session_relay_args(struct session_relay *sr,
			       enum smtp_args_cmd kind,
			       const struct smtp_cmd *cmd, bool tx_smtputf8,
			       char *out, size_t out_size, struct smtp_args *a,
			       char *refusal, size_t refusal_size,
			       const char **reason_r)
{
	enum smtp_args_verdict v;

	v = smtp_args_filter(kind, cmd->args, cmd->args_len,
			     session_relay_caps_now(sr), tx_smtputf8, out,
			     out_size, a);
	if (v == SMTP_ARGS_OK)
		return true;
	smtp_args_reply(kind, v, a, refusal, refusal_size);
	*reason_r = smtp_args_verdict_name(v);
	return false;
}

void session_relay_send_limits(struct session_relay *sr,
			       const struct user_send_limits *limits,
			       const struct policy_send_counts *sent)
{
	sr->limits_on = sent != NULL;
	if (!sr->limits_on)
		return;
	sr->limits = *limits;
	sr->sent = *sent;
	/* What was accepted before is in the counts just read; what is in
	 * flight is not yet. */
	sr->rcpts_since = 0;
	sr->msgs_since = 0;
}

/* Whether used reaches the login's limit for which: then the refusal
 * (451: the limit lifts as its window passes), and the warn line the
 * first time in the window. */
static bool session_relay_over_limit(struct session_relay *sr,
				     enum policy_limit which, uint64_t used,
				     char *refusal, size_t refusal_size,
				     const char **reason_r)
{
	static const char *const what[POLICY_LIMIT_COUNT] = {
	    [POLICY_LIMIT_MESSAGES_HOUR] = "messages per hour",
	    [POLICY_LIMIT_RECIPIENTS_HOUR] = "recipients per hour",
	    [POLICY_LIMIT_RECIPIENTS_DAY] = "recipients per day",
	};
	const uint32_t limits[POLICY_LIMIT_COUNT] = {
	    [POLICY_LIMIT_MESSAGES_HOUR] = sr->limits.messages_per_hour,
	    [POLICY_LIMIT_RECIPIENTS_HOUR] = sr->limits.recipients_per_hour,
	    [POLICY_LIMIT_RECIPIENTS_DAY] = sr->limits.recipients_per_day,
	};
	uint32_t limit = limits[which];

	if (limit == 0 || used < limit)
		return false;
	refusal_set(refusal, refusal_size,
		    "451 4.7.1 Sending limit reached: %u %s; try again later",
		    (unsigned)limit, what[which]);
	*reason_r = policy_limit_name(which);
	policy_limit_reached(sr->env.policy, sr->env.cfg, sr->env.sid, sr->user,
			     strlen(sr->user), which, limit, used,
			     sr->sent.ttl_ms[which]);
	return true;
}

/* MAIL under send limits: the messages of the hour. */
static bool session_relay_mail_limited(struct session_relay *sr,
				       char *refusal, size_t refusal_size,
				       const char **reason_r)
{
	if (!sr->limits_on)
		return false;
	if (sr->sent.store_error) {
		/* [policy] on_store_error = tempfail. */
		refusal_set(refusal, refusal_size,
			    "451 4.3.0 Temporary failure checking sending "
			    "limits, try again later");
		*reason_r = "policy_store";
		return true;
	}
	return session_relay_over_limit(
	    sr, POLICY_LIMIT_MESSAGES_HOUR,
	    sr->sent.count[POLICY_LIMIT_MESSAGES_HOUR] + sr->msgs_since +
		sr->msgs_pending,
	    refusal, refusal_size, reason_r);
}

/* RCPT under send limits: the recipients of the hour and of the day. */
static bool session_relay_rcpt_limited(struct session_relay *sr,
				       char *refusal, size_t refusal_size,
				       const char **reason_r)
{
	uint64_t mine = (uint64_t)sr->rcpts_since + sr->rcpts_pending;

	if (!sr->limits_on || sr->sent.store_error)
		return false;
	return session_relay_over_limit(
		   sr, POLICY_LIMIT_RECIPIENTS_HOUR,
		   sr->sent.count[POLICY_LIMIT_RECIPIENTS_HOUR] + mine, refusal,
		   refusal_size, reason_r) ||
	       session_relay_over_limit(
		   sr, POLICY_LIMIT_RECIPIENTS_DAY,
		   sr->sent.count[POLICY_LIMIT_RECIPIENTS_DAY] + mine, refusal,
		   refusal_size, reason_r);
}

static enum session_relay_verdict
session_relay_mail(struct session_relay *sr, const struct smtp_cmd *cmd,
		   char *refusal, size_t refusal_size, const char **reason_r)
{
	char text[SANITIZE_BUFSIZE];
	/* Sized from the command: the filter only removes parameters, and a
	 * path is part of the line (max_line_length, not a fixed cap). */
	size_t size = cmd->args_len + 16;
	char *line = xmalloc(size), *path = NULL;
	enum session_relay_verdict verdict = SESSION_RELAY_REFUSED;
	struct smtp_args a;

	if (!session_relay_args(sr, SMTP_ARGS_MAIL, cmd, false, line, size, &a,
				refusal, refusal_size, reason_r))
		goto out;
	if (a.size > sr->env.cfg->limits.max_message_size) {
		/* RFC 1870 §6.1: refused at MAIL, before any byte. */
		refusal_set(refusal, refusal_size,
			    "552 5.3.4 Message size exceeds fixed maximum "
			    "message size");
		*reason_r = "message_size";
		goto out;
	}
	if (session_relay_mail_limited(sr, refusal, refusal_size, reason_r))
		goto out;
	path = xmemdup(a.path, a.path_len);
	if (*sr->env.sendermap != NULL &&
	    !sendermap_allows(*sr->env.sendermap, sr->user, path)) {
		/* As Postfix's reject_sender_login_mismatch. */
		log_info(sr->env.sid,
			 "event=reject ip=%s reason=sender_map from=<%s>",
			 sr->env.ip,
			 sanitize(text, sizeof(text), path, strlen(path)));
		refusal_set(
		    refusal, refusal_size,
		    "553 5.7.1 Sender address rejected: not owned by "
		    "user %s",
		    sanitize(text, sizeof(text), sr->user, strlen(sr->user)));
		goto out;
	}
	session_relay_tx_end(sr);
	sr->tx = session_tx_create(path);
	sr->tx->smtputf8 = a.smtputf8;
	session_relay_push(
	    sr, session_relay_queue(sr, SMTP_VERB_MAIL, line, a.out_len));
	verdict = SESSION_RELAY_QUEUED;
out:
	free(path);
	free(line);
	return verdict;
}

static enum session_relay_verdict
session_relay_rcpt(struct session_relay *sr, const struct smtp_cmd *cmd,
		   char *refusal, size_t refusal_size, const char **reason_r)
{
	size_t size = cmd->args_len + 16;
	char *line = xmalloc(size);
	struct smtp_args a;
	struct relay_cmd *c;

	/* RFC 6531 §3.7.4: a non-ASCII forward-path needs a MAIL that said
	 * SMTPUTF8. */
	if (!session_relay_args(sr, SMTP_ARGS_RCPT, cmd,
				sr->tx != NULL && sr->tx->smtputf8, line, size,
				&a, refusal, refusal_size, reason_r)) {
		free(line);
		return SESSION_RELAY_REFUSED;
	}
	if (sr->tx != NULL) {
		if (sr->tx->rcpts_sent >= sr->env.cfg->limits.max_recipients) {
			refusal_set(refusal, refusal_size,
				    "452 4.5.3 Too many recipients");
			*reason_r = "max_recipients";
			free(line);
			return SESSION_RELAY_REFUSED;
		}
		/* A refused one counts too: max_recipients bounds the
		 * refusals of one transaction. */
		sr->tx->rcpts_sent++;
		if (session_relay_rcpt_limited(sr, refusal, refusal_size,
					       reason_r)) {
			free(line);
			return SESSION_RELAY_REFUSED;
		}
	}
	c = session_relay_queue(sr, SMTP_VERB_RCPT, line, a.out_len);
	if (sr->limits_on && sr->tx != NULL) {
		c->counted = true;
		sr->rcpts_pending++;
	}
	c->path = xmemdup(a.path, a.path_len);
	c->tx = session_tx_ref(sr->tx);
	free(line);
	session_relay_push(sr, c);
	return SESSION_RELAY_QUEUED;
}

/* EHLO/HELO after AUTH.  The backend had the proxy's EHLO at the
 * hand-over and may refuse a second one (OpenSMTPD: "503 5.5.1 Invalid
 * command: Already identified"), so the proxy answers it itself, in its
 * turn, from the capabilities of the connection in use (decided when its
 * turn comes: session_relay_dispatch()).  RFC 5321 §4.1.4: it also
 * resets the transaction; one open at the backend (MAIL sent) gets an
 * RSET whose reply is the proxy's, not the client's. */
static void session_relay_ehlo(struct session_relay *sr,
			       const struct smtp_cmd *cmd)
{
	struct relay_cmd *c;

	/* For the Received header and a later XCLIENT HELO=. */
	free(sr->helo);
	sr->helo = xmemdup(cmd->args, cmd->args_len);
	if (sr->tx != NULL) {
		c = session_relay_queue(sr, SMTP_VERB_RSET, "RSET", 4);
		c->swallow = true;
		session_relay_push(sr, c);
	}
	session_relay_tx_end(sr);
	c = session_relay_verb(sr, cmd);
	c->local = true;
	session_relay_push(sr, c);
}

static bool session_relay_args_plain(const struct smtp_cmd *cmd)
{
	for (size_t i = 0; i < cmd->args_len; i++) {
		unsigned char c = (unsigned char)cmd->args[i];

		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

enum session_relay_verdict
session_relay_command(struct session_relay *sr, const struct smtp_cmd *cmd,
		      const struct session_relay_client *client, char *refusal,
		      size_t refusal_size, const char **reason_r)
{
	*reason_r = NULL;
	switch (cmd->verb) {
	case SMTP_VERB_EHLO:
	case SMTP_VERB_HELO:
		session_relay_ehlo(sr, cmd);
		return SESSION_RELAY_QUEUED;
	case SMTP_VERB_MAIL:
		return session_relay_mail(sr, cmd, refusal, refusal_size,
					  reason_r);
	case SMTP_VERB_RCPT:
		return session_relay_rcpt(sr, cmd, refusal, refusal_size,
					  reason_r);
	case SMTP_VERB_DATA:
		/* The Received header, if the 354 comes, describes this. */
		sr->data_client = *client;
		break;
	case SMTP_VERB_RSET:
		session_relay_tx_end(sr);
		break;
	default:
		break;
	}
	if (!session_relay_args_plain(cmd)) {
		/* VRFY, EXPN, HELP, NOOP: their argument goes as it is, so
		 * only what any backend reads the same way (RFC 5321: SP
		 * separates; no 8-bit byte unless SMTPUTF8 was agreed). */
		refusal_set(refusal, refusal_size,
			    "501 5.5.2 Argument must be printable ASCII");
		*reason_r = "non_ascii_argument";
		return SESSION_RELAY_REFUSED;
	}
	session_relay_push(sr, session_relay_verb(sr, cmd));
	return SESSION_RELAY_QUEUED;
}

/* ---- DATA ---- */

/* Stops relaying the message: the backend connection is closed without
 * the terminator, so the backend discards what it got; the client's
 * bytes are read to their end of data and then answered with reply. */
static void session_relay_data_abort(struct session_relay *sr,
				     const char *reply, const char *reason)
{
	log_info(sr->env.sid,
		 "event=transaction_abort ip=%s reason=%s size=%llu",
		 sr->env.ip, reason, (unsigned long long)sr->scan.size);
	relay_destroy(sr->relay);
	sr->relay = NULL;
	session_relay_cmds_clear(sr);
	session_relay_enter_state(sr, SESSION_RELAY_NONE);
	sr->abort_reply = reply;
	sr->discard = true;
}

size_t session_relay_data(struct session_relay *sr, const char *data,
			  size_t len, bool *done)
{
	char *out = sr->env.data_buf;
	size_t taken = 0;

	*done = false;
	assert(sr->in_data);
	while (taken < len) {
		size_t chunk = len - taken, out_len = 0, consumed = 0;
		enum datascan_result r;

		if (chunk > sr->env.data_chunk)
			chunk = sr->env.data_chunk;
		r = datascan_feed(&sr->scan, data + taken, chunk, out, &out_len,
				  &consumed);
		taken += consumed;
		if (!sr->discard) {
			if (sr->scan.size >
			    sr->env.cfg->limits.max_message_size) {
				session_relay_data_abort(
				    sr,
				    "552 5.3.4 Message size exceeds fixed "
				    "maximum message size\r\n",
				    "size");
			} else if (sr->scan.bare_newlines > 0 &&
				   sr->env.cfg->relay.bare_newline ==
				       BARE_NEWLINE_REJECT) {
				session_relay_data_abort(
				    sr,
				    "550 5.6.0 Message contains bare CR or "
				    "LF\r\n",
				    "bare_newline");
			} else if (sr->scan.nul_bytes > 0 &&
				   sr->scan.nul_mode == DATASCAN_NUL_REJECT) {
				session_relay_data_abort(
				    sr,
				    "554 5.6.0 Message contains NUL "
				    "characters\r\n",
				    "nul_bytes");
			} else {
				/* A failed write is reported later. */
				relay_send_data(sr->relay, out, out_len);
			}
		}
		if (r == DATASCAN_DONE) {
			sr->in_data = false;
			*done = true;
			if (!sr->discard) {
				struct relay_cmd *c = session_relay_queue(
				    sr, SMTP_VERB_DATA, ".", 1);

				/* The transaction ends here for the client,
				 * which may pipeline the next MAIL now; the
				 * reply, when it comes, is logged with it. */
				c->data_end = true;
				if (sr->limits_on) {
					c->counted = true;
					sr->msgs_pending++;
				}
				if (sr->tx != NULL)
					sr->tx->size = sr->scan.size;
				c->tx = sr->tx;
				sr->tx = NULL;
				session_relay_push(sr, c);
			} else {
				replyq_local(sr->env.replies, sr->abort_reply,
					     strlen(sr->abort_reply));
				sr->discard = false;
				session_relay_tx_end(sr);
			}
			return taken;
		}
		if (session_relay_busy(sr))
			return taken; /* the backend is slower than the client
				       */
	}
	return taken;
}
