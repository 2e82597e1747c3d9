/* authclient.c - see authclient.h */
#include "proxy/authclient.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/metrics.h"

/* Answers in flight are tiny; this bounds what a confused helper can make
 * us hold. */
#define AUTH_CLIENT_INBUF (AUTH_PROTO_FRAME_MAX * 4)

struct auth_pending {
	struct auth_client *c;
	struct auth_pending *next, *prev;
	uint32_t id;
	uint64_t deadline_ms;
	uint64_t sent_ns; /* uv_hrtime(): the answer's latency */
	auth_client_cb *cb;
	void *arg;
};

struct auth_client {
	uv_loop_t *loop;
	uv_pipe_t pipe;
	uv_timer_t timer;
	int open_handles;
	bool up;
	uint64_t timeout_ms;
	uint32_t next_id;
	unsigned writes; /* uv_write()s not completed yet */
	/* FIFO: every request has the same timeout, so the head always has
	 * the nearest deadline and one timer serves them all. */
	struct auth_pending *head, *tail;
	auth_client_lost_cb *on_lost;
	void *lost_arg;
	unsigned char inbuf[AUTH_CLIENT_INBUF];
	size_t inlen;
};

struct auth_write {
	uv_write_t req;
	size_t len;
	unsigned char frame[];
};

static void auth_pending_unlink(struct auth_pending *p)
{
	struct auth_client *c = p->c;

	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		c->head = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	else
		c->tail = p->prev;
	p->next = p->prev = NULL;
}

static void auth_client_on_timer(uv_timer_t *t);

/* Points the one timer at the head's deadline. */
static void auth_client_arm(struct auth_client *c)
{
	uint64_t now = uv_now(c->loop);

	if (c->head == NULL) {
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, auth_client_on_timer,
		       c->head->deadline_ms > now ? c->head->deadline_ms - now
						  : 0,
		       0);
}

static void auth_client_finish(struct auth_pending *p, enum auth_result result,
			       const char *reason,
			       const struct auth_response *resp)
{
	struct auth_response local;
	auth_client_cb *cb = p->cb;
	void *arg = p->arg;

	metrics_helper_done((uv_hrtime() - p->sent_ns) / 1000,
			    resp != NULL ? METRICS_HELPER_ANSWERED
			    : strcmp(reason, "timeout") == 0
				? METRICS_HELPER_TIMEOUT
				: METRICS_HELPER_LOST);
	auth_pending_unlink(p);
	free(p);
	if (resp == NULL) {
		memset(&local, 0, sizeof(local));
		local.result = result;
		snprintf(local.reason, sizeof(local.reason), "%s", reason);
		resp = &local;
	}
	cb(arg, resp);
}

static void auth_client_on_timer(uv_timer_t *t)
{
	struct auth_client *c = t->data;
	uint64_t now = uv_now(c->loop);

	while (c->head != NULL && c->head->deadline_ms <= now)
		auth_client_finish(c->head, AUTH_RESULT_TEMPFAIL, "timeout",
				   NULL);
	auth_client_arm(c);
}

static void auth_client_fail_all(struct auth_client *c, const char *reason)
{
	while (c->head != NULL)
		auth_client_finish(c->head, AUTH_RESULT_TEMPFAIL, reason, NULL);
	uv_timer_stop(&c->timer);
}

static void auth_client_on_handle_closed(uv_handle_t *h)
{
	struct auth_client *c = h->data;

	if (--c->open_handles == 0) {
		explicit_bzero(c->inbuf, sizeof(c->inbuf));
		free(c);
	}
}

static void auth_client_lost(struct auth_client *c, const char *why)
{
	if (!c->up)
		return;
	c->up = false;
	metrics_helper_lost();
	log_error(NULL, "event=auth_helper_lost error=\"%s\"", why);
	uv_read_stop((uv_stream_t *)&c->pipe);
	auth_client_fail_all(c, "helper_lost");
	if (c->on_lost != NULL)
		c->on_lost(c->lost_arg);
}

static void auth_client_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct auth_client *c = h->data;

	*buf = uv_buf_init((char *)c->inbuf + c->inlen,
			   (unsigned)(sizeof(c->inbuf) - c->inlen));
}

static void auth_client_on_read(uv_stream_t *stream, ssize_t nread,
				const uv_buf_t *buf)
{
	struct auth_client *c = stream->data;
	size_t off = 0;

	if (nread == 0)
		return;
	if (nread < 0) {
		auth_client_lost(c, nread == UV_EOF ? "helper closed the channel"
						    : uv_strerror((int)nread));
		return;
	}
	c->inlen += (size_t)nread;
	for (;;) {
		long n = auth_frame_complete(c->inbuf + off, c->inlen - off);
		struct auth_response resp;
		struct auth_pending *p;

		if (n == 0)
			break;
		if (n < 0 || auth_response_decode(c->inbuf + off, (size_t)n,
						  &resp) < 0) {
			auth_client_lost(c, "malformed frame from helper");
			return;
		}
		off += (size_t)n;
		for (p = c->head; p != NULL; p = p->next)
			if (p->id == resp.id)
				break;
		if (p == NULL) {
			/* Answer to a request that timed out or was
			 * cancelled. */
			log_debug(NULL, "event=auth_late_answer id=%u",
				  (unsigned)resp.id);
			continue;
		}
		auth_client_finish(p, resp.result, NULL, &resp);
		if (!c->up)
			return;
	}
	memmove(c->inbuf, c->inbuf + off, c->inlen - off);
	c->inlen -= off;
	if (c->inlen == sizeof(c->inbuf))
		auth_client_lost(c, "oversized frame from helper");
	auth_client_arm(c);
}

struct auth_client *auth_client_create(uv_loop_t *loop, int fd,
				       uint64_t timeout_ms,
				       auth_client_lost_cb *on_lost,
				       void *lost_arg)
{
	struct auth_client *c = xcalloc(1, sizeof(*c));
	int r;

	c->loop = loop;
	c->timeout_ms = timeout_ms;
	c->on_lost = on_lost;
	c->lost_arg = lost_arg;
	c->next_id = 1;
	uv_pipe_init(loop, &c->pipe, 0);
	uv_timer_init(loop, &c->timer);
	c->pipe.data = c->timer.data = c;
	c->open_handles = 2;
	/* The channel alone must not keep the loop alive: sessions and
	 * listeners do that. */
	uv_unref((uv_handle_t *)&c->pipe);
	uv_unref((uv_handle_t *)&c->timer);
	r = uv_pipe_open(&c->pipe, fd);
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&c->pipe, auth_client_on_alloc,
				  auth_client_on_read);
	if (r < 0) {
		log_error(NULL, "event=auth_helper_lost error=\"%s\"",
			  uv_strerror(r));
		metrics_helper_lost();
		return c; /* stays down: every submit fails */
	}
	c->up = true;
	return c;
}

static void auth_client_on_write(uv_write_t *req, int status)
{
	struct auth_write *w = (struct auth_write *)req;
	struct auth_client *c = req->handle->data;

	c->writes--;
	explicit_bzero(w->frame, w->len);
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		auth_client_lost(c, uv_strerror(status));
}

/* Sends one request: the user, password (NULL: an account request) and
 * address copied whole or not at all (a user name cut short could name
 * another account), under the next id; every copy of the password is
 * wiped before this returns or, for the frame, once it is written. */
static struct auth_pending *auth_client_send(struct auth_client *c,
					     const char *user,
					     const char *password,
					     const char *addr,
					     auth_client_cb *cb, void *arg)
{
	struct auth_request req;
	struct auth_pending *p;
	struct auth_write *w;
	uv_buf_t buf;
	size_t written = 0;
	bool failed = false;
	uint32_t id;
	long n;

	if (!c->up || strlen(user) >= sizeof(req.user) ||
	    strlen(addr) >= sizeof(req.addr) ||
	    (password != NULL && strlen(password) >= sizeof(req.password)))
		return NULL;
	memset(&req, 0, sizeof(req));
	id = req.id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	req.account_only = password == NULL;
	snprintf(req.user, sizeof(req.user), "%s", user);
	if (password != NULL)
		snprintf(req.password, sizeof(req.password), "%s", password);
	snprintf(req.addr, sizeof(req.addr), "%s", addr);
	w = xmalloc(sizeof(*w) + AUTH_PROTO_FRAME_MAX);
	n = auth_request_encode(&req, w->frame, AUTH_PROTO_FRAME_MAX);
	auth_request_wipe(&req);
	if (n < 0) {
		free(w);
		return NULL;
	}
	w->len = (size_t)n;
	/* At once when nothing is queued (uv_write()'s completion would
	 * re-arm the pipe's watcher, one epoll_ctl() a login); what the
	 * socket does not take waits in the queued write. */
	if (c->writes == 0) {
		int r;

		buf = uv_buf_init((char *)w->frame, (unsigned)w->len);
		r = uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
		if (r > 0)
			written = (size_t)r;
		else if (r != UV_EAGAIN && r != UV_ENOSYS)
			failed = true;
	}
	if (!failed && written < w->len) {
		buf = uv_buf_init((char *)w->frame + written,
				  (unsigned)(w->len - written));
		if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1,
			     auth_client_on_write) < 0) {
			failed = true;
		} else {
			c->writes++;
			w = NULL; /* the write's, wiped when it completes */
		}
	}
	if (w != NULL) {
		/* Written at once, or failed: the frame goes now. */
		explicit_bzero(w->frame, w->len);
		free(w);
	}
	if (failed) {
		auth_client_lost(c, "write failed");
		return NULL;
	}

	p = xcalloc(1, sizeof(*p));
	p->c = c;
	p->id = id; /* req was wiped with the password */
	p->cb = cb;
	p->arg = arg;
	p->deadline_ms = uv_now(c->loop) + c->timeout_ms;
	p->sent_ns = uv_hrtime();
	metrics_helper_sent();
	p->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = p;
	else
		c->head = p;
	c->tail = p;
	auth_client_arm(c);
	return p;
}

struct auth_pending *auth_client_submit(struct auth_client *c,
					const char *user, const char *password,
					const char *addr, auth_client_cb *cb,
					void *arg)
{
	return auth_client_send(c, user, password, addr, cb, arg);
}

struct auth_pending *auth_client_account(struct auth_client *c,
					 const char *user, const char *addr,
					 auth_client_cb *cb, void *arg)
{
	return auth_client_send(c, user, NULL, addr, cb, arg);
}

void auth_client_cancel(struct auth_pending *p)
{
	struct auth_client *c = p->c;

	metrics_helper_done((uv_hrtime() - p->sent_ns) / 1000,
			    METRICS_HELPER_CANCELLED);
	auth_pending_unlink(p);
	free(p);
	auth_client_arm(c);
}

void auth_client_close(struct auth_client *c)
{
	struct auth_pending *p, *next;

	c->up = false;
	for (p = c->head; p != NULL; p = next) {
		next = p->next;
		metrics_helper_done((uv_hrtime() - p->sent_ns) / 1000,
				    METRICS_HELPER_CANCELLED);
		free(p);
	}
	c->head = c->tail = NULL;
	uv_close((uv_handle_t *)&c->pipe, auth_client_on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, auth_client_on_handle_closed);
}
