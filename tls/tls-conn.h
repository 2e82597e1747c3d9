/*
 * tls-conn.h - one server-side TLS connection on OpenSSL 3, with no libuv
 * inside: the caller moves ciphertext between the network and a tls_conn.
 * Ciphertext from the network goes in with tls_conn_feed(); decrypted
 * plaintext comes out through cb->plaintext; ciphertext to send comes out
 * through cb->send.  The TLS state reads and writes through a BIO over the
 * caller's buffers, so an idle connection holds no TLS buffers of its own
 * (SSL_MODE_RELEASE_BUFFERS).  The contexts it starts from are tls-server.h.
 *
 * Ownership: the caller of tls_conn_create() owns the conn and frees it
 * with tls_conn_destroy() (NULL is a no-op), never from inside one of its
 * callbacks.  The conn holds a reference on its tls_server (and its SSL on
 * the SSL_CTX it uses) until then.  Callbacks get buffers they do not keep.
 */
#ifndef SUBMITPROXY_TLS_CONN_H
#define SUBMITPROXY_TLS_CONN_H

#include <stdbool.h>
#include <stddef.h>

struct tls_server;
struct tls_conn;

/* When callbacks run (none of them from inside OpenSSL):
 *   send            - during tls_conn_feed(), tls_conn_write() and
 *                     tls_conn_shutdown(), at their end (or every ~16 KiB).
 *                     It must not call back into this conn.
 *   handshake_done  - only during tls_conn_feed(), before any plaintext of
 *                     that call; it may call tls_conn_write() (a greeting on
 *                     implicit TLS) and tls_conn_shutdown().
 *   plaintext       - only during tls_conn_feed(), once per record; it may
 *                     call tls_conn_write() (a reply) and tls_conn_shutdown(),
 *                     but not tls_conn_feed() and not tls_conn_destroy():
 *                     defer destruction until tls_conn_feed() returns.  If a
 *                     write from the callback fails, tls_conn_feed() stops
 *                     and returns TLS_ERROR.
 * After TLS_ERROR the conn is dead: every later call returns TLS_ERROR (any
 * alert was already sent).  A close_notify before the handshake is done
 * ends it as a failed handshake (TLS_ERROR, TLS_FAILURE_CLOSED), not as
 * TLS_CLOSED.  After TLS_CLOSED, further input is ignored; call
 * tls_conn_shutdown() to answer with our close_notify.  Call
 * tls_conn_shutdown() before tls_conn_destroy() on every orderly close:
 * OpenSSL will not resume a session whose connection was dropped without
 * close_notify (session-id cache; tickets are not affected).
 * A tls_conn belongs to the thread that created it; its tls_server may be
 * shared with other threads (tls-server.h).  A conn created before
 * tls_server_reload() but not yet through its handshake gets the new
 * certificates. */
struct tls_conn_callbacks {
	/* Ciphertext ready to go to the network; copy it, it is not kept. */
	void (*send)(void *arg, const char *data, size_t len);
	/* Decrypted application data.  The callee takes it all (copying what
	 * it cannot process yet): the buffer is wiped as soon as the callback
	 * returns, since it may hold AUTH credentials. */
	void (*plaintext)(void *arg, const char *data, size_t len);
	/* Called once, when the handshake has completed. */
	void (*handshake_done)(void *arg);
};

/* Whether the handshake asks for a client certificate ([listener]
 * client_certificates).  OPTIONAL: a certificate that does not verify
 * (unknown CA, expired, revoked) does not end the handshake, it is only
 * never used.  REQUIRED: without a verified certificate the handshake
 * fails (TLS_ERROR, tls_conn_error() says why).  A context without a client
 * CA asks for none whatever the mode (the configuration makes sure that
 * REQUIRED always has one). */
enum tls_client_certs {
	TLS_CLIENT_CERTS_OFF,
	TLS_CLIENT_CERTS_OPTIONAL,
	TLS_CLIENT_CERTS_REQUIRED,
};

/* Never NULL: aborts when out of memory, like every allocation. */
struct tls_conn *tls_conn_create(struct tls_server *srv,
				 enum tls_client_certs certs,
				 const struct tls_conn_callbacks *cb,
				 void *arg);

enum tls_result {
	TLS_OK = 0,	/* all input consumed; more may come */
	TLS_CLOSED = 1, /* peer sent close_notify */
	TLS_ERROR = -1, /* fatal: see tls_conn_error() */
};

/* Feeds ciphertext received from the network.  Drives the handshake and
 * delivers plaintext; may call cb->send (handshake messages, alerts). */
enum tls_result tls_conn_feed(struct tls_conn *c, const char *data, size_t len);

/* Encrypts plaintext; the records come out through cb->send before this
 * returns.  Only after the handshake. */
enum tls_result tls_conn_write(struct tls_conn *c, const char *data,
			       size_t len);

/* Sends close_notify through cb->send.  Safe to call in any state. */
void tls_conn_shutdown(struct tls_conn *c);

bool tls_conn_handshake_done(const struct tls_conn *c);

/* Why the connection failed, for logs: "no shared cipher", "unsupported
 * protocol", "not a TLS handshake (plaintext on a TLS port?)",
 * "ALPN offered without smtp", ... Never NULL. */
const char *tls_conn_error(const struct tls_conn *c);

/* The same failure as a class, for counters and for a log field a
 * program can match (tls_failure_name()).  A handshake timeout is not
 * here: the conn has no clock (the session's timer decides it). */
enum tls_failure {
	TLS_FAILURE_NONE, /* not failed (or failed after the handshake) */
	TLS_FAILURE_NO_SHARED_CIPHER,
	/* The client's best version is below min_version: TLS 1.0/1.1
	 * (OpenSSL 3.0 says SSL_R_UNSUPPORTED_PROTOCOL), SSLv3 and older
	 * (SSL_R_VERSION_TOO_LOW), TLS 1.2 against min_version TLSv1.3. */
	TLS_FAILURE_PROTOCOL_VERSION,
	TLS_FAILURE_ALPN, /* ALPN offered without smtp (ALPACA) */
	TLS_FAILURE_CERTIFICATE_REQUIRED, /* REQUIRED, and none was sent */
	TLS_FAILURE_BAD_CERTIFICATE,	  /* REQUIRED, and it did not verify */
	/* The client's alert refused our certificate (unknown_ca,
	 * bad_certificate, certificate_unknown ...): a self-signed or
	 * incomplete chain, an expired certificate, a name it did not
	 * expect. */
	TLS_FAILURE_SERVER_CERTIFICATE_REFUSED,
	/* Plaintext, HTTP or anything else that is no ClientHello. */
	TLS_FAILURE_NOT_TLS,
	/* The client ended the connection (FIN, tls_conn_eof(), or a
	 * close_notify or user_canceled alert) before the handshake was
	 * done. */
	TLS_FAILURE_CLOSED,
	TLS_FAILURE_OTHER,
	TLS_FAILURE_COUNT
};

/* TLS_FAILURE_NONE before any failure and for one after the handshake
 * (a bad record, a failed write): those are no handshake failures. */
enum tls_failure tls_conn_failure(const struct tls_conn *c);
/* "no_shared_cipher", "protocol_version", "alpn",
 * "certificate_required", "bad_certificate",
 * "server_certificate_refused", "not_tls", "closed", "other" ("none" for
 * TLS_FAILURE_NONE): the reason= tokens of the event=tls_fail log line and
 * of the metrics (proxy/metrics.c names them the same). */
const char *tls_failure_name(enum tls_failure f);

/* The transport ended (the client's FIN).  During a handshake the client
 * has started (at least one byte received), that is a failed handshake:
 * returns TLS_ERROR, and tls_conn_failure() says TLS_FAILURE_CLOSED.
 * Otherwise (no byte yet, handshake done, already failed or closed)
 * nothing changes and it returns TLS_OK: a connection that never began
 * a handshake (a TCP health check) is no failed handshake. */
enum tls_result tls_conn_eof(struct tls_conn *c);

/* The highest protocol version the client's ClientHello offered, as the
 * wire carries it (0x0301 TLS 1.0 ... 0x0304 TLS 1.3): the largest
 * entry of its supported_versions extension (GREASE values, RFC 8701,
 * left out), else its legacy_version.  Recorded before OpenSSL decides
 * anything, so a client refused for an old version has it too.  0 when
 * no ClientHello was seen. */
unsigned tls_conn_client_max_version(const struct tls_conn *c);

/* After the handshake, for the "tls" log event and the Received header. */
const char *tls_conn_version(const struct tls_conn *c); /* "TLSv1.3" */
const char *tls_conn_cipher(const struct tls_conn *c);
/* The key-exchange group, as OpenSSL 3.0 names it (SSL_group_to_name():
 * the TLS names "x25519", "x448", "secp256r1", "secp384r1",
 * "secp521r1", "ffdhe2048" ... of RFC 8446 and RFC 7919, fixed strings
 * of OpenSSL's group table); "none" without one (TLS 1.2 RSA key
 * exchange, or before the handshake), "unknown" for a group OpenSSL
 * has no name for.  Never NULL. */
const char *tls_conn_group(const struct tls_conn *c);
const char *tls_conn_sni(const struct tls_conn *c); /* NULL if none */
bool tls_conn_resumed(const struct tls_conn *c);
/* Verified client certificate subject (one line, RFC 2253), or NULL. */
const char *tls_conn_peer_subject(const struct tls_conn *c);
/* Its SHA-256 fingerprint, 64 lower-case hex digits (what a
 * client_cert_map "sha256:" rule names), or NULL. */
const char *tls_conn_peer_sha256(const struct tls_conn *c);
/* The login [tls] client_cert_map gives the verified certificate, or NULL
 * (no certificate, not verified, no map, no rule matched); *line_r (may
 * be NULL) gets the rule's line.  Taken at the end of the handshake, with
 * the map of the contexts the handshake started on. */
const char *tls_conn_peer_login(const struct tls_conn *c, int *line_r);
/* Why a certificate the client presented is not used: OpenSSL's verify
 * error ("certificate revoked", "certificate has expired", ...), or NULL
 * when it verified or none was presented. */
const char *tls_conn_peer_error(const struct tls_conn *c);

/* True if the client's SNI name selected an [sni] certificate; false if it
 * sent none or an unknown one (and got the default), for the log. */
bool tls_conn_sni_matched(const struct tls_conn *c);

/* Memory checks (tests, benchmarks): bytes of ciphertext buffer the conn
 * holds of its own (0 between calls), and whether OpenSSL still holds
 * received bytes it has not processed (a partial record). */
size_t tls_conn_buffered_bytes(const struct tls_conn *c);
bool tls_conn_has_pending(const struct tls_conn *c);

/* Bulk transfer (a message being received): OpenSSL keeps its record
 * buffers instead of freeing and reallocating them around every record.
 * Off again, an idle connection gives them back (SSL_MODE_RELEASE_BUFFERS). */
void tls_conn_set_bulk(struct tls_conn *c, bool bulk);

void tls_conn_destroy(struct tls_conn *c);

#endif
