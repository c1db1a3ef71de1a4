/*
 * Schema migrations over one blocking connection: take the advisory lock,
 * make sure the bookkeeping table exists, refuse a schema newer than this
 * binary, then apply each pending file in a transaction of its own. Runs
 * off the event loop: on a thread of vouchd, or in vouchctl.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "migrate.h"

/* The advisory lock every vouch process takes around migrations. */
#define MIGRATE_LOCK_KEY "8391725640017"

static const char migrate_sql_exists[] =
    "SELECT to_regclass('schema_migrations') IS NOT NULL";

static const char migrate_sql_table[] =
    "CREATE TABLE schema_migrations ("
    " name text PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

/* Write "what: message" into err, from a failed result or the connection. */
static void
migrate_error(PGconn *conn, const PGresult *res, const char *what, char *err,
    size_t errlen)
{
	const char *msg = NULL;
	size_t len;

	if (res != NULL)
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (msg == NULL)
		msg = PQerrorMessage(conn);
	if (msg == NULL || *msg == '\0')
		msg = "unknown error";

	/* libpq ends its own messages with a newline; keep one line. */
	len = strcspn(msg, "\n");
	snprintf(err, errlen, "%s: %.*s", what, (int)len, msg);
}

/* Run SQL that returns no rows we need; 0, or -1 with "what: ..." in err. */
static int
migrate_exec(
    PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *res;
	ExecStatusType st;
	int rc = 0;

	res = PQexec(conn, sql);
	st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
	    st != PGRES_EMPTY_QUERY) {
		migrate_error(conn, res, what, err, errlen);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* True when this binary embeds a migration of that name. */
static bool
migrate_known(const char *name)
{
	size_t i;

	for (i = 0; i < migrations_count; i++)
		if (strcmp(migrations[i].name, name) == 0)
			return true;
	return false;
}

/* True when the applied list holds that name. */
static bool
migrate_recorded(const PGresult *applied, const char *name)
{
	int i;

	for (i = 0; i < PQntuples(applied); i++)
		if (strcmp(PQgetvalue(applied, i, 0), name) == 0)
			return true;
	return false;
}

/*
 * Create the bookkeeping table unless it exists. Asking first (the lock is
 * held) spares the log the notice that IF NOT EXISTS would print.
 */
static int
migrate_table(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res;
	bool exists;

	res = PQexec(conn, migrate_sql_exists);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		migrate_error(conn, res, "schema_migrations", err, errlen);
		PQclear(res);
		return -1;
	}
	exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);

	if (exists)
		return 0;
	return migrate_exec(
	    conn, migrate_sql_table, "schema_migrations", err, errlen);
}

/* Read the applied names; refuse any this binary does not know. */
static PGresult *
migrate_read_applied(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res;
	int i;

	res = PQexec(conn, "SELECT name FROM schema_migrations ORDER BY name");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		migrate_error(conn, res, "schema_migrations", err, errlen);
		PQclear(res);
		return NULL;
	}

	for (i = 0; i < PQntuples(res); i++) {
		if (migrate_known(PQgetvalue(res, i, 0)))
			continue;
		snprintf(err, errlen,
		    "the database has migration %s, which "
		    "this binary does not know: its schema is newer",
		    PQgetvalue(res, i, 0));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Apply one migration and record it, in one transaction. */
static int
migrate_one(PGconn *conn, const struct migration *m, char *err, size_t errlen)
{
	const char *params[1] = { m->name };
	PGresult *res = NULL;

	if (migrate_exec(conn, "BEGIN", m->name, err, errlen) < 0)
		return -1;
	if (migrate_exec(conn, m->sql, m->name, err, errlen) < 0)
		goto fail;

	res = PQexecParams(conn,
	    "INSERT INTO schema_migrations (name) VALUES ($1)", 1, NULL, params,
	    NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		migrate_error(conn, res, m->name, err, errlen);
		goto fail;
	}
	PQclear(res);
	res = NULL;

	if (migrate_exec(conn, "COMMIT", m->name, err, errlen) < 0)
		goto fail;
	log_info("db migrate", "applied %s", m->name);
	return 0;

fail:
	PQclear(res);
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}

/* Apply what is pending, with the lock held; returns the count or -1. */
static int
migrate_locked(PGconn *conn, char *err, size_t errlen)
{
	PGresult *applied = NULL;
	size_t i;
	int count = 0;

	if (migrate_table(conn, err, errlen) < 0)
		return -1;
	applied = migrate_read_applied(conn, err, errlen);
	if (applied == NULL)
		return -1;

	for (i = 0; i < migrations_count; i++) {
		if (migrate_recorded(applied, migrations[i].name))
			continue;
		if (migrate_one(conn, &migrations[i], err, errlen) < 0) {
			count = -1;
			break;
		}
		count++;
	}

	PQclear(applied);
	return count;
}

/* Lock, apply what is pending, unlock; returns the count or -1. */
int
migrate_apply(PGconn *conn, char *err, size_t errlen)
{
	int applied;

	if (migrate_exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
	        "advisory lock", err, errlen) < 0)
		return -1;

	applied = migrate_locked(conn, err, errlen);

	/* A broken connection drops the lock with the session anyway. */
	PQclear(
	    PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
	return applied;
}

/* The last name in the embedded list, which ops/embed-schema sorted. */
const char *
migrate_latest(void)
{
	if (migrations_count == 0)
		return NULL;
	return migrations[migrations_count - 1].name;
}
