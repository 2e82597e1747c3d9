/* checkbackend.c - see checkbackend.h */
#include "proxy/checkbackend.h"

#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "config/config.h"
#include "proxy/checkreport.h"
#include "proxy/linebuf.h"
#include "proxy/relay.h"
#include "proxy/smtp-parse.h"
#include "proxy/smtp-relay-parse.h"

/* As relay.c: a reply line up to 4096 bytes, a reply up to
 * RELAY_REPLY_MAX, a command (the XCLIENT) up to 2048. */
#define CHECK_LINE_MAX	   4096
#define CHECK_READ_BUFSIZE 4096
#define CHECK_COMMAND_MAX  2048
/* After the first reply to the bare-LF line, how long a second one may
 * take to show that the backend split the line there. */
#define CHECK_BARE_LF_WAIT_MS 1000
/* This host's other addresses answer at once or not at all: each connect
 * and greeting there waits at most this long (or the configured
 * timeouts, if shorter). */
#define CHECK_EXPOSURE_WAIT_MS 3000

enum check_io {
	CHECK_IO_OK,
	CHECK_IO_TIMEOUT,
	CHECK_IO_CLOSED,
	CHECK_IO_FAILED, /* conn->error says why */
};

struct check_conn {
	int fd;
	struct linebuf lines;
	char buf[CHECK_READ_BUFSIZE];
	size_t off, len; /* buf[off..len) not yet split into lines */
	char error[160];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t min_ms(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* "300 s" or "1500 ms". */
static void duration_text(char *buf, size_t size, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, size, "%llu s", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, size, "%llu ms", (unsigned long long)ms);
}

/* 1: fd is ready for events; 0: deadline passed; -1: poll failed. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		uint64_t now = now_ms();
		int rc;

		if (now >= deadline)
			return 0;
		rc = poll(&p, 1,
			  deadline - now > INT_MAX ? INT_MAX
						   : (int)(deadline - now));
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* A connected socket, or -1 with err filled. */
static int check_connect(const struct sockaddr *sa, socklen_t len,
			 uint64_t timeout_ms, char *err, size_t err_size)
{
	uint64_t deadline = now_ms() + timeout_ms;
	int fd, rc, soerr = 0;
	socklen_t soerr_len = sizeof(soerr);
	char dur[32];

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		snprintf(err, err_size, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, sa, len) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		snprintf(err, err_size, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	rc = wait_fd(fd, POLLOUT, deadline);
	if (rc == 0) {
		duration_text(dur, sizeof(dur), timeout_ms);
		snprintf(err, err_size, "no connection within %s", dur);
	} else if (rc < 0) {
		snprintf(err, err_size, "poll: %s", strerror(errno));
	} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) <
		       0 ||
		   soerr != 0) {
		snprintf(err, err_size, "%s", strerror(soerr ? soerr : errno));
	} else {
		return fd;
	}
	close(fd);
	return -1;
}

static void check_conn_init(struct check_conn *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	linebuf_init(&c->lines, CHECK_LINE_MAX);
}

static void check_conn_finish(struct check_conn *c)
{
	linebuf_reset(&c->lines);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The next line (CR LF removed; valid until the next call). */
static enum check_io check_read_line(struct check_conn *c, uint64_t deadline,
				     const char **line_r, size_t *len_r)
{
	for (;;) {
		ssize_t n;
		int rc;

		if (c->off < c->len) {
			size_t used;
			enum linebuf_result lr =
			    linebuf_next(&c->lines, c->buf + c->off,
					 c->len - c->off, &used, line_r, len_r);

			c->off += used;
			if (lr == LINEBUF_LINE)
				return CHECK_IO_OK;
			if (lr == LINEBUF_TOO_LONG) {
				snprintf(c->error, sizeof(c->error),
					 "a reply line longer than %d bytes",
					 CHECK_LINE_MAX);
				return CHECK_IO_FAILED;
			}
			continue;
		}
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc == 0)
			return CHECK_IO_TIMEOUT;
		if (rc < 0) {
			snprintf(c->error, sizeof(c->error), "poll: %s",
				 strerror(errno));
			return CHECK_IO_FAILED;
		}
		n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n == 0)
			return CHECK_IO_CLOSED;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			snprintf(c->error, sizeof(c->error), "%s",
				 strerror(errno));
			return CHECK_IO_FAILED;
		}
		c->off = 0;
		c->len = (size_t)n;
	}
}

/* One whole reply, every line kept in reply (also a malformed one),
 * checked as relay.c checks it. */
static enum check_io check_read_reply(struct check_conn *c, uint64_t timeout_ms,
				      struct check_reply *reply)
{
	uint64_t deadline = now_ms() + timeout_ms;
	size_t total = 0;
	int code = 0;

	for (;;) {
		struct smtp_reply_line rl;
		const char *line;
		size_t len;
		enum check_io io = check_read_line(c, deadline, &line, &len);

		if (io != CHECK_IO_OK)
			return io;
		check_reply_add_line(reply, line, len);
		total += len + 2;
		if (smtp_reply_parse(line, len, &rl) < 0) {
			snprintf(c->error, sizeof(c->error),
				 "a malformed reply line");
			return CHECK_IO_FAILED;
		}
		if (reply->nlines > 1 && rl.code != code) {
			snprintf(c->error, sizeof(c->error),
				 "the reply code changed inside a multi-line "
				 "reply");
			return CHECK_IO_FAILED;
		}
		if (total > RELAY_REPLY_MAX) {
			snprintf(c->error, sizeof(c->error),
				 "a reply longer than %d bytes",
				 RELAY_REPLY_MAX);
			return CHECK_IO_FAILED;
		}
		code = rl.code;
		if (rl.last) {
			reply->code = code;
			return CHECK_IO_OK;
		}
	}
}

static enum check_io check_send(struct check_conn *c, const char *data,
				size_t len, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	while (len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		int rc;

		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = wait_fd(c->fd, POLLOUT, deadline);
			if (rc == 0)
				return CHECK_IO_TIMEOUT;
			if (rc > 0)
				continue;
		}
		if (errno == EPIPE)
			return CHECK_IO_CLOSED;
		snprintf(c->error, sizeof(c->error), "%s", strerror(errno));
		return CHECK_IO_FAILED;
	}
	return CHECK_IO_OK;
}

/* The dialogue ends at step (the first stop is the one reported). */
static void check_stop(struct check_backend *r, enum check_step step,
		       char *error)
{
	if (r->stopped != CHECK_STEP_DONE) {
		free(error);
		return;
	}
	r->stopped = step;
	r->error = error;
}

/* "no greeting within 300 s", "the backend closed the connection
 * instead of a reply to MAIL", "reply to EHLO: a malformed reply line". */
static char *io_error(const struct check_conn *c, enum check_io io,
		      const char *what, uint64_t timeout_ms)
{
	char dur[32];

	switch (io) {
	case CHECK_IO_TIMEOUT:
		duration_text(dur, sizeof(dur), timeout_ms);
		return xasprintf("no %s within %s", what, dur);
	case CHECK_IO_CLOSED:
		return xasprintf("the backend closed the connection instead of "
				 "a %s",
				 what);
	case CHECK_IO_FAILED:
	default:
		return xasprintf("%s: %s", what, c->error);
	}
}

/* Sends line CR LF and reads its reply.  False if no whole reply came:
 * the dialogue stops at step. */
static bool check_command(struct check_conn *c, struct check_backend *r,
			  const struct config *cfg, enum check_step step,
			  const char *line, struct check_reply *reply)
{
	uint64_t timeout = cfg->backend.timeout_ms;
	char buf[CHECK_COMMAND_MAX + 3], what[64];
	size_t verb = strcspn(line, " :");
	int len = snprintf(buf, sizeof(buf), "%s\r\n", line);
	enum check_io io;

	/* Our own commands: the XCLIENT line is built to fit. */
	if (len < 0 || (size_t)len >= sizeof(buf))
		fatal("check: command too long");
	r->sent |= 1u << step;
	io = check_send(c, buf, (size_t)len, timeout);
	if (io == CHECK_IO_OK)
		io = check_read_reply(c, timeout, reply);
	if (io == CHECK_IO_OK)
		return true;
	snprintf(what, sizeof(what), "reply to %.*s", (int)verb, line);
	check_stop(r, step, io_error(c, io, what, timeout));
	return false;
}

/* The capabilities of an EHLO reply, as relay.c reads them. */
static void check_read_caps(const struct check_reply *reply,
			    struct ehlo_caps *caps)
{
	memset(caps, 0, sizeof(*caps));
	for (size_t i = 1; i < reply->nlines; i++) {
		size_t len = strlen(reply->lines[i]);

		if (len > 4)
			ehlo_caps_add_line(caps, reply->lines[i] + 4, len - 4);
	}
}

static void check_quit(struct check_conn *c, struct check_backend *r,
		       const struct config *cfg)
{
	check_command(c, r, cfg, CHECK_STEP_QUIT, "QUIT", &r->quit);
}

/* XCLIENT as relay.c sends it, with test values.  Not offered, it is
 * sent anyway with NAME and ADDR alone: Postfix hides XCLIENT from hosts
 * outside smtpd_authorized_xclient_hosts, and its refusal tells that
 * case from a backend without XCLIENT.  False if the connection is no
 * use any more. */
static bool check_xclient(struct check_conn *c, struct check_backend *r,
			  const struct config *cfg)
{
	struct xclient_client client = {
	    .addr = CHECK_XCLIENT_ADDR,
	    .port = CHECK_XCLIENT_PORT,
	    .helo = cfg->backend.helo_name,
	    .login = CHECK_XCLIENT_LOGIN,
	};
	unsigned attrs = XCLIENT_ATTR_NAME | XCLIENT_ATTR_ADDR;
	char line[CHECK_COMMAND_MAX];

	if (r->caps.caps & EHLO_CAP_XCLIENT)
		attrs = r->caps.xclient_attrs;
	if (xclient_build(&client, attrs, line, sizeof(line)) < 0)
		return true;
	r->xclient_line = xstrdup(line);
	if (!check_command(c, r, cfg, CHECK_STEP_XCLIENT, line, &r->xclient))
		return false;
	if (r->xclient.code != 220 && r->xclient.code != 250)
		return true;
	/* The backend now stands in the test client's shoes: EHLO again,
	 * as the relay does. */
	snprintf(line, sizeof(line), "EHLO %s", cfg->backend.helo_name);
	if (!check_command(c, r, cfg, CHECK_STEP_XCLIENT_EHLO, line,
			   &r->xclient_ehlo))
		return false;
	if (r->xclient_ehlo.code == 250)
		check_read_caps(&r->xclient_ehlo, &r->caps_after_xclient);
	return true;
}

/* "NOOP" LF "NOOP" CR LF: two replies if the backend ends a command line
 * at a bare LF, one if not.  False if the connection is gone. */
static bool check_bare_lf(struct check_conn *c, struct check_backend *r,
			  const struct config *cfg)
{
	uint64_t timeout = cfg->backend.timeout_ms;
	enum check_io io;

	r->sent |= 1u << CHECK_STEP_BARE_LF;
	r->bare_lf_replies = 0;
	io = check_send(c, CHECK_BARE_LF_PROBE, strlen(CHECK_BARE_LF_PROBE),
			timeout);
	if (io == CHECK_IO_OK)
		io = check_read_reply(c, timeout, &r->bare_lf[0]);
	if (io == CHECK_IO_OK) {
		r->bare_lf_replies = 1;
		timeout = min_ms(timeout, CHECK_BARE_LF_WAIT_MS);
		io = check_read_reply(c, timeout, &r->bare_lf[1]);
		if (io == CHECK_IO_OK)
			r->bare_lf_replies = 2;
		if (io == CHECK_IO_OK || io == CHECK_IO_TIMEOUT)
			return true;
	}
	if (io == CHECK_IO_CLOSED) {
		r->bare_lf_closed = true;
		return false;
	}
	check_stop(r, CHECK_STEP_BARE_LF,
		   io_error(c, io, "reply to a line with a bare LF", timeout));
	return false;
}

/* Greeting, EHLO (or HELO), MAIL FROM:<> and RSET, XCLIENT, the bare-LF
 * probe, QUIT. */
static void check_dialogue(struct check_conn *c, struct check_backend *r,
			   const struct config *cfg)
{
	uint64_t timeout = cfg->backend.timeout_ms;
	char line[CHECK_COMMAND_MAX];
	enum check_io io;

	io = check_read_reply(c, timeout, &r->greeting);
	if (io != CHECK_IO_OK) {
		check_stop(r, CHECK_STEP_GREETING,
			   io_error(c, io, "greeting", timeout));
		return;
	}
	if (r->greeting.code != 220) {
		check_stop(r, CHECK_STEP_GREETING,
			   xasprintf("the greeting is not 220"));
		check_quit(c, r, cfg);
		return;
	}
	snprintf(line, sizeof(line), "EHLO %s", cfg->backend.helo_name);
	if (!check_command(c, r, cfg, CHECK_STEP_EHLO, line, &r->ehlo))
		return;
	if (r->ehlo.code == 250) {
		r->esmtp = true;
		check_read_caps(&r->ehlo, &r->caps);
	} else if (r->ehlo.code >= 500) {
		/* RFC 5321 §3.2, as relay.c: a non-ESMTP server. */
		snprintf(line, sizeof(line), "HELO %s", cfg->backend.helo_name);
		if (!check_command(c, r, cfg, CHECK_STEP_HELO, line, &r->helo))
			return;
		if (r->helo.code != 250) {
			check_stop(r, CHECK_STEP_HELO,
				   xasprintf("EHLO and HELO refused"));
			check_quit(c, r, cfg);
			return;
		}
	} else {
		check_stop(r, CHECK_STEP_EHLO,
			   xasprintf("EHLO refused with %d (the proxy tries "
				     "HELO only after a 5xx)",
				     r->ehlo.code));
		check_quit(c, r, cfg);
		return;
	}
	if (!check_command(c, r, cfg, CHECK_STEP_MAIL, "MAIL FROM:<>",
			   &r->mail) ||
	    !check_command(c, r, cfg, CHECK_STEP_RSET, "RSET", &r->rset))
		return;
	if (r->esmtp && !check_xclient(c, r, cfg))
		return;
	if (!check_bare_lf(c, r, cfg))
		return;
	check_quit(c, r, cfg);
}

/* The numeric host of a socket address ("127.0.0.1", "fe80::1%eth0"). */
static bool address_host(const struct sockaddr *sa, socklen_t len, char *host,
			 size_t size)
{
	return getnameinfo(sa, len, host, (socklen_t)size, NULL, 0,
			   NI_NUMERICHOST) == 0;
}

static void check_backend_connect(struct check_backend *r,
				  const struct config *cfg)
{
	const struct config_backend *b = r->backend;
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);
	struct sockaddr_un un;
	const struct sockaddr *sa;
	socklen_t len;
	struct check_conn c;
	char err[160], host[NI_MAXHOST];
	int fd;

	if (b->unix_path != NULL) {
		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		if (strlen(b->unix_path) >= sizeof(un.sun_path)) {
			check_stop(r, CHECK_STEP_CONNECT,
				   xasprintf("connect to %s: path too long",
					     b->address));
			return;
		}
		memcpy(un.sun_path, b->unix_path, strlen(b->unix_path));
		sa = (const struct sockaddr *)&un;
		len = sizeof(un);
	} else {
		sa = (const struct sockaddr *)&b->tcp.ss;
		len = b->tcp.len;
	}
	fd = check_connect(sa, len, cfg->backend.connect_timeout_ms, err,
			   sizeof(err));
	if (fd < 0) {
		check_stop(r, CHECK_STEP_CONNECT,
			   xasprintf("connect to %s: %s", b->address, err));
		return;
	}
	if (b->unix_path == NULL &&
	    getsockname(fd, (struct sockaddr *)&local, &local_len) == 0 &&
	    address_host((struct sockaddr *)&local, local_len, host,
			 sizeof(host)))
		r->local_address = xstrdup(host);
	check_conn_init(&c, fd);
	check_dialogue(&c, r, cfg);
	check_conn_finish(&c);
}

/* ---- the backend's port at this host's other addresses ---- */

static void check_exposure_one(struct check_backend *r,
			       const struct config *cfg,
			       const struct sockaddr *sa, socklen_t len,
			       const char *text)
{
	uint64_t wait = min_ms(cfg->backend.timeout_ms, CHECK_EXPOSURE_WAIT_MS);
	struct smtp_reply_line rl;
	struct check_conn c;
	const char *line;
	size_t line_len;
	char err[160], dur[32];
	int fd;

	fd = check_connect(
	    sa, len,
	    min_ms(cfg->backend.connect_timeout_ms, CHECK_EXPOSURE_WAIT_MS),
	    err, sizeof(err));
	if (fd < 0) {
		check_exposure_add(r, text, false, err);
		return;
	}
	check_conn_init(&c, fd);
	switch (check_read_line(&c, now_ms() + wait, &line, &line_len)) {
	case CHECK_IO_OK: {
		char *copy = xmemdup(line, line_len);

		if (smtp_reply_parse(line, line_len, &rl) == 0)
			check_exposure_add(r, text, true, copy);
		else
			check_exposure_add(r, text, false,
					   "connected, but not greeted in "
					   "SMTP");
		free(copy);
		/* Politely, and without waiting for the answer. */
		(void)check_send(&c, "QUIT\r\n", 6, wait);
		break;
	}
	case CHECK_IO_TIMEOUT:
		duration_text(dur, sizeof(dur), wait);
		snprintf(err, sizeof(err),
			 "connected, but no greeting within %s", dur);
		check_exposure_add(r, text, false, err);
		break;
	case CHECK_IO_CLOSED:
		check_exposure_add(r, text, false,
				   "connected, but closed without a greeting");
		break;
	case CHECK_IO_FAILED:
	default:
		check_exposure_add(r, text, false, c.error);
		break;
	}
	check_conn_finish(&c);
}

static bool same_host(const struct sockaddr_storage *a,
		      const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr,
		      sizeof(struct in6_addr)) == 0;
}

static bool already_tried(const struct check_backend *r, const char *text)
{
	for (size_t i = 0; i < r->nexposures; i++)
		if (strcmp(r->exposures[i].address, text) == 0)
			return true;
	return false;
}

/* The backend trusts this host; the proxy must be the only way in: does
 * the same port answer at this host's non-loopback addresses? */
static void check_exposure(struct check_backend *r, const struct config *cfg)
{
	const struct config_backend *b = r->backend;
	struct ifaddrs *ifs, *ifa;
	uint16_t port;

	if (b->unix_path != NULL || getifaddrs(&ifs) < 0)
		return;
	r->exposure_tried = true;
	port = b->tcp.ss.ss_family == AF_INET
		   ? ((const struct sockaddr_in *)&b->tcp.ss)->sin_port
		   : ((const struct sockaddr_in6 *)&b->tcp.ss)->sin6_port;
	for (ifa = ifs; ifa != NULL; ifa = ifa->ifa_next) {
		struct sockaddr_storage ss;
		socklen_t len;
		char host[NI_MAXHOST], text[NI_MAXHOST + 16];
		int family;

		if (ifa->ifa_addr == NULL || !(ifa->ifa_flags & IFF_UP) ||
		    (ifa->ifa_flags & IFF_LOOPBACK))
			continue;
		family = ifa->ifa_addr->sa_family;
		memset(&ss, 0, sizeof(ss));
		if (family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			len = sizeof(*in);
			memcpy(in, ifa->ifa_addr, len);
			in->sin_port = port;
			if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
				continue;
		} else if (family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

			len = sizeof(*in6);
			memcpy(in6, ifa->ifa_addr, len);
			in6->sin6_port = port;
			if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
				continue;
		} else {
			continue;
		}
		if (same_host(&ss, &b->tcp.ss) ||
		    !address_host((struct sockaddr *)&ss, len, host,
				  sizeof(host)))
			continue;
		snprintf(text, sizeof(text),
			 family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
			 (unsigned)ntohs(port));
		if (!already_tried(r, text))
			check_exposure_one(r, cfg, (struct sockaddr *)&ss, len,
					   text);
	}
	freeifaddrs(ifs);
}

int check_backends_run(const struct config *cfg, bool json, FILE *out)
{
	size_t n = cfg->backend.count;
	struct check_backend *rs = xcalloc(n, sizeof(*rs));
	int rc;

	if (!json)
		check_report_text_header(out, cfg);
	for (size_t i = 0; i < n; i++) {
		check_backend_init(&rs[i], &cfg->backend.list[i]);
		check_backend_connect(&rs[i], cfg);
		check_exposure(&rs[i], cfg);
		check_backend_assess(cfg, &rs[i]);
		if (!json) {
			/* Each backend as soon as it is done: a slow one
			 * is seen waiting. */
			check_report_text(out, cfg, &rs[i], i);
			fflush(out);
		}
	}
	if (json)
		check_report_json(out, cfg, rs, n);
	else
		check_report_text_summary(out, cfg, rs, n);
	rc = check_exit_status(rs, n);
	for (size_t i = 0; i < n; i++)
		check_backend_finish(&rs[i]);
	free(rs);
	return rc;
}
