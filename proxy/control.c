/*
 * control.c - the network process's control loop (see control.h): the
 * accept loop's hand-off to the workers, the graceful stop, the reload, and
 * the timers that belong to no session (drain, accept hold, the sweep of
 * the in-process policy store).
 */
#include "proxy/control.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"
#include "common/signals.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/listener.h"
#include "proxy/metrics.h"
#include "proxy/metricsd.h"
#include "proxy/probe.h"
#include "proxy/sdnotify.h"
#include "proxy/sendermap.h"
#include "proxy/shared.h"
#include "proxy/userlimits.h"
#include "proxy/worker.h"
#include "tls/tls-server.h"

/* The network process's main thread runs the control loop: signals,
 * the accept loop, the backend probe, the sweep of the in-process policy store.
 * The sessions run on [server] workers event loops, each on a thread of
 * its own (proxy/worker.h). */
struct control {
	uv_loop_t loop;
	struct config *cfg;	       /* the current one; a reference */
	struct tls_server *tls;	       /* NULL without [tls] */
	struct sendermap *sendermap;   /* a reference, or NULL */
	struct userlimits *userlimits; /* a reference, or NULL */
	struct shared shared;
	struct listeners *listeners;
	struct probe *probe;
	struct metrics *metrics; /* the counters; always there */
	struct metricsd *metricsd; /* [metrics] address, or NULL */

	struct worker *workers;
	size_t nworkers;    /* initialised */
	size_t nstarted;    /* whose thread runs */
	size_t next_worker; /* round-robin among equals */
	unsigned *loads;    /* scratch for worker_pick() */

	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t drain_timer;
	uv_timer_t sweep_timer;
	uv_timer_t hold_timer; /* while accepting is held */
	bool accept_held;
	/* Woken by the workers' threads: one ended, or lost its auth
	 * channel.  Kept open (and referenced) until every thread has been
	 * joined, so that no thread ever wakes a closed handle. */
	uv_async_t wake;
	atomic_uint exited;
	atomic_bool auth_lost;
	bool joined;
	bool stopping;
};

static unsigned control_sessions(struct control *ctl)
{
	return atomic_load(&ctl->shared.sessions);
}

static void control_on_drain_timeout(uv_timer_t *t)
{
	struct control *ctl = t->data;

	log_info(NULL, "event=stop_timeout sessions=%u", control_sessions(ctl));
	for (size_t i = 0; i < ctl->nstarted; i++)
		worker_post_force(&ctl->workers[i]);
}

/* Once every worker's thread has ended, join them and let the control
 * loop end. */
static void control_check_exited(struct control *ctl)
{
	if (ctl->joined || atomic_load(&ctl->exited) < ctl->nstarted)
		return;
	for (size_t i = 0; i < ctl->nworkers; i++)
		worker_join(&ctl->workers[i]);
	ctl->joined = true;
	uv_close((uv_handle_t *)&ctl->wake, NULL);
}

/* Graceful stop: no new connections; idle sessions get 421 at once,
 * transactions in progress may finish within [server] shutdown_timeout. */
static void control_stop(struct control *ctl, const char *why)
{
	/* Ctrl-C reaches both processes and the helper forwards it too: the
	 * second one is expected and changes nothing. */
	if (ctl->stopping)
		return;
	ctl->stopping = true;
	log_info(NULL, "event=stop reason=\"%s\" sessions=%u", why,
		 control_sessions(ctl));
	sd_notify_send("STOPPING=1\nSTATUS=Stopping");
	/* /healthz says so while the sessions drain: a balancer stops
	 * sending before the port closes on it. */
	metrics_stopping(ctl->metrics);
	listeners_close(ctl->listeners);
	ctl->listeners = NULL;
	uv_timer_stop(&ctl->hold_timer);
	probe_stop(ctl->probe);
	ctl->probe = NULL;
	uv_timer_stop(&ctl->sweep_timer);
	for (size_t i = 0; i < ctl->nstarted; i++)
		worker_post_stop(&ctl->workers[i]);
	uv_timer_start(&ctl->drain_timer, control_on_drain_timeout,
		       ctl->cfg->server.shutdown_timeout_ms, 0);
	/* The signal handles stay installed (a second signal must not take
	 * the default action) but no longer keep the loop alive, nor does
	 * the drain timer: the wake handle does, until the workers are
	 * done. */
	uv_unref((uv_handle_t *)&ctl->drain_timer);
	uv_unref((uv_handle_t *)&ctl->sigterm);
	uv_unref((uv_handle_t *)&ctl->sigint);
	uv_unref((uv_handle_t *)&ctl->sighup);
	control_check_exited(ctl);
}

static void control_on_stop_signal(uv_signal_t *sig, int signum)
{
	control_stop(sig->data, strsignal(signum));
}

static void control_on_wake(uv_async_t *a)
{
	struct control *ctl = a->data;

	/* Without the helper no one can log in: stop, and let the service
	 * manager start us again with a new one. */
	if (atomic_exchange(&ctl->auth_lost, false))
		control_stop(ctl, "auth helper gone");
	control_check_exited(ctl);
}

/* Worker hooks: on the worker's thread. */
static void control_worker_auth_lost(void *arg, struct worker *w)
{
	struct control *ctl = arg;

	(void)w;
	atomic_store(&ctl->auth_lost, true);
	uv_async_send(&ctl->wake);
}

static void control_worker_exited(void *arg, struct worker *w)
{
	struct control *ctl = arg;

	(void)w;
	atomic_fetch_add(&ctl->exited, 1);
	uv_async_send(&ctl->wake);
}

/* See control_accept_limit(). */
#define CONTROL_ACCEPT_SLACK  16
#define CONTROL_HOLD_CHECK_MS 50

/* Sessions (those over max_connections included, until their 421 is
 * out) plus connections handed over and not started yet, every loop. */
static unsigned control_load(struct control *ctl)
{
	unsigned total = 0;

	for (size_t i = 0; i < ctl->nstarted; i++) {
		ctl->loads[i] = worker_load(&ctl->workers[i]);
		total += ctl->loads[i];
	}
	return total;
}

/* Above max_connections, connections are still taken so that they hear
 * "421 Too many connections"; beyond this many more, the loops are
 * behind (a flood, or handshakes piling up) and accepting is held: new
 * connections wait in the kernel's backlog instead of taking descriptors
 * here.  With one loop, serving used to pace accepting by itself. */
static unsigned control_accept_limit(const struct control *ctl)
{
	uint32_t max = ctl->cfg->limits.max_connections;

	return max + max / 8 + CONTROL_ACCEPT_SLACK;
}

static void control_on_hold_timer(uv_timer_t *t)
{
	struct control *ctl = t->data;
	unsigned load = control_load(ctl);

	if (load >= control_accept_limit(ctl))
		return;
	uv_timer_stop(t);
	ctl->accept_held = false;
	listeners_hold(ctl->listeners, false);
	log_info(NULL, "event=accept_resumed load=%u", load);
}

/* The accept loop's hand-off: the worker with the fewest sessions takes
 * the connection (see proxy/listener.h for why one acceptor). */
static void control_on_accept(void *arg, size_t listener, int fd)
{
	struct control *ctl = arg;
	unsigned load = control_load(ctl);
	size_t k = 0;

	if (ctl->nstarted > 1)
		k = worker_pick(ctl->loads, ctl->nstarted, &ctl->next_worker);
	if (ctl->nstarted == 0 ||
	    !worker_post_connection(&ctl->workers[k], listener, fd)) {
		close(fd);
		return;
	}
	if (load + 1 >= control_accept_limit(ctl) && !ctl->accept_held) {
		ctl->accept_held = true;
		listeners_hold(ctl->listeners, true);
		uv_timer_start(&ctl->hold_timer, control_on_hold_timer,
			       CONTROL_HOLD_CHECK_MS, CONTROL_HOLD_CHECK_MS);
		log_warn(NULL,
			 "event=accept_held load=%u limit=%u "
			 "reason=\"sessions far over max_connections\"",
			 load + 1, control_accept_limit(ctl));
	}
}

/* Policy counters outlive their sessions until their window passes; an
 * expired one is never read, and the sweep frees them so that memory
 * follows the keys live now. */
#define CONTROL_SWEEP_MS 60000

static void control_on_sweep(uv_timer_t *t)
{
	struct control *ctl = t->data;

	memstore_sweep(ctl->shared.mem, memstore_now_ms());
}

static bool listeners_equal(const struct config *a, const struct config *b)
{
	if (a->nlisteners != b->nlisteners)
		return false;
	for (size_t i = 0; i < a->nlisteners; i++) {
		const struct config_listener *x = &a->listeners[i];
		const struct config_listener *y = &b->listeners[i];

		if (strcmp(x->name, y->name) != 0 || x->mode != y->mode ||
		    x->require_tls != y->require_tls ||
		    x->allow_plaintext_auth != y->allow_plaintext_auth ||
		    x->proxy_protocol != y->proxy_protocol ||
		    x->naddrs != y->naddrs)
			return false;
		for (size_t j = 0; j < x->naddrs; j++)
			if (strcmp(x->addrs[j].text, y->addrs[j].text) != 0)
				return false;
	}
	return true;
}

/* [metrics]: the endpoint's socket is bound before the privilege drop,
 * and its allow list copied when it started. */
static bool metrics_config_equal(const struct config *a,
				 const struct config *b)
{
	if (a->metrics.enabled != b->metrics.enabled)
		return false;
	if (a->metrics.enabled &&
	    strcmp(a->metrics.address.text, b->metrics.address.text) != 0)
		return false;
	return a->metrics.nallow == b->metrics.nallow &&
	       (a->metrics.nallow == 0 ||
		memcmp(a->metrics.allow, b->metrics.allow,
		       a->metrics.nallow * sizeof(*a->metrics.allow)) == 0);
}

/* What a reload cannot change live keeps its running value, and says so:
 * the listening sockets (bound before the privilege drop, or passed by
 * systemd), the user, and [auth], which belongs to the helper process. */
static void reload_keep_fixed(const struct config *old, struct config *next)
{
	if (!listeners_equal(old, next)) {
		log_warn(NULL, "event=reload_ignored section=listener "
			       "reason=\"listeners change on restart only\"");
		for (size_t i = 0; i < next->nlisteners; i++) {
			free(next->listeners[i].name);
			free(next->listeners[i].addrs);
		}
		free(next->listeners);
		next->nlisteners = old->nlisteners;
		next->listeners =
		    xcalloc(old->nlisteners, sizeof(*next->listeners));
		for (size_t i = 0; i < old->nlisteners; i++) {
			next->listeners[i] = old->listeners[i];
			next->listeners[i].name =
			    xstrdup(old->listeners[i].name);
			next->listeners[i].addrs =
			    (struct config_addr *)xmemdup(
				old->listeners[i].addrs,
				old->listeners[i].naddrs *
				    sizeof(*old->listeners[i].addrs));
		}
	}
	if (strcmp(old->server.user, next->server.user) != 0 ||
	    old->server.workers != next->server.workers) {
		log_warn(NULL, "event=reload_ignored section=server "
			       "keys=\"user workers\" "
			       "reason=\"change on restart only\"");
		free(next->server.user);
		next->server.user = xstrdup(old->server.user);
		next->server.workers = old->server.workers;
	}
	if (!metrics_config_equal(old, next)) {
		log_warn(NULL, "event=reload_ignored section=metrics "
			       "keys=\"address allow\" "
			       "reason=\"the endpoint keeps them until "
			       "restart\"");
		free(next->metrics.allow);
		next->metrics = old->metrics;
		next->metrics.allow = NULL;
		if (old->metrics.nallow > 0)
			next->metrics.allow = (struct config_cidr *)xmemdup(
			    old->metrics.allow,
			    old->metrics.nallow * sizeof(*old->metrics.allow));
	}
	if (strcmp(old->auth.pam_service, next->auth.pam_service) != 0 ||
	    old->auth.helper_workers != next->auth.helper_workers ||
	    old->auth.timeout_ms != next->auth.timeout_ms) {
		log_warn(NULL, "event=reload_ignored section=auth "
			       "keys=\"pam_service helper_workers timeout\" "
			       "reason=\"the auth helper keeps them until "
			       "restart\"");
		free(next->auth.pam_service);
		next->auth.pam_service = xstrdup(old->auth.pam_service);
		next->auth.helper_workers = old->auth.helper_workers;
		next->auth.timeout_ms = old->auth.timeout_ms;
	}
}

/* Each problem of a configuration that failed to load, as an event of its
 * own (one event a line is the log contract).  The file may hold any
 * bytes, and the messages quote them: sanitized, and quoted here. */
static void reload_log_errors(const struct config_errors *errors)
{
	char file[SANITIZE_BUFSIZE], message[SANITIZE_BUFSIZE];

	for (size_t i = 0; i < errors->count; i++) {
		const struct config_error *e = &errors->items[i];

		sanitize(file, sizeof(file), e->file, strlen(e->file));
		sanitize(message, sizeof(message), e->message,
			 strlen(e->message));
		log_error(NULL,
			  "event=reload_error file=\"%s\" line=%d "
			  "error=\"%s\"",
			  file, e->line, message);
	}
}

/* SIGHUP: the configuration file and the certificates are read again.
 * New sessions use the new ones; live sessions keep theirs; anything
 * broken (a config error, logged as event=reload_error; an unreadable
 * key; a bad sender map or user_limits file) keeps the old set running. */
static void control_on_reload_signal(uv_signal_t *sig, int signum)
{
	struct control *ctl = sig->data;
	struct config *old = ctl->cfg, *next = NULL;
	struct config_errors errors = {NULL, 0};
	struct sendermap *map = NULL;
	struct userlimits *limits = NULL;
	struct tls_server *new_tls = NULL;
	char *error = NULL;

	(void)signum;
	if (ctl->stopping)
		return;
	sd_notify_send("RELOADING=1");
	if (config_read(old->path, &next, &errors) < 0) {
		reload_log_errors(&errors);
		log_error(NULL,
			  "event=reload status=failed error=\"%zu "
			  "configuration error%s\"",
			  errors.count, errors.count == 1 ? "" : "s");
		config_errors_finish(&errors);
		metrics_reload(false, 0);
		goto out;
	}
	config_errors_finish(&errors);
	reload_keep_fixed(old, next);
	if (next->relay.sender_map != NULL) {
		map = sendermap_read(next->relay.sender_map, &errors);
		reload_log_errors(&errors);
		config_errors_finish(&errors);
		if (map == NULL) {
			log_error(NULL, "event=reload status=failed "
					"error=\"sender_map\"");
			goto out_failed;
		}
	}
	if (next->limits.user_limits != NULL) {
		limits = userlimits_read(next->limits.user_limits, &errors);
		reload_log_errors(&errors);
		config_errors_finish(&errors);
		if (limits == NULL) {
			log_error(NULL, "event=reload status=failed "
					"error=\"user_limits\"");
			goto out_failed;
		}
	}
	if (config_wants_tls(next)) {
		if (ctl->tls != NULL) {
			if (tls_server_reload(ctl->tls, next, &error) < 0)
				goto tls_failed;
		} else if ((new_tls = tls_server_create(next, &error)) ==
			   NULL) {
			goto tls_failed;
		}
	}
	if (new_tls != NULL)
		ctl->tls = new_tls;
	log_set_level(next->server.log_level);
	/* Each loop switches when it reads its mailbox, before it starts
	 * any connection accepted after this point. */
	for (size_t i = 0; i < ctl->nstarted; i++)
		worker_post_reload(&ctl->workers[i], next, map, limits,
				   ctl->tls);
	probe_set_config(ctl->probe, next);
	ctl->cfg = next;
	config_unref(old);
	sendermap_free(ctl->sendermap);
	ctl->sendermap = map;
	userlimits_free(ctl->userlimits);
	ctl->userlimits = limits;
	log_info(NULL, "event=reload status=ok");
	metrics_reload(true, time(NULL));
	sd_notify_send("READY=1");
	return;

tls_failed:
	log_error(NULL, "event=reload status=failed error=\"%s\"",
		  error ? error : "TLS set-up failed");
	free(error);
	metrics_reload(false, 0);
	goto out;
out_failed:
	metrics_reload(false, 0);
out:
	sendermap_free(map);
	userlimits_free(limits);
	config_free(next);
	sd_notify_send("READY=1");
}

/* Each session may hold two descriptors (client, backend); each loop a
 * few (epoll, eventfd, the auth channel); and some more for listeners,
 * logs and start-up.  The soft RLIMIT_NOFILE (1024 under systemd and most
 * shells) is raised toward that, up to the hard limit, as services that
 * need more are expected to do; short of it, accept() pauses on EMFILE
 * (proxy/listener.c). */
static void control_raise_nofile(const struct config *cfg, size_t workers)
{
	rlim_t want =
	    2 * (rlim_t)cfg->limits.max_connections + 8 * (rlim_t)workers + 64;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		log_warn(NULL,
			 "event=start warning=\"RLIMIT_NOFILE hard limit %llu "
			 "is below the %llu descriptors max_connections may "
			 "need (LimitNOFILE= in the unit)\"",
			 (unsigned long long)rl.rlim_max,
			 (unsigned long long)want);
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_debug(NULL, "event=start nofile=%llu",
			  (unsigned long long)want);
}

/* Closes fds[0..n-1]. */
static void close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

int control_run(struct config *cfg, const int *auth_fds, size_t nfds,
		const struct control_activation *act, const sigset_t *old_mask,
		control_drop_privileges_fn *drop_privileges,
		const struct helper_stats *helper_stats)
{
	static const struct worker_hooks hooks_template = {
	    .auth_lost = control_worker_auth_lost,
	    .exited = control_worker_exited,
	};
	struct worker_hooks hooks = hooks_template;
	struct control ctl;
	uint64_t seed[2] = {0, 0};
	int rc = 0, r;

	memset(&ctl, 0, sizeof(ctl));
	ctl.cfg = cfg;
	if (config_wants_tls(cfg)) {
		char *error = NULL;

		ctl.tls = tls_server_create(cfg, &error);
		if (ctl.tls == NULL) {
			log_error(NULL, "event=start_error error=\"%s\"",
				  error ? error : "TLS set-up failed");
			free(error);
			goto fail_tls;
		}
	}
	if (cfg->relay.sender_map != NULL) {
		ctl.sendermap = sendermap_load(cfg->relay.sender_map, stderr);
		if (ctl.sendermap == NULL)
			goto fail_map;
	}
	if (cfg->limits.user_limits != NULL) {
		ctl.userlimits =
		    userlimits_load(cfg->limits.user_limits, stderr);
		if (ctl.userlimits == NULL)
			goto fail_limits;
	}
	r = uv_loop_init(&ctl.loop);
	if (r == 0) {
		r = uv_async_init(&ctl.loop, &ctl.wake, control_on_wake);
		if (r < 0)
			uv_loop_close(&ctl.loop);
	}
	if (r < 0) {
		log_error(NULL, "event=start_error error=\"event loop: %s\"",
			  uv_strerror(r));
		goto fail_loop;
	}
	ctl.wake.data = &ctl;
	control_raise_nofile(cfg, nfds);
	if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
		fatal("getrandom failed");
	shared_init(&ctl.shared, seed[0], seed[1]);
	/* The counters exist with or without [metrics]: counting is a
	 * store to the thread's own slot, cheaper than asking. */
	ctl.metrics =
	    metrics_create(cfg, (unsigned)nfds, &ctl.shared, helper_stats);
	metrics_bind(ctl.metrics, METRICS_SLOT_CONTROL);
	uv_signal_init(&ctl.loop, &ctl.sigterm);
	uv_signal_init(&ctl.loop, &ctl.sigint);
	uv_signal_init(&ctl.loop, &ctl.sighup);
	ctl.sigterm.data = ctl.sigint.data = ctl.sighup.data = &ctl;
	uv_timer_init(&ctl.loop, &ctl.drain_timer);
	ctl.drain_timer.data = &ctl;
	uv_timer_init(&ctl.loop, &ctl.sweep_timer);
	ctl.sweep_timer.data = &ctl;
	uv_timer_init(&ctl.loop, &ctl.hold_timer);
	ctl.hold_timer.data = &ctl;
	atomic_init(&ctl.exited, 0);
	atomic_init(&ctl.auth_lost, false);
	/* Handlers first, then unblock (run() blocked these before fork): a
	 * signal that arrives while the listeners open is handled, never
	 * fatal. */
	uv_signal_start(&ctl.sigterm, control_on_stop_signal, SIGTERM);
	uv_signal_start(&ctl.sigint, control_on_stop_signal, SIGINT);
	uv_signal_start(&ctl.sighup, control_on_reload_signal, SIGHUP);
	sigprocmask(SIG_SETMASK, old_mask, NULL);

	/* Each worker takes its auth channel now, even if a step below
	 * fails: worker_join() closes it. */
	hooks.arg = &ctl;
	ctl.workers = xcalloc(nfds, sizeof(*ctl.workers));
	ctl.loads = xcalloc(nfds, sizeof(*ctl.loads));
	for (size_t i = 0; i < nfds; i++) {
		if (rc != 0)
			close(auth_fds[i]);
		else if (worker_init(&ctl.workers[i], (unsigned)i, cfg, ctl.tls,
				     ctl.sendermap, ctl.userlimits, &ctl.shared,
				     auth_fds[i], &hooks) == 0) {
			ctl.workers[i].metrics = ctl.metrics;
			ctl.nworkers++;
		}
		else
			rc = 1; /* worker_init closed its fd */
	}
	if (rc == 0)
		ctl.listeners = listeners_open(&ctl.loop, cfg, act->fds, act->n,
					       control_on_accept, &ctl);
	if (rc == 0 && ctl.listeners != NULL && cfg->metrics.enabled &&
	    (ctl.metricsd = metricsd_open(cfg, ctl.metrics)) == NULL)
		rc = 1;
	if (rc != 0 || ctl.listeners == NULL || drop_privileges(cfg) < 0 ||
	    (ctl.metricsd != NULL && metricsd_start(ctl.metricsd) < 0)) {
		rc = 1;
	} else {
		/* Threads only after the privilege drop: every thread of
		 * the process starts as [server] user. */
		for (size_t i = 0; i < ctl.nworkers && rc == 0; i++) {
			if (worker_start(&ctl.workers[i]) < 0)
				rc = 1;
			else
				ctl.nstarted++;
		}
	}
	if (rc != 0) {
		control_stop(&ctl, "start-up failed");
	} else {
		ctl.probe = probe_start(&ctl.loop, cfg, &ctl.shared);
		uv_timer_start(&ctl.sweep_timer, control_on_sweep,
			       CONTROL_SWEEP_MS, CONTROL_SWEEP_MS);
		/* The sweep alone must not keep the loop alive. */
		uv_unref((uv_handle_t *)&ctl.sweep_timer);
		log_info(NULL,
			 "event=start version=%s hostname=%s pid=%ld "
			 "workers=%zu",
			 SUBMITPROXY_VERSION, cfg->server.hostname,
			 (long)getpid(), ctl.nstarted);
		/* Listeners are open: connections are accepted from here. */
		if (sd_notify_send("READY=1\nSTATUS=Accepting connections") < 0)
			log_warn(NULL, "event=notify_error");
	}
	uv_run(&ctl.loop, UV_RUN_DEFAULT);
	{
		/* Closing the last signal handle restores the default
		 * action: a late SIGTERM (systemd signals the whole control
		 * group, the helper forwards it too) must not kill us while
		 * we finish.  Blocked, it dies with the process. */
		sigset_t set;

		control_signals(&set);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	uv_close((uv_handle_t *)&ctl.sigterm, NULL);
	uv_close((uv_handle_t *)&ctl.sigint, NULL);
	uv_close((uv_handle_t *)&ctl.sighup, NULL);
	uv_close((uv_handle_t *)&ctl.drain_timer, NULL);
	uv_close((uv_handle_t *)&ctl.sweep_timer, NULL);
	uv_close((uv_handle_t *)&ctl.hold_timer, NULL);
	uv_run(&ctl.loop, UV_RUN_DEFAULT);
	/* Every loop has ended: nothing counts any more, nothing scrapes. */
	metricsd_close(ctl.metricsd);
	metrics_bind(NULL, 0);
	metrics_destroy(ctl.metrics);
	free(ctl.workers);
	free(ctl.loads);
	shared_finish(&ctl.shared);
	tls_server_destroy(ctl.tls);
	sendermap_free(ctl.sendermap);
	userlimits_free(ctl.userlimits);
	config_unref(ctl.cfg);
	if (uv_loop_close(&ctl.loop) != 0)
		log_warn(NULL,
			 "event=exit warning=\"loop not closed cleanly\"");
	log_info(NULL, "event=exit status=%d", rc);
	return rc;

fail_loop:
	userlimits_free(ctl.userlimits);
fail_limits:
	sendermap_free(ctl.sendermap);
fail_map:
	tls_server_destroy(ctl.tls);
fail_tls:
	close_all(auth_fds, nfds);
	config_unref(cfg);
	return 1;
}
