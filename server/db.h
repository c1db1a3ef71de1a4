/*
 * PostgreSQL on the event loop: a pool of non-blocking libpq connections
 * in pipeline mode, reconnect with back-off, a LISTEN connection, and the
 * schema migrations applied at start. Queries never block the loop.
 */
#ifndef VOUCH_DB_H
#define VOUCH_DB_H

#include <stdbool.h>
#include <event2/event.h>
#include <libpq-fe.h>

struct db;
struct db_batch;

struct db_settings {
	const char *conninfo;     /* a libpq connection string or URL */
	int pool_size;            /* connections for queries */
	int statement_timeout_ms; /* set on every connection */
	int connect_timeout;      /* seconds */
	bool migrate;             /* apply schema/ before ready */
};

/*
 * What a query or batch produced. Valid only during the callback: the db
 * frees the results when the callback returns (a callback that wants to
 * keep one sets its slot in res to NULL and then owns it).
 */
struct db_result {
	int status;           /* 0, or -1 when anything failed */
	const char *error;    /* the message when -1 */
	const char *sqlstate; /* "23505" etc.; NULL when the database
	                         was not reached (unreachable, timeout) */
	int count;            /* statements in the query or batch */
	PGresult **res;       /* one per statement, PGRES_TUPLES_OK or
	                         PGRES_COMMAND_OK when status is 0 */
};

typedef void (*db_done_cb)(struct db_result *result, void *arg);

/* Called with payload NULL after the LISTEN connection was re-established:
   notifications may have been missed in between. */
typedef void (*db_notify_cb)(
    const char *channel, const char *payload, void *arg);

/* Create the pool; nothing connects until db_start. */
struct db *db_new(struct event_base *base, const struct db_settings *s);

/* Begin connecting (and migrating) in the background; returns at once. */
void db_start(struct db *db);

/* Close every connection; pending callbacks get status -1 first. */
void db_free(struct db *db);

/* True when a connection is usable and the schema is current. */
bool db_ready(const struct db *db);

/*
 * Run one statement with text parameters (values[i] NULL for SQL NULL).
 * The callback runs exactly once, always later from the loop, never from
 * inside this call. Returns 0, or -1 (and no callback) on allocation
 * failure only.
 */
int db_query(struct db *db, const char *sql, int nparams,
    const char *const *values, db_done_cb cb, void *arg);

/*
 * A batch: statements sent together and run as one transaction (they
 * commit together or not at all). Build with db_batch_add, then hand it
 * to db_batch_run, which takes ownership.
 */
struct db_batch *db_batch_new(void);
void db_batch_add(struct db_batch *batch, const char *sql, int nparams,
    const char *const *values);
int db_batch_run(
    struct db *db, struct db_batch *batch, db_done_cb cb, void *arg);
void db_batch_free(struct db_batch *batch);

/* Subscribe to a channel on the LISTEN connection. */
int db_listen(struct db *db, const char *channel, db_notify_cb cb, void *arg);

/* Write pool state as Prometheus text lines to out. */
struct evbuffer;
void db_metrics(const struct db *db, struct evbuffer *out);

#endif
