/*
 * Unit tests for metrics.c: histogram buckets and the exact Prometheus
 * text a scraper reads, label merging, HELP escaping and collectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "metrics.h"

/* The contents of an evbuffer as a fresh string; drains it. */
static char *
take(struct evbuffer *buf)
{
	size_t len = evbuffer_get_length(buf);
	char *s = malloc(len + 1);

	assert_non_null(s);
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	return s;
}

/* Values land in the first bucket whose bound is >= the value. */
static void
test_histogram_buckets_and_text(void **state)
{
	static const double bounds[] = { 0.25, 0.5, 1 };
	struct metrics_histogram *h = metrics_histogram_new(bounds, 3);
	struct evbuffer *out = evbuffer_new();
	char *text;

	assert_non_null(h);
	metrics_histogram_observe(h, 0.125);
	metrics_histogram_observe(h, 0.25);
	metrics_histogram_observe(h, 0.5);
	metrics_histogram_observe(h, 2);
	metrics_histogram_observe(h, NAN);

	metrics_histogram_write(h, out, "vouch_x_seconds", "");
	text = take(out);
	assert_string_equal(text,
	    "vouch_x_seconds_bucket{le=\"0.25\"} 2\n"
	    "vouch_x_seconds_bucket{le=\"0.5\"} 3\n"
	    "vouch_x_seconds_bucket{le=\"1\"} 3\n"
	    "vouch_x_seconds_bucket{le=\"+Inf\"} 4\n"
	    "vouch_x_seconds_sum 2.875\n"
	    "vouch_x_seconds_count 4\n");
	free(text);

	metrics_histogram_free(h);
	evbuffer_free(out);
}

/* The caller's labels come first, le last, and _sum/_count keep them. */
static void
test_histogram_labels_merge(void **state)
{
	static const double bounds[] = { 0.1 };
	struct metrics_histogram *h = metrics_histogram_new(bounds, 1);
	struct evbuffer *out = evbuffer_new();
	char *text;

	metrics_histogram_observe(h, 0.05);
	metrics_histogram_write(
	    h, out, "lat", "route=\"/v1/customers/{id}\",method=\"GET\"");
	text = take(out);
	assert_string_equal(text,
	    "lat_bucket{route=\"/v1/customers/{id}\",method=\"GET\","
	    "le=\"0.1\"} 1\n"
	    "lat_bucket{route=\"/v1/customers/{id}\",method=\"GET\","
	    "le=\"+Inf\"} 1\n"
	    "lat_sum{route=\"/v1/customers/{id}\",method=\"GET\"} 0.05\n"
	    "lat_count{route=\"/v1/customers/{id}\",method=\"GET\"} 1\n");
	free(text);

	/* NULL labels are the same as none. */
	metrics_histogram_write(h, out, "lat", NULL);
	text = take(out);
	assert_non_null(strstr(text, "lat_sum 0.05\n"));
	free(text);

	metrics_histogram_free(h);
	evbuffer_free(out);
}

/* The shared latency buckets start at 5 ms and print like Prometheus. */
static void
test_latency_buckets(void **state)
{
	struct metrics_histogram *h = metrics_histogram_new(
	    metrics_latency_buckets, metrics_latency_buckets_count);
	struct evbuffer *out = evbuffer_new();
	char *text;

	assert_int_equal(metrics_latency_buckets_count, 11);
	assert_true(metrics_latency_buckets[0] == 0.005);
	metrics_histogram_observe(h, 0.0000001);
	metrics_histogram_observe(h, 7);
	metrics_histogram_write(h, out, "d", "");
	text = take(out);
	assert_non_null(strstr(text, "d_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text, "d_bucket{le=\"0.025\"} 1\n"));
	assert_non_null(strstr(text, "d_bucket{le=\"2.5\"} 1\n"));
	assert_non_null(strstr(text, "d_bucket{le=\"10\"} 2\n"));
	assert_non_null(strstr(text, "d_bucket{le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text, "d_sum 7.0000001\n"));
	assert_non_null(strstr(text, "d_count 2\n"));
	free(text);

	metrics_histogram_free(h);
	evbuffer_free(out);
}

/* An empty histogram still prints every line, with zeros. */
static void
test_histogram_empty(void **state)
{
	static const double bounds[] = { 1, 2 };
	struct metrics_histogram *h = metrics_histogram_new(bounds, 2);
	struct evbuffer *out = evbuffer_new();
	char *text;

	metrics_histogram_write(h, out, "e", "a=\"b\"");
	text = take(out);
	assert_string_equal(text,
	    "e_bucket{a=\"b\",le=\"1\"} 0\n"
	    "e_bucket{a=\"b\",le=\"2\"} 0\n"
	    "e_bucket{a=\"b\",le=\"+Inf\"} 0\n"
	    "e_sum{a=\"b\"} 0\n"
	    "e_count{a=\"b\"} 0\n");
	free(text);
	metrics_histogram_free(h);
	evbuffer_free(out);
}

/* Numbers print like Prometheus' own clients: shortest exact digits,
   exponents only below 1e-4 and from 1e6. */
static void
test_number_format(void **state)
{
	static const double bounds[] = { 1e-7, 0.0001, 0.1, 100000, 2.5e6 };
	struct metrics_histogram *h = metrics_histogram_new(bounds, 5);
	struct evbuffer *out = evbuffer_new();
	char *text;

	metrics_histogram_observe(h, 0.1);
	metrics_histogram_observe(h, 0.2);
	metrics_histogram_observe(h, -1.5);
	metrics_histogram_write(h, out, "n", "");
	text = take(out);
	assert_string_equal(text,
	    "n_bucket{le=\"1e-07\"} 1\n"
	    "n_bucket{le=\"0.0001\"} 1\n"
	    "n_bucket{le=\"0.1\"} 2\n"
	    "n_bucket{le=\"100000\"} 3\n"
	    "n_bucket{le=\"2.5e+06\"} 3\n"
	    "n_bucket{le=\"+Inf\"} 3\n"
	    "n_sum -1.2\n"
	    "n_count 3\n");
	free(text);
	metrics_histogram_free(h);
	evbuffer_free(out);
}

/* Bounds must increase strictly and be finite. */
static void
test_histogram_bad_bounds(void **state)
{
	static const double same[] = { 1, 1 };
	static const double down[] = { 2, 1 };
	static const double inf[] = { 1, INFINITY };

	assert_null(metrics_histogram_new(same, 2));
	assert_null(metrics_histogram_new(down, 2));
	assert_null(metrics_histogram_new(inf, 2));
	metrics_histogram_free(NULL);
}

/* HELP text escapes backslashes and newlines; TYPE follows. */
static void
test_header(void **state)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	metrics_header(
	    out, "vouch_things_total", "counter", "Things, a\\b\nand more.");
	text = take(out);
	assert_string_equal(text,
	    "# HELP vouch_things_total Things, a\\\\b\\nand more.\n"
	    "# TYPE vouch_things_total counter\n");
	free(text);
	evbuffer_free(out);
}

/* A collector that writes its argument. */
static void
collect_cb(struct evbuffer *out, void *arg)
{
	evbuffer_add_printf(out, "%s\n", (const char *)arg);
}

/* Collectors run in registration order until reset. */
static void
test_collectors(void **state)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	metrics_register(collect_cb, "first 1");
	metrics_register(collect_cb, "second 2");
	metrics_render(out);
	text = take(out);
	assert_string_equal(text, "first 1\nsecond 2\n");
	free(text);

	metrics_reset();
	metrics_render(out);
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

/* Run every test. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_histogram_buckets_and_text),
		cmocka_unit_test(test_histogram_labels_merge),
		cmocka_unit_test(test_latency_buckets),
		cmocka_unit_test(test_histogram_empty),
		cmocka_unit_test(test_number_format),
		cmocka_unit_test(test_histogram_bad_bounds),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_collectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
