/*
 * vouchctl: the operator's command. It talks to PostgreSQL directly with
 * blocking libpq (it is a short-lived command, not the server): apply
 * migrations, create a tenant and its first admin key, verify an audit
 * chain.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "conf.h"
#include "ctl_device.h"
#include "ctl_push.h"
#include "migrate.h"
#include "util.h"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: vouchctl -c FILE COMMAND\n"
	    "commands:\n"
	    "  migrate                     apply pending schema migrations\n"
	    "  tenant create --name NAME   create an MSP and its first admin;\n"
	    "                              prints {msp_id, technician_id,"
	    " api_key}\n"
	    "  audit verify --msp ID       check an MSP's audit chain\n");
	ctl_device_usage(out);
	ctl_push_usage(out);
}

/* Connect with the configured URL, or print why not. */
static PGconn *
ctl_connect(const struct conf *conf)
{
	PGconn *conn = PQconnectdb(conf->database_url);

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "vouchctl: cannot connect to the database: %s",
		    PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Run one statement; prints the error and returns -1 when it fails. */
static int
ctl_exec(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "vouchctl: %s", PQresultErrorMessage(res));
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* vouchctl migrate */
static int
ctl_migrate(PGconn *conn)
{
	char err[512];
	int applied;

	applied = migrate_apply(conn, err, sizeof(err));
	if (applied < 0) {
		fprintf(stderr, "vouchctl: migration failed: %s\n", err);
		return 1;
	}
	printf("migrations: %d applied, schema at %s\n", applied,
	    migrate_latest());
	return 0;
}

/* The statements of a tenant creation, in one transaction. */
static int
ctl_tenant_insert(PGconn *conn, const char *msp_id, const char *name,
    const char *tech_id, const char *hash_hex)
{
	const char *msp[2] = { msp_id, name };
	const char *tech[3] = { msp_id, tech_id, hash_hex };

	return ctl_exec(conn, "BEGIN", 0, NULL) != 0 ||
	        ctl_exec(conn, "INSERT INTO msps (id, name) VALUES ($1, $2)", 2,
	            msp) != 0 ||
	        ctl_exec(conn,
	            "INSERT INTO technicians (msp_id, id, display_name,"
	            " role, key_hash) VALUES ($1, $2, 'Administrator', 'admin',"
	            " decode($3, 'hex'))",
	            3, tech) != 0 ||
	        ctl_exec(conn,
	            "SELECT audit_append($1, 'msp.created', 'system',"
	            " NULL, 'msp', $1, jsonb_build_object('name', $2::text))",
	            2, msp) != 0 ||
	        ctl_exec(conn,
	            "SELECT audit_append($1, 'technician.created',"
	            " 'system', NULL, 'technician', $2, jsonb_build_object("
	            "'display_name', 'Administrator', 'role', 'admin'))",
	            2, tech) != 0 ||
	        ctl_exec(conn, "COMMIT", 0, NULL) != 0
	    ? -1
	    : 0;
}

/* vouchctl tenant create --name NAME */
static int
ctl_tenant_create(PGconn *conn, const char *name)
{
	char msp_id[UTIL_UUID_LEN + 1], tech_id[UTIL_UUID_LEN + 1];
	char key[AUTH_KEY_LEN + 1], hash_hex[AUTH_HASH_HEX_LEN + 1];
	json_t *out;
	int rc = 1;

	if (!util_utf8_length_ok(name, 1, 200)) {
		fprintf(
		    stderr, "vouchctl: --name must be 1 to 200 characters\n");
		return 2;
	}
	util_uuid_new(msp_id);
	util_uuid_new(tech_id);
	auth_key_new(key, hash_hex);

	if (ctl_tenant_insert(conn, msp_id, name, tech_id, hash_hex) != 0)
		goto out;

	out = json_pack("{s:s, s:s, s:s}", "msp_id", msp_id, "technician_id",
	    tech_id, "api_key", key);
	if (out == NULL || json_dumpf(out, stdout, JSON_COMPACT) != 0)
		goto out;
	putchar('\n');
	json_decref(out);
	rc = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/* vouchctl audit verify --msp ID: exit 0 intact, 1 broken. */
static int
ctl_audit_verify(PGconn *conn, const char *msp_id)
{
	const char *params[1] = { msp_id };
	PGresult *res;
	int rc = 1;

	if (!util_uuid_valid(msp_id)) {
		fprintf(stderr, "vouchctl: --msp must be a UUID\n");
		return 2;
	}
	res = PQexecParams(conn,
	    "SELECT v.intact, v.last_seq, v.broken_at,"
	    " EXISTS (SELECT 1 FROM msps WHERE id = $1)"
	    " FROM audit_verify($1) v",
	    1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "vouchctl: %s", PQresultErrorMessage(res));
		rc = 2;
	} else if (strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
		fprintf(stderr, "vouchctl: no MSP %s\n", msp_id);
		rc = 2;
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		printf("audit chain of %s intact: %s events\n", msp_id,
		    PQgetvalue(res, 0, 1));
		rc = 0;
	} else {
		printf("audit chain of %s broken at seq %s\n", msp_id,
		    PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	return rc;
}

/* The value of --NAME in argv, or NULL. */
static const char *
ctl_option(int argc, char **argv, const char *name)
{
	int i;

	for (i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

/* Pick the command from the words after the options. */
static int
ctl_dispatch(PGconn *conn, int argc, char **argv)
{
	const char *value;

	if (argc == 1 && strcmp(argv[0], "migrate") == 0)
		return ctl_migrate(conn);

	if (argc >= 2 && strcmp(argv[0], "tenant") == 0 &&
	    strcmp(argv[1], "create") == 0) {
		value = ctl_option(argc, argv, "--name");
		if (value != NULL && argc == 4)
			return ctl_tenant_create(conn, value);
	}

	if (argc >= 2 && strcmp(argv[0], "audit") == 0 &&
	    strcmp(argv[1], "verify") == 0) {
		value = ctl_option(argc, argv, "--msp");
		if (value != NULL && argc == 4)
			return ctl_audit_verify(conn, value);
	}

	usage(stderr);
	return 2;
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	struct conf *conf;
	PGconn *conn;
	int i = 1, rc;

	if (argc >= 3 &&
	    (strcmp(argv[1], "-c") == 0 || strcmp(argv[1], "--config") == 0)) {
		path = argv[2];
		i = 3;
	}
	if (path == NULL || i >= argc) {
		usage(
		    path == NULL && argc == 2 && strcmp(argv[1], "--help") == 0
		        ? stdout
		        : stderr);
		return 2;
	}

	conf = conf_load(path, stderr);
	if (conf == NULL)
		return 1;
	if (strcmp(argv[i], "device") == 0 || strcmp(argv[i], "push") == 0) {
		rc = strcmp(argv[i], "device") == 0
		    ? ctl_device_main(conf, argc - i, argv + i)
		    : ctl_push_main(conf, argc - i, argv + i);
		conf_free(conf);
		return rc;
	}
	conn = ctl_connect(conf);
	if (conn == NULL) {
		conf_free(conf);
		return 1;
	}
	rc = ctl_dispatch(conn, argc - i, argv + i);
	PQfinish(conn);
	conf_free(conf);
	return rc;
}
