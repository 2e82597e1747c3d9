/*
 * test_relay_parse.c - EHLO capability filtering, MAIL FROM / RCPT TO
 * arguments, xtext; table-driven.
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

/* ---- MAIL FROM ---- */

struct mail_case {
	const char *name;
	const char *args;
	int result;
	const char *path;
	const char *out;
};

/* 254 bytes inside < >: the RFC 5321 §4.5.3.1.3 limit of 256 octets. */
#define L50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PATH254                                                                \
	L50 L50 L50 L50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example."  \
			"org"
#define PATH255 "b" PATH254

static const struct mail_case mail_cases[] = {
    {"plain", "FROM:<a@b>", 0, "a@b", "FROM:<a@b>"},
    {"prefix_case_insensitive", "from:<a@b>", 0, "a@b", "FROM:<a@b>"},
    {"one_space_after_colon_tolerated", "FROM: <a@b>", 0, "a@b", "FROM:<a@b>"},
    {"two_spaces_after_colon_refused", "FROM:  <a@b>", -1, NULL, NULL},
    {"space_before_colon_refused", "FROM :<a@b>", -1, NULL, NULL},
    {"null_sender", "FROM:<>", 0, "", "FROM:<>"},
    {"null_sender_with_params", "FROM:<> BODY=8BITMIME", 0, "",
     "FROM:<> BODY=8BITMIME"},
    {"auth_param_removed", "FROM:<a@b> SIZE=123 AUTH=<>", 0, "a@b",
     "FROM:<a@b> SIZE=123"},
    {"auth_param_removed_in_the_middle",
     "FROM:<a@b> AUTH=<> SIZE=123 BODY=8BITMIME", 0, "a@b",
     "FROM:<a@b> SIZE=123 BODY=8BITMIME"},
    {"auth_param_case_insensitive", "FROM:<a@b> auth=c+2Bd@e", 0, "a@b",
     "FROM:<a@b>"},
    {"auth_without_value_removed", "FROM:<a@b> AUTH", 0, "a@b", "FROM:<a@b>"},
    {"auth_prefix_is_another_keyword", "FROM:<a@b> AUTHX=1", 0, "a@b",
     "FROM:<a@b> AUTHX=1"},
    {"params_joined_by_single_spaces", "FROM:<a@b>   SIZE=1    BODY=7BIT  ", 0,
     "a@b", "FROM:<a@b> SIZE=1 BODY=7BIT"},
    {"keyword_without_value", "FROM:<a@b> SMTPUTF8", 0, "a@b",
     "FROM:<a@b> SMTPUTF8"},
    {"keyword_with_dash", "FROM:<a@b> X-FOO=bar", 0, "a@b",
     "FROM:<a@b> X-FOO=bar"},
    {"utf8_path", "FROM:<\xc3\xa9@b\xc3\xa9.example>", 0,
     "\xc3\xa9@b\xc3\xa9.example", "FROM:<\xc3\xa9@b\xc3\xa9.example>"},
    {"source_route_kept", "FROM:<@x,@y:a@b>", 0, "@x,@y:a@b",
     "FROM:<@x,@y:a@b>"},
    {"path_of_256_octets", "FROM:<" PATH254 ">", 0, PATH254,
     "FROM:<" PATH254 ">"},
    {"path_of_257_octets_refused", "FROM:<" PATH255 ">", -1, NULL, NULL},
    {"space_in_path_refused", "FROM:<a b@c>", -1, NULL, NULL},
    {"unclosed_path_refused", "FROM:<a@b", -1, NULL, NULL},
    {"no_brackets_refused", "FROM:a@b", -1, NULL, NULL},
    {"nested_brackets_refused", "FROM:<<a@b>>", -1, NULL, NULL},
    {"junk_after_path_refused", "FROM:<a@b>SIZE=1", -1, NULL, NULL},
    {"empty_value_refused", "FROM:<a@b> SIZE=", -1, NULL, NULL},
    {"empty_keyword_refused", "FROM:<a@b> =1", -1, NULL, NULL},
    {"keyword_starting_with_dash_refused", "FROM:<a@b> -X=1", -1, NULL, NULL},
    {"equals_in_value_refused", "FROM:<a@b> SIZE=1=2", -1, NULL, NULL},
    {"underscore_in_keyword_refused", "FROM:<a@b> X_Y", -1, NULL, NULL},
    {"tab_refused", "FROM:<a@b>\tSIZE=1", -1, NULL, NULL},
    {"cr_in_path_refused", "FROM:<a\r@b>", -1, NULL, NULL},
    {"lf_in_param_refused", "FROM:<a@b> X=\n", -1, NULL, NULL},
    {"del_refused", "FROM:<a@b> BODY=8BIT\x7f", -1, NULL, NULL},
    {"to_prefix_refused", "TO:<a@b>", -1, NULL, NULL},
    {"missing_colon_refused", "FROM <a@b>", -1, NULL, NULL},
    {"empty_refused", "", -1, NULL, NULL},
    {"prefix_only_refused", "FROM:", -1, NULL, NULL},
    {"utf8_param_value", "FROM:<a@b> X=\xc3\xa9", 0, "a@b",
     "FROM:<a@b> X=\xc3\xa9"},
};

static void test_mail_case(const struct mail_case *c)
{
	char path[300], out[600];
	int r;

	r = mail_from_rewrite(c->args, strlen(c->args), path, sizeof(path), out,
			      sizeof(out));
	TAP_EQ_INT(r, c->result, "mail %s: result", c->name);
	if (r != 0 || c->result != 0)
		return;
	TAP_EQ_STR(path, c->path, "mail %s: path", c->name);
	TAP_EQ_STR(out, c->out, "mail %s: rewritten", c->name);
}

static void test_mail_bounds(void)
{
	char path[8], out[32];

	TAP_EQ_INT(mail_from_rewrite("FROM:<a\0@b>", 11, path, sizeof(path),
				     out, sizeof(out)),
		   -1, "mail NUL in the path refused");
	TAP_EQ_INT(mail_from_rewrite("FROM:<abcdefgh@b>", 17, path,
				     sizeof(path), out, sizeof(out)),
		   -1, "mail path buffer too small refused");
	TAP_EQ_INT(mail_from_rewrite("FROM:<a@b> BODY=8BITMIME", 24, path,
				     sizeof(path), out, 16),
		   -1, "mail out buffer too small refused");
	TAP_OK(out[0] == '\0', "mail out left empty when too small");
	TAP_EQ_INT(mail_from_rewrite("FROM:<a@b> BODY=7BIT", 20, path,
				     sizeof(path), out, 21),
		   0, "mail out buffer of exactly the right size");
	TAP_EQ_STR(out, "FROM:<a@b> BODY=7BIT", "mail exact-size output");
	TAP_EQ_INT(mail_from_rewrite("FROM:<a@b> BODY=7BIT", 20, path,
				     sizeof(path), out, 20),
		   -1, "mail out buffer one short refused");
	TAP_EQ_INT(mail_from_rewrite("FROM:<a@b>XYZ", 10, path, sizeof(path),
				     out, sizeof(out)),
		   0, "mail length is honoured, not a NUL");
	TAP_EQ_INT(strlen(PATH254), 254, "mail test path is 254 bytes");
}

/* ---- RCPT TO ---- */

struct rcpt_case {
	const char *name;
	const char *args;
	int result;
};

static const struct rcpt_case rcpt_cases[] = {
    {"plain", "TO:<a@b>", 0},
    {"prefix_case_insensitive", "to:<a@b>", 0},
    {"postmaster_without_domain", "TO:<Postmaster>", 0},
    {"space_after_colon", "TO: <a@b>", 0},
    {"dsn_params", "TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b", 0},
    {"keyword_only_param", "TO:<a@b> NOTIFY", 0},
    {"utf8", "TO:<\xc3\xa9@b>", 0},
    {"empty_path_refused", "TO:<>", -1},
    {"unclosed_refused", "TO:<a@b", -1},
    {"from_prefix_refused", "FROM:<a@b>", -1},
    {"junk_after_path_refused", "TO:<a@b>x", -1},
    {"space_in_path_refused", "TO:<a @b>", -1},
    {"bad_param_refused", "TO:<a@b> NOTIFY=", -1},
    {"control_refused", "TO:<a@b> X=\x01", -1},
    {"long_path_refused", "TO:<" PATH255 ">", -1},
    {"path_of_256_octets", "TO:<" PATH254 ">", 0},
    {"empty_refused", "", -1},
};

/* ---- SIZE= ---- */

struct size_case {
	const char *name;
	const char *args;
	int result;
	uint64_t size;
};

static const struct size_case size_cases[] = {
    {"absent", "FROM:<a@b>", 0, 0},
    {"absent_other_params", "FROM:<a@b> BODY=8BITMIME", 0, 0},
    {"present", "FROM:<a@b> SIZE=123", 0, 123},
    {"case_insensitive", "FROM:<a@b> BODY=7BIT size=42 AUTH=<>", 0, 42},
    {"zero", "FROM:<> SIZE=0", 0, 0},
    {"max_u64", "FROM:<a@b> SIZE=18446744073709551615", 0, UINT64_MAX},
    {"overflow_refused", "FROM:<a@b> SIZE=18446744073709551616", -1, 0},
    {"not_decimal_refused", "FROM:<a@b> SIZE=12a", -1, 0},
    {"negative_refused", "FROM:<a@b> SIZE=-1", -1, 0},
    {"without_value_refused", "FROM:<a@b> SIZE", -1, 0},
    {"twice_refused", "FROM:<a@b> SIZE=1 SIZE=2", -1, 0},
    {"bad_shape_refused", "FROM:<a@b SIZE=1", -1, 0},
    {"sizex_is_not_size", "FROM:<a@b> SIZEX=abc", 0, 0},
};

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

	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++)
		test_mail_case(&mail_cases[i]);
	test_mail_bounds();

	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]);
	     i++) {
		const struct rcpt_case *c = &rcpt_cases[i];

		TAP_EQ_INT(rcpt_to_check(c->args, strlen(c->args)), c->result,
			   "rcpt %s", c->name);
	}

	for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]);
	     i++) {
		const struct size_case *c = &size_cases[i];
		uint64_t size = 99;
		int r = mail_from_size(c->args, strlen(c->args), &size);

		TAP_OK(r == c->result && size == c->size, "size %s", c->name);
		if (r != c->result || size != c->size)
			printf("# got %d, %llu\n", r, (unsigned long long)size);
	}

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
