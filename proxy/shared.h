/*
 * shared.h - what the event loops of the network process share
 * ([server] workers = N): the per-address table (connection counts and
 * authentication-failure windows, so that max_connections_per_address
 * and the address throttle hold across loops), the number of open
 * sessions (max_connections), the session id counter and the backend's
 * capabilities (probed by the control loop, read by every session's
 * pre-auth EHLO).
 *
 * Locking: one mutex guards the address table and the capabilities; the
 * counters are atomic.  Every call is short and never blocks on I/O, so
 * one lock is enough for the few loops a machine has (the same choice as
 * Postfix's anvil, one process for the whole host).
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
#include "proxy/smtp-relay-parse.h"

struct shared {
	pthread_mutex_t lock;
	struct addrtable *addrs;       /* under lock */
	struct ehlo_caps backend_caps; /* under lock */
	bool backend_caps_known;       /* under lock */

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

/* True if the address has limit or more authentication failures in the
 * window that started less than window_ms before now_ms.  An expired
 * window is cleared. */
bool shared_addr_throttled(struct shared *sh, struct addr_entry *e,
			   uint64_t now_ms, uint64_t window_ms, uint32_t limit);

/* Counts one authentication failure, opening a new window if the last
 * one has passed. */
void shared_addr_failed(struct shared *sh, struct addr_entry *e,
			uint64_t now_ms, uint64_t window_ms);

/* Frees entries no connection holds whose window has passed; returns how
 * many. */
size_t shared_addr_sweep(struct shared *sh, uint64_t now_ms,
			 uint64_t window_ms);

/* Number of entries (tests). */
size_t shared_addr_count(struct shared *sh);

void shared_set_backend_caps(struct shared *sh, const struct ehlo_caps *caps);

/* Copies the backend's capabilities into *caps; false if no probe has
 * succeeded yet. */
bool shared_backend_caps(struct shared *sh, struct ehlo_caps *caps);

/* A process-wide unique session id. */
uint64_t shared_next_sid(struct shared *sh);

#endif
