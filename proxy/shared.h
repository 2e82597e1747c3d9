/*
 * shared.h - what the event loops of the network process share
 * ([server] workers = N): the per-address table (connection counts, so
 * that max_connections_per_address holds across loops), the in-process
 * policy store (proxy/memstore.h, with its own lock: the failure and send
 * counters of proxy/policy.h when [policy] store = memory, and what
 * stands in for Redis when it fails), the number of open
 * sessions (max_connections), the session id counter and the health of
 * the backends (proxy/backends.h: up or down, their capabilities, when
 * each was last used and is next probed), which every session's
 * hand-over and pre-auth EHLO read and write on its own loop, and the
 * probe (proxy/probe.h) on the control loop.
 *
 * Locking: one mutex guards the address table and the backends; the
 * counters are atomic.  Every call is short and never blocks on I/O, so
 * one lock is enough for the few loops a machine has (the same choice as
 * Postfix's anvil, one process for the whole host).  The one exception:
 * a backend's change of state is logged (event=backend_state, one
 * write(2)) under the lock, so that whichever loop sees a change logs it
 * exactly once and the lines come in the order of the changes; changes
 * are rare (a backend going down or coming back).
 *
 * The backends' times are CLOCK_MONOTONIC (uv_hrtime), read here: the
 * loops' own uv_now() clocks are cached at different moments.
 *
 * An addr_entry returned by shared_addr_connect() stays valid until the
 * matching shared_addr_disconnect(): an entry is only freed when no
 * connection holds it.  Its fields are read and written only here, under
 * the lock.
 *
 * Ownership: the network process's main thread creates it before any loop
 * starts and destroys it after every loop has ended.
 */
#ifndef SUBMITPROXY_SHARED_H
#define SUBMITPROXY_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/addrtable.h"
#include "proxy/backends.h"
#include "proxy/memstore.h"
#include "proxy/smtp-relay-parse.h"

struct backends;
struct config;
struct config_backend;

struct shared {
	pthread_mutex_t lock;
	struct addrtable *addrs;   /* under lock */
	struct backends *backends; /* under lock */
	struct memstore *mem;      /* its own lock */
	/* The policy store's state as last logged, so that the loops (each
	 * with its own Redis connection) log a change once: 1 up, 0 down,
	 * -1 not known yet. */
	atomic_int store_state;

	atomic_uint sessions; /* open sessions, every loop */
	uint64_t sid_base;    /* random, set at init */
	atomic_uint_fast64_t sid_next;
};

/* seeds: random bits for the session ids and the table's hash. */
void shared_init(struct shared *sh, uint64_t sid_seed, uint64_t hash_seed);
void shared_finish(struct shared *sh);

/* A connection from key: counts it and returns its entry, with the number
 * of connections from that address including this one in *count_r. */
struct addr_entry *shared_addr_connect(struct shared *sh,
				       const struct addrkey *key,
				       uint32_t *count_r);
void shared_addr_disconnect(struct shared *sh, struct addr_entry *e);

/* Number of entries (tests). */
size_t shared_addr_count(struct shared *sh);

/* The backends of cfg are the ones tracked from now on (at start and on
 * reload): an address kept keeps its state and capabilities. */
void shared_backends_configure(struct shared *sh, const struct config *cfg);

/* The index in cfg's list of the backend a session tries next, none of
 * those in tried (bit i: list[i]); -1 when all have been tried.  See
 * backends_pick(). */
int shared_backend_pick(struct shared *sh, const struct config *cfg,
			uint32_t tried);

/* A hand-over to b succeeded: b is up, with caps (which refresh what the
 * pre-auth EHLO shows) and the time it was last used.  how says who saw
 * it for the log ("probe", "session"); sid is the session's, or NULL. */
void shared_backend_up(struct shared *sh, const struct config_backend *b,
		       const struct ehlo_caps *caps, const char *how,
		       const char *sid);

/* A hand-over to b failed (why): b is down and skipped while others are
 * left, until a probe, retry_interval of cfg later, or a session finds it
 * up again. */
void shared_backend_down(struct shared *sh, const struct config *cfg,
			 const struct config_backend *b, const char *why,
			 const char *sid);

/* The backends of cfg's list whose probe is due now, as bits (bit i:
 * list[i]); each is marked as being probed until
 * shared_backend_probe_done(). */
uint32_t shared_backends_due(struct shared *sh, const struct config *cfg);

/* The probe of b is over, after shared_backend_up() or _down(). */
void shared_backend_probe_done(struct shared *sh, const struct config *cfg,
			       const struct config_backend *b);

/* The capabilities a client may be promised before AUTH for cfg's
 * backends (backends_caps()); false if none is known yet. */
bool shared_backend_caps(struct shared *sh, const struct config *cfg,
			 struct ehlo_caps *caps);

/* A copy of the backends' states for a scrape (proxy/metrics.h): at most
 * max entries, each address cut to fit; returns how many. */
struct shared_backend_status {
	char address[128];
	enum backend_state state;
};
size_t shared_backends_status(struct shared *sh,
			      struct shared_backend_status *out, size_t max);

/* A process-wide unique session id. */
uint64_t shared_next_sid(struct shared *sh);

#endif
