/*
 * userlimits.h - [limits] user_limits: per-login overrides of the send
 * limits ([limits] user_messages_per_hour, user_recipients_per_hour,
 * user_recipients_per_day).  File format, one login a line:
 *
 *     # the newsletter robot sends more; alice less; everyone else
 *     # gets the defaults of the "*" line, then of [limits].
 *     newsletter  messages_per_hour=2000 recipients_per_hour=20000 recipients_per_day=100000
 *     alice       recipients_per_day=200
 *     *           messages_per_hour=100
 *
 * Keys: messages_per_hour, recipients_per_hour, recipients_per_day, each
 * a number (0: no limit).  A key a line does not give comes from the "*"
 * line, then from [limits].  Logins compare case-insensitively (ASCII),
 * as every per-user counter keys on the lower-cased login
 * (proxy/policy.h).  A login given twice, an unknown key, a bad number or
 * a login with a control byte is an error naming its line; a file with an
 * error is not used (start-up fails, a reload keeps the old one).
 *
 * Loaded once (start-up, SIGHUP) off the event loops' hot path; lookups
 * are pure and read-only, so any thread may make them.
 */
#ifndef SUBMITPROXY_USERLIMITS_H
#define SUBMITPROXY_USERLIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct config_errors;
struct userlimits;

/* The send limits that apply to one login; 0: no limit. */
struct user_send_limits {
	uint32_t messages_per_hour;
	uint32_t recipients_per_hour;
	uint32_t recipients_per_day;
};

/* Loads path; returns NULL after appending each problem (file, line,
 * message) to *errors, as config_read() does. */
struct userlimits *userlimits_read(const char *path,
				   struct config_errors *errors);

/* userlimits_read(), its problems printed to err (if not NULL) as
 * "PATH:LINE: message". */
struct userlimits *userlimits_load(const char *path, FILE *err);

/* Parses the text of a file (tests, fuzzing); name is used in the
 * messages, printed to err (if not NULL). */
struct userlimits *userlimits_parse(const char *text, size_t len,
				    const char *name, FILE *err);

/* The limits of login (login_len bytes): its line, else the "*" line,
 * key by key, else cfg's [limits].  map may be NULL (no file). */
void userlimits_get(const struct userlimits *map, const struct config *cfg,
		    const char *login, size_t login_len,
		    struct user_send_limits *out);

/* Shared by every event loop as the sender map is: ref takes one more
 * reference and returns map; free drops one, the last frees; any thread;
 * userlimits_free(NULL) is a no-op. */
struct userlimits *userlimits_ref(struct userlimits *map);
void userlimits_free(struct userlimits *map);

#endif
