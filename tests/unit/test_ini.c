/*
 * test_ini.c - ini_parse() (config/ini.h): each line of a buffer becomes
 * exactly one section, key or error callback, or nothing, on its own line
 * number; what a reader of the file would call one mistake is one error.
 *
 * Each case's callbacks are written out as one transcript line each:
 *   S<line> TYPE|ARG      section ("-" for no ARG)
 *   K<line> NAME|VALUE    key
 *   E<line> MESSAGE       error on a line, H<line> MESSAGE on a header
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/ini.h"
#include "tests/unit/tap.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct transcript {
	char text[4096];
	size_t len;
};

__attribute__((format(printf, 2, 3))) static void
transcript_add(struct transcript *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
	if (t->len >= sizeof(t->text))
		t->len = sizeof(t->text) - 1;
}

static void on_section(void *ctx, int line, const char *type, size_t type_len,
		       const char *arg, size_t arg_len)
{
	if (arg == NULL)
		transcript_add(ctx, "S%d %.*s|-\n", line, (int)type_len, type);
	else
		transcript_add(ctx, "S%d %.*s|%.*s\n", line, (int)type_len,
			       type, (int)arg_len, arg);
}

static void on_key(void *ctx, int line, const char *name, size_t name_len,
		   const char *value, size_t value_len)
{
	transcript_add(ctx, "K%d %.*s|%.*s\n", line, (int)name_len, name,
		       (int)value_len, value);
}

static void on_error(void *ctx, int line, enum ini_error_kind kind,
		     const char *message)
{
	transcript_add(ctx, "%c%d %s\n", kind == INI_ERROR_HEADER ? 'H' : 'E',
		       line, message);
}

static const struct ini_callbacks callbacks = {
    .section = on_section,
    .key = on_key,
    .error = on_error,
};

struct ini_case {
	const char *what;
	const char *text;
	size_t len; /* 0: strlen(text) */
	int lines;
	const char *want;
};

static const struct ini_case cases[] = {
    {"empty buffer", "", 0, 0, ""},
    {"a last line without newline counts", "[a]\nk = v", 0, 2,
     "S1 a|-\nK2 k|v\n"},
    {"a final newline starts no line", "[a]\n", 0, 1, "S1 a|-\n"},
    {"blank lines and both comment styles are skipped",
     "\n  \n# one\n; two\n\t# three\n", 0, 5, ""},
    {"a section with a name", "[listener submission]\n", 0, 1,
     "S1 listener|submission\n"},
    {"blanks inside the brackets", "[ listener \t b ]\n", 0, 1,
     "S1 listener|b\n"},
    {"indented header and CRLF", "  [server]\r\n", 0, 1, "S1 server|-\n"},
    {"an empty section is still reported", "[a]\n[b]\n", 0, 2,
     "S1 a|-\nS2 b|-\n"},
    {"key and value are trimmed", "  key   =   some value \t\r\n", 0, 1,
     "K1 key|some value\n"},
    {"key: value, as configparser", "proxy_protocol: true\n", 0, 1,
     "K1 proxy_protocol|true\n"},
    {"the first '=' or ':' separates", "a = b=c:d\n", 0, 1, "K1 a|b=c:d\n"},
    {"an empty value is the caller's business", "sender_map =\n", 0, 1,
     "K1 sender_map|\n"},
    {"a '#' inside a word stays in the value", "ciphers = A#B\n", 0, 1,
     "K1 ciphers|A#B\n"},
    {"a tab inside a value is kept", "k = a\tb\n", 0, 1, "K1 k|a\tb\n"},
    {"a byte order mark opens line 1", "\xef\xbb\xbf[a]\n", 0, 1, "S1 a|-\n"},
    {"a byte order mark later is not skipped", "[a]\n\xef\xbb\xbfk = v\n", 0, 2,
     "S1 a|-\nE2 expected \"key = value\" (a key is one word)\n"},
    {"missing ]", "[server\nk = v\n", 0, 2,
     "H1 missing ']' in section header\nK2 k|v\n"},
    {"text after ] is reported, the header kept", "[a] # main\n", 0, 1,
     "E1 unexpected text after ']' (comments go on a line of their own)\n"
     "S1 a|-\n"},
    {"two names", "[listener a b]\n", 0, 1,
     "H1 section header has more than one name\n"},
    {"empty header", "[ ]\n", 0, 1, "H1 empty section header\n"},
    {"no separator", "bare_newline reject\n", 0, 1,
     "E1 expected \"key = value\"\n"},
    {"no key", "= plain\n: x\n", 0, 2,
     "E1 missing key before '='\nE2 missing key before ':'\n"},
    {"a key of two words", "max errors = 3\n", 0, 1,
     "E1 expected \"key = value\" (a key is one word)\n"},
    {"inline # comment", "k = yes # why\n", 0, 1,
     "E1 comments go on a line of their own\n"},
    {"inline ; comment", "k = yes ; why\n", 0, 1,
     "E1 comments go on a line of their own\n"},
    {"a value that is a comment", "k = # nothing\n", 0, 1,
     "E1 comments go on a line of their own\n"},
    {"control character",
     "k = a\x01"
     "b\n",
     0, 1, "E1 control character in value\n"},
    {"CR inside a line", "k = a\rb\n", 0, 1, "E1 control character in value\n"},
    {"double quotes", "k = \"/c.pem\"\n", 0, 1,
     "E1 values are written without quotes\n"},
    {"single quotes", "k = 'x'\n", 0, 1,
     "E1 values are written without quotes\n"},
    {"a NUL byte spoils its line only", "k = pl\0ain\nj = v\n", 17, 2,
     "E1 NUL byte in line\nK2 j|v\n"},
    {"a NUL byte at the very end", "k = v\n\0", 7, 2,
     "K1 k|v\nE2 NUL byte in line\n"},
};

static void test_case(const struct ini_case *c)
{
	struct transcript t = {.len = 0};
	size_t len = c->len != 0 ? c->len : strlen(c->text);
	/* An exact-size heap copy: ASan sees any read past the end. */
	char *buf = malloc(len > 0 ? len : 1);
	int lines;

	if (buf == NULL)
		exit(99);
	memcpy(buf, c->text, len);
	t.text[0] = '\0';
	lines = ini_parse(buf, len, &callbacks, &t);
	free(buf);
	TAP_EQ_INT(lines, c->lines, "%s: %d lines", c->what, c->lines);
	TAP_EQ_STR(t.text, c->want, "%s: callbacks", c->what);
}

/* "k = aaa...a\n", LEN bytes in all, in an exact-size buffer. */
static int parse_long_line(size_t len, struct transcript *t)
{
	char *buf = malloc(len);
	int lines;

	if (buf == NULL)
		exit(99);
	memset(buf, 'a', len);
	memcpy(buf, "k = ", 4);
	buf[len - 1] = '\n';
	t->len = 0;
	t->text[0] = '\0';
	lines = ini_parse(buf, len, &callbacks, t);
	free(buf);
	return lines;
}

static void test_line_length(void)
{
	struct transcript t;
	char want[128];

	TAP_EQ_INT(parse_long_line(INI_LINE_MAX, &t), 1,
		   "longest line: one line");
	TAP_OK(strncmp(t.text, "K1 k|aaa", 8) == 0,
	       "a line of INI_LINE_MAX bytes, '\\n' included, is read");
	TAP_EQ_INT(parse_long_line(INI_LINE_MAX + 1, &t), 1,
		   "too long: one line");
	snprintf(want, sizeof(want), "E1 line longer than %d bytes\n",
		 INI_LINE_MAX);
	TAP_EQ_STR(t.text, want, "a line of INI_LINE_MAX + 1 bytes is refused");
}

static void test_buffer_max(void)
{
	struct transcript t = {.len = 0};

	t.text[0] = '\0';
	TAP_EQ_INT(ini_parse("", (size_t)INI_BUFFER_MAX + 1, &callbacks, &t),
		   -1, "a buffer over INI_BUFFER_MAX is refused unread");
	TAP_EQ_STR(t.text, "", "... without a callback");
}

int main(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		test_case(&cases[i]);
	test_line_length();
	test_buffer_max();
	return tap_done();
}
