/*
 * libFuzzer harness for the HTTP router: the path matcher, the percent
 * decoder and the query parser, fed whatever a client could put in a
 * request line. The first input byte picks the method.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_methods[] = {
	"GET",
	"HEAD",
	"POST",
	"PUT",
	"PATCH",
	"DELETE",
	"OPTIONS",
	"TRACE",
};

static const char *const fuzz_patterns[] = {
	"/",
	"/healthz",
	"/v1/customers",
	"/v1/customers/{id}",
	"/v1/customers/export",
	"/v1/users/{id}/devices",
	"/v1/users/{uid}/devices/{did}",
	"/v1/verifications/{id}/watch",
	"/v1/{a}/x/{b}",
	"/v1/x/{c}/{d}",
};

/* The router every input is matched against, built once. */
static struct http_router *
fuzz_router(void)
{
	static struct http_router *r;
	const char *cause;
	size_t i, k;

	if (r != NULL)
		return r;
	r = http_router_new();
	if (r == NULL)
		abort();
	for (i = 0; i < sizeof(fuzz_patterns) / sizeof(fuzz_patterns[0]); i++) {
		for (k = 0; k < 3; k++) {
			if (http_router_add(r, fuzz_methods[k * 2],
			        fuzz_patterns[i], fuzz_patterns[i],
			        &cause) != 0)
				abort();
		}
	}
	return r;
}

/* Every string a result points at must be readable and terminated. */
static size_t
fuzz_touch(const struct http_router_match *m)
{
	size_t sum = strlen(m->allow), i;

	if (m->pattern != NULL)
		sum += strlen(m->pattern);
	for (i = 0; i < m->nparams; i++)
		sum += strlen(m->names[i]) + strlen(m->values[i]);
	return sum;
}

/* One input: decode it, match it as a path, parse its query. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_router_match m;
	struct http_router_pair *pairs;
	const char *method;
	char *text, *query, *out;
	size_t n, i;
	volatile size_t sink = 0;
	long dec;

	if (size == 0)
		return 0;
	method = fuzz_methods[data[0] % 8];
	text = malloc(size);
	out = malloc(size);
	if (text == NULL || out == NULL)
		abort();
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	/* Decode the raw bytes, NULs and all, both ways. */
	dec = http_router_decode(
	    (const char *)data + 1, size - 1, data[0] & 1, out);
	if (dec >= 0 && (size_t)dec != strlen(out))
		abort();

	query = strchr(text, '?');
	if (query != NULL)
		*query++ = '\0';
	if (http_router_match(fuzz_router(), method, text, &m) ==
	        HTTP_ROUTER_FOUND &&
	    (m.data == NULL || strcmp(m.data, m.pattern) != 0))
		abort();
	sink += fuzz_touch(&m);
	http_router_match_clear(&m);

	if (http_router_query_parse(query, &pairs, &n) == 0) {
		for (i = 0; i < n; i++)
			sink += strlen(pairs[i].name) + strlen(pairs[i].value);
		http_router_query_free(pairs, n);
	}

	free(text);
	free(out);
	return (int)(sink & 0);
}
