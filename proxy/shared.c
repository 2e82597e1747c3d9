/* shared.c - see shared.h */
#include "proxy/shared.h"

#include <string.h>

void shared_init(struct shared *sh, uint64_t sid_seed, uint64_t hash_seed)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	sh->addrs = addrtable_create(hash_seed);
	atomic_init(&sh->sessions, 0);
	sh->sid_base = sid_seed;
	atomic_init(&sh->sid_next, 0);
}

void shared_finish(struct shared *sh)
{
	addrtable_destroy(sh->addrs);
	sh->addrs = NULL;
	pthread_mutex_destroy(&sh->lock);
}

struct addr_entry *shared_addr_connect(struct shared *sh,
				       const struct addrkey *key,
				       uint32_t *count_r)
{
	struct addr_entry *e;

	pthread_mutex_lock(&sh->lock);
	e = addrtable_get(sh->addrs, key);
	if (e->connections < UINT32_MAX)
		e->connections++;
	*count_r = e->connections;
	pthread_mutex_unlock(&sh->lock);
	return e;
}

void shared_addr_disconnect(struct shared *sh, struct addr_entry *e)
{
	pthread_mutex_lock(&sh->lock);
	e->connections--;
	addrtable_release(sh->addrs, e);
	pthread_mutex_unlock(&sh->lock);
}

bool shared_addr_throttled(struct shared *sh, struct addr_entry *e,
			   uint64_t now_ms, uint64_t window_ms, uint32_t limit)
{
	bool throttled = false;

	pthread_mutex_lock(&sh->lock);
	if (e->failures > 0) {
		/* Loops read the clock at different moments: a window start
		 * a little in this loop's future is not a passed window. */
		if (now_ms >= e->window_start_ms &&
		    now_ms - e->window_start_ms >= window_ms)
			e->failures = 0;
		else
			throttled = e->failures >= limit;
	}
	pthread_mutex_unlock(&sh->lock);
	return throttled;
}

void shared_addr_failed(struct shared *sh, struct addr_entry *e,
			uint64_t now_ms, uint64_t window_ms)
{
	pthread_mutex_lock(&sh->lock);
	if (e->failures == 0 || (now_ms >= e->window_start_ms &&
				 now_ms - e->window_start_ms >= window_ms)) {
		e->failures = 0;
		e->window_start_ms = now_ms;
	}
	if (e->failures < UINT32_MAX)
		e->failures++;
	pthread_mutex_unlock(&sh->lock);
}

size_t shared_addr_sweep(struct shared *sh, uint64_t now_ms, uint64_t window_ms)
{
	size_t n;

	pthread_mutex_lock(&sh->lock);
	n = addrtable_sweep(sh->addrs, now_ms, window_ms);
	pthread_mutex_unlock(&sh->lock);
	return n;
}

size_t shared_addr_count(struct shared *sh)
{
	size_t n;

	pthread_mutex_lock(&sh->lock);
	n = addrtable_count(sh->addrs);
	pthread_mutex_unlock(&sh->lock);
	return n;
}

void shared_set_backend_caps(struct shared *sh, const struct ehlo_caps *caps)
{
	pthread_mutex_lock(&sh->lock);
	sh->backend_caps = *caps;
	sh->backend_caps_known = true;
	pthread_mutex_unlock(&sh->lock);
}

bool shared_backend_caps(struct shared *sh, struct ehlo_caps *caps)
{
	bool known;

	pthread_mutex_lock(&sh->lock);
	known = sh->backend_caps_known;
	if (known)
		*caps = sh->backend_caps;
	pthread_mutex_unlock(&sh->lock);
	return known;
}

uint64_t shared_next_sid(struct shared *sh)
{
	return sh->sid_base + atomic_fetch_add_explicit(&sh->sid_next, 1,
							memory_order_relaxed);
}
