/*
 * tls-server.c - the TLS contexts (see tls-server.h for the interface).
 *
 * Contexts: one SSL_CTX per certificate (the [tls] default plus one per
 * [sni HOSTNAME]), all built by tls_ctx_new() with the same settings, so
 * that switching an SSL to another context in the servername callback
 * changes only the certificate.  A tls_server holds the current set;
 * tls_server_reload() builds a whole new set and swaps it in only if every
 * context loaded.  Live SSL objects keep references on the contexts they
 * use, so old contexts die with their last connection.  The context
 * callbacks report what they decide about a connection (SNI match, ALPN
 * refusal, failed client certificate) into the struct tls_handshake its
 * SSL points at, which the connection reads (tls-conn.c).
 *
 * Threads: one tls_server serves every event loop of the process
 * ([server] workers), so that all loops share one session cache and one
 * set of ticket keys (a ticket issued on one loop resumes on another).
 * SSL_CTX is thread-safe for SSL_new() and its session cache; what is ours
 * to guard is the pointer to the current set, which a reload replaces while
 * other loops start handshakes: it is read and swapped under srv->lock, and
 * each SSL takes its own reference (SSL_new, SSL_set_SSL_CTX) before the
 * lock is released.
 */
#include "tls/tls-server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "tls/certmap.h"
#include "tls/ocsp.h"

/* Identifies this server's sessions in the cache (RFC 5246 §7.4.1.2 session
 * ids and tickets are only resumed within the same context). */
#define TLS_SESSION_ID_CONTEXT "submitproxy"

/* A typedef, because clang-format cannot parse STACK_OF(X509_NAME) *p. */
typedef STACK_OF(X509_NAME) tls_x509_names;
typedef STACK_OF(X509_CRL) tls_x509_crls;

static const char tls_alpn_smtp[] = "smtp";

struct tls_sni_ctx {
	char *hostname; /* lower-cased, as config gives it */
	SSL_CTX *ctx;
};

/* [tls] client_cert_map, shared by a set and by every handshake started
 * on it (a reload may free the set while a handshake still needs the
 * map). */
struct tls_certmap_ref {
	atomic_size_t refs;
	struct certmap *map;
};

struct tls_ctx_set {
	SSL_CTX *def;
	struct tls_sni_ctx *snis;
	size_t nsnis;
	struct tls_certmap_ref *map; /* NULL: no certificate logins */
};

struct tls_server {
	pthread_mutex_t lock;	 /* guards ctxs, bio_method ("Threads" above) */
	BIO_METHOD *bio_method;	 /* tls-conn.c's, made on first use */
	struct tls_ctx_set ctxs; /* the current set, for new handshakes */
	/* One for the owner (until tls_server_destroy), one per tls_conn: the
	 * connections use bio_method and ctxs until they are destroyed.
	 * Connections on several threads come and go at once. */
	atomic_size_t refs;
};

/* ---- small helpers ---- */

/* ASCII-only, so that the locale never changes which certificate a name
 * selects. */
static bool tls_ascii_caseequal(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;

		if (ca >= 'A' && ca <= 'Z')
			ca = (unsigned char)(ca - 'A' + 'a');
		if (cb >= 'A' && cb <= 'Z')
			cb = (unsigned char)(cb - 'A' + 'a');
		if (ca != cb)
			return false;
		if (ca == '\0')
			return true;
	}
}

/* The reason text of the oldest error in OpenSSL's queue (the root cause:
 * "No such file or directory" rather than the "system lib" it caused), in
 * buf.  Leaves the queue alone. */
static const char *tls_openssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_peek_error();
	const char *reason, *p;
	int colons = 0;

	if (e == 0)
		return "unknown error";
	reason = ERR_reason_error_string(e);
	if (reason != NULL)
		return reason;
	/* System errors have no static string: take the reason field of
	 * "error:CODE:LIB:FUNC:REASON". */
	ERR_error_string_n(e, buf, size);
	for (p = buf; *p != '\0'; p++) {
		if (*p == ':' && ++colons == 4)
			return p + 1;
	}
	return buf;
}

/* Whether OpenSSL's queue says a key does not match its certificate.
 * Empties the queue. */
static bool tls_openssl_key_mismatch(void)
{
	unsigned long e;
	bool mismatch = false;

	while ((e = ERR_get_error()) != 0) {
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		     ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
			mismatch = true;
	}
	return mismatch;
}

/* OpenSSL's allocations abort on failure like ours (common/util.h): a NULL
 * kept would be dereferenced later, and nothing a peer did caused it. */
static BIO *tls_mem_bio_new(void)
{
	BIO *mem = BIO_new(BIO_s_mem());

	if (mem == NULL)
		fatal("tls: out of memory (BIO_new)");
	return mem;
}

char *tls_name_oneline(const X509_NAME *name, size_t max)
{
	BIO *mem = tls_mem_bio_new();
	char *data, *s = NULL;
	long n;

	if (X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_get_mem_data(mem, &data);
		if (n > 0 && (size_t)n <= max) {
			s = xmemdup(data, (size_t)n);
		}
	}
	BIO_free(mem);
	return s;
}

/* ---- contexts ---- */

/* Encrypted keys are not supported: without this, OpenSSL would prompt for
 * a pass phrase on the terminal and block. */
static int tls_no_passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return 0;
}

/* RFC 8701 §2: GREASE versions are 0x0a0a, 0x1a1a ... 0xfafa. */
static bool tls_version_is_grease(unsigned v)
{
	return (v & 0x0f0fu) == 0x0a0au && (v >> 8) == (v & 0xffu);
}

/* The highest version a ClientHello offers (tls_conn_client_max_version()):
 * RFC 8446 §4.2.1, a client that sends supported_versions means its list
 * and not legacy_version (which a TLS 1.3 client sets to 0x0303).  The
 * callback runs on the parsed ClientHello before OpenSSL chooses a
 * version (tls_early_post_process_client_hello() calls it first), so a
 * client refused for an old version is recorded too. */
static unsigned tls_client_max_version(SSL *ssl)
{
	const unsigned char *ext;
	size_t extlen, listlen;
	unsigned v, best = 0;

	/* supported_versions: list length (1), then 2 bytes per version. */
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &ext,
				      &extlen) == 1 &&
	    extlen >= 1) {
		listlen = ext[0];
		if (listlen > extlen - 1)
			listlen = extlen - 1;
		for (size_t i = 1; i + 1 <= listlen; i += 2) {
			v = ((unsigned)ext[i] << 8) | ext[i + 1];
			if (!tls_version_is_grease(v) && v > best)
				best = v;
		}
	}
	/* Without the extension (or with nothing but GREASE in it). */
	if (best == 0)
		best = SSL_client_hello_get0_legacy_version(ssl);
	return best;
}

/* RFC 6066 §3: a server MUST NOT resume a session under a server name
 * other than the one it was established for.  OpenSSL notices the change
 * in TLS 1.2 but resumes anyway, so the session id context, which OpenSSL
 * does check before resuming (session ids and tickets alike), is made to
 * depend on the name the client sends.  This runs on the ClientHello,
 * before the resumption decision.
 *
 * The name also selects the client CA ([sni] client_ca), and the
 * listener decides whether a certificate is asked for at all: a session
 * made where none was asked for must not resume where one is required
 * (nginx CVE-2014-3616, CVE-2025-23419), so the listener's mode goes into
 * the context as well.  A reload makes new contexts, and with them new
 * ticket keys and an empty cache: no session outlives a change of the
 * client CA, the CRL or the map.
 *
 * It also notes, for the logs and counters, that a ClientHello came and
 * the highest version it offers. */
static int tls_client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	static const unsigned char base[] = TLS_SESSION_ID_CONTEXT;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned char name[256];
	const unsigned char *ext;
	unsigned int dlen = 0;
	size_t extlen, nlen = 0;
	EVP_MD_CTX *md;

	struct tls_handshake *hs = SSL_get_app_data(ssl);
	unsigned char certs = hs != NULL ? (unsigned char)hs->certs : 0;

	(void)arg;
	if (hs != NULL) {
		hs->client_hello_seen = true;
		hs->client_max_version = tls_client_max_version(ssl);
	}
	/* server_name: list length (2), type 0 (1), name length (2), name. */
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext,
				      &extlen) == 1 &&
	    extlen >= 5 && ext[2] == TLSEXT_NAMETYPE_host_name) {
		nlen = ((size_t)ext[3] << 8) | ext[4];
		if (nlen > extlen - 5 || nlen > sizeof(name))
			nlen = 0;
		for (size_t i = 0; i < nlen; i++) {
			unsigned char ch = ext[5 + i];

			name[i] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
		}
	}
	md = EVP_MD_CTX_new();
	if (md == NULL)
		fatal("tls: out of memory (EVP_MD_CTX_new)");
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, base, sizeof(base) - 1) != 1 ||
	    EVP_DigestUpdate(md, ":", 1) != 1 ||
	    EVP_DigestUpdate(md, &certs, 1) != 1 ||
	    EVP_DigestUpdate(md, ":", 1) != 1 ||
	    EVP_DigestUpdate(md, name, nlen) != 1 ||
	    EVP_DigestFinal_ex(md, digest, &dlen) != 1 ||
	    SSL_set_session_id_context(ssl, digest,
				       dlen < SSL_MAX_SID_CTX_LENGTH
					   ? dlen
					   : SSL_MAX_SID_CTX_LENGTH) != 1) {
		EVP_MD_CTX_free(md);
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	EVP_MD_CTX_free(md);
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int tls_ssl_use_client_ca(SSL *ssl, const struct tls_handshake *hs);

/* Chooses the certificate by SNI.  It looks the name up in the server's
 * current set at handshake time, so that a reload takes effect at once, and
 * also moves a connection created before a reload onto the new default. */
static int tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_handshake *hs = SSL_get_app_data(ssl);
	const struct tls_ctx_set *set;
	const char *name;
	SSL_CTX *ctx;
	size_t i;

	(void)arg;
	if (hs == NULL)
		return SSL_TLSEXT_ERR_OK;
	pthread_mutex_lock(&hs->srv->lock);
	set = &hs->srv->ctxs;
	ctx = set->def;
	hs->sni_matched = false;
	name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name != NULL) {
		for (i = 0; i < set->nsnis; i++) {
			if (tls_ascii_caseequal(name, set->snis[i].hostname)) {
				ctx = set->snis[i].ctx;
				hs->sni_matched = true;
				break;
			}
		}
	}
	/* Still under the lock: SSL_set_SSL_CTX takes the SSL's own
	 * reference before a reload on another loop can free the set. */
	if ((SSL_get_SSL_CTX(ssl) != ctx && SSL_set_SSL_CTX(ssl, ctx) == NULL) ||
	    tls_ssl_use_client_ca(ssl, hs) < 0) {
		pthread_mutex_unlock(&hs->srv->lock);
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	pthread_mutex_unlock(&hs->srv->lock);
	return SSL_TLSEXT_ERR_OK;
}

/* ALPACA (2021): a client that names an application protocol must name
 * smtp, or an attacker could redirect its HTTPS (or other) connection here
 * and have the two servers' responses confused.  OpenSSL answers
 * SSL_TLSEXT_ERR_ALERT_FATAL with a no_application_protocol alert
 * (RFC 7301 §3.2).  Clients without ALPN never get here. */
static int tls_alpn_select_cb(SSL *ssl, const unsigned char **out,
			      unsigned char *outlen, const unsigned char *in,
			      unsigned int inlen, void *arg)
{
	struct tls_handshake *hs = SSL_get_app_data(ssl);
	const size_t smtp_len = sizeof(tls_alpn_smtp) - 1;
	unsigned int i, len;

	(void)arg;
	for (i = 0; i < inlen; i += 1 + len) {
		len = in[i];
		if (len > inlen - i - 1)
			break;
		if (len == smtp_len &&
		    memcmp(in + i + 1, tls_alpn_smtp, smtp_len) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)len;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	if (hs != NULL)
		hs->alpn_refused = true;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Client certificates are optional (machine-to-machine submission maps a
 * verified one to a login): one that does not verify does not end the
 * handshake, it is just never reported by tls_conn_peer_subject(), and the
 * client can still use AUTH.  Proof of possession of the key is still
 * checked by OpenSSL (CertificateVerify). */
static void tls_verify_note(X509_STORE_CTX *store)
{
	struct tls_handshake *hs;
	SSL *ssl;

	ssl = X509_STORE_CTX_get_ex_data(store,
					 SSL_get_ex_data_X509_STORE_CTX_idx());
	hs = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	if (hs != NULL && !hs->verify_failed) {
		hs->verify_failed = true;
		hs->verify_error = X509_STORE_CTX_get_error(store);
	}
}

static int tls_verify_cb(int ok, X509_STORE_CTX *store)
{
	if (!ok)
		tls_verify_note(store);
	return 1;
}

/* client_certificates = required: a certificate that does not verify
 * ends the handshake (OpenSSL sends the alert). */
static int tls_verify_required_cb(int ok, X509_STORE_CTX *store)
{
	if (!ok)
		tls_verify_note(store);
	return ok;
}

/* Whether ctx verifies client certificates (it has a client CA). */
static bool tls_ctx_has_client_ca(const SSL_CTX *ctx)
{
	const tls_x509_names *names = SSL_CTX_get_client_CA_list(ctx);

	return names != NULL && sk_X509_NAME_num(names) > 0;
}

/* Asks ssl's client for a certificate as its listener says, with the CA
 * of the context it is on now (the default one, then the one its SNI name
 * chose: the verify mode and CA names are the SSL's own, copied from the
 * context it was made on, so they are set again after a switch). */
static int tls_ssl_use_client_ca(SSL *ssl, const struct tls_handshake *hs)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	tls_x509_names *names;

	if (hs->certs == TLS_CLIENT_CERTS_OFF || !tls_ctx_has_client_ca(ctx)) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	names = SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx));
	if (names == NULL)
		return -1;
	SSL_set_client_CA_list(ssl, names);
	if (hs->certs == TLS_CLIENT_CERTS_REQUIRED)
		SSL_set_verify(ssl,
			       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			       tls_verify_required_cb);
	else
		SSL_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_cb);
	return 0;
}

static int tls_parse_min_version(const char *s, int *version_r)
{
	if (s == NULL || tls_ascii_caseequal(s, "TLSv1.2"))
		*version_r = TLS1_2_VERSION;
	else if (tls_ascii_caseequal(s, "TLSv1.3"))
		*version_r = TLS1_3_VERSION;
	else
		return -1;
	return 0;
}

/* "FILE:LINE: " of [tls] for messages about its settings, "" if unknown. */
static void tls_config_where(const struct config *cfg, char *buf, size_t size)
{
	if (cfg->path == NULL)
		buf[0] = '\0';
	else if (cfg->tls.line > 0)
		snprintf(buf, size, "%s:%d: ", cfg->path, cfg->tls.line);
	else
		snprintf(buf, size, "%s: ", cfg->path);
}


/* A client CA file, with the CRLs of [tls] client_crl: shared by every
 * context of a set that names the same file. */
struct tls_client_ca {
	X509_STORE *store;
	tls_x509_names *names;
};

static void tls_client_ca_finish(struct tls_client_ca *ca)
{
	X509_STORE_free(ca->store);
	sk_X509_NAME_pop_free(ca->names, X509_NAME_free);
	ca->store = NULL;
	ca->names = NULL;
}

/* The CRLs of file (PEM, one or more).  Certificates are refused there:
 * the file is no place to add trust anchors by mistake. */
static tls_x509_crls *tls_crls_load(const char *file, char **error_r)
{
	STACK_OF(X509_INFO) *infos = NULL;
	tls_x509_crls *crls = NULL;
	char buf[256];
	BIO *in;
	int i;

	ERR_clear_error();
	in = BIO_new_file(file, "r");
	if (in == NULL) {
		*error_r = xasprintf("%s: cannot open client CRL file: %s",
				     file, tls_openssl_reason(buf, sizeof(buf)));
		goto out;
	}
	infos = PEM_X509_INFO_read_bio(in, NULL, NULL, NULL);
	if (infos == NULL) {
		*error_r = xasprintf("%s: cannot read CRLs: %s", file,
				     tls_openssl_reason(buf, sizeof(buf)));
		goto out;
	}
	crls = sk_X509_CRL_new_null();
	if (crls == NULL)
		fatal("tls: out of memory (sk_X509_CRL_new_null)");
	for (i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *info = sk_X509_INFO_value(infos, i);

		if (info->x509 != NULL || info->x_pkey != NULL) {
			*error_r = xasprintf("%s: holds a certificate or key; "
					     "client_crl takes CRLs only",
					     file);
			goto fail;
		}
		if (info->crl == NULL)
			continue;
		if (sk_X509_CRL_push(crls, info->crl) == 0)
			fatal("tls: out of memory (sk_X509_CRL_push)");
		info->crl = NULL;
	}
	if (sk_X509_CRL_num(crls) == 0) {
		*error_r = xasprintf("%s: no CRL found", file);
		goto fail;
	}
	goto out;
fail:
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	crls = NULL;
out:
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	BIO_free(in);
	ERR_clear_error();
	return crls;
}

/* crls may be NULL (no revocation check).  With them, every certificate of
 * the chain is checked, the client's and each CA's under the root:
 * X509_V_FLAG_CRL_CHECK_ALL, and an issuer without a CRL in the file fails
 * the check ("unable to get certificate CRL"), as does a CRL past its
 * nextUpdate: revocation is checked or the certificate is not used. */
static int tls_client_ca_load(struct tls_client_ca *ca, const char *file,
			      const tls_x509_crls *crls, char **error_r)
{
	char buf[256];
	int i;

	ca->store = NULL;
	ca->names = NULL;
	ERR_clear_error();
	ca->store = X509_STORE_new();
	if (ca->store == NULL || X509_STORE_load_file(ca->store, file) != 1) {
		*error_r =
		    xasprintf("%s: cannot load client CA certificates: %s",
			      file, tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	for (i = 0; crls != NULL && i < sk_X509_CRL_num(crls); i++) {
		if (X509_STORE_add_crl(ca->store, sk_X509_CRL_value(crls, i)) !=
		    1)
			fatal("tls: out of memory (X509_STORE_add_crl)");
	}
	if (crls != NULL)
		X509_STORE_set_flags(ca->store, X509_V_FLAG_CRL_CHECK |
						    X509_V_FLAG_CRL_CHECK_ALL);
	/* The names sent in CertificateRequest, so that a client with several
	 * certificates picks one we can verify. */
	ca->names = SSL_load_client_CA_file(file);
	if (ca->names == NULL || sk_X509_NAME_num(ca->names) == 0) {
		*error_r =
		    xasprintf("%s: no client CA certificate found", file);
		goto fail;
	}
	ERR_clear_error();
	return 0;
fail:
	ERR_clear_error();
	tls_client_ca_finish(ca);
	return -1;
}

/* The client CAs of one set: one per distinct file. */
struct tls_client_cas {
	const char **files;
	struct tls_client_ca *cas;
	size_t n;
	tls_x509_crls *crls;
};

static void tls_client_cas_finish(struct tls_client_cas *cas)
{
	for (size_t i = 0; i < cas->n; i++)
		tls_client_ca_finish(&cas->cas[i]);
	free(cas->cas);
	free(cas->files);
	sk_X509_CRL_pop_free(cas->crls, X509_CRL_free);
	memset(cas, 0, sizeof(*cas));
}

/* The loaded CA of file (NULL: none), loading it on first use. */
static int tls_client_cas_get(struct tls_client_cas *cas, const char *file,
			      const struct tls_client_ca **ca_r,
			      char **error_r)
{
	*ca_r = NULL;
	if (file == NULL)
		return 0;
	for (size_t i = 0; i < cas->n; i++) {
		if (strcmp(cas->files[i], file) == 0) {
			*ca_r = &cas->cas[i];
			return 0;
		}
	}
	cas->cas = xreallocarray(cas->cas, cas->n + 1, sizeof(*cas->cas));
	cas->files = xreallocarray(cas->files, cas->n + 1, sizeof(*cas->files));
	if (tls_client_ca_load(&cas->cas[cas->n], file, cas->crls, error_r) < 0)
		return -1;
	cas->files[cas->n] = file;
	*ca_r = &cas->cas[cas->n++];
	return 0;
}

/* A context with every setting from [tls] and no certificate yet. */
static SSL_CTX *tls_ctx_new_settings(const struct config *cfg, char **error_r)
{
	static const unsigned char sid_ctx[] = TLS_SESSION_ID_CONTEXT;
	char where[512], buf[256];
	SSL_CTX *ctx;
	int version;

	tls_config_where(cfg, where, sizeof(where));
	if (tls_parse_min_version(cfg->tls.min_version, &version) < 0) {
		*error_r = xasprintf(
		    "%stls: min_version must be TLSv1.2 or TLSv1.3, not \"%s\"",
		    where, cfg->tls.min_version);
		return NULL;
	}

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = xasprintf("tls: cannot create context: %s",
				     tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	if (SSL_CTX_set_min_proto_version(ctx, version) != 1) {
		*error_r = xasprintf("tls: cannot set min_version: %s",
				     tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	/* Server cipher preference; no renegotiation (CVE-2009-3555, and
	 * client-initiated renegotiation is a CPU DoS); no compression
	 * (CRIME).  Session tickets stay on (SSL_OP_NO_TICKET not set). */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_NO_COMPRESSION);
	/* OpenSSL keeps a copy of the plaintext it decrypted in its record
	 * buffer until overwritten; that copy may be an AUTH line too. */
	SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
	/* Idle connections give their record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) !=
	    1) {
		*error_r = xasprintf("tls: cannot set session id context: %s",
				     tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	if (cfg->tls.ciphers != NULL &&
	    SSL_CTX_set_cipher_list(ctx, cfg->tls.ciphers) != 1) {
		*error_r = xasprintf("%stls: ciphers \"%s\": %s", where,
				     cfg->tls.ciphers,
				     tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	if (cfg->tls.ciphersuites != NULL &&
	    SSL_CTX_set_ciphersuites(ctx, cfg->tls.ciphersuites) != 1) {
		*error_r = xasprintf("%stls: ciphersuites \"%s\": %s", where,
				     cfg->tls.ciphersuites,
				     tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase_cb);
	SSL_CTX_set_client_hello_cb(ctx, tls_client_hello_cb, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, tls_servername_cb);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select_cb, NULL);
	ERR_clear_error();
	return ctx;

fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* Loads a PEM certificate chain and its key (key NULL: in the certificate
 * file). */
static int tls_ctx_load_pair(SSL_CTX *ctx, const char *cert, const char *key,
			     char **error_r)
{
	char buf[256];
	const char *reason;

	if (key == NULL)
		key = cert;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*error_r =
		    xasprintf("%s: cannot load certificate chain: %s", cert,
			      tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL already compares the key with the certificate
		 * here. */
		reason = tls_openssl_reason(buf, sizeof(buf));
		if (tls_openssl_key_mismatch())
			*error_r = xasprintf(
			    "%s: private key does not match certificate %s",
			    key, cert);
		else
			*error_r = xasprintf("%s: cannot load private key: %s",
					     key, reason);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = xasprintf(
		    "%s: private key does not match certificate %s: %s", key,
		    cert, tls_openssl_reason(buf, sizeof(buf)));
		goto fail;
	}
	ERR_clear_error();
	return 0;

fail:
	ERR_clear_error();
	return -1;
}

/* Gives ctx a client CA to verify against.  Whether a certificate is
 * asked for is each connection's (tls_ssl_use_client_ca()). */
static void tls_ctx_use_client_ca(SSL_CTX *ctx, const struct tls_client_ca *ca,
				  const char *file)
{
	tls_x509_names *names = SSL_dup_CA_list(ca->names);

	if (names == NULL)
		fatal("%s: out of memory copying client CA names", file);
	SSL_CTX_set1_cert_store(ctx, ca->store);
	SSL_CTX_set_client_CA_list(ctx, names);
}

/* One context for one certificate: every setting from [tls], the chain and
 * key, the OCSP response to staple (ocsp NULL: none), and the client CA
 * (ca_file, loaded in cas) if there is one. */
static SSL_CTX *tls_ctx_new(const struct config *cfg, const char *cert,
			    const char *key, const char *ocsp,
			    struct tls_client_cas *cas, const char *ca_file,
			    char **error_r)
{
	SSL_CTX *ctx = tls_ctx_new_settings(cfg, error_r);
	const struct tls_client_ca *ca = NULL;
	char *ocsp_error = NULL;

	if (ctx == NULL)
		return NULL;
	if (tls_ctx_load_pair(ctx, cert, key, error_r) < 0)
		goto fail;
	/* A bad staple never fails the context: without one the client
	 * only looks the status up itself, while a start or reload refused
	 * over it would take TLS away (ocsp.h). */
	if (ocsp != NULL && tls_ocsp_attach(ctx, ocsp, &ocsp_error) < 0) {
		log_warn(NULL,
			 "event=ocsp state=refused file=\"%s\" error=\"%s\"",
			 ocsp, ocsp_error);
		free(ocsp_error);
	}
	if (cas != NULL && tls_client_cas_get(cas, ca_file, &ca, error_r) < 0)
		goto fail;
	if (ca != NULL)
		tls_ctx_use_client_ca(ctx, ca, ca_file);
	return ctx;

fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static struct tls_certmap_ref *tls_certmap_ref_new(struct certmap *map)
{
	struct tls_certmap_ref *ref = xcalloc(1, sizeof(*ref));

	atomic_init(&ref->refs, 1);
	ref->map = map;
	return ref;
}

static void tls_certmap_ref_drop(struct tls_certmap_ref *ref)
{
	if (ref == NULL || atomic_fetch_sub(&ref->refs, 1) > 1)
		return;
	certmap_free(ref->map);
	free(ref);
}

/* The map's errors as one message: the first, and how many there were. */
static char *tls_certmap_errors(const struct config_errors *errors)
{
	const struct config_error *e = &errors->items[0];

	if (errors->count == 0)
		return xstrdup("client_cert_map: cannot load");
	return xasprintf("%s:%d: %s%s", e->file, e->line, e->message,
			 errors->count > 1 ? " (and more errors)" : "");
}

static void tls_ctx_set_finish(struct tls_ctx_set *set)
{
	size_t i;

	for (i = 0; i < set->nsnis; i++) {
		SSL_CTX_free(set->snis[i].ctx);
		free(set->snis[i].hostname);
	}
	free(set->snis);
	SSL_CTX_free(set->def);
	tls_certmap_ref_drop(set->map);
	memset(set, 0, sizeof(*set));
}

static int tls_ctx_set_init(struct tls_ctx_set *set, const struct config *cfg,
			    char **error_r)
{
	struct config_errors errors = {NULL, 0};
	struct tls_client_cas cas;
	struct certmap *map;
	char where[512];
	size_t i;

	memset(set, 0, sizeof(*set));
	memset(&cas, 0, sizeof(cas));
	if (cfg->tls.certificate == NULL) {
		tls_config_where(cfg, where, sizeof(where));
		*error_r = xasprintf(
		    "%stls: no certificate configured in [tls]", where);
		return -1;
	}
	if (cfg->tls.client_crl != NULL &&
	    (cas.crls = tls_crls_load(cfg->tls.client_crl, error_r)) == NULL)
		return -1;
	if (cfg->tls.client_cert_map != NULL) {
		map = certmap_read(cfg->tls.client_cert_map, &errors);
		if (map == NULL) {
			*error_r = tls_certmap_errors(&errors);
			config_errors_finish(&errors);
			goto fail;
		}
		set->map = tls_certmap_ref_new(map);
	}

	set->def = tls_ctx_new(cfg, cfg->tls.certificate, cfg->tls.key,
			       cfg->tls.ocsp_response, &cas,
			       config_client_ca(cfg, NULL), error_r);
	if (set->def == NULL)
		goto fail;
	if (cfg->nsnis > 0)
		set->snis = xcalloc(cfg->nsnis, sizeof(*set->snis));
	for (i = 0; i < cfg->nsnis; i++) {
		const struct config_sni *sni = &cfg->snis[i];
		SSL_CTX *ctx = tls_ctx_new(cfg, sni->certificate, sni->key,
					   sni->ocsp_response, &cas,
					   config_client_ca(cfg, sni), error_r);

		if (ctx == NULL)
			goto fail;
		set->snis[i].hostname = xstrdup(sni->hostname);
		set->snis[i].ctx = ctx;
		set->nsnis = i + 1;
	}
	/* Each context holds its own reference on its store. */
	tls_client_cas_finish(&cas);
	return 0;

fail:
	tls_client_cas_finish(&cas);
	tls_ctx_set_finish(set);
	return -1;
}

/* ---- server ---- */

struct tls_server *tls_server_create(const struct config *cfg, char **error_r)
{
	struct tls_server *srv = xcalloc(1, sizeof(*srv));

	atomic_init(&srv->refs, 1);
	if (tls_ctx_set_init(&srv->ctxs, cfg, error_r) < 0)
		goto fail;
	pthread_mutex_init(&srv->lock, NULL);
	return srv;

fail:
	free(srv);
	return NULL;
}

int tls_server_reload(struct tls_server *srv, const struct config *cfg,
		      char **error_r)
{
	struct tls_ctx_set set, old;

	/* Files are read outside the lock: handshakes on other loops go on
	 * meanwhile with the old set. */
	if (tls_ctx_set_init(&set, cfg, error_r) < 0)
		return -1;
	pthread_mutex_lock(&srv->lock);
	old = srv->ctxs;
	srv->ctxs = set;
	pthread_mutex_unlock(&srv->lock);
	/* Live SSL objects hold their own references on the old contexts
	 * (SSL_new, SSL_set_SSL_CTX), so they keep working. */
	tls_ctx_set_finish(&old);
	return 0;
}

void tls_server_unref(struct tls_server *srv)
{
	if (atomic_fetch_sub(&srv->refs, 1) > 1)
		return;
	tls_ctx_set_finish(&srv->ctxs);
	pthread_mutex_destroy(&srv->lock);
	BIO_meth_free(srv->bio_method);
	free(srv);
}

void tls_server_destroy(struct tls_server *srv)
{
	if (srv == NULL)
		return;
	tls_server_unref(srv);
}

SSL *tls_server_ssl_new(struct tls_server *srv, struct tls_handshake *hs)
{
	SSL *ssl;

	hs->srv = srv;
	pthread_mutex_lock(&srv->lock);
	ssl = SSL_new(srv->ctxs.def);
	hs->map = srv->ctxs.map;
	if (hs->map != NULL)
		atomic_fetch_add(&hs->map->refs, 1);
	pthread_mutex_unlock(&srv->lock);
	/* SSL_new fails only when out of memory (the context is complete):
	 * abort like every other allocation, rather than hand the caller a
	 * NULL it would dereference later. */
	if (ssl == NULL)
		fatal("tls: out of memory (SSL_new)");
	SSL_set_app_data(ssl, hs);
	SSL_set_accept_state(ssl);
	if (tls_ssl_use_client_ca(ssl, hs) < 0)
		fatal("tls: out of memory (client CA names)");
	atomic_fetch_add(&srv->refs, 1);
	return ssl;
}

void tls_handshake_finish(struct tls_handshake *hs)
{
	tls_certmap_ref_drop(hs->map);
	hs->map = NULL;
}

const char *tls_handshake_login(const struct tls_handshake *hs, X509 *peer,
				int *line_r)
{
	if (hs->map == NULL)
		return NULL;
	return certmap_match(hs->map->map, peer, line_r);
}

BIO_METHOD *tls_server_bio_method(struct tls_server *srv,
				  BIO_METHOD *(*make)(void))
{
	BIO_METHOD *m;

	pthread_mutex_lock(&srv->lock);
	if (srv->bio_method == NULL)
		srv->bio_method = make();
	m = srv->bio_method;
	pthread_mutex_unlock(&srv->lock);
	return m;
}

/* ---- -t ---- */

static int tls_check_pair(const struct config *cfg, const char *cert,
			  const char *key, const char *ocsp,
			  const char *hostname, FILE *out, FILE *err)
{
	char *error = NULL, *subject;
	SSL_CTX *ctx;
	X509 *leaf;
	BIO *mem;
	char *date = NULL;
	long n;

	/* The staple is checked below, printed rather than logged. */
	ctx = tls_ctx_new(cfg, cert, key, NULL, NULL, NULL, &error);
	if (ctx == NULL) {
		fprintf(err, "%s\n", error);
		free(error);
		return -1;
	}
	leaf = SSL_CTX_get0_certificate(ctx);
	subject = tls_name_oneline(X509_get_subject_name(leaf), SIZE_MAX);
	mem = tls_mem_bio_new();
	if (ASN1_TIME_print(mem, X509_get0_notAfter(leaf)) == 1)
		n = BIO_get_mem_data(mem, &date);
	else
		n = 0;
	fprintf(out, "tls: %s: subject=%s notAfter=%.*s\n", cert,
		subject != NULL ? subject : "", (int)(n > 0 ? n : 0),
		n > 0 ? date : "");
	/* Warnings only: an expired or mismatching certificate is the
	 * admin's call, and -t must not block a restart over it. */
	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
		fprintf(err, "%s: warning: certificate has expired\n", cert);
	if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
		fprintf(err, "%s: warning: certificate is not yet valid\n",
			cert);
	if (hostname != NULL &&
	    X509_check_host(leaf, hostname, 0, 0, NULL) != 1)
		fprintf(err, "%s: warning: certificate does not name host %s\n",
			cert, hostname);
	/* A warning too: the server starts without the staple. */
	if (ocsp != NULL)
		(void)tls_ocsp_check(ctx, ocsp, out, err);
	BIO_free(mem);
	free(subject);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return 0;
}

/* One line per CRL: its issuer and nextUpdate; a warning for one past
 * it (certificates of that issuer will not verify until it is renewed). */
static void tls_check_crls(const char *file, const tls_x509_crls *crls,
			   FILE *out, FILE *err)
{
	for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
		X509_CRL *crl = sk_X509_CRL_value(crls, i);
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
		char *issuer = tls_name_oneline(X509_CRL_get_issuer(crl),
						SIZE_MAX);
		BIO *mem = tls_mem_bio_new();
		char *date = NULL;
		long n = 0;

		if (next != NULL && ASN1_TIME_print(mem, next) == 1)
			n = BIO_get_mem_data(mem, &date);
		fprintf(out, "tls: %s: CRL issuer=%s nextUpdate=%.*s\n", file,
			issuer != NULL ? issuer : "", (int)(n > 0 ? n : 0),
			n > 0 ? date : "");
		if (next != NULL && X509_cmp_current_time(next) < 0)
			fprintf(err,
				"%s: warning: the CRL of %s is past its "
				"nextUpdate: certificates it covers will not "
				"verify\n",
				file, issuer != NULL ? issuer : "");
		BIO_free(mem);
		free(issuer);
	}
}

/* The client CA files (each once), the CRLs and the map. */
static int tls_check_client_certs(const struct config *cfg, FILE *out,
				  FILE *err)
{
	struct config_errors errors = {NULL, 0};
	struct tls_client_cas cas;
	const struct tls_client_ca *ca;
	struct certmap *map;
	char *error = NULL, *subject;
	size_t before;
	int ret = 0;

	memset(&cas, 0, sizeof(cas));
	if (cfg->tls.client_crl != NULL) {
		cas.crls = tls_crls_load(cfg->tls.client_crl, &error);
		if (cas.crls == NULL) {
			fprintf(err, "%s\n", error);
			free(error);
			error = NULL;
			ret = -1;
		} else {
			tls_check_crls(cfg->tls.client_crl, cas.crls, out, err);
		}
	}
	for (size_t j = 0; j <= cfg->nsnis; j++) {
		const char *file = config_client_ca(
		    cfg, j < cfg->nsnis ? &cfg->snis[j] : NULL);

		before = cas.n;
		if (tls_client_cas_get(&cas, file, &ca, &error) < 0) {
			fprintf(err, "%s\n", error);
			free(error);
			error = NULL;
			ret = -1;
			break;
		}
		if (ca == NULL || cas.n == before)
			continue; /* none, or printed already */
		for (int i = 0; i < sk_X509_NAME_num(ca->names); i++) {
			subject = tls_name_oneline(
			    sk_X509_NAME_value(ca->names, i), SIZE_MAX);
			fprintf(out, "tls: %s: client CA subject=%s\n", file,
				subject != NULL ? subject : "");
			free(subject);
		}
	}
	tls_client_cas_finish(&cas);
	if (cfg->tls.client_cert_map != NULL) {
		map = certmap_read(cfg->tls.client_cert_map, &errors);
		if (map == NULL) {
			config_errors_print(&errors, err);
			ret = -1;
		} else {
			fprintf(out, "tls: %s: client_cert_map rules=%zu\n",
				cfg->tls.client_cert_map, certmap_count(map));
		}
		certmap_free(map);
		config_errors_finish(&errors);
	}
	return ret;
}

int tls_check_config(const struct config *cfg, FILE *out, FILE *err)
{
	char *error = NULL, where[512];
	int ret = 0;
	SSL_CTX *ctx;
	size_t j;

	if (cfg->tls.certificate == NULL && cfg->nsnis == 0)
		return 0;
	/* The settings once, not once per certificate. */
	ctx = tls_ctx_new_settings(cfg, &error);
	if (ctx == NULL) {
		fprintf(err, "%s\n", error);
		free(error);
		return -1;
	}
	SSL_CTX_free(ctx);
	if (cfg->tls.certificate == NULL) {
		tls_config_where(cfg, where, sizeof(where));
		fprintf(err, "%stls: [sni] sections need a [tls] certificate\n",
			where);
		ret = -1;
	} else if (tls_check_pair(cfg, cfg->tls.certificate, cfg->tls.key,
				  cfg->tls.ocsp_response, NULL, out, err) < 0) {
		ret = -1;
	}
	for (j = 0; j < cfg->nsnis; j++) {
		if (tls_check_pair(cfg, cfg->snis[j].certificate,
				   cfg->snis[j].key, cfg->snis[j].ocsp_response,
				   cfg->snis[j].hostname, out, err) < 0)
			ret = -1;
	}
	if (tls_check_client_certs(cfg, out, err) < 0)
		ret = -1;
	return ret;
}
