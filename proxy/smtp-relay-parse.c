/* smtp-relay-parse.c - see smtp-relay-parse.h */
#include "proxy/smtp-relay-parse.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 5321 §4.5.3.1.3: a reverse-path or forward-path is at most 256
 * octets "including the punctuation", i.e. the angle brackets. */
#define SMTP_PATH_MAX 256

/* RFC 2852 §4: DELIVERBY's min-by-time is 1*9DIGIT; longer is refused
 * rather than cut, so what a client is told is what the backend said. */
#define EHLO_DELIVERBY_MAX 9

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool word_is(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* 1*DIGIT without overflow. */
static bool parse_u64(const char *p, size_t n, uint64_t *value_r)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (!is_digit(p[i]))
			return false;
		d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}

/* Next space-separated word of p[*pos..len) (SP only: RFC 5321 ehlo-line
 * and esmtp parameters are separated by SP).  Returns false at the end. */
static bool next_word(const char *p, size_t len, size_t *pos,
		      const char **word_r, size_t *word_len_r)
{
	size_t i = *pos, start;

	while (i < len && p[i] == ' ')
		i++;
	if (i == len) {
		*pos = i;
		return false;
	}
	start = i;
	while (i < len && p[i] != ' ')
		i++;
	*word_r = p + start;
	*word_len_r = i - start;
	*pos = i;
	return true;
}

/* ---- EHLO capabilities ---- */

static const struct {
	const char *name;
	unsigned bit;
} xclient_attr_names[] = {
    {"NAME", XCLIENT_ATTR_NAME},	 {"ADDR", XCLIENT_ATTR_ADDR},
    {"PORT", XCLIENT_ATTR_PORT},	 {"PROTO", XCLIENT_ATTR_PROTO},
    {"HELO", XCLIENT_ATTR_HELO},	 {"LOGIN", XCLIENT_ATTR_LOGIN},
    {"DESTADDR", XCLIENT_ATTR_DESTADDR}, {"DESTPORT", XCLIENT_ATTR_DESTPORT},
};

/* Keywords that pass through unchanged (no argument kept). */
static const struct {
	const char *name;
	unsigned bit;
} ehlo_plain_caps[] = {
    {"8BITMIME", EHLO_CAP_8BITMIME},
    {"PIPELINING", EHLO_CAP_PIPELINING},
    {"ENHANCEDSTATUSCODES", EHLO_CAP_ENHANCEDSTATUSCODES},
    {"SMTPUTF8", EHLO_CAP_SMTPUTF8},
    {"DSN", EHLO_CAP_DSN},
};

void ehlo_caps_add_line(struct ehlo_caps *caps, const char *text, size_t len)
{
	const char *kw, *arg;
	size_t kw_len, arg_len, pos = 0;

	if (!next_word(text, len, &pos, &kw, &kw_len))
		return;

	for (size_t i = 0;
	     i < sizeof(ehlo_plain_caps) / sizeof(ehlo_plain_caps[0]); i++) {
		if (word_is(kw, kw_len, ehlo_plain_caps[i].name)) {
			caps->caps |= ehlo_plain_caps[i].bit;
			return;
		}
	}
	if (word_is(kw, kw_len, "SIZE")) {
		/* RFC 1870 §4: "SIZE [number]", 0 or none = no fixed limit;
		 * a value we cannot read counts as none. */
		caps->caps |= EHLO_CAP_SIZE;
		caps->size = 0;
		caps->size_has_value = false;
		if (next_word(text, len, &pos, &arg, &arg_len) &&
		    parse_u64(arg, arg_len, &caps->size))
			caps->size_has_value = true;
		else
			caps->size = 0;
		return;
	}
	if (word_is(kw, kw_len, "DELIVERBY")) {
		/* RFC 2852 §4: "DELIVERBY [min-by-time]", digits only: it is
		 * shown to clients, so nothing else is copied. */
		size_t i;

		caps->caps |= EHLO_CAP_DELIVERBY;
		caps->deliverby[0] = '\0';
		if (!next_word(text, len, &pos, &arg, &arg_len) ||
		    arg_len > EHLO_DELIVERBY_MAX)
			return;
		for (i = 0; i < arg_len && is_digit(arg[i]); i++)
			;
		if (i == arg_len) {
			memcpy(caps->deliverby, arg, arg_len);
			caps->deliverby[arg_len] = '\0';
		}
		return;
	}
	if (word_is(kw, kw_len, "XCLIENT")) {
		caps->caps |= EHLO_CAP_XCLIENT;
		while (next_word(text, len, &pos, &arg, &arg_len)) {
			for (size_t i = 0;
			     i < sizeof(xclient_attr_names) /
				     sizeof(xclient_attr_names[0]);
			     i++) {
				if (word_is(arg, arg_len,
					    xclient_attr_names[i].name))
					caps->xclient_attrs |=
					    xclient_attr_names[i].bit;
			}
		}
		return;
	}
	/* Anything else (STARTTLS, AUTH, AUTH=..., XCLIENT's cousin
	 * XFORWARD, CHUNKING, BINARYMIME, ETRN, unknown) is dropped. */
}

static bool ehlo_deliverby_ok(const struct ehlo_caps *caps)
{
	const char *arg = caps->deliverby;
	size_t n = strnlen(arg, sizeof(caps->deliverby));

	if (n == 0 || n > EHLO_DELIVERBY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(arg[i]))
			return false;
	return true;
}

size_t ehlo_caps_render(const struct ehlo_caps *caps, unsigned allowed,
			uint64_t max_size, char lines[][64], size_t max_lines)
{
	unsigned shown = caps->caps & allowed & ~(unsigned)EHLO_CAP_XCLIENT;
	size_t n = 0;

#define EHLO_RENDER(...)                                                       \
	do {                                                                   \
		if (n < max_lines)                                             \
			snprintf(lines[n++], 64, __VA_ARGS__);                 \
	} while (0)

	if (shown & EHLO_CAP_PIPELINING)
		EHLO_RENDER("PIPELINING");
	if (shown & EHLO_CAP_SIZE) {
		/* Only when the backend announced SIZE: the smaller
		 * non-zero limit of the two, or a bare "SIZE" (no fixed
		 * limit, RFC 1870 §4) when neither has one. */
		uint64_t limit = caps->size;

		if (max_size != 0 && (limit == 0 || max_size < limit))
			limit = max_size;
		if (limit != 0)
			EHLO_RENDER("SIZE %" PRIu64, limit);
		else
			EHLO_RENDER("SIZE");
	}
	if (shown & EHLO_CAP_8BITMIME)
		EHLO_RENDER("8BITMIME");
	if (shown & EHLO_CAP_ENHANCEDSTATUSCODES)
		EHLO_RENDER("ENHANCEDSTATUSCODES");
	if (shown & EHLO_CAP_SMTPUTF8)
		EHLO_RENDER("SMTPUTF8");
	if (shown & EHLO_CAP_DSN)
		EHLO_RENDER("DSN");
	if (shown & EHLO_CAP_DELIVERBY) {
		if (ehlo_deliverby_ok(caps))
			EHLO_RENDER("DELIVERBY %s", caps->deliverby);
		else
			EHLO_RENDER("DELIVERBY");
	}
#undef EHLO_RENDER
	return n;
}

size_t ehlo_caps_client(const struct ehlo_caps *caps, uint64_t max_size,
			char lines[][64], size_t max_lines)
{
	struct ehlo_caps shown = *caps;

	shown.caps |= EHLO_CAP_PIPELINING | EHLO_CAP_SIZE;
	return ehlo_caps_render(&shown, EHLO_CAPS_PASS, max_size, lines,
				max_lines);
}

/* ---- MAIL FROM / RCPT TO ---- */

struct smtp_path_args {
	const char *path; /* inside < > */
	size_t path_len;
	const char *params; /* after the path's separating space(s) */
	size_t params_len;
};

/* RFC 5321 §4.1.2 esmtp-param = esmtp-keyword ["=" esmtp-value];
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); esmtp-value =
 * 1*(%d33-60 / %d62-126), plus UTF-8 under SMTPUTF8 (RFC 6531 §3.3). */
static bool esmtp_param_split(const char *p, size_t n, size_t *kw_len_r,
			      const char **value_r, size_t *value_len_r)
{
	size_t i = 0;

	while (i < n && (is_alnum(p[i]) || (i > 0 && p[i] == '-')))
		i++;
	if (i == 0)
		return false;
	*kw_len_r = i;
	*value_r = NULL;
	*value_len_r = 0;
	if (i == n)
		return true;
	if (p[i] != '=' || i + 1 == n)
		return false;
	for (size_t j = i + 1; j < n; j++) {
		unsigned char c = (unsigned char)p[j];

		if (c <= ' ' || c == '=' || c == 0x7f)
			return false;
	}
	*value_r = p + i + 1;
	*value_len_r = n - i - 1;
	return true;
}

/* "PREFIX<path> [params]" with PREFIX "FROM:" or "TO:" (case-insensitive,
 * RFC 5321 §2.4), one tolerated space after the colon. */
static int smtp_path_args_parse(const char *args, size_t len,
				const char *prefix, struct smtp_path_args *pa)
{
	size_t prefix_len = strlen(prefix), i, start;
	const char *word;
	size_t word_len, pos, kw_len, value_len;
	const char *value;

	for (i = 0; i < len; i++)
		if (is_ctl((unsigned char)args[i]))
			return -1;
	if (len < prefix_len || strncasecmp(args, prefix, prefix_len) != 0)
		return -1;
	i = prefix_len;
	if (i < len && args[i] == ' ')
		i++;
	if (i == len || args[i] != '<')
		return -1;
	start = ++i;
	while (i < len && args[i] != '>') {
		if (args[i] == ' ' || args[i] == '<')
			return -1;
		i++;
	}
	if (i == len)
		return -1;
	pa->path = args + start;
	pa->path_len = i - start;
	if (pa->path_len + 2 > SMTP_PATH_MAX)
		return -1;
	i++;
	if (i < len && args[i] != ' ')
		return -1;
	while (i < len && args[i] == ' ')
		i++;
	pa->params = args + i;
	pa->params_len = len - i;
	while (pa->params_len > 0 && pa->params[pa->params_len - 1] == ' ')
		pa->params_len--;

	pos = 0;
	while (next_word(pa->params, pa->params_len, &pos, &word, &word_len))
		if (!esmtp_param_split(word, word_len, &kw_len, &value,
				       &value_len))
			return -1;
	return 0;
}

static bool out_append(char *out, size_t out_size, size_t *o, const char *p,
		       size_t n)
{
	if (out_size - *o <= n)
		return false;
	memcpy(out + *o, p, n);
	*o += n;
	out[*o] = '\0';
	return true;
}

/* ---- parameter values ----
 *
 * Each known parameter's value is checked against its RFC, so that what
 * the backend gets is what that RFC lets it expect (esmtp_param_split()
 * already refused blanks, controls and '=').  Lengths are left to the
 * backend: the line is bounded by max_line_length. */

static bool is_ascii(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return false;
	return true;
}

/* RFC 1870 §6: SIZE=1*20DIGIT. */
static enum smtp_args_verdict param_size(const char *v, size_t n, bool utf8)
{
	uint64_t size;

	(void)utf8;
	return v != NULL && parse_u64(v, n, &size) ? SMTP_ARGS_OK
						   : SMTP_ARGS_BAD_VALUE;
}

/* RFC 6152 §2: BODY=7BIT / 8BITMIME.  RFC 3030 §3: BINARYMIME needs
 * CHUNKING, which the proxy never offers (BDAT would bypass the DATA
 * scanner): not offered, whatever the backend has. */
static enum smtp_args_verdict param_body(const char *v, size_t n, bool utf8)
{
	(void)utf8;
	if (v == NULL)
		return SMTP_ARGS_BAD_VALUE;
	if (word_is(v, n, "7BIT") || word_is(v, n, "8BITMIME"))
		return SMTP_ARGS_OK;
	if (word_is(v, n, "BINARYMIME"))
		return SMTP_ARGS_NOT_OFFERED;
	return SMTP_ARGS_BAD_VALUE;
}

/* RFC 6531 §3.4: SMTPUTF8 takes no value. */
static enum smtp_args_verdict param_no_value(const char *v, size_t n, bool utf8)
{
	(void)n;
	(void)utf8;
	return v == NULL ? SMTP_ARGS_OK : SMTP_ARGS_BAD_VALUE;
}

/* RFC 3461 §4.3: RET=FULL / HDRS. */
static enum smtp_args_verdict param_ret(const char *v, size_t n, bool utf8)
{
	(void)utf8;
	return v != NULL && (word_is(v, n, "FULL") || word_is(v, n, "HDRS"))
		   ? SMTP_ARGS_OK
		   : SMTP_ARGS_BAD_VALUE;
}

/* RFC 3461 §4: xtext is "!" to "~" except "=" (and "+" starting a hex
 * pair, which is the backend's to decode); RFC 6533 §3 lets UTF-8 in
 * only when the transaction and the backend are SMTPUTF8. */
static enum smtp_args_verdict param_xtext(const char *v, size_t n, bool utf8)
{
	if (v == NULL || n == 0)
		return SMTP_ARGS_BAD_VALUE;
	if (!utf8 && !is_ascii(v, n))
		return SMTP_ARGS_BAD_VALUE;
	return SMTP_ARGS_OK;
}

/* RFC 3461 §4.2: ORCPT=addr-type ";" xtext, addr-type an atom
 * ("rfc822", "utf-8"). */
static enum smtp_args_verdict param_orcpt(const char *v, size_t n, bool utf8)
{
	const char *semi = v != NULL ? memchr(v, ';', n) : NULL;
	size_t type_len;

	if (semi == NULL)
		return SMTP_ARGS_BAD_VALUE;
	type_len = (size_t)(semi - v);
	if (type_len == 0)
		return SMTP_ARGS_BAD_VALUE;
	for (size_t i = 0; i < type_len; i++)
		if (!is_alnum(v[i]) && v[i] != '-')
			return SMTP_ARGS_BAD_VALUE;
	return param_xtext(semi + 1, n - type_len - 1, utf8);
}

/* RFC 3461 §4.1: NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE and
 * DELAY. */
static enum smtp_args_verdict param_notify(const char *v, size_t n, bool utf8)
{
	size_t i = 0;

	(void)utf8;
	if (v == NULL)
		return SMTP_ARGS_BAD_VALUE;
	if (word_is(v, n, "NEVER"))
		return SMTP_ARGS_OK;
	while (i <= n) {
		const char *comma = memchr(v + i, ',', n - i);
		size_t end = comma != NULL ? (size_t)(comma - v) : n;

		if (!word_is(v + i, end - i, "SUCCESS") &&
		    !word_is(v + i, end - i, "FAILURE") &&
		    !word_is(v + i, end - i, "DELAY"))
			return SMTP_ARGS_BAD_VALUE;
		i = end + 1;
	}
	return SMTP_ARGS_OK;
}

/* RFC 2852 §4: BY=["+"/"-"]1*9DIGIT ";" ("R" / "N") ["T"]. */
static enum smtp_args_verdict param_by(const char *v, size_t n, bool utf8)
{
	size_t i = 0, digits;

	(void)utf8;
	if (v == NULL)
		return SMTP_ARGS_BAD_VALUE;
	if (i < n && (v[i] == '+' || v[i] == '-'))
		i++;
	for (digits = 0; i < n && is_digit(v[i]); i++)
		digits++;
	if (digits == 0 || digits > 9 || i == n || v[i++] != ';')
		return SMTP_ARGS_BAD_VALUE;
	if (i == n || strchr("RrNn", v[i]) == NULL)
		return SMTP_ARGS_BAD_VALUE;
	i++;
	if (i < n && (v[i] == 'T' || v[i] == 't'))
		i++;
	return i == n ? SMTP_ARGS_OK : SMTP_ARGS_BAD_VALUE;
}

/* ---- MAIL FROM / RCPT TO parameters ---- */

enum smtp_param_use {
	PARAM_NEEDS_EXT, /* relayed when the backend has ext, else 555 */
	PARAM_OWN,	 /* the proxy's (SIZE): relayed or dropped */
	PARAM_REMOVED,	 /* never relayed (AUTH) */
};

struct smtp_param {
	const char *name;
	enum smtp_args_cmd cmd;
	enum smtp_param_use use;
	unsigned cap;	      /* the extension it belongs to */
	const char *ext_name; /* for the 555 text */
	enum smtp_args_verdict (*check)(const char *value, size_t len,
					bool utf8);
};

/* The parameters the proxy can ever offer; a bit each for "seen". */
static const struct smtp_param smtp_params[] = {
    {"SIZE", SMTP_ARGS_MAIL, PARAM_OWN, EHLO_CAP_SIZE, "SIZE", param_size},
    {"BODY", SMTP_ARGS_MAIL, PARAM_NEEDS_EXT, EHLO_CAP_8BITMIME, "8BITMIME",
     param_body},
    {"SMTPUTF8", SMTP_ARGS_MAIL, PARAM_NEEDS_EXT, EHLO_CAP_SMTPUTF8, "SMTPUTF8",
     param_no_value},
    {"RET", SMTP_ARGS_MAIL, PARAM_NEEDS_EXT, EHLO_CAP_DSN, "DSN", param_ret},
    {"ENVID", SMTP_ARGS_MAIL, PARAM_NEEDS_EXT, EHLO_CAP_DSN, "DSN",
     param_xtext},
    {"BY", SMTP_ARGS_MAIL, PARAM_NEEDS_EXT, EHLO_CAP_DELIVERBY, "DELIVERBY",
     param_by},
    /* RFC 4954 §5: the proxy does not vouch for the client's AUTH=
     * claim, so the backend never sees one, whatever its value. */
    {"AUTH", SMTP_ARGS_MAIL, PARAM_REMOVED, 0, NULL, NULL},
    {"NOTIFY", SMTP_ARGS_RCPT, PARAM_NEEDS_EXT, EHLO_CAP_DSN, "DSN",
     param_notify},
    {"ORCPT", SMTP_ARGS_RCPT, PARAM_NEEDS_EXT, EHLO_CAP_DSN, "DSN",
     param_orcpt},
};
#define SMTP_PARAMS_COUNT (sizeof(smtp_params) / sizeof(smtp_params[0]))
static_assert(SMTP_PARAMS_COUNT <= sizeof(unsigned) * 8,
	      "one bit per parameter in smtp_params_check()'s seen");

static const char *const smtp_args_verdict_names[] = {
    [SMTP_ARGS_OK] = "ok",
    [SMTP_ARGS_SYNTAX] = "syntax",
    [SMTP_ARGS_BAD_VALUE] = "bad_param",
    [SMTP_ARGS_DUPLICATE] = "duplicate_param",
    [SMTP_ARGS_UNKNOWN] = "unknown_param",
    [SMTP_ARGS_NOT_OFFERED] = "param_not_offered",
    [SMTP_ARGS_UTF8_REQUIRED] = "utf8_required",
    [SMTP_ARGS_UTF8_UNSUPPORTED] = "utf8_unsupported",
    [SMTP_ARGS_TOO_LONG] = "too_long",
};
static_assert(sizeof(smtp_args_verdict_names) /
		      sizeof(smtp_args_verdict_names[0]) ==
		  SMTP_ARGS_VERDICT_COUNT,
	      "one name per verdict");

static const struct smtp_param *smtp_param_find(enum smtp_args_cmd cmd,
						const char *kw, size_t kw_len)
{
	for (size_t i = 0; i < SMTP_PARAMS_COUNT; i++)
		if (smtp_params[i].cmd == cmd &&
		    word_is(kw, kw_len, smtp_params[i].name))
			return &smtp_params[i];
	return NULL;
}

/* Whether the parameters hold the keyword kw. */
static bool smtp_params_have(const struct smtp_path_args *pa, const char *kw)
{
	const char *word, *value;
	size_t word_len, kw_len, value_len, pos = 0;

	while (next_word(pa->params, pa->params_len, &pos, &word, &word_len)) {
		esmtp_param_split(word, word_len, &kw_len, &value, &value_len);
		if (word_is(word, kw_len, kw))
			return true;
	}
	return false;
}

/* Whether a parameter (one smtp_params_check() let through) goes into
 * the backend's line. */
static bool smtp_param_relayed(const struct smtp_param *p, unsigned caps)
{
	if (p == NULL)
		return false;
	switch (p->use) {
	case PARAM_OWN:
		return (caps & p->cap) != 0;
	case PARAM_REMOVED:
		return false;
	case PARAM_NEEDS_EXT:
	default:
		return true;
	}
}

/* Each parameter in turn: the first that may not go decides. */
static enum smtp_args_verdict smtp_params_check(enum smtp_args_cmd cmd,
						const struct smtp_path_args *pa,
						unsigned caps, bool utf8,
						struct smtp_args *a)
{
	const char *word, *value;
	size_t word_len, kw_len, value_len, pos = 0;
	unsigned seen = 0;

	while (next_word(pa->params, pa->params_len, &pos, &word, &word_len)) {
		const struct smtp_param *p;
		enum smtp_args_verdict v;
		unsigned bit;

		esmtp_param_split(word, word_len, &kw_len, &value, &value_len);
		a->param = word;
		a->param_len = kw_len;
		p = smtp_param_find(cmd, word, kw_len);
		if (p == NULL)
			return SMTP_ARGS_UNKNOWN;
		a->param = p->name;
		a->param_len = strlen(p->name);
		bit = 1u << (unsigned)(p - smtp_params);
		/* The proxy and the backend must not read different ones. */
		if (seen & bit)
			return SMTP_ARGS_DUPLICATE;
		seen |= bit;
		v = p->check != NULL ? p->check(value, value_len, utf8)
				     : SMTP_ARGS_OK;
		if (v == SMTP_ARGS_NOT_OFFERED)
			a->ext = "BINARYMIME"; /* the only value that needs
						* more than its keyword */
		if (v != SMTP_ARGS_OK)
			return v;
		if (p->use == PARAM_NEEDS_EXT && !(caps & p->cap)) {
			a->ext = p->ext_name;
			return SMTP_ARGS_NOT_OFFERED;
		}
		if (p->use == PARAM_OWN) {
			a->has_size = true;
			parse_u64(value, value_len, &a->size);
		}
	}
	a->param = NULL;
	a->param_len = 0;
	return SMTP_ARGS_OK;
}

/* "MAIL FROM:<path>" or "RCPT TO:<path>", then the parameters that go. */
static enum smtp_args_verdict
smtp_args_write(enum smtp_args_cmd cmd, const struct smtp_path_args *pa,
		unsigned caps, char *out, size_t out_size, struct smtp_args *a)
{
	const char *prefix =
	    cmd == SMTP_ARGS_MAIL ? "MAIL FROM:<" : "RCPT TO:<";
	const char *word, *value;
	size_t word_len, kw_len, value_len, pos = 0, o = 0;

	if (!out_append(out, out_size, &o, prefix, strlen(prefix)) ||
	    !out_append(out, out_size, &o, pa->path, pa->path_len) ||
	    !out_append(out, out_size, &o, ">", 1))
		goto too_long;
	while (next_word(pa->params, pa->params_len, &pos, &word, &word_len)) {
		esmtp_param_split(word, word_len, &kw_len, &value, &value_len);
		if (!smtp_param_relayed(smtp_param_find(cmd, word, kw_len),
					caps))
			continue;
		if (!out_append(out, out_size, &o, " ", 1) ||
		    !out_append(out, out_size, &o, word, word_len))
			goto too_long;
	}
	a->out_len = o;
	return SMTP_ARGS_OK;

too_long:
	out[0] = '\0';
	return SMTP_ARGS_TOO_LONG;
}

enum smtp_args_verdict smtp_args_filter(enum smtp_args_cmd cmd,
					const char *args, size_t len,
					unsigned caps, bool tx_smtputf8,
					char *out, size_t out_size,
					struct smtp_args *a)
{
	struct smtp_path_args pa;
	enum smtp_args_verdict v;
	bool utf8;

	memset(a, 0, sizeof(*a));
	if (out_size == 0)
		return SMTP_ARGS_TOO_LONG;
	out[0] = '\0';
	if (smtp_path_args_parse(
		args, len, cmd == SMTP_ARGS_MAIL ? "FROM:" : "TO:", &pa) < 0)
		return SMTP_ARGS_SYNTAX;
	/* RFC 5321 §4.1.1.3: a forward-path is never empty ("<Postmaster>"
	 * without a domain is fine). */
	if (cmd == SMTP_ARGS_RCPT && pa.path_len == 0)
		return SMTP_ARGS_SYNTAX;
	a->path = pa.path;
	a->path_len = pa.path_len;
	a->smtputf8 = cmd == SMTP_ARGS_MAIL ? smtp_params_have(&pa, "SMTPUTF8")
					    : tx_smtputf8;
	/* RFC 6531 §3.2, §3.7.4: an address beyond ASCII only in an
	 * SMTPUTF8 transaction, and only to a server that offers it; this
	 * comes before the parameters, SMTPUTF8's own 555 among them. */
	if (!is_ascii(pa.path, pa.path_len)) {
		if (!a->smtputf8)
			return SMTP_ARGS_UTF8_REQUIRED;
		if (!(caps & EHLO_CAP_SMTPUTF8))
			return SMTP_ARGS_UTF8_UNSUPPORTED;
	}
	utf8 = a->smtputf8 && (caps & EHLO_CAP_SMTPUTF8);
	v = smtp_params_check(cmd, &pa, caps, utf8, a);
	if (v != SMTP_ARGS_OK)
		return v;
	return smtp_args_write(cmd, &pa, caps, out, out_size, a);
}

void smtp_args_reply(enum smtp_args_cmd cmd, enum smtp_args_verdict v,
		     const struct smtp_args *a, char *buf, size_t size)
{
	const char *verb = cmd == SMTP_ARGS_MAIL ? "MAIL" : "RCPT";
	/* Known keywords are ours; an unknown one is the client's letters,
	 * digits and '-' (esmtp_param_split()), cut short here. */
	int n = a->param_len > 64 ? 64 : (int)a->param_len;
	const char *param = a->param != NULL ? a->param : "";

	if (size == 0)
		return;
	switch (v) {
	case SMTP_ARGS_OK:
		buf[0] = '\0';
		return;
	case SMTP_ARGS_SYNTAX:
		snprintf(buf, size, "501 5.5.4 Syntax: %s",
			 cmd == SMTP_ARGS_MAIL ? "MAIL FROM:<address>"
					       : "RCPT TO:<address>");
		return;
	case SMTP_ARGS_BAD_VALUE:
		snprintf(buf, size, "501 5.5.4 Bad %.*s parameter", n, param);
		return;
	case SMTP_ARGS_DUPLICATE:
		snprintf(buf, size, "501 5.5.4 Duplicate %.*s parameter", n,
			 param);
		return;
	case SMTP_ARGS_UNKNOWN:
		/* RFC 5321 §4.1.1.11: 555, parameter not recognized. */
		snprintf(buf, size, "555 5.5.4 Unsupported %s parameter %.*s",
			 verb, n, param);
		return;
	case SMTP_ARGS_NOT_OFFERED:
		snprintf(buf, size,
			 "555 5.5.4 %s parameter %.*s not supported: %s is "
			 "not offered",
			 verb, n, param, a->ext != NULL ? a->ext : "it");
		return;
	case SMTP_ARGS_UTF8_REQUIRED:
		snprintf(buf, size,
			 "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	case SMTP_ARGS_UTF8_UNSUPPORTED:
		snprintf(buf, size,
			 "553 5.6.7 Non-ASCII address not supported");
		return;
	case SMTP_ARGS_TOO_LONG:
	case SMTP_ARGS_VERDICT_COUNT:
	default:
		snprintf(buf, size, "500 5.5.6 Line too long");
		return;
	}
}

const char *smtp_args_verdict_name(enum smtp_args_verdict v)
{
	return v < SMTP_ARGS_VERDICT_COUNT ? smtp_args_verdict_names[v]
					   : "unknown";
}

long xtext_encode(const char *in, size_t len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (out_size == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		/* RFC 3461 §4: xchar is "!" to "~" except "+" and "=";
		 * anything else is "+" and two upper-case hex digits. */
		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			if (out_size - o < 2)
				goto too_small;
			out[o++] = (char)c;
		} else {
			if (out_size - o < 4)
				goto too_small;
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	out[o] = '\0';
	return (long)o;

too_small:
	out[0] = '\0';
	return -1;
}

/* ---- XCLIENT ---- */

/* Appends to an XCLIENT line; false once it would not fit. */
static bool xclient_append(char *line, size_t size, size_t *off,
			   const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool xclient_append(char *line, size_t size, size_t *off,
			   const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off >= size)
		return false;
	va_start(ap, fmt);
	n = vsnprintf(line + *off, size - *off, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size - *off)
		return false;
	*off += (size_t)n;
	return true;
}

long xclient_build(const struct xclient_client *client, unsigned attrs,
		   char *out, size_t size)
{
	/* A 255-byte HELO name or a 256-byte login, xtext tripled. */
	char enc[800];
	size_t off = 0;
	bool ok;

	/* Values are xtext; an IPv6 address is written "IPV6:...". */
	ok = xclient_append(out, size, &off, "XCLIENT");
	if (ok && (attrs & XCLIENT_ATTR_NAME))
		ok = xclient_append(out, size, &off, " NAME=[UNAVAILABLE]");
	if (ok && (attrs & XCLIENT_ATTR_ADDR))
		ok = xclient_append(out, size, &off, " ADDR=%s%s",
				    strchr(client->addr, ':') ? "IPV6:" : "",
				    client->addr);
	if (ok && (attrs & XCLIENT_ATTR_PORT))
		ok = xclient_append(out, size, &off, " PORT=%u", client->port);
	if (ok && (attrs & XCLIENT_ATTR_HELO) && client->helo != NULL)
		ok = xtext_encode(client->helo, strlen(client->helo), enc,
				  sizeof(enc)) >= 0 &&
		     xclient_append(out, size, &off, " HELO=%s", enc);
	if (ok && (attrs & XCLIENT_ATTR_LOGIN) && client->login != NULL)
		ok = xtext_encode(client->login, strlen(client->login), enc,
				  sizeof(enc)) >= 0 &&
		     xclient_append(out, size, &off, " LOGIN=%s", enc);
	if (ok && (attrs & XCLIENT_ATTR_PROTO))
		ok = xclient_append(out, size, &off, " PROTO=ESMTP");
	if (!ok) {
		if (size > 0)
			out[0] = '\0';
		return -1;
	}
	return (long)off;
}
