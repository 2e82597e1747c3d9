/* pam.c - see pam.h */
#include "auth/pam.h"

#include <security/pam_appl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* PAM_TTY: some modules (pam_unix, pam_faillock, auditing) log it. */
#define AUTH_PAM_TTY "smtp"

/* What the conversation answers with: appdata_ptr of struct pam_conv.
 * password is NULL for an account check: there is none to give. */
struct auth_pam_creds {
	const char *user;
	const char *password;
};

/* PAM_FAIL_DELAY callback (pam_fail_delay(3)): Linux-PAM calls it instead
 * of sleeping after a failure.  The worker must not sleep: the network
 * process delays the client with a timer (DESIGN.md, "Authentication"). */
static void auth_pam_no_delay(int retval, unsigned usec_delay,
			      void *appdata_ptr)
{
	(void)retval;
	(void)usec_delay;
	(void)appdata_ptr;
}

static void auth_pam_responses_free(struct pam_response *resp, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (resp[i].resp == NULL)
			continue;
		/* It may be a copy of the password. */
		explicit_bzero(resp[i].resp, strlen(resp[i].resp));
		free(resp[i].resp);
	}
	free(resp);
}

/*
 * The conversation function (pam_conv(3)).  Linux-PAM passes msg as an
 * array of pointers, msg[i] -> message i (Solaris passes a pointer to an
 * array; only Linux-PAM is supported).  The response array and every
 * string in it are malloc'ed and owned by PAM once we return PAM_SUCCESS;
 * on failure we free them all and return PAM_CONV_ERR.
 *
 * PAM_ERROR_MSG and PAM_TEXT_INFO are dropped, not logged: a module may
 * echo what the user typed.
 *
 * In an account check (creds->password NULL) every prompt is refused: an
 * account module has no business asking, and whatever we answered (an
 * empty password, the user name) would be a guess that some module could
 * take for a credential.  PAM_CONV_ERR then makes the check TEMPFAIL
 * "pam_error", a stack to fix rather than a verdict.
 */
static int auth_pam_conv(int num_msg, const struct pam_message **msg,
			 struct pam_response **resp_r, void *appdata_ptr)
{
	const struct auth_pam_creds *creds = appdata_ptr;
	struct pam_response *resp;
	int i;

	if (resp_r == NULL)
		return PAM_CONV_ERR;
	*resp_r = NULL;
	if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG || msg == NULL ||
	    creds == NULL)
		return PAM_CONV_ERR;
	resp = calloc((size_t)num_msg, sizeof(*resp));
	if (resp == NULL)
		return PAM_CONV_ERR;
	for (i = 0; i < num_msg; i++) {
		const char *answer;

		if (msg[i] == NULL)
			goto fail;
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
			if (creds->password == NULL)
				goto fail;
			answer = creds->password;
			break;
		case PAM_PROMPT_ECHO_ON:
			if (creds->password == NULL)
				goto fail;
			answer = creds->user;
			break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			continue;
		default:
			goto fail;
		}
		resp[i].resp = strdup(answer);
		if (resp[i].resp == NULL)
			goto fail;
		resp[i].resp_retcode = 0;
	}
	*resp_r = resp;
	return PAM_SUCCESS;
fail:
	auth_pam_responses_free(resp, num_msg);
	return PAM_CONV_ERR;
}

/* Only a verdict about the credentials or the account is permanent. */
static enum auth_result auth_pam_result(int status, const char **reason_r)
{
	switch (status) {
	case PAM_SUCCESS:
		*reason_r = "ok";
		return AUTH_RESULT_OK;
	case PAM_AUTH_ERR:
		*reason_r = "auth_err";
		return AUTH_RESULT_FAIL;
	case PAM_USER_UNKNOWN:
		*reason_r = "user_unknown";
		return AUTH_RESULT_FAIL;
	case PAM_MAXTRIES:
		*reason_r = "maxtries";
		return AUTH_RESULT_FAIL;
	case PAM_ACCT_EXPIRED:
		*reason_r = "acct_expired";
		return AUTH_RESULT_FAIL;
	case PAM_AUTHTOK_EXPIRED:
		*reason_r = "authtok_expired";
		return AUTH_RESULT_FAIL;
	case PAM_NEW_AUTHTOK_REQD:
		*reason_r = "new_authtok_reqd";
		return AUTH_RESULT_FAIL;
	case PAM_PERM_DENIED:
		*reason_r = "perm_denied";
		return AUTH_RESULT_FAIL;
	default:
		/* PAM_AUTHINFO_UNAVAIL, PAM_SYSTEM_ERR, PAM_BUF_ERR,
		 * PAM_ABORT, PAM_CONV_ERR, PAM_CRED_INSUFFICIENT, ... */
		*reason_r = "pam_error";
		return AUTH_RESULT_TEMPFAIL;
	}
}

/* PAM_USER becomes the identity in logs, XCLIENT LOGIN= and the sender
 * map: it must be a plausible name, whatever a module set it to. */
static int auth_pam_user_valid(const char *name, size_t out_size)
{
	size_t len, i;

	if (name == NULL)
		return 0;
	len = strnlen(name, AUTH_PROTO_USER_MAX + 1);
	if (len == 0 || len > AUTH_PROTO_USER_MAX || len >= out_size)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

/* The held handle (auth_pam_hold_modules()) never runs a stack; if a
 * module asked it anything, the answer is no. */
static int auth_pam_hold_conv(int num_msg, const struct pam_message **msg,
			      struct pam_response **resp, void *appdata_ptr)
{
	(void)num_msg;
	(void)msg;
	(void)appdata_ptr;
	*resp = NULL;
	return PAM_CONV_ERR;
}

/* The start of every transaction: pam_start() and the items both kinds
 * set.  Returns a PAM status; *pamh_r is NULL when pam_start() failed
 * (the handle, if any, is ended here), else it is auth_pam_end()'s to
 * end.  conv is copied by pam_start(); its appdata_ptr must outlive the
 * handle. */
static int auth_pam_begin(const char *service, const char *user,
			  const char *rhost, const struct pam_conv *conv,
			  pam_handle_t **pamh_r)
{
	void (*delay_fn)(int, unsigned, void *) = auth_pam_no_delay;
	pam_handle_t *pamh = NULL;
	int status;

	*pamh_r = NULL;
	status = pam_start(service, user, conv, &pamh);
	if (status != PAM_SUCCESS) {
		if (pamh != NULL)
			pam_end(pamh, status);
		return status;
	}
	*pamh_r = pamh;
	if (rhost != NULL && rhost[0] != '\0')
		status = pam_set_item(pamh, PAM_RHOST, rhost);
	if (status == PAM_SUCCESS)
		status = pam_set_item(pamh, PAM_TTY, AUTH_PAM_TTY);
	if (status == PAM_SUCCESS)
		/* The item is a function pointer passed as const void *
		 * (pam_fail_delay(3)); through uintptr_t to say so. */
		status = pam_set_item(pamh, PAM_FAIL_DELAY,
				      (const void *)(uintptr_t)delay_fn);
	return status;
}

/* The end of every transaction: status is what the phases left; on
 * success PAM_USER is checked and copied out.  Ends the handle. */
static enum auth_result auth_pam_end(pam_handle_t *pamh, int status,
				     char *pam_user_out, size_t pam_user_size,
				     const char **reason_r)
{
	const void *item = NULL;
	enum auth_result result;

	if (pamh == NULL) {
		/* pam_start() failed: no stack ran, nothing was decided. */
		*reason_r = "pam_error";
		return AUTH_RESULT_TEMPFAIL;
	}
	if (status == PAM_SUCCESS) {
		status = pam_get_item(pamh, PAM_USER, &item);
		if (status == PAM_SUCCESS &&
		    !auth_pam_user_valid(item, pam_user_size))
			status = PAM_SYSTEM_ERR;
	}
	result = auth_pam_result(status, reason_r);
	if (result == AUTH_RESULT_OK)
		/* Copied before pam_end(), which frees the item. */
		memcpy(pam_user_out, item, strlen(item) + 1);
	pam_end(pamh, status);
	return result;
}

enum auth_result auth_pam_authenticate(const char *service, const char *user,
				       const char *password, const char *rhost,
				       char *pam_user_out, size_t pam_user_size,
				       const char **reason_r)
{
	struct auth_pam_creds creds = {user, password};
	const struct pam_conv conv = {auth_pam_conv, &creds};
	pam_handle_t *pamh;
	int status;

	if (pam_user_size > 0)
		pam_user_out[0] = '\0';
	status = auth_pam_begin(service, user, rhost, &conv, &pamh);
	if (status == PAM_SUCCESS)
		status = pam_authenticate(pamh, PAM_SILENT |
						    PAM_DISALLOW_NULL_AUTHTOK);
	if (status == PAM_SUCCESS)
		status =
		    pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	return auth_pam_end(pamh, status, pam_user_out, pam_user_size,
			    reason_r);
}

enum auth_result auth_pam_account(const char *service, const char *user,
				  const char *rhost, char *pam_user_out,
				  size_t pam_user_size, const char **reason_r)
{
	/* No password: the conversation refuses every prompt. */
	struct auth_pam_creds creds = {user, NULL};
	const struct pam_conv conv = {auth_pam_conv, &creds};
	pam_handle_t *pamh;
	int status;

	if (pam_user_size > 0)
		pam_user_out[0] = '\0';
	status = auth_pam_begin(service, user, rhost, &conv, &pamh);
	/* pam_acct_mgmt() alone: the client certificate, verified by the
	 * network process, stands for pam_authenticate().  Without
	 * PAM_DISALLOW_NULL_AUTHTOK: it asks a module to answer
	 * PAM_NEW_AUTHTOK_REQD for a user with an empty password
	 * (pam_acct_mgmt(3)), and a user who logs in by certificate only
	 * may well have none. */
	if (status == PAM_SUCCESS)
		status = pam_acct_mgmt(pamh, PAM_SILENT);
	return auth_pam_end(pamh, status, pam_user_out, pam_user_size,
			    reason_r);
}

void *auth_pam_hold_modules(const char *service)
{
	static const struct pam_conv none = {auth_pam_hold_conv, NULL};
	pam_handle_t *pamh = NULL;

	if (pam_start(service, NULL, &none, &pamh) != PAM_SUCCESS) {
		if (pamh != NULL)
			pam_end(pamh, PAM_SYSTEM_ERR);
		return NULL;
	}
	return pamh;
}
