/*
 * tap.h - a minimal TAP producer for the C unit tests.  Each check prints
 * "ok N - what" or "not ok N - what"; tap_done() prints the plan and returns
 * the exit status.  Header-only so that every test is one .c file.
 */
#ifndef SUBMITPROXY_TAP_H
#define SUBMITPROXY_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failed;

#define TAP_OK(cond, ...)                                                    \
	do {                                                                 \
		int tap_ok_ = !!(cond); /* evaluated once */                 \
		tap_count++;                                                 \
		if (tap_ok_) {                                               \
			printf("ok %d - ", tap_count);                       \
		} else {                                                     \
			tap_failed++;                                        \
			printf("not ok %d - ", tap_count);                   \
		}                                                            \
		printf(__VA_ARGS__);                                         \
		printf("\n");                                                \
		if (!tap_ok_)                                                \
			printf("# failed at %s:%d: %s\n", __FILE__, __LINE__, \
			       #cond);                                       \
	} while (0)

#define TAP_EQ_INT(a, b, ...)                                                \
	do {                                                                 \
		long long tap_a_ = (long long)(a), tap_b_ = (long long)(b);  \
		TAP_OK(tap_a_ == tap_b_, __VA_ARGS__);                       \
		if (tap_a_ != tap_b_)                                        \
			printf("# got %lld, expected %lld\n", tap_a_, tap_b_); \
	} while (0)

#define TAP_EQ_STR(a, b, ...)                                                \
	do {                                                                 \
		const char *tap_a_ = (a), *tap_b_ = (b);                     \
		int tap_same_ = tap_a_ && tap_b_ && strcmp(tap_a_, tap_b_) == 0; \
		TAP_OK(tap_same_, __VA_ARGS__);                              \
		if (!tap_same_)                                              \
			printf("# got \"%s\", expected \"%s\"\n",            \
			       tap_a_ ? tap_a_ : "(null)",                   \
			       tap_b_ ? tap_b_ : "(null)");                  \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
