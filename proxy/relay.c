/* relay.c - see relay.h */
#include "proxy/relay.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "config/config.h"
#include "proxy/linebuf.h"
#include "proxy/metrics.h"
#include "common/log.h"
#include "proxy/smtp-parse.h"
#include "common/util.h"

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; be generous
 * with old MTAs, strict about the total. */
#define RELAY_LINE_MAX 4096
#define RELAY_READ_BUFSIZE 4096
/* Postfix's smtpd accepts command lines up to 2048 bytes; the longest
 * XCLIENT we build (a 255-byte HELO and a 256-byte login, both xtext
 * tripled) stays under that. */
#define RELAY_XCLIENT_MAX 2048


enum relay_state {
	RELAY_CONNECTING,
	RELAY_GREETING,
	RELAY_EHLO,
	RELAY_HELO,
	RELAY_XCLIENT,
	RELAY_XCLIENT_EHLO,
	RELAY_READY,
	RELAY_FAILED,
	RELAY_CLOSED,
	RELAY_STATE_COUNT
};

static const char *const relay_state_names[] = {
	[RELAY_CONNECTING] = "connecting", [RELAY_GREETING] = "greeting",
	[RELAY_EHLO] = "ehlo",             [RELAY_HELO] = "helo",
	[RELAY_XCLIENT] = "xclient",       [RELAY_XCLIENT_EHLO] = "xclient_ehlo",
	[RELAY_READY] = "ready",           [RELAY_FAILED] = "failed",
	[RELAY_CLOSED] = "closed",
};
static_assert(sizeof(relay_state_names) / sizeof(relay_state_names[0]) ==
		      RELAY_STATE_COUNT,
	      "one name per relay state");

struct relay {
	uv_loop_t *loop;
	const struct config *cfg;
	const struct config_backend *backend; /* in cfg */
	const struct relay_callbacks *cb;
	void *arg;
	enum relay_state state;
	bool probe;
	uint64_t started_ns; /* uv_hrtime() at create: connect latency */
	char sid[17];

	/* The client as XCLIENT describes it (copies). */
	char *client_addr, *client_helo, *client_login;
	unsigned client_port;

	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_stream_t *stream;
	uv_connect_t connect_req;
	uv_timer_t timer;
	int open_handles;
	bool reading;

	struct linebuf lines;
	char *reply;            /* the reply being read */
	size_t reply_len, reply_cap, reply_lines;
	int reply_code;
	uint32_t awaiting;      /* replies owed to commands sent */
	size_t write_queued;
	bool want_drained;
	/* relay_cork(): what relay_write() got meanwhile, written at
	 * relay_uncork() at once. */
	bool corked;
	char *cork;
	size_t cork_len, cork_cap;
	bool quit_sent;
	bool client_refused;        /* the EHLO in the client's name refused */
	const char *connect_error;  /* reported from the timer */
	const char *write_error;    /* likewise: a send's failure */

	struct ehlo_caps caps;
	bool esmtp;
};

struct relay_write {
	uv_write_t req;
	struct relay *r;
	size_t len;
	char data[];
};

/* While corked, a write shorter than this is copied into the cork; a
 * longer one (a message's chunk) is written at once, with what the cork
 * holds in front of it: copying it would cost more than the write saved. */
#define RELAY_CORK_COPY_MAX 4096

static void relay_fail(struct relay *r, const char *why);
static void relay_fail_later(struct relay *r, const char *why);
static void relay_timer_restart(struct relay *r);

static const char *relay_log_sid(const struct relay *r)
{
	return r->sid[0] ? r->sid : NULL;
}

static void relay_enter_state(struct relay *r, enum relay_state state)
{
	log_debug(relay_log_sid(r), "event=relay_state from=%s to=%s",
		  relay_state_names[r->state], relay_state_names[state]);
	r->state = state;
}

/* ---- writing ---- */

static void relay_on_write(uv_write_t *req, int status)
{
	struct relay_write *w = (struct relay_write *)req;
	struct relay *r = w->r;

	r->write_queued -= w->len;
	free(w);
	if (r->state >= RELAY_FAILED)
		return;
	if (status < 0) {
		relay_fail(r, uv_strerror(status));
		return;
	}
	relay_timer_restart(r);
	if (r->want_drained && r->write_queued <= RELAY_WRITE_LOW) {
		r->want_drained = false;
		if (r->cb->drained != NULL)
			r->cb->drained(r->arg);
	}
}

/* Writes bufs[0..n) in order, now: what the socket takes at once without
 * a copy or an allocation (most writes fit its buffer), the rest copied
 * into one queued write. */
static void relay_write_out(struct relay *r, const uv_buf_t *bufs, unsigned n)
{
	struct relay_write *w;
	uv_buf_t buf;
	size_t total = 0, skip = 0, off = 0;
	int rc;

	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	if (r->write_queued == 0) {
		rc = uv_try_write(r->stream, bufs, n);
		if (rc > 0) {
			skip = (size_t)rc;
		} else if (rc != UV_EAGAIN && rc != UV_ENOSYS) {
			relay_fail_later(r, uv_strerror(rc));
			return;
		}
		if (skip == total) {
			relay_timer_restart(r);
			return;
		}
	}
	w = xmalloc(sizeof(*w) + (total - skip));
	w->r = r;
	w->len = total - skip;
	for (unsigned i = 0; i < n; i++) {
		size_t len = bufs[i].len, from = 0;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		from = skip;
		skip = 0;
		memcpy(w->data + off, bufs[i].base + from, len - from);
		off += len - from;
	}
	buf = uv_buf_init(w->data, (unsigned)w->len);
	rc = uv_write(&w->req, r->stream, &buf, 1, relay_on_write);
	if (rc < 0) {
		free(w);
		relay_fail_later(r, uv_strerror(rc));
		return;
	}
	r->write_queued += w->len;
	if (r->write_queued > RELAY_WRITE_HIGH)
		r->want_drained = true;
	relay_timer_restart(r);
}

static void relay_write(struct relay *r, const char *data, size_t len)
{
	uv_buf_t bufs[2];

	if (len == 0 || r->state >= RELAY_FAILED || r->write_error != NULL)
		return;
	if (r->corked && len < RELAY_CORK_COPY_MAX) {
		if (r->cork_cap - r->cork_len < len) {
			r->cork_cap = r->cork_len + len + 1024;
			r->cork = xrealloc(r->cork, r->cork_cap);
		}
		memcpy(r->cork + r->cork_len, data, len);
		r->cork_len += len;
		return;
	}
	if (r->corked && r->cork_len > 0) {
		/* A message's chunk is not copied into the cork: what the
		 * cork holds (the Received: line, say) leaves with it in
		 * one write, and the cork goes on with what follows. */
		bufs[0] = uv_buf_init(r->cork, (unsigned)r->cork_len);
		bufs[1] = uv_buf_init((char *)data, (unsigned)len);
		r->cork_len = 0;
		relay_write_out(r, bufs, 2);
		return;
	}
	bufs[0] = uv_buf_init((char *)data, (unsigned)len);
	relay_write_out(r, bufs, 1);
}

static void relay_command(struct relay *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A command of the relay's own (hand-over, probe). */
static void relay_command(struct relay *r, const char *fmt, ...)
{
	char line[RELAY_XCLIENT_MAX + 16];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		relay_fail_later(r, "command too long");
		return;
	}
	memcpy(line + n, "\r\n", 2);
	r->awaiting++;
	relay_write(r, line, (size_t)n + 2);
}

void relay_send_command(struct relay *r, const char *line, size_t len)
{
	if (len >= 4 && strncasecmp(line, "QUIT", 4) == 0)
		r->quit_sent = true;  /* the backend will close: no error */
	r->awaiting++;
	relay_write(r, line, len);
}

void relay_send_data(struct relay *r, const char *data, size_t len)
{
	relay_write(r, data, len);
}

size_t relay_write_queued(const struct relay *r)
{
	return r->write_queued;
}

void relay_cork(struct relay *r)
{
	if (r != NULL && r->state < RELAY_FAILED)
		r->corked = true;
}

void relay_uncork(struct relay *r)
{
	char *data;
	size_t len;

	if (r == NULL || !r->corked)
		return;
	r->corked = false;
	data = r->cork;
	len = r->cork_len;
	r->cork = NULL;
	r->cork_len = r->cork_cap = 0;
	/* A failure here is reported later, as for any write. */
	relay_write(r, data, len);
	free(data);
}

/* ---- timers ---- */

static void relay_on_timer(uv_timer_t *t)
{
	struct relay *r = t->data;

	if (r->write_error != NULL)
		relay_fail(r, r->write_error);
	else if (r->connect_error != NULL)
		relay_fail(r, r->connect_error);
	else if (r->state == RELAY_CONNECTING)
		relay_fail(r, "connect timeout");
	else if (r->state < RELAY_READY)
		relay_fail(r, "hand-over timeout");
	else
		relay_fail(r, "backend timeout");
}

/* [backend] timeout runs while we wait for the backend: a reply owed, or
 * bytes it has not taken yet; any progress restarts it. */
static void relay_timer_restart(struct relay *r)
{
	/* Until ready, one deadline for the whole hand-over runs from the
	 * connect (handover_timeout): a backend that accepts and then says
	 * nothing must not hold a client's AUTH for [backend] timeout
	 * before the next backend is tried. */
	if (r->state >= RELAY_FAILED || r->state < RELAY_READY ||
	    r->write_error != NULL)
		return;
	if (r->awaiting > 0 || r->write_queued > 0)
		uv_timer_start(&r->timer, relay_on_timer,
			       r->cfg->backend.timeout_ms, 0);
	else
		uv_timer_stop(&r->timer);
}

/* ---- the hand-over ---- */

static void relay_send_xclient(struct relay *r)
{
	struct xclient_client client = {
	    .addr = r->client_addr,
	    .port = r->client_port,
	    .helo = r->client_helo,
	    .login = r->client_login,
	};
	char line[RELAY_XCLIENT_MAX];

	/* Only the attributes the backend listed (Postfix XCLIENT_README). */
	if (xclient_build(&client, r->caps.xclient_attrs, line, sizeof(line)) <
	    0) {
		relay_fail(r, "XCLIENT line too long");
		return;
	}
	relay_enter_state(r, RELAY_XCLIENT);
	relay_command(r, "%s", line);
}

bool relay_xclient_wanted(const struct config_backend *backend,
			  const struct ehlo_caps *caps)
{
	switch (backend->xclient) {
	case XCLIENT_YES:
		return true;
	case XCLIENT_AUTO:
		return (caps->caps & EHLO_CAP_XCLIENT) != 0;
	case XCLIENT_NO:
	default:
		return false;
	}
}

static bool relay_wants_xclient(const struct relay *r)
{
	if (r->probe || !r->esmtp)
		return false;
	return relay_xclient_wanted(r->backend, &r->caps);
}

static void relay_ready(struct relay *r)
{
	relay_enter_state(r, RELAY_READY);
	/* From here on [backend] timeout, while something is owed. */
	relay_timer_restart(r);
	if (r->probe) {
		/* A polite end: the owner (proxy/probe.c) destroys us at the
		 * QUIT's reply, or when the backend closes or times out. */
		r->awaiting++;
		r->quit_sent = true;
		relay_write(r, "QUIT\r\n", 6);
	}
	r->cb->ready(r->arg);
}

/* A name that may go on a command line to any backend as it is: visible
 * ASCII only (no SP, no control, no 8-bit byte a backend without
 * SMTPUTF8 never agreed to). */
static bool relay_helo_plain(const char *helo)
{
	if (helo == NULL || *helo == '\0')
		return false;
	for (const char *p = helo; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

/* A whole reply during the hand-over. */
static void relay_handover_reply(struct relay *r)
{
	int code = r->reply_code;

	switch (r->state) {
	case RELAY_GREETING:
		if (code != 220) {
			relay_fail(r, "backend greeting is not 220");
			return;
		}
		if (!r->probe)
			metrics_backend_connected(
			    r->backend->address,
			    (uv_hrtime() - r->started_ns) / 1000);
		relay_enter_state(r, RELAY_EHLO);
		relay_command(r, "EHLO %s", r->cfg->backend.helo_name);
		return;
	case RELAY_EHLO:
	case RELAY_XCLIENT_EHLO:
		if (code == 250) {
			r->esmtp = true;
			if (r->state == RELAY_EHLO && relay_wants_xclient(r)) {
				if (!(r->caps.caps & EHLO_CAP_XCLIENT)) {
					relay_fail(r, "xclient = yes but the "
						      "backend does not offer "
						      "XCLIENT");
					return;
				}
				relay_send_xclient(r);
				return;
			}
			relay_ready(r);
			return;
		}
		if (r->state == RELAY_EHLO && code >= 500) {
			/* RFC 5321 §3.2: a non-ESMTP server; try HELO. */
			relay_enter_state(r, RELAY_HELO);
			relay_command(r, "HELO %s", r->cfg->backend.helo_name);
			return;
		}
		if (r->state == RELAY_XCLIENT_EHLO) {
			/* After XCLIENT the backend judges the client (its
			 * address, its HELO name): a refusal there is about
			 * this client, not the backend's health. */
			r->client_refused = true;
			relay_fail(r, "backend refused the client's EHLO after "
				      "XCLIENT");
			return;
		}
		relay_fail(r, "backend refused EHLO");
		return;
	case RELAY_HELO:
		if (code != 250) {
			relay_fail(r, "backend refused HELO");
			return;
		}
		r->esmtp = false;
		memset(&r->caps, 0, sizeof(r->caps));
		if (!r->probe && r->backend->xclient == XCLIENT_YES) {
			/* xclient = yes is a promise that the backend sees
			 * the real client; without ESMTP it cannot. */
			relay_fail(r, "xclient = yes but the backend speaks no "
				      "ESMTP");
			return;
		}
		relay_ready(r);
		return;
	case RELAY_XCLIENT:
		/* Postfix answers XCLIENT with a new greeting (220);
		 * others, smtp-sink among them, with 250. */
		if (code != 220 && code != 250) {
			/* Postfix: 550 5.7.0 for a host it does not trust
			 * (the backend's setting), 501 for an attribute value
			 * it does not take (this client's). */
			r->client_refused = code == 501;
			relay_fail(r, "backend refused XCLIENT");
			return;
		}
		/* The backend now stands in the client's shoes: Postfix
		 * takes the HELO name of this EHLO for its Received header,
		 * so it is the client's own, when it is a plain ASCII word
		 * (XCLIENT HELO= carried it xtext-encoded either way). */
		relay_enter_state(r, RELAY_XCLIENT_EHLO);
		relay_command(r, "EHLO %s",
			      relay_helo_plain(r->client_helo)
				  ? r->client_helo
				  : r->cfg->backend.helo_name);
		return;
	default:
		relay_fail(r, "unexpected reply");
		return;
	}
}

/* ---- reading replies ---- */

static void relay_reply_reset(struct relay *r)
{
	r->reply_len = 0;
	r->reply_lines = 0;
	r->reply_code = 0;
}

static void relay_reply_line(struct relay *r, const char *line, size_t len)
{
	struct smtp_reply_line rl;

	if (smtp_reply_parse(line, len, &rl) < 0) {
		relay_fail(r, "malformed reply line");
		return;
	}
	if (r->reply_lines > 0 && rl.code != r->reply_code) {
		relay_fail(r, "reply code changed inside a multi-line reply");
		return;
	}
	if (r->reply_len + len + 2 > RELAY_REPLY_MAX) {
		relay_fail(r, "reply too long");
		return;
	}
	if (r->reply_cap < r->reply_len + len + 2) {
		r->reply_cap = r->reply_len + len + 2 + 256;
		r->reply = xrealloc(r->reply, r->reply_cap);
	}
	memcpy(r->reply + r->reply_len, line, len);
	memcpy(r->reply + r->reply_len + len, "\r\n", 2);
	r->reply_len += len + 2;
	r->reply_lines++;
	r->reply_code = rl.code;
	if ((r->state == RELAY_EHLO || r->state == RELAY_XCLIENT_EHLO) &&
	    rl.code == 250 && r->reply_lines > 1)
		ehlo_caps_add_line(&r->caps, rl.text, rl.text_len);
	if ((r->state == RELAY_EHLO || r->state == RELAY_XCLIENT_EHLO) &&
	    r->reply_lines == 1)
		memset(&r->caps, 0, sizeof(r->caps));
	if (!rl.last)
		return;

	/* A complete reply. */
	if (r->awaiting == 0 && r->state != RELAY_GREETING) {
		relay_fail(r, "unsolicited reply");
		return;
	}
	if (r->state != RELAY_GREETING)
		r->awaiting--;
	relay_timer_restart(r);
	if (r->state == RELAY_READY) {
		struct relay_reply reply = {
			.code = r->reply_code,
			.text = r->reply,
			.len = r->reply_len,
			.nlines = r->reply_lines,
		};

		relay_reply_reset(r);
		/* The probe hears of its QUIT's reply too: its round is
		 * over then. */
		r->cb->reply(r->arg, &reply);
		return;
	}
	relay_handover_reply(r);
	relay_reply_reset(r);
}

static void relay_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static __thread char scratch[RELAY_READ_BUFSIZE];

	/* Replies are small and consumed in the read callback. */
	*buf = uv_buf_init(scratch, sizeof(scratch));
}

static void relay_on_read(uv_stream_t *stream, ssize_t nread,
			  const uv_buf_t *buf)
{
	struct relay *r = stream->data;
	size_t off = 0;

	if (nread == 0 || r->state >= RELAY_FAILED)
		return;
	if (nread < 0) {
		relay_fail(r, nread == UV_EOF ? "backend closed the connection"
					      : uv_strerror((int)nread));
		return;
	}
	while (off < (size_t)nread && r->state < RELAY_FAILED) {
		const char *line;
		size_t line_len, used;

		switch (linebuf_next(&r->lines, buf->base + off,
				     (size_t)nread - off, &used, &line,
				     &line_len)) {
		case LINEBUF_LINE:
			relay_reply_line(r, line, line_len);
			break;
		case LINEBUF_TOO_LONG:
			relay_fail(r, "reply line too long");
			break;
		case LINEBUF_NEED_MORE:
			break;
		}
		off += used;
	}
}

/* ---- connecting ---- */

static void relay_on_connect(uv_connect_t *req, int status)
{
	struct relay *r = req->data;
	int rc;

	if (r->state >= RELAY_FAILED)
		return;
	if (status < 0) {
		relay_fail(r, uv_strerror(status));
		return;
	}
	uv_timer_stop(&r->timer);
	relay_enter_state(r, RELAY_GREETING);
	rc = uv_read_start(r->stream, relay_on_alloc, relay_on_read);
	if (rc < 0) {
		relay_fail(r, uv_strerror(rc));
		return;
	}
	r->reading = true;
	/* The greeting, the EHLO and XCLIENT, together. */
	uv_timer_start(&r->timer, relay_on_timer,
		       r->cfg->backend.handover_timeout_ms, 0);
}

/* A failure's kind for the metrics, from where it happened and the words
 * relay_fail() got (each a literal of this file, or libuv's text for a
 * socket error). */
static enum metrics_backend_error relay_error_kind(const struct relay *r,
						   const char *why)
{
	static const char *const timeouts[] = {
	    "connect timeout", "hand-over timeout", "backend timeout"};
	static const char *const bad_replies[] = {
	    "malformed reply line", "reply code changed inside a multi-line "
				    "reply",
	    "reply too long",	    "unsolicited reply",
	    "reply line too long",  "unexpected reply"};

	for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
		if (strcmp(why, timeouts[i]) == 0)
			return METRICS_BACKEND_TIMEOUT;
	for (size_t i = 0; i < sizeof(bad_replies) / sizeof(bad_replies[0]);
	     i++)
		if (strcmp(why, bad_replies[i]) == 0)
			return METRICS_BACKEND_BAD_REPLY;
	if (r->state == RELAY_CONNECTING)
		return METRICS_BACKEND_REFUSED;
	/* A refusal during the hand-over is a reply ("backend refused
	 * EHLO", a greeting that is not 220); the rest is the connection
	 * breaking. */
	if (r->state < RELAY_READY && strncmp(why, "backend ", 8) == 0 &&
	    strcmp(why, "backend closed the connection") != 0)
		return METRICS_BACKEND_REFUSED;
	if (r->state < RELAY_READY && strncmp(why, "xclient = yes", 13) == 0)
		return METRICS_BACKEND_REFUSED;
	return METRICS_BACKEND_LOST;
}

static void relay_fail(struct relay *r, const char *why)
{
	if (r->state >= RELAY_FAILED)
		return;
	if (!r->quit_sent && !r->probe)
		metrics_backend_error(r->backend->address,
				      relay_error_kind(r, why));
	/* The probe's QUIT ends in the backend closing: not an error.  A
	 * probe's failure is the backend_state line the probe writes once
	 * per change: a backend down for hours is re-probed every
	 * retry_interval and must not warn each time. */
	log_event(r->quit_sent || r->probe ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
		  relay_log_sid(r),
		  "event=backend_error backend=%s state=%s error=\"%s\"",
		  r->backend->address, relay_state_names[r->state], why);
	relay_enter_state(r, RELAY_FAILED);
	uv_timer_stop(&r->timer);
	if (r->reading) {
		uv_read_stop(r->stream);
		r->reading = false;
	}
	r->cb->failed(r->arg, why);
}

/* A failure found inside a call the owner made (relay_send_*): the owner
 * hears of it from the timer on a later loop turn, never before the call
 * returns (libuv's rule; the owner still holds what it was sending).
 * Nothing more is written meanwhile. */
static void relay_fail_later(struct relay *r, const char *why)
{
	if (r->state >= RELAY_FAILED || r->write_error != NULL)
		return;
	r->write_error = why;
	if (r->reading) {
		uv_read_stop(r->stream);
		r->reading = false;
	}
	uv_timer_start(&r->timer, relay_on_timer, 0, 0);
}

static void relay_on_close(uv_handle_t *h)
{
	struct relay *r = h->data;

	if (--r->open_handles > 0)
		return;
	linebuf_reset(&r->lines);
	free(r->cork);
	free(r->reply);
	free(r->client_addr);
	free(r->client_helo);
	free(r->client_login);
	free(r);
}

/* Connecting happens on the next loop iteration's callbacks, never inside
 * relay_create(), so the owner has its pointer before any callback. */
struct relay *relay_create(uv_loop_t *loop, const struct config *cfg,
			   const struct config_backend *backend,
			   const struct relay_client *client,
			   const struct relay_callbacks *cb, void *arg)
{
	struct relay *r = xcalloc(1, sizeof(*r));
	int rc;

	r->loop = loop;
	r->cfg = cfg;
	r->backend = backend;
	r->cb = cb;
	r->arg = arg;
	r->probe = client == NULL;
	r->state = RELAY_CONNECTING;
	r->started_ns = uv_hrtime();
	if (client != NULL) {
		snprintf(r->sid, sizeof(r->sid), "%s", client->sid);
		r->client_addr = xstrdup(client->addr);
		r->client_port = client->port;
		r->client_helo = client->helo ? xstrdup(client->helo) : NULL;
		r->client_login = client->login ? xstrdup(client->login) : NULL;
	}
	linebuf_init(&r->lines, RELAY_LINE_MAX);
	uv_timer_init(loop, &r->timer);
	r->timer.data = r;
	if (backend->unix_path != NULL) {
		uv_pipe_init(loop, &r->h.pipe, 0);
		r->stream = (uv_stream_t *)&r->h.pipe;
	} else {
		uv_tcp_init(loop, &r->h.tcp);
		r->stream = (uv_stream_t *)&r->h.tcp;
	}
	r->stream->data = r;
	r->open_handles = 2;
	r->connect_req.data = r;
	uv_timer_start(&r->timer, relay_on_timer, cfg->backend.connect_timeout_ms,
		       0);
	if (backend->unix_path != NULL) {
		uv_pipe_connect(&r->connect_req, &r->h.pipe,
				backend->unix_path, relay_on_connect);
		rc = 0; /* uv_pipe_connect reports errors to the callback */
	} else {
		uv_tcp_nodelay(&r->h.tcp, 1);
		rc = uv_tcp_connect(&r->connect_req, &r->h.tcp,
				    (const struct sockaddr *)&backend->tcp.ss,
				    relay_on_connect);
	}
	if (rc < 0) {
		/* Report it from the timer, never from inside create. */
		r->connect_error = uv_strerror(rc);
		uv_timer_start(&r->timer, relay_on_timer, 0, 0);
	}
	return r;
}

const struct ehlo_caps *relay_caps(const struct relay *r)
{
	return &r->caps;
}

bool relay_esmtp(const struct relay *r)
{
	return r->esmtp;
}

bool relay_client_refused(const struct relay *r)
{
	return r->client_refused;
}

void relay_destroy(struct relay *r)
{
	if (r == NULL || r->state == RELAY_CLOSED)
		return;
	r->state = RELAY_CLOSED;
	uv_close((uv_handle_t *)r->stream, relay_on_close);
	uv_close((uv_handle_t *)&r->timer, relay_on_close);
}
