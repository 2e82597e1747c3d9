/*
 * listener.h - the listening sockets and the accept loop.
 *
 * One control loop accepts every connection and hands each accepted
 * socket to the caller, which gives it to the least-loaded worker loop
 * (proxy/worker.h).  Why one acceptor rather than one listening socket
 * per loop (SO_REUSEPORT): systemd socket activation passes one socket
 * per address, which a second loop could only share, not split; the
 * kernel's reuseport hash spreads by address and port, not by load, and a
 * loop busy with handshakes still gets its share; and closing one of a
 * reuseport group's sockets resets the connections queued on it.  The
 * hand-off costs one eventfd wake-up per connection, next to a TLS
 * handshake that costs about a thousand times more (tests/bench/).
 *
 * Sockets are bound here (before the privilege drop) or taken from
 * systemd ($LISTEN_FDNAMES matched to [listener NAME]).  A socket whose
 * accept() fails for want of descriptors or memory pauses for
 * LISTENER_PAUSE_MS (as nginx does) instead of spinning on a connection
 * it cannot take; the caller may also hold every socket while the worker
 * loops are behind (listeners_hold()).
 *
 * Ownership: listeners_open() returns the set; listeners_close() closes
 * the sockets and frees the set once libuv has closed its handles.
 */
#ifndef SUBMITPROXY_LISTENER_H
#define SUBMITPROXY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/sdnotify.h"

#define LISTENER_PAUSE_MS 1000

struct listeners;

/* A connection accepted on a socket of cfg->listeners[index]: fd is
 * connected, non-blocking and close-on-exec, and the callee owns it. */
typedef void listeners_accept_cb(void *arg, size_t index, int fd);

/* Binds (or takes from fds) every listener of cfg and starts accepting on
 * loop.  Returns NULL after logging which address could not be opened. */
struct listeners *listeners_open(uv_loop_t *loop, const struct config *cfg,
				 const struct sd_listen_fd *fds, size_t nfds,
				 listeners_accept_cb *cb, void *arg);

/* hold: stop accepting for now (new connections wait in the kernel's
 * backlog); !hold: accept again. */
void listeners_hold(struct listeners *ls, bool hold);

/* Stops accepting and closes every socket.  listeners_close(NULL) is a
 * no-op. */
void listeners_close(struct listeners *ls);

#endif
