/*
 * logratelimit.h - at most one log line per key per window, so that one
 * client (a scanner failing TLS handshakes by the thousand) cannot flood
 * the log: "log this now?" for a key, and how many lines were held back
 * for it since its last one, so that the next line can say so
 * (suppressed=N).  Only log lines go through it; counters count every
 * event.
 *
 * Pure: no libuv, no lock, no clock (the caller passes the time, in
 * milliseconds of a clock that does not go back: uv_now()).  One table
 * per event loop; a table belongs to the thread that uses it.
 *
 * Memory is fixed whatever the number of clients: a table of entries in
 * sets of LOGRATELIMIT_WAYS, the set chosen by a seeded hash of the key.
 * A new key takes a free entry of its set, else the one whose last line
 * is oldest, whose count of held-back lines is then lost (and that key
 * is free to log again).  So the limit holds for up to about as many
 * keys at once as the table has entries; beyond that, more lines would
 * get through, which is what the table-wide budget is for: at most so
 * many lines per window whatever the number of keys (an IPv6 scanner
 * with a /48 has 65536 /64s), the ones held back by it counted for the
 * next line that gets through (logratelimit_take_held()).
 *
 * Ownership: logratelimit_create() returns a table the caller frees with
 * logratelimit_destroy() (NULL is a no-op).
 */
#ifndef SUBMITPROXY_LOGRATELIMIT_H
#define SUBMITPROXY_LOGRATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Entries per hash set. */
#define LOGRATELIMIT_WAYS 4
/* Longer keys count as their first LOGRATELIMIT_KEY_MAX bytes (a struct
 * addrkey is 18, an address's text at most 45). */
#define LOGRATELIMIT_KEY_MAX 48

struct logratelimit;

/* A table of about entries entries (rounded up to a power of two, at
 * least LOGRATELIMIT_WAYS), allowing one line per key per window_ms
 * (0: every line).  seed keys the hash (a random value, so that nobody
 * can aim many keys at one set).  Aborts when out of memory. */
struct logratelimit *logratelimit_create(size_t entries, uint64_t window_ms,
					 uint64_t seed);
void logratelimit_destroy(struct logratelimit *rl);

/* Whether to log a line for key[0..len) at now_ms: true for the key's
 * first line and for the first one window_ms or more after its last
 * logged one; *suppressed_r (may be NULL) then gets the number of lines
 * held back for the key in between.  False: hold this one back (it is
 * counted). */
bool logratelimit_allow(struct logratelimit *rl, const void *key, size_t len,
			uint64_t now_ms, uint64_t *suppressed_r);

/* At most lines lines per window_ms over all keys (0, the default: no
 * such limit).  A line the budget holds back leaves its key's entry as it
 * was (its own count says nothing of it) and counts table-wide. */
void logratelimit_set_budget(struct logratelimit *rl, uint32_t lines);

/* The lines the budget held back since the last call; resets the count. */
uint64_t logratelimit_take_held(struct logratelimit *rl);

#endif
