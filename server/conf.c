/*
 * The configuration file: a parser for the small TOML subset vouchd needs
 * and the one table that gives every setting its type, default, bounds and
 * help line. The whole file is read and every problem is collected with
 * its line before the file is refused. Nothing here runs on the loop.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "util.h"

#define CONF_MAX_FILE_BYTES (1024 * 1024)
#define CONF_MAX_SECRET_BYTES (1024 * 1024)
#define CONF_SHOW_MAX 40 /* longest bad token quoted in a message */

enum conf_type {
	CONF_TYPE_STRING,
	CONF_TYPE_INT,
	CONF_TYPE_BOOL,
};

enum conf_flag {
	CONF_FLAG_PATH = 1 << 0,   /* relative paths are resolved */
	CONF_FLAG_SECRET = 1 << 1, /* a file others must not read */
};

/* One row of the settings table. */
struct conf_setting {
	const char *name; /* "section.key" */
	enum conf_type type;
	size_t offset;       /* of the field in struct conf */
	const char *def_str; /* default of a string, or NULL */
	int64_t def_int;     /* default of an integer or boolean */
	int64_t min;
	int64_t max;
	const char *const *allowed; /* values of an enum-like string */
	unsigned flags;
	bool reload; /* applied again on SIGHUP */
	const char *help;
};

#define CONF_FIELD(f) offsetof(struct conf, f)
#define CONF_STR(name, f, def, allowed, flags, reload, help) \
	{ \
		name, CONF_TYPE_STRING, CONF_FIELD(f), def, 0, 0, 0, allowed, \
		    flags, reload, help \
	}
#define CONF_INT(name, f, def, min, max, reload, help) \
	{ \
		name, CONF_TYPE_INT, CONF_FIELD(f), NULL, def, min, max, NULL, \
		    0, reload, help \
	}
#define CONF_BOOL(name, f, def, reload, help) \
	{ \
		name, CONF_TYPE_BOOL, CONF_FIELD(f), NULL, def, 0, 1, NULL, 0, \
		    reload, help \
	}

#define CONF_SECRET_FILE (CONF_FLAG_PATH | CONF_FLAG_SECRET)

static const char *const conf_levels[] = { "error", "warn", "info", "debug",
	NULL };
static const char *const conf_formats[] = { "text", "json", NULL };

/* Every setting; the example file documents each in the same order. */
static const struct conf_setting conf_settings[] = {
	CONF_STR("server.listen", server_listen, "127.0.0.1:8080", NULL, 0,
	    false,
	    "IPv4 host:port or [IPv6]:port to listen on; "
	    "port 0 takes any free port"),
	CONF_STR("server.public_url", server_public_url, NULL, NULL, 0, false,
	    "URL clients use to reach this server "
	    "(default: http:// and the listen address)"),
	CONF_INT("server.max_body_bytes", server_max_body_bytes, 65536, 1024,
	    16777216, false, "largest request body accepted, in bytes"),
	CONF_INT("server.max_header_bytes", server_max_header_bytes, 8192, 1024,
	    65536, false, "largest request header block, in bytes"),
	CONF_INT("server.request_timeout", server_request_timeout, 30, 1, 3600,
	    false, "seconds a client may take to send its request"),
	CONF_INT("server.shutdown_timeout", server_shutdown_timeout, 10, 0, 300,
	    false, "seconds requests may run on after SIGTERM"),

	CONF_STR("log.level", log_level, "info", conf_levels, 0, false,
	    "lowest level of the lines printed"),
	CONF_STR("log.format", log_format, "text", conf_formats, 0, false,
	    "text lines, or one JSON object per line"),

	CONF_STR("database.url", database_url, "dbname=vouch", NULL, 0, false,
	    "libpq connection string or postgresql:// URL"),
	CONF_INT("database.pool_size", database_pool_size, 4, 1, 64, false,
	    "connections each process keeps to PostgreSQL"),
	CONF_INT("database.statement_timeout_ms", database_statement_timeout_ms,
	    5000, 100, 600000, false,
	    "milliseconds a query may run before PostgreSQL cancels it"),
	CONF_INT("database.connect_timeout", database_connect_timeout, 5, 1, 60,
	    false, "seconds to wait for a new connection"),

	CONF_INT("auth.rate_limit_per_minute", auth_rate_limit_per_minute, 600,
	    1, 1000000, false,
	    "requests per minute each client may make, sustained"),
	CONF_INT("auth.rate_limit_burst", auth_rate_limit_burst, 100, 1, 100000,
	    false, "requests a client may make at once above the rate"),

	CONF_STR("tokens.signing_key_file", tokens_signing_key_file,
	    "/etc/vouch/token-key.pem", NULL, CONF_SECRET_FILE, false,
	    "P-256 private key (PEM) that signs device tokens"),
	CONF_INT("tokens.device_token_ttl", tokens_device_token_ttl, 2592000,
	    300, 31536000, false, "seconds a device token stays valid"),

	CONF_STR("secrets.key_file", secrets_key_file, "/etc/vouch/secret.key",
	    NULL, CONF_SECRET_FILE, false,
	    "32 random bytes that encrypt stored credentials"),

	CONF_INT("verification.push_ttl", verification_push_ttl, 120, 2, 3600,
	    false, "seconds a push prompt stays open"),
	CONF_INT("verification.code_ttl", verification_code_ttl, 600, 30, 3600,
	    false, "seconds an SMS or email code stays valid"),
	CONF_INT("verification.code_digits", verification_code_digits, 6, 6, 8,
	    false, "digits of an SMS or email code"),
	CONF_INT("verification.code_attempts", verification_code_attempts, 5, 1,
	    20, false, "wrong codes that end a verification as denied"),
	CONF_INT("verification.user_limit", verification_user_limit, 10, 1,
	    10000, false, "new verifications per user in limit_window"),
	CONF_INT("verification.technician_limit", verification_technician_limit,
	    100, 1, 100000, false,
	    "new verifications per technician in limit_window"),
	CONF_INT("verification.limit_window", verification_limit_window, 600,
	    10, 86400, false, "seconds over which the two limits count"),
	CONF_INT("verification.enrollment_ttl", verification_enrollment_ttl,
	    86400, 300, 2592000, false,
	    "seconds an enrolment code stays valid"),
	CONF_INT("verification.enroll_per_minute",
	    verification_enroll_per_minute, 10, 1, 100000, false,
	    "enrolment attempts per minute from one client address"),

	CONF_INT("selfservice.session_ttl", selfservice_session_ttl, 600, 60,
	    3600, false, "seconds a self-service session lasts"),
	CONF_INT("selfservice.code_ttl", selfservice_code_ttl, 300, 30, 3600,
	    false, "seconds a self-service code or push prompt stays valid"),
	CONF_INT("selfservice.code_attempts", selfservice_code_attempts, 5, 1,
	    20, false, "wrong codes that end a self-service session"),
	CONF_INT("selfservice.challenge_limit", selfservice_challenge_limit, 3,
	    1, 20, false, "codes or pushes one session may ask for"),
	CONF_INT("selfservice.login_starts_per_minute",
	    selfservice_login_starts_per_minute, 5, 1, 100000, false,
	    "sessions started per minute for one login"),
	CONF_INT("selfservice.address_starts_per_minute",
	    selfservice_address_starts_per_minute, 30, 1, 1000000, false,
	    "sessions started per minute from one client address"),
	CONF_INT("selfservice.min_password_length",
	    selfservice_min_password_length, 8, 1, 256, false,
	    "shortest new password, whatever the domain allows"),
	CONF_STR("selfservice.banned_passwords_file",
	    selfservice_banned_passwords_file, NULL, NULL, CONF_FLAG_PATH,
	    false, "sorted SHA-1 hashes of passwords never to accept"),

	CONF_INT("outbox.lease_seconds", outbox_lease_seconds, 30, 1, 3600,
	    false,
	    "seconds a process holds a claimed delivery before "
	    "another may take it over"),
	CONF_INT("outbox.poll_ms", outbox_poll_ms, 500, 50, 60000, false,
	    "milliseconds between looks for due deliveries"),

	CONF_BOOL("apns.enabled", apns_enabled, 0, false,
	    "send push notifications to iOS devices through APNs"),
	CONF_STR("apns.team_id", apns_team_id, NULL, NULL, 0, false,
	    "Apple developer team id"),
	CONF_STR("apns.key_id", apns_key_id, NULL, NULL, 0, false,
	    "id of the APNs authentication key"),
	CONF_STR("apns.key_file", apns_key_file, NULL, NULL, CONF_SECRET_FILE,
	    false, "the APNs authentication key (.p8)"),
	CONF_STR("apns.topic", apns_topic, NULL, NULL, 0, false,
	    "bundle id of the iOS app"),
	CONF_STR("apns.endpoint", apns_endpoint, "https://api.push.apple.com",
	    NULL, 0, false, "APNs server, https://host[:port]"),
	CONF_STR("apns.ca_file", apns_ca_file, NULL, NULL, CONF_FLAG_PATH,
	    false, "extra trusted CA certificate (PEM), for tests"),
	CONF_INT("apns.connections", apns_connections, 2, 1, 16, false,
	    "HTTP/2 connections kept open to APNs"),
	CONF_INT("apns.request_timeout_ms", apns_request_timeout_ms, 10000, 100,
	    120000, false, "milliseconds to wait for APNs to answer"),
	CONF_INT("apns.ping_interval", apns_ping_interval, 60, 1, 3600, false,
	    "seconds between PINGs on an idle connection"),
	CONF_INT("apns.ping_timeout", apns_ping_timeout, 5, 1, 60, false,
	    "seconds to wait for a PING's answer before reconnecting"),
	CONF_INT("apns.queue_limit", apns_queue_limit, 100000, 1, 10000000,
	    false, "notifications waiting to be sent before new ones fail"),

	CONF_BOOL("fcm.enabled", fcm_enabled, 0, false,
	    "send push notifications to Android devices through FCM"),
	CONF_STR("fcm.service_account_file", fcm_service_account_file, NULL,
	    NULL, CONF_SECRET_FILE, false, "Google service account key (JSON)"),
	CONF_STR("fcm.endpoint", fcm_endpoint, "https://fcm.googleapis.com",
	    NULL, 0, false, "FCM server, https://host[:port]"),
	CONF_STR("fcm.ca_file", fcm_ca_file, NULL, NULL, CONF_FLAG_PATH, false,
	    "extra trusted CA certificate (PEM), for tests"),
	CONF_INT("fcm.connections", fcm_connections, 2, 1, 16, false,
	    "HTTP/2 connections kept open to FCM"),
	CONF_INT("fcm.request_timeout_ms", fcm_request_timeout_ms, 10000, 100,
	    120000, false, "milliseconds to wait for FCM to answer"),
	CONF_INT("fcm.ping_interval", fcm_ping_interval, 60, 1, 3600, false,
	    "seconds between PINGs on an idle connection"),
	CONF_INT("fcm.ping_timeout", fcm_ping_timeout, 5, 1, 60, false,
	    "seconds to wait for a PING's answer before reconnecting"),
	CONF_INT("fcm.queue_limit", fcm_queue_limit, 100000, 1, 10000000, false,
	    "notifications waiting to be sent before new ones fail"),

	CONF_STR("email.smtp_url", email_smtp_url, NULL, NULL, 0, false,
	    "smtp://host:port (STARTTLS when offered) or smtps://host:port"),
	CONF_STR("email.from", email_from, NULL, NULL, 0, false,
	    "sender address of the codes sent by email"),
	CONF_STR("email.username", email_username, NULL, NULL, 0, false,
	    "SMTP login, when the server wants one"),
	CONF_STR("email.password_file", email_password_file, NULL, NULL,
	    CONF_SECRET_FILE, false, "file holding the SMTP password"),
	CONF_STR("email.ca_file", email_ca_file, NULL, NULL, CONF_FLAG_PATH,
	    false, "extra trusted CA certificate (PEM), for tests"),

	CONF_STR("sms.api_base", sms_api_base, NULL, NULL, 0, false,
	    "base URL of the Twilio-style SMS API"),
	CONF_STR("sms.account_sid", sms_account_sid, NULL, NULL, 0, false,
	    "account id at the SMS provider"),
	CONF_STR("sms.auth_token_file", sms_auth_token_file, NULL, NULL,
	    CONF_SECRET_FILE, false, "file holding the SMS API token"),
	CONF_STR("sms.from", sms_from, NULL, NULL, 0, false,
	    "sender number of the codes sent by SMS"),
	CONF_STR("sms.ca_file", sms_ca_file, NULL, NULL, CONF_FLAG_PATH, false,
	    "extra trusted CA certificate (PEM), for tests"),
};

#define CONF_NSETTINGS (sizeof(conf_settings) / sizeof(conf_settings[0]))

/* A table of the file; optional ones are switched on by their gate key. */
struct conf_section {
	const char *name;
	const char *gate;            /* key that turns it on, or NULL */
	const char *const *required; /* keys needed when it is on */
};

static const char *const conf_apns_required[] = { "team_id", "key_id",
	"key_file", "topic", NULL };
static const char *const conf_fcm_required[] = { "service_account_file", NULL };
static const char *const conf_email_required[] = { "from", NULL };
static const char *const conf_sms_required[] = { "account_sid",
	"auth_token_file", "from", NULL };

static const struct conf_section conf_sections[] = {
	{ "server", NULL, NULL },
	{ "log", NULL, NULL },
	{ "database", NULL, NULL },
	{ "auth", NULL, NULL },
	{ "tokens", NULL, NULL },
	{ "secrets", NULL, NULL },
	{ "verification", NULL, NULL },
	{ "selfservice", NULL, NULL },
	{ "outbox", NULL, NULL },
	{ "apns", "enabled", conf_apns_required },
	{ "fcm", "enabled", conf_fcm_required },
	{ "email", "smtp_url", conf_email_required },
	{ "sms", "api_base", conf_sms_required },
};

#define CONF_NSECTIONS (sizeof(conf_sections) / sizeof(conf_sections[0]))

/* Where keys go: no table yet, or a table whose keys are ignored. */
#define CONF_TABLE_NONE (-1)
#define CONF_TABLE_SKIP (-2)

/* The kinds of value the parser produces. */
enum conf_vtype {
	CONF_VALUE_STRING,
	CONF_VALUE_INT,
	CONF_VALUE_BOOL,
	CONF_VALUE_ARRAY,
};

struct conf_value {
	enum conf_vtype type;
	char *str;            /* a string, NUL-terminated */
	size_t len;           /* its length (it may hold NULs) */
	int64_t num;          /* an integer, or a boolean 0/1 */
	enum conf_vtype elem; /* type of an array's elements */
	size_t count;         /* how many an array holds */
};

struct conf_buf {
	char *data;
	size_t len;
	size_t cap;
};

struct conf_error {
	int line;
	size_t seq;
	char *msg;
};

struct conf_parser {
	const char *name;
	const char *p;
	const char *end;
	int line;
	char *base_dir; /* absolute; NULL when unknown */
	struct conf *conf;
	int table;         /* index in conf_sections, or above */
	bool at_statement; /* recovery stopped at a statement */
	char key[80];      /* "table.key" being parsed */
	int table_line[CONF_NSECTIONS];
	int key_line[CONF_NSETTINGS]; /* 0: not in the file */
	bool bad[CONF_NSETTINGS];     /* in the file with a refused value */
	struct conf_error *errors;
	size_t nerrors;
	size_t errors_cap;
	bool oom;
};

static int conf_parse_value(struct conf_parser *, struct conf_value *, bool);

/* Record one error at a line; messages are sorted by line later. */
__attribute__((format(printf, 3, 4))) static void
conf_error(struct conf_parser *p, int line, const char *fmt, ...)
{
	struct conf_error *grown;
	va_list ap;
	char *msg;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc < 0) {
		p->oom = true;
		return;
	}

	if (p->nerrors == p->errors_cap) {
		size_t cap = p->errors_cap ? p->errors_cap * 2 : 16;

		grown = reallocarray(p->errors, cap, sizeof(*grown));
		if (grown == NULL) {
			free(msg);
			p->oom = true;
			return;
		}
		p->errors = grown;
		p->errors_cap = cap;
	}

	p->errors[p->nerrors].line = line;
	p->errors[p->nerrors].seq = p->nerrors;
	p->errors[p->nerrors].msg = msg;
	p->nerrors++;
}

/* Record an error about the value being parsed, naming its key. */
__attribute__((format(printf, 2, 3))) static void
conf_value_error(struct conf_parser *p, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conf_error(p, p->line, "%s: %s", p->key, msg);
}

/* Order errors by line, keeping the order they were found in. */
static int
conf_error_cmp(const void *a, const void *b)
{
	const struct conf_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Print every error, sorted by line, as "name:line: message". */
static void
conf_report(struct conf_parser *p, FILE *out)
{
	size_t i;

	if (p->nerrors > 0)
		qsort(
		    p->errors, p->nerrors, sizeof(*p->errors), conf_error_cmp);
	if (out == NULL)
		return;

	for (i = 0; i < p->nerrors; i++)
		fprintf(out, "%s:%d: %s\n", p->name, p->errors[i].line,
		    p->errors[i].msg);
	if (p->oom)
		fprintf(out, "%s:0: out of memory\n", p->name);
	fflush(out);
}

/* ----- the settings table ----- */

/* The field of a setting inside conf. */
static void *
conf_field(struct conf *conf, const struct conf_setting *s)
{
	return (char *)conf + s->offset;
}

/* The string field of a setting (which must be a string). */
static char *
conf_str(struct conf *conf, const struct conf_setting *s)
{
	return *(char **)conf_field(conf, s);
}

/* True when the setting's name starts with "table.". */
static bool
conf_in_table(const struct conf_setting *s, const char *table)
{
	size_t n = strlen(table);

	return strncmp(s->name, table, n) == 0 && s->name[n] == '.';
}

/* The index of the setting table.key (key is n bytes), or -1. */
static int
conf_find(const char *table, const char *key, size_t n)
{
	size_t i, t = strlen(table);

	for (i = 0; i < CONF_NSETTINGS; i++) {
		const char *name = conf_settings[i].name;

		if (conf_in_table(&conf_settings[i], table) &&
		    strncmp(name + t + 1, key, n) == 0 &&
		    name[t + 1 + n] == '\0')
			return (int)i;
	}
	return -1;
}

/* The index of a setting by its full name; the name must exist. */
static int
conf_index(const char *name)
{
	size_t i;

	for (i = 0; i < CONF_NSETTINGS; i++)
		if (strcmp(conf_settings[i].name, name) == 0)
			return (int)i;
	abort();
}

/* A new conf holding every default; NULL when memory runs out. */
static struct conf *
conf_new(const char *name)
{
	struct conf *conf;
	size_t i;

	conf = calloc(1, sizeof(*conf));
	if (conf == NULL)
		return NULL;

	for (i = 0; i < CONF_NSETTINGS; i++) {
		const struct conf_setting *s = &conf_settings[i];
		void *f = conf_field(conf, s);

		if (s->type == CONF_TYPE_INT)
			*(int64_t *)f = s->def_int;
		else if (s->type == CONF_TYPE_BOOL)
			*(bool *)f = s->def_int != 0;
		else if (s->def_str != NULL &&
		    (*(char **)f = strdup(s->def_str)) == NULL)
			goto fail;
	}

	conf->path = strdup(name);
	if (conf->path == NULL)
		goto fail;
	return conf;

fail:
	conf_free(conf);
	return NULL;
}

/* Free a conf and every string it holds; NULL is fine. */
void
conf_free(struct conf *conf)
{
	size_t i;

	if (conf == NULL)
		return;

	for (i = 0; i < CONF_NSETTINGS; i++)
		if (conf_settings[i].type == CONF_TYPE_STRING)
			free(conf_str(conf, &conf_settings[i]));
	free(conf->path);
	free(conf);
}

/* ----- reading bytes ----- */

/* The byte k places past the cursor, or -1 past the end of the text. */
static int
conf_peek(const struct conf_parser *p, size_t k)
{
	if ((size_t)(p->end - p->p) <= k)
		return -1;
	return (unsigned char)p->p[k];
}

/* The length of the line break at the cursor ("\n" or "\r\n"), or 0. */
static size_t
conf_newline_len(const struct conf_parser *p)
{
	if (conf_peek(p, 0) == '\n')
		return 1;
	if (conf_peek(p, 0) == '\r' && conf_peek(p, 1) == '\n')
		return 2;
	return 0;
}

/* Step over the line break at the cursor. */
static void
conf_eat_newline(struct conf_parser *p)
{
	p->p += conf_newline_len(p);
	p->line++;
}

/* Step past the next line break, or to the end of the text. */
static void
conf_skip_line(struct conf_parser *p)
{
	while (p->p < p->end && *p->p != '\n')
		p->p++;
	if (p->p < p->end) {
		p->p++;
		p->line++;
	}
}

/* Step over spaces and tabs. */
static void
conf_skip_blanks(struct conf_parser *p)
{
	while (conf_peek(p, 0) == ' ' || conf_peek(p, 0) == '\t')
		p->p++;
}

/* True for the bytes of a bare key or table name. */
static bool
conf_is_bare(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* How many bytes of a bare name start at s, before end. */
static size_t
conf_bare_len(const char *s, const char *end)
{
	size_t n = 0;

	while (s + n < end && conf_is_bare((unsigned char)s[n]))
		n++;
	return n;
}

/* Skip a comment up to its line break; -1 (reported) on a bad byte. */
static int
conf_skip_comment(struct conf_parser *p)
{
	p->p++;
	while (p->p < p->end && conf_newline_len(p) == 0) {
		int c = conf_peek(p, 0);
		size_t n = util_utf8_decode(
		    (const unsigned char *)p->p, (size_t)(p->end - p->p), NULL);

		if (c == '\t' || (c >= 0x20 && c != 0x7f && n > 0)) {
			p->p += n ? n : 1;
			continue;
		}
		conf_error(p, p->line,
		    c >= 0x80 ? "invalid UTF-8 in a comment"
		              : "control character in a comment");
		return -1;
	}
	return 0;
}

/*
 * After a value or table header only blanks and a comment may follow on
 * the line; step past its break. Returns -1 (reported) otherwise.
 */
static int
conf_end_line(struct conf_parser *p, const char *what, const char *key)
{
	conf_skip_blanks(p);
	if (conf_peek(p, 0) == '#' && conf_skip_comment(p) < 0)
		return -1;
	if (p->p == p->end)
		return 0;

	if (conf_newline_len(p) == 0) {
		conf_error(p, p->line, "unexpected text after %s%s%s", what,
		    key[0] ? " " : "", key);
		return -1;
	}
	conf_eat_newline(p);
	return 0;
}

/*
 * True when the line at the cursor looks like a table header or the
 * start of "key =": where parsing resumes after a broken array.
 */
static bool
conf_looks_like_statement(const struct conf_parser *p)
{
	const char *s = p->p, *e = p->end;

	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	if (s < e && *s == '[') {
		s++;
		if (s < e && *s == '[')
			return true;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (conf_bare_len(s, e) == 0)
			return false;
		s += conf_bare_len(s, e);
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		return s < e && *s == ']';
	}

	for (;;) {
		if (conf_bare_len(s, e) == 0)
			return false;
		s += conf_bare_len(s, e);
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (s == e || *s != '.')
			break;
		s++;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
	}
	return s < e && *s == '=';
}

/* ----- strings ----- */

/* Append n bytes to b; -1 when memory runs out. */
static int
conf_buf_add(struct conf_parser *p, struct conf_buf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 32;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (grown == NULL) {
			p->oom = true;
			return -1;
		}
		b->data = grown;
		b->cap = cap;
	}

	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* The value of a hexadecimal digit, or -1. */
static int
conf_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Append a code point as UTF-8. */
static int
conf_buf_add_utf8(struct conf_parser *p, struct conf_buf *b, uint32_t cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | (cp >> 6));
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | (cp >> 12));
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | (cp >> 18));
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return conf_buf_add(p, b, u, n);
}

/* Decode \uXXXX or \UXXXXXXXX at the cursor into b. */
static int
conf_parse_unicode(struct conf_parser *p, struct conf_buf *b)
{
	int letter = conf_peek(p, 1);
	size_t i, digits = letter == 'u' ? 4 : 8;
	uint32_t cp = 0;

	for (i = 0; i < digits; i++) {
		int h = conf_hex(conf_peek(p, 2 + i));

		if (h < 0) {
			conf_value_error(p,
			    "\\%c in a string needs %zu "
			    "hexadecimal digits",
			    letter, digits);
			return -1;
		}
		cp = (cp << 4) | (uint32_t)h;
	}

	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
		conf_value_error(p,
		    "\\%c%.*s in a string is not a Unicode "
		    "scalar value",
		    letter, (int)digits, p->p + 2);
		return -1;
	}
	p->p += 2 + digits;
	return conf_buf_add_utf8(p, b, cp);
}

/* Decode the escape sequence at the cursor (a backslash) into b. */
static int
conf_parse_escape(struct conf_parser *p, struct conf_buf *b)
{
	static const char from[] = "btnfr\"\\";
	static const char to[] = "\b\t\n\f\r\"\\";
	int c = conf_peek(p, 1);
	const char *q;

	if (c > 0 && (q = strchr(from, c)) != NULL) {
		p->p += 2;
		return conf_buf_add(p, b, &to[q - from], 1);
	}
	if (c == 'u' || c == 'U')
		return conf_parse_unicode(p, b);

	if (c > 0x20 && c < 0x7f)
		conf_value_error(p, "invalid escape \\%c in a string", c);
	else
		conf_value_error(p, "invalid escape in a string");
	return -1;
}

/* Copy one character of a string's body at the cursor into b. */
static int
conf_string_char(struct conf_parser *p, struct conf_buf *b, bool escapes)
{
	int c = conf_peek(p, 0);
	size_t n;

	if (c == '\\' && escapes)
		return conf_parse_escape(p, b);
	if ((c < 0x20 && c != '\t') || c == 0x7f) {
		conf_value_error(p, "control character in a string%s",
		    escapes ? " (write it as an escape)" : "");
		return -1;
	}

	n = util_utf8_decode(
	    (const unsigned char *)p->p, (size_t)(p->end - p->p), NULL);
	if (n == 0) {
		conf_value_error(p, "invalid UTF-8 in a string");
		return -1;
	}
	p->p += n;
	return conf_buf_add(p, b, p->p - n, n);
}

/*
 * Refuse a multi-line string and skip to its end, so that its lines are
 * not read as statements.
 */
static void
conf_skip_multiline(struct conf_parser *p, const char *delim)
{
	conf_value_error(p, "multi-line strings are not supported");
	p->p += 3;
	while (p->p < p->end) {
		if (p->end - p->p >= 3 && memcmp(p->p, delim, 3) == 0) {
			p->p += 3;
			return;
		}
		if (*p->p == '\n')
			p->line++;
		p->p++;
	}
}

/* Parse a basic ("...") or literal ('...') string at the cursor. */
static int
conf_parse_string(struct conf_parser *p, struct conf_value *v)
{
	int quote = conf_peek(p, 0);
	bool escapes = quote == '"';
	struct conf_buf b = { NULL, 0, 0 };

	if (conf_peek(p, 1) == quote && conf_peek(p, 2) == quote) {
		conf_skip_multiline(p, escapes ? "\"\"\"" : "'''");
		return -1;
	}

	p->p++;
	while (conf_peek(p, 0) != quote) {
		if (p->p == p->end || conf_newline_len(p) > 0) {
			conf_value_error(p, "unterminated string");
			goto fail;
		}
		if (conf_string_char(p, &b, escapes) < 0)
			goto fail;
	}
	p->p++;

	if (b.data == NULL && conf_buf_add(p, &b, "", 0) < 0)
		goto fail;
	v->type = CONF_VALUE_STRING;
	v->str = b.data;
	v->len = b.len;
	return 0;

fail:
	free(b.data);
	return -1;
}

/* ----- integers and other bare words ----- */

/* True for the bytes of an unquoted value (integer, boolean, float...). */
static bool
conf_is_word(int c)
{
	return conf_is_bare(c) || c == '+' || c == '.' || c == ':';
}

/* True when the n-byte word s equals lit. */
static bool
conf_word_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Why a word that is not true/false cannot be a decimal integer, or NULL. */
static const char *
conf_word_problem(const char *s, size_t n)
{
	const char *t = s;
	size_t m = n;

	if (m > 0 && (*t == '+' || *t == '-'))
		t++, m--;
	if (conf_word_is(t, m, "inf") || conf_word_is(t, m, "nan"))
		return "floats are not supported";
	if (m > 0 && ((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z')))
		return "strings must be quoted";
	if (memchr(s, ':', n) != NULL ||
	    (n >= 5 && s[4] == '-' && strspn(s, "0123456789") == 4))
		return "dates and times are not supported";
	if (m > 1 && t[0] == '0' && (t[1] == 'x' || t[1] == 'o' || t[1] == 'b'))
		return "only decimal integers are supported";
	if (memchr(s, '.', n) != NULL || memchr(s, 'e', n) != NULL ||
	    memchr(s, 'E', n) != NULL)
		return "floats are not supported";
	return NULL;
}

/* Read the digits and underscores of a decimal integer into *out. */
static const char *
conf_decimal(const char *s, size_t n, int64_t *out)
{
	uint64_t acc = 0, limit = (uint64_t)INT64_MAX;
	bool neg = false;
	size_t i = 0;

	if (n > 0 && (s[0] == '+' || s[0] == '-'))
		neg = s[i++] == '-';
	if (neg)
		limit++;
	if (i == n)
		return "not an integer";
	if (s[i] == '0' && n - i > 1)
		return "leading zeros are not allowed";

	for (; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (s[i] == '_' && i > 0 && i + 1 < n && s[i - 1] >= '0' &&
		    s[i - 1] <= '9' && s[i + 1] >= '0' && s[i + 1] <= '9')
			continue;
		if (d > 9)
			return "not an integer";
		if (acc > (limit - d) / 10)
			return "out of range for a 64-bit integer";
		acc = acc * 10 + d;
	}

	*out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
	return NULL;
}

/* Parse an unquoted value at the cursor: true, false or an integer. */
static int
conf_parse_word(struct conf_parser *p, struct conf_value *v)
{
	const char *s = p->p, *why;
	size_t n;
	int shown;

	while (p->p < p->end && conf_is_word((unsigned char)*p->p))
		p->p++;
	n = (size_t)(p->p - s);
	shown = n > CONF_SHOW_MAX ? CONF_SHOW_MAX : (int)n;

	if (conf_word_is(s, n, "true") || conf_word_is(s, n, "false")) {
		v->type = CONF_VALUE_BOOL;
		v->num = s[0] == 't';
		return 0;
	}

	why = conf_word_problem(s, n);
	if (why == NULL)
		why = conf_decimal(s, n, &v->num);
	if (why != NULL) {
		conf_value_error(p, "invalid value %.*s%s (%s)", shown, s,
		    (size_t)shown < n ? "..." : "", why);
		return -1;
	}
	v->type = CONF_VALUE_INT;
	return 0;
}

/* ----- arrays ----- */

/*
 * Skip blanks, comments and line breaks inside an array. Running into
 * the end of the text or into a line that looks like a new statement
 * means the array was never closed.
 */
static int
conf_array_space(struct conf_parser *p, int start)
{
	for (;;) {
		conf_skip_blanks(p);
		if (conf_peek(p, 0) == '#' && conf_skip_comment(p) < 0)
			return -1;
		if (p->p == p->end)
			break;
		if (conf_newline_len(p) == 0)
			return 0;

		conf_eat_newline(p);
		if (conf_looks_like_statement(p)) {
			p->at_statement = true;
			break;
		}
	}
	conf_error(p, start, "%s: unterminated array (no closing ])", p->key);
	return -1;
}

/* Parse one element and check it has the type of the ones before. */
static int
conf_array_elem(struct conf_parser *p, struct conf_value *v)
{
	struct conf_value e;
	int rc;

	rc = conf_parse_value(p, &e, true);
	free(e.str);
	if (rc < 0)
		return -1;

	if (e.type == CONF_VALUE_BOOL) {
		conf_value_error(p,
		    "arrays may hold only strings or "
		    "integers");
		return -1;
	}
	if (v->count > 0 && e.type != v->elem) {
		conf_value_error(p, "an array must hold values of one type");
		return -1;
	}
	v->elem = e.type;
	v->count++;
	return 0;
}

/* Parse an array at the cursor; it may span lines and end with a comma. */
static int
conf_parse_array(struct conf_parser *p, struct conf_value *v)
{
	int start = p->line;

	p->p++;
	v->type = CONF_VALUE_ARRAY;
	for (;;) {
		if (conf_array_space(p, start) < 0)
			return -1;
		if (conf_peek(p, 0) == ']')
			break;
		if (conf_array_elem(p, v) < 0 || conf_array_space(p, start) < 0)
			return -1;
		if (conf_peek(p, 0) == ']')
			break;
		if (conf_peek(p, 0) != ',') {
			conf_value_error(p, "expected , or ] in an array");
			return -1;
		}
		p->p++;
	}
	p->p++;
	return 0;
}

/*
 * Parse the value at the cursor into v, which the caller frees with
 * free(v->str) either way. Returns 0, or -1 after recording an error.
 */
static int
conf_parse_value(struct conf_parser *p, struct conf_value *v, bool in_array)
{
	int c = conf_peek(p, 0);

	memset(v, 0, sizeof(*v));
	if (c == '"' || c == '\'')
		return conf_parse_string(p, v);
	if (c == '[' && !in_array)
		return conf_parse_array(p, v);
	if (c >= 0 && conf_is_word(c))
		return conf_parse_word(p, v);

	if (c == '[')
		conf_value_error(p, "nested arrays are not supported");
	else if (c == '{')
		conf_value_error(p, "inline tables are not supported");
	else if (c < 0 || c == '#' || conf_newline_len(p) > 0)
		conf_value_error(p, "missing value");
	else
		conf_value_error(p, "invalid value");
	return -1;
}

/* ----- storing values ----- */

/* "a string", "an integer"... for messages. */
static const char *
conf_vtype_name(enum conf_vtype t)
{
	switch (t) {
	case CONF_VALUE_STRING:
		return "a string";
	case CONF_VALUE_INT:
		return "an integer";
	case CONF_VALUE_BOOL:
		return "a boolean";
	case CONF_VALUE_ARRAY:
		break;
	}
	return "an array";
}

/* The value type a setting wants. */
static enum conf_vtype
conf_wanted(const struct conf_setting *s)
{
	if (s->type == CONF_TYPE_INT)
		return CONF_VALUE_INT;
	if (s->type == CONF_TYPE_BOOL)
		return CONF_VALUE_BOOL;
	return CONF_VALUE_STRING;
}

/* True when value is one of the NULL-terminated list. */
static bool
conf_allowed(const char *const *list, const char *value)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, value) == 0)
			return true;
	return false;
}

/* Write the allowed values of a setting as "a, b, c" into out. */
static void
conf_allowed_list(const char *const *list, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (; *list != NULL && used < size; list++)
		used += (size_t)snprintf(
		    out + used, size - used, "%s%s", used ? ", " : "", *list);
}

/* A malloc'd absolute form of path, relative to the file's directory. */
static char *
conf_resolve(struct conf_parser *p, const char *path, int line)
{
	char *out;
	size_t n;

	if (path[0] == '/')
		return strdup(path);
	if (p->base_dir == NULL) {
		conf_error(p, line,
		    "cannot resolve the relative path %s: the "
		    "current directory is unknown",
		    path);
		return NULL;
	}

	n = strlen(p->base_dir);
	if (asprintf(&out, "%s%s%s", p->base_dir,
	        n > 0 && p->base_dir[n - 1] == '/' ? "" : "/", path) < 0) {
		p->oom = true;
		return NULL;
	}
	return out;
}

/* Store a string value, checking allowed values and resolving paths. */
static int
conf_store_string(struct conf_parser *p, const struct conf_setting *s,
    const struct conf_value *v, int line)
{
	char **field = conf_field(p->conf, s);
	char list[128];
	char *copy;

	if (v->len == 0) {
		conf_error(p, line, "%s: must not be empty", s->name);
		return -1;
	}
	if (strlen(v->str) != v->len) {
		conf_error(
		    p, line, "%s: must not contain a NUL character", s->name);
		return -1;
	}
	if (s->allowed != NULL && !conf_allowed(s->allowed, v->str)) {
		conf_allowed_list(s->allowed, list, sizeof(list));
		conf_error(p, line, "%s: \"%s\" is not one of %s", s->name,
		    v->str, list);
		return -1;
	}

	if (s->flags & CONF_FLAG_PATH)
		copy = conf_resolve(p, v->str, line);
	else if ((copy = strdup(v->str)) == NULL)
		p->oom = true;
	if (copy == NULL)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

/* Store an integer value after checking it against the bounds. */
static int
conf_store_int(struct conf_parser *p, const struct conf_setting *s,
    const struct conf_value *v, int line)
{
	if (v->num < s->min) {
		conf_error(p, line,
		    "%s: %" PRId64 " is below the minimum %" PRId64, s->name,
		    v->num, s->min);
		return -1;
	}
	if (v->num > s->max) {
		conf_error(p, line,
		    "%s: %" PRId64 " is above the maximum %" PRId64, s->name,
		    v->num, s->max);
		return -1;
	}
	*(int64_t *)conf_field(p->conf, s) = v->num;
	return 0;
}

/* Check a parsed value against its setting and store it. */
static int
conf_store(struct conf_parser *p, int idx, const struct conf_value *v, int line)
{
	const struct conf_setting *s = &conf_settings[idx];

	if (v->type != conf_wanted(s)) {
		conf_error(p, line, "%s: expected %s, got %s", s->name,
		    conf_vtype_name(conf_wanted(s)), conf_vtype_name(v->type));
		return -1;
	}

	if (s->type == CONF_TYPE_STRING)
		return conf_store_string(p, s, v, line);
	if (s->type == CONF_TYPE_INT)
		return conf_store_int(p, s, v, line);
	*(bool *)conf_field(p->conf, s) = v->num != 0;
	return 0;
}

/*
 * Find the setting a key of the current table names, reporting keys
 * outside a table, unknown and repeated ones. Returns its index or -1.
 */
static int
conf_claim_key(struct conf_parser *p, const char *key, size_t n, int line)
{
	const char *table;
	int idx;

	if (p->table == CONF_TABLE_NONE) {
		conf_error(
		    p, line, "key %.*s is outside any table", (int)n, key);
		return -1;
	}
	if (p->table == CONF_TABLE_SKIP)
		return -1;

	table = conf_sections[p->table].name;
	idx = conf_find(table, key, n);
	if (idx < 0) {
		conf_error(p, line, "unknown key %s.%.*s", table, (int)n, key);
		return -1;
	}
	if (p->key_line[idx] != 0) {
		conf_error(p, line, "duplicate key %s (first at line %d)",
		    conf_settings[idx].name, p->key_line[idx]);
		return -1;
	}
	p->key_line[idx] = line;
	return idx;
}

/* ----- statements ----- */

/* Check the key at the cursor is a bare one; -1 (reported) if not. */
static int
conf_check_key(struct conf_parser *p, size_t n)
{
	const char *key = p->p;
	int c = conf_peek(p, 0);
	int after;

	if (c == '"' || c == '\'') {
		conf_error(p, p->line, "quoted keys are not supported");
		return -1;
	}
	if (n == 0) {
		conf_error(p, p->line,
		    "expected a key, a [table] or a "
		    "comment");
		return -1;
	}

	p->p += n;
	conf_skip_blanks(p);
	after = conf_peek(p, 0);
	if (after == '.') {
		conf_error(p, p->line, "dotted keys are not supported");
		return -1;
	}
	if (after != '=') {
		conf_error(
		    p, p->line, "expected = after the key %.*s", (int)n, key);
		return -1;
	}
	return 0;
}

/*
 * Resume after a value that could not be parsed: skip the rest of its
 * line and, for a broken array, the lines until the next statement.
 */
static void
conf_recover(struct conf_parser *p, bool array)
{
	if (p->at_statement) {
		p->at_statement = false;
		return;
	}
	conf_skip_line(p);
	while (array && p->p < p->end && !conf_looks_like_statement(p))
		conf_skip_line(p);
}

/* Parse "key = value" and store the value. */
static void
conf_parse_keyval(struct conf_parser *p)
{
	const char *key = p->p;
	size_t n = conf_bare_len(p->p, p->end);
	int line = p->line, idx, rc;
	struct conf_value v;
	bool array;

	if (conf_check_key(p, n) < 0) {
		conf_skip_line(p);
		return;
	}
	p->p++;
	conf_skip_blanks(p);
	idx = conf_claim_key(p, key, n, line);
	if (p->table >= 0)
		snprintf(p->key, sizeof(p->key), "%s.%.*s",
		    conf_sections[p->table].name, (int)n, key);
	else
		snprintf(p->key, sizeof(p->key), "%.*s", (int)n, key);

	array = conf_peek(p, 0) == '[';
	rc = conf_parse_value(p, &v, false);
	if (rc < 0) {
		conf_recover(p, array);
	} else {
		if (conf_end_line(p, "the value of", p->key) < 0)
			conf_skip_line(p);
		if (idx >= 0)
			rc = conf_store(p, idx, &v, line);
	}
	if (rc < 0 && idx >= 0)
		p->bad[idx] = true;
	free(v.str);
}

/* Check the "[name]" header at the cursor; returns the name's length. */
static size_t
conf_header_name(struct conf_parser *p, const char **name)
{
	size_t n;
	int c;

	p->p++;
	if (conf_peek(p, 0) == '[') {
		conf_error(p, p->line,
		    "arrays of tables ([[...]]) are not "
		    "supported");
		return 0;
	}
	conf_skip_blanks(p);
	c = conf_peek(p, 0);
	*name = p->p;
	n = conf_bare_len(p->p, p->end);
	if (n == 0) {
		conf_error(p, p->line,
		    c == '"' || c == '\''
		        ? "quoted table names are not supported"
		        : "expected a table name");
		return 0;
	}

	p->p += n;
	conf_skip_blanks(p);
	c = conf_peek(p, 0);
	if (c == '.') {
		conf_error(p, p->line, "dotted table names are not supported");
		return 0;
	}
	if (c != ']') {
		conf_error(p, p->line, "expected ] after the table name");
		return 0;
	}
	p->p++;
	return n;
}

/* Parse a "[name]" header and make it the current table. */
static void
conf_parse_table(struct conf_parser *p)
{
	int line = p->line;
	const char *name = NULL;
	size_t i, n;

	p->table = CONF_TABLE_SKIP;
	n = conf_header_name(p, &name);
	if (n == 0 || conf_end_line(p, "the table header", "") < 0) {
		conf_skip_line(p);
		return;
	}

	for (i = 0; i < CONF_NSECTIONS; i++)
		if (conf_word_is(name, n, conf_sections[i].name))
			break;
	if (i == CONF_NSECTIONS) {
		conf_error(p, line, "unknown table [%.*s]", (int)n, name);
		return;
	}
	if (p->table_line[i] != 0) {
		conf_error(p, line, "duplicate table [%s] (first at line %d)",
		    conf_sections[i].name, p->table_line[i]);
		return;
	}
	p->table_line[i] = line;
	p->table = (int)i;
}

/* Parse one statement: a blank or comment line, a header or a key. */
static void
conf_parse_statement(struct conf_parser *p)
{
	int c;

	conf_skip_blanks(p);
	c = conf_peek(p, 0);
	if (c == '#' || c < 0 || conf_newline_len(p) > 0) {
		if (conf_end_line(p, "the comment", "") < 0)
			conf_skip_line(p);
	} else if (c == '[') {
		conf_parse_table(p);
	} else {
		conf_parse_keyval(p);
	}
}

/* ----- checks across settings ----- */

/* The value of the setting name, or NULL when unset or refused. */
static const char *
conf_checked_str(struct conf_parser *p, const char *name, int *line)
{
	int idx = conf_index(name);

	*line = p->key_line[idx];
	if (p->bad[idx])
		return NULL;
	return conf_str(p->conf, &conf_settings[idx]);
}

/* Parse a decimal port of up to five digits ending the string. */
static bool
conf_port_ok(const char *s, long min)
{
	char *end;
	long port;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 5)
		return false;
	port = strtol(s, &end, 10);
	return *end == '\0' && port >= min && port <= 65535;
}

/* True for "a.b.c.d:port" and "[v6]:port"; port 0 is allowed. */
static bool
conf_listen_ok(const char *s)
{
	char host[64];
	unsigned char addr[16];
	const char *sep, *h = s;
	int family = AF_INET;

	if (s[0] == '[') {
		h = s + 1;
		sep = strchr(h, ']');
		if (sep == NULL || sep[1] != ':')
			return false;
		family = AF_INET6;
	} else if ((sep = strrchr(s, ':')) == NULL) {
		return false;
	}
	if ((size_t)(sep - h) >= sizeof(host))
		return false;

	memcpy(host, h, (size_t)(sep - h));
	host[sep - h] = '\0';
	if (inet_pton(family, host, addr) != 1)
		return false;
	return conf_port_ok(sep + (family == AF_INET6 ? 2 : 1), 0);
}

/* Check server.listen and fill server.public_url's default from it. */
static void
conf_check_listen(struct conf_parser *p)
{
	const char *listen;
	int line;

	listen = conf_checked_str(p, "server.listen", &line);
	if (listen == NULL)
		return;
	if (!conf_listen_ok(listen)) {
		conf_error(p, line,
		    "server.listen: \"%s\" is not an IPv4 "
		    "host:port or [IPv6]:port",
		    listen);
		return;
	}

	if (p->conf->server_public_url == NULL &&
	    !p->bad[conf_index("server.public_url")] &&
	    asprintf(&p->conf->server_public_url, "http://%s", listen) < 0) {
		p->conf->server_public_url = NULL;
		p->oom = true;
	}
}

/* True when s is one of the prefixes followed by at least one byte. */
static bool
conf_has_prefix(const char *s, const char *const *prefixes)
{
	for (; *prefixes != NULL; prefixes++) {
		size_t n = strlen(*prefixes);

		if (strncmp(s, *prefixes, n) == 0 && s[n] != '\0')
			return true;
	}
	return false;
}

/* Check a URL setting starts with one of the prefixes. */
static void
conf_check_prefix(struct conf_parser *p, const char *name,
    const char *const *prefixes, const char *what)
{
	const char *url;
	int line;

	url = conf_checked_str(p, name, &line);
	if (url != NULL && !conf_has_prefix(url, prefixes))
		conf_error(
		    p, line, "%s: \"%s\" must start with %s", name, url, what);
}

/* True for "https://host[:port]" with nothing after it. */
static bool
conf_endpoint_ok(const char *s)
{
	size_t n;

	if (strncmp(s, "https://", 8) != 0)
		return false;
	s += 8;
	if (s[0] == '[') {
		n = strspn(s + 1, "0123456789abcdefABCDEF:.");
		if (n == 0 || s[n + 1] != ']')
			return false;
		n += 2;
	} else {
		n = strspn(s,
		    "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
		if (n == 0)
			return false;
	}

	s += n;
	if (s[0] == '\0')
		return true;
	return s[0] == ':' && conf_port_ok(s + 1, 1);
}

/* Check a push endpoint setting. */
static void
conf_check_endpoint(struct conf_parser *p, const char *name)
{
	const char *url;
	int line;

	url = conf_checked_str(p, name, &line);
	if (url != NULL && !conf_endpoint_ok(url))
		conf_error(p, line, "%s: \"%s\" is not https://host[:port]",
		    name, url);
}

/* A short reason stat or open failed with err. */
static const char *
conf_errno_cause(int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
		return "does not exist";
	case EACCES:
		return "cannot be read (permission denied)";
	case ELOOP:
		return "has a loop of symbolic links";
	case ENAMETOOLONG:
		return "is too long a path";
	}
	return "cannot be read";
}

/* Refuse what is not a regular file or what group or others may use. */
static int
conf_stat_cause(const struct stat *st, const char **cause)
{
	if (!S_ISREG(st->st_mode))
		*cause = "is not a regular file";
	else if (st->st_mode & 044)
		*cause = "is readable by group or others";
	else if (st->st_mode & 022)
		*cause = "is writable by group or others";
	else if (st->st_mode & 011)
		*cause = "is executable by group or others";
	else
		return 0;
	return -1;
}

/* Check the mode of a secret file. */
int
conf_check_secret_mode(const char *path, const char **cause)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		*cause = conf_errno_cause(errno);
		return -1;
	}
	return conf_stat_cause(&st, cause);
}

/* Check that a secret file in effect is private and can be opened. */
static void
conf_check_secret(struct conf_parser *p, int idx)
{
	const struct conf_setting *s = &conf_settings[idx];
	const char *path = conf_str(p->conf, s), *cause;
	int line = p->key_line[idx], fd;
	struct stat st;

	if (path == NULL || p->bad[idx])
		return;
	if (stat(path, &st) < 0) {
		conf_error(p, line, "%s: %s %s", s->name, path,
		    conf_errno_cause(errno));
		return;
	}
	if (conf_stat_cause(&st, &cause) < 0) {
		if (S_ISREG(st.st_mode))
			conf_error(p, line,
			    "%s: %s %s (mode %04o); chmod 600 "
			    "it",
			    s->name, path, cause,
			    (unsigned)(st.st_mode & 07777));
		else
			conf_error(p, line, "%s: %s %s", s->name, path, cause);
		return;
	}

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		conf_error(p, line, "%s: %s %s", s->name, path,
		    conf_errno_cause(errno));
	else
		close(fd);
}

/* True when the table's gate key is true or set. */
static bool
conf_section_on(struct conf_parser *p, const struct conf_section *sec)
{
	const struct conf_setting *s;

	if (sec->gate == NULL)
		return true;
	s = &conf_settings[conf_find(sec->name, sec->gate, strlen(sec->gate))];
	if (s->type == CONF_TYPE_BOOL)
		return *(bool *)conf_field(p->conf, s);
	return conf_str(p->conf, s) != NULL;
}

/* For a table in effect: required keys present, secret files private. */
static void
conf_check_section(struct conf_parser *p, size_t i)
{
	const struct conf_section *sec = &conf_sections[i];
	const char *const *r;
	size_t k;

	if (!conf_section_on(p, sec))
		return;

	for (r = sec->required; r != NULL && *r != NULL; r++) {
		int idx = conf_find(sec->name, *r, strlen(*r));

		if (p->key_line[idx] == 0 &&
		    conf_str(p->conf, &conf_settings[idx]) == NULL)
			conf_error(p, p->table_line[i],
			    "%s.%s is required "
			    "when %s.%s is %s",
			    sec->name, *r, sec->name, sec->gate,
			    strcmp(sec->gate, "enabled") == 0 ? "true" : "set");
	}

	for (k = 0; k < CONF_NSETTINGS; k++)
		if (conf_in_table(&conf_settings[k], sec->name) &&
		    (conf_settings[k].flags & CONF_FLAG_SECRET))
			conf_check_secret(p, (int)k);
}

/* The checks that look at values together, after the whole file. */
static void
conf_check_all(struct conf_parser *p)
{
	static const char *const http[] = { "http://", "https://", NULL };
	static const char *const smtp[] = { "smtp://", "smtps://", NULL };
	static const char *const sms[] = { "https://", "http://127.", NULL };
	size_t i;

	conf_check_listen(p);
	conf_check_prefix(p, "server.public_url", http, "http:// or https://");
	conf_check_endpoint(p, "apns.endpoint");
	conf_check_endpoint(p, "fcm.endpoint");
	conf_check_prefix(p, "email.smtp_url", smtp, "smtp:// or smtps://");
	conf_check_prefix(
	    p, "sms.api_base", sms, "https:// (or http://127. for tests)");

	for (i = 0; i < CONF_NSECTIONS; i++)
		conf_check_section(p, i);
}

/* ----- entry points ----- */

/* The absolute directory of the file name, or NULL when unknown. */
static char *
conf_base_dir(const char *name)
{
	const char *slash = strrchr(name, '/');
	char *cwd, *dir = NULL;

	if (slash == name)
		return strdup("/");
	if (slash != NULL && name[0] == '/')
		return strndup(name, (size_t)(slash - name));

	cwd = getcwd(NULL, 0);
	if (cwd == NULL || slash == NULL)
		return cwd;
	if (asprintf(&dir, "%s/%.*s", cwd, (int)(slash - name), name) < 0)
		dir = NULL;
	free(cwd);
	return dir;
}

/* Parse text named name; every error is printed to errors (may be NULL). */
struct conf *
conf_parse(const char *text, size_t len, const char *name, FILE *errors)
{
	struct conf_parser p;
	struct conf *conf = NULL;
	size_t i;

	memset(&p, 0, sizeof(p));
	p.name = name;
	p.p = text;
	p.end = text + len;
	p.line = 1;
	p.table = CONF_TABLE_NONE;
	p.base_dir = conf_base_dir(name);
	p.conf = conf_new(name);
	if (p.conf == NULL) {
		p.oom = true;
		goto out;
	}

	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		p.p += 3;
	while (p.p < p.end)
		conf_parse_statement(&p);
	conf_check_all(&p);

out:
	conf_report(&p, errors);
	if (p.nerrors == 0 && !p.oom) {
		conf = p.conf;
		p.conf = NULL;
	}
	for (i = 0; i < p.nerrors; i++)
		free(p.errors[i].msg);
	free(p.errors);
	free(p.base_dir);
	conf_free(p.conf);
	return conf;
}

/*
 * Read what remains of fd, at most max bytes, into a NUL-terminated
 * malloc'd buffer. NULL with *cause set on failure (the partial read is
 * wiped, since it may be a secret).
 */
static char *
conf_read_fd(int fd, size_t max, size_t *len, const char **cause)
{
	char *buf;
	size_t n = 0;
	ssize_t r;

	buf = malloc(max + 1);
	if (buf == NULL) {
		*cause = "cannot be read (out of memory)";
		return NULL;
	}

	while (n <= max && (r = read(fd, buf + n, max + 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*cause = "cannot be read";
			goto fail;
		}
		n += (size_t)r;
	}
	if (n > max) {
		*cause = "is too large";
		goto fail;
	}
	buf[n] = '\0';
	*len = n;
	return buf;

fail:
	OPENSSL_cleanse(buf, n > max ? max + 1 : n);
	free(buf);
	return NULL;
}

/* Read the file at path and parse it. */
struct conf *
conf_load(const char *path, FILE *errors)
{
	struct conf *conf;
	const char *cause = NULL;
	size_t len = 0;
	char *text;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		cause = conf_errno_cause(errno);
		text = NULL;
	} else {
		text = conf_read_fd(fd, CONF_MAX_FILE_BYTES, &len, &cause);
		close(fd);
	}
	if (text == NULL) {
		if (errors != NULL)
			fprintf(errors, "%s:0: %s %s\n", path, path, cause);
		return NULL;
	}
	conf = conf_parse(text, len, path, errors);
	free(text);
	return conf;
}

/* Read a private secret file whole; see conf.h. */
int
conf_read_secret(const char *path, char **out, size_t *len, const char **cause)
{
	struct stat st;
	int fd = -1, rc = -1;
	char *buf;
	size_t n = 0;

	*out = NULL;
	*len = 0;
	if (conf_check_secret_mode(path, cause) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		*cause = conf_errno_cause(errno);
		return -1;
	}

	/* The open file is checked again: the path may have changed. */
	if (fstat(fd, &st) < 0) {
		*cause = conf_errno_cause(errno);
		goto out;
	}
	if (conf_stat_cause(&st, cause) < 0)
		goto out;
	if (st.st_size > CONF_MAX_SECRET_BYTES) {
		*cause = "is too large";
		goto out;
	}

	buf = conf_read_fd(fd, (size_t)st.st_size, &n, cause);
	if (buf != NULL) {
		*out = buf;
		*len = n;
		rc = 0;
	}
out:
	close(fd);
	return rc;
}

/* Print one setting: name, type and default, then its help line. */
static void
conf_print_setting(FILE *out, const struct conf_setting *s)
{
	char def[64], list[128], extra[192] = "";
	const char *type = "string";

	if (s->type == CONF_TYPE_INT) {
		type = "integer";
		snprintf(def, sizeof(def), "%" PRId64, s->def_int);
		snprintf(extra, sizeof(extra), " (%" PRId64 " to %" PRId64 ")",
		    s->min, s->max);
	} else if (s->type == CONF_TYPE_BOOL) {
		type = "boolean";
		snprintf(def, sizeof(def), "%s", s->def_int ? "true" : "false");
	} else {
		if (s->flags & CONF_FLAG_PATH)
			type = "path";
		snprintf(def, sizeof(def), s->def_str ? "\"%s\"" : "%s",
		    s->def_str ? s->def_str : "(unset)");
	}

	if (s->allowed != NULL) {
		conf_allowed_list(s->allowed, list, sizeof(list));
		snprintf(extra, sizeof(extra), " (one of %s)", list);
	}
	fprintf(out, "%-34s %-8s %s\n    %s%s%s%s\n", s->name, type, def,
	    s->help, extra,
	    s->flags & CONF_FLAG_SECRET ? "; a secret file (chmod 600)" : "",
	    s->reload ? "; reloads on SIGHUP" : "");
}

/* Print the table of settings. */
void
conf_print_table(FILE *out)
{
	size_t i;

	fprintf(out, "%-34s %-8s %s\n", "SETTING", "TYPE", "DEFAULT");
	for (i = 0; i < CONF_NSETTINGS; i++)
		conf_print_setting(out, &conf_settings[i]);
}
