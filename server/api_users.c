/*
 * End users of an MSP's customers: create, list with filters, get and
 * patch. Phones are E.164; a customer of another MSP is not found.
 */
#include <string.h>

#include "api.h"
#include "api_routes.h"
#include "util.h"

static const char sql_user_create[] =
    "WITH u AS ("
    "  INSERT INTO users (msp_id, id, customer_id, display_name, email,"
    "   phone, login)"
    "  SELECT $1, gen_random_uuid(), c.id, $3, $4, $5, $6 FROM customers c"
    "  WHERE c.msp_id = $1 AND c.id = $2 RETURNING *),"
    " e AS (SELECT audit_append($1, 'user.created', 'technician', $7,"
    "  'user', u.id, jsonb_build_object('customer_id', u.customer_id,"
    "  'display_name', u.display_name)) FROM u)"
    " SELECT user_json(u)::text FROM u, e";

static const char sql_user_get[] = "SELECT user_json(u)::text FROM users u"
                                   " WHERE u.msp_id = $1 AND u.id = $2";

static const char sql_user_list[] =
    "SELECT user_json(u)::text, rfc3339(u.created_at), u.id"
    " FROM users u WHERE u.msp_id = $1"
    " AND ($2::uuid IS NULL OR u.customer_id = $2::uuid)"
    " AND ($3::text IS NULL"
    "  OR strpos(lower(u.display_name), lower($3)) > 0"
    "  OR strpos(lower(coalesce(u.email, '')), lower($3)) > 0"
    "  OR strpos(lower(coalesce(u.login, '')), lower($3)) > 0)"
    " AND ($4::timestamptz IS NULL"
    "  OR (u.created_at, u.id) > ($4::timestamptz, $5::uuid))"
    " ORDER BY u.created_at, u.id LIMIT $6";

/* Each field is replaced only when its flag ($n = 't') says it was sent. */
static const char sql_user_patch[] =
    "WITH u AS ("
    "  UPDATE users SET"
    "   display_name = CASE WHEN $4 THEN $5 ELSE display_name END,"
    "   email = CASE WHEN $6 THEN $7 ELSE email END,"
    "   phone = CASE WHEN $8 THEN $9 ELSE phone END,"
    "   login = CASE WHEN $10 THEN $11 ELSE login END,"
    "   status = CASE WHEN $12 THEN $13 ELSE status END,"
    "   updated_at = now()"
    "  WHERE msp_id = $1 AND id = $2 RETURNING *),"
    " e AS (SELECT audit_append($1, 'user.updated', 'technician', $3,"
    "  'user', u.id, jsonb_build_object('changed', $14::jsonb)) FROM u)"
    " SELECT user_json(u)::text FROM u, e";

static const char *const user_statuses[] = { "active", "disabled", NULL };

/* Check the optional contact fields shared by create and patch. */
static int
user_contact_fields(struct http_req *req, const char **email,
    const char **phone, const char **login, int present[3])
{
	present[0] =
	    api_field_string(req, "email", API_NULLABLE, 3, 254, email);
	if (present[0] < 0)
		return -1;
	if (*email != NULL && !util_email_valid(*email))
		return api_invalid(req, "email", "is not a mail address");

	present[1] = api_field_string(req, "phone", API_NULLABLE, 9, 16, phone);
	if (present[1] < 0)
		return -1;
	if (*phone != NULL && !util_e164_valid(*phone))
		return api_invalid(req, "phone",
		    "must be an E.164 number such as +15551234567");

	present[2] =
	    api_field_string(req, "login", API_NULLABLE, 1, 256, login);
	return present[2] < 0 ? -1 : 0;
}

/* POST /v1/users {customer_id, display_name, email?, phone?, login?} */
void
api_users_create(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *customer_id, *name, *email, *phone, *login, *params[7];
	int present[3];

	if (api_field_string(
	        req, "customer_id", API_REQUIRED, 1, 64, &customer_id) < 0)
		return;
	if (!util_uuid_valid(customer_id)) {
		api_invalid(req, "customer_id", "must be a UUID");
		return;
	}
	if (api_field_string(req, "display_name", API_REQUIRED, 1, 200, &name) <
	        0 ||
	    user_contact_fields(req, &email, &phone, &login, present) < 0)
		return;

	params[0] = who->msp_id;
	params[1] = customer_id;
	params[2] = name;
	params[3] = email;
	params[4] = phone;
	params[5] = login;
	params[6] = who->technician_id;
	api_query_object_field(req, sql_user_create, 7, params, 201,
	    "no such customer", "customer_id");
}

/* GET /v1/users/{id} */
void
api_users_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "user"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(req, sql_user_get, 2, params, 200, "no such user");
}

/* GET /v1/users?customer_id=&q=&limit=&cursor= */
void
api_users_list(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *customer_id = http_req_query(req, "customer_id");
	const char *q = http_req_query(req, "q"), *params[6];
	struct api_page page;

	if (customer_id != NULL && !util_uuid_valid(customer_id)) {
		api_invalid(req, "customer_id", "must be a UUID");
		return;
	}
	if (q != NULL && !util_utf8_length_ok(q, 0, 200)) {
		api_invalid(req, "q", "must be at most 200 characters");
		return;
	}
	if (api_page_parse(req, API_CURSOR_TIME_ID, &page) < 0)
		return;

	params[0] = who->msp_id;
	params[1] = customer_id;
	params[2] = q != NULL && q[0] != '\0' ? q : NULL;
	params[3] = page.after_a;
	params[4] = page.after_b;
	params[5] = page.limit_plus_one;
	api_query_list(
	    req, sql_user_list, 6, params, page.limit, API_CURSOR_TIME_ID);
}

/* Append a field name to the JSON array text of changed fields. */
static void
user_changed(char *changed, size_t size, const char *field)
{
	size_t len = strlen(changed);

	snprintf(changed + len - 1, size - len + 1, "%s\"%s\"]",
	    len > 2 ? "," : "", field);
}

/* PATCH /v1/users/{id} {display_name?, email?, phone?, login?, status?} */
void
api_users_patch(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id");
	const char *name, *email, *phone, *login, *status, *params[14];
	char changed[128] = "[]";
	int has_name, has_status, present[3];

	if (api_bad_id(req, id, "user"))
		return;
	if (json_object_get(http_req_json(req), "customer_id") != NULL) {
		api_invalid(req, "customer_id", "cannot be changed");
		return;
	}
	has_name = api_field_string(req, "display_name", 0, 1, 200, &name);
	if (has_name < 0 ||
	    user_contact_fields(req, &email, &phone, &login, present) < 0)
		return;
	has_status = api_field_enum(req, "status", 0, user_statuses, &status);
	if (has_status < 0)
		return;

	if (has_name)
		user_changed(changed, sizeof(changed), "display_name");
	if (present[0])
		user_changed(changed, sizeof(changed), "email");
	if (present[1])
		user_changed(changed, sizeof(changed), "phone");
	if (present[2])
		user_changed(changed, sizeof(changed), "login");
	if (has_status)
		user_changed(changed, sizeof(changed), "status");

	params[0] = who->msp_id;
	params[1] = id;
	if (strcmp(changed, "[]") == 0) {
		/* Nothing to change: no new version, no event. */
		api_query_object(
		    req, sql_user_get, 2, params, 200, "no such user");
		return;
	}
	params[2] = who->technician_id;
	params[3] = has_name ? "t" : "f";
	params[4] = name;
	params[5] = present[0] ? "t" : "f";
	params[6] = email;
	params[7] = present[1] ? "t" : "f";
	params[8] = phone;
	params[9] = present[2] ? "t" : "f";
	params[10] = login;
	params[11] = has_status ? "t" : "f";
	params[12] = status;
	params[13] = changed;
	api_query_object(req, sql_user_patch, 14, params, 200, "no such user");
}
