/*
 * h2srv: HTTP/2 over TLS for the push fakes. TLS with ALPN h2 only, one
 * nghttp2 server session per connection on an OpenSSL bufferevent, and
 * the protocol-level faults (REFUSED_STREAM, GOAWAY, a lowered stream
 * limit, ignored PINGs, a dropped socket) done with real frames. Request
 * objects are pooled so the hot path allocates nothing of its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "h2srv.h"
#include "fakeutil.h"
#include "record.h"

#define H2SRV_HDR_CAP 65536         /* bytes of request headers kept */
#define H2SRV_MAX_FIELDS 128        /* request headers per stream */
#define H2SRV_MAX_RESP_HDRS 16      /* response headers per answer */
#define H2SRV_OUT_HIGH (1 << 20)    /* stop serialising above this */
#define H2SRV_CONN_WINDOW (1 << 24) /* connection receive window */
#define H2SRV_LINGER_MS 2000        /* wait for the peer's FIN */
#define H2SRV_HANDSHAKE_S 10        /* a TLS handshake may take this long */
#define H2SRV_NONE UINT32_MAX       /* an absent pseudo-header */

struct h2srv_field {
	uint32_t name;
	uint32_t value;
};

struct h2srv_req {
	struct h2srv_conn *conn;
	struct h2srv_req *next;
	struct h2srv_req *prev;
	int32_t stream_id;
	bool dispatched;
	bool answered;

	char *hbuf; /* "name\0value\0" pairs */
	uint32_t hlen;
	uint32_t hcap;
	struct h2srv_field *fields;
	size_t nfields;
	size_t fcap;
	uint32_t method;
	uint32_t path;
	uint32_t authority;

	char *body;
	size_t blen;
	size_t bcap;
	size_t btotal;

	char *rbody; /* response body being sent */
	size_t rlen;
	size_t rcap;
	size_t roff;
	bool split_end;

	struct event timer; /* a delayed answer */
	bool timer_on;
	int dstatus;
	struct h2srv_hdr *dhdrs; /* copies kept for the delayed answer */
	size_t ndhdrs;
};

struct h2srv_conn {
	struct h2srv *srv;
	struct h2srv_conn *next;
	struct h2srv_conn *prev;
	uint64_t id;
	struct bufferevent *bev;
	nghttp2_session *session;
	struct h2srv_req *reqs;
	size_t nopen;
	int32_t last_seen;
	uint32_t advertised;
	unsigned idle_pings;
	bool goaway_sent;
	int32_t goaway_last;
	const char *dead;       /* close at once, for this reason */
	const char *finish_why; /* close once the output is flushed */
	bool lingering;
	struct event linger;
	uintptr_t udata;
};

struct h2srv {
	struct event_base *base;
	struct evconnlistener *listener;
	SSL_CTX *ssl_ctx;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct h2srv_config cfg;
	int port;
	bool ignore_pings;
	uint64_t next_conn_id;
	struct h2srv_conn *conns;
	struct h2srv_req *free_reqs;
};

static void h2srv_pump(struct h2srv_conn *conn);

/* --- request objects -------------------------------------------------- */

/* Take a request object from the pool (or make one) and reset it. */
static struct h2srv_req *
h2srv_req_get(struct h2srv *srv)
{
	struct h2srv_req *req = srv->free_reqs;

	if (req != NULL) {
		srv->free_reqs = req->next;
	} else {
		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return NULL;
	}

	req->next = req->prev = NULL;
	req->dispatched = req->answered = false;
	req->hlen = 0;
	req->nfields = 0;
	req->method = req->path = req->authority = H2SRV_NONE;
	req->blen = req->btotal = 0;
	req->rlen = req->roff = 0;
	req->split_end = false;
	req->timer_on = false;
	req->dhdrs = NULL;
	req->ndhdrs = 0;
	return req;
}

/* Drop the copies made for a delayed answer. */
static void
h2srv_req_drop_delayed(struct h2srv_req *req)
{
	size_t i;

	for (i = 0; i < req->ndhdrs; i++) {
		free((char *)req->dhdrs[i].name);
		free((char *)req->dhdrs[i].value);
	}
	free(req->dhdrs);
	req->dhdrs = NULL;
	req->ndhdrs = 0;
}

/* Unlink a request from its connection and return it to the pool. */
static void
h2srv_req_put(struct h2srv_req *req)
{
	struct h2srv_conn *conn = req->conn;

	if (req->timer_on)
		event_del(&req->timer);
	req->timer_on = false;
	h2srv_req_drop_delayed(req);

	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		conn->reqs = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	conn->nopen--;

	req->conn = NULL;
	req->prev = NULL;
	req->next = conn->srv->free_reqs;
	conn->srv->free_reqs = req;
}

/* Grow *BUF to hold at least NEED bytes; returns 0 or -1. */
static int
h2srv_grow(char **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap != 0 ? *cap : 256;
	char *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*buf, ncap);
	if (p == NULL)
		return -1;
	*buf = p;
	*cap = ncap;
	return 0;
}

/* Append a NUL-terminated copy of S to the header arena; returns offset. */
static uint32_t
h2srv_req_store(struct h2srv_req *req, const uint8_t *s, size_t len)
{
	size_t cap = req->hcap;
	uint32_t off = req->hlen;

	if (req->hlen + len + 1 > H2SRV_HDR_CAP)
		return H2SRV_NONE;
	if (h2srv_grow(&req->hbuf, &cap, req->hlen + len + 1) < 0)
		return H2SRV_NONE;
	req->hcap = (uint32_t)cap;
	memcpy(req->hbuf + off, s, len);
	req->hbuf[off + len] = '\0';
	req->hlen += (uint32_t)len + 1;
	return off;
}

/* Keep one request header; returns 0 or -1 when over a limit. */
static int
h2srv_req_add_header(struct h2srv_req *req, const uint8_t *name, size_t nlen,
    const uint8_t *value, size_t vlen)
{
	struct h2srv_field *f;
	uint32_t *pseudo = NULL;
	uint32_t n, v;

	if (nlen == 7 && memcmp(name, ":method", 7) == 0)
		pseudo = &req->method;
	else if (nlen == 5 && memcmp(name, ":path", 5) == 0)
		pseudo = &req->path;
	else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
		pseudo = &req->authority;
	else if (nlen > 0 && name[0] == ':')
		return 0;
	if (pseudo != NULL) {
		*pseudo = h2srv_req_store(req, value, vlen);
		return *pseudo == H2SRV_NONE ? -1 : 0;
	}

	if (req->nfields == H2SRV_MAX_FIELDS)
		return -1;
	if (req->nfields == req->fcap) {
		f = realloc(req->fields, (req->fcap + 16) * sizeof(*f));
		if (f == NULL)
			return -1;
		req->fields = f;
		req->fcap += 16;
	}
	n = h2srv_req_store(req, name, nlen);
	v = n == H2SRV_NONE ? H2SRV_NONE : h2srv_req_store(req, value, vlen);
	if (v == H2SRV_NONE)
		return -1;
	req->fields[req->nfields].name = n;
	req->fields[req->nfields].value = v;
	req->nfields++;
	return 0;
}

/* Keep up to H2SRV_BODY_CAP bytes of body and count the rest. */
static void
h2srv_req_add_body(struct h2srv_req *req, const uint8_t *data, size_t len)
{
	size_t keep = len;

	req->btotal += len;
	if (req->blen + keep > H2SRV_BODY_CAP)
		keep = H2SRV_BODY_CAP - req->blen;
	if (h2srv_grow(&req->body, &req->bcap, req->blen + keep + 1) < 0)
		return;
	memcpy(req->body + req->blen, data, keep);
	req->blen += keep;
	req->body[req->blen] = '\0';
}

/* A pseudo-header value or "" when absent. */
static const char *
h2srv_req_pseudo(const struct h2srv_req *req, uint32_t off)
{
	return off == H2SRV_NONE ? "" : req->hbuf + off;
}

/* The request's :method. */
const char *
h2srv_req_method(const struct h2srv_req *req)
{
	return h2srv_req_pseudo(req, req->method);
}

/* The request's :path. */
const char *
h2srv_req_path(const struct h2srv_req *req)
{
	return h2srv_req_pseudo(req, req->path);
}

/* The request's :authority. */
const char *
h2srv_req_authority(const struct h2srv_req *req)
{
	return h2srv_req_pseudo(req, req->authority);
}

/* Linear search: requests carry a handful of headers. */
const char *
h2srv_req_header(const struct h2srv_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nfields; i++)
		if (strcmp(req->hbuf + req->fields[i].name, name) == 0)
			return req->hbuf + req->fields[i].value;
	return NULL;
}

/* How many regular headers were kept. */
size_t
h2srv_req_nheaders(const struct h2srv_req *req)
{
	return req->nfields;
}

/* The I-th regular header in arrival order. */
void
h2srv_req_header_at(const struct h2srv_req *req, size_t i, const char **name,
    const char **value)
{
	*name = req->hbuf + req->fields[i].name;
	*value = req->hbuf + req->fields[i].value;
}

/* The kept body, NUL-terminated, with its kept and received lengths. */
const char *
h2srv_req_body(const struct h2srv_req *req, size_t *len, size_t *total)
{
	*len = req->blen;
	if (total != NULL)
		*total = req->btotal;
	return req->blen > 0 ? req->body : "";
}

/* The request's stream id. */
int32_t
h2srv_req_stream(const struct h2srv_req *req)
{
	return req->stream_id;
}

/* The connection the request arrived on. */
struct h2srv_conn *
h2srv_req_conn(const struct h2srv_req *req)
{
	return req->conn;
}

/* The connection's number, counted from 1. */
uint64_t
h2srv_conn_id(const struct h2srv_conn *conn)
{
	return conn->id;
}

/* The fake's word of state for this connection. */
uintptr_t
h2srv_conn_udata(const struct h2srv_conn *conn)
{
	return conn->udata;
}

/* Set the fake's word of state. */
void
h2srv_conn_set_udata(struct h2srv_conn *conn, uintptr_t v)
{
	conn->udata = v;
}

/* --- answers and faults ------------------------------------------------ */

/* Feed the response body to nghttp2, then an empty END_STREAM if asked. */
static ssize_t
h2srv_data_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
    size_t length, uint32_t *flags, nghttp2_data_source *source,
    void *user_data)
{
	struct h2srv_req *req = source->ptr;
	size_t n = req->rlen - req->roff;

	if (n > length)
		n = length;
	memcpy(buf, req->rbody + req->roff, n);
	req->roff += n;
	if (req->roff == req->rlen && (n == 0 || !req->split_end))
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Submit the response headers (and body) of REQ to nghttp2. */
static int
h2srv_submit(struct h2srv_req *req, int status, const struct h2srv_hdr *hdrs,
    size_t nhdrs)
{
	nghttp2_nv nva[H2SRV_MAX_RESP_HDRS + 1];
	nghttp2_data_provider prd;
	char code[4];
	size_t i, n = 0;

	if (status < 100 || status > 999)
		status = 500;
	code[0] = (char)('0' + status / 100);
	code[1] = (char)('0' + status / 10 % 10);
	code[2] = (char)('0' + status % 10);
	nva[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)code, 7, 3,
		NGHTTP2_NV_FLAG_NONE };
	for (i = 0; i < nhdrs && i < H2SRV_MAX_RESP_HDRS; i++)
		nva[n++] = (nghttp2_nv){ (uint8_t *)hdrs[i].name,
			(uint8_t *)hdrs[i].value, strlen(hdrs[i].name),
			strlen(hdrs[i].value), NGHTTP2_NV_FLAG_NO_INDEX };

	prd.source.ptr = req;
	prd.read_callback = h2srv_data_cb;
	if (nghttp2_submit_response(req->conn->session, req->stream_id, nva, n,
	        req->rlen > 0 || req->split_end ? &prd : NULL) != 0)
		return -1;
	return 0;
}

/* Send a delayed answer when its timer fires. */
static void
h2srv_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2srv_req *req = arg;
	struct h2srv_conn *conn = req->conn;

	req->timer_on = false;
	if (!conn->goaway_sent || req->stream_id <= conn->goaway_last)
		h2srv_submit(req, req->dstatus, req->dhdrs, req->ndhdrs);
	h2srv_pump(conn);
}

/* Keep copies of the headers for an answer sent later. */
static int
h2srv_keep_headers(struct h2srv_req *req, const struct h2srv_resp *resp)
{
	size_t i;

	req->dhdrs = calloc(resp->nhdrs + 1, sizeof(*req->dhdrs));
	if (req->dhdrs == NULL)
		return -1;
	for (i = 0; i < resp->nhdrs; i++) {
		req->dhdrs[i].name = strdup(resp->hdrs[i].name);
		req->dhdrs[i].value = strdup(resp->hdrs[i].value);
		req->ndhdrs = i + 1;
		if (req->dhdrs[i].name == NULL || req->dhdrs[i].value == NULL)
			return -1;
	}
	req->dstatus = resp->status;
	return 0;
}

/* Copy the body, then submit now or arm the delay timer. */
int
h2srv_respond(struct h2srv_req *req, const struct h2srv_resp *resp)
{
	struct timeval tv;

	if (req->answered)
		return -1;
	req->answered = true;

	if (h2srv_grow(&req->rbody, &req->rcap, resp->len + 1) < 0)
		return -1;
	if (resp->len > 0)
		memcpy(req->rbody, resp->body, resp->len);
	req->rlen = resp->len;
	req->roff = 0;
	req->split_end = resp->split_end;

	if (resp->delay_ms == 0)
		return h2srv_submit(req, resp->status, resp->hdrs, resp->nhdrs);

	if (h2srv_keep_headers(req, resp) < 0)
		return -1;
	tv.tv_sec = resp->delay_ms / 1000;
	tv.tv_usec = (resp->delay_ms % 1000) * 1000;
	evtimer_assign(&req->timer, req->conn->srv->base, h2srv_delay_cb, req);
	req->timer_on = true;
	return evtimer_add(&req->timer, &tv);
}

/* RST_STREAM with REFUSED_STREAM: the client may safely retry. */
void
h2srv_refuse(struct h2srv_req *req)
{
	req->answered = true;
	nghttp2_submit_rst_stream(req->conn->session, NGHTTP2_FLAG_NONE,
	    req->stream_id, NGHTTP2_REFUSED_STREAM);
}

/* Queue GOAWAY with LAST as the last processed stream and record it. */
static void
h2srv_conn_goaway(
    struct h2srv_conn *conn, int32_t last, uint32_t code, const char *debug)
{
	size_t dlen = debug != NULL ? strlen(debug) : 0;
	json_t *ev;

	if (conn->goaway_sent)
		return;
	nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE, last, code,
	    (const uint8_t *)debug, dlen);
	conn->goaway_sent = true;
	conn->goaway_last = last;

	if (!record_on())
		return;
	ev = record_event("goaway", conn->id);
	json_object_set_new(ev, "last_stream", json_integer(last));
	json_object_set_new(
	    ev, "error", json_string(nghttp2_http2_strerror(code)));
	json_object_set_new(
	    ev, "debug", debug != NULL ? json_string(debug) : json_null());
	record_put(ev);
}

/* GOAWAY naming the stream before REQ's as the last one processed. */
void
h2srv_goaway(struct h2srv_req *req, const char *debug)
{
	int32_t last = req->stream_id - 2;

	req->answered = true;
	h2srv_conn_goaway(
	    req->conn, last > 0 ? last : 0, NGHTTP2_NO_ERROR, debug);
}

/* Mark the connection for closing once the current callback returns. */
void
h2srv_close(struct h2srv_conn *conn, const char *why)
{
	if (conn->dead == NULL)
		conn->dead = why;
}

/* Advertise a new MAX_CONCURRENT_STREAMS and record it. */
void
h2srv_set_max_streams(struct h2srv_conn *conn, uint32_t n)
{
	nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		n };
	json_t *ev;

	if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, &iv, 1) !=
	    0)
		return;
	conn->advertised = n;

	if (!record_on())
		return;
	ev = record_event("settings", conn->id);
	json_object_set_new(ev, "max_streams", json_integer(n));
	record_put(ev);
}

/* --- nghttp2 callbacks -------------------------------------------------- */

/* Notice a new stream that breaks the advertised limit, before nghttp2. */
static int
h2srv_begin_frame_cb(
    nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
	struct h2srv_conn *conn = user_data;
	uint32_t acked;
	json_t *ev;

	if (hd->type != NGHTTP2_HEADERS || (hd->stream_id & 1) == 0 ||
	    hd->stream_id <= conn->last_seen)
		return 0;
	conn->last_seen = hd->stream_id;
	if (conn->goaway_sent || !record_on())
		return 0;

	acked = nghttp2_session_get_local_settings(
	    session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	if (conn->nopen >= acked) {
		ev = record_event("violation", conn->id);
		json_object_set_new(
		    ev, "what", json_string("streams above limit"));
		json_object_set_new(ev, "stream", json_integer(hd->stream_id));
		json_object_set_new(
		    ev, "open", json_integer((json_int_t)conn->nopen + 1));
		json_object_set_new(ev, "limit", json_integer(acked));
		record_put(ev);
	} else if (conn->nopen >= conn->advertised) {
		ev = record_event("refused", conn->id);
		json_object_set_new(ev, "stream", json_integer(hd->stream_id));
		json_object_set_new(ev, "why",
		    json_string("above a limit not yet acknowledged"));
		json_object_set_new(
		    ev, "open", json_integer((json_int_t)conn->nopen + 1));
		json_object_set_new(
		    ev, "limit", json_integer(conn->advertised));
		record_put(ev);
	}
	return 0;
}

/* A new request stream: attach a pooled request object. */
static int
h2srv_begin_headers_cb(
    nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2srv_conn *conn = user_data;
	struct h2srv_req *req;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	req = h2srv_req_get(conn->srv);
	if (req == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;

	req->conn = conn;
	req->stream_id = frame->hd.stream_id;
	req->next = conn->reqs;
	if (conn->reqs != NULL)
		conn->reqs->prev = req;
	conn->reqs = req;
	conn->nopen++;
	conn->idle_pings = 0;
	nghttp2_session_set_stream_user_data(session, req->stream_id, req);
	return 0;
}

/* Keep each request header; trailers are ignored. */
static int
h2srv_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
    uint8_t flags, void *user_data)
{
	struct h2srv_req *req;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	req =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (req == NULL)
		return 0;
	if (h2srv_req_add_header(req, name, namelen, value, valuelen) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

/* Collect request body bytes. */
static int
h2srv_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t stream_id,
    const uint8_t *data, size_t len, void *user_data)
{
	struct h2srv_req *req;

	req = nghttp2_session_get_stream_user_data(session, stream_id);
	if (req != NULL && !req->dispatched)
		h2srv_req_add_body(req, data, len);
	return 0;
}

/* Acknowledge (or ignore) a PING and count idle ones. */
static void
h2srv_on_ping(struct h2srv_conn *conn, const nghttp2_frame *frame)
{
	struct h2srv *srv = conn->srv;
	bool acked = !srv->ignore_pings;
	int32_t last;
	json_t *ev;

	if (acked)
		nghttp2_submit_ping(
		    conn->session, NGHTTP2_FLAG_ACK, frame->ping.opaque_data);
	if (record_on()) {
		ev = record_event("ping", conn->id);
		json_object_set_new(ev, "acked", json_boolean(acked));
		record_put(ev);
	}

	conn->idle_pings++;
	if (srv->cfg.ping_strikes == 0 ||
	    conn->idle_pings < srv->cfg.ping_strikes)
		return;
	last = nghttp2_session_get_last_proc_stream_id(conn->session);
	h2srv_conn_goaway(
	    conn, last, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
}

/* A request is complete when its stream ends: hand it to the fake. */
static int
h2srv_frame_recv_cb(
    nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct h2srv_conn *conn = user_data;
	struct h2srv_req *req;

	if (frame->hd.type == NGHTTP2_PING &&
	    (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
		h2srv_on_ping(conn, frame);
		return 0;
	}
	if ((frame->hd.type != NGHTTP2_HEADERS &&
	        frame->hd.type != NGHTTP2_DATA) ||
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
		return 0;

	req =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (req == NULL || req->dispatched || conn->dead != NULL)
		return 0;
	req->dispatched = true;
	if (conn->goaway_sent && req->stream_id > conn->goaway_last)
		return 0;
	conn->srv->cfg.request_cb(req, conn->srv->cfg.arg);
	return 0;
}

/* The stream is gone: return its request object to the pool. */
static int
h2srv_stream_close_cb(nghttp2_session *session, int32_t stream_id,
    uint32_t error_code, void *user_data)
{
	struct h2srv_req *req;

	req = nghttp2_session_get_stream_user_data(session, stream_id);
	if (req == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	h2srv_req_put(req);
	return 0;
}

/* --- connections -------------------------------------------------------- */

/* Record why a connection ended and release everything it holds. */
static void
h2srv_conn_free(struct h2srv_conn *conn, const char *why)
{
	struct h2srv *srv = conn->srv;
	json_t *ev;

	if (record_on()) {
		ev = record_event("close", conn->id);
		json_object_set_new(ev, "why", json_string(why));
		record_put(ev);
	}

	while (conn->reqs != NULL)
		h2srv_req_put(conn->reqs);
	nghttp2_session_del(conn->session);
	if (conn->lingering)
		event_del(&conn->linger);
	bufferevent_free(conn->bev);

	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		srv->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	free(conn);
}

/* The peer never closed its side after ours: give up waiting. */
static void
h2srv_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct h2srv_conn *conn = arg;

	h2srv_conn_free(conn, conn->finish_why);
}

/*
 * Everything is sent: say close_notify, half-close, and wait briefly for
 * the peer's FIN so unread bytes of theirs do not turn our close into a
 * reset that could destroy the frames we just sent.
 */
static void
h2srv_conn_linger(struct h2srv_conn *conn)
{
	struct timeval tv = { H2SRV_LINGER_MS / 1000,
		(H2SRV_LINGER_MS % 1000) * 1000 };
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);

	conn->lingering = true;
	if (ssl != NULL)
		SSL_shutdown(ssl);
	shutdown(bufferevent_getfd(conn->bev), SHUT_WR);
	evtimer_assign(&conn->linger, conn->srv->base, h2srv_linger_cb, conn);
	evtimer_add(&conn->linger, &tv);
}

/* True while a stream the GOAWAY promised to process is still open. */
static bool
h2srv_lower_pending(const struct h2srv_conn *conn)
{
	const struct h2srv_req *req;

	for (req = conn->reqs; req != NULL; req = req->next)
		if (req->stream_id <= conn->goaway_last)
			return true;
	return false;
}

/*
 * Serialise what nghttp2 has queued into the bufferevent, then close the
 * connection if it was killed or has nothing left to do. May free CONN.
 */
static void
h2srv_pump(struct h2srv_conn *conn)
{
	struct evbuffer *out = bufferevent_get_output(conn->bev);
	const uint8_t *data;
	ssize_t n;

	if (conn->dead != NULL) {
		h2srv_conn_free(conn, conn->dead);
		return;
	}
	if (conn->session == NULL || conn->lingering)
		return;

	while (evbuffer_get_length(out) < H2SRV_OUT_HIGH) {
		n = nghttp2_session_mem_send(conn->session, &data);
		if (n < 0) {
			h2srv_conn_free(conn, nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		if (bufferevent_write(conn->bev, data, (size_t)n) != 0) {
			h2srv_conn_free(conn, "write failed");
			return;
		}
	}

	if (conn->goaway_sent && conn->finish_why == NULL &&
	    !h2srv_lower_pending(conn))
		conn->finish_why = "goaway";
	if (conn->finish_why == NULL &&
	    !nghttp2_session_want_read(conn->session) &&
	    !nghttp2_session_want_write(conn->session))
		conn->finish_why = "session ended";
	if (conn->finish_why != NULL && evbuffer_get_length(out) == 0 &&
	    !nghttp2_session_want_write(conn->session))
		h2srv_conn_linger(conn);
}

/* Bytes from the peer: feed them to nghttp2, then answer. */
static void
h2srv_read_cb(struct bufferevent *bev, void *arg)
{
	struct h2srv_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	ssize_t rv;

	if (conn->lingering || conn->session == NULL) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}

	while (conn->dead == NULL && (len = evbuffer_get_length(in)) > 0) {
		len = evbuffer_get_contiguous_space(in);
		rv = nghttp2_session_mem_recv(
		    conn->session, evbuffer_pullup(in, (ssize_t)len), len);
		if (rv < 0) {
			h2srv_close(conn, nghttp2_strerror((int)rv));
			break;
		}
		evbuffer_drain(in, len);
	}
	h2srv_pump(conn);
}

/* The output drained: continue serialising or finish closing. */
static void
h2srv_write_cb(struct bufferevent *bev, void *arg)
{
	h2srv_pump(arg);
}

/* The TLS handshake finished: insist on h2 and start the session. */
static void
h2srv_conn_start(struct h2srv_conn *conn)
{
	struct h2srv *srv = conn->srv;
	nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		srv->cfg.initial_streams };
	const unsigned char *alpn = NULL;
	unsigned int alen = 0;

	SSL_get0_alpn_selected(
	    bufferevent_openssl_get_ssl(conn->bev), &alpn, &alen);
	if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
		h2srv_close(conn, "no h2 in alpn");
		return;
	}
	bufferevent_set_timeouts(conn->bev, NULL, NULL);
	if (nghttp2_session_server_new2(
	        &conn->session, srv->cbs, conn, srv->opt) != 0) {
		h2srv_close(conn, "out of memory");
		return;
	}
	nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, &iv, 1);
	nghttp2_session_set_local_window_size(
	    conn->session, NGHTTP2_FLAG_NONE, 0, H2SRV_CONN_WINDOW);
	conn->advertised = srv->cfg.initial_streams;
}

/* Describe why a bufferevent failed, for the record. */
static const char *
h2srv_event_why(struct bufferevent *bev)
{
	static char why[160];
	unsigned long e = bufferevent_get_openssl_error(bev);
	int err = EVUTIL_SOCKET_ERROR();

	if (e == 0)
		e = ERR_peek_last_error();
	if (e != 0)
		snprintf(why, sizeof(why), "tls error: %s",
		    ERR_reason_error_string(e));
	else if (err != 0)
		snprintf(why, sizeof(why), "socket error: %s",
		    evutil_socket_error_to_string(err));
	else
		snprintf(why, sizeof(why), "connection error");
	ERR_clear_error();
	return why;
}

/* Handshake done, peer closed, or an error. */
static void
h2srv_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct h2srv_conn *conn = arg;

	if (what & BEV_EVENT_CONNECTED) {
		h2srv_conn_start(conn);
		h2srv_pump(conn);
		return;
	}

	if (conn->lingering)
		h2srv_conn_free(conn, conn->finish_why);
	else if (what & BEV_EVENT_TIMEOUT)
		h2srv_conn_free(conn, "tls handshake timeout");
	else if (what & BEV_EVENT_EOF)
		h2srv_conn_free(conn, "peer closed");
	else
		h2srv_conn_free(conn, h2srv_event_why(bev));
}

/* A new TCP connection: set TCP_NODELAY and start the TLS handshake. */
static void
h2srv_accept_cb(struct evconnlistener *listener, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct h2srv *srv = arg;
	struct timeval tv = { H2SRV_HANDSHAKE_S, 0 };
	struct h2srv_conn *conn;
	SSL *ssl;
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn = calloc(1, sizeof(*conn));
	ssl = SSL_new(srv->ssl_ctx);
	if (conn == NULL || ssl == NULL)
		goto fail;
	conn->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL)
		goto fail;

	conn->srv = srv;
	conn->id = ++srv->next_conn_id;
	conn->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = conn;
	srv->conns = conn;
	bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
	bufferevent_setcb(
	    conn->bev, h2srv_read_cb, h2srv_write_cb, h2srv_event_cb, conn);
	bufferevent_set_timeouts(conn->bev, &tv, NULL);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	if (record_on())
		record_put(record_event("connect", conn->id));
	return;

fail:
	if (conn == NULL || conn->bev == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
	}
	free(conn);
}

/* --- records and the main loop ---------------------------------------- */

/* Add one header to OBJ; a repeated name becomes an array of values. */
static void
h2srv_record_header(json_t *obj, const char *name, const char *value)
{
	json_t *old = json_object_get(obj, name), *arr;

	if (old == NULL) {
		json_object_set_new(obj, name, json_string(value));
		return;
	}
	if (json_is_array(old)) {
		json_array_append_new(old, json_string(value));
		return;
	}
	arr = json_array();
	json_array_append(arr, old);
	json_array_append_new(arr, json_string(value));
	json_object_set_new(obj, name, arr);
}

/* The body as a JSON string, or base64url when it is not UTF-8. */
static void
h2srv_record_body(json_t *ev, const struct h2srv_req *req)
{
	char *b64;

	if (fakeutil_utf8_ok(req->body, req->blen)) {
		json_object_set_new(ev, "body",
		    json_stringn(req->blen > 0 ? req->body : "", req->blen));
		return;
	}
	b64 = malloc(req->blen * 4 / 3 + 4);
	if (b64 == NULL)
		return;
	fakeutil_b64url_encode(
	    (const unsigned char *)req->body, req->blen, b64);
	json_object_set_new(ev, "body", json_null());
	json_object_set_new(ev, "body_b64url", json_string(b64));
	free(b64);
}

/* The common part of a request record. */
json_t *
h2srv_req_record(const struct h2srv_req *req, uint64_t n)
{
	const char *name, *value;
	json_t *ev, *hdrs;
	size_t i;

	if (!record_on())
		return NULL;
	ev = record_event("request", req->conn->id);
	json_object_set_new(ev, "stream", json_integer(req->stream_id));
	json_object_set_new(
	    ev, "n", n > 0 ? json_integer((json_int_t)n) : json_null());
	json_object_set_new(ev, "method", json_string(h2srv_req_method(req)));
	json_object_set_new(ev, "path", json_string(h2srv_req_path(req)));

	hdrs = json_object();
	for (i = 0; i < req->nfields; i++) {
		h2srv_req_header_at(req, i, &name, &value);
		h2srv_record_header(hdrs, name, value);
	}
	json_object_set_new(ev, "headers", hdrs);
	h2srv_record_body(ev, req);
	if (req->btotal > req->blen)
		json_object_set_new(
		    ev, "body_length", json_integer((json_int_t)req->btotal));
	return ev;
}

/* SIGTERM or SIGINT: leave the loop so main can clean up. */
static void
h2srv_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

struct h2srv_hup {
	void (*cb)(void *arg);
	void *arg;
};

/* SIGHUP: hand over to the fake (it re-reads its plan). */
static void
h2srv_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct h2srv_hup *hup = arg;

	if (hup->cb != NULL)
		hup->cb(hup->arg);
}

/* Install the signal events, announce the port and run the loop. */
int
h2srv_run(struct h2srv *srv, void (*hup_cb)(void *arg), void *arg)
{
	struct h2srv_hup hup = { hup_cb, arg };
	struct event *term, *intr, *hupev;
	int rv = -1;

	signal(SIGPIPE, SIG_IGN);
	term = evsignal_new(srv->base, SIGTERM, h2srv_stop_cb, srv->base);
	intr = evsignal_new(srv->base, SIGINT, h2srv_stop_cb, srv->base);
	hupev = evsignal_new(srv->base, SIGHUP, h2srv_hup_cb, &hup);
	if (term == NULL || intr == NULL || hupev == NULL ||
	    event_add(term, NULL) < 0 || event_add(intr, NULL) < 0 ||
	    event_add(hupev, NULL) < 0)
		goto out;

	printf("ready %d\n", srv->port);
	fflush(stdout);
	if (event_base_dispatch(srv->base) < 0)
		goto out;
	rv = 0;

out:
	if (term != NULL)
		event_free(term);
	if (intr != NULL)
		event_free(intr);
	if (hupev != NULL)
		event_free(hupev);
	return rv;
}

/* --- setup -------------------------------------------------------------- */

/* ALPN: h2 or a fatal alert; these services speak nothing else. */
static int
h2srv_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	if (nghttp2_select_next_protocol(
	        (unsigned char **)out, outlen, in, inlen) != 1)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

/* A TLS 1.2+ server context with the certificate and ALPN h2. */
static SSL_CTX *
h2srv_tls_new(const char *cert, const char *key)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	        SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		fprintf(stderr, "h2srv: cannot load %s / %s: %s\n", cert, key,
		    ERR_reason_error_string(ERR_get_error()));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_alpn_select_cb(ctx, h2srv_alpn_cb, NULL);
	return ctx;
}

/* The nghttp2 callbacks and options every session shares. */
static int
h2srv_nghttp2_setup(struct h2srv *srv)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 ||
	    nghttp2_option_new(&srv->opt) != 0)
		return -1;
	cbs = srv->cbs;
	nghttp2_session_callbacks_set_on_begin_frame_callback(
	    cbs, h2srv_begin_frame_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(
	    cbs, h2srv_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2srv_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    cbs, h2srv_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(
	    cbs, h2srv_frame_recv_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
	    cbs, h2srv_stream_close_cb);

	nghttp2_option_set_no_auto_ping_ack(srv->opt, 1);
	nghttp2_option_set_no_closed_streams(srv->opt, 1);
	return 0;
}

/* Parse "IPV4:PORT" or "[IPV6]:PORT" (PORT may be 0) into SS. */
static int
h2srv_parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	const char *colon = strrchr(addr, ':');
	char host[64], *end;
	size_t hlen;
	long port;

	if (colon == NULL || colon == addr)
		return -1;
	hlen = (size_t)(colon - addr);
	if (addr[0] == '[' && colon[-1] == ']') {
		addr++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		return -1;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
		return -1;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

/* Bind the listener and find out the port. */
static int
h2srv_listen(struct h2srv *srv, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (h2srv_parse_addr(addr, &ss, &len) < 0) {
		fprintf(stderr, "h2srv: bad listen address %s\n", addr);
		return -1;
	}
	srv->listener = evconnlistener_new_bind(srv->base, h2srv_accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    128, (struct sockaddr *)&ss, (int)len);
	if (srv->listener == NULL) {
		fprintf(stderr, "h2srv: cannot listen on %s: %s\n", addr,
		    strerror(errno));
		return -1;
	}

	len = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(srv->listener),
	        (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

/* Build the server: TLS context, nghttp2 setup, listener. */
struct h2srv *
h2srv_new(struct event_base *base, const struct h2srv_config *cfg)
{
	struct h2srv *srv;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return NULL;
	srv->base = base;
	srv->cfg = *cfg;

	srv->ssl_ctx = h2srv_tls_new(cfg->cert, cfg->key);
	if (srv->ssl_ctx == NULL || h2srv_nghttp2_setup(srv) < 0 ||
	    h2srv_listen(srv, cfg->listen) < 0) {
		h2srv_free(srv);
		return NULL;
	}
	return srv;
}

/* The bound port. */
int
h2srv_port(const struct h2srv *srv)
{
	return srv->port;
}

/* Switch PING acknowledgement off or on. */
void
h2srv_set_ignore_pings(struct h2srv *srv, bool on)
{
	srv->ignore_pings = on;
}

/* Close all connections, then free the pool and the shared state. */
void
h2srv_free(struct h2srv *srv)
{
	struct h2srv_req *req;

	if (srv == NULL)
		return;
	while (srv->conns != NULL)
		h2srv_conn_free(srv->conns, "shutdown");
	while ((req = srv->free_reqs) != NULL) {
		srv->free_reqs = req->next;
		free(req->hbuf);
		free(req->fields);
		free(req->body);
		free(req->rbody);
		free(req);
	}
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	nghttp2_session_callbacks_del(srv->cbs);
	nghttp2_option_del(srv->opt);
	SSL_CTX_free(srv->ssl_ctx);
	free(srv);
}
