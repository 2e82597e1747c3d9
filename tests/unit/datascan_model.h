/*
 * datascan_model.h - a line-based reference model of the DATA scanner
 * (proxy/datascan.h) and the backends' reading of its output, shared by
 * tests/unit/test_datascan.c and tests/fuzz/fuzz_datascan.c.
 *
 * The model holds the whole input and cuts it into lines, where the
 * scanner streams; agreeing on every input and every split of it, the
 * two check each other.  The model:
 *
 * - the end of data is the first CR LF "." CR LF of the raw input (or
 *   "." CR LF at its start); the body is what comes before the ".";
 * - the body is cut into lines at CR LF, lone CR and lone LF (a CR at
 *   the very end is pending: it may start a CR LF); a line that starts
 *   the body or follows a CR LF is an SMTP line, one that follows a lone
 *   CR or LF is not;
 * - content: an SMTP line that starts with "." loses it (RFC 5321
 *   §4.5.2); the other lines keep every byte; NULs are then removed
 *   unless the mode is pass;
 * - output: each line's content, its first byte other than NUL doubled
 *   when it is "." (the stuffing dot where the dot stands, after the
 *   NULs), then CR LF; an unfinished last line as far as it came.
 *
 * Ownership: datascan_model_run() allocates out and content;
 * datascan_model_free() releases them.
 */
#ifndef SUBMITPROXY_TESTS_DATASCAN_MODEL_H
#define SUBMITPROXY_TESTS_DATASCAN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/datascan.h"

struct datascan_model {
	char *out; /* what the scanner emits */
	size_t out_len;
	char *content; /* each complete line's content, ended by CR LF */
	size_t content_len;
	bool done;
	size_t consumed;
	uint64_t bare_newlines;
	uint64_t nul_bytes;
};

void datascan_model_run(struct datascan_model *m, const char *in, size_t len,
			enum datascan_nul_mode mode);
void datascan_model_free(struct datascan_model *m);

/* The output as any backend sees it: every CR starts a CR LF, every LF
 * ends one, and no line is exactly "." (the only end of data is the one
 * the relay sends after it). */
bool datascan_output_is_safe(const char *out, size_t len);

/* Three kinds of backend read out, each as RFC 5321 §4.5.2 says, once
 * it has its view of the bytes:
 * - one that keeps NULs reads out as it is;
 * - one that drops every NUL before it reads;
 * - one that handles each line as a C string, so that a line ends at
 *   its first NUL (OpenSMTPD compares the line with ".").
 * Every view must be safe (datascan_output_is_safe).  For a complete
 * message (m->done), each reads the end of data exactly at the end of
 * out and the relay's ".\r\n", and reads m's content: as it is, except
 * for a dot more after the NULs that start a line when a dot follows
 * them (the stuffing dot, sent where the dot stands); without its NULs;
 * and with each line cut at its first NUL.  On failure *why_r says which
 * check failed. */
bool datascan_backends_agree(const struct datascan_model *m, const char *out,
			     size_t out_len, const char **why_r);

#endif
