/*
 * test_datascan.c - the DATA scanner (SMTP smuggling, CVE-2023-51764/
 * 51765/51766; [relay] nul_bytes), table-driven.
 *
 * Every case runs (a) in one feed, (b) split in two feeds at every
 * possible point and (c) byte by byte; all three must give the expected
 * output, end and counters.  Then property tests, exhaustive over short
 * strings of "\r\n.a\0" and random over longer ones, in each NUL mode,
 * check the scanner against the line-based reference model of
 * datascan_model.h and what the backends read from its output: a strict
 * RFC 5321 server un-stuffing it reads the model's content (with a dot
 * more after the NULs that start a line, when a dot follows them), one
 * that drops NULs first reads it without NULs, and one that reads each
 * line as a C string (cut at its first NUL, as OpenSMTPD does) reads it
 * with every line so cut; none finds a bare CR or LF or an end of data
 * before the relay's own.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/datascan.h"
#include "tests/unit/datascan_model.h"
#include "tests/unit/tap.h"

/* A string literal with its length (literals may hold NUL bytes). */
#define BYTES(s) s, sizeof(s) - 1

#define PASS   DATASCAN_NUL_PASS
#define STRIP  DATASCAN_NUL_STRIP
#define REJECT DATASCAN_NUL_REJECT

struct scan_case {
	const char *name;
	enum datascan_nul_mode mode;
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
/* A run of NULs (no digit may follow a "\0" in a literal: it would be
 * an octal escape). */
#define NUL16 "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
/* The smuggling attempt against a backend that reads each line as a C
 * string: "\0." cut at its NUL is "", but ".\0." (a stuffing dot in
 * front of the NUL) would be "." there, an end of data. */
#define NUL_SMUGGLE(nl)                                                        \
	"before" nl "\0.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n"      \
	"DATA\r\nsmuggled\r\n\0.\r\nafter\r\n.\r\n"
#define NUL_SMUGGLE_SENT(nl)                                                   \
	"before\r\n\0..\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n"       \
	"DATA\r\nsmuggled\r\n\0..\r\nafter\r\n"

static const struct scan_case scan_cases[] = {
    {"plain_message", PASS, BYTES("Subject: x\r\n\r\nhello\r\n.\r\n"),
     BYTES("Subject: x\r\n\r\nhello\r\n"), true,
     sizeof("Subject: x\r\n\r\nhello\r\n.\r\n") - 1, 0, 0, DATASCAN_END},
    {"empty_message_at_start", PASS, BYTES(".\r\n"), BYTES(""), true, 3, 0, 0,
     DATASCAN_END},
    {"empty_message_then_commands", PASS, BYTES(".\r\nQUIT\r\n"), BYTES(""),
     true, 3, 0, 0, DATASCAN_END},
    {"dot_stuffing_removed_and_restored", PASS,
     BYTES("..x\r\n.x\r\nx\r\n..\r\n...\r\n.\r\n"),
     BYTES("..x\r\nx\r\nx\r\n..\r\n...\r\n"), true, 24, 0, 0, DATASCAN_END},
    {"terminator_not_consumed_past", PASS,
     BYTES("a\r\n.\r\nMAIL FROM:<x@y>\r\n"), BYTES("a\r\n"), true, 6, 0, 0,
     DATASCAN_END},
    /* Smuggling: none of these ends the data; the real end does.  A dot
     * after a bare CR or LF is content, sent stuffed. */
    {"smuggle_lf_dot_lf", PASS, BYTES(HDR "\n.\n" TAIL NEXT),
     BYTES(HDR "\r\n..\r\nsmuggled\r\n"), true, sizeof(HDR "\n.\n" TAIL) - 1, 2,
     0, DATASCAN_END},
    {"smuggle_crlf_dot_lf", PASS, BYTES(HDR "\r\n.\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\r\n.\n" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_lf_dot_crlf", PASS, BYTES(HDR "\n.\r\n" TAIL NEXT),
     BYTES(HDR "\r\n..\r\nsmuggled\r\n"), true, sizeof(HDR "\n.\r\n" TAIL) - 1,
     1, 0, DATASCAN_END},
    {"smuggle_cr_dot_crlf", PASS, BYTES(HDR "\r.\r\n" TAIL NEXT),
     BYTES(HDR "\r\n..\r\nsmuggled\r\n"), true, sizeof(HDR "\r.\r\n" TAIL) - 1,
     1, 0, DATASCAN_END},
    {"smuggle_crlf_dot_cr", PASS, BYTES(HDR "\r\n.\r" TAIL NEXT),
     BYTES(HDR "\r\n\r\nsmuggled\r\n"), true, sizeof(HDR "\r\n.\r" TAIL) - 1, 1,
     0, DATASCAN_END},
    {"smuggle_crlf_dot_nul_crlf_pass", PASS, BYTES(HDR "\r\n.\0\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\0\r\nsmuggled\r\n"), true,
     sizeof(HDR "\r\n.\0\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_crlf_dot_nul_crlf_strip", STRIP,
     BYTES(HDR "\r\n.\0\r\n" TAIL NEXT), BYTES(HDR "\r\n\r\nsmuggled\r\n"),
     true, sizeof(HDR "\r\n.\0\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_crlf_nul_dot_crlf_pass_is_stuffed_after_the_nul", PASS,
     BYTES(HDR "\r\n\0.\r\n" TAIL NEXT), BYTES(HDR "\r\n\0..\r\nsmuggled\r\n"),
     true, sizeof(HDR "\r\n\0.\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_nul_dot_twice_crlf_pass", PASS, BYTES(NUL_SMUGGLE("\r\n") NEXT),
     BYTES(NUL_SMUGGLE_SENT("\r\n")), true, sizeof(NUL_SMUGGLE("\r\n")) - 1, 0,
     2, DATASCAN_END},
    {"smuggle_nul_dot_twice_bare_lf_pass", PASS, BYTES(NUL_SMUGGLE("\n") NEXT),
     BYTES(NUL_SMUGGLE_SENT("\n")), true, sizeof(NUL_SMUGGLE("\n")) - 1, 1, 2,
     DATASCAN_END},
    {"smuggle_nul_dot_twice_crlf_strip", STRIP, BYTES(NUL_SMUGGLE("\r\n") NEXT),
     BYTES("before\r\n..\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n"
	   "DATA\r\nsmuggled\r\n..\r\nafter\r\n"),
     true, sizeof(NUL_SMUGGLE("\r\n")) - 1, 0, 2, DATASCAN_END},
    {"smuggle_crlf_nul_dot_crlf_strip_is_the_line_dot", STRIP,
     BYTES(HDR "\r\n\0.\r\n" TAIL NEXT), BYTES(HDR "\r\n..\r\nsmuggled\r\n"),
     true, sizeof(HDR "\r\n\0.\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_crlf_nul_dot_crlf_reject_sends_no_nul", REJECT,
     BYTES(HDR "\r\n\0.\r\n" TAIL NEXT), BYTES(HDR "\r\n..\r\nsmuggled\r\n"),
     true, sizeof(HDR "\r\n\0.\r\n" TAIL) - 1, 0, 1, DATASCAN_END},
    {"smuggle_cr_cr_lf_is_one_bare_cr_then_crlf", PASS,
     BYTES(HDR "\r\r\n.\r\n" NEXT), BYTES(HDR "\r\n\r\n"), true,
     sizeof(HDR "\r\r\n.\r\n") - 1, 1, 0, DATASCAN_END},
    {"smuggle_crlf_dot_cr_cr_lf", PASS, BYTES(HDR "\r\n.\r\r\n" TAIL NEXT),
     BYTES(HDR "\r\n\r\n\r\nsmuggled\r\n"), true,
     sizeof(HDR "\r\n.\r\r\n" TAIL) - 1, 1, 0, DATASCAN_END},
    {"smuggle_lf_dot_dot_crlf_is_two_dots_of_content", PASS,
     BYTES(HDR "\n..\r\n" TAIL NEXT), BYTES(HDR "\r\n...\r\nsmuggled\r\n"),
     true, sizeof(HDR "\n..\r\n" TAIL) - 1, 1, 0, DATASCAN_END},
    /* Issue 11: a line started by a bare LF or CR keeps its dot. */
    {"lf_dot_lf_is_the_line_dot_stuffed", PASS, BYTES("line\n.\nnext\r\n.\r\n"),
     BYTES("line\r\n..\r\nnext\r\n"), true, 16, 2, 0, DATASCAN_END},
    {"cr_dot_cr_is_the_line_dot_stuffed", PASS, BYTES("line\r.\rnext\r\n.\r\n"),
     BYTES("line\r\n..\r\nnext\r\n"), true, 16, 2, 0, DATASCAN_END},
    {"lf_dot_cr_is_the_line_dot_stuffed", PASS, BYTES("a\n.\rb\r\n.\r\n"),
     BYTES("a\r\n..\r\nb\r\n"), true, 10, 2, 0, DATASCAN_END},
    {"cr_dot_lf_is_the_line_dot_stuffed", PASS, BYTES("a\r.\nb\r\n.\r\n"),
     BYTES("a\r\n..\r\nb\r\n"), true, 10, 2, 0, DATASCAN_END},
    {"soft_dot_line_then_real_end", PASS, BYTES("a\n.\r\n.\r\n"),
     BYTES("a\r\n..\r\n"), true, 8, 1, 0, DATASCAN_END},
    {"soft_dot_crlf_is_never_an_end", PASS, BYTES("a\n.\r\n"),
     BYTES("a\r\n..\r\n"), false, 0, 1, 0, DATASCAN_BOL},
    {"soft_dot_cr_crlf_ends_nothing", PASS, BYTES("a\r.\r\r\n.\r\n"),
     BYTES("a\r\n..\r\n\r\n"), true, 9, 2, 0, DATASCAN_END},
    {"soft_dot_then_text_keeps_the_dot", PASS, BYTES("a\n.x\r\n.\r\n"),
     BYTES("a\r\n..x\r\n"), true, 9, 1, 0, DATASCAN_END},
    {"soft_dot_dot_is_two_dots_of_content", PASS, BYTES("a\r..x\r\n.\r\n"),
     BYTES("a\r\n...x\r\n"), true, 10, 1, 0, DATASCAN_END},
    {"dot_lf_at_start_is_an_empty_line", PASS, BYTES(".\nx\r\n.\r\n"),
     BYTES("\r\nx\r\n"), true, 8, 1, 0, DATASCAN_END},
    {"dot_cr_at_start_is_an_empty_line", PASS, BYTES(".\rx\r\n.\r\n"),
     BYTES("\r\nx\r\n"), true, 8, 1, 0, DATASCAN_END},
    {"dot_cr_dot_is_an_empty_line_then_the_line_dot", PASS,
     BYTES("a\r\n.\r.\r\n.\r\n"), BYTES("a\r\n\r\n..\r\n"), true, 11, 1, 0,
     DATASCAN_END},
    {"bare_newlines_counted", PASS, BYTES("a\nb\rc\r\r\n\n.\r\n.\r\n"),
     BYTES("a\r\nb\r\nc\r\n\r\n\r\n..\r\n"), true, 15, 4, 0, DATASCAN_END},
    /* [relay] nul_bytes */
    {"nul_bytes_pass_and_count", PASS, BYTES("a\0b\r\n\0\r\n.\r\n"),
     BYTES("a\0b\r\n\0\r\n"), true, 11, 0, 2, DATASCAN_END},
    {"nul_bytes_strip_and_count", STRIP, BYTES("a\0b\r\n\0\r\n.\r\n"),
     BYTES("ab\r\n\r\n"), true, 11, 0, 2, DATASCAN_END},
    {"nul_bytes_reject_count_and_send_none", REJECT,
     BYTES("a\0b\r\n\0\r\n.\r\n"), BYTES("ab\r\n\r\n"), true, 11, 0, 2,
     DATASCAN_END},
    {"nul_dot_crlf_at_start_pass", PASS, BYTES("\0.\r\n.\r\n"),
     BYTES("\0..\r\n"), true, 7, 0, 1, DATASCAN_END},
    {"nul_dot_crlf_at_start_strip", STRIP, BYTES("\0.\r\n.\r\n"),
     BYTES("..\r\n"), true, 7, 0, 1, DATASCAN_END},
    {"nuls_then_dot_pass_stuffed_where_it_stands", PASS,
     BYTES("\0\0.x\r\n.\r\n"), BYTES("\0\0..x\r\n"), true, 9, 0, 2,
     DATASCAN_END},
    {"nul_dot_bare_lf_pass", PASS, BYTES("\0.\nx\r\n.\r\n"),
     BYTES("\0..\r\nx\r\n"), true, 9, 1, 1, DATASCAN_END},
    {"dot_then_nul_pass_stuffed_as_always", PASS, BYTES("a\r\n..\0x\r\n.\r\n"),
     BYTES("a\r\n..\0x\r\n"), true, 12, 0, 1, DATASCAN_END},
    {"dot_then_nul_after_bare_lf_pass", PASS, BYTES("a\n.\0\r\n.\r\n"),
     BYTES("a\r\n..\0\r\n"), true, 9, 1, 1, DATASCAN_END},
    {"nuls_then_text_pass_not_stuffed", PASS, BYTES("\0\0x\r\n.\r\n"),
     BYTES("\0\0x\r\n"), true, 8, 0, 2, DATASCAN_END},
    {"nuls_only_line_pass", PASS, BYTES("\0\0\r\n.\r\n"), BYTES("\0\0\r\n"),
     true, 7, 0, 2, DATASCAN_END},
    {"nul_then_bare_lf_pass", PASS, BYTES("\0\n.\r\n.\r\n"),
     BYTES("\0\r\n..\r\n"), true, 8, 1, 1, DATASCAN_END},
    {"stuffing_dot_nul_dot_pass", PASS, BYTES("a\r\n.\0.\r\n.\r\n"),
     BYTES("a\r\n\0..\r\n"), true, 11, 0, 1, DATASCAN_END},
    {"stuffing_dot_nul_dot_strip", STRIP, BYTES("a\r\n.\0.\r\n.\r\n"),
     BYTES("a\r\n..\r\n"), true, 11, 0, 1, DATASCAN_END},
    {"soft_nul_dot_pass", PASS, BYTES("a\n\0.\r\n.\r\n"),
     BYTES("a\r\n\0..\r\n"), true, 9, 1, 1, DATASCAN_END},
    {"soft_nul_dot_strip", STRIP, BYTES("a\n\0.\r\n.\r\n"),
     BYTES("a\r\n..\r\n"), true, 9, 1, 1, DATASCAN_END},
    {"nul_inside_a_line_pass_no_stuffing", PASS, BYTES("a\0.\r\n.\r\n"),
     BYTES("a\0.\r\n"), true, 8, 0, 1, DATASCAN_END},
    {"cr_nul_lf_is_two_bare_newlines_pass", PASS, BYTES("a\r\0\nb\r\n.\r\n"),
     BYTES("a\r\n\0\r\nb\r\n"), true, 10, 2, 1, DATASCAN_END},
    {"cr_nul_lf_is_two_bare_newlines_strip", STRIP, BYTES("a\r\0\nb\r\n.\r\n"),
     BYTES("a\r\n\r\nb\r\n"), true, 10, 2, 1, DATASCAN_END},
    {"dot_cr_nul_pass", PASS, BYTES("a\r\n.\r\0\r\n.\r\n"),
     BYTES("a\r\n\r\n\0\r\n"), true, 11, 1, 1, DATASCAN_END},
    {"dot_cr_nul_strip", STRIP, BYTES("a\r\n.\r\0\r\n.\r\n"),
     BYTES("a\r\n\r\n\r\n"), true, 11, 1, 1, DATASCAN_END},
    {"nul16_then_dot_pass_stuffed_after", PASS, BYTES(NUL16 ".\r\n.\r\n"),
     BYTES(NUL16 "..\r\n"), true, 22, 0, 16, DATASCAN_END},
    {"nul17_then_dot_pass_stuffed_after", PASS, BYTES(NUL16 "\0.\r\n.\r\n"),
     BYTES(NUL16 "\0..\r\n"), true, 23, 0, 17, DATASCAN_END},
    {"nul18_then_text_pass", PASS, BYTES(NUL16 "\0\0x\r\n.\r\n"),
     BYTES(NUL16 "\0\0x\r\n"), true, 24, 0, 18, DATASCAN_END},
    {"eight_bit_passes", PASS, BYTES("\xc3\xa9t\xc3\xa9\r\n.\r\n"),
     BYTES("\xc3\xa9t\xc3\xa9\r\n"), true, 10, 0, 0, DATASCAN_END},
    /* Unfinished input: what is emitted so far, what is held. */
    {"no_terminator", PASS, BYTES("hello\r\n"), BYTES("hello\r\n"), false, 0, 0,
     0, DATASCAN_BOL},
    {"pending_cr", PASS, BYTES("hello\r"), BYTES("hello"), false, 0, 0, 0,
     DATASCAN_CR},
    {"pending_dot", PASS, BYTES("x\r\n."), BYTES("x\r\n"), false, 0, 0, 0,
     DATASCAN_DOT},
    {"pending_dot_cr", PASS, BYTES("x\r\n.\r"), BYTES("x\r\n"), false, 0, 0, 0,
     DATASCAN_DOT_CR},
    {"soft_dot_is_sent_at_once", PASS, BYTES("x\n."), BYTES("x\r\n.."), false,
     0, 1, 0, DATASCAN_TEXT},
    {"soft_line_start", PASS, BYTES("x\n"), BYTES("x\r\n"), false, 0, 1, 0,
     DATASCAN_BOL_CONTENT},
    {"leading_nuls_sent_at_once_pass", PASS, BYTES("x\r\n\0\0"),
     BYTES("x\r\n\0\0"), false, 0, 0, 2, DATASCAN_BOL_NUL},
    {"leading_nul16_sent_at_once_pass", PASS, BYTES("x\r\n" NUL16 "\0"),
     BYTES("x\r\n" NUL16 "\0"), false, 0, 0, 17, DATASCAN_BOL_NUL},
    {"leading_nuls_then_dot_pass", PASS, BYTES("x\r\n\0\0."),
     BYTES("x\r\n\0\0.."), false, 0, 0, 2, DATASCAN_TEXT},
    {"pending_nul_strip", STRIP, BYTES("x\r\n\0"), BYTES("x\r\n"), false, 0, 0,
     1, DATASCAN_BOL_CONTENT},
    {"empty_input", PASS, BYTES(""), BYTES(""), false, 0, 0, 0, DATASCAN_BOL},
    {"unfinished_text", PASS, BYTES("abc"), BYTES("abc"), false, 0, 0, 0,
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
static void scan_pieces(const char *in, size_t len, enum datascan_nul_mode mode,
			size_t first, size_t step, struct scan_result *r)
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
	datascan_init(&r->ds, mode);
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

static void print_bytes(const char *what, const char *p, size_t len)
{
	printf("# %s \"", what);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			putchar(ch);
		else
			printf("\\x%02x", ch);
	}
	printf("\"\n");
}

static void result_diag(const struct scan_result *r, const char *how)
{
	printf("# %s: out_len=%zu done=%d consumed=%zu bare=%llu nul=%llu "
	       "state=%s\n",
	       how, r->out_len, r->done, r->consumed,
	       (unsigned long long)r->ds.bare_newlines,
	       (unsigned long long)r->ds.nul_bytes,
	       datascan_state_name(r->ds.state));
	print_bytes("out", r->out, r->out_len);
}

static void test_case(const struct scan_case *c)
{
	struct scan_result r;
	struct datascan_model m;
	const char *why = NULL;
	bool ok;
	size_t bad_split = 0;

	scan_pieces(c->in, c->in_len, c->mode, c->in_len, 0, &r);
	ok = result_matches(&r, c);
	TAP_OK(ok, "%s: one feed", c->name);
	if (!ok)
		result_diag(&r, "one feed");
	datascan_model_run(&m, c->in, c->in_len, c->mode);
	TAP_OK(datascan_backends_agree(&m, r.out, r.out_len, &why),
	       "%s: all three kinds of backend read the content, no other "
	       "end (%s)",
	       c->name, why ? why : "ok");
	datascan_model_free(&m);
	scan_result_free(&r);

	ok = true;
	for (size_t k = 0; k <= c->in_len && ok; k++) {
		scan_pieces(c->in, c->in_len, c->mode, k, 0, &r);
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

	scan_pieces(c->in, c->in_len, c->mode, c->in_len > 0 ? 1 : 0, 1, &r);
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

	datascan_init(&ds, DATASCAN_NUL_REJECT);
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

static void test_long_line_is_not_held(enum datascan_nul_mode mode,
				       const char *mode_name)
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
	datascan_init(&ds, mode);
	for (size_t pos = 0; pos < line_len; pos += chunk) {
		size_t n = line_len - pos < chunk ? line_len - pos : chunk;

		if (datascan_feed(&ds, line + pos, n, out, &out_len,
				  &consumed) != DATASCAN_MORE ||
		    consumed != n || out_len != n || ds.state != DATASCAN_TEXT)
			streamed = false;
		if (memcmp(out, line + pos, n) != 0)
			same = false;
	}
	TAP_OK(streamed,
	       "%s: 100 KB line: every chunk goes out at once, state "
	       "text, nothing held",
	       mode_name);
	TAP_OK(same, "%s: 100 KB line: passed through unchanged", mode_name);
	TAP_EQ_INT(ds.size, line_len, "%s: 100 KB line: size counts it",
		   mode_name);
	TAP_OK(datascan_feed(&ds, "\r\n.\r\n", 5, out, &out_len, &consumed) ==
		       DATASCAN_DONE &&
		   out_len == 2 && consumed == 5,
	       "%s: 100 KB line: then the end of data", mode_name);
	free(line);
	free(out);
}

/* A message that is nothing but NULs streams in every mode: pass sends
 * each chunk as it comes (nothing is held at the line start), strip and
 * reject send nothing, and the size counts what is sent. */
static void test_nul_run_is_not_held(enum datascan_nul_mode mode,
				     const char *mode_name)
{
	const size_t chunk = 4096, total = (size_t)64 * 1024;
	char *zeros = calloc(1, chunk);
	char *out = malloc(DATASCAN_OUT_MAX(chunk));
	struct datascan ds;
	size_t out_len, consumed, sent = 0;
	bool ok = true;

	if (zeros == NULL || out == NULL)
		abort();
	datascan_init(&ds, mode);
	for (size_t pos = 0; pos < total; pos += chunk) {
		if (datascan_feed(&ds, zeros, chunk, out, &out_len,
				  &consumed) != DATASCAN_MORE ||
		    consumed != chunk)
			ok = false;
		for (size_t i = 0; i < out_len; i++)
			if (out[i] != '\0')
				ok = false;
		if (out_len != (mode == DATASCAN_NUL_PASS ? chunk : 0))
			ok = false;
		sent += out_len;
	}
	TAP_OK(ok && ds.nul_bytes == total && ds.size == sent &&
		   sent == (mode == DATASCAN_NUL_PASS ? total : 0),
	       "%s: 64 KB of NULs: counted, streamed, size %zu", mode_name,
	       sent);
	free(zeros);
	free(out);
}

/* The scanner, in one feed and in two, against the model and the
 * backends' reading; then with the relay's view of a whole message: the
 * input followed by an end of data. */
static bool property_holds_once(const char *in, size_t len,
				enum datascan_nul_mode mode, const char **why_r)
{
	struct scan_result r;
	struct datascan_model m;
	bool ok;

	scan_pieces(in, len, mode, len, 0, &r);
	datascan_model_run(&m, in, len, mode);
	/* What the backends read first: a smuggled end of data is the
	 * finding that matters, more than any other difference. */
	ok = r.done == m.done && r.consumed == m.consumed;
	if (!ok)
		*why_r = "the end of data is not the model's";
	if (ok && !datascan_backends_agree(&m, r.out, r.out_len, why_r))
		ok = false;
	if (ok) {
		*why_r = "the model disagrees";
		ok = r.out_len == m.out_len &&
		     memcmp(r.out, m.out, m.out_len) == 0 &&
		     r.ds.bare_newlines == m.bare_newlines &&
		     r.ds.nul_bytes == m.nul_bytes && r.ds.size == r.out_len &&
		     r.out_max_ok && r.consumed_ok;
	}
	if (ok && r.done &&
	    !((r.consumed >= 5 &&
	       memcmp(in + r.consumed - 5, "\r\n.\r\n", 5) == 0) ||
	      (r.consumed == 3 && memcmp(in, ".\r\n", 3) == 0))) {
		*why_r = "the end is not CR LF . CR LF";
		ok = false;
	}
	scan_result_free(&r);
	if (ok && len > 1) {
		/* and the same in two feeds, cut in the middle */
		*why_r = "two feeds disagree with the model";
		scan_pieces(in, len, mode, len / 2, 0, &r);
		ok = r.out_len == m.out_len &&
		     memcmp(r.out, m.out, m.out_len) == 0 && r.done == m.done &&
		     r.consumed == m.consumed &&
		     r.ds.nul_bytes == m.nul_bytes &&
		     r.ds.bare_newlines == m.bare_newlines && r.out_max_ok &&
		     r.consumed_ok;
		scan_result_free(&r);
	}
	datascan_model_free(&m);
	return ok;
}

#define PROPERTY_MAX_LEN 48

static bool property_holds(const char *in, size_t len,
			   enum datascan_nul_mode mode)
{
	char whole[PROPERTY_MAX_LEN + 5];
	const char *why = NULL;

	memcpy(whole, in, len);
	memcpy(whole + len, "\r\n.\r\n", 5);
	if (property_holds_once(in, len, mode, &why) &&
	    property_holds_once(whole, len + 5, mode, &why))
		return true;
	printf("# mode %d: %s\n", (int)mode, why);
	print_bytes("input", in, len);
	return false;
}

static const char *const mode_names[] = {
    [DATASCAN_NUL_PASS] = "pass",
    [DATASCAN_NUL_STRIP] = "strip",
    [DATASCAN_NUL_REJECT] = "reject",
};
static_assert(sizeof(mode_names) / sizeof(mode_names[0]) ==
		  DATASCAN_NUL_MODE_COUNT,
	      "one name per NUL mode");

static const char alphabet[] = {'\r', '\n', '.', 'a', '\0'};
#define ALPHABET_SIZE (sizeof(alphabet) / sizeof(alphabet[0]))

static void test_property_exhaustive(size_t max_len,
				     enum datascan_nul_mode mode)
{
	char in[PROPERTY_MAX_LEN];
	unsigned long tested = 0;
	bool ok = true;

	for (size_t len = 0; len <= max_len && ok; len++) {
		size_t digits[PROPERTY_MAX_LEN] = {0};

		for (;;) {
			size_t d;

			for (size_t i = 0; i < len; i++)
				in[i] = alphabet[digits[i]];
			tested++;
			if (!property_holds(in, len, mode)) {
				ok = false;
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
	       "property, %s: all %lu strings of \\r \\n . a \\0 up to %zu "
	       "bytes (alone and followed by CR LF . CR LF) agree with the "
	       "model; all three backends read its content and no other end",
	       mode_names[mode], tested, max_len);
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Random strings over letters (a NUL-heavy set makes long runs of NULs
 * at line starts, before dots and line ends). */
static void test_property_random(const char *letters, size_t nletters,
				 size_t min_len, size_t max_len,
				 unsigned long count,
				 enum datascan_nul_mode mode)
{
	char in[PROPERTY_MAX_LEN];
	uint64_t x = 0x2545f4914f6cdd1dULL;
	bool ok = true;

	for (unsigned long n = 0; n < count && ok; n++) {
		size_t len =
		    min_len + (size_t)(xorshift(&x) % (max_len - min_len + 1));

		for (size_t i = 0; i < len; i++)
			in[i] = letters[(xorshift(&x) >> 32) % nletters];
		if (!property_holds(in, len, mode))
			ok = false;
	}
	TAP_OK(ok,
	       "property, %s: %lu random strings of %zu..%zu bytes agree "
	       "with the model; all three backends read its content and "
	       "no other end",
	       mode_names[mode], count, min_len, max_len);
}

static const char nul_heavy[] = {'\0', '\0', '\0', '\0', '\0', '\0',
				 '\0', '.',  '\r', '\n', 'a'};

int main(void)
{
	for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++)
		test_case(&scan_cases[i]);
	test_feeds_after_end_consume_nothing();
	for (int mode = 0; mode < DATASCAN_NUL_MODE_COUNT; mode++) {
		test_long_line_is_not_held((enum datascan_nul_mode)mode,
					   mode_names[mode]);
		test_nul_run_is_not_held((enum datascan_nul_mode)mode,
					 mode_names[mode]);
	}
	TAP_EQ_STR(datascan_state_name(DATASCAN_DOT_CR), "dot-cr",
		   "state name table");
	TAP_EQ_STR(datascan_state_name(DATASCAN_STATE_COUNT), "unknown",
		   "state name out of range");
	/* Reject scans as strip (the relay is what aborts): a shorter
	 * exhaustive run there keeps the suite quick under the sanitizers. */
	for (int mode = 0; mode < DATASCAN_NUL_MODE_COUNT; mode++) {
		enum datascan_nul_mode m = (enum datascan_nul_mode)mode;

		test_property_exhaustive(m == DATASCAN_NUL_REJECT ? 6 : 8, m);
		test_property_random(alphabet, ALPHABET_SIZE, 9, 12, 100000, m);
		test_property_random(nul_heavy, sizeof(nul_heavy), 16,
				     PROPERTY_MAX_LEN, 30000, m);
	}
	return tap_done();
}
