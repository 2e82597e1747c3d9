/*
 * certmap.c - [tls] client_cert_map (see certmap.h for the file format).
 *
 * Parsing does all the work that can be done once: a fingerprint becomes
 * its 32 bytes, a DN becomes its RDNs, each a set of (OID, value) pairs
 * with every RFC 4514 escape undone.  Matching then only compares bytes
 * of known length: the certificate's subject is decoded the same way
 * (OIDs as DER bytes, values as UTF-8) and compared pair by pair, and a
 * subjectAltName is compared over its ASN1_STRING length.  No comparison
 * stops at a NUL, and a certificate field holding a NUL or any other
 * control byte is set aside before comparing: that is how "CN=bank.com\0
 * .evil.net" got past name checks that used strcmp (CVE-2009-4565 and
 * kin).
 */
#include "tls/certmap.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"
#include "config/config.h"

#define CERTMAP_SHA256_LEN 32
/* RDNs in a DN, AVAs in one RDN: more is no real certificate, and they
 * keep matching bounded (a bit set of this size marks the AVAs of a
 * multi-valued RDN already used, certmap_rdn_equal). */
#define CERTMAP_DN_RDNS_MAX  64
#define CERTMAP_RDN_AVAS_MAX 64
#define CERTMAP_TYPE_MAX     128 /* bytes of an attribute type */

enum certmap_kind {
	CERTMAP_SHA256,
	CERTMAP_SUBJECT,
	CERTMAP_SAN_EMAIL,
	CERTMAP_SAN_DNS,
	CERTMAP_KIND_COUNT,
};

static const char *const certmap_kind_prefix[] = {
    [CERTMAP_SHA256] = "sha256:",
    [CERTMAP_SUBJECT] = "subject:",
    [CERTMAP_SAN_EMAIL] = "san-email:",
    [CERTMAP_SAN_DNS] = "san-dns:",
};
static_assert(sizeof(certmap_kind_prefix) / sizeof(certmap_kind_prefix[0]) ==
		  CERTMAP_KIND_COUNT,
	      "a prefix per rule kind");

/* One attribute type and value: the OID as its DER content bytes (so
 * that two OIDs without an OpenSSL NID still differ), the value as the
 * bytes it stands for (UTF-8). */
struct certmap_ava {
	unsigned char *oid;
	size_t oid_len;
	unsigned char *value;
	size_t value_len;
};

struct certmap_rdn {
	struct certmap_ava *avas;
	size_t navas;
};

/* RDNs most specific first: the order of the RFC 4514 string, the
 * reverse of the certificate's. */
struct certmap_dn {
	struct certmap_rdn *rdns;
	size_t nrdns;
};

struct certmap_rule {
	enum certmap_kind kind;
	int line;
	char *login;
	unsigned char sha256[CERTMAP_SHA256_LEN]; /* CERTMAP_SHA256 */
	struct certmap_dn dn;			  /* CERTMAP_SUBJECT */
	char *name; /* CERTMAP_SAN_*: the address or DNS name */
	size_t name_len;
};

struct certmap {
	struct certmap_rule *rules; /* file order: the first match wins */
	size_t count;
};

/* ---- small helpers ---- */

static bool certmap_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool certmap_is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* The first control byte of s[0..len), or -1. */
static int certmap_find_control(const void *s, size_t len)
{
	const unsigned char *p = s;

	for (size_t i = 0; i < len; i++)
		if (certmap_is_control(p[i]))
			return p[i];
	return -1;
}

/* c is one of set (never the NUL that ends set). */
static bool certmap_in(const char *set, char c)
{
	return c != '\0' && strchr(set, c) != NULL;
}

static int certmap_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned char certmap_ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* ASCII only, over len bytes whatever they hold: the locale never
 * changes which login a name gets, and a NUL does not end the
 * comparison. */
static bool certmap_ascii_caseequal(const void *a, const void *b, size_t len)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < len; i++)
		if (certmap_ascii_lower(x[i]) != certmap_ascii_lower(y[i]))
			return false;
	return true;
}

static bool certmap_ascii_casestr(const char *a, const char *b)
{
	size_t len = strlen(a);

	return len == strlen(b) && certmap_ascii_caseequal(a, b, len);
}

static void certmap_dn_finish(struct certmap_dn *dn)
{
	for (size_t i = 0; i < dn->nrdns; i++) {
		for (size_t k = 0; k < dn->rdns[i].navas; k++) {
			free(dn->rdns[i].avas[k].oid);
			free(dn->rdns[i].avas[k].value);
		}
		free(dn->rdns[i].avas);
	}
	free(dn->rdns);
	dn->rdns = NULL;
	dn->nrdns = 0;
}

static struct certmap_rdn *certmap_dn_add_rdn(struct certmap_dn *dn)
{
	dn->rdns = xreallocarray(dn->rdns, dn->nrdns + 1, sizeof(dn->rdns[0]));
	memset(&dn->rdns[dn->nrdns], 0, sizeof(dn->rdns[0]));
	return &dn->rdns[dn->nrdns++];
}

/* Takes oid and value. */
static void certmap_rdn_add_ava(struct certmap_rdn *rdn, unsigned char *oid,
				size_t oid_len, unsigned char *value,
				size_t value_len)
{
	rdn->avas =
	    xreallocarray(rdn->avas, rdn->navas + 1, sizeof(rdn->avas[0]));
	rdn->avas[rdn->navas++] =
	    (struct certmap_ava){oid, oid_len, value, value_len};
}

/* ---- parsing ---- */

/* "AB:CD..." or "abcd...": 32 bytes, a ':' only between two pairs. */
static const char *certmap_parse_sha256(const char *s, size_t len,
					unsigned char *out)
{
	size_t n = 0, i = 0;

	while (i < len) {
		int hi, lo;

		if (n > 0 && s[i] == ':' && i + 1 < len)
			i++;
		if (i + 1 >= len || (hi = certmap_hex(s[i])) < 0 ||
		    (lo = certmap_hex(s[i + 1])) < 0)
			return "bad fingerprint: hex digit pairs, ':' allowed "
			       "between them";
		if (n == CERTMAP_SHA256_LEN)
			return "bad fingerprint: longer than 32 bytes";
		out[n++] = (unsigned char)(hi << 4 | lo);
		i += 2;
	}
	if (n != CERTMAP_SHA256_LEN)
		return "bad fingerprint: shorter than 32 bytes";
	return NULL;
}

/*
 * An attribute type name to its object.  RFC 4514 §2.3 names are
 * case-insensitive, OpenSSL's lookups are not, and OpenSSL spells two
 * names in two cases for different attributes ("UID" userId and "uid"
 * uniqueIdentifier, "mail" and "Mail"): the RFC 4514 §3 table decides
 * first whatever the case, then OpenSSL's short and long names as given,
 * then a name that matches exactly one object ignoring case.
 */
static ASN1_OBJECT *certmap_type_object(const char *name)
{
	static const struct {
		const char *name;
		int nid;
	} rfc4514[] = {
	    {"CN", NID_commonName},
	    {"L", NID_localityName},
	    {"ST", NID_stateOrProvinceName},
	    {"O", NID_organizationName},
	    {"OU", NID_organizationalUnitName},
	    {"C", NID_countryName},
	    {"STREET", NID_streetAddress},
	    {"DC", NID_domainComponent},
	    {"UID", NID_userId},
	};
	int nid = NID_undef;

	if (name[0] >= '0' && name[0] <= '9')
		return OBJ_txt2obj(name, 1); /* numbers only, no names */
	for (size_t i = 0; i < sizeof(rfc4514) / sizeof(rfc4514[0]); i++)
		if (certmap_ascii_casestr(rfc4514[i].name, name))
			return OBJ_nid2obj(rfc4514[i].nid);
	nid = OBJ_sn2nid(name);
	if (nid == NID_undef)
		nid = OBJ_ln2nid(name);
	/* OBJ_new_nid(0) is one past the last NID, without taking one. */
	for (int n = 1, end = OBJ_new_nid(0); nid == NID_undef && n < end;
	     n++) {
		const char *sn = OBJ_nid2sn(n), *ln = OBJ_nid2ln(n);

		if ((sn == NULL || !certmap_ascii_casestr(sn, name)) &&
		    (ln == NULL || !certmap_ascii_casestr(ln, name)))
			continue;
		for (int other = n + 1; other < end; other++) {
			sn = OBJ_nid2sn(other);
			ln = OBJ_nid2ln(other);
			if ((sn != NULL && certmap_ascii_casestr(sn, name)) ||
			    (ln != NULL && certmap_ascii_casestr(ln, name)))
				return NULL; /* ambiguous */
		}
		nid = n;
	}
	return nid == NID_undef ? NULL : OBJ_nid2obj(nid);
}

/* numericoid = number 1*("." number), no leading zero (RFC 4512 §1.4);
 * OpenSSL alone would read "1..2" as 1.0.2.  s holds digits and dots. */
static bool certmap_is_numericoid(const char *s, size_t n)
{
	size_t arcs = 0, i = 0;

	if (n == 0 || s[n - 1] == '.')
		return false;
	while (i < n) {
		size_t start = i;

		while (i < n && s[i] != '.')
			i++;
		if (i == start || (s[start] == '0' && i - start > 1))
			return false;
		arcs++;
		i += i < n; /* the dot */
	}
	return arcs >= 2;
}

/* attributeType "=" at s[*pos]: keystring or numericoid (RFC 4514 §3).
 * Fills *oid_r (malloc'd DER content bytes). */
static const char *certmap_parse_type(const char *s, size_t len, size_t *pos,
				      unsigned char **oid_r, size_t *oid_len_r)
{
	char name[CERTMAP_TYPE_MAX + 1];
	size_t start = *pos, i = *pos, n;
	bool numeric = i < len && s[i] >= '0' && s[i] <= '9';
	ASN1_OBJECT *obj;

	while (i < len && s[i] != '=') {
		char c = s[i];
		bool ok;

		if (numeric)
			ok = (c >= '0' && c <= '9') || c == '.';
		else
			ok =
			    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (i > start && ((c >= '0' && c <= '9') || c == '-'));
		if (!ok)
			return "bad DN: an attribute type is a name or a "
			       "dotted OID followed by '='";
		i++;
	}
	n = i - start;
	if (i == len || n == 0)
		return "bad DN: expected TYPE=VALUE";
	if (n > CERTMAP_TYPE_MAX)
		return "bad DN: attribute type too long";
	if (numeric && !certmap_is_numericoid(s + start, n))
		return "bad DN: a dotted OID is numbers between dots";
	memcpy(name, s + start, n);
	name[n] = '\0';
	/* The lookups leave errors on the queue for the names they miss. */
	ERR_set_mark();
	obj = certmap_type_object(name);
	ERR_pop_to_mark();
	if (obj == NULL || OBJ_length(obj) == 0) {
		ASN1_OBJECT_free(obj);
		return "bad DN: unknown or ambiguous attribute type (a dotted "
		       "OID is always accepted)";
	}
	*oid_len_r = (size_t)OBJ_length(obj);
	*oid_r = (unsigned char *)xmemdup(OBJ_get0_data(obj), *oid_len_r);
	ASN1_OBJECT_free(obj); /* a no-op for OpenSSL's own objects */
	*pos = i + 1;
	return NULL;
}

/* attributeValue at s[*pos], up to an unescaped ',' or '+' or the end,
 * into out (room for len bytes); RFC 4514 §2.4 and §3. */
static const char *certmap_parse_value(const char *s, size_t len, size_t *pos,
				       unsigned char *out, size_t *out_len)
{
	size_t i = *pos, n = 0;
	bool raw_space = false; /* the last byte was an unescaped space */

	if (i < len && s[i] == '#')
		return "bad DN: #hex values are not supported, write the "
		       "value as a string (a leading '#' as \"\\#\")";
	if (i < len && s[i] == ' ')
		return "bad DN: a space around a value is written \"\\ \"";
	while (i < len && s[i] != ',' && s[i] != '+') {
		char c = s[i];
		int hi, lo;

		raw_space = c == ' ';
		if (c == '\\') {
			if (i + 1 == len)
				return "bad DN: '\\' at the end";
			if (i + 2 < len && (hi = certmap_hex(s[i + 1])) >= 0 &&
			    (lo = certmap_hex(s[i + 2])) >= 0) {
				unsigned char b = (unsigned char)(hi << 4 | lo);

				if (certmap_is_control(b))
					return "bad DN: \\XX makes a control "
					       "byte";
				out[n++] = b;
				i += 3;
				continue;
			}
			if (!certmap_in("\"+,;<>\\ #=", s[i + 1]))
				return "bad DN: '\\' before a byte that is "
				       "neither special nor a hex pair";
			out[n++] = (unsigned char)s[i + 1];
			i += 2;
			continue;
		}
		if (certmap_in("\";<>", c))
			return "bad DN: '\"', ';', '<' and '>' are escaped "
			       "with '\\'";
		out[n++] = (unsigned char)c;
		i++;
	}
	if (raw_space)
		return "bad DN: a space around a value is written \"\\ \"";
	*pos = i;
	*out_len = n;
	return NULL;
}

/* s[0..len) into dn; the AVAs decoded in one scratch buffer, each kept
 * at its own size. */
static const char *certmap_parse_dn(const char *s, size_t len,
				    struct certmap_dn *dn)
{
	struct certmap_rdn *rdn = certmap_dn_add_rdn(dn);
	unsigned char *scratch = xmalloc(len);
	const char *why = NULL;
	size_t i = 0;

	while (why == NULL) {
		unsigned char *oid;
		size_t oid_len, value_len;

		if (rdn->navas == CERTMAP_RDN_AVAS_MAX) {
			why = "bad DN: too many values in one RDN";
			break;
		}
		why = certmap_parse_type(s, len, &i, &oid, &oid_len);
		if (why != NULL)
			break;
		why = certmap_parse_value(s, len, &i, scratch, &value_len);
		if (why != NULL) {
			free(oid);
			break;
		}
		certmap_rdn_add_ava(
		    rdn, oid, oid_len,
		    (unsigned char *)xmemdup(scratch, value_len), value_len);
		if (i == len)
			break;
		if (s[i++] == '+')
			continue; /* the next AVA of the same RDN */
		if (dn->nrdns == CERTMAP_DN_RDNS_MAX)
			why = "bad DN: too many RDNs";
		else
			rdn = certmap_dn_add_rdn(dn);
	}
	free(scratch);
	return why;
}

/* rfc822Name and dNSName are IA5Strings (RFC 5280 §4.2.1.6): ASCII, and
 * an address needs its '@'. */
static const char *certmap_parse_san(struct certmap_rule *rule, const char *s,
				     size_t len)
{
	const char *at = NULL;

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80)
			return "a subjectAltName is ASCII";
		if (certmap_is_blank(s[i]))
			return "blank inside the value";
		if (s[i] == '@')
			at = s + i;
	}
	if (rule->kind == CERTMAP_SAN_EMAIL &&
	    (at == NULL || at == s || at == s + len - 1))
		return "an address is local@domain";
	rule->name = xmemdup(s, len);
	rule->name_len = len;
	return NULL;
}

/* One line without its LF; returns NULL (rule filled, or *skip_r for
 * blank and comment lines) or what is wrong. */
static const char *certmap_parse_line(const char *s, size_t len,
				      struct certmap_rule *rule, bool *skip_r,
				      char *error, size_t error_size)
{
	const char *value, *login;
	size_t value_len, login_len, kind_len = 0;
	enum certmap_kind kind;
	const char *why;
	int c;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	while (len > 0 && certmap_is_blank(s[0]))
		s++, len--;
	while (len > 0 && certmap_is_blank(s[len - 1]))
		len--;
	*skip_r = len == 0 || s[0] == '#';
	if (*skip_r)
		return NULL;

	for (kind = 0; kind < CERTMAP_KIND_COUNT; kind++) {
		kind_len = strlen(certmap_kind_prefix[kind]);
		if (len >= kind_len &&
		    memcmp(s, certmap_kind_prefix[kind], kind_len) == 0)
			break;
	}
	if (kind == CERTMAP_KIND_COUNT) {
		char quoted[SANITIZE_BUFSIZE];
		size_t n = 0;

		while (n < len && n < 32 && s[n] != ':' &&
		       !certmap_is_blank(s[n]))
			n++;
		snprintf(error, error_size,
			 "unknown rule kind \"%s\" (sha256, subject, "
			 "san-email, san-dns)",
			 sanitize(quoted, sizeof(quoted), s, n));
		return error;
	}
	login = s + len;
	while (login > s + kind_len && !certmap_is_blank(login[-1]))
		login--;
	login_len = (size_t)(s + len - login);
	if (login == s + kind_len)
		return "missing login: KIND:VALUE LOGIN";
	value = s + kind_len;
	value_len = (size_t)(login - value);
	while (value_len > 0 && certmap_is_blank(value[value_len - 1]))
		value_len--;
	if (value_len == 0)
		return "empty value";
	if ((c = certmap_find_control(value, value_len)) >= 0) {
		snprintf(error, error_size, "control byte 0x%02x in the value",
			 c);
		return error;
	}
	if (login_len > CERTMAP_LOGIN_MAX) {
		snprintf(error, error_size, "login longer than %d bytes",
			 CERTMAP_LOGIN_MAX);
		return error;
	}
	if ((c = certmap_find_control(login, login_len)) >= 0) {
		snprintf(error, error_size, "control byte 0x%02x in the login",
			 c);
		return error;
	}

	rule->kind = kind;
	switch (kind) {
	case CERTMAP_SHA256:
		why = certmap_parse_sha256(value, value_len, rule->sha256);
		break;
	case CERTMAP_SUBJECT:
		why = certmap_parse_dn(value, value_len, &rule->dn);
		break;
	default:
		why = certmap_parse_san(rule, value, value_len);
		break;
	}
	if (why != NULL)
		return why;
	rule->login = xmemdup(login, login_len);
	return NULL;
}

static void certmap_rule_finish(struct certmap_rule *rule)
{
	free(rule->login);
	free(rule->name);
	certmap_dn_finish(&rule->dn);
}

struct certmap *certmap_parse(const char *path, const char *text, size_t len,
			      struct config_errors *errors)
{
	struct certmap *m = xcalloc(1, sizeof(*m));
	size_t pos = 0, alloc = 0, nerrors = errors->count;
	int lineno = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		struct certmap_rule rule;
		char error[256];
		const char *why;
		bool skip;

		lineno++; /* CERTMAP_FILE_MAX keeps it an int */
		memset(&rule, 0, sizeof(rule));
		why = certmap_parse_line(text + pos, end - pos, &rule, &skip,
					 error, sizeof(error));
		pos = end + 1;
		if (why != NULL) {
			config_errors_add(errors, path, lineno, "%s", why);
			certmap_rule_finish(&rule);
			continue;
		}
		if (skip)
			continue;
		rule.line = lineno;
		if (m->count == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			m->rules =
			    xreallocarray(m->rules, alloc, sizeof(m->rules[0]));
		}
		m->rules[m->count++] = rule;
	}
	if (errors->count > nerrors) {
		certmap_free(m);
		return NULL;
	}
	return m;
}

struct certmap *certmap_read(const char *path, struct config_errors *errors)
{
	struct certmap *m;
	char *text = NULL;
	long len = config_file_read(path, CERTMAP_FILE_MAX, errors, &text);

	if (len < 0)
		return NULL;
	m = certmap_parse(path, text, (size_t)len, errors);
	free(text);
	return m;
}

void certmap_free(struct certmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->count; i++)
		certmap_rule_finish(&m->rules[i]);
	free(m->rules);
	free(m);
}

size_t certmap_count(const struct certmap *m)
{
	return m != NULL ? m->count : 0;
}

/* ---- matching ---- */

/* What the rules compare, taken from the certificate when a rule first
 * needs it: 0 not yet, 1 usable, -1 never matches. */
struct certmap_peer {
	X509 *x;
	int digest_state;
	unsigned char digest[CERTMAP_SHA256_LEN];
	int subject_state;
	struct certmap_dn subject;
	int sans_state;
	GENERAL_NAMES *sans;
};

static bool certmap_peer_digest(struct certmap_peer *p)
{
	unsigned int len = 0;

	if (p->digest_state == 0) {
		/* Over i2d_X509(): the DER as sent in the handshake. */
		bool ok = X509_digest(p->x, EVP_sha256(), p->digest, &len) == 1;

		p->digest_state = ok && len == CERTMAP_SHA256_LEN ? 1 : -1;
	}
	return p->digest_state > 0;
}

/* The subject as a certmap_dn: entries with the same set number form one
 * RDN (as i2d encodes them), the last RDN first.  A value that is not a
 * valid string or holds a control byte (NUL included) makes the whole
 * subject unusable. */
static int certmap_subject_load(X509 *x, struct certmap_dn *dn)
{
	const X509_NAME *name = X509_get_subject_name(x);
	int count = name != NULL ? X509_NAME_entry_count(name) : 0;

	if (count <= 0)
		return -1; /* no rule has an empty DN */
	for (int i = count - 1; i >= 0; i--) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
		const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
		size_t oid_len = (size_t)OBJ_length(obj);
		unsigned char *utf8 = NULL;
		int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
		bool bad = n < 0 || utf8 == NULL || oid_len == 0 ||
			   certmap_find_control(utf8, (size_t)n) >= 0;
		bool new_rdn =
		    i == count - 1 ||
		    X509_NAME_ENTRY_set(e) !=
			X509_NAME_ENTRY_set(X509_NAME_get_entry(name, i + 1));
		struct certmap_rdn *rdn = NULL;

		/* Past the caps no rule can be equal: set aside. */
		if (!bad && new_rdn && dn->nrdns < CERTMAP_DN_RDNS_MAX)
			rdn = certmap_dn_add_rdn(dn);
		else if (!bad && !new_rdn)
			rdn = &dn->rdns[dn->nrdns - 1];
		if (rdn == NULL || rdn->navas == CERTMAP_RDN_AVAS_MAX) {
			OPENSSL_free(utf8);
			return -1;
		}
		certmap_rdn_add_ava(
		    rdn, (unsigned char *)xmemdup(OBJ_get0_data(obj), oid_len),
		    oid_len, (unsigned char *)xmemdup(utf8, (size_t)n),
		    (size_t)n);
		OPENSSL_free(utf8);
	}
	return 1;
}

static bool certmap_peer_subject(struct certmap_peer *p)
{
	if (p->subject_state == 0)
		p->subject_state = certmap_subject_load(p->x, &p->subject);
	return p->subject_state > 0;
}

static bool certmap_ava_equal(const struct certmap_ava *a,
			      const struct certmap_ava *b)
{
	return a->oid_len == b->oid_len &&
	       memcmp(a->oid, b->oid, a->oid_len) == 0 &&
	       a->value_len == b->value_len &&
	       memcmp(a->value, b->value, a->value_len) == 0;
}

/* An RDN is a set (X.501): the AVAs of a multi-valued one match in any
 * order (DER sorts them, a DN string need not), each used once. */
static bool certmap_rdn_equal(const struct certmap_rdn *rule,
			      const struct certmap_rdn *cert)
{
	uint64_t used = 0;

	if (rule->navas != cert->navas)
		return false;
	for (size_t i = 0; i < rule->navas; i++) {
		size_t k = 0;

		while (k < cert->navas &&
		       (((used >> k) & 1) != 0 ||
			!certmap_ava_equal(&rule->avas[i], &cert->avas[k])))
			k++;
		if (k == cert->navas)
			return false;
		used |= (uint64_t)1 << k;
	}
	return true;
}

static bool certmap_dn_equal(const struct certmap_dn *rule,
			     const struct certmap_dn *cert)
{
	if (rule->nrdns != cert->nrdns)
		return false;
	for (size_t i = 0; i < rule->nrdns; i++)
		if (!certmap_rdn_equal(&rule->rdns[i], &cert->rdns[i]))
			return false;
	return true;
}

/* A dNSName: ASCII case-insensitive.  An rfc822Name: the local part
 * exact (RFC 5321 §2.4), the domain case-insensitive; the rule's last '@'
 * splits both, as the rule's domain has no '@' neither can the name's. */
static bool certmap_san_equal(const struct certmap_rule *rule,
			      const unsigned char *name, size_t len)
{
	size_t local = 0;

	if (len != rule->name_len)
		return false;
	if (rule->kind == CERTMAP_SAN_EMAIL) {
		local = (size_t)((const char *)memrchr(rule->name, '@', len) -
				 rule->name);
		if (memcmp(rule->name, name, local) != 0)
			return false;
	}
	return certmap_ascii_caseequal(rule->name + local, name + local,
				       len - local);
}

static bool certmap_peer_san(struct certmap_peer *p,
			     const struct certmap_rule *rule)
{
	int want = rule->kind == CERTMAP_SAN_EMAIL ? GEN_EMAIL : GEN_DNS;

	if (p->sans_state == 0) {
		/* NULL when absent, and when the extension is repeated or
		 * does not decode: both never match. */
		p->sans =
		    X509_get_ext_d2i(p->x, NID_subject_alt_name, NULL, NULL);
		p->sans_state = p->sans != NULL ? 1 : -1;
	}
	for (int i = 0; p->sans_state > 0 && i < sk_GENERAL_NAME_num(p->sans);
	     i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(p->sans, i);
		const ASN1_IA5STRING *s;
		const unsigned char *data;
		size_t len;
		bool clean = true;

		if (gn->type != want)
			continue;
		s = want == GEN_EMAIL ? gn->d.rfc822Name : gn->d.dNSName;
		data = ASN1_STRING_get0_data(s);
		len = (size_t)ASN1_STRING_length(s);
		/* An IA5String is 7-bit: a control byte, NUL included, or
		 * a byte above 0x7f is a forged or broken name. */
		for (size_t k = 0; k < len && clean; k++)
			clean = !certmap_is_control(data[k]) && data[k] < 0x80;
		if (clean && certmap_san_equal(rule, data, len))
			return true;
	}
	return false;
}

const char *certmap_match(const struct certmap *m, X509 *leaf, int *line_r)
{
	struct certmap_peer peer;
	const struct certmap_rule *found = NULL;

	if (m == NULL || leaf == NULL)
		return NULL;
	memset(&peer, 0, sizeof(peer));
	peer.x = leaf;
	/* What fails below (a name that does not decode) leaves errors on
	 * the thread's queue, where the next SSL_get_error() of this
	 * connection would find them. */
	ERR_set_mark();
	for (size_t i = 0; i < m->count && found == NULL; i++) {
		const struct certmap_rule *rule = &m->rules[i];
		bool hit;

		switch (rule->kind) {
		case CERTMAP_SHA256:
			hit = certmap_peer_digest(&peer) &&
			      memcmp(peer.digest, rule->sha256,
				     CERTMAP_SHA256_LEN) == 0;
			break;
		case CERTMAP_SUBJECT:
			hit = certmap_peer_subject(&peer) &&
			      certmap_dn_equal(&rule->dn, &peer.subject);
			break;
		default:
			hit = certmap_peer_san(&peer, rule);
			break;
		}
		if (hit)
			found = rule;
	}
	certmap_dn_finish(&peer.subject);
	GENERAL_NAMES_free(peer.sans);
	ERR_pop_to_mark();
	if (found != NULL && line_r != NULL)
		*line_r = found->line;
	return found != NULL ? found->login : NULL;
}
