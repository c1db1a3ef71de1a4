/*
 * PostgreSQL on the event loop: a pool of non-blocking libpq connections in
 * pipeline mode, each preparing a statement text the first time it runs
 * it, a client-side deadline per query, reconnection with
 * back-off, health checks of idle connections, one LISTEN connection, and
 * the schema migrations on a thread of their own. It knows nothing of the
 * tables: callers bring the SQL.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "db.h"
#include "log.h"
#include "migrate.h"

#define DB_PIPELINE_MAX 128 /* jobs in flight on one connection */
#define DB_WAIT_MAX 10000   /* jobs waiting for room on a connection */
#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 5000
#define DB_IDLE_CHECK_MS 2000 /* health check after this long idle */
#define DB_TICK_MS 500
#define DB_MARGIN_MS 1000      /* client deadline beyond the server's */
#define DB_NO_TIMEOUT_MS 60000 /* per statement when none is set */
#define DB_CHECK_MAX_MS 5000   /* deadline of our own small queries */
#define DB_CONNECT_DEFAULT_S 10
#define DB_PREP_MAX 256 /* named statements on one connection */
#define DB_PREP_BUCKETS 64

enum db_kind {
	DB_KIND_USER,   /* db_query or db_batch_run */
	DB_KIND_HEALTH, /* SELECT 1 on an idle connection */
	DB_KIND_SCHEMA, /* is the newest migration applied? */
	DB_KIND_LISTEN, /* LISTEN commands on the listen connection */
};

struct db_stmt {
	char *sql;
	int nparams;
	char **values;  /* NULL entries are SQL NULLs */
	unsigned hash;  /* of sql, set when sent */
	int prep_id;    /* sent as this named statement, or 0 */
	bool prep_send; /* its prepare went first, unanswered */
};

struct db_batch {
	struct db_stmt *stmts;
	int count;
	int cap;
	bool broken; /* an allocation failed in db_batch_add */
};

/* One query or batch on its way: sent with one sync, answered in order. */
struct db_job {
	TAILQ_ENTRY(db_job) link;
	enum db_kind kind;
	struct db_batch *batch;
	PGresult **res; /* batch->count slots */
	int got;        /* statements answered so far */
	bool failed;
	char *error;
	char *sqlstate;
	db_done_cb cb;
	void *arg;
};

TAILQ_HEAD(db_jobs, db_job);

/* A statement prepared (or being prepared) on one connection. */
struct db_prep {
	struct db_prep *next; /* in its hash bucket */
	char *sql;
	unsigned hash;
	int id;     /* named "vouch_<id>" on the server */
	bool ready; /* the server accepted the prepare */
};

enum db_state {
	DB_CONN_IDLE, /* not started */
	DB_CONN_WAIT, /* back-off before the next attempt */
	DB_CONN_CONNECTING,
	DB_CONN_UP,
};

struct db_conn {
	struct db *db;
	char name[16]; /* "db 2", "db listen" */
	bool listener;
	enum db_state state;
	PGconn *pg;
	struct event *ev_io;    /* one-shot while connecting, then reads */
	struct event *ev_write; /* armed while PQflush has more to send */
	struct event *ev_timer; /* back-off, connect timeout or deadline */
	struct db_jobs sent;    /* answered in this order */
	int inflight;
	int backoff_ms;
	bool ever_up;
	bool failing;      /* an attempt failed and was logged */
	char *broken;      /* why, when the loop must drop it next */
	long long last_ms; /* last query sent or answered */
	bool announce;     /* listener: tell subscribers after LISTEN */
	struct db_prep *prep[DB_PREP_BUCKETS];
	int nprep;    /* named statements the server may hold */
	int prep_seq; /* the last id given out */
};

struct db_sub {
	char *channel;
	db_notify_cb cb;
	void *arg;
	bool listening; /* LISTEN done on the current connection */
	bool sending;   /* in the LISTEN command in flight */
};

/* The migration thread and what it tells the loop. */
struct db_mig {
	pthread_t thread;
	bool running; /* created and not yet joined */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool done;
	int applied;
	unsigned seq; /* bumped on each failed attempt */
	char error[512];
	PGcancel *cancel; /* of the connection in migrate_apply */
	int fds[2];       /* the thread writes a byte to wake the loop */
	struct event *ev;
	unsigned seen; /* loop side: last seq logged */
	char logged[512];
};

struct db {
	struct event_base *base;
	struct db_settings s;
	char *conninfo;
	char **keys, **vals;   /* pool and listen connections */
	char **mkeys, **mvals; /* the migration connection */
	char where[160];       /* host:port/dbname, for logs */
	struct db_conn *conns;
	int nconns;
	struct db_conn listen;
	struct db_jobs waiting;
	int nwaiting;
	struct db_jobs failed; /* failed before reaching a connection */
	struct event *ev_failed;
	struct event *ev_tick;
	bool started;
	bool closing;
	bool schema_ok;
	bool schema_checking;
	long long schema_last_ms;
	char *schema_why; /* last reason logged for "not current" */
	struct db_sub *subs;
	int nsubs;
	int capsubs;
	unsigned seed;
	unsigned long long queries;
	unsigned long long failures;
	unsigned long long reconnects;
	struct db_mig mig;
};

static void db_conn_connect(struct db_conn *c);
static void db_conn_connect_cb(evutil_socket_t fd, short what, void *arg);
static void db_conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void db_conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void db_conn_drop(struct db_conn *c, const char *why);
static void db_conn_take(struct db_conn *c);
static void db_listen_take(struct db_conn *c);
static void db_listen_send(struct db_conn *c);
static void db_drain(struct db *db);
static void db_schema_check(struct db *db);
static void db_schema_done(struct db *db, struct db_job *job);

/* Milliseconds on the monotonic clock. */
static long long
db_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A timeval of ms milliseconds. */
static struct timeval
db_tv(long long ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return tv;
}

/* Copy the first line of a libpq message (they end in newlines). */
static char *
db_line(const char *msg)
{
	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	return strndup(msg, strcspn(msg, "\n"));
}

/* --- statements and batches ---------------------------------------------- */

/* Free one statement's copies. */
static void
db_stmt_clear(struct db_stmt *st)
{
	int i;

	for (i = 0; i < st->nparams && st->values != NULL; i++)
		free(st->values[i]);
	free(st->values);
	free(st->sql);
}

/* Copy sql and its values into st; 0 or -1. */
static int
db_stmt_init(
    struct db_stmt *st, const char *sql, int nparams, const char *const *values)
{
	int i;

	memset(st, 0, sizeof(*st));
	st->sql = strdup(sql != NULL ? sql : "");
	if (st->sql == NULL)
		return -1;
	if (nparams <= 0)
		return 0;

	st->values = calloc((size_t)nparams, sizeof(*st->values));
	if (st->values == NULL)
		return -1;
	st->nparams = nparams;
	for (i = 0; i < nparams; i++) {
		if (values == NULL || values[i] == NULL)
			continue;
		st->values[i] = strdup(values[i]);
		if (st->values[i] == NULL)
			return -1;
	}
	return 0;
}

/* An empty batch; NULL when out of memory. */
struct db_batch *
db_batch_new(void)
{
	return calloc(1, sizeof(struct db_batch));
}

/* Append a copy of one statement; a failure shows at db_batch_run. */
void
db_batch_add(struct db_batch *batch, const char *sql, int nparams,
    const char *const *values)
{
	struct db_stmt *grown;
	int cap;

	if (batch == NULL || batch->broken)
		return;
	if (batch->count == batch->cap) {
		cap = batch->cap ? batch->cap * 2 : 4;
		grown = realloc(batch->stmts, (size_t)cap * sizeof(*grown));
		if (grown == NULL) {
			batch->broken = true;
			return;
		}
		batch->stmts = grown;
		batch->cap = cap;
	}

	if (db_stmt_init(&batch->stmts[batch->count], sql, nparams, values) <
	    0) {
		db_stmt_clear(&batch->stmts[batch->count]);
		batch->broken = true;
		return;
	}
	batch->count++;
}

/* Free a batch that was not handed to db_batch_run. */
void
db_batch_free(struct db_batch *batch)
{
	int i;

	if (batch == NULL)
		return;
	for (i = 0; i < batch->count; i++)
		db_stmt_clear(&batch->stmts[i]);
	free(batch->stmts);
	free(batch);
}

/* --- prepared statements ------------------------------------------------- */

/* FNV-1a of a statement's text. */
static unsigned
db_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The connection's entry for this text, or NULL. */
static struct db_prep *
db_prep_find(const struct db_conn *c, const char *sql, unsigned hash)
{
	struct db_prep *p;

	for (p = c->prep[hash % DB_PREP_BUCKETS]; p != NULL; p = p->next)
		if (p->hash == hash && strcmp(p->sql, sql) == 0)
			return p;
	return NULL;
}

/* Unlink and free one entry. */
static void
db_prep_forget(struct db_conn *c, struct db_prep *p)
{
	struct db_prep **pp = &c->prep[p->hash % DB_PREP_BUCKETS];

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	free(p->sql);
	free(p);
}

/* Forget every entry: the session that held them is gone. */
static void
db_prep_reset(struct db_conn *c)
{
	struct db_prep *p;
	int i;

	for (i = 0; i < DB_PREP_BUCKETS; i++) {
		while ((p = c->prep[i]) != NULL) {
			c->prep[i] = p->next;
			free(p->sql);
			free(p);
		}
	}
	c->nprep = 0;
	c->prep_seq = 0;
}

/* The server's name of an entry. */
static void
db_prep_name(char *buf, size_t len, int id)
{
	snprintf(buf, len, "vouch_%d", id);
}

/*
 * Decide how to send a statement: as a prepared one, preparing it first
 * when the text is new here; unnamed while another job's prepare of the
 * same text is unanswered (it may fail) or when the cache is full.
 */
static void
db_prep_plan(struct db_conn *c, struct db_stmt *st)
{
	struct db_prep *p;

	st->prep_id = 0;
	st->prep_send = false;
	st->hash = db_hash(st->sql);
	p = db_prep_find(c, st->sql, st->hash);
	if (p != NULL) {
		if (p->ready)
			st->prep_id = p->id;
		return;
	}
	if (c->nprep >= DB_PREP_MAX)
		return;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return;
	p->sql = strdup(st->sql);
	if (p->sql == NULL) {
		free(p);
		return;
	}
	p->hash = st->hash;
	p->id = ++c->prep_seq;
	p->next = c->prep[p->hash % DB_PREP_BUCKETS];
	c->prep[p->hash % DB_PREP_BUCKETS] = p;
	c->nprep++;
	st->prep_id = p->id;
	st->prep_send = true;
}

/* The entry a statement was sent as, if the cache still has it. */
static struct db_prep *
db_prep_of(const struct db_conn *c, const struct db_stmt *st)
{
	struct db_prep *p;

	if (st->prep_id == 0)
		return NULL;
	p = db_prep_find(c, st->sql, st->hash);
	return p != NULL && p->id == st->prep_id ? p : NULL;
}

/*
 * The answer to a prepare: the entry is ready, or forgotten so the next
 * use of the text prepares it again (and meets the same error).
 */
static void
db_prep_answer(struct db_conn *c, const struct db_stmt *st, const PGresult *r)
{
	struct db_prep *p = db_prep_of(c, st);

	if (p == NULL)
		return;
	if (PQresultStatus(r) == PGRES_COMMAND_OK) {
		p->ready = true;
		return;
	}
	db_prep_forget(c, p);
	c->nprep--;
}

/*
 * A prepared statement failed. Two errors stay with the server's copy
 * rather than with the text: a plan whose result type changed under it
 * (0A000) and a statement the session no longer has (26000). Forget the
 * entry so the next use prepares afresh under a new name.
 */
static void
db_prep_failed(struct db_conn *c, const struct db_stmt *st, const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	struct db_prep *p;

	if (state == NULL ||
	    (strcmp(state, "0A000") != 0 && strcmp(state, "26000") != 0))
		return;
	p = db_prep_of(c, st);
	if (p == NULL)
		return;
	db_prep_forget(c, p);
	if (strcmp(state, "26000") == 0)
		c->nprep--;
}

/* --- jobs ---------------------------------------------------------------- */

/* Wrap a batch (taken over) in a job; NULL when out of memory. */
static struct db_job *
db_job_new(struct db_batch *batch, enum db_kind kind, db_done_cb cb, void *arg)
{
	struct db_job *job;

	job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->res = calloc(
	    (size_t)(batch->count > 0 ? batch->count : 1), sizeof(*job->res));
	if (job->res == NULL) {
		free(job);
		return NULL;
	}
	job->batch = batch;
	job->kind = kind;
	job->cb = cb;
	job->arg = arg;
	return job;
}

/* A job of our own with one statement and no parameters. */
static struct db_job *
db_job_internal(const char *sql, enum db_kind kind)
{
	struct db_batch *batch;
	struct db_job *job;

	batch = db_batch_new();
	db_batch_add(batch, sql, 0, NULL);
	if (batch == NULL || batch->broken) {
		db_batch_free(batch);
		return NULL;
	}
	job = db_job_new(batch, kind, NULL, NULL);
	if (job == NULL)
		db_batch_free(batch);
	return job;
}

/* Free a job, its batch and every result still held. */
static void
db_job_free(struct db_job *job)
{
	int i;

	for (i = 0; i < job->batch->count; i++)
		PQclear(job->res[i]);
	db_batch_free(job->batch);
	free(job->res);
	free(job->error);
	free(job->sqlstate);
	free(job);
}

/* Mark the job failed; the first error is the one reported. */
static void
db_job_error(struct db_job *job, const char *msg, const char *sqlstate)
{
	if (job->failed)
		return;
	job->failed = true;
	job->error = db_line(msg);
	job->sqlstate = sqlstate != NULL ? strdup(sqlstate) : NULL;
}

/* Fail the job for a reason outside the database: no sqlstate. */
static void
db_job_lost(struct db_job *job, const char *why)
{
	free(job->error);
	free(job->sqlstate);
	job->error = db_line(why);
	job->sqlstate = NULL;
	job->failed = true;
}

/* Record the error a statement's result carries. */
static void
db_job_error_from(struct db_job *job, const PGresult *r)
{
	const char *msg;

	msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	if (msg == NULL && PQresultStatus(r) == PGRES_EMPTY_QUERY)
		msg = "empty query";
	if (msg == NULL)
		msg = PQresultErrorMessage(r);
	db_job_error(job, msg, PQresultErrorField(r, PG_DIAG_SQLSTATE));
}

/*
 * Take one result for the job at the head of connection c: 1 when its
 * sync arrived (the job is complete), 0 when more are due, -1 when the
 * connection is in a state we never asked for. A statement prepared on
 * the way yields the prepare's result first.
 */
static int
db_job_take(struct db_conn *c, struct db_job *job, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	struct db_stmt *stmt;

	switch (st) {
	case PGRES_PIPELINE_SYNC:
		PQclear(r);
		if (job->got < job->batch->count)
			db_job_error(job, "statement results missing", NULL);
		return 1;
	case PGRES_COPY_IN:
	case PGRES_COPY_OUT:
	case PGRES_COPY_BOTH:
		PQclear(r);
		return -1;
	default:
		break;
	}

	if (job->got >= job->batch->count) {
		PQclear(r);
		return 0;
	}
	stmt = &job->batch->stmts[job->got];
	if (stmt->prep_send) {
		stmt->prep_send = false;
		db_prep_answer(c, stmt, r);
		if (st == PGRES_PIPELINE_ABORTED)
			db_job_error(
			    job, "statement skipped after an error", NULL);
		else if (st != PGRES_COMMAND_OK)
			db_job_error_from(job, r);
		PQclear(r);
		return 0;
	}
	if (st == PGRES_PIPELINE_ABORTED) {
		PQclear(r);
		job->got++;
		db_job_error(job, "statement skipped after an error", NULL);
		return 0;
	}
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		db_job_error_from(job, r);
		db_prep_failed(c, stmt, r);
	}
	job->res[job->got++] = r;
	return 0;
}

/* Report a finished job to whoever waits for it, then free it. */
static void
db_job_finish(struct db *db, struct db_job *job)
{
	struct db_result result;

	switch (job->kind) {
	case DB_KIND_USER:
		memset(&result, 0, sizeof(result));
		result.status = job->failed ? -1 : 0;
		result.error = job->failed
		    ? (job->error ? job->error : "database error")
		    : NULL;
		result.sqlstate = job->failed ? job->sqlstate : NULL;
		result.count = job->batch->count;
		result.res = job->res;
		db->queries++;
		if (job->failed)
			db->failures++;
		job->cb(&result, job->arg);
		break;
	case DB_KIND_SCHEMA:
		db_schema_done(db, job);
		break;
	default:
		break;
	}
	db_job_free(job);
}

/* Fail a job from the loop later, never inside the caller's call. */
static void
db_fail_later(struct db *db, struct db_job *job, const char *why)
{
	db_job_lost(job, why);
	TAILQ_INSERT_TAIL(&db->failed, job, link);
	if (!db->closing)
		event_active(db->ev_failed, EV_TIMEOUT, 1);
}

/* Run the callbacks of jobs that failed before reaching a connection. */
static void
db_failed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db *db = arg;
	struct db_jobs now;
	struct db_job *job;

	/* Jobs failed by these callbacks wait for the next round. */
	TAILQ_INIT(&now);
	TAILQ_CONCAT(&now, &db->failed, link);
	while ((job = TAILQ_FIRST(&now)) != NULL) {
		TAILQ_REMOVE(&now, job, link);
		db_job_finish(db, job);
	}
}

/* --- the pool ------------------------------------------------------------ */

/* True when a pool connection can take a query. */
static bool
db_conn_usable(const struct db_conn *c)
{
	return c->state == DB_CONN_UP && c->broken == NULL;
}

/* True when any pool connection can take a query. */
static bool
db_usable(const struct db *db)
{
	int i;

	for (i = 0; i < db->nconns; i++)
		if (db_conn_usable(&db->conns[i]))
			return true;
	return false;
}

/* The usable connection with the fewest jobs in flight and room left. */
static struct db_conn *
db_pick(struct db *db)
{
	struct db_conn *best = NULL;
	int i;

	for (i = 0; i < db->nconns; i++) {
		struct db_conn *c = &db->conns[i];

		if (!db_conn_usable(c) || c->inflight >= DB_PIPELINE_MAX)
			continue;
		if (best == NULL || c->inflight < best->inflight)
			best = c;
	}
	return best;
}

/* How long a job may take once the server starts on it. */
static long long
db_budget_ms(const struct db *db, const struct db_job *job)
{
	long long per, ms;

	per = db->s.statement_timeout_ms > 0 ? db->s.statement_timeout_ms
	                                     : DB_NO_TIMEOUT_MS;
	ms = per * (job->batch->count > 0 ? job->batch->count : 1) +
	    DB_MARGIN_MS;
	if (job->kind != DB_KIND_USER && ms > DB_CHECK_MAX_MS)
		ms = DB_CHECK_MAX_MS;
	return ms;
}

/*
 * Arm the deadline for the job at the head: the server works on jobs in
 * order, so the head's clock starts when it becomes the head.
 */
static void
db_conn_arm(struct db_conn *c)
{
	struct db_job *head = TAILQ_FIRST(&c->sent);
	struct timeval tv;

	if (c->broken != NULL)
		return;
	if (head == NULL) {
		event_del(c->ev_timer);
		return;
	}
	tv = db_tv(db_budget_ms(c->db, head));
	event_add(c->ev_timer, &tv);
}

/* Give up on the connection from the loop soon (not from the caller). */
static void
db_conn_break(struct db_conn *c, const char *why)
{
	struct timeval now = { 0, 0 };

	if (c->broken == NULL)
		c->broken = db_line(why);
	if (c->broken == NULL)
		c->broken = strdup("out of memory");
	event_add(c->ev_timer, &now);
}

/* Send what libpq holds; arm the write event while more remains. */
static int
db_conn_flush(struct db_conn *c)
{
	int rc = PQflush(c->pg);

	if (rc < 0)
		return -1;
	if (rc > 0 && event_add(c->ev_write, NULL) != 0)
		return -1;
	return 0;
}

/* Send one statement, prepared first when its text is new here. */
static int
db_conn_send_stmt(struct db_conn *c, struct db_stmt *st)
{
	const char *const *values = (const char *const *)st->values;
	char name[32];

	db_prep_plan(c, st);
	if (st->prep_id == 0)
		return PQsendQueryParams(c->pg, st->sql, st->nparams, NULL,
		           values, NULL, NULL, 0)
		    ? 0
		    : -1;

	db_prep_name(name, sizeof(name), st->prep_id);
	if (st->prep_send &&
	    !PQsendPrepare(c->pg, name, st->sql, st->nparams, NULL))
		return -1;
	return PQsendQueryPrepared(
	           c->pg, name, st->nparams, values, NULL, NULL, 0)
	    ? 0
	    : -1;
}

/*
 * Pipeline a job on an up connection: its statements, then one sync. A
 * failure to send breaks the connection, which fails the job later.
 */
static void
db_conn_send(struct db_conn *c, struct db_job *job)
{
	int i;

	TAILQ_INSERT_TAIL(&c->sent, job, link);
	if (++c->inflight == 1)
		db_conn_arm(c);
	c->last_ms = db_now_ms();

	for (i = 0; i < job->batch->count; i++)
		if (db_conn_send_stmt(c, &job->batch->stmts[i]) < 0)
			goto fail;
	if (!PQpipelineSync(c->pg) || db_conn_flush(c) < 0)
		goto fail;

	/* Sending may have read answers into libpq: look at them soon. */
	event_active(c->ev_io, EV_READ, 1);
	return;

fail:
	db_conn_break(c, PQerrorMessage(c->pg));
}

/* Send waiting jobs while a connection has room. */
static void
db_drain(struct db *db)
{
	struct db_job *job;
	struct db_conn *c;

	while ((job = TAILQ_FIRST(&db->waiting)) != NULL) {
		c = db_pick(db);
		if (c == NULL)
			return;
		TAILQ_REMOVE(&db->waiting, job, link);
		db->nwaiting--;
		db_conn_send(c, job);
	}
}

/* Fail every waiting job: no connection is left to run them. */
static void
db_fail_waiting(struct db *db, const char *why)
{
	struct db_job *job;

	while ((job = TAILQ_FIRST(&db->waiting)) != NULL) {
		TAILQ_REMOVE(&db->waiting, job, link);
		db->nwaiting--;
		db_fail_later(db, job, why);
	}
}

/* Route a new job to a connection, the wait queue, or a deferred failure. */
static void
db_submit(struct db *db, struct db_job *job)
{
	struct db_conn *c;

	if (db->closing) {
		db_fail_later(db, job, "database closed");
		return;
	}
	c = db_pick(db);
	if (c != NULL) {
		db_conn_send(c, job);
		return;
	}
	if (!db_usable(db)) {
		db_fail_later(db, job, "database unavailable");
		return;
	}
	if (db->nwaiting >= DB_WAIT_MAX) {
		db_fail_later(db, job, "database queue full");
		return;
	}
	TAILQ_INSERT_TAIL(&db->waiting, job, link);
	db->nwaiting++;
}

/* --- connections --------------------------------------------------------- */

/* Server notices are not errors of ours: keep them at debug level. */
static void
db_notice_cb(void *arg, const char *message)
{
	struct db_conn *c = arg;

	log_debug(c->name, "server notice: %.*s", (int)strcspn(message, "\n"),
	    message);
}

/* Close the socket and its events; the connection keeps its jobs. */
static void
db_conn_close(struct db_conn *c)
{
	if (c->ev_io != NULL)
		event_free(c->ev_io);
	if (c->ev_write != NULL)
		event_free(c->ev_write);
	c->ev_io = NULL;
	c->ev_write = NULL;
	event_del(c->ev_timer);
	PQfinish(c->pg);
	c->pg = NULL;
	free(c->broken);
	c->broken = NULL;
	db_prep_reset(c);
}

/* Wait before the next attempt: doubling, capped, with jitter. */
static void
db_conn_backoff(struct db_conn *c)
{
	struct timeval tv;
	long long ms;

	c->state = DB_CONN_WAIT;
	ms = c->backoff_ms * 3 / 4 +
	    rand_r(&c->db->seed) % (c->backoff_ms / 2 + 1);
	tv = db_tv(ms);
	event_add(c->ev_timer, &tv);

	c->backoff_ms *= 2;
	if (c->backoff_ms > DB_BACKOFF_MAX_MS)
		c->backoff_ms = DB_BACKOFF_MAX_MS;
}

/* An attempt to connect failed: log the first of a series, retry later. */
static void
db_conn_retry(struct db_conn *c, const char *why)
{
	char *line = db_line(why);

	if (!c->failing)
		log_warn(c->name, "cannot connect to %s: %s", c->db->where,
		    line ? line : "out of memory");
	else
		log_debug(c->name, "cannot connect to %s: %s", c->db->where,
		    line ? line : "out of memory");
	free(line);
	c->failing = true;
	db_conn_close(c);
	db_conn_backoff(c);
}

/* Watch the connecting socket for what PQconnectPoll asked. */
static void
db_conn_watch(struct db_conn *c, short what)
{
	if (c->ev_io != NULL)
		event_free(c->ev_io);
	c->ev_io = event_new(
	    c->db->base, PQsocket(c->pg), what, db_conn_connect_cb, c);
	if (c->ev_io == NULL || event_add(c->ev_io, NULL) != 0)
		db_conn_retry(c, "cannot watch the socket");
}

/* Tell every subscriber that notifications may have been missed. */
static void
db_listen_announce(struct db *db)
{
	int i;

	/* A subscriber may add another: read the count each time. */
	for (i = 0; i < db->nsubs; i++)
		db->subs[i].cb(db->subs[i].channel, NULL, db->subs[i].arg);
}

/* The listen connection is up: LISTEN again on every channel. */
static void
db_listen_up(struct db_conn *c)
{
	struct db *db = c->db;
	int i;

	for (i = 0; i < db->nsubs; i++) {
		db->subs[i].listening = false;
		db->subs[i].sending = false;
	}
	c->announce = c->ever_up && db->nsubs > 0;
	db_listen_send(c);
}

/* The connection is established: switch modes and start using it. */
static void
db_conn_up(struct db_conn *c)
{
	struct db *db = c->db;
	evutil_socket_t fd = PQsocket(c->pg);

	event_free(c->ev_io);
	c->ev_io = NULL;
	event_del(c->ev_timer);
	if (PQsetnonblocking(c->pg, 1) != 0 ||
	    (!c->listener && PQenterPipelineMode(c->pg) != 1)) {
		db_conn_retry(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetNoticeProcessor(c->pg, db_notice_cb, c);

	c->ev_io =
	    event_new(db->base, fd, EV_READ | EV_PERSIST, db_conn_read_cb, c);
	c->ev_write = event_new(db->base, fd, EV_WRITE, db_conn_write_cb, c);
	if (c->ev_io == NULL || c->ev_write == NULL ||
	    event_add(c->ev_io, NULL) != 0) {
		db_conn_retry(c, "cannot watch the socket");
		return;
	}

	/* The back-off resets on the first answer, not here: a server that
	   accepts and then drops connections must not be hammered. */
	c->state = DB_CONN_UP;
	c->failing = false;
	c->last_ms = db_now_ms();
	if (c->ever_up)
		db->reconnects++;
	log_info(c->name, "connected to %s", db->where);

	if (c->listener) {
		db_listen_up(c);
		c->ever_up = true;
		return;
	}
	c->ever_up = true;
	db_schema_check(db);
	db_drain(db);
}

/* One step of the non-blocking connect. */
static void
db_conn_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		db_conn_watch(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		db_conn_watch(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		db_conn_up(c);
		break;
	default:
		db_conn_retry(c, PQerrorMessage(c->pg));
		break;
	}
}

/*
 * Start connecting. XXX: PQconnectStartParams resolves a host name with
 * a blocking lookup; with a name that needs DNS the loop waits for it.
 * Configure an address (or hostaddr) to avoid that, or move resolution
 * to a thread.
 */
static void
db_conn_connect(struct db_conn *c)
{
	struct db *db = c->db;
	struct timeval tv;
	int secs;

	c->pg = PQconnectStartParams(
	    (const char *const *)db->keys, (const char *const *)db->vals, 0);
	if (c->pg == NULL) {
		db_conn_retry(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		db_conn_retry(c, PQerrorMessage(c->pg));
		return;
	}

	c->state = DB_CONN_CONNECTING;
	secs = db->s.connect_timeout > 0 ? db->s.connect_timeout
	                                 : DB_CONNECT_DEFAULT_S;
	tv = db_tv((long long)secs * 1000);
	event_add(c->ev_timer, &tv);
	db_conn_watch(c, EV_WRITE);
}

/*
 * The connection is gone (or given up): fail what it carried, log once,
 * and reconnect after the back-off.
 */
static void
db_conn_drop(struct db_conn *c, const char *why)
{
	struct db *db = c->db;
	struct db_jobs lost;
	struct db_job *job;
	char *reason = db_line(why);
	int i;

	log_warn(
	    c->name, "connection lost: %s", reason ? reason : "out of memory");
	TAILQ_INIT(&lost);
	TAILQ_CONCAT(&lost, &c->sent, link);
	c->inflight = 0;
	db_conn_close(c);
	db_conn_backoff(c);
	for (i = 0; c->listener && i < db->nsubs; i++)
		db->subs[i].listening = db->subs[i].sending = false;

	while ((job = TAILQ_FIRST(&lost)) != NULL) {
		TAILQ_REMOVE(&lost, job, link);
		db_job_lost(job, reason ? reason : "connection lost");
		db_job_finish(db, job);
	}
	if (!db_usable(db))
		db_fail_waiting(db, "database unavailable");
	free(reason);
}

/* The connection's timer: retry, connect timeout, deadline or breakage. */
static void
db_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;
	char why[64];

	switch (c->state) {
	case DB_CONN_WAIT:
		db_conn_connect(c);
		break;
	case DB_CONN_CONNECTING:
		db_conn_retry(c, "timed out");
		break;
	case DB_CONN_UP:
		if (c->broken != NULL) {
			db_conn_drop(c, c->broken);
			break;
		}
		snprintf(why, sizeof(why), "no answer within %lld ms",
		    TAILQ_FIRST(&c->sent)
		        ? db_budget_ms(c->db, TAILQ_FIRST(&c->sent))
		        : 0LL);
		db_conn_drop(c, why);
		break;
	default:
		break;
	}
}

/* Process the input of an up connection. */
static void
db_conn_input(struct db_conn *c)
{
	if (c->listener)
		db_listen_take(c);
	else
		db_conn_take(c);
}

/* The socket is readable (or an answer may sit in libpq's buffer). */
static void
db_conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	if (c->state != DB_CONN_UP)
		return;
	if (!PQconsumeInput(c->pg)) {
		db_conn_drop(c, PQerrorMessage(c->pg));
		return;
	}
	db_conn_input(c);
}

/* The socket is writable again: send more, then read what came. */
static void
db_conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	if (c->state != DB_CONN_UP)
		return;
	if (db_conn_flush(c) < 0) {
		db_conn_drop(c, PQerrorMessage(c->pg));
		return;
	}
	db_conn_input(c);
}

/* The head job is complete: report it and let waiting jobs in. */
static void
db_conn_complete(struct db_conn *c, struct db_job *job)
{
	TAILQ_REMOVE(&c->sent, job, link);
	c->inflight--;
	c->last_ms = db_now_ms();
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	db_conn_arm(c);
	db_job_finish(c->db, job);
	db_drain(c->db);
}

/*
 * Match results to jobs in order. In pipeline mode a NULL ends only one
 * statement's results and no NULL follows a sync; two NULLs in a row
 * mean libpq has nothing we expect, so the connection is dropped rather
 * than spun on.
 */
static void
db_conn_take(struct db_conn *c)
{
	struct db_job *job;
	bool after_null = false;
	PGresult *r;

	while (
	    c->state == DB_CONN_UP && (job = TAILQ_FIRST(&c->sent)) != NULL) {
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			db_conn_drop(c, PQerrorMessage(c->pg));
			return;
		}
		if (PQisBusy(c->pg))
			return;
		r = PQgetResult(c->pg);
		if (r == NULL) {
			if (after_null) {
				db_conn_drop(c, "results out of step");
				return;
			}
			after_null = true;
			continue;
		}
		after_null = false;

		switch (db_job_take(c, job, r)) {
		case 1:
			db_conn_complete(c, job);
			break;
		case -1:
			db_conn_drop(c, "unexpected COPY from the server");
			return;
		default:
			break;
		}
	}
}

/* --- LISTEN -------------------------------------------------------------- */

/* Build "LISTEN a; LISTEN b" for channels not yet listened; NULL if none. */
static char *
db_listen_sql(struct db_conn *c)
{
	struct db *db = c->db;
	char *sql = NULL, *quoted;
	size_t len = 0;
	FILE *f;
	int i, n = 0;

	f = open_memstream(&sql, &len);
	if (f == NULL)
		return NULL;
	for (i = 0; i < db->nsubs; i++) {
		if (db->subs[i].listening)
			continue;
		quoted = PQescapeIdentifier(
		    c->pg, db->subs[i].channel, strlen(db->subs[i].channel));
		if (quoted == NULL)
			continue;
		fprintf(f, "%sLISTEN %s", n++ ? "; " : "", quoted);
		PQfreemem(quoted);
		db->subs[i].sending = true;
	}
	if (fclose(f) != 0 || n == 0) {
		free(sql);
		return NULL;
	}
	return sql;
}

/* Send one command on the idle listen connection, tracked as a job. */
static void
db_listen_command(struct db_conn *c, const char *sql, enum db_kind kind)
{
	struct db_job *job;

	job = db_job_internal(sql, kind);
	if (job == NULL)
		return;
	TAILQ_INSERT_TAIL(&c->sent, job, link);
	c->inflight = 1;
	c->last_ms = db_now_ms();
	db_conn_arm(c);
	if (!PQsendQuery(c->pg, sql) || db_conn_flush(c) < 0)
		db_conn_break(c, PQerrorMessage(c->pg));
}

/* LISTEN on the channels not yet listened, when the connection is idle. */
static void
db_listen_send(struct db_conn *c)
{
	char *sql;

	if (c->state != DB_CONN_UP || c->broken != NULL || c->inflight > 0)
		return;
	sql = db_listen_sql(c);
	if (sql == NULL)
		return;
	db_listen_command(c, sql, DB_KIND_LISTEN);
	free(sql);
}

/* The command in flight on the listen connection has finished. */
static void
db_listen_done(struct db_conn *c, struct db_job *job)
{
	struct db *db = c->db;
	int i;

	TAILQ_REMOVE(&c->sent, job, link);
	c->inflight = 0;
	c->last_ms = db_now_ms();
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	db_conn_arm(c);

	if (job->kind != DB_KIND_LISTEN) {
		db_job_free(job);
		return;
	}

	if (job->failed)
		log_warn(c->name, "listen failed: %s", job->error);
	for (i = 0; i < db->nsubs; i++) {
		if (db->subs[i].sending)
			db->subs[i].listening = true;
		db->subs[i].sending = false;
	}
	db_job_free(job);

	if (c->announce) {
		c->announce = false;
		db_listen_announce(db);
	}
}

/* Hand each notification to the subscribers of its channel. */
static void
db_listen_dispatch(struct db_conn *c)
{
	struct db *db = c->db;
	PGnotify *n;
	int i;

	while (c->state == DB_CONN_UP && (n = PQnotifies(c->pg)) != NULL) {
		for (i = 0; i < db->nsubs; i++)
			if (strcmp(db->subs[i].channel, n->relname) == 0)
				db->subs[i].cb(
				    n->relname, n->extra, db->subs[i].arg);
		PQfreemem(n);
	}
}

/* Read command results and notifications on the listen connection. */
static void
db_listen_take(struct db_conn *c)
{
	struct db_job *job;
	PGresult *r;

	while ((job = TAILQ_FIRST(&c->sent)) != NULL) {
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			db_conn_drop(c, PQerrorMessage(c->pg));
			return;
		}
		if (PQisBusy(c->pg))
			break;
		r = PQgetResult(c->pg);
		if (r == NULL) {
			db_listen_done(c, job);
			break;
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK &&
		    PQresultStatus(r) != PGRES_TUPLES_OK)
			db_job_error_from(job, r);
		PQclear(r);
	}

	db_listen_dispatch(c);
	db_listen_send(c);
}

/* Subscribe to a channel; LISTEN is sent when the connection allows. */
int
db_listen(struct db *db, const char *channel, db_notify_cb cb, void *arg)
{
	struct db_sub *grown, *sub;
	int cap;

	if (db->nsubs == db->capsubs) {
		cap = db->capsubs ? db->capsubs * 2 : 4;
		grown = realloc(db->subs, (size_t)cap * sizeof(*grown));
		if (grown == NULL)
			return -1;
		db->subs = grown;
		db->capsubs = cap;
	}
	sub = &db->subs[db->nsubs];
	memset(sub, 0, sizeof(*sub));
	sub->channel = strdup(channel);
	if (sub->channel == NULL)
		return -1;
	sub->cb = cb;
	sub->arg = arg;
	db->nsubs++;

	/* The listen connection opens with the first subscriber. */
	if (db->started && db->listen.state == DB_CONN_IDLE)
		db_conn_connect(&db->listen);
	else
		db_listen_send(&db->listen);
	return 0;
}

/* --- schema -------------------------------------------------------------- */

/* Log why the schema is not current, once per distinct reason. */
static void
db_schema_why(struct db *db, const char *why)
{
	if (db->schema_why != NULL && strcmp(db->schema_why, why) == 0)
		return;
	log_warn("db", "not ready: %s", why);
	free(db->schema_why);
	db->schema_why = strdup(why);
}

/* The schema is current: say so once. */
static void
db_schema_current(struct db *db, const char *how)
{
	db->schema_ok = true;
	free(db->schema_why);
	db->schema_why = NULL;
	log_info("db", "schema is current (%s)", how);
}

/*
 * Without migrations of our own, ask whether the newest embedded one has
 * been applied; asked again every few seconds until it has.
 */
static void
db_schema_check(struct db *db)
{
	struct db_job *job;
	struct db_conn *c;

	if (db->schema_ok || db->s.migrate || db->schema_checking)
		return;
	if (migrate_latest() == NULL) {
		db_schema_current(db, "no migrations embedded");
		return;
	}
	c = db_pick(db);
	if (c == NULL)
		return;
	job = db_job_internal(
	    "SELECT max(name) FROM schema_migrations", DB_KIND_SCHEMA);
	if (job == NULL)
		return;
	db->schema_checking = true;
	db->schema_last_ms = db_now_ms();
	db_conn_send(c, job);
}

/* The answer to the schema question arrived. */
static void
db_schema_done(struct db *db, struct db_job *job)
{
	const char *latest = migrate_latest(), *have = NULL;
	char why[256];

	db->schema_checking = false;
	if (job->failed && job->sqlstate == NULL)
		return; /* not reached; asked again later */
	if (job->failed && strcmp(job->sqlstate, "42P01") == 0) {
		db_schema_why(db,
		    "no schema_migrations table: the schema "
		    "was never migrated");
		return;
	}
	if (job->failed) {
		snprintf(
		    why, sizeof(why), "schema check failed: %s", job->error);
		db_schema_why(db, why);
		return;
	}

	if (!PQgetisnull(job->res[0], 0, 0))
		have = PQgetvalue(job->res[0], 0, 0);
	if (have != NULL && strcmp(have, latest) == 0) {
		db_schema_current(db, latest);
		return;
	}
	snprintf(why, sizeof(why),
	    "the newest applied migration is %s, this "
	    "binary expects %s",
	    have ? have : "none", latest);
	db_schema_why(db, why);
}

/* --- the migration thread ------------------------------------------------ */

/* Wake the loop: something changed in db->mig. */
static void
db_mig_wake(struct db_mig *m)
{
	char byte = 1;
	ssize_t n;

	do
		n = write(m->fds[1], &byte, 1);
	while (n < 0 && errno == EINTR);
}

/* One attempt: connect, migrate, disconnect; the count or -1 and err. */
static int
db_mig_attempt(struct db *db, char *err, size_t errlen)
{
	struct db_mig *m = &db->mig;
	PGcancel *cancel;
	PGconn *pg;
	int n;

	pg = PQconnectdbParams(
	    (const char *const *)db->mkeys, (const char *const *)db->mvals, 0);
	if (PQstatus(pg) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect: %.*s",
		    (int)strcspn(PQerrorMessage(pg), "\n"), PQerrorMessage(pg));
		PQfinish(pg);
		return -1;
	}

	cancel = PQgetCancel(pg);
	pthread_mutex_lock(&m->lock);
	m->cancel = m->stop ? NULL : cancel;
	n = m->stop ? -1 : 0;
	pthread_mutex_unlock(&m->lock);
	if (n == 0)
		n = migrate_apply(pg, err, errlen);
	else
		snprintf(err, errlen, "stopped");

	pthread_mutex_lock(&m->lock);
	m->cancel = NULL;
	pthread_mutex_unlock(&m->lock);
	PQfreeCancel(cancel);
	PQfinish(pg);
	return n;
}

/* Sleep ms unless told to stop; true when stopping. */
static bool
db_mig_sleep(struct db_mig *m, long long ms)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}

	pthread_mutex_lock(&m->lock);
	while (
	    !m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &until) == 0)
		;
	stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/* The thread: migrate over a blocking connection until it works. */
static void *
db_mig_main(void *arg)
{
	struct db *db = arg;
	struct db_mig *m = &db->mig;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	int backoff = DB_BACKOFF_MIN_MS;
	char err[512];
	bool stop;
	int n;

	for (;;) {
		err[0] = '\0';
		n = db_mig_attempt(db, err, sizeof(err));

		pthread_mutex_lock(&m->lock);
		if (n >= 0) {
			m->done = true;
			m->applied = n;
		} else {
			snprintf(m->error, sizeof(m->error), "%s", err);
			m->seq++;
		}
		stop = m->stop;
		pthread_mutex_unlock(&m->lock);
		db_mig_wake(m);

		if (n >= 0 || stop)
			break;
		if (db_mig_sleep(
		        m, backoff * 3 / 4 + rand_r(&seed) % (backoff / 2 + 1)))
			break;
		backoff = backoff * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS
		                                          : backoff * 2;
	}
	return NULL;
}

/* The thread has news: log a new failure, or take the success. */
static void
db_mig_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db *db = arg;
	struct db_mig *m = &db->mig;
	char buf[64], err[512];
	bool done, news;
	int applied;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&m->lock);
	done = m->done;
	applied = m->applied;
	news = m->seq != m->seen;
	m->seen = m->seq;
	snprintf(err, sizeof(err), "%s", m->error);
	pthread_mutex_unlock(&m->lock);

	if (news && !done && strcmp(err, m->logged) != 0) {
		log_warn("db", "migration failed, retrying: %s", err);
		snprintf(m->logged, sizeof(m->logged), "%s", err);
	}
	if (!done || db->schema_ok)
		return;

	pthread_join(m->thread, NULL);
	m->running = false;
	event_del(m->ev);
	snprintf(buf, sizeof(buf), "%d migrations applied", applied);
	db_schema_current(db, buf);
}

/* Start the migration thread and the pipe it wakes the loop with. */
static int
db_mig_start(struct db *db)
{
	struct db_mig *m = &db->mig;

	if (pipe2(m->fds, O_CLOEXEC | O_NONBLOCK) != 0)
		return -1;
	m->ev =
	    event_new(db->base, m->fds[0], EV_READ | EV_PERSIST, db_mig_cb, db);
	if (m->ev == NULL || event_add(m->ev, NULL) != 0)
		return -1;
	if (pthread_create(&m->thread, NULL, db_mig_main, db) != 0)
		return -1;
	m->running = true;
	return 0;
}

/* Stop the thread (cancelling its statement) and wait for it. */
static void
db_mig_stop(struct db *db)
{
	struct db_mig *m = &db->mig;
	char err[256];

	if (m->running) {
		pthread_mutex_lock(&m->lock);
		m->stop = true;
		pthread_cond_signal(&m->cond);
		if (m->cancel != NULL)
			PQcancel(m->cancel, err, sizeof(err));
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
		m->running = false;
	}
	if (m->ev != NULL)
		event_free(m->ev);
	m->ev = NULL;
	if (m->fds[0] >= 0)
		close(m->fds[0]);
	if (m->fds[1] >= 0)
		close(m->fds[1]);
	m->fds[0] = m->fds[1] = -1;
}

/* A condition variable that waits on the monotonic clock. */
static void
db_mig_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

/* --- the periodic check -------------------------------------------------- */

/* Every tick: health checks of idle connections, the schema question. */
static void
db_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db *db = arg;
	long long now = db_now_ms();
	struct db_job *job;
	struct db_conn *c;
	int i;

	for (i = 0; i < db->nconns; i++) {
		c = &db->conns[i];
		if (!db_conn_usable(c) || c->inflight > 0 ||
		    now - c->last_ms < DB_IDLE_CHECK_MS)
			continue;
		job = db_job_internal("SELECT 1", DB_KIND_HEALTH);
		if (job != NULL)
			db_conn_send(c, job);
	}

	c = &db->listen;
	if (db_conn_usable(c) && c->inflight == 0 &&
	    now - c->last_ms >= DB_IDLE_CHECK_MS)
		db_listen_command(c, "SELECT 1", DB_KIND_HEALTH);

	if (now - db->schema_last_ms >= DB_IDLE_CHECK_MS)
		db_schema_check(db);
}

/* --- connection parameters ----------------------------------------------- */

/* Free a NULL-terminated array of strings. */
static void
db_strv_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Append key=value at *n; 0 or -1. */
static int
db_param(char **keys, char **vals, size_t *n, const char *key, const char *val)
{
	keys[*n] = strdup(key);
	vals[*n] = strdup(val);
	if (keys[*n] == NULL || vals[*n] == NULL) {
		free(keys[*n]);
		free(vals[*n]);
		keys[*n] = vals[*n] = NULL;
		return -1;
	}
	(*n)++;
	return 0;
}

/*
 * Expand the parsed options into keyword and value arrays, adding a
 * connect_timeout and application_name (app) unless the URL has its own;
 * extra is appended to options (the statement timeout of the pool).
 */
static int
db_params(const PQconninfoOption *opts, const struct db_settings *s,
    const char *app, const char *extra, char ***keysp, char ***valsp)
{
	const PQconninfoOption *o;
	char **keys, **vals, buf[512];
	const char *options = "", *timeout = NULL;
	size_t count = 0, n = 0;
	int rc = -1;

	for (o = opts; o->keyword != NULL; o++)
		count++;
	keys = calloc(count + 4, sizeof(*keys));
	vals = calloc(count + 4, sizeof(*vals));
	if (keys == NULL || vals == NULL)
		goto out;

	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "application_name") == 0) {
			app = o->val;
			continue;
		}
		if (strcmp(o->keyword, "options") == 0) {
			options = o->val;
			continue;
		}
		if (strcmp(o->keyword, "connect_timeout") == 0) {
			timeout = o->val;
			continue;
		}
		if (db_param(keys, vals, &n, o->keyword, o->val) < 0)
			goto out;
	}

	/* The setting wins over the URL, which wins over our default. */
	if (s->connect_timeout > 0 || timeout == NULL)
		snprintf(buf, sizeof(buf), "%d",
		    s->connect_timeout > 0 ? s->connect_timeout
		                           : DB_CONNECT_DEFAULT_S);
	else
		snprintf(buf, sizeof(buf), "%s", timeout);
	if (db_param(keys, vals, &n, "connect_timeout", buf) < 0 ||
	    db_param(keys, vals, &n, "application_name", app) < 0)
		goto out;
	snprintf(buf, sizeof(buf), "%s%s%s", options,
	    *options && *extra ? " " : "", extra);
	if (*buf != '\0' && db_param(keys, vals, &n, "options", buf) < 0)
		goto out;
	rc = 0;

out:
	if (rc < 0) {
		db_strv_free(keys);
		db_strv_free(vals);
		keys = vals = NULL;
	}
	*keysp = keys;
	*valsp = vals;
	return rc;
}

/* The value of a parsed option, or NULL. */
static const char *
db_opt(const PQconninfoOption *opts, const char *key)
{
	for (; opts->keyword != NULL; opts++)
		if (strcmp(opts->keyword, key) == 0)
			return opts->val;
	return NULL;
}

/* Parse the conninfo into both parameter sets and the "where" for logs. */
static int
db_parse(struct db *db)
{
	PQconninfoOption *opts;
	char *errmsg = NULL, extra[64] = "";
	const char *host, *port, *name;
	int rc = -1;

	opts = PQconninfoParse(db->conninfo, &errmsg);
	if (opts == NULL) {
		log_error("db", "bad database url: %.*s",
		    errmsg ? (int)strcspn(errmsg, "\n") : 14,
		    errmsg ? errmsg : "out of memory");
		PQfreemem(errmsg);
		return -1;
	}

	if (db->s.statement_timeout_ms > 0)
		snprintf(extra, sizeof(extra), "-c statement_timeout=%d",
		    db->s.statement_timeout_ms);
	if (db_params(opts, &db->s, "vouchd", extra, &db->keys, &db->vals) <
	        0 ||
	    db_params(opts, &db->s, "vouchd", "", &db->mkeys, &db->mvals) < 0)
		goto out;

	/* Never the password: where it is, and which database. */
	host = db_opt(opts, "host");
	if (host == NULL)
		host = db_opt(opts, "hostaddr");
	port = db_opt(opts, "port");
	name = db_opt(opts, "dbname");
	if (name == NULL)
		name = db_opt(opts, "user");
	snprintf(db->where, sizeof(db->where), "%s:%s/%s",
	    host ? host : "localhost", port ? port : "5432",
	    name ? name : "postgres");
	rc = 0;

out:
	PQconninfoFree(opts);
	return rc;
}

/* --- the public face ----------------------------------------------------- */

/* Set up one connection slot. */
static int
db_conn_init(struct db *db, struct db_conn *c, const char *name, bool listener)
{
	c->db = db;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->listener = listener;
	c->state = DB_CONN_IDLE;
	c->backoff_ms = DB_BACKOFF_MIN_MS;
	TAILQ_INIT(&c->sent);
	c->ev_timer = evtimer_new(db->base, db_conn_timer_cb, c);
	return c->ev_timer != NULL ? 0 : -1;
}

/* Create the pool; nothing connects until db_start. NULL on failure. */
struct db *
db_new(struct event_base *base, const struct db_settings *s)
{
	struct db *db;
	char name[16];
	int i;

	db = calloc(1, sizeof(*db));
	if (db == NULL)
		return NULL;
	db->base = base;
	db->s = *s;
	db->s.pool_size = s->pool_size > 0 ? s->pool_size : 1;
	db->conninfo = strdup(s->conninfo != NULL ? s->conninfo : "");
	db->s.conninfo = db->conninfo;
	db->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	TAILQ_INIT(&db->waiting);
	TAILQ_INIT(&db->failed);
	db->mig.fds[0] = db->mig.fds[1] = -1;
	pthread_mutex_init(&db->mig.lock, NULL);
	db_mig_cond_init(&db->mig.cond);

	if (db->conninfo == NULL || db_parse(db) < 0)
		goto fail;
	db->ev_failed = event_new(base, -1, 0, db_failed_cb, db);
	db->ev_tick = event_new(base, -1, EV_PERSIST, db_tick_cb, db);
	db->conns = calloc((size_t)db->s.pool_size, sizeof(*db->conns));
	if (db->ev_failed == NULL || db->ev_tick == NULL || db->conns == NULL)
		goto fail;
	for (i = 0; i < db->s.pool_size; i++) {
		snprintf(name, sizeof(name), "db %d", i);
		db->nconns++;
		if (db_conn_init(db, &db->conns[i], name, false) < 0)
			goto fail;
	}
	if (db_conn_init(db, &db->listen, "db listen", true) < 0)
		goto fail;
	return db;

fail:
	db_free(db);
	return NULL;
}

/* Begin connecting (and migrating) in the background; returns at once. */
void
db_start(struct db *db)
{
	struct timeval tick = db_tv(DB_TICK_MS);
	int i;

	if (db->started)
		return;
	db->started = true;
	log_info("db", "connecting to %s with %d connections", db->where,
	    db->nconns);
	for (i = 0; i < db->nconns; i++)
		db_conn_connect(&db->conns[i]);
	if (db->nsubs > 0)
		db_conn_connect(&db->listen);
	event_add(db->ev_tick, &tick);

	if (db->s.migrate && db_mig_start(db) < 0)
		log_error("db", "cannot start the migration thread: %s",
		    strerror(errno));
	if (!db->s.migrate && migrate_latest() == NULL)
		db_schema_current(db, "no migrations embedded");
}

/* True when a connection is usable and the schema is current. */
bool
db_ready(const struct db *db)
{
	return db != NULL && db->schema_ok && db_usable(db);
}

/* Run one statement; the callback runs later from the loop. */
int
db_query(struct db *db, const char *sql, int nparams, const char *const *values,
    db_done_cb cb, void *arg)
{
	struct db_batch *batch;

	batch = db_batch_new();
	if (batch == NULL)
		return -1;
	db_batch_add(batch, sql, nparams, values);
	return db_batch_run(db, batch, cb, arg);
}

/* Run a batch (taken over) as one transaction; 0, or -1 with no callback. */
int
db_batch_run(struct db *db, struct db_batch *batch, db_done_cb cb, void *arg)
{
	struct db_job *job;

	if (batch == NULL)
		return -1;
	if (batch->broken) {
		db_batch_free(batch);
		return -1;
	}
	job = db_job_new(batch, DB_KIND_USER, cb, arg);
	if (job == NULL) {
		db_batch_free(batch);
		return -1;
	}
	db_submit(db, job);
	return 0;
}

/* Close one connection at shutdown, moving its jobs to the failed list. */
static void
db_conn_shut(struct db_conn *c)
{
	struct db_job *job;

	while ((job = TAILQ_FIRST(&c->sent)) != NULL) {
		TAILQ_REMOVE(&c->sent, job, link);
		db_fail_later(c->db, job, "database closed");
	}
	c->inflight = 0;
	if (c->ev_timer != NULL)
		db_conn_close(c);
	db_prep_reset(c);
	c->state = DB_CONN_IDLE;
}

/* Close every connection; pending callbacks get status -1 first. */
void
db_free(struct db *db)
{
	struct db_job *job;
	int i;

	if (db == NULL)
		return;
	db->closing = true;
	db_mig_stop(db);

	for (i = 0; i < db->nconns; i++)
		db_conn_shut(&db->conns[i]);
	db_conn_shut(&db->listen);
	db_fail_waiting(db, "database closed");

	/* Callbacks may submit more; those fail here too. */
	while ((job = TAILQ_FIRST(&db->failed)) != NULL) {
		TAILQ_REMOVE(&db->failed, job, link);
		db_job_finish(db, job);
	}

	for (i = 0; i < db->nconns; i++)
		if (db->conns[i].ev_timer != NULL)
			event_free(db->conns[i].ev_timer);
	if (db->listen.ev_timer != NULL)
		event_free(db->listen.ev_timer);
	if (db->ev_failed != NULL)
		event_free(db->ev_failed);
	if (db->ev_tick != NULL)
		event_free(db->ev_tick);
	for (i = 0; i < db->nsubs; i++)
		free(db->subs[i].channel);
	free(db->subs);
	free(db->conns);
	db_strv_free(db->keys);
	db_strv_free(db->vals);
	db_strv_free(db->mkeys);
	db_strv_free(db->mvals);
	free(db->schema_why);
	free(db->conninfo);
	pthread_mutex_destroy(&db->mig.lock);
	pthread_cond_destroy(&db->mig.cond);
	free(db);
}

/* One metric with its HELP and TYPE lines. */
static void
db_metric(
    struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(
	    out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Write pool state as Prometheus text lines to out. */
void
db_metrics(const struct db *db, struct evbuffer *out)
{
	int i, up = 0, inflight = 0;

	for (i = 0; i < db->nconns; i++) {
		if (db_conn_usable(&db->conns[i]))
			up++;
		inflight += db->conns[i].inflight;
	}

	db_metric(
	    out, "vouch_db_connections", "gauge", "Pool connections by state.");
	evbuffer_add_printf(out,
	    "vouch_db_connections{state=\"up\"} %d\n"
	    "vouch_db_connections{state=\"down\"} %d\n",
	    up, db->nconns - up);
	db_metric(out, "vouch_db_listen_up", "gauge",
	    "1 when the LISTEN connection is up.");
	evbuffer_add_printf(out, "vouch_db_listen_up %d\n",
	    db_conn_usable(&db->listen) ? 1 : 0);
	db_metric(out, "vouch_db_ready", "gauge",
	    "1 when a connection is up and the schema is current.");
	evbuffer_add_printf(out, "vouch_db_ready %d\n", db_ready(db) ? 1 : 0);
	db_metric(out, "vouch_db_queries_in_flight", "gauge",
	    "Queries sent and not yet answered.");
	evbuffer_add_printf(out, "vouch_db_queries_in_flight %d\n", inflight);
	db_metric(out, "vouch_db_queries_queued", "gauge",
	    "Queries waiting for room on a connection.");
	evbuffer_add_printf(out, "vouch_db_queries_queued %d\n", db->nwaiting);
	db_metric(out, "vouch_db_queries_total", "counter",
	    "Queries and batches completed.");
	evbuffer_add_printf(out, "vouch_db_queries_total %llu\n", db->queries);
	db_metric(out, "vouch_db_query_failures_total", "counter",
	    "Queries and batches that failed.");
	evbuffer_add_printf(
	    out, "vouch_db_query_failures_total %llu\n", db->failures);
	db_metric(out, "vouch_db_reconnects_total", "counter",
	    "Connections re-established after a loss.");
	evbuffer_add_printf(
	    out, "vouch_db_reconnects_total %llu\n", db->reconnects);
}
