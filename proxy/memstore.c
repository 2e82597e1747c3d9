/* memstore.c - see memstore.h */
#include "proxy/memstore.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"

struct memkey {
	struct memkey *next;
	uint64_t value;
	uint64_t expires_ms; /* every key has one */
	uint32_t hash;
	size_t len;
	char key[];
};

struct memstore {
	pthread_mutex_t lock;
	struct memkey **buckets;
	size_t nbuckets; /* a power of two */
	size_t count;
	uint64_t dropped;
	bool full_logged;
	uint32_t seed;
};

#define MEMSTORE_BUCKETS_MIN 256

uint64_t memstore_now_ms(void)
{
	return uv_hrtime() / 1000000;
}

struct memstore *memstore_create(uint64_t seed)
{
	struct memstore *ms = xcalloc(1, sizeof(*ms));

	pthread_mutex_init(&ms->lock, NULL);
	ms->nbuckets = MEMSTORE_BUCKETS_MIN;
	ms->buckets = xcalloc(ms->nbuckets, sizeof(*ms->buckets));
	ms->seed = (uint32_t)(seed ^ (seed >> 32));
	return ms;
}

void memstore_destroy(struct memstore *ms)
{
	if (ms == NULL)
		return;
	for (size_t i = 0; i < ms->nbuckets; i++) {
		for (struct memkey *k = ms->buckets[i], *next; k; k = next) {
			next = k->next;
			free(k);
		}
	}
	free(ms->buckets);
	pthread_mutex_destroy(&ms->lock);
	free(ms);
}

/* Seeded FNV-1a (as proxy/addrtable.c). */
static uint32_t memstore_hash(const struct memstore *ms, const char *key,
			      size_t len)
{
	uint32_t h = 2166136261u ^ ms->seed;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 16777619u;
	}
	return h;
}

static void memstore_grow(struct memstore *ms)
{
	size_t n = ms->nbuckets * 2;
	struct memkey **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < ms->nbuckets; i++) {
		for (struct memkey *k = ms->buckets[i], *next; k; k = next) {
			next = k->next;
			k->next = b[k->hash & (n - 1)];
			b[k->hash & (n - 1)] = k;
		}
	}
	free(ms->buckets);
	ms->buckets = b;
	ms->nbuckets = n;
}

/* The live key, or NULL; an expired one met on the way is freed. */
static struct memkey *memstore_find(struct memstore *ms, const char *key,
				    size_t len, uint32_t hash, uint64_t now)
{
	struct memkey **pp = &ms->buckets[hash & (ms->nbuckets - 1)];

	while (*pp != NULL) {
		struct memkey *k = *pp;

		if (k->expires_ms <= now) {
			*pp = k->next;
			free(k);
			ms->count--;
			continue;
		}
		if (k->hash == hash && k->len == len &&
		    memcmp(k->key, key, len) == 0)
			return k;
		pp = &k->next;
	}
	return NULL;
}

/* A new key, or NULL when the table is full. */
static struct memkey *memstore_insert(struct memstore *ms, const char *key,
				      size_t len, uint32_t hash)
{
	struct memkey *k;

	if (ms->count >= MEMSTORE_KEYS_MAX) {
		ms->dropped++;
		if (!ms->full_logged) {
			ms->full_logged = true;
			log_warn(NULL,
				 "event=policy_store store=memory state=full "
				 "keys=%zu",
				 ms->count);
		}
		return NULL;
	}
	ms->full_logged = false;
	if (ms->count >= ms->nbuckets)
		memstore_grow(ms);
	k = xmalloc(sizeof(*k) + len);
	k->hash = hash;
	k->len = len;
	memcpy(k->key, key, len);
	k->value = 0;
	k->expires_ms = 0;
	k->next = ms->buckets[hash & (ms->nbuckets - 1)];
	ms->buckets[hash & (ms->nbuckets - 1)] = k;
	ms->count++;
	return k;
}

static void memstore_op(struct memstore *ms, struct store_op *op, uint64_t now)
{
	uint32_t hash = memstore_hash(ms, op->key, op->key_len);
	struct memkey *k = memstore_find(ms, op->key, op->key_len, hash, now);
	/* A zero TTL would be an expired key: at least 1 ms. */
	uint64_t ttl = op->ttl_ms > 0 ? op->ttl_ms : 1;

	switch (op->kind) {
	case STORE_GET:
		op->value = k != NULL ? k->value : 0;
		op->ttl_ms = k != NULL ? k->expires_ms - now : 0;
		return;
	case STORE_ADD:
		if (k == NULL) {
			k = memstore_insert(ms, op->key, op->key_len, hash);
			if (k == NULL) {
				op->value = op->by;
				op->ttl_ms = ttl;
				return;
			}
			k->expires_ms = now + ttl;
		}
		k->value = k->value > UINT64_MAX - op->by ? UINT64_MAX
							  : k->value + op->by;
		op->value = k->value;
		op->ttl_ms = k->expires_ms - now;
		return;
	case STORE_MARK:
		if (k == NULL)
			k = memstore_insert(ms, op->key, op->key_len, hash);
		if (k != NULL) {
			k->value = 1;
			k->expires_ms = now + ttl;
		}
		op->value = 1;
		return;
	case STORE_FLAG:
		if (k != NULL) {
			op->value = 0;
			return;
		}
		k = memstore_insert(ms, op->key, op->key_len, hash);
		if (k != NULL) {
			k->value = 1;
			k->expires_ms = now + ttl;
		}
		op->value = 1;
		return;
	}
}

void memstore_exec(struct memstore *ms, struct store_op *ops, size_t n,
		   uint64_t now_ms)
{
	pthread_mutex_lock(&ms->lock);
	for (size_t i = 0; i < n; i++)
		memstore_op(ms, &ops[i], now_ms);
	pthread_mutex_unlock(&ms->lock);
}

size_t memstore_sweep(struct memstore *ms, uint64_t now_ms)
{
	size_t freed = 0;

	pthread_mutex_lock(&ms->lock);
	for (size_t i = 0; i < ms->nbuckets; i++) {
		struct memkey **pp = &ms->buckets[i];

		while (*pp != NULL) {
			struct memkey *k = *pp;

			if (k->expires_ms <= now_ms) {
				*pp = k->next;
				free(k);
				ms->count--;
				freed++;
			} else {
				pp = &k->next;
			}
		}
	}
	pthread_mutex_unlock(&ms->lock);
	return freed;
}

size_t memstore_count(struct memstore *ms)
{
	size_t n;

	pthread_mutex_lock(&ms->lock);
	n = ms->count;
	pthread_mutex_unlock(&ms->lock);
	return n;
}

uint64_t memstore_dropped(struct memstore *ms)
{
	uint64_t n;

	pthread_mutex_lock(&ms->lock);
	n = ms->dropped;
	pthread_mutex_unlock(&ms->lock);
	return n;
}
