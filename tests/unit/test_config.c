/*
 * test_config.c - config_load(): the example file loads and states the
 * defaults, a minimal file gets every default, and each mistake is reported
 * as "FILE:LINE: message" on the line where it is, all of them in one run.
 *
 * Usage: test_config [PATH-TO-EXAMPLE]  (default config/submitproxy.conf)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "config/config.h"
#include "tests/unit/tap.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A starttls listener's needs, to prepend where TLS is not the point. */
#define TLS_OK                                                                 \
	"[tls]\n"                                                              \
	"certificate = /etc/submitproxy/cert.pem\n"                            \
	"key = /etc/submitproxy/key.pem\n"

static const char *temp_dir(void)
{
	const char *dir = getenv("TMPDIR");

	return dir != NULL && dir[0] != '\0' ? dir : "/tmp";
}

static void temp_path(char *buf, size_t size)
{
	snprintf(buf, size, "%s/test_config.XXXXXX", temp_dir());
}

/* Writes TEXT to a new temporary file; its name goes to PATH. */
static void write_temp(const char *text, char *path, size_t size)
{
	size_t len = strlen(text);
	int fd;

	temp_path(path, size);
	fd = mkstemp(path);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd) < 0) {
		perror("test_config: temporary file");
		exit(99);
	}
}

/* config_load(PATH) with stderr captured into ERR. */
static int load_captured(const char *path, struct config **cfg_r, char *err,
			 size_t err_size)
{
	char err_path[4096];
	int fd, saved, ret;
	ssize_t n;

	temp_path(err_path, sizeof(err_path));
	fd = mkstemp(err_path);
	if (fd < 0) {
		perror("test_config: mkstemp");
		exit(99);
	}
	unlink(err_path);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	ret = config_load(path, cfg_r);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);

	lseek(fd, 0, SEEK_SET);
	n = read(fd, err, err_size - 1);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	return ret;
}

/* Loads TEXT from a temporary file: the return value of config_load(),
 * with its stderr in ERR and the file name in PATH. */
static int load_text(const char *text, struct config **cfg_r, char *path,
		     size_t path_size, char *err, size_t err_size)
{
	int ret;

	write_temp(text, path, path_size);
	ret = load_captured(path, cfg_r, err, err_size);
	unlink(path);
	return ret;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* Line I (from 0) of S, without its newline, into BUF. */
static const char *nth_line(const char *s, size_t i, char *buf, size_t size)
{
	for (; i > 0 && s != NULL; i--) {
		s = strchr(s, '\n');
		if (s != NULL)
			s++;
	}
	if (s == NULL) {
		buf[0] = '\0';
		return buf;
	}
	snprintf(buf, size, "%.*s", (int)strcspn(s, "\n"), s);
	return buf;
}

/* Checks that error line LINE of ERR is "PATH:LINENO: ..." with WANT in
 * the message. */
static void check_error_line(const char *what, const char *err, size_t i,
			     const char *path, int lineno, const char *want)
{
	char prefix[4200], line[4200];

	nth_line(err, i, line, sizeof(line));
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, lineno);
	TAP_OK(strncmp(line, prefix, strlen(prefix)) == 0,
	       "%s: reported at line %d", what, lineno);
	TAP_OK(strstr(line, want) != NULL, "%s: message says \"%s\"", what,
	       want);
	if (strncmp(line, prefix, strlen(prefix)) != 0 ||
	    strstr(line, want) == NULL)
		printf("# stderr line %zu: %s\n", i + 1, line);
}

static void test_example_loads(const char *path)
{
	struct config *cfg = NULL, *def = NULL;
	char err[8192], tmp[4096];
	int ret;

	ret = load_captured(path, &cfg, err, sizeof(err));
	TAP_EQ_INT(ret, 0, "the example config %s loads", path);
	TAP_EQ_STR(err, "", "the example config loads without a message");
	if (ret != 0) {
		printf("# %s", err);
		return;
	}
	TAP_EQ_STR(cfg->path, path, "cfg->path is the file loaded");
	TAP_EQ_INT(cfg->nlisteners, 2, "the example has two listeners");
	if (cfg->nlisteners == 2) {
		const struct config_listener *a = &cfg->listeners[0];
		const struct config_listener *b = &cfg->listeners[1];

		TAP_EQ_STR(a->name, "submission", "first listener's name");
		TAP_EQ_INT(a->mode, LISTENER_STARTTLS, "submission: starttls");
		TAP_EQ_INT(a->naddrs, 2, "submission: two addresses");
		if (a->naddrs == 2) {
			TAP_EQ_STR(a->addrs[0].text, "0.0.0.0:587",
				   "submission: IPv4 address");
			TAP_EQ_STR(a->addrs[1].text, "[::]:587",
				   "submission: IPv6 address");
		}
		TAP_EQ_STR(b->name, "submissions", "second listener's name");
		TAP_EQ_INT(b->mode, LISTENER_IMPLICIT_TLS,
			   "submissions: implicit-tls");
		TAP_EQ_INT(b->naddrs, 2, "submissions: two addresses");
		if (b->naddrs == 2) {
			TAP_EQ_STR(b->addrs[0].text, "0.0.0.0:465",
				   "submissions: IPv4 address");
			TAP_EQ_STR(b->addrs[1].text, "[::]:465",
				   "submissions: IPv6 address");
		}
	}
	TAP_EQ_STR(cfg->tls.certificate, "/etc/submitproxy/cert.pem",
		   "example: tls certificate");
	TAP_EQ_STR(cfg->tls.key, "/etc/submitproxy/key.pem",
		   "example: tls key");
	TAP_OK(cfg->tls.line > 0, "example: [tls] line recorded");
	TAP_OK(cfg->tls.client_ca == NULL && cfg->tls.ciphers == NULL &&
		   cfg->tls.ciphersuites == NULL &&
		   cfg->relay.sender_map == NULL && cfg->nsnis == 0,
	       "example: keys without a default are commented out");

	/* The example must state the real defaults: compare it with a file
	 * that sets nothing but one listener. */
	ret =
	    load_text("[listener x]\naddress = 127.0.0.1:2525\nmode = plain\n",
		      &def, tmp, sizeof(tmp), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "a minimal config loads");
	if (ret == 0) {
		TAP_EQ_STR(cfg->server.user, def->server.user,
			   "example: default user");
		TAP_EQ_INT(cfg->server.workers, def->server.workers,
			   "example: default workers");
		TAP_EQ_INT(cfg->server.log_level, def->server.log_level,
			   "example: default log_level");
		TAP_EQ_STR(cfg->tls.min_version, def->tls.min_version,
			   "example: default min_version");
		TAP_OK(memcmp(&cfg->auth.mechanisms, &def->auth.mechanisms,
			      sizeof(cfg->auth.mechanisms)) == 0,
		       "example: default mechanisms");
		TAP_EQ_STR(cfg->auth.pam_service, def->auth.pam_service,
			   "example: default pam_service");
		TAP_OK(cfg->auth.max_failures == def->auth.max_failures &&
			   cfg->auth.failure_delay_ms ==
			       def->auth.failure_delay_ms &&
			   cfg->auth.address_failure_limit ==
			       def->auth.address_failure_limit &&
			   cfg->auth.address_failure_window_ms ==
			       def->auth.address_failure_window_ms &&
			   cfg->auth.helper_workers ==
			       def->auth.helper_workers &&
			   cfg->auth.timeout_ms == def->auth.timeout_ms,
		       "example: default [auth] numbers");
		TAP_OK(cfg->backend.count == 1 &&
			   strcmp(cfg->backend.list[0].address,
				  def->backend.list[0].address) == 0,
		       "example: default backend address");
		TAP_OK(cfg->backend.xclient == def->backend.xclient &&
			   cfg->backend.connect_timeout_ms ==
			       def->backend.connect_timeout_ms &&
			   cfg->backend.timeout_ms == def->backend.timeout_ms &&
			   cfg->backend.handover_timeout_ms ==
			       def->backend.handover_timeout_ms &&
			   cfg->backend.probe_interval_ms ==
			       def->backend.probe_interval_ms &&
			   cfg->backend.retry_interval_ms ==
			       def->backend.retry_interval_ms,
		       "example: default [backend] values");
		TAP_OK(memcmp(&cfg->limits, &def->limits,
			      sizeof(cfg->limits)) == 0,
		       "example: default [limits]");
		TAP_OK(cfg->relay.received_header ==
			       def->relay.received_header &&
			   cfg->relay.bare_newline == def->relay.bare_newline,
		       "example: default [relay]");
		TAP_OK(cfg->listeners[0].require_tls ==
			       def->listeners[0].require_tls &&
			   cfg->listeners[0].allow_plaintext_auth ==
			       def->listeners[0].allow_plaintext_auth &&
			   cfg->listeners[0].proxy_protocol ==
			       def->listeners[0].proxy_protocol,
		       "example: default listener flags");
	}
	config_free(def);
	config_free(cfg);
}

static void test_defaults(void)
{
	const char *text = "[listener test]\n"
			   "address = 127.0.0.1:2525\n"
			   "mode = plain\n";
	struct config *cfg = NULL;
	char path[4096], err[4096];
	int ret;

	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "defaults: one plain listener is a whole config");
	TAP_EQ_STR(err, "", "defaults: no message");
	if (ret != 0)
		return;

	TAP_OK(cfg->server.hostname != NULL && cfg->server.hostname[0] != '\0',
	       "defaults: hostname is the machine's (%s)",
	       cfg->server.hostname ? cfg->server.hostname : "(null)");
	TAP_EQ_STR(cfg->server.user, "submitproxy", "defaults: user");
	TAP_EQ_INT(cfg->server.workers, 1, "defaults: workers");
	TAP_EQ_INT(cfg->server.log_level, LOG_LEVEL_INFO,
		   "defaults: log_level");

	TAP_EQ_INT(cfg->nlisteners, 1, "defaults: one listener");
	TAP_EQ_STR(cfg->listeners[0].name, "test", "defaults: listener name");
	TAP_EQ_INT(cfg->listeners[0].line, 1, "defaults: listener header line");
	TAP_EQ_INT(cfg->listeners[0].naddrs, 1, "defaults: one address");
	TAP_EQ_STR(cfg->listeners[0].addrs[0].text, "127.0.0.1:2525",
		   "defaults: address text");
	TAP_EQ_INT(cfg->listeners[0].mode, LISTENER_PLAIN,
		   "defaults: mode set");
	TAP_EQ_INT(cfg->listeners[0].require_tls, true,
		   "defaults: require_tls yes");
	TAP_EQ_INT(cfg->listeners[0].allow_plaintext_auth, false,
		   "defaults: allow_plaintext_auth no");
	TAP_EQ_INT(cfg->listeners[0].proxy_protocol, false,
		   "defaults: proxy_protocol no");

	TAP_OK(cfg->tls.certificate == NULL && cfg->tls.key == NULL,
	       "defaults: no certificate");
	TAP_EQ_STR(cfg->tls.min_version, "TLSv1.2", "defaults: min_version");
	TAP_OK(cfg->tls.ciphers == NULL && cfg->tls.ciphersuites == NULL &&
		   cfg->tls.client_ca == NULL,
	       "defaults: OpenSSL's ciphers, no client CA");
	TAP_EQ_INT(cfg->tls.line, 0, "defaults: no [tls] line");
	TAP_EQ_INT(cfg->nsnis, 0, "defaults: no SNI");

	TAP_EQ_STR(cfg->auth.pam_service, "submitproxy",
		   "defaults: pam_service");
	TAP_EQ_INT(cfg->auth.mechanisms, AUTH_MECH_PLAIN | AUTH_MECH_LOGIN,
		   "defaults: mechanisms");
	TAP_EQ_INT(cfg->auth.max_failures, 3, "defaults: max_failures");
	TAP_EQ_INT(cfg->auth.failure_delay_ms, 2000, "defaults: failure_delay");
	TAP_EQ_INT(cfg->auth.address_failure_limit, 10,
		   "defaults: address_failure_limit");
	TAP_EQ_INT(cfg->auth.address_failure_window_ms, 600000,
		   "defaults: address_failure_window");
	TAP_EQ_INT(cfg->auth.helper_workers, 4, "defaults: helper_workers");
	TAP_EQ_INT(cfg->auth.timeout_ms, 30000, "defaults: auth timeout");

	TAP_EQ_INT(cfg->backend.count, 1, "defaults: one backend");
	TAP_EQ_STR(cfg->backend.list[0].address, "127.0.0.1:25",
		   "defaults: backend address");
	TAP_OK(cfg->backend.list[0].unix_path == NULL,
	       "defaults: backend over TCP");
	TAP_EQ_STR(cfg->backend.list[0].tcp.text, "127.0.0.1:25",
		   "defaults: backend tcp address");
	TAP_EQ_INT(cfg->backend.list[0].tcp.ss.ss_family, AF_INET,
		   "defaults: backend is IPv4");
	TAP_EQ_INT(cfg->backend.list[0].xclient, XCLIENT_AUTO,
		   "defaults: the backend's xclient");
	TAP_EQ_INT(cfg->backend.probe_interval_ms, 600000,
		   "defaults: probe_interval");
	TAP_EQ_INT(cfg->backend.retry_interval_ms, 30000,
		   "defaults: retry_interval");
	TAP_EQ_INT(cfg->relay.nul_bytes, NUL_BYTES_REJECT,
		   "defaults: nul_bytes");
	TAP_EQ_INT(cfg->limits.ipv4_prefix, 32, "defaults: ipv4_prefix");
	TAP_EQ_INT(cfg->limits.ipv6_prefix, 64, "defaults: ipv6_prefix");
	TAP_EQ_INT(cfg->limits.user_messages_per_hour, 200,
		   "defaults: user_messages_per_hour");
	TAP_EQ_INT(cfg->limits.user_recipients_per_hour, 500,
		   "defaults: user_recipients_per_hour");
	TAP_EQ_INT(cfg->limits.user_recipients_per_day, 2000,
		   "defaults: user_recipients_per_day");
	TAP_OK(cfg->limits.user_limits == NULL, "defaults: no user_limits");
	TAP_EQ_INT(cfg->auth.user_failure_limit, 20,
		   "defaults: user_failure_limit");
	TAP_EQ_INT(cfg->auth.user_failure_window_ms, 3600000,
		   "defaults: user_failure_window");
	TAP_OK(cfg->auth.known_address_window_ms == UINT64_C(2592000000),
	       "defaults: known_address_window is 30 days");
	TAP_EQ_INT(cfg->policy.store.kind, STORE_MEMORY,
		   "defaults: the in-process store");
	TAP_EQ_STR(cfg->policy.key_prefix, "submitproxy:",
		   "defaults: key_prefix");
	TAP_EQ_INT(cfg->policy.timeout_ms, 250, "defaults: policy timeout");
	TAP_EQ_INT(cfg->policy.on_store_error, STORE_ERROR_LOCAL,
		   "defaults: on_store_error");
	TAP_EQ_STR(cfg->backend.helo_name, cfg->server.hostname,
		   "defaults: helo_name is the hostname");
	TAP_EQ_INT(cfg->backend.xclient, XCLIENT_AUTO, "defaults: xclient");
	TAP_EQ_INT(cfg->backend.connect_timeout_ms, 10000,
		   "defaults: connect_timeout");
	TAP_EQ_INT(cfg->backend.timeout_ms, 300000,
		   "defaults: backend timeout");
	TAP_EQ_INT(cfg->backend.handover_timeout_ms, 30000,
		   "defaults: handover_timeout");

	TAP_EQ_INT(cfg->limits.max_connections, 10000,
		   "defaults: max_connections");
	TAP_EQ_INT(cfg->limits.max_connections_per_address, 50,
		   "defaults: max_connections_per_address");
	TAP_EQ_INT(cfg->limits.max_line_length, 2048,
		   "defaults: max_line_length");
	TAP_EQ_INT(cfg->limits.max_message_size, UINT64_C(50) << 20,
		   "defaults: max_message_size");
	TAP_EQ_INT(cfg->limits.max_recipients, 100, "defaults: max_recipients");
	TAP_EQ_INT(cfg->limits.max_errors, 20, "defaults: max_errors");
	TAP_EQ_INT(cfg->limits.idle_timeout_ms, 300000,
		   "defaults: idle_timeout");
	TAP_EQ_INT(cfg->limits.handshake_timeout_ms, 30000,
		   "defaults: handshake_timeout");
	TAP_EQ_INT(cfg->limits.greeting_delay_ms, 0,
		   "defaults: greeting_delay");

	TAP_EQ_INT(cfg->relay.received_header, true,
		   "defaults: received_header");
	TAP_EQ_INT(cfg->relay.bare_newline, BARE_NEWLINE_NORMALIZE,
		   "defaults: bare_newline");
	TAP_OK(cfg->relay.sender_map == NULL, "defaults: no sender_map");
	config_free(cfg);
}

/* Every key set to something else than its default, in the file forms a
 * person may write: indented keys, CRLF ends, "key: value", a byte order
 * mark, a key line longer than inih's 200-byte buffer. */
static void test_values_set(void)
{
	static const char ciphers[] =
	    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
	    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
	    "DHE-RSA-CHACHA20-POLY1305";
	char text[8192], path[4096], err[4096];
	struct config *cfg = NULL;
	int ret;

	snprintf(text, sizeof(text),
		 "\xef\xbb\xbf# with a BOM\n"
		 "[server]\n"
		 "  hostname = mx.example.net\n"
		 "\tuser = nobody\n"
		 "workers = auto\n"
		 "log_level = DEBUG\r\n"
		 "[listener a]\n"
		 "address = 127.0.0.1:2525 ,[::1]:2525,  192.0.2.1:25\n"
		 "mode = implicit-tls\n"
		 "require_tls = no\n"
		 "allow_plaintext_auth = on\n"
		 "proxy_protocol: true\n"
		 "[ listener  b ]\n"
		 "address = [2001:db8::1]:587\n"
		 "[tls]\n"
		 "certificate = /c.pem\n"
		 "key = /k.pem\n"
		 "min_version = tlsv1.3\n"
		 "ciphers = %s\n"
		 "ciphersuites = TLS_AES_256_GCM_SHA384\n"
		 "client_ca = /ca.pem\n"
		 "[sni Mail.Example.ORG]\n"
		 "certificate = /org.pem\n"
		 "key = /org.key\n"
		 "[auth]\n"
		 "pam_service = smtp\n"
		 "mechanisms = plain\n"
		 "max_failures = 5\n"
		 "failure_delay = 500ms\n"
		 "address_failure_limit = 20\n"
		 "address_failure_window = 1h\n"
		 "helper_workers = 64\n"
		 "timeout = 1m\n"
		 "[backend]\n"
		 "address = unix:/run/mta/smtp.sock\n"
		 "helo_name = [192.0.2.7]\n"
		 "xclient = no\n"
		 "connect_timeout = 3\n"
		 "timeout = 10m\n"
		 "[limits]\n"
		 "max_connections = 5\n"
		 "max_connections_per_address = 2\n"
		 "max_line_length = 512\n"
		 "max_message_size = 1g\n"
		 "max_recipients = 1000\n"
		 "max_errors = 3\n"
		 "idle_timeout = 60s\n"
		 "handshake_timeout = 10s\n"
		 "greeting_delay = 1500ms\n"
		 "[relay]\n"
		 "received_header = off\n"
		 "bare_newline = reject\n"
		 "sender_map = /etc/submitproxy/senders\n",
		 ciphers);
	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "values: a config setting every key loads");
	TAP_EQ_STR(err, "", "values: no message");
	if (ret != 0) {
		printf("# %s", err);
		return;
	}
	TAP_EQ_STR(cfg->server.hostname, "mx.example.net", "values: hostname");
	TAP_EQ_STR(cfg->server.user, "nobody", "values: indented user");
	TAP_OK(cfg->server.workers >= 1 && cfg->server.workers <= 64,
	       "values: workers = auto gives 1..64 (%u)",
	       (unsigned)cfg->server.workers);
	TAP_EQ_INT(cfg->server.log_level, LOG_LEVEL_DEBUG,
		   "values: log_level with CRLF, any case");
	TAP_EQ_INT(cfg->nlisteners, 2, "values: two listeners");
	TAP_EQ_INT(cfg->listeners[0].naddrs, 3, "values: three addresses");
	TAP_EQ_STR(cfg->listeners[0].addrs[0].text, "127.0.0.1:2525",
		   "values: address 1");
	TAP_EQ_STR(cfg->listeners[0].addrs[1].text, "[::1]:2525",
		   "values: address 2");
	TAP_EQ_STR(cfg->listeners[0].addrs[2].text, "192.0.2.1:25",
		   "values: address 3");
	TAP_EQ_INT(cfg->listeners[0].mode, LISTENER_IMPLICIT_TLS,
		   "values: mode");
	TAP_OK(!cfg->listeners[0].require_tls &&
		   cfg->listeners[0].allow_plaintext_auth &&
		   cfg->listeners[0].proxy_protocol,
	       "values: listener flags, \"key: value\" too");
	TAP_EQ_STR(cfg->listeners[1].name, "b", "values: blanks in header");
	TAP_EQ_INT(cfg->listeners[1].line, 13, "values: header line of b");
	TAP_EQ_INT(cfg->listeners[1].mode, LISTENER_STARTTLS,
		   "values: listener b defaults to starttls");
	TAP_EQ_STR(cfg->tls.min_version, "TLSv1.3",
		   "values: min_version canonical");
	TAP_EQ_STR(cfg->tls.ciphers, ciphers,
		   "values: a %zu-byte cipher line is kept whole",
		   sizeof(ciphers) - 1);
	TAP_EQ_STR(cfg->tls.ciphersuites, "TLS_AES_256_GCM_SHA384",
		   "values: ciphersuites");
	TAP_EQ_STR(cfg->tls.client_ca, "/ca.pem", "values: client_ca");
	TAP_EQ_INT(cfg->tls.line, 15, "values: [tls] line");
	TAP_EQ_INT(cfg->nsnis, 1, "values: one SNI");
	TAP_EQ_STR(cfg->snis[0].hostname, "mail.example.org",
		   "values: SNI hostname lower-cased");
	TAP_EQ_STR(cfg->snis[0].certificate, "/org.pem", "values: SNI cert");
	TAP_EQ_STR(cfg->snis[0].key, "/org.key", "values: SNI key");
	TAP_EQ_INT(cfg->snis[0].line, 22, "values: SNI line");
	TAP_EQ_STR(cfg->auth.pam_service, "smtp", "values: pam_service");
	TAP_EQ_INT(cfg->auth.mechanisms, AUTH_MECH_PLAIN, "values: mechanisms");
	TAP_EQ_INT(cfg->auth.max_failures, 5, "values: max_failures");
	TAP_EQ_INT(cfg->auth.failure_delay_ms, 500, "values: failure_delay");
	TAP_EQ_INT(cfg->auth.address_failure_limit, 20,
		   "values: address_failure_limit");
	TAP_EQ_INT(cfg->auth.address_failure_window_ms, 3600000,
		   "values: address_failure_window");
	TAP_EQ_INT(cfg->auth.helper_workers, 64, "values: helper_workers");
	TAP_EQ_INT(cfg->auth.timeout_ms, 60000, "values: auth timeout");
	TAP_EQ_STR(cfg->backend.list[0].address, "unix:/run/mta/smtp.sock",
		   "values: backend address as written");
	TAP_EQ_STR(cfg->backend.list[0].unix_path, "/run/mta/smtp.sock",
		   "values: backend unix path");
	TAP_EQ_INT(cfg->backend.list[0].xclient, XCLIENT_NO,
		   "values: the backend takes [backend] xclient");
	TAP_EQ_STR(cfg->backend.helo_name, "[192.0.2.7]",
		   "values: helo_name address literal");
	TAP_EQ_INT(cfg->backend.xclient, XCLIENT_NO, "values: xclient");
	TAP_EQ_INT(cfg->backend.connect_timeout_ms, 3000,
		   "values: connect_timeout in plain seconds");
	TAP_EQ_INT(cfg->backend.timeout_ms, 600000, "values: backend timeout");
	TAP_EQ_INT(cfg->limits.max_connections, 5, "values: max_connections");
	TAP_EQ_INT(cfg->limits.max_connections_per_address, 2,
		   "values: max_connections_per_address");
	TAP_EQ_INT(cfg->limits.max_line_length, 512, "values: max_line_length");
	TAP_EQ_INT(cfg->limits.max_message_size, UINT64_C(1) << 30,
		   "values: max_message_size");
	TAP_EQ_INT(cfg->limits.max_recipients, 1000, "values: max_recipients");
	TAP_EQ_INT(cfg->limits.max_errors, 3, "values: max_errors");
	TAP_EQ_INT(cfg->limits.idle_timeout_ms, 60000, "values: idle_timeout");
	TAP_EQ_INT(cfg->limits.handshake_timeout_ms, 10000,
		   "values: handshake_timeout");
	TAP_EQ_INT(cfg->limits.greeting_delay_ms, 1500,
		   "values: greeting_delay");
	TAP_EQ_INT(cfg->relay.received_header, false,
		   "values: received_header");
	TAP_EQ_INT(cfg->relay.bare_newline, BARE_NEWLINE_REJECT,
		   "values: bare_newline");
	TAP_EQ_STR(cfg->relay.sender_map, "/etc/submitproxy/senders",
		   "values: sender_map");
	config_free(cfg);
}

/* [limits] max_junk_commands: 100 by default, 0 turns the limit off. */
static void test_max_junk_commands(void)
{
	static const struct {
		const char *value; /* NULL: the key left out */
		uint32_t want;
	} cases[] = {
	    {NULL, 100},
	    {"0", 0},
	    {"1", 1},
	    {"4294967295", UINT32_MAX},
	};
	char text[256], path[4096], err[4096];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct config *cfg = NULL;
		int ret;

		snprintf(text, sizeof(text),
			 "[listener a]\naddress = 127.0.0.1:2525\n"
			 "mode = plain\n[limits]\n%s%s\n",
			 cases[i].value != NULL ? "max_junk_commands = " : "",
			 cases[i].value != NULL ? cases[i].value : "");
		ret = load_text(text, &cfg, path, sizeof(path), err,
				sizeof(err));
		TAP_EQ_INT(ret, 0, "max_junk_commands = %s loads",
			   cases[i].value ? cases[i].value : "(unset)");
		TAP_EQ_STR(err, "", "max_junk_commands = %s: no message",
			   cases[i].value ? cases[i].value : "(unset)");
		if (ret == 0)
			TAP_EQ_INT(cfg->limits.max_junk_commands, cases[i].want,
				   "max_junk_commands = %s gives %u",
				   cases[i].value ? cases[i].value : "(unset)",
				   (unsigned)cases[i].want);
		config_free(cfg);
	}
}

static void test_backend_tcp(void)
{
	struct config *cfg = NULL;
	char path[4096], err[4096];
	int ret;

	ret = load_text("[listener a]\naddress = 127.0.0.1:2525\nmode = plain\n"
			"[backend]\naddress = [::1]:10025\n",
			&cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "backend over IPv6 loads");
	if (ret != 0)
		return;
	TAP_OK(cfg->backend.list[0].unix_path == NULL,
	       "backend: not a unix socket");
	TAP_EQ_STR(cfg->backend.list[0].tcp.text, "[::1]:10025",
		   "backend: tcp text");
	TAP_EQ_INT(cfg->backend.list[0].tcp.ss.ss_family, AF_INET6,
		   "backend: IPv6 family");
	config_free(cfg);
}

static void test_backend_list(void)
{
	struct config *cfg = NULL;
	char path[4096], err[4096];
	int ret;

	ret = load_text("[listener a]\naddress = 127.0.0.1:2525\nmode = plain\n"
			"[backend]\naddress = 127.0.0.1:25 , [::1]:10025 "
			"xclient=no,unix:/run/exim.sock xclient=yes\n"
			"xclient = no\nprobe_interval = 5m\n"
			"retry_interval = 10s\n"
			"[relay]\nnul_bytes = strip\n",
			&cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "backend list loads");
	if (ret != 0)
		return;
	TAP_EQ_INT(cfg->backend.count, 3, "backend list: three");
	TAP_EQ_STR(cfg->backend.list[0].address, "127.0.0.1:25",
		   "backend list: first, blanks trimmed");
	TAP_EQ_INT(cfg->backend.list[0].xclient, XCLIENT_NO,
		   "backend list: [backend] xclient after the list applies");
	TAP_EQ_STR(cfg->backend.list[1].address, "[::1]:10025",
		   "backend list: second");
	TAP_EQ_INT(cfg->backend.list[1].xclient, XCLIENT_NO,
		   "backend list: its own xclient=no");
	TAP_EQ_STR(cfg->backend.list[2].unix_path, "/run/exim.sock",
		   "backend list: a unix socket third");
	TAP_EQ_INT(cfg->backend.list[2].xclient, XCLIENT_YES,
		   "backend list: its own xclient=yes wins");
	TAP_EQ_INT(cfg->backend.probe_interval_ms, 300000,
		   "backend: probe_interval");
	TAP_EQ_INT(cfg->backend.retry_interval_ms, 10000,
		   "backend: retry_interval");
	TAP_EQ_INT(cfg->relay.nul_bytes, NUL_BYTES_STRIP, "relay: nul_bytes");
	config_free(cfg);

	static const char *const bad[] = {
	    "address = 127.0.0.1:25, 127.0.0.1:25\n",
	    "address = 127.0.0.1:25,\n",
	    "address = 127.0.0.1:25 pipelining=no\n",
	    "address = 127.0.0.1:25 xclient=maybe\n",
	    "address = unix:relative\n",
	    "address = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];

		snprintf(text, sizeof(text),
			 "[listener a]\naddress = 127.0.0.1:2525\n"
			 "mode = plain\n[backend]\n%s",
			 bad[i]);
		cfg = NULL;
		ret = load_text(text, &cfg, path, sizeof(path), err,
				sizeof(err));
		TAP_OK(ret != 0 && strstr(err, ":5:") != NULL,
		       "backend list refused at its line: %.40s", bad[i]);
		if (ret == 0)
			config_free(cfg);
	}
}

/* [metrics]: off unless address is set; allow is a list of ranges. */
static void test_metrics_section(void)
{
	static const char base[] = "[listener a]\naddress = 127.0.0.1:2525\n"
				   "mode = plain\n";
	struct config *cfg = NULL;
	char path[4096], err[4096], text[1024], ntop[INET6_ADDRSTRLEN];
	int ret;

	ret = load_text(base, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "metrics: a file without [metrics] loads");
	if (ret == 0) {
		TAP_OK(!cfg->metrics.enabled, "metrics: off by default");
		TAP_OK(cfg->metrics.allow == NULL && cfg->metrics.nallow == 0,
		       "metrics: no allow list by default");
		config_free(cfg);
	}

	snprintf(text, sizeof(text), "%s[metrics]\n", base);
	cfg = NULL;
	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "metrics: an empty [metrics] loads");
	if (ret == 0) {
		TAP_OK(!cfg->metrics.enabled,
		       "metrics: an empty [metrics] is still off");
		config_free(cfg);
	}

	snprintf(text, sizeof(text),
		 "%s[metrics]\naddress = 127.0.0.1:9465\n", base);
	cfg = NULL;
	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "metrics: address loads");
	TAP_EQ_STR(err, "", "metrics: address: no message");
	if (ret == 0) {
		TAP_OK(cfg->metrics.enabled, "metrics: address turns it on");
		TAP_EQ_STR(cfg->metrics.address.text, "127.0.0.1:9465",
			   "metrics: address text");
		TAP_EQ_INT(cfg->metrics.address.ss.ss_family, AF_INET,
			   "metrics: IPv4 address");
		TAP_EQ_INT(cfg->metrics.nallow, 0,
			   "metrics: no allow: anyone who reaches it");
		config_free(cfg);
	}

	snprintf(text, sizeof(text),
		 "%s[metrics]\naddress = [::1]:9465\n"
		 "allow = 127.0.0.1/32,  ::1 ,10.0.0.0/8,2001:db8::/32\n",
		 base);
	cfg = NULL;
	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, 0, "metrics: IPv6 address and an allow list load");
	TAP_EQ_STR(err, "", "metrics: allow list: no message");
	if (ret == 0) {
		TAP_EQ_STR(cfg->metrics.address.text, "[::1]:9465",
			   "metrics: IPv6 address text");
		TAP_EQ_INT(cfg->metrics.address.ss.ss_family, AF_INET6,
			   "metrics: IPv6 address family");
		TAP_EQ_INT(cfg->metrics.nallow, 4,
			   "metrics: four ranges, blanks trimmed");
		if (cfg->metrics.nallow == 4) {
			static const struct {
				int family;
				const char *addr;
				unsigned prefix;
			} want[] = {{AF_INET, "127.0.0.1", 32},
				    {AF_INET6, "::1", 128},
				    {AF_INET, "10.0.0.0", 8},
				    {AF_INET6, "2001:db8::", 32}};

			for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
				const struct config_cidr *c =
				    &cfg->metrics.allow[i];

				inet_ntop(c->family, c->addr, ntop,
					  sizeof(ntop));
				TAP_OK(c->family == want[i].family &&
					   strcmp(ntop, want[i].addr) == 0 &&
					   c->prefix == want[i].prefix,
				       "metrics: allow entry %zu is %s/%u", i,
				       want[i].addr, want[i].prefix);
			}
		}
		config_free(cfg);
	}

	/* Every bad entry of one allow line is reported, at its line. */
	snprintf(text, sizeof(text),
		 "%s[metrics]\naddress = 127.0.0.1:9465\n"
		 "allow = bogus, 127.0.0.1/32, 10.1.2.3/8\n",
		 base);
	cfg = NULL;
	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, -1, "metrics: two bad allow entries: refused");
	TAP_EQ_INT(count_lines(err), 2,
		   "metrics: two bad allow entries: two messages");
	check_error_line("metrics: first bad allow entry", err, 0, path, 6,
			 "invalid address range \"bogus\"");
	check_error_line("metrics: second bad allow entry", err, 1, path, 6,
			 "invalid address range \"10.1.2.3/8\"");
	config_free(cfg);
}

struct error_case {
	const char *what;
	const char *text;
	int line;
	const char *message;
};

/* Each file holds exactly one mistake, reported once, on its line. */
static const struct error_case error_cases[] = {
    {"unknown key",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[server]\n"
     "foo = 1\n",
     5, "unknown key \"foo\" in [server]"},
    {"unknown key in a listener",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\nport = 25\n", 4,
     "unknown key \"port\" in [listener a]"},
    {"unknown section",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n\n[bogus]\n"
     "x = 1\n",
     5, "unknown section [bogus]"},
    {"bad duration",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "idle_timeout = 10x\n",
     5, "invalid duration \"10x\" for idle_timeout"},
    {"bad size",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "max_message_size = 5X\n",
     5, "invalid size \"5X\" for max_message_size"},
    {"bad bool",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "require_tls = maybe\n",
     4, "invalid boolean \"maybe\" for require_tls"},
    {"bad mode", "[listener a]\naddress = 127.0.0.1:25\nmode = tls\n", 3,
     "invalid mode \"tls\" (expected starttls, implicit-tls or plain)"},
    {"bad address", "[listener a]\naddress = 1.2.3.4\nmode = plain\n", 2,
     "invalid address \"1.2.3.4\""},
    {"bad address in a list",
     "[listener a]\nmode = plain\naddress = 1.2.3.4:25, ::1:25\n", 3,
     "invalid address \"::1:25\""},
    {"empty address in a list",
     "[listener a]\nmode = plain\naddress = 1.2.3.4:25,\n", 3, "empty entry"},
    {"listener without address",
     "[server]\nworkers = 2\n[listener a]\n"
     "mode = plain\n",
     3, "[listener a] has no address"},
    {"starttls listener without [tls]",
     "[server]\nworkers = 2\n\n[listener a]\naddress = 127.0.0.1:25\n", 4,
     "[listener a] uses starttls but [tls] has no certificate and key"},
    {"implicit-tls listener without [tls] key",
     "[listener a]\naddress = 127.0.0.1:25\nmode = implicit-tls\n", 1,
     "[listener a] uses implicit-tls"},
    {"duplicate key",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\nmode = plain\n", 4,
     "duplicate key \"mode\" in [listener a] (first set at line 3)"},
    {"max_errors 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "max_errors = 0\n",
     5, "max_errors \"0\" is out of range (1..4294967295)"},
    {"duplicate section",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[relay]\n"
     "[relay]\n",
     5, "duplicate section [relay] (first at line 4)"},
    {"duplicate listener name",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[listener a]\n"
     "address = 127.0.0.1:26\nmode = plain\n",
     4, "duplicate section [listener a] (first at line 1)"},
    {"listener without name",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[listener]\n"
     "address = 127.0.0.1:26\n",
     4, "section [listener] needs a name: [listener NAME]"},
    {"server with a name",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[server x]\n", 4,
     "section [server] takes no name"},
    {"address on two listeners",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[listener b]\n"
     "mode = plain\naddress = [::1]:25, 127.0.0.1:25\n",
     6, "address 127.0.0.1:25 is already used by [listener a] (line 2)"},
    {"address twice in one listener",
     "[listener a]\naddress = [::1]:25,[0::1]:25\nmode = plain\n", 2,
     "address [::1]:25 is listed twice"},
    {"no listener", "# nothing\n[server]\nworkers = 2\n", 3,
     "no [listener NAME] section"},
    {"empty file", "", 1, "no [listener NAME] section"},
    {"tls key without certificate",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[tls]\n"
     "key = /k.pem\n",
     5, "[tls] key is set but certificate is not"},
    {"tls certificate without key",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[tls]\n"
     "certificate = /c.pem\n",
     5, "[tls] certificate is set but key is not"},
    {"sni without key",
     TLS_OK "[listener a]\naddress = 127.0.0.1:25\n[sni a.example]\n"
	    "certificate = /a.pem\n",
     6, "[sni a.example] has no key"},
    {"sni twice",
     TLS_OK "[listener a]\naddress = 127.0.0.1:25\n"
	    "[sni a.example]\ncertificate = /a.pem\n"
	    "key = /a.key\n[sni A.EXAMPLE]\n"
	    "certificate = /b.pem\nkey = /b.key\n",
     9, "duplicate section [sni a.example] (first at line 6)"},
    {"sni bad hostname",
     TLS_OK "[listener a]\naddress = 127.0.0.1:25\n[sni a_b.example]\n", 6,
     "invalid hostname \"a_b.example\""},
    {"idle_timeout 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "idle_timeout = 0\n",
     5, "idle_timeout must be greater than 0"},
    {"handshake_timeout 0ms",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "handshake_timeout = 0ms\n",
     5, "handshake_timeout must be greater than 0"},
    {"auth timeout 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "timeout = 0s\n",
     5, "timeout must be greater than 0"},
    {"backend connect_timeout 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[backend]\n"
     "connect_timeout = 0\n",
     5, "connect_timeout must be greater than 0"},
    {"backend timeout 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[backend]\n"
     "timeout = 0h\n",
     5, "timeout must be greater than 0"},
    {"duration overflow",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "failure_delay = 99999999999999999999s\n",
     5, "is too large"},
    {"workers out of range",
     "[server]\nworkers = 65\n[listener a]\naddress = 127.0.0.1:25\n"
     "mode = plain\n",
     2, "invalid workers \"65\" (expected a number from 1 to 64, or auto)"},
    {"workers not a number",
     "[server]\nworkers = many\n[listener a]\naddress = 127.0.0.1:25\n"
     "mode = plain\n",
     2, "invalid workers \"many\" (expected a number from 1 to 64, or auto)"},
    {"log_level",
     "[server]\nlog_level = verbose\n[listener a]\n"
     "address = 127.0.0.1:25\nmode = plain\n",
     2,
     "invalid log_level \"verbose\" (expected error, warn, info or "
     "debug)"},
    {"hostname",
     "[server]\nhostname = mail example\n[listener a]\n"
     "address = 127.0.0.1:25\nmode = plain\n",
     2, "invalid hostname \"mail example\""},
    {"max_line_length below RFC 5321",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "max_line_length = 511\n",
     5, "max_line_length \"511\" is out of range (512..65536)"},
    {"mechanisms unknown",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "mechanisms = PLAIN CRAM-MD5\n",
     5, "unknown mechanism \"CRAM-MD5\""},
    {"mechanisms twice",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "mechanisms = login LOGIN\n",
     5, "mechanisms lists LOGIN twice"},
    {"helper_workers 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "helper_workers = 0\n",
     5, "helper_workers \"0\" is out of range (1..64)"},
    {"min_version",
     TLS_OK "min_version = TLSv1.1\n[listener a]\n"
	    "address = 127.0.0.1:25\n",
     4, "invalid min_version \"TLSv1.1\" (expected TLSv1.2 or TLSv1.3)"},
    {"backend unix path relative",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[backend]\n"
     "address = unix:run/smtp.sock\n",
     5, "backend socket path \"run/smtp.sock\" is not absolute"},
    {"backend address",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[backend]\n"
     "address = localhost:25\n",
     5, "invalid backend address \"localhost:25\""},
    {"xclient",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[backend]\nxclient = maybe\n",
     5, "invalid xclient \"maybe\" (expected auto, yes or no)"},
    {"bare_newline",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[relay]\nbare_newline = strip\n",
     5, "invalid bare_newline \"strip\" (expected normalize or reject)"},
    {"empty value",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[relay]\nsender_map =\n",
     5, "missing value for sender_map"},
    {"inline comment",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "proxy_protocol = yes # behind haproxy\n",
     4, "comments go on a line of their own"},
    {"inline ; comment",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "proxy_protocol = yes ; behind haproxy\n",
     4, "comments go on a line of their own"},
    {"comment after a header",
     "[listener a] # main\n"
     "address = 127.0.0.1:25\nmode = plain\n",
     1, "unexpected text after ']'"},
    {"quoted value",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[tls]\ncertificate = \"/c.pem\"\n",
     5, "values are written without quotes"},
    {"no equals sign",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[relay]\nbare_newline reject\n",
     5, "expected \"key = value\""},
    {"missing key",
     "[listener a]\naddress = 127.0.0.1:25\n= plain\n"
     "mode = plain\n",
     3, "missing key before '='"},
    {"missing ]",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
     "[server\n",
     4, "missing ']'"},
    {"key outside a section",
     "workers = 2\n[listener a]\naddress = 127.0.0.1:25\nmode = plain\n", 1,
     "key \"workers\" is outside of any section"},
    {"max_junk_commands negative",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "max_junk_commands = -1\n",
     5, "invalid number \"-1\" for max_junk_commands"},
    {"max_junk_commands too large",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "max_junk_commands = 4294967296\n",
     5, "max_junk_commands \"4294967296\" is out of range (0..4294967295)"},
    {"ipv4_prefix over 32",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "ipv4_prefix = 33\n",
     5, "ipv4_prefix \"33\" is out of range (0..32)"},
    {"ipv6_prefix over 128",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[limits]\n"
     "ipv6_prefix = 129\n",
     5, "ipv6_prefix \"129\" is out of range (0..128)"},
    {"user_failure_limit 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[auth]\n"
     "user_failure_limit = 0\n",
     5, "user_failure_limit \"0\" is out of range (1..4294967295)"},
    {"a store URL with a host name; its password is not quoted",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[policy]\n"
     "store = redis://:secret@redis.example:6379\n",
     5, "invalid store: the host must be an IP address"},
    {"bad on_store_error",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[policy]\n"
     "on_store_error = ignore\n",
     5, "invalid on_store_error \"ignore\" (expected local or tempfail)"},
    {"key_prefix with a blank",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[policy]\n"
     "key_prefix = a b\n",
     5, "key_prefix \"a b\" may hold printable ASCII only"},
    {"metrics: a host name for address",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = localhost:9465\n",
     5,
     "invalid address \"localhost:9465\" (expected IPv4:PORT or "
     "[IPv6]:PORT)"},
    {"metrics: address without a port",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = 127.0.0.1\n",
     5, "invalid address \"127.0.0.1\""},
    {"metrics: port 0",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = 127.0.0.1:0\n",
     5, "invalid address \"127.0.0.1:0\""},
    {"metrics: two addresses",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = 127.0.0.1:9465, [::1]:9465\n",
     5, "invalid address \"127.0.0.1:9465, [::1]:9465\""},
    {"metrics: bits past the prefix in allow",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = 127.0.0.1:9465\nallow = 127.0.0.1/32, 10.1.2.3/8\n",
     6,
     "invalid address range \"10.1.2.3/8\" (expected ADDRESS or "
     "ADDRESS/PREFIX, with no bits set past the prefix)"},
    {"metrics: a prefix too long in allow",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "allow = ::1/129\n",
     5, "invalid address range \"::1/129\""},
    {"metrics: a host name in allow",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "allow = localhost\n",
     5, "invalid address range \"localhost\""},
    {"metrics: an empty allow entry",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "allow = 127.0.0.1,,::1\n",
     5, "empty entry in the allow list"},
    {"metrics: a trailing comma in allow",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "allow = 127.0.0.1,\n",
     5, "empty entry in the allow list"},
    {"metrics: an unknown key",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "port = 9465\n",
     5, "unknown key \"port\" in [metrics]"},
    {"metrics: address twice",
     "[listener a]\naddress = 127.0.0.1:25\nmode = plain\n[metrics]\n"
     "address = 127.0.0.1:9465\naddress = 127.0.0.1:9466\n",
     6, "duplicate key \"address\" in [metrics]"},
    {"keys are case-sensitive",
     "[listener a]\nAddress = 127.0.0.1:25\nmode = plain\naddress = "
     "127.0.0.1:25\n",
     2, "unknown key \"Address\" in [listener a]"},
};

static void test_error_case(const struct error_case *c)
{
	struct config *cfg = NULL;
	char path[4096], err[8192];
	int ret;

	ret = load_text(c->text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, -1, "%s: config_load fails", c->what);
	TAP_OK(cfg == NULL, "%s: no config returned", c->what);
	TAP_EQ_INT(count_lines(err), 1, "%s: exactly one message", c->what);
	if (count_lines(err) != 1)
		printf("# stderr:\n# %s", err);
	check_error_line(c->what, err, 0, path, c->line, c->message);
	config_free(cfg);
}

/* A store URL holds a password: an error about it never shows it. */
static void test_store_password_not_shown(void)
{
	struct config *cfg = NULL;
	char path[4096], err[8192];

	load_text("[listener a]\naddress = 127.0.0.1:25\nmode = plain\n"
		  "[policy]\nstore = redis://:hunter2@[::1]:99999/0\n",
		  &cfg, path, sizeof(path), err, sizeof(err));
	TAP_OK(cfg == NULL && strstr(err, "store") != NULL &&
		   strstr(err, "hunter2") == NULL,
	       "a bad store URL is reported without its password");
	config_free(cfg);
}

static void test_nul_byte(void)
{
	static const char text[] = "[listener a]\naddress = 127.0.0.1:25\n"
				   "mode = pl\0ain\n";
	struct config *cfg = NULL;
	char path[4096], err[4096];
	int fd, ret;

	temp_path(path, sizeof(path));
	fd = mkstemp(path);
	if (fd < 0 ||
	    write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1) ||
	    close(fd) < 0) {
		perror("test_config: temporary file");
		exit(99);
	}
	ret = load_captured(path, &cfg, err, sizeof(err));
	unlink(path);
	TAP_EQ_INT(ret, -1, "NUL byte: config_load fails");
	/* Line 3 is dropped, so the listener also lacks TLS: two errors. */
	check_error_line("NUL byte", err, 0, path, 3, "NUL byte in line");
}

/* Many mistakes in one file: every one is reported, in file order. */
static void test_all_errors_reported(void)
{
	static const char text[] = "[server]\n"		      /* 1 */
				   "workers = 0\n"	      /* 2 */
				   "log_level = loud\n"	      /* 3 */
				   "colour = blue\n"	      /* 4 */
				   "[listener a]\n"	      /* 5 */
				   "address = 127.0.0.1:25\n" /* 6 */
				   "mode = sometimes\n"	      /* 7 */
				   "[nonsense]\n"	      /* 8 */
				   "ignored = 1\n"	      /* 9 */
				   "[limits]\n"		      /* 10 */
				   "idle_timeout = soon\n"    /* 11 */
				   "max_message_size = 2T\n"  /* 12 */
				   "idle_timeout = 5s\n"      /* 13 */
				   "[listener b]\n";	      /* 14 */
	static const struct {
		int line;
		const char *message;
	} want[] = {
	    {2, "invalid workers \"0\""},
	    {3, "invalid log_level \"loud\""},
	    {4, "unknown key \"colour\" in [server]"},
	    {7, "invalid mode \"sometimes\""},
	    {8, "unknown section [nonsense]"},
	    {11, "invalid duration \"soon\" for idle_timeout"},
	    {12, "invalid size \"2T\" for max_message_size"},
	    {13, "duplicate key \"idle_timeout\" in [limits]"},
	    /* Whole-file checks come after the line-by-line ones; [listener
	     * a] has a refused mode, so its need for TLS is not checked. */
	    {14, "[listener b] has no address"},
	    {14, "[listener b] uses starttls"},
	};
	struct config *cfg = NULL;
	char path[4096], err[8192], what[64];
	int ret;

	ret = load_text(text, &cfg, path, sizeof(path), err, sizeof(err));
	TAP_EQ_INT(ret, -1, "many errors: config_load fails");
	TAP_EQ_INT(count_lines(err), ARRAY_SIZE(want),
		   "many errors: each one reported once");
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		snprintf(what, sizeof(what), "many errors #%zu", i + 1);
		check_error_line(what, err, i, path, want[i].line,
				 want[i].message);
	}
	config_free(cfg);
}

/* config_read(): the same problems as records, for a reload to log one
 * by one; nothing is printed. */
static void test_errors_as_records(void)
{
	static const char text[] = "[server]\n"
				   "colour = blue\n"
				   "[listener a]\n"
				   "address = 127.0.0.1:25\n"
				   "mode = plain\n"
				   "[limits]\n"
				   "max_bogus = 1\n";
	struct config_errors errors = {NULL, 0};
	struct config *cfg = NULL;
	char path[4096], absent[4200], err[4096], printed[4096];
	FILE *f;
	int ret;

	write_temp(text, path, sizeof(path));
	ret = load_captured(path, &cfg, err, sizeof(err));
	TAP_EQ_INT(ret, -1, "records: config_load fails");
	ret = config_read(path, &cfg, &errors);
	TAP_EQ_INT(ret, -1, "records: config_read fails");
	TAP_OK(cfg == NULL, "records: no config returned");
	TAP_EQ_INT(errors.count, 2, "records: one record per problem");
	if (errors.count == 2) {
		TAP_EQ_STR(errors.items[0].file, path, "records: file");
		TAP_EQ_INT(errors.items[0].line, 2, "records: first line");
		TAP_EQ_STR(errors.items[0].message,
			   "unknown key \"colour\" in [server]",
			   "records: first message, without FILE:LINE");
		TAP_EQ_INT(errors.items[1].line, 7, "records: second line");
	}
	f = tmpfile();
	if (f == NULL)
		exit(99);
	config_errors_print(&errors, f);
	rewind(f);
	printed[fread(printed, 1, sizeof(printed) - 1, f)] = '\0';
	fclose(f);
	TAP_EQ_STR(printed, err,
		   "records: config_errors_print() prints what config_load() "
		   "does");
	config_errors_finish(&errors);
	TAP_OK(errors.items == NULL && errors.count == 0,
	       "records: config_errors_finish() empties them");
	unlink(path);

	snprintf(absent, sizeof(absent), "%s.absent", path);
	ret = config_read(absent, &cfg, &errors);
	TAP_EQ_INT(ret, -1, "records: a missing file fails");
	TAP_OK(errors.count == 1 && errors.items[0].line == 0,
	       "records: a missing file is one record at line 0");
	config_errors_finish(&errors);
}

static void test_missing_file(void)
{
	struct config *cfg = NULL;
	char path[4096], err[4096], want[4200];
	int ret;

	snprintf(path, sizeof(path), "%s/test_config.absent.%ld", temp_dir(),
		 (long)getpid());
	ret = load_captured(path, &cfg, err, sizeof(err));
	TAP_EQ_INT(ret, -1, "missing file: config_load fails");
	snprintf(want, sizeof(want), "%s: cannot open: %s\n", path,
		 strerror(ENOENT));
	TAP_EQ_STR(err, want, "missing file: \"FILE: cannot open: ...\"");

	snprintf(path, sizeof(path), "%s", temp_dir());
	ret = load_captured(path, &cfg, err, sizeof(err));
	TAP_EQ_INT(ret, -1, "a directory: config_load fails");
	TAP_OK(strstr(err, "cannot open") != NULL,
	       "a directory: \"cannot open\"");
}

int main(int argc, char **argv)
{
	const char *example = argc > 1 ? argv[1] : "config/submitproxy.conf";

	test_example_loads(example);
	test_defaults();
	test_values_set();
	test_max_junk_commands();
	test_backend_tcp();
	test_backend_list();
	test_metrics_section();
	for (size_t i = 0; i < ARRAY_SIZE(error_cases); i++)
		test_error_case(&error_cases[i]);
	test_nul_byte();
	test_store_password_not_shown();
	test_all_errors_reported();
	test_errors_as_records();
	test_missing_file();
	return tap_done();
}
