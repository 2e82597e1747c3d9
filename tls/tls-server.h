/*
 * tls-server.h - the server side of TLS on OpenSSL 3: the SSL_CTXs built
 * from [tls] and [sni ...] (one default plus one per SNI name, all with the
 * same settings), protocol versions and ciphers, certificate choice by SNI,
 * ALPN (ALPACA), optional client certificates, reload on SIGHUP and the
 * "-t" check.  No libuv inside.  The per-connection glue is tls-conn.h.
 *
 * Ownership: the caller of tls_server_create() owns the server and gives it
 * up with tls_server_destroy() (NULL is a no-op).  Every tls_conn holds a
 * reference of its own, so connections may outlive tls_server_destroy(), and
 * tls_server_reload() never disturbs live connections: each SSL keeps a
 * reference on the context it started with.  One tls_server is shared by
 * every event loop: tls_conn_create() and tls_server_reload() may run on
 * different threads at once.
 */
#ifndef SUBMITPROXY_TLS_SERVER_H
#define SUBMITPROXY_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <openssl/bio.h> /* BIO_METHOD */
#include <openssl/types.h>

#include "tls/tls-conn.h"

struct config;
struct tls_certmap_ref;
struct tls_server;

/* Builds contexts from cfg->tls and cfg->snis.  Returns NULL and sets
 * *error_r (a static or cfg-lifetime string is not enough: a malloc'd
 * message the caller frees with free()) on failure: unreadable file, key
 * not matching certificate, bad cipher list, bad min_version. */
struct tls_server *tls_server_create(const struct config *cfg, char **error_r);

/* Re-reads certificates and keys from cfg.  On success new handshakes use
 * the new contexts; on failure the old ones stay and *error_r says why. */
int tls_server_reload(struct tls_server *srv, const struct config *cfg,
		      char **error_r);

void tls_server_destroy(struct tls_server *srv);

/* For "submitproxy -t": loads every certificate/key pair of cfg, checks that
 * each key matches its certificate, and prints one line per certificate to
 * out: "tls: FILE: subject=... notAfter=...".  Returns 0 if all good, -1
 * after printing errors "FILE: message" to err. */
int tls_check_config(const struct config *cfg, FILE *out, FILE *err);

/* ---- for tls-conn.c only ---- */

/* What the context callbacks learn during one connection's handshake.  The
 * tls_conn embeds it; the SSL's app data points at it. */
struct tls_handshake {
	struct tls_server *srv;
	enum tls_client_certs certs; /* the listener's */
	bool sni_matched;   /* the SNI name selected an [sni] certificate */
	bool alpn_refused;  /* ALPN offered without smtp */
	bool verify_failed; /* a client certificate did not verify */
	int verify_error;   /* its first X509_V_ERR_* */
	/* The client hello callback ran, and what it saw: the highest
	 * version offered, as the wire carries it (0: none). */
	bool client_hello_seen;
	unsigned client_max_version;
	struct tls_certmap_ref *map; /* the set's, when the SSL was made */
};

/* A server-side SSL (accept state) on the current default context, whose
 * context callbacks report into *hs.  Takes a reference on srv, which the
 * caller gives back with tls_server_unref() after SSL_free().  Aborts when
 * out of memory; never NULL. */
SSL *tls_server_ssl_new(struct tls_server *srv, struct tls_handshake *hs);

void tls_server_unref(struct tls_server *srv);

/* Gives back what tls_server_ssl_new() took for the handshake (the map);
 * after SSL_free(). */
void tls_handshake_finish(struct tls_handshake *hs);

/* The login client_cert_map gives peer (verified by the caller), or NULL;
 * the string lives until tls_handshake_finish(). */
const char *tls_handshake_login(const struct tls_handshake *hs, X509 *peer,
				int *line_r);

/* The connections' BIO method: made by make() on first use, then shared by
 * every connection of srv on every thread, and freed with the server's
 * last reference (OpenSSL caps the number of BIO types a process can
 * register, so not one per connection). */
BIO_METHOD *tls_server_bio_method(struct tls_server *srv,
				  BIO_METHOD *(*make)(void));

/* name as one RFC 2253 line (control and non-ASCII bytes escaped, so it is
 * safe to log), malloc'd; NULL if empty or longer than max. */
char *tls_name_oneline(const X509_NAME *name, size_t max);

#endif
