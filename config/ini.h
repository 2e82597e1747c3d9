/*
 * ini.h - the INI reader of submitproxy.conf: a pure function over a
 * buffer, callbacks out (STYLE.md habit 2: no I/O, no allocation, no
 * logging).  config.c reads the file and gives each callback a meaning;
 * this file only splits lines.
 *
 * The syntax, line by line (lines end at '\n'; a CR before it, and blanks
 * around everything, are trimmed; a UTF-8 byte order mark may open line 1):
 *
 *   blank, "# ..." or "; ..."   ignored
 *   "[TYPE]" or "[TYPE ARG]"    section(): blanks inside the brackets are
 *                               allowed, at most one ARG; text after ']'
 *                               is reported, and the header still counts
 *   "key = value", "key: value" key(): the key one word, the value
 *                               unquoted, without control characters, and
 *                               with no comment after it
 *
 * Anything else is reported through error() and the line ignored; a header
 * that cannot be read is reported as INI_ERROR_HEADER, so that the caller
 * does not file the keys after it under the section before.  Parsing always
 * goes to the end of the buffer: one run reports every mistake.
 *
 * Why not inih (DESIGN.md names it): the build Debian 12 ships (r55) gives
 * the handler no line number (INI_HANDLER_LINENO is fixed at 0 when the
 * shared library is built), no callback for a section without keys,
 * only the first error and only as a line number, 200-byte lines, and
 * treats indented lines as continuations.  Keeping every "FILE:LINE:
 * message" on top of it took a second line reader; one reader is simpler.
 */
#ifndef SUBMITPROXY_INI_H
#define SUBMITPROXY_INI_H

#include <stddef.h>

/* Longest line, its '\n' included. */
#define INI_LINE_MAX 65536
/* Largest buffer ini_parse() reads: line numbers stay well inside int. */
#define INI_BUFFER_MAX (64u << 20)

enum ini_error_kind {
	INI_ERROR_LINE,	  /* the line is ignored */
	INI_ERROR_HEADER, /* a section header that cannot be read */
};

/* Strings are spans into the buffer (not NUL-terminated), valid for the
 * duration of the call.  Lines are numbered from 1. */
struct ini_callbacks {
	/* arg is NULL (and arg_len 0) for "[TYPE]". */
	void (*section)(void *ctx, int line, const char *type, size_t type_len,
			const char *arg, size_t arg_len);
	/* value_len may be 0 ("key ="). */
	void (*key)(void *ctx, int line, const char *name, size_t name_len,
		    const char *value, size_t value_len);
	/* message: a short English sentence, NUL-terminated. */
	void (*error)(void *ctx, int line, enum ini_error_kind kind,
		      const char *message);
};

/* Reads buf[0..len) and calls cb for each line.  Returns the number of
 * lines (a last line without '\n' counts), or -1 without a call if len
 * exceeds INI_BUFFER_MAX. */
int ini_parse(const char *buf, size_t len, const struct ini_callbacks *cb,
	      void *ctx);

#endif
