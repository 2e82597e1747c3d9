/*
 * checkbackend.h - `submitproxy --check-backend`: talk to each backend of
 * a configuration as the proxy would, and report what a client will see
 * and what may go wrong (proxy/checkreport.h judges and prints).
 *
 * A command-line tool, not part of the running proxy: blocking in
 * spirit, with non-blocking sockets under poll() deadlines
 * ([backend] connect_timeout for each connect, [backend] timeout for each
 * reply), no libuv, no listener, no auth helper, no privilege.  Nothing
 * is ever queued at a backend: MAIL FROM:<> is followed by RSET, and no
 * RCPT or DATA is sent.
 */
#ifndef SUBMITPROXY_CHECKBACKEND_H
#define SUBMITPROXY_CHECKBACKEND_H

#include <stdbool.h>
#include <stdio.h>

struct config;

/* Checks every backend of cfg in order and writes the report to out (as
 * one JSON object with json).  Returns the exit status: 0 all good, 1
 * warnings, 2 a backend the proxy cannot use. */
int check_backends_run(const struct config *cfg, bool json, FILE *out);

#endif
