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
	return tap_done();
}
