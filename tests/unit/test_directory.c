/*
 * Unit tests of the pure parts of server/directory.c (error mapping, AD
 * times, the unicodePwd encoding, filter escaping, GUIDs) and of the
 * worker pool in server/workers.c that runs directory operations.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <ldap.h>

#include "directory.h"
#include "workers.h"

/* Map rc and diag, and return the status; the detail goes to buf. */
static enum directory_status
map(int rc, const char *diag, char *buf, size_t cap)
{
	return directory_map_error(rc, diag, buf, cap);
}

static void
test_map_bind_codes(void **state)
{
	char buf[512];
	const char *fmt = "80090308: LdapErr: DSID-0C0903A9, comment: "
	                  "AcceptSecurityContext error, data %s, v1db1";
	char diag[200];
	struct {
		const char *code;
		enum directory_status want;
	} cases[] = {
		{ "52e", DIRECTORY_BAD_CREDENTIALS },
		{ "775", DIRECTORY_LOCKED_OUT },
		{ "532", DIRECTORY_PASSWORD_EXPIRED },
		{ "773", DIRECTORY_MUST_CHANGE },
		{ "525", DIRECTORY_NO_SUCH_USER },
		{ "533", DIRECTORY_FAILED },
		{ "701", DIRECTORY_FAILED },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		snprintf(diag, sizeof(diag), fmt, cases[i].code);
		assert_int_equal(
		    map(LDAP_INVALID_CREDENTIALS, diag, buf, sizeof(buf)),
		    cases[i].want);
		/* The detail keeps AD's own text for operators. */
		assert_non_null(strstr(buf, cases[i].code));
	}

	/* No diagnostic at all: a plain bad password. */
	assert_int_equal(map(LDAP_INVALID_CREDENTIALS, NULL, buf, sizeof(buf)),
	    DIRECTORY_BAD_CREDENTIALS);
	assert_string_equal(buf, "invalid credentials (Invalid credentials)");
}

static void
test_map_policy_and_other(void **state)
{
	char buf[512];

	assert_int_equal(
	    map(LDAP_CONSTRAINT_VIOLATION,
	        "0000052D: Constraint violation - check_password_restrictions: "
	        "the password is too short. It should be equal or longer than "
	        "7 "
	        "characters!",
	        buf, sizeof(buf)),
	    DIRECTORY_POLICY_VIOLATION);
	assert_non_null(strstr(buf, "too short"));
	assert_non_null(strstr(buf, "domain policy"));

	/* Windows spells the code in lower case in some versions. */
	assert_int_equal(map(LDAP_UNWILLING_TO_PERFORM, "0000052d: SvcErr", buf,
	                     sizeof(buf)),
	    DIRECTORY_POLICY_VIOLATION);
	assert_int_equal(map(LDAP_CONSTRAINT_VIOLATION, "00000056: AtrErr", buf,
	                     sizeof(buf)),
	    DIRECTORY_BAD_CREDENTIALS);
	assert_int_equal(
	    map(LDAP_CONSTRAINT_VIOLATION, "something else", buf, sizeof(buf)),
	    DIRECTORY_FAILED);

	assert_int_equal(map(LDAP_SERVER_DOWN, NULL, buf, sizeof(buf)),
	    DIRECTORY_UNREACHABLE);
	assert_int_equal(map(LDAP_CONNECT_ERROR, NULL, buf, sizeof(buf)),
	    DIRECTORY_UNREACHABLE);
	assert_int_equal(
	    map(LDAP_TIMEOUT, NULL, buf, sizeof(buf)), DIRECTORY_UNREACHABLE);
	assert_int_equal(map(LDAP_STRONG_AUTH_REQUIRED, NULL, buf, sizeof(buf)),
	    DIRECTORY_FAILED);
	assert_non_null(strstr(buf, "encrypted"));
	assert_int_equal(map(LDAP_INSUFFICIENT_ACCESS, NULL, buf, sizeof(buf)),
	    DIRECTORY_FAILED);
	assert_int_equal(
	    map(LDAP_OTHER, NULL, buf, sizeof(buf)), DIRECTORY_FAILED);

	assert_int_equal(
	    map(LDAP_SUCCESS, "ignored", buf, sizeof(buf)), DIRECTORY_OK);
	assert_string_equal(buf, "");
}

static void
test_map_detail_truncates(void **state)
{
	char small[16];

	map(LDAP_INVALID_CREDENTIALS, "data 775", small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void
test_status_names(void **state)
{
	assert_string_equal(directory_status_name(DIRECTORY_OK), "OK");
	assert_string_equal(
	    directory_status_name(DIRECTORY_LOCKED_OUT), "LOCKED_OUT");
	assert_string_equal(directory_status_name(DIRECTORY_FAILED), "FAILED");
	assert_string_equal(
	    directory_status_name((enum directory_status)99), "FAILED");
}

static void
test_filetime(void **state)
{
	/* 2024-01-01T00:00:00Z is 1704067200. */
	int64_t ft = (1704067200LL + 11644473600LL) * 10000000LL;

	assert_int_equal(directory_filetime_to_unix(ft), 1704067200);
	assert_int_equal(directory_filetime_to_unix(ft + 9999999), 1704067200);
	assert_int_equal(directory_filetime_to_unix(0), 0);
	assert_int_equal(directory_filetime_to_unix(-5), 0);
	assert_true(directory_filetime_to_unix(INT64_MAX) == DIRECTORY_NEVER);
	/* 1601 itself, before the Unix epoch, becomes 0. */
	assert_int_equal(directory_filetime_to_unix(1), 0);
}

static void
test_interval(void **state)
{
	/* What AD stores for 42 days and for one minute. */
	assert_int_equal(
	    directory_interval_to_seconds(-36288000000000LL), 42 * 86400);
	assert_int_equal(directory_interval_to_seconds(-600000000LL), 60);
	assert_int_equal(directory_interval_to_seconds(0), 0);
	assert_true(
	    directory_interval_to_seconds(INT64_MIN) == DIRECTORY_NEVER);
}

static void
test_gentime(void **state)
{
	const char *t = "20240131235959.0Z";

	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), 1706745599);
	t = "19700101000000Z";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), 0);
	t = "20240131235959,123Z";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), 1706745599);

	t = "20240131235959.0";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), -1);
	t = "2024013123595Z";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), -1);
	t = "20241331235959.0Z";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), -1);
	t = "2024a131235959.0Z";
	assert_int_equal(directory_gentime_to_unix(t, strlen(t)), -1);
	/* The length given is what counts, not a NUL further on. */
	t = "20240131235959.0Zjunk";
	assert_int_equal(directory_gentime_to_unix(t, 17), 1706745599);
	assert_int_equal(directory_gentime_to_unix(t, 18), -1);
}

static void
test_guid(void **state)
{
	/* The first three fields are little-endian on the wire. */
	const unsigned char b[16] = {
		0x33,
		0x22,
		0x11,
		0x00,
		0x55,
		0x44,
		0x77,
		0x66,
		0x88,
		0x99,
		0xaa,
		0xbb,
		0xcc,
		0xdd,
		0xee,
		0xff,
	};
	char out[37];

	directory_guid_format(b, out);
	assert_string_equal(out, "00112233-4455-6677-8899-aabbccddeeff");
}

/* Check the unicodePwd value of pw against the expected UTF-16LE bytes. */
static void
check_password(const char *pw, const unsigned char *want, size_t want_len)
{
	unsigned char *got;
	size_t len = 0;

	got = directory_password_value(pw, &len);
	assert_non_null(got);
	assert_int_equal(len, want_len);
	assert_memory_equal(got, want, want_len);
	free(got);
}

static void
test_password_value(void **state)
{
	const unsigned char ascii[] = {
		'"',
		0,
		'a',
		0,
		'B',
		0,
		'1',
		0,
		'"',
		0,
	};
	/* "é" (U+00E9), "€" (U+20AC) and U+1F600 as a surrogate pair. */
	const unsigned char wide[] = {
		'"',
		0,
		0xe9,
		0x00,
		0xac,
		0x20,
		0x3d,
		0xd8,
		0x00,
		0xde,
		'"',
		0,
	};
	const unsigned char quote[] = {
		'"',
		0,
		'"',
		0,
		'"',
		0,
	};
	size_t len;

	check_password("aB1", ascii, sizeof(ascii));
	check_password(
	    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", wide, sizeof(wide));
	check_password("\"", quote, sizeof(quote));

	assert_null(directory_password_value("", &len));
	assert_null(directory_password_value("\xc3", &len));     /* cut */
	assert_null(directory_password_value("\xc0\xaf", &len)); /* overlong */
	assert_null(directory_password_value("\xed\xa0\x80", &len));
	assert_null(directory_password_value("\xff", &len));
}

static void
test_password_too_long(void **state)
{
	char pw[1026];
	unsigned char *v;
	size_t len;

	memset(pw, 'x', sizeof(pw) - 1);
	pw[sizeof(pw) - 1] = '\0';
	assert_null(directory_password_value(pw, &len));
	pw[1024] = '\0';
	v = directory_password_value(pw, &len);
	assert_non_null(v);
	assert_int_equal(len, 2 * 1024 + 4);
	free(v);
}

static void
test_filter_escape(void **state)
{
	char out[64];

	assert_int_equal(
	    directory_filter_escape("alice@x.test", out, sizeof(out)), 12);
	assert_string_equal(out, "alice@x.test");

	assert_int_equal(
	    directory_filter_escape("*)(uid=*", out, sizeof(out)), 16);
	assert_string_equal(out, "\\2a\\29\\28uid=\\2a");
	directory_filter_escape("a\\b\tc", out, sizeof(out));
	assert_string_equal(out, "a\\5cb\\09c");
	/* UTF-8 passes unchanged. */
	directory_filter_escape("j\xc3\xb6rg", out, sizeof(out));
	assert_string_equal(out, "j\xc3\xb6rg");

	/* Exactly fitting, and one byte short. */
	assert_int_equal(directory_filter_escape("abc", out, 4), 3);
	assert_int_equal(directory_filter_escape("abcd", out, 4), -1);
	assert_int_equal(directory_filter_escape("(", out, 4), 3);
	assert_int_equal(directory_filter_escape("a(", out, 4), -1);
	assert_int_equal(directory_filter_escape("", out, 0), -1);
}

/*
 * The worker pool.
 */

struct pool_test {
	struct event_base *base;
	struct workers *w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate_open; /* blocked jobs wait for this */
	int started;    /* jobs that began running */
	int order[512]; /* completion order of job ids */
	pthread_t loop_thread;
	int ncompleted;
	int ncancelled;
	bool submitting;
	bool called_inside_submit;
	bool free_in_completion;
	bool resubmit_when_cancelled;
	int resubmit_errno;
};

struct pool_job {
	struct pool_test *t;
	int id;
	bool blocks;
	bool ran;
	pthread_t thread;
};

/* Runs on a worker: optionally wait at the gate. */
static void
pool_run_cb(void *arg)
{
	struct pool_job *j = arg;
	struct pool_test *t = j->t;

	pthread_mutex_lock(&t->lock);
	t->started++;
	pthread_cond_broadcast(&t->cond);
	while (j->blocks && !t->gate_open)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	j->ran = true;
	j->thread = pthread_self();
}

/* Runs on the loop: record the order, stop when asked. */
static void
pool_done_cb(void *arg, bool cancelled)
{
	struct pool_job *j = arg;
	struct pool_test *t = j->t;

	if (t->submitting)
		t->called_inside_submit = true;
	assert_true(pthread_equal(pthread_self(), t->loop_thread));
	if (cancelled) {
		assert_false(j->ran);
		t->ncancelled++;
		if (t->resubmit_when_cancelled) {
			assert_int_equal(
			    workers_submit(t->w, pool_run_cb, pool_done_cb, j),
			    -1);
			t->resubmit_errno = errno;
		}
	} else {
		assert_true(j->ran);
		assert_false(pthread_equal(j->thread, t->loop_thread));
	}
	t->order[t->ncompleted++] = j->id;
	if (t->free_in_completion && t->w != NULL) {
		struct workers *w = t->w;

		t->w = NULL;
		workers_free(w);
	}
	free(j);
}

/* Submit one job; returns what workers_submit returned. */
static int
pool_submit(struct pool_test *t, int id, bool blocks)
{
	struct pool_job *j = calloc(1, sizeof(*j));
	int rc;

	assert_non_null(j);
	j->t = t;
	j->id = id;
	j->blocks = blocks;
	t->submitting = true;
	rc = workers_submit(t->w, pool_run_cb, pool_done_cb, j);
	t->submitting = false;
	if (rc != 0)
		free(j);
	return rc;
}

/* Run the loop until n completions arrived (or a few seconds passed). */
static void
pool_wait(struct pool_test *t, int n)
{
	int i;

	for (i = 0; i < 500 && t->ncompleted < n; i++) {
		struct timeval tv = { 0, 10000 };

		event_base_loopexit(t->base, &tv);
		event_base_dispatch(t->base);
	}
	assert_int_equal(t->ncompleted, n);
}

/* Wait on the worker side until n jobs have started. */
static void
pool_wait_started(struct pool_test *t, int n)
{
	pthread_mutex_lock(&t->lock);
	while (t->started < n)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

/* Open the gate for blocked jobs. */
static void
pool_open_gate(struct pool_test *t)
{
	pthread_mutex_lock(&t->lock);
	t->gate_open = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static int
pool_setup(void **state)
{
	struct pool_test *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	t->base = event_base_new();
	t->loop_thread = pthread_self();
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	*state = t;
	return t->base == NULL ? -1 : 0;
}

static int
pool_teardown(void **state)
{
	struct pool_test *t = *state;

	workers_free(t->w);
	event_base_free(t->base);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return 0;
}

static void
test_pool_runs_and_completes_on_loop(void **state)
{
	struct pool_test *t = *state;
	int i;

	t->w = workers_new(t->base, 3, 16);
	assert_non_null(t->w);
	for (i = 0; i < 10; i++)
		assert_int_equal(pool_submit(t, i, false), 0);
	assert_int_equal(workers_pending(t->w), 10);
	/* Nothing completes before the loop runs. */
	usleep(20000);
	assert_int_equal(t->ncompleted, 0);

	pool_wait(t, 10);
	assert_false(t->called_inside_submit);
	assert_int_equal(t->ncancelled, 0);
	assert_int_equal(workers_pending(t->w), 0);
}

static void
test_pool_queue_is_bounded(void **state)
{
	struct pool_test *t = *state;
	int i;

	/* One thread held at the gate, then a queue of two. */
	t->w = workers_new(t->base, 1, 2);
	assert_non_null(t->w);
	assert_int_equal(pool_submit(t, 0, true), 0);
	pool_wait_started(t, 1);
	assert_int_equal(pool_submit(t, 1, false), 0);
	assert_int_equal(pool_submit(t, 2, false), 0);
	errno = 0;
	assert_int_equal(pool_submit(t, 3, false), -1);
	assert_int_equal(errno, EAGAIN);

	pool_open_gate(t);
	pool_wait(t, 3);
	/* One thread: completions come in submission order. */
	for (i = 0; i < 3; i++)
		assert_int_equal(t->order[i], i);
	assert_int_equal(pool_submit(t, 4, false), 0);
	pool_wait(t, 4);
}

/* Open the gate from another thread a little later. */
static void *
pool_gate_opener(void *arg)
{
	usleep(50000);
	pool_open_gate(arg);
	return NULL;
}

static void
test_pool_free_cancels_queued(void **state)
{
	struct pool_test *t = *state;
	pthread_t opener;

	t->w = workers_new(t->base, 1, 8);
	assert_non_null(t->w);
	assert_int_equal(pool_submit(t, 0, true), 0);
	pool_wait_started(t, 1);
	assert_int_equal(pool_submit(t, 1, false), 0);
	assert_int_equal(pool_submit(t, 2, false), 0);

	/*
	 * Freeing waits for the running job, then cancels the rest; a
	 * completion that submits again is refused.
	 */
	t->resubmit_when_cancelled = true;
	pthread_create(&opener, NULL, pool_gate_opener, t);
	workers_free(t->w);
	t->w = NULL;
	pthread_join(opener, NULL);

	assert_int_equal(t->ncompleted, 3);
	assert_int_equal(t->order[0], 0);
	assert_int_equal(t->ncancelled, 2);
	assert_int_equal(t->resubmit_errno, ESHUTDOWN);
}

static void
test_pool_free_from_completion(void **state)
{
	struct pool_test *t = *state;

	t->w = workers_new(t->base, 2, 8);
	assert_non_null(t->w);
	assert_int_equal(pool_submit(t, 0, false), 0);
	assert_int_equal(pool_submit(t, 1, false), 0);

	/* A completion may free the pool; the other still completes. */
	t->free_in_completion = true;
	pool_wait(t, 2);
	assert_null(t->w);
}

static void
test_pool_defaults(void **state)
{
	struct pool_test *t = *state;
	int i;

	t->w = workers_new(t->base, 0, 0);
	assert_non_null(t->w);
	for (i = 0; i < WORKERS_DEFAULT_QUEUE; i++)
		assert_int_equal(pool_submit(t, i, false), 0);
	pool_wait(t, WORKERS_DEFAULT_QUEUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_bind_codes),
		cmocka_unit_test(test_map_policy_and_other),
		cmocka_unit_test(test_map_detail_truncates),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_filetime),
		cmocka_unit_test(test_interval),
		cmocka_unit_test(test_gentime),
		cmocka_unit_test(test_guid),
		cmocka_unit_test(test_password_value),
		cmocka_unit_test(test_password_too_long),
		cmocka_unit_test(test_filter_escape),
		cmocka_unit_test_setup_teardown(
		    test_pool_runs_and_completes_on_loop, pool_setup,
		    pool_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pool_queue_is_bounded, pool_setup, pool_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pool_free_cancels_queued, pool_setup, pool_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pool_free_from_completion, pool_setup, pool_teardown),
		cmocka_unit_test_setup_teardown(
		    test_pool_defaults, pool_setup, pool_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
