/*
 * addrtable.h - connections open now per client address prefix (for
 * max_connections_per_address, [limits] ipv4_prefix / ipv6_prefix).  A
 * chained hash table keyed by the prefix; IPv4-mapped IPv6 addresses
 * count as the IPv4 address they carry.  An entry exists only while a
 * connection holds it, so memory follows the connections open now.  (The
 * authentication failures per prefix are policy counters: proxy/policy.h,
 * which Redis can share between instances.)
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
	uint8_t prefix_len;  /* bits kept: 32 or 128 for a whole address */
	uint8_t bytes[16];   /* 4 used for AF_INET; zero past prefix_len */
};

struct addr_entry {
	struct addrkey key;
	uint32_t connections;
	struct addr_entry *next;
};

struct addrtable;

/* Fills key from a socket address (the whole address); returns -1 for
 * other families. */
int addrkey_from_sockaddr(struct addrkey *key, const struct sockaddr *sa);

/* Cuts key to its first v4_bits (IPv4) or v6_bits (IPv6) bits. */
void addrkey_mask(struct addrkey *key, unsigned v4_bits, unsigned v6_bits);

/* "192.0.2.0/24", "2001:db8::/64": at least INET6_ADDRSTRLEN + 4. */
void addrkey_prefix_text(const struct addrkey *key, char *buf, size_t size);

struct addrtable *addrtable_create(uint64_t seed);
void addrtable_destroy(struct addrtable *t);

/* Returns the entry, creating a zeroed one if needed. */
struct addr_entry *addrtable_get(struct addrtable *t, const struct addrkey *key);

/* Returns the entry or NULL. */
struct addr_entry *addrtable_find(struct addrtable *t,
				  const struct addrkey *key);

/* Frees the entry if no connection holds it. */
void addrtable_release(struct addrtable *t, struct addr_entry *e);

size_t addrtable_count(const struct addrtable *t);

#endif
