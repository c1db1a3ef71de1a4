/*
 * The push client without a live peer: settings checks, the queue bound
 * (refused at once, never growing), completions only from the loop,
 * request timeouts, push_free from outside and from inside a callback,
 * and the Prometheus text of the counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "push.h"

static char *priv_pem;
static char endpoint[64];

/* An endpoint on loopback where nothing listens. */
static void
dead_endpoint(void)
{
	struct sockaddr_in sin = { 0 };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(endpoint, sizeof(endpoint), "https://127.0.0.1:%u",
	    ntohs(sin.sin_port));
	close(fd);
}

/* A P-256 key and a dead endpoint for every test. */
static int
setup(void **state)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long len;

	PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
	len = BIO_get_mem_data(b, &data);
	priv_pem = strndup(data, (size_t)len);
	BIO_free(b);
	EVP_PKEY_free(pk);
	dead_endpoint();
	return 0;
}

/* Free the key. */
static int
teardown(void **state)
{
	free(priv_pem);
	return 0;
}

/* Settings for an APNs client pointed at the dead endpoint. */
static struct push_settings
apns_settings(void)
{
	struct push_settings s = { 0 };

	s.provider = PUSH_PROVIDER_APNS;
	s.endpoint = endpoint;
	s.team_id = "TEAM123456";
	s.key_id = "KEY1234567";
	s.key_pem = priv_pem;
	s.topic = "com.example.vouch";
	return s;
}

static const struct push_note note = {
	.device_token = "00aaff00aaff",
	.payload = "{\"aps\":{\"alert\":\"hi\"}}",
};

/* What the callbacks saw. */
struct seen {
	int calls;
	int outcomes[PUSH_OUTCOME_COUNT];
	char last_reason[64];
	struct push_client *free_me;
	struct event_base *base;
};

/* Count a completion; maybe submit twice more and free the client. */
static void
seen_cb(void *arg, const struct push_result *r)
{
	struct seen *s = arg;

	s->calls++;
	s->outcomes[r->outcome]++;
	snprintf(s->last_reason, sizeof(s->last_reason), "%s",
	    r->reason ? r->reason : "");
	if (s->free_me != NULL) {
		struct push_client *c = s->free_me;

		s->free_me = NULL;
		assert_int_equal(push_submit(c, &note, seen_cb, s, NULL), 0);
		assert_int_equal(push_submit(c, &note, seen_cb, s, NULL), 0);
		push_free(c);
		assert_int_equal(push_submit(c, &note, seen_cb, s, NULL), -1);
	}
}

/* Unusable settings are refused with a reason. */
static void
test_bad_settings(void **state)
{
	struct event_base *base = event_base_new();
	struct push_settings s;
	const char *cause;

#define REFUSED(stmt) \
	do { \
		s = apns_settings(); \
		stmt; \
		cause = NULL; \
		assert_null(push_new(base, &s, &cause)); \
		assert_non_null(cause); \
	} while (0)
	REFUSED(s.team_id = NULL);
	REFUSED(s.topic = NULL);
	REFUSED(s.key_pem = "junk");
	REFUSED(s.endpoint = "http://127.0.0.1:1");
	REFUSED(s.endpoint = "https://127.0.0.1:1/path");
	REFUSED(s.ca_file = "/nonexistent/ca.pem");
	REFUSED(s.provider = PUSH_PROVIDER_FCM);
	REFUSED((s.provider = PUSH_PROVIDER_FCM,
	    s.service_account_json = "{\"project_id\":\"p\"}"));
	REFUSED((s.provider = PUSH_PROVIDER_FCM,
	    s.service_account_json = "not json"));
#undef REFUSED
	event_base_free(base);
}

/* The bound holds: the excess is refused at once with RETRY, nothing
   is called back from push_submit, push_free completes the rest. */
static void
test_queue_bound_and_free(void **state)
{
	struct event_base *base = event_base_new();
	struct push_settings s = apns_settings();
	struct push_counters k;
	struct push_result rej;
	struct push_client *c;
	struct seen seen = { 0 };
	const char *cause;
	int i, accepted = 0, refused = 0;

	s.queue_limit = 3;
	c = push_new(base, &s, &cause);
	assert_non_null(c);
	/* A bad notification is refused too, and never called back. */
	{
		struct push_note bad = note;

		bad.device_token = "not hex";
		assert_int_equal(
		    push_submit(c, &bad, seen_cb, &seen, &rej), -1);
		assert_int_equal(rej.outcome, PUSH_OUTCOME_FAILED);
		assert_string_equal(rej.reason, "BadNotification");
	}

	for (i = 0; i < 1000; i++) {
		if (push_submit(c, &note, seen_cb, &seen, &rej) == 0) {
			accepted++;
			continue;
		}
		refused++;
		assert_int_equal(rej.outcome, PUSH_OUTCOME_RETRY);
		assert_string_equal(rej.reason, "QueueFull");
		assert_true(rej.retry_ms > 0);
	}
	assert_int_equal(accepted, 3);
	assert_int_equal(refused, 997);
	assert_int_equal(seen.calls, 0);
	push_counters_read(c, &k);
	assert_int_equal(k.submitted, 3);
	assert_int_equal(k.rejected, 998);
	assert_int_equal(k.queued, 3);

	push_free(c);
	assert_int_equal(seen.calls, 3);
	assert_int_equal(seen.outcomes[PUSH_OUTCOME_FAILED], 3);
	assert_string_equal(seen.last_reason, "ClientClosed");
	event_base_free(base);
}

/* Unanswered requests time out with RETRY; a callback may free the
   client, and the rest then complete as ClientClosed. */
static void
test_timeout_and_free_in_callback(void **state)
{
	struct event_base *base = event_base_new();
	struct push_settings s = apns_settings();
	struct push_client *c;
	struct seen seen = { 0 };
	const char *cause;
	int i;

	s.request_timeout_ms = 100;
	c = push_new(base, &s, &cause);
	assert_non_null(c);
	for (i = 0; i < 3; i++)
		assert_int_equal(
		    push_submit(c, &note, seen_cb, &seen, NULL), 0);
	event_base_dispatch(base);
	assert_int_equal(seen.calls, 3);
	assert_int_equal(seen.outcomes[PUSH_OUTCOME_RETRY], 3);
	assert_string_equal(seen.last_reason, "Timeout");

	memset(&seen, 0, sizeof(seen));
	assert_int_equal(push_submit(c, &note, seen_cb, &seen, NULL), 0);
	seen.free_me = c;
	event_base_dispatch(base);
	assert_int_equal(seen.calls, 3);
	assert_int_equal(seen.outcomes[PUSH_OUTCOME_RETRY], 1);
	assert_int_equal(seen.outcomes[PUSH_OUTCOME_FAILED], 2);
	assert_string_equal(seen.last_reason, "ClientClosed");
	event_base_free(base);
}

/* The Prometheus lines name every counter with the provider label. */
static void
test_metrics_text(void **state)
{
	struct event_base *base = event_base_new();
	struct push_settings s = apns_settings();
	struct push_client *c;
	struct evbuffer *out = evbuffer_new();
	struct seen seen = { 0 };
	const char *cause;
	char *text;
	size_t len;

	s.queue_limit = 1;
	s.request_timeout_ms = 50;
	c = push_new(base, &s, &cause);
	assert_int_equal(push_submit(c, &note, seen_cb, &seen, NULL), 0);
	assert_int_equal(push_submit(c, &note, seen_cb, &seen, NULL), -1);
	event_base_dispatch(base);
	assert_int_equal(push_metrics_write(&c, 1, out), 0);
	len = evbuffer_get_length(out);
	text = strndup((char *)evbuffer_pullup(out, -1), len);

#define HAS(line) \
	do { \
		if (strstr(text, line) == NULL) \
			fail_msg("missing: %s\n%s", line, text); \
	} while (0)
	HAS("# TYPE vouch_push_submitted_total counter\n");
	HAS("vouch_push_submitted_total{provider=\"apns\"} 1\n");
	HAS("vouch_push_rejected_total{provider=\"apns\"} 1\n");
	HAS("vouch_push_queued{provider=\"apns\"} 0\n");
	HAS("vouch_push_in_flight{provider=\"apns\"} 0\n");
	HAS("vouch_push_connections_up{provider=\"apns\"} 0\n");
	HAS("vouch_push_completed_total{provider=\"apns\",outcome=\"retry\"} "
	    "2\n");
	HAS("vouch_push_completed_total{provider=\"apns\","
	    "outcome=\"delivered\"} 0\n");
	HAS("vouch_push_outcomes_total{provider=\"apns\",outcome=\"retry\","
	    "reason=\"QueueFull\"} 1\n");
	HAS("vouch_push_outcomes_total{provider=\"apns\",outcome=\"retry\","
	    "reason=\"Timeout\"} 1\n");
	HAS("# TYPE vouch_push_latency_seconds histogram\n");
	HAS("vouch_push_latency_seconds_bucket{provider=\"apns\","
	    "le=\"+Inf\"} 0\n");
	HAS("vouch_push_latency_seconds_count{provider=\"apns\"} 0\n");
#undef HAS
	free(text);
	evbuffer_free(out);
	push_free(c);
	event_base_free(base);
}

/* Run the client tests. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_queue_bound_and_free),
		cmocka_unit_test(test_timeout_and_free_in_callback),
		cmocka_unit_test(test_metrics_text),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
