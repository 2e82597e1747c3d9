/*
 * test_auth_proto.c - the network process <-> auth helper codec
 * (auth/proto.h): round trips, and one test per rejection rule, for
 * password requests, account requests (AUTH_MSG_ACCOUNT) and responses.
 */
#include <stdint.h>
#include <string.h>

#include "auth/proto.h"
#include "tests/unit/tap.h"

static int all_zero(const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

static struct auth_request make_request(uint32_t id, const char *user,
					const char *password, const char *addr)
{
	struct auth_request req;

	memset(&req, 0, sizeof(req));
	req.id = id;
	snprintf(req.user, sizeof(req.user), "%s", user);
	snprintf(req.password, sizeof(req.password), "%s", password);
	snprintf(req.addr, sizeof(req.addr), "%s", addr);
	return req;
}

static struct auth_response make_response(uint32_t id, enum auth_result result,
					  const char *user, const char *reason)
{
	struct auth_response resp;

	memset(&resp, 0, sizeof(resp));
	resp.id = id;
	resp.result = result;
	snprintf(resp.user, sizeof(resp.user), "%s", user);
	snprintf(resp.reason, sizeof(resp.reason), "%s", reason);
	return resp;
}

/* Writes a request frame by hand, so that the decoder can be fed what
 * the encoder refuses to produce.  Returns its length. */
static size_t raw_frame(unsigned char *out, unsigned version, unsigned type,
			uint32_t id, const char *const *strs,
			const size_t *lens, size_t nstrs)
{
	size_t pos = 4, i, rest;

	out[pos++] = (unsigned char)version;
	out[pos++] = (unsigned char)type;
	out[pos++] = (unsigned char)(id >> 24);
	out[pos++] = (unsigned char)(id >> 16);
	out[pos++] = (unsigned char)(id >> 8);
	out[pos++] = (unsigned char)id;
	for (i = 0; i < nstrs; i++) {
		out[pos++] = (unsigned char)(lens[i] >> 8);
		out[pos++] = (unsigned char)lens[i];
		memcpy(out + pos, strs[i], lens[i]);
		pos += lens[i];
	}
	rest = pos - 4;
	out[0] = (unsigned char)(rest >> 24);
	out[1] = (unsigned char)(rest >> 16);
	out[2] = (unsigned char)(rest >> 8);
	out[3] = (unsigned char)rest;
	return pos;
}

/* A request with user, password, addr given as (bytes, length). */
static size_t raw_request(unsigned char *out, const char *user, size_t user_len,
			  const char *password, size_t password_len,
			  const char *addr, size_t addr_len)
{
	const char *strs[3] = {user, password, addr};
	size_t lens[3] = {user_len, password_len, addr_len};

	return raw_frame(out, AUTH_PROTO_VERSION, AUTH_MSG_REQUEST, 7, strs,
			 lens, 3);
}

/* An account request with user, addr given as (bytes, length). */
static size_t raw_account(unsigned char *out, const char *user, size_t user_len,
			  const char *addr, size_t addr_len)
{
	const char *strs[2] = {user, addr};
	size_t lens[2] = {user_len, addr_len};

	return raw_frame(out, AUTH_PROTO_VERSION, AUTH_MSG_ACCOUNT, 7, strs,
			 lens, 2);
}

static struct auth_request make_account(uint32_t id, const char *user,
					const char *addr)
{
	struct auth_request req = make_request(id, user, "", addr);

	req.account_only = true;
	return req;
}

static void set_len(unsigned char *frame, uint32_t rest)
{
	frame[0] = (unsigned char)(rest >> 24);
	frame[1] = (unsigned char)(rest >> 16);
	frame[2] = (unsigned char)(rest >> 8);
	frame[3] = (unsigned char)rest;
}

static void test_request_round_trip(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_request req =
	    make_request(0xdeadbeef, "alice@example.org",
			 "p\xc3\xa4ss word\r\n\x01", "[2001:db8::1]:4711");
	struct auth_request out;
	long n;

	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_OK(n > 0, "request encodes");
	TAP_EQ_INT(auth_frame_complete(buf, (size_t)n), n,
		   "an encoded request is one complete frame");
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0,
		   "request decodes");
	TAP_EQ_INT(out.id, 0xdeadbeef, "request id survives");
	TAP_EQ_STR(out.user, req.user, "user survives");
	TAP_EQ_STR(out.password, req.password,
		   "password with CR, LF and control bytes survives");
	TAP_EQ_STR(out.addr, req.addr, "address survives");
}

static void test_account_round_trip(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_request req =
	    make_account(0xcafe, "alice@example.org", "[2001:db8::1]:4711");
	struct auth_request out;
	long n;

	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_OK(n > 0, "account request encodes");
	TAP_EQ_INT(buf[5], AUTH_MSG_ACCOUNT, "account request: type 3");
	TAP_EQ_INT(n, 4 + 6 + 2 + 17 + 2 + 18,
		   "account request: user and address, no password field");
	TAP_EQ_INT(auth_frame_complete(buf, (size_t)n), n,
		   "an encoded account request is one complete frame");
	memset(&out, 0xa5, sizeof(out));
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0,
		   "account request decodes");
	TAP_OK(out.account_only, "account request: decoded as account_only");
	TAP_EQ_INT(out.id, 0xcafe, "account request: id survives");
	TAP_EQ_STR(out.user, req.user, "account request: user survives");
	TAP_EQ_STR(out.addr, req.addr, "account request: address survives");
	TAP_OK(all_zero(out.password, sizeof(out.password)),
	       "account request: password empty, nothing of the old one left");

	req = make_request(1, "alice", "secret", "::1");
	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_EQ_INT(buf[5], AUTH_MSG_REQUEST, "password request: type 1");
	memset(&out, 0xa5, sizeof(out));
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0,
		   "password request decodes");
	TAP_OK(!out.account_only, "password request: not account_only");

	memset(&req, 0, sizeof(req));
	req.account_only = true;
	memset(req.user, 'u', AUTH_PROTO_USER_MAX);
	memset(req.addr, 'a', AUTH_PROTO_ADDR_MAX);
	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_OK(n > 0, "account request with fields at their maximum encodes");
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0, "and decodes");
	TAP_EQ_INT(strlen(out.user), AUTH_PROTO_USER_MAX,
		   "maximum user length survives an account request");

	req = make_account(2, "bob", "");
	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0,
		   "account request with an empty address round-trips");
}

static void test_account_encode_rejects_bad_fields(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_request req;

	req = make_account(1, "alice", "::1");
	snprintf(req.password, sizeof(req.password), "secret");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: an account request carrying a password is "
		   "refused");
	req = make_account(1, "", "::1");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: account request with empty user is refused");
	req = make_account(1, "a\nb", "::1");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: LF in an account request's user is refused");
	req = make_account(1, "alice", "::1\r");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: CR in an account request's address is refused");
	req = make_account(1, "alice", "");
	memset(req.user, 'u', sizeof(req.user)); /* no NUL at all */
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: account request with unterminated user is "
		   "refused");
	req = make_account(1, "alice", "127.0.0.1");
	TAP_EQ_INT(auth_request_encode(&req, buf, 16), -1,
		   "encode: account request into too small a buffer is "
		   "refused");
}

/* The type decides the layout: a frame of one kind never decodes as the
 * other, whatever its strings. */
static void test_account_and_request_kept_apart(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	const char *strs[3] = {"alice", "", "1.2.3.4"};
	size_t lens[3] = {5, 0, 7};
	struct auth_request req;
	struct auth_response resp;
	size_t n;

	/* A password request's layout (empty password) under type 3. */
	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_ACCOUNT, 1, strs, lens,
		      3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: an account frame with a password field is "
		   "rejected");
	TAP_OK(all_zero(&req, sizeof(req)),
	       "a rejected account request leaves nothing behind");
	/* An account request's layout under type 1. */
	strs[1] = "1.2.3.4";
	lens[1] = 7;
	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_REQUEST, 1, strs, lens,
		      2);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: a password request without its address (an "
		   "account layout) is rejected");

	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), 0,
		   "hand-made account request decodes (control)");
	TAP_OK(req.account_only && strcmp(req.password, "") == 0,
	       "hand-made account request: account_only, no password");
	buf[5] = AUTH_MSG_REQUEST;
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: an account frame relabelled as a password "
		   "request is rejected");
	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_response_decode(buf, n, &resp), -1,
		   "decode: an account request where a response is expected "
		   "is rejected");
	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	buf[4] = 2;
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: an account request of version 2 is rejected");
}

static void test_account_decode_rejects_bad_strings(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	char big[AUTH_PROTO_USER_MAX + 2];
	struct auth_request req;
	size_t n;

	memset(big, 'x', sizeof(big));

	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	buf[n] = 0;
	set_len(buf, (uint32_t)(n + 1 - 4));
	TAP_EQ_INT(auth_request_decode(buf, n + 1, &req), -1,
		   "decode account: trailing bytes are rejected");
	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	buf[n - 7 - 1] = 8;
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: an address overrunning the frame is "
		   "rejected");
	n = raw_account(buf, "alice", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n - 1, &req), -1,
		   "decode account: a frame cut inside a string is rejected");
	n = raw_account(buf, "alice", 5, "", 0);
	set_len(buf, (uint32_t)(n - 2 - 4)); /* the prefix agrees */
	TAP_EQ_INT(auth_request_decode(buf, n - 2, &req), -1,
		   "decode account: a frame without its address is rejected");

	n = raw_account(buf, "al\0ce", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: NUL in user is rejected");
	n = raw_account(buf, "al\rce", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: CR in user is rejected");
	n = raw_account(buf, "al\nce", 5, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: LF in user is rejected");
	n = raw_account(buf, "alice", 5, "1.2\0.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: NUL in address is rejected");
	n = raw_account(buf, "alice", 5, "1.2\r.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: CR in address is rejected");
	n = raw_account(buf, "alice", 5, "1.2\n.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: LF in address is rejected");
	TAP_OK(all_zero(&req, sizeof(req)),
	       "a rejected account request leaves nothing behind");

	n = raw_account(buf, "", 0, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: empty user is rejected");
	n = raw_account(buf, big, AUTH_PROTO_USER_MAX + 1, "", 0);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: user over its maximum is rejected");
	n = raw_account(buf, "alice", 5, big, AUTH_PROTO_ADDR_MAX + 1);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode account: address over its maximum is rejected");
}

static void test_request_limits_round_trip(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_request req, out;
	long n;

	memset(&req, 0, sizeof(req));
	memset(req.user, 'u', AUTH_PROTO_USER_MAX);
	memset(req.password, 'p', AUTH_PROTO_PASSWORD_MAX);
	memset(req.addr, 'a', AUTH_PROTO_ADDR_MAX);
	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_OK(n > 0, "request with every field at its maximum encodes");
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0, "and decodes");
	TAP_EQ_INT(strlen(out.password), AUTH_PROTO_PASSWORD_MAX,
		   "maximum password length survives");

	req = make_request(1, "bob", "", "");
	n = auth_request_encode(&req, buf, sizeof(buf));
	TAP_OK(n > 0, "empty password and address encode");
	TAP_EQ_INT(auth_request_decode(buf, (size_t)n, &out), 0,
		   "empty password and address decode");
}

static void test_response_round_trip(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_response resp, out;
	long n;

	resp = make_response(42, AUTH_RESULT_OK, "alice", "ok");
	n = auth_response_encode(&resp, buf, sizeof(buf));
	TAP_OK(n > 0, "OK response encodes");
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), 0,
		   "OK response decodes");
	TAP_EQ_INT(out.id, 42, "response id survives");
	TAP_EQ_INT(out.result, AUTH_RESULT_OK, "result survives");
	TAP_EQ_STR(out.user, "alice", "PAM_USER survives");
	TAP_EQ_STR(out.reason, "ok", "reason survives");

	resp = make_response(43, AUTH_RESULT_FAIL, "", "auth_err");
	n = auth_response_encode(&resp, buf, sizeof(buf));
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), 0,
		   "FAIL response round-trips");
	TAP_EQ_INT(out.result, AUTH_RESULT_FAIL, "FAIL survives");

	resp = make_response(44, AUTH_RESULT_TEMPFAIL, "", "worker_died");
	n = auth_response_encode(&resp, buf, sizeof(buf));
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), 0,
		   "TEMPFAIL response round-trips");
	TAP_EQ_STR(out.reason, "worker_died", "reason token survives");
}

static void test_encode_rejects_bad_fields(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_request req;
	struct auth_response resp;

	memset(&req, 0, sizeof(req));
	memset(req.user, 'u', sizeof(req.user)); /* no NUL at all */
	snprintf(req.password, sizeof(req.password), "x");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: unterminated user is refused, not overrun");

	req = make_request(1, "", "x", "");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: empty user is refused");
	req = make_request(1, "a\rb", "x", "");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: CR in user is refused");
	req = make_request(1, "a\nb", "x", "");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: LF in user is refused");
	req = make_request(1, "a", "x", "1.2.3.4\n");
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: LF in address is refused");

	req = make_request(1, "a", "x", "");
	memset(req.addr, 'a', sizeof(req.addr));
	TAP_EQ_INT(auth_request_encode(&req, buf, sizeof(buf)), -1,
		   "encode: too long address is refused");

	req = make_request(1, "alice", "secret", "127.0.0.1");
	TAP_EQ_INT(auth_request_encode(&req, buf, 20), -1,
		   "encode: too small output buffer is refused");

	resp = make_response(1, AUTH_RESULT_FAIL, "", "Auth-Err");
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: reason outside [a-z_] is refused");
	resp = make_response(1, AUTH_RESULT_FAIL, "", "");
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: empty reason is refused");
	resp = make_response(1, AUTH_RESULT_FAIL, "", "x");
	memset(resp.reason, 'a', sizeof(resp.reason));
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: too long reason is refused");
	resp = make_response(1, AUTH_RESULT_OK, "", "ok");
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: OK without PAM_USER is refused");
	resp = make_response(1, AUTH_RESULT_TEMPFAIL, "alice", "pam_error");
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: a user name on TEMPFAIL is refused");
	resp = make_response(1, (enum auth_result)3, "", "ok");
	TAP_EQ_INT(auth_response_encode(&resp, buf, sizeof(buf)), -1,
		   "encode: unknown result is refused");
}

static void test_decode_rejects_bad_header(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	const char *strs[3] = {"alice", "pw", "1.2.3.4"};
	size_t lens[3] = {5, 2, 7};
	struct auth_request req;
	struct auth_response resp;
	size_t n;

	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_REQUEST, 1, strs, lens,
		      3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), 0,
		   "hand-made request decodes (control)");

	n = raw_frame(buf, 2, AUTH_MSG_REQUEST, 1, strs, lens, 3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: version 2 is rejected");
	n = raw_frame(buf, 0, AUTH_MSG_REQUEST, 1, strs, lens, 3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: version 0 is rejected");
	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_RESPONSE, 1, strs, lens,
		      3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: a response type where a request is expected is "
		   "rejected");
	n = raw_frame(buf, AUTH_PROTO_VERSION, 9, 1, strs, lens, 3);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: unknown type is rejected");
	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_REQUEST, 1, strs, lens,
		      3);
	TAP_EQ_INT(auth_response_decode(buf, n, &resp), -1,
		   "decode: a request where a response is expected is "
		   "rejected");
	TAP_EQ_INT(resp.result, AUTH_RESULT_TEMPFAIL,
		   "a rejected response never reads as OK");

	n = raw_frame(buf, AUTH_PROTO_VERSION, AUTH_MSG_REQUEST, 1, strs, lens,
		      3);
	TAP_EQ_INT(auth_request_decode(buf, 6, &req), -1,
		   "decode: a truncated frame is rejected");
	TAP_EQ_INT(auth_request_decode(buf, 2, &req), -1,
		   "decode: less than a length prefix is rejected");
	TAP_EQ_INT(auth_request_decode(buf, 0, &req), -1,
		   "decode: an empty request buffer is rejected");
	TAP_EQ_INT(auth_response_decode(buf, 0, &resp), -1,
		   "decode: an empty response buffer is rejected");
	set_len(buf, (uint32_t)(n - 4 + 1));
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: a prefix longer than the frame is rejected");
}

static void test_decode_rejects_bad_strings(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	char big[AUTH_PROTO_PASSWORD_MAX + 2];
	struct auth_request req;
	size_t n;

	memset(big, 'x', sizeof(big));

	n = raw_request(buf, "alice", 5, "pw", 2, "1.2.3.4", 7);
	buf[n] = 0;
	set_len(buf, (uint32_t)(n + 1 - 4));
	TAP_EQ_INT(auth_request_decode(buf, n + 1, &req), -1,
		   "decode: trailing bytes are rejected");

	n = raw_request(buf, "alice", 5, "pw", 2, "1.2.3.4", 7);
	buf[n - 7 - 1] = 8; /* addr length 8, one byte beyond the frame */
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: a string overrunning the frame is rejected");

	n = raw_request(buf, "alice", 5, "pw", 2, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n - 1, &req), -1,
		   "decode: a frame cut inside a string is rejected");

	n = raw_request(buf, "al\0ce", 5, "pw", 2, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: NUL in user is rejected");
	n = raw_request(buf, "al\rce", 5, "pw", 2, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: CR in user is rejected");
	n = raw_request(buf, "al\nce", 5, "pw", 2, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: LF in user is rejected");
	n = raw_request(buf, "alice", 5, "pw", 2, "1.2\0.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: NUL in address is rejected");
	n = raw_request(buf, "alice", 5, "pw", 2, "1.2\r.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: CR in address is rejected");
	n = raw_request(buf, "alice", 5, "pw", 2, "1.2\n.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: LF in address is rejected");
	n = raw_request(buf, "alice", 5, "p\0w", 3, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: NUL in password is rejected");
	TAP_OK(all_zero(&req, sizeof(req)),
	       "a rejected request leaves nothing behind");
	n = raw_request(buf, "alice", 5, "p\r\nw", 4, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), 0,
		   "decode: CR LF in password are accepted");

	n = raw_request(buf, "", 0, "pw", 2, "1.2.3.4", 7);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: empty user is rejected");
	n = raw_request(buf, big, AUTH_PROTO_USER_MAX + 1, "pw", 2, "", 0);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: user over its maximum is rejected");
	n = raw_request(buf, "alice", 5, big, AUTH_PROTO_PASSWORD_MAX + 1, "",
			0);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: password over its maximum is rejected");
	n = raw_request(buf, "alice", 5, "pw", 2, big, AUTH_PROTO_ADDR_MAX + 1);
	TAP_EQ_INT(auth_request_decode(buf, n, &req), -1,
		   "decode: address over its maximum is rejected");
}

static void test_decode_rejects_bad_responses(void)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	struct auth_response resp =
	    make_response(5, AUTH_RESULT_OK, "alice", "ok");
	struct auth_response out;
	long n;

	n = auth_response_encode(&resp, buf, sizeof(buf));
	buf[10] = 3; /* result */
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), -1,
		   "decode: unknown result is rejected");

	n = auth_response_encode(&resp, buf, sizeof(buf));
	buf[13] = '\n'; /* inside "alice" */
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), -1,
		   "decode: LF in PAM_USER is rejected");

	n = auth_response_encode(&resp, buf, sizeof(buf));
	buf[n - 1] = 'K'; /* "oK" */
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), -1,
		   "decode: reason outside [a-z_] is rejected");

	n = auth_response_encode(&resp, buf, sizeof(buf));
	buf[10] = AUTH_RESULT_FAIL;
	TAP_EQ_INT(auth_response_decode(buf, (size_t)n, &out), -1,
		   "decode: FAIL carrying a user name is rejected");
}

static void test_frame_complete(void)
{
	unsigned char buf[2 * AUTH_PROTO_FRAME_MAX];
	struct auth_request req = make_request(3, "alice", "pw", "1.2.3.4");
	long n, m;
	size_t i;

	n = auth_request_encode(&req, buf, sizeof(buf));
	for (i = 0; i < 4; i++)
		TAP_EQ_INT(auth_frame_complete(buf, i), 0,
			   "a partial length prefix of %zu bytes needs more",
			   i);
	TAP_EQ_INT(auth_frame_complete(buf, (size_t)n - 1), 0,
		   "a frame missing its last byte needs more");
	TAP_EQ_INT(auth_frame_complete(buf, (size_t)n), n,
		   "a whole frame is complete");

	m = auth_request_encode(&req, buf + n, sizeof(buf) - (size_t)n);
	TAP_EQ_INT(auth_frame_complete(buf, (size_t)(n + m)), n,
		   "of two frames, the first is returned");
	TAP_EQ_INT(auth_frame_complete(buf + n, (size_t)m - 3), 0,
		   "a split second frame needs more");
	TAP_EQ_INT(auth_frame_complete(buf + n, (size_t)m), m,
		   "and is complete once all of it arrived");

	set_len(buf, 0);
	TAP_EQ_INT(auth_frame_complete(buf, 4), -1,
		   "a zero length prefix is invalid");
	set_len(buf, AUTH_PROTO_FRAME_MAX - 4);
	TAP_EQ_INT(auth_frame_complete(buf, 4), 0,
		   "the largest frame is valid (needs more)");
	memset(buf + 4, 0, AUTH_PROTO_FRAME_MAX - 4);
	TAP_EQ_INT(auth_frame_complete(buf, AUTH_PROTO_FRAME_MAX),
		   AUTH_PROTO_FRAME_MAX, "the largest frame is complete");
	set_len(buf, AUTH_PROTO_FRAME_MAX - 3);
	TAP_EQ_INT(auth_frame_complete(buf, 4), -1,
		   "a frame one byte over the maximum is invalid");
	set_len(buf, 0xffffffffu);
	TAP_EQ_INT(auth_frame_complete(buf, 4), -1,
		   "a 4 GiB length prefix is invalid");
}

static void test_request_wipe(void)
{
	struct auth_request req = make_request(9, "alice", "secret", "::1");

	auth_request_wipe(&req);
	TAP_OK(all_zero(&req, sizeof(req)),
	       "auth_request_wipe clears the whole request");
}

int main(void)
{
	test_request_round_trip();
	test_request_limits_round_trip();
	test_account_round_trip();
	test_account_encode_rejects_bad_fields();
	test_account_and_request_kept_apart();
	test_account_decode_rejects_bad_strings();
	test_response_round_trip();
	test_encode_rejects_bad_fields();
	test_decode_rejects_bad_header();
	test_decode_rejects_bad_strings();
	test_decode_rejects_bad_responses();
	test_frame_complete();
	test_request_wipe();
	return tap_done();
}
