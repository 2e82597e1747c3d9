/*
 * redisstore.c - see redisstore.h
 *
 * States of the connection (redisstore_enter_state()):
 *
 *   WAITING     no context; the retry timer (back-off) makes the next one
 *   CONNECTING  AUTH, SELECT, PING queued; the deadline timer runs
 *   UP          PING answered; requests are taken
 *   BROKEN      a hiredis callback found the connection unusable (AUTH
 *               refused, NOAUTH): it is freed on the next loop turn
 *
 * Three timers: retry (back-off), deadline (the handshake's, then the
 * oldest request's: every request has the same timeout, so the oldest
 * one's deadline is the first), later (a 0 ms timer for what must not
 * happen inside a caller's call or inside a hiredis callback).
 *
 * A context is freed (redisAsyncFree) only from our own timer callbacks,
 * never from inside a hiredis callback: hiredis 0.14 frees the context
 * itself after a failed connect callback or a disconnect callback, and
 * redisAsyncFree() there would free it twice.  rs->ac is set to NULL
 * before a context is freed, by us or by hiredis, so that the callbacks
 * hiredis then runs with a NULL reply can tell a dead context from the
 * live one.
 *
 * Each operation is one command, atomic on the server: GET and ADD are
 * short Lua scripts sent with EVAL (GET + PTTL; INCRBY + PEXPIRE when
 * there is no expiry), MARK and FLAG are one SET each.  EVAL rather than
 * EVALSHA: the scripts are under 200 bytes, Redis caches an EVAL'd
 * script by its SHA1 (no recompiling), and EVALSHA would need a NOSCRIPT
 * path (after a SCRIPT FLUSH, a restart or a fail-over between SCRIPT
 * LOAD and use) that resends part of a pipelined request.  Not MULTI:
 * EXEC answers with the replies of the whole block, which is more
 * round-trip bookkeeping for the same atomicity per operation.
 */
#include "proxy/redisstore.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "common/util.h"
#include "config/config.h"

#define REDISSTORE_BACKOFF_MIN_MS 100
#define REDISSTORE_BACKOFF_MAX_MS 5000
#define REDISSTORE_WHY_MAX	  200
/* Peer text (a Redis error reply) quoted in a why. */
#define REDISSTORE_ERROR_QUOTE 80

/* KEYS[1]: value and PTTL; {0, 0} if absent. */
static const char redisstore_script_get[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if not v then return {0, 0} end "
    "return {v, redis.call('PTTL', KEYS[1])}";

/* KEYS[1] += ARGV[1]; expiring in ARGV[2] ms if it has no expiry (a new
 * key): the window opens at the first ADD and later ones keep it. */
static const char redisstore_script_add[] =
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "local t = redis.call('PTTL', KEYS[1]) "
    "if t < 0 then "
    "redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "t = tonumber(ARGV[2]) end "
    "return {v, t}";

enum redisstore_state {
	REDISSTORE_WAITING,
	REDISSTORE_CONNECTING,
	REDISSTORE_UP,
	REDISSTORE_BROKEN,
	REDISSTORE_STATE_COUNT
};

static const char *const redisstore_state_names[] = {
    [REDISSTORE_WAITING] = "waiting",
    [REDISSTORE_CONNECTING] = "connecting",
    [REDISSTORE_UP] = "up",
    [REDISSTORE_BROKEN] = "broken",
};
static_assert(sizeof(redisstore_state_names) /
		      sizeof(redisstore_state_names[0]) ==
		  REDISSTORE_STATE_COUNT,
	      "one name per redisstore state");

/* What the owner was last told (hooks.state). */
enum redisstore_reported {
	REDISSTORE_REPORTED_NONE,
	REDISSTORE_REPORTED_UP,
	REDISSTORE_REPORTED_DOWN,
};

struct redisstore_req {
	struct redisstore *rs;
	struct redisstore_req *prev, *next;
	struct store_op *ops; /* NULL once cancelled */
	size_t n;
	size_t replies; /* received: the index of the next op answered */
	size_t pending; /* commands hiredis still owes a callback for */
	uint64_t deadline_ms;
	redisstore_cb *cb;
	void *arg;
	bool failed; /* some op failed: the status is -1 */
	bool done;   /* cb ran (or never will: cancelled) */
};

struct redisstore {
	uv_loop_t *loop;
	enum redisstore_state state;
	enum redisstore_reported reported;
	bool closing;
	bool torn_down; /* the timers are closing */
	int open_handles;

	/* Where and how to connect (copied from the config). */
	char *unix_path; /* NULL: TCP */
	char host[INET6_ADDRSTRLEN];
	int port;
	char *username; /* NULL: AUTH password alone */
	char *password; /* NULL: no AUTH */
	size_t password_len;
	uint32_t db;
	char *prefix;
	size_t prefix_len;
	uint64_t timeout_ms;
	struct redisstore_hooks hooks;

	redisAsyncContext *ac; /* NULL in WAITING */
	uint64_t backoff_ms;
	char why[REDISSTORE_WHY_MAX]; /* the last failure, for the hook */

	struct redisstore_req *head, *tail; /* oldest first */

	uv_timer_t retry;
	uv_timer_t deadline;
	uv_timer_t later;
};

static void redisstore_on_retry(uv_timer_t *t);
static void redisstore_on_deadline(uv_timer_t *t);
static void redisstore_later(struct redisstore *rs);
static void redisstore_deadline_arm(struct redisstore *rs);

static void redisstore_enter_state(struct redisstore *rs,
				   enum redisstore_state state)
{
	assert(state < REDISSTORE_STATE_COUNT);
	rs->state = state;
}

/* Sets rs->why; peer text in it goes through redisstore_quote() first. */
__attribute__((format(printf, 2, 3))) static void
redisstore_set_why(struct redisstore *rs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rs->why, sizeof(rs->why), fmt, ap);
	va_end(ap);
}

/* A Redis error reply, cut and escaped for a why. */
static const char *redisstore_quote(char *buf, size_t size,
				    const redisReply *reply)
{
	if (reply == NULL || reply->str == NULL)
		return "";
	return sanitize(buf, size, reply->str,
			reply->len < REDISSTORE_ERROR_QUOTE
			    ? reply->len
			    : REDISSTORE_ERROR_QUOTE);
}

static void redisstore_report(struct redisstore *rs, bool up, const char *why)
{
	enum redisstore_reported now =
	    up ? REDISSTORE_REPORTED_UP : REDISSTORE_REPORTED_DOWN;

	if (rs->reported == now)
		return;
	rs->reported = now;
	if (!rs->closing && rs->hooks.state != NULL)
		rs->hooks.state(rs->hooks.arg, up, why);
}

/* ---- the libuv adapter, fixed ----
 *
 * hiredis 0.14's redisLibuvPoll() returns at once when libuv reports an
 * error (status < 0): libuv does so, with UV_EBADF, when epoll says
 * EPOLLERR, e.g. a TCP connect refused, and has stopped the handle.
 * hiredis then never learns of it: no connect or disconnect callback
 * until our deadline.  hiredis 1.0 (commit 9ce15c4) hands the events it
 * was waiting for to hiredis instead, which then reads the error from
 * the socket; these replacements for the adapter's add/del functions do
 * the same.  The adapter's struct, attach and cleanup are kept. */

static void redisstore_ev_poll(uv_poll_t *handle, int status, int events)
{
	redisLibuvEvents *p = handle->data;
	int ev = status < 0 ? p->events : events;

	if (p->context != NULL && (ev & UV_READABLE))
		redisAsyncHandleRead(p->context);
	if (p->context != NULL && (ev & UV_WRITABLE))
		redisAsyncHandleWrite(p->context);
}

static void redisstore_ev_update(redisLibuvEvents *p)
{
	if (p->events != 0)
		uv_poll_start(&p->handle, p->events, redisstore_ev_poll);
	else
		uv_poll_stop(&p->handle);
}

static void redisstore_ev_add_read(void *privdata)
{
	redisLibuvEvents *p = privdata;

	p->events |= UV_READABLE;
	redisstore_ev_update(p);
}

static void redisstore_ev_del_read(void *privdata)
{
	redisLibuvEvents *p = privdata;

	p->events &= ~UV_READABLE;
	redisstore_ev_update(p);
}

static void redisstore_ev_add_write(void *privdata)
{
	redisLibuvEvents *p = privdata;

	p->events |= UV_WRITABLE;
	redisstore_ev_update(p);
}

static void redisstore_ev_del_write(void *privdata)
{
	redisLibuvEvents *p = privdata;

	p->events &= ~UV_WRITABLE;
	redisstore_ev_update(p);
}

static int redisstore_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	if (redisLibuvAttach(ac, loop) != REDIS_OK) {
		/* hiredis 0.14: a failed uv_poll_init leaves ev.cleanup set
		 * with ev.data NULL (redisAsyncFree would call it on NULL)
		 * and leaks the adapter's struct (fixed in hiredis 1.2,
		 * commit 2706c3e).  Unhook it; the leak is beyond reach. */
		memset(&ac->ev, 0, sizeof(ac->ev));
		return -1;
	}
	ac->ev.addRead = redisstore_ev_add_read;
	ac->ev.delRead = redisstore_ev_del_read;
	ac->ev.addWrite = redisstore_ev_add_write;
	ac->ev.delWrite = redisstore_ev_del_write;
	return 0;
}

/* ---- requests ---- */

static void redisstore_req_unlink(struct redisstore_req *req)
{
	struct redisstore *rs = req->rs;

	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		rs->head = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	else
		rs->tail = req->prev;
	req->prev = req->next = NULL;
}

/* Every reply is in (or will never come): the request ends. */
static void redisstore_req_end(struct redisstore_req *req)
{
	struct redisstore *rs = req->rs;

	redisstore_req_unlink(req);
	if (!req->done) {
		req->done = true;
		req->cb(req->arg, req->failed ? -1 : 0);
	}
	free(req);
	if (rs->closing && rs->head == NULL)
		redisstore_later(rs);
	else
		redisstore_deadline_arm(rs);
}

static int redisstore_uint(const redisReply *r, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (r->type == REDIS_REPLY_INTEGER) {
		*out = r->integer > 0 ? (uint64_t)r->integer : 0;
		return 0;
	}
	if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->str == NULL)
		return -1;
	if (r->str[0] == '-') {
		/* Someone else's DECRBY: no count. */
		*out = 0;
		return 0;
	}
	if (r->str[0] < '0' || r->str[0] > '9')
		return -1;
	v = strtoull(r->str, &end, 10);
	if ((size_t)(end - r->str) != r->len)
		return -1;
	*out = v;
	return 0;
}

/* An EVAL's {value, pttl}; a PTTL of -1 (a key without expiry, not ours)
 * reads as 0. */
static int redisstore_pair(const redisReply *r, struct store_op *op)
{
	uint64_t value;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    redisstore_uint(r->element[0], &value) < 0 ||
	    r->element[1]->type != REDIS_REPLY_INTEGER)
		return -1;
	op->value = value;
	op->ttl_ms =
	    r->element[1]->integer > 0 ? (uint64_t)r->element[1]->integer : 0;
	return 0;
}

static int redisstore_parse(const redisReply *r, struct store_op *op)
{
	switch (op->kind) {
	case STORE_GET:
	case STORE_ADD:
		return redisstore_pair(r, op);
	case STORE_MARK:
		if (r->type != REDIS_REPLY_STATUS)
			return -1;
		op->value = 1;
		return 0;
	case STORE_FLAG:
		if (r->type == REDIS_REPLY_NIL) {
			op->value = 0;
			return 0;
		}
		if (r->type != REDIS_REPLY_STATUS)
			return -1;
		op->value = 1;
		return 0;
	}
	return -1;
}

static void redisstore_lost(struct redisstore *rs, const redisAsyncContext *ac);

static void redisstore_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redisstore_req *req = privdata;
	struct redisstore *rs = req->rs;
	redisReply *reply = r;
	size_t i = req->replies++;

	assert(req->pending > 0);
	req->pending--;
	if (reply == NULL) {
		/* The context is going away: hiredis frees it after an
		 * error, and this NULL reply comes before its disconnect
		 * callback.  Not up from now, before the owner hears. */
		if (ac == rs->ac)
			redisstore_lost(rs, ac);
		req->failed = true;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		req->failed = true;
		/* The server forgot our AUTH (a restart behind a proxy, an
		 * ACL change): the connection is unusable until made anew. */
		if (reply->str != NULL &&
		    strncmp(reply->str, "NOAUTH", 6) == 0 && ac == rs->ac &&
		    rs->state == REDISSTORE_UP) {
			char q[SANITIZE_BUFSIZE];

			redisstore_set_why(
			    rs, "request refused: %s",
			    redisstore_quote(q, sizeof(q), reply));
			redisstore_enter_state(rs, REDISSTORE_BROKEN);
			redisstore_later(rs);
		}
	} else if (req->ops != NULL && !req->done && i < req->n &&
		   redisstore_parse(reply, &req->ops[i]) < 0) {
		req->failed = true;
	}
	if (req->pending == 0)
		redisstore_req_end(req);
}

static int redisstore_send(struct redisstore *rs, struct redisstore_req *req,
			   const struct store_op *op)
{
	char ttl[24], by[24];
	/* A zero TTL would be an expired key (and PX 0 an error): at least
	 * 1 ms, as the memory store. */
	uint64_t ttl_ms = op->ttl_ms > 0 ? op->ttl_ms : 1;
	/* INCRBY takes a signed 64-bit number. */
	uint64_t by_n = op->by > INT64_MAX ? INT64_MAX : op->by;
	size_t klen = op->key_len < STORE_KEY_MAX ? op->key_len : STORE_KEY_MAX;

	snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
	snprintf(by, sizeof(by), "%" PRIu64, by_n);
	/* Adjacent %b make one argument: prefix + key, binary-safe. */
	switch (op->kind) {
	case STORE_GET:
		return redisAsyncCommand(rs->ac, redisstore_on_reply, req,
					 "EVAL %s 1 %b%b",
					 redisstore_script_get, rs->prefix,
					 rs->prefix_len, op->key, klen);
	case STORE_ADD:
		return redisAsyncCommand(
		    rs->ac, redisstore_on_reply, req, "EVAL %s 1 %b%b %s %s",
		    redisstore_script_add, rs->prefix, rs->prefix_len, op->key,
		    klen, by, ttl);
	case STORE_MARK:
		return redisAsyncCommand(rs->ac, redisstore_on_reply, req,
					 "SET %b%b 1 PX %s", rs->prefix,
					 rs->prefix_len, op->key, klen, ttl);
	case STORE_FLAG:
		return redisAsyncCommand(rs->ac, redisstore_on_reply, req,
					 "SET %b%b 1 NX PX %s", rs->prefix,
					 rs->prefix_len, op->key, klen, ttl);
	}
	return REDIS_ERR;
}

struct redisstore_req *redisstore_exec(struct redisstore *rs,
				       struct store_op *ops, size_t n,
				       redisstore_cb *cb, void *arg)
{
	struct redisstore_req *req;

	if (rs == NULL || rs->closing || rs->state != REDISSTORE_UP)
		return NULL;
	req = xcalloc(1, sizeof(*req));
	req->rs = rs;
	req->ops = ops;
	req->n = n;
	req->cb = cb;
	req->arg = arg;
	req->deadline_ms = uv_now(rs->loop) + rs->timeout_ms;
	req->prev = rs->tail;
	if (rs->tail != NULL)
		rs->tail->next = req;
	else
		rs->head = req;
	rs->tail = req;
	if (n > STORE_OPS_MAX) {
		req->failed = true;
	} else {
		for (size_t i = 0; i < n; i++) {
			if (redisstore_send(rs, req, &ops[i]) != REDIS_OK) {
				/* Told on a later turn: those sent are
				 * answered first, or the later timer. */
				req->failed = true;
				break;
			}
			req->pending++;
		}
	}
	if (req->pending == 0)
		redisstore_later(rs); /* n == 0, or nothing sent */
	else if (!uv_is_active((uv_handle_t *)&rs->deadline))
		redisstore_deadline_arm(rs);
	return req;
}

void redisstore_cancel(struct redisstore_req *req)
{
	if (req == NULL)
		return;
	req->done = true;
	req->ops = NULL;
}

bool redisstore_up(const struct redisstore *rs)
{
	return rs != NULL && !rs->closing && rs->state == REDISSTORE_UP;
}

/* ---- the connection ---- */

/* The connection ends with rs->why.  If free_ctx, we free the context
 * (from a timer callback only); otherwise hiredis is freeing it.  Its
 * pending requests fail in redisAsyncFree(). */
static void redisstore_conn_end(struct redisstore *rs, bool free_ctx)
{
	redisAsyncContext *ac = rs->ac;

	rs->ac = NULL;
	redisstore_enter_state(rs, REDISSTORE_WAITING);
	uv_timer_stop(&rs->deadline);
	redisstore_report(rs, false, rs->why);
	if (free_ctx && ac != NULL)
		redisAsyncFree(ac);
	if (!rs->closing) {
		uv_timer_start(&rs->retry, redisstore_on_retry, rs->backoff_ms,
			       0);
		rs->backoff_ms = rs->backoff_ms * 2 < REDISSTORE_BACKOFF_MAX_MS
				     ? rs->backoff_ms * 2
				     : REDISSTORE_BACKOFF_MAX_MS;
	} else if (rs->head == NULL) {
		redisstore_later(rs);
	}
}

static void redisstore_lost(struct redisstore *rs, const redisAsyncContext *ac)
{
	if (rs->state != REDISSTORE_BROKEN)
		redisstore_set_why(rs, "connection lost: %s",
				   ac->errstr != NULL && ac->errstr[0] != '\0'
				       ? ac->errstr
				       : "closed");
	redisstore_conn_end(rs, false);
}

static void redisstore_on_connect(const redisAsyncContext *ac, int status)
{
	struct redisstore *rs = ac->data;

	if (status == REDIS_OK || ac != rs->ac)
		return;
	/* hiredis frees the context on return. */
	redisstore_set_why(rs, "connect: %s",
			   ac->errstr != NULL ? ac->errstr : "failed");
	redisstore_conn_end(rs, false);
}

static void redisstore_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redisstore *rs = ac->data;

	if (ac != rs->ac)
		return; /* ours, freed on purpose, or already lost */
	redisstore_lost(rs, ac);
}

/* A handshake reply: NULL (the context is being freed: already handled)
 * or an error makes the connection BROKEN. */
static bool redisstore_handshake_ok(redisAsyncContext *ac, redisReply *reply,
				    const char *what)
{
	struct redisstore *rs = ac->data;
	char q[SANITIZE_BUFSIZE];

	if (reply == NULL || ac != rs->ac || rs->state != REDISSTORE_CONNECTING)
		return false;
	if (reply->type != REDIS_REPLY_ERROR)
		return true;
	redisstore_set_why(rs, "%s refused: %s", what,
			   redisstore_quote(q, sizeof(q), reply));
	redisstore_enter_state(rs, REDISSTORE_BROKEN);
	redisstore_later(rs);
	return false;
}

static void redisstore_on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
	redisstore_handshake_ok(ac, r, "AUTH");
}

static void redisstore_on_select(redisAsyncContext *ac, void *r, void *privdata)
{
	redisstore_handshake_ok(ac, r, "SELECT");
}

static void redisstore_on_ping(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redisstore *rs = ac->data;

	if (!redisstore_handshake_ok(ac, r, "PING"))
		return;
	redisstore_enter_state(rs, REDISSTORE_UP);
	uv_timer_stop(&rs->deadline);
	rs->backoff_ms = REDISSTORE_BACKOFF_MIN_MS;
	redisstore_report(rs, true, "PING answered");
}

/* AUTH, SELECT and PING go out as soon as the socket is connected
 * (hiredis holds them until then), in that order. */
static int redisstore_handshake(struct redisstore *rs)
{
	int rc = REDIS_OK;
	char db[16];

	if (rs->password != NULL && rs->username != NULL)
		rc = redisAsyncCommand(rs->ac, redisstore_on_auth, NULL,
				       "AUTH %s %b", rs->username, rs->password,
				       rs->password_len);
	else if (rs->password != NULL)
		rc = redisAsyncCommand(rs->ac, redisstore_on_auth, NULL,
				       "AUTH %b", rs->password,
				       rs->password_len);
	if (rc == REDIS_OK && rs->db != 0) {
		snprintf(db, sizeof(db), "%" PRIu32, rs->db);
		rc = redisAsyncCommand(rs->ac, redisstore_on_select, NULL,
				       "SELECT %s", db);
	}
	if (rc == REDIS_OK)
		rc =
		    redisAsyncCommand(rs->ac, redisstore_on_ping, NULL, "PING");
	return rc == REDIS_OK ? 0 : -1;
}

/* The retry timer: a new context. */
static void redisstore_connect(struct redisstore *rs)
{
	redisAsyncContext *ac;

	if (rs->closing || rs->ac != NULL)
		return;
	if (rs->unix_path != NULL)
		ac = redisAsyncConnectUnix(rs->unix_path);
	else
		ac = redisAsyncConnect(rs->host, rs->port);
	if (ac == NULL)
		fatal("redisstore: out of memory");
	if (ac->err != 0) {
		/* Nothing attached yet: freeing it here is safe. */
		redisstore_set_why(rs, "connect: %s", ac->errstr);
		redisAsyncFree(ac);
		redisstore_conn_end(rs, false);
		return;
	}
	if (redisstore_attach(ac, rs->loop) < 0) {
		redisstore_set_why(rs, "connect: cannot watch the socket");
		redisAsyncFree(ac);
		redisstore_conn_end(rs, false);
		return;
	}
	ac->data = rs;
	rs->ac = ac;
	redisstore_enter_state(rs, REDISSTORE_CONNECTING);
	redisAsyncSetConnectCallback(ac, redisstore_on_connect);
	redisAsyncSetDisconnectCallback(ac, redisstore_on_disconnect);
	uv_timer_start(&rs->deadline, redisstore_on_deadline, rs->timeout_ms,
		       0);
	if (redisstore_handshake(rs) < 0) {
		redisstore_set_why(rs, "connect: cannot queue the handshake");
		redisstore_enter_state(rs, REDISSTORE_BROKEN);
		redisstore_later(rs);
	}
}

static void redisstore_on_retry(uv_timer_t *t)
{
	redisstore_connect(t->data);
}

/* The oldest request still waiting for a reply. */
static struct redisstore_req *redisstore_oldest(struct redisstore *rs)
{
	struct redisstore_req *req = rs->head;

	while (req != NULL && req->pending == 0)
		req = req->next;
	return req;
}

/* Only while UP: the handshake has its own deadline, set at connect. */
static void redisstore_deadline_arm(struct redisstore *rs)
{
	struct redisstore_req *req;
	uint64_t now;

	if (rs->state != REDISSTORE_UP)
		return;
	req = redisstore_oldest(rs);
	if (req == NULL) {
		uv_timer_stop(&rs->deadline);
		return;
	}
	now = uv_now(rs->loop);
	uv_timer_start(&rs->deadline, redisstore_on_deadline,
		       req->deadline_ms > now ? req->deadline_ms - now : 0, 0);
}

/* A Redis that does not answer in time (stopped, swapping, a network
 * gone quiet) is down: the connection is dropped, which fails every
 * request on it here, on this timer's callback. */
static void redisstore_on_deadline(uv_timer_t *t)
{
	struct redisstore *rs = t->data;
	struct redisstore_req *req;

	switch (rs->state) {
	case REDISSTORE_WAITING:
	case REDISSTORE_STATE_COUNT:
		return;
	case REDISSTORE_BROKEN: /* rs->why says why */
		break;
	case REDISSTORE_CONNECTING: /* PING unanswered */
	case REDISSTORE_UP:
		req = redisstore_oldest(rs);
		if (rs->state == REDISSTORE_UP &&
		    (req == NULL || req->deadline_ms > uv_now(rs->loop))) {
			redisstore_deadline_arm(rs);
			return;
		}
		redisstore_set_why(rs, "no answer within %" PRIu64 " ms (%s)",
				   rs->timeout_ms,
				   redisstore_state_names[rs->state]);
		break;
	}
	redisstore_conn_end(rs, true);
}

static void redisstore_on_close(uv_handle_t *h)
{
	struct redisstore *rs = h->data;

	if (--rs->open_handles > 0)
		return;
	free(rs->unix_path);
	free(rs->username);
	if (rs->password != NULL) {
		OPENSSL_cleanse(rs->password, rs->password_len);
		free(rs->password);
	}
	free(rs->prefix);
	free(rs);
}

/* Closing, and nothing in flight: the context and the timers go. */
static void redisstore_teardown(struct redisstore *rs)
{
	redisAsyncContext *ac = rs->ac;

	rs->ac = NULL;
	redisstore_enter_state(rs, REDISSTORE_WAITING);
	if (ac != NULL)
		redisAsyncFree(ac);
	rs->torn_down = true;
	uv_close((uv_handle_t *)&rs->retry, redisstore_on_close);
	uv_close((uv_handle_t *)&rs->deadline, redisstore_on_close);
	uv_close((uv_handle_t *)&rs->later, redisstore_on_close);
}

/* Work that may not be done where it was found (inside a caller's call,
 * inside a hiredis callback): a broken connection to free, requests that
 * sent nothing to fail, a close to finish. */
static void redisstore_on_later(uv_timer_t *t)
{
	struct redisstore *rs = t->data;
	struct redisstore_req *req, *next;

	if (rs->state == REDISSTORE_BROKEN)
		redisstore_conn_end(rs, true);
	/* A callback may queue more (at the tail: one that sent nothing
	 * starts this timer again) but cannot end another request: only
	 * hiredis's callbacks do. */
	for (req = rs->head; req != NULL; req = next) {
		next = req->next;
		if (req->pending == 0)
			redisstore_req_end(req);
	}
	if (rs->closing && rs->head == NULL && !rs->torn_down)
		redisstore_teardown(rs);
}

static void redisstore_later(struct redisstore *rs)
{
	if (!rs->torn_down)
		uv_timer_start(&rs->later, redisstore_on_later, 0, 0);
}

struct redisstore *redisstore_create(uv_loop_t *loop,
				     const struct config_store *url,
				     const char *key_prefix,
				     uint64_t timeout_ms,
				     const struct redisstore_hooks *hooks)
{
	struct redisstore *rs = xcalloc(1, sizeof(*rs));
	const struct sockaddr *sa = (const struct sockaddr *)&url->tcp.ss;

	rs->loop = loop;
	if (url->unix_path != NULL) {
		rs->unix_path = xstrdup(url->unix_path);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, rs->host, sizeof(rs->host));
		rs->port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, rs->host,
			  sizeof(rs->host));
		rs->port = ntohs(sin6->sin6_port);
	}
	/* else: host "" fails to connect, and says so through the hook. */
	rs->username = url->username ? xstrdup(url->username) : NULL;
	if (url->password != NULL) {
		rs->password_len = strlen(url->password);
		rs->password = xmemdup(url->password, rs->password_len + 1);
	}
	rs->db = url->db;
	rs->prefix = xstrdup(key_prefix != NULL ? key_prefix : "");
	rs->prefix_len = strlen(rs->prefix);
	rs->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	if (hooks != NULL)
		rs->hooks = *hooks;
	rs->backoff_ms = REDISSTORE_BACKOFF_MIN_MS;
	redisstore_enter_state(rs, REDISSTORE_WAITING);
	uv_timer_init(loop, &rs->retry);
	uv_timer_init(loop, &rs->deadline);
	uv_timer_init(loop, &rs->later);
	rs->retry.data = rs->deadline.data = rs->later.data = rs;
	rs->open_handles = 3;
	/* The first connect on the next turn: never a hook inside create. */
	uv_timer_start(&rs->retry, redisstore_on_retry, 0, 0);
	return rs;
}

void redisstore_close(struct redisstore *rs)
{
	if (rs == NULL || rs->closing)
		return;
	rs->closing = true;
	uv_timer_stop(&rs->retry);
	redisstore_later(rs);
}
