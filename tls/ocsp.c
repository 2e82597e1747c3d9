/*
 * ocsp.c - OCSP stapling from a file (see ocsp.h for the interface).
 *
 * Loading (tls_ocsp_load): read the DER file (bounded), decode it, and keep
 * it only if it would convince a client that checks it the way RFC 6960
 * §3.2 and §4.2.2.2 say: a successful basic response, signed by the issuer
 * of our certificate or by a responder that issuer delegated to (its
 * certificate issued by it, with the OCSP signing EKU), holding a "good"
 * status for our certificate's CertID, with a thisUpdate that is not in
 * the future.  What is kept is the DER bytes (sent as they are) and the
 * two times; the parsed structures are freed at once.
 *
 * Stapling (tls_ocsp_status_cb): OpenSSL calls the status callback of the
 * SSL's context at the time the server's first flight is built, after the
 * servername callback (statem_srvr.c tls_handle_status_request() reads
 * s->ctx->ext.status_cb and status_arg), so a connection switched to an
 * [sni] context staples that context's response.  The callback runs on
 * every event loop's thread at once: the staple is read-only after
 * loading, except for the one "stale" flag, which is atomic.
 *
 * Stale: a response past its nextUpdate is kept, never sent, and reported
 * once per context as "event=ocsp state=stale": at load if it is stale
 * already, else at the first handshake that asks after it went stale.  One
 * rule, whether the refresh job failed before or after the last reload;
 * "state=refused" (tls-server.c) is for files that could never be stapled.
 */
#include "tls/ocsp.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "common/log.h"
#include "common/util.h"

/* A response holds one or a few certificates' statuses and the responder's
 * certificate: a few KiB.  Anything much larger is not an OCSP response,
 * and the whole file is copied into every handshake that asks. */
#define TLS_OCSP_MAX_FILE (64 * 1024)

/* Clock skew allowed between the responder and us for thisUpdate, as
 * "openssl ocsp" allows by default (-validity_period 300). */
#define TLS_OCSP_LEEWAY_SEC 300L

/* Room for "2026-11-25T12:00:00Z". */
#define TLS_OCSP_TIME_SIZE 32

/* Typedef, because clang-format cannot parse STACK_OF(X509) *p. */
typedef STACK_OF(X509) tls_x509_list;

struct tls_ocsp_staple {
	unsigned char *der;
	size_t len;
	time_t this_update, next_update;
	char *file;		  /* for the stale warning */
	atomic_bool stale_logged; /* one warning per context */
};

static void tls_ocsp_staple_free(struct tls_ocsp_staple *staple)
{
	if (staple == NULL)
		return;
	free(staple->der);
	free(staple->file);
	free(staple);
}

/* ---- the SSL_CTX's ex_data slot ---- */

static pthread_once_t tls_ocsp_index_once = PTHREAD_ONCE_INIT;
static int tls_ocsp_index = -1;

/* OpenSSL calls this for every context as it is freed, whether or not
 * the slot was set (ptr NULL then): the staple dies with its context,
 * after the last connection holding that context is gone. */
static void tls_ocsp_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
			     int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	tls_ocsp_staple_free(ptr);
}

static void tls_ocsp_index_init(void)
{
	tls_ocsp_index =
	    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_ocsp_ex_free);
}

/* Contexts are built on the main thread today, but tls_server_reload()
 * may run beside handshakes on other threads: make the index once. */
static int tls_ocsp_ex_index(void)
{
	pthread_once(&tls_ocsp_index_once, tls_ocsp_index_init);
	if (tls_ocsp_index < 0)
		fatal("tls: out of memory (SSL_CTX_get_ex_new_index)");
	return tls_ocsp_index;
}

/* ---- small helpers ---- */

/* The reason text of the oldest error in OpenSSL's queue, or fallback. */
static const char *tls_ocsp_openssl_reason(const char *fallback)
{
	const char *reason = ERR_reason_error_string(ERR_peek_error());

	return reason != NULL ? reason : fallback;
}

static int tls_ocsp_time(const ASN1_GENERALIZEDTIME *t, time_t *time_r)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return -1;
	/* ASN1_TIME_to_tm gives UTC; timegm, unlike mktime, reads it so. */
	*time_r = timegm(&tm);
	return 0;
}

/* ISO 8601 in UTC, one token for a key=value log line. */
static const char *tls_ocsp_time_text(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)t);
	return buf;
}

/* The whole file, at most TLS_OCSP_MAX_FILE bytes, in *buf_r (malloc'd). */
static int tls_ocsp_read_file(const char *file, unsigned char **buf_r,
			      size_t *len_r, char **why_r)
{
	unsigned char *buf;
	struct stat st;
	size_t len = 0, n;
	FILE *f;

	f = fopen(file, "re"); /* "e": O_CLOEXEC */
	if (f == NULL) {
		*why_r = xasprintf("cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		*why_r = xasprintf("cannot open: %s", strerror(EISDIR));
		fclose(f);
		return -1;
	}
	/* One byte more than allowed, to tell "exactly the limit" from
	 * "larger". */
	buf = xmalloc(TLS_OCSP_MAX_FILE + 1);
	errno = 0;
	while (len <= TLS_OCSP_MAX_FILE &&
	       (n = fread(buf + len, 1, TLS_OCSP_MAX_FILE + 1 - len, f)) > 0)
		len += n;
	if (ferror(f)) {
		*why_r = xasprintf("read error: %s",
				   strerror(errno != 0 ? errno : EIO));
		goto fail;
	}
	if (len > TLS_OCSP_MAX_FILE) {
		*why_r = xasprintf("larger than %d bytes: not an OCSP response",
				   TLS_OCSP_MAX_FILE);
		goto fail;
	}
	if (len == 0) {
		*why_r = xstrdup("empty file");
		goto fail;
	}
	fclose(f);
	*buf_r = buf;
	*len_r = len;
	return 0;

fail:
	fclose(f);
	free(buf);
	return -1;
}

/* The certificate among chain that issued leaf, or NULL. */
static X509 *tls_ocsp_find_issuer(tls_x509_list *chain, X509 *leaf)
{
	int i, n = chain != NULL ? sk_X509_num(chain) : 0;

	for (i = 0; i < n; i++) {
		X509 *c = sk_X509_value(chain, i);

		if (X509_check_issued(c, leaf) == X509_V_OK)
			return c;
	}
	return NULL;
}

/* The status of leaf in bs, found by its CertID.  The CertID names a hash
 * algorithm (SHA-1 from "openssl ocsp" and most CAs, SHA-256 from some):
 * ours is built with each algorithm the response uses, since
 * OCSP_id_cmp compares it too. */
static int tls_ocsp_find_status(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer,
				int *status_r, int *reason_r,
				ASN1_GENERALIZEDTIME **thisupd_r,
				ASN1_GENERALIZEDTIME **nextupd_r)
{
	const EVP_MD *tried = NULL;
	int i, n = OCSP_resp_count(bs);

	for (i = 0; i < n; i++) {
		OCSP_SINGLERESP *single = OCSP_resp_get0(bs, i);
		ASN1_OBJECT *md_oid = NULL;
		ASN1_GENERALIZEDTIME *revtime;
		const EVP_MD *md;
		OCSP_CERTID *id;
		int found;

		if (OCSP_id_get0_info(
			NULL, &md_oid, NULL, NULL,
			(OCSP_CERTID *)OCSP_SINGLERESP_get0_id(single)) != 1)
			continue;
		md = EVP_get_digestbyobj(md_oid);
		if (md == NULL || md == tried)
			continue;
		tried = md;
		id = OCSP_cert_to_id(md, leaf, issuer);
		if (id == NULL)
			continue;
		found = OCSP_resp_find_status(bs, id, status_r, reason_r,
					      &revtime, thisupd_r, nextupd_r);
		OCSP_CERTID_free(id);
		if (found == 1)
			return 0;
	}
	return -1;
}

/* RFC 6960 §4.2.2.2: the response is signed by the CA that issued the
 * certificate, or by a responder whose certificate that CA issued with
 * id-kp-OCSPSigning.  The store holds the issuer alone, as a trust anchor
 * even when it is an intermediate (PARTIAL_CHAIN: the root is usually not
 * in the chain file, and the system store must not decide here).  The
 * chain goes in as untrusted certificates, for finding a signer the
 * response does not carry.  OpenSSL's ocsp_check_issuer() then requires
 * the signer to be the issuer of our CertID or its delegate (EKU checked
 * by ocsp_check_delegated()).  OCSP_NOEXPLICIT: a signer that is neither
 * is not rescued by OCSP-signing trust settings on the anchor.
 * OCSP_TRUSTOTHER is not used: it would make every certificate of the
 * chain a trusted signer without a chain check, wider than "the issuer or
 * its delegate". */
static int tls_ocsp_verify(OCSP_BASICRESP *bs, X509 *issuer,
			   tls_x509_list *chain, char **why_r)
{
	X509_STORE *store = X509_STORE_new();
	int ok;

	if (store == NULL || X509_STORE_add_cert(store, issuer) != 1)
		fatal("tls: out of memory (OCSP verification store)");
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	ERR_clear_error();
	ok = OCSP_basic_verify(bs, chain, store, OCSP_NOEXPLICIT);
	if (ok != 1) {
		/* The chain check's own reason ("Verify error: ...") rides
		 * in the error's data. */
		const char *data = NULL;
		int flags = 0;
		const char *reason = tls_ocsp_openssl_reason("unknown error");

		if (ERR_peek_error_data(&data, &flags) == 0 ||
		    !(flags & ERR_TXT_STRING))
			data = NULL;
		*why_r = xasprintf("signature does not verify against the "
				   "certificate's issuer: %s%s%s%s",
				   reason, data != NULL ? " (" : "",
				   data != NULL ? data : "",
				   data != NULL ? ")" : "");
	}
	X509_STORE_free(store);
	ERR_clear_error();
	return ok == 1 ? 0 : -1;
}

/* Every check of ocsp.h on file for ctx's certificate.  Returns the staple
 * (stale or not; the caller compares next_update with the clock), or NULL
 * with *why_r, malloc'd, without the file name. */
static struct tls_ocsp_staple *tls_ocsp_load(SSL_CTX *ctx, const char *file,
					     char **why_r)
{
	struct tls_ocsp_staple *staple = NULL;
	ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	tls_x509_list *chain = NULL, *extra = NULL, *all = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *leaf, *issuer;
	size_t len = 0;
	int status, reason, i;
	time_t this_update, next_update;

	leaf = SSL_CTX_get0_certificate(ctx);
	if (leaf == NULL) {
		*why_r = xstrdup("no certificate loaded to staple it for");
		return NULL;
	}
	if (tls_ocsp_read_file(file, &der, &len, why_r) < 0)
		return NULL;

	ERR_clear_error();
	p = der;
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	if (resp == NULL || p != der + len) {
		*why_r = xstrdup("not a DER OCSP response");
		goto fail;
	}
	status = OCSP_response_status(resp);
	if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		*why_r = xasprintf("responder answered %s, not successful",
				   OCSP_response_status_str(status));
		goto fail;
	}
	bs = OCSP_response_get1_basic(resp);
	if (bs == NULL) {
		*why_r = xstrdup("not a basic OCSP response");
		goto fail;
	}

	/* The issuer is the chain certificate that issued the leaf: either
	 * list, as SSL_CTX_use_certificate_chain_file() fills the first and
	 * SSL_CTX_add_extra_chain_cert() the second ("_only": the plain
	 * getter falls back to the first list when the second is empty). */
	if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1)
		chain = NULL;
	if (SSL_CTX_get_extra_chain_certs_only(ctx, &extra) != 1)
		extra = NULL;
	all = sk_X509_new_null();
	if (all == NULL)
		fatal("tls: out of memory (sk_X509_new_null)");
	for (i = 0; chain != NULL && i < sk_X509_num(chain); i++)
		if (sk_X509_push(all, sk_X509_value(chain, i)) <= 0)
			fatal("tls: out of memory (sk_X509_push)");
	for (i = 0; extra != NULL && i < sk_X509_num(extra); i++)
		if (sk_X509_push(all, sk_X509_value(extra, i)) <= 0)
			fatal("tls: out of memory (sk_X509_push)");
	issuer = tls_ocsp_find_issuer(all, leaf);
	if (issuer == NULL) {
		*why_r = xstrdup("the certificate's issuer is not in its chain "
				 "file, so the response cannot be checked");
		goto fail;
	}

	if (tls_ocsp_find_status(bs, leaf, issuer, &status, &reason, &thisupd,
				 &nextupd) < 0) {
		*why_r = xstrdup("response is not for this certificate");
		goto fail;
	}
	if (tls_ocsp_verify(bs, issuer, all, why_r) < 0)
		goto fail;
	if (status != V_OCSP_CERTSTATUS_GOOD) {
		if (status == V_OCSP_CERTSTATUS_REVOKED)
			*why_r =
			    xasprintf("certificate status is revoked (%s)",
				      reason >= 0 ? OCSP_crl_reason_str(reason)
						  : "no reason given");
		else
			*why_r = xasprintf("certificate status is %s, not good",
					   OCSP_cert_status_str(status));
		goto fail;
	}
	/* RFC 6960 §4.2.2.1: a response without nextUpdate says that newer
	 * information is available all the time, so there is no time until
	 * which it may be stapled. */
	if (nextupd == NULL) {
		*why_r = xstrdup("response has no nextUpdate");
		goto fail;
	}
	/* thisUpdate in the future (beyond the leeway) and a malformed
	 * thisUpdate are refused; nextUpdate in the past is not: that is a
	 * stale response, reported as such (file comment). */
	ERR_clear_error();
	if (OCSP_check_validity(thisupd, NULL, TLS_OCSP_LEEWAY_SEC, -1) != 1) {
		*why_r = xasprintf("thisUpdate: %s",
				   tls_ocsp_openssl_reason("invalid"));
		goto fail;
	}
	if (tls_ocsp_time(thisupd, &this_update) < 0 ||
	    tls_ocsp_time(nextupd, &next_update) < 0) {
		*why_r = xstrdup("unreadable thisUpdate or nextUpdate");
		goto fail;
	}
	if (next_update < this_update) {
		*why_r = xstrdup("nextUpdate is before thisUpdate");
		goto fail;
	}

	staple = xcalloc(1, sizeof(*staple));
	staple->der = der;
	staple->len = len;
	staple->this_update = this_update;
	staple->next_update = next_update;
	staple->file = xstrdup(file);
	atomic_init(&staple->stale_logged, false);
	der = NULL;

fail:
	sk_X509_free(all);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	free(der);
	ERR_clear_error();
	return staple;
}

static bool tls_ocsp_is_stale(const struct tls_ocsp_staple *staple, time_t now)
{
	return now >= staple->next_update;
}

static void tls_ocsp_log_stale(struct tls_ocsp_staple *staple)
{
	char next[TLS_OCSP_TIME_SIZE];

	if (atomic_exchange(&staple->stale_logged, true))
		return;
	log_warn(NULL,
		 "event=ocsp state=stale file=\"%s\" next_update=%s "
		 "reason=\"not stapled until the file is refreshed\"",
		 staple->file,
		 tls_ocsp_time_text(staple->next_update, next, sizeof(next)));
}

/* ---- stapling ---- */

/* Called only for clients that sent status_request (RFC 6066 §8), with
 * the staple of the SSL's current context as arg (file comment). */
static int tls_ocsp_status_cb(SSL *ssl, void *arg)
{
	struct tls_ocsp_staple *staple = arg;
	unsigned char *copy;

	if (staple == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	/* A stale response would make a client that checks it refuse the
	 * certificate: better none, and the client looks for itself. */
	if (tls_ocsp_is_stale(staple, time(NULL))) {
		tls_ocsp_log_stale(staple);
		return SSL_TLSEXT_ERR_NOACK;
	}
	/* OpenSSL takes the buffer and frees it with the SSL, so each
	 * handshake gets its own copy. */
	copy = OPENSSL_malloc(staple->len);
	if (copy == NULL)
		fatal("tls: out of memory (OCSP staple)");
	memcpy(copy, staple->der, staple->len);
	SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)staple->len);
	return SSL_TLSEXT_ERR_OK;
}

static void tls_ocsp_detach(SSL_CTX *ctx)
{
	int idx = tls_ocsp_ex_index();

	SSL_CTX_set_tlsext_status_cb(ctx, NULL);
	SSL_CTX_set_tlsext_status_arg(ctx, NULL);
	tls_ocsp_staple_free(SSL_CTX_get_ex_data(ctx, idx));
	SSL_CTX_set_ex_data(ctx, idx, NULL);
}

int tls_ocsp_attach(SSL_CTX *ctx, const char *file, char **error_r)
{
	struct tls_ocsp_staple *staple;
	char *why = NULL;

	tls_ocsp_detach(ctx);
	staple = tls_ocsp_load(ctx, file, &why);
	if (staple == NULL) {
		*error_r = xasprintf("%s: %s", file, why);
		free(why);
		return -1;
	}
	if (SSL_CTX_set_ex_data(ctx, tls_ocsp_ex_index(), staple) != 1)
		fatal("tls: out of memory (SSL_CTX_set_ex_data)");
	SSL_CTX_set_tlsext_status_cb(ctx, tls_ocsp_status_cb);
	SSL_CTX_set_tlsext_status_arg(ctx, staple);
	if (tls_ocsp_is_stale(staple, time(NULL)))
		tls_ocsp_log_stale(staple);
	return 0;
}

int tls_ocsp_check(SSL_CTX *ctx, const char *file, FILE *out, FILE *err)
{
	struct tls_ocsp_staple *staple;
	char this[TLS_OCSP_TIME_SIZE], next[TLS_OCSP_TIME_SIZE];
	char *why = NULL;
	int ret = 0;

	staple = tls_ocsp_load(ctx, file, &why);
	if (staple == NULL) {
		fprintf(err, "%s: warning: %s: not stapled\n", file, why);
		free(why);
		return -1;
	}
	tls_ocsp_time_text(staple->this_update, this, sizeof(this));
	tls_ocsp_time_text(staple->next_update, next, sizeof(next));
	if (tls_ocsp_is_stale(staple, time(NULL))) {
		fprintf(err,
			"%s: warning: OCSP response is stale (nextUpdate=%s): "
			"not stapled until the file is refreshed\n",
			file, next);
		ret = -1;
	} else {
		fprintf(out,
			"tls: %s: OCSP response status=good thisUpdate=%s "
			"nextUpdate=%s\n",
			file, this, next);
	}
	tls_ocsp_staple_free(staple);
	return ret;
}
