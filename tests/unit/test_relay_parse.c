/*
 * test_relay_parse.c - EHLO capability filtering, MAIL FROM / RCPT TO
 * arguments and their parameters against every capability, xtext;
 * table-driven.
 */
#include <stdint.h>
#include <string.h>

#include "proxy/smtp-relay-parse.h"
#include "tests/unit/tap.h"

#define ALL_CAPS (~0u)

/* ---- EHLO ---- */

struct ehlo_case {
	const char *name;
	const char *lines[16]; /* NULL-terminated */
	unsigned allowed;
	uint64_t max_size;
	const char *shown; /* rendered lines joined by "|" */
	unsigned caps;
	unsigned xclient_attrs;
	uint64_t size;
	bool size_has_value;
};

static const struct ehlo_case ehlo_cases[] = {
    {"postfix_reply_filtered",
     {"PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
      "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN", "ENHANCEDSTATUSCODES", "8BITMIME",
      "DSN", "SMTPUTF8", "CHUNKING",
      "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR "
      "DESTPORT",
      NULL},
     ALL_CAPS,
     50000000,
     "PIPELINING|SIZE 10240000|8BITMIME|ENHANCEDSTATUSCODES|SMTPUTF8|DSN",
     EHLO_CAP_PIPELINING | EHLO_CAP_SIZE | EHLO_CAP_ENHANCEDSTATUSCODES |
	 EHLO_CAP_8BITMIME | EHLO_CAP_DSN | EHLO_CAP_SMTPUTF8 |
	 EHLO_CAP_XCLIENT,
     0xff,
     10240000,
     true},
    {"output_order_is_fixed",
     {"DELIVERBY 60", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES", "8BITMIME",
      "SIZE 5", "PIPELINING", NULL},
     ALL_CAPS,
     0,
     "PIPELINING|SIZE 5|8BITMIME|ENHANCEDSTATUSCODES|SMTPUTF8|DSN|"
     "DELIVERBY 60",
     0x7f,
     0,
     5,
     true},
    {"size_is_the_smaller_proxy",
     {"SIZE 100000000", NULL},
     ALL_CAPS,
     1000,
     "SIZE 1000",
     EHLO_CAP_SIZE,
     0,
     100000000,
     true},
    {"size_is_the_smaller_backend",
     {"SIZE 1000", NULL},
     ALL_CAPS,
     5000,
     "SIZE 1000",
     EHLO_CAP_SIZE,
     0,
     1000,
     true},
    {"size_zero_backend_shows_proxy_limit",
     {"SIZE 0", NULL},
     ALL_CAPS,
     5000,
     "SIZE 5000",
     EHLO_CAP_SIZE,
     0,
     0,
     true},
    {"size_without_value_shows_proxy_limit",
     {"SIZE", NULL},
     ALL_CAPS,
     5000,
     "SIZE 5000",
     EHLO_CAP_SIZE,
     0,
     0,
     false},
    {"size_unlimited_on_both_sides",
     {"SIZE", NULL},
     ALL_CAPS,
     0,
     "SIZE",
     EHLO_CAP_SIZE,
     0,
     0,
     false},
    {"size_only_if_backend_announced_it",
     {"PIPELINING", NULL},
     ALL_CAPS,
     5000,
     "PIPELINING",
     EHLO_CAP_PIPELINING,
     0,
     0,
     false},
    {"size_overflow_is_no_value",
     {"SIZE 99999999999999999999999", NULL},
     ALL_CAPS,
     7,
     "SIZE 7",
     EHLO_CAP_SIZE,
     0,
     0,
     false},
    {"size_max_u64",
     {"SIZE 18446744073709551615", NULL},
     ALL_CAPS,
     0,
     "SIZE 18446744073709551615",
     EHLO_CAP_SIZE,
     0,
     UINT64_MAX,
     true},
    {"size_junk_is_no_value",
     {"SIZE 12k", NULL},
     ALL_CAPS,
     7,
     "SIZE 7",
     EHLO_CAP_SIZE,
     0,
     0,
     false},
    {"keywords_case_insensitive",
     {"pipelining", "8bitmime", "Size 300", "smtputf8", NULL},
     ALL_CAPS,
     0,
     "PIPELINING|SIZE 300|8BITMIME|SMTPUTF8",
     EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME | EHLO_CAP_SIZE |
	 EHLO_CAP_SMTPUTF8,
     0,
     300,
     true},
    {"surrounding_spaces_ignored",
     {"  PIPELINING  ", " DSN", NULL},
     ALL_CAPS,
     0,
     "PIPELINING|DSN",
     EHLO_CAP_PIPELINING | EHLO_CAP_DSN,
     0,
     0,
     false},
    {"allowed_masks_the_backend",
     {"PIPELINING", "SIZE 10", "8BITMIME", "DSN", "SMTPUTF8", NULL},
     EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME,
     0,
     "PIPELINING|8BITMIME",
     EHLO_CAP_PIPELINING | EHLO_CAP_SIZE | EHLO_CAP_8BITMIME | EHLO_CAP_DSN |
	 EHLO_CAP_SMTPUTF8,
     0,
     10,
     true},
    {"deliverby_with_argument",
     {"DELIVERBY 240", NULL},
     ALL_CAPS,
     0,
     "DELIVERBY 240",
     EHLO_CAP_DELIVERBY,
     0,
     0,
     false},
    {"deliverby_without_argument",
     {"deliverby", NULL},
     ALL_CAPS,
     0,
     "DELIVERBY",
     EHLO_CAP_DELIVERBY,
     0,
     0,
     false},
    {"deliverby_odd_argument_dropped",
     {"DELIVERBY 1<script>", NULL},
     ALL_CAPS,
     0,
     "DELIVERBY",
     EHLO_CAP_DELIVERBY,
     0,
     0,
     false},
    {"deliverby_long_argument_dropped",
     {"DELIVERBY 1234567890", NULL},
     ALL_CAPS,
     0,
     "DELIVERBY",
     EHLO_CAP_DELIVERBY,
     0,
     0,
     false},
    {"xclient_noted_never_shown",
     {"XCLIENT NAME ADDR", NULL},
     ALL_CAPS,
     0,
     "",
     EHLO_CAP_XCLIENT,
     XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR,
     0,
     false},
    {"xclient_attrs_case_insensitive_unknown_ignored",
     {"xclient name Addr FOO login  destport REVERSE_NAME", NULL},
     ALL_CAPS,
     0,
     "",
     EHLO_CAP_XCLIENT,
     XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR | XCLIENT_ATTR_LOGIN |
	 XCLIENT_ATTR_DESTPORT,
     0,
     false},
    {"xclient_without_attrs",
     {"XCLIENT", NULL},
     ALL_CAPS,
     0,
     "",
     EHLO_CAP_XCLIENT,
     0,
     0,
     false},
    {"removed_extensions",
     {"STARTTLS", "AUTH PLAIN", "AUTH=LOGIN", "CHUNKING", "BINARYMIME", "ETRN",
      "XFORWARD NAME ADDR", "X-UNKNOWN", "8BITMIMEX", "PIPE", "SIZEX 5", "VRFY",
      "", "   ", NULL},
     ALL_CAPS,
     100,
     "",
     0,
     0,
     0,
     false},
};

static void test_ehlo_case(const struct ehlo_case *c)
{
	struct ehlo_caps caps;
	char lines[16][64];
	char joined[512];
	size_t n, o = 0;

	memset(&caps, 0, sizeof(caps));
	for (size_t i = 0; c->lines[i] != NULL; i++)
		ehlo_caps_add_line(&caps, c->lines[i], strlen(c->lines[i]));
	TAP_EQ_INT(caps.caps, c->caps, "ehlo %s: caps", c->name);
	TAP_EQ_INT(caps.xclient_attrs, c->xclient_attrs,
		   "ehlo %s: xclient attrs", c->name);
	TAP_OK(caps.size == c->size && caps.size_has_value == c->size_has_value,
	       "ehlo %s: size", c->name);
	n = ehlo_caps_render(&caps, c->allowed, c->max_size, lines, 16);
	joined[0] = '\0';
	for (size_t i = 0; i < n && o < sizeof(joined); i++)
		o += (size_t)snprintf(joined + o, sizeof(joined) - o, "%s%s",
				      i > 0 ? "|" : "", lines[i]);
	TAP_EQ_STR(joined, c->shown, "ehlo %s: shown to clients", c->name);
}

static void test_ehlo_render_respects_max_lines(void)
{
	struct ehlo_caps caps;
	char lines[2][64];
	size_t n;

	memset(&caps, 0, sizeof(caps));
	caps.caps = EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME | EHLO_CAP_DSN;
	n = ehlo_caps_render(&caps, ALL_CAPS, 0, lines, 2);
	TAP_OK(n == 2 && strcmp(lines[0], "PIPELINING") == 0 &&
		   strcmp(lines[1], "8BITMIME") == 0,
	       "ehlo render stops at max_lines");
	TAP_EQ_INT(ehlo_caps_render(&caps, ALL_CAPS, 0, lines, 0), 0,
		   "ehlo render with no room");
}

static void test_ehlo_size_line_replaced(void)
{
	struct ehlo_caps caps;

	memset(&caps, 0, sizeof(caps));
	ehlo_caps_add_line(&caps, "SIZE 10", 7);
	ehlo_caps_add_line(&caps, "SIZE", 4);
	TAP_OK(caps.size == 0 && !caps.size_has_value,
	       "ehlo a later SIZE line replaces an earlier one");
	/* The length given is what counts, not a NUL. */
	memset(&caps, 0, sizeof(caps));
	ehlo_caps_add_line(&caps, "DSNXYZ", 3);
	TAP_EQ_INT(caps.caps, EHLO_CAP_DSN, "ehlo line length is honoured");
}

/* ---- MAIL FROM / RCPT TO: shape ---- */

#define MAIL		 SMTP_ARGS_MAIL
#define RCPT		 SMTP_ARGS_RCPT
#define OK		 SMTP_ARGS_OK
#define SYNTAX		 SMTP_ARGS_SYNTAX
#define BAD_VALUE	 SMTP_ARGS_BAD_VALUE
#define DUPLICATE	 SMTP_ARGS_DUPLICATE
#define UNKNOWN		 SMTP_ARGS_UNKNOWN
#define NOT_OFFERED	 SMTP_ARGS_NOT_OFFERED
#define UTF8_REQUIRED	 SMTP_ARGS_UTF8_REQUIRED
#define UTF8_UNSUPPORTED SMTP_ARGS_UTF8_UNSUPPORTED
#define TOO_LONG	 SMTP_ARGS_TOO_LONG

/* Everything the proxy can pass on. */
#define CAPS_ALL EHLO_CAPS_PASS

struct args_case {
	const char *name;
	enum smtp_args_cmd cmd;
	const char *args;
	unsigned caps;
	bool tx_smtputf8; /* RCPT: the MAIL said SMTPUTF8 */
	enum smtp_args_verdict verdict;
	const char *out;   /* OK: the line for the backend */
	const char *param; /* otherwise: the parameter named, or NULL */
};

/* 254 bytes inside < >: the RFC 5321 §4.5.3.1.3 limit of 256 octets. */
#define L50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PATH254                                                                \
	L50 L50 L50 L50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example."  \
			"org"
#define PATH255 "b" PATH254
#define E_ACUTE "\xc3\xa9"

static const struct args_case args_cases[] = {
    /* The shape of MAIL FROM (RFC 5321 §4.1.1.2, §4.1.2). */
    {"mail plain", MAIL, "FROM:<a@b>", 0, false, OK, "MAIL FROM:<a@b>", NULL},
    {"mail prefix case-insensitive", MAIL, "from:<a@b>", 0, false, OK,
     "MAIL FROM:<a@b>", NULL},
    {"mail one space after the colon tolerated", MAIL, "FROM: <a@b>", 0, false,
     OK, "MAIL FROM:<a@b>", NULL},
    {"mail two spaces after the colon refused", MAIL, "FROM:  <a@b>", 0, false,
     SYNTAX, NULL, NULL},
    {"mail space before the colon refused", MAIL, "FROM :<a@b>", 0, false,
     SYNTAX, NULL, NULL},
    {"mail null sender", MAIL, "FROM:<>", 0, false, OK, "MAIL FROM:<>", NULL},
    {"mail null sender with params", MAIL, "FROM:<> BODY=8BITMIME", CAPS_ALL,
     false, OK, "MAIL FROM:<> BODY=8BITMIME", NULL},
    {"mail params joined by single spaces", MAIL,
     "FROM:<a@b>   SIZE=1    BODY=7BIT  ", CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> SIZE=1 BODY=7BIT", NULL},
    {"mail source route kept", MAIL, "FROM:<@x,@y:a@b>", 0, false, OK,
     "MAIL FROM:<@x,@y:a@b>", NULL},
    {"mail path of 256 octets", MAIL, "FROM:<" PATH254 ">", 0, false, OK,
     "MAIL FROM:<" PATH254 ">", NULL},
    {"mail path of 257 octets refused", MAIL, "FROM:<" PATH255 ">", 0, false,
     SYNTAX, NULL, NULL},
    {"mail space in the path refused", MAIL, "FROM:<a b@c>", 0, false, SYNTAX,
     NULL, NULL},
    {"mail unclosed path refused", MAIL, "FROM:<a@b", 0, false, SYNTAX, NULL,
     NULL},
    {"mail no brackets refused", MAIL, "FROM:a@b", 0, false, SYNTAX, NULL,
     NULL},
    {"mail nested brackets refused", MAIL, "FROM:<<a@b>>", 0, false, SYNTAX,
     NULL, NULL},
    {"mail junk after the path refused", MAIL, "FROM:<a@b>SIZE=1", 0, false,
     SYNTAX, NULL, NULL},
    {"mail empty value refused", MAIL, "FROM:<a@b> SIZE=", 0, false, SYNTAX,
     NULL, NULL},
    {"mail empty keyword refused", MAIL, "FROM:<a@b> =1", 0, false, SYNTAX,
     NULL, NULL},
    {"mail keyword starting with a dash refused", MAIL, "FROM:<a@b> -X=1", 0,
     false, SYNTAX, NULL, NULL},
    {"mail equals in a value refused", MAIL, "FROM:<a@b> SIZE=1=2", 0, false,
     SYNTAX, NULL, NULL},
    {"mail underscore in a keyword refused", MAIL, "FROM:<a@b> X_Y", 0, false,
     SYNTAX, NULL, NULL},
    {"mail tab refused", MAIL, "FROM:<a@b>\tSIZE=1", 0, false, SYNTAX, NULL,
     NULL},
    {"mail CR in the path refused", MAIL, "FROM:<a\r@b>", 0, false, SYNTAX,
     NULL, NULL},
    {"mail LF in a param refused", MAIL, "FROM:<a@b> X=\n", 0, false, SYNTAX,
     NULL, NULL},
    {"mail DEL refused", MAIL, "FROM:<a@b> BODY=8BIT\x7f", 0, false, SYNTAX,
     NULL, NULL},
    {"mail TO prefix refused", MAIL, "TO:<a@b>", 0, false, SYNTAX, NULL, NULL},
    {"mail missing colon refused", MAIL, "FROM <a@b>", 0, false, SYNTAX, NULL,
     NULL},
    {"mail empty refused", MAIL, "", 0, false, SYNTAX, NULL, NULL},
    {"mail prefix only refused", MAIL, "FROM:", 0, false, SYNTAX, NULL, NULL},

    /* The shape of RCPT TO (RFC 5321 §4.1.1.3). */
    {"rcpt plain", RCPT, "TO:<a@b>", 0, false, OK, "RCPT TO:<a@b>", NULL},
    {"rcpt prefix case-insensitive", RCPT, "to:<a@b>", 0, false, OK,
     "RCPT TO:<a@b>", NULL},
    {"rcpt postmaster without a domain", RCPT, "TO:<Postmaster>", 0, false, OK,
     "RCPT TO:<Postmaster>", NULL},
    {"rcpt space after the colon", RCPT, "TO: <a@b>", 0, false, OK,
     "RCPT TO:<a@b>", NULL},
    {"rcpt empty path refused", RCPT, "TO:<>", CAPS_ALL, false, SYNTAX, NULL,
     NULL},
    {"rcpt unclosed refused", RCPT, "TO:<a@b", 0, false, SYNTAX, NULL, NULL},
    {"rcpt FROM prefix refused", RCPT, "FROM:<a@b>", 0, false, SYNTAX, NULL,
     NULL},
    {"rcpt junk after the path refused", RCPT, "TO:<a@b>x", 0, false, SYNTAX,
     NULL, NULL},
    {"rcpt space in the path refused", RCPT, "TO:<a @b>", 0, false, SYNTAX,
     NULL, NULL},
    {"rcpt control refused", RCPT, "TO:<a@b> X=\x01", 0, false, SYNTAX, NULL,
     NULL},
    {"rcpt long path refused", RCPT, "TO:<" PATH255 ">", 0, false, SYNTAX, NULL,
     NULL},
    {"rcpt path of 256 octets", RCPT, "TO:<" PATH254 ">", 0, false, OK,
     "RCPT TO:<" PATH254 ">", NULL},
    {"rcpt empty refused", RCPT, "", 0, false, SYNTAX, NULL, NULL},

    /* AUTH= (RFC 4954 §5): removed, whatever the backend offers. */
    {"mail AUTH removed", MAIL, "FROM:<a@b> SIZE=123 AUTH=<>", CAPS_ALL, false,
     OK, "MAIL FROM:<a@b> SIZE=123", NULL},
    {"mail AUTH removed in the middle", MAIL,
     "FROM:<a@b> AUTH=<> SIZE=123 BODY=8BITMIME", CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME", NULL},
    {"mail AUTH case-insensitive", MAIL, "FROM:<a@b> auth=c+2Bd@e", 0, false,
     OK, "MAIL FROM:<a@b>", NULL},
    {"mail AUTH without a value removed", MAIL, "FROM:<a@b> AUTH", 0, false, OK,
     "MAIL FROM:<a@b>", NULL},
    {"mail AUTH twice refused", MAIL, "FROM:<a@b> AUTH=<> AUTH=x", CAPS_ALL,
     false, DUPLICATE, NULL, "AUTH"},
    {"rcpt AUTH is unknown", RCPT, "TO:<a@b> AUTH=<>", CAPS_ALL, false, UNKNOWN,
     NULL, "AUTH"},

    /* Unknown keywords: the proxy offers none. */
    {"mail prefix of AUTH is another keyword", MAIL, "FROM:<a@b> AUTHX=1",
     CAPS_ALL, false, UNKNOWN, NULL, "AUTHX"},
    {"mail unknown keyword with a dash", MAIL, "FROM:<a@b> X-FOO=bar", CAPS_ALL,
     false, UNKNOWN, NULL, "X-FOO"},
    {"mail unknown keyword without a value", MAIL, "FROM:<a@b> XYZ", CAPS_ALL,
     false, UNKNOWN, NULL, "XYZ"},
    {"mail unknown keyword after a good one", MAIL,
     "FROM:<a@b> SIZE=1 X-FOO=bar", CAPS_ALL, false, UNKNOWN, NULL, "X-FOO"},
    {"mail SIZEX is not SIZE", MAIL, "FROM:<a@b> SIZEX=abc", CAPS_ALL, false,
     UNKNOWN, NULL, "SIZEX"},
    {"mail the first bad parameter is named", MAIL, "FROM:<a@b> X-ONE X-TWO",
     CAPS_ALL, false, UNKNOWN, NULL, "X-ONE"},

    /* Keywords are case-insensitive and go as the client wrote them. */
    {"mail lower-case keywords", MAIL,
     "FROM:<a@b> size=5 body=8bitmime ret=hdrs envid=x smtputf8 by=5;r",
     CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> size=5 body=8bitmime ret=hdrs envid=x smtputf8 by=5;r",
     NULL},
    {"rcpt lower-case keywords", RCPT,
     "TO:<a@b> notify=success,delay orcpt=rfc822;a+40b", CAPS_ALL, false, OK,
     "RCPT TO:<a@b> notify=success,delay orcpt=rfc822;a+40b", NULL},
    {"mail lower-case keyword not offered", MAIL, "FROM:<a@b> ret=full",
     EHLO_CAP_SIZE, false, NOT_OFFERED, NULL, "RET"},
    {"mail mixed-case duplicate", MAIL, "FROM:<a@b> Size=1 sIZE=1", CAPS_ALL,
     false, DUPLICATE, NULL, "SIZE"},

    /* A parameter given twice: the proxy and the backend must not read
     * different ones. */
    {"mail SIZE twice", MAIL, "FROM:<a@b> SIZE=1 SIZE=2", CAPS_ALL, false,
     DUPLICATE, NULL, "SIZE"},
    {"mail SMTPUTF8 twice", MAIL, "FROM:<a@b> SMTPUTF8 SMTPUTF8", CAPS_ALL,
     false, DUPLICATE, NULL, "SMTPUTF8"},
    {"mail BODY twice", MAIL, "FROM:<a@b> BODY=7BIT BODY=8BITMIME", CAPS_ALL,
     false, DUPLICATE, NULL, "BODY"},
    {"rcpt NOTIFY twice", RCPT, "TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", CAPS_ALL,
     false, DUPLICATE, NULL, "NOTIFY"},
    {"rcpt ORCPT twice", RCPT, "TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;b",
     CAPS_ALL, false, DUPLICATE, NULL, "ORCPT"},

    /* Values, each as its RFC has it. */
    {"mail SIZE not decimal", MAIL, "FROM:<a@b> SIZE=12a", CAPS_ALL, false,
     BAD_VALUE, NULL, "SIZE"},
    {"mail SIZE negative", MAIL, "FROM:<a@b> SIZE=-1", CAPS_ALL, false,
     BAD_VALUE, NULL, "SIZE"},
    {"mail SIZE without a value", MAIL, "FROM:<a@b> SIZE", CAPS_ALL, false,
     BAD_VALUE, NULL, "SIZE"},
    {"mail SIZE overflow", MAIL, "FROM:<a@b> SIZE=18446744073709551616",
     CAPS_ALL, false, BAD_VALUE, NULL, "SIZE"},
    {"mail SIZE bad even when dropped", MAIL, "FROM:<a@b> SIZE=x", 0, false,
     BAD_VALUE, NULL, "SIZE"},
    {"mail BODY unknown value", MAIL, "FROM:<a@b> BODY=8BIT", CAPS_ALL, false,
     BAD_VALUE, NULL, "BODY"},
    {"mail BODY without a value", MAIL, "FROM:<a@b> BODY", CAPS_ALL, false,
     BAD_VALUE, NULL, "BODY"},
    {"mail SMTPUTF8 with a value", MAIL, "FROM:<a@b> SMTPUTF8=yes", CAPS_ALL,
     false, BAD_VALUE, NULL, "SMTPUTF8"},
    {"mail RET unknown value", MAIL, "FROM:<a@b> RET=NONE", CAPS_ALL, false,
     BAD_VALUE, NULL, "RET"},
    {"mail RET without a value", MAIL, "FROM:<a@b> RET", CAPS_ALL, false,
     BAD_VALUE, NULL, "RET"},
    {"mail ENVID without a value", MAIL, "FROM:<a@b> ENVID", CAPS_ALL, false,
     BAD_VALUE, NULL, "ENVID"},
    {"mail ENVID non-ASCII without SMTPUTF8", MAIL, "FROM:<a@b> ENVID=" E_ACUTE,
     CAPS_ALL, false, BAD_VALUE, NULL, "ENVID"},
    {"mail ENVID non-ASCII with SMTPUTF8", MAIL,
     "FROM:<a@b> SMTPUTF8 ENVID=" E_ACUTE, CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> SMTPUTF8 ENVID=" E_ACUTE, NULL},
    {"mail ENVID non-ASCII, SMTPUTF8 after it", MAIL,
     "FROM:<a@b> ENVID=" E_ACUTE " SMTPUTF8", CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> ENVID=" E_ACUTE " SMTPUTF8", NULL},
    {"mail BY relative", MAIL, "FROM:<a@b> BY=+120;RT", CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> BY=+120;RT", NULL},
    {"mail BY negative notify", MAIL, "FROM:<a@b> BY=-5;N", CAPS_ALL, false, OK,
     "MAIL FROM:<a@b> BY=-5;N", NULL},
    {"mail BY without a mode", MAIL, "FROM:<a@b> BY=120", CAPS_ALL, false,
     BAD_VALUE, NULL, "BY"},
    {"mail BY without a time", MAIL, "FROM:<a@b> BY=;R", CAPS_ALL, false,
     BAD_VALUE, NULL, "BY"},
    {"mail BY ten digits", MAIL, "FROM:<a@b> BY=1234567890;R", CAPS_ALL, false,
     BAD_VALUE, NULL, "BY"},
    {"mail BY unknown mode", MAIL, "FROM:<a@b> BY=1;X", CAPS_ALL, false,
     BAD_VALUE, NULL, "BY"},
    {"mail BY junk after the trace", MAIL, "FROM:<a@b> BY=1;RTT", CAPS_ALL,
     false, BAD_VALUE, NULL, "BY"},
    {"rcpt NOTIFY NEVER", RCPT, "TO:<a@b> NOTIFY=NEVER", CAPS_ALL, false, OK,
     "RCPT TO:<a@b> NOTIFY=NEVER", NULL},
    {"rcpt NOTIFY all three", RCPT, "TO:<a@b> NOTIFY=SUCCESS,FAILURE,DELAY",
     CAPS_ALL, false, OK, "RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE,DELAY", NULL},
    {"rcpt NOTIFY NEVER with another", RCPT, "TO:<a@b> NOTIFY=NEVER,SUCCESS",
     CAPS_ALL, false, BAD_VALUE, NULL, "NOTIFY"},
    {"rcpt NOTIFY trailing comma", RCPT, "TO:<a@b> NOTIFY=SUCCESS,", CAPS_ALL,
     false, BAD_VALUE, NULL, "NOTIFY"},
    {"rcpt NOTIFY unknown", RCPT, "TO:<a@b> NOTIFY=SOMETIMES", CAPS_ALL, false,
     BAD_VALUE, NULL, "NOTIFY"},
    {"rcpt NOTIFY without a value", RCPT, "TO:<a@b> NOTIFY", CAPS_ALL, false,
     BAD_VALUE, NULL, "NOTIFY"},
    {"rcpt ORCPT without a type", RCPT, "TO:<a@b> ORCPT=;a@b", CAPS_ALL, false,
     BAD_VALUE, NULL, "ORCPT"},
    {"rcpt ORCPT without a semicolon", RCPT, "TO:<a@b> ORCPT=a@b", CAPS_ALL,
     false, BAD_VALUE, NULL, "ORCPT"},
    {"rcpt ORCPT without an address", RCPT, "TO:<a@b> ORCPT=rfc822;", CAPS_ALL,
     false, BAD_VALUE, NULL, "ORCPT"},
    {"rcpt ORCPT odd type", RCPT, "TO:<a@b> ORCPT=rfc.822;a", CAPS_ALL, false,
     BAD_VALUE, NULL, "ORCPT"},
    {"rcpt ORCPT non-ASCII outside SMTPUTF8", RCPT,
     "TO:<a@b> ORCPT=utf-8;" E_ACUTE "@b", CAPS_ALL, false, BAD_VALUE, NULL,
     "ORCPT"},
    {"rcpt ORCPT non-ASCII in an SMTPUTF8 transaction", RCPT,
     "TO:<a@b> ORCPT=utf-8;" E_ACUTE "@b", CAPS_ALL, true, OK,
     "RCPT TO:<a@b> ORCPT=utf-8;" E_ACUTE "@b", NULL},

    /* RFC 6531 §3.2, §3.7.4: non-ASCII addresses need SMTPUTF8, on the
     * MAIL and at the backend; the path is looked at first. */
    {"mail non-ASCII without SMTPUTF8", MAIL,
     "FROM:<" E_ACUTE "@b" E_ACUTE ".example>", CAPS_ALL, false, UTF8_REQUIRED,
     NULL, NULL},
    {"mail non-ASCII with SMTPUTF8", MAIL,
     "FROM:<" E_ACUTE "@b" E_ACUTE ".example> SMTPUTF8", CAPS_ALL, false, OK,
     "MAIL FROM:<" E_ACUTE "@b" E_ACUTE ".example> SMTPUTF8", NULL},
    {"mail non-ASCII with SMTPUTF8 the backend lacks", MAIL,
     "FROM:<" E_ACUTE "@b> SMTPUTF8", CAPS_ALL & ~EHLO_CAP_SMTPUTF8, false,
     UTF8_UNSUPPORTED, NULL, NULL},
    {"mail non-ASCII before a bad parameter", MAIL,
     "FROM:<" E_ACUTE "@b> X-FOO", CAPS_ALL, false, UTF8_REQUIRED, NULL, NULL},
    {"mail ASCII with SMTPUTF8 the backend lacks", MAIL, "FROM:<a@b> SMTPUTF8",
     CAPS_ALL & ~EHLO_CAP_SMTPUTF8, false, NOT_OFFERED, NULL, "SMTPUTF8"},
    {"mail null sender in an SMTPUTF8 transaction", MAIL, "FROM:<> SMTPUTF8",
     CAPS_ALL, false, OK, "MAIL FROM:<> SMTPUTF8", NULL},
    {"mail non-ASCII local part only", MAIL, "FROM:<j\xc3\xb6rg@example.org>",
     CAPS_ALL, false, UTF8_REQUIRED, NULL, NULL},
    {"mail any byte over 0x7f counts", MAIL, "FROM:<a\x80@b>", CAPS_ALL, false,
     UTF8_REQUIRED, NULL, NULL},
    {"rcpt non-ASCII outside an SMTPUTF8 transaction", RCPT,
     "TO:<" E_ACUTE "@b>", CAPS_ALL, false, UTF8_REQUIRED, NULL, NULL},
    {"rcpt non-ASCII in an SMTPUTF8 transaction", RCPT, "TO:<" E_ACUTE "@b>",
     CAPS_ALL, true, OK, "RCPT TO:<" E_ACUTE "@b>", NULL},
    {"rcpt non-ASCII, the backend lacks SMTPUTF8", RCPT, "TO:<" E_ACUTE "@b>",
     CAPS_ALL & ~EHLO_CAP_SMTPUTF8, true, UTF8_UNSUPPORTED, NULL, NULL},
    {"rcpt ASCII in an SMTPUTF8 transaction", RCPT, "TO:<a@b>", 0, true, OK,
     "RCPT TO:<a@b>", NULL},
    {"rcpt SMTPUTF8 is a MAIL parameter", RCPT, "TO:<a@b> SMTPUTF8", CAPS_ALL,
     true, UNKNOWN, NULL, "SMTPUTF8"},
};

static void test_args_case(const struct args_case *c)
{
	char out[600];
	struct smtp_args a;
	enum smtp_args_verdict v;

	v = smtp_args_filter(c->cmd, c->args, strlen(c->args), c->caps,
			     c->tx_smtputf8, out, sizeof(out), &a);
	TAP_EQ_INT(v, c->verdict, "args %s: verdict", c->name);
	if (v == OK && c->verdict == OK) {
		TAP_EQ_STR(out, c->out, "args %s: line", c->name);
		TAP_EQ_INT(a.out_len, strlen(out), "args %s: out_len", c->name);
	}
	if (v != OK && c->verdict != OK) {
		char param[80] = "";

		TAP_OK(out[0] == '\0', "args %s: no line", c->name);
		if (a.param != NULL)
			snprintf(param, sizeof(param), "%.*s", (int)a.param_len,
				 a.param);
		TAP_EQ_STR(c->param != NULL ? param : (a.param ? "set" : ""),
			   c->param != NULL ? c->param : "",
			   "args %s: parameter named", c->name);
	}
}

/* ---- every parameter x every capability ---- */

enum param_rule {
	NEEDS,	 /* relayed with its extension, else 555 */
	DROPPED, /* SIZE: relayed with SIZE, else dropped from the line */
	REMOVED, /* AUTH: never relayed */
	NEVER,	 /* BODY=BINARYMIME: 555 whatever the backend has */
	NOT_OURS /* not a parameter of this command: 555 unknown */
};

struct param_case {
	enum smtp_args_cmd cmd;
	const char *param; /* as the client writes it */
	enum param_rule rule;
	unsigned cap;	     /* NEEDS, DROPPED: the extension */
	const char *keyword; /* as refusals name it */
	const char *ext;     /* NEVER, NEEDS: as the 555 names it */
};

static const struct param_case param_cases[] = {
    {MAIL, "SIZE=100", DROPPED, EHLO_CAP_SIZE, "SIZE", NULL},
    {MAIL, "BODY=7BIT", NEEDS, EHLO_CAP_8BITMIME, "BODY", "8BITMIME"},
    {MAIL, "BODY=8BITMIME", NEEDS, EHLO_CAP_8BITMIME, "BODY", "8BITMIME"},
    {MAIL, "BODY=BINARYMIME", NEVER, 0, "BODY", "BINARYMIME"},
    {MAIL, "SMTPUTF8", NEEDS, EHLO_CAP_SMTPUTF8, "SMTPUTF8", "SMTPUTF8"},
    {MAIL, "RET=FULL", NEEDS, EHLO_CAP_DSN, "RET", "DSN"},
    {MAIL, "RET=HDRS", NEEDS, EHLO_CAP_DSN, "RET", "DSN"},
    {MAIL, "ENVID=QQ314159", NEEDS, EHLO_CAP_DSN, "ENVID", "DSN"},
    {MAIL, "BY=120;R", NEEDS, EHLO_CAP_DELIVERBY, "BY", "DELIVERBY"},
    {MAIL, "AUTH=<>", REMOVED, 0, "AUTH", NULL},
    {MAIL, "AUTH=alice+40example.com", REMOVED, 0, "AUTH", NULL},
    {RCPT, "NOTIFY=SUCCESS,FAILURE", NEEDS, EHLO_CAP_DSN, "NOTIFY", "DSN"},
    {RCPT, "NOTIFY=NEVER", NEEDS, EHLO_CAP_DSN, "NOTIFY", "DSN"},
    {RCPT, "ORCPT=rfc822;bob+40example.net", NEEDS, EHLO_CAP_DSN, "ORCPT",
     "DSN"},
    /* Each command's parameters on the other, and strangers. */
    {RCPT, "SIZE=100", NOT_OURS, 0, "SIZE", NULL},
    {RCPT, "BODY=8BITMIME", NOT_OURS, 0, "BODY", NULL},
    {RCPT, "RET=FULL", NOT_OURS, 0, "RET", NULL},
    {RCPT, "ENVID=x", NOT_OURS, 0, "ENVID", NULL},
    {RCPT, "BY=1;R", NOT_OURS, 0, "BY", NULL},
    {MAIL, "NOTIFY=NEVER", NOT_OURS, 0, "NOTIFY", NULL},
    {MAIL, "ORCPT=rfc822;a", NOT_OURS, 0, "ORCPT", NULL},
    {MAIL, "X-FOO=1", NOT_OURS, 0, "X-FOO", NULL},
    {MAIL, "XCLIENT", NOT_OURS, 0, "XCLIENT", NULL},
    {RCPT, "X-BAR", NOT_OURS, 0, "X-BAR", NULL},
};

/* The capability sets each parameter meets: none, each extension alone,
 * all but each, all. */
static const unsigned cap_bits[] = {
    EHLO_CAP_SIZE,
    EHLO_CAP_8BITMIME,
    EHLO_CAP_PIPELINING,
    EHLO_CAP_SMTPUTF8,
    EHLO_CAP_ENHANCEDSTATUSCODES,
    EHLO_CAP_DSN,
    EHLO_CAP_DELIVERBY,
    EHLO_CAP_XCLIENT,
};
#define NCAPS (sizeof(cap_bits) / sizeof(cap_bits[0]))

static void test_param_caps(const struct param_case *c, unsigned caps)
{
	const char *prefix = c->cmd == MAIL ? "FROM:<a@b>" : "TO:<a@b>";
	const char *bare = c->cmd == MAIL ? "MAIL FROM:<a@b>" : "RCPT TO:<a@b>";
	char args[128], out[160], with[160], reply[200], what[200];
	struct smtp_args a;
	enum smtp_args_verdict v, expected = OK;
	const char *line = with;

	snprintf(args, sizeof(args), "%s %s", prefix, c->param);
	snprintf(with, sizeof(with), "%s %s", bare, c->param);
	snprintf(what, sizeof(what), "%s %s with caps 0x%x",
		 c->cmd == MAIL ? "MAIL" : "RCPT", c->param, caps);
	switch (c->rule) {
	case NEEDS:
		if (!(caps & c->cap))
			expected = NOT_OFFERED;
		break;
	case DROPPED:
		if (!(caps & c->cap))
			line = bare;
		break;
	case REMOVED:
		line = bare;
		break;
	case NEVER:
		expected = NOT_OFFERED;
		break;
	case NOT_OURS:
		expected = UNKNOWN;
		break;
	}
	v = smtp_args_filter(c->cmd, args, strlen(args), caps, false, out,
			     sizeof(out), &a);
	TAP_EQ_INT(v, expected, "param %s: verdict", what);
	if (v != expected)
		return;
	if (v == OK) {
		TAP_EQ_STR(out, line, "param %s: line", what);
		return;
	}
	TAP_OK(a.param != NULL && a.param_len == strlen(c->keyword) &&
		   strncmp(a.param, c->keyword, a.param_len) == 0,
	       "param %s: names %s", what, c->keyword);
	smtp_args_reply(c->cmd, v, &a, reply, sizeof(reply));
	TAP_OK(strncmp(reply, "555 5.5.4 ", 10) == 0 &&
		   strstr(reply, c->keyword) != NULL &&
		   (c->ext == NULL || strstr(reply, c->ext) != NULL),
	       "param %s: reply \"%s\"", what, reply);
}

static void test_params_by_caps(void)
{
	for (size_t i = 0; i < sizeof(param_cases) / sizeof(param_cases[0]);
	     i++) {
		const struct param_case *c = &param_cases[i];

		test_param_caps(c, 0);
		test_param_caps(c, CAPS_ALL);
		test_param_caps(c, ~0u);
		for (size_t b = 0; b < NCAPS; b++) {
			test_param_caps(c, cap_bits[b]);
			test_param_caps(c, CAPS_ALL & ~cap_bits[b]);
		}
	}
}

/* ---- SIZE=, the transaction's SMTPUTF8 ---- */

struct size_case {
	const char *name;
	const char *args;
	bool has_size;
	uint64_t size;
};

static const struct size_case size_cases[] = {
    {"absent", "FROM:<a@b>", false, 0},
    {"absent with other params", "FROM:<a@b> BODY=8BITMIME", false, 0},
    {"present", "FROM:<a@b> SIZE=123", true, 123},
    {"case-insensitive", "FROM:<a@b> BODY=7BIT size=42 AUTH=<>", true, 42},
    {"zero", "FROM:<> SIZE=0", true, 0},
    {"max u64", "FROM:<a@b> SIZE=18446744073709551615", true, UINT64_MAX},
};

static void test_size_cases(void)
{
	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]);
	     i++) {
		const struct size_case *c = &size_cases[i];
		struct smtp_args a;
		char out[128];

		/* Read also when the backend lacks SIZE: the limit is the
		 * proxy's. */
		for (int without = 0; without < 2; without++) {
			unsigned caps =
			    without ? CAPS_ALL & ~EHLO_CAP_SIZE : CAPS_ALL;
			enum smtp_args_verdict v =
			    smtp_args_filter(MAIL, c->args, strlen(c->args),
					     caps, false, out, sizeof(out), &a);

			TAP_OK(v == OK && a.has_size == c->has_size &&
				   a.size == c->size,
			       "size %s (caps 0x%x)", c->name, caps);
		}
	}
}

static void test_args_smtputf8_flag(void)
{
	struct smtp_args a;
	char out[64];

	smtp_args_filter(MAIL, "FROM:<a@b> smtputf8", 19, CAPS_ALL, false, out,
			 sizeof(out), &a);
	TAP_OK(a.smtputf8, "args MAIL with SMTPUTF8 opens an SMTPUTF8 "
			   "transaction");
	smtp_args_filter(MAIL, "FROM:<a@b>", 10, CAPS_ALL, true, out,
			 sizeof(out), &a);
	TAP_OK(!a.smtputf8, "args MAIL without SMTPUTF8 does not, whatever "
			    "tx_smtputf8 says");
	smtp_args_filter(RCPT, "TO:<a@b>", 8, CAPS_ALL, true, out, sizeof(out),
			 &a);
	TAP_OK(a.smtputf8, "args RCPT takes its transaction's SMTPUTF8");
	TAP_OK(a.path_len == 3 && strncmp(a.path, "a@b", 3) == 0,
	       "args RCPT path");
}

/* ---- bounds, fixed point, replies ---- */

static void test_args_bounds(void)
{
	char out[32];
	struct smtp_args a;

	TAP_EQ_INT(smtp_args_filter(MAIL, "FROM:<a\0@b>", 11, 0, false, out,
				    sizeof(out), &a),
		   SYNTAX, "args NUL in the path refused");
	TAP_EQ_INT(smtp_args_filter(MAIL, "FROM:<a@b> BODY=8BITMIME", 24,
				    CAPS_ALL, false, out, 16, &a),
		   TOO_LONG, "args out buffer too small refused");
	TAP_OK(out[0] == '\0', "args out left empty when too small");
	/* "MAIL FROM:<a@b> BODY=7BIT" is 25 bytes and its NUL. */
	TAP_EQ_INT(smtp_args_filter(MAIL, "FROM:<a@b> BODY=7BIT", 20, CAPS_ALL,
				    false, out, 26, &a),
		   OK, "args out buffer of exactly the right size");
	TAP_EQ_STR(out, "MAIL FROM:<a@b> BODY=7BIT", "args exact-size output");
	TAP_EQ_INT(smtp_args_filter(MAIL, "FROM:<a@b> BODY=7BIT", 20, CAPS_ALL,
				    false, out, 25, &a),
		   TOO_LONG, "args out buffer one short refused");
	TAP_EQ_INT(
	    smtp_args_filter(MAIL, "FROM:<a@b>", 10, 0, false, out, 0, &a),
	    TOO_LONG, "args no out buffer at all");
	TAP_EQ_INT(smtp_args_filter(MAIL, "FROM:<a@b>XYZ", 10, 0, false, out,
				    sizeof(out), &a),
		   OK, "args length is honoured, not a NUL");
	TAP_EQ_INT(strlen(PATH254), 254, "args test path is 254 bytes");
}

/* The line for the backend, filtered again (as the pump does when the
 * command goes), is itself; with fewer caps, what they lack goes. */
static void test_args_fixed_point(void)
{
	static const char *const lines[] = {
	    "FROM: <a@b>  SIZE=10 AUTH=<> BODY=8BITMIME RET=HDRS ENVID=x",
	    "FROM:<> SMTPUTF8 BY=10;R",
	    "TO:<a@b>   NOTIFY=NEVER ORCPT=rfc822;a",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		enum smtp_args_cmd cmd = lines[i][0] == 'T' ? RCPT : MAIL;
		char out[128], again[128];
		struct smtp_args a;

		TAP_EQ_INT(smtp_args_filter(cmd, lines[i], strlen(lines[i]),
					    CAPS_ALL, false, out, sizeof(out),
					    &a),
			   OK, "args fixed point %zu: first", i);
		TAP_EQ_INT(smtp_args_filter(cmd, out + 5, strlen(out) - 5,
					    CAPS_ALL, false, again,
					    sizeof(again), &a),
			   OK, "args fixed point %zu: again", i);
		TAP_EQ_STR(again, out, "args fixed point %zu: same line", i);
	}
}

struct reply_case {
	enum smtp_args_cmd cmd;
	const char *args;
	unsigned caps;
	const char *reply;
};

static const struct reply_case reply_cases[] = {
    {MAIL, "FROM:a@b", 0, "501 5.5.4 Syntax: MAIL FROM:<address>"},
    {RCPT, "TO:a@b", 0, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {MAIL, "FROM:<a@b> SIZE=x", 0, "501 5.5.4 Bad SIZE parameter"},
    {MAIL, "FROM:<a@b> size=1 SIZE=2", 0, "501 5.5.4 Duplicate SIZE parameter"},
    {MAIL, "FROM:<a@b> x-foo=1", 0,
     "555 5.5.4 Unsupported MAIL parameter x-foo"},
    {RCPT, "TO:<a@b> SIZE=1", 0, "555 5.5.4 Unsupported RCPT parameter SIZE"},
    {MAIL, "FROM:<a@b> ret=full", 0,
     "555 5.5.4 MAIL parameter RET not supported: DSN is not offered"},
    {RCPT, "TO:<a@b> NOTIFY=NEVER", 0,
     "555 5.5.4 RCPT parameter NOTIFY not supported: DSN is not offered"},
    {MAIL, "FROM:<a@b> BODY=BINARYMIME", CAPS_ALL,
     "555 5.5.4 MAIL parameter BODY not supported: BINARYMIME is not "
     "offered"},
    {MAIL, "FROM:<a@b> BY=1;R", 0,
     "555 5.5.4 MAIL parameter BY not supported: DELIVERBY is not offered"},
    {MAIL, "FROM:<" E_ACUTE "@b>", CAPS_ALL,
     "553 5.6.7 Non-ASCII address requires SMTPUTF8"},
    {MAIL, "FROM:<" E_ACUTE "@b> SMTPUTF8", 0,
     "553 5.6.7 Non-ASCII address not supported"},
    /* An unknown keyword is the client's: cut at 64 characters. */
    {MAIL, "FROM:<a@b> " L50 L50, 0,
     "555 5.5.4 Unsupported MAIL parameter " L50 "aaaaaaaaaaaaaa"},
};

static void test_args_replies(void)
{
	char out[300], reply[300];
	struct smtp_args a;

	for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]);
	     i++) {
		const struct reply_case *c = &reply_cases[i];
		enum smtp_args_verdict v =
		    smtp_args_filter(c->cmd, c->args, strlen(c->args), c->caps,
				     false, out, sizeof(out), &a);

		smtp_args_reply(c->cmd, v, &a, reply, sizeof(reply));
		TAP_EQ_STR(reply, c->reply, "args reply %zu", i);
	}
	smtp_args_reply(MAIL, SMTP_ARGS_TOO_LONG, &a, reply, sizeof(reply));
	TAP_OK(strncmp(reply, "500 5.5.6 ", 10) == 0, "args reply too long");
	smtp_args_reply(MAIL, UNKNOWN, &a, reply, 8);
	TAP_OK(strlen(reply) == 7, "args reply cut to its buffer");
	for (int v = 0; v < SMTP_ARGS_VERDICT_COUNT; v++)
		for (int w = v + 1; w < SMTP_ARGS_VERDICT_COUNT; w++)
			TAP_OK(strcmp(smtp_args_verdict_name(
					  (enum smtp_args_verdict)v),
				      smtp_args_verdict_name(
					  (enum smtp_args_verdict)w)) != 0,
			       "args verdict names %d and %d differ", v, w);
}

/* ---- xtext ---- */

struct xtext_case {
	const char *name;
	const char *in;
	size_t in_len;
	size_t out_size;
	long result;
	const char *out;
};

static const struct xtext_case xtext_cases[] = {
    {"printable_unchanged", "abc", 3, 64, 3, "abc"},
    {"plus_and_equals_encoded", "a+b=c", 5, 64, 9, "a+2Bb+3Dc"},
    {"space_encoded", "a b", 3, 64, 5, "a+20b"},
    {"eight_bit_encoded_upper_hex", "\xc3\xa9", 2, 64, 6, "+C3+A9"},
    {"controls_encoded", "\x7f\x01", 2, 64, 6, "+7F+01"},
    {"nul_encoded", "a\0b", 3, 64, 5, "a+00b"},
    {"range_edges", "!~", 2, 64, 2, "!~"},
    {"empty", "", 0, 1, 0, ""},
    {"exact_room", "abc", 3, 4, 3, "abc"},
    {"one_short", "abc", 3, 3, -1, NULL},
    {"escape_exact_room", "+", 1, 4, 3, "+2B"},
    {"escape_one_short", "+", 1, 3, -1, NULL},
    {"no_room_at_all", "", 0, 0, -1, NULL},
    {"ipv6_address", "IPV6:2001:db8::1", 16, 64, 16, "IPV6:2001:db8::1"},
};

/* ---- XCLIENT ---- */

struct xclient_case {
	const char *name;
	struct xclient_client client;
	unsigned attrs;
	size_t size;
	const char *line; /* NULL: does not fit */
};

#define XCLIENT_RELAY_ATTRS                                                    \
	(XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR | XCLIENT_ATTR_PORT |           \
	 XCLIENT_ATTR_HELO | XCLIENT_ATTR_LOGIN | XCLIENT_ATTR_PROTO)

static const struct xclient_case xclient_cases[] = {
    {"every_attribute_in_order",
     {"192.0.2.7", 51234, "client.example", "alice"},
     0xff,
     256,
     "XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=51234 "
     "HELO=client.example LOGIN=alice PROTO=ESMTP"},
    {"only_the_listed_attributes",
     {"192.0.2.7", 51234, "client.example", "alice"},
     XCLIENT_ATTR_NAME | XCLIENT_ATTR_HELO,
     256,
     "XCLIENT NAME=[UNAVAILABLE] HELO=client.example"},
    {"ipv6_address_prefixed",
     {"2001:db8::1", 25, NULL, NULL},
     XCLIENT_RELAY_ATTRS,
     256,
     "XCLIENT NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 PORT=25 "
     "PROTO=ESMTP"},
    {"values_are_xtext",
     {"192.0.2.7", 1, "a=b", "al+ice bob"},
     XCLIENT_ATTR_HELO | XCLIENT_ATTR_LOGIN,
     256,
     "XCLIENT HELO=a+3Db LOGIN=al+2Bice+20bob"},
    {"too_long_refused",
     {"192.0.2.7", 51234, "client.example", "alice"},
     XCLIENT_RELAY_ATTRS,
     40,
     NULL},
};

static void test_xclient_build(void)
{
	for (size_t i = 0; i < sizeof(xclient_cases) / sizeof(xclient_cases[0]);
	     i++) {
		const struct xclient_case *c = &xclient_cases[i];
		char out[256];
		long r;

		r = xclient_build(&c->client, c->attrs, out, c->size);
		if (c->line == NULL) {
			TAP_OK(r < 0 && out[0] == '\0', "xclient %s: refused",
			       c->name);
			continue;
		}
		TAP_EQ_INT(r, (long)strlen(c->line), "xclient %s: length",
			   c->name);
		TAP_EQ_STR(out, c->line, "xclient %s: line", c->name);
	}
}

int main(void)
{
	for (size_t i = 0; i < sizeof(ehlo_cases) / sizeof(ehlo_cases[0]); i++)
		test_ehlo_case(&ehlo_cases[i]);
	test_ehlo_render_respects_max_lines();
	test_ehlo_size_line_replaced();

	for (size_t i = 0; i < sizeof(args_cases) / sizeof(args_cases[0]); i++)
		test_args_case(&args_cases[i]);
	test_params_by_caps();
	test_size_cases();
	test_args_smtputf8_flag();
	test_args_bounds();
	test_args_fixed_point();
	test_args_replies();

	for (size_t i = 0; i < sizeof(xtext_cases) / sizeof(xtext_cases[0]);
	     i++) {
		const struct xtext_case *c = &xtext_cases[i];
		char out[64];
		long r = xtext_encode(c->in, c->in_len, out, c->out_size);

		TAP_EQ_INT(r, c->result, "xtext %s: result", c->name);
		if (r >= 0 && c->result >= 0)
			TAP_EQ_STR(out, c->out, "xtext %s: text", c->name);
	}
	test_xclient_build();
	return tap_done();
}
