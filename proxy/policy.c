/* policy.c - see policy.h */
#include "proxy/policy.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "config/storeurl.h"
#include "proxy/memstore.h"
#include "proxy/redisstore.h"
#include "proxy/shared.h"
#include "proxy/store.h"

struct policy {
	uv_loop_t *loop;
	struct shared *sh;
	struct config *cfg;	 /* a reference: its [policy] is in force */
	struct redisstore *rs; /* NULL: store = memory */
};

enum policy_req_kind {
	POLICY_REQ_AUTH,
	POLICY_REQ_SEND,
	POLICY_REQ_UPDATE, /* fire and forget */
	POLICY_REQ_FLAG,   /* limit_reached: log if first */
};

struct policy_req {
	enum policy_req_kind kind;
	struct redisstore_req *rr;
	/* What a failed Redis request falls back to, kept here: an update
	 * may end after its policy has closed (the worker's exit). */
	struct memstore *mem;
	bool local_fallback;
	struct store_op ops[STORE_OPS_MAX];
	size_t n;
	/* POLICY_REQ_AUTH */
	uint32_t address_limit, user_limit;
	policy_auth_cb *auth_cb;
	/* POLICY_REQ_SEND */
	policy_send_cb *send_cb;
	void *arg;
	/* POLICY_REQ_FLAG: the log line, if first */
	char *line;
	char sid[24];
};

static const char *const policy_limit_names[POLICY_LIMIT_COUNT] = {
    [POLICY_LIMIT_MESSAGES_HOUR] = "user_messages_per_hour",
    [POLICY_LIMIT_RECIPIENTS_HOUR] = "user_recipients_per_hour",
    [POLICY_LIMIT_RECIPIENTS_DAY] = "user_recipients_per_day",
};

/* The key of each send counter, and its window. */
static const char *const policy_limit_keys[POLICY_LIMIT_COUNT] = {
    [POLICY_LIMIT_MESSAGES_HOUR] = "mh:",
    [POLICY_LIMIT_RECIPIENTS_HOUR] = "rh:",
    [POLICY_LIMIT_RECIPIENTS_DAY] = "rd:",
};

/* SASL_USER_MAX: a longer name never reaches a check. */
#define POLICY_LOGIN_MAX 256
_Static_assert(STORE_KEY_MAX >= 3 + 64 + 1 + POLICY_LOGIN_MAX,
	       "every policy key fits in a store key");

#define HOUR_MS (UINT64_C(3600) * 1000)
#define DAY_MS	(HOUR_MS * 24)

static const uint64_t policy_limit_windows[POLICY_LIMIT_COUNT] = {
    [POLICY_LIMIT_MESSAGES_HOUR] = HOUR_MS,
    [POLICY_LIMIT_RECIPIENTS_HOUR] = HOUR_MS,
    [POLICY_LIMIT_RECIPIENTS_DAY] = DAY_MS,
};

const char *policy_limit_name(enum policy_limit which)
{
	return which < POLICY_LIMIT_COUNT ? policy_limit_names[which] : "?";
}

int policy_addr_from(struct policy_addr *pa, const struct sockaddr *sa,
		     const struct config *cfg)
{
	if (addrkey_from_sockaddr(&pa->key, sa) < 0)
		return -1;
	addrkey_mask(&pa->key, cfg->limits.ipv4_prefix,
		     cfg->limits.ipv6_prefix);
	addrkey_prefix_text(&pa->key, pa->prefix, sizeof(pa->prefix));
	return 0;
}

/* ---- the store in use ---- */

static void policy_on_state(void *arg, bool up, const char *why)
{
	struct policy *p = arg;
	int want = up ? 1 : 0;
	int old = atomic_exchange(&p->sh->store_state, want);
	char reason[SANITIZE_BUFSIZE];

	if (old == want)
		return;
	if (up)
		log_info(NULL, "event=policy_store store=%s state=up",
			 p->cfg->policy.store.display);
	else
		log_warn(NULL,
			 "event=policy_store store=%s state=down "
			 "reason=\"%s\" fallback=%s",
			 p->cfg->policy.store.display,
			 sanitize(reason, sizeof(reason), why, strlen(why)),
			 p->cfg->policy.on_store_error == STORE_ERROR_LOCAL
			     ? "local"
			     : "tempfail");
}

static void policy_connect(struct policy *p)
{
	const struct redisstore_hooks hooks = {
	    .state = policy_on_state,
	    .arg = p,
	};

	p->rs = NULL;
	if (p->cfg->policy.store.kind == STORE_REDIS)
		p->rs = redisstore_create(p->loop, &p->cfg->policy.store,
					  p->cfg->policy.key_prefix,
					  p->cfg->policy.timeout_ms, &hooks);
}

struct policy *policy_create(uv_loop_t *loop, struct shared *sh,
			     const struct config *cfg)
{
	struct policy *p = xcalloc(1, sizeof(*p));

	p->loop = loop;
	p->sh = sh;
	p->cfg = config_ref((struct config *)cfg);
	policy_connect(p);
	return p;
}

void policy_reconfigure(struct policy *p, const struct config *cfg)
{
	const struct config *old = p->cfg;
	bool same = storeurl_same(&old->policy.store, &cfg->policy.store) &&
		    strcmp(old->policy.key_prefix, cfg->policy.key_prefix) ==
			0 &&
		    old->policy.timeout_ms == cfg->policy.timeout_ms;

	if (!same && p->rs != NULL) {
		/* Requests in flight end on the old connection. */
		redisstore_close(p->rs);
		p->rs = NULL;
	}
	p->cfg = config_ref((struct config *)cfg);
	config_unref((struct config *)old);
	if (!same) {
		atomic_store(&p->sh->store_state, -1);
		policy_connect(p);
	}
}

void policy_close(struct policy *p)
{
	if (p == NULL)
		return;
	if (p->rs != NULL)
		redisstore_close(p->rs);
	config_unref(p->cfg);
	free(p);
}

/* ---- requests ---- */

static struct policy_req *policy_req_new(struct policy *p,
					 enum policy_req_kind kind)
{
	struct policy_req *req = xcalloc(1, sizeof(*req));

	req->kind = kind;
	req->mem = p->sh->mem;
	req->local_fallback =
	    p->cfg->policy.on_store_error == STORE_ERROR_LOCAL;
	return req;
}

static void policy_req_free(struct policy_req *req)
{
	free(req->line);
	free(req);
}

/* A login as every per-user key has it: lower-cased ASCII. */
static size_t policy_fold(char *out, const char *user, size_t len)
{
	if (len > POLICY_LOGIN_MAX)
		len = POLICY_LOGIN_MAX;
	for (size_t i = 0; i < len; i++) {
		char c = user[i];

		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	return len;
}

static struct store_op *policy_op(struct policy_req *req,
				  enum store_op_kind kind, const char *prefix,
				  const char *bytes, size_t len,
				  uint64_t ttl_ms)
{
	struct store_op *op = &req->ops[req->n++];

	op->kind = kind;
	op->by = 1;
	op->ttl_ms = ttl_ms;
	/* Every key fits: STORE_KEY_MAX allows for the longest login. */
	if (store_key(op, prefix, bytes, len) < 0)
		abort();
	return op;
}

/* "ka:" PREFIX " " LOGIN */
static void policy_known_op(struct policy_req *req, enum store_op_kind kind,
			    const struct policy_addr *addr, const char *user,
			    size_t user_len, uint64_t ttl_ms)
{
	char buf[sizeof(addr->prefix) + 1 + POLICY_LOGIN_MAX];
	size_t plen = strlen(addr->prefix);

	memcpy(buf, addr->prefix, plen);
	buf[plen] = ' ';
	plen++;
	plen += policy_fold(buf + plen, user, user_len);
	policy_op(req, kind, "ka:", buf, plen, ttl_ms);
}

static void policy_user_op(struct policy_req *req, enum store_op_kind kind,
			   const char *prefix, const char *user,
			   size_t user_len, uint64_t ttl_ms)
{
	char buf[POLICY_LOGIN_MAX];
	size_t len = policy_fold(buf, user, user_len);

	policy_op(req, kind, prefix, buf, len, ttl_ms);
}

/* Fills the caller's answer from req's results (ok) or from the store's
 * failure. */
static void policy_auth_verdict_of(const struct policy_req *req, bool ok,
				   struct policy_auth_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (!ok) {
		v->result = POLICY_AUTH_STORE_ERROR;
		return;
	}
	v->address_failures = req->ops[0].value;
	v->user_failures = req->ops[1].value;
	v->known = req->ops[2].value != 0;
	if (v->address_failures >= req->address_limit)
		v->result = POLICY_AUTH_ADDRESS_THROTTLED;
	else if (v->user_failures >= req->user_limit && !v->known)
		v->result = POLICY_AUTH_USER_THROTTLED;
	else
		v->result = POLICY_AUTH_ALLOW;
}

static void policy_send_counts_of(const struct policy_req *req, bool ok,
				  struct policy_send_counts *c)
{
	memset(c, 0, sizeof(*c));
	if (!ok) {
		c->store_error = true;
		return;
	}
	for (size_t i = 0; i < POLICY_LIMIT_COUNT; i++) {
		c->count[i] = req->ops[i].value;
		c->ttl_ms[i] = req->ops[i].ttl_ms;
	}
}

/* Runs req's ops where they can run now: the memory store, or in its
 * place when Redis failed and on_store_error = local.  False: they could
 * not run (tempfail). */
static bool policy_run_local(struct policy_req *req, bool redis_failed)
{
	if (redis_failed && !req->local_fallback)
		return false;
	memstore_exec(req->mem, req->ops, req->n, memstore_now_ms());
	return true;
}

/* A request's ops have run (ok) or cannot: its effect. */
static void policy_req_finish(struct policy_req *req, bool ok)
{
	switch (req->kind) {
	case POLICY_REQ_AUTH: {
		struct policy_auth_verdict v;

		policy_auth_verdict_of(req, ok, &v);
		req->auth_cb(req->arg, &v);
		break;
	}
	case POLICY_REQ_SEND: {
		struct policy_send_counts c;

		policy_send_counts_of(req, ok, &c);
		req->send_cb(req->arg, &c);
		break;
	}
	case POLICY_REQ_FLAG:
		/* Without a store, every refusal is logged: better twice
		 * than never. */
		if (!ok || req->ops[0].value == 1)
			log_warn(req->sid[0] != '\0' ? req->sid : NULL, "%s",
				 req->line);
		break;
	case POLICY_REQ_UPDATE:
		break;
	}
	policy_req_free(req);
}

static void policy_on_store(void *arg, int status)
{
	struct policy_req *req = arg;
	bool ok = status == 0;

	req->rr = NULL;
	if (!ok)
		ok = policy_run_local(req, true);
	policy_req_finish(req, ok);
}

/* Sends req.  Returns true when it is pending (its end comes through
 * policy_on_store()); false when its ops ran now (*ok_r: whether they
 * could). */
static bool policy_submit(struct policy *p, struct policy_req *req,
			  bool *ok_r)
{
	if (p->rs != NULL) {
		req->rr = redisstore_exec(p->rs, req->ops, req->n,
					  policy_on_store, req);
		if (req->rr != NULL)
			return true;
	}
	*ok_r = policy_run_local(req, p->rs != NULL);
	return false;
}

/* Fire and forget; a FLAG's log line, if due, is written now or later. */
static void policy_submit_update(struct policy *p, struct policy_req *req)
{
	bool ok;

	if (!policy_submit(p, req, &ok))
		policy_req_finish(req, ok);
}

void policy_cancel(struct policy_req *req)
{
	if (req == NULL)
		return;
	if (req->rr != NULL)
		redisstore_cancel(req->rr);
	policy_req_free(req);
}

/* ---- authentication ---- */

struct policy_req *policy_auth_check(struct policy *p,
				     const struct config *cfg,
				     const struct policy_addr *addr,
				     const char *user, size_t user_len,
				     struct policy_auth_verdict *v,
				     policy_auth_cb *cb, void *arg)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_AUTH);
	bool ok;

	req->address_limit = cfg->auth.address_failure_limit;
	req->user_limit = cfg->auth.user_failure_limit;
	req->auth_cb = cb;
	req->arg = arg;
	policy_op(req, STORE_GET, "af:", addr->prefix, strlen(addr->prefix),
		  0);
	policy_user_op(req, STORE_GET, "uf:", user, user_len, 0);
	policy_known_op(req, STORE_GET, addr, user, user_len, 0);
	if (policy_submit(p, req, &ok))
		return req;
	policy_auth_verdict_of(req, ok, v);
	policy_req_free(req);
	return NULL;
}

void policy_auth_failed(struct policy *p, const struct config *cfg,
			const struct policy_addr *addr, const char *user,
			size_t user_len)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_UPDATE);

	policy_op(req, STORE_ADD, "af:", addr->prefix, strlen(addr->prefix),
		  cfg->auth.address_failure_window_ms);
	policy_user_op(req, STORE_ADD, "uf:", user, user_len,
		       cfg->auth.user_failure_window_ms);
	policy_submit_update(p, req);
}

void policy_auth_succeeded(struct policy *p, const struct config *cfg,
			   const struct policy_addr *addr, const char *user,
			   size_t user_len)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_UPDATE);

	policy_known_op(req, STORE_MARK, addr, user, user_len,
			cfg->auth.known_address_window_ms);
	policy_submit_update(p, req);
}

/* ---- sending ---- */

struct policy_req *policy_send_counts(struct policy *p,
				      const struct config *cfg,
				      const char *user, size_t user_len,
				      struct policy_send_counts *c,
				      policy_send_cb *cb, void *arg)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_SEND);
	bool ok;

	(void)cfg;
	req->send_cb = cb;
	req->arg = arg;
	for (size_t i = 0; i < POLICY_LIMIT_COUNT; i++)
		policy_user_op(req, STORE_GET, policy_limit_keys[i], user,
			       user_len, 0);
	if (policy_submit(p, req, &ok))
		return req;
	policy_send_counts_of(req, ok, c);
	policy_req_free(req);
	return NULL;
}

void policy_recipient_accepted(struct policy *p, const struct config *cfg,
			       const char *user, size_t user_len)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_UPDATE);

	(void)cfg;
	for (size_t i = POLICY_LIMIT_RECIPIENTS_HOUR;
	     i <= POLICY_LIMIT_RECIPIENTS_DAY; i++)
		policy_user_op(req, STORE_ADD, policy_limit_keys[i], user,
			       user_len, policy_limit_windows[i]);
	policy_submit_update(p, req);
}

void policy_message_accepted(struct policy *p, const struct config *cfg,
			     const char *user, size_t user_len)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_UPDATE);

	(void)cfg;
	policy_user_op(req, STORE_ADD,
		       policy_limit_keys[POLICY_LIMIT_MESSAGES_HOUR], user,
		       user_len,
		       policy_limit_windows[POLICY_LIMIT_MESSAGES_HOUR]);
	policy_submit_update(p, req);
}

void policy_limit_reached(struct policy *p, const struct config *cfg,
			  const char *sid, const char *user, size_t user_len,
			  enum policy_limit which, uint64_t limit,
			  uint64_t count, uint64_t ttl_ms)
{
	struct policy_req *req = policy_req_new(p, POLICY_REQ_FLAG);
	char key[64], text[SANITIZE_BUFSIZE];

	(void)cfg;
	snprintf(key, sizeof(key), "lr:%s:", policy_limit_keys[which]);
	/* The flag ends with the counter's window: the first refusal of
	 * the next one is logged again.  A window whose end is not known
	 * (a counter just gone) gets a whole one. */
	policy_user_op(req, STORE_FLAG, key, user, user_len,
		       ttl_ms > 0 ? ttl_ms : policy_limit_windows[which]);
	if (sid != NULL)
		snprintf(req->sid, sizeof(req->sid), "%s", sid);
	req->line = xasprintf(
	    "event=limit_reached user=\"%s\" limit=%s count=%llu "
	    "max=%llu window=%s",
	    sanitize(text, sizeof(text), user, user_len),
	    policy_limit_names[which], (unsigned long long)count,
	    (unsigned long long)limit,
	    policy_limit_windows[which] == DAY_MS ? "1d" : "1h");
	policy_submit_update(p, req);
}
