/*
 * checkreport.h - what `submitproxy --check-backend` found out about each
 * backend, what it means for the proxy, and the report: for a person, or
 * as one JSON object.  Pure: the facts are filled in by
 * proxy/checkbackend.c, which talks to the backends; here they are only
 * judged (check_backend_assess) and printed to a FILE.
 *
 * Severities: a note is a fact worth knowing; a warning is something the
 * admin should look at (exit 1); an error means the proxy cannot hand a
 * session to this backend (exit 2).
 *
 * Ownership: a struct check_backend is embedded by its user
 * (check_backend_init/finish) and owns every string and array in it.
 */
#ifndef SUBMITPROXY_CHECKREPORT_H
#define SUBMITPROXY_CHECKREPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proxy/smtp-relay-parse.h"

struct config;
struct config_backend;

enum check_severity {
	CHECK_NOTE,
	CHECK_WARNING,
	CHECK_ERROR,
	CHECK_SEVERITY_COUNT
};

struct check_finding {
	enum check_severity severity;
	char *text; /* already escaped for a terminal */
};

/* One reply as the backend sent it. */
struct check_reply {
	int code;     /* 0 until the reply's last line arrived */
	char **lines; /* each as received, CR LF removed, not escaped */
	size_t nlines;
};

/* The dialogue, in order; stopped says where it ended early. */
enum check_step {
	CHECK_STEP_CONNECT,
	CHECK_STEP_GREETING,
	CHECK_STEP_EHLO,
	CHECK_STEP_HELO,
	CHECK_STEP_MAIL,
	CHECK_STEP_RSET,
	CHECK_STEP_XCLIENT,
	CHECK_STEP_XCLIENT_EHLO,
	CHECK_STEP_BARE_LF,
	CHECK_STEP_QUIT,
	CHECK_STEP_DONE,
	CHECK_STEP_COUNT
};

/* The backend's port at one of this host's non-loopback addresses. */
struct check_exposure {
	char *address; /* "192.0.2.2:25", "[fd00::2]:25" */
	bool smtp;     /* answered with an SMTP reply line */
	char *outcome; /* "connection refused", ..., or the line it sent
			  (not escaped) */
};

/* What the bare-LF probe ("NOOP" LF "NOOP" CR LF) saw. */
#define CHECK_BARE_LF_PROBE "NOOP\nNOOP\r\n"

struct check_backend {
	const struct config_backend *backend; /* in the config */
	enum check_step stopped; /* CHECK_STEP_DONE: it ran to the end */
	char *error;		 /* why it stopped (NULL at DONE) */
	unsigned sent;		 /* 1u << step: each command sent */
	char *local_address;	 /* this end of the TCP connection */

	struct check_reply greeting, ehlo, helo;
	bool esmtp;	       /* EHLO was answered 250 */
	struct ehlo_caps caps; /* from that reply; zero without ESMTP */

	struct check_reply mail, rset; /* MAIL FROM:<>, without AUTH */

	char *xclient_line; /* the XCLIENT sent, NULL if none */
	struct check_reply xclient, xclient_ehlo;
	struct ehlo_caps caps_after_xclient;

	int bare_lf_replies; /* -1: not tried */
	bool bare_lf_closed; /* the backend closed the connection on it */
	struct check_reply bare_lf[2];

	struct check_reply quit;

	bool exposure_tried; /* a TCP backend: this host's addresses tried */
	struct check_exposure *exposures;
	size_t nexposures;

	struct check_finding *findings;
	size_t nfindings;
};

/* The test values of the XCLIENT the check sends (nothing is relayed
 * under them: only NOOP and QUIT follow).  RFC 5737 TEST-NET-1. */
#define CHECK_XCLIENT_ADDR  "192.0.2.1"
#define CHECK_XCLIENT_PORT  49152
#define CHECK_XCLIENT_LOGIN "submitproxy-check"

void check_backend_init(struct check_backend *r,
			const struct config_backend *backend);
void check_backend_finish(struct check_backend *r);

/* Appends one line (copied) to reply. */
void check_reply_add_line(struct check_reply *reply, const char *line,
			  size_t len);

/* Appends one exposure record (strings copied). */
void check_exposure_add(struct check_backend *r, const char *address, bool smtp,
			const char *outcome);

/* Whether the proxy sends XCLIENT at each hand-over to this backend
 * (relay.c: an ESMTP backend, xclient = yes, or auto and offered). */
bool check_xclient_used(const struct check_backend *r);

/* Judges the facts: appends r's findings.  Call once, after the
 * dialogue and the exposure probe. */
void check_backend_assess(const struct config *cfg, struct check_backend *r);

/* "ok", "warning", "error" or "unreachable". */
const char *check_backend_status(const struct check_backend *r);

/* 0: every backend is fine; 1: warnings; 2: a backend the proxy cannot
 * use (unreachable, or an error). */
int check_exit_status(const struct check_backend *rs, size_t n);

/* What becomes of one capability of a backend's EHLO reply. */
enum check_cap_fate {
	CHECK_CAP_PASSED,  /* shown to clients as it is */
	CHECK_CAP_CHANGED, /* shown, but as *shown */
	CHECK_CAP_DROPPED, /* never shown */
};

/* text: one EHLO line after "250-"/"250 " (not the first, the host
 * name).  Fills shown (what a client is shown, "" when dropped) and
 * *reason_r (why it is changed or dropped; NULL when passed).  The
 * decision is ehlo_caps_add_line()'s and ehlo_caps_render()'s, the very
 * functions the relay uses; only the reasons are written here. */
enum check_cap_fate check_cap_explain(const char *text, size_t len,
				      uint64_t max_size, char shown[64],
				      const char **reason_r);

/* A malloc'd copy of peer bytes safe on a terminal: printable ASCII as it
 * is, a backslash doubled, anything else (controls, DEL, bytes >= 0x80)
 * as \xNN. */
char *check_text_escape(const char *s, size_t len);

/* Writes s[0..len) as a JSON string, quotes included (RFC 8259 §7): '"',
 * '\\' and control characters escaped, valid UTF-8 kept, each byte of an
 * invalid UTF-8 sequence written as U+FFFD. */
void check_json_string(FILE *f, const char *s, size_t len);

/* The report for a person: a header, one section per backend (printed
 * as each is done), a summary: with several backends the pre-auth EHLO
 * of them all, then the count of each result. */
void check_report_text_header(FILE *f, const struct config *cfg);
void check_report_text(FILE *f, const struct config *cfg,
		       const struct check_backend *r, size_t index);
void check_report_text_summary(FILE *f, const struct config *cfg,
			       const struct check_backend *rs, size_t n);

/* The same facts as one JSON object, one line. */
void check_report_json(FILE *f, const struct config *cfg,
		       const struct check_backend *rs, size_t n);

#endif
