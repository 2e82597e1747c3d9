/* sendermap.c - see sendermap.h */
#include "proxy/sendermap.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "config/config.h"

/* Limits of the file format (a line, a login) and of the file itself. */
#define SENDERMAP_LINE_MAX  1024
#define SENDERMAP_LOGIN_MAX 256
#define SENDERMAP_FILE_MAX  ((size_t)64 * 1024 * 1024)

enum sendermap_kind {
	SENDERMAP_ADDRESS, /* local@domain */
	SENDERMAP_DOMAIN,  /* @domain: any address there */
	SENDERMAP_ANY,	   /* * */
};

struct sendermap_rule {
	char *login;
	enum sendermap_kind kind;
	char *local;  /* SENDERMAP_ADDRESS */
	char *domain; /* SENDERMAP_ADDRESS, SENDERMAP_DOMAIN */
};

struct sendermap {
	struct sendermap_rule *rules; /* sorted by login, case-insensitive */
	size_t count;
	size_t alloc;
	atomic_uint refs;
};

struct sendermap *sendermap_ref(struct sendermap *map)
{
	atomic_fetch_add_explicit(&map->refs, 1, memory_order_relaxed);
	return map;
}

void sendermap_free(struct sendermap *map)
{
	if (map == NULL || atomic_fetch_sub_explicit(&map->refs, 1,
						     memory_order_acq_rel) > 1)
		return;
	for (size_t i = 0; i < map->count; i++) {
		free(map->rules[i].login);
		free(map->rules[i].local);
		free(map->rules[i].domain);
	}
	free(map->rules);
	free(map);
}

static bool sendermap_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Checks an address field and fills the rule's kind, local and domain;
 * returns NULL or what is wrong with it. */
static const char *sendermap_rule_address(struct sendermap_rule *rule,
					  const char *addr, size_t len)
{
	const char *at = memchr(addr, '@', len);
	size_t local_len, domain_len;

	if (len == 1 && addr[0] == '*') {
		rule->kind = SENDERMAP_ANY;
		return NULL;
	}
	if (len == 0)
		return "empty";
	if (memchr(addr, '<', len) != NULL || memchr(addr, '>', len) != NULL)
		return "an address is written without < >";
	if (at == NULL)
		return "an address needs an '@' (or is \"*\")";
	local_len = (size_t)(at - addr);
	domain_len = len - local_len - 1;
	if (domain_len == 0)
		return "empty domain after '@'";
	if (memchr(at + 1, '@', domain_len) != NULL)
		return "more than one '@'";
	rule->domain = xmemdup(at + 1, domain_len);
	if (local_len == 0) {
		rule->kind = SENDERMAP_DOMAIN;
		return NULL;
	}
	rule->kind = SENDERMAP_ADDRESS;
	rule->local = xmemdup(addr, local_len);
	return NULL;
}

/* Parses one line (without its LF), adding its rule to map; returns 0, or
 * -1 with the reason in error. */
static int sendermap_parse_line(struct sendermap *map, const char *line,
				size_t len, char *error, size_t error_size)
{
	const char *field[3];
	size_t field_len[3], nfields = 0, i = 0;
	struct sendermap_rule rule;
	const char *why;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > SENDERMAP_LINE_MAX) {
		snprintf(error, error_size, "line longer than %d bytes",
			 SENDERMAP_LINE_MAX);
		return -1;
	}
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)line[k];

		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			snprintf(error, error_size,
				 "control character 0x%02x in line", c);
			return -1;
		}
	}
	while (i < len && sendermap_is_blank(line[i]))
		i++;
	if (i == len || line[i] == '#')
		return 0;
	while (i < len) {
		size_t start = i;

		while (i < len && !sendermap_is_blank(line[i]))
			i++;
		if (nfields < 3) {
			field[nfields] = line + start;
			field_len[nfields] = i - start;
		}
		nfields++;
		while (i < len && sendermap_is_blank(line[i]))
			i++;
	}
	if (nfields != 2) {
		snprintf(error, error_size,
			 "expected 2 fields (login address), found %zu",
			 nfields);
		return -1;
	}
	if (field_len[0] > SENDERMAP_LOGIN_MAX) {
		snprintf(error, error_size, "login longer than %d bytes",
			 SENDERMAP_LOGIN_MAX);
		return -1;
	}

	memset(&rule, 0, sizeof(rule));
	why = sendermap_rule_address(&rule, field[1], field_len[1]);
	if (why != NULL) {
		/* The field has no control characters (checked above). */
		snprintf(error, error_size, "bad address \"%.*s\": %s",
			 field_len[1] > 64 ? 64 : (int)field_len[1], field[1],
			 why);
		free(rule.local);
		free(rule.domain);
		return -1;
	}
	rule.login = xmemdup(field[0], field_len[0]);
	if (map->count == map->alloc) {
		map->alloc = map->alloc ? map->alloc * 2 : 16;
		map->rules =
		    xrealloc(map->rules, map->alloc * sizeof(map->rules[0]));
	}
	map->rules[map->count++] = rule;
	return 0;
}

static int sendermap_rule_cmp(const void *a, const void *b)
{
	const struct sendermap_rule *ra = a, *rb = b;

	return strcasecmp(ra->login, rb->login);
}

static struct sendermap *sendermap_parse_records(const char *text,
						 size_t len, const char *name,
						 struct config_errors *errors)
{
	struct sendermap *map = xcalloc(1, sizeof(*map));
	size_t pos = 0;
	unsigned long lineno = 0;
	bool failed = false;

	atomic_init(&map->refs, 1);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		char error[160];

		lineno++;
		if (sendermap_parse_line(map, text + pos, end - pos, error,
					 sizeof(error)) < 0) {
			failed = true;
			config_errors_add(errors, name, (int)lineno, "%s",
					  error);
		}
		pos = end + 1;
	}
	if (failed) {
		sendermap_free(map);
		return NULL;
	}
	if (map->count > 1)
		qsort(map->rules, map->count, sizeof(map->rules[0]),
		      sendermap_rule_cmp);
	return map;
}

struct sendermap *sendermap_read(const char *path,
				 struct config_errors *errors)
{
	struct sendermap *map;
	char *text = NULL;
	long len = config_file_read(path, SENDERMAP_FILE_MAX, errors, &text);

	if (len < 0)
		return NULL;
	map = sendermap_parse_records(text, (size_t)len, path, errors);
	free(text);
	return map;
}

/* The records, printed as they always were. */
static struct sendermap *sendermap_print_errors(struct sendermap *map,
						struct config_errors *errors,
						FILE *err)
{
	if (err != NULL)
		config_errors_print(errors, err);
	config_errors_finish(errors);
	return map;
}

struct sendermap *sendermap_load(const char *path, FILE *err)
{
	struct config_errors errors = {NULL, 0};

	return sendermap_print_errors(sendermap_read(path, &errors), &errors,
				      err);
}

struct sendermap *sendermap_parse(const char *text, size_t len,
				  const char *name, FILE *err)
{
	struct config_errors errors = {NULL, 0};

	return sendermap_print_errors(
	    sendermap_parse_records(text, len, name, &errors), &errors, err);
}

/* The first rule of login, or map->count. */
static size_t sendermap_find_login(const struct sendermap *map,
				   const char *login)
{
	size_t lo = 0, hi = map->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcasecmp(map->rules[mid].login, login) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool sendermap_allows(const struct sendermap *map, const char *login,
		      const char *address)
{
	const char *domain = NULL;
	size_t addr_len, local_len;

	if (address == NULL)
		return false;
	addr_len = strlen(address);
	/* Tolerate the path with its brackets. */
	if (addr_len >= 2 && address[0] == '<' &&
	    address[addr_len - 1] == '>') {
		address++;
		addr_len -= 2;
	}
	/* The null sender is for bounces and always allowed (RFC 5321
	 * §4.5.5); a map never stands in its way. */
	if (addr_len == 0)
		return true;
	if (map == NULL || login == NULL)
		return false;
	/* The domain follows the last '@' (a quoted local part may hold
	 * one); without an '@' only "*" matches. */
	for (size_t i = addr_len; i > 0; i--) {
		if (address[i - 1] == '@') {
			domain = address + i;
			break;
		}
	}
	local_len = domain != NULL ? (size_t)(domain - 1 - address) : addr_len;

	for (size_t i = sendermap_find_login(map, login);
	     i < map->count && strcasecmp(map->rules[i].login, login) == 0;
	     i++) {
		const struct sendermap_rule *rule = &map->rules[i];
		size_t domain_len;

		if (rule->kind == SENDERMAP_ANY)
			return true;
		if (domain == NULL)
			continue;
		domain_len = addr_len - local_len - 1;
		if (strlen(rule->domain) != domain_len ||
		    strncasecmp(rule->domain, domain, domain_len) != 0)
			continue;
		if (rule->kind == SENDERMAP_DOMAIN)
			return true;
		if (strlen(rule->local) == local_len &&
		    memcmp(rule->local, address, local_len) == 0)
			return true;
	}
	return false;
}
