/*
 * The audit trail over HTTP: a filtered, paged list; a streamed export
 * as NDJSON or CSV that never holds the whole trail in memory; and a
 * check of the hash chain.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "log.h"
#include "util.h"

/* Rows fetched per round trip while exporting. */
#define EXPORT_PAGE "1000"
#define EXPORT_PAGE_ROWS 1000
/* Pause the export while this much waits for the client. */
#define EXPORT_HIGH_WATER (256 * 1024)

/* Columns: JSON, seq, then the CSV fields after seq. */
static const char sql_event_list[] =
    "SELECT event_json(e)::text, e.seq, e.id, e.type, rfc3339(e.at),"
    " e.actor_type, e.actor_id, e.subject_type, e.subject_id,"
    " e.data::text, e.prev_hash, e.hash"
    " FROM events e WHERE e.msp_id = $1"
    " AND ($2::text IS NULL OR e.type = $2)"
    " AND ($3::uuid IS NULL OR (e.subject_type = 'user'"
    "  AND e.subject_id = $3::uuid))"
    " AND ($4::timestamptz IS NULL OR e.at >= $4::timestamptz)"
    " AND ($5::timestamptz IS NULL OR e.at < $5::timestamptz)"
    " AND ($6::bigint IS NULL OR e.seq > $6::bigint)"
    " ORDER BY e.seq LIMIT $7";

static const char sql_event_verify[] =
    "SELECT CASE WHEN v.intact"
    " THEN json_build_object('intact', true, 'last_seq', v.last_seq)"
    " ELSE json_build_object('intact', false, 'broken_at', v.broken_at)"
    " END::text FROM audit_verify($1) v";

static const char csv_header[] =
    "seq,id,type,at,actor_type,actor_id,"
    "subject_type,subject_id,data,prev_hash,hash\r\n";

/* The filters of a list or export, checked. */
struct event_filter {
	const char *type;
	const char *user_id;
	const char *since;
	const char *until;
};

/* An export in progress. */
struct event_export {
	struct http_req *req;
	char msp_id[UTIL_UUID_LEN + 1];
	char *type, *user_id, *since, *until;
	char after_seq[24];
	bool csv;
	bool started; /* the 200 and headers have gone out */
	bool client_gone;
};

/* Read and check the filter query parameters; -1 after a 422. */
static int
event_filter_parse(struct http_req *req, struct event_filter *f)
{
	f->type = http_req_query(req, "type");
	f->user_id = http_req_query(req, "user_id");
	f->since = http_req_query(req, "since");
	f->until = http_req_query(req, "until");

	if (f->type != NULL && !util_utf8_length_ok(f->type, 1, 100))
		return api_invalid(req, "type", "must be an event type");
	if (f->user_id != NULL && !util_uuid_valid(f->user_id))
		return api_invalid(req, "user_id", "must be a UUID");
	if (f->since != NULL && !util_rfc3339_valid(f->since))
		return api_invalid(req, "since",
		    "must be an RFC 3339 time such as 2026-12-03T15:04:05Z");
	if (f->until != NULL && !util_rfc3339_valid(f->until))
		return api_invalid(req, "until",
		    "must be an RFC 3339 time such as 2026-12-03T15:04:05Z");
	return 0;
}

/* The list itself, once the filters are known to be fine. */
static void
event_list_run(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	struct event_filter f;
	struct api_page page;
	const char *params[7];

	if (event_filter_parse(req, &f) < 0 ||
	    api_page_parse(req, API_CURSOR_SEQ, &page) < 0)
		return;

	params[0] = who->msp_id;
	params[1] = f.type;
	params[2] = f.user_id;
	params[3] = f.since;
	params[4] = f.until;
	params[5] = page.after_a;
	params[6] = page.limit_plus_one;
	api_query_list(
	    req, sql_event_list, 7, params, page.limit, API_CURSOR_SEQ);
}

/* GET /v1/events?type=&user_id=&since=&until=&limit=&cursor= */
void
api_events_list(struct http_req *req)
{
	struct event_filter f;
	struct api_page page;

	if (event_filter_parse(req, &f) < 0 ||
	    api_page_parse(req, API_CURSOR_SEQ, &page) < 0)
		return;
	api_check_user_filter(req, event_list_run);
}

/* GET /v1/events/verify */
void
api_events_verify(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *params[1] = { who->msp_id };

	api_query_object(
	    req, sql_event_verify, 1, params, 200, "no audit trail");
}

/* Append one CSV field, quoted when it needs to be. */
static void
csv_field(struct evbuffer *out, const char *v, bool last)
{
	const char *p;

	if (strpbrk(v, ",\"\r\n") == NULL) {
		evbuffer_add(out, v, strlen(v));
	} else {
		evbuffer_add(out, "\"", 1);
		for (p = v; *p != '\0'; p++) {
			if (*p == '"')
				evbuffer_add(out, "\"", 1);
			evbuffer_add(out, p, 1);
		}
		evbuffer_add(out, "\"", 1);
	}
	evbuffer_add(out, last ? "\r\n" : ",", last ? 2 : 1);
}

/* Render one page of rows in the export's format. */
static void
event_export_rows(struct event_export *x, PGresult *res, struct evbuffer *out)
{
	int rows = PQntuples(res), fields = PQnfields(res), i, c;

	for (i = 0; i < rows; i++) {
		if (!x->csv) {
			evbuffer_add(out, PQgetvalue(res, i, 0),
			    (size_t)PQgetlength(res, i, 0));
			evbuffer_add(out, "\n", 1);
			continue;
		}
		for (c = 1; c < fields; c++)
			csv_field(out, PQgetvalue(res, i, c), c == fields - 1);
	}
}

static void event_export_next(struct event_export *x);

/* The first page is in: send the status and headers. */
static void
event_export_start(struct event_export *x)
{
	x->started = true;
	http_stream_start(x->req, 200,
	    x->csv ? "text/csv; charset=utf-8" : "application/x-ndjson");
	if (x->csv)
		http_stream_write(x->req, csv_header, sizeof(csv_header) - 1);
}

/* Free an export and everything it copied. */
static void
event_export_free(struct event_export *x)
{
	free(x->type);
	free(x->user_id);
	free(x->since);
	free(x->until);
	free(x);
}

/* End the request however far it got, and free the export. */
static void
event_export_finish(struct event_export *x)
{
	if (x->started)
		http_stream_end(x->req);
	else
		http_reply_problem(
		    x->req, 500, "internal", NULL, "out of memory");
	event_export_free(x);
}

/* The client went away: stop at the next step. */
static void
event_export_closed_cb(void *arg)
{
	struct event_export *x = arg;

	x->client_gone = true;
}

/* The client caught up: fetch the next page. */
static void
event_export_drained_cb(void *arg)
{
	event_export_next(arg);
}

/* A page arrived: write it, then continue, pause or finish. */
static void
event_export_page_cb(struct db_result *r, void *arg)
{
	struct event_export *x = arg;
	struct evbuffer *out;
	PGresult *res;
	int rows;

	if (!x->started && r->status != 0) {
		api_reply_db_error(x->req, r);
		event_export_free(x);
		return;
	}
	if (r->status != 0 || x->client_gone) {
		if (r->status != 0)
			log_warn("api", "req %s: export stopped: %s",
			    http_req_id(x->req), r->error);
		event_export_finish(x);
		return;
	}

	if (!x->started)
		event_export_start(x);
	res = r->res[0];
	rows = PQntuples(res);
	out = evbuffer_new();
	if (out != NULL) {
		event_export_rows(x, res, out);
		http_stream_write(
		    x->req, evbuffer_pullup(out, -1), evbuffer_get_length(out));
		evbuffer_free(out);
	}
	if (rows < EXPORT_PAGE_ROWS || out == NULL) {
		event_export_finish(x);
		return;
	}

	snprintf(x->after_seq, sizeof(x->after_seq), "%s",
	    PQgetvalue(res, rows - 1, 1));
	if (http_stream_pending(x->req) > EXPORT_HIGH_WATER)
		http_stream_on_drain(x->req, event_export_drained_cb, x);
	else
		event_export_next(x);
}

/* Ask for the page after the last seq written. */
static void
event_export_next(struct event_export *x)
{
	const char *params[7];

	if (x->client_gone) {
		event_export_finish(x);
		return;
	}
	params[0] = x->msp_id;
	params[1] = x->type;
	params[2] = x->user_id;
	params[3] = x->since;
	params[4] = x->until;
	params[5] = x->after_seq[0] != '\0' ? x->after_seq : NULL;
	params[6] = EXPORT_PAGE;
	if (db_query(app.db, sql_event_list, 7, params, event_export_page_cb,
	        x) != 0)
		event_export_finish(x);
}

/* Copy a filter value, keeping NULL. */
static char *
dup_or_null(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

/* Start an export whose filters were checked. */
static void
event_export_run(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *format = http_req_query(req, "format");
	struct event_filter f;
	struct event_export *x;

	if (event_filter_parse(req, &f) < 0)
		return;

	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	x->req = req;
	x->csv = format != NULL && strcmp(format, "csv") == 0;
	memcpy(x->msp_id, who->msp_id, sizeof(x->msp_id));
	x->type = dup_or_null(f.type);
	x->user_id = dup_or_null(f.user_id);
	x->since = dup_or_null(f.since);
	x->until = dup_or_null(f.until);

	http_req_on_close(req, event_export_closed_cb, x);
	event_export_next(x);
}

/* GET /v1/events/export?format=ndjson|csv&type=&user_id=&since=&until= */
void
api_events_export(struct http_req *req)
{
	const char *format = http_req_query(req, "format");
	struct event_filter f;

	if (format != NULL && strcmp(format, "ndjson") != 0 &&
	    strcmp(format, "csv") != 0) {
		api_invalid(req, "format", "must be \"ndjson\" or \"csv\"");
		return;
	}
	if (event_filter_parse(req, &f) < 0)
		return;
	api_check_user_filter(req, event_export_run);
}
