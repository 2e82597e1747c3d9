/*
 * fuzz_ini.c - libFuzzer harness for config/ini.c.
 *
 * The input is the buffer, copied to a heap block of its exact size so
 * that AddressSanitizer sees any read past it.  Besides memory errors, the
 * harness aborts when a documented property breaks: the line count is the
 * number of '\n' plus a last unterminated line; every span handed out lies
 * inside the buffer; line numbers run from 1 to that count and never go
 * back; each line gives at most one section or key; a key is one word of
 * printable bytes and its value has no blank at either end and no control
 * character but tab; a section type is non-empty.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

struct fuzz_state {
	const char *buf;
	size_t len;
	int last_line;	/* of any callback */
	int entry_line; /* of the last section or key */
};

static void fuzz_span(const struct fuzz_state *st, const char *s, size_t len)
{
	FUZZ_CHECK(s >= st->buf && len <= st->len &&
		   (size_t)(s - st->buf) <= st->len - len);
}

static void fuzz_line(struct fuzz_state *st, int line, int entry)
{
	FUZZ_CHECK(line >= 1 && line >= st->last_line);
	st->last_line = line;
	if (entry) {
		FUZZ_CHECK(line > st->entry_line);
		st->entry_line = line;
	}
}

static void fuzz_on_section(void *ctx, int line, const char *type,
			    size_t type_len, const char *arg, size_t arg_len)
{
	struct fuzz_state *st = ctx;

	fuzz_line(st, line, 1);
	FUZZ_CHECK(type_len > 0);
	fuzz_span(st, type, type_len);
	if (arg != NULL) {
		FUZZ_CHECK(arg_len > 0);
		fuzz_span(st, arg, arg_len);
	} else {
		FUZZ_CHECK(arg_len == 0);
	}
}

static void fuzz_on_key(void *ctx, int line, const char *name, size_t name_len,
			const char *value, size_t value_len)
{
	struct fuzz_state *st = ctx;

	fuzz_line(st, line, 1);
	FUZZ_CHECK(name_len > 0);
	fuzz_span(st, name, name_len);
	fuzz_span(st, value, value_len);
	for (size_t i = 0; i < name_len; i++)
		FUZZ_CHECK(isgraph((unsigned char)name[i]));
	for (size_t i = 0; i < value_len; i++)
		FUZZ_CHECK(!iscntrl((unsigned char)value[i]) ||
			   value[i] == '\t');
	if (value_len > 0) {
		FUZZ_CHECK(!isspace((unsigned char)value[0]));
		FUZZ_CHECK(!isspace((unsigned char)value[value_len - 1]));
		FUZZ_CHECK(value[0] != '"' && value[0] != '\'');
	}
}

static void fuzz_on_error(void *ctx, int line, enum ini_error_kind kind,
			  const char *message)
{
	struct fuzz_state *st = ctx;

	fuzz_line(st, line, 0);
	FUZZ_CHECK(kind == INI_ERROR_LINE || kind == INI_ERROR_HEADER);
	FUZZ_CHECK(message != NULL && message[0] != '\0');
}

static const struct ini_callbacks fuzz_callbacks = {
    .section = fuzz_on_section,
    .key = fuzz_on_key,
    .error = fuzz_on_error,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_state st = {NULL, size, 0, 0};
	char *buf = malloc(size > 0 ? size : 1);
	size_t newlines = 0;
	int lines;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	st.buf = buf;
	for (size_t i = 0; i < size; i++)
		newlines += buf[i] == '\n';
	lines = ini_parse(buf, size, &fuzz_callbacks, &st);
	FUZZ_CHECK(lines >= 0);
	FUZZ_CHECK((size_t)lines ==
		   newlines + (size > 0 && buf[size - 1] != '\n'));
	FUZZ_CHECK(st.last_line <= lines);
	free(buf);
	return 0;
}
