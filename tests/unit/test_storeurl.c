/*
 * test_storeurl.c - the [policy] store value: memory, redis:// and
 * redis+unix:// URLs with their defaults, %-escapes, what is refused, the
 * password never shown, and when two stores are the same.
 */
#include <string.h>

#include "config/config.h"
#include "config/storeurl.h"
#include "tests/unit/tap.h"

static void test_memory(void)
{
	struct config_store st;
	const char *why = NULL;

	TAP_EQ_INT(storeurl_parse("memory", &st, &why), 0, "memory");
	TAP_EQ_INT(st.kind, STORE_MEMORY, "is the in-process store");
	storeurl_free(&st);
	TAP_EQ_INT(storeurl_parse("MEMORY", &st, &why), 0,
		   "in any case");
	storeurl_free(&st);
}

static void test_tcp(void)
{
	struct config_store st;
	const char *why = NULL;

	TAP_EQ_INT(storeurl_parse("redis://127.0.0.1", &st, &why), 0,
		   "redis://IP");
	TAP_EQ_STR(st.tcp.text, "127.0.0.1:6379", "port 6379 by default");
	TAP_EQ_INT(st.db, 0, "database 0 by default");
	TAP_OK(st.password == NULL && st.username == NULL, "no AUTH");
	TAP_EQ_STR(st.display, "redis://127.0.0.1:6379/0", "shown whole");
	storeurl_free(&st);

	TAP_EQ_INT(storeurl_parse("redis://:s%40cr%3At@[::1]:6380/3", &st,
				  &why),
		   0, "password, IPv6, port, db");
	TAP_EQ_STR(st.tcp.text, "[::1]:6380", "the IPv6 address and port");
	TAP_EQ_STR(st.password, "s@cr:t", "%%XX decoded in the password");
	TAP_EQ_INT(st.db, 3, "db 3");
	TAP_EQ_STR(st.display, "redis://:***@[::1]:6380/3",
		   "the password never shown");
	storeurl_free(&st);

	TAP_EQ_INT(storeurl_parse("redis://proxy:pw@localhost:7000/", &st,
				  &why),
		   0, "user:password, localhost, trailing /");
	TAP_EQ_STR(st.username, "proxy", "the ACL user");
	TAP_EQ_STR(st.tcp.text, "127.0.0.1:7000", "localhost is 127.0.0.1");
	TAP_EQ_STR(st.display, "redis://proxy:***@127.0.0.1:7000/0",
		   "the user shown, not the password");
	storeurl_free(&st);
}

static void test_unix(void)
{
	struct config_store st;
	const char *why = NULL;

	TAP_EQ_INT(storeurl_parse("redis+unix:///run/redis/redis.sock?db=2",
				  &st, &why),
		   0, "redis+unix with ?db=");
	TAP_EQ_STR(st.unix_path, "/run/redis/redis.sock", "the path");
	TAP_EQ_INT(st.db, 2, "db 2");
	TAP_EQ_STR(st.display, "redis+unix:///run/redis/redis.sock?db=2",
		   "shown with its database");
	storeurl_free(&st);
	TAP_EQ_INT(storeurl_parse("redis+unix://:pw@/tmp/r.sock", &st, &why),
		   0, "a password before the path");
	TAP_EQ_STR(st.password, "pw", "its password");
	storeurl_free(&st);
}

static void test_refused(void)
{
	static const char *const bad[] = {
	    "",
	    "redis",
	    "rediss://127.0.0.1",		    /* TLS: not offered */
	    "redis://redis.example.com:6379",    /* a name: would block */
	    "redis://127.0.0.1:0",
	    "redis://127.0.0.1:65536",
	    "redis://127.0.0.1:6379/x",
	    "redis://127.0.0.1:6379/70000",
	    "redis://pw@127.0.0.1",		    /* no ':' before the '@' */
	    "redis://:@127.0.0.1",		    /* empty password */
	    "redis://:%zz@127.0.0.1",	    /* bad escape */
	    "redis://:%0d%0aFLUSHALL@127.0.0.1", /* CR LF in the password */
	    "redis://:a%00b@127.0.0.1",	    /* NUL */
	    "redis://:ab%4@127.0.0.1",	    /* a cut escape */
	    "redis://[::1",
	    "redis://127.0.0.1 ",
	    "redis+unix://relative/path",
	    "redis+unix:///tmp/r.sock?database=1",
	    "memory2",
	};
	struct config_store st;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;

		memset(&st, 0x5a, sizeof(st));
		TAP_OK(storeurl_parse(bad[i], &st, &why) < 0 && why != NULL &&
			   why[0] != '\0',
		       "refused with a reason: \"%s\"", bad[i]);
	}
}

static void test_same(void)
{
	struct config_store a, b;
	const char *why;

	storeurl_parse("redis://127.0.0.1/1", &a, &why);
	storeurl_parse("redis://127.0.0.1:6379/1", &b, &why);
	TAP_OK(storeurl_same(&a, &b), "the default port spelt out: same");
	storeurl_free(&b);
	storeurl_parse("redis://127.0.0.1:6379/2", &b, &why);
	TAP_OK(!storeurl_same(&a, &b), "another database: not the same");
	storeurl_free(&b);
	storeurl_parse("redis://:x@127.0.0.1/1", &b, &why);
	TAP_OK(!storeurl_same(&a, &b), "another password: not the same");
	storeurl_free(&b);
	storeurl_memory(&b);
	TAP_OK(!storeurl_same(&a, &b), "memory and Redis differ");
	storeurl_free(&a);
	storeurl_memory(&a);
	TAP_OK(storeurl_same(&a, &b), "memory is memory");
	storeurl_free(&a);
	storeurl_free(&b);
}

int main(void)
{
	test_memory();
	test_tcp();
	test_unix();
	test_refused();
	test_same();
	return tap_done();
}
