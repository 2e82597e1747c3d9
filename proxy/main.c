/*
 * main.c - command line, start-up and signals.
 *
 *   submitproxy [-c FILE]       run in the foreground
 *   submitproxy -t [-c FILE]    check the configuration and exit
 *   submitproxy -V | -h
 *
 * Exit codes: 0 success, 1 configuration or start-up error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/helper.h"
#include "config/config.h"
#include "proxy/listener.h"
#include "common/log.h"
#include "proxy/probe.h"
#include "proxy/sdnotify.h"
#include "proxy/sendermap.h"
#include "proxy/shared.h"
#include "common/signals.h"
#include "common/util.h"
#include "proxy/worker.h"
#include "tls/tls.h"

/* The network process's main thread runs the control loop: signals,
 * the accept loop, the backend probe, the sweep of the address table.
 * The sessions run on [server] workers event loops, each on a thread of
 * its own (proxy/worker.h). */
struct server {
	uv_loop_t loop;
	struct config *cfg;           /* the current one; a reference */
	struct tls_server *tls;       /* NULL without [tls] */
	struct sendermap *sendermap;  /* a reference, or NULL */
	struct shared shared;
	struct listeners *listeners;
	struct probe *probe;

	struct worker *workers;
	size_t nworkers;              /* initialised */
	size_t nstarted;              /* whose thread runs */
	size_t next_worker;           /* round-robin among equals */
	unsigned *loads;              /* scratch for worker_pick() */

	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t drain_timer;
	uv_timer_t sweep_timer;
	uv_timer_t hold_timer;        /* while accepting is held */
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

/* Sockets systemd passed us (socket activation), taken in main(). */
struct activation {
	struct sd_listen_fd fds[SD_LISTEN_FDS_MAX];
	size_t n;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: submitproxy [-t] [-c FILE]\n"
		"       submitproxy -V | -h\n"
		"  -c FILE  configuration file (default %s)\n"
		"  -t       check the configuration and exit\n"
		"  -V       print the version and exit\n"
		"  -h       print this help and exit\n",
		CONFIG_DEFAULT_PATH);
}

static unsigned server_sessions(struct server *srv)
{
	return atomic_load(&srv->shared.sessions);
}

static void server_on_drain_timeout(uv_timer_t *t)
{
	struct server *srv = t->data;

	log_info(NULL, "event=stop_timeout sessions=%u", server_sessions(srv));
	for (size_t i = 0; i < srv->nstarted; i++)
		worker_post_force(&srv->workers[i]);
}

/* Once every worker's thread has ended, join them and let the control
 * loop end. */
static void server_check_exited(struct server *srv)
{
	if (srv->joined || atomic_load(&srv->exited) < srv->nstarted)
		return;
	for (size_t i = 0; i < srv->nworkers; i++)
		worker_join(&srv->workers[i]);
	srv->joined = true;
	uv_close((uv_handle_t *)&srv->wake, NULL);
}

/* Graceful stop: no new connections; idle sessions get 421 at once,
 * transactions in progress may finish within [server] shutdown_timeout. */
static void server_stop(struct server *srv, const char *why)
{
	/* Ctrl-C reaches both processes and the helper forwards it too: the
	 * second one is expected and changes nothing. */
	if (srv->stopping)
		return;
	srv->stopping = true;
	log_info(NULL, "event=stop reason=\"%s\" sessions=%u", why,
		 server_sessions(srv));
	sd_notify_send("STOPPING=1\nSTATUS=Stopping");
	listeners_close(srv->listeners);
	srv->listeners = NULL;
	uv_timer_stop(&srv->hold_timer);
	probe_stop(srv->probe);
	srv->probe = NULL;
	uv_timer_stop(&srv->sweep_timer);
	for (size_t i = 0; i < srv->nstarted; i++)
		worker_post_stop(&srv->workers[i]);
	uv_timer_start(&srv->drain_timer, server_on_drain_timeout,
		       srv->cfg->server.shutdown_timeout_ms, 0);
	/* The signal handles stay installed (a second signal must not take
	 * the default action) but no longer keep the loop alive, nor does
	 * the drain timer: the wake handle does, until the workers are
	 * done. */
	uv_unref((uv_handle_t *)&srv->drain_timer);
	uv_unref((uv_handle_t *)&srv->sigterm);
	uv_unref((uv_handle_t *)&srv->sigint);
	uv_unref((uv_handle_t *)&srv->sighup);
	server_check_exited(srv);
}

static void server_on_stop_signal(uv_signal_t *sig, int signum)
{
	server_stop(sig->data, strsignal(signum));
}

static void server_on_wake(uv_async_t *a)
{
	struct server *srv = a->data;

	/* Without the helper no one can log in: stop, and let the service
	 * manager start us again with a new one. */
	if (atomic_exchange(&srv->auth_lost, false))
		server_stop(srv, "auth helper gone");
	server_check_exited(srv);
}

/* Worker hooks: on the worker's thread. */
static void server_worker_auth_lost(void *arg, struct worker *w)
{
	struct server *srv = arg;

	(void)w;
	atomic_store(&srv->auth_lost, true);
	uv_async_send(&srv->wake);
}

static void server_worker_exited(void *arg, struct worker *w)
{
	struct server *srv = arg;

	(void)w;
	atomic_fetch_add(&srv->exited, 1);
	uv_async_send(&srv->wake);
}

/* See server_accept_limit(). */
#define SERVER_ACCEPT_SLACK 16
#define SERVER_HOLD_CHECK_MS 50

/* Sessions (those over max_connections included, until their 421 is
 * out) plus connections handed over and not started yet, every loop. */
static unsigned server_load(struct server *srv)
{
	unsigned total = 0;

	for (size_t i = 0; i < srv->nstarted; i++) {
		srv->loads[i] = worker_load(&srv->workers[i]);
		total += srv->loads[i];
	}
	return total;
}

/* Above max_connections, connections are still taken so that they hear
 * "421 Too many connections"; beyond this many more, the loops are
 * behind (a flood, or handshakes piling up) and accepting is held: new
 * connections wait in the kernel's backlog instead of taking descriptors
 * here.  With one loop, serving used to pace accepting by itself. */
static unsigned server_accept_limit(const struct server *srv)
{
	uint32_t max = srv->cfg->limits.max_connections;

	return max + max / 8 + SERVER_ACCEPT_SLACK;
}

static void server_on_hold_timer(uv_timer_t *t)
{
	struct server *srv = t->data;
	unsigned load = server_load(srv);

	if (load >= server_accept_limit(srv))
		return;
	uv_timer_stop(t);
	srv->accept_held = false;
	listeners_hold(srv->listeners, false);
	log_info(NULL, "event=accept_resumed load=%u", load);
}

/* The accept loop's hand-off: the worker with the fewest sessions takes
 * the connection (see proxy/listener.h for why one acceptor). */
static void server_on_accept(void *arg, size_t listener, int fd)
{
	struct server *srv = arg;
	unsigned load = server_load(srv);
	size_t k = 0;

	if (srv->nstarted > 1)
		k = worker_pick(srv->loads, srv->nstarted, &srv->next_worker);
	if (srv->nstarted == 0 ||
	    !worker_post_connection(&srv->workers[k], listener, fd)) {
		close(fd);
		return;
	}
	if (load + 1 >= server_accept_limit(srv) && !srv->accept_held) {
		srv->accept_held = true;
		listeners_hold(srv->listeners, true);
		uv_timer_start(&srv->hold_timer, server_on_hold_timer,
			       SERVER_HOLD_CHECK_MS, SERVER_HOLD_CHECK_MS);
		log_warn(NULL,
			 "event=accept_held load=%u limit=%u "
			 "reason=\"sessions far over max_connections\"",
			 load + 1, server_accept_limit(srv));
	}
}

/* Entries of addresses that failed AUTH outlive their connections until
 * their window passes; sweep them so that memory follows recent
 * addresses only. */
#define SERVER_SWEEP_MS 60000

static void server_on_sweep(uv_timer_t *t)
{
	struct server *srv = t->data;

	shared_addr_sweep(&srv->shared, uv_now(&srv->loop),
			  srv->cfg->auth.address_failure_window_ms);
}

/* Started as root: become [server] user for good, after every privileged
 * step (ports bound, keys read).  The auth helper, our parent, keeps root
 * for PAM; we never need it again. */
static int server_drop_privileges(const struct config *cfg)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if (strcmp(cfg->server.user, "root") == 0) {
		log_warn(NULL, "event=privileges user=root "
			       "warning=\"network process keeps root: "
			       "[server] user = root\"");
		return 0;
	}
	pw = getpwnam(cfg->server.user);
	if (pw == NULL) {
		log_error(NULL,
			  "event=start_error error=\"[server] user %s does "
			  "not exist (systemd/sysusers.d creates it)\"",
			  cfg->server.user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_error(NULL, "event=start_error error=\"[server] user %s "
				"has uid 0\"",
			  cfg->server.user);
		return -1;
	}
	/* initgroups: the user's supplementary groups stay (on Debian, a
	 * member of ssl-cert can re-read group-readable keys on SIGHUP). */
	if (initgroups(cfg->server.user, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error(NULL, "event=start_error error=\"dropping to %s: %s\"",
			  cfg->server.user, strerror(errno));
		return -1;
	}
	/* Verify that root cannot be regained. */
	if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0) {
		log_error(NULL, "event=start_error error=\"could regain root "
				"after dropping privileges\"");
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	log_info(NULL, "event=privileges user=%s uid=%ld gid=%ld",
		 cfg->server.user, (long)pw->pw_uid, (long)pw->pw_gid);
	return 0;
}

static bool config_wants_tls(const struct config *cfg);

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
		next->listeners = xcalloc(old->nlisteners,
					  sizeof(*next->listeners));
		for (size_t i = 0; i < old->nlisteners; i++) {
			next->listeners[i] = old->listeners[i];
			next->listeners[i].name = xstrdup(old->listeners[i].name);
			next->listeners[i].addrs = (struct config_addr *)xmemdup(
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
 * key; a bad sender map) keeps the old set running. */
static void server_on_reload_signal(uv_signal_t *sig, int signum)
{
	struct server *srv = sig->data;
	struct config *old = srv->cfg, *next = NULL;
	struct config_errors errors = {NULL, 0};
	struct sendermap *map = NULL;
	struct tls_server *new_tls = NULL;
	char *error = NULL;

	(void)signum;
	if (srv->stopping)
		return;
	sd_notify_send("RELOADING=1");
	if (config_read(old->path, &next, &errors) < 0) {
		reload_log_errors(&errors);
		log_error(NULL,
			  "event=reload status=failed error=\"%zu "
			  "configuration error%s\"",
			  errors.count, errors.count == 1 ? "" : "s");
		config_errors_finish(&errors);
		goto out;
	}
	config_errors_finish(&errors);
	reload_keep_fixed(old, next);
	if (next->relay.sender_map != NULL) {
		map = sendermap_load(next->relay.sender_map, stderr);
		if (map == NULL) {
			log_error(NULL, "event=reload status=failed "
					"error=\"sender_map (see above)\"");
			goto out;
		}
	}
	if (config_wants_tls(next)) {
		if (srv->tls != NULL) {
			if (tls_server_reload(srv->tls, next, &error) < 0)
				goto tls_failed;
		} else if ((new_tls = tls_server_create(next, &error)) ==
			   NULL) {
			goto tls_failed;
		}
	}
	if (new_tls != NULL)
		srv->tls = new_tls;
	log_set_level(next->server.log_level);
	/* Each loop switches when it reads its mailbox, before it starts
	 * any connection accepted after this point. */
	for (size_t i = 0; i < srv->nstarted; i++)
		worker_post_reload(&srv->workers[i], next, map, srv->tls);
	probe_set_config(srv->probe, next);
	srv->cfg = next;
	config_unref(old);
	sendermap_free(srv->sendermap);
	srv->sendermap = map;
	log_info(NULL, "event=reload status=ok");
	sd_notify_send("READY=1");
	return;

tls_failed:
	log_error(NULL, "event=reload status=failed error=\"%s\"",
		  error ? error : "TLS set-up failed");
	free(error);
out:
	sendermap_free(map);
	config_free(next);
	sd_notify_send("READY=1");
}

static bool config_wants_tls(const struct config *cfg)
{
	return cfg->tls.certificate != NULL;
}

static int check_config(const struct config *cfg)
{
	if (config_wants_tls(cfg) && tls_check_config(cfg, stdout, stderr) < 0)
		return 1;
	if (cfg->relay.sender_map != NULL) {
		struct sendermap *map = sendermap_load(cfg->relay.sender_map,
						       stderr);

		if (map == NULL)
			return 1;
		sendermap_free(map);
	}
	printf("%s: configuration OK (%zu listener%s)\n", cfg->path,
	       cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s");
	return 0;
}

/* Each session may hold two descriptors (client, backend); each loop a
 * few (epoll, eventfd, the auth channel); and some more for listeners,
 * logs and start-up.  The soft RLIMIT_NOFILE (1024 under systemd and most
 * shells) is raised toward that, up to the hard limit, as services that
 * need more are expected to do; short of it, accept() pauses on EMFILE
 * (proxy/listener.c). */
static void server_raise_nofile(const struct config *cfg, size_t workers)
{
	rlim_t want = 2 * (rlim_t)cfg->limits.max_connections +
		      8 * (rlim_t)workers + 64;
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

/* The network process: everything that faces clients.  auth_fds are its
 * ends of the channels to the auth helper (its parent), one per worker.
 * It owns cfg's reference from here on: a reload may replace it. */
static int network_run(struct config *cfg, const int *auth_fds, size_t nfds,
		       const struct activation *act, const sigset_t *old_mask)
{
	static const struct worker_hooks hooks_template = {
		.auth_lost = server_worker_auth_lost,
		.exited = server_worker_exited,
	};
	struct worker_hooks hooks = hooks_template;
	struct server srv;
	uint64_t seed[2] = {0, 0};
	int rc = 0, r;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	if (config_wants_tls(cfg)) {
		char *error = NULL;

		srv.tls = tls_server_create(cfg, &error);
		if (srv.tls == NULL) {
			log_error(NULL, "event=start_error error=\"%s\"",
				  error ? error : "TLS set-up failed");
			free(error);
			goto fail_tls;
		}
	}
	if (cfg->relay.sender_map != NULL) {
		srv.sendermap = sendermap_load(cfg->relay.sender_map, stderr);
		if (srv.sendermap == NULL)
			goto fail_map;
	}
	r = uv_loop_init(&srv.loop);
	if (r == 0) {
		r = uv_async_init(&srv.loop, &srv.wake, server_on_wake);
		if (r < 0)
			uv_loop_close(&srv.loop);
	}
	if (r < 0) {
		log_error(NULL, "event=start_error error=\"event loop: %s\"",
			  uv_strerror(r));
		goto fail_loop;
	}
	srv.wake.data = &srv;
	server_raise_nofile(cfg, nfds);
	if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
		fatal("getrandom failed");
	shared_init(&srv.shared, seed[0], seed[1]);
	uv_signal_init(&srv.loop, &srv.sigterm);
	uv_signal_init(&srv.loop, &srv.sigint);
	uv_signal_init(&srv.loop, &srv.sighup);
	srv.sigterm.data = srv.sigint.data = srv.sighup.data = &srv;
	uv_timer_init(&srv.loop, &srv.drain_timer);
	srv.drain_timer.data = &srv;
	uv_timer_init(&srv.loop, &srv.sweep_timer);
	srv.sweep_timer.data = &srv;
	uv_timer_init(&srv.loop, &srv.hold_timer);
	srv.hold_timer.data = &srv;
	atomic_init(&srv.exited, 0);
	atomic_init(&srv.auth_lost, false);
	/* Handlers first, then unblock (run() blocked these before fork): a
	 * signal that arrives while the listeners open is handled, never
	 * fatal. */
	uv_signal_start(&srv.sigterm, server_on_stop_signal, SIGTERM);
	uv_signal_start(&srv.sigint, server_on_stop_signal, SIGINT);
	uv_signal_start(&srv.sighup, server_on_reload_signal, SIGHUP);
	sigprocmask(SIG_SETMASK, old_mask, NULL);

	/* Each worker takes its auth channel now, even if a step below
	 * fails: worker_join() closes it. */
	hooks.arg = &srv;
	srv.workers = xcalloc(nfds, sizeof(*srv.workers));
	srv.loads = xcalloc(nfds, sizeof(*srv.loads));
	for (size_t i = 0; i < nfds; i++) {
		if (rc != 0)
			close(auth_fds[i]);
		else if (worker_init(&srv.workers[i], (unsigned)i, cfg, srv.tls,
				     srv.sendermap, &srv.shared, auth_fds[i],
				     &hooks) == 0)
			srv.nworkers++;
		else
			rc = 1; /* worker_init closed its fd */
	}
	if (rc == 0)
		srv.listeners = listeners_open(&srv.loop, cfg, act->fds,
					       act->n, server_on_accept, &srv);
	if (rc != 0 || srv.listeners == NULL ||
	    server_drop_privileges(cfg) < 0) {
		rc = 1;
	} else {
		/* Threads only after the privilege drop: every thread of
		 * the process starts as [server] user. */
		for (size_t i = 0; i < srv.nworkers && rc == 0; i++) {
			if (worker_start(&srv.workers[i]) < 0)
				rc = 1;
			else
				srv.nstarted++;
		}
	}
	if (rc != 0) {
		server_stop(&srv, "start-up failed");
	} else {
		srv.probe = probe_start(&srv.loop, cfg, &srv.shared);
		uv_timer_start(&srv.sweep_timer, server_on_sweep,
			       SERVER_SWEEP_MS, SERVER_SWEEP_MS);
		/* The sweep alone must not keep the loop alive. */
		uv_unref((uv_handle_t *)&srv.sweep_timer);
		log_info(NULL,
			 "event=start version=%s hostname=%s pid=%ld "
			 "workers=%zu",
			 SUBMITPROXY_VERSION, cfg->server.hostname,
			 (long)getpid(), srv.nstarted);
		/* Listeners are open: connections are accepted from here. */
		if (sd_notify_send("READY=1\nSTATUS=Accepting connections") <
		    0)
			log_warn(NULL, "event=notify_error");
	}
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	{
		/* Closing the last signal handle restores the default
		 * action: a late SIGTERM (systemd signals the whole control
		 * group, the helper forwards it too) must not kill us while
		 * we finish.  Blocked, it dies with the process. */
		sigset_t set;

		control_signals(&set);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	uv_close((uv_handle_t *)&srv.sigterm, NULL);
	uv_close((uv_handle_t *)&srv.sigint, NULL);
	uv_close((uv_handle_t *)&srv.sighup, NULL);
	uv_close((uv_handle_t *)&srv.drain_timer, NULL);
	uv_close((uv_handle_t *)&srv.sweep_timer, NULL);
	uv_close((uv_handle_t *)&srv.hold_timer, NULL);
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	free(srv.workers);
	free(srv.loads);
	shared_finish(&srv.shared);
	tls_server_destroy(srv.tls);
	sendermap_free(srv.sendermap);
	config_unref(srv.cfg);
	if (uv_loop_close(&srv.loop) != 0)
		log_warn(NULL, "event=exit warning=\"loop not closed cleanly\"");
	log_info(NULL, "event=exit status=%d", rc);
	return rc;

fail_loop:
	sendermap_free(srv.sendermap);
fail_map:
	tls_server_destroy(srv.tls);
fail_tls:
	close_all(auth_fds, nfds);
	config_unref(cfg);
	return 1;
}

/* Splits into the auth helper (this process, which keeps its privileges
 * and supervises) and the network process (a child), joined by one
 * channel per worker.  See auth/helper.h for why the helper is the
 * parent. */
static int run(struct config **cfgp, const struct activation *act)
{
	struct config *cfg = *cfgp;
	size_t n = cfg->server.workers, made;
	sigset_t stop_signals, old_mask;
	int *helper_fds, *net_fds;
	pid_t pid;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	/* Held back until each process has its handlers: the helper reads
	 * them from a signalfd, the network process from libuv. */
	control_signals(&stop_signals);
	sigprocmask(SIG_BLOCK, &stop_signals, &old_mask);
	helper_fds = xcalloc(n, sizeof(*helper_fds));
	net_fds = xcalloc(n, sizeof(*net_fds));
	for (made = 0; made < n; made++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) <
		    0) {
			log_error(NULL,
				  "event=start_error error=\"socketpair: "
				  "%s\"",
				  strerror(errno));
			break;
		}
		helper_fds[made] = sv[0];
		net_fds[made] = sv[1];
	}
	pid = made == n ? (fflush(NULL), fork()) : -1;
	if (made == n && pid < 0)
		log_error(NULL, "event=start_error error=\"fork: %s\"",
			  strerror(errno));
	if (pid < 0) {
		close_all(helper_fds, made);
		close_all(net_fds, made);
		free(helper_fds);
		free(net_fds);
		return 1;
	}
	if (pid == 0) {
		close_all(helper_fds, n);
		free(helper_fds);
		*cfgp = NULL; /* the network process owns it now */
		rc = network_run(cfg, net_fds, n, act, &old_mask);
		free(net_fds);
		return rc;
	}
	close_all(net_fds, n);
	free(net_fds);
	/* The listening sockets are the network process's alone. */
	for (size_t i = 0; i < act->n; i++)
		close(act->fds[i].fd);
	rc = auth_helper_run(cfg, helper_fds, n, pid);
	free(helper_fds);
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct activation act;
	struct config *cfg = NULL;
	bool test_only = false;
	int c, rc;

	while ((c = getopt(argc, argv, "c:thV")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'V':
			printf("submitproxy %s\n", SUBMITPROXY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg) < 0)
		return 1;
	log_set_level(cfg->server.log_level);
	memset(&act, 0, sizeof(act));
	if (!test_only) {
		int n = sd_listen_fds_take(getpid(), act.fds, SD_LISTEN_FDS_MAX);

		if (n < 0) {
			log_error(NULL, "event=start_error error=\"bad "
					"LISTEN_FDS/LISTEN_PID\"");
			config_free(cfg);
			return 1;
		}
		act.n = (size_t)n;
	}
	rc = test_only ? check_config(cfg) : run(&cfg, &act);
	config_free(cfg);
	return rc;
}
