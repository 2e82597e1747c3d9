/*
 * probe.h - the backend probe, on the control loop: it connects to a
 * backend, reads its greeting and EHLO reply, says QUIT, and tells the
 * shared state (proxy/shared.h, proxy/backends.h) whether the backend is
 * up and what it offers, so that sessions skip a backend that is down and
 * every event loop's pre-auth EHLO announces only what the backends can
 * do (DESIGN.md, "Pre-auth dialogue").
 *
 * When: each backend at start, and when a reload adds it; a backend that
 * is down, [backend] retry_interval after it went down and every
 * retry_interval after that until it answers; a backend that is up, only
 * once neither a session nor a probe has talked to it for probe_interval.
 * A session's successful hand-over refreshes its backend's capabilities
 * and "last used" time in the shared state, so steady traffic makes no
 * probe connection at all (each one is a line in the MTA's log; sendmail:
 * "did not issue MAIL/EXPN/VRFY/ETRN during connection").
 *
 * How it learns what is due: a timer ticks every PROBE_TICK_MS and asks
 * the shared state (one lock, no I/O when nothing is due).  A session
 * marks its backend down on its own worker loop and the next tick sees
 * it: no wake-up crosses threads.  A uv_async signalled by the workers
 * would start that probe up to a tick sooner, but it would be one more
 * handle other threads touch, whose closing must wait for every worker;
 * a down backend's probe is retry_interval away in any case (a
 * retry_interval under a tick is rounded up to it).
 *
 * Several backends may be probed at once, one connection each.  A round
 * holds a reference on the configuration its backend belongs to, so a
 * reload does not cut it short, and it reports by address (a backend a
 * reload removed is forgotten).
 *
 * Ownership: probe_start() creates it on loop; probe_stop() closes every
 * round's connection and the timer (the memory goes with the timer's
 * close callback).  probe_set_config() switches to a reloaded
 * configuration: the shared state tracks its backends from then on, and
 * the probe holds a reference on it.
 */
#ifndef SUBMITPROXY_PROBE_H
#define SUBMITPROXY_PROBE_H

#include <uv.h>

struct config;
struct shared;
struct probe;

/* How often the probe looks for a backend whose probe is due. */
#define PROBE_TICK_MS 1000

struct probe *probe_start(uv_loop_t *loop, struct config *cfg,
			  struct shared *shared);
void probe_set_config(struct probe *p, struct config *cfg);
void probe_stop(struct probe *p);

#endif
