/*
 * pam_prompt.c - a PAM module for test_auth_helper.c only: an account
 * phase that asks the conversation a question, as no account module
 * should, so that the test can check that an account check answers none
 * (auth/pam.c, auth_pam_conv()).
 *
 * For the user "prompt_off" it asks with PAM_PROMPT_ECHO_OFF, for
 * "prompt_on" with PAM_PROMPT_ECHO_ON, and returns what the conversation
 * returned: PAM_SUCCESS if it got an answer, which the stack then passes
 * on to the next module.  Every other user: PAM_IGNORE.
 */
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdlib.h>
#include <string.h>

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc,
				const char **argv)
{
	const void *item = NULL;
	const char *user;
	char *answer = NULL;
	int style, status;

	(void)flags;
	(void)argc;
	(void)argv;
	if (pam_get_item(pamh, PAM_USER, &item) != PAM_SUCCESS || item == NULL)
		return PAM_USER_UNKNOWN;
	user = item;
	if (strcmp(user, "prompt_off") == 0)
		style = PAM_PROMPT_ECHO_OFF;
	else if (strcmp(user, "prompt_on") == 0)
		style = PAM_PROMPT_ECHO_ON;
	else
		return PAM_IGNORE;
	status = pam_prompt(pamh, style, &answer, "Token: ");
	if (answer != NULL) {
		memset(answer, 0, strlen(answer));
		free(answer);
	}
	return status;
}
