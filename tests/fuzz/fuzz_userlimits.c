/*
 * fuzz_userlimits.c - libFuzzer harness for proxy/userlimits.c, the
 * [limits] user_limits file.
 *
 * The input is the file, copied to a heap block of its exact size so that
 * AddressSanitizer sees any read past it.  Besides memory errors, the
 * harness aborts when a documented property breaks: a file is refused
 * exactly when there are messages; each message is "fuzz:LINE: text" on
 * one line, LINE from 1 to the file's line count and never going back,
 * text printable ASCII (any byte of the file it quotes was checked); and
 * for an accepted file every login gets what a model written from the
 * format says (its line key by key, else the "*" line, else [limits]),
 * whatever the case the login is given in.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "proxy/userlimits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

#define FUZZ_CFG_MPH 11
#define FUZZ_CFG_RPH 22
#define FUZZ_CFG_RPD 33

static const char *const fuzz_keys[3] = {
    "messages_per_hour",
    "recipients_per_hour",
    "recipients_per_day",
};

/* One line of an accepted file, as the model reads it. */
struct fuzz_line {
	const char *login;
	size_t login_len;
	bool set[3];
	uint32_t value[3];
};

static bool fuzz_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The model's reading of an accepted file: every line that is not blank
 * or a comment is "login key=value...", keys known, numbers valid.
 * Returns the count of such lines; the first max go to out. */
static size_t fuzz_model(const char *buf, size_t len, struct fuzz_line *out,
			 size_t max)
{
	size_t n = 0, pos = 0;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - buf) : len, i = pos;
		struct fuzz_line line;

		if (end > pos && buf[end - 1] == '\r')
			end--;
		while (i < end && fuzz_blank(buf[i]))
			i++;
		if (i == end || buf[i] == '#') {
			pos = (nl != NULL ? (size_t)(nl - buf) : len) + 1;
			continue;
		}
		memset(&line, 0, sizeof(line));
		line.login = buf + i;
		while (i < end && !fuzz_blank(buf[i]))
			i++;
		line.login_len = (size_t)(buf + i - line.login);
		while (i < end) {
			const char *f;
			size_t flen, k;
			uint64_t v = 0;

			while (i < end && fuzz_blank(buf[i]))
				i++;
			if (i == end)
				break;
			f = buf + i;
			while (i < end && !fuzz_blank(buf[i]))
				i++;
			flen = (size_t)(buf + i - f);
			for (k = 0; k < 3; k++) {
				size_t kl = strlen(fuzz_keys[k]);

				if (flen > kl &&
				    memcmp(f, fuzz_keys[k], kl) == 0 &&
				    f[kl] == '=')
					break;
			}
			FUZZ_CHECK(k < 3 && !line.set[k]);
			for (size_t d = strlen(fuzz_keys[k]) + 1; d < flen;
			     d++) {
				FUZZ_CHECK(f[d] >= '0' && f[d] <= '9');
				v = v * 10 + (uint64_t)(f[d] - '0');
				FUZZ_CHECK(v <= UINT32_MAX);
			}
			line.set[k] = true;
			line.value[k] = (uint32_t)v;
		}
		if (n < max)
			out[n] = line;
		n++;
		pos = (nl != NULL ? (size_t)(nl - buf) : len) + 1;
	}
	return n;
}

static bool fuzz_same_login(const char *a, size_t alen, const char *b,
			    size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		char x = a[i], y = b[i];

		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

static void fuzz_expect(const struct fuzz_line *lines, size_t n,
			const char *login, size_t login_len, uint32_t want[3])
{
	const struct fuzz_line *star = NULL, *own = NULL;

	want[0] = FUZZ_CFG_MPH;
	want[1] = FUZZ_CFG_RPH;
	want[2] = FUZZ_CFG_RPD;
	for (size_t i = 0; i < n; i++) {
		if (lines[i].login_len == 1 && lines[i].login[0] == '*')
			star = &lines[i];
		else if (fuzz_same_login(lines[i].login, lines[i].login_len,
					 login, login_len))
			own = &lines[i];
	}
	for (size_t k = 0; k < 3; k++) {
		if (own != NULL && own->set[k])
			want[k] = own->value[k];
		else if (star != NULL && star->set[k])
			want[k] = star->value[k];
	}
}

static void fuzz_check_lookup(const struct userlimits *map,
			      const struct config *cfg,
			      const struct fuzz_line *lines, size_t n,
			      const char *login, size_t login_len)
{
	struct user_send_limits got;
	uint32_t want[3];

	fuzz_expect(lines, n, login, login_len, want);
	userlimits_get(map, cfg, login, login_len, &got);
	FUZZ_CHECK(got.messages_per_hour == want[0]);
	FUZZ_CHECK(got.recipients_per_hour == want[1]);
	FUZZ_CHECK(got.recipients_per_day == want[2]);
}

/* Every message "fuzz:LINE: text\n", lines in order. */
static size_t fuzz_check_messages(const char *out, size_t out_len, size_t lines)
{
	size_t count = 0, pos = 0;
	unsigned long last = 0;

	while (pos < out_len) {
		const char *nl = memchr(out + pos, '\n', out_len - pos);
		const char *p = out + pos, *end;
		unsigned long line = 0;

		FUZZ_CHECK(nl != NULL);
		end = nl;
		FUZZ_CHECK((size_t)(end - p) > 5 && memcmp(p, "fuzz:", 5) == 0);
		p += 5;
		FUZZ_CHECK(p < end && *p >= '1' && *p <= '9');
		while (p < end && *p >= '0' && *p <= '9')
			line = line * 10 + (unsigned long)(*p++ - '0');
		FUZZ_CHECK(line >= 1 && line <= lines && line >= last);
		last = line;
		FUZZ_CHECK(end - p > 2 && p[0] == ':' && p[1] == ' ');
		for (p += 2; p < end; p++)
			FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
		count++;
		pos = (size_t)(nl - out) + 1;
	}
	return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_line lines[4096];
	struct config cfg;
	struct userlimits *map;
	char *buf = malloc(size > 0 ? size : 1), *out = NULL;
	size_t out_len = 0, newlines = 0, nlines, n;
	FILE *err;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	for (size_t i = 0; i < size; i++)
		newlines += buf[i] == '\n';
	nlines = newlines + (size > 0 && buf[size - 1] != '\n');

	err = open_memstream(&out, &out_len);
	FUZZ_CHECK(err != NULL);
	map = userlimits_parse(buf, size, "fuzz", err);
	FUZZ_CHECK(fclose(err) == 0);
	n = fuzz_check_messages(out, out_len, nlines);
	FUZZ_CHECK((map == NULL) == (n > 0));
	free(out);
	if (map == NULL) {
		free(buf);
		return 0;
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.limits.user_messages_per_hour = FUZZ_CFG_MPH;
	cfg.limits.user_recipients_per_hour = FUZZ_CFG_RPH;
	cfg.limits.user_recipients_per_day = FUZZ_CFG_RPD;
	n = fuzz_model(buf, size, lines, sizeof(lines) / sizeof(lines[0]));
	if (n > sizeof(lines) / sizeof(lines[0]))
		n = 0; /* longer than -max_len allows by default: no model */
	for (size_t i = 0; i < n; i++) {
		char upper[300];
		size_t len = lines[i].login_len;

		fuzz_check_lookup(map, &cfg, lines, n, lines[i].login, len);
		FUZZ_CHECK(len <= sizeof(upper));
		for (size_t k = 0; k < len; k++) {
			char c = lines[i].login[k];

			upper[k] =
			    c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
		}
		fuzz_check_lookup(map, &cfg, lines, n, upper, len);
		/* One byte short: another login (or none). */
		if (len > 1)
			fuzz_check_lookup(map, &cfg, lines, n, lines[i].login,
					  len - 1);
	}
	fuzz_check_lookup(map, &cfg, lines, n, "", 0);
	fuzz_check_lookup(map, &cfg, lines, n, "\x80nobody", 7);

	FUZZ_CHECK(userlimits_ref(map) == map);
	userlimits_free(map);
	userlimits_free(map);
	free(buf);
	return 0;
}
