/*
 * record: the NDJSON trail a push fake leaves for tests to assert on.
 * One JSON object per line, appended and flushed line by line, so a test
 * can read the file while the fake still runs. Off unless opened.
 */
#ifndef FAKES_RECORD_H
#define FAKES_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* Open PATH for appending; returns 0 or -1 with errno set. */
int record_open(const char *path);

/* True when a record file is open (callers skip building objects). */
bool record_on(void);

/*
 * Write OBJ as one line and flush. Takes ownership of OBJ (may be NULL,
 * then nothing is written). Write errors are reported once on stderr.
 */
void record_put(json_t *obj);

/* A new object {"ev": EV, "conn": CONN} for the caller to extend. */
json_t *record_event(const char *ev, uint64_t conn);

/* Close the record file; safe when none is open. */
void record_close(void);

#endif
