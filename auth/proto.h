/*
 * proto.h - the wire protocol between the network process and the auth
 * helper (and between the helper and its PAM worker processes).  Pure
 * encode/decode over buffers; no I/O.
 *
 * Every message is a frame:  u32 length (network order) of what follows,
 * then  u8 version (1), u8 type, u32 id, and type-specific fields, each
 * string as u16 length + bytes (no NUL).  A frame is at most
 * AUTH_PROTO_FRAME_MAX bytes including the length prefix; anything else
 * (unknown version or type, a string overrunning the frame, trailing
 * bytes, a NUL/CR/LF inside a user name or address) is a protocol error,
 * and the helper treats a peer that sends one as compromised: it closes
 * the channel.
 *
 *   AUTH_MSG_REQUEST   id, user, password, client address (text)
 *   AUTH_MSG_ACCOUNT   id, user, client address: PAM's account check only
 *                      (pam_acct_mgmt, no password), for a login by a
 *                      client certificate the network process verified
 *                      and mapped (AUTH EXTERNAL)
 *   AUTH_MSG_RESPONSE  id, result, final user name (PAM_USER), reason
 *
 * Why the helper answers ACCOUNT to a network process it distrusts: that
 * process already holds the only thing a login opens, the plaintext
 * connection to the backend, which trusts localhost.  What the helper
 * guards is elsewhere: passwords and the choice of PAM stack never come
 * from the network process, and an ACCOUNT request carries no password
 * and runs no authentication module.
 *
 * The PAM service is not on the wire: the helper takes it from its own
 * configuration, so that a compromised network process cannot pick a
 * weaker PAM stack.
 */
#ifndef SUBMITPROXY_AUTH_PROTO_H
#define SUBMITPROXY_AUTH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_PROTO_VERSION 1
#define AUTH_PROTO_FRAME_MAX 4096
#define AUTH_PROTO_USER_MAX 256
#define AUTH_PROTO_PASSWORD_MAX 1024
#define AUTH_PROTO_ADDR_MAX 64
#define AUTH_PROTO_REASON_MAX 64

enum auth_msg_type {
	AUTH_MSG_REQUEST = 1,
	AUTH_MSG_RESPONSE = 2,
	AUTH_MSG_ACCOUNT = 3,
};

enum auth_result {
	AUTH_RESULT_OK = 0,       /* 235 */
	AUTH_RESULT_FAIL = 1,     /* 535 5.7.8 */
	AUTH_RESULT_TEMPFAIL = 2, /* 454 4.7.0 */
};

struct auth_request {
	uint32_t id;
	/* AUTH_MSG_ACCOUNT: password is "" and not on the wire. */
	bool account_only;
	char user[AUTH_PROTO_USER_MAX + 1];
	char password[AUTH_PROTO_PASSWORD_MAX + 1];
	char addr[AUTH_PROTO_ADDR_MAX + 1];
};

struct auth_response {
	uint32_t id;
	enum auth_result result;
	char user[AUTH_PROTO_USER_MAX + 1];     /* PAM_USER; "" unless OK */
	char reason[AUTH_PROTO_REASON_MAX + 1]; /* short token for logs:
						   "ok", "auth_err",
						   "user_unknown",
						   "acct_expired",
						   "new_authtok_reqd",
						   "maxtries", "worker_died",
						   "timeout", "pam_error",
						   "busy" */
};

/* Encoders write one whole frame into out; return its length or -1 if a
 * field is too long or out too small. */
long auth_request_encode(const struct auth_request *req, unsigned char *out,
			 size_t out_size);
long auth_response_encode(const struct auth_response *resp,
			  unsigned char *out, size_t out_size);

/* Frame splitting: given the bytes received so far, returns the length of
 * the first complete frame (prefix included), 0 if more bytes are needed,
 * or -1 if the length prefix is invalid (0 or over the maximum). */
long auth_frame_complete(const unsigned char *buf, size_t len);

/* Decoders take exactly one complete frame; return 0 or -1. */
int auth_request_decode(const unsigned char *frame, size_t len,
			struct auth_request *req);
int auth_response_decode(const unsigned char *frame, size_t len,
			 struct auth_response *resp);

/* Overwrites a request (it holds a password). */
void auth_request_wipe(struct auth_request *req);

#endif
