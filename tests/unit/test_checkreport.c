/*
 * test_checkreport.c - the pure parts of --check-backend: what becomes of
 * each backend capability and why, the terminal and JSON escapers, the
 * findings and exit status judged from a backend's facts, and the JSON
 * report's shape; table-driven.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "proxy/checkreport.h"
#include "tests/unit/tap.h"

/* ---- capabilities ---- */

struct cap_case {
	const char *line;
	uint64_t max_size;
	enum check_cap_fate fate;
	const char *shown;  /* "" when dropped */
	const char *reason; /* a part of it; NULL: none */
};

static const struct cap_case cap_cases[] = {
    {"PIPELINING", 1000, CHECK_CAP_PASSED, "PIPELINING", NULL},
    {"8BITMIME", 1000, CHECK_CAP_PASSED, "8BITMIME", NULL},
    {"SIZE 500", 1000, CHECK_CAP_PASSED, "SIZE 500", NULL},
    {"SIZE 10240000", 1000, CHECK_CAP_CHANGED, "SIZE 1000", "max_message_size"},
    {"SIZE", 1000, CHECK_CAP_CHANGED, "SIZE 1000", "max_message_size"},
    {"DELIVERBY 60", 0, CHECK_CAP_PASSED, "DELIVERBY 60", NULL},
    {"DELIVERBY soon", 0, CHECK_CAP_CHANGED, "DELIVERBY", "numeric"},
    {"pipelining", 0, CHECK_CAP_PASSED, "PIPELINING", NULL},
    {"STARTTLS", 0, CHECK_CAP_DROPPED, "", "terminates TLS itself"},
    {"AUTH PLAIN LOGIN", 0, CHECK_CAP_DROPPED, "", "authenticates clients"},
    {"AUTH=PLAIN LOGIN", 0, CHECK_CAP_DROPPED, "", "authenticates clients"},
    {"XCLIENT NAME ADDR", 0, CHECK_CAP_DROPPED, "", "used by the proxy only"},
    {"XFORWARD NAME ADDR", 0, CHECK_CAP_DROPPED, "", "proxies and MTAs"},
    {"CHUNKING", 0, CHECK_CAP_DROPPED, "", "BDAT is not relayed"},
    {"BINARYMIME", 0, CHECK_CAP_DROPPED, "", "BDAT"},
    {"ETRN", 0, CHECK_CAP_DROPPED, "", "clients get 502"},
    {"VRFY", 0, CHECK_CAP_DROPPED, "", "relayed after AUTH"},
    {"X-UNKNOWN", 0, CHECK_CAP_DROPPED, "", "not on the pass-through list"},
    {"ETRNX", 0, CHECK_CAP_DROPPED, "", "not on the pass-through list"},
};

static void test_cap_explain(void)
{
	for (size_t i = 0; i < sizeof(cap_cases) / sizeof(cap_cases[0]); i++) {
		const struct cap_case *c = &cap_cases[i];
		const char *reason;
		char shown[64];
		enum check_cap_fate fate;

		fate = check_cap_explain(c->line, strlen(c->line), c->max_size,
					 shown, &reason);
		TAP_EQ_INT(fate, c->fate, "cap \"%s\": fate", c->line);
		TAP_EQ_STR(shown, c->shown, "cap \"%s\": shown as", c->line);
		if (c->reason == NULL)
			TAP_OK(reason == NULL, "cap \"%s\": no reason",
			       c->line);
		else
			TAP_OK(reason != NULL && strstr(reason, c->reason),
			       "cap \"%s\": reason names \"%s\" (%s)", c->line,
			       c->reason, reason ? reason : "NULL");
	}
}

/* ---- escaping ---- */

struct escape_case {
	const char *name;
	const char *in;
	size_t len;
	const char *text; /* check_text_escape */
	const char *json; /* check_json_string */
};

#define S(x) x, sizeof(x) - 1

static const struct escape_case escape_cases[] = {
    {"plain", S("220 mail ESMTP"), "220 mail ESMTP", "\"220 mail ESMTP\""},
    {"quotes_and_backslash", S("a\"b\\c"), "a\"b\\\\c", "\"a\\\"b\\\\c\""},
    {"controls", S("\x1b[2J\r\n\t\x7f"), "\\x1b[2J\\x0d\\x0a\\x09\\x7f",
     "\"\\u001b[2J\\r\\n\\t\\u007f\""},
    {"nul", S("a\0b"), "a\\x00b", "\"a\\u0000b\""},
    {"utf8_kept_in_json", S("\xc3\xbc\xe2\x82\xac\xf0\x9f\x93\xa7"),
     "\\xc3\\xbc\\xe2\\x82\\xac\\xf0\\x9f\\x93\\xa7",
     "\"\xc3\xbc\xe2\x82\xac\xf0\x9f\x93\xa7\""},
    {"latin1_byte", S("caf\xe9"), "caf\\xe9", "\"caf\\ufffd\""},
    {"overlong_slash", S("\xc0\xaf"), "\\xc0\\xaf", "\"\\ufffd\\ufffd\""},
    {"surrogate", S("\xed\xa0\x80"), "\\xed\\xa0\\x80",
     "\"\\ufffd\\ufffd\\ufffd\""},
    {"above_u10ffff", S("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80",
     "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
    {"truncated_sequence", S("a\xe2\x82"), "a\\xe2\\x82",
     "\"a\\ufffd\\ufffd\""},
    {"empty", S(""), "", "\"\""},
};

static void test_escapers(void)
{
	for (size_t i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]);
	     i++) {
		const struct escape_case *c = &escape_cases[i];
		char *text = check_text_escape(c->in, c->len), *json = NULL;
		size_t json_len = 0;
		FILE *f = open_memstream(&json, &json_len);

		check_json_string(f, c->in, c->len);
		fclose(f);
		TAP_EQ_STR(text, c->text, "text escape %s", c->name);
		TAP_EQ_STR(json, c->json, "json string %s", c->name);
		free(text);
		free(json);
	}
}

/* ---- judging ---- */

static struct config_backend tcp_backend(const char *ip, enum xclient_mode m)
{
	struct config_backend b;
	struct sockaddr_in *in = (struct sockaddr_in *)&b.tcp.ss;

	memset(&b, 0, sizeof(b));
	b.address = (char *)"backend";
	in->sin_family = AF_INET;
	in->sin_port = htons(25);
	inet_pton(AF_INET, ip, &in->sin_addr);
	b.tcp.len = sizeof(*in);
	snprintf(b.tcp.text, sizeof(b.tcp.text), "%s:25", ip);
	b.xclient = m;
	return b;
}

static void set_reply(struct check_reply *reply, const char *line)
{
	check_reply_add_line(reply, line, strlen(line));
	reply->code = atoi(line);
}

/* A backend that went through every step: ESMTP, MAIL accepted. */
static void healthy(struct check_backend *r, const struct config_backend *b)
{
	check_backend_init(r, b);
	r->esmtp = true;
	r->sent = ~0u;
	set_reply(&r->greeting, "220 mx ESMTP");
	set_reply(&r->ehlo, "250 mx");
	set_reply(&r->mail, "250 2.1.0 Ok");
	set_reply(&r->rset, "250 2.0.0 Ok");
	r->bare_lf_replies = 1;
	set_reply(&r->quit, "221 Bye");
	r->exposure_tried = true;
}

static bool has_finding(const struct check_backend *r,
			enum check_severity severity, const char *part)
{
	for (size_t i = 0; i < r->nfindings; i++)
		if (r->findings[i].severity == severity &&
		    strstr(r->findings[i].text, part) != NULL)
			return true;
	return false;
}

static void test_assess(struct config *cfg)
{
	struct config_backend lo = tcp_backend("127.0.0.1", XCLIENT_AUTO);
	struct config_backend lo_yes = tcp_backend("127.0.0.1", XCLIENT_YES);
	struct config_backend lo_no = tcp_backend("127.0.0.1", XCLIENT_NO);
	struct config_backend public = tcp_backend("192.0.2.9", XCLIENT_AUTO);
	struct check_backend r;

	healthy(&r, &lo);
	set_reply(&r.xclient, "502 5.5.2 Error: command not recognized");
	check_backend_assess(cfg, &r);
	TAP_EQ_INT(r.nfindings, 0,
		   "a healthy backend without XCLIENT: no findings");
	TAP_EQ_STR(check_backend_status(&r), "ok", "a healthy backend: ok");
	TAP_EQ_INT(check_exit_status(&r, 1), 0, "a healthy backend: exit 0");
	check_backend_finish(&r);

	check_backend_init(&r, &lo);
	r.stopped = CHECK_STEP_CONNECT;
	r.error = strdup("connect to backend: Connection refused");
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_ERROR, "unreachable: connect"),
	       "connect refused: an error naming it unreachable");
	TAP_EQ_STR(check_backend_status(&r), "unreachable",
		   "connect refused: status unreachable");
	TAP_EQ_INT(check_exit_status(&r, 1), 2, "connect refused: exit 2");
	check_backend_finish(&r);

	healthy(&r, &lo_yes);
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_ERROR,
			   "xclient = yes, but the backend "
			   "does not offer XCLIENT"),
	       "xclient = yes without XCLIENT offered: an error");
	TAP_EQ_INT(check_exit_status(&r, 1), 2, "xclient = yes: exit 2");
	check_backend_finish(&r);

	healthy(&r, &lo);
	set_reply(&r.xclient, "550 5.7.0 Error: insufficient authorization");
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_WARNING, "knows XCLIENT but refuses it") &&
		   has_finding(&r, CHECK_WARNING,
			       "smtpd_authorized_xclient_hosts"),
	       "XCLIENT hidden and refused (Postfix): a warning with the "
	       "Postfix parameter");
	TAP_EQ_INT(check_exit_status(&r, 1), 1, "hidden and refused: exit 1");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.caps.caps |= EHLO_CAP_XCLIENT;
	r.xclient.code = 550;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_ERROR, "XCLIENT refused"),
	       "XCLIENT offered and refused, xclient = auto: an error");
	check_backend_finish(&r);

	healthy(&r, &lo_no);
	r.caps.caps |= EHLO_CAP_XCLIENT;
	r.xclient.code = 550;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_WARNING, "XCLIENT offered but refused"),
	       "XCLIENT offered and refused, xclient = no: a warning");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.caps.caps |= EHLO_CAP_XCLIENT;
	r.xclient.code = 220;
	r.xclient_ehlo.code = 554;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_ERROR, "EHLO after XCLIENT refused"),
	       "EHLO refused after XCLIENT: an error");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.mail.code = 554;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_WARNING, "refused MAIL FROM:<>"),
	       "MAIL FROM:<> refused: a warning");
	check_backend_finish(&r);

	healthy(&r, &lo);
	check_exposure_add(&r, "192.0.2.2:25", false, "Connection refused");
	check_exposure_add(&r, "198.51.100.7:25", true, "220 mx ESMTP\x1b");
	r.bare_lf_replies = 2;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_WARNING,
			   "answers at 198.51.100.7:25 "
			   "(220 mx ESMTP\\x1b)"),
	       "the port answering at another address: a warning, the "
	       "greeting escaped");
	TAP_OK(!has_finding(&r, CHECK_WARNING, "192.0.2.2"),
	       "a refused address is no finding");
	TAP_OK(has_finding(&r, CHECK_WARNING, "bare LF"),
	       "bare LF taken as a line end on an exposed MTA: a warning");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.bare_lf_replies = 2;
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_NOTE, "bare LF") &&
		   check_exit_status(&r, 1) == 0,
	       "bare LF taken as a line end behind the proxy only: a note, "
	       "exit 0");
	check_backend_finish(&r);

	healthy(&r, &public);
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_WARNING,
			   "non-loopback address "
			   "(192.0.2.9:25)"),
	       "a backend at a public address taking mail: a warning");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.esmtp = false;
	memset(&r.caps, 0, sizeof(r.caps));
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_NOTE, "no ESMTP") &&
		   has_finding(&r, CHECK_NOTE, "no 8BITMIME"),
	       "a HELO-only backend: a note naming what clients miss");
	check_backend_finish(&r);

	healthy(&r, &lo);
	r.stopped = CHECK_STEP_QUIT;
	r.error = strdup("no reply to QUIT within 5 s");
	check_backend_assess(cfg, &r);
	TAP_OK(has_finding(&r, CHECK_NOTE, "QUIT") &&
		   check_exit_status(&r, 1) == 0,
	       "no reply to QUIT: a note only");
	check_backend_finish(&r);
}

/* ---- the JSON report ---- */

static void test_json_report(struct config *cfg)
{
	struct config_backend lo = tcp_backend("127.0.0.1", XCLIENT_AUTO);
	struct check_backend rs[2];
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	healthy(&rs[0], &lo);
	check_backend_assess(cfg, &rs[0]);
	check_backend_init(&rs[1], &lo);
	rs[1].stopped = CHECK_STEP_CONNECT;
	rs[1].error = strdup("connect to \"x\": refused");
	check_backend_assess(cfg, &rs[1]);
	f = open_memstream(&out, &len);
	check_report_json(f, cfg, rs, 2);
	fclose(f);
	TAP_OK(strncmp(out, "{\"config\":\"test.conf\",", 22) == 0,
	       "json: one object, the config first");
	TAP_OK(strstr(out, "\"exit_status\":2,") != NULL, "json: exit status");
	TAP_OK(strstr(out, "\"error\":\"connect to \\\"x\\\": refused\"") !=
		   NULL,
	       "json: strings escaped");
	TAP_OK(strstr(out, "\"status\":\"unreachable\",\"reachable\":false") !=
		   NULL,
	       "json: the down backend");
	TAP_OK(strstr(out, "\"bare_lf\":{\"sent\":\"NOOP\\nNOOP\\r\\n\"") !=
		   NULL,
	       "json: the bare-LF probe");
	TAP_OK(len > 0 && out[len - 1] == '\n' &&
		   strchr(out, '\n') == out + len - 1,
	       "json: one line");
	free(out);
	check_backend_finish(&rs[0]);
	check_backend_finish(&rs[1]);
}

int main(void)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.path = (char *)"test.conf";
	cfg.server.hostname = (char *)"proxy.example";
	cfg.backend.helo_name = (char *)"proxy.example";
	cfg.limits.max_message_size = 1000;
	cfg.auth.mechanisms = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	test_cap_explain();
	test_escapers();
	test_assess(&cfg);
	test_json_report(&cfg);
	return tap_done();
}
