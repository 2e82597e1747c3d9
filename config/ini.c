/*
 * ini.c - splits an INI buffer into section headers and "key = value"
 * lines; see ini.h for the syntax.  Every test is made on the bytes of one
 * line, found with memchr; nothing is copied or allocated, so a line is
 * never read past its end whatever the buffer holds (NUL bytes included).
 */
#include "config/ini.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Longest message made here, with room for its argument. */
#define INI_MESSAGE_MAX 96

struct ini_line {
	const char *s;
	size_t len;
	int lineno;
};

static bool ini_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool ini_is_space(char c)
{
	return isspace((unsigned char)c) != 0;
}

/* The span from s[from] up to the first blank (space or tab). */
static size_t ini_word_len(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && !ini_is_blank(s[i]))
		i++;
	return i;
}

static size_t ini_blanks_len(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && ini_is_blank(s[i]))
		i++;
	return i;
}

/* "[TYPE ARG]": L is trimmed and starts with '['. */
static void ini_section_line(const struct ini_line *l,
			     const struct ini_callbacks *cb, void *ctx)
{
	const char *end = memchr(l->s, ']', l->len);
	const char *s, *type, *arg = NULL;
	size_t len, type_len, arg_len = 0;

	if (end == NULL) {
		cb->error(ctx, l->lineno, INI_ERROR_HEADER,
			  "missing ']' in section header");
		return;
	}
	/* The header itself is clear: report, and read the section. */
	if ((size_t)(end - l->s) + 1 != l->len)
		cb->error(ctx, l->lineno, INI_ERROR_LINE,
			  "unexpected text after ']' (comments go on a line "
			  "of their own)");
	s = l->s + 1;
	len = (size_t)(end - s);
	while (len > 0 && ini_is_space(*s)) {
		s++;
		len--;
	}
	type = s;
	type_len = ini_word_len(s, len);
	s += type_len;
	len -= type_len;
	{
		size_t n = ini_blanks_len(s, len);

		s += n;
		len -= n;
	}
	if (len > 0) {
		arg = s;
		arg_len = ini_word_len(s, len);
		s += arg_len;
		len -= arg_len;
		if (ini_blanks_len(s, len) != len) {
			cb->error(ctx, l->lineno, INI_ERROR_HEADER,
				  "section header has more than one name");
			return;
		}
	}
	if (type_len == 0) {
		cb->error(ctx, l->lineno, INI_ERROR_HEADER,
			  "empty section header");
		return;
	}
	cb->section(ctx, l->lineno, type, type_len, arg, arg_len);
}

/* "key = value" (or "key: value", which inih also took): L is trimmed. */
static void ini_key_line(const struct ini_line *l,
			 const struct ini_callbacks *cb, void *ctx)
{
	char message[INI_MESSAGE_MAX];
	size_t sep = 0, name_len, v;

	while (sep < l->len && l->s[sep] != '=' && l->s[sep] != ':')
		sep++;
	if (sep == l->len) {
		cb->error(ctx, l->lineno, INI_ERROR_LINE,
			  "expected \"key = value\"");
		return;
	}
	name_len = sep;
	while (name_len > 0 && ini_is_space(l->s[name_len - 1]))
		name_len--;
	if (name_len == 0) {
		snprintf(message, sizeof(message), "missing key before '%c'",
			 l->s[sep]);
		cb->error(ctx, l->lineno, INI_ERROR_LINE, message);
		return;
	}
	for (size_t i = 0; i < name_len; i++) {
		if (!isgraph((unsigned char)l->s[i])) {
			cb->error(ctx, l->lineno, INI_ERROR_LINE,
				  "expected \"key = value\" (a key is one "
				  "word)");
			return;
		}
	}
	v = sep + 1;
	v += ini_blanks_len(l->s + v, l->len - v);
	for (size_t i = v; i < l->len; i++) {
		char c = l->s[i];

		/* inih strips "; x" after a value or not depending on how
		 * it was built, and a '#' may belong to the value: refuse to
		 * guess, as before. */
		if ((c == '#' || c == ';') &&
		    (i == v || ini_is_space(l->s[i - 1]))) {
			cb->error(ctx, l->lineno, INI_ERROR_LINE,
				  "comments go on a line of their own");
			return;
		}
		if (iscntrl((unsigned char)c) && c != '\t') {
			cb->error(ctx, l->lineno, INI_ERROR_LINE,
				  "control character in value");
			return;
		}
	}
	if (v < l->len && (l->s[v] == '"' || l->s[v] == '\'')) {
		cb->error(ctx, l->lineno, INI_ERROR_LINE,
			  "values are written without quotes");
		return;
	}
	cb->key(ctx, l->lineno, l->s, name_len, l->s + v, l->len - v);
}

static void ini_line(struct ini_line *l, const struct ini_callbacks *cb,
		     void *ctx)
{
	char message[INI_MESSAGE_MAX];

	if (memchr(l->s, '\0', l->len) != NULL) {
		cb->error(ctx, l->lineno, INI_ERROR_LINE, "NUL byte in line");
		return;
	}
	if (l->len > INI_LINE_MAX) {
		snprintf(message, sizeof(message), "line longer than %d bytes",
			 INI_LINE_MAX);
		cb->error(ctx, l->lineno, INI_ERROR_LINE, message);
		return;
	}
	/* A UTF-8 byte order mark (some editors write one). */
	if (l->lineno == 1 && l->len >= 3 &&
	    memcmp(l->s, "\xef\xbb\xbf", 3) == 0) {
		l->s += 3;
		l->len -= 3;
	}
	/* Trim, which also removes the '\n' and the CR of CRLF. */
	while (l->len > 0 && ini_is_space(l->s[l->len - 1]))
		l->len--;
	while (l->len > 0 && ini_is_space(*l->s)) {
		l->s++;
		l->len--;
	}
	if (l->len == 0 || l->s[0] == '#' || l->s[0] == ';')
		return;
	if (l->s[0] == '[')
		ini_section_line(l, cb, ctx);
	else
		ini_key_line(l, cb, ctx);
}

int ini_parse(const char *buf, size_t len, const struct ini_callbacks *cb,
	      void *ctx)
{
	size_t off = 0;
	int lineno = 0;

	if (len > INI_BUFFER_MAX)
		return -1;
	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		/* The line with its '\n', as getline() gave it before. */
		size_t end = nl != NULL ? (size_t)(nl - buf) + 1 : len;
		struct ini_line l = {buf + off, end - off, ++lineno};

		ini_line(&l, cb, ctx);
		off = end;
	}
	return lineno;
}
