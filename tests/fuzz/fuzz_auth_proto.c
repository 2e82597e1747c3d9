/*
 * fuzz_auth_proto.c - libFuzzer harness for auth/proto.c, the one parser
 * the privileged auth helper runs on bytes from the network process.
 *
 * The input is split into frames with auth_frame_complete(), as the
 * helper does; each frame is copied to a heap buffer of its exact size (so
 * that AddressSanitizer sees a read past it, not into the next frame) and
 * decoded both as a request and as a response.
 *
 * Besides memory errors, the harness aborts when a documented property
 * breaks: a frame is never longer than the input nor AUTH_PROTO_FRAME_MAX;
 * what decodes re-encodes to exactly the same bytes (the encoding is
 * canonical and the encoders accept all the decoders do); decoded user
 * and address are non-empty / free of CR and LF, reasons are [a-z_]+,
 * user names appear only on OK; a rejected request is left all zero; a
 * request is account_only exactly when its type is AUTH_MSG_ACCOUNT, and
 * then carries no password.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

static void fuzz_request(const unsigned char *frame, size_t len)
{
	unsigned char out[AUTH_PROTO_FRAME_MAX];
	struct auth_request req;
	const unsigned char *b = (const unsigned char *)&req;
	size_t i;
	long m;

	memset(&req, 0xa5, sizeof(req));
	if (auth_request_decode(frame, len, &req) < 0) {
		for (i = 0; i < sizeof(req); i++)
			FUZZ_CHECK(b[i] == 0);
		return;
	}
	FUZZ_CHECK(req.user[0] != '\0');
	FUZZ_CHECK(strpbrk(req.user, "\r\n") == NULL);
	FUZZ_CHECK(strpbrk(req.addr, "\r\n") == NULL);
	/* Byte 5: the type, after the length prefix and the version. */
	FUZZ_CHECK(req.account_only == (frame[5] == AUTH_MSG_ACCOUNT));
	FUZZ_CHECK(req.account_only || frame[5] == AUTH_MSG_REQUEST);
	FUZZ_CHECK(!req.account_only || req.password[0] == '\0');
	m = auth_request_encode(&req, out, sizeof(out));
	FUZZ_CHECK(m == (long)len && memcmp(out, frame, len) == 0);
	auth_request_wipe(&req);
}

static void fuzz_response(const unsigned char *frame, size_t len)
{
	unsigned char out[AUTH_PROTO_FRAME_MAX];
	struct auth_response resp;
	long m;

	if (auth_response_decode(frame, len, &resp) < 0) {
		FUZZ_CHECK(resp.result == AUTH_RESULT_TEMPFAIL);
		return;
	}
	FUZZ_CHECK(resp.reason[0] != '\0');
	FUZZ_CHECK(
	    resp.reason[strspn(resp.reason, "abcdefghijklmnopqrstuvwxyz_")] ==
	    '\0');
	FUZZ_CHECK((resp.result == AUTH_RESULT_OK) == (resp.user[0] != '\0'));
	FUZZ_CHECK(strpbrk(resp.user, "\r\n") == NULL);
	m = auth_response_encode(&resp, out, sizeof(out));
	FUZZ_CHECK(m == (long)len && memcmp(out, frame, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The whole input as one frame too: the decoders must reject what
	 * is not exactly one frame. */
	fuzz_request(data, size);
	fuzz_response(data, size);

	while (size > 0) {
		long n = auth_frame_complete(data, size);
		unsigned char *frame;

		if (n <= 0) {
			FUZZ_CHECK(n == -1 || size < 4 ||
				   size < AUTH_PROTO_FRAME_MAX);
			break;
		}
		FUZZ_CHECK((size_t)n <= size && n <= AUTH_PROTO_FRAME_MAX);
		frame = malloc((size_t)n);
		FUZZ_CHECK(frame != NULL);
		memcpy(frame, data, (size_t)n);
		fuzz_request(frame, (size_t)n);
		fuzz_response(frame, (size_t)n);
		free(frame);
		data += n;
		size -= (size_t)n;
	}
	return 0;
}
