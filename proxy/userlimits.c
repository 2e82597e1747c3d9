/* userlimits.c - see userlimits.h */
#include "proxy/userlimits.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "config/config.h"

/* Limits of the file format (a line, a login) and of the file itself,
 * as for the sender map (proxy/sendermap.c). */
#define USERLIMITS_LINE_MAX  1024
#define USERLIMITS_LOGIN_MAX 256
#define USERLIMITS_FILE_MAX  ((size_t)64 * 1024 * 1024)
/* How much of a field an error message quotes. */
#define USERLIMITS_QUOTE_MAX 64

enum userlimits_key {
	USERLIMITS_MESSAGES_PER_HOUR,
	USERLIMITS_RECIPIENTS_PER_HOUR,
	USERLIMITS_RECIPIENTS_PER_DAY,
	USERLIMITS_KEY_COUNT
};

/* The keys of a line and where each goes in struct user_send_limits. */
static const struct userlimits_key_info {
	const char *name;
	size_t offset;
} userlimits_keys[] = {
    [USERLIMITS_MESSAGES_PER_HOUR] = {"messages_per_hour",
				      offsetof(struct user_send_limits,
					       messages_per_hour)},
    [USERLIMITS_RECIPIENTS_PER_HOUR] = {"recipients_per_hour",
					offsetof(struct user_send_limits,
						 recipients_per_hour)},
    [USERLIMITS_RECIPIENTS_PER_DAY] = {"recipients_per_day",
				       offsetof(struct user_send_limits,
						recipients_per_day)},
};
static_assert(sizeof(userlimits_keys) / sizeof(userlimits_keys[0]) ==
		  USERLIMITS_KEY_COUNT,
	      "a name for every key");
static_assert(USERLIMITS_KEY_COUNT <= 8 * sizeof(unsigned),
	      "the keys of a line fit a bit set");

/* One line of the file: the keys it gives (a bit each in set). */
struct userlimits_entry {
	char *login; /* lower-cased, NUL-terminated; NULL for "*" */
	size_t login_len;
	int line;
	unsigned set;
	uint32_t value[USERLIMITS_KEY_COUNT];
};

struct userlimits {
	/* Sorted by login (bytes, lower-cased), for a binary search at
	 * every MAIL; no login twice. */
	struct userlimits_entry *entries;
	size_t count;
	size_t alloc;
	struct userlimits_entry star; /* line 0: no "*" line */
	atomic_uint refs;
};

struct userlimits *userlimits_ref(struct userlimits *map)
{
	atomic_fetch_add_explicit(&map->refs, 1, memory_order_relaxed);
	return map;
}

void userlimits_free(struct userlimits *map)
{
	if (map == NULL ||
	    atomic_fetch_sub_explicit(&map->refs, 1, memory_order_acq_rel) > 1)
		return;
	for (size_t i = 0; i < map->count; i++)
		free(map->entries[i].login);
	free(map->entries);
	free(map);
}

static bool userlimits_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static unsigned char userlimits_fold(unsigned char c)
{
	/* ASCII only, whatever the locale: the per-user counters key on
	 * the same folding (proxy/policy.h). */
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Compares a stored (lower-cased) login with login, folding login. */
static int userlimits_login_cmp(const char *stored, size_t stored_len,
				const char *login, size_t login_len)
{
	size_t n = stored_len < login_len ? stored_len : login_len;

	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)stored[i];
		unsigned char b = userlimits_fold((unsigned char)login[i]);

		if (a != b)
			return a < b ? -1 : 1;
	}
	return stored_len < login_len ? -1 : stored_len > login_len;
}

/* A decimal number from 0 to 4294967295, digits only. */
static bool userlimits_parse_number(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* Fills entry from the key=value fields of line[start..len); returns 0, or
 * -1 with the reason in error.  Every byte is printable ASCII here. */
static int userlimits_parse_keys(struct userlimits_entry *entry,
				 const char *line, size_t start, size_t len,
				 char *error, size_t error_size)
{
	size_t i = start;

	while (i < len) {
		const char *field = line + i, *eq;
		size_t field_len, name_len, k;

		while (i < len && !userlimits_is_blank(line[i]))
			i++;
		field_len = (size_t)(line + i - field);
		while (i < len && userlimits_is_blank(line[i]))
			i++;
		eq = memchr(field, '=', field_len);
		if (eq == NULL) {
			snprintf(error, error_size,
				 "expected key=value, found \"%.*s\"",
				 field_len > USERLIMITS_QUOTE_MAX
				     ? USERLIMITS_QUOTE_MAX
				     : (int)field_len,
				 field);
			return -1;
		}
		name_len = (size_t)(eq - field);
		for (k = 0; k < USERLIMITS_KEY_COUNT; k++)
			if (strlen(userlimits_keys[k].name) == name_len &&
			    memcmp(userlimits_keys[k].name, field, name_len) ==
				0)
				break;
		if (k == USERLIMITS_KEY_COUNT) {
			snprintf(error, error_size,
				 "unknown key \"%.*s\" (messages_per_hour, "
				 "recipients_per_hour, recipients_per_day)",
				 name_len > USERLIMITS_QUOTE_MAX
				     ? USERLIMITS_QUOTE_MAX
				     : (int)name_len,
				 field);
			return -1;
		}
		if (entry->set & (1u << k)) {
			snprintf(error, error_size,
				 "%s given twice on the line",
				 userlimits_keys[k].name);
			return -1;
		}
		if (!userlimits_parse_number(eq + 1, field_len - name_len - 1,
					     &entry->value[k])) {
			size_t value_len = field_len - name_len - 1;

			snprintf(error, error_size,
				 "bad number \"%.*s\" for %s (0 to 4294967295)",
				 value_len > USERLIMITS_QUOTE_MAX
				     ? USERLIMITS_QUOTE_MAX
				     : (int)value_len,
				 eq + 1, userlimits_keys[k].name);
			return -1;
		}
		entry->set |= 1u << k;
	}
	return 0;
}

/* Parses one line (without its LF) into *entry; returns 1 (a login's
 * line, or "*" with entry->login NULL), 0 (blank or comment), or -1 with
 * the reason in error. */
static int userlimits_parse_line(struct userlimits_entry *entry,
				 const char *line, size_t len, char *error,
				 size_t error_size)
{
	size_t i = 0, login_start, login_len;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > USERLIMITS_LINE_MAX) {
		snprintf(error, error_size, "line longer than %d bytes",
			 USERLIMITS_LINE_MAX);
		return -1;
	}
	while (i < len && userlimits_is_blank(line[i]))
		i++;
	if (i == len || line[i] == '#')
		return 0;
	login_start = i;
	while (i < len && !userlimits_is_blank(line[i]))
		i++;
	login_len = i - login_start;
	/* Nothing but printable ASCII and blanks, so that a message may
	 * quote any field: a login with a control or 8-bit byte is no
	 * login a client could give in a form we fold (ASCII). */
	for (size_t k = login_start; k < len; k++) {
		unsigned char c = (unsigned char)line[k];
		const char *where = k < i ? "login" : "line";

		if (userlimits_is_blank((char)c))
			continue;
		if (c < 0x20 || c == 0x7f) {
			snprintf(error, error_size, "control byte 0x%02x in %s",
				 c, where);
			return -1;
		}
		if (c >= 0x80) {
			snprintf(error, error_size, "8-bit byte 0x%02x in %s",
				 c, where);
			return -1;
		}
	}
	if (login_len > USERLIMITS_LOGIN_MAX) {
		snprintf(error, error_size, "login longer than %d bytes",
			 USERLIMITS_LOGIN_MAX);
		return -1;
	}
	if (memchr(line + login_start, '=', login_len) != NULL) {
		snprintf(error, error_size, "expected a login before \"%.*s\"",
			 login_len > USERLIMITS_QUOTE_MAX ? USERLIMITS_QUOTE_MAX
							  : (int)login_len,
			 line + login_start);
		return -1;
	}
	while (i < len && userlimits_is_blank(line[i]))
		i++;
	if (i == len) {
		snprintf(error, error_size, "no key=value after login \"%.*s\"",
			 login_len > USERLIMITS_QUOTE_MAX ? USERLIMITS_QUOTE_MAX
							  : (int)login_len,
			 line + login_start);
		return -1;
	}
	memset(entry, 0, sizeof(*entry));
	if (userlimits_parse_keys(entry, line, i, len, error, error_size) < 0)
		return -1;
	if (login_len == 1 && line[login_start] == '*')
		return 1;
	entry->login = xmemdup(line + login_start, login_len);
	entry->login_len = login_len;
	for (size_t k = 0; k < login_len; k++)
		entry->login[k] =
		    (char)userlimits_fold((unsigned char)entry->login[k]);
	return 1;
}

static int userlimits_entry_cmp(const void *a, const void *b)
{
	const struct userlimits_entry *ea = a, *eb = b;
	int r = userlimits_login_cmp(ea->login, ea->login_len, eb->login,
				     eb->login_len);

	if (r != 0)
		return r;
	return ea->line < eb->line ? -1 : ea->line > eb->line;
}

static int userlimits_error_cmp(const void *a, const void *b)
{
	const struct config_error *ea = a, *eb = b;

	return ea->line < eb->line ? -1 : ea->line > eb->line;
}

/* Reports a login given twice, on each later line; the problems found
 * go to *found.  Entries are sorted by login, then line. */
static void userlimits_find_duplicates(const struct userlimits *map,
				       const char *name,
				       struct config_errors *found)
{
	size_t first = 0;

	for (size_t i = 1; i < map->count; i++) {
		const struct userlimits_entry *e = &map->entries[i];
		const struct userlimits_entry *f = &map->entries[first];

		if (userlimits_login_cmp(f->login, f->login_len, e->login,
					 e->login_len) != 0) {
			first = i;
			continue;
		}
		config_errors_add(found, name, e->line,
				  "login \"%.*s\" given twice (first on line "
				  "%d)",
				  e->login_len > USERLIMITS_QUOTE_MAX
				      ? USERLIMITS_QUOTE_MAX
				      : (int)e->login_len,
				  e->login, f->line);
	}
}

static struct userlimits *userlimits_parse_records(const char *text, size_t len,
						   const char *name,
						   struct config_errors *errors)
{
	struct userlimits *map = xcalloc(1, sizeof(*map));
	/* Gathered apart and sorted, so that a duplicate (found once the
	 * lines are sorted) is reported in line order with the rest; one
	 * problem a line at most, so the lines are unique. */
	struct config_errors found = {NULL, 0};
	size_t pos = 0;
	int lineno = 0;

	atomic_init(&map->refs, 1);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		struct userlimits_entry entry;
		char error[160];
		int r;

		/* USERLIMITS_FILE_MAX bounds the lines: lineno fits. */
		lineno++;
		r = userlimits_parse_line(&entry, text + pos, end - pos, error,
					  sizeof(error));
		pos = end + 1;
		if (r < 0) {
			config_errors_add(&found, name, lineno, "%s", error);
			continue;
		}
		if (r == 0)
			continue;
		entry.line = lineno;
		if (entry.login == NULL) {
			if (map->star.line != 0)
				config_errors_add(&found, name, lineno,
						  "login \"*\" given twice "
						  "(first on line %d)",
						  map->star.line);
			else
				map->star = entry;
			continue;
		}
		if (map->count == map->alloc) {
			map->alloc = map->alloc ? map->alloc * 2 : 16;
			map->entries = xreallocarray(map->entries, map->alloc,
						     sizeof(map->entries[0]));
		}
		map->entries[map->count++] = entry;
	}
	if (map->count > 1)
		qsort(map->entries, map->count, sizeof(map->entries[0]),
		      userlimits_entry_cmp);
	userlimits_find_duplicates(map, name, &found);
	if (found.count > 1)
		qsort(found.items, found.count, sizeof(found.items[0]),
		      userlimits_error_cmp);
	for (size_t i = 0; i < found.count; i++)
		config_errors_add(errors, found.items[i].file,
				  found.items[i].line, "%s",
				  found.items[i].message);
	if (found.count > 0) {
		config_errors_finish(&found);
		userlimits_free(map);
		return NULL;
	}
	return map;
}

struct userlimits *userlimits_read(const char *path,
				   struct config_errors *errors)
{
	struct userlimits *map;
	char *text = NULL;
	long len = config_file_read(path, USERLIMITS_FILE_MAX, errors, &text);

	if (len < 0)
		return NULL;
	map = userlimits_parse_records(text, (size_t)len, path, errors);
	free(text);
	return map;
}

static struct userlimits *userlimits_print_errors(struct userlimits *map,
						  struct config_errors *errors,
						  FILE *err)
{
	if (err != NULL)
		config_errors_print(errors, err);
	config_errors_finish(errors);
	return map;
}

struct userlimits *userlimits_load(const char *path, FILE *err)
{
	struct config_errors errors = {NULL, 0};

	return userlimits_print_errors(userlimits_read(path, &errors), &errors,
				       err);
}

struct userlimits *userlimits_parse(const char *text, size_t len,
				    const char *name, FILE *err)
{
	struct config_errors errors = {NULL, 0};

	return userlimits_print_errors(
	    userlimits_parse_records(text, len, name, &errors), &errors, err);
}

/* The line of login, or NULL. */
static const struct userlimits_entry *
userlimits_find(const struct userlimits *map, const char *login,
		size_t login_len)
{
	size_t lo = 0, hi = map->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct userlimits_entry *e = &map->entries[mid];
		int r = userlimits_login_cmp(e->login, e->login_len, login,
					     login_len);

		if (r == 0)
			return e;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Overrides the keys entry gives. */
static void userlimits_apply(const struct userlimits_entry *entry,
			     struct user_send_limits *out)
{
	for (size_t k = 0; k < USERLIMITS_KEY_COUNT; k++) {
		if (!(entry->set & (1u << k)))
			continue;
		memcpy((char *)out + userlimits_keys[k].offset,
		       &entry->value[k], sizeof(entry->value[k]));
	}
}

void userlimits_get(const struct userlimits *map, const struct config *cfg,
		    const char *login, size_t login_len,
		    struct user_send_limits *out)
{
	const struct userlimits_entry *entry;

	out->messages_per_hour = cfg->limits.user_messages_per_hour;
	out->recipients_per_hour = cfg->limits.user_recipients_per_hour;
	out->recipients_per_day = cfg->limits.user_recipients_per_day;
	if (map == NULL)
		return;
	userlimits_apply(&map->star, out);
	if (login == NULL || login_len > USERLIMITS_LOGIN_MAX)
		return;
	entry = userlimits_find(map, login, login_len);
	if (entry != NULL)
		userlimits_apply(entry, out);
}
