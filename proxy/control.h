/*
 * control.h - the network process's control loop.
 *
 * The main thread of the network process runs it: the signals (SIGTERM and
 * SIGINT stop gracefully, SIGHUP reloads), the accept loop and its hand-off
 * to the [server] workers event loops (proxy/worker.h), each on a thread
 * of its own, the backend probe, and the timers that belong to no session
 * (the drain on stop, the accept hold, the address-table sweep).
 *
 * Ownership: control_run() takes cfg's reference (a reload may replace it)
 * and the descriptors in auth_fds, whatever it returns.
 */
#ifndef SUBMITPROXY_CONTROL_H
#define SUBMITPROXY_CONTROL_H

#include <signal.h>
#include <stddef.h>

#include "config/config.h"
#include "proxy/sdnotify.h"

/* Sockets systemd passed us (socket activation), taken in main(). */
struct control_activation {
	struct sd_listen_fd fds[SD_LISTEN_FDS_MAX];
	size_t n;
};

/* Called once every privileged step is done (the listeners bound) and
 * before any worker thread starts, so that every thread starts as the
 * user it leaves.  Returns 0, or -1 after logging why: the start fails. */
typedef int control_drop_privileges_fn(const struct config *cfg);

/* Runs the network process until it stops; returns its exit status (0, or
 * 1 if the start failed).  auth_fds are its ends of the channels to the
 * auth helper, one per worker.  Signals in control_signals() are blocked
 * on entry; old_mask is restored once their handlers are installed.
 * helper_stats: the auth helper's page for the metrics, or NULL. */
struct helper_stats;
int control_run(struct config *cfg, const int *auth_fds, size_t nfds,
		const struct control_activation *act, const sigset_t *old_mask,
		control_drop_privileges_fn *drop_privileges,
		const struct helper_stats *helper_stats);

#endif
