/*
 * fuzz_datascan.c - libFuzzer harness for proxy/datascan.c.
 *
 * Input: one control byte, then the client's DATA bytes.  The bytes are
 * scanned in each NUL mode (pass, strip, reject) twice: in one feed, and
 * in pieces whose sizes come from the control byte (1 to 16 bytes, or
 * split once).  Each piece is copied to a heap buffer of its exact size
 * so that AddressSanitizer sees a read past it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: both runs agree on output, end and counters; every feed stays
 * within DATASCAN_OUT_MAX and, before the end, consumes all it is given,
 * and after the end nothing; the end is the first CR LF "." CR LF of the
 * input (or "." CR LF at its start) and nothing else; the output equals
 * the line-based reference model of tests/unit/datascan_model.h; and
 * what a backend reads from it (SMTP smuggling, CVE-2023-51764): no bare
 * CR or LF, no end of data but the relay's, and the model's content, for
 * a backend that keeps NULs, one that drops them and one that cuts each
 * line at its first NUL.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/datascan.h"
#include "tests/unit/datascan_model.h"

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

static void fuzz_run_init(struct fuzz_run *run, size_t len,
			  enum datascan_nul_mode mode)
{
	memset(run, 0, sizeof(*run));
	run->out = malloc(DATASCAN_OUT_MAX(len));
	FUZZ_CHECK(run->out != NULL);
	datascan_init(&run->ds, mode);
}

static void fuzz_run_finish(struct fuzz_run *run, size_t len)
{
	if (!run->done)
		run->consumed = len;
	FUZZ_CHECK(run->ds.size == run->out_len);
}

static void fuzz_check_model(const char *in, size_t len,
			     enum datascan_nul_mode mode,
			     const struct fuzz_run *run)
{
	struct datascan_model m;
	const char *why;

	datascan_model_run(&m, in, len, mode);
	FUZZ_CHECK(run->done == m.done && run->consumed == m.consumed);
	FUZZ_CHECK(run->ds.bare_newlines == m.bare_newlines &&
		   run->ds.nul_bytes == m.nul_bytes);
	/* What the backends read first: a smuggled end of data is the
	 * finding, more than any difference from the model. */
	FUZZ_CHECK(datascan_backends_agree(&m, run->out, run->out_len, &why));
	FUZZ_CHECK(run->out_len == m.out_len &&
		   memcmp(run->out, m.out, m.out_len) == 0);
	datascan_model_free(&m);
}

static void fuzz_one_mode(const char *in, size_t len, unsigned ctl,
			  enum datascan_nul_mode mode)
{
	struct fuzz_run whole, pieces;
	size_t pos;

	fuzz_run_init(&whole, len, mode);
	fuzz_feed(&whole, in, 0, len);
	fuzz_run_finish(&whole, len);

	/* ctl < 16: pieces of ctl + 1 bytes; otherwise one split, at ctl
	 * modulo the length, followed by an empty feed. */
	fuzz_run_init(&pieces, len, mode);
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

	if (whole.done)
		FUZZ_CHECK(
		    (whole.consumed >= 5 &&
		     memcmp(in + whole.consumed - 5, "\r\n.\r\n", 5) == 0) ||
		    (whole.consumed == 3 && memcmp(in, ".\r\n", 3) == 0));
	fuzz_check_model(in, len, mode, &whole);

	free(whole.out);
	free(pieces.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	for (int mode = 0; mode < DATASCAN_NUL_MODE_COUNT; mode++)
		fuzz_one_mode((const char *)data + 1, size - 1, data[0],
			      (enum datascan_nul_mode)mode);
	return 0;
}
