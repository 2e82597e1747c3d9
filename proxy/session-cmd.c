/* session-cmd.c - see session-cmd.h */
#include "proxy/session-cmd.h"

#include <assert.h>
#include <string.h>

#define PRETLS	      SESSION_CMD_PRETLS
#define PREAUTH	      SESSION_CMD_PREAUTH
#define RELAYED	      SESSION_CMD_RELAYED
#define NO_ARGS	      SESSION_CMD_NO_ARGS
#define HELO_ARG      SESSION_CMD_HELO_ARG
#define JUNK	      SESSION_CMD_JUNK
#define JUNK_REPEATED SESSION_CMD_JUNK_REPEATED
#define NEVER	      SESSION_CMD_NEVER

static const struct session_cmd_spec session_cmd_table[SMTP_VERB_COUNT] = {
    [SMTP_VERB_UNKNOWN] = {0, NULL, NULL},
    [SMTP_VERB_EHLO] = {PRETLS | PREAUTH | RELAYED | HELO_ARG | JUNK_REPEATED,
			"501 5.5.4 Syntax: EHLO hostname", NULL},
    [SMTP_VERB_HELO] = {PRETLS | PREAUTH | RELAYED | HELO_ARG | JUNK_REPEATED,
			"501 5.5.4 Syntax: HELO hostname", NULL},
    /* RFC 3207 §4: allowed before TLS, of course; never after AUTH
     * (the link is already protected or deliberately is not). */
    [SMTP_VERB_STARTTLS] = {PRETLS | PREAUTH | NO_ARGS,
			    "501 5.5.4 Syntax: STARTTLS",
			    "503 5.5.1 STARTTLS not allowed now"},
    /* RFC 4954 §4: no AUTH after a successful one. */
    [SMTP_VERB_AUTH] = {PREAUTH,
			"501 5.5.4 Syntax: AUTH mechanism "
			"[initial-response]",
			"503 5.5.1 Already authenticated"},
    [SMTP_VERB_MAIL] = {RELAYED, "501 5.5.4 Syntax: MAIL FROM:<address>", NULL},
    [SMTP_VERB_RCPT] = {RELAYED, "501 5.5.4 Syntax: RCPT TO:<address>", NULL},
    [SMTP_VERB_DATA] = {RELAYED | NO_ARGS, "501 5.5.4 Syntax: DATA", NULL},
    /* CHUNKING is not offered: BDAT would bypass the DATA scanner. */
    [SMTP_VERB_BDAT] = {0, NULL, "502 5.5.1 Command not implemented"},
    [SMTP_VERB_VRFY] = {RELAYED | JUNK, NULL, NULL},
    [SMTP_VERB_EXPN] = {RELAYED | JUNK, NULL, NULL},
    /* RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored. */
    [SMTP_VERB_NOOP] = {PRETLS | PREAUTH | RELAYED | JUNK, NULL, NULL},
    [SMTP_VERB_RSET] = {PRETLS | PREAUTH | RELAYED | NO_ARGS | JUNK,
			"501 5.5.4 Syntax: RSET", NULL},
    [SMTP_VERB_QUIT] = {PRETLS | PREAUTH | RELAYED | NO_ARGS,
			"501 5.5.4 Syntax: QUIT", NULL},
    [SMTP_VERB_HELP] = {PRETLS | PREAUTH | RELAYED | JUNK, NULL, NULL},
    [SMTP_VERB_ETRN] = {NEVER, NULL, NULL},
    [SMTP_VERB_TURN] = {NEVER, NULL, NULL},
    [SMTP_VERB_ATRN] = {NEVER, NULL, NULL},
    [SMTP_VERB_XCLIENT] = {NEVER, NULL, NULL},
    [SMTP_VERB_XFORWARD] = {NEVER, NULL, NULL},
};
static_assert(sizeof(session_cmd_table) / sizeof(session_cmd_table[0]) ==
		  SMTP_VERB_COUNT,
	      "one entry per verb");

const struct session_cmd_spec *session_cmd_spec(enum smtp_verb verb)
{
	return &session_cmd_table[verb < SMTP_VERB_COUNT ? verb
							 : SMTP_VERB_UNKNOWN];
}

/* Label characters: RFC 1035 asks for letters, digits and '-'; real
 * clients also send '_' (Windows host names) and, rarely, other printable
 * characters, which Postfix and sendmail accept by default.  What is
 * refused are the characters that mean something in an address, a header
 * comment or a log line (RFC 5322 specials and '"'), blanks and controls;
 * bytes >= 0x80 stay for UTF-8 names (RFC 6531 §3.7.1). */
static bool helo_label_char(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("()<>[]\\,;:@\"", c) == NULL;
}

bool session_cmd_helo_valid(const char *arg, size_t len)
{
	size_t i, label = 0;

	/* RFC 5321 §4.5.3.1.2: a domain is at most 255 octets. */
	if (len == 0 || len > 255)
		return false;
	if (arg[0] == '[') {
		/* §4.1.3 address literal; its content is dcontent
		 * (%d33-90 / %d94-126), checked for shape, not parsed:
		 * the EHLO name is only logged and passed on. */
		if (len < 3 || arg[len - 1] != ']')
			return false;
		for (i = 1; i + 1 < len; i++) {
			unsigned char c = (unsigned char)arg[i];

			if (c < 33 || c > 126 || c == '[' || c == ']' ||
			    c == '\\')
				return false;
		}
		return true;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)arg[i];

		if (c == '.') {
			if (label == 0)
				return false; /* empty label */
			label = 0;
		} else if (helo_label_char(c)) {
			label++;
		} else {
			return false;
		}
	}
	return label > 0;
}

static void refuse(struct session_cmd_verdict *v, const char *reply)
{
	v->action = SESSION_CMD_REFUSE;
	v->reply = reply;
	v->junk = false;
}

/* The checks of one verb's own before AUTH, past the generic ones. */
static bool preauth_special(const struct session_cmd_env *env,
			    const struct smtp_cmd *cmd,
			    struct session_cmd_verdict *v)
{
	switch (cmd->verb) {
	case SMTP_VERB_STARTTLS:
		if (!env->starttls_offered) {
			refuse(v, "502 5.5.1 Command not implemented");
			return false;
		}
		if (env->tls) {
			refuse(v, "503 5.5.1 TLS already active");
			return false;
		}
		return true;
	case SMTP_VERB_AUTH:
		if (!env->esmtp) {
			/* RFC 4954 §4: AUTH is an ESMTP extension, announced
			 * by EHLO (sent again after STARTTLS). */
			refuse(v, "503 5.5.1 Error: send EHLO first");
			return false;
		}
		if (!env->auth_offered) {
			/* RFC 4954 §4: 538 when the mechanism needs
			 * encryption. */
			refuse(v, "538 5.7.11 Encryption required for "
				  "requested authentication mechanism");
			return false;
		}
		if (cmd->args_len == 0) {
			refuse(v, session_cmd_table[SMTP_VERB_AUTH].syntax);
			return false;
		}
		return true;
	default:
		return true;
	}
}

void session_cmd_check(const struct session_cmd_env *env,
		       const struct smtp_cmd *cmd,
		       struct session_cmd_verdict *v)
{
	const struct session_cmd_spec *spec = session_cmd_spec(cmd->verb);

	memset(v, 0, sizeof(*v));
	if (cmd->verb == SMTP_VERB_UNKNOWN) {
		refuse(v, "500 5.5.1 Command unrecognized");
		return;
	}
	if (spec->flags & NEVER) {
		refuse(v, "502 5.5.1 Command not implemented");
		return;
	}
	if (!env->authenticated) {
		/* RFC 3207 §4: with require_tls, mail and authentication
		 * wait for TLS. */
		if (env->tls_required && !(spec->flags & PRETLS)) {
			refuse(v, "530 5.7.0 Must issue a STARTTLS command "
				  "first");
			return;
		}
		if (!(spec->flags & PREAUTH)) {
			refuse(v, "530 5.7.0 Authentication required");
			return;
		}
		if (!preauth_special(env, cmd, v))
			return;
		v->action = SESSION_CMD_LOCAL;
	} else {
		if (!(spec->flags & RELAYED)) {
			refuse(v, spec->after_auth);
			return;
		}
		v->action = SESSION_CMD_RELAY;
	}
	if ((spec->flags & NO_ARGS) && cmd->args_len != 0) {
		refuse(v, spec->syntax);
		return;
	}
	if ((spec->flags & HELO_ARG) &&
	    !session_cmd_helo_valid(cmd->args, cmd->args_len)) {
		refuse(v, spec->syntax);
		return;
	}
	v->junk = (spec->flags & JUNK) ||
		  ((spec->flags & JUNK_REPEATED) && env->helo_seen);
}
