/*
 * addrtable.h - per-client-address counters: open connections now (for
 * max_connections_per_address) and, later, authentication failures in a
 * window.  A chained hash table keyed by the address bytes; IPv4-mapped
 * IPv6 addresses count as the IPv4 address they carry.  An entry exists
 * only while some counter is non-zero, so memory follows the number of
 * distinct addresses seen recently, not the number ever seen.
 *
 * The hash is keyed with a per-table random seed (SipHash-style keyed
 * hashing is overkill here; a seeded FNV-1a spreads well enough and keeps
 * an attacker from aiming many addresses at one chain without knowing the
 * seed).
 */
#ifndef SUBMITPROXY_ADDRTABLE_H
#define SUBMITPROXY_ADDRTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct addrkey {
	uint8_t family;      /* AF_INET or AF_INET6 */
	uint8_t bytes[16];   /* 4 used for AF_INET */
};

struct addr_entry {
	struct addrkey key;
	uint32_t connections;
	uint32_t failures;           /* auth failures in the window */
	uint64_t window_start_ms;    /* when the failure window opened */
	struct addr_entry *next;
};

struct addrtable;

/* Fills key from a socket address; returns -1 for other families. */
int addrkey_from_sockaddr(struct addrkey *key, const struct sockaddr *sa);

struct addrtable *addrtable_create(uint64_t seed);
void addrtable_destroy(struct addrtable *t);

/* Returns the entry, creating a zeroed one if needed. */
struct addr_entry *addrtable_get(struct addrtable *t, const struct addrkey *key);

/* Returns the entry or NULL. */
struct addr_entry *addrtable_find(struct addrtable *t,
				  const struct addrkey *key);

/* Frees the entry if all its counters are zero. */
void addrtable_release(struct addrtable *t, struct addr_entry *e);

size_t addrtable_count(const struct addrtable *t);

/* Frees entries with no connection whose failure window (window_ms from
 * window_start_ms) has passed by now_ms.  Returns how many were freed. */
size_t addrtable_sweep(struct addrtable *t, uint64_t now_ms,
		       uint64_t window_ms);

#endif
