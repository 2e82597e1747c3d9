/* worker.c - see worker.h */
#include "proxy/worker.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/authclient.h"
#include "proxy/logratelimit.h"
#include "proxy/metrics.h"
#include "common/log.h"
#include "proxy/policy.h"
#include "proxy/sendermap.h"
#include "proxy/session.h"
#include "proxy/userlimits.h"
#include "common/signals.h"
#include "common/util.h"

/* event=tls_fail: one line per client prefix per 10 s (a scanner failing
 * handshakes by the thousand), tracked for up to this many prefixes at
 * once per loop, and at most BUDGET lines per loop per 10 s whatever the
 * number of prefixes (a scanner spread over a whole IPv6 /48). */
#define WORKER_TLS_FAIL_LOG_ENTRIES 1024
#define WORKER_TLS_FAIL_LOG_WINDOW_MS 10000
#define WORKER_TLS_FAIL_LOG_BUDGET 100

size_t worker_pick(const unsigned *loads, size_t n, size_t *next)
{
	size_t best = *next % n;

	for (size_t k = 1; k < n; k++) {
		size_t i = (*next + k) % n;

		if (loads[i] < loads[best])
			best = i;
	}
	*next = (best + 1) % n;
	return best;
}

unsigned worker_load(struct worker *w)
{
	return atomic_load_explicit(&w->load, memory_order_relaxed);
}

/* ---- on the worker's thread ------------------------------------------ */

static void worker_on_auth_lost(void *arg)
{
	struct worker *w = arg;

	w->hooks.auth_lost(w->hooks.arg, w);
}

static void worker_apply_reload(struct worker *w, struct config *cfg,
				struct sendermap *sendermap,
				struct userlimits *userlimits,
				struct tls_server *tls)
{
	struct config *old_cfg = w->env.cfg;
	struct sendermap *old_map = w->env.sendermap;
	struct userlimits *old_limits = w->env.userlimits;

	/* Live sessions hold their own references on the old
	 * configuration and keep it; the sender map and the user limits
	 * are the worker's, read at each MAIL, so the new ones apply to
	 * live sessions too (as with a single loop). */
	w->env.cfg = cfg;
	w->env.sendermap = sendermap;
	w->env.userlimits = userlimits;
	w->env.tls = tls;
	policy_reconfigure(w->env.policy, cfg);
	config_unref(old_cfg);
	sendermap_free(old_map);
	userlimits_free(old_limits);
}

static void worker_stop(struct worker *w)
{
	if (w->env.stopping)
		return;
	w->env.stopping = true;
	/* From now on only the sessions keep the loop alive. */
	uv_unref((uv_handle_t *)&w->wake);
	for (struct session *s = w->sessions, *next; s != NULL; s = next) {
		/* A session may end (not free) itself here. */
		next = session_hook(s)->next;
		session_shutdown(s);
	}
}

static void worker_stop_force(struct worker *w)
{
	for (struct session *s = w->sessions, *next; s != NULL; s = next) {
		next = session_hook(s)->next;
		session_force_close(s);
	}
}

static void worker_on_wake(uv_async_t *a)
{
	struct worker *w = a->data;
	struct worker_mail m;

	pthread_mutex_lock(&w->mail_lock);
	m = w->mail;
	w->mail.conns = NULL;
	w->mail.nconns = w->mail.cap = 0;
	w->mail.stop = w->mail.force = w->mail.reload = false;
	w->mail.cfg = NULL;
	w->mail.sendermap = NULL;
	w->mail.userlimits = NULL;
	w->mail.tls = NULL;
	pthread_mutex_unlock(&w->mail_lock);

	/* A reload first: connections accepted after it use it. */
	if (m.reload)
		worker_apply_reload(w, m.cfg, m.sendermap, m.userlimits, m.tls);
	for (size_t i = 0; i < m.nconns; i++)
		/* A stopping worker greets them with 421. */
		session_accept(&w->env, m.conns[i].listener, m.conns[i].fd);
	free(m.conns);
	if (m.stop)
		worker_stop(w);
	if (m.force)
		worker_stop_force(w);
}

/* The loop has ended: close the mailbox (later posts are refused) and
 * what is left on the loop. */
static void worker_wind_down(struct worker *w)
{
	struct worker_mail m;

	pthread_mutex_lock(&w->mail_lock);
	w->mail.closed = true;
	m = w->mail;
	w->mail.conns = NULL;
	w->mail.nconns = 0;
	w->mail.reload = false;
	pthread_mutex_unlock(&w->mail_lock);
	for (size_t i = 0; i < m.nconns; i++)
		close(m.conns[i].fd);
	free(m.conns);
	if (m.reload) {
		config_unref(m.cfg);
		sendermap_free(m.sendermap);
		userlimits_free(m.userlimits);
	}
	uv_close((uv_handle_t *)&w->wake, NULL);
	auth_client_close(w->env.auth);
	w->env.auth = NULL;
	/* Updates in flight to Redis end on this last run. */
	policy_close(w->env.policy);
	w->env.policy = NULL;
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&w->loop) != 0)
		log_warn(NULL,
			 "event=exit worker=%u warning=\"loop not closed "
			 "cleanly\"",
			 w->index);
}

static void worker_thread_main(void *arg)
{
	struct worker *w = arg;
	sigset_t set;

	/* Stop and reload are the control loop's. */
	control_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (w->metrics != NULL)
		metrics_bind(w->metrics, w->index);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	worker_wind_down(w);
	metrics_bind(NULL, 0);
	w->hooks.exited(w->hooks.arg, w);
}

void worker_session_add(void *worker, struct session *s)
{
	struct worker *w = worker;
	struct session_hook *h = session_hook(s);

	h->prev = NULL;
	h->next = w->sessions;
	if (w->sessions != NULL)
		session_hook(w->sessions)->prev = s;
	w->sessions = s;
	w->nsessions++;
}

void worker_session_remove(void *worker, struct session *s)
{
	struct worker *w = worker;
	struct session_hook *h = session_hook(s);

	if (h->prev != NULL)
		session_hook(h->prev)->next = h->next;
	else
		w->sessions = h->next;
	if (h->next != NULL)
		session_hook(h->next)->prev = h->prev;
	w->nsessions--;
	/* What the acceptor balances on: this one is gone. */
	atomic_fetch_sub_explicit(&w->load, 1, memory_order_relaxed);
}

/* ---- from any thread -------------------------------------------------- */

int worker_init(struct worker *w, unsigned index, struct config *cfg,
		struct tls_server *tls, struct sendermap *sendermap,
		struct userlimits *userlimits, struct shared *shared,
		int auth_fd, const struct worker_hooks *hooks)
{
	uint64_t seed;
	int r;

	memset(w, 0, sizeof(*w));
	w->index = index;
	w->shared = shared;
	w->hooks = *hooks;
	w->env.tls = tls;
	atomic_init(&w->load, 0);
	pthread_mutex_init(&w->mail_lock, NULL);
	r = uv_loop_init(&w->loop);
	if (r < 0) {
		log_error(NULL, "event=start_error error=\"event loop: %s\"",
			  uv_strerror(r));
		close(auth_fd);
		pthread_mutex_destroy(&w->mail_lock);
		return -1;
	}
	r = uv_async_init(&w->loop, &w->wake, worker_on_wake);
	if (r < 0) {
		log_error(NULL, "event=start_error error=\"event loop: %s\"",
			  uv_strerror(r));
		uv_loop_close(&w->loop);
		close(auth_fd);
		pthread_mutex_destroy(&w->mail_lock);
		return -1;
	}
	w->wake.data = w;
	w->env.cfg = config_ref(cfg);
	w->env.sendermap = sendermap != NULL ? sendermap_ref(sendermap) : NULL;
	w->env.userlimits =
	    userlimits != NULL ? userlimits_ref(userlimits) : NULL;
	w->env.auth = auth_client_create(&w->loop, auth_fd,
					 cfg->auth.timeout_ms,
					 worker_on_auth_lost, w);
	w->env.loop = &w->loop;
	w->env.shared = shared;
	w->env.policy = policy_create(&w->loop, shared, cfg);
	w->env.worker_index = index;
	w->env.read_buf = w->read_buf;
	w->env.read_buf_size = sizeof(w->read_buf);
	w->env.data_buf = w->data_buf;
	w->env.data_chunk = WORKER_DATA_CHUNK;
	w->env.added = worker_session_add;
	w->env.removed = worker_session_remove;
	w->env.owner = w;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = uv_hrtime() ^ (uint64_t)(uintptr_t)w;
	w->env.tls_fail_log =
	    logratelimit_create(WORKER_TLS_FAIL_LOG_ENTRIES,
				WORKER_TLS_FAIL_LOG_WINDOW_MS, seed);
	logratelimit_set_budget(w->env.tls_fail_log,
				WORKER_TLS_FAIL_LOG_BUDGET);
	return 0;
}

int worker_start(struct worker *w)
{
	/* A stack of its own size, not RLIMIT_STACK's (libuv's default, as
	 * small as the admin's ulimit -s): tls_conn_feed() holds a
	 * feed's plaintext on it (256 KiB, tls-conn.c). */
	uv_thread_options_t options = {
	    .flags = UV_THREAD_HAS_STACK_SIZE,
	    .stack_size = WORKER_STACK_SIZE,
	};
	int r = uv_thread_create_ex(&w->thread, &options, worker_thread_main,
				    w);

	if (r < 0) {
		log_error(NULL, "event=start_error error=\"thread: %s\"",
			  uv_strerror(r));
		return -1;
	}
	w->started = true;
	return 0;
}

bool worker_post_connection(struct worker *w, size_t listener, int fd)
{
	bool ok = false;

	pthread_mutex_lock(&w->mail_lock);
	if (!w->mail.closed) {
		struct worker_mail *m = &w->mail;

		if (m->nconns == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 16;
			m->conns =
			    xrealloc(m->conns, m->cap * sizeof(*m->conns));
		}
		m->conns[m->nconns].fd = fd;
		m->conns[m->nconns].listener = listener;
		m->nconns++;
		atomic_fetch_add_explicit(&w->load, 1, memory_order_relaxed);
		uv_async_send(&w->wake);
		ok = true;
	}
	pthread_mutex_unlock(&w->mail_lock);
	return ok;
}

void worker_post_reload(struct worker *w, struct config *cfg,
			struct sendermap *sendermap,
			struct userlimits *userlimits, struct tls_server *tls)
{
	struct config *old_cfg = NULL;
	struct sendermap *old_map = NULL;
	struct userlimits *old_limits = NULL;

	pthread_mutex_lock(&w->mail_lock);
	if (!w->mail.closed) {
		struct worker_mail *m = &w->mail;

		/* Two reloads before the loop looked: the newer wins. */
		if (m->reload) {
			old_cfg = m->cfg;
			old_map = m->sendermap;
			old_limits = m->userlimits;
		}
		m->reload = true;
		m->cfg = config_ref(cfg);
		m->sendermap = sendermap ? sendermap_ref(sendermap) : NULL;
		m->userlimits = userlimits ? userlimits_ref(userlimits) : NULL;
		m->tls = tls;
		uv_async_send(&w->wake);
	}
	pthread_mutex_unlock(&w->mail_lock);
	config_unref(old_cfg);
	sendermap_free(old_map);
	userlimits_free(old_limits);
}

static void worker_post_flag(struct worker *w, bool force)
{
	pthread_mutex_lock(&w->mail_lock);
	if (!w->mail.closed) {
		if (force)
			w->mail.force = true;
		else
			w->mail.stop = true;
		uv_async_send(&w->wake);
	}
	pthread_mutex_unlock(&w->mail_lock);
}

void worker_post_stop(struct worker *w)
{
	worker_post_flag(w, false);
}

void worker_post_force(struct worker *w)
{
	worker_post_flag(w, true);
}

void worker_join(struct worker *w)
{
	if (w->started) {
		uv_thread_join(&w->thread);
		w->started = false;
	} else {
		/* Never ran (a start-up failure): close what init opened. */
		worker_wind_down(w);
	}
	config_unref(w->env.cfg);
	w->env.cfg = NULL;
	sendermap_free(w->env.sendermap);
	w->env.sendermap = NULL;
	userlimits_free(w->env.userlimits);
	w->env.userlimits = NULL;
	logratelimit_destroy(w->env.tls_fail_log);
	w->env.tls_fail_log = NULL;
	pthread_mutex_destroy(&w->mail_lock);
}
