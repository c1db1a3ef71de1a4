/*
 * The path router behind http.c: patterns made of literal and "{name}"
 * segments, strict percent-decoding, and query strings. It does no I/O
 * and needs no libevent, so it is unit-tested and fuzzed on its own.
 */
#ifndef VOUCH_HTTP_ROUTER_H
#define VOUCH_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_ROUTER_MAX_SEGMENTS 32
#define HTTP_ROUTER_MAX_PARAMS 8
#define HTTP_ROUTER_MAX_QUERY 64

struct http_router;

enum http_router_result {
	HTTP_ROUTER_FOUND = 0,
	HTTP_ROUTER_NOT_FOUND,  /* no pattern matches the path */
	HTTP_ROUTER_BAD_METHOD, /* the path matches, the method not */
};

/* What a match found. Clear with http_router_match_clear. */
struct http_router_match {
	const void *data;    /* the route's data (FOUND) */
	const char *pattern; /* normalised (FOUND, BAD_METHOD) */
	char allow[128];     /* "GET, HEAD, POST" (BAD_METHOD) */
	size_t nparams;
	const char *names[HTTP_ROUTER_MAX_PARAMS];
	const char *values[HTTP_ROUTER_MAX_PARAMS]; /* decoded */
	char *buf; /* holds the decoded values */
};

/* A decoded query parameter. */
struct http_router_pair {
	char *name;
	char *value;
};

/* An empty router; NULL when out of memory. Free with http_router_free. */
struct http_router *http_router_new(void);
void http_router_free(struct http_router *r);

/*
 * Add a route. The pattern starts with "/" and each segment is a literal
 * or "{name}" (name of [A-Za-z0-9_]); one trailing "/" is dropped. data
 * is returned by matches. Returns 0, or -1 with *cause for a malformed
 * pattern, a duplicate, or no memory.
 */
int http_router_add(struct http_router *r, const char *method,
    const char *pattern, const void *data, const char **cause);

/*
 * Match a raw (still percent-encoded) path without its query; one
 * trailing "/" does not count. Literal segments win over parameters,
 * position by position from the left; HEAD falls back to GET. A segment
 * that does not decode matches nothing.
 * Always call http_router_match_clear afterwards.
 */
enum http_router_result http_router_match(const struct http_router *r,
    const char *method, const char *path, struct http_router_match *m);

void http_router_match_clear(struct http_router_match *m);

/* A match's parameter by name, or NULL. */
const char *http_router_param(
    const struct http_router_match *m, const char *name);

/*
 * Percent-decode in[0..len) into out (room for len + 1 bytes), with '+'
 * as a space when plus is true. Returns the decoded length, or -1 for a
 * bad escape, a control character (NUL included) or invalid UTF-8.
 */
long http_router_decode(const char *in, size_t len, bool plus, char *out);

/*
 * Split a query string ("a=1&b=x+y") into decoded pairs, in order, at
 * most HTTP_ROUTER_MAX_QUERY of them; pairs that do not decode are left
 * out. Returns 0 (with *pairs NULL when there are none) or -1 when out
 * of memory. Free with http_router_query_free.
 */
int http_router_query_parse(
    const char *query, struct http_router_pair **pairs, size_t *count);

void http_router_query_free(struct http_router_pair *pairs, size_t count);

#endif
