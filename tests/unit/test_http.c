/*
 * Unit tests for http.c and http_router.c. The server runs on its own
 * event_base in the test's thread; a client thread talks to it over real
 * sockets with blocking I/O and records what it saw, and the test thread
 * checks the records once the client is done (cmocka is not thread-safe).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "http.h"
#include "http_router.h"

/* --- a blocking HTTP/1.1 client for the client thread ------------------ */

struct conn {
	int fd;
	char *buf; /* bytes received and not yet consumed */
	size_t len;
	size_t cap;
	char *raw; /* everything received, for stream checks */
	size_t rawlen;
};

struct resp {
	int status;
	char head[16384];
	char *body;
	size_t len;
};

/* Connect to the server; fd -1 when refused. */
static void
conn_open(struct conn *c, int port)
{
	struct sockaddr_in sin;
	struct timeval tv = { 5, 0 };

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* Close a connection and drop what it buffered. */
static void
conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c->raw);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* Send bytes, ignoring a peer that already closed. */
static void
conn_send(struct conn *c, const void *p, size_t n)
{
	const char *s = p;
	ssize_t w;

	while (n > 0 && c->fd >= 0) {
		w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Send a string. */
static void
conn_sends(struct conn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

/* Read more bytes; the count, 0 at EOF, -1 on error or timeout. */
static int
conn_fill(struct conn *c)
{
	char tmp[65536];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);

	if (n <= 0)
		return n == 0 ? 0 : -1;
	if (c->len + (size_t)n > c->cap) {
		c->cap = (c->len + (size_t)n) * 2;
		c->buf = realloc(c->buf, c->cap);
	}
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	c->raw = realloc(c->raw, c->rawlen + (size_t)n + 1);
	memcpy(c->raw + c->rawlen, tmp, (size_t)n);
	c->rawlen += (size_t)n;
	c->raw[c->rawlen] = '\0';
	return (int)n;
}

/* Make sure n bytes are buffered. */
static int
conn_need(struct conn *c, size_t n)
{
	while (c->len < n) {
		if (conn_fill(c) <= 0)
			return -1;
	}
	return 0;
}

/* Drop n bytes from the front of the buffer. */
static void
conn_consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/* Read until the raw stream holds needle; 0 or -1. */
static int
conn_wait_for(struct conn *c, const char *needle)
{
	while (c->raw == NULL || strstr(c->raw, needle) == NULL) {
		if (conn_fill(c) <= 0)
			return -1;
	}
	return 0;
}

/* Copy a response header's value into out; NULL when absent. */
static const char *
resp_header(const struct resp *r, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);
	const char *p = strstr(r->head, "\r\n");

	while (p != NULL && p[2] != '\r') {
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1, *e;

			v += strspn(v, " ");
			e = strstr(v, "\r\n");
			snprintf(out, len, "%.*s", (int)(e - v), v);
			return out;
		}
		p = strstr(p, "\r\n");
	}
	return NULL;
}

/* Append to a response body. */
static void
resp_add(struct resp *r, const char *p, size_t n)
{
	r->body = realloc(r->body, r->len + n + 1);
	memcpy(r->body + r->len, p, n);
	r->len += n;
	r->body[r->len] = '\0';
}

/* Read a chunked body. */
static int
conn_read_chunked(struct conn *c, struct resp *r)
{
	char *end;
	size_t size;

	for (;;) {
		while ((end = memmem(c->buf, c->len, "\r\n", 2)) == NULL) {
			if (conn_fill(c) <= 0)
				return -1;
		}
		size = strtoul(c->buf, NULL, 16);
		conn_consume(c, (size_t)(end - c->buf) + 2);
		if (size == 0) {
			if (conn_need(c, 2) < 0)
				return -1;
			conn_consume(c, 2);
			return 0;
		}
		if (conn_need(c, size + 2) < 0)
			return -1;
		resp_add(r, c->buf, size);
		conn_consume(c, size + 2);
	}
}

/* Read one whole response. */
static int
conn_read_resp(struct conn *c, struct resp *r, bool head)
{
	char *end, val[64];
	size_t hlen;

	memset(r, 0, sizeof(*r));
	resp_add(r, "", 0);
	while (c->buf == NULL ||
	    (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
		if (conn_fill(c) <= 0)
			return -1;
	}
	hlen = (size_t)(end - c->buf) + 4;
	snprintf(r->head, sizeof(r->head), "%.*s", (int)hlen, c->buf);
	sscanf(r->head, "HTTP/1.%*d %d", &r->status);
	conn_consume(c, hlen);

	if (head || r->status == 204 || r->status == 304)
		return 0;
	if (resp_header(r, "Transfer-Encoding", val, sizeof(val)) != NULL)
		return conn_read_chunked(c, r);
	if (resp_header(r, "Content-Length", val, sizeof(val)) != NULL) {
		size_t n = strtoul(val, NULL, 10);

		if (conn_need(c, n) < 0)
			return -1;
		resp_add(r, c->buf, n);
		conn_consume(c, n);
		return 0;
	}
	while (conn_fill(c) > 0)
		continue;
	resp_add(r, c->buf, c->len);
	conn_consume(c, c->len);
	return 0;
}

/* Free a response body. */
static void
resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* --- the fixture ------------------------------------------------------- */

static struct {
	struct event_base *base;
	struct http_server *srv;
	struct event *tick;
	int port;
	pthread_t thread;
	bool thread_running;
	atomic_bool client_done;
	atomic_bool stopped; /* the shutdown's done callback ran */
	void (*script)(void);
} fx;

/* What the handlers saw, read by the test thread. */
static struct {
	int ctx_freed;
	bool auth_saw_body;
	bool handler_saw_body;
	bool slow_started;
	bool slow_replied;
	int slow_closes;
	struct timespec slow_reply_at;
	bool done;
	struct timespec done_at;
	struct http_req *hung;
	bool hung_started;
	int hung_closes;
	size_t big_sent;
	int drains;
	bool big_ended;
	bool sse_started;
	int sse_closes;
	int sse_end_ms;
	struct event *sse_timer;
	bool sse_ended;
	int gone_closes;
	int write_after_gone;
	bool gone_ended;
	bool slow_stream_ended;
	struct event *slow_stream_timer;
} st;

/* Client results, written by the client thread. */
static struct resp R[16];
static char RAW[2][65536];
static int CONNECT_ERR;

/* Wakes the loop often so fx_until can look at its condition. */
static void
fx_tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* The client thread: run the script, then say so. */
static void *
fx_thread_main(void *arg)
{
	fx.script();
	atomic_store(&fx.client_done, true);
	return NULL;
}

/* Start the client script in its thread. */
static void
fx_client(void (*script)(void))
{
	atomic_store(&fx.client_done, false);
	fx.script = script;
	assert_int_equal(
	    pthread_create(&fx.thread, NULL, fx_thread_main, NULL), 0);
	fx.thread_running = true;
}

/* Run the loop until cond() holds; false after ms milliseconds. */
static bool
fx_until(bool (*cond)(void), int ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!cond()) {
		event_base_loop(fx.base, EVLOOP_ONCE);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 +
		        (now.tv_nsec - start.tv_nsec) / 1000000 >
		    ms)
			return false;
	}
	return true;
}

/* True once the client script has returned. */
static bool
client_finished(void)
{
	return atomic_load(&fx.client_done);
}

/* Serve until the client script ends, then join it. */
static void
fx_join(void)
{
	assert_true(fx_until(client_finished, 15000));
	pthread_join(fx.thread, NULL);
	fx.thread_running = false;
}

/* Run a client script to its end. */
static void
fx_run(void (*script)(void))
{
	fx_client(script);
	fx_join();
}

static const struct http_route test_routes[];
static const size_t test_nroutes;
static void auth_cb(struct http_req *req, int auth, void *arg);

/* A server with the test routes and settings s. */
static void
fx_start(const struct http_settings *s)
{
	struct timeval tv = { 0, 5000 };
	const char *cause = NULL;

	memset(&st, 0, sizeof(st));
	memset(R, 0, sizeof(R));
	memset(RAW, 0, sizeof(RAW));
	fx.base = event_base_new();
	assert_non_null(fx.base);
	fx.srv = http_server_new(fx.base, s, &cause);
	assert_non_null(fx.srv);
	fx.port = http_server_port(fx.srv);
	assert_true(fx.port > 0);
	http_server_routes(fx.srv, test_routes, test_nroutes);
	http_server_authenticator(fx.srv, auth_cb, NULL);
	fx.tick = event_new(fx.base, -1, EV_PERSIST, fx_tick_cb, NULL);
	event_add(fx.tick, &tv);
}

/* The usual server: 1 KiB bodies, 1 s request timeout. */
static int
setup_default(void **state)
{
	struct http_settings s = {
		.listen = "127.0.0.1:0",
		.max_body_bytes = 1024,
		.max_header_bytes = 8192,
		.request_timeout = 1,
		.shutdown_timeout = 5,
	};

	fx_start(&s);
	http_server_sse_interval(fx.srv, 100);
	return 0;
}

/* A server whose shutdown waits one second at most. */
static int
setup_quick_stop(void **state)
{
	struct http_settings s = {
		.listen = "127.0.0.1:0",
		.max_body_bytes = 1024,
		.max_header_bytes = 8192,
		.request_timeout = 5,
		.shutdown_timeout = 1,
	};

	fx_start(&s);
	return 0;
}

/* Join the client, free the server and the loop. */
static int
teardown(void **state)
{
	size_t i;

	if (fx.thread_running) {
		fx_until(client_finished, 15000);
		pthread_join(fx.thread, NULL);
		fx.thread_running = false;
	}
	http_server_free(fx.srv);
	if (st.sse_timer != NULL)
		event_free(st.sse_timer);
	if (st.slow_stream_timer != NULL)
		event_free(st.slow_stream_timer);
	event_free(fx.tick);
	event_base_free(fx.base);
	for (i = 0; i < sizeof(R) / sizeof(R[0]); i++)
		resp_free(&R[i]);
	memset(&fx, 0, sizeof(fx));
	return 0;
}

/* One request on a fresh connection. */
static void
get(const char *raw, struct resp *r)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, raw);
	if (conn_read_resp(&c, r, strncmp(raw, "HEAD ", 5) == 0) < 0)
		r->status = -1;
	conn_close(&c);
}

/* A request with a body on a fresh connection. */
static void
post(const char *method, const char *path, const char *ctype, const char *body,
    struct resp *r)
{
	char head[8192];

	snprintf(head, sizeof(head),
	    "%s %s HTTP/1.1\r\nHost: t\r\n"
	    "%s%s%sContent-Length: %zu\r\n\r\n%s",
	    method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "",
	    ctype ? "\r\n" : "", strlen(body), body);
	get(head, r);
}

/* The body of a response as JSON; fails the test if it is not. */
static json_t *
body_json(const struct resp *r)
{
	json_error_t err;
	json_t *v = json_loads(r->body, 0, &err);

	if (v == NULL)
		fail_msg("not JSON (%s): %s", err.text, r->body);
	return v;
}

/* A string member of a response body. */
static const char *
body_str(json_t *v, const char *key)
{
	return json_string_value(json_object_get(v, key));
}

/* Check a problem+json reply and return its body. */
static json_t *
assert_problem(const struct resp *r, int status, const char *code)
{
	char val[256], type[128];
	json_t *v;

	assert_int_equal(r->status, status);
	assert_non_null(resp_header(r, "Content-Type", val, sizeof(val)));
	assert_string_equal(val, "application/problem+json");
	assert_non_null(resp_header(r, "Cache-Control", val, sizeof(val)));
	assert_string_equal(val, "no-store");
	v = body_json(r);
	snprintf(type, sizeof(type), "urn:vouch:problem:%s", code);
	assert_string_equal(body_str(v, "type"), type);
	assert_string_equal(body_str(v, "code"), code);
	assert_int_equal(
	    json_integer_value(json_object_get(v, "status")), status);
	assert_non_null(body_str(v, "title"));
	assert_non_null(body_str(v, "detail"));
	return v;
}

/* --- handlers ---------------------------------------------------------- */

/* Reply naming the handler that ran. */
static void
reply_handler(struct http_req *req, const char *name)
{
	http_reply_json(req, 200, json_pack("{s:s}", "handler", name));
}

/* GET /v1/customers. */
static void
h_list(struct http_req *req)
{
	reply_handler(req, "list");
}

/* GET /v1/customers/export, a literal beside {id}. */
static void
h_export(struct http_req *req)
{
	reply_handler(req, "export");
}

/* GET /v1/customers/{id}: echo the parameter. */
static void
h_get(struct http_req *req)
{
	http_reply_json(req, 200,
	    json_pack("{s:s, s:s}", "handler", "get", "id",
	        http_req_param(req, "id")));
}

/* Two parameters, and one the route does not have. */
static void
h_two(struct http_req *req)
{
	http_reply_json(req, 200,
	    json_pack("{s:s, s:s, s:s?}", "uid", http_req_param(req, "uid"),
	        "did", http_req_param(req, "did"), "none",
	        http_req_param(req, "id")));
}

/* Echo query parameters and the path. */
static void
h_query(struct http_req *req)
{
	http_reply_json(req, 200,
	    json_pack("{s:s?, s:s?, s:s?, s:s}", "limit",
	        http_req_query(req, "limit"), "q", http_req_query(req, "q"),
	        "bad", http_req_query(req, "bad"), "path", http_req_path(req)));
}

/* Echo the parsed body with 201. */
static void
h_create(struct http_req *req)
{
	http_reply_json(req, 201, json_incref(http_req_json(req)));
}

/* A problem with a field. */
static void
h_problem(struct http_req *req)
{
	http_reply_problem(req, 409, "conflict", "name", "taken: %s", "acme");
}

/* A 429 with the Retry-After the handler sets. */
static void
h_limited(struct http_req *req)
{
	http_reply_header(req, "Retry-After", "7");
	http_reply_problem(req, 429, "rate_limited", NULL, "slow down");
}

/* Reply with the context the authenticator set. */
static void
h_whoami(struct http_req *req)
{
	if (http_req_json(req) != NULL)
		st.handler_saw_body = true;
	http_reply_json(req, 200,
	    json_pack("{s:s}", "who", (const char *)http_req_ctx(req)));
}

/* Count calls into an int. */
static void
count_cb(void *arg)
{
	(*(int *)arg)++;
}

/* The delayed reply of h_slow. */
static void
slow_reply_cb(evutil_socket_t fd, short what, void *arg)
{
	clock_gettime(CLOCK_MONOTONIC, &st.slow_reply_at);
	st.slow_replied = true;
	http_reply_json(arg, 200, json_pack("{s:b}", "slow", 1));
}

/* Replies 300 ms later, from a timer. */
static void
h_slow(struct http_req *req)
{
	struct timeval tv = { 0, 300000 };

	st.slow_started = true;
	http_req_on_close(req, count_cb, &st.slow_closes);
	event_base_once(fx.base, -1, EV_TIMEOUT, slow_reply_cb, req, &tv);
}

/* Never replies on its own. */
static void
h_hang(struct http_req *req)
{
	st.hung = req;
	st.hung_started = true;
	http_req_on_close(req, count_cb, &st.hung_closes);
}

#define BIG_TOTAL (1024 * 1024)
#define BIG_PIECE (64 * 1024)
#define BIG_HIGH (256 * 1024)

static void big_pump(struct http_req *req);

/* The output drained: count it and go on. */
static void
big_drained_cb(void *arg)
{
	st.drains++;
	big_pump(arg);
}

/* Write the big body in pieces, pausing while too much is queued. */
static void
big_pump(struct http_req *req)
{
	static unsigned char piece[BIG_PIECE];
	size_t i;

	while (st.big_sent < BIG_TOTAL) {
		if (http_stream_pending(req) > BIG_HIGH) {
			http_stream_on_drain(req, big_drained_cb, req);
			return;
		}
		for (i = 0; i < BIG_PIECE; i++)
			piece[i] = (unsigned char)((st.big_sent + i) % 251);
		if (http_stream_write(req, piece, BIG_PIECE) < 0)
			break;
		st.big_sent += BIG_PIECE;
	}
	st.big_ended = true;
	http_stream_end(req);
}

/* A 1 MiB chunked body written at the pace of the client. */
static void
h_big(struct http_req *req)
{
	http_stream_start(req, 200, "application/octet-stream");
	big_pump(req);
}

/* End the event stream with a last event. */
static void
sse_end_cb(evutil_socket_t fd, short what, void *arg)
{
	http_sse_send(arg, "end", "bye");
	http_stream_end(arg);
	st.sse_ended = true;
}

/* The stream was closed under the handler: end it. */
static void
sse_close_cb(void *arg)
{
	st.sse_closes++;
	if (st.sse_timer != NULL)
		event_del(st.sse_timer);
	http_stream_end(arg);
}

/* An event stream: two events now, an end event later if asked. */
static void
h_sse(struct http_req *req)
{
	struct timeval tv = { 0, st.sse_end_ms * 1000 };

	http_sse_start(req);
	http_req_on_close(req, sse_close_cb, req);
	st.sse_started = true;
	http_sse_send(req, "status", "line one\nline two");
	http_sse_send(req, NULL, "solo\r\nx\ry");
	if (st.sse_end_ms > 0) {
		st.sse_timer = evtimer_new(fx.base, sse_end_cb, req);
		evtimer_add(st.sse_timer, &tv);
	}
}

/* After the client left: a write fails, the end frees. */
static void
gone_later_cb(evutil_socket_t fd, short what, void *arg)
{
	st.write_after_gone = http_stream_write(arg, "x", 1);
	http_stream_end(arg);
	st.gone_ended = true;
}

/* The client of h_stream_gone left; finish a little later. */
static void
gone_close_cb(void *arg)
{
	struct timeval tv = { 0, 50000 };

	st.gone_closes++;
	event_base_once(fx.base, -1, EV_TIMEOUT, gone_later_cb, arg, &tv);
}

/* A stream whose client leaves; it ends later. */
static void
h_stream_gone(struct http_req *req)
{
	http_stream_start(req, 200, "text/plain");
	http_stream_write(req, "hello\n", 6);
	http_req_on_close(req, gone_close_cb, req);
}

/* The second half of h_slow_stream. */
static void
slow_stream_cb(evutil_socket_t fd, short what, void *arg)
{
	http_stream_write(arg, "second\n", 7);
	http_stream_end(arg);
	st.slow_stream_ended = true;
}

/* A stream silent for longer than the request timeout. */
static void
h_slow_stream(struct http_req *req)
{
	struct timeval tv = { 1, 500000 };

	http_stream_start(req, 200, "text/plain");
	http_stream_write(req, "first\n", 6);
	st.slow_stream_timer = evtimer_new(fx.base, slow_stream_cb, req);
	evtimer_add(st.slow_stream_timer, &tv);
}

/* Free a context and count it. */
static void
ctx_free_cb(void *p)
{
	st.ctx_freed++;
	free(p);
}

/* The deferred yes of the authenticator. */
static void
auth_later_cb(evutil_socket_t fd, short what, void *arg)
{
	http_req_set_ctx(arg, strdup("alice"), ctx_free_cb);
	http_req_continue(arg);
}

/* 1 rejects, 2 accepts 50 ms later, anything else accepts at once. */
static void
auth_cb(struct http_req *req, int auth, void *arg)
{
	struct timeval tv = { 0, 50000 };

	if (http_req_json(req) != NULL)
		st.auth_saw_body = true;
	if (auth == 1) {
		http_reply_problem(
		    req, 401, "unauthorized", NULL, "no credential");
	} else if (auth == 2) {
		event_base_once(
		    fx.base, -1, EV_TIMEOUT, auth_later_cb, req, &tv);
	} else {
		http_req_set_ctx(req, strdup("bob"), ctx_free_cb);
		http_req_continue(req);
	}
}

static const struct http_route test_routes[] = {
	{ "GET", "/v1/customers", h_list, 0, false },
	{ "POST", "/v1/customers", h_create, 0, false },
	{ "GET", "/v1/customers/{id}", h_get, 0, false },
	{ "GET", "/v1/customers/export", h_export, 0, false },
	{ "GET", "/v1/users/{uid}/devices/{did}", h_two, 0, false },
	{ "GET", "/v1/q", h_query, 0, false },
	{ "POST", "/v1/optional", h_create, 0, true },
	{ "GET", "/v1/problem", h_problem, 0, false },
	{ "GET", "/v1/limited", h_limited, 0, false },
	{ "GET", "/v1/secret", h_whoami, 1, false },
	{ "POST", "/v1/secret", h_whoami, 1, false },
	{ "GET", "/v1/deferred", h_whoami, 2, false },
	{ "POST", "/v1/deferred", h_whoami, 2, false },
	{ "GET", "/v1/now", h_whoami, 3, false },
	{ "GET", "/v1/slow", h_slow, 0, false },
	{ "GET", "/v1/hang", h_hang, 0, false },
	{ "GET", "/v1/big", h_big, 0, false },
	{ "GET", "/v1/events", h_sse, 0, false },
	{ "GET", "/v1/stream-gone", h_stream_gone, 0, false },
	{ "GET", "/v1/slow-stream", h_slow_stream, 0, false },
	{ "GET", "/bad/{x", h_list, 0, false },
	{ "GET", "/v1/customers/{other}", h_list, 0, false },
};
static const size_t test_nroutes = sizeof(test_routes) / sizeof(test_routes[0]);

/* --- the router on its own --------------------------------------------- */

static int route_data[8];

/* A router with a few routes, added with the parameter route first. */
static struct http_router *
router_sample(void)
{
	struct http_router *r = http_router_new();
	const char *cause = NULL;

	assert_int_equal(http_router_add(r, "GET", "/v1/events/{id}",
	                     &route_data[0], &cause),
	    0);
	assert_int_equal(http_router_add(r, "GET", "/v1/events/export/",
	                     &route_data[1], &cause),
	    0);
	assert_int_equal(http_router_add(r, "DELETE", "/v1/events/{id}",
	                     &route_data[2], &cause),
	    0);
	assert_int_equal(
	    http_router_add(r, "GET", "/", &route_data[3], &cause), 0);
	assert_int_equal(
	    http_router_add(r, "GET", "/a/{x}/c", &route_data[4], &cause), 0);
	assert_int_equal(
	    http_router_add(r, "GET", "/a/b/{y}", &route_data[5], &cause), 0);
	assert_int_equal(
	    http_router_add(r, "HEAD", "/h", &route_data[6], &cause), 0);
	assert_int_equal(
	    http_router_add(r, "GET", "/h", &route_data[7], &cause), 0);
	return r;
}

/* Matches, parameters, precedence, trailing slash, HEAD. */
static void
test_router_match(void **state)
{
	struct http_router *r = router_sample();
	struct http_router_match m;

	assert_int_equal(http_router_match(r, "GET", "/v1/events/42", &m),
	    HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[0]);
	assert_string_equal(m.pattern, "/v1/events/{id}");
	assert_string_equal(http_router_param(&m, "id"), "42");
	assert_null(http_router_param(&m, "nope"));
	http_router_match_clear(&m);

	/* The literal wins even though it was added second. */
	assert_int_equal(http_router_match(r, "GET", "/v1/events/export", &m),
	    HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[1]);
	assert_string_equal(m.pattern, "/v1/events/export");
	assert_int_equal(m.nparams, 0);
	http_router_match_clear(&m);

	/* Another method on the literal path falls to the parameter. */
	assert_int_equal(
	    http_router_match(r, "DELETE", "/v1/events/export", &m),
	    HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[2]);
	assert_string_equal(http_router_param(&m, "id"), "export");
	http_router_match_clear(&m);

	/* Trailing slash, root, leftmost literal wins. */
	assert_int_equal(http_router_match(r, "GET", "/v1/events/7/", &m),
	    HTTP_ROUTER_FOUND);
	assert_string_equal(http_router_param(&m, "id"), "7");
	http_router_match_clear(&m);
	assert_int_equal(
	    http_router_match(r, "GET", "/", &m), HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[3]);
	http_router_match_clear(&m);
	assert_int_equal(
	    http_router_match(r, "GET", "", &m), HTTP_ROUTER_FOUND);
	http_router_match_clear(&m);
	assert_int_equal(
	    http_router_match(r, "GET", "/a/b/c", &m), HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[5]);
	assert_string_equal(http_router_param(&m, "y"), "c");
	http_router_match_clear(&m);

	/* HEAD prefers its own route, and otherwise uses GET. */
	assert_int_equal(
	    http_router_match(r, "HEAD", "/h", &m), HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[6]);
	http_router_match_clear(&m);
	assert_int_equal(http_router_match(r, "HEAD", "/v1/events/1", &m),
	    HTTP_ROUTER_FOUND);
	assert_ptr_equal(m.data, &route_data[0]);
	http_router_match_clear(&m);

	http_router_free(r);
}

/* Paths that match nothing, and the 405 Allow list. */
static void
test_router_misses(void **state)
{
	struct http_router *r = router_sample();
	struct http_router_match m;
	static const char *const missing[] = {
		"/v1/events",
		"/v1/events/1/2",
		"/v1//events/1",
		"/v1/events//",
		"//",
		"/v1/events/%zz",
		"/v1/events/%2",
		"/v1/events/%00",
		"/v1/events/%ff",
		"/v1/events/a%0Ab",
		"/V1/EVENTS/1",
		"v1/events/1",
		"*",
	};
	size_t i;

	for (i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		if (http_router_match(r, "GET", missing[i], &m) !=
		    HTTP_ROUTER_NOT_FOUND)
			fail_msg("%s matched", missing[i]);
		http_router_match_clear(&m);
	}

	assert_int_equal(http_router_match(r, "POST", "/v1/events/1", &m),
	    HTTP_ROUTER_BAD_METHOD);
	assert_string_equal(m.allow, "GET, HEAD, DELETE");
	http_router_match_clear(&m);
	assert_int_equal(http_router_match(r, "PUT", "/v1/events/export", &m),
	    HTTP_ROUTER_BAD_METHOD);
	assert_string_equal(m.pattern, "/v1/events/export");
	assert_string_equal(m.allow, "GET, HEAD, DELETE");
	http_router_match_clear(&m);

	http_router_free(r);
}

/* Malformed and duplicate patterns are refused. */
static void
test_router_bad_patterns(void **state)
{
	struct http_router *r = router_sample();
	const char *cause = NULL;
	static const char *const bad[] = {
		"v1/x",
		"/v1//x",
		"/v1/{",
		"/v1/{}",
		"/v1/{a-b}",
		"/v1/x{y}",
		"/v1/{a}/{a}",
		"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cause = NULL;
		if (http_router_add(r, "GET", bad[i], NULL, &cause) == 0)
			fail_msg("%s accepted", bad[i]);
		assert_non_null(cause);
	}
	assert_int_equal(
	    http_router_add(r, "GET", "/v1/events/{other}", NULL, &cause), -1);
	assert_string_equal(cause, "duplicate route");
	http_router_free(r);
}

/* The strict decoder and the query parser. */
static void
test_router_decode(void **state)
{
	char out[64];
	struct http_router_pair *pairs;
	size_t n;

	assert_int_equal(http_router_decode("a%20b%2Fc", 9, false, out), 5);
	assert_string_equal(out, "a b/c");
	assert_int_equal(http_router_decode("a+b", 3, false, out), 3);
	assert_string_equal(out, "a+b");
	assert_int_equal(http_router_decode("a+b", 3, true, out), 3);
	assert_string_equal(out, "a b");
	assert_int_equal(http_router_decode("%C3%A9", 6, false, out), 2);
	assert_string_equal(out, "\xc3\xa9");
	assert_int_equal(http_router_decode("%c3", 3, false, out), -1);
	assert_int_equal(http_router_decode("%ED%A0%80", 9, false, out), -1);
	assert_int_equal(http_router_decode("%C0%80", 6, false, out), -1);
	assert_int_equal(http_router_decode("%", 1, false, out), -1);
	assert_int_equal(http_router_decode("%4", 2, false, out), -1);
	assert_int_equal(http_router_decode("%7f", 3, false, out), -1);
	assert_int_equal(http_router_decode("", 0, false, out), 0);

	assert_int_equal(
	    http_router_query_parse(
	        "limit=5&q=a+b%21&bad=%zz&flag&=x&&limit=6", &pairs, &n),
	    0);
	assert_int_equal(n, 4);
	assert_string_equal(pairs[0].name, "limit");
	assert_string_equal(pairs[0].value, "5");
	assert_string_equal(pairs[1].value, "a b!");
	assert_string_equal(pairs[2].name, "flag");
	assert_string_equal(pairs[2].value, "");
	assert_string_equal(pairs[3].value, "6");
	http_router_query_free(pairs, n);
	assert_int_equal(http_router_query_parse(NULL, &pairs, &n), 0);
	assert_int_equal(n, 0);
	assert_null(pairs);
}

/* --- routing through the server ---------------------------------------- */

/* Requests for test_routing. */
static void
script_routing(void)
{
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[0]);
	get("GET /v1/customers/ HTTP/1.1\r\nHost: t\r\n\r\n", &R[1]);
	get("GET /v1/customers/abc HTTP/1.1\r\nHost: t\r\n\r\n", &R[2]);
	get("GET /v1/customers/export HTTP/1.1\r\nHost: t\r\n\r\n", &R[3]);
	get("GET /v1/customers/a%20b%2Fc/ HTTP/1.1\r\nHost: t\r\n\r\n", &R[4]);
	get("GET /v1/customers/%zz HTTP/1.1\r\nHost: t\r\n\r\n", &R[5]);
	get("GET /v1/customers/%ff HTTP/1.1\r\nHost: t\r\n\r\n", &R[6]);
	get("GET /v1/users/u1/devices/d%C3%A9 HTTP/1.1\r\nHost: t\r\n\r\n",
	    &R[7]);
	get("GET /v1/q?limit=5&q=a+b%21&bad=%zz HTTP/1.1\r\nHost: t\r\n\r\n",
	    &R[8]);
	get("HEAD /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[9]);
	get("GET /bad/x HTTP/1.1\r\nHost: t\r\n\r\n", &R[10]);
	get("GET http://t/v1/customers/abs HTTP/1.1\r\nHost: t\r\n\r\n",
	    &R[11]);
}

/* Check a 200 JSON reply has key set to want (NULL: null). */
static void
expect_field(const struct resp *r, const char *key, const char *want)
{
	json_t *v;

	assert_int_equal(r->status, 200);
	v = body_json(r);
	if (want == NULL)
		assert_true(json_is_null(json_object_get(v, key)));
	else
		assert_string_equal(body_str(v, key), want);
	json_decref(v);
}

/* Routing and parameters through a real server. */
static void
test_routing(void **state)
{
	char val[64];

	fx_run(script_routing);
	expect_field(&R[0], "handler", "list");
	expect_field(&R[1], "handler", "list");
	expect_field(&R[2], "id", "abc");
	expect_field(&R[3], "handler", "export");
	expect_field(&R[4], "id", "a b/c");
	json_decref(assert_problem(&R[5], 404, "not_found"));
	json_decref(assert_problem(&R[6], 404, "not_found"));
	expect_field(&R[7], "uid", "u1");
	expect_field(&R[7], "did", "d\xc3\xa9");
	expect_field(&R[7], "none", NULL);
	expect_field(&R[8], "limit", "5");
	expect_field(&R[8], "q", "a b!");
	expect_field(&R[8], "bad", NULL);
	expect_field(&R[8], "path", "/v1/q");
	assert_int_equal(R[9].status, 200);
	assert_int_equal(R[9].len, 0);
	assert_non_null(resp_header(&R[9], "Content-Length", val, sizeof(val)));
	json_decref(assert_problem(&R[10], 404, "not_found"));
	expect_field(&R[11], "id", "abs");
}

/* Requests for test_not_found_and_bad_method. */
static void
script_errors(void)
{
	get("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &R[0]);
	get("DELETE /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[1]);
	post("PATCH", "/v1/customers/x", "application/json", "{}", &R[2]);
	get("OPTIONS /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[3]);
	get("TRACE /v1/nope HTTP/1.1\r\nHost: t\r\n\r\n", &R[4]);
}

/* 404 and 405 (with Allow) as problems. */
static void
test_not_found_and_bad_method(void **state)
{
	char val[128];

	fx_run(script_errors);
	json_decref(assert_problem(&R[0], 404, "not_found"));
	json_decref(assert_problem(&R[1], 405, "method_not_allowed"));
	assert_non_null(resp_header(&R[1], "Allow", val, sizeof(val)));
	assert_string_equal(val, "GET, HEAD, POST");
	json_decref(assert_problem(&R[2], 405, "method_not_allowed"));
	assert_non_null(resp_header(&R[2], "Allow", val, sizeof(val)));
	assert_string_equal(val, "GET, HEAD");
	json_decref(assert_problem(&R[3], 405, "method_not_allowed"));
	json_decref(assert_problem(&R[4], 404, "not_found"));
}

/* --- bodies ------------------------------------------------------------ */

/* Requests for test_content_type. */
static void
script_media_types(void)
{
	post("POST", "/v1/customers", "text/plain", "{\"a\":1}", &R[0]);
	post("POST", "/v1/customers", NULL, "{\"a\":1}", &R[1]);
	post("POST", "/v1/customers", "application/jsonx", "{\"a\":1}", &R[2]);
	post("POST", "/v1/customers", "Application/JSON; charset=utf-8",
	    "{\"a\":1}", &R[3]);
	post("POST", "/v1/customers", "application/json;charset=UTF-8",
	    "{\"a\":1}", &R[4]);
	post("POST", "/v1/customers", "application/problem+json", "{}", &R[5]);
}

/* Only application/json bodies get through. */
static void
test_content_type(void **state)
{
	json_t *v;

	fx_run(script_media_types);
	json_decref(assert_problem(&R[0], 415, "unsupported_media_type"));
	json_decref(assert_problem(&R[1], 415, "unsupported_media_type"));
	json_decref(assert_problem(&R[2], 415, "unsupported_media_type"));
	json_decref(assert_problem(&R[5], 415, "unsupported_media_type"));
	assert_int_equal(R[3].status, 201);
	v = body_json(&R[3]);
	assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
	json_decref(v);
	assert_int_equal(R[4].status, 201);
}

/* Requests for test_body_limits. */
static void
script_limits(void)
{
	static char big[4096], chunked[8192], huge[64];
	struct conn c;
	size_t n;

	/* Content-Length over the limit, then the connection still works. */
	memset(big, 'p', sizeof(big));
	memcpy(big, "{\"pad\":\"", 8);
	memcpy(big + 2000 - 2, "\"}", 2);
	big[2000] = '\0';
	conn_open(&c, fx.port);
	conn_sends(&c,
	    "POST /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n");
	conn_sends(&c, big);
	conn_read_resp(&c, &R[0], false);
	conn_sends(&c,
	    "POST /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
	    "{\"a\":1}");
	conn_read_resp(&c, &R[1], false);
	conn_close(&c);

	/* The same body in chunks: no Content-Length to look at. */
	n = (size_t)snprintf(chunked, sizeof(chunked),
	    "POST /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "Content-Type: application/json\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"
	    "3e8\r\n%.1000s\r\n3e8\r\n%.1000s\r\n0\r\n\r\n",
	    big, big + 1000);
	conn_open(&c, fx.port);
	conn_send(&c, chunked, n);
	conn_read_resp(&c, &R[2], false);
	conn_close(&c);

	/* Exactly at the limit is fine. */
	memset(big, ' ', 1024);
	memcpy(big, "{}", 2);
	big[1024] = '\0';
	post("POST", "/v1/customers", "application/json", big, &R[3]);

	/* A Content-Length that is announced but never sent in full. */
	snprintf(huge, sizeof(huge), "%d", 1 << 30);
	conn_open(&c, fx.port);
	conn_sends(&c,
	    "POST /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "Content-Type: application/json\r\nContent-Length: ");
	conn_sends(&c, huge);
	conn_sends(&c, "\r\n\r\n{");
	conn_read_resp(&c, &R[4], false);
	conn_close(&c);

	/* A body on a GET is held to the limit too. */
	conn_open(&c, fx.port);
	conn_sends(&c,
	    "GET /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "Content-Length: 2000\r\n\r\n");
	conn_sends(&c, big);
	memset(big, 'x', 2000);
	conn_send(&c, big, 2000 - 1024);
	conn_read_resp(&c, &R[5], false);
	conn_close(&c);
}

/* Bodies over the limit get 413 as problem+json. */
static void
test_body_limits(void **state)
{
	json_t *v;

	fx_run(script_limits);
	v = assert_problem(&R[0], 413, "too_large");
	assert_non_null(strstr(body_str(v, "detail"), "1024"));
	json_decref(v);
	assert_int_equal(R[1].status, 201);
	json_decref(assert_problem(&R[2], 413, "too_large"));
	assert_int_equal(R[3].status, 201);
	/* Past evhttp's own cap, evhttp answers (see http_hard_cap). */
	assert_int_equal(R[4].status, 413);
	json_decref(assert_problem(&R[5], 413, "too_large"));
}

/* Requests for test_json_bodies. */
static void
script_json(void)
{
	post("POST", "/v1/customers", "application/json", "{", &R[0]);
	post("POST", "/v1/customers", "application/json",
	    "{\"a\": 1, \"a\": 2}", &R[1]);
	post("POST", "/v1/customers", "application/json",
	    "{\"a\": \"\xff\xfe\"}", &R[2]);
	post("POST", "/v1/customers", "application/json", "{} x", &R[3]);
	post("POST", "/v1/customers", "application/json", "", &R[4]);
	post("POST", "/v1/customers", "application/json", "[1]", &R[5]);
	post("POST", "/v1/customers", "application/json", "3", &R[6]);
	post("POST", "/v1/customers", "application/json", "\"s\"", &R[7]);
	post("POST", "/v1/optional", "application/json", "", &R[8]);
	post("POST", "/v1/optional", NULL, "", &R[9]);
	post(
	    "POST", "/v1/optional", "application/json", "{\"k\":true}", &R[10]);
	post("POST", "/v1/customers", "application/json",
	    "{\"a\": \"\\ud800\"}", &R[11]);
	post("POST", "/v1/customers", "application/json", "null", &R[12]);
	post("POST", "/v1/customers", "application/json", "{\"a\":\n  tru}",
	    &R[13]);
}

/* Invalid JSON is 400, JSON that is not an object 422. */
static void
test_json_bodies(void **state)
{
	json_t *v;

	fx_run(script_json);
	v = assert_problem(&R[0], 400, "invalid_json");
	assert_non_null(strstr(body_str(v, "detail"), "line 1"));
	json_decref(v);
	json_decref(assert_problem(&R[1], 400, "invalid_json"));
	json_decref(assert_problem(&R[2], 400, "invalid_json"));
	json_decref(assert_problem(&R[3], 400, "invalid_json"));
	json_decref(assert_problem(&R[4], 400, "invalid_json"));
	json_decref(assert_problem(&R[5], 422, "validation_failed"));
	json_decref(assert_problem(&R[6], 422, "validation_failed"));
	json_decref(assert_problem(&R[7], 422, "validation_failed"));
	assert_int_equal(R[8].status, 201);
	assert_string_equal(R[8].body, "{}");
	assert_int_equal(R[9].status, 201);
	assert_int_equal(R[10].status, 201);
	assert_string_equal(R[10].body, "{\"k\":true}");
	json_decref(assert_problem(&R[11], 400, "invalid_json"));
	json_decref(assert_problem(&R[12], 422, "validation_failed"));
	v = assert_problem(&R[13], 400, "invalid_json");
	assert_non_null(strstr(body_str(v, "detail"), "line 2"));
	json_decref(v);
}

/* --- reply shape and request ids --------------------------------------- */

/* Requests for test_reply_shape_and_ids. */
static void
script_shape(void)
{
	get("GET /v1/problem HTTP/1.1\r\nHost: t\r\n\r\n", &R[0]);
	get("GET /v1/limited HTTP/1.1\r\nHost: t\r\n\r\n", &R[1]);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "X-Request-Id: abc-DEF_1.2\r\n\r\n",
	    &R[2]);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n"
	    "X-Request-Id: bad id!\r\n\r\n",
	    &R[3]);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\nX-Request-Id: "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "\r\n\r\n",
	    &R[4]);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[5]);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[6]);
}

/* True for 16 lowercase hex characters. */
static bool
is_hex16(const char *s)
{
	return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
}

/* The problem shape, common headers and request ids. */
static void
test_reply_shape_and_ids(void **state)
{
	char val[128], a[128], b[128];
	json_t *v;

	fx_run(script_shape);
	v = assert_problem(&R[0], 409, "conflict");
	assert_string_equal(body_str(v, "title"), "Conflict");
	assert_string_equal(body_str(v, "detail"), "taken: acme");
	assert_string_equal(body_str(v, "field"), "name");
	assert_int_equal(json_object_size(v), 6);
	json_decref(v);
	assert_non_null(strstr(R[0].head, "HTTP/1.1 409 Conflict\r\n"));
	assert_non_null(
	    resp_header(&R[0], "X-Content-Type-Options", val, sizeof(val)));
	assert_string_equal(val, "nosniff");

	v = assert_problem(&R[1], 429, "rate_limited");
	assert_string_equal(body_str(v, "title"), "Too Many Requests");
	assert_null(json_object_get(v, "field"));
	json_decref(v);
	assert_non_null(resp_header(&R[1], "Retry-After", val, sizeof(val)));
	assert_string_equal(val, "7");

	assert_non_null(resp_header(&R[2], "X-Request-Id", val, sizeof(val)));
	assert_string_equal(val, "abc-DEF_1.2");
	assert_non_null(resp_header(&R[2], "Content-Type", val, sizeof(val)));
	assert_string_equal(val, "application/json");
	assert_non_null(resp_header(&R[2], "Cache-Control", val, sizeof(val)));
	assert_string_equal(val, "no-store");
	assert_string_equal(R[2].body, "{\"handler\":\"list\"}");
	assert_non_null(resp_header(&R[3], "X-Request-Id", val, sizeof(val)));
	assert_true(is_hex16(val));
	assert_non_null(resp_header(&R[4], "X-Request-Id", val, sizeof(val)));
	assert_true(is_hex16(val));
	assert_non_null(resp_header(&R[5], "X-Request-Id", a, sizeof(a)));
	assert_non_null(resp_header(&R[6], "X-Request-Id", b, sizeof(b)));
	assert_true(is_hex16(a));
	assert_true(is_hex16(b));
	assert_string_not_equal(a, b);
}

/* --- authentication ---------------------------------------------------- */

/* Requests for test_authenticator. */
static void
script_auth(void)
{
	get("GET /v1/secret HTTP/1.1\r\nHost: t\r\n\r\n", &R[0]);
	get("GET /v1/deferred HTTP/1.1\r\nHost: t\r\n\r\n", &R[1]);
	get("GET /v1/now HTTP/1.1\r\nHost: t\r\n\r\n", &R[2]);
	post("POST", "/v1/deferred", "application/json", "{}", &R[3]);
	post("POST", "/v1/secret", "application/json", "{not json", &R[4]);
}

/* An authenticator that rejects, defers and accepts; bodies come after. */
static void
test_authenticator(void **state)
{
	fx_run(script_auth);
	json_decref(assert_problem(&R[0], 401, "unauthorized"));
	expect_field(&R[1], "who", "alice");
	expect_field(&R[2], "who", "bob");
	expect_field(&R[3], "who", "alice");
	json_decref(assert_problem(&R[4], 401, "unauthorized"));
	assert_false(st.auth_saw_body);
	assert_true(st.handler_saw_body);
	assert_int_equal(st.ctx_freed, 3);
}

/* --- lifetime: clients that leave -------------------------------------- */

/* Send a request and leave before the reply. */
static void
script_leave_early(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/slow HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_close(&c);
	usleep(500000);
	get("GET /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[0]);
}

/* True once h_slow replied. */
static bool
slow_replied(void)
{
	return st.slow_replied;
}

/* A handler that replies after its client left neither crashes nor
   leaks, and the server keeps serving. */
static void
test_reply_after_client_left(void **state)
{
	fx_run(script_leave_early);
	assert_true(st.slow_started);
	assert_true(fx_until(slow_replied, 2000));
	expect_field(&R[0], "handler", "list");
}

/* Read the start of a stream, then leave. */
static void
script_stream_gone(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/stream-gone HTTP/1.1\r\nHost: t\r\n\r\n");
	if (conn_wait_for(&c, "hello\n") == 0)
		snprintf(RAW[0], sizeof(RAW[0]), "%s", c.raw);
	conn_close(&c);
}

/* True once h_stream_gone ended its stream. */
static bool
gone_ended(void)
{
	return st.gone_ended;
}

/* A stream's client leaves: the close callback runs, writes fail, and
   ending the stream afterwards frees the detached request. */
static void
test_stream_client_left(void **state)
{
	fx_run(script_stream_gone);
	assert_non_null(strstr(RAW[0], "hello\n"));
	assert_true(fx_until(gone_ended, 3000));
	assert_int_equal(st.gone_closes, 1);
	assert_int_equal(st.write_after_gone, -1);
}

/* --- streams and events ------------------------------------------------ */

/* Read the big body after a pause. */
static void
script_big(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/big HTTP/1.1\r\nHost: t\r\n\r\n");
	usleep(200000);
	conn_read_resp(&c, &R[0], false);
	conn_close(&c);
}

/* A paced producer gets drain callbacks; the body arrives whole. */
static void
test_stream_drain(void **state)
{
	char val[64];
	size_t i;

	fx_run(script_big);
	assert_int_equal(R[0].status, 200);
	assert_non_null(
	    resp_header(&R[0], "Transfer-Encoding", val, sizeof(val)));
	assert_string_equal(val, "chunked");
	assert_int_equal(R[0].len, BIG_TOTAL);
	for (i = 0; i < BIG_TOTAL; i++) {
		if ((unsigned char)R[0].body[i] != i % 251)
			fail_msg("byte %zu is wrong", i);
	}
	assert_true(st.big_ended);
	assert_true(st.drains >= 3);
}

/* Read an event stream to its end. */
static void
script_sse(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_wait_for(&c, "0\r\n\r\n");
	snprintf(RAW[0], sizeof(RAW[0]), "%s", c.raw ? c.raw : "");
	conn_close(&c);
}

/* Event framing, headers and keep-alive comments. */
static void
test_sse(void **state)
{
	const char *p;
	int n = 0;

	st.sse_end_ms = 450;
	fx_run(script_sse);
	assert_non_null(strstr(RAW[0], "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(RAW[0], "Content-Type: text/event-stream\r\n"));
	assert_non_null(strstr(RAW[0], "Cache-Control: no-store\r\n"));
	assert_non_null(strstr(RAW[0], "Transfer-Encoding: chunked\r\n"));
	assert_non_null(strstr(RAW[0],
	    "\r\nevent: status\ndata: line one\ndata: line two\n\n\r\n"));
	assert_non_null(
	    strstr(RAW[0], "\r\ndata: solo\ndata: x\ndata: y\n\n\r\n"));
	for (p = RAW[0]; (p = strstr(p, "\r\n: keep-alive\n\n\r\n")) != NULL;
	     p++)
		n++;
	assert_true(n >= 2);
	p = strstr(RAW[0], "event: end\ndata: bye\n\n\r\n0\r\n\r\n");
	assert_non_null(p);
	assert_true(st.sse_ended);
	assert_int_equal(st.sse_closes, 0);
}

/* Read the slow stream. */
static void
script_slow_stream(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/slow-stream HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&c, &R[0], false);
	conn_close(&c);
}

/* A stream may be silent for longer than the request timeout (1 s). */
static void
test_stream_outlives_request_timeout(void **state)
{
	fx_run(script_slow_stream);
	assert_int_equal(R[0].status, 200);
	assert_string_equal(R[0].body, "first\nsecond\n");
	assert_true(st.slow_stream_ended);
}

/* --- shutdown ---------------------------------------------------------- */

/* The shutdown is over. */
static void
done_cb(void *arg)
{
	clock_gettime(CLOCK_MONOTONIC, &st.done_at);
	st.done = true;
	atomic_store(&fx.stopped, true);
}

/* True once the shutdown reported. */
static bool
is_done(void)
{
	return st.done;
}

/* True once the slow request and the event stream run. */
static bool
both_started(void)
{
	return st.slow_started && st.sse_started;
}

/* A slow request and an event stream across a shutdown. */
static void
script_shutdown(void)
{
	struct conn a, b, c;

	conn_open(&a, fx.port);
	conn_sends(&a, "GET /v1/slow HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_open(&b, fx.port);
	conn_sends(&b, "GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&a, &R[0], false);
	conn_wait_for(&b, "0\r\n\r\n");
	snprintf(RAW[0], sizeof(RAW[0]), "%s", b.raw ? b.raw : "");
	conn_close(&a);
	conn_close(&b);

	/* Ask until the listener is gone (the loop may lag a little). */
	while (!atomic_load(&fx.stopped))
		usleep(10000);
	conn_open(&c, fx.port);
	CONNECT_ERR = c.fd < 0 ? 0 : -1;
	conn_close(&c);
}

/* Shutdown ends event streams at once and waits for the slow request. */
static void
test_shutdown_waits(void **state)
{
	fx_client(script_shutdown);
	assert_true(fx_until(both_started, 3000));
	http_server_shutdown(fx.srv, done_cb, NULL);
	assert_false(st.done);
	assert_int_equal(st.sse_closes, 1);

	assert_true(fx_until(is_done, 3000));
	assert_true(st.slow_replied);
	assert_true(st.done_at.tv_sec > st.slow_reply_at.tv_sec ||
	    (st.done_at.tv_sec == st.slow_reply_at.tv_sec &&
	        st.done_at.tv_nsec >= st.slow_reply_at.tv_nsec));
	fx_join();

	assert_int_equal(R[0].status, 200);
	assert_non_null(strstr(R[0].body, "\"slow\":true"));
	assert_non_null(strstr(RAW[0], "event: status\n"));
	assert_non_null(strstr(RAW[0], "\r\n0\r\n\r\n"));
	assert_int_equal(CONNECT_ERR, 0);
	assert_int_equal(st.slow_closes, 0);
}

/* A request nobody answers. */
static void
script_hang(void)
{
	struct conn c;

	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/hang HTTP/1.1\r\nHost: t\r\n\r\n");
	R[0].status = conn_read_resp(&c, &R[0], false);
	conn_close(&c);
}

/* True once h_hang holds its request. */
static bool
hung_started(void)
{
	return st.hung_started;
}

/* A request that never ends: shutdown gives up after its timeout, and
   freeing the server leaves the handler a request it can still end. */
static void
test_shutdown_timeout_and_orphan(void **state)
{
	struct timespec t0, t1;
	double secs;

	fx_client(script_hang);
	assert_true(fx_until(hung_started, 3000));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	http_server_shutdown(fx.srv, done_cb, NULL);
	assert_true(fx_until(is_done, 3000));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs >= 0.9 && secs < 2.5);
	assert_int_equal(st.hung_closes, 0);

	http_server_free(fx.srv);
	fx.srv = NULL;
	assert_int_equal(st.hung_closes, 1);
	assert_string_equal(http_req_path(st.hung), "/v1/hang");
	assert_null(http_req_header(st.hung, "Host"));
	http_reply_json(st.hung, 200, json_object());
	st.hung = NULL;

	fx_join();
	assert_int_equal(R[0].status, -1);
}

/* --- the access log and metrics ---------------------------------------- */

/* Requests for test_access_log_and_metrics. */
static void
script_logged(void)
{
	get("GET /v1/customers/abc?secret=1 HTTP/1.1\r\nHost: t\r\n"
	    "X-Request-Id: logged-1\r\n\r\n",
	    &R[0]);
	get("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &R[1]);
	get("DELETE /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n", &R[2]);
	get("GET /v1/customers/xyz HTTP/1.1\r\nHost: t\r\n\r\n", &R[3]);
}

/* Read a whole file. */
static char *
slurp(int fd)
{
	static char text[65536];
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	n = read(fd, text, sizeof(text) - 1);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

/* One log line per request, and counts by route pattern. */
static void
test_access_log_and_metrics(void **state)
{
	char path[] = "/tmp/test_http_log_XXXXXX";
	int fd = mkstemp(path), saved;
	struct evbuffer *out = evbuffer_new();
	const char *log, *line;
	char *text;

	assert_true(fd >= 0);
	unlink(path);
	saved = dup(2);
	dup2(fd, 2);
	fx_run(script_logged);
	dup2(saved, 2);
	close(saved);
	log = slurp(fd);
	close(fd);

	line = strstr(log, "req logged-1: GET /v1/customers/abc 200 ");
	assert_non_null(line);
	assert_non_null(strstr(line, "ms 127.0.0.1\n"));
	assert_null(strstr(log, "secret"));
	assert_non_null(strstr(log, ": GET /nope 404 "));

	http_server_metrics(fx.srv, out);
	evbuffer_add(out, "", 1);
	text = (char *)evbuffer_pullup(out, -1);
	assert_non_null(
	    strstr(text, "# TYPE vouch_http_requests_total counter\n"));
	assert_non_null(strstr(text,
	    "vouch_http_requests_total{route="
	    "\"/v1/customers/{id}\",method=\"GET\",status=\"200\"} 2\n"));
	assert_non_null(strstr(text,
	    "vouch_http_requests_total{route="
	    "\"unmatched\",method=\"GET\",status=\"404\"} 1\n"));
	assert_non_null(strstr(text,
	    "vouch_http_requests_total{route="
	    "\"/v1/customers\",method=\"DELETE\",status=\"405\"} 1\n"));
	assert_null(strstr(text, "/nope"));
	assert_null(strstr(text, "abc"));
	assert_non_null(strstr(
	    text, "# TYPE vouch_http_request_duration_seconds histogram\n"));
	assert_non_null(strstr(text,
	    "vouch_http_request_duration_seconds_"
	    "bucket{route=\"/v1/customers/{id}\",method=\"GET\","
	    "le=\"0.005\"} "));
	assert_non_null(strstr(text,
	    "vouch_http_request_duration_seconds_"
	    "bucket{route=\"/v1/customers/{id}\",method=\"GET\","
	    "le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text,
	    "vouch_http_request_duration_seconds_"
	    "count{route=\"/v1/customers/{id}\",method=\"GET\"} 2\n"));
	evbuffer_free(out);
}

/* --- limits that evhttp enforces --------------------------------------- */

/* Oversized headers, then keep-alive and HEAD. */
static void
script_header_limit(void)
{
	static char filler[20000];
	struct conn c;

	memset(filler, 'f', sizeof(filler) - 1);
	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/customers HTTP/1.1\r\nHost: t\r\nX-Filler: ");
	conn_sends(&c, filler);
	conn_sends(&c, "\r\n\r\n");
	if (conn_read_resp(&c, &R[0], false) < 0)
		R[0].status = 0;
	conn_close(&c);

	/* Keep-alive: two requests on one connection. */
	conn_open(&c, fx.port);
	conn_sends(&c, "GET /v1/customers HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&c, &R[1], false);
	conn_sends(&c, "GET /v1/customers/k HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&c, &R[2], false);
	conn_sends(&c, "HEAD /v1/customers/h HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&c, &R[3], true);
	conn_sends(&c, "GET /v1/customers/g HTTP/1.1\r\nHost: t\r\n\r\n");
	conn_read_resp(&c, &R[4], false);
	conn_close(&c);
}

/* evhttp refuses big headers; keep-alive and HEAD work. */
static void
test_header_limit_and_keepalive(void **state)
{
	fx_run(script_header_limit);
	assert_true(
	    R[0].status == 0 || (R[0].status >= 400 && R[0].status < 500));
	expect_field(&R[1], "handler", "list");
	expect_field(&R[2], "id", "k");
	assert_int_equal(R[3].status, 200);
	assert_int_equal(R[3].len, 0);
	expect_field(&R[4], "id", "g");
}

/* --- bad settings ------------------------------------------------------ */

/* Bad listen addresses and a port in use are refused. */
static void
test_bad_listen(void **state)
{
	struct event_base *base = event_base_new();
	struct http_settings s = { .listen = "127.0.0.1" };
	const char *cause = NULL;
	struct http_server *a, *b;
	char listen[64];

	assert_null(http_server_new(base, &s, &cause));
	assert_non_null(cause);
	s.listen = "127.0.0.1:99999";
	assert_null(http_server_new(base, &s, &cause));

	s.listen = "127.0.0.1:0";
	a = http_server_new(base, &s, &cause);
	assert_non_null(a);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_server_port(a));
	s.listen = listen;
	cause = NULL;
	b = http_server_new(base, &s, &cause);
	assert_null(b);
	assert_non_null(cause);
	http_server_free(a);
	event_base_free(base);
}

/* Run every test. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_router_match),
		cmocka_unit_test(test_router_misses),
		cmocka_unit_test(test_router_bad_patterns),
		cmocka_unit_test(test_router_decode),
		cmocka_unit_test(test_bad_listen),
		cmocka_unit_test_setup_teardown(
		    test_routing, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_not_found_and_bad_method, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_content_type, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_body_limits, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_json_bodies, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reply_shape_and_ids, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_authenticator, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reply_after_client_left, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_stream_client_left, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_stream_drain, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_sse, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_stream_outlives_request_timeout, setup_default,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_shutdown_waits, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_shutdown_timeout_and_orphan, setup_quick_stop,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_access_log_and_metrics, setup_default, teardown),
		cmocka_unit_test_setup_teardown(
		    test_header_limit_and_keepalive, setup_default, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
