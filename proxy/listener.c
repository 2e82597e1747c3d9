/* listener.c - see listener.h */
#include "proxy/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Generous backlog: the kernel caps it at somaxconn anyway. */
#define LISTENER_BACKLOG 511
/* Accepts per wake-up, so that a flood of connections cannot starve the
 * loop's other work (signals, the drain timer). */
#define LISTENER_ACCEPT_BURST 64

struct listen_sock {
	uv_poll_t poll;
	uv_timer_t pause;
	struct listeners *ls;
	size_t index; /* into cfg->listeners */
	char *name;   /* [listener NAME], for the logs */
	int fd;
	bool paused;
};

struct listeners {
	listeners_accept_cb *cb;
	void *arg;
	struct listen_sock *socks;
	size_t nsocks;
	size_t open_handles; /* two per socket, until closed */
	bool held;	     /* listeners_hold(): accept nothing */
	bool closing;
};

/* socket(), bind(), listen(), as uv_tcp_bind() would: SO_REUSEADDR so a
 * restart does not wait for TIME_WAIT; an IPv6 socket stays IPv6-only so
 * that "[::]:587" and "0.0.0.0:587" may both be configured.  Returns the
 * fd, or -errno. */
static int listener_bind(const struct config_addr *addr)
{
	const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);
	int one = 1, fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (sa->sa_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) <
		 0) ||
	    bind(fd, sa, len) < 0 || listen(fd, LISTENER_BACKLOG) < 0) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

/* A socket systemd bound: it must be a listening stream socket, made
 * non-blocking (accept() is only ever tried when poll says so, but a
 * connection may vanish in between). */
static int listener_adopt(int fd)
{
	int type = 0, acc = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	len = sizeof(acc);
	if (type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc)
		return -EINVAL;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return fd;
}

static void listener_on_poll(uv_poll_t *h, int status, int events);

static void listener_on_pause_end(uv_timer_t *t)
{
	struct listen_sock *l = t->data;

	if (l->ls->closing)
		return;
	l->paused = false;
	if (!l->ls->held)
		uv_poll_start(&l->poll, UV_READABLE, listener_on_poll);
}

/* Stops polling the socket for LISTENER_PAUSE_MS, saying why;
 * connections wait in the kernel's backlog meanwhile. */
static void listener_pause(struct listen_sock *l, const char *error)
{
	log_warn(NULL,
		 "event=accept_error listener=%s error=\"%s\" action=pause "
		 "pause_ms=%d",
		 l->name, error, LISTENER_PAUSE_MS);
	l->paused = true;
	uv_poll_stop(&l->poll);
	uv_timer_start(&l->pause, listener_on_pause_end, LISTENER_PAUSE_MS, 0);
}

/* Errors the connection brings with it (accept(2), "Error handling"):
 * that connection is lost, the next one may be fine. */
static bool listener_error_is_transient(int err)
{
	switch (err) {
	case ECONNABORTED:
	case EPROTO:
	case EPERM: /* a firewall rule */
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

static void listener_on_poll(uv_poll_t *h, int status, int events)
{
	struct listen_sock *l = h->data;

	(void)events;
	if (status < 0) {
		/* libuv has stopped the handle (an error on the socket):
		 * try again after a pause rather than never. */
		listener_pause(l, uv_strerror(status));
		return;
	}
	for (int i = 0;
	     i < LISTENER_ACCEPT_BURST && !l->ls->closing && !l->ls->held;
	     i++) {
		int fd =
		    accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			l->ls->cb(l->ls->arg, l->index, fd);
			continue;
		}
		if (errno == EINTR || listener_error_is_transient(errno))
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection waits in
		 * the backlog; try again later rather than spin on it. */
		listener_pause(l, strerror(errno));
		return;
	}
}

static void listener_on_closed(uv_handle_t *h)
{
	struct listen_sock *l = h->data;
	struct listeners *ls = l->ls;

	if (--ls->open_handles > 0)
		return;
	for (size_t i = 0; i < ls->nsocks; i++) {
		if (ls->socks[i].fd >= 0)
			close(ls->socks[i].fd);
		free(ls->socks[i].name);
	}
	free(ls->socks);
	free(ls);
}

static size_t listener_count_activated(const struct sd_listen_fd *fds,
				       size_t nfds, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < nfds; i++)
		if (strcmp(fds[i].name, name) == 0)
			n++;
	return n;
}

/* Opens one socket of listener index: fd >= 0 is an activated socket,
 * otherwise addr is bound. */
static int listener_open_one(struct listeners *ls, uv_loop_t *loop,
			     const struct config_listener *cl, size_t index,
			     const struct config_addr *addr, int fd)
{
	struct listen_sock *l = &ls->socks[ls->nsocks];
	char where[80];
	int r;

	if (addr == NULL) {
		/* Socket activation: systemd bound it (privileged ports
		 * without root). */
		snprintf(where, sizeof(where), "fd:%d", fd);
		r = listener_adopt(fd);
		if (r < 0)
			close(fd);
	} else {
		snprintf(where, sizeof(where), "%s", addr->text);
		r = listener_bind(addr);
	}
	if (r < 0) {
		log_error(NULL,
			  "event=listen_error listener=%s address=%s "
			  "error=\"%s\"",
			  cl->name, where, strerror(-r));
		return -1;
	}
	l->ls = ls;
	l->index = index;
	l->name = xstrdup(cl->name);
	l->fd = r;
	uv_poll_init(loop, &l->poll, l->fd);
	uv_timer_init(loop, &l->pause);
	l->poll.data = l->pause.data = l;
	ls->nsocks++;
	ls->open_handles += 2;
	uv_poll_start(&l->poll, UV_READABLE, listener_on_poll);
	log_info(NULL, "event=listen listener=%s address=%s mode=%s", cl->name,
		 where, listener_mode_name(cl->mode));
	return 0;
}

struct listeners *listeners_open(uv_loop_t *loop, const struct config *cfg,
				 const struct sd_listen_fd *fds, size_t nfds,
				 listeners_accept_cb *cb, void *arg)
{
	struct listeners *ls = xcalloc(1, sizeof(*ls));
	size_t i, j, want = 0;
	bool failed = false;

	ls->cb = cb;
	ls->arg = arg;
	/* A listener named in $LISTEN_FDNAMES (FileDescriptorName= in the
	 * .socket unit) takes the passed sockets instead of binding its
	 * addresses. */
	for (i = 0; i < cfg->nlisteners; i++) {
		size_t k =
		    listener_count_activated(fds, nfds, cfg->listeners[i].name);

		want += k ? k : cfg->listeners[i].naddrs;
	}
	for (i = 0; i < nfds; i++) {
		bool used = false;

		for (j = 0; j < cfg->nlisteners; j++)
			used |=
			    strcmp(fds[i].name, cfg->listeners[j].name) == 0;
		if (!used) {
			log_warn(NULL,
				 "event=listen_error fd=%d name=\"%s\" "
				 "error=\"no [listener %s] for this socket\"",
				 fds[i].fd, fds[i].name, fds[i].name);
			close(fds[i].fd);
		}
	}
	ls->socks = xcalloc(want ? want : 1, sizeof(*ls->socks));
	for (i = 0; i < cfg->nlisteners && !failed; i++) {
		const struct config_listener *cl = &cfg->listeners[i];

		if (listener_count_activated(fds, nfds, cl->name) > 0) {
			for (j = 0; j < nfds && !failed; j++)
				if (strcmp(fds[j].name, cl->name) == 0)
					failed = listener_open_one(
						     ls, loop, cl, i, NULL,
						     fds[j].fd) < 0;
			continue;
		}
		for (j = 0; j < cl->naddrs && !failed; j++)
			failed = listener_open_one(ls, loop, cl, i,
						   &cl->addrs[j], -1) < 0;
	}
	if (failed) {
		/* Activated sockets not reached yet are closed with the
		 * process; what was opened is closed now. */
		listeners_close(ls);
		return NULL;
	}
	return ls;
}

void listeners_hold(struct listeners *ls, bool hold)
{
	if (ls == NULL || ls->closing || ls->held == hold)
		return;
	ls->held = hold;
	for (size_t i = 0; i < ls->nsocks; i++) {
		struct listen_sock *l = &ls->socks[i];

		if (hold)
			uv_poll_stop(&l->poll);
		else if (!l->paused)
			uv_poll_start(&l->poll, UV_READABLE, listener_on_poll);
	}
}

void listeners_close(struct listeners *ls)
{
	if (ls == NULL || ls->closing)
		return;
	ls->closing = true;
	if (ls->nsocks == 0) {
		free(ls->socks);
		free(ls);
		return;
	}
	for (size_t i = 0; i < ls->nsocks; i++) {
		uv_close((uv_handle_t *)&ls->socks[i].poll, listener_on_closed);
		uv_close((uv_handle_t *)&ls->socks[i].pause,
			 listener_on_closed);
	}
}
