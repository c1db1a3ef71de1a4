/*
 * Runs directory operations through server/directory.c on a loop of its
 * own and prints the results as one JSON object, so the integration tests
 * can drive the real module against a real directory. It also measures
 * the longest stall of the loop while the operations ran.
 *
 *   directory-driver [-t threads] [-n copies] [-u since_usn] [-c] OP [LOGIN]
 *
 * OP is test, search, find, reset, unlock, policy or check. Settings come
 * from AD_URL, AD_BIND_DN, AD_BIND_PASSWORD, AD_BASE_DN, AD_CA_FILE,
 * AD_LOGIN_ATTRIBUTE, AD_CONNECT_TIMEOUT_MS, AD_TIMEOUT_MS, AD_PAGE_SIZE
 * and AD_MAX_USERS; the password of reset and check from
 * DIRECTORY_PASSWORD, so that no password appears in a process listing.
 * -n runs that many copies at once; -c stops the pool right after
 * submitting, to see queued jobs cancelled.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "directory.h"
#include "util.h"
#include "workers.h"

#define DRIVER_TICK_MS 5

struct driver {
	struct event_base *base;
	struct workers *workers;
	struct event *tick;
	uint64_t last_tick_ms;
	uint64_t max_gap_ms;
	json_t *results;
	int remaining;
	bool submitting;
};

/* One submitted operation. */
struct driver_call {
	struct driver *d;
	size_t index;
};

/* A value of the environment, or NULL when unset or empty. */
static const char *
driver_env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* An integer from the environment, or 0. */
static int
driver_env_int(const char *name)
{
	const char *v = driver_env(name);

	return v != NULL ? atoi(v) : 0;
}

/* A time in seconds as JSON: null for "never". */
static json_t *
driver_time(int64_t t)
{
	return t == DIRECTORY_NEVER ? json_null() : json_integer(t);
}

/* A string that may be NULL as JSON. */
static json_t *
driver_string(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* One user as a JSON object. */
static json_t *
driver_user(const struct directory_user *u)
{
	return json_pack("{s:o s:o s:o s:o s:o s:s s:I s:I s:o s:o s:o s:I "
	                 "s:I s:b s:b s:b}",
	    "dn", driver_string(u->dn), "login", driver_string(u->login),
	    "display_name", driver_string(u->display_name), "mail",
	    driver_string(u->mail), "mobile", driver_string(u->mobile), "guid",
	    u->guid, "account_control", (json_int_t)u->account_control,
	    "computed_control", (json_int_t)u->computed_control, "pwd_last_set",
	    driver_time(u->pwd_last_set), "password_expires",
	    driver_time(u->password_expires), "lockout_time",
	    driver_time(u->lockout_time), "when_changed",
	    (json_int_t)u->when_changed, "usn_changed",
	    (json_int_t)u->usn_changed, "locked", u->locked, "password_expired",
	    u->password_expired, "disabled", u->disabled);
}

/* The policy as a JSON object. */
static json_t *
driver_policy(const struct directory_policy *p)
{
	return json_pack("{s:i s:i s:b s:o s:I s:i s:o s:I}", "min_length",
	    p->min_length, "history_length", p->history_length, "complexity",
	    p->complexity, "max_age", driver_time(p->max_age), "min_age",
	    (json_int_t)p->min_age, "lockout_threshold", p->lockout_threshold,
	    "lockout_duration", driver_time(p->lockout_duration),
	    "lockout_window", (json_int_t)p->lockout_window);
}

/* A result arrives on the loop: record it, stop when it is the last. */
static void
driver_done_cb(const struct directory_result *r, void *arg)
{
	struct driver_call *call = arg;
	struct driver *d = call->d;
	json_t *users = json_array();
	size_t i;

	for (i = 0; i < r->nusers; i++)
		json_array_append_new(users, driver_user(&r->users[i]));
	json_array_set_new(d->results, call->index,
	    json_pack("{s:s s:s s:I s:I s:I s:I s:o s:o s:b}", "status",
	        directory_status_name(r->status), "detail", r->detail,
	        "elapsed_ms", (json_int_t)r->elapsed_ms, "count",
	        (json_int_t)r->count, "max_usn", (json_int_t)r->max_usn,
	        "pages", (json_int_t)r->pages, "users", users, "policy",
	        driver_policy(&r->policy), "inside_submit", d->submitting));
	free(call);

	if (--d->remaining == 0)
		event_base_loopexit(d->base, NULL);
}

/* Every few milliseconds: note how late the loop came round. */
static void
driver_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct driver *d = arg;
	uint64_t now = util_now_ms();

	if (now - d->last_tick_ms > d->max_gap_ms)
		d->max_gap_ms = now - d->last_tick_ms;
	d->last_tick_ms = now;
}

/* Read the settings from the environment. */
static void
driver_settings(struct directory_settings *s)
{
	const char *login = driver_env("AD_LOGIN_ATTRIBUTE");

	memset(s, 0, sizeof(*s));
	s->url = driver_env("AD_URL");
	s->bind_dn = driver_env("AD_BIND_DN");
	s->bind_password = getenv("AD_BIND_PASSWORD");
	s->base_dn = driver_env("AD_BASE_DN");
	s->ca_file = driver_env("AD_CA_FILE");
	s->login = login != NULL && strcasecmp(login, "sAMAccountName") == 0
	    ? DIRECTORY_LOGIN_SAM
	    : DIRECTORY_LOGIN_UPN;
	s->connect_timeout_ms = driver_env_int("AD_CONNECT_TIMEOUT_MS");
	s->timeout_ms = driver_env_int("AD_TIMEOUT_MS");
	s->page_size = driver_env_int("AD_PAGE_SIZE");
	s->max_users = (size_t)driver_env_int("AD_MAX_USERS");
}

/* Submit one operation; returns what the module returned. */
static int
driver_submit(struct driver *d, const struct directory_settings *s,
    const char *op, const char *login, int64_t since_usn,
    struct driver_call *call)
{
	const char *password = getenv("DIRECTORY_PASSWORD");

	if (strcmp(op, "test") == 0)
		return directory_test(d->workers, s, driver_done_cb, call);
	if (strcmp(op, "search") == 0)
		return directory_search_users(
		    d->workers, s, since_usn, driver_done_cb, call);
	if (strcmp(op, "find") == 0)
		return directory_find_user(
		    d->workers, s, login, driver_done_cb, call);
	if (strcmp(op, "reset") == 0)
		return directory_reset_password(
		    d->workers, s, login, password, driver_done_cb, call);
	if (strcmp(op, "unlock") == 0)
		return directory_unlock(
		    d->workers, s, login, driver_done_cb, call);
	if (strcmp(op, "policy") == 0)
		return directory_read_policy(
		    d->workers, s, driver_done_cb, call);
	if (strcmp(op, "check") == 0)
		return directory_check_password(
		    d->workers, s, login, password, driver_done_cb, call);
	return -2;
}

/* Submit n copies; a copy that cannot be queued is recorded as such. */
static int
driver_submit_all(struct driver *d, const struct directory_settings *s,
    const char *op, const char *login, int64_t since_usn, int n)
{
	struct driver_call *call;
	int i, rc;

	d->submitting = true;
	for (i = 0; i < n; i++) {
		call = calloc(1, sizeof(*call));
		if (call == NULL)
			return -1;
		call->d = d;
		call->index = (size_t)i;
		json_array_append_new(d->results, json_null());
		rc = driver_submit(d, s, op, login, since_usn, call);
		if (rc == -2) {
			free(call);
			return -1;
		}
		if (rc != 0) {
			free(call);
			json_array_set_new(d->results, (size_t)i,
			    json_pack("{s:s}", "status", "NOT_QUEUED"));
			continue;
		}
		d->remaining++;
	}
	d->submitting = false;
	return 0;
}

/* Explain the command line and exit. */
static void
driver_usage(void)
{
	fprintf(stderr,
	    "usage: directory-driver [-t threads] [-n copies] "
	    "[-u since_usn] [-c] test|search|find|reset|unlock|policy|check "
	    "[LOGIN]\n");
	exit(2);
}

/* Print the results and the loop's longest stall as one JSON object. */
static void
driver_print(struct driver *d)
{
	json_t *out;

	out = json_pack("{s:O s:I}", "results", d->results, "loop_max_gap_ms",
	    (json_int_t)d->max_gap_ms);
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(out);
}

/* Set up a loop and a pool, run the operations, print the results. */
int
main(int argc, char **argv)
{
	struct directory_settings s;
	struct driver d;
	struct timeval tick = { 0, DRIVER_TICK_MS * 1000 };
	int64_t since_usn = 0;
	int threads = 0, copies = 1, opt;
	bool cancel = false;

	while ((opt = getopt(argc, argv, "t:n:u:c")) != -1) {
		switch (opt) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'n':
			copies = atoi(optarg);
			break;
		case 'u':
			since_usn = atoll(optarg);
			break;
		case 'c':
			cancel = true;
			break;
		default:
			driver_usage();
		}
	}
	if (optind >= argc || copies < 1)
		driver_usage();

	signal(SIGPIPE, SIG_IGN);
	driver_settings(&s);
	memset(&d, 0, sizeof(d));
	d.base = event_base_new();
	d.workers = workers_new(d.base, threads, copies);
	d.results = json_array();
	if (d.base == NULL || d.workers == NULL || d.results == NULL) {
		fprintf(stderr, "directory-driver: cannot set up the loop\n");
		return 1;
	}
	d.tick = event_new(d.base, -1, EV_PERSIST, driver_tick_cb, &d);
	event_add(d.tick, &tick);
	d.last_tick_ms = util_now_ms();

	if (driver_submit_all(&d, &s, argv[optind],
	        optind + 1 < argc ? argv[optind + 1] : NULL, since_usn,
	        copies) != 0)
		driver_usage();
	if (cancel) {
		workers_free(d.workers);
		d.workers = NULL;
	}
	if (d.remaining > 0)
		event_base_dispatch(d.base);

	workers_free(d.workers);
	driver_print(&d);
	json_decref(d.results);
	event_free(d.tick);
	event_base_free(d.base);
	return 0;
}
