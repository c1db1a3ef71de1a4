/*
 * Unit tests of the configuration parser: the TOML subset, the settings
 * table (types, bounds, defaults), the cross-checks, secret files and
 * relative paths, and that server.toml.example is accepted.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

static char tmpdir[] = "/tmp/vouch-test-conf-XXXXXX";

/* The two secret files every parse needs, appended after the test text. */
#define SECRET_TABLES \
	"[tokens]\nsigning_key_file = \"%s/token.pem\"\n" \
	"[secrets]\nkey_file = \"%s/secret.key\"\n"

/* Write a file under tmpdir with a mode; returns its malloc'd path. */
static char *
write_file(const char *name, const char *content, mode_t mode)
{
	char *path;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

/* Parse text as it is, returning the conf and, in *errs, the errors. */
static struct conf *
parse_raw(const char *name, const char *text, char **errs)
{
	struct conf *conf;
	size_t size;
	FILE *f;

	f = open_memstream(errs, &size);
	assert_non_null(f);
	conf = conf_parse(text, strlen(text), name, f);
	fclose(f);
	return conf;
}

/* Parse text followed by tables that point at private secret files. */
static struct conf *
parse(const char *text, char **errs)
{
	struct conf *conf;
	char *full;

	assert_true(
	    asprintf(&full, "%s\n" SECRET_TABLES, text, tmpdir, tmpdir) > 0);
	conf = parse_raw("t.toml", full, errs);
	free(full);
	return conf;
}

/* The text must be accepted without a word on errors. */
static struct conf *
accept(const char *text)
{
	struct conf *conf;
	char *errs;

	conf = parse(text, &errs);
	if (conf == NULL)
		print_error("unexpected errors:\n%s", errs);
	assert_string_equal(errs, "");
	assert_non_null(conf);
	free(errs);
	return conf;
}

/* The text must be refused with exactly these error lines. */
static void
refuse(const char *text, const char *want)
{
	struct conf *conf;
	char *errs;

	conf = parse(text, &errs);
	assert_null(conf);
	assert_string_equal(errs, want);
	free(errs);
}

/* Create the temporary directory and the default secret files. */
static int
setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	free(write_file("token.pem", "key", 0600));
	free(
	    write_file("secret.key", "0123456789abcdef0123456789abcdef", 0600));
	return 0;
}

/* Remove one entry of the temporary tree. */
static int
remove_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	return remove(path);
}

/* Remove the temporary directory and all it holds. */
static int
teardown(void **state)
{
	return nftw(tmpdir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ----- defaults and values ----- */

/* An almost empty file gets every documented default. */
static void
test_defaults(void **state)
{
	struct conf *conf = accept("");
	char *want;

	assert_string_equal(conf->server_listen, "127.0.0.1:8080");
	assert_string_equal(conf->server_public_url, "http://127.0.0.1:8080");
	assert_int_equal(conf->server_max_body_bytes, 65536);
	assert_int_equal(conf->server_max_header_bytes, 8192);
	assert_int_equal(conf->server_request_timeout, 30);
	assert_int_equal(conf->server_shutdown_timeout, 10);
	assert_string_equal(conf->log_level, "info");
	assert_string_equal(conf->log_format, "text");
	assert_string_equal(conf->database_url, "dbname=vouch");
	assert_int_equal(conf->database_pool_size, 4);
	assert_int_equal(conf->database_statement_timeout_ms, 5000);
	assert_int_equal(conf->database_connect_timeout, 5);
	assert_int_equal(conf->auth_rate_limit_per_minute, 600);
	assert_int_equal(conf->auth_rate_limit_burst, 100);
	assert_int_equal(conf->tokens_device_token_ttl, 2592000);
	assert_false(conf->apns_enabled);
	assert_null(conf->apns_team_id);
	assert_string_equal(conf->apns_endpoint, "https://api.push.apple.com");
	assert_int_equal(conf->apns_connections, 2);
	assert_int_equal(conf->apns_request_timeout_ms, 10000);
	assert_int_equal(conf->apns_ping_interval, 60);
	assert_int_equal(conf->apns_ping_timeout, 5);
	assert_int_equal(conf->apns_queue_limit, 100000);
	assert_false(conf->fcm_enabled);
	assert_string_equal(conf->fcm_endpoint, "https://fcm.googleapis.com");
	assert_int_equal(conf->fcm_connections, 2);
	assert_int_equal(conf->fcm_queue_limit, 100000);
	assert_null(conf->email_smtp_url);
	assert_null(conf->sms_api_base);
	assert_string_equal(conf->path, "t.toml");

	assert_true(asprintf(&want, "%s/secret.key", tmpdir) > 0);
	assert_string_equal(conf->secrets_key_file, want);
	free(want);
	conf_free(conf);
}

/* Default secret paths that do not exist are errors at line 0. */
static void
test_defaults_without_secret_files(void **state)
{
	struct conf *conf;
	char *errs;

	conf = parse_raw("t.toml", "", &errs);
	assert_null(conf);
	assert_string_equal(errs,
	    "t.toml:0: tokens.signing_key_file: /etc/vouch/token-key.pem "
	    "does not exist\n"
	    "t.toml:0: secrets.key_file: /etc/vouch/secret.key does not "
	    "exist\n");
	free(errs);
}

/* Values of each type are stored; blanks and comments are ignored. */
static void
test_values(void **state)
{
	struct conf *conf = accept("# a comment\n"
	                           "\n"
	                           "[server]   # after a header\n"
	                           "  listen = \"[::1]:0\"\t# after a value\n"
	                           "public_url='https://vouch.example.com'\n"
	                           "max_body_bytes = +1_048_576\n"
	                           "shutdown_timeout = 0\n"
	                           "[ log ]\n"
	                           "level = \"debug\"\n"
	                           "format = \"json\"\n"
	                           "[apns]\n"
	                           "enabled = false\n"
	                           "queue_limit = 10000000\n"
	                           "[database]\n"
	                           "pool_size = 64\n"
	                           "statement_timeout_ms = 100\n");

	assert_string_equal(conf->server_listen, "[::1]:0");
	assert_string_equal(
	    conf->server_public_url, "https://vouch.example.com");
	assert_int_equal(conf->server_max_body_bytes, 1048576);
	assert_int_equal(conf->server_shutdown_timeout, 0);
	assert_string_equal(conf->log_level, "debug");
	assert_string_equal(conf->log_format, "json");
	assert_false(conf->apns_enabled);
	assert_int_equal(conf->apns_queue_limit, 10000000);
	assert_int_equal(conf->database_pool_size, 64);
	assert_int_equal(conf->database_statement_timeout_ms, 100);
	conf_free(conf);
}

/* Without public_url, it is http:// and the listen address. */
static void
test_public_url_follows_listen(void **state)
{
	struct conf *conf = accept("[server]\nlisten = \"0.0.0.0:9000\"\n");

	assert_string_equal(conf->server_public_url, "http://0.0.0.0:9000");
	conf_free(conf);
}

/* CRLF line breaks and a UTF-8 byte order mark are accepted. */
static void
test_crlf_and_bom(void **state)
{
	struct conf *conf =
	    accept("\xef\xbb\xbf[database]\r\n"
	           "url = \"host=db\" # x\r\n\r\npool_size = 2\r\n");

	assert_string_equal(conf->database_url, "host=db");
	assert_int_equal(conf->database_pool_size, 2);
	conf_free(conf);
}

/* Basic strings decode every TOML escape; literal strings none. */
static void
test_escapes(void **state)
{
	struct conf *conf = accept(
	    "[database]\n"
	    "url = \"q\\\" b\\\\ \\b\\t\\n\\f\\r \\u00e9 \\U0001F600 tab\tx\"\n"
	    "[email]\n"
	    "username = 'C:\\no\\escape \"here\"'\n");

	assert_string_equal(conf->database_url,
	    "q\" b\\ \b\t\n\f\r \xc3\xa9 \xf0\x9f\x98\x80 tab\tx");
	assert_string_equal(conf->email_username, "C:\\no\\escape \"here\"");
	conf_free(conf);
}

/* Well-formed arrays parse and then meet the type check. */
static void
test_arrays_parse(void **state)
{
	/* No setting takes an array, but good ones pass the parser. */
	refuse("[database]\nurl = [\n  \"a\", # one\n  \"b\",\n]\n"
	       "[server]\nlisten = []\n[log]\nlevel = [1, -2, 3_000]\n",
	    "t.toml:2: database.url: expected a string, got an array\n"
	    "t.toml:7: server.listen: expected a string, got an array\n"
	    "t.toml:9: log.level: expected a string, got an array\n");
}

/* ----- types, bounds, names ----- */

/* A value of the wrong type names the key and both types. */
static void
test_type_errors(void **state)
{
	refuse("[server]\nlisten = 8080\n",
	    "t.toml:2: server.listen: expected a string, got an integer\n");
	refuse("[server]\nmax_body_bytes = \"65536\"\n",
	    "t.toml:2: server.max_body_bytes: expected an integer, got a "
	    "string\n");
	refuse("[apns]\nenabled = \"true\"\n",
	    "t.toml:2: apns.enabled: expected a boolean, got a string\n");
	refuse("[fcm]\nenabled = 1\n",
	    "t.toml:2: fcm.enabled: expected a boolean, got an integer\n");
	refuse("[database]\npool_size = true\n",
	    "t.toml:2: database.pool_size: expected an integer, got a "
	    "boolean\n");
}

/* Integers outside a setting's bounds are refused at their line. */
static void
test_bounds(void **state)
{
	char *text, *errs;

	refuse("[database]\npool_size = 0\n",
	    "t.toml:2: database.pool_size: 0 is below the minimum 1\n");
	refuse("[database]\npool_size = 65\n",
	    "t.toml:2: database.pool_size: 65 is above the maximum 64\n");
	refuse("[server]\nmax_body_bytes = 1023\nmax_header_bytes = 65537\n"
	       "request_timeout = 3601\nshutdown_timeout = -1\n",
	    "t.toml:2: server.max_body_bytes: 1023 is below the minimum "
	    "1024\n"
	    "t.toml:3: server.max_header_bytes: 65537 is above the maximum "
	    "65536\n"
	    "t.toml:4: server.request_timeout: 3601 is above the maximum "
	    "3600\n"
	    "t.toml:5: server.shutdown_timeout: -1 is below the minimum 0\n");
	assert_true(asprintf(&text,
	                "[tokens]\ndevice_token_ttl = 299\n"
	                "signing_key_file = \"%s/token.pem\"\n[secrets]\n"
	                "key_file = \"%s/secret.key\"\n",
	                tmpdir, tmpdir) > 0);
	assert_null(parse_raw("t.toml", text, &errs));
	assert_string_equal(errs,
	    "t.toml:2: tokens.device_token_ttl: 299 is "
	    "below the minimum 300\n");
	free(errs);
	free(text);
	refuse("[auth]\nrate_limit_per_minute = 1000001\n"
	       "rate_limit_burst = 0\n",
	    "t.toml:2: auth.rate_limit_per_minute: 1000001 is above the "
	    "maximum 1000000\n"
	    "t.toml:3: auth.rate_limit_burst: 0 is below the minimum 1\n");
	refuse("[apns]\nconnections = 17\nping_timeout = 61\n",
	    "t.toml:2: apns.connections: 17 is above the maximum 16\n"
	    "t.toml:3: apns.ping_timeout: 61 is above the maximum 60\n");
	refuse("[fcm]\nrequest_timeout_ms = 99\nqueue_limit = 10000001\n",
	    "t.toml:2: fcm.request_timeout_ms: 99 is below the minimum 100\n"
	    "t.toml:3: fcm.queue_limit: 10000001 is above the maximum "
	    "10000000\n");
}

/* Integers must fit in 64 bits; the extremes themselves do. */
static void
test_int64_range(void **state)
{
	refuse("[database]\npool_size = 9223372036854775807\n",
	    "t.toml:2: database.pool_size: 9223372036854775807 is above the "
	    "maximum 64\n");
	refuse("[database]\npool_size = -9223372036854775808\n",
	    "t.toml:2: database.pool_size: -9223372036854775808 is below the "
	    "minimum 1\n");
	refuse("[database]\npool_size = 9223372036854775808\n",
	    "t.toml:2: database.pool_size: invalid value "
	    "9223372036854775808 (out of range for a 64-bit integer)\n");
	refuse("[database]\npool_size = -9223372036854775809\n",
	    "t.toml:2: database.pool_size: invalid value "
	    "-9223372036854775809 (out of range for a 64-bit integer)\n");
}

/* Enum-like strings list the values they accept. */
static void
test_enums(void **state)
{
	refuse("[log]\nlevel = \"loud\"\nformat = \"xml\"\n",
	    "t.toml:2: log.level: \"loud\" is not one of error, warn, info, "
	    "debug\n"
	    "t.toml:3: log.format: \"xml\" is not one of text, json\n");
}

/* Empty strings and strings holding NUL are refused. */
static void
test_empty_and_nul_strings(void **state)
{
	refuse("[database]\nurl = \"\"\n",
	    "t.toml:2: database.url: must not be empty\n");
	refuse("[database]\nurl = \"a\\u0000b\"\n",
	    "t.toml:2: database.url: must not contain a NUL character\n");
}

/* Unknown keys and tables, and keys before any table, are errors. */
static void
test_unknown_names(void **state)
{
	refuse("[server]\nlissen = \"1.2.3.4:5\"\n",
	    "t.toml:2: unknown key server.lissen\n");
	refuse("[servers]\nlisten = \"x\"\n[log]\nlevel = \"warn\"\n",
	    "t.toml:1: unknown table [servers]\n");
	refuse("listen = \"1.2.3.4:5\"\n[server]\n",
	    "t.toml:1: key listen is outside any table\n");
}

/* A key or a table given twice points at the first one. */
static void
test_duplicates(void **state)
{
	refuse("[server]\nlisten = \"1.2.3.4:5\"\n\nlisten = \"1.2.3.4:6\"\n",
	    "t.toml:4: duplicate key server.listen (first at line 2)\n");
	refuse("[log]\nlevel = \"warn\"\n[server]\n[log]\nlevel = \"info\"\n",
	    "t.toml:4: duplicate table [log] (first at line 1)\n");
}

/* ----- constructs outside the subset ----- */

/* Floats, dates, other bases, inline tables and bare words are refused. */
static void
test_rejected_values(void **state)
{
	refuse("[database]\npool_size = 1.5\nconnect_timeout = 1e3\n"
	       "statement_timeout_ms = inf\n",
	    "t.toml:2: database.pool_size: invalid value 1.5 (floats are not "
	    "supported)\n"
	    "t.toml:3: database.connect_timeout: invalid value 1e3 (floats "
	    "are not supported)\n"
	    "t.toml:4: database.statement_timeout_ms: invalid value inf "
	    "(floats are not supported)\n");
	refuse("[database]\npool_size = -nan\n",
	    "t.toml:2: database.pool_size: invalid value -nan (floats are "
	    "not supported)\n");
	refuse("[database]\npool_size = 1979-05-27\n"
	       "connect_timeout = 07:32:00\n",
	    "t.toml:2: database.pool_size: invalid value 1979-05-27 (dates "
	    "and times are not supported)\n"
	    "t.toml:3: database.connect_timeout: invalid value 07:32:00 "
	    "(dates and times are not supported)\n");
	refuse("[database]\npool_size = 0x10\nconnect_timeout = 0o7\n"
	       "statement_timeout_ms = 0b1\n",
	    "t.toml:2: database.pool_size: invalid value 0x10 (only decimal "
	    "integers are supported)\n"
	    "t.toml:3: database.connect_timeout: invalid value 0o7 (only "
	    "decimal integers are supported)\n"
	    "t.toml:4: database.statement_timeout_ms: invalid value 0b1 "
	    "(only decimal integers are supported)\n");
	refuse("[server]\nlisten = { host = \"x\" }\n",
	    "t.toml:2: server.listen: inline tables are not supported\n");
	refuse("[server]\nlisten = localhost\n",
	    "t.toml:2: server.listen: invalid value localhost (strings must "
	    "be quoted)\n");
	refuse("[server]\nlisten =\nmax_body_bytes = # none\n",
	    "t.toml:2: server.listen: missing value\n"
	    "t.toml:3: server.max_body_bytes: missing value\n");
	refuse("[server]\nlisten = @\n",
	    "t.toml:2: server.listen: invalid value\n");
}

/* Misplaced underscores, leading zeros and lone signs are refused. */
static void
test_bad_integers(void **state)
{
	refuse("[database]\npool_size = 012\nconnect_timeout = 1__0\n"
	       "statement_timeout_ms = 1000_\n",
	    "t.toml:2: database.pool_size: invalid value 012 (leading zeros "
	    "are not allowed)\n"
	    "t.toml:3: database.connect_timeout: invalid value 1__0 (not an "
	    "integer)\n"
	    "t.toml:4: database.statement_timeout_ms: invalid value 1000_ "
	    "(not an integer)\n");
	refuse("[database]\npool_size = _1\nconnect_timeout = +\n",
	    "t.toml:2: database.pool_size: invalid value _1 (not an "
	    "integer)\n"
	    "t.toml:3: database.connect_timeout: invalid value + (not an "
	    "integer)\n");
	refuse("[database]\npool_size = 1-2\n",
	    "t.toml:2: database.pool_size: invalid value 1-2 (not an "
	    "integer)\n");
}

/* Dotted, quoted and malformed keys and table headers are refused. */
static void
test_rejected_keys_and_tables(void **state)
{
	refuse("[server]\nserver.listen = \"1.2.3.4:5\"\n",
	    "t.toml:2: dotted keys are not supported\n");
	refuse("[server]\n\"listen\" = \"1.2.3.4:5\"\n'listen' = \"x\"\n",
	    "t.toml:2: quoted keys are not supported\n"
	    "t.toml:3: quoted keys are not supported\n");
	refuse("[server]\nlisten \"1.2.3.4:5\"\n= 3\n",
	    "t.toml:2: expected = after the key listen\n"
	    "t.toml:3: expected a key, a [table] or a comment\n");
	refuse("[server.tls]\n[\"log\"]\n[[apns]]\n[]\n[log\n",
	    "t.toml:1: dotted table names are not supported\n"
	    "t.toml:2: quoted table names are not supported\n"
	    "t.toml:3: arrays of tables ([[...]]) are not supported\n"
	    "t.toml:4: expected a table name\n"
	    "t.toml:5: expected ] after the table name\n");
}

/* Text after a value or a header is an error. */
static void
test_trailing_garbage(void **state)
{
	refuse("[server]\nlisten = \"1.2.3.4:5\" x\nmax_body_bytes = 2048 4\n"
	       "[log] level\n",
	    "t.toml:2: unexpected text after the value of server.listen\n"
	    "t.toml:3: unexpected text after the value of "
	    "server.max_body_bytes\n"
	    "t.toml:4: unexpected text after the table header\n");
}

/* Multi-line strings are refused and skipped as a whole. */
static void
test_multiline_strings(void **state)
{
	refuse("[database]\nurl = \"\"\"\nhost=a\n\"\"\"\npool_size = 0\n"
	       "[email]\nfrom = '''\nx = 1\n'''\n",
	    "t.toml:2: database.url: multi-line strings are not supported\n"
	    "t.toml:5: database.pool_size: 0 is below the minimum 1\n"
	    "t.toml:7: email.from: multi-line strings are not supported\n");
}

/* Bad escapes, control characters, bad UTF-8 and open strings. */
static void
test_bad_strings(void **state)
{
	refuse("[database]\nurl = \"a\\qb\"\n",
	    "t.toml:2: database.url: invalid escape \\q in a string\n");
	refuse("[database]\nurl = \"a\\x41\"\n",
	    "t.toml:2: database.url: invalid escape \\x in a string\n");
	refuse("[database]\nurl = \"a\\e\"\n",
	    "t.toml:2: database.url: invalid escape \\e in a string\n");
	refuse("[database]\nurl = \"\\u12\"\n",
	    "t.toml:2: database.url: \\u in a string needs 4 hexadecimal "
	    "digits\n");
	refuse("[database]\nurl = \"\\U0001F60\"\n",
	    "t.toml:2: database.url: \\U in a string needs 8 hexadecimal "
	    "digits\n");
	refuse("[database]\nurl = \"\\uD800\"\n",
	    "t.toml:2: database.url: \\uD800 in a string is not a Unicode "
	    "scalar value\n");
	refuse("[database]\nurl = \"\\U00110000\"\n",
	    "t.toml:2: database.url: \\U00110000 in a string is not a "
	    "Unicode scalar value\n");
	refuse("[database]\nurl = \"a\x01z\"\n",
	    "t.toml:2: database.url: control character in a string (write "
	    "it as an escape)\n");
	refuse("[database]\nurl = 'a\x7fz'\n",
	    "t.toml:2: database.url: control character in a string\n");
	refuse("[database]\nurl = \"a\xc3(\"\n",
	    "t.toml:2: database.url: invalid UTF-8 in a string\n");
	refuse("[database]\nurl = \"abc\npool_size = 2\n[email]\n"
	       "from = 'x\n",
	    "t.toml:2: database.url: unterminated string\n"
	    "t.toml:5: email.from: unterminated string\n");
	refuse("[database]\nurl = \"a\r\"\n",
	    "t.toml:2: database.url: control character in a string (write "
	    "it as an escape)\n");
}

/* Mixed, nested, boolean and malformed arrays are refused. */
static void
test_bad_arrays(void **state)
{
	refuse("[database]\nurl = [1, \"a\"]\npool_size = [[1]]\n"
	       "connect_timeout = [true]\nstatement_timeout_ms = [1 2]\n",
	    "t.toml:2: database.url: an array must hold values of one type\n"
	    "t.toml:3: database.pool_size: nested arrays are not supported\n"
	    "t.toml:4: database.connect_timeout: arrays may hold only strings "
	    "or integers\n"
	    "t.toml:5: database.statement_timeout_ms: expected , or ] in an "
	    "array\n");
	refuse("[database]\nurl = [,]\n",
	    "t.toml:2: database.url: invalid value\n");
	refuse("[database]\nurl = [\n  1.5,\n  2,\n]\npool_size = 0\n",
	    "t.toml:3: database.url: invalid value 1.5 (floats are not "
	    "supported)\n"
	    "t.toml:6: database.pool_size: 0 is below the minimum 1\n");
}

/* An array never closed is reported at the line it started. */
static void
test_unterminated_array(void **state)
{
	struct conf *conf;
	char *errs;

	/* An array left open before a table header ends at the header. */
	refuse("[database]\nurl = [\"a\",\n  \"b\"\n[server]\n"
	       "listen = 5\n",
	    "t.toml:2: database.url: unterminated array (no closing ])\n"
	    "t.toml:5: server.listen: expected a string, got an integer\n");
	refuse("[database]\nurl = [\"a\",\npool_size = 0\n",
	    "t.toml:2: database.url: unterminated array (no closing ])\n"
	    "t.toml:3: database.pool_size: 0 is below the minimum 1\n");

	/* At the very end of the file. */
	conf = parse_raw("t.toml", "[database]\nurl = [1,\n2", &errs);
	assert_null(conf);
	assert_non_null(strstr(errs,
	    "t.toml:2: database.url: unterminated "
	    "array (no closing ])\n"));
	free(errs);
}

/* Comments must hold no control characters and valid UTF-8. */
static void
test_bad_comments(void **state)
{
	refuse("[server] # ok\n# bad \x01 comment\n# bad \xff utf-8\n",
	    "t.toml:2: control character in a comment\n"
	    "t.toml:3: invalid UTF-8 in a comment\n");
	refuse("[server]\n\rlisten = \"1.2.3.4:5\"\n",
	    "t.toml:2: expected a key, a [table] or a comment\n");
}

/* Every error of a file is reported, in line order. */
static void
test_many_errors_in_order(void **state)
{
	refuse("[server]\n"                 /* 1 */
	       "listen = 8080\n"            /* 2 */
	       "# fine\n"                   /* 3 */
	       "public_url = \"ftp://x\"\n" /* 4 */
	       "[nope]\n"                   /* 5 */
	       "whatever = 1.5\n"           /* 6 */
	       "[database]\n"               /* 7 */
	       "pool_size = 0\n"            /* 8 */
	       "url = \"\\z\"\n"            /* 9 */
	       "[apns]\n"                   /* 10 */
	       "enabled = true\n"           /* 11 */
	       "team_id = \"T\"\n"          /* 12 */
	       "key_id = \"K\"\n"           /* 13 */
	       "topic = 'com.x'\n"          /* 14 */
	       "bogus = 1\n",               /* 15 */
	    "t.toml:2: server.listen: expected a string, got an integer\n"
	    "t.toml:4: server.public_url: \"ftp://x\" must start with "
	    "http:// or https://\n"
	    "t.toml:5: unknown table [nope]\n"
	    "t.toml:6: whatever: invalid value 1.5 (floats are not "
	    "supported)\n"
	    "t.toml:8: database.pool_size: 0 is below the minimum 1\n"
	    "t.toml:9: database.url: invalid escape \\z in a string\n"
	    "t.toml:10: apns.key_file is required when apns.enabled is "
	    "true\n"
	    "t.toml:15: unknown key apns.bogus\n");
}

/* A NULL error stream is allowed. */
static void
test_errors_may_be_discarded(void **state)
{
	const char *text = "[server]\nlisten = 1\n";

	assert_null(conf_parse(text, strlen(text), "t.toml", NULL));
}

/* ----- cross-checks ----- */

/* server.listen takes an IPv4 or bracketed IPv6 address and a port. */
static void
test_listen(void **state)
{
	struct conf *conf = accept("[server]\nlisten = \"127.0.0.1:0\"\n");

	conf_free(conf);
	conf = accept("[server]\nlisten = \"[2001:db8::1]:65535\"\n");
	conf_free(conf);

	refuse("[server]\nlisten = \"localhost:8080\"\n",
	    "t.toml:2: server.listen: \"localhost:8080\" is not an IPv4 "
	    "host:port or [IPv6]:port\n");
	refuse("[server]\nlisten = \"127.0.0.1:65536\"\n",
	    "t.toml:2: server.listen: \"127.0.0.1:65536\" is not an IPv4 "
	    "host:port or [IPv6]:port\n");
	refuse("[server]\nlisten = \"127.0.0.1\"\n",
	    "t.toml:2: server.listen: \"127.0.0.1\" is not an IPv4 "
	    "host:port or [IPv6]:port\n");
	refuse("[server]\nlisten = \"::1:80\"\n",
	    "t.toml:2: server.listen: \"::1:80\" is not an IPv4 host:port or "
	    "[IPv6]:port\n");
	refuse("[server]\nlisten = \"127.0.0.1:\"\n",
	    "t.toml:2: server.listen: \"127.0.0.1:\" is not an IPv4 "
	    "host:port or [IPv6]:port\n");
}

/* Endpoints are https://host[:port]; other URLs need their scheme. */
static void
test_urls(void **state)
{
	struct conf *conf =
	    accept("[apns]\n"
	           "endpoint = \"https://127.0.0.1:8443\"\n"
	           "[fcm]\nendpoint = \"https://[::1]:9443\"\n"
	           "[email]\nsmtp_url = \"smtps://mail.example.com:465\"\n"
	           "from = \"v@example.com\"\n"
	           "[server]\npublic_url = \"http://vouch.test:8080/base\"\n");

	assert_string_equal(conf->apns_endpoint, "https://127.0.0.1:8443");
	assert_string_equal(conf->fcm_endpoint, "https://[::1]:9443");
	assert_string_equal(
	    conf->email_smtp_url, "smtps://mail.example.com:465");
	conf_free(conf);

	refuse("[apns]\nendpoint = \"http://api.push.apple.com\"\n"
	       "[fcm]\nendpoint = \"https://fcm.googleapis.com/v1\"\n",
	    "t.toml:2: apns.endpoint: \"http://api.push.apple.com\" is not "
	    "https://host[:port]\n"
	    "t.toml:4: fcm.endpoint: \"https://fcm.googleapis.com/v1\" is "
	    "not https://host[:port]\n");
	refuse("[apns]\nendpoint = \"https://x:0\"\n"
	       "[fcm]\nendpoint = \"https://\"\n",
	    "t.toml:2: apns.endpoint: \"https://x:0\" is not "
	    "https://host[:port]\n"
	    "t.toml:4: fcm.endpoint: \"https://\" is not "
	    "https://host[:port]\n");
	refuse("[email]\nsmtp_url = \"mail.example.com\"\nfrom = \"a@b\"\n",
	    "t.toml:2: email.smtp_url: \"mail.example.com\" must start with "
	    "smtp:// or smtps://\n");
	refuse("[server]\npublic_url = \"vouch.example.com\"\n",
	    "t.toml:2: server.public_url: \"vouch.example.com\" must start "
	    "with http:// or https://\n");
}

/* sms.api_base takes https:// or, for tests, http://127.x. */
static void
test_sms_api_base(void **state)
{
	struct conf *conf;
	char *token, *text;

	token = write_file("sms-token", "tok", 0600);
	assert_true(asprintf(&text,
	                "[sms]\napi_base = \"%s\"\n"
	                "account_sid = \"AC1\"\nauth_token_file = \"%s\"\n"
	                "from = \"+15005550006\"\n",
	                "http://127.0.0.1:9000", token) > 0);
	conf = accept(text);
	assert_string_equal(conf->sms_api_base, "http://127.0.0.1:9000");
	assert_string_equal(conf->sms_auth_token_file, token);
	conf_free(conf);
	free(text);

	assert_true(asprintf(&text,
	                "[sms]\napi_base = \"http://10.0.0.1\"\n"
	                "account_sid = \"AC1\"\nauth_token_file = \"%s\"\n"
	                "from = \"+1\"\n",
	                token) > 0);
	refuse(text,
	    "t.toml:2: sms.api_base: \"http://10.0.0.1\" must start "
	    "with https:// (or http://127. for tests)\n");
	free(text);
	free(token);
}

/* A table in effect names each missing key at its header line. */
static void
test_required_when_enabled(void **state)
{
	refuse("\n[apns]\nenabled = true\n",
	    "t.toml:2: apns.team_id is required when apns.enabled is true\n"
	    "t.toml:2: apns.key_id is required when apns.enabled is true\n"
	    "t.toml:2: apns.key_file is required when apns.enabled is true\n"
	    "t.toml:2: apns.topic is required when apns.enabled is true\n");
	refuse("[fcm]\nenabled = true\n",
	    "t.toml:1: fcm.service_account_file is required when fcm.enabled "
	    "is true\n");
	refuse("[email]\nsmtp_url = \"smtp://127.0.0.1:2525\"\n",
	    "t.toml:1: email.from is required when email.smtp_url is set\n");
	refuse("[sms]\napi_base = \"https://api.twilio.com\"\n",
	    "t.toml:1: sms.account_sid is required when sms.api_base is set\n"
	    "t.toml:1: sms.auth_token_file is required when sms.api_base is "
	    "set\n"
	    "t.toml:1: sms.from is required when sms.api_base is set\n");

	/* Disabled tables need nothing. */
	conf_free(
	    accept("[apns]\nenabled = false\ntopic = \"x\"\n"
	           "[fcm]\nenabled = false\n[email]\nfrom = \"a@b\"\n[sms]\n"
	           "from = \"+1\"\n"));
}

/* ----- secret files and paths ----- */

/* Secret files that group or others may use are refused. */
static void
test_secret_modes(void **state)
{
	static const struct {
		mode_t mode;
		const char *what;
	} bad[] = {
		{ 0644, "readable by group or others (mode 0644)" },
		{ 0640, "readable by group or others (mode 0640)" },
		{ 0604, "readable by group or others (mode 0604)" },
		{ 0620, "writable by group or others (mode 0620)" },
		{ 0602, "writable by group or others (mode 0602)" },
		{ 0610, "executable by group or others (mode 0610)" },
		{ 0601, "executable by group or others (mode 0601)" },
	};
	char *path, *text, *want, *errs;
	struct conf *conf;
	size_t i;

	path = write_file("mode-test.key", "k", 0600);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(chmod(path, bad[i].mode), 0);
		assert_true(
		    asprintf(&text,
		        "[secrets]\n\nkey_file = \"%s\"\n"
		        "[tokens]\nsigning_key_file = \"%s/token.pem\"\n",
		        path, tmpdir) > 0);
		conf = parse_raw("t.toml", text, &errs);
		assert_null(conf);
		assert_true(asprintf(&want,
		                "t.toml:3: secrets.key_file: %s "
		                "is %s; chmod 600 it\n",
		                path, bad[i].what) > 0);
		assert_string_equal(errs, want);
		free(want);
		free(errs);
		free(text);
	}

	/* Owner-only modes are accepted. */
	assert_int_equal(chmod(path, 0400), 0);
	assert_true(asprintf(&text,
	                "[secrets]\nkey_file = \"%s\"\n"
	                "[tokens]\nsigning_key_file = \"%s/token.pem\"\n",
	                path, tmpdir) > 0);
	conf = parse_raw("t.toml", text, &errs);
	assert_string_equal(errs, "");
	assert_non_null(conf);
	assert_string_equal(conf->secrets_key_file, path);
	conf_free(conf);
	free(errs);
	free(text);
	free(path);
}

/* A directory or a missing file is not a secret file. */
static void
test_secret_not_a_file(void **state)
{
	char *text, *errs, *want;
	struct conf *conf;

	assert_true(asprintf(&text,
	                "[secrets]\nkey_file = \"%s\"\n"
	                "[tokens]\nsigning_key_file = \"%s/missing.pem\"\n",
	                tmpdir, tmpdir) > 0);
	conf = parse_raw("t.toml", text, &errs);
	assert_null(conf);
	assert_true(
	    asprintf(&want,
	        "t.toml:2: secrets.key_file: %s is not a regular file\n"
	        "t.toml:4: tokens.signing_key_file: %s/missing.pem does not "
	        "exist\n",
	        tmpdir, tmpdir) > 0);
	assert_string_equal(errs, want);
	free(want);
	free(errs);
	free(text);
}

/* Secret files of disabled tables are not checked. */
static void
test_secrets_only_when_in_effect(void **state)
{
	char *loose, *text, *errs, *want;
	struct conf *conf;

	loose = write_file("loose.p8", "k", 0644);

	/* Off: the file is not looked at. */
	assert_true(asprintf(&text,
	                "[apns]\nkey_file = \"%s\"\n"
	                "[fcm]\nservice_account_file = \"%s\"\n"
	                "[email]\npassword_file = \"%s\"\n"
	                "[sms]\nauth_token_file = \"%s\"\n",
	                loose, loose, loose, loose) > 0);
	conf = accept(text);
	conf_free(conf);
	free(text);

	/* On: each is refused at its own line. */
	assert_true(
	    asprintf(&text,
	        "[apns]\nenabled = true\nteam_id = \"T\"\n"
	        "key_id = \"K\"\ntopic = \"t\"\nkey_file = \"%s\"\n"
	        "[fcm]\nenabled = true\nservice_account_file = \"%s\"\n"
	        "[email]\nsmtp_url = \"smtp://127.0.0.1:25\"\nfrom = \"a@b\"\n"
	        "password_file = \"%s\"\n"
	        "[sms]\napi_base = \"https://sms.test\"\naccount_sid = \"A\"\n"
	        "from = \"+1\"\nauth_token_file = \"%s\"\n",
	        loose, loose, loose, loose) > 0);
	conf = parse(text, &errs);
	assert_null(conf);
	assert_true(
	    asprintf(&want,
	        "t.toml:6: apns.key_file: %s is readable by group or others "
	        "(mode 0644); chmod 600 it\n"
	        "t.toml:9: fcm.service_account_file: %s is readable by group "
	        "or "
	        "others (mode 0644); chmod 600 it\n"
	        "t.toml:13: email.password_file: %s is readable by group or "
	        "others (mode 0644); chmod 600 it\n"
	        "t.toml:18: sms.auth_token_file: %s is readable by group or "
	        "others (mode 0644); chmod 600 it\n",
	        loose, loose, loose, loose) > 0);
	assert_string_equal(errs, want);
	free(want);
	free(errs);
	free(text);
	free(loose);
}

/* Relative paths are taken from the directory of the file. */
static void
test_relative_paths(void **state)
{
	char *dir, *path, *want, *errs;
	struct conf *conf;
	FILE *f;

	assert_true(asprintf(&dir, "%s/etc", tmpdir) > 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	free(write_file("etc/tok.pem", "k", 0600));
	free(write_file("etc/sec.key", "k", 0600));
	path = write_file("etc/vouch.toml",
	    "[tokens]\n"
	    "signing_key_file = \"tok.pem\"\n"
	    "[secrets]\nkey_file = './sec.key'\n"
	    "[apns]\nca_file = \"../ca.pem\"\n"
	    "[fcm]\nca_file = \"/abs/ca.pem\"\n",
	    0644);

	f = open_memstream(&errs, &(size_t){ 0 });
	conf = conf_load(path, f);
	fclose(f);
	assert_string_equal(errs, "");
	assert_non_null(conf);
	assert_string_equal(conf->path, path);
	assert_true(asprintf(&want, "%s/tok.pem", dir) > 0);
	assert_string_equal(conf->tokens_signing_key_file, want);
	free(want);
	assert_true(asprintf(&want, "%s/./sec.key", dir) > 0);
	assert_string_equal(conf->secrets_key_file, want);
	free(want);
	assert_true(asprintf(&want, "%s/../ca.pem", dir) > 0);
	assert_string_equal(conf->apns_ca_file, want);
	free(want);
	assert_string_equal(conf->fcm_ca_file, "/abs/ca.pem");
	conf_free(conf);
	free(errs);
	free(path);
	free(dir);
}

/* A file name without a directory resolves against the cwd. */
static void
test_relative_to_cwd(void **state)
{
	char *cwd, *old, *errs;
	struct conf *conf;

	old = getcwd(NULL, 0);
	assert_int_equal(chdir(tmpdir), 0);
	conf = parse_raw("conf.toml",
	    "[tokens]\n"
	    "signing_key_file = \"token.pem\"\n"
	    "[secrets]\nkey_file = \"secret.key\"\n",
	    &errs);
	cwd = getcwd(NULL, 0);
	assert_int_equal(chdir(old), 0);

	assert_string_equal(errs, "");
	assert_non_null(conf);
	assert_true(strncmp(conf->secrets_key_file, cwd, strlen(cwd)) == 0);
	assert_string_equal(
	    conf->secrets_key_file + strlen(cwd), "/secret.key");
	conf_free(conf);
	free(errs);
	free(cwd);
	free(old);
}

/* A file that cannot be read is one error at line 0. */
static void
test_load_missing_file(void **state)
{
	char *errs;
	size_t size;
	FILE *f;

	f = open_memstream(&errs, &size);
	assert_null(conf_load("/nonexistent/vouch.toml", f));
	fclose(f);
	assert_string_equal(errs,
	    "/nonexistent/vouch.toml:0: "
	    "/nonexistent/vouch.toml does not exist\n");
	free(errs);
}

/* conf_read_secret returns the bytes of private files only. */
static void
test_read_secret(void **state)
{
	const char *cause = NULL;
	char *path, *data;
	size_t len;

	path = write_file("read.key", "abc\0def", 0600);
	assert_int_equal(conf_read_secret(path, &data, &len, &cause), 0);
	assert_int_equal(len, 3);
	assert_string_equal(data, "abc");
	free(data);
	assert_int_equal(conf_check_secret_mode(path, &cause), 0);

	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(conf_read_secret(path, &data, &len, &cause), -1);
	assert_null(data);
	assert_string_equal(cause, "is readable by group or others");
	assert_int_equal(conf_check_secret_mode(path, &cause), -1);
	assert_string_equal(cause, "is readable by group or others");

	assert_int_equal(conf_read_secret(tmpdir, &data, &len, &cause), -1);
	assert_string_equal(cause, "is not a regular file");
	assert_int_equal(
	    conf_read_secret("/nonexistent/x", &data, &len, &cause), -1);
	assert_string_equal(cause, "does not exist");
	free(path);

	path = write_file("empty.key", "", 0600);
	assert_int_equal(conf_read_secret(path, &data, &len, &cause), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(data);
	free(path);
}

/* ----- the table and the example ----- */

/* The printed table shows names, bounds, defaults and choices. */
static void
test_print_table(void **state)
{
	char *out;
	size_t size;
	FILE *f;

	f = open_memstream(&out, &size);
	conf_print_table(f);
	fclose(f);
	assert_non_null(strstr(out, "database.pool_size"));
	assert_non_null(strstr(out, "(1 to 64)"));
	assert_non_null(strstr(out, "\"/etc/vouch/secret.key\""));
	assert_non_null(strstr(out, "one of error, warn, info, debug"));
	assert_non_null(strstr(out, "sms.ca_file"));
	free(out);
}

/* Read server.toml.example from the top of the tree (or VOUCH_SRCDIR). */
static char *
read_example(void)
{
	const char *dir = getenv("VOUCH_SRCDIR");
	char *path, *text = NULL;
	size_t size = 0;
	FILE *f;

	assert_true(
	    asprintf(&path, "%s/server.toml.example", dir ? dir : ".") > 0);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s: run from the top of the tree", path);
	assert_true(getdelim(&text, &size, '\0', f) > 0);
	fclose(f);
	free(path);
	return text;
}

/* Replace every "from" in text by "to"; returns a new string. */
static char *
replace_all(const char *text, const char *from, const char *to)
{
	char *out;
	size_t size;
	const char *q;
	FILE *f = open_memstream(&out, &size);

	while ((q = strstr(text, from)) != NULL) {
		fwrite(text, 1, (size_t)(q - text), f);
		fputs(to, f);
		text = q + strlen(from);
	}
	fputs(text, f);
	fclose(f);
	return out;
}

/* Turn "#key = value" lines into settings. */
static char *
uncomment_settings(const char *text)
{
	char *out;
	size_t size;
	FILE *f = open_memstream(&out, &size);
	const char *line = text;

	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
		size_t key = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz_");

		if (line[0] == '#' && key > 0 &&
		    strncmp(line + 1 + key, " = ", 3) == 0)
			line++, n--;
		fwrite(line, 1, n, f);
		line += n;
	}
	fclose(f);
	return out;
}

/* Create the secret files the example names, under tmpdir. */
static char *
example_with_tmp_paths(const char *text)
{
	static const char *const files[] = {
		"token-key.pem",
		"secret.key",
		"apns-key.p8",
		"fcm-service-account.json",
		"smtp-password",
		"sms-token",
	};
	char *prefix, *out;
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		free(write_file(files[i], "secret", 0600));
	assert_true(asprintf(&prefix, "%s/", tmpdir) > 0);
	out = replace_all(text, "/etc/vouch/", prefix);
	free(prefix);
	return out;
}

/* The example is accepted and shows the defaults. */
static void
test_example_as_shipped(void **state)
{
	char *text = read_example(), *fixed, *errs;
	struct conf *conf;

	fixed = example_with_tmp_paths(text);
	conf = parse_raw("server.toml.example", fixed, &errs);
	assert_string_equal(errs, "");
	assert_non_null(conf);

	/* The values shown are the defaults. */
	assert_string_equal(conf->server_listen, "127.0.0.1:8080");
	assert_string_equal(conf->server_public_url, "http://127.0.0.1:8080");
	assert_int_equal(conf->server_max_body_bytes, 65536);
	assert_int_equal(conf->server_max_header_bytes, 8192);
	assert_int_equal(conf->server_request_timeout, 30);
	assert_int_equal(conf->server_shutdown_timeout, 10);
	assert_string_equal(conf->log_level, "info");
	assert_string_equal(conf->log_format, "text");
	assert_string_equal(conf->database_url, "dbname=vouch");
	assert_int_equal(conf->database_pool_size, 4);
	assert_int_equal(conf->database_statement_timeout_ms, 5000);
	assert_int_equal(conf->database_connect_timeout, 5);
	assert_int_equal(conf->auth_rate_limit_per_minute, 600);
	assert_int_equal(conf->auth_rate_limit_burst, 100);
	assert_int_equal(conf->tokens_device_token_ttl, 2592000);
	assert_int_equal(conf->verification_push_ttl, 120);
	assert_int_equal(conf->verification_code_ttl, 600);
	assert_int_equal(conf->verification_code_digits, 6);
	assert_int_equal(conf->verification_code_attempts, 5);
	assert_int_equal(conf->verification_user_limit, 10);
	assert_int_equal(conf->verification_technician_limit, 100);
	assert_int_equal(conf->verification_limit_window, 600);
	assert_int_equal(conf->verification_enrollment_ttl, 86400);
	assert_int_equal(conf->verification_enroll_per_minute, 10);
	assert_int_equal(conf->outbox_lease_seconds, 30);
	assert_int_equal(conf->outbox_poll_ms, 500);
	assert_false(conf->apns_enabled);
	assert_string_equal(conf->apns_endpoint, "https://api.push.apple.com");
	assert_int_equal(conf->apns_connections, 2);
	assert_int_equal(conf->apns_request_timeout_ms, 10000);
	assert_int_equal(conf->apns_ping_interval, 60);
	assert_int_equal(conf->apns_ping_timeout, 5);
	assert_int_equal(conf->apns_queue_limit, 100000);
	assert_false(conf->fcm_enabled);
	assert_string_equal(conf->fcm_endpoint, "https://fcm.googleapis.com");
	assert_int_equal(conf->fcm_connections, 2);
	assert_int_equal(conf->fcm_request_timeout_ms, 10000);
	assert_int_equal(conf->fcm_ping_interval, 60);
	assert_int_equal(conf->fcm_ping_timeout, 5);
	assert_int_equal(conf->fcm_queue_limit, 100000);
	assert_null(conf->email_smtp_url);
	assert_null(conf->sms_api_base);

	conf_free(conf);
	free(errs);
	free(fixed);
	free(text);
}

/* With every example setting on, the example is still accepted. */
static void
test_example_everything_on(void **state)
{
	char *text = read_example(), *open, *on, *fixed, *errs;
	struct conf *conf;

	open = uncomment_settings(text);
	on = replace_all(open, "enabled = false", "enabled = true");
	fixed = example_with_tmp_paths(on);
	conf = parse_raw("server.toml.example", fixed, &errs);
	assert_string_equal(errs, "");
	assert_non_null(conf);

	assert_true(conf->apns_enabled);
	assert_true(conf->fcm_enabled);
	assert_string_equal(
	    conf->server_public_url, "https://vouch.example.com");
	assert_non_null(conf->apns_team_id);
	assert_non_null(conf->apns_key_id);
	assert_non_null(conf->apns_key_file);
	assert_non_null(conf->apns_topic);
	assert_non_null(conf->apns_ca_file);
	assert_non_null(conf->fcm_service_account_file);
	assert_non_null(conf->fcm_ca_file);
	assert_non_null(conf->email_smtp_url);
	assert_non_null(conf->email_from);
	assert_non_null(conf->email_username);
	assert_non_null(conf->email_password_file);
	assert_non_null(conf->email_ca_file);
	assert_non_null(conf->sms_api_base);
	assert_non_null(conf->sms_account_sid);
	assert_non_null(conf->sms_auth_token_file);
	assert_non_null(conf->sms_from);
	assert_non_null(conf->sms_ca_file);

	conf_free(conf);
	free(errs);
	free(fixed);
	free(on);
	free(open);
	free(text);
}

/* True when the example has key (set or commented) inside [table]. */
static bool
example_documents(const char *text, const char *table, const char *key)
{
	char *header, *set, *unset;
	const char *start, *end;
	bool found;

	assert_true(asprintf(&header, "\n[%s]\n", table) > 0);
	assert_true(asprintf(&set, "\n%s = ", key) > 0);
	assert_true(asprintf(&unset, "\n#%s = ", key) > 0);
	start = strstr(text, header);
	found = start != NULL;
	if (found) {
		end = strstr(start + 1, "\n[");
		if (end == NULL)
			end = start + strlen(start);
		found = (strstr(start, set) && strstr(start, set) < end) ||
		    (strstr(start, unset) && strstr(start, unset) < end);
	}
	free(header);
	free(set);
	free(unset);
	return found;
}

/* Every setting of the table appears in the example. */
static void
test_example_documents_every_key(void **state)
{
	char *text = read_example(), *table, *line, *save = NULL;
	size_t size, count = 0;
	FILE *f;

	f = open_memstream(&table, &size);
	conf_print_table(f);
	fclose(f);

	for (line = strtok_r(table, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[64], *dot;

		if (line[0] == ' ' || strncmp(line, "SETTING", 7) == 0)
			continue;
		assert_int_equal(sscanf(line, "%63s", name), 1);
		dot = strchr(name, '.');
		assert_non_null(dot);
		*dot = '\0';
		if (!example_documents(text, name, dot + 1))
			fail_msg(
			    "server.toml.example lacks %s.%s", name, dot + 1);
		count++;
	}
	assert_true(count >= 48);
	free(table);
	free(text);
}

/* Run every test; the exit status counts the failures. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_defaults_without_secret_files),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_public_url_follows_listen),
		cmocka_unit_test(test_crlf_and_bom),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_arrays_parse),
		cmocka_unit_test(test_type_errors),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_int64_range),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_empty_and_nul_strings),
		cmocka_unit_test(test_unknown_names),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_rejected_values),
		cmocka_unit_test(test_bad_integers),
		cmocka_unit_test(test_rejected_keys_and_tables),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_multiline_strings),
		cmocka_unit_test(test_bad_strings),
		cmocka_unit_test(test_bad_arrays),
		cmocka_unit_test(test_unterminated_array),
		cmocka_unit_test(test_bad_comments),
		cmocka_unit_test(test_many_errors_in_order),
		cmocka_unit_test(test_errors_may_be_discarded),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_sms_api_base),
		cmocka_unit_test(test_required_when_enabled),
		cmocka_unit_test(test_secret_modes),
		cmocka_unit_test(test_secret_not_a_file),
		cmocka_unit_test(test_secrets_only_when_in_effect),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_relative_to_cwd),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_read_secret),
		cmocka_unit_test(test_print_table),
		cmocka_unit_test(test_example_as_shipped),
		cmocka_unit_test(test_example_everything_on),
		cmocka_unit_test(test_example_documents_every_key),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
