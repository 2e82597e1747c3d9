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
 * starts the body or follows a CR LF; eol: a line ending follows (else
 * the line is unfinished: the scanner has sent what it has of it). */
static void model_line(struct datascan_model *m, const char *p, size_t n,
		       bool smtp_line, bool eol, enum datascan_nul_mode mode)
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
	/* Stuffed where the dot stands, after the NULs. */
	model_put(m->out, &m->out_len, c, lead);
	if (lead < cn && c[lead] == '.')
		model_put(m->out, &m->out_len, ".", 1);
	model_put(m->out, &m->out_len, c + lead, cn - lead);
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
		model_line(m, in + start, i - start, smtp_line, true, mode);
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
			   smtp_line, false, mode);
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

/* in[0..len) with each line (ended by CR LF, or unfinished at the end)
 * cut at its first NUL: what a server that handles every line it reads
 * as a C string sees (OpenSMTPD: strcmp(line, ".")). */
static size_t model_cut_lines_at_nul(const char *in, size_t len, char *out)
{
	size_t o = 0;
	bool cut = false;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			i++;
			cut = false;
			continue;
		}
		if (in[i] == '\0')
			cut = true;
		if (!cut)
			out[o++] = in[i];
	}
	return o;
}

/* What a server that keeps NULs reads from the scanner's output for the
 * content lines in[0..len) (each ended by CR LF): the same, with a dot
 * more after the NULs that start a line when a dot follows them (the
 * scanner stuffs that dot where it stands). */
static size_t model_keeping_reading(const char *in, size_t len, char *out)
{
	size_t o = 0;
	bool bol = true;

	for (size_t i = 0; i < len; i++) {
		if (bol && in[i] == '\0') {
			size_t lead = 0;

			while (i + lead < len && in[i + lead] == '\0')
				lead++;
			memcpy(out + o, in + i, lead);
			o += lead;
			i += lead;
			if (i == len)
				break;
			if (in[i] == '.')
				out[o++] = '.';
		}
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	return o;
}

enum { MODEL_KEEPS, MODEL_DROPS, MODEL_CUTS, MODEL_BACKENDS };

static const struct {
	const char *unsafe, *other_end, *other_content;
} model_backend_why[MODEL_BACKENDS] = {
    [MODEL_KEEPS] = {"bare CR/LF or an end of data in the output",
		     "a strict backend finds the end of data elsewhere",
		     "a strict backend reads another content"},
    [MODEL_DROPS] = {"an end of data in the output once NULs are dropped",
		     "a NUL-dropping backend finds the end of data elsewhere",
		     "a NUL-dropping backend reads another content"},
    [MODEL_CUTS] = {"an end of data in the output once each line is cut "
		    "at its first NUL",
		    "a backend that cuts lines at a NUL finds the end of "
		    "data elsewhere",
		    "a backend that cuts lines at a NUL reads another "
		    "content"},
};

bool datascan_backends_agree(const struct datascan_model *m, const char *out,
			     size_t out_len, const char **why_r)
{
	/* Each backend's view of out (room for the relay's ".\r\n" after
	 * it), what it reads from that, and the content it must read (room
	 * for the dot more per line of the NUL-keeping reading). */
	char *view[MODEL_BACKENDS], *read[MODEL_BACKENDS];
	char *expected[MODEL_BACKENDS];
	size_t view_len[MODEL_BACKENDS], read_len[MODEL_BACKENDS];
	size_t expected_len[MODEL_BACKENDS];
	size_t room = 2 * (out_len + 3) + 2 * m->content_len;
	/* One block: nine mallocs a call slowed the property tests by a
	 * third under the sanitizers. */
	char *block = model_alloc(MODEL_BACKENDS * room);
	bool ok = false;
	int b;

	*why_r = NULL;
	for (b = 0; b < MODEL_BACKENDS; b++) {
		view[b] = block + (size_t)b * room;
		read[b] = view[b] + out_len + 3;
		expected[b] = read[b] + out_len + 3;
	}
	if (out_len > 0)
		memcpy(view[MODEL_KEEPS], out, out_len);
	view_len[MODEL_KEEPS] = out_len;
	expected_len[MODEL_KEEPS] = model_keeping_reading(
	    m->content, m->content_len, expected[MODEL_KEEPS]);
	view_len[MODEL_DROPS] =
	    model_drop_nuls(out, out_len, view[MODEL_DROPS]);
	expected_len[MODEL_DROPS] =
	    model_drop_nuls(m->content, m->content_len, expected[MODEL_DROPS]);
	view_len[MODEL_CUTS] =
	    model_cut_lines_at_nul(out, out_len, view[MODEL_CUTS]);
	expected_len[MODEL_CUTS] = model_cut_lines_at_nul(
	    m->content, m->content_len, expected[MODEL_CUTS]);

	/* Safety first, then where the end of data is, then the content:
	 * the worst finding is the one reported. */
	for (b = 0; b < MODEL_BACKENDS; b++)
		if (!datascan_output_is_safe(view[b], view_len[b])) {
			*why_r = model_backend_why[b].unsafe;
			goto done;
		}
	if (!m->done) {
		ok = true;
		goto done;
	}
	for (b = 0; b < MODEL_BACKENDS; b++) {
		/* The relay sends the end of data after the output. */
		model_put(view[b], &view_len[b], ".\r\n", 3);
		if (!model_rfc_read(view[b], view_len[b], read[b],
				    &read_len[b])) {
			*why_r = model_backend_why[b].other_end;
			goto done;
		}
	}
	for (b = 0; b < MODEL_BACKENDS; b++)
		if (read_len[b] != expected_len[b] ||
		    memcmp(read[b], expected[b], read_len[b]) != 0) {
			*why_r = model_backend_why[b].other_content;
			goto done;
		}
	ok = true;
done:
	free(block);
	return ok;
}
