/*
 * datascan.c - see datascan.h
 *
 * The machine, byte by byte ("emit" appends to out; "line break" emits
 * CR LF):
 *
 *   BOL          "."  -> DOT (the dot is held back: it may start the
 *                        terminator, and is the client's stuffing if not)
 *                else -> as TEXT
 *   BOL_SOFT     "."  -> BOL_CONTENT (stuffing removed; at a soft line
 *                        start ".\r\n" is never an end of data)
 *                else -> as TEXT
 *   BOL_CONTENT  "."  -> emit ".." (re-stuffed), TEXT
 *                else -> as TEXT
 *   DOT          "\r" -> DOT_CR
 *                "\n" -> bare LF: line break (the line "." is empty),
 *                        BOL_SOFT
 *                "."  -> emit "..", TEXT
 *                else -> as TEXT (stuffing removed)
 *   DOT_CR       "\n" -> END: CR LF "." CR LF, the only end of data
 *                else -> bare CR: line break (empty line), then the byte
 *                        again in BOL_SOFT
 *   TEXT         "\r" -> CR
 *                "\n" -> bare LF: line break, BOL_SOFT
 *                else -> emit (NUL counted)
 *   CR           "\n" -> line break, BOL
 *                else -> bare CR: line break, then the byte again in
 *                        BOL_SOFT
 *
 * So every line reaches the backend ended by CR LF and, when it starts
 * with ".", stuffed; the only "." CR LF the backend sees is the one the
 * caller sends (CVE-2023-51764/51765/51766: SMTP smuggling).  The bytes
 * held back in DOT, DOT_CR and CR are never emitted as such (a removed dot,
 * or a CR that becomes part of a CR LF), so nothing needs flushing.
 */
#include "proxy/datascan.h"

#include <assert.h>
#include <string.h>

static const char *const datascan_state_names[] = {
    [DATASCAN_BOL] = "bol",
    [DATASCAN_BOL_SOFT] = "bol-soft",
    [DATASCAN_BOL_CONTENT] = "bol-content",
    [DATASCAN_DOT] = "dot",
    [DATASCAN_DOT_CR] = "dot-cr",
    [DATASCAN_TEXT] = "text",
    [DATASCAN_CR] = "cr",
    [DATASCAN_END] = "end",
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

void datascan_init(struct datascan *ds)
{
	memset(ds, 0, sizeof(*ds));
	ds->state = DATASCAN_BOL;
}

static void datascan_line_break(char *out, size_t *o)
{
	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
}

enum datascan_result datascan_feed(struct datascan *ds, const char *in,
				   size_t len, char *out, size_t *out_len_r,
				   size_t *consumed_r)
{
	enum datascan_state state = ds->state;
	size_t i = 0, o = 0;

	while (i < len && state != DATASCAN_END) {
		char c = in[i];

		switch (state) {
		case DATASCAN_BOL:
			if (c == '.') {
				state = DATASCAN_DOT;
				i++;
				continue;
			}
			break;
		case DATASCAN_BOL_SOFT:
			if (c == '.') {
				state = DATASCAN_BOL_CONTENT;
				i++;
				continue;
			}
			break;
		case DATASCAN_BOL_CONTENT:
			if (c == '.') {
				out[o++] = '.';
				out[o++] = '.';
				state = DATASCAN_TEXT;
				i++;
				continue;
			}
			break;
		case DATASCAN_DOT:
			if (c == '\r') {
				state = DATASCAN_DOT_CR;
				i++;
				continue;
			}
			if (c == '.') {
				out[o++] = '.';
				out[o++] = '.';
				state = DATASCAN_TEXT;
				i++;
				continue;
			}
			/* A bare LF falls to TEXT's handling below: "." then
			 * a bare LF is an empty line, never an end. */
			break;
		case DATASCAN_DOT_CR:
			if (c == '\n') {
				state = DATASCAN_END;
				i++;
				continue;
			}
			/* ".\r" + anything else: the CR was bare, the line
			 * "." is empty; c starts the next, soft, line. */
			ds->bare_newlines++;
			datascan_line_break(out, &o);
			state = DATASCAN_BOL_SOFT;
			continue;
		case DATASCAN_CR:
			if (c == '\n') {
				datascan_line_break(out, &o);
				state = DATASCAN_BOL;
				i++;
				continue;
			}
			/* SMTP smuggling: a bare CR becomes a line break here,
			 * so no backend can read "\r.\r\n" as an end. */
			ds->bare_newlines++;
			datascan_line_break(out, &o);
			state = DATASCAN_BOL_SOFT;
			continue;
		case DATASCAN_TEXT:
		case DATASCAN_END:	   /* not reached: the loop stops */
		case DATASCAN_STATE_COUNT: /* not a state */
			break;
		}

		/* Line content (TEXT, or a line start whose first byte is
		 * not a stuffing dot).  Copy the run up to the next CR/LF. */
		if (c == '\r') {
			state = DATASCAN_CR;
			i++;
			continue;
		}
		if (c == '\n') {
			/* SMTP smuggling: a bare LF becomes CR LF, and the
			 * next line is soft: "\n.\r\n" ends nothing. */
			ds->bare_newlines++;
			datascan_line_break(out, &o);
			state = DATASCAN_BOL_SOFT;
			i++;
			continue;
		}
		state = DATASCAN_TEXT;
		{
			/* The run up to the next CR or LF is copied as it is:
			 * memchr and memcpy instead of a byte loop (this is
			 * the hot path of every message). */
			const char *run = in + i, *end = in + len, *lf, *cr;
			const char *nul = run;
			size_t n;

			lf = memchr(run, '\n', (size_t)(end - run));
			cr = memchr(run, '\r', (size_t)((lf ? lf : end) - run));
			n = (size_t)((cr ? cr : lf ? lf : end) - run);
			memcpy(out + o, run, n);
			while ((nul = memchr(nul, '\0', n - (size_t)(nul - run))) !=
			       NULL) {
				ds->nul_bytes++;
				nul++;
			}
			o += n;
			i += n;
		}
	}

	ds->state = state;
	ds->size += o;
	*out_len_r = o;
	*consumed_r = i;
	return state == DATASCAN_END ? DATASCAN_DONE : DATASCAN_MORE;
}
