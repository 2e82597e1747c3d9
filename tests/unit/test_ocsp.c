/*
 * test_ocsp.c - OCSP stapling from a file (tls/ocsp.h) as an OpenSSL
 * client that sends status_request sees it.
 *
 * A root CA, an intermediate, leaves, OCSP responders and responses are
 * made at run time (EC P-256, OCSP_basic_sign) in a mkdtemp() directory.
 * Each rule of ocsp.h about which files are kept is one row of a table
 * (the response, whether tls_ocsp_attach keeps it, a word of its error,
 * whether a client gets it).  Handshakes run over a BIO pair, on contexts
 * built here and on a tls_server built from a hand-filled struct config
 * (the [sni] staple, a refused file, reload, -t).  Log lines (stderr) are
 * caught in a file to count the "stale" warnings.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tap.h"
#include "tls/ocsp.h"
#include "tls/tls-server.h"

/* TAP_OK evaluates its condition a second time when it fails; the checks
 * here run handshakes, so evaluate them once. */
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		bool check_ok_ = (cond);                                       \
		TAP_OK(check_ok_, __VA_ARGS__);                                \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define MAX_FILES 64
#define DER_MAX	  (128 * 1024)

/* ---- fixtures ---- */

struct fixture {
	char dir[64];
	char *files[MAX_FILES];
	size_t nfiles;

	EVP_PKEY *root_key, *inter_key, *leaf_key, *sni_key, *deep_key,
	    *responder_key, *noeku_key, *rogue_key;
	X509 *root, *inter, *leaf, *sni, *deep, *responder, *noeku, *rogue;

	/* Chains: leaf + root, leaf alone, sni + root, deep + inter. */
	const char *leaf_pem, *leaf_alone_pem, *leaf_keyfile;
	const char *sni_pem, *sni_keyfile;
	const char *deep_pem, *deep_keyfile;
};

static struct fixture fx;

static const char *fixture_path(const char *name)
{
	size_t len = strlen(fx.dir) + 1 + strlen(name) + 1;
	char *p = malloc(len);

	if (p == NULL || fx.nfiles == MAX_FILES)
		abort();
	snprintf(p, len, "%s/%s", fx.dir, name);
	fx.files[fx.nfiles++] = p;
	return p;
}

static EVP_PKEY *make_key(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");

	if (key == NULL)
		abort();
	return key;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (ext == NULL || X509_add_ext(cert, ext, -1) != 1)
		abort();
	X509_EXTENSION_free(ext);
}

/* A certificate for key with CN cn, signed by issuer (self-signed if
 * NULL); a CA if is_ca; eku an extendedKeyUsage value or NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
		       EVP_PKEY *issuer_key, bool is_ca, const char *eku,
		       long serial)
{
	X509 *cert = X509_new();
	X509 *signer;
	X509_NAME *name;

	if (cert == NULL || X509_set_version(cert, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -86400) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 30L * 86400) == NULL ||
	    X509_set_pubkey(cert, key) != 1)
		abort();
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1,
				       0) != 1)
		abort();
	if (X509_set_issuer_name(cert, issuer != NULL
					   ? X509_get_subject_name(issuer)
					   : name) != 1)
		abort();
	signer = issuer != NULL ? issuer : cert;
	add_ext(cert, signer, NID_subject_key_identifier, "hash");
	add_ext(cert, signer, NID_authority_key_identifier, "keyid");
	if (is_ca) {
		add_ext(cert, signer, NID_basic_constraints,
			"critical,CA:TRUE");
		add_ext(cert, signer, NID_key_usage,
			"critical,keyCertSign,cRLSign");
	} else {
		add_ext(cert, signer, NID_basic_constraints,
			"critical,CA:FALSE");
		add_ext(cert, signer, NID_key_usage,
			"critical,digitalSignature");
	}
	if (eku != NULL)
		add_ext(cert, signer, NID_ext_key_usage, eku);
	if (X509_sign(cert, issuer_key != NULL ? issuer_key : key,
		      EVP_sha256()) == 0)
		abort();
	return cert;
}

static void write_pem(const char *path, X509 *cert, X509 *chain, EVP_PKEY *key)
{
	BIO *bio = BIO_new_file(path, "w");

	if (bio == NULL)
		abort();
	if (cert != NULL && PEM_write_bio_X509(bio, cert) != 1)
		abort();
	if (chain != NULL && PEM_write_bio_X509(bio, chain) != 1)
		abort();
	if (key != NULL &&
	    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		abort();
	BIO_free(bio);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		abort();
}

/* The whole file into buf; its length, or -1. */
static long read_bytes(const char *path, unsigned char *buf, size_t size)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, size, f);
	fclose(f);
	return (long)n;
}

static void fixture_init(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_ocsp.XXXXXX");
	if (mkdtemp(fx.dir) == NULL)
		abort();

	fx.root_key = make_key();
	fx.root =
	    make_cert(fx.root_key, "Test Root", NULL, NULL, true, NULL, 1);
	fx.inter_key = make_key();
	fx.inter = make_cert(fx.inter_key, "Test Intermediate", fx.root,
			     fx.root_key, true, NULL, 2);
	fx.leaf_key = make_key();
	fx.leaf = make_cert(fx.leaf_key, "mail.example.org", fx.root,
			    fx.root_key, false, "serverAuth", 10);
	fx.sni_key = make_key();
	fx.sni = make_cert(fx.sni_key, "smtp.example.net", fx.root, fx.root_key,
			   false, "serverAuth", 11);
	fx.deep_key = make_key();
	fx.deep = make_cert(fx.deep_key, "deep.example.org", fx.inter,
			    fx.inter_key, false, "serverAuth", 12);
	fx.responder_key = make_key();
	fx.responder =
	    make_cert(fx.responder_key, "Test OCSP responder", fx.root,
		      fx.root_key, false, "OCSPSigning", 20);
	fx.noeku_key = make_key();
	fx.noeku = make_cert(fx.noeku_key, "Not a responder", fx.root,
			     fx.root_key, false, "serverAuth", 21);
	fx.rogue_key = make_key();
	fx.rogue =
	    make_cert(fx.rogue_key, "Rogue CA", NULL, NULL, true, NULL, 30);

	fx.leaf_pem = fixture_path("leaf.pem");
	write_pem(fx.leaf_pem, fx.leaf, fx.root, NULL);
	fx.leaf_alone_pem = fixture_path("leaf-alone.pem");
	write_pem(fx.leaf_alone_pem, fx.leaf, NULL, NULL);
	fx.leaf_keyfile = fixture_path("leaf.key");
	write_pem(fx.leaf_keyfile, NULL, NULL, fx.leaf_key);
	fx.sni_pem = fixture_path("sni.pem");
	write_pem(fx.sni_pem, fx.sni, fx.root, NULL);
	fx.sni_keyfile = fixture_path("sni.key");
	write_pem(fx.sni_keyfile, NULL, NULL, fx.sni_key);
	fx.deep_pem = fixture_path("deep.pem");
	write_pem(fx.deep_pem, fx.deep, fx.inter, NULL);
	fx.deep_keyfile = fixture_path("deep.key");
	write_pem(fx.deep_keyfile, NULL, NULL, fx.deep_key);
}

static void fixture_finish(void)
{
	size_t i;

	for (i = 0; i < fx.nfiles; i++) {
		unlink(fx.files[i]);
		free(fx.files[i]);
	}
	rmdir(fx.dir);
	EVP_PKEY_free(fx.root_key);
	EVP_PKEY_free(fx.inter_key);
	EVP_PKEY_free(fx.leaf_key);
	EVP_PKEY_free(fx.sni_key);
	EVP_PKEY_free(fx.deep_key);
	EVP_PKEY_free(fx.responder_key);
	EVP_PKEY_free(fx.noeku_key);
	EVP_PKEY_free(fx.rogue_key);
	X509_free(fx.root);
	X509_free(fx.inter);
	X509_free(fx.leaf);
	X509_free(fx.sni);
	X509_free(fx.deep);
	X509_free(fx.responder);
	X509_free(fx.noeku);
	X509_free(fx.rogue);
}

/* ---- OCSP responses ---- */

struct resp_opts {
	X509 *cert, *issuer;	 /* the CertID: default fx.leaf, fx.root */
	X509 *signer;		 /* default fx.root */
	EVP_PKEY *signer_key;	 /* default fx.root_key */
	int status;		 /* V_OCSP_CERTSTATUS_*, default good */
	long this_off, next_off; /* seconds from now; default -60, +1 day */
	bool no_next;		 /* no nextUpdate at all */
	const EVP_MD *id_md;	 /* CertID hash, default SHA-1 */
	bool no_certs;		 /* signer's certificate left out */
	int resp_status;	 /* default successful */
};

/* A DER OCSP response file named name, made as o says. */
static const char *response_file(const char *name, const struct resp_opts *o)
{
	const char *path = fixture_path(name);
	OCSP_BASICRESP *bs = NULL;
	OCSP_RESPONSE *resp;
	OCSP_CERTID *id;
	ASN1_TIME *thisupd, *nextupd = NULL, *revtime = NULL;
	unsigned char *der = NULL;
	int len;

	if (o->resp_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		resp = OCSP_response_create(o->resp_status, NULL);
		goto write;
	}
	bs = OCSP_BASICRESP_new();
	id = OCSP_cert_to_id(o->id_md != NULL ? o->id_md : EVP_sha1(),
			     o->cert != NULL ? o->cert : fx.leaf,
			     o->issuer != NULL ? o->issuer : fx.root);
	thisupd = X509_gmtime_adj(NULL, o->this_off != 0 ? o->this_off : -60);
	if (!o->no_next)
		nextupd = X509_gmtime_adj(NULL, o->next_off != 0 ? o->next_off
								 : 86400);
	if (o->status == V_OCSP_CERTSTATUS_REVOKED)
		revtime = X509_gmtime_adj(NULL, -3600);
	if (bs == NULL || id == NULL || thisupd == NULL ||
	    OCSP_basic_add1_status(bs, id, o->status,
				   o->status == V_OCSP_CERTSTATUS_REVOKED
				       ? OCSP_REVOKED_STATUS_KEYCOMPROMISE
				       : -1,
				   revtime, thisupd, nextupd) == NULL)
		abort();
	if (OCSP_basic_sign(bs, o->signer != NULL ? o->signer : fx.root,
			    o->signer_key != NULL ? o->signer_key : fx.root_key,
			    EVP_sha256(), NULL,
			    o->no_certs ? OCSP_NOCERTS : 0) != 1)
		abort();
	resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(thisupd);
	ASN1_TIME_free(nextupd);
	ASN1_TIME_free(revtime);
write:
	if (resp == NULL || (len = i2d_OCSP_RESPONSE(resp, &der)) <= 0)
		abort();
	write_bytes(path, der, (size_t)len);
	OPENSSL_free(der);
	OCSP_RESPONSE_free(resp);
	OCSP_BASICRESP_free(bs);
	return path;
}

static const struct resp_opts good = {0};

/* ---- handshakes ---- */

/* A server context for a chain and key, as tls-server.c loads them. */
static SSL_CTX *server_ctx(const char *pem, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, pem) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		abort();
	return ctx;
}

struct client_opts {
	bool no_status; /* do not send status_request */
	const char *sni;
	int version; /* max version, 0: TLS 1.3 */
};

/* Runs a handshake between srv (a server SSL, freed here) and a client
 * made as o says.  Returns the length of the staple the client got,
 * copied into buf; -1 if none; -2 if the handshake failed. */
static long staple_seen(SSL *srv, const struct client_opts *o,
			unsigned char *buf, size_t size)
{
	static const struct client_opts defaults = {0};
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	const unsigned char *resp = NULL;
	BIO *cbio, *sbio;
	SSL *cli;
	long len = -2;
	int i;

	if (o == NULL)
		o = &defaults;
	if (cctx == NULL)
		abort();
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	cli = SSL_new(cctx);
	if (cli == NULL || BIO_new_bio_pair(&cbio, 0, &sbio, 0) != 1)
		abort();
	SSL_set_bio(cli, cbio, cbio);
	SSL_set_bio(srv, sbio, sbio);
	SSL_set_connect_state(cli);
	SSL_set_accept_state(srv);
	if (o->version != 0)
		SSL_set_max_proto_version(cli, o->version);
	if (o->sni != NULL)
		SSL_set_tlsext_host_name(cli, o->sni);
	if (!o->no_status)
		SSL_set_tlsext_status_type(cli, TLSEXT_STATUSTYPE_ocsp);
	for (i = 0; i < 20; i++) {
		int rc = SSL_do_handshake(cli), rs = SSL_do_handshake(srv);

		if (rc == 1 && rs == 1) {
			len = SSL_get_tlsext_status_ocsp_resp(cli, &resp);
			if (resp == NULL || len <= 0)
				len = -1;
			else if ((size_t)len <= size)
				memcpy(buf, resp, (size_t)len);
			else
				len = -2;
			break;
		}
		if (rc != 1 && SSL_get_error(cli, rc) != SSL_ERROR_WANT_READ)
			break;
		if (rs != 1 && SSL_get_error(srv, rs) != SSL_ERROR_WANT_READ)
			break;
	}
	ERR_clear_error();
	SSL_free(cli);
	SSL_free(srv);
	SSL_CTX_free(cctx);
	return len;
}

static long ctx_staple_seen(SSL_CTX *ctx, const struct client_opts *o,
			    unsigned char *buf, size_t size)
{
	SSL *srv = SSL_new(ctx);

	if (srv == NULL)
		abort();
	return staple_seen(srv, o, buf, size);
}

/* Whether a handshake on ctx staples exactly the bytes of file. */
static bool staples_file(SSL_CTX *ctx, const struct client_opts *o,
			 const char *file)
{
	static unsigned char want[DER_MAX], got[DER_MAX];
	long wlen = read_bytes(file, want, sizeof(want));
	long glen = ctx_staple_seen(ctx, o, got, sizeof(got));

	return wlen > 0 && glen == wlen && memcmp(want, got, (size_t)wlen) == 0;
}

static bool staples_nothing(SSL_CTX *ctx, const struct client_opts *o)
{
	static unsigned char got[DER_MAX];

	return ctx_staple_seen(ctx, o, got, sizeof(got)) == -1;
}

static bool contains(const char *haystack, const char *needle)
{
	return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* ---- the log (stderr), caught in a file ---- */

struct log_capture {
	int saved;
	char path[96];
};

static void capture_start(struct log_capture *c)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "%s/stderr.XXXXXX", fx.dir);
	fd = mkstemp(c->path);
	fflush(stderr);
	c->saved = dup(2);
	if (fd < 0 || c->saved < 0 || dup2(fd, 2) < 0)
		abort();
	close(fd);
}

/* What was logged since capture_start, malloc'd. */
static char *capture_end(struct log_capture *c)
{
	static unsigned char buf[65536];
	long n;
	char *text;

	fflush(stderr);
	if (dup2(c->saved, 2) < 0)
		abort();
	close(c->saved);
	n = read_bytes(c->path, buf, sizeof(buf) - 1);
	unlink(c->path);
	text = malloc(n > 0 ? (size_t)n + 1 : 1);
	if (text == NULL)
		abort();
	memcpy(text, buf, n > 0 ? (size_t)n : 0);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

/* Prints text as TAP comment lines. */
static void diag(const char *text)
{
	const char *nl;

	while (text != NULL && *text != '\0') {
		nl = strchr(text, '\n');
		if (nl == NULL)
			nl = text + strlen(text);
		printf("# %.*s\n", (int)(nl - text), text);
		text = *nl != '\0' ? nl + 1 : nl;
	}
}

static int count(const char *text, const char *needle)
{
	int n = 0;

	while ((text = strstr(text, needle)) != NULL) {
		n++;
		text += strlen(needle);
	}
	return n;
}

/* ---- tests ---- */

struct attach_case {
	const char *what;
	const char *file;
	int ret;
	const char *error; /* a word of the error, if refused */
	bool stapled;	   /* a client asking gets the file */
};

/* Which files are kept (ocsp.h), each against the leaf's context. */
static void test_attach_keeps_only_what_a_client_would_accept(void)
{
	static unsigned char big[70 * 1024];
	struct resp_opts o;
	struct attach_case cases[24];
	size_t n = 0, i;
	const char *pem, *trailing;
	unsigned char der[DER_MAX];
	long len;

#define ROW(w, f, r, e, s) cases[n++] = (struct attach_case){w, f, r, e, s}
	ROW("good, signed by the issuer", response_file("good.der", &good), 0,
	    NULL, true);
	o = good;
	o.signer = fx.responder;
	o.signer_key = fx.responder_key;
	ROW("good, signed by a responder the issuer delegated to",
	    response_file("delegated.der", &o), 0, NULL, true);
	o = good;
	o.no_certs = true;
	ROW("good, the signer's certificate taken from the chain",
	    response_file("nocerts.der", &o), 0, NULL, true);
	o = good;
	o.id_md = EVP_sha256();
	ROW("good, a SHA-256 CertID", response_file("sha256.der", &o), 0, NULL,
	    true);
	o = good;
	o.this_off = 120;
	ROW("good, thisUpdate 2 minutes ahead (within the leeway)",
	    response_file("skew.der", &o), 0, NULL, true);
	o = good;
	o.this_off = -2 * 86400;
	o.next_off = -3600;
	ROW("stale (nextUpdate an hour ago): kept, never sent",
	    response_file("stale.der", &o), 0, NULL, false);
	o = good;
	o.signer = fx.noeku;
	o.signer_key = fx.noeku_key;
	ROW("signed by a certificate of the issuer without OCSPSigning",
	    response_file("noeku.der", &o), -1, "signature", false);
	o = good;
	o.signer = fx.rogue;
	o.signer_key = fx.rogue_key;
	ROW("signed by another CA", response_file("rogue.der", &o), -1,
	    "signature", false);
	o = good;
	o.issuer = fx.rogue;
	o.signer = fx.rogue;
	o.signer_key = fx.rogue_key;
	ROW("another CA's good status for our serial",
	    response_file("rogue-id.der", &o), -1, "not for this certificate",
	    false);
	o = good;
	o.status = V_OCSP_CERTSTATUS_REVOKED;
	ROW("revoked", response_file("revoked.der", &o), -1, "revoked", false);
	o = good;
	o.status = V_OCSP_CERTSTATUS_UNKNOWN;
	ROW("unknown", response_file("unknown.der", &o), -1, "unknown", false);
	o = good;
	o.cert = fx.sni;
	ROW("for another certificate of the same CA",
	    response_file("other.der", &o), -1, "not for this certificate",
	    false);
	o = good;
	o.no_next = true;
	ROW("no nextUpdate", response_file("nonext.der", &o), -1,
	    "no nextUpdate", false);
	o = good;
	o.this_off = 3600;
	o.next_off = 2 * 86400;
	ROW("thisUpdate an hour ahead", response_file("future.der", &o), -1,
	    "thisUpdate", false);
	o = good;
	o.resp_status = OCSP_RESPONSE_STATUS_TRYLATER;
	ROW("the responder answered tryLater",
	    response_file("trylater.der", &o), -1, "trylater", false);
	ROW("a PEM certificate, not DER", fx.leaf_pem, -1, "not a DER", false);
	pem = fixture_path("empty.der");
	write_bytes(pem, "", 0);
	ROW("an empty file", pem, -1, "empty", false);
	pem = fixture_path("big.der");
	write_bytes(pem, big, sizeof(big));
	ROW("larger than 64 KiB", pem, -1, "larger than", false);
	ROW("a missing file", fixture_path("missing.der"), -1, "cannot open",
	    false);
	trailing = fixture_path("trailing.der");
	len = read_bytes(cases[0].file, der, sizeof(der) - 1);
	der[len] = '\n';
	write_bytes(trailing, der, (size_t)len + 1);
	ROW("a good response with a byte after it", trailing, -1, "not a DER",
	    false);
#undef ROW

	for (i = 0; i < n; i++) {
		SSL_CTX *ctx = server_ctx(fx.leaf_pem, fx.leaf_keyfile);
		struct log_capture cap;
		char *error = NULL, *log;
		int ret;

		capture_start(&cap);
		ret = tls_ocsp_attach(ctx, cases[i].file, &error);
		log = capture_end(&cap);
		TAP_EQ_INT(ret, cases[i].ret, "%s: attach returns %d",
			   cases[i].what, cases[i].ret);
		if (cases[i].ret < 0) {
			CHECK(contains(error, cases[i].file) &&
				  contains(error, cases[i].error),
			      "%s: the error names the file and says \"%s\": "
			      "%s",
			      cases[i].what, cases[i].error, error);
		}
		if (cases[i].stapled)
			CHECK(staples_file(ctx, NULL, cases[i].file),
			      "%s: a client asking gets the file's bytes",
			      cases[i].what);
		else
			CHECK(staples_nothing(ctx, NULL),
			      "%s: a client asking gets no staple",
			      cases[i].what);
		if (!cases[i].stapled && cases[i].ret == 0)
			TAP_EQ_INT(count(log, "event=ocsp state=stale"), 1,
				   "%s: one stale warning at load",
				   cases[i].what);
		free(log);
		free(error);
		SSL_CTX_free(ctx);
	}
}

static void test_issuer_must_be_in_the_chain(void)
{
	SSL_CTX *ctx = server_ctx(fx.leaf_alone_pem, fx.leaf_keyfile);
	const char *file = response_file("good-alone.der", &good);
	char *error = NULL;

	TAP_EQ_INT(tls_ocsp_attach(ctx, file, &error), -1,
		   "a chain without the issuer: refused");
	CHECK(contains(error, "issuer"), "the error says why: %s", error);
	CHECK(staples_nothing(ctx, NULL), "and nothing is stapled");
	free(error);
	SSL_CTX_free(ctx);
}

/* The usual case: the leaf's issuer is an intermediate, the root is not in
 * the chain file, and the intermediate signs the responses itself (as
 * Let's Encrypt's do). */
static void test_intermediate_issuer_without_the_root(void)
{
	SSL_CTX *ctx = server_ctx(fx.deep_pem, fx.deep_keyfile);
	struct resp_opts o = good;
	const char *file;
	char *error = NULL;

	o.cert = fx.deep;
	o.issuer = fx.inter;
	o.signer = fx.inter;
	o.signer_key = fx.inter_key;
	file = response_file("deep.der", &o);
	TAP_EQ_INT(tls_ocsp_attach(ctx, file, &error), 0,
		   "intermediate issuer, no root in the chain: kept (%s)",
		   error != NULL ? error : "");
	CHECK(staples_file(ctx, NULL, file), "and stapled");
	free(error);
	error = NULL;

	/* The root signing for a certificate of the intermediate is not
	 * "the issuer or its delegate". */
	o.signer = fx.root;
	o.signer_key = fx.root_key;
	file = response_file("deep-by-root.der", &o);
	TAP_EQ_INT(tls_ocsp_attach(ctx, file, &error), -1,
		   "signed by the issuer's issuer: refused");
	CHECK(staples_nothing(ctx, NULL),
	      "and the failed attach leaves no staple behind");
	free(error);
	SSL_CTX_free(ctx);
}

static void test_only_clients_that_ask_get_a_staple(void)
{
	SSL_CTX *ctx = server_ctx(fx.leaf_pem, fx.leaf_keyfile);
	const char *file = response_file("ask.der", &good);
	struct client_opts o = {0};
	char *error = NULL;

	TAP_EQ_INT(tls_ocsp_attach(ctx, file, &error), 0, "attached");
	o.no_status = true;
	CHECK(staples_nothing(ctx, &o),
	      "TLS 1.3 without status_request: handshake, no staple");
	o.version = TLS1_2_VERSION;
	CHECK(staples_nothing(ctx, &o),
	      "TLS 1.2 without status_request: handshake, no staple");
	o.no_status = false;
	CHECK(staples_file(ctx, &o, file),
	      "TLS 1.2 with status_request: stapled");
	o.version = 0;
	CHECK(staples_file(ctx, &o, file),
	      "TLS 1.3 with status_request: stapled");
	SSL_CTX_free(ctx);
}

/* The staple belongs to its context: an SSL that outlives the owner's
 * reference still staples it, and attaching again replaces it. */
static void test_staple_lives_with_its_context(void)
{
	SSL_CTX *ctx = server_ctx(fx.leaf_pem, fx.leaf_keyfile);
	const char *first = response_file("first.der", &good);
	const char *second = response_file("second.der", &good);
	unsigned char want[DER_MAX], got[DER_MAX];
	char *error = NULL;
	long wlen, glen;
	SSL *srv;

	TAP_EQ_INT(tls_ocsp_attach(ctx, first, &error), 0, "first attached");
	TAP_EQ_INT(tls_ocsp_attach(ctx, second, &error), 0,
		   "second attached over it");
	srv = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL's reference keeps it */
	wlen = read_bytes(second, want, sizeof(want));
	glen = staple_seen(srv, NULL, got, sizeof(got));
	CHECK(wlen > 0 && glen == wlen && memcmp(want, got, (size_t)wlen) == 0,
	      "an SSL holding the last reference staples the second file");
}

/* A response that goes stale while loaded: stapled before nextUpdate,
 * then never, with one warning for the context however many clients ask. */
static void test_goes_stale_while_loaded(void)
{
	SSL_CTX *ctx = server_ctx(fx.leaf_pem, fx.leaf_keyfile);
	struct resp_opts o = good;
	struct log_capture cap;
	const char *file;
	char *error = NULL, *log;
	time_t deadline;
	bool before;

	o.next_off = 2;
	file = response_file("short.der", &o);
	capture_start(&cap);
	TAP_EQ_INT(tls_ocsp_attach(ctx, file, &error), 0,
		   "short-lived response attached");
	before = staples_file(ctx, NULL, file);
	/* nextUpdate is 2 s away; X509_gmtime_adj rounds to the second. */
	deadline = time(NULL) + 4;
	while (time(NULL) < deadline)
		usleep(100 * 1000);
	CHECK(staples_nothing(ctx, NULL), "after nextUpdate: no staple");
	CHECK(staples_nothing(ctx, NULL), "and none for the next client");
	log = capture_end(&cap);
	CHECK(before, "before nextUpdate: stapled");
	TAP_EQ_INT(count(log, "event=ocsp state=stale"), 1,
		   "one stale warning for two handshakes");
	CHECK(contains(log, file), "the warning names the file");
	diag(log);
	free(log);
	SSL_CTX_free(ctx);
}

/* ---- through tls_server: [tls] and [sni] ---- */

static struct config *config_new(const char *ocsp, const char *sni_ocsp)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		abort();
	cfg->tls.certificate = (char *)fx.leaf_pem;
	cfg->tls.key = (char *)fx.leaf_keyfile;
	cfg->tls.ocsp_response = (char *)ocsp;
	cfg->snis = calloc(1, sizeof(*cfg->snis));
	if (cfg->snis == NULL)
		abort();
	cfg->snis[0].hostname = (char *)"smtp.example.net";
	cfg->snis[0].certificate = (char *)fx.sni_pem;
	cfg->snis[0].key = (char *)fx.sni_keyfile;
	cfg->snis[0].ocsp_response = (char *)sni_ocsp;
	cfg->nsnis = 1;
	return cfg;
}

static void config_del(struct config *cfg)
{
	free(cfg->snis);
	free(cfg);
}

/* Whether a handshake on srv (SNI sni) staples exactly file's bytes, or
 * nothing if file is NULL. */
static bool server_staples(struct tls_server *srv, const char *sni,
			   const char *file)
{
	static unsigned char want[DER_MAX], got[DER_MAX];
	struct tls_handshake hs = {0};
	struct client_opts o = {.sni = sni};
	long wlen = file != NULL ? read_bytes(file, want, sizeof(want)) : -1;
	long glen =
	    staple_seen(tls_server_ssl_new(srv, &hs), &o, got, sizeof(got));

	tls_server_unref(srv); /* tls_server_ssl_new's */
	if (file == NULL)
		return glen == -1;
	return wlen > 0 && glen == wlen && memcmp(want, got, (size_t)wlen) == 0;
}

/* The servername callback moves the SSL to the [sni] context before
 * OpenSSL asks for the status, and OpenSSL asks the context the SSL is on
 * then (s->ctx->ext.status_cb): each certificate gets its own response. */
static void test_each_sni_context_staples_its_own(void)
{
	struct resp_opts o = good;
	const char *mine = response_file("srv-default.der", &good);
	const char *theirs;
	struct config *cfg;
	struct tls_server *srv;
	struct log_capture cap;
	char *error = NULL, *log;

	o.cert = fx.sni;
	theirs = response_file("srv-sni.der", &o);
	cfg = config_new(mine, theirs);
	srv = tls_server_create(cfg, &error);
	CHECK(srv != NULL, "server with two staples: created (%s)",
	      error != NULL ? error : "");
	CHECK(server_staples(srv, "smtp.example.net", theirs),
	      "SNI smtp.example.net: the [sni] response");
	CHECK(server_staples(srv, NULL, mine), "no SNI: the [tls] response");
	CHECK(server_staples(srv, "unknown.example", mine),
	      "unknown SNI: the [tls] response");
	tls_server_destroy(srv);

	/* The [tls] response for the [sni] certificate: refused there, and
	 * the server starts all the same. */
	cfg->snis[0].ocsp_response = (char *)mine;
	capture_start(&cap);
	srv = tls_server_create(cfg, &error);
	log = capture_end(&cap);
	CHECK(srv != NULL, "a mismatched [sni] response does not stop the "
			   "server");
	TAP_EQ_INT(count(log, "event=ocsp state=refused"), 1,
		   "it is logged as refused, once");
	CHECK(contains(log, "not for this certificate"), "with the reason");
	CHECK(srv != NULL && server_staples(srv, "smtp.example.net", NULL),
	      "SNI smtp.example.net: no staple");
	CHECK(srv != NULL && server_staples(srv, NULL, mine),
	      "no SNI: the [tls] response still");
	free(log);

	/* A reload with the right file gives the [sni] context its staple. */
	cfg->snis[0].ocsp_response = (char *)theirs;
	CHECK(srv != NULL && tls_server_reload(srv, cfg, &error) == 0,
	      "reload with a good [sni] response");
	CHECK(srv != NULL && server_staples(srv, "smtp.example.net", theirs),
	      "after the reload the [sni] certificate staples");
	tls_server_destroy(srv);
	free(error);
	config_del(cfg);
}

static void test_reload_replaces_a_stale_response(void)
{
	struct resp_opts o = good;
	const char *stale, *fresh = response_file("reload-fresh.der", &good);
	struct config *cfg;
	struct tls_server *srv;
	struct log_capture cap;
	char *error = NULL, *log;

	o.this_off = -3 * 86400;
	o.next_off = -2 * 86400;
	stale = response_file("reload-stale.der", &o);
	cfg = config_new(stale, NULL);
	capture_start(&cap);
	srv = tls_server_create(cfg, &error);
	CHECK(srv != NULL, "a stale response does not stop the server");
	CHECK(srv != NULL && server_staples(srv, NULL, NULL),
	      "stale: no staple");
	CHECK(srv != NULL && server_staples(srv, NULL, NULL),
	      "stale: no staple the second time either");
	cfg->tls.ocsp_response = (char *)fresh;
	CHECK(srv != NULL && tls_server_reload(srv, cfg, &error) == 0,
	      "reload with a fresh file");
	log = capture_end(&cap);
	TAP_EQ_INT(count(log, "event=ocsp state=stale"), 1,
		   "one stale warning, for the first context");
	CHECK(contains(log, "next_update="), "with the time it went stale");
	CHECK(srv != NULL && server_staples(srv, NULL, fresh),
	      "after the reload: stapled");
	free(log);
	tls_server_destroy(srv);
	free(error);
	config_del(cfg);
}

static char *check_output(const struct config *cfg, int *ret, char **errtext)
{
	char *outbuf = NULL, *errbuf = NULL;
	size_t outlen = 0, errlen = 0;
	FILE *out = open_memstream(&outbuf, &outlen);
	FILE *err = open_memstream(&errbuf, &errlen);

	if (out == NULL || err == NULL)
		abort();
	*ret = tls_check_config(cfg, out, err);
	fclose(out);
	fclose(err);
	*errtext = errbuf;
	return outbuf;
}

/* -t: the status line for a good response, a warning otherwise, and the
 * exit status left alone. */
static void test_check_config_reports_the_staple(void)
{
	struct resp_opts o = good;
	const char *mine = response_file("check-good.der", &good);
	const char *revoked;
	struct config *cfg;
	char *out, *err, expect[512];
	int ret;

	o.cert = fx.sni;
	o.status = V_OCSP_CERTSTATUS_REVOKED;
	revoked = response_file("check-revoked.der", &o);
	cfg = config_new(mine, revoked);
	out = check_output(cfg, &ret, &err);
	TAP_EQ_INT(ret, 0, "-t: a refused staple leaves the status at 0");
	snprintf(expect, sizeof(expect),
		 "tls: %s: OCSP response status=good thisUpdate=", mine);
	CHECK(contains(out, expect) && contains(out, " nextUpdate="),
	      "-t prints the status line for the good response");
	snprintf(expect, sizeof(expect), "%s: warning: ", revoked);
	CHECK(contains(err, expect) && contains(err, "revoked"),
	      "-t warns about the revoked one");
	CHECK(!contains(err, "event=ocsp"), "-t logs nothing");
	diag(out);
	diag(err);
	free(out);
	free(err);

	o = good;
	o.this_off = -3 * 86400;
	o.next_off = -2 * 86400;
	cfg->tls.ocsp_response = (char *)response_file("check-stale.der", &o);
	cfg->snis[0].ocsp_response = NULL;
	out = check_output(cfg, &ret, &err);
	TAP_EQ_INT(ret, 0, "-t: a stale staple leaves the status at 0");
	CHECK(!contains(out, "OCSP response status="),
	      "-t prints no status line for a stale response");
	snprintf(expect, sizeof(expect), "%s: warning: OCSP response is stale",
		 cfg->tls.ocsp_response);
	CHECK(contains(err, expect), "-t warns that it is stale");
	free(out);
	free(err);
	config_del(cfg);
}

int main(void)
{
	fixture_init();
	test_attach_keeps_only_what_a_client_would_accept();
	test_issuer_must_be_in_the_chain();
	test_intermediate_issuer_without_the_root();
	test_only_clients_that_ask_get_a_staple();
	test_staple_lives_with_its_context();
	test_goes_stale_while_loaded();
	test_each_sni_context_staples_its_own();
	test_reload_replaces_a_stale_response();
	test_check_config_reports_the_staple();
	fixture_finish();
	return tap_done();
}
