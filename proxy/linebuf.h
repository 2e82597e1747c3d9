/*
 * linebuf.h - splits a byte stream into SMTP command lines, with a hard
 * length cap enforced before the newline arrives (STYLE.md: never grow a
 * buffer until a newline turns up).
 *
 * Pure: no I/O.  The caller hands in whatever bytes it has read; complete
 * lines that lie wholly in that input are returned in place, without a
 * copy.  Only the tail of a line split across reads is copied, into a
 * buffer of at most max + 2 bytes that exists only while such a partial
 * line is pending, so an idle session holds no line buffer.
 *
 * A line longer than max (not counting CR LF) is reported once as
 * LINEBUF_TOO_LONG; the rest of it, up to the next LF, is dropped as it
 * arrives, never stored.
 *
 * Line ends: LF, with one preceding CR stripped.  A bare LF is accepted for
 * commands (as Postfix does); a CR elsewhere stays in the line for the
 * command parser to refuse.  DATA content never goes through here.
 */
#ifndef SUBMITPROXY_LINEBUF_H
#define SUBMITPROXY_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

struct linebuf {
	char *buf;        /* partial line, NULL when none is pending */
	size_t len;
	size_t cap;       /* grows with the line, up to max + 2 */
	size_t max;       /* longest accepted line, CR LF excluded */
	bool discarding;  /* inside an over-long line: drop through LF */
	bool returned;    /* buf holds the line returned last time */
};

enum linebuf_result {
	LINEBUF_NEED_MORE, /* all input consumed, no complete line */
	LINEBUF_LINE,      /* *line_r / *len_r hold one line */
	LINEBUF_TOO_LONG,  /* a line passed max; its rest is discarded */
};

void linebuf_init(struct linebuf *lb, size_t max);

/* Consumes bytes from data[0..len) and sets *consumed_r.  A returned line
 * points into data or into lb->buf and stays valid until the next call. */
enum linebuf_result linebuf_next(struct linebuf *lb, const char *data,
				 size_t len, size_t *consumed_r,
				 const char **line_r, size_t *len_r);

/* True when part of a line is held (used to refuse STARTTLS injection and
 * to know whether input was left over). */
bool linebuf_has_partial(const struct linebuf *lb);

/* Drops any partial line and wipes and frees the buffer.  max may be
 * changed between calls (a longer limit for SASL responses). */
void linebuf_reset(struct linebuf *lb);

#endif
