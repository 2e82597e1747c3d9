/*
 * test_userlimits.c - [limits] user_limits: file format errors with
 * "PATH:LINE: message", and the limits a login gets (its line key by key,
 * else the "*" line, else [limits]).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/userlimits.h"
#include "tests/unit/tap.h"

static const char limits_text[] =
    "# per-login send limits\n"
    "   # an indented comment\n"
    "\n"
    "newsletter  messages_per_hour=2000 recipients_per_hour=20000 "
    "recipients_per_day=100000\n"
    "Alice\trecipients_per_day=200\n"
    "BOB messages_per_hour=0\n"
    "*           messages_per_hour=100\n"
    "  carol recipients_per_hour=4294967295  \r\n"
    "\t\n"
    "dave.x@Example.COM messages_per_hour=007\n"
    "last recipients_per_hour=1";

/* [limits] values of the tests: not the defaults, to tell them apart. */
#define CFG_MPH 11
#define CFG_RPH 22
#define CFG_RPD 33

struct lookup_case {
	const char *name;
	const char *login;
	uint32_t mph, rph, rpd;
};

static const struct lookup_case lookup_cases[] = {
    {"all_three_keys_of_its_line", "newsletter", 2000, 20000, 100000},
    {"login_upper_case_in_query", "NEWSLETTER", 2000, 20000, 100000},
    {"login_upper_case_in_file", "alice", 100, CFG_RPH, 200},
    {"login_mixed_case_both", "aLiCe", 100, CFG_RPH, 200},
    {"zero_is_no_limit_and_overrides_star", "bob", 0, CFG_RPH, CFG_RPD},
    {"max_number", "carol", 100, 4294967295u, CFG_RPD},
    {"address_like_login_folded", "DAVE.X@example.com", 7, CFG_RPH, CFG_RPD},
    {"last_line_without_newline", "last", 100, 1, CFG_RPD},
    {"unknown_login_star_then_cfg", "nobody", 100, CFG_RPH, CFG_RPD},
    {"empty_login_star_then_cfg", "", 100, CFG_RPH, CFG_RPD},
    {"login_prefix_is_not_the_login", "alic", 100, CFG_RPH, CFG_RPD},
    {"longer_login_is_not_the_login", "alicex", 100, CFG_RPH, CFG_RPD},
    {"star_as_a_login_is_the_star_line", "*", 100, CFG_RPH, CFG_RPD},
    {"only_ascii_folds", "\xc3\x80lice", 100, CFG_RPH, CFG_RPD},
};

struct error_case {
	const char *name;
	const char *text;
	size_t len;	 /* 0: strlen(text) */
	const char *err; /* what goes to err */
};

static char long_line[2100];
static char long_login[300];

static const struct error_case error_cases[] = {
    {"login_without_key", "alice\n", 0,
     "t.lim:1: no key=value after login \"alice\"\n"},
    {"login_with_trailing_blanks_without_key", "alice  \t\r\n", 0,
     "t.lim:1: no key=value after login \"alice\"\n"},
    {"star_without_key", "*\n", 0, "t.lim:1: no key=value after login \"*\"\n"},
    {"field_without_equals", "alice messages_per_hour\n", 0,
     "t.lim:1: expected key=value, found \"messages_per_hour\"\n"},
    {"trailing_comment_is_a_field", "alice messages_per_hour=1 # note\n", 0,
     "t.lim:1: expected key=value, found \"#\"\n"},
    {"unknown_key", "alice messages_per_day=5\n", 0,
     "t.lim:1: unknown key \"messages_per_day\" (messages_per_hour, "
     "recipients_per_hour, recipients_per_day)\n"},
    {"key_case_sensitive", "alice Messages_per_hour=5\n", 0,
     "t.lim:1: unknown key \"Messages_per_hour\" (messages_per_hour, "
     "recipients_per_hour, recipients_per_day)\n"},
    {"empty_key", "alice =5\n", 0,
     "t.lim:1: unknown key \"\" (messages_per_hour, recipients_per_hour, "
     "recipients_per_day)\n"},
    {"duplicate_key", "alice messages_per_hour=1 messages_per_hour=2\n", 0,
     "t.lim:1: messages_per_hour given twice on the line\n"},
    {"empty_number", "alice recipients_per_day=\n", 0,
     "t.lim:1: bad number \"\" for recipients_per_day (0 to 4294967295)\n"},
    {"negative_number", "alice recipients_per_day=-1\n", 0,
     "t.lim:1: bad number \"-1\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"plus_sign", "alice recipients_per_day=+1\n", 0,
     "t.lim:1: bad number \"+1\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"number_too_large", "alice recipients_per_day=4294967296\n", 0,
     "t.lim:1: bad number \"4294967296\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"number_far_too_large",
     "alice recipients_per_day=99999999999999999999999999\n", 0,
     "t.lim:1: bad number \"99999999999999999999999999\" for "
     "recipients_per_day (0 to 4294967295)\n"},
    {"number_with_suffix", "alice recipients_per_day=10k\n", 0,
     "t.lim:1: bad number \"10k\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"second_equals", "alice recipients_per_day=1=2\n", 0,
     "t.lim:1: bad number \"1=2\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"hex_number", "alice recipients_per_day=0x10\n", 0,
     "t.lim:1: bad number \"0x10\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"line_starts_with_a_key", "messages_per_hour=5\n", 0,
     "t.lim:1: expected a login before \"messages_per_hour=5\"\n"},
    {"duplicate_login",
     "alice messages_per_hour=1\nalice messages_per_hour=2\n", 0,
     "t.lim:2: login \"alice\" given twice (first on line 1)\n"},
    {"duplicate_login_other_case",
     "Alice messages_per_hour=1\n\nALICE recipients_per_day=2\n", 0,
     "t.lim:3: login \"alice\" given twice (first on line 1)\n"},
    {"login_three_times",
     "bob messages_per_hour=1\nbob messages_per_hour=1\n"
     "bob messages_per_hour=1\n",
     0,
     "t.lim:2: login \"bob\" given twice (first on line 1)\n"
     "t.lim:3: login \"bob\" given twice (first on line 1)\n"},
    {"duplicate_star", "* messages_per_hour=1\n# x\n* recipients_per_day=2\n",
     0, "t.lim:3: login \"*\" given twice (first on line 1)\n"},
    {"control_byte_in_login", "al\x01ice messages_per_hour=1\n", 0,
     "t.lim:1: control byte 0x01 in login\n"},
    {"nul_byte_in_login", "al\0ice messages_per_hour=1\n", 27,
     "t.lim:1: control byte 0x00 in login\n"},
    {"cr_inside_login", "al\rice messages_per_hour=1\n", 0,
     "t.lim:1: control byte 0x0d in login\n"},
    {"del_in_login", "al\x7fice messages_per_hour=1\n", 0,
     "t.lim:1: control byte 0x7f in login\n"},
    {"eight_bit_byte_in_login", "\xc3\xa9lise messages_per_hour=1\n", 0,
     "t.lim:1: 8-bit byte 0xc3 in login\n"},
    {"control_byte_in_value", "alice messages_per_hour=1\x02\n", 0,
     "t.lim:1: control byte 0x02 in line\n"},
    {"eight_bit_byte_in_key", "alice m\xe9ssages=1\n", 0,
     "t.lim:1: 8-bit byte 0xe9 in line\n"},
    {"every_error_reported_with_its_line",
     "ok messages_per_hour=1\nbad\n\n# fine\nok messages_per_hour=2\n"
     "x y=1\nz recipients_per_day=x\n",
     0,
     "t.lim:2: no key=value after login \"bad\"\n"
     "t.lim:5: login \"ok\" given twice (first on line 1)\n"
     "t.lim:6: unknown key \"y\" (messages_per_hour, recipients_per_hour, "
     "recipients_per_day)\n"
     "t.lim:7: bad number \"x\" for recipients_per_day (0 to "
     "4294967295)\n"},
    {"duplicate_reported_after_a_bad_first", "a\na messages_per_hour=1\n", 0,
     "t.lim:1: no key=value after login \"a\"\n"},
    {"line_too_long", long_line, 0, "t.lim:2: line longer than 1024 bytes\n"},
    {"login_too_long", long_login, 0, "t.lim:1: login longer than 256 bytes\n"},
};

static void fill_long_cases(void)
{
	/* line 1: exactly 1024 bytes (fine); line 2: 1025 bytes. */
	static const char head[] = "a messages_per_hour=";
	size_t h = sizeof(head) - 1, o = 0;

	memcpy(long_line, head, h);
	o = h;
	memset(long_line + o, '0', 1024 - h);
	o += 1024 - h;
	long_line[o++] = '\n';
	memcpy(long_line + o, "b", 1);
	o += 1;
	memcpy(long_line + o, head + 1, h - 1);
	o += h - 1;
	memset(long_line + o, '0', 1025 - h);
	o += 1025 - h;
	memcpy(long_line + o, "\n", 2);

	memset(long_login, 'l', 257);
	memcpy(long_login + 257, " messages_per_hour=1\n", 22);
}

static char *parse_errors(const char *text, size_t len,
			  struct userlimits **map_r)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *err = open_memstream(&buf, &size);

	if (err == NULL)
		abort();
	*map_r = userlimits_parse(text, len, "t.lim", err);
	fclose(err);
	return buf;
}

static char *parse_text(const char *text, struct userlimits **map_r)
{
	return parse_errors(text, strlen(text), map_r);
}

static void test_config(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->limits.user_messages_per_hour = CFG_MPH;
	cfg->limits.user_recipients_per_hour = CFG_RPH;
	cfg->limits.user_recipients_per_day = CFG_RPD;
}

static bool limits_are(const struct userlimits *map, const struct config *cfg,
		       const char *login, uint32_t mph, uint32_t rph,
		       uint32_t rpd)
{
	struct user_send_limits got;

	memset(&got, 0xa5, sizeof(got));
	userlimits_get(map, cfg, login, login != NULL ? strlen(login) : 0,
		       &got);
	if (got.messages_per_hour == mph && got.recipients_per_hour == rph &&
	    got.recipients_per_day == rpd)
		return true;
	printf("# %s: got %u %u %u, expected %u %u %u\n",
	       login ? login : "(null)", got.messages_per_hour,
	       got.recipients_per_hour, got.recipients_per_day, mph, rph, rpd);
	return false;
}

static void test_lookups(void)
{
	struct config cfg;
	struct userlimits *map;
	char *errors = parse_errors(limits_text, strlen(limits_text), &map);

	test_config(&cfg);
	TAP_OK(map != NULL, "file parses");
	TAP_EQ_STR(errors, "", "file parses without messages");
	free(errors);
	if (map == NULL)
		return;
	for (size_t i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]);
	     i++) {
		const struct lookup_case *c = &lookup_cases[i];

		TAP_OK(limits_are(map, &cfg, c->login, c->mph, c->rph, c->rpd),
		       "limits %s: %s", c->name, c->login);
	}
	TAP_OK(limits_are(map, &cfg, NULL, 100, CFG_RPH, CFG_RPD),
	       "no login: the star line, then [limits]");
	{
		/* The length counts, not a NUL: "alice" within "alicex". */
		struct user_send_limits got;

		userlimits_get(map, &cfg, "alicex", 5, &got);
		TAP_OK(got.recipients_per_day == 200,
		       "login_len bounds the login");
		userlimits_get(map, &cfg, "alice\0x", 7, &got);
		TAP_OK(got.recipients_per_day == CFG_RPD,
		       "a login with a NUL is no line's");
	}
	TAP_OK(userlimits_ref(map) == map, "ref returns the map");
	userlimits_free(map);
	TAP_OK(limits_are(map, &cfg, "alice", 100, CFG_RPH, 200),
	       "one reference dropped: still in force");
	userlimits_free(map);

	TAP_OK(limits_are(NULL, &cfg, "alice", CFG_MPH, CFG_RPH, CFG_RPD),
	       "no file: [limits]");
	cfg.limits.user_messages_per_hour = 0;
	TAP_OK(limits_are(NULL, &cfg, "alice", 0, CFG_RPH, CFG_RPD),
	       "no file: [limits] 0 stays 0 (no limit)");
	userlimits_free(NULL);
}

static void test_fallbacks(void)
{
	struct config cfg;
	struct userlimits *map;
	char *errors;

	test_config(&cfg);
	errors = parse_text("alice messages_per_hour=5\n", &map);
	TAP_OK(map != NULL && errors[0] == '\0', "no star line: parses");
	TAP_OK(limits_are(map, &cfg, "alice", 5, CFG_RPH, CFG_RPD),
	       "no star line: the login's key, else [limits]");
	TAP_OK(limits_are(map, &cfg, "bob", CFG_MPH, CFG_RPH, CFG_RPD),
	       "no star line: another login gets [limits]");
	userlimits_free(map);
	free(errors);

	errors = parse_text("* recipients_per_hour=0 recipients_per_day=9\n"
			    "alice recipients_per_day=1\n",
			    &map);
	TAP_OK(map != NULL && errors[0] == '\0', "star first: parses");
	TAP_OK(limits_are(map, &cfg, "alice", CFG_MPH, 0, 1),
	       "per key: login, star (0: no limit), [limits]");
	TAP_OK(limits_are(map, &cfg, "zed", CFG_MPH, 0, 9),
	       "per key: star, then [limits]");
	userlimits_free(map);
	free(errors);

	errors = parse_errors("", 0, &map);
	TAP_OK(map != NULL && errors[0] == '\0', "empty file: a map");
	TAP_OK(limits_are(map, &cfg, "alice", CFG_MPH, CFG_RPH, CFG_RPD),
	       "empty file: [limits]");
	userlimits_free(map);
	free(errors);

	errors = parse_text("# only comments\n\n  \n", &map);
	TAP_OK(map != NULL && errors[0] == '\0', "comments only: a map");
	userlimits_free(map);
	free(errors);
}

static void test_errors(void)
{
	fill_long_cases();
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]);
	     i++) {
		const struct error_case *c = &error_cases[i];
		struct userlimits *map;
		char *errors = parse_errors(
		    c->text, c->len ? c->len : strlen(c->text), &map);

		TAP_OK(map == NULL, "error %s: refused", c->name);
		TAP_EQ_STR(errors, c->err, "error %s: message", c->name);
		userlimits_free(map);
		free(errors);
	}
}

static void test_limits_accepted(void)
{
	struct config cfg;
	struct userlimits *map;
	char text[300];
	char *errors;

	test_config(&cfg);
	/* A 256-byte login is fine, and found. */
	memset(text, 'L', 256);
	memcpy(text + 256, " messages_per_hour=3\n", 22);
	errors = parse_errors(text, strlen(text), &map);
	TAP_OK(map != NULL && errors[0] == '\0', "256-byte login accepted");
	text[256] = '\0';
	TAP_OK(map != NULL && limits_are(map, &cfg, text, 3, CFG_RPH, CFG_RPD),
	       "256-byte login found (folded)");
	memset(text, 'l', 257);
	text[257] = '\0';
	TAP_OK(map != NULL &&
		   limits_are(map, &cfg, text, CFG_MPH, CFG_RPH, CFG_RPD),
	       "257-byte login: no line");
	userlimits_free(map);
	free(errors);

	/* The 1024-byte first line of long_line alone is fine. */
	errors = parse_errors(long_line, 1025, &map);
	TAP_OK(map != NULL && errors[0] == '\0', "1024-byte line accepted");
	userlimits_free(map);
	free(errors);
}

static void test_many_logins(void)
{
	/* Enough lines for the binary search to matter, given out of
	 * order; every login is found and none borrows another's line. */
	enum { N = 1000 };
	struct config cfg;
	struct userlimits *map;
	char *text = malloc((size_t)N * 64), *errors;
	size_t len = 0;
	bool all = true;

	if (text == NULL)
		abort();
	test_config(&cfg);
	for (unsigned i = 0; i < N; i++) {
		unsigned k = (i * 7919u) % N;

		len += (size_t)snprintf(text + len, 64,
					"User%u messages_per_hour=%u\n", k, k);
	}
	errors = parse_errors(text, len, &map);
	TAP_OK(map != NULL && errors[0] == '\0', "1000 logins parse");
	for (unsigned k = 0; map != NULL && k < N; k++) {
		char login[32];

		snprintf(login, sizeof(login), "user%u", k);
		if (!limits_are(map, &cfg, login, k, CFG_RPH, CFG_RPD))
			all = false;
	}
	TAP_OK(all, "1000 logins: each its own line");
	TAP_OK(map != NULL &&
		   limits_are(map, &cfg, "user1000", CFG_MPH, CFG_RPH, CFG_RPD),
	       "1000 logins: another gets [limits]");
	userlimits_free(map);
	free(errors);
	free(text);
}

static void test_load(void)
{
	char path[] = "/tmp/test_userlimits.XXXXXX";
	int fd = mkstemp(path);
	struct config cfg;
	FILE *f;
	struct userlimits *map;
	char *buf = NULL;
	size_t size = 0;
	FILE *err;

	test_config(&cfg);
	if (fd < 0)
		abort();
	f = fdopen(fd, "w");
	if (f == NULL)
		abort();
	fputs("alice messages_per_hour=5\n* recipients_per_day=6\n", f);
	fclose(f);

	map = userlimits_load(path, stderr);
	TAP_OK(map != NULL, "load: file read");
	TAP_OK(map != NULL && limits_are(map, &cfg, "ALICE", 5, CFG_RPH, 6),
	       "load: lines in force");
	userlimits_free(map);

	f = fopen(path, "a");
	if (f == NULL)
		abort();
	fputs("bob\n", f);
	fclose(f);
	err = open_memstream(&buf, &size);
	if (err == NULL)
		abort();
	map = userlimits_load(path, err);
	fclose(err);
	TAP_OK(map == NULL, "load: a bad line refuses the file");
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "%s:3: no key=value after login \"bob\"\n", path);
		TAP_EQ_STR(buf, want, "load: PATH:LINE: message");
	}
	free(buf);
	unlink(path);

	buf = NULL;
	err = open_memstream(&buf, &size);
	if (err == NULL)
		abort();
	map = userlimits_load(path, err);
	fclose(err);
	TAP_OK(map == NULL && strstr(buf, path) == buf &&
		   strstr(buf, "No such file") != NULL,
	       "load: missing file reported with its path");
	free(buf);

	{
		struct config_errors errors = {NULL, 0};

		map = userlimits_read(path, &errors);
		TAP_OK(map == NULL && errors.count == 1 &&
			   errors.items[0].line == 0,
		       "read: missing file is one record, line 0");
		config_errors_finish(&errors);
	}
}

int main(void)
{
	test_lookups();
	test_fallbacks();
	test_errors();
	test_limits_accepted();
	test_many_logins();
	test_load();
	return tap_done();
}
