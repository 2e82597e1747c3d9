/* linebuf.c - see linebuf.h */
#include "proxy/linebuf.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void linebuf_init(struct linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void linebuf_reset(struct linebuf *lb)
{
	if (lb->buf != NULL) {
		explicit_bzero(lb->buf, lb->cap);
		free(lb->buf);
	}
	lb->buf = NULL;
	lb->cap = 0;
	lb->len = 0;
	lb->discarding = false;
	lb->returned = false;
}

bool linebuf_has_partial(const struct linebuf *lb)
{
	return (lb->len > 0 && !lb->returned) || lb->discarding;
}

/* Makes room for need bytes (need <= raw_max), growing by doubling. */
static void linebuf_reserve(struct linebuf *lb, size_t need, size_t raw_max)
{
	size_t cap = lb->cap ? lb->cap : 128;
	char *buf;

	if (need <= lb->cap)
		return;
	while (cap < need)
		cap *= 2;
	if (cap > raw_max + 1)
		cap = raw_max + 1;
	/* Not realloc: the old copy must be wiped, not left on the heap. */
	buf = xmalloc(cap);
	if (lb->len > 0)
		memcpy(buf, lb->buf, lb->len);
	if (lb->buf != NULL) {
		explicit_bzero(lb->buf, lb->cap);
		free(lb->buf);
	}
	lb->buf = buf;
	lb->cap = cap;
}

static size_t strip_cr(const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

enum linebuf_result linebuf_next(struct linebuf *lb, const char *data,
				 size_t len, size_t *consumed_r,
				 const char **line_r, size_t *len_r)
{
	/* Longest raw line we keep: max characters plus the CR. */
	size_t raw_max = lb->max + 1;
	const char *lf;
	size_t off = 0;

	if (lb->returned)
		linebuf_reset(lb);

	if (lb->discarding) {
		lf = memchr(data, '\n', len);
		if (lf == NULL) {
			*consumed_r = len;
			return LINEBUF_NEED_MORE;
		}
		lb->discarding = false;
		off = (size_t)(lf - data) + 1;
	}

	lf = memchr(data + off, '\n', len - off);
	if (lb->len == 0) {
		if (lf != NULL) {
			size_t n = (size_t)(lf - (data + off));

			*consumed_r = off + n + 1;
			if (n > raw_max || strip_cr(data + off, n) > lb->max)
				return LINEBUF_TOO_LONG;
			*line_r = data + off;
			*len_r = strip_cr(data + off, n);
			return LINEBUF_LINE;
		}
		if (len - off > raw_max) {
			lb->discarding = true;
			*consumed_r = len;
			return LINEBUF_TOO_LONG;
		}
		if (len > off) {
			linebuf_reserve(lb, len - off, raw_max);
			memcpy(lb->buf, data + off, len - off);
			lb->len = len - off;
		}
		*consumed_r = len;
		return LINEBUF_NEED_MORE;
	}

	/* A partial line is pending: append to it. */
	{
		size_t n = lf != NULL ? (size_t)(lf - (data + off)) : len - off;

		if (lb->len + n > raw_max) {
			linebuf_reset(lb);
			if (lf == NULL) {
				lb->discarding = true;
				*consumed_r = len;
			} else {
				*consumed_r = off + n + 1;
			}
			return LINEBUF_TOO_LONG;
		}
		linebuf_reserve(lb, lb->len + n, raw_max);
		memcpy(lb->buf + lb->len, data + off, n);
		lb->len += n;
		if (lf == NULL) {
			*consumed_r = len;
			return LINEBUF_NEED_MORE;
		}
		*consumed_r = off + n + 1;
		if (strip_cr(lb->buf, lb->len) > lb->max) {
			linebuf_reset(lb);
			return LINEBUF_TOO_LONG;
		}
		lb->returned = true;
		*line_r = lb->buf;
		*len_r = strip_cr(lb->buf, lb->len);
		return LINEBUF_LINE;
	}
}
