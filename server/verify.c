/*
 * Verification watchers and expiry. A watcher is an SSE stream kept in a
 * list per process; NOTIFY payloads carry "<msp> <version> <json>", and
 * a watcher sends a state only when its version is newer than the last
 * it sent, so states arrive in order and never twice. After the LISTEN
 * connection was lost, every watcher re-reads its verification.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "api.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "util.h"
#include "verify.h"

#define EXPIRY_POLL_MS 500

static const char sql_state[] =
    "SELECT v.version, verification_json(v)::text FROM verifications v"
    " WHERE v.msp_id = $1 AND v.id = $2";

static const char sql_expire[] = "SELECT verification_expire_due()";

/* One open event stream. */
struct verify_watcher {
	struct verify_watcher *next;
	struct verify *v;
	struct http_req *req;
	char msp_id[UTIL_UUID_LEN + 1];
	char id[UTIL_UUID_LEN + 1];
	long version; /* last sent; 0 before the first */
	bool started; /* the stream's headers went out */
	bool gone;    /* the client left or the stream ended */
	int reads;    /* state queries in flight */
};

struct verify {
	struct event_base *base;
	struct db *db;
	struct event *expiry_timer;
	bool expiring;
	struct verify_watcher *watchers;
};

/* True for the final statuses. */
int
verify_status_final(const char *status)
{
	return strcmp(status, "pending") != 0 && strcmp(status, "sent") != 0;
}

/* Create the watcher registry. */
struct verify *
verify_new(struct event_base *base, struct db *db)
{
	struct verify *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->base = base;
	v->db = db;
	return v;
}

/* Unlink and free a watcher once nothing refers to it any more. */
static void
watcher_release(struct verify_watcher *w)
{
	struct verify_watcher **pp;

	if (w->reads > 0)
		return;
	for (pp = &w->v->watchers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	free(w);
}

/* End a watcher's stream (once) and release it. */
static void
watcher_end(struct verify_watcher *w)
{
	if (!w->gone) {
		w->gone = true;
		if (w->started)
			http_stream_end(w->req);
		else
			http_reply_problem(w->req, 404, "not_found", NULL,
			    "no such verification");
	}
	watcher_release(w);
}

/* The client went away: end at once (http still needs the end call). */
static void
watcher_closed_cb(void *arg)
{
	struct verify_watcher *w = arg;

	watcher_end(w);
}

/* Send a state if it is newer than the last one sent. */
static void
watcher_offer(struct verify_watcher *w, long version, const char *json)
{
	json_t *doc;
	const char *status;

	if (w->gone || version <= w->version)
		return;
	if (!w->started) {
		http_sse_start(w->req);
		w->started = true;
	}
	w->version = version;
	if (http_sse_send(w->req, "status", json) != 0) {
		watcher_end(w);
		return;
	}

	doc = json_loads(json, 0, NULL);
	status = json_string_value(json_object_get(doc, "status"));
	if (status != NULL && verify_status_final(status))
		watcher_end(w);
	json_decref(doc);
}

/* The current state of a watcher's verification arrived. */
static void
watcher_read_cb(struct db_result *r, void *arg)
{
	struct verify_watcher *w = arg;

	w->reads--;
	if (w->gone) {
		watcher_release(w);
		return;
	}
	if (r->status != 0) {
		if (!w->started) {
			w->gone = true;
			api_reply_db_error(w->req, r);
			watcher_release(w);
		}
		return;
	}
	if (PQntuples(r->res[0]) == 0) {
		watcher_end(w);
		return;
	}
	watcher_offer(
	    w, atol(PQgetvalue(r->res[0], 0, 0)), PQgetvalue(r->res[0], 0, 1));
}

/* Read a watcher's verification from the database. */
static void
watcher_read(struct verify_watcher *w)
{
	const char *params[2] = { w->msp_id, w->id };

	if (db_query(w->v->db, sql_state, 2, params, watcher_read_cb, w) == 0)
		w->reads++;
}

/* Register a stream for a verification and send its current state. */
void
verify_watch(
    struct verify *v, struct http_req *req, const char *msp_id, const char *id)
{
	struct verify_watcher *w = calloc(1, sizeof(*w));

	if (w == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	w->v = v;
	w->req = req;
	snprintf(w->msp_id, sizeof(w->msp_id), "%s", msp_id);
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->next = v->watchers;
	v->watchers = w;
	http_req_on_close(req, watcher_closed_cb, w);
	watcher_read(w);
}

/* A change was committed somewhere; NULL payload: we may have missed
   some, so every watcher re-reads. */
static void
verify_notify_cb(const char *channel, const char *payload, void *arg)
{
	struct verify *v = arg;
	struct verify_watcher *w, *next;
	const char *json, *idp;
	char msp_id[UTIL_UUID_LEN + 1];
	long version;

	if (payload == NULL) {
		for (w = v->watchers; w != NULL; w = w->next)
			if (!w->gone)
				watcher_read(w);
		return;
	}

	if (strlen(payload) < UTIL_UUID_LEN + 2)
		return;
	snprintf(msp_id, sizeof(msp_id), "%.*s", UTIL_UUID_LEN, payload);
	version = strtol(payload + UTIL_UUID_LEN + 1, (char **)&json, 10);
	if (*json != ' ')
		return;
	json++;
	idp = strstr(json, "\"id\": \"");
	if (idp == NULL)
		return;
	idp += 7;

	for (w = v->watchers; w != NULL; w = next) {
		next = w->next;
		if (strcmp(w->msp_id, msp_id) == 0 &&
		    strncmp(w->id, idp, UTIL_UUID_LEN) == 0)
			watcher_offer(w, version, json);
	}
}

/* The expiry statement finished. */
static void
verify_expired_cb(struct db_result *r, void *arg)
{
	struct verify *v = arg;

	v->expiring = false;
	if (r->status == 0 && atoi(PQgetvalue(r->res[0], 0, 0)) > 0)
		log_info("verify", "%s verifications expired",
		    PQgetvalue(r->res[0], 0, 0));
}

/* Timer: expire what is due (any process may; SKIP LOCKED shares). */
static void
verify_expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct verify *v = arg;

	if (v->expiring || !db_ready(v->db))
		return;
	if (db_query(v->db, sql_expire, 0, NULL, verify_expired_cb, v) == 0)
		v->expiring = true;
}

/* Start the expiry timer and the LISTEN subscription. */
int
verify_start(struct verify *v)
{
	struct timeval tv = { 0, EXPIRY_POLL_MS * 1000 };

	v->expiry_timer =
	    event_new(v->base, -1, EV_PERSIST, verify_expiry_cb, v);
	if (v->expiry_timer == NULL || event_add(v->expiry_timer, &tv) != 0)
		return -1;
	return db_listen(v->db, "vouch_verification", verify_notify_cb, v);
}

/* End every stream and free. */
void
verify_free(struct verify *v)
{
	if (v == NULL)
		return;
	while (v->watchers != NULL) {
		v->watchers->reads = 0;
		watcher_end(v->watchers);
	}
	if (v->expiry_timer != NULL)
		event_free(v->expiry_timer);
	free(v);
}
