/* smtp-parse.c - see smtp-parse.h */
#include "proxy/smtp-parse.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

static const char *const smtp_verb_names[] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",   [SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_HELO] = "HELO",         [SMTP_VERB_STARTTLS] = "STARTTLS",
	[SMTP_VERB_AUTH] = "AUTH",         [SMTP_VERB_MAIL] = "MAIL",
	[SMTP_VERB_RCPT] = "RCPT",         [SMTP_VERB_DATA] = "DATA",
	[SMTP_VERB_BDAT] = "BDAT",         [SMTP_VERB_VRFY] = "VRFY",
	[SMTP_VERB_EXPN] = "EXPN",         [SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_RSET] = "RSET",         [SMTP_VERB_QUIT] = "QUIT",
	[SMTP_VERB_HELP] = "HELP",         [SMTP_VERB_ETRN] = "ETRN",
	[SMTP_VERB_TURN] = "TURN",         [SMTP_VERB_ATRN] = "ATRN",
	[SMTP_VERB_XCLIENT] = "XCLIENT",   [SMTP_VERB_XFORWARD] = "XFORWARD",
};
static_assert(sizeof(smtp_verb_names) / sizeof(smtp_verb_names[0]) ==
		      SMTP_VERB_COUNT,
	      "one name per verb");

const char *smtp_verb_name(enum smtp_verb verb)
{
	if ((unsigned)verb >= SMTP_VERB_COUNT)
		return "UNKNOWN";
	return smtp_verb_names[verb];
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

enum smtp_cmd_result smtp_cmd_parse(const char *line, size_t len,
				    struct smtp_cmd *cmd)
{
	size_t i, v;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return SMTP_CMD_BAD_CHAR;
	}
	while (len > 0 && is_blank(line[len - 1]))
		len--;
	if (len == 0)
		return SMTP_CMD_EMPTY;

	for (v = 0; v < len && !is_blank(line[v]); v++)
		;
	cmd->verb_text = line;
	cmd->verb_len = v;
	cmd->verb = SMTP_VERB_UNKNOWN;
	for (i = 0; i < v && is_alpha(line[i]); i++)
		;
	if (i == v) {
		for (int k = 1; k < SMTP_VERB_COUNT; k++) {
			const char *name = smtp_verb_names[k];

			if (strlen(name) == v && strncasecmp(name, line, v) == 0) {
				cmd->verb = (enum smtp_verb)k;
				break;
			}
		}
	}
	for (i = v; i < len && is_blank(line[i]); i++)
		;
	cmd->args = line + i;
	cmd->args_len = len - i;
	return SMTP_CMD_OK;
}

int smtp_reply_parse(const char *line, size_t len,
		     struct smtp_reply_line *reply)
{
	size_t i;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9')
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	for (i = 4; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	reply->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
		      (line[2] - '0');
	reply->last = len == 3 || line[3] == ' ';
	reply->text = len > 4 ? line + 4 : "";
	reply->text_len = len > 4 ? len - 4 : 0;
	return 0;
}
