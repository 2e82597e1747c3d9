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

/* ---- MAIL FROM / RCPT TO ----
 *
 * RFC 5321 §4.1.1.11: a client may send a MAIL or RCPT parameter only for
 * an extension the server announced, and the backend trusts us to have
 * made sure of it (Exim answers "MAIL FROM:<a@b> SIZE=100" after HELO
 * with 501).  smtp_args_filter() checks the arguments of one command
 * against the extensions of the backend connection the line goes to and
 * writes the line that may go there:
 *
 *   parameter         needs      on MAIL/RCPT  otherwise
 *   SIZE=n            SIZE       MAIL          dropped (the proxy's own:
 *                                              it is always announced and
 *                                              enforced here)
 *   BODY=7BIT|8BITMIME 8BITMIME  MAIL          555
 *   BODY=BINARYMIME   (never)    MAIL          555 (needs CHUNKING)
 *   SMTPUTF8          SMTPUTF8   MAIL          555
 *   RET= ENVID=       DSN        MAIL          555
 *   BY=               DELIVERBY  MAIL          555
 *   AUTH=             -          MAIL          removed (RFC 4954 §5)
 *   NOTIFY= ORCPT=    DSN        RCPT          555
 *   anything else     -          -             555
 *
 * Keywords are case-insensitive; a parameter given twice, or a value its
 * RFC does not allow, is 501.  A non-ASCII path needs SMTPUTF8 (RFC 6531
 * §3.2, §3.7.4): on the MAIL, for a RCPT on its transaction's MAIL, and
 * in caps; else 553 5.6.7.  Pure: no I/O, no allocation. */

enum smtp_args_cmd {
	SMTP_ARGS_MAIL, /* "FROM:<reverse-path> [params]" */
	SMTP_ARGS_RCPT, /* "TO:<forward-path> [params]" */
};

enum smtp_args_verdict {
	SMTP_ARGS_OK,
	SMTP_ARGS_SYNTAX,	 /* 501 5.5.4: the path or the list's shape */
	SMTP_ARGS_BAD_VALUE,	 /* 501 5.5.4: a known parameter's value */
	SMTP_ARGS_DUPLICATE,	 /* 501 5.5.4: a parameter given twice */
	SMTP_ARGS_UNKNOWN,	 /* 555 5.5.4: the proxy never offers it */
	SMTP_ARGS_NOT_OFFERED,	 /* 555 5.5.4: its extension is not in caps */
	SMTP_ARGS_UTF8_REQUIRED, /* 553 5.6.7: non-ASCII, no SMTPUTF8 */
	SMTP_ARGS_UTF8_UNSUPPORTED, /* 553 5.6.7: non-ASCII, caps lack it */
	SMTP_ARGS_TOO_LONG,	    /* out is too small */
	SMTP_ARGS_VERDICT_COUNT
};

/* What smtp_args_filter() found; pointers are into args, or static. */
struct smtp_args {
	const char *path; /* inside < > ("" for the null sender) */
	size_t path_len;
	bool smtputf8; /* the transaction is SMTPUTF8 (MAIL: it says so) */
	bool has_size; /* MAIL: SIZE= given, its value in size */
	uint64_t size;
	const char *param; /* the parameter a refusal is about, or NULL */
	size_t param_len;
	const char *ext; /* NOT_OFFERED: the extension it needs */
	size_t out_len;	 /* OK: strlen(out) */
};

/* Checks args (the command's arguments, after "MAIL "/"RCPT ") against
 * caps (EHLO_CAP_* bits of the backend connection in use) and, when OK,
 * writes the line for the backend to out: "MAIL FROM:<path> PARAMS" or
 * "RCPT TO:<path> PARAMS", NUL-terminated, parameters as the client
 * wrote them, single-spaced.  tx_smtputf8: for RCPT, whether its MAIL
 * carried SMTPUTF8.  The line is never longer than "MAIL " plus args;
 * feeding it back gives itself (with the same or more caps). */
enum smtp_args_verdict smtp_args_filter(enum smtp_args_cmd cmd,
					const char *args, size_t len,
					unsigned caps, bool tx_smtputf8,
					char *out, size_t out_size,
					struct smtp_args *a);

/* The reply for a verdict other than OK, naming the parameter, without
 * CR LF, NUL-terminated in buf. */
void smtp_args_reply(enum smtp_args_cmd cmd, enum smtp_args_verdict v,
		     const struct smtp_args *a, char *buf, size_t size);

/* A verdict's name for the logs' reason= ("param_not_offered"). */
const char *smtp_args_verdict_name(enum smtp_args_verdict v);

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
