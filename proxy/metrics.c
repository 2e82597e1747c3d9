/*
 * metrics.c - see metrics.h.
 *
 * A slot is written by one thread only, so an increment is a relaxed load
 * and a relaxed store (a plain move on x86-64), not a locked add.  The
 * three name tables are shared by every thread: names are only ever added
 * (compare-and-swap into the first empty entry), never removed or moved,
 * so an index stays the same name for the life of the process, and a
 * scrape can merge the slots' series by index.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/helperstats.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/metrics.h"
#include "proxy/shared.h"

typedef atomic_uint_fast64_t counter;

static inline void counter_add(counter *c, uint64_t n)
{
	atomic_store_explicit(
	    c, atomic_load_explicit(c, memory_order_relaxed) + n,
	    memory_order_relaxed);
}

static inline uint64_t counter_get(counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- names ---- */

#define NAMES_CIPHERS 48
#define NAMES_GROUPS 24
#define NAMES_BACKENDS 48 /* a reload may bring new addresses */

/* Entries 0..cap-2 are names; cap-1 is "other", where overflow counts. */
struct names {
	size_t cap;
	_Atomic(char *) *name;
};

static void names_init(struct names *t, size_t cap)
{
	t->cap = cap;
	t->name = xcalloc(cap, sizeof(t->name[0]));
	for (size_t i = 0; i < cap; i++)
		atomic_init(&t->name[i], NULL);
}

static void names_finish(struct names *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(atomic_load(&t->name[i]));
	free(t->name);
}

static size_t names_index(struct names *t, const char *name)
{
	char *mine = NULL;

	if (name == NULL || *name == '\0')
		name = "unknown";
	for (size_t i = 0; i + 1 < t->cap; i++) {
		char *p = atomic_load_explicit(&t->name[i],
					       memory_order_acquire);

		if (p == NULL) {
			if (mine == NULL)
				mine = xstrdup(name);
			if (atomic_compare_exchange_strong_explicit(
				&t->name[i], &p, mine, memory_order_acq_rel,
				memory_order_acquire))
				return i;
			/* Another thread took the entry: p is its name. */
		}
		if (strcmp(p, name) == 0) {
			free(mine);
			return i;
		}
	}
	free(mine);
	return t->cap - 1;
}

static const char *names_get(struct names *t, size_t i)
{
	const char *p;

	if (i + 1 >= t->cap)
		return "other";
	p = atomic_load_explicit(&t->name[i], memory_order_acquire);
	return p != NULL ? p : "other";
}

/* ---- histograms ---- */

#define HIST_MAX_BOUNDS 14

/* Upper bounds in the unit the code counts in; scale: how many of those
 * make one of the unit shown (bytes 1, milliseconds 1000 a second ...). */
struct hist_def {
	const char *name, *help;
	size_t n;
	uint64_t bounds[HIST_MAX_BOUNDS];
	double scale;
};

struct hist {
	counter bucket[HIST_MAX_BOUNDS + 1]; /* not cumulative; +Inf last */
	counter sum;
};

static void hist_observe(struct hist *h, const struct hist_def *d,
			 uint64_t v)
{
	size_t i = 0;

	while (i < d->n && v > d->bounds[i])
		i++;
	counter_add(&h->bucket[i], 1);
	counter_add(&h->sum, v);
}

static const struct hist_def hist_message_size = {
    "submitproxy_message_size_bytes",
    "Size of the messages the backend accepted, as relayed.",
    9,
    {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
     67108864},
    1,
};

static const struct hist_def hist_session_duration = {
    "submitproxy_session_duration_seconds",
    "How long client sessions lasted, connect to close.",
    12,
    {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
     1800000},
    1000,
};

static const struct hist_def hist_backend_connect = {
    "submitproxy_backend_connect_seconds",
    "Time from starting a backend connection to its greeting.",
    12,
    {500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
     1000000, 5000000},
    1e6,
};

static const struct hist_def hist_helper_answer = {
    "submitproxy_auth_helper_answer_seconds",
    "Time from a request to the auth helper to its answer.",
    13,
    {1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
     1000000, 2500000, 5000000, 10000000},
    1e6,
};

/* ---- a slot ---- */

#define TLS_COMBOS 96

/* One negotiated (listener, version, cipher, group) and its count.  key
 * is written once, before ncombos covers the entry. */
struct tls_combo {
	uint32_t key;
	counter n;
};

static uint32_t combo_key(size_t listener, unsigned version, size_t cipher,
			  size_t group)
{
	return (uint32_t)listener << 24 | (uint32_t)version << 16 |
	       (uint32_t)cipher << 8 | (uint32_t)group;
}

struct metrics_slot {
	/* [listener * N + i] */
	counter *conn_accepted;	 /* [nl] */
	counter *conn_refused;	 /* [nl][METRICS_REFUSED_COUNT] */
	counter *tls_failed;	 /* [nl][METRICS_TLS_FAILURE_COUNT] */
	counter *tls_old_client; /* [nl][METRICS_TLS_VERSION_COUNT] */
	counter *tls_sni;	 /* [nl][METRICS_SNI_COUNT] */
	counter *tls_cert;	 /* [nl][METRICS_CERT_COUNT] */
	counter *tls_overflow;	 /* [nl][METRICS_TLS_VERSION_COUNT] */
	struct tls_combo combos[TLS_COMBOS];
	atomic_size_t ncombos;

	counter auth[METRICS_MECH_COUNT][METRICS_AUTH_RESULT_COUNT];

	counter tx[3]; /* 2xx, 4xx, 5xx */
	counter rcpts, msg_bytes;
	struct hist msg_size;
	struct hist duration;

	struct hist backend_connect[NAMES_BACKENDS];
	counter backend_error[NAMES_BACKENDS][METRICS_BACKEND_ERROR_COUNT];
	counter probe[NAMES_BACKENDS][2]; /* ok, failed */

	counter helper_sent;
	counter helper_done[METRICS_HELPER_OUTCOME_COUNT];
	struct hist helper_answer;
	counter helper_timeouts_in_a_row;
	counter helper_last_timeout_ms; /* metrics_now_ms() */
	atomic_bool helper_lost;

	counter reloads[2]; /* ok, failed */
	counter last_reload_ok;
};

struct metrics {
	size_t nlisteners;
	char **listener_names;
	unsigned nslots; /* workers, then the control loop */
	struct metrics_slot *slots;
	struct names ciphers, groups, backends;
	struct shared *shared;
	const struct helper_stats *helper;
	time_t started;
	atomic_bool stopping;
};

static _Thread_local struct metrics_slot *metrics_here;
static _Thread_local struct metrics *metrics_here_m;

static void slot_init(struct metrics_slot *s, size_t nl)
{
	/* calloc'd counters are zero: all-bits-zero is a valid atomic 0 on
	 * every platform C11 atomics run on here (as libuv assumes too). */
	s->conn_accepted = xcalloc(nl, sizeof(counter));
	s->conn_refused = xcalloc(nl * METRICS_REFUSED_COUNT, sizeof(counter));
	s->tls_failed =
	    xcalloc(nl * METRICS_TLS_FAILURE_COUNT, sizeof(counter));
	s->tls_old_client =
	    xcalloc(nl * METRICS_TLS_VERSION_COUNT, sizeof(counter));
	s->tls_sni = xcalloc(nl * METRICS_SNI_COUNT, sizeof(counter));
	s->tls_cert = xcalloc(nl * METRICS_CERT_COUNT, sizeof(counter));
	s->tls_overflow =
	    xcalloc(nl * METRICS_TLS_VERSION_COUNT, sizeof(counter));
}

static void slot_finish(struct metrics_slot *s)
{
	free(s->conn_accepted);
	free(s->conn_refused);
	free(s->tls_failed);
	free(s->tls_old_client);
	free(s->tls_sni);
	free(s->tls_cert);
	free(s->tls_overflow);
}

struct metrics *metrics_create(const struct config *cfg, unsigned nworkers,
			       struct shared *sh,
			       const struct helper_stats *stats)
{
	struct metrics *m = xcalloc(1, sizeof(*m));

	m->nlisteners = cfg->nlisteners;
	m->listener_names = xcalloc(m->nlisteners + 1, sizeof(char *));
	for (size_t i = 0; i < m->nlisteners; i++)
		m->listener_names[i] = xstrdup(cfg->listeners[i].name);
	m->nslots = nworkers + 1;
	m->slots = xcalloc(m->nslots, sizeof(m->slots[0]));
	for (unsigned i = 0; i < m->nslots; i++)
		slot_init(&m->slots[i], m->nlisteners > 0 ? m->nlisteners : 1);
	names_init(&m->ciphers, NAMES_CIPHERS);
	names_init(&m->groups, NAMES_GROUPS);
	names_init(&m->backends, NAMES_BACKENDS);
	m->shared = sh;
	m->helper = stats;
	m->started = time(NULL);
	atomic_init(&m->stopping, false);
	return m;
}

void metrics_destroy(struct metrics *m)
{
	if (m == NULL)
		return;
	for (unsigned i = 0; i < m->nslots; i++)
		slot_finish(&m->slots[i]);
	free(m->slots);
	for (size_t i = 0; i < m->nlisteners; i++)
		free(m->listener_names[i]);
	free(m->listener_names);
	names_finish(&m->ciphers);
	names_finish(&m->groups);
	names_finish(&m->backends);
	free(m);
}

void metrics_stopping(struct metrics *m)
{
	if (m != NULL)
		atomic_store(&m->stopping, true);
}

void metrics_bind(struct metrics *m, unsigned slot)
{
	if (m == NULL) {
		metrics_here = NULL;
		metrics_here_m = NULL;
		return;
	}
	if (slot == METRICS_SLOT_CONTROL || slot >= m->nslots)
		slot = m->nslots - 1;
	metrics_here = &m->slots[slot];
	metrics_here_m = m;
}

/* ---- counting ---- */

/* The slot, and a listener index that is in range. */
#define HERE_LISTENER(s, l)                                                   \
	struct metrics_slot *s = metrics_here;                                \
	if (s == NULL || (l) >= metrics_here_m->nlisteners)                   \
		return

void metrics_conn_accepted(size_t listener)
{
	HERE_LISTENER(s, listener);
	counter_add(&s->conn_accepted[listener], 1);
}

void metrics_conn_refused(size_t listener, enum metrics_refusal why)
{
	HERE_LISTENER(s, listener);
	if ((unsigned)why >= METRICS_REFUSED_COUNT)
		return;
	counter_add(&s->conn_refused[listener * METRICS_REFUSED_COUNT + why],
		    1);
}

static const char *const tls_version_names[] = {
    [METRICS_TLS_SSL3] = "SSLv3",     [METRICS_TLS_1_0] = "TLSv1",
    [METRICS_TLS_1_1] = "TLSv1.1",    [METRICS_TLS_1_2] = "TLSv1.2",
    [METRICS_TLS_1_3] = "TLSv1.3",    [METRICS_TLS_UNKNOWN] = "unknown",
};
static_assert(sizeof(tls_version_names) / sizeof(tls_version_names[0]) ==
		  METRICS_TLS_VERSION_COUNT,
	      "one name per TLS version");

enum metrics_tls_version metrics_tls_version_parse(const char *name)
{
	for (unsigned i = 0; i < METRICS_TLS_UNKNOWN; i++)
		if (name != NULL && strcmp(name, tls_version_names[i]) == 0)
			return (enum metrics_tls_version)i;
	return METRICS_TLS_UNKNOWN;
}

enum metrics_tls_version metrics_tls_version_wire(unsigned v)
{
	switch (v) {
	case 0x0300:
		return METRICS_TLS_SSL3;
	case 0x0301:
		return METRICS_TLS_1_0;
	case 0x0302:
		return METRICS_TLS_1_1;
	case 0x0303:
		return METRICS_TLS_1_2;
	case 0x0304:
		return METRICS_TLS_1_3;
	default:
		return METRICS_TLS_UNKNOWN;
	}
}

const char *metrics_tls_version_name(enum metrics_tls_version v)
{
	if ((unsigned)v >= METRICS_TLS_VERSION_COUNT)
		v = METRICS_TLS_UNKNOWN;
	return tls_version_names[v];
}

void metrics_tls_ok(size_t listener, const char *version, const char *cipher,
		    const char *group, enum metrics_sni sni)
{
	HERE_LISTENER(s, listener);
	struct metrics *m = metrics_here_m;
	unsigned v = metrics_tls_version_parse(version);
	uint32_t key;
	size_t n, i;

	if ((unsigned)sni < METRICS_SNI_COUNT)
		counter_add(&s->tls_sni[listener * METRICS_SNI_COUNT + sni],
			    1);
	if (listener > 0xff) {
		counter_add(&s->tls_overflow[listener *
						 METRICS_TLS_VERSION_COUNT +
					     v],
			    1);
		return;
	}
	key = combo_key(listener, v, names_index(&m->ciphers, cipher),
			names_index(&m->groups, group));
	n = atomic_load_explicit(&s->ncombos, memory_order_relaxed);
	for (i = 0; i < n; i++)
		if (s->combos[i].key == key) {
			counter_add(&s->combos[i].n, 1);
			return;
		}
	if (n == TLS_COMBOS) {
		counter_add(
		    &s->tls_overflow[listener * METRICS_TLS_VERSION_COUNT + v],
		    1);
		return;
	}
	s->combos[n].key = key;
	atomic_store_explicit(&s->combos[n].n, 1, memory_order_relaxed);
	/* Release: a scrape that sees the new count sees key and n. */
	atomic_store_explicit(&s->ncombos, n + 1, memory_order_release);
}

void metrics_tls_failed(size_t listener, enum metrics_tls_failure why,
			enum metrics_tls_version client_max)
{
	HERE_LISTENER(s, listener);
	if ((unsigned)why >= METRICS_TLS_FAILURE_COUNT)
		why = METRICS_TLS_FAIL_OTHER;
	counter_add(&s->tls_failed[listener * METRICS_TLS_FAILURE_COUNT + why],
		    1);
	if (why == METRICS_TLS_FAIL_PROTOCOL_VERSION) {
		if ((unsigned)client_max >= METRICS_TLS_VERSION_COUNT)
			client_max = METRICS_TLS_UNKNOWN;
		counter_add(&s->tls_old_client[listener *
						   METRICS_TLS_VERSION_COUNT +
					       client_max],
			    1);
	}
}

void metrics_tls_client_cert(size_t listener, enum metrics_client_cert how)
{
	HERE_LISTENER(s, listener);
	if ((unsigned)how >= METRICS_CERT_COUNT)
		return;
	counter_add(&s->tls_cert[listener * METRICS_CERT_COUNT + how], 1);
}

void metrics_auth(enum metrics_auth_mech mech, enum metrics_auth_result r)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL || (unsigned)mech >= METRICS_MECH_COUNT ||
	    (unsigned)r >= METRICS_AUTH_RESULT_COUNT)
		return;
	counter_add(&s->auth[mech][r], 1);
}

void metrics_transaction(unsigned reply_code, unsigned rcpts,
			 uint64_t bytes)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL)
		return;
	switch (reply_code / 100) {
	case 2:
		counter_add(&s->tx[0], 1);
		counter_add(&s->rcpts, rcpts);
		counter_add(&s->msg_bytes, bytes);
		hist_observe(&s->msg_size, &hist_message_size, bytes);
		break;
	case 4:
		counter_add(&s->tx[1], 1);
		break;
	default:
		counter_add(&s->tx[2], 1);
		break;
	}
}

void metrics_session_closed(uint64_t duration_ms)
{
	struct metrics_slot *s = metrics_here;

	if (s != NULL)
		hist_observe(&s->duration, &hist_session_duration,
			     duration_ms);
}

void metrics_backend_connected(const char *backend, uint64_t elapsed_us)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL)
		return;
	hist_observe(
	    &s->backend_connect[names_index(&metrics_here_m->backends, backend)],
	    &hist_backend_connect, elapsed_us);
}

void metrics_backend_error(const char *backend, enum metrics_backend_error e)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL || (unsigned)e >= METRICS_BACKEND_ERROR_COUNT)
		return;
	counter_add(
	    &s->backend_error[names_index(&metrics_here_m->backends, backend)]
			     [e],
	    1);
}

void metrics_backend_probe(const char *backend, bool ok)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL)
		return;
	counter_add(&s->probe[names_index(&metrics_here_m->backends, backend)]
			     [ok ? 0 : 1],
		    1);
}

uint64_t metrics_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void metrics_helper_sent(void)
{
	struct metrics_slot *s = metrics_here;

	if (s != NULL)
		counter_add(&s->helper_sent, 1);
}

void metrics_helper_done(uint64_t elapsed_us, enum metrics_helper_outcome o)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL || (unsigned)o >= METRICS_HELPER_OUTCOME_COUNT)
		return;
	counter_add(&s->helper_done[o], 1);
	if (o == METRICS_HELPER_ANSWERED) {
		hist_observe(&s->helper_answer, &hist_helper_answer,
			     elapsed_us);
		atomic_store_explicit(&s->helper_timeouts_in_a_row, 0,
				      memory_order_relaxed);
	} else if (o == METRICS_HELPER_TIMEOUT) {
		counter_add(&s->helper_timeouts_in_a_row, 1);
		atomic_store_explicit(&s->helper_last_timeout_ms,
				      metrics_now_ms(), memory_order_relaxed);
	}
}

void metrics_helper_lost(void)
{
	struct metrics_slot *s = metrics_here;

	if (s != NULL)
		atomic_store_explicit(&s->helper_lost, true,
				      memory_order_relaxed);
}

void metrics_reload(bool ok, time_t when)
{
	struct metrics_slot *s = metrics_here;

	if (s == NULL)
		return;
	counter_add(&s->reloads[ok ? 0 : 1], 1);
	if (ok)
		atomic_store_explicit(&s->last_reload_ok, (uint64_t)when,
				      memory_order_relaxed);
}

/* ---- rendering ---- */

void metrics_text_free(struct metrics_text *t)
{
	free(t->data);
	memset(t, 0, sizeof(*t));
}

static void text_add(struct metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_add(struct metrics_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt,
			      ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		t->cap = t->cap ? t->cap * 2 : 16384;
		while (t->cap - t->len <= (size_t)n)
			t->cap *= 2;
		t->data = xrealloc(t->data, t->cap);
	}
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static const char *label(char *buf, size_t size, const char *v)
{
	size_t o = 0;

	for (; *v != '\0' && o + 3 < size; v++) {
		if (*v == '\\' || *v == '"') {
			buf[o++] = '\\';
			buf[o++] = *v;
		} else if (*v == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *v;
		}
	}
	buf[o] = '\0';
	return buf;
}

static void family(struct metrics_text *t, const char *name,
		   const char *type, const char *help)
{
	text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The sum over the slots of the counter at offset in a slot. */
static uint64_t slot_sum(struct metrics *m, size_t offset)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < m->nslots; i++)
		sum += counter_get((counter *)((char *)&m->slots[i] + offset));
	return sum;
}

#define SUM(m, field) slot_sum((m), offsetof(struct metrics_slot, field))

static const char *const refusal_names[] = {
    [METRICS_REFUSED_MAX_CONNECTIONS] = "max_connections",
    [METRICS_REFUSED_PER_ADDRESS] = "max_connections_per_address",
    [METRICS_REFUSED_EARLY_TALKER] = "early_talker",
    [METRICS_REFUSED_PROXY_ERROR] = "proxy_error",
    [METRICS_REFUSED_SHUTTING_DOWN] = "shutting_down",
};
static_assert(sizeof(refusal_names) / sizeof(refusal_names[0]) ==
		  METRICS_REFUSED_COUNT,
	      "one name per refusal");

static const char *const tls_failure_names[] = {
    [METRICS_TLS_FAIL_NO_SHARED_CIPHER] = "no_shared_cipher",
    [METRICS_TLS_FAIL_PROTOCOL_VERSION] = "protocol_version",
    [METRICS_TLS_FAIL_ALPN] = "alpn",
    [METRICS_TLS_FAIL_TIMEOUT] = "timeout",
    [METRICS_TLS_FAIL_BAD_CERTIFICATE] = "bad_certificate",
    [METRICS_TLS_FAIL_CERTIFICATE_REQUIRED] = "certificate_required",
    [METRICS_TLS_FAIL_SERVER_CERTIFICATE_REFUSED] =
	"server_certificate_refused",
    [METRICS_TLS_FAIL_NOT_TLS] = "not_tls",
    [METRICS_TLS_FAIL_CLOSED] = "closed",
    [METRICS_TLS_FAIL_OTHER] = "other",
};
static_assert(sizeof(tls_failure_names) / sizeof(tls_failure_names[0]) ==
		  METRICS_TLS_FAILURE_COUNT,
	      "one name per TLS failure");

static const char *const sni_names[] = {
    [METRICS_SNI_MATCHED] = "matched",
    [METRICS_SNI_UNMATCHED] = "unmatched",
    [METRICS_SNI_ABSENT] = "absent",
};
static_assert(sizeof(sni_names) / sizeof(sni_names[0]) == METRICS_SNI_COUNT,
	      "one name per SNI outcome");

static const char *const cert_names[] = {
    [METRICS_CERT_PRESENTED] = "presented",
    [METRICS_CERT_VERIFIED] = "verified",
    [METRICS_CERT_MAPPED] = "mapped",
};
static_assert(sizeof(cert_names) / sizeof(cert_names[0]) == METRICS_CERT_COUNT,
	      "one name per client certificate stage");

static const char *const mech_names[] = {
    [METRICS_MECH_PLAIN] = "PLAIN",
    [METRICS_MECH_LOGIN] = "LOGIN",
    [METRICS_MECH_EXTERNAL] = "EXTERNAL",
};
static_assert(sizeof(mech_names) / sizeof(mech_names[0]) == METRICS_MECH_COUNT,
	      "one name per mechanism");

static const char *const auth_result_names[] = {
    [METRICS_AUTH_OK] = "ok",
    [METRICS_AUTH_BAD_CREDENTIALS] = "bad_credentials",
    [METRICS_AUTH_THROTTLED_CONNECTION] = "throttled_connection",
    [METRICS_AUTH_THROTTLED_ADDRESS] = "throttled_address",
    [METRICS_AUTH_THROTTLED_USER] = "throttled_user",
    [METRICS_AUTH_HELPER_UNAVAILABLE] = "helper_unavailable",
    [METRICS_AUTH_BACKEND_UNAVAILABLE] = "backend_unavailable",
    [METRICS_AUTH_STORE_UNAVAILABLE] = "store_unavailable",
};
static_assert(sizeof(auth_result_names) / sizeof(auth_result_names[0]) ==
		  METRICS_AUTH_RESULT_COUNT,
	      "one name per AUTH result");

static const char *const backend_error_names[] = {
    [METRICS_BACKEND_REFUSED] = "refused",
    [METRICS_BACKEND_TIMEOUT] = "timeout",
    [METRICS_BACKEND_LOST] = "lost",
    [METRICS_BACKEND_BAD_REPLY] = "bad_reply",
};
static_assert(sizeof(backend_error_names) / sizeof(backend_error_names[0]) ==
		  METRICS_BACKEND_ERROR_COUNT,
	      "one name per backend error");

static const char *const helper_outcome_names[] = {
    [METRICS_HELPER_ANSWERED] = "answered",
    [METRICS_HELPER_TIMEOUT] = "timeout",
    [METRICS_HELPER_CANCELLED] = "cancelled",
    [METRICS_HELPER_LOST] = "lost",
};
static_assert(sizeof(helper_outcome_names) / sizeof(helper_outcome_names[0]) ==
		  METRICS_HELPER_OUTCOME_COUNT,
	      "one name per helper outcome");

/* A per-listener table of n columns (the slot's counter array at
 * offset): every cell, zero or not, so that each series a dashboard or an
 * alert names exists from the first scrape (listeners times a small enum:
 * bounded). */
static void render_listener_table(struct metrics_text *t, struct metrics *m,
				  size_t offset, size_t n,
				  const char *metric, const char *lname,
				  const char *const *names)
{
	char l[256];

	for (size_t li = 0; li < m->nlisteners; li++)
		for (size_t j = 0; j < n; j++) {
			uint64_t v = 0;

			for (unsigned i = 0; i < m->nslots; i++) {
				counter *base =
				    (counter *)((char *)&m->slots[i] + offset);

				v += counter_get(&(*(counter **)base)[li * n + j]);
			}
			text_add(t, "%s{listener=\"%s\",%s=\"%s\"} %llu\n",
				 metric,
				 label(l, sizeof(l), m->listener_names[li]),
				 lname, names[j], (unsigned long long)v);
		}
}

/* A bound or a sum in the unit shown: exact.  %g's six digits made
 * le="4.1943e+06" of the 4194304-byte bound (a scraper compares
 * observations with the le it reads) and cut a byte sum past a million;
 * a sum of whole units (bytes) is printed as the integer it is, the
 * others with every digit a double holds of the bounds and of sums of
 * microseconds. */
static void hist_number(char *buf, size_t size, uint64_t v, double scale)
{
	if (scale == 1)
		snprintf(buf, size, "%llu", (unsigned long long)v);
	else
		snprintf(buf, size, "%.15g", (double)v / scale);
}

static void render_hist(struct metrics_text *t, const struct hist_def *d,
			const char *labels, const uint64_t *buckets,
			uint64_t sum)
{
	uint64_t cum = 0;
	char num[32];

	for (size_t i = 0; i <= d->n; i++) {
		cum += buckets[i];
		if (i < d->n) {
			hist_number(num, sizeof(num), d->bounds[i], d->scale);
			text_add(t, "%s_bucket{%s%sle=\"%s\"} %llu\n", d->name,
				 labels, *labels ? "," : "", num,
				 (unsigned long long)cum);
		} else {
			text_add(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n",
				 d->name, labels, *labels ? "," : "",
				 (unsigned long long)cum);
		}
	}
	hist_number(num, sizeof(num), sum, d->scale);
	if (*labels)
		text_add(t, "%s_sum{%s} %s\n%s_count{%s} %llu\n", d->name,
			 labels, num, d->name, labels,
			 (unsigned long long)cum);
	else
		text_add(t, "%s_sum %s\n%s_count %llu\n", d->name, num,
			 d->name, (unsigned long long)cum);
}

/* Sums a histogram over the slots; h_of(slot) names the slot's copy. */
static void hist_sum(struct metrics *m, size_t offset, uint64_t *buckets,
		     uint64_t *sum)
{
	memset(buckets, 0, sizeof(uint64_t) * (HIST_MAX_BOUNDS + 1));
	*sum = 0;
	for (unsigned i = 0; i < m->nslots; i++) {
		struct hist *h =
		    (struct hist *)((char *)&m->slots[i] + offset);

		for (size_t b = 0; b <= HIST_MAX_BOUNDS; b++)
			buckets[b] += counter_get(&h->bucket[b]);
		*sum += counter_get(&h->sum);
	}
}

static int combo_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct tls_combo *)a)->key;
	uint32_t y = ((const struct tls_combo *)b)->key;

	return x < y ? -1 : x > y;
}

static void render_tls(struct metrics_text *t, struct metrics *m)
{
	size_t cap = (size_t)m->nslots *
		     (TLS_COMBOS + m->nlisteners * METRICS_TLS_VERSION_COUNT);
	struct tls_combo *all = xcalloc(cap ? cap : 1, sizeof(*all));
	size_t n = 0;
	char l[256], c[256], g[256];

	for (unsigned i = 0; i < m->nslots; i++) {
		struct metrics_slot *s = &m->slots[i];
		size_t k = atomic_load_explicit(&s->ncombos,
						memory_order_acquire);

		for (size_t j = 0; j < k; j++) {
			all[n].key = s->combos[j].key;
			atomic_init(&all[n].n, counter_get(&s->combos[j].n));
			n++;
		}
		for (size_t li = 0; li < m->nlisteners && li <= 0xff; li++)
			for (unsigned v = 0; v < METRICS_TLS_VERSION_COUNT;
			     v++) {
				uint64_t x = counter_get(
				    &s->tls_overflow
					 [li * METRICS_TLS_VERSION_COUNT + v]);

				if (x == 0)
					continue;
				all[n].key = combo_key(li, v,
						       m->ciphers.cap - 1,
						       m->groups.cap - 1);
				atomic_init(&all[n].n, x);
				n++;
			}
	}
	qsort(all, n, sizeof(*all), combo_cmp);
	family(t, "submitproxy_tls_handshakes_total", "counter",
	       "TLS handshakes completed, by listener, protocol version, "
	       "cipher and key-exchange group.");
	for (size_t i = 0; i < n;) {
		uint32_t key = all[i].key;
		uint64_t v = 0;
		size_t li = key >> 24;

		while (i < n && all[i].key == key)
			v += counter_get(&all[i++].n);
		text_add(t,
			 "submitproxy_tls_handshakes_total{listener=\"%s\","
			 "version=\"%s\",cipher=\"%s\",group=\"%s\"} %llu\n",
			 label(l, sizeof(l),
			       li < m->nlisteners ? m->listener_names[li]
						  : "other"),
			 metrics_tls_version_name((key >> 16) & 0xff),
			 label(c, sizeof(c),
			       names_get(&m->ciphers, (key >> 8) & 0xff)),
			 label(g, sizeof(g), names_get(&m->groups, key & 0xff)),
			 (unsigned long long)v);
	}
	free(all);

	family(t, "submitproxy_tls_handshake_failures_total", "counter",
	       "TLS handshakes that failed, by listener and reason.");
	render_listener_table(t, m, offsetof(struct metrics_slot, tls_failed),
			      METRICS_TLS_FAILURE_COUNT,
			      "submitproxy_tls_handshake_failures_total",
			      "reason", tls_failure_names);
	family(t, "submitproxy_tls_old_protocol_clients_total", "counter",
	       "Handshakes refused for an old protocol version, by the "
	       "highest version the client offered.");
	render_listener_table(
	    t, m, offsetof(struct metrics_slot, tls_old_client),
	    METRICS_TLS_VERSION_COUNT,
	    "submitproxy_tls_old_protocol_clients_total", "client_max_version",
	    tls_version_names);
	family(t, "submitproxy_tls_sni_total", "counter",
	       "Completed handshakes by server name indication: a name "
	       "with its own certificate, another name, or none.");
	render_listener_table(t, m, offsetof(struct metrics_slot, tls_sni),
			      METRICS_SNI_COUNT, "submitproxy_tls_sni_total",
			      "sni", sni_names);
	family(t, "submitproxy_tls_client_certificates_total", "counter",
	       "Client certificates presented, verified and mapped to a "
	       "login (each stage counts the ones that reached it).");
	render_listener_table(t, m, offsetof(struct metrics_slot, tls_cert),
			      METRICS_CERT_COUNT,
			      "submitproxy_tls_client_certificates_total",
			      "stage", cert_names);
}

/* Backend name k has series: a name was interned there, or it is the
 * overflow entry and counted something. */
static bool backend_shown(struct metrics *m, size_t k, uint64_t count)
{
	if (k + 1 == m->backends.cap)
		return count > 0;
	return atomic_load_explicit(&m->backends.name[k],
				    memory_order_acquire) != NULL;
}

static void render_backends(struct metrics_text *t, struct metrics *m)
{
	struct shared_backend_status st[CONFIG_BACKENDS_MAX];
	size_t n = shared_backends_status(m->shared, st, CONFIG_BACKENDS_MAX);
	uint64_t buckets[HIST_MAX_BOUNDS + 1], sum;
	char b[256], lb[300];

	/* The configured backends have their series before they count. */
	for (size_t i = 0; i < n; i++)
		(void)names_index(&m->backends, st[i].address);

	family(t, "submitproxy_backend_up", "gauge",
	       "1 when the backend is up or not tried yet (sessions use "
	       "it), 0 when it is down.");
	for (size_t i = 0; i < n; i++)
		text_add(t, "submitproxy_backend_up{backend=\"%s\"} %d\n",
			 label(b, sizeof(b), st[i].address),
			 st[i].state == BACKEND_DOWN ? 0 : 1);
	/* Every name a slot counted under, current backend or not (a
	 * counter never vanishes), and "other" once it counted. */
	family(t, hist_backend_connect.name, "histogram",
	       hist_backend_connect.help);
	for (size_t k = 0; k < m->backends.cap; k++) {
		uint64_t count = 0;

		hist_sum(m,
			 offsetof(struct metrics_slot, backend_connect) +
			     k * sizeof(struct hist),
			 buckets, &sum);
		for (size_t j = 0; j <= HIST_MAX_BOUNDS; j++)
			count += buckets[j];
		if (!backend_shown(m, k, count))
			continue;
		snprintf(lb, sizeof(lb), "backend=\"%s\"",
			 label(b, sizeof(b), names_get(&m->backends, k)));
		render_hist(t, &hist_backend_connect, lb, buckets, sum);
	}
	family(t, "submitproxy_backend_errors_total", "counter",
	       "Backend connections that failed or broke, by kind.");
	for (size_t k = 0; k < m->backends.cap; k++) {
		uint64_t v[METRICS_BACKEND_ERROR_COUNT], any = 0;

		for (size_t e = 0; e < METRICS_BACKEND_ERROR_COUNT; e++) {
			v[e] = 0;
			for (unsigned i = 0; i < m->nslots; i++)
				v[e] += counter_get(
				    &m->slots[i].backend_error[k][e]);
			any += v[e];
		}
		if (!backend_shown(m, k, any))
			continue;
		for (size_t e = 0; e < METRICS_BACKEND_ERROR_COUNT; e++)
			text_add(t,
				 "submitproxy_backend_errors_total{backend="
				 "\"%s\",kind=\"%s\"} %llu\n",
				 label(b, sizeof(b), names_get(&m->backends, k)),
				 backend_error_names[e],
				 (unsigned long long)v[e]);
	}
	family(t, "submitproxy_backend_probes_total", "counter",
	       "Health probes of the backends, by result.");
	for (size_t k = 0; k < m->backends.cap; k++) {
		uint64_t v[2] = {0, 0};

		for (unsigned i = 0; i < m->nslots; i++)
			for (size_t r = 0; r < 2; r++)
				v[r] += counter_get(&m->slots[i].probe[k][r]);
		if (!backend_shown(m, k, v[0] + v[1]))
			continue;
		for (size_t r = 0; r < 2; r++)
			text_add(t,
				 "submitproxy_backend_probes_total{backend="
				 "\"%s\",result=\"%s\"} %llu\n",
				 label(b, sizeof(b), names_get(&m->backends, k)),
				 r == 0 ? "ok" : "failed",
				 (unsigned long long)v[r]);
	}
}

int metrics_render(struct metrics *m, struct metrics_text *t)
{
	uint64_t buckets[HIST_MAX_BOUNDS + 1], sum;
	char l[256];

	memset(t, 0, sizeof(*t));
	family(t, "submitproxy_build_info", "gauge",
	       "Always 1; the version in a label.");
	text_add(t, "submitproxy_build_info{version=\"%s\"} 1\n",
		 SUBMITPROXY_VERSION);
	family(t, "process_start_time_seconds", "gauge",
	       "When the network process started, in seconds since the "
	       "epoch.");
	text_add(t, "process_start_time_seconds %lld\n",
		 (long long)m->started);

	family(t, "submitproxy_connections_accepted_total", "counter",
	       "Connections accepted, by listener (the refused ones "
	       "included: see connections_refused_total).");
	for (size_t li = 0; li < m->nlisteners; li++) {
		uint64_t v = 0;

		for (unsigned i = 0; i < m->nslots; i++)
			v += counter_get(&m->slots[i].conn_accepted[li]);
		text_add(t,
			 "submitproxy_connections_accepted_total{listener="
			 "\"%s\"} %llu\n",
			 label(l, sizeof(l), m->listener_names[li]),
			 (unsigned long long)v);
	}
	family(t, "submitproxy_connections_refused_total", "counter",
	       "Connections refused before the dialogue, by listener and "
	       "reason.");
	render_listener_table(t, m, offsetof(struct metrics_slot, conn_refused),
			      METRICS_REFUSED_COUNT,
			      "submitproxy_connections_refused_total", "reason",
			      refusal_names);
	family(t, "submitproxy_sessions", "gauge", "Client sessions open now.");
	text_add(t, "submitproxy_sessions %u\n",
		 atomic_load(&m->shared->sessions));
	family(t, hist_session_duration.name, "histogram",
	       hist_session_duration.help);
	hist_sum(m, offsetof(struct metrics_slot, duration), buckets, &sum);
	render_hist(t, &hist_session_duration, "", buckets, sum);

	render_tls(t, m);

	family(t, "submitproxy_auth_attempts_total", "counter",
	       "AUTH commands that ended, by mechanism and result.");
	for (size_t a = 0; a < METRICS_MECH_COUNT; a++)
		for (size_t r = 0; r < METRICS_AUTH_RESULT_COUNT; r++) {
			uint64_t v = 0;

			for (unsigned i = 0; i < m->nslots; i++)
				v += counter_get(&m->slots[i].auth[a][r]);
			text_add(t,
				 "submitproxy_auth_attempts_total{mechanism="
				 "\"%s\",result=\"%s\"} %llu\n",
				 mech_names[a], auth_result_names[r],
				 (unsigned long long)v);
		}

	family(t, "submitproxy_transactions_total", "counter",
	       "Messages relayed to the end, by the class of the backend's "
	       "final reply.");
	text_add(t, "submitproxy_transactions_total{reply=\"2xx\"} %llu\n",
		 (unsigned long long)SUM(m, tx[0]));
	text_add(t, "submitproxy_transactions_total{reply=\"4xx\"} %llu\n",
		 (unsigned long long)SUM(m, tx[1]));
	text_add(t, "submitproxy_transactions_total{reply=\"5xx\"} %llu\n",
		 (unsigned long long)SUM(m, tx[2]));
	family(t, "submitproxy_recipients_accepted_total", "counter",
	       "Recipients of the messages the backend accepted.");
	text_add(t, "submitproxy_recipients_accepted_total %llu\n",
		 (unsigned long long)SUM(m, rcpts));
	family(t, "submitproxy_message_bytes_total", "counter",
	       "Bytes of the messages the backend accepted, as relayed.");
	text_add(t, "submitproxy_message_bytes_total %llu\n",
		 (unsigned long long)SUM(m, msg_bytes));
	family(t, hist_message_size.name, "histogram", hist_message_size.help);
	hist_sum(m, offsetof(struct metrics_slot, msg_size), buckets, &sum);
	render_hist(t, &hist_message_size, "", buckets, sum);

	render_backends(t, m);

	family(t, "submitproxy_auth_helper_requests_total", "counter",
	       "Requests to the auth helper, by how they ended.");
	for (size_t o = 0; o < METRICS_HELPER_OUTCOME_COUNT; o++)
		text_add(t,
			 "submitproxy_auth_helper_requests_total{outcome="
			 "\"%s\"} %llu\n",
			 helper_outcome_names[o],
			 (unsigned long long)SUM(m, helper_done[o]));
	{
		uint64_t sent = SUM(m, helper_sent), done = 0;

		for (size_t o = 0; o < METRICS_HELPER_OUTCOME_COUNT; o++)
			done += SUM(m, helper_done[o]);
		family(t, "submitproxy_auth_helper_requests_in_flight",
		       "gauge",
		       "Requests sent to the auth helper and not ended yet.");
		text_add(t, "submitproxy_auth_helper_requests_in_flight %llu\n",
			 (unsigned long long)(sent > done ? sent - done : 0));
	}
	family(t, hist_helper_answer.name, "histogram",
	       hist_helper_answer.help);
	hist_sum(m, offsetof(struct metrics_slot, helper_answer), buckets,
		 &sum);
	render_hist(t, &hist_helper_answer, "", buckets, sum);
	if (m->helper != NULL) {
		family(t, "submitproxy_auth_helper_worker_restarts_total",
		       "counter",
		       "PAM worker processes forked again after one ended.");
		text_add(t,
			 "submitproxy_auth_helper_worker_restarts_total "
			 "%llu\n",
			 (unsigned long long)atomic_load_explicit(
			     &m->helper->restarts, memory_order_relaxed));
		family(t, "submitproxy_auth_helper_workers", "gauge",
		       "PAM worker processes, alive and busy.");
		text_add(t,
			 "submitproxy_auth_helper_workers{state=\"alive\"} "
			 "%u\nsubmitproxy_auth_helper_workers{state="
			 "\"busy\"} %u\n",
			 atomic_load_explicit(&m->helper->alive,
					      memory_order_relaxed),
			 atomic_load_explicit(&m->helper->busy,
					      memory_order_relaxed));
		family(t, "submitproxy_auth_helper_queued", "gauge",
		       "Requests waiting in the helper for a PAM worker.");
		text_add(t, "submitproxy_auth_helper_queued %u\n",
			 atomic_load_explicit(&m->helper->queued,
					      memory_order_relaxed));
	}

	family(t, "submitproxy_config_reloads_total", "counter",
	       "Configuration reloads (SIGHUP), by result.");
	text_add(t,
		 "submitproxy_config_reloads_total{result=\"ok\"} %llu\n"
		 "submitproxy_config_reloads_total{result=\"failed\"} %llu\n",
		 (unsigned long long)SUM(m, reloads[0]),
		 (unsigned long long)SUM(m, reloads[1]));
	family(t, "submitproxy_config_last_reload_success_timestamp_seconds",
	       "gauge",
	       "When the configuration was last loaded successfully (the "
	       "start, or the last good reload).");
	{
		uint64_t last = (uint64_t)m->started;

		for (unsigned i = 0; i < m->nslots; i++) {
			uint64_t v = counter_get(&m->slots[i].last_reload_ok);

			if (v > last)
				last = v;
		}
		text_add(t,
			 "submitproxy_config_last_reload_success_timestamp_"
			 "seconds %llu\n",
			 (unsigned long long)last);
	}
	return 0;
}

bool metrics_healthy(struct metrics *m, char *reason, size_t reason_size)
{
	return metrics_healthy_at(m, metrics_now_ms(), reason, reason_size);
}

bool metrics_healthy_at(struct metrics *m, uint64_t now_ms, char *reason,
			size_t reason_size)
{
	struct shared_backend_status st[CONFIG_BACKENDS_MAX];
	size_t n, up = 0;

	if (atomic_load(&m->stopping)) {
		snprintf(reason, reason_size, "stopping");
		return false;
	}
	for (unsigned i = 0; i < m->nslots; i++) {
		struct metrics_slot *s = &m->slots[i];

		if (atomic_load_explicit(&s->helper_lost,
					 memory_order_relaxed)) {
			snprintf(reason, reason_size,
				 "auth helper channel lost");
			return false;
		}
		/* Stale after a while: a loop that balancers took out of
		 * service gets no requests to clear it with an answer. */
		if (counter_get(&s->helper_timeouts_in_a_row) >=
			METRICS_HELPER_TIMEOUTS &&
		    now_ms - counter_get(&s->helper_last_timeout_ms) <
			METRICS_HELPER_TIMEOUT_STALE_MS) {
			snprintf(reason, reason_size,
				 "auth helper not answering: %llu requests "
				 "timed out in a row",
				 (unsigned long long)counter_get(
				     &s->helper_timeouts_in_a_row));
			return false;
		}
	}
	if (m->helper != NULL &&
	    atomic_load_explicit(&m->helper->alive, memory_order_relaxed) ==
		0) {
		snprintf(reason, reason_size, "no PAM worker running");
		return false;
	}
	n = shared_backends_status(m->shared, st, CONFIG_BACKENDS_MAX);
	for (size_t i = 0; i < n; i++)
		if (st[i].state != BACKEND_DOWN)
			up++;
	if (up == 0) {
		snprintf(reason, reason_size, "no backend up (%zu down)", n);
		return false;
	}
	snprintf(reason, reason_size, "ok: %zu of %zu backends up", up, n);
	return true;
}
