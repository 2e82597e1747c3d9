/* session-io.c - see session-io.h */
#include "proxy/session-io.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "tls/tls-conn.h"

enum session_io_state {
	SESSION_IO_OPEN,
	SESSION_IO_CLOSING, /* last output leaving */
	SESSION_IO_LINGER,  /* half-closed, draining the client */
	SESSION_IO_CLOSED,  /* handles closing */
	SESSION_IO_STATE_COUNT
};

static const char *const session_io_state_names[] = {
    [SESSION_IO_OPEN] = "open",
    [SESSION_IO_CLOSING] = "closing",
    [SESSION_IO_LINGER] = "linger",
    [SESSION_IO_CLOSED] = "closed",
};
static_assert(sizeof(session_io_state_names) /
		      sizeof(session_io_state_names[0]) ==
		  SESSION_IO_STATE_COUNT,
	      "one name per io state");

struct session_io {
	const struct session_io_callbacks *cb;
	void *arg;
	const char *sid;
	enum session_io_state state;

	uv_tcp_t tcp;
	uv_timer_t timer; /* deferred errors, closing, linger */
	uv_shutdown_t shutdown_req;
	int open_handles;
	char *read_buf; /* the worker's, shared by its sessions */
	size_t read_buf_size;
	bool reading;
	bool bulk; /* a message is received: reads use all of read_buf */

	struct tls_conn *tls; /* NULL until TLS starts */
	char *cipher_pending; /* handshake bytes to feed after a callback */
	size_t cipher_pending_len;

	/* TLS records held while session_io_close() writes the last reply
	 * and the close_notify. */
	bool corked;
	char *cork;
	size_t cork_len, cork_cap;

	char *out; /* output not yet handed to uv_write */
	size_t out_len, out_cap;
	size_t write_queued; /* handed to uv_write, not done */
	bool want_drained;

	char *parked; /* input the owner could not take yet */
	size_t parked_len;
	bool eof_parked;    /* the client ended behind the parked bytes */
	bool eof_seen;	    /* cb->eof was called: no more reading */
	bool eof_tls;	    /* it was a close_notify */
	bool in_input;	    /* inside cb->input */
	bool in_read_cb;    /* inside the read callback */
	bool resume_wanted; /* session_io_resume() from inside it */

	/* A failure seen inside a call, reported from the timer. */
	bool failed;
	enum session_io_error error;
	const char *error_why;

	uint64_t bytes_in, bytes_out;
};

struct session_io_write_req {
	uv_write_t req;
	struct session_io *io;
	size_t len;
	char data[];
};

static void session_io_enter_state(struct session_io *io,
				   enum session_io_state state);
static void session_io_deliver(struct session_io *io, char *data, size_t len);
static void session_io_feed_pending(struct session_io *io);

static void session_io_stop_reading(struct session_io *io)
{
	if (io->reading) {
		uv_read_stop((uv_stream_t *)&io->tcp);
		io->reading = false;
	}
}

static void session_io_on_timer(uv_timer_t *t);

/* Records a failure found inside a call; the owner hears of it from the
 * timer, on a later loop turn. */
static void session_io_fail_later(struct session_io *io,
				  enum session_io_error error, const char *why)
{
	if (io->failed || io->state == SESSION_IO_CLOSED)
		return;
	io->failed = true;
	io->error = error;
	io->error_why = why;
	session_io_stop_reading(io);
	uv_timer_start(&io->timer, session_io_on_timer, 0, 0);
}

static void session_io_on_timer(uv_timer_t *t)
{
	struct session_io *io = t->data;

	if (io->failed && io->error_why != NULL) {
		const char *why = io->error_why;

		io->error_why = NULL; /* reported once */
		if (io->state == SESSION_IO_OPEN) {
			io->cb->failed(io->arg, io->error, why);
			return;
		}
		/* Closing already: the owner only waits for done. */
	}
	/* Closing or lingering too long, or failed while closing: the
	 * client would not take our last reply, or would not close. */
	if (io->state == SESSION_IO_CLOSING || io->state == SESSION_IO_LINGER)
		io->cb->done(io->arg);
}

/* ---- output ---- */

static void session_io_on_write(uv_write_t *req, int status)
{
	struct session_io_write_req *wr = (struct session_io_write_req *)req;
	struct session_io *io = wr->io;

	io->write_queued -= wr->len;
	if (status == 0)
		io->bytes_out += wr->len;
	free(wr);
	if (io->state == SESSION_IO_CLOSED)
		return;
	if (status < 0) {
		if (status == UV_ECANCELED)
			return;
		if (io->state == SESSION_IO_OPEN) {
			if (!io->failed) {
				io->failed = true;
				session_io_stop_reading(io);
				io->cb->failed(io->arg, SESSION_IO_WRITE_ERROR,
					       uv_strerror(status));
			}
		} else {
			io->cb->done(io->arg);
		}
		return;
	}
	if (io->state == SESSION_IO_CLOSING && io->write_queued == 0) {
		session_io_enter_state(io, SESSION_IO_LINGER);
		return;
	}
	if (io->want_drained && io->state == SESSION_IO_OPEN &&
	    io->write_queued + io->out_len <= SESSION_IO_WRITE_LOW) {
		io->want_drained = false;
		io->cb->drained(io->arg);
	}
}

/* Hands bytes to the socket: at once when nothing is queued and the
 * socket takes them (most replies and TLS records), else a copy that lives
 * until the write completes.  Why not uv_write() alone: it writes at once
 * too when the queue is empty, but its completion re-arms the descriptor's
 * watcher, one epoll_ctl() per reply; uv_try_write() touches no watcher.
 * An error here is reported later (session_io_fail_later()), never from
 * inside the call. */
static void session_io_send_raw(struct session_io *io, const char *data,
				size_t len)
{
	struct session_io_write_req *wr;
	uv_buf_t buf;
	int r;

	if (len == 0 || io->failed || io->state >= SESSION_IO_LINGER)
		return;
	if (io->write_queued == 0) {
		buf = uv_buf_init((char *)data, (unsigned)len);
		r = uv_try_write((uv_stream_t *)&io->tcp, &buf, 1);
		if (r > 0) {
			io->bytes_out += (size_t)r;
			data += r;
			len -= (size_t)r;
		} else if (r != UV_EAGAIN && r != UV_ENOSYS) {
			session_io_fail_later(io, SESSION_IO_WRITE_ERROR,
					      uv_strerror(r));
			return;
		}
		if (len == 0)
			return;
	}
	wr = xmalloc(sizeof(*wr) + len);
	wr->io = io;
	wr->len = len;
	memcpy(wr->data, data, len);
	buf = uv_buf_init(wr->data, (unsigned)len);
	r = uv_write(&wr->req, (uv_stream_t *)&io->tcp, &buf, 1,
		     session_io_on_write);
	if (r < 0) {
		free(wr);
		session_io_fail_later(io, SESSION_IO_WRITE_ERROR,
				      uv_strerror(r));
		return;
	}
	io->write_queued += len;
}

bool session_io_tls_active(const struct session_io *io)
{
	return io->tls != NULL && tls_conn_handshake_done(io->tls);
}

void session_io_flush(struct session_io *io)
{
	size_t len = io->out_len;

	if (len == 0)
		return;
	io->out_len = 0;
	if (io->failed || io->state >= SESSION_IO_LINGER) {
		/* Nothing can leave any more. */
	} else if (io->tls != NULL) {
		/* Nothing is written in the clear once TLS has started; the
		 * handshake itself produces no replies. */
		if (session_io_tls_active(io) &&
		    tls_conn_write(io->tls, io->out, len) != TLS_OK)
			session_io_fail_later(io, SESSION_IO_TLS_ERROR,
					      tls_conn_error(io->tls));
	} else {
		session_io_send_raw(io, io->out, len);
	}
	if (io->write_queued > SESSION_IO_WRITE_HIGH)
		io->want_drained = true;
	if (io->out_cap > SESSION_IO_OUT_FLUSH) {
		/* Keep idle sessions small: drop a buffer a big batch grew. */
		free(io->out);
		io->out = NULL;
		io->out_cap = 0;
	}
}

void session_io_write(struct session_io *io, const char *data, size_t len)
{
	if (io->state != SESSION_IO_OPEN || io->failed || len == 0)
		return;
	if (io->out_cap - io->out_len < len) {
		io->out_cap = io->out_len + len + 512;
		io->out = xrealloc(io->out, io->out_cap);
	}
	memcpy(io->out + io->out_len, data, len);
	io->out_len += len;
	if (io->out_len >= SESSION_IO_OUT_FLUSH)
		session_io_flush(io);
}

bool session_io_output_high(const struct session_io *io)
{
	return io->write_queued + io->out_len > SESSION_IO_WRITE_HIGH;
}

/* ---- input ---- */

static void session_io_free_parked(struct session_io *io)
{
	if (io->parked != NULL) {
		/* It may hold an AUTH response. */
		explicit_bzero(io->parked, io->parked_len);
		free(io->parked);
	}
	io->parked = NULL;
	io->parked_len = 0;
}

/* Keeps input the owner cannot take now, and stops reading until
 * session_io_resume(): what is held is at most one read's worth (with
 * TLS, the records of one read) beyond what was already there. */
static void session_io_park(struct session_io *io, const char *data, size_t len)
{
	if (len == 0)
		return;
	io->parked = xrealloc(io->parked, io->parked_len + len);
	memcpy(io->parked + io->parked_len, data, len);
	io->parked_len += len;
	session_io_stop_reading(io);
}

bool session_io_has_parked(const struct session_io *io)
{
	return io->parked_len > 0;
}

/* Hands input to the owner, or parks it behind what is parked already. */
static void session_io_deliver(struct session_io *io, char *data, size_t len)
{
	size_t taken;

	if (io->state != SESSION_IO_OPEN || io->failed || len == 0)
		return;
	if (io->parked != NULL) {
		session_io_park(io, data, len);
		return;
	}
	io->in_input = true;
	taken = io->cb->input(io->arg, data, len);
	io->in_input = false;
	assert(taken <= len);
	if (taken < len && io->state == SESSION_IO_OPEN)
		session_io_park(io, data + taken, len - taken);
}

static void session_io_eof(struct session_io *io, bool tls)
{
	io->eof_tls = tls;
	if (io->parked != NULL) {
		/* Said once the parked bytes are taken. */
		io->eof_parked = true;
		return;
	}
	io->eof_seen = true;
	session_io_stop_reading(io);
	io->cb->eof(io->arg, tls);
}

/* What a callback asked for while the io was busy. */
static void session_io_after_input(struct session_io *io)
{
	if (io->state != SESSION_IO_OPEN || io->failed)
		return;
	session_io_feed_pending(io);
	if (io->resume_wanted) {
		io->resume_wanted = false;
		session_io_resume(io);
	}
}

void session_io_resume(struct session_io *io)
{
	if (io->in_input) {
		io->resume_wanted = true;
		return;
	}
	while (io->parked != NULL && io->state == SESSION_IO_OPEN &&
	       !io->failed) {
		char *parked = io->parked;
		size_t parked_len = io->parked_len, taken;

		io->parked = NULL;
		io->parked_len = 0;
		io->in_input = true;
		taken = io->cb->input(io->arg, parked, parked_len);
		io->in_input = false;
		if (taken < parked_len && io->state == SESSION_IO_OPEN) {
			/* Still blocked: keep the rest (in front of anything
			 * parked meanwhile, which cannot happen: reading is
			 * stopped while parked). */
			assert(io->parked == NULL);
			io->parked =
			    xmemdup(parked + taken, parked_len - taken);
			io->parked_len = parked_len - taken;
		}
		explicit_bzero(parked, parked_len);
		free(parked);
		if (io->parked != NULL) {
			io->resume_wanted = false;
			return;
		}
		session_io_feed_pending(io);
		if (!io->resume_wanted)
			break;
		io->resume_wanted = false;
	}
	if (io->state != SESSION_IO_OPEN || io->failed || io->parked != NULL)
		return;
	if (io->eof_parked) {
		io->eof_parked = false;
		io->eof_seen = true;
		io->cb->eof(io->arg, io->eof_tls);
		return;
	}
	session_io_read_start(io);
}

/* ---- TLS glue ---- */

static void session_io_tls_send(void *arg, const char *data, size_t len)
{
	struct session_io *io = arg;

	if (io->corked) {
		/* session_io_close(): the last record and the close_notify
		 * behind it, in one write. */
		if (io->cork_cap - io->cork_len < len) {
			io->cork_cap = io->cork_len + len + 64;
			io->cork = xrealloc(io->cork, io->cork_cap);
		}
		memcpy(io->cork + io->cork_len, data, len);
		io->cork_len += len;
		return;
	}
	session_io_send_raw(arg, data, len);
}

static void session_io_tls_plaintext(void *arg, const char *data, size_t len)
{
	/* The TLS glue's buffer, ours until this returns (and wiped by the
	 * glue after): the owner may wipe what it took. */
	session_io_deliver(arg, (char *)data, len);
}

static void session_io_tls_handshake_done(void *arg)
{
	struct session_io *io = arg;

	io->cb->handshake_done(io->arg);
}

static const struct tls_conn_callbacks session_io_tls_callbacks = {
    .send = session_io_tls_send,
    .plaintext = session_io_tls_plaintext,
    .handshake_done = session_io_tls_handshake_done,
};

/* Ciphertext from the socket (or held over from a PROXY header).  From
 * the read callback (in_read_cb) an error is reported at once; from
 * anywhere else, from the timer. */
static void session_io_feed_tls(struct session_io *io, const char *data,
				size_t len, bool in_read_cb)
{
	switch (tls_conn_feed(io->tls, data, len)) {
	case TLS_OK:
		break;
	case TLS_CLOSED:
		if (io->state == SESSION_IO_OPEN && !io->failed)
			session_io_eof(io, true);
		break;
	case TLS_ERROR:
		if (io->state != SESSION_IO_OPEN || io->failed)
			break;
		if (!in_read_cb) {
			session_io_fail_later(io, SESSION_IO_TLS_ERROR,
					      tls_conn_error(io->tls));
			break;
		}
		io->failed = true;
		session_io_stop_reading(io);
		io->cb->failed(io->arg, SESSION_IO_TLS_ERROR,
			       tls_conn_error(io->tls));
		break;
	}
}

static void session_io_feed_pending(struct session_io *io)
{
	char *data = io->cipher_pending;
	size_t len = io->cipher_pending_len;

	if (data == NULL || io->in_input)
		return;
	io->cipher_pending = NULL;
	io->cipher_pending_len = 0;
	if (io->state == SESSION_IO_OPEN && !io->failed)
		session_io_feed_tls(io, data, len, io->in_read_cb);
	free(data);
}

void session_io_start_tls(struct session_io *io, struct tls_server *srv,
			  enum tls_client_certs certs, const char *ciphertext,
			  size_t len)
{
	assert(io->tls == NULL);
	session_io_flush(io);
	io->tls = tls_conn_create(srv, certs, &session_io_tls_callbacks, io);
	if (len > 0) {
		io->cipher_pending = xmemdup(ciphertext, len);
		io->cipher_pending_len = len;
	}
	if (!io->in_input)
		session_io_feed_pending(io);
	/* Also when STARTTLS came from parked input, with reading stopped. */
	session_io_read_start(io);
}

const struct tls_conn *session_io_tls(const struct session_io *io)
{
	return io->tls;
}

void session_io_set_bulk(struct session_io *io, bool bulk)
{
	io->bulk = bulk;
	tls_conn_set_bulk(io->tls, bulk);
}

/* ---- reading ---- */

static void session_io_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct session_io *io = h->data;

	size_t size = io->read_buf_size;

	/* The read callback consumes the buffer (or copies what it parks)
	 * before returning: one buffer serves every session of the loop.
	 * Commands are read SESSION_IO_COMMAND_READ at a time: what a
	 * client pipelines past its reply queue is parked (copied) until it
	 * reads its replies, so what a session can be made to hold stays
	 * one such read.  A message takes the whole buffer: the DATA
	 * scanner takes a read in one call; only commands behind the end
	 * of a message, in its last read, may be parked then. */
	if (!io->bulk && size > SESSION_IO_COMMAND_READ)
		size = SESSION_IO_COMMAND_READ;
	*buf = uv_buf_init(io->read_buf, (unsigned)size);
}

static void session_io_on_read(uv_stream_t *stream, ssize_t nread,
			       const uv_buf_t *buf)
{
	struct session_io *io = stream->data;

	if (nread == 0)
		return;
	if (nread < 0) {
		session_io_stop_reading(io);
		if (io->state == SESSION_IO_CLOSING ||
		    io->state == SESSION_IO_LINGER) {
			/* The client is gone or done: in CLOSING, let what
			 * is in flight finish (the timer bounds it). */
			if (io->state == SESSION_IO_LINGER || nread != UV_EOF ||
			    io->write_queued == 0)
				io->cb->done(io->arg);
			return;
		}
		if (io->state != SESSION_IO_OPEN || io->failed)
			return;
		if (nread == UV_EOF) {
			/* A client that leaves in the middle of its handshake
			 * failed it (counted and logged as such), unlike one
			 * that never started. */
			if (io->tls != NULL &&
			    tls_conn_eof(io->tls) == TLS_ERROR) {
				io->failed = true;
				io->cb->failed(io->arg, SESSION_IO_TLS_ERROR,
					       tls_conn_error(io->tls));
				return;
			}
			session_io_eof(io, false);
			return;
		}
		io->failed = true;
		io->cb->failed(io->arg, SESSION_IO_READ_ERROR,
			       uv_strerror((int)nread));
		return;
	}
	io->bytes_in += (uint64_t)nread;
	if (io->state != SESSION_IO_OPEN || io->failed) {
		/* Closing: input is drained and dropped. */
		explicit_bzero(buf->base, (size_t)nread);
		return;
	}
	io->in_read_cb = true;
	if (io->tls != NULL)
		session_io_feed_tls(io, buf->base, (size_t)nread, true);
	else
		session_io_deliver(io, buf->base, (size_t)nread);
	session_io_after_input(io);
	io->in_read_cb = false;
	session_io_flush(io);
}

void session_io_read_start(struct session_io *io)
{
	int r;

	if (io->reading || io->failed || io->state == SESSION_IO_CLOSED ||
	    (io->state == SESSION_IO_OPEN &&
	     (io->parked != NULL || io->eof_seen)))
		return;
	r = uv_read_start((uv_stream_t *)&io->tcp, session_io_on_alloc,
			  session_io_on_read);
	if (r < 0) {
		session_io_fail_later(io, SESSION_IO_READ_ERROR,
				      uv_strerror(r));
		return;
	}
	io->reading = true;
}

/* ---- life ---- */

static void session_io_on_shutdown(uv_shutdown_t *req, int status)
{
	/* Nothing to do: the linger read or timer ends the connection. */
}

static void session_io_enter_state(struct session_io *io,
				   enum session_io_state state)
{
	log_debug(io->sid, "event=io_state from=%s to=%s",
		  session_io_state_names[io->state],
		  session_io_state_names[state]);
	io->state = state;
	switch (state) {
	case SESSION_IO_CLOSING:
		uv_timer_start(&io->timer, session_io_on_timer,
			       SESSION_IO_LINGER_MS, 0);
		break;
	case SESSION_IO_LINGER:
		/* Half-close after the last reply, then drain input until
		 * the client closes or the linger timer fires. */
		uv_timer_start(&io->timer, session_io_on_timer,
			       SESSION_IO_LINGER_MS, 0);
		if (io->failed ||
		    uv_shutdown(&io->shutdown_req, (uv_stream_t *)&io->tcp,
				session_io_on_shutdown) < 0) {
			/* Reported from the timer, never from here. */
			uv_timer_start(&io->timer, session_io_on_timer, 0, 0);
			return;
		}
		session_io_read_start(io);
		break;
	default:
		break;
	}
}

void session_io_close(struct session_io *io)
{
	if (io->state != SESSION_IO_OPEN)
		return;
	io->corked = true;
	session_io_flush(io);
	if (session_io_tls_active(io) && !io->failed)
		tls_conn_shutdown(io->tls); /* close_notify after the reply */
	io->corked = false;
	if (io->cork_len > 0) {
		session_io_send_raw(io, io->cork, io->cork_len);
		explicit_bzero(io->cork, io->cork_len);
	}
	free(io->cork);
	io->cork = NULL;
	io->cork_len = io->cork_cap = 0;
	session_io_free_parked(io);
	io->eof_parked = false;
	session_io_enter_state(io, SESSION_IO_CLOSING);
	if (io->write_queued == 0)
		session_io_enter_state(io, SESSION_IO_LINGER);
}

bool session_io_closing(const struct session_io *io)
{
	return io->state != SESSION_IO_OPEN;
}

static void session_io_on_close(uv_handle_t *h)
{
	struct session_io *io = h->data;

	if (--io->open_handles > 0)
		return;
	io->cb->closed(io->arg);
	tls_conn_destroy(io->tls);
	free(io->out);
	free(io->cipher_pending);
	session_io_free_parked(io);
	free(io);
}

void session_io_destroy(struct session_io *io)
{
	if (io == NULL || io->state == SESSION_IO_CLOSED)
		return;
	session_io_enter_state(io, SESSION_IO_CLOSED);
	uv_close((uv_handle_t *)&io->tcp, session_io_on_close);
	uv_close((uv_handle_t *)&io->timer, session_io_on_close);
}

static void session_io_free_unopened(uv_handle_t *h)
{
	free(h->data);
}

struct session_io *session_io_create(uv_loop_t *loop, int fd, const char *sid,
				     char *read_buf, size_t read_buf_size,
				     const struct session_io_callbacks *cb,
				     void *arg, const char **error_r)
{
	struct session_io *io = xcalloc(1, sizeof(*io));
	int r;

	io->cb = cb;
	io->arg = arg;
	io->sid = sid;
	io->read_buf = read_buf;
	io->read_buf_size = read_buf_size;
	io->state = SESSION_IO_OPEN;
	uv_tcp_init(loop, &io->tcp);
	r = uv_tcp_open(&io->tcp, fd);
	if (r < 0) {
		*error_r = uv_strerror(r);
		close(fd);
		/* A handle that never opened still closes through libuv. */
		io->tcp.data = io;
		uv_close((uv_handle_t *)&io->tcp, session_io_free_unopened);
		return NULL;
	}
	uv_timer_init(loop, &io->timer);
	io->tcp.data = io;
	io->timer.data = io;
	io->open_handles = 2;
	uv_tcp_nodelay(&io->tcp, 1);
	return io;
}

void session_io_peer(struct session_io *io, struct sockaddr_storage *ss)
{
	int len = sizeof(*ss);

	memset(ss, 0, sizeof(*ss));
	if (uv_tcp_getpeername(&io->tcp, (struct sockaddr *)ss, &len) != 0)
		ss->ss_family = AF_UNSPEC;
}

bool session_io_input_pending(struct session_io *io)
{
	uv_os_fd_t fd;
	char c;

	if (uv_fileno((uv_handle_t *)&io->tcp, &fd) != 0)
		return false;
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

uint64_t session_io_bytes_in(const struct session_io *io)
{
	return io->bytes_in;
}

uint64_t session_io_bytes_out(const struct session_io *io)
{
	return io->bytes_out;
}
