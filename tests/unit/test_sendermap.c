/*
 * test_sendermap.c - [relay] sender_map: file format errors with
 * "PATH:LINE: message", and which envelope senders a login may use.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/sendermap.h"
#include "tests/unit/tap.h"

static const char map_text[] = "# who may send as whom\n"
			       "   # an indented comment\n"
			       "\n"
			       "alice   alice@example.com\n"
			       "alice\t@example.org\n"
			       "Bob     bob@Example.NET\n"
			       "admin   *\n"
			       "  carol c.a.r.o.l+tag@Sub.Example.com  \r\n"
			       "\t\n"
			       "last    last@example.com";

struct lookup_case {
	const char *name;
	const char *login;
	const char *address;
	bool allowed;
};

static const struct lookup_case lookup_cases[] = {
    {"exact_address", "alice", "alice@example.com", true},
    {"domain_case_insensitive", "alice", "alice@EXAMPLE.COM", true},
    {"local_part_case_sensitive", "alice", "Alice@example.com", false},
    {"login_case_insensitive", "ALICE", "alice@example.com", true},
    {"domain_rule_any_local_part", "alice", "anyone@example.org", true},
    {"domain_rule_case_insensitive", "alice", "x@EXAMPLE.ORG", true},
    {"domain_rule_not_subdomains", "alice", "x@sub.example.org", false},
    {"domain_rule_not_suffix_domains", "alice", "x@example.org.evil", false},
    {"domain_rule_not_a_longer_name", "alice", "x@myexample.org", false},
    {"address_not_a_longer_domain", "alice", "alice@example.comm", false},
    {"other_logins_address", "alice", "bob@example.net", false},
    {"second_login", "bob", "bob@example.net", true},
    {"rule_domain_case_insensitive", "BOB", "bob@EXAMPLE.net", true},
    {"star_allows_anything", "admin", "anything@anywhere.example", true},
    {"star_allows_no_domain", "admin", "postmaster", true},
    {"no_domain_needs_star", "alice", "postmaster", false},
    {"unknown_login_nothing", "nobody", "nobody@example.com", false},
    {"null_sender_empty_always", "nobody", "", true},
    {"null_sender_brackets_always", "nobody", "<>", true},
    {"brackets_tolerated", "alice", "<alice@example.com>", true},
    {"indented_line_with_crlf", "carol", "c.a.r.o.l+tag@sub.example.com", true},
    {"last_line_without_newline", "last", "last@example.com", true},
    {"domain_after_the_last_at", "alice", "\"a@b\"@example.org", true},
    {"at_in_domain_part_no_match", "alice", "alice@example.com@evil.example",
     false},
    {"empty_login_nothing", "", "alice@example.com", false},
    {"login_prefix_not_a_login", "alic", "alice@example.com", false},
    {"login_longer_not_a_login", "alicex", "alice@example.com", false},
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
    {"one_field", "alice\n", 0,
     "t.map:1: expected 2 fields (login address), found 1\n"},
    {"three_fields", "alice a@b.example c\n", 0,
     "t.map:1: expected 2 fields (login address), found 3\n"},
    {"trailing_comment_is_a_field", "alice a@b.example # note\n", 0,
     "t.map:1: expected 2 fields (login address), found 4\n"},
    {"empty_domain", "alice a@\n", 0,
     "t.map:1: bad address \"a@\": empty domain after '@'\n"},
    {"at_alone", "alice @\n", 0,
     "t.map:1: bad address \"@\": empty domain after '@'\n"},
    {"two_ats", "alice a@b@c\n", 0,
     "t.map:1: bad address \"a@b@c\": more than one '@'\n"},
    {"two_ats_domain_rule", "alice @a@b\n", 0,
     "t.map:1: bad address \"@a@b\": more than one '@'\n"},
    {"no_at", "alice nodomain\n", 0,
     "t.map:1: bad address \"nodomain\": an address needs an '@' (or is "
     "\"*\")\n"},
    {"brackets", "alice <a@b>\n", 0,
     "t.map:1: bad address \"<a@b>\": an address is written without < >\n"},
    {"null_sender_in_map", "alice <>\n", 0,
     "t.map:1: bad address \"<>\": an address is written without < >\n"},
    {"star_with_text", "alice *x\n", 0,
     "t.map:1: bad address \"*x\": an address needs an '@' (or is "
     "\"*\")\n"},
    {"control_character", "alice a\x01@b\n", 0,
     "t.map:1: control character 0x01 in line\n"},
    {"nul_byte", "alice a\0@b\n", 11,
     "t.map:1: control character 0x00 in line\n"},
    {"cr_inside_line", "alice a@b\rx\n", 0,
     "t.map:1: control character 0x0d in line\n"},
    {"every_error_reported_with_its_line",
     "ok a@b.example\nbad\n\n# fine\nx y z\nok2 @\n", 0,
     "t.map:2: expected 2 fields (login address), found 1\n"
     "t.map:5: expected 2 fields (login address), found 3\n"
     "t.map:6: bad address \"@\": empty domain after '@'\n"},
    {"line_too_long", long_line, 0, "t.map:2: line longer than 1024 bytes\n"},
    {"login_too_long", long_login, 0, "t.map:1: login longer than 256 bytes\n"},
};

static void fill_long_cases(void)
{
	/* line 1: exactly 1024 bytes (fine); line 2: 1025 bytes. */
	size_t o = 0;

	memcpy(long_line, "a ", 2);
	o = 2;
	memset(long_line + o, 'x', 1024 - 2 - 4);
	o += 1024 - 2 - 4;
	memcpy(long_line + o, "@b.c\n", 5);
	o += 5;
	memcpy(long_line + o, "a ", 2);
	o += 2;
	memset(long_line + o, 'x', 1025 - 2 - 4);
	o += 1025 - 2 - 4;
	memcpy(long_line + o, "@b.c\n", 6);

	memset(long_login, 'l', 257);
	memcpy(long_login + 257, " *\n", 4);
}

static char *parse_errors(const char *text, size_t len,
			  struct sendermap **map_r)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *err = open_memstream(&buf, &size);

	if (err == NULL)
		abort();
	*map_r = sendermap_parse(text, len, "t.map", err);
	fclose(err);
	return buf;
}

static void test_lookups(void)
{
	struct sendermap *map;
	char *errors = parse_errors(map_text, strlen(map_text), &map);

	TAP_OK(map != NULL, "map parses");
	TAP_EQ_STR(errors, "", "map parses without messages");
	free(errors);
	if (map == NULL)
		return;
	for (size_t i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]);
	     i++) {
		const struct lookup_case *c = &lookup_cases[i];

		TAP_EQ_INT(sendermap_allows(map, c->login, c->address),
			   c->allowed, "allows %s: %s as <%s>", c->name,
			   c->login, c->address);
	}
	TAP_OK(!sendermap_allows(map, "alice", NULL), "no address: refused");
	TAP_OK(!sendermap_allows(map, NULL, "alice@example.com"),
	       "no login: refused");
	TAP_OK(sendermap_allows(map, NULL, ""),
	       "no login: null sender allowed");
	sendermap_free(map);

	TAP_OK(sendermap_allows(NULL, "alice", "<>"),
	       "no map: null sender allowed");
	TAP_OK(!sendermap_allows(NULL, "alice", "alice@example.com"),
	       "no map: nothing else allowed");
	sendermap_free(NULL);
}

static void test_empty_maps(void)
{
	struct sendermap *map;
	char *errors = parse_errors("", 0, &map);

	TAP_OK(map != NULL && errors[0] == '\0', "empty file: a map");
	TAP_OK(map != NULL &&
		   !sendermap_allows(map, "alice", "alice@x.example"),
	       "empty map: a login with no line may use no address");
	TAP_OK(map != NULL && sendermap_allows(map, "alice", ""),
	       "empty map: but the null sender");
	sendermap_free(map);
	free(errors);

	errors = parse_errors("# only comments\n\n  \n", 20, &map);
	TAP_OK(map != NULL && errors[0] == '\0', "comments only: a map");
	sendermap_free(map);
	free(errors);
}

static void test_errors(void)
{
	fill_long_cases();
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]);
	     i++) {
		const struct error_case *c = &error_cases[i];
		struct sendermap *map;
		char *errors = parse_errors(
		    c->text, c->len ? c->len : strlen(c->text), &map);

		TAP_OK(map == NULL, "error %s: refused", c->name);
		TAP_EQ_STR(errors, c->err, "error %s: message", c->name);
		sendermap_free(map);
		free(errors);
	}
}

static void test_limits_accepted(void)
{
	struct sendermap *map;
	char text[300];
	char *errors;

	/* A 256-byte login is fine. */
	memset(text, 'l', 256);
	memcpy(text + 256, " *\n", 4);
	errors = parse_errors(text, strlen(text), &map);
	text[256] = '\0';
	TAP_OK(map != NULL && sendermap_allows(map, text, "x@y.example"),
	       "256-byte login accepted");
	sendermap_free(map);
	free(errors);

	/* The 1024-byte first line of long_line alone is fine. */
	errors = parse_errors(long_line, 1025, &map);
	TAP_OK(map != NULL && errors[0] == '\0', "1024-byte line accepted");
	sendermap_free(map);
	free(errors);
}

static void test_load(void)
{
	char path[] = "/tmp/test_sendermap.XXXXXX";
	int fd = mkstemp(path);
	FILE *f;
	struct sendermap *map;
	char *buf = NULL;
	size_t size = 0;
	FILE *err;

	if (fd < 0)
		abort();
	f = fdopen(fd, "w");
	if (f == NULL)
		abort();
	fputs("alice alice@example.com\nalice @example.org\n", f);
	fclose(f);

	map = sendermap_load(path, stderr);
	TAP_OK(map != NULL, "load: file read");
	TAP_OK(map != NULL && sendermap_allows(map, "alice", "a@example.org") &&
		   !sendermap_allows(map, "alice", "a@example.com"),
	       "load: rules in force");
	sendermap_free(map);

	f = fopen(path, "a");
	if (f == NULL)
		abort();
	fputs("bob\n", f);
	fclose(f);
	err = open_memstream(&buf, &size);
	if (err == NULL)
		abort();
	map = sendermap_load(path, err);
	fclose(err);
	TAP_OK(map == NULL, "load: a bad line refuses the file");
	{
		char want[128];

		snprintf(want, sizeof(want),
			 "%s:3: expected 2 fields (login address), found 1\n",
			 path);
		TAP_EQ_STR(buf, want, "load: PATH:LINE: message");
	}
	free(buf);
	unlink(path);

	buf = NULL;
	err = open_memstream(&buf, &size);
	if (err == NULL)
		abort();
	map = sendermap_load(path, err);
	fclose(err);
	TAP_OK(map == NULL && strstr(buf, path) == buf &&
		   strstr(buf, "No such file") != NULL,
	       "load: missing file reported with its path");
	free(buf);
}

int main(void)
{
	test_lookups();
	test_empty_maps();
	test_errors();
	test_limits_accepted();
	test_load();
	return tap_done();
}
