/*
 * test_session_ehlo.c - the pre-auth EHLO capability lines: STARTTLS only
 * before TLS, AUTH only where offered, the backend's pass-through
 * extensions or the conservative set before any probe.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "proxy/session-ehlo.h"
#include "proxy/smtp-relay-parse.h"
#include "tests/unit/tap.h"

/* The lines joined by "|". */
static const char *joined(char lines[][64], size_t n)
{
	static char out[1024];
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%s",
					i ? "|" : "", lines[i]);
	return out;
}

static void test_before_any_probe_the_conservative_set(struct config *cfg)
{
	char lines[16][64];
	size_t n = session_ehlo_lines(cfg, NULL, true, 0, lines, 16);

	TAP_EQ_STR(joined(lines, n),
		   "STARTTLS|PIPELINING|SIZE 1000|ENHANCEDSTATUSCODES|"
		   "LIMITS RCPTMAX=50",
		   "no probe yet, before STARTTLS: STARTTLS and what the proxy "
		   "guarantees, no AUTH");
}

static void test_after_tls_auth_and_the_backend_extensions(struct config *cfg)
{
	struct ehlo_caps caps;
	char lines[16][64];
	size_t n;

	memset(&caps, 0, sizeof(caps));
	ehlo_caps_add_line(&caps, "8BITMIME", 8);
	ehlo_caps_add_line(&caps, "STARTTLS", 8);
	ehlo_caps_add_line(&caps, "XCLIENT NAME ADDR", 17);
	ehlo_caps_add_line(&caps, "SIZE 500", 8);
	n = session_ehlo_lines(cfg, &caps, false, cfg->auth.mechanisms, lines,
			       16);
	TAP_EQ_STR(joined(lines, n),
		   "PIPELINING|SIZE 500|8BITMIME|LIMITS RCPTMAX=50|"
		   "AUTH PLAIN LOGIN",
		   "after TLS: the backend's pass-through extensions, SIZE "
		   "the smaller, PIPELINING the proxy's own, then AUTH");
	cfg->auth.mechanisms = AUTH_MECH_LOGIN;
	n = session_ehlo_lines(cfg, &caps, false, cfg->auth.mechanisms, lines,
			       16);
	TAP_EQ_STR(lines[n - 1], "AUTH LOGIN",
		   "AUTH names the configured mechanisms only");
	cfg->auth.mechanisms = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	n = session_ehlo_lines(cfg, &caps, false,
			       cfg->auth.mechanisms | AUTH_MECH_EXTERNAL, lines,
			       16);
	TAP_EQ_STR(lines[n - 1], "AUTH PLAIN LOGIN EXTERNAL",
		   "a mapped client certificate adds EXTERNAL");
	n = session_ehlo_lines(cfg, &caps, false, AUTH_MECH_EXTERNAL, lines,
			       16);
	TAP_EQ_STR(lines[n - 1], "AUTH EXTERNAL", "EXTERNAL alone");
}

static void
test_a_non_esmtp_backend_shows_only_the_proxys_own(struct config *cfg)
{
	struct ehlo_caps none;
	char lines[16][64];
	size_t n;

	memset(&none, 0, sizeof(none));
	n = session_ehlo_lines(cfg, &none, false, 0, lines, 16);
	TAP_EQ_STR(joined(lines, n), "PIPELINING|SIZE 1000|LIMITS RCPTMAX=50",
		   "a HELO-only backend: PIPELINING, SIZE and the proxy's "
		   "LIMITS, nothing else");
}

static void test_never_more_than_max(struct config *cfg)
{
	char lines[2][64];
	size_t n = session_ehlo_lines(cfg, NULL, true, cfg->auth.mechanisms,
				      lines, 2);

	TAP_EQ_INT(n, 2, "max lines are filled, no more");
	n = session_ehlo_lines(cfg, NULL, true, cfg->auth.mechanisms, lines,
			       0);
	TAP_EQ_INT(n, 0, "max 0: nothing written");
}

int main(void)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.limits.max_message_size = 1000;
	cfg.limits.max_recipients = 50;
	cfg.auth.mechanisms = AUTH_MECH_PLAIN | AUTH_MECH_LOGIN;
	test_before_any_probe_the_conservative_set(&cfg);
	test_after_tls_auth_and_the_backend_extensions(&cfg);
	test_a_non_esmtp_backend_shows_only_the_proxys_own(&cfg);
	test_never_more_than_max(&cfg);
	return tap_done();
}
