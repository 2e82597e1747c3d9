/* test_backends.c - the backends' health table (proxy/backends.h): which
 * backend a session takes, when each is probed, what a reload keeps, and
 * the capabilities a client may be promised. */
#include <string.h>

#include "config/config.h"
#include "proxy/backends.h"
#include "tests/unit/tap.h"

#define RETRY	 30000
#define INTERVAL 600000

static struct config_backend list3[3] = {
    {.address = "127.0.0.1:25"},
    {.address = "127.0.0.1:2525"},
    {.address = "unix:/run/mta.sock"},
};

static struct ehlo_caps caps_of(unsigned bits, uint64_t size,
				const char *deliverby)
{
	struct ehlo_caps c;

	memset(&c, 0, sizeof(c));
	c.caps = bits;
	c.size = size;
	c.size_has_value = size != 0;
	strcpy(c.deliverby, deliverby);
	return c;
}

static void test_pick(void)
{
	struct backends *t = backends_create();
	struct ehlo_caps c = caps_of(EHLO_CAP_PIPELINING, 0, "");

	backends_configure(t, list3, 3);
	TAP_EQ_INT(backends_count(t), 3, "one entry per backend");
	TAP_EQ_INT(backends_state(t, "127.0.0.1:25"), BACKEND_UNKNOWN,
		   "unknown at start");
	TAP_EQ_INT(backends_pick(t, list3, 3, 0), 0,
		   "unknown counts as healthy: the first");
	TAP_OK(backends_down(t, "127.0.0.1:25", 1000, RETRY),
	       "a failed hand-over is a change to down");
	TAP_OK(!backends_down(t, "127.0.0.1:25", 1500, RETRY),
	       "down again is no change (logged once)");
	TAP_EQ_INT(backends_pick(t, list3, 3, 0), 1,
		   "the first is down: the second");
	TAP_EQ_INT(backends_pick(t, list3, 3, 1u << 1), 2,
		   "the second tried too: the third");
	TAP_OK(backends_down(t, "127.0.0.1:2525", 1000, RETRY) &&
		   backends_down(t, "unix:/run/mta.sock", 1000, RETRY),
	       "all down");
	TAP_EQ_INT(backends_pick(t, list3, 3, 0), 0,
		   "all down: still tried, the first first");
	TAP_EQ_INT(backends_pick(t, list3, 3, 1u << 0), 1,
		   "all down: then in order");
	TAP_EQ_INT(backends_pick(t, list3, 3, 7), -1, "all tried: none");
	TAP_OK(backends_up(t, "127.0.0.1:2525", &c, 2000),
	       "a session's success is a change to up");
	TAP_OK(!backends_up(t, "127.0.0.1:2525", &c, 2100),
	       "up again is no change");
	TAP_EQ_INT(backends_pick(t, list3, 3, 0), 1,
		   "the one up before the down ones ahead of it");
	TAP_EQ_INT(backends_pick(t, list3, 3, 1u << 1), 0,
		   "the one up failed: the first of the down ones");
	TAP_OK(!backends_up(t, "127.0.0.1:9", &c, 2000) &&
		   !backends_down(t, "127.0.0.1:9", 2000, RETRY),
	       "an address the table does not hold changes nothing");
	backends_destroy(t);
	backends_destroy(NULL);
}

static void test_due(void)
{
	struct backends *t = backends_create();
	struct ehlo_caps c = caps_of(EHLO_CAP_PIPELINING, 0, "");

	backends_configure(t, list3, 2);
	TAP_EQ_INT(backends_due(t, list3, 2, 0, INTERVAL), 3,
		   "at start every backend is due");
	TAP_EQ_INT(backends_due(t, list3, 2, 10, INTERVAL), 0,
		   "a probe under way is not due again");
	backends_up(t, "127.0.0.1:25", &c, 100);
	backends_probe_done(t, "127.0.0.1:25", 100, RETRY);
	backends_down(t, "127.0.0.1:2525", 100, RETRY);
	backends_probe_done(t, "127.0.0.1:2525", 100, RETRY);
	TAP_EQ_INT(backends_due(t, list3, 2, 100 + RETRY - 1, INTERVAL), 0,
		   "nothing due before retry_interval");
	TAP_EQ_INT(backends_due(t, list3, 2, 100 + RETRY, INTERVAL), 2,
		   "the down one after retry_interval");
	backends_down(t, "127.0.0.1:2525", 100 + RETRY + 5, RETRY);
	backends_probe_done(t, "127.0.0.1:2525", 100 + RETRY + 5, RETRY);
	TAP_EQ_INT(backends_due(t, list3, 2, 100 + 2 * RETRY, INTERVAL), 0,
		   "a failed probe: the next one retry_interval later");
	TAP_EQ_INT(backends_due(t, list3, 2, 100 + 2 * RETRY + 5, INTERVAL), 2,
		   "and then again");
	/* Sessions keep using the first: it is never due. */
	for (uint64_t now = 200; now < 3 * INTERVAL; now += INTERVAL / 4) {
		backends_up(t, "127.0.0.1:25", &c, now);
		if (backends_due(t, list3, 1, now + INTERVAL / 8, INTERVAL)) {
			TAP_OK(0, "a backend in steady use is probed at %llu",
			       (unsigned long long)now);
			break;
		}
	}
	TAP_OK(1, "a backend in steady use is not probed");
	backends_up(t, "127.0.0.1:25", &c, 5000000);
	TAP_EQ_INT(backends_due(t, list3, 1, 5000000 + INTERVAL - 1, INTERVAL),
		   0, "up and used within probe_interval: not due");
	TAP_EQ_INT(backends_due(t, list3, 1, 5000000 + INTERVAL, INTERVAL), 1,
		   "idle for probe_interval: due");
	backends_up(t, "127.0.0.1:25", &c, 4999000);
	TAP_EQ_INT(backends_due(t, list3, 1, 4998000, INTERVAL), 0,
		   "a success in the reader's future is fresh");
	backends_destroy(t);
}

static void test_reload(void)
{
	struct backends *t = backends_create();
	struct ehlo_caps c = caps_of(EHLO_CAP_8BITMIME, 0, "");
	struct ehlo_caps out;
	struct config_backend next[2] = {
	    {.address = "unix:/run/mta.sock"},
	    {.address = "127.0.0.1:25"},
	};

	backends_configure(t, list3, 2);
	backends_up(t, "127.0.0.1:25", &c, 10);
	backends_down(t, "127.0.0.1:2525", 10, RETRY);
	/* Reordered, one removed, one added. */
	backends_configure(t, next, 2);
	TAP_EQ_INT(backends_count(t), 2, "the removed address is forgotten");
	TAP_EQ_INT(backends_state(t, "127.0.0.1:25"), BACKEND_UP,
		   "a kept address keeps its state");
	TAP_OK(backends_caps(t, next, 2, &out) && out.caps == EHLO_CAP_8BITMIME,
	       "and its capabilities");
	TAP_EQ_INT(backends_state(t, "unix:/run/mta.sock"), BACKEND_UNKNOWN,
		   "an added one is unknown");
	TAP_EQ_INT(backends_due(t, next, 2, 20, INTERVAL), 1,
		   "and probed at once");
	TAP_EQ_INT(backends_pick(t, list3, 3, 0), 0,
		   "an older configuration's list still picks");
	TAP_EQ_INT(backends_state(t, "127.0.0.1:2525"), BACKEND_UNKNOWN,
		   "a forgotten address is unknown");
	/* Kept ones first, then an added one (the usual reload). */
	backends_configure(t, list3, 1);
	backends_configure(t, list3, 3);
	TAP_EQ_INT(backends_count(t), 3, "one kept, two added");
	TAP_EQ_INT(backends_state(t, "127.0.0.1:25"), BACKEND_UP,
		   "the kept one keeps its state");
	TAP_EQ_INT(backends_state(t, "unix:/run/mta.sock"), BACKEND_UNKNOWN,
		   "the one added after it is unknown");
	backends_destroy(t);
}

static void test_caps(void)
{
	struct backends *t = backends_create();
	struct ehlo_caps a = caps_of(EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME |
					 EHLO_CAP_SIZE | EHLO_CAP_DSN,
				     0, "");
	struct ehlo_caps b = caps_of(EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME |
					 EHLO_CAP_SIZE | EHLO_CAP_SMTPUTF8,
				     5000, "");
	struct ehlo_caps out;

	backends_configure(t, list3, 3);
	TAP_OK(!backends_caps(t, list3, 3, &out),
	       "none known: the caller's conservative set");
	backends_up(t, "127.0.0.1:25", &a, 10);
	TAP_OK(backends_caps(t, list3, 3, &out) && out.caps == a.caps,
	       "one known and up: its own (one backend as before)");
	backends_up(t, "127.0.0.1:2525", &b, 10);
	TAP_OK(backends_caps(t, list3, 3, &out) &&
		   out.caps == (EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME |
				EHLO_CAP_SIZE),
	       "two up: only what both have");
	TAP_EQ_INT(out.size, 5000, "SIZE: the smaller limit (0 is none)");
	backends_down(t, "127.0.0.1:25", 20, RETRY);
	TAP_OK(backends_caps(t, list3, 3, &out) && out.caps == b.caps &&
		   out.size == 5000,
	       "one down: the ones up");
	backends_down(t, "127.0.0.1:2525", 20, RETRY);
	TAP_OK(backends_caps(t, list3, 3, &out) &&
		   out.caps == (EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME |
				EHLO_CAP_SIZE),
	       "all down: every one known (those a session will try)");
	TAP_OK(backends_caps(t, list3, 1, &out) && out.caps == a.caps,
	       "a single backend down keeps its last capabilities");
	backends_destroy(t);
}

static void test_intersect(void)
{
	struct ehlo_caps acc, other;

	acc = caps_of(EHLO_CAP_SIZE | EHLO_CAP_DELIVERBY, 0, "");
	other = caps_of(EHLO_CAP_SIZE | EHLO_CAP_DELIVERBY, 0, "240");
	backends_caps_intersect(&acc, &other);
	TAP_EQ_INT(acc.size, 0, "SIZE: no limit on either side, none");
	TAP_EQ_STR(acc.deliverby, "240",
		   "DELIVERBY: the larger minimum (none is 0)");
	other = caps_of(EHLO_CAP_SIZE | EHLO_CAP_DELIVERBY, 100, "60");
	backends_caps_intersect(&acc, &other);
	TAP_EQ_INT(acc.size, 100, "SIZE: any limit is below none");
	TAP_OK(acc.size_has_value, "SIZE has a value");
	TAP_EQ_STR(acc.deliverby, "240", "DELIVERBY: a smaller one keeps");
	other = caps_of(EHLO_CAP_SIZE | EHLO_CAP_DELIVERBY, 200, "");
	backends_caps_intersect(&acc, &other);
	TAP_EQ_INT(acc.size, 100, "SIZE: the smaller of two limits");
	other = caps_of(EHLO_CAP_PIPELINING, 0, "");
	backends_caps_intersect(&acc, &other);
	TAP_EQ_INT(acc.caps, 0, "nothing in common");
	TAP_OK(acc.size == 0 && !acc.size_has_value && acc.deliverby[0] == 0,
	       "no SIZE, no DELIVERBY argument left");
	acc = caps_of(EHLO_CAP_XCLIENT, 0, "");
	acc.xclient_attrs = 7;
	other = caps_of(EHLO_CAP_XCLIENT, 0, "");
	other.xclient_attrs = 5;
	backends_caps_intersect(&acc, &other);
	TAP_EQ_INT(acc.xclient_attrs, 5, "XCLIENT attributes both take");
	TAP_EQ_STR(backend_state_name(BACKEND_DOWN), "down", "state names");
}

int main(void)
{
	test_pick();
	test_due();
	test_reload();
	test_caps();
	test_intersect();
	return tap_done();
}
