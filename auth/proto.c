/*
 * proto.c - see proto.h.
 *
 * Wire layout (all integers in network byte order):
 *
 *   u32 length of the rest | u8 version | u8 type | u32 id | body
 *
 *   request body:   str user | str password | str addr
 *   account body:   str user | str addr
 *   response body:  u8 result | str user | str reason
 *
 * where str is u16 length + that many bytes, no terminating NUL.  The
 * encoding is canonical: decode followed by encode gives back the same
 * bytes (the fuzzer checks it).
 *
 * An account request has no password field at all, rather than an empty
 * one: the type alone says which it is, and a frame of one type never
 * decodes as the other (one string more or less is a frame that does not
 * end where its last field does).
 *
 * Everything the decoders accept, the encoders accept, and the other way
 * round: a field the encoder refuses can never be produced by a peer
 * either.
 */
#include "auth/proto.h"

#include <string.h>

#define AUTH_PROTO_PREFIX_SIZE 4
#define AUTH_PROTO_HEADER_SIZE (1 + 1 + 4) /* version, type, id */

/* What a string field may contain, beyond "no NUL". */
enum proto_field_kind {
	PROTO_FIELD_NAME,   /* user, addr: no CR or LF either */
	PROTO_FIELD_SECRET, /* password: any byte but NUL */
	PROTO_FIELD_TOKEN,  /* reason: [a-z_] only */
};

/* A bounded output cursor; the first failure sticks. */
struct proto_writer {
	unsigned char *buf;
	size_t size;
	size_t pos;
	int failed;
};

/* A bounded input cursor over one frame; the first failure sticks. */
struct proto_reader {
	const unsigned char *buf;
	size_t size;
	size_t pos;
	int failed;
};

static int proto_field_valid(const char *s, size_t len,
			     enum proto_field_kind kind)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0')
			return 0;
		switch (kind) {
		case PROTO_FIELD_NAME:
			if (c == '\r' || c == '\n')
				return 0;
			break;
		case PROTO_FIELD_SECRET:
			break;
		case PROTO_FIELD_TOKEN:
			if (!((c >= 'a' && c <= 'z') || c == '_'))
				return 0;
			break;
		}
	}
	return 1;
}

static void proto_put_bytes(struct proto_writer *w, const void *p, size_t len)
{
	if (w->failed || len > w->size - w->pos) {
		w->failed = 1;
		return;
	}
	memcpy(w->buf + w->pos, p, len);
	w->pos += len;
}

static void proto_put_u8(struct proto_writer *w, unsigned v)
{
	unsigned char b = (unsigned char)v;

	proto_put_bytes(w, &b, 1);
}

static void proto_put_u16(struct proto_writer *w, size_t v)
{
	unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};

	proto_put_bytes(w, b, sizeof(b));
}

static void proto_put_u32(struct proto_writer *w, uint32_t v)
{
	unsigned char b[4] = {(unsigned char)(v >> 24),
			      (unsigned char)(v >> 16), (unsigned char)(v >> 8),
			      (unsigned char)v};

	proto_put_bytes(w, b, sizeof(b));
}

/* s is a NUL-terminated field of a struct, at most size bytes including
 * the NUL (so an unterminated array is refused, not overrun); its length
 * must be within [min, max]. */
static void proto_put_str(struct proto_writer *w, const char *s, size_t size,
			  size_t min, size_t max, enum proto_field_kind kind)
{
	size_t len = strnlen(s, size);

	if (len == size || len < min || len > max ||
	    !proto_field_valid(s, len, kind)) {
		w->failed = 1;
		return;
	}
	proto_put_u16(w, len);
	proto_put_bytes(w, s, len);
}

static void proto_put_header(struct proto_writer *w, enum auth_msg_type type,
			     uint32_t id)
{
	proto_put_u32(w, 0); /* length, patched by proto_finish() */
	proto_put_u8(w, AUTH_PROTO_VERSION);
	proto_put_u8(w, type);
	proto_put_u32(w, id);
}

static long proto_finish(struct proto_writer *w)
{
	size_t rest;

	if (w->failed || w->pos > AUTH_PROTO_FRAME_MAX)
		return -1;
	rest = w->pos - AUTH_PROTO_PREFIX_SIZE;
	w->buf[0] = (unsigned char)(rest >> 24);
	w->buf[1] = (unsigned char)(rest >> 16);
	w->buf[2] = (unsigned char)(rest >> 8);
	w->buf[3] = (unsigned char)rest;
	return (long)w->pos;
}

long auth_request_encode(const struct auth_request *req, unsigned char *out,
			 size_t out_size)
{
	struct proto_writer w = {out, out_size, 0, 0};

	/* A password in an account request means the caller confused the
	 * two: refused rather than silently left out. */
	if (req->account_only && req->password[0] != '\0')
		return -1;
	proto_put_header(
	    &w, req->account_only ? AUTH_MSG_ACCOUNT : AUTH_MSG_REQUEST,
	    req->id);
	proto_put_str(&w, req->user, sizeof(req->user), 1, AUTH_PROTO_USER_MAX,
		      PROTO_FIELD_NAME);
	if (!req->account_only)
		proto_put_str(&w, req->password, sizeof(req->password), 0,
			      AUTH_PROTO_PASSWORD_MAX, PROTO_FIELD_SECRET);
	proto_put_str(&w, req->addr, sizeof(req->addr), 0, AUTH_PROTO_ADDR_MAX,
		      PROTO_FIELD_NAME);
	return proto_finish(&w);
}

/* The response invariants of proto.h: user is PAM_USER when OK and empty
 * otherwise, so that a TEMPFAIL or FAIL can never carry an identity. */
static int proto_response_consistent(enum auth_result result, size_t user_len)
{
	switch (result) {
	case AUTH_RESULT_OK:
		return user_len > 0;
	case AUTH_RESULT_FAIL:
	case AUTH_RESULT_TEMPFAIL:
		return user_len == 0;
	}
	return 0;
}

long auth_response_encode(const struct auth_response *resp, unsigned char *out,
			  size_t out_size)
{
	struct proto_writer w = {out, out_size, 0, 0};

	if (!proto_response_consistent(resp->result,
				       strnlen(resp->user, sizeof(resp->user))))
		return -1;
	proto_put_header(&w, AUTH_MSG_RESPONSE, resp->id);
	proto_put_u8(&w, (unsigned)resp->result);
	proto_put_str(&w, resp->user, sizeof(resp->user), 0,
		      AUTH_PROTO_USER_MAX, PROTO_FIELD_NAME);
	proto_put_str(&w, resp->reason, sizeof(resp->reason), 1,
		      AUTH_PROTO_REASON_MAX, PROTO_FIELD_TOKEN);
	return proto_finish(&w);
}

static uint32_t proto_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

long auth_frame_complete(const unsigned char *buf, size_t len)
{
	uint32_t rest;

	if (len < AUTH_PROTO_PREFIX_SIZE)
		return 0;
	rest = proto_be32(buf);
	if (rest == 0 || rest > AUTH_PROTO_FRAME_MAX - AUTH_PROTO_PREFIX_SIZE)
		return -1;
	if (len - AUTH_PROTO_PREFIX_SIZE < rest)
		return 0;
	return (long)rest + AUTH_PROTO_PREFIX_SIZE;
}

static const unsigned char *proto_get_bytes(struct proto_reader *r, size_t len)
{
	const unsigned char *p;

	if (r->failed || r->pos > r->size || len > r->size - r->pos) {
		r->failed = 1;
		return NULL;
	}
	p = r->buf + r->pos;
	r->pos += len;
	return p;
}

static unsigned proto_get_u8(struct proto_reader *r)
{
	const unsigned char *p = proto_get_bytes(r, 1);

	return p != NULL ? p[0] : 0;
}

static uint32_t proto_get_u32(struct proto_reader *r)
{
	const unsigned char *p = proto_get_bytes(r, 4);

	return p != NULL ? proto_be32(p) : 0;
}

/* Copies a string field into dst (max + 1 bytes) and NUL-terminates it;
 * returns its length. */
static size_t proto_get_str(struct proto_reader *r, char *dst, size_t min,
			    size_t max, enum proto_field_kind kind)
{
	const unsigned char *p;
	size_t len;

	dst[0] = '\0';
	p = proto_get_bytes(r, 2);
	if (p == NULL)
		return 0;
	len = (size_t)p[0] << 8 | p[1];
	if (len < min || len > max) {
		r->failed = 1;
		return 0;
	}
	p = proto_get_bytes(r, len);
	if (p == NULL || !proto_field_valid((const char *)p, len, kind)) {
		r->failed = 1;
		return 0;
	}
	memcpy(dst, p, len);
	dst[len] = '\0';
	return len;
}

/* Checks the prefix against the frame length and reads the header.
 * Returns the id; *type_r is the type byte (0 once r failed). */
static uint32_t proto_get_header(struct proto_reader *r, unsigned *type_r)
{
	uint32_t id;

	/* auth_frame_complete() is 0 for an empty buffer: size 0 must not
	 * count as "exactly one frame". */
	if (r->size == 0 ||
	    auth_frame_complete(r->buf, r->size) != (long)r->size) {
		r->failed = 1;
		*type_r = 0;
		return 0;
	}
	r->pos = AUTH_PROTO_PREFIX_SIZE;
	if (proto_get_u8(r) != AUTH_PROTO_VERSION)
		r->failed = 1;
	*type_r = proto_get_u8(r);
	id = proto_get_u32(r);
	return id;
}

int auth_request_decode(const unsigned char *frame, size_t len,
			struct auth_request *req)
{
	struct proto_reader r = {frame, len, 0, 0};
	unsigned type;

	req->id = proto_get_header(&r, &type);
	if (type != AUTH_MSG_REQUEST && type != AUTH_MSG_ACCOUNT)
		r.failed = 1;
	req->account_only = type == AUTH_MSG_ACCOUNT;
	proto_get_str(&r, req->user, 1, AUTH_PROTO_USER_MAX, PROTO_FIELD_NAME);
	if (req->account_only)
		/* Not on the wire; nothing of an earlier request stays. */
		explicit_bzero(req->password, sizeof(req->password));
	else
		proto_get_str(&r, req->password, 0, AUTH_PROTO_PASSWORD_MAX,
			      PROTO_FIELD_SECRET);
	proto_get_str(&r, req->addr, 0, AUTH_PROTO_ADDR_MAX, PROTO_FIELD_NAME);
	if (r.failed || r.pos != r.size) {
		/* Never leave half a password behind in a rejected request. */
		auth_request_wipe(req);
		return -1;
	}
	return 0;
}

int auth_response_decode(const unsigned char *frame, size_t len,
			 struct auth_response *resp)
{
	struct proto_reader r = {frame, len, 0, 0};
	unsigned type, result;
	size_t user_len;

	resp->id = proto_get_header(&r, &type);
	if (type != AUTH_MSG_RESPONSE)
		r.failed = 1;
	result = proto_get_u8(&r);
	user_len = proto_get_str(&r, resp->user, 0, AUTH_PROTO_USER_MAX,
				 PROTO_FIELD_NAME);
	proto_get_str(&r, resp->reason, 1, AUTH_PROTO_REASON_MAX,
		      PROTO_FIELD_TOKEN);
	if (r.failed || r.pos != r.size || result > AUTH_RESULT_TEMPFAIL)
		goto fail;
	resp->result = (enum auth_result)result;
	if (!proto_response_consistent(resp->result, user_len))
		goto fail;
	return 0;
fail:
	/* A caller that forgets the return value still sees no success. */
	memset(resp, 0, sizeof(*resp));
	resp->result = AUTH_RESULT_TEMPFAIL;
	return -1;
}

void auth_request_wipe(struct auth_request *req)
{
	explicit_bzero(req, sizeof(*req));
}
