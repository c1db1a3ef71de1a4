/*
 * Active Directory over LDAP: test a connection, read users and the
 * domain password policy, reset passwords, unlock accounts and check a
 * user's password. libldap blocks, so each operation runs on the worker
 * pool on a connection of its own and reports back on the loop. This
 * module knows nothing of tenants, the database or HTTP.
 */
#ifndef VOUCH_DIRECTORY_H
#define VOUCH_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct workers;

/* A time or duration that never comes: no expiry, no automatic unlock. */
#define DIRECTORY_NEVER INT64_MAX

/* userAccountControl and msDS-User-Account-Control-Computed bits. */
#define DIRECTORY_UAC_DISABLED 0x0002
#define DIRECTORY_UAC_LOCKOUT 0x0010
#define DIRECTORY_UAC_DONT_EXPIRE 0x10000
#define DIRECTORY_UAC_PASSWORD_EXPIRED 0x800000

enum directory_status {
	DIRECTORY_OK = 0,
	DIRECTORY_BAD_CREDENTIALS,  /* wrong or empty password (AD 52e) */
	DIRECTORY_POLICY_VIOLATION, /* password refused; detail says why */
	DIRECTORY_LOCKED_OUT,       /* the account is locked (775) */
	DIRECTORY_PASSWORD_EXPIRED, /* the password has expired (532) */
	DIRECTORY_MUST_CHANGE,      /* must change at next logon, 773 */
	DIRECTORY_NO_SUCH_USER,     /* no user has that login */
	DIRECTORY_UNREACHABLE,      /* connect, TLS or timeout */
	DIRECTORY_FAILED,           /* anything else; see the detail */
};

/* The attribute users log in with. */
enum directory_login {
	DIRECTORY_LOGIN_UPN = 0, /* userPrincipalName */
	DIRECTORY_LOGIN_SAM,     /* sAMAccountName */
};

/*
 * How to reach one directory. The strings are copied at submission.
 * url is ldaps://host[:port] or ldap://host[:port] (then StartTLS is
 * required), or several such separated by spaces; certificates are always
 * checked, against ca_file (PEM) or else the system's CAs.
 */
struct directory_settings {
	const char *url;
	const char *bind_dn; /* the service account */
	const char *bind_password;
	const char *base_dn; /* where users are searched */
	const char *ca_file; /* NULL: the system's CAs */
	enum directory_login login;
	int connect_timeout_ms; /* 0: 5000 */
	int timeout_ms;         /* per request; 0: 15000 */
	int page_size;          /* paged search; 0: 500 */
	size_t max_users;       /* a search fails past it; 0: 200000 */
};

/* One user as read from the directory. Times are Unix seconds. */
struct directory_user {
	char *dn;
	char *login;        /* NULL when the user has none */
	char *display_name; /* NULL when absent, like the next two */
	char *mail;
	char *mobile;
	char guid[37];             /* objectGUID as a UUID, or "" */
	uint32_t account_control;  /* userAccountControl */
	uint32_t computed_control; /* msDS-User-Account-Control-Computed */
	int64_t pwd_last_set;      /* 0: must change at next logon */
	int64_t password_expires;  /* DIRECTORY_NEVER, or 0 when now */
	int64_t lockout_time;      /* 0: never locked */
	int64_t when_changed;
	int64_t usn_changed;
	bool locked;           /* computed lockout bit */
	bool password_expired; /* computed expiry bit */
	bool disabled;
};

/* The domain's password and lockout policy; durations in seconds. */
struct directory_policy {
	int min_length;
	int history_length;
	bool complexity;
	int64_t max_age; /* DIRECTORY_NEVER: never expire */
	int64_t min_age;
	int lockout_threshold;    /* 0: accounts never lock */
	int64_t lockout_duration; /* DIRECTORY_NEVER: until unlocked */
	int64_t lockout_window;
};

/*
 * The outcome of an operation, valid only during the completion call.
 * detail is human text for logs and operators: never a password.
 */
struct directory_result {
	enum directory_status status;
	const char *detail; /* "" on success */
	long count;         /* test: users counted */
	/* search: the users; find, reset, unlock and check: the one user,
	   as read before any change */
	struct directory_user *users;
	size_t nusers;
	int64_t max_usn;                /* search: highest uSNChanged seen */
	unsigned pages;                 /* search and test: pages read */
	struct directory_policy policy; /* read_policy */
	uint64_t elapsed_ms;
};

/* Called on the loop, never inside the submitting call. */
typedef void directory_done_fn(const struct directory_result *r, void *arg);

/*
 * Each operation below queues one job on the pool and returns 0, after
 * which done is called exactly once; or -1 (queue full, stopping, out of
 * memory) and done is never called. Strings are copied; passwords are
 * wiped once used.
 */

/* Bind as the service account and count the users under base_dn. */
int directory_test(struct workers *w, const struct directory_settings *s,
    directory_done_fn *done, void *arg);

/* Read every user under base_dn, or those with uSNChanged >= since_usn
   when since_usn > 0, with paged results. */
int directory_search_users(struct workers *w,
    const struct directory_settings *s, int64_t since_usn,
    directory_done_fn *done, void *arg);

/* Read the one user with this login. */
int directory_find_user(struct workers *w, const struct directory_settings *s,
    const char *login, directory_done_fn *done, void *arg);

/* Set a user's password as an administrator (unicodePwd). */
int directory_reset_password(struct workers *w,
    const struct directory_settings *s, const char *login,
    const char *new_password, directory_done_fn *done, void *arg);

/* Clear a user's lockout (lockoutTime 0). */
int directory_unlock(struct workers *w, const struct directory_settings *s,
    const char *login, directory_done_fn *done, void *arg);

/* Read the domain's password policy from the domain object. */
int directory_read_policy(struct workers *w, const struct directory_settings *s,
    directory_done_fn *done, void *arg);

/* Bind as the user to check a password; the result tells why it failed. */
int directory_check_password(struct workers *w,
    const struct directory_settings *s, const char *login, const char *password,
    directory_done_fn *done, void *arg);

/* The status as its upper-case name ("OK", "LOCKED_OUT"). */
const char *directory_status_name(enum directory_status status);

/*
 * Pure helpers, exported for the unit tests.
 */

/* Map an LDAP result code and diagnostic text to a status, writing a
   human detail into detail (cap bytes). */
enum directory_status directory_map_error(
    int rc, const char *diag, char *detail, size_t cap);

/* A FILETIME (100 ns since 1601) as Unix seconds: 0 stays 0, the largest
   value is DIRECTORY_NEVER, times before 1970 become 0. */
int64_t directory_filetime_to_unix(int64_t filetime);

/* A policy interval (negative 100 ns units) in seconds; the most negative
   value is DIRECTORY_NEVER. */
int64_t directory_interval_to_seconds(int64_t interval);

/* A GeneralizedTime ("20240131235959.0Z") as Unix seconds, or -1. */
int64_t directory_gentime_to_unix(const char *text, size_t len);

/* objectGUID bytes as the usual UUID text (first three fields LE). */
void directory_guid_format(const unsigned char bytes[16], char out[37]);

/*
 * The unicodePwd value of a UTF-8 password: the password in double quotes,
 * UTF-16LE. Returns a malloc'd buffer (wipe, then free) and its length in
 * *len, or NULL for invalid UTF-8, an empty or an over-long password.
 */
unsigned char *directory_password_value(const char *password, size_t *len);

/* Escape a value for an LDAP filter (RFC 4515); returns the length, or -1
   when out (cap bytes) is too small. */
long directory_filter_escape(const char *value, char *out, size_t cap);

#endif
