/* worker.c - see worker.h */
#include "proxy/worker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/addrtable.h"
#include "proxy/log.h"
#include "proxy/relay.h"
#include "proxy/sdnotify.h"
#include "proxy/session.h"
#include "proxy/util.h"

/* Generous backlog: the kernel caps it at somaxconn anyway. */
#define WORKER_LISTEN_BACKLOG 511

struct listener {
	uv_tcp_t tcp;
	struct worker *w;
	const struct config_listener *cl;
	const struct config_addr *addr;  /* NULL for an activated socket */
	int fd;                          /* the activated socket, or -1 */
	bool open;
};

static void worker_on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;

	if (status < 0) {
		log_warn(NULL, "event=accept_error listener=%s error=\"%s\"",
			 l->cl->name, uv_strerror(status));
		return;
	}
	session_accept(l->w, l->cl, server);
}

static int worker_listen(struct worker *w, struct listener *l)
{
	unsigned flags = 0;
	int r;

	char where[80];

	uv_tcp_init(w->loop, &l->tcp);
	l->tcp.data = l;
	l->open = true;
	if (l->addr == NULL) {
		/* Socket activation: systemd bound it (privileged ports
		 * without root). */
		snprintf(where, sizeof(where), "fd:%d", l->fd);
		r = uv_tcp_open(&l->tcp, l->fd);
	} else {
		snprintf(where, sizeof(where), "%s", l->addr->text);
		/* "[::]:587" and "0.0.0.0:587" may both be configured: keep
		 * the IPv6 socket to IPv6 so the two do not collide. */
		if (l->addr->ss.ss_family == AF_INET6)
			flags |= UV_TCP_IPV6ONLY;
		r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->addr->ss,
				flags);
	}
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->tcp, WORKER_LISTEN_BACKLOG,
			      worker_on_connection);
	if (r < 0) {
		log_error(NULL,
			  "event=listen_error listener=%s address=%s "
			  "error=\"%s\"",
			  l->cl->name, where, uv_strerror(r));
		return -1;
	}
	log_info(NULL, "event=listen listener=%s address=%s mode=%s",
		 l->cl->name, where, listener_mode_name(l->cl->mode));
	return 0;
}

/* Entries of addresses that failed AUTH outlive their connections until
 * their window passes; sweep them so that memory follows recent
 * addresses only. */
#define WORKER_SWEEP_MS 60000

static void worker_on_sweep(uv_timer_t *t)
{
	struct worker *w = t->data;

	addrtable_sweep(w->addrs, uv_now(w->loop),
			w->cfg->auth.address_failure_window_ms);
}

/* DESIGN.md: the backend is re-probed periodically so that the pre-auth
 * EHLO follows what it can do. */
#define WORKER_PROBE_MS 60000

static void worker_probe_ready(void *arg)
{
	struct worker *w = arg;

	w->backend_caps = *relay_caps(w->probe);
	if (!w->backend_caps_known || w->backend_probe_failing)
		log_info(NULL, "event=backend_probe status=ok backend=%s "
			       "esmtp=%s pipelining=%s",
			 w->cfg->backend.address,
			 relay_esmtp(w->probe) ? "yes" : "no",
			 w->backend_caps.caps & EHLO_CAP_PIPELINING ? "yes"
								     : "no");
	w->backend_caps_known = true;
	w->backend_probe_failing = false;
	w->probe_done = true;
}

static void worker_probe_failed(void *arg, const char *why)
{
	struct worker *w = arg;

	/* After QUIT the backend closes: that is the probe's normal end. */
	if (w->probe_done)
		return;
	if (!w->backend_probe_failing)
		log_warn(NULL,
			 "event=backend_probe status=failed backend=%s "
			 "error=\"%s\"%s",
			 w->cfg->backend.address, why,
			 w->backend_caps_known
				 ? ""
				 : " advertising=conservative");
	w->backend_probe_failing = true;
}

static void worker_probe_reply(void *arg, const struct relay_reply *reply)
{
}

static const struct relay_callbacks worker_probe_callbacks = {
	.ready = worker_probe_ready,
	.failed = worker_probe_failed,
	.reply = worker_probe_reply,
};

static void worker_on_probe(uv_timer_t *t)
{
	struct worker *w = t->data;

	relay_destroy(w->probe);
	w->probe_done = false;
	w->probe = relay_create(w->loop, w->cfg, NULL, &worker_probe_callbacks,
				w);
}

static size_t worker_count_activated(const struct sd_listen_fd *fds,
				     size_t nfds, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < nfds; i++)
		if (strcmp(fds[i].name, name) == 0)
			n++;
	return n;
}

int worker_init(struct worker *w, uv_loop_t *loop, struct config *cfg,
		struct tls_server *tls, struct auth_client *auth,
		const struct sendermap *sendermap,
		const struct sd_listen_fd *fds, size_t nfds)
{
	uint64_t seed[2] = {0, 0};
	size_t i, j, n = 0;

	memset(w, 0, sizeof(*w));
	w->loop = loop;
	w->cfg = cfg;
	w->tls = tls;
	w->auth = auth;
	w->sendermap = sendermap;
	uv_timer_init(loop, &w->probe_timer);
	w->probe_timer.data = w;
	uv_timer_start(&w->probe_timer, worker_on_probe, 0, WORKER_PROBE_MS);
	uv_unref((uv_handle_t *)&w->probe_timer);
	uv_timer_init(loop, &w->sweep_timer);
	w->sweep_timer.data = w;
	uv_timer_start(&w->sweep_timer, worker_on_sweep, WORKER_SWEEP_MS,
		       WORKER_SWEEP_MS);
	/* The sweep alone must not keep the loop alive at shutdown. */
	uv_unref((uv_handle_t *)&w->sweep_timer);
	if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
		fatal("getrandom failed");
	w->sid_base = seed[0];
	w->addrs = addrtable_create(seed[1]);

	/* A listener named in $LISTEN_FDNAMES (FileDescriptorName= in the
	 * .socket unit) takes the passed sockets instead of binding its
	 * addresses. */
	for (i = 0; i < cfg->nlisteners; i++) {
		size_t k = worker_count_activated(fds, nfds,
						  cfg->listeners[i].name);

		w->nlisteners += k ? k : cfg->listeners[i].naddrs;
	}
	for (i = 0; i < nfds; i++) {
		bool used = false;

		for (j = 0; j < cfg->nlisteners; j++)
			used |= strcmp(fds[i].name, cfg->listeners[j].name) == 0;
		if (!used) {
			log_warn(NULL,
				 "event=listen_error fd=%d name=\"%s\" "
				 "error=\"no [listener %s] for this socket\"",
				 fds[i].fd, fds[i].name, fds[i].name);
			close(fds[i].fd);
		}
	}
	w->listeners = xcalloc(w->nlisteners, sizeof(*w->listeners));
	for (i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *cl = &cfg->listeners[i];

		if (worker_count_activated(fds, nfds, cl->name) > 0) {
			for (j = 0; j < nfds; j++) {
				struct listener *l;

				if (strcmp(fds[j].name, cl->name) != 0)
					continue;
				l = &w->listeners[n++];
				l->w = w;
				l->cl = cl;
				l->fd = fds[j].fd;
				if (worker_listen(w, l) < 0)
					return -1;
			}
			continue;
		}
		for (j = 0; j < cl->naddrs; j++) {
			struct listener *l = &w->listeners[n++];

			l->w = w;
			l->cl = cl;
			l->addr = &cl->addrs[j];
			l->fd = -1;
			if (worker_listen(w, l) < 0)
				return -1;
		}
	}
	return 0;
}

void worker_stop(struct worker *w)
{
	struct session *s;

	if (w->stopping)
		return;
	w->stopping = true;
	uv_close((uv_handle_t *)&w->sweep_timer, NULL);
	uv_close((uv_handle_t *)&w->probe_timer, NULL);
	relay_destroy(w->probe);
	w->probe = NULL;
	for (size_t i = 0; i < w->nlisteners; i++) {
		if (w->listeners[i].open) {
			uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
			w->listeners[i].open = false;
		}
	}
	for (s = w->sessions; s != NULL; s = session_next(s))
		session_shutdown(s);
}

void worker_reload(struct worker *w, struct config *cfg,
		   const struct sendermap *sendermap)
{
	struct config *old = w->cfg;

	/* Listeners point into the configuration they were made from; the
	 * new one carries the same listener sections in the same order. */
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		size_t k = (size_t)(l->cl - old->listeners);

		l->cl = &cfg->listeners[k];
		if (l->addr != NULL)
			l->addr = &cfg->listeners[k].addrs[l->addr -
							  old->listeners[k].addrs];
	}
	w->cfg = cfg;
	w->sendermap = sendermap;
	/* The next probe uses the new [backend]. */
	relay_destroy(w->probe);
	w->probe = NULL;
	w->probe_done = false;
	uv_timer_start(&w->probe_timer, worker_on_probe, 0, WORKER_PROBE_MS);
	if (old->refs == 0)
		config_free(old);
}

void worker_config_release(struct worker *w, struct config *cfg)
{
	if (--cfg->refs == 0 && cfg != w->cfg)
		config_free(cfg);
}

void worker_stop_force(struct worker *w)
{
	for (struct session *s = w->sessions; s != NULL; s = session_next(s))
		session_force_close(s);
}

void worker_finish(struct worker *w)
{
	free(w->listeners);
	w->listeners = NULL;
	addrtable_destroy(w->addrs);
	w->addrs = NULL;
}
