/*
 * metricsd.c - see metricsd.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/signals.h"
#include "common/util.h"
#include "config/config.h"
#include "config/values.h"
#include "proxy/metrics.h"
#include "proxy/metricsd.h"

/* Enough for Prometheus and a few people with curl; a flood of scrapers
 * gets the kernel's backlog, not our memory. */
#define METRICSD_CONNECTIONS 32
#define METRICSD_PER_ADDRESS 8
#define METRICSD_TIMEOUT_S 10
#define METRICSD_CONN_MEMORY (32 * 1024)

struct metricsd {
	int fd;
	struct MHD_Daemon *daemon;
	struct metrics *metrics;
	struct config_cidr *allow;
	size_t nallow;
	char address[64];

	/* The refusal log's rate limit, and libmicrohttpd's own (its
	 * thread alone): one line a second each, and how many were left
	 * out. */
	time_t refused_second;
	unsigned long refused_unlogged;
	time_t mhd_second;
	unsigned long mhd_unlogged;
};

static enum MHD_Result metricsd_accept(void *cls, const struct sockaddr *sa,
				       socklen_t len)
{
	struct metricsd *d = cls;
	char ip[INET6_ADDRSTRLEN] = "unknown";
	time_t now;

	(void)len;
	if (d->nallow == 0)
		return MHD_YES;
	for (size_t i = 0; i < d->nallow; i++)
		if (value_cidr_match(&d->allow[i], sa))
			return MHD_YES;
	now = time(NULL);
	if (now == d->refused_second) {
		d->refused_unlogged++;
		return MHD_NO;
	}
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  ip, sizeof(ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, ip,
			  sizeof(ip));
	log_info(NULL,
		 "event=reject ip=%s reason=metrics_not_allowed "
		 "suppressed=%lu",
		 ip, d->refused_unlogged);
	d->refused_second = now;
	d->refused_unlogged = 0;
	return MHD_NO;
}

static enum MHD_Result metricsd_send(struct MHD_Connection *c,
				     unsigned status, const char *type,
				     char *body, size_t len, bool owned)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (owned)
		r = MHD_create_response_from_buffer_with_free_callback(
		    len, body, free);
	else
		r = MHD_create_response_from_buffer(len, body,
						    MHD_RESPMEM_MUST_COPY);
	if (r == NULL) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result metricsd_text(struct MHD_Connection *c,
				     unsigned status, const char *text)
{
	return metricsd_send(c, status, "text/plain; charset=utf-8",
			     (char *)text, strlen(text), false);
}

static enum MHD_Result metricsd_request(void *cls, struct MHD_Connection *c,
					const char *url, const char *method,
					const char *version,
					const char *upload_data,
					size_t *upload_size, void **state)
{
	static int seen; /* the marker of a request's first call */
	struct metricsd *d = cls;

	(void)version;
	(void)upload_data;
	if (*state == NULL) {
		/* Headers only: answer once the request is complete. */
		*state = &seen;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		*upload_size = 0; /* a body is read and ignored */
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return metricsd_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				     "only GET and HEAD\n");
	if (strcmp(url, "/metrics") == 0) {
		struct metrics_text t;

		if (metrics_render(d->metrics, &t) < 0)
			return metricsd_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
					     "out of memory\n");
		return metricsd_send(c, MHD_HTTP_OK,
				     "text/plain; version=0.0.4; "
				     "charset=utf-8",
				     t.data, t.len, true);
	}
	if (strcmp(url, "/healthz") == 0) {
		char reason[256], line[300];
		bool ok = metrics_healthy(d->metrics, reason, sizeof(reason));

		snprintf(line, sizeof(line), "%s\n", reason);
		return metricsd_text(c,
				     ok ? MHD_HTTP_OK
					: MHD_HTTP_SERVICE_UNAVAILABLE,
				     line);
	}
	return metricsd_text(c, MHD_HTTP_NOT_FOUND,
			     "not found: /metrics or /healthz\n");
}

/* libmicrohttpd's own complaints, as our log lines: at most one a second
 * (a client over the connection limits makes one per connect). */
static void metricsd_log(void *cls, const char *fmt, va_list ap)
{
	struct metricsd *d = cls;
	char msg[256], clean[SANITIZE_BUFSIZE];
	time_t now = time(NULL);
	int n;

	if (now == d->mhd_second) {
		d->mhd_unlogged++;
		return;
	}
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = (int)sizeof(msg) - 1;
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	log_info(NULL, "event=metrics_http error=\"%s\" suppressed=%lu",
		 sanitize(clean, sizeof(clean), msg, (size_t)n),
		 d->mhd_unlogged);
	d->mhd_second = now;
	d->mhd_unlogged = 0;
}

struct metricsd *metricsd_open(const struct config *cfg, struct metrics *m)
{
	const struct config_addr *a = &cfg->metrics.address;
	struct metricsd *d;
	int one = 1;
	int fd;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(fd, 64) < 0) {
		log_error(NULL,
			  "event=listen_error listener=metrics address=%s "
			  "error=\"%s\"",
			  a->text, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->fd = fd;
	d->metrics = m;
	snprintf(d->address, sizeof(d->address), "%s", a->text);
	if (cfg->metrics.nallow > 0) {
		d->nallow = cfg->metrics.nallow;
		d->allow = xcalloc(d->nallow, sizeof(d->allow[0]));
		memcpy(d->allow, cfg->metrics.allow,
		       d->nallow * sizeof(d->allow[0]));
	}
	return d;
}

int metricsd_start(struct metricsd *d)
{
	sigset_t block, old;
	/* libmicrohttpd closes the socket it is given when it stops (and on
	 * most of its start failures): its own copy, so that ours is
	 * closed once, by us. */
	int mhd_fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0);

	if (mhd_fd < 0) {
		log_error(NULL,
			  "event=start_error error=\"metrics endpoint on %s: "
			  "%s\"",
			  d->address, strerror(errno));
		return -1;
	}
	/* The thread libmicrohttpd starts inherits this mask: the stop
	 * signals belong to the control loop. */
	control_signals(&block);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	d->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
	    0, metricsd_accept, d, metricsd_request, d,
	    /* First, or libmicrohttpd prints on stderr until it is set. */
	    MHD_OPTION_EXTERNAL_LOGGER, metricsd_log, d,
	    MHD_OPTION_LISTEN_SOCKET, mhd_fd, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)METRICSD_CONNECTIONS,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)METRICSD_PER_ADDRESS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICSD_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICSD_CONN_MEMORY,
	    MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (d->daemon == NULL) {
		log_error(NULL,
			  "event=start_error error=\"metrics endpoint on %s "
			  "did not start\"",
			  d->address);
		return -1;
	}
	log_info(NULL, "event=listen listener=metrics address=%s", d->address);
	return 0;
}

void metricsd_close(struct metricsd *d)
{
	if (d == NULL)
		return;
	if (d->daemon != NULL)
		MHD_stop_daemon(d->daemon); /* joins its thread, closes
					       its copy of the socket */
	close(d->fd);
	free(d->allow);
	free(d);
}
