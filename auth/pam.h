/*
 * pam.h - one PAM transaction, as the auth helper's worker processes run it
 * (DESIGN.md, "Authentication").  Blocking: PAM modules read files, talk to
 * LDAP, fork; only a worker process may call this, never the helper's
 * poll() loop and never the network process.
 *
 * A transaction is pam_start(service, user), PAM_RHOST = the client
 * address, PAM_TTY = "smtp", a no-op PAM_FAIL_DELAY callback (the proxy
 * applies the failure delay itself, with a timer), then its phases:
 *
 *   login (password)     pam_authenticate() and pam_acct_mgmt(), both
 *                        with PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
 *   account (client      pam_acct_mgmt() with PAM_SILENT only, never the
 *   certificate)         auth stack; the conversation refuses every
 *                        prompt, as there is no password to give.
 *
 * then PAM_USER, checked, is the identity.  An expired account or
 * password is a failure, as in OpenSMTPD and Dovecot.
 *
 * Only a verdict about the credentials or the account is permanent
 * (FAIL); a PAM stack that cannot decide (missing module, unreachable
 * directory, conversation error) answers TEMPFAIL "pam_error", so that a
 * client is never told 535 for a password that may well be right.
 */
#ifndef SUBMITPROXY_AUTH_PAM_H
#define SUBMITPROXY_AUTH_PAM_H

#include <stddef.h>

#include "auth/proto.h"

/* Runs one transaction.  On AUTH_RESULT_OK, pam_user_out (pam_user_size
 * bytes, at least AUTH_PROTO_USER_MAX + 1) holds PAM_USER as PAM left it,
 * the identity to use from then on; otherwise it is "".  *reason_r is
 * always set to a static token for logs and the wire ("ok", "auth_err",
 * "user_unknown", "acct_expired", "authtok_expired", "new_authtok_reqd",
 * "perm_denied", "maxtries", "pam_error").  password is not kept: the
 * conversation hands PAM copies of it, and PAM owns and frees those. */
enum auth_result auth_pam_authenticate(const char *service, const char *user,
				       const char *password, const char *rhost,
				       char *pam_user_out, size_t pam_user_size,
				       const char **reason_r);

/* The account check alone, for a login by client certificate: the same
 * transaction without pam_authenticate() (pam_acct_mgmt() with PAM_SILENT;
 * an expired, locked or unknown account is FAIL like a bad password, a
 * stack that cannot decide TEMPFAIL).  Same outputs as above. */
enum auth_result auth_pam_account(const char *service, const char *user,
				  const char *rhost, char *pam_user_out,
				  size_t pam_user_size, const char **reason_r);

/* A PAM handle that is started and never used: while it lives, the
 * modules of service's stack stay loaded, so that each transaction's
 * pam_start() finds them there instead of mapping and relocating them
 * again (pam_end() unloads what no handle holds).  PAM still reads the
 * configuration at every pam_start(), so a changed stack takes effect
 * at the next transaction; a module file replaced on disk (a package
 * upgrade) is used from the next worker on.  NULL if pam_start() failed
 * (each transaction then reports that itself).  A worker holds one for
 * its life. */
void *auth_pam_hold_modules(const char *service);

#endif
