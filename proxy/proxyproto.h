/*
 * proxyproto.h - the PROXY protocol header (HAProxy's PROXY protocol
 * specification, versions 1 and 2) that a load balancer sends before
 * anything else on a connection.  Pure parser over the bytes received so
 * far: no I/O, no allocation.
 *
 * Only TCP over IPv4/IPv6 addresses are taken (v1 "TCP4"/"TCP6", v2
 * PROXY command with AF_INET/AF_INET6 + STREAM); v1 "UNKNOWN" and the v2
 * LOCAL command (health checks) are accepted with no address, and the
 * connection's own address then stands.  v2 TLVs are skipped.
 */
#ifndef SUBMITPROXY_PROXYPROTO_H
#define SUBMITPROXY_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* v1: at most 107 bytes; v2: 16 + up to 65535 bytes (we accept at most
 * PROXYPROTO_V2_MAX of TLVs and addresses). */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX 1024

enum proxyproto_result {
	PROXYPROTO_INCOMPLETE, /* need more bytes (never beyond the maxima) */
	PROXYPROTO_OK,         /* *consumed_r bytes were the header */
	PROXYPROTO_ERROR,      /* not a valid header: drop the connection */
};

struct proxyproto_info {
	int version;                    /* 1 or 2 */
	bool has_addr;                  /* false: UNKNOWN / LOCAL */
	struct sockaddr_storage src;    /* the real client */
	struct sockaddr_storage dst;    /* the address it connected to */
};

/* Parses the start of a connection's bytes.  On PROXYPROTO_OK, *consumed_r
 * is the header length; any bytes after it belong to the client (a TLS
 * ClientHello or SMTP).  A v1 header must end with CR LF within
 * PROXYPROTO_V1_MAX bytes; a v2 header's length must not exceed
 * PROXYPROTO_V2_MAX. */
enum proxyproto_result proxyproto_parse(const unsigned char *buf, size_t len,
					struct proxyproto_info *info,
					size_t *consumed_r);

#endif
