/*
 * h2srv: the HTTP/2-over-TLS server under both push fakes. It listens,
 * runs one nghttp2 server session per connection on a libevent
 * bufferevent, collects each request and hands it to the fake, which
 * answers it now, later or never, or applies a protocol fault. It knows
 * nothing of APNs or FCM.
 */
#ifndef FAKES_H2SRV_H
#define FAKES_H2SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

struct h2srv;
struct h2srv_conn;
struct h2srv_req;

/* Called once per complete request, inside the nghttp2 read path. */
typedef void (*h2srv_request_cb)(struct h2srv_req *req, void *arg);

struct h2srv_config {
	const char *listen;       /* "127.0.0.1:PORT", PORT may be 0 */
	const char *cert;         /* PEM chain */
	const char *key;          /* PEM private key */
	uint32_t initial_streams; /* MAX_CONCURRENT_STREAMS at start */
	unsigned ping_strikes;    /* GOAWAY after this many idle PINGs */
	bool quiet_close;         /* do not record connection events */
	h2srv_request_cb request_cb;
	void *arg;
};

/* A response header; h2srv copies both strings. */
struct h2srv_hdr {
	const char *name;
	const char *value;
};

/* A response; h2srv copies everything it needs before returning. */
struct h2srv_resp {
	int status;
	const struct h2srv_hdr *hdrs;
	size_t nhdrs;
	const void *body;
	size_t len;
	bool split_end;    /* DATA, then an empty DATA with END_STREAM */
	unsigned delay_ms; /* answer after this long */
};

/*
 * Listen and prepare TLS. Returns the server or NULL after printing why
 * on stderr. Free with h2srv_free.
 */
struct h2srv *h2srv_new(
    struct event_base *base, const struct h2srv_config *cfg);

/* The port actually bound (useful when the config asked for 0). */
int h2srv_port(const struct h2srv *srv);

/* Ignore (true) or acknowledge (false) PINGs from now on. */
void h2srv_set_ignore_pings(struct h2srv *srv, bool on);

/* Close every connection and the listener; accepts NULL. */
void h2srv_free(struct h2srv *srv);

/* Request pseudo-headers; never NULL (empty when absent). */
const char *h2srv_req_method(const struct h2srv_req *req);
const char *h2srv_req_path(const struct h2srv_req *req);
const char *h2srv_req_authority(const struct h2srv_req *req);

/* The first value of regular header NAME (lower case), or NULL. */
const char *h2srv_req_header(const struct h2srv_req *req, const char *name);

/* How many regular headers the request has, and the I-th of them. */
size_t h2srv_req_nheaders(const struct h2srv_req *req);
void h2srv_req_header_at(const struct h2srv_req *req, size_t i,
    const char **name, const char **value);

/*
 * The body kept (at most H2SRV_BODY_CAP bytes, NUL-terminated) and its
 * length; *TOTAL gets the length actually received.
 */
#define H2SRV_BODY_CAP 65536
const char *h2srv_req_body(
    const struct h2srv_req *req, size_t *len, size_t *total);

/* The stream id, the connection and the connection's number. */
int32_t h2srv_req_stream(const struct h2srv_req *req);
struct h2srv_conn *h2srv_req_conn(const struct h2srv_req *req);
uint64_t h2srv_conn_id(const struct h2srv_conn *conn);

/* One word of fake-owned state per connection (zero at start). */
uintptr_t h2srv_conn_udata(const struct h2srv_conn *conn);
void h2srv_conn_set_udata(struct h2srv_conn *conn, uintptr_t v);

/* Answer the request; returns 0 or -1 when the stream is gone. */
int h2srv_respond(struct h2srv_req *req, const struct h2srv_resp *resp);

/* Reset the stream with REFUSED_STREAM. */
void h2srv_refuse(struct h2srv_req *req);

/*
 * Send GOAWAY (NO_ERROR, DEBUG as opaque data, may be NULL) whose last
 * stream id is the one before REQ's, then close once the lower streams
 * are answered. REQ itself is not processed.
 */
void h2srv_goaway(struct h2srv_req *req, const char *debug);

/* Close the connection at once, without GOAWAY; WHY goes to the record. */
void h2srv_close(struct h2srv_conn *conn, const char *why);

/* Send SETTINGS with MAX_CONCURRENT_STREAMS = N on this connection. */
void h2srv_set_max_streams(struct h2srv_conn *conn, uint32_t n);

/*
 * A record object for REQ, numbered N (0 = not numbered): ev, conn,
 * stream, n, method, path, headers (a repeated name maps to an array)
 * and body (or body_b64url when it is not UTF-8). NULL when recording
 * is off. The caller adds its fields and passes it to record_put.
 */
json_t *h2srv_req_record(const struct h2srv_req *req, uint64_t n);

/*
 * Print "ready PORT", then run the loop until SIGTERM or SIGINT; SIGHUP
 * calls HUP_CB(ARG). Returns 0 on a clean stop, -1 on a setup failure.
 */
int h2srv_run(struct h2srv *srv, void (*hup_cb)(void *arg), void *arg);

#endif
