/*
 * authclient.h - the network process's side of the auth helper channel: a
 * libuv pipe over the socketpair inherited from the helper (auth/helper.h),
 * carrying auth/proto.h frames.  Never blocks: a request is a frame
 * written, its answer a callback.
 *
 * Every request has [auth] timeout: past it the callback gets
 * AUTH_RESULT_TEMPFAIL with reason "timeout" and a late answer is dropped.
 * If the channel breaks (the helper process is gone), every pending request
 * gets TEMPFAIL "helper_lost" and on_lost is called once.
 *
 * Ownership: the client belongs to the worker; a pending request belongs
 * to the client until its callback has run or it was cancelled.  A session
 * that ends while its request is pending cancels it; the callback then
 * never runs.
 */
#ifndef SUBMITPROXY_AUTHCLIENT_H
#define SUBMITPROXY_AUTHCLIENT_H

#include <stdint.h>
#include <uv.h>

#include "auth/proto.h"

struct auth_client;
struct auth_pending;

typedef void auth_client_cb(void *arg, const struct auth_response *resp);
typedef void auth_client_lost_cb(void *arg);

struct auth_client *auth_client_create(uv_loop_t *loop, int fd,
				       uint64_t timeout_ms,
				       auth_client_lost_cb *on_lost,
				       void *lost_arg);

/* Sends one request.  Returns NULL (and calls nothing) if the channel is
 * down or the request cannot be encoded (a field over its auth/proto.h
 * maximum is refused, never cut short); the caller answers 454 itself.
 * The password is copied into the frame, which is wiped once written. */
struct auth_pending *auth_client_submit(struct auth_client *c,
					const char *user, const char *password,
					const char *addr, auth_client_cb *cb,
					void *arg);

/* The account check for a login by client certificate (AUTH_MSG_ACCOUNT):
 * as auth_client_submit(), without a password. */
struct auth_pending *auth_client_account(struct auth_client *c,
					 const char *user, const char *addr,
					 auth_client_cb *cb, void *arg);

void auth_client_cancel(struct auth_pending *p);

/* Closes the pipe; pending requests are dropped without callbacks.  The
 * memory goes when the pipe's close callback runs. */
void auth_client_close(struct auth_client *c);

#endif
