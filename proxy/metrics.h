/*
 * metrics.h - the counters behind [metrics] (proxy/metricsd.h serves
 * them): what the network process did, counted where it happens and summed
 * only when scraped.
 *
 * Ownership and threads: one registry per network process
 * (metrics_create() on the main thread before any loop starts,
 * metrics_destroy() after every loop has ended).  It holds one slot of
 * counters per thread that counts: one per worker loop and one for the
 * control loop.  A thread binds its slot once (metrics_bind()); from then
 * on the metrics_*() calls below count into that slot, written by that
 * thread alone, as relaxed atomic loads and stores (no locked
 * instruction; the slots are separate allocations, so two threads seldom
 * write one cache line, and only the few per-listener counters can).  A scrape
 * (any thread) reads every slot with relaxed loads and adds them up: a
 * scrape may see one slot a few increments older than another, never a
 * torn value or a counter going backwards.  A thread with no slot bound
 * (unit tests, -t, --check-backend) counts nothing: every call is a no-op.
 *
 * Labels are bounded: listeners by index (the listener sections, which a
 * reload never changes), small enums, and three interned name tables
 * (ciphers, key-exchange groups, backend addresses) of fixed size whose
 * overflow counts as "other".  Never a label per client address or per
 * user (DESIGN.md, "Visibility").
 *
 * The gauges that are state rather than counts (sessions open, backends up,
 * the auth helper's PAM workers) are read at scrape time from where the
 * state lives: proxy/shared.h (under its lock, for a copy) and the helper's
 * stats page (auth/helperstats.h).
 */
#ifndef SUBMITPROXY_METRICS_H
#define SUBMITPROXY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct helper_stats;
struct shared;

/* Connections refused before any SMTP (or TLS), by reason. */
enum metrics_refusal {
	METRICS_REFUSED_MAX_CONNECTIONS,
	METRICS_REFUSED_PER_ADDRESS,
	METRICS_REFUSED_EARLY_TALKER,
	METRICS_REFUSED_PROXY_ERROR, /* bad or late PROXY header */
	METRICS_REFUSED_SHUTTING_DOWN,
	METRICS_REFUSED_COUNT
};

/* A protocol version: what a handshake negotiated, or the highest one a
 * refused client offered. */
enum metrics_tls_version {
	METRICS_TLS_SSL3,
	METRICS_TLS_1_0,
	METRICS_TLS_1_1,
	METRICS_TLS_1_2,
	METRICS_TLS_1_3,
	METRICS_TLS_UNKNOWN,
	METRICS_TLS_VERSION_COUNT
};

/* Why a handshake failed. */
enum metrics_tls_failure {
	METRICS_TLS_FAIL_NO_SHARED_CIPHER,
	METRICS_TLS_FAIL_PROTOCOL_VERSION, /* the client's best is too old */
	METRICS_TLS_FAIL_ALPN,
	METRICS_TLS_FAIL_TIMEOUT,
	METRICS_TLS_FAIL_BAD_CERTIFICATE, /* client certificate refused */
	METRICS_TLS_FAIL_CERTIFICATE_REQUIRED, /* ... or none given */
	/* The client's alert refused ours (unknown CA, bad certificate):
	 * a self-signed or incomplete chain shows here. */
	METRICS_TLS_FAIL_SERVER_CERTIFICATE_REFUSED,
	METRICS_TLS_FAIL_NOT_TLS, /* plaintext on a TLS port, garbage */
	METRICS_TLS_FAIL_CLOSED,  /* the client left mid-handshake */
	METRICS_TLS_FAIL_OTHER,
	METRICS_TLS_FAILURE_COUNT
};

enum metrics_sni {
	METRICS_SNI_MATCHED,
	METRICS_SNI_UNMATCHED,
	METRICS_SNI_ABSENT,
	METRICS_SNI_COUNT
};

/* Client certificates, by how far each got (a mapped one was also
 * verified and presented, and is counted under all three). */
enum metrics_client_cert {
	METRICS_CERT_PRESENTED,
	METRICS_CERT_VERIFIED,
	METRICS_CERT_MAPPED,
	METRICS_CERT_COUNT
};

enum metrics_auth_mech {
	METRICS_MECH_PLAIN,
	METRICS_MECH_LOGIN,
	METRICS_MECH_EXTERNAL,
	METRICS_MECH_COUNT
};

/* How an AUTH ended. */
enum metrics_auth_result {
	METRICS_AUTH_OK,	       /* logged in and handed to a backend */
	METRICS_AUTH_BAD_CREDENTIALS,  /* 535 (PAM, or EXTERNAL refused) */
	METRICS_AUTH_THROTTLED_CONNECTION, /* max_failures this session */
	METRICS_AUTH_THROTTLED_ADDRESS,
	METRICS_AUTH_THROTTLED_USER,
	METRICS_AUTH_HELPER_UNAVAILABLE, /* helper lost, busy, timed out */
	METRICS_AUTH_BACKEND_UNAVAILABLE, /* PAM said yes, no backend took it */
	METRICS_AUTH_STORE_UNAVAILABLE,   /* the policy store failed */
	METRICS_AUTH_RESULT_COUNT
};

enum metrics_backend_error {
	METRICS_BACKEND_REFUSED, /* connect refused, or its greeting a 4xx/5xx */
	METRICS_BACKEND_TIMEOUT,
	METRICS_BACKEND_LOST,	   /* the connection broke mid-session */
	METRICS_BACKEND_BAD_REPLY, /* unparsable, or an unexpected reply */
	METRICS_BACKEND_ERROR_COUNT
};

struct metrics;

/* nworkers: the worker loops (slots 0..nworkers-1; the control loop is
 * slot nworkers).  The listener names and the listener count come from
 * cfg, copied.  sh (read at scrape time) and stats (the helper's page, or
 * NULL) outlive the registry. */
struct metrics *metrics_create(const struct config *cfg, unsigned nworkers,
			       struct shared *sh,
			       const struct helper_stats *stats);
void metrics_destroy(struct metrics *m);

/* The calling thread counts into slot from now on (METRICS_SLOT_CONTROL:
 * the control loop's).  metrics_bind(NULL, 0) unbinds. */
#define METRICS_SLOT_CONTROL UINT32_MAX
void metrics_bind(struct metrics *m, unsigned slot);

/* ---- counting (the calling thread's slot; no-ops without one) ---- */

void metrics_conn_accepted(size_t listener);
void metrics_conn_refused(size_t listener, enum metrics_refusal why);

/* A handshake done: version, cipher and group as OpenSSL names them
 * ("TLSv1.3", "TLS_AES_128_GCM_SHA256", "x25519"; NULL is "unknown"). */
void metrics_tls_ok(size_t listener, const char *version, const char *cipher,
		    const char *group, enum metrics_sni sni);
void metrics_tls_failed(size_t listener, enum metrics_tls_failure why,
			enum metrics_tls_version client_max);
void metrics_tls_client_cert(size_t listener, enum metrics_client_cert how);

/* "TLSv1.2" and the like; METRICS_TLS_UNKNOWN for anything else. */
enum metrics_tls_version metrics_tls_version_parse(const char *name);
/* A version as the wire carries it (0x0303 ...). */
enum metrics_tls_version metrics_tls_version_wire(unsigned v);
const char *metrics_tls_version_name(enum metrics_tls_version v);

void metrics_auth(enum metrics_auth_mech mech, enum metrics_auth_result r);

/* A message's end: the backend's reply code to the end of DATA (or to
 * BDAT LAST), the recipients it had accepted and the message's size. */
void metrics_transaction(unsigned reply_code, unsigned rcpts,
			 uint64_t bytes);
void metrics_session_closed(uint64_t duration_ms);

/* A connection to backend (its address as configured) reached its
 * greeting in elapsed_us; or failed, or broke. */
void metrics_backend_connected(const char *backend, uint64_t elapsed_us);
void metrics_backend_error(const char *backend, enum metrics_backend_error e);
void metrics_backend_probe(const char *backend, bool ok);

/* The auth helper, as this loop sees it: a request sent; its end after
 * elapsed_us (answered by the helper, timed out, cancelled by a session
 * that ended first, or lost with the channel); the channel lost (the loop
 * can no longer log anyone in). */
enum metrics_helper_outcome {
	METRICS_HELPER_ANSWERED,
	METRICS_HELPER_TIMEOUT,
	METRICS_HELPER_CANCELLED,
	METRICS_HELPER_LOST,
	METRICS_HELPER_OUTCOME_COUNT
};
void metrics_helper_sent(void);
void metrics_helper_done(uint64_t elapsed_us, enum metrics_helper_outcome o);
void metrics_helper_lost(void);

/* A reload's result (control loop); when: the wall clock of a good one. */
void metrics_reload(bool ok, time_t when);

/* The process is stopping (the control loop, at SIGTERM): /healthz
 * answers 503 "stopping" from now on. */
void metrics_stopping(struct metrics *m);

/* ---- reading (any thread) ---- */

/* Growable text, for a scrape. */
struct metrics_text {
	char *data;
	size_t len, cap;
};
void metrics_text_free(struct metrics_text *t);

/* The Prometheus text exposition (version 0.0.4; every family with # HELP
 * and # TYPE).  Returns 0, or -1 out of memory (t is then freed). */
int metrics_render(struct metrics *m, struct metrics_text *t);

/* /healthz: false while stopping; else true when the auth helper answers
 * (every loop's channel up, one PAM worker alive, and no loop whose last
 * METRICS_HELPER_TIMEOUTS requests all timed out, the last of them less
 * than METRICS_HELPER_TIMEOUT_STALE_MS ago) and at least one backend of
 * the current configuration is not down; else false with a one-line
 * reason. */
#define METRICS_HELPER_TIMEOUTS 3
#define METRICS_HELPER_TIMEOUT_STALE_MS 30000
bool metrics_healthy(struct metrics *m, char *reason, size_t reason_size);
/* The same at now_ms of metrics_now_ms()'s clock (tests). */
bool metrics_healthy_at(struct metrics *m, uint64_t now_ms, char *reason,
			size_t reason_size);
/* CLOCK_MONOTONIC, in milliseconds. */
uint64_t metrics_now_ms(void);

#endif
