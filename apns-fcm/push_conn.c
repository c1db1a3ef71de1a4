/*
 * One HTTP/2 connection to a push service: TLS with ALPN h2 on a libevent
 * bufferevent, an nghttp2 client session, PING liveness, the peer's
 * stream limit, GOAWAY and REFUSED_STREAM, back-off between attempts.
 * What to send and what an answer means belong to push.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "push_int.h"

#define CONN_OUTPUT_MAX (256 * 1024) /* stop feeding nghttp2 above this */
#define CONN_LIMIT_MAX 10000         /* streams we ever open at once */
#define CONN_IDLE_PINGS 2            /* pings with no request between */
#define CONN_HEALTHY_US 2000000      /* a connection that lived this long */
#define BACKOFF_BASE_MS 250
#define BACKOFF_MAX_MS 30000

struct push_conn {
	struct push_client *client;
	const struct push_endpoint *ep;
	char label[24]; /* "apns conn 2", "fcm oauth 1" */
	int pooled;     /* carries notifications */
	enum push_conn_state state;
	struct bufferevent *bev;
	nghttp2_session *h2;
	struct push_req_list flight;
	unsigned open; /* streams not yet closed */
	int got_settings;
	int goaway;   /* the peer sent GOAWAY */
	int draining; /* we stopped using it */
	int healthy;  /* answered a request */
	uint64_t t_up;

	unsigned fails;    /* failed attempts in a row */
	uint64_t next_try; /* no connect before this */

	int ping_out;
	unsigned idle_pings;
	struct event *ping_ev;
	struct event *ping_to_ev;
	struct event *retry_ev;
	struct event *close_ev;
	char why[160];
};

static void conn_fail(struct push_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Split "https://host[:port][/path]" into ep; returns 0 or -1. */
int
push_endpoint_parse(const char *url, struct push_endpoint *ep)
{
	const char *p, *host_end, *port_s = NULL;
	char *end = NULL;
	unsigned char buf[sizeof(struct in6_addr)];
	size_t hlen;
	long port = 443;

	memset(ep, 0, sizeof(*ep));
	if (url == NULL || strncmp(url, "https://", 8) != 0)
		return -1;
	p = url + 8;
	if (*p == '[') {
		host_end = strchr(p, ']');
		if (host_end == NULL)
			return -1;
		p++;
		hlen = (size_t)(host_end - p);
		host_end++;
	} else {
		hlen = strcspn(p, ":/");
		host_end = p + hlen;
	}
	if (hlen == 0 || hlen > 253)
		return -1;
	if (*host_end == ':') {
		port_s = host_end + 1;
		port = strtol(port_s, &end, 10);
		if (end == port_s || port < 1 || port > 65535)
			return -1;
		host_end = end;
	}
	if (*host_end != '\0' && *host_end != '/')
		return -1;

	ep->host = strndup(p, hlen);
	ep->path = strdup(*host_end == '/' ? host_end : "/");
	ep->port = (unsigned)port;
	if (ep->host == NULL || ep->path == NULL)
		goto fail;
	ep->numeric = inet_pton(AF_INET, ep->host, buf) == 1 ||
	    inet_pton(AF_INET6, ep->host, buf) == 1;
	if (asprintf(&ep->authority, "%s%s%s%s%u",
	        strchr(ep->host, ':') ? "[" : "", ep->host,
	        strchr(ep->host, ':') ? "]" : "", port == 443 ? "" : ":",
	        (unsigned)port) < 0) {
		ep->authority = NULL;
		goto fail;
	}
	if (port == 443)
		ep->authority[strlen(ep->authority) - 3] = '\0';
	return 0;

fail:
	push_endpoint_clear(ep);
	return -1;
}

/* Free what push_endpoint_parse allocated. */
void
push_endpoint_clear(struct push_endpoint *ep)
{
	free(ep->host);
	free(ep->authority);
	free(ep->path);
	memset(ep, 0, sizeof(*ep));
}

/*
 * A TLS client context: TLS 1.2+, the system trust store plus ca_file,
 * peer verification, ALPN h2. Caller frees with SSL_CTX_free.
 */
SSL_CTX *
push_conn_ctx_new(const char *ca_file, const char **cause)
{
	static const unsigned char alpn[] = { 2, 'h', '2' };
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*cause = "cannot make a TLS context";
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
	    SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
	        SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error();
	if (ca_file != NULL &&
	    SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		*cause = "cannot read ca_file";
		goto fail;
	}
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0) {
		*cause = "cannot set ALPN";
		goto fail;
	}
	return ctx;

fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* A per-connection TLS object naming and verifying the peer. */
static SSL *
conn_ssl_new(struct push_conn *conn)
{
	const struct push_endpoint *ep = conn->ep;
	SSL *ssl;

	ssl = SSL_new(conn->client->ctx);
	if (ssl == NULL)
		return NULL;
	if (ep->numeric) {
		if (X509_VERIFY_PARAM_set1_ip_asc(
		        SSL_get0_param(ssl), ep->host) != 1)
			goto fail;
	} else {
		if (SSL_set_tlsext_host_name(ssl, ep->host) != 1 ||
		    SSL_set1_host(ssl, ep->host) != 1)
			goto fail;
	}
	return ssl;

fail:
	SSL_free(ssl);
	return NULL;
}

/* Milliseconds to wait before the next attempt after fails failures. */
static unsigned
conn_backoff_ms(unsigned fails)
{
	unsigned ms;

	if (fails == 0)
		return push_random() % 50;
	ms = BACKOFF_BASE_MS << (fails > 8 ? 7 : fails - 1);
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	return ms / 2 + push_random() % (ms / 2 + 1);
}

/* nghttp2 hands us frames to write: queue them on the bufferevent. */
static ssize_t
conn_send_cb(
    nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *arg)
{
	struct push_conn *conn = arg;
	struct evbuffer *out = bufferevent_get_output(conn->bev);

	if (evbuffer_get_length(out) >= CONN_OUTPUT_MAX)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (evbuffer_add(out, data, len) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return (ssize_t)len;
}

/* A complete frame arrived: settings, ping acks, GOAWAY, stream ends. */
static int
conn_frame_recv_cb(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct push_conn *conn = arg;
	struct push_client *c = conn->client;
	struct push_req *req;

	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
			conn->got_settings = 1;
			push_log(c, PUSH_LOG_DEBUG,
			    "%s: peer allows %u streams", conn->label,
			    push_conn_limit(conn));
			push_dispatch_later(c);
		}
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
			conn->ping_out = 0;
			event_del(conn->ping_to_ev);
		}
		break;
	case NGHTTP2_GOAWAY:
		conn->goaway = 1;
		push_log(c, PUSH_LOG_WARN,
		    "%s: goaway last stream %d "
		    "error %u %.*s",
		    conn->label, frame->goaway.last_stream_id,
		    frame->goaway.error_code,
		    (int)(frame->goaway.opaque_data_len > 120
		            ? 120
		            : frame->goaway.opaque_data_len),
		    (const char *)frame->goaway.opaque_data);
		push_dispatch_later(c);
		break;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
			break;
		req = nghttp2_session_get_stream_user_data(
		    h2, frame->hd.stream_id);
		if (req != NULL && req->status > 0)
			req->ended = 1;
		break;
	default:
		break;
	}
	return 0;
}

/* Keep the answer's status and the headers the library reads. */
static int
conn_header_cb(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
    uint8_t flags, void *arg)
{
	struct push_req *req;
	char **slot = NULL;

	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	req = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (req == NULL)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		if (valuelen == 3)
			req->status = (value[0] - '0') * 100 +
			    (value[1] - '0') * 10 + (value[2] - '0');
		return 0;
	}
	if (namelen == 7 && memcmp(name, "apns-id", 7) == 0)
		slot = &req->resp_id;
	else if (namelen == 11 && memcmp(name, "retry-after", 11) == 0)
		slot = &req->retry_after;
	if (slot != NULL && *slot == NULL && valuelen <= 128)
		*slot = strndup((const char *)value, valuelen);
	return 0;
}

/* Body bytes of an answer: kept up to PUSH_BODY_MAX, the rest dropped. */
static int
conn_data_cb(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
    const uint8_t *data, size_t len, void *arg)
{
	struct push_req *req;
	size_t room;
	char *grown;

	req = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (req == NULL)
		return 0;
	room = PUSH_BODY_MAX - req->resp_len;
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	grown = realloc(req->resp, req->resp_len + len + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + req->resp_len, data, len);
	req->resp = grown;
	req->resp_len += len;
	req->resp[req->resp_len] = '\0';
	return 0;
}

/* Take a request off this connection's list of streams. */
static void
conn_detach(struct push_conn *conn, struct push_req *req)
{
	TAILQ_REMOVE(&conn->flight, req, link);
	req->where = PUSH_REQ_LOOSE;
	req->conn = NULL;
}

/*
 * A stream ended. A full answer goes to push.c; a refused stream (also
 * every stream above a GOAWAY's last id) is re-sent; any other reset is
 * reported.
 */
static int
conn_stream_close_cb(
    nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *arg)
{
	struct push_conn *conn = arg;
	struct push_req *req;

	if (conn->open > 0)
		conn->open--;
	req = nghttp2_session_get_stream_user_data(h2, stream_id);
	push_dispatch_later(conn->client);
	if (req == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
	conn_detach(conn, req);
	if (req->ended) {
		if (req->status < 500)
			conn->healthy = 1;
		push_req_finished(req, conn);
	} else if (error_code == NGHTTP2_REFUSED_STREAM) {
		push_req_refused(req);
	} else {
		push_log(conn->client, PUSH_LOG_INFO,
		    "%s: stream %d reset "
		    "with error %u",
		    conn->label, stream_id, error_code);
		push_req_lost(req, "StreamReset");
	}
	return 0;
}

/*
 * A request's HEADERS could not go out (GOAWAY came first). When no
 * stream was opened nghttp2 will not report a close, so re-send here.
 */
static int
conn_not_send_cb(
    nghttp2_session *h2, const nghttp2_frame *frame, int error_code, void *arg)
{
	struct push_conn *conn = arg;
	struct push_req *req;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id))
		return 0;
	TAILQ_FOREACH(req, &conn->flight, link)
	{
		if (req->stream_id == frame->hd.stream_id)
			break;
	}
	if (req == NULL)
		return 0;
	if (conn->open > 0)
		conn->open--;
	conn_detach(conn, req);
	push_req_refused(req);
	return 0;
}

/* Feed a request body to nghttp2; a detached stream is reset instead. */
static ssize_t
conn_body_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct push_req *req;
	size_t left;

	req = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (req == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	left = req->body_len - req->body_off;
	if (len > left)
		len = left;
	memcpy(buf, req->body + req->body_off, len);
	req->body_off += len;
	if (req->body_off == req->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)len;
}

/* Make the nghttp2 client session and queue our SETTINGS. */
static int
conn_session_new(struct push_conn *conn)
{
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 },
	};
	int rv = -1;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -1;
	nghttp2_session_callbacks_set_send_callback(cbs, conn_send_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(
	    cbs, conn_frame_recv_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, conn_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
	    cbs, conn_data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
	    cbs, conn_stream_close_cb);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(
	    cbs, conn_not_send_cb);
	if (nghttp2_session_client_new(&conn->h2, cbs, conn) != 0)
		goto out;
	if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv,
	        sizeof(iv) / sizeof(iv[0])) != 0)
		goto out;
	rv = 0;

out:
	nghttp2_session_callbacks_del(cbs);
	return rv;
}

/* Mark the connection dead; the teardown runs from the loop, not here. */
static void
conn_fail(struct push_conn *conn, const char *fmt, ...)
{
	va_list ap;

	if (conn->state == PUSH_CONN_IDLE || conn->state == PUSH_CONN_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(conn->why, sizeof(conn->why), fmt, ap);
	va_end(ap);
	conn->state = PUSH_CONN_CLOSING;
	if (conn->bev != NULL)
		bufferevent_disable(conn->bev, EV_READ | EV_WRITE);
	event_active(conn->close_ev, EV_TIMEOUT, 0);
}

/* Write what nghttp2 has; close once a finished session has nothing left. */
void
push_conn_flush(struct push_conn *conn)
{
	struct evbuffer *out;
	int rv;

	if (conn->state != PUSH_CONN_UP)
		return;
	rv = nghttp2_session_send(conn->h2);
	if (rv != 0) {
		conn_fail(conn, "send failed: %s", nghttp2_strerror(rv));
		return;
	}
	out = bufferevent_get_output(conn->bev);
	if ((conn->goaway || conn->draining) && conn->open == 0) {
		conn_fail(conn, "%s", conn->goaway ? "goaway" : "drained");
		return;
	}
	if (!nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2) &&
	    evbuffer_get_length(out) == 0)
		conn_fail(conn, "session over");
}

/* Bytes from the peer: hand them to nghttp2, then write what follows. */
static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct push_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	ssize_t rv;

	while (conn->state == PUSH_CONN_UP &&
	    evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
		rv = nghttp2_session_mem_recv(conn->h2, v.iov_base, v.iov_len);
		if (rv < 0) {
			conn_fail(conn, "protocol error: %s",
			    nghttp2_strerror((int)rv));
			break;
		}
		evbuffer_drain(in, v.iov_len);
	}
	if (conn->state != PUSH_CONN_UP) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	push_conn_flush(conn);
}

/* The socket drained: nghttp2 may have more to say. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	push_conn_flush(arg);
}

/* Why the TLS layer or the socket failed, as one short phrase. */
static void
conn_error_text(struct push_conn *conn, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(conn->bev);
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (vr != X509_V_OK) {
		snprintf(buf, len, "certificate: %s",
		    X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, len);
	} else if (errno != 0) {
		snprintf(buf, len, "%s", strerror(errno));
	} else {
		snprintf(buf, len, "error");
	}
	ERR_clear_error();
}

/* TLS is up: check ALPN, set TCP_NODELAY, start HTTP/2 and PINGs. */
static void
conn_connected(struct push_conn *conn)
{
	struct push_client *c = conn->client;
	SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	struct timeval tv;
	int one = 1;

	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
		conn_fail(conn, "peer did not choose h2");
		return;
	}
	if (setsockopt(bufferevent_getfd(conn->bev), IPPROTO_TCP, TCP_NODELAY,
	        &one, sizeof(one)) != 0)
		push_log(c, PUSH_LOG_WARN, "%s: cannot set TCP_NODELAY: %s",
		    conn->label, strerror(errno));
	bufferevent_set_timeouts(conn->bev, NULL, NULL);
	if (conn_session_new(conn) != 0) {
		conn_fail(conn, "cannot start an HTTP/2 session");
		return;
	}
	conn->state = PUSH_CONN_UP;
	conn->t_up = push_now_us();
	tv.tv_sec = c->ping_interval_ms / 1000;
	tv.tv_usec = (c->ping_interval_ms % 1000) * 1000;
	event_add(conn->ping_ev, &tv);
	push_log(c, PUSH_LOG_INFO, "%s: connected to %s", conn->label,
	    conn->ep->authority);
	push_conn_flush(conn);
	push_dispatch_later(c);
}

/* Connected, closed, failed or timed out. */
static void
conn_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct push_conn *conn = arg;
	char text[160];

	if (events & BEV_EVENT_CONNECTED) {
		if (conn->state == PUSH_CONN_CONNECTING)
			conn_connected(conn);
		return;
	}
	if (events & BEV_EVENT_TIMEOUT) {
		conn_fail(conn, "connect timed out");
	} else if (events & BEV_EVENT_EOF) {
		conn_fail(conn, "closed by peer");
	} else if (events & BEV_EVENT_ERROR) {
		if (bufferevent_socket_get_dns_error(bev) != 0)
			snprintf(text, sizeof(text), "cannot resolve %s: %s",
			    conn->ep->host,
			    evutil_gai_strerror(
			        bufferevent_socket_get_dns_error(bev)));
		else
			conn_error_text(conn, text, sizeof(text));
		conn_fail(conn, "%s", text);
	}
}

/* Time to PING: always while streams are open, twice when idle. */
static void
conn_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_conn *conn = arg;
	struct push_client *c = conn->client;
	struct timeval tv;

	if (conn->state != PUSH_CONN_UP || conn->ping_out)
		return;
	if (conn->open == 0 && conn->idle_pings >= CONN_IDLE_PINGS)
		return;
	if (conn->open == 0)
		conn->idle_pings++;
	if (nghttp2_submit_ping(conn->h2, NGHTTP2_FLAG_NONE, NULL) != 0) {
		conn_fail(conn, "cannot send a ping");
		return;
	}
	conn->ping_out = 1;
	tv.tv_sec = c->ping_timeout_ms / 1000;
	tv.tv_usec = (c->ping_timeout_ms % 1000) * 1000;
	event_add(conn->ping_to_ev, &tv);
	push_conn_flush(conn);
}

/* No PING ACK in time: the peer or the path is dead. */
static void
conn_ping_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_conn *conn = arg;

	conn_fail(
	    conn, "no ping ack within %u ms", conn->client->ping_timeout_ms);
}

/* The back-off ended: let the client decide whether to connect. */
static void
conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_conn *conn = arg;

	push_dispatch_later(conn->client);
}

/*
 * Tear down session and socket. Streams still in flight go back to
 * push.c (re-sent or reported); the next attempt waits for a back-off.
 */
static void
conn_teardown(struct push_conn *conn)
{
	struct push_client *c = conn->client;
	struct push_req_list lost;
	struct push_req *req;
	uint64_t now = push_now_us();
	int was_up = conn->h2 != NULL;

	push_log(c, was_up ? PUSH_LOG_INFO : PUSH_LOG_WARN, "%s: closed: %s",
	    conn->label, conn->why[0] ? conn->why : "closed");
	event_del(conn->ping_ev);
	event_del(conn->ping_to_ev);
	event_del(conn->close_ev);

	TAILQ_INIT(&lost);
	while ((req = TAILQ_FIRST(&conn->flight)) != NULL) {
		conn_detach(conn, req);
		TAILQ_INSERT_TAIL(&lost, req, link);
	}
	nghttp2_session_del(conn->h2);
	conn->h2 = NULL;
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	conn->bev = NULL;

	if (conn->healthy && now - conn->t_up >= CONN_HEALTHY_US)
		conn->fails = 0;
	else
		conn->fails++;
	conn->next_try = now + 1000ull * conn_backoff_ms(conn->fails);
	if (was_up && conn->pooled)
		c->stats.reconnects++;
	conn->state = PUSH_CONN_IDLE;
	conn->open = 0;
	conn->got_settings = conn->goaway = conn->draining = 0;
	conn->healthy = conn->ping_out = 0;
	conn->idle_pings = 0;

	while ((req = TAILQ_FIRST(&lost)) != NULL) {
		TAILQ_REMOVE(&lost, req, link);
		push_req_lost(req, "ConnectionLost");
	}
	push_dispatch_later(c);
}

/* The deferred close of conn_fail. */
static void
conn_close_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_teardown(arg);
}

/* A connection slot, idle until push_conn_start; label names it in logs. */
struct push_conn *
push_conn_new(
    struct push_client *c, const struct push_endpoint *ep, const char *label)
{
	struct push_conn *conn;

	conn = calloc(1, sizeof(*conn));
	if (conn == NULL)
		return NULL;
	conn->client = c;
	conn->ep = ep;
	snprintf(conn->label, sizeof(conn->label), "%s %s %u", c->name, label,
	    ++c->next_conn_id);
	conn->pooled = strcmp(label, "conn") == 0;
	TAILQ_INIT(&conn->flight);
	conn->ping_ev = event_new(c->base, -1, EV_PERSIST, conn_ping_cb, conn);
	conn->ping_to_ev = evtimer_new(c->base, conn_ping_timeout_cb, conn);
	conn->retry_ev = evtimer_new(c->base, conn_retry_cb, conn);
	conn->close_ev = event_new(c->base, -1, 0, conn_close_cb, conn);
	if (conn->ping_ev == NULL || conn->ping_to_ev == NULL ||
	    conn->retry_ev == NULL || conn->close_ev == NULL) {
		push_conn_free(conn);
		return NULL;
	}
	return conn;
}

/* Start connecting unless one is under way or the back-off holds. */
void
push_conn_start(struct push_conn *conn)
{
	struct push_client *c = conn->client;
	const struct push_endpoint *ep = conn->ep;
	struct timeval tv;
	uint64_t now = push_now_us();
	SSL *ssl;

	if (conn->state != PUSH_CONN_IDLE)
		return;
	if (now < conn->next_try) {
		if (!evtimer_pending(conn->retry_ev, NULL)) {
			tv.tv_sec = (conn->next_try - now) / 1000000;
			tv.tv_usec = (conn->next_try - now) % 1000000;
			evtimer_add(conn->retry_ev, &tv);
		}
		return;
	}
	if (!ep->numeric && c->dns == NULL) {
		c->dns = evdns_base_new(c->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS |
		        EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (c->dns == NULL) {
			push_log(c, PUSH_LOG_ERROR, "%s: no DNS resolver",
			    conn->label);
			conn->next_try = now + 1000ull * BACKOFF_MAX_MS;
			return;
		}
	}

	conn->why[0] = '\0';
	ssl = conn_ssl_new(conn);
	if (ssl == NULL)
		goto fail;
	conn->bev = bufferevent_openssl_socket_new(c->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (conn->bev == NULL) {
		SSL_free(ssl);
		goto fail;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(conn->bev, 1);
	bufferevent_setcb(
	    conn->bev, conn_read_cb, conn_write_cb, conn_event_cb, conn);
	tv.tv_sec = c->request_timeout_ms / 1000;
	tv.tv_usec = (c->request_timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(conn->bev, &tv, &tv);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	conn->state = PUSH_CONN_CONNECTING;
	c->stats.connects++;
	push_log(c, PUSH_LOG_DEBUG, "%s: connecting to %s", conn->label,
	    ep->authority);
	if (bufferevent_socket_connect_hostname(conn->bev,
	        ep->numeric ? NULL : c->dns, AF_UNSPEC, ep->host,
	        (int)ep->port) != 0)
		conn_fail(conn, "cannot connect to %s", ep->authority);
	return;

fail:
	ERR_clear_error();
	push_log(c, PUSH_LOG_ERROR, "%s: cannot set up TLS", conn->label);
	conn->fails++;
	conn->next_try = now + 1000ull * conn_backoff_ms(conn->fails);
}

/* Close at once (streams go back to push.c) and free; accepts NULL. */
void
push_conn_free(struct push_conn *conn)
{
	if (conn == NULL)
		return;
	if (conn->state != PUSH_CONN_IDLE) {
		if (conn->state != PUSH_CONN_CLOSING)
			snprintf(conn->why, sizeof(conn->why), "client closed");
		conn_teardown(conn);
	}
	if (conn->ping_ev != NULL)
		event_free(conn->ping_ev);
	if (conn->ping_to_ev != NULL)
		event_free(conn->ping_to_ev);
	if (conn->retry_ev != NULL)
		event_free(conn->retry_ev);
	if (conn->close_ev != NULL)
		event_free(conn->close_ev);
	free(conn);
}

/* Where the connection is in its life. */
enum push_conn_state
push_conn_state(const struct push_conn *conn)
{
	return conn->state;
}

/*
 * Streams the peer lets us open at once: 1 until its first SETTINGS,
 * then its MAX_CONCURRENT_STREAMS as it stands now.
 */
unsigned
push_conn_limit(const struct push_conn *conn)
{
	uint32_t v;

	if (conn->h2 == NULL || !conn->got_settings)
		return 1;
	v = nghttp2_session_get_remote_settings(
	    conn->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	return v > CONN_LIMIT_MAX ? CONN_LIMIT_MAX : v;
}

/* Streams open now (including ones we reset and wait to see closed). */
unsigned
push_conn_open(const struct push_conn *conn)
{
	return conn->open;
}

/* True when a new stream may be opened now. */
int
push_conn_usable(const struct push_conn *conn)
{
	return conn->state == PUSH_CONN_UP && !conn->goaway &&
	    !conn->draining && conn->open < push_conn_limit(conn);
}

/* Earliest start of the next attempt (monotonic microseconds). */
uint64_t
push_conn_next_try(const struct push_conn *conn)
{
	return conn->next_try;
}

/* Requests on this connection's streams now. */
unsigned
push_conn_flight(const struct push_conn *conn)
{
	const struct push_req *req;
	unsigned n = 0;

	TAILQ_FOREACH(req, &conn->flight, link)
	{
		if (req->kind == PUSH_REQ_NOTE)
			n++;
	}
	return n;
}

/*
 * Open a stream for req: POST with its path, headers and body, plus the
 * authorization value when auth is not NULL. Returns 0 or -1.
 */
int
push_conn_send(struct push_conn *conn, struct push_req *req, const char *auth)
{
	nghttp2_nv nva[4 + 1 + PUSH_HDR_MAX];
	nghttp2_data_provider prd;
	size_t n = 0;
	int32_t sid;
	int i;

#define NV(k, v) \
	do { \
		nva[n].name = (uint8_t *)(k); \
		nva[n].namelen = strlen(k); \
		nva[n].value = (uint8_t *)(v); \
		nva[n].valuelen = strlen(v); \
		nva[n].flags = NGHTTP2_NV_FLAG_NONE; \
		n++; \
	} while (0)

	NV(":method", "POST");
	NV(":scheme", "https");
	NV(":authority", conn->ep->authority);
	NV(":path", req->path);
	/*
	 * The token is indexed by HPACK like any header: it is the same on
	 * every stream for minutes, and no peer-influenced header shares the
	 * connection's compression context with it.
	 */
	if (auth != NULL)
		NV("authorization", auth);
	for (i = 0; i < req->nhdrs; i++)
		NV(req->hdrs[i].name, req->hdrs[i].value);
#undef NV

	prd.source.ptr = req;
	prd.read_callback = conn_body_cb;
	req->body_off = 0;
	sid = nghttp2_submit_request(
	    conn->h2, NULL, nva, n, req->body != NULL ? &prd : NULL, req);
	if (sid < 0) {
		push_log(conn->client, PUSH_LOG_WARN,
		    "%s: cannot open a "
		    "stream: %s",
		    conn->label, nghttp2_strerror(sid));
		return -1;
	}
	req->stream_id = sid;
	req->conn = conn;
	req->where = PUSH_REQ_FLIGHT;
	TAILQ_INSERT_TAIL(&conn->flight, req, link);
	conn->open++;
	conn->idle_pings = 0;
	return 0;
}

/* Give up on req's stream: reset it and forget the request. */
void
push_conn_cancel(struct push_conn *conn, struct push_req *req)
{
	conn_detach(conn, req);
	if (conn->h2 == NULL)
		return;
	nghttp2_session_set_stream_user_data(conn->h2, req->stream_id, NULL);
	nghttp2_submit_rst_stream(
	    conn->h2, NGHTTP2_FLAG_NONE, req->stream_id, NGHTTP2_CANCEL);
	push_conn_flush(conn);
}

/* Open no new stream here; close once the open ones are answered. */
void
push_conn_drain(struct push_conn *conn, const char *why)
{
	if (conn->state != PUSH_CONN_UP || conn->draining)
		return;
	conn->draining = 1;
	push_log(
	    conn->client, PUSH_LOG_INFO, "%s: draining: %s", conn->label, why);
	nghttp2_submit_goaway(
	    conn->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
}

/* Close now for a reason (the teardown still runs from the loop). */
void
push_conn_abort(struct push_conn *conn, const char *why)
{
	conn_fail(conn, "%s", why);
}
