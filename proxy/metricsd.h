/*
 * metricsd.h - the [metrics] endpoint: GET /metrics (proxy/metrics.h's
 * text) and GET /healthz (200 "ok ...", or 503 and a one-line reason),
 * served by libmicrohttpd on a thread of its own, off the session loops.
 *
 * Why libmicrohttpd: a maintained HTTP/1.1 server from Debian (GNU,
 * packaged since 2008, used by systemd-journal-remote and Prometheus
 * exporters in C), with the limits a listener open to a network needs
 * (connections total and per address, a timeout, a memory cap per
 * connection) and its own polling thread, so that no HTTP byte is parsed
 * here and a slow scraper never waits on, or holds up, a session loop.  A
 * scrape costs the session loops nothing: the thread reads their counters
 * (relaxed atomic loads) and copies the backends' states under the shared
 * lock (proxy/shared.h), the one lock a session ever waits on.
 *
 * Who may ask: [metrics] allow (address ranges), checked when a
 * connection is accepted; a refused one is closed without a byte, and
 * logged (event=reject reason=metrics_not_allowed, at most one line a
 * second, with the count of the lines left out).
 *
 * Life: metricsd_open() binds (before the privilege drop), metricsd_start()
 * starts the thread (after it, with the stop signals blocked: the control
 * loop takes them), metricsd_close() stops the thread and closes the
 * socket.  The registry must outlive it.
 */
#ifndef SUBMITPROXY_METRICSD_H
#define SUBMITPROXY_METRICSD_H

struct config;
struct metrics;
struct metricsd;

/* Binds cfg's [metrics] address.  NULL after logging why (the start then
 * fails, as for a listener that cannot be bound). */
struct metricsd *metricsd_open(const struct config *cfg, struct metrics *m);

/* Returns 0, or -1 after logging why. */
int metricsd_start(struct metricsd *d);

/* metricsd_close(NULL) is a no-op. */
void metricsd_close(struct metricsd *d);

#endif
