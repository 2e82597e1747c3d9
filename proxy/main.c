/*
 * main.c - command line, start-up and signals.
 *
 *   submitproxy [-c FILE]       run in the foreground
 *   submitproxy -t [-c FILE]    check the configuration and exit
 *   submitproxy -V | -h
 *
 * Exit codes: 0 success, 1 configuration or start-up error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/helper.h"
#include "config/config.h"
#include "proxy/authclient.h"
#include "proxy/log.h"
#include "proxy/sendermap.h"
#include "proxy/util.h"
#include "proxy/worker.h"
#include "tls/tls.h"

struct server {
	uv_loop_t loop;
	struct worker worker;
	struct config *cfg;
	struct tls_server *tls;
	struct auth_client *auth;
	struct sendermap *sendermap;
	uv_signal_t sigterm, sigint, sighup;
	bool stopping;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: submitproxy [-t] [-c FILE]\n"
		"       submitproxy -V | -h\n"
		"  -c FILE  configuration file (default %s)\n"
		"  -t       check the configuration and exit\n"
		"  -V       print the version and exit\n"
		"  -h       print this help and exit\n",
		CONFIG_DEFAULT_PATH);
}

static void server_on_stop_signal(uv_signal_t *sig, int signum)
{
	struct server *srv = sig->data;

	/* Ctrl-C reaches both processes and the helper forwards it too: the
	 * second one is expected and changes nothing. */
	if (srv->stopping)
		return;
	srv->stopping = true;
	log_info(NULL, "event=stop signal=%s", strsignal(signum));
	worker_stop(&srv->worker);
	/* The signal handles stay installed (a second signal must not take
	 * the default action) but no longer keep the loop alive. */
	uv_unref((uv_handle_t *)&srv->sigterm);
	uv_unref((uv_handle_t *)&srv->sigint);
	uv_unref((uv_handle_t *)&srv->sighup);
}

/* Without the helper no one can log in: stop, and let the service manager
 * start us again with a new one. */
static void server_on_auth_lost(void *arg)
{
	struct server *srv = arg;

	if (srv->stopping)
		return;
	srv->stopping = true;
	log_error(NULL, "event=stop reason=\"auth helper gone\"");
	worker_stop(&srv->worker);
	uv_unref((uv_handle_t *)&srv->sigterm);
	uv_unref((uv_handle_t *)&srv->sigint);
	uv_unref((uv_handle_t *)&srv->sighup);
}

/* SIGHUP: re-read the certificates and keys.  New handshakes use the new
 * ones; live sessions keep theirs; a bad file keeps the old set. */
static void server_on_reload_signal(uv_signal_t *sig, int signum)
{
	struct server *srv = sig->data;
	char *error = NULL;

	if (srv->tls == NULL) {
		log_info(NULL, "event=reload tls=none");
		return;
	}
	if (tls_server_reload(srv->tls, srv->cfg, &error) < 0) {
		log_error(NULL, "event=reload status=failed error=\"%s\"",
			  error ? error : "unknown");
		free(error);
		return;
	}
	log_info(NULL, "event=reload status=ok");
}

static bool config_wants_tls(const struct config *cfg)
{
	return cfg->tls.certificate != NULL;
}

static int check_config(const struct config *cfg)
{
	if (config_wants_tls(cfg) && tls_check_config(cfg, stdout, stderr) < 0)
		return 1;
	if (cfg->relay.sender_map != NULL) {
		struct sendermap *map = sendermap_load(cfg->relay.sender_map,
						       stderr);

		if (map == NULL)
			return 1;
		sendermap_free(map);
	}
	printf("%s: configuration OK (%zu listener%s)\n", cfg->path,
	       cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s");
	return 0;
}

/* The network process: everything that faces clients, on one libuv loop.
 * auth_fd is its end of the channel to the auth helper (its parent). */
static int network_run(struct config *cfg, int auth_fd)
{
	struct server srv;
	int rc = 0;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	if (config_wants_tls(cfg)) {
		char *error = NULL;

		srv.tls = tls_server_create(cfg, &error);
		if (srv.tls == NULL) {
			log_error(NULL, "event=start_error error=\"%s\"",
				  error ? error : "TLS set-up failed");
			free(error);
			close(auth_fd);
			return 1;
		}
	}
	if (cfg->relay.sender_map != NULL) {
		srv.sendermap = sendermap_load(cfg->relay.sender_map, stderr);
		if (srv.sendermap == NULL) {
			tls_server_destroy(srv.tls);
			close(auth_fd);
			return 1;
		}
	}
	uv_loop_init(&srv.loop);
	srv.auth = auth_client_create(&srv.loop, auth_fd, cfg->auth.timeout_ms,
				      server_on_auth_lost, &srv);
	uv_signal_init(&srv.loop, &srv.sigterm);
	uv_signal_init(&srv.loop, &srv.sigint);
	uv_signal_init(&srv.loop, &srv.sighup);
	srv.sigterm.data = srv.sigint.data = srv.sighup.data = &srv;

	if (worker_init(&srv.worker, &srv.loop, cfg, srv.tls, srv.auth,
			srv.sendermap) < 0) {
		rc = 1;
		srv.stopping = true;
		worker_stop(&srv.worker);
	} else {
		uv_signal_start(&srv.sigterm, server_on_stop_signal, SIGTERM);
		uv_signal_start(&srv.sigint, server_on_stop_signal, SIGINT);
		uv_signal_start(&srv.sighup, server_on_reload_signal, SIGHUP);
		log_info(NULL, "event=start version=%s hostname=%s pid=%ld",
			 SUBMITPROXY_VERSION, cfg->server.hostname,
			 (long)getpid());
		uv_run(&srv.loop, UV_RUN_DEFAULT);
	}
	auth_client_close(srv.auth);
	{
		/* Closing the last signal handle restores the default
		 * action: a late SIGTERM (systemd signals the whole control
		 * group, the helper forwards it too) must not kill us while
		 * we finish.  Blocked, it dies with the process. */
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	uv_close((uv_handle_t *)&srv.sigterm, NULL);
	uv_close((uv_handle_t *)&srv.sigint, NULL);
	uv_close((uv_handle_t *)&srv.sighup, NULL);
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	worker_finish(&srv.worker);
	tls_server_destroy(srv.tls);
	sendermap_free(srv.sendermap);
	if (uv_loop_close(&srv.loop) != 0)
		log_warn(NULL, "event=exit warning=\"loop not closed cleanly\"");
	log_info(NULL, "event=exit status=%d", rc);
	return rc;
}

/* Splits into the auth helper (this process, which keeps its privileges
 * and supervises) and the network process (a child).  See auth/helper.h
 * for why the helper is the parent. */
static int run(struct config *cfg)
{
	int sv[2];
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error(NULL, "event=start_error error=\"socketpair: %s\"",
			  strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		log_error(NULL, "event=start_error error=\"fork: %s\"",
			  strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		return network_run(cfg, sv[1]);
	}
	close(sv[1]);
	return auth_helper_run(cfg, sv[0], pid);
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct config *cfg = NULL;
	bool test_only = false;
	int c, rc;

	while ((c = getopt(argc, argv, "c:thV")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
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
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg) < 0)
		return 1;
	log_set_level(cfg->server.log_level);
	rc = test_only ? check_config(cfg) : run(cfg);
	config_free(cfg);
	return rc;
}
