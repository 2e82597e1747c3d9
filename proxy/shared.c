/* shared.c - see shared.h */
#include "proxy/shared.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/backends.h"

void shared_init(struct shared *sh, uint64_t sid_seed, uint64_t hash_seed)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	sh->addrs = addrtable_create(hash_seed);
	sh->backends = backends_create();
	sh->mem = memstore_create(hash_seed * 0x9e3779b97f4a7c15ULL + 1);
	atomic_init(&sh->store_state, -1);
	atomic_init(&sh->sessions, 0);
	sh->sid_base = sid_seed;
	atomic_init(&sh->sid_next, 0);
}

void shared_finish(struct shared *sh)
{
	addrtable_destroy(sh->addrs);
	sh->addrs = NULL;
	backends_destroy(sh->backends);
	sh->backends = NULL;
	memstore_destroy(sh->mem);
	sh->mem = NULL;
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

size_t shared_addr_count(struct shared *sh)
{
	size_t n;

	pthread_mutex_lock(&sh->lock);
	n = addrtable_count(sh->addrs);
	pthread_mutex_unlock(&sh->lock);
	return n;
}

static uint64_t shared_clock_ms(void)
{
	return uv_hrtime() / 1000000;
}

void shared_backends_configure(struct shared *sh, const struct config *cfg)
{
	pthread_mutex_lock(&sh->lock);
	backends_configure(sh->backends, cfg->backend.list, cfg->backend.count);
	pthread_mutex_unlock(&sh->lock);
}

size_t shared_backends_status(struct shared *sh,
			      struct shared_backend_status *out, size_t max)
{
	size_t n = 0;
	const char *address;
	enum backend_state state;

	pthread_mutex_lock(&sh->lock);
	while (n < max &&
	       (address = backends_entry(sh->backends, n, &state)) != NULL) {
		snprintf(out[n].address, sizeof(out[n].address), "%s",
			 address);
		out[n].state = state;
		n++;
	}
	pthread_mutex_unlock(&sh->lock);
	return n;
}

int shared_backend_pick(struct shared *sh, const struct config *cfg,
			uint32_t tried)
{
	int i;

	pthread_mutex_lock(&sh->lock);
	i = backends_pick(sh->backends, cfg->backend.list, cfg->backend.count,
			  tried);
	pthread_mutex_unlock(&sh->lock);
	return i;
}

void shared_backend_up(struct shared *sh, const struct config_backend *b,
		       const struct ehlo_caps *caps, const char *how,
		       const char *sid)
{
	uint64_t now = shared_clock_ms();

	pthread_mutex_lock(&sh->lock);
	if (backends_up(sh->backends, b->address, caps, now))
		log_info(sid,
			 "event=backend_state backend=%s state=up "
			 "reason=\"%s hand-over succeeded\"",
			 b->address, how);
	pthread_mutex_unlock(&sh->lock);
}

void shared_backend_down(struct shared *sh, const struct config *cfg,
			 const struct config_backend *b, const char *why,
			 const char *sid)
{
	uint64_t now = shared_clock_ms();
	char reason[SANITIZE_BUFSIZE];

	pthread_mutex_lock(&sh->lock);
	if (backends_down(sh->backends, b->address, now,
			  cfg->backend.retry_interval_ms))
		log_warn(sid,
			 "event=backend_state backend=%s state=down "
			 "reason=\"%s\"",
			 b->address,
			 sanitize(reason, sizeof(reason), why, strlen(why)));
	pthread_mutex_unlock(&sh->lock);
}

uint32_t shared_backends_due(struct shared *sh, const struct config *cfg)
{
	uint64_t now = shared_clock_ms();
	uint32_t due;

	pthread_mutex_lock(&sh->lock);
	due = backends_due(sh->backends, cfg->backend.list, cfg->backend.count,
			   now, cfg->backend.probe_interval_ms);
	pthread_mutex_unlock(&sh->lock);
	return due;
}

void shared_backend_probe_done(struct shared *sh, const struct config *cfg,
			       const struct config_backend *b)
{
	uint64_t now = shared_clock_ms();

	pthread_mutex_lock(&sh->lock);
	backends_probe_done(sh->backends, b->address, now,
			    cfg->backend.retry_interval_ms);
	pthread_mutex_unlock(&sh->lock);
}

bool shared_backend_caps(struct shared *sh, const struct config *cfg,
			 struct ehlo_caps *caps)
{
	bool known;

	pthread_mutex_lock(&sh->lock);
	known = backends_caps(sh->backends, cfg->backend.list,
			      cfg->backend.count, caps);
	pthread_mutex_unlock(&sh->lock);
	return known;
}

uint64_t shared_next_sid(struct shared *sh)
{
	return sh->sid_base + atomic_fetch_add_explicit(&sh->sid_next, 1,
							memory_order_relaxed);
}
