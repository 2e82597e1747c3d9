/*
 * test_store.c - the store operations (proxy/store.h): one table of
 * cases run against the memory store (proxy/memstore.h) and against a
 * real redis-server through proxy/redisstore.h, with the same
 * expectations; then what the Redis store does when Redis dies, stops,
 * is absent, wants a password, and when its owner cancels or closes.
 *
 * Real time, short windows (300 ms, checked after 500 ms): a check only
 * ever relies on a wait being at least so long, never on something
 * being fast.
 *
 * The Redis half starts its own redis-server processes (unix sockets in
 * a mkdtemp directory, nothing saved) and kills them at exit whatever
 * happens (atexit, and a signal handler for SIGTERM, SIGINT, SIGALRM and
 * SIGABRT; PR_SET_PDEATHSIG in the child as the last resort).  Without
 * redis-server the Redis half is skipped, unless CI=true: then it fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/memstore.h"
#include "proxy/redisstore.h"
#include "proxy/store.h"
#include "tests/unit/tap.h"

#define WINDOW	    300	  /* a short window, ms */
#define AFTER	    500	  /* long enough for it to have ended */
#define LONG_TTL    60000 /* a window no test outlives */
#define LONG_LEFT   30000 /* what is left of it, however slow the test */
#define TIMEOUT	    1000  /* [policy] timeout of the stores under test */
#define WAIT_MAX    20000 /* the most any wait here lasts */
#define PREFIX	    "sptest:"
#define PASSWORD    "s3cret pass"
#define REDIS_MAX   4
#define GLOBAL_WAIT 240 /* seconds: SIGALRM ends a hung test */

/* ---- the table ---- */

struct case_op {
	enum store_op_kind kind;
	const char *key;
	size_t key_len; /* 0: strlen(key) */
	uint64_t by, ttl;
	uint64_t value;		 /* expected */
	uint64_t ttl_lo, ttl_hi; /* expected, GET and ADD */
};

struct case_step {
	const char *what;
	unsigned sleep_ms; /* before the request */
	size_t n;
	struct case_op ops[STORE_OPS_MAX];
};

#define GET(k, v, lo, hi)                                                      \
	{                                                                      \
		STORE_GET, k, sizeof(k) - 1, 0, 0, v, lo, hi                   \
	}
#define ADD(k, b, t, v, lo, hi)                                                \
	{                                                                      \
		STORE_ADD, k, sizeof(k) - 1, b, t, v, lo, hi                   \
	}
#define MARK(k, t)                                                             \
	{                                                                      \
		STORE_MARK, k, sizeof(k) - 1, 0, t, 1, 0, 0                    \
	}
#define FLAG(k, t, v)                                                          \
	{                                                                      \
		STORE_FLAG, k, sizeof(k) - 1, 0, t, v, 0, 0                    \
	}
#define ABSENT(k) GET(k, 0, 0, 0)

static const struct case_step table[] = {
    /* Fixed windows.  Steps that need two operations within a window
     * make them one request: nothing runs between them. */
    {"a window opens at the first ADD; a later ADD keeps its expiry",
     0,
     3,
     {ADD("w", 1, WINDOW, 1, 1, WINDOW), ADD("w", 2, LONG_TTL, 3, 1, WINDOW),
      GET("w", 3, 1, WINDOW)}},
    {"after the window the counter is gone", AFTER, 1, {ABSENT("w")}},
    {"the next ADD opens a new window",
     0,
     1,
     {ADD("w", 1, LONG_TTL, 1, LONG_LEFT, LONG_TTL)}},
    {"GET of a key never set: 0 and 0", 0, 1, {ABSENT("never")}},
    /* Marks. */
    {"MARK sets 1", 0, 1, {MARK("m", WINDOW)}},
    {"MARK again pushes the expiry back", 0, 1, {MARK("m", LONG_TTL)}},
    {"the refreshed mark outlives its first expiry",
     AFTER,
     1,
     {GET("m", 1, LONG_LEFT, LONG_TTL)}},
    {"a mark not refreshed expires", 0, 1, {MARK("m2", WINDOW)}},
    {"... and is gone after its window", AFTER, 1, {ABSENT("m2")}},
    {"MARK over a counter makes it 1",
     0,
     2,
     {ADD("m3", 5, LONG_TTL, 5, LONG_LEFT, LONG_TTL), MARK("m3", LONG_TTL)}},
    {"... as GET reads", 0, 1, {GET("m3", 1, LONG_LEFT, LONG_TTL)}},
    /* Flags. */
    {"FLAG is set once per window",
     0,
     2,
     {FLAG("f", WINDOW, 1), FLAG("f", WINDOW, 0)}},
    {"FLAG is set again in the next window",
     AFTER,
     2,
     {FLAG("f", LONG_TTL, 1), FLAG("f", LONG_TTL, 0)}},
    {"a flag reads as 1 with its expiry",
     0,
     1,
     {GET("f", 1, LONG_LEFT, LONG_TTL)}},
    /* Binary keys: spaces and 8-bit bytes, one key each. */
    {"a key with spaces and 8-bit bytes",
     0,
     2,
     {ADD("b k\xff\x80 z", 1, LONG_TTL, 1, LONG_LEFT, LONG_TTL),
      ADD("b k\xff\x80 z", 1, LONG_TTL, 2, LONG_LEFT, LONG_TTL)}},
    {"its prefix and its parts are other keys",
     0,
     3,
     {ABSENT("b k\xff\x80"), ABSENT("b"), ABSENT("z")}},
    {"it reads back whole",
     0,
     1,
     {GET("b k\xff\x80 z", 2, LONG_LEFT, LONG_TTL)}},
    /* Several operations in one request, in order. */
    {"four operations in one request, in order",
     0,
     4,
     {ADD("s", 2, LONG_TTL, 2, LONG_LEFT, LONG_TTL),
      ADD("s", 3, WINDOW, 5, LONG_LEFT, LONG_TTL), FLAG("s2", LONG_TTL, 1),
      GET("s", 5, LONG_LEFT, LONG_TTL)}},
    {"four more, each seeing the one before",
     0,
     4,
     {FLAG("s2", LONG_TTL, 0), GET("s2", 1, LONG_LEFT, LONG_TTL),
      MARK("s3", LONG_TTL), GET("s3", 1, LONG_LEFT, LONG_TTL)}},
};

/* A store under test: exec runs ops and returns 0 or -1; pause waits. */
struct tested_store {
	const char *name;
	int (*exec)(void *ctx, struct store_op *ops, size_t n);
	void (*pause)(void *ctx, unsigned ms);
	void *ctx;
};

static void fill_ops(const struct case_step *st, struct store_op *ops)
{
	memset(ops, 0, sizeof(*ops) * STORE_OPS_MAX);
	for (size_t i = 0; i < st->n; i++) {
		const struct case_op *c = &st->ops[i];

		ops[i].kind = c->kind;
		ops[i].by = c->by;
		ops[i].ttl_ms = c->ttl;
		store_key(&ops[i], "", c->key, c->key_len);
	}
}

static bool check_ops(const struct case_step *st, const struct store_op *ops)
{
	bool ok = true;

	for (size_t i = 0; i < st->n; i++) {
		const struct case_op *c = &st->ops[i];
		bool has_ttl = c->kind == STORE_GET || c->kind == STORE_ADD;

		if (ops[i].value != c->value ||
		    (has_ttl && (ops[i].ttl_ms < c->ttl_lo ||
				 ops[i].ttl_ms > c->ttl_hi))) {
			printf("# op %zu: value %" PRIu64 " ttl %" PRIu64
			       ", expected %" PRIu64 " ttl in [%" PRIu64
			       ", %" PRIu64 "]\n",
			       i, ops[i].value, ops[i].ttl_ms, c->value,
			       c->ttl_lo, c->ttl_hi);
			ok = false;
		}
	}
	return ok;
}

static void run_table(const struct tested_store *ts)
{
	struct store_op ops[STORE_OPS_MAX];

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct case_step *st = &table[i];
		int rc;

		if (st->sleep_ms > 0)
			ts->pause(ts->ctx, st->sleep_ms);
		fill_ops(st, ops);
		rc = ts->exec(ts->ctx, ops, st->n);
		TAP_OK(rc == 0 && check_ops(st, ops), "%s: %s", ts->name,
		       st->what);
	}
}

/* ---- the memory store ---- */

static int mem_exec(void *ctx, struct store_op *ops, size_t n)
{
	memstore_exec(ctx, ops, n, memstore_now_ms());
	return 0;
}

static void mem_pause(void *ctx, unsigned ms)
{
	uv_sleep(ms);
}

static void test_memory_table(void)
{
	struct memstore *ms = memstore_create(42);
	struct tested_store ts = {"memory", mem_exec, mem_pause, ms};

	run_table(&ts);
	memstore_destroy(ms);
}

/* ---- redis-server processes, killed whatever happens ---- */

static char tmpdir[64];
static char sock_path[REDIS_MAX][96];
static char log_path[REDIS_MAX][96];
static char dump_path[96];
static volatile pid_t redis_pid[REDIS_MAX];

static void redis_cleanup(void)
{
	for (int i = 0; i < REDIS_MAX; i++) {
		if (redis_pid[i] > 0) {
			kill(redis_pid[i], SIGKILL);
			waitpid(redis_pid[i], NULL, 0);
			redis_pid[i] = 0;
		}
	}
	if (tmpdir[0] == '\0')
		return;
	for (int i = 0; i < REDIS_MAX; i++) {
		unlink(sock_path[i]);
		unlink(log_path[i]);
	}
	unlink(dump_path);
	rmdir(tmpdir);
}

/* Only async-signal-safe calls: kill, waitpid, unlink, rmdir, raise. */
static void redis_on_signal(int sig)
{
	redis_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static bool redis_installed(void)
{
	const char *path = getenv("PATH");
	char buf[512];

	while (path != NULL && *path != '\0') {
		const char *end = strchr(path, ':');
		size_t len = end ? (size_t)(end - path) : strlen(path);

		if (len > 0 && len < sizeof(buf) - 16) {
			snprintf(buf, sizeof(buf), "%.*s/redis-server",
				 (int)len, path);
			if (access(buf, X_OK) == 0)
				return true;
		}
		path = end ? end + 1 : NULL;
	}
	return false;
}

static int redis_setup(void)
{
	struct sigaction sa;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_store.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		tmpdir[0] = '\0';
		return -1;
	}
	for (int i = 0; i < REDIS_MAX; i++) {
		snprintf(sock_path[i], sizeof(sock_path[i]), "%s/r%d.sock",
			 tmpdir, i);
		snprintf(log_path[i], sizeof(log_path[i]), "%s/r%d.log", tmpdir,
			 i);
	}
	snprintf(dump_path, sizeof(dump_path), "%s/dump.rdb", tmpdir);
	atexit(redis_cleanup);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = redis_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
	alarm(GLOBAL_WAIT);
	return 0;
}

/* Redis i answers (PONG, or NOAUTH when it wants a password). */
static bool redis_answers(int i, int tcp_port)
{
	struct timeval tv = {1, 0};
	redisContext *c =
	    tcp_port > 0 ? redisConnectWithTimeout("127.0.0.1", tcp_port, tv)
			 : redisConnectUnixWithTimeout(sock_path[i], tv);
	redisReply *r;
	bool ok = false;

	if (c == NULL)
		return false;
	if (c->err == 0) {
		r = redisCommand(c, "PING");
		ok = r != NULL && (r->type == REDIS_REPLY_STATUS ||
				   (r->type == REDIS_REPLY_ERROR &&
				    strncmp(r->str, "NOAUTH", 6) == 0));
		freeReplyObject(r);
	}
	redisFree(c);
	return ok;
}

/* Starts redis-server i on its socket (or on 127.0.0.1:tcp_port),
 * password may be NULL; waits (bounded) until it answers. */
static bool redis_start(int i, const char *password, int tcp_port)
{
	char port[16];
	const char *argv[20];
	int argc = 0;
	pid_t pid;

	snprintf(port, sizeof(port), "%d", tcp_port);
	argv[argc++] = "redis-server";
	argv[argc++] = "--port";
	argv[argc++] = port;
	if (tcp_port > 0) {
		argv[argc++] = "--bind";
		argv[argc++] = "127.0.0.1";
	} else {
		argv[argc++] = "--unixsocket";
		argv[argc++] = sock_path[i];
	}
	argv[argc++] = "--save";
	argv[argc++] = "";
	argv[argc++] = "--appendonly";
	argv[argc++] = "no";
	argv[argc++] = "--daemonize";
	argv[argc++] = "no";
	argv[argc++] = "--dir";
	argv[argc++] = tmpdir;
	if (password != NULL) {
		argv[argc++] = "--requirepass";
		argv[argc++] = password;
	}
	argv[argc] = NULL;

	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		int fd = open(log_path[i], O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	redis_pid[i] = pid;
	for (int waited = 0; waited < 10000; waited += 20) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			redis_pid[i] = 0;
			return false;
		}
		if (redis_answers(i, tcp_port))
			return true;
		uv_sleep(20);
	}
	return false;
}

static void redis_kill(int i)
{
	if (redis_pid[i] <= 0)
		return;
	kill(redis_pid[i], SIGKILL);
	waitpid(redis_pid[i], NULL, 0);
	redis_pid[i] = 0;
}

/* A raw connection beside the store, to see what it wrote. */
static redisContext *redis_raw(int i)
{
	redisContext *c = redisConnectUnix(sock_path[i]);

	if (c != NULL && c->err != 0) {
		redisFree(c);
		return NULL;
	}
	return c;
}

static long long raw_integer(redisContext *c, const char *cmd, const char *key,
			     size_t len)
{
	redisReply *r = redisCommand(c, cmd, key, len);
	long long v =
	    r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1000;

	freeReplyObject(r);
	return v;
}

/* ---- the Redis store on a loop ---- */

/* One loop per test, with an unreferenced watchdog: it never keeps the
 * loop alive, and stops a wait that lasts too long. */
struct harness {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool expired;
	int ups, downs;
	int changes; /* ups + downs */
	char why[256];
};

struct call {
	int status;
	int calls;
};

static void harness_on_watchdog(uv_timer_t *t)
{
	struct harness *h = t->data;

	h->expired = true;
	uv_stop(&h->loop);
}

static void harness_init(struct harness *h)
{
	memset(h, 0, sizeof(*h));
	uv_loop_init(&h->loop);
	uv_timer_init(&h->loop, &h->watchdog);
	h->watchdog.data = h;
	uv_unref((uv_handle_t *)&h->watchdog);
}

static void harness_on_state(void *arg, bool up, const char *why)
{
	struct harness *h = arg;

	if (up)
		h->ups++;
	else
		h->downs++;
	h->changes++;
	snprintf(h->why, sizeof(h->why), "%s", why);
}

static struct redisstore_hooks harness_hooks(struct harness *h)
{
	struct redisstore_hooks hk = {harness_on_state, h};

	return hk;
}

/* Runs the loop until *counter >= target, at most ms. */
static bool harness_wait(struct harness *h, const int *counter, int target,
			 unsigned ms)
{
	h->expired = false;
	uv_timer_start(&h->watchdog, harness_on_watchdog, ms, 0);
	while (*counter < target && !h->expired)
		uv_run(&h->loop, UV_RUN_ONCE);
	uv_timer_stop(&h->watchdog);
	return *counter >= target;
}

static void harness_pause(struct harness *h, unsigned ms)
{
	int never = 0;

	harness_wait(h, &never, 1, ms);
}

/* After redisstore_close(): the loop ends by itself, and closes. */
static bool harness_finish(struct harness *h)
{
	int rc;

	h->expired = false;
	uv_timer_start(&h->watchdog, harness_on_watchdog, WAIT_MAX, 0);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&h->watchdog, NULL);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&h->loop);
	return !h->expired && rc == 0;
}

static void call_done(void *arg, int status)
{
	struct call *c = arg;

	c->status = status;
	c->calls++;
}

struct redis_ctx {
	struct harness *h;
	struct redisstore *rs;
};

static int redis_exec(void *ctx, struct store_op *ops, size_t n)
{
	struct redis_ctx *rc = ctx;
	struct call c = {0, 0};

	if (redisstore_exec(rc->rs, ops, n, call_done, &c) == NULL)
		return -1;
	if (!harness_wait(rc->h, &c.calls, 1, WAIT_MAX))
		return -1; /* c is on this stack: the test ends here */
	return c.calls == 1 ? c.status : -1;
}

static void redis_pause(void *ctx, unsigned ms)
{
	struct redis_ctx *rc = ctx;

	harness_pause(rc->h, ms);
}

static struct config_store unix_store(int i, const char *user,
				      const char *password, uint32_t db)
{
	struct config_store cs;

	memset(&cs, 0, sizeof(cs));
	cs.kind = STORE_REDIS;
	cs.unix_path = sock_path[i];
	cs.username = (char *)user;
	cs.password = (char *)password;
	cs.db = db;
	return cs;
}

static void op_set(struct store_op *op, enum store_op_kind kind,
		   const char *key, uint64_t by, uint64_t ttl)
{
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->by = by;
	op->ttl_ms = ttl;
	store_key(op, "", key, strlen(key));
}

/* The table; the key prefix; an error reply; cancel. */
static void test_redis_table(void)
{
	struct harness h;
	struct config_store cs = unix_store(0, NULL, NULL, 0);
	struct redisstore_hooks hk = harness_hooks(&h);
	struct redis_ctx ctx;
	struct tested_store ts = {"redis", redis_exec, redis_pause, &ctx};
	struct store_op op, ops2[2];
	struct call c1 = {0, 0}, c2 = {0, 0};
	redisContext *raw;
	redisReply *r;

	harness_init(&h);
	ctx.h = &h;
	ctx.rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	TAP_OK(!redisstore_up(ctx.rs) &&
		   redisstore_exec(ctx.rs, &op, 1, call_done, &c1) == NULL,
	       "redis: not up before PING is answered: exec refuses");
	TAP_OK(harness_wait(&h, &h.ups, 1, WAIT_MAX) && h.downs == 0 &&
		   redisstore_up(ctx.rs),
	       "redis: up once PING is answered (%s)", h.why);

	run_table(&ts);

	/* The key prefix, seen from a raw connection. */
	raw = redis_raw(0);
	TAP_OK(raw != NULL, "a raw connection to redis");
	if (raw != NULL) {
		op_set(&op, STORE_ADD, "pfx key\xff", 1, LONG_TTL);
		TAP_OK(redis_exec(&ctx, &op, 1) == 0, "ADD of a prefixed key");
		TAP_EQ_INT(raw_integer(raw, "EXISTS %b", PREFIX "pfx key\xff",
				       sizeof(PREFIX "pfx key\xff") - 1),
			   1, "the key in Redis is key_prefix + the key");
		TAP_OK(raw_integer(raw, "PTTL %b", PREFIX "pfx key\xff",
				   sizeof(PREFIX "pfx key\xff") - 1) >
			   LONG_LEFT,
		       "... and has its expiry");
		TAP_EQ_INT(raw_integer(raw, "EXISTS %b", "pfx key\xff",
				       sizeof("pfx key\xff") - 1),
			   0, "... and not the key without the prefix");

		/* An error reply fails that request only. */
		r = redisCommand(raw, "RPUSH %s x", PREFIX "list");
		freeReplyObject(r);
		op_set(&ops2[0], STORE_GET, "w", 0, 0);
		op_set(&ops2[1], STORE_ADD, "list", 1, LONG_TTL);
		TAP_EQ_INT(redis_exec(&ctx, ops2, 2), -1,
			   "WRONGTYPE: the request fails");
		TAP_OK(redisstore_up(ctx.rs) && h.downs == 0,
		       "... and the store stays up");
		op_set(&op, STORE_GET, "list2", 0, 0);
		TAP_EQ_INT(redis_exec(&ctx, &op, 1), 0,
			   "... and takes the next request");
		redisFree(raw);
	}

	/* Cancel: the callback never runs, the ops are not touched; the
	 * commands are sent all the same (fire and forget). */
	op_set(&op, STORE_ADD, "ff", 1, LONG_TTL);
	op.value = 12345;
	redisstore_cancel(redisstore_exec(ctx.rs, &op, 1, call_done, &c1));
	op_set(&ops2[0], STORE_GET, "ff", 0, 0);
	TAP_OK(redisstore_exec(ctx.rs, ops2, 1, call_done, &c2) != NULL &&
		   harness_wait(&h, &c2.calls, 1, WAIT_MAX) && c2.status == 0,
	       "a request after a cancelled one is answered");
	TAP_EQ_INT(c1.calls, 0, "the cancelled request's callback never ran");
	TAP_EQ_INT(op.value, 12345, "... and its ops were not touched");
	TAP_EQ_INT(ops2[0].value, 1, "... but its command was sent");

	redisstore_close(ctx.rs);
	TAP_OK(harness_finish(&h), "redis: closed, the loop ends and closes");
	TAP_EQ_INT(h.downs, 0, "no state hook at close");
}

/* Killed, restarted, stopped: the store goes down and comes back. */
static void test_redis_failures(void)
{
	struct harness h;
	struct config_store cs = unix_store(1, NULL, NULL, 0);
	struct redisstore_hooks hk = harness_hooks(&h);
	struct redis_ctx ctx = {&h, NULL};
	struct store_op op;
	struct call c = {0, 0};

	harness_init(&h);
	if (!redis_start(1, NULL, 0)) {
		TAP_OK(0, "redis 1 starts");
		return;
	}
	ctx.rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	TAP_OK(harness_wait(&h, &h.ups, 1, WAIT_MAX), "up");

	/* Killed with a request in flight. */
	op_set(&op, STORE_ADD, "k", 1, LONG_TTL);
	TAP_OK(redisstore_exec(ctx.rs, &op, 1, call_done, &c) != NULL,
	       "a request is sent");
	redis_kill(1);
	TAP_OK(harness_wait(&h, &c.calls, 1, WAIT_MAX) && c.status == -1,
	       "redis killed: the request fails");
	TAP_OK(harness_wait(&h, &h.downs, 1, WAIT_MAX) &&
		   !redisstore_up(ctx.rs),
	       "... and the state hook says down (%s)", h.why);
	TAP_OK(redisstore_exec(ctx.rs, &op, 1, call_done, &c) == NULL,
	       "down: exec refuses at once");
	harness_pause(&h, AFTER);
	TAP_EQ_INT(h.downs, 1, "down is told once while it stays down");

	/* Restarted. */
	TAP_OK(redis_start(1, NULL, 0), "redis restarts");
	TAP_OK(harness_wait(&h, &h.ups, 2, WAIT_MAX), "the store reconnects");
	op_set(&op, STORE_ADD, "k", 1, LONG_TTL);
	TAP_OK(redis_exec(&ctx, &op, 1) == 0 && op.value == 1,
	       "requests work again");

	/* Stopped: nothing answers, the deadline fails the request. */
	kill(redis_pid[1], SIGSTOP);
	c.calls = 0;
	op_set(&op, STORE_GET, "k", 0, 0);
	TAP_OK(redisstore_exec(ctx.rs, &op, 1, call_done, &c) != NULL,
	       "a request to a stopped redis is sent");
	TAP_OK(harness_wait(&h, &c.calls, 1, WAIT_MAX) && c.status == -1,
	       "redis stopped: the request fails at its deadline");
	TAP_OK(h.downs == 2 && !redisstore_up(ctx.rs),
	       "... and the store is down (%s)", h.why);
	TAP_OK(strstr(h.why, "no answer") != NULL, "... for want of answer");
	harness_pause(&h, 2 * TIMEOUT + AFTER);
	TAP_OK(h.downs == 2 && h.ups == 2,
	       "reconnecting to the stopped redis tells nothing more");
	kill(redis_pid[1], SIGCONT);
	TAP_OK(harness_wait(&h, &h.ups, 3, WAIT_MAX), "continued: up again");
	op_set(&op, STORE_GET, "k", 0, 0);
	TAP_OK(redis_exec(&ctx, &op, 1) == 0 && op.value == 1,
	       "... and answering");

	/* Closed with a request in flight: it ends through its callback. */
	c.calls = 0;
	op_set(&op, STORE_ADD, "k", 1, LONG_TTL);
	TAP_OK(redisstore_exec(ctx.rs, &op, 1, call_done, &c) != NULL,
	       "a request in flight at close");
	redisstore_close(ctx.rs);
	TAP_OK(redisstore_exec(ctx.rs, &op, 1, call_done, &c) == NULL,
	       "closed: exec refuses");
	TAP_OK(harness_finish(&h), "closed: the loop ends and closes");
	TAP_EQ_INT(c.calls, 1, "the request in flight ended once");
	TAP_EQ_INT(c.status, 0, "... answered");
	TAP_OK(h.downs == 2 && h.ups == 3, "no state hook after close");
	redis_kill(1);
}

/* Stopped for good, with a request in flight at close: the deadline
 * ends it, then the loop. */
static void test_redis_close_stopped(void)
{
	struct harness h;
	struct config_store cs = unix_store(1, NULL, NULL, 0);
	struct redisstore_hooks hk = harness_hooks(&h);
	struct redisstore *rs;
	struct store_op op;
	struct call c = {0, 0};

	harness_init(&h);
	if (!redis_start(1, NULL, 0)) {
		TAP_OK(0, "redis 1 starts");
		return;
	}
	rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	TAP_OK(harness_wait(&h, &h.ups, 1, WAIT_MAX), "up");
	kill(redis_pid[1], SIGSTOP);
	op_set(&op, STORE_GET, "k", 0, 0);
	TAP_OK(redisstore_exec(rs, &op, 1, call_done, &c) != NULL,
	       "a request to a stopped redis");
	redisstore_close(rs);
	TAP_OK(harness_finish(&h), "closed: the loop ends at the deadline");
	TAP_OK(c.calls == 1 && c.status == -1, "the request failed once");
	TAP_EQ_INT(h.downs, 0, "no state hook after close");
	redis_kill(1);
}

/* Absent at start: down (told once), then up when it comes. */
static void test_redis_absent(void)
{
	struct harness h;
	struct config_store cs = unix_store(2, NULL, NULL, 0);
	struct redisstore_hooks hk = harness_hooks(&h);
	struct redisstore *rs;
	struct store_op op;
	struct call c = {0, 0};

	harness_init(&h);
	rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	TAP_OK(harness_wait(&h, &h.downs, 1, WAIT_MAX),
	       "absent at start: the first failure is a change to down (%s)",
	       h.why);
	op_set(&op, STORE_GET, "k", 0, 0);
	TAP_OK(redisstore_exec(rs, &op, 1, call_done, &c) == NULL,
	       "... and exec refuses");
	harness_pause(&h, AFTER);
	TAP_OK(h.downs == 1 && h.ups == 0, "... told once while retrying");
	TAP_OK(redis_start(2, NULL, 0), "redis 2 starts");
	TAP_OK(harness_wait(&h, &h.ups, 1, WAIT_MAX),
	       "... and the store is up");
	TAP_OK(redis_exec(&(struct redis_ctx){&h, rs}, &op, 1) == 0,
	       "... and answers");
	redisstore_close(rs);
	TAP_OK(harness_finish(&h), "closed: the loop ends and closes");
	redis_kill(2);

	/* Closed while down. */
	harness_init(&h);
	rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	TAP_OK(harness_wait(&h, &h.downs, 1, WAIT_MAX), "down again");
	redisstore_close(rs);
	TAP_OK(harness_finish(&h), "closed while down: the loop closes");

	/* Closed at once, before its first connect. */
	harness_init(&h);
	rs = redisstore_create(&h.loop, &cs, PREFIX, TIMEOUT, &hk);
	redisstore_close(rs);
	TAP_OK(harness_finish(&h) && h.downs == 0,
	       "closed at once: nothing told, the loop closes");
}

/* A store whose state is awaited: up is true, or down with a why. */
static struct redisstore *open_store(struct harness *h,
				     const struct config_store *cs, bool *up)
{
	struct redisstore_hooks hk = harness_hooks(h);
	struct redisstore *rs;

	harness_init(h);
	rs = redisstore_create(&h->loop, cs, PREFIX, TIMEOUT, &hk);
	harness_wait(h, &h->changes, 1, WAIT_MAX);
	*up = h->ups == 1;
	return rs;
}

static bool close_store(struct harness *h, struct redisstore *rs)
{
	redisstore_close(rs);
	return harness_finish(h);
}

/* --requirepass: AUTH with and without a user name, a wrong password,
 * none; and SELECT. */
static void test_redis_auth(void)
{
	struct harness h;
	struct config_store cs;
	struct redisstore *rs;
	struct store_op op;
	struct call c = {0, 0};
	redisContext *raw;
	redisReply *r;
	bool up;

	if (!redis_start(3, PASSWORD, 0)) {
		TAP_OK(0, "redis 3 starts with a password");
		return;
	}
	cs = unix_store(3, NULL, PASSWORD, 0);
	rs = open_store(&h, &cs, &up);
	op_set(&op, STORE_ADD, "a", 1, LONG_TTL);
	TAP_OK(up && redis_exec(&(struct redis_ctx){&h, rs}, &op, 1) == 0,
	       "the right password: up, and answering");
	TAP_OK(close_store(&h, rs), "... closes");

	cs = unix_store(3, "default", PASSWORD, 0);
	rs = open_store(&h, &cs, &up);
	TAP_OK(up, "user and password: up");
	TAP_OK(close_store(&h, rs), "... closes");

	cs = unix_store(3, NULL, "wrong-secret", 0);
	rs = open_store(&h, &cs, &up);
	TAP_OK(!up && h.downs == 1, "a wrong password: down");
	TAP_OK(strstr(h.why, "AUTH refused") != NULL, "... AUTH refused (%s)",
	       h.why);
	TAP_OK(strstr(h.why, "wrong-secret") == NULL,
	       "... and the why does not hold the password");
	TAP_OK(redisstore_exec(rs, &op, 1, call_done, &c) == NULL,
	       "... exec refuses");
	harness_pause(&h, AFTER);
	TAP_EQ_INT(h.downs, 1, "... told once while retrying");
	TAP_OK(close_store(&h, rs), "... closes");

	cs = unix_store(3, NULL, NULL, 0);
	rs = open_store(&h, &cs, &up);
	TAP_OK(!up && strstr(h.why, "NOAUTH") != NULL,
	       "no password for a redis that wants one: down (%s)", h.why);
	TAP_OK(close_store(&h, rs), "... closes");

	/* SELECT: the key lands in that database. */
	cs = unix_store(3, NULL, PASSWORD, 5);
	rs = open_store(&h, &cs, &up);
	op_set(&op, STORE_MARK, "in5", 0, LONG_TTL);
	TAP_OK(up && redis_exec(&(struct redis_ctx){&h, rs}, &op, 1) == 0,
	       "db 5: up, and answering");
	TAP_OK(close_store(&h, rs), "... closes");
	raw = redis_raw(3);
	if (raw != NULL) {
		r = redisCommand(raw, "AUTH %s", PASSWORD);
		freeReplyObject(r);
		r = redisCommand(raw, "SELECT 5");
		freeReplyObject(r);
		TAP_EQ_INT(raw_integer(raw, "EXISTS %b", PREFIX "in5",
				       sizeof(PREFIX "in5") - 1),
			   1, "... the key is in db 5");
		redisFree(raw);
	} else {
		TAP_OK(0, "a raw connection to redis 3");
	}
	cs = unix_store(3, NULL, PASSWORD, 999);
	rs = open_store(&h, &cs, &up);
	TAP_OK(!up && strstr(h.why, "SELECT refused") != NULL,
	       "a database that does not exist: down (%s)", h.why);
	TAP_OK(close_store(&h, rs), "... closes");
	redis_kill(3);
}

/* TCP, numeric address: a refused connect is seen when the kernel says
 * so, not at the deadline (the libuv adapter's EPOLLERR fix); then up
 * once redis listens. */
static void test_redis_tcp(void)
{
	struct harness h;
	struct config_store cs;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct redisstore_hooks hk = harness_hooks(&h);
	struct redisstore *rs;
	struct store_op op;
	int fd, port;

	/* A free port: bound, read and closed (it stays free meanwhile on
	 * a test machine). */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		TAP_OK(0, "a free TCP port");
		if (fd >= 0)
			close(fd);
		return;
	}
	port = ntohs(sin.sin_port);
	close(fd);

	memset(&cs, 0, sizeof(cs));
	cs.kind = STORE_REDIS;
	memcpy(&cs.tcp.ss, &sin, sizeof(sin));
	cs.tcp.len = sizeof(sin);
	harness_init(&h);
	/* A deadline far longer than the wait: down within the wait is
	 * the kernel's refusal, not the deadline. */
	rs = redisstore_create(&h.loop, &cs, PREFIX, 10 * WAIT_MAX, &hk);
	TAP_OK(harness_wait(&h, &h.downs, 1, WAIT_MAX) &&
		   strstr(h.why, "refused") != NULL,
	       "TCP refused: down before the deadline (%s)", h.why);
	TAP_OK(redis_start(0, NULL, port), "redis listens on 127.0.0.1:%d",
	       port);
	TAP_OK(harness_wait(&h, &h.ups, 1, WAIT_MAX),
	       "... and the store is up");
	op_set(&op, STORE_FLAG, "tcp", 0, LONG_TTL);
	TAP_OK(redis_exec(&(struct redis_ctx){&h, rs}, &op, 1) == 0 &&
		   op.value == 1,
	       "... and answers");
	TAP_OK(close_store(&h, rs), "... closes");
	redis_kill(0);
}

static void test_redis(void)
{
	const char *ci = getenv("CI");

	if (!redis_installed()) {
		if (ci != NULL && strcmp(ci, "true") == 0) {
			TAP_OK(0, "redis-server is installed (CI=true)");
		} else {
			printf("# redis-server not found: the Redis half is "
			       "skipped\n");
			printf("ok %d # SKIP redis-server not installed\n",
			       ++tap_count);
		}
		return;
	}
	if (redis_setup() < 0) {
		TAP_OK(0, "a temporary directory");
		return;
	}
	if (!redis_start(0, NULL, 0)) {
		TAP_OK(0, "redis-server starts");
		return;
	}
	TAP_OK(1, "redis-server starts");
	test_redis_table();
	redis_kill(0);
	test_redis_failures();
	test_redis_close_stopped();
	test_redis_absent();
	test_redis_auth();
	test_redis_tcp();
}

int main(void)
{
	/* A write to a killed redis must be an error, not the end. */
	signal(SIGPIPE, SIG_IGN);
	test_memory_table();
	test_redis();
	return tap_done();
}
