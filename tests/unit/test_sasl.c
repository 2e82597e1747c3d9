/* test_sasl.c - SMTP AUTH PLAIN/LOGIN decoding and strict base64,
 * table-driven: one row per rule of RFC 4954, RFC 4616 and DESIGN.md. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "auth/sasl.h"
#include "tests/unit/tap.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* What the client sends at one step: bytes the test base64-encodes first
 * (B64), or a line sent as it is (RAW: "=", "*", broken base64).  Each
 * macro fills the three fields text, len, raw of one message. */
struct sasl_msg {
	const char *text; /* NULL: no initial response / no such line */
	size_t len;
	bool raw;
};
#define B64(s)	(s), sizeof(s) - 1, false
#define RAW(s)	(s), sizeof(s) - 1, true
#define NO_LINE NULL, 0, true

/* sasl_start with the initial response, then up to two sasl_step lines as
 * long as the answer is SASL_CONTINUE with the expected challenge.  The
 * messages are spelled out field by field so that a row stays flat. */
struct sasl_case {
	const char *name;
	enum sasl_mech mech;
	const char *ir;
	size_t ir_len;
	bool ir_raw;
	const char *line1;
	size_t line1_len;
	bool line1_raw;
	const char *line2;
	size_t line2_len;
	bool line2_raw;
	/* the answers to sasl_start, line1 and line2 */
	enum sasl_status want0, want1, want2;
	const char *challenge0, *challenge1; /* of each SASL_CONTINUE */
	const char *user, *password;	     /* on SASL_OK */
};

#define CONT SASL_CONTINUE
#define END  ((enum sasl_status)(-1)) /* no such step */
static const char CH_EMPTY[] = "";
static const char CH_USER[] = "VXNlcm5hbWU6";
static const char CH_PASS[] = "UGFzc3dvcmQ6";

static const struct sasl_case sasl_cases[] = {
    /* RFC 4616 §2: message = [authzid] NUL authcid NUL passwd */
    {"plain_ir_empty_authzid", SASL_MECH_PLAIN, B64("\0bob\0secret"), NO_LINE,
     NO_LINE, SASL_OK, END, END, NULL, NULL, "bob", "secret"},
    {"plain_ir_authzid_equals_user", SASL_MECH_PLAIN, B64("bob\0bob\0secret"),
     NO_LINE, NO_LINE, SASL_OK, END, END, NULL, NULL, "bob", "secret"},
    {"plain_ir_authzid_other_user_refused", SASL_MECH_PLAIN,
     B64("alice\0bob\0secret"), NO_LINE, NO_LINE, SASL_AUTHZID_MISMATCH, END,
     END, NULL, NULL, NULL, NULL},
    {"plain_ir_authzid_prefix_of_user_refused", SASL_MECH_PLAIN,
     B64("bo\0bob\0secret"), NO_LINE, NO_LINE, SASL_AUTHZID_MISMATCH, END, END,
     NULL, NULL, NULL, NULL},
    {"plain_ir_authzid_case_differs_refused", SASL_MECH_PLAIN,
     B64("Bob\0bob\0secret"), NO_LINE, NO_LINE, SASL_AUTHZID_MISMATCH, END, END,
     NULL, NULL, NULL, NULL},
    {"plain_ir_real_client_text", SASL_MECH_PLAIN, RAW("AGJvYgBzZWNyZXQ="),
     NO_LINE, NO_LINE, SASL_OK, END, END, NULL, NULL, "bob", "secret"},
    {"plain_utf8_and_spaces_in_password", SASL_MECH_PLAIN,
     B64("\0j\xc3\xb6rg\0p \xc3\xa4ss word"), NO_LINE, NO_LINE, SASL_OK, END,
     END, NULL, NULL, "j\xc3\xb6rg", "p \xc3\xa4ss word"},
    /* RFC 4954 §4: no initial response -> "334 " then the message */
    {"plain_no_ir_then_response", SASL_MECH_PLAIN, NO_LINE,
     B64("\0bob\0secret"), NO_LINE, CONT, SASL_OK, END, CH_EMPTY, NULL, "bob",
     "secret"},
    {"plain_no_ir_response_mismatch", SASL_MECH_PLAIN, NO_LINE,
     B64("eve\0bob\0secret"), NO_LINE, CONT, SASL_AUTHZID_MISMATCH, END,
     CH_EMPTY, NULL, NULL, NULL},
    {"plain_ir_equals_is_empty_message", SASL_MECH_PLAIN, RAW("="), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_empty_response_line", SASL_MECH_PLAIN, NO_LINE, RAW(""), NO_LINE,
     CONT, SASL_BAD_SYNTAX, END, CH_EMPTY, NULL, NULL, NULL},
    {"plain_equals_as_response_is_bad_base64", SASL_MECH_PLAIN, NO_LINE,
     RAW("="), NO_LINE, CONT, SASL_BAD_BASE64, END, CH_EMPTY, NULL, NULL, NULL},
    {"plain_ir_present_but_empty", SASL_MECH_PLAIN, RAW(""), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_no_nul", SASL_MECH_PLAIN, B64("bobsecret"), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_missing_second_nul", SASL_MECH_PLAIN, B64("\0bobsecret"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_three_nuls", SASL_MECH_PLAIN, B64("\0bob\0sec\0ret"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_trailing_nul", SASL_MECH_PLAIN, B64("\0bob\0secret\0"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_empty_user", SASL_MECH_PLAIN, B64("\0\0secret"), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_empty_password", SASL_MECH_PLAIN, B64("\0bob\0"), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_only_nuls", SASL_MECH_PLAIN, B64("\0\0"), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_cr_in_user", SASL_MECH_PLAIN, B64("\0bob\r\0secret"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_lf_in_user", SASL_MECH_PLAIN, B64("\0b\nob\0secret"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_crlf_in_authzid", SASL_MECH_PLAIN, B64("bob\r\n\0bob\r\n\0secret"),
     NO_LINE, NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_cr_in_password", SASL_MECH_PLAIN, B64("\0bob\0sec\rret"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"plain_lf_in_password", SASL_MECH_PLAIN, B64("\0bob\0secret\n"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    /* RFC 4954 §4: "*" cancels, at any step */
    {"plain_cancel_as_ir", SASL_MECH_PLAIN, RAW("*"), NO_LINE, NO_LINE,
     SASL_CANCELLED, END, END, NULL, NULL, NULL, NULL},
    {"plain_cancel_as_response", SASL_MECH_PLAIN, NO_LINE, RAW("*"), NO_LINE,
     CONT, SASL_CANCELLED, END, CH_EMPTY, NULL, NULL, NULL},
    {"plain_star_with_more_is_not_cancel", SASL_MECH_PLAIN, NO_LINE, RAW("**"),
     NO_LINE, CONT, SASL_BAD_BASE64, END, CH_EMPTY, NULL, NULL, NULL},
    {"plain_bad_base64_ir", SASL_MECH_PLAIN, RAW("AGJvYgBzZWNyZXQ"), NO_LINE,
     NO_LINE, SASL_BAD_BASE64, END, END, NULL, NULL, NULL, NULL},
    {"plain_bad_base64_response", SASL_MECH_PLAIN, NO_LINE,
     RAW("AGJvYgBzZWNyZXQ= "), NO_LINE, CONT, SASL_BAD_BASE64, END, CH_EMPTY,
     NULL, NULL, NULL},
    /* LOGIN (draft-murchison-sasl-login): Username:, Password: */
    {"login_full_dialogue", SASL_MECH_LOGIN, NO_LINE, B64("bob"), B64("secret"),
     CONT, CONT, SASL_OK, CH_USER, CH_PASS, "bob", "secret"},
    {"login_ir_is_user", SASL_MECH_LOGIN, B64("bob"), B64("secret"), NO_LINE,
     CONT, SASL_OK, END, CH_PASS, NULL, "bob", "secret"},
    {"login_password_with_spaces", SASL_MECH_LOGIN, NO_LINE, B64("bob"),
     B64(" se cret "), CONT, CONT, SASL_OK, CH_USER, CH_PASS, "bob",
     " se cret "},
    {"login_cancel_as_ir", SASL_MECH_LOGIN, RAW("*"), NO_LINE, NO_LINE,
     SASL_CANCELLED, END, END, NULL, NULL, NULL, NULL},
    {"login_cancel_at_user", SASL_MECH_LOGIN, NO_LINE, RAW("*"), NO_LINE, CONT,
     SASL_CANCELLED, END, CH_USER, NULL, NULL, NULL},
    {"login_cancel_at_password", SASL_MECH_LOGIN, NO_LINE, B64("bob"), RAW("*"),
     CONT, CONT, SASL_CANCELLED, CH_USER, CH_PASS, NULL, NULL},
    {"login_cancel_at_password_after_ir", SASL_MECH_LOGIN, B64("bob"), RAW("*"),
     NO_LINE, CONT, SASL_CANCELLED, END, CH_PASS, NULL, NULL, NULL},
    {"login_ir_equals_is_empty_user", SASL_MECH_LOGIN, RAW("="), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"login_empty_user_line", SASL_MECH_LOGIN, NO_LINE, RAW(""), NO_LINE, CONT,
     SASL_BAD_SYNTAX, END, CH_USER, NULL, NULL, NULL},
    {"login_empty_password_line", SASL_MECH_LOGIN, NO_LINE, B64("bob"), RAW(""),
     CONT, CONT, SASL_BAD_SYNTAX, CH_USER, CH_PASS, NULL, NULL},
    {"login_nul_in_user", SASL_MECH_LOGIN, NO_LINE, B64("b\0b"), NO_LINE, CONT,
     SASL_BAD_SYNTAX, END, CH_USER, NULL, NULL, NULL},
    {"login_cr_in_user", SASL_MECH_LOGIN, B64("bob\r"), NO_LINE, NO_LINE,
     SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"login_lf_in_user", SASL_MECH_LOGIN, NO_LINE, B64("bob\nRCPT"), NO_LINE,
     CONT, SASL_BAD_SYNTAX, END, CH_USER, NULL, NULL, NULL},
    {"login_nul_in_password", SASL_MECH_LOGIN, B64("bob"), B64("se\0cret"),
     NO_LINE, CONT, SASL_BAD_SYNTAX, END, CH_PASS, NULL, NULL, NULL},
    {"login_crlf_in_password", SASL_MECH_LOGIN, B64("bob"), B64("secret\r\n"),
     NO_LINE, CONT, SASL_BAD_SYNTAX, END, CH_PASS, NULL, NULL, NULL},
    {"login_bad_base64_user_line", SASL_MECH_LOGIN, NO_LINE, RAW("Ym9"),
     NO_LINE, CONT, SASL_BAD_BASE64, END, CH_USER, NULL, NULL, NULL},
    {"login_bad_base64_ir", SASL_MECH_LOGIN, RAW("Ym9i!"), NO_LINE, NO_LINE,
     SASL_BAD_BASE64, END, END, NULL, NULL, NULL, NULL},
    {"login_bad_base64_password", SASL_MECH_LOGIN, B64("bob"),
     RAW("c2VjcmV0\n"), NO_LINE, CONT, SASL_BAD_BASE64, END, CH_PASS, NULL,
     NULL, NULL},
    {"login_equals_as_password_is_bad_base64", SASL_MECH_LOGIN, B64("bob"),
     RAW("="), NO_LINE, CONT, SASL_BAD_BASE64, END, CH_PASS, NULL, NULL, NULL},
    /* EXTERNAL (RFC 4422 Appendix A): only an authzid, maybe empty. */
    {"external_ir_empty", SASL_MECH_EXTERNAL, RAW("="), NO_LINE, NO_LINE,
     SASL_OK, END, END, NULL, NULL, "", ""},
    {"external_ir_authzid", SASL_MECH_EXTERNAL, B64("monitor"), NO_LINE,
     NO_LINE, SASL_OK, END, END, NULL, NULL, "monitor", ""},
    {"external_empty_line_after_challenge", SASL_MECH_EXTERNAL, NO_LINE,
     RAW(""), NO_LINE, CONT, SASL_OK, END, CH_EMPTY, NULL, "", ""},
    {"external_equals_after_challenge", SASL_MECH_EXTERNAL, NO_LINE, RAW("="),
     NO_LINE, CONT, SASL_OK, END, CH_EMPTY, NULL, "", ""},
    {"external_authzid_after_challenge", SASL_MECH_EXTERNAL, NO_LINE,
     B64("alice"), NO_LINE, CONT, SASL_OK, END, CH_EMPTY, NULL, "alice", ""},
    {"external_nul_in_authzid", SASL_MECH_EXTERNAL, B64("ali\0ce"), NO_LINE,
     NO_LINE, SASL_BAD_SYNTAX, END, END, NULL, NULL, NULL, NULL},
    {"external_crlf_in_authzid", SASL_MECH_EXTERNAL, NO_LINE, B64("a\r\nb"),
     NO_LINE, CONT, SASL_BAD_SYNTAX, END, CH_EMPTY, NULL, NULL, NULL},
    {"external_cancel", SASL_MECH_EXTERNAL, NO_LINE, RAW("*"), NO_LINE, CONT,
     SASL_CANCELLED, END, CH_EMPTY, NULL, NULL, NULL},
    {"external_bad_base64", SASL_MECH_EXTERNAL, RAW("bW9u!"), NO_LINE,
     NO_LINE, SASL_BAD_BASE64, END, END, NULL, NULL, NULL, NULL},
};

/* The line the client sends for m: m->text itself or its base64. */
static const char *sasl_msg_line(const struct sasl_msg *m, char *buf,
				 size_t size, size_t *len_r)
{
	long n;

	if (m->raw) {
		*len_r = m->len;
		return m->text;
	}
	n = sasl_base64_encode((const unsigned char *)m->text, m->len, buf,
			       size);
	*len_r = n < 0 ? 0 : (size_t)n;
	return buf;
}

static bool sasl_is_zero(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static void run_sasl_cases(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(sasl_cases); i++) {
		const struct sasl_case *c = &sasl_cases[i];
		const struct sasl_msg ir = {c->ir, c->ir_len, c->ir_raw};
		const struct sasl_msg lines[] = {
		    {c->line1, c->line1_len, c->line1_raw},
		    {c->line2, c->line2_len, c->line2_raw},
		};
		const enum sasl_status want[] = {c->want0, c->want1, c->want2};
		const char *challenges[] = {c->challenge0, c->challenge1, NULL};
		struct sasl_state st;
		struct sasl_creds creds;
		const char *challenge = "unset", *line;
		enum sasl_status r;
		char buf[4096];
		size_t len = 0, k = 0;

		memset(&creds, 0x55, sizeof(creds));
		line = ir.text == NULL
			   ? NULL
			   : sasl_msg_line(&ir, buf, sizeof(buf), &len);
		r = sasl_start(&st, c->mech, line, len, &creds, &challenge);
		for (;;) {
			TAP_EQ_INT(r, want[k], "%s: status at step %zu",
				   c->name, k);
			if (r != SASL_CONTINUE || want[k] != SASL_CONTINUE)
				break;
			TAP_EQ_STR(challenge, challenges[k],
				   "%s: challenge at step %zu", c->name, k);
			if (k >= ARRAY_SIZE(lines) || lines[k].text == NULL)
				break;
			line = sasl_msg_line(&lines[k], buf, sizeof(buf), &len);
			challenge = "unset";
			r = sasl_step(&st, line, len, &creds, &challenge);
			k++;
		}
		if (r == SASL_OK && want[k] == SASL_OK) {
			TAP_EQ_STR(creds.user, c->user, "%s: user", c->name);
			TAP_EQ_INT(creds.user_len, strlen(c->user),
				   "%s: user_len", c->name);
			TAP_EQ_STR(creds.password, c->password, "%s: password",
				   c->name);
			TAP_EQ_INT(creds.password_len, strlen(c->password),
				   "%s: password_len", c->name);
		} else if (r != SASL_CONTINUE) {
			/* A failed exchange leaves no credentials behind
			 * (LOGIN may have stored the user already). */
			TAP_OK(sasl_is_zero(&creds, sizeof(creds)),
			       "%s: creds wiped on failure", c->name);
		}
		if (r != SASL_CONTINUE)
			TAP_OK(challenge == NULL,
			       "%s: no challenge after the end", c->name);
	}
}

/* Length limits: user <= 256, password <= 1024 bytes (sasl.h). */
struct sasl_len_case {
	const char *name;
	enum sasl_mech mech;
	bool authzid; /* PLAIN: send authzid = user */
	size_t user_len, password_len;
	enum sasl_status want;
};

static const struct sasl_len_case sasl_len_cases[] = {
    {"plain_user_256_ok", SASL_MECH_PLAIN, false, 256, 8, SASL_OK},
    {"plain_user_257_too_long", SASL_MECH_PLAIN, false, 257, 8, SASL_TOO_LONG},
    {"plain_password_1024_ok", SASL_MECH_PLAIN, false, 3, 1024, SASL_OK},
    {"plain_password_1025_too_long", SASL_MECH_PLAIN, false, 3, 1025,
     SASL_TOO_LONG},
    {"plain_all_maxima_with_authzid_ok", SASL_MECH_PLAIN, true, 256, 1024,
     SASL_OK},
    {"plain_authzid_and_user_257_too_long", SASL_MECH_PLAIN, true, 257, 8,
     SASL_TOO_LONG},
    {"plain_message_one_past_the_bound", SASL_MECH_PLAIN, true, 256, 1025,
     SASL_TOO_LONG},
    {"plain_huge_line_refused_before_decoding", SASL_MECH_PLAIN, true, 1000,
     2000, SASL_TOO_LONG},
    {"login_user_256_ok", SASL_MECH_LOGIN, false, 256, 8, SASL_OK},
    {"login_user_257_too_long", SASL_MECH_LOGIN, false, 257, 8, SASL_TOO_LONG},
    {"login_user_huge_too_long", SASL_MECH_LOGIN, false, 3000, 8,
     SASL_TOO_LONG},
    {"login_password_1024_ok", SASL_MECH_LOGIN, false, 3, 1024, SASL_OK},
    {"login_password_1025_too_long", SASL_MECH_LOGIN, false, 3, 1025,
     SASL_TOO_LONG},
};

static void run_sasl_len_cases(void)
{
	static unsigned char msg[8192];
	static char line[12000];

	for (size_t i = 0; i < ARRAY_SIZE(sasl_len_cases); i++) {
		const struct sasl_len_case *c = &sasl_len_cases[i];
		struct sasl_state st;
		struct sasl_creds creds;
		const char *challenge = NULL;
		enum sasl_status r;
		size_t n = 0;
		long len;

		if (c->mech == SASL_MECH_PLAIN) {
			if (c->authzid) {
				memset(msg, 'u', c->user_len);
				n = c->user_len;
			}
			msg[n++] = '\0';
			memset(msg + n, 'u', c->user_len);
			n += c->user_len;
			msg[n++] = '\0';
			memset(msg + n, 'p', c->password_len);
			n += c->password_len;
			len = sasl_base64_encode(msg, n, line, sizeof(line));
			r = sasl_start(&st, c->mech, line, (size_t)len, &creds,
				       &challenge);
		} else {
			memset(msg, 'u', c->user_len);
			len = sasl_base64_encode(msg, c->user_len, line,
						 sizeof(line));
			r = sasl_start(&st, c->mech, line, (size_t)len, &creds,
				       &challenge);
			if (r == SASL_CONTINUE) {
				memset(msg, 'p', c->password_len);
				len = sasl_base64_encode(msg, c->password_len,
							 line, sizeof(line));
				r = sasl_step(&st, line, (size_t)len, &creds,
					      &challenge);
			}
		}
		TAP_EQ_INT(r, c->want, "%s: status", c->name);
		if (r == SASL_OK && c->want == SASL_OK) {
			TAP_OK(creds.user_len == c->user_len &&
				   strlen(creds.user) == c->user_len &&
				   creds.password_len == c->password_len &&
				   strlen(creds.password) == c->password_len,
			       "%s: lengths", c->name);
		}
		sasl_creds_wipe(&creds);
	}
}

/* Strict RFC 4648 decoding (sasl.h). */
struct b64_case {
	const char *name;
	const char *in;
	size_t len;
	long want; /* decoded length or -1 */
	const char *out;
};
#define B64_BAD(name, s)                                                       \
	{                                                                      \
		name, (s), sizeof(s) - 1, -1, NULL                             \
	}
#define B64_GOOD(name, s, out)                                                 \
	{                                                                      \
		name, (s), sizeof(s) - 1, sizeof(out) - 1, out                 \
	}

static const struct b64_case b64_cases[] = {
    B64_GOOD("empty", "", ""),
    B64_GOOD("one_byte", "Zg==", "f"),
    B64_GOOD("two_bytes", "Zm8=", "fo"),
    B64_GOOD("three_bytes", "Zm9v", "foo"),
    B64_GOOD("plus_and_slash", "+/+/", "\xfb\xff\xbf"),
    B64_GOOD("nul_bytes", "AAAA", "\0\0\0"),
    B64_BAD("length_3", "abc"),
    B64_BAD("length_5", "Zm9vY"),
    B64_BAD("pad_inside", "ab=c"),
    B64_BAD("pad_three", "a==="),
    B64_BAD("pad_four", "===="),
    B64_BAD("pad_then_data", "Zg==Zm9v"),
    B64_BAD("lf_before_pad", "ab\n="),
    B64_BAD("bang", "Zm9v!"),
    B64_BAD("bang_in_quantum", "Zm9!"),
    B64_BAD("nonzero_bits_one_pad", "Zm9="),
    B64_BAD("nonzero_bits_two_pads", "Zh=="),
    B64_BAD("space_inside", "Zm 9"),
    B64_BAD("space_before", " Zm9v"),
    B64_BAD("space_after", "Zm9v "),
    B64_BAD("tab_inside", "Zm\t9"),
    B64_BAD("crlf_after", "Zm9v\r\n"),
    B64_BAD("lf_between_quanta", "Zm9v\nZm9v"),
    B64_BAD("nul_inside", "Zm\0v"),
    B64_BAD("url_safe_alphabet", "-_-_"),
    B64_BAD("high_byte", "Zm9\xc3"),
    B64_BAD("single_equals", "="),
};

static void run_b64_cases(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(b64_cases); i++) {
		const struct b64_case *c = &b64_cases[i];
		unsigned char out[64];
		long n;

		memset(out, 0xa5, sizeof(out));
		n = sasl_base64_decode(c->in, c->len, out, sizeof(out));
		TAP_EQ_INT(n, c->want, "base64 %s", c->name);
		if (n >= 0 && c->want >= 0)
			TAP_OK(memcmp(out, c->out, (size_t)n) == 0,
			       "base64 %s: bytes", c->name);
		if (c->want < 0)
			TAP_OK(out[0] == 0xa5, "base64 %s: nothing written",
			       c->name);
	}
}

static void run_b64_round_trip(void)
{
	unsigned char in[300], out[300 + 1];
	char text[404 + 1];
	bool all_ok = true, bounds_ok = true;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 167 + 13); /* every byte value */
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t want_len = (n + 2) / 3 * 4;
		long e, d;

		e = sasl_base64_encode(in, n, text, sizeof(text));
		d = e < 0
			? -1
			: sasl_base64_decode(text, (size_t)e, out, sizeof(out));
		if (e != (long)want_len || strlen(text) != want_len ||
		    d != (long)n || memcmp(in, out, n) != 0) {
			all_ok = false;
			printf("# round trip failed for length %zu\n", n);
		}
		/* Exact output sizes work, one byte less is refused. */
		if (sasl_base64_encode(in, n, text, want_len + 1) !=
			(long)want_len ||
		    sasl_base64_encode(in, n, text, want_len) != -1 ||
		    sasl_base64_decode(text, want_len, out, n) != (long)n) {
			bounds_ok = false;
			printf("# exact bounds failed for length %zu\n", n);
		}
		if (n > 0) {
			out[n - 1] = 0x5a;
			if (sasl_base64_decode(text, want_len, out, n - 1) !=
				-1 ||
			    out[n - 1] != 0x5a) {
				bounds_ok = false;
				printf("# short buffer written, length %zu\n",
				       n);
			}
		}
	}
	TAP_OK(all_ok, "base64 round trip, lengths 0..300");
	TAP_OK(bounds_ok, "base64 output bounds respected, lengths 0..300");
	TAP_EQ_INT(sasl_base64_encode(in, 0, text, 1), 0,
		   "base64 of nothing fits in one byte");
	TAP_EQ_STR(text, "", "base64 of nothing is the empty string");
	TAP_EQ_INT(sasl_base64_encode(in, 0, text, 0), -1,
		   "base64 encode needs room for the NUL");
	TAP_EQ_INT(sasl_base64_encode(in, SIZE_MAX, text, sizeof(text)), -1,
		   "base64 encode refuses a length whose output overflows");
}

struct mech_case {
	const char *name;
	size_t len;
	enum sasl_mech want;
};
#define MECH(s, want)                                                          \
	{                                                                      \
		(s), sizeof(s) - 1, want                                       \
	}

static const struct mech_case mech_cases[] = {
    MECH("PLAIN", SASL_MECH_PLAIN),   MECH("plain", SASL_MECH_PLAIN),
    MECH("PlAiN", SASL_MECH_PLAIN),   MECH("LOGIN", SASL_MECH_LOGIN),
    MECH("login", SASL_MECH_LOGIN),   MECH("lOgIn", SASL_MECH_LOGIN),
    MECH("PLAINX", SASL_MECH_NONE),   MECH("PLAI", SASL_MECH_NONE),
    MECH("PLAIN ", SASL_MECH_NONE),   MECH("PLAIN\0", SASL_MECH_NONE),
    MECH("CRAM-MD5", SASL_MECH_NONE), MECH("XOAUTH2", SASL_MECH_NONE),
    MECH("", SASL_MECH_NONE),	      MECH("PL\0IN", SASL_MECH_NONE),
};

static void run_mech_cases(void)
{
	struct sasl_state st;
	struct sasl_creds creds;
	const char *challenge = "unset";

	for (size_t i = 0; i < ARRAY_SIZE(mech_cases); i++) {
		const struct mech_case *c = &mech_cases[i];

		TAP_EQ_INT(sasl_mech_from_name(c->name, c->len), c->want,
			   "mechanism name \"%s\" (%zu bytes)", c->name,
			   c->len);
	}
	TAP_EQ_INT(sasl_mech_from_name(NULL, 0), SASL_MECH_NONE,
		   "no mechanism name");
	/* The length, not the NUL, ends the name. */
	TAP_EQ_INT(sasl_mech_from_name("PLAINFOO", 5), SASL_MECH_PLAIN,
		   "mechanism name bounded by its length");
	TAP_EQ_STR(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN", "name of PLAIN");
	TAP_EQ_STR(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN", "name of LOGIN");
	TAP_EQ_STR(sasl_mech_name(SASL_MECH_EXTERNAL), "EXTERNAL",
		   "name of EXTERNAL");
	TAP_EQ_INT(sasl_mech_from_name("external", 8), SASL_MECH_EXTERNAL,
		   "EXTERNAL in any case");
	TAP_EQ_STR(sasl_mech_name(SASL_MECH_NONE), "NONE", "name of NONE");

	TAP_EQ_INT(sasl_start(&st, SASL_MECH_NONE, NULL, 0, &creds, &challenge),
		   SASL_UNKNOWN_MECH, "unknown mechanism refused at start");
	TAP_OK(challenge == NULL, "unknown mechanism: no challenge");
	TAP_EQ_INT(sasl_start(&st, SASL_MECH_NONE, "AGJvYgBzZWNyZXQ=", 16,
			      &creds, &challenge),
		   SASL_UNKNOWN_MECH,
		   "unknown mechanism refused even with a response");
	TAP_OK(sasl_is_zero(&creds, sizeof(creds)),
	       "unknown mechanism: creds wiped");
}

static void run_state_checks(void)
{
	struct sasl_state st;
	struct sasl_creds creds;
	const char *challenge = NULL;
	static const char plain[] = "AGJvYgBzZWNyZXQ="; /* \0bob\0secret */

	/* An exchange that is over takes no more lines and keeps the
	 * credentials it produced for the caller. */
	TAP_EQ_INT(sasl_start(&st, SASL_MECH_PLAIN, plain, sizeof(plain) - 1,
			      &creds, &challenge),
		   SASL_OK, "plain: completes with the initial response");
	TAP_EQ_INT(sasl_step(&st, plain, sizeof(plain) - 1, &creds, &challenge),
		   SASL_UNKNOWN_MECH, "step after the end refused");
	TAP_EQ_STR(creds.user, "bob", "step after the end keeps creds");

	/* sasl_creds_wipe zeroes all of the struct. */
	sasl_creds_wipe(&creds);
	TAP_OK(sasl_is_zero(&creds, sizeof(creds)),
	       "sasl_creds_wipe leaves the struct all zero");

	/* A new exchange starts from clean credentials. */
	memset(&creds, 0x55, sizeof(creds));
	TAP_EQ_INT(
	    sasl_start(&st, SASL_MECH_LOGIN, NULL, 0, &creds, &challenge),
	    SASL_CONTINUE, "login: start");
	TAP_OK(sasl_is_zero(&creds, sizeof(creds)),
	       "start wipes stale credentials");
}

int main(void)
{
	run_sasl_cases();
	run_sasl_len_cases();
	run_b64_cases();
	run_b64_round_trip();
	run_mech_cases();
	run_state_checks();
	return tap_done();
}
