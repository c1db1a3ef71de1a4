/*
 * The one table that turns every documented APNs reason and FCM error
 * (and the library's own failures) into an outcome: delivered, retry
 * after a delay, token dead, or failed for good. Also Retry-After.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "push_int.h"

#define APNS (1u << PUSH_PROVIDER_APNS)
#define FCM (1u << PUSH_PROVIDER_FCM)
#define BOTH (APNS | FCM)

#define OK PUSH_OUTCOME_DELIVERED
#define RETRY PUSH_OUTCOME_RETRY
#define DEAD PUSH_OUTCOME_TOKEN_DEAD
#define FAIL PUSH_OUTCOME_FAILED

/*
 * Rows are searched in order: exact reasons first, then any reason of a
 * status, then a status class. Rows with status 0 are the library's own
 * reasons (no answer came).
 */
const struct push_outcome_row push_outcome_table[] = {
	/* APNs, by reason. */
	{ APNS, 200, 200, NULL, "Success", OK, 0, 0 },
	{ APNS, 400, 400, "BadCollapseId", "BadCollapseId", FAIL, 0, 0 },
	{ APNS, 400, 400, "BadDeviceToken", "BadDeviceToken", FAIL, 0, 0 },
	{ APNS, 400, 400, "BadExpirationDate", "BadExpirationDate", FAIL, 0,
	    0 },
	{ APNS, 400, 400, "BadMessageId", "BadMessageId", FAIL, 0, 0 },
	{ APNS, 400, 400, "BadPriority", "BadPriority", FAIL, 0, 0 },
	{ APNS, 400, 400, "BadTopic", "BadTopic", FAIL, 0, 0 },
	{ APNS, 400, 400, "DeviceTokenNotForTopic", "DeviceTokenNotForTopic",
	    FAIL, 0, 0 },
	{ APNS, 400, 400, "DuplicateHeaders", "DuplicateHeaders", FAIL, 0, 0 },
	{ APNS, 400, 400, "IdleTimeout", "IdleTimeout", RETRY, 100,
	    PUSH_ROW_DRAIN },
	{ APNS, 400, 400, "InvalidPushType", "InvalidPushType", FAIL, 0, 0 },
	{ APNS, 400, 400, "MissingDeviceToken", "MissingDeviceToken", FAIL, 0,
	    0 },
	{ APNS, 400, 400, "MissingTopic", "MissingTopic", FAIL, 0, 0 },
	{ APNS, 400, 400, "PayloadEmpty", "PayloadEmpty", FAIL, 0, 0 },
	{ APNS, 400, 400, "TopicDisallowed", "TopicDisallowed", FAIL, 0, 0 },
	{ APNS, 403, 403, "BadCertificate", "BadCertificate", FAIL, 0, 0 },
	{ APNS, 403, 403, "BadCertificateEnvironment",
	    "BadCertificateEnvironment", FAIL, 0, 0 },
	{ APNS, 403, 403, "ExpiredProviderToken", "ExpiredProviderToken", RETRY,
	    1000, PUSH_ROW_REAUTH | PUSH_ROW_DRAIN },
	{ APNS, 403, 403, "Forbidden", "Forbidden", FAIL, 0, 0 },
	{ APNS, 403, 403, "InvalidProviderToken", "InvalidProviderToken", FAIL,
	    0, 0 },
	{ APNS, 403, 403, "MissingProviderToken", "MissingProviderToken", FAIL,
	    0, 0 },
	{ APNS, 404, 404, "BadPath", "BadPath", FAIL, 0, 0 },
	{ APNS, 405, 405, "MethodNotAllowed", "MethodNotAllowed", FAIL, 0, 0 },
	{ APNS, 410, 410, "Unregistered", "Unregistered", DEAD, 0, 0 },
	{ APNS, 410, 410, "ExpiredToken", "ExpiredToken", DEAD, 0, 0 },
	{ APNS, 413, 413, "PayloadTooLarge", "PayloadTooLarge", FAIL, 0, 0 },
	{ APNS, 429, 429, "TooManyProviderTokenUpdates",
	    "TooManyProviderTokenUpdates", RETRY, 60000, 0 },
	{ APNS, 429, 429, "TooManyRequests", "TooManyRequests", RETRY, 30000,
	    0 },
	{ APNS, 500, 500, "InternalServerError", "InternalServerError", RETRY,
	    1000, 0 },
	{ APNS, 503, 503, "ServiceUnavailable", "ServiceUnavailable", RETRY,
	    5000, PUSH_ROW_DRAIN },
	{ APNS, 503, 503, "Shutdown", "Shutdown", RETRY, 1000, PUSH_ROW_DRAIN },

	/* FCM, by errorCode (or status when no errorCode came). */
	{ FCM, 200, 200, NULL, "Success", OK, 0, 0 },
	{ FCM, 400, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", FAIL, 0, 0 },
	{ FCM, 400, 499, "UNSPECIFIED_ERROR", "UNSPECIFIED_ERROR", FAIL, 0, 0 },
	{ FCM, 401, 401, "THIRD_PARTY_AUTH_ERROR", "THIRD_PARTY_AUTH_ERROR",
	    FAIL, 0, 0 },
	{ FCM, 401, 401, "UNAUTHENTICATED", "UNAUTHENTICATED", RETRY, 1000,
	    PUSH_ROW_REAUTH },
	{ FCM, 403, 403, "SENDER_ID_MISMATCH", "SENDER_ID_MISMATCH", FAIL, 0,
	    0 },
	{ FCM, 403, 403, "PERMISSION_DENIED", "PERMISSION_DENIED", FAIL, 0, 0 },
	{ FCM, 404, 404, "UNREGISTERED", "UNREGISTERED", DEAD, 0, 0 },
	{ FCM, 404, 404, "NOT_FOUND", "NOT_FOUND", DEAD, 0, 0 },
	{ FCM, 429, 429, "QUOTA_EXCEEDED", "QUOTA_EXCEEDED", RETRY, 60000, 0 },
	{ FCM, 429, 429, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", RETRY,
	    60000, 0 },
	{ FCM, 500, 500, "INTERNAL", "INTERNAL", RETRY, 1000, 0 },
	{ FCM, 503, 503, "UNAVAILABLE", "UNAVAILABLE", RETRY, 5000,
	    PUSH_ROW_DRAIN },

	/* Any reason of a status the provider did not name. */
	{ FCM, 401, 401, NULL, "Unauthorized", RETRY, 1000, PUSH_ROW_REAUTH },
	{ BOTH, 410, 410, NULL, "Gone", DEAD, 0, 0 },
	{ BOTH, 429, 429, NULL, "TooManyRequests", RETRY, 30000, 0 },

	/* Status classes. */
	{ BOTH, 200, 299, NULL, "Success", OK, 0, 0 },
	{ BOTH, 400, 499, NULL, "OtherClientError", FAIL, 0, 0 },
	{ BOTH, 500, 599, NULL, "OtherServerError", RETRY, 5000, 0 },
	{ BOTH, 100, 199, NULL, "OtherStatus", RETRY, 5000, 0 },
	{ BOTH, 300, 399, NULL, "OtherStatus", RETRY, 5000, 0 },
	{ BOTH, 600, 999, NULL, "OtherStatus", RETRY, 5000, 0 },

	/* The library's own reasons: no answer to map. */
	{ BOTH, 0, 0, "QueueFull", "QueueFull", RETRY, 1000, 0 },
	{ BOTH, 0, 0, "Timeout", "Timeout", RETRY, 1000, 0 },
	{ BOTH, 0, 0, "ConnectionLost", "ConnectionLost", RETRY, 1000, 0 },
	{ BOTH, 0, 0, "StreamReset", "StreamReset", RETRY, 1000, 0 },
	{ BOTH, 0, 0, "AuthUnavailable", "AuthUnavailable", RETRY, 5000, 0 },
	{ BOTH, 0, 0, "AuthRejected", "AuthRejected", FAIL, 0, 0 },
	{ BOTH, 0, 0, "BadNotification", "BadNotification", FAIL, 0, 0 },
	{ BOTH, 0, 0, "ClientClosed", "ClientClosed", FAIL, 0, 0 },
	{ BOTH, 0, 0, NULL, "Internal", RETRY, 1000, 0 },
};

const size_t push_outcome_rows =
    sizeof(push_outcome_table) / sizeof(push_outcome_table[0]);

/* True when the row covers this provider, status and reason. */
static int
outcome_row_matches(const struct push_outcome_row *row, unsigned mask,
    int status, const char *reason)
{
	if ((row->providers & mask) == 0)
		return 0;
	if (status < row->status_lo || status > row->status_hi)
		return 0;
	if (row->reason == NULL)
		return 1;
	return reason != NULL && strcmp(row->reason, reason) == 0;
}

/*
 * The row for an answer (status > 0) or for one of the library's own
 * reasons (status 0). Never NULL: the last rows catch everything.
 */
const struct push_outcome_row *
push_outcome_find(enum push_provider p, int status, const char *reason)
{
	unsigned mask = 1u << p;
	size_t i;

	if (status < 0 || status > 999)
		status = 999;
	for (i = 0; i < push_outcome_rows; i++) {
		if (outcome_row_matches(
		        &push_outcome_table[i], mask, status, reason))
			return &push_outcome_table[i];
	}
	return &push_outcome_table[push_outcome_rows - 1];
}

/* The row for one of the library's own reasons. */
const struct push_outcome_row *
push_outcome_internal(const char *reason)
{
	return push_outcome_find(PUSH_PROVIDER_APNS, 0, reason);
}

/*
 * Milliseconds to wait from a Retry-After value (delta seconds or an
 * HTTP date), or -1 when absent or unreadable. Capped at one hour.
 */
long long
push_outcome_retry_after(const char *value, long long now_s)
{
	struct tm tm;
	const char *end;
	char *stop;
	long long secs;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value >= '0' && *value <= '9') {
		secs = strtoll(value, &stop, 10);
		while (*stop == ' ' || *stop == '\t')
			stop++;
		if (*stop != '\0')
			return -1;
	} else {
		memset(&tm, 0, sizeof(tm));
		end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (end == NULL || *end != '\0')
			return -1;
		secs = (long long)timegm(&tm) - now_s;
		if (secs < 0)
			secs = 0;
	}
	if (secs > 3600)
		secs = 3600;
	return secs * 1000;
}

/* The name of an outcome as logs, metrics and callers print it. */
const char *
push_outcome_str(enum push_outcome outcome)
{
	switch (outcome) {
	case PUSH_OUTCOME_DELIVERED:
		return "delivered";
	case PUSH_OUTCOME_RETRY:
		return "retry";
	case PUSH_OUTCOME_TOKEN_DEAD:
		return "token_dead";
	case PUSH_OUTCOME_FAILED:
		return "failed";
	}
	return "unknown";
}

/* The name of a provider as logs and metrics print it. */
const char *
push_provider_str(enum push_provider provider)
{
	return provider == PUSH_PROVIDER_FCM ? "fcm" : "apns";
}
