/*
 * The HTTP front on libevent's evhttp: the listener, routing, request ids,
 * size limits, strict JSON bodies, problem+json errors, the access log,
 * streamed replies and server-sent events, request metrics and a graceful
 * stop. What a route does, and who may call it, belongs to the handlers
 * and the authenticator; this file owns the life of each request.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "http.h"
#include "http_router.h"
#include "log.h"
#include "metrics.h"

#define HTTP_DEFAULT_BODY (64 * 1024)
#define HTTP_DEFAULT_HEADERS (8 * 1024)
#define HTTP_DEFAULT_TIMEOUT 30
#define HTTP_HARD_CAP_MIN (1024 * 1024)
#define HTTP_SSE_INTERVAL_MS 15000
#define HTTP_LOG_PATH_MAX 200
#define HTTP_DETAIL_MAX 512

#define HTTP_ALL_METHODS \
	(EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | \
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | \
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

/* Requests by route, method and status. */
struct http_stat {
	const char *route;
	const char *method;
	int status;
	uint64_t count;
};

/* Latency by route and method. */
struct http_timing {
	const char *route;
	const char *method;
	struct metrics_histogram *hist;
};

/* What to call once a shutdown is over. */
struct http_stop {
	void (*done)(void *arg);
	void *arg;
};

TAILQ_HEAD(http_req_list, http_req);

struct http_server {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct http_router *router;
	http_authenticate_fn auth_fn;
	void *auth_arg;
	size_t max_body;
	int request_timeout;
	int shutdown_timeout;
	int port;
	struct timeval sse_interval;

	struct http_req_list reqs;   /* every request not yet finished */
	struct http_req_list notify; /* waiting for a deferred callback */
	struct event *notify_ev;

	bool stopping;
	bool stop_reported;
	struct event *stop_timer;
	void (*stop_done)(void *arg);
	void *stop_arg;

	struct http_stat *stats;
	size_t nstats;
	struct http_timing *timings;
	size_t ntimings;

	unsigned char rnd[256]; /* CSPRNG bytes for request ids */
	size_t rnd_left;
};

/*
 * One request, from evhttp's callback until the handler's reply. busy
 * counts the callbacks into project code that are running for it: a
 * reply made inside one only marks it done, and the last one out frees.
 *
 * What libevent 2.1.12 does with ereq (read in its http.c, and pinned by
 * tests/unit/test_http.c): while the handler has not replied, evhttp
 * stops reading the connection, so a client that leaves is noticed only
 * when the reply is written, and libevent then frees everything. Once a
 * stream has started, evhttp reads again to notice a close; on one it
 * detaches ereq (its connection becomes NULL), frees the connection and
 * calls our close callback, and ereq is ours to free when the handler
 * ends. Freeing the evhttp frees every connection and its requests.
 */
struct http_req {
	struct http_server *srv;     /* NULL once the server is freed */
	struct evhttp_request *ereq; /* NULL once handed back */
	TAILQ_ENTRY(http_req) link;
	TAILQ_ENTRY(http_req) notify_link;

	const struct http_route *route;
	const char *label; /* route pattern for metrics */
	const char *method;
	char *path;
	char id[65];
	char obj[72]; /* "req <id>" */
	char remote[64];
	struct http_router_match match;
	struct http_router_pair *query;
	size_t nquery;
	json_t *body;

	void *ctx;
	void (*ctx_free)(void *);
	void (*close_cb)(void *);
	void *close_arg;
	void (*drain_cb)(void *);
	void *drain_arg;

	struct evbuffer *chunk;     /* scratch for stream writes */
	struct evbuffer *watch_buf; /* connection output being watched */
	struct evbuffer_cb_entry *watch;
	struct event *keepalive;

	struct timespec start;
	int status;
	unsigned busy;
	bool listed;    /* in srv->reqs */
	bool queued;    /* in srv->notify */
	bool close_due; /* on_close after the client left */
	bool ran;       /* the handler was called */
	bool streaming;
	bool sse;
	bool gone;
	bool done;
};

static void http_req_leave(struct http_req *req);
static void http_server_check_stopped(struct http_server *srv);

/* The standard reason phrase of a status (RFC 9110 wording). */
static const char *
http_status_title(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 406:
		return "Not Acceptable";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length Required";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 428:
		return "Precondition Required";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	}
	if (status >= 500)
		return "Server Error";
	if (status >= 400)
		return "Client Error";
	return "Unknown";
}

/* The name of an evhttp method. */
static const char *
http_method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "UNKNOWN";
}

/* Milliseconds since t. */
static double
http_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t->tv_nsec) / 1e6;
}

/* --- request ids ------------------------------------------------------ */

/* True for a client request id we are willing to echo. */
static bool
http_id_ok(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];

		if (n == 64 ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		        c == '.'))
			return false;
	}
	return n > 0;
}

/* Take 8 bytes from the server's CSPRNG pool; -1 if the kernel fails. */
static int
http_server_random8(struct http_server *srv, unsigned char *out)
{
	ssize_t got;

	if (srv->rnd_left < 8) {
		do {
			got = getrandom(srv->rnd, sizeof(srv->rnd), 0);
		} while (got < 0 && errno == EINTR);
		if (got != (ssize_t)sizeof(srv->rnd))
			return -1;
		srv->rnd_left = sizeof(srv->rnd);
	}
	memcpy(out, srv->rnd + sizeof(srv->rnd) - srv->rnd_left, 8);
	srv->rnd_left -= 8;
	return 0;
}

/* Give req the client's X-Request-Id when it is sane, else a new one. */
static void
http_req_set_id(struct http_req *req, const char *client)
{
	static const char hex[] = "0123456789abcdef";
	static uint64_t fallback;
	unsigned char rnd[8];
	size_t i;

	if (client != NULL && http_id_ok(client)) {
		snprintf(req->id, sizeof(req->id), "%s", client);
	} else {
		if (http_server_random8(req->srv, rnd) < 0) {
			log_error(
			    "http", "getrandom failed: %s", strerror(errno));
			fallback++;
			for (i = 0; i < 8; i++)
				rnd[i] = (unsigned char)(fallback >> (8 * i));
		}
		for (i = 0; i < 8; i++) {
			req->id[2 * i] = hex[rnd[i] >> 4];
			req->id[2 * i + 1] = hex[rnd[i] & 15];
		}
		req->id[16] = '\0';
	}
	snprintf(req->obj, sizeof(req->obj), "req %s", req->id);
}

/* --- metrics ---------------------------------------------------------- */

/* Count one finished request and its latency. */
static void
http_server_count(
    struct http_server *srv, const struct http_req *req, double seconds)
{
	struct http_stat *st;
	struct http_timing *tm;
	size_t i;

	for (i = 0; i < srv->nstats; i++) {
		st = &srv->stats[i];
		if (st->status == req->status && st->method == req->method &&
		    strcmp(st->route, req->label) == 0)
			break;
	}
	if (i == srv->nstats) {
		st = realloc(srv->stats, (i + 1) * sizeof(*st));
		if (st == NULL)
			return;
		srv->stats = st;
		srv->stats[i] = (struct http_stat){ req->label, req->method,
			req->status, 0 };
		srv->nstats++;
	}
	srv->stats[i].count++;

	for (i = 0; i < srv->ntimings; i++) {
		tm = &srv->timings[i];
		if (tm->method == req->method &&
		    strcmp(tm->route, req->label) == 0)
			break;
	}
	if (i == srv->ntimings) {
		tm = realloc(srv->timings, (i + 1) * sizeof(*tm));
		if (tm == NULL)
			return;
		srv->timings = tm;
		srv->timings[i].route = req->label;
		srv->timings[i].method = req->method;
		srv->timings[i].hist = metrics_histogram_new(
		    metrics_latency_buckets, metrics_latency_buckets_count);
		if (srv->timings[i].hist == NULL)
			return;
		srv->ntimings++;
	}
	metrics_histogram_observe(srv->timings[i].hist, seconds);
}

/* Copy a label value with \, " and newlines escaped. */
static void
http_label_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in != '\0' && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n') {
			out[o++] = '\\';
			out[o++] = *in == '\n' ? 'n' : *in;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

/* Write request counts and latency histograms. */
void
http_server_metrics(const struct http_server *srv, struct evbuffer *out)
{
	char route[512], labels[600];
	size_t i;

	metrics_header(out, "vouch_http_requests_total", "counter",
	    "HTTP requests by route pattern, method and status.");
	for (i = 0; i < srv->nstats; i++) {
		http_label_escape(srv->stats[i].route, route, sizeof(route));
		evbuffer_add_printf(out,
		    "vouch_http_requests_total{route=\"%s\","
		    "method=\"%s\",status=\"%d\"} %" PRIu64 "\n",
		    route, srv->stats[i].method, srv->stats[i].status,
		    srv->stats[i].count);
	}

	metrics_header(out, "vouch_http_request_duration_seconds", "histogram",
	    "Time from a request to the end of its reply, by route pattern "
	    "and method.");
	for (i = 0; i < srv->ntimings; i++) {
		http_label_escape(srv->timings[i].route, route, sizeof(route));
		snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"",
		    route, srv->timings[i].method);
		metrics_histogram_write(srv->timings[i].hist, out,
		    "vouch_http_request_duration_seconds", labels);
	}
}

/* --- the request's life ----------------------------------------------- */

/* The connection of req, or NULL once it is gone or detached. */
static struct evhttp_connection *
http_req_conn(const struct http_req *req)
{
	if (req->ereq == NULL)
		return NULL;
	return evhttp_request_get_connection(req->ereq);
}

/* Free everything req holds. Only http_req_finish and http_req_leave
   call this, once done and no callback is running. */
static void
http_req_free(struct http_req *req)
{
	json_decref(req->body);
	if (req->ctx_free != NULL)
		req->ctx_free(req->ctx);
	http_router_match_clear(&req->match);
	http_router_query_free(req->query, req->nquery);
	if (req->keepalive != NULL)
		event_free(req->keepalive);
	if (req->chunk != NULL)
		evbuffer_free(req->chunk);
	free(req->path);
	free(req);
}

/* Leave a callback: free req if it finished meanwhile. */
static void
http_req_leave(struct http_req *req)
{
	if (--req->busy == 0 && req->done)
		http_req_free(req);
}

/* Queue a deferred drain or close callback for req. */
static void
http_req_queue(struct http_req *req)
{
	struct http_server *srv = req->srv;

	if (req->queued || srv == NULL)
		return;
	TAILQ_INSERT_TAIL(&srv->notify, req, notify_link);
	req->queued = true;
	event_active(srv->notify_ev, EV_TIMEOUT, 1);
}

/* Stop watching the connection's output for a drain. */
static void
http_req_unwatch(struct http_req *req)
{
	if (req->watch != NULL)
		evbuffer_remove_cb_entry(req->watch_buf, req->watch);
	req->watch = NULL;
	req->watch_buf = NULL;
}

/* The connection's output changed: queue the drain callback once it is
   empty. Project code never runs inside libevent's buffer callback. */
static void
http_req_output_cb(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_req *req = arg;

	if (evbuffer_get_length(buf) == 0 && req->drain_cb != NULL)
		http_req_queue(req);
}

/*
 * Cut every tie between req and its connection except the evhttp request
 * itself: the close callback, the output watch, the keep-alive timer and
 * any queued callback. Called before req is handed back to libevent.
 */
static void
http_req_unhook(struct http_req *req)
{
	struct evhttp_connection *evcon = http_req_conn(req);

	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	http_req_unwatch(req);
	if (req->keepalive != NULL)
		event_del(req->keepalive);
	if (req->queued) {
		TAILQ_REMOVE(&req->srv->notify, req, notify_link);
		req->queued = false;
	}
}

/* Write the access log line. The path is cut short and has no query. */
static void
http_req_log(const struct http_req *req, double ms)
{
	char path[HTTP_LOG_PATH_MAX + 4];
	size_t len = strlen(req->path);

	if (len > HTTP_LOG_PATH_MAX)
		snprintf(path, sizeof(path), "%.*s...", HTTP_LOG_PATH_MAX,
		    req->path);
	else
		snprintf(path, sizeof(path), "%s", req->path);
	log_info(req->obj, "%s %s %d %.1fms %s%s", req->method, path,
	    req->status, ms, req->remote, req->gone ? " (client gone)" : "");
}

/*
 * The handler is done with req: log it, count it, take it off the
 * server's list, and free it unless a callback for it is still running.
 */
static void
http_req_finish(struct http_req *req, int status)
{
	struct http_server *srv = req->srv;
	double ms = http_ms_since(&req->start);

	req->done = true;
	req->status = status;
	http_req_log(req, ms);
	if (srv != NULL) {
		http_server_count(srv, req, ms / 1e3);
		if (req->listed)
			TAILQ_REMOVE(&srv->reqs, req, link);
		req->listed = false;
		http_server_check_stopped(srv);
	}
	if (req->busy == 0)
		http_req_free(req);
}

/*
 * The client (or the server) is gone: remember it, wake a paced producer
 * so it finds out, and call the handler's close callback once.
 */
static void
http_req_gone(struct http_req *req, const char *why)
{
	void (*cb)(void *);

	if (req->gone)
		return;
	req->gone = true;
	if (req->keepalive != NULL)
		event_del(req->keepalive);
	log_debug(req->obj, "connection lost: %s", why);

	if (req->drain_cb != NULL)
		http_req_queue(req);
	cb = req->close_cb;
	if (cb != NULL) {
		req->close_cb = NULL;
		req->busy++;
		cb(req->close_arg);
		http_req_leave(req);
	}
}

/*
 * evhttp is freeing the connection. A stream whose client left has its
 * evhttp request detached (connection NULL) and ours to free; otherwise
 * libevent frees the request right after this returns.
 */
static void
http_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct http_req *req = arg;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	http_req_unwatch(req);
	if (req->ereq != NULL &&
	    evhttp_request_get_connection(req->ereq) != NULL)
		req->ereq = NULL;
	http_req_gone(req, "the client closed the connection");
}

/* --- replies ---------------------------------------------------------- */

/* Remove every copy of a header, then add one. */
static void
http_header_set(struct evkeyvalq *h, const char *name, const char *value)
{
	while (evhttp_remove_header(h, name) == 0)
		continue;
	evhttp_add_header(h, name, value);
}

/* Add the headers every reply carries. */
static void
http_req_headers(struct http_req *req, const char *content_type)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req->ereq);

	http_header_set(h, "Cache-Control", "no-store");
	http_header_set(h, "X-Content-Type-Options", "nosniff");
	http_header_set(h, "X-Request-Id", req->id);
	if (content_type != NULL)
		http_header_set(h, "Content-Type", content_type);
	if (req->srv != NULL && req->srv->stopping)
		http_header_set(h, "Connection", "close");
}

/* libevent 2.1 would send a HEAD reply's body: send its length only. */
static struct evbuffer *
http_req_head_only(struct http_req *req, struct evbuffer *body)
{
	char len[32];

	snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
	http_header_set(evhttp_request_get_output_headers(req->ereq),
	    "Content-Length", len);
	return NULL;
}

/* Hand a complete reply to libevent (or drop it if the client is gone)
   and finish req. body may be NULL; its contents are taken. */
static void
http_req_send(struct http_req *req, int status, const char *content_type,
    struct evbuffer *body)
{
	struct evhttp_connection *evcon;

	if (req->done) {
		log_error(req->obj, "reply after the request ended");
		return;
	}
	if (req->streaming) {
		log_error(req->obj, "plain reply on a started stream");
		http_stream_end(req);
		return;
	}

	evcon = http_req_conn(req);
	http_req_unhook(req);
	if (req->ereq != NULL && evcon == NULL) {
		evhttp_request_free(req->ereq);
	} else if (req->ereq != NULL) {
		http_req_headers(req, content_type);
		if (body != NULL && strcmp(req->method, "HEAD") == 0)
			body = http_req_head_only(req, body);
		evhttp_send_reply(
		    req->ereq, status, http_status_title(status), body);
	}
	req->ereq = NULL;
	http_req_finish(req, status);
}

/* jansson's dump callback: append to an evbuffer. */
static int
http_json_out_cb(const char *buffer, size_t size, void *data)
{
	return evbuffer_add(data, buffer, size);
}

/* Serialise v compactly into a new evbuffer; NULL on failure. */
static struct evbuffer *
http_json_dump(const json_t *v)
{
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL)
		return NULL;
	if (json_dump_callback(v, http_json_out_cb, buf,
	        JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
		evbuffer_free(buf);
		return NULL;
	}
	return buf;
}

/* Add a header to the reply. */
void
http_reply_header(struct http_req *req, const char *name, const char *value)
{
	if (req->done || req->streaming) {
		log_error(req->obj, "header %s after the reply started", name);
		return;
	}
	if (http_req_conn(req) == NULL || value == NULL)
		return;
	if (evhttp_add_header(
	        evhttp_request_get_output_headers(req->ereq), name, value) != 0)
		log_error(req->obj, "header %s refused", name);
}

/* Reply with a JSON body; steals the reference. */
void
http_reply_json(struct http_req *req, int status, json_t *body)
{
	struct evbuffer *buf;

	if (body == NULL) {
		log_error(req->obj, "reply without a JSON body");
		http_reply_problem(
		    req, 500, "internal", NULL, "the reply could not be built");
		return;
	}
	buf = http_json_dump(body);
	json_decref(body);
	if (buf == NULL) {
		log_error(req->obj, "cannot serialise the reply");
		http_reply_problem(
		    req, 500, "internal", NULL, "the reply could not be built");
		return;
	}
	http_req_send(req, status, "application/json", buf);
	evbuffer_free(buf);
}

/* Reply with no body. */
void
http_reply_empty(struct http_req *req, int status)
{
	http_req_send(req, status, NULL, NULL);
}

/* Reply with any body. */
void
http_reply_body(struct http_req *req, int status, const char *content_type,
    const void *body, size_t len)
{
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL || evbuffer_add(buf, body, len) != 0) {
		evbuffer_free(buf);
		log_error(req->obj, "out of memory for the reply");
		http_req_send(req, 500, NULL, NULL);
		return;
	}
	http_req_send(req, status, content_type, buf);
	evbuffer_free(buf);
}

/* A JSON string of s, with every byte that is not printable ASCII or
   part of valid UTF-8 replaced, so a detail never breaks the reply. */
static json_t *
http_json_text(const char *s)
{
	json_t *v = json_string(s);
	char *copy;
	size_t i;

	if (v != NULL)
		return v;
	copy = strdup(s);
	if (copy == NULL)
		return NULL;
	for (i = 0; copy[i] != '\0'; i++) {
		if ((unsigned char)copy[i] < 0x20 ||
		    (unsigned char)copy[i] >= 0x7f)
			copy[i] = '?';
	}
	v = json_string(copy);
	free(copy);
	return v;
}

/* Build the problem object; NULL when out of memory. */
static json_t *
http_problem_new(
    int status, const char *code, const char *field, const char *detail)
{
	char type[128];
	json_t *o = json_object();

	snprintf(type, sizeof(type), "urn:vouch:problem:%s", code);
	if (o == NULL ||
	    json_object_set_new(o, "type", json_string(type)) != 0 ||
	    json_object_set_new(
	        o, "title", json_string(http_status_title(status))) != 0 ||
	    json_object_set_new(o, "status", json_integer(status)) != 0 ||
	    json_object_set_new(o, "detail", http_json_text(detail)) != 0 ||
	    json_object_set_new(o, "code", json_string(code)) != 0 ||
	    (field != NULL &&
	        json_object_set_new(o, "field", http_json_text(field)) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Reply with RFC 9457 problem details. */
void
http_reply_problem(struct http_req *req, int status, const char *code,
    const char *field, const char *fmt, ...)
{
	static const char fallback[] =
	    "{\"type\":\"urn:vouch:problem:internal\","
	    "\"title\":\"Internal Server Error\",\"status\":500,"
	    "\"detail\":\"out of memory\",\"code\":\"internal\"}";
	char detail[HTTP_DETAIL_MAX];
	struct evbuffer *buf = NULL;
	json_t *o;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);

	o = http_problem_new(
	    status, code != NULL ? code : "internal", field, detail);
	if (o != NULL)
		buf = http_json_dump(o);
	json_decref(o);
	if (buf == NULL) {
		log_error(req->obj, "out of memory for a problem reply");
		http_reply_body(req, 500, "application/problem+json", fallback,
		    sizeof(fallback) - 1);
		return;
	}
	http_req_send(req, status, "application/problem+json", buf);
	evbuffer_free(buf);
}

/* --- streams ---------------------------------------------------------- */

/*
 * While a stream runs, the client may stay silent for as long as it
 * likes: drop the read timeout (evhttp keeps reading only to notice a
 * close) and keep the write timeout against stuck readers. restore puts
 * the server's timeout back before the connection serves another request.
 */
static void
http_req_stream_timeouts(
    struct http_req *req, struct evhttp_connection *evcon, bool restore)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	int secs =
	    req->srv != NULL ? req->srv->request_timeout : HTTP_DEFAULT_TIMEOUT;
	struct timeval tv = { secs, 0 };

	if (restore)
		evhttp_connection_set_timeout(evcon, secs);
	else
		bufferevent_set_timeouts(bev, NULL, &tv);
}

/* Send the status line and headers of a chunked reply. */
void
http_stream_start(struct http_req *req, int status, const char *content_type)
{
	struct evhttp_connection *evcon;

	if (req->done || req->streaming) {
		log_error(req->obj, "stream start on a reply already started");
		return;
	}
	req->streaming = true;
	req->status = status;
	evcon = http_req_conn(req);
	if (evcon == NULL)
		return;

	http_req_headers(req, content_type);
	evhttp_send_reply_start(req->ereq, status, http_status_title(status));
	http_req_stream_timeouts(req, evcon, false);
}

/* Send what req->chunk holds as one chunk. */
static int
http_req_flush(struct http_req *req)
{
	evhttp_send_reply_chunk(req->ereq, req->chunk);

	/* A HEAD reply has no body: libevent leaves the data with us. */
	evbuffer_drain(req->chunk, evbuffer_get_length(req->chunk));
	return 0;
}

/* The stream's scratch buffer; NULL when the stream is not open, the
   client is gone or memory ran out. */
static struct evbuffer *
http_req_chunk(struct http_req *req)
{
	if (req->done || !req->streaming) {
		log_error(req->obj, "stream write without an open stream");
		return NULL;
	}
	if (req->gone || http_req_conn(req) == NULL)
		return NULL;
	if (req->chunk == NULL)
		req->chunk = evbuffer_new();
	return req->chunk;
}

/* Queue data on the stream. */
int
http_stream_write(struct http_req *req, const void *data, size_t len)
{
	struct evbuffer *chunk = http_req_chunk(req);

	if (chunk == NULL)
		return -1;
	if (len == 0)
		return 0;
	if (evbuffer_add(chunk, data, len) != 0)
		return -1;
	return http_req_flush(req);
}

/* Bytes in the connection's output buffer. */
size_t
http_stream_pending(const struct http_req *req)
{
	struct evhttp_connection *evcon = http_req_conn(req);

	if (evcon == NULL)
		return 0;
	return evbuffer_get_length(
	    bufferevent_get_output(evhttp_connection_get_bufferevent(evcon)));
}

/* Call cb (later, from the loop) once the output has drained, or at
   once if it already has or the client is gone. */
void
http_stream_on_drain(struct http_req *req, void (*cb)(void *arg), void *arg)
{
	struct evhttp_connection *evcon = http_req_conn(req);
	struct evbuffer *out;

	req->drain_cb = cb;
	req->drain_arg = arg;
	if (cb == NULL || req->done) {
		http_req_unwatch(req);
		return;
	}
	if (req->gone || evcon == NULL || http_stream_pending(req) == 0) {
		http_req_queue(req);
		return;
	}
	if (req->watch != NULL)
		return;

	out = bufferevent_get_output(evhttp_connection_get_bufferevent(evcon));
	req->watch = evbuffer_add_cb(out, http_req_output_cb, req);
	if (req->watch == NULL) {
		log_warn(req->obj, "cannot watch the output; waking now");
		http_req_queue(req);
		return;
	}
	req->watch_buf = out;
}

/* Hand the stream back to libevent: the terminating chunk is sent, or a
   detached request freed. req itself stays. */
static void
http_req_release_stream(struct http_req *req)
{
	struct evhttp_connection *evcon = http_req_conn(req);

	http_req_unhook(req);
	if (req->ereq != NULL && evcon == NULL) {
		evhttp_request_free(req->ereq);
	} else if (req->ereq != NULL) {
		http_req_stream_timeouts(req, evcon, true);
		evhttp_send_reply_end(req->ereq);
	}
	req->ereq = NULL;
}

/* Finish the stream and the request. */
void
http_stream_end(struct http_req *req)
{
	if (req->done) {
		log_error(req->obj, "stream end after the request ended");
		return;
	}
	if (!req->streaming) {
		log_error(req->obj, "stream end without a stream");
		http_reply_problem(
		    req, 500, "internal", NULL, "the reply was not produced");
		return;
	}
	http_req_release_stream(req);
	http_req_finish(req, req->status);
}

/* --- server-sent events ----------------------------------------------- */

/* The keep-alive timer of an event stream. */
static void
http_sse_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char comment[] = ": keep-alive\n\n";

	http_stream_write(arg, comment, sizeof(comment) - 1);
}

/* Start a text/event-stream reply with keep-alive comments. */
void
http_sse_start(struct http_req *req)
{
	if (req->done || req->streaming) {
		log_error(req->obj, "event stream on a reply already started");
		return;
	}
	http_stream_start(req, 200, "text/event-stream");
	req->sse = true;
	if (req->gone || req->srv == NULL || http_req_conn(req) == NULL)
		return;

	req->keepalive = event_new(
	    req->srv->base, -1, EV_PERSIST, http_sse_keepalive_cb, req);
	if (req->keepalive == NULL ||
	    event_add(req->keepalive, &req->srv->sse_interval) != 0)
		log_warn(req->obj, "event stream without keep-alive comments");
}

/* Append "data: " lines for every line of data; CR, LF and CRLF all end
   a line, as they do for the client. */
static void
http_sse_data(struct evbuffer *out, const char *data)
{
	size_t len;

	for (;;) {
		len = strcspn(data, "\r\n");
		evbuffer_add(out, "data: ", 6);
		evbuffer_add(out, data, len);
		evbuffer_add(out, "\n", 1);
		data += len;
		if (*data == '\0')
			break;
		data += data[0] == '\r' && data[1] == '\n' ? 2 : 1;
	}
}

/* Send one event. */
int
http_sse_send(struct http_req *req, const char *event, const char *data)
{
	struct evbuffer *chunk;

	if (event != NULL && strpbrk(event, "\r\n") != NULL) {
		log_error(req->obj, "event name with a line break");
		return -1;
	}
	chunk = http_req_chunk(req);
	if (chunk == NULL)
		return -1;

	if (event != NULL)
		evbuffer_add_printf(chunk, "event: %s\n", event);
	http_sse_data(chunk, data != NULL ? data : "");
	evbuffer_add(chunk, "\n", 1);
	return http_req_flush(req);
}

/* Set the keep-alive interval of event streams. */
void
http_server_sse_interval(struct http_server *srv, int msec)
{
	if (msec <= 0)
		msec = HTTP_SSE_INTERVAL_MS;
	srv->sse_interval.tv_sec = msec / 1000;
	srv->sse_interval.tv_usec = (msec % 1000) * 1000;
}

/* --- the request accessors -------------------------------------------- */

/* The request id: 16 hex characters, or the client's own. */
const char *
http_req_id(const struct http_req *req)
{
	return req->id;
}

/* The method name ("GET"). */
const char *
http_req_method(const struct http_req *req)
{
	return req->method;
}

/* The path as the client sent it, without the query. */
const char *
http_req_path(const struct http_req *req)
{
	return req->path;
}

/* The client's address. */
const char *
http_req_remote(const struct http_req *req)
{
	return req->remote;
}

/* A request header; NULL once the connection is gone. */
const char *
http_req_header(const struct http_req *req, const char *name)
{
	if (req->ereq == NULL)
		return NULL;
	return evhttp_find_header(
	    evhttp_request_get_input_headers(req->ereq), name);
}

/* A decoded path parameter. */
const char *
http_req_param(const struct http_req *req, const char *name)
{
	return http_router_param(&req->match, name);
}

/* The first query parameter of that name. */
const char *
http_req_query(const struct http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nquery; i++) {
		if (strcmp(req->query[i].name, name) == 0)
			return req->query[i].value;
	}
	return NULL;
}

/* The parsed body of a body route. */
json_t *
http_req_json(const struct http_req *req)
{
	return req->body;
}

/* Set the per-request context; a previous one is freed. */
void
http_req_set_ctx(struct http_req *req, void *ctx, void (*free_fn)(void *))
{
	if (req->ctx_free != NULL && req->ctx != ctx)
		req->ctx_free(req->ctx);
	req->ctx = ctx;
	req->ctx_free = free_fn;
}

/* The context the authenticator set. */
void *
http_req_ctx(const struct http_req *req)
{
	return req->ctx;
}

/* Register the close callback; if the client already left, it runs
   from the loop shortly. */
void
http_req_on_close(struct http_req *req, void (*cb)(void *arg), void *arg)
{
	req->close_cb = cb;
	req->close_arg = arg;
	if (cb != NULL && req->gone && !req->done) {
		req->close_due = true;
		http_req_queue(req);
	}
}

/* --- the request path: route, body, authentication, handler ----------- */

/* True when a Content-Length value is above max. */
static bool
http_length_over(const char *v, size_t max)
{
	unsigned long long n = 0;

	if (v == NULL)
		return false;
	for (; *v >= '0' && *v <= '9'; v++) {
		if (n > (ULLONG_MAX - 9) / 10)
			return true;
		n = n * 10 + (unsigned long long)(*v - '0');
	}
	return n > max;
}

/* True for "application/json", any case, with or without parameters. */
static bool
http_is_json_type(const char *v)
{
	static const char want[] = "application/json";
	size_t n = sizeof(want) - 1;

	if (v == NULL)
		return false;
	v += strspn(v, " \t");
	if (evutil_ascii_strncasecmp(v, want, n) != 0)
		return false;
	v += n;
	v += strspn(v, " \t");
	return *v == '\0' || *v == ';';
}

/* True for the methods whose routes take a JSON body. */
static bool
http_method_has_body(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	    strcmp(method, "PATCH") == 0;
}

/* Replace what is not printable ASCII; jansson quotes the input. */
static void
http_printable(char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
	}
}

/* Parse the JSON body of a body route into req->body. */
static int
http_req_parse(struct http_req *req, struct evbuffer *in, size_t len)
{
	json_error_t err;
	json_t *body;

	if (!http_is_json_type(http_req_header(req, "Content-Type"))) {
		http_reply_problem(req, 415, "unsupported_media_type", NULL,
		    "the body must be sent as application/json");
		return -1;
	}

	body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
	if (body == NULL) {
		http_printable(err.text);
		http_reply_problem(req, 400, "invalid_json", NULL,
		    "invalid JSON at line %d, column %d (byte %d): %s",
		    err.line, err.column, err.position, err.text);
		return -1;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		http_reply_problem(req, 422, "validation_failed", NULL,
		    "the body must be a JSON object");
		return -1;
	}
	req->body = body;
	return 0;
}

/*
 * Enforce the body limit on every request, before anything else looks
 * at it. evhttp's own cap is higher than ours, so a body between the two
 * is read and refused here, as problem+json.
 */
static int
http_req_check_size(struct http_req *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req->ereq);
	size_t max = req->srv->max_body;

	if (http_length_over(http_req_header(req, "Content-Length"), max) ||
	    evbuffer_get_length(in) > max) {
		http_reply_problem(req, 413, "too_large", NULL,
		    "the body is larger than %zu bytes", max);
		return -1;
	}
	return 0;
}

/* Turn the body of a body route into a JSON object in req->body. Runs
   after authentication: a caller without credentials learns nothing
   about the body. */
static int
http_req_take_body(struct http_req *req)
{
	struct evbuffer *in;
	size_t len;

	if (!http_method_has_body(req->route->method))
		return 0;
	if (req->ereq == NULL) {
		http_reply_problem(
		    req, 503, "unavailable", NULL, "the server stopped");
		return -1;
	}
	in = evhttp_request_get_input_buffer(req->ereq);
	len = evbuffer_get_length(in);
	if (len > 0)
		return http_req_parse(req, in, len);

	if (!req->route->body_optional) {
		http_reply_problem(req, 400, "invalid_json", NULL,
		    "the request needs a JSON body");
		return -1;
	}
	req->body = json_object();
	if (req->body == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return -1;
	}
	return 0;
}

/* Read the body, then run the route's handler. */
static void
http_req_run(struct http_req *req)
{
	req->ran = true;
	req->busy++;
	if (http_req_take_body(req) == 0)
		req->route->handler(req);
	http_req_leave(req);
}

/* Run the handler after the authenticator said yes. */
void
http_req_continue(struct http_req *req)
{
	if (req->done || req->ran || req->route == NULL) {
		log_error(req->obj,
		    "continue without a pending "
		    "authentication");
		return;
	}
	http_req_run(req);
}

/* Authenticate if the route asks for it, then run the handler. */
static void
http_req_dispatch(struct http_req *req)
{
	struct http_server *srv = req->srv;
	const struct http_route *route = req->route;

	if (route->auth == 0) {
		http_req_run(req);
		return;
	}
	if (srv->auth_fn == NULL) {
		log_error(req->obj,
		    "route %s %s needs credentials but "
		    "there is no authenticator",
		    route->method, route->pattern);
		http_reply_problem(req, 500, "internal", NULL,
		    "the server cannot check credentials");
		return;
	}
	srv->auth_fn(req, route->auth, srv->auth_arg);
}

/* Route a new request and start its handling. */
static void
http_req_begin(struct http_req *req)
{
	struct http_server *srv = req->srv;
	enum http_router_result res;

	if (srv->stopping) {
		http_reply_problem(req, 503, "unavailable", NULL,
		    "the server is shutting down");
		return;
	}

	res =
	    http_router_match(srv->router, req->method, req->path, &req->match);
	if (res == HTTP_ROUTER_NOT_FOUND) {
		http_reply_problem(req, 404, "not_found", NULL,
		    "there is nothing at this path");
		return;
	}
	req->label = req->match.pattern;
	if (res == HTTP_ROUTER_BAD_METHOD) {
		http_reply_header(req, "Allow", req->match.allow);
		http_reply_problem(req, 405, "method_not_allowed", NULL,
		    "%s is not allowed here; allowed: %s", req->method,
		    req->match.allow);
		return;
	}

	req->route = req->match.data;
	if (http_req_check_size(req) < 0)
		return;
	http_req_dispatch(req);
}

/* A new request object for an evhttp request; NULL without memory. */
static struct http_req *
http_req_new(struct http_server *srv, struct evhttp_request *ereq)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ereq);
	struct evhttp_connection *evcon = evhttp_request_get_connection(ereq);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct http_req *req;
	char *addr = NULL;
	ev_uint16_t port = 0;

	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return NULL;
	req->path = strdup(path != NULL && *path != '\0' ? path : "/");
	if (req->path == NULL ||
	    http_router_query_parse(query, &req->query, &req->nquery) < 0) {
		free(req->path);
		free(req);
		return NULL;
	}

	req->srv = srv;
	req->ereq = ereq;
	clock_gettime(CLOCK_MONOTONIC, &req->start);
	req->method = http_method_name(evhttp_request_get_command(ereq));
	req->label = "unmatched";
	http_req_set_id(req,
	    evhttp_find_header(
	        evhttp_request_get_input_headers(ereq), "X-Request-Id"));
	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &addr, &port);
	snprintf(
	    req->remote, sizeof(req->remote), "%s", addr != NULL ? addr : "-");

	TAILQ_INSERT_TAIL(&srv->reqs, req, link);
	req->listed = true;
	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, http_conn_close_cb, req);
	return req;
}

/* evhttp's callback for every complete request. */
static void
http_request_cb(struct evhttp_request *ereq, void *arg)
{
	struct http_server *srv = arg;
	struct http_req *req;

	req = http_req_new(srv, ereq);
	if (req == NULL) {
		log_error("http", "out of memory for a request");
		evhttp_send_error(ereq, 503, NULL);
		return;
	}
	req->busy++;
	http_req_begin(req);
	http_req_leave(req);
}

/* Run the queued drain and late close callbacks. Only those queued when
   this started run now; the rest wait for the next round. */
static void
http_server_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	struct http_req *req;
	void (*cb)(void *);
	void *cb_arg;
	size_t n = 0;

	TAILQ_FOREACH(req, &srv->notify, notify_link)
	n++;
	while (n-- > 0 && (req = TAILQ_FIRST(&srv->notify)) != NULL) {
		TAILQ_REMOVE(&srv->notify, req, notify_link);
		req->queued = false;
		req->busy++;
		if (req->close_due && req->close_cb != NULL) {
			cb = req->close_cb;
			req->close_cb = NULL;
			req->close_due = false;
			cb(req->close_arg);
		}
		if (req->drain_cb != NULL && !req->done) {
			http_req_unwatch(req);
			cb = req->drain_cb;
			cb_arg = req->drain_arg;
			req->drain_cb = NULL;
			cb(cb_arg);
		}
		http_req_leave(req);
	}
	if (!TAILQ_EMPTY(&srv->notify))
		event_active(srv->notify_ev, EV_TIMEOUT, 1);
}

/* --- the server ------------------------------------------------------- */

/* Split "host:port" ("[::1]:8080", ":8080") into its parts. */
static int
http_parse_listen(
    const char *listen, char *host, size_t hostlen, ev_uint16_t *port)
{
	const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
	const char *h = listen, *p;
	size_t hlen;
	unsigned long n = 0;

	if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5)
		return -1;
	for (p = colon + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (unsigned long)(*p - '0');
	}
	if (n > 65535)
		return -1;

	hlen = (size_t)(colon - listen);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0) {
		h = "0.0.0.0";
		hlen = strlen(h);
	}
	if (hlen >= hostlen)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (ev_uint16_t)n;
	return 0;
}

/* The port a bound socket got. */
static int
http_bound_port(struct evhttp_bound_socket *bound)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(evhttp_bound_socket_get_fd(bound),
	        (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * evhttp's own body cap: well above ours, so that bodies over our limit
 * are still read and answered as problem+json by us.
 * XXX: a body over this cap gets evhttp's HTML 413 (or 400), because
 * libevent 2.1 offers no hook between the headers and the body; raising
 * the cap trades memory per connection for nicer errors.
 */
static size_t
http_hard_cap(size_t max_body)
{
	size_t cap = max_body > SIZE_MAX / 8 ? SIZE_MAX / 8 : max_body * 4;

	return cap < HTTP_HARD_CAP_MIN ? HTTP_HARD_CAP_MIN : cap;
}

/* Apply the limits and callbacks to a fresh evhttp. */
static void
http_server_configure(struct http_server *srv, size_t max_headers)
{
	evhttp_set_timeout(srv->http, srv->request_timeout);
	evhttp_set_max_headers_size(srv->http, (ev_ssize_t)max_headers);
	evhttp_set_max_body_size(
	    srv->http, (ev_ssize_t)http_hard_cap(srv->max_body));
	evhttp_set_allowed_methods(srv->http, HTTP_ALL_METHODS);
	evhttp_set_default_content_type(srv->http, "application/octet-stream");
	evhttp_set_gencb(srv->http, http_request_cb, srv);
}

static void http_server_stop_timer_cb(
    evutil_socket_t fd, short what, void *arg);

/* Create the server and bind its listener. */
struct http_server *
http_server_new(
    struct event_base *base, const struct http_settings *s, const char **cause)
{
	struct http_server *srv;
	char host[256];
	ev_uint16_t port;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		*cause = "out of memory";
		return NULL;
	}
	TAILQ_INIT(&srv->reqs);
	TAILQ_INIT(&srv->notify);
	srv->base = base;
	srv->max_body =
	    s->max_body_bytes > 0 ? s->max_body_bytes : HTTP_DEFAULT_BODY;
	srv->request_timeout =
	    s->request_timeout > 0 ? s->request_timeout : HTTP_DEFAULT_TIMEOUT;
	srv->shutdown_timeout = s->shutdown_timeout;
	http_server_sse_interval(srv, HTTP_SSE_INTERVAL_MS);

	if (http_parse_listen(s->listen, host, sizeof(host), &port) < 0) {
		*cause = "listen is not host:port";
		goto fail;
	}
	srv->router = http_router_new();
	srv->http = evhttp_new(base);
	srv->notify_ev = event_new(base, -1, 0, http_server_notify_cb, srv);
	srv->stop_timer = evtimer_new(base, http_server_stop_timer_cb, srv);
	if (srv->router == NULL || srv->http == NULL ||
	    srv->notify_ev == NULL || srv->stop_timer == NULL) {
		*cause = "out of memory";
		goto fail;
	}
	http_server_configure(srv,
	    s->max_header_bytes > 0 ? s->max_header_bytes
	                            : HTTP_DEFAULT_HEADERS);

	errno = 0;
	srv->bound = evhttp_bind_socket_with_handle(srv->http, host, port);
	if (srv->bound == NULL) {
		*cause = errno != 0 ? strerror(errno)
		                    : "cannot bind the listen address";
		goto fail;
	}
	srv->port = http_bound_port(srv->bound);
	return srv;

fail:
	http_server_free(srv);
	return NULL;
}

/* Add routes; a malformed or duplicate one is skipped with an error. */
void
http_server_routes(
    struct http_server *srv, const struct http_route *routes, size_t count)
{
	const char *cause;
	size_t i;

	for (i = 0; i < count; i++) {
		cause = "route without a handler";
		if (routes[i].handler == NULL ||
		    http_router_add(srv->router, routes[i].method,
		        routes[i].pattern, &routes[i], &cause) < 0)
			log_error("http", "route %s %s skipped: %s",
			    routes[i].method ? routes[i].method : "?",
			    routes[i].pattern ? routes[i].pattern : "?", cause);
	}
}

/* Set the function that checks credentials. */
void
http_server_authenticator(
    struct http_server *srv, http_authenticate_fn fn, void *arg)
{
	srv->auth_fn = fn;
	srv->auth_arg = arg;
}

/* The port the listener got. */
int
http_server_port(const struct http_server *srv)
{
	return srv->port;
}

/* The once-event that tells the caller the shutdown is over. */
static void
http_server_stopped_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_stop *stop = arg;

	stop->done(stop->arg);
	free(stop);
}

/*
 * Report the end of the shutdown, from a fresh event so that the caller
 * may free the server in its callback.
 */
static void
http_server_report_stopped(struct http_server *srv)
{
	struct timeval now = { 0, 0 };
	struct http_stop *stop;

	srv->stop_reported = true;
	evtimer_del(srv->stop_timer);
	if (srv->stop_done == NULL)
		return;

	stop = malloc(sizeof(*stop));
	if (stop != NULL) {
		stop->done = srv->stop_done;
		stop->arg = srv->stop_arg;
		if (event_base_once(srv->base, -1, EV_TIMEOUT,
		        http_server_stopped_cb, stop, &now) == 0)
			return;
		free(stop);
	}
	srv->stop_done(srv->stop_arg);
}

/* Report the stop once the last request in flight has finished. */
static void
http_server_check_stopped(struct http_server *srv)
{
	if (srv->stopping && !srv->stop_reported && TAILQ_EMPTY(&srv->reqs))
		http_server_report_stopped(srv);
}

/* The shutdown timeout passed: stop waiting. */
static void
http_server_stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	struct http_req *req;
	size_t n = 0;

	TAILQ_FOREACH(req, &srv->reqs, link)
	n++;
	log_warn("http", "shutdown timeout: %zu requests still running", n);
	http_server_report_stopped(srv);
}

/* End an event stream for the shutdown; its handler is told through the
   close callback and still ends it. */
static void
http_req_cut(struct http_req *req)
{
	http_req_release_stream(req);
	http_req_gone(req, "the server is shutting down");
}

/* Stop accepting, end event streams, and report when drained. */
void
http_server_shutdown(
    struct http_server *srv, void (*done)(void *arg), void *arg)
{
	struct timeval tv = { srv->shutdown_timeout, 0 };
	struct http_req *req;

	if (srv->stopping) {
		log_warn("http", "shutdown already under way");
		return;
	}
	srv->stopping = true;
	srv->stop_done = done;
	srv->stop_arg = arg;
	if (srv->bound != NULL)
		evhttp_del_accept_socket(srv->http, srv->bound);
	srv->bound = NULL;
	log_info("http", "stopped listening; finishing requests");

	/* A close callback may finish any request: rescan after each. */
again:
	TAILQ_FOREACH(req, &srv->reqs, link)
	{
		if (req->sse && !req->gone) {
			http_req_cut(req);
			goto again;
		}
	}

	if (srv->shutdown_timeout <= 0) {
		http_server_report_stopped(srv);
		return;
	}
	evtimer_add(srv->stop_timer, &tv);
	http_server_check_stopped(srv);
}

/*
 * Detach a request from a server being freed: libevent frees its evhttp
 * request with the connection, the handler is told through the close
 * callback, and its later reply only frees req.
 */
static void
http_req_orphan(struct http_req *req)
{
	struct http_server *srv = req->srv;

	http_req_unhook(req);
	if (req->ereq != NULL && http_req_conn(req) == NULL)
		evhttp_request_free(req->ereq);
	req->ereq = NULL;
	TAILQ_REMOVE(&srv->reqs, req, link);
	req->listed = false;
	if (req->keepalive != NULL) {
		event_free(req->keepalive);
		req->keepalive = NULL;
	}
	req->srv = NULL;
	http_req_gone(req, "the server stopped");
}

/* Free the server; requests still running become orphans. */
void
http_server_free(struct http_server *srv)
{
	struct http_req *req;
	size_t i;

	if (srv == NULL)
		return;
	srv->stop_reported = true;
	while ((req = TAILQ_FIRST(&srv->reqs)) != NULL)
		http_req_orphan(req);

	if (srv->http != NULL)
		evhttp_free(srv->http);
	if (srv->notify_ev != NULL)
		event_free(srv->notify_ev);
	if (srv->stop_timer != NULL)
		event_free(srv->stop_timer);
	http_router_free(srv->router);
	for (i = 0; i < srv->ntimings; i++)
		metrics_histogram_free(srv->timings[i].hist);
	free(srv->timings);
	free(srv->stats);
	free(srv);
}
