/* test_linebuf.c - the command line splitter's rules, one check each. */
#include <stdlib.h>
#include <string.h>

#include "proxy/linebuf.h"
#include "tests/unit/tap.h"

/* Feeds chunks and collects results as "L:<line>" / "TOO_LONG" joined by
 * '|'. */
static void feed(struct linebuf *lb, const char *data, size_t len, char *out,
		 size_t outsize)
{
	size_t off = 0;

	while (off < len) {
		const char *line;
		size_t line_len, used;
		enum linebuf_result r;

		r = linebuf_next(lb, data + off, len - off, &used, &line,
				 &line_len);
		off += used;
		if (r == LINEBUF_LINE) {
			strncat(out, "L:", outsize - strlen(out) - 1);
			strncat(out, line,
				line_len < outsize - strlen(out) - 1
				    ? line_len
				    : outsize - strlen(out) - 1);
			strncat(out, "|", outsize - strlen(out) - 1);
		} else if (r == LINEBUF_TOO_LONG) {
			strncat(out, "TOO_LONG|", outsize - strlen(out) - 1);
		}
	}
}

static void check(const char *name, size_t max, const char *const chunks[],
		  const char *expect)
{
	struct linebuf lb;
	char out[4096] = "";

	linebuf_init(&lb, max);
	for (size_t i = 0; chunks[i] != NULL; i++)
		feed(&lb, chunks[i], strlen(chunks[i]), out, sizeof(out));
	TAP_EQ_STR(out, expect, "%s", name);
	linebuf_reset(&lb);
}

int main(void)
{
	check("crlf_line", 10, (const char *[]){"NOOP\r\n", NULL}, "L:NOOP|");
	check("bare_lf_line", 10, (const char *[]){"NOOP\n", NULL}, "L:NOOP|");
	check("pipelined_lines_in_one_read", 10,
	      (const char *[]){"A\r\nB\r\nC\r\n", NULL}, "L:A|L:B|L:C|");
	check("line_split_across_reads", 10,
	      (const char *[]){"NO", "O", "P\r", "\n", NULL}, "L:NOOP|");
	check("incomplete_line_waits", 10, (const char *[]){"NOOP", NULL}, "");
	check("exactly_max_is_accepted", 4, (const char *[]){"ABCD\r\n", NULL},
	      "L:ABCD|");
	check("exactly_max_split_is_accepted", 4,
	      (const char *[]){"AB", "CD\r", "\n", NULL}, "L:ABCD|");
	check("max_plus_one_is_too_long", 4,
	      (const char *[]){"ABCDE\r\nX\r\n", NULL}, "TOO_LONG|L:X|");
	check("too_long_without_newline_then_rest_dropped", 4,
	      (const char *[]){"ABCDEFGH", "IJKL", "MN\r\nOK\r\n", NULL},
	      "TOO_LONG|L:OK|");
	check("too_long_reported_once_across_reads", 4,
	      (const char *[]){"ABC", "DEFGHIJ", "KLMNOP", "Q\nOK\n", NULL},
	      "TOO_LONG|L:OK|");
	check("cr_stays_inside_line", 10, (const char *[]){"A\rB\r\n", NULL},
	      "L:A\rB|");
	check("empty_line", 10, (const char *[]){"\r\n", NULL}, "L:|");

	{
		/* A pending partial line is the only memory held, and it is
		 * released once the line completes. */
		struct linebuf lb;
		const char *line;
		size_t used, len;

		linebuf_init(&lb, 100);
		linebuf_next(&lb, "NO", 2, &used, &line, &len);
		TAP_OK(lb.buf != NULL && linebuf_has_partial(&lb),
		       "partial_line_is_held");
		linebuf_next(&lb, "OP\r\n", 4, &used, &line, &len);
		linebuf_next(&lb, "", 0, &used, &line, &len);
		TAP_OK(lb.buf == NULL && !linebuf_has_partial(&lb),
		       "buffer_freed_after_line_completes");
		linebuf_next(&lb, "X\r\n", 3, &used, &line, &len);
		TAP_OK(lb.buf == NULL, "complete_line_in_input_is_not_copied");
		linebuf_reset(&lb);
	}
	return tap_done();
}
