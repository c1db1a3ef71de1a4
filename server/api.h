/*
 * What every route handler shares: reading and checking JSON fields
 * (422 naming the field), paging parameters, mapping database failures
 * to problem replies, and running the common "one row of JSON" and
 * "a page of rows" queries whose answer goes straight to the client.
 */
#ifndef VOUCH_API_H
#define VOUCH_API_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "db.h"
#include "http.h"

/* Flags for field getters. */
#define API_REQUIRED 1  /* absent is an error */
#define API_NULLABLE 2  /* JSON null is accepted (out = NULL) */
#define API_MULTILINE 4 /* line breaks and tabs are allowed */

/*
 * Read a string field of the request body. Returns 1 when present (with
 * *out the value, or NULL for an accepted null), 0 when absent, and -1
 * after replying 422 naming the field. Lengths count code points.
 */
int api_field_string(struct http_req *req, const char *name, int flags,
    size_t min_chars, size_t max_chars, const char **out);

/* The same for a string that must be one of the NULL-terminated set. */
int api_field_enum(struct http_req *req, const char *name, int flags,
    const char *const *allowed, const char **out);

/* Reply 422 naming the field; returns -1 for the caller to return. */
int api_invalid(struct http_req *req, const char *field, const char *detail);

/* The caller set by auth_check. */
const struct auth_who *api_who(struct http_req *req);

/* Reply for a failed query: 503 when the database was unreachable or
   slow, 409 on a uniqueness conflict, 500 otherwise (logged). */
void api_reply_db_error(struct http_req *req, const struct db_result *r);

/* Paging of a list: limit 1..500 (default 50) and the decoded cursor. */
enum api_cursor_kind {
	API_CURSOR_TIME_ID, /* created_at and id */
	API_CURSOR_SEQ,     /* an event sequence number */
};

struct api_page {
	char limit_plus_one[12]; /* limit + 1, as a query parameter */
	int limit;
	const char *after_a; /* NULL on the first page */
	const char *after_b; /* NULL unless TIME_ID */
	char cursor[128];    /* decoded cursor text (owned) */
};

/* Parse limit and cursor; -1 after replying 422. */
int api_page_parse(
    struct http_req *req, enum api_cursor_kind kind, struct api_page *page);

/*
 * Run a query whose single row holds the JSON answer in column 0: reply
 * with ok_status, or 404 with not_found when there is no row.
 */
void api_query_object(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int ok_status, const char *not_found);

/* The same, naming the request field whose value was not found. */
void api_query_object_field(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int ok_status, const char *not_found,
    const char *field);

/*
 * Run a list query: each row holds an item's JSON in column 0 and its
 * cursor parts in columns 1 (and 2); the query asks for limit + 1 rows so
 * the presence of a next page is known. Replies {"items", "next_cursor"}.
 */
void api_query_list(struct http_req *req, const char *sql, int nparams,
    const char *const *params, int limit, enum api_cursor_kind kind);

/*
 * GET of a list that only pages: sql takes $1 msp, $2/$3 the time-and-id
 * cursor and $4 the limit + 1.
 */
void api_list_paged(struct http_req *req, const char *sql);

/*
 * A user_id query filter naming another MSP's user (or none) answers 404
 * naming user_id, like every other reference to another tenant's object;
 * next runs when the filter is absent or the user is the caller's.
 */
void api_check_user_filter(
    struct http_req *req, void (*next)(struct http_req *req));

/* True (after replying 404) when a path id is not a UUID. */
bool api_bad_id(struct http_req *req, const char *id, const char *what);

/* Every route of the API, for main to register. */
const struct http_route *api_routes(size_t *count);

#endif
