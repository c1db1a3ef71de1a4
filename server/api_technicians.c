/*
 * Technicians and admins of an MSP (admin only): create with a new API
 * key shown once, list, get, and revoke, which stops the key at once in
 * this process and, through NOTIFY, in every other.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "auth.h"
#include "log.h"
#include "util.h"

static const char sql_technician_create[] =
    "WITH t AS ("
    "  INSERT INTO technicians (msp_id, id, display_name, email, role,"
    "   key_hash)"
    "  VALUES ($1, gen_random_uuid(), $2, $3, $4, decode($5, 'hex'))"
    "  RETURNING *),"
    " e AS (SELECT audit_append($1, 'technician.created', 'technician',"
    "  $6, 'technician', t.id, jsonb_build_object('display_name',"
    "  t.display_name, 'role', t.role)) FROM t)"
    " SELECT technician_json(t)::text FROM t, e";

static const char sql_technician_get[] =
    "SELECT technician_json(t)::text FROM technicians t"
    " WHERE t.msp_id = $1 AND t.id = $2";

static const char sql_technician_list[] =
    "SELECT technician_json(t)::text, rfc3339(t.created_at), t.id"
    " FROM technicians t WHERE t.msp_id = $1"
    " AND ($2::timestamptz IS NULL"
    "  OR (t.created_at, t.id) > ($2::timestamptz, $3::uuid))"
    " ORDER BY t.created_at, t.id LIMIT $4";

static const char sql_technician_revoke[] =
    "WITH t AS ("
    "  UPDATE technicians SET revoked_at = now()"
    "  WHERE msp_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING *),"
    " e AS (SELECT audit_append($1, 'technician.revoked', 'technician',"
    "  $3, 'technician', t.id, '{}'),"
    "  pg_notify('vouch_auth', encode(t.key_hash, 'hex')) FROM t)"
    " SELECT encode(t.key_hash, 'hex') FROM t, e";

static const char *const technician_roles[] = { "admin", "technician", NULL };

/* A create waiting on the database; holds the key shown once. */
struct technician_create {
	struct http_req *req;
	char key[AUTH_KEY_LEN + 1];
};

/* The row is in: answer with it plus the key, then forget the key. */
static void
technician_created_cb(struct db_result *r, void *arg)
{
	struct technician_create *tc = arg;
	json_t *body;

	if (r->status != 0) {
		api_reply_db_error(tc->req, r);
		goto out;
	}
	body = json_loads(PQgetvalue(r->res[0], 0, 0), 0, NULL);
	if (body == NULL ||
	    json_object_set_new(body, "api_key", json_string(tc->key)) != 0) {
		json_decref(body);
		http_reply_problem(
		    tc->req, 500, "internal", NULL, "out of memory");
		goto out;
	}
	http_reply_json(tc->req, 201, body);
out:
	OPENSSL_cleanse(tc->key, sizeof(tc->key));
	free(tc);
}

/* POST /v1/technicians {display_name, email, role} */
void
api_technicians_create(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *name, *email, *role, *params[6];
	char hash_hex[AUTH_HASH_HEX_LEN + 1];
	struct technician_create *tc;

	if (api_field_string(req, "display_name", API_REQUIRED, 1, 200, &name) <
	        0 ||
	    api_field_string(req, "email", API_REQUIRED, 3, 254, &email) < 0)
		return;
	if (!util_email_valid(email)) {
		api_invalid(req, "email", "is not a mail address");
		return;
	}
	if (api_field_enum(req, "role", API_REQUIRED, technician_roles, &role) <
	    0)
		return;

	tc = calloc(1, sizeof(*tc));
	if (tc == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	tc->req = req;
	auth_key_new(tc->key, hash_hex);

	params[0] = who->msp_id;
	params[1] = name;
	params[2] = email;
	params[3] = role;
	params[4] = hash_hex;
	params[5] = who->technician_id;
	if (db_query(app.db, sql_technician_create, 6, params,
	        technician_created_cb, tc) != 0) {
		OPENSSL_cleanse(tc->key, sizeof(tc->key));
		free(tc);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* GET /v1/technicians/{id} */
void
api_technicians_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "technician"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(
	    req, sql_technician_get, 2, params, 200, "no such technician");
}

/* GET /v1/technicians */
void
api_technicians_list(struct http_req *req)
{
	api_list_paged(req, sql_technician_list);
}

/* The key is revoked in the database: drop it from our cache too. */
static void
technician_revoked_cb(struct db_result *r, void *arg)
{
	struct http_req *req = arg;

	if (r->status != 0) {
		api_reply_db_error(req, r);
		return;
	}
	if (PQntuples(r->res[0]) == 0) {
		http_reply_problem(
		    req, 404, "not_found", NULL, "no such technician");
		return;
	}
	auth_forget(app.auth, PQgetvalue(r->res[0], 0, 0));
	log_info("auth", "req %s: technician key revoked", http_req_id(req));
	http_reply_empty(req, 204);
}

/* DELETE /v1/technicians/{id}: revoke the key at once. */
void
api_technicians_delete(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[3];

	if (api_bad_id(req, id, "technician"))
		return;
	if (strcasecmp(id, who->technician_id) == 0) {
		http_reply_problem(req, 409, "conflict", NULL,
		    "a key cannot revoke itself; use another admin key");
		return;
	}
	params[0] = who->msp_id;
	params[1] = id;
	params[2] = who->technician_id;
	if (db_query(app.db, sql_technician_revoke, 3, params,
	        technician_revoked_cb, req) != 0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
}
