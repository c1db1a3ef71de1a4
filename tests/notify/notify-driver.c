/*
 * A test driver for server/notify.c: reads a vouchd configuration and
 * jobs (one JSON object a line on stdin), submits them all at once on its
 * own event loop and prints one JSON line per outcome. It also checks the
 * callback contract: never from inside a submit call, exactly once each.
 *
 *   notify-driver --conf FILE [--timeout-ms N] [--connect-timeout-ms N]
 *       [--free-after-ms N] [--metrics] < jobs
 *
 * A job: {"channel": "email", "to": ..., "subject": ..., "text": ...} or
 * {"channel": "sms", "to": ..., "text": ...}, with "repeat": N to submit
 * it N times. Exit 0 when the contract held, 1 on set-up errors, 2 when
 * a callback came too early or more than once.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "conf.h"
#include "log.h"
#include "notify.h"
#include "util.h"

/* One submitted send. */
struct driver_job {
	struct driver *d;
	size_t index;
	int calls;
	uint64_t started_ms;
};

struct driver {
	struct event_base *base;
	struct notify *notify;
	struct driver_job *jobs;
	size_t count;
	size_t cap;
	size_t pending;
	bool submitting;
	bool broken;
};

/* Print one outcome line and stop the loop after the last one. */
static void
driver_done_cb(const struct notify_result *res, void *arg)
{
	struct driver_job *job = arg;
	struct driver *d = job->d;
	json_t *line;
	char *text;

	if (d->submitting) {
		fprintf(stderr, "driver: job %zu called back inside submit\n",
		    job->index);
		d->broken = true;
	}
	if (++job->calls > 1) {
		fprintf(stderr, "driver: job %zu called back %d times\n",
		    job->index, job->calls);
		d->broken = true;
		return;
	}

	line = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:s?, s:I}", "job",
	    (json_int_t)job->index, "channel",
	    res->channel == NOTIFY_EMAIL ? "email" : "sms", "outcome",
	    notify_outcome_name(res->outcome), "detail",
	    res->detail != NULL ? res->detail : "", "retry_after",
	    (json_int_t)res->retry_after, "status", (json_int_t)res->status,
	    "id", res->provider_id, "ms",
	    (json_int_t)(util_now_ms() - job->started_ms));
	text = json_dumps(line, JSON_COMPACT);
	printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(line);

	if (--d->pending == 0)
		event_base_loopbreak(d->base);
}

/* Submit one job. */
static void
driver_submit(struct driver *d, json_t *spec, struct driver_job *job)
{
	const char *channel =
	    json_string_value(json_object_get(spec, "channel"));
	const char *to = json_string_value(json_object_get(spec, "to"));
	const char *subject =
	    json_string_value(json_object_get(spec, "subject"));
	const char *text = json_string_value(json_object_get(spec, "text"));

	job->started_ms = util_now_ms();
	d->pending++;
	d->submitting = true;
	if (channel != NULL && strcmp(channel, "sms") == 0)
		notify_sms(d->notify, to, text, driver_done_cb, job);
	else
		notify_email(d->notify, to, subject, text, driver_done_cb, job);
	d->submitting = false;
}

/* Read every job line from stdin into specs; -1 on a malformed line. */
static int
driver_read_jobs(json_t *specs)
{
	char *line = NULL;
	size_t cap = 0;
	json_t *spec, *repeat;
	json_int_t i, times;
	int rc = 0;

	while (getline(&line, &cap, stdin) > 0) {
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		spec = json_loads(line, 0, NULL);
		if (!json_is_object(spec)) {
			fprintf(stderr, "driver: bad job line: %s", line);
			json_decref(spec);
			rc = -1;
			break;
		}
		repeat = json_object_get(spec, "repeat");
		times =
		    json_is_integer(repeat) ? json_integer_value(repeat) : 1;
		for (i = 0; i < times; i++)
			json_array_append(specs, spec);
		json_decref(spec);
	}
	free(line);
	return rc;
}

/* Stop the loop early: notify_free then completes what is pending. */
static void
driver_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct driver *d = arg;

	event_base_loopbreak(d->base);
}

/* Print the metrics text as one JSON line. */
static void
driver_metrics(struct notify *n)
{
	struct evbuffer *b = evbuffer_new();
	json_t *line;
	char *text;

	notify_metrics(n, b);
	evbuffer_add(b, "", 1);
	line =
	    json_pack("{s:s}", "metrics", (const char *)evbuffer_pullup(b, -1));
	text = json_dumps(line, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(line);
	evbuffer_free(b);
}

/* Print a set-up error as a JSON line and exit 1. */
static void
driver_fail(const char *what)
{
	json_t *line = json_pack("{s:s}", "error", what);
	char *text = json_dumps(line, JSON_COMPACT);

	printf("%s\n", text);
	free(text);
	json_decref(line);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct driver d;
	struct conf *conf;
	struct event *stop = NULL;
	enum log_level level = LOG_LEVEL_INFO;
	const char *conf_path = NULL, *cause = NULL;
	long timeout_ms = 0, connect_ms = 0, free_after_ms = 0;
	bool metrics = false;
	json_t *specs;
	size_t i;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--conf") == 0 && a + 1 < argc)
			conf_path = argv[++a];
		else if (strcmp(argv[a], "--timeout-ms") == 0 && a + 1 < argc)
			timeout_ms = strtol(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--connect-timeout-ms") == 0 &&
		    a + 1 < argc)
			connect_ms = strtol(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--free-after-ms") == 0 &&
		    a + 1 < argc)
			free_after_ms = strtol(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--metrics") == 0)
			metrics = true;
		else
			driver_fail("usage: notify-driver --conf FILE "
			            "[--timeout-ms N] [--connect-timeout-ms N] "
			            "[--free-after-ms N] [--metrics]");
	}
	if (conf_path == NULL)
		driver_fail("--conf is required");

	conf = conf_load(conf_path, stderr);
	if (conf == NULL)
		driver_fail("configuration refused");
	if (conf->log_level != NULL)
		log_level_parse(conf->log_level, &level);
	log_setup(level, LOG_FORMAT_TEXT);

	memset(&d, 0, sizeof(d));
	d.base = event_base_new();
	d.notify = notify_new(d.base, conf, &cause);
	if (d.notify == NULL)
		driver_fail(cause);
	notify_set_timeouts(d.notify, connect_ms, timeout_ms);

	specs = json_array();
	if (driver_read_jobs(specs) < 0)
		driver_fail("bad job line");
	d.count = json_array_size(specs);
	d.jobs = calloc(d.count + 1, sizeof(*d.jobs));
	for (i = 0; i < d.count; i++) {
		d.jobs[i].d = &d;
		d.jobs[i].index = i;
		driver_submit(&d, json_array_get(specs, i), &d.jobs[i]);
	}

	if (free_after_ms > 0) {
		struct timeval tv = { free_after_ms / 1000,
			(free_after_ms % 1000) * 1000 };

		stop = evtimer_new(d.base, driver_free_cb, &d);
		evtimer_add(stop, &tv);
	}
	if (d.pending > 0)
		event_base_dispatch(d.base);

	if (metrics)
		driver_metrics(d.notify);
	notify_free(d.notify);
	for (i = 0; i < d.count; i++) {
		if (d.jobs[i].calls != 1) {
			fprintf(stderr,
			    "driver: job %zu called back %d times\n", i,
			    d.jobs[i].calls);
			d.broken = true;
		}
	}

	if (stop != NULL)
		event_free(stop);
	event_base_free(d.base);
	json_decref(specs);
	free(d.jobs);
	conf_free(conf);
	return d.broken ? 2 : 0;
}
