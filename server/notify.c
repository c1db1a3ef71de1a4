/*
 * Email over SMTP and SMS over a Twilio-style REST API, both as libcurl
 * transfers. It builds the messages, hands them to the provider and
 * reports one outcome per send on the loop; it keeps no queue of its own
 * and never retries by itself. HTTP runs on the loop through the multi
 * socket interface; SMTP runs on a thread of its own (see notify_mailer).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conf.h"
#include "log.h"
#include "notify.h"
#include "util.h"

#define NOTIFY_CONNECT_TIMEOUT_MS 10000L
#define NOTIFY_TOTAL_TIMEOUT_MS 30000L
#define NOTIFY_HOST_CONNECTIONS 8L
#define NOTIFY_SUBJECT_MAX 250           /* characters */
#define NOTIFY_MAIL_TEXT_MAX (64 * 1024) /* characters */
#define NOTIFY_SMS_TEXT_MAX 1600         /* characters, as Twilio counts */
#define NOTIFY_REPLY_MAX (16 * 1024)     /* bytes of an API reply kept */
#define NOTIFY_WORD_BYTES 45             /* encoded-word payload: 60 base64 */
#define NOTIFY_QP_LINE 75                /* characters before a soft break */
#define NOTIFY_DETAIL_LEN 160

static const char *const notify_objects[NOTIFY_CHANNELS] = { "notify email",
	"notify sms" };
static const char *const notify_channel_names[NOTIFY_CHANNELS] = { "email",
	"sms" };
static const char *const notify_outcome_names[NOTIFY_OUTCOMES] = { "sent",
	"retry", "failed", "unconfigured" };

/* What is wrong with a piece of text, if anything. */
enum notify_text {
	NOTIFY_TEXT_OK = 0,
	NOTIFY_TEXT_NEWLINE,
	NOTIFY_TEXT_CONTROL,
	NOTIFY_TEXT_UTF8,
	NOTIFY_TEXT_LENGTH,
};

static const char *const notify_subject_causes[] = {
	NULL,
	"subject holds a line break",
	"subject holds a control character",
	"subject is not UTF-8",
	"subject is too long",
};
static const char *const notify_mail_text_causes[] = {
	NULL,
	NULL,
	"text holds a control character",
	"text is not UTF-8",
	"text is too long",
};
static const char *const notify_sms_text_causes[] = {
	NULL,
	NULL,
	"text holds a control character",
	"text is not UTF-8",
	"text must have 1 to 1600 characters",
};

/* A socket curl asked us to watch: one persistent event. */
struct notify_sock {
	TAILQ_ENTRY(notify_sock) entry;
	struct event *ev;
	short what;
};

/*
 * One email or SMS, from submission until its callback returns. While an
 * email is with the mail thread, only that thread touches its transfer
 * and outcome fields; the mutex hands it over in both directions.
 */
struct notify_send {
	TAILQ_ENTRY(notify_send) entry; /* on notify.sends, loop only */
	TAILQ_ENTRY(notify_send) lane;  /* on one of notify_mailer's lists */
	struct notify *n;
	enum notify_channel channel;
	notify_done_cb done;
	void *arg;

	CURL *easy;        /* NULL until handed to curl */
	bool in_flight;    /* counted in notify.in_flight */
	bool abort;        /* mail thread: end it, shutting down */
	struct event *now; /* completes a send that never left */
	struct curl_slist *rcpt;
	char *payload; /* the message or the form */
	size_t payload_len;
	size_t payload_off;
	struct evbuffer *reply; /* SMS API answer, capped */
	uint64_t started_ms;

	enum notify_outcome outcome;
	long retry_after;
	long status;
	char who[40]; /* "*@example.com" or "*1234" */
	char detail[NOTIFY_DETAIL_LEN];
	char id[72];
	char errbuf[CURL_ERROR_SIZE];
};

TAILQ_HEAD(notify_sends, notify_send);
TAILQ_HEAD(notify_socks, notify_sock);

/*
 * The SMTP side. libcurl's SMTP code waits for the server's reply to the
 * end of a message, and to QUIT, inside the multi handle: on the loop
 * that would stall every other event for as long as a slow server takes.
 * So SMTP transfers run on a thread with a multi handle of its own, driven
 * by curl_multi_poll. Sends go over on the incoming list (then a
 * curl_multi_wakeup) and come back on the finished list (then a byte on
 * the pipe the loop watches); the loop alone runs callbacks.
 *
 * Removing a live SMTP transfer from a multi handle makes libcurl end the
 * message (sending the end-of-data marker, so a server could take a
 * partial message) and wait for the reply. So the thread stops transfers
 * through their progress callback instead, which fails them the usual way.
 */
struct notify_mailer {
	CURLM *multi;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	bool stop;                    /* under lock */
	struct notify_sends incoming; /* under lock, loop to thread */
	struct notify_sends finished; /* under lock, thread to loop */
	int wake[2];                  /* thread to loop */
	struct event *wake_ev;
};

struct notify {
	struct event_base *base;
	CURLM *multi;                 /* HTTP transfers, on the loop */
	struct notify_mailer *mailer; /* NULL when email is off */
	struct event *timer;
	bool curl_ready;
	bool closing;
	long connect_ms;
	long total_ms;

	bool email_on;
	char *smtp_url;
	long use_ssl;
	char *from;      /* as configured, for the From header */
	char *mail_from; /* "<addr>" for MAIL FROM */
	char *username;
	char *password;
	char *email_ca;

	bool sms_on;
	char *sms_url; /* .../Accounts/{sid}/Messages.json */
	const char *sms_protocols;
	char *sid;
	char *token;
	char *sms_from;
	char *sms_ca;
	struct curl_slist *sms_headers;

	struct notify_sends sends;
	struct notify_socks socks;
	uint64_t counts[NOTIFY_CHANNELS][NOTIFY_OUTCOMES];
	unsigned long in_flight[NOTIFY_CHANNELS];
};

/* ----- text checks ----- */

/* Decode the UTF-8 character at *pp and step past it; -1 when malformed. */
static long
notify_utf8_next(const unsigned char **pp)
{
	const unsigned char *p = *pp;
	uint32_t cp, min;
	int extra;

	if (*p < 0x80) {
		*pp = p + 1;
		return *p;
	}
	if ((*p & 0xe0) == 0xc0) {
		extra = 1, cp = *p & 0x1f, min = 0x80;
	} else if ((*p & 0xf0) == 0xe0) {
		extra = 2, cp = *p & 0x0f, min = 0x800;
	} else if ((*p & 0xf8) == 0xf0) {
		extra = 3, cp = *p & 0x07, min = 0x10000;
	} else {
		return -1;
	}

	for (p++; extra > 0; extra--, p++) {
		if ((*p & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (*p & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*pp = p;
	return (long)cp;
}

/*
 * Check text: UTF-8, no control characters (tab, CR and LF allowed when
 * lines is set) and min to max characters.
 */
static enum notify_text
notify_text_check(const char *text, bool lines, size_t min, size_t max)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t count = 0;
	long cp;

	while (*p != '\0') {
		cp = notify_utf8_next(&p);
		if (cp < 0)
			return NOTIFY_TEXT_UTF8;
		if ((cp == '\r' || cp == '\n') && !lines)
			return NOTIFY_TEXT_NEWLINE;
		if ((cp < 0x20 &&
		        !(lines && (cp == '\t' || cp == '\r' || cp == '\n'))) ||
		    (cp >= 0x7f && cp < 0xa0))
			return NOTIFY_TEXT_CONTROL;
		count++;
	}
	if (count < min || count > max)
		return NOTIFY_TEXT_LENGTH;
	return NOTIFY_TEXT_OK;
}

/* True for ASCII letters and digits, whatever the locale. */
static bool
notify_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* True when s[0..len) is dot-separated runs of the allowed characters. */
static bool
notify_dot_atoms(const char *s, size_t len, const char *extra)
{
	size_t i;

	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
		if (!notify_alnum(s[i]) && s[i] != '.' &&
		    strchr(extra, s[i]) == NULL)
			return false;
	}
	return true;
}

/* True for an ASCII addr-spec without quotes, comments or controls. */
bool
notify_mail_addr_valid(const char *addr)
{
	static const char local_extra[] = "!#$%&'*+-/=?^_`{|}~";
	const char *at;
	size_t len, local;

	if (addr == NULL)
		return false;
	len = strlen(addr);
	at = strchr(addr, '@');
	if (len > 254 || at == NULL || at - addr > 64)
		return false;

	local = (size_t)(at - addr);
	return notify_dot_atoms(addr, local, local_extra) &&
	    notify_dot_atoms(at + 1, len - local - 1, "-");
}

/* A copy of s[0..len) without blanks at either end. */
static char *
notify_strip(const char *s, size_t len)
{
	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return strndup(s, len);
}

/* Drop the double quotes around a display name, if it has them. */
static void
notify_unquote(char *name)
{
	size_t len = strlen(name);

	if (len >= 2 && name[0] == '"' && name[len - 1] == '"') {
		memmove(name, name + 1, len - 2);
		name[len - 2] = '\0';
	}
}

/* Split "Name <a@b>" or "a@b" into a display name and an address. */
int
notify_mail_parse_from(const char *from, char **name, char **addr)
{
	const char *lt = strchr(from, '<'), *gt = strrchr(from, '>');

	*name = *addr = NULL;
	if (lt == NULL && gt == NULL) {
		*addr = notify_strip(from, strlen(from));
	} else if (lt != NULL && gt > lt &&
	    strspn(gt + 1, " \t") == strlen(gt + 1)) {
		*addr = strndup(lt + 1, (size_t)(gt - lt - 1));
		*name = notify_strip(from, (size_t)(lt - from));
	} else {
		return -1;
	}

	if (*name != NULL) {
		notify_unquote(*name);
		if ((*name)[0] == '\0') {
			free(*name);
			*name = NULL;
		}
	}
	if ((*name != NULL &&
	        (strpbrk(*name, "<>\"\\") != NULL ||
	            notify_text_check(*name, false, 1, 100) !=
	                NOTIFY_TEXT_OK)) ||
	    !notify_mail_addr_valid(*addr)) {
		free(*name);
		free(*addr);
		*name = *addr = NULL;
		return -1;
	}
	return 0;
}

/* ----- message building ----- */

/* Append text as RFC 2047 encoded-words, folded between words. */
void
notify_encode_words(struct evbuffer *out, const char *text)
{
	const unsigned char *p = (const unsigned char *)text, *start, *next;
	unsigned char b64[4 * NOTIFY_WORD_BYTES / 3 + 4];
	bool first = true;

	while (*p != '\0') {
		start = p;
		while (*p != '\0') {
			next = p;
			if (notify_utf8_next(&next) < 0)
				next = p + 1;
			if (next - start > NOTIFY_WORD_BYTES)
				break;
			p = next;
		}

		EVP_EncodeBlock(b64, start, (int)(p - start));
		evbuffer_add_printf(out,
		    "%s=?UTF-8?B?%s?=", first ? "" : "\r\n ",
		    (const char *)b64);
		first = false;
	}
}

/* True when the characters up to the next line end are all blanks. */
static bool
notify_qp_blank_to_eol(const unsigned char *p)
{
	for (; *p == ' ' || *p == '\t'; p++)
		continue;
	return *p == '\0' || *p == '\n' || (p[0] == '\r' && p[1] == '\n');
}

/* Append text in quoted-printable, line ends made CRLF. */
void
notify_qp_encode(struct evbuffer *out, const char *text)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)text;
	char token[3];
	size_t col = 0, len;

	for (; *p != '\0'; p++) {
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n') {
			evbuffer_add(out, "\r\n", 2);
			col = 0;
			continue;
		}

		if ((*p >= 33 && *p <= 126 && *p != '=') ||
		    ((*p == ' ' || *p == '\t') && !notify_qp_blank_to_eol(p))) {
			token[0] = (char)*p;
			len = 1;
		} else {
			token[0] = '=';
			token[1] = hex[*p >> 4];
			token[2] = hex[*p & 15];
			len = 3;
		}
		if (col + len > NOTIFY_QP_LINE) {
			evbuffer_add(out, "=\r\n", 3);
			col = 0;
		}
		evbuffer_add(out, token, len);
		col += len;
	}
}

/* Write an RFC 5322 date in UTC with English names, whatever the locale. */
void
notify_mail_date(time_t t, char out[32])
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	/* Outside years 1970 to 9999 the date would not fit the format. */
	if (t < 0 || t > (time_t)253402300799LL || gmtime_r(&t, &tm) == NULL) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(out, 32, "%s, %02u %s %04u %02u:%02u:%02u +0000",
	    days[(unsigned)tm.tm_wday % 7], (unsigned)tm.tm_mday % 100,
	    months[(unsigned)tm.tm_mon % 12],
	    (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)tm.tm_hour % 100,
	    (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
}

/* Append the From header: a quoted or encoded display name and the address. */
static void
notify_mail_from_header(
    struct evbuffer *out, const char *name, const char *addr)
{
	const char *p;

	if (name == NULL)
		name = "vouch";
	evbuffer_add_printf(out, "From: ");
	for (p = name; *p != '\0' && (unsigned char)*p < 0x80; p++)
		continue;
	if (*p != '\0')
		notify_encode_words(out, name);
	else
		evbuffer_add_printf(out, "\"%s\"", name);
	evbuffer_add_printf(out, " <%s>\r\n", addr);
}

/* Append the Subject header, encoded when it is not plain ASCII. */
static void
notify_mail_subject_header(struct evbuffer *out, const char *subject)
{
	const char *p;

	for (p = subject; *p != '\0' && (unsigned char)*p < 0x80; p++)
		continue;
	evbuffer_add_printf(out, "Subject: ");
	if (*p != '\0' || strstr(subject, "=?") != NULL)
		notify_encode_words(out, subject);
	else
		evbuffer_add(out, subject, strlen(subject));
	evbuffer_add(out, "\r\n", 2);
}

/* Check the fields of a message; NULL when they will do, else why not. */
static const char *
notify_mail_check(const struct notify_mail *m)
{
	enum notify_text t;
	const char *p;

	if (m->to == NULL || strpbrk(m->to, "\r\n") != NULL ||
	    !notify_mail_addr_valid(m->to))
		return "recipient address is not acceptable";
	if (m->subject == NULL || m->text == NULL)
		return "subject and text are required";
	t = notify_text_check(m->subject, false, 0, NOTIFY_SUBJECT_MAX);
	if (t != NOTIFY_TEXT_OK)
		return notify_subject_causes[t];
	t = notify_text_check(m->text, true, 0, NOTIFY_MAIL_TEXT_MAX);
	if (t != NOTIFY_TEXT_OK)
		return notify_mail_text_causes[t];

	for (p = m->message_id; p != NULL && notify_alnum(*p); p++)
		continue;
	if (p == NULL || p == m->message_id || *p != '\0')
		return "message id is malformed";
	return NULL;
}

/* Copy the whole of b into a NUL-terminated malloc'd string. */
static char *
notify_buffer_string(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s;

	s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	evbuffer_copyout(b, s, len);
	s[len] = '\0';
	return s;
}

/* Build the whole RFC 5322 message with CRLF line ends. */
char *
notify_mail_build(const struct notify_mail *m, const char **cause)
{
	struct evbuffer *b = NULL;
	char *name = NULL, *addr = NULL, *msg = NULL, date[32];

	*cause = notify_mail_check(m);
	if (*cause != NULL)
		return NULL;
	if (m->from == NULL ||
	    notify_mail_parse_from(m->from, &name, &addr) < 0) {
		*cause = "sender address is malformed";
		return NULL;
	}
	b = evbuffer_new();
	if (b == NULL) {
		*cause = "out of memory";
		goto out;
	}

	notify_mail_date(m->date, date);
	notify_mail_from_header(b, name, addr);
	evbuffer_add_printf(b, "To: <%s>\r\n", m->to);
	notify_mail_subject_header(b, m->subject);
	evbuffer_add_printf(b, "Date: %s\r\n", date);
	evbuffer_add_printf(
	    b, "Message-ID: <%s@%s>\r\n", m->message_id, strchr(addr, '@') + 1);
	evbuffer_add_printf(b,
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "Auto-Submitted: auto-generated\r\n\r\n");

	notify_qp_encode(b, m->text);
	if (m->text[0] != '\0' && m->text[strlen(m->text) - 1] != '\n')
		evbuffer_add(b, "\r\n", 2);
	msg = notify_buffer_string(b);
	if (msg == NULL)
		*cause = "out of memory";
out:
	evbuffer_free(b);
	free(name);
	free(addr);
	return msg;
}

/* Append one form-encoded name or value. */
static void
notify_form_escape(struct evbuffer *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char esc[3] = { '%', 0, 0 };

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (notify_alnum((char)*p) || strchr("-._~", *p) != NULL) {
			evbuffer_add(out, p, 1);
		} else if (*p == ' ') {
			evbuffer_add(out, "+", 1);
		} else {
			esc[1] = hex[*p >> 4];
			esc[2] = hex[*p & 15];
			evbuffer_add(out, esc, 3);
		}
	}
}

/* Append key=value URL-form-encoded, after "&" unless it is the first. */
void
notify_form_append(struct evbuffer *out, const char *key, const char *value)
{
	if (evbuffer_get_length(out) > 0)
		evbuffer_add(out, "&", 1);
	notify_form_escape(out, key);
	evbuffer_add(out, "=", 1);
	notify_form_escape(out, value);
}

/* ----- outcomes ----- */

/* "sent", "retry", "failed" or "unconfigured". */
const char *
notify_outcome_name(enum notify_outcome outcome)
{
	if ((unsigned)outcome >= NOTIFY_OUTCOMES)
		return "unknown";
	return notify_outcome_names[outcome];
}

/* True for a plausible message sid: 2 to 64 letters and digits. */
static bool
notify_sid_valid(const char *s)
{
	size_t i;

	for (i = 0; notify_alnum(s[i]); i++)
		continue;
	return s[i] == '\0' && i >= 2 && i <= 64;
}

/* Read the Twilio error code and message sid out of a reply body. */
static void
notify_sms_reply_fields(const char *body, long *code, char *id, size_t id_len)
{
	json_t *j, *v;

	*code = 0;
	if (body == NULL || (j = json_loads(body, 0, NULL)) == NULL)
		return;
	v = json_object_get(j, "code");
	if (json_is_integer(v))
		*code = (long)json_integer_value(v);
	v = json_object_get(j, "sid");
	if (json_is_string(v) && notify_sid_valid(json_string_value(v)))
		snprintf(id, id_len, "%s", json_string_value(v));
	json_decref(j);
}

/* Decide the outcome of a Twilio-style reply. */
enum notify_outcome
notify_sms_classify(long status, const char *body, long retry_after,
    char *detail, size_t detail_len, char *id, size_t id_len)
{
	char code_text[40] = "", wait[40] = "";
	long code;

	id[0] = '\0';
	notify_sms_reply_fields(body, &code, id, id_len);
	if (code != 0)
		snprintf(code_text, sizeof(code_text), ", code %ld", code);
	if (retry_after >= 0)
		snprintf(
		    wait, sizeof(wait), ", retry after %ld s", retry_after);

	if (status == 200 || status == 201) {
		snprintf(detail, detail_len, "accepted (http %ld)", status);
		return NOTIFY_SENT;
	}
	if (status == 408 || status == 429 ||
	    (status >= 500 && status <= 599)) {
		snprintf(detail, detail_len, "sms api busy (http %ld%s%s)",
		    status, code_text, wait);
		return NOTIFY_RETRY;
	}
	if (status == 401 || status == 403) {
		snprintf(detail, detail_len,
		    "sms api refused the credentials "
		    "(http %ld%s)",
		    status, code_text);
		return NOTIFY_FAILED;
	}
	if (status >= 400 && status <= 499) {
		snprintf(detail, detail_len,
		    "sms api rejected the message "
		    "(http %ld%s)",
		    status, code_text);
		return NOTIFY_FAILED;
	}
	snprintf(
	    detail, detail_len, "unexpected http %ld from the sms api", status);
	return NOTIFY_FAILED;
}

/*
 * The outcome of a curl failure that says nothing about the message:
 * the configuration or the peer's certificate is wrong (failed, with an
 * operator to call) or the network let us down (retry).
 */
static enum notify_outcome
notify_curl_classify(
    int code, const char *errtext, char *detail, size_t detail_len)
{
	const char *what =
	    errtext[0] != '\0' ? errtext : curl_easy_strerror((CURLcode)code);

	switch (code) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		snprintf(detail, detail_len, "tls: %.120s", what);
		return NOTIFY_FAILED;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_NOT_BUILT_IN:
	case CURLE_LOGIN_DENIED:
	case CURLE_USE_SSL_FAILED:
		snprintf(detail, detail_len, "%.120s", what);
		return NOTIFY_FAILED;
	default:
		snprintf(detail, detail_len, "%.120s", what);
		return NOTIFY_RETRY;
	}
}

/* Decide the outcome of a finished SMTP transfer. */
enum notify_outcome
notify_email_classify(int curl_code, long smtp_code, const char *errtext,
    char *detail, size_t detail_len)
{
	const char *what = errtext[0] != '\0'
	    ? errtext
	    : curl_easy_strerror((CURLcode)curl_code);

	if (curl_code == CURLE_OK) {
		snprintf(detail, detail_len, "accepted (smtp %ld)", smtp_code);
		return NOTIFY_SENT;
	}
	if (curl_code == CURLE_USE_SSL_FAILED) {
		snprintf(detail, detail_len, "smtp server offers no STARTTLS");
		return NOTIFY_FAILED;
	}
	if (curl_code == CURLE_LOGIN_DENIED) {
		snprintf(detail, detail_len, "smtp login refused (smtp %ld)",
		    smtp_code);
		return NOTIFY_FAILED;
	}
	if (smtp_code >= 500 && smtp_code <= 599 &&
	    curl_code != CURLE_OPERATION_TIMEDOUT) {
		snprintf(
		    detail, detail_len, "smtp %ld: %.120s", smtp_code, what);
		return NOTIFY_FAILED;
	}
	if (smtp_code >= 400 && smtp_code <= 499) {
		snprintf(
		    detail, detail_len, "smtp %ld: %.120s", smtp_code, what);
		return NOTIFY_RETRY;
	}
	return notify_curl_classify(curl_code, errtext, detail, detail_len);
}

/* ----- sends ----- */

/* Release a send; its callback has run or never will. */
static void
notify_send_free(struct notify_send *s)
{
	if (s == NULL)
		return;
	if (s->now != NULL)
		event_free(s->now);
	if (s->payload != NULL) {
		OPENSSL_cleanse(s->payload, s->payload_len);
		free(s->payload);
	}
	curl_slist_free_all(s->rcpt);
	if (s->reply != NULL)
		evbuffer_free(s->reply);
	free(s);
}

/* Log how a send ended: never the text, only the tail of the address. */
static void
notify_log_result(const struct notify_send *s)
{
	const char *obj = notify_objects[s->channel];
	unsigned long long ms = util_now_ms() - s->started_ms;

	switch (s->outcome) {
	case NOTIFY_SENT:
		log_info(obj, "sent to %s in %llu ms%s%s", s->who, ms,
		    s->id[0] != '\0' ? ", sid " : "", s->id);
		break;
	case NOTIFY_RETRY:
		log_warn(obj, "send to %s deferred after %llu ms: %s", s->who,
		    ms, s->detail);
		break;
	case NOTIFY_FAILED:
		log_warn(obj, "send to %s failed after %llu ms: %s", s->who, ms,
		    s->detail);
		break;
	default:
		log_warn(obj, "send to %s refused: %s", s->who, s->detail);
		break;
	}
}

/* Take the send off every list, count it, tell its owner and free it. */
static void
notify_complete(struct notify_send *s)
{
	struct notify *n = s->n;
	struct notify_result res;

	TAILQ_REMOVE(&n->sends, s, entry);
	if (s->easy != NULL) {
		curl_multi_remove_handle(n->multi, s->easy);
		curl_easy_cleanup(s->easy);
		s->easy = NULL;
	}
	if (s->in_flight)
		n->in_flight[s->channel]--;
	n->counts[s->channel][s->outcome]++;
	notify_log_result(s);

	memset(&res, 0, sizeof(res));
	res.outcome = s->outcome;
	res.channel = s->channel;
	res.detail = s->detail;
	res.retry_after = s->retry_after;
	res.status = s->status;
	res.provider_id = s->id[0] != '\0' ? s->id : NULL;
	if (s->done != NULL)
		s->done(&res, s->arg);
	notify_send_free(s);
}

/* A send that never reached curl completes here, on a later loop turn. */
static void
notify_now_cb(evutil_socket_t fd, short what, void *arg)
{
	notify_complete(arg);
}

/* Record the outcome of a send that ends before any transfer. */
static void
notify_finish_later(
    struct notify_send *s, enum notify_outcome outcome, const char *detail)
{
	s->outcome = outcome;
	snprintf(s->detail, sizeof(s->detail), "%s", detail);

	/* While closing, notify_free completes whatever is on the list. */
	if (!s->n->closing)
		event_active(s->now, EV_TIMEOUT, 1);
}

/* The "*@domain" or "*1234" form of an address, for logs. */
static void
notify_who(struct notify_send *s, const char *to)
{
	const char *at;
	size_t len;

	if (to == NULL)
		to = "";
	len = strlen(to);
	if (s->channel == NOTIFY_EMAIL) {
		at = strrchr(to, '@');
		snprintf(s->who, sizeof(s->who), "*%.*s",
		    (int)sizeof(s->who) - 2, at != NULL ? at : "");
	} else {
		snprintf(
		    s->who, sizeof(s->who), "*%s", len > 4 ? to + len - 4 : "");
	}
	if (strpbrk(s->who, "\r\n") != NULL)
		snprintf(s->who, sizeof(s->who), "*");
}

/* A new send on the list; it always ends through notify_complete. */
static struct notify_send *
notify_send_new(struct notify *n, enum notify_channel channel, const char *to,
    notify_done_cb done, void *arg)
{
	struct notify_send *s;

	s = calloc(1, sizeof(*s));
	if (s == NULL ||
	    (s->now = evtimer_new(n->base, notify_now_cb, s)) == NULL)
		fatal(notify_objects[channel], "out of memory");

	s->n = n;
	s->channel = channel;
	s->done = done;
	s->arg = arg;
	s->retry_after = -1;
	s->started_ms = util_now_ms();
	s->outcome = NOTIFY_FAILED;
	snprintf(s->detail, sizeof(s->detail), "shutting down");
	notify_who(s, to);
	TAILQ_INSERT_TAIL(&n->sends, s, entry);
	return s;
}

/* Feed the message to curl as it uploads it. */
static size_t
notify_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct notify_send *s = arg;
	size_t room = size * nitems, left = s->payload_len - s->payload_off;

	if (room > left)
		room = left;
	memcpy(buf, s->payload + s->payload_off, room);
	s->payload_off += room;
	return room;
}

/* Keep the first NOTIFY_REPLY_MAX bytes of an API reply. */
static size_t
notify_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct notify_send *s = arg;
	size_t len = size * nmemb;

	if (evbuffer_get_length(s->reply) + len <= NOTIFY_REPLY_MAX)
		evbuffer_add(s->reply, data, len);
	return len;
}

/* A new easy handle with what every transfer shares; NULL on failure. */
static CURL *
notify_easy_new(struct notify_send *s, const char *url, const char *protocols,
    const char *ca_file)
{
	struct notify *n = s->n;
	CURL *e;
	int bad = 0;

	e = curl_easy_init();
	if (e == NULL)
		return NULL;

	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, s) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
	bad |=
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, n->connect_ms) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, n->total_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION,
	           (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (ca_file != NULL)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, ca_file) != CURLE_OK;
	if (bad) {
		curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

/* The mail thread's way to end a live transfer: fail it from here. */
static int
notify_xfer_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
	struct notify_send *s = arg;

	return s->abort ? 1 : 0;
}

/* Set up the SMTP transfer of the built message. */
static int
notify_email_easy(struct notify_send *s, const char *to)
{
	struct notify *n = s->n;
	char rcpt[260];
	CURL *e;
	int bad = 0;

	snprintf(rcpt, sizeof(rcpt), "<%s>", to);
	s->rcpt = curl_slist_append(NULL, rcpt);
	e = notify_easy_new(s, n->smtp_url, "smtp,smtps", n->email_ca);
	if (s->rcpt == NULL || e == NULL)
		goto fail;

	bad |= curl_easy_setopt(e, CURLOPT_USE_SSL, n->use_ssl) != CURLE_OK;

	/*
	 * A connection per message: a cached one would be closed with a QUIT
	 * curl waits for under the defaults, not under these timeouts.
	 */
	bad |= curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT,
	           n->total_ms < 2000 ? 1L : n->total_ms / 1000) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_MAIL_FROM, n->mail_from) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_MAIL_RCPT, s->rcpt) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_READFUNCTION, notify_read_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_READDATA, s) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
	           (curl_off_t)s->payload_len) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, notify_xfer_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_XFERINFODATA, s) != CURLE_OK;
	if (n->username != NULL) {
		bad |= curl_easy_setopt(e, CURLOPT_USERNAME, n->username) !=
		    CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_PASSWORD, n->password) !=
		    CURLE_OK;
	}
	if (bad)
		goto fail;
	s->easy = e;
	return 0;

fail:
	curl_easy_cleanup(e);
	return -1;
}

/* Set up the POST of the form to the SMS API. */
static int
notify_sms_easy(struct notify_send *s)
{
	struct notify *n = s->n;
	CURL *e;
	int bad = 0;

	s->reply = evbuffer_new();
	e = notify_easy_new(s, n->sms_url, n->sms_protocols, n->sms_ca);
	if (s->reply == NULL || e == NULL)
		goto fail;

	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->payload) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
	           (curl_off_t)s->payload_len) != CURLE_OK;
	bad |=
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, n->sms_headers) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERNAME, n->sid) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PASSWORD, n->token) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "vouch") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, notify_write_cb) !=
	    CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK;
	if (bad)
		goto fail;
	s->easy = e;
	return 0;

fail:
	curl_easy_cleanup(e);
	return -1;
}

/* Hand a prepared HTTP transfer to the loop's multi handle. */
static void
notify_start(struct notify_send *s)
{
	struct notify *n = s->n;

	if (curl_multi_add_handle(n->multi, s->easy) != CURLM_OK) {
		curl_easy_cleanup(s->easy);
		s->easy = NULL;
		notify_finish_later(s, NOTIFY_RETRY, "cannot start a transfer");
		return;
	}
	s->in_flight = true;
	n->in_flight[s->channel]++;
}

/* Hand a prepared SMTP transfer to the mail thread. */
static void
notify_mailer_submit(struct notify *n, struct notify_send *s)
{
	struct notify_mailer *m = n->mailer;

	s->in_flight = true;
	n->in_flight[s->channel]++;
	pthread_mutex_lock(&m->lock);
	TAILQ_INSERT_TAIL(&m->incoming, s, lane);
	pthread_mutex_unlock(&m->lock);
	curl_multi_wakeup(m->multi);
}

/* Build a message and send it to one address. */
void
notify_email(struct notify *n, const char *to, const char *subject,
    const char *text, notify_done_cb done, void *arg)
{
	struct notify_send *s;
	struct notify_mail m;
	const char *cause;
	uint8_t rnd[16];
	char id[33];

	s = notify_send_new(n, NOTIFY_EMAIL, to, done, arg);
	if (n->closing)
		return;
	if (!n->email_on) {
		notify_finish_later(
		    s, NOTIFY_UNCONFIGURED, "email is not configured");
		return;
	}

	util_random(rnd, sizeof(rnd));
	util_hex(rnd, sizeof(rnd), id);
	memset(&m, 0, sizeof(m));
	m.from = n->from;
	m.to = to;
	m.subject = subject;
	m.text = text;
	m.date = time(NULL);
	m.message_id = id;
	s->payload = notify_mail_build(&m, &cause);
	if (s->payload == NULL) {
		notify_finish_later(s, NOTIFY_FAILED, cause);
		return;
	}
	s->payload_len = strlen(s->payload);

	if (notify_email_easy(s, to) < 0) {
		notify_finish_later(
		    s, NOTIFY_RETRY, "cannot set up a transfer");
		return;
	}
	notify_mailer_submit(n, s);
}

/* Build the form of an SMS; -1 with *cause when a field is refused. */
static int
notify_sms_form(
    struct notify_send *s, const char *to, const char *text, const char **cause)
{
	struct evbuffer *b;
	enum notify_text t;

	if (to == NULL || !util_e164_valid(to)) {
		*cause = "number is not in E.164 form";
		return -1;
	}
	t = text == NULL
	    ? NOTIFY_TEXT_LENGTH
	    : notify_text_check(text, true, 1, NOTIFY_SMS_TEXT_MAX);
	if (t != NOTIFY_TEXT_OK) {
		*cause = notify_sms_text_causes[t];
		return -1;
	}

	b = evbuffer_new();
	if (b == NULL) {
		*cause = "out of memory";
		return -1;
	}
	notify_form_append(b, "To", to);
	notify_form_append(b, "From", s->n->sms_from);
	notify_form_append(b, "Body", text);
	s->payload_len = evbuffer_get_length(b);
	s->payload = notify_buffer_string(b);
	evbuffer_free(b);
	if (s->payload == NULL) {
		*cause = "out of memory";
		return -1;
	}
	return 0;
}

/* Post one SMS to the API. */
void
notify_sms(struct notify *n, const char *to, const char *text,
    notify_done_cb done, void *arg)
{
	struct notify_send *s;
	const char *cause;

	s = notify_send_new(n, NOTIFY_SMS, to, done, arg);
	if (n->closing)
		return;
	if (!n->sms_on) {
		notify_finish_later(
		    s, NOTIFY_UNCONFIGURED, "sms is not configured");
		return;
	}
	if (notify_sms_form(s, to, text, &cause) < 0) {
		notify_finish_later(s, NOTIFY_FAILED, cause);
		return;
	}

	if (notify_sms_easy(s) < 0) {
		notify_finish_later(
		    s, NOTIFY_RETRY, "cannot set up a transfer");
		return;
	}
	notify_start(s);
}

/* Work out the outcome of a transfer curl has finished. */
static void
notify_judge(struct notify_send *s, CURLcode code)
{
	long status = 0;
	curl_off_t wait = 0;
	char *body;

	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	s->status = status;
	if (s->channel == NOTIFY_EMAIL) {
		s->outcome = notify_email_classify(
		    code, status, s->errbuf, s->detail, sizeof(s->detail));
		return;
	}

	if (code != CURLE_OK) {
		s->outcome = notify_curl_classify(
		    code, s->errbuf, s->detail, sizeof(s->detail));
		return;
	}
	if (curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &wait) != CURLE_OK)
		wait = 0;
	if (wait > 0)
		s->retry_after = wait > 86400 ? 86400 : (long)wait;
	evbuffer_add(s->reply, "", 1);
	body = (char *)evbuffer_pullup(s->reply, -1);
	s->outcome = notify_sms_classify(status, body, s->retry_after,
	    s->detail, sizeof(s->detail), s->id, sizeof(s->id));
}

/* Complete every transfer curl reports as done. */
static void
notify_check_done(struct notify *n)
{
	struct notify_send *s;
	CURLMsg *msg;
	CURLcode code;
	char *priv;
	int left;

	while ((msg = curl_multi_info_read(n->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		code = msg->data.result;
		priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		s = (struct notify_send *)priv;
		notify_judge(s, code);
		notify_complete(s);
	}
}

/* ----- the loop ----- */

/* A watched socket is ready: let curl move its transfers on. */
static void
notify_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(n->multi, fd, action, &running);
	notify_check_done(n);
}

/* curl's timer ran out: let it handle timeouts and new transfers. */
static void
notify_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	int running;

	curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	notify_check_done(n);
}

/* curl wants its timer moved; the timer runs curl later, never here. */
static int
notify_timer_set_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct notify *n = arg;
	struct timeval tv;

	if (timeout_ms < 0)
		return event_del(n->timer);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(n->timer, &tv);
}

/* Stop watching a socket and free its event. */
static void
notify_sock_free(struct notify *n, struct notify_sock *sk)
{
	TAILQ_REMOVE(&n->socks, sk, entry);
	event_free(sk->ev);
	free(sk);
}

/* curl wants a socket watched differently: one persistent event each. */
static int
notify_socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct notify *n = arg;
	struct notify_sock *sk = sockp;
	short flags = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (sk != NULL)
			notify_sock_free(n, sk);
		return 0;
	}
	if (what & CURL_POLL_IN)
		flags |= EV_READ;
	if (what & CURL_POLL_OUT)
		flags |= EV_WRITE;

	if (sk == NULL) {
		sk = calloc(1, sizeof(*sk));
		if (sk == NULL ||
		    (sk->ev = event_new(
		         n->base, fd, flags, notify_event_cb, n)) == NULL) {
			free(sk);
			return -1;
		}
		TAILQ_INSERT_TAIL(&n->socks, sk, entry);
		curl_multi_assign(n->multi, fd, sk);
	} else if (sk->what == flags) {
		return 0;
	} else {
		event_del(sk->ev);
		event_assign(sk->ev, n->base, fd, flags, notify_event_cb, n);
	}
	sk->what = flags;
	return event_add(sk->ev, NULL);
}

/* ----- the mail thread ----- */

/* Wake the loop: a byte on the pipe (a full pipe already means "wake"). */
static void
notify_mailer_signal(struct notify_mailer *m)
{
	ssize_t r;

	do {
		r = write(m->wake[1], "", 1);
	} while (r < 0 && errno == EINTR);
}

/* Thread side: release the transfer and give the send back to the loop. */
static void
notify_mailer_finish(struct notify_mailer *m, struct notify_send *s)
{
	if (s->easy != NULL) {
		curl_multi_remove_handle(m->multi, s->easy);
		curl_easy_cleanup(s->easy);
		s->easy = NULL;
	}
	pthread_mutex_lock(&m->lock);
	TAILQ_INSERT_TAIL(&m->finished, s, lane);
	pthread_mutex_unlock(&m->lock);
	notify_mailer_signal(m);
}

/*
 * Thread side: start the transfers of new sends and put them on active,
 * or give them straight back when told to stop. True when told to stop.
 */
static bool
notify_mailer_take(struct notify_mailer *m, struct notify_sends *active)
{
	struct notify_sends fresh;
	struct notify_send *s;
	bool stop;

	TAILQ_INIT(&fresh);
	pthread_mutex_lock(&m->lock);
	stop = m->stop;
	TAILQ_CONCAT(&fresh, &m->incoming, lane);
	pthread_mutex_unlock(&m->lock);

	while ((s = TAILQ_FIRST(&fresh)) != NULL) {
		TAILQ_REMOVE(&fresh, s, lane);
		if (stop) {
			s->outcome = NOTIFY_FAILED;
			snprintf(s->detail, sizeof(s->detail), "shutting down");
		} else if (curl_multi_add_handle(m->multi, s->easy) !=
		    CURLM_OK) {
			s->outcome = NOTIFY_RETRY;
			snprintf(s->detail, sizeof(s->detail),
			    "cannot start a transfer");
		} else {
			TAILQ_INSERT_TAIL(active, s, lane);
			continue;
		}
		notify_mailer_finish(m, s);
	}
	return stop;
}

/* Thread side: judge and give back every transfer curl has finished. */
static void
notify_mailer_reap(struct notify_mailer *m, struct notify_sends *active)
{
	struct notify_send *s;
	CURLMsg *msg;
	CURLcode code;
	char *priv;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		code = msg->data.result;
		priv = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		s = (struct notify_send *)priv;
		notify_judge(s, code);
		if (s->abort && code == CURLE_ABORTED_BY_CALLBACK) {
			s->outcome = NOTIFY_FAILED;
			snprintf(s->detail, sizeof(s->detail), "shutting down");
		}
		TAILQ_REMOVE(active, s, lane);
		notify_mailer_finish(m, s);
	}
}

/*
 * Thread side, when stopping: fail every live transfer through its
 * progress callback, give them a moment to wind down, then drop the rest.
 */
static void
notify_mailer_abort(struct notify_mailer *m, struct notify_sends *active)
{
	struct notify_send *s;
	int i, running;

	for (s = TAILQ_FIRST(active); s != NULL; s = TAILQ_NEXT(s, lane))
		s->abort = true;
	for (i = 0; i < 100 && !TAILQ_EMPTY(active); i++) {
		curl_multi_perform(m->multi, &running);
		notify_mailer_reap(m, active);
		if (!TAILQ_EMPTY(active))
			curl_multi_poll(m->multi, NULL, 0, 10, NULL);
	}

	while ((s = TAILQ_FIRST(active)) != NULL) {
		TAILQ_REMOVE(active, s, lane);
		s->outcome = NOTIFY_FAILED;
		snprintf(s->detail, sizeof(s->detail), "shutting down");
		notify_mailer_finish(m, s);
	}
}

/* The mail thread: run the transfers until told to stop, then end them. */
static void *
notify_mailer_main(void *arg)
{
	struct notify_mailer *m = arg;
	struct notify_sends active;
	int running;

	TAILQ_INIT(&active);
	while (!notify_mailer_take(m, &active)) {
		curl_multi_perform(m->multi, &running);
		notify_mailer_reap(m, &active);
		curl_multi_poll(m->multi, NULL, 0, 1000, NULL);
	}
	notify_mailer_abort(m, &active);
	return NULL;
}

/* Loop side: complete the sends the thread has given back. */
static void
notify_mailer_collect(struct notify *n)
{
	struct notify_mailer *m = n->mailer;
	struct notify_sends done;
	struct notify_send *s;

	TAILQ_INIT(&done);
	pthread_mutex_lock(&m->lock);
	TAILQ_CONCAT(&done, &m->finished, lane);
	pthread_mutex_unlock(&m->lock);

	while ((s = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, s, lane);
		notify_complete(s);
	}
}

/* The thread woke the loop: empty the pipe, then collect. */
static void
notify_mailer_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
	notify_mailer_collect(arg);
}

/* Start the thread with every signal blocked: they belong to the loop. */
static int
notify_mailer_spawn(struct notify_mailer *m)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&m->thread, NULL, notify_mailer_main, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -1;
	m->running = true;
	return 0;
}

/* Set up the mail thread, its multi handle and its wake-up pipe. */
static int
notify_mailer_start(struct notify *n, const char **cause)
{
	struct notify_mailer *m;

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		*cause = "out of memory";
		return -1;
	}
	m->wake[0] = m->wake[1] = -1;
	TAILQ_INIT(&m->incoming);
	TAILQ_INIT(&m->finished);
	pthread_mutex_init(&m->lock, NULL);
	n->mailer = m;

	if (pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		*cause = "cannot make a pipe for the mail thread";
		return -1;
	}
	m->multi = curl_multi_init();
	m->wake_ev = event_new(n->base, m->wake[0], EV_READ | EV_PERSIST,
	    notify_mailer_wake_cb, n);
	if (m->multi == NULL || m->wake_ev == NULL ||
	    event_add(m->wake_ev, NULL) < 0) {
		*cause = "out of memory";
		return -1;
	}
	curl_multi_setopt(
	    m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, NOTIFY_HOST_CONNECTIONS);
	if (notify_mailer_spawn(m) < 0) {
		*cause = "cannot start the mail thread";
		return -1;
	}
	return 0;
}

/*
 * Stop the mail thread (a transfer waiting in libcurl for the server's
 * last reply holds it up to the response timeout), complete what it gave
 * back and free it.
 */
static void
notify_mailer_stop(struct notify *n)
{
	struct notify_mailer *m = n->mailer;

	if (m == NULL)
		return;
	if (m->running) {
		pthread_mutex_lock(&m->lock);
		m->stop = true;
		pthread_mutex_unlock(&m->lock);
		curl_multi_wakeup(m->multi);
		pthread_join(m->thread, NULL);
		m->running = false;
		notify_mailer_collect(n);
	}

	if (m->multi != NULL)
		curl_multi_cleanup(m->multi);
	if (m->wake_ev != NULL)
		event_free(m->wake_ev);
	if (m->wake[0] >= 0)
		close(m->wake[0]);
	if (m->wake[1] >= 0)
		close(m->wake[1]);
	pthread_mutex_destroy(&m->lock);
	free(m);
	n->mailer = NULL;
}

/* ----- set-up ----- */

/* True when host is a literal IPv4 address in 127.0.0.0/8. */
static bool
notify_loopback(const char *host)
{
	struct in_addr a;

	return inet_pton(AF_INET, host, &a) == 1 &&
	    (ntohl(a.s_addr) >> 24) == 127;
}

/* Split url into its scheme and host; -1 when it is not a plain URL. */
static int
notify_url_split(const char *url, char **scheme, char **host)
{
	CURLU *u;
	char *query = NULL;
	int rc = -1;

	*scheme = *host = NULL;
	u = curl_url();
	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK)
		rc = 0;
out:
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

/* Read a secret file into *out, dropping a final line end. */
static int
notify_secret(const char *path, char **out, const char **cause)
{
	size_t len;

	if (conf_read_secret(path, out, &len, cause) < 0)
		return -1;
	while (len > 0 && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
		(*out)[--len] = '\0';
	if (len == 0 || strlen(*out) != len) {
		*cause = "is empty or holds a NUL byte";
		return -1;
	}
	return 0;
}

/* Check [email] and keep what the sends need. */
static int
notify_email_setup(
    struct notify *n, const struct conf *conf, const char **cause)
{
	char *scheme = NULL, *host = NULL, *name = NULL, *addr = NULL;
	int rc = -1;

	if (notify_url_split(conf->email_smtp_url, &scheme, &host) < 0) {
		*cause = "email.smtp_url is not a URL";
		goto out;
	}
	if (strcmp(scheme, "smtps") == 0 ||
	    (strcmp(scheme, "smtp") == 0 && !notify_loopback(host))) {
		n->use_ssl = (long)CURLUSESSL_ALL;
	} else if (strcmp(scheme, "smtp") == 0) {
		n->use_ssl = (long)CURLUSESSL_TRY;
	} else {
		*cause = "email.smtp_url must start with smtp:// or smtps://";
		goto out;
	}
	if (conf->email_from == NULL ||
	    notify_mail_parse_from(conf->email_from, &name, &addr) < 0) {
		*cause = "email.from must be an address or \"Name <address>\"";
		goto out;
	}
	if ((conf->email_username == NULL) !=
	    (conf->email_password_file == NULL)) {
		*cause = "email.username and email.password_file go together";
		goto out;
	}
	if (conf->email_password_file != NULL &&
	    notify_secret(conf->email_password_file, &n->password, cause) < 0) {
		log_error("notify email", "email.password_file %s", *cause);
		*cause = "email.password_file cannot be used";
		goto out;
	}

	n->smtp_url = strdup(conf->email_smtp_url);
	n->from = strdup(conf->email_from);
	if (asprintf(&n->mail_from, "<%s>", addr) < 0)
		n->mail_from = NULL;
	if (conf->email_username != NULL)
		n->username = strdup(conf->email_username);
	if (conf->email_ca_file != NULL)
		n->email_ca = strdup(conf->email_ca_file);
	if (n->smtp_url == NULL || n->from == NULL || n->mail_from == NULL ||
	    (conf->email_username != NULL && n->username == NULL) ||
	    (conf->email_ca_file != NULL && n->email_ca == NULL)) {
		*cause = "out of memory";
		goto out;
	}
	n->email_on = true;
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	free(name);
	free(addr);
	return rc;
}

/* True for a sender the API may accept: 1 to 64 printable ASCII. */
static bool
notify_sms_from_valid(const char *from)
{
	size_t i;

	for (i = 0; from[i] > ' ' && from[i] < 0x7f; i++)
		continue;
	return from[i] == '\0' && i >= 1 && i <= 64;
}

/* Check the base URL of the SMS API and build the Messages URL. */
static int
notify_sms_url(
    struct notify *n, const char *base, const char *sid, const char **cause)
{
	char *scheme = NULL, *host = NULL;
	size_t len = strlen(base);
	int rc = -1;

	if (notify_url_split(base, &scheme, &host) < 0) {
		*cause = "sms.api_base is not a URL";
		goto out;
	}
	if (strcmp(scheme, "https") == 0) {
		n->sms_protocols = "https";
	} else if (strcmp(scheme, "http") == 0 && notify_loopback(host)) {
		n->sms_protocols = "http";
	} else {
		*cause =
		    "sms.api_base must be https:// (http:// only to 127.x)";
		goto out;
	}

	while (len > 0 && base[len - 1] == '/')
		len--;
	if (asprintf(&n->sms_url, "%.*s/2010-04-01/Accounts/%s/Messages.json",
	        (int)len, base, sid) < 0) {
		n->sms_url = NULL;
		*cause = "out of memory";
		goto out;
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	return rc;
}

/* Check [sms] and keep what the sends need. */
static int
notify_sms_setup(struct notify *n, const struct conf *conf, const char **cause)
{
	struct curl_slist *h;

	if (conf->sms_account_sid == NULL ||
	    !notify_sid_valid(conf->sms_account_sid)) {
		*cause = "sms.account_sid must be 2 to 64 letters and digits";
		return -1;
	}
	if (conf->sms_from == NULL || !notify_sms_from_valid(conf->sms_from)) {
		*cause = "sms.from must be a number or a sender id";
		return -1;
	}
	if (notify_sms_url(
	        n, conf->sms_api_base, conf->sms_account_sid, cause) < 0)
		return -1;
	if (conf->sms_auth_token_file == NULL) {
		*cause = "sms.auth_token_file is required";
		return -1;
	}
	if (notify_secret(conf->sms_auth_token_file, &n->token, cause) < 0) {
		log_error("notify sms", "sms.auth_token_file %s", *cause);
		*cause = "sms.auth_token_file cannot be used";
		return -1;
	}

	n->sid = strdup(conf->sms_account_sid);
	n->sms_from = strdup(conf->sms_from);
	if (conf->sms_ca_file != NULL)
		n->sms_ca = strdup(conf->sms_ca_file);
	h = curl_slist_append(NULL, "Accept: application/json");
	if (h != NULL)
		n->sms_headers = h;
	/* An empty Expect keeps curl from waiting for "100 Continue". */
	if (h != NULL && (h = curl_slist_append(h, "Expect:")) != NULL)
		n->sms_headers = h;
	if (n->sid == NULL || n->sms_from == NULL || h == NULL ||
	    (conf->sms_ca_file != NULL && n->sms_ca == NULL)) {
		*cause = "out of memory";
		return -1;
	}
	n->sms_on = true;
	return 0;
}

/* Create the multi handle and its timer on the loop. */
static int
notify_multi_setup(struct notify *n, const char **cause)
{
	int bad = 0;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		*cause = "cannot initialise libcurl";
		return -1;
	}
	n->curl_ready = true;
	n->multi = curl_multi_init();
	n->timer = evtimer_new(n->base, notify_timer_cb, n);
	if (n->multi == NULL || n->timer == NULL) {
		*cause = "out of memory";
		return -1;
	}

	bad |= curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION,
	           notify_socket_cb) != CURLM_OK;
	bad |= curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n) != CURLM_OK;
	bad |= curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION,
	           notify_timer_set_cb) != CURLM_OK;
	bad |= curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n) != CURLM_OK;
	bad |= curl_multi_setopt(n->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	           NOTIFY_HOST_CONNECTIONS) != CURLM_OK;
	if (bad) {
		*cause = "cannot set up libcurl";
		return -1;
	}
	return 0;
}

/* Set up the configured channels on the loop. */
struct notify *
notify_new(struct event_base *base, const struct conf *conf, const char **cause)
{
	struct notify *n;

	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		*cause = "out of memory";
		return NULL;
	}
	n->base = base;
	n->connect_ms = NOTIFY_CONNECT_TIMEOUT_MS;
	n->total_ms = NOTIFY_TOTAL_TIMEOUT_MS;
	TAILQ_INIT(&n->sends);
	TAILQ_INIT(&n->socks);

	if (notify_multi_setup(n, cause) < 0)
		goto fail;
	if (conf->email_smtp_url != NULL &&
	    (notify_email_setup(n, conf, cause) < 0 ||
	        notify_mailer_start(n, cause) < 0))
		goto fail;
	if (conf->sms_api_base != NULL && notify_sms_setup(n, conf, cause) < 0)
		goto fail;

	log_info("notify", "email %s, sms %s", n->email_on ? "on" : "off",
	    n->sms_on ? "on" : "off");
	return n;

fail:
	notify_free(n);
	return NULL;
}

/* Wipe and free a secret string. */
static void
notify_wipe(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Complete what is pending, then release everything. */
void
notify_free(struct notify *n)
{
	struct notify_send *s;
	struct notify_sock *sk;

	if (n == NULL)
		return;

	n->closing = true;
	notify_mailer_stop(n);
	while ((s = TAILQ_FIRST(&n->sends)) != NULL) {
		if (s->easy != NULL) {
			s->outcome = NOTIFY_FAILED;
			snprintf(s->detail, sizeof(s->detail), "shutting down");
		}
		notify_complete(s);
	}
	if (n->multi != NULL)
		curl_multi_cleanup(n->multi);
	while ((sk = TAILQ_FIRST(&n->socks)) != NULL)
		notify_sock_free(n, sk);
	if (n->timer != NULL)
		event_free(n->timer);

	notify_wipe(n->password);
	notify_wipe(n->token);
	free(n->smtp_url);
	free(n->from);
	free(n->mail_from);
	free(n->username);
	free(n->email_ca);
	free(n->sms_url);
	free(n->sid);
	free(n->sms_from);
	free(n->sms_ca);
	curl_slist_free_all(n->sms_headers);
	if (n->curl_ready)
		curl_global_cleanup();
	free(n);
}

/* True when [email] was configured. */
bool
notify_can_email(const struct notify *n)
{
	return n != NULL && n->email_on;
}

/* True when [sms] was configured. */
bool
notify_can_sms(const struct notify *n)
{
	return n != NULL && n->sms_on;
}

/* Override the timeouts of later sends. */
void
notify_set_timeouts(struct notify *n, long connect_ms, long total_ms)
{
	if (connect_ms > 0)
		n->connect_ms = connect_ms;
	if (total_ms > 0)
		n->total_ms = total_ms;
}

/* ----- metrics ----- */

/* Write the counters in Prometheus text format. */
void
notify_metrics(const struct notify *n, struct evbuffer *out)
{
	int c, o;

	evbuffer_add_printf(out,
	    "# HELP vouch_notify_sent_total Emails and "
	    "SMS handed to their provider, by outcome.\n"
	    "# TYPE vouch_notify_sent_total counter\n");
	for (c = 0; c < NOTIFY_CHANNELS; c++)
		for (o = 0; o < NOTIFY_OUTCOMES; o++)
			evbuffer_add_printf(out,
			    "vouch_notify_sent_total"
			    "{channel=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
			    notify_channel_names[c], notify_outcome_names[o],
			    n->counts[c][o]);

	evbuffer_add_printf(out,
	    "# HELP vouch_notify_in_flight Emails and "
	    "SMS waiting for their provider.\n"
	    "# TYPE vouch_notify_in_flight gauge\n");
	for (c = 0; c < NOTIFY_CHANNELS; c++)
		evbuffer_add_printf(out,
		    "vouch_notify_in_flight"
		    "{channel=\"%s\"} %lu\n",
		    notify_channel_names[c], n->in_flight[c]);
}

/* notify_metrics as a collector for metrics_register. */
void
notify_metrics_cb(struct evbuffer *out, void *arg)
{
	notify_metrics(arg, out);
}
