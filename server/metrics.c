/*
 * Prometheus text exposition (format 0.0.4): fixed-bucket histograms, the
 * "# HELP" / "# TYPE" lines, and the list of collectors /metrics runs.
 * Counters themselves live in the module that owns them; this file only
 * knows how to print them.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "metrics.h"

/* The Prometheus client default buckets, in seconds. */
const double metrics_latency_buckets[] = {
	0.005,
	0.01,
	0.025,
	0.05,
	0.1,
	0.25,
	0.5,
	1,
	2.5,
	5,
	10,
};
const size_t metrics_latency_buckets_count =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

struct metrics_histogram {
	size_t nbounds;
	double *bounds; /* strictly increasing upper bounds */
	uint64_t *hits; /* per bound, not cumulative */
	uint64_t count; /* every observation, the +Inf bucket */
	double sum;
};

struct metrics_collector {
	metrics_collect_fn fn;
	void *arg;
};

static struct metrics_collector *metrics_collectors;
static size_t metrics_ncollectors;

/*
 * Format a sample value as Prometheus' own clients do: the fewest digits
 * that read back exactly, in plain notation unless the exponent is below
 * -4 or at least 6 ("0.005", "10", "1e-07", "2.5e+06").
 */
static void
metrics_format(double v, char *buf, size_t len)
{
	const char *e;
	int digits, exp, decimals;

	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (digits = 1; digits < 17; digits++) {
		snprintf(buf, len, "%.*e", digits - 1, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	snprintf(buf, len, "%.*e", digits - 1, v);

	e = strchr(buf, 'e');
	exp = e != NULL ? atoi(e + 1) : 0;
	if (exp < -4 || exp >= 6)
		return;
	decimals = digits - 1 - exp;
	snprintf(buf, len, "%.*f", decimals > 0 ? decimals : 0, v);
}

/*
 * A histogram with the given upper bounds (strictly increasing, finite).
 * Returns NULL when the bounds are not usable or memory runs out; free
 * with metrics_histogram_free.
 */
struct metrics_histogram *
metrics_histogram_new(const double *bounds, size_t count)
{
	struct metrics_histogram *h;
	size_t i;

	for (i = 0; i < count; i++) {
		if (!isfinite(bounds[i]) ||
		    (i > 0 && bounds[i] <= bounds[i - 1]))
			return NULL;
	}

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->nbounds = count;
	h->bounds = calloc(count ? count : 1, sizeof(*h->bounds));
	h->hits = calloc(count ? count : 1, sizeof(*h->hits));
	if (h->bounds == NULL || h->hits == NULL) {
		metrics_histogram_free(h);
		return NULL;
	}
	if (count > 0)
		memcpy(h->bounds, bounds, count * sizeof(*bounds));
	return h;
}

/* Free a histogram; NULL is fine. */
void
metrics_histogram_free(struct metrics_histogram *h)
{
	if (h == NULL)
		return;
	free(h->bounds);
	free(h->hits);
	free(h);
}

/* Count one value in the first bucket whose bound is >= value. NaN is
   dropped: it would poison the sum for good. */
void
metrics_histogram_observe(struct metrics_histogram *h, double value)
{
	size_t i;

	if (h == NULL || isnan(value))
		return;

	for (i = 0; i < h->nbounds; i++) {
		if (value <= h->bounds[i]) {
			h->hits[i]++;
			break;
		}
	}
	h->count++;
	h->sum += value;
}

/*
 * Write the _bucket lines (cumulative, then le="+Inf"), _sum and _count.
 * The caller's labels come first, "le" last: {route="x",le="0.5"}.
 */
void
metrics_histogram_write(const struct metrics_histogram *h, struct evbuffer *out,
    const char *name, const char *labels)
{
	const char *sep, *open, *close;
	char num[64];
	uint64_t cumulative = 0;
	size_t i;

	if (h == NULL)
		return;
	if (labels == NULL)
		labels = "";
	sep = *labels != '\0' ? "," : "";
	open = *labels != '\0' ? "{" : "";
	close = *labels != '\0' ? "}" : "";

	for (i = 0; i < h->nbounds; i++) {
		cumulative += h->hits[i];
		metrics_format(h->bounds[i], num, sizeof(num));
		evbuffer_add_printf(out,
		    "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep,
		    num, cumulative);
	}
	evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n",
	    name, labels, sep, h->count);

	metrics_format(h->sum, num, sizeof(num));
	evbuffer_add_printf(
	    out, "%s_sum%s%s%s %s\n", name, open, labels, close, num);
	evbuffer_add_printf(out, "%s_count%s%s%s %" PRIu64 "\n", name, open,
	    labels, close, h->count);
}

/* Write the HELP and TYPE lines; help text has \ and newlines escaped. */
void
metrics_header(
    struct evbuffer *out, const char *name, const char *type, const char *help)
{
	const char *p;

	evbuffer_add_printf(out, "# HELP %s ", name);
	for (p = help; p != NULL && *p != '\0'; p++) {
		if (*p == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*p == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, p, 1);
	}
	evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* Append a collector; out of memory drops it, with a log line. */
void
metrics_register(metrics_collect_fn fn, void *arg)
{
	struct metrics_collector *grown;

	grown = realloc(
	    metrics_collectors, (metrics_ncollectors + 1) * sizeof(*grown));
	if (grown == NULL) {
		log_error("metrics", "collector not registered: out of memory");
		return;
	}
	metrics_collectors = grown;
	metrics_collectors[metrics_ncollectors].fn = fn;
	metrics_collectors[metrics_ncollectors].arg = arg;
	metrics_ncollectors++;
}

/* Forget every collector. */
void
metrics_reset(void)
{
	free(metrics_collectors);
	metrics_collectors = NULL;
	metrics_ncollectors = 0;
}

/* Run the collectors in registration order. */
void
metrics_render(struct evbuffer *out)
{
	size_t i;

	for (i = 0; i < metrics_ncollectors; i++)
		metrics_collectors[i].fn(out, metrics_collectors[i].arg);
}
