/*
 * Active Directory over LDAP, off the loop. Each operation is a job: the
 * loop copies its inputs, a worker thread opens a TLS connection, binds
 * as the service account, does the work and closes; the loop then hands
 * the result to the caller. No connection outlives its job, so a thread
 * never shares a libldap handle. A watchdog bounds TLS handshakes, and a
 * failed one is tried again with OpenSSL to say why. Passwords are wiped
 * once used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ldap.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "directory.h"
#include "log.h"
#include "util.h"
#include "workers.h"

#define DIRECTORY_CONNECT_TIMEOUT_MS 5000
#define DIRECTORY_TIMEOUT_MS 15000
#define DIRECTORY_PAGE_SIZE 500
#define DIRECTORY_MAX_USERS 200000
#define DIRECTORY_PASSWORD_MAX 1024 /* bytes of UTF-8 */
#define DIRECTORY_DETAIL_MAX 512
#define DIRECTORY_FILTER_MAX 1024

/* Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01. */
#define DIRECTORY_EPOCH_DELTA 11644473600LL
#define DIRECTORY_TICKS 10000000LL /* 100 ns ticks per second */

/* pwdProperties: passwords must meet complexity requirements. */
#define DIRECTORY_PWD_COMPLEX 0x1

/* Every person account; computers are objectClass=user too. */
#define DIRECTORY_USER_FILTER "(objectCategory=person)(objectClass=user)"

enum directory_op {
	DIRECTORY_OP_TEST,
	DIRECTORY_OP_SEARCH,
	DIRECTORY_OP_FIND,
	DIRECTORY_OP_RESET,
	DIRECTORY_OP_UNLOCK,
	DIRECTORY_OP_POLICY,
	DIRECTORY_OP_CHECK,
};

static const char *const directory_op_names[] = {
	"test",
	"search",
	"find",
	"reset",
	"unlock",
	"policy",
	"check",
};

/* One operation: inputs from the loop, outputs from the worker. */
struct directory_job {
	enum directory_op op;
	struct directory_settings s; /* strings owned by the job */
	char *login;
	char *password; /* reset: the new one; check */
	int64_t since_usn;
	directory_done_fn *done;
	void *arg;
	uint64_t submitted_ms;

	struct directory_result r;
	char detail[DIRECTORY_DETAIL_MAX];
	struct directory_user *users;
	size_t users_cap;
	char *domain_dn; /* policy: the rootDSE's answer */
	bool oom;        /* a copy failed while reading */

	/* How far the connection got, for a reason libldap does not keep. */
	struct ldap_conncb conncb;
	struct directory_watch *watch; /* while TLS is being set up */
	bool tcp_connected;
	bool tls_up;
	bool tls_timed_out; /* the watchdog cut the handshake */
	uint64_t tcp_connected_ms;
};

/* Called for each entry of a search; returns 0, or -1 to stop. */
typedef int directory_entry_fn(
    struct directory_job *job, LDAP *ld, LDAPMessage *e);

/* The upper-case name of a status. */
const char *
directory_status_name(enum directory_status status)
{
	static const char *const names[] = {
		"OK",
		"BAD_CREDENTIALS",
		"POLICY_VIOLATION",
		"LOCKED_OUT",
		"PASSWORD_EXPIRED",
		"MUST_CHANGE",
		"NO_SUCH_USER",
		"UNREACHABLE",
		"FAILED",
	};

	if ((size_t)status >= sizeof(names) / sizeof(*names))
		return "FAILED";
	return names[status];
}

/*
 * How LDAP results map to statuses. The first row whose code matches and
 * whose needle (if any) occurs in the diagnostic wins; AD puts its own
 * reason in the diagnostic ("data 775", "0000052D").
 */
struct directory_rule {
	int rc;
	const char *needle;
	enum directory_status status;
	const char *meaning;
};

static const struct directory_rule directory_rules[] = {
	{ LDAP_INVALID_CREDENTIALS, "data 775", DIRECTORY_LOCKED_OUT,
	    "the account is locked out" },
	{ LDAP_INVALID_CREDENTIALS, "data 532", DIRECTORY_PASSWORD_EXPIRED,
	    "the password has expired" },
	{ LDAP_INVALID_CREDENTIALS, "data 773", DIRECTORY_MUST_CHANGE,
	    "the password must be changed at next logon" },
	{ LDAP_INVALID_CREDENTIALS, "data 533", DIRECTORY_FAILED,
	    "the account is disabled" },
	{ LDAP_INVALID_CREDENTIALS, "data 701", DIRECTORY_FAILED,
	    "the account has expired" },
	{ LDAP_INVALID_CREDENTIALS, "data 530", DIRECTORY_FAILED,
	    "logon is not permitted at this time" },
	{ LDAP_INVALID_CREDENTIALS, "data 531", DIRECTORY_FAILED,
	    "logon is not permitted from this workstation" },
	{ LDAP_INVALID_CREDENTIALS, "data 525", DIRECTORY_NO_SUCH_USER,
	    "no such user" },
	{ LDAP_INVALID_CREDENTIALS, NULL, DIRECTORY_BAD_CREDENTIALS,
	    "invalid credentials" },
	{ LDAP_CONSTRAINT_VIOLATION, "0000052D", DIRECTORY_POLICY_VIOLATION,
	    "the password does not meet the domain policy" },
	{ LDAP_UNWILLING_TO_PERFORM, "0000052D", DIRECTORY_POLICY_VIOLATION,
	    "the password does not meet the domain policy" },
	{ LDAP_CONSTRAINT_VIOLATION, "00000056", DIRECTORY_BAD_CREDENTIALS,
	    "the old password is wrong" },
	{ LDAP_SERVER_DOWN, NULL, DIRECTORY_UNREACHABLE,
	    "the directory cannot be reached" },
	{ LDAP_CONNECT_ERROR, NULL, DIRECTORY_UNREACHABLE,
	    "cannot connect or negotiate TLS" },
	{ LDAP_TIMEOUT, NULL, DIRECTORY_UNREACHABLE,
	    "the directory did not answer in time" },
	{ LDAP_TIMELIMIT_EXCEEDED, NULL, DIRECTORY_UNREACHABLE,
	    "the directory did not answer in time" },
	{ LDAP_UNAVAILABLE, NULL, DIRECTORY_UNREACHABLE,
	    "the directory is unavailable" },
	{ LDAP_BUSY, NULL, DIRECTORY_UNREACHABLE, "the directory is busy" },
	{ LDAP_STRONG_AUTH_REQUIRED, NULL, DIRECTORY_FAILED,
	    "the directory requires an encrypted connection" },
	{ LDAP_CONFIDENTIALITY_REQUIRED, NULL, DIRECTORY_FAILED,
	    "the directory requires an encrypted connection" },
	{ LDAP_INSUFFICIENT_ACCESS, NULL, DIRECTORY_FAILED,
	    "the service account lacks the right" },
	{ LDAP_NO_SUCH_OBJECT, NULL, DIRECTORY_FAILED,
	    "no such entry (check the base DN)" },
};

/* Map an LDAP result code and diagnostic to a status and a detail. */
enum directory_status
directory_map_error(int rc, const char *diag, char *detail, size_t cap)
{
	const struct directory_rule *rule = NULL;
	const char *meaning = "the directory refused the request";
	enum directory_status status = DIRECTORY_FAILED;
	size_t i;

	if (rc == LDAP_SUCCESS) {
		if (cap > 0)
			detail[0] = '\0';
		return DIRECTORY_OK;
	}

	for (i = 0; i < sizeof(directory_rules) / sizeof(*directory_rules);
	     i++) {
		rule = &directory_rules[i];
		if (rule->rc != rc)
			continue;
		if (rule->needle != NULL &&
		    (diag == NULL || strcasestr(diag, rule->needle) == NULL))
			continue;
		status = rule->status;
		meaning = rule->meaning;
		break;
	}

	if (diag != NULL && diag[0] != '\0')
		snprintf(detail, cap, "%s (%s: %s)", meaning,
		    ldap_err2string(rc), diag);
	else
		snprintf(detail, cap, "%s (%s)", meaning, ldap_err2string(rc));
	return status;
}

/* A FILETIME as Unix seconds. */
int64_t
directory_filetime_to_unix(int64_t filetime)
{
	int64_t s;

	if (filetime == INT64_MAX)
		return DIRECTORY_NEVER;
	if (filetime <= 0)
		return 0;
	s = filetime / DIRECTORY_TICKS - DIRECTORY_EPOCH_DELTA;
	return s < 0 ? 0 : s;
}

/* A policy interval in seconds. */
int64_t
directory_interval_to_seconds(int64_t interval)
{
	if (interval == INT64_MIN)
		return DIRECTORY_NEVER;
	if (interval < 0)
		interval = -interval;
	return interval / DIRECTORY_TICKS;
}

/* Read n decimal digits at s; returns -1 when one is not a digit. */
static int
directory_digits(const char *s, int n)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* A GeneralizedTime in UTC as Unix seconds, or -1. */
int64_t
directory_gentime_to_unix(const char *text, size_t len)
{
	struct tm tm;
	size_t i = 14;
	int f[6], widths[6] = { 4, 2, 2, 2, 2, 2 }, k, at = 0;

	if (len < 15)
		return -1;
	for (k = 0; k < 6; k++) {
		f[k] = directory_digits(text + at, widths[k]);
		if (f[k] < 0)
			return -1;
		at += widths[k];
	}
	if (text[i] == '.' || text[i] == ',') {
		for (i++; i < len && text[i] >= '0' && text[i] <= '9'; i++)
			;
	}
	if (i + 1 != len || text[i] != 'Z')
		return -1;
	if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 ||
	    f[4] > 59 || f[5] > 60)
		return -1;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = f[0] - 1900;
	tm.tm_mon = f[1] - 1;
	tm.tm_mday = f[2];
	tm.tm_hour = f[3];
	tm.tm_min = f[4];
	tm.tm_sec = f[5];
	return (int64_t)timegm(&tm);
}

/* objectGUID bytes as UUID text. */
void
directory_guid_format(const unsigned char b[16], char out[37])
{
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10],
	    b[11], b[12], b[13], b[14], b[15]);
}

/* Append one UTF-16 code unit, little-endian. */
static void
directory_put16(unsigned char *out, size_t *at, uint32_t unit)
{
	out[(*at)++] = (unsigned char)(unit & 0xff);
	out[(*at)++] = (unsigned char)(unit >> 8);
}

/* The unicodePwd value of a password. */
unsigned char *
directory_password_value(const char *password, size_t *len)
{
	const unsigned char *p = (const unsigned char *)password;
	size_t n = strlen(password), i = 0, at = 0, k;
	unsigned char *out;
	uint32_t cp;

	if (n == 0 || n > DIRECTORY_PASSWORD_MAX)
		return NULL;
	/* Each input byte yields at most two output bytes. */
	out = malloc(2 * n + 4);
	if (out == NULL)
		return NULL;

	directory_put16(out, &at, '"');
	while (i < n) {
		k = util_utf8_decode(p + i, n - i, &cp);
		if (k == 0) {
			OPENSSL_cleanse(out, 2 * n + 4);
			free(out);
			return NULL;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			directory_put16(out, &at, 0xd800 | (cp >> 10));
			directory_put16(out, &at, 0xdc00 | (cp & 0x3ff));
		} else {
			directory_put16(out, &at, cp);
		}
		i += k;
	}
	directory_put16(out, &at, '"');
	*len = at;
	return out;
}

/* Escape a value for an LDAP filter. */
long
directory_filter_escape(const char *value, char *out, size_t cap)
{
	const unsigned char *v = (const unsigned char *)value;
	size_t at = 0;

	for (; *v != '\0'; v++) {
		if (*v == '*' || *v == '(' || *v == ')' || *v == '\\' ||
		    *v < 0x20 || *v == 0x7f) {
			if (at + 3 >= cap)
				return -1;
			snprintf(out + at, 4, "\\%02x", *v);
			at += 3;
		} else {
			if (at + 1 >= cap)
				return -1;
			out[at++] = (char)*v;
		}
	}
	if (cap == 0)
		return -1;
	out[at] = '\0';
	return (long)at;
}

/*
 * Worker side: everything below until the submission functions runs on a
 * worker thread and touches only its job.
 */

/* Record a failure with a formatted detail. */
static void directory_fail(struct directory_job *job,
    enum directory_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
directory_fail(struct directory_job *job, enum directory_status status,
    const char *fmt, ...)
{
	va_list ap;

	job->r.status = status;
	va_start(ap, fmt);
	vsnprintf(job->detail, sizeof(job->detail), fmt, ap);
	va_end(ap);
}

/* Milliseconds as a struct timeval. */
static struct timeval
directory_tv(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	return tv;
}

/* The StartTLS extended request, message id 1, as BER. */
static const unsigned char directory_starttls_req[] = {
	0x30,
	0x1d,
	0x02,
	0x01,
	0x01,
	0x77,
	0x18,
	0x80,
	0x16,
	'1',
	'.',
	'3',
	'.',
	'6',
	'.',
	'1',
	'.',
	'4',
	'.',
	'1',
	'.',
	'1',
	'4',
	'6',
	'6',
	'.',
	'2',
	'0',
	'0',
	'3',
	'7',
};

/* Connect a TCP socket within the timeout; returns the fd or -1. */
static int
directory_probe_connect(const char *host, int port, int timeout_ms)
{
	struct addrinfo hints, *res = NULL;
	struct pollfd pfd;
	struct timeval tv = directory_tv(timeout_ms);
	char service[16];
	int fd = -1, err = 0;
	socklen_t len = sizeof(err);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(service, sizeof(service), "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return -1;

	fd = socket(
	    res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
		    err != 0) {
			close(fd);
			fd = -1;
			goto out;
		}
	}
	/* Blocking from here on, each read and write bounded. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

out:
	freeaddrinfo(res);
	return fd;
}

/* Ask for StartTLS and read the whole answer; returns 0 or -1. */
static int
directory_probe_starttls(int fd)
{
	unsigned char buf[512];
	size_t got = 0;
	ssize_t n;

	if (write(fd, directory_starttls_req, sizeof(directory_starttls_req)) !=
	    (ssize_t)sizeof(directory_starttls_req))
		return -1;
	/* A short-form length is all a StartTLS answer needs. */
	while (got < 2 || (buf[1] < 0x80 && got < (size_t)buf[1] + 2)) {
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		if (buf[1] >= 0x80)
			break;
	}
	return 0;
}

/* A TLS client context that checks the peer like libldap does. */
static SSL *
directory_probe_ssl(struct directory_job *job, SSL_CTX **ctxp, const char *host)
{
	unsigned char addr[16];
	SSL_CTX *ctx;
	SSL *ssl;
	bool ip;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	*ctxp = ctx;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (job->s.ca_file != NULL
	        ? SSL_CTX_load_verify_locations(ctx, job->s.ca_file, NULL) != 1
	        : SSL_CTX_set_default_verify_paths(ctx) != 1)
		return NULL;

	ssl = SSL_new(ctx);
	if (ssl == NULL)
		return NULL;
	ip = inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
	if (ip)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	else {
		SSL_set_tlsext_host_name(ssl, host);
		SSL_set1_host(ssl, host);
	}
	return ssl;
}

/* Shake hands with OpenSSL on fd and describe how it went, or "". */
static void
directory_probe_handshake(
    struct directory_job *job, int fd, const char *host, char *out, size_t cap)
{
	SSL_CTX *ctx = NULL;
	SSL *ssl;
	long verify;
	unsigned long err;
	char text[128];

	ssl = directory_probe_ssl(job, &ctx, host);
	if (ssl == NULL) {
		snprintf(out, cap, ": TLS: cannot load the CA file %s",
		    job->s.ca_file != NULL ? job->s.ca_file : "(system)");
		SSL_CTX_free(ctx);
		return;
	}
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		verify = SSL_get_verify_result(ssl);
		err = ERR_peek_last_error();
		if (verify != X509_V_OK)
			snprintf(out, cap,
			    ": TLS: the certificate of %s was "
			    "refused: %s",
			    host, X509_verify_cert_error_string(verify));
		else if (err != 0) {
			ERR_error_string_n(err, text, sizeof(text));
			snprintf(out, cap, ": TLS handshake with %s failed: %s",
			    host, text);
		} else
			snprintf(
			    out, cap, ": TLS handshake with %s failed", host);
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

/*
 * TLS failed after the TCP connect, and libldap kept no reason: connect
 * to the first server again and shake hands with OpenSSL, checking the
 * certificate the same way, to say why. A slow failure is not retried:
 * that would double the time the caller waits.
 */
static void
directory_tls_explain(struct directory_job *job, char *out, size_t cap)
{
	LDAPURLDesc *lud = NULL;
	char first[512];
	size_t n;
	int fd, port;

	out[0] = '\0';
	if (util_now_ms() - job->tcp_connected_ms >=
	    (uint64_t)job->s.connect_timeout_ms / 2)
		return;

	n = strcspn(job->s.url, " ,");
	if (n >= sizeof(first))
		return;
	memcpy(first, job->s.url, n);
	first[n] = '\0';
	if (ldap_url_parse(first, &lud) != LDAP_URL_SUCCESS ||
	    lud->lud_host == NULL) {
		ldap_free_urldesc(lud);
		return;
	}
	port = lud->lud_port != 0                       ? lud->lud_port
	    : strcasecmp(lud->lud_scheme, "ldaps") == 0 ? 636
	                                                : 389;

	ERR_clear_error();
	fd = directory_probe_connect(
	    lud->lud_host, port, job->s.connect_timeout_ms);
	if (fd >= 0 &&
	    (strcasecmp(lud->lud_scheme, "ldaps") == 0 ||
	        directory_probe_starttls(fd) == 0))
		directory_probe_handshake(job, fd, lud->lud_host, out, cap);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	ldap_free_urldesc(lud);
}

/*
 * Record the failure of an LDAP call: what was tried, then why. When TLS
 * failed, libldap has lost its own reason by then: find it out again.
 */
static void
directory_ldap_fail(
    struct directory_job *job, LDAP *ld, int rc, const char *what)
{
	char *diag = NULL;
	char why[DIRECTORY_DETAIL_MAX], tls[DIRECTORY_DETAIL_MAX / 2];

	if (ld != NULL)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	job->r.status = directory_map_error(rc, diag, why, sizeof(why));
	tls[0] = '\0';
	if (job->r.status == DIRECTORY_UNREACHABLE && job->tls_timed_out)
		snprintf(tls, sizeof(tls), ": no TLS handshake within %d ms",
		    job->s.connect_timeout_ms);
	else if (job->r.status == DIRECTORY_UNREACHABLE && job->tcp_connected &&
	    !job->tls_up)
		directory_tls_explain(job, tls, sizeof(tls));
	if (tls[0] != '\0')
		directory_map_error(rc, NULL, why, sizeof(why));
	snprintf(job->detail, sizeof(job->detail), "%s: %s%s", what, why, tls);
	ldap_memfree(diag);
}

/*
 * The TLS watchdog. libldap bounds the TCP connect and each request, but
 * not the TLS handshake: with GnuTLS a silent server keeps a handshake
 * going for ever (spinning, when a network timeout is set). So while a
 * connection shakes hands, a copy of its socket sits on this list, and
 * one process-wide thread shuts the socket down when its deadline passes,
 * which makes the handshake fail at once. The copy (dup) keeps the socket
 * alive, so a reused descriptor number is never shut by mistake.
 *
 * XXX: until the watchdog fires, libldap with GnuTLS spins one core on a
 * silent LDAPS server (measured on Debian 12's libldap 2.5.13); the
 * connect timeout bounds it. A libldap that polls during the handshake
 * would end it.
 */
struct directory_watch {
	int fd; /* our dup of the socket */
	uint64_t deadline_ms;
	bool fired;
	struct directory_watch *next;
};

static pthread_mutex_t directory_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t directory_watch_cond;
static pthread_once_t directory_watch_once = PTHREAD_ONCE_INIT;
static struct directory_watch *directory_watches;
static bool directory_watch_ok;

/* A monotonic deadline in ms as the absolute time cond_timedwait wants. */
static struct timespec
directory_watch_abstime(uint64_t deadline_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_ms / 1000);
	ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
	return ts;
}

/* Shut the sockets whose deadline passed; returns the next deadline. */
static uint64_t
directory_watch_expire(uint64_t now)
{
	struct directory_watch *w;
	uint64_t next = UINT64_MAX;

	for (w = directory_watches; w != NULL; w = w->next) {
		if (w->fired)
			continue;
		if (w->deadline_ms <= now) {
			shutdown(w->fd, SHUT_RDWR);
			w->fired = true;
		} else if (w->deadline_ms < next) {
			next = w->deadline_ms;
		}
	}
	return next;
}

/* The watchdog thread: sleep until the next deadline, then act. */
static void *
directory_watch_thread(void *arg)
{
	struct timespec ts;
	uint64_t next;

	pthread_mutex_lock(&directory_watch_lock);
	for (;;) {
		next = directory_watch_expire(util_now_ms());
		if (next == UINT64_MAX) {
			pthread_cond_wait(
			    &directory_watch_cond, &directory_watch_lock);
		} else {
			ts = directory_watch_abstime(next);
			pthread_cond_timedwait(
			    &directory_watch_cond, &directory_watch_lock, &ts);
		}
	}
	return NULL;
}

/* Start the watchdog, once per process, with every signal blocked. */
static void
directory_watch_start(void)
{
	pthread_condattr_t attr;
	pthread_attr_t tattr;
	sigset_t all, old;
	pthread_t tid;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&directory_watch_cond, &attr);
	pthread_condattr_destroy(&attr);

	pthread_attr_init(&tattr);
	pthread_attr_setdetachstate(&tattr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	directory_watch_ok =
	    pthread_create(&tid, &tattr, directory_watch_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&tattr);
}

/* Stop watching the job's socket; returns true when the watchdog fired. */
static bool
directory_watch_disarm(struct directory_job *job)
{
	struct directory_watch **p, *w = job->watch;
	bool fired = false;

	if (w == NULL)
		return false;
	pthread_mutex_lock(&directory_watch_lock);
	for (p = &directory_watches; *p != NULL; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	fired = w->fired;
	pthread_mutex_unlock(&directory_watch_lock);

	close(w->fd);
	free(w);
	job->watch = NULL;
	return fired;
}

/* Watch a socket until the deadline; without a watchdog, do nothing. */
static void
directory_watch_arm(struct directory_job *job, int fd, uint64_t deadline)
{
	struct directory_watch *w;

	directory_watch_disarm(job);
	pthread_once(&directory_watch_once, directory_watch_start);
	if (!directory_watch_ok)
		return;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return;
	w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (w->fd < 0) {
		free(w);
		return;
	}
	w->deadline_ms = deadline;

	pthread_mutex_lock(&directory_watch_lock);
	w->next = directory_watches;
	directory_watches = w;
	pthread_cond_signal(&directory_watch_cond);
	pthread_mutex_unlock(&directory_watch_lock);
	job->watch = w;
}

/*
 * libldap connected a socket, before any TLS: note it, and put the socket
 * under the watchdog until TLS is up (StartTLS also needs one request).
 * A reconnection later in the job is not watched: it would carry no
 * credentials, and AD refuses what it then asks.
 */
static int
directory_conn_add_cb(LDAP *ld, Sockbuf *sb, LDAPURLDesc *srv,
    struct sockaddr *addr, struct ldap_conncb *ctx)
{
	struct directory_job *job = ctx->lc_arg;
	ber_socket_t fd = -1;
	uint64_t budget = (uint64_t)job->s.connect_timeout_ms;

	job->tcp_connected = true;
	job->tcp_connected_ms = util_now_ms();
	if (job->tls_up || ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd) != 1 ||
	    fd < 0)
		return 0;
	if (srv != NULL && srv->lud_scheme != NULL &&
	    strcasecmp(srv->lud_scheme, "ldaps") != 0)
		budget += (uint64_t)job->s.timeout_ms;
	directory_watch_arm(job, fd, job->tcp_connected_ms + budget);
	return 0;
}

/* libldap closes a connection: nothing to do, the watchdog holds a dup. */
static void
directory_conn_del_cb(LDAP *ld, Sockbuf *sb, struct ldap_conncb *ctx)
{
}

/* The attribute users log in with. */
static const char *
directory_login_attr(const struct directory_job *job)
{
	return job->s.login == DIRECTORY_LOGIN_SAM ? "sAMAccountName"
	                                           : "userPrincipalName";
}

/*
 * Check that every URL of the list uses one scheme, ldaps or ldap (which
 * then needs StartTLS). Returns 0 and sets *starttls, or -1.
 */
static int
directory_url_check(const char *url, bool *starttls)
{
	const char *p = url;
	int seen_ldap = 0, seen_ldaps = 0;

	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		if (strncasecmp(p, "ldaps://", 8) == 0)
			seen_ldaps = 1;
		else if (strncasecmp(p, "ldap://", 7) == 0)
			seen_ldap = 1;
		else
			return -1;
		while (*p != '\0' && *p != ' ' && *p != ',')
			p++;
	}
	if (seen_ldap + seen_ldaps != 1)
		return -1;
	*starttls = seen_ldap;
	return 0;
}

/*
 * Set the handle's options: LDAPv3, no referrals, both timeouts, and
 * TLS that always checks the certificate, then a fresh TLS context so the
 * CA file is used. Returns 0, or -1 with the failure recorded.
 */
static int
directory_set_options(struct directory_job *job, LDAP *ld)
{
	struct timeval net = directory_tv(job->s.connect_timeout_ms);
	struct timeval op = directory_tv(job->s.timeout_ms);
	int version = LDAP_VERSION3, hard = LDAP_OPT_X_TLS_HARD;
	int tls_min = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2, zero = 0;

	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) ||
	    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &net) ||
	    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &op) ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &hard) ||
	    ldap_set_option(ld, LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls_min)) {
		directory_fail(
		    job, DIRECTORY_FAILED, "cannot set the connection options");
		return -1;
	}

	if (job->s.ca_file != NULL &&
	    ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, job->s.ca_file)) {
		directory_fail(job, DIRECTORY_FAILED, "cannot use CA file %s",
		    job->s.ca_file);
		return -1;
	}
	job->conncb.lc_add = directory_conn_add_cb;
	job->conncb.lc_del = directory_conn_del_cb;
	job->conncb.lc_arg = job;
	if (ldap_set_option(ld, LDAP_OPT_CONNECT_CB, &job->conncb)) {
		directory_fail(
		    job, DIRECTORY_FAILED, "cannot set the connection options");
		return -1;
	}
	if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero)) {
		directory_fail(job, DIRECTORY_FAILED,
		    "cannot set up TLS (is the CA file %s readable PEM?)",
		    job->s.ca_file != NULL ? job->s.ca_file : "of the system");
		return -1;
	}
	return 0;
}

/* A simple bind; an empty password is refused (it would bind anonymously). */
static int
directory_bind(struct directory_job *job, LDAP *ld, const char *dn,
    const char *password, const char *what)
{
	struct berval cred;
	int rc;

	if (dn == NULL || dn[0] == '\0' || password == NULL ||
	    password[0] == '\0') {
		directory_fail(job, DIRECTORY_BAD_CREDENTIALS,
		    "%s: a name and a non-empty password are required", what);
		return -1;
	}

	cred.bv_val = (char *)password;
	cred.bv_len = strlen(password);
	rc =
	    ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	if (rc != LDAP_SUCCESS) {
		directory_ldap_fail(job, ld, rc, what);
		return -1;
	}
	return 0;
}

/*
 * Connect and set up TLS (ldaps, or StartTLS) under the watchdog, before
 * any credential is sent. Returns 0, or -1 with the failure recorded.
 */
static int
directory_open_tls(struct directory_job *job, LDAP *ld, bool starttls)
{
	const char *what = "connect";
	int rc, err = LDAP_SERVER_DOWN;

	rc = ldap_connect(ld);
	if (rc != LDAP_SUCCESS)
		ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
	else if (starttls) {
		what = "start TLS";
		err = rc = ldap_start_tls_s(ld, NULL, NULL);
	}
	job->tls_timed_out = directory_watch_disarm(job);

	if (rc != LDAP_SUCCESS) {
		directory_ldap_fail(job, ld,
		    err != LDAP_SUCCESS ? err : LDAP_SERVER_DOWN, what);
		if (job->tls_timed_out)
			job->r.status = DIRECTORY_UNREACHABLE;
		return -1;
	}
	job->tls_up = true;
	return 0;
}

/*
 * Open a TLS connection and bind as the service account. Unless this is
 * the connection test, a refused service bind is FAILED: it must not read
 * as the end-user's own bad password. Returns the handle or NULL.
 */
static LDAP *
directory_connect(struct directory_job *job)
{
	LDAP *ld = NULL;
	bool starttls = false;
	int rc;

	if (job->s.url == NULL ||
	    directory_url_check(job->s.url, &starttls) != 0) {
		directory_fail(job, DIRECTORY_FAILED,
		    "the URL must be ldaps://host or ldap://host (StartTLS)");
		return NULL;
	}
	rc = ldap_initialize(&ld, job->s.url);
	if (rc != LDAP_SUCCESS) {
		directory_ldap_fail(job, NULL, rc, "parse the URL");
		return NULL;
	}
	if (directory_set_options(job, ld) != 0)
		goto fail;
	if (directory_open_tls(job, ld, starttls) != 0)
		goto fail;

	if (directory_bind(job, ld, job->s.bind_dn, job->s.bind_password,
	        "bind as the service account") != 0) {
		if (job->op != DIRECTORY_OP_TEST &&
		    job->r.status != DIRECTORY_UNREACHABLE)
			job->r.status = DIRECTORY_FAILED;
		goto fail;
	}
	return ld;

fail:
	ldap_unbind_ext_s(ld, NULL, NULL);
	directory_watch_disarm(job);
	return NULL;
}

/* Read the paged-results cookie of a page; returns 0 or -1. */
static int
directory_next_cookie(struct directory_job *job, LDAP *ld, LDAPMessage *res,
    struct berval *cookie)
{
	LDAPControl **ctrls = NULL, *page;
	ber_int_t estimate;
	int rc, err = LDAP_SUCCESS, ret = -1;

	ber_memfree(cookie->bv_val);
	cookie->bv_val = NULL;
	cookie->bv_len = 0;

	rc = ldap_parse_result(ld, res, &err, NULL, NULL, NULL, &ctrls, 0);
	if (rc != LDAP_SUCCESS) {
		directory_ldap_fail(job, ld, rc, "read a search page");
		goto out;
	}
	page = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL);
	if (page != NULL &&
	    ldap_parse_pageresponse_control(ld, page, &estimate, cookie) !=
	        LDAP_SUCCESS) {
		directory_fail(job, DIRECTORY_FAILED,
		    "the directory sent a malformed paged-results control");
		goto out;
	}
	ret = 0;

out:
	ldap_controls_free(ctrls);
	return ret;
}

/*
 * Search and call fn for every entry; a paged search asks for page_size
 * entries at a time until the directory's cookie comes back empty.
 * Returns 0, or -1 with the failure recorded.
 */
static int
directory_search(struct directory_job *job, LDAP *ld, const char *base,
    int scope, const char *filter, char **attrs, bool paged,
    directory_entry_fn *fn)
{
	struct berval cookie = { 0, NULL };
	LDAPControl *page = NULL, *ctrls[2] = { NULL, NULL };
	LDAPMessage *res = NULL, *e;
	struct timeval tv = directory_tv(job->s.timeout_ms);
	int rc, ret = -1;

	for (;;) {
		if (paged) {
			rc = ldap_create_page_control(
			    ld, job->s.page_size, &cookie, 1, &page);
			if (rc != LDAP_SUCCESS) {
				directory_ldap_fail(
				    job, ld, rc, "page a search");
				goto out;
			}
			ctrls[0] = page;
		}
		rc = ldap_search_ext_s(ld, base, scope, filter, attrs, 0,
		    paged ? ctrls : NULL, NULL, &tv, 0, &res);
		ldap_control_free(page);
		page = NULL;
		if (rc != LDAP_SUCCESS) {
			directory_ldap_fail(job, ld, rc, "search");
			goto out;
		}

		if (paged)
			job->r.pages++;
		for (e = ldap_first_entry(ld, res); e != NULL;
		     e = ldap_next_entry(ld, e)) {
			if (fn(job, ld, e) != 0)
				goto out;
		}
		if (!paged || directory_next_cookie(job, ld, res, &cookie))
			break;
		ldap_msgfree(res);
		res = NULL;
		if (cookie.bv_len == 0)
			break;
	}
	ret = job->r.status == DIRECTORY_OK ? 0 : -1;

out:
	ldap_msgfree(res);
	ber_memfree(cookie.bv_val);
	return ret;
}

/* The first value of an attribute as a malloc'd string, or NULL. */
static char *
directory_attr_dup(struct directory_job *job, LDAP *ld, LDAPMessage *e,
    const char *attr, size_t *len)
{
	struct berval **vals;
	char *s = NULL;

	vals = ldap_get_values_len(ld, e, attr);
	if (vals == NULL)
		return NULL;
	if (vals[0] != NULL) {
		s = malloc(vals[0]->bv_len + 1);
		if (s != NULL) {
			memcpy(s, vals[0]->bv_val, vals[0]->bv_len);
			s[vals[0]->bv_len] = '\0';
			if (len != NULL)
				*len = vals[0]->bv_len;
		} else {
			job->oom = true;
		}
	}
	ldap_value_free_len(vals);
	return s;
}

/* The first value of an integer attribute, or fallback when absent. */
static int64_t
directory_attr_int(LDAP *ld, LDAPMessage *e, const char *attr, int64_t fallback)
{
	struct berval **vals;
	char buf[32];
	int64_t v = fallback;
	char *end;

	vals = ldap_get_values_len(ld, e, attr);
	if (vals == NULL)
		return fallback;
	if (vals[0] != NULL && vals[0]->bv_len > 0 &&
	    vals[0]->bv_len < sizeof(buf)) {
		memcpy(buf, vals[0]->bv_val, vals[0]->bv_len);
		buf[vals[0]->bv_len] = '\0';
		errno = 0;
		v = strtoll(buf, &end, 10);
		if (errno != 0 || *end != '\0')
			v = fallback;
	}
	ldap_value_free_len(vals);
	return v;
}

/* Fill the identity fields of a user from an entry. */
static void
directory_user_names(struct directory_job *job, LDAP *ld, LDAPMessage *e,
    struct directory_user *u)
{
	char *dn, *guid, *changed;
	size_t len = 0;

	dn = ldap_get_dn(ld, e);
	if (dn != NULL) {
		u->dn = strdup(dn);
		job->oom |= u->dn == NULL;
		ldap_memfree(dn);
	}
	u->login =
	    directory_attr_dup(job, ld, e, directory_login_attr(job), NULL);
	u->display_name = directory_attr_dup(job, ld, e, "displayName", NULL);
	u->mail = directory_attr_dup(job, ld, e, "mail", NULL);
	u->mobile = directory_attr_dup(job, ld, e, "mobile", NULL);

	guid = directory_attr_dup(job, ld, e, "objectGUID", &len);
	if (guid != NULL && len == 16)
		directory_guid_format((unsigned char *)guid, u->guid);
	free(guid);

	changed = directory_attr_dup(job, ld, e, "whenChanged", &len);
	if (changed != NULL)
		u->when_changed = directory_gentime_to_unix(changed, len);
	if (u->when_changed < 0)
		u->when_changed = 0;
	free(changed);
}

/* Fill the password and lockout fields of a user from an entry. */
static void
directory_user_state(LDAP *ld, LDAPMessage *e, struct directory_user *u)
{
	int64_t expiry;

	u->account_control =
	    (uint32_t)directory_attr_int(ld, e, "userAccountControl", 0);
	u->computed_control = (uint32_t)directory_attr_int(
	    ld, e, "msDS-User-Account-Control-Computed", 0);
	u->pwd_last_set = directory_filetime_to_unix(
	    directory_attr_int(ld, e, "pwdLastSet", 0));
	u->lockout_time = directory_filetime_to_unix(
	    directory_attr_int(ld, e, "lockoutTime", 0));
	u->usn_changed = directory_attr_int(ld, e, "uSNChanged", 0);

	/* Absent means unknown: do not report it as expired. */
	expiry = directory_attr_int(
	    ld, e, "msDS-UserPasswordExpiryTimeComputed", INT64_MAX);
	u->password_expires = directory_filetime_to_unix(expiry);

	u->locked = (u->computed_control & DIRECTORY_UAC_LOCKOUT) != 0;
	u->password_expired =
	    (u->computed_control & DIRECTORY_UAC_PASSWORD_EXPIRED) != 0;
	u->disabled = (u->account_control & DIRECTORY_UAC_DISABLED) != 0;
}

/* Add one user entry to the job's list. */
static int
directory_user_cb(struct directory_job *job, LDAP *ld, LDAPMessage *e)
{
	struct directory_user *u, *grown;
	size_t cap;

	if (job->r.nusers >= job->s.max_users) {
		directory_fail(job, DIRECTORY_FAILED,
		    "more than %zu users: raise the limit or narrow the "
		    "base DN",
		    job->s.max_users);
		return -1;
	}
	if (job->r.nusers == job->users_cap) {
		cap = job->users_cap == 0 ? 16 : job->users_cap * 2;
		grown = realloc(job->users, cap * sizeof(*grown));
		if (grown == NULL) {
			directory_fail(job, DIRECTORY_FAILED, "out of memory");
			return -1;
		}
		job->users = grown;
		job->users_cap = cap;
	}

	u = &job->users[job->r.nusers++];
	memset(u, 0, sizeof(*u));
	directory_user_names(job, ld, e, u);
	directory_user_state(ld, e, u);
	if (job->oom) {
		directory_fail(job, DIRECTORY_FAILED, "out of memory");
		return -1;
	}
	if (job->r.max_usn < u->usn_changed)
		job->r.max_usn = u->usn_changed;
	return 0;
}

/* Count an entry. */
static int
directory_count_cb(struct directory_job *job, LDAP *ld, LDAPMessage *e)
{
	job->r.count++;
	return 0;
}

/* The attributes read for each user; [0] is set to the login attribute. */
static void
directory_user_attrs(const struct directory_job *job, char *attrs[13])
{
	static const char *const rest[] = {
		"displayName",
		"mail",
		"mobile",
		"objectGUID",
		"pwdLastSet",
		"userAccountControl",
		"msDS-UserPasswordExpiryTimeComputed",
		"msDS-User-Account-Control-Computed",
		"lockoutTime",
		"whenChanged",
		"uSNChanged",
	};
	size_t i;

	attrs[0] = (char *)directory_login_attr(job);
	for (i = 0; i < sizeof(rest) / sizeof(*rest); i++)
		attrs[i + 1] = (char *)rest[i];
	attrs[i + 1] = NULL;
}

/* Bind and count the users under the base DN. */
static void
directory_run_test(struct directory_job *job, LDAP *ld)
{
	char *attrs[] = { (char *)LDAP_NO_ATTRS, NULL };

	directory_search(job, ld, job->s.base_dn, LDAP_SCOPE_SUBTREE,
	    "(&" DIRECTORY_USER_FILTER ")", attrs, true, directory_count_cb);
}

/* Read all users, or those changed since a USN. */
static void
directory_run_search(struct directory_job *job, LDAP *ld)
{
	char filter[128], *attrs[13];

	if (job->since_usn > 0)
		snprintf(filter, sizeof(filter),
		    "(&" DIRECTORY_USER_FILTER "(uSNChanged>=%lld))",
		    (long long)job->since_usn);
	else
		snprintf(
		    filter, sizeof(filter), "(&" DIRECTORY_USER_FILTER ")");
	directory_user_attrs(job, attrs);
	directory_search(job, ld, job->s.base_dn, LDAP_SCOPE_SUBTREE, filter,
	    attrs, true, directory_user_cb);
}

/* Find the one user with the job's login; returns 0 or -1. */
static int
directory_locate(struct directory_job *job, LDAP *ld)
{
	char escaped[DIRECTORY_FILTER_MAX / 2];
	char filter[DIRECTORY_FILTER_MAX], *attrs[13];

	if (job->login == NULL || job->login[0] == '\0' ||
	    directory_filter_escape(job->login, escaped, sizeof(escaped)) < 0) {
		directory_fail(job, DIRECTORY_NO_SUCH_USER,
		    "the login is empty or too long");
		return -1;
	}
	snprintf(filter, sizeof(filter), "(&" DIRECTORY_USER_FILTER "(%s=%s))",
	    directory_login_attr(job), escaped);
	directory_user_attrs(job, attrs);

	if (directory_search(job, ld, job->s.base_dn, LDAP_SCOPE_SUBTREE,
	        filter, attrs, true, directory_user_cb) != 0)
		return -1;
	if (job->r.nusers == 0) {
		directory_fail(job, DIRECTORY_NO_SUCH_USER,
		    "no user has %s %s under %s", directory_login_attr(job),
		    job->login, job->s.base_dn);
		return -1;
	}
	if (job->r.nusers > 1) {
		directory_fail(job, DIRECTORY_FAILED, "%zu users have %s %s",
		    job->r.nusers, directory_login_attr(job), job->login);
		return -1;
	}
	return 0;
}

/* Replace one attribute of the located user with one value. */
static void
directory_replace(struct directory_job *job, LDAP *ld, const char *attr,
    struct berval *value, const char *what)
{
	struct berval *vals[2] = { value, NULL };
	LDAPMod mod, *mods[2] = { &mod, NULL };
	int rc;

	memset(&mod, 0, sizeof(mod));
	mod.mod_op = LDAP_MOD_REPLACE | LDAP_MOD_BVALUES;
	mod.mod_type = (char *)attr;
	mod.mod_bvalues = vals;

	rc = ldap_modify_ext_s(ld, job->users[0].dn, mods, NULL, NULL);
	if (rc != LDAP_SUCCESS)
		directory_ldap_fail(job, ld, rc, what);
}

/* Set the located user's password as an administrator. */
static void
directory_run_reset(struct directory_job *job, LDAP *ld)
{
	struct berval value;
	unsigned char *pwd;
	size_t len = 0;

	if (directory_locate(job, ld) != 0)
		return;

	pwd = directory_password_value(job->password, &len);
	if (pwd == NULL) {
		directory_fail(job, DIRECTORY_POLICY_VIOLATION,
		    "the password is empty, too long or not valid UTF-8");
		return;
	}
	value.bv_val = (char *)pwd;
	value.bv_len = len;
	directory_replace(job, ld, "unicodePwd", &value, "reset the password");
	OPENSSL_cleanse(pwd, len);
	free(pwd);
}

/* Clear the located user's lockout. */
static void
directory_run_unlock(struct directory_job *job, LDAP *ld)
{
	struct berval zero = { 1, (char *)"0" };

	if (directory_locate(job, ld) != 0)
		return;
	directory_replace(job, ld, "lockoutTime", &zero, "unlock");
}

/* Keep the rootDSE's defaultNamingContext. */
static int
directory_rootdse_cb(struct directory_job *job, LDAP *ld, LDAPMessage *e)
{
	free(job->domain_dn);
	job->domain_dn =
	    directory_attr_dup(job, ld, e, "defaultNamingContext", NULL);
	return 0;
}

/* Read the policy attributes of the domain object. */
static int
directory_policy_cb(struct directory_job *job, LDAP *ld, LDAPMessage *e)
{
	struct directory_policy *p = &job->r.policy;
	int64_t v;

	p->min_length = (int)directory_attr_int(ld, e, "minPwdLength", 0);
	p->history_length =
	    (int)directory_attr_int(ld, e, "pwdHistoryLength", 0);
	p->complexity = (directory_attr_int(ld, e, "pwdProperties", 0) &
	                    DIRECTORY_PWD_COMPLEX) != 0;
	p->lockout_threshold =
	    (int)directory_attr_int(ld, e, "lockoutThreshold", 0);

	/* 0 means "never" for the maximum age and the lockout duration. */
	v = directory_attr_int(ld, e, "maxPwdAge", 0);
	p->max_age =
	    v == 0 ? DIRECTORY_NEVER : directory_interval_to_seconds(v);
	v = directory_attr_int(ld, e, "lockoutDuration", 0);
	p->lockout_duration =
	    v == 0 ? DIRECTORY_NEVER : directory_interval_to_seconds(v);
	p->min_age = directory_interval_to_seconds(
	    directory_attr_int(ld, e, "minPwdAge", 0));
	p->lockout_window = directory_interval_to_seconds(
	    directory_attr_int(ld, e, "lockOutObservationWindow", 0));
	job->r.count++;
	return 0;
}

/* Find the domain object through the rootDSE and read its policy. */
static void
directory_run_policy(struct directory_job *job, LDAP *ld)
{
	char *root_attrs[] = { (char *)"defaultNamingContext", NULL };
	char *attrs[] = { (char *)"minPwdLength", (char *)"pwdHistoryLength",
		(char *)"pwdProperties", (char *)"maxPwdAge",
		(char *)"minPwdAge", (char *)"lockoutThreshold",
		(char *)"lockoutDuration", (char *)"lockOutObservationWindow",
		NULL };

	if (directory_search(job, ld, "", LDAP_SCOPE_BASE, "(objectClass=*)",
	        root_attrs, false, directory_rootdse_cb) != 0)
		return;
	if (job->domain_dn == NULL) {
		directory_fail(job, DIRECTORY_FAILED,
		    "the rootDSE names no defaultNamingContext");
		return;
	}
	if (directory_search(job, ld, job->domain_dn, LDAP_SCOPE_BASE,
	        "(objectClass=*)", attrs, false, directory_policy_cb) != 0)
		return;
	if (job->r.count != 1)
		directory_fail(job, DIRECTORY_FAILED,
		    "cannot read the domain object %s", job->domain_dn);
	job->r.count = 0;
}

/* Bind as the located user with the given password. */
static void
directory_run_check(struct directory_job *job, LDAP *ld)
{
	if (directory_locate(job, ld) != 0)
		return;
	directory_bind(
	    job, ld, job->users[0].dn, job->password, "bind as the user");
}

/* The worker's part: connect, run the operation, close. */
static void
directory_run_cb(void *arg)
{
	struct directory_job *job = arg;
	LDAP *ld;

	/* Refuse an empty password before any bad attempt can count. */
	if (job->op == DIRECTORY_OP_CHECK && job->password[0] == '\0') {
		directory_fail(job, DIRECTORY_BAD_CREDENTIALS,
		    "an empty password is refused");
		return;
	}

	ld = directory_connect(job);
	if (ld == NULL)
		return;

	switch (job->op) {
	case DIRECTORY_OP_TEST:
		directory_run_test(job, ld);
		break;
	case DIRECTORY_OP_SEARCH:
		directory_run_search(job, ld);
		break;
	case DIRECTORY_OP_FIND:
		directory_locate(job, ld);
		break;
	case DIRECTORY_OP_RESET:
		directory_run_reset(job, ld);
		break;
	case DIRECTORY_OP_UNLOCK:
		directory_run_unlock(job, ld);
		break;
	case DIRECTORY_OP_POLICY:
		directory_run_policy(job, ld);
		break;
	case DIRECTORY_OP_CHECK:
		directory_run_check(job, ld);
		break;
	}
	ldap_unbind_ext_s(ld, NULL, NULL);
	directory_watch_disarm(job);
}

/*
 * Loop side: submission, completion and freeing.
 */

/* Free a string after wiping it. */
static void
directory_wipe_free(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* Free a job, its copies and its results. */
static void
directory_job_free(struct directory_job *job)
{
	size_t i;

	if (job == NULL)
		return;
	for (i = 0; i < job->r.nusers; i++) {
		free(job->users[i].dn);
		free(job->users[i].login);
		free(job->users[i].display_name);
		free(job->users[i].mail);
		free(job->users[i].mobile);
	}
	free(job->users);
	free(job->domain_dn);
	free((char *)job->s.url);
	free((char *)job->s.bind_dn);
	directory_wipe_free((char *)job->s.bind_password);
	free((char *)job->s.base_dn);
	free((char *)job->s.ca_file);
	free(job->login);
	directory_wipe_free(job->password);
	free(job);
}

/* Log the outcome once, then hand it to the caller and free the job. */
static void
directory_done_cb(void *arg, bool cancelled)
{
	struct directory_job *job = arg;
	char object[96];

	if (cancelled)
		directory_fail(job, DIRECTORY_FAILED,
		    "cancelled: the worker pool stopped");
	job->r.detail = job->detail;
	job->r.users = job->users;
	job->r.elapsed_ms = util_now_ms() - job->submitted_ms;

	snprintf(object, sizeof(object), "directory %s", job->s.url);
	if (job->r.status == DIRECTORY_UNREACHABLE ||
	    job->r.status == DIRECTORY_FAILED)
		log_warn(object, "%s %s: %s (%llu ms)",
		    directory_op_names[job->op],
		    job->login != NULL ? job->login : "-", job->detail,
		    (unsigned long long)job->r.elapsed_ms);
	else
		log_debug(object, "%s %s: %s (%llu ms)",
		    directory_op_names[job->op],
		    job->login != NULL ? job->login : "-",
		    directory_status_name(job->r.status),
		    (unsigned long long)job->r.elapsed_ms);

	job->done(&job->r, job->arg);
	directory_job_free(job);
}

/* Copy a string that may be NULL; returns -1 when the copy fails. */
static int
directory_dup(const char *in, const char **out)
{
	*out = NULL;
	if (in == NULL)
		return 0;
	*out = strdup(in);
	return *out == NULL ? -1 : 0;
}

/* A job with copies of the settings and defaults filled in, or NULL. */
static struct directory_job *
directory_job_new(enum directory_op op, const struct directory_settings *s,
    const char *login, const char *password)
{
	struct directory_job *job;
	int err = 0;

	job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	job->op = op;
	job->s = *s;
	err |= directory_dup(s->url, &job->s.url);
	err |= directory_dup(s->bind_dn, &job->s.bind_dn);
	err |= directory_dup(s->bind_password, &job->s.bind_password);
	err |= directory_dup(
	    s->base_dn != NULL ? s->base_dn : "", &job->s.base_dn);
	err |= directory_dup(s->ca_file, &job->s.ca_file);
	err |= directory_dup(login, (const char **)&job->login);
	err |= directory_dup(password, (const char **)&job->password);
	if (err != 0) {
		directory_job_free(job);
		return NULL;
	}

	if (job->s.connect_timeout_ms <= 0)
		job->s.connect_timeout_ms = DIRECTORY_CONNECT_TIMEOUT_MS;
	if (job->s.timeout_ms <= 0)
		job->s.timeout_ms = DIRECTORY_TIMEOUT_MS;
	if (job->s.page_size <= 0)
		job->s.page_size = DIRECTORY_PAGE_SIZE;
	if (job->s.max_users == 0)
		job->s.max_users = DIRECTORY_MAX_USERS;
	return job;
}

/* Queue a job on the pool; frees it when it cannot be queued. */
static int
directory_submit(struct workers *w, struct directory_job *job,
    directory_done_fn *done, void *arg)
{
	if (job == NULL)
		return -1;
	job->done = done;
	job->arg = arg;
	job->submitted_ms = util_now_ms();
	if (workers_submit(w, directory_run_cb, directory_done_cb, job) != 0) {
		directory_job_free(job);
		return -1;
	}
	return 0;
}

/* Bind as the service account and count users. */
int
directory_test(struct workers *w, const struct directory_settings *s,
    directory_done_fn *done, void *arg)
{
	return directory_submit(
	    w, directory_job_new(DIRECTORY_OP_TEST, s, NULL, NULL), done, arg);
}

/* Read users, all or changed since a USN. */
int
directory_search_users(struct workers *w, const struct directory_settings *s,
    int64_t since_usn, directory_done_fn *done, void *arg)
{
	struct directory_job *job;

	job = directory_job_new(DIRECTORY_OP_SEARCH, s, NULL, NULL);
	if (job != NULL)
		job->since_usn = since_usn;
	return directory_submit(w, job, done, arg);
}

/* Read one user by login. */
int
directory_find_user(struct workers *w, const struct directory_settings *s,
    const char *login, directory_done_fn *done, void *arg)
{
	return directory_submit(
	    w, directory_job_new(DIRECTORY_OP_FIND, s, login, NULL), done, arg);
}

/* Set a user's password as an administrator. */
int
directory_reset_password(struct workers *w, const struct directory_settings *s,
    const char *login, const char *new_password, directory_done_fn *done,
    void *arg)
{
	return directory_submit(w,
	    directory_job_new(DIRECTORY_OP_RESET, s, login,
	        new_password != NULL ? new_password : ""),
	    done, arg);
}

/* Clear a user's lockout. */
int
directory_unlock(struct workers *w, const struct directory_settings *s,
    const char *login, directory_done_fn *done, void *arg)
{
	return directory_submit(w,
	    directory_job_new(DIRECTORY_OP_UNLOCK, s, login, NULL), done, arg);
}

/* Read the domain's password policy. */
int
directory_read_policy(struct workers *w, const struct directory_settings *s,
    directory_done_fn *done, void *arg)
{
	return directory_submit(w,
	    directory_job_new(DIRECTORY_OP_POLICY, s, NULL, NULL), done, arg);
}

/* Check a user's password by binding as the user. */
int
directory_check_password(struct workers *w, const struct directory_settings *s,
    const char *login, const char *password, directory_done_fn *done, void *arg)
{
	return directory_submit(w,
	    directory_job_new(
	        DIRECTORY_OP_CHECK, s, login, password != NULL ? password : ""),
	    done, arg);
}
