/*
 * The outbox dispatcher. Each round trip leases a batch of due jobs and
 * joins what sending needs (device, user, MSP, verification); each job
 * then goes to APNs, FCM, SMTP or the SMS API, and its outcome goes back
 * through outbox_report(), which retries, marks dead device tokens and
 * settles the verification. A job is in memory only while in flight.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "db.h"
#include "log.h"
#include "notify.h"
#include "otp.h"
#include "outbox.h"
#include "push.h"
#include "secretbox.h"
#include "util.h"

/* Columns of sql_claim, in order. */
enum {
	COL_MSP,
	COL_ID,
	COL_KIND,
	COL_TEMPLATE,
	COL_VERIFICATION,
	COL_USER,
	COL_PAYLOAD,
	COL_ATTEMPTS,
	COL_PLATFORM,
	COL_PUSH_TOKEN,
	COL_EMAIL,
	COL_PHONE,
	COL_MSP_NAME,
	COL_EXPIRES,
	COL_DIRECTION,
	COL_TECH_NAME,
	COL_PROMPT,
};

static const char sql_claim[] =
    "SELECT c.msp_id, c.id, c.kind, c.template, c.verification_id,"
    " c.user_id, c.payload, c.attempts, d.platform, d.push_token, u.email,"
    " u.phone, m.name,"
    " extract(epoch FROM coalesce(v.expires_at, c.give_up_at))::bigint,"
    " v.direction, t.display_name, c.prompt_id"
    " FROM outbox_claim($1::uuid[], $2::int, $3::int) c"
    " JOIN msps m ON m.id = c.msp_id"
    " JOIN users u ON u.msp_id = c.msp_id AND u.id = c.user_id"
    " LEFT JOIN devices d ON d.msp_id = c.msp_id AND d.id = c.device_id"
    " LEFT JOIN verifications v ON v.msp_id = c.msp_id"
    "  AND v.id = c.verification_id"
    " LEFT JOIN technicians t ON t.msp_id = v.msp_id"
    "  AND t.id = v.technician_id";

static const char sql_report[] =
    "SELECT outbox_report($1, $2, $3, $4::int, $5)";

struct outbox {
	struct event_base *base;
	struct db *db;
	struct outbox_settings s;
	struct push_client *apns;
	struct push_client *fcm;
	struct notify *notify;
	struct event *poll_timer;
	bool polling; /* a poll query is out */
	uint64_t claimed;
	uint64_t outcomes[4]; /* delivered, retry, dead, failed */
};

/* One claimed job, alive while its send and its report are out. */
struct outbox_job {
	struct outbox *ob;
	char msp_id[UTIL_UUID_LEN + 1];
	char id[UTIL_UUID_LEN + 1];
	int attempts;
	char object[48]; /* "outbox 1a2b3c4d" for logs */
};

/* What a job produced, for the report. */
struct outbox_result {
	const char *outcome; /* delivered|retry|token_dead|failed */
	unsigned delay_ms;
	const char *error;
};

/* Create the dispatcher; nothing runs until outbox_start. */
struct outbox *
outbox_new(
    struct event_base *base, struct db *db, const struct outbox_settings *s)
{
	struct outbox *ob = calloc(1, sizeof(*ob));

	if (ob == NULL)
		return NULL;
	ob->base = base;
	ob->db = db;
	ob->s = *s;
	return ob;
}

/* Attach the senders. */
void
outbox_channels(struct outbox *ob, struct push_client *apns,
    struct push_client *fcm, struct notify *notify)
{
	ob->apns = apns;
	ob->fcm = fcm;
	ob->notify = notify;
}

/* Stop polling and free. */
void
outbox_free(struct outbox *ob)
{
	if (ob == NULL)
		return;
	if (ob->poll_timer != NULL)
		event_free(ob->poll_timer);
	free(ob);
}

/* The report is stored; the job is over for this process. */
static void
outbox_reported_cb(struct db_result *r, void *arg)
{
	struct outbox_job *job = arg;

	if (r->status != 0)
		log_warn(job->object,
		    "cannot record the outcome: %s; the "
		    "lease will expire and the job run again",
		    r->error);
	free(job);
}

/* Back-off for a retry: the provider's delay or 2^attempts seconds. */
static unsigned
outbox_backoff_ms(unsigned asked_ms, int attempts)
{
	unsigned ms = 1000u
	    << (attempts > 5 ? 5 : (attempts < 1 ? 0 : attempts - 1));

	ms += (unsigned)otp_uniform(0, (int)ms / 4);
	return asked_ms > ms ? asked_ms : ms;
}

/* Hand the outcome of a send to outbox_report(). */
static void
outbox_report(struct outbox_job *job, const char *outcome, unsigned delay_ms,
    const char *error)
{
	struct outbox *ob = job->ob;
	const char *params[5];
	char delay[16];

	if (strcmp(outcome, "delivered") == 0)
		ob->outcomes[0]++;
	else if (strcmp(outcome, "retry") == 0)
		ob->outcomes[1]++;
	else if (strcmp(outcome, "token_dead") == 0)
		ob->outcomes[2]++;
	else
		ob->outcomes[3]++;

	if (strcmp(outcome, "retry") == 0)
		delay_ms = outbox_backoff_ms(delay_ms, job->attempts);
	snprintf(delay, sizeof(delay), "%u", delay_ms);
	if (strcmp(outcome, "delivered") != 0)
		log_info(job->object, "%s%s%s", outcome, error ? ": " : "",
		    error ? error : "");
	else
		log_debug(job->object, "delivered");

	params[0] = job->msp_id;
	params[1] = job->id;
	params[2] = outcome;
	params[3] = delay;
	params[4] = error;
	if (db_query(ob->db, sql_report, 5, params, outbox_reported_cb, job) !=
	    0)
		free(job);
}

/* A push completed. */
static void
outbox_push_done_cb(void *arg, const struct push_result *res)
{
	struct outbox_job *job = arg;
	char error[160];

	snprintf(error, sizeof(error), "%d %s", res->status,
	    res->reason ? res->reason : "");
	outbox_report(job, push_outcome_str(res->outcome), res->retry_ms,
	    res->outcome == PUSH_OUTCOME_DELIVERED ? NULL : error);
}

/* An email or SMS completed. */
static void
outbox_notify_done_cb(const struct notify_result *res, void *arg)
{
	struct outbox_job *job = arg;

	switch (res->outcome) {
	case NOTIFY_SENT:
		outbox_report(job, "delivered", 0, NULL);
		break;
	case NOTIFY_RETRY:
		outbox_report(job, "retry",
		    res->retry_after > 0 ? (unsigned)res->retry_after * 1000
		                         : 0,
		    res->detail);
		break;
	default:
		outbox_report(job, "failed", 0, res->detail);
		break;
	}
}

/* The title and body a phone shows for a push of this template. */
static void
outbox_push_text(
    PGresult *res, int row, char *title, size_t tsize, char *body, size_t bsize)
{
	const char *template = PQgetvalue(res, row, COL_TEMPLATE);
	const char *msp = PQgetvalue(res, row, COL_MSP_NAME);

	if (strcmp(template, "prompt") == 0 &&
	    strcmp(PQgetvalue(res, row, COL_DIRECTION), "verify_technician") ==
	        0) {
		snprintf(title, tsize, "%s is calling you", msp);
		snprintf(body, bsize,
		    "%s says they are from %s. Open vouch "
		    "to check the number they read out.",
		    PQgetvalue(res, row, COL_TECH_NAME), msp);
	} else if (strcmp(template, "prompt") == 0) {
		snprintf(title, tsize, "Are you on a call with %s?", msp);
		snprintf(body, bsize,
		    "Open vouch and pick the number the "
		    "technician reads out. Deny if you did not call.");
	} else if (strcmp(template, "selfservice") == 0) {
		snprintf(title, tsize, "%s: is this you?", msp);
		snprintf(body, bsize, "%s", PQgetvalue(res, row, COL_PAYLOAD));
	} else {
		snprintf(title, tsize, "%s", msp);
		snprintf(body, bsize, "%s",
		    PQgetisnull(res, row, COL_PAYLOAD)
		        ? "Open vouch for details."
		        : PQgetvalue(res, row, COL_PAYLOAD));
	}
}

/* The push type sent to the app: "prompt" (a verification or a
   self-service prompt) or the template of an alert or notice. */
static const char *
outbox_push_type(PGresult *res, int row)
{
	const char *template = PQgetvalue(res, row, COL_TEMPLATE);

	return strcmp(template, "selfservice") == 0 ? "prompt" : template;
}

/* The app's notification category: which buttons the alert shows. */
static const char *
outbox_push_category(PGresult *res, int row)
{
	const char *template = PQgetvalue(res, row, COL_TEMPLATE);

	if (strcmp(template, "prompt") == 0 ||
	    strcmp(template, "selfservice") == 0)
		return "VOUCH_PROMPT";
	if (strcmp(template, "password_reset") == 0 ||
	    strcmp(template, "account_unlocked") == 0)
		return "VOUCH_NOTICE"; /* "this wasn't me" */
	if (strcmp(template, "account_locked") == 0)
		return "VOUCH_LOCKOUT"; /* "unlock me", "this wasn't me" */
	return "VOUCH_PASSWORD";
}

/* Build the APNs payload of a job. */
static char *
outbox_apns_payload(PGresult *res, int row, const char *object_id)
{
	char title[160], body[320];
	json_t *payload;
	char *text;

	outbox_push_text(res, row, title, sizeof(title), body, sizeof(body));
	payload = json_pack("{s:{s:{s:s, s:s}, s:s, s:s}, s:{s:s, s:s}}", "aps",
	    "alert", "title", title, "body", body, "sound", "default",
	    "category", outbox_push_category(res, row), "vouch", "type",
	    outbox_push_type(res, row), "id", object_id);
	text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	json_decref(payload);
	return text;
}

/* Build the FCM message (without the token) of a job. */
static char *
outbox_fcm_message(PGresult *res, int row, const char *object_id, long long ttl)
{
	char ttl_text[24];
	json_t *message;
	char *text;

	snprintf(ttl_text, sizeof(ttl_text), "%llds", ttl < 0 ? 0 : ttl);
	message = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "data",
	    "vouch_type", outbox_push_type(res, row), "vouch_id", object_id,
	    "android", "priority", "HIGH", "ttl", ttl_text);
	text = message ? json_dumps(message, JSON_COMPACT) : NULL;
	json_decref(message);
	return text;
}

/* Send a push job to APNs or FCM. */
static void
outbox_send_push(struct outbox_job *job, PGresult *res, int row)
{
	struct outbox *ob = job->ob;
	const char *platform = PQgetvalue(res, row, COL_PLATFORM);
	const char *object_id = !PQgetisnull(res, row, COL_VERIFICATION)
	    ? PQgetvalue(res, row, COL_VERIFICATION)
	    : !PQgetisnull(res, row, COL_PROMPT)
	    ? PQgetvalue(res, row, COL_PROMPT)
	    : job->id;
	long long expires = atoll(PQgetvalue(res, row, COL_EXPIRES));
	struct push_client *client;
	struct push_note note = { 0 };
	struct push_result rejected = { 0 };
	char *payload;

	client = strcmp(platform, "ios") == 0 ? ob->apns : ob->fcm;
	if (client == NULL || PQgetisnull(res, row, COL_PUSH_TOKEN)) {
		outbox_report(job, "failed", 0,
		    strcmp(platform, "ios") == 0 ? "APNs is not configured"
		                                 : "FCM is not configured");
		return;
	}

	if (client == ob->apns) {
		payload = outbox_apns_payload(res, row, object_id);
		note.push_type = "alert";
		note.priority = 10;
		note.has_expiration = 1;
		note.expiration = expires;
		note.collapse_id = object_id;
	} else {
		payload = outbox_fcm_message(
		    res, row, object_id, expires - (long long)time(NULL));
	}
	if (payload == NULL) {
		outbox_report(job, "retry", 0, "out of memory");
		return;
	}
	note.device_token = PQgetvalue(res, row, COL_PUSH_TOKEN);
	note.payload = payload;
	if (push_submit(client, &note, outbox_push_done_cb, job, &rejected) !=
	    0)
		outbox_report(job, push_outcome_str(rejected.outcome),
		    rejected.retry_ms, rejected.reason);
	free(payload);
}

/* The subject and text of a code or enrolment message. */
static void
outbox_message_text(PGresult *res, int row, const char *code, char *subject,
    size_t ssize, char *text, size_t tsize)
{
	const char *msp = PQgetvalue(res, row, COL_MSP_NAME);
	long long left =
	    atoll(PQgetvalue(res, row, COL_EXPIRES)) - (long long)time(NULL);
	long long minutes = left < 60 ? 1 : left / 60;

	if (strcmp(PQgetvalue(res, row, COL_TEMPLATE), "enroll") == 0) {
		snprintf(subject, ssize, "%s: your vouch enrolment code", msp);
		snprintf(text, tsize,
		    "%s: your vouch enrolment code is %s. "
		    "Type it into the vouch app on your own phone. It works "
		    "once and expires in %lld hours.",
		    msp, code, minutes / 60 < 1 ? 1 : minutes / 60);
		return;
	}
	if (strcmp(PQgetvalue(res, row, COL_TEMPLATE), "selfservice_code") ==
	    0) {
		snprintf(subject, ssize, "%s: your self-service code", msp);
		snprintf(text, tsize,
		    "%s self-service code: %s. Type it into "
		    "the reset page yourself; nobody from %s will ever ask you "
		    "for it. Expires in %lld min.",
		    msp, code, msp, minutes);
		return;
	}
	snprintf(subject, ssize, "%s: your code", msp);
	snprintf(text, tsize,
	    "%s code: %s. Only read it out on a call you "
	    "made to %s's helpdesk; never to someone who called you. "
	    "Expires in %lld min.",
	    msp, code, msp, minutes);
}

/* True for templates whose payload is a sealed code. */
static bool
outbox_template_sealed(PGresult *res, int row)
{
	const char *template = PQgetvalue(res, row, COL_TEMPLATE);

	return strcmp(template, "code") == 0 ||
	    strcmp(template, "enroll") == 0 ||
	    strcmp(template, "selfservice_code") == 0;
}

/* Send an alert by SMS or email: the payload is its text. */
static void
outbox_send_alert(struct outbox_job *job, PGresult *res, int row)
{
	struct outbox *ob = job->ob;
	const char *text = PQgetvalue(res, row, COL_PAYLOAD);
	const char *template = PQgetvalue(res, row, COL_TEMPLATE);
	char subject[200];

	snprintf(subject, sizeof(subject), "%s: %s",
	    PQgetvalue(res, row, COL_MSP_NAME),
	    strcmp(template, "account_locked") == 0 ? "your account is locked"
	        : strcmp(template, "password_reset") == 0
	        ? "your password was reset"
	        : strcmp(template, "account_unlocked") == 0
	        ? "your account was unlocked"
	        : "your password");
	if (ob->notify == NULL)
		outbox_report(job, "failed", 0, "channel not configured");
	else if (strcmp(PQgetvalue(res, row, COL_KIND), "sms") == 0)
		notify_sms(ob->notify, PQgetvalue(res, row, COL_PHONE), text,
		    outbox_notify_done_cb, job);
	else
		notify_email(ob->notify, PQgetvalue(res, row, COL_EMAIL),
		    subject, text, outbox_notify_done_cb, job);
}

/* Send a code by SMS or email. */
static void
outbox_send_message(struct outbox_job *job, PGresult *res, int row)
{
	struct outbox *ob = job->ob;
	const char *kind = PQgetvalue(res, row, COL_KIND);
	const char *context = PQgetisnull(res, row, COL_VERIFICATION)
	    ? job->id
	    : PQgetvalue(res, row, COL_VERIFICATION);
	char subject[200], text[600], *code;
	size_t len = 0;

	if (!outbox_template_sealed(res, row)) {
		outbox_send_alert(job, res, row);
		return;
	}
	code = PQgetisnull(res, row, COL_PAYLOAD)
	    ? NULL
	    : secretbox_open(ob->s.secret_key, context,
	          PQgetvalue(res, row, COL_PAYLOAD), &len);
	if (code == NULL) {
		outbox_report(
		    job, "failed", 0, "the sealed code does not open");
		return;
	}
	outbox_message_text(
	    res, row, code, subject, sizeof(subject), text, sizeof(text));
	OPENSSL_cleanse(code, len);
	free(code);

	if (ob->notify == NULL)
		outbox_report(job, "failed", 0, "channel not configured");
	else if (strcmp(kind, "sms") == 0)
		notify_sms(ob->notify, PQgetvalue(res, row, COL_PHONE), text,
		    outbox_notify_done_cb, job);
	else
		notify_email(ob->notify, PQgetvalue(res, row, COL_EMAIL),
		    subject, text, outbox_notify_done_cb, job);
	OPENSSL_cleanse(text, sizeof(text));
}

/* Start one claimed job. */
static void
outbox_start_job(struct outbox *ob, PGresult *res, int row)
{
	struct outbox_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return; /* the lease runs out and the job comes back */
	job->ob = ob;
	snprintf(job->msp_id, sizeof(job->msp_id), "%s",
	    PQgetvalue(res, row, COL_MSP));
	snprintf(job->id, sizeof(job->id), "%s", PQgetvalue(res, row, COL_ID));
	job->attempts = atoi(PQgetvalue(res, row, COL_ATTEMPTS));
	snprintf(job->object, sizeof(job->object), "outbox %.8s %s", job->id,
	    PQgetvalue(res, row, COL_KIND));
	ob->claimed++;

	if (strcmp(PQgetvalue(res, row, COL_KIND), "push") == 0)
		outbox_send_push(job, res, row);
	else
		outbox_send_message(job, res, row);
}

/* Claimed jobs arrived: send each. */
static void
outbox_claimed_cb(struct db_result *r, void *arg)
{
	struct outbox *ob = arg;
	int i;

	if (r->status != 0) {
		log_debug("outbox", "claim failed: %s", r->error);
		return;
	}
	for (i = 0; i < PQntuples(r->res[0]); i++)
		outbox_start_job(ob, r->res[0], i);
}

/* A poll's claim arrived: send, then allow the next poll. */
static void
outbox_polled_cb(struct db_result *r, void *arg)
{
	struct outbox *ob = arg;

	ob->polling = false;
	outbox_claimed_cb(r, ob);
}

/* Claim jobs: the given ids, or any due ones when ids is NULL. */
static int
outbox_claim(struct outbox *ob, const char *ids, db_done_cb cb)
{
	char batch[16], lease[16];
	const char *params[3];

	snprintf(batch, sizeof(batch), "%d", ob->s.batch);
	snprintf(lease, sizeof(lease), "%d", ob->s.lease_seconds);
	params[0] = ids;
	params[1] = batch;
	params[2] = lease;
	return db_query(ob->db, sql_claim, 3, params, cb, ob);
}

/* Send jobs another transaction just wrote. */
void
outbox_kick(struct outbox *ob, const char *job_ids)
{
	if (job_ids == NULL || job_ids[0] == '\0')
		return;
	if (outbox_claim(ob, job_ids, outbox_claimed_cb) != 0)
		log_warn("outbox", "cannot claim new jobs; the poll will");
}

/* Timer: look for due jobs (retries, and jobs other processes left). */
static void
outbox_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct outbox *ob = arg;

	if (ob->polling)
		return;
	if (outbox_claim(ob, NULL, outbox_polled_cb) == 0)
		ob->polling = true;
}

/* Start the poll timer. */
void
outbox_start(struct outbox *ob)
{
	struct timeval tv = {
		.tv_sec = ob->s.poll_ms / 1000,
		.tv_usec = (ob->s.poll_ms % 1000) * 1000,
	};

	ob->poll_timer =
	    event_new(ob->base, -1, EV_PERSIST, outbox_poll_cb, ob);
	if (ob->poll_timer == NULL || event_add(ob->poll_timer, &tv) != 0)
		fatal("outbox", "cannot start the poll timer");
}

/* Prometheus lines of the dispatcher. */
void
outbox_metrics(const struct outbox *ob, struct evbuffer *out)
{
	static const char *const names[] = {
		"delivered",
		"retry",
		"token_dead",
		"failed",
	};
	size_t i;

	evbuffer_add_printf(out,
	    "# HELP vouch_outbox_claimed_total Jobs "
	    "leased by this process.\n# TYPE vouch_outbox_claimed_total "
	    "counter\nvouch_outbox_claimed_total %llu\n",
	    (unsigned long long)ob->claimed);
	evbuffer_add_printf(out,
	    "# HELP vouch_outbox_outcomes_total Job "
	    "outcomes by kind.\n# TYPE vouch_outbox_outcomes_total counter\n");
	for (i = 0; i < 4; i++)
		evbuffer_add_printf(out,
		    "vouch_outbox_outcomes_total"
		    "{outcome=\"%s\"} %llu\n",
		    names[i], (unsigned long long)ob->outcomes[i]);
}
