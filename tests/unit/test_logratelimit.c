/* test_logratelimit.c - one log line per key per window, and the count of
 * the lines held back in between. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy/logratelimit.h"
#include "tests/unit/tap.h"

#define WINDOW 10000 /* ms, as the workers use for event=tls_fail */

static bool allow(struct logratelimit *rl, const char *key, uint64_t now,
		  uint64_t *suppressed)
{
	return logratelimit_allow(rl, key, strlen(key), now, suppressed);
}

static void test_one_line_per_window_then_the_count(void)
{
	struct logratelimit *rl = logratelimit_create(1024, WINDOW, 1);
	uint64_t n = 99;
	int logged = 0;

	TAP_OK(allow(rl, "192.0.2.7", 1000, &n),
	       "a key's first line is logged");
	TAP_EQ_INT(n, 0, "first line: nothing held back");
	for (int i = 0; i < 19; i++)
		logged += allow(rl, "192.0.2.7", 1000 + (uint64_t)i * 100, &n);
	TAP_EQ_INT(logged, 0, "19 more lines within the window: none logged");
	TAP_OK(!allow(rl, "192.0.2.7", 1000 + WINDOW - 1, &n),
	       "1 ms before the window ends: still held back");
	TAP_OK(allow(rl, "192.0.2.7", 1000 + WINDOW, &n),
	       "once the window has passed: logged");
	TAP_EQ_INT(n, 20, "and it says 20 lines were held back");
	TAP_OK(!allow(rl, "192.0.2.7", 1000 + WINDOW + 1, &n),
	       "a new window starts at that line");
	TAP_OK(allow(rl, "192.0.2.7", 1000 + 5 * WINDOW, &n),
	       "a line long after: logged");
	TAP_EQ_INT(n, 1, "with the one held back before it");
	TAP_OK(allow(rl, "192.0.2.7", 1000 + 7 * WINDOW, &n),
	       "a quiet key logs again");
	TAP_EQ_INT(n, 0, "with nothing held back");
	logratelimit_destroy(rl);
}

static void test_keys_are_independent(void)
{
	struct logratelimit *rl = logratelimit_create(1024, WINDOW, 2);
	const uint8_t bin_a[] = {2, 32, 192, 0, 2, 1};
	const uint8_t bin_b[] = {2, 32, 192, 0, 2, 2};
	uint64_t n;

	TAP_OK(allow(rl, "192.0.2.1", 0, &n), "key a: logged");
	TAP_OK(allow(rl, "192.0.2.2", 0, &n), "key b at once: logged too");
	TAP_OK(!allow(rl, "192.0.2.1", 1, &n), "key a again: held back");
	TAP_OK(allow(rl, "192.0.2.10", 1, &n),
	       "a key that extends another: its own");
	TAP_OK(logratelimit_allow(rl, bin_a, sizeof(bin_a), 0, &n),
	       "binary key a: logged");
	TAP_OK(logratelimit_allow(rl, bin_b, sizeof(bin_b), 0, &n),
	       "binary key b: logged");
	TAP_OK(!logratelimit_allow(rl, bin_a, sizeof(bin_a), 5, &n),
	       "binary key a again: held back");
	TAP_OK(logratelimit_allow(rl, "", 0, 5, &n) &&
		   logratelimit_allow(rl, "", 0, 6, &n),
	       "an empty key is never held back");
	logratelimit_destroy(rl);
}

static void test_long_keys_count_as_their_prefix(void)
{
	struct logratelimit *rl = logratelimit_create(16, WINDOW, 3);
	char a[LOGRATELIMIT_KEY_MAX + 10], b[LOGRATELIMIT_KEY_MAX + 10];
	uint64_t n;

	memset(a, 'x', sizeof(a) - 1);
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[sizeof(b) - 2] = 'y'; /* differs past LOGRATELIMIT_KEY_MAX */
	TAP_OK(allow(rl, a, 0, &n), "long key: logged");
	TAP_OK(!allow(rl, b, 1, &n),
	       "a key differing only past LOGRATELIMIT_KEY_MAX is the same");
	logratelimit_destroy(rl);
}

static void test_window_zero_logs_everything(void)
{
	struct logratelimit *rl = logratelimit_create(16, 0, 4);
	int logged = 0;

	for (int i = 0; i < 10; i++)
		logged += allow(rl, "192.0.2.7", 0, NULL);
	TAP_EQ_INT(logged, 10, "window 0: every line");
	logratelimit_destroy(rl);
}

static void test_clock_going_back_lets_the_line_through(void)
{
	struct logratelimit *rl = logratelimit_create(16, WINDOW, 5);
	uint64_t n;

	TAP_OK(allow(rl, "k", 50000, &n), "clock: first line");
	TAP_OK(!allow(rl, "k", 50001, &n), "clock: held back");
	TAP_OK(allow(rl, "k", 100, &n),
	       "clock back by 50 s: logged, not silenced until it returns");
	TAP_EQ_INT(n, 1, "clock: with the count");
	logratelimit_destroy(rl);
}

/* A full table: the oldest entry of a set gives way, so memory stays
 * fixed; a key pushed out may log again (more lines, never fewer). */
static void test_table_is_bounded_and_evicts_the_oldest(void)
{
	const size_t entries = 64;
	struct logratelimit *rl = logratelimit_create(entries, WINDOW, 6);
	char key[32];
	uint64_t n;
	int logged = 0, again = 0;

	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		logged += allow(rl, key, (uint64_t)i, &n);
	}
	TAP_EQ_INT(logged, 1000,
		   "1000 distinct keys in a 64-entry table: "
		   "each logs its first line");
	/* The last keys are still in the table (the newest of their sets). */
	for (int i = 990; i < 1000; i++) {
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		again += allow(rl, key, 2000, &n);
	}
	TAP_EQ_INT(again, 0, "the 10 newest keys are still held back");
	/* The first ones were evicted: they log again. */
	snprintf(key, sizeof(key), "198.51.100.%d", 0);
	TAP_OK(allow(rl, key, 2000, &n), "the oldest key was evicted: logged");
	TAP_EQ_INT(n, 0, "an evicted key's count is gone");
	logratelimit_destroy(rl);
	logratelimit_destroy(NULL);
}

/* 65536 /64s of one /48: each a key of its own, and yet no more than
 * the budget's lines a window. */
static void test_budget_caps_lines_over_all_keys(void)
{
	struct logratelimit *rl = logratelimit_create(1024, WINDOW, 7);
	uint64_t n = 0, held;
	char key[32];
	int logged = 0;

	logratelimit_set_budget(rl, 100);
	for (int i = 0; i < 65536; i++) {
		snprintf(key, sizeof(key), "2001:db8:1:%x::", i);
		logged += allow(rl, key, 1000 + (uint64_t)i / 100, &n);
	}
	TAP_EQ_INT(logged, 100, "65536 keys in one window: 100 lines");
	held = logratelimit_take_held(rl);
	TAP_EQ_INT(held, 65436, "the others counted as held by the budget");
	TAP_EQ_INT(logratelimit_take_held(rl), 0, "taking resets the count");
	TAP_OK(!allow(rl, "2001:db8:1:ffff::", 1000 + WINDOW - 1, &n),
	       "still inside the budget's window: held");
	TAP_EQ_INT(logratelimit_take_held(rl), 1, "and counted");
	TAP_OK(allow(rl, "2001:db8:2::", 1000 + WINDOW, &n),
	       "a new window: room again");
	TAP_EQ_INT(n, 0, "a new key's own count is zero");
	/* A key the budget held keeps its own state: it logs at once when
	 * the budget has room, its own limit allowing. */
	TAP_OK(allow(rl, "2001:db8:1:ffff::", 1000 + WINDOW + 1, &n),
	       "a key held only by the budget logs in the next window");
	logratelimit_destroy(rl);
}

static void test_budget_zero_is_no_budget(void)
{
	struct logratelimit *rl = logratelimit_create(1024, WINDOW, 7);
	uint64_t n = 0;
	char key[32];
	int logged = 0;

	for (int i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		logged += allow(rl, key, 1000, &n);
	}
	TAP_EQ_INT(logged, 500, "no budget set: one line per key");
	TAP_EQ_INT(logratelimit_take_held(rl), 0, "nothing held");
	logratelimit_destroy(rl);
}

int main(void)
{
	test_budget_caps_lines_over_all_keys();
	test_budget_zero_is_no_budget();
	test_one_line_per_window_then_the_count();
	test_keys_are_independent();
	test_long_keys_count_as_their_prefix();
	test_window_zero_logs_everything();
	test_clock_going_back_lets_the_line_through();
	test_table_is_bounded_and_evicts_the_oldest();
	return tap_done();
}
