/*
 * fuzz_relay_parse.c - libFuzzer harness for proxy/smtp-relay-parse.c.
 *
 * Input: one control byte, then text.  The text goes, as one argument
 * string, to smtp_args_filter (MAIL or RCPT, the capabilities and the
 * transaction's SMTPUTF8 from the control byte); split at '\n', line by
 * line to ehlo_caps_add_line, then ehlo_caps_render; and as bytes to
 * xtext_encode.  Buffer sizes come from the control byte so that the "too
 * small" paths run too; every input and output buffer is a heap block of
 * its exact size, so AddressSanitizer sees a byte past it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: outputs are NUL-terminated within their size; a filtered line is
 * "MAIL FROM:<path>" or "RCPT TO:<path>" plus parameters, free of control
 * characters and of AUTH=, with SIZE= only for a backend with SIZE and a
 * non-ASCII path only in an SMTPUTF8 transaction to an SMTPUTF8 backend,
 * never longer than the command, and filters to itself; what passes with
 * some extensions passes with more; a refusal has a 5xx reply with an
 * enhanced code; rendered EHLO lines are short printable keywords, never
 * XCLIENT, and no more than asked; xtext output decodes back to the
 * input.
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

/* A line smtp_args_filter() wrote: "MAIL FROM:<path>" or "RCPT TO:<path>"
 * and single-spaced parameters, no control character, never AUTH=, and
 * SIZE= only for a backend with SIZE. */
static void fuzz_check_line(const char *out, enum smtp_args_cmd cmd,
			    const struct smtp_args *a, unsigned caps)
{
	const char *prefix =
	    cmd == SMTP_ARGS_MAIL ? "MAIL FROM:<" : "RCPT TO:<";
	size_t len = strlen(out), prefix_len = strlen(prefix);
	const char *p;

	FUZZ_CHECK(a->out_len == len);
	FUZZ_CHECK(strncmp(out, prefix, prefix_len) == 0);
	FUZZ_CHECK(strncmp(out + prefix_len, a->path, a->path_len) == 0);
	FUZZ_CHECK(out[prefix_len + a->path_len] == '>');
	FUZZ_CHECK(a->path_len + 2 <= 256);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
	for (size_t i = 0; i < a->path_len; i++)
		if ((unsigned char)a->path[i] >= 0x80)
			FUZZ_CHECK(a->smtputf8 && (caps & EHLO_CAP_SMTPUTF8));
	p = out + prefix_len + a->path_len + 1;
	while (*p != '\0') {
		size_t kw = 0;

		FUZZ_CHECK(p[0] == ' ' && p[1] != ' ' && p[1] != '\0');
		p++;
		while (p[kw] != '\0' && p[kw] != ' ' && p[kw] != '=')
			kw++;
		FUZZ_CHECK(!(kw == 4 && strncasecmp(p, "AUTH", 4) == 0));
		if (kw == 4 && strncasecmp(p, "SIZE", 4) == 0)
			FUZZ_CHECK(caps & EHLO_CAP_SIZE);
		while (*p != '\0' && *p != ' ')
			p++;
	}
}

/* A refusal's reply: "NNN D.D.D text", printable. */
static void fuzz_check_reply(enum smtp_args_cmd cmd, enum smtp_args_verdict v,
			     const struct smtp_args *a)
{
	char reply[200];
	size_t len;

	smtp_args_reply(cmd, v, a, reply, sizeof(reply));
	len = strlen(reply);
	FUZZ_CHECK(len > 10 && reply[3] == ' ' && reply[5] == '.');
	FUZZ_CHECK(reply[0] == '5' && reply[4] == '5');
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(reply[i] >= ' ' && reply[i] < 0x7f);
	FUZZ_CHECK(smtp_args_verdict_name(v) != NULL);
}

static void fuzz_args(const char *text, size_t len, unsigned ctl)
{
	enum smtp_args_cmd cmd = (ctl & 1) ? SMTP_ARGS_RCPT : SMTP_ARGS_MAIL;
	unsigned caps = (ctl & 0x80) ? ~0u : (ctl >> 1) * 0x01010101u;
	bool tx_smtputf8 = (ctl & 0x40) != 0;
	/* Small buffers for some inputs, room enough for the others. */
	size_t out_size = (ctl & 0x20) ? (ctl >> 2) % 24 : len + 6;
	char *args = fuzz_dup(text, len);
	char *out = fuzz_alloc(out_size);
	struct smtp_args a;
	enum smtp_args_verdict v;

	v = smtp_args_filter(cmd, args, len, caps, tx_smtputf8, out, out_size,
			     &a);
	FUZZ_CHECK(v < SMTP_ARGS_VERDICT_COUNT);
	if (out_size > 0)
		fuzz_check_cstr(out, out_size);
	if (v == SMTP_ARGS_OK) {
		char *again = fuzz_alloc(a.out_len + 1);
		struct smtp_args b;

		FUZZ_CHECK(a.out_len <= len + 5);
		fuzz_check_line(out, cmd, &a, caps);
		/* The line goes through the filter again when the command
		 * goes (the pump): it is a fixed point, and what one set of
		 * extensions lets through, more of them let through too. */
		FUZZ_CHECK(smtp_args_filter(cmd, out + 5, a.out_len - 5, caps,
					    tx_smtputf8, again, a.out_len + 1,
					    &b) == SMTP_ARGS_OK);
		FUZZ_CHECK(strcmp(again, out) == 0);
		FUZZ_CHECK(b.smtputf8 == a.smtputf8);
		if (caps & EHLO_CAP_SIZE)
			FUZZ_CHECK(b.size == a.size);
		free(again);
		again = fuzz_alloc(len + 6);
		FUZZ_CHECK(smtp_args_filter(cmd, args, len,
					    caps | EHLO_CAPS_PASS, tx_smtputf8,
					    again, len + 6,
					    &b) == SMTP_ARGS_OK);
		free(again);
	} else if (v != SMTP_ARGS_TOO_LONG) {
		fuzz_check_reply(cmd, v, &a);
		if (out_size > 0)
			FUZZ_CHECK(out[0] == '\0');
	}
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
	fuzz_args(text, len, ctl);
	fuzz_ehlo(text, len, ctl);
	fuzz_xtext(text, len, ctl);
	return 0;
}
