/*
 * session-private.h - the session's state, shared by the files that make
 * up the session: session.c (connection, input, output, the pre-auth
 * dialogue), session-auth.c (AUTH) and session-relay.c (everything after
 * AUTH).  Nothing outside those files includes this; the rest of the
 * program sees proxy/session.h only.
 */
#ifndef SUBMITPROXY_SESSION_PRIVATE_H
#define SUBMITPROXY_SESSION_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth/sasl.h"
#include "proxy/datascan.h"
#include "proxy/linebuf.h"
#include "proxy/smtp-parse.h"

struct addr_entry;
struct auth_pending;
struct config;
struct config_listener;
struct relay;
struct tls_conn;
struct worker;

/* Backpressure toward the client: stop processing input above HIGH bytes
 * queued, resume below LOW. */
#define SESSION_WRITE_HIGH (64 * 1024)
#define SESSION_WRITE_LOW (16 * 1024)
/* Replies are collected and written once per batch, or earlier when the
 * batch grows past this. */
#define SESSION_OUT_FLUSH 8192
/* After our last reply and half-close, how long we keep draining the
 * client's unread bytes so that the kernel does not answer them with a RST
 * that could destroy the reply in flight. */
#define SESSION_LINGER_MS 2000
/* RFC 5321 §4.5.3.1.2: a domain is at most 255 octets; a little more for
 * address literals. */
#define SESSION_HELO_MAX 255
/* Replies owed at once (local and relayed): past this the session stops
 * reading commands until the backend has answered some (a client that
 * pipelines without end must not grow our memory). */
#define SESSION_SLOTS_MAX 100
/* RFC 4954 §4: a SASL response line may be up to 12288 octets. */
#define SESSION_SASL_LINE_MAX 12288

enum session_state {
	SESSION_PROXY,      /* reading the PROXY protocol header */
	SESSION_HANDSHAKE,  /* TLS handshake (implicit TLS or STARTTLS) */
	SESSION_GREETING,   /* greeting delayed: any input is early talk */
	SESSION_COMMAND,    /* reading commands */
	SESSION_AUTH_INPUT, /* 334 sent, reading the client's SASL response */
	SESSION_AUTH_WAIT,  /* credentials with the auth helper */
	SESSION_AUTH_DELAY, /* failed: the reply waits out the failure delay */
	SESSION_RELAY_CONNECT, /* re-connecting the backend for a command */
	SESSION_DATA_WAIT,  /* DATA relayed, waiting for the backend's 354 */
	SESSION_DATA,       /* message bytes: scanned and relayed */
	SESSION_DATA_DISCARD, /* message aborted: scanned to its end, dropped */
	SESSION_CLOSING,    /* last replies being written */
	SESSION_LINGER,     /* half-closed, draining the client's input */
	SESSION_CLOSED,     /* handles closing, memory freed in callback */
	SESSION_STATE_COUNT
};

/* One reply owed to the client, in command order (RFC 2920): a local
 * reply is ready at once; a relayed one when the backend answers. */
struct reply_slot {
	struct reply_slot *next;
	enum smtp_verb verb;
	bool relayed;        /* waiting for the backend */
	bool data_end;       /* the reply to the message's end of data */
	char *path;          /* RCPT: its forward path, for the Received
				header when the backend accepts it */
	struct session_tx *tx; /* end of data: the transaction it ends */
	size_t len;
	char text[];         /* local replies: the text with CR LF */
};

/* A command line rewritten for the backend (with CR LF), not sent yet:
 * the backend is connecting, or lacks PIPELINING and is busy. */
struct relayed_line {
	struct relayed_line *next;
	size_t len;
	char text[];
};

/* The mail transaction as the proxy sees it: for limits, the Received
 * header and the transaction log line. */
struct session_tx {
	char *sender;             /* reverse path of the last MAIL, "" = <> */
	bool mail_ok;             /* backend said 250 to it */
	uint32_t rcpts_sent;      /* RCPTs relayed (max_recipients) */
	uint32_t rcpts_ok;        /* RCPTs the backend accepted */
	char *first_rcpt;         /* first accepted forward path */
	uint64_t size;            /* message size, set at end of data */
};

struct session {
	struct worker *w;
	struct config *cfg;        /* held (refs) for the session's life */
	const struct config_listener *listener;
	struct session *next, *prev;

	uv_tcp_t tcp;
	uv_timer_t timer;          /* greeting delay, idle, linger */
	uv_shutdown_t shutdown_req;
	int open_handles;

	enum session_state state;
	char sid[17];
	char ip[46];
	unsigned port;
	struct addr_entry *addr;   /* counted in the shared address table */
	uint32_t addr_count;       /* connections from it, with this one */
	uint32_t open_at_accept;   /* sessions of every loop, with this one */

	unsigned char *proxy_buf;  /* PROXY header so far (that state only) */
	size_t proxy_len;
	struct tls_conn *tls;      /* NULL until TLS starts */
	bool starttls_pending;     /* 220 sent, handshake starts after it */

	struct linebuf lines;
	char *out;                 /* replies not yet handed to uv_write */
	size_t out_len, out_cap;
	size_t write_queued;       /* bytes handed to uv_write, not done */

	char *parked;              /* input held while the session is blocked */
	size_t parked_len;
	bool reading;
	bool blocked;              /* waiting for the write queue to drain */
	bool draining;             /* the server is stopping */

	char *helo;                /* client's EHLO/HELO argument */
	bool esmtp;
	uint32_t errors;

	/* AUTH: the exchange in progress, then who the client is. */
	struct sasl_state sasl;
	enum sasl_mech auth_mech;  /* of the last AUTH, for logs */
	struct sasl_creds *creds;  /* only during an exchange; wiped */
	struct auth_pending *auth_pending;
	char *auth_user;           /* user tried (for auth_fail logs) */
	char *user;                /* PAM_USER once authenticated */
	char *pending_user;        /* PAM said yes; the backend not yet */
	uint32_t auth_failures;

	/* After AUTH: the backend connection and the ordered replies. */
	struct relay *relay;
	struct reply_slot *slots_head, *slots_tail;
	uint32_t nslots;
	bool data_pending;           /* DATA relayed, its reply not in yet */
	struct relayed_line *sendq_head, *sendq_tail; /* not yet sent */
	uint32_t in_flight;          /* commands sent, replies owed */
	struct datascan scan;
	const char *abort_reply;     /* set when a message is being dropped */
	struct session_tx tx;

	uint64_t start_ms;
	uint64_t bytes_in, bytes_out;
	const char *close_reason;
};

struct session_write {
	uv_write_t req;
	struct session *s;
	size_t len;
	char data[];
};


extern const char *const session_state_names[];

/* session.c */
void session_enter_state(struct session *s, enum session_state state);
void session_close(struct session *s, const char *reason);
void session_flush(struct session *s);
void session_resume(struct session *s);
void session_timer_start(struct session *s, uint64_t ms);
void session_process(struct session *s, const char *data, size_t len);
bool session_tls_active(const struct session *s);
bool session_auth_offered(const struct session *s);
bool session_needs_starttls(const struct session *s);
void session_reply(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void session_refuse(struct session *s, enum smtp_verb verb, const char *fmt,
		    ...) __attribute__((format(printf, 3, 4)));
/* Appends exact bytes (already CR LF terminated), behind owed replies. */
void session_reply_raw(struct session *s, const char *text, size_t len);
/* Appends exact bytes to the output now: for the reply at the head of the
 * queue. */
void session_out_write(struct session *s, const char *text, size_t len);
/* Whether input must wait: too much owed to the client or the backend. */
bool session_over_limits(const struct session *s);

/* session-auth.c */
void cmd_auth(struct session *s, const struct smtp_cmd *cmd);
void session_sasl_line(struct session *s, const char *line, size_t len);
void session_sasl_abort(struct session *s);
void session_auth_delay_done(struct session *s);
void session_auth_cleanup(struct session *s);

/* session-relay.c */
void session_relay_start(struct session *s);
void session_relay_command(struct session *s, const struct smtp_cmd *cmd);
/* Message bytes in DATA / DATA_DISCARD; returns how many were taken
 * (everything, or up to and including the end of data). */
size_t session_data_input(struct session *s, const char *data, size_t len);
void session_relay_cleanup(struct session *s);
/* Closing: every owed reply is answered now, in order (relayed ones with
 * a 451), so the client sees the last reply (a 421) where it belongs. */
void session_slots_close(struct session *s);
/* The capability lines of a pre-auth EHLO (from the backend probe, or a
 * conservative set): fills up to max lines, returns how many. */
size_t session_ehlo_caps(struct session *s, char lines[][64], size_t max);

#endif
