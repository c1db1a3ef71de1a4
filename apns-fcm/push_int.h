/*
 * Internal declarations shared by the files of apns-fcm: the client, its
 * requests, its HTTP/2 connections, the provider credentials and the one
 * outcome table. Not installed; callers use push.h only.
 */
#ifndef PUSH_INT_H
#define PUSH_INT_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/queue.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "push.h"

struct event;
struct bufferevent;
struct evdns_base;
struct push_conn;
struct push_apns_key;
struct push_fcm;

#define PUSH_BODY_MAX 16384 /* response bodies are cut at this size */
#define PUSH_HDR_MAX 10     /* request headers beyond the pseudo ones */
#define PUSH_RESEND_MAX 3   /* re-sends after a lost connection */

/* Flags of an outcome table row: what the library does besides reporting. */
#define PUSH_ROW_REAUTH 0x1 /* new provider token, then re-send once */
#define PUSH_ROW_DRAIN 0x2  /* stop using that connection */

/* One line of the outcome table. */
struct push_outcome_row {
	unsigned providers; /* 1 << enum push_provider, or-ed */
	int status_lo;      /* HTTP status range; 0..0 = no answer */
	int status_hi;
	const char *reason; /* NULL = any reason in the range */
	const char *name;   /* metrics label */
	enum push_outcome outcome;
	unsigned retry_ms; /* default delay for RETRY */
	unsigned flags;
};

/* Where a service lives: parsed from "https://host[:port]". */
struct push_endpoint {
	char *host;
	unsigned port;
	char *authority; /* host[:port] as :authority wants it */
	char *path;      /* "/" or the URL's path */
	int numeric;     /* host is an IP address */
};

struct push_hdr {
	char *name;
	char *value;
};

enum push_req_kind {
	PUSH_REQ_NOTE = 0, /* a notification from push_submit */
	PUSH_REQ_OAUTH,    /* the FCM access-token request */
};

enum push_req_where {
	PUSH_REQ_LOOSE = 0,
	PUSH_REQ_QUEUED,
	PUSH_REQ_FLIGHT,
	PUSH_REQ_DONE,
};

TAILQ_HEAD(push_req_list, push_req);

/* One HTTP/2 request and, later, its answer. */
struct push_req {
	TAILQ_ENTRY(push_req) link; /* queue, a conn's flight, done */
	struct push_client *client;
	enum push_req_kind kind;
	enum push_req_where where;
	struct push_conn *conn; /* while on a stream */
	int32_t stream_id;

	push_done_cb *done;
	void *arg;

	char *path;
	struct push_hdr hdrs[PUSH_HDR_MAX];
	int nhdrs;
	char *body;
	size_t body_len;
	size_t body_off;
	char tail[5]; /* last four of the device token */

	uint64_t auth_gen; /* token generation it was sent with */
	unsigned resends;
	int reauthed; /* already re-sent with a new token */
	struct event *timer;
	uint64_t t_submit; /* monotonic microseconds */

	int status;
	int ended;         /* the answer is complete */
	char *resp_id;     /* apns-id header */
	char *retry_after; /* Retry-After header */
	char *resp;        /* body, at most PUSH_BODY_MAX */
	size_t resp_len;

	struct push_result result;
	char *reason_buf;
	char *id_buf;
	const struct push_outcome_row *row;
};

enum push_conn_state {
	PUSH_CONN_IDLE = 0,
	PUSH_CONN_CONNECTING,
	PUSH_CONN_UP,
	PUSH_CONN_CLOSING,
};

/* Counters kept by the client (gauges are computed when read). */
struct push_stats {
	uint64_t submitted;
	uint64_t rejected;
	uint64_t outcomes[PUSH_OUTCOME_COUNT];
	uint64_t connects;
	uint64_t reconnects;
	uint64_t resent;
	uint64_t token_refreshes;
	uint64_t latency[PUSH_LATENCY_BUCKETS];
	uint64_t latency_count;
	double latency_sum;
	uint64_t *by_row; /* one per outcome table row */
};

/* A client: settings, credentials, queue, connections, counters. */
struct push_client {
	struct event_base *base;
	enum push_provider provider;
	const char *name; /* "apns" or "fcm" */
	struct push_endpoint ep;
	SSL_CTX *ctx;
	struct evdns_base *dns;

	unsigned request_timeout_ms;
	unsigned ping_interval_ms;
	unsigned ping_timeout_ms;
	unsigned queue_limit;
	unsigned token_max_age_s;

	struct push_conn **conns;
	unsigned nconns;
	unsigned next_conn_id;

	struct push_req_list queue;
	unsigned queued;
	struct push_req_list done;
	struct event *dispatch_ev;
	struct event *done_ev;

	struct push_apns_key *key; /* APNs */
	char *topic;
	struct push_fcm *fcm; /* FCM */

	struct push_stats stats;

	push_log_cb *log;
	void *log_arg;
	enum push_log_level log_level;

	int closing;
	int in_callbacks;
	int free_pending;
};

/* push.c */
uint64_t push_now_us(void);
uint32_t push_random(void);
void push_log(const struct push_client *c, enum push_log_level level,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int push_log_on(const struct push_client *c, enum push_log_level level);
void push_dispatch_later(struct push_client *c);
void push_req_finished(struct push_req *req, struct push_conn *conn);
void push_req_lost(struct push_req *req, const char *why);
void push_req_refused(struct push_req *req);
void push_req_complete(struct push_req *req, const struct push_outcome_row *row,
    int status, const char *reason, unsigned retry_ms, long long timestamp_ms,
    const char *id);
void push_req_free(struct push_req *req);
struct push_req *push_req_new(struct push_client *c, enum push_req_kind kind);
int push_req_header(struct push_req *req, const char *name, const char *value);
int push_req_arm(struct push_req *req, unsigned timeout_ms);
void push_requeue(struct push_req *req);

double push_latency_bound(int i);

/* push_conn.c */
int push_endpoint_parse(const char *url, struct push_endpoint *ep);
void push_endpoint_clear(struct push_endpoint *ep);
SSL_CTX *push_conn_ctx_new(const char *ca_file, const char **cause);
struct push_conn *push_conn_new(
    struct push_client *c, const struct push_endpoint *ep, const char *label);
void push_conn_free(struct push_conn *conn);
void push_conn_start(struct push_conn *conn);
enum push_conn_state push_conn_state(const struct push_conn *conn);
int push_conn_usable(const struct push_conn *conn);
unsigned push_conn_open(const struct push_conn *conn);
unsigned push_conn_limit(const struct push_conn *conn);
uint64_t push_conn_next_try(const struct push_conn *conn);
unsigned push_conn_flight(const struct push_conn *conn);
int push_conn_send(
    struct push_conn *conn, struct push_req *req, const char *auth);
void push_conn_flush(struct push_conn *conn);
void push_conn_cancel(struct push_conn *conn, struct push_req *req);
void push_conn_drain(struct push_conn *conn, const char *why);
void push_conn_abort(struct push_conn *conn, const char *why);

/* push_apns.c */
struct push_apns_key *push_apns_key_get(const char *team_id, const char *key_id,
    const char *pem, const char **cause);
void push_apns_key_put(struct push_apns_key *key);
const char *push_apns_bearer(
    struct push_apns_key *key, unsigned max_age_s, uint64_t *gen, int *made);
int push_apns_key_expired(struct push_apns_key *key, uint64_t gen);
char *push_apns_jwt(
    const char *team_id, const char *key_id, const char *pem, long long iat);
int push_apns_build(struct push_req *req, const char *topic,
    const struct push_note *note, const char **cause);
void push_apns_answer(struct push_req *req);
int push_uuid(char out[37]);

/* push_fcm.c */
struct push_fcm *push_fcm_new(
    struct push_client *c, const char *json, const char **cause);
void push_fcm_free(struct push_fcm *fcm);
const char *push_fcm_bearer(struct push_fcm *fcm, uint64_t *gen);
void push_fcm_unauthorized(struct push_fcm *fcm, uint64_t gen);
void push_fcm_dispatch(struct push_fcm *fcm);
void push_fcm_oauth_done(struct push_req *req);
int push_fcm_build(struct push_req *req, const char *project,
    const struct push_note *note, const char **cause);
const char *push_fcm_project(const struct push_fcm *fcm);
void push_fcm_answer(struct push_req *req);
char *push_fcm_assertion(
    const char *client_email, const char *pem, const char *aud, long long iat);
int push_fcm_token_parse(
    const char *body, size_t len, char **token, long long *expires_in);

/* push_outcome.c */
extern const struct push_outcome_row push_outcome_table[];
extern const size_t push_outcome_rows;
const struct push_outcome_row *push_outcome_find(
    enum push_provider p, int status, const char *reason);
const struct push_outcome_row *push_outcome_internal(const char *reason);
long long push_outcome_retry_after(const char *value, long long now_s);

#endif
