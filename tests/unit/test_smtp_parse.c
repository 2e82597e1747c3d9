/* test_smtp_parse.c - command and reply line parsing, table-driven. */
#include <string.h>

#include "proxy/smtp-parse.h"
#include "tests/unit/tap.h"

struct cmd_case {
	const char *name;
	const char *line;
	enum smtp_cmd_result result;
	enum smtp_verb verb;
	const char *args;
};

static const struct cmd_case cmd_cases[] = {
    {"ehlo_with_domain", "EHLO client.example", SMTP_CMD_OK, SMTP_VERB_EHLO,
     "client.example"},
    {"verb_case_insensitive", "eHlO x", SMTP_CMD_OK, SMTP_VERB_EHLO, "x"},
    {"no_args", "NOOP", SMTP_CMD_OK, SMTP_VERB_NOOP, ""},
    {"trailing_blanks_trimmed", "RSET  \t", SMTP_CMD_OK, SMTP_VERB_RSET, ""},
    {"several_spaces_before_args", "MAIL   FROM:<a@b>", SMTP_CMD_OK,
     SMTP_VERB_MAIL, "FROM:<a@b>"},
    {"unknown_verb", "FOO bar", SMTP_CMD_OK, SMTP_VERB_UNKNOWN, "bar"},
    {"verb_prefix_is_not_a_verb", "EHLOX y", SMTP_CMD_OK, SMTP_VERB_UNKNOWN,
     "y"},
    {"verb_with_digit_is_unknown", "HEL0 x", SMTP_CMD_OK, SMTP_VERB_UNKNOWN,
     "x"},
    {"starttls", "STARTTLS", SMTP_CMD_OK, SMTP_VERB_STARTTLS, ""},
    {"xclient_is_recognised", "XCLIENT ADDR=1.2.3.4", SMTP_CMD_OK,
     SMTP_VERB_XCLIENT, "ADDR=1.2.3.4"},
    {"utf8_in_args_allowed", "RCPT TO:<\xc3\xa9@x>", SMTP_CMD_OK,
     SMTP_VERB_RCPT, "TO:<\xc3\xa9@x>"},
    {"empty_line", "", SMTP_CMD_EMPTY, SMTP_VERB_UNKNOWN, NULL},
    {"blank_line", "   ", SMTP_CMD_EMPTY, SMTP_VERB_UNKNOWN, NULL},
    {"bare_cr_refused", "NOOP\rRSET", SMTP_CMD_BAD_CHAR, SMTP_VERB_UNKNOWN,
     NULL},
    {"escape_refused", "NOOP \x1b[31m", SMTP_CMD_BAD_CHAR, SMTP_VERB_UNKNOWN,
     NULL},
    {"del_refused", "NOOP \x7f", SMTP_CMD_BAD_CHAR, SMTP_VERB_UNKNOWN, NULL},
};

struct reply_case {
	const char *name;
	const char *line;
	int ok;
	int code;
	int last;
	const char *text;
};

static const struct reply_case reply_cases[] = {
    {"final_line", "250 2.0.0 OK", 0, 250, 1, "2.0.0 OK"},
    {"continuation_line", "250-PIPELINING", 0, 250, 0, "PIPELINING"},
    {"bare_code", "354", 0, 354, 1, ""},
    {"code_with_space_only", "221 ", 0, 221, 1, ""},
    {"first_digit_1_refused", "199 x", -1, 0, 0, NULL},
    {"first_digit_6_refused", "600 x", -1, 0, 0, NULL},
    {"short_line_refused", "25", -1, 0, 0, NULL},
    {"letters_refused", "2x0 ok", -1, 0, 0, NULL},
    {"bad_separator_refused", "250_ok", -1, 0, 0, NULL},
    {"control_char_refused", "250 o\rk", -1, 0, 0, NULL},
    {"nul_refused", "250 o\0k", -1, 0, 0, NULL},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_cmd cmd;
		enum smtp_cmd_result r;

		memset(&cmd, 0, sizeof(cmd));
		r = smtp_cmd_parse(c->line, strlen(c->line), &cmd);
		TAP_EQ_INT(r, c->result, "cmd %s: result", c->name);
		if (r != SMTP_CMD_OK || c->result != SMTP_CMD_OK)
			continue;
		TAP_EQ_INT(cmd.verb, c->verb, "cmd %s: verb", c->name);
		TAP_OK(cmd.args_len == strlen(c->args) &&
			   memcmp(cmd.args, c->args, cmd.args_len) == 0,
		       "cmd %s: args", c->name);
	}
	{
		/* A NUL inside the line (strlen would stop there). */
		struct smtp_cmd cmd;

		TAP_EQ_INT(smtp_cmd_parse("NOOP\0x", 6, &cmd),
			   SMTP_CMD_BAD_CHAR, "cmd nul_refused");
	}
	TAP_EQ_STR(smtp_verb_name(SMTP_VERB_BDAT), "BDAT", "verb name table");
	TAP_EQ_STR(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN",
		   "verb name out of range");

	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]);
	     i++) {
		const struct reply_case *c = &reply_cases[i];
		struct smtp_reply_line reply;
		size_t len = strlen(c->line);
		int r;

		if (strcmp(c->name, "nul_refused") == 0)
			len = 7;
		r = smtp_reply_parse(c->line, len, &reply);
		TAP_EQ_INT(r, c->ok, "reply %s: result", c->name);
		if (r != 0 || c->ok != 0)
			continue;
		TAP_EQ_INT(reply.code, c->code, "reply %s: code", c->name);
		TAP_EQ_INT(reply.last, c->last, "reply %s: last", c->name);
		TAP_OK(reply.text_len == strlen(c->text) &&
			   memcmp(reply.text, c->text, reply.text_len) == 0,
		       "reply %s: text", c->name);
	}
	return tap_done();
}
