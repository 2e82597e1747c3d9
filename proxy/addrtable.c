/* addrtable.c - see addrtable.h */
#include "proxy/addrtable.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct addrtable {
	struct addr_entry **buckets;
	size_t nbuckets;      /* power of two */
	size_t count;
	uint64_t seed;
};

int addrkey_from_sockaddr(struct addrkey *key, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0,
					     0, 0, 0, 0, 0xff, 0xff};

	memset(key, 0, sizeof(*key));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		key->family = AF_INET;
		key->prefix_len = 32;
		memcpy(key->bytes, &sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		if (memcmp(sin6->sin6_addr.s6_addr, v4mapped, 12) == 0) {
			key->family = AF_INET;
			key->prefix_len = 32;
			memcpy(key->bytes, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			key->family = AF_INET6;
			key->prefix_len = 128;
			memcpy(key->bytes, sin6->sin6_addr.s6_addr, 16);
		}
		return 0;
	}
	return -1;
}

void addrkey_mask(struct addrkey *key, unsigned v4_bits, unsigned v6_bits)
{
	unsigned bits = key->family == AF_INET ? v4_bits : v6_bits;
	unsigned n = key->family == AF_INET ? 4 : 16;

	if (bits > n * 8)
		bits = n * 8;
	key->prefix_len = (uint8_t)bits;
	for (unsigned i = 0; i < n; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		key->bytes[i] &= (uint8_t)(0xff00u >> bits);
		bits = 0;
	}
}

void addrkey_prefix_text(const struct addrkey *key, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (inet_ntop(key->family, key->bytes, ip, sizeof(ip)) == NULL)
		snprintf(ip, sizeof(ip), "unknown");
	snprintf(buf, size, "%s/%u", ip, (unsigned)key->prefix_len);
}

static size_t addrtable_hash(const struct addrtable *t,
			     const struct addrkey *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	size_t n = key->family == AF_INET ? 4 : 16;

	h = (h ^ key->family) * 0x100000001b3ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ key->bytes[i]) * 0x100000001b3ULL;
	h ^= h >> 29;
	return (size_t)h & (t->nbuckets - 1);
}

static bool addrkey_equal(const struct addrkey *a, const struct addrkey *b)
{
	return a->family == b->family && a->prefix_len == b->prefix_len &&
	       memcmp(a->bytes, b->bytes, 16) == 0;
}

struct addrtable *addrtable_create(uint64_t seed)
{
	struct addrtable *t = xcalloc(1, sizeof(*t));

	t->nbuckets = 1024;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->seed = seed;
	return t;
}

void addrtable_destroy(struct addrtable *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct addr_entry *e = t->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->buckets);
	free(t);
}

static void addrtable_grow(struct addrtable *t)
{
	size_t old_n = t->nbuckets;
	struct addr_entry **old = t->buckets;

	t->nbuckets = old_n * 2;
	t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
	for (size_t i = 0; i < old_n; i++) {
		struct addr_entry *e = old[i], *next;

		for (; e != NULL; e = next) {
			size_t b = addrtable_hash(t, &e->key);

			next = e->next;
			e->next = t->buckets[b];
			t->buckets[b] = e;
		}
	}
	free(old);
}

struct addr_entry *addrtable_find(struct addrtable *t,
				  const struct addrkey *key)
{
	struct addr_entry *e = t->buckets[addrtable_hash(t, key)];

	for (; e != NULL; e = e->next)
		if (addrkey_equal(&e->key, key))
			return e;
	return NULL;
}

struct addr_entry *addrtable_get(struct addrtable *t, const struct addrkey *key)
{
	struct addr_entry *e = addrtable_find(t, key);
	size_t b;

	if (e != NULL)
		return e;
	if (t->count >= t->nbuckets)
		addrtable_grow(t);
	e = xcalloc(1, sizeof(*e));
	e->key = *key;
	b = addrtable_hash(t, key);
	e->next = t->buckets[b];
	t->buckets[b] = e;
	t->count++;
	return e;
}

void addrtable_release(struct addrtable *t, struct addr_entry *e)
{
	struct addr_entry **pp;

	if (e->connections != 0)
		return;
	pp = &t->buckets[addrtable_hash(t, &e->key)];
	for (; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			free(e);
			t->count--;
			return;
		}
	}
}

size_t addrtable_count(const struct addrtable *t)
{
	return t->count;
}
