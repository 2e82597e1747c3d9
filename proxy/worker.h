/*
 * worker.h - one event loop and everything that hangs off it: the listening
 * sockets, the sessions, the per-address table, the shared read buffer.
 * There is no global mutable state: N workers on N threads is a matter of
 * creating N of these (DESIGN.md, "No global mutable state").
 *
 * Ownership: the worker owns its listeners and sessions.  worker_stop()
 * closes the listeners and asks every session to close; the loop then runs
 * dry and worker_destroy() frees what is left.
 */
#ifndef SUBMITPROXY_WORKER_H
#define SUBMITPROXY_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"

struct addrtable;
struct session;
struct tls_server;
struct listener;

#define WORKER_READ_BUFSIZE 65536

struct worker {
	uv_loop_t *loop;
	const struct config *cfg;
	struct tls_server *tls;       /* NULL without [tls]; owned by main */

	struct listener *listeners;   /* one per listening address */
	size_t nlisteners;

	struct session *sessions;     /* doubly linked, for stop and counts */
	uint32_t nsessions;
	struct addrtable *addrs;      /* per-address connection counts */

	uint64_t sid_base;            /* random; session ids count up from it */
	uint64_t sid_next;
	bool stopping;

	/* Every uv_read lands here and is consumed before the read callback
	 * returns, so one buffer per loop serves all sessions and an idle
	 * session holds none. */
	char read_buf[WORKER_READ_BUFSIZE];
	bool read_buf_busy;
};

/* Binds every configured listener.  Returns 0, or -1 after logging which
 * address could not be bound. */
int worker_init(struct worker *w, uv_loop_t *loop, const struct config *cfg,
		struct tls_server *tls);

/* Stops accepting and closes every session (with 421 to idle ones). */
void worker_stop(struct worker *w);

/* Frees what worker_init allocated; the loop must have run dry. */
void worker_finish(struct worker *w);

#endif
