/*
 * Prometheus text exposition: histograms with fixed buckets, and a list
 * of collectors (one per module) that write their lines for /metrics.
 */
#ifndef VOUCH_METRICS_H
#define VOUCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct metrics_histogram;

/* Latency buckets in seconds shared by every latency histogram. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_count;

struct metrics_histogram *metrics_histogram_new(
    const double *bounds, size_t count);
void metrics_histogram_free(struct metrics_histogram *h);
void metrics_histogram_observe(struct metrics_histogram *h, double value);

/* Write name_bucket/_sum/_count lines; labels may be "" or
   'route="x",method="GET"'. */
void metrics_histogram_write(const struct metrics_histogram *h,
    struct evbuffer *out, const char *name, const char *labels);

/* Write "# HELP" and "# TYPE" lines for a metric. */
void metrics_header(
    struct evbuffer *out, const char *name, const char *type, const char *help);

typedef void (*metrics_collect_fn)(struct evbuffer *out, void *arg);

/* Register a collector; they run in registration order. */
void metrics_register(metrics_collect_fn fn, void *arg);

/* Drop every collector (at shutdown). */
void metrics_reset(void);

/* Run every collector into out. */
void metrics_render(struct evbuffer *out);

#endif
