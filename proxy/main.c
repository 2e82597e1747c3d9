/*
 * main.c - command line, -t, and the process split.
 *
 *   submitproxy [-c FILE]       run in the foreground
 *   submitproxy -t [-c FILE]    check the configuration and exit
 *   submitproxy --check-backend [-c FILE] [--json]
 *                               talk to each backend, report, exit
 *   submitproxy -V | -h
 *
 * The process started becomes the auth helper (auth/helper.h), which keeps
 * its privileges for PAM; its child, the network process, runs the control
 * loop (proxy/control.h) and drops to [server] user once its listeners are
 * open (server_drop_privileges(), called back by the control loop).
 *
 * Exit codes: 0 success, 1 configuration or start-up error, 2 usage;
 * --check-backend has its own (proxy/checkbackend.h; a configuration
 * error is 2 there).
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/helper.h"
#include "auth/helperstats.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/util.h"
#include "config/config.h"
#include "proxy/checkbackend.h"
#include "proxy/control.h"
#include "proxy/sdnotify.h"
#include "proxy/sendermap.h"
#include "proxy/userlimits.h"
#include "tls/tls-server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: submitproxy [-t] [-c FILE]\n"
		"       submitproxy --check-backend [-c FILE] [--json]\n"
		"       submitproxy -V | -h\n"
		"  -c FILE          configuration file (default %s)\n"
		"  -t               check the configuration and exit\n"
		"  --check-backend  talk to each backend and report what "
		"clients will see\n"
		"  --json           with --check-backend: the report as JSON\n"
		"  -V               print the version and exit\n"
		"  -h               print this help and exit\n",
		CONFIG_DEFAULT_PATH);
}

/* Started as root: become [server] user for good, after every privileged
 * step (ports bound, keys read).  The auth helper, our parent, keeps root
 * for PAM; we never need it again. */
static int server_drop_privileges(const struct config *cfg)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if (strcmp(cfg->server.user, "root") == 0) {
		log_warn(NULL, "event=privileges user=root "
			       "warning=\"network process keeps root: "
			       "[server] user = root\"");
		return 0;
	}
	pw = getpwnam(cfg->server.user);
	if (pw == NULL) {
		log_error(NULL,
			  "event=start_error error=\"[server] user %s does "
			  "not exist (systemd/sysusers.d creates it)\"",
			  cfg->server.user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_error(NULL,
			  "event=start_error error=\"[server] user %s "
			  "has uid 0\"",
			  cfg->server.user);
		return -1;
	}
	/* initgroups: the user's supplementary groups stay (on Debian, a
	 * member of ssl-cert can re-read group-readable keys on SIGHUP). */
	if (initgroups(cfg->server.user, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error(NULL,
			  "event=start_error error=\"dropping to %s: %s\"",
			  cfg->server.user, strerror(errno));
		return -1;
	}
	/* Verify that root cannot be regained. */
	if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0) {
		log_error(NULL, "event=start_error error=\"could regain root "
				"after dropping privileges\"");
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	log_info(NULL, "event=privileges user=%s uid=%ld gid=%ld",
		 cfg->server.user, (long)pw->pw_uid, (long)pw->pw_gid);
	return 0;
}

/* -t: where the metrics are, and a warning when anyone may read them. */
static void check_metrics(const struct config *cfg)
{
	const struct sockaddr_storage *ss = &cfg->metrics.address.ss;
	bool loopback = false;

	if (ss->ss_family == AF_INET)
		loopback = (ntohl(((const struct sockaddr_in *)ss)
				      ->sin_addr.s_addr) >> 24) == 127;
	else if (ss->ss_family == AF_INET6)
		loopback = IN6_IS_ADDR_LOOPBACK(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	printf("metrics: http://%s/metrics and /healthz%s\n",
	       cfg->metrics.address.text,
	       cfg->metrics.nallow > 0 ? " (allow list set)" : "");
	if (!loopback && cfg->metrics.nallow == 0)
		fprintf(stderr,
			"warning: [metrics] address %s is not loopback and "
			"[metrics] allow is unset: anyone who reaches it "
			"reads the counters\n",
			cfg->metrics.address.text);
}

static int check_config(const struct config *cfg)
{
	if (config_wants_tls(cfg) && tls_check_config(cfg, stdout, stderr) < 0)
		return 1;
	if (cfg->relay.sender_map != NULL) {
		struct sendermap *map =
		    sendermap_load(cfg->relay.sender_map, stderr);

		if (map == NULL)
			return 1;
		sendermap_free(map);
	}
	if (cfg->limits.user_limits != NULL) {
		struct userlimits *limits =
		    userlimits_load(cfg->limits.user_limits, stderr);

		if (limits == NULL)
			return 1;
		userlimits_free(limits);
	}
	if (cfg->metrics.enabled)
		check_metrics(cfg);
	printf("%s: configuration OK (%zu listener%s)\n", cfg->path,
	       cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s");
	return 0;
}

/* Closes fds[0..n-1]. */
static void close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* Splits into the auth helper (this process, which keeps its privileges
 * and supervises) and the network process (a child), joined by one
 * channel per worker.  See auth/helper.h for why the helper is the
 * parent. */
static int run(struct config **cfgp, const struct control_activation *act)
{
	struct config *cfg = *cfgp;
	size_t n = cfg->server.workers, made;
	sigset_t stop_signals, old_mask;
	struct helper_stats *stats;
	int *helper_fds, *net_fds;
	pid_t pid;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	/* Held back until each process has its handlers: the helper reads
	 * them from a signalfd, the network process from libuv. */
	control_signals(&stop_signals);
	sigprocmask(SIG_BLOCK, &stop_signals, &old_mask);
	helper_fds = xcalloc(n, sizeof(*helper_fds));
	net_fds = xcalloc(n, sizeof(*net_fds));
	for (made = 0; made < n; made++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) <
		    0) {
			log_error(NULL,
				  "event=start_error error=\"socketpair: "
				  "%s\"",
				  strerror(errno));
			break;
		}
		helper_fds[made] = sv[0];
		net_fds[made] = sv[1];
	}
	/* Before the fork: both processes see the one page. */
	stats = made == n ? helper_stats_create() : NULL;
	pid = made == n ? (fflush(NULL), fork()) : -1;
	if (made == n && pid < 0)
		log_error(NULL, "event=start_error error=\"fork: %s\"",
			  strerror(errno));
	if (pid < 0) {
		close_all(helper_fds, made);
		close_all(net_fds, made);
		free(helper_fds);
		free(net_fds);
		helper_stats_destroy(stats);
		return 1;
	}
	if (pid == 0) {
		close_all(helper_fds, n);
		free(helper_fds);
		*cfgp = NULL; /* the network process owns it now */
		helper_stats_seal(stats);
		rc = control_run(cfg, net_fds, n, act, &old_mask,
				 server_drop_privileges, stats);
		free(net_fds);
		helper_stats_destroy(stats);
		return rc;
	}
	close_all(net_fds, n);
	free(net_fds);
	/* The listening sockets are the network process's alone. */
	for (size_t i = 0; i < act->n; i++)
		close(act->fds[i].fd);
	rc = auth_helper_run(cfg, helper_fds, n, pid, stats);
	free(helper_fds);
	helper_stats_destroy(stats);
	return rc;
}

/* Long options without a short form. */
enum {
	OPT_CHECK_BACKEND = 256,
	OPT_JSON,
};

static const struct option long_options[] = {
    {"check-backend", no_argument, NULL, OPT_CHECK_BACKEND},
    {"json", no_argument, NULL, OPT_JSON},
    {NULL, 0, NULL, 0},
};

/* --check-backend: the configuration loaded as for -t (its errors
 * printed the same way, exit 2 here), then each backend; no listener, no
 * auth helper, no privilege. */
static int check_backends(const char *path, bool json)
{
	struct config *cfg = NULL;
	int rc;

	if (config_load(path, &cfg) < 0)
		return 2;
	rc = check_backends_run(cfg, json, stdout);
	config_free(cfg);
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct control_activation act;
	struct config *cfg = NULL;
	bool test_only = false, check_backend = false, json = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:thV", long_options, NULL)) !=
	       -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case OPT_CHECK_BACKEND:
			check_backend = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case 'V':
			printf("submitproxy %s\n", SUBMITPROXY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (check_backend && test_only) ||
	    (json && !check_backend)) {
		usage(stderr);
		return 2;
	}
	if (check_backend)
		return check_backends(path, json);
	if (config_load(path, &cfg) < 0)
		return 1;
	log_set_level(cfg->server.log_level);
	memset(&act, 0, sizeof(act));
	if (!test_only) {
		int n =
		    sd_listen_fds_take(getpid(), act.fds, SD_LISTEN_FDS_MAX);

		if (n < 0) {
			log_error(NULL, "event=start_error error=\"bad "
					"LISTEN_FDS/LISTEN_PID\"");
			config_free(cfg);
			return 1;
		}
		act.n = (size_t)n;
	}
	rc = test_only ? check_config(cfg) : run(&cfg, &act);
	config_free(cfg);
	return rc;
}
