/*
 * main.c - command line, start-up and signals.
 *
 *   submitproxy [-c FILE]       run in the foreground
 *   submitproxy -t [-c FILE]    check the configuration and exit
 *   submitproxy -V | -h
 *
 * Exit codes: 0 success, 1 configuration or start-up error, 2 usage.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/util.h"
#include "proxy/worker.h"
#include "tls/tls.h"

struct server {
	uv_loop_t loop;
	struct worker worker;
	struct config *cfg;
	struct tls_server *tls;
	uv_signal_t sigterm, sigint, sighup;
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

	log_info(NULL, "event=stop signal=%s", strsignal(signum));
	worker_stop(&srv->worker);
	uv_close((uv_handle_t *)&srv->sigterm, NULL);
	uv_close((uv_handle_t *)&srv->sigint, NULL);
	uv_close((uv_handle_t *)&srv->sighup, NULL);
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
	printf("%s: configuration OK (%zu listener%s)\n", cfg->path,
	       cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s");
	return 0;
}

static int run(struct config *cfg)
{
	struct server srv;
	int rc = 0;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	/* A client that disconnects while we write must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (config_wants_tls(cfg)) {
		char *error = NULL;

		srv.tls = tls_server_create(cfg, &error);
		if (srv.tls == NULL) {
			log_error(NULL, "event=start_error error=\"%s\"",
				  error ? error : "TLS set-up failed");
			free(error);
			return 1;
		}
	}
	uv_loop_init(&srv.loop);

	if (worker_init(&srv.worker, &srv.loop, cfg, srv.tls) < 0) {
		rc = 1;
		worker_stop(&srv.worker);
	} else {
		uv_signal_init(&srv.loop, &srv.sigterm);
		uv_signal_init(&srv.loop, &srv.sigint);
		uv_signal_init(&srv.loop, &srv.sighup);
		srv.sigterm.data = srv.sigint.data = srv.sighup.data = &srv;
		uv_signal_start(&srv.sigterm, server_on_stop_signal, SIGTERM);
		uv_signal_start(&srv.sigint, server_on_stop_signal, SIGINT);
		uv_signal_start(&srv.sighup, server_on_reload_signal, SIGHUP);
		log_info(NULL, "event=start version=%s hostname=%s",
			 SUBMITPROXY_VERSION, cfg->server.hostname);
	}
	uv_run(&srv.loop, UV_RUN_DEFAULT);
	worker_finish(&srv.worker);
	tls_server_destroy(srv.tls);
	if (uv_loop_close(&srv.loop) != 0)
		log_warn(NULL, "event=exit warning=\"loop not closed cleanly\"");
	log_info(NULL, "event=exit status=%d", rc);
	return rc;
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
