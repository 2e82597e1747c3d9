/*
 * sasl.c - see sasl.h.
 *
 * Every client line is base64-decoded into a bounded scratch buffer on the
 * stack, checked there, and copied into struct sasl_creds only when it is
 * valid.  The scratch buffer holds the password, so the function that owns
 * it wipes it on its single way out (sasl_decode_*() below), whatever the
 * verdict.  A line's base64 length is checked against the largest valid
 * decoded size before anything is decoded, so neither buffer can overflow.
 *
 * On any final status other than SASL_OK the credentials are wiped too (a
 * LOGIN user name may already be in them) and the exchange is over:
 * st->mech goes back to SASL_MECH_NONE, and a later sasl_step() on that
 * state is refused with SASL_UNKNOWN_MECH without touching creds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif
#include "auth/sasl.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

/* RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd.  The
 * authzid must be empty or equal to the authcid, so it is no longer than a
 * user name. */
#define SASL_PLAIN_MAX (2 * SASL_USER_MAX + SASL_PASSWORD_MAX + 2)

/* The longest base64 text that can decode to n bytes, and the most bytes
 * that text of that length can decode to (a multiple of 3 >= n). */
#define SASL_B64_LEN(n)		((((size_t)(n) + 2) / 3) * 4)
#define SASL_B64_DECODED_MAX(n) (SASL_B64_LEN(n) / 4 * 3)

/* One scratch size for every line: a PLAIN message is the longest. */
#define SASL_SCRATCH_SIZE SASL_B64_DECODED_MAX(SASL_PLAIN_MAX)
static_assert(SASL_PLAIN_MAX >= SASL_USER_MAX &&
		  SASL_PLAIN_MAX >= SASL_PASSWORD_MAX,
	      "the PLAIN bound covers LOGIN's lines");

/* RFC 4954 §4: "334 " plus base64; LOGIN's challenges are the de-facto
 * base64 of "Username:" and "Password:". */
static const char sasl_challenge_plain[] = "";
static const char sasl_challenge_user[] = "VXNlcm5hbWU6";
static const char sasl_challenge_password[] = "UGFzc3dvcmQ6";

static const char sasl_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- base64 (RFC 4648 §4) ---- */

/* The 6-bit value of a base64 symbol, or -1 ('=' included). */
static int sasl_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Validates all of in[] before writing a byte: a rejected line leaves out
 * untouched.  RFC 4648 §3.3 lets decoders refuse anything outside the
 * alphabet, §3.5 non-zero pad bits; RFC 4954 §4 requires both refusals
 * ("the server MUST reject" a malformed response). */
long sasl_base64_decode(const char *in, size_t len, unsigned char *out,
			size_t out_size)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t pad = 0, body, out_len, i, o;

	if (len == 0)
		return 0;
	if (in == NULL || len % 4 != 0)
		return -1;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	body = len - pad;
	for (i = 0; i < body; i++)
		if (sasl_b64_value(s[i]) < 0)
			return -1; /* '=' inside, "a===", whitespace, ... */
	/* The unused low bits of the last symbol must be zero (§3.5), so
	 * that one byte string has exactly one encoding. */
	if (pad == 2 && (sasl_b64_value(s[body - 1]) & 0x0f) != 0)
		return -1;
	if (pad == 1 && (sasl_b64_value(s[body - 1]) & 0x03) != 0)
		return -1;

	out_len = len / 4 * 3 - pad;
	if (out_len > out_size || out_len > LONG_MAX || out == NULL)
		return -1;
	for (i = 0, o = 0; i < body; i += 4) {
		uint32_t v = 0;
		size_t n = body - i < 4 ? body - i : 4;

		for (size_t k = 0; k < 4; k++)
			v = (v << 6) |
			    (k < n ? (uint32_t)sasl_b64_value(s[i + k]) : 0);
		out[o++] = (unsigned char)(v >> 16);
		if (n > 2)
			out[o++] = (unsigned char)(v >> 8);
		if (n > 3)
			out[o++] = (unsigned char)v;
	}
	assert(o == out_len);
	return (long)out_len;
}

long sasl_base64_encode(const unsigned char *in, size_t len, char *out,
			size_t out_size)
{
	size_t need, i, o;

	if (len / 3 >= (SIZE_MAX - 5) / 4)
		return -1;
	need = SASL_B64_LEN(len);
	if (need > LONG_MAX || need >= out_size || out == NULL ||
	    (in == NULL && len > 0))
		return -1;
	for (i = 0, o = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		uint32_t v = (uint32_t)in[i] << 16;

		if (n > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		out[o++] = sasl_b64_alphabet[(v >> 18) & 0x3f];
		out[o++] = sasl_b64_alphabet[(v >> 12) & 0x3f];
		out[o++] = sasl_b64_alphabet[(v >> 6) & 0x3f];
		out[o++] = sasl_b64_alphabet[v & 0x3f];
		/* RFC 4648 §4: a short last group is padded with '='. */
		if (n < 3)
			out[o - 1] = '=';
		if (n < 2)
			out[o - 2] = '=';
	}
	out[o] = '\0';
	return (long)need;
}

/* ---- mechanisms ---- */

/* ASCII-only case folding: strncasecmp() follows the locale. */
static bool sasl_name_equal(const char *name, size_t len, const char *upper)
{
	size_t i;

	if (len != strlen(upper))
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != upper[i])
			return false;
	}
	return true;
}

enum sasl_mech sasl_mech_from_name(const char *name, size_t len)
{
	if (name == NULL)
		return SASL_MECH_NONE;
	if (sasl_name_equal(name, len, "PLAIN"))
		return SASL_MECH_PLAIN;
	if (sasl_name_equal(name, len, "LOGIN"))
		return SASL_MECH_LOGIN;
	if (sasl_name_equal(name, len, "EXTERNAL"))
		return SASL_MECH_EXTERNAL;
	return SASL_MECH_NONE;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
	switch (mech) {
	case SASL_MECH_PLAIN:
		return "PLAIN";
	case SASL_MECH_LOGIN:
		return "LOGIN";
	case SASL_MECH_EXTERNAL:
		return "EXTERNAL";
	case SASL_MECH_NONE:
		break;
	}
	return "NONE";
}

void sasl_creds_wipe(struct sasl_creds *creds)
{
	if (creds != NULL)
		explicit_bzero(creds, sizeof(*creds));
}

/* ---- decoding one response ---- */

/* RFC 4954 §4: a line of a single "*" cancels the exchange. */
static bool sasl_is_cancel(const char *line, size_t len)
{
	return len == 1 && line[0] == '*';
}

/* NUL, CR and LF may not appear in a name (DESIGN.md, Pre-auth dialogue):
 * PAM takes C strings, and CR/LF would forge lines in logs or in the
 * XCLIENT/relay dialogue.  A password goes to PAM as a C string too. */
static bool sasl_has_bad_byte(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
			return true;
	return false;
}

/* Decodes line into scratch if it can hold at most max bytes.  Returns
 * SASL_OK with *n_r set, SASL_TOO_LONG or SASL_BAD_BASE64. */
static enum sasl_status sasl_decode_bounded(const char *line, size_t len,
					    size_t max, unsigned char *scratch,
					    size_t scratch_size, size_t *n_r)
{
	long n;

	/* Longer base64 than max bytes can take: refuse before decoding.
	 * (Such a line may also be bad base64; too long is the answer.) */
	if (len > SASL_B64_LEN(max))
		return SASL_TOO_LONG;
	assert(SASL_B64_DECODED_MAX(max) <= scratch_size);
	n = sasl_base64_decode(line, len, scratch, scratch_size);
	if (n < 0)
		return SASL_BAD_BASE64;
	if ((size_t)n > max)
		return SASL_TOO_LONG;
	*n_r = (size_t)n;
	return SASL_OK;
}

/* RFC 4616 §2 message in msg[0..n): copies authcid and passwd to creds. */
static enum sasl_status sasl_plain_parse(const unsigned char *msg, size_t n,
					 struct sasl_creds *creds)
{
	const unsigned char *nul1, *nul2, *authzid, *user, *pass;
	size_t authzid_len, user_len, pass_len;

	nul1 = memchr(msg, '\0', n);
	if (nul1 == NULL)
		return SASL_BAD_SYNTAX; /* also the empty message */
	nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - msg));
	if (nul2 == NULL)
		return SASL_BAD_SYNTAX;
	authzid = msg;
	authzid_len = (size_t)(nul1 - msg);
	user = nul1 + 1;
	user_len = (size_t)(nul2 - user);
	pass = nul2 + 1;
	pass_len = n - (size_t)(pass - msg);

	/* A third NUL lands in the password: refused with the CR/LF. */
	if (user_len == 0 || pass_len == 0 ||
	    sasl_has_bad_byte(authzid, authzid_len) ||
	    sasl_has_bad_byte(user, user_len) ||
	    sasl_has_bad_byte(pass, pass_len))
		return SASL_BAD_SYNTAX;
	if (user_len > SASL_USER_MAX || pass_len > SASL_PASSWORD_MAX)
		return SASL_TOO_LONG;
	/* The proxy cannot act for another identity: the authzid, if any,
	 * must be the authcid byte for byte. */
	if (authzid_len != 0 &&
	    (authzid_len != user_len || memcmp(authzid, user, user_len) != 0))
		return SASL_AUTHZID_MISMATCH;

	memcpy(creds->user, user, user_len);
	creds->user[user_len] = '\0';
	creds->user_len = user_len;
	memcpy(creds->password, pass, pass_len);
	creds->password[pass_len] = '\0';
	creds->password_len = pass_len;
	return SASL_OK;
}

static enum sasl_status sasl_decode_plain(const char *line, size_t len,
					  struct sasl_creds *creds)
{
	unsigned char scratch[SASL_SCRATCH_SIZE];
	enum sasl_status status;
	size_t n = 0;

	status = sasl_decode_bounded(line, len, SASL_PLAIN_MAX, scratch,
				     sizeof(scratch), &n);
	if (status == SASL_OK)
		status = sasl_plain_parse(scratch, n, creds);
	explicit_bzero(scratch, sizeof(scratch));
	return status;
}

/* One LOGIN field (user name or password) into dst[0..max], NUL-ended. */
static enum sasl_status sasl_decode_login_field(const char *line, size_t len,
						char *dst, size_t max,
						size_t *dst_len_r)
{
	unsigned char scratch[SASL_SCRATCH_SIZE];
	enum sasl_status status;
	size_t n = 0;

	status =
	    sasl_decode_bounded(line, len, max, scratch, sizeof(scratch), &n);
	if (status == SASL_OK && (n == 0 || sasl_has_bad_byte(scratch, n)))
		status = SASL_BAD_SYNTAX;
	if (status == SASL_OK) {
		memcpy(dst, scratch, n);
		dst[n] = '\0';
		*dst_len_r = n;
	}
	explicit_bzero(scratch, sizeof(scratch));
	return status;
}

/* EXTERNAL's one message: the authzid, maybe empty (RFC 4422 Appendix
 * A.1: "The client sends an empty string when it wishes the server to
 * derive its authorization identity"). */
static enum sasl_status sasl_decode_external(const char *line, size_t len,
					     struct sasl_creds *creds)
{
	unsigned char scratch[SASL_SCRATCH_SIZE];
	enum sasl_status status;
	size_t n = 0;

	/* An empty response to the 334 may come as an empty line or, as
	 * some clients send it, as "=". */
	if (len == 1 && line[0] == '=')
		len = 0;
	status = sasl_decode_bounded(line, len, SASL_USER_MAX, scratch,
				     sizeof(scratch), &n);
	if (status == SASL_OK && sasl_has_bad_byte(scratch, n))
		status = SASL_BAD_SYNTAX;
	if (status == SASL_OK) {
		memcpy(creds->user, scratch, n);
		creds->user[n] = '\0';
		creds->user_len = n;
	}
	explicit_bzero(scratch, sizeof(scratch));
	return status;
}

/* ---- the exchange ---- */

/* Ends the exchange on every status but SASL_CONTINUE. */
static enum sasl_status sasl_finish(struct sasl_state *st,
				    enum sasl_status status,
				    struct sasl_creds *creds,
				    const char *challenge,
				    const char **challenge_r)
{
	if (status == SASL_CONTINUE) {
		*challenge_r = challenge;
		return status;
	}
	*challenge_r = NULL;
	st->mech = SASL_MECH_NONE;
	st->step = 0;
	if (status != SASL_OK)
		sasl_creds_wipe(creds);
	return status;
}

/* The response to the current step; returns the next challenge in
 * *challenge_r on SASL_CONTINUE. */
static enum sasl_status sasl_respond(struct sasl_state *st, const char *line,
				     size_t len, struct sasl_creds *creds,
				     const char **challenge_r)
{
	enum sasl_status status;

	if (sasl_is_cancel(line, len))
		return SASL_CANCELLED;
	switch (st->mech) {
	case SASL_MECH_PLAIN:
		return sasl_decode_plain(line, len, creds);
	case SASL_MECH_LOGIN:
		if (st->step == 0) {
			status = sasl_decode_login_field(line, len, creds->user,
							 SASL_USER_MAX,
							 &creds->user_len);
			if (status != SASL_OK)
				return status;
			st->step = 1;
			*challenge_r = sasl_challenge_password;
			return SASL_CONTINUE;
		}
		return sasl_decode_login_field(line, len, creds->password,
					       SASL_PASSWORD_MAX,
					       &creds->password_len);
	case SASL_MECH_EXTERNAL:
		return sasl_decode_external(line, len, creds);
	case SASL_MECH_NONE:
		break;
	}
	return SASL_UNKNOWN_MECH;
}

enum sasl_status sasl_start(struct sasl_state *st, enum sasl_mech mech,
			    const char *initial, size_t initial_len,
			    struct sasl_creds *creds, const char **challenge_r)
{
	const char *challenge = NULL;
	enum sasl_status status;

	sasl_creds_wipe(creds);
	st->mech = mech;
	st->step = 0;
	if (mech == SASL_MECH_NONE)
		return sasl_finish(st, SASL_UNKNOWN_MECH, creds, NULL,
				   challenge_r);

	if (initial == NULL) {
		/* RFC 4616 §2 / RFC 4954 §4: PLAIN's and EXTERNAL's challenge
		 * is empty; LOGIN asks for the user name. */
		challenge = mech == SASL_MECH_LOGIN ? sasl_challenge_user
						    : sasl_challenge_plain;
		return sasl_finish(st, SASL_CONTINUE, creds, challenge,
				   challenge_r);
	}
	/* RFC 4954 §4: "=" is an empty initial response; an initial response
	 * is otherwise never empty (initial-response = base64 / "="). */
	if (initial_len == 0)
		return sasl_finish(st, SASL_BAD_SYNTAX, creds, NULL,
				   challenge_r);
	if (initial_len == 1 && initial[0] == '=')
		initial_len = 0;
	/* For LOGIN the initial response is the user name, as sent by
	 * Thunderbird, Outlook and swaks. */
	status = sasl_respond(st, initial, initial_len, creds, &challenge);
	return sasl_finish(st, status, creds, challenge, challenge_r);
}

enum sasl_status sasl_step(struct sasl_state *st, const char *line, size_t len,
			   struct sasl_creds *creds, const char **challenge_r)
{
	const char *challenge = NULL;
	enum sasl_status status;

	if (st->mech == SASL_MECH_NONE) {
		/* No exchange in progress: a caller bug, refused without
		 * touching creds (they may hold a finished exchange). */
		*challenge_r = NULL;
		return SASL_UNKNOWN_MECH;
	}
	if (line == NULL && len > 0)
		return sasl_finish(st, SASL_BAD_BASE64, creds, NULL,
				   challenge_r);
	status = sasl_respond(st, line, len, creds, &challenge);
	return sasl_finish(st, status, creds, challenge, challenge_r);
}
