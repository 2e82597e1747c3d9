/*
 * test_proxyproto.c - the PROXY protocol header (HAProxy's
 * doc/proxy-protocol.txt, v1 and v2), table-driven.
 *
 * Every case is also fed as a reader would see it, one prefix at a time
 * (the parser is stateless: the caller parses all it has received each
 * time more arrives).  Each prefix is copied to a heap buffer of its exact
 * size so that AddressSanitizer sees a read past it.  A good header must
 * be INCOMPLETE up to its last byte, then OK with the same result whatever
 * follows; a bad one INCOMPLETE up to the first byte that cannot belong to
 * a header, then ERROR.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxyproto.h"
#include "tests/unit/tap.h"

/* A string literal as bytes and length, NULs included. */
#define BYTES(s) (s), sizeof(s) - 1

#define V2_SIG		 "\r\n\r\n\0\r\nQUIT\n"
#define TLS_CLIENT_HELLO "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"

/* Headers that parse. */
struct good_case {
	const char *name;
	const char *bytes;
	size_t len;
	size_t header_len; /* 0: all the bytes */
	int version;
	/* NULL: no address (v1 UNKNOWN, v2 LOCAL or UNSPEC). */
	const char *src;
	unsigned int src_port;
	const char *dst;
	unsigned int dst_port;
};

static const struct good_case good_cases[] = {
    /* v1, spec §2.1 */
    {"v1_tcp4", BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\r\n"), 0, 1,
     "192.0.2.1", 56324, "198.51.100.2", 587},
    {"v1_tcp6", BYTES("PROXY TCP6 2001:db8::1 2001:db8::2 56324 465\r\n"), 0, 1,
     "2001:db8::1", 56324, "2001:db8::2", 465},
    {"v1_tcp6_upper_case_and_ipv4_tail",
     BYTES("PROXY TCP6 2001:DB8::A ::ffff:192.0.2.1 1 2\r\n"), 0, 1,
     "2001:db8::a", 1, "::ffff:192.0.2.1", 2},
    {"v1_tcp6_longest_line_104_bytes",
     BYTES("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     0, 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535},
    {"v1_port_zero", BYTES("PROXY TCP4 0.0.0.0 127.0.0.1 0 0\r\n"), 0, 1,
     "0.0.0.0", 0, "127.0.0.1", 0},
    {"v1_unknown", BYTES("PROXY UNKNOWN\r\n"), 0, 1, NULL, 0, NULL, 0},
    {"v1_unknown_rest_of_line_ignored",
     BYTES("PROXY UNKNOWN ffff:f::1 whatever\t99\r\n"), 0, 1, NULL, 0, NULL, 0},
    {"v1_unknown_with_empty_rest", BYTES("PROXY UNKNOWN \r\n"), 0, 1, NULL, 0,
     NULL, 0},
    {"v1_tcp4_then_smtp",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\r\nEHLO x\r\n"), 45, 1,
     "192.0.2.1", 56324, "198.51.100.2", 587},
    {"v1_tcp6_then_tls_client_hello",
     BYTES("PROXY TCP6 2001:db8::1 2001:db8::2 56324 465\r\n" TLS_CLIENT_HELLO),
     46, 1, "2001:db8::1", 56324, "2001:db8::2", 465},
    {"v1_unknown_then_header_like_bytes",
     BYTES("PROXY UNKNOWN\r\nPROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"), 15, 1,
     NULL, 0, NULL, 0},
    /* v2, spec §2.2 */
    {"v2_tcp4",
     BYTES(V2_SIG "\x21\x11\x00\x0c"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x02\x4b"),
     0, 2, "192.0.2.1", 56324, "198.51.100.2", 587},
    {"v2_tcp6",
     BYTES(V2_SIG "\x21\x21\x00\x24"
		  "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
		  "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
		  "\xdc\x04\x01\xd1"),
     0, 2, "2001:db8::1", 56324, "2001:db8::2", 465},
    {"v2_tcp4_then_tls_client_hello",
     BYTES(V2_SIG "\x21\x11\x00\x0c"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x01\xd1" TLS_CLIENT_HELLO),
     28, 2, "192.0.2.1", 56324, "198.51.100.2", 465},
    /* TLVs: PP2_TYPE_AUTHORITY "mail.example", PP2_TYPE_NOOP. */
    {"v2_tcp4_with_tlvs_then_smtp",
     BYTES(V2_SIG "\x21\x11\x00\x21"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x02\x4b"
		  "\x02\x00\x0cmail.example"
		  "\x04\x00\x03\0\0\0"
		  "EHLO x\r\n"),
     49, 2, "192.0.2.1", 56324, "198.51.100.2", 587},
    {"v2_tlvs_skipped_without_parsing",
     BYTES(V2_SIG "\x21\x11\x00\x0f"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x02\x4b"
		  "\xff\xff\xff"),
     0, 2, "192.0.2.1", 56324, "198.51.100.2", 587},
    {"v2_local_unspec", BYTES(V2_SIG "\x20\x00\x00\x00"), 0, 2, NULL, 0, NULL,
     0},
    {"v2_local_addresses_ignored",
     BYTES(V2_SIG "\x20\x11\x00\x0c"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x02\x4b"),
     0, 2, NULL, 0, NULL, 0},
    {"v2_local_with_tlvs_then_smtp",
     BYTES(V2_SIG "\x20\x00\x00\x03\x04\x00\x00"
		  "EHLO x\r\n"),
     19, 2, NULL, 0, NULL, 0},
    {"v2_proxy_unspec_has_no_address", BYTES(V2_SIG "\x21\x00\x00\x00"), 0, 2,
     NULL, 0, NULL, 0},
};

/* Headers refused (ERROR) or waiting for more (INCOMPLETE). */
struct bad_case {
	const char *name;
	const char *bytes;
	size_t len;
	enum proxyproto_result result;
	/* ERROR: after how many bytes it is refused (0: the last one). */
	size_t refused_at;
};

static const struct bad_case bad_cases[] = {
    /* v1, spec §2.1 */
    {"v1_missing_cr", BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\n"),
     PROXYPROTO_ERROR, 0},
    {"v1_unknown_missing_cr", BYTES("PROXY UNKNOWN\n"), PROXYPROTO_ERROR, 0},
    {"v1_unknown_bare_lf_in_rest", BYTES("PROXY UNKNOWN x\ny\r\n"),
     PROXYPROTO_ERROR, 16},
    {"v1_cr_not_followed_by_lf",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\rX"), PROXYPROTO_ERROR,
     0},
    {"v1_two_spaces_after_proxy",
     BYTES("PROXY  TCP4 192.0.2.1 198.51.100.2 56324 587\r\n"),
     PROXYPROTO_ERROR, 7},
    {"v1_two_spaces_between_addresses",
     BYTES("PROXY TCP4 192.0.2.1  198.51.100.2 56324 587\r\n"),
     PROXYPROTO_ERROR, 22},
    {"v1_two_spaces_before_port",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2  56324 587\r\n"),
     PROXYPROTO_ERROR, 35},
    {"v1_space_before_crlf",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587 \r\n"),
     PROXYPROTO_ERROR, 44},
    {"v1_tab_separator", BYTES("PROXY\tTCP4 192.0.2.1"), PROXYPROTO_ERROR, 6},
    {"v1_leading_space", BYTES(" PROXY UNKNOWN\r\n"), PROXYPROTO_ERROR, 1},
    {"v1_lower_case", BYTES("proxy unknown\r\n"), PROXYPROTO_ERROR, 1},
    {"v1_no_protocol", BYTES("PROXY\r\n"), PROXYPROTO_ERROR, 6},
    {"v1_tcp5", BYTES("PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n"),
     PROXYPROTO_ERROR, 10},
    {"v1_udp4", BYTES("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n"),
     PROXYPROTO_ERROR, 8},
    {"v1_unknown_glued_to_text", BYTES("PROXY UNKNOWNX\r\n"), PROXYPROTO_ERROR,
     14},
    {"v1_ipv4_octet_over_255",
     BYTES("PROXY TCP4 192.0.2.256 198.51.100.2 56324 587\r\n"),
     PROXYPROTO_ERROR, 23},
    {"v1_ipv4_heading_zero",
     BYTES("PROXY TCP4 192.0.2.01 198.51.100.2 56324 587\r\n"),
     PROXYPROTO_ERROR, 22},
    {"v1_ipv4_three_parts", BYTES("PROXY TCP4 192.0.2 192.0.2.2 1 2\r\n"),
     PROXYPROTO_ERROR, 19},
    {"v1_ipv4_with_nul",
     BYTES("PROXY TCP4 192.0\0.2.1 198.51.100.2 56324 587\r\n"),
     PROXYPROTO_ERROR, 17},
    {"v1_tcp4_with_ipv6_address",
     BYTES("PROXY TCP4 2001:db8::1 2001:db8::2 56324 587\r\n"),
     PROXYPROTO_ERROR, 16},
    {"v1_tcp6_with_ipv4_address",
     BYTES("PROXY TCP6 192.0.2.1 198.51.100.2 56324 587\r\n"), PROXYPROTO_ERROR,
     21},
    {"v1_ipv6_two_double_colons", BYTES("PROXY TCP6 2001::db8::1 ::1 1 2\r\n"),
     PROXYPROTO_ERROR, 24},
    {"v1_ipv6_zone_index", BYTES("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
     PROXYPROTO_ERROR, 19},
    {"v1_ipv6_longer_than_inet6_addrstrlen",
     BYTES("PROXY TCP6 0000000000000000000000000000000000000000000000 ::1 1 "
	   "2\r\n"),
     PROXYPROTO_ERROR, 57},
    {"v1_src_port_65536",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 65536 587\r\n"), PROXYPROTO_ERROR,
     39},
    {"v1_dst_port_65536",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 65536\r\n"),
     PROXYPROTO_ERROR, 45},
    {"v1_port_heading_zero",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 01 587\r\n"), PROXYPROTO_ERROR,
     36},
    {"v1_port_double_zero",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 00 587\r\n"), PROXYPROTO_ERROR,
     36},
    {"v1_port_plus_sign", BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 +1 587\r\n"),
     PROXYPROTO_ERROR, 35},
    {"v1_port_minus_sign",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 -1\r\n"), PROXYPROTO_ERROR,
     41},
    {"v1_dst_port_missing",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 \r\n"), PROXYPROTO_ERROR,
     41},
    {"v1_one_port_only", BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n"),
     PROXYPROTO_ERROR, 40},
    {"v1_extra_field",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587 1\r\n"),
     PROXYPROTO_ERROR, 44},
    /* A client that talks first, to a listener that expects the header,
     * is refused on its first byte. */
    {"smtp_ehlo_refused_at_once", BYTES("EHLO x\r\n"), PROXYPROTO_ERROR, 1},
    {"tls_client_hello_refused_at_once", BYTES(TLS_CLIENT_HELLO),
     PROXYPROTO_ERROR, 1},
    {"http_post_refused_at_second_byte", BYTES("POST / HTTP/1.1\r\n"),
     PROXYPROTO_ERROR, 2},
    {"nothing_yet", BYTES(""), PROXYPROTO_INCOMPLETE, 0},
    {"v1_truncated_in_address", BYTES("PROXY TCP4 192.0.2.1"),
     PROXYPROTO_INCOMPLETE, 0},
    {"v1_truncated_before_lf",
     BYTES("PROXY TCP4 192.0.2.1 198.51.100.2 56324 587\r"),
     PROXYPROTO_INCOMPLETE, 0},
    {"v1_unknown_truncated", BYTES("PROXY UNKNOWN whatever"),
     PROXYPROTO_INCOMPLETE, 0},
    /* v2, spec §2.2 */
    {"v2_wrong_signature", BYTES("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c"),
     PROXYPROTO_ERROR, 11},
    {"v2_signature_without_nul", BYTES("\r\n\r\n\r\nQUIT\n\x21\x11\x00\x0c"),
     PROXYPROTO_ERROR, 5},
    {"v2_version_1", BYTES(V2_SIG "\x11\x11\x00\x0c"), PROXYPROTO_ERROR, 13},
    {"v2_version_3", BYTES(V2_SIG "\x31\x11\x00\x0c"), PROXYPROTO_ERROR, 13},
    {"v2_command_2", BYTES(V2_SIG "\x22\x11\x00\x0c"), PROXYPROTO_ERROR, 13},
    {"v2_command_15", BYTES(V2_SIG "\x2f\x11\x00\x0c"), PROXYPROTO_ERROR, 13},
    {"v2_udp4", BYTES(V2_SIG "\x21\x12\x00\x0c"), PROXYPROTO_ERROR, 14},
    {"v2_udp6", BYTES(V2_SIG "\x21\x22\x00\x24"), PROXYPROTO_ERROR, 14},
    {"v2_unix_stream", BYTES(V2_SIG "\x21\x31\x00\xd8"), PROXYPROTO_ERROR, 14},
    {"v2_unix_dgram", BYTES(V2_SIG "\x21\x32\x00\xd8"), PROXYPROTO_ERROR, 14},
    {"v2_local_udp4", BYTES(V2_SIG "\x20\x12\x00\x0c"), PROXYPROTO_ERROR, 14},
    {"v2_unknown_family", BYTES(V2_SIG "\x21\x41\x00\x0c"), PROXYPROTO_ERROR,
     14},
    {"v2_tcp4_length_too_small", BYTES(V2_SIG "\x21\x11\x00\x0b"),
     PROXYPROTO_ERROR, 16},
    {"v2_tcp6_length_too_small", BYTES(V2_SIG "\x21\x21\x00\x0c"),
     PROXYPROTO_ERROR, 16},
    {"v2_local_tcp4_length_too_small", BYTES(V2_SIG "\x20\x11\x00\x00"),
     PROXYPROTO_ERROR, 16},
    {"v2_length_over_max_by_one", BYTES(V2_SIG "\x21\x11\x03\xf1"),
     PROXYPROTO_ERROR, 16},
    {"v2_length_65535", BYTES(V2_SIG "\x21\x11\xff\xff"), PROXYPROTO_ERROR, 16},
    {"v2_signature_only", BYTES(V2_SIG), PROXYPROTO_INCOMPLETE, 0},
    {"v2_truncated_in_length", BYTES(V2_SIG "\x21\x11\x00"),
     PROXYPROTO_INCOMPLETE, 0},
    {"v2_truncated_in_addresses",
     BYTES(V2_SIG "\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6"),
     PROXYPROTO_INCOMPLETE, 0},
    {"v2_truncated_in_tlvs",
     BYTES(V2_SIG "\x21\x11\x00\x21"
		  "\xc0\x00\x02\x01"
		  "\xc6\x33\x64\x02"
		  "\xdc\x04\x02\x4b"
		  "\x02\x00\x0cmail"),
     PROXYPROTO_INCOMPLETE, 0},
};

static enum proxyproto_result parse_copy(const char *bytes, size_t len,
					 struct proxyproto_info *info,
					 size_t *consumed_r)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);
	enum proxyproto_result r;

	if (copy == NULL)
		abort();
	memcpy(copy, bytes, len);
	r = proxyproto_parse(copy, len, info, consumed_r);
	free(copy);
	return r;
}

static bool info_equal(const struct proxyproto_info *a,
		       const struct proxyproto_info *b)
{
	return a->version == b->version && a->has_addr == b->has_addr &&
	       memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	       memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

static const char *addr_text(const struct sockaddr_storage *ss, char *buf,
			     size_t size)
{
	const void *addr;

	if (ss->ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	else
		return "(no address)";
	return inet_ntop(ss->ss_family, addr, buf, (socklen_t)size);
}

static unsigned int addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

static void check_info(const char *name, const struct proxyproto_info *info,
		       const struct good_case *c)
{
	char text[INET6_ADDRSTRLEN];

	TAP_EQ_INT(info->version, c->version, "%s: version", name);
	TAP_EQ_INT(info->has_addr, c->src != NULL, "%s: has_addr", name);
	if (c->src == NULL) {
		/* The connection's own addresses stand. */
		TAP_OK(info->src.ss_family == AF_UNSPEC &&
			   info->dst.ss_family == AF_UNSPEC,
		       "%s: no address filled in", name);
		return;
	}
	TAP_EQ_INT(info->src.ss_family, info->dst.ss_family, "%s: one family",
		   name);
	TAP_EQ_STR(addr_text(&info->src, text, sizeof(text)), c->src,
		   "%s: source address", name);
	TAP_EQ_INT(addr_port(&info->src), c->src_port, "%s: source port", name);
	TAP_EQ_STR(addr_text(&info->dst, text, sizeof(text)), c->dst,
		   "%s: destination address", name);
	TAP_EQ_INT(addr_port(&info->dst), c->dst_port, "%s: destination port",
		   name);
}

/* Feeds every prefix: INCOMPLETE below `at` bytes, then `result` (with
 * the same header length and info) from `at` on. */
static void check_every_prefix(const char *name, const char *bytes, size_t len,
			       enum proxyproto_result result, size_t at)
{
	struct proxyproto_info whole, part;
	size_t whole_consumed, consumed, k, bad_at = SIZE_MAX;

	parse_copy(bytes, len, &whole, &whole_consumed);
	for (k = 0; k <= len && bad_at == SIZE_MAX; k++) {
		enum proxyproto_result r =
		    parse_copy(bytes, k, &part, &consumed);

		if (k < at ? r != PROXYPROTO_INCOMPLETE
			   : r != result || consumed != whole_consumed ||
				 (r == PROXYPROTO_OK &&
				  !info_equal(&part, &whole)))
			bad_at = k;
	}
	TAP_OK(bad_at == SIZE_MAX, "%s: INCOMPLETE below %zu bytes, then %s",
	       name, at, result == PROXYPROTO_OK ? "OK" : "ERROR");
	if (bad_at != SIZE_MAX)
		printf("# wrong result after %zu bytes\n", bad_at);
}

static void check_good_case(const struct good_case *c)
{
	struct proxyproto_info info;
	size_t header_len = c->header_len > 0 ? c->header_len : c->len;
	size_t consumed = SIZE_MAX;

	TAP_EQ_INT(parse_copy(c->bytes, c->len, &info, &consumed),
		   PROXYPROTO_OK, "%s: OK", c->name);
	TAP_EQ_INT(consumed, header_len, "%s: header length", c->name);
	check_info(c->name, &info, c);
	check_every_prefix(c->name, c->bytes, c->len, PROXYPROTO_OK,
			   header_len);
}

static void check_bad_case(const struct bad_case *c)
{
	struct proxyproto_info info;
	size_t consumed = SIZE_MAX;

	TAP_EQ_INT(parse_copy(c->bytes, c->len, &info, &consumed), c->result,
		   "%s: %s", c->name,
		   c->result == PROXYPROTO_ERROR ? "ERROR" : "INCOMPLETE");
	TAP_EQ_INT(consumed, 0, "%s: nothing consumed", c->name);
	if (c->result == PROXYPROTO_ERROR)
		check_every_prefix(c->name, c->bytes, c->len, PROXYPROTO_ERROR,
				   c->refused_at > 0 ? c->refused_at : c->len);
}

/* Spec §2.1: at most 107 bytes, CR LF included. */
static void test_v1_length_limit(void)
{
	char line[PROXYPROTO_V1_MAX + 1];
	struct proxyproto_info info;
	size_t consumed;
	size_t fill = PROXYPROTO_V1_MAX - strlen("PROXY UNKNOWN ") - 2;

	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'x', sizeof(line) - 14);
	memcpy(line + 14 + fill, "\r\n", 2);
	TAP_EQ_INT(parse_copy(line, PROXYPROTO_V1_MAX, &info, &consumed),
		   PROXYPROTO_OK, "v1 line of exactly 107 bytes accepted");
	TAP_EQ_INT(consumed, PROXYPROTO_V1_MAX, "v1 line of 107 bytes: length");
	check_every_prefix("v1_line_of_107_bytes", line, PROXYPROTO_V1_MAX,
			   PROXYPROTO_OK, PROXYPROTO_V1_MAX);

	memset(line + 14, 'x', sizeof(line) - 14);
	check_every_prefix("v1_no_crlf_within_107_bytes", line,
			   PROXYPROTO_V1_MAX, PROXYPROTO_ERROR,
			   PROXYPROTO_V1_MAX);

	/* The CR is byte 107: the LF would be byte 108. */
	memcpy(line + 14 + fill + 1, "\r\n", 2);
	check_every_prefix("v1_crlf_ending_at_byte_108", line,
			   PROXYPROTO_V1_MAX + 1, PROXYPROTO_ERROR,
			   PROXYPROTO_V1_MAX);
}

/* Our limit: the whole v2 header within PROXYPROTO_V2_MAX bytes. */
static void test_v2_length_limit(void)
{
	static char hdr[PROXYPROTO_V2_MAX + 1];
	size_t body = PROXYPROTO_V2_MAX - 16;
	struct proxyproto_info info;
	size_t consumed;

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, V2_SIG "\x21\x11", 14);
	hdr[14] = (char)(body >> 8);
	hdr[15] = (char)(body & 0xff);
	/* Addresses, then one PP2_TYPE_NOOP TLV filling the rest. */
	memcpy(hdr + 16, "\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x02\x4b",
	       12);
	hdr[28] = 0x04;
	hdr[29] = (char)((body - 12 - 3) >> 8);
	hdr[30] = (char)((body - 12 - 3) & 0xff);
	hdr[PROXYPROTO_V2_MAX] = 'E';

	TAP_EQ_INT(parse_copy(hdr, PROXYPROTO_V2_MAX - 1, &info, &consumed),
		   PROXYPROTO_INCOMPLETE,
		   "v2 of the maximum length, one short");
	TAP_EQ_INT(parse_copy(hdr, sizeof(hdr), &info, &consumed),
		   PROXYPROTO_OK, "v2 of the maximum length accepted");
	TAP_EQ_INT(consumed, PROXYPROTO_V2_MAX,
		   "v2 of the maximum length: "
		   "length");
	check_every_prefix("v2_of_the_maximum_length", hdr, sizeof(hdr),
			   PROXYPROTO_OK, PROXYPROTO_V2_MAX);
}

int main(void)
{
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++)
		check_good_case(&good_cases[i]);
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		check_bad_case(&bad_cases[i]);
	test_v1_length_limit();
	test_v2_length_limit();
	return tap_done();
}
