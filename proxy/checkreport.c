/* checkreport.c - see checkreport.h */
#include "proxy/checkreport.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "config/config.h"
#include "proxy/backends.h"
#include "proxy/relay.h"
#include "proxy/session-ehlo.h"

/* Lines of an EHLO reply the proxy composes (session.c uses as many). */
#define CHECK_EHLO_LINES 16

static const char *const check_step_names[] = {
    [CHECK_STEP_CONNECT] = "connect",
    [CHECK_STEP_GREETING] = "greeting",
    [CHECK_STEP_EHLO] = "ehlo",
    [CHECK_STEP_HELO] = "helo",
    [CHECK_STEP_MAIL] = "mail",
    [CHECK_STEP_RSET] = "rset",
    [CHECK_STEP_XCLIENT] = "xclient",
    [CHECK_STEP_XCLIENT_EHLO] = "xclient_ehlo",
    [CHECK_STEP_BARE_LF] = "bare_lf",
    [CHECK_STEP_QUIT] = "quit",
    [CHECK_STEP_DONE] = "done",
};
static_assert(sizeof(check_step_names) / sizeof(check_step_names[0]) ==
		  CHECK_STEP_COUNT,
	      "one name per check step");

static const char *const check_severity_names[] = {
    [CHECK_NOTE] = "note",
    [CHECK_WARNING] = "warning",
    [CHECK_ERROR] = "error",
};
static_assert(sizeof(check_severity_names) / sizeof(check_severity_names[0]) ==
		  CHECK_SEVERITY_COUNT,
	      "one name per severity");

/* The pass-through extensions a client sees only when the backend has
 * them (PIPELINING and SIZE are the proxy's own), with their names. */
static const struct {
	unsigned bit;
	const char *name;
} check_backend_exts[] = {
    {EHLO_CAP_8BITMIME, "8BITMIME"},
    {EHLO_CAP_ENHANCEDSTATUSCODES, "ENHANCEDSTATUSCODES"},
    {EHLO_CAP_SMTPUTF8, "SMTPUTF8"},
    {EHLO_CAP_DSN, "DSN"},
    {EHLO_CAP_DELIVERBY, "DELIVERBY"},
};

static const char *xclient_mode_name(enum xclient_mode mode)
{
	switch (mode) {
	case XCLIENT_YES:
		return "yes";
	case XCLIENT_NO:
		return "no";
	case XCLIENT_AUTO:
	default:
		return "auto";
	}
}

/* ---- the facts ---- */

void check_backend_init(struct check_backend *r,
			const struct config_backend *backend)
{
	memset(r, 0, sizeof(*r));
	r->backend = backend;
	r->stopped = CHECK_STEP_DONE;
	r->bare_lf_replies = -1;
}

static void check_reply_finish(struct check_reply *reply)
{
	for (size_t i = 0; i < reply->nlines; i++)
		free(reply->lines[i]);
	free(reply->lines);
	memset(reply, 0, sizeof(*reply));
}

void check_backend_finish(struct check_backend *r)
{
	struct check_reply *replies[] = {
	    &r->greeting,   &r->ehlo,	 &r->helo,	   &r->mail,
	    &r->rset,	    &r->xclient, &r->xclient_ehlo, &r->bare_lf[0],
	    &r->bare_lf[1], &r->quit,
	};

	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++)
		check_reply_finish(replies[i]);
	free(r->error);
	free(r->local_address);
	free(r->xclient_line);
	for (size_t i = 0; i < r->nexposures; i++) {
		free(r->exposures[i].address);
		free(r->exposures[i].outcome);
	}
	free(r->exposures);
	for (size_t i = 0; i < r->nfindings; i++)
		free(r->findings[i].text);
	free(r->findings);
	memset(r, 0, sizeof(*r));
}

void check_reply_add_line(struct check_reply *reply, const char *line,
			  size_t len)
{
	reply->lines = xreallocarray(reply->lines, reply->nlines + 1,
				     sizeof(*reply->lines));
	reply->lines[reply->nlines++] = xmemdup(line, len);
}

void check_exposure_add(struct check_backend *r, const char *address, bool smtp,
			const char *outcome)
{
	struct check_exposure *e;

	r->exposures = xreallocarray(r->exposures, r->nexposures + 1,
				     sizeof(*r->exposures));
	e = &r->exposures[r->nexposures++];
	e->address = xstrdup(address);
	e->smtp = smtp;
	e->outcome = xstrdup(outcome);
}

bool check_xclient_used(const struct check_backend *r)
{
	return r->esmtp && relay_xclient_wanted(r->backend, &r->caps);
}

/* The text of a reply line after "NNN-" ("" for a bare "NNN"). */
static const char *reply_line_text(const char *line)
{
	return strlen(line) > 4 ? line + 4 : "";
}

static bool reply_accepted_xclient(const struct check_reply *reply)
{
	/* Postfix answers XCLIENT with a new greeting (220), smtp-sink and
	 * others with 250 (relay.c accepts both). */
	return reply->code == 220 || reply->code == 250;
}

/* 500 (unrecognized) or 502 (not implemented): the backend has no such
 * command, as opposed to refusing it. */
static bool reply_unknown_command(const struct check_reply *reply)
{
	return reply->code == 500 || reply->code == 502;
}

/* The capabilities a client is shown after AUTH come from the backend's
 * reply to the client's own EHLO: after XCLIENT, when the proxy uses it,
 * the backend may say other things. */
static const struct ehlo_caps *caps_after_auth(const struct check_backend *r,
					       struct ehlo_caps *none)
{
	memset(none, 0, sizeof(*none));
	if (!r->esmtp)
		return none;
	if (check_xclient_used(r) && reply_accepted_xclient(&r->xclient) &&
	    r->xclient_ehlo.code == 250)
		return &r->caps_after_xclient;
	return &r->caps;
}

/* ---- capabilities ---- */

static const struct {
	const char *keyword;
	const char *reason;
} check_cap_reasons[] = {
    {"STARTTLS", "the proxy terminates TLS itself"},
    {"AUTH", "the proxy authenticates clients itself (PAM)"},
    {"XCLIENT", "used by the proxy only, for its own hand-over"},
    {"XFORWARD", "used between proxies and MTAs only; clients get 502"},
    {"CHUNKING", "BDAT is not relayed"},
    {"BINARYMIME", "it needs BDAT, which is not relayed"},
    {"ETRN", "not on the pass-through list; clients get 502"},
    {"TURN", "not on the pass-through list; clients get 502"},
    {"ATRN", "not on the pass-through list; clients get 502"},
    {"VRFY", "not on the pass-through list (VRFY itself is relayed after "
	     "AUTH)"},
    {"EXPN", "not on the pass-through list (EXPN itself is relayed after "
	     "AUTH)"},
};

#define CHECK_CAP_UNLISTED "not on the pass-through list"

/* s[0..len) without leading and trailing blanks. */
static void trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

enum check_cap_fate check_cap_explain(const char *text, size_t len,
				      uint64_t max_size, char shown[64],
				      const char **reason_r)
{
	struct ehlo_caps one;
	char lines[1][64];
	size_t kw_len = 0;

	shown[0] = '\0';
	*reason_r = NULL;
	memset(&one, 0, sizeof(one));
	ehlo_caps_add_line(&one, text, len);
	if ((one.caps & EHLO_CAPS_PASS) != 0 &&
	    ehlo_caps_render(&one, EHLO_CAPS_PASS, max_size, lines, 1) == 1) {
		snprintf(shown, 64, "%s", lines[0]);
		trim(&text, &len);
		if (strlen(shown) == len && strncasecmp(shown, text, len) == 0)
			return CHECK_CAP_PASSED;
		if (one.caps & EHLO_CAP_SIZE)
			*reason_r = "the smaller of the backend's limit and "
				    "max_message_size";
		else if (one.caps & EHLO_CAP_DELIVERBY)
			*reason_r = "only a numeric argument is passed on";
		else
			*reason_r = "rewritten by the proxy";
		return CHECK_CAP_CHANGED;
	}
	trim(&text, &len);
	while (kw_len < len && text[kw_len] != ' ' && text[kw_len] != '=')
		kw_len++;
	*reason_r = CHECK_CAP_UNLISTED;
	for (size_t i = 0;
	     i < sizeof(check_cap_reasons) / sizeof(check_cap_reasons[0]);
	     i++) {
		const char *kw = check_cap_reasons[i].keyword;

		if (strlen(kw) == kw_len && strncasecmp(kw, text, kw_len) == 0)
			*reason_r = check_cap_reasons[i].reason;
	}
	return CHECK_CAP_DROPPED;
}

/* ---- escaping ---- */

char *check_text_escape(const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *out = xmalloc(len * 4 + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (c >= 0x20 && c < 0x7f) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static char *escape_str(const char *s)
{
	return check_text_escape(s, strlen(s));
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), 0 if there is
 * none.  Only for bytes >= 0x80. */
static size_t utf8_sequence(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		need = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		need = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return need;
}

void check_json_string(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t seq;

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\r') {
			fputs("\\r", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (c < 0x80) {
			fputc(c, f);
		} else if ((seq = utf8_sequence(p + i, len - i)) > 0) {
			fwrite(p + i, 1, seq, f);
			i += seq;
			continue;
		} else {
			fputs("\\ufffd", f);
		}
		i++;
	}
	fputc('"', f);
}

/* ---- judging ---- */

static void finding(struct check_backend *r, enum check_severity severity,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void finding(struct check_backend *r, enum check_severity severity,
		    const char *fmt, ...)
{
	va_list ap;
	char *text;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("vsnprintf failed");
	text = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(text, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r->findings =
	    xreallocarray(r->findings, r->nfindings + 1, sizeof(*r->findings));
	r->findings[r->nfindings].severity = severity;
	r->findings[r->nfindings].text = text;
	r->nfindings++;
}

/* The first line of a reply, escaped (malloc'd). */
static char *reply_first_line(const struct check_reply *reply)
{
	if (reply->nlines == 0)
		return xstrdup("no reply");
	return escape_str(reply->lines[0]);
}

static bool address_is_loopback(const struct config_backend *b)
{
	const struct sockaddr_storage *ss = &b->tcp.ss;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)ss;
		const unsigned char *a = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127;
	}
	return false;
}

/* The extensions the backend lacks that a client would otherwise see:
 * "8BITMIME, SMTPUTF8" into buf ("" if none). */
static void missing_extensions(const struct ehlo_caps *caps, char *buf,
			       size_t size)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0;
	     i < sizeof(check_backend_exts) / sizeof(check_backend_exts[0]);
	     i++) {
		int n;

		if (caps->caps & check_backend_exts[i].bit)
			continue;
		n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "",
			     check_backend_exts[i].name);
		if (n < 0 || (size_t)n >= size - off)
			break;
		off += (size_t)n;
	}
}

/* Where the dialogue stopped early. */
static void assess_stop(struct check_backend *r)
{
	enum check_severity severity = CHECK_ERROR;

	switch (r->stopped) {
	case CHECK_STEP_DONE:
		return;
	case CHECK_STEP_CONNECT:
		finding(r, CHECK_ERROR,
			"unreachable: %s: the proxy cannot hand any session "
			"to it (AUTH is answered 454)",
			r->error);
		return;
	case CHECK_STEP_XCLIENT:
	case CHECK_STEP_XCLIENT_EHLO:
		/* Only the proxy's own XCLIENT matters for its sessions. */
		if (!check_xclient_used(r))
			severity = CHECK_NOTE;
		break;
	case CHECK_STEP_BARE_LF:
	case CHECK_STEP_QUIT:
		severity = CHECK_NOTE;
		break;
	default:
		break;
	}
	finding(r, severity, "%s%s", r->error,
		severity == CHECK_ERROR
		    ? ": the proxy's sessions fail the same way (AUTH is "
		      "answered 454)"
		    : "");
}

static void assess_xclient(struct check_backend *r)
{
	const struct check_reply *x = &r->xclient;
	bool offered = (r->caps.caps & EHLO_CAP_XCLIENT) != 0;
	bool used = check_xclient_used(r);
	enum xclient_mode mode = r->backend->xclient;
	char *reply, hint[160] = "";

	if (!r->esmtp) {
		if (mode == XCLIENT_YES)
			finding(r, CHECK_ERROR,
				"xclient = yes, but the backend speaks no "
				"ESMTP, so no XCLIENT: every hand-over fails "
				"(AUTH is answered 454)");
		return;
	}
	reply = reply_first_line(x);
	if (x->code != 0 && !reply_accepted_xclient(x) &&
	    !reply_unknown_command(x))
		snprintf(hint, sizeof(hint),
			 " (Postfix: smtpd_authorized_xclient_hosts does not "
			 "include %s)",
			 r->local_address ? r->local_address : "this host");
	if (mode == XCLIENT_YES && !offered) {
		finding(r, CHECK_ERROR,
			"xclient = yes, but the backend does not offer XCLIENT "
			"(sent anyway: %s)%s: every hand-over fails (AUTH is "
			"answered 454)",
			reply, hint);
	} else if (offered && x->code != 0 && !reply_accepted_xclient(x)) {
		if (used)
			finding(r, CHECK_ERROR,
				"XCLIENT refused (%s)%s: the proxy sends it at "
				"every hand-over, which then fails (AUTH is "
				"answered 454); allow this host, or set "
				"xclient=no on this backend",
				reply, hint);
		else
			finding(r, CHECK_WARNING,
				"XCLIENT offered but refused (%s)%s; the proxy "
				"does not use it (xclient = no)",
				reply, hint);
	} else if (offered && reply_accepted_xclient(x)) {
		if (used && r->xclient_ehlo.code != 0 &&
		    r->xclient_ehlo.code != 250) {
			char *e = reply_first_line(&r->xclient_ehlo);

			finding(r, CHECK_ERROR,
				"EHLO after XCLIENT refused (%s): every "
				"hand-over fails (AUTH is answered 454)",
				e);
			free(e);
		} else if (!used) {
			finding(r, CHECK_NOTE,
				"XCLIENT is offered and accepted, but xclient "
				"= no: the backend sees every client as this "
				"host");
		}
	} else if (!offered && x->code != 0) {
		if (reply_accepted_xclient(x))
			finding(r, CHECK_NOTE,
				"the backend accepted XCLIENT without listing "
				"it in EHLO: the proxy sends XCLIENT only to a "
				"backend that lists it");
		else if (!reply_unknown_command(x))
			finding(
			    r,
			    mode == XCLIENT_AUTO ? CHECK_WARNING : CHECK_NOTE,
			    "the backend knows XCLIENT but refuses it from "
			    "this host (%s)%s: it sees every client as this "
			    "host, without their address or login",
			    reply, hint);
	}
	free(reply);
}

static void assess_exposure(struct check_backend *r)
{
	bool mail_ok = r->mail.code >= 200 && r->mail.code < 300;

	for (size_t i = 0; i < r->nexposures; i++) {
		const struct check_exposure *e = &r->exposures[i];
		char *said;

		if (!e->smtp)
			continue;
		said = escape_str(e->outcome);
		finding(
		    r, CHECK_WARNING,
		    "the backend's port answers at %s (%s): whoever reaches "
		    "that address bypasses the proxy; let the MTA listen "
		    "on loopback only (Postfix: inet_interfaces = "
		    "loopback-only) or firewall it",
		    e->address, said);
		free(said);
	}
	if (r->backend->unix_path == NULL && !address_is_loopback(r->backend) &&
	    r->stopped > CHECK_STEP_MAIL)
		finding(r, mail_ok ? CHECK_WARNING : CHECK_NOTE,
			"the backend is at a non-loopback address (%s)%s: "
			"whoever reaches it there bypasses the proxy unless a "
			"firewall stops them",
			r->backend->tcp.text,
			mail_ok ? " and takes mail from this host without "
				  "authentication"
				: "");
}

static bool backend_exposed(const struct check_backend *r)
{
	for (size_t i = 0; i < r->nexposures; i++)
		if (r->exposures[i].smtp)
			return true;
	return r->backend->unix_path == NULL &&
	       !address_is_loopback(r->backend);
}

void check_backend_assess(const struct config *cfg, struct check_backend *r)
{
	char missing[128];

	(void)cfg;
	assess_stop(r);
	if (r->stopped > CHECK_STEP_HELO && !r->esmtp) {
		missing_extensions(&r->caps, missing, sizeof(missing));
		finding(r, CHECK_NOTE,
			"the backend speaks no ESMTP (EHLO refused, HELO "
			"accepted): a client is shown only PIPELINING and "
			"SIZE, the proxy's own, and no %s",
			missing);
	}
	if (r->stopped > CHECK_STEP_HELO)
		assess_xclient(r);
	if (r->mail.code != 0 && (r->mail.code < 200 || r->mail.code >= 300)) {
		char *reply = reply_first_line(&r->mail);

		finding(
		    r, CHECK_WARNING,
		    "the backend refused MAIL FROM:<> from this host without "
		    "authentication (%s): it may refuse the sessions the "
		    "proxy relays too; it should trust this host (Postfix: "
		    "mynetworks)",
		    reply);
		free(reply);
	}
	assess_exposure(r);
	if (r->bare_lf_replies == 2)
		finding(r, backend_exposed(r) ? CHECK_WARNING : CHECK_NOTE,
			"the backend takes a bare LF as the end of a command "
			"line: the proxy never forwards one, but %s (SMTP "
			"smuggling, CVE-2023-51764; Postfix: "
			"smtpd_forbid_bare_newline)",
			backend_exposed(r) ? "it is reachable without the proxy, "
					     "and those paths are open to it"
					   : "any other path into this MTA "
					     "would be open to it");
}

static enum check_severity worst(const struct check_backend *r)
{
	enum check_severity w = CHECK_NOTE;

	for (size_t i = 0; i < r->nfindings; i++)
		if (r->findings[i].severity > w)
			w = r->findings[i].severity;
	return w;
}

const char *check_backend_status(const struct check_backend *r)
{
	if (r->stopped == CHECK_STEP_CONNECT)
		return "unreachable";
	switch (worst(r)) {
	case CHECK_ERROR:
		return "error";
	case CHECK_WARNING:
		return "warning";
	default:
		return "ok";
	}
}

int check_exit_status(const struct check_backend *rs, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if (rs[i].stopped == CHECK_STEP_CONNECT ||
		    worst(&rs[i]) == CHECK_ERROR)
			return 2;
		if (worst(&rs[i]) == CHECK_WARNING)
			rc = 1;
	}
	return rc;
}

/* ---- what a client sees ---- */

/* The EHLO reply as the proxy writes it: "250-host", then lines[0..n). */
static void text_ehlo_view(FILE *f, const char *hostname, char lines[][64],
			   size_t n)
{
	char *host = escape_str(hostname);

	fprintf(f, "    250%c%s\n", n > 0 ? '-' : ' ', host);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "    250%c%s\n", i + 1 < n ? '-' : ' ', lines[i]);
	free(host);
}

static size_t view_before_auth(const struct config *cfg,
			       const struct check_backend *r, char lines[][64])
{
	struct ehlo_caps none;

	memset(&none, 0, sizeof(none));
	/* What the probe stores for this backend (relay.c: HELO leaves the
	 * capabilities empty), seen after STARTTLS or on implicit TLS. */
	return session_ehlo_lines(cfg, r->esmtp ? &r->caps : &none, false,
				  cfg->auth.mechanisms, lines, CHECK_EHLO_LINES);
}

/* With several backends the pre-auth EHLO shows what every backend that
 * is up offers (proxy/backends.h), so that no client is promised an
 * extension a failover lacks: here, what those the check handed over to
 * have in common.  0 when it handed over to none. */
static size_t view_before_auth_all(const struct config *cfg,
				   const struct check_backend *rs, size_t n,
				   char lines[][64])
{
	struct ehlo_caps common, none;
	bool any = false;

	memset(&none, 0, sizeof(none));
	for (size_t i = 0; i < n; i++) {
		const struct check_backend *r = &rs[i];

		if (r->stopped <= CHECK_STEP_HELO)
			continue;
		if (!any)
			common = r->esmtp ? r->caps : none;
		else
			backends_caps_intersect(&common,
						r->esmtp ? &r->caps : &none);
		any = true;
	}
	if (!any)
		return 0;
	return session_ehlo_lines(cfg, &common, false, cfg->auth.mechanisms,
				  lines, CHECK_EHLO_LINES);
}

static size_t view_after_auth(const struct config *cfg,
			      const struct check_backend *r, char lines[][64])
{
	struct ehlo_caps none;
	size_t n = ehlo_caps_client(caps_after_auth(r, &none),
				    cfg->limits.max_message_size, lines,
				    CHECK_EHLO_LINES);

	return n + session_ehlo_limits(cfg, lines + n, CHECK_EHLO_LINES - n);
}

/* ---- the report for a person ---- */

static void text_line(FILE *f, const char *prefix, const char *line)
{
	char *e = escape_str(line);

	fprintf(f, "%s%s\n", prefix, e);
	free(e);
}

static void text_reply(FILE *f, const struct check_reply *reply)
{
	for (size_t i = 0; i < reply->nlines; i++)
		text_line(f, "    < ", reply->lines[i]);
	if (reply->code == 0)
		fprintf(f, "    (no %sreply)\n",
			reply->nlines ? "complete " : "");
}

static bool was_sent(const struct check_backend *r, enum check_step step)
{
	return (r->sent & (1u << step)) != 0;
}

static void text_command(FILE *f, const struct check_backend *r,
			 enum check_step step, const char *line,
			 const struct check_reply *reply)
{
	if (!was_sent(r, step))
		return;
	text_line(f, "    > ", line);
	text_reply(f, reply);
}

static void text_capabilities(FILE *f, const struct config *cfg,
			      const struct check_backend *r)
{
	uint64_t max_size = cfg->limits.max_message_size;
	char missing[128];

	fprintf(f, "  capabilities:\n");
	for (size_t i = 1; i < r->ehlo.nlines && r->esmtp; i++) {
		const char *text = reply_line_text(r->ehlo.lines[i]);
		const char *reason;
		char shown[64], *e;
		enum check_cap_fate fate;

		if (text[0] == '\0')
			continue;
		fate = check_cap_explain(text, strlen(text), max_size, shown,
					 &reason);
		e = escape_str(text);
		if (fate == CHECK_CAP_PASSED)
			fprintf(f, "    passed   %s\n", e);
		else if (fate == CHECK_CAP_CHANGED)
			fprintf(f, "    changed  %s: shown as %s (%s)\n", e,
				shown, reason);
		else
			fprintf(f, "    dropped  %s: %s\n", e, reason);
		free(e);
	}
	if (!(r->caps.caps & EHLO_CAP_PIPELINING))
		fprintf(f, "    added    PIPELINING: the proxy takes pipelined "
			   "commands itself and gives this backend one at a "
			   "time\n");
	if (!(r->caps.caps & EHLO_CAP_SIZE)) {
		if (max_size != 0)
			fprintf(f, "    added    SIZE %llu",
				(unsigned long long)max_size);
		else
			fprintf(f, "    added    SIZE");
		fprintf(f, ": the proxy enforces max_message_size itself\n");
	}
	missing_extensions(&r->caps, missing, sizeof(missing));
	if (missing[0] != '\0')
		fprintf(f,
			"    missing  %s: not offered by the backend, so a "
			"client does not see %s\n",
			missing, strchr(missing, ',') ? "them" : "it");
}

/* "NAME ADDR ..." as the backend listed them, "" if not offered. */
static char *xclient_attributes(const struct check_backend *r)
{
	for (size_t i = 1; i < r->ehlo.nlines && r->esmtp; i++) {
		const char *text = reply_line_text(r->ehlo.lines[i]);

		if (strncasecmp(text, "XCLIENT", 7) == 0 &&
		    (text[7] == ' ' || text[7] == '\0')) {
			text += 7;
			while (*text == ' ')
				text++;
			return escape_str(text);
		}
	}
	return xstrdup("");
}

static const char *xclient_outcome(const struct check_backend *r)
{
	if (!was_sent(r, CHECK_STEP_XCLIENT))
		return "not tried";
	if (r->xclient.code == 0)
		return "no reply";
	if (reply_accepted_xclient(&r->xclient))
		return "accepted";
	if (reply_unknown_command(&r->xclient))
		return "not implemented";
	return "refused";
}

static void text_xclient(FILE *f, const struct config *cfg,
			 const struct check_backend *r)
{
	bool offered = (r->caps.caps & EHLO_CAP_XCLIENT) != 0;
	char *attrs = xclient_attributes(r);
	char ehlo[300];

	if (!r->esmtp) {
		fprintf(f, "  XCLIENT: not tried (no ESMTP); xclient = %s\n",
			xclient_mode_name(r->backend->xclient));
		free(attrs);
		return;
	}
	if (offered)
		fprintf(f, "  XCLIENT: offered (%s)", attrs);
	else
		fprintf(f, "  XCLIENT: not offered");
	fprintf(f, "; xclient = %s: %s\n",
		xclient_mode_name(r->backend->xclient),
		check_xclient_used(r) ? "the proxy sends it at each hand-over"
				      : "the proxy does not use it");
	free(attrs);
	text_command(f, r, CHECK_STEP_XCLIENT,
		     r->xclient_line ? r->xclient_line : "", &r->xclient);
	snprintf(ehlo, sizeof(ehlo), "EHLO %s", cfg->backend.helo_name);
	text_command(f, r, CHECK_STEP_XCLIENT_EHLO, ehlo, &r->xclient_ehlo);
	fprintf(f, "    XCLIENT %s\n", xclient_outcome(r));
}

static void text_exposure(FILE *f, const struct check_backend *r)
{
	if (r->backend->unix_path != NULL) {
		fprintf(f, "  reachable without the proxy: a Unix socket, not "
			   "on the network\n");
		return;
	}
	if (!r->exposure_tried)
		return;
	fprintf(f, "  reachable without the proxy (this host's other "
		   "addresses, same port):\n");
	if (r->nexposures == 0)
		fprintf(f, "    (this host has no non-loopback address)\n");
	for (size_t i = 0; i < r->nexposures; i++) {
		char *o = escape_str(r->exposures[i].outcome);

		fprintf(f, "    %s: %s%s\n", r->exposures[i].address,
			r->exposures[i].smtp ? "ANSWERS: " : "", o);
		free(o);
	}
}

static void text_bare_lf(FILE *f, const struct check_backend *r)
{
	if (!was_sent(r, CHECK_STEP_BARE_LF))
		return;
	fprintf(f, "  a bare LF in a command line:\n");
	text_line(f, "    > ", "NOOP\nNOOP");
	for (int i = 0; i < 2 && i < r->bare_lf_replies; i++)
		text_reply(f, &r->bare_lf[i]);
	if (r->bare_lf_replies == 2)
		fprintf(f, "    2 replies: the backend takes a bare LF as the "
			   "end of a command line\n");
	else if (r->bare_lf_replies == 1)
		fprintf(f,
			"    1 reply: the backend does not take a bare LF as "
			"the end of a command line\n");
	if (r->bare_lf_closed)
		fprintf(f, "    the backend closed the connection\n");
}

void check_report_text_header(FILE *f, const struct config *cfg)
{
	char *path = escape_str(cfg->path);

	fprintf(f, "submitproxy --check-backend: %s: %zu backend%s\n", path,
		cfg->backend.count, cfg->backend.count == 1 ? "" : "s");
	free(path);
}

void check_report_text(FILE *f, const struct config *cfg,
		       const struct check_backend *r, size_t index)
{
	char lines[CHECK_EHLO_LINES][64], command[300];
	size_t n;

	fprintf(f, "\nbackend %zu of %zu: %s (xclient = %s)\n", index + 1,
		cfg->backend.count, r->backend->address,
		xclient_mode_name(r->backend->xclient));
	if (r->stopped != CHECK_STEP_CONNECT) {
		if (r->local_address != NULL)
			fprintf(f, "  connected from %s\n", r->local_address);
		else
			fprintf(f, "  connected\n");
		fprintf(f, "  greeting and EHLO, as the backend sent them:\n");
		text_reply(f, &r->greeting);
		snprintf(command, sizeof(command), "EHLO %s",
			 cfg->backend.helo_name);
		text_command(f, r, CHECK_STEP_EHLO, command, &r->ehlo);
		snprintf(command, sizeof(command), "HELO %s",
			 cfg->backend.helo_name);
		text_command(f, r, CHECK_STEP_HELO, command, &r->helo);
	}
	if (r->stopped > CHECK_STEP_HELO) {
		fprintf(f, "  a client sees before AUTH (after STARTTLS, or on "
			   "implicit TLS):\n");
		n = view_before_auth(cfg, r, lines);
		text_ehlo_view(f, cfg->server.hostname, lines, n);
		fprintf(f, "  a client sees after AUTH:\n");
		n = view_after_auth(cfg, r, lines);
		text_ehlo_view(f, cfg->server.hostname, lines, n);
		text_capabilities(f, cfg, r);
		text_xclient(f, cfg, r);
	}
	if (was_sent(r, CHECK_STEP_MAIL)) {
		fprintf(f, "  MAIL FROM:<> without authentication (then RSET, "
			   "so nothing is queued):\n");
		text_command(f, r, CHECK_STEP_MAIL, "MAIL FROM:<>", &r->mail);
		text_command(f, r, CHECK_STEP_RSET, "RSET", &r->rset);
		if (r->mail.code >= 200 && r->mail.code < 300)
			fprintf(f,
				"    accepted: the backend trusts this host, "
				"so the proxy must be the only way in\n");
		else if (r->mail.code != 0)
			fprintf(f, "    refused\n");
	}
	text_exposure(f, r);
	text_bare_lf(f, r);
	if (was_sent(r, CHECK_STEP_QUIT)) {
		fprintf(f, "  end:\n");
		text_command(f, r, CHECK_STEP_QUIT, "QUIT", &r->quit);
	}
	for (size_t i = 0; i < r->nfindings; i++)
		fprintf(f, "  %s: %s\n",
			check_severity_names[r->findings[i].severity],
			r->findings[i].text);
	fprintf(f, "  result: %s\n", check_backend_status(r));
}

void check_report_text_summary(FILE *f, const struct config *cfg,
			       const struct check_backend *rs, size_t n)
{
	static const char *const statuses[] = {"ok", "warning", "error",
					       "unreachable"};
	char lines[CHECK_EHLO_LINES][64];
	bool first = true;
	size_t nlines;

	nlines = n > 1 ? view_before_auth_all(cfg, rs, n, lines) : 0;
	if (nlines > 0) {
		fprintf(f, "\na client sees before AUTH while the backends "
			   "that answered are up (what they all offer):\n");
		fprintf(f, "    250-%s\n", cfg->server.hostname);
		for (size_t i = 0; i < nlines; i++)
			fprintf(f, "    250%c%s\n", i + 1 < nlines ? '-' : ' ',
				lines[i]);
	}

	fprintf(f, "\n%zu backend%s:", n, n == 1 ? "" : "s");
	for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++) {
		size_t count = 0;

		for (size_t i = 0; i < n; i++)
			if (strcmp(check_backend_status(&rs[i]), statuses[s]) ==
			    0)
				count++;
		if (count == 0)
			continue;
		fprintf(f, "%s %zu %s", first ? "" : ",", count, statuses[s]);
		first = false;
	}
	fprintf(f, "; exit status %d\n", check_exit_status(rs, n));
}

/* ---- JSON ---- */

/* A JSON writer that knows where commas go. */
#define CHECK_JSON_DEPTH 8

struct json {
	FILE *f;
	unsigned depth;
	bool more[CHECK_JSON_DEPTH]; /* a value was written at this depth */
};

/* Before a value: the comma, and the key inside an object. */
static void json_next(struct json *j, const char *key)
{
	if (j->more[j->depth])
		fputc(',', j->f);
	j->more[j->depth] = true;
	if (key != NULL) {
		check_json_string(j->f, key, strlen(key));
		fputc(':', j->f);
	}
}

static void json_open(struct json *j, const char *key, char bracket)
{
	json_next(j, key);
	fputc(bracket, j->f);
	assert(j->depth + 1 < CHECK_JSON_DEPTH);
	j->more[++j->depth] = false;
}

static void json_close(struct json *j, char bracket)
{
	fputc(bracket, j->f);
	j->depth--;
}

static void json_str(struct json *j, const char *key, const char *value)
{
	json_next(j, key);
	if (value == NULL)
		fputs("null", j->f);
	else
		check_json_string(j->f, value, strlen(value));
}

static void json_int(struct json *j, const char *key, long long value)
{
	json_next(j, key);
	fprintf(j->f, "%lld", value);
}

static void json_bool(struct json *j, const char *key, bool value)
{
	json_next(j, key);
	fputs(value ? "true" : "false", j->f);
}

static void json_null(struct json *j, const char *key)
{
	json_next(j, key);
	fputs("null", j->f);
}

static void json_lines(struct json *j, const char *key, char lines[][64],
		       size_t n, const char *hostname)
{
	char first[300];

	json_open(j, key, '[');
	snprintf(first, sizeof(first), "250%c%s", n > 0 ? '-' : ' ', hostname);
	json_str(j, NULL, first);
	for (size_t i = 0; i < n; i++) {
		char line[80];

		snprintf(line, sizeof(line), "250%c%s", i + 1 < n ? '-' : ' ',
			 lines[i]);
		json_str(j, NULL, line);
	}
	json_close(j, ']');
}

/* {"command": ..., "code": ..., "reply": [...]}, or null if not sent. */
static void json_command(struct json *j, const char *key,
			 const struct check_backend *r, enum check_step step,
			 const char *command, const struct check_reply *reply)
{
	if (!was_sent(r, step) && step != CHECK_STEP_GREETING) {
		json_null(j, key);
		return;
	}
	json_open(j, key, '{');
	if (command != NULL)
		json_str(j, "command", command);
	if (reply->code != 0)
		json_int(j, "code", reply->code);
	else
		json_null(j, "code");
	json_open(j, "reply", '[');
	for (size_t i = 0; i < reply->nlines; i++)
		json_str(j, NULL, reply->lines[i]);
	json_close(j, ']');
	json_close(j, '}');
}

static void json_capabilities(struct json *j, const struct config *cfg,
			      const struct check_backend *r)
{
	json_open(j, "capabilities", '[');
	for (size_t i = 1; i < r->ehlo.nlines && r->esmtp; i++) {
		static const char *const fates[] = {
		    [CHECK_CAP_PASSED] = "passed",
		    [CHECK_CAP_CHANGED] = "changed",
		    [CHECK_CAP_DROPPED] = "dropped",
		};
		const char *text = reply_line_text(r->ehlo.lines[i]);
		const char *reason;
		char shown[64];
		enum check_cap_fate fate;

		if (text[0] == '\0')
			continue;
		fate = check_cap_explain(text, strlen(text),
					 cfg->limits.max_message_size, shown,
					 &reason);
		json_open(j, NULL, '{');
		json_str(j, "capability", text);
		json_str(j, "fate", fates[fate]);
		json_str(j, "shown_as",
			 fate == CHECK_CAP_DROPPED ? NULL : shown);
		json_str(j, "reason", reason);
		json_close(j, '}');
	}
	json_close(j, ']');
	json_open(j, "added_by_proxy", '[');
	if (!(r->caps.caps & EHLO_CAP_PIPELINING))
		json_str(j, NULL, "PIPELINING");
	if (!(r->caps.caps & EHLO_CAP_SIZE))
		json_str(j, NULL, "SIZE");
	json_close(j, ']');
	json_open(j, "not_offered", '[');
	for (size_t i = 0;
	     i < sizeof(check_backend_exts) / sizeof(check_backend_exts[0]);
	     i++)
		if (!(r->caps.caps & check_backend_exts[i].bit))
			json_str(j, NULL, check_backend_exts[i].name);
	json_close(j, ']');
}

static void json_xclient(struct json *j, const struct config *cfg,
			 const struct check_backend *r)
{
	char ehlo[300];

	json_open(j, "xclient", '{');
	json_bool(j, "offered", (r->caps.caps & EHLO_CAP_XCLIENT) != 0);
	json_open(j, "attributes", '[');
	if (r->caps.caps & EHLO_CAP_XCLIENT) {
		char *attrs = xclient_attributes(r);
		char *save = NULL;

		for (char *w = strtok_r(attrs, " ", &save); w != NULL;
		     w = strtok_r(NULL, " ", &save))
			json_str(j, NULL, w);
		free(attrs);
	}
	json_close(j, ']');
	json_str(j, "mode", xclient_mode_name(r->backend->xclient));
	json_bool(j, "used_by_proxy", check_xclient_used(r));
	json_str(j, "outcome", xclient_outcome(r));
	json_command(j, "sent", r, CHECK_STEP_XCLIENT, r->xclient_line,
		     &r->xclient);
	snprintf(ehlo, sizeof(ehlo), "EHLO %s", cfg->backend.helo_name);
	json_command(j, "ehlo_after", r, CHECK_STEP_XCLIENT_EHLO, ehlo,
		     &r->xclient_ehlo);
	json_close(j, '}');
}

static void json_backend(struct json *j, const struct config *cfg,
			 const struct check_backend *r)
{
	char lines[CHECK_EHLO_LINES][64], command[300];
	bool handed = r->stopped > CHECK_STEP_HELO;

	json_open(j, NULL, '{');
	json_str(j, "address", r->backend->address);
	json_str(j, "xclient_mode", xclient_mode_name(r->backend->xclient));
	json_str(j, "status", check_backend_status(r));
	json_bool(j, "reachable", r->stopped != CHECK_STEP_CONNECT);
	json_str(j, "stopped_at",
		 r->stopped == CHECK_STEP_DONE ? NULL
					       : check_step_names[r->stopped]);
	json_str(j, "error", r->error);
	json_str(j, "local_address", r->local_address);
	if (r->stopped != CHECK_STEP_CONNECT)
		json_command(j, "greeting", r, CHECK_STEP_GREETING, NULL,
			     &r->greeting);
	else
		json_null(j, "greeting");
	snprintf(command, sizeof(command), "EHLO %s", cfg->backend.helo_name);
	json_command(j, "ehlo", r, CHECK_STEP_EHLO, command, &r->ehlo);
	snprintf(command, sizeof(command), "HELO %s", cfg->backend.helo_name);
	json_command(j, "helo", r, CHECK_STEP_HELO, command, &r->helo);
	json_bool(j, "esmtp", r->esmtp);
	if (handed) {
		json_lines(j, "client_ehlo_before_auth", lines,
			   view_before_auth(cfg, r, lines),
			   cfg->server.hostname);
		json_lines(j, "client_ehlo_after_auth", lines,
			   view_after_auth(cfg, r, lines),
			   cfg->server.hostname);
		json_capabilities(j, cfg, r);
		json_xclient(j, cfg, r);
	}
	json_command(j, "mail_without_auth", r, CHECK_STEP_MAIL, "MAIL FROM:<>",
		     &r->mail);
	json_command(j, "rset", r, CHECK_STEP_RSET, "RSET", &r->rset);
	if (r->exposure_tried) {
		json_open(j, "exposure", '[');
		for (size_t i = 0; i < r->nexposures; i++) {
			json_open(j, NULL, '{');
			json_str(j, "address", r->exposures[i].address);
			json_bool(j, "smtp", r->exposures[i].smtp);
			json_str(j, "outcome", r->exposures[i].outcome);
			json_close(j, '}');
		}
		json_close(j, ']');
	} else {
		json_null(j, "exposure");
	}
	if (was_sent(r, CHECK_STEP_BARE_LF)) {
		json_open(j, "bare_lf", '{');
		json_str(j, "sent", CHECK_BARE_LF_PROBE);
		json_int(j, "replies", r->bare_lf_replies);
		json_bool(j, "line_end", r->bare_lf_replies == 2);
		json_bool(j, "closed", r->bare_lf_closed);
		json_close(j, '}');
	} else {
		json_null(j, "bare_lf");
	}
	json_command(j, "quit", r, CHECK_STEP_QUIT, "QUIT", &r->quit);
	json_open(j, "findings", '[');
	for (size_t i = 0; i < r->nfindings; i++) {
		json_open(j, NULL, '{');
		json_str(j, "severity",
			 check_severity_names[r->findings[i].severity]);
		json_str(j, "text", r->findings[i].text);
		json_close(j, '}');
	}
	json_close(j, ']');
	json_close(j, '}');
}

void check_report_json(FILE *f, const struct config *cfg,
		       const struct check_backend *rs, size_t n)
{
	struct json j;

	memset(&j, 0, sizeof(j));
	j.f = f;
	json_open(&j, NULL, '{');
	json_str(&j, "config", cfg->path);
	json_str(&j, "hostname", cfg->server.hostname);
	json_str(&j, "helo_name", cfg->backend.helo_name);
	json_int(&j, "max_message_size",
		 (long long)cfg->limits.max_message_size);
	json_int(&j, "exit_status", check_exit_status(rs, n));
	{
		char lines[CHECK_EHLO_LINES][64];
		size_t nlines = view_before_auth_all(cfg, rs, n, lines);

		if (nlines > 0)
			json_lines(&j, "client_ehlo_before_auth_all_up", lines,
				   nlines, cfg->server.hostname);
		else
			json_null(&j, "client_ehlo_before_auth_all_up");
	}
	json_open(&j, "backends", '[');
	for (size_t i = 0; i < n; i++)
		json_backend(&j, cfg, &rs[i]);
	json_close(&j, ']');
	json_close(&j, '}');
	fputc('\n', f);
}
