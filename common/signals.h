/*
 * signals.h - the signals of the process split: the control loop of the
 * network process handles them (stop, reload), the auth helper forwards
 * them, and every other thread blocks them.
 */
#ifndef SUBMITPROXY_SIGNALS_H
#define SUBMITPROXY_SIGNALS_H

#include <signal.h>

/* Fills set with SIGTERM, SIGINT and SIGHUP. */
void control_signals(sigset_t *set);

#endif
