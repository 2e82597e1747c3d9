/*
 * datascan.h - the DATA scanner: a pure, streaming state machine over the
 * client's message bytes after 354 (DESIGN.md "Relay", SMTP smuggling,
 * CVE-2023-51764/51765/51766).
 *
 * End of data is CR LF "." CR LF and nothing else: those five bytes in a
 * row, as the client sent them (or "." CR LF at the very start).  A NUL,
 * a bare CR or a bare LF anywhere inside them makes them message text,
 * whatever the NUL policy.
 *
 * Every line goes to the backend re-encoded: ended by CR LF, the client's
 * dot-stuffing removed and fresh dot-stuffing added, so the backend never
 * sees a bare CR or LF and sees exactly one end of data: the one the
 * scanner found (the caller sends it).  What the proxy takes a line's
 * content to be, and sends stuffed:
 *
 * - The client's lines are RFC 5321 lines, ended by CR LF.  Only at the
 *   start of such a line is a "." the client's stuffing (RFC 5321 §4.5.2
 *   transparency) and removed: ".x" is "x", ".." is ".", and ".\n" or
 *   ".\r" followed by more is an empty line (the dot was stuffing, since
 *   the RFC line goes on past the bare LF or CR).
 * - A bare LF or bare CR is a character inside an RFC 5321 line that the
 *   proxy turns into a line break (counted in bare_newlines; with
 *   bare_newline = reject the caller aborts the transaction).  The line
 *   it starts is not an SMTP line: no transparency applies to it, so its
 *   bytes are all content.  "line\n.\nnext" is the three lines "line",
 *   "." and "next", sent as "line\r\n..\r\nnext"; "\n.." is the content
 *   "..", sent as "..." .  Nothing the client sent vanishes: a client
 *   that stuffed the lines it ended with bare LFs keeps a dot more,
 *   which is better than guessing which of its dots to drop.
 * - A NUL byte is a character like any other when lines are cut and the
 *   client's stuffing is removed: "\0." at a line start is content that
 *   starts with NUL, not stuffing (and "\r\n\0.\r\n" is no end of data).
 *   Then the policy:
 *   - strip (and reject): NULs are removed from the content before it is
 *     re-stuffed, so "\r\n\0.\r\n" is the content line "." and is sent
 *     as "..\r\n".  The message size counts what is sent.  With reject
 *     the caller aborts the transaction at the first NUL (nul_bytes);
 *     the scanner still reads to the end of data.
 *   - pass: NULs are sent as they come, and a line whose content
 *     without NULs starts with "." is stuffed by doubling that dot where
 *     it stands, after the NULs: "\0." is sent as "\0..", ".\0x" (the
 *     content after a stuffing dot) as "..\0x".  Every line the backend
 *     receives that starts with "." starts with "..", also once its NULs
 *     are dropped or once it is cut at its first NUL, so no backend can
 *     take it for an end of data: one that keeps NULs reads "\0.."
 *     (a dot more than the client sent), one that drops them before it
 *     looks at lines (an old MTA may) reads ".." and un-stuffs it to
 *     ".", and one that handles each line as a C string, so that the
 *     line ends at its first NUL (OpenSMTPD compares the line it reads
 *     with "."), reads an empty line.  Stuffing in front of the NULs
 *     instead (".\0.") would be read as "." by that last kind: an end
 *     of data the scanner never found, with what follows read as
 *     commands.
 *
 * Constant memory, no line buffering: the state carries at most a
 * pending "." or ".\r" or "\r", none of which is ever sent as it is.
 * Every other byte is sent (or dropped) as it comes.
 */
#ifndef SUBMITPROXY_DATASCAN_H
#define SUBMITPROXY_DATASCAN_H

#include <stddef.h>
#include <stdint.h>

enum datascan_state {
	DATASCAN_BOL,	      /* line start after CR LF (or the start) */
	DATASCAN_DOT,	      /* "." at a line start */
	DATASCAN_DOT_CR,      /* ".\r" at a line start */
	DATASCAN_BOL_CONTENT, /* a line's content starts: after a bare CR
			       * or LF, or after a removed stuffing dot */
	DATASCAN_BOL_NUL,     /* pass: the content starts with NULs (sent) */
	DATASCAN_TEXT,	      /* inside a line */
	DATASCAN_CR,	      /* "\r" seen, waiting for "\n" */
	DATASCAN_END,	      /* end of data consumed */
	DATASCAN_STATE_COUNT
};

/* [relay] nul_bytes, as the scanner applies it (see above). */
enum datascan_nul_mode {
	DATASCAN_NUL_PASS,   /* sent, lines stuffed as if they were not */
	DATASCAN_NUL_STRIP,  /* removed from each line's content */
	DATASCAN_NUL_REJECT, /* removed as strip; the caller aborts */
	DATASCAN_NUL_MODE_COUNT
};

struct datascan {
	enum datascan_state state;
	enum datascan_nul_mode nul_mode;
	uint64_t size;		/* bytes emitted so far (message size) */
	uint64_t bare_newlines; /* bare CR or LF seen */
	uint64_t nul_bytes;	/* NUL bytes seen (sent or not) */
};

enum datascan_result {
	DATASCAN_MORE, /* all input consumed; end not reached */
	DATASCAN_DONE, /* end of data: *consumed_r includes it */
};

/* The output needed for len input bytes, at most: every byte may become
 * two ("." to "..", a bare CR or LF to CR LF), and what the state holds
 * from earlier feeds may become a line break (a pending bare CR, or the
 * ".\r" of a stuffed empty line). */
#define DATASCAN_OUT_MAX(len) (2 * (len) + 4)

void datascan_init(struct datascan *ds, enum datascan_nul_mode nul_mode);

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
