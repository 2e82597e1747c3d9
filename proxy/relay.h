/*
 * relay.h - one plaintext SMTP connection to one backend MTA of
 * [backend] address (TCP or a Unix socket), for one authenticated session
 * or for the probe (proxy/probe.h).  Which backend is the owner's choice
 * (proxy/session-relay.h fails over to the next one when cb->failed comes
 * before cb->ready); the relay names it in its logs (backend=).
 *
 * The relay does the hand-over itself: connect (connect_timeout), read the
 * 220 greeting, EHLO <helo_name> (HELO if the backend refuses EHLO), and,
 * for a session when that backend's xclient says so (its own "xclient="
 * in the list, or [backend] xclient), XCLIENT with the real client's
 * attributes followed by a fresh EHLO, all of it after the connect
 * within handover_timeout.  Then cb->ready.  From
 * there on the owner sends commands (relay_send_command: one reply
 * expected each) and message bytes (relay_send_data), and every complete,
 * validated reply comes back through cb->reply in order.  It never
 * interprets what it relays.
 *
 * Any failure (connect, timeout, a malformed or unexpected reply, the
 * backend closing) calls cb->failed once; the relay is then dead and its
 * owner calls relay_destroy().  Errors arrive in callbacks: a write that
 * fails inside relay_send_command() or relay_send_data() is reported
 * from the relay's timer on a later loop turn, never before the call
 * returns, so the owner may go on using what it was sending.  The relay trusts nothing from the backend
 * either: reply lines must be "NNN[ -]text", a reply at most
 * RELAY_REPLY_MAX bytes, and replies nobody asked for are a failure.
 *
 * Ownership: relay_destroy() closes the connection at once, without
 * sending anything more (so a message whose terminator was not sent is
 * discarded by the backend); callbacks never run after it, and the memory
 * goes in the close callbacks, so it may be called from inside one of
 * the relay's own callbacks.
 */
#ifndef SUBMITPROXY_RELAY_H
#define SUBMITPROXY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/smtp-relay-parse.h"

struct config;
struct config_backend;
struct relay;

#define RELAY_REPLY_MAX 16384
/* Backpressure toward the backend: the owner stops feeding above HIGH and
 * gets cb->drained when the queue falls below LOW.  What a session holds
 * for a backend that does not keep up is at most HIGH plus one read
 * (WORKER_READ_BUFSIZE, 256 KiB: the owner takes a whole read), 320 KiB;
 * bytes wait in the kernel's socket buffer first. */
#define RELAY_WRITE_HIGH (64 * 1024)
#define RELAY_WRITE_LOW (16 * 1024)

/* The real client, for XCLIENT (Postfix XCLIENT_README). */
struct relay_client {
	const char *addr;     /* "192.0.2.7" or "2001:db8::1" */
	unsigned port;
	const char *helo;     /* client's EHLO name, NULL if none */
	const char *login;    /* authenticated user */
	const char *sid;      /* for logs */
};

struct relay_reply {
	int code;
	const char *text;     /* whole reply, every line with CR LF */
	size_t len;
	size_t nlines;
};

struct relay_callbacks {
	void (*ready)(void *arg);
	void (*failed)(void *arg, const char *why);
	void (*reply)(void *arg, const struct relay_reply *reply);
	void (*drained)(void *arg);
};

/* A connection to backend, one of cfg's list (cfg must outlive the
 * relay).  client NULL: the probe (no XCLIENT; QUIT right after ready). */
struct relay *relay_create(uv_loop_t *loop, const struct config *cfg,
			   const struct config_backend *backend,
			   const struct relay_client *client,
			   const struct relay_callbacks *cb, void *arg);

/* The capabilities of the backend's last EHLO reply (after XCLIENT, the
 * second one).  Valid from cb->ready on. */
const struct ehlo_caps *relay_caps(const struct relay *r);
bool relay_esmtp(const struct relay *r);

/* After cb->failed in the hand-over: true when the backend was fine but
 * refused this client (its EHLO after XCLIENT, in the client's name), so
 * the failure says nothing of the backend's health. */
bool relay_client_refused(const struct relay *r);

/* Whether the hand-over sends XCLIENT to an ESMTP backend that announced
 * caps: with xclient = yes always (and fails if caps lack it), with auto
 * when caps offer it, with no never.  Pure: --check-backend asks it too
 * (proxy/checkreport.c). */
bool relay_xclient_wanted(const struct config_backend *backend,
			  const struct ehlo_caps *caps);

/* A command line including CR LF; one reply will come back for it. */
void relay_send_command(struct relay *r, const char *line, size_t len);

/* Message bytes; no reply expected. */
void relay_send_data(struct relay *r, const char *data, size_t len);

/* Bytes the socket has not taken yet (not counting corked ones). */
size_t relay_write_queued(const struct relay *r);

/* Between relay_cork() and relay_uncork(), commands and data are kept
 * and then written together, in one write(2) where the socket takes
 * them: the owner corks while it handles one read of the client's (a
 * pipelined group, or a message's chunks and its final dot), so what is
 * kept is bounded by one read (and the DATA scanner's growth of it).
 * A long write (a message's chunk, RELAY_CORK_COPY_MAX in relay.c) is
 * not copied: it goes out at once, with what the cork held before it.
 * Corked bytes do not count in relay_write_queued(): the back-pressure
 * that stops the client's reads starts at relay_uncork(), when they
 * reach the socket, and its drained callback comes from a write's
 * completion as before.  relay_uncork() without a cork, or on NULL,
 * does nothing. */
void relay_cork(struct relay *r);
void relay_uncork(struct relay *r);

void relay_destroy(struct relay *r);

#endif
