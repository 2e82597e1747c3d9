/* probe.c - see probe.h */
#include "proxy/metrics.h"
#include "proxy/probe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/relay.h"
#include "proxy/shared.h"

/* One connection to one backend. */
struct probe_round {
	struct probe_round *next;
	struct probe *p;
	struct config *cfg; /* a reference: backend is one of its list */
	const struct config_backend *backend;
	struct relay *relay;
	bool done; /* its EHLO came: only the QUIT is left */
};

struct probe {
	uv_timer_t timer;
	struct config *cfg; /* the current one; a reference */
	struct shared *shared;
	struct probe_round *rounds;
};

static void probe_round_end(struct probe_round *round)
{
	struct probe_round **pp = &round->p->rounds;

	while (*pp != round)
		pp = &(*pp)->next;
	*pp = round->next;
	/* Callbacks never run after destroy (relay.h), and it may be called
	 * from inside one of them. */
	relay_destroy(round->relay);
	config_unref(round->cfg);
	free(round);
}

static void probe_ready(void *arg)
{
	struct probe_round *round = arg;
	struct shared *shared = round->p->shared;
	const struct ehlo_caps *caps = relay_caps(round->relay);
	bool esmtp = relay_esmtp(round->relay);

	round->done = true;
	if (round->backend->xclient == XCLIENT_YES &&
	    (!esmtp || !(caps->caps & EHLO_CAP_XCLIENT))) {
		/* Every session would fail its hand-over there (relay.c):
		 * the probe must not call it up. */
		shared_backend_down(shared, round->cfg, round->backend,
				    esmtp ? "xclient = yes but the backend "
					    "does not offer XCLIENT"
					  : "xclient = yes but the backend "
					    "speaks no ESMTP",
				    NULL);
		metrics_backend_probe(round->backend->address, false);
	} else {
		metrics_backend_probe(round->backend->address, true);
		shared_backend_up(shared, round->backend, caps, "probe", NULL);
		log_info(NULL,
			 "event=backend_probe status=ok backend=%s esmtp=%s "
			 "pipelining=%s",
			 round->backend->address, esmtp ? "yes" : "no",
			 caps->caps & EHLO_CAP_PIPELINING ? "yes" : "no");
	}
	shared_backend_probe_done(shared, round->cfg, round->backend);
	/* The relay has sent QUIT: the round ends at its reply, or when
	 * the backend closes or times out. */
}

static void probe_failed(void *arg, const char *why)
{
	struct probe_round *round = arg;

	/* After QUIT the backend closes: that is the round's normal end. */
	if (!round->done) {
		metrics_backend_probe(round->backend->address, false);
		log_debug(NULL,
			  "event=backend_probe status=failed backend=%s "
			  "error=\"%s\"",
			  round->backend->address, why);
		shared_backend_down(round->p->shared, round->cfg,
				    round->backend, why, NULL);
		shared_backend_probe_done(round->p->shared, round->cfg,
					  round->backend);
	}
	probe_round_end(round);
}

/* The only reply after the hand-over is the one to the probe's QUIT: the
 * round is over, even if the backend keeps the connection open. */
static void probe_reply(void *arg, const struct relay_reply *reply)
{
	(void)reply;
	probe_round_end(arg);
}

static const struct relay_callbacks probe_callbacks = {
    .ready = probe_ready,
    .failed = probe_failed,
    .reply = probe_reply,
};

static void probe_round_start(struct probe *p,
			      const struct config_backend *backend)
{
	struct probe_round *round = xcalloc(1, sizeof(*round));

	round->p = p;
	round->cfg = config_ref(p->cfg);
	round->backend = backend;
	round->next = p->rounds;
	p->rounds = round;
	/* The relay connects on a later loop turn: it reports nothing
	 * before this returns. */
	round->relay = relay_create(p->timer.loop, round->cfg, backend, NULL,
				    &probe_callbacks, round);
}

/* No I/O unless a backend is due (shared_backends_due() marks it, so a
 * round under way is not started twice). */
static void probe_on_tick(uv_timer_t *t)
{
	struct probe *p = t->data;
	uint32_t due = shared_backends_due(p->shared, p->cfg);

	for (size_t i = 0; i < p->cfg->backend.count && due != 0; i++) {
		if (due & (UINT32_C(1) << i)) {
			due &= ~(UINT32_C(1) << i);
			probe_round_start(p, &p->cfg->backend.list[i]);
		}
	}
}

struct probe *probe_start(uv_loop_t *loop, struct config *cfg,
			  struct shared *shared)
{
	struct probe *p = xcalloc(1, sizeof(*p));

	p->cfg = config_ref(cfg);
	p->shared = shared;
	shared_backends_configure(shared, cfg);
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	/* The first tick, at once, probes every backend. */
	uv_timer_start(&p->timer, probe_on_tick, 0, PROBE_TICK_MS);
	/* The probe alone must not keep the loop alive at shutdown. */
	uv_unref((uv_handle_t *)&p->timer);
	return p;
}

void probe_set_config(struct probe *p, struct config *cfg)
{
	config_unref(p->cfg);
	p->cfg = config_ref(cfg);
	shared_backends_configure(p->shared, cfg);
	/* A backend the reload added is probed at once. */
	uv_timer_start(&p->timer, probe_on_tick, 0, PROBE_TICK_MS);
}

static void probe_on_closed(uv_handle_t *h)
{
	struct probe *p = h->data;

	config_unref(p->cfg);
	free(p);
}

void probe_stop(struct probe *p)
{
	if (p == NULL)
		return;
	while (p->rounds != NULL)
		probe_round_end(p->rounds);
	uv_close((uv_handle_t *)&p->timer, probe_on_closed);
}
