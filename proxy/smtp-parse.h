/*
 * smtp-parse.h - pure parsers for SMTP command lines (client to proxy) and
 * reply lines (backend to proxy).  No I/O, no allocation: results point into
 * the caller's buffer.
 */
#ifndef SUBMITPROXY_SMTP_PARSE_H
#define SUBMITPROXY_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_EHLO,
	SMTP_VERB_HELO,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_NOOP,
	SMTP_VERB_RSET,
	SMTP_VERB_QUIT,
	SMTP_VERB_HELP,
	SMTP_VERB_ETRN,
	SMTP_VERB_TURN,
	SMTP_VERB_ATRN,
	SMTP_VERB_XCLIENT,
	SMTP_VERB_XFORWARD,
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *verb_text;  /* as the client wrote it */
	size_t verb_len;
	const char *args;       /* after the separating space(s), trailing
				   blanks removed; "" when none */
	size_t args_len;
};

enum smtp_cmd_result {
	SMTP_CMD_OK,
	SMTP_CMD_EMPTY,     /* blank line */
	SMTP_CMD_BAD_CHAR,  /* NUL, CR or another control character */
};

/* Parses one command line (without its CR LF).  The verb is matched
 * case-insensitively (RFC 5321 §2.4); bytes >= 0x80 are allowed in the
 * arguments (SMTPUTF8 addresses) but not in the verb. */
enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len,
				    struct smtp_cmd *cmd);

/* "EHLO", ... ; "UNKNOWN" for SMTP_VERB_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb verb);

struct smtp_reply_line {
	int code;          /* 200..599 */
	bool last;         /* "NNN text" (true) or "NNN-text" (false) */
	const char *text;  /* after the separator, "" for a bare "NNN" */
	size_t text_len;
};

/* Parses one reply line (without CR LF) as RFC 5321 §4.2 "NNN[ -]text":
 * the code's first digit 2-5, then two digits.  Returns 0 or -1 on any
 * other shape, including control characters in the text. */
int smtp_reply_parse(const char *line, size_t len,
		     struct smtp_reply_line *reply);

#endif
