/* probe.c - see probe.h */
#include "proxy/probe.h"

#include <stdbool.h>
#include <stdlib.h>

#include "config/config.h"
#include "common/log.h"
#include "proxy/relay.h"
#include "proxy/shared.h"
#include "common/util.h"

struct probe {
	uv_timer_t timer;
	struct config *cfg; /* a reference */
	struct shared *shared;
	struct relay *relay; /* this round's connection, or NULL */
	bool known;	     /* some round succeeded */
	bool failing;	     /* the last round failed (logged once) */
	bool done;	     /* this round got its EHLO */
};

static void probe_ready(void *arg)
{
	struct probe *p = arg;

	shared_set_backend_caps(p->shared, relay_caps(p->relay));
	if (!p->known || p->failing)
		log_info(NULL,
			 "event=backend_probe status=ok backend=%s esmtp=%s "
			 "pipelining=%s",
			 p->cfg->backend.list[0].address,
			 relay_esmtp(p->relay) ? "yes" : "no",
			 relay_caps(p->relay)->caps & EHLO_CAP_PIPELINING
			     ? "yes"
			     : "no");
	p->known = true;
	p->failing = false;
	p->done = true;
}

static void probe_failed(void *arg, const char *why)
{
	struct probe *p = arg;

	/* The round is over either way: its connection goes now, not at
	 * the next round (relay.h: destroy is allowed from a callback). */
	relay_destroy(p->relay);
	p->relay = NULL;
	/* After QUIT the backend closes: that is the probe's normal end. */
	if (p->done)
		return;
	if (!p->failing)
		log_warn(NULL,
			 "event=backend_probe status=failed backend=%s "
			 "error=\"%s\"%s",
			 p->cfg->backend.list[0].address, why,
			 p->known ? "" : " advertising=conservative");
	p->failing = true;
}

/* The only reply after the hand-over is the one to the probe's QUIT:
 * the round is over, even if the backend keeps the connection open. */
static void probe_reply(void *arg, const struct relay_reply *reply)
{
	struct probe *p = arg;

	(void)reply;
	relay_destroy(p->relay);
	p->relay = NULL;
}

static const struct relay_callbacks probe_callbacks = {
    .ready = probe_ready,
    .failed = probe_failed,
    .reply = probe_reply,
};

static void probe_on_timer(uv_timer_t *t)
{
	struct probe *p = t->data;

	relay_destroy(p->relay);
	p->done = false;
	p->relay = relay_create(t->loop, p->cfg, &p->cfg->backend.list[0],
				NULL, &probe_callbacks, p);
}

struct probe *probe_start(uv_loop_t *loop, struct config *cfg,
			  struct shared *shared)
{
	struct probe *p = xcalloc(1, sizeof(*p));

	p->cfg = config_ref(cfg);
	p->shared = shared;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, probe_on_timer, 0, PROBE_INTERVAL_MS);
	/* The probe alone must not keep the loop alive at shutdown. */
	uv_unref((uv_handle_t *)&p->timer);
	return p;
}

void probe_set_config(struct probe *p, struct config *cfg)
{
	/* The next probe, at once, uses the new [backend]. */
	relay_destroy(p->relay);
	p->relay = NULL;
	p->done = false;
	config_unref(p->cfg);
	p->cfg = config_ref(cfg);
	uv_timer_start(&p->timer, probe_on_timer, 0, PROBE_INTERVAL_MS);
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
	relay_destroy(p->relay);
	p->relay = NULL;
	uv_close((uv_handle_t *)&p->timer, probe_on_closed);
}
