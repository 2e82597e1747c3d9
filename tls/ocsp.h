/*
 * ocsp.h - OCSP stapling from a file ([tls] and [sni] ocsp_response): a
 * DER OCSP response that an outside job refreshes ("openssl ocsp ...
 * -respout FILE", as with haproxy), loaded with its context and on every
 * reload, never fetched by us.
 *
 * A response is kept only if it is a successful basic response whose
 * signature verifies against the certificate's issuer (or a responder it
 * delegated to) and that holds a single response for the context's own
 * certificate (its CertID, from the leaf and its issuer in the chain).
 * It is stapled when the client sends status_request, and only while
 * "now" is between its thisUpdate and nextUpdate: once past nextUpdate the
 * handshake goes on without a staple and one warning is logged for that
 * context.  A certificate whose status in the response is not "good"
 * is never stapled.
 *
 * Ownership: the loaded response belongs to the SSL_CTX it was attached
 * to (ex_data, freed with the context), so a connection still holding an
 * old context after a reload staples the old response safely.
 */
#ifndef SUBMITPROXY_OCSP_H
#define SUBMITPROXY_OCSP_H

#include <stdio.h>

#include <openssl/types.h>

/* Loads file for ctx's certificate (the chain and key already loaded)
 * and makes ctx staple it.  Returns 0, or -1 with *error_r (malloc'd,
 * "FILE: why": unreadable, not DER, not successful, wrong certificate,
 * bad signature, not good, expired) and ctx left without stapling: the
 * caller logs it and carries on, since a missing staple only costs the
 * client a lookup of its own. */
int tls_ocsp_attach(SSL_CTX *ctx, const char *file, char **error_r);

/* For "-t": the same checks, one line on out when good ("tls: FILE: OCSP
 * response status=good nextUpdate=..."), one on err ("FILE: warning: ...")
 * otherwise.  Returns 0 if good, -1 if not. */
int tls_ocsp_check(SSL_CTX *ctx, const char *file, FILE *out, FILE *err);

#endif
