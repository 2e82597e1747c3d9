/*
 * session-ehlo.h - the capability lines of the EHLO reply the proxy
 * gives before AUTH (DESIGN.md "Pre-auth dialogue"): STARTTLS, the
 * backend's pass-through extensions, LIMITS, AUTH.  Pure, no I/O: the session's
 * EHLO (proxy/session.c) and --check-backend (proxy/checkbackend.c)
 * compose it here, so the check shows what a client is really told.
 */
#ifndef SUBMITPROXY_SESSION_EHLO_H
#define SUBMITPROXY_SESSION_EHLO_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct ehlo_caps;

/* Fills lines (each up to 64 bytes, NUL-terminated) with what follows
 * the hostname line: STARTTLS when offer_starttls (a STARTTLS listener
 * before TLS), the extensions ehlo_caps_client() shows for backend (the
 * probe's capabilities; NULL before any probe succeeded: SIZE,
 * PIPELINING and ENHANCEDSTATUSCODES, what the proxy guarantees itself),
 * LIMITS (session_ehlo_limits()), and AUTH with the mechanisms of mechs
 * (AUTH_MECH_* of config.h; 0: no AUTH line).  Returns the number of
 * lines, at most max. */
size_t session_ehlo_lines(const struct config *cfg,
			  const struct ehlo_caps *backend, bool offer_starttls,
			  unsigned mechs, char lines[][64], size_t max);

/* RFC 9422 LIMITS, before and after AUTH: "LIMITS RCPTMAX=N" with [limits]
 * max_recipients, which the proxy enforces itself (452 4.5.3 past it), so
 * that a client splits a long list instead of bouncing the rest.  No
 * MAILMAX: the proxy has no per-session message limit to promise (the
 * per-login limits are per hour, not per session), and the RFC forbids
 * advertising what is not enforced.  Returns the lines written (0 or 1). */
size_t session_ehlo_limits(const struct config *cfg, char lines[][64],
			   size_t max);

#endif
