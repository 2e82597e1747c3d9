/*
 * helper.h - the privileged side of submitproxy: the auth helper.
 *
 * Process layout (DESIGN.md, "Authentication"; the issue asks for a tiny
 * supervising parent, as Postfix's master and Dovecot's master):
 *
 *   submitproxy            the helper: stays root when started as root;
 *    |                     a poll() loop that reads requests from the
 *    |                     network process, queues them, hands each to an
 *    |                     idle PAM worker, relays the answer, reaps and
 *    |                     re-forks workers that die, and forwards signals.
 *    +- submitproxy        the network process (libuv), forked first; it
 *    |                     drops privileges and never runs PAM.  Each of
 *    |                     its event loops ([server] workers) has its own
 *    |                     auth channel to the helper.
 *    +- submitproxy ×N     PAM workers ([auth] helper_workers): one
 *                          blocking PAM transaction at a time each.
 *
 * Why processes for PAM and not threads: not every PAM module is thread-
 * safe (Dovecot runs PAM in auth-worker processes for that reason), and a
 * module that hangs or crashes takes down one worker, not the helper.
 *
 * Why the helper is the parent: a PAM worker that dies must be replaced by
 * a process that still has root, long after the network process dropped
 * it.  The helper never touches the network: its only input is the
 * socketpairs from the network process, parsed by auth/proto.c as
 * untrusted.
 *
 * Channels: one socketpair per event loop of the network process, each
 * with its own request ids, buffers and back-pressure; answers go back on
 * the channel the request came from.  The queue of waiting requests and
 * the PAM workers are shared.  One channel closing (a loop that finished
 * at graceful stop) does not stop the helper: the others may still have
 * logins in progress.
 */
#ifndef SUBMITPROXY_AUTH_HELPER_H
#define SUBMITPROXY_AUTH_HELPER_H

#include <stddef.h>
#include <sys/types.h>

struct config;
struct helper_stats;

/* Runs the helper loop in the calling (parent) process until the network
 * process (network_pid) exits.  fds[0..nfds-1] (nfds >= 1) are the
 * helper's ends of the auth channels, one per event loop of the network
 * process; the helper owns them from the call on and closes them, on
 * every path.  The helper stops serving once every channel is closed, or
 * at once when the network process breaks the protocol on any channel
 * (it is then killed).  SIGTERM, SIGINT and SIGHUP received by the helper
 * are forwarded to the network process.  Returns the exit status to use:
 * the network process's, or 1 if it died by a signal or the helper could
 * not start.  stats (auth/helperstats.h, or NULL) gets the helper's
 * figures for the network process's metrics. */
int auth_helper_run(const struct config *cfg, const int *fds, size_t nfds,
		    pid_t network_pid, struct helper_stats *stats);

#endif
