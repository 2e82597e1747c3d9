/*
 * test_metrics.c - the counter registry of proxy/metrics.h: slots bound by
 * threads, counted, rendered, and the text parsed back as a scraper
 * would.  What a scrape must show: sums across the slots that are exact;
 * # HELP and # TYPE once for every family, before its samples; histograms
 * with cumulative buckets whose +Inf bucket is _count and whose le values
 * are the bounds exactly; label values escaped; the bounded tables (TLS
 * combinations per slot, cipher, group and backend names) overflowing
 * into "other" without losing a count; a thread without a slot counting
 * nothing; and metrics_healthy()'s reasons, over a real struct shared.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/helperstats.h"
#include "config/config.h"
#include "proxy/metrics.h"
#include "proxy/shared.h"
#include "proxy/smtp-relay-parse.h"
#include "tests/unit/tap.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Two listeners, the second named with the characters a label value must
 * escape (a listener name is any run of isgraph() characters). */
#define LISTENER_WEIRD	     "we\"ird\\name"
#define LISTENER_WEIRD_LABEL "we\\\"ird\\\\name"

static const char config_text[] = "[listener one]\n"
				  "address = 127.0.0.1:2525\n"
				  "mode = plain\n"
				  "[listener " LISTENER_WEIRD "]\n"
				  "address = 127.0.0.1:2526\n"
				  "mode = plain\n"
				  "[backend]\n"
				  "address = 127.0.0.1:10025\n";

static struct config *load_config(void)
{
	const char *dir = getenv("TMPDIR");
	struct config_errors errors = {NULL, 0};
	struct config *cfg = NULL;
	char path[4096];
	size_t len = strlen(config_text);
	int fd;

	snprintf(path, sizeof(path), "%s/test_metrics.XXXXXX",
		 dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, config_text, len) != (ssize_t)len ||
	    close(fd) < 0) {
		perror("test_metrics: temporary file");
		exit(99);
	}
	if (config_read(path, &cfg, &errors) < 0) {
		config_errors_print(&errors, stdout);
		printf("Bail out! test configuration refused\n");
		exit(99);
	}
	config_errors_finish(&errors);
	unlink(path);
	return cfg;
}

/* ---- the exposition, parsed back ---- */

struct sample {
	char *name;
	char *labels; /* as rendered, between the braces; "" for none */
	char *le;     /* the le label's value (unescaped), or NULL */
	char *rest;   /* labels without le, for grouping a histogram */
	double value;
	size_t family; /* index in families */
};

struct family {
	char *name;
	char *type; /* NULL until # TYPE */
	bool help;
	size_t ntype, nhelp, nsamples;
};

struct scrape {
	struct sample *s;
	size_t n;
	struct family *f;
	size_t nf;
	int errors; /* lines that do not parse, samples before their TYPE */
	char first_error[256];
};

static void scrape_error(struct scrape *sc, const char *what, const char *line)
{
	if (sc->errors++ == 0)
		snprintf(sc->first_error, sizeof(sc->first_error), "%s: %.160s",
			 what, line);
}

static size_t family_find(struct scrape *sc, const char *name, bool add)
{
	for (size_t i = 0; i < sc->nf; i++)
		if (strcmp(sc->f[i].name, name) == 0)
			return i;
	if (!add)
		return SIZE_MAX;
	sc->f = realloc(sc->f, (sc->nf + 1) * sizeof(sc->f[0]));
	memset(&sc->f[sc->nf], 0, sizeof(sc->f[0]));
	sc->f[sc->nf].name = strdup(name);
	return sc->nf++;
}

static bool name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       c == ':' || (!first && c >= '0' && c <= '9');
}

/* The family a sample belongs to: its own name, or for a histogram's
 * _bucket/_sum/_count the name without the suffix. */
static size_t sample_family(struct scrape *sc, const char *name)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	size_t len = strlen(name);
	size_t i = family_find(sc, name, false);

	if (i != SIZE_MAX)
		return i;
	for (size_t k = 0; k < ARRAY_SIZE(suffixes); k++) {
		size_t sl = strlen(suffixes[k]);
		char base[256];

		if (len <= sl || strcmp(name + len - sl, suffixes[k]) != 0 ||
		    len - sl >= sizeof(base))
			continue;
		memcpy(base, name, len - sl);
		base[len - sl] = '\0';
		i = family_find(sc, base, false);
		if (i != SIZE_MAX && sc->f[i].type != NULL &&
		    strcmp(sc->f[i].type, "histogram") == 0)
			return i;
	}
	return SIZE_MAX;
}

/* One sample line: NAME[{L="V",...}] VALUE, with the text format's
 * escapes (\\, \", \n) and nothing else inside a value. */
static void parse_sample(struct scrape *sc, const char *line)
{
	const char *p = line, *name_end, *lb = NULL, *le_end = NULL;
	char le[256] = "", rest[1024] = "", *end;
	size_t rest_len = 0;
	bool have_le = false;
	struct sample s;

	memset(&s, 0, sizeof(s));
	if (!name_char(*p, true)) {
		scrape_error(sc, "bad metric name", line);
		return;
	}
	while (name_char(*p, false))
		p++;
	name_end = p;
	if (*p == '{') {
		lb = ++p;
		while (*p != '}') {
			const char *ln = p, *lname_end, *val;
			char value[256];
			size_t vl = 0;

			if (!name_char(*p, true)) {
				scrape_error(sc, "bad label name", line);
				return;
			}
			while (name_char(*p, false))
				p++;
			lname_end = p;
			if (p[0] != '=' || p[1] != '"') {
				scrape_error(sc, "label without =\"", line);
				return;
			}
			p += 2;
			val = p;
			for (; *p != '"'; p++) {
				char c = *p;

				if (c == '\0' || c == '\n') {
					scrape_error(sc, "unterminated label",
						     line);
					return;
				}
				if (c == '\\') {
					p++;
					if (*p == 'n')
						c = '\n';
					else if (*p == '\\' || *p == '"')
						c = *p;
					else {
						scrape_error(sc, "bad escape",
							     line);
						return;
					}
				}
				if (vl + 1 < sizeof(value))
					value[vl++] = c;
			}
			value[vl] = '\0';
			p++; /* the closing quote */
			if ((size_t)(lname_end - ln) == 2 &&
			    strncmp(ln, "le", 2) == 0) {
				have_le = true;
				snprintf(le, sizeof(le), "%s", value);
			} else {
				int w = snprintf(rest + rest_len,
						 sizeof(rest) - rest_len,
						 "%s%.*s", rest_len ? "," : "",
						 (int)(p - ln), ln);

				if (w > 0)
					rest_len += (size_t)w;
			}
			(void)val;
			if (*p == ',')
				p++;
			else if (*p != '}') {
				scrape_error(sc, "junk after a label", line);
				return;
			}
		}
		le_end = p;
		p++;
	}
	if (*p != ' ') {
		scrape_error(sc, "no blank before the value", line);
		return;
	}
	s.value = strtod(p + 1, &end);
	if (end == p + 1 || *end != '\0') {
		scrape_error(sc, "bad value", line);
		return;
	}
	s.name = strndup(line, (size_t)(name_end - line));
	s.labels = lb != NULL ? strndup(lb, (size_t)(le_end - lb)) : strdup("");
	s.le = have_le ? strdup(le) : NULL;
	s.rest = strdup(rest);
	s.family = sample_family(sc, s.name);
	if (s.family == SIZE_MAX) {
		scrape_error(sc, "a sample before its # TYPE", line);
	} else {
		struct family *f = &sc->f[s.family];

		f->nsamples++;
		if (!f->help)
			scrape_error(sc, "a sample before its # HELP", line);
	}
	sc->s = realloc(sc->s, (sc->n + 1) * sizeof(sc->s[0]));
	sc->s[sc->n++] = s;
}

static void scrape_parse(struct scrape *sc, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	memset(sc, 0, sizeof(*sc));
	if (len == 0 || text[len - 1] != '\n')
		scrape_error(sc, "the text does not end with a newline", "");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = strndup(p, ll);

		if (strncmp(line, "# HELP ", 7) == 0 ||
		    strncmp(line, "# TYPE ", 7) == 0) {
			char name[256], word[64];
			bool help = line[2] == 'H';

			if (sscanf(line + 7, "%255s %63s", name, word) != 2) {
				scrape_error(sc, "a HELP or TYPE without text",
					     line);
			} else {
				size_t i = family_find(sc, name, true);
				struct family *f = &sc->f[i];

				if (f->nsamples > 0)
					scrape_error(sc,
						     "HELP/TYPE after "
						     "samples",
						     line);
				if (help) {
					f->help = true;
					f->nhelp++;
				} else {
					f->ntype++;
					free(f->type);
					f->type = strdup(word);
				}
			}
		} else if (line[0] == '#') {
			scrape_error(sc, "an unknown comment", line);
		} else if (line[0] == '\0') {
			scrape_error(sc, "an empty line", line);
		} else {
			parse_sample(sc, line);
		}
		free(line);
		p += ll + 1;
	}
}

static void scrape_free(struct scrape *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		free(sc->s[i].name);
		free(sc->s[i].labels);
		free(sc->s[i].le);
		free(sc->s[i].rest);
	}
	for (size_t i = 0; i < sc->nf; i++) {
		free(sc->f[i].name);
		free(sc->f[i].type);
	}
	free(sc->s);
	free(sc->f);
	memset(sc, 0, sizeof(*sc));
}

/* The value of the sample name{labels} (labels exactly as rendered), or
 * NAN if there is none (or more than one). */
static double value_of(const struct scrape *sc, const char *name,
		       const char *labels)
{
	double v = NAN;
	int found = 0;

	for (size_t i = 0; i < sc->n; i++)
		if (strcmp(sc->s[i].name, name) == 0 &&
		    strcmp(sc->s[i].labels, labels) == 0) {
			v = sc->s[i].value;
			found++;
		}
	return found == 1 ? v : NAN;
}

/* How many samples of name have a label value containing needle ("" for
 * any), and their sum. */
static size_t count_with(const struct scrape *sc, const char *name,
			 const char *needle, double *sum)
{
	size_t n = 0;

	*sum = 0;
	for (size_t i = 0; i < sc->n; i++)
		if (strcmp(sc->s[i].name, name) == 0 &&
		    strstr(sc->s[i].labels, needle) != NULL) {
			n++;
			*sum += sc->s[i].value;
		}
	return n;
}

static bool render(struct metrics *m, struct scrape *sc)
{
	struct metrics_text t;

	if (metrics_render(m, &t) < 0) {
		memset(sc, 0, sizeof(*sc));
		return false;
	}
	scrape_parse(sc, t.data, t.len);
	metrics_text_free(&t);
	return true;
}

/* Every check a scraper makes of any exposition. */
static void check_well_formed(const char *what, struct scrape *sc)
{
	size_t bad_families = 0, bad_hist = 0, hist_series = 0;

	TAP_EQ_INT(sc->errors, 0, "%s: every line parses", what);
	if (sc->errors > 0)
		printf("# first problem: %s\n", sc->first_error);
	for (size_t i = 0; i < sc->nf; i++) {
		const struct family *f = &sc->f[i];

		if (f->nhelp != 1 || f->ntype != 1 || f->type == NULL ||
		    (strcmp(f->type, "counter") != 0 &&
		     strcmp(f->type, "gauge") != 0 &&
		     strcmp(f->type, "histogram") != 0)) {
			bad_families++;
			printf("# family %s: %zu HELP, %zu TYPE (%s)\n",
			       f->name, f->nhelp, f->ntype,
			       f->type ? f->type : "none");
		}
		if (f->type != NULL && strcmp(f->type, "counter") == 0 &&
		    strlen(f->name) > 6 &&
		    strcmp(f->name + strlen(f->name) - 6, "_total") != 0) {
			bad_families++;
			printf("# counter %s does not end in _total\n",
			       f->name);
		}
	}
	TAP_EQ_INT(bad_families, 0,
		   "%s: every family has one # HELP and one # TYPE", what);

	/* Histograms: per series (labels without le), buckets in order of
	 * le, cumulative, the last +Inf, equal to _count. */
	for (size_t i = 0; i < sc->n; i++) {
		const struct sample *b = &sc->s[i];
		const struct family *f;
		double prev_le = -INFINITY, prev = 0, count, sum_v;
		char cname[300];
		bool ok = true, inf = false;

		if (b->family == SIZE_MAX)
			continue;
		f = &sc->f[b->family];
		if (strcmp(f->type, "histogram") != 0 || b->le == NULL)
			continue;
		/* The first bucket of a series starts it. */
		{
			bool first = true;

			for (size_t j = 0; j < i; j++)
				if (sc->s[j].family == b->family &&
				    sc->s[j].le != NULL &&
				    strcmp(sc->s[j].rest, b->rest) == 0)
					first = false;
			if (!first)
				continue;
		}
		hist_series++;
		for (size_t j = i; j < sc->n; j++) {
			const struct sample *x = &sc->s[j];
			double le;

			if (x->family != b->family || x->le == NULL ||
			    strcmp(x->rest, b->rest) != 0)
				continue;
			if (inf) {
				ok = false; /* a bucket after +Inf */
				break;
			}
			le = strcmp(x->le, "+Inf") == 0 ? INFINITY
							: strtod(x->le, NULL);
			if (le <= prev_le || x->value < prev)
				ok = false;
			prev_le = le;
			prev = x->value;
			inf = isinf(le);
		}
		snprintf(cname, sizeof(cname), "%s_count", f->name);
		count = value_of(sc, cname, b->rest);
		snprintf(cname, sizeof(cname), "%s_sum", f->name);
		sum_v = value_of(sc, cname, b->rest);
		if (!ok || !inf || count != prev || isnan(sum_v)) {
			bad_hist++;
			printf("# histogram %s{%s}: ordered+cumulative %d, "
			       "+Inf %d (%g), _count %g, _sum %g\n",
			       f->name, b->rest, ok, inf, prev, count, sum_v);
		}
	}
	TAP_OK(hist_series >= 4, "%s: the histograms are there (%zu series)",
	       what, hist_series);
	TAP_EQ_INT(bad_hist, 0,
		   "%s: histogram buckets cumulative, +Inf last and equal to "
		   "_count, _sum present",
		   what);
}

/* ---- counting from threads ---- */

#define ROUNDS 1000

struct counting {
	struct metrics *m;
	unsigned slot;
	unsigned multiplier; /* so that the two threads' counts differ */
	pthread_barrier_t *ready;
};

/* Everything a worker loop counts, ROUNDS * multiplier times. */
static void count_round(unsigned k)
{
	metrics_conn_accepted(0);
	metrics_conn_accepted(1);
	metrics_conn_refused(0, METRICS_REFUSED_PER_ADDRESS);
	metrics_tls_ok(0, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "x25519",
		       METRICS_SNI_MATCHED);
	metrics_tls_ok(1, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "secp256r1",
		       METRICS_SNI_ABSENT);
	metrics_tls_failed(0, METRICS_TLS_FAIL_PROTOCOL_VERSION,
			   METRICS_TLS_1_0);
	metrics_tls_failed(1, METRICS_TLS_FAIL_NO_SHARED_CIPHER,
			   METRICS_TLS_UNKNOWN);
	metrics_tls_client_cert(0, METRICS_CERT_PRESENTED);
	metrics_auth(METRICS_MECH_PLAIN, METRICS_AUTH_OK);
	metrics_auth(METRICS_MECH_LOGIN, METRICS_AUTH_BAD_CREDENTIALS);
	metrics_transaction(250, 2, 1000);
	metrics_transaction(451, 1, 77);
	metrics_transaction(554, 1, 77);
	metrics_session_closed(k % 3 == 0 ? 40 : 2000);
	metrics_backend_connected("127.0.0.1:10025", 700);
	metrics_backend_error("127.0.0.1:10025", METRICS_BACKEND_TIMEOUT);
	metrics_backend_probe("127.0.0.1:10025", true);
	metrics_helper_sent();
	metrics_helper_done(3000, METRICS_HELPER_ANSWERED);
	metrics_reload(true, 1700000000);
}

static void *counting_thread(void *arg)
{
	struct counting *c = arg;

	/* Not bound yet: counts nothing. */
	count_round(0);
	metrics_bind(c->m, c->slot);
	pthread_barrier_wait(c->ready);
	for (unsigned i = 0; i < ROUNDS * c->multiplier; i++)
		count_round(i);
	metrics_bind(NULL, 0);
	/* Unbound again: counts nothing. */
	count_round(0);
	return NULL;
}

static void *unbound_thread(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < 100; i++)
		count_round(i);
	return NULL;
}

/* A scrape while the threads count: well formed, and never more than
 * the final totals. */
struct scraping {
	struct metrics *m;
	atomic_bool stop;
	unsigned scrapes, bad;
};

static void *scraping_thread(void *arg)
{
	struct scraping *s = arg;

	while (!atomic_load(&s->stop) || s->scrapes == 0) {
		struct scrape sc;

		if (!render(s->m, &sc)) {
			s->bad++;
			break;
		}
		if (sc.errors > 0 ||
		    value_of(&sc, "submitproxy_auth_attempts_total",
			     "mechanism=\"PLAIN\",result=\"ok\"") > ROUNDS * 3)
			s->bad++;
		s->scrapes++;
		scrape_free(&sc);
	}
	return NULL;
}

static void test_threads(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	pthread_barrier_t ready;
	struct counting c[2];
	struct scraping scr;
	pthread_t t[2], u, st;
	struct scrape sc;
	double sum;
	const double total = ROUNDS * 3; /* 1 + 2 */

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 2, &sh, NULL);
	pthread_barrier_init(&ready, NULL, 3);
	memset(&scr, 0, sizeof(scr));
	scr.m = m;
	atomic_init(&scr.stop, false);
	for (unsigned i = 0; i < 2; i++) {
		c[i].m = m;
		c[i].slot = i;
		c[i].multiplier = i + 1;
		c[i].ready = &ready;
		pthread_create(&t[i], NULL, counting_thread, &c[i]);
	}
	pthread_create(&u, NULL, unbound_thread, NULL);
	/* The main thread has no slot either. */
	count_round(0);
	pthread_barrier_wait(&ready);
	pthread_create(&st, NULL, scraping_thread, &scr);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_join(u, NULL);
	atomic_store(&scr.stop, true);
	pthread_join(st, NULL);
	TAP_OK(scr.scrapes > 0 && scr.bad == 0,
	       "threads: %u scrapes while counting, each well formed and "
	       "never past the totals",
	       scr.scrapes);

	TAP_OK(render(m, &sc), "threads: renders");
	check_well_formed("threads", &sc);

	TAP_EQ_INT(value_of(&sc, "submitproxy_connections_accepted_total",
			    "listener=\"one\""),
		   total, "threads: accepted on one: the exact sum of slots");
	TAP_EQ_INT(value_of(&sc, "submitproxy_connections_accepted_total",
			    "listener=\"" LISTENER_WEIRD_LABEL "\""),
		   total,
		   "threads: accepted on the second listener, its name "
		   "escaped");
	TAP_EQ_INT(value_of(&sc, "submitproxy_connections_refused_total",
			    "listener=\"one\",reason=\"max_connections_per_"
			    "address\""),
		   total, "threads: refused per address");
	TAP_EQ_INT(value_of(&sc, "submitproxy_connections_refused_total",
			    "listener=\"one\",reason=\"early_talker\""),
		   0, "threads: a reason never counted is there as 0");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.3\",cipher="
			    "\"TLS_AES_256_GCM_SHA384\",group=\"x25519\""),
		   total, "threads: TLS 1.3 handshakes merged across slots");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"" LISTENER_WEIRD_LABEL
			    "\",version=\"TLSv1.2\",cipher=\"ECDHE-RSA-"
			    "AES128-GCM-SHA256\",group=\"secp256r1\""),
		   total, "threads: TLS 1.2 handshakes");
	TAP_EQ_INT(
	    count_with(&sc, "submitproxy_tls_handshakes_total", "", &sum), 2,
	    "threads: one series per combination, not per slot");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshake_failures_total",
			    "listener=\"one\",reason=\"protocol_version\""),
		   total, "threads: handshake failures, protocol_version");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshake_failures_total",
			    "listener=\"" LISTENER_WEIRD_LABEL
			    "\",reason=\"no_shared_cipher\""),
		   total, "threads: handshake failures, no_shared_cipher");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_old_protocol_clients_total",
			    "listener=\"one\",client_max_version=\"TLSv1\""),
		   total, "threads: old clients by their best version");
	TAP_EQ_INT(count_with(&sc, "submitproxy_tls_old_protocol_clients_total",
			      "", &sum),
		   2 * METRICS_TLS_VERSION_COUNT,
		   "threads: old clients: every listener and version shown");
	TAP_EQ_INT(sum, total,
		   "threads: only protocol_version failures count as old "
		   "clients");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_sni_total",
			    "listener=\"one\",sni=\"matched\""),
		   total, "threads: SNI matched");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_sni_total",
			    "listener=\"" LISTENER_WEIRD_LABEL
			    "\",sni=\"absent\""),
		   total, "threads: SNI absent");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_client_certificates_total",
			    "listener=\"one\",stage=\"presented\""),
		   total, "threads: client certificates presented");
	TAP_EQ_INT(value_of(&sc, "submitproxy_auth_attempts_total",
			    "mechanism=\"PLAIN\",result=\"ok\""),
		   total, "threads: AUTH PLAIN ok");
	TAP_EQ_INT(value_of(&sc, "submitproxy_auth_attempts_total",
			    "mechanism=\"LOGIN\",result=\"bad_credentials\""),
		   total, "threads: AUTH LOGIN bad_credentials");
	TAP_EQ_INT(count_with(&sc, "submitproxy_auth_attempts_total", "", &sum),
		   METRICS_MECH_COUNT * METRICS_AUTH_RESULT_COUNT,
		   "threads: every mechanism and result shown");
	TAP_EQ_INT(sum, 2 * total, "threads: AUTH counts add up");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_transactions_total", "reply=\"2xx\""),
	    total, "threads: transactions 2xx");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_transactions_total", "reply=\"4xx\""),
	    total, "threads: transactions 4xx");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_transactions_total", "reply=\"5xx\""),
	    total, "threads: transactions 5xx");
	TAP_EQ_INT(value_of(&sc, "submitproxy_recipients_accepted_total", ""),
		   2 * total, "threads: recipients only of accepted messages");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_bytes_total", ""),
		   1000 * total, "threads: bytes only of accepted messages");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_count", ""),
		   total, "threads: message size histogram count");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_bucket",
			    "le=\"1024\""),
		   total, "threads: 1000 bytes in le=1024");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_sum", ""),
		   1000 * total, "threads: message size sum");
	TAP_EQ_INT(value_of(&sc, "submitproxy_session_duration_seconds_bucket",
			    "le=\"0.05\""),
		   334 + 667, "threads: sessions of 40 ms in le=0.05");
	TAP_EQ_INT(value_of(&sc, "submitproxy_session_duration_seconds_bucket",
			    "le=\"2.5\""),
		   total, "threads: all sessions in le=2.5");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_session_duration_seconds_count", ""),
	    total, "threads: session duration count");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_connect_seconds_count",
			    "backend=\"127.0.0.1:10025\""),
		   total, "threads: backend connect count");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_connect_seconds_bucket",
			    "backend=\"127.0.0.1:10025\",le=\"0.001\""),
		   total, "threads: 700 us in le=0.001");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_errors_total",
			    "backend=\"127.0.0.1:10025\",kind=\"timeout\""),
		   total, "threads: backend errors by kind");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_errors_total",
			    "backend=\"127.0.0.1:10025\",kind=\"refused\""),
		   0, "threads: backend errors, another kind 0");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_probes_total",
			    "backend=\"127.0.0.1:10025\",result=\"ok\""),
		   total, "threads: probes ok");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_up",
			    "backend=\"127.0.0.1:10025\""),
		   1, "threads: the backend not tried yet counts as up");
	TAP_EQ_INT(value_of(&sc, "submitproxy_auth_helper_requests_total",
			    "outcome=\"answered\""),
		   total, "threads: helper requests answered");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_auth_helper_requests_in_flight", ""), 0,
	    "threads: none in flight");
	TAP_EQ_INT(value_of(&sc,
			    "submitproxy_auth_helper_answer_seconds_bucket",
			    "le=\"0.005\""),
		   total, "threads: 3 ms answers in le=0.005");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_config_reloads_total", "result=\"ok\""),
	    total, "threads: reloads");
	TAP_EQ_INT(value_of(&sc,
			    "submitproxy_config_last_reload_success_"
			    "timestamp_seconds",
			    ""),
		   value_of(&sc, "process_start_time_seconds", ""),
		   "threads: last good reload: the start (later than the "
		   "reloads counted)");
	TAP_EQ_INT(value_of(&sc, "submitproxy_sessions", ""), 0,
		   "threads: sessions gauge from struct shared");
	TAP_OK(!isnan(value_of(&sc, "process_start_time_seconds", "")),
	       "threads: process_start_time_seconds");
	{
		double n;

		TAP_EQ_INT(
		    count_with(&sc, "submitproxy_build_info", "version=\"", &n),
		    1, "threads: build_info with a version");
		TAP_EQ_INT(n, 1, "threads: build_info is 1");
	}
	TAP_OK(isnan(value_of(&sc, "submitproxy_auth_helper_workers",
			      "state=\"alive\"")),
	       "threads: no helper page, no helper worker series");
	scrape_free(&sc);

	/* In flight: sent and not ended. */
	metrics_bind(m, 0);
	metrics_helper_sent();
	metrics_helper_sent();
	metrics_helper_done(10, METRICS_HELPER_CANCELLED);
	/* A good reload after the start is the last one; a failed one
	 * leaves it. */
	metrics_bind(m, METRICS_SLOT_CONTROL);
	metrics_reload(true, time(NULL) + 3600);
	metrics_reload(false, 0);
	metrics_bind(NULL, 0);
	render(m, &sc);
	TAP_EQ_INT(value_of(&sc,
			    "submitproxy_config_last_reload_success_"
			    "timestamp_seconds",
			    ""),
		   value_of(&sc, "process_start_time_seconds", "") + 3600,
		   "reloads: the last good one's time");
	TAP_EQ_INT(value_of(&sc, "submitproxy_config_reloads_total",
			    "result=\"failed\""),
		   1, "reloads: a failed one");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_config_reloads_total", "result=\"ok\""),
	    total + 1, "reloads: the control loop's slot counts too");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_auth_helper_requests_in_flight", ""), 1,
	    "in flight: two sent, one cancelled");
	TAP_EQ_INT(value_of(&sc, "submitproxy_auth_helper_requests_total",
			    "outcome=\"cancelled\""),
		   1, "in flight: the cancelled one");
	scrape_free(&sc);

	pthread_barrier_destroy(&ready);
	metrics_destroy(m);
	shared_finish(&sh);
}

/* The le values are the bounds exactly: a scraper compares an
 * observation with the le it reads. */
static void test_bucket_bounds(struct config *cfg)
{
	static const char *const sizes[] = {
	    "1024",    "4096",	  "16384",    "65536",	  "262144",
	    "1048576", "4194304", "16777216", "67108864", "+Inf"};
	struct shared sh;
	struct metrics *m;
	struct scrape sc;
	size_t k = 0;
	bool in_order = true;

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 1, &sh, NULL);
	metrics_bind(m, 0);
	metrics_transaction(250, 1, 4194304); /* exactly a bound */
	metrics_transaction(250, 1, 4194305); /* just past it */
	metrics_transaction(250, 1, UINT64_C(123456789012));
	metrics_bind(NULL, 0);
	render(m, &sc);
	for (size_t i = 0; i < sc.n; i++) {
		if (strcmp(sc.s[i].name, "submitproxy_message_size_bytes_"
					 "bucket") != 0)
			continue;
		if (k >= ARRAY_SIZE(sizes) ||
		    strcmp(sc.s[i].le, sizes[k]) != 0) {
			in_order = false;
			printf("# bucket %zu: le=\"%s\"\n", k, sc.s[i].le);
		}
		k++;
	}
	TAP_OK(in_order && k == ARRAY_SIZE(sizes),
	       "bounds: message size le values are the bounds, in full");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_bucket",
			    "le=\"4194304\""),
		   1, "bounds: a size equal to a bound is in its bucket");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_bucket",
			    "le=\"16777216\""),
		   2, "bounds: one byte more is in the next");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_size_bytes_sum", ""),
		   4194304.0 + 4194305.0 + 123456789012.0,
		   "bounds: the sum is exact");
	TAP_EQ_INT(value_of(&sc, "submitproxy_message_bytes_total", ""),
		   4194304.0 + 4194305.0 + 123456789012.0,
		   "bounds: the bytes counter is exact");
	TAP_OK(!isnan(value_of(&sc,
			       "submitproxy_backend_connect_seconds_"
			       "bucket",
			       "backend=\"127.0.0.1:10025\",le=\"0.0005\"")),
	       "bounds: backend connect starts at le=0.0005");
	TAP_OK(!isnan(value_of(&sc,
			       "submitproxy_session_duration_seconds_"
			       "bucket",
			       "le=\"1800\"")),
	       "bounds: session duration ends at le=1800");
	scrape_free(&sc);
	metrics_destroy(m);
	shared_finish(&sh);
}

/* Label values from outside (cipher, group and backend names) escaped. */
static void test_escaping(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	struct scrape sc;

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 1, &sh, NULL);
	metrics_bind(m, 0);
	metrics_tls_ok(0, "TLSv1.2", "odd\"cipher\\x\nend", "gr\"oup",
		       METRICS_SNI_UNMATCHED);
	metrics_tls_ok(0, NULL, NULL, NULL, METRICS_SNI_ABSENT);
	metrics_tls_ok(0, "TLSv1.3", "", "", METRICS_SNI_ABSENT);
	metrics_backend_error("unix:/run/\"mta\".sock", METRICS_BACKEND_LOST);
	metrics_bind(NULL, 0);
	render(m, &sc);
	check_well_formed("escaping", &sc);
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.2\",cipher="
			    "\"odd\\\"cipher\\\\x\\nend\",group=\"gr\\\"oup\""),
		   1,
		   "escaping: quote, backslash and newline in a cipher "
		   "and a group");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"unknown\",cipher="
			    "\"unknown\",group=\"unknown\""),
		   1, "escaping: NULL names are \"unknown\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.3\",cipher="
			    "\"unknown\",group=\"unknown\""),
		   1, "escaping: empty names are \"unknown\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_errors_total",
			    "backend=\"unix:/run/\\\"mta\\\".sock\","
			    "kind=\"lost\""),
		   1, "escaping: a backend name");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_sni_total",
			    "listener=\"one\",sni=\"unmatched\""),
		   1, "escaping: SNI unmatched");
	scrape_free(&sc);
	metrics_destroy(m);
	shared_finish(&sh);
}

static const char *const tls_versions[] = {"SSLv3",   "TLSv1",	 "TLSv1.1",
					   "TLSv1.2", "TLSv1.3", "garbage"};

/* More than 96 distinct combinations in one slot: the ones past the
 * table count under cipher="other", group="other", by listener and
 * version, and no handshake is lost. */
static void test_combo_overflow(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	struct scrape sc;
	double sum;
	size_t n;

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 2, &sh, NULL);
	metrics_bind(m, 0);
	/* 6 versions x 20 ciphers = 120 combinations, in this order: the
	 * 97th and later are TLSv1.3 ciphers 16..19 and all 20 "garbage"
	 * ones (METRICS_TLS_UNKNOWN). */
	for (size_t v = 0; v < ARRAY_SIZE(tls_versions); v++)
		for (unsigned c = 0; c < 20; c++) {
			char cipher[32];

			snprintf(cipher, sizeof(cipher), "CIPHER-%02u", c);
			metrics_tls_ok(0, tls_versions[v], cipher, "x25519",
				       METRICS_SNI_ABSENT);
			/* Seen again: a known combination still counts in
			 * its own series, even with the table full. */
			metrics_tls_ok(0, tls_versions[v], cipher, "x25519",
				       METRICS_SNI_ABSENT);
		}
	/* Another slot has its own table: its first combination is its
	 * own series again. */
	metrics_bind(m, 1);
	metrics_tls_ok(0, "garbage", "CIPHER-19", "x25519", METRICS_SNI_ABSENT);
	metrics_bind(NULL, 0);
	render(m, &sc);
	check_well_formed("combos", &sc);
	n = count_with(&sc, "submitproxy_tls_handshakes_total", "", &sum);
	TAP_EQ_INT(sum, 241, "combos: no handshake lost (sum 2*120+1)");
	TAP_EQ_INT(n, 96 + 2 + 1,
		   "combos: 96 series of the table, two overflow series, one "
		   "of the other slot");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.3\",cipher="
			    "\"CIPHER-15\",group=\"x25519\""),
		   2, "combos: the 96th combination has its own series");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.3\",cipher="
			    "\"other\",group=\"other\""),
		   8, "combos: TLSv1.3 past the table in cipher=\"other\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"unknown\",cipher="
			    "\"other\",group=\"other\""),
		   40,
		   "combos: unknown versions past the table in "
		   "cipher=\"other\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"unknown\",cipher="
			    "\"CIPHER-19\",group=\"x25519\""),
		   1, "combos: the other slot's combination in its own series");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_sni_total",
			    "listener=\"one\",sni=\"absent\""),
		   241, "combos: SNI counted for every handshake");
	scrape_free(&sc);
	metrics_destroy(m);
	shared_finish(&sh);
}

/* The name tables: 47 ciphers, 23 groups, 47 backends by name; the rest
 * count as "other". */
static void test_names_overflow(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	struct scrape sc;
	double sum;
	char name[64];

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 1, &sh, NULL);
	metrics_bind(m, 0);
	/* 50 ciphers, one group: 50 combinations (the table holds 96). */
	for (unsigned c = 0; c < 50; c++) {
		snprintf(name, sizeof(name), "CIPHER-%02u", c);
		metrics_tls_ok(0, "TLSv1.2", name, "x25519",
			       METRICS_SNI_ABSENT);
	}
	/* 30 groups, one cipher. */
	for (unsigned g = 0; g < 30; g++) {
		snprintf(name, sizeof(name), "group-%02u", g);
		/* A cipher the table holds: it is full. */
		metrics_tls_ok(1, "TLSv1.3", "CIPHER-00", name,
			       METRICS_SNI_ABSENT);
	}
	/* The configured backend first (the scrape names it anyway), then
	 * 60 more. */
	metrics_backend_error("127.0.0.1:10025", METRICS_BACKEND_REFUSED);
	for (unsigned b = 0; b < 60; b++) {
		snprintf(name, sizeof(name), "127.0.0.1:%u", 20000 + b);
		metrics_backend_error(name, METRICS_BACKEND_REFUSED);
		metrics_backend_connected(name, 1000);
	}
	metrics_bind(NULL, 0);
	render(m, &sc);
	check_well_formed("names", &sc);
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.2\",cipher="
			    "\"CIPHER-46\",group=\"x25519\""),
		   1, "names: the 47th cipher has its name");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"one\",version=\"TLSv1.2\",cipher="
			    "\"other\",group=\"x25519\""),
		   3, "names: ciphers 48 to 50 are \"other\"");
	TAP_EQ_INT(count_with(&sc, "submitproxy_tls_handshakes_total",
			      "listener=\"one\"", &sum),
		   48, "names: 47 named ciphers and other");
	TAP_EQ_INT(sum, 50, "names: every cipher's handshake counted");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"" LISTENER_WEIRD_LABEL
			    "\",version=\"TLSv1.3\",cipher=\"CIPHER-00\","
			    "group=\"group-21\""),
		   1,
		   "names: the 23rd group (x25519 was the first) has its "
		   "name");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshakes_total",
			    "listener=\"" LISTENER_WEIRD_LABEL
			    "\",version=\"TLSv1.3\",cipher=\"CIPHER-00\","
			    "group=\"other\""),
		   8, "names: the groups past it are \"other\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_errors_total",
			    "backend=\"127.0.0.1:20045\",kind=\"refused\""),
		   1, "names: the 47th backend has its name");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_errors_total",
			    "backend=\"other\",kind=\"refused\""),
		   60 - 46, "names: backends past the table are \"other\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_connect_seconds_count",
			    "backend=\"other\""),
		   60 - 46, "names: ... in the connect histogram too");
	TAP_EQ_INT(count_with(&sc, "submitproxy_backend_errors_total",
			      "kind=\"refused\"", &sum),
		   48, "names: 47 named backends and other");
	TAP_EQ_INT(sum, 61, "names: every backend error counted");
	TAP_EQ_INT(value_of(&sc, "submitproxy_backend_up",
			    "backend=\"127.0.0.1:10025\""),
		   1, "names: backend_up names the configured backend");
	scrape_free(&sc);
	metrics_destroy(m);
	shared_finish(&sh);
}

/* Out-of-range arguments count nothing, or under a bounded label. */
static void test_bad_arguments(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	struct scrape sc;
	double sum;

	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 1, &sh, NULL);
	metrics_bind(m, 0);
	metrics_conn_accepted(2); /* no third listener */
	metrics_conn_accepted(SIZE_MAX);
	metrics_conn_refused(0, METRICS_REFUSED_COUNT);
	metrics_tls_ok(7, "TLSv1.3", "x", "y", METRICS_SNI_ABSENT);
	metrics_tls_failed(9, METRICS_TLS_FAIL_ALPN, METRICS_TLS_1_3);
	metrics_tls_failed(
	    0, (enum metrics_tls_failure)(METRICS_TLS_FAILURE_COUNT + 3),
	    METRICS_TLS_1_3);
	metrics_tls_failed(
	    0, METRICS_TLS_FAIL_PROTOCOL_VERSION,
	    (enum metrics_tls_version)(METRICS_TLS_VERSION_COUNT + 1));
	metrics_auth(METRICS_MECH_COUNT, METRICS_AUTH_OK);
	metrics_auth(METRICS_MECH_PLAIN, METRICS_AUTH_RESULT_COUNT);
	metrics_backend_error("127.0.0.1:10025", METRICS_BACKEND_ERROR_COUNT);
	metrics_helper_done(1, METRICS_HELPER_OUTCOME_COUNT);
	metrics_transaction(999, 1, 1);
	metrics_transaction(0, 1, 1);
	metrics_bind(NULL, 0);
	render(m, &sc);
	check_well_formed("bad arguments", &sc);
	count_with(&sc, "submitproxy_connections_accepted_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no listener out of range counts");
	count_with(&sc, "submitproxy_connections_refused_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no refusal out of range counts");
	count_with(&sc, "submitproxy_tls_handshakes_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no handshake on a bad listener");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_handshake_failures_total",
			    "listener=\"one\",reason=\"other\""),
		   1, "bad arguments: an unknown failure reason is \"other\"");
	TAP_EQ_INT(value_of(&sc, "submitproxy_tls_old_protocol_clients_total",
			    "listener=\"one\",client_max_version=\"unknown\""),
		   1, "bad arguments: an unknown best version is \"unknown\"");
	count_with(&sc, "submitproxy_auth_attempts_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no AUTH out of range counts");
	count_with(&sc, "submitproxy_backend_errors_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no backend error out of range");
	count_with(&sc, "submitproxy_auth_helper_requests_total", "", &sum);
	TAP_EQ_INT(sum, 0, "bad arguments: no helper outcome out of range");
	TAP_EQ_INT(
	    value_of(&sc, "submitproxy_transactions_total", "reply=\"5xx\""), 2,
	    "bad arguments: a reply code not 2xx/4xx is a 5xx");
	scrape_free(&sc);
	metrics_destroy(m);
	shared_finish(&sh);
}

static void test_version_names(void)
{
	TAP_EQ_INT(metrics_tls_version_parse("TLSv1.3"), METRICS_TLS_1_3,
		   "versions: TLSv1.3 parses");
	TAP_EQ_INT(metrics_tls_version_parse("TLSv1"), METRICS_TLS_1_0,
		   "versions: TLSv1 parses");
	TAP_EQ_INT(metrics_tls_version_parse("unknown"), METRICS_TLS_UNKNOWN,
		   "versions: \"unknown\" is no version");
	TAP_EQ_INT(metrics_tls_version_parse(NULL), METRICS_TLS_UNKNOWN,
		   "versions: NULL is unknown");
	TAP_EQ_INT(metrics_tls_version_wire(0x0303), METRICS_TLS_1_2,
		   "versions: 0x0303 is TLS 1.2");
	TAP_EQ_INT(metrics_tls_version_wire(0x0300), METRICS_TLS_SSL3,
		   "versions: 0x0300 is SSL 3");
	TAP_EQ_INT(metrics_tls_version_wire(0x7f1c), METRICS_TLS_UNKNOWN,
		   "versions: a draft is unknown");
	TAP_EQ_STR(metrics_tls_version_name(METRICS_TLS_1_1), "TLSv1.1",
		   "versions: the name of TLS 1.1");
	TAP_EQ_STR(metrics_tls_version_name((enum metrics_tls_version)(
		       METRICS_TLS_VERSION_COUNT + 4)),
		   "unknown", "versions: out of range is unknown");
}

/* ---- /healthz ---- */

static bool healthy(struct metrics *m, char *reason, size_t size)
{
	memset(reason, 'x', size);
	return metrics_healthy(m, reason, size);
}

static void test_health(struct config *cfg)
{
	struct shared sh;
	struct metrics *m;
	struct helper_stats *stats = helper_stats_create();
	struct ehlo_caps caps;
	char reason[256];

	memset(&caps, 0, sizeof(caps));
	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	TAP_OK(stats != NULL, "health: a helper stats page");
	helper_stats_set(stats, 2, 0, 0);
	m = metrics_create(cfg, 2, &sh, stats);

	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: a backend not tried yet and a helper: healthy");
	TAP_EQ_STR(reason, "ok: 1 of 1 backends up", "health: ok reason");
	TAP_OK(memchr(reason, '\n', strlen(reason)) == NULL,
	       "health: the reason is one line");

	shared_backend_down(&sh, cfg, &cfg->backend.list[0], "test", NULL);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: the only backend down: unhealthy");
	TAP_EQ_STR(reason, "no backend up (1 down)",
		   "health: no backend up reason");
	{
		struct scrape sc;

		render(m, &sc);
		TAP_EQ_INT(value_of(&sc, "submitproxy_backend_up",
				    "backend=\"127.0.0.1:10025\""),
			   0, "health: backend_up 0 while down");
		TAP_EQ_INT(value_of(&sc, "submitproxy_auth_helper_workers",
				    "state=\"alive\""),
			   2, "health: helper workers alive from its page");
		scrape_free(&sc);
	}
	shared_backend_up(&sh, &cfg->backend.list[0], &caps, "test", NULL);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: the backend back up: healthy again");

	{
		char tiny[8];

		TAP_OK(healthy(m, tiny, sizeof(tiny)) &&
			   strlen(tiny) == sizeof(tiny) - 1,
		       "health: a short buffer gets a cut reason, "
		       "terminated");
	}

	/* The helper: timeouts in a row on one loop. */
	metrics_bind(m, 1);
	metrics_helper_sent();
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: two timeouts in a row: still healthy");
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: three timeouts in a row: unhealthy");
	TAP_EQ_STR(reason,
		   "auth helper not answering: 3 requests timed out in a row",
		   "health: timeouts reason");
	metrics_helper_done(5000000, METRICS_HELPER_CANCELLED);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: a cancelled request is no answer");
	{
		uint64_t now = metrics_now_ms();

		TAP_OK(!metrics_healthy_at(m,
					   now + METRICS_HELPER_TIMEOUT_STALE_MS -
					       1000,
					   reason, sizeof(reason)),
		       "health: timeouts still count until they are stale");
		TAP_OK(metrics_healthy_at(m,
					  now + METRICS_HELPER_TIMEOUT_STALE_MS +
					      1000,
					  reason, sizeof(reason)),
		       "health: stale timeouts no longer mark it down (a "
		       "loop taken out of service gets no request to clear "
		       "them)");
	}
	metrics_helper_done(2000, METRICS_HELPER_ANSWERED);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: an answer resets the timeouts");
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	metrics_bind(m, 0);
	metrics_helper_done(5000000, METRICS_HELPER_TIMEOUT);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: timeouts on two loops are not in a row on one");
	metrics_bind(NULL, 0);

	helper_stats_set(stats, 0, 0, 3);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: no PAM worker alive: unhealthy");
	TAP_EQ_STR(reason, "no PAM worker running",
		   "health: no PAM worker reason");
	helper_stats_set(stats, 1, 1, 0);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "health: a PAM worker again: healthy");

	/* A channel lost is for good (the proxy stops). */
	metrics_bind(m, METRICS_SLOT_CONTROL);
	metrics_helper_lost();
	metrics_bind(NULL, 0);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: the helper channel lost: unhealthy");
	TAP_EQ_STR(reason, "auth helper channel lost",
		   "health: helper lost reason");
	metrics_bind(m, 0);
	metrics_helper_done(2000, METRICS_HELPER_ANSWERED);
	metrics_bind(NULL, 0);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "health: an answer on another loop does not bring it back");

	metrics_destroy(m);
	helper_stats_destroy(stats);
	shared_finish(&sh);
}

/* Two backends: one down is still healthy, both down is not, and the
 * reason counts them. */
static void test_health_two_backends(void)
{
	static const char text[] = "[listener one]\n"
				   "address = 127.0.0.1:2525\n"
				   "mode = plain\n"
				   "[backend]\n"
				   "address = 127.0.0.1:10025, "
				   "unix:/run/mta.sock\n";
	const char *dir = getenv("TMPDIR");
	struct config_errors errors = {NULL, 0};
	struct config *cfg = NULL;
	struct shared sh;
	struct metrics *m;
	char path[4096], reason[256];
	int fd;

	snprintf(path, sizeof(path), "%s/test_metrics.XXXXXX",
		 dir != NULL && *dir != '\0' ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, text, sizeof(text) - 1) < 0 || close(fd) < 0)
		exit(99);
	if (config_read(path, &cfg, &errors) < 0) {
		config_errors_print(&errors, stdout);
		exit(99);
	}
	config_errors_finish(&errors);
	unlink(path);
	shared_init(&sh, 1, 2);
	shared_backends_configure(&sh, cfg);
	m = metrics_create(cfg, 1, &sh, NULL);
	shared_backend_down(&sh, cfg, &cfg->backend.list[1], "test", NULL);
	TAP_OK(healthy(m, reason, sizeof(reason)),
	       "two backends: one down: healthy");
	TAP_EQ_STR(reason, "ok: 1 of 2 backends up", "two backends: reason");
	shared_backend_down(&sh, cfg, &cfg->backend.list[0], "test", NULL);
	TAP_OK(!healthy(m, reason, sizeof(reason)),
	       "two backends: both down: unhealthy");
	TAP_EQ_STR(reason, "no backend up (2 down)",
		   "two backends: both down reason");
	metrics_destroy(m);
	shared_finish(&sh);
	config_free(cfg);
}

int main(void)
{
	struct config *cfg = load_config();

	test_threads(cfg);
	test_bucket_bounds(cfg);
	test_escaping(cfg);
	test_combo_overflow(cfg);
	test_names_overflow(cfg);
	test_bad_arguments(cfg);
	test_version_names();
	test_health(cfg);
	test_health_two_backends();
	metrics_destroy(NULL);
	config_free(cfg);
	return tap_done();
}
