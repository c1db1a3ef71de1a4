/*
 * fake_apns: a strict stand-in for Apple's push provider API for tests.
 * It checks each request in the order push.md gives (method, path,
 * headers, provider token, payload), answers with APNs statuses and
 * reasons, limits a connection to one stream until a valid token, and
 * follows a fault plan. --fast skips all of that for benchmarks.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <jansson.h>
#include <jwt.h>

#include "fakeutil.h"
#include "h2srv.h"
#include "plan.h"
#include "record.h"

#define APNS_PATH_PREFIX "/3/device/"
#define APNS_PAYLOAD_MAX 4096
#define APNS_TOKEN_MAX_AGE 3600 /* seconds a provider token lives */
#define APNS_TOKEN_SKEW 60      /* seconds of clock skew allowed */
#define APNS_UPDATE_WINDOW 1200 /* token updates counted over this */
#define APNS_TOKEN_CACHE 32     /* verified provider tokens kept */
#define APNS_UPDATES_KEPT 256   /* accepted-token times kept */
#define APNS_CONN_RAISED 1      /* udata: stream limit already set */

/* A provider token whose signature and claims checked out. */
struct apns_token {
	char *jwt;
	json_t *header;
	json_t *claims;
	int64_t iat;
	int64_t first_seen;
	bool rejected; /* past the update limit: 429 */
};

struct apns {
	struct h2srv *srv;
	struct plan *plan;
	const char *plan_path;
	const char *team_id;
	const char *key_id;
	const char *topic;
	char *pubkey;
	size_t pubkey_len;
	unsigned token_updates;
	uint32_t max_streams;
	bool fast;
	uint64_t nreq;

	struct apns_token tokens[APNS_TOKEN_CACHE];
	size_t next_token;
	int64_t updates[APNS_UPDATES_KEPT];
	size_t next_update;
};

/* The outcome of checking one request. */
struct apns_check {
	int status;
	const char *reason;
	bool auth_ok;
	json_t *jwt; /* {"header","claims"} or NULL */
};

static const char *const apns_push_types[] = {
	"alert",
	"background",
	"location",
	"voip",
	"complication",
	"fileprovider",
	"mdm",
	"liveactivity",
	"pushtotalk",
	"widgets",
	"controls",
	NULL,
};

/* Set the failure in CHK unless an earlier check already failed. */
static void
apns_fail(struct apns_check *chk, int status, const char *reason)
{
	if (chk->status != 200)
		return;
	chk->status = status;
	chk->reason = reason;
}

/* The reason APNs gives for STATUS when a plan rule names none. */
static const char *
apns_default_reason(int status)
{
	switch (status) {
	case 400:
		return "BadDeviceToken";
	case 403:
		return "Forbidden";
	case 404:
		return "BadPath";
	case 405:
		return "MethodNotAllowed";
	case 410:
		return "Unregistered";
	case 413:
		return "PayloadTooLarge";
	case 429:
		return "TooManyRequests";
	case 503:
		return "ServiceUnavailable";
	default:
		return "InternalServerError";
	}
}

/* The device token in PATH, or NULL when PATH is not a device path. */
static const char *
apns_device_token(const char *path)
{
	size_t plen = strlen(APNS_PATH_PREFIX);

	if (strncmp(path, APNS_PATH_PREFIX, plen) != 0)
		return NULL;
	return path + plen;
}

/* A bundle id: letters, digits, dots, dashes and underscores. */
static bool
apns_topic_ok(const char *topic)
{
	const char *p;

	if (*topic == '\0')
		return false;
	for (p = topic; *p != '\0'; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '.' && *p != '-' &&
		    *p != '_')
			return false;
	return true;
}

/* True when S is non-empty and all decimal digits. */
static bool
apns_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Check method, path and device token. */
static void
apns_check_path(struct h2srv_req *req, struct apns_check *chk)
{
	const char *token;

	if (strcmp(h2srv_req_method(req), "POST") != 0) {
		apns_fail(chk, 405, "MethodNotAllowed");
		return;
	}
	token = apns_device_token(h2srv_req_path(req));
	if (token == NULL)
		apns_fail(chk, 404, "BadPath");
	else if (*token == '\0')
		apns_fail(chk, 400, "MissingDeviceToken");
	else if (!fakeutil_is_hex(token, 64))
		apns_fail(chk, 400, "BadDeviceToken");
}

/* Check the topic against the one allowed. */
static void
apns_check_topic(struct apns *a, const char *topic, struct apns_check *chk)
{
	size_t tlen = strlen(a->topic);

	if (topic == NULL)
		apns_fail(chk, 400, "MissingTopic");
	else if (!apns_topic_ok(topic))
		apns_fail(chk, 400, "BadTopic");
	else if (strcmp(topic, a->topic) == 0)
		return;
	else if (strncmp(topic, a->topic, tlen) == 0 && topic[tlen] == '.')
		apns_fail(chk, 400, "DeviceTokenNotForTopic");
	else
		apns_fail(chk, 400, "TopicDisallowed");
}

/* True when some regular header name occurs twice. */
static bool
apns_duplicate_headers(struct h2srv_req *req)
{
	const char *n1, *n2, *v;
	size_t i, j, n = h2srv_req_nheaders(req);

	for (i = 0; i < n; i++) {
		h2srv_req_header_at(req, i, &n1, &v);
		for (j = i + 1; j < n; j++) {
			h2srv_req_header_at(req, j, &n2, &v);
			if (strcmp(n1, n2) == 0)
				return true;
		}
	}
	return false;
}

/* Check the apns-* headers in push.md's order, then duplicates. */
static void
apns_check_headers(
    struct apns *a, struct h2srv_req *req, struct apns_check *chk)
{
	const char *id = h2srv_req_header(req, "apns-id");
	const char *collapse = h2srv_req_header(req, "apns-collapse-id");
	const char *prio = h2srv_req_header(req, "apns-priority");
	const char *type = h2srv_req_header(req, "apns-push-type");
	const char *exp = h2srv_req_header(req, "apns-expiration");
	size_t i;

	if (id != NULL && !fakeutil_is_uuid(id))
		apns_fail(chk, 400, "BadMessageId");
	apns_check_topic(a, h2srv_req_header(req, "apns-topic"), chk);
	if (collapse != NULL && strlen(collapse) > 64)
		apns_fail(chk, 400, "BadCollapseId");
	if (prio != NULL && strcmp(prio, "10") != 0 && strcmp(prio, "5") != 0 &&
	    strcmp(prio, "1") != 0)
		apns_fail(chk, 400, "BadPriority");
	if (type != NULL) {
		for (i = 0; apns_push_types[i] != NULL; i++)
			if (strcmp(type, apns_push_types[i]) == 0)
				break;
		if (apns_push_types[i] == NULL)
			apns_fail(chk, 400, "InvalidPushType");
	}
	if (exp != NULL && !apns_digits(exp))
		apns_fail(chk, 400, "BadExpirationDate");
	if (apns_duplicate_headers(req))
		apns_fail(chk, 400, "DuplicateHeaders");
}

/* A cached verified token equal to JWT, or NULL. */
static struct apns_token *
apns_token_find(struct apns *a, const char *jwt)
{
	size_t i;

	for (i = 0; i < APNS_TOKEN_CACHE; i++)
		if (a->tokens[i].jwt != NULL &&
		    strcmp(a->tokens[i].jwt, jwt) == 0)
			return &a->tokens[i];
	return NULL;
}

/*
 * Verify a provider token: ES256 and our key id from its header (pinned
 * before libjwt sees it), the signature with the configured key, iss =
 * team and an integer iat. Returns 0 with *IAT set, or -1.
 */
static int
apns_token_verify(struct apns *a, const char *token, json_t *header,
    json_t *claims, int64_t *iat)
{
	const char *alg, *kid, *iss;
	jwt_t *jwt = NULL;
	json_t *v;
	int rv = -1;

	alg = json_string_value(json_object_get(header, "alg"));
	kid = json_string_value(json_object_get(header, "kid"));
	if (alg == NULL || strcmp(alg, "ES256") != 0 || kid == NULL ||
	    strcmp(kid, a->key_id) != 0)
		return -1;
	v = json_object_get(claims, "iat");
	if (!json_is_integer(v))
		return -1;

	if (jwt_decode(&jwt, token, (const unsigned char *)a->pubkey,
	        (int)a->pubkey_len) != 0)
		goto out;
	if (jwt_get_alg(jwt) != JWT_ALG_ES256)
		goto out;
	iss = jwt_get_grant(jwt, "iss");
	if (iss == NULL || strcmp(iss, a->team_id) != 0)
		goto out;
	*iat = json_integer_value(v);
	rv = 0;

out:
	jwt_free(jwt);
	return rv;
}

/* How many accepted tokens were first seen inside the update window. */
static size_t
apns_recent_updates(const struct apns *a, int64_t now)
{
	size_t i, n = 0;

	for (i = 0; i < APNS_UPDATES_KEPT; i++)
		if (a->updates[i] != 0 &&
		    a->updates[i] > now - APNS_UPDATE_WINDOW)
			n++;
	return n;
}

/*
 * Remember a newly verified fresh token, counting it against the update
 * limit, and record it. Returns the cache entry.
 */
static struct apns_token *
apns_token_add(struct apns *a, struct h2srv_conn *conn, const char *jwt,
    json_t *header, json_t *claims, int64_t iat)
{
	struct apns_token *t = &a->tokens[a->next_token];
	int64_t now = fakeutil_now();
	size_t recent = apns_recent_updates(a, now);
	json_t *ev;

	a->next_token = (a->next_token + 1) % APNS_TOKEN_CACHE;
	free(t->jwt);
	json_decref(t->header);
	json_decref(t->claims);
	t->jwt = strdup(jwt);
	t->header = json_incref(header);
	t->claims = json_incref(claims);
	t->iat = iat;
	t->first_seen = now;
	t->rejected = recent > a->token_updates;
	if (!t->rejected) {
		a->updates[a->next_update] = now;
		a->next_update = (a->next_update + 1) % APNS_UPDATES_KEPT;
	}

	if (record_on()) {
		ev = record_event("token", h2srv_conn_id(conn));
		json_object_set_new(ev, "key_id", json_string(a->key_id));
		json_object_set_new(ev, "iat", json_integer(iat));
		json_object_set_new(
		    ev, "updates", json_integer((json_int_t)recent));
		json_object_set_new(ev, "accepted", json_boolean(!t->rejected));
		record_put(ev);
	}
	return t;
}

/* The iat of a verified token must be recent and not in the future. */
static void
apns_check_iat(int64_t iat, struct apns_check *chk)
{
	int64_t now = fakeutil_now();

	if (now - iat > APNS_TOKEN_MAX_AGE)
		apns_fail(chk, 403, "ExpiredProviderToken");
	else if (iat - now > APNS_TOKEN_SKEW)
		apns_fail(chk, 403, "InvalidProviderToken");
}

/* Keep the decoded token for the record. */
static void
apns_keep_jwt(struct apns_check *chk, json_t *header, json_t *claims)
{
	chk->jwt = json_object();
	json_object_set(chk->jwt, "header", header);
	json_object_set(chk->jwt, "claims", claims);
}

/* Check the bearer provider token, caching verified ones. */
static void
apns_check_auth(struct apns *a, struct h2srv_req *req, struct apns_check *chk)
{
	const char *auth = h2srv_req_header(req, "authorization");
	json_t *header = NULL, *claims = NULL;
	struct apns_token *t;
	int64_t iat;

	if (auth == NULL || *auth == '\0') {
		apns_fail(chk, 403, "MissingProviderToken");
		return;
	}
	if (strncasecmp(auth, "bearer ", 7) != 0) {
		apns_fail(chk, 403, "InvalidProviderToken");
		return;
	}
	auth += 7;

	t = apns_token_find(a, auth);
	if (t != NULL) {
		apns_keep_jwt(chk, t->header, t->claims);
	} else if (fakeutil_jwt_peek(auth, &header, &claims) < 0) {
		apns_fail(chk, 403, "InvalidProviderToken");
		return;
	} else {
		apns_keep_jwt(chk, header, claims);
		if (apns_token_verify(a, auth, header, claims, &iat) < 0)
			apns_fail(chk, 403, "InvalidProviderToken");
		else
			apns_check_iat(iat, chk);
		if (chk->status == 200)
			t = apns_token_add(
			    a, h2srv_req_conn(req), auth, header, claims, iat);
		json_decref(header);
		json_decref(claims);
	}
	if (t == NULL)
		return;

	apns_check_iat(t->iat, chk);
	if (t->rejected)
		apns_fail(chk, 429, "TooManyProviderTokenUpdates");
	if (chk->status == 200)
		chk->auth_ok = true;
}

/* The payload: not empty, at most 4096 bytes, a JSON object. */
static void
apns_check_payload(struct h2srv_req *req, struct apns_check *chk)
{
	size_t len, total;
	const char *body = h2srv_req_body(req, &len, &total);
	json_t *root;

	if (total == 0) {
		apns_fail(chk, 400, "PayloadEmpty");
		return;
	}
	if (total > APNS_PAYLOAD_MAX) {
		apns_fail(chk, 413, "PayloadTooLarge");
		return;
	}
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root))
		apns_fail(chk, 400, "PayloadEmpty");
	json_decref(root);
}

/* Run every check in order; the first failure wins. */
static void
apns_check(struct apns *a, struct h2srv_req *req, struct apns_check *chk)
{
	chk->status = 200;
	apns_check_path(req, chk);
	if (chk->status == 200)
		apns_check_headers(a, req, chk);
	if (chk->status == 200)
		apns_check_auth(a, req, chk);
	if (chk->status == 200)
		apns_check_payload(req, chk);
}

/* Send the answer: apns-id always, a JSON reason on errors. */
static void
apns_answer(struct h2srv_req *req, int status, const char *reason,
    const struct plan_rule *rule)
{
	struct h2srv_hdr hdrs[3];
	struct h2srv_resp resp = { 0 };
	const char *id = h2srv_req_header(req, "apns-id");
	char newid[37], retry[16];
	char *body = NULL;
	json_t *obj;

	if (id == NULL || !fakeutil_is_uuid(id)) {
		fakeutil_uuid(newid);
		id = newid;
	}
	hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "apns-id", id };
	if (rule != NULL && rule->retry_after >= 0) {
		snprintf(retry, sizeof(retry), "%d", rule->retry_after);
		hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "retry-after", retry };
	}
	if (status != 200) {
		obj = json_pack("{s:s}", "reason", reason);
		if (status == 410)
			json_object_set_new(obj, "timestamp",
			    json_integer(rule != NULL && rule->has_timestamp
			            ? rule->timestamp
			            : fakeutil_now_ms()));
		body = json_dumps(obj, JSON_COMPACT);
		json_decref(obj);
		hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "content-type",
			"application/json; charset=utf-8" };
	}

	resp.status = status;
	resp.hdrs = hdrs;
	resp.body = body;
	resp.len = body != NULL ? strlen(body) : 0;
	resp.delay_ms = rule != NULL ? rule->delay_ms : 0;
	h2srv_respond(req, &resp);
	free(body);
}

/* Apply a rule that does not answer; returns its action name or NULL. */
static const char *
apns_fault(const struct plan_rule *rule, struct h2srv_req *req)
{
	if (rule == NULL)
		return NULL;
	if (rule->close) {
		h2srv_close(h2srv_req_conn(req), "plan close");
		return "close";
	}
	if (rule->goaway) {
		h2srv_goaway(req, rule->reason);
		return "goaway";
	}
	if (rule->refuse) {
		h2srv_refuse(req);
		return "refuse";
	}
	if (rule->stall)
		return "stall";
	return NULL;
}

/* Finish and write the request record. */
static void
apns_record(struct h2srv_req *req, uint64_t n, json_t *jwt, int status,
    const char *reason, const char *action)
{
	json_t *ev = h2srv_req_record(req, n);

	if (ev == NULL)
		return;
	json_object_set(ev, "jwt", jwt != NULL ? jwt : json_null());
	json_object_set_new(
	    ev, "status", status > 0 ? json_integer(status) : json_null());
	json_object_set_new(
	    ev, "reason", reason != NULL ? json_string(reason) : json_null());
	json_object_set_new(ev, "action", json_string(action));
	record_put(ev);
}

/* Raise or lower the connection's stream limit as the request earned. */
static void
apns_adjust_streams(struct apns *a, struct h2srv_req *req,
    const struct apns_check *chk, const struct plan_rule *rule)
{
	struct h2srv_conn *conn = h2srv_req_conn(req);

	if (rule != NULL && rule->max_streams >= 0) {
		h2srv_set_max_streams(conn, (uint32_t)rule->max_streams);
		h2srv_conn_set_udata(conn, APNS_CONN_RAISED);
		return;
	}
	if (chk->auth_ok && h2srv_conn_udata(conn) != APNS_CONN_RAISED) {
		h2srv_set_max_streams(conn, a->max_streams);
		h2srv_conn_set_udata(conn, APNS_CONN_RAISED);
	}
}

/* One complete request: plan faults, checks, answer, record. */
static void
apns_request_cb(struct h2srv_req *req, void *arg)
{
	struct apns *a = arg;
	struct apns_check chk = { 0 };
	const struct plan_rule *rule;
	const char *action, *reason;
	uint64_t n = ++a->nreq;
	int status;

	rule = plan_match(a->plan, n, h2srv_req_path(req),
	    apns_device_token(h2srv_req_path(req)));
	action = apns_fault(rule, req);
	if (action != NULL) {
		apns_record(req, n, NULL, 0, NULL, action);
		return;
	}

	apns_check(a, req, &chk);
	status = chk.status;
	reason = chk.reason;
	if (status == 200 && rule != NULL && rule->status > 200) {
		status = rule->status;
		reason = rule->reason != NULL ? rule->reason
		                              : apns_default_reason(status);
	}
	apns_answer(req, status, reason, rule);
	apns_adjust_streams(a, req, &chk, rule);
	apns_record(req, n, chk.jwt, status, status == 200 ? NULL : reason,
	    rule != NULL && rule->delay_ms > 0 ? "delay" : "answer");
	json_decref(chk.jwt);
}

/* --fast: 200 with an apns-id at once, nothing checked or recorded. */
static void
apns_fast_cb(struct h2srv_req *req, void *arg)
{
	const char *id = h2srv_req_header(req, "apns-id");
	struct h2srv_hdr hdr;
	struct h2srv_resp resp = { 0 };
	char newid[37];

	if (id == NULL) {
		fakeutil_uuid(newid);
		id = newid;
	}
	hdr.name = "apns-id";
	hdr.value = id;
	resp.status = 200;
	resp.hdrs = &hdr;
	resp.nhdrs = 1;
	h2srv_respond(req, &resp);
}

/* SIGHUP: re-read the plan, keeping the old one if the new one is bad. */
static void
apns_hup(void *arg)
{
	struct apns *a = arg;
	char err[256];

	if (a->plan_path == NULL || a->fast)
		return;
	if (plan_reload(a->plan_path, &a->plan, err, sizeof(err)) < 0) {
		fprintf(
		    stderr, "fake_apns: plan %s kept: %s\n", a->plan_path, err);
		return;
	}
	h2srv_set_ignore_pings(a->srv, a->plan->ignore_pings);
}

/* Read a whole file into a NUL-terminated buffer (caller frees). */
static char *
apns_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	long size;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))) {
		*len = fread(buf, 1, (size_t)size, f);
		buf[*len] = '\0';
	}
	fclose(f);
	return buf;
}

/* Print the command line and exit 2. */
static void
apns_usage(void)
{
	fprintf(stderr,
	    "usage: fake_apns --cert FILE --key FILE [--listen ADDR:PORT]\n"
	    "    [--plan FILE] [--record FILE] [--fast] [--max-streams N]\n"
	    "    [--ping-strikes N] --team-id T --key-id K --public-key FILE\n"
	    "    --topic BUNDLE [--token-updates N]\n");
	exit(2);
}

/* Parse a non-negative integer option or exit. */
static unsigned long
apns_number(const char *name, const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || *s == '\0' || v > max)
		fakeutil_die("--%s wants a number up to %lu", name, max);
	return v;
}

struct apns_opts {
	struct h2srv_config cfg;
	const char *record;
	const char *pubkey_path;
	bool fast;
};

/* Fill A and O from the command line. */
static void
apns_parse(int argc, char **argv, struct apns *a, struct apns_opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "plan", required_argument, NULL, 'p' },
		{ "record", required_argument, NULL, 'r' },
		{ "fast", no_argument, NULL, 'f' },
		{ "max-streams", required_argument, NULL, 'm' },
		{ "ping-strikes", required_argument, NULL, 's' },
		{ "team-id", required_argument, NULL, 'T' },
		{ "key-id", required_argument, NULL, 'K' },
		{ "public-key", required_argument, NULL, 'P' },
		{ "topic", required_argument, NULL, 't' },
		{ "token-updates", required_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->cfg.listen = optarg;
			break;
		case 'c':
			o->cfg.cert = optarg;
			break;
		case 'k':
			o->cfg.key = optarg;
			break;
		case 'p':
			a->plan_path = optarg;
			break;
		case 'r':
			o->record = optarg;
			break;
		case 'f':
			o->fast = true;
			break;
		case 'm':
			a->max_streams = (uint32_t)apns_number(
			    "max-streams", optarg, INT32_MAX);
			break;
		case 's':
			o->cfg.ping_strikes =
			    (unsigned)apns_number("ping-strikes", optarg, 1000);
			break;
		case 'T':
			a->team_id = optarg;
			break;
		case 'K':
			a->key_id = optarg;
			break;
		case 'P':
			o->pubkey_path = optarg;
			break;
		case 't':
			a->topic = optarg;
			break;
		case 'u':
			a->token_updates = (unsigned)apns_number(
			    "token-updates", optarg, 1000000);
			break;
		default:
			apns_usage();
		}
	}
	if (optind != argc || o->cfg.cert == NULL || o->cfg.key == NULL)
		apns_usage();
	if (!o->fast &&
	    (a->team_id == NULL || a->key_id == NULL || a->topic == NULL ||
	        o->pubkey_path == NULL))
		apns_usage();
}

/* Load the key, plan and record that normal mode needs. */
static void
apns_load(struct apns *a, struct apns_opts *o)
{
	char err[256];

	a->pubkey = apns_slurp(o->pubkey_path, &a->pubkey_len);
	if (a->pubkey == NULL)
		fakeutil_die(
		    "cannot read %s: %s", o->pubkey_path, strerror(errno));
	if (a->plan_path != NULL) {
		a->plan = plan_load(a->plan_path, err, sizeof(err));
		if (a->plan == NULL)
			fakeutil_die("plan: %s", err);
	}
	if (o->record != NULL && record_open(o->record) < 0)
		fakeutil_die("cannot open %s: %s", o->record, strerror(errno));
}

/* Free the token cache and the rest of the fake's state. */
static void
apns_free(struct apns *a)
{
	size_t i;

	for (i = 0; i < APNS_TOKEN_CACHE; i++) {
		free(a->tokens[i].jwt);
		json_decref(a->tokens[i].header);
		json_decref(a->tokens[i].claims);
	}
	plan_free(a->plan);
	free(a->pubkey);
}

/* Parse options, load what is needed, serve until SIGTERM. */
int
main(int argc, char **argv)
{
	struct apns a = { .max_streams = 1000, .token_updates = 2 };
	struct apns_opts o = { .cfg.listen = "127.0.0.1:0" };
	struct event_base *base;
	int rv;

	fakeutil_set_prog("fake_apns");
	apns_parse(argc, argv, &a, &o);
	a.fast = o.fast;
	if (!o.fast)
		apns_load(&a, &o);

	base = event_base_new();
	if (base == NULL)
		fakeutil_die("cannot create the event loop");
	o.cfg.initial_streams = o.fast ? a.max_streams : 1;
	o.cfg.request_cb = o.fast ? apns_fast_cb : apns_request_cb;
	o.cfg.arg = &a;
	a.srv = h2srv_new(base, &o.cfg);
	if (a.srv == NULL)
		fakeutil_die("cannot start the server");
	if (a.plan != NULL)
		h2srv_set_ignore_pings(a.srv, a.plan->ignore_pings);

	rv = h2srv_run(a.srv, apns_hup, &a);
	h2srv_free(a.srv);
	apns_free(&a);
	record_close();
	event_base_free(base);
	return rv == 0 ? 0 : 1;
}
