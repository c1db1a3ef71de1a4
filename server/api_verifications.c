/*
 * Verifications, the technician's side: create (push with a match
 * number, or a code by SMS or email), read, list, watch live, check a
 * code, mark by hand, cancel. State changes happen in the database's
 * verification functions; deliveries go through the outbox.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "conf.h"
#include "notify.h"
#include "otp.h"
#include "outbox.h"
#include "secretbox.h"
#include "util.h"
#include "verify.h"

static const char sql_create[] =
    "SELECT result::text, jobs::text FROM verification_create($1, $2, $3,"
    " $4, $5, $6, $7, $8::jsonb, $9::int, $10::int[], $11, $12::int,"
    " $13::int, $14, $15::boolean, $16::int, $17::int, $18::int)";

static const char sql_get[] =
    "SELECT verification_json(v)::text FROM verifications v"
    " WHERE v.msp_id = $1 AND v.id = $2";

static const char sql_list[] =
    "SELECT verification_json(v)::text, rfc3339(v.created_at), v.id"
    " FROM verifications v WHERE v.msp_id = $1"
    " AND ($2::uuid IS NULL OR v.user_id = $2::uuid)"
    " AND ($3::text IS NULL OR v.status = $3)"
    " AND ($4::timestamptz IS NULL"
    "  OR (v.created_at, v.id) > ($4::timestamptz, $5::uuid))"
    " ORDER BY v.created_at, v.id LIMIT $6";

static const char sql_finish[] =
    "SELECT verification_json(verification_finish($1, $2, $3, $4,"
    " 'technician', $5, NULL, $6))::text";

static const char sql_code_state[] =
    "SELECT v.method, v.status, v.code_hash FROM verifications v"
    " WHERE v.msp_id = $1 AND v.id = $2";

static const char sql_code_rejected[] =
    "SELECT verification_json(verification_code_rejected($1, $2, $3))::text";

static const char *const methods[] = { "push", "sms", "email", NULL };
static const char *const directions[] = { "verify_user", "verify_technician",
	NULL };
static const char *const statuses[] = { "pending", "sent", "approved", "denied",
	"expired", "canceled", "failed", NULL };
static const char *const results[] = { "approved", "denied", NULL };

/* The settings of verifications, from [verification]. */
#define CONF (app.conf)

/* A create waiting on the database, with the secrets to wipe after. */
struct create_call {
	struct http_req *req;
	char code[9];
	char *sealed;
};

/* Check the optional ticket {system, id}. Returns 0 with *out the JSON
   text (or NULL when absent), or -1 after a 422. */
static int
create_ticket(struct http_req *req, char **out)
{
	json_t *t = json_object_get(http_req_json(req), "ticket");
	json_t *system, *id, *copy;

	*out = NULL;
	if (t == NULL || json_is_null(t))
		return 0;
	system = json_object_get(t, "system");
	id = json_object_get(t, "id");
	if (!json_is_object(t) || !json_is_string(system) ||
	    !json_is_string(id) ||
	    !util_utf8_length_ok(json_string_value(system), 1, 64) ||
	    !util_utf8_length_ok(json_string_value(id), 1, 128))
		return api_invalid(req, "ticket",
		    "must be {\"system\": \"...\", \"id\": \"...\"}");

	copy = json_pack("{s:O, s:O}", "system", system, "id", id);
	*out = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
	json_decref(copy);
	return 0;
}

/* Whether this server can deliver by the method at all. */
static bool
create_channel_ok(const char *method)
{
	if (strcmp(method, "sms") == 0)
		return app.notify != NULL && notify_can_sms(app.notify);
	if (strcmp(method, "email") == 0)
		return app.notify != NULL && notify_can_email(app.notify);
	return true;
}

/* Free a create call, wiping its secrets. */
static void
create_call_free(struct create_call *call)
{
	OPENSSL_cleanse(call->code, sizeof(call->code));
	free(call->sealed);
	free(call);
}

/* The verification and its jobs are committed: answer, then send. */
static void
create_done_cb(struct db_result *r, void *arg)
{
	struct create_call *call = arg;
	PGresult *res;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	res = r->res[0];
	if (!PQgetisnull(res, 0, 1))
		outbox_kick(app.outbox, PQgetvalue(res, 0, 1));
	http_reply_body(call->req, 201, "application/json",
	    PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
out:
	create_call_free(call);
}

/* Draw the match number and the three options a push prompt shows. */
static void
create_match(char match[4], char options[16])
{
	int m = otp_uniform(10, 99), o[3];

	otp_match_options(m, o, 3);
	snprintf(match, 4, "%d", m);
	snprintf(options, 16, "{%d,%d,%d}", o[0], o[1], o[2]);
}

/* Numbers of the create call, as text parameters. */
struct create_numbers {
	char ttl[16], attempts[16], user_limit[16], tech_limit[16];
	char window[16];
};

/* Start the create transaction. */
static void
create_run(struct http_req *req, struct create_call *call, const char *id,
    const char *user_id, const char *method, const char *direction,
    const char *reason, const char *ticket)
{
	const struct auth_who *who = api_who(req);
	bool push = strcmp(method, "push") == 0;
	char match[4], options[16], code_hash[OTP_HASH_HEX_LEN + 1];
	struct create_numbers n;
	const char *params[18];

	if (push) {
		create_match(match, options);
	} else {
		otp_digits(call->code, (int)CONF->verification_code_digits);
		otp_hash(app.secret_key, id, call->code, code_hash);
		call->sealed = secretbox_seal(
		    app.secret_key, id, call->code, strlen(call->code));
	}
	snprintf(n.ttl, sizeof(n.ttl), "%lld",
	    (long long)(push ? CONF->verification_push_ttl
	                     : CONF->verification_code_ttl));
	snprintf(n.attempts, sizeof(n.attempts), "%lld",
	    (long long)CONF->verification_code_attempts);
	snprintf(n.user_limit, sizeof(n.user_limit), "%lld",
	    (long long)CONF->verification_user_limit);
	snprintf(n.tech_limit, sizeof(n.tech_limit), "%lld",
	    (long long)CONF->verification_technician_limit);
	snprintf(n.window, sizeof(n.window), "%lld",
	    (long long)CONF->verification_limit_window);

	params[0] = who->msp_id;
	params[1] = id;
	params[2] = user_id;
	params[3] = who->technician_id;
	params[4] = method;
	params[5] = direction;
	params[6] = reason;
	params[7] = ticket;
	params[8] = push ? match : NULL;
	params[9] = push ? options : NULL;
	params[10] = push ? NULL : code_hash;
	params[11] = push ? NULL : n.attempts;
	params[12] = n.ttl;
	params[13] = call->sealed;
	params[14] = create_channel_ok(method) ? "t" : "f";
	params[15] = n.user_limit;
	params[16] = n.tech_limit;
	params[17] = n.window;
	if (db_query(app.db, sql_create, 18, params, create_done_cb, call) !=
	    0) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		create_call_free(call);
	}
}

/* POST /v1/verifications */
void
api_verifications_create(struct http_req *req)
{
	const char *user_id, *method, *direction = "verify_user", *reason;
	char id[UTIL_UUID_LEN + 1], *ticket = NULL;
	struct create_call *call;

	if (api_field_string(req, "user_id", API_REQUIRED, 1, 64, &user_id) < 0)
		return;
	if (!util_uuid_valid(user_id)) {
		api_invalid(req, "user_id", "must be a UUID");
		return;
	}
	if (api_field_enum(req, "method", API_REQUIRED, methods, &method) < 0 ||
	    api_field_enum(
	        req, "direction", API_NULLABLE, directions, &direction) < 0 ||
	    api_field_string(req, "reason", API_NULLABLE, 0, 500, &reason) <
	        0 ||
	    create_ticket(req, &ticket) < 0)
		return;
	if (direction == NULL)
		direction = "verify_user";
	if (strcmp(direction, "verify_technician") == 0 &&
	    strcmp(method, "push") != 0) {
		free(ticket);
		api_invalid(req, "direction",
		    "verify_technician needs the push method");
		return;
	}

	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		free(ticket);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	util_uuid_new(id);
	create_run(req, call, id, user_id, method, direction, reason, ticket);
	free(ticket);
}

/* GET /v1/verifications/{id} */
void
api_verifications_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "verification"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(req, sql_get, 2, params, 200, "no such verification");
}

/* The list, once a user_id filter is known to be the MSP's. */
static void
list_run(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *user_id = http_req_query(req, "user_id");
	const char *status = http_req_query(req, "status"), *params[6];
	struct api_page page;
	size_t i;

	if (user_id != NULL && !util_uuid_valid(user_id)) {
		api_invalid(req, "user_id", "must be a UUID");
		return;
	}
	for (i = 0; status != NULL && statuses[i] != NULL; i++)
		if (strcmp(status, statuses[i]) == 0)
			break;
	if (status != NULL && statuses[i] == NULL) {
		api_invalid(req, "status", "is not a verification status");
		return;
	}
	if (api_page_parse(req, API_CURSOR_TIME_ID, &page) < 0)
		return;

	params[0] = who->msp_id;
	params[1] = user_id;
	params[2] = status;
	params[3] = page.after_a;
	params[4] = page.after_b;
	params[5] = page.limit_plus_one;
	api_query_list(
	    req, sql_list, 6, params, page.limit, API_CURSOR_TIME_ID);
}

/* GET /v1/verifications?user_id=&status=&limit=&cursor= */
void
api_verifications_list(struct http_req *req)
{
	api_check_user_filter(req, list_run);
}

/* GET /v1/verifications/{id}/watch */
void
api_verifications_watch(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id");

	if (api_bad_id(req, id, "verification"))
		return;
	verify_watch(app.verify, req, who->msp_id, id);
}

/* End a verification as the technician says. */
static void
finish_by_technician(struct http_req *req, const char *status,
    const char *outcome, const char *note)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[6];

	if (api_bad_id(req, id, "verification"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	params[2] = status;
	params[3] = outcome;
	params[4] = who->technician_id;
	params[5] = note;
	api_query_object(
	    req, sql_finish, 6, params, 200, "no such verification");
}

/* POST /v1/verifications/{id}/decision {result, note} */
void
api_verifications_decision(struct http_req *req)
{
	const char *result, *note;

	if (api_field_enum(req, "result", API_REQUIRED, results, &result) < 0 ||
	    api_field_string(
	        req, "note", API_REQUIRED | API_MULTILINE, 1, 1000, &note) < 0)
		return;
	finish_by_technician(req, result, "marked_by_technician", note);
}

/* POST /v1/verifications/{id}/cancel */
void
api_verifications_cancel(struct http_req *req)
{
	finish_by_technician(req, "canceled", "canceled", NULL);
}

/* A code check waiting for the stored hash. */
struct code_call {
	struct http_req *req;
	char code[9];
};

/* The stored hash arrived: compare, then record the result. */
static void
code_state_cb(struct db_result *r, void *arg)
{
	struct code_call *call = arg;
	const struct auth_who *who = api_who(call->req);
	const char *id = http_req_param(call->req, "id"), *params[6];
	PGresult *res;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	res = r->res[0];
	if (PQntuples(res) == 0) {
		http_reply_problem(
		    call->req, 404, "not_found", NULL, "no such verification");
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "push") == 0) {
		http_reply_problem(call->req, 409, "conflict", NULL,
		    "a push verification has no code");
		goto out;
	}
	if (verify_status_final(PQgetvalue(res, 0, 1))) {
		http_reply_problem(call->req, 409, "conflict", NULL,
		    "the verification is already %s", PQgetvalue(res, 0, 1));
		goto out;
	}

	params[0] = who->msp_id;
	params[1] = id;
	if (otp_check(app.secret_key, id, call->code, PQgetvalue(res, 0, 2))) {
		params[2] = "approved";
		params[3] = "code_correct";
		params[4] = who->technician_id;
		params[5] = NULL;
		api_query_object(call->req, sql_finish, 6, params, 200,
		    "no such verification");
	} else {
		params[2] = who->technician_id;
		api_query_object(call->req, sql_code_rejected, 3, params, 200,
		    "no such verification");
	}
out:
	OPENSSL_cleanse(call->code, sizeof(call->code));
	free(call);
}

/* POST /v1/verifications/{id}/code {code} */
void
api_verifications_code(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *code, *params[2];
	struct code_call *call;
	size_t i;

	if (api_bad_id(req, id, "verification") ||
	    api_field_string(req, "code", API_REQUIRED, 6, 8, &code) < 0)
		return;
	for (i = 0; code[i] != '\0'; i++) {
		if (code[i] < '0' || code[i] > '9') {
			api_invalid(req, "code", "must be 6 to 8 digits");
			return;
		}
	}

	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	snprintf(call->code, sizeof(call->code), "%s", code);
	params[0] = who->msp_id;
	params[1] = id;
	if (db_query(app.db, sql_code_state, 2, params, code_state_cb, call) !=
	    0) {
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}
