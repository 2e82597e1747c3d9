/* test_addrtable.c - per-address counters. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/addrtable.h"
#include "common/util.h"
#include "tests/unit/tap.h"

static struct addrkey key4(const char *ip)
{
	struct sockaddr_in sin;
	struct addrkey k;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	addrkey_from_sockaddr(&k, (struct sockaddr *)&sin);
	return k;
}

static struct addrkey key6(const char *ip)
{
	struct sockaddr_in6 sin6;
	struct addrkey k;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &sin6.sin6_addr);
	addrkey_from_sockaddr(&k, (struct sockaddr *)&sin6);
	return k;
}

int main(void)
{
	struct addrtable *t = addrtable_create(12345);
	struct addrkey a = key4("192.0.2.1"), b = key4("192.0.2.2");
	struct addrkey mapped = key6("::ffff:192.0.2.1");
	struct addr_entry *e;
	char text[SANITIZE_BUFSIZE];

	e = addrtable_get(t, &a);
	e->connections = 2;
	TAP_OK(addrtable_get(t, &a) == e, "same address, same entry");
	TAP_OK(addrtable_find(t, &b) == NULL, "other address not found");
	TAP_OK(addrtable_find(t, &mapped) == e,
	       "v4-mapped IPv6 counts as its IPv4 address");
	e->connections = 0;
	addrtable_release(t, e);
	TAP_OK(addrtable_find(t, &a) == NULL,
	       "entry freed when counts reach 0");

	/* Grow past the initial bucket count and find everything again. */
	for (unsigned i = 0; i < 5000; i++) {
		struct addrkey k;

		memset(&k, 0, sizeof(k));
		k.family = AF_INET6;
		memcpy(k.bytes, &i, sizeof(i));
		addrtable_get(t, &k)->connections = i + 1;
	}
	{
		int all = 1;

		for (unsigned i = 0; i < 5000; i++) {
			struct addrkey k;

			memset(&k, 0, sizeof(k));
			k.family = AF_INET6;
			memcpy(k.bytes, &i, sizeof(i));
			e = addrtable_find(t, &k);
			if (e == NULL || e->connections != i + 1)
				all = 0;
		}
		TAP_OK(all, "5000 entries survive growth");
		TAP_EQ_INT(addrtable_count(t), 5000, "count");
	}
	addrtable_destroy(t);

	TAP_EQ_STR(sanitize(text, sizeof(text), "ok \"q\"\r\n\x01", 9),
		   "ok \\x22q\\x22\\x0d\\x0a\\x01", "sanitize escapes");
	{
		char big[400];

		memset(big, 'a', sizeof(big));
		sanitize(text, sizeof(text), big, sizeof(big));
		TAP_EQ_INT(strlen(text), SANITIZE_MAX + 3,
			   "sanitize truncates with ...");
	}
	return tap_done();
}
