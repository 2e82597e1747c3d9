/* storeurl.c - see storeurl.h */
#include "config/storeurl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "config/values.h"

/* Longest URL taken (a path, a password and a few numbers). */
#define STOREURL_MAX 1024
#define STOREURL_DB_MAX 65535

void storeurl_memory(struct config_store *store)
{
	memset(store, 0, sizeof(*store));
	store->kind = STORE_MEMORY;
	store->display = xstrdup("memory");
}

void storeurl_free(struct config_store *store)
{
	free(store->display);
	free(store->unix_path);
	free(store->username);
	if (store->password != NULL) {
		explicit_bzero(store->password, strlen(store->password));
		free(store->password);
	}
	memset(store, 0, sizeof(*store));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..len) with %XX decoded, as a new string; NULL if a %-escape is
 * broken or decodes to NUL, CR or LF. */
static char *storeurl_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3)
				goto bad;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || c == '\r' || c == '\n')
			goto bad;
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
bad:
	explicit_bzero(out, len + 1);
	free(out);
	return NULL;
}

static int storeurl_db(const char *s, uint32_t *db_r)
{
	return value_parse_uint32(s, 0, STOREURL_DB_MAX, db_r);
}

/* "[user]:password@" at the start of *p, if there; moves *p past it. */
static int storeurl_userinfo(const char **p, const char *end,
			     struct config_store *st, const char **why)
{
	const char *at = memchr(*p, '@', (size_t)(end - *p));
	const char *colon;

	if (at == NULL)
		return 0;
	colon = memchr(*p, ':', (size_t)(at - *p));
	if (colon == NULL) {
		*why = "the part before '@' must be [user]:password";
		return -1;
	}
	if (colon > *p) {
		st->username = storeurl_decode(*p, (size_t)(colon - *p));
		if (st->username == NULL)
			goto bad;
	}
	st->password = storeurl_decode(colon + 1, (size_t)(at - colon - 1));
	if (st->password == NULL)
		goto bad;
	if (st->password[0] == '\0') {
		*why = "empty password";
		return -1;
	}
	*p = at + 1;
	return 0;
bad:
	*why = "bad %-escape or control character in the user or password";
	return -1;
}

/* host[:port] of a redis:// URL, in s[0..len). */
static int storeurl_hostport(const char *s, size_t len,
			     struct config_store *st, const char **why)
{
	char buf[128], host[64];
	const char *port = "6379";
	size_t hlen;

	if (len == 0 || len >= sizeof(buf)) {
		*why = "missing or too long host";
		return -1;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');

		if (close == NULL) {
			*why = "unclosed '[' in the host";
			return -1;
		}
		hlen = (size_t)(close - buf) + 1;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			goto bad;
	} else {
		char *colon = strchr(buf, ':');

		hlen = colon != NULL ? (size_t)(colon - buf) : len;
		if (colon != NULL)
			port = colon + 1;
	}
	if (hlen >= sizeof(host))
		goto bad;
	memcpy(host, buf, hlen);
	host[hlen] = '\0';
	if (strcasecmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	{
		char addr[160];

		snprintf(addr, sizeof(addr), "%s:%s", host, port);
		if (value_parse_sockaddr(addr, &st->tcp) == 0)
			return 0;
	}
bad:
	*why = "the host must be an IP address (\"127.0.0.1\", \"[::1]\") "
	       "or localhost, with an optional :port (1-65535)";
	return -1;
}

/* The URL as logs show it: the password as "***", the database always. */
static void storeurl_display(struct config_store *st, const char *scheme,
			     const char *where, const char *db_sep)
{
	char buf[STOREURL_MAX + 64];

	snprintf(buf, sizeof(buf), "%s%s%s%s%s%u", scheme,
		 st->password != NULL ? (st->username ? st->username : "")
				      : "",
		 st->password != NULL ? ":***@" : "", where, db_sep,
		 (unsigned)st->db);
	st->display = xstrdup(buf);
}

int storeurl_parse(const char *s, struct config_store *out, const char **why)
{
	static const char redis[] = "redis://", unix_[] = "redis+unix://";
	struct config_store st;
	const char *p, *end;

	if (strcasecmp(s, "memory") == 0) {
		storeurl_memory(out);
		return 0;
	}
	memset(&st, 0, sizeof(st));
	st.kind = STORE_REDIS;
	if (strlen(s) > STOREURL_MAX) {
		*why = "URL too long";
		return -1;
	}
	for (p = s; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
			*why = "blank, control or 8-bit byte in the URL";
			return -1;
		}
	}
	end = s + strlen(s);
	if (strncasecmp(s, redis, sizeof(redis) - 1) == 0) {
		const char *slash;

		p = s + sizeof(redis) - 1;
		if (storeurl_userinfo(&p, end, &st, why) < 0)
			goto fail;
		slash = strchr(p, '/');
		if (storeurl_hostport(p, slash ? (size_t)(slash - p)
					       : (size_t)(end - p),
				      &st, why) < 0)
			goto fail;
		if (slash != NULL && slash[1] != '\0' &&
		    storeurl_db(slash + 1, &st.db) < 0) {
			*why = "the database after '/' must be a number "
			       "(0-65535)";
			goto fail;
		}
		storeurl_display(&st, redis, st.tcp.text, "/");
	} else if (strncasecmp(s, unix_, sizeof(unix_) - 1) == 0) {
		const char *q;

		p = s + sizeof(unix_) - 1;
		if (storeurl_userinfo(&p, end, &st, why) < 0)
			goto fail;
		if (*p != '/') {
			*why = "redis+unix:// needs an absolute path";
			goto fail;
		}
		q = strchr(p, '?');
		if (q != NULL) {
			if (strncmp(q, "?db=", 4) != 0 ||
			    storeurl_db(q + 4, &st.db) < 0) {
				*why = "after the path only ?db=N (0-65535)";
				goto fail;
			}
		}
		st.unix_path = xmemdup(p, q ? (size_t)(q - p) : (size_t)(end - p));
		if (strlen(st.unix_path) >= 108) {
			*why = "socket path too long (107 bytes at most)";
			goto fail;
		}
		storeurl_display(&st, unix_, st.unix_path, "?db=");
	} else {
		*why = "expected memory, redis://HOST[:PORT][/DB] or "
		       "redis+unix:///PATH[?db=N]";
		goto fail;
	}
	*out = st;
	return 0;
fail:
	storeurl_free(&st);
	return -1;
}

static bool str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

bool storeurl_same(const struct config_store *a, const struct config_store *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == STORE_MEMORY)
		return true;
	return str_eq(a->unix_path, b->unix_path) &&
	       (a->unix_path != NULL ||
		strcmp(a->tcp.text, b->tcp.text) == 0) &&
	       str_eq(a->username, b->username) &&
	       str_eq(a->password, b->password) && a->db == b->db;
}
