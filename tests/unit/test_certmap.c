/*
 * test_certmap.c - [tls] client_cert_map: which login a client
 * certificate gets, and every format error with its line.
 *
 * The certificates are made here (EC P-256, self-signed) and go through
 * i2d/d2i before use, so that the matcher sees them as a handshake
 * delivers them: decoded from DER, a multi-valued RDN in DER's order.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tests/unit/tap.h"
#include "tls/certmap.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* One subject entry, in ASN.1 order (least specific first); len 0:
 * strlen; same_rdn: a further value of the previous RDN. */
struct name_entry {
	const char *type;
	const char *value;
	size_t len;
	bool same_rdn;
};

struct alt_name {
	int type; /* GEN_DNS, GEN_EMAIL */
	const char *value;
	size_t len;
};

enum cert_id {
	CERT_BASIC,   /* C=DE, O=Example Org, CN=host.example.com; SANs */
	CERT_NUL,     /* NULs inside the CN and two SANs */
	CERT_CONTROL, /* control bytes and a high byte in SANs, in the CN */
	CERT_SPECIAL, /* every RFC 4514 special, UTF-8, a multi-valued RDN */
	CERT_COUNT,
};

static const struct name_entry basic_subject[] = {
    {"C", "DE", 0, false},
    {"O", "Example Org", 0, false},
    {"CN", "host.example.com", 0, false},
};
static const struct alt_name basic_sans[] = {
    {GEN_DNS, "host.example.com", 0},
    {GEN_DNS, "Other.Example.NET", 0},
    {GEN_EMAIL, "Alice@Example.COM", 0},
};

static const struct name_entry nul_subject[] = {
    {"CN", "host.example.com\0.evil.net", 26, false},
};
static const struct alt_name nul_sans[] = {
    {GEN_DNS, "host.example.com\0.evil.net", 26},
    {GEN_EMAIL, "alice@example.com\0.evil.net", 27},
    {GEN_DNS, "clean.example.org", 0},
};

static const struct name_entry control_subject[] = {
    {"CN", "host\x01.example.com", 0, false},
};
static const struct alt_name control_sans[] = {
    {GEN_DNS, "ctl\x1f.example.com", 0},
    {GEN_DNS, "del\x7f.example.com", 0},
    {GEN_DNS, "high\xe9.example.com", 0},
    {GEN_EMAIL, "tab\t@example.com", 0},
};

/* The CN starts with '#', ends with a space and holds each special. */
static const char special_cn[] = "#1 \"best\", <a+b>; c=d\\e ";
static const struct name_entry special_subject[] = {
    {"C", "FR", 0, false},	  {"O", "J\xc3\xbcrgen & Co", 0, false},
    {"OU", "Ops", 0, false},	  {"UID", "u42", 0, true},
    {"CN", special_cn, 0, false},
};

static const struct {
	const struct name_entry *subject;
	size_t nsubject;
	const struct alt_name *sans;
	size_t nsans;
} cert_specs[CERT_COUNT] = {
    [CERT_BASIC] = {basic_subject, COUNT(basic_subject), basic_sans,
		    COUNT(basic_sans)},
    [CERT_NUL] = {nul_subject, COUNT(nul_subject), nul_sans, COUNT(nul_sans)},
    [CERT_CONTROL] = {control_subject, COUNT(control_subject), control_sans,
		      COUNT(control_sans)},
    [CERT_SPECIAL] = {special_subject, COUNT(special_subject), NULL, 0},
};

static X509 *certs[CERT_COUNT];
/* Each certificate's SHA-256, lower-case hex without ':'. */
static char cert_fp[CERT_COUNT][65];

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fixture: %s failed\n", what);
		abort();
	}
}

static X509 *make_cert(EVP_PKEY *key, const struct name_entry *subject,
		       size_t nsubject, const struct alt_name *sans,
		       size_t nsans)
{
	X509 *x = X509_new(), *copy;
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;
	const unsigned char *p;
	int len;

	check(x != NULL && name != NULL, "X509_new");
	check(X509_set_version(x, X509_VERSION_3) == 1 &&
		  ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1 &&
		  X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
		  X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL,
	      "validity");
	for (size_t i = 0; i < nsubject; i++) {
		const struct name_entry *e = &subject[i];
		int n = (int)(e->len ? e->len : strlen(e->value));

		/* An explicit length: a NUL goes in as a byte. */
		check(X509_NAME_add_entry_by_txt(
			  name, e->type, MBSTRING_UTF8,
			  (const unsigned char *)e->value, n, -1,
			  e->same_rdn ? -1 : 0) == 1,
		      "subject entry");
	}
	check(X509_set_subject_name(x, name) == 1 &&
		  X509_set_issuer_name(x, name) == 1,
	      "names");
	X509_NAME_free(name);
	if (nsans > 0) {
		GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

		check(gens != NULL, "GENERAL_NAMES");
		for (size_t i = 0; i < nsans; i++) {
			GENERAL_NAME *gn = GENERAL_NAME_new();
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();
			size_t n =
			    sans[i].len ? sans[i].len : strlen(sans[i].value);

			check(gn != NULL && s != NULL &&
				  ASN1_STRING_set(s, sans[i].value, (int)n) ==
				      1,
			      "GENERAL_NAME");
			GENERAL_NAME_set0_value(gn, sans[i].type, s);
			check(sk_GENERAL_NAME_push(gens, gn) > 0, "push");
		}
		check(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
					X509V3_ADD_DEFAULT) == 1,
		      "subjectAltName");
		GENERAL_NAMES_free(gens);
	}
	check(X509_set_pubkey(x, key) == 1 &&
		  X509_sign(x, key, EVP_sha256()) > 0,
	      "sign");
	len = i2d_X509(x, &der);
	check(len > 0, "i2d_X509");
	p = der;
	copy = d2i_X509(NULL, &p, len);
	check(copy != NULL, "d2i_X509");
	OPENSSL_free(der);
	X509_free(x);
	return copy;
}

/* The fingerprint the way "openssl x509 -fingerprint -sha256" takes it,
 * independent of certmap.c: SHA-256 over i2d_X509(). */
static void cert_fingerprint(X509 *x, char out[65])
{
	unsigned char *der = NULL, md[32];
	unsigned int mdlen = 0;
	int len = i2d_X509(x, &der);

	check(len > 0 &&
		  EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(),
			     NULL) == 1 &&
		  mdlen == 32,
	      "fingerprint");
	for (size_t i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	OPENSSL_free(der);
}

static void make_fixtures(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");

	check(key != NULL, "EVP_EC_gen");
	for (size_t i = 0; i < CERT_COUNT; i++) {
		certs[i] = make_cert(key, cert_specs[i].subject,
				     cert_specs[i].nsubject, cert_specs[i].sans,
				     cert_specs[i].nsans);
		cert_fingerprint(certs[i], cert_fp[i]);
	}
	EVP_PKEY_free(key);
}

/* The subject as "openssl x509 -noout -subject -nameopt RFC2253" prints
 * it. */
static char *openssl_subject(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s;
	long len;

	check(bio != NULL && X509_NAME_print_ex(bio, X509_get_subject_name(x),
						0, XN_FLAG_RFC2253) >= 0,
	      "X509_NAME_print_ex");
	len = BIO_get_mem_data(bio, &data);
	s = malloc((size_t)len + 1);
	check(s != NULL, "malloc");
	memcpy(s, data, (size_t)len);
	s[len] = '\0';
	BIO_free(bio);
	return s;
}

/* Parses text (which must parse) and matches cert; *line_r gets the
 * line, 0 for none. */
static const char *map_match(struct certmap **m_r, const char *text,
			     enum cert_id cert, int *line_r)
{
	struct config_errors errors = {NULL, 0};
	const char *login;

	*m_r = certmap_parse("t.map", text, strlen(text), &errors);
	if (errors.count > 0)
		config_errors_print(&errors, stdout); /* as TAP comments' aid */
	config_errors_finish(&errors);
	*line_r = 0;
	if (*m_r == NULL)
		return NULL;
	login = certmap_match(*m_r, certs[cert], line_r);
	if (login == NULL)
		*line_r = 0;
	return login;
}

struct match_case {
	const char *name;
	enum cert_id cert;
	const char *text;
	const char *login; /* NULL: no rule matches */
};

static const struct match_case match_cases[] = {
    /* subject: the RFC 4514 order, most specific first */
    {"subject_matches", CERT_BASIC,
     "subject:CN=host.example.com,O=Example Org,C=DE alice\n", "alice"},
    {"subject_type_any_case", CERT_BASIC,
     "subject:cn=host.example.com,o=Example Org,c=DE alice\n", "alice"},
    {"subject_type_long_names", CERT_BASIC,
     "subject:commonName=host.example.com,organizationName=Example Org,"
     "countryName=DE alice\n",
     "alice"},
    {"subject_type_dotted_oid", CERT_BASIC,
     "subject:2.5.4.3=host.example.com,2.5.4.10=Example Org,2.5.4.6=DE "
     "alice\n",
     "alice"},
    {"subject_hex_escape_of_a_plain_byte", CERT_BASIC,
     "subject:CN=host.example.com,O=Example\\20Org,C=\\44\\45 alice\n",
     "alice"},
    {"subject_escaped_inner_space", CERT_BASIC,
     "subject:CN=host.example.com,O=Example\\ Org,C=DE alice\n", "alice"},
    {"subject_value_case_differs", CERT_BASIC,
     "subject:CN=Host.example.com,O=Example Org,C=DE alice\n", NULL},
    {"subject_country_case_differs", CERT_BASIC,
     "subject:CN=host.example.com,O=Example Org,C=de alice\n", NULL},
    {"subject_asn1_order_is_not_the_string_order", CERT_BASIC,
     "subject:C=DE,O=Example Org,CN=host.example.com alice\n", NULL},
    {"subject_rdn_missing", CERT_BASIC,
     "subject:CN=host.example.com,O=Example Org alice\n", NULL},
    {"subject_cn_alone", CERT_BASIC, "subject:CN=host.example.com alice\n",
     NULL},
    {"subject_extra_rdn", CERT_BASIC,
     "subject:CN=host.example.com,O=Example Org,C=DE,DC=com alice\n", NULL},
    {"subject_extra_leading_rdn", CERT_BASIC,
     "subject:UID=x,CN=host.example.com,O=Example Org,C=DE alice\n", NULL},
    {"subject_value_prefix", CERT_BASIC,
     "subject:CN=host.example.co,O=Example Org,C=DE alice\n", NULL},
    {"subject_value_longer", CERT_BASIC,
     "subject:CN=host.example.com.,O=Example Org,C=DE alice\n", NULL},
    {"subject_other_type_same_value", CERT_BASIC,
     "subject:OU=host.example.com,O=Example Org,C=DE alice\n", NULL},
    {"subject_one_rdn_made_multi_valued", CERT_BASIC,
     "subject:CN=host.example.com+O=Example Org,C=DE alice\n", NULL},
    /* every special, UTF-8, a multi-valued RDN */
    {"subject_escapes", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "OU=Ops+UID=u42,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     "alice"},
    {"subject_utf8_unescaped", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c=d\\\\e\\20,"
     "OU=Ops+UID=u42,O=J\xc3\xbcrgen & Co,C=FR alice\n",
     "alice"},
    {"subject_multi_valued_any_order", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "UID=u42+OU=Ops,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     "alice"},
    {"subject_uid_is_rfc4514_uid_any_case", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "uid=u42+ou=Ops,o=J\\C3\\BCrgen & Co,c=FR alice\n",
     "alice"},
    {"subject_multi_valued_one_missing", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "OU=Ops,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     NULL},
    {"subject_multi_valued_one_twice", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "OU=Ops+OU=Ops,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     NULL},
    {"subject_multi_valued_split_in_two", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e\\ ,"
     "OU=Ops,UID=u42,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     NULL},
    {"subject_trailing_space_matters", CERT_SPECIAL,
     "subject:CN=\\#1 \\\"best\\\"\\, \\<a\\+b\\>\\; c\\=d\\\\e,"
     "OU=Ops+UID=u42,O=J\\C3\\BCrgen & Co,C=FR alice\n",
     NULL},
    /* CVE-2009-4565: a NUL in the CN ends nothing */
    {"nul_cn_not_its_prefix", CERT_NUL, "subject:CN=host.example.com alice\n",
     NULL},
    {"nul_dns_not_its_prefix", CERT_NUL, "san-dns:host.example.com alice\n",
     NULL},
    {"nul_dns_not_its_suffix", CERT_NUL, "san-dns:.evil.net alice\n", NULL},
    {"nul_email_not_its_prefix", CERT_NUL,
     "san-email:alice@example.com alice\n", NULL},
    {"nul_cert_other_san_still_matches", CERT_NUL,
     "san-dns:host.example.com alice\nsan-dns:clean.example.org bob\n", "bob"},
    {"control_cn_no_subject_match", CERT_CONTROL,
     "subject:CN=host.example.com alice\n", NULL},
    {"control_dns_not_without_it", CERT_CONTROL,
     "san-dns:ctl.example.com alice\nsan-dns:del.example.com alice\n"
     "san-dns:high.example.com alice\n",
     NULL},
    {"control_email_not_without_it", CERT_CONTROL,
     "san-email:tab@example.com alice\n", NULL},
    /* san-dns */
    {"dns_matches", CERT_BASIC, "san-dns:host.example.com alice\n", "alice"},
    {"dns_case_insensitive", CERT_BASIC, "san-dns:HOST.Example.com alice\n",
     "alice"},
    {"dns_case_insensitive_cert_side", CERT_BASIC,
     "san-dns:other.example.net alice\n", "alice"},
    {"dns_prefix", CERT_BASIC, "san-dns:host.example.co alice\n", NULL},
    {"dns_longer", CERT_BASIC, "san-dns:host.example.com. alice\n", NULL},
    {"dns_no_wildcard", CERT_BASIC, "san-dns:*.example.com alice\n", NULL},
    {"dns_not_from_email_san", CERT_BASIC, "san-dns:Alice@Example.COM alice\n",
     NULL},
    /* san-email */
    {"email_matches", CERT_BASIC, "san-email:Alice@Example.COM alice\n",
     "alice"},
    {"email_domain_case_insensitive", CERT_BASIC,
     "san-email:Alice@example.com alice\n", "alice"},
    {"email_local_part_exact", CERT_BASIC,
     "san-email:alice@Example.COM alice\n", NULL},
    {"email_longer_domain", CERT_BASIC,
     "san-email:Alice@Example.COM.evil alice\n", NULL},
    {"email_not_from_dns_san", CERT_BASIC, "san-email:host@example.com alice\n",
     NULL},
    /* order */
    {"first_match_wins", CERT_BASIC,
     "san-dns:nomatch.example zed\n"
     "san-email:Alice@example.com alice\n"
     "subject:CN=host.example.com,O=Example Org,C=DE bob\n",
     "alice"},
    {"first_match_wins_across_kinds", CERT_BASIC,
     "subject:CN=host.example.com,O=Example Org,C=DE bob\n"
     "san-dns:host.example.com alice\n",
     "bob"},
    {"duplicate_rule_first_wins", CERT_BASIC,
     "# twice\nsan-dns:host.example.com alice\nsan-dns:host.example.com "
     "bob\n",
     "alice"},
};

static void test_match_cases(void)
{
	for (size_t i = 0; i < COUNT(match_cases); i++) {
		const struct match_case *c = &match_cases[i];
		struct certmap *m;
		int line;
		const char *login = map_match(&m, c->text, c->cert, &line);

		TAP_OK(m != NULL, "%s: map parses", c->name);
		if (c->login != NULL)
			TAP_EQ_STR(login, c->login, "%s: login", c->name);
		else
			TAP_OK(login == NULL, "%s: no rule matches (got %s)",
			       c->name, login != NULL ? login : "none");
		certmap_free(m);
	}
}

static void test_match_line(void)
{
	struct certmap *m;
	int line;
	const char *login = map_match(
	    &m,
	    "# comment\n\nsan-dns:x.example a\nsan-email:Alice@EXAMPLE.com b\n"
	    "san-dns:host.example.com c\n",
	    CERT_BASIC, &line);

	TAP_EQ_STR(login, "b", "line: the login of the first match");
	TAP_EQ_INT(line, 4, "line: its line number, comments counted");
	TAP_OK(certmap_match(m, certs[CERT_BASIC], NULL) == login,
	       "line: line_r may be NULL");
	TAP_OK(certmap_match(m, certs[CERT_SPECIAL], &line) == NULL,
	       "line: other certificate, no match");
	certmap_free(m);
}

static void test_sha256(void)
{
	char text[512], upper[100];
	struct certmap *m;
	int line;
	size_t n = 0;

	/* "AB:CD:..." as openssl x509 -fingerprint prints it */
	for (size_t i = 0; i < 64; i += 2) {
		if (i > 0)
			upper[n++] = ':';
		upper[n++] = (char)(cert_fp[CERT_BASIC][i] >= 'a'
					? cert_fp[CERT_BASIC][i] - 'a' + 'A'
					: cert_fp[CERT_BASIC][i]);
		upper[n++] = (char)(cert_fp[CERT_BASIC][i + 1] >= 'a'
					? cert_fp[CERT_BASIC][i + 1] - 'a' + 'A'
					: cert_fp[CERT_BASIC][i + 1]);
	}
	upper[n] = '\0';

	snprintf(text, sizeof(text), "sha256:%s alice\n", cert_fp[CERT_BASIC]);
	TAP_EQ_STR(map_match(&m, text, CERT_BASIC, &line), "alice",
		   "sha256: lower-case hex matches");
	certmap_free(m);

	snprintf(text, sizeof(text), "sha256:%s alice\n", upper);
	TAP_EQ_STR(map_match(&m, text, CERT_BASIC, &line), "alice",
		   "sha256: upper-case with ':' matches");
	TAP_OK(certmap_match(m, certs[CERT_SPECIAL], NULL) == NULL,
	       "sha256: another certificate does not");
	certmap_free(m);

	/* Only the last nibble differs. */
	snprintf(text, sizeof(text), "sha256:%.63s%c alice\n",
		 cert_fp[CERT_BASIC],
		 cert_fp[CERT_BASIC][63] == '0' ? '1' : '0');
	TAP_OK(map_match(&m, text, CERT_BASIC, &line) == NULL && m != NULL,
	       "sha256: one nibble off, no match");
	certmap_free(m);

	/* A fingerprint does not care what the names hold. */
	snprintf(text, sizeof(text),
		 "san-dns:host.example.com a\nsha256:%s nul\n",
		 cert_fp[CERT_NUL]);
	TAP_EQ_STR(map_match(&m, text, CERT_NUL, &line), "nul",
		   "sha256: matches a certificate with a NUL in its CN");
	TAP_EQ_INT(line, 2, "sha256: line 2");
	certmap_free(m);
}

/* The forged names really hold their NUL (else the NUL cases prove
 * nothing). */
static void test_fixtures(void)
{
	const X509_NAME *name = X509_get_subject_name(certs[CERT_NUL]);
	GENERAL_NAMES *gens =
	    X509_get_ext_d2i(certs[CERT_NUL], NID_subject_alt_name, NULL, NULL);
	const GENERAL_NAME *gn =
	    gens != NULL ? sk_GENERAL_NAME_value(gens, 0) : NULL;

	TAP_EQ_INT(ASN1_STRING_length(
		       X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, 0))),
		   26, "fixture: the CN holds all 26 bytes, its NUL too");
	TAP_OK(gn != NULL && gn->type == GEN_DNS &&
		   ASN1_STRING_length(gn->d.dNSName) == 26,
	       "fixture: the dNSName holds all 26 bytes, its NUL too");
	GENERAL_NAMES_free(gens);
}

/* The documented way to write a rule: what openssl prints. */
static void test_openssl_printed_subject(void)
{
	enum cert_id ids[] = {CERT_BASIC, CERT_SPECIAL};

	for (size_t i = 0; i < COUNT(ids); i++) {
		char *dn = openssl_subject(certs[ids[i]]);
		size_t len = strlen(dn) + 32;
		char *text = malloc(len);
		struct certmap *m;
		int line;

		check(text != NULL, "malloc");
		snprintf(text, len, "subject:%s printed\n", dn);
		printf("# openssl prints %s\n", dn);
		TAP_EQ_STR(map_match(&m, text, ids[i], &line), "printed",
			   "openssl's RFC2253 subject of cert %zu matches", i);
		certmap_free(m);
		free(text);
		free(dn);
	}

	/* And its print of the NUL subject ("\00") is refused at load. */
	{
		char *dn = openssl_subject(certs[CERT_NUL]);
		char text[256];
		struct config_errors errors = {NULL, 0};
		struct certmap *m;

		snprintf(text, sizeof(text), "subject:%s alice\n", dn);
		m = certmap_parse("t.map", text, strlen(text), &errors);
		TAP_OK(m == NULL && errors.count == 1,
		       "openssl's print of a NUL CN (%s) is refused", dn);
		certmap_free(m);
		config_errors_finish(&errors);
		free(dn);
	}
}

static const char accepted_text[] = "# client certificates\n"
				    "   # an indented comment\n"
				    "\n"
				    " \t \n"
				    "  san-dns:host.example.com\talice  \r\n"
				    "subject:CN=a b c,O=x   bob\n"
				    "san-email:a@b.example   carol\r\n"
				    "san-dns:last.example dave";

static void test_accepted_format(void)
{
	struct config_errors errors = {NULL, 0};
	struct certmap *m = certmap_parse("t.map", accepted_text,
					  strlen(accepted_text), &errors);
	int line = 0;

	TAP_OK(m != NULL && errors.count == 0,
	       "format: comments, blanks, CRLF, tabs, no final LF");
	TAP_EQ_INT(certmap_count(m), 4, "format: certmap_count counts rules");
	TAP_EQ_STR(certmap_match(m, certs[CERT_BASIC], &line), "alice",
		   "format: indented rule with tab and CRLF matches");
	TAP_EQ_INT(line, 5, "format: on line 5");
	certmap_free(m);
	config_errors_finish(&errors);

	m = certmap_parse("t.map", "", 0, &errors);
	TAP_OK(m != NULL && certmap_count(m) == 0 && errors.count == 0,
	       "format: empty file, empty map");
	TAP_OK(certmap_match(m, certs[CERT_BASIC], NULL) == NULL,
	       "format: empty map matches nothing");
	certmap_free(m);
	certmap_free(NULL);
	TAP_EQ_INT(certmap_count(NULL), 0, "format: no map, no rules");
}

static void test_login_limits(void)
{
	char text[400], login[300];
	struct config_errors errors = {NULL, 0};
	struct certmap *m;

	memset(login, 'l', 256);
	login[256] = '\0';
	snprintf(text, sizeof(text), "san-dns:host.example.com %s\n", login);
	m = certmap_parse("t.map", text, strlen(text), &errors);
	TAP_EQ_STR(certmap_match(m, certs[CERT_BASIC], NULL), login,
		   "login: 256 bytes accepted");
	certmap_free(m);

	snprintf(text, sizeof(text), "san-dns:host.example.com %sl\n", login);
	m = certmap_parse("t.map", text, strlen(text), &errors);
	TAP_OK(m == NULL && errors.count == 1 &&
		   strstr(errors.items[0].message, "longer than 256") != NULL,
	       "login: 257 bytes refused");
	config_errors_finish(&errors);

	snprintf(text, sizeof(text), "san-dns:h.example j\xc3\xbcrgen\n");
	m = certmap_parse("t.map", text, strlen(text), &errors);
	TAP_OK(m != NULL && errors.count == 0, "login: UTF-8 accepted");
	certmap_free(m);
}

struct error_case {
	const char *name;
	const char *text;    /* one line, no LF */
	size_t len;	     /* 0: strlen */
	const char *message; /* a part of the message */
};

static char long_login_line[400];

static const struct error_case error_cases[] = {
    {"unknown_kind", "bogus:x alice", 0, "unknown rule kind \"bogus\""},
    {"kind_is_case_sensitive", "SHA256:00 alice", 0, "unknown rule kind"},
    {"no_kind", "alice", 0, "unknown rule kind"},
    {"kind_quoted_sanitized", "b\x01gus:x alice", 0, "\"b\\x01gus\""},
    {"missing_login", "san-dns:host.example.com", 0, "missing login"},
    {"missing_login_and_value", "subject:", 0, "missing login"},
    {"empty_value", "san-email: alice", 0, "empty value"},
    {"fingerprint_bad_hex",
     "sha256:zz00000000000000000000000000000000000000000000000000000000000000 "
     "alice",
     0, "bad fingerprint"},
    {"fingerprint_short",
     "sha256:000000000000000000000000000000000000000000000000000000000000 "
     "alice",
     0, "shorter than 32 bytes"},
    {"fingerprint_long",
     "sha256:00000000000000000000000000000000000000000000000000000000000000"
     "0000 alice",
     0, "longer than 32 bytes"},
    {"fingerprint_odd_digits",
     "sha256:000000000000000000000000000000000000000000000000000000000000000 "
     "alice",
     0, "bad fingerprint"},
    {"fingerprint_double_colon",
     "sha256:00::00000000000000000000000000000000000000000000000000000000000"
     "000 alice",
     0, "bad fingerprint"},
    {"fingerprint_colon_inside_pair",
     "sha256:0:000000000000000000000000000000000000000000000000000000000000"
     "000 alice",
     0, "bad fingerprint"},
    {"fingerprint_leading_colon",
     "sha256::0000000000000000000000000000000000000000000000000000000000000"
     "000 alice",
     0, "bad fingerprint"},
    {"dn_unknown_type", "subject:FOO=a alice", 0, "unknown or ambiguous"},
    {"dn_ambiguous_type", "subject:MAIL=a alice", 0, "unknown or ambiguous"},
    {"dn_oid_empty_arc", "subject:1..2=a alice", 0, "dotted OID"},
    {"dn_oid_trailing_dot", "subject:2.5.4.3.=a alice", 0, "dotted OID"},
    {"dn_oid_leading_zero", "subject:2.05.4.3=a alice", 0, "dotted OID"},
    {"dn_oid_one_arc", "subject:2=a alice", 0, "dotted OID"},
    {"dn_oid_bad_first_arc", "subject:3.1=a alice", 0, "unknown"},
    {"dn_no_equals", "subject:CN alice", 0, "expected TYPE=VALUE"},
    {"dn_empty_rdn", "subject:CN=a,,O=b alice", 0, "bad DN"},
    {"dn_trailing_comma", "subject:CN=a, alice", 0, "expected TYPE=VALUE"},
    {"dn_space_after_comma", "subject:CN=a, O=b alice", 0, "bad DN"},
    {"dn_leading_space_in_value", "subject:CN= a alice", 0, "\"\\ \""},
    {"dn_trailing_space_in_value", "subject:CN=a ,O=b alice", 0, "\"\\ \""},
    {"dn_unescaped_quote", "subject:CN=a\"b alice", 0, "escaped"},
    {"dn_unescaped_semicolon", "subject:CN=a;b alice", 0, "escaped"},
    {"dn_unescaped_angle", "subject:CN=<a> alice", 0, "escaped"},
    {"dn_bad_escape", "subject:CN=a\\zb alice", 0, "neither special"},
    {"dn_half_hex_escape", "subject:CN=a\\4 alice", 0, "neither special"},
    {"dn_backslash_at_end", "subject:CN=a\\ alice", 0, "at the end"},
    {"dn_hex_value", "subject:CN=#0c0161 alice", 0, "#hex"},
    {"dn_hex_nul", "subject:CN=host.example.com\\00.evil.net alice", 0,
     "control byte"},
    {"dn_hex_control", "subject:CN=a\\1Fb alice", 0, "control byte"},
    {"dn_hex_del", "subject:CN=a\\7fb alice", 0, "control byte"},
    {"value_control_byte", "san-dns:a\x01.example alice", 0,
     "control byte 0x01 in the value"},
    {"value_nul_byte", "san-dns:a\0.example alice", 24,
     "control byte 0x00 in the value"},
    {"value_cr_inside", "subject:CN=a\rb alice", 0,
     "control byte 0x0d in the value"},
    {"value_tab_inside_dn", "subject:CN=a\tb alice", 0,
     "control byte 0x09 in the value"},
    {"login_control_byte", "san-dns:a.example al\x7fice", 0,
     "control byte 0x7f in the login"},
    {"login_too_long", long_login_line, 0, "login longer than 256 bytes"},
    {"san_blank_inside", "san-dns:a.example b.example alice", 0,
     "blank inside"},
    {"san_not_ascii", "san-dns:h\xc3\xa9.example alice", 0, "ASCII"},
    {"email_without_at", "san-email:nobody alice", 0, "local@domain"},
    {"email_without_local", "san-email:@example.com alice", 0, "local@domain"},
    {"email_without_domain", "san-email:nobody@ alice", 0, "local@domain"},
};

static void fill_error_cases(void)
{
	memcpy(long_login_line, "san-dns:a.example ", 18);
	memset(long_login_line + 18, 'l', 257);
	long_login_line[18 + 257] = '\0';
}

static void test_error_cases(void)
{
	for (size_t i = 0; i < COUNT(error_cases); i++) {
		const struct error_case *c = &error_cases[i];
		struct config_errors errors = {NULL, 0};
		size_t len = c->len ? c->len : strlen(c->text);
		struct certmap *m =
		    certmap_parse("t.map", c->text, len, &errors);

		TAP_OK(m == NULL && errors.count == 1,
		       "error %s: refused, one record", c->name);
		if (errors.count == 1) {
			TAP_OK(errors.items[0].line == 1 &&
				   strcmp(errors.items[0].file, "t.map") == 0,
			       "error %s: t.map line 1", c->name);
			TAP_OK(strstr(errors.items[0].message, c->message) !=
				   NULL,
			       "error %s: \"%s\" in \"%s\"", c->name,
			       c->message, errors.items[0].message);
		}
		certmap_free(m);
		config_errors_finish(&errors);
	}
}

/* Every error case in one file, a good rule, a comment and a blank line
 * between each two: every one reported, each with its own line. */
static void test_every_error_reported(void)
{
	struct config_errors errors = {NULL, 0};
	size_t cap = 65536, len = 0;
	char *text = malloc(cap);
	struct certmap *m;
	bool lines_ok = true;

	check(text != NULL, "malloc");
	for (size_t i = 0; i < COUNT(error_cases); i++) {
		const struct error_case *c = &error_cases[i];
		size_t n = c->len ? c->len : strlen(c->text);
		static const char good[] = "san-dns:ok.example ok\n# c\n\n";

		check(len + n + sizeof(good) + 2 < cap, "room");
		memcpy(text + len, good, sizeof(good) - 1);
		len += sizeof(good) - 1;
		memcpy(text + len, c->text, n);
		len += n;
		text[len++] = i % 2 ? '\n' : '\r';
		if (i % 2 == 0)
			text[len++] = '\n';
	}
	m = certmap_parse("t.map", text, len, &errors);
	TAP_OK(m == NULL, "all errors: refused");
	TAP_EQ_INT(errors.count, COUNT(error_cases),
		   "all errors: one record per bad line");
	for (size_t i = 0; i < errors.count && i < COUNT(error_cases); i++)
		if (errors.items[i].line != (int)(4 * i + 4))
			lines_ok = false;
	TAP_OK(lines_ok, "all errors: each on its own line, in order");
	certmap_free(m);
	config_errors_finish(&errors);
	free(text);
}

static void test_read(void)
{
	char path[] = "/tmp/test_certmap.XXXXXX";
	int fd = mkstemp(path);
	struct config_errors errors = {NULL, 0};
	struct certmap *m;
	FILE *f;

	check(fd >= 0, "mkstemp");
	f = fdopen(fd, "w");
	check(f != NULL, "fdopen");
	fputs("san-dns:host.example.com alice\nbad line\nsubject:CN=\n", f);
	fclose(f);

	m = certmap_read(path, &errors);
	TAP_OK(m == NULL && errors.count == 2 && errors.items[0].line == 2 &&
		   strcmp(errors.items[0].file, path) == 0,
	       "read: PATH:2: for the first bad line");
	TAP_OK(errors.count == 2 &&
		   strstr(errors.items[0].message, "unknown rule kind") &&
		   errors.items[1].line == 3 &&
		   strstr(errors.items[1].message, "missing login"),
	       "read: and PATH:3: for the second");
	config_errors_finish(&errors);

	f = fopen(path, "w");
	check(f != NULL, "fopen");
	fputs("subject:CN=x o\nsan-dns:host.example.com alice\n", f);
	fclose(f);
	m = certmap_read(path, &errors);
	TAP_OK(m != NULL && errors.count == 0 && certmap_count(m) == 2,
	       "read: a good file, two rules");
	TAP_EQ_STR(certmap_match(m, certs[CERT_BASIC], NULL), "alice",
		   "read: its rules in force");
	certmap_free(m);
	unlink(path);

	m = certmap_read(path, &errors);
	TAP_OK(m == NULL && errors.count == 1 && errors.items[0].line == 0,
	       "read: a missing file, one record for the file");
	config_errors_finish(&errors);
}

int main(void)
{
	make_fixtures();
	fill_error_cases();
	test_fixtures();
	test_match_cases();
	test_match_line();
	test_sha256();
	test_openssl_printed_subject();
	test_accepted_format();
	test_login_limits();
	test_error_cases();
	test_every_error_reported();
	test_read();
	for (size_t i = 0; i < CERT_COUNT; i++)
		X509_free(certs[i]);
	return tap_done();
}
