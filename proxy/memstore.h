/*
 * memstore.h - the in-process policy store ([policy] store = memory, the
 * default): the operations of proxy/store.h on a hash table of keys with
 * expiry times, shared by every event loop of the process under its own
 * mutex.  Each call is short and never blocks on I/O, so it answers at
 * once: there is nothing to wait for.  It is also what stands in for
 * Redis while Redis fails ([policy] on_store_error = local).
 *
 * Memory follows the number of live keys: an expired key is never
 * returned, and memstore_sweep() (the control loop, once a minute) frees
 * them.  The table holds at most MEMSTORE_KEYS_MAX keys: past that, an
 * ADD, MARK or FLAG of a new key is dropped and counted (a flood of
 * made-up login names cannot grow the process without bound); the
 * caller's address limits stop such a flood long before.
 *
 * The hash is keyed with a random seed, so that a client cannot aim its
 * keys at one chain.
 *
 * Times are milliseconds of a clock the caller passes (CLOCK_MONOTONIC,
 * uv_hrtime()/1e6): every loop reads the same clock.
 */
#ifndef SUBMITPROXY_MEMSTORE_H
#define SUBMITPROXY_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/store.h"

#define MEMSTORE_KEYS_MAX 1000000

struct memstore;

struct memstore *memstore_create(uint64_t seed);
void memstore_destroy(struct memstore *ms);

/* Runs ops[0..n) in order at now_ms, each atomically; their results are
 * in ops on return. */
void memstore_exec(struct memstore *ms, struct store_op *ops, size_t n,
		   uint64_t now_ms);

/* Frees the keys expired by now_ms; returns how many. */
size_t memstore_sweep(struct memstore *ms, uint64_t now_ms);

/* Live and expired keys held now (tests). */
size_t memstore_count(struct memstore *ms);

/* New keys dropped since the start because the table was full. */
uint64_t memstore_dropped(struct memstore *ms);

/* The time the memstore calls use: CLOCK_MONOTONIC in milliseconds. */
uint64_t memstore_now_ms(void);

#endif
