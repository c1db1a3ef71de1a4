/*
 * record: append-only NDJSON lines for the push fakes. Each line is
 * flushed on its own so tests see events as they happen; a failing disk
 * never stops the fake, it only loses the record.
 */
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <errno.h>

#include "record.h"

static FILE *record_file;
static bool record_failed;

/* Open the record file in append mode, line by line. */
int
record_open(const char *path)
{
	FILE *f;

	f = fopen(path, "a");
	if (f == NULL)
		return -1;
	record_close();
	record_file = f;
	record_failed = false;
	return 0;
}

/* Whether events are being recorded at all. */
bool
record_on(void)
{
	return record_file != NULL;
}

/* Dump one object as a single line and flush it. */
void
record_put(json_t *obj)
{
	int rv;

	if (obj == NULL)
		return;
	if (record_file == NULL) {
		json_decref(obj);
		return;
	}

	rv = json_dumpf(obj, record_file, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (rv == 0 && fputc('\n', record_file) == EOF)
		rv = -1;
	if (rv == 0 && fflush(record_file) != 0)
		rv = -1;
	if (rv != 0 && !record_failed) {
		fprintf(stderr, "record: write failed: %s\n", strerror(errno));
		record_failed = true;
	}
	json_decref(obj);
}

/* Start an event object naming its kind and connection. */
/* Wall-clock time in milliseconds, for latency measured across
   processes (benchmarks compare it with their own clock). */
static double
record_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

json_t *
record_event(const char *ev, uint64_t conn)
{
	json_t *obj;

	obj = json_object();
	if (obj == NULL)
		return NULL;
	json_object_set_new(obj, "ev", json_string(ev));
	json_object_set_new(obj, "conn", json_integer((json_int_t)conn));
	json_object_set_new(obj, "ts", json_real(record_now_ms()));
	return obj;
}

/* Close the file if one is open. */
void
record_close(void)
{
	if (record_file != NULL)
		fclose(record_file);
	record_file = NULL;
}
