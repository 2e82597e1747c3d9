/*
 * tls_floor: what OpenSSL's own server-side TLS 1.3 handshake costs on
 * this machine, the floor under a proxy's CPU per session (issue 15).
 *
 * A benchmark, not a test: neither installed nor run by `meson test`;
 * tests/bench/bench_relay.py runs it and reads its output.
 *
 * One process, no sockets: a client SSL and a server SSL joined by an
 * in-memory BIO pair (BIO_new_bio_pair), one fresh pair of SSL objects
 * per handshake from one SSL_CTX each (a full handshake every time: the
 * client offers no session).  The client and the server are driven in
 * turn by this one thread until both finish.  Only the server's
 * SSL_do_handshake() calls are timed, each between two
 * clock_gettime(CLOCK_THREAD_CPUTIME_ID) readings (the thread's CPU
 * time, so neither the client's work nor time spent preempted counts);
 * the cost of a pair of readings, measured first, is subtracted.  The
 * server's SSL_new() .. SSL_free() (the handshake plus what a server
 * pays to set up and free a connection's SSL) and the client's
 * SSL_do_handshake() calls are reported too, timed the same way.
 *
 * The server's handshake includes its NewSessionTicket messages (OpenSSL
 * sends two by default, as part of SSL_do_handshake), which both
 * submitproxy and nginx send too.  Library defaults otherwise: TLS 1.3
 * only, the default groups (X25519 first) and ciphersuites.
 *
 * The key and certificate: a P-256 ECDSA key (EVP_EC_gen) and a
 * self-signed certificate made in memory, like the bench's; --rsa for
 * RSA-2048; or --cert FILE --key FILE (PEM; the certificate file may
 * hold a chain) to serve the very files a server under measurement
 * serves.
 *
 *     tls_floor [-n HANDSHAKES] [--warmup N] [--rsa]
 *               [--cert FILE --key FILE]
 *
 * Output: a descriptive first line, then "name value" lines (value in
 * milliseconds of CPU per handshake unless the name says otherwise):
 *
 *     server_handshake_cpu_ms   mean of the server's SSL_do_handshake()s
 *     server_handshake_cpu_ms_median
 *     server_ssl_cpu_ms         mean of SSL_new() .. SSL_free(), server
 *     client_handshake_cpu_ms   mean of the client's SSL_do_handshake()s
 *     wall_ms                   wall clock per handshake, both sides
 *     timer_overhead_us         one pair of readings, subtracted above
 */

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAX_HANDSHAKES 1000000L
#define MAX_ROUNDS 64		/* client/server turns in one handshake */

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "tls_floor: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: tls_floor [-n HANDSHAKES] [--warmup N] "
		"[--rsa] [--cert FILE --key FILE]\n");
	exit(2);
}

static int64_t thread_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		die("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime(CLOCK_MONOTONIC) failed");
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long parse_count(const char *text, long min, long max)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min ||
	    value > max)
		usage();
	return value;
}

/* A self-signed certificate for key, CN=tls-floor.example, a day long. */
static X509 *self_signed(EVP_PKEY *key)
{
	X509 *cert = X509_new();
	X509_NAME *name;

	if (cert == NULL || X509_set_version(cert, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(cert), 86400) == NULL ||
	    X509_set_pubkey(cert, key) != 1)
		die("cannot build a certificate");
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				       (const unsigned char *)"tls-floor.example",
				       -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1 ||
	    X509_sign(cert, key, EVP_sha256()) <= 0)
		die("cannot sign the certificate");
	return cert;
}

/* The server's context; *what describes its key ("EC 256 bits,
 * generated, self-signed"), in static storage. */
static SSL_CTX *server_context(int rsa, const char *cert_file,
			       const char *key_file, const char **what)
{
	static char description[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *used;

	if (ctx == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
		die("cannot make the server SSL_CTX");
	if (cert_file != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
			die("cannot load --cert");
		if (SSL_CTX_use_PrivateKey_file(ctx, key_file,
						SSL_FILETYPE_PEM) != 1)
			die("cannot load --key");
		if (SSL_CTX_check_private_key(ctx) != 1)
			die("--key does not match --cert");
	} else {
		EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
		X509 *cert;

		if (key == NULL)
			die("cannot generate the key");
		cert = self_signed(key);
		if (SSL_CTX_use_certificate(ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, key) != 1)
			die("cannot use the generated key");
		X509_free(cert);
		EVP_PKEY_free(key);
	}
	used = SSL_CTX_get0_privatekey(ctx);
	snprintf(description, sizeof(description), "%s %d bits, %s%s",
		 EVP_PKEY_get0_type_name(used), EVP_PKEY_get_bits(used),
		 cert_file != NULL ? "from " : "generated, self-signed",
		 cert_file != NULL ? cert_file : "");
	*what = description;
	return ctx;
}

static SSL_CTX *client_context(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
		die("cannot make the client SSL_CTX");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* No session cache: every handshake is a full one. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

/* One step of one side: 1 finished, 0 wants the other side, else dies. */
static int step(SSL *ssl, const char *side)
{
	int ret = SSL_do_handshake(ssl);

	if (ret == 1)
		return 1;
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		fprintf(stderr, "tls_floor: %s handshake failed\n", side);
		die("handshake failed");
	}
}

struct sample {
	int64_t server_hs;	/* server SSL_do_handshake()s, ns */
	int64_t server_all;	/* server SSL_new() .. SSL_free(), ns */
	int64_t client_hs;	/* client SSL_do_handshake()s, ns */
};

/* One full handshake; the overhead of a pair of readings is removed
 * from each timed interval. */
static void handshake(SSL_CTX *sctx, SSL_CTX *cctx, int64_t overhead,
		      struct sample *out, const char **version,
		      const char **cipher, const char **group)
{
	int64_t t0, t1, server_hs = 0, client_hs = 0, server_new, server_free;
	SSL *server, *client;
	BIO *sbio = NULL, *cbio = NULL;
	int server_done = 0, client_done = 0, rounds = 0;
	char buf[256];

	client = SSL_new(cctx);
	if (client == NULL || BIO_new_bio_pair(&cbio, 0, &sbio, 0) != 1)
		die("cannot make the client SSL or the BIO pair");
	SSL_set_bio(client, cbio, cbio);
	SSL_set_connect_state(client);

	t0 = thread_ns();
	server = SSL_new(sctx);
	if (server == NULL)
		die("cannot make the server SSL");
	SSL_set_bio(server, sbio, sbio);
	SSL_set_accept_state(server);
	server_new = thread_ns() - t0 - overhead;

	while (!server_done || !client_done) {
		if (++rounds > MAX_ROUNDS)
			die("the handshake does not finish");
		if (!client_done) {
			t0 = thread_ns();
			client_done = step(client, "client");
			t1 = thread_ns();
			client_hs += t1 - t0 - overhead;
		}
		if (!server_done) {
			t0 = thread_ns();
			server_done = step(server, "server");
			t1 = thread_ns();
			server_hs += t1 - t0 - overhead;
		}
	}
	/* The client reads the server's session tickets, as a real one
	 * would (not timed: client work). */
	if (SSL_read(client, buf, sizeof(buf)) > 0)
		die("unexpected application data");
	if (*version == NULL) {
		*version = SSL_get_version(server);
		*cipher = SSL_get_cipher_name(server);
		*group = OBJ_nid2sn(SSL_get_negotiated_group(server));
	}
	SSL_free(client);

	t0 = thread_ns();
	SSL_free(server);
	server_free = thread_ns() - t0 - overhead;
	out->server_hs = server_hs;
	out->server_all = server_new + server_hs + server_free;
	out->client_hs = client_hs;
}

static int compare_ns(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The mean cost, in ns, of two back-to-back readings of the thread's
 * CPU clock (the least of a few batches: the rest is preemption). */
static int64_t timer_overhead(void)
{
	int64_t best = INT64_MAX;

	for (int batch = 0; batch < 5; batch++) {
		int64_t start = thread_ns(), sum;
		const int pairs = 2000;

		for (int i = 0; i < pairs; i++) {
			(void)thread_ns();
			(void)thread_ns();
		}
		sum = thread_ns() - start;
		if (sum / pairs < best)
			best = sum / pairs;
	}
	return best;
}

int main(int argc, char **argv)
{
	long count = 2000, warmup = 50;
	int rsa = 0;
	const char *cert_file = NULL, *key_file = NULL, *key_what = NULL;
	const char *version = NULL, *cipher = NULL, *group = NULL;
	SSL_CTX *sctx, *cctx;
	struct sample s;
	int64_t *server_hs, sum_hs = 0, sum_all = 0, sum_client = 0;
	int64_t overhead, wall;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			count = parse_count(argv[++i], 1, MAX_HANDSHAKES);
		else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
			warmup = parse_count(argv[++i], 0, MAX_HANDSHAKES);
		else if (strcmp(argv[i], "--rsa") == 0)
			rsa = 1;
		else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
			cert_file = argv[++i];
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key_file = argv[++i];
		else
			usage();
	}
	if ((cert_file == NULL) != (key_file == NULL) ||
	    (cert_file != NULL && rsa))
		usage();

	sctx = server_context(rsa, cert_file, key_file, &key_what);
	cctx = client_context();
	server_hs = calloc((size_t)count, sizeof(*server_hs));
	if (server_hs == NULL)
		die("out of memory");

	overhead = timer_overhead();
	for (long i = 0; i < warmup; i++)
		handshake(sctx, cctx, overhead, &s, &version, &cipher, &group);
	wall = wall_ns();
	for (long i = 0; i < count; i++) {
		handshake(sctx, cctx, overhead, &s, &version, &cipher, &group);
		server_hs[i] = s.server_hs;
		sum_hs += s.server_hs;
		sum_all += s.server_all;
		sum_client += s.client_hs;
	}
	wall = wall_ns() - wall;
	qsort(server_hs, (size_t)count, sizeof(*server_hs), compare_ns);

	printf("tls_floor: %s, %s %s, group %s, key %s, %ld handshakes "
	       "(+%ld warm-up), in-memory BIO pair, server-side CPU "
	       "(CLOCK_THREAD_CPUTIME_ID around its calls)\n",
	       OpenSSL_version(OPENSSL_VERSION), version, cipher,
	       group != NULL ? group : "?", key_what, count, warmup);
	printf("server_handshake_cpu_ms %.4f\n", sum_hs / 1e6 / count);
	printf("server_handshake_cpu_ms_median %.4f\n",
	       server_hs[count / 2] / 1e6);
	printf("server_ssl_cpu_ms %.4f\n", sum_all / 1e6 / count);
	printf("client_handshake_cpu_ms %.4f\n", sum_client / 1e6 / count);
	printf("wall_ms %.4f\n", wall / 1e6 / count);
	printf("timer_overhead_us %.3f\n", overhead / 1e3);

	free(server_hs);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}
