/*
 * backends.h - the health of the backend MTAs ([backend] address, a list
 * in order of preference): for each, up, down or not known yet, the
 * capabilities it last announced, when a session or the probe last
 * talked to it, and when its next probe is due.  A pure table: no lock,
 * no I/O, no clock (the caller passes the time).  proxy/shared.h wraps it
 * under the shared lock; that is how the event loops and the probe reach
 * it.
 *
 * Keyed by the backend's address text, not by its place in a
 * configuration: a reload that keeps an address keeps its state and
 * capabilities whatever the new order, and backends_configure() adds the
 * new addresses (unknown) and forgets the removed ones.  Lookups take a
 * configuration's list and find each of its addresses; one the table does
 * not hold (a live session under a configuration a reload replaced) is
 * unknown.
 *
 * The rules (README, "Several backends"):
 * - A session takes the first backend of its list that is not down; one
 *   that failed its hand-over is down and skipped while another is left
 *   to try.  When every backend left is down, they are still tried, in
 *   order: a refusal without trying would keep a recovered backend
 *   unused until its next probe.
 * - Down: the probe tries it retry_interval after it went down, and
 *   every retry_interval after that, until it is up.  Unknown (at start,
 *   or added by a reload): probed at once.  Up: probed only once no
 *   session and no probe has talked to it for probe_interval; every
 *   successful hand-over counts, so steady traffic makes no probe.
 * - The pre-auth EHLO announces the intersection of the capabilities of
 *   the backends that are up and known, so that no client is promised
 *   an extension its failover lacks; when none is up, of every backend
 *   known (they are the ones a session will try: with a single backend
 *   its last capabilities, as before); none known: false, and the caller
 *   announces its conservative set.
 */
#ifndef SUBMITPROXY_BACKENDS_H
#define SUBMITPROXY_BACKENDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/smtp-relay-parse.h"

struct config_backend;
struct backends;

enum backend_state {
	BACKEND_UNKNOWN, /* never reached yet: treated as up */
	BACKEND_UP,
	BACKEND_DOWN,
	BACKEND_STATE_COUNT
};

const char *backend_state_name(enum backend_state state);

struct backends *backends_create(void);
void backends_destroy(struct backends *t);

/* The addresses of list[0..n) are the table from now on: those it holds
 * keep what they have, new ones are unknown, others are forgotten. */
void backends_configure(struct backends *t, const struct config_backend *list,
			size_t n);

/* Number of entries (tests). */
size_t backends_count(const struct backends *t);

/* Entry i (in the order of the last backends_configure() list): its
 * address, and its state in *state; NULL for i >= backends_count(). */
const char *backends_entry(const struct backends *t, size_t i,
			   enum backend_state *state);

/* BACKEND_UNKNOWN for an address the table does not hold. */
enum backend_state backends_state(const struct backends *t,
				  const char *address);

/* A hand-over succeeded (a session's or the probe's): up, with caps, seen
 * at now_ms.  Returns true if it was not up before (a change to log). */
bool backends_up(struct backends *t, const char *address,
		 const struct ehlo_caps *caps, uint64_t now_ms);

/* A hand-over failed: down; if it was not, its first probe is due
 * retry_ms from now_ms.  Returns true if it was not down before. */
bool backends_down(struct backends *t, const char *address, uint64_t now_ms,
		   uint64_t retry_ms);

/* The index in list[0..n) of the backend a session tries next, never one
 * whose bit is set in tried (bit i: list[i]): the first not down, else
 * the first down; -1 when every one has been tried.  n is at most 32. */
int backends_pick(const struct backends *t, const struct config_backend *list,
		  size_t n, uint32_t tried);

/* The backends of list[0..n) whose probe is due at now_ms, as bits (bit
 * i: list[i]); each is marked as being probed, and is not due again until
 * backends_probe_done(). */
uint32_t backends_due(struct backends *t, const struct config_backend *list,
		      size_t n, uint64_t now_ms, uint64_t probe_interval_ms);

/* The probe of address is over (backends_up() or backends_down() told its
 * result); if it is down, the next probe is due retry_ms from now_ms. */
void backends_probe_done(struct backends *t, const char *address,
			 uint64_t now_ms, uint64_t retry_ms);

/* The capabilities a client may be promised for list[0..n), as above;
 * false if no backend's are known. */
bool backends_caps(const struct backends *t, const struct config_backend *list,
		   size_t n, struct ehlo_caps *out);

/* acc becomes what both acc and caps offer: the extensions both have, the
 * smaller SIZE (0 is no limit), the larger DELIVERBY minimum. */
void backends_caps_intersect(struct ehlo_caps *acc,
			     const struct ehlo_caps *caps);

#endif
