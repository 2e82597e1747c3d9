/*
 * smtp-relay-parse.h - pure helpers for the relay: EHLO capability
 * filtering, MAIL FROM / RCPT TO argument handling, xtext encoding.  No
 * I/O, no allocation.
 */
#ifndef SUBMITPROXY_SMTP_RELAY_PARSE_H
#define SUBMITPROXY_SMTP_RELAY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Capabilities a backend's EHLO reply may pass on to clients (DESIGN.md:
 * everything else, STARTTLS AUTH XCLIENT XFORWARD CHUNKING BINARYMIME ETRN
 * and unknown extensions, is removed). */
enum ehlo_cap {
	EHLO_CAP_SIZE = 1u << 0,
	EHLO_CAP_8BITMIME = 1u << 1,
	EHLO_CAP_PIPELINING = 1u << 2,
	EHLO_CAP_ENHANCEDSTATUSCODES = 1u << 3,
	EHLO_CAP_SMTPUTF8 = 1u << 4,
	EHLO_CAP_DSN = 1u << 5,
	EHLO_CAP_DELIVERBY = 1u << 6,
	EHLO_CAP_XCLIENT = 1u << 7,   /* noted for the relay, never passed on */
};

/* What a backend announced in one EHLO reply. */
struct ehlo_caps {
	unsigned caps;                 /* enum ehlo_cap bits */
	uint64_t size;                 /* SIZE value; 0 = none or unlimited */
	bool size_has_value;
	char deliverby[32];            /* DELIVERBY argument, "" if none */
	/* XCLIENT attribute names the backend accepts, as bits below. */
	unsigned xclient_attrs;
};

enum xclient_attr {
	XCLIENT_ATTR_NAME = 1u << 0,
	XCLIENT_ATTR_ADDR = 1u << 1,
	XCLIENT_ATTR_PORT = 1u << 2,
	XCLIENT_ATTR_PROTO = 1u << 3,
	XCLIENT_ATTR_HELO = 1u << 4,
	XCLIENT_ATTR_LOGIN = 1u << 5,
	XCLIENT_ATTR_DESTADDR = 1u << 6,
	XCLIENT_ATTR_DESTPORT = 1u << 7,
};

/* Reads one EHLO reply line's text (after "250-"/"250 ", the first line
 * being the greeting name, which the caller skips) into caps.  Unknown
 * keywords are ignored. */
void ehlo_caps_add_line(struct ehlo_caps *caps, const char *text, size_t len);

/* Writes the capability lines the proxy shows a client, without the
 * "250-"/"250 " prefix and without the hostname line, one per call:
 * returns the number of lines and fills lines[i] (each up to 64 bytes,
 * NUL-terminated).  allowed masks the backend's caps (e.g. everything,
 * or a conservative set when no probe succeeded); max_size is the proxy's
 * own limit: SIZE is the smaller of the two, non-zero. */
size_t ehlo_caps_render(const struct ehlo_caps *caps, unsigned allowed,
			uint64_t max_size, char lines[][64], size_t max_lines);

/* What an EHLO may announce to clients: the pass-through list. */
#define EHLO_CAPS_PASS                                                         \
	(EHLO_CAP_SIZE | EHLO_CAP_8BITMIME | EHLO_CAP_PIPELINING |             \
	 EHLO_CAP_ENHANCEDSTATUSCODES | EHLO_CAP_SMTPUTF8 | EHLO_CAP_DSN |     \
	 EHLO_CAP_DELIVERBY)

/* The capability lines a client is shown for a backend with caps: the
 * pass-through extensions it has, plus PIPELINING and SIZE, which are the
 * proxy's own (it takes pipelined commands whatever the backend does and
 * enforces max_size itself).  Same contract as ehlo_caps_render(). */
size_t ehlo_caps_client(const struct ehlo_caps *caps, uint64_t max_size,
			char lines[][64], size_t max_lines);

/* MAIL FROM:<path> [params]: checks the shape (RFC 5321 §4.1.1.2, with
 * the common tolerance of a space after the colon), extracts the reverse
 * path (without < >, "" for the null sender) and rewrites the arguments
 * into out without any AUTH= parameter (RFC 4954 §5: the proxy does not
 * vouch for a submitter's AUTH= claim).  Returns 0, or -1 for a syntax
 * error (501).  out gets "FROM:<path> PARAMS..." NUL-terminated. */
int mail_from_rewrite(const char *args, size_t len, char *path,
		      size_t path_size, char *out, size_t out_size);

/* RCPT TO:<path> [params]: shape check only; returns 0 or -1. */
int rcpt_to_check(const char *args, size_t len);

/* The SIZE= parameter of MAIL FROM (RFC 1870), 0 if absent; -1 if
 * malformed. */
int mail_from_size(const char *args, size_t len, uint64_t *size_r);

/* xtext (RFC 3461 §4, used by XCLIENT): '+' and characters outside
 * 33..126 and '=' become "+XX".  Returns the length or -1 if out is too
 * small. */
long xtext_encode(const char *in, size_t len, char *out, size_t out_size);

/* The client as an XCLIENT command describes it. */
struct xclient_client {
	const char *addr; /* numeric; with a ':' it is written "IPV6:..." */
	unsigned port;
	const char *helo;  /* NULL: not sent */
	const char *login; /* NULL: not sent */
};

/* Builds the XCLIENT command line (without CR LF) the relay sends: only
 * the attributes in attrs, the backend's list (Postfix XCLIENT_README),
 * in the order NAME=[UNAVAILABLE] ADDR PORT HELO LOGIN PROTO=ESMTP, HELO
 * and LOGIN as xtext.  Returns its length, or -1 if it does not fit in
 * out (size bytes, NUL included). */
long xclient_build(const struct xclient_client *client, unsigned attrs,
		   char *out, size_t size);

#endif
