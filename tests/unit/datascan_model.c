/*
 * datascan_model.c - see datascan_model.h
 */
#include "tests/unit/datascan_model.h"

#include <stdlib.h>
#include <string.h>

static void *model_alloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static void model_put(char *buf, size_t *len, const char *p, size_t n)
{
	if (n > 0)
		memcpy(buf + *len, p, n);
	*len += n;
}

/* One line of the body, p[0..n) without its line ending.  smtp_line: it
 * starts the body or follows a CR LF; eol: a line ending follows; ended:
 * nothing more can come on this line (eol, or a pending CR). */
static void model_line(struct datascan_model *m, const char *p, size_t n,
		       bool smtp_line, bool eol, bool ended,
		       enum datascan_nul_mode mode)
{
	/* The content is built where it goes in m->content; it is kept
	 * there only when the line is complete. */
	char *c = m->content + m->content_len;
	size_t cn = 0, lead = 0;

	if (smtp_line && n > 0 && p[0] == '.') {
		p++; /* RFC 5321 §4.5.2 transparency */
		n--;
	}
	for (size_t j = 0; j < n; j++)
		if (p[j] != '\0' || mode == DATASCAN_NUL_PASS)
			c[cn++] = p[j];
	while (lead < cn && c[lead] == '\0')
		lead++;
	if (lead < cn && c[lead] == '.') {
		if (lead <= DATASCAN_NUL_HOLD) {
			model_put(m->out, &m->out_len, ".", 1);
			model_put(m->out, &m->out_len, c, cn);
		} else {
			model_put(m->out, &m->out_len, c, lead);
			model_put(m->out, &m->out_len, ".", 1);
			model_put(m->out, &m->out_len, c + lead, cn - lead);
			m->nul_overflow = true;
		}
	} else if (ended || lead < cn || lead > DATASCAN_NUL_HOLD) {
		model_put(m->out, &m->out_len, c, cn);
	} /* else only NULs so far, held back: a "." may still come */
	if (eol) {
		model_put(m->out, &m->out_len, "\r\n", 2);
		m->content_len += cn;
		model_put(m->content, &m->content_len, "\r\n", 2);
	}
}

void datascan_model_run(struct datascan_model *m, const char *in, size_t len,
			enum datascan_nul_mode mode)
{
	size_t body = len, start = 0;
	bool smtp_line = true;

	memset(m, 0, sizeof(*m));
	m->out = model_alloc(DATASCAN_OUT_MAX(len));
	m->content = model_alloc(3 * len);
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0) {
		m->done = true;
		m->consumed = 3;
		body = 0;
	} else {
		const char *p = in;

		while ((p = memchr(p, '\r', len - (size_t)(p - in))) != NULL &&
		       (size_t)(p - in) + 5 <= len) {
			if (memcmp(p, "\r\n.\r\n", 5) == 0) {
				m->done = true;
				m->consumed = (size_t)(p - in) + 5;
				body = (size_t)(p - in) + 2;
				break;
			}
			p++;
		}
	}
	if (!m->done)
		m->consumed = len;
	for (size_t i = 0; i < body; i++) {
		bool crlf;

		if (in[i] == '\0')
			m->nul_bytes++;
		if (in[i] != '\r' && in[i] != '\n')
			continue;
		if (in[i] == '\r' && i + 1 == body)
			break; /* pending: may be a CR LF */
		model_line(m, in + start, i - start, smtp_line, true, true,
			   mode);
		crlf = in[i] == '\r' && in[i + 1] == '\n';
		if (crlf)
			i++;
		else
			m->bare_newlines++;
		smtp_line = crlf;
		start = i + 1;
	}
	if (start < body) {
		bool pending_cr = in[body - 1] == '\r';

		model_line(m, in + start, body - start - (pending_cr ? 1 : 0),
			   smtp_line, false, pending_cr, mode);
	}
}

void datascan_model_free(struct datascan_model *m)
{
	free(m->out);
	free(m->content);
	m->out = m->content = NULL;
}

bool datascan_output_is_safe(const char *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '\r' && (i + 1 == len || out[i + 1] != '\n'))
			return false;
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			return false;
		if (i + 5 <= len && memcmp(out + i, "\r\n.\r\n", 5) == 0)
			return false;
	}
	return !(len >= 3 && memcmp(out, ".\r\n", 3) == 0);
}

/* What an RFC 5321 server reads from s: lines ended by CR LF; the line
 * "." is the end of data; any other line that starts with "." loses it.
 * The content goes to buf (with CR LF endings); true when the end of data
 * is the last line of s. */
static bool model_rfc_read(const char *s, size_t len, char *buf,
			   size_t *buf_len)
{
	size_t pos = 0;

	*buf_len = 0;
	while (pos < len) {
		size_t n = 0;

		while (pos + n + 1 < len &&
		       !(s[pos + n] == '\r' && s[pos + n + 1] == '\n'))
			n++;
		if (pos + n + 1 >= len)
			return false; /* a line without CR LF */
		if (n == 1 && s[pos] == '.')
			return pos + 3 == len;
		if (n > 0 && s[pos] == '.') {
			pos++;
			n--;
		}
		model_put(buf, buf_len, s + pos, n);
		model_put(buf, buf_len, "\r\n", 2);
		pos += n + 2;
	}
	return false; /* no end of data */
}

static size_t model_drop_nuls(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++)
		if (in[i] != '\0')
			out[o++] = in[i];
	return o;
}

bool datascan_backends_agree(const struct datascan_model *m, const char *out,
			     size_t out_len, const char **why_r)
{
	char *stream = model_alloc(out_len + 3);
	char *dropped = model_alloc(out_len + 3);
	char *content = model_alloc(m->content_len);
	char *read = model_alloc(out_len + 3);
	size_t stream_len = out_len, dropped_len, content_len, read_len;
	bool ok = false;

	*why_r = NULL;
	if (out_len > 0)
		memcpy(stream, out, out_len);
	dropped_len = model_drop_nuls(out, out_len, dropped);
	if (!datascan_output_is_safe(out, out_len)) {
		*why_r = "bare CR/LF or an end of data in the output";
		goto done;
	}
	if (!datascan_output_is_safe(dropped, dropped_len)) {
		*why_r = "an end of data in the output once NULs are dropped";
		goto done;
	}
	if (!m->done) {
		ok = true;
		goto done;
	}
	/* The relay sends the end of data after the scanner's output. */
	model_put(stream, &stream_len, ".\r\n", 3);
	model_put(dropped, &dropped_len, ".\r\n", 3);
	if (!model_rfc_read(stream, stream_len, read, &read_len)) {
		*why_r = "a strict backend finds the end of data elsewhere";
		goto done;
	}
	if (!m->nul_overflow && (read_len != m->content_len ||
				 memcmp(read, m->content, read_len) != 0)) {
		*why_r = "a strict backend reads another content";
		goto done;
	}
	if (!model_rfc_read(dropped, dropped_len, read, &read_len)) {
		*why_r =
		    "a NUL-dropping backend finds the end of data elsewhere";
		goto done;
	}
	content_len = model_drop_nuls(m->content, m->content_len, content);
	if (read_len != content_len || memcmp(read, content, read_len) != 0) {
		*why_r = "a NUL-dropping backend reads another content";
		goto done;
	}
	ok = true;
done:
	free(stream);
	free(dropped);
	free(content);
	free(read);
	return ok;
}
