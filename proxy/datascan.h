/*
 * datascan.h - the DATA scanner: a pure, streaming state machine over the
 * client's message bytes after 354 (DESIGN.md "Relay", SMTP smuggling,
 * CVE-2023-51764/51765/51766).
 *
 * End of data is CR LF "." CR LF and nothing else.  Every line goes to
 * the backend re-encoded: ended by CR LF, the client's dot-stuffing
 * removed and fresh dot-stuffing added, so the backend never sees a bare
 * CR or LF and sees exactly one end of data: the one the scanner found.
 * A bare LF or bare CR counts in bare_newlines and is turned into a line
 * break (the caller aborts the transaction when the policy is "reject").
 *
 * No buffering: the state carries at most the two bytes of a pending
 * "." or ".\r" or "\r"; memory is constant whatever the line lengths.
 */
#ifndef SUBMITPROXY_DATASCAN_H
#define SUBMITPROXY_DATASCAN_H

#include <stddef.h>
#include <stdint.h>

enum datascan_state {
	DATASCAN_BOL,         /* line start after CR LF (or the start) */
	DATASCAN_BOL_SOFT,    /* line start after a bare CR or LF */
	DATASCAN_BOL_CONTENT, /* line start after a removed stuffing dot */
	DATASCAN_DOT,         /* "." at a real line start */
	DATASCAN_DOT_CR,      /* ".\r" at a real line start */
	DATASCAN_TEXT,        /* inside a line */
	DATASCAN_CR,          /* "\r" seen, waiting for "\n" */
	DATASCAN_END,         /* end of data consumed */
	DATASCAN_STATE_COUNT
};

struct datascan {
	enum datascan_state state;
	uint64_t size;           /* bytes emitted so far (message size) */
	uint64_t bare_newlines;  /* bare CR or LF seen */
	uint64_t nul_bytes;      /* NUL bytes seen (passed through) */
};

enum datascan_result {
	DATASCAN_MORE,     /* all input consumed; end not reached */
	DATASCAN_DONE,     /* end of data: *consumed_r includes it */
};

/* The output needed for len input bytes, at most: every byte may become
 * a CR LF, and a pending "." or "\r" may be flushed. */
#define DATASCAN_OUT_MAX(len) (2 * (len) + 4)

void datascan_init(struct datascan *ds);

/* Scans in[0..len) and appends the re-encoded bytes to out (room for
 * DATASCAN_OUT_MAX(len) bytes), setting *out_len_r.  Returns DATASCAN_DONE
 * once the terminator has been consumed; *consumed_r is then the number
 * of input bytes up to and including it (the rest is the client's next
 * commands).  The terminator itself is not emitted: the caller sends
 * ".\r\n" when it wants the backend to take the message. */
enum datascan_result datascan_feed(struct datascan *ds, const char *in,
				   size_t len, char *out, size_t *out_len_r,
				   size_t *consumed_r);

const char *datascan_state_name(enum datascan_state state);

#endif
