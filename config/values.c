/*
 * values.c - pure parsers for configuration values (see values.h).
 *
 * Every parser takes the whole value as ini_parse() hands it over (surrounding
 * whitespace already stripped) and accepts nothing else: no sign, no inner
 * or trailing blanks, no trailing garbage.  Results are built in locals and
 * stored only on success, so a failed parse leaves the output untouched.
 */
#include "config/values.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Parses the leading decimal digits of S into *n_r and always points
 * *end_r past all of them, so that the caller can check what follows even
 * when the number is too large.  -EINVAL if there is no digit, -ERANGE if
 * the number does not fit in 64 bits (*n_r is then not set). */
static int value_parse_digits(const char *s, uint64_t *n_r, const char **end_r)
{
	uint64_t n = 0;
	const char *p = s;
	bool overflow = false;

	*end_r = s;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - digit) / 10)
			overflow = true;
		else
			n = n * 10 + digit;
	}
	*end_r = p;
	if (overflow)
		return -ERANGE;
	*n_r = n;
	return 0;
}

static int value_mul(uint64_t n, uint64_t factor, uint64_t *r)
{
	if (factor != 0 && n > UINT64_MAX / factor)
		return -ERANGE;
	*r = n * factor;
	return 0;
}

int value_parse_duration_ms(const char *s, uint64_t *ms_r)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
	    {"", UINT64_C(1000)}, /* a plain number counts seconds */
	    {"ms", UINT64_C(1)},	{"s", UINT64_C(1000)},
	    {"m", UINT64_C(60) * 1000}, {"h", UINT64_C(3600) * 1000},
	    {"d", UINT64_C(86400) * 1000},
	};
	const char *end;
	uint64_t n = 0, ms;
	int ret;

	/* Garbage after the digits is -EINVAL even when they overflow. */
	ret = value_parse_digits(s, &n, &end);
	if (ret == -EINVAL)
		return ret;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (ret < 0)
			return ret;
		if (value_mul(n, units[i].ms, &ms) < 0)
			return -ERANGE;
		*ms_r = ms;
		return 0;
	}
	return -EINVAL;
}

int value_parse_size(const char *s, uint64_t *bytes_r)
{
	const char *end;
	uint64_t n = 0, factor, bytes;
	int ret;

	ret = value_parse_digits(s, &n, &end);
	if (ret == -EINVAL)
		return ret;
	switch (*end) {
	case '\0':
		factor = 1;
		break;
	case 'k':
	case 'K':
		factor = UINT64_C(1) << 10;
		break;
	case 'm':
	case 'M':
		factor = UINT64_C(1) << 20;
		break;
	case 'g':
	case 'G':
		factor = UINT64_C(1) << 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0')
		return -EINVAL;
	if (ret < 0)
		return ret;
	if (value_mul(n, factor, &bytes) < 0)
		return -ERANGE;
	*bytes_r = bytes;
	return 0;
}

int value_parse_bool(const char *s, bool *b_r)
{
	static const struct {
		const char *word;
		bool value;
	} words[] = {
	    {"yes", true}, {"no", false},  {"true", true}, {"false", false},
	    {"on", true},  {"off", false}, {"1", true},	   {"0", false},
	};

	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		if (strcasecmp(s, words[i].word) == 0) {
			*b_r = words[i].value;
			return 0;
		}
	}
	return -EINVAL;
}

int value_parse_uint32(const char *s, uint32_t min, uint32_t max, uint32_t *u_r)
{
	const char *end;
	uint64_t n = 0;
	int ret;

	ret = value_parse_digits(s, &n, &end);
	if (ret == -EINVAL || *end != '\0')
		return -EINVAL;
	if (ret < 0 || n < min || n > max)
		return -ERANGE;
	*u_r = (uint32_t)n;
	return 0;
}

/* "25" -> 25; 1..65535, digits only. */
static int value_parse_port(const char *s, uint16_t *port_r)
{
	uint32_t port;

	if (value_parse_uint32(s, 1, 65535, &port) < 0)
		return -EINVAL;
	*port_r = (uint16_t)port;
	return 0;
}

int value_parse_sockaddr(const char *s, struct config_addr *addr_r)
{
	/* Room for the longest IPv6 text, "ffff:...:255.255.255.255". */
	char host[INET6_ADDRSTRLEN];
	char text[INET6_ADDRSTRLEN];
	struct config_addr addr;
	const char *host_start, *host_end, *port;
	size_t host_len;
	uint16_t portnum;
	int family;

	if (s[0] == '[') {
		host_start = s + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return -EINVAL;
		port = host_end + 2;
		family = AF_INET6;
	} else {
		host_start = s;
		host_end = strchr(s, ':');
		/* A second colon means an IPv6 address without brackets. */
		if (host_end == NULL || strchr(host_end + 1, ':') != NULL)
			return -EINVAL;
		port = host_end + 1;
		family = AF_INET;
	}
	host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	if (value_parse_port(port, &portnum) < 0)
		return -EINVAL;

	memset(&addr, 0, sizeof(addr));
	if (family == AF_INET) {
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(portnum);
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return -EINVAL;
		if (inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text)) ==
		    NULL)
			return -EINVAL;
		memcpy(&addr.ss, &sin, sizeof(sin));
		addr.len = sizeof(sin);
		snprintf(addr.text, sizeof(addr.text), "%s:%u", text,
			 (unsigned)portnum);
	} else {
		struct sockaddr_in6 sin6;

		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(portnum);
		if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
			return -EINVAL;
		if (inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text)) ==
		    NULL)
			return -EINVAL;
		memcpy(&addr.ss, &sin6, sizeof(sin6));
		addr.len = sizeof(sin6);
		snprintf(addr.text, sizeof(addr.text), "[%s]:%u", text,
			 (unsigned)portnum);
	}
	*addr_r = addr;
	return 0;
}

int value_parse_cidr(const char *s, struct config_cidr *cidr_r)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t host_len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	struct config_cidr c;
	uint32_t prefix;
	unsigned max;

	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, host_len);
	host[host_len] = '\0';
	memset(&c, 0, sizeof(c));
	if (inet_pton(AF_INET, host, c.addr) == 1) {
		c.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c.addr) == 1) {
		c.family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	prefix = max;
	if (slash != NULL) {
		int r = value_parse_uint32(slash + 1, 0, max, &prefix);

		if (r < 0)
			return r;
	}
	for (unsigned bit = prefix; bit < max; bit++)
		if (c.addr[bit / 8] & (0x80u >> (bit % 8)))
			return -EINVAL;
	c.prefix = prefix;
	*cidr_r = c;
	return 0;
}

bool value_cidr_match(const struct config_cidr *c, const struct sockaddr *sa)
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0,
						   0, 0, 0, 0, 0xff, 0xff};
	const unsigned char *a;
	unsigned full, rest;

	if (sa->sa_family == AF_INET) {
		if (c->family != AF_INET)
			return false;
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)
			->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)
			->sin6_addr;
		if (c->family == AF_INET) {
			if (memcmp(a, v4mapped, sizeof(v4mapped)) != 0)
				return false;
			a += sizeof(v4mapped);
		}
	} else {
		return false;
	}
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(a, c->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ c->addr[full]) & (0xffu << (8 - rest)) & 0xff) == 0;
}
