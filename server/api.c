/*
 * The shared part of the route handlers: body field checks that answer
 * 422 naming the field, paging, database failure mapping, and the common
 * query shapes whose JSON comes straight from PostgreSQL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "log.h"
#include "util.h"

/* A query waiting on the database for a handler. */
struct api_pending {
	struct http_req *req;
	int ok_status;
	int limit;
	enum api_cursor_kind kind;
	const char *not_found;
	const char *field;
};

/* Reply 422 naming the field. */
int
api_invalid(struct http_req *req, const char *field, const char *detail)
{
	http_reply_problem(
	    req, 422, "validation_failed", field, "%s: %s", field, detail);
	return -1;
}

/* The caller set by auth_check. */
const struct auth_who *
api_who(struct http_req *req)
{
	return http_req_ctx(req);
}

/* Look up a body field; 0 absent, 1 present, -1 after a 422. */
static int
api_field_get(struct http_req *req, const char *name, int flags, json_t **out)
{
	json_t *v = json_object_get(http_req_json(req), name);

	*out = NULL;
	if (v == NULL) {
		if (flags & API_REQUIRED)
			return api_invalid(req, name, "is required");
		return 0;
	}
	if (json_is_null(v)) {
		if (!(flags & API_NULLABLE))
			return api_invalid(req, name, "must not be null");
		return 1;
	}
	*out = v;
	return 1;
}

/* A string field with a length in code points. */
int
api_field_string(struct http_req *req, const char *name, int flags,
    size_t min_chars, size_t max_chars, const char **out)
{
	json_t *v;
	char detail[96];
	int rc;

	*out = NULL;
	rc = api_field_get(req, name, flags, &v);
	if (rc <= 0 || v == NULL)
		return rc;

	if (!json_is_string(v))
		return api_invalid(req, name, "must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return api_invalid(req, name, "must not contain NUL");
	if (!((flags & API_MULTILINE) ? util_utf8_text_ok
	                              : util_utf8_length_ok)(
	        json_string_value(v), min_chars, max_chars)) {
		snprintf(detail, sizeof(detail),
		    "must be %zu to %zu "
		    "characters without control characters",
		    min_chars, max_chars);
		return api_invalid(req, name, detail);
	}
	*out = json_string_value(v);
	return 1;
}

/* A string field limited to a fixed set of values. */
int
api_field_enum(struct http_req *req, const char *name, int flags,
    const char *const *allowed, const char **out)
{
	char detail[160];
	size_t i, used = 0;
	int rc;

	rc = api_field_string(req, name, flags, 1, 64, out);
	if (rc <= 0 || *out == NULL)
		return rc;

	for (i = 0; allowed[i] != NULL; i++)
		if (strcmp(*out, allowed[i]) == 0)
			return 1;

	used = (size_t)snprintf(detail, sizeof(detail), "must be one of");
	for (i = 0; allowed[i] != NULL && used < sizeof(detail); i++)
		used += (size_t)snprintf(detail + used, sizeof(detail) - used,
		    "%s \"%s\"", i == 0 ? "" : ",", allowed[i]);
	*out = NULL;
	return api_invalid(req, name, detail);
}

/*
 * A state function raised a V0 SQLSTATE: its message is for the client.
 * For V0422 the message starts with the field's name and a colon.
 */
static void
api_reply_raised(struct http_req *req, const char *state, const char *msg)
{
	char field[64];
	size_t n;

	if (strcmp(state, "V0401") == 0) {
		http_reply_problem(req, 401, "unauthorized", NULL, "%s", msg);
	} else if (strcmp(state, "V0404") == 0) {
		http_reply_problem(req, 404, "not_found", NULL, "%s", msg);
	} else if (strcmp(state, "V0409") == 0) {
		http_reply_problem(req, 409, "conflict", NULL, "%s", msg);
	} else if (strcmp(state, "V0429") == 0) {
		http_reply_header(req, "Retry-After", "60");
		http_reply_problem(req, 429, "rate_limited", NULL, "%s", msg);
	} else {
		n = strcspn(msg, ":");
		snprintf(field, sizeof(field), "%.*s", (int)n, msg);
		http_reply_problem(req, 422, "validation_failed",
		    msg[n] == ':' ? field : NULL, "%s", msg);
	}
}

/* Map a failed query to the reply a client should see. */
void
api_reply_db_error(struct http_req *req, const struct db_result *r)
{
	const char *state = r->sqlstate;

	if (state == NULL || strcmp(state, "57014") == 0 ||
	    strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0) {
		log_warn("db", "req %s: database unavailable: %s",
		    http_req_id(req), r->error ? r->error : "?");
		http_reply_problem(req, 503, "unavailable", NULL,
		    "the database is unavailable; retry shortly");
		return;
	}
	if (strncmp(state, "V0", 2) == 0) {
		api_reply_raised(req, state, r->error ? r->error : "");
		return;
	}
	if (strcmp(state, "23505") == 0) {
		http_reply_problem(req, 409, "conflict", NULL,
		    "an object with these values exists already");
		return;
	}

	log_error("db", "req %s: query failed (%s): %s", http_req_id(req),
	    state, r->error ? r->error : "?");
	http_reply_problem(req, 500, "internal", NULL,
	    "the request failed; see request id %s", http_req_id(req));
}

/* Decode a time-and-id cursor "<rfc3339>,<uuid>" in place. */
static int
api_cursor_time_id(struct api_page *page)
{
	char *comma = strchr(page->cursor, ',');

	if (comma == NULL)
		return -1;
	*comma = '\0';
	if (!util_rfc3339_valid(page->cursor) || !util_uuid_valid(comma + 1))
		return -1;
	page->after_a = page->cursor;
	page->after_b = comma + 1;
	return 0;
}

/* Decode a sequence-number cursor. */
static int
api_cursor_seq(struct api_page *page)
{
	char *end;
	long long seq;

	errno = 0;
	seq = strtoll(page->cursor, &end, 10);
	if (errno != 0 || *end != '\0' || end == page->cursor || seq < 0)
		return -1;
	page->after_a = page->cursor;
	return 0;
}

/* Parse limit and cursor query parameters. */
int
api_page_parse(
    struct http_req *req, enum api_cursor_kind kind, struct api_page *page)
{
	const char *limit = http_req_query(req, "limit");
	const char *cursor = http_req_query(req, "cursor");
	char *end;
	long n = 50;
	long len;

	memset(page, 0, sizeof(*page));
	if (limit != NULL) {
		errno = 0;
		n = strtol(limit, &end, 10);
		if (errno != 0 || *end != '\0' || end == limit || n < 1 ||
		    n > 500)
			return api_invalid(
			    req, "limit", "must be an integer from 1 to 500");
	}
	page->limit = (int)n;
	snprintf(
	    page->limit_plus_one, sizeof(page->limit_plus_one), "%ld", n + 1);

	if (cursor == NULL || cursor[0] == '\0')
		return 0;
	len = util_b64url_decode(cursor, strlen(cursor),
	    (uint8_t *)page->cursor, sizeof(page->cursor) - 1);
	if (len < 0)
		return api_invalid(req, "cursor", "is not a valid cursor");
	page->cursor[len] = '\0';
	if (strlen(page->cursor) != (size_t)len ||
	    (kind == API_CURSOR_TIME_ID ? api_cursor_time_id(page)
	                                : api_cursor_seq(page)) != 0)
		return api_invalid(req, "cursor", "is not a valid cursor");
	return 0;
}

/* True (after replying 404) when a path id is not a UUID. */
bool
api_bad_id(struct http_req *req, const char *id, const char *what)
{
	if (util_uuid_valid(id))
		return false;
	http_reply_problem(req, 404, "not_found", NULL, "no such %s", what);
	return true;
}

/* Start a query for a handler with the given completion. */
static void
api_pending_run(struct http_req *req, const char *sql, int nparams,
    const char *const *params, struct api_pending *p, db_done_cb cb)
{
	if (db_query(app.db, sql, nparams, params, cb, p) != 0) {
		free(p);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* A single-object query finished. */
static void
api_object_done_cb(struct db_result *r, void *arg)
{
	struct api_pending *p = arg;
	PGresult *res;

	if (r->status != 0) {
		api_reply_db_error(p->req, r);
		goto out;
	}
	res = r->res[0];
	if (PQntuples(res) == 0) {
		http_reply_problem(
		    p->req, 404, "not_found", p->field, "%s", p->not_found);
		goto out;
	}
	http_reply_body(p->req, p->ok_status, "application/json",
	    PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
out:
	free(p);
}

/* Run a query whose one row is the JSON answer. */
void
api_query_object(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int ok_status, const char *not_found)
{
	api_query_object_field(
	    req, sql, nparams, params, ok_status, not_found, NULL);
}

/* The same, with the field a 404 names. */
void
api_query_object_field(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int ok_status, const char *not_found,
    const char *field)
{
	struct api_pending *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	p->req = req;
	p->ok_status = ok_status;
	p->not_found = not_found;
	p->field = field;
	api_pending_run(req, sql, nparams, params, p, api_object_done_cb);
}

/* The cursor of a row: its column 1 (and 2 for time and id), in
   base64url. */
static char *
api_row_cursor(PGresult *res, int row, enum api_cursor_kind kind)
{
	char text[128], *out;
	int n;

	if (kind == API_CURSOR_TIME_ID)
		n = snprintf(text, sizeof(text), "%s,%s",
		    PQgetvalue(res, row, 1), PQgetvalue(res, row, 2));
	else
		n = snprintf(text, sizeof(text), "%s", PQgetvalue(res, row, 1));
	if (n < 0 || (size_t)n >= sizeof(text))
		return NULL;
	out = malloc(util_b64url_len((size_t)n) + 1);
	if (out != NULL)
		util_b64url_encode(text, (size_t)n, out);
	return out;
}

/* Join a page of JSON rows into {"items": [...], "next_cursor": ...}. */
static char *
api_list_body(PGresult *res, int limit, enum api_cursor_kind kind, size_t *len)
{
	int rows = PQntuples(res), shown = rows > limit ? limit : rows, i;
	char *cursor = NULL, *body, *p;
	size_t size = 64;

	for (i = 0; i < shown; i++)
		size += (size_t)PQgetlength(res, i, 0) + 1;
	if (rows > limit) {
		cursor = api_row_cursor(res, limit - 1, kind);
		if (cursor == NULL)
			return NULL;
		size += strlen(cursor);
	}

	body = malloc(size);
	if (body == NULL)
		goto out;
	p = body + sprintf(body, "{\"items\":[");
	for (i = 0; i < shown; i++) {
		if (i > 0)
			*p++ = ',';
		memcpy(
		    p, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
		p += PQgetlength(res, i, 0);
	}
	if (cursor != NULL)
		p += sprintf(p, "],\"next_cursor\":\"%s\"}", cursor);
	else
		p += sprintf(p, "],\"next_cursor\":null}");
	*len = (size_t)(p - body);
out:
	free(cursor);
	return body;
}

/* A list query finished. */
static void
api_list_done_cb(struct db_result *r, void *arg)
{
	struct api_pending *p = arg;
	char *body;
	size_t len = 0;

	if (r->status != 0) {
		api_reply_db_error(p->req, r);
		goto out;
	}
	body = api_list_body(r->res[0], p->limit, p->kind, &len);
	if (body == NULL) {
		http_reply_problem(
		    p->req, 500, "internal", NULL, "out of memory");
		goto out;
	}
	http_reply_body(p->req, 200, "application/json", body, len);
	free(body);
out:
	free(p);
}

/* Run a page query; the answer is built from the rows' JSON. */
void
api_query_list(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int limit, enum api_cursor_kind kind)
{
	struct api_pending *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	p->req = req;
	p->limit = limit;
	p->kind = kind;
	api_pending_run(req, sql, nparams, params, p, api_list_done_cb);
}

/* A list of the caller's MSP that takes only paging parameters. */
void
api_list_paged(struct http_req *req, const char *sql)
{
	const struct auth_who *who = api_who(req);
	const char *params[4];
	struct api_page page;

	if (api_page_parse(req, API_CURSOR_TIME_ID, &page) < 0)
		return;
	params[0] = who->msp_id;
	params[1] = page.after_a;
	params[2] = page.after_b;
	params[3] = page.limit_plus_one;
	api_query_list(req, sql, 4, params, page.limit, API_CURSOR_TIME_ID);
}

static const char sql_user_known[] =
    "SELECT 1 FROM users WHERE msp_id = $1 AND id = $2";

/* What to run once a user_id filter is known to be the MSP's. */
struct api_user_check {
	struct http_req *req;
	void (*next)(struct http_req *req);
};

/* The user exists in this MSP (or not: 404 naming user_id). */
static void
api_user_checked_cb(struct db_result *r, void *arg)
{
	struct api_user_check *check = arg;

	if (r->status != 0)
		api_reply_db_error(check->req, r);
	else if (PQntuples(r->res[0]) == 0)
		http_reply_problem(
		    check->req, 404, "not_found", "user_id", "no such user");
	else
		check->next(check->req);
	free(check);
}

/*
 * A user_id filter naming another MSP's user (or none) answers 404, like
 * every other reference to another tenant's object. Runs next when the
 * filter is absent or the user is the caller's.
 */
void
api_check_user_filter(struct http_req *req, void (*next)(struct http_req *))
{
	const struct auth_who *who = api_who(req);
	const char *user_id = http_req_query(req, "user_id");
	const char *params[2] = { who->msp_id, user_id };
	struct api_user_check *check;

	if (user_id == NULL || !util_uuid_valid(user_id)) {
		next(req);
		return;
	}
	check = calloc(1, sizeof(*check));
	if (check == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	check->req = req;
	check->next = next;
	if (db_query(app.db, sql_user_known, 2, params, api_user_checked_cb,
	        check) != 0) {
		free(check);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}
