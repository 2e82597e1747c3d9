/*
 * session.h - one client connection: admission under the connection
 * limits, the greeting, the command dispatcher (proxy/session-cmd.h) and
 * the session's life.  The parts it is built from, each owning its own
 * state: proxy/session-io.h (socket, TLS, output, parking, close),
 * proxy/replyq.h (replies in command order), proxy/session-auth.h (SASL
 * and the auth helper), proxy/session-relay.h (the backend after AUTH and
 * the mail transaction).  Dependencies point down: none of those includes
 * this header or calls the session other than through the callbacks it
 * handed them.
 *
 * Two state machines, each changed only through its *_enter_state():
 * the protocol phase (here) and the connection's life (session-io).
 *
 * Ownership: the owner (the worker) hands a session_env to every session
 * it starts; the env outlives its sessions.  A session is never freed by
 * the code that decides it must end: session_close() starts the close
 * (last replies, half-close, linger), and the memory goes once its
 * handles are closed, after env->removed().
 */
#ifndef SUBMITPROXY_SESSION_H
#define SUBMITPROXY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct auth_client;
struct config;
struct logratelimit;
struct sendermap;
struct session;
struct shared;
struct tls_server;
struct userlimits;

/* What a session may use of its owner's, and nothing more. */
struct session_env {
	uv_loop_t *loop;
	struct config *cfg;	     /* current; a session holds its own
					reference from accept on */
	struct tls_server *tls;	     /* current; NULL without [tls] */
	struct sendermap *sendermap; /* current; read at each MAIL */
	/* current ([limits] user_limits), read at each MAIL; NULL: no
	 * file, the [limits] values alone */
	struct userlimits *userlimits;
	struct policy *policy;	     /* the loop's (proxy/policy.h) */
	struct auth_client *auth;    /* NULL: nobody can log in here */
	struct shared *shared;	     /* limits shared with other loops */
	unsigned worker_index;	     /* for the logs */
	/* The loop's: one event=tls_fail line per client prefix per window
	 * (proxy/logratelimit.h); NULL: every line. */
	struct logratelimit *tls_fail_log;
	bool stopping;		     /* new sessions get 421 */
	/* Scratch buffers shared by the loop's sessions: every read lands
	 * in read_buf and is consumed (or copied) before the read callback
	 * returns; the DATA scanner writes one chunk into data_buf. */
	char *read_buf;
	size_t read_buf_size;
	char *data_buf;
	size_t data_chunk;
	/* The owner's list: added at accept, removed as the memory goes. */
	void (*added)(void *owner, struct session *s);
	void (*removed)(void *owner, struct session *s);
	void *owner;
};

/* The owner's list hook: the session never reads it. */
struct session_hook {
	struct session *next, *prev;
};
struct session_hook *session_hook(struct session *s);

/* Starts a session on fd, a connection accepted on a socket of
 * env->cfg->listeners[listener] and now owned by the session (limits,
 * greeting).  Failures are logged; nothing is returned. */
void session_accept(const struct session_env *env, size_t listener, int fd);

/* Asks the session to end (SIGTERM): at once with "421 4.3.2 Service
 * shutting down" if it is idle, else as soon as its transaction is done;
 * new commands get the 421. */
void session_shutdown(struct session *s);

/* Ends it now (the drain timeout has passed). */
void session_force_close(struct session *s);

#endif
