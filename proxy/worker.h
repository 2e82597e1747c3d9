/*
 * worker.h - one event loop on its own thread, and everything that hangs
 * off it: its sessions, its channel to the auth helper, the read buffer
 * its sessions share.  [server] workers = N runs N of these; the control
 * loop (proxy/main.c) accepts connections (proxy/listener.h) and hands
 * each to the least-loaded worker.  What the workers must agree on (the
 * per-address counts, the session total, the backends' health) is
 * in proxy/shared.h; the TLS contexts (tls/tls-server.h), the
 * configuration, the sender map and the user limits are shared read-only,
 * each worker holding a reference.
 *
 * Threads: a worker's loop, sessions and auth client are touched only by
 * its own thread.  Other threads talk to it only through the worker_post_*
 * calls, which leave a message in its mailbox (a mutex) and wake its loop
 * (uv_async_send); the thread reads the mailbox on its loop.
 *
 * Life: worker_init() (on the main thread: loop, mailbox, auth client),
 * worker_start() (the thread runs the loop), worker_post_stop() (sessions
 * drain; the loop ends once they are gone and the hooks' exited is
 * called, as the thread's last act), worker_join() and worker_finish().
 */
#ifndef SUBMITPROXY_WORKER_H
#define SUBMITPROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/datascan.h"
#include "proxy/session.h"

struct auth_client;
struct metrics;
struct session;
struct sendermap;
struct shared;
struct tls_server;
struct userlimits;
struct worker;

/* One buffer per worker, shared by its sessions (a read is consumed
 * before the next).  256 KiB: a message arrives in a quarter of the reads,
 * and leaves for the backend in a quarter of the writes (each one also a
 * wake-up of the MTA), that 64 KiB would take (CPU per MB relayed -12%,
 * bench_relay.py). */
#define WORKER_READ_BUFSIZE (256 * 1024)
/* Message bytes go through the DATA scanner in chunks of this size: a
 * whole read (a TLS feed hands over up to sixteen records at once, 256
 * KiB), so that a read is scanned in one call and relayed in one write. */
#define WORKER_DATA_CHUNK WORKER_READ_BUFSIZE
/* A worker thread's stack, whatever RLIMIT_STACK says (worker_start()). */
#define WORKER_STACK_SIZE (8 * 1024 * 1024)

/* Called on the worker's own thread. */
struct worker_hooks {
	/* The channel to the auth helper broke: nobody can log in here. */
	void (*auth_lost)(void *arg, struct worker *w);
	/* The loop has ended; the last thing the thread does. */
	void (*exited)(void *arg, struct worker *w);
	void *arg;
};

/* A connection handed to the worker: the accepted socket and the index of
 * its [listener] in the configuration. */
struct worker_conn {
	int fd;
	size_t listener;
};

/* What other threads ask of the worker; under mail_lock. */
struct worker_mail {
	struct worker_conn *conns;
	size_t nconns, cap;
	bool stop, force;
	bool reload;		       /* the four below are new */
	struct config *cfg;	       /* a reference for the worker */
	struct sendermap *sendermap;   /* a reference, or NULL */
	struct userlimits *userlimits; /* a reference, or NULL */
	struct tls_server *tls;
	bool closed; /* the loop has ended: nothing more */
};

struct worker {
	unsigned index; /* 0..workers-1, for the logs */
	uv_loop_t loop;
	uv_thread_t thread;
	bool started;

	struct shared *shared;
	struct worker_hooks hooks;
	/* Its thread counts into slot index of this (proxy/metrics.h);
	 * set before worker_start(), or NULL. */
	struct metrics *metrics;

	/* What its sessions may use, and the worker's own current state:
	 * env.cfg, env.sendermap and env.userlimits are references the
	 * worker holds, env.tls is main's (NULL without [tls]), env.auth this
	 * loop's channel to the helper; cfg, sendermap, userlimits, tls and
	 * stopping follow reloads and stop. */
	struct session_env env;
	struct session *sessions; /* doubly linked (session_hook), for stop */
	uint32_t nsessions;
	/* Sessions plus connections handed over and not yet started: what
	 * the acceptor balances on (read from its thread). */
	atomic_uint load;

	uv_async_t wake;
	pthread_mutex_t mail_lock;
	struct worker_mail mail;

	/* Every uv_read lands here and is consumed before the read callback
	 * returns, so one buffer per loop serves all sessions and an idle
	 * session holds none. */
	char read_buf[WORKER_READ_BUFSIZE];
	/* The DATA scanner's output for one chunk. */
	char data_buf[DATASCAN_OUT_MAX(WORKER_DATA_CHUNK)];
};

/* Sets up the loop and the mailbox, and the auth client over auth_fd
 * (which it owns from here, even on failure).  Takes a reference on cfg,
 * on sendermap and on userlimits (each may be NULL but cfg).  Returns 0
 * or -1 (logged). */
int worker_init(struct worker *w, unsigned index, struct config *cfg,
		struct tls_server *tls, struct sendermap *sendermap,
		struct userlimits *userlimits, struct shared *shared,
		int auth_fd, const struct worker_hooks *hooks);

/* Runs the loop on a new thread (stop signals blocked there: the main
 * thread takes them).  Returns 0 or -1 (logged). */
int worker_start(struct worker *w);

/* Hands over an accepted connection.  Returns false if the worker has
 * ended; the caller then still owns fd. */
bool worker_post_connection(struct worker *w, size_t listener, int fd);

/* SIGHUP: new sessions use cfg (whose listener sections mirror the
 * current ones: listeners are not re-bound live), sendermap, userlimits
 * and tls; live sessions keep the configuration they started with but
 * read the sender map and the user limits at their next MAIL.  Takes its
 * own references. */
void worker_post_reload(struct worker *w, struct config *cfg,
			struct sendermap *sendermap,
			struct userlimits *userlimits, struct tls_server *tls);

/* Graceful stop: idle sessions get "421 4.3.2" and close; sessions with a
 * transaction in progress finish it first.  worker_post_force() ends them
 * ([server] shutdown_timeout has passed). */
void worker_post_stop(struct worker *w);
void worker_post_force(struct worker *w);

/* Sessions now, and handed over but not started. */
unsigned worker_load(struct worker *w);

/* The acceptor's choice: the least-loaded of n workers, ties going round
 * from *next (which moves past the choice), so that equal workers take
 * turns.  Pure, for the unit tests. */
size_t worker_pick(const unsigned *loads, size_t n, size_t *next);

/* The worker's list of sessions (session_env added/removed). */
void worker_session_add(void *worker, struct session *s);
void worker_session_remove(void *worker, struct session *s);

/* Waits for the thread (after exited) and frees what worker_init set
 * up; without a started thread, runs the loop dry first. */
void worker_join(struct worker *w);

#endif
