/*
 * helper.c - see helper.h.
 *
 * One poll() loop, three kinds of descriptor:
 *
 *   signalfd    SIGCHLD, SIGTERM, SIGINT, SIGHUP, blocked for the whole
 *               run and read here (no handler, no global state);
 *   channels    the socketpairs from the network process, one per event
 *               loop: non-blocking, each read into its own bounded buffer,
 *               split into frames, every byte distrusted (auth/proto.c);
 *               answers go out through the channel's own bounded output
 *               buffer;
 *   worker fds  one SOCK_SEQPACKET socketpair per PAM worker: one frame
 *               per message, one request in flight per worker.
 *
 * Back-pressure, per channel: every request accepted on a channel (sent
 * to a worker, queued, or refused as "busy") reserves room for its answer
 * in that channel's output buffer, and no further frame is taken from the
 * channel's input buffer unless one more answer fits.  The helper
 * therefore never has to drop an answer nor block on the network process:
 * when one of its loops stops reading, the helper stops reading that
 * channel too, and the kernel socket buffer fills; the other channels go
 * on.
 *
 * Request ids are chosen by each loop of the network process, so they are
 * unique only within a channel: a queued request and a request in flight
 * at a worker carry the index of their channel, and the answer goes back
 * there only.  A channel that reaches EOF or fails is closed alone: its
 * queued requests are dropped (no PAM transaction for a loop that is
 * gone) and answers still due on it are discarded when they come.  The
 * helper stops once no channel is left.
 *
 * Every request gets exactly one answer: the worker's, or TEMPFAIL with
 * "busy" (queue full), "timeout" (queued past [auth] timeout, the network
 * process has given up on it already) or "worker_died" (the worker exited,
 * was killed, or broke the protocol).
 */
#include "auth/helper.h"
#include "auth/helperstats.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/pam.h"
#include "auth/proto.h"
#include "config/config.h"
#include "common/log.h"

/* Input from the network process: room for several whole frames. */
#define HELPER_RBUF_SIZE (AUTH_PROTO_FRAME_MAX * 8)
/* Requests waiting for a worker, per worker. */
#define HELPER_QUEUE_PER_WORKER 64 /* 4 * 16 */
/* A worker busy for [auth] timeout plus this is killed; the network
 * process answered 454 at [auth] timeout already. */
#define HELPER_WORKER_GRACE_MS 1000
/* Respawn limit: at most max(HELPER_FORK_BURST, helper_workers) forks in
 * any HELPER_FORK_WINDOW_MS, so that a PAM stack that crashes at once
 * cannot fork-bomb, yet every dead worker is replaced within a window. */
#define HELPER_FORK_BURST     10
#define HELPER_FORK_WINDOW_MS 1000
/* At shutdown, workers get SIGTERM, then SIGKILL after this. */
#define HELPER_STOP_GRACE_MS 2000
/* comm of a worker (/proc/PID/comm, ps -o comm): at most 15 bytes. */
#define HELPER_WORKER_TITLE "sp-auth-worker"

/* Largest response frame: prefix, version, type, id, result, two strings. */
#define HELPER_RESPONSE_MAX                                                    \
	(4 + 1 + 1 + 4 + 1 + 2 + AUTH_PROTO_USER_MAX + 2 +                     \
	 AUTH_PROTO_REASON_MAX)
static_assert(HELPER_RESPONSE_MAX <= AUTH_PROTO_FRAME_MAX,
	      "a response frame fits in a frame");

/* Slot states: EMPTY (pid 0, fd -1), RUNNING (pid, fd), DYING (pid,
 * fd -1, SIGKILL sent or exiting, waiting to be reaped).  Only an EMPTY
 * slot is refilled. */
struct helper_worker {
	pid_t pid;
	int fd;
	bool busy;
	uint32_t id;	     /* the request in flight, when busy */
	size_t chan;	     /* and the channel it came from */
	uint64_t started_ms; /* when it was sent */
	bool forked;	     /* once: a later fork is a restart */
};

struct helper_queued {
	struct auth_request req; /* wiped when dequeued */
	size_t chan;		 /* where the answer goes */
	uint64_t queued_ms;
};

/* One auth channel: a socketpair to one event loop of the network
 * process.  Closed channels stay in the array (fd -1), so that an index
 * held by a worker or a queued request never names another channel. */
struct helper_channel {
	int fd; /* -1 once closed */
	unsigned char rbuf[HELPER_RBUF_SIZE];
	size_t rlen;
	unsigned char *obuf; /* h->ocap bytes */
	size_t olen;
	size_t pending; /* accepted requests not answered yet */
};

struct helper {
	const struct config *cfg;

	int sig_fd;
	bool signals_saved; /* the three below hold what to restore */
	sigset_t old_mask;
	struct sigaction old_sigpipe, old_sigchld;

	struct helper_channel *chans;
	size_t nchans;
	size_t nchans_open;
	/* Which channel is served first this round: it moves every round,
	 * so that when the queue is full no loop always comes last. */
	size_t chan_first;
	size_t ocap;	 /* each channel's output buffer */
	pid_t net_pid;	 /* 0 once reaped */
	int exit_status; /* what auth_helper_run() returns */

	bool stopping;
	uint64_t stop_ms;
	bool stop_killed; /* SIGKILL sent to the remaining workers */

	struct helper_worker *workers;
	size_t nworkers;

	struct helper_queued *queue; /* a ring */
	size_t qcap, qhead, qlen;

	uint64_t *fork_ms; /* a ring: when the last fork_cap forks were */
	size_t fork_cap, fork_next, nforks;

	struct pollfd *pfds; /* sig_fd, one per channel, one per worker */

	/* What the network process's metrics read (auth/helperstats.h):
	 * written, never read back. */
	struct helper_stats *stats;
};

enum { HELPER_PFD_SIG, HELPER_PFD_CHANS };

static size_t helper_pfd_workers(const struct helper *h)
{
	return HELPER_PFD_CHANS + h->nchans;
}

static uint64_t helper_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* For log lines: "SIGTERM", or the number for the uncommon ones. */
static const char *helper_signal_name(int sig, char *buf, size_t size)
{
	static const struct {
		int sig;
		const char *name;
	} names[] = {
	    {SIGHUP, "SIGHUP"},	  {SIGINT, "SIGINT"},	{SIGQUIT, "SIGQUIT"},
	    {SIGILL, "SIGILL"},	  {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},
	    {SIGFPE, "SIGFPE"},	  {SIGKILL, "SIGKILL"}, {SIGSEGV, "SIGSEGV"},
	    {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},
	    {SIGUSR1, "SIGUSR1"}, {SIGUSR2, "SIGUSR2"}, {SIGCHLD, "SIGCHLD"},
	    {SIGSYS, "SIGSYS"},
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].sig == sig)
			return names[i].name;
	snprintf(buf, size, "%d", sig);
	return buf;
}

/* Appends "status=N" or "signal=SIGX" for a wait status. */
static const char *helper_wait_status(int status, char *buf, size_t size)
{
	char name[16];

	if (WIFEXITED(status))
		snprintf(buf, size, "status=%d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(
		    buf, size, "signal=%s",
		    helper_signal_name(WTERMSIG(status), name, sizeof(name)));
	else
		snprintf(buf, size, "status=unknown");
	return buf;
}

/* ---- the PAM worker process ------------------------------------------- */

/* Closes every descriptor but 0, 1, 2 and keep: the channels to the
 * network process, the signalfd, the other workers' sockets, and
 * whatever the caller of auth_helper_run() had open. */
static void helper_close_fds_except(int keep)
{
	struct rlimit rl;
	int fd, max = 65536;

	if (keep > 3 && close_range(3, (unsigned)keep - 1, 0) == 0 &&
	    close_range((unsigned)keep + 1, ~0U, 0) == 0)
		return;
	if (keep == 3 && close_range(4, ~0U, 0) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max)
		max = (int)rl.rlim_cur;
	for (fd = 3; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

static void helper_worker_signals_reset(void)
{
	static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE};
	struct sigaction sa;
	sigset_t none;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Serves one request; returns 0, or -1 if the helper broke the protocol
 * or the socket failed. */
static int helper_worker_serve(const struct config *cfg, int fd,
			       const unsigned char *frame, size_t len)
{
	struct auth_request req;
	struct auth_response resp;
	unsigned char out[HELPER_RESPONSE_MAX];
	const char *reason = "pam_error";
	long n;
	int ret = -1;

	if (auth_frame_complete(frame, len) != (long)len ||
	    auth_request_decode(frame, len, &req) < 0)
		return -1;
	memset(&resp, 0, sizeof(resp));
	resp.id = req.id;
	if (req.account_only)
		/* AUTH EXTERNAL: the account phase alone (proto.h says why
		 * the helper answers it). */
		resp.result =
		    auth_pam_account(cfg->auth.pam_service, req.user, req.addr,
				     resp.user, sizeof(resp.user), &reason);
	else
		resp.result = auth_pam_authenticate(
		    cfg->auth.pam_service, req.user, req.password, req.addr,
		    resp.user, sizeof(resp.user), &reason);
	auth_request_wipe(&req);
	snprintf(resp.reason, sizeof(resp.reason), "%s", reason);
	n = auth_response_encode(&resp, out, sizeof(out));
	if (n > 0 && send(fd, out, (size_t)n, MSG_NOSIGNAL) == (ssize_t)n)
		ret = 0;
	explicit_bzero(&resp, sizeof(resp));
	return ret;
}

/* The worker: one blocking PAM transaction at a time, until the helper
 * closes the socket.  Leaves with _exit(): the stdio buffers and atexit
 * handlers belong to the process that forked us. */
__attribute__((noreturn)) static void helper_worker_main(struct helper *h,
							 int fd)
{
	const struct config *cfg = h->cfg;
	unsigned char buf[AUTH_PROTO_FRAME_MAX];
	int status = 0;
	size_t i;

	helper_worker_signals_reset();
	/* The fork copied the helper's state, queued passwords included. */
	for (i = 0; i < h->nchans; i++)
		explicit_bzero(h->chans[i].rbuf, sizeof(h->chans[i].rbuf));
	explicit_bzero(h->queue, h->qcap * sizeof(h->queue[0]));
	helper_close_fds_except(fd);
	prctl(PR_SET_NAME, HELPER_WORKER_TITLE, 0, 0, 0);
	/* Held until _exit(): the modules stay loaded between transactions
	 * (pam.h).  Never ended: the process ends instead. */
	(void)auth_pam_hold_modules(cfg->auth.pam_service);

	for (;;) {
		/* SOCK_SEQPACKET: one message is one frame; a longer one
		 * is truncated, and then fails auth_frame_complete(). */
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			status = 1;
			break;
		}
		if (helper_worker_serve(cfg, fd, buf, (size_t)n) < 0)
			status = 2;
		explicit_bzero(buf, (size_t)n);
		if (status != 0)
			break;
	}
	_exit(status);
}

/* ---- worker slots ----------------------------------------------------- */

static bool helper_fork_allowed(const struct helper *h, uint64_t now,
				uint64_t *next_r)
{
	uint64_t oldest;

	if (h->nforks < h->fork_cap)
		return true;
	oldest = h->fork_ms[h->fork_next];
	if (now >= oldest + HELPER_FORK_WINDOW_MS)
		return true;
	*next_r = oldest + HELPER_FORK_WINDOW_MS;
	return false;
}

static void helper_fork_record(struct helper *h, uint64_t now)
{
	h->fork_ms[h->fork_next] = now;
	h->fork_next = (h->fork_next + 1) % h->fork_cap;
	if (h->nforks < h->fork_cap)
		h->nforks++;
}

static void helper_worker_spawn(struct helper *h, struct helper_worker *w,
				uint64_t now)
{
	size_t slot = (size_t)(w - h->workers);
	int sv[2];
	pid_t pid;

	helper_fork_record(h, now);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error(NULL,
			  "event=auth_worker_start_failed slot=%zu "
			  "error=socketpair errno=%d",
			  slot, errno);
		return;
	}
	/* The handled signals are blocked (signalfd), so none can be
	 * delivered to the child before it resets them. */
	pid = fork();
	if (pid < 0) {
		log_error(NULL,
			  "event=auth_worker_start_failed slot=%zu "
			  "error=fork errno=%d",
			  slot, errno);
		close(sv[0]);
		close(sv[1]);
		return;
	}
	if (pid == 0) {
		close(sv[0]);
		helper_worker_main(h, sv[1]);
	}
	close(sv[1]);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	w->pid = pid;
	w->fd = sv[0];
	w->busy = false;
	if (w->forked)
		helper_stats_restarted(h->stats);
	w->forked = true;
	log_info(NULL, "event=auth_worker_start pid=%ld slot=%zu", (long)pid,
		 slot);
}

static bool helper_worker_idle(const struct helper_worker *w)
{
	return w->fd >= 0 && !w->busy;
}

static struct helper_worker *helper_worker_find_idle(struct helper *h)
{
	size_t i;

	for (i = 0; i < h->nworkers; i++)
		if (helper_worker_idle(&h->workers[i]))
			return &h->workers[i];
	return NULL;
}

/* ---- answers to the network process ----------------------------------- */

static bool helper_out_room(const struct helper *h,
			    const struct helper_channel *c)
{
	return c->olen + (c->pending + 1) * HELPER_RESPONSE_MAX <= h->ocap;
}

static void helper_stop(struct helper *h, const char *reason);

/* Queues the one answer to a request accepted on channel chan; room for it
 * was reserved when the request was accepted.  A channel closed since
 * then has no reader any more: the answer is dropped. */
static void helper_reply(struct helper *h, size_t chan,
			 const struct auth_response *resp)
{
	struct helper_channel *c = &h->chans[chan];
	long n;

	assert(c->pending > 0);
	c->pending--;
	if (c->fd < 0)
		return;
	n = auth_response_encode(resp, c->obuf + c->olen, h->ocap - c->olen);
	if (n < 0) {
		/* Only a worker's answer can be refused here, and it was
		 * decoded with the same rules: a broken invariant. */
		log_error(NULL, "event=auth_helper_encode_failed id=%lu",
			  (unsigned long)resp->id);
		helper_stop(h, "internal_error");
		return;
	}
	c->olen += (size_t)n;
}

static void helper_reply_tempfail(struct helper *h, size_t chan, uint32_t id,
				  const char *reason)
{
	struct auth_response resp;

	memset(&resp, 0, sizeof(resp));
	resp.id = id;
	resp.result = AUTH_RESULT_TEMPFAIL;
	snprintf(resp.reason, sizeof(resp.reason), "%s", reason);
	helper_reply(h, chan, &resp);
}

/* Drops the channel's requests still waiting in the shared queue, keeping
 * the order of the others: the loop that sent them is gone, so they need
 * neither a PAM transaction nor an answer. */
static void helper_queue_drop_channel(struct helper *h, size_t chan)
{
	struct helper_channel *c = &h->chans[chan];
	size_t i, kept = 0;

	for (i = 0; i < h->qlen; i++) {
		struct helper_queued *q = &h->queue[(h->qhead + i) % h->qcap];

		if (q->chan == chan) {
			assert(c->pending > 0);
			c->pending--;
			auth_request_wipe(&q->req);
			continue;
		}
		if (kept != i) {
			/* Moved up over a dropped one: leave no copy. */
			h->queue[(h->qhead + kept) % h->qcap] = *q;
			auth_request_wipe(&q->req);
		}
		kept++;
	}
	h->qlen = kept;
}

/* Closes the channel's socket and wipes what its buffers held. */
static void helper_channel_shut(struct helper_channel *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	explicit_bzero(c->rbuf, sizeof(c->rbuf));
	c->rlen = 0;
	explicit_bzero(c->obuf, c->olen);
	c->olen = 0;
}

/* The channel reached EOF or failed: it alone is closed.  Requests in
 * flight at workers stay counted in c->pending until their answers come
 * and are dropped. */
static void helper_channel_close(struct helper *h, size_t chan,
				 const char *reason)
{
	struct helper_channel *c = &h->chans[chan];

	if (c->fd < 0)
		return;
	helper_channel_shut(c);
	helper_queue_drop_channel(h, chan);
	assert(h->nchans_open > 0);
	h->nchans_open--;
	log_info(NULL,
		 "event=auth_helper_channel_close channel=%zu reason=%s "
		 "in_flight=%zu open=%zu",
		 chan, reason, c->pending, h->nchans_open);
	/* The helper's only work is to answer the network process. */
	if (h->nchans_open == 0)
		helper_stop(h, reason);
}

static void helper_net_flush(struct helper *h, size_t chan)
{
	struct helper_channel *c = &h->chans[chan];
	size_t off = 0;

	while (c->fd >= 0 && off < c->olen) {
		ssize_t n = write(c->fd, c->obuf + off, c->olen - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			helper_channel_close(h, chan, "network_write_error");
			return;
		}
		off += (size_t)n;
	}
	if (off > 0) {
		memmove(c->obuf, c->obuf + off, c->olen - off);
		c->olen -= off;
	}
}

/* ---- requests --------------------------------------------------------- */

static void helper_worker_lost(struct helper *h, struct helper_worker *w,
			       const char *why);

static void helper_dispatch(struct helper *h, struct helper_worker *w,
			    size_t chan, const struct auth_request *req,
			    uint64_t now)
{
	unsigned char frame[AUTH_PROTO_FRAME_MAX];
	long n;
	ssize_t sent;

	w->busy = true;
	w->id = req->id;
	w->chan = chan;
	w->started_ms = now;
	/* Re-encoded: the worker gets what the helper understood, not the
	 * network process's bytes. */
	n = auth_request_encode(req, frame, sizeof(frame));
	if (n < 0) {
		w->busy = false;
		helper_reply_tempfail(h, chan, req->id, "pam_error");
		return;
	}
	do
		sent =
		    send(w->fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (sent < 0 && errno == EINTR);
	explicit_bzero(frame, (size_t)n);
	if (sent != (ssize_t)n)
		helper_worker_lost(h, w, "send_error");
}

/* Answers stale requests at the head of the queue and hands the others
 * to idle workers, in order. */
static void helper_queue_run(struct helper *h, uint64_t now)
{
	while (h->qlen > 0 && !h->stopping) {
		struct helper_queued *q = &h->queue[h->qhead];
		struct helper_worker *w = NULL;

		if (now - q->queued_ms < h->cfg->auth.timeout_ms) {
			w = helper_worker_find_idle(h);
			if (w == NULL)
				break;
		}
		h->qhead = (h->qhead + 1) % h->qcap;
		h->qlen--;
		if (w != NULL)
			helper_dispatch(h, w, q->chan, &q->req, now);
		else
			/* The network process gave up on it at [auth]
			 * timeout: no PAM transaction for nobody. */
			helper_reply_tempfail(h, q->chan, q->req.id, "timeout");
		auth_request_wipe(&q->req);
	}
}

static void helper_submit(struct helper *h, size_t chan,
			  const struct auth_request *req, uint64_t now)
{
	struct helper_worker *w;
	struct helper_queued *q;

	h->chans[chan].pending++;
	if (h->qlen == 0 && (w = helper_worker_find_idle(h)) != NULL) {
		helper_dispatch(h, w, chan, req, now);
		return;
	}
	if (h->qlen == h->qcap) {
		log_debug(NULL, "event=auth_helper_busy channel=%zu queued=%zu",
			  chan, h->qlen);
		helper_reply_tempfail(h, chan, req->id, "busy");
		return;
	}
	q = &h->queue[(h->qhead + h->qlen) % h->qcap];
	q->req = *req;
	q->chan = chan;
	q->queued_ms = now;
	h->qlen++;
}

/* The network process sent something that is not a request frame, on
 * any of its channels: it is broken or compromised, and it will not be
 * trusted with another answer on any channel. */
static void helper_net_protocol_error(struct helper *h, size_t chan,
				      const char *what)
{
	log_error(NULL,
		  "event=auth_helper_protocol_error peer=network channel=%zu "
		  "error=%s pid=%ld action=kill",
		  chan, what, (long)h->net_pid);
	if (h->net_pid > 0 && kill(h->net_pid, SIGKILL) < 0)
		log_error(NULL, "event=auth_helper_kill pid=%ld error=\"%s\"",
			  (long)h->net_pid, strerror(errno));
	helper_stop(h, "protocol_error");
}

/* Takes whole frames from the channel's input buffer while an answer to
 * one more request fits in its output buffer. */
static void helper_net_consume(struct helper *h, size_t chan, uint64_t now)
{
	struct helper_channel *c = &h->chans[chan];
	size_t off = 0;

	if (c->fd < 0)
		return; /* wiped when it was closed */
	while (!h->stopping) {
		struct auth_request req;
		long n = auth_frame_complete(c->rbuf + off, c->rlen - off);

		if (n == 0)
			break;
		if (n < 0) {
			helper_net_protocol_error(h, chan, "bad_length");
			break;
		}
		if (!helper_out_room(h, c))
			break;
		if (auth_request_decode(c->rbuf + off, (size_t)n, &req) < 0) {
			helper_net_protocol_error(h, chan, "bad_request");
			break;
		}
		off += (size_t)n;
		helper_submit(h, chan, &req, now);
		auth_request_wipe(&req);
	}
	if (h->stopping) {
		explicit_bzero(c->rbuf, sizeof(c->rbuf));
		c->rlen = 0;
		return;
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
		/* What moved down is still in the tail: the consumed frames
		 * or copies of the remainder. */
		explicit_bzero(c->rbuf + c->rlen, off);
	}
}

/* Reads only with room for a whole frame: should the network process's
 * socket be a SOCK_SEQPACKET one, a shorter read would truncate a
 * message.  Less room than that means whole frames are waiting for
 * output room. */
static bool helper_net_can_read(const struct helper *h,
				const struct helper_channel *c)
{
	return c->fd >= 0 && !h->stopping &&
	       sizeof(c->rbuf) - c->rlen >= AUTH_PROTO_FRAME_MAX &&
	       helper_out_room(h, c);
}

static void helper_net_read(struct helper *h, size_t chan, uint64_t now)
{
	struct helper_channel *c = &h->chans[chan];
	ssize_t n;

	if (!helper_net_can_read(h, c))
		return;
	do
		n = read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		helper_channel_close(h, chan, "network_read_error");
		return;
	}
	if (n == 0) {
		helper_channel_close(h, chan, "network_eof");
		return;
	}
	c->rlen += (size_t)n;
	helper_net_consume(h, chan, now);
}

/* ---- answers from workers --------------------------------------------- */

/* The worker is gone or not trusted any more: close its socket, answer
 * its request, make sure the process dies.  The slot is refilled once the
 * process is reaped. */
static void helper_worker_lost(struct helper *h, struct helper_worker *w,
			       const char *why)
{
	if (w->fd < 0)
		return;
	if (w->busy || !h->stopping)
		log_warn(NULL,
			 "event=auth_worker_lost pid=%ld slot=%zu "
			 "reason=%s in_flight=%s",
			 (long)w->pid, (size_t)(w - h->workers), why,
			 w->busy ? "yes" : "no");
	close(w->fd);
	w->fd = -1;
	if (w->busy) {
		w->busy = false;
		helper_reply_tempfail(h, w->chan, w->id, "worker_died");
	}
	if (w->pid > 0)
		kill(w->pid, SIGKILL);
}

static void helper_worker_read(struct helper *h, struct helper_worker *w)
{
	unsigned char buf[AUTH_PROTO_FRAME_MAX];

	while (w->fd >= 0) {
		struct auth_response resp;
		ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			helper_worker_lost(h, w, n == 0 ? "eof" : "read_error");
			return;
		}
		if (auth_frame_complete(buf, (size_t)n) != (long)n ||
		    auth_response_decode(buf, (size_t)n, &resp) < 0 ||
		    !w->busy || resp.id != w->id) {
			log_error(NULL,
				  "event=auth_helper_protocol_error "
				  "peer=worker pid=%ld action=kill",
				  (long)w->pid);
			helper_worker_lost(h, w, "protocol_error");
			return;
		}
		w->busy = false;
		helper_reply(h, w->chan, &resp);
	}
}

/* ---- children and signals --------------------------------------------- */

static struct helper_worker *helper_worker_by_pid(struct helper *h, pid_t pid)
{
	size_t i;

	for (i = 0; i < h->nworkers; i++)
		if (h->workers[i].pid == pid)
			return &h->workers[i];
	return NULL;
}

static void helper_reap(struct helper *h)
{
	char buf[32];
	int status;
	pid_t pid;

	for (;;) {
		struct helper_worker *w;

		pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (pid == h->net_pid) {
			h->net_pid = 0;
			if (WIFEXITED(status)) {
				h->exit_status = WEXITSTATUS(status);
				log_info(NULL,
					 "event=auth_helper_network_exit "
					 "pid=%ld %s",
					 (long)pid,
					 helper_wait_status(status, buf,
							    sizeof(buf)));
			} else {
				h->exit_status = 1;
				log_error(NULL,
					  "event=auth_helper_network_exit "
					  "pid=%ld %s",
					  (long)pid,
					  helper_wait_status(status, buf,
							     sizeof(buf)));
			}
			helper_stop(h, "network_exit");
			continue;
		}
		w = helper_worker_by_pid(h, pid);
		if (w == NULL) {
			log_debug(NULL, "event=auth_helper_reaped pid=%ld %s",
				  (long)pid,
				  helper_wait_status(status, buf, sizeof(buf)));
			continue;
		}
		/* Reaped: the pid may be reused at once, so nothing may be
		 * sent to it any more (helper_worker_lost kills only pid > 0).
		 * An answer written just before the exit is still valid. */
		w->pid = 0;
		helper_worker_read(h, w);
		helper_worker_lost(h, w, "exit");
		log_event(h->stopping ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, NULL,
			  "event=auth_worker_exit pid=%ld slot=%zu %s",
			  (long)pid, (size_t)(w - h->workers),
			  helper_wait_status(status, buf, sizeof(buf)));
		w->pid = 0;
	}
}

static void helper_signals_read(struct helper *h)
{
	struct signalfd_siginfo si;
	char name[16];
	const char *sig_name;
	bool reap = false;

	for (;;) {
		ssize_t n = read(h->sig_fd, &si, sizeof(si));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			break;
		if (si.ssi_signo == SIGCHLD) {
			reap = true;
			continue;
		}
		/* SIGTERM, SIGINT, SIGHUP: stop and reload are the network
		 * process's business (proxy/main.c). */
		sig_name = helper_signal_name((int)si.ssi_signo, name,
					      sizeof(name));
		if (h->net_pid <= 0)
			continue;
		/* Root signalling another uid needs CAP_KILL: a unit whose
		 * CapabilityBoundingSet lacks it cannot stop or reload the
		 * network process, which must not go unnoticed. */
		if (kill(h->net_pid, (int)si.ssi_signo) < 0)
			log_error(NULL,
				  "event=auth_helper_signal signal=%s "
				  "forwarded_to=%ld error=\"%s\"",
				  sig_name, (long)h->net_pid, strerror(errno));
		else
			log_info(NULL,
				 "event=auth_helper_signal signal=%s "
				 "forwarded_to=%ld",
				 sig_name, (long)h->net_pid);
	}
	if (reap)
		helper_reap(h);
}

/* ---- the loop --------------------------------------------------------- */

static void helper_stop(struct helper *h, const char *reason)
{
	size_t i;

	if (h->stopping)
		return;
	h->stopping = true;
	h->stop_ms = helper_now_ms();
	log_info(NULL, "event=auth_helper_stop reason=%s", reason);
	for (i = 0; i < h->nchans; i++) {
		helper_channel_shut(&h->chans[i]);
		h->chans[i].pending = 0;
	}
	h->nchans_open = 0;
	while (h->qlen > 0) {
		auth_request_wipe(&h->queue[h->qhead].req);
		h->qhead = (h->qhead + 1) % h->qcap;
		h->qlen--;
	}
	for (i = 0; i < h->nworkers; i++) {
		struct helper_worker *w = &h->workers[i];

		if (w->fd >= 0) {
			close(w->fd);
			w->fd = -1;
		}
		w->busy = false;
		if (w->pid > 0)
			kill(w->pid, SIGTERM);
	}
}

static bool helper_done(const struct helper *h)
{
	size_t i;

	if (!h->stopping || h->net_pid > 0)
		return false;
	for (i = 0; i < h->nworkers; i++)
		if (h->workers[i].pid > 0)
			return false;
	return true;
}

static void helper_deadline(uint64_t *deadline, uint64_t t)
{
	if (t < *deadline)
		*deadline = t;
}

/* Timers: busy workers past their limit, respawns, the shutdown grace.
 * Returns when the loop must wake up next (UINT64_MAX: never). */
static uint64_t helper_timers(struct helper *h, uint64_t now)
{
	uint64_t deadline = UINT64_MAX;
	size_t i;

	if (h->stopping) {
		if (h->stop_killed)
			return deadline;
		if (now >= h->stop_ms + HELPER_STOP_GRACE_MS) {
			for (i = 0; i < h->nworkers; i++)
				if (h->workers[i].pid > 0)
					kill(h->workers[i].pid, SIGKILL);
			h->stop_killed = true;
			return deadline;
		}
		helper_deadline(&deadline, h->stop_ms + HELPER_STOP_GRACE_MS);
		return deadline;
	}
	for (i = 0; i < h->nworkers; i++) {
		struct helper_worker *w = &h->workers[i];
		uint64_t limit = w->started_ms + h->cfg->auth.timeout_ms +
				 HELPER_WORKER_GRACE_MS;

		if (!w->busy)
			continue;
		if (now >= limit) {
			log_warn(NULL,
				 "event=auth_worker_timeout pid=%ld slot=%zu "
				 "elapsed_ms=%llu",
				 (long)w->pid, i,
				 (unsigned long long)(now - w->started_ms));
			helper_worker_lost(h, w, "timeout");
		} else {
			helper_deadline(&deadline, limit);
		}
	}
	for (i = 0; i < h->nworkers; i++) {
		struct helper_worker *w = &h->workers[i];
		uint64_t next;

		if (w->pid != 0 || w->fd >= 0)
			continue;
		if (!helper_fork_allowed(h, now, &next)) {
			helper_deadline(&deadline, next);
			break;
		}
		helper_worker_spawn(h, w, now);
		if (w->pid == 0)
			/* fork failed: try again within the window */
			helper_deadline(&deadline,
					now + HELPER_FORK_WINDOW_MS / 10);
	}
	return deadline;
}

/* Everything that follows from the events of one round. */
static uint64_t helper_pump(struct helper *h)
{
	uint64_t now = helper_now_ms();
	uint64_t deadline;
	size_t i;

	deadline = helper_timers(h, now);
	helper_queue_run(h, now);
	for (i = 0; i < h->nchans; i++) {
		size_t chan = (h->chan_first + i) % h->nchans;

		helper_net_consume(h, chan, now);
		helper_net_flush(h, chan);
	}
	h->chan_first = (h->chan_first + 1) % h->nchans;
	/* The oldest queued request turns stale at [auth] timeout. */
	if (h->qlen > 0)
		helper_deadline(&deadline, h->queue[h->qhead].queued_ms +
					       h->cfg->auth.timeout_ms);
	return deadline;
}

static int helper_poll_timeout(uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return -1;
	now = helper_now_ms();
	if (deadline <= now)
		return 0;
	if (deadline - now > INT_MAX)
		return INT_MAX;
	return (int)(deadline - now);
}

static void helper_poll_setup(struct helper *h)
{
	struct pollfd *workers = &h->pfds[helper_pfd_workers(h)];
	size_t i;

	h->pfds[HELPER_PFD_SIG].fd = h->sig_fd;
	h->pfds[HELPER_PFD_SIG].events = POLLIN;
	for (i = 0; i < h->nchans; i++) {
		const struct helper_channel *c = &h->chans[i];
		struct pollfd *net = &h->pfds[HELPER_PFD_CHANS + i];

		net->fd = c->fd; /* poll() skips a negative fd */
		net->events = 0;
		if (c->olen > 0)
			net->events |= POLLOUT;
		if (helper_net_can_read(h, c))
			net->events |= POLLIN;
	}
	for (i = 0; i < h->nworkers; i++) {
		workers[i].fd = h->workers[i].fd;
		workers[i].events = POLLIN;
	}
}

/* The figures of auth/helperstats.h, once a round. */
static void helper_stats_update(const struct helper *h)
{
	unsigned alive = 0, busy = 0;

	if (h->stats == NULL)
		return;
	for (size_t i = 0; i < h->nworkers; i++) {
		if (h->workers[i].pid > 0 && h->workers[i].fd >= 0)
			alive++;
		if (h->workers[i].busy)
			busy++;
	}
	helper_stats_set(h->stats, alive, busy, (unsigned)h->qlen);
}

static void helper_loop(struct helper *h)
{
	uint64_t deadline = helper_pump(h);

	helper_stats_update(h);
	while (!helper_done(h)) {
		const struct pollfd *workers = &h->pfds[helper_pfd_workers(h)];
		nfds_t nfds = helper_pfd_workers(h) + h->nworkers;
		size_t i;
		int n;

		helper_poll_setup(h);
		n = poll(h->pfds, nfds, helper_poll_timeout(deadline));
		if (n < 0 && errno != EINTR) {
			log_error(NULL,
				  "event=auth_helper_poll_failed errno=%d",
				  errno);
			/* Nothing sane is left to do but wait a little. */
			usleep(100000);
		}
		if (n > 0) {
			/* Workers first: an answer written just before a
			 * worker's exit is read before the exit is reaped. */
			for (i = 0; i < h->nworkers; i++)
				if (workers[i].revents && h->workers[i].fd >= 0)
					helper_worker_read(h, &h->workers[i]);
			if (h->pfds[HELPER_PFD_SIG].revents)
				helper_signals_read(h);
			for (i = 0; i < h->nchans; i++) {
				size_t c = (h->chan_first + i) % h->nchans;
				short revents =
				    h->pfds[HELPER_PFD_CHANS + c].revents;

				if ((revents & POLLOUT) && h->chans[c].fd >= 0)
					helper_net_flush(h, c);
				if ((revents & (POLLIN | POLLHUP | POLLERR)) &&
				    h->chans[c].fd >= 0)
					helper_net_read(h, c, helper_now_ms());
			}
		}
		deadline = helper_pump(h);
		helper_stats_update(h);
	}
}

/* ---- set-up and tear-down --------------------------------------------- */

static int helper_init(struct helper *h, const struct config *cfg,
		       const int *fds, size_t nfds, pid_t network_pid)
{
	struct sigaction sa;
	sigset_t mask;
	size_t i;

	/* Requests hold passwords: neither the helper nor its workers (they
	 * inherit this) may leave them in a core file. */
	{
		struct rlimit no_core = {0, 0};

		setrlimit(RLIMIT_CORE, &no_core);
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	}
	h->cfg = cfg;
	h->net_pid = network_pid;
	h->exit_status = 1;
	h->sig_fd = -1;
	/* First, so that helper_finish() closes every channel from here
	 * on, whatever fails next. */
	h->chans = calloc(nfds, sizeof(h->chans[0]));
	if (h->chans == NULL)
		return -1;
	h->nchans = nfds;
	for (i = 0; i < nfds; i++)
		h->chans[i].fd = fds[i];
	h->nchans_open = nfds;
	h->nworkers =
	    cfg->auth.helper_workers > 0 ? cfg->auth.helper_workers : 1;
	h->qcap = h->nworkers * HELPER_QUEUE_PER_WORKER;
	/* Per channel, as when there was one: any channel may own every
	 * worker and every queued request. */
	h->ocap = (h->nworkers + h->qcap + 8) * HELPER_RESPONSE_MAX;
	h->fork_cap =
	    h->nworkers > HELPER_FORK_BURST ? h->nworkers : HELPER_FORK_BURST;
	h->workers = calloc(h->nworkers, sizeof(h->workers[0]));
	h->queue = calloc(h->qcap, sizeof(h->queue[0]));
	h->fork_ms = calloc(h->fork_cap, sizeof(h->fork_ms[0]));
	h->pfds =
	    calloc(helper_pfd_workers(h) + h->nworkers, sizeof(h->pfds[0]));
	if (h->workers == NULL || h->queue == NULL || h->fork_ms == NULL ||
	    h->pfds == NULL)
		return -1;
	for (i = 0; i < h->nworkers; i++)
		h->workers[i].fd = -1;
	for (i = 0; i < nfds; i++) {
		struct helper_channel *c = &h->chans[i];

		c->obuf = malloc(h->ocap);
		if (c->obuf == NULL)
			return -1;
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		fcntl(c->fd, F_SETFD, FD_CLOEXEC);
	}

	/* SIGPIPE: a write to a dead peer is an error return, not death.
	 * SIGCHLD must not be SIG_IGN, or children are never reported. */
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &h->old_sigpipe);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, &h->old_sigchld);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, &h->old_mask);
	h->signals_saved = true;
	h->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (h->sig_fd < 0)
		return -1;
	return 0;
}

static void helper_finish(struct helper *h)
{
	size_t i;

	if (h->sig_fd >= 0)
		close(h->sig_fd);
	for (i = 0; i < h->nchans; i++) {
		struct helper_channel *c = &h->chans[i];

		if (c->fd >= 0)
			close(c->fd);
		explicit_bzero(c->rbuf, sizeof(c->rbuf));
		free(c->obuf);
	}
	/* An early failure saved nothing: nothing to restore. */
	if (h->signals_saved) {
		sigprocmask(SIG_SETMASK, &h->old_mask, NULL);
		sigaction(SIGPIPE, &h->old_sigpipe, NULL);
		sigaction(SIGCHLD, &h->old_sigchld, NULL);
	}
	if (h->queue != NULL)
		explicit_bzero(h->queue, h->qcap * sizeof(h->queue[0]));
	free(h->chans);
	free(h->workers);
	free(h->queue);
	free(h->fork_ms);
	free(h->pfds);
}

/* Without a helper the network process cannot authenticate anyone, and
 * nobody would reap it: stop it and wait. */
static int helper_fail_early(pid_t network_pid)
{
	int status;

	log_error(NULL, "event=auth_helper_start_failed errno=%d", errno);
	kill(network_pid, SIGTERM);
	while (waitpid(network_pid, &status, 0) < 0 && errno == EINTR)
		;
	return 1;
}

int auth_helper_run(const struct config *cfg, const int *fds, size_t nfds,
		    pid_t network_pid, struct helper_stats *stats)
{
	struct helper *h;
	int status;
	size_t i;

	h = nfds > 0 ? calloc(1, sizeof(*h)) : NULL;
	if (h == NULL) {
		int err = nfds > 0 ? errno : EINVAL;

		for (i = 0; i < nfds; i++)
			close(fds[i]);
		errno = err;
		return helper_fail_early(network_pid);
	}
	if (helper_init(h, cfg, fds, nfds, network_pid) < 0) {
		int err = errno;

		if (h->chans == NULL)
			for (i = 0; i < nfds; i++)
				close(fds[i]);
		helper_finish(h);
		free(h);
		errno = err;
		return helper_fail_early(network_pid);
	}
	h->stats = stats;
	log_info(NULL,
		 "event=auth_helper_start pid=%ld network_pid=%ld "
		 "workers=%zu channels=%zu",
		 (long)getpid(), (long)network_pid, h->nworkers, h->nchans);
	/* The network process may be gone before SIGCHLD was blocked. */
	helper_reap(h);
	helper_loop(h);
	status = h->exit_status;
	helper_finish(h);
	free(h);
	return status;
}
