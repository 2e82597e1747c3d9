/*
 * certmap.h - [tls] client_cert_map: which login a verified client
 * certificate is (AUTH EXTERNAL, certificate_login = implicit).  Pure: a
 * parser over the file's text and a matcher over an X509; no I/O besides
 * certmap_read(), no libuv.
 *
 * The file: one rule per line, first match wins, "#" starts a comment
 * line, blank lines are ignored:
 *
 *   sha256:<hex fingerprint> <login>   the SHA-256 of the DER certificate,
 *                                      64 hex digits, ":" between pairs
 *                                      allowed, any case
 *   subject:<RFC 4514 DN> <login>      the subject, as
 *                                      "openssl x509 -noout -subject
 *                                      -nameopt RFC2253" prints it
 *   san-email:<address> <login>        an rfc822Name subjectAltName
 *   san-dns:<name> <login>             a dNSName subjectAltName (ASCII
 *                                      case-insensitive, no wildcards)
 *
 * The login is the last blank-separated word of the line (a DN may hold
 * blanks): printable ASCII or UTF-8, no control byte, at most 256 bytes.
 * Distrust of the certificate (the CVE-2009-4565 class): a field with a
 * NUL or any other control byte never matches, and fields compare over
 * their whole length, never up to a NUL.
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
