/*
 * fuzz_datascan.c - libFuzzer harness for proxy/datascan.c.
 *
 * Input: one control byte, then the client's DATA bytes.  The bytes are
 * scanned twice: in one feed, and in pieces whose sizes come from the
 * control byte (1 to 16 bytes, or split once).  Each piece is copied to a
 * heap buffer of its exact size so that AddressSanitizer sees a read past
 * it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: both runs agree on output, end and counters; every feed stays
 * within DATASCAN_OUT_MAX and, before the end, consumes all it is given,
 * and after the end nothing; the output has no bare CR or LF, no CR LF "."
 * CR LF and does not start with "." CR LF (SMTP smuggling, CVE-2023-51764);
 * the end is the first CR LF "." CR LF of the input (or "." CR LF at its
 * start) and nothing else; and the output equals a line-based reference
 * model of the un-stuffing and re-stuffing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/datascan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

struct fuzz_run {
	char *out;
	size_t out_len;
	bool done;
	size_t consumed;
	struct datascan ds;
};

static void fuzz_feed(struct fuzz_run *run, const char *in, size_t pos,
		      size_t n)
{
	char *piece = malloc(n > 0 ? n : 1);
	char *buf = malloc(DATASCAN_OUT_MAX(n));
	size_t out_len = SIZE_MAX, consumed = SIZE_MAX;
	enum datascan_result res;

	FUZZ_CHECK(piece != NULL && buf != NULL);
	if (n > 0)
		memcpy(piece, in + pos, n);
	res = datascan_feed(&run->ds, piece, n, buf, &out_len, &consumed);
	FUZZ_CHECK(out_len <= DATASCAN_OUT_MAX(n));
	FUZZ_CHECK(consumed <= n);
	if (run->done) {
		FUZZ_CHECK(res == DATASCAN_DONE && consumed == 0 &&
			   out_len == 0);
	} else if (res == DATASCAN_DONE) {
		FUZZ_CHECK(run->ds.state == DATASCAN_END);
		run->done = true;
		run->consumed = pos + consumed;
	} else {
		FUZZ_CHECK(res == DATASCAN_MORE && consumed == n);
		FUZZ_CHECK(run->ds.state != DATASCAN_END);
	}
	memcpy(run->out + run->out_len, buf, out_len);
	run->out_len += out_len;
	free(buf);
	free(piece);
}

static void fuzz_run_init(struct fuzz_run *run, size_t len)
{
	memset(run, 0, sizeof(*run));
	run->out = malloc(DATASCAN_OUT_MAX(len));
	FUZZ_CHECK(run->out != NULL);
	datascan_init(&run->ds);
}

static void fuzz_run_finish(struct fuzz_run *run, size_t len)
{
	if (!run->done)
		run->consumed = len;
	FUZZ_CHECK(run->ds.size == run->out_len);
}

static bool fuzz_output_is_safe(const char *out, size_t len)
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

/* The reference model (as tests/unit/test_datascan.c): cut the body before
 * the first end of data into lines at CR LF, lone CR or lone LF; each line
 * loses one leading dot and gets one back if it still starts with one. */
static void model_line(char *out, size_t *o, const char *p, size_t n, bool eol)
{
	if (n > 0 && p[0] == '.') {
		p++;
		n--;
		if (n > 0 && p[0] == '.')
			out[(*o)++] = '.';
	}
	if (n > 0)
		memcpy(out + *o, p, n);
	*o += n;
	if (eol) {
		out[(*o)++] = '\r';
		out[(*o)++] = '\n';
	}
}

static void fuzz_check_model(const char *in, size_t len,
			     const struct fuzz_run *run)
{
	size_t body = len, start = 0, o = 0;
	bool done = false;
	size_t consumed = len;
	uint64_t bare = 0, nul = 0;
	char *out = malloc(DATASCAN_OUT_MAX(len));

	FUZZ_CHECK(out != NULL);
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0) {
		done = true;
		consumed = 3;
		body = 0;
	} else {
		const char *p = in;

		while ((p = memchr(p, '\r', len - (size_t)(p - in))) != NULL) {
			size_t i = (size_t)(p - in);

			if (i + 5 > len)
				break;
			if (memcmp(p, "\r\n.\r\n", 5) == 0) {
				done = true;
				consumed = i + 5;
				body = i + 2;
				break;
			}
			p++;
		}
	}
	for (size_t i = 0; i < body; i++) {
		if (in[i] == '\0') {
			nul++;
			continue;
		}
		if (in[i] != '\r' && in[i] != '\n')
			continue;
		if (in[i] == '\r' && i + 1 == body)
			break;
		model_line(out, &o, in + start, i - start, true);
		if (in[i] == '\r' && in[i + 1] == '\n')
			i++;
		else
			bare++;
		start = i + 1;
	}
	if (start < body) {
		size_t n = body - start;

		if (in[body - 1] == '\r')
			n--;
		model_line(out, &o, in + start, n, false);
	}
	FUZZ_CHECK(run->done == done && run->consumed == consumed);
	FUZZ_CHECK(run->ds.bare_newlines == bare && run->ds.nul_bytes == nul);
	FUZZ_CHECK(run->out_len == o && memcmp(run->out, out, o) == 0);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run whole, pieces;
	const char *in;
	size_t len, pos;
	unsigned ctl;

	if (size < 1)
		return 0;
	ctl = data[0];
	in = (const char *)data + 1;
	len = size - 1;

	fuzz_run_init(&whole, len);
	fuzz_feed(&whole, in, 0, len);
	fuzz_run_finish(&whole, len);

	/* ctl < 16: pieces of ctl + 1 bytes; otherwise one split, at ctl
	 * modulo the length, followed by an empty feed. */
	fuzz_run_init(&pieces, len);
	pos = 0;
	if (ctl < 16) {
		do {
			size_t n = len - pos < ctl + 1u ? len - pos : ctl + 1u;

			fuzz_feed(&pieces, in, pos, n);
			pos += n;
		} while (pos < len);
	} else {
		size_t cut = len > 0 ? ctl % (len + 1) : 0;

		fuzz_feed(&pieces, in, 0, cut);
		fuzz_feed(&pieces, in, cut, len - cut);
		fuzz_feed(&pieces, in, len, 0);
	}
	fuzz_run_finish(&pieces, len);

	FUZZ_CHECK(whole.done == pieces.done &&
		   whole.consumed == pieces.consumed);
	FUZZ_CHECK(whole.out_len == pieces.out_len &&
		   memcmp(whole.out, pieces.out, whole.out_len) == 0);
	FUZZ_CHECK(whole.ds.state == pieces.ds.state);
	FUZZ_CHECK(whole.ds.bare_newlines == pieces.ds.bare_newlines &&
		   whole.ds.nul_bytes == pieces.ds.nul_bytes);

	FUZZ_CHECK(fuzz_output_is_safe(whole.out, whole.out_len));
	if (whole.done)
		FUZZ_CHECK(
		    (whole.consumed >= 5 &&
		     memcmp(in + whole.consumed - 5, "\r\n.\r\n", 5) == 0) ||
		    (whole.consumed == 3 && memcmp(in, ".\r\n", 3) == 0));
	fuzz_check_model(in, len, &whole);

	free(whole.out);
	free(pieces.out);
	return 0;
}
