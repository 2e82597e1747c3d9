/*
 * certmap.h - [tls] client_cert_map: which login a verified client
 * certificate is (AUTH EXTERNAL, certificate_login = implicit).  Pure: a
 * parser over the file's text and a matcher over an X509; no I/O besides
 * certmap_read(), no libuv.
 *
 * The file: one rule per line, first match wins, "#" starts a comment
 * line (a whole line only), blank lines are ignored, blanks around a line
 * and a CR before its LF too:
 *
 *   sha256:<hex fingerprint> <login>   the SHA-256 of the DER certificate,
 *                                      64 hex digits, ":" between pairs
 *                                      allowed, any case
 *   subject:<RFC 4514 DN> <login>      the subject, as
 *                                      "openssl x509 -noout -subject
 *                                      -nameopt RFC2253" prints it
 *   san-email:<address> <login>        an rfc822Name subjectAltName (the
 *                                      local part exact, the domain ASCII
 *                                      case-insensitive)
 *   san-dns:<name> <login>             a dNSName subjectAltName (ASCII
 *                                      case-insensitive, no wildcards:
 *                                      "*" is compared as a byte)
 *
 * The login is the last blank-separated word of the line (a DN may hold
 * blanks): 1 to 256 bytes, no control byte (bytes above 0x7f, such as
 * UTF-8, pass as they are).
 *
 * subject: the DN is most specific RDN first (RFC 4514 §2.1, the reverse
 * of the certificate's order) and must equal the whole subject: as many
 * RDNs, as many values in each, attribute types equal by OID (a name any
 * case: CN, O, OU, C, L, ST, DC, UID, emailAddress, serialNumber, ...; the
 * RFC 4514 §3 names first, so "uid" is UID; or a dotted OID), values
 * compared exactly, case-sensitive, as UTF-8 bytes.  The values of a
 * multi-valued RDN ("OU=a+UID=b") match in any order.  Escapes as RFC 4514
 * §2.4: \\ \, \+ \" \; \< \> \= \# ("\ " for a space that starts
 * or ends a value) and \XX hex pairs (OpenSSL prints UTF-8 bytes so); a
 * \XX making a control byte is refused, and so is a "#hex" value (what
 * OpenSSL prints for a type it has no name for): write it as a string.
 *
 * Distrust of the certificate (the CVE-2009-4565 class): a field with a
 * NUL or any other control byte never matches (a subject with one such
 * value matches no subject rule; a subjectAltName entry with one, or with
 * a byte above 0x7f, no san rule), and fields compare over their whole
 * length, never up to a NUL.
 *
 * Errors: every bad line of the file is reported, with its line: unknown
 * kind, missing login, a fingerprint not 32 bytes of hex, bad DN syntax or
 * an unknown attribute type, empty value, a control byte in the value or
 * the login, a login too long, a subjectAltName that is not ASCII or holds
 * a blank, an address without local@domain.  A rule repeated is accepted
 * (the first wins).
 *
 * Ownership: certmap_parse()/certmap_read() return a map the caller frees
 * with certmap_free() (NULL is a no-op).  A map is never changed after
 * parsing, so several threads may match against it at once.
 */
#ifndef SUBMITPROXY_CERTMAP_H
#define SUBMITPROXY_CERTMAP_H

#include <stddef.h>

#include <openssl/types.h>

struct certmap;
struct config_errors;

#define CERTMAP_FILE_MAX (4u << 20) /* bytes */
#define CERTMAP_LOGIN_MAX 256

/* Parses text[0..len) (path for the error records).  Returns the map, or
 * NULL after appending every problem ("FILE:LINE: ...") to *errors. */
struct certmap *certmap_parse(const char *path, const char *text, size_t len,
			      struct config_errors *errors);

/* Reads path (config_file_read(), at most CERTMAP_FILE_MAX) and parses
 * it. */
struct certmap *certmap_read(const char *path, struct config_errors *errors);

void certmap_free(struct certmap *m);

/* Number of rules (for "-t" and the reload log). */
size_t certmap_count(const struct certmap *m);

/* The login of the first rule that matches leaf, or NULL if none does;
 * *line_r (may be NULL) gets that rule's line.  The string lives as long
 * as the map. */
const char *certmap_match(const struct certmap *m, X509 *leaf, int *line_r);

#endif
