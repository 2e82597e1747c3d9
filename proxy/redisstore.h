/*
 * redisstore.h - the policy store in Redis ([policy] store = redis://...
 * or redis+unix://...), so that every instance behind a load balancer
 * counts the same failures and messages.  One connection per event loop,
 * through hiredis's libuv adapter on that loop: nothing here ever blocks.
 *
 * Each request (the operations of proxy/store.h, pipelined) is atomic per
 * operation on the server (a short Lua script: INCRBY and PEXPIRE
 * together), and has a deadline ([policy] timeout): a request not
 * answered by then fails, and the connection is taken as broken (a Redis
 * that does not answer in time, e.g. stopped, is down): it is closed and
 * made again with a growing back-off (100 ms doubling up to 5 s).  A new
 * connection sends AUTH and SELECT as the URL says, then PING, and is up
 * only once PING is answered within the deadline.  While it is not up,
 * redisstore_exec() refuses at once, so that callers do not each wait for
 * a deadline: they fall back ([policy] on_store_error).
 *
 * Errors arrive in callbacks, never from inside the call that queued the
 * request: hiredis may fail a command inside redisAsyncCommand(); that
 * failure is reported on a later loop turn.
 *
 * Keys are [policy] key_prefix + the store key (binary-safe).
 *
 * Ownership: the worker creates one for its loop (on its thread, or
 * before the loop runs) and closes it at reload (a new store) or exit.
 * A closed store takes no new request; those in flight end through their
 * callbacks (answered, or failed when the connection closes), and the
 * store frees itself once they have and its handles are closed.
 */
#ifndef SUBMITPROXY_REDISSTORE_H
#define SUBMITPROXY_REDISSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy/store.h"

struct config_store;
struct redisstore;
struct redisstore_req;

struct redisstore_hooks {
	/* The connection came up (PING answered) or went down (why: a
	 * short text, no secret in it).  Called on the store's loop, never
	 * after redisstore_close(). */
	void (*state)(void *arg, bool up, const char *why);
	void *arg;
};

/* status 0: every op's results are filled; -1: the request failed
 * (deadline, lost connection, error reply, close). */
typedef void redisstore_cb(void *arg, int status);

/* Starts connecting at once.  url is copied (strings included);
 * key_prefix too. */
struct redisstore *redisstore_create(uv_loop_t *loop,
				     const struct config_store *url,
				     const char *key_prefix,
				     uint64_t timeout_ms,
				     const struct redisstore_hooks *hooks);

/* Sends ops[0..n) (n <= STORE_OPS_MAX), which must stay valid until cb
 * runs or the request is cancelled.  Returns the request, or NULL at once
 * when the connection is not up or the store is closed (cb is then never
 * called).  The commands are queued on return: exec then cancel at once
 * is fire and forget (the operations still run, nothing is told). */
struct redisstore_req *redisstore_exec(struct redisstore *rs,
				       struct store_op *ops, size_t n,
				       redisstore_cb *cb, void *arg);

/* cb will not be called; the ops are no longer touched.  Only for a
 * request whose cb has not run (a request is freed after its cb). */
void redisstore_cancel(struct redisstore_req *req);

bool redisstore_up(const struct redisstore *rs);

/* See Ownership. */
void redisstore_close(struct redisstore *rs);

#endif
