/* backends.c - see backends.h */
#include "proxy/backends.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "config/config.h"

static const char *const backend_state_names[] = {
    [BACKEND_UNKNOWN] = "unknown",
    [BACKEND_UP] = "up",
    [BACKEND_DOWN] = "down",
};
static_assert(sizeof(backend_state_names) / sizeof(backend_state_names[0]) ==
		  BACKEND_STATE_COUNT,
	      "one name per backend state");
/* A list's backends are bits of a uint32_t (tried, due). */
static_assert(CONFIG_BACKENDS_MAX <= 32, "a backend list fits 32 bits");

struct backend_health {
	char *address;
	enum backend_state state;
	bool caps_known;
	struct ehlo_caps caps;
	uint64_t seen_ms;  /* the last success, session or probe */
	uint64_t retry_ms; /* down: when the next probe is due */
	bool probing;	   /* a probe is under way */
};

/* A few entries (CONFIG_BACKENDS_MAX): a list searched in order. */
struct backends {
	struct backend_health *items;
	size_t count;
};

const char *backend_state_name(enum backend_state state)
{
	return state < BACKEND_STATE_COUNT ? backend_state_names[state] : "?";
}

struct backends *backends_create(void)
{
	return xcalloc(1, sizeof(struct backends));
}

void backends_destroy(struct backends *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->count; i++)
		free(t->items[i].address);
	free(t->items);
	free(t);
}

static struct backend_health *backends_find(const struct backends *t,
					    const char *address)
{
	for (size_t i = 0; i < t->count; i++)
		/* NULL: moved by backends_configure(), under way. */
		if (t->items[i].address != NULL &&
		    strcmp(t->items[i].address, address) == 0)
			return &t->items[i];
	return NULL;
}

void backends_configure(struct backends *t, const struct config_backend *list,
			size_t n)
{
	struct backend_health *items = xcalloc(n, sizeof(*items));

	for (size_t i = 0; i < n; i++) {
		struct backend_health *old = backends_find(t, list[i].address);

		if (old != NULL) {
			items[i] = *old;
			old->address = NULL; /* moved */
		} else {
			items[i].address = xstrdup(list[i].address);
		}
	}
	for (size_t i = 0; i < t->count; i++)
		free(t->items[i].address);
	free(t->items);
	t->items = items;
	t->count = n;
}

size_t backends_count(const struct backends *t)
{
	return t->count;
}

const char *backends_entry(const struct backends *t, size_t i,
			   enum backend_state *state)
{
	if (i >= t->count)
		return NULL;
	*state = t->items[i].state;
	return t->items[i].address;
}

enum backend_state backends_state(const struct backends *t, const char *address)
{
	const struct backend_health *e = backends_find(t, address);

	return e != NULL ? e->state : BACKEND_UNKNOWN;
}

bool backends_up(struct backends *t, const char *address,
		 const struct ehlo_caps *caps, uint64_t now_ms)
{
	struct backend_health *e = backends_find(t, address);
	bool changed;

	if (e == NULL)
		return false;
	changed = e->state != BACKEND_UP;
	e->state = BACKEND_UP;
	e->caps = *caps;
	e->caps_known = true;
	e->seen_ms = now_ms;
	return changed;
}

bool backends_down(struct backends *t, const char *address, uint64_t now_ms,
		   uint64_t retry_ms)
{
	struct backend_health *e = backends_find(t, address);

	if (e == NULL || e->state == BACKEND_DOWN)
		return false;
	/* The capabilities stay: a backend that comes back is likely the
	 * same MTA, and with every backend down they are what is shown. */
	e->state = BACKEND_DOWN;
	e->retry_ms = now_ms + retry_ms;
	return true;
}

int backends_pick(const struct backends *t, const struct config_backend *list,
		  size_t n, uint32_t tried)
{
	int fallback = -1;

	assert(n <= 32);
	for (size_t i = 0; i < n; i++) {
		if (tried & (UINT32_C(1) << i))
			continue;
		if (backends_state(t, list[i].address) != BACKEND_DOWN)
			return (int)i;
		if (fallback < 0)
			fallback = (int)i;
	}
	return fallback;
}

uint32_t backends_due(struct backends *t, const struct config_backend *list,
		      size_t n, uint64_t now_ms, uint64_t probe_interval_ms)
{
	uint32_t due = 0;

	assert(n <= 32);
	for (size_t i = 0; i < n; i++) {
		struct backend_health *e = backends_find(t, list[i].address);
		bool now = false;

		if (e == NULL || e->probing)
			continue;
		switch (e->state) {
		case BACKEND_UNKNOWN:
			now = true;
			break;
		case BACKEND_DOWN:
			now = now_ms >= e->retry_ms;
			break;
		case BACKEND_UP:
			/* Loops read the clock at other moments: a success
			 * a little in this reading's future is fresh. */
			now = now_ms >= e->seen_ms &&
			      now_ms - e->seen_ms >= probe_interval_ms;
			break;
		case BACKEND_STATE_COUNT:
			break;
		}
		if (now) {
			e->probing = true;
			due |= UINT32_C(1) << i;
		}
	}
	return due;
}

void backends_probe_done(struct backends *t, const char *address,
			 uint64_t now_ms, uint64_t retry_ms)
{
	struct backend_health *e = backends_find(t, address);

	if (e == NULL)
		return;
	e->probing = false;
	if (e->state == BACKEND_DOWN)
		e->retry_ms = now_ms + retry_ms;
}

/* Intersects the known capabilities of the backends of list that are up
 * (up_only) or of all of them; false if none was known. */
static bool backends_caps_of(const struct backends *t,
			     const struct config_backend *list, size_t n,
			     bool up_only, struct ehlo_caps *out)
{
	bool any = false;

	for (size_t i = 0; i < n; i++) {
		const struct backend_health *e =
		    backends_find(t, list[i].address);

		if (e == NULL || !e->caps_known ||
		    (up_only && e->state != BACKEND_UP))
			continue;
		if (!any)
			*out = e->caps;
		else
			backends_caps_intersect(out, &e->caps);
		any = true;
	}
	return any;
}

bool backends_caps(const struct backends *t, const struct config_backend *list,
		   size_t n, struct ehlo_caps *out)
{
	return backends_caps_of(t, list, n, true, out) ||
	       backends_caps_of(t, list, n, false, out);
}

/* RFC 2852 §4: the min-by-time a DELIVERBY argument names, 0 for none
 * (the argument is kept only when it is digits, at most 9 of them). */
static unsigned long deliverby_min(const char *arg)
{
	return arg[0] != '\0' ? strtoul(arg, NULL, 10) : 0;
}

void backends_caps_intersect(struct ehlo_caps *acc,
			     const struct ehlo_caps *caps)
{
	acc->caps &= caps->caps;
	acc->xclient_attrs &= caps->xclient_attrs;
	if (!(acc->caps & EHLO_CAP_SIZE)) {
		acc->size = 0;
		acc->size_has_value = false;
	} else if (caps->size != 0 &&
		   (acc->size == 0 || caps->size < acc->size)) {
		/* RFC 1870 §4: 0 is no fixed limit, so any limit is smaller. */
		acc->size = caps->size;
		acc->size_has_value = true;
	}
	if (!(acc->caps & EHLO_CAP_DELIVERBY))
		acc->deliverby[0] = '\0';
	else if (deliverby_min(caps->deliverby) > deliverby_min(acc->deliverby))
		memcpy(acc->deliverby, caps->deliverby, sizeof(acc->deliverby));
}
