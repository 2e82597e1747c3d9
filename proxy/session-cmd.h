/*
 * session-cmd.h - the session's command table: for every verb, what the
 * proxy does with it before and after AUTH, and the checks every command
 * passes before its handler runs (TLS required, AUTH required, no
 * arguments, the EHLO/HELO argument), written once.  Models: Postfix's
 * smtpd_cmd_table, Dovecot's SMTP_SERVER_CMD_FLAG_PRETLS|PREAUTH.
 *
 * Pure: session_cmd_check() looks only at the command and at the facts
 * about the session it is given, so the unit test can walk every verb in
 * every phase and TLS state.  The handlers themselves are the session's.
 */
#ifndef SUBMITPROXY_SESSION_CMD_H
#define SUBMITPROXY_SESSION_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "proxy/smtp-parse.h"

enum session_cmd_flag {
	/* Allowed before TLS on a listener with require_tls. */
	SESSION_CMD_PRETLS = 1u << 0,
	/* Answered by the proxy itself before AUTH (else 530). */
	SESSION_CMD_PREAUTH = 1u << 1,
	/* After AUTH: passed to the backend (the whitelist). */
	SESSION_CMD_RELAYED = 1u << 2,
	/* Takes no arguments: 501 with them. */
	SESSION_CMD_NO_ARGS = 1u << 3,
	/* The argument is a domain or an address literal (RFC 5321
	 * §4.1.1.1). */
	SESSION_CMD_HELO_ARG = 1u << 4,
	/* Harmless but useless: counted against [limits] max_junk_commands
	 * (Postfix's smtpd_junk_command_limit). */
	SESSION_CMD_JUNK = 1u << 5,
	/* Junk only when repeated (a second EHLO/HELO in one TLS state). */
	SESSION_CMD_JUNK_REPEATED = 1u << 6,
	/* Never implemented, before or after AUTH: the backend trusts us,
	 * so these would be the client's to abuse (XCLIENT spoofing, queue
	 * runs). */
	SESSION_CMD_NEVER = 1u << 7,
};

struct session_cmd_spec {
	unsigned flags;
	/* 501 for a bad or unexpected argument. */
	const char *syntax;
	/* After AUTH, for a verb that is neither relayed nor never
	 * implemented: why not now. */
	const char *after_auth;
};

/* What the session is, as far as the checks care. */
struct session_cmd_env {
	bool authenticated;
	bool tls;	       /* the TLS handshake is done */
	bool starttls_offered; /* a STARTTLS listener with [tls] set up */
	bool tls_required;     /* require_tls, and TLS is not up yet */
	bool esmtp;	       /* EHLO (not HELO) seen since TLS started */
	bool helo_seen;	       /* EHLO or HELO seen since TLS started */
	bool auth_offered;     /* AUTH is in the EHLO reply */
};

enum session_cmd_action {
	SESSION_CMD_REFUSE, /* answer reply, counted against max_errors */
	SESSION_CMD_LOCAL,  /* the proxy's own handler */
	SESSION_CMD_RELAY,  /* the relay's handler: to the backend */
};

struct session_cmd_verdict {
	enum session_cmd_action action;
	const char *reply; /* REFUSE: the whole reply, without CR LF */
	bool junk;	   /* LOCAL or RELAY: counts as junk */
};

const struct session_cmd_spec *session_cmd_spec(enum smtp_verb verb);

void session_cmd_check(const struct session_cmd_env *env,
		       const struct smtp_cmd *cmd,
		       struct session_cmd_verdict *verdict);

/* RFC 5321 §4.1.1.1: a Domain (dot-separated, non-empty labels) or an
 * address literal ("[192.0.2.1]", "[IPv6:...]", "[tag:text]", §4.1.3),
 * at most 255 octets.  Lenient in the label characters, as real clients
 * and MTAs are (see helo_label_char()). */
bool session_cmd_helo_valid(const char *arg, size_t len);

#endif
