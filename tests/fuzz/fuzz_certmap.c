/*
 * fuzz_certmap.c - libFuzzer harness for tls/certmap.c, the [tls]
 * client_cert_map file, and its matching against two fixed certificates.
 *
 * The input is the file, copied to a heap block of its exact size so that
 * AddressSanitizer sees any read past it.  Besides memory errors, the
 * harness aborts when a documented property breaks: a file is refused
 * exactly when it adds records; every record is for "fuzz", its line from
 * 1 to the file's line count and never going back; an accepted file has
 * one rule per line that is neither blank nor a comment; a login matched
 * is the last word of its rule's line, 1 to 256 bytes without a control
 * byte or a blank; and the forged certificate, whose every name holds a
 * NUL (CVE-2009-4565), is matched by no rule but a fingerprint.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tls/certmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			abort();                                               \
	} while (0)

struct fuzz_name {
	const char *type;
	const char *value;
	size_t len;
	bool same_rdn;
};

struct fuzz_alt {
	int type;
	const char *value;
	size_t len;
};

/* What the seed corpus writes rules for (corpus/certmap/example). */
static const struct fuzz_name fuzz_good_subject[] = {
    {"C", "DE", 2, false},
    {"O", "Example Org", 11, false},
    {"OU", "Ops", 3, false},
    {"UID", "u42", 3, true},
    {"CN", "host.example.com", 16, false},
};
static const struct fuzz_alt fuzz_good_sans[] = {
    {GEN_DNS, "host.example.com", 16},
    {GEN_EMAIL, "Alice@Example.COM", 17},
};

/* The same names, each with a NUL in it. */
static const struct fuzz_name fuzz_forged_subject[] = {
    {"C", "DE", 2, false},
    {"O", "Example Org", 11, false},
    {"OU", "Ops", 3, false},
    {"UID", "u42", 3, true},
    {"CN", "host.example.com\0.evil.net", 26, false},
};
static const struct fuzz_alt fuzz_forged_sans[] = {
    {GEN_DNS, "host.example.com\0.evil.net", 26},
    {GEN_EMAIL, "Alice@Example.COM\0.evil.net", 27},
    {GEN_DNS, "host.example.com\0", 17},
};

static X509 *fuzz_cert(EVP_PKEY *key, const struct fuzz_name *names,
		       size_t nnames, const struct fuzz_alt *alts, size_t nalts)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

	FUZZ_CHECK(x != NULL && name != NULL && gens != NULL);
	FUZZ_CHECK(X509_set_version(x, X509_VERSION_3) == 1);
	for (size_t i = 0; i < nnames; i++)
		FUZZ_CHECK(X509_NAME_add_entry_by_txt(
			       name, names[i].type, MBSTRING_UTF8,
			       (const unsigned char *)names[i].value,
			       (int)names[i].len, -1,
			       names[i].same_rdn ? -1 : 0) == 1);
	FUZZ_CHECK(X509_set_subject_name(x, name) == 1 &&
		   X509_set_issuer_name(x, name) == 1);
	X509_NAME_free(name);
	for (size_t i = 0; i < nalts; i++) {
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		FUZZ_CHECK(
		    gn != NULL && s != NULL &&
		    ASN1_STRING_set(s, alts[i].value, (int)alts[i].len) == 1);
		GENERAL_NAME_set0_value(gn, alts[i].type, s);
		FUZZ_CHECK(sk_GENERAL_NAME_push(gens, gn) > 0);
	}
	FUZZ_CHECK(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
				     X509V3_ADD_DEFAULT) == 1);
	GENERAL_NAMES_free(gens);
	FUZZ_CHECK(X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
		   X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL &&
		   X509_set_pubkey(x, key) == 1 &&
		   X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static X509 *fuzz_good, *fuzz_forged;

static void fuzz_init(void)
{
	EVP_PKEY *key;

	if (fuzz_good != NULL)
		return;
	key = EVP_EC_gen("P-256");
	FUZZ_CHECK(key != NULL);
	fuzz_good = fuzz_cert(
	    key, fuzz_good_subject,
	    sizeof(fuzz_good_subject) / sizeof(fuzz_good_subject[0]),
	    fuzz_good_sans, sizeof(fuzz_good_sans) / sizeof(fuzz_good_sans[0]));
	fuzz_forged = fuzz_cert(
	    key, fuzz_forged_subject,
	    sizeof(fuzz_forged_subject) / sizeof(fuzz_forged_subject[0]),
	    fuzz_forged_sans,
	    sizeof(fuzz_forged_sans) / sizeof(fuzz_forged_sans[0]));
	EVP_PKEY_free(key);
}

static bool fuzz_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Line number (from 1) of buf into [*start, *end), trimmed as the format
 * says (CR before LF, blanks around); false if there is no such line. */
static bool fuzz_line(const char *buf, size_t len, int number,
		      const char **start, const char **end)
{
	size_t pos = 0;

	for (int n = 1; pos < len; n++) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t e = nl != NULL ? (size_t)(nl - buf) : len, s = pos;

		if (n == number) {
			if (e > s && buf[e - 1] == '\r')
				e--;
			while (s < e && fuzz_blank(buf[s]))
				s++;
			while (e > s && fuzz_blank(buf[e - 1]))
				e--;
			*start = buf + s;
			*end = buf + e;
			return true;
		}
		pos = e + 1;
	}
	return false;
}

/* The login a match returned is the last word of its line, and the
 * line's rule kind is one allowed for cert. */
static void fuzz_check_match(const struct certmap *m, X509 *cert,
			     const char *buf, size_t size, size_t lines,
			     bool forged)
{
	int line = -1;
	const char *login = certmap_match(m, cert, &line), *s, *e;
	size_t len;

	if (login == NULL)
		return;
	len = strlen(login);
	FUZZ_CHECK(len >= 1 && len <= CERTMAP_LOGIN_MAX);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)login[i] > 0x20 &&
			   (unsigned char)login[i] != 0x7f);
	FUZZ_CHECK(line >= 1 && (size_t)line <= lines);
	FUZZ_CHECK(fuzz_line(buf, size, line, &s, &e));
	FUZZ_CHECK((size_t)(e - s) > len && memcmp(e - len, login, len) == 0 &&
		   fuzz_blank(*(e - len - 1)));
	if (forged)
		FUZZ_CHECK((size_t)(e - s) > 7 && memcmp(s, "sha256:", 7) == 0);
	FUZZ_CHECK(certmap_match(m, cert, NULL) == login);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errors = {NULL, 0};
	struct certmap *m;
	char *buf = malloc(size > 0 ? size : 1);
	size_t newlines = 0, lines, rules = 0;
	int last = 0;

	if (buf == NULL)
		return 0;
	fuzz_init();
	memcpy(buf, data, size);
	for (size_t i = 0; i < size; i++)
		newlines += buf[i] == '\n';
	lines = newlines + (size > 0 && buf[size - 1] != '\n');

	m = certmap_parse("fuzz", buf, size, &errors);
	FUZZ_CHECK((m == NULL) == (errors.count > 0));
	for (size_t i = 0; i < errors.count; i++) {
		FUZZ_CHECK(strcmp(errors.items[i].file, "fuzz") == 0);
		FUZZ_CHECK(errors.items[i].line >= 1 &&
			   (size_t)errors.items[i].line <= lines &&
			   errors.items[i].line >= last);
		FUZZ_CHECK(errors.items[i].message[0] != '\0');
		last = errors.items[i].line;
	}
	config_errors_finish(&errors);
	if (m == NULL) {
		free(buf);
		return 0;
	}

	for (size_t pos = 0; pos < size;) {
		const char *nl = memchr(buf + pos, '\n', size - pos);
		size_t e = nl != NULL ? (size_t)(nl - buf) : size, s = pos;

		while (s < e && (fuzz_blank(buf[s]) || buf[s] == '\r'))
			s++;
		rules += s < e && buf[s] != '#';
		pos = e + 1;
	}
	FUZZ_CHECK(certmap_count(m) == rules);
	fuzz_check_match(m, fuzz_good, buf, size, lines, false);
	fuzz_check_match(m, fuzz_forged, buf, size, lines, true);
	certmap_free(m);
	free(buf);
	return 0;
}
