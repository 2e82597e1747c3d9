/* session-ehlo.c - see session-ehlo.h */
#include "proxy/session-ehlo.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "proxy/smtp-relay-parse.h"

/* Before any probe has succeeded: what the proxy itself guarantees. */
#define SESSION_EHLO_CONSERVATIVE                                              \
	(EHLO_CAP_SIZE | EHLO_CAP_PIPELINING | EHLO_CAP_ENHANCEDSTATUSCODES)

size_t session_ehlo_lines(const struct config *cfg,
			  const struct ehlo_caps *backend, bool offer_starttls,
			  unsigned mechs, char lines[][64], size_t max)
{
	struct ehlo_caps conservative;
	size_t n = 0;

	if (offer_starttls && n < max)
		snprintf(lines[n++], 64, "STARTTLS");
	if (backend == NULL) {
		memset(&conservative, 0, sizeof(conservative));
		conservative.caps = SESSION_EHLO_CONSERVATIVE;
		backend = &conservative;
	}
	n += ehlo_caps_client(backend, cfg->limits.max_message_size, lines + n,
			      max - n);
	n += session_ehlo_limits(cfg, lines + n, max - n);
	if (mechs != 0 && n < max)
		snprintf(lines[n++], 64, "AUTH%s%s%s",
			 mechs & AUTH_MECH_PLAIN ? " PLAIN" : "",
			 mechs & AUTH_MECH_LOGIN ? " LOGIN" : "",
			 mechs & AUTH_MECH_EXTERNAL ? " EXTERNAL" : "");
	return n;
}

size_t session_ehlo_limits(const struct config *cfg, char lines[][64],
			   size_t max)
{
	if (max == 0)
		return 0;
	snprintf(lines[0], 64, "LIMITS RCPTMAX=%u",
		 (unsigned)cfg->limits.max_recipients);
	return 1;
}
