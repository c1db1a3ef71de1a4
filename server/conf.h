/*
 * The configuration: one table of settings read from a TOML file. The
 * parser accepts only the TOML subset the settings need (tables, strings,
 * integers, booleans, arrays of those, comments) and rejects the rest.
 * Every error is reported with file:line before the file is refused.
 */
#ifndef VOUCH_CONF_H
#define VOUCH_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Every setting of vouchd. Strings are NULL when unset and have no
 * default; the table in conf.c gives each field its name, type, default,
 * bounds and help line. Durations are in seconds unless the name says _ms.
 */
struct conf {
	char *path; /* the file this came from */

	/* [server] */
	char *server_listen;             /* "127.0.0.1:8080" */
	char *server_public_url;         /* "http://127.0.0.1:8080" */
	int64_t server_max_body_bytes;   /* 65536 */
	int64_t server_max_header_bytes; /* 8192 */
	int64_t server_request_timeout;  /* 30 */
	int64_t server_shutdown_timeout; /* 10 */

	/* [log] */
	char *log_level;  /* "info" */
	char *log_format; /* "text" | "json" */

	/* [database] */
	char *database_url;                    /* "dbname=vouch" */
	int64_t database_pool_size;            /* 4 */
	int64_t database_statement_timeout_ms; /* 5000 */
	int64_t database_connect_timeout;      /* 5 */

	/* [auth] */
	int64_t auth_rate_limit_per_minute; /* 600 */
	int64_t auth_rate_limit_burst;      /* 100 */

	/* [tokens] */
	char *tokens_signing_key_file;   /* "/etc/vouch/token-key.pem" */
	int64_t tokens_device_token_ttl; /* 2592000 */

	/* [secrets] */
	char *secrets_key_file; /* "/etc/vouch/secret.key" */

	/* [verification] */
	int64_t verification_push_ttl;    /* 120: a push prompt's life */
	int64_t verification_code_ttl;    /* 600: an SMS or email code's life */
	int64_t verification_code_digits; /* 6 (6..8) */
	int64_t verification_code_attempts;     /* 5 wrong codes end it */
	int64_t verification_user_limit;        /* 10 new per user per window */
	int64_t verification_technician_limit;  /* 100 per technician */
	int64_t verification_limit_window;      /* 600 seconds */
	int64_t verification_enrollment_ttl;    /* 86400 */
	int64_t verification_enroll_per_minute; /* 10 per client address */

	/* [selfservice] */
	int64_t selfservice_session_ttl;     /* 600: a session's life */
	int64_t selfservice_code_ttl;        /* 300: a code's or push's life */
	int64_t selfservice_code_attempts;   /* 5 wrong codes end a session */
	int64_t selfservice_challenge_limit; /* 3 codes or pushes a session */
	int64_t selfservice_login_starts_per_minute;   /* 5 */
	int64_t selfservice_address_starts_per_minute; /* 30 */
	int64_t selfservice_min_password_length;       /* 8, on top of AD's */
	char *selfservice_banned_passwords_file;       /* unset: no list */

	/* [outbox] */
	int64_t outbox_lease_seconds; /* 30 */
	int64_t outbox_poll_ms;       /* 500 */

	/* [apns] */
	bool apns_enabled;
	char *apns_team_id;
	char *apns_key_id;
	char *apns_key_file;
	char *apns_topic;
	char *apns_endpoint; /* "https://api.push.apple.com" */
	char *apns_ca_file;
	int64_t apns_connections;        /* 2 */
	int64_t apns_request_timeout_ms; /* 10000 */
	int64_t apns_ping_interval;      /* 60 */
	int64_t apns_ping_timeout;       /* 5 */
	int64_t apns_queue_limit;        /* 100000 */

	/* [fcm] */
	bool fcm_enabled;
	char *fcm_service_account_file;
	char *fcm_endpoint; /* "https://fcm.googleapis.com" */
	char *fcm_ca_file;
	int64_t fcm_connections;        /* 2 */
	int64_t fcm_request_timeout_ms; /* 10000 */
	int64_t fcm_ping_interval;      /* 60 */
	int64_t fcm_ping_timeout;       /* 5 */
	int64_t fcm_queue_limit;        /* 100000 */

	/* [email] */
	char *email_smtp_url; /* unset: no email channel */
	char *email_from;
	char *email_username;
	char *email_password_file;
	char *email_ca_file;

	/* [sms] */
	char *sms_api_base; /* unset: no SMS channel */
	char *sms_account_sid;
	char *sms_auth_token_file;
	char *sms_from;
	char *sms_ca_file;
};

/*
 * Read and check the file at path. Every problem is printed to errors as
 * "path:line: message" (line 0 when it is about the file as a whole);
 * when there was any, NULL is returned. Caller frees with conf_free.
 */
struct conf *conf_load(const char *path, FILE *errors);

/* The same for text already in memory; name is used in messages. */
struct conf *conf_parse(
    const char *text, size_t len, const char *name, FILE *errors);

void conf_free(struct conf *conf);

/*
 * Read a secret file whole, refusing one that group or others may read,
 * or that is not a regular file. On success *out holds a NUL-terminated
 * copy (caller wipes with OPENSSL_cleanse and frees) and *len its size.
 * Returns 0, or -1 with *cause set to a static message.
 */
int conf_read_secret(
    const char *path, char **out, size_t *len, const char **cause);

/* Check only the mode of a secret file, as conf_read_secret does. */
int conf_check_secret_mode(const char *path, const char **cause);

/* Print the table of settings (name, type, default, help) to out. */
void conf_print_table(FILE *out);

#endif
