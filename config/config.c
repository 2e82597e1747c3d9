/*
 * config.c - loads /etc/submitproxy/submitproxy.conf into a struct config.
 *
 * The file is read into memory once and split into lines by ini_parse()
 * (config/ini.h), the one INI reader; the callbacks here give sections and
 * keys their meaning through the tables below.  Every problem becomes a
 * record (file, line, message) and reading goes on, so that one run shows
 * them all; config_load() prints the records as "FILE:LINE: message", a
 * reload logs each one as an event of its own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gethostname, getaddrinfo under -std=c11 */
#endif
#include "config/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/ini.h"
#include "config/storeurl.h"
#include "config/values.h"
#include "common/util.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Largest file read (a config of every key is a few kilobytes). */
#define CONFIG_FILE_MAX (1u << 20)
/* Most keys in one section. */
#define CONFIG_SECTION_KEYS_MAX 24
/* Values are quoted in error messages up to this many bytes. */
#define CONFIG_QUOTE_MAX 80
/* RFC 1035 §2.3.4: 253 characters in text form, 63 per label. */
#define CONFIG_HOSTNAME_MAX 253
#define CONFIG_LABEL_MAX    63

#define CONFIG_WORKERS_MAX	  64
#define CONFIG_HELPER_WORKERS_MAX 64
/* RFC 5321 §4.5.3.1.4: a command line is at least 512 octets. */
#define CONFIG_LINE_LENGTH_MIN 512
#define CONFIG_LINE_LENGTH_MAX 65536
#define CONFIG_CONNECTIONS_MAX 1000000

#define CONFIG_DEFAULT_USER	   "submitproxy"
#define CONFIG_DEFAULT_PAM_SERVICE "submitproxy"
#define CONFIG_DEFAULT_MIN_VERSION "TLSv1.2"
#define CONFIG_DEFAULT_BACKEND	   "127.0.0.1:25"

enum config_section_kind {
	SECTION_SERVER,
	SECTION_LISTENER,
	SECTION_TLS,
	SECTION_SNI,
	SECTION_AUTH,
	SECTION_BACKEND,
	SECTION_LIMITS,
	SECTION_RELAY,
	SECTION_POLICY,
	SECTION_METRICS,
	SECTION_COUNT
};

struct config_parser;
struct config_key;

/* Parses VALUE into FIELD; reports its own errors.  Returns 0 or -1. */
typedef int config_setter(struct config_parser *p, const struct config_key *key,
			  void *field, const char *value);

struct config_key {
	const char *name;
	config_setter *set;
	size_t offset; /* of the field in the section's struct */
	uint64_t min, max;
};

struct config_section_type {
	const char *name;
	enum config_section_kind kind;
	bool named; /* "[listener NAME]", "[sni HOSTNAME]" */
	const struct config_key *keys;
	size_t nkeys;
};

/* Where each key of one section instance was set; 0: not set. */
struct config_seen {
	int header_line;
	int key_lines[CONFIG_SECTION_KEYS_MAX];
	/* Keys whose value was refused: whole-file checks that depend on
	 * them are skipped, as their error is already reported. */
	bool key_refused[CONFIG_SECTION_KEYS_MAX];
};

struct config_parser {
	const char *path;
	int lineno; /* of the line being read; at the end, the last line */
	struct config_errors *errors;
	struct config *cfg;

	/* The section being read: NULL before the first header, and after
	 * a header that was wrong, whose keys are skipped (skip_keys). */
	const struct config_section_type *section;
	size_t section_index; /* into cfg->listeners or cfg->snis */
	bool skip_keys;

	struct config_seen singles[SECTION_COUNT];
	struct config_seen *listeners_seen; /* parallel to cfg->listeners */
	struct config_seen *snis_seen;	    /* parallel to cfg->snis */
};

static void config_replace_string(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

/* Records one problem; LINE 0: about the file as a whole. */
__attribute__((format(printf, 4, 0))) static void
config_errors_add_v(struct config_errors *errors, const char *path, int line,
		    const char *fmt, va_list ap)
{
	struct config_error *e;
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		fatal("config: bad error format \"%s\"", fmt);
	errors->items = xreallocarray(errors->items, errors->count + 1,
				      sizeof(*errors->items));
	e = &errors->items[errors->count++];
	e->file = xstrdup(path);
	e->line = line;
	e->message = xmalloc((size_t)n + 1);
	vsnprintf(e->message, (size_t)n + 1, fmt, ap);
}

void config_errors_add(struct config_errors *errors, const char *path,
		       int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_errors_add_v(errors, path, line, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void
config_error(struct config_parser *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_errors_add_v(p->errors, p->path, line, fmt, ap);
	va_end(ap);
}

/* Length of S to print in messages: a config file may hold anything. */
static int config_quote_len(const char *s)
{
	size_t len = strlen(s);

	return (int)(len > CONFIG_QUOTE_MAX ? CONFIG_QUOTE_MAX : len);
}

static struct config_seen *config_current_seen(struct config_parser *p)
{
	switch (p->section->kind) {
	case SECTION_LISTENER:
		return &p->listeners_seen[p->section_index];
	case SECTION_SNI:
		return &p->snis_seen[p->section_index];
	default:
		return &p->singles[p->section->kind];
	}
}

static void *config_current_base(struct config_parser *p)
{
	switch (p->section->kind) {
	case SECTION_LISTENER:
		return &p->cfg->listeners[p->section_index];
	case SECTION_SNI:
		return &p->cfg->snis[p->section_index];
	default:
		return p->cfg;
	}
}

/* "[server]", "[listener submission]" for messages. */
static void config_section_label(struct config_parser *p, char *buf,
				 size_t size)
{
	const char *arg = NULL;

	if (p->section->kind == SECTION_LISTENER)
		arg = p->cfg->listeners[p->section_index].name;
	else if (p->section->kind == SECTION_SNI)
		arg = p->cfg->snis[p->section_index].hostname;
	if (arg != NULL)
		snprintf(buf, size, "[%s %s]", p->section->name, arg);
	else
		snprintf(buf, size, "[%s]", p->section->name);
}

/* ---- value setters ---- */

static int set_string(struct config_parser *p, const struct config_key *key,
		      void *field, const char *value)
{
	(void)p;
	(void)key;
	config_replace_string(field, value);
	return 0;
}

/* A user or PAM service name: no blanks, no control characters, and no
 * '/' (a PAM service is a file name in /etc/pam.d). */
static int set_word(struct config_parser *p, const struct config_key *key,
		    void *field, const char *value)
{
	for (const char *c = value; *c != '\0'; c++) {
		if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c) ||
		    *c == '/') {
			config_error(p, p->lineno, "invalid %s \"%.*s\"",
				     key->name, config_quote_len(value), value);
			return -1;
		}
	}
	config_replace_string(field, value);
	return 0;
}

/* RFC 1035 §2.3.1 preferred name syntax, with digits allowed first (RFC
 * 1123 §2.1): labels of letters, digits and inner hyphens. */
static bool config_is_hostname(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > CONFIG_HOSTNAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > CONFIG_LABEL_MAX)
			return false;
	}
	return label != 0 && s[len - 1] != '-';
}

/* RFC 5321 §4.1.3: an address literal, "[192.0.2.1]" or "[IPv6:...]". */
static bool config_is_address_literal(const char *s)
{
	struct config_addr addr;
	char buf[80];
	size_t len = strlen(s);

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	if (strncasecmp(s, "[IPv6:", 6) == 0)
		snprintf(buf, sizeof(buf), "[%.*s]:25", (int)(len - 7), s + 6);
	else
		snprintf(buf, sizeof(buf), "%.*s:25", (int)(len - 2), s + 1);
	if (value_parse_sockaddr(buf, &addr) < 0)
		return false;
	return (addr.ss.ss_family == AF_INET6) ==
	       (strncasecmp(s, "[IPv6:", 6) == 0);
}

static int set_hostname(struct config_parser *p, const struct config_key *key,
			void *field, const char *value)
{
	if (!config_is_hostname(value)) {
		config_error(p, p->lineno,
			     "invalid %s \"%.*s\" (expected a domain name)",
			     key->name, config_quote_len(value), value);
		return -1;
	}
	config_replace_string(field, value);
	return 0;
}

static int set_helo_name(struct config_parser *p, const struct config_key *key,
			 void *field, const char *value)
{
	if (!config_is_hostname(value) && !config_is_address_literal(value)) {
		config_error(p, p->lineno,
			     "invalid %s \"%.*s\" (expected a domain name or "
			     "an address literal such as [192.0.2.1])",
			     key->name, config_quote_len(value), value);
		return -1;
	}
	config_replace_string(field, value);
	return 0;
}

static int set_bool(struct config_parser *p, const struct config_key *key,
		    void *field, const char *value)
{
	if (value_parse_bool(value, field) < 0) {
		config_error(p, p->lineno,
			     "invalid boolean \"%.*s\" for %s (expected yes or "
			     "no)",
			     config_quote_len(value), value, key->name);
		return -1;
	}
	return 0;
}

static int config_check_uint32(struct config_parser *p,
			       const struct config_key *key, const char *value,
			       uint32_t *u_r)
{
	int ret = value_parse_uint32(value, (uint32_t)key->min,
				     (uint32_t)key->max, u_r);

	if (ret == -ERANGE) {
		config_error(p, p->lineno,
			     "%s \"%.*s\" is out of range (%" PRIu64
			     "..%" PRIu64 ")",
			     key->name, config_quote_len(value), value,
			     key->min, key->max);
		return -1;
	}
	if (ret < 0) {
		config_error(p, p->lineno, "invalid number \"%.*s\" for %s",
			     config_quote_len(value), value, key->name);
		return -1;
	}
	return 0;
}

static int set_uint32(struct config_parser *p, const struct config_key *key,
		      void *field, const char *value)
{
	return config_check_uint32(p, key, value, field);
}

static int set_size_t(struct config_parser *p, const struct config_key *key,
		      void *field, const char *value)
{
	uint32_t u;

	if (config_check_uint32(p, key, value, &u) < 0)
		return -1;
	*(size_t *)field = u;
	return 0;
}

static int set_workers(struct config_parser *p, const struct config_key *key,
		       void *field, const char *value)
{
	long ncpu;

	if (strcasecmp(value, "auto") != 0) {
		int ret = value_parse_uint32(value, (uint32_t)key->min,
					     (uint32_t)key->max, field);

		if (ret < 0) {
			config_error(p, p->lineno,
				     "invalid %s \"%.*s\" (expected a number "
				     "from %" PRIu64 " to %" PRIu64
				     ", or auto)",
				     key->name, config_quote_len(value), value,
				     key->min, key->max);
			return -1;
		}
		return 0;
	}
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > (long)key->max)
		ncpu = (long)key->max;
	*(uint32_t *)field = (uint32_t)ncpu;
	return 0;
}

static int set_duration(struct config_parser *p, const struct config_key *key,
			void *field, const char *value)
{
	uint64_t ms;
	int ret = value_parse_duration_ms(value, &ms);

	if (ret == -ERANGE) {
		config_error(p, p->lineno,
			     "duration \"%.*s\" for %s is too large",
			     config_quote_len(value), value, key->name);
		return -1;
	}
	if (ret < 0) {
		config_error(p, p->lineno,
			     "invalid duration \"%.*s\" for %s (expected a "
			     "number of seconds, or a number with ms, s, m, h or "
			     "d)",
			     config_quote_len(value), value, key->name);
		return -1;
	}
	if (ms < key->min) {
		config_error(p, p->lineno, "%s must be greater than 0",
			     key->name);
		return -1;
	}
	*(uint64_t *)field = ms;
	return 0;
}

static int set_size(struct config_parser *p, const struct config_key *key,
		    void *field, const char *value)
{
	uint64_t bytes;
	int ret = value_parse_size(value, &bytes);

	if (ret == -EINVAL) {
		config_error(p, p->lineno,
			     "invalid size \"%.*s\" for %s (expected a number "
			     "of bytes, or a number with K, M or G)",
			     config_quote_len(value), value, key->name);
		return -1;
	}
	if (ret < 0 || bytes < key->min || bytes > key->max) {
		config_error(p, p->lineno,
			     "%s \"%.*s\" is out of range (%" PRIu64
			     "..%" PRIu64 " bytes)",
			     key->name, config_quote_len(value), value,
			     key->min, key->max);
		return -1;
	}
	*(uint64_t *)field = bytes;
	return 0;
}

struct config_word {
	const char *word;
	int value;
};

/* Looks VALUE up in WORDS (case-insensitive); reports the choices if it is
 * not there. */
static int config_lookup_word(struct config_parser *p,
			      const struct config_key *key,
			      const struct config_word *words, size_t nwords,
			      const char *value, int *value_r)
{
	char choices[128];
	size_t off = 0;

	for (size_t i = 0; i < nwords; i++) {
		if (strcasecmp(value, words[i].word) == 0) {
			*value_r = words[i].value;
			return 0;
		}
	}
	choices[0] = '\0';
	for (size_t i = 0; i < nwords && off < sizeof(choices); i++) {
		int n = snprintf(choices + off, sizeof(choices) - off, "%s%s",
				 i == 0		   ? ""
				 : i + 1 == nwords ? " or "
						   : ", ",
				 words[i].word);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	config_error(p, p->lineno, "invalid %s \"%.*s\" (expected %s)",
		     key->name, config_quote_len(value), value, choices);
	return -1;
}

static int set_mode(struct config_parser *p, const struct config_key *key,
		    void *field, const char *value)
{
	static const struct config_word words[] = {
	    {"starttls", LISTENER_STARTTLS},
	    {"implicit-tls", LISTENER_IMPLICIT_TLS},
	    {"plain", LISTENER_PLAIN},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum listener_mode *)field = (enum listener_mode)v;
	return 0;
}

static int set_client_certs(struct config_parser *p,
			    const struct config_key *key, void *field,
			    const char *value)
{
	static const struct config_word words[] = {
	    {"off", CLIENT_CERTS_OFF},
	    {"optional", CLIENT_CERTS_OPTIONAL},
	    {"required", CLIENT_CERTS_REQUIRED},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum client_cert_mode *)field = (enum client_cert_mode)v;
	return 0;
}

static int set_cert_login(struct config_parser *p,
			  const struct config_key *key, void *field,
			  const char *value)
{
	static const struct config_word words[] = {
	    {"external", CERT_LOGIN_EXTERNAL},
	    {"implicit", CERT_LOGIN_IMPLICIT},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum cert_login_mode *)field = (enum cert_login_mode)v;
	return 0;
}

static int set_log_level(struct config_parser *p, const struct config_key *key,
			 void *field, const char *value)
{
	static const struct config_word words[] = {
	    {"error", LOG_LEVEL_ERROR},
	    {"warn", LOG_LEVEL_WARN},
	    {"info", LOG_LEVEL_INFO},
	    {"debug", LOG_LEVEL_DEBUG},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum log_level *)field = (enum log_level)v;
	return 0;
}

/* [backend] xclient, and "xclient=" on an item of its address list. */
static const struct config_word xclient_words[] = {
    {"auto", XCLIENT_AUTO},
    {"yes", XCLIENT_YES},
    {"no", XCLIENT_NO},
};

static int set_xclient(struct config_parser *p, const struct config_key *key,
		       void *field, const char *value)
{
	int v;

	if (config_lookup_word(p, key, xclient_words, ARRAY_SIZE(xclient_words),
			       value, &v) < 0)
		return -1;
	*(enum xclient_mode *)field = (enum xclient_mode)v;
	return 0;
}

static int set_bare_newline(struct config_parser *p,
			    const struct config_key *key, void *field,
			    const char *value)
{
	static const struct config_word words[] = {
	    {"normalize", BARE_NEWLINE_NORMALIZE},
	    {"reject", BARE_NEWLINE_REJECT},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum bare_newline_policy *)field = (enum bare_newline_policy)v;
	return 0;
}

/* Stored in OpenSSL's spelling, which SSL_CONF "MinProtocol" takes. */
static int set_tls_version(struct config_parser *p,
			   const struct config_key *key, void *field,
			   const char *value)
{
	static const struct config_word words[] = {
	    {"TLSv1.2", 0},
	    {"TLSv1.3", 1},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	config_replace_string(field, words[v].word);
	return 0;
}

static int set_mechanisms(struct config_parser *p, const struct config_key *key,
			  void *field, const char *value)
{
	static const struct {
		const char *name;
		unsigned bit;
	} mechs[] = {
	    {"PLAIN", AUTH_MECH_PLAIN},
	    {"LOGIN", AUTH_MECH_LOGIN},
	};
	unsigned set = 0;
	const char *s = value;
	int ret = 0;

	while (*s != '\0') {
		size_t len = strcspn(s, " \t");
		size_t i;

		for (i = 0; i < ARRAY_SIZE(mechs); i++) {
			if (strlen(mechs[i].name) == len &&
			    strncasecmp(s, mechs[i].name, len) == 0)
				break;
		}
		if (i == ARRAY_SIZE(mechs)) {
			config_error(p, p->lineno,
				     "unknown mechanism \"%.*s\" in %s "
				     "(expected PLAIN and/or LOGIN)",
				     (int)(len > CONFIG_QUOTE_MAX
					       ? CONFIG_QUOTE_MAX
					       : len),
				     s, key->name);
			ret = -1;
		} else if (set & mechs[i].bit) {
			config_error(p, p->lineno, "%s lists %s twice",
				     key->name, mechs[i].name);
			ret = -1;
		} else {
			set |= mechs[i].bit;
		}
		s += len;
		s += strspn(s, " \t");
	}
	if (ret == 0)
		*(unsigned *)field = set;
	return ret;
}

/* The next entry of a comma-separated list, without the blanks around it
 * (a copy the caller frees; "" for an empty entry), or NULL past the
 * last; *s moves past it. */
static char *config_list_next(const char **s)
{
	const char *p = *s, *end;
	size_t len;

	if (p == NULL)
		return NULL;
	end = strchr(p, ',');
	len = end != NULL ? (size_t)(end - p) : strlen(p);
	while (len > 0 && isspace((unsigned char)*p)) {
		p++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)p[len - 1]))
		len--;
	*s = end != NULL ? end + 1 : NULL;
	return xmemdup(p, len);
}

/* "0.0.0.0:587, [::]:587": the comma-separated list of a listener. */
static int set_listen_addresses(struct config_parser *p,
				const struct config_key *key, void *field,
				const char *value)
{
	struct config_listener *l = field;
	struct config_addr *addrs = NULL;
	size_t naddrs = 0;
	const char *s = value;
	char *item;
	int ret = 0;

	(void)key;

	while ((item = config_list_next(&s)) != NULL) {
		addrs = xreallocarray(addrs, naddrs + 1, sizeof(*addrs));
		if (item[0] == '\0') {
			config_error(p, p->lineno,
				     "empty entry in the address list");
			ret = -1;
		} else if (value_parse_sockaddr(item, &addrs[naddrs]) < 0) {
			config_error(p, p->lineno,
				     "invalid address \"%.*s\" (expected "
				     "IPv4:PORT or [IPv6]:PORT)",
				     config_quote_len(item), item);
			ret = -1;
		} else {
			naddrs++;
		}
		free(item);
	}
	if (ret < 0) {
		free(addrs);
		return -1;
	}
	free(l->addrs);
	l->addrs = addrs;
	l->naddrs = naddrs;
	return 0;
}

/* One backend: "127.0.0.1:25", "[::1]:10025" or "unix:/path", then
 * optionally " xclient=auto|yes|no" for that backend alone. */
static int backend_parse(struct config_parser *p, const char *item,
			 struct config_backend *b)
{
	struct sockaddr_un sa_un;
	size_t addr_len = strcspn(item, " \t");
	char *addr = xmemdup(item, addr_len);
	const char *opt = item + addr_len + strspn(item + addr_len, " \t");
	int ret = -1;

	memset(b, 0, sizeof(*b));
	if (strncmp(addr, "unix:", 5) == 0) {
		const char *path = addr + 5;

		if (path[0] != '/') {
			config_error(p, p->lineno,
				     "backend socket path \"%.*s\" is not "
				     "absolute",
				     config_quote_len(path), path);
			goto out;
		}
		if (strlen(path) >= sizeof(sa_un.sun_path)) {
			config_error(p, p->lineno,
				     "backend socket path is longer than %zu "
				     "bytes",
				     sizeof(sa_un.sun_path) - 1);
			goto out;
		}
		b->unix_path = xstrdup(path);
	} else if (value_parse_sockaddr(addr, &b->tcp) < 0) {
		config_error(p, p->lineno,
			     "invalid backend address \"%.*s\" "
			     "(expected IPv4:PORT, [IPv6]:PORT or "
			     "unix:/path)",
			     config_quote_len(addr), addr);
		goto out;
	}
	if (*opt != '\0') {
		size_t i;

		if (strncmp(opt, "xclient=", 8) != 0) {
			config_error(p, p->lineno,
				     "unknown option \"%.*s\" after backend "
				     "%s (only xclient=auto|yes|no)",
				     config_quote_len(opt), opt, addr);
			goto out;
		}
		for (i = 0; i < ARRAY_SIZE(xclient_words); i++)
			if (strcasecmp(opt + 8, xclient_words[i].word) == 0)
				break;
		if (i == ARRAY_SIZE(xclient_words)) {
			config_error(p, p->lineno,
				     "invalid xclient \"%.*s\" for backend %s "
				     "(expected auto, yes or no)",
				     config_quote_len(opt + 8), opt + 8, addr);
			goto out;
		}
		b->xclient = (enum xclient_mode)xclient_words[i].value;
		b->xclient_set = true;
	}
	b->address = addr;
	addr = NULL;
	ret = 0;
out:
	if (ret < 0) {
		free(b->unix_path);
		b->unix_path = NULL;
	}
	free(addr);
	return ret;
}

static void backends_free(struct config_backend *list, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(list[i].address);
		free(list[i].unix_path);
	}
	free(list);
}

/* "127.0.0.1:25, 127.0.0.1:2525 xclient=no, unix:/run/mta.sock": the
 * backends in order of preference (DESIGN.md: the first healthy one takes
 * a session, the others are its failover). */
/* [metrics] address: one IPv4:PORT or [IPv6]:PORT. */
static int set_metrics_address(struct config_parser *p,
			       const struct config_key *key, void *field,
			       const char *value)
{
	struct config *cfg = p->cfg;

	(void)key;
	(void)field;
	if (value_parse_sockaddr(value, &cfg->metrics.address) < 0) {
		config_error(p, p->lineno,
			     "invalid address \"%.*s\" (expected IPv4:PORT "
			     "or [IPv6]:PORT)",
			     config_quote_len(value), value);
		return -1;
	}
	cfg->metrics.enabled = true;
	return 0;
}

/* [metrics] allow: CIDR, CIDR, ... */
static int set_metrics_allow(struct config_parser *p,
			     const struct config_key *key, void *field,
			     const char *value)
{
	struct config *cfg = p->cfg;
	struct config_cidr *list = NULL;
	size_t n = 0;
	const char *s = value;
	char *item;
	int ret = 0;

	(void)key;
	(void)field;
	while ((item = config_list_next(&s)) != NULL) {
		list = xreallocarray(list, n + 1, sizeof(*list));
		if (item[0] == '\0') {
			config_error(p, p->lineno,
				     "empty entry in the allow list");
			ret = -1;
		} else if (value_parse_cidr(item, &list[n]) < 0) {
			config_error(p, p->lineno,
				     "invalid address range \"%.*s\" "
				     "(expected ADDRESS or ADDRESS/PREFIX, "
				     "with no bits set past the prefix)",
				     config_quote_len(item), item);
			ret = -1;
		} else {
			n++;
		}
		free(item);
	}
	if (ret < 0) {
		free(list);
		return -1;
	}
	free(cfg->metrics.allow);
	cfg->metrics.allow = list;
	cfg->metrics.nallow = n;
	return 0;
}

static int set_backend_addresses(struct config_parser *p,
				 const struct config_key *key, void *field,
				 const char *value)
{
	struct config *cfg = p->cfg;
	struct config_backend *list = NULL;
	size_t count = 0;
	const char *s = value;
	char *item;
	int ret = 0;

	(void)key;
	(void)field;

	while ((item = config_list_next(&s)) != NULL) {
		if (item[0] == '\0') {
			config_error(p, p->lineno,
				     "empty entry in the backend list");
			ret = -1;
		} else if (count == CONFIG_BACKENDS_MAX) {
			config_error(p, p->lineno,
				     "more than %d backends",
				     CONFIG_BACKENDS_MAX);
			ret = -1;
		} else {
			list = xreallocarray(list, count + 1, sizeof(*list));
			if (backend_parse(p, item, &list[count]) < 0) {
				ret = -1;
			} else {
				for (size_t i = 0; i < count; i++) {
					if (strcmp(list[i].address,
						   list[count].address) == 0) {
						config_error(
						    p, p->lineno,
						    "backend %s is listed "
						    "twice",
						    list[count].address);
						ret = -1;
						break;
					}
				}
				count++;
			}
		}
		free(item);
		if (count > CONFIG_BACKENDS_MAX)
			break;
	}
	if (ret < 0) {
		backends_free(list, count);
		return -1;
	}
	backends_free(cfg->backend.list, cfg->backend.count);
	cfg->backend.list = list;
	cfg->backend.count = count;
	return 0;
}

static int set_nul_bytes(struct config_parser *p, const struct config_key *key,
			 void *field, const char *value)
{
	static const struct config_word words[] = {
	    {"pass", NUL_BYTES_PASS},
	    {"strip", NUL_BYTES_STRIP},
	    {"reject", NUL_BYTES_REJECT},
	};
	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum nul_bytes_policy *)field = (enum nul_bytes_policy)v;
	return 0;
}

/* ---- the key tables ---- */

/* [policy] store: "memory" or a Redis URL (config/storeurl.h); only its
 * syntax is checked here (-t too), never whether Redis answers. */
static int set_store(struct config_parser *p, const struct config_key *key,
		     void *field, const char *value)
{
	struct config_store st;
	const char *why = "";

	if (storeurl_parse(value, &st, &why) < 0) {
		/* The value may hold a password: it is not quoted. */
		config_error(p, p->lineno, "invalid %s: %s", key->name, why);
		return -1;
	}
	storeurl_free(field);
	*(struct config_store *)field = st;
	return 0;
}

/* [policy] key_prefix: printable ASCII without blanks, as Redis tools
 * show keys. */
static int set_key_prefix(struct config_parser *p,
			  const struct config_key *key, void *field,
			  const char *value)
{
	size_t len = strlen(value);

	for (size_t i = 0; i < len; i++) {
		if (value[i] <= ' ' || value[i] > '~') {
			config_error(p, p->lineno,
				     "%s \"%.*s\" may hold printable ASCII "
				     "only, without blanks",
				     key->name, config_quote_len(value), value);
			return -1;
		}
	}
	if (len > key->max) {
		config_error(p, p->lineno, "%s is longer than %" PRIu64
			     " bytes", key->name, key->max);
		return -1;
	}
	config_replace_string(field, value);
	return 0;
}

static int set_store_error(struct config_parser *p,
			   const struct config_key *key, void *field,
			   const char *value)
{
	static const struct config_word words[] = {
	    {"local", STORE_ERROR_LOCAL},
	    {"tempfail", STORE_ERROR_TEMPFAIL},
	};

	int v;

	if (config_lookup_word(p, key, words, ARRAY_SIZE(words), value, &v) < 0)
		return -1;
	*(enum store_error_policy *)field = (enum store_error_policy)v;
	return 0;
}

#define CFG(member) offsetof(struct config, member)
#define LST(member) offsetof(struct config_listener, member)
#define SNI(member) offsetof(struct config_sni, member)
/* min, max of a key: a count of at least one, a duration that may or may
 * not be zero. */
#define COUNT		  1, UINT32_MAX
#define DURATION	  0, UINT64_MAX
#define DURATION_POSITIVE 1, UINT64_MAX

static const struct config_key server_keys[] = {
    {"hostname", set_hostname, CFG(server.hostname), 0, 0},
    {"user", set_word, CFG(server.user), 0, 0},
    {"workers", set_workers, CFG(server.workers), 1, CONFIG_WORKERS_MAX},
    {"log_level", set_log_level, CFG(server.log_level), 0, 0},
    {"shutdown_timeout", set_duration, CFG(server.shutdown_timeout_ms),
     DURATION},
};

static const struct config_key listener_keys[] = {
    /* The setter fills both addrs and naddrs. */
    {"address", set_listen_addresses, 0, 0, 0},
    {"mode", set_mode, LST(mode), 0, 0},
    {"require_tls", set_bool, LST(require_tls), 0, 0},
    {"allow_plaintext_auth", set_bool, LST(allow_plaintext_auth), 0, 0},
    {"proxy_protocol", set_bool, LST(proxy_protocol), 0, 0},
    {"client_certificates", set_client_certs, LST(client_certificates), 0,
     0},
    {"certificate_login", set_cert_login, LST(certificate_login), 0, 0},
};

static const struct config_key tls_keys[] = {
    {"certificate", set_string, CFG(tls.certificate), 0, 0},
    {"key", set_string, CFG(tls.key), 0, 0},
    {"min_version", set_tls_version, CFG(tls.min_version), 0, 0},
    {"ciphers", set_string, CFG(tls.ciphers), 0, 0},
    {"ciphersuites", set_string, CFG(tls.ciphersuites), 0, 0},
    {"client_ca", set_string, CFG(tls.client_ca), 0, 0},
    {"client_crl", set_string, CFG(tls.client_crl), 0, 0},
    {"client_cert_map", set_string, CFG(tls.client_cert_map), 0, 0},
    {"ocsp_response", set_string, CFG(tls.ocsp_response), 0, 0},
};

static const struct config_key sni_keys[] = {
    {"certificate", set_string, SNI(certificate), 0, 0},
    {"key", set_string, SNI(key), 0, 0},
    {"client_ca", set_string, SNI(client_ca), 0, 0},
    {"ocsp_response", set_string, SNI(ocsp_response), 0, 0},
};

static const struct config_key auth_keys[] = {
    {"pam_service", set_word, CFG(auth.pam_service), 0, 0},
    {"mechanisms", set_mechanisms, CFG(auth.mechanisms), 0, 0},
    {"max_failures", set_uint32, CFG(auth.max_failures), COUNT},
    {"failure_delay", set_duration, CFG(auth.failure_delay_ms), DURATION},
    {"address_failure_limit", set_uint32, CFG(auth.address_failure_limit),
     COUNT},
    {"address_failure_window", set_duration,
     CFG(auth.address_failure_window_ms), DURATION_POSITIVE},
    {"user_failure_limit", set_uint32, CFG(auth.user_failure_limit), COUNT},
    {"user_failure_window", set_duration, CFG(auth.user_failure_window_ms),
     DURATION_POSITIVE},
    {"known_address_window", set_duration,
     CFG(auth.known_address_window_ms), DURATION_POSITIVE},
    {"helper_workers", set_uint32, CFG(auth.helper_workers), 1,
     CONFIG_HELPER_WORKERS_MAX},
    {"timeout", set_duration, CFG(auth.timeout_ms), DURATION_POSITIVE},
};

static const struct config_key backend_keys[] = {
    /* The setter fills both list and count. */
    {"address", set_backend_addresses, 0, 0, 0},
    {"helo_name", set_helo_name, CFG(backend.helo_name), 0, 0},
    {"xclient", set_xclient, CFG(backend.xclient), 0, 0},
    {"connect_timeout", set_duration, CFG(backend.connect_timeout_ms),
     DURATION_POSITIVE},
    {"handover_timeout", set_duration, CFG(backend.handover_timeout_ms),
     DURATION_POSITIVE},
    {"timeout", set_duration, CFG(backend.timeout_ms), DURATION_POSITIVE},
    {"probe_interval", set_duration, CFG(backend.probe_interval_ms),
     DURATION_POSITIVE},
    {"retry_interval", set_duration, CFG(backend.retry_interval_ms),
     DURATION_POSITIVE},
};

static const struct config_key limits_keys[] = {
    {"max_connections", set_uint32, CFG(limits.max_connections), 1,
     CONFIG_CONNECTIONS_MAX},
    {"max_connections_per_address", set_uint32,
     CFG(limits.max_connections_per_address), 1, CONFIG_CONNECTIONS_MAX},
    {"max_line_length", set_size_t, CFG(limits.max_line_length),
     CONFIG_LINE_LENGTH_MIN, CONFIG_LINE_LENGTH_MAX},
    {"max_message_size", set_size, CFG(limits.max_message_size), 1, UINT64_MAX},
    {"max_recipients", set_uint32, CFG(limits.max_recipients), COUNT},
    {"max_errors", set_uint32, CFG(limits.max_errors), COUNT},
    /* 0 turns the limit off. */
    {"max_junk_commands", set_uint32, CFG(limits.max_junk_commands), 0,
     UINT32_MAX},
    {"idle_timeout", set_duration, CFG(limits.idle_timeout_ms),
     DURATION_POSITIVE},
    {"handshake_timeout", set_duration, CFG(limits.handshake_timeout_ms),
     DURATION_POSITIVE},
    {"greeting_delay", set_duration, CFG(limits.greeting_delay_ms), DURATION},
    {"ipv4_prefix", set_uint32, CFG(limits.ipv4_prefix), 0, 32},
    {"ipv6_prefix", set_uint32, CFG(limits.ipv6_prefix), 0, 128},
    /* 0 turns each of these off. */
    {"user_messages_per_hour", set_uint32,
     CFG(limits.user_messages_per_hour), 0, UINT32_MAX},
    {"user_recipients_per_hour", set_uint32,
     CFG(limits.user_recipients_per_hour), 0, UINT32_MAX},
    {"user_recipients_per_day", set_uint32,
     CFG(limits.user_recipients_per_day), 0, UINT32_MAX},
    {"user_limits", set_string, CFG(limits.user_limits), 0, 0},
};

static const struct config_key relay_keys[] = {
    {"received_header", set_bool, CFG(relay.received_header), 0, 0},
    {"bare_newline", set_bare_newline, CFG(relay.bare_newline), 0, 0},
    {"nul_bytes", set_nul_bytes, CFG(relay.nul_bytes), 0, 0},
    {"sender_map", set_string, CFG(relay.sender_map), 0, 0},
};

static const struct config_key policy_keys[] = {
    {"store", set_store, CFG(policy.store), 0, 0},
    {"key_prefix", set_key_prefix, CFG(policy.key_prefix), 0, 64},
    {"timeout", set_duration, CFG(policy.timeout_ms), DURATION_POSITIVE},
    {"on_store_error", set_store_error, CFG(policy.on_store_error), 0, 0},
};

static const struct config_key metrics_keys[] = {
    {"address", set_metrics_address, CFG(metrics), 0, 0},
    {"allow", set_metrics_allow, CFG(metrics), 0, 0},
};

#define SECTION(name, kind, named, keys)                                       \
	{                                                                      \
		name, kind, named, keys, ARRAY_SIZE(keys)                      \
	}

static const struct config_section_type config_sections[] = {
    SECTION("server", SECTION_SERVER, false, server_keys),
    SECTION("listener", SECTION_LISTENER, true, listener_keys),
    SECTION("tls", SECTION_TLS, false, tls_keys),
    SECTION("sni", SECTION_SNI, true, sni_keys),
    SECTION("auth", SECTION_AUTH, false, auth_keys),
    SECTION("backend", SECTION_BACKEND, false, backend_keys),
    SECTION("limits", SECTION_LIMITS, false, limits_keys),
    SECTION("relay", SECTION_RELAY, false, relay_keys),
    SECTION("policy", SECTION_POLICY, false, policy_keys),
    SECTION("metrics", SECTION_METRICS, false, metrics_keys),
};

static_assert(ARRAY_SIZE(config_sections) == SECTION_COUNT,
	      "one entry per section kind");
static_assert(ARRAY_SIZE(server_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(listener_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(tls_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(sni_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(auth_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(backend_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(limits_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(relay_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(policy_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");
static_assert(ARRAY_SIZE(metrics_keys) <= CONFIG_SECTION_KEYS_MAX, "keys");

static size_t config_key_index(const struct config_section_type *type,
			       const char *name)
{
	for (size_t i = 0; i < type->nkeys; i++) {
		if (strcmp(type->keys[i].name, name) == 0)
			return i;
	}
	return SIZE_MAX;
}

/* The line where KIND's key NAME was set in SEEN, 0 if it was not. */
static int config_key_line(const struct config_seen *seen,
			   enum config_section_kind kind, const char *name)
{
	size_t i = config_key_index(&config_sections[kind], name);

	assert(i != SIZE_MAX);
	return i == SIZE_MAX ? 0 : seen->key_lines[i];
}

static bool config_key_refused(const struct config_seen *seen,
			       enum config_section_kind kind, const char *name)
{
	size_t i = config_key_index(&config_sections[kind], name);

	assert(i != SIZE_MAX);
	return i != SIZE_MAX && seen->key_refused[i];
}

/* ---- defaults ---- */

#define SECONDS(n) ((uint64_t)(n)*1000)
#define MINUTES(n) (SECONDS(n) * 60)

static void config_listener_init(struct config_listener *l, const char *name,
				 int line)
{
	memset(l, 0, sizeof(*l));
	l->name = xstrdup(name);
	l->mode = LISTENER_STARTTLS;
	l->require_tls = true;
	l->allow_plaintext_auth = false;
	l->proxy_protocol = false;
	l->line = line;
}

static void config_set_defaults(struct config *cfg)
{
	cfg->server.user = xstrdup(CONFIG_DEFAULT_USER);
	cfg->server.workers = 1;
	cfg->server.log_level = LOG_LEVEL_INFO;
	cfg->server.shutdown_timeout_ms = SECONDS(30);

	cfg->tls.min_version = xstrdup(CONFIG_DEFAULT_MIN_VERSION);

	cfg->auth.pam_service = xstrdup(CONFIG_DEFAULT_PAM_SERVICE);
	cfg->auth.mechanisms = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	cfg->auth.max_failures = 3;
	cfg->auth.failure_delay_ms = SECONDS(2);
	cfg->auth.address_failure_limit = 10;
	cfg->auth.address_failure_window_ms = MINUTES(10);
	cfg->auth.user_failure_limit = 20;
	cfg->auth.user_failure_window_ms = MINUTES(60);
	cfg->auth.known_address_window_ms = MINUTES(60) * 24 * 30;
	cfg->auth.helper_workers = 4;
	cfg->auth.timeout_ms = SECONDS(30);

	cfg->backend.list = xcalloc(1, sizeof(*cfg->backend.list));
	cfg->backend.count = 1;
	cfg->backend.list[0].address = xstrdup(CONFIG_DEFAULT_BACKEND);
	if (value_parse_sockaddr(CONFIG_DEFAULT_BACKEND,
				 &cfg->backend.list[0].tcp) < 0)
		abort();
	cfg->backend.xclient = XCLIENT_AUTO;
	cfg->backend.connect_timeout_ms = SECONDS(10);
	cfg->backend.handover_timeout_ms = SECONDS(30);
	cfg->backend.timeout_ms = SECONDS(300);
	cfg->backend.probe_interval_ms = MINUTES(10);
	cfg->backend.retry_interval_ms = SECONDS(30);

	cfg->limits.max_connections = 10000;
	cfg->limits.max_connections_per_address = 50;
	cfg->limits.max_line_length = 2048;
	cfg->limits.max_message_size = UINT64_C(50) << 20;
	cfg->limits.max_recipients = 100;
	cfg->limits.max_errors = 20;
	cfg->limits.max_junk_commands = 100;
	cfg->limits.idle_timeout_ms = SECONDS(300);
	cfg->limits.handshake_timeout_ms = SECONDS(30);
	cfg->limits.greeting_delay_ms = 0;
	cfg->limits.ipv4_prefix = 32;
	cfg->limits.ipv6_prefix = 64;
	cfg->limits.user_messages_per_hour = 200;
	cfg->limits.user_recipients_per_hour = 500;
	cfg->limits.user_recipients_per_day = 2000;

	storeurl_memory(&cfg->policy.store);
	cfg->policy.key_prefix = xstrdup("submitproxy:");
	cfg->policy.timeout_ms = 250;
	cfg->policy.on_store_error = STORE_ERROR_LOCAL;

	cfg->relay.received_header = true;
	cfg->relay.bare_newline = BARE_NEWLINE_NORMALIZE;
	cfg->relay.nul_bytes = NUL_BYTES_REJECT;
}

/* The machine's FQDN: gethostname(), and if that has no dot, the
 * canonical name the resolver gives for it. */
static char *config_default_hostname(void)
{
	char name[CONFIG_HOSTNAME_MAX + 2];
	struct addrinfo hints, *res = NULL;
	char *fqdn;

	if (gethostname(name, sizeof(name)) < 0)
		return xstrdup("localhost");
	name[sizeof(name) - 1] = '\0';
	if (strchr(name, '.') != NULL)
		return xstrdup(name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL &&
	    res->ai_canonname != NULL && strchr(res->ai_canonname, '.') != NULL)
		fqdn = xstrdup(res->ai_canonname);
	else
		fqdn = xstrdup(name);
	if (res != NULL)
		freeaddrinfo(res);
	return fqdn;
}

/* ---- sections and keys ---- */

static void config_key_value(struct config_parser *p, const char *name,
			     const char *value)
{
	const struct config_section_type *type = p->section;
	const struct config_key *key;
	struct config_seen *seen;
	char label[CONFIG_HOSTNAME_MAX + 32];
	size_t i;
	void *field;

	if (type == NULL) {
		if (!p->skip_keys)
			config_error(p, p->lineno,
				     "key \"%.*s\" is outside of any section",
				     config_quote_len(name), name);
		return;
	}
	config_section_label(p, label, sizeof(label));
	i = config_key_index(type, name);
	if (i == SIZE_MAX) {
		config_error(p, p->lineno, "unknown key \"%.*s\" in %s",
			     config_quote_len(name), name, label);
		return;
	}
	key = &type->keys[i];
	seen = config_current_seen(p);
	if (seen->key_lines[i] != 0) {
		config_error(
		    p, p->lineno,
		    "duplicate key \"%s\" in %s (first set at line %d)",
		    key->name, label, seen->key_lines[i]);
		return;
	}
	/* Marked even if the value is wrong: one error per mistake. */
	seen->key_lines[i] = p->lineno;
	if (value[0] == '\0') {
		config_error(p, p->lineno, "missing value for %s", key->name);
		seen->key_refused[i] = true;
		return;
	}
	field = (char *)config_current_base(p) + key->offset;
	if (key->set(p, key, field, value) < 0)
		seen->key_refused[i] = true;
}

static void config_open_section(struct config_parser *p, const char *type_name,
				const char *arg)
{
	const struct config_section_type *type = NULL;
	struct config *cfg = p->cfg;

	/* Until the header proves right, its keys are skipped. */
	p->section = NULL;
	p->skip_keys = true;
	for (size_t i = 0; i < ARRAY_SIZE(config_sections); i++) {
		if (strcmp(config_sections[i].name, type_name) == 0)
			type = &config_sections[i];
	}
	if (type == NULL) {
		config_error(p, p->lineno, "unknown section [%.*s]",
			     config_quote_len(type_name), type_name);
		return;
	}
	if (!type->named && arg != NULL) {
		config_error(p, p->lineno, "section [%s] takes no name",
			     type->name);
		return;
	}
	if (type->named && arg == NULL) {
		config_error(p, p->lineno, "section [%s] needs a name: [%s %s]",
			     type->name, type->name,
			     type->kind == SECTION_SNI ? "HOSTNAME" : "NAME");
		return;
	}

	switch (type->kind) {
	case SECTION_LISTENER:
		for (const char *c = arg; *c != '\0'; c++) {
			if (!isgraph((unsigned char)*c)) {
				config_error(p, p->lineno,
					     "invalid listener name \"%.*s\"",
					     config_quote_len(arg), arg);
				return;
			}
		}
		for (size_t i = 0; i < cfg->nlisteners; i++) {
			if (strcmp(cfg->listeners[i].name, arg) == 0)
				config_error(p, p->lineno,
					     "duplicate section [listener %s] "
					     "(first at line %d)",
					     arg, cfg->listeners[i].line);
		}
		/* Even a duplicate is read, so that its keys get checked. */
		cfg->listeners =
		    xreallocarray(cfg->listeners, cfg->nlisteners + 1,
				  sizeof(*cfg->listeners));
		p->listeners_seen =
		    xreallocarray(p->listeners_seen, cfg->nlisteners + 1,
				  sizeof(*p->listeners_seen));
		config_listener_init(&cfg->listeners[cfg->nlisteners], arg,
				     p->lineno);
		memset(&p->listeners_seen[cfg->nlisteners], 0,
		       sizeof(*p->listeners_seen));
		p->section_index = cfg->nlisteners++;
		break;
	case SECTION_SNI: {
		char *hostname = xstrdup(arg);

		for (char *c = hostname; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		if (!config_is_hostname(hostname)) {
			config_error(p, p->lineno,
				     "invalid hostname \"%.*s\" in [sni]",
				     config_quote_len(arg), arg);
			free(hostname);
			return;
		}
		for (size_t i = 0; i < cfg->nsnis; i++) {
			if (strcmp(cfg->snis[i].hostname, hostname) == 0)
				config_error(p, p->lineno,
					     "duplicate section [sni %s] "
					     "(first at line %d)",
					     hostname, cfg->snis[i].line);
		}
		cfg->snis = xreallocarray(cfg->snis, cfg->nsnis + 1,
					  sizeof(*cfg->snis));
		p->snis_seen = xreallocarray(p->snis_seen, cfg->nsnis + 1,
					     sizeof(*p->snis_seen));
		memset(&cfg->snis[cfg->nsnis], 0, sizeof(*cfg->snis));
		memset(&p->snis_seen[cfg->nsnis], 0, sizeof(*p->snis_seen));
		cfg->snis[cfg->nsnis].hostname = hostname;
		cfg->snis[cfg->nsnis].line = p->lineno;
		p->section_index = cfg->nsnis++;
		break;
	}
	default:
		if (p->singles[type->kind].header_line != 0) {
			config_error(p, p->lineno,
				     "duplicate section [%s] (first at line "
				     "%d)",
				     type->name,
				     p->singles[type->kind].header_line);
			return;
		}
		if (type->kind == SECTION_TLS)
			cfg->tls.line = p->lineno;
		break;
	}
	p->section = type;
	config_current_seen(p)->header_line = p->lineno;
}

/* ---- the ini_parse() callbacks ---- */

static void config_on_section(void *ctx, int line, const char *type,
			      size_t type_len, const char *arg, size_t arg_len)
{
	struct config_parser *p = ctx;
	char *type_s = xmemdup(type, type_len);
	char *arg_s = arg != NULL ? xmemdup(arg, arg_len) : NULL;

	p->lineno = line;
	config_open_section(p, type_s, arg_s);
	free(type_s);
	free(arg_s);
}

static void config_on_key(void *ctx, int line, const char *name,
			  size_t name_len, const char *value, size_t value_len)
{
	struct config_parser *p = ctx;
	char *name_s = xmemdup(name, name_len);
	char *value_s = xmemdup(value, value_len);

	p->lineno = line;
	config_key_value(p, name_s, value_s);
	free(name_s);
	free(value_s);
}

static void config_on_error(void *ctx, int line, enum ini_error_kind kind,
			    const char *message)
{
	struct config_parser *p = ctx;

	p->lineno = line;
	config_error(p, line, "%s", message);
	if (kind == INI_ERROR_HEADER) {
		/* Keys up to the next header are not checked against a
		 * section that may not be the one meant. */
		p->section = NULL;
		p->skip_keys = true;
	}
}

static const struct ini_callbacks config_ini_callbacks = {
    .section = config_on_section,
    .key = config_on_key,
    .error = config_on_error,
};

/* ---- whole-file checks ---- */

/* Where address A of listener I was seen first, before itself; false if
 * nowhere. */
static bool config_find_address(const struct config *cfg, size_t i, size_t a,
				size_t *j_r)
{
	const char *text = cfg->listeners[i].addrs[a].text;

	for (size_t j = 0; j <= i; j++) {
		const struct config_listener *o = &cfg->listeners[j];
		size_t end = j == i ? a : o->naddrs;

		for (size_t b = 0; b < end; b++) {
			if (strcmp(o->addrs[b].text, text) == 0) {
				*j_r = j;
				return true;
			}
		}
	}
	return false;
}

static void config_check_listeners(struct config_parser *p)
{
	const struct config *cfg = p->cfg;
	bool have_tls = cfg->tls.certificate != NULL && cfg->tls.key != NULL;

	if (cfg->nlisteners == 0)
		config_error(p, p->lineno > 0 ? p->lineno : 1,
			     "no [listener NAME] section: nothing to listen "
			     "on");
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		int addr_line = config_key_line(&p->listeners_seen[i],
						SECTION_LISTENER, "address");

		if (addr_line == 0)
			config_error(p, l->line, "[listener %s] has no address",
				     l->name);
		if (l->mode != LISTENER_PLAIN && !have_tls &&
		    !config_key_refused(&p->listeners_seen[i], SECTION_LISTENER,
					"mode"))
			config_error(p, l->line,
				     "[listener %s] uses %s but [tls] has no "
				     "certificate and key",
				     l->name, listener_mode_name(l->mode));
		/* The same address twice: bind() would fail at startup. */
		for (size_t a = 0; a < l->naddrs; a++) {
			size_t j;

			if (!config_find_address(cfg, i, a, &j))
				continue;
			if (j == i)
				config_error(p, addr_line,
					     "address %s is listed twice",
					     l->addrs[a].text);
			else
				config_error(
				    p, addr_line,
				    "address %s is already used by "
				    "[listener %s] (line %d)",
				    l->addrs[a].text, cfg->listeners[j].name,
				    config_key_line(&p->listeners_seen[j],
						    SECTION_LISTENER,
						    "address"));
		}
	}
}

static void config_check_tls(struct config_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct config_seen *tls = &p->singles[SECTION_TLS];
	int cert_line = config_key_line(tls, SECTION_TLS, "certificate");
	int key_line = config_key_line(tls, SECTION_TLS, "key");

	/* A key with an empty value counts as set: already reported. */
	if (cert_line != 0 && key_line == 0)
		config_error(p, cert_line,
			     "[tls] certificate is set but key is not");
	if (key_line != 0 && cert_line == 0)
		config_error(p, key_line,
			     "[tls] key is set but certificate is not");

	for (size_t i = 0; i < cfg->nsnis; i++) {
		const struct config_sni *sni = &cfg->snis[i];
		const struct config_seen *seen = &p->snis_seen[i];

		if (config_key_line(seen, SECTION_SNI, "certificate") == 0)
			config_error(p, sni->line,
				     "[sni %s] has no certificate",
				     sni->hostname);
		if (config_key_line(seen, SECTION_SNI, "key") == 0)
			config_error(p, sni->line, "[sni %s] has no key",
				     sni->hostname);
	}
}

/* Client certificates: each listener's default, and what each setting
 * needs. */
static void config_check_client_certs(struct config_parser *p)
{
	struct config *cfg = p->cfg;
	const struct config_seen *tls = &p->singles[SECTION_TLS];
	bool any_ca = cfg->tls.client_ca != NULL;

	for (size_t i = 0; i < cfg->nsnis; i++)
		any_ca = any_ca || cfg->snis[i].client_ca != NULL;
	if (!any_ca && cfg->tls.client_cert_map != NULL)
		config_error(p, config_key_line(tls, SECTION_TLS,
						"client_cert_map"),
			     "[tls] client_cert_map needs a client_ca to "
			     "verify certificates against");
	if (!any_ca && cfg->tls.client_crl != NULL)
		config_error(p, config_key_line(tls, SECTION_TLS, "client_crl"),
			     "[tls] client_crl needs a client_ca");
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct config_listener *l = &cfg->listeners[i];
		const struct config_seen *seen = &p->listeners_seen[i];
		int line = config_key_line(seen, SECTION_LISTENER,
					   "client_certificates");
		int login_line = config_key_line(seen, SECTION_LISTENER,
						 "certificate_login");

		if (line == 0) {
			/* Today's behaviour: with a client CA, a
			 * certificate is asked for and not required. */
			l->client_certificates =
			    any_ca && l->mode != LISTENER_PLAIN
				? CLIENT_CERTS_OPTIONAL
				: CLIENT_CERTS_OFF;
		} else if (l->client_certificates != CLIENT_CERTS_OFF) {
			if (l->mode == LISTENER_PLAIN)
				config_error(p, line,
					     "[listener %s] client_certificates "
					     "needs TLS, and the listener is "
					     "plain",
					     l->name);
			else if (l->client_certificates ==
					 CLIENT_CERTS_REQUIRED &&
				 cfg->tls.client_ca == NULL)
				/* A client without SNI, or with a name of no
				 * [sni], gets the default certificate. */
				config_error(p, line,
					     "[listener %s] client_certificates "
					     "= required needs [tls] client_ca",
					     l->name);
			else if (!any_ca)
				config_error(p, line,
					     "[listener %s] client_certificates "
					     "= %s needs a client_ca",
					     l->name,
					     client_cert_mode_name(
						 l->client_certificates));
		}
		if (l->certificate_login == CERT_LOGIN_IMPLICIT) {
			if (cfg->tls.client_cert_map == NULL)
				config_error(p, login_line,
					     "[listener %s] certificate_login "
					     "= implicit needs [tls] "
					     "client_cert_map",
					     l->name);
			else if (l->client_certificates == CLIENT_CERTS_OFF)
				config_error(p, login_line,
					     "[listener %s] certificate_login "
					     "= implicit needs "
					     "client_certificates = optional "
					     "or required",
					     l->name);
		}
	}
}

/* ---- entry points ---- */

long config_file_read(const char *path, size_t max,
		      struct config_errors *errors, char **buf_r)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;

	f = fopen(path, "re"); /* "e": O_CLOEXEC */
	if (f == NULL) {
		config_errors_add(errors, path, 0, "cannot open: %s",
				  strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		config_errors_add(errors, path, 0, "cannot open: %s",
				  strerror(EISDIR));
		fclose(f);
		return -1;
	}
	errno = 0;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (len > max) {
			config_errors_add(errors, path, 0,
					  "larger than %zu bytes", max);
			goto fail;
		}
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		config_errors_add(errors, path, 0, "read error: %s",
				  strerror(errno ? errno : EIO));
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	*buf_r = buf;
	return (long)len;
fail:
	fclose(f);
	free(buf);
	return -1;
}

int config_read(const char *path, struct config **cfg_r,
		struct config_errors *errors)
{
	struct config_parser p;
	struct config *cfg;
	char *buf = NULL;
	long len;
	size_t nerrors = errors->count;

	len = config_file_read(path, CONFIG_FILE_MAX, errors, &buf);
	if (len < 0)
		return -1;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.errors = errors;
	cfg = xcalloc(1, sizeof(*cfg));
	atomic_init(&cfg->refs, 1);
	cfg->path = xstrdup(path);
	config_set_defaults(cfg);
	p.cfg = cfg;

	/* CONFIG_FILE_MAX is below INI_BUFFER_MAX: never -1. */
	p.lineno = ini_parse(buf, (size_t)len, &config_ini_callbacks, &p);
	free(buf);

	config_check_listeners(&p);
	config_check_tls(&p);
	config_check_client_certs(&p);

	free(p.listeners_seen);
	free(p.snis_seen);

	if (errors->count > nerrors) {
		config_free(cfg);
		return -1;
	}
	if (cfg->server.hostname == NULL)
		cfg->server.hostname = config_default_hostname();
	if (cfg->backend.helo_name == NULL)
		cfg->backend.helo_name = xstrdup(cfg->server.hostname);
	/* [backend] xclient may come before or after the list. */
	for (size_t i = 0; i < cfg->backend.count; i++)
		if (!cfg->backend.list[i].xclient_set)
			cfg->backend.list[i].xclient = cfg->backend.xclient;
	*cfg_r = cfg;
	return 0;
}

void config_errors_print(const struct config_errors *errors, FILE *f)
{
	for (size_t i = 0; i < errors->count; i++) {
		const struct config_error *e = &errors->items[i];

		if (e->line > 0)
			fprintf(f, "%s:%d: %s\n", e->file, e->line, e->message);
		else
			fprintf(f, "%s: %s\n", e->file, e->message);
	}
}

void config_errors_finish(struct config_errors *errors)
{
	for (size_t i = 0; i < errors->count; i++) {
		free(errors->items[i].file);
		free(errors->items[i].message);
	}
	free(errors->items);
	errors->items = NULL;
	errors->count = 0;
}

int config_load(const char *path, struct config **cfg_r)
{
	struct config_errors errors = {NULL, 0};
	int ret = config_read(path, cfg_r, &errors);

	config_errors_print(&errors, stderr);
	config_errors_finish(&errors);
	return ret;
}

struct config *config_ref(struct config *cfg)
{
	atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct config *cfg)
{
	/* acq_rel: whatever the last user wrote happens before the free. */
	if (cfg != NULL && atomic_fetch_sub_explicit(&cfg->refs, 1,
						     memory_order_acq_rel) == 1)
		config_free(cfg);
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->server.hostname);
	free(cfg->server.user);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].name);
		free(cfg->listeners[i].addrs);
	}
	free(cfg->listeners);
	free(cfg->tls.certificate);
	free(cfg->tls.key);
	free(cfg->tls.min_version);
	free(cfg->tls.ciphers);
	free(cfg->tls.ciphersuites);
	free(cfg->tls.client_ca);
	free(cfg->tls.client_crl);
	free(cfg->tls.client_cert_map);
	free(cfg->tls.ocsp_response);
	for (size_t i = 0; i < cfg->nsnis; i++) {
		free(cfg->snis[i].hostname);
		free(cfg->snis[i].certificate);
		free(cfg->snis[i].key);
		free(cfg->snis[i].client_ca);
		free(cfg->snis[i].ocsp_response);
	}
	free(cfg->snis);
	free(cfg->auth.pam_service);
	backends_free(cfg->backend.list, cfg->backend.count);
	free(cfg->backend.helo_name);
	free(cfg->relay.sender_map);
	free(cfg->limits.user_limits);
	storeurl_free(&cfg->policy.store);
	free(cfg->policy.key_prefix);
	free(cfg->metrics.allow);
	free(cfg);
}

bool config_wants_tls(const struct config *cfg)
{
	return cfg->tls.certificate != NULL;
}

const char *client_cert_mode_name(enum client_cert_mode mode)
{
	switch (mode) {
	case CLIENT_CERTS_OFF:
		return "off";
	case CLIENT_CERTS_OPTIONAL:
		return "optional";
	case CLIENT_CERTS_REQUIRED:
		return "required";
	}
	return "unknown";
}

const char *config_client_ca(const struct config *cfg,
			     const struct config_sni *sni)
{
	if (sni != NULL && sni->client_ca != NULL)
		return sni->client_ca;
	return cfg->tls.client_ca;
}

const char *listener_mode_name(enum listener_mode mode)
{
	switch (mode) {
	case LISTENER_STARTTLS:
		return "starttls";
	case LISTENER_IMPLICIT_TLS:
		return "implicit-tls";
	case LISTENER_PLAIN:
		return "plain";
	}
	return "unknown";
}
