/*
 * db and migrate against a real PostgreSQL: a throwaway cluster from
 * ops/devdb, then queries, pipelines, statements prepared per connection,
 * batches, both timeouts, LISTEN, the schema check, migrations, and a
 * server stopped and started again under a running pool. Run from the top
 * of the tree.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "db.h"
#include "migrate.h"

/*
 * The test brings its own migrations: this binary's definitions satisfy
 * migrate.c, so the linker never pulls the generated schema_files.o out
 * of libvouch.a.
 */
const struct migration migrations[] = {
	{ "001_first",
	    "CREATE TABLE t_first (id int PRIMARY KEY);\n"
	    "INSERT INTO t_first VALUES (1);\n" },
	{ "002_second",
	    "CREATE TABLE t_second_a (id int);\n"
	    "CREATE TABLE t_second (id int);\n" },
};
const size_t migrations_count = sizeof(migrations) / sizeof(migrations[0]);

#define TEST_TIMEOUT_MS 500 /* statement_timeout of the pools */

static struct {
	char dir[64];
	char url[256];      /* .../vouch, as ops/devdb printed it */
	char base_url[256]; /* the same without the database name */
	struct event_base *base;
	struct event *ticker;
	struct db *db;  /* two connections, migrates at start */
	struct db *one; /* one connection, only checks the schema */
} t;

/* What a query's callback saw. */
struct answer {
	int calls;
	int status;
	char error[256];
	char sqlstate[8];
	bool has_sqlstate;
	int count;
	PGresult *res[4]; /* taken from the result: the test clears */
	long long at_ms;
};

/* What a LISTEN subscriber saw. */
struct heard {
	int calls;
	int nulls;
	char channel[64];
	char payload[64];
};

/* Milliseconds on the monotonic clock. */
static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CPU time this process has used, in milliseconds. */
static long long
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* Keeps the loop waking up so run_until can look at its condition. */
static void
ticker_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* Run the loop until cond(arg) holds or ms pass; returns cond. */
static bool
run_until(bool (*cond)(void *), void *arg, int ms)
{
	long long end = now_ms() + ms;

	while (!cond(arg) && now_ms() < end)
		event_base_loop(t.base, EVLOOP_ONCE);
	return cond(arg);
}

/* Conditions for run_until. */
static bool
answered(void *arg)
{
	return ((struct answer *)arg)->calls > 0;
}

static bool
ready(void *arg)
{
	return db_ready(arg);
}

static bool
not_ready(void *arg)
{
	return !db_ready(arg);
}

static bool
heard_payload(void *arg)
{
	return ((struct heard *)arg)->calls > 0;
}

static bool
heard_null(void *arg)
{
	return ((struct heard *)arg)->nulls > 0;
}

/* Run the loop for ms. */
static void
run_for(int ms)
{
	long long end = now_ms() + ms;

	while (now_ms() < end)
		event_base_loop(t.base, EVLOOP_ONCE);
}

/* Record a result, keeping up to four PGresults. */
static void
answer_cb(struct db_result *r, void *arg)
{
	struct answer *a = arg;
	int i;

	a->calls++;
	a->status = r->status;
	a->count = r->count;
	a->at_ms = now_ms();
	snprintf(a->error, sizeof(a->error), "%s", r->error ? r->error : "");
	a->has_sqlstate = r->sqlstate != NULL;
	snprintf(a->sqlstate, sizeof(a->sqlstate), "%s",
	    r->sqlstate ? r->sqlstate : "");
	for (i = 0; i < r->count && i < 4; i++) {
		PQclear(a->res[i]);
		a->res[i] = r->res[i];
		r->res[i] = NULL;
	}
}

/* Clear what an answer kept. */
static void
answer_clear(struct answer *a)
{
	int i;

	for (i = 0; i < 4; i++)
		PQclear(a->res[i]);
	memset(a, 0, sizeof(*a));
}

/* Run one query on db and wait for its answer. */
static void
query_wait(struct db *db, struct answer *a, const char *sql, int n,
    const char *const *values)
{
	memset(a, 0, sizeof(*a));
	assert_int_equal(db_query(db, sql, n, values, answer_cb, a), 0);
	assert_true(run_until(answered, a, 10000));
	assert_int_equal(a->calls, 1);
}

/* The text of row 0, column col of statement i. */
static const char *
cell(const struct answer *a, int i, int col)
{
	assert_non_null(a->res[i]);
	assert_int_equal(PQresultStatus(a->res[i]), PGRES_TUPLES_OK);
	assert_true(PQntuples(a->res[i]) >= 1);
	return PQgetvalue(a->res[i], 0, col);
}

/* Record a notification. */
static void
heard_cb(const char *channel, const char *payload, void *arg)
{
	struct heard *h = arg;

	if (payload == NULL) {
		h->nulls++;
		return;
	}
	h->calls++;
	snprintf(h->channel, sizeof(h->channel), "%s", channel);
	snprintf(h->payload, sizeof(h->payload), "%s", payload);
}

/* One metric's value from db_metrics, or -1. */
static long long
metric(struct db *db, const char *name)
{
	struct evbuffer *out = evbuffer_new();
	char *text, *p;
	long long v = -1;
	size_t len;

	db_metrics(db, out);
	len = evbuffer_get_length(out);
	text = calloc(1, len + 1);
	evbuffer_remove(out, text, len);
	for (p = text; (p = strstr(p, name)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && p[strlen(name)] == ' ') {
			v = atoll(p + strlen(name) + 1);
			break;
		}
	}
	free(text);
	evbuffer_free(out);
	return v;
}

/* ops/devdb with a command; the first line of its output into out. */
static int
devdb(const char *cmd, char *out, size_t outlen)
{
	char line[512];
	FILE *p;

	snprintf(line, sizeof(line), "ops/devdb %s %s", cmd, t.dir);
	p = popen(line, "r");
	if (p == NULL)
		return -1;
	if (out != NULL) {
		out[0] = '\0';
		if (fgets(out, (int)outlen, p) != NULL)
			out[strcspn(out, "\n")] = '\0';
	}
	while (fgets(line, sizeof(line), p) != NULL)
		;
	return pclose(p) == 0 ? 0 : -1;
}

/* A blocking connection to one database of the cluster. */
static PGconn *
connect_to(const char *dbname)
{
	char url[320];
	PGconn *pg;

	snprintf(url, sizeof(url), "%s%s", t.base_url, dbname);
	pg = PQconnectdb(url);
	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	return pg;
}

/* Run SQL over a blocking connection; returns the first cell or "". */
static void
exec_ok(PGconn *pg, const char *sql, char *out, size_t outlen)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(pg));
	if (out != NULL)
		snprintf(out, outlen, "%s",
		    st == PGRES_TUPLES_OK && PQntuples(r) > 0
		        ? PQgetvalue(r, 0, 0)
		        : "");
	PQclear(r);
}

/* Create a fresh database in the cluster. */
static void
create_database(const char *name)
{
	PGconn *pg = connect_to("postgres");
	char sql[128];

	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	exec_ok(pg, sql, NULL, 0);
	PQfinish(pg);
}

/* A pool over url with the test's settings. */
static struct db *
pool(const char *url, int size, bool migrate)
{
	struct db_settings s = {
		.conninfo = url,
		.pool_size = size,
		.statement_timeout_ms = TEST_TIMEOUT_MS,
		.connect_timeout = 2,
		.migrate = migrate,
	};

	return db_new(t.base, &s);
}

static struct heard listen_a, listen_b;

/* Start the cluster and both pools; wait until they are ready. */
static int
setup(void **state)
{
	struct timeval tick = { 0, 10000 };
	char *slash;

	snprintf(t.dir, sizeof(t.dir), "/tmp/vouch-dbtest-XXXXXX");
	if (mkdtemp(t.dir) == NULL || chmod(t.dir, 0755) != 0)
		return -1;
	if (devdb("start", t.url, sizeof(t.url)) != 0 || t.url[0] == '\0')
		return -1;
	snprintf(t.base_url, sizeof(t.base_url), "%s", t.url);
	slash = strrchr(t.base_url, '/');
	slash[1] = '\0';

	t.base = event_base_new();
	t.ticker = event_new(t.base, -1, EV_PERSIST, ticker_cb, NULL);
	event_add(t.ticker, &tick);

	t.db = pool(t.url, 2, true);
	if (t.db == NULL ||
	    db_listen(t.db, "vouch_test", heard_cb, &listen_a) != 0)
		return -1;
	db_start(t.db);
	if (!run_until(ready, t.db, 15000))
		return -1;

	t.one = pool(t.url, 1, false);
	if (t.one == NULL)
		return -1;
	db_start(t.one);
	return run_until(ready, t.one, 10000) ? 0 : -1;
}

/* Free everything, stop the cluster, remove its directory. */
static int
teardown(void **state)
{
	char cmd[128];

	db_free(t.one);
	db_free(t.db);
	if (t.ticker != NULL)
		event_free(t.ticker);
	if (t.base != NULL)
		event_base_free(t.base);
	devdb("stop", NULL, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", t.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* --- the tests ----------------------------------------------------------- */

/* Without a connection a query fails from the loop, not inside the call. */
static void
test_unavailable(void **state)
{
	struct db *db = pool(t.url, 1, false);
	struct answer a = { 0 };

	assert_non_null(db);
	assert_false(db_ready(db));
	assert_int_equal(db_query(db, "SELECT 1", 0, NULL, answer_cb, &a), 0);
	assert_int_equal(a.calls, 0);
	assert_true(run_until(answered, &a, 1000));
	assert_int_equal(a.status, -1);
	assert_false(a.has_sqlstate);
	assert_string_equal(a.error, "database unavailable");
	db_free(db);
	assert_int_equal(a.calls, 1);
	answer_clear(&a);
}

/* db_start ran the migrations: both are recorded and took effect. */
static void
test_migrated_at_start(void **state)
{
	struct answer a;

	query_wait(t.db, &a,
	    "SELECT string_agg(name, ',' ORDER BY name) "
	    "FROM schema_migrations",
	    0, NULL);
	assert_int_equal(a.status, 0);
	assert_string_equal(cell(&a, 0, 0), "001_first,002_second");
	answer_clear(&a);

	query_wait(t.db, &a, "SELECT count(*) FROM t_first", 0, NULL);
	assert_string_equal(cell(&a, 0, 0), "1");
	answer_clear(&a);
	assert_string_equal(migrate_latest(), "002_second");
}

/* Text parameters, a NULL among them, text results. */
static void
test_params(void **state)
{
	const char *values[3] = { "41", NULL, "caf\xc3\xa9 o'clock" };
	struct answer a;

	query_wait(t.db, &a,
	    "SELECT $1::int + 1, $2::text IS NULL, "
	    "$3::text, $2::text",
	    3, values);
	assert_int_equal(a.status, 0);
	assert_int_equal(a.count, 1);
	assert_false(a.has_sqlstate);
	assert_string_equal(cell(&a, 0, 0), "42");
	assert_string_equal(cell(&a, 0, 1), "t");
	assert_string_equal(cell(&a, 0, 2), "caf\xc3\xa9 o'clock");
	assert_true(PQgetisnull(a.res[0], 0, 3));
	answer_clear(&a);
}

#define PIPELINED 300

static int order[PIPELINED];
static int norder;

/* Remember the order answers came in and check each value. */
static void
order_cb(struct db_result *r, void *arg)
{
	int i = (int)(intptr_t)arg;
	char want[16];

	snprintf(want, sizeof(want), "%d", i);
	if (r->status != 0 || strcmp(PQgetvalue(r->res[0], 0, 0), want) != 0)
		i = -1 - i;
	order[norder++] = i;
}

static bool
all_ordered(void *arg)
{
	return norder == PIPELINED;
}

/* Hundreds of queries on one connection: pipelined, answered in order. */
static void
test_pipeline_order(void **state)
{
	char value[16];
	const char *values[1] = { value };
	int i;

	norder = 0;
	for (i = 0; i < PIPELINED; i++) {
		snprintf(value, sizeof(value), "%d", i);
		assert_int_equal(db_query(t.one, "SELECT $1::int", 1, values,
		                     order_cb, (void *)(intptr_t)i),
		    0);
	}

	/* Many in flight at once, the rest waiting for room. */
	assert_true(metric(t.one, "vouch_db_queries_in_flight") > 50);
	assert_int_equal(metric(t.one, "vouch_db_queries_in_flight") +
	        metric(t.one, "vouch_db_queries_queued"),
	    PIPELINED);

	assert_true(run_until(all_ordered, NULL, 10000));
	for (i = 0; i < PIPELINED; i++)
		assert_int_equal(order[i], i);
	assert_int_equal(metric(t.one, "vouch_db_queries_queued"), 0);
}

/* A failing query between two good ones on the same connection. */
static void
test_error_isolated(void **state)
{
	struct answer a, b, c;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	assert_int_equal(
	    db_query(t.one, "SELECT 'before'", 0, NULL, answer_cb, &a), 0);
	assert_int_equal(
	    db_query(t.one, "SELECT 1/0", 0, NULL, answer_cb, &b), 0);
	assert_int_equal(
	    db_query(t.one, "SELECT 'after'", 0, NULL, answer_cb, &c), 0);
	assert_true(run_until(answered, &c, 5000));

	assert_int_equal(a.status, 0);
	assert_string_equal(cell(&a, 0, 0), "before");
	assert_int_equal(b.status, -1);
	assert_true(b.has_sqlstate);
	assert_string_equal(b.sqlstate, "22012");
	assert_non_null(strstr(b.error, "division by zero"));
	assert_int_equal(c.status, 0);
	assert_string_equal(cell(&c, 0, 0), "after");
	assert_true(a.at_ms <= b.at_ms && b.at_ms <= c.at_ms);
	answer_clear(&a);
	answer_clear(&b);
	answer_clear(&c);
}

/* Count the rows of t_batch. */
static const char *
batch_rows(struct answer *a)
{
	query_wait(t.db, a,
	    "SELECT count(*)::text || ':' || "
	    "coalesce(string_agg(id::text, ',' ORDER BY id), '') "
	    "FROM t_batch",
	    0, NULL);
	return cell(a, 0, 0);
}

/* A batch's statements commit together and each has its result. */
static void
test_batch_commit(void **state)
{
	const char *one[2] = { "1", "one" }, *two[2] = { "2", NULL };
	struct db_batch *batch;
	struct answer a;

	query_wait(t.db, &a,
	    "CREATE TABLE t_batch (id int PRIMARY KEY, "
	    "v text)",
	    0, NULL);
	assert_int_equal(a.status, 0);
	answer_clear(&a);

	batch = db_batch_new();
	db_batch_add(batch, "INSERT INTO t_batch VALUES ($1, $2)", 2, one);
	db_batch_add(batch, "INSERT INTO t_batch VALUES ($1, $2)", 2, two);
	db_batch_add(batch, "SELECT count(*) FROM t_batch", 0, NULL);
	memset(&a, 0, sizeof(a));
	assert_int_equal(db_batch_run(t.db, batch, answer_cb, &a), 0);
	assert_int_equal(a.calls, 0);
	assert_true(run_until(answered, &a, 5000));
	assert_int_equal(a.status, 0);
	assert_int_equal(a.count, 3);
	assert_int_equal(PQresultStatus(a.res[0]), PGRES_COMMAND_OK);
	assert_string_equal(PQcmdTuples(a.res[1]), "1");
	assert_string_equal(cell(&a, 2, 0), "2");
	answer_clear(&a);

	assert_string_equal(batch_rows(&a), "2:1,2");
	answer_clear(&a);
}

/* A failing statement rolls back the batch's earlier statements. */
static void
test_batch_rollback(void **state)
{
	const char *three[2] = { "3", "three" }, *dup[2] = { "1", "again" };
	const char *four[2] = { "4", "four" };
	struct db_batch *batch;
	struct answer a;

	batch = db_batch_new();
	db_batch_add(batch, "INSERT INTO t_batch VALUES ($1, $2)", 2, three);
	db_batch_add(batch, "INSERT INTO t_batch VALUES ($1, $2)", 2, dup);
	db_batch_add(batch, "INSERT INTO t_batch VALUES ($1, $2)", 2, four);
	memset(&a, 0, sizeof(a));
	assert_int_equal(db_batch_run(t.db, batch, answer_cb, &a), 0);
	assert_true(run_until(answered, &a, 5000));
	assert_int_equal(a.status, -1);
	assert_int_equal(a.count, 3);
	assert_string_equal(a.sqlstate, "23505");
	assert_non_null(strstr(a.error, "duplicate key"));
	answer_clear(&a);

	assert_string_equal(batch_rows(&a), "2:1,2");
	answer_clear(&a);
}

/* The server's statement_timeout cancels a long statement: 57014. */
static void
test_statement_timeout(void **state)
{
	long long start = now_ms();
	struct answer a;

	query_wait(t.db, &a, "SELECT pg_sleep(3)", 0, NULL);
	assert_int_equal(a.status, -1);
	assert_string_equal(a.sqlstate, "57014");
	assert_true(a.at_ms - start < 1500);
	answer_clear(&a);
	assert_true(db_ready(t.db));
}

/*
 * A statement the server does not stop (the session turned its timeout
 * off) hits the client's deadline: no sqlstate, and the connection is
 * replaced.
 */
static void
test_client_deadline(void **state)
{
	long long start = now_ms(), before;
	struct db_batch *batch;
	struct answer a;

	before = metric(t.db, "vouch_db_reconnects_total");
	batch = db_batch_new();
	db_batch_add(batch, "SET statement_timeout = 0", 0, NULL);
	db_batch_add(batch, "SELECT pg_sleep(6)", 0, NULL);
	memset(&a, 0, sizeof(a));
	assert_int_equal(db_batch_run(t.db, batch, answer_cb, &a), 0);
	assert_true(run_until(answered, &a, 8000));
	assert_int_equal(a.status, -1);
	assert_false(a.has_sqlstate);
	assert_true(a.at_ms - start >= 1500);
	assert_true(a.at_ms - start < 4000);
	answer_clear(&a);

	/* The other connection kept the pool ready; the dropped one returns. */
	assert_true(db_ready(t.db));
	run_for(1000);
	assert_int_equal(metric(t.db, "vouch_db_reconnects_total"), before + 1);
	assert_int_equal(metric(t.db, "vouch_db_connections{state=\"up\"}"), 2);
	query_wait(t.db, &a, "SELECT 'still fine'", 0, NULL);
	assert_int_equal(a.status, 0);
	answer_clear(&a);
}

/* Send NOTIFY until the subscriber hears it: LISTEN may still be on its
   way. */
static void
notify_until_heard(const char *channel, const char *payload, struct heard *h)
{
	const char *values[2] = { channel, payload };
	long long end = now_ms() + 5000;
	struct answer a;

	while (h->calls == 0 && now_ms() < end) {
		query_wait(t.db, &a, "SELECT pg_notify($1, $2)", 2, values);
		assert_int_equal(a.status, 0);
		answer_clear(&a);
		run_until(heard_payload, h, 200);
	}
	assert_int_equal(h->calls, 1);
	assert_string_equal(h->channel, channel);
	assert_string_equal(h->payload, payload);
}

/* Notifications reach the subscribers of their channel only. */
static void
test_listen(void **state)
{
	notify_until_heard("vouch_test", "hello", &listen_a);
	assert_int_equal(listen_a.nulls, 0);

	/* Subscribed after start, with a name that needs quoting. */
	assert_int_equal(
	    db_listen(t.db, "Odd \"Name\"", heard_cb, &listen_b), 0);
	notify_until_heard("Odd \"Name\"", "x y", &listen_b);
	assert_int_equal(listen_a.calls, 1);
	assert_int_equal(listen_b.nulls, 0);
}

/* A pool that only checks the schema is not ready until it is current. */
static void
test_schema_check(void **state)
{
	char url[320], err[256];
	struct db *db;
	PGconn *pg;

	create_database("fresh");
	snprintf(url, sizeof(url), "%sfresh", t.base_url);
	db = pool(url, 1, false);
	assert_non_null(db);
	db_start(db);
	run_for(700);
	assert_int_equal(metric(db, "vouch_db_connections{state=\"up\"}"), 1);
	assert_false(db_ready(db));

	/* Migrated from elsewhere: the periodic re-check notices. */
	pg = connect_to("fresh");
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), 2);
	PQfinish(pg);
	assert_true(run_until(ready, db, 5000));
	db_free(db);
}

/* Applying twice applies once. */
static void
test_migrate_twice(void **state)
{
	char err[256], rows[64];
	PGconn *pg;

	create_database("mig_a");
	pg = connect_to("mig_a");
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), 2);
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), 0);
	exec_ok(
	    pg, "SELECT count(*) FROM schema_migrations", rows, sizeof(rows));
	assert_string_equal(rows, "2");
	exec_ok(pg, "SELECT count(*) FROM t_first", rows, sizeof(rows));
	assert_string_equal(rows, "1");
	PQfinish(pg);
}

/* A failing migration is rolled back whole and named in the error. */
static void
test_migrate_failure(void **state)
{
	char err[256], out[64];
	PGconn *pg;

	create_database("mig_b");
	pg = connect_to("mig_b");
	exec_ok(pg, "CREATE TABLE t_second (x int)", NULL, 0);
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), -1);
	assert_memory_equal(err, "002_second: ", 12);
	assert_non_null(strstr(err, "already exists"));

	exec_ok(pg, "SELECT string_agg(name, ',') FROM schema_migrations", out,
	    sizeof(out));
	assert_string_equal(out, "001_first");
	exec_ok(
	    pg, "SELECT to_regclass('t_second_a') IS NULL", out, sizeof(out));
	assert_string_equal(out, "t");
	exec_ok(pg,
	    "SELECT count(*) FROM pg_locks WHERE locktype = "
	    "'advisory'",
	    out, sizeof(out));
	assert_string_equal(out, "0");

	exec_ok(pg, "DROP TABLE t_second", NULL, 0);
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), 1);
	PQfinish(pg);
}

/* A database migrated by a newer binary is refused. */
static void
test_migrate_newer_schema(void **state)
{
	char err[256];
	PGconn *pg;

	create_database("mig_c");
	pg = connect_to("mig_c");
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), 2);
	exec_ok(pg,
	    "INSERT INTO schema_migrations (name) VALUES "
	    "('003_future')",
	    NULL, 0);
	assert_int_equal(migrate_apply(pg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "003_future"));
	PQfinish(pg);
}

static int racer_result[2];

/* One of two processes starting at once. */
static void *
racer(void *arg)
{
	int i = (int)(intptr_t)arg;
	char url[320], err[256];
	PGconn *pg;

	snprintf(url, sizeof(url), "%smig_d", t.base_url);
	pg = PQconnectdb(url);
	racer_result[i] = PQstatus(pg) == CONNECTION_OK
	    ? migrate_apply(pg, err, sizeof(err))
	    : -2;
	PQfinish(pg);
	return NULL;
}

/* Two at once: the advisory lock lets exactly one apply each migration. */
static void
test_migrate_concurrent(void **state)
{
	pthread_t a, b;

	create_database("mig_d");
	assert_int_equal(pthread_create(&a, NULL, racer, (void *)0), 0);
	assert_int_equal(pthread_create(&b, NULL, racer, (void *)1), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_true(racer_result[0] >= 0 && racer_result[1] >= 0);
	assert_int_equal(racer_result[0] + racer_result[1], 2);
}

/*
 * PostgreSQL stops: not ready within seconds, queries fail at once
 * without a sqlstate. It starts again: ready, queries work, and LISTEN
 * subscribers hear that they may have missed something.
 */
static void
test_server_restart(void **state)
{
	char url[256];
	long long start, cpu;
	struct answer a;

	assert_int_equal(devdb("stop", NULL, 0), 0);
	start = now_ms();
	assert_true(run_until(not_ready, t.db, 5000));
	assert_true(now_ms() - start < 3000);
	assert_true(run_until(not_ready, t.one, 1000));

	start = now_ms();
	query_wait(t.db, &a, "SELECT 1", 0, NULL);
	assert_int_equal(a.status, -1);
	assert_false(a.has_sqlstate);
	assert_true(a.at_ms - start < 200);
	answer_clear(&a);

	/* Down for a while: the pool keeps retrying without spinning. */
	cpu = cpu_ms();
	run_for(1500);
	assert_true(cpu_ms() - cpu < 300);
	assert_false(db_ready(t.db));
	assert_int_equal(metric(t.db, "vouch_db_connections{state=\"up\"}"), 0);

	assert_int_equal(devdb("start", url, sizeof(url)), 0);
	assert_string_equal(url, t.url);
	assert_true(run_until(ready, t.db, 10000));
	assert_true(run_until(ready, t.one, 10000));
	query_wait(t.db, &a, "SELECT 'back'", 0, NULL);
	assert_int_equal(a.status, 0);
	assert_string_equal(cell(&a, 0, 0), "back");
	answer_clear(&a);

	assert_true(run_until(heard_null, &listen_a, 5000));
	assert_true(run_until(heard_null, &listen_b, 1000));
	assert_int_equal(listen_a.nulls, 1);
	listen_a.calls = 0;
	notify_until_heard("vouch_test", "again", &listen_a);
}

/* --- prepared statements (on t.one: one connection, one session) ------- */

#define PREP_SQL "SELECT $1::int * 2 AS prepared_once"
#define PREP_BAD "SELEC 1 AS prepared_never"
#define PREP_MANY 300 /* distinct texts, beyond the cache's bound */

/* How many statements t.one's session holds with this text, and their
   executions so far. */
static void
prepared(const char *sql, long *count, long *runs)
{
	const char *values[1] = { sql };
	struct answer a;

	query_wait(t.one, &a,
	    "SELECT count(*), coalesce(sum(generic_plans "
	    "+ custom_plans), 0) FROM pg_prepared_statements "
	    "WHERE statement = $1",
	    1, values);
	assert_int_equal(a.status, 0);
	*count = atol(cell(&a, 0, 0));
	*runs = atol(cell(&a, 0, 1));
	answer_clear(&a);
}

/* Run PREP_SQL with value i on t.one and check the answer. */
static void
prep_run(int i)
{
	char value[16], want[16];
	const char *values[1] = { value };
	struct answer a;

	snprintf(value, sizeof(value), "%d", i);
	snprintf(want, sizeof(want), "%d", i * 2);
	query_wait(t.one, &a, PREP_SQL, 1, values);
	assert_int_equal(a.status, 0);
	assert_string_equal(cell(&a, 0, 0), want);
	answer_clear(&a);
}

static int prep_ok;

/* Count right answers of pipelined PREP_SQL runs. */
static void
prep_cb(struct db_result *r, void *arg)
{
	char want[16];

	snprintf(want, sizeof(want), "%d", (int)(intptr_t)arg * 2);
	if (r->status == 0 && strcmp(PQgetvalue(r->res[0], 0, 0), want) == 0)
		prep_ok++;
}

static bool
prep_all(void *arg)
{
	return prep_ok == *(int *)arg;
}

/* The same text many times: prepared once on the connection, reused. */
static void
test_prepared_once(void **state)
{
	char value[16];
	const char *values[1] = { value };
	long count, runs;
	int i, n = 100;

	for (i = 0; i < 20; i++)
		prep_run(i);
	prepared(PREP_SQL, &count, &runs);
	assert_int_equal(count, 1);
	assert_int_equal(runs, 20);

	/* Pipelined deep, some while the statement is still unknown. */
	prep_ok = 0;
	for (i = 0; i < n; i++) {
		snprintf(value, sizeof(value), "%d", i);
		assert_int_equal(db_query(t.one, PREP_SQL, 1, values, prep_cb,
		                     (void *)(intptr_t)i),
		    0);
	}
	assert_true(run_until(prep_all, &n, 10000));
	prepared(PREP_SQL, &count, &runs);
	assert_int_equal(count, 1);
	assert_int_equal(runs, 20 + n);
}

/* Expect PREP_BAD's syntax error in a. */
static void
assert_syntax_error(const struct answer *a)
{
	assert_int_equal(a->calls, 1);
	assert_int_equal(a->status, -1);
	assert_true(a->has_sqlstate);
	assert_string_equal(a->sqlstate, "42601");
	assert_non_null(strstr(a->error, "syntax error"));
}

/* A prepare that fails fails its query, and again on the next use. */
static void
test_prepare_failure(void **state)
{
	struct answer a, b, c, d;
	long count, runs;

	query_wait(t.one, &a, PREP_BAD, 0, NULL);
	assert_syntax_error(&a);
	answer_clear(&a);
	query_wait(t.one, &a, PREP_BAD, 0, NULL);
	assert_syntax_error(&a);
	answer_clear(&a);

	/* Pipelined: each use fails alone, the neighbours are untouched. */
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	assert_int_equal(db_query(t.one, PREP_BAD, 0, NULL, answer_cb, &a), 0);
	assert_int_equal(
	    db_query(t.one, "SELECT 'between'", 0, NULL, answer_cb, &b), 0);
	assert_int_equal(db_query(t.one, PREP_BAD, 0, NULL, answer_cb, &c), 0);
	assert_int_equal(
	    db_query(t.one, "SELECT 'between'", 0, NULL, answer_cb, &d), 0);
	assert_true(run_until(answered, &d, 5000));
	assert_syntax_error(&a);
	assert_syntax_error(&c);
	assert_int_equal(b.status, 0);
	assert_string_equal(cell(&b, 0, 0), "between");
	assert_int_equal(d.status, 0);
	answer_clear(&a);
	answer_clear(&b);
	answer_clear(&c);
	answer_clear(&d);

	prepared(PREP_BAD, &count, &runs);
	assert_int_equal(count, 0);
	prep_run(7);
}

/* A batch aborted before a new text's prepare: the text works later. */
static void
test_prepare_aborted(void **state)
{
	const char *sql = "SELECT 'after the abort' AS prepared_late";
	struct db_batch *batch;
	struct answer a;
	long count, runs;

	batch = db_batch_new();
	db_batch_add(batch, "SELECT 1/0", 0, NULL);
	db_batch_add(batch, sql, 0, NULL);
	memset(&a, 0, sizeof(a));
	assert_int_equal(db_batch_run(t.one, batch, answer_cb, &a), 0);
	assert_true(run_until(answered, &a, 5000));
	assert_int_equal(a.status, -1);
	assert_string_equal(a.sqlstate, "22012");
	answer_clear(&a);

	query_wait(t.one, &a, sql, 0, NULL);
	assert_int_equal(a.status, 0);
	assert_string_equal(cell(&a, 0, 0), "after the abort");
	answer_clear(&a);
	query_wait(t.one, &a, sql, 0, NULL);
	assert_int_equal(a.status, 0);
	answer_clear(&a);
	prepared(sql, &count, &runs);
	assert_int_equal(count, 1);
	assert_int_equal(runs, 2);
}

/* A table's shape changes under a prepared SELECT *: one failure, then
   the statement is prepared afresh. */
static void
test_prepare_shape_change(void **state)
{
	const char *sql = "SELECT * FROM t_shape";
	struct answer a;

	query_wait(t.one, &a, "CREATE TABLE t_shape (a int)", 0, NULL);
	assert_int_equal(a.status, 0);
	answer_clear(&a);
	query_wait(t.one, &a, "INSERT INTO t_shape VALUES (1)", 0, NULL);
	answer_clear(&a);
	query_wait(t.one, &a, sql, 0, NULL);
	assert_int_equal(a.status, 0);
	assert_int_equal(PQnfields(a.res[0]), 1);
	answer_clear(&a);

	query_wait(t.db, &a, "ALTER TABLE t_shape ADD COLUMN b int", 0, NULL);
	assert_int_equal(a.status, 0);
	answer_clear(&a);
	query_wait(t.one, &a, sql, 0, NULL);
	assert_int_equal(a.status, -1);
	assert_string_equal(a.sqlstate, "0A000");
	answer_clear(&a);
	query_wait(t.one, &a, sql, 0, NULL);
	assert_int_equal(a.status, 0);
	assert_int_equal(PQnfields(a.res[0]), 2);
	answer_clear(&a);
}

static char many_bad[64];
static int many_ok;

/* Check the answer to text number i. */
static void
many_cb(struct db_result *r, void *arg)
{
	char want[16];

	snprintf(want, sizeof(want), "%d", (int)(intptr_t)arg);
	if (r->status == 0 && strcmp(PQgetvalue(r->res[0], 0, 0), want) == 0)
		many_ok++;
	else if (many_bad[0] == '\0')
		snprintf(many_bad, sizeof(many_bad), "%d: %s",
		    (int)(intptr_t)arg, r->error ? r->error : "wrong value");
}

static bool
many_all(void *arg)
{
	return many_ok + (many_bad[0] != '\0') == *(int *)arg;
}

/* More distinct texts than the cache holds: all of them still work. */
static void
test_prepare_many(void **state)
{
	char sql[64], total[16];
	struct answer a;
	int i, round, n = PREP_MANY;

	for (round = 0; round < 2; round++) {
		many_ok = 0;
		many_bad[0] = '\0';
		for (i = 0; i < n; i++) {
			snprintf(sql, sizeof(sql), "SELECT %d AS many", i);
			assert_int_equal(db_query(t.one, sql, 0, NULL, many_cb,
			                     (void *)(intptr_t)i),
			    0);
		}
		assert_true(run_until(many_all, &n, 10000));
		assert_string_equal(many_bad, "");
		assert_int_equal(many_ok, n);
	}

	/* The session holds no more than the bound. */
	query_wait(
	    t.one, &a, "SELECT count(*) FROM pg_prepared_statements", 0, NULL);
	snprintf(total, sizeof(total), "%s", cell(&a, 0, 0));
	answer_clear(&a);
	assert_true(atoi(total) > 100 && atoi(total) <= 256);
	prep_run(9);
}

/* After the server restarted, the new sessions prepare again. */
static void
test_prepared_after_restart(void **state)
{
	long count, runs;

	prep_run(1);
	prep_run(2);
	prep_run(3);
	prepared(PREP_SQL, &count, &runs);
	assert_int_equal(count, 1);
	assert_int_equal(runs, 3);
	test_prepare_failure(state);
}

static struct db *freeing;
static struct answer late;

/* A callback that submits more while the pool is being freed. */
static void
resubmit_cb(struct db_result *r, void *arg)
{
	answer_cb(r, arg);
	assert_int_equal(
	    db_query(freeing, "SELECT 2", 0, NULL, answer_cb, &late), 0);
}

/* db_free fails what is pending, exactly once, before it returns. */
static void
test_free_pending(void **state)
{
	struct answer a;

	memset(&a, 0, sizeof(a));
	memset(&late, 0, sizeof(late));
	freeing = t.one;
	assert_int_equal(
	    db_query(t.one, "SELECT pg_sleep(0.2)", 0, NULL, resubmit_cb, &a),
	    0);
	run_for(20);
	db_free(t.one);
	t.one = NULL;
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, -1);
	assert_false(a.has_sqlstate);
	assert_int_equal(late.calls, 1);
	assert_int_equal(late.status, -1);
	answer_clear(&a);
	answer_clear(&late);
	run_for(300);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unavailable),
		cmocka_unit_test(test_migrated_at_start),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_pipeline_order),
		cmocka_unit_test(test_error_isolated),
		cmocka_unit_test(test_prepared_once),
		cmocka_unit_test(test_prepare_failure),
		cmocka_unit_test(test_prepare_aborted),
		cmocka_unit_test(test_prepare_shape_change),
		cmocka_unit_test(test_batch_commit),
		cmocka_unit_test(test_batch_rollback),
		cmocka_unit_test(test_statement_timeout),
		cmocka_unit_test(test_client_deadline),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_schema_check),
		cmocka_unit_test(test_migrate_twice),
		cmocka_unit_test(test_migrate_failure),
		cmocka_unit_test(test_migrate_newer_schema),
		cmocka_unit_test(test_migrate_concurrent),
		cmocka_unit_test(test_prepare_many),
		cmocka_unit_test(test_server_restart),
		cmocka_unit_test(test_prepared_after_restart),
		cmocka_unit_test(test_free_pending),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
