/*
 * test_datascan.c - the DATA scanner (SMTP smuggling, CVE-2023-51764/
 * 51765/51766), table-driven.
 *
 * Every case runs (a) in one feed, (b) split in two feeds at every
 * possible point and (c) byte by byte; all three must give the expected
 * output, end and counters.  Then an exhaustive property test over short
 * strings of "\r\n.a\0" checks the scanner against a line-based reference
 * model and the invariants the backend relies on.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/datascan.h"
#include "tests/unit/tap.h"

/* A string literal with its length (literals may hold NUL bytes). */
#define BYTES(s) s, sizeof(s) - 1

struct scan_case {
	const char *name;
	const char *in;
	size_t in_len;
	const char *out;
	size_t out_len;
	bool done;
	size_t consumed; /* when done; otherwise all of in */
	uint64_t bare_newlines;
	uint64_t nul_bytes;
	enum datascan_state state; /* when not done */
};

#define HDR  "Subject: t\r\n\r\nbody"
#define TAIL "smuggled\r\n.\r\n"
#define NEXT "RSET\r\n"

static const struct scan_case scan_cases[] = {
    {"plain_message", BYTES("Subject: x\r\n\r\nhello\r\n.\r\n"),
     BYTES("Subject: x\r\n\r\nhello\r\n"), true,
     sizeof("Subject: x\r\n\r\nhello\r\n.\r\n") - 1, 0, 0, DATASCAN_END},
    {"empty_message_at_start", BYTES(".\r\n"), BYTES(""), true, 3, 0, 0,
     DATASCAN_END},
    {"empty_message_then_commands", BYTES(".\r\nQUIT\r\n"), BYTES(""), true, 3,
     0, 0, DATASCAN_END},
    {"dot_stuffing_removed_and_restored",
     BYTES("..x\r\n.x\r\nx\r\n..\r\n...\r\n.\r\n"),
     BYTES("..x\r\nx\r\nx\r\n..\r\n...\r\n"), true, 24, 0, 0, DATASCAN_END},
    {"terminator_not_consumed_past", BYTES("a\r\n.\r\nMAIL FROM:<x@y>\r\n"),
     BYTES("a\r\n"), true, 6, 0, 0, DATASCAN_END},
    /* Smuggling: none of these ends the data; the real end does. */
    {"smuggle_lf_dot_lf", BYTES(HDR "\n.\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\n.\n" TAIL) - 1, 2,
     0, DATASCAN_END},
    {"smuggle_crlf_dot_lf", BYTES(HDR "\r\n.\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\r\n.\n" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_lf_dot_crlf", BYTES(HDR "\n.\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\n.\r\n" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_cr_dot_crlf", BYTES(HDR "\r.\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\r.\r\n" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_crlf_dot_cr", BYTES(HDR "\r\n.\r" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\r\n.\r" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_crlf_dot_nul_crlf", BYTES(HDR "\r\n.\0\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\0\r\nsmuggled\r\n"), true,
     sizeof(HDR "\r\n.\0\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_cr_cr_lf_is_one_bare_cr_then_crlf", BYTES(HDR "\r\r\n.\r\n" NEXT),
     BYTES(HDR "\r\n\r\n"), true, sizeof(HDR "\r\r\n.\r\n") - 1, 1, 0,
     DATASCAN_END},
    {"smuggle_crlf_dot_cr_cr_lf", BYTES(HDR "\r\n.\r\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\n\r\nsmuggled\r\n"), true,
     sizeof(HDR "\r\n.\r\r\n" TAIL) - 1, 1, 0, DATASCAN_END},
    {"smuggle_lf_dot_dot_crlf_is_a_stuffed_line",
     BYTES(HDR "\n..\r\n" TAIL NEXT), BYTES(HDR "\r\n..\r\nsmuggled\r\n"), true,
     sizeof(HDR "\n..\r\n" TAIL) - 1, 1, 0, DATASCAN_END},
    {"soft_dot_line_then_real_end", BYTES("a\n.\r\n.\r\n"), BYTES("a\r\n\r\n"),
     true, 8, 1, 0, DATASCAN_END},
    {"dot_lf_at_start_is_an_empty_line", BYTES(".\nx\r\n.\r\n"),
     BYTES("\r\nx\r\n"), true, 8, 1, 0, DATASCAN_END},
    {"dot_cr_at_start_is_an_empty_line", BYTES(".\rx\r\n.\r\n"),
     BYTES("\r\nx\r\n"), true, 8, 1, 0, DATASCAN_END},
    {"bare_newlines_counted", BYTES("a\nb\rc\r\r\n\n.\r\n.\r\n"),
     BYTES("a\r\nb\r\nc\r\n\r\n\r\n\r\n"), true, 15, 4, 0, DATASCAN_END},
    {"nul_bytes_pass_and_count", BYTES("a\0b\r\n\0\r\n.\r\n"),
     BYTES("a\0b\r\n\0\r\n"), true, 11, 0, 2, DATASCAN_END},
    {"eight_bit_passes", BYTES("\xc3\xa9t\xc3\xa9\r\n.\r\n"),
     BYTES("\xc3\xa9t\xc3\xa9\r\n"), true, 10, 0, 0, DATASCAN_END},
    /* Unfinished input: what is emitted so far, what is held. */
    {"no_terminator", BYTES("hello\r\n"), BYTES("hello\r\n"), false, 0, 0, 0,
     DATASCAN_BOL},
    {"pending_cr", BYTES("hello\r"), BYTES("hello"), false, 0, 0, 0,
     DATASCAN_CR},
    {"pending_dot", BYTES("x\r\n."), BYTES("x\r\n"), false, 0, 0, 0,
     DATASCAN_DOT},
    {"pending_dot_cr", BYTES("x\r\n.\r"), BYTES("x\r\n"), false, 0, 0, 0,
     DATASCAN_DOT_CR},
    {"pending_soft_dot", BYTES("x\n."), BYTES("x\r\n"), false, 0, 1, 0,
     DATASCAN_BOL_CONTENT},
    {"soft_line_start", BYTES("x\n"), BYTES("x\r\n"), false, 0, 1, 0,
     DATASCAN_BOL_SOFT},
    {"empty_input", BYTES(""), BYTES(""), false, 0, 0, 0, DATASCAN_BOL},
    {"unfinished_text", BYTES("abc"), BYTES("abc"), false, 0, 0, 0,
     DATASCAN_TEXT},
};

struct scan_result {
	char *out;
	size_t out_len;
	bool done;
	size_t consumed;
	bool out_max_ok;  /* every feed stayed within DATASCAN_OUT_MAX */
	bool consumed_ok; /* MORE consumed all; feeds after DONE nothing */
	struct datascan ds;
};

static void scan_result_free(struct scan_result *r)
{
	free(r->out);
	r->out = NULL;
}

/* Feeds in[0..first), then the rest in pieces of step bytes (0: at once). */
static void scan_pieces(const char *in, size_t len, size_t first, size_t step,
			struct scan_result *r)
{
	size_t pos = 0;
	bool first_feed = true;
	char *buf;

	memset(r, 0, sizeof(*r));
	r->out = malloc(DATASCAN_OUT_MAX(len) + 1);
	buf = malloc(DATASCAN_OUT_MAX(len) + 1);
	if (r->out == NULL || buf == NULL)
		abort();
	r->out_max_ok = true;
	r->consumed_ok = true;
	datascan_init(&r->ds);
	do {
		size_t n = first_feed ? first : (step == 0 ? len - pos : step);
		size_t out_len = 0, consumed = 0;
		enum datascan_result res;

		if (n > len - pos)
			n = len - pos;
		res = datascan_feed(&r->ds, in + pos, n, buf, &out_len,
				    &consumed);
		if (out_len > DATASCAN_OUT_MAX(n))
			r->out_max_ok = false;
		if (consumed > n)
			r->consumed_ok = false;
		if (r->done) {
			if (res != DATASCAN_DONE || consumed != 0 ||
			    out_len != 0)
				r->consumed_ok = false;
		} else if (res == DATASCAN_DONE) {
			r->done = true;
			r->consumed = pos + consumed;
		} else if (consumed != n) {
			r->consumed_ok = false;
		}
		memcpy(r->out + r->out_len, buf, out_len);
		r->out_len += out_len;
		pos += n;
		first_feed = false;
	} while (pos < len);
	if (!r->done)
		r->consumed = len;
	free(buf);
}

/* The backend's view: every CR starts a CR LF, every LF ends one, and no
 * line is exactly "." (the only end of data is the one the relay sends). */
static bool output_is_safe(const char *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\r' && (i + 1 == len || out[i + 1] != '\n'))
			return false;
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			return false;
		if (i + 5 <= len && memcmp(out + i, "\r\n.\r\n", 5) == 0)
			return false;
	}
	return !(len >= 3 && memcmp(out, ".\r\n", 3) == 0);
}

static bool result_matches(const struct scan_result *r,
			   const struct scan_case *c)
{
	size_t consumed = c->done ? c->consumed : c->in_len;

	return r->out_len == c->out_len &&
	       memcmp(r->out, c->out, c->out_len) == 0 && r->done == c->done &&
	       r->consumed == consumed &&
	       r->ds.bare_newlines == c->bare_newlines &&
	       r->ds.nul_bytes == c->nul_bytes && r->ds.size == r->out_len &&
	       r->ds.state == c->state && r->out_max_ok && r->consumed_ok;
}

static void result_diag(const struct scan_result *r, const char *how)
{
	printf("# %s: out_len=%zu done=%d consumed=%zu bare=%llu nul=%llu "
	       "state=%s\n# out=\"",
	       how, r->out_len, r->done, r->consumed,
	       (unsigned long long)r->ds.bare_newlines,
	       (unsigned long long)r->ds.nul_bytes,
	       datascan_state_name(r->ds.state));
	for (size_t i = 0; i < r->out_len; i++) {
		unsigned char ch = (unsigned char)r->out[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			putchar(ch);
		else
			printf("\\x%02x", ch);
	}
	printf("\"\n");
}

static void test_case(const struct scan_case *c)
{
	struct scan_result r;
	bool ok;
	size_t bad_split = 0;

	scan_pieces(c->in, c->in_len, c->in_len, 0, &r);
	ok = result_matches(&r, c);
	TAP_OK(ok, "%s: one feed", c->name);
	if (!ok)
		result_diag(&r, "one feed");
	if (c->done)
		TAP_OK(output_is_safe(r.out, r.out_len),
		       "%s: no bare CR/LF, no end of data in the output",
		       c->name);
	scan_result_free(&r);

	ok = true;
	for (size_t k = 0; k <= c->in_len && ok; k++) {
		scan_pieces(c->in, c->in_len, k, 0, &r);
		if (!result_matches(&r, c)) {
			ok = false;
			bad_split = k;
			result_diag(&r, "split");
		}
		scan_result_free(&r);
	}
	TAP_OK(ok, "%s: two feeds, every split point", c->name);
	if (!ok)
		printf("# first bad split at %zu\n", bad_split);

	scan_pieces(c->in, c->in_len, c->in_len > 0 ? 1 : 0, 1, &r);
	ok = result_matches(&r, c);
	TAP_OK(ok, "%s: byte by byte", c->name);
	if (!ok)
		result_diag(&r, "byte by byte");
	scan_result_free(&r);
}

static void test_feeds_after_end_consume_nothing(void)
{
	struct datascan ds;
	char out[DATASCAN_OUT_MAX(16)];
	size_t out_len = 99, consumed = 99;
	enum datascan_result res;

	datascan_init(&ds);
	res = datascan_feed(&ds, "a\r\n.\r\nQUIT\r\n", 12, out, &out_len,
			    &consumed);
	TAP_OK(res == DATASCAN_DONE && consumed == 6 && out_len == 3,
	       "end found, commands after it left alone");
	res = datascan_feed(&ds, "QUIT\r\n", 6, out, &out_len, &consumed);
	TAP_OK(res == DATASCAN_DONE && consumed == 0 && out_len == 0 &&
		   ds.size == 3,
	       "after the end a feed consumes nothing and stays done");
	res = datascan_feed(&ds, "", 0, out, &out_len, &consumed);
	TAP_OK(res == DATASCAN_DONE && consumed == 0 && out_len == 0,
	       "after the end an empty feed stays done");
}

static void test_long_line_is_not_held(void)
{
	const size_t line_len = (size_t)100 * 1024, chunk = 4096;
	char *line = malloc(line_len);
	char *out = malloc(DATASCAN_OUT_MAX(chunk));
	struct datascan ds;
	size_t out_len, consumed;
	bool streamed = true, same = true;

	if (line == NULL || out == NULL)
		abort();
	for (size_t i = 0; i < line_len; i++)
		line[i] = (char)('a' + i % 26);
	datascan_init(&ds);
	for (size_t pos = 0; pos < line_len; pos += chunk) {
		size_t n = line_len - pos < chunk ? line_len - pos : chunk;

		if (datascan_feed(&ds, line + pos, n, out, &out_len,
				  &consumed) != DATASCAN_MORE ||
		    consumed != n || out_len != n || ds.state != DATASCAN_TEXT)
			streamed = false;
		if (memcmp(out, line + pos, n) != 0)
			same = false;
	}
	TAP_OK(streamed, "100 KB line: every chunk goes out at once, state "
			 "text, nothing held");
	TAP_OK(same, "100 KB line: passed through unchanged");
	TAP_EQ_INT(ds.size, line_len, "100 KB line: size counts it");
	TAP_OK(datascan_feed(&ds, "\r\n.\r\n", 5, out, &out_len, &consumed) ==
		       DATASCAN_DONE &&
		   out_len == 2 && consumed == 5,
	       "100 KB line: then the end of data");
	free(line);
	free(out);
}

/*
 * Reference model, line-based: the end of data is the first CR LF "." CR
 * LF (or "." CR LF at the start); the body before it is cut into lines at
 * CR LF, lone CR or lone LF; each line loses one leading dot and gets one
 * back if it still starts with a dot, then ends with CR LF.  Without an
 * end, the unfinished last line is emitted the same way, less a trailing
 * CR (it may start a CR LF).
 */
struct model {
	char out[64];
	size_t out_len;
	bool done;
	size_t consumed;
	uint64_t bare_newlines;
	uint64_t nul_bytes;
};

static void model_line(struct model *m, const char *p, size_t n, bool eol)
{
	if (n > 0 && p[0] == '.') {
		p++;
		n--;
		if (n > 0 && p[0] == '.')
			m->out[m->out_len++] = '.';
	}
	memcpy(m->out + m->out_len, p, n);
	m->out_len += n;
	if (eol) {
		m->out[m->out_len++] = '\r';
		m->out[m->out_len++] = '\n';
	}
}

static void model_scan(const char *in, size_t len, struct model *m)
{
	size_t body = len, start = 0;

	memset(m, 0, sizeof(*m));
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0) {
		m->done = true;
		m->consumed = 3;
		body = 0;
	} else {
		for (size_t i = 0; i + 5 <= len; i++) {
			if (memcmp(in + i, "\r\n.\r\n", 5) == 0) {
				m->done = true;
				m->consumed = i + 5;
				body = i + 2;
				break;
			}
		}
	}
	if (!m->done)
		m->consumed = len;
	for (size_t i = 0; i < body; i++)
		if (in[i] == '\0')
			m->nul_bytes++;
	for (size_t i = 0; i < body; i++) {
		if (in[i] != '\r' && in[i] != '\n')
			continue;
		if (in[i] == '\r' && i + 1 == body)
			break; /* pending: may be a CR LF */
		model_line(m, in + start, i - start, true);
		if (in[i] == '\r' && in[i + 1] == '\n')
			i++;
		else
			m->bare_newlines++;
		start = i + 1;
	}
	if (start < body) {
		size_t n = body - start;

		if (in[body - 1] == '\r')
			n--;
		model_line(m, in + start, n, false);
	}
}

static bool model_agrees(const struct scan_result *r, const struct model *m)
{
	return r->out_len == m->out_len &&
	       memcmp(r->out, m->out, m->out_len) == 0 && r->done == m->done &&
	       r->consumed == m->consumed &&
	       r->ds.bare_newlines == m->bare_newlines &&
	       r->ds.nul_bytes == m->nul_bytes && r->ds.size == r->out_len &&
	       r->out_max_ok && r->consumed_ok;
}

static bool property_holds(const char *in, size_t len)
{
	struct scan_result r;
	struct model m;
	bool ok;

	scan_pieces(in, len, len, 0, &r);
	model_scan(in, len, &m);
	ok = model_agrees(&r, &m) && output_is_safe(r.out, r.out_len);
	if (r.done)
		ok = ok && ((r.consumed >= 5 && memcmp(in + r.consumed - 5,
						       "\r\n.\r\n", 5) == 0) ||
			    (r.consumed == 3 && memcmp(in, ".\r\n", 3) == 0));
	scan_result_free(&r);
	if (ok && len > 1) {
		/* and the same in two feeds, cut in the middle */
		scan_pieces(in, len, len / 2, 0, &r);
		ok = model_agrees(&r, &m);
		scan_result_free(&r);
	}
	return ok;
}

static void print_escaped(const char *in, size_t len)
{
	printf("# input \"");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			putchar(ch);
		else
			printf("\\x%02x", ch);
	}
	printf("\"\n");
}

static const char alphabet[] = {'\r', '\n', '.', 'a', '\0'};
#define ALPHABET_SIZE (sizeof(alphabet) / sizeof(alphabet[0]))

static void test_property_exhaustive(size_t max_len)
{
	char in[16];
	unsigned long tested = 0;
	bool ok = true;

	for (size_t len = 0; len <= max_len && ok; len++) {
		size_t digits[16] = {0};

		for (;;) {
			size_t d;

			for (size_t i = 0; i < len; i++)
				in[i] = alphabet[digits[i]];
			tested++;
			if (!property_holds(in, len)) {
				ok = false;
				print_escaped(in, len);
				break;
			}
			for (d = 0; d < len; d++) {
				if (++digits[d] < ALPHABET_SIZE)
					break;
				digits[d] = 0;
			}
			if (d == len)
				break;
		}
	}
	TAP_OK(ok,
	       "property: all %lu strings of \\r \\n . a \\0 up to %zu "
	       "bytes agree with the reference and are safe",
	       tested, max_len);
}

static void test_property_random(size_t min_len, size_t max_len,
				 unsigned long count)
{
	char in[16];
	uint64_t x = 0x2545f4914f6cdd1dULL;
	bool ok = true;

	for (unsigned long n = 0; n < count && ok; n++) {
		size_t len;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		len = min_len + (size_t)(x % (max_len - min_len + 1));
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			in[i] = alphabet[(x >> 32) % ALPHABET_SIZE];
		}
		if (!property_holds(in, len)) {
			ok = false;
			print_escaped(in, len);
		}
	}
	TAP_OK(ok,
	       "property: %lu random strings of %zu..%zu bytes agree "
	       "with the reference and are safe",
	       count, min_len, max_len);
}

int main(void)
{
	for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++)
		test_case(&scan_cases[i]);
	test_feeds_after_end_consume_nothing();
	test_long_line_is_not_held();
	TAP_EQ_STR(datascan_state_name(DATASCAN_DOT_CR), "dot-cr",
		   "state name table");
	TAP_EQ_STR(datascan_state_name(DATASCAN_STATE_COUNT), "unknown",
		   "state name out of range");
	test_property_exhaustive(8);
	test_property_random(9, 12, 300000);
	return tap_done();
}
