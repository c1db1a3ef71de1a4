/*
 * Self-service, for the web page and the app: start a session for a
 * login, prove who is there (a code by SMS or email, or an approval on
 * an enrolled device), then reset the password or unlock the account in
 * the customer's directory, and serve the page itself at /reset. Session
 * routes carry the session token as a bearer credential; the state and
 * its rules live in the selfservice_* functions of the schema.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "conf.h"
#include "devtoken.h"
#include "directory.h"
#include "log.h"
#include "notify.h"
#include "otp.h"
#include "outbox.h"
#include "secretbox.h"
#include "selfservice.h"
#include "util.h"
#include "workers.h"

#define CONF (app.conf)

/* A device signature older or newer than this is refused. */
#define SELFSERVICE_JWS_SKEW 300

static const char sql_start[] =
    "SELECT selfservice_start($1, $2, $3, $4, $5, $6, $7::int, $8::int,"
    " $9::int, $10::int)::text";

static const char sql_started[] = "SELECT selfservice_started($1)";

static const char sql_get[] =
    "SELECT selfservice_json(selfservice_find($1, $2, false))::text";

static const char sql_challenge[] =
    "SELECT result::text, error FROM selfservice_challenge($1, $2, $3, $4,"
    " $5::int, $6::int, $7::int[], $8, $9::int)";

static const char sql_deliver[] =
    "SELECT selfservice_deliver($1, $2, $3, $4, $5, $6::boolean,"
    " $7::boolean)::text";

static const char sql_code_hash[] =
    "SELECT (selfservice_find($1, $2, false)).code_hash";

static const char sql_verify[] =
    "SELECT selfservice_verify($1, $2, $3, $4::boolean)::text";

static const char sql_claim[] =
    "SELECT error, customer_id, url, bind_dn, bind_password, base_dn,"
    " ca_file, login_attribute, login, display_name"
    " FROM selfservice_claim($1, $2, $3, $4::boolean)";

static const char sql_release[] = "SELECT selfservice_release($1, $2, $3)";

static const char sql_finish[] =
    "SELECT selfservice_finish($1, $2, $3::boolean, $4::boolean,"
    " $5::boolean, $6::boolean)::text";

static const char sql_device_key[] =
    "SELECT d.public_key FROM devices d WHERE d.msp_id = $1 AND d.id = $2";

static const char sql_device_start[] =
    "SELECT selfservice_device_start($1, $2, $3, $4, $5, $6::int)::text";

/* Columns of sql_claim. */
enum {
	CLAIM_ERROR,
	CLAIM_CUSTOMER,
	CLAIM_URL,
	CLAIM_BIND_DN,
	CLAIM_PASSWORD,
	CLAIM_BASE_DN,
	CLAIM_CA_FILE,
	CLAIM_LOGIN_ATTR,
	CLAIM_LOGIN,
	CLAIM_NAME,
};

static const char *const purposes[] = { "reset", "unlock", NULL };
static const char *const factors[] = { "push", "sms", "email", NULL };

/* --- replies ----------------------------------------------------------- */

/* Reply with problem details plus the members of extra (stolen). */
static void
reply_problem_extra(struct http_req *req, int status, const char *code,
    const char *field, json_t *extra, const char *detail)
{
	const char *title = status == 409 ? "Conflict"
	    : status == 403               ? "Forbidden"
	    : status == 429               ? "Too Many Requests"
	                                  : "Unprocessable Content";
	char type[96], *text;
	json_t *o;

	snprintf(type, sizeof(type), "urn:vouch:problem:%s", code);
	o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title,
	    "status", status, "detail", detail, "code", code);
	if (o != NULL && field != NULL)
		json_object_set_new(o, "field", json_string(field));
	if (o != NULL && extra != NULL)
		json_object_update(o, extra);
	json_decref(extra);
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	http_reply_body(
	    req, status, "application/problem+json", text, strlen(text));
	free(text);
}

/* The answer for a session that has ended or cannot take the step. */
static void
reply_session_state(struct http_req *req, const char *error, int attempts)
{
	if (strcmp(error, "too_many_attempts") == 0)
		reply_problem_extra(req, 422, "too_many_attempts", "code",
		    json_pack("{s:i}", "attempts_left", attempts),
		    "too many wrong codes: this session is over; start again");
	else if (strcmp(error, "verified") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "the session is already verified");
	else if (strcmp(error, "limit") == 0) {
		http_reply_header(req, "Retry-After", "60");
		http_reply_problem(req, 429, "rate_limited", NULL,
		    "this session may not ask for more codes; start again");
	} else if (strcmp(error, "not_verified") == 0)
		reply_problem_extra(req, 403, "not_verified", NULL, NULL,
		    "prove who you are first (verify the session)");
	else if (strcmp(error, "done") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "this session was used already; start again");
	else if (strcmp(error, "purpose") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "this session was started for something else");
	else if (strcmp(error, "busy") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "a change for this session is under way");
	else if (strcmp(error, "no_directory") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "this account has no directory connection");
	else if (strcmp(error, "no_code") == 0)
		http_reply_problem(req, 409, "conflict", NULL,
		    "no code was sent for this session");
	else
		http_reply_problem(req, 409, "conflict", NULL,
		    "the session has ended (%s); start again", error);
}

/* --- the session credential -------------------------------------------- */

/*
 * The session token of the request as its hash, and the session id of
 * the path; -1 after replying 401 (no or malformed token) or 404.
 */
static int
session_auth(struct http_req *req, char hash[SELFSERVICE_HASH_HEX_LEN + 1])
{
	const char *h = http_req_header(req, "Authorization");
	const char *id = http_req_param(req, "id");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 ||
	    selfservice_token_hash(h + 7 + strspn(h + 7, " "), hash) != 0) {
		http_reply_header(req, "WWW-Authenticate", "Bearer");
		http_reply_problem(req, 401, "unauthorized", NULL,
		    "a self-service session token is required");
		return -1;
	}
	if (api_bad_id(req, id, "session"))
		return -1;
	return 0;
}

/* --- start ------------------------------------------------------------- */

/* A start waiting on the database, with the token to hand out. */
struct start_call {
	struct http_req *req;
	char token[SELFSERVICE_TOKEN_LEN + 1];
	char hash[SELFSERVICE_HASH_HEX_LEN + 1];
};

/* Free a start, wiping the token. */
static void
start_call_free(struct start_call *call)
{
	OPENSSL_cleanse(call->token, sizeof(call->token));
	free(call);
}

/* The start is in the trail (or the login was unknown): done. */
static void
start_recorded_cb(struct db_result *r, void *arg)
{
	struct start_call *call = arg;

	if (r->status != 0)
		log_warn("selfservice", "cannot record a start: %s", r->error);
	start_call_free(call);
}

/* The session row is written: hand out its token, then record the
   start, whatever the login, so the answer never waits on the trail. */
static void
start_done_cb(struct db_result *r, void *arg)
{
	struct start_call *call = arg;
	const char *params[1] = { call->hash };
	json_t *body;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	body = json_loads(PQgetvalue(r->res[0], 0, 0), 0, NULL);
	if (body != NULL)
		json_object_set_new(body, "token", json_string(call->token));
	http_reply_json(call->req, 202, body);
	call->req = NULL;
	if (db_query(app.db, sql_started, 1, params, start_recorded_cb, call) ==
	    0)
		return; /* start_recorded_cb frees the call */
out:
	start_call_free(call);
}

/* A keyed hash of the lower-cased login, for the per-login limit. */
static void
login_key(const char *login, char out[OTP_HASH_HEX_LEN + 1])
{
	char lower[1024];
	size_t i;

	for (i = 0; login[i] != '\0' && i < sizeof(lower) - 1; i++)
		lower[i] = login[i] >= 'A' && login[i] <= 'Z'
		    ? (char)(login[i] - 'A' + 'a')
		    : login[i];
	lower[i] = '\0';
	otp_hash(app.secret_key, "selfservice-login", lower, out);
	OPENSSL_cleanse(lower, sizeof(lower));
}

/* POST /v1/selfservice/sessions {login, purpose} */
void
api_selfservice_start(struct http_req *req)
{
	const char *login, *purpose, *params[10];
	char id[UTIL_UUID_LEN + 1], key[OTP_HASH_HEX_LEN + 1];
	char attempts[16], ttl[16], per_login[16];
	char per_addr[16];
	struct start_call *call;

	if (api_field_string(req, "login", API_REQUIRED, 1, 256, &login) < 0 ||
	    api_field_enum(req, "purpose", API_REQUIRED, purposes, &purpose) <
	        0)
		return;
	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	util_uuid_new(id);
	selfservice_token_new(call->token, call->hash);
	login_key(login, key);
	snprintf(attempts, sizeof(attempts), "%lld",
	    (long long)CONF->selfservice_code_attempts);
	snprintf(
	    ttl, sizeof(ttl), "%lld", (long long)CONF->selfservice_session_ttl);
	snprintf(per_login, sizeof(per_login), "%lld",
	    (long long)CONF->selfservice_login_starts_per_minute);
	snprintf(per_addr, sizeof(per_addr), "%lld",
	    (long long)CONF->selfservice_address_starts_per_minute);

	params[0] = id;
	params[1] = call->hash;
	params[2] = login;
	params[3] = key;
	params[4] = http_req_remote(req);
	params[5] = purpose;
	params[6] = attempts;
	params[7] = ttl;
	params[8] = per_login;
	params[9] = per_addr;
	if (db_query(app.db, sql_start, 10, params, start_done_cb, call) != 0) {
		start_call_free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* GET /v1/selfservice/sessions/{id} */
void
api_selfservice_get(struct http_req *req)
{
	char hash[SELFSERVICE_HASH_HEX_LEN + 1];
	const char *params[2];

	if (session_auth(req, hash) < 0)
		return;
	params[0] = http_req_param(req, "id");
	params[1] = hash;
	api_query_object(req, sql_get, 2, params, 200, "no such session");
}

/* --- challenge --------------------------------------------------------- */

/* A challenge waiting on the database, with the code to wipe after. */
struct challenge_call {
	struct http_req *req;
	char hash[SELFSERVICE_HASH_HEX_LEN + 1];
	char code[9];
	char code_hash[OTP_HASH_HEX_LEN + 1];
	char job[UTIL_UUID_LEN + 1];
	char prompt[UTIL_UUID_LEN + 1];
	char *sealed;
};

/* Free a challenge, wiping the code. */
static void
challenge_call_free(struct challenge_call *call)
{
	OPENSSL_cleanse(call->code, sizeof(call->code));
	free(call->sealed);
	free(call);
}

/* The deliveries are queued (or there were none): send them. */
static void
challenge_queued_cb(struct db_result *r, void *arg)
{
	struct challenge_call *call = arg;

	if (r->status != 0)
		log_warn(
		    "selfservice", "cannot queue a challenge: %s", r->error);
	else if (!PQgetisnull(r->res[0], 0, 0))
		outbox_kick(app.outbox, PQgetvalue(r->res[0], 0, 0));
	challenge_call_free(call);
}

/* Queue what the challenge sends, after its answer has gone. */
static int
challenge_deliver(struct challenge_call *call)
{
	const char *params[7];

	params[0] = call->hash;
	params[1] = call->code_hash;
	params[2] = call->prompt;
	params[3] = call->job;
	params[4] = call->sealed;
	params[5] =
	    app.notify != NULL && notify_can_sms(app.notify) ? "t" : "f";
	params[6] =
	    app.notify != NULL && notify_can_email(app.notify) ? "t" : "f";
	return db_query(
	    app.db, sql_deliver, 7, params, challenge_queued_cb, call);
}

/* The challenge is recorded: answer, then queue what it sends, for
   every session alike. */
static void
challenge_done_cb(struct db_result *r, void *arg)
{
	struct challenge_call *call = arg;
	PGresult *res;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	res = r->res[0];
	if (!PQgetisnull(res, 0, 1)) {
		reply_session_state(call->req, PQgetvalue(res, 0, 1), 0);
		goto out;
	}
	http_reply_body(call->req, 202, "application/json",
	    PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	call->req = NULL;
	if (challenge_deliver(call) == 0)
		return; /* challenge_queued_cb frees the call */
out:
	challenge_call_free(call);
}

/* Numbers of a challenge, as text parameters. */
struct challenge_numbers {
	char ttl[16], match[4], options[16], limit[16];
};

/* Draw the code, its hash, its sealed copy and the match numbers. */
static int
challenge_draw(struct challenge_call *call, const char *session_id,
    struct challenge_numbers *n)
{
	int match, options[3];

	util_uuid_new(call->job);
	util_uuid_new(call->prompt);
	otp_digits(call->code, (int)CONF->verification_code_digits);
	otp_hash(app.secret_key, session_id, call->code, call->code_hash);
	call->sealed = secretbox_seal(
	    app.secret_key, call->job, call->code, strlen(call->code));
	match = otp_uniform(10, 99);
	otp_match_options(match, options, 3);
	snprintf(n->match, sizeof(n->match), "%d", match);
	snprintf(n->options, sizeof(n->options), "{%d,%d,%d}", options[0],
	    options[1], options[2]);
	snprintf(n->ttl, sizeof(n->ttl), "%lld",
	    (long long)CONF->selfservice_code_ttl);
	snprintf(n->limit, sizeof(n->limit), "%lld",
	    (long long)CONF->selfservice_challenge_limit);
	return call->sealed != NULL ? 0 : -1;
}

/* POST /v1/selfservice/sessions/{id}/challenge {factor} */
void
api_selfservice_challenge(struct http_req *req)
{
	const char *factor, *id = http_req_param(req, "id"), *params[9];
	struct challenge_numbers n;
	struct challenge_call *call;

	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	if (session_auth(req, call->hash) < 0 ||
	    api_field_enum(req, "factor", API_REQUIRED, factors, &factor) < 0)
		goto out;

	/* Everything is drawn for every session, known or not. */
	if (challenge_draw(call, id, &n) != 0) {
		http_reply_problem(
		    req, 500, "internal", NULL, "cannot seal the code");
		goto out;
	}
	params[0] = id;
	params[1] = call->hash;
	params[2] = factor;
	params[3] = call->code_hash;
	params[4] = n.ttl;
	params[5] = n.match;
	params[6] = n.options;
	params[7] = call->prompt;
	params[8] = n.limit;
	if (db_query(
	        app.db, sql_challenge, 9, params, challenge_done_cb, call) == 0)
		return; /* challenge_done_cb owns the call */
	http_reply_problem(req, 500, "internal", NULL, "out of memory");
out:
	challenge_call_free(call);
}

/* --- verify ------------------------------------------------------------ */

/* A code check: the typed code, then the hash it was checked against. */
struct verify_call {
	struct http_req *req;
	char hash[SELFSERVICE_HASH_HEX_LEN + 1];
	char code[9];
	char checked[OTP_HASH_HEX_LEN + 1];
};

/* Free a code check, wiping the code. */
static void
verify_call_free(struct verify_call *call)
{
	OPENSSL_cleanse(call->code, sizeof(call->code));
	free(call);
}

/* The result of the check is applied: answer. */
static void
verify_done_cb(struct db_result *r, void *arg)
{
	struct verify_call *call = arg;
	json_t *body = NULL, *left;
	const char *error;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	body = json_loads(PQgetvalue(r->res[0], 0, 0), 0, NULL);
	error = json_string_value(json_object_get(body, "error"));
	left = json_object_get(body, "attempts_left");
	if (error == NULL) {
		http_reply_json(
		    call->req, 200, json_pack("{s:b}", "verified", 1));
	} else if (strcmp(error, "wrong_code") == 0) {
		reply_problem_extra(call->req, 422, "wrong_code", "code",
		    json_pack("{s:O}", "attempts_left", left),
		    "code: the code is not right");
	} else if (strcmp(error, "code_expired") == 0) {
		reply_problem_extra(call->req, 422, "code_expired", "code",
		    NULL, "code: the code has expired; ask for a new one");
	} else {
		reply_session_state(
		    call->req, error, (int)json_integer_value(left));
	}
out:
	json_decref(body);
	verify_call_free(call);
}

/* The stored hash arrived: compare in constant time, then apply. */
static void
verify_hash_cb(struct db_result *r, void *arg)
{
	struct verify_call *call = arg;
	const char *params[4];
	bool ok = false;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	if (!PQgetisnull(r->res[0], 0, 0)) {
		snprintf(call->checked, sizeof(call->checked), "%s",
		    PQgetvalue(r->res[0], 0, 0));
		ok = otp_check(app.secret_key, http_req_param(call->req, "id"),
		    call->code, call->checked);
	}

	params[0] = http_req_param(call->req, "id");
	params[1] = call->hash;
	params[2] = call->checked[0] != '\0' ? call->checked : NULL;
	params[3] = ok ? "t" : "f";
	if (db_query(app.db, sql_verify, 4, params, verify_done_cb, call) == 0)
		return; /* verify_done_cb owns the call now */
	http_reply_problem(call->req, 500, "internal", NULL, "out of memory");
out:
	verify_call_free(call);
}

/* POST /v1/selfservice/sessions/{id}/verify {code} */
void
api_selfservice_verify(struct http_req *req)
{
	const char *code, *params[2];
	struct verify_call *call;
	size_t i;

	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	if (session_auth(req, call->hash) < 0 ||
	    api_field_string(req, "code", API_REQUIRED, 6, 8, &code) < 0) {
		verify_call_free(call);
		return;
	}
	for (i = 0; code[i] != '\0'; i++) {
		if (code[i] < '0' || code[i] > '9') {
			verify_call_free(call);
			api_invalid(req, "code", "must be 6 to 8 digits");
			return;
		}
	}
	snprintf(call->code, sizeof(call->code), "%s", code);
	params[0] = http_req_param(req, "id");
	params[1] = call->hash;
	if (db_query(app.db, sql_code_hash, 2, params, verify_hash_cb, call) !=
	    0) {
		verify_call_free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* --- directory changes: policy, reset, unlock -------------------------- */

enum change_kind {
	CHANGE_POLICY, /* read the rules a new password must meet */
	CHANGE_RESET,
	CHANGE_UNLOCK,
};

/* A directory change from the claim of the session to its end. */
struct change_call {
	struct http_req *req;
	enum change_kind kind;
	char hash[SELFSERVICE_HASH_HEX_LEN + 1];
	char object[32]; /* "selfservice 1a2b3c4d" */
	bool unlock;     /* a reset that also unlocks */
	bool unlocked;
	char *password;      /* the new one; wiped */
	char *bind_password; /* wiped */
	size_t bind_len;
	char *url, *bind_dn, *base_dn, *ca_file, *login, *display_name;
	enum directory_login login_attr;
	int banned; /* the list's answer: 1, 0, -1 */
	/* The reply sent once the session is released. */
	int status;
	const char *code;
	const char *rule;
	char detail[200];
};

/* Free a change, wiping the secrets. */
static void
change_call_free(struct change_call *call)
{
	if (call->password != NULL) {
		OPENSSL_cleanse(call->password, strlen(call->password));
		free(call->password);
	}
	if (call->bind_password != NULL) {
		OPENSSL_cleanse(call->bind_password, call->bind_len);
		free(call->bind_password);
	}
	free(call->url);
	free(call->bind_dn);
	free(call->base_dn);
	free(call->ca_file);
	free(call->login);
	free(call->display_name);
	free(call);
}

/* The directory settings of the claimed session. */
static void
change_settings(const struct change_call *call, struct directory_settings *ds)
{
	memset(ds, 0, sizeof(*ds));
	ds->url = call->url;
	ds->bind_dn = call->bind_dn;
	ds->bind_password = call->bind_password;
	ds->base_dn = call->base_dn;
	ds->ca_file = call->ca_file;
	ds->login = call->login_attr;
}

/* The session is released: send the reply that was kept for it. */
static void
change_released_cb(struct db_result *r, void *arg)
{
	struct change_call *call = arg;

	if (r->status != 0)
		log_warn(
		    call->object, "cannot release the session: %s", r->error);
	if (call->rule != NULL)
		reply_problem_extra(call->req, call->status, call->code,
		    "new_password", json_pack("{s:s}", "rule", call->rule),
		    call->detail);
	else
		http_reply_problem(call->req, call->status, call->code, NULL,
		    "%s", call->detail);
	change_call_free(call);
}

/* End the change without touching the directory (more): release the
   session (recording a refused rule), then reply. */
static void
change_fail(struct change_call *call, int status, const char *code,
    const char *rule, const char *detail)
{
	const char *params[3];

	call->status = status;
	call->code = code;
	call->rule = rule;
	snprintf(call->detail, sizeof(call->detail), "%s", detail);
	if (call->kind == CHANGE_POLICY) {
		change_released_cb(&(struct db_result){ .status = 0 }, call);
		return;
	}
	params[0] = http_req_param(call->req, "id");
	params[1] = call->hash;
	params[2] = rule;
	if (db_query(
	        app.db, sql_release, 3, params, change_released_cb, call) != 0)
		change_released_cb(&(struct db_result){ .status = -1,
		                       .error = "out of memory" },
		    call);
}

/* A directory failure as the reply the user sees. */
static void
change_directory_failed(struct change_call *call,
    const struct directory_result *r, const char *what)
{
	log_warn(call->object, "%s failed: %s: %s", what,
	    directory_status_name(r->status), r->detail);
	if (r->status == DIRECTORY_UNREACHABLE)
		change_fail(call, 503, "unavailable", NULL,
		    "the directory cannot be reached; try again shortly");
	else if (r->status == DIRECTORY_NO_SUCH_USER)
		change_fail(call, 409, "conflict", NULL,
		    "the account was not found in the directory");
	else
		change_fail(call, 502, "directory_failed", NULL,
		    "the directory refused the change; call your helpdesk");
}

/* The change is recorded: tell the user's devices or mailbox, answer. */
static void
change_finished_cb(struct db_result *r, void *arg)
{
	struct change_call *call = arg;
	json_t *body;

	if (r->status != 0) {
		log_error(call->object,
		    "the directory changed but the record "
		    "failed: %s",
		    r->error);
		api_reply_db_error(call->req, r);
		goto out;
	}
	if (!PQgetisnull(r->res[0], 0, 0))
		outbox_kick(app.outbox, PQgetvalue(r->res[0], 0, 0));
	body = json_pack("{s:s, s:b, s:b}", "status", "done", "password_reset",
	    call->kind == CHANGE_RESET, "unlocked", call->unlocked);
	http_reply_json(call->req, 200, body);
out:
	change_call_free(call);
}

/* The directory has changed: record it and end the session. */
static void
change_finish(struct change_call *call)
{
	const char *params[6];

	log_info(call->object, "%s%s",
	    call->kind == CHANGE_RESET ? "password reset" : "account unlocked",
	    call->kind == CHANGE_RESET && call->unlocked
	        ? " and account unlocked"
	        : "");
	params[0] = http_req_param(call->req, "id");
	params[1] = call->hash;
	params[2] = call->kind == CHANGE_RESET ? "t" : "f";
	params[3] = call->unlocked ? "t" : "f";
	params[4] =
	    app.notify != NULL && notify_can_sms(app.notify) ? "t" : "f";
	params[5] =
	    app.notify != NULL && notify_can_email(app.notify) ? "t" : "f";
	if (db_query(app.db, sql_finish, 6, params, change_finished_cb, call) !=
	    0) {
		http_reply_problem(
		    call->req, 500, "internal", NULL, "out of memory");
		change_call_free(call);
	}
}

/* The lockout is cleared (or clearing it failed). */
static void
change_unlocked_cb(const struct directory_result *r, void *arg)
{
	struct change_call *call = arg;

	if (r->status != DIRECTORY_OK && call->kind == CHANGE_UNLOCK) {
		change_directory_failed(call, r, "unlock");
		return;
	}
	if (r->status != DIRECTORY_OK)
		log_warn(call->object,
		    "password reset, but unlock failed: "
		    "%s: %s",
		    directory_status_name(r->status), r->detail);
	call->unlocked = r->status == DIRECTORY_OK;
	change_finish(call);
}

/* Clear the account's lockout. */
static void
change_unlock(struct change_call *call)
{
	struct directory_settings ds;

	change_settings(call, &ds);
	if (directory_unlock(
	        app.workers, &ds, call->login, change_unlocked_cb, call) != 0)
		change_fail(call, 503, "unavailable", NULL,
		    "the directory workers are busy; try again shortly");
}

/* The directory answered the new password. */
static void
change_reset_cb(const struct directory_result *r, void *arg)
{
	struct change_call *call = arg;

	if (r->status == DIRECTORY_POLICY_VIOLATION) {
		log_info(call->object,
		    "the directory refused the new "
		    "password: %s",
		    r->detail);
		change_fail(call, 422, "password_policy", "directory",
		    "the domain refused this password (too like your name "
		    "or a recent password, or too simple); choose another");
		return;
	}
	if (r->status != DIRECTORY_OK) {
		change_directory_failed(call, r, "reset");
		return;
	}
	if (call->unlock)
		change_unlock(call);
	else
		change_finish(call);
}

/* Hand the new password to the directory. */
static void
change_reset(struct change_call *call)
{
	struct directory_settings ds;

	change_settings(call, &ds);
	if (directory_reset_password(app.workers, &ds, call->login,
	        call->password, change_reset_cb, call) != 0)
		change_fail(call, 503, "unavailable", NULL,
		    "the directory workers are busy; try again shortly");
}

/* Runs on a worker: search the banned-password list. */
static void
change_banned_run_cb(void *arg)
{
	struct change_call *call = arg;

	call->banned = selfservice_banned_check(
	    CONF->selfservice_banned_passwords_file, call->password);
}

/* The list answered. */
static void
change_banned_done_cb(void *arg, bool cancelled)
{
	struct change_call *call = arg;

	if (cancelled || call->banned < 0) {
		log_error(call->object,
		    "cannot search the banned-password "
		    "list %s",
		    CONF->selfservice_banned_passwords_file);
		change_fail(call, 503, "unavailable", NULL,
		    "the password cannot be checked now; try again shortly");
	} else if (call->banned > 0) {
		change_fail(call, 422, "password_policy", "banned",
		    "this password is known from data breaches; choose "
		    "another");
	} else {
		change_reset(call);
	}
}

/* The domain's rules and ours, before the directory sees the password. */
static void
change_check(struct change_call *call, const struct directory_policy *p)
{
	struct selfservice_rules rules = {
		.min_length = p->min_length,
		.complexity = p->complexity,
		.login = call->login,
		.display_name = call->display_name,
	};
	const char *rule;
	char detail[200];

	if (rules.min_length < CONF->selfservice_min_password_length)
		rules.min_length = (int)CONF->selfservice_min_password_length;
	if (selfservice_password_check(
	        call->password, &rules, &rule, detail, sizeof(detail)) != 0) {
		change_fail(call, 422, "password_policy", rule, detail);
		return;
	}
	if (CONF->selfservice_banned_passwords_file == NULL) {
		change_reset(call);
		return;
	}
	if (workers_submit(app.workers, change_banned_run_cb,
	        change_banned_done_cb, call) != 0)
		change_fail(call, 503, "unavailable", NULL,
		    "the password cannot be checked now; try again shortly");
}

/* The domain's password policy arrived. */
static void
change_policy_cb(const struct directory_result *r, void *arg)
{
	struct change_call *call = arg;
	int min_length;

	if (r->status != DIRECTORY_OK) {
		change_directory_failed(call, r, "reading the policy");
		return;
	}
	if (call->kind == CHANGE_RESET) {
		change_check(call, &r->policy);
		return;
	}
	min_length = r->policy.min_length;
	if (min_length < CONF->selfservice_min_password_length)
		min_length = (int)CONF->selfservice_min_password_length;
	http_reply_json(call->req, 200,
	    json_pack("{s:i, s:i, s:b, s:b, s:b}", "min_length", min_length,
	        "max_length", SELFSERVICE_PASSWORD_MAX, "complexity",
	        r->policy.complexity, "excludes_name", 1, "banned_list",
	        CONF->selfservice_banned_passwords_file != NULL));
	change_call_free(call);
}

/* Copy the claimed directory settings into the call; -1 when the
   stored bind password does not open. */
static int
change_take_settings(struct change_call *call, PGresult *res)
{
	const char *customer = PQgetvalue(res, 0, CLAIM_CUSTOMER);

	call->bind_password = secretbox_open(app.secret_key, customer,
	    PQgetvalue(res, 0, CLAIM_PASSWORD), &call->bind_len);
	if (call->bind_password == NULL)
		return -1;
	call->url = strdup(PQgetvalue(res, 0, CLAIM_URL));
	call->bind_dn = strdup(PQgetvalue(res, 0, CLAIM_BIND_DN));
	call->base_dn = strdup(PQgetvalue(res, 0, CLAIM_BASE_DN));
	call->ca_file = PQgetisnull(res, 0, CLAIM_CA_FILE)
	    ? NULL
	    : strdup(PQgetvalue(res, 0, CLAIM_CA_FILE));
	call->login = strdup(PQgetvalue(res, 0, CLAIM_LOGIN));
	call->display_name = strdup(PQgetvalue(res, 0, CLAIM_NAME));
	call->login_attr =
	    strcmp(PQgetvalue(res, 0, CLAIM_LOGIN_ATTR), "sAMAccountName") == 0
	    ? DIRECTORY_LOGIN_SAM
	    : DIRECTORY_LOGIN_UPN;
	if (call->url == NULL || call->bind_dn == NULL ||
	    call->base_dn == NULL || call->login == NULL ||
	    call->display_name == NULL)
		return -1;
	return 0;
}

/* The session is claimed: start on the directory. */
static void
change_claimed_cb(struct db_result *r, void *arg)
{
	struct change_call *call = arg;
	struct directory_settings ds;
	PGresult *res;
	int rc;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	res = r->res[0];
	if (!PQgetisnull(res, 0, CLAIM_ERROR)) {
		reply_session_state(
		    call->req, PQgetvalue(res, 0, CLAIM_ERROR), 0);
		goto out;
	}

	/* The session is taken: from here every end releases it. */
	if (change_take_settings(call, res) != 0) {
		log_error(call->object,
		    "the directory settings of the "
		    "session's customer cannot be used");
		change_fail(call, 500, "internal", NULL,
		    "the directory settings cannot be used");
		return;
	}

	change_settings(call, &ds);
	if (call->kind == CHANGE_UNLOCK)
		rc = directory_unlock(
		    app.workers, &ds, call->login, change_unlocked_cb, call);
	else
		rc = directory_read_policy(
		    app.workers, &ds, change_policy_cb, call);
	if (rc != 0)
		change_fail(call, 503, "unavailable", NULL,
		    "the directory workers are busy; try again shortly");
	return;
out:
	change_call_free(call);
}

/* Claim the session for a change of the given kind. */
static void
change_start(struct http_req *req, struct change_call *call)
{
	const char *params[4];

	snprintf(call->object, sizeof(call->object), "selfservice %.8s",
	    http_req_param(req, "id"));
	params[0] = http_req_param(req, "id");
	params[1] = call->hash;
	params[2] = call->kind == CHANGE_UNLOCK ? "unlock" : "reset";
	params[3] = call->kind == CHANGE_POLICY ? "f" : "t";
	if (db_query(app.db, sql_claim, 4, params, change_claimed_cb, call) !=
	    0) {
		change_call_free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* A new change call for req, after its credential is checked. */
static struct change_call *
change_new(struct http_req *req, enum change_kind kind)
{
	struct change_call *call = calloc(1, sizeof(*call));

	if (call == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return NULL;
	}
	call->req = req;
	call->kind = kind;
	if (session_auth(req, call->hash) < 0) {
		change_call_free(call);
		return NULL;
	}
	return call;
}

/* GET /v1/selfservice/sessions/{id}/policy: the rules of a new password
   (verified sessions only). */
void
api_selfservice_policy(struct http_req *req)
{
	struct change_call *call = change_new(req, CHANGE_POLICY);

	if (call != NULL)
		change_start(req, call);
}

/* POST /v1/selfservice/sessions/{id}/password {new_password, unlock?} */
void
api_selfservice_password(struct http_req *req)
{
	struct change_call *call = change_new(req, CHANGE_RESET);
	const char *password;
	json_t *unlock;

	if (call == NULL)
		return;
	if (api_field_string(req, "new_password", API_REQUIRED, 1,
	        SELFSERVICE_PASSWORD_MAX, &password) < 0) {
		change_call_free(call);
		return;
	}
	unlock = json_object_get(http_req_json(req), "unlock");
	if (unlock != NULL && !json_is_boolean(unlock) &&
	    !json_is_null(unlock)) {
		change_call_free(call);
		api_invalid(req, "unlock", "must be true or false");
		return;
	}
	call->unlock = json_is_true(unlock);
	call->password = strdup(password);
	if (call->password == NULL) {
		change_call_free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	change_start(req, call);
}

/* POST /v1/selfservice/sessions/{id}/unlock */
void
api_selfservice_unlock(struct http_req *req)
{
	struct change_call *call = change_new(req, CHANGE_UNLOCK);

	if (call != NULL)
		change_start(req, call);
}

/* --- from the app ------------------------------------------------------ */

/* A start from the app: the device key, then the session. */
struct device_call {
	struct http_req *req;
	char *assertion;
	const char *purpose; /* one of purposes[] */
	char token[SELFSERVICE_TOKEN_LEN + 1];
};

/* Free a device start, wiping the token. */
static void
device_call_free(struct device_call *call)
{
	OPENSSL_cleanse(call->token, sizeof(call->token));
	free(call->assertion);
	free(call);
}

/* The verified session is written: hand out its token. */
static void
device_started_cb(struct db_result *r, void *arg)
{
	struct device_call *call = arg;
	json_t *body;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	body = json_loads(PQgetvalue(r->res[0], 0, 0), 0, NULL);
	if (body != NULL)
		json_object_set_new(body, "token", json_string(call->token));
	http_reply_json(call->req, 201, body);
out:
	device_call_free(call);
}

/* Check the assertion's claims: this device, fresh, this purpose. */
static int
device_claims_ok(struct device_call *call, json_t *claims)
{
	const struct auth_who *who = api_who(call->req);
	const char *did = json_string_value(json_object_get(claims, "did"));
	const char *purpose =
	    json_string_value(json_object_get(claims, "purpose"));
	json_t *iat = json_object_get(claims, "iat");
	long long now = (long long)time(NULL);

	if (did == NULL || strcasecmp(did, who->device_id) != 0)
		return api_invalid(
		    call->req, "assertion", "did is not this device");
	if (!json_is_integer(iat) ||
	    json_integer_value(iat) < now - SELFSERVICE_JWS_SKEW ||
	    json_integer_value(iat) > now + SELFSERVICE_JWS_SKEW)
		return api_invalid(call->req, "assertion",
		    "iat is not within 5 minutes of now");
	if (purpose == NULL || strcmp(purpose, call->purpose) != 0)
		return api_invalid(call->req, "assertion",
		    "purpose is not the purpose asked for");
	return 0;
}

/* The device key arrived: check the signature, then start. */
static void
device_key_cb(struct db_result *r, void *arg)
{
	struct device_call *call = arg;
	const struct auth_who *who = api_who(call->req);
	char id[UTIL_UUID_LEN + 1], hash[SELFSERVICE_HASH_HEX_LEN + 1];
	char ttl[16];
	const char *cause, *params[6];
	json_t *claims = NULL;

	if (r->status != 0) {
		api_reply_db_error(call->req, r);
		goto out;
	}
	if (PQntuples(r->res[0]) == 0 ||
	    devtoken_check_jws(call->assertion, PQgetvalue(r->res[0], 0, 0),
	        &claims, &cause) != 0) {
		api_invalid(call->req, "assertion",
		    PQntuples(r->res[0]) == 0 ? "unknown device" : cause);
		goto out;
	}
	if (device_claims_ok(call, claims) != 0)
		goto out;

	util_uuid_new(id);
	selfservice_token_new(call->token, hash);
	snprintf(
	    ttl, sizeof(ttl), "%lld", (long long)CONF->selfservice_session_ttl);
	params[0] = who->msp_id;
	params[1] = who->device_id;
	params[2] = id;
	params[3] = hash;
	params[4] = call->purpose;
	params[5] = ttl;
	if (db_query(app.db, sql_device_start, 6, params, device_started_cb,
	        call) == 0)
		call = NULL; /* device_started_cb owns it now */
	else
		http_reply_problem(
		    call->req, 500, "internal", NULL, "out of memory");
out:
	json_decref(claims);
	if (call != NULL)
		device_call_free(call);
}

/* POST /v1/device/selfservice {purpose, assertion} */
void
api_device_selfservice(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *purpose, *assertion, *params[2];
	struct device_call *call;
	size_t i;

	if (api_field_enum(req, "purpose", API_REQUIRED, purposes, &purpose) <
	        0 ||
	    api_field_string(
	        req, "assertion", API_REQUIRED, 1, 4096, &assertion) < 0)
		return;
	call = calloc(1, sizeof(*call));
	if (call == NULL || (call->assertion = strdup(assertion)) == NULL) {
		free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	call->req = req;
	for (i = 0; purposes[i] != NULL; i++)
		if (strcmp(purpose, purposes[i]) == 0)
			call->purpose = purposes[i];
	params[0] = who->msp_id;
	params[1] = who->device_id;
	if (db_query(app.db, sql_device_key, 2, params, device_key_cb, call) !=
	    0) {
		device_call_free(call);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* --- the page ---------------------------------------------------------- */

/* The embedded page (server/reset_page.html, by ops/embed-file). */
extern const char reset_page_html[];
extern const size_t reset_page_html_len;

/* GET /reset: the self-service page, under a policy that allows its own
   inline script and style and nothing else. */
void
api_reset_page(struct http_req *req)
{
	static char csp[1024];
	static bool ready;

	if (!ready) {
		if (selfservice_page_csp(reset_page_html, reset_page_html_len,
		        csp, sizeof(csp)) != 0) {
			log_error("selfservice",
			    "the page's policy cannot be "
			    "built");
			http_reply_problem(req, 500, "internal", NULL,
			    "the page cannot be served");
			return;
		}
		ready = true;
	}
	http_reply_header(req, "Content-Security-Policy", csp);
	http_reply_header(req, "X-Frame-Options", "DENY");
	http_reply_header(req, "Referrer-Policy", "no-referrer");
	http_reply_header(req, "Cross-Origin-Opener-Policy", "same-origin");
	http_reply_body(req, 200, "text/html; charset=utf-8", reset_page_html,
	    reset_page_html_len);
}
