/*
 * tls-conn.c - one server-side TLS connection (see tls-conn.h for the
 * interface).
 *
 * The SSL reads and writes through a BIO of our own (h2o's approach,
 * lib/common/socket.c) instead of a pair of memory BIOs.  Its read side
 * serves the buffer the caller is passing to tls_conn_feed() and nothing
 * else; its write side appends to a small accumulator that is handed to
 * cb->send and freed before each public call returns.  With
 * SSL_MODE_RELEASE_BUFFERS, an idle connection then holds only OpenSSL's
 * session state: no record buffers, no BIO buffers.
 *
 * The SSL comes from the connection's tls_server (tls-server.h), which also
 * keeps the one BIO method all its connections share.  A tls_conn belongs
 * to one thread.
 */
#include "tls/tls-conn.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/util.h"
#include "tls/tls-server.h"

/* RFC 8446 §5.1: a record carries at most 2^14 bytes of plaintext.  Reads
 * and writes go one record at a time. */
#define TLS_RECORD_PLAINTEXT_MAX 16384
/* Plaintext handed to cb->plaintext at once, at most: sixteen records,
 * what one read of the worker's buffer (256 KiB, worker.h) may bring.  On
 * the stack of tls_conn_feed(): a worker thread's stack is 8 MiB whatever
 * ulimit -s says (WORKER_STACK_SIZE, worker.h). */
#define TLS_PLAIN_BATCH (16 * TLS_RECORD_PLAINTEXT_MAX)
/* Hand ciphertext to cb->send once this much has accumulated, so a large
 * write never holds more than about one record of ciphertext. */
#define TLS_OUT_FLUSH_THRESHOLD 16384
/* First allocation of the accumulator: a typical first server flight. */
#define TLS_OUT_INITIAL_CAPACITY 4096
/* A longer client certificate subject is not reported at all: a truncated
 * DN could name someone else. */
#define TLS_PEER_SUBJECT_MAX 2048
/* BIO type of the connection BIO.  A fixed value instead of
 * BIO_get_new_index(), which OpenSSL caps at about 127 per process: tests and
 * fuzzers create many tls_servers.  The type only matters to BIO_find_type().
 */
#define TLS_BIO_TYPE (0x7f | BIO_TYPE_SOURCE_SINK)

static const char tls_reason_plaintext[] =
    "not a TLS handshake (plaintext on a TLS port?)";
static const char tls_reason_alpn[] = "ALPN offered without smtp";
static const char tls_reason_closed[] =
    "client closed the connection during the handshake";

static const char *const tls_failure_names[] = {
    [TLS_FAILURE_NONE] = "none",
    [TLS_FAILURE_NO_SHARED_CIPHER] = "no_shared_cipher",
    [TLS_FAILURE_PROTOCOL_VERSION] = "protocol_version",
    [TLS_FAILURE_ALPN] = "alpn",
    [TLS_FAILURE_CERTIFICATE_REQUIRED] = "certificate_required",
    [TLS_FAILURE_BAD_CERTIFICATE] = "bad_certificate",
    [TLS_FAILURE_SERVER_CERTIFICATE_REFUSED] = "server_certificate_refused",
    [TLS_FAILURE_NOT_TLS] = "not_tls",
    [TLS_FAILURE_CLOSED] = "closed",
    [TLS_FAILURE_OTHER] = "other",
};
static_assert(sizeof(tls_failure_names) / sizeof(tls_failure_names[0]) ==
		  TLS_FAILURE_COUNT,
	      "one name per TLS failure");

enum tls_conn_state {
	TLS_CONN_ACTIVE,
	TLS_CONN_CLOSED, /* peer sent close_notify */
	TLS_CONN_FAILED,
};

struct tls_conn {
	struct tls_handshake hs; /* srv, and what the context callbacks saw */
	SSL *ssl;
	struct tls_conn_callbacks cb;
	void *arg;

	/* Ciphertext that tls_conn_feed() is processing: all the BIO read
	 * callback ever serves.  NULL outside tls_conn_feed(). */
	const char *in;
	size_t in_len;

	/* Ciphertext from OpenSSL waiting for cb->send.  NULL between calls. */
	char *out;
	size_t out_len;
	size_t out_cap;

	const char *error;  /* static string or error_buf; NULL until a failure */
	char error_buf[160];
	enum tls_failure failure; /* NONE unless the handshake failed */
	/* Set at handshake end if a certificate verified: */
	char *peer_subject;
	char peer_sha256[2 * 32 + 1];
	char *peer_login; /* client_cert_map's, NULL if none */
	int peer_login_line;
	const char *peer_error; /* static; a certificate that did not verify */

	enum tls_conn_state state;
	bool handshake_done;
	bool in_feed;
	bool first_byte_seen;
	bool shutdown_sent;
	bool bulk;              /* a message is being received */
};

/* ---- the connection BIO ---- */

static void tls_out_append(struct tls_conn *c, const char *data, size_t len)
{
	size_t need = c->out_len + len, cap;

	if (need > c->out_cap) {
		cap = c->out_cap != 0 ? c->out_cap : TLS_OUT_INITIAL_CAPACITY;
		while (cap < need)
			cap *= 2;
		c->out = xrealloc(c->out, cap);
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

/* Hands the accumulated ciphertext to cb->send and frees it.  The buffer is
 * detached first, so whatever cb->send does cannot touch it. */
static void tls_conn_flush(struct tls_conn *c)
{
	char *buf;
	size_t len;

	while (c->out_len > 0) {
		buf = c->out;
		len = c->out_len;
		c->out = NULL;
		c->out_len = 0;
		c->out_cap = 0;
		c->cb.send(c->arg, buf, len);
		free(buf);
	}
	free(c->out);
	c->out = NULL;
	c->out_cap = 0;
}

static int tls_bio_write(BIO *bio, const char *data, size_t len,
			 size_t *written)
{
	struct tls_conn *c = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	if (c == NULL)
		return 0;
	tls_out_append(c, data, len);
	*written = len;
	return 1;
}

static int tls_bio_read(BIO *bio, char *buf, size_t size, size_t *readbytes)
{
	struct tls_conn *c = BIO_get_data(bio);
	size_t n;

	BIO_clear_retry_flags(bio);
	*readbytes = 0;
	if (c == NULL)
		return 0;
	if (c->in_len == 0) {
		/* Nothing until the next tls_conn_feed(): OpenSSL reports
		 * SSL_ERROR_WANT_READ. */
		BIO_set_retry_read(bio);
		return 0;
	}
	n = size < c->in_len ? size : c->in_len;
	memcpy(buf, c->in, n);
	c->in += n;
	c->in_len -= n;
	*readbytes = n;
	return 1;
}

static long tls_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(bio);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* cb->send runs at the end of the public call, outside
		 * OpenSSL. */
		return 1;
	case BIO_CTRL_PENDING:
		if (c == NULL)
			return 0;
		return c->in_len > LONG_MAX ? LONG_MAX : (long)c->in_len;
	case BIO_CTRL_WPENDING:
		if (c == NULL)
			return 0;
		return c->out_len > LONG_MAX ? LONG_MAX : (long)c->out_len;
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_EOF:
	default:
		return 0;
	}
}

static int tls_bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int tls_bio_destroy(BIO *bio)
{
	BIO_set_data(bio, NULL);
	return 1;
}

static BIO_METHOD *tls_bio_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(TLS_BIO_TYPE, "submitproxy tls_conn");

	/* The setters only store a pointer; BIO_meth_new only allocates. */
	if (m == NULL || BIO_meth_set_write_ex(m, tls_bio_write) != 1 ||
	    BIO_meth_set_read_ex(m, tls_bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, tls_bio_ctrl) != 1 ||
	    BIO_meth_set_create(m, tls_bio_create) != 1 ||
	    BIO_meth_set_destroy(m, tls_bio_destroy) != 1)
		fatal("tls: out of memory (BIO_meth_new)");
	return m;
}

/* ---- connections ---- */

struct tls_conn *tls_conn_create(struct tls_server *srv,
				 enum tls_client_certs certs,
				 const struct tls_conn_callbacks *cb, void *arg)
{
	struct tls_conn *c = xcalloc(1, sizeof(*c));
	BIO *bio;

	c->hs.certs = certs;
	c->cb = *cb;
	c->arg = arg;
	c->state = TLS_CONN_ACTIVE;
	ERR_clear_error();
	c->ssl = tls_server_ssl_new(srv, &c->hs);
	bio = BIO_new(tls_server_bio_method(srv, tls_bio_method_new));
	if (bio == NULL)
		fatal("tls: out of memory (BIO_new)");
	BIO_set_data(bio, c);
	/* One BIO both ways; SSL_free() frees it. */
	SSL_set_bio(c->ssl, bio, bio);
	return c;
}

void tls_conn_set_bulk(struct tls_conn *c, bool bulk)
{
	if (c == NULL || c->ssl == NULL)
		return;
	c->bulk = bulk;
	/* Message bytes are no AUTH line: while they flow, neither our
	 * buffer nor OpenSSL's record buffer is wiped after each record
	 * (two extra passes over every byte, a fifth of the CPU per MB
	 * relayed); both are again once the message has ended. */
	if (bulk) {
		SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_clear_options(c->ssl, SSL_OP_CLEANSE_PLAINTEXT);
	} else {
		SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_set_options(c->ssl, SSL_OP_CLEANSE_PLAINTEXT);
	}
}

void tls_conn_destroy(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	tls_handshake_finish(&c->hs);
	free(c->out);
	free(c->peer_subject);
	free(c->peer_login);
	tls_server_unref(c->hs.srv);
	free(c);
}

/* failure counts only while the handshake is under way: a failure after
 * it is no failed handshake (tls_conn_failure()). */
static enum tls_result
tls_conn_fail(struct tls_conn *c, enum tls_failure failure, const char *reason)
{
	c->state = TLS_CONN_FAILED;
	c->error = reason;
	c->failure = c->handshake_done ? TLS_FAILURE_NONE : failure;
	return TLS_ERROR;
}

/* Why OpenSSL failed (ret from an SSL_* call), in words for the log, and
 * as a class in *failure_r.  The codes are what OpenSSL 3.0 raises, seen
 * by experiment (tests/unit/test_tls.c has one case each):
 *   - a TLS 1.0 or 1.1 client against min_version TLSv1.2, and a TLS
 *     1.2 client against TLSv1.3: SSL_R_UNSUPPORTED_PROTOCOL; an SSLv3
 *     (or older) ClientHello: SSL_R_VERSION_TOO_LOW;
 *   - plaintext: our first-byte check (tls_conn_feed()), or
 *     SSL_R_HTTP_REQUEST, SSL_R_WRONG_VERSION_NUMBER (record header
 *     garbage), SSL_R_PACKET_LENGTH_TOO_LONG ...: anything the record
 *     layer or the ClientHello parser refuses before the client hello
 *     callback ran is no TLS client;
 *   - the client's alert about our certificate arrives as
 *     SSL_R_TLSV1_ALERT_UNKNOWN_CA (a self-signed or incomplete chain,
 *     what OpenSSL clients send), SSL_R_SSLV3_ALERT_BAD_CERTIFICATE,
 *     SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN (Java, and name mismatches
 *     in several clients) and the other certificate alerts. */
static const char *tls_conn_reason(struct tls_conn *c, int ret,
				   enum tls_failure *failure_r)
{
	int ssl_error = SSL_get_error(c->ssl, ret);
	unsigned long e;
	const char *reason;

	*failure_r = TLS_FAILURE_OTHER;
	if (c->hs.alpn_refused) {
		*failure_r = TLS_FAILURE_ALPN;
		return tls_reason_alpn;
	}
	if (ssl_error != SSL_ERROR_SSL)
		return "TLS I/O error";
	e = ERR_peek_error();
	if (ERR_GET_LIB(e) != ERR_LIB_SSL)
		goto generic;
	switch (ERR_GET_REASON(e)) {
	case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
		*failure_r = TLS_FAILURE_CERTIFICATE_REQUIRED;
		return "client certificate required";
	case SSL_R_CERTIFICATE_VERIFY_FAILED:
		*failure_r = TLS_FAILURE_BAD_CERTIFICATE;
		if (!c->hs.verify_failed)
			break;
		snprintf(c->error_buf, sizeof(c->error_buf),
			 "client certificate not accepted: %s",
			 X509_verify_cert_error_string(c->hs.verify_error));
		return c->error_buf;
	case SSL_R_NO_SHARED_CIPHER:
		*failure_r = TLS_FAILURE_NO_SHARED_CIPHER;
		return "no shared cipher";
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
		*failure_r = TLS_FAILURE_PROTOCOL_VERSION;
		return "unsupported protocol";
	case SSL_R_WRONG_VERSION_NUMBER:
		*failure_r = TLS_FAILURE_NOT_TLS;
		return "wrong version number";
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
		*failure_r = TLS_FAILURE_NOT_TLS;
		return tls_reason_plaintext;
	case SSL_R_NO_APPLICATION_PROTOCOL:
		*failure_r = TLS_FAILURE_ALPN;
		return tls_reason_alpn;
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE:
		/* OpenSSL's words name the alert ("tlsv1 alert unknown
		 * ca"). */
		*failure_r = TLS_FAILURE_SERVER_CERTIFICATE_REFUSED;
		break;
	case SSL_R_TLSV1_ALERT_USER_CANCELLED:
		*failure_r = TLS_FAILURE_CLOSED;
		break;
	default:
		if (!c->hs.client_hello_seen)
			*failure_r = TLS_FAILURE_NOT_TLS;
		break;
	}
generic:
	reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	return reason != NULL ? reason : "TLS error";
}

/* Handles a non-success return from SSL_do_handshake/SSL_read_ex/
 * SSL_write_ex: TLS_OK to wait for more input, or a final result. */
static enum tls_result tls_conn_ssl_result(struct tls_conn *c, int ret)
{
	enum tls_failure failure;
	const char *reason;

	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_OK;
	case SSL_ERROR_ZERO_RETURN:
		/* close_notify in the middle of a handshake: the client gave
		 * up on it, and no session was ever open to close. */
		if (!c->handshake_done)
			return tls_conn_fail(c, TLS_FAILURE_CLOSED,
					     tls_reason_closed);
		c->state = TLS_CONN_CLOSED;
		return TLS_CLOSED;
	default:
		reason = tls_conn_reason(c, ret, &failure);
		return tls_conn_fail(c, failure, reason);
	}
}

/* What the client certificate is, once: its subject, fingerprint and
 * login when it verified, why not when it did not.  On a resumed session
 * the certificate and verify result are the session's, checked when it
 * was made under the same contexts (the session id context,
 * tls-server.c). */
static void tls_conn_note_peer(struct tls_conn *c)
{
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	unsigned char md[32];
	unsigned int mdlen = 0;
	const char *login;
	long result;

	if (peer == NULL || c->hs.certs == TLS_CLIENT_CERTS_OFF)
		return;
	result = SSL_get_verify_result(c->ssl);
	if (c->hs.verify_failed || result != X509_V_OK) {
		c->peer_error = X509_verify_cert_error_string(
		    c->hs.verify_failed ? c->hs.verify_error : result);
		return;
	}
	c->peer_subject =
	    tls_name_oneline(X509_get_subject_name(peer), TLS_PEER_SUBJECT_MAX);
	if (X509_digest(peer, EVP_sha256(), md, &mdlen) == 1 &&
	    mdlen == sizeof(md)) {
		for (unsigned int i = 0; i < mdlen; i++)
			snprintf(c->peer_sha256 + 2 * i, 3, "%02x", md[i]);
	}
	login = tls_handshake_login(&c->hs, peer, &c->peer_login_line);
	if (login != NULL)
		c->peer_login = xstrdup(login);
}

/* Hands what plain holds (have bytes) to cb->plaintext and wipes it
 * (unless bulk).  False when the callback failed the connection. */
static bool tls_conn_deliver(struct tls_conn *c, char *plain, size_t *have)
{
	size_t n = *have;

	if (n == 0)
		return true;
	*have = 0;
	c->cb.plaintext(c->arg, plain, n);
	/* The records may hold an AUTH line: the owner has copied what it
	 * keeps, so no credential stays behind in our buffer (Dovecot's
	 * smtp_command_parser_clear()). */
	if (!c->bulk)
		OPENSSL_cleanse(plain, n);
	/* A tls_conn_write() from the callback may have failed. */
	if (c->state != TLS_CONN_ACTIVE)
		return false;
	if (c->out_len >= TLS_OUT_FLUSH_THRESHOLD)
		tls_conn_flush(c);
	return true;
}

/* plain (TLS_PLAIN_BATCH bytes) receives the records' plaintext on its
 * way to cb->plaintext.  The records of one feed are handed over
 * together, as many as fit: one call for what one socket read brought
 * (a message's 256 KiB read is sixteen records), so that the owner scans
 * it in one pass and sends the backend one write, not sixteen. */
static enum tls_result tls_conn_drive(struct tls_conn *c, char *plain)
{
	size_t n, before, have = 0;
	int ret, err;

	if (!c->handshake_done) {
		ret = SSL_do_handshake(c->ssl);
		if (ret != 1)
			return tls_conn_ssl_result(c, ret);
		c->handshake_done = true;
		tls_conn_note_peer(c);
		/* What the handshake's last step wrote (our last flight up
		 * to TLS 1.2; in TLS 1.3, the session tickets) stays in out:
		 * whatever handshake_done writes (the implicit-TLS greeting)
		 * goes behind it, and both leave in one write, not two.  Not
		 * held any longer than this feed: a GnuTLS client waits a
		 * moment for the tickets after its handshake, and gives up
		 * resuming if they are late (a STARTTLS client speaks
		 * first, so the next reply could be a round trip away). */
		c->cb.handshake_done(c->arg);
		if (c->state != TLS_CONN_ACTIVE)
			return TLS_ERROR;
	}
	for (;;) {
		if (TLS_PLAIN_BATCH - have < TLS_RECORD_PLAINTEXT_MAX &&
		    !tls_conn_deliver(c, plain, &have))
			return TLS_ERROR;
		before = c->in_len;
		ret = SSL_read_ex(c->ssl, plain + have, TLS_RECORD_PLAINTEXT_MAX,
				  &n);
		if (ret == 1) {
			have += n;
			continue;
		}
		err = SSL_get_error(c->ssl, ret);
		if (err != SSL_ERROR_WANT_READ) {
			/* A close_notify or an error, judged now, while
			 * OpenSSL's state and error queue are this read's
			 * (the callback's writes would change both); the
			 * records before it still reach the owner first, as
			 * they did one by one. */
			enum tls_result res = tls_conn_ssl_result(c, ret);
			enum tls_conn_state state = c->state;

			c->state = TLS_CONN_ACTIVE;
			if (!tls_conn_deliver(c, plain, &have))
				return TLS_ERROR;
			c->state = state;
			return res;
		}
		if (!tls_conn_deliver(c, plain, &have))
			return TLS_ERROR;
		if (c->in_len == 0)
			return TLS_OK;
		/* OpenSSL wants more although input is left (it retries
		 * non-application records itself, SSL_MODE_AUTO_RETRY): go on
		 * while it makes progress, never spin. */
		if (c->in_len == before)
			return tls_conn_fail(c, TLS_FAILURE_OTHER,
					     "TLS input not consumed");
	}
}

enum tls_result tls_conn_feed(struct tls_conn *c, const char *data, size_t len)
{
	/* Decrypted records.  Declared here rather than in tls_conn_drive()
	 * so that it is still live when cb->send runs below: the unit test
	 * checks from there that it was wiped. */
	char plain[TLS_PLAIN_BATCH];
	enum tls_result res;
	unsigned char first;

	if (c->state == TLS_CONN_FAILED)
		return TLS_ERROR;
	if (c->state == TLS_CONN_CLOSED)
		return TLS_CLOSED;
	if (c->in_feed)
		return tls_conn_fail(c, TLS_FAILURE_OTHER,
				     "tls_conn_feed called re-entrantly");
	if (len == 0)
		return TLS_OK;
	if (!c->first_byte_seen) {
		c->first_byte_seen = true;
		first = (unsigned char)data[0];
		/* A TLS client starts with a handshake record (0x16), or with
		 * an SSLv2-format ClientHello (high bit set), which OpenSSL
		 * judges itself.  Anything else is most likely an SMTP client
		 * talking plaintext to the implicit-TLS port: say so now rather
		 * than wait for a record header. */
		if (first != 0x16 && (first & 0x80) == 0)
			return tls_conn_fail(c, TLS_FAILURE_NOT_TLS,
					     tls_reason_plaintext);
	}

	c->in_feed = true;
	c->in = data;
	c->in_len = len;
	ERR_clear_error();
	res = tls_conn_drive(c, plain);
	ERR_clear_error();
	c->in = NULL;
	c->in_len = 0;
	/* Handshake messages, alerts (also after a failure), key updates. */
	tls_conn_flush(c);
	c->in_feed = false;
	return res;
}

enum tls_result tls_conn_write(struct tls_conn *c, const char *data, size_t len)
{
	enum tls_result res = TLS_OK;
	size_t chunk, n;
	int ret;

	if (c->state == TLS_CONN_FAILED)
		return TLS_ERROR;
	if (!c->handshake_done)
		return tls_conn_fail(c, TLS_FAILURE_OTHER,
				     "write before the TLS handshake");
	ERR_clear_error();
	while (len > 0) {
		chunk = len < TLS_RECORD_PLAINTEXT_MAX
			    ? len
			    : TLS_RECORD_PLAINTEXT_MAX;
		ret = SSL_write_ex(c->ssl, data, chunk, &n);
		if (ret != 1) {
			/* The BIO never blocks, so any failure is final. */
			enum tls_failure failure;
			const char *reason = tls_conn_reason(c, ret, &failure);

			res = tls_conn_fail(c, failure, reason);
			break;
		}
		data += n;
		len -= n;
		if (c->out_len >= TLS_OUT_FLUSH_THRESHOLD)
			tls_conn_flush(c);
	}
	ERR_clear_error();
	tls_conn_flush(c);
	return res;
}

void tls_conn_shutdown(struct tls_conn *c)
{
	/* Before the handshake there is nothing to close politely; after a
	 * failure OpenSSL has already sent its alert. */
	if (c->state == TLS_CONN_FAILED || !c->handshake_done ||
	    c->shutdown_sent)
		return;
	c->shutdown_sent = true;
	ERR_clear_error();
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	tls_conn_flush(c);
}

bool tls_conn_handshake_done(const struct tls_conn *c)
{
	return c->handshake_done;
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->error != NULL ? c->error : "no error";
}

enum tls_failure tls_conn_failure(const struct tls_conn *c)
{
	return c->failure;
}

const char *tls_failure_name(enum tls_failure f)
{
	if ((unsigned)f >= TLS_FAILURE_COUNT)
		f = TLS_FAILURE_OTHER;
	return tls_failure_names[f];
}

enum tls_result tls_conn_eof(struct tls_conn *c)
{
	if (c->state == TLS_CONN_FAILED)
		return TLS_ERROR;
	if (c->state == TLS_CONN_CLOSED)
		return TLS_CLOSED;
	if (c->handshake_done || !c->first_byte_seen)
		return TLS_OK;
	return tls_conn_fail(c, TLS_FAILURE_CLOSED, tls_reason_closed);
}

unsigned tls_conn_client_max_version(const struct tls_conn *c)
{
	return c->hs.client_max_version;
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

const char *tls_conn_group(const struct tls_conn *c)
{
	const char *name;
	int group;

	/* OpenSSL 3.0 reads the group from the SSL's session, which may not
	 * exist before the handshake ends (SSL_get_negotiated_group() would
	 * dereference NULL). */
	if (!c->handshake_done)
		return "none";
	/* A NID (3.0); 0 for TLS 1.2 RSA key exchange.  A group OpenSSL
	 * cannot map to a NID comes back with TLSEXT_nid_unknown set, which
	 * SSL_group_to_name() does not know either. */
	group = SSL_get_negotiated_group(c->ssl);
	if (group == NID_undef)
		return "none";
	name = SSL_group_to_name(c->ssl, group);
	return name != NULL ? name : "unknown";
}

const char *tls_conn_sni(const struct tls_conn *c)
{
	return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

bool tls_conn_sni_matched(const struct tls_conn *c)
{
	return c->hs.sni_matched;
}

bool tls_conn_resumed(const struct tls_conn *c)
{
	return SSL_session_reused(c->ssl) == 1;
}

const char *tls_conn_peer_subject(const struct tls_conn *c)
{
	return c->peer_subject;
}

const char *tls_conn_peer_sha256(const struct tls_conn *c)
{
	return c->peer_sha256[0] != '\0' ? c->peer_sha256 : NULL;
}

const char *tls_conn_peer_login(const struct tls_conn *c, int *line_r)
{
	if (line_r != NULL)
		*line_r = c->peer_login != NULL ? c->peer_login_line : 0;
	return c->peer_login;
}

const char *tls_conn_peer_error(const struct tls_conn *c)
{
	return c->peer_error;
}

size_t tls_conn_buffered_bytes(const struct tls_conn *c)
{
	return c->out_cap;
}

bool tls_conn_has_pending(const struct tls_conn *c)
{
	return SSL_has_pending(c->ssl) == 1;
}
