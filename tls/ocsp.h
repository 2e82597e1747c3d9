/*
 * ocsp.h - OCSP stapling from a file ([tls] and [sni] ocsp_response): a
 * DER OCSP response that an outside job refreshes ("openssl ocsp ...
 * -respout FILE", as with haproxy), loaded with its context and on every
 * reload, never fetched by us.
 *
 * A response is kept only if it is a successful basic response whose
 * signature verifies against the certificate's issuer (or a responder it
 * delegated to) and that holds a status for the context's own certificate
 * (its CertID, from the leaf and its issuer in the chain), that status
 * "good", with a nextUpdate, and a thisUpdate not in the future (300 s of
 * clock skew allowed).  It is stapled when the client sends
 * status_request, and only while "now" is before its nextUpdate: once past
 * it the handshake goes on without a staple and one warning is logged for
 * that context ("event=ocsp state=stale", at load if the file is stale
 * already, else at the first handshake that asks after it went stale).
 * A certificate whose status in the response is not "good" is never
 * stapled.
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
 * and makes ctx staple it, replacing what an earlier call attached.
 * Returns 0 (a stale response too: kept, never sent, logged once), or -1
 * with *error_r (malloc'd, "FILE: why": unreadable, not DER, not
 * successful, issuer not in the chain, wrong certificate, bad signature,
 * not good, no nextUpdate, thisUpdate in the future) and ctx left without
 * stapling: the caller logs it and carries on, since a missing staple only
 * costs the client a lookup of its own. */
int tls_ocsp_attach(SSL_CTX *ctx, const char *file, char **error_r);

/* For "-t": the same checks, one line on out when good ("tls: FILE: OCSP
 * response status=good thisUpdate=TIME nextUpdate=TIME", ISO 8601 UTC),
 * one on err ("FILE: warning: ...") otherwise, stale included.  Logs
 * nothing and leaves ctx alone.  Returns 0 if good, -1 if not. */
int tls_ocsp_check(SSL_CTX *ctx, const char *file, FILE *out, FILE *err);

#endif
