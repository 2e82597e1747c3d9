/*
 * log.h - one line per event on stderr, as key=value pairs:
 *
 *   ts=2026-11-25T12:00:00.123Z level=info sid=0f3a9c2e5d7b1a40 event=connect ip=...
 *
 * The level threshold is set once at start-up (and on reload) from
 * [server] log_level, on the main thread, and read by every event loop
 * (atomic); it is the one piece of process state outside the workers,
 * like Postfix's msg_verbose.  A line is one write(2), so lines from
 * several threads never interleave.  Values that come
 * from a peer must go through sanitize() (util.h) and be quoted by the
 * caller.
 */
#ifndef SUBMITPROXY_LOG_H
#define SUBMITPROXY_LOG_H

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

const char *log_level_name(enum log_level level);

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* sid may be NULL for process-wide events. */
__attribute__((format(printf, 3, 4))) void
log_event(enum log_level level, const char *sid, const char *fmt, ...);

#define log_error(sid, ...) log_event(LOG_LEVEL_ERROR, sid, __VA_ARGS__)
#define log_warn(sid, ...) log_event(LOG_LEVEL_WARN, sid, __VA_ARGS__)
#define log_info(sid, ...) log_event(LOG_LEVEL_INFO, sid, __VA_ARGS__)
#define log_debug(sid, ...) log_event(LOG_LEVEL_DEBUG, sid, __VA_ARGS__)

#endif
