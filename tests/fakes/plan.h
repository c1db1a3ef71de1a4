/*
 * plan: the fault plan a push fake follows. A JSON file of rules, each a
 * matcher (device token, every Nth request, only the Nth, or a path) and
 * one action (answer a status, delay, stall, refuse, GOAWAY, close, lower
 * the stream limit). The first matching rule wins.
 */
#ifndef FAKES_PLAN_H
#define FAKES_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plan_match {
	PLAN_MATCH_TOKEN = 0,
	PLAN_MATCH_EVERY,
	PLAN_MATCH_NTH,
	PLAN_MATCH_PATH,
};

struct plan_rule {
	enum plan_match match;
	char *text;   /* token or path */
	uint64_t num; /* every or nth */

	int status;   /* 0 = none */
	char *reason; /* NULL = the default for the status */
	bool has_timestamp;
	int64_t timestamp;
	int retry_after; /* -1 = none */
	unsigned delay_ms;
	bool stall;
	bool refuse;
	bool goaway;
	bool close;
	int64_t max_streams; /* -1 = none */
};

struct plan {
	struct plan_rule *rules;
	size_t nrules;
	bool ignore_pings;
};

/*
 * Load and check a plan file. Returns a plan the caller frees with
 * plan_free, or NULL with a message in ERR.
 */
struct plan *plan_load(const char *path, char *err, size_t errlen);

/*
 * Re-read PATH into *PLAN. On success the old plan is freed and 0 is
 * returned; on failure *PLAN is kept and -1 returned with ERR set.
 */
int plan_reload(const char *path, struct plan **plan, char *err, size_t errlen);

/* Free a plan; accepts NULL. */
void plan_free(struct plan *plan);

/*
 * The first rule matching request number N (0 = not counted, so only path
 * rules apply), PATH and TOKEN (may be NULL), or NULL when none does.
 */
const struct plan_rule *plan_match(
    const struct plan *plan, uint64_t n, const char *path, const char *token);

#endif
