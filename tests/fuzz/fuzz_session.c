/*
 * fuzz_session.c - libFuzzer harness for a whole client session before
 * AUTH (proxy/session.h), as Dovecot's fuzz-smtp-server.c drives a real
 * server connection on a real ioloop.
 *
 * Per input: a fresh uv loop and proxy/shared.h state, a TCP connection
 * over loopback (so the session sees an AF_INET peer and counts it in the
 * shared address table, as in production), session_accept() on the
 * accepted end, and on the other end a libuv client on the same loop that
 * writes the input, half-closes, reads every reply and, at the session's
 * EOF, closes with an RST (SO_LINGER 0: no TIME_WAIT left behind, so
 * millions of runs do not exhaust the loopback ports).
 *
 * So that lines and SASL responses also arrive cut across reads, the
 * input is written in chunks, one per loop turn (a uv_check after the
 * session's reads): the chunk size comes from a hash of the input (a
 * quarter of inputs in one write, the others in chunks of 1 to 32
 * bytes, at most CHUNKS_MAX of them), so that the input stays the plain
 * byte stream a client sends, every seed a readable dialogue, and a
 * reproducer is cut the same way each time (the kernel may still join
 * two chunks into one read).
 *
 * The loop runs until nothing is left on it; then uv_loop_close() must
 * succeed (a leaked handle is a bug) and the session must have been
 * removed.
 *
 * The configuration ([listener fuzz], mode plain, plaintext AUTH allowed,
 * short timeouts, no greeting delay) is written to a temporary file once
 * and read with config_read().  There is no TLS context (STARTTLS is not
 * offered) and no auth client (complete credentials get 454
 * helper_unavailable): what is fuzzed is the command path, the SASL
 * exchange up to the helper, the limits and the close.
 *
 * Logging is at debug level, so that every log line is formatted (peer
 * text goes through sanitize() there), into /dev/null; set
 * FUZZ_SESSION_LOG=1 to see it on stderr.
 *
 * Besides memory errors and leaks, the harness aborts when what the
 * client receives is not SMTP replies: CR LF terminated lines of a
 * three-digit code and ' ' or '-', the first one a 220, the lines of a
 * multi-line reply sharing their code, no control byte but in CR LF; or
 * when the session is still there GUARD_MS after the client hung up.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/log.h"
#include "config/config.h"
#include "proxy/datascan.h"
#include "proxy/session.h"
#include "proxy/shared.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(fuzz_stderr, "fuzz_session: %s:%d: %s\n",      \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/* Longer than every timeout of the configuration below and the session's
 * linger (SESSION_IO_LINGER_MS): a session still open then is stuck. */
#define GUARD_MS 10000
/* What the client keeps of the replies, for the checks. */
#define REPLIES_MAX  (1024 * 1024)
#define READ_BUFSIZE 65536
#define DATA_CHUNK   16384
/* Loop turns spent feeding one input, at most. */
#define CHUNKS_MAX 64

static const char fuzz_config_text[] = "[server]\n"
				       "hostname = fuzz.example.org\n"
				       "log_level = debug\n"
				       "[listener fuzz]\n"
				       "address = 127.0.0.1:2525\n"
				       "mode = plain\n"
				       "require_tls = no\n"
				       "allow_plaintext_auth = yes\n"
				       "[auth]\n"
				       "mechanisms = PLAIN LOGIN\n"
				       "max_failures = 3\n"
				       "failure_delay = 0s\n"
				       "timeout = 100ms\n"
				       "[backend]\n"
				       "address = 127.0.0.1:25\n"
				       "connect_timeout = 100ms\n"
				       "timeout = 100ms\n"
				       "[limits]\n"
				       "max_line_length = 512\n"
				       "max_errors = 10\n"
				       "max_junk_commands = 10\n"
				       "idle_timeout = 200ms\n"
				       "handshake_timeout = 100ms\n"
				       "greeting_delay = 0s\n";

static FILE *fuzz_stderr;
static struct config *fuzz_cfg;
static int fuzz_listen_fd = -1;
static struct sockaddr_in fuzz_listen_addr;
static char fuzz_read_buf[READ_BUFSIZE];
static char fuzz_data_buf[DATASCAN_OUT_MAX(DATA_CHUNK)];

struct fuzz_run {
	uv_loop_t loop;
	struct shared shared;
	struct session_env env;
	unsigned added, removed;

	uv_tcp_t client;
	uv_shutdown_t shutdown_req;
	const char *input;
	size_t input_len, input_off, chunk;
	uv_check_t feeder;
	bool feeder_closed;
	bool client_closed;
	char client_buf[READ_BUFSIZE];
	char *replies;
	size_t replies_len;

	uv_timer_t guard;
};

static void fuzz_guard_close_if_done(struct fuzz_run *run)
{
	if (run->client_closed && run->feeder_closed &&
	    run->removed == run->added &&
	    !uv_is_closing((uv_handle_t *)&run->guard))
		uv_close((uv_handle_t *)&run->guard, NULL);
}

static void fuzz_session_added(void *owner, struct session *s)
{
	struct fuzz_run *run = owner;

	run->added++;
}

static void fuzz_session_removed(void *owner, struct session *s)
{
	struct fuzz_run *run = owner;

	run->removed++;
	fuzz_guard_close_if_done(run);
}

static void fuzz_on_guard(uv_timer_t *t)
{
	FUZZ_CHECK(!"the session did not end after the client hung up");
}

static void fuzz_feeder_on_close(uv_handle_t *h)
{
	struct fuzz_run *run = h->data;

	run->feeder_closed = true;
	fuzz_guard_close_if_done(run);
}

static void fuzz_feeder_stop(struct fuzz_run *run)
{
	if (!uv_is_closing((uv_handle_t *)&run->feeder))
		uv_close((uv_handle_t *)&run->feeder, fuzz_feeder_on_close);
}

static void fuzz_client_on_close(uv_handle_t *h)
{
	struct fuzz_run *run = h->data;

	run->client_closed = true;
	fuzz_guard_close_if_done(run);
}

/* Hangs up with an RST: no TIME_WAIT on either side. */
static void fuzz_client_close(struct fuzz_run *run)
{
	struct linger lg = {1, 0};
	uv_os_fd_t fd;

	fuzz_feeder_stop(run);
	if (uv_is_closing((uv_handle_t *)&run->client))
		return;
	if (uv_fileno((uv_handle_t *)&run->client, &fd) == 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	uv_close((uv_handle_t *)&run->client, fuzz_client_on_close);
}

static void fuzz_client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct fuzz_run *run = h->data;

	*buf = uv_buf_init(run->client_buf, sizeof(run->client_buf));
}

static void fuzz_client_on_read(uv_stream_t *stream, ssize_t nread,
				const uv_buf_t *buf)
{
	struct fuzz_run *run = stream->data;
	size_t n;

	if (nread < 0) {
		/* The session's EOF (or its RST): the dialogue is over. */
		fuzz_client_close(run);
		return;
	}
	n = (size_t)nread;
	if (n > REPLIES_MAX - run->replies_len)
		n = REPLIES_MAX - run->replies_len;
	memcpy(run->replies + run->replies_len, buf->base, n);
	run->replies_len += n;
}

/* The session may close before it has read all of the input: a failed
 * write or shutdown is part of the game. */
static void fuzz_client_on_write(uv_write_t *req, int status)
{
	free(req);
}

static void fuzz_client_on_shutdown(uv_shutdown_t *req, int status)
{
}

/* The next chunk, or the half-close after the last one. */
static void fuzz_feed(struct fuzz_run *run)
{
	size_t n = run->input_len - run->input_off;

	if (n == 0) {
		FUZZ_CHECK(uv_shutdown(&run->shutdown_req,
				       (uv_stream_t *)&run->client,
				       fuzz_client_on_shutdown) == 0);
		fuzz_feeder_stop(run);
		return;
	}
	if (n > run->chunk)
		n = run->chunk;
	{
		uv_write_t *req = malloc(sizeof(*req));
		uv_buf_t buf = uv_buf_init((char *)run->input + run->input_off,
					   (unsigned)n);

		FUZZ_CHECK(req != NULL);
		FUZZ_CHECK(uv_write(req, (uv_stream_t *)&run->client, &buf, 1,
				    fuzz_client_on_write) == 0);
	}
	run->input_off += n;
}

static void fuzz_feeder_on_check(uv_check_t *c)
{
	fuzz_feed(c->data);
}

/* FNV-1a: the chunk size is a function of the input alone. */
static size_t fuzz_chunk_size(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u;
	size_t chunk, least = (size + CHUNKS_MAX - 1) / CHUNKS_MAX;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	if ((h & 3) == 0)
		return size > 0 ? size : 1;
	chunk = 1 + (h >> 2) % 32;
	return chunk > least ? chunk : least;
}

static bool fuzz_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* What the client read is a sequence of SMTP replies (RFC 5321 §4.2). */
static void fuzz_check_replies(const char *p, size_t len)
{
	size_t off = 0;
	bool first = true, continued = false;
	char code[3];

	/* A kept prefix may end inside a line; whole output never does. */
	if (len == REPLIES_MAX) {
		const char *last = memrchr(p, '\n', len);

		len = last != NULL ? (size_t)(last - p) + 1 : 0;
	}
	while (off < len) {
		const char *line = p + off;
		const char *lf = memchr(line, '\n', len - off);
		size_t line_len;

		FUZZ_CHECK(lf != NULL);
		line_len = (size_t)(lf - line) + 1;
		FUZZ_CHECK(line_len >= 6 && line[line_len - 2] == '\r');
		FUZZ_CHECK(fuzz_is_digit(line[0]) && fuzz_is_digit(line[1]) &&
			   fuzz_is_digit(line[2]));
		FUZZ_CHECK(line[3] == ' ' || line[3] == '-');
		FUZZ_CHECK(line[0] >= '2' && line[0] <= '5');
		if (first)
			FUZZ_CHECK(memcmp(line, "220", 3) == 0 ||
				   memcmp(line, "421", 3) == 0);
		if (continued)
			FUZZ_CHECK(memcmp(line, code, 3) == 0);
		for (size_t i = 4; i < line_len - 2; i++)
			FUZZ_CHECK((unsigned char)line[i] >= 0x20 &&
				   line[i] != 0x7f);
		memcpy(code, line, 3);
		continued = line[3] == '-';
		first = false;
		off += line_len;
	}
	FUZZ_CHECK(!continued);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz_session.conf.XXXXXX";
	struct config_errors errors = {NULL, 0};
	socklen_t len = sizeof(fuzz_listen_addr);
	int fd, r;

	fuzz_stderr = stderr;
	signal(SIGPIPE, SIG_IGN);

	fd = mkstemp(path);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, fuzz_config_text, sizeof(fuzz_config_text) - 1) ==
		   (ssize_t)(sizeof(fuzz_config_text) - 1));
	close(fd);
	r = config_read(path, &fuzz_cfg, &errors);
	if (r != 0)
		config_errors_print(&errors, stderr);
	config_errors_finish(&errors);
	unlink(path);
	FUZZ_CHECK(r == 0);
	log_set_level(fuzz_cfg->server.log_level);
	if (getenv("FUZZ_SESSION_LOG") == NULL) {
		/* log.c writes to the stdio stream stderr; libFuzzer and the
		 * sanitizers keep writing to fd 2. */
		FILE *devnull = fopen("/dev/null", "w");

		FUZZ_CHECK(devnull != NULL);
		stderr = devnull;
	}

	memset(&fuzz_listen_addr, 0, sizeof(fuzz_listen_addr));
	fuzz_listen_addr.sin_family = AF_INET;
	fuzz_listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fuzz_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fuzz_listen_fd >= 0);
	FUZZ_CHECK(bind(fuzz_listen_fd, (struct sockaddr *)&fuzz_listen_addr,
			sizeof(fuzz_listen_addr)) == 0);
	FUZZ_CHECK(listen(fuzz_listen_fd, 16) == 0);
	FUZZ_CHECK(getsockname(fuzz_listen_fd,
			       (struct sockaddr *)&fuzz_listen_addr,
			       &len) == 0);
	return 0;
}

/* A connected pair over loopback: *client_r connects, *server_r is what
 * the listener accepted. */
static void fuzz_connect(int *client_r, int *server_r)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int s;

	FUZZ_CHECK(c >= 0);
	FUZZ_CHECK(connect(c, (struct sockaddr *)&fuzz_listen_addr,
			   sizeof(fuzz_listen_addr)) == 0);
	s = accept4(fuzz_listen_fd, NULL, NULL, SOCK_CLOEXEC);
	FUZZ_CHECK(s >= 0);
	*client_r = c;
	*server_r = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run *run = calloc(1, sizeof(*run));
	char *input = malloc(size > 0 ? size : 1);
	int client_fd, server_fd;

	FUZZ_CHECK(run != NULL && input != NULL);
	run->replies = malloc(REPLIES_MAX);
	FUZZ_CHECK(run->replies != NULL);
	if (size > 0)
		memcpy(input, data, size);

	FUZZ_CHECK(uv_loop_init(&run->loop) == 0);
	shared_init(&run->shared, 1, 2);
	run->env = (struct session_env){
	    .loop = &run->loop,
	    .cfg = fuzz_cfg,
	    .tls = NULL,
	    .sendermap = NULL,
	    .auth = NULL,
	    .shared = &run->shared,
	    .worker_index = 0,
	    .stopping = false,
	    .read_buf = fuzz_read_buf,
	    .read_buf_size = sizeof(fuzz_read_buf),
	    .data_buf = fuzz_data_buf,
	    .data_chunk = DATA_CHUNK,
	    .added = fuzz_session_added,
	    .removed = fuzz_session_removed,
	    .owner = run,
	};
	uv_timer_init(&run->loop, &run->guard);
	run->guard.data = run;
	uv_timer_start(&run->guard, fuzz_on_guard, GUARD_MS, 0);

	fuzz_connect(&client_fd, &server_fd);
	/* The greeting is queued before any input exists: no early talker. */
	session_accept(&run->env, 0, server_fd);

	FUZZ_CHECK(uv_tcp_init(&run->loop, &run->client) == 0);
	run->client.data = run;
	FUZZ_CHECK(uv_tcp_open(&run->client, client_fd) == 0);
	/* Each chunk leaves at once: Nagle would hold the small ones for the
	 * peer's delayed ACK (40 ms a run) and join them. */
	uv_tcp_nodelay(&run->client, 1);
	run->input = input;
	run->input_len = size;
	run->chunk = fuzz_chunk_size(data, size);
	FUZZ_CHECK(uv_check_init(&run->loop, &run->feeder) == 0);
	run->feeder.data = run;
	FUZZ_CHECK(uv_check_start(&run->feeder, fuzz_feeder_on_check) == 0);
	fuzz_feed(run);
	FUZZ_CHECK(uv_read_start((uv_stream_t *)&run->client, fuzz_client_alloc,
				 fuzz_client_on_read) == 0);

	uv_run(&run->loop, UV_RUN_DEFAULT);

	FUZZ_CHECK(run->added == 1 && run->removed == 1);
	FUZZ_CHECK(run->client_closed && run->feeder_closed);
	FUZZ_CHECK(uv_loop_close(&run->loop) == 0);
	FUZZ_CHECK(atomic_load(&run->shared.sessions) == 0);
	shared_finish(&run->shared);
	fuzz_check_replies(run->replies, run->replies_len);

	free(run->replies);
	free(run);
	free(input);
	return 0;
}
