/*
 * logratelimit.c - one log line per key per window (see logratelimit.h).
 *
 * Set-associative, like a CPU cache: the hash picks a set of
 * LOGRATELIMIT_WAYS entries, the key is looked for there only, and a new
 * key replaces the entry of the set that logged longest ago.  Lookup is
 * a few comparisons; nothing is ever allocated after create.
 */
#include "proxy/logratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct logratelimit_entry {
	uint64_t last_ms;    /* when its last line was logged */
	uint64_t suppressed; /* lines held back since */
	uint8_t len;	     /* 0: free */
	uint8_t key[LOGRATELIMIT_KEY_MAX];
};

struct logratelimit {
	struct logratelimit_entry *entries;
	size_t nsets; /* a power of two */
	uint64_t window_ms;
	uint64_t seed;
	/* The table-wide budget (logratelimit_set_budget()). */
	uint32_t budget, budget_used;
	uint64_t budget_start_ms;
	bool budget_started; /* budget_start_ms is set */
	uint64_t budget_held; /* held back by it since the last take */
};

struct logratelimit *logratelimit_create(size_t entries, uint64_t window_ms,
					 uint64_t seed)
{
	struct logratelimit *rl = xcalloc(1, sizeof(*rl));
	size_t nsets = 1;

	while (nsets * LOGRATELIMIT_WAYS < entries)
		nsets *= 2;
	rl->nsets = nsets;
	rl->entries = xcalloc(nsets * LOGRATELIMIT_WAYS, sizeof(*rl->entries));
	rl->window_ms = window_ms;
	rl->seed = seed;
	return rl;
}

void logratelimit_destroy(struct logratelimit *rl)
{
	if (rl == NULL)
		return;
	free(rl->entries);
	free(rl);
}

void logratelimit_set_budget(struct logratelimit *rl, uint32_t lines)
{
	rl->budget = lines;
}

uint64_t logratelimit_take_held(struct logratelimit *rl)
{
	uint64_t held = rl->budget_held;

	rl->budget_held = 0;
	return held;
}

/* A line the key's own limit lets through: does the table's budget for
 * this window have room for it? */
static bool logratelimit_budget(struct logratelimit *rl, uint64_t now_ms)
{
	if (rl->budget == 0)
		return true;
	if (!rl->budget_started || now_ms < rl->budget_start_ms ||
	    now_ms - rl->budget_start_ms >= rl->window_ms) {
		rl->budget_started = true;
		rl->budget_start_ms = now_ms;
		rl->budget_used = 0;
	}
	if (rl->budget_used >= rl->budget) {
		if (rl->budget_held < UINT64_MAX)
			rl->budget_held++;
		return false;
	}
	rl->budget_used++;
	return true;
}

/* Seeded FNV-1a with a final mix, as proxy/addrtable.c: the seed keeps a
 * client from choosing keys that share a set (and evict each other's
 * counts) without knowing it. */
static size_t logratelimit_set(const struct logratelimit *rl,
			       const uint8_t *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ rl->seed;

	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 0x100000001b3ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return (size_t)h & (rl->nsets - 1);
}

bool logratelimit_allow(struct logratelimit *rl, const void *key, size_t len,
			uint64_t now_ms, uint64_t *suppressed_r)
{
	struct logratelimit_entry *set, *e = NULL, *victim = NULL;

	if (suppressed_r != NULL)
		*suppressed_r = 0;
	if (rl->window_ms == 0)
		return true;
	if (len > LOGRATELIMIT_KEY_MAX)
		len = LOGRATELIMIT_KEY_MAX;
	set = &rl->entries[logratelimit_set(rl, key, len) * LOGRATELIMIT_WAYS];
	for (size_t i = 0; i < LOGRATELIMIT_WAYS; i++) {
		struct logratelimit_entry *c = &set[i];

		if (c->len == len && len > 0 && memcmp(c->key, key, len) == 0) {
			e = c;
			break;
		}
		/* A free entry first, else the one that logged longest ago. */
		if (victim == NULL ||
		    (victim->len != 0 &&
		     (c->len == 0 || c->last_ms < victim->last_ms)))
			victim = c;
	}
	if (e == NULL) {
		/* An empty key has no entry of its own: len 0 marks a free
		 * one.  It logs every line. */
		if (len == 0)
			return logratelimit_budget(rl, now_ms);
		if (!logratelimit_budget(rl, now_ms))
			return false;
		e = victim;
		e->len = (uint8_t)len;
		memcpy(e->key, key, len);
		e->last_ms = now_ms;
		e->suppressed = 0;
		return true;
	}
	/* A clock that went back (it should not) lets the line through
	 * rather than silence the key until it catches up. */
	if (now_ms >= e->last_ms && now_ms - e->last_ms < rl->window_ms) {
		if (e->suppressed < UINT64_MAX)
			e->suppressed++;
		return false;
	}
	if (!logratelimit_budget(rl, now_ms))
		return false; /* the key's own count waits for its next line */
	if (suppressed_r != NULL)
		*suppressed_r = e->suppressed;
	e->suppressed = 0;
	e->last_ms = now_ms;
	return true;
}
