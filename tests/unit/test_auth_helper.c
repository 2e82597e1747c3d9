/*
 * test_auth_helper.c - auth_helper_run() end to end, with real PAM
 * transactions through pam_wrapper and pam_matrix (cwrap.org).
 *
 * As in the real program, the test process forks: the parent runs
 * auth_helper_run(cfg, fds, nfds, child_pid) and the child plays the
 * network process, sending requests over the socketpairs (one per event
 * loop of the real network process) and checking what comes back.  The
 * child's TAP lines continue the parent's numbering (the parent prints
 * nothing while the helper runs) and it hands its counters back through a
 * pipe before it exits.  The parent then checks the status
 * auth_helper_run() returned and that no child is left unreaped.
 *
 * pam_wrapper must be preloaded before the process starts, so the test
 * writes a PAM service and a pam_matrix password file into a temporary
 * directory and re-executes itself with the environment pam_wrapper reads.
 *
 * The service "sp-test" runs, before pam_matrix, pam_exec with a script
 * that sleeps for the users "slow" (3 s) and "nap0".."nap3" (2 s): the
 * slow stack that worker-death, timeout and concurrency tests need.
 *
 * The service "sp-account" is for account checks (AUTH_MSG_ACCOUNT): its
 * auth stack is pam_deny, so a login that ran it could not succeed; its
 * account stack refuses the user "locked" (pam_succeed_if), runs the
 * test module pam_sp_prompt.so (tests/unit/pam_prompt.c, its path the
 * test's argument) that prompts for the users "prompt_off" and
 * "prompt_on", then pam_matrix.  pam_matrix's account phase answers
 * PAM_PERM_DENIED for a user without a passdb line, or whose line names
 * another service.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/helper.h"
#include "auth/proto.h"
#include "config/config.h"
#include "tests/unit/tap.h"

#define PAM_WRAPPER_LIB	  "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
#define PAM_MATRIX_MODULE "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
#define PAM_EXEC_MODULE	  "/usr/lib/x86_64-linux-gnu/security/pam_exec.so"
#define PAM_DENY_MODULE	  "/usr/lib/x86_64-linux-gnu/security/pam_deny.so"
#define TEST_SERVICE	  "sp-test"
#define ACCOUNT_SERVICE	  "sp-account"
#define TEST_DIR_ENV	  "SP_AUTH_TEST_DIR"
#define WORKER_TITLE	  "sp-auth-worker"
#define PAM_SUCCEED_IF_MODULE                                                  \
	"/usr/lib/x86_64-linux-gnu/security/pam_succeed_if.so"

/* ---- environment ------------------------------------------------------ */

static int write_file(const char *dir, const char *name, const char *text,
		      mode_t mode)
{
	char path[512];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	ok = fputs(text, f) >= 0;
	ok = fclose(f) == 0 && ok;
	return ok && chmod(path, mode) == 0 ? 0 : -1;
}

static void remove_test_dir(const char *dir)
{
	static const char *const names[] = {TEST_SERVICE, ACCOUNT_SERVICE,
					    "passdb", "slow.sh"};
	char path[512];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

static void setenv_prepend(const char *name, const char *value, char sep)
{
	const char *old = getenv(name);
	char buf[4096];

	if (old == NULL || old[0] == '\0')
		snprintf(buf, sizeof(buf), "%s", value);
	else
		snprintf(buf, sizeof(buf), "%s%c%s", value, sep, old);
	setenv(name, buf, 1);
}

static void setenv_append(const char *name, const char *value, char sep)
{
	const char *old = getenv(name);
	char buf[4096];

	if (old == NULL || old[0] == '\0')
		snprintf(buf, sizeof(buf), "%s", value);
	else
		snprintf(buf, sizeof(buf), "%s%c%s", old, sep, value);
	setenv(name, buf, 1);
}

/*
 * pam_wrapper sets itself up again in every forked process, at its first
 * pam_start(): a directory /tmp/pam.X (X one of 62 characters, picked from
 * the pid), removed by a destructor at exit.  A PAM worker leaves with
 * _exit() or is killed, so its directory stays behind until another
 * pam_wrapper process finds it stale (its pid file names a dead process)
 * and removes it.  Do that here too, once the helper has returned, so the
 * test leaves /tmp as it found it.  Races between processes for those 62
 * names are also why this test should not run in parallel with other
 * pam_wrapper users (meson: is_parallel: false).
 */
static int remove_entry(const char *path, const struct stat *sb, int type,
			struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_stale_pam_wrapper_dirs(void)
{
	static const char letters[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char dir[] = "/tmp/pam.X", path[64];
	const char *c;

	for (c = letters; *c != '\0'; c++) {
		char buf[16] = {0};
		long pid = 0;
		FILE *f;

		dir[sizeof(dir) - 2] = *c;
		snprintf(path, sizeof(path), "%s/pid", dir);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL)
			pid = strtol(buf, NULL, 10);
		fclose(f);
		if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	}
}

/* Writes the PAM configuration and re-executes the test under
 * pam_wrapper.  Returns only on failure. */
static int reexec_with_pam_wrapper(const char *prompt_module, char **argv)
{
	char dir[] = "/tmp/sp-auth-test.XXXXXX";
	char text[2048], prompt_line[512] = "";

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(text, sizeof(text),
		 "alice:secret:%s\nbob:hunter2:%s\nslow:slowpw:%s\n"
		 "nap0:nappw:%s\nnap1:nappw:%s\nnap2:nappw:%s\n"
		 "nap3:nappw:%s\n"
		 "carol:carolpw:%s\nlocked:lockedpw:%s\n"
		 "prompt_off:x:%s\nprompt_on:x:%s\n",
		 TEST_SERVICE, TEST_SERVICE, TEST_SERVICE, TEST_SERVICE,
		 TEST_SERVICE, TEST_SERVICE, TEST_SERVICE, ACCOUNT_SERVICE,
		 ACCOUNT_SERVICE, ACCOUNT_SERVICE, ACCOUNT_SERVICE);
	if (write_file(dir, "passdb", text, 0600) < 0)
		goto fail;
	/* pam_exec runs it with PAM_USER in a clean environment: absolute
	 * paths only. */
	if (write_file(dir, "slow.sh",
		       "#!/bin/sh\n"
		       "case \"$PAM_USER\" in\n"
		       "slow) exec /bin/sleep 3 </dev/null >/dev/null 2>&1 ;;\n"
		       "nap*) exec /bin/sleep 2 </dev/null >/dev/null 2>&1 ;;\n"
		       "esac\n"
		       "exit 0\n",
		       0700) < 0)
		goto fail;
	snprintf(text, sizeof(text),
		 "auth optional %s quiet %s/slow.sh\n"
		 "auth required %s passdb=%s/passdb\n"
		 "account required %s passdb=%s/passdb\n",
		 PAM_EXEC_MODULE, dir, PAM_MATRIX_MODULE, dir,
		 PAM_MATRIX_MODULE, dir);
	if (write_file(dir, TEST_SERVICE, text, 0644) < 0)
		goto fail;
	if (prompt_module != NULL)
		snprintf(prompt_line, sizeof(prompt_line),
			 "account required %s\n", prompt_module);
	snprintf(text, sizeof(text),
		 "auth requisite %s\n"
		 "account requisite %s quiet user notin locked\n"
		 "%s"
		 "account required %s passdb=%s/passdb\n",
		 PAM_DENY_MODULE, PAM_SUCCEED_IF_MODULE, prompt_line,
		 PAM_MATRIX_MODULE, dir);
	if (write_file(dir, ACCOUNT_SERVICE, text, 0644) < 0)
		goto fail;

	setenv_prepend("LD_PRELOAD", PAM_WRAPPER_LIB, ':');
	setenv("PAM_WRAPPER", "1", 1);
	setenv("PAM_WRAPPER_SERVICE_DIR", dir, 1);
	setenv(TEST_DIR_ENV, dir, 1);
	/* Under ASan: libpam_wrapper comes before the ASan runtime in the
	 * link order, and ASan refuses dlopen(RTLD_DEEPBIND) (pam_wrapper
	 * 1.1.4 reads the switch under uid_wrapper's name). */
	setenv_append("ASAN_OPTIONS", "verify_asan_link_order=0", ':');
	setenv("PAM_WRAPPER_DISABLE_DEEPBIND", "1", 1);
	setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1);
	/* argv[0], not /proc/self/exe: under valgrind the latter is the
	 * valgrind tool itself. */
	execv(strchr(argv[0], '/') != NULL ? argv[0] : "/proc/self/exe", argv);
	perror("execv");
fail:
	remove_test_dir(dir);
	return 1;
}

/* ---- the network process's side --------------------------------------- */

struct net {
	int fd;
	unsigned char buf[AUTH_PROTO_FRAME_MAX * 4];
	size_t len;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends one encoded request to out (for sending several at once). */
static size_t put_request(unsigned char *out, size_t size, uint32_t id,
			  const char *user, const char *password)
{
	struct auth_request req;
	long n;

	memset(&req, 0, sizeof(req));
	req.id = id;
	snprintf(req.user, sizeof(req.user), "%s", user);
	snprintf(req.password, sizeof(req.password), "%s", password);
	snprintf(req.addr, sizeof(req.addr), "192.0.2.7");
	n = auth_request_encode(&req, out, size);
	return n > 0 ? (size_t)n : 0;
}

/* Appends one encoded account request (AUTH_MSG_ACCOUNT). */
static size_t put_account(unsigned char *out, size_t size, uint32_t id,
			  const char *user)
{
	struct auth_request req;
	long n;

	memset(&req, 0, sizeof(req));
	req.id = id;
	req.account_only = true;
	snprintf(req.user, sizeof(req.user), "%s", user);
	snprintf(req.addr, sizeof(req.addr), "192.0.2.7");
	n = auth_request_encode(&req, out, size);
	return n > 0 ? (size_t)n : 0;
}

static int net_send(struct net *n, uint32_t id, const char *user,
		    const char *password)
{
	unsigned char frame[AUTH_PROTO_FRAME_MAX];
	size_t len = put_request(frame, sizeof(frame), id, user, password);

	return len > 0 ? write_all(n->fd, frame, len) : -1;
}

/* Waits up to timeout_ms for the next response; 0 or -1. */
static int net_recv(struct net *n, struct auth_response *resp, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		long len = auth_frame_complete(n->buf, n->len);
		struct pollfd pfd = {n->fd, POLLIN, 0};
		uint64_t now;
		ssize_t r;

		if (len < 0)
			return -1;
		if (len > 0) {
			int ret =
			    auth_response_decode(n->buf, (size_t)len, resp);

			memmove(n->buf, n->buf + len, n->len - (size_t)len);
			n->len -= (size_t)len;
			return ret;
		}
		now = now_ms();
		if (now >= deadline ||
		    poll(&pfd, 1, (int)(deadline - now)) <= 0)
			return -1;
		r = read(n->fd, n->buf + n->len, sizeof(n->buf) - n->len);
		if (r <= 0)
			return -1;
		n->len += (size_t)r;
	}
}

/* Sends one request and waits for its answer. */
static int net_ask(struct net *n, uint32_t id, const char *user,
		   const char *password, struct auth_response *resp)
{
	if (net_send(n, id, user, password) < 0)
		return -1;
	if (net_recv(n, resp, 5000) < 0)
		return -1;
	return resp->id == id ? 0 : -1;
}

/* Sends one account request and waits for its answer. */
static int net_ask_account(struct net *n, uint32_t id, const char *user,
			   struct auth_response *resp)
{
	unsigned char frame[AUTH_PROTO_FRAME_MAX];
	size_t len = put_account(frame, sizeof(frame), id, user);

	if (len == 0 || write_all(n->fd, frame, len) < 0)
		return -1;
	if (net_recv(n, resp, 5000) < 0)
		return -1;
	return resp->id == id ? 0 : -1;
}

/* The PAM workers: children of the helper (our parent) named
 * WORKER_TITLE. */
static size_t find_workers(pid_t *pids, size_t max)
{
	pid_t helper = getppid();
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir("/proc");

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		char path[64], stat[512], comm[32];
		char *paren;
		FILE *f;
		int ppid = 0;
		char state;
		size_t len;
		long pid = strtol(de->d_name, NULL, 10);

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(stat, 1, sizeof(stat) - 1, f);
		fclose(f);
		stat[len] = '\0';
		paren = strrchr(stat, ')');
		/* "pid (comm) S ppid ...": comm may hold anything */
		if (paren == NULL || paren[1] != ' ' || paren[2] == '\0')
			continue;
		state = paren[2];
		ppid = (int)strtol(paren + 3, NULL, 10);
		if (ppid != helper || state == 'Z')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(comm, 1, sizeof(comm) - 1, f);
		fclose(f);
		comm[len] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		if (strcmp(comm, WORKER_TITLE) == 0)
			pids[n++] = (pid_t)pid;
	}
	closedir(d);
	return n;
}

static size_t wait_for_workers(size_t want, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	pid_t pids[64];
	size_t n;

	while ((n = find_workers(pids, 64)) != want && now_ms() < deadline)
		usleep(20000);
	return n;
}

/* ---- scenarios (run in the child) -------------------------------------- */

static void check_single_requests(struct net *n)
{
	struct auth_response resp;

	TAP_EQ_INT(net_ask(n, 1, "alice", "secret", &resp), 0,
		   "right password: answered, id echoed");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "right password: OK");
	TAP_EQ_STR(resp.user, "alice", "right password: PAM_USER returned");
	TAP_EQ_STR(resp.reason, "ok", "right password: reason ok");

	TAP_EQ_INT(net_ask(n, 2, "alice", "wrong", &resp), 0,
		   "wrong password: answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_FAIL, "wrong password: FAIL");
	TAP_EQ_STR(resp.reason, "auth_err", "wrong password: auth_err");
	TAP_EQ_STR(resp.user, "", "wrong password: no user name");

	TAP_EQ_INT(net_ask(n, 3, "nobody", "secret", &resp), 0,
		   "unknown user: answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_FAIL, "unknown user: FAIL");
	TAP_OK(strcmp(resp.reason, "user_unknown") == 0 ||
		   strcmp(resp.reason, "auth_err") == 0,
	       "unknown user: reason user_unknown or auth_err (got %s)",
	       resp.reason);
}

/* Account requests on the login stack: pam_matrix's account phase only.
 * "slow" sleeps 3 s in the auth stack (pam_exec): answered at once, the
 * auth stack never ran. */
static void check_account_requests(struct net *n)
{
	struct auth_response resp;
	uint64_t t0;

	TAP_EQ_INT(net_ask_account(n, 10, "alice", &resp), 0,
		   "account, existing user: answered, id echoed");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "account, existing user: OK");
	TAP_EQ_STR(resp.user, "alice",
		   "account, existing user: PAM_USER returned");
	TAP_EQ_STR(resp.reason, "ok", "account, existing user: reason ok");

	t0 = now_ms();
	TAP_EQ_INT(net_ask_account(n, 11, "slow", &resp), 0,
		   "account, user slow in auth: answered");
	TAP_OK(resp.result == AUTH_RESULT_OK && strcmp(resp.user, "slow") == 0,
	       "account, user slow in auth: OK as slow (result %d)",
	       (int)resp.result);
	TAP_OK(now_ms() - t0 < 1500,
	       "account, user slow in auth: the auth stack did not run "
	       "(%llu ms)",
	       (unsigned long long)(now_ms() - t0));

	TAP_EQ_INT(net_ask_account(n, 12, "nobody", &resp), 0,
		   "account, unknown user: answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_FAIL,
		   "account, unknown user: FAIL");
	TAP_EQ_STR(resp.reason, "perm_denied",
		   "account, unknown user: pam_matrix says perm_denied");
	TAP_EQ_STR(resp.user, "", "account, unknown user: no user name");

	TAP_EQ_INT(net_ask(n, 13, "alice", "secret", &resp), 0,
		   "after account requests, a password request is answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "and is OK");
}

/* Eight requests in one write, four of which take two seconds in PAM:
 * with four workers they run side by side (2 s and a little), not one
 * after the other (8 s). */
static void check_concurrency(struct net *n)
{
	static const struct {
		const char *user, *password;
		enum auth_result result;
	} reqs[8] = {
	    {"nap0", "nappw", AUTH_RESULT_OK},
	    {"alice", "secret", AUTH_RESULT_OK},
	    {"nap1", "nappw", AUTH_RESULT_OK},
	    {"bob", "wrong", AUTH_RESULT_FAIL},
	    {"nap2", "nappw", AUTH_RESULT_OK},
	    {"bob", "hunter2", AUTH_RESULT_OK},
	    {"nap3", "nope", AUTH_RESULT_FAIL},
	    {"alice", "x", AUTH_RESULT_FAIL},
	};
	unsigned char out[8 * 128];
	size_t len = 0, i, got = 0, right = 0;
	int seen[8] = {0};
	uint64_t t0;

	for (i = 0; i < 8; i++)
		len += put_request(out + len, sizeof(out) - len,
				   (uint32_t)(100 + i), reqs[i].user,
				   reqs[i].password);
	t0 = now_ms();
	TAP_EQ_INT(write_all(n->fd, out, len), 0,
		   "concurrency: eight requests sent at once");
	for (i = 0; i < 8; i++) {
		struct auth_response resp;
		size_t k;

		if (net_recv(n, &resp, 5000) < 0)
			break;
		got++;
		k = resp.id - 100;
		if (resp.id < 100 || k >= 8 || seen[k]++)
			continue;
		if (resp.result == reqs[k].result &&
		    (resp.result != AUTH_RESULT_OK ||
		     strcmp(resp.user, reqs[k].user) == 0))
			right++;
		else
			printf("# id %lu (%s): result %d reason %s\n",
			       (unsigned long)resp.id, reqs[k].user,
			       (int)resp.result, resp.reason);
	}
	TAP_EQ_INT(got, 8, "concurrency: eight responses");
	TAP_EQ_INT(right, 8,
		   "concurrency: each id answered once, with its own result");
	TAP_OK(now_ms() - t0 < 6000,
	       "concurrency: four 2 s PAM transactions ran in parallel "
	       "(%llu ms)",
	       (unsigned long long)(now_ms() - t0));
}

/* Whether a process has terminated (gone, or a zombie). */
static int is_dead(pid_t pid)
{
	char path[64], stat[512], *paren;
	size_t len;
	char state;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 1;
	len = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[len] = '\0';
	paren = strrchr(stat, ')');
	return paren == NULL || sscanf(paren + 1, " %c", &state) != 1 ||
	       state == 'Z' || state == 'X';
}

static int wait_dead(const pid_t *pids, size_t n, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	size_t i;

	for (i = 0; i < n; i++)
		while (!is_dead(pids[i])) {
			if (now_ms() >= deadline)
				return 0;
			usleep(5000);
		}
	return 1;
}

/* Descriptors of a process beyond 0, 1 and 2. */
static int count_extra_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strtol(de->d_name, NULL, 10) > 2)
			n++;
	closedir(d);
	return n;
}

/* A worker holds its own socket and nothing else: not the network
 * socketpair, not the signalfd, not the other workers' sockets. */
static void check_worker_fds(void)
{
	pid_t pids[64];
	size_t nw = find_workers(pids, 64), i, clean = 0;

	for (i = 0; i < nw; i++)
		if (count_extra_fds(pids[i]) == 1)
			clean++;
	TAP_OK(nw > 0 && clean == nw,
	       "each worker holds exactly one descriptor beyond 0-2 "
	       "(%zu of %zu)",
	       clean, nw);
}

/* A worker killed in the middle of a transaction: its request gets
 * TEMPFAIL worker_died, a replacement is forked, service goes on. */
static void check_worker_death(struct net *n)
{
	struct auth_response resp;
	pid_t pids[64];
	size_t nw, i;
	uint64_t t0;

	nw = wait_for_workers(4, 2000);
	TAP_EQ_INT(nw, 4, "four workers run, named " WORKER_TITLE);
	check_worker_fds();
	TAP_EQ_INT(net_send(n, 200, "slow", "slowpw"), 0,
		   "worker death: slow request sent");
	usleep(300000);
	nw = find_workers(pids, 64);
	for (i = 0; i < nw; i++)
		kill(pids[i], SIGKILL);
	t0 = now_ms();
	/* SIGKILL takes effect asynchronously: until they are dead, the
	 * helper may still hand the next request to one of them (and answer
	 * it worker_died, rightly). */
	TAP_OK(wait_dead(pids, nw, 2000), "worker death: %zu workers killed",
	       nw);
	TAP_EQ_INT(net_recv(n, &resp, 3000), 0,
		   "worker death: the request in flight is answered");
	TAP_EQ_INT(resp.id, 200, "worker death: with its id");
	TAP_EQ_INT(resp.result, AUTH_RESULT_TEMPFAIL, "worker death: TEMPFAIL");
	TAP_EQ_STR(resp.reason, "worker_died", "worker death: worker_died");
	TAP_OK(now_ms() - t0 < 1500, "worker death: answered at once");

	t0 = now_ms();
	TAP_EQ_INT(net_ask(n, 201, "alice", "secret", &resp), 0,
		   "after worker death: a new request is answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "after worker death: OK");
	TAP_OK(now_ms() - t0 < 2000,
	       "after worker death: served within two seconds");
	TAP_EQ_INT(wait_for_workers(4, 2000), 4,
		   "after worker death: the pool is back to four workers");
}

static volatile sig_atomic_t got_sighup;

static void on_sighup(int sig)
{
	(void)sig;
	got_sighup = 1;
}

static void check_signal_forwarding(void)
{
	uint64_t deadline = now_ms() + 2000;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	kill(getppid(), SIGHUP);
	while (!got_sighup && now_ms() < deadline)
		usleep(10000);
	TAP_OK(got_sighup, "SIGHUP sent to the helper reaches the network "
			   "process");
}

static int scenario_basic(struct net *n)
{
	check_single_requests(n);
	check_account_requests(n);
	check_concurrency(n);
	check_worker_death(n);
	check_signal_forwarding();
	return 42;
}

/* One worker, [auth] timeout 300 ms, a queue of 64: a request stuck in
 * PAM is killed at timeout + 1 s; meanwhile 64 requests queue up, the
 * rest are refused at once as busy, and the queued ones, stale by then,
 * are answered "timeout" without a PAM transaction. */
static int scenario_queue(struct net *n)
{
	unsigned char out[81 * 64];
	size_t len = 0, i, busy = 0, timeouts = 0, died = 0, other = 0;
	size_t busy_first = 0;
	struct auth_response resp;

	len += put_request(out, sizeof(out), 1000, "slow", "slowpw");
	for (i = 1; i <= 80; i++)
		len += put_request(out + len, sizeof(out) - len,
				   (uint32_t)(1000 + i), "alice", "secret");
	TAP_EQ_INT(write_all(n->fd, out, len), 0,
		   "queue: 81 requests sent at once to one worker");
	for (i = 0; i < 81; i++) {
		if (net_recv(n, &resp, 5000) < 0)
			break;
		if (strcmp(resp.reason, "busy") == 0) {
			busy++;
			if (i == busy - 1)
				busy_first++;
		} else if (strcmp(resp.reason, "timeout") == 0) {
			timeouts++;
		} else if (strcmp(resp.reason, "worker_died") == 0 &&
			   resp.id == 1000) {
			died++;
		} else {
			other++;
		}
		if (resp.result != AUTH_RESULT_TEMPFAIL)
			other++;
	}
	TAP_EQ_INT(busy, 16, "queue: 80 - 64 requests refused as busy");
	TAP_EQ_INT(busy_first, 16,
		   "queue: busy answered at once, before anything else");
	TAP_EQ_INT(died, 1,
		   "queue: the stuck worker is killed, its request answered "
		   "worker_died");
	TAP_EQ_INT(timeouts, 64,
		   "queue: stale queued requests answered "
		   "timeout");
	TAP_EQ_INT(other, 0, "queue: nothing else, all TEMPFAIL");
	TAP_EQ_INT(net_ask(n, 2000, "alice", "secret", &resp), 0,
		   "queue: a new request after that is answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "queue: by a fresh worker, OK");
	return 0;
}

/* The service sp-account (auth stack pam_deny), one worker.  Three
 * account requests in one write: one goes to the worker, two through the
 * queue (re-encoded from there), each with its own answer. */
static int scenario_account(struct net *n)
{
	static const struct {
		const char *user;
		enum auth_result result;
		const char *reason;
	} reqs[3] = {
	    {"carol", AUTH_RESULT_OK, "ok"},
	    {"locked", AUTH_RESULT_FAIL, "auth_err"},
	    {"alice", AUTH_RESULT_FAIL, "perm_denied"},
	};
	unsigned char out[3 * 128];
	struct auth_response resp;
	size_t len = 0, i;

	for (i = 0; i < 3; i++)
		len += put_account(out + len, sizeof(out) - len,
				   (uint32_t)(1 + i), reqs[i].user);
	TAP_EQ_INT(write_all(n->fd, out, len), 0,
		   "account: three account requests sent at once");
	for (i = 0; i < 3; i++) {
		const char *user = reqs[i].user;
		const char *want_user =
		    reqs[i].result == AUTH_RESULT_OK ? user : "";

		memset(&resp, 0, sizeof(resp));
		TAP_OK(net_recv(n, &resp, 5000) == 0 && resp.id == 1 + i,
		       "account: answer %zu, in order (id %lu)", i + 1,
		       (unsigned long)resp.id);
		TAP_OK(resp.result == reqs[i].result &&
			   strcmp(resp.reason, reqs[i].reason) == 0,
		       "account: %s: result %d reason %s (got %d %s)", user,
		       (int)reqs[i].result, reqs[i].reason, (int)resp.result,
		       resp.reason);
		TAP_OK(strcmp(resp.user, want_user) == 0,
		       "account: %s: PAM_USER \"%s\" (got \"%s\")", user,
		       want_user, resp.user);
	}

	TAP_EQ_INT(net_ask(n, 10, "carol", "carolpw", &resp), 0,
		   "account: a password login on the same stack is answered");
	TAP_OK(resp.result == AUTH_RESULT_FAIL &&
		   strcmp(resp.reason, "auth_err") == 0,
	       "account: and refused by pam_deny, so the account check "
	       "above never ran the auth stack (got %d %s)",
	       (int)resp.result, resp.reason);

	TAP_EQ_INT(net_ask_account(n, 11, "nobody", &resp), 0,
		   "account: unknown user answered");
	TAP_OK(resp.result == AUTH_RESULT_FAIL,
	       "account: unknown user FAIL (reason %s)", resp.reason);
	return 0;
}

/* An account module that prompts: the conversation answers nothing in an
 * account check, and a stack that cannot decide is TEMPFAIL. */
static int scenario_account_prompt(struct net *n)
{
	struct auth_response resp;

	TAP_EQ_INT(net_ask_account(n, 1, "prompt_off", &resp), 0,
		   "account prompt: echo-off prompt answered");
	TAP_OK(resp.result == AUTH_RESULT_TEMPFAIL &&
		   strcmp(resp.reason, "pam_error") == 0,
	       "account prompt: a password prompt gets no answer: TEMPFAIL "
	       "pam_error (got %d %s)",
	       (int)resp.result, resp.reason);
	TAP_EQ_INT(net_ask_account(n, 2, "prompt_on", &resp), 0,
		   "account prompt: echo-on prompt answered");
	TAP_OK(resp.result == AUTH_RESULT_TEMPFAIL &&
		   strcmp(resp.reason, "pam_error") == 0,
	       "account prompt: an echo-on prompt gets no answer either: "
	       "TEMPFAIL pam_error (got %d %s)",
	       (int)resp.result, resp.reason);
	TAP_OK(net_ask_account(n, 3, "carol", &resp) == 0 &&
		   resp.result == AUTH_RESULT_OK,
	       "account prompt: the module stays out of other users' way "
	       "(control)");
	return 0;
}

/* A frame of protocol version 2: the network process is broken or
 * compromised; the helper kills it and returns 1. */
static int scenario_protocol_error(struct net *n)
{
	unsigned char frame[AUTH_PROTO_FRAME_MAX];
	size_t len = put_request(frame, sizeof(frame), 1, "alice", "secret");

	frame[4] = 2;
	write_all(n->fd, frame, len);
	sleep(10);
	return 0;
}

/* ---- several channels ([server] workers = N) ---------------------------- */

/* Nothing more arrives on the channel within timeout_ms. */
static int net_quiet(struct net *n, int timeout_ms)
{
	struct auth_response resp;

	return net_recv(n, &resp, timeout_ms) < 0;
}

/* Receives count answers and files them by id (1..count); returns how
 * many came with an id in range, each once. */
static size_t net_recv_by_id(struct net *n, struct auth_response *resps,
			     size_t count)
{
	int seen[8] = {0};
	size_t i, got = 0;

	for (i = 0; i < count; i++) {
		struct auth_response resp;

		if (net_recv(n, &resp, 5000) < 0)
			break;
		if (resp.id < 1 || resp.id > count || seen[resp.id - 1]++)
			continue;
		resps[resp.id - 1] = resp;
		got++;
	}
	return got;
}

/* Request ids are per channel: id 1 and id 2 in flight on both channels
 * at once, each answered on its own channel with its own result. */
static int scenario_two_channels(struct net *n)
{
	struct auth_response r0[2], r1[2];

	memset(r0, 0, sizeof(r0));
	memset(r1, 0, sizeof(r1));
	TAP_OK(net_send(&n[0], 1, "nap0", "nappw") == 0 &&
		   net_send(&n[1], 1, "nap1", "wrong") == 0 &&
		   net_send(&n[0], 2, "bob", "wrong") == 0 &&
		   net_send(&n[1], 2, "alice", "secret") == 0,
	       "two channels: ids 1 and 2 sent on both channels");
	TAP_EQ_INT(net_recv_by_id(&n[0], r0, 2), 2,
		   "two channels: channel 0 gets one answer per id");
	TAP_EQ_INT(net_recv_by_id(&n[1], r1, 2), 2,
		   "two channels: channel 1 gets one answer per id");
	TAP_OK(r0[0].result == AUTH_RESULT_OK &&
		   strcmp(r0[0].user, "nap0") == 0,
	       "two channels: channel 0 id 1 (right password) OK as nap0 "
	       "(result %d user %s)",
	       (int)r0[0].result, r0[0].user);
	TAP_EQ_INT(r0[1].result, AUTH_RESULT_FAIL,
		   "two channels: channel 0 id 2 (wrong password) FAIL");
	TAP_EQ_INT(r1[0].result, AUTH_RESULT_FAIL,
		   "two channels: channel 1 id 1 (wrong password) FAIL");
	TAP_OK(r1[1].result == AUTH_RESULT_OK &&
		   strcmp(r1[1].user, "alice") == 0,
	       "two channels: channel 1 id 2 (right password) OK as alice "
	       "(result %d user %s)",
	       (int)r1[1].result, r1[1].user);
	TAP_OK(net_quiet(&n[0], 300) && net_quiet(&n[1], 300),
	       "two channels: no answer on the wrong channel");
	return 0;
}

/* One worker.  Channel 0 sends three 2 s requests (one goes to the
 * worker, two wait in the queue) and closes: the helper goes on serving
 * channel 1, the queued requests of channel 0 are dropped (channel 1 waits
 * for the one in flight, not for all three), and the answer to the one in
 * flight is not sent anywhere. */
static int scenario_channel_close(struct net *n)
{
	unsigned char out[3 * 128];
	struct auth_response resp;
	size_t len = 0;
	uint64_t t0;

	memset(&resp, 0, sizeof(resp));
	len += put_request(out + len, sizeof(out) - len, 1, "nap0", "nappw");
	len += put_request(out + len, sizeof(out) - len, 2, "nap1", "nappw");
	len += put_request(out + len, sizeof(out) - len, 3, "nap2", "nappw");
	TAP_EQ_INT(write_all(n[0].fd, out, len), 0,
		   "channel close: three slow requests sent on channel 0");
	usleep(300000);
	TAP_EQ_INT(close(n[0].fd), 0, "channel close: channel 0 closed");
	t0 = now_ms();
	TAP_EQ_INT(net_send(&n[1], 1, "alice", "secret"), 0,
		   "channel close: request sent on channel 1");
	TAP_EQ_INT(net_recv(&n[1], &resp, 8000), 0,
		   "channel close: channel 1 still gets answers");
	TAP_OK(resp.id == 1 && resp.result == AUTH_RESULT_OK &&
		   strcmp(resp.user, "alice") == 0,
	       "channel close: its own answer (id %lu result %d user %s)",
	       (unsigned long)resp.id, (int)resp.result, resp.user);
	TAP_OK(now_ms() - t0 < 4000,
	       "channel close: channel 0's queued requests were dropped, not "
	       "run (%llu ms)",
	       (unsigned long long)(now_ms() - t0));
	TAP_EQ_INT(net_ask(&n[1], 2, "bob", "hunter2", &resp), 0,
		   "channel close: a new request on channel 1 is answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_OK, "channel close: OK");
	TAP_OK(net_quiet(&n[1], 300),
	       "channel close: channel 0's answers do not reach channel 1");
	TAP_EQ_INT(wait_for_workers(1, 2000), 1,
		   "channel close: the helper did not stop (its worker runs)");
	return 0;
}

/* A frame of protocol version 2 on channel 1 of 2: the whole network
 * process is killed, as with one channel. */
static int scenario_channel_protocol_error(struct net *n)
{
	unsigned char frame[AUTH_PROTO_FRAME_MAX];
	size_t len = put_request(frame, sizeof(frame), 1, "alice", "secret");

	frame[4] = 2;
	write_all(n[1].fd, frame, len);
	sleep(10);
	return 0;
}

/* The helper stops (its workers go) once the last channel is closed, not
 * before, and returns the network process's status once it exits. */
static int scenario_all_channels_closed(struct net *n)
{
	struct auth_response resp;

	TAP_OK(net_ask(&n[0], 1, "alice", "secret", &resp) == 0 &&
		   resp.result == AUTH_RESULT_OK,
	       "all closed: channel 0 answered");
	TAP_OK(net_ask(&n[1], 1, "alice", "secret", &resp) == 0 &&
		   resp.result == AUTH_RESULT_OK,
	       "all closed: channel 1 answered");
	close(n[0].fd);
	usleep(300000);
	TAP_EQ_INT(wait_for_workers(2, 1000), 2,
		   "all closed: one channel closed, the workers still run");
	close(n[1].fd);
	TAP_EQ_INT(wait_for_workers(0, 4000), 0,
		   "all closed: both channels closed, the workers are stopped");
	return 7;
}

/* A PAM service without a configuration: TEMPFAIL, never FAIL.  Then the
 * network process dies of SIGTERM: the helper returns 1. */
static int scenario_pam_error(struct net *n)
{
	struct auth_response resp;

	TAP_EQ_INT(net_ask(n, 7, "alice", "secret", &resp), 0,
		   "missing PAM service: answered");
	TAP_EQ_INT(resp.result, AUTH_RESULT_TEMPFAIL,
		   "missing PAM service: TEMPFAIL");
	TAP_EQ_STR(resp.reason, "pam_error", "missing PAM service: pam_error");
	return -SIGTERM;
}

/* ---- the helper's side (the parent) ------------------------------------ */

#define MAX_CHANNELS 4

/* A child's result: its exit code, or minus the signal it dies of.  n is
 * an array of nchannels channels (the scenario knows how many). */
typedef int (*scenario_fn)(struct net *n);

static void run_scenario(const char *name, const struct config *cfg,
			 size_t nchannels, scenario_fn fn, int expect_status,
			 int expect_report, int max_ms)
{
	int sv[MAX_CHANNELS][2], fds[MAX_CHANNELS];
	int rep[2], counts[2], status;
	uint64_t t0;
	ssize_t r;
	pid_t pid;
	size_t i;

	for (i = 0; i < nchannels; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]) <
		    0) {
			TAP_OK(0, "%s: socketpair", name);
			return;
		}
	if (pipe2(rep, O_CLOEXEC) < 0) {
		TAP_OK(0, "%s: pipe", name);
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		TAP_OK(0, "%s: fork", name);
		return;
	}
	if (pid == 0) {
		struct net *n = calloc(nchannels, sizeof(*n));
		int code;

		close(rep[0]);
		for (i = 0; i < nchannels; i++) {
			close(sv[i][0]);
			n[i].fd = sv[i][1];
		}
		code = fn(n);
		counts[0] = tap_count;
		counts[1] = tap_failed;
		fflush(stdout);
		if (write(rep[1], counts, sizeof(counts)) < 0)
			_exit(98);
		if (code < 0) {
			signal(-code, SIG_DFL);
			raise(-code);
		}
		/* _exit: pam_wrapper's destructor belongs to the parent. */
		_exit(code);
	}
	for (i = 0; i < nchannels; i++) {
		close(sv[i][1]);
		fds[i] = sv[i][0];
	}
	close(rep[1]);
	t0 = now_ms();
	status = auth_helper_run(cfg, fds, nchannels, pid, NULL);
	t0 = now_ms() - t0;
	r = read(rep[0], counts, sizeof(counts));
	close(rep[0]);
	if (r == (ssize_t)sizeof(counts)) {
		tap_count = counts[0];
		tap_failed = counts[1];
	}
	TAP_EQ_INT(r == (ssize_t)sizeof(counts), expect_report,
		   "%s: the network side %s", name,
		   expect_report ? "ran to its end" : "was stopped early");
	TAP_EQ_INT(status, expect_status,
		   "%s: auth_helper_run returns the network process's status",
		   name);
	TAP_OK(t0 < (uint64_t)max_ms, "%s: done in %llu ms", name,
	       (unsigned long long)t0);
	errno = 0;
	TAP_OK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD,
	       "%s: every child was reaped", name);
}

int main(int argc, char **argv)
{
	/* meson passes the test module's path (tests/meson.build). */
	const char *prompt_module =
	    argc > 1 && access(argv[1], R_OK) == 0 ? argv[1] : NULL;
	struct config cfg;
	const char *dir;

	if (getenv("PAM_WRAPPER") == NULL) {
		if (access(PAM_WRAPPER_LIB, R_OK) != 0 ||
		    access(PAM_MATRIX_MODULE, R_OK) != 0 ||
		    access(PAM_EXEC_MODULE, R_OK) != 0 ||
		    access(PAM_DENY_MODULE, R_OK) != 0 ||
		    access(PAM_SUCCEED_IF_MODULE, R_OK) != 0) {
			printf("1..0 # SKIP pam_wrapper, pam_matrix, pam_exec, "
			       "pam_deny or pam_succeed_if not installed\n");
			return 0;
		}
		return reexec_with_pam_wrapper(prompt_module, argv);
	}
	dir = getenv(TEST_DIR_ENV);

	memset(&cfg, 0, sizeof(cfg));
	cfg.auth.pam_service = TEST_SERVICE;
	cfg.auth.helper_workers = 4;
	cfg.auth.timeout_ms = 30000;
	run_scenario("basic", &cfg, 1, scenario_basic, 42, 1, 20000);

	cfg.auth.helper_workers = 1;
	cfg.auth.timeout_ms = 300;
	run_scenario("queue", &cfg, 1, scenario_queue, 0, 1, 10000);

	cfg.auth.helper_workers = 2;
	cfg.auth.timeout_ms = 30000;
	run_scenario("protocol_error", &cfg, 1, scenario_protocol_error, 1, 0,
		     5000);

	/* [server] workers = 2: two event loops, two channels. */
	cfg.auth.helper_workers = 4;
	run_scenario("two_channels", &cfg, 2, scenario_two_channels, 0, 1,
		     10000);
	cfg.auth.helper_workers = 1;
	run_scenario("channel_close", &cfg, 2, scenario_channel_close, 0, 1,
		     10000);
	cfg.auth.helper_workers = 2;
	run_scenario("channel_protocol_error", &cfg, 2,
		     scenario_channel_protocol_error, 1, 0, 5000);
	run_scenario("all_channels_closed", &cfg, 2,
		     scenario_all_channels_closed, 7, 1, 10000);

	cfg.auth.pam_service = ACCOUNT_SERVICE;
	cfg.auth.helper_workers = 1;
	run_scenario("account", &cfg, 1, scenario_account, 0, 1, 10000);
	if (prompt_module != NULL)
		run_scenario("account_prompt", &cfg, 1, scenario_account_prompt,
			     0, 1, 10000);
	else
		printf("# account_prompt skipped: no test module given\n");

	cfg.auth.pam_service = "sp-missing";
	run_scenario("pam_error", &cfg, 1, scenario_pam_error, 1, 1, 5000);

	if (dir != NULL)
		remove_test_dir(dir);
	remove_stale_pam_wrapper_dirs();
	return tap_done();
}
