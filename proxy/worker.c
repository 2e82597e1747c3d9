/* worker.c - see worker.h */
#include "proxy/worker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "proxy/addrtable.h"
#include "proxy/log.h"
#include "proxy/session.h"
#include "proxy/util.h"

/* Generous backlog: the kernel caps it at somaxconn anyway. */
#define WORKER_LISTEN_BACKLOG 511

struct listener {
	uv_tcp_t tcp;
	struct worker *w;
	const struct config_listener *cl;
	const struct config_addr *addr;
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

	uv_tcp_init(w->loop, &l->tcp);
	l->tcp.data = l;
	l->open = true;
	/* "[::]:587" and "0.0.0.0:587" may both be configured: keep the IPv6
	 * socket to IPv6 so the two do not collide. */
	if (l->addr->ss.ss_family == AF_INET6)
		flags |= UV_TCP_IPV6ONLY;
	r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&l->addr->ss, flags);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->tcp, WORKER_LISTEN_BACKLOG,
			      worker_on_connection);
	if (r < 0) {
		log_error(NULL,
			  "event=listen_error listener=%s address=%s "
			  "error=\"%s\"",
			  l->cl->name, l->addr->text, uv_strerror(r));
		return -1;
	}
	log_info(NULL, "event=listen listener=%s address=%s mode=%s",
		 l->cl->name, l->addr->text, listener_mode_name(l->cl->mode));
	return 0;
}

int worker_init(struct worker *w, uv_loop_t *loop, const struct config *cfg,
		struct tls_server *tls)
{
	uint64_t seed[2] = {0, 0};
	size_t i, j, n = 0;

	memset(w, 0, sizeof(*w));
	w->loop = loop;
	w->cfg = cfg;
	w->tls = tls;
	if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
		fatal("getrandom failed");
	w->sid_base = seed[0];
	w->addrs = addrtable_create(seed[1]);

	for (i = 0; i < cfg->nlisteners; i++)
		w->nlisteners += cfg->listeners[i].naddrs;
	w->listeners = xcalloc(w->nlisteners, sizeof(*w->listeners));
	for (i = 0; i < cfg->nlisteners; i++) {
		for (j = 0; j < cfg->listeners[i].naddrs; j++) {
			struct listener *l = &w->listeners[n++];

			l->w = w;
			l->cl = &cfg->listeners[i];
			l->addr = &cfg->listeners[i].addrs[j];
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
	for (size_t i = 0; i < w->nlisteners; i++) {
		if (w->listeners[i].open) {
			uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
			w->listeners[i].open = false;
		}
	}
	for (s = w->sessions; s != NULL; s = session_next(s))
		session_shutdown(s);
}

void worker_finish(struct worker *w)
{
	free(w->listeners);
	w->listeners = NULL;
	addrtable_destroy(w->addrs);
	w->addrs = NULL;
}
