/*
 * fuzz_sasl.c - libFuzzer harness for auth/sasl.c.
 *
 * Input: one control byte, then client lines separated by '\n'.  Bit 0 of
 * the control byte picks the mechanism (PLAIN / LOGIN), bit 1 whether the
 * first line is an initial response on the AUTH command or the answer to
 * an empty-handed start.  Every line is copied to a heap buffer of its
 * exact size, so that AddressSanitizer sees any read past it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: completed credentials are bounded, NUL-terminated, non-empty and
 * free of CR/LF; a failed exchange leaves the credentials all zero; strict
 * base64 is canonical (what decodes re-encodes to the same text) and never
 * writes past out_size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static char *fuzz_dup(const uint8_t *p, size_t len)
{
	char *copy = malloc(len > 0 ? len : 1);

	FUZZ_CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, p, len);
	return copy;
}

static bool fuzz_all_zero(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static void fuzz_check_field(const char *s, size_t len, size_t max)
{
	FUZZ_CHECK(len > 0 && len <= max);
	FUZZ_CHECK(s[len] == '\0' && strlen(s) == len);
	FUZZ_CHECK(memchr(s, '\r', len) == NULL);
	FUZZ_CHECK(memchr(s, '\n', len) == NULL);
}

static void fuzz_check_result(enum sasl_status r, const char *challenge,
			      const struct sasl_creds *creds)
{
	switch (r) {
	case SASL_CONTINUE:
		FUZZ_CHECK(challenge != NULL);
		break;
	case SASL_OK:
		FUZZ_CHECK(challenge == NULL);
		fuzz_check_field(creds->user, creds->user_len, SASL_USER_MAX);
		fuzz_check_field(creds->password, creds->password_len,
				 SASL_PASSWORD_MAX);
		break;
	default:
		FUZZ_CHECK(challenge == NULL);
		FUZZ_CHECK(fuzz_all_zero(creds, sizeof(*creds)));
		break;
	}
}

static void fuzz_exchange(const uint8_t *data, size_t size)
{
	enum sasl_mech mech = data[0] & 1 ? SASL_MECH_LOGIN : SASL_MECH_PLAIN;
	bool has_ir = (data[0] & 2) != 0;
	const uint8_t *p = data + 1, *end = data + size;
	struct sasl_state st;
	struct sasl_creds creds;
	const char *challenge = NULL;
	enum sasl_status r;

	if (has_ir) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl != NULL ? nl : end) - p);
		char *ir = fuzz_dup(p, len);

		r = sasl_start(&st, mech, ir, len, &creds, &challenge);
		free(ir);
		p = nl != NULL ? nl + 1 : end;
	} else {
		r = sasl_start(&st, mech, NULL, 0, &creds, &challenge);
	}
	fuzz_check_result(r, challenge, &creds);

	/* A PLAIN or LOGIN exchange ends after at most two more lines. */
	for (int steps = 0; r == SASL_CONTINUE && p < end; steps++) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl != NULL ? nl : end) - p);
		char *line = fuzz_dup(p, len);

		FUZZ_CHECK(steps < 2);
		r = sasl_step(&st, line, len, &creds, &challenge);
		free(line);
		fuzz_check_result(r, challenge, &creds);
		p = nl != NULL ? nl + 1 : end;
	}
	sasl_creds_wipe(&creds);
	FUZZ_CHECK(fuzz_all_zero(&creds, sizeof(creds)));
}

/* The bytes after the control byte as one base64 text: decoded into a
 * buffer of exactly the size the control byte allows. */
static void fuzz_base64(const uint8_t *data, size_t size)
{
	size_t len = size - 1, out_size = len / 4 * 3;
	char *in = fuzz_dup(data + 1, len);
	unsigned char *out, *exact;
	char *text;
	long n, e;

	if (data[0] & 4)
		out_size = out_size > 0 ? out_size - 1 : 0; /* one too short */
	out = malloc(out_size > 0 ? out_size : 1);
	FUZZ_CHECK(out != NULL);
	n = sasl_base64_decode(in, len, out, out_size);
	FUZZ_CHECK(n >= -1 && (n < 0 || (size_t)n <= out_size));
	if (n >= 0) {
		/* Strict means canonical: re-encoding gives the input. */
		text = malloc(len + 1);
		FUZZ_CHECK(text != NULL);
		e = sasl_base64_encode(out, (size_t)n, text, len + 1);
		FUZZ_CHECK(e >= 0 && (size_t)e == len &&
			   memcmp(text, in, len) == 0 && text[len] == '\0');
		free(text);
	}
	free(out);

	/* Encoding arbitrary bytes decodes back to them. */
	text = malloc(len / 3 * 4 + 5);
	FUZZ_CHECK(text != NULL);
	e = sasl_base64_encode(data + 1, len, text, len / 3 * 4 + 5);
	FUZZ_CHECK(e >= 0);
	exact = malloc(len > 0 ? len : 1);
	FUZZ_CHECK(exact != NULL);
	n = sasl_base64_decode(text, (size_t)e, exact, len);
	FUZZ_CHECK(n >= 0 && (size_t)n == len &&
		   (len == 0 || memcmp(exact, data + 1, len) == 0));
	free(exact);
	free(text);
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_exchange(data, size);
	fuzz_base64(data, size);
	/* Mechanism names: bounded by the length, never by a NUL. */
	{
		char *name = fuzz_dup(data + 1, size - 1);
		enum sasl_mech m = sasl_mech_from_name(name, size - 1);

		FUZZ_CHECK(m == SASL_MECH_NONE || size - 1 == 5);
		free(name);
	}
	return 0;
}
