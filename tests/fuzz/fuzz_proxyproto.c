/*
 * fuzz_proxyproto.c - libFuzzer harness for proxy/proxyproto.c, the first
 * parser to see a connection's bytes on a listener with proxy_protocol.
 *
 * The input is parsed whole and as some of its prefixes (what a reader
 * has after a short read), each copied to a heap buffer of its exact size
 * so that AddressSanitizer sees a read past it.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: on OK the header length is within the input and the version's
 * maximum; nothing is consumed otherwise; INCOMPLETE never comes once the
 * maximum is reached (PROXYPROTO_V1_MAX bytes for v1, PROXYPROTO_V2_MAX
 * for v2); a prefix is INCOMPLETE or gives the same answer as the whole
 * input (same length and info on OK), so a header is recognised the moment
 * it is complete whatever follows; and the answer agrees with a reference
 * model of each version written from the spec, line-split for v1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static const unsigned char fuzz_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

static enum proxyproto_result fuzz_parse(const uint8_t *data, size_t len,
					 struct proxyproto_info *info,
					 size_t *consumed_r)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);
	enum proxyproto_result r;

	FUZZ_CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, data, len);
	*consumed_r = SIZE_MAX;
	r = proxyproto_parse(copy, len, info, consumed_r);
	free(copy);
	FUZZ_CHECK(r == PROXYPROTO_OK || r == PROXYPROTO_INCOMPLETE ||
		   r == PROXYPROTO_ERROR);
	if (r != PROXYPROTO_OK)
		FUZZ_CHECK(*consumed_r == 0);
	return r;
}

static bool fuzz_info_equal(const struct proxyproto_info *a,
			    const struct proxyproto_info *b)
{
	return a->version == b->version && a->has_addr == b->has_addr &&
	       memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	       memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

/* Reference model, v1: the line up to the first CR LF within the first
 * PROXYPROTO_V1_MAX bytes, split at single spaces.  Returns 1 (valid, with
 * *len_r), 0 (invalid) or -1 (no CR LF within what there is). */
static bool ref_v1_port(const unsigned char *p, size_t n)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return v <= 65535;
}

static bool ref_v1_addr(int family, const unsigned char *p, size_t n)
{
	char text[64];
	unsigned char addr[16];

	if (n == 0 || n >= sizeof(text) || memchr(p, '\0', n) != NULL)
		return false;
	memcpy(text, p, n);
	text[n] = '\0';
	return inet_pton(family, text, addr) == 1;
}

static int ref_v1(const uint8_t *d, size_t len, size_t *len_r)
{
	size_t lim = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	const unsigned char *field[6];
	size_t field_len[6], nfields = 0, i, start = 0;
	int family;

	for (i = 0; i + 1 < lim; i++)
		if (d[i] == '\r' && d[i + 1] == '\n')
			break;
	if (i + 1 >= lim)
		return -1;
	*len_r = i + 2;
	if (memchr(d, '\r', i) != NULL || memchr(d, '\n', i) != NULL)
		return 0;
	if (i >= 13 && memcmp(d, "PROXY UNKNOWN", 13) == 0 &&
	    (i == 13 || d[13] == ' '))
		return 1;
	for (size_t j = 0; j <= i; j++) {
		if (j < i && d[j] != ' ')
			continue;
		if (nfields == 6)
			return 0;
		field[nfields] = d + start;
		field_len[nfields++] = j - start;
		start = j + 1;
	}
	if (nfields != 6 || field_len[0] != 5 ||
	    memcmp(field[0], "PROXY", 5) != 0 || field_len[1] != 4)
		return 0;
	if (memcmp(field[1], "TCP4", 4) == 0)
		family = AF_INET;
	else if (memcmp(field[1], "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return 0;
	return ref_v1_addr(family, field[2], field_len[2]) &&
	       ref_v1_addr(family, field[3], field_len[3]) &&
	       ref_v1_port(field[4], field_len[4]) &&
	       ref_v1_port(field[5], field_len[5]);
}

static void fuzz_check_v1(const uint8_t *data, size_t size,
			  enum proxyproto_result r, size_t consumed,
			  const struct proxyproto_info *info)
{
	size_t ref_len = 0;
	int ref = ref_v1(data, size, &ref_len);

	if (ref == 1)
		FUZZ_CHECK(r == PROXYPROTO_OK && consumed == ref_len);
	else if (ref == 0)
		FUZZ_CHECK(r == PROXYPROTO_ERROR);
	else
		FUZZ_CHECK(r != PROXYPROTO_OK);
	if (r != PROXYPROTO_OK || !info->has_addr)
		return;

	/* Printed back, the addresses parse to the same info; and a TCP4
	 * line, which has one spelling, comes out byte for byte. */
	{
		char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], line[160];
		struct proxyproto_info again;
		size_t again_len;
		int family = info->src.ss_family, n;
		const struct sockaddr_in *s4 = (const void *)&info->src;
		const struct sockaddr_in *d4 = (const void *)&info->dst;
		const struct sockaddr_in6 *s6 = (const void *)&info->src;
		const struct sockaddr_in6 *d6 = (const void *)&info->dst;

		if (family == AF_INET) {
			FUZZ_CHECK(inet_ntop(AF_INET, &s4->sin_addr, a,
					     sizeof(a)) != NULL);
			FUZZ_CHECK(inet_ntop(AF_INET, &d4->sin_addr, b,
					     sizeof(b)) != NULL);
			n = snprintf(line, sizeof(line),
				     "PROXY TCP4 %s %s %u %u\r\n", a, b,
				     ntohs(s4->sin_port), ntohs(d4->sin_port));
			FUZZ_CHECK(n > 0 && (size_t)n == consumed &&
				   memcmp(line, data, consumed) == 0);
		} else {
			FUZZ_CHECK(inet_ntop(AF_INET6, &s6->sin6_addr, a,
					     sizeof(a)) != NULL);
			FUZZ_CHECK(inet_ntop(AF_INET6, &d6->sin6_addr, b,
					     sizeof(b)) != NULL);
			n = snprintf(
			    line, sizeof(line), "PROXY TCP6 %s %s %u %u\r\n", a,
			    b, ntohs(s6->sin6_port), ntohs(d6->sin6_port));
			FUZZ_CHECK(n > 0 && (size_t)n <= PROXYPROTO_V1_MAX);
			FUZZ_CHECK(fuzz_parse((const uint8_t *)line, (size_t)n,
					      &again,
					      &again_len) == PROXYPROTO_OK);
			FUZZ_CHECK(again_len == (size_t)n &&
				   fuzz_info_equal(&again, info));
		}
	}
}

/* Reference model, v2: the fixed 16 bytes, then the length. */
static void fuzz_check_v2(const uint8_t *data, size_t size,
			  enum proxyproto_result r, size_t consumed,
			  const struct proxyproto_info *info)
{
	size_t n = size < 12 ? size : 12, addr_len, body;
	unsigned int cmd;

	if (memcmp(data, fuzz_v2_sig, n) != 0) {
		FUZZ_CHECK(r == PROXYPROTO_ERROR);
		return;
	}
	if (size < 16) {
		FUZZ_CHECK(r != PROXYPROTO_OK);
		return;
	}
	cmd = data[12] & 0x0f;
	if (data[13] == 0x00)
		addr_len = 0;
	else if (data[13] == 0x11)
		addr_len = 12;
	else if (data[13] == 0x21)
		addr_len = 36;
	else
		addr_len = SIZE_MAX;
	body = (size_t)data[14] << 8 | data[15];
	if (data[12] >> 4 != 2 || cmd > 1 || addr_len == SIZE_MAX ||
	    body < addr_len || 16 + body > PROXYPROTO_V2_MAX) {
		FUZZ_CHECK(r == PROXYPROTO_ERROR);
		return;
	}
	if (size < 16 + body) {
		FUZZ_CHECK(r == PROXYPROTO_INCOMPLETE);
		return;
	}
	FUZZ_CHECK(r == PROXYPROTO_OK && consumed == 16 + body);
	FUZZ_CHECK(info->has_addr == (cmd == 1 && addr_len > 0));
	if (!info->has_addr)
		return;
	if (addr_len == 12) {
		const struct sockaddr_in *s4 = (const void *)&info->src;
		const struct sockaddr_in *d4 = (const void *)&info->dst;

		FUZZ_CHECK(s4->sin_family == AF_INET &&
			   d4->sin_family == AF_INET);
		FUZZ_CHECK(memcmp(&s4->sin_addr, data + 16, 4) == 0 &&
			   memcmp(&d4->sin_addr, data + 20, 4) == 0 &&
			   memcmp(&s4->sin_port, data + 24, 2) == 0 &&
			   memcmp(&d4->sin_port, data + 26, 2) == 0);
	} else {
		const struct sockaddr_in6 *s6 = (const void *)&info->src;
		const struct sockaddr_in6 *d6 = (const void *)&info->dst;

		FUZZ_CHECK(s6->sin6_family == AF_INET6 &&
			   d6->sin6_family == AF_INET6);
		FUZZ_CHECK(memcmp(&s6->sin6_addr, data + 16, 16) == 0 &&
			   memcmp(&d6->sin6_addr, data + 32, 16) == 0 &&
			   memcmp(&s6->sin6_port, data + 48, 2) == 0 &&
			   memcmp(&d6->sin6_port, data + 50, 2) == 0);
	}
}

/* A prefix of `k` bytes: INCOMPLETE, or the answer for the whole. */
static void fuzz_check_prefix(const uint8_t *data, size_t k,
			      enum proxyproto_result whole, size_t consumed,
			      const struct proxyproto_info *info)
{
	struct proxyproto_info part;
	size_t part_len;
	enum proxyproto_result r = fuzz_parse(data, k, &part, &part_len);

	if (whole == PROXYPROTO_OK && k >= consumed)
		FUZZ_CHECK(r == PROXYPROTO_OK && part_len == consumed &&
			   fuzz_info_equal(&part, info));
	else if (whole == PROXYPROTO_OK || whole == PROXYPROTO_INCOMPLETE)
		FUZZ_CHECK(r == PROXYPROTO_INCOMPLETE);
	else
		FUZZ_CHECK(r == PROXYPROTO_INCOMPLETE || r == PROXYPROTO_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_info info, again;
	size_t consumed, again_len;
	enum proxyproto_result r;
	bool v1 = size > 0 && data[0] == 'P';

	r = fuzz_parse(data, size, &info, &consumed);
	FUZZ_CHECK(fuzz_parse(data, size, &again, &again_len) == r &&
		   again_len == consumed &&
		   (r != PROXYPROTO_OK || fuzz_info_equal(&again, &info)));

	if (r == PROXYPROTO_INCOMPLETE)
		FUZZ_CHECK(size < (v1 ? PROXYPROTO_V1_MAX : PROXYPROTO_V2_MAX));
	if (r == PROXYPROTO_OK) {
		FUZZ_CHECK(consumed > 0 && consumed <= size);
		FUZZ_CHECK(consumed <=
			   (v1 ? PROXYPROTO_V1_MAX : PROXYPROTO_V2_MAX));
		FUZZ_CHECK(info.version == (v1 ? 1 : 2));
		if (info.has_addr)
			FUZZ_CHECK((info.src.ss_family == AF_INET ||
				    info.src.ss_family == AF_INET6) &&
				   info.dst.ss_family == info.src.ss_family);
		else
			FUZZ_CHECK(info.src.ss_family == AF_UNSPEC &&
				   info.dst.ss_family == AF_UNSPEC);
	}
	if (size == 0) {
		FUZZ_CHECK(r == PROXYPROTO_INCOMPLETE);
		return 0;
	}
	if (v1)
		fuzz_check_v1(data, size, r, consumed, &info);
	else if (data[0] == '\r')
		fuzz_check_v2(data, size, r, consumed, &info);
	else
		FUZZ_CHECK(r == PROXYPROTO_ERROR);

	fuzz_check_prefix(data, size - 1, r, consumed, &info);
	fuzz_check_prefix(data, size / 2, r, consumed, &info);
	if (r == PROXYPROTO_OK)
		fuzz_check_prefix(data, consumed - 1, r, consumed, &info);
	return 0;
}
