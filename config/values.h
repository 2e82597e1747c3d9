/*
 * values.h - pure parsers for configuration values: durations, sizes,
 * booleans, bounded integers and socket addresses.  No I/O, no allocation;
 * each returns 0 on success or -EINVAL (-ERANGE for out-of-range numbers)
 * and leaves the output untouched on error.
 */
#ifndef SUBMITPROXY_VALUES_H
#define SUBMITPROXY_VALUES_H

#include <stdbool.h>
#include <stdint.h>

struct config_addr;

/* "30" (seconds), "500ms", "30s", "10m", "2h", "30d". */
int value_parse_duration_ms(const char *s, uint64_t *ms_r);

/* "2048" (bytes), "64K", "50M", "1G" (powers of 1024, either case). */
int value_parse_size(const char *s, uint64_t *bytes_r);

/* yes/no, true/false, on/off, 1/0 (case-insensitive). */
int value_parse_bool(const char *s, bool *b_r);

/* Decimal integer within [min, max]. */
int value_parse_uint32(const char *s, uint32_t min, uint32_t max, uint32_t *u_r);

/* "1.2.3.4:25" or "[::1]:25"; port 1-65535; fills ss, len and text. */
int value_parse_sockaddr(const char *s, struct config_addr *addr_r);

#endif
