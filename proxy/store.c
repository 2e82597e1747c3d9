/* store.c - see store.h */
#include "proxy/store.h"

#include <string.h>

int store_key(struct store_op *op, const char *prefix, const char *bytes,
	      size_t bytes_len)
{
	size_t plen = strlen(prefix);

	if (plen > sizeof(op->key) || bytes_len > sizeof(op->key) - plen)
		return -1;
	memcpy(op->key, prefix, plen);
	if (bytes_len > 0)
		memcpy(op->key + plen, bytes, bytes_len);
	op->key_len = plen + bytes_len;
	return 0;
}
