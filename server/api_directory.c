/*
 * A customer's directory connection and alert policy (admin): store the
 * Active Directory settings (the bind password sealed, never returned),
 * test them, ask for a sync, and set which alerts users get.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "directory.h"
#include "secretbox.h"
#include "sync.h"
#include "util.h"

static const char sql_put[] =
    "WITH c AS (SELECT 1 FROM customers WHERE msp_id = $1 AND id = $2),"
    " d AS (INSERT INTO directories (msp_id, customer_id, url, bind_dn,"
    "  bind_password, base_dn, ca_file, login_attribute, sync_interval)"
    "  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9::int FROM c"
    "  ON CONFLICT (msp_id, customer_id) DO UPDATE SET url = $3,"
    "  bind_dn = $4, bind_password = $5, base_dn = $6, ca_file = $7,"
    "  login_attribute = $8, sync_interval = $9::int, updated_at = now(),"
    "  next_sync_at = now(), full_sync = true, failures = 0,"
    "  last_error = NULL RETURNING *),"
    " e AS (SELECT audit_append($1, 'directory.configured', 'technician',"
    "  $10, 'customer', $2, jsonb_build_object('url', d.url, 'bind_dn',"
    "  d.bind_dn, 'base_dn', d.base_dn)) FROM d)"
    " SELECT directory_json(d)::text FROM d, e";

static const char sql_get[] =
    "SELECT directory_json(d)::text FROM directories d"
    " WHERE d.msp_id = $1 AND d.customer_id = $2";

static const char sql_settings[] =
    "SELECT url, bind_dn, bind_password, base_dn, ca_file, login_attribute"
    " FROM directories WHERE msp_id = $1 AND customer_id = $2";

static const char sql_sync_now[] =
    "UPDATE directories SET next_sync_at = now(), full_sync = true"
    " WHERE msp_id = $1 AND customer_id = $2"
    " RETURNING jsonb_build_object('status', 'queued')::text";

static const char sql_policy_put[] =
    "WITH c AS (SELECT 1 FROM customers WHERE msp_id = $1 AND id = $2),"
    " p AS (INSERT INTO alert_policies (msp_id, customer_id, expiry_days,"
    "  channels, on_expired, on_lockout)"
    "  SELECT $1, $2, $3::int[], $4::text[], $5::boolean, $6::boolean"
    "  FROM c ON CONFLICT (msp_id, customer_id) DO UPDATE SET"
    "  expiry_days = $3::int[], channels = $4::text[],"
    "  on_expired = $5::boolean, on_lockout = $6::boolean,"
    "  updated_at = now() RETURNING *),"
    " e AS (SELECT audit_append($1, 'alert_policy.updated', 'technician',"
    "  $7, 'customer', $2, alert_policy_json(p)) FROM p)"
    " SELECT alert_policy_json(p)::text FROM p, e";

static const char sql_policy_get[] =
    "SELECT coalesce((SELECT alert_policy_json(p) FROM alert_policies p"
    "  WHERE p.msp_id = $1 AND p.customer_id = $2),"
    " jsonb_build_object('customer_id', c.id, 'expiry_days',"
    "  '[14, 7, 3, 1]'::jsonb, 'channels', '[\"push\", \"sms\", \"email\"]'"
    "  ::jsonb, 'on_expired', true, 'on_lockout', true,"
    "  'updated_at', NULL))::text"
    " FROM customers c WHERE c.msp_id = $1 AND c.id = $2";

static const char *const login_attributes[] = { "userPrincipalName",
	"sAMAccountName", NULL };
static const char *const kinds[] = { "active_directory", NULL };

/* An integer field within bounds; 0 absent, 1 present, -1 after 422. */
static int
field_int(struct http_req *req, const char *name, long min, long max, long *out)
{
	json_t *v = json_object_get(http_req_json(req), name);
	char detail[64];

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		snprintf(detail, sizeof(detail),
		    "must be an integer from %ld to %ld", min, max);
		return api_invalid(req, name, detail);
	}
	*out = (long)json_integer_value(v);
	return 1;
}

/* The checked body of a PUT directory. */
struct api_directory_body {
	const char *kind, *url, *bind_dn, *password, *base_dn, *ca_file;
	const char *login;
	long interval;
};

/* Read and check the body; -1 after a 422. */
static int
api_directory_body_parse(struct http_req *req, struct api_directory_body *b)
{
	b->interval = 300;
	if (api_field_enum(req, "kind", API_REQUIRED, kinds, &b->kind) < 0 ||
	    api_field_string(req, "url", API_REQUIRED, 8, 1000, &b->url) < 0)
		return -1;
	if (strncmp(b->url, "ldaps://", 8) != 0 &&
	    strncmp(b->url, "ldap://", 7) != 0)
		return api_invalid(req, "url",
		    "must be ldaps://host[:port] "
		    "or ldap://host[:port] (which then uses StartTLS)");
	if (api_field_string(
	        req, "bind_dn", API_REQUIRED, 1, 1000, &b->bind_dn) < 0 ||
	    api_field_string(
	        req, "bind_password", API_REQUIRED, 1, 512, &b->password) < 0 ||
	    api_field_string(
	        req, "base_dn", API_REQUIRED, 1, 1000, &b->base_dn) < 0 ||
	    api_field_string(
	        req, "ca_file", API_NULLABLE, 1, 4096, &b->ca_file) < 0 ||
	    api_field_enum(req, "login_attribute", API_NULLABLE,
	        login_attributes, &b->login) < 0 ||
	    field_int(req, "sync_interval", 30, 86400, &b->interval) < 0)
		return -1;
	if (b->ca_file != NULL && b->ca_file[0] != '/')
		return api_invalid(req, "ca_file", "must be an absolute path");
	if (b->login == NULL)
		b->login = "userPrincipalName";
	return 0;
}

/*
 * A change that asks for a sync committed: answer with its row (404 when
 * there was none) and look for due syncs here at once.
 */
static void
api_directory_answer_and_sync(struct db_result *r, struct http_req *req,
    int status, const char *not_found)
{
	if (r->status != 0) {
		api_reply_db_error(req, r);
		return;
	}
	if (PQntuples(r->res[0]) == 0) {
		http_reply_problem(
		    req, 404, "not_found", NULL, "%s", not_found);
		return;
	}
	if (app.sync != NULL)
		sync_kick(app.sync);
	http_reply_body(req, status, "application/json",
	    PQgetvalue(r->res[0], 0, 0), (size_t)PQgetlength(r->res[0], 0, 0));
}

/* The directory settings are stored. */
static void
api_directory_put_done_cb(struct db_result *r, void *arg)
{
	api_directory_answer_and_sync(r, arg, 200, "no such customer");
}

/* PUT /v1/customers/{id}/directory */
void
api_directory_put(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[10];
	struct api_directory_body b;
	char interval[16], *sealed;

	if (api_bad_id(req, id, "customer") ||
	    api_directory_body_parse(req, &b) < 0)
		return;
	sealed =
	    secretbox_seal(app.secret_key, id, b.password, strlen(b.password));
	if (sealed == NULL) {
		http_reply_problem(
		    req, 500, "internal", NULL, "cannot seal the password");
		return;
	}
	snprintf(interval, sizeof(interval), "%ld", b.interval);
	params[0] = who->msp_id;
	params[1] = id;
	params[2] = b.url;
	params[3] = b.bind_dn;
	params[4] = sealed;
	params[5] = b.base_dn;
	params[6] = b.ca_file;
	params[7] = b.login;
	params[8] = interval;
	params[9] = who->technician_id;
	if (db_query(app.db, sql_put, 10, params, api_directory_put_done_cb,
	        req) != 0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	free(sealed);
}

/* GET /v1/customers/{id}/directory */
void
api_directory_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "customer"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(
	    req, sql_get, 2, params, 200, "this customer has no directory");
}

/* The directory answered the test. */
static void
api_directory_tested_cb(const struct directory_result *r, void *arg)
{
	struct http_req *req = arg;
	json_t *body;

	if (r->status == DIRECTORY_OK)
		body = json_pack(
		    "{s:b, s:I}", "ok", 1, "users", (json_int_t)r->count);
	else
		body = json_pack("{s:b, s:s, s:s}", "ok", 0, "error",
		    directory_status_name(r->status), "detail", r->detail);
	http_reply_json(req, 200, body);
}

/* The stored settings arrived: run the test on the worker pool. */
static void
api_directory_settings_cb(struct db_result *r, void *arg)
{
	struct http_req *req = arg;
	struct directory_settings ds = { 0 };
	PGresult *res;
	char *password;
	size_t len = 0;

	if (r->status != 0) {
		api_reply_db_error(req, r);
		return;
	}
	res = r->res[0];
	if (PQntuples(res) == 0) {
		http_reply_problem(req, 404, "not_found", NULL,
		    "this customer has no directory");
		return;
	}
	password = secretbox_open(app.secret_key, http_req_param(req, "id"),
	    PQgetvalue(res, 0, 2), &len);
	if (password == NULL) {
		http_reply_problem(req, 500, "internal", NULL,
		    "the stored bind password does not open");
		return;
	}
	ds.url = PQgetvalue(res, 0, 0);
	ds.bind_dn = PQgetvalue(res, 0, 1);
	ds.bind_password = password;
	ds.base_dn = PQgetvalue(res, 0, 3);
	ds.ca_file = PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4);
	ds.login = strcmp(PQgetvalue(res, 0, 5), "sAMAccountName") == 0
	    ? DIRECTORY_LOGIN_SAM
	    : DIRECTORY_LOGIN_UPN;
	if (directory_test(app.workers, &ds, api_directory_tested_cb, req) != 0)
		http_reply_problem(req, 503, "unavailable", NULL,
		    "the directory workers are busy; retry shortly");
	OPENSSL_cleanse(password, len);
	free(password);
}

/* POST /v1/customers/{id}/directory/test */
void
api_directory_test(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "customer"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	if (db_query(app.db, sql_settings, 2, params, api_directory_settings_cb,
	        req) != 0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
}

/* The sync request is recorded: start it here now. */
static void
api_directory_sync_done_cb(struct db_result *r, void *arg)
{
	api_directory_answer_and_sync(
	    r, arg, 202, "this customer has no directory");
}

/* POST /v1/customers/{id}/directory/sync */
void
api_directory_sync(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "customer"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	if (db_query(app.db, sql_sync_now, 2, params,
	        api_directory_sync_done_cb, req) != 0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
}

/* Append an array field as a PostgreSQL array literal; -1 after 422. */
static int
policy_array(
    struct http_req *req, const char *name, bool ints, char *out, size_t size)
{
	static const char *const channels[] = { "push", "sms", "email" };
	json_t *a = json_object_get(http_req_json(req), name), *v;
	size_t i, used = 1, k;
	bool ok;

	if (!json_is_array(a) || json_array_size(a) == 0 ||
	    json_array_size(a) > 10)
		return api_invalid(req, name,
		    ints ? "must be a list of 1 to 10 day counts"
		         : "must be a list of \"push\", \"sms\", \"email\"");
	snprintf(out, size, "{");
	json_array_foreach(a, i, v)
	{
		ok = ints ? json_is_integer(v) && json_integer_value(v) >= 0 &&
		        json_integer_value(v) <= 365
		          : json_is_string(v);
		for (k = 0; ok && !ints && k < 3; k++)
			if (strcmp(json_string_value(v), channels[k]) == 0)
				break;
		if (!ok || (!ints && k == 3))
			return api_invalid(req, name,
			    ints ? "days must be integers from 0 to 365"
			         : "channels are \"push\", \"sms\" and "
			           "\"email\"");
		used += (size_t)(ints
		        ? snprintf(out + used, size - used, "%s%lld",
		              i ? "," : "", (long long)json_integer_value(v))
		        : snprintf(out + used, size - used, "%s%s",
		              i ? "," : "", json_string_value(v)));
	}
	snprintf(out + used, size - used, "}");
	return 0;
}

/* A boolean field with a default; -1 after a 422. */
static int
policy_bool(struct http_req *req, const char *name, const char **out)
{
	json_t *v = json_object_get(http_req_json(req), name);

	*out = "t";
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return api_invalid(req, name, "must be true or false");
	*out = json_is_true(v) ? "t" : "f";
	return 0;
}

/* PUT /v1/customers/{id}/alert-policy */
void
api_alert_policy_put(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[7];
	const char *on_expired, *on_lockout;
	char days[128], channels[64];

	if (api_bad_id(req, id, "customer") ||
	    policy_array(req, "expiry_days", true, days, sizeof(days)) < 0 ||
	    policy_array(req, "channels", false, channels, sizeof(channels)) <
	        0 ||
	    policy_bool(req, "on_expired", &on_expired) < 0 ||
	    policy_bool(req, "on_lockout", &on_lockout) < 0)
		return;
	params[0] = who->msp_id;
	params[1] = id;
	params[2] = days;
	params[3] = channels;
	params[4] = on_expired;
	params[5] = on_lockout;
	params[6] = who->technician_id;
	api_query_object(
	    req, sql_policy_put, 7, params, 200, "no such customer");
}

/* GET /v1/customers/{id}/alert-policy */
void
api_alert_policy_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "customer"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(
	    req, sql_policy_get, 2, params, 200, "no such customer");
}
