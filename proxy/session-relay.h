/*
 * session-relay.h - a session after AUTH (DESIGN.md, "Relay"): the
 * backend connection made at hand-over, the commands queued for it, EHLO
 * answers, the mail transaction, and DATA through the scanner.
 *
 * The backend: the first healthy one of [backend] address, failing over
 * to the next when a hand-over fails (connect, greeting, EHLO, XCLIENT,
 * timeout), which marks the failed one down in the shared state
 * (proxy/shared.h, proxy/backends.h); when every one left is down they
 * are still tried in order.  A successful hand-over marks its backend up
 * and refreshes its capabilities there.  The reconnect after an aborted
 * message chooses the same way.  A backend lost after the hand-over ends
 * the session (421) without being marked down: the next hand-over finds
 * out.
 *
 * Every relayed command takes its place in the session's reply queue
 * (proxy/replyq.h) when it is queued, and is answered there, in order,
 * when the backend's reply arrives (or, for what the proxy answers
 * itself after AUTH, when its turn comes).  A command is queued whole: its
 * line, and what its reply will need (the RCPT's path, the transaction an end
 * of data ends), before anything is sent.  A backend without PIPELINING
 * is fed one command at a time.
 *
 * Errors arrive in callbacks: nothing here calls back into the session
 * from inside a session_relay_* call; the backend's failures come from the
 * relay's callbacks (proxy/relay.h reports even a failed write later).
 *
 * The backend trusts us; we trust the client with nothing: only commands
 * the session's command table lets through, rewritten where needed, reach
 * it, and message bytes reach it only re-encoded by the DATA scanner.
 *
 * Ownership: the session creates it when PAM said yes and destroys it
 * with itself (or when the hand-over fails); destroy closes the backend
 * at once, without the terminator of a message in progress, so the
 * backend discards it.  Callbacks never run after destroy.
 */
#ifndef SUBMITPROXY_SESSION_RELAY_H
#define SUBMITPROXY_SESSION_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "proxy/smtp-parse.h"

struct config;
struct policy_send_counts;
struct replyq;
struct user_send_limits;
struct sendermap;
struct session_relay;

/* Only the callbacks marked "last" may destroy the session relay: the
 * others are followed by more of its own work (progress comes last). */
struct session_relay_callbacks {
	/* Last.  The hand-over is complete: PAM and the backend both said
	 * yes. */
	void (*ready)(void *arg);
	/* Last.  The hand-over failed on every backend: the client is not
	 * logged in. */
	void (*unavailable)(void *arg, const char *why);
	/* The backend answered DATA: go (354) means message bytes follow. */
	void (*data_reply)(void *arg, bool go);
	/* The backend's final reply to a message came (delivered: 2xx). */
	void (*message_done)(void *arg, bool delivered);
	/* Last.  QUIT was answered (or the backend closed after it). */
	void (*quit)(void *arg);
	/* Last.  The backend is gone mid-session; what was owed is
	 * answered. */
	void (*lost)(void *arg);
	/* Last.  A reply was answered or the backend took its queue: the
	 * session may take input again. */
	void (*progress)(void *arg);
};

struct session_relay_env {
	uv_loop_t *loop;
	const struct config *cfg;
	struct shared *shared;		    /* the backends' health */
	struct policy *policy;		    /* the loop's: send counts */
	struct sendermap *const *sendermap; /* the current map (NULL: none) */
	struct replyq *replies;		    /* the session's */
	char *data_buf;			    /* scanner output, one chunk */
	size_t data_chunk;		    /* input bytes per scanner chunk */
	const char *sid;
	const char *ip;
	unsigned port;
	const struct session_relay_callbacks *cb;
	void *arg;
};

/* What the Received header says of the session. */
struct session_relay_client {
	const char *tls_version; /* NULL without TLS */
	const char *tls_cipher;
};

/* Connects and hands over (EHLO, XCLIENT with user and helo); then
 * cb->ready or cb->unavailable. */
struct session_relay *session_relay_create(const struct session_relay_env *env,
					   const char *user, const char *helo);
void session_relay_destroy(struct session_relay *sr);

/* Before each MAIL: the login's send limits and what it had sent in
 * their windows (proxy/policy.h); sent NULL: no send limit applies.
 * From then on the MAIL (messages per hour) and each RCPT (recipients
 * per hour and per day, counting this session's accepted and in-flight
 * ones) are refused with 451 4.7.1 once over; what the backend accepts
 * is counted in the policy store. */
void session_relay_send_limits(struct session_relay *sr,
			       const struct user_send_limits *limits,
			       const struct policy_send_counts *sent);

/* The user PAM named, for logs. */
const char *session_relay_user(const struct session_relay *sr);

/* For logs: the address of the backend last tried (connected, or being
 * connected to), and how many backends the last connect has tried. */
const char *session_relay_backend(const struct session_relay *sr);
unsigned session_relay_tried(const struct session_relay *sr);

enum session_relay_verdict {
	SESSION_RELAY_QUEUED,  /* relayed: its reply place is taken */
	SESSION_RELAY_REFUSED, /* refusal holds the local reply */
};

/* A command the table said to relay.  MAIL and RCPT go with only the
 * parameters the backend connection in use offers (see smtp_args_filter()
 * in proxy/smtp-relay-parse.h); EHLO and HELO are answered by the proxy,
 * in their turn, from that connection's capabilities, and reset the
 * transaction (an open one with an RSET whose reply the client never
 * sees).  REFUSED: refusal holds the reply (without CR LF) and *reason_r
 * the reason= for its log line, or NULL. */
enum session_relay_verdict
session_relay_command(struct session_relay *sr, const struct smtp_cmd *cmd,
		      const struct session_relay_client *client, char *refusal,
		      size_t refusal_size, const char **reason_r);

/* Message bytes after the 354; returns how many it took (everything, or
 * up to and including the end of data, or less when the backend is
 * slower than the client: session_relay_busy() then holds).  *done
 * becomes true at the end of data: the terminator is queued (or, for an
 * aborted message, the local reply). */
size_t session_relay_data(struct session_relay *sr, const char *data,
			  size_t len, bool *done);

/* The backend has more queued than it takes (back-pressure). */
/* Around the handling of one read of the client's: what goes to the
 * backend meanwhile leaves in one write (relay_cork()).  NULL: nothing. */
void session_relay_cork(struct session_relay *sr);
void session_relay_uncork(struct session_relay *sr);

bool session_relay_busy(const struct session_relay *sr);

/* Commands relayed or queued whose replies are still owed. */
bool session_relay_owes(const struct session_relay *sr);

/* A message's terminator went to the backend and its reply is not in. */
bool session_relay_owes_message(const struct session_relay *sr);

#endif
