/*
 * The push client: settings, the bounded queue of submissions, handing
 * them to the pool's streams, re-sending what the peer never processed,
 * mapping answers through the outcome table and running completions
 * from the loop. Connections live in push_conn.c, credentials in
 * push_apns.c and push_fcm.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "push_int.h"

#define DEFAULT_APNS "https://api.push.apple.com"
#define DEFAULT_FCM "https://fcm.googleapis.com"
#define POOL_MAX 64
#define REFUSED_MAX 10 /* re-sends after REFUSED_STREAM / GOAWAY */

/* Upper bounds of the latency buckets, seconds (the last is +Inf). */
static const double push_latency_bounds[PUSH_LATENCY_BUCKETS - 1] = {
	0.005,
	0.01,
	0.025,
	0.05,
	0.1,
	0.25,
	0.5,
	1,
	2.5,
	5,
	10,
};

static void push_dispatch(struct push_client *c);
static void push_run_done(struct push_client *c);
static void push_destroy(struct push_client *c);

/* Monotonic time in microseconds. */
uint64_t
push_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/* A random number for jitter (not for secrets). */
uint32_t
push_random(void)
{
	static uint32_t state;
	uint32_t v;

	if (RAND_bytes((unsigned char *)&v, sizeof(v)) == 1)
		return v;
	state = state * 1664525u + 1013904223u + (uint32_t)push_now_us();
	return state;
}

/* True when a line of this level would be printed. */
int
push_log_on(const struct push_client *c, enum push_log_level level)
{
	return c->log != NULL && level <= c->log_level;
}

/* Build one log line and hand it to the caller's hook. */
void
push_log(const struct push_client *c, enum push_log_level level,
    const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!push_log_on(c, level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->log(c->log_arg, level, line);
}

/* Run the dispatcher from the loop soon (once however often asked). */
void
push_dispatch_later(struct push_client *c)
{
	if (!c->closing)
		event_active(c->dispatch_ev, EV_TIMEOUT, 0);
}

/* A request with no content yet; caller frees with push_req_free. */
struct push_req *
push_req_new(struct push_client *c, enum push_req_kind kind)
{
	struct push_req *req;

	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->client = c;
	req->kind = kind;
	req->t_submit = push_now_us();
	return req;
}

/* Add a request header (both strings copied). Returns 0 or -1. */
int
push_req_header(struct push_req *req, const char *name, const char *value)
{
	struct push_hdr *h;

	if (req->nhdrs >= PUSH_HDR_MAX)
		return -1;
	h = &req->hdrs[req->nhdrs];
	h->name = strdup(name);
	h->value = strdup(value);
	if (h->name == NULL || h->value == NULL) {
		free(h->name);
		free(h->value);
		return -1;
	}
	req->nhdrs++;
	return 0;
}

/* Forget the previous answer before the request goes out again. */
static void
push_req_reset_answer(struct push_req *req)
{
	free(req->resp_id);
	free(req->retry_after);
	free(req->resp);
	free(req->reason_buf);
	free(req->id_buf);
	req->resp_id = req->retry_after = req->resp = NULL;
	req->reason_buf = req->id_buf = NULL;
	req->resp_len = 0;
	req->status = 0;
	req->ended = 0;
	req->result.timestamp_ms = 0;
}

/* Free a request that is on no list; accepts NULL. */
void
push_req_free(struct push_req *req)
{
	int i;

	if (req == NULL)
		return;
	if (req->timer != NULL)
		event_free(req->timer);
	push_req_reset_answer(req);
	for (i = 0; i < req->nhdrs; i++) {
		free(req->hdrs[i].name);
		free(req->hdrs[i].value);
	}
	free(req->path);
	free(req->body);
	free(req);
}

/* The request's own deadline passed: give up on it wherever it is. */
static void
push_req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_req *req = arg;
	struct push_client *c = req->client;

	if (req->kind == PUSH_REQ_OAUTH) {
		if (req->conn != NULL)
			push_conn_cancel(req->conn, req);
		push_fcm_oauth_done(req);
		return;
	}
	push_log(c, PUSH_LOG_INFO, "%s push ..%s: timed out after %u ms",
	    c->name, req->tail, c->request_timeout_ms);
	push_req_complete(
	    req, push_outcome_internal("Timeout"), 0, "Timeout", 0, 0, NULL);
}

/* Start the request's deadline. Returns 0 or -1. */
int
push_req_arm(struct push_req *req, unsigned timeout_ms)
{
	struct timeval tv;

	if (req->timer == NULL)
		req->timer =
		    evtimer_new(req->client->base, push_req_timer_cb, req);
	if (req->timer == NULL)
		return -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(req->timer, &tv);
}

/* Put a request back at the head of the queue: it goes out next. */
void
push_requeue(struct push_req *req)
{
	struct push_client *c = req->client;

	push_req_reset_answer(req);
	req->where = PUSH_REQ_QUEUED;
	TAILQ_INSERT_HEAD(&c->queue, req, link);
	c->queued++;
	c->stats.resent++;
	push_dispatch_later(c);
}

/* Count a completion in the outcome and latency counters. */
static void
push_count(struct push_client *c, const struct push_outcome_row *row,
    int status, uint64_t t_submit)
{
	double secs;
	int i;

	c->stats.outcomes[row->outcome]++;
	c->stats.by_row[row - push_outcome_table]++;
	if (status == 0 || t_submit == 0)
		return;
	secs = (double)(push_now_us() - t_submit) / 1e6;
	c->stats.latency_count++;
	c->stats.latency_sum += secs;
	for (i = 0; i < PUSH_LATENCY_BUCKETS - 1; i++) {
		if (secs <= push_latency_bounds[i])
			break;
	}
	c->stats.latency[i]++;
}

/*
 * Finish a notification with the row's outcome: stop its timer, take it
 * off the queue or its stream, and schedule its callback.
 */
void
push_req_complete(struct push_req *req, const struct push_outcome_row *row,
    int status, const char *reason, unsigned retry_ms, long long timestamp_ms,
    const char *id)
{
	struct push_client *c = req->client;
	char *reason_copy = reason != NULL ? strdup(reason) : NULL;
	char *id_copy = id != NULL ? strdup(id) : NULL;

	if (req->timer != NULL)
		event_del(req->timer);
	if (req->where == PUSH_REQ_QUEUED) {
		TAILQ_REMOVE(&c->queue, req, link);
		c->queued--;
	} else if (req->where == PUSH_REQ_FLIGHT && req->conn != NULL) {
		push_conn_cancel(req->conn, req);
	}
	free(req->reason_buf);
	free(req->id_buf);
	req->reason_buf = reason_copy;
	req->id_buf = id_copy;

	req->row = row;
	req->result.outcome = row->outcome;
	req->result.status = status;
	req->result.reason = row->outcome == PUSH_OUTCOME_DELIVERED ? NULL
	    : req->reason_buf != NULL ? req->reason_buf
	                              : row->name;
	req->result.retry_ms =
	    row->outcome == PUSH_OUTCOME_RETRY ? retry_ms : 0;
	req->result.timestamp_ms =
	    row->outcome == PUSH_OUTCOME_TOKEN_DEAD ? timestamp_ms : 0;
	req->result.id = req->id_buf;
	push_count(c, row, status, req->t_submit);
	if (row->outcome != PUSH_OUTCOME_DELIVERED)
		push_log(c, PUSH_LOG_DEBUG, "%s push ..%s: %s %d %s", c->name,
		    req->tail, push_outcome_str(row->outcome), status,
		    req->result.reason);

	req->where = PUSH_REQ_DONE;
	TAILQ_INSERT_TAIL(&c->done, req, link);
	if (!c->in_callbacks)
		event_active(c->done_ev, EV_TIMEOUT, 0);
}

/*
 * The request never reached the peer's application or its connection
 * died under it: re-send a few times, then report RETRY.
 */
void
push_req_lost(struct push_req *req, const char *why)
{
	struct push_client *c = req->client;

	if (req->kind == PUSH_REQ_OAUTH) {
		push_fcm_oauth_done(req);
		return;
	}
	if (c->closing) {
		push_req_complete(req, push_outcome_internal("ClientClosed"), 0,
		    "ClientClosed", 0, 0, NULL);
		return;
	}
	if (strcmp(why, "ConnectionLost") == 0 &&
	    req->resends < PUSH_RESEND_MAX) {
		req->resends++;
		push_requeue(req);
		return;
	}
	push_req_complete(req, push_outcome_internal(why), 0, why,
	    push_outcome_internal(why)->retry_ms, 0, NULL);
}

/* REFUSED_STREAM or above a GOAWAY's last stream: never processed. */
void
push_req_refused(struct push_req *req)
{
	struct push_client *c = req->client;

	if (req->kind == PUSH_REQ_OAUTH) {
		push_fcm_oauth_done(req);
		return;
	}
	if (c->closing) {
		push_req_lost(req, "ClientClosed");
		return;
	}
	if (req->resends >= REFUSED_MAX) {
		push_req_lost(req, "StreamReset");
		return;
	}
	req->resends++;
	push_requeue(req);
}

/*
 * A full answer came back on conn: map it through the table, re-send
 * once with a new provider token when the row says so, else report.
 */
void
push_req_finished(struct push_req *req, struct push_conn *conn)
{
	struct push_client *c = req->client;
	const struct push_outcome_row *row;
	long long ra;
	unsigned retry_ms;

	if (req->kind == PUSH_REQ_OAUTH) {
		push_fcm_oauth_done(req);
		return;
	}
	if (c->provider == PUSH_PROVIDER_APNS)
		push_apns_answer(req);
	else
		push_fcm_answer(req);
	row = push_outcome_find(c->provider, req->status, req->reason_buf);

	if (row->flags & PUSH_ROW_DRAIN)
		push_conn_drain(conn, row->name);
	if ((row->flags & PUSH_ROW_REAUTH) && !req->reauthed && !c->closing) {
		req->reauthed = 1;
		push_log(c, PUSH_LOG_WARN,
		    "%s push ..%s: %d %s, new token and "
		    "one re-send",
		    c->name, req->tail, req->status, row->name);
		if (c->provider == PUSH_PROVIDER_APNS)
			push_apns_key_expired(c->key, req->auth_gen);
		else
			push_fcm_unauthorized(c->fcm, req->auth_gen);
		push_requeue(req);
		return;
	}

	retry_ms = row->retry_ms;
	ra = push_outcome_retry_after(req->retry_after, (long long)time(NULL));
	if (ra >= 0)
		retry_ms = (unsigned)ra;
	push_req_complete(req, row, req->status, req->reason_buf, retry_ms,
	    req->result.timestamp_ms, req->id_buf);
}

/* Fill *out for a submission refused at once. */
static int
push_reject(struct push_client *c, const char *reason, struct push_result *out)
{
	const struct push_outcome_row *row = push_outcome_internal(reason);

	if (c != NULL) {
		c->stats.rejected++;
		c->stats.outcomes[row->outcome]++;
		c->stats.by_row[row - push_outcome_table]++;
	}
	if (out != NULL) {
		memset(out, 0, sizeof(*out));
		out->outcome = row->outcome;
		out->reason = row->name;
		out->retry_ms =
		    row->outcome == PUSH_OUTCOME_RETRY ? row->retry_ms : 0;
	}
	return -1;
}

/* Submit a notification; see push.h. */
int
push_submit(struct push_client *c, const struct push_note *note,
    push_done_cb *done, void *arg, struct push_result *rejected)
{
	struct push_req *req;
	const char *cause = NULL;
	int rv;

	if (c == NULL || c->closing)
		return push_reject(c, "ClientClosed", rejected);
	if (note == NULL || done == NULL)
		return push_reject(c, "BadNotification", rejected);
	if (c->queued >= c->queue_limit)
		return push_reject(c, "QueueFull", rejected);

	req = push_req_new(c, PUSH_REQ_NOTE);
	if (req == NULL)
		return push_reject(c, "QueueFull", rejected);
	if (c->provider == PUSH_PROVIDER_APNS)
		rv = push_apns_build(req, c->topic, note, &cause);
	else
		rv =
		    push_fcm_build(req, push_fcm_project(c->fcm), note, &cause);
	if (rv != 0 || push_req_arm(req, c->request_timeout_ms) != 0) {
		push_log(c, PUSH_LOG_WARN, "%s push: refused: %s", c->name,
		    cause != NULL ? cause : "out of memory");
		push_req_free(req);
		return push_reject(c, "BadNotification", rejected);
	}

	req->done = done;
	req->arg = arg;
	req->where = PUSH_REQ_QUEUED;
	TAILQ_INSERT_TAIL(&c->queue, req, link);
	c->queued++;
	c->stats.submitted++;
	push_dispatch_later(c);
	return 0;
}

/* The usable connection with the fewest open streams, or NULL. */
static struct push_conn *
push_pick(struct push_client *c)
{
	struct push_conn *best = NULL;
	unsigned i;

	for (i = 0; i < c->nconns; i++) {
		if (!push_conn_usable(c->conns[i]))
			continue;
		if (best == NULL ||
		    push_conn_open(c->conns[i]) < push_conn_open(best))
			best = c->conns[i];
	}
	return best;
}

/*
 * Work is waiting and no stream is free: open one more connection of the
 * pool, one at a time, the one whose back-off ends first.
 */
static void
push_grow(struct push_client *c)
{
	struct push_conn *idle = NULL;
	unsigned i;

	for (i = 0; i < c->nconns; i++) {
		switch (push_conn_state(c->conns[i])) {
		case PUSH_CONN_CONNECTING:
			return;
		case PUSH_CONN_IDLE:
			if (idle == NULL ||
			    push_conn_next_try(c->conns[i]) <
			        push_conn_next_try(idle))
				idle = c->conns[i];
			break;
		default:
			break;
		}
	}
	if (idle != NULL)
		push_conn_start(idle);
}

/* The authorization value for new streams, or NULL while there is none. */
static const char *
push_auth(struct push_client *c, uint64_t *gen)
{
	const char *bearer;
	int made = 0;

	if (c->provider == PUSH_PROVIDER_FCM) {
		push_fcm_dispatch(c->fcm);
		return push_fcm_bearer(c->fcm, gen);
	}
	bearer = push_apns_bearer(c->key, c->token_max_age_s, gen, &made);
	if (made) {
		c->stats.token_refreshes++;
		push_log(c, PUSH_LOG_INFO, "%s: new provider token", c->name);
	}
	return bearer;
}

/* Hand queued requests to free streams, then write. */
static void
push_dispatch(struct push_client *c)
{
	struct push_req *req;
	struct push_conn *conn;
	const char *auth;
	uint64_t gen = 0;
	unsigned i;

	if (c->closing)
		return;
	auth = push_auth(c, &gen);
	while (auth != NULL && (req = TAILQ_FIRST(&c->queue)) != NULL) {
		conn = push_pick(c);
		if (conn == NULL)
			break;
		TAILQ_REMOVE(&c->queue, req, link);
		c->queued--;
		req->auth_gen = gen;
		if (push_conn_send(conn, req, auth) != 0) {
			req->where = PUSH_REQ_QUEUED;
			TAILQ_INSERT_HEAD(&c->queue, req, link);
			c->queued++;
			push_conn_abort(conn, "cannot open a stream");
		}
	}
	for (i = 0; i < c->nconns; i++)
		push_conn_flush(c->conns[i]);
	if (c->queued > 0)
		push_grow(c);
}

/* The loop's entry to the dispatcher. */
static void
push_dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	push_dispatch(arg);
}

/* Run the completion callbacks collected so far, outside any library
   callback. */
static void
push_run_done(struct push_client *c)
{
	struct push_req *req;

	c->in_callbacks = 1;
	while ((req = TAILQ_FIRST(&c->done)) != NULL) {
		TAILQ_REMOVE(&c->done, req, link);
		req->where = PUSH_REQ_LOOSE;
		req->done(req->arg, &req->result);
		push_req_free(req);
	}
	c->in_callbacks = 0;
}

/* The loop's entry to the completions. */
static void
push_done_cb_ev(evutil_socket_t fd, short what, void *arg)
{
	struct push_client *c = arg;

	push_run_done(c);
	if (c->free_pending)
		push_destroy(c);
}

/* Check settings that are required for the provider. */
static const char *
push_check(const struct push_settings *s)
{
	if (s->provider == PUSH_PROVIDER_APNS) {
		if (s->team_id == NULL || s->key_id == NULL ||
		    s->key_pem == NULL || s->topic == NULL)
			return "apns needs team_id, key_id, key and topic";
		return NULL;
	}
	if (s->provider == PUSH_PROVIDER_FCM) {
		if (s->service_account_json == NULL)
			return "fcm needs the service-account JSON";
		return NULL;
	}
	return "unknown provider";
}

/* Copy the numeric settings, with defaults for zeros. */
static void
push_settle(struct push_client *c, const struct push_settings *s)
{
	c->request_timeout_ms =
	    s->request_timeout_ms ? s->request_timeout_ms : 10000;
	c->ping_interval_ms = s->ping_interval_ms ? s->ping_interval_ms : 15000;
	c->ping_timeout_ms = s->ping_timeout_ms ? s->ping_timeout_ms : 5000;
	c->queue_limit = s->queue_limit ? s->queue_limit : 10000;
	c->token_max_age_s = s->token_max_age_s ? s->token_max_age_s : 3000;
	c->nconns = s->pool_size ? s->pool_size : 1;
	if (c->nconns > POOL_MAX)
		c->nconns = POOL_MAX;
	c->log = s->log;
	c->log_arg = s->log_arg;
	c->log_level = s->log_level;
}

/* Make a client; see push.h. */
struct push_client *
push_new(
    struct event_base *base, const struct push_settings *s, const char **cause)
{
	struct push_client *c;
	const char *endpoint;
	unsigned i;

	*cause = push_check(s);
	if (*cause != NULL)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*cause = "out of memory";
		return NULL;
	}
	c->base = base;
	c->provider = s->provider;
	c->name = push_provider_str(s->provider);
	TAILQ_INIT(&c->queue);
	TAILQ_INIT(&c->done);
	push_settle(c, s);

	endpoint = s->endpoint;
	if (endpoint == NULL)
		endpoint = s->provider == PUSH_PROVIDER_APNS ? DEFAULT_APNS
		                                             : DEFAULT_FCM;
	if (push_endpoint_parse(endpoint, &c->ep) != 0 ||
	    strcmp(c->ep.path, "/") != 0) {
		*cause = "endpoint must be https://host[:port]";
		goto fail;
	}
	c->ctx = push_conn_ctx_new(s->ca_file, cause);
	if (c->ctx == NULL)
		goto fail;
	c->stats.by_row = calloc(push_outcome_rows, sizeof(uint64_t));
	c->conns = calloc(c->nconns, sizeof(*c->conns));
	c->dispatch_ev = event_new(base, -1, 0, push_dispatch_cb, c);
	c->done_ev = event_new(base, -1, 0, push_done_cb_ev, c);
	*cause = "out of memory";
	if (c->stats.by_row == NULL || c->conns == NULL ||
	    c->dispatch_ev == NULL || c->done_ev == NULL)
		goto fail;
	for (i = 0; i < c->nconns; i++) {
		c->conns[i] = push_conn_new(c, &c->ep, "conn");
		if (c->conns[i] == NULL)
			goto fail;
	}

	if (c->provider == PUSH_PROVIDER_APNS) {
		c->key =
		    push_apns_key_get(s->team_id, s->key_id, s->key_pem, cause);
		c->topic = strdup(s->topic);
		if (c->key == NULL || c->topic == NULL)
			goto fail;
	} else {
		c->fcm = push_fcm_new(c, s->service_account_json, cause);
		if (c->fcm == NULL)
			goto fail;
	}
	*cause = NULL;
	return c;

fail:
	c->closing = 1;
	push_destroy(c);
	return NULL;
}

/* Complete everything still pending with ClientClosed. */
static void
push_close_all(struct push_client *c)
{
	const struct push_outcome_row *row;
	struct push_req *req;
	unsigned i;

	row = push_outcome_internal("ClientClosed");
	if (c->conns == NULL)
		c->nconns = 0;
	for (i = 0; i < c->nconns; i++) {
		if (c->conns[i] != NULL &&
		    push_conn_state(c->conns[i]) != PUSH_CONN_IDLE)
			push_conn_abort(c->conns[i], "client closed");
	}
	for (i = 0; i < c->nconns; i++) {
		push_conn_free(c->conns[i]);
		c->conns[i] = NULL;
	}
	push_fcm_free(c->fcm);
	c->fcm = NULL;
	while ((req = TAILQ_FIRST(&c->queue)) != NULL)
		push_req_complete(req, row, 0, "ClientClosed", 0, 0, NULL);
}

/* Free what the client holds (nothing may be pending any more). */
static void
push_destroy(struct push_client *c)
{
	struct push_req *req;

	push_close_all(c);
	while ((req = TAILQ_FIRST(&c->done)) != NULL) {
		TAILQ_REMOVE(&c->done, req, link);
		push_req_free(req);
	}
	push_apns_key_put(c->key);
	free(c->topic);
	free(c->conns);
	free(c->stats.by_row);
	if (c->dispatch_ev != NULL)
		event_free(c->dispatch_ev);
	if (c->done_ev != NULL)
		event_free(c->done_ev);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 0);
	SSL_CTX_free(c->ctx);
	push_endpoint_clear(&c->ep);
	free(c);
}

/* Close and free; see push.h. */
void
push_free(struct push_client *c)
{
	if (c == NULL || c->free_pending)
		return;
	c->closing = 1;
	if (c->in_callbacks) {
		c->free_pending = 1;
		push_close_all(c);
		return;
	}
	push_close_all(c);
	push_run_done(c);
	push_destroy(c);
}

/* Copy the counters; gauges are counted now. */
void
push_counters_read(const struct push_client *c, struct push_counters *out)
{
	unsigned i;

	memset(out, 0, sizeof(*out));
	out->submitted = c->stats.submitted;
	out->rejected = c->stats.rejected;
	out->queued = c->queued;
	memcpy(out->outcomes, c->stats.outcomes, sizeof(out->outcomes));
	out->connects = c->stats.connects;
	out->reconnects = c->stats.reconnects;
	out->resent = c->stats.resent;
	out->token_refreshes = c->stats.token_refreshes;
	for (i = 0; i < PUSH_LATENCY_BUCKETS; i++)
		out->latency[i] =
		    c->stats.latency[i] + (i > 0 ? out->latency[i - 1] : 0);
	out->latency_count = c->stats.latency_count;
	out->latency_sum = c->stats.latency_sum;
	for (i = 0; i < c->nconns; i++) {
		if (c->conns[i] == NULL)
			continue;
		out->in_flight += push_conn_flight(c->conns[i]);
		if (push_conn_state(c->conns[i]) == PUSH_CONN_UP)
			out->conns_up++;
	}
}

/* Bucket bounds for push_metrics.c. */
double
push_latency_bound(int i)
{
	return push_latency_bounds[i];
}
