/*
 * Sending by email (SMTP) and SMS (a Twilio-style REST API) through
 * libcurl's multi interface on the process's event loop. This module only
 * delivers texts to a provider and reports how that went; what the texts
 * say, and whether to try again later, is the callers' business.
 */
#ifndef VOUCH_NOTIFY_H
#define VOUCH_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct conf;
struct event_base;
struct evbuffer;
struct notify;

enum notify_outcome {
	NOTIFY_SENT = 0, /* the provider accepted the message */
	NOTIFY_RETRY,    /* transient: try again, after retry_after if set */
	NOTIFY_FAILED,   /* permanent for this message: do not retry */
	NOTIFY_UNCONFIGURED, /* the channel is not set up */
};

#define NOTIFY_OUTCOMES 4

enum notify_channel {
	NOTIFY_EMAIL = 0,
	NOTIFY_SMS,
};

#define NOTIFY_CHANNELS 2

/* What became of one send; every pointer is valid during the callback only. */
struct notify_result {
	enum notify_outcome outcome;
	enum notify_channel channel;
	const char *detail; /* short reason; never the text or the address */
	long retry_after;   /* seconds the provider asked for; -1: none */
	long status;        /* HTTP status or SMTP reply code; 0: none */
	const char *provider_id; /* the SMS message sid when sent, or NULL */
};

/*
 * Called exactly once per send, on the loop's thread, never from inside
 * the call that submitted it. The callback may submit more sends; it must
 * not call notify_free.
 */
typedef void (*notify_done_cb)(const struct notify_result *res, void *arg);

/*
 * Set up the channels configured in conf ([email] and [sms]; either may
 * be absent) on base, reading their secret files now. SMTP transfers run
 * on a thread of their own; everything else stays on the loop. Returns
 * NULL with *cause set to a static message when the configuration cannot
 * work. Caller frees with notify_free.
 */
struct notify *notify_new(
    struct event_base *base, const struct conf *conf, const char **cause);

/*
 * Complete every pending send with NOTIFY_FAILED ("shutting down"), then
 * release everything and wipe the secrets. An SMTP server that is slow to
 * answer the end of a message can hold this up to the transfer timeout.
 * Accepts NULL.
 */
void notify_free(struct notify *n);

/* True when the channel was configured. */
bool notify_can_email(const struct notify *n);
bool notify_can_sms(const struct notify *n);

/*
 * Override the connect and whole-transfer timeouts of later sends, in
 * milliseconds (defaults 10000 and 30000).
 */
void notify_set_timeouts(struct notify *n, long connect_ms, long total_ms);

/*
 * Send a plain-text email. A header value holding CR, LF or another
 * control character, an address that is not a plain addr-spec or a body
 * that is not UTF-8 completes with NOTIFY_FAILED without any connection.
 * The strings are copied; done is called later with arg.
 */
void notify_email(struct notify *n, const char *to, const char *subject,
    const char *text, notify_done_cb done, void *arg);

/* Send an SMS of 1 to 1600 characters to an E.164 number, as above. */
void notify_sms(struct notify *n, const char *to, const char *text,
    notify_done_cb done, void *arg);

/* "sent", "retry", "failed" or "unconfigured". */
const char *notify_outcome_name(enum notify_outcome outcome);

/* Write the Prometheus lines of the counters (vouch_notify_*) to out. */
void notify_metrics(const struct notify *n, struct evbuffer *out);

/* The same as a metrics_collect_fn, with the notify as arg. */
void notify_metrics_cb(struct evbuffer *out, void *arg);

/* ----- pure builders, exposed for the unit tests ----- */

/* One message as notify_mail_build needs it. */
struct notify_mail {
	const char *from;    /* "Name <a@b>" or "a@b" (then named "vouch") */
	const char *to;      /* a bare addr-spec */
	const char *subject; /* UTF-8 */
	const char *text;    /* UTF-8, LF or CRLF line ends */
	time_t date;
	const char *message_id; /* the part left of "@" in Message-ID */
};

/*
 * Build the RFC 5322 message (headers, then the body in quoted-printable)
 * with CRLF line ends. Returns a NUL-terminated string the caller frees,
 * or NULL with *cause set when a field is unacceptable.
 */
char *notify_mail_build(const struct notify_mail *m, const char **cause);

/*
 * Split a configured sender ("Name <a@b>" or "a@b") into its display name
 * (NULL when absent) and address, both malloc'd. Returns 0, or -1 when it
 * is malformed.
 */
int notify_mail_parse_from(const char *from, char **name, char **addr);

/* True for an ASCII addr-spec without quotes, comments or controls. */
bool notify_mail_addr_valid(const char *addr);

/*
 * Append text as RFC 2047 "B" encoded-words of at most 75 characters,
 * never splitting a UTF-8 character, folded with CRLF and a space.
 */
void notify_encode_words(struct evbuffer *out, const char *text);

/* Append text in quoted-printable (RFC 2045), line ends made CRLF. */
void notify_qp_encode(struct evbuffer *out, const char *text);

/* Write an RFC 5322 date ("Thu, 03 Dec 2026 16:10:51 +0000") in UTC. */
void notify_mail_date(time_t t, char out[32]);

/* Append key=value URL-form-encoded, with "&" before it unless first. */
void notify_form_append(
    struct evbuffer *out, const char *key, const char *value);

/*
 * Decide the outcome of a Twilio-style reply: the HTTP status, the body
 * (may be NULL) and Retry-After in seconds (-1 when absent). detail (of
 * detail_len bytes) receives the reason and id (of id_len bytes) the
 * message sid when there is one.
 */
enum notify_outcome notify_sms_classify(long status, const char *body,
    long retry_after, char *detail, size_t detail_len, char *id, size_t id_len);

/*
 * Decide the outcome of a finished SMTP transfer from the curl result code
 * and the last SMTP reply code (0 when none); detail as above, errtext
 * being curl's message (may be empty).
 */
enum notify_outcome notify_email_classify(int curl_code, long smtp_code,
    const char *errtext, char *detail, size_t detail_len);

#endif
