/*
 * The sync loop: claim due directories, read each on the worker pool,
 * then apply the users and evaluate alerts in one transaction. The
 * users go to PostgreSQL as one JSON array, so a sync of thousands of
 * users is a single round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "db.h"
#include "directory.h"
#include "log.h"
#include "outbox.h"
#include "secretbox.h"
#include "sync.h"
#include "util.h"

#define SYNC_CLAIM_BATCH "4"

/* Columns of sql_claim. */
enum {
	COL_MSP,
	COL_CUSTOMER,
	COL_URL,
	COL_BIND_DN,
	COL_PASSWORD,
	COL_BASE_DN,
	COL_CA_FILE,
	COL_LOGIN_ATTR,
	COL_FULL,
	COL_LAST_USN,
};

static const char sql_claim[] =
    "SELECT d.msp_id, d.customer_id, d.url, d.bind_dn, d.bind_password,"
    " d.base_dn, d.ca_file, d.login_attribute,"
    " d.full_sync OR d.last_full_sync_at IS NULL"
    "  OR d.last_full_sync_at < now() - interval '1 hour', d.last_usn"
    " FROM directory_claim($1::int, $2::int) d";

static const char sql_failed[] = "SELECT directory_failed($1, $2, $3)";

static const char sql_apply[] =
    "SELECT directory_apply($1, $2, $3::jsonb, $4::boolean, $5::bigint)";

static const char sql_alerts[] =
    "SELECT alerts_evaluate($1, $2, $3::boolean, $4::boolean)::text";

struct sync {
	struct event_base *base;
	struct db *db;
	struct workers *workers;
	struct outbox *outbox;
	struct sync_settings s;
	struct event *timer;
	bool polling;
	int running; /* syncs in flight */
};

/* One customer's sync in flight. */
struct sync_job {
	struct sync *sync;
	char msp_id[UTIL_UUID_LEN + 1];
	char customer_id[UTIL_UUID_LEN + 1];
	char object[40]; /* "sync 1a2b3c4d" */
	bool full;
};

/* Create the sync loop. */
struct sync *
sync_new(struct event_base *base, struct db *db, struct workers *workers,
    struct outbox *outbox, const struct sync_settings *s)
{
	struct sync *sync = calloc(1, sizeof(*sync));

	if (sync == NULL)
		return NULL;
	sync->base = base;
	sync->db = db;
	sync->workers = workers;
	sync->outbox = outbox;
	sync->s = *s;
	return sync;
}

/* Stop polling and free. */
void
sync_free(struct sync *sync)
{
	if (sync == NULL)
		return;
	if (sync->timer != NULL)
		event_free(sync->timer);
	free(sync);
}

/* The end of one job, whatever its outcome. */
static void
sync_job_free(struct sync_job *job)
{
	job->sync->running--;
	free(job);
}

/* A statement about the job finished; log a failure. */
static void
sync_recorded_cb(struct db_result *r, void *arg)
{
	struct sync_job *job = arg;

	if (r->status != 0)
		log_warn(job->object, "cannot record the sync: %s", r->error);
	sync_job_free(job);
}

/* Record a failed sync (retried with back-off by the database). */
static void
sync_fail(struct sync_job *job, const char *why)
{
	const char *params[3] = { job->msp_id, job->customer_id, why };

	log_warn(job->object, "sync failed: %s", why);
	if (db_query(job->sync->db, sql_failed, 3, params, sync_recorded_cb,
	        job) != 0)
		sync_job_free(job);
}

/* A unix time, or JSON null for "never". */
static json_t *
sync_time(int64_t t)
{
	return t == DIRECTORY_NEVER ? json_null() : json_integer(t);
}

/* The users read, as the JSON array directory_apply() takes. */
static char *
sync_users_json(const struct directory_result *r)
{
	json_t *list = json_array(), *u;
	const struct directory_user *du;
	char *text;
	size_t i;

	for (i = 0; list != NULL && i < r->nusers; i++) {
		du = &r->users[i];
		if (du->guid[0] == '\0')
			continue;
		u = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:I, s:o,"
		              " s:b, s:I, s:b}",
		    "guid", du->guid, "dn", du->dn, "login", du->login,
		    "display_name", du->display_name, "mail", du->mail,
		    "mobile", du->mobile, "pwd_last_set",
		    (json_int_t)du->pwd_last_set, "password_expires",
		    sync_time(du->password_expires), "locked", du->locked,
		    "lockout_time", (json_int_t)du->lockout_time, "disabled",
		    du->disabled);
		if (u != NULL)
			json_array_append_new(list, u);
	}
	text = list ? json_dumps(list, JSON_COMPACT) : NULL;
	json_decref(list);
	return text;
}

/* The users and alerts are committed: send what the alerts queued. */
static void
sync_applied_cb(struct db_result *r, void *arg)
{
	struct sync_job *job = arg;
	PGresult *counts, *jobs;

	if (r->status != 0) {
		sync_fail(job, r->error);
		return;
	}
	counts = r->res[0];
	jobs = r->res[1];
	log_info(job->object, "%s sync done: %s",
	    job->full ? "full" : "incremental", PQgetvalue(counts, 0, 0));
	if (strcmp(PQgetvalue(jobs, 0, 0), "{}") != 0)
		outbox_kick(job->sync->outbox, PQgetvalue(jobs, 0, 0));
	sync_job_free(job);
}

/* The directory answered: hand the users to the database. */
static void
sync_read_cb(const struct directory_result *r, void *arg)
{
	struct sync_job *job = arg;
	struct sync *sync = job->sync;
	struct db_batch *batch;
	const char *apply[5], *alerts[4];
	char usn[24], *users;

	if (r->status != DIRECTORY_OK) {
		sync_fail(job,
		    r->detail[0] ? r->detail
		                 : directory_status_name(r->status));
		return;
	}
	users = sync_users_json(r);
	batch = db_batch_new();
	if (users == NULL || batch == NULL) {
		free(users);
		db_batch_free(batch);
		sync_fail(job, "out of memory");
		return;
	}

	snprintf(usn, sizeof(usn), "%lld", (long long)r->max_usn);
	apply[0] = alerts[0] = job->msp_id;
	apply[1] = alerts[1] = job->customer_id;
	apply[2] = users;
	apply[3] = job->full ? "t" : "f";
	apply[4] = usn;
	alerts[2] = sync->s.sms ? "t" : "f";
	alerts[3] = sync->s.email ? "t" : "f";
	db_batch_add(batch, sql_apply, 5, apply);
	db_batch_add(batch, sql_alerts, 4, alerts);
	free(users);
	if (db_batch_run(sync->db, batch, sync_applied_cb, job) != 0)
		sync_fail(job, "out of memory");
}

/* Start reading one claimed directory. */
static void
sync_start_job(struct sync *sync, PGresult *res, int row)
{
	struct directory_settings ds = { 0 };
	struct sync_job *job;
	char *password;
	size_t len = 0;

	job = calloc(1, sizeof(*job));
	if (job == NULL)
		return; /* the lease runs out; the sync comes back */
	job->sync = sync;
	sync->running++;
	snprintf(job->msp_id, sizeof(job->msp_id), "%s",
	    PQgetvalue(res, row, COL_MSP));
	snprintf(job->customer_id, sizeof(job->customer_id), "%s",
	    PQgetvalue(res, row, COL_CUSTOMER));
	snprintf(
	    job->object, sizeof(job->object), "sync %.8s", job->customer_id);
	job->full = strcmp(PQgetvalue(res, row, COL_FULL), "t") == 0;

	password = secretbox_open(sync->s.secret_key, job->customer_id,
	    PQgetvalue(res, row, COL_PASSWORD), &len);
	if (password == NULL) {
		sync_fail(job,
		    "the stored bind password does not open with "
		    "this server's secrets key");
		return;
	}
	ds.url = PQgetvalue(res, row, COL_URL);
	ds.bind_dn = PQgetvalue(res, row, COL_BIND_DN);
	ds.bind_password = password;
	ds.base_dn = PQgetvalue(res, row, COL_BASE_DN);
	ds.ca_file = PQgetisnull(res, row, COL_CA_FILE)
	    ? NULL
	    : PQgetvalue(res, row, COL_CA_FILE);
	ds.login =
	    strcmp(PQgetvalue(res, row, COL_LOGIN_ATTR), "sAMAccountName") == 0
	    ? DIRECTORY_LOGIN_SAM
	    : DIRECTORY_LOGIN_UPN;
	ds.timeout_ms = sync->s.timeout_ms;
	ds.connect_timeout_ms = sync->s.timeout_ms;

	if (directory_search_users(sync->workers, &ds,
	        job->full ? 0 : atoll(PQgetvalue(res, row, COL_LAST_USN)) + 1,
	        sync_read_cb, job) != 0)
		sync_fail(job, "the directory worker queue is full");
	OPENSSL_cleanse(password, len);
	free(password);
}

/* Due directories were claimed: start each. */
static void
sync_claimed_cb(struct db_result *r, void *arg)
{
	struct sync *sync = arg;
	int i;

	sync->polling = false;
	if (r->status != 0)
		return;
	for (i = 0; i < PQntuples(r->res[0]); i++)
		sync_start_job(sync, r->res[0], i);
}

/* Claim due directories. */
void
sync_kick(struct sync *sync)
{
	char lease[16];
	const char *params[2] = { SYNC_CLAIM_BATCH, lease };

	if (sync->polling || !db_ready(sync->db))
		return;
	snprintf(lease, sizeof(lease), "%d", sync->s.lease_seconds);
	if (db_query(sync->db, sql_claim, 2, params, sync_claimed_cb, sync) ==
	    0)
		sync->polling = true;
}

/* Timer: claim what is due. */
static void
sync_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	sync_kick(arg);
}

/* Start the poll timer. */
void
sync_start(struct sync *sync)
{
	struct timeval tv = {
		.tv_sec = sync->s.poll_ms / 1000,
		.tv_usec = (sync->s.poll_ms % 1000) * 1000,
	};

	sync->timer = event_new(sync->base, -1, EV_PERSIST, sync_poll_cb, sync);
	if (sync->timer == NULL || event_add(sync->timer, &tv) != 0)
		fatal("sync", "cannot start the sync timer");
}
