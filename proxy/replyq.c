/* replyq.c - see replyq.h */
#include "proxy/replyq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct replyq_entry {
	struct replyq_entry *next;
	bool relayed;
	size_t len;
	char text[]; /* local replies only */
};

void replyq_init(struct replyq *q, replyq_emit_fn *emit, void *arg)
{
	memset(q, 0, sizeof(*q));
	q->emit = emit;
	q->arg = arg;
}

static void replyq_append(struct replyq *q, struct replyq_entry *e)
{
	e->next = NULL;
	if (q->tail != NULL)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->owed++;
	if (e->relayed)
		q->relayed++;
}

static struct replyq_entry *replyq_pop(struct replyq *q)
{
	struct replyq_entry *e = q->head;

	q->head = e->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->owed--;
	if (e->relayed)
		q->relayed--;
	return e;
}

void replyq_local(struct replyq *q, const char *text, size_t len)
{
	struct replyq_entry *e;

	if (q->head == NULL) {
		q->emit(q->arg, text, len);
		return;
	}
	e = xmalloc(sizeof(*e) + len);
	e->relayed = false;
	e->len = len;
	memcpy(e->text, text, len);
	replyq_append(q, e);
}

void replyq_expect(struct replyq *q)
{
	struct replyq_entry *e = xmalloc(sizeof(*e));

	e->relayed = true;
	e->len = 0;
	replyq_append(q, e);
}

/* Emits the local replies at the head, up to the next relayed place. */
static void replyq_emit_ready(struct replyq *q)
{
	while (q->head != NULL && !q->head->relayed) {
		struct replyq_entry *e = replyq_pop(q);

		q->emit(q->arg, e->text, e->len);
		free(e);
	}
}

bool replyq_answer(struct replyq *q, const char *text, size_t len)
{
	if (q->head == NULL)
		return false;
	/* The head is relayed: locals never wait in front of nothing. */
	assert(q->head->relayed);
	free(replyq_pop(q));
	q->emit(q->arg, text, len);
	replyq_emit_ready(q);
	return true;
}

void replyq_finish(struct replyq *q, const char *relayed_text, size_t len)
{
	while (q->head != NULL) {
		struct replyq_entry *e = replyq_pop(q);

		if (e->relayed)
			q->emit(q->arg, relayed_text, len);
		else
			q->emit(q->arg, e->text, e->len);
		free(e);
	}
}

void replyq_clear(struct replyq *q)
{
	while (q->head != NULL)
		free(replyq_pop(q));
}
