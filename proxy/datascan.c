/*
 * datascan.c - see datascan.h
 *
 * The machine, byte by byte ("emit" appends to out; "line break" emits
 * CR LF; "as X" handles the byte again in state X; "pass" and "strip"
 * are the NUL modes, reject scanning as strip):
 *
 *   BOL           "."  -> DOT (held back: it may start the terminator,
 *                         and is the client's stuffing if not)
 *                 else -> as BOL_CONTENT
 *   DOT           "\r" -> DOT_CR
 *                 else -> as BOL_CONTENT (RFC 5321 §4.5.2: the dot was
 *                         stuffing and is removed; "." then a bare LF is
 *                         an empty line, never an end)
 *   DOT_CR        "\n" -> END: CR LF "." CR LF, the only end of data
 *                 else -> bare CR: line break (the line was stuffing
 *                         only), then as BOL_CONTENT
 *   BOL_CONTENT   "."  -> emit "..", TEXT (content: re-stuffed)
 *                 NUL  -> pass: emit it, BOL_NUL; strip: drop it
 *                 else -> as TEXT
 *   BOL_NUL       NUL  -> emit (pass only: the content starts with NULs,
 *                         all sent)
 *                 "."  -> emit "..", TEXT (stuffed where it stands)
 *                 else -> as TEXT
 *   TEXT          "\r" -> CR
 *                 "\n" -> bare LF: line break, BOL_CONTENT
 *                 NUL  -> pass: emit; strip: drop
 *                 else -> emit
 *   CR            "\n" -> line break, BOL
 *                 else -> bare CR: line break, then as BOL_CONTENT
 *
 * So every line reaches the backend ended by CR LF and, when its content
 * (without NULs) starts with ".", stuffed: the dot is doubled where it
 * stands, after the NULs if any; and a line the backend receives starts
 * with "." only when it starts with "..".  The only "." CR LF the backend
 * sees is the one the caller sends (CVE-2023-51764/51765/51766: SMTP
 * smuggling), whether it keeps NULs, drops them or ends each line at its
 * first NUL.  The bytes held back in DOT, DOT_CR and CR are never emitted
 * as such (a removed dot, or a CR that becomes part of a CR LF); no state
 * holds bytes still to send, and END is reached only from BOL (after a
 * CR LF), so nothing is pending at the end of data.  NULs are counted
 * wherever they are seen.
 */
#include "proxy/datascan.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char *const datascan_state_names[] = {
    [DATASCAN_BOL] = "bol",	    [DATASCAN_DOT] = "dot",
    [DATASCAN_DOT_CR] = "dot-cr",   [DATASCAN_BOL_CONTENT] = "bol-content",
    [DATASCAN_BOL_NUL] = "bol-nul", [DATASCAN_TEXT] = "text",
    [DATASCAN_CR] = "cr",	    [DATASCAN_END] = "end",
};
static_assert(sizeof(datascan_state_names) / sizeof(datascan_state_names[0]) ==
		  DATASCAN_STATE_COUNT,
	      "one name per state");

const char *datascan_state_name(enum datascan_state state)
{
	if ((unsigned)state >= DATASCAN_STATE_COUNT)
		return "unknown";
	return datascan_state_names[state];
}

void datascan_init(struct datascan *ds, enum datascan_nul_mode nul_mode)
{
	memset(ds, 0, sizeof(*ds));
	ds->state = DATASCAN_BOL;
	ds->nul_mode = nul_mode;
}

static void datascan_line_break(char *out, size_t *o)
{
	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
}

/* SMTP smuggling: a bare CR or LF becomes a line break, and the line it
 * starts is content only, so no backend can read "\r.\r\n" or "\n.\n"
 * as an end of data.  Returns the state for that line. */
static enum datascan_state datascan_bare_newline(struct datascan *ds, char *out,
						 size_t *o)
{
	ds->bare_newlines++;
	datascan_line_break(out, o);
	return DATASCAN_BOL_CONTENT;
}

static void datascan_stuffed_dot(char *out, size_t *o)
{
	out[(*o)++] = '.';
	out[(*o)++] = '.';
}

/* Copies in[0..) up to its first CR, LF or NUL (or all len bytes) to out
 * and returns how many bytes that was.  out has room for
 * DATASCAN_OUT_MAX(len) bytes, so with 16 input bytes left there are at
 * least 32 bytes of room: sixteen are stored before looking at them, one
 * pass instead of three memchr() and a memcpy() (what a scan costs a
 * message of 78-byte lines is mostly those calls' set-up).  Bytes stored
 * past the run are overwritten or ignored: out_len says what counts. */
static size_t datascan_run(const char *in, size_t len, char *out)
{
	size_t i = 0;

#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i nul = _mm_setzero_si128();

	while (len - i >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
		__m128i hit = _mm_or_si128(
		    _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		    _mm_cmpeq_epi8(v, nul));
		unsigned mask = (unsigned)_mm_movemask_epi8(hit);

		_mm_storeu_si128((__m128i *)(void *)(out + i), v);
		if (mask != 0)
			return i + (size_t)__builtin_ctz(mask);
		i += 16;
	}
#endif
	for (; i < len; i++) {
		char c = in[i];

		if (c == '\r' || c == '\n' || c == '\0')
			break;
		out[i] = c;
	}
	return i;
}

enum datascan_result datascan_feed(struct datascan *ds, const char *in,
				   size_t len, char *out, size_t *out_len_r,
				   size_t *consumed_r)
{
	enum datascan_state state = ds->state;
	bool pass_nul = ds->nul_mode == DATASCAN_NUL_PASS;
	size_t i = 0, o = 0, n;

	while (i < len && state != DATASCAN_END) {
		char c = in[i];

		switch (state) {
		case DATASCAN_BOL:
			if (c == '.') {
				state = DATASCAN_DOT;
				i++;
				continue;
			}
			state = DATASCAN_BOL_CONTENT;
			continue;
		case DATASCAN_DOT:
			if (c == '\r') {
				state = DATASCAN_DOT_CR;
				i++;
				continue;
			}
			/* RFC 5321 §4.5.2: a line that starts with "." and is
			 * not the end loses that dot.  Whatever c is (".",
			 * NUL, a bare LF), it starts the content. */
			state = DATASCAN_BOL_CONTENT;
			continue;
		case DATASCAN_DOT_CR:
			if (c == '\n') {
				state = DATASCAN_END;
				i++;
				continue;
			}
			/* ".\r" + anything else: the CR was bare, the line
			 * "." was its stuffing only; c starts the next one. */
			state = datascan_bare_newline(ds, out, &o);
			continue;
		case DATASCAN_BOL_CONTENT:
			if (c == '.') {
				/* Content, also after a bare CR or LF (no
				 * SMTP line starts there): sent stuffed. */
				datascan_stuffed_dot(out, &o);
				state = DATASCAN_TEXT;
				i++;
				continue;
			}
			if (c == '\0') {
				/* pass: sent at once; a "." after the NULs
				 * still gets its stuffing dot (BOL_NUL).
				 * Stripped NULs change nothing. */
				ds->nul_bytes++;
				i++;
				if (pass_nul) {
					out[o++] = '\0';
					state = DATASCAN_BOL_NUL;
				}
				continue;
			}
			break;
		case DATASCAN_BOL_NUL:
			if (c == '\0') {
				ds->nul_bytes++;
				out[o++] = '\0';
				i++;
				continue;
			}
			if (c == '.') {
				/* Stuffed where it stands, after the NULs:
				 * "\0." is sent as "\0..".  A backend that
				 * keeps NULs reads "\0..", one dot more; one
				 * that drops them "..", so "."; one that ends
				 * the line at its first NUL "".  Not ".\0.":
				 * cut at its NUL, that line is "." (an end of
				 * data to a C-string line reader). */
				datascan_stuffed_dot(out, &o);
				state = DATASCAN_TEXT;
				i++;
				continue;
			}
			break;
		case DATASCAN_CR:
			if (c == '\n') {
				datascan_line_break(out, &o);
				state = DATASCAN_BOL;
				i++;
				continue;
			}
			/* A bare CR; c starts the next line. */
			state = datascan_bare_newline(ds, out, &o);
			continue;
		case DATASCAN_TEXT:
		case DATASCAN_END:	   /* not reached: the loop stops */
		case DATASCAN_STATE_COUNT: /* not a state */
			break;
		}

		/* Line content (TEXT, or a line start whose first byte needs
		 * nothing more).  Copy the run up to the next CR/LF. */
		if (c == '\r') {
			state = DATASCAN_CR;
			i++;
			continue;
		}
		if (c == '\n') {
			/* "\n.\r\n" ends nothing: it is the line "." and is
			 * sent stuffed. */
			state = datascan_bare_newline(ds, out, &o);
			i++;
			continue;
		}
		state = DATASCAN_TEXT;
		if (c == '\0') {
			ds->nul_bytes++;
			if (pass_nul)
				out[o++] = '\0';
			i++;
			continue;
		}
		/* The run up to the next CR, LF or NUL is copied as it is,
		 * in one pass (the hot path of every message). */
		n = datascan_run(in + i, len - i, out + o);
		o += n;
		i += n;
	}
	ds->state = state;
	ds->size += o;
	*out_len_r = o;
	*consumed_r = i;
	return state == DATASCAN_END ? DATASCAN_DONE : DATASCAN_MORE;
}
