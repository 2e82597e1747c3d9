/*
 * session-io.h - the client connection under a session: the socket, the
 * TLS connection over it, output batching, parking of input the session
 * cannot take yet (back-pressure), and the orderly close (last replies,
 * close_notify, half-close, a short linger).
 *
 * Its own state machine is the connection's life: open, closing (last
 * replies being written), linger (half-closed, draining the client),
 * closed (handles closing).  The session's protocol phase is the
 * session's business; the io knows nothing of SMTP.
 *
 * Errors arrive in callbacks (libuv's rule): a write that fails inside
 * session_io_write() or session_io_flush() is recorded, and cb->failed
 * runs from the io's timer on a later loop turn, never from inside the
 * call.  The owner may therefore call any session_io_* function from
 * anywhere, and its state stays what it was until a callback says
 * otherwise.
 *
 * Ownership: the session embeds nothing of it; session_io_create()
 * allocates, session_io_destroy() closes the handles, and the memory goes
 * after cb->closed, the last callback.  Every callback, cb->input
 * included, may call session_io_close() or session_io_destroy(): the io
 * looks at its state after each callback returns and delivers nothing
 * more to a closing connection.
 */
#ifndef SUBMITPROXY_SESSION_IO_H
#define SUBMITPROXY_SESSION_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "tls/tls-conn.h"

struct session_io;
struct tls_conn;
struct tls_server;

/* Output toward the client: the owner stops taking input above HIGH
 * bytes queued (session_io_output_high()); cb->drained once the queue
 * falls to LOW. */
#define SESSION_IO_WRITE_HIGH (64 * 1024)
#define SESSION_IO_WRITE_LOW  (16 * 1024)
/* Replies are collected and written once per batch, or earlier when the
 * batch grows past this. */
#define SESSION_IO_OUT_FLUSH 8192
/* After the last reply and the half-close, how long the client's unread
 * bytes are drained, so that the kernel does not answer them with a RST
 * that could destroy the reply in flight; also how long the last replies
 * may take to leave. */
#define SESSION_IO_LINGER_MS 2000

enum session_io_error {
	SESSION_IO_READ_ERROR, /* the socket: reset, timeout... */
	SESSION_IO_WRITE_ERROR,
	SESSION_IO_TLS_ERROR, /* an alert was queued; close to send it */
};

struct session_io_callbacks {
	/* Client bytes in the clear (from the socket, or decrypted), in
	 * the io's own buffer: the callee may wipe what it took (AUTH
	 * secrets).  Returns how many it took; the rest is parked and
	 * reading stops until session_io_resume(). */
	size_t (*input)(void *arg, char *data, size_t len);
	/* The client will send nothing more (FIN, or TLS close_notify:
	 * tls), after everything it sent before was taken.  Once only.  A
	 * FIN in the middle of a TLS handshake is a failed handshake
	 * instead (failed with SESSION_IO_TLS_ERROR, tls_conn_eof()). */
	void (*eof)(void *arg, bool tls);
	/* The TLS handshake has completed. */
	void (*handshake_done)(void *arg);
	/* Output fell to SESSION_IO_WRITE_LOW after passing HIGH. */
	void (*drained)(void *arg);
	/* The connection is unusable (why: for the log); TLS errors may
	 * still be closed gracefully so that the alert leaves. */
	void (*failed)(void *arg, enum session_io_error error, const char *why);
	/* session_io_close() has finished (or given up): destroy now. */
	void (*done)(void *arg);
	/* The handles are closed; nothing of the io remains after this. */
	void (*closed)(void *arg);
};

/* Takes fd (an accepted socket); sid (the session's, for the debug log)
 * must outlive it.  On failure returns NULL and closes fd; *error_r says
 * why. */
struct session_io *session_io_create(uv_loop_t *loop, int fd, const char *sid,
				     char *read_buf, size_t read_buf_size,
				     const struct session_io_callbacks *cb,
				     void *arg, const char **error_r);

void session_io_read_start(struct session_io *io);

/* The peer's address (AF_UNSPEC if unknown). */
void session_io_peer(struct session_io *io, struct sockaddr_storage *ss);

/* Bytes are already waiting in the socket: a client that talked before
 * it could have been greeted. */
bool session_io_input_pending(struct session_io *io);

/* Queues output (encrypted once TLS is up); written at session_io_flush()
 * or once a batch passes SESSION_IO_OUT_FLUSH.  Before the handshake has
 * completed on a TLS connection nothing is written. */
void session_io_write(struct session_io *io, const char *data, size_t len);
void session_io_flush(struct session_io *io);

/* Output queued or in flight passes SESSION_IO_WRITE_HIGH. */
bool session_io_output_high(const struct session_io *io);

/* Takes parked input up again (the owner can take it now), then reads.
 * From cb->input this only takes effect once input returns. */
void session_io_resume(struct session_io *io);
bool session_io_has_parked(const struct session_io *io);

/* Starts TLS as the server: for STARTTLS after the 220 went out in the
 * clear (flushed here first), or for implicit TLS.  ciphertext: client
 * bytes already read that belong to the handshake (after a PROXY
 * header), fed once the current callback returns. */
void session_io_start_tls(struct session_io *io, struct tls_server *srv,
			  enum tls_client_certs certs, const char *ciphertext,
			  size_t len);

/* NULL until TLS starts. */
const struct tls_conn *session_io_tls(const struct session_io *io);
bool session_io_tls_active(const struct session_io *io);

/* Outside a message, reads take at most this much of the read buffer. */
#define SESSION_IO_COMMAND_READ (64 * 1024)

/* While a message is received: reads take the whole read buffer, and
 * OpenSSL keeps its record buffers. */
void session_io_set_bulk(struct session_io *io, bool bulk);

/* Ends the connection in order: the queued output goes, then our
 * close_notify (TLS), a half-close and the linger; then cb->done.  Input
 * is no longer delivered. */
void session_io_close(struct session_io *io);
bool session_io_closing(const struct session_io *io);

/* Closes the handles now; cb->closed follows. */
void session_io_destroy(struct session_io *io);

uint64_t session_io_bytes_in(const struct session_io *io);
uint64_t session_io_bytes_out(const struct session_io *io);

#endif
