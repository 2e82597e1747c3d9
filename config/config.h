/*
 * config.h - the submitproxy configuration: one struct, filled from the INI
 * file by config_read() (config/ini.h splits the lines), with every default
 * set and every value checked.  Each problem found is a record (file, line,
 * message): config_load() prints them as "FILE:LINE: message", a reload
 * logs them one event each.
 *
 * Ownership: config_load() returns a struct config that owns every string
 * and array inside it; config_free() releases it all.  config_free(NULL) is
 * a no-op.  A loaded config is never modified afterwards; a reload loads a
 * new one and swaps the pointer.
 */
#ifndef SUBMITPROXY_CONFIG_H
#define SUBMITPROXY_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "common/log.h"

#define CONFIG_DEFAULT_PATH "/etc/submitproxy/submitproxy.conf"

enum listener_mode {
	LISTENER_STARTTLS,
	LISTENER_IMPLICIT_TLS,
	LISTENER_PLAIN,
};

enum xclient_mode {
	XCLIENT_AUTO,
	XCLIENT_YES,
	XCLIENT_NO,
};

enum bare_newline_policy {
	BARE_NEWLINE_NORMALIZE,
	BARE_NEWLINE_REJECT,
};

/* [relay] nul_bytes: what a NUL byte in a message does. */
enum nul_bytes_policy {
	NUL_BYTES_PASS,
	NUL_BYTES_STRIP,
	NUL_BYTES_REJECT,
};

/* [policy] store: where the policy counters live (proxy/policy.h). */
enum store_kind {
	STORE_MEMORY, /* in-process, shared by the loops of one process */
	STORE_REDIS,
};

/* [policy] on_store_error: what a session gets while Redis fails. */
enum store_error_policy {
	STORE_ERROR_LOCAL,    /* the in-process counters stand in */
	STORE_ERROR_TEMPFAIL, /* 454 at AUTH, 451 at MAIL and RCPT */
};

/* [listener] client_certificates: whether the TLS handshake asks for a
 * client certificate (tls/tls-server.h). */
enum client_cert_mode {
	CLIENT_CERTS_OFF,      /* not asked for */
	CLIENT_CERTS_OPTIONAL, /* asked for; one that fails is not used */
	CLIENT_CERTS_REQUIRED, /* no verified certificate: no handshake */
};

/* [listener] certificate_login: how a mapped certificate logs in. */
enum cert_login_mode {
	CERT_LOGIN_EXTERNAL, /* AUTH EXTERNAL (RFC 4422 Appendix A) */
	CERT_LOGIN_IMPLICIT, /* logged in once the client sent EHLO/HELO */
};

/* SASL mechanisms, as a bit set in config.auth.mechanisms. */
#define AUTH_MECH_PLAIN (1u << 0)
#define AUTH_MECH_LOGIN (1u << 1)
/* Never in [auth] mechanisms: offered on a connection whose verified
 * client certificate maps to a login ([tls] client_cert_map). */
#define AUTH_MECH_EXTERNAL (1u << 2)

/* One socket address with its canonical text form ("127.0.0.1:25",
 * "[::1]:587") for logs. */
struct config_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64];
};

/* An address range of [metrics] allow. */
struct config_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

/* A parsed [policy] store URL (config/storeurl.h). */
struct config_store {
	enum store_kind kind;
	char *display;           /* the URL, its password as "***" (logs) */
	char *unix_path;         /* redis+unix:///path; NULL for TCP */
	struct config_addr tcp;  /* redis://host:port */
	char *username;          /* redis://user:pass@: NULL if none */
	char *password;          /* NULL: no AUTH */
	uint32_t db;             /* SELECT; 0 by default */
};

/* One backend MTA of [backend] address. */
struct config_backend {
	char *address;              /* "127.0.0.1:25" or "unix:/path", for logs */
	char *unix_path;            /* non-NULL for "unix:" */
	struct config_addr tcp;     /* valid when unix_path == NULL */
	enum xclient_mode xclient;  /* its own, or [backend] xclient */
	bool xclient_set;           /* "xclient=" given on the item */
};

#define CONFIG_BACKENDS_MAX 16

struct config_listener {
	char *name;                 /* from "[listener NAME]" */
	struct config_addr *addrs;  /* at least one */
	size_t naddrs;
	enum listener_mode mode;    /* default starttls */
	bool require_tls;           /* default yes */
	bool allow_plaintext_auth;  /* default no */
	bool proxy_protocol;        /* default no */
	/* Default optional when some client_ca is set ([tls] or [sni]),
	 * else off; the loader resolves it. */
	enum client_cert_mode client_certificates;
	enum cert_login_mode certificate_login; /* default external */
	int line;                   /* line of the section header */
};

struct config_sni {
	char *hostname;             /* from "[sni HOSTNAME]", lower-cased */
	char *certificate;
	char *key;
	char *client_ca;            /* NULL: [tls] client_ca */
	char *ocsp_response;        /* NULL: nothing stapled */
	int line;
};

/* Every limit in one place (STYLE.md habit 7). Durations are milliseconds. */
struct config_limits {
	uint32_t max_connections;             /* 10000 */
	uint32_t max_connections_per_address; /* 50 */
	size_t max_line_length;               /* 2048, excluding CRLF */
	uint64_t max_message_size;            /* 50M */
	uint32_t max_recipients;              /* 100 */
	uint32_t max_errors;                  /* 20: protocol errors before 421 */
	uint32_t max_junk_commands;           /* 100: NOOP, RSET, HELP, VRFY,
					       * EXPN, repeated EHLO/HELO per
					       * message; 0: no limit */
	uint64_t idle_timeout_ms;             /* 300s */
	uint64_t handshake_timeout_ms;        /* 30s */
	uint64_t greeting_delay_ms;           /* 0s: early-talker window */
	/* Per-address counters key on these prefixes of the address. */
	uint32_t ipv4_prefix;                 /* 32 (0-32) */
	uint32_t ipv6_prefix;                 /* 64 (0-128) */
	/* Send limits per login, 0: off; overrides in user_limits. */
	uint32_t user_messages_per_hour;      /* 200 */
	uint32_t user_recipients_per_hour;    /* 500 */
	uint32_t user_recipients_per_day;     /* 2000 */
	char *user_limits;                    /* NULL if unset */
};

struct config {
	char *path;
	/* References: the loader's (config_load returns 1), each event loop
	 * that uses it as its current one, each session started under it.
	 * Loops on several threads take and drop them, hence atomic; the
	 * only field that changes after load. */
	atomic_uint refs;

	struct {
		char *hostname;             /* default: the machine's FQDN */
		char *user;                 /* default "submitproxy" */
		uint32_t workers;           /* default 1 */
		enum log_level log_level;   /* default info */
		uint64_t shutdown_timeout_ms; /* 30s: drain on SIGTERM */
	} server;

	struct config_listener *listeners;
	size_t nlisteners;

	struct {
		char *certificate;          /* PEM chain; NULL if unset */
		char *key;
		char *min_version;          /* "TLSv1.2" (default) or "TLSv1.3" */
		char *ciphers;              /* NULL: OpenSSL's default */
		char *ciphersuites;         /* NULL: OpenSSL's default */
		char *client_ca;            /* NULL: no client certificates */
		char *client_crl;           /* NULL: no revocation check */
		char *client_cert_map;      /* NULL: no certificate logins */
		char *ocsp_response;        /* NULL: nothing stapled */
		int line;                   /* line of [tls], 0 if absent */
	} tls;

	struct config_sni *snis;
	size_t nsnis;

	struct {
		char *pam_service;              /* "submitproxy" */
		unsigned mechanisms;            /* AUTH_MECH_PLAIN | AUTH_MECH_LOGIN */
		uint32_t max_failures;          /* 3 */
		uint64_t failure_delay_ms;      /* 2s */
		uint32_t address_failure_limit; /* 10 */
		uint64_t address_failure_window_ms; /* 10m */
		uint32_t user_failure_limit;    /* 20 */
		uint64_t user_failure_window_ms; /* 1h */
		uint64_t known_address_window_ms; /* 30d */
		uint32_t helper_workers;        /* 4 */
		uint64_t timeout_ms;            /* 30s */
	} auth;

	struct {
		/* [backend] address: the MTAs in order of preference, at
		 * least one, at most CONFIG_BACKENDS_MAX. */
		struct config_backend *list;
		size_t count;
		char *helo_name;            /* default: server.hostname */
		enum xclient_mode xclient;  /* auto; a backend may override */
		uint64_t connect_timeout_ms;/* 10s */
		uint64_t handover_timeout_ms;/* 30s: greeting, EHLO, XCLIENT */
		uint64_t timeout_ms;        /* 300s */
		uint64_t probe_interval_ms; /* 10m */
		uint64_t retry_interval_ms; /* 30s: a down backend's back-off */
	} backend;

	struct config_limits limits;

	struct {
		struct config_store store;          /* memory */
		char *key_prefix;                   /* "submitproxy:" */
		uint64_t timeout_ms;                /* 250ms: each Redis call */
		enum store_error_policy on_store_error; /* local */
	} policy;

	struct {
		bool received_header;                  /* yes */
		enum bare_newline_policy bare_newline; /* normalize */
		enum nul_bytes_policy nul_bytes;       /* reject */
		char *sender_map;                      /* NULL if unset */
	} relay;

	struct {
		/* [metrics] address: where /metrics and /healthz are
		 * served (proxy/metricsd.h); none unless set. */
		bool enabled;
		struct config_addr address;
		/* Who may ask; none listed: whoever reaches address. */
		struct config_cidr *allow;
		size_t nallow;
	} metrics;
};

/* One problem in a configuration file.  line is 0 for the file as a
 * whole (cannot open, cannot read).  message is plain text written here,
 * but may quote bytes of the file: sanitize it before logging. */
struct config_error {
	char *file;
	int line;
	char *message;
};

/* Records in file order; {NULL, 0} is empty.  Owns every string. */
struct config_errors {
	struct config_error *items;
	size_t count;
};

/* Loads and checks FILE.  Returns 0 and *cfg_r, or -1 after appending
 * every problem found to *errors (which the caller empties with
 * config_errors_finish(), whatever the result). */
int config_read(const char *path, struct config **cfg_r,
		struct config_errors *errors);

/* Prints each record as "FILE:LINE: message" ("FILE: message" for line 0),
 * one a line. */
void config_errors_print(const struct config_errors *errors, FILE *f);

/* Appends one record (line 0: the file as a whole); for the other files
 * a configuration names (the sender map). */
__attribute__((format(printf, 4, 5))) void
config_errors_add(struct config_errors *errors, const char *path, int line,
		  const char *fmt, ...);

/* The whole of path (at most max bytes) into *buf_r, NUL-terminated;
 * returns its length, or -1 after appending why not (cannot open, a
 * directory, too large, a read error) to *errors.  For the configuration
 * and the files it names (sender map, user limits). */
long config_file_read(const char *path, size_t max,
		      struct config_errors *errors, char **buf_r);

/* Frees the records and leaves *errors empty. */
void config_errors_finish(struct config_errors *errors);

/* config_read(), its records printed on stderr (start-up, -t). */
int config_load(const char *path, struct config **cfg_r);

/* Frees cfg whatever its references (start-up errors, tests). */
void config_free(struct config *cfg);

/* Takes one more reference; returns cfg. */
struct config *config_ref(struct config *cfg);

/* Drops one reference; the last frees.  config_unref(NULL) is a no-op. */
void config_unref(struct config *cfg);

const char *listener_mode_name(enum listener_mode mode);
const char *client_cert_mode_name(enum client_cert_mode mode);

/* The client CA for an SNI name's certificate (its own, else [tls]'s), NULL
 * for none; sni NULL: the default certificate's. */
const char *config_client_ca(const struct config *cfg,
			     const struct config_sni *sni);

/* Whether cfg sets up TLS at all ([tls] certificate is set). */
bool config_wants_tls(const struct config *cfg);

#endif
