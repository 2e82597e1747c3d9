/* test_session_cmd.c - the command table: every verb in every phase and
 * TLS state, what the session does with it (refuses with which reply,
 * answers itself, or relays), and the generic checks written once. */
#include <stdbool.h>
#include <string.h>

#include "proxy/session-cmd.h"
#include "tests/unit/tap.h"

/* The sessions a command can meet. */
enum env_kind {
	PLAIN,	  /* STARTTLS listener, before TLS, TLS not required */
	MUST_TLS, /* require_tls, before TLS */
	TLS,	  /* after STARTTLS (or implicit TLS), before AUTH */
	AUTHED,	  /* after AUTH */
	ENV_COUNT
};

static const char *const env_names[ENV_COUNT] = {"plain", "must_tls", "tls",
						 "authed"};

static struct session_cmd_env make_env(enum env_kind k)
{
	struct session_cmd_env e = {
	    .authenticated = k == AUTHED,
	    .tls = k == TLS || k == AUTHED,
	    .starttls_offered = true,
	    .tls_required = k == MUST_TLS,
	    .esmtp = true,
	    .helo_seen = true,
	    .auth_offered = k == TLS,
	};
	return e;
}

/* What a verb gets: "L" local, "R" relayed, else the reply's first
 * characters ("530 5.7.0 Must"). */
struct row {
	enum smtp_verb verb;
	const char *args;
	const char *expect[ENV_COUNT];
};

#define AUTHREQ "530 5.7.0 Authentication required"
#define TLSREQ	"530 5.7.0 Must issue a STARTTLS command first"
#define NOTIMPL "502 5.5.1 Command not implemented"

static const struct row rows[] = {
    {SMTP_VERB_UNKNOWN,
     "",
     {"500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1"}},
    {SMTP_VERB_EHLO, "client.example", {"L", "L", "L", "R"}},
    {SMTP_VERB_HELO, "client.example", {"L", "L", "L", "R"}},
    {SMTP_VERB_STARTTLS,
     "",
     {"L", "L", "503 5.5.1 TLS already active",
      "503 5.5.1 STARTTLS not allowed now"}},
    {SMTP_VERB_AUTH,
     "PLAIN",
     {"538 5.7.11", TLSREQ, "L", "503 5.5.1 Already authenticated"}},
    {SMTP_VERB_MAIL, "FROM:<a@b>", {AUTHREQ, TLSREQ, AUTHREQ, "R"}},
    {SMTP_VERB_RCPT, "TO:<a@b>", {AUTHREQ, TLSREQ, AUTHREQ, "R"}},
    {SMTP_VERB_DATA, "", {AUTHREQ, TLSREQ, AUTHREQ, "R"}},
    {SMTP_VERB_BDAT, "10 LAST", {AUTHREQ, TLSREQ, AUTHREQ, NOTIMPL}},
    {SMTP_VERB_VRFY, "bob", {AUTHREQ, TLSREQ, AUTHREQ, "R"}},
    {SMTP_VERB_EXPN, "list", {AUTHREQ, TLSREQ, AUTHREQ, "R"}},
    {SMTP_VERB_NOOP, "", {"L", "L", "L", "R"}},
    {SMTP_VERB_RSET, "", {"L", "L", "L", "R"}},
    {SMTP_VERB_QUIT, "", {"L", "L", "L", "R"}},
    {SMTP_VERB_HELP, "", {"L", "L", "L", "R"}},
    {SMTP_VERB_ETRN, "x", {NOTIMPL, NOTIMPL, NOTIMPL, NOTIMPL}},
    {SMTP_VERB_TURN, "", {NOTIMPL, NOTIMPL, NOTIMPL, NOTIMPL}},
    {SMTP_VERB_ATRN, "", {NOTIMPL, NOTIMPL, NOTIMPL, NOTIMPL}},
    {SMTP_VERB_XCLIENT, "ADDR=1.2.3.4", {NOTIMPL, NOTIMPL, NOTIMPL, NOTIMPL}},
    {SMTP_VERB_XFORWARD, "ADDR=1.2.3.4", {NOTIMPL, NOTIMPL, NOTIMPL, NOTIMPL}},
};

static void check(const struct session_cmd_env *env, enum smtp_verb verb,
		  const char *args, const char *expect, const char *what)
{
	struct smtp_cmd cmd = {
	    .verb = verb,
	    .verb_text = smtp_verb_name(verb),
	    .verb_len = strlen(smtp_verb_name(verb)),
	    .args = args,
	    .args_len = strlen(args),
	};
	struct session_cmd_verdict v;
	const char *got;

	session_cmd_check(env, &cmd, &v);
	if (v.action == SESSION_CMD_LOCAL)
		got = "L";
	else if (v.action == SESSION_CMD_RELAY)
		got = "R";
	else
		got = v.reply ? v.reply : "(no reply)";
	TAP_OK(strncmp(got, expect, strlen(expect)) == 0 &&
		   (strlen(expect) > 1 || strlen(got) == 1),
	       "%s %s %s: %s", what, smtp_verb_name(verb), args, expect);
	if (strncmp(got, expect, strlen(expect)) != 0)
		printf("# got \"%s\"\n", got);
}

static void test_every_verb_in_every_state(void)
{
	TAP_EQ_INT(sizeof(rows) / sizeof(rows[0]), SMTP_VERB_COUNT,
		   "every verb has a row");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		for (int k = 0; k < ENV_COUNT; k++) {
			struct session_cmd_env env = make_env(k);

			check(&env, rows[i].verb, rows[i].args,
			      rows[i].expect[k], env_names[k]);
		}
	}
}

static void test_generic_checks(void)
{
	struct session_cmd_env plain = make_env(PLAIN);
	struct session_cmd_env tls = make_env(TLS);
	struct session_cmd_env authed = make_env(AUTHED);
	struct session_cmd_env no_ehlo = make_env(TLS);
	struct session_cmd_env no_starttls = make_env(PLAIN);

	/* Takes no arguments: before and after AUTH. */
	check(&plain, SMTP_VERB_RSET, "x", "501 5.5.4 Syntax: RSET", "args");
	check(&plain, SMTP_VERB_QUIT, "now", "501 5.5.4 Syntax: QUIT", "args");
	check(&plain, SMTP_VERB_STARTTLS, "x", "501 5.5.4 Syntax: STARTTLS",
	      "args");
	check(&authed, SMTP_VERB_DATA, "x", "501 5.5.4 Syntax: DATA", "args");
	check(&authed, SMTP_VERB_RSET, "x", "501 5.5.4 Syntax: RSET", "args");
	/* NOOP and HELP take a string (RFC 5321 §4.1.1.9). */
	check(&plain, SMTP_VERB_NOOP, "hello", "L", "args");
	check(&authed, SMTP_VERB_NOOP, "hello", "R", "args");
	/* The EHLO argument. */
	check(&plain, SMTP_VERB_EHLO, "", "501 5.5.4 Syntax: EHLO hostname",
	      "helo");
	check(&plain, SMTP_VERB_EHLO, "two words",
	      "501 5.5.4 Syntax: EHLO hostname", "helo");
	check(&authed, SMTP_VERB_HELO, "<a@b>",
	      "501 5.5.4 Syntax: HELO hostname", "helo");
	check(&plain, SMTP_VERB_EHLO, "[192.0.2.1]", "L", "helo");
	check(&plain, SMTP_VERB_EHLO, "[IPv6:2001:db8::1]", "L", "helo");
	check(&plain, SMTP_VERB_EHLO, "my_pc.local", "L", "helo");
	/* AUTH: EHLO first (RFC 4954 §4), a mechanism, STARTTLS offered. */
	no_ehlo.esmtp = false;
	check(&no_ehlo, SMTP_VERB_AUTH, "PLAIN",
	      "503 5.5.1 Error: send EHLO first", "auth");
	check(&tls, SMTP_VERB_AUTH, "", "501 5.5.4 Syntax: AUTH", "auth");
	no_starttls.starttls_offered = false;
	check(&no_starttls, SMTP_VERB_STARTTLS, "", NOTIMPL, "starttls");
}

static void test_junk(void)
{
	struct session_cmd_env env = make_env(PLAIN);
	struct session_cmd_verdict v;
	struct smtp_cmd noop = {SMTP_VERB_NOOP, "NOOP", 4, "", 0};
	struct smtp_cmd ehlo = {SMTP_VERB_EHLO, "EHLO", 4, "a.example", 9};
	struct smtp_cmd quit = {SMTP_VERB_QUIT, "QUIT", 4, "", 0};
	struct smtp_cmd mail = {SMTP_VERB_MAIL, "MAIL", 4, "FROM:<a@b>", 10};

	session_cmd_check(&env, &noop, &v);
	TAP_OK(v.junk, "NOOP is junk");
	session_cmd_check(&env, &quit, &v);
	TAP_OK(!v.junk, "QUIT is not junk");
	env.helo_seen = false;
	session_cmd_check(&env, &ehlo, &v);
	TAP_OK(!v.junk, "the first EHLO is not junk");
	env.helo_seen = true;
	session_cmd_check(&env, &ehlo, &v);
	TAP_OK(v.junk, "a repeated EHLO is junk");
	env = make_env(AUTHED);
	session_cmd_check(&env, &mail, &v);
	TAP_OK(!v.junk && v.action == SESSION_CMD_RELAY,
	       "MAIL after AUTH is relayed, not junk");
	session_cmd_check(&env, &noop, &v);
	TAP_OK(v.junk && v.action == SESSION_CMD_RELAY,
	       "NOOP after AUTH is relayed and junk");
}

static void test_helo_shapes(void)
{
	static const struct {
		const char *arg;
		bool ok;
	} cases[] = {
	    {"client.example", true},
	    {"localhost", true},
	    {"[127.0.0.1]", true},
	    {"[IPv6:::1]", true},
	    {"a-b_c.example", true},
	    {"xn--bcher-kva.example", true},
	    {"b\xc3\xbc"
	     "cher.example",
	     true},
	    {"", false},
	    {".example", false},
	    {"a..b", false},
	    {"a.", false},
	    {"[]", false},
	    {"[1.2.3.4", false},
	    {"[a]b]", false},
	    {"a b", false},
	    {"a<b", false},
	    {"a@b", false},
	    {"a\"b", false},
	    {"a,b", false},
	    {"a;b", false},
	    {"a(b)", false},
	};
	char long_name[300];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		TAP_EQ_INT(
		    session_cmd_helo_valid(cases[i].arg, strlen(cases[i].arg)),
		    cases[i].ok, "helo \"%s\"", cases[i].arg);
	memset(long_name, 'a', sizeof(long_name));
	TAP_OK(session_cmd_helo_valid(long_name, 255), "255 octets pass");
	TAP_OK(!session_cmd_helo_valid(long_name, 256),
	       "256 octets do not (RFC 5321 §4.5.3.1.2)");
}

int main(void)
{
	test_every_verb_in_every_state();
	test_generic_checks();
	test_junk();
	test_helo_shapes();
	return tap_done();
}
