/*
 * replyq.h - the replies a session owes its client, in command order
 * (RFC 2920 §3.1: the server answers pipelined commands in the order they
 * were sent).
 *
 * A reply the proxy makes itself is "local": ready at once.  A command
 * relayed to the backend takes a "relayed" place, answered when the
 * backend's reply arrives (the backend answers in order too).  A local
 * reply queued behind a relayed place waits for it; nothing is ever
 * emitted out of order.
 *
 * Pure: no I/O.  Emitted replies go to the owner's emit function, which
 * copies them (the session's output buffer).  The head of the queue is
 * always a relayed place: local replies behind an answered one are
 * emitted with it, so the queue holds nothing that could go now.
 *
 * Ownership: the queue owns the copies of waiting local replies; the owner
 * embeds the struct, replyq_init() and replyq_clear() bracket its life.
 */
#ifndef SUBMITPROXY_REPLYQ_H
#define SUBMITPROXY_REPLYQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void replyq_emit_fn(void *arg, const char *text, size_t len);

struct replyq_entry;

struct replyq {
	struct replyq_entry *head, *tail;
	uint32_t owed;	  /* entries waiting, local and relayed */
	uint32_t relayed; /* of which the backend still owes */
	replyq_emit_fn *emit;
	void *arg;
};

void replyq_init(struct replyq *q, replyq_emit_fn *emit, void *arg);

/* A reply of the proxy's own (text with CR LF): emitted now if nothing is
 * owed before it, else kept until it is. */
void replyq_local(struct replyq *q, const char *text, size_t len);

/* A command went to the backend: its reply takes the next place. */
void replyq_expect(struct replyq *q);

/* The backend answered the oldest relayed command: emits text, then every
 * local reply behind it up to the next relayed place.  Returns false (and
 * emits nothing) when no relayed reply is owed. */
bool replyq_answer(struct replyq *q, const char *text, size_t len);

/* Closing: every owed reply is emitted now, in order, each relayed place
 * with relayed_text, so the client sees the last reply (a 421) where it
 * belongs. */
void replyq_finish(struct replyq *q, const char *relayed_text, size_t len);

/* Drops everything owed without emitting it. */
void replyq_clear(struct replyq *q);

/* Replies owed (local and relayed), and relayed ones. */
static inline uint32_t replyq_owed(const struct replyq *q)
{
	return q->owed;
}

static inline uint32_t replyq_relayed(const struct replyq *q)
{
	return q->relayed;
}

#endif
