/*
 * The device API, used by the mobile app: enrol with a code, update the
 * push token, renew the device token with a signature of the device key,
 * list open prompts, and decide one with a JWS signed by the device key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "conf.h"
#include "devtoken.h"
#include "otp.h"
#include "ratelimit.h"
#include "util.h"

/* A signature older or newer than this is refused. */
#define JWS_MAX_SKEW 300

static const char sql_enroll[] =
    "SELECT d.msp_id, d.id FROM device_enroll($1, $2, $3, $4, $5) d";

static const char sql_push_token[] =
    "UPDATE devices SET push_token = $3, status = 'active'"
    " WHERE msp_id = $1 AND id = $2 AND status <> 'revoked'";

static const char sql_device_key[] =
    "SELECT d.msp_id, d.public_key FROM devices d"
    " WHERE d.id = $1 AND d.status <> 'revoked'";

/* Open verification prompts and self-service prompts, oldest first. */
static const char sql_prompts[] =
    "SELECT jsonb_build_object('items', coalesce(jsonb_agg(p.prompt"
    " ORDER BY p.at), '[]'))::text FROM ("
    " SELECT prompt_json(v) AS prompt, v.created_at AS at"
    "  FROM verifications v"
    "  WHERE v.msp_id = $1 AND v.user_id = $2 AND v.method = 'push'"
    "  AND v.status IN ('pending', 'sent') AND v.expires_at > now()"
    " UNION ALL"
    " SELECT selfservice_prompt_json(s), s.prompt_at"
    "  FROM selfservice_sessions s"
    "  WHERE s.msp_id = $1 AND s.user_id = $2 AND s.status = 'open'"
    "  AND s.prompt_id IS NOT NULL AND s.code_expires_at > now()"
    "  AND s.expires_at > now()) p";

static const char sql_decision_key[] =
    "SELECT d.public_key FROM devices d WHERE d.msp_id = $1 AND d.id = $2";

/* A verification prompt or a self-service prompt. */
static const char sql_decide[] =
    "SELECT jsonb_build_object('status', prompt_decide($1, $2, $3, $4,"
    " $5::int))::text";

static const char *const platforms[] = { "ios", "android", NULL };

static struct ratelimit *enroll_limit;

/* Refuse an address that tried to enrol too often. */
static bool
enroll_limited(struct http_req *req)
{
	char retry[16];
	int wait_s;

	if (enroll_limit == NULL)
		enroll_limit = ratelimit_new(
		    (double)app.conf->verification_enroll_per_minute,
		    (double)app.conf->verification_enroll_per_minute);
	if (enroll_limit == NULL)
		return false;
	wait_s = ratelimit_take(enroll_limit, http_req_remote(req));
	if (wait_s == 0)
		return false;
	snprintf(retry, sizeof(retry), "%d", wait_s);
	http_reply_header(req, "Retry-After", retry);
	http_reply_problem(req, 429, "rate_limited", NULL,
	    "too many enrolment attempts from this address");
	return true;
}

/* Free the per-address limiter (at shutdown). */
void
api_device_teardown(void)
{
	ratelimit_free(enroll_limit);
	enroll_limit = NULL;
}

/* Answer with a new device token. */
static void
reply_token(struct http_req *req, int status, const char *msp_id,
    const char *device_id, bool with_id)
{
	long long expires_at;
	char *token = devtoken_issue(msp_id, device_id, &expires_at);
	char when[32];
	struct tm tm;
	time_t t;
	json_t *body;

	if (token == NULL) {
		http_reply_problem(
		    req, 500, "internal", NULL, "cannot sign a device token");
		return;
	}
	t = (time_t)expires_at;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	body = json_pack("{s:s, s:s}", "token", token, "expires_at", when);
	if (body != NULL && with_id)
		json_object_set_new(body, "device_id", json_string(device_id));
	free(token);
	http_reply_json(req, status, body);
}

/* The device row exists: hand out its first token. */
static void
enrolled_cb(struct db_result *r, void *arg)
{
	struct http_req *req = arg;

	if (r->status != 0) {
		api_reply_db_error(req, r);
		return;
	}
	reply_token(req, 201, PQgetvalue(r->res[0], 0, 0),
	    PQgetvalue(r->res[0], 0, 1), true);
}

/* POST /v1/device/enroll {code, platform, push_token, public_key, name?} */
void
api_device_enroll(struct http_req *req)
{
	const char *code, *platform, *push_token, *pem, *name, *cause;
	char normal[13], hash[OTP_HASH_HEX_LEN + 1], *key;
	const char *params[5];

	if (enroll_limited(req))
		return;
	if (api_field_string(req, "code", API_REQUIRED, 1, 64, &code) < 0 ||
	    api_field_enum(
	        req, "platform", API_REQUIRED, platforms, &platform) < 0 ||
	    api_field_string(
	        req, "push_token", API_REQUIRED, 1, 4096, &push_token) < 0 ||
	    api_field_string(req, "public_key", API_REQUIRED | API_MULTILINE, 1,
	        4096, &pem) < 0 ||
	    api_field_string(req, "name", API_NULLABLE, 0, 200, &name) < 0)
		return;
	key = devtoken_public_key(pem, &cause);
	if (key == NULL) {
		api_invalid(req, "public_key", cause);
		return;
	}
	if (otp_enrollment_normalise(code, normal) != 0) {
		free(key);
		http_reply_problem(req, 401, "unauthorized", NULL,
		    "the enrolment code is not valid");
		return;
	}

	otp_hash(app.secret_key, "enroll", normal, hash);
	params[0] = hash;
	params[1] = platform;
	params[2] = push_token;
	params[3] = key;
	params[4] = name;
	if (db_query(app.db, sql_enroll, 5, params, enrolled_cb, req) != 0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	free(key);
}

/* The push token update committed. */
static void
push_token_cb(struct db_result *r, void *arg)
{
	struct http_req *req = arg;

	if (r->status != 0)
		api_reply_db_error(req, r);
	else
		http_reply_empty(req, 204);
}

/* PUT /v1/device/push-token {push_token} */
void
api_device_push_token(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *token, *params[3];

	if (api_field_string(req, "push_token", API_REQUIRED, 1, 4096, &token) <
	    0)
		return;
	params[0] = who->msp_id;
	params[1] = who->device_id;
	params[2] = token;
	if (db_query(app.db, sql_push_token, 3, params, push_token_cb, req) !=
	    0)
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
}

/* Check the claims every device signature carries: did and a fresh iat. */
static int
check_device_claims(struct http_req *req, json_t *claims, const char *device_id,
    const char *field)
{
	json_t *did = json_object_get(claims, "did");
	json_t *iat = json_object_get(claims, "iat");
	long long now = (long long)time(NULL), at;

	if (!json_is_string(did) ||
	    strcasecmp(json_string_value(did), device_id) != 0)
		return api_invalid(req, field, "did is not this device");
	if (!json_is_integer(iat))
		return api_invalid(req, field, "iat is missing");
	at = json_integer_value(iat);
	if (at < now - JWS_MAX_SKEW || at > now + JWS_MAX_SKEW)
		return api_invalid(
		    req, field, "iat is not within 5 minutes of now");
	return 0;
}

/* Claims of a JWS, read without checking the signature yet: only to
   learn which device claims to have signed it. */
static json_t *
peek_claims(const char *jws)
{
	const char *dot1 = strchr(jws, '.'), *dot2;
	uint8_t raw[2048];
	long n;

	if (dot1 == NULL || (dot2 = strchr(dot1 + 1, '.')) == NULL)
		return NULL;
	n = util_b64url_decode(
	    dot1 + 1, (size_t)(dot2 - dot1 - 1), raw, sizeof(raw));
	if (n < 0)
		return NULL;
	return json_loadb((const char *)raw, (size_t)n, 0, NULL);
}

/* A renewal: the device's key arrived; verify and issue. */
struct renew_call {
	struct http_req *req;
	char device_id[UTIL_UUID_LEN + 1];
	char *assertion;
};

static void
renew_key_cb(struct db_result *r, void *arg)
{
	struct renew_call *call = arg;
	const char *cause;
	json_t *claims = NULL;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	if (PQntuples(r->res[0]) == 0) {
		http_reply_problem(call->req, 401, "unauthorized", NULL,
		    "this device is not enrolled or was revoked");
		goto out;
	}
	if (devtoken_check_jws(call->assertion, PQgetvalue(r->res[0], 0, 1),
	        &claims, &cause) != 0) {
		api_invalid(call->req, "assertion", cause);
		goto out;
	}
	if (check_device_claims(
	        call->req, claims, call->device_id, "assertion") != 0)
		goto out;
	reply_token(call->req, 200, PQgetvalue(r->res[0], 0, 0),
	    call->device_id, false);
out:
	json_decref(claims);
	free(call->assertion);
	free(call);
}

/* POST /v1/device/token {assertion} */
void
api_device_token(struct http_req *req)
{
	const char *assertion, *params[1];
	struct renew_call *call;
	json_t *peek;
	const char *did;

	if (api_field_string(
	        req, "assertion", API_REQUIRED, 1, 4096, &assertion) < 0)
		return;
	peek = peek_claims(assertion);
	did = json_string_value(json_object_get(peek, "did"));
	if (did == NULL || !util_uuid_valid(did)) {
		json_decref(peek);
		api_invalid(req, "assertion",
		    "must be a JWS whose claims name the device (did)");
		return;
	}

	call = calloc(1, sizeof(*call));
	if (call == NULL || (call->assertion = strdup(assertion)) == NULL) {
		free(call);
		json_decref(peek);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	snprintf(call->device_id, sizeof(call->device_id), "%s", did);
	json_decref(peek);
	params[0] = call->device_id;
	if (db_query(app.db, sql_device_key, 1, params, renew_key_cb, call) !=
	    0) {
		free(call->assertion);
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* GET /v1/device/prompts */
void
api_device_prompts(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *params[2] = { who->msp_id, who->user_id };

	api_query_object(req, sql_prompts, 2, params, 200, "no prompts");
}

/* A decision waiting for the device key. */
struct decision_call {
	struct http_req *req;
	char *jws;
};

/* Check the signed decision's own claims; -1 after a 422. */
static int
check_decision_claims(struct http_req *req, json_t *claims, const char **result,
    const char **number, char num_text[24])
{
	const struct auth_who *who = api_who(req);
	const char *vid = json_string_value(json_object_get(claims, "vid"));
	const char *res = json_string_value(json_object_get(claims, "res"));
	json_t *num = json_object_get(claims, "num");

	if (check_device_claims(req, claims, who->device_id, "decision") != 0)
		return -1;
	if (vid == NULL || strcasecmp(vid, http_req_param(req, "id")) != 0)
		return api_invalid(req, "decision", "vid is not this prompt");
	if (res == NULL ||
	    (strcmp(res, "approved") != 0 && strcmp(res, "denied") != 0))
		return api_invalid(
		    req, "decision", "res must be \"approved\" or \"denied\"");
	if (num != NULL && !json_is_null(num) && !json_is_integer(num))
		return api_invalid(
		    req, "decision", "num must be an integer or null");

	*result = res;
	*number = NULL;
	if (json_is_integer(num)) {
		snprintf(
		    num_text, 24, "%lld", (long long)json_integer_value(num));
		*number = num_text;
	}
	return 0;
}

/* The device key arrived: verify the JWS, then apply the decision. */
static void
decision_key_cb(struct db_result *r, void *arg)
{
	struct decision_call *call = arg;
	struct http_req *req = call->req;
	const struct auth_who *who = api_who(req);
	const char *cause, *result = NULL, *number = NULL, *params[5];
	char num_text[24];
	json_t *claims = NULL;

	if (r->status != 0) {
		api_reply_db_error(req, r);
		goto out;
	}
	if (PQntuples(r->res[0]) == 0 ||
	    devtoken_check_jws(
	        call->jws, PQgetvalue(r->res[0], 0, 0), &claims, &cause) != 0) {
		api_invalid(req, "decision",
		    PQntuples(r->res[0]) == 0 ? "unknown device" : cause);
		goto out;
	}
	if (check_decision_claims(req, claims, &result, &number, num_text) != 0)
		goto out;

	params[0] = who->msp_id;
	params[1] = http_req_param(req, "id");
	params[2] = who->device_id;
	params[3] = result;
	params[4] = number;
	api_query_object(req, sql_decide, 5, params, 200, "no such prompt");
out:
	json_decref(claims);
	free(call->jws);
	free(call);
}

/* POST /v1/device/prompts/{id}/decision {decision} */
void
api_device_decision(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *jws, *params[2];
	struct decision_call *call;

	if (api_bad_id(req, id, "prompt") ||
	    api_field_string(req, "decision", API_REQUIRED, 1, 4096, &jws) < 0)
		return;
	call = calloc(1, sizeof(*call));
	if (call == NULL || (call->jws = strdup(jws)) == NULL) {
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	params[0] = who->msp_id;
	params[1] = who->device_id;
	if (db_query(app.db, sql_decision_key, 2, params, decision_key_cb,
	        call) != 0) {
		free(call->jws);
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

static const char sql_lockout_report[] =
    "SELECT jsonb_build_object('seq', audit_append($1,"
    " 'account.lockout_reported', 'device', $2, 'user', $3,"
    " jsonb_build_object('device_id', $2::uuid, 'note', $4::text)))::text";

/* POST /v1/device/lockout-report {note?}: "this wasn't me" on a lockout
   alert, recorded for the technicians. */
void
api_device_lockout_report(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *note, *params[4];

	if (api_field_string(req, "note", API_NULLABLE, 0, 1000, &note) < 0)
		return;
	params[0] = who->msp_id;
	params[1] = who->device_id;
	params[2] = who->user_id;
	params[3] = note;
	api_query_object(
	    req, sql_lockout_report, 4, params, 201, "no such user");
}
