/*
 * Devices from the technician's side: enrolment codes for a user (shown
 * once, optionally sent by email or SMS), a user's devices, and
 * revocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "conf.h"
#include "otp.h"
#include "outbox.h"
#include "secretbox.h"
#include "util.h"

static const char sql_enroll_create[] =
    "SELECT result::text, jobs::text FROM enrollment_create($1, $2, $3, $4,"
    " $5::int, $6, $7, $8)";

static const char sql_devices[] =
    "SELECT jsonb_build_object('items', coalesce(jsonb_agg(device_json(d)"
    " ORDER BY d.created_at, d.id) FILTER (WHERE d.id IS NOT NULL),"
    " '[]'))::text FROM users u LEFT JOIN devices d"
    " ON d.msp_id = u.msp_id AND d.user_id = u.id"
    " WHERE u.msp_id = $1 AND u.id = $2 GROUP BY u.id";

static const char sql_revoke[] = "SELECT device_revoke($1, $2, $3)";

static const char *const send_vias[] = { "email", "sms", NULL };

/* An enrolment code on its way into the database. */
struct enroll_call {
	struct http_req *req;
	char code[15];
	char *sealed;
};

/* The code is stored: show it once. */
static void
enroll_created_cb(struct db_result *r, void *arg)
{
	struct enroll_call *call = arg;
	json_t *body;
	PGresult *res;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	res = r->res[0];
	body = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	if (body == NULL ||
	    json_object_set_new(body, "code", json_string(call->code)) != 0) {
		json_decref(body);
		http_reply_problem(
		    call->req, 500, "internal", NULL, "out of memory");
		goto out;
	}
	if (!PQgetisnull(res, 0, 1))
		outbox_kick(app.outbox, PQgetvalue(res, 0, 1));
	http_reply_json(call->req, 201, body);
out:
	OPENSSL_cleanse(call->code, sizeof(call->code));
	free(call->sealed);
	free(call);
}

/* POST /v1/users/{id}/enrollments {send_via?} */
void
api_enrollments_create(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *user_id = http_req_param(req, "id"), *send_via;
	char normal[13], hash[OTP_HASH_HEX_LEN + 1], ttl[16];
	char job[UTIL_UUID_LEN + 1];
	const char *params[8];
	struct enroll_call *call;

	if (api_bad_id(req, user_id, "user") ||
	    api_field_enum(
	        req, "send_via", API_NULLABLE, send_vias, &send_via) < 0)
		return;
	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	otp_enrollment_code(call->code);
	otp_enrollment_normalise(call->code, normal);
	otp_hash(app.secret_key, "enroll", normal, hash);
	util_uuid_new(job);
	if (send_via != NULL)
		call->sealed = secretbox_seal(
		    app.secret_key, job, call->code, strlen(call->code));
	snprintf(ttl, sizeof(ttl), "%lld",
	    (long long)app.conf->verification_enrollment_ttl);

	params[0] = who->msp_id;
	params[1] = user_id;
	params[2] = who->technician_id;
	params[3] = hash;
	params[4] = ttl;
	params[5] = send_via;
	params[6] = job;
	params[7] = call->sealed;
	if (db_query(app.db, sql_enroll_create, 8, params, enroll_created_cb,
	        call) != 0) {
		free(call->sealed);
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* GET /v1/users/{id}/devices */
void
api_devices_list(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "user"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(req, sql_devices, 2, params, 200, "no such user");
}

/* The revocation committed. */
static void
device_revoked_cb(struct db_result *r, void *arg)
{
	struct http_req *req = arg;

	if (r->status != 0) {
		api_reply_db_error(req, r);
		return;
	}
	http_reply_empty(req, 204);
}

/* DELETE /v1/devices/{id} */
void
api_devices_delete(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[3];

	if (api_bad_id(req, id, "device"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	params[2] = who->technician_id;
	if (db_query(app.db, sql_revoke, 3, params, device_revoked_cb, req) !=
	    0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
}
