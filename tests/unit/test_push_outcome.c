/*
 * The push outcome table: every documented APNs reason and FCM error
 * maps to the outcome written here by hand, every line of the table is
 * reachable, and Retry-After values are read as the RFC says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "push_int.h"

#define A PUSH_PROVIDER_APNS
#define F PUSH_PROVIDER_FCM

/* One expectation: what an answer must become. */
struct expect {
	enum push_provider p;
	int status;
	const char *reason;
	enum push_outcome outcome;
	unsigned flags;
};

static const struct expect expects[] = {
	{ A, 200, NULL, PUSH_OUTCOME_DELIVERED, 0 },
	{ A, 400, "BadCollapseId", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "BadDeviceToken", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "BadExpirationDate", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "BadMessageId", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "BadPriority", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "BadTopic", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "DeviceTokenNotForTopic", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "DuplicateHeaders", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "IdleTimeout", PUSH_OUTCOME_RETRY, PUSH_ROW_DRAIN },
	{ A, 400, "InvalidPushType", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "MissingDeviceToken", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "MissingTopic", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "PayloadEmpty", PUSH_OUTCOME_FAILED, 0 },
	{ A, 400, "TopicDisallowed", PUSH_OUTCOME_FAILED, 0 },
	{ A, 403, "BadCertificate", PUSH_OUTCOME_FAILED, 0 },
	{ A, 403, "BadCertificateEnvironment", PUSH_OUTCOME_FAILED, 0 },
	{ A, 403, "ExpiredProviderToken", PUSH_OUTCOME_RETRY,
	    PUSH_ROW_REAUTH | PUSH_ROW_DRAIN },
	{ A, 403, "Forbidden", PUSH_OUTCOME_FAILED, 0 },
	{ A, 403, "InvalidProviderToken", PUSH_OUTCOME_FAILED, 0 },
	{ A, 403, "MissingProviderToken", PUSH_OUTCOME_FAILED, 0 },
	{ A, 404, "BadPath", PUSH_OUTCOME_FAILED, 0 },
	{ A, 405, "MethodNotAllowed", PUSH_OUTCOME_FAILED, 0 },
	{ A, 410, "Unregistered", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ A, 410, "ExpiredToken", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ A, 413, "PayloadTooLarge", PUSH_OUTCOME_FAILED, 0 },
	{ A, 429, "TooManyProviderTokenUpdates", PUSH_OUTCOME_RETRY, 0 },
	{ A, 429, "TooManyRequests", PUSH_OUTCOME_RETRY, 0 },
	{ A, 500, "InternalServerError", PUSH_OUTCOME_RETRY, 0 },
	{ A, 503, "ServiceUnavailable", PUSH_OUTCOME_RETRY, PUSH_ROW_DRAIN },
	{ A, 503, "Shutdown", PUSH_OUTCOME_RETRY, PUSH_ROW_DRAIN },

	{ F, 200, NULL, PUSH_OUTCOME_DELIVERED, 0 },
	{ F, 400, "INVALID_ARGUMENT", PUSH_OUTCOME_FAILED, 0 },
	{ F, 400, "UNSPECIFIED_ERROR", PUSH_OUTCOME_FAILED, 0 },
	{ F, 401, "THIRD_PARTY_AUTH_ERROR", PUSH_OUTCOME_FAILED, 0 },
	{ F, 401, "UNAUTHENTICATED", PUSH_OUTCOME_RETRY, PUSH_ROW_REAUTH },
	{ F, 403, "SENDER_ID_MISMATCH", PUSH_OUTCOME_FAILED, 0 },
	{ F, 403, "PERMISSION_DENIED", PUSH_OUTCOME_FAILED, 0 },
	{ F, 404, "UNREGISTERED", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ F, 404, "NOT_FOUND", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ F, 429, "QUOTA_EXCEEDED", PUSH_OUTCOME_RETRY, 0 },
	{ F, 429, "RESOURCE_EXHAUSTED", PUSH_OUTCOME_RETRY, 0 },
	{ F, 500, "INTERNAL", PUSH_OUTCOME_RETRY, 0 },
	{ F, 503, "UNAVAILABLE", PUSH_OUTCOME_RETRY, PUSH_ROW_DRAIN },
	{ F, 401, "Whatever", PUSH_OUTCOME_RETRY, PUSH_ROW_REAUTH },

	/* Reasons nobody documented fall back on the status. */
	{ A, 410, "SomethingNew", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ A, 429, NULL, PUSH_OUTCOME_RETRY, 0 },
	{ A, 400, "SomethingNew", PUSH_OUTCOME_FAILED, 0 },
	{ A, 401, NULL, PUSH_OUTCOME_FAILED, 0 },
	{ F, 418, NULL, PUSH_OUTCOME_FAILED, 0 },
	{ A, 502, NULL, PUSH_OUTCOME_RETRY, 0 },
	{ F, 504, "DEADLINE", PUSH_OUTCOME_RETRY, 0 },
	{ A, 201, NULL, PUSH_OUTCOME_DELIVERED, 0 },
	{ A, 302, NULL, PUSH_OUTCOME_RETRY, 0 },
	{ A, 101, NULL, PUSH_OUTCOME_RETRY, 0 },
	{ F, 700, NULL, PUSH_OUTCOME_RETRY, 0 },
	{ F, 5000, NULL, PUSH_OUTCOME_RETRY, 0 },
	/* An APNs reason on FCM is not an APNs reason. */
	{ F, 410, "Unregistered", PUSH_OUTCOME_TOKEN_DEAD, 0 },
	{ F, 400, "BadDeviceToken", PUSH_OUTCOME_FAILED, 0 },
	{ A, 404, "UNREGISTERED", PUSH_OUTCOME_FAILED, 0 },

	/* The library's own reasons. */
	{ A, 0, "QueueFull", PUSH_OUTCOME_RETRY, 0 },
	{ F, 0, "Timeout", PUSH_OUTCOME_RETRY, 0 },
	{ A, 0, "ConnectionLost", PUSH_OUTCOME_RETRY, 0 },
	{ A, 0, "StreamReset", PUSH_OUTCOME_RETRY, 0 },
	{ F, 0, "AuthUnavailable", PUSH_OUTCOME_RETRY, 0 },
	{ F, 0, "AuthRejected", PUSH_OUTCOME_FAILED, 0 },
	{ A, 0, "BadNotification", PUSH_OUTCOME_FAILED, 0 },
	{ F, 0, "ClientClosed", PUSH_OUTCOME_FAILED, 0 },
	{ A, 0, "NoSuchThing", PUSH_OUTCOME_RETRY, 0 },
	{ A, 0, NULL, PUSH_OUTCOME_RETRY, 0 },
};

/* Every documented answer gets the outcome and side effects above. */
static void
test_documented(void **state)
{
	const struct push_outcome_row *row;
	size_t i;

	for (i = 0; i < sizeof(expects) / sizeof(expects[0]); i++) {
		row = push_outcome_find(
		    expects[i].p, expects[i].status, expects[i].reason);
		assert_non_null(row);
		if (row->outcome != expects[i].outcome ||
		    row->flags != expects[i].flags)
			fail_msg("%s %d %s -> %s flags %u",
			    push_provider_str(expects[i].p), expects[i].status,
			    expects[i].reason ? expects[i].reason : "(none)",
			    push_outcome_str(row->outcome), row->flags);
		if (expects[i].reason != NULL && row->reason != NULL)
			assert_string_equal(row->reason, expects[i].reason);
	}
}

/* A status and reason that lands on row i, or -1 when none does. */
static int
reach(size_t i, enum push_provider *pp, const char **rp)
{
	const struct push_outcome_row *row = &push_outcome_table[i];
	const char *reason =
	    row->reason != NULL ? row->reason : "NotInTheTable";
	int p, s;

	for (p = 0; p <= 1; p++) {
		if ((row->providers & (1u << p)) == 0)
			continue;
		for (s = row->status_lo; s <= row->status_hi; s++) {
			if (push_outcome_find(
			        (enum push_provider)p, s, reason) == row) {
				*pp = (enum push_provider)p;
				*rp = reason;
				return s;
			}
		}
	}
	return -1;
}

/* No line of the table is dead: each one is what some answer finds. */
static void
test_every_row_reachable(void **state)
{
	enum push_provider p;
	const char *reason;
	size_t i;

	for (i = 0; i < push_outcome_rows; i++) {
		if (reach(i, &p, &reason) < 0)
			fail_msg("row %zu (%s) is never chosen", i,
			    push_outcome_table[i].name);
	}
}

/* Each line is sane: names set, RETRY rows wait, others do not. */
static void
test_rows_sane(void **state)
{
	const struct push_outcome_row *row;
	size_t i;

	for (i = 0; i < push_outcome_rows; i++) {
		row = &push_outcome_table[i];
		assert_non_null(row->name);
		assert_true(row->providers != 0);
		assert_true(row->status_lo <= row->status_hi);
		if (row->outcome == PUSH_OUTCOME_RETRY)
			assert_true(row->retry_ms > 0);
		else
			assert_int_equal(row->retry_ms, 0);
	}
	assert_null(push_outcome_table[push_outcome_rows - 1].reason);
	assert_int_equal(
	    push_outcome_internal("QueueFull")->outcome, PUSH_OUTCOME_RETRY);
}

/* Retry-After: delta seconds, HTTP dates, junk, the one-hour cap. */
static void
test_retry_after(void **state)
{
	long long now = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */

	assert_int_equal(push_outcome_retry_after(NULL, now), -1);
	assert_int_equal(push_outcome_retry_after("2", now), 2000);
	assert_int_equal(push_outcome_retry_after(" 0 ", now), 0);
	assert_int_equal(push_outcome_retry_after("120", now), 120000);
	assert_int_equal(push_outcome_retry_after("99999", now), 3600000);
	assert_int_equal(push_outcome_retry_after("2x", now), -1);
	assert_int_equal(push_outcome_retry_after("soon", now), -1);
	assert_int_equal(
	    push_outcome_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
	    30000);
	assert_int_equal(
	    push_outcome_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), 0);
	assert_int_equal(
	    push_outcome_retry_after("Tue, 14 Nov 2023 22:13:50 GMT junk", now),
	    -1);
}

/* The names callers print. */
static void
test_strings(void **state)
{
	assert_string_equal(
	    push_outcome_str(PUSH_OUTCOME_DELIVERED), "delivered");
	assert_string_equal(push_outcome_str(PUSH_OUTCOME_RETRY), "retry");
	assert_string_equal(
	    push_outcome_str(PUSH_OUTCOME_TOKEN_DEAD), "token_dead");
	assert_string_equal(push_outcome_str(PUSH_OUTCOME_FAILED), "failed");
	assert_string_equal(push_provider_str(PUSH_PROVIDER_APNS), "apns");
	assert_string_equal(push_provider_str(PUSH_PROVIDER_FCM), "fcm");
}

/* Run the table tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented),
		cmocka_unit_test(test_every_row_reachable),
		cmocka_unit_test(test_rows_sane),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
