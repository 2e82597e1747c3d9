/*
 * test_values.c - the configuration value parsers of config/values.h, one
 * table per parser: what each accepts, what it makes of it, and that every
 * malformed or out-of-range value is refused with the output untouched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "config/config.h"
#include "config/values.h"
#include "tests/unit/tap.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNTOUCHED     UINT64_C(0xdeadbeef)

struct u64_case {
	const char *in;
	int ret;
	uint64_t out;
};

static const struct u64_case duration_cases[] = {
    {"30", 0, 30000}, /* a plain number counts seconds */
    {"0", 0, 0},
    {"0s", 0, 0},
    {"500ms", 0, 500},
    {"30s", 0, 30000},
    {"10m", 0, 600000},
    {"2h", 0, 7200000},
    {"30d", 0, UINT64_C(2592000000)},
    {"1D", 0, 86400000},
    {"2H", 0, 7200000},
    {"5MS", 0, 5},
    {"007s", 0, 7000},
    {"18446744073709551615ms", 0, UINT64_MAX},
    {"18446744073709551616ms", -ERANGE, 0},
    {"18446744073709551615", -ERANGE, 0},
    {"5124095576030h", 0, UINT64_C(5124095576030) * 3600000},
    {"5124095576031h", -ERANGE, 0},
    {"99999999999999999999999999", -ERANGE, 0},
    {"", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"ms", -EINVAL, 0},
    {"10x", -EINVAL, 0},
    {"10sec", -EINVAL, 0},
    {"10mss", -EINVAL, 0},
    {"10w", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"+1", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"1 s", -EINVAL, 0},
    {" 1s", -EINVAL, 0},
    {"1s ", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
    {"99999999999999999999999x", -EINVAL, 0},
};

static const struct u64_case size_cases[] = {
    {"0", 0, 0},
    {"2048", 0, 2048},
    {"64K", 0, 65536},
    {"64k", 0, 65536},
    {"50M", 0, UINT64_C(50) << 20},
    {"50m", 0, UINT64_C(50) << 20},
    {"1G", 0, 1073741824},
    {"1g", 0, 1073741824},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551616", -ERANGE, 0},
    {"17179869183G", 0, UINT64_C(17179869183) << 30},
    {"17179869184G", -ERANGE, 0},
    {"99999999999999999999999K", -ERANGE, 0},
    {"", -EINVAL, 0},
    {"K", -EINVAL, 0},
    {"10x", -EINVAL, 0},
    {"1KB", -EINVAL, 0},
    {"1T", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"+1", -EINVAL, 0},
    {"1.5M", -EINVAL, 0},
    {" 1", -EINVAL, 0},
    {"1 ", -EINVAL, 0},
    {"1 M", -EINVAL, 0},
    {"99999999999999999999999KB", -EINVAL, 0},
};

static void test_u64_table(const char *what, const struct u64_case *cases,
			   size_t n, int (*parse)(const char *, uint64_t *))
{
	for (size_t i = 0; i < n; i++) {
		uint64_t out = UNTOUCHED;
		int ret = parse(cases[i].in, &out);

		TAP_EQ_INT(ret, cases[i].ret, "%s \"%s\" returns %d", what,
			   cases[i].in, cases[i].ret);
		if (cases[i].ret == 0)
			TAP_OK(out == cases[i].out,
			       "%s \"%s\" is %" PRIu64 " (got %" PRIu64 ")",
			       what, cases[i].in, cases[i].out, out);
		else
			TAP_OK(out == UNTOUCHED,
			       "%s \"%s\" leaves output alone", what,
			       cases[i].in);
	}
}

static void test_bool(void)
{
	static const struct {
		const char *in;
		int ret;
		bool out;
	} cases[] = {
	    {"yes", 0, true},	    {"no", 0, false},	 {"true", 0, true},
	    {"false", 0, false},    {"on", 0, true},	 {"off", 0, false},
	    {"1", 0, true},	    {"0", 0, false},	 {"YES", 0, true},
	    {"No", 0, false},	    {"TRUE", 0, true},	 {"Off", 0, false},
	    {"", -EINVAL, 0},	    {"y", -EINVAL, 0},	 {"2", -EINVAL, 0},
	    {"yes ", -EINVAL, 0},   {" no", -EINVAL, 0}, {"01", -EINVAL, 0},
	    {"enable", -EINVAL, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool out = !cases[i].out;
		bool before = out;
		int ret = value_parse_bool(cases[i].in, &out);

		TAP_EQ_INT(ret, cases[i].ret, "bool \"%s\" returns %d",
			   cases[i].in, cases[i].ret);
		if (cases[i].ret == 0)
			TAP_OK(out == cases[i].out, "bool \"%s\" is %s",
			       cases[i].in, cases[i].out ? "true" : "false");
		else
			TAP_OK(out == before, "bool \"%s\" leaves output alone",
			       cases[i].in);
	}
}

static void test_uint32(void)
{
	static const struct {
		const char *in;
		uint32_t min, max;
		int ret;
		uint32_t out;
	} cases[] = {
	    {"5", 1, 10, 0, 5},
	    {"1", 1, 10, 0, 1},
	    {"10", 1, 10, 0, 10},
	    {"010", 1, 10, 0, 10},
	    {"0", 0, 10, 0, 0},
	    {"0", 1, 10, -ERANGE, 0},
	    {"11", 1, 10, -ERANGE, 0},
	    {"4294967295", 0, UINT32_MAX, 0, UINT32_MAX},
	    {"4294967296", 0, UINT32_MAX, -ERANGE, 0},
	    {"99999999999999999999999", 0, UINT32_MAX, -ERANGE, 0},
	    {"", 0, 10, -EINVAL, 0},
	    {"-1", 0, 10, -EINVAL, 0},
	    {"+1", 0, 10, -EINVAL, 0},
	    {"1x", 0, 10, -EINVAL, 0},
	    {"1s", 0, 10, -EINVAL, 0},
	    {" 1", 0, 10, -EINVAL, 0},
	    {"1 ", 0, 10, -EINVAL, 0},
	    {"auto", 1, 64, -EINVAL, 0},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint32_t out = 0xdeadbeef;
		int ret = value_parse_uint32(cases[i].in, cases[i].min,
					     cases[i].max, &out);

		TAP_EQ_INT(ret, cases[i].ret,
			   "uint32 \"%s\" in %u..%u returns %d", cases[i].in,
			   (unsigned)cases[i].min, (unsigned)cases[i].max,
			   cases[i].ret);
		TAP_EQ_INT(out, cases[i].ret == 0 ? cases[i].out : 0xdeadbeef,
			   "uint32 \"%s\" output", cases[i].in);
	}
}

static void test_sockaddr_ok(void)
{
	static const struct {
		const char *in;
		int family;
		unsigned port;
		const char *text;
	} cases[] = {
	    {"1.2.3.4:25", AF_INET, 25, "1.2.3.4:25"},
	    {"127.0.0.1:25", AF_INET, 25, "127.0.0.1:25"},
	    {"0.0.0.0:587", AF_INET, 587, "0.0.0.0:587"},
	    {"255.255.255.255:65535", AF_INET, 65535, "255.255.255.255:65535"},
	    {"1.2.3.4:1", AF_INET, 1, "1.2.3.4:1"},
	    {"1.2.3.4:0025", AF_INET, 25, "1.2.3.4:25"},
	    {"[::1]:587", AF_INET6, 587, "[::1]:587"},
	    {"[::1]:25", AF_INET6, 25, "[::1]:25"},
	    {"[::]:465", AF_INET6, 465, "[::]:465"},
	    {"[0:0:0:0:0:0:0:1]:25", AF_INET6, 25, "[::1]:25"},
	    {"[2001:DB8::0001]:2525", AF_INET6, 2525, "[2001:db8::1]:2525"},
	    {"[::ffff:192.0.2.1]:25", AF_INET6, 25, "[::ffff:192.0.2.1]:25"},
	    {"[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535", AF_INET6,
	     65535, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config_addr addr;
		unsigned port = 0;
		int ret;

		memset(&addr, 0xaa, sizeof(addr));
		ret = value_parse_sockaddr(cases[i].in, &addr);
		TAP_EQ_INT(ret, 0, "sockaddr \"%s\" parses", cases[i].in);
		if (ret != 0)
			continue;
		TAP_EQ_STR(addr.text, cases[i].text, "sockaddr \"%s\" text",
			   cases[i].in);
		TAP_EQ_INT(addr.ss.ss_family, cases[i].family,
			   "sockaddr \"%s\" family", cases[i].in);
		if (cases[i].family == AF_INET) {
			struct sockaddr_in sin;

			memcpy(&sin, &addr.ss, sizeof(sin));
			port = ntohs(sin.sin_port);
			TAP_EQ_INT(addr.len, sizeof(sin), "sockaddr \"%s\" len",
				   cases[i].in);
		} else {
			struct sockaddr_in6 sin6;

			memcpy(&sin6, &addr.ss, sizeof(sin6));
			port = ntohs(sin6.sin6_port);
			TAP_EQ_INT(addr.len, sizeof(sin6),
				   "sockaddr \"%s\" len", cases[i].in);
			TAP_EQ_INT(sin6.sin6_scope_id, 0,
				   "sockaddr \"%s\" scope id", cases[i].in);
		}
		TAP_EQ_INT(port, cases[i].port, "sockaddr \"%s\" port",
			   cases[i].in);
	}
}

static bool same_bytes(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++) {
		if (x[i] != y[i])
			return false;
	}
	return true;
}

static void test_sockaddr_bad(void)
{
	static const char *const cases[] = {
	    "",
	    "[::1]",
	    "1.2.3.4",
	    "1.2.3.4:0",
	    "1.2.3.4:65536",
	    "1.2.3.4:99999999999999999999",
	    "1.2.3.4:",
	    "1.2.3.4:-1",
	    "1.2.3.4:+25",
	    "1.2.3.4:25x",
	    "1.2.3.4: 25",
	    " 1.2.3.4:25",
	    "1.2.3.4:25 ",
	    ":25",
	    "::1:25", /* IPv6 needs brackets */
	    "[::1]25",
	    "[::1]:",
	    "[::1]:0",
	    "[]:25",
	    "[::1:25",
	    "::1]:25",
	    "[1.2.3.4]:25",
	    "[::1]:25:25",
	    "[fe80::1%eth0]:25",
	    "1.2.3:25",
	    "256.1.1.1:25",
	    "1.2.3.4.5:25",
	    "localhost:25",
	    "mail.example.com:587",
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:25",
	    "[0000000000000000000000000000000000000000000000000000::1]:25",
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		/* Bytes, not a struct copy: padding must compare too. */
		unsigned char before[sizeof(struct config_addr)];
		struct config_addr addr;

		memset(&addr, 0xaa, sizeof(addr));
		memcpy(before, &addr, sizeof(addr));
		TAP_EQ_INT(value_parse_sockaddr(cases[i], &addr), -EINVAL,
			   "sockaddr \"%s\" is refused", cases[i]);
		TAP_OK(same_bytes(before, &addr, sizeof(addr)),
		       "sockaddr \"%s\" leaves output alone", cases[i]);
	}
}

/* [metrics] allow entries: an address range, or a bare address. */
static void test_cidr_ok(void)
{
	static const struct {
		const char *in;
		int family;
		unsigned prefix;
		const char *addr; /* inet_ntop of the stored address */
	} cases[] = {
	    {"192.0.2.0/24", AF_INET, 24, "192.0.2.0"},
	    {"10.0.0.0/8", AF_INET, 8, "10.0.0.0"},
	    {"192.0.2.128/25", AF_INET, 25, "192.0.2.128"},
	    {"128.0.0.0/1", AF_INET, 1, "128.0.0.0"},
	    {"127.0.0.1", AF_INET, 32, "127.0.0.1"}, /* bare: a /32 */
	    {"192.0.2.1/32", AF_INET, 32, "192.0.2.1"},
	    {"0.0.0.0/0", AF_INET, 0, "0.0.0.0"},
	    {"10.0.0.0/08", AF_INET, 8, "10.0.0.0"}, /* as value_parse_uint32 */
	    {"2001:db8::/32", AF_INET6, 32, "2001:db8::"},
	    {"2001:DB8::/32", AF_INET6, 32, "2001:db8::"},
	    {"2001:db8::8000:0:0:0/65", AF_INET6, 65, "2001:db8:0:0:8000::"},
	    {"::1", AF_INET6, 128, "::1"}, /* bare: a /128 */
	    {"2001:db8::1/128", AF_INET6, 128, "2001:db8::1"},
	    {"::/0", AF_INET6, 0, "::"},
	    {"fe80::/10", AF_INET6, 10, "fe80::"},
	    {"::ffff:192.0.2.0/120", AF_INET6, 120, "::ffff:192.0.2.0"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config_cidr c;
		char text[INET6_ADDRSTRLEN] = "";
		int ret;

		memset(&c, 0xaa, sizeof(c));
		ret = value_parse_cidr(cases[i].in, &c);
		TAP_EQ_INT(ret, 0, "cidr \"%s\" parses", cases[i].in);
		if (ret != 0)
			continue;
		TAP_EQ_INT(c.family, cases[i].family, "cidr \"%s\" family",
			   cases[i].in);
		TAP_EQ_INT(c.prefix, cases[i].prefix, "cidr \"%s\" prefix",
			   cases[i].in);
		inet_ntop(c.family, c.addr, text, sizeof(text));
		TAP_EQ_STR(text, cases[i].addr, "cidr \"%s\" address",
			   cases[i].in);
	}
}

static void test_cidr_bad(void)
{
	static const char *const cases[] = {
	    /* Bits set past the prefix: would not mean what it says. */
	    "10.1.2.3/8",
	    "192.0.2.1/31",
	    "192.0.2.1/24",
	    "127.0.0.1/0",
	    "2001:db8::1/64",
	    "2001:db8::8000:0:0:0/64",
	    "::1/0",
	    /* Prefix out of range or malformed. */
	    "10.0.0.0/33",
	    "::/129",
	    "10.0.0.0/",
	    "10.0.0.0/-1",
	    "10.0.0.0/+8",
	    "10.0.0.0/ 8",
	    "10.0.0.0/8 ",
	    "10.0.0.0/8x",
	    "10.0.0.0/8/8",
	    "10.0.0.0/99999999999999999999",
	    /* Not an address. */
	    "",
	    "/24",
	    " 10.0.0.0/8",
	    "10.0.0/8",
	    "10.0.0.256",
	    "localhost",
	    "garbage",
	    "1.2.3.4:25",
	    "[::1]",
	    "[::1]/128",
	    "fe80::1%eth0",
	    "::ffff:1.2.3",
	    "2001:db8::/32,10.0.0.0/8",
	    "0000:0000:0000:0000:0000:0000:0000:0000:0000:0001/128",
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		unsigned char before[sizeof(struct config_cidr)];
		struct config_cidr c;

		memset(&c, 0xaa, sizeof(c));
		memcpy(before, &c, sizeof(c));
		TAP_OK(value_parse_cidr(cases[i], &c) < 0,
		       "cidr \"%s\" is refused", cases[i]);
		TAP_OK(same_bytes(before, &c, sizeof(c)),
		       "cidr \"%s\" leaves output alone", cases[i]);
	}
}

/* A peer address as accept() gives it: AF_INET, or AF_INET6 (where an
 * IPv4 client on a dual-stack socket is ::ffff:a.b.c.d). */
static void peer(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(40000);
		if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1)
			printf("Bail out! bad test address %s\n", text);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
		if (inet_pton(AF_INET, text, &sin->sin_addr) != 1)
			printf("Bail out! bad test address %s\n", text);
	}
}

static void test_cidr_match(void)
{
	static const struct {
		const char *range, *addr;
		bool match;
	} cases[] = {
	    {"192.0.2.0/24", "192.0.2.200", true},
	    {"192.0.2.0/24", "192.0.2.0", true},
	    {"192.0.2.0/24", "192.0.3.1", false},
	    {"192.0.2.128/25", "192.0.2.200", true},
	    {"192.0.2.128/25", "192.0.2.100", false},
	    {"128.0.0.0/1", "200.1.1.1", true},
	    {"128.0.0.0/1", "127.255.255.255", false},
	    {"10.0.0.0/8", "10.255.255.255", true},
	    {"10.0.0.0/8", "11.0.0.0", false},
	    {"127.0.0.1", "127.0.0.1", true},
	    {"127.0.0.1", "127.0.0.2", false},
	    {"0.0.0.0/0", "203.0.113.9", true},
	    {"0.0.0.0/0", "0.0.0.0", true},
	    /* An IPv4 range and an IPv4-mapped IPv6 peer: its IPv4 address. */
	    {"192.0.2.0/24", "::ffff:192.0.2.7", true},
	    {"192.0.2.0/24", "::ffff:192.0.3.7", false},
	    {"127.0.0.1", "::ffff:127.0.0.1", true},
	    {"0.0.0.0/0", "::ffff:198.51.100.1", true},
	    /* ... but no other IPv6 address, whatever its low 32 bits. */
	    {"0.0.0.0/0", "::1", false},
	    {"192.0.2.0/24", "::192.0.2.7", false}, /* IPv4-compatible */
	    {"192.0.2.0/24", "64:ff9b::192.0.2.7", false}, /* NAT64 */
	    {"192.0.2.0/24", "2001:db8::c000:207", false},
	    /* IPv6 ranges. */
	    {"2001:db8::/32", "2001:db8:ffff::1", true},
	    {"2001:db8::/32", "2001:db9::1", false},
	    {"2001:db8::8000:0:0:0/65", "2001:db8::ffff:0:0:1", true},
	    {"2001:db8::8000:0:0:0/65", "2001:db8::7fff:0:0:1", false},
	    {"fe80::/10", "febf::1", true},
	    {"fe80::/10", "fec0::1", false},
	    {"::1", "::1", true},
	    {"::1", "::2", false},
	    {"::/0", "2001:db8::1", true},
	    {"::/0", "::ffff:127.0.0.1", true},
	    {"::ffff:192.0.2.0/120", "::ffff:192.0.2.9", true},
	    /* An IPv6 range never holds an AF_INET peer. */
	    {"::/0", "127.0.0.1", false},
	    {"::ffff:127.0.0.0/104", "127.0.0.1", false},
	    {"2001:db8::/32", "192.0.2.1", false},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config_cidr c;
		struct sockaddr_storage ss;

		if (value_parse_cidr(cases[i].range, &c) < 0) {
			TAP_OK(0, "cidr match: \"%s\" parses", cases[i].range);
			continue;
		}
		peer(cases[i].addr, &ss);
		TAP_EQ_INT(value_cidr_match(&c, (struct sockaddr *)&ss),
			   cases[i].match, "cidr \"%s\" %s %s", cases[i].range,
			   cases[i].match ? "holds" : "does not hold",
			   cases[i].addr);
	}

	/* Neither family: never. */
	{
		struct config_cidr c;
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		ss.ss_family = AF_UNIX;
		value_parse_cidr("0.0.0.0/0", &c);
		TAP_OK(!value_cidr_match(&c, (struct sockaddr *)&ss),
		       "cidr 0.0.0.0/0 does not hold an AF_UNIX peer");
		value_parse_cidr("::/0", &c);
		TAP_OK(!value_cidr_match(&c, (struct sockaddr *)&ss),
		       "cidr ::/0 does not hold an AF_UNIX peer");
	}
}

int main(void)
{
	test_u64_table("duration", duration_cases, ARRAY_SIZE(duration_cases),
		       value_parse_duration_ms);
	test_u64_table("size", size_cases, ARRAY_SIZE(size_cases),
		       value_parse_size);
	test_bool();
	test_uint32();
	test_sockaddr_ok();
	test_sockaddr_bad();
	test_cidr_ok();
	test_cidr_bad();
	test_cidr_match();
	return tap_done();
}
