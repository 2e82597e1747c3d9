/*
 * store.h - the operations on policy counters, as both stores run them:
 * the in-process store (proxy/memstore.h, the default) and Redis
 * (proxy/redisstore.h, shared by every instance).  proxy/policy.h builds
 * the limits on them; the stores know nothing of SMTP.
 *
 * Every counter is a fixed window: it opens at the first ADD to an absent
 * key, which sets its expiry, and ends when the key expires; later ADDs
 * keep the expiry (Postfix anvil's time unit; Redis INCRBY + PEXPIRE
 * when there is none).  A known address is a MARK whose expiry each
 * success pushes back.  A FLAG is set once per window ("log the first
 * refusal only").
 *
 * Keys are bytes (a login name may hold any byte but NUL, CR and LF),
 * without the [policy] key_prefix, which the Redis store adds.
 */
#ifndef SUBMITPROXY_STORE_H
#define SUBMITPROXY_STORE_H

#include <stddef.h>
#include <stdint.h>

/* "ka:" + a prefix in text + " " + a login of SASL_USER_MAX bytes. */
#define STORE_KEY_MAX 384
/* Most operations in one request. */
#define STORE_OPS_MAX 4

enum store_op_kind {
	/* value and ttl_ms (time left) of key; 0 and 0 if absent. */
	STORE_GET,
	/* value += by; an absent key (or one without expiry) expires
	 * ttl_ms from now.  Out: value after, ttl_ms left. */
	STORE_ADD,
	/* value = 1, expiring ttl_ms from now, whether or not it existed. */
	STORE_MARK,
	/* If absent: value = 1 expiring ttl_ms from now, and the op's
	 * value is 1; if present, nothing changes and the op's value is 0. */
	STORE_FLAG,
};

struct store_op {
	enum store_op_kind kind;
	uint64_t by;	 /* ADD */
	uint64_t ttl_ms; /* in: ADD, MARK, FLAG; out: GET, ADD */
	uint64_t value;	 /* out */
	size_t key_len;
	char key[STORE_KEY_MAX];
};

/* Fills op's key from printf-like pieces: prefix (text) and bytes
 * (a login, any bytes).  Returns -1 if it does not fit. */
int store_key(struct store_op *op, const char *prefix, const char *bytes,
	      size_t bytes_len);

#endif
