/*
 * fuzz_relay_parse.c - libFuzzer harness for proxy/smtp-relay-parse.c.
 *
 * Input: one control byte, then text.  The text goes, as one argument
 * string, to mail_from_rewrite, rcpt_to_check and mail_from_size; split at
 * '\n', line by line to ehlo_caps_add_line, then ehlo_caps_render; and as
 * bytes to xtext_encode.  Buffer sizes come from the control byte so that
 * the "too small" paths run too; every input and output buffer is a heap
 * block of its exact size, so AddressSanitizer sees a byte past it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: outputs are NUL-terminated within their size; a rewritten MAIL
 * FROM is "FROM:<path>" plus parameters, free of control characters and of
 * AUTH=, and rewrites to itself; the three argument parsers agree on the
 * shape; rendered EHLO lines are short printable keywords, never XCLIENT,
 * and no more than asked; xtext output decodes back to the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/smtp-relay-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static char *fuzz_alloc(size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	FUZZ_CHECK(p != NULL);
	return p;
}

static char *fuzz_dup(const char *p, size_t len)
{
	char *copy = fuzz_alloc(len);

	if (len > 0)
		memcpy(copy, p, len);
	return copy;
}

static void fuzz_check_cstr(const char *s, size_t size)
{
	FUZZ_CHECK(size > 0 && memchr(s, '\0', size) != NULL);
}

static void fuzz_check_rewritten(const char *out, const char *path)
{
	size_t len = strlen(out), path_len = strlen(path);
	const char *p;

	FUZZ_CHECK(strncmp(out, "FROM:<", 6) == 0);
	FUZZ_CHECK(strncmp(out + 6, path, path_len) == 0);
	FUZZ_CHECK(out[6 + path_len] == '>');
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
	/* Parameters: single spaces, never AUTH. */
	p = out + 7 + path_len;
	while (*p != '\0') {
		size_t kw = 0;

		FUZZ_CHECK(p[0] == ' ' && p[1] != ' ' && p[1] != '\0');
		p++;
		while (p[kw] != '\0' && p[kw] != ' ' && p[kw] != '=')
			kw++;
		FUZZ_CHECK(!(kw == 4 && strncasecmp(p, "AUTH", 4) == 0));
		while (*p != '\0' && *p != ' ')
			p++;
	}
}

static void fuzz_mail_rcpt(const char *text, size_t len, unsigned ctl)
{
	/* Small buffers for some inputs, room enough for the others. */
	size_t path_size = (ctl & 1) ? (ctl >> 1) % 8 + 1 : 257;
	size_t out_size = (ctl & 2) ? (ctl >> 2) % 24 + 1 : len + 8;
	char *args = fuzz_dup(text, len);
	char *path = fuzz_alloc(path_size);
	char *out = fuzz_alloc(out_size);
	uint64_t msize = 1;
	int r, rs;

	r = mail_from_rewrite(args, len, path, path_size, out, out_size);
	fuzz_check_cstr(out, out_size);
	fuzz_check_cstr(path, path_size);
	if (r == 0) {
		char *again = fuzz_dup(out, strlen(out));
		char *path2 = fuzz_alloc(257);
		char *out2 = fuzz_alloc(strlen(out) + 1);

		FUZZ_CHECK(strlen(path) < 255);
		fuzz_check_rewritten(out, path);
		/* The rewrite is a fixed point: nothing left to change. */
		FUZZ_CHECK(mail_from_rewrite(again, strlen(out), path2, 257,
					     out2, strlen(out) + 1) == 0);
		FUZZ_CHECK(strcmp(out2, out) == 0 && strcmp(path2, path) == 0);
		free(again);
		free(path2);
		free(out2);
	} else {
		FUZZ_CHECK(r == -1);
	}

	rs = mail_from_size(args, len, &msize);
	FUZZ_CHECK(rs == 0 || rs == -1);
	if (rs == -1)
		FUZZ_CHECK(msize == 0);
	/* With room enough, a shape mail_from_rewrite refuses is refused by
	 * mail_from_size as well. */
	if (r == -1 && !(ctl & 3))
		FUZZ_CHECK(rs == -1);

	/* "TO:" + the text after "FROM:" has the same shape rules, except
	 * that the path may not be empty. */
	if (len >= 5 && strncasecmp(args, "FROM:", 5) == 0) {
		char *to = fuzz_alloc(len - 2);
		int rt;

		to[0] = 'T';
		to[1] = 'O';
		to[2] = ':';
		memcpy(to + 3, args + 5, len - 5);
		rt = rcpt_to_check(to, len - 2);
		FUZZ_CHECK(rt == 0 || rt == -1);
		if (r == 0 && !(ctl & 3))
			FUZZ_CHECK(rt == 0 || path[0] == '\0');
		if (rt == 0 && !(ctl & 3))
			FUZZ_CHECK(r == 0);
		free(to);
	} else {
		r = rcpt_to_check(args, len);
		FUZZ_CHECK(r == 0 || r == -1);
	}
	free(path);
	free(out);
	free(args);
}

static void fuzz_ehlo(const char *text, size_t len, unsigned ctl)
{
	struct ehlo_caps caps;
	size_t max_lines = ctl % 9;
	char(*lines)[64] = malloc((max_lines > 0 ? max_lines : 1) * 64);
	size_t pos = 0, n;

	FUZZ_CHECK(lines != NULL);
	memset(&caps, 0, sizeof(caps));
	while (pos <= len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		char *line = fuzz_dup(text + pos, end - pos);

		ehlo_caps_add_line(&caps, line, end - pos);
		free(line);
		pos = end + 1;
	}
	fuzz_check_cstr(caps.deliverby, sizeof(caps.deliverby));
	FUZZ_CHECK(caps.size_has_value || caps.size == 0);

	n = ehlo_caps_render(&caps, ctl & 0x80 ? ~0u : ctl * 0x01010101u,
			     ctl & 0x40 ? 0 : (uint64_t)ctl << 20, lines,
			     max_lines);
	FUZZ_CHECK(n <= max_lines && n <= 7);
	for (size_t i = 0; i < n; i++) {
		size_t l;

		fuzz_check_cstr(lines[i], 64);
		l = strlen(lines[i]);
		FUZZ_CHECK(l > 0);
		for (size_t j = 0; j < l; j++)
			FUZZ_CHECK((lines[i][j] > ' ' && lines[i][j] < 0x7f) ||
				   (lines[i][j] == ' ' && j > 0 && j + 1 < l));
		FUZZ_CHECK(strncasecmp(lines[i], "XCLIENT", 7) != 0);
	}
	free(lines);
}

static int fuzz_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	FUZZ_CHECK(c >= 'A' && c <= 'F');
	return c - 'A' + 10;
}

static void fuzz_xtext(const char *text, size_t len, unsigned ctl)
{
	size_t out_size = (ctl & 1) ? ctl % 32 : 3 * len + 1;
	char *in = fuzz_dup(text, len);
	char *out = fuzz_alloc(out_size);
	long r = xtext_encode(in, len, out, out_size);

	if (out_size == 0) {
		FUZZ_CHECK(r == -1);
	} else {
		fuzz_check_cstr(out, out_size);
	}
	if (!(ctl & 1))
		FUZZ_CHECK(r >= 0);
	if (r >= 0) {
		size_t o = 0;

		FUZZ_CHECK((size_t)r < out_size && strlen(out) == (size_t)r);
		for (size_t i = 0; i < (size_t)r; i++) {
			unsigned char c = (unsigned char)out[i];

			FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
			if (c == '+') {
				FUZZ_CHECK(i + 2 < (size_t)r);
				c = (unsigned char)(fuzz_hex(out[i + 1]) * 16 +
						    fuzz_hex(out[i + 2]));
				i += 2;
			}
			FUZZ_CHECK(o < len && (unsigned char)in[o] == c);
			o++;
		}
		FUZZ_CHECK(o == len);
	}
	free(out);
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text;
	size_t len;
	unsigned ctl;

	if (size < 1)
		return 0;
	ctl = data[0];
	text = (const char *)data + 1;
	len = size - 1;
	fuzz_mail_rcpt(text, len, ctl);
	fuzz_ehlo(text, len, ctl);
	fuzz_xtext(text, len, ctl);
	return 0;
}
