/*
 * apns-fcm: an HTTP/2 client for Apple's APNs and Google's FCM that runs
 * on the caller's libevent loop. Create one client per provider, submit
 * notifications with a completion callback, read its counters. The
 * library knows nothing of the program that uses it.
 */
#ifndef PUSH_H
#define PUSH_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct push_client;

enum push_provider {
	PUSH_PROVIDER_APNS = 0,
	PUSH_PROVIDER_FCM,
};

/* What the caller does next with a notification. */
enum push_outcome {
	PUSH_OUTCOME_DELIVERED = 0, /* accepted by the provider */
	PUSH_OUTCOME_RETRY,         /* try again after retry_ms */
	PUSH_OUTCOME_TOKEN_DEAD,    /* the device token is no longer valid */
	PUSH_OUTCOME_FAILED,        /* will never succeed as it is */
};
#define PUSH_OUTCOME_COUNT 4

enum push_log_level {
	PUSH_LOG_ERROR = 0,
	PUSH_LOG_WARN,
	PUSH_LOG_INFO,
	PUSH_LOG_DEBUG,
};

/*
 * Receives one log line without a trailing newline; the line starts with
 * the object it is about ("apns conn 2: ..."). Never holds a secret.
 */
typedef void push_log_cb(
    void *arg, enum push_log_level level, const char *line);

/*
 * Settings of a client. Strings are copied by push_new; zero numbers take
 * the default shown.
 */
struct push_settings {
	enum push_provider provider;
	const char *endpoint; /* "https://host[:port]"; NULL = the
	                         provider's production host */
	const char *ca_file;  /* extra trust anchor (PEM) or NULL;
	                         FCM: also for the token_uri */

	/* APNs token authentication. */
	const char *team_id;
	const char *key_id;
	const char *key_pem;      /* the .p8 private key as PEM text */
	const char *topic;        /* the app's bundle id */
	unsigned token_max_age_s; /* provider token rotation, 3000 */

	/* FCM: the service-account JSON text (project_id, client_email,
	   private_key, token_uri). */
	const char *service_account_json;

	unsigned pool_size;          /* connections, 1 */
	unsigned request_timeout_ms; /* submission to answer, 10000 */
	unsigned ping_interval_ms;   /* PING while streams are open, 15000 */
	unsigned ping_timeout_ms;    /* no PING ACK -> dead, 5000 */
	unsigned queue_limit;        /* waiting submissions, 10000 */

	push_log_cb *log; /* NULL = silent */
	void *log_arg;
	enum push_log_level log_level; /* lines above it are not built */
};

/*
 * One notification. Strings are copied by push_submit. Zero values mean
 * "not sent" unless stated.
 */
struct push_note {
	const char *device_token; /* APNs: hex; FCM: registration token */
	const char *payload;      /* APNs: the JSON payload. FCM: the
	                             "message" object as JSON, without
	                             "token" (the library adds it) */

	/* APNs only. */
	const char *push_type;   /* NULL = "alert" */
	int priority;            /* 10, 5 or 1 */
	int has_expiration;      /* send apns-expiration */
	long long expiration;    /* epoch seconds; 0 = do not store */
	const char *collapse_id; /* at most 64 bytes */
	const char *apns_id;     /* a UUID; NULL = generated */

	/* FCM only. */
	int validate_only; /* ask FCM to check, not deliver */
};

/* What became of a notification; strings live until the callback returns. */
struct push_result {
	enum push_outcome outcome;
	int status;             /* HTTP status; 0 when none came */
	const char *reason;     /* provider reason (APNs reason, FCM
	                           errorCode or status) or the
	                           library's own (Timeout, QueueFull,
	                           ConnectionLost, ClientClosed, ...);
	                           NULL when delivered */
	unsigned retry_ms;      /* RETRY: wait at least this long */
	long long timestamp_ms; /* TOKEN_DEAD: when the token became
	                           invalid, 0 when not given */
	const char *id;         /* apns-id or the FCM message name */
};

/* Called once per accepted submission, never from inside push_submit. */
typedef void push_done_cb(void *arg, const struct push_result *result);

/* Latency histogram bounds in seconds (the last bucket is +Inf). */
#define PUSH_LATENCY_BUCKETS 12

struct push_counters {
	uint64_t submitted; /* accepted by push_submit */
	uint64_t rejected;  /* refused by push_submit */
	uint64_t in_flight; /* on a stream now */
	uint64_t queued;    /* waiting for a stream now */
	uint64_t outcomes[PUSH_OUTCOME_COUNT];
	uint64_t conns_up;        /* connections usable now */
	uint64_t connects;        /* connection attempts */
	uint64_t reconnects;      /* connections lost or closed */
	uint64_t resent;          /* re-sent after GOAWAY, REFUSED_STREAM,
	                             a lost connection or a new token */
	uint64_t token_refreshes; /* provider JWTs / OAuth tokens made */
	uint64_t latency[PUSH_LATENCY_BUCKETS]; /* cumulative counts */
	uint64_t latency_count;
	double latency_sum; /* seconds */
};

/*
 * Make a client on base. Returns NULL with *cause set (static text) when
 * the settings are unusable (bad endpoint, unreadable key, bad JSON).
 * No connection is opened before the first submission.
 */
struct push_client *push_new(struct event_base *base,
    const struct push_settings *settings, const char **cause);

/*
 * Submit a notification. Returns 0 when accepted: done(arg, result) then
 * runs exactly once, later, from the loop. Returns -1 when refused at
 * once (queue full: RETRY "QueueFull"; bad notification: FAILED; client
 * closing: FAILED "ClientClosed"); then done is never called and, when
 * rejected is not NULL, it gets the outcome (reason is static text).
 */
int push_submit(struct push_client *client, const struct push_note *note,
    push_done_cb *done, void *arg, struct push_result *rejected);

/* Copy the client's counters into out. */
void push_counters_read(
    const struct push_client *client, struct push_counters *out);

/*
 * Append every counter of these clients to out as Prometheus text lines
 * named vouch_push_* with a provider="apns"|"fcm" label. Returns 0 or -1.
 */
int push_metrics_write(
    struct push_client *const *clients, size_t count, struct evbuffer *out);

/* "delivered", "retry", "token_dead" or "failed". */
const char *push_outcome_str(enum push_outcome outcome);

/* "apns" or "fcm". */
const char *push_provider_str(enum push_provider provider);

/*
 * Close every connection and complete everything pending with FAILED
 * "ClientClosed" (those callbacks run inside this call). Accepts NULL.
 * May be called from a completion callback; the client then goes away
 * once that callback returns.
 */
void push_free(struct push_client *client);

#endif
