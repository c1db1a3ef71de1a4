/*
 * The HTTP front: an evhttp listener, a router with path parameters,
 * request ids, size limits and timeouts, strict JSON request bodies,
 * RFC 9457 problem+json errors, an access log line per request, streamed
 * replies and server-sent events, and a graceful stop. It knows nothing
 * of what the routes do or how credentials are checked.
 */
#ifndef VOUCH_HTTP_H
#define VOUCH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

struct http_server;
struct http_req;

typedef void (*http_handler_fn)(struct http_req *req);

/*
 * One route. The pattern is a path whose segments are literals or
 * "{name}" parameters: "/v1/customers/{id}". auth is opaque to http and
 * handed to the authenticator. Routes with a JSON body (POST, PUT, PATCH)
 * get it parsed before the handler runs; body_optional lets an empty body
 * through as an empty object.
 */
struct http_route {
	const char *method;
	const char *pattern;
	http_handler_fn handler;
	int auth;
	bool body_optional;
};

/*
 * Called before the handler of a route whose auth is not 0. It must end
 * with exactly one of http_req_continue (run the handler) or a reply
 * (http_reply_problem, ...), now or later from the loop.
 */
typedef void (*http_authenticate_fn)(struct http_req *req, int auth, void *arg);

struct http_settings {
	const char *listen; /* "127.0.0.1:8080" */
	size_t max_body_bytes;
	size_t max_header_bytes;
	int request_timeout;  /* seconds */
	int shutdown_timeout; /* seconds */
};

/* Create a server bound to settings->listen; NULL with *cause on error. */
struct http_server *http_server_new(
    struct event_base *base, const struct http_settings *s, const char **cause);

/* Add routes; the array must outlive the server. */
void http_server_routes(
    struct http_server *srv, const struct http_route *routes, size_t count);

void http_server_authenticator(
    struct http_server *srv, http_authenticate_fn fn, void *arg);

/* The port actually bound (useful with port 0). */
int http_server_port(const struct http_server *srv);

/*
 * Stop accepting, end open event streams, and call done once every
 * request in flight has finished or the shutdown timeout has passed.
 */
void http_server_shutdown(
    struct http_server *srv, void (*done)(void *arg), void *arg);

void http_server_free(struct http_server *srv);

/* Request counts by route and status, and latency histograms. */
struct evbuffer;
void http_server_metrics(const struct http_server *srv, struct evbuffer *out);

/* --- the request ------------------------------------------------------ */

/* Run the route's handler after a successful authentication. */
void http_req_continue(struct http_req *req);

const char *http_req_id(const struct http_req *req); /* 16 hex chars */
const char *http_req_method(const struct http_req *req);
const char *http_req_path(const struct http_req *req);
const char *http_req_remote(const struct http_req *req); /* address */
const char *http_req_header(const struct http_req *req, const char *name);

/* A path parameter by name, or NULL. */
const char *http_req_param(const struct http_req *req, const char *name);

/* A decoded query parameter by name, or NULL when absent. */
const char *http_req_query(const struct http_req *req, const char *name);

/* The parsed body: always a JSON object for body routes, else NULL.
   Borrowed; valid until the reply. */
json_t *http_req_json(const struct http_req *req);

/* Per-request context set by the authenticator (who is calling);
   free_fn runs when the request ends. */
void http_req_set_ctx(struct http_req *req, void *ctx, void (*free_fn)(void *));
void *http_req_ctx(const struct http_req *req);

/*
 * Called once if the client goes away before the reply is complete. The
 * handler must still finish (reply, or http_stream_end), which then only
 * frees the request.
 */
void http_req_on_close(struct http_req *req, void (*cb)(void *arg), void *arg);

/* --- replies: each ends the request; the req is gone afterwards -------- */

/* Add a header to the reply (before replying). */
void http_reply_header(
    struct http_req *req, const char *name, const char *value);

/* Reply with a JSON body; steals the reference to body. */
void http_reply_json(struct http_req *req, int status, json_t *body);

/* Reply with no body (204 and the like). */
void http_reply_empty(struct http_req *req, int status);

/* Reply with any body and content type. */
void http_reply_body(struct http_req *req, int status, const char *content_type,
    const void *body, size_t len);

/*
 * RFC 9457 problem details: {"type", "title", "status", "detail", "code"}
 * plus "field" when field is not NULL.
 */
void http_reply_problem(struct http_req *req, int status, const char *code,
    const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* --- streamed replies (chunked) ---------------------------------------- */

void http_stream_start(
    struct http_req *req, int status, const char *content_type);

/* Queue data; returns -1 once the client has gone. */
int http_stream_write(struct http_req *req, const void *data, size_t len);

/* Bytes queued but not yet handed to the socket. */
size_t http_stream_pending(const struct http_req *req);

/* Call cb once the queue has drained (for producers that pace
   themselves); one registration at a time. */
void http_stream_on_drain(
    struct http_req *req, void (*cb)(void *arg), void *arg);

/* Finish the stream and the request. */
void http_stream_end(struct http_req *req);

/* --- server-sent events ------------------------------------------------ */

/* Start a text/event-stream reply (with keep-alive comments). */
void http_sse_start(struct http_req *req);

/* Send one event; data may hold newlines. -1 once the client has gone. */
int http_sse_send(struct http_req *req, const char *event, const char *data);

/* Set the interval of the keep-alive comments on event streams started
   from now on (default 15000 ms; tests use less). */
void http_server_sse_interval(struct http_server *srv, int msec);

#endif
