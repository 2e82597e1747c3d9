/*
 * test_tls.c - the TLS module against an in-memory OpenSSL client.
 *
 * Keys and certificates are made at run time (EC P-256, X509 builder) in a
 * mkdtemp() directory; struct config is filled by hand.  The client is an
 * ordinary OpenSSL SSL over two memory BIOs; pump() shuttles its ciphertext
 * into tls_conn_feed(), and cb->send puts the server's straight into the
 * client's read BIO.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tap.h"
#include "tls/tls-conn.h"
#include "tls/tls-server.h"

/* TAP_OK evaluates its condition a second time when it fails; most checks
 * here have side effects (handshakes, writes), so evaluate them once. */
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		bool check_ok_ = (cond);                                       \
		TAP_OK(check_ok_, __VA_ARGS__);                                \
		if (!check_ok_)                                                \
			printf("# condition: %s\n", #cond);                    \
	} while (0)

/* ---- OpenSSL memory accounting (memory per idle connection) ---- */

union mem_header {
	max_align_t align;
	size_t size;
};

/* Bytes OpenSSL holds right now; atomic: the threads test allocates
 * from several threads. */
static atomic_size_t mem_live;

static void *mem_malloc(size_t size, const char *file, int line)
{
	union mem_header *h = malloc(sizeof(*h) + size);

	(void)file;
	(void)line;
	if (h == NULL)
		return NULL;
	h->size = size;
	mem_live += size;
	return h + 1;
}

static void *mem_realloc(void *p, size_t size, const char *file, int line)
{
	union mem_header *h, *n;
	size_t old;

	if (p == NULL)
		return mem_malloc(size, file, line);
	h = (union mem_header *)p - 1;
	old = h->size;
	n = realloc(h, sizeof(*n) + size);
	if (n == NULL)
		return NULL;
	mem_live += size;
	mem_live -= old;
	n->size = size;
	return n + 1;
}

static void mem_free(void *p, const char *file, int line)
{
	union mem_header *h;

	(void)file;
	(void)line;
	if (p == NULL)
		return;
	h = (union mem_header *)p - 1;
	mem_live -= h->size;
	free(h);
}

/* Typedefs, because clang-format cannot parse STACK_OF(X509) *p. */
typedef STACK_OF(X509) x509_list;
typedef STACK_OF(X509_NAME) x509_name_list;

/* ---- fixtures ---- */

#define MAX_FILES 16

struct fixture {
	char dir[64];
	char *files[MAX_FILES];
	size_t nfiles;

	EVP_PKEY *ca_key, *default_key, *sni_key, *other_key, *client_key,
	    *rogue_key, *rsa_key;
	X509 *ca, *default_cert, *sni_cert, *other_cert, *client_cert,
	    *rogue_cert, *rsa_cert;

	const char *ca_pem;
	const char *default_pem, *default_keyfile; /* leaf + CA chain */
	const char *sni_pem, *sni_keyfile;
	const char *other_pem, *other_keyfile;
	const char *rsa_pem; /* an RSA certificate and its key */
	const char *missing_pem;
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

/* A certificate for key, signed by issuer (self-signed if NULL).  o may be
 * NULL; san is a DNS name or NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *o,
		       X509 *issuer, EVP_PKEY *issuer_key, bool is_ca,
		       const char *san, long serial)
{
	X509 *cert = X509_new();
	X509_NAME *name;
	char buf[300];

	if (cert == NULL || X509_set_version(cert, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 30L * 86400) == NULL ||
	    X509_set_pubkey(cert, key) != 1)
		abort();
	name = X509_get_subject_name(cert);
	if (o != NULL && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
						    (const unsigned char *)o,
						    -1, -1, 0) != 1)
		abort();
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1,
				       0) != 1)
		abort();
	if (X509_set_issuer_name(cert, issuer != NULL
					   ? X509_get_subject_name(issuer)
					   : name) != 1)
		abort();
	if (is_ca) {
		add_ext(cert, issuer != NULL ? issuer : cert,
			NID_basic_constraints, "critical,CA:TRUE");
		add_ext(cert, issuer != NULL ? issuer : cert, NID_key_usage,
			"critical,keyCertSign,cRLSign");
	}
	if (san != NULL) {
		snprintf(buf, sizeof(buf), "DNS:%s", san);
		add_ext(cert, issuer != NULL ? issuer : cert,
			NID_subject_alt_name, buf);
	}
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

static void fixture_init(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_tls.XXXXXX");
	if (mkdtemp(fx.dir) == NULL)
		abort();

	fx.ca_key = make_key();
	fx.ca = make_cert(fx.ca_key, "Test CA", "Example", NULL, NULL, true,
			  NULL, 1);
	fx.default_key = make_key();
	fx.default_cert =
	    make_cert(fx.default_key, "mail.example.org", NULL, fx.ca,
		      fx.ca_key, false, "mail.example.org", 2);
	fx.sni_key = make_key();
	fx.sni_cert = make_cert(fx.sni_key, "smtp.example.net", NULL, NULL,
				NULL, false, "smtp.example.net", 3);
	fx.other_key = make_key();
	fx.other_cert = make_cert(fx.other_key, "new.example.org", NULL, NULL,
				  NULL, false, "new.example.org", 4);
	fx.client_key = make_key();
	fx.client_cert = make_cert(fx.client_key, "client one", "Example",
				   fx.ca, fx.ca_key, false, NULL, 5);
	fx.rogue_key = make_key();
	fx.rogue_cert =
	    make_cert(fx.rogue_key, "rogue", NULL, NULL, NULL, false, NULL, 6);

	fx.ca_pem = fixture_path("ca.pem");
	write_pem(fx.ca_pem, fx.ca, NULL, NULL);
	fx.default_pem = fixture_path("default.pem");
	write_pem(fx.default_pem, fx.default_cert, fx.ca, NULL);
	fx.default_keyfile = fixture_path("default.key");
	write_pem(fx.default_keyfile, NULL, NULL, fx.default_key);
	fx.sni_pem = fixture_path("sni.pem");
	write_pem(fx.sni_pem, fx.sni_cert, NULL, NULL);
	fx.sni_keyfile = fixture_path("sni.key");
	write_pem(fx.sni_keyfile, NULL, NULL, fx.sni_key);
	/* Certificate and key in one file: key = NULL in the config. */
	fx.other_pem = fixture_path("other.pem");
	write_pem(fx.other_pem, fx.other_cert, NULL, fx.other_key);
	fx.other_keyfile = NULL;
	fx.missing_pem = fixture_path("missing.pem"); /* never written */
	/* For TLS 1.2 RSA key exchange, which has no group. */
	fx.rsa_key = EVP_RSA_gen(2048);
	if (fx.rsa_key == NULL)
		abort();
	fx.rsa_cert = make_cert(fx.rsa_key, "rsa.example.org", NULL, NULL, NULL,
				false, "rsa.example.org", 7);
	fx.rsa_pem = fixture_path("rsa.pem");
	write_pem(fx.rsa_pem, fx.rsa_cert, NULL, fx.rsa_key);
}

static void fixture_finish(void)
{
	size_t i;

	for (i = 0; i < fx.nfiles; i++) {
		unlink(fx.files[i]);
		free(fx.files[i]);
	}
	rmdir(fx.dir);
	EVP_PKEY_free(fx.ca_key);
	EVP_PKEY_free(fx.default_key);
	EVP_PKEY_free(fx.sni_key);
	EVP_PKEY_free(fx.other_key);
	EVP_PKEY_free(fx.client_key);
	EVP_PKEY_free(fx.rogue_key);
	EVP_PKEY_free(fx.rsa_key);
	X509_free(fx.ca);
	X509_free(fx.default_cert);
	X509_free(fx.sni_cert);
	X509_free(fx.other_cert);
	X509_free(fx.client_cert);
	X509_free(fx.rogue_cert);
	X509_free(fx.rsa_cert);
}

/* A config as config_load() would leave it, strings borrowed from fx (so
 * config_free() must never see it). */
static struct config *config_new(bool with_sni)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (cfg == NULL)
		abort();
	cfg->tls.certificate = (char *)fx.default_pem;
	cfg->tls.key = (char *)fx.default_keyfile;
	cfg->tls.min_version = (char *)"TLSv1.2";
	if (with_sni) {
		cfg->snis = calloc(1, sizeof(*cfg->snis));
		if (cfg->snis == NULL)
			abort();
		cfg->snis[0].hostname = (char *)"smtp.example.net";
		cfg->snis[0].certificate = (char *)fx.sni_pem;
		cfg->snis[0].key = (char *)fx.sni_keyfile;
		cfg->nsnis = 1;
	}
	return cfg;
}

static void config_del(struct config *cfg)
{
	free(cfg->snis);
	free(cfg);
}

static struct tls_server *server_new(const struct config *cfg)
{
	char *error = NULL;
	struct tls_server *srv = tls_server_create(cfg, &error);

	if (srv == NULL) {
		printf("# tls_server_create: %s\n", error);
		free(error);
	}
	return srv;
}

/* ---- a client and a server connection, joined in memory ---- */

struct client_opts {
	int min_version;
	int max_version;
	const char *sni;
	const unsigned char *alpn; /* wire format */
	unsigned int alpn_len;
	X509 *cert;
	EVP_PKEY *key;
	SSL_SESSION *session;
	const char *ciphers; /* TLS 1.2 cipher list */
	const char *groups;  /* key-exchange groups, OpenSSL's list syntax */
	bool weak;	     /* security level 0, for TLS 1.1 */
	bool verify_server;  /* the client checks our certificate (and
				trusts nothing: it refuses it) */
	bool required;	     /* the server: TLS_CLIENT_CERTS_REQUIRED */
};

struct pair {
	struct tls_conn *conn;
	SSL_CTX *cli_ctx;
	SSL *cli;
	BIO *to_cli;   /* the server's ciphertext, for the client */
	BIO *from_cli; /* the client's ciphertext, for the server */

	char *rx; /* plaintext the server received */
	size_t rx_len;
	const char *reply;    /* written from inside cb->plaintext */
	int plain_calls;      /* cb->plaintext calls */
	const char *greeting; /* written from inside cb->handshake_done */
	enum tls_result reply_result;
	int handshakes;
	size_t sends;
	size_t max_send;
	enum tls_result result; /* of the last tls_conn_feed() */

	/* While watch_plain (set only around one tls_conn_feed(), when the
	 * buffer is known to be live): the buffer the last cb->plaintext was
	 * given, and whether the first cb->send after that callback found it
	 * all zero. */
	bool watch_plain;
	const char *plain;
	size_t plain_len;
	bool plain_checked;
	bool plain_wiped;
};

static void pair_send_cb(void *arg, const char *data, size_t len)
{
	struct pair *p = arg;

	p->sends++;
	/* Only after the callback has returned: while it runs (a reply
	 * written from inside it) the plaintext is still the callee's. */
	if (p->watch_plain && p->plain != NULL && !p->plain_checked) {
		p->plain_checked = true;
		p->plain_wiped = true;
		for (size_t i = 0; i < p->plain_len; i++)
			if (p->plain[i] != '\0')
				p->plain_wiped = false;
	}
	if (len > p->max_send)
		p->max_send = len;
	if (BIO_write(p->to_cli, data, (int)len) != (int)len)
		abort();
}

static void pair_plaintext_cb(void *arg, const char *data, size_t len)
{
	struct pair *p = arg;

	p->plain_calls++;
	p->rx = realloc(p->rx, p->rx_len + len + 1);
	if (p->rx == NULL)
		abort();
	memcpy(p->rx + p->rx_len, data, len);
	p->rx_len += len;
	p->rx[p->rx_len] = '\0';
	if (p->watch_plain) {
		p->plain = data;
		p->plain_len = len;
		p->plain_checked = false;
	}
	if (p->reply != NULL)
		p->reply_result =
		    tls_conn_write(p->conn, p->reply, strlen(p->reply));
}

static void pair_handshake_cb(void *arg)
{
	struct pair *p = arg;

	p->handshakes++;
	if (p->greeting != NULL)
		tls_conn_write(p->conn, p->greeting, strlen(p->greeting));
}

static const struct tls_conn_callbacks pair_callbacks = {
    .send = pair_send_cb,
    .plaintext = pair_plaintext_cb,
    .handshake_done = pair_handshake_cb,
};

static void pair_init(struct pair *p, struct tls_server *srv,
		      const struct client_opts *o)
{
	static const struct client_opts defaults = {0};

	if (o == NULL)
		o = &defaults;
	memset(p, 0, sizeof(*p));
	p->conn = tls_conn_create(srv,
				  o->required ? TLS_CLIENT_CERTS_REQUIRED
					      : TLS_CLIENT_CERTS_OPTIONAL,
				  &pair_callbacks, p);
	p->cli_ctx = SSL_CTX_new(TLS_client_method());
	if (p->conn == NULL || p->cli_ctx == NULL)
		abort();
	SSL_CTX_set_verify(p->cli_ctx, SSL_VERIFY_NONE, NULL);
	p->cli = SSL_new(p->cli_ctx);
	p->to_cli = BIO_new(BIO_s_mem());
	p->from_cli = BIO_new(BIO_s_mem());
	if (p->cli == NULL || p->to_cli == NULL || p->from_cli == NULL)
		abort();
	SSL_set_bio(p->cli, p->to_cli, p->from_cli);
	SSL_set_connect_state(p->cli);
	if (o->weak) {
		SSL_set_security_level(p->cli, 0);
		SSL_set_cipher_list(p->cli, "DEFAULT:@SECLEVEL=0");
	}
	if (o->min_version != 0)
		SSL_set_min_proto_version(p->cli, o->min_version);
	if (o->max_version != 0)
		SSL_set_max_proto_version(p->cli, o->max_version);
	if (o->sni != NULL)
		SSL_set_tlsext_host_name(p->cli, o->sni);
	if (o->alpn != NULL)
		SSL_set_alpn_protos(p->cli, o->alpn, o->alpn_len);
	if (o->cert != NULL) {
		SSL_use_certificate(p->cli, o->cert);
		SSL_use_PrivateKey(p->cli, o->key);
	}
	if (o->session != NULL)
		SSL_set_session(p->cli, o->session);
	if (o->ciphers != NULL)
		SSL_set_cipher_list(p->cli, o->ciphers);
	if (o->groups != NULL)
		SSL_set1_groups_list(p->cli, o->groups);
	if (o->verify_server)
		SSL_set_verify(p->cli, SSL_VERIFY_PEER, NULL);
}

static void pair_finish(struct pair *p)
{
	tls_conn_destroy(p->conn);
	SSL_free(p->cli); /* frees both BIOs */
	SSL_CTX_free(p->cli_ctx);
	free(p->rx);
}

/* Moves the client's ciphertext to the server until neither side has
 * anything more to say.  Returns the last tls_conn_feed() result. */
static enum tls_result pump(struct pair *p)
{
	char buf[32768];
	int n, i;
	bool moved;

	p->result = TLS_OK;
	for (i = 0; i < 100; i++) {
		if (!SSL_is_init_finished(p->cli))
			SSL_do_handshake(p->cli);
		moved = false;
		while ((n = BIO_read(p->from_cli, buf, sizeof(buf))) > 0) {
			moved = true;
			p->result = tls_conn_feed(p->conn, buf, (size_t)n);
			if (p->result != TLS_OK)
				goto out;
		}
		if (!moved)
			break;
	}
out:
	ERR_clear_error();
	return p->result;
}

static bool pair_handshake(struct pair *p)
{
	return pump(p) == TLS_OK && SSL_is_init_finished(p->cli) &&
	       tls_conn_handshake_done(p->conn);
}

/* Everything the client can read now, NUL-terminated. */
static size_t client_read(struct pair *p, char *buf, size_t size)
{
	size_t total = 0, n;

	while (total + 1 < size &&
	       SSL_read_ex(p->cli, buf + total, size - 1 - total, &n) == 1)
		total += n;
	buf[total] = '\0';
	ERR_clear_error();
	return total;
}

static bool client_write(struct pair *p, const char *data, size_t len)
{
	size_t n;

	while (len > 0) {
		if (SSL_write_ex(p->cli, data, len, &n) != 1)
			return false;
		data += n;
		len -= n;
	}
	return pump(p) == TLS_OK;
}

/* The CN of the certificate the client was shown. */
static const char *client_seen_cn(struct pair *p, char *buf, size_t size)
{
	X509 *peer = SSL_get0_peer_certificate(p->cli);

	buf[0] = '\0';
	if (peer == NULL ||
	    X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
				      NID_commonName, buf, (int)size) < 0)
		return "(none)";
	return buf;
}

static bool contains(const char *haystack, const char *needle)
{
	return haystack != NULL && strstr(haystack, needle) != NULL;
}

/* ---- tests ---- */

static void test_handshake_tls13_and_plaintext_both_ways(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	const size_t big = 100000;
	char buf[256], cn[128], *data, *back;
	x509_list *chain;
	struct pair p;
	size_t i;
	bool ok;

	CHECK(srv != NULL, "tls_server_create with a default certificate");
	pair_init(&p, srv, NULL);
	p.reply = "250 ok\r\n";
	ok = pair_handshake(&p);
	CHECK(ok, "TLS 1.3 handshake completes");
	TAP_EQ_INT(p.handshakes, 1, "handshake_done called once");
	TAP_EQ_STR(tls_conn_version(p.conn), "TLSv1.3", "version TLSv1.3");
	CHECK(strcmp(tls_conn_cipher(p.conn), "(NONE)") != 0,
	      "a cipher is reported: %s", tls_conn_cipher(p.conn));
	CHECK(tls_conn_sni(p.conn) == NULL, "no SNI sent, none reported");
	CHECK(!tls_conn_sni_matched(p.conn), "no SNI, no SNI match");
	CHECK(!tls_conn_resumed(p.conn), "first handshake is not resumed");
	CHECK(tls_conn_peer_subject(p.conn) == NULL,
	      "no client_ca, no peer subject");
	TAP_EQ_STR(client_seen_cn(&p, cn, sizeof(cn)), "mail.example.org",
		   "client sees the default certificate");
	chain = SSL_get_peer_cert_chain(p.cli);
	TAP_EQ_INT(chain != NULL ? sk_X509_num(chain) : 0, 2,
		   "the whole PEM chain (leaf + CA) is sent");
	TAP_EQ_INT(tls_conn_buffered_bytes(p.conn), 0,
		   "idle after the handshake: output accumulator empty");
	CHECK(!tls_conn_has_pending(p.conn),
	      "idle after the handshake: SSL_has_pending is 0");

	ok = client_write(&p, "EHLO x\r\n", 8);
	CHECK(ok, "client writes EHLO");
	TAP_EQ_STR(p.rx, "EHLO x\r\n", "server receives the plaintext");
	TAP_EQ_INT(p.reply_result, TLS_OK,
		   "tls_conn_write from inside cb->plaintext succeeds");
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "250 ok\r\n",
		   "client reads the reply written inside the callback");

	p.reply = NULL;
	TAP_EQ_INT(tls_conn_write(p.conn, "hello\r\n", 7), TLS_OK,
		   "tls_conn_write outside a callback");
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "hello\r\n", "client reads it");
	TAP_EQ_INT(tls_conn_buffered_bytes(p.conn), 0,
		   "no output buffer held after a write");

	/* Several records each way. */
	data = malloc(big);
	back = malloc(big + 1);
	if (data == NULL || back == NULL)
		abort();
	for (i = 0; i < big; i++)
		data[i] = (char)('a' + i % 26);
	p.rx_len = 0;
	ok = client_write(&p, data, big);
	CHECK(ok, "client writes 100000 bytes");
	CHECK(p.rx_len == big && memcmp(p.rx, data, big) == 0,
	      "server receives all 100000 bytes in order");
	p.max_send = 0;
	TAP_EQ_INT(tls_conn_write(p.conn, data, big), TLS_OK,
		   "server writes 100000 bytes");
	ok = client_read(&p, back, big + 1) == big &&
	     memcmp(back, data, big) == 0;
	CHECK(ok, "client receives all 100000 bytes in order");
	CHECK(p.max_send <= (size_t)17 * 1024,
	      "ciphertext goes out about a record at a time (largest send "
	      "%zu bytes)",
	      p.max_send);
	TAP_EQ_INT(tls_conn_buffered_bytes(p.conn), 0,
		   "idle after bulk data: output accumulator empty");
	CHECK(!tls_conn_has_pending(p.conn),
	      "idle after bulk data: SSL_has_pending is 0");
	free(data);
	free(back);

	/* close_notify from the client. */
	SSL_shutdown(p.cli);
	TAP_EQ_INT(pump(&p), TLS_CLOSED, "client close_notify -> TLS_CLOSED");
	TAP_EQ_INT(tls_conn_feed(p.conn, "x", 1), TLS_CLOSED,
		   "input after close_notify is ignored");
	p.sends = 0;
	tls_conn_shutdown(p.conn);
	CHECK(p.sends == 1, "tls_conn_shutdown sends our close_notify");
	tls_conn_shutdown(p.conn);
	CHECK(p.sends == 1, "a second tls_conn_shutdown sends nothing");
	ok = SSL_read_ex(p.cli, buf, sizeof(buf), &i) == 0 &&
	     SSL_get_error(p.cli, 0) == SSL_ERROR_ZERO_RETURN;
	CHECK(ok, "client sees our close_notify");
	ERR_clear_error();

	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_write_from_handshake_done(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;
	char buf[64], flight[8192];
	size_t sends;
	int len;

	pair_init(&p, srv, NULL);
	p.greeting = "220 mail.example.org ESMTP\r\n";
	/* Step by step: the ClientHello, then the client's Finished. */
	SSL_do_handshake(p.cli);
	len = BIO_read(p.from_cli, flight, sizeof(flight));
	CHECK(len > 0 && tls_conn_feed(p.conn, flight, (size_t)len) == TLS_OK,
	      "implicit TLS: the ClientHello");
	CHECK(SSL_do_handshake(p.cli) == 1, "implicit TLS: the client is done");
	len = BIO_read(p.from_cli, flight, sizeof(flight));
	sends = p.sends;
	CHECK(len > 0 && tls_conn_feed(p.conn, flight, (size_t)len) == TLS_OK &&
		  tls_conn_handshake_done(p.conn),
	      "implicit TLS: handshake completes");
	TAP_EQ_INT(p.sends - sends, 1,
		   "the session tickets and the greeting leave in one send");
	ERR_clear_error();
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "220 mail.example.org ESMTP\r\n",
		   "a greeting written from cb->handshake_done arrives");
	CHECK(SSL_SESSION_is_resumable(SSL_get_session(p.cli)) == 1,
	      "the session tickets arrived in front of it");
	TAP_EQ_INT(tls_conn_buffered_bytes(p.conn), 0,
		   "implicit TLS: nothing left buffered");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_pipelined_records_arrive_together(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;
	char buf[64];
	size_t n;

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "pipelining: handshake");
	p.reply = "250 ok\r\n";
	/* Three records in one tls_conn_feed() reach the owner in one
	 * cb->plaintext (what one socket read brought, scanned and relayed
	 * at once); a reply written from inside it leaves. */
	SSL_write_ex(p.cli, "MAIL FROM:<a@b>\r\n", 17, &n);
	SSL_write_ex(p.cli, "RCPT TO:<c@d>\r\n", 15, &n);
	SSL_write_ex(p.cli, "DATA\r\n", 6, &n);
	p.plain_calls = 0;
	CHECK(pump(&p) == TLS_OK, "pipelining: one feed");
	TAP_EQ_STR(p.rx, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
		   "pipelining: all three commands arrive in order");
	TAP_EQ_INT(p.plain_calls, 1, "pipelining: in one callback");
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "250 ok\r\n", "pipelining: the reply arrives");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

/* Records before a close_notify in the same feed reach the owner before
 * the feed reports the close; a reply written for them still leaves. */
static void test_records_then_close_notify(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;
	char buf[64];
	size_t n;

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "records+close: handshake");
	p.reply = "221 bye\r\n";
	SSL_write_ex(p.cli, "QUIT\r\n", 6, &n);
	(void)SSL_shutdown(p.cli);
	TAP_EQ_INT(pump(&p), TLS_CLOSED, "records+close: the feed reports the close");
	TAP_EQ_STR(p.rx, "QUIT\r\n", "records+close: the record came first");
	TAP_EQ_INT(p.reply_result, TLS_OK,
		   "records+close: the reply written for it succeeds");
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "221 bye\r\n", "records+close: the client reads it");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

/* A feed of more than a batch (TLS_PLAIN_BATCH, sixteen records) is
 * handed over in batches, every byte in order: 18 records of ciphertext
 * in one tls_conn_feed() (a worker's 256 KiB read brings about as much)
 * reach the owner in two callbacks, 16 records and then 2. */
static void test_large_feed_in_batches(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	const size_t big = 17 * 16384 + 100;
	struct pair p;
	char *data, *cipher;
	size_t i, n, cipher_len = 0;
	int len;

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "batches: handshake");
	data = malloc(big);
	cipher = malloc(2 * big);
	if (data == NULL || cipher == NULL)
		abort();
	for (i = 0; i < big; i++)
		data[i] = (char)('a' + i % 26);
	CHECK(SSL_write_ex(p.cli, data, big, &n) == 1 && n == big,
	      "batches: client writes %zu bytes", big);
	while ((len = BIO_read(p.from_cli, cipher + cipher_len,
			       (int)(2 * big - cipher_len))) > 0)
		cipher_len += (size_t)len;
	p.plain_calls = 0;
	TAP_EQ_INT(tls_conn_feed(p.conn, cipher, cipher_len), TLS_OK,
		   "batches: one feed of %zu bytes", cipher_len);
	TAP_EQ_INT(p.rx_len, big, "batches: every byte arrives");
	CHECK(p.rx != NULL && memcmp(p.rx, data, big) == 0,
	      "batches: in order");
	TAP_EQ_INT(p.plain_calls, 2,
		   "batches: two callbacks for eighteen records");
	free(cipher);
	free(data);
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

/* Dovecot's smtp_command_parser_clear(): a record can carry AUTH
 * credentials, so once cb->plaintext has taken them the buffer they were
 * decrypted into holds nothing.  The TLS 1.2 client asks to renegotiate
 * after its AUTH line, so that the server has something to send (its
 * no_renegotiation warning) at the end of the same tls_conn_feed(), while
 * the buffer is still live, and pair_send_cb looks at it then. */
static void test_plaintext_wiped_after_callback(void)
{
	static const char auth[] =
	    "AUTH PLAIN AGFsaWNlAGhvcnNlYmF0dGVyeQ==\r\n";
	const struct client_opts o = {.max_version = TLS1_2_VERSION};
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;
	char buf[8192];
	size_t n;
	int len;

	pair_init(&p, srv, &o);
	CHECK(pair_handshake(&p), "wipe: handshake");
	CHECK(SSL_write_ex(p.cli, auth, sizeof(auth) - 1, &n) == 1 &&
		  SSL_renegotiate(p.cli) == 1,
	      "wipe: client sends AUTH PLAIN and asks to renegotiate");
	SSL_do_handshake(p.cli); /* the ClientHello; it waits for an answer */
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	p.watch_plain = true;
	CHECK(len > 0 && tls_conn_feed(p.conn, buf, (size_t)len) == TLS_OK,
	      "wipe: both records in one tls_conn_feed");
	p.watch_plain = false; /* the buffer is gone now */
	TAP_EQ_STR(p.rx, auth, "wipe: the AUTH line is delivered");
	CHECK(p.plain_checked, "wipe: the server sends after the callback");
	CHECK(p.plain_wiped,
	      "wipe: the decrypted AUTH line is zeroed once the callback "
	      "returned");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

/* The client's Finished and its first command in one segment: the
 * handshake ends and the plaintext is delivered in the same call. */
static void test_handshake_and_data_in_one_feed(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;
	char buf[8192];
	size_t n;
	int len;

	pair_init(&p, srv, NULL);
	SSL_do_handshake(p.cli); /* ClientHello */
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	CHECK(len > 0 && tls_conn_feed(p.conn, buf, (size_t)len) == TLS_OK,
	      "one feed: ClientHello accepted");
	CHECK(SSL_do_handshake(p.cli) == 1, "one feed: client done");
	CHECK(SSL_write_ex(p.cli, "EHLO x\r\n", 8, &n) == 1,
	      "one feed: client writes at once");
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	CHECK(len > 0 && tls_conn_feed(p.conn, buf, (size_t)len) == TLS_OK,
	      "one feed: Finished + EHLO in a single tls_conn_feed");
	TAP_EQ_INT(p.handshakes, 1, "one feed: handshake_done called");
	TAP_EQ_STR(p.rx, "EHLO x\r\n", "one feed: EHLO delivered too");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_ciphertext_one_byte_at_a_time(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	enum tls_result res = TLS_OK;
	struct pair p;
	char buf[8192];
	int i, len, j;
	size_t n;

	pair_init(&p, srv, NULL);
	for (i = 0; i < 10 && res == TLS_OK && !tls_conn_handshake_done(p.conn);
	     i++) {
		SSL_do_handshake(p.cli);
		len = BIO_read(p.from_cli, buf, sizeof(buf));
		for (j = 0; j < len && res == TLS_OK; j++)
			res = tls_conn_feed(p.conn, buf + j, 1);
	}
	ERR_clear_error();
	CHECK(res == TLS_OK && tls_conn_handshake_done(p.conn),
	      "byte by byte: handshake completes");
	SSL_write_ex(p.cli, "NOOP\r\n", 6, &n);
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	for (j = 0; j + 1 < len && res == TLS_OK; j++)
		res = tls_conn_feed(p.conn, buf + j, 1);
	CHECK(res == TLS_OK && p.rx_len == 0,
	      "byte by byte: nothing delivered before the record is complete");
	CHECK(len > 0 && tls_conn_feed(p.conn, buf + len - 1, 1) == TLS_OK,
	      "byte by byte: last byte");
	TAP_EQ_STR(p.rx, "NOOP\r\n", "byte by byte: the record delivered");
	TAP_EQ_INT(tls_conn_buffered_bytes(p.conn), 0,
		   "byte by byte: nothing buffered by the conn");
	CHECK(!tls_conn_has_pending(p.conn),
	      "byte by byte: nothing left inside OpenSSL");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_handshake_tls12(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct client_opts o = {.max_version = TLS1_2_VERSION};
	struct pair p;
	char buf[64];

	pair_init(&p, srv, &o);
	p.reply = "250 ok\r\n";
	CHECK(pair_handshake(&p), "TLS 1.2 handshake completes");
	TAP_EQ_STR(tls_conn_version(p.conn), "TLSv1.2", "version TLSv1.2");
	CHECK(client_write(&p, "NOOP\r\n", 6), "TLS 1.2: client writes");
	TAP_EQ_STR(p.rx, "NOOP\r\n", "TLS 1.2: server receives");
	client_read(&p, buf, sizeof(buf));
	TAP_EQ_STR(buf, "250 ok\r\n", "TLS 1.2: client reads the reply");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_tls11_client_refused(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct client_opts o = {.min_version = TLS1_VERSION,
				.max_version = TLS1_1_VERSION,
				.weak = true};
	struct pair p;

	pair_init(&p, srv, &o);
	TAP_EQ_INT(pump(&p), TLS_ERROR, "a TLS 1.1 client is refused");
	TAP_EQ_STR(tls_conn_error(p.conn), "unsupported protocol",
		   "reason: unsupported protocol");
	TAP_EQ_INT(p.handshakes, 0, "handshake_done not called");
	CHECK(!tls_conn_handshake_done(p.conn), "handshake not done");
	CHECK(p.sends > 0, "an alert is sent");
	TAP_EQ_INT(tls_conn_feed(p.conn, "\x16", 1), TLS_ERROR,
		   "a failed connection stays failed");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_min_version_and_ciphers(void)
{
	struct config *cfg = config_new(false);
	struct client_opts o12 = {.max_version = TLS1_2_VERSION};
	struct client_opts nocipher = {.max_version = TLS1_2_VERSION,
				       .ciphers =
					   "ECDHE-ECDSA-CHACHA20-POLY1305"};
	struct tls_server *srv;
	char *error = NULL;
	struct pair p;

	cfg->tls.min_version = (char *)"TLSv1.3";
	srv = server_new(cfg);
	pair_init(&p, srv, &o12);
	TAP_EQ_INT(pump(&p), TLS_ERROR,
		   "min_version TLSv1.3 refuses a TLS 1.2 client");
	TAP_EQ_STR(tls_conn_error(p.conn), "unsupported protocol",
		   "reason: unsupported protocol");
	pair_finish(&p);
	tls_server_destroy(srv);

	cfg->tls.min_version = NULL;
	cfg->tls.ciphers = (char *)"ECDHE-ECDSA-AES128-GCM-SHA256";
	srv = server_new(cfg);
	CHECK(srv != NULL, "min_version NULL means TLSv1.2; ciphers set");
	pair_init(&p, srv, &nocipher);
	TAP_EQ_INT(pump(&p), TLS_ERROR, "no common TLS 1.2 cipher: refused");
	TAP_EQ_STR(tls_conn_error(p.conn), "no shared cipher",
		   "reason: no shared cipher");
	pair_finish(&p);
	pair_init(&p, srv, &o12);
	CHECK(pair_handshake(&p), "a client with the configured cipher");
	TAP_EQ_STR(tls_conn_cipher(p.conn), "ECDHE-ECDSA-AES128-GCM-SHA256",
		   "the configured cipher is used");
	pair_finish(&p);
	tls_server_destroy(srv);

	cfg->tls.ciphers = (char *)"NO-SUCH-CIPHER";
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, "NO-SUCH-CIPHER"),
	      "a bad cipher list is an error: %s", error);
	free(error);
	error = NULL;
	cfg->tls.ciphers = NULL;
	cfg->tls.ciphersuites = (char *)"TLS_NOPE";
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, "TLS_NOPE"),
	      "a bad ciphersuites list is an error: %s", error);
	free(error);
	error = NULL;
	cfg->tls.ciphersuites = NULL;
	cfg->tls.min_version = (char *)"SSLv3";
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, "min_version"),
	      "a bad min_version is an error: %s", error);
	free(error);
	config_del(cfg);
}

static void test_sni_chooses_certificate(void)
{
	static const struct {
		const char *sni;
		const char *cn;
		bool matched;
	} cases[] = {
	    {"smtp.example.net", "smtp.example.net", true},
	    {"SMTP.Example.NET", "smtp.example.net", true},
	    {"unknown.example", "mail.example.org", false},
	    {"example.net", "mail.example.org", false},
	};
	struct config *cfg = config_new(true);
	struct tls_server *srv = server_new(cfg);
	struct client_opts o = {0};
	struct pair p;
	char cn[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *sni = cases[i].sni;

		o.sni = sni;
		pair_init(&p, srv, &o);
		CHECK(pair_handshake(&p), "SNI %s: handshake", sni);
		TAP_EQ_STR(client_seen_cn(&p, cn, sizeof(cn)), cases[i].cn,
			   "SNI %s: the expected certificate", sni);
		TAP_EQ_STR(tls_conn_sni(p.conn), sni,
			   "SNI %s: tls_conn_sni reports it", sni);
		TAP_EQ_INT(tls_conn_sni_matched(p.conn), cases[i].matched,
			   "SNI %s: matched=%d", sni, cases[i].matched);
		pair_finish(&p);
	}
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_alpn_requires_smtp(void)
{
	static const unsigned char http[] = "\x08http/1.1";
	static const unsigned char h2_smtp[] = "\x02h2\x04smtp";
	struct config *cfg = config_new(true);
	struct tls_server *srv = server_new(cfg);
	struct client_opts o = {.alpn = http, .alpn_len = sizeof(http) - 1};
	const unsigned char *sel;
	unsigned int sel_len;
	struct pair p;
	unsigned long e;

	pair_init(&p, srv, &o);
	TAP_EQ_INT(pump(&p), TLS_ERROR, "ALPN [http/1.1]: refused");
	TAP_EQ_STR(tls_conn_error(p.conn), "ALPN offered without smtp",
		   "ALPN [http/1.1]: reason");
	SSL_do_handshake(p.cli);
	e = ERR_peek_error();
	TAP_EQ_INT(ERR_GET_REASON(e), SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL,
		   "ALPN [http/1.1]: client gets no_application_protocol");
	ERR_clear_error();
	pair_finish(&p);

	/* The same through an SNI context. */
	o.sni = "smtp.example.net";
	pair_init(&p, srv, &o);
	TAP_EQ_INT(pump(&p), TLS_ERROR, "ALPN [http/1.1] with SNI: refused");
	pair_finish(&p);

	o.alpn = h2_smtp;
	o.alpn_len = sizeof(h2_smtp) - 1;
	o.sni = NULL;
	pair_init(&p, srv, &o);
	CHECK(pair_handshake(&p), "ALPN [h2, smtp]: accepted");
	SSL_get0_alpn_selected(p.cli, &sel, &sel_len);
	CHECK(sel_len == 4 && memcmp(sel, "smtp", 4) == 0,
	      "ALPN [h2, smtp]: smtp selected");
	pair_finish(&p);

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "no ALPN: accepted");
	SSL_get0_alpn_selected(p.cli, &sel, &sel_len);
	TAP_EQ_INT(sel_len, 0, "no ALPN: none selected");
	pair_finish(&p);

	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_reload(void)
{
	struct config *cfg1 = config_new(true);
	struct config *cfg2 = config_new(false);
	struct config *cfg3 = config_new(false);
	struct tls_server *srv = server_new(cfg1);
	struct pair a, b, c, d;
	char *error = NULL;
	char buf[64], cn[128];

	cfg2->tls.certificate = (char *)fx.other_pem;
	cfg2->tls.key = NULL; /* in the certificate file */
	cfg3->tls.certificate = (char *)fx.missing_pem;

	pair_init(&a, srv, NULL);
	CHECK(pair_handshake(&a), "reload: connection A before the reload");
	pair_init(&b, srv, NULL); /* created, no handshake yet */

	TAP_EQ_INT(tls_server_reload(srv, cfg2, &error), 0,
		   "reload with new certificates succeeds");
	free(error);
	error = NULL;

	pair_init(&c, srv, NULL);
	CHECK(pair_handshake(&c), "reload: new connection C");
	TAP_EQ_STR(client_seen_cn(&c, cn, sizeof(cn)), "new.example.org",
		   "reload: C gets the new certificate");
	CHECK(pair_handshake(&b), "reload: B, created before, handshakes");
	TAP_EQ_STR(client_seen_cn(&b, cn, sizeof(cn)), "new.example.org",
		   "reload: B gets the new certificate too");

	a.reply = "250 still here\r\n";
	CHECK(client_write(&a, "NOOP\r\n", 6) && strcmp(a.rx, "NOOP\r\n") == 0,
	      "reload: A still receives");
	client_read(&a, buf, sizeof(buf));
	TAP_EQ_STR(buf, "250 still here\r\n", "reload: A still sends");

	TAP_EQ_INT(tls_server_reload(srv, cfg3, &error), -1,
		   "reload with a missing certificate fails");
	CHECK(contains(error, fx.missing_pem), "the error names the file: %s",
	      error);
	free(error);
	pair_init(&d, srv, NULL);
	CHECK(pair_handshake(&d), "after a failed reload: handshake");
	TAP_EQ_STR(client_seen_cn(&d, cn, sizeof(cn)), "new.example.org",
		   "after a failed reload: the previous set stays");

	/* Live connections outlive the server object. */
	tls_server_destroy(srv);
	a.reply = NULL;
	a.rx_len = 0;
	CHECK(client_write(&a, "QUIT\r\n", 6) &&
		  strcmp(a.rx, "QUIT\r\n") == 0 &&
		  tls_conn_write(a.conn, "221 bye\r\n", 9) == TLS_OK,
	      "a connection keeps working after tls_server_destroy");
	client_read(&a, buf, sizeof(buf));
	TAP_EQ_STR(buf, "221 bye\r\n", "and its client reads the reply");

	pair_finish(&a);
	pair_finish(&b);
	pair_finish(&c);
	pair_finish(&d);
	config_del(cfg1);
	config_del(cfg2);
	config_del(cfg3);
}

/* Several event loops share one tls_server ([server] workers): threads
 * handshake on it while the main thread reloads it again and again.  Under
 * ASan or TSan a handshake that used a context set a reload had freed
 * shows; here every handshake must succeed with one of the two sets. */
#define TLS_THREADS 4
#define TLS_THREAD_HANDSHAKES 25

struct tls_thread_arg {
	struct tls_server *srv;
	atomic_int *running;
	int ok;
	int bad_cn;
};

static void *tls_thread_main(void *arg)
{
	struct tls_thread_arg *t = arg;

	for (int i = 0; i < TLS_THREAD_HANDSHAKES; i++) {
		struct client_opts o = {0};
		struct pair p;
		char cn[128];
		const char *seen;

		o.sni = i % 2 ? "smtp.example.net" : NULL;
		pair_init(&p, t->srv, &o);
		if (pair_handshake(&p))
			t->ok++;
		seen = client_seen_cn(&p, cn, sizeof(cn));
		if (strcmp(seen, "mail.example.org") != 0 &&
		    strcmp(seen, "smtp.example.net") != 0 &&
		    strcmp(seen, "new.example.org") != 0)
			t->bad_cn++;
		pair_finish(&p);
	}
	atomic_fetch_sub(t->running, 1);
	return NULL;
}

static void test_threads_share_one_server(void)
{
	struct config *with_sni = config_new(true);
	struct config *other = config_new(false);
	struct tls_server *srv = server_new(with_sni);
	struct tls_thread_arg args[TLS_THREADS];
	pthread_t threads[TLS_THREADS];
	atomic_int running = TLS_THREADS;
	int reloads = 0, reloads_ok = 0, ok = 0, bad_cn = 0, i;

	other->tls.certificate = (char *)fx.other_pem;
	other->tls.key = NULL;
	for (i = 0; i < TLS_THREADS; i++) {
		args[i] = (struct tls_thread_arg){.srv = srv,
						  .running = &running};
		pthread_create(&threads[i], NULL, tls_thread_main, &args[i]);
	}
	/* Reload for as long as they handshake (bounded). */
	for (reloads = 0; atomic_load(&running) > 0 && reloads < 2000;
	     reloads++) {
		char *error = NULL;

		if (tls_server_reload(srv, reloads % 2 ? with_sni : other,
				      &error) == 0)
			reloads_ok++;
		free(error);
	}
	for (i = 0; i < TLS_THREADS; i++) {
		pthread_join(threads[i], NULL);
		ok += args[i].ok;
		bad_cn += args[i].bad_cn;
	}
	TAP_OK(reloads > 0 && reloads_ok == reloads,
	       "threads: %d reloads while they handshake", reloads);
	TAP_EQ_INT(ok, TLS_THREADS * TLS_THREAD_HANDSHAKES,
		   "threads: every handshake on the shared server succeeds");
	TAP_EQ_INT(bad_cn, 0,
		   "threads: each shows a certificate of one of the sets");
	tls_server_destroy(srv);
	config_del(with_sni);
	config_del(other);
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

static char *memstream_text(FILE *f, char **buf)
{
	fclose(f);
	return *buf;
}

static void test_key_mismatch_and_check_config(void)
{
	struct config *cfg = config_new(true);
	struct tls_server *srv;
	char *error = NULL, *outbuf = NULL, *errbuf = NULL, *text;
	size_t outlen = 0, errlen = 0;
	FILE *out, *err;
	char expect[512];
	int ret;

	/* All good: one line per certificate, the client CA listed. */
	cfg->tls.client_ca = (char *)fx.ca_pem;
	out = open_memstream(&outbuf, &outlen);
	err = open_memstream(&errbuf, &errlen);
	ret = tls_check_config(cfg, out, err);
	fclose(err);
	text = memstream_text(out, &outbuf);
	TAP_EQ_INT(ret, 0, "tls_check_config: a good config passes");
	snprintf(
	    expect, sizeof(expect),
	    "tls: %s: subject=CN=mail.example.org notAfter=", fx.default_pem);
	CHECK(contains(text, expect), "-t prints the default certificate");
	snprintf(expect, sizeof(expect),
		 "tls: %s: subject=CN=smtp.example.net notAfter=", fx.sni_pem);
	CHECK(contains(text, expect), "-t prints the SNI certificate");
	CHECK(contains(text, "client CA subject=CN=Test CA,O=Example"),
	      "-t lists the client CA");
	TAP_EQ_INT(errlen, 0, "-t: nothing on err");
	diag(text);
	free(outbuf);
	free(errbuf);

	/* Key of another certificate. */
	cfg->tls.key = (char *)fx.sni_keyfile;
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL, "tls_server_create: key/cert mismatch fails");
	CHECK(contains(error, fx.sni_keyfile) &&
		  contains(error, "does not match"),
	      "the error names the key and says so: %s", error);
	free(error);
	error = NULL;
	outbuf = errbuf = NULL;
	out = open_memstream(&outbuf, &outlen);
	err = open_memstream(&errbuf, &errlen);
	ret = tls_check_config(cfg, out, err);
	fclose(out);
	text = memstream_text(err, &errbuf);
	TAP_EQ_INT(ret, -1, "tls_check_config: key/cert mismatch fails");
	CHECK(contains(text, fx.sni_keyfile) &&
		  contains(text, "does not match"),
	      "-t names the key");
	diag(text);
	free(outbuf);
	free(errbuf);

	/* Missing files. */
	cfg->tls.key = (char *)fx.default_keyfile;
	cfg->snis[0].certificate = (char *)fx.missing_pem;
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, fx.missing_pem),
	      "a missing SNI certificate fails: %s", error);
	free(error);
	error = NULL;
	cfg->snis[0].certificate = (char *)fx.sni_pem;
	cfg->tls.client_ca = (char *)fx.missing_pem;
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, fx.missing_pem),
	      "a missing client_ca fails: %s", error);
	free(error);
	error = NULL;
	outbuf = errbuf = NULL;
	out = open_memstream(&outbuf, &outlen);
	err = open_memstream(&errbuf, &errlen);
	ret = tls_check_config(cfg, out, err);
	fclose(out);
	text = memstream_text(err, &errbuf);
	CHECK(ret == -1 && contains(text, fx.missing_pem),
	      "-t: a missing client_ca fails");
	free(outbuf);
	free(errbuf);

	/* An SNI certificate that does not name its host: a warning. */
	cfg->tls.client_ca = NULL;
	cfg->snis[0].hostname = (char *)"other.example";
	outbuf = errbuf = NULL;
	out = open_memstream(&outbuf, &outlen);
	err = open_memstream(&errbuf, &errlen);
	ret = tls_check_config(cfg, out, err);
	fclose(out);
	text = memstream_text(err, &errbuf);
	CHECK(ret == 0 && contains(text, "does not name host other.example"),
	      "-t warns when an SNI certificate does not name its host");
	free(outbuf);
	free(errbuf);

	/* A bad setting is reported once, with the place in the file. */
	cfg->snis[0].hostname = (char *)"smtp.example.net";
	cfg->path = (char *)"/etc/submitproxy/submitproxy.conf";
	cfg->tls.line = 12;
	cfg->tls.ciphers = (char *)"NO-SUCH-CIPHER";
	outbuf = errbuf = NULL;
	out = open_memstream(&outbuf, &outlen);
	err = open_memstream(&errbuf, &errlen);
	ret = tls_check_config(cfg, out, err);
	fclose(out);
	text = memstream_text(err, &errbuf);
	CHECK(ret == -1 &&
		  strcmp(text, "/etc/submitproxy/submitproxy.conf:12: tls: "
			       "ciphers \"NO-SUCH-CIPHER\": no cipher "
			       "match\n") == 0,
	      "-t: a bad cipher list, once, as FILE:LINE");
	diag(text);
	free(outbuf);
	free(errbuf);
	cfg->tls.ciphers = NULL;

	cfg->tls.certificate = NULL;
	srv = tls_server_create(cfg, &error);
	CHECK(srv == NULL && contains(error, "submitproxy.conf:12: "),
	      "no [tls] certificate: an error: %s", error);
	free(error);
	config_del(cfg);
}

static void test_plaintext_on_tls_port(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	struct pair p;

	pair_init(&p, srv, NULL);
	tls_conn_shutdown(p.conn);
	TAP_EQ_INT(p.sends, 0,
		   "tls_conn_shutdown before the handshake: "
		   "nothing sent");
	TAP_EQ_INT(tls_conn_feed(p.conn, "EHLO x\r\n", 8), TLS_ERROR,
		   "plaintext EHLO on a TLS port: TLS_ERROR");
	TAP_EQ_STR(tls_conn_error(p.conn),
		   "not a TLS handshake (plaintext on a TLS port?)",
		   "plaintext: reason");
	TAP_EQ_INT(p.sends, 0, "plaintext: nothing sent back");
	pair_finish(&p);

	pair_init(&p, srv, NULL);
	TAP_EQ_STR(tls_conn_error(p.conn), "no error",
		   "tls_conn_error is never NULL");
	TAP_EQ_INT(tls_conn_write(p.conn, "x", 1), TLS_ERROR,
		   "tls_conn_write before the handshake: TLS_ERROR");
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
	tls_conn_destroy(NULL);
	tls_server_destroy(NULL);
}

static void test_client_certificates(void)
{
	struct config *cfg = config_new(true);
	struct tls_server *srv;
	struct client_opts good = {.cert = fx.client_cert,
				   .key = fx.client_key};
	struct client_opts good12 = {.cert = fx.client_cert,
				     .key = fx.client_key,
				     .max_version = TLS1_2_VERSION};
	struct client_opts good_sni = {.cert = fx.client_cert,
				       .key = fx.client_key,
				       .sni = "smtp.example.net"};
	struct client_opts rogue = {.cert = fx.rogue_cert, .key = fx.rogue_key};
	x509_name_list *cas;
	struct pair p;

	cfg->tls.client_ca = (char *)fx.ca_pem;
	srv = server_new(cfg);
	CHECK(srv != NULL, "client_ca loads");

	pair_init(&p, srv, &good);
	CHECK(pair_handshake(&p), "client cert signed by client_ca: "
				  "handshake");
	TAP_EQ_STR(tls_conn_peer_subject(p.conn), "CN=client one,O=Example",
		   "client cert: verified subject, RFC 2253");
	cas = SSL_get_client_CA_list(p.cli);
	TAP_EQ_INT(cas != NULL ? sk_X509_NAME_num(cas) : 0, 1,
		   "the client is sent the CA list");
	pair_finish(&p);

	pair_init(&p, srv, &good12);
	CHECK(pair_handshake(&p), "client cert over TLS 1.2: handshake");
	TAP_EQ_STR(tls_conn_peer_subject(p.conn), "CN=client one,O=Example",
		   "client cert over TLS 1.2: subject");
	pair_finish(&p);

	pair_init(&p, srv, &good_sni);
	CHECK(pair_handshake(&p), "client cert with SNI: handshake");
	TAP_EQ_STR(tls_conn_peer_subject(p.conn), "CN=client one,O=Example",
		   "client cert with SNI: verified in the SNI context");
	pair_finish(&p);

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "no client cert: handshake still succeeds");
	CHECK(tls_conn_peer_subject(p.conn) == NULL,
	      "no client cert: no subject");
	pair_finish(&p);

	pair_init(&p, srv, &rogue);
	CHECK(pair_handshake(&p),
	      "unverifiable client cert: handshake still succeeds");
	CHECK(tls_conn_peer_subject(p.conn) == NULL,
	      "unverifiable client cert: no subject");
	pair_finish(&p);

	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_session_resumption(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv;
	struct client_opts o = {0};
	SSL_SESSION *sess;
	struct pair p;
	char buf[64];
	int v;

	cfg->tls.client_ca = (char *)fx.ca_pem;
	srv = server_new(cfg);
	for (v = 0; v < 2; v++) {
		const char *name = v == 0 ? "TLS 1.3" : "TLS 1.2";

		o.max_version = v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
		o.cert = fx.client_cert;
		o.key = fx.client_key;
		o.session = NULL;
		pair_init(&p, srv, &o);
		CHECK(pair_handshake(&p), "%s: first connection", name);
		CHECK(!tls_conn_resumed(p.conn), "%s: not resumed", name);
		client_read(&p, buf, sizeof(buf)); /* takes the tickets */
		sess = SSL_get1_session(p.cli);
		CHECK(sess != NULL && SSL_SESSION_is_resumable(sess),
		      "%s: the client got a resumable session", name);
		/* Both sides close cleanly: OpenSSL marks the session of a
		 * connection freed without close_notify not resumable. */
		SSL_shutdown(p.cli);
		tls_conn_shutdown(p.conn);
		pair_finish(&p);

		o.session = sess;
		o.cert = NULL;
		o.key = NULL;
		pair_init(&p, srv, &o);
		CHECK(pair_handshake(&p), "%s: second connection", name);
		CHECK(tls_conn_resumed(p.conn) && SSL_session_reused(p.cli),
		      "%s: resumed with the ticket", name);
		TAP_EQ_STR(
		    tls_conn_peer_subject(p.conn), "CN=client one,O=Example",
		    "%s: the resumed session keeps the client subject", name);
		pair_finish(&p);
		SSL_SESSION_free(sess);
	}
	tls_server_destroy(srv);
	config_del(cfg);
}

/* What one idle connection costs inside OpenSSL: the bytes its
 * tls_conn_destroy() gives back. */
static size_t idle_conn_bytes(struct pair *p)
{
	size_t before = mem_live;

	tls_conn_destroy(p->conn);
	p->conn = NULL;
	return before - mem_live;
}

static void test_idle_memory(bool counting)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	const size_t big = 65536;
	size_t fresh, used, i;
	struct pair p;
	char *data;

	if (!counting) {
		CHECK(true, "# SKIP CRYPTO_set_mem_functions unavailable");
		tls_server_destroy(srv);
		config_del(cfg);
		return;
	}
	pair_init(&p, srv, NULL);
	pair_handshake(&p);
	fresh = idle_conn_bytes(&p);
	pair_finish(&p);

	data = malloc(big + 1);
	if (data == NULL)
		abort();
	memset(data, 'x', big);
	pair_init(&p, srv, NULL);
	pair_handshake(&p);
	for (i = 0; i < 4; i++) {
		client_write(&p, data, big);
		tls_conn_write(p.conn, data, big);
		client_read(&p, data, big + 1);
	}
	CHECK(p.rx_len == 4 * big, "memory: 4 x 64 KiB each way");
	CHECK(tls_conn_buffered_bytes(p.conn) == 0 &&
		  !tls_conn_has_pending(p.conn),
	      "memory: nothing buffered after the traffic");
	used = idle_conn_bytes(&p);
	pair_finish(&p);
	free(data);

	printf("# idle TLS connection: %zu bytes in OpenSSL after the "
	       "handshake, %zu after 256 KiB each way\n",
	       fresh, used);
	/* One record buffer alone is 16 KiB + overhead: an idle connection
	 * holding its read or write buffer would fail this. */
	CHECK(fresh < 16384,
	      "memory: an idle connection holds no record "
	      "buffers (%zu bytes)",
	      fresh);
	CHECK(used <= fresh + 1024,
	      "memory: traffic leaves nothing behind (%zu vs %zu bytes)", used,
	      fresh);
	tls_server_destroy(srv);
	config_del(cfg);
}

/* ---- handshake failures by class, the client's version, the group ---- */

/* The tokens of the event=tls_fail log line and of the metrics
 * (proxy/metrics.c's tls_failure_names): the same words on both. */
static void test_failure_names(void)
{
	static const struct {
		enum tls_failure f;
		const char *name;
	} names[] = {
	    {TLS_FAILURE_NONE, "none"},
	    {TLS_FAILURE_NO_SHARED_CIPHER, "no_shared_cipher"},
	    {TLS_FAILURE_PROTOCOL_VERSION, "protocol_version"},
	    {TLS_FAILURE_ALPN, "alpn"},
	    {TLS_FAILURE_CERTIFICATE_REQUIRED, "certificate_required"},
	    {TLS_FAILURE_BAD_CERTIFICATE, "bad_certificate"},
	    {TLS_FAILURE_SERVER_CERTIFICATE_REFUSED,
	     "server_certificate_refused"},
	    {TLS_FAILURE_NOT_TLS, "not_tls"},
	    {TLS_FAILURE_CLOSED, "closed"},
	    {TLS_FAILURE_OTHER, "other"},
	};

	TAP_EQ_INT(sizeof(names) / sizeof(names[0]), TLS_FAILURE_COUNT,
		   "failure names: every class listed here");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		TAP_EQ_STR(tls_failure_name(names[i].f), names[i].name,
			   "failure name %d", (int)names[i].f);
	TAP_EQ_STR(tls_failure_name(TLS_FAILURE_COUNT), "other",
		   "failure name out of range: other");
}

/* One refused handshake: what it is classed as, and the highest version
 * the client offered (recorded before OpenSSL refused it). */
struct failure_case {
	const char *name;
	const char *min_version; /* [tls] min_version; NULL TLSv1.2 */
	const char *ciphers;	 /* [tls] ciphers */
	bool client_ca;		 /* [tls] client_ca */
	struct client_opts client;
	enum tls_failure failure;
	unsigned client_max;
	const char *error; /* in tls_conn_error() */
};

static void failure_case_run(const struct failure_case *fc)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv;
	struct pair p;

	if (fc->min_version != NULL)
		cfg->tls.min_version = (char *)fc->min_version;
	cfg->tls.ciphers = (char *)fc->ciphers;
	if (fc->client_ca)
		cfg->tls.client_ca = (char *)fx.ca_pem;
	srv = server_new(cfg);
	pair_init(&p, srv, &fc->client);
	TAP_EQ_INT(pump(&p), TLS_ERROR, "%s: the handshake fails", fc->name);
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)),
		   tls_failure_name(fc->failure), "%s: class", fc->name);
	TAP_EQ_INT(tls_conn_client_max_version(p.conn), fc->client_max,
		   "%s: client max version", fc->name);
	CHECK(contains(tls_conn_error(p.conn), fc->error),
	      "%s: reason \"%s\" says \"%s\"", fc->name, tls_conn_error(p.conn),
	      fc->error);
	TAP_EQ_INT(p.handshakes, 0, "%s: handshake_done not called", fc->name);
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_failure_classes(void)
{
	static const unsigned char http[] = "\x08http/1.1";
	const struct failure_case cases[] = {
	    {"TLS 1.1 client, min_version TLSv1.2",
	     NULL,
	     NULL,
	     false,
	     {.min_version = TLS1_VERSION,
	      .max_version = TLS1_1_VERSION,
	      .weak = true},
	     TLS_FAILURE_PROTOCOL_VERSION,
	     0x0302,
	     "unsupported protocol"},
	    {"TLS 1.0 client, min_version TLSv1.2",
	     NULL,
	     NULL,
	     false,
	     {.min_version = TLS1_VERSION,
	      .max_version = TLS1_VERSION,
	      .weak = true},
	     TLS_FAILURE_PROTOCOL_VERSION,
	     0x0301,
	     "unsupported protocol"},
	    {"TLS 1.2 client, min_version TLSv1.3",
	     "TLSv1.3",
	     NULL,
	     false,
	     {.max_version = TLS1_2_VERSION},
	     TLS_FAILURE_PROTOCOL_VERSION,
	     0x0303,
	     "unsupported protocol"},
	    {"no shared cipher",
	     NULL,
	     "ECDHE-ECDSA-AES128-GCM-SHA256",
	     false,
	     {.max_version = TLS1_2_VERSION,
	      .ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305"},
	     TLS_FAILURE_NO_SHARED_CIPHER,
	     0x0303,
	     "no shared cipher"},
	    {"only a cipher the certificate cannot use (AES128-SHA)",
	     NULL,
	     NULL,
	     false,
	     {.max_version = TLS1_2_VERSION, .ciphers = "AES128-SHA"},
	     TLS_FAILURE_NO_SHARED_CIPHER,
	     0x0303,
	     "no shared cipher"},
	    {"ALPN http/1.1",
	     NULL,
	     NULL,
	     false,
	     {.alpn = http, .alpn_len = sizeof(http) - 1},
	     TLS_FAILURE_ALPN,
	     0x0304,
	     "ALPN"},
	    {"required, no certificate, TLS 1.3",
	     NULL,
	     NULL,
	     true,
	     {.required = true},
	     TLS_FAILURE_CERTIFICATE_REQUIRED,
	     0x0304,
	     "certificate required"},
	    {"required, no certificate, TLS 1.2",
	     NULL,
	     NULL,
	     true,
	     {.required = true, .max_version = TLS1_2_VERSION},
	     TLS_FAILURE_CERTIFICATE_REQUIRED,
	     0x0303,
	     "certificate required"},
	    {"required, a certificate of another CA",
	     NULL,
	     NULL,
	     true,
	     {.required = true, .cert = NULL, .key = NULL},
	     TLS_FAILURE_BAD_CERTIFICATE,
	     0x0304,
	     "client certificate not accepted"},
	    {"the client refuses our certificate, TLS 1.3",
	     NULL,
	     NULL,
	     false,
	     {.verify_server = true},
	     TLS_FAILURE_SERVER_CERTIFICATE_REFUSED,
	     0x0304,
	     "unknown ca"},
	    {"the client refuses our certificate, TLS 1.2",
	     NULL,
	     NULL,
	     false,
	     {.verify_server = true, .max_version = TLS1_2_VERSION},
	     TLS_FAILURE_SERVER_CERTIFICATE_REFUSED,
	     0x0303,
	     "unknown ca"},
	};
	struct failure_case rogue;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].failure != TLS_FAILURE_BAD_CERTIFICATE) {
			failure_case_run(&cases[i]);
			continue;
		}
		/* fx is filled at run time. */
		rogue = cases[i];
		rogue.client.cert = fx.rogue_cert;
		rogue.client.key = fx.rogue_key;
		failure_case_run(&rogue);
	}
}

/* A ClientHello of our own making, in one record: legacy_version, and a
 * supported_versions extension with versions[0..nversions) when
 * versions is not NULL.  Ciphers for TLS 1.2 and 1.3, groups, point
 * formats, signature algorithms; no key_share (a TLS 1.3 server would ask
 * again, or refuse: these tests look only at what the hello said). */
static size_t client_hello(unsigned char *out, size_t size,
			   unsigned record_version, unsigned legacy_version,
			   const unsigned *versions, size_t nversions)
{
	/* 12 bytes: four cipher suites (ECDHE-ECDSA-AES128-GCM-SHA256,
	 * ECDHE-RSA-AES128-GCM-SHA256, TLS_AES_128_GCM_SHA256, AES128-SHA)
	 * and the null compression; then the extensions supported_groups
	 * (x25519, secp256r1), ec_point_formats (uncompressed) and
	 * signature_algorithms (ecdsa_secp256r1_sha256,
	 * rsa_pss_rsae_sha256). */
	static const unsigned char tail[] = {
	    0x00, 0x08, 0xc0, 0x2b, 0xc0, 0x2f, 0x13, 0x01, 0x00, 0x2f,
	    0x01, 0x00, 0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d,
	    0x00, 0x17, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x0d,
	    0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04,
	};
	unsigned char body[512];
	size_t n = 0, ext_len_at, ext_len;

	body[n++] = (unsigned char)(legacy_version >> 8);
	body[n++] = (unsigned char)legacy_version;
	memset(body + n, 0x5a, 32); /* random */
	n += 32;
	body[n++] = 0; /* no session id */
	memcpy(body + n, tail, 12);
	n += 12;
	ext_len_at = n;
	n += 2;
	memcpy(body + n, tail + 12, sizeof(tail) - 12);
	n += sizeof(tail) - 12;
	if (versions != NULL) {
		body[n++] = 0x00;
		body[n++] = 0x2b; /* supported_versions (43) */
		body[n++] = 0x00;
		body[n++] = (unsigned char)(1 + 2 * nversions);
		body[n++] = (unsigned char)(2 * nversions);
		for (size_t i = 0; i < nversions; i++) {
			body[n++] = (unsigned char)(versions[i] >> 8);
			body[n++] = (unsigned char)versions[i];
		}
	}
	ext_len = n - ext_len_at - 2;
	body[ext_len_at] = (unsigned char)(ext_len >> 8);
	body[ext_len_at + 1] = (unsigned char)ext_len;
	if (n + 9 > size)
		abort();
	out[0] = 0x16; /* handshake record */
	out[1] = (unsigned char)(record_version >> 8);
	out[2] = (unsigned char)record_version;
	out[3] = (unsigned char)((n + 4) >> 8);
	out[4] = (unsigned char)(n + 4);
	out[5] = 0x01; /* ClientHello */
	out[6] = 0;
	out[7] = (unsigned char)(n >> 8);
	out[8] = (unsigned char)n;
	memcpy(out + 9, body, n);
	return n + 9;
}

static void test_client_max_version(void)
{
	static const unsigned v11_grease[] = {0x0a0a, 0x0302, 0x0301};
	static const unsigned v13_grease[] = {0x3a3a, 0x0304, 0xfafa, 0x0303};
	static const unsigned grease_only[] = {0x1a1a};
	static const struct {
		const char *name;
		unsigned record, legacy;
		const unsigned *versions;
		size_t nversions;
		unsigned expect;
		enum tls_failure failure; /* NONE: not checked */
	} cases[] = {
	    {"TLS 1.0 hello, no supported_versions", 0x0301, 0x0301, NULL, 0,
	     0x0301, TLS_FAILURE_PROTOCOL_VERSION},
	    {"TLS 1.1 hello, no supported_versions", 0x0301, 0x0302, NULL, 0,
	     0x0302, TLS_FAILURE_PROTOCOL_VERSION},
	    {"SSLv3 hello (OpenSSL: version too low)", 0x0300, 0x0300, NULL, 0,
	     0x0300, TLS_FAILURE_PROTOCOL_VERSION},
	    {"supported_versions GREASE, 1.1, 1.0 (legacy 1.2)", 0x0301, 0x0303,
	     v11_grease, 3, 0x0302, TLS_FAILURE_PROTOCOL_VERSION},
	    {"supported_versions GREASE, 1.3, GREASE, 1.2", 0x0301, 0x0303,
	     v13_grease, 4, 0x0304, TLS_FAILURE_NONE},
	    {"supported_versions with only GREASE: legacy_version", 0x0301,
	     0x0303, grease_only, 1, 0x0303, TLS_FAILURE_NONE},
	};
	const struct client_opts tls12 = {.max_version = TLS1_2_VERSION};
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	unsigned char hello[600];
	struct pair p;
	size_t len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pair_init(&p, srv, NULL);
		TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0,
			   "%s: 0 before the ClientHello", cases[i].name);
		len = client_hello(hello, sizeof(hello), cases[i].record,
				   cases[i].legacy, cases[i].versions,
				   cases[i].nversions);
		(void)tls_conn_feed(p.conn, (const char *)hello, len);
		ERR_clear_error();
		TAP_EQ_INT(tls_conn_client_max_version(p.conn), cases[i].expect,
			   "%s: client max version", cases[i].name);
		if (cases[i].failure != TLS_FAILURE_NONE)
			TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)),
				   tls_failure_name(cases[i].failure),
				   "%s: refused, and recorded first",
				   cases[i].name);
		pair_finish(&p);
	}

	/* Real clients: OpenSSL's TLS 1.3 client lists 1.3 and 1.2. */
	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "max version: a TLS 1.3 handshake");
	TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0x0304,
		   "max version: a TLS 1.3 client offers 0x0304");
	pair_finish(&p);
	pair_init(&p, srv, &tls12);
	CHECK(pair_handshake(&p), "max version: a TLS 1.2 handshake");
	TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0x0303,
		   "max version: a TLS 1.2 client offers 0x0303");
	pair_finish(&p);

	tls_server_destroy(srv);
	config_del(cfg);
}

/* What is not a ClientHello at all, and clients that leave in the middle
 * of a handshake. */
static void test_not_tls_and_closed(void)
{
	static const struct {
		const char *name;
		const char *data;
		size_t len;
	} garbage[] = {
	    {"plaintext EHLO", "EHLO x\r\n", 8},
	    {"an HTTP request", "GET / HTTP/1.1\r\n\r\n", 18},
	    {"a handshake record with version 0x0000",
	     "\x16\x00\x00\x00\x10\x00\x00\x00\x00\x00", 10},
	    {"a handshake record of 65535 bytes",
	     "\x16\x03\x01\xff\xff\x00\x00\x00\x00\x00", 10},
	    {"a handshake record holding no ClientHello",
	     "\x16\x03\x03\x00\x05\x99\x00\x00\x01\x00", 10},
	    {"high-bit garbage (an SSLv2 header)",
	     "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10},
	};
	static const char close_notify[] = "\x15\x03\x03\x00\x02\x01\x00";
	const struct client_opts tls12 = {.max_version = TLS1_2_VERSION};
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	char buf[8192];
	struct pair p;
	int len;

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		pair_init(&p, srv, NULL);
		TAP_EQ_INT(
		    tls_conn_feed(p.conn, garbage[i].data, garbage[i].len),
		    TLS_ERROR, "%s: refused", garbage[i].name);
		TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)),
			   "not_tls", "%s: not_tls (%s)", garbage[i].name,
			   tls_conn_error(p.conn));
		TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0,
			   "%s: no client version", garbage[i].name);
		pair_finish(&p);
	}

	/* The FIN right after the ClientHello. */
	pair_init(&p, srv, NULL);
	SSL_do_handshake(p.cli);
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	CHECK(len > 0 && tls_conn_feed(p.conn, buf, (size_t)len) == TLS_OK,
	      "eof: the ClientHello is taken");
	TAP_EQ_INT(tls_conn_eof(p.conn), TLS_ERROR,
		   "eof in the middle of the handshake: TLS_ERROR");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "closed",
		   "eof in the middle of the handshake: closed");
	TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0x0304,
		   "eof: the client's version is known");
	TAP_EQ_INT(tls_conn_eof(p.conn), TLS_ERROR, "eof again: still failed");
	pair_finish(&p);

	/* The FIN after a part of a ClientHello. */
	pair_init(&p, srv, NULL);
	SSL_do_handshake(p.cli);
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	CHECK(len > 10 && tls_conn_feed(p.conn, buf, 10) == TLS_OK,
	      "eof: 10 bytes of a ClientHello taken");
	TAP_EQ_INT(tls_conn_eof(p.conn), TLS_ERROR,
		   "eof inside the ClientHello: TLS_ERROR");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "closed",
		   "eof inside the ClientHello: closed");
	TAP_EQ_INT(tls_conn_client_max_version(p.conn), 0,
		   "eof inside the ClientHello: no version seen");
	pair_finish(&p);

	/* A FIN before any byte: a connection, not a handshake. */
	pair_init(&p, srv, NULL);
	TAP_EQ_INT(tls_conn_eof(p.conn), TLS_OK,
		   "eof before any byte: nothing failed");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "none",
		   "eof before any byte: no class");
	pair_finish(&p);

	/* A FIN after the handshake is the session's business. */
	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "eof after the handshake: handshake");
	TAP_EQ_INT(tls_conn_eof(p.conn), TLS_OK,
		   "eof after the handshake: TLS_OK");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "none",
		   "eof after the handshake: no class");
	pair_finish(&p);

	/* close_notify in reply to our first flight (TLS 1.2: the alert
	 * goes in the clear). */
	pair_init(&p, srv, &tls12);
	SSL_do_handshake(p.cli);
	len = BIO_read(p.from_cli, buf, sizeof(buf));
	CHECK(len > 0 && tls_conn_feed(p.conn, buf, (size_t)len) == TLS_OK,
	      "close_notify: the ClientHello is taken");
	TAP_EQ_INT(
	    tls_conn_feed(p.conn, close_notify, sizeof(close_notify) - 1),
	    TLS_ERROR, "close_notify in the handshake: TLS_ERROR");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "closed",
		   "close_notify in the handshake: closed");
	pair_finish(&p);

	tls_server_destroy(srv);
	config_del(cfg);
}

/* Failures after the handshake are no handshake failures. */
static void test_failure_after_handshake_is_not_classed(void)
{
	struct config *cfg = config_new(false);
	struct tls_server *srv = server_new(cfg);
	static const char bad_record[] =
	    "\x17\x03\x03\x00\x20"
	    "\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5"
	    "\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5\xa5";
	struct pair p;

	pair_init(&p, srv, NULL);
	CHECK(pair_handshake(&p), "after: handshake");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "none",
		   "after: a good handshake has no failure");
	TAP_EQ_INT(tls_conn_feed(p.conn, bad_record, sizeof(bad_record) - 1),
		   TLS_ERROR, "after: a forged record fails the connection");
	TAP_EQ_STR(tls_failure_name(tls_conn_failure(p.conn)), "none",
		   "after: still no handshake failure (%s)",
		   tls_conn_error(p.conn));
	pair_finish(&p);
	tls_server_destroy(srv);
	config_del(cfg);
}

static void test_negotiated_group(void)
{
	static const struct {
		const char *name;
		bool rsa; /* the RSA certificate and RSA key exchange */
		struct client_opts client;
		const char *group;
	} cases[] = {
	    {"TLS 1.3 default", false, {0}, "x25519"},
	    {"TLS 1.2 ECDHE default",
	     false,
	     {.max_version = TLS1_2_VERSION},
	     "x25519"},
	    {"TLS 1.3 P-256", false, {.groups = "P-256"}, "secp256r1"},
	    {"TLS 1.3 P-384", false, {.groups = "P-384"}, "secp384r1"},
	    {"TLS 1.3 X448", false, {.groups = "X448"}, "x448"},
	    {"TLS 1.3 ffdhe2048", false, {.groups = "ffdhe2048"}, "ffdhe2048"},
	    {"TLS 1.2 P-256",
	     false,
	     {.max_version = TLS1_2_VERSION, .groups = "P-256"},
	     "secp256r1"},
	    {"TLS 1.2 RSA key exchange",
	     true,
	     {.max_version = TLS1_2_VERSION, .ciphers = "AES128-GCM-SHA256"},
	     "none"},
	};
	struct config *cfg = config_new(false);
	struct config *rsa_cfg = config_new(false);
	struct tls_server *srv = server_new(cfg), *rsa_srv;
	struct pair p;

	rsa_cfg->tls.certificate = (char *)fx.rsa_pem;
	rsa_cfg->tls.key = NULL;
	rsa_cfg->tls.ciphers = (char *)"AES128-GCM-SHA256";
	rsa_srv = server_new(rsa_cfg);
	CHECK(rsa_srv != NULL, "group: an RSA server");

	pair_init(&p, srv, NULL);
	TAP_EQ_STR(tls_conn_group(p.conn), "none",
		   "group: none before the handshake");
	pump(&p);
	pair_finish(&p);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pair_init(&p, cases[i].rsa ? rsa_srv : srv, &cases[i].client);
		CHECK(pair_handshake(&p), "group, %s: handshake",
		      cases[i].name);
		TAP_EQ_STR(tls_conn_group(p.conn), cases[i].group,
			   "group, %s: %s (%s, %s)", cases[i].name,
			   cases[i].group, tls_conn_version(p.conn),
			   tls_conn_cipher(p.conn));
		pair_finish(&p);
	}
	/* A failed handshake never asks OpenSSL for the group. */
	{
		const struct client_opts o11 = {.min_version = TLS1_VERSION,
						.max_version = TLS1_1_VERSION,
						.weak = true};

		pair_init(&p, srv, &o11);
		pump(&p);
		TAP_EQ_STR(tls_conn_group(p.conn), "none",
			   "group: none after a failed handshake");
		pair_finish(&p);
	}
	tls_server_destroy(rsa_srv);
	tls_server_destroy(srv);
	config_del(rsa_cfg);
	config_del(cfg);
}

int main(void)
{
	/* Before anything else allocates through OpenSSL. */
	bool counting =
	    CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free) == 1;

	fixture_init();
	test_handshake_tls13_and_plaintext_both_ways();
	test_write_from_handshake_done();
	test_pipelined_records_arrive_together();
	test_records_then_close_notify();
	test_large_feed_in_batches();
	test_handshake_and_data_in_one_feed();
	test_plaintext_wiped_after_callback();
	test_ciphertext_one_byte_at_a_time();
	test_handshake_tls12();
	test_tls11_client_refused();
	test_min_version_and_ciphers();
	test_sni_chooses_certificate();
	test_alpn_requires_smtp();
	test_reload();
	test_threads_share_one_server();
	test_key_mismatch_and_check_config();
	test_plaintext_on_tls_port();
	test_client_certificates();
	test_session_resumption();
	test_idle_memory(counting);
	test_failure_names();
	test_failure_classes();
	test_client_max_version();
	test_not_tls_and_closed();
	test_failure_after_handshake_is_not_classed();
	test_negotiated_group();
	fixture_finish();
	return tap_done();
}
