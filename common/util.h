/*
 * util.h - allocation that aborts on failure (as Postfix's mymalloc and
 * OpenSMTPD's xmalloc: running out of memory is not a peer's doing and is
 * not recovered from), fatal() for broken invariants, and log-safe copies
 * of peer text.
 */
#ifndef SUBMITPROXY_UTIL_H
#define SUBMITPROXY_UTIL_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* realloc of n elements of size bytes, aborting on overflow too. */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xmemdup(const void *p, size_t len);
/* A malloc'd formatted string, for error messages handed to a caller. */
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);

__attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt,
							      ...);

/* Copies at most max bytes of peer text src[0..len) into dst (size dstsize)
 * for a log line: printable ASCII kept, '"' and '\\' and everything else
 * escaped as \xNN, "..." appended when truncated.  Always NUL-terminates.
 * Returns dst.  (Dovecot's str_sanitize: peer text never reaches a log
 * unescaped.) */
char *sanitize(char *dst, size_t dstsize, const char *src, size_t len);

#define SANITIZE_MAX 160
#define SANITIZE_BUFSIZE (SANITIZE_MAX * 4 + 4)

#endif
