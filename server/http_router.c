/*
 * Route matching for the HTTP front: compiled patterns of literal and
 * "{name}" segments, matched against percent-decoded path segments, plus
 * the strict decoder shared with query strings. A linear scan is plenty
 * for a route table of a few dozen entries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_router.h"

struct http_router_route {
	char *method;
	char *pattern; /* normalised: no trailing "/" but the root */
	char *storage; /* segs point into this copy */
	size_t nseg;
	char *segs[HTTP_ROUTER_MAX_SEGMENTS]; /* literal or parameter name */
	uint32_t params; /* bit i set: segment i is a parameter */
	const void *data;
};

struct http_router {
	struct http_router_route *routes;
	size_t count;
};

/* Methods in the order an Allow header lists them. */
static const char *const http_router_method_order[] = {
	"GET",
	"HEAD",
	"POST",
	"PUT",
	"PATCH",
	"DELETE",
	"OPTIONS",
};

/* Value of a hex digit, or -1. */
static int
http_router_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool
http_router_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0, k, n;
	uint32_t cp, min;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			n = 1;
			cp = s[i] & 0x1f;
			min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			n = 2;
			cp = s[i] & 0x0f;
			min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			n = 3;
			cp = s[i] & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Percent-decode in[0..len) into out; see the header for the rules. */
long
http_router_decode(const char *in, size_t len, bool plus, char *out)
{
	size_t i, o = 0;
	unsigned char c;
	int hi, lo;

	for (i = 0; i < len; i++) {
		c = (unsigned char)in[i];
		if (c == '%') {
			if (len - i < 3)
				return -1;
			hi = http_router_hex((unsigned char)in[i + 1]);
			lo = http_router_hex((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (c < 0x20 || c == 0x7f)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';

	if (!http_router_utf8((const unsigned char *)out, o))
		return -1;
	return (long)o;
}

/* An empty router. */
struct http_router *
http_router_new(void)
{
	return calloc(1, sizeof(struct http_router));
}

/* Free a router and its compiled patterns; NULL is fine. */
void
http_router_free(struct http_router *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->count; i++) {
		free(r->routes[i].method);
		free(r->routes[i].pattern);
		free(r->routes[i].storage);
	}
	free(r->routes);
	free(r);
}

/* True when name is a usable parameter name. */
static bool
http_router_name_ok(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* Check one segment of a pattern and record it in rt. */
static int
http_router_compile_segment(
    struct http_router_route *rt, char *seg, const char **cause)
{
	size_t len = strlen(seg), i, nparams = 0;

	if (len == 0) {
		*cause = "empty segment in pattern";
		return -1;
	}
	if (seg[0] != '{') {
		if (strpbrk(seg, "{}") != NULL) {
			*cause = "braces inside a literal segment";
			return -1;
		}
		rt->segs[rt->nseg++] = seg;
		return 0;
	}

	if (seg[len - 1] != '}' || !http_router_name_ok(seg + 1, len - 2)) {
		*cause = "bad parameter segment";
		return -1;
	}
	seg[len - 1] = '\0';
	for (i = 0; i < rt->nseg; i++) {
		if (rt->params & (1u << i)) {
			nparams++;
			if (strcmp(rt->segs[i], seg + 1) == 0) {
				*cause = "parameter named twice";
				return -1;
			}
		}
	}
	if (nparams >= HTTP_ROUTER_MAX_PARAMS) {
		*cause = "too many parameters";
		return -1;
	}
	rt->params |= 1u << rt->nseg;
	rt->segs[rt->nseg++] = seg + 1;
	return 0;
}

/* Normalise and split a pattern into rt. */
static int
http_router_compile(
    struct http_router_route *rt, const char *pattern, const char **cause)
{
	size_t len = strlen(pattern);
	char *p, *slash;

	if (pattern[0] != '/') {
		*cause = "pattern does not start with /";
		return -1;
	}
	if (len > 2 && pattern[len - 1] == '/' && pattern[len - 2] != '/')
		len--;

	rt->pattern = strndup(pattern, len);
	rt->storage = strndup(pattern + 1, len - 1);
	if (rt->pattern == NULL || rt->storage == NULL) {
		*cause = "out of memory";
		return -1;
	}
	if (len == 1)
		return 0;

	for (p = rt->storage; p != NULL; p = slash) {
		slash = strchr(p, '/');
		if (slash != NULL)
			*slash++ = '\0';
		if (rt->nseg == HTTP_ROUTER_MAX_SEGMENTS) {
			*cause = "too many segments";
			return -1;
		}
		if (http_router_compile_segment(rt, p, cause) < 0)
			return -1;
	}
	return 0;
}

/* True when a and b have the same shape and so match the same paths. */
static bool
http_router_same_shape(
    const struct http_router_route *a, const struct http_router_route *b)
{
	size_t i;

	if (a->nseg != b->nseg || a->params != b->params)
		return false;
	for (i = 0; i < a->nseg; i++) {
		if (!(a->params & (1u << i)) &&
		    strcmp(a->segs[i], b->segs[i]) != 0)
			return false;
	}
	return true;
}

/* Compile and append a route. */
int
http_router_add(struct http_router *r, const char *method, const char *pattern,
    const void *data, const char **cause)
{
	struct http_router_route rt, *grown;
	size_t i;

	memset(&rt, 0, sizeof(rt));
	rt.data = data;
	if (method == NULL || *method == '\0' || pattern == NULL) {
		*cause = "route without method or pattern";
		goto fail;
	}
	rt.method = strdup(method);
	if (rt.method == NULL) {
		*cause = "out of memory";
		goto fail;
	}
	if (http_router_compile(&rt, pattern, cause) < 0)
		goto fail;

	for (i = 0; i < r->count; i++) {
		if (strcmp(r->routes[i].method, method) == 0 &&
		    http_router_same_shape(&r->routes[i], &rt)) {
			*cause = "duplicate route";
			goto fail;
		}
	}

	grown = realloc(r->routes, (r->count + 1) * sizeof(*grown));
	if (grown == NULL) {
		*cause = "out of memory";
		goto fail;
	}
	r->routes = grown;
	r->routes[r->count++] = rt;
	return 0;

fail:
	free(rt.method);
	free(rt.pattern);
	free(rt.storage);
	return -1;
}

/* Split and decode a path into segs (pointing into m->buf). Returns the
   number of segments, or -1 when the path cannot match anything. */
static long
http_router_split(const char *path, struct http_router_match *m, char **segs)
{
	size_t len = strlen(path), n = 0, seglen;
	const char *p, *end, *slash;
	char *out;
	long dec;

	if (len > 2 && path[len - 1] == '/' && path[len - 2] != '/')
		len--;
	m->buf = malloc(len + 1);
	if (m->buf == NULL)
		return -1;
	if (len == 1)
		return 0;

	out = m->buf;
	end = path + len;
	for (p = path + 1; p <= end; p = slash + 1) {
		slash = memchr(p, '/', (size_t)(end - p));
		if (slash == NULL)
			slash = end;
		seglen = (size_t)(slash - p);
		if (n == HTTP_ROUTER_MAX_SEGMENTS)
			return -1;
		dec = http_router_decode(p, seglen, false, out);
		if (dec < 0)
			return -1;
		segs[n++] = out;
		out += dec + 1;
	}
	return (long)n;
}

/* True when the route's segments accept the decoded path segments. */
static bool
http_router_fits(const struct http_router_route *rt, char **segs, size_t n)
{
	size_t i;

	if (rt->nseg != n)
		return false;
	for (i = 0; i < n; i++) {
		if (rt->params & (1u << i)) {
			if (segs[i][0] == '\0')
				return false;
		} else if (strcmp(rt->segs[i], segs[i]) != 0) {
			return false;
		}
	}
	return true;
}

/* True when a beats b: at the leftmost position where they differ, a has
   the literal. Both fit the same path, so they have as many segments. */
static bool
http_router_beats(
    const struct http_router_route *a, const struct http_router_route *b)
{
	uint32_t diff = a->params ^ b->params;

	if (diff == 0)
		return false;
	return (a->params & (diff & -diff)) == 0;
}

/* Append method to the Allow list in m unless it is there already. */
static void
http_router_allow_add(struct http_router_match *m, const char *method)
{
	size_t used = strlen(m->allow), mlen = strlen(method);
	const char *p = m->allow;

	while ((p = strstr(p, method)) != NULL) {
		if ((p == m->allow || p[-1] == ' ') &&
		    (p[mlen] == ',' || p[mlen] == '\0'))
			return;
		p += mlen;
	}
	if (used + mlen + 3 > sizeof(m->allow))
		return;
	if (used > 0) {
		memcpy(m->allow + used, ", ", 2);
		used += 2;
	}
	memcpy(m->allow + used, method, mlen + 1);
}

/* Build the Allow list from every route that fits the path. */
static void
http_router_allow(const struct http_router *r, char **segs, size_t n,
    struct http_router_match *m)
{
	size_t i, k;
	bool seen;

	for (k = 0; k < sizeof(http_router_method_order) /
	         sizeof(http_router_method_order[0]);
	     k++) {
		const char *want = http_router_method_order[k];

		seen = false;
		for (i = 0; i < r->count && !seen; i++) {
			const char *have = r->routes[i].method;

			if (!http_router_fits(&r->routes[i], segs, n))
				continue;
			seen = strcmp(have, want) == 0 ||
			    (strcmp(want, "HEAD") == 0 &&
			        strcmp(have, "GET") == 0);
		}
		if (seen)
			http_router_allow_add(m, want);
	}
	for (i = 0; i < r->count; i++) {
		if (http_router_fits(&r->routes[i], segs, n))
			http_router_allow_add(m, r->routes[i].method);
	}
}

/* True when a route registered for have serves a request for want. */
static bool
http_router_method_ok(const char *have, const char *want, bool *exact)
{
	*exact = strcmp(have, want) == 0;
	return *exact ||
	    (strcmp(want, "HEAD") == 0 && strcmp(have, "GET") == 0);
}

/* Find the route for a method and raw path. */
enum http_router_result
http_router_match(const struct http_router *r, const char *method,
    const char *path, struct http_router_match *m)
{
	const struct http_router_route *best = NULL, *shape = NULL, *rt;
	char *segs[HTTP_ROUTER_MAX_SEGMENTS];
	bool exact, best_exact = false;
	long n;
	size_t i;

	memset(m, 0, sizeof(*m));
	if (path == NULL || *path == '\0')
		path = "/";
	if (path[0] != '/')
		return HTTP_ROUTER_NOT_FOUND;
	n = http_router_split(path, m, segs);
	if (n < 0)
		return HTTP_ROUTER_NOT_FOUND;

	for (i = 0; i < r->count; i++) {
		rt = &r->routes[i];
		if (!http_router_fits(rt, segs, (size_t)n))
			continue;
		if (shape == NULL || http_router_beats(rt, shape))
			shape = rt;
		if (!http_router_method_ok(rt->method, method, &exact))
			continue;
		if (best == NULL || http_router_beats(rt, best) ||
		    (!http_router_beats(best, rt) && exact && !best_exact)) {
			best = rt;
			best_exact = exact;
		}
	}

	if (best == NULL && shape == NULL)
		return HTTP_ROUTER_NOT_FOUND;
	if (best == NULL) {
		m->pattern = shape->pattern;
		http_router_allow(r, segs, (size_t)n, m);
		return HTTP_ROUTER_BAD_METHOD;
	}

	m->data = best->data;
	m->pattern = best->pattern;
	for (i = 0; i < best->nseg; i++) {
		if (best->params & (1u << i)) {
			m->names[m->nparams] = best->segs[i];
			m->values[m->nparams] = segs[i];
			m->nparams++;
		}
	}
	return HTTP_ROUTER_FOUND;
}

/* Release what a match holds; the match may be reused afterwards. */
void
http_router_match_clear(struct http_router_match *m)
{
	free(m->buf);
	memset(m, 0, sizeof(*m));
}

/* A parameter of a match by name. */
const char *
http_router_param(const struct http_router_match *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nparams; i++) {
		if (strcmp(m->names[i], name) == 0)
			return m->values[i];
	}
	return NULL;
}

/* Decode one "name=value" piece into a fresh pair; false if it does not
   decode or has no name. */
static bool
http_router_pair_make(const char *p, size_t len, struct http_router_pair *pair)
{
	const char *eq = memchr(p, '=', len);
	size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
	size_t vlen = eq != NULL ? len - nlen - 1 : 0;

	if (nlen == 0)
		return false;
	pair->name = malloc(nlen + 1);
	pair->value = malloc(vlen + 1);
	if (pair->name == NULL || pair->value == NULL ||
	    http_router_decode(p, nlen, true, pair->name) < 0 ||
	    http_router_decode(
	        eq != NULL ? eq + 1 : "", vlen, true, pair->value) < 0) {
		free(pair->name);
		free(pair->value);
		return false;
	}
	return true;
}

/* Split a query string into decoded pairs. */
int
http_router_query_parse(
    const char *query, struct http_router_pair **pairs, size_t *count)
{
	struct http_router_pair *list = NULL, pair;
	const char *p = query, *amp;
	size_t n = 0, len;

	*pairs = NULL;
	*count = 0;
	if (query == NULL)
		return 0;

	while (*p != '\0' && n < HTTP_ROUTER_MAX_QUERY) {
		amp = strchr(p, '&');
		len = amp != NULL ? (size_t)(amp - p) : strlen(p);
		if (http_router_pair_make(p, len, &pair)) {
			if (list == NULL)
				list = calloc(
				    HTTP_ROUTER_MAX_QUERY, sizeof(*list));
			if (list == NULL) {
				free(pair.name);
				free(pair.value);
				return -1;
			}
			list[n++] = pair;
		}
		p += len;
		if (*p == '&')
			p++;
	}

	*pairs = list;
	*count = n;
	return 0;
}

/* Free the pairs of http_router_query_parse. */
void
http_router_query_free(struct http_router_pair *pairs, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		free(pairs[i].name);
		free(pairs[i].value);
	}
	free(pairs);
}
