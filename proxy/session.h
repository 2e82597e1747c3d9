/*
 * session.h - one client connection: the pre-authentication SMTP dialogue
 * the proxy speaks itself.
 *
 * Ownership: the worker creates a session per accepted connection and links
 * it into its list.  A session is never freed by the code that decides it
 * must end: session_close() starts the close (flush the last reply, half-
 * close, linger briefly), and the memory goes in the last handle's close
 * callback, which also unlinks it from the worker.
 */
#ifndef SUBMITPROXY_SESSION_H
#define SUBMITPROXY_SESSION_H

#include <stddef.h>
#include <uv.h>

struct worker;
struct config_listener;
struct session;

/* Starts a session on fd, a connection accepted on a socket of
 * w->cfg->listeners[listener] and now owned by the session (limits,
 * greeting).  Failures are logged; nothing is returned. */
void session_accept(struct worker *w, size_t listener, int fd);

/* Asks the session to end (SIGTERM): at once with "421 4.3.2 Service
 * shutting down" if it is idle, else as soon as its transaction is done;
 * new commands get the 421.  Used by worker_stop(). */
void session_shutdown(struct session *s);

/* Ends it now (the drain timeout has passed). */
void session_force_close(struct session *s);

struct session *session_next(struct session *s);

#endif
