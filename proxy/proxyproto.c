/*
 * proxyproto.c - the PROXY protocol header, versions 1 and 2, as HAProxy's
 * doc/proxy-protocol.txt defines it ("the spec" below).  See proxyproto.h.
 *
 * The parser is stateless: it is called again over all the bytes received
 * so far each time more arrive, and decides from the first byte that
 * cannot belong to a valid header.  So a client that talks TLS or SMTP
 * straight to a listener expecting the header is refused on its first
 * byte, not left waiting for a header that will never come (spec §2: the
 * receiver must not start parsing the protocol until the header is
 * complete, and must drop a connection whose header is invalid).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "proxy/proxyproto.h"

/* Spec §2.2: the 12-byte signature, then ver_cmd, fam and a 2-byte length
 * of what follows (addresses, then TLVs). */
#define PROXYPROTO_V2_SIG_LEN	 12
#define PROXYPROTO_V2_HDR_LEN	 16
#define PROXYPROTO_V2_VERSION	 0x2
#define PROXYPROTO_V2_CMD_LOCAL	 0x0
#define PROXYPROTO_V2_CMD_PROXY	 0x1
#define PROXYPROTO_V2_FAM_UNSPEC 0x00
#define PROXYPROTO_V2_FAM_TCP4	 0x11
#define PROXYPROTO_V2_FAM_TCP6	 0x21
/* Address blocks: src addr, dst addr, src port, dst port. */
#define PROXYPROTO_V2_TCP4_LEN (4 + 4 + 2 + 2)
#define PROXYPROTO_V2_TCP6_LEN (16 + 16 + 2 + 2)

static const unsigned char proxyproto_v2_sig[PROXYPROTO_V2_SIG_LEN] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* Stores an address and a port (network order) in a zeroed sockaddr. */
static void proxyproto_set_addr(struct sockaddr_storage *ss, int family,
				const void *addr, uint16_t port_net)
{
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = port_net;
		memcpy(&sin->sin_addr, addr, sizeof(sin->sin_addr));
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port_net;
		memcpy(&sin6->sin6_addr, addr, sizeof(sin6->sin6_addr));
	}
}

/*
 * Version 1 (spec §2.1): one line,
 *   "PROXY TCP4 <src> <dst> <srcport> <dstport>\r\n"  (or TCP6)
 *   "PROXY UNKNOWN[ anything]\r\n"
 * with single spaces, at most PROXYPROTO_V1_MAX bytes with the CR LF.
 *
 * Each step below returns PROXYPROTO_OK when its piece is complete and
 * valid, PROXYPROTO_INCOMPLETE when the bytes run out before that, and
 * PROXYPROTO_ERROR on the first byte that cannot fit.
 */
struct proxyproto_v1_cursor {
	const unsigned char *buf;
	size_t len; /* bytes available, never more than PROXYPROTO_V1_MAX */
	size_t pos;
};

/* The literal text next, compared as far as the bytes go. */
static enum proxyproto_result
proxyproto_v1_expect(struct proxyproto_v1_cursor *cur, const char *text)
{
	size_t text_len = strlen(text);
	size_t avail = cur->len - cur->pos;
	size_t n = avail < text_len ? avail : text_len;

	if (memcmp(cur->buf + cur->pos, text, n) != 0)
		return PROXYPROTO_ERROR;
	if (n < text_len)
		return PROXYPROTO_INCOMPLETE;
	cur->pos += text_len;
	return PROXYPROTO_OK;
}

static bool proxyproto_v1_addr_char(int family, unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	if (c == '.')
		return true; /* IPv4, or the IPv4 tail of an IPv6 address */
	if (family == AF_INET)
		return false;
	return c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* An address of the declared family, up to (not including) the space
 * after it.  Only the characters of the family's textual form are taken,
 * so that the wrong family or a stray byte is refused before the space;
 * inet_pton() then decides, as the spec asks. */
static enum proxyproto_result
proxyproto_v1_addr(struct proxyproto_v1_cursor *cur, int family, void *addr)
{
	char text[INET6_ADDRSTRLEN];
	size_t max =
	    family == AF_INET ? INET_ADDRSTRLEN - 1 : INET6_ADDRSTRLEN - 1;
	size_t n;

	for (n = 0;; n++) {
		unsigned char c;

		if (cur->pos + n >= cur->len)
			return PROXYPROTO_INCOMPLETE;
		c = cur->buf[cur->pos + n];
		if (c == ' ' && n > 0)
			break;
		if (!proxyproto_v1_addr_char(family, c) || n == max)
			return PROXYPROTO_ERROR;
	}
	memcpy(text, cur->buf + cur->pos, n);
	text[n] = '\0';
	if (inet_pton(family, text, addr) != 1)
		return PROXYPROTO_ERROR;
	cur->pos += n;
	return PROXYPROTO_OK;
}

/* A port, up to (not including) the byte `end`.  Spec §2.1: "a decimal
 * integer in the range [0..65535] inclusive.  Heading zeroes are not
 * permitted"; no sign either. */
static enum proxyproto_result
proxyproto_v1_port(struct proxyproto_v1_cursor *cur, unsigned char end,
		   uint16_t *port_net_r)
{
	uint32_t value = 0;
	size_t n;

	for (n = 0;; n++) {
		unsigned char c;

		if (cur->pos + n >= cur->len)
			return PROXYPROTO_INCOMPLETE;
		c = cur->buf[cur->pos + n];
		if (c == end && n > 0)
			break;
		if (c < '0' || c > '9')
			return PROXYPROTO_ERROR;
		if (n == 1 && value == 0)
			return PROXYPROTO_ERROR; /* "0" followed by a digit */
		value = value * 10 + (uint32_t)(c - '0');
		if (value > UINT16_MAX)
			return PROXYPROTO_ERROR;
	}
	cur->pos += n;
	*port_net_r = htons((uint16_t)value);
	return PROXYPROTO_OK;
}

/* "UNKNOWN", then CR LF or a space and anything up to CR LF, which the
 * receiver ignores (spec §2.1).  A CR or LF that is not the final CR LF is
 * refused: the line ends with CR LF and nothing else. */
static enum proxyproto_result
proxyproto_v1_unknown(struct proxyproto_v1_cursor *cur)
{
	enum proxyproto_result r;

	r = proxyproto_v1_expect(cur, "UNKNOWN");
	if (r != PROXYPROTO_OK)
		return r;
	if (cur->pos >= cur->len)
		return PROXYPROTO_INCOMPLETE;
	if (cur->buf[cur->pos] == ' ') {
		for (cur->pos++; cur->pos < cur->len; cur->pos++) {
			unsigned char c = cur->buf[cur->pos];

			if (c == '\r')
				break;
			if (c == '\n')
				return PROXYPROTO_ERROR;
		}
	}
	return proxyproto_v1_expect(cur, "\r\n");
}

static enum proxyproto_result
proxyproto_v1_tcp(struct proxyproto_v1_cursor *cur,
		  struct proxyproto_info *info)
{
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} src, dst;
	uint16_t src_port, dst_port;
	enum proxyproto_result r;
	int family;

	r = proxyproto_v1_expect(cur, "TCP");
	if (r != PROXYPROTO_OK)
		return r;
	if (cur->pos >= cur->len)
		return PROXYPROTO_INCOMPLETE;
	switch (cur->buf[cur->pos]) {
	case '4':
		family = AF_INET;
		break;
	case '6':
		family = AF_INET6;
		break;
	default:
		return PROXYPROTO_ERROR;
	}
	cur->pos++;
	if ((r = proxyproto_v1_expect(cur, " ")) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_addr(cur, family, &src)) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_expect(cur, " ")) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_addr(cur, family, &dst)) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_expect(cur, " ")) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_port(cur, ' ', &src_port)) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_expect(cur, " ")) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_port(cur, '\r', &dst_port)) != PROXYPROTO_OK ||
	    (r = proxyproto_v1_expect(cur, "\r\n")) != PROXYPROTO_OK)
		return r;
	info->has_addr = true;
	proxyproto_set_addr(&info->src, family, &src, src_port);
	proxyproto_set_addr(&info->dst, family, &dst, dst_port);
	return PROXYPROTO_OK;
}

static enum proxyproto_result proxyproto_v1_parse(const unsigned char *buf,
						  size_t len,
						  struct proxyproto_info *info,
						  size_t *consumed_r)
{
	struct proxyproto_v1_cursor cur = {
	    .buf = buf,
	    .len = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX,
	    .pos = 0,
	};
	enum proxyproto_result r;

	info->version = 1;
	r = proxyproto_v1_expect(&cur, "PROXY ");
	if (r == PROXYPROTO_OK) {
		if (cur.pos < cur.len && buf[cur.pos] == 'U')
			r = proxyproto_v1_unknown(&cur);
		else
			r = proxyproto_v1_tcp(&cur, info);
	}
	/* Spec §2.1: "the receiver must not accept more than 107
	 * characters"; the CR LF was not within them. */
	if (r == PROXYPROTO_INCOMPLETE && len >= PROXYPROTO_V1_MAX)
		return PROXYPROTO_ERROR;
	if (r == PROXYPROTO_OK)
		*consumed_r = cur.pos;
	return r;
}

/*
 * Version 2 (spec §2.2): the signature; ver_cmd, whose high nibble is the
 * version (2) and low nibble the command (LOCAL or PROXY); fam, the
 * address family and transport; the length of the rest, big endian; the
 * address block of the family; TLVs up to that length, skipped.
 *
 * LOCAL is what HAProxy sends on its own connections (health checks): the
 * addresses, if any, are not the client's and are ignored.  Only TCP over
 * IPv4 or IPv6 (and UNSPEC, no address) is taken: submitproxy listens on
 * TCP, so a UDP or AF_UNIX header is not for it.
 */
static enum proxyproto_result proxyproto_v2_parse(const unsigned char *buf,
						  size_t len,
						  struct proxyproto_info *info,
						  size_t *consumed_r)
{
	size_t n = len < PROXYPROTO_V2_SIG_LEN ? len : PROXYPROTO_V2_SIG_LEN;
	size_t addr_len, body_len;
	unsigned int cmd;

	info->version = 2;
	if (memcmp(buf, proxyproto_v2_sig, n) != 0)
		return PROXYPROTO_ERROR;
	if (len <= PROXYPROTO_V2_SIG_LEN)
		return PROXYPROTO_INCOMPLETE;

	if (buf[12] >> 4 != PROXYPROTO_V2_VERSION)
		return PROXYPROTO_ERROR;
	cmd = buf[12] & 0x0f;
	if (cmd != PROXYPROTO_V2_CMD_LOCAL && cmd != PROXYPROTO_V2_CMD_PROXY)
		return PROXYPROTO_ERROR;
	if (len <= 13)
		return PROXYPROTO_INCOMPLETE;

	switch (buf[13]) {
	case PROXYPROTO_V2_FAM_UNSPEC:
		addr_len = 0;
		break;
	case PROXYPROTO_V2_FAM_TCP4:
		addr_len = PROXYPROTO_V2_TCP4_LEN;
		break;
	case PROXYPROTO_V2_FAM_TCP6:
		addr_len = PROXYPROTO_V2_TCP6_LEN;
		break;
	default:
		return PROXYPROTO_ERROR;
	}
	if (len < PROXYPROTO_V2_HDR_LEN)
		return PROXYPROTO_INCOMPLETE;

	body_len = (size_t)buf[14] << 8 | buf[15];
	if (body_len > PROXYPROTO_V2_MAX - PROXYPROTO_V2_HDR_LEN ||
	    body_len < addr_len)
		return PROXYPROTO_ERROR;
	if (len - PROXYPROTO_V2_HDR_LEN < body_len)
		return PROXYPROTO_INCOMPLETE;

	if (cmd == PROXYPROTO_V2_CMD_PROXY && addr_len > 0) {
		const unsigned char *a = buf + PROXYPROTO_V2_HDR_LEN;
		size_t ip_len = (addr_len - 2 * sizeof(uint16_t)) / 2;
		int family = ip_len == 4 ? AF_INET : AF_INET6;
		uint16_t src_port, dst_port;

		/* The ports are in network order on the wire already. */
		memcpy(&src_port, a + 2 * ip_len, sizeof(src_port));
		memcpy(&dst_port, a + 2 * ip_len + 2, sizeof(dst_port));
		info->has_addr = true;
		proxyproto_set_addr(&info->src, family, a, src_port);
		proxyproto_set_addr(&info->dst, family, a + ip_len, dst_port);
	}
	*consumed_r = PROXYPROTO_V2_HDR_LEN + body_len;
	return PROXYPROTO_OK;
}

enum proxyproto_result proxyproto_parse(const unsigned char *buf, size_t len,
					struct proxyproto_info *info,
					size_t *consumed_r)
{
	memset(info, 0, sizeof(*info));
	*consumed_r = 0;
	if (len == 0)
		return PROXYPROTO_INCOMPLETE;
	/* The first byte tells the versions apart: 'P' of "PROXY " or the
	 * CR of the v2 signature; anything else is neither. */
	if (buf[0] == 'P')
		return proxyproto_v1_parse(buf, len, info, consumed_r);
	if (buf[0] == proxyproto_v2_sig[0])
		return proxyproto_v2_parse(buf, len, info, consumed_r);
	return PROXYPROTO_ERROR;
}
