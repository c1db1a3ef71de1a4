/*
 * plan: loads and matches the fault plan of the push fakes. Loading is
 * strict (unknown keys, two matchers or no action are errors) so a typo
 * in a test's plan fails loudly instead of silently testing nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "plan.h"

static const char *const plan_rule_keys[] = {
	"token",
	"every",
	"nth",
	"path",
	"status",
	"reason",
	"timestamp",
	"retry_after",
	"delay_ms",
	"stall",
	"refuse",
	"goaway",
	"close",
	"max_streams",
	NULL,
};

/* True when KEY is one a rule may carry. */
static bool
plan_key_known(const char *key)
{
	size_t i;

	for (i = 0; plan_rule_keys[i] != NULL; i++)
		if (strcmp(plan_rule_keys[i], key) == 0)
			return true;
	return false;
}

/* Read an integer member into OUT within [lo, hi]; absent leaves OUT. */
static int
plan_int(json_t *rule, const char *key, int64_t lo, int64_t hi, int64_t *out,
    char *err, size_t errlen)
{
	json_t *v;

	v = json_object_get(rule, key);
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi) {
		snprintf(err, errlen,
		    "\"%s\" must be an integer in [%lld, %lld]", key,
		    (long long)lo, (long long)hi);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

/* Read a boolean member into OUT; absent leaves OUT. */
static int
plan_bool(json_t *rule, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v;

	v = json_object_get(rule, key);
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		snprintf(err, errlen, "\"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* Fill the matcher of R from RULE: exactly one of the four kinds. */
static int
plan_parse_match(json_t *rule, struct plan_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = { "token", "every", "nth", "path" };
	int64_t num = 0;
	size_t i, found = 0;
	json_t *v;

	for (i = 0; i < 4; i++) {
		if (json_object_get(rule, keys[i]) == NULL)
			continue;
		found++;
		r->match = (enum plan_match)i;
	}
	if (found != 1) {
		snprintf(err, errlen,
		    "needs exactly one of \"token\", "
		    "\"every\", \"nth\", \"path\"");
		return -1;
	}

	if (r->match == PLAN_MATCH_TOKEN || r->match == PLAN_MATCH_PATH) {
		v = json_object_get(rule, keys[r->match]);
		if (!json_is_string(v) || json_string_length(v) == 0) {
			snprintf(err, errlen,
			    "\"%s\" must be a non-empty string",
			    keys[r->match]);
			return -1;
		}
		r->text = strdup(json_string_value(v));
		return r->text != NULL ? 0 : -1;
	}

	if (plan_int(rule, keys[r->match], 1, INT64_MAX, &num, err, errlen) < 0)
		return -1;
	r->num = (uint64_t)num;
	return 0;
}

/* Fill the action fields of R from RULE and check one action is given. */
static int
plan_parse_action(json_t *rule, struct plan_rule *r, char *err, size_t errlen)
{
	int64_t status = 0, retry = -1, delay = 0, ts = 0, streams = -1;
	json_t *v;

	if (plan_int(rule, "status", 200, 599, &status, err, errlen) < 0 ||
	    plan_int(rule, "retry_after", 0, 86400, &retry, err, errlen) < 0 ||
	    plan_int(rule, "delay_ms", 0, 600000, &delay, err, errlen) < 0 ||
	    plan_int(rule, "timestamp", 0, INT64_MAX, &ts, err, errlen) < 0 ||
	    plan_int(rule, "max_streams", 0, INT32_MAX, &streams, err, errlen) <
	        0)
		return -1;
	if (plan_bool(rule, "stall", &r->stall, err, errlen) < 0 ||
	    plan_bool(rule, "refuse", &r->refuse, err, errlen) < 0 ||
	    plan_bool(rule, "goaway", &r->goaway, err, errlen) < 0 ||
	    plan_bool(rule, "close", &r->close, err, errlen) < 0)
		return -1;

	r->status = (int)status;
	r->retry_after = (int)retry;
	r->delay_ms = (unsigned)delay;
	r->has_timestamp = json_object_get(rule, "timestamp") != NULL;
	r->timestamp = ts;
	r->max_streams = streams;

	v = json_object_get(rule, "reason");
	if (v != NULL) {
		if (!json_is_string(v) || json_string_length(v) == 0) {
			snprintf(err, errlen, "\"reason\" must be a string");
			return -1;
		}
		r->reason = strdup(json_string_value(v));
		if (r->reason == NULL)
			return -1;
	}

	if (r->status == 0 && r->delay_ms == 0 && !r->stall && !r->refuse &&
	    !r->goaway && !r->close && r->max_streams < 0) {
		snprintf(err, errlen, "has no action");
		return -1;
	}
	return 0;
}

/* Parse one rule object into R. */
static int
plan_parse_rule(json_t *rule, struct plan_rule *r, char *err, size_t errlen)
{
	const char *key;
	json_t *v;

	if (!json_is_object(rule)) {
		snprintf(err, errlen, "is not an object");
		return -1;
	}
	json_object_foreach(rule, key, v)
	{
		if (!plan_key_known(key)) {
			snprintf(err, errlen, "unknown key \"%s\"", key);
			return -1;
		}
	}

	if (plan_parse_match(rule, r, err, errlen) < 0)
		return -1;
	return plan_parse_action(rule, r, err, errlen);
}

/* Parse the whole document ROOT into PLAN. */
static int
plan_parse(json_t *root, struct plan *plan, char *err, size_t errlen)
{
	char why[200];
	const char *key;
	json_t *rules, *v;
	size_t i;

	if (!json_is_object(root)) {
		snprintf(err, errlen, "the plan is not a JSON object");
		return -1;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "rules") != 0 &&
		    strcmp(key, "ignore_pings") != 0) {
			snprintf(
			    err, errlen, "unknown top-level key \"%s\"", key);
			return -1;
		}
	}
	if (plan_bool(root, "ignore_pings", &plan->ignore_pings, err, errlen) <
	    0)
		return -1;

	rules = json_object_get(root, "rules");
	if (rules == NULL)
		return 0;
	if (!json_is_array(rules)) {
		snprintf(err, errlen, "\"rules\" must be an array");
		return -1;
	}
	plan->rules = calloc(json_array_size(rules) + 1, sizeof(*plan->rules));
	if (plan->rules == NULL)
		return -1;

	json_array_foreach(rules, i, v)
	{
		plan->nrules = i + 1;
		if (plan_parse_rule(v, &plan->rules[i], why, sizeof(why)) < 0) {
			snprintf(err, errlen, "rule %zu %s", i, why);
			return -1;
		}
	}
	return 0;
}

/* Load, parse and check the plan file. */
struct plan *
plan_load(const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	struct plan *plan = NULL;
	json_t *root;

	snprintf(err, errlen, "out of memory");
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
		return NULL;
	}

	plan = calloc(1, sizeof(*plan));
	if (plan == NULL)
		goto out;
	if (plan_parse(root, plan, err, errlen) < 0) {
		plan_free(plan);
		plan = NULL;
	}

out:
	json_decref(root);
	return plan;
}

/* Swap in a freshly loaded plan, keeping the old one on failure. */
int
plan_reload(const char *path, struct plan **plan, char *err, size_t errlen)
{
	struct plan *fresh;

	fresh = plan_load(path, err, errlen);
	if (fresh == NULL)
		return -1;
	plan_free(*plan);
	*plan = fresh;
	return 0;
}

/* Free the rules and the plan. */
void
plan_free(struct plan *plan)
{
	size_t i;

	if (plan == NULL)
		return;
	for (i = 0; i < plan->nrules; i++) {
		free(plan->rules[i].text);
		free(plan->rules[i].reason);
	}
	free(plan->rules);
	free(plan);
}

/* True when rule R applies to request N with PATH and TOKEN. */
static bool
plan_rule_matches(
    const struct plan_rule *r, uint64_t n, const char *path, const char *token)
{
	switch (r->match) {
	case PLAN_MATCH_TOKEN:
		return n != 0 && token != NULL && strcmp(r->text, token) == 0;
	case PLAN_MATCH_EVERY:
		return n != 0 && n % r->num == 0;
	case PLAN_MATCH_NTH:
		return n != 0 && n == r->num;
	case PLAN_MATCH_PATH:
		return path != NULL && strcmp(r->text, path) == 0;
	}
	return false;
}

/* Walk the rules in order and return the first that matches. */
const struct plan_rule *
plan_match(
    const struct plan *plan, uint64_t n, const char *path, const char *token)
{
	size_t i;

	if (plan == NULL)
		return NULL;
	for (i = 0; i < plan->nrules; i++)
		if (plan_rule_matches(&plan->rules[i], n, path, token))
			return &plan->rules[i];
	return NULL;
}
