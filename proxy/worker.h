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
#include "proxy/datascan.h"
#include "proxy/smtp-relay-parse.h"

struct addrtable;
struct session;
struct tls_server;
struct auth_client;
struct relay;
struct sendermap;
struct sd_listen_fd;
struct listener;

#define WORKER_READ_BUFSIZE 65536
/* Message bytes go through the DATA scanner in chunks of this size. */
#define WORKER_DATA_CHUNK 16384

struct worker {
	uv_loop_t *loop;
	struct config *cfg;           /* the current one; main owns it */
	struct tls_server *tls;       /* NULL without [tls]; owned by main */
	struct auth_client *auth;     /* channel to the auth helper; main's */
	uv_timer_t sweep_timer;       /* expires per-address failure windows */
	const struct sendermap *sendermap; /* [relay] sender_map or NULL */

	/* The backend's capabilities, probed at start and every minute: the
	 * pre-auth EHLO announces only what the backend can do. */
	struct ehlo_caps backend_caps;
	bool backend_caps_known;
	bool backend_probe_failing;
	bool probe_done;              /* this round's probe got its EHLO */
	struct relay *probe;
	uv_timer_t probe_timer;

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
	/* The DATA scanner's output for one chunk. */
	char data_buf[DATASCAN_OUT_MAX(WORKER_DATA_CHUNK)];
};

/* Binds every configured listener.  Returns 0, or -1 after logging which
 * address could not be bound. */
int worker_init(struct worker *w, uv_loop_t *loop, struct config *cfg,
		struct tls_server *tls, struct auth_client *auth,
		const struct sendermap *sendermap,
		const struct sd_listen_fd *fds, size_t nfds);

/* Stops accepting.  Idle sessions get "421 4.3.2" and close; sessions
 * with a transaction in progress finish it first (worker_stop_force()
 * ends them when [server] shutdown_timeout has passed). */
void worker_stop(struct worker *w);
void worker_stop_force(struct worker *w);

/* SIGHUP: new sessions use cfg (whose listener sections must mirror the
 * current ones: listeners are not re-bound live) and sendermap; live
 * sessions keep the configuration they started with, which is freed with
 * the last of them. */
void worker_reload(struct worker *w, struct config *cfg,
		   const struct sendermap *sendermap);

/* A session ended: drop its hold on its configuration. */
void worker_config_release(struct worker *w, struct config *cfg);

/* Frees what worker_init allocated; the loop must have run dry. */
void worker_finish(struct worker *w);

#endif
