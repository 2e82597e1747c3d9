/* test_replyq.c - the reply queue's ordering rules (RFC 2920 §3.1), as
 * scripts: each step queues a local reply, takes a relayed place, answers
 * one, finishes or clears; the emitted text must be the replies in command
 * order. */
#include <stdlib.h>
#include <string.h>

#include "proxy/replyq.h"
#include "tests/unit/tap.h"

static char emitted[4096];

static void emit(void *arg, const char *text, size_t len)
{
	size_t have = strlen(emitted);

	(void)arg;
	if (have + len < sizeof(emitted)) {
		memcpy(emitted + have, text, len);
		emitted[have + len] = '\0';
	}
}

/* Steps: "L<c>" a local reply "<c>", "R" a relayed place, "A<c>" the
 * backend's answer "<c>", "F" finish (relayed places answered "x"),
 * "C" clear.  Emitted replies are single characters. */
struct script {
	const char *name;
	const char *steps[16];
	const char *expect; /* what was emitted, in order */
	unsigned owed;	    /* owed at the end */
	unsigned relayed;
};

static const struct script scripts[] = {
    {"a local reply with nothing owed goes at once", {"La"}, "a", 0, 0},
    {"locals in a row go in order", {"La", "Lb", "Lc"}, "abc", 0, 0},
    {"a local reply waits behind a relayed one", {"R", "La"}, "", 2, 1},
    {"the answer releases the locals behind it",
     {"R", "La", "Lb", "A1"},
     "1ab",
     0,
     0},
    {"locals stop at the next relayed place",
     {"R", "La", "R", "Lb", "A1"},
     "1a",
     2,
     1},
    {"two relayed answered in turn",
     {"R", "La", "R", "Lb", "A1", "A2"},
     "1a2b",
     0,
     0},
    {"a local before any relayed goes first",
     {"La", "R", "Lb", "A1"},
     "a1b",
     0,
     0},
    {"an answer with nothing owed emits nothing", {"A1", "La"}, "a", 0, 0},
    {"finish answers relayed places in order",
     {"R", "La", "R", "Lb", "F"},
     "xaxb",
     0,
     0},
    {"finish after a partial answer", {"R", "R", "La", "A1", "F"}, "1xa", 0, 0},
    {"clear drops what is owed", {"R", "La", "C", "Lb"}, "b", 0, 0},
    {"three pipelined places in order",
     {"R", "R", "R", "La", "A1", "A2", "A3"},
     "123a",
     0,
     0},
};

static void run(const struct script *sc)
{
	struct replyq q;
	bool answered_ok = true;

	emitted[0] = '\0';
	replyq_init(&q, emit, NULL);
	for (size_t i = 0; i < 16 && sc->steps[i] != NULL; i++) {
		const char *st = sc->steps[i];

		switch (st[0]) {
		case 'L':
			replyq_local(&q, st + 1, 1);
			break;
		case 'R':
			replyq_expect(&q);
			break;
		case 'A':
			if (!replyq_answer(&q, st + 1, 1) &&
			    strcmp(sc->name, "an answer with nothing owed "
					     "emits nothing") != 0)
				answered_ok = false;
			break;
		case 'F':
			replyq_finish(&q, "x", 1);
			break;
		case 'C':
			replyq_clear(&q);
			break;
		}
	}
	TAP_EQ_STR(emitted, sc->expect, "%s: emitted", sc->name);
	TAP_EQ_INT(replyq_owed(&q), sc->owed, "%s: owed", sc->name);
	TAP_EQ_INT(replyq_relayed(&q), sc->relayed, "%s: relayed", sc->name);
	TAP_OK(answered_ok, "%s: every answer had a place", sc->name);
	replyq_clear(&q);
}

/* Many commands: replies strictly in order, whatever the interleaving. */
static void test_random_interleaving(void)
{
	struct replyq q;
	char expect[4096];
	size_t n = 0, owed_relayed = 0;
	unsigned seed = 12345;
	int order_ok = 1;

	emitted[0] = '\0';
	replyq_init(&q, emit, NULL);
	/* Commands numbered 0..; locals emit their number, relayed ones get
	 * their number as the answer, answered oldest first. */
	char pending[512];
	size_t phead = 0, ptail = 0;

	for (int i = 0; i < 400; i++) {
		char c = (char)('!' + (i % 90));

		seed = seed * 1103515245u + 12345u;
		if ((seed >> 16) % 3 == 0) {
			replyq_expect(&q);
			pending[ptail++ % sizeof(pending)] = c;
			owed_relayed++;
		} else {
			replyq_local(&q, &c, 1);
		}
		expect[n++] = c;
		seed = seed * 1103515245u + 12345u;
		if (owed_relayed > 0 && (seed >> 16) % 2 == 0) {
			char a = pending[phead++ % sizeof(pending)];

			order_ok &= replyq_answer(&q, &a, 1);
			owed_relayed--;
		}
	}
	while (owed_relayed-- > 0) {
		char a = pending[phead++ % sizeof(pending)];

		order_ok &= replyq_answer(&q, &a, 1);
	}
	expect[n] = '\0';
	TAP_OK(order_ok, "random interleaving: every answer had a place");
	TAP_EQ_STR(emitted, expect, "random interleaving: command order");
	TAP_EQ_INT(replyq_owed(&q), 0, "random interleaving: nothing owed");
}

int main(void)
{
	for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++)
		run(&scripts[i]);
	test_random_interleaving();
	return tap_done();
}
