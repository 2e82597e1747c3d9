/*
 * sdnotify.h - the two halves of systemd's service protocol that a daemon
 * speaks, implemented directly rather than through libsystemd:
 *
 *  - readiness and status (sd_notify(3)): datagrams such as "READY=1" to
 *    the socket named by $NOTIFY_SOCKET, if set;
 *  - socket activation (sd_listen_fds(3)): listening sockets passed as fds
 *    3.. with $LISTEN_FDS, $LISTEN_PID and $LISTEN_FDNAMES.
 */
#ifndef SUBMITPROXY_SDNOTIFY_H
#define SUBMITPROXY_SDNOTIFY_H

#include <stddef.h>
#include <sys/types.h>

/* Sends state (e.g. "READY=1\nSTATUS=...") if $NOTIFY_SOCKET is set.
 * Returns 0, or -1 (the caller logs; systemd then times out). */
int sd_notify_send(const char *state);

#define SD_LISTEN_FDS_START 3
#define SD_LISTEN_FDS_MAX 64

struct sd_listen_fd {
	int fd;
	char name[64];   /* from $LISTEN_FDNAMES, "" if none */
};

/* Takes the sockets passed to process pid (the one systemd started) and
 * unsets the variables.  Fills fds (up to SD_LISTEN_FDS_MAX) and returns
 * how many, 0 without activation, -1 on malformed variables. */
int sd_listen_fds_take(pid_t pid, struct sd_listen_fd *fds, size_t max);

#endif
