/*
 * storeurl.h - the [policy] store value: "memory", or a Redis URL
 *
 *   redis://[[user]:password@]host[:port][/db]
 *   redis+unix://[[user]:password@]/absolute/path[?db=N]
 *
 * host is an IP address ("127.0.0.1", "[::1]") or "localhost" (taken as
 * 127.0.0.1): a name would need a resolver, and every call of the
 * network process runs on an event loop that must not block (the same
 * rule as [backend] address).  The port defaults to 6379, the database
 * to 0.  In the user and password, %XX stands for the byte XX (RFC 3986),
 * so that ':' '@' '/' can be written; a decoded NUL, CR or LF is refused
 * (they could not be sent in a Redis AUTH).
 *
 * Pure: no I/O.  Ownership: the strings of a parsed store belong to it
 * and are freed by storeurl_free().
 */
#ifndef SUBMITPROXY_STOREURL_H
#define SUBMITPROXY_STOREURL_H

#include "config/config.h"

/* Parses s into *store (on success only).  Returns 0, or -1 with a
 * static message in *why. */
int storeurl_parse(const char *s, struct config_store *store,
		   const char **why);

/* The in-process store, as set by default. */
void storeurl_memory(struct config_store *store);

void storeurl_free(struct config_store *store);

/* Whether a and b name the same store (a reload that keeps it keeps its
 * connections). */
bool storeurl_same(const struct config_store *a, const struct config_store *b);

#endif
