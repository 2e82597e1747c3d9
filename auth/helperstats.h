/*
 * helperstats.h - what the auth helper tells the network process's
 * metrics (proxy/metrics.h) about itself: its PAM workers alive and
 * busy, requests queued, and how often a worker had to be forked again.
 *
 * One page of shared memory (MAP_SHARED | MAP_ANONYMOUS), made by the
 * process started before it forks the network process, so both see the
 * same page.  What keeps the helper safe is that it only ever stores into
 * the page and never uses what is there (it keeps its own counts and
 * stores copies; the one atomic add discards the old value): a network
 * process it distrusts can scribble on the page, and so lie in its own
 * metrics, but cannot feed the helper anything through it.  The network
 * process maps its view read-only (helper_stats_seal()) against its own
 * bugs, not against an attacker: it could mprotect() it back.
 *
 * The counters must be lock-free atomics to work across processes (a
 * libatomic lock is private to a process): checked at compile time.
 */
#ifndef SUBMITPROXY_AUTH_HELPERSTATS_H
#define SUBMITPROXY_AUTH_HELPERSTATS_H

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
	      "the helper stats page needs lock-free atomics");

struct helper_stats {
	atomic_uint_fast64_t restarts; /* workers forked again after one died */
	atomic_uint alive;	       /* PAM workers running */
	atomic_uint busy;	       /* ... with a transaction */
	atomic_uint queued;	       /* requests waiting for a worker */
};

/* A zeroed shared page, or NULL (logged): metrics then show no helper
 * figures, nothing else changes. */
struct helper_stats *helper_stats_create(void);
/* In the network process: the page becomes read-only there. */
void helper_stats_seal(struct helper_stats *st);
void helper_stats_destroy(struct helper_stats *st);

/* The helper's writes (st may be NULL). */
void helper_stats_set(struct helper_stats *st, unsigned alive, unsigned busy,
		      unsigned queued);
void helper_stats_restarted(struct helper_stats *st);

#endif
