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
struct config_cidr;
struct sockaddr;

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

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (a /32 or /128).
 * Bits past the prefix must be zero ("10.1.2.3/8" is refused: it would
 * not mean what it looks like). */
int value_parse_cidr(const char *s, struct config_cidr *cidr_r);

/* Whether sa (AF_INET or AF_INET6) is inside c.  An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is the IPv4 address it carries. */
bool value_cidr_match(const struct config_cidr *c, const struct sockaddr *sa);

#endif
