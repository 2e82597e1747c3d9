/*
 * probe.h - the backend probe: at start and every PROBE_INTERVAL_MS, the
 * control loop connects to the backend, reads its EHLO reply and stores
 * its capabilities in the shared state (proxy/shared.h), so that every
 * event loop's pre-auth EHLO announces only what the backend can do
 * (DESIGN.md, "Pre-auth dialogue").  One probe for the process, however
 * many loops.
 *
 * Ownership: probe_start() creates it on loop; probe_stop() closes it (the
 * memory goes with the timer's close callback).  probe_set_config()
 * switches to a reloaded configuration (the next probe uses its
 * [backend]); the probe holds a reference on the one it uses.
 */
#ifndef SUBMITPROXY_PROBE_H
#define SUBMITPROXY_PROBE_H

#include <uv.h>

struct config;
struct shared;
struct probe;

#define PROBE_INTERVAL_MS 60000

struct probe *probe_start(uv_loop_t *loop, struct config *cfg,
			  struct shared *shared);
void probe_set_config(struct probe *p, struct config *cfg);
void probe_stop(struct probe *p);

#endif
