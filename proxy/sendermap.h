/*
 * sendermap.h - [relay] sender_map: which envelope senders a login may use
 * (as Postfix's smtpd_sender_login_maps with
 * reject_sender_login_mismatch).  File format, one rule per line:
 *
 *     # alice may use her address and any address in example.org;
 *     # admin may use any address at all.
 *     alice   alice@example.com
 *     alice   @example.org
 *     admin   *
 *
 * A login may have several lines.  A login with no line may use no
 * address at all; the null sender <> is always allowed (bounces).
 * Comparison is case-insensitive for the domain and the login, exact for
 * the local part.  Loaded once (start-up, reload) off the event loops'
 * hot path; lookups are pure and read-only, so any thread may make them.
 */
#ifndef SUBMITPROXY_SENDERMAP_H
#define SUBMITPROXY_SENDERMAP_H

#include <stdbool.h>
#include <stdio.h>

struct config_errors;
struct sendermap;

/* Loads path; returns NULL after appending each problem (file, line,
 * message) to *errors, as config_read() does for the configuration. */
struct sendermap *sendermap_read(const char *path,
				 struct config_errors *errors);

/* sendermap_read(), its problems printed to err (if not NULL) as
 * "PATH:LINE: message". */
struct sendermap *sendermap_load(const char *path, FILE *err);

/* Parses the text of a file (for tests and fuzzing); name is used in
 * error messages, printed to err (if not NULL). */
struct sendermap *sendermap_parse(const char *text, size_t len,
				  const char *name, FILE *err);

bool sendermap_allows(const struct sendermap *map, const char *login,
		      const char *address);

/* A loaded map is shared by every event loop, each holding a reference
 * (the loader's is the first): sendermap_ref() takes one more and returns
 * map; sendermap_free() drops one, and the last frees.  Both may run on
 * any thread; sendermap_free(NULL) is a no-op. */
struct sendermap *sendermap_ref(struct sendermap *map);
void sendermap_free(struct sendermap *map);

#endif
