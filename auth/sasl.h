/*
 * sasl.h - SMTP AUTH (RFC 4954) PLAIN (RFC 4616), LOGIN and EXTERNAL
 * (RFC 4422 Appendix A) decoding: pure functions over the client's base64
 * lines, no I/O, no allocation.
 *
 * EXTERNAL carries only an authorization identity (possibly empty): the
 * client's identity is its TLS certificate, which the caller checks.  On
 * SASL_OK creds->user holds the authzid (user_len 0: none, "act as
 * yourself") and creds->password is empty.
 *
 * Credentials are decoded into a caller-owned struct sasl_creds, which the
 * caller wipes with sasl_creds_wipe() as soon as they have been handed on.
 */
#ifndef SUBMITPROXY_SASL_H
#define SUBMITPROXY_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_USER_MAX 256
#define SASL_PASSWORD_MAX 1024

enum sasl_mech {
	SASL_MECH_NONE,
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
	SASL_MECH_EXTERNAL,
};

/* What the session must answer; each maps to one SMTP reply. */
enum sasl_status {
	SASL_OK,              /* creds complete: ask PAM */
	SASL_CONTINUE,        /* send the challenge in *challenge_r (334) */
	SASL_CANCELLED,       /* client sent "*": 501 5.7.0 */
	SASL_BAD_BASE64,      /* 501 5.5.2 */
	SASL_BAD_SYNTAX,      /* malformed PLAIN message, NUL/CR/LF in a name,
				 empty user or password: 501 5.5.2 */
	SASL_TOO_LONG,        /* user > 256 or password > 1024 bytes: 501 5.5.2 */
	SASL_AUTHZID_MISMATCH,/* authzid neither empty nor the user: 535 5.7.8 */
	SASL_UNKNOWN_MECH,    /* 504 5.5.4 */
};

struct sasl_creds {
	char user[SASL_USER_MAX + 1];
	char password[SASL_PASSWORD_MAX + 1];
	size_t user_len, password_len;
};

struct sasl_state {
	enum sasl_mech mech;
	int step;                  /* LOGIN: 0 = want user, 1 = want password */
};

/* Mechanism name, case-insensitive: "PLAIN" / "LOGIN" / "EXTERNAL" /
 * SASL_MECH_NONE. */
enum sasl_mech sasl_mech_from_name(const char *name, size_t len);
const char *sasl_mech_name(enum sasl_mech mech);

/* Starts an exchange.  initial is the initial response (RFC 4954 §4) or
 * NULL when none was given; "=" is an empty initial response.  Returns
 * SASL_CONTINUE with *challenge_r set (a base64 string without "334 ",
 * "" for PLAIN's empty challenge, "VXNlcm5hbWU6" / "UGFzc3dvcmQ6" for
 * LOGIN), SASL_OK when the initial response completed the exchange, or an
 * error. */
enum sasl_status sasl_start(struct sasl_state *st, enum sasl_mech mech,
			    const char *initial, size_t initial_len,
			    struct sasl_creds *creds, const char **challenge_r);

/* One client response line (without CR LF) to the last challenge. */
enum sasl_status sasl_step(struct sasl_state *st, const char *line,
			   size_t len, struct sasl_creds *creds,
			   const char **challenge_r);

/* Strict RFC 4648 base64: only the alphabet, padding only at the end and
 * correct, length a multiple of 4, no whitespace; the unused bits of the
 * last symbol must be zero.  Writes at most out_size bytes; returns the
 * decoded length or -1. */
long sasl_base64_decode(const char *in, size_t len, unsigned char *out,
			size_t out_size);

/* Writes the base64 of in[0..len) plus NUL; returns the length or -1 if
 * out_size is too small. */
long sasl_base64_encode(const unsigned char *in, size_t len, char *out,
			size_t out_size);

/* Overwrites the credentials (explicit_bzero: the compiler may not drop
 * it). */
void sasl_creds_wipe(struct sasl_creds *creds);

#endif
