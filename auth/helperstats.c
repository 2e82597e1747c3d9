/*
 * helperstats.c - see helperstats.h.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth/helperstats.h"
#include "common/log.h"

static size_t helper_stats_size(void)
{
	long page = sysconf(_SC_PAGESIZE);

	if (page < (long)sizeof(struct helper_stats))
		page = (long)sizeof(struct helper_stats);
	return (size_t)page;
}

struct helper_stats *helper_stats_create(void)
{
	void *p = mmap(NULL, helper_stats_size(), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct helper_stats *st;

	if (p == MAP_FAILED) {
		log_warn(NULL,
			 "event=start warning=\"helper stats page: %s\"",
			 strerror(errno));
		return NULL;
	}
	st = p;
	atomic_init(&st->restarts, 0);
	atomic_init(&st->alive, 0);
	atomic_init(&st->busy, 0);
	atomic_init(&st->queued, 0);
	return st;
}

void helper_stats_seal(struct helper_stats *st)
{
	if (st != NULL)
		(void)mprotect(st, helper_stats_size(), PROT_READ);
}

void helper_stats_destroy(struct helper_stats *st)
{
	if (st != NULL)
		munmap(st, helper_stats_size());
}

void helper_stats_set(struct helper_stats *st, unsigned alive, unsigned busy,
		      unsigned queued)
{
	if (st == NULL)
		return;
	atomic_store_explicit(&st->alive, alive, memory_order_relaxed);
	atomic_store_explicit(&st->busy, busy, memory_order_relaxed);
	atomic_store_explicit(&st->queued, queued, memory_order_relaxed);
}

void helper_stats_restarted(struct helper_stats *st)
{
	if (st != NULL)
		atomic_fetch_add_explicit(&st->restarts, 1,
					  memory_order_relaxed);
}
