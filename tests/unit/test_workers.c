/*
 * test_workers.c - what lets [server] workers = N run N event loops: the
 * acceptor's choice of worker, and the state the loops share
 * (proxy/shared.h) under real concurrency, several threads at once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "proxy/sendermap.h"
#include "proxy/shared.h"
#include "proxy/worker.h"
#include "tests/unit/tap.h"

#define THREADS 4
#define ROUNDS	20000

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

/* ---- worker_pick ---- */

static void test_pick(void)
{
	unsigned loads[4] = {0, 0, 0, 0};
	size_t next = 0, seen[4] = {0, 0, 0, 0};

	for (int i = 0; i < 8; i++)
		seen[worker_pick(loads, 4, &next)]++;
	TAP_OK(seen[0] == 2 && seen[1] == 2 && seen[2] == 2 && seen[3] == 2,
	       "equal loads: the workers take turns (%zu %zu %zu %zu)", seen[0],
	       seen[1], seen[2], seen[3]);

	loads[0] = 5;
	loads[1] = 3;
	loads[2] = 1;
	loads[3] = 4;
	next = 0;
	TAP_EQ_INT(worker_pick(loads, 4, &next), 2,
		   "the least-loaded worker is chosen");
	TAP_EQ_INT(next, 3, "the turn moves past the choice");

	loads[0] = 2;
	loads[1] = 1;
	loads[2] = 7;
	loads[3] = 1;
	next = 2;
	TAP_EQ_INT(worker_pick(loads, 4, &next), 3,
		   "of two equally least-loaded, the first from the turn on");
	TAP_EQ_INT(worker_pick(loads, 4, &next), 1,
		   "and the other one next time");

	next = 0;
	loads[0] = 100;
	TAP_EQ_INT(worker_pick(loads, 1, &next), 0, "one worker takes all");

	{
		/* A burst of hand-overs, the load counted as each is made
		 * (as worker_post_connection does): even spread. */
		unsigned l[3] = {0, 0, 0};

		next = 0;
		for (int i = 0; i < 30; i++)
			l[worker_pick(l, 3, &next)]++;
		TAP_OK(l[0] == 10 && l[1] == 10 && l[2] == 10,
		       "a burst of 30 spreads 10/10/10 over 3 workers "
		       "(%u %u %u)",
		       l[0], l[1], l[2]);
	}
}

/* ---- the shared address table under several threads ---- */

struct hammer {
	struct shared *sh;
	struct addrkey key;
	uint32_t *counts; /* count_r of every connect, this thread's */
	uint64_t *sids;
	pthread_barrier_t *all_held;
};

/* Every thread connects ROUNDS times from the same address, holding all
 * of them until every thread has, then lets them all go: without the
 * lock, increments are lost and counts repeat. */
static void *hammer_connect(void *arg)
{
	struct hammer *h = arg;
	struct addr_entry **held = calloc(ROUNDS, sizeof(*held));

	for (int i = 0; i < ROUNDS; i++) {
		held[i] = shared_addr_connect(h->sh, &h->key, &h->counts[i]);
		h->sids[i] = shared_next_sid(h->sh);
	}
	pthread_barrier_wait(h->all_held);
	for (int i = 0; i < ROUNDS; i++)
		shared_addr_disconnect(h->sh, held[i]);
	free(held);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_shared_counts(void)
{
	struct shared sh;
	struct hammer h[THREADS];
	pthread_t t[THREADS];
	uint32_t *all = calloc(THREADS * ROUNDS, sizeof(*all));
	uint64_t *sids = calloc(THREADS * ROUNDS, sizeof(*sids));
	bool each_once = true, unique = true;
	pthread_barrier_t all_held;

	pthread_barrier_init(&all_held, NULL, THREADS);
	shared_init(&sh, 1000, 42);
	for (int i = 0; i < THREADS; i++) {
		h[i].sh = &sh;
		h[i].key = key4("192.0.2.7");
		h[i].counts = all + (size_t)i * ROUNDS;
		h[i].sids = sids + (size_t)i * ROUNDS;
		h[i].all_held = &all_held;
		pthread_create(&t[i], NULL, hammer_connect, &h[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	/* Each connection saw its own place in line: 1..N, each once. */
	qsort(all, THREADS * ROUNDS, sizeof(*all), cmp_u32);
	for (uint32_t i = 0; i < THREADS * ROUNDS; i++)
		each_once &= all[i] == i + 1;
	TAP_OK(each_once,
	       "%d threads x %d connections from one address: the counts "
	       "seen are 1..%d, each once",
	       THREADS, ROUNDS, THREADS * ROUNDS);
	TAP_EQ_INT(shared_addr_count(&sh), 0,
		   "all released: the entry is gone");
	qsort(sids, THREADS * ROUNDS, sizeof(*sids), cmp_u64);
	for (size_t i = 1; i < THREADS * ROUNDS; i++)
		unique &= sids[i] != sids[i - 1];
	TAP_OK(unique, "session ids from %d threads never repeat", THREADS);
	TAP_OK(sids[0] == 1000, "session ids count up from the random base");
	shared_finish(&sh);
	pthread_barrier_destroy(&all_held);
	free(all);
	free(sids);
}

/* Two loops' sessions from one prefix share an entry; the policy
 * counters of one loop are the other's (one store for the process). */
static void test_shared_throttle(void)
{
	struct shared sh;
	struct addrkey k = key4("198.51.100.9");
	struct addr_entry *a, *b;
	struct store_op op;
	uint32_t n;

	shared_init(&sh, 0, 7);
	a = shared_addr_connect(&sh, &k, &n); /* a session on loop 0 */
	b = shared_addr_connect(&sh, &k, &n); /* another on loop 1 */
	TAP_OK(a == b, "two loops' sessions share one entry per address");
	TAP_EQ_INT(n, 2, "and the second sees the first");

	memset(&op, 0, sizeof(op));
	op.kind = STORE_ADD;
	op.by = 1;
	op.ttl_ms = 600000;
	store_key(&op, "af:", "198.51.100.9/32", 15);
	memstore_exec(sh.mem, &op, 1, 1000); /* loop 0 */
	memstore_exec(sh.mem, &op, 1, 1001); /* loop 1 */
	TAP_EQ_INT(op.value, 2, "failures on two loops add up in one store");
	/* Loops read the clock at different moments: one a little behind
	 * the one that opened the window still sees it. */
	op.kind = STORE_GET;
	memstore_exec(sh.mem, &op, 1, 999);
	TAP_EQ_INT(op.value, 2, "a clock slightly behind still reads it");

	shared_addr_disconnect(&sh, a);
	shared_addr_disconnect(&sh, b);
	TAP_EQ_INT(shared_addr_count(&sh), 0,
		   "an entry goes with its last connection");
	TAP_EQ_INT(memstore_sweep(sh.mem, 4000), 0,
		   "a sweep inside the window keeps the counter");
	TAP_EQ_INT(memstore_sweep(sh.mem, 1000 + 600000), 1,
		   "the sweep after the window frees it");
	shared_finish(&sh);
}

/* Two loops' view of two backends: what one marks, the other reads. */
static void test_shared_backends(void)
{
	struct config_backend list[2];
	struct config cfg;
	struct shared sh;
	struct ehlo_caps a, b, out;

	memset(list, 0, sizeof(list));
	list[0].address = "127.0.0.1:2525";
	list[1].address = "127.0.0.1:2526";
	memset(&cfg, 0, sizeof(cfg));
	cfg.backend.list = list;
	cfg.backend.count = 2;
	cfg.backend.retry_interval_ms = 30000;
	cfg.backend.probe_interval_ms = 600000;

	shared_init(&sh, 0, 1);
	shared_backends_configure(&sh, &cfg);
	TAP_OK(!shared_backend_caps(&sh, &cfg, &out),
	       "no backend capabilities before a probe or a session");
	TAP_EQ_INT(shared_backends_due(&sh, &cfg), 3,
		   "at start every backend is probed");
	TAP_EQ_INT(shared_backends_due(&sh, &cfg), 0,
		   "a probe under way is not started twice");
	memset(&a, 0, sizeof(a));
	a.caps = EHLO_CAP_PIPELINING | EHLO_CAP_8BITMIME | EHLO_CAP_SIZE;
	a.size = 1234;
	b = a;
	b.caps &= ~(unsigned)EHLO_CAP_8BITMIME;
	shared_backend_up(&sh, &list[0], &a, "probe", NULL);
	shared_backend_probe_done(&sh, &cfg, &list[0]);
	TAP_OK(shared_backend_caps(&sh, &cfg, &out) && out.caps == a.caps &&
		   out.size == 1234,
	       "every loop reads what the probe stored");
	shared_backend_up(&sh, &list[1], &b, "session", "0123456789abcdef");
	TAP_OK(shared_backend_caps(&sh, &cfg, &out) && out.caps == b.caps,
	       "with two up, the intersection");
	TAP_EQ_INT(shared_backend_pick(&sh, &cfg, 0), 0,
		   "a session takes the first");
	shared_backend_down(&sh, &cfg, &list[0], "connection refused",
			    "0123456789abcdef");
	TAP_EQ_INT(shared_backend_pick(&sh, &cfg, 0), 1,
		   "the first is down: the second");
	TAP_EQ_INT(shared_backend_pick(&sh, &cfg, 2), 0,
		   "the second tried: the first, down or not");
	TAP_EQ_INT(shared_backend_pick(&sh, &cfg, 3), -1, "all tried: none");
	shared_finish(&sh);
}

/* ---- references taken and dropped on several threads ---- */

struct refs_arg {
	struct config *cfg;
	struct sendermap *map;
};

static void *refs_churn(void *arg)
{
	struct refs_arg *r = arg;

	for (int i = 0; i < ROUNDS; i++) {
		config_ref(r->cfg);
		sendermap_ref(r->map);
		config_unref(r->cfg);
		sendermap_free(r->map);
	}
	/* Each thread was given one reference of each: the last thread to
	 * let go frees them (ASan/valgrind: no leak, no double free). */
	config_unref(r->cfg);
	sendermap_free(r->map);
	return NULL;
}

static void test_refs(const char *config_path)
{
	struct refs_arg r;
	pthread_t t[THREADS];
	static const char map_text[] = "alice alice@example.com\n";

	if (config_load(config_path, &r.cfg) < 0) {
		TAP_OK(0, "load %s", config_path);
		return;
	}
	r.map = sendermap_parse(map_text, sizeof(map_text) - 1, "map", stderr);
	TAP_EQ_INT(atomic_load(&r.cfg->refs), 1,
		   "config_load returns one reference, the loader's");
	for (int i = 1; i < THREADS; i++) {
		config_ref(r.cfg);
		sendermap_ref(r.map);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, refs_churn, &r);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	TAP_OK(1,
	       "configuration and sender map references from %d threads "
	       "(a leak or double free shows under ASan/valgrind)",
	       THREADS);
}

int main(int argc, char **argv)
{
	test_pick();
	test_shared_counts();
	test_shared_throttle();
	test_shared_backends();
	if (argc > 1)
		test_refs(argv[1]);
	return tap_done();
}
