/*
 * Durable delivery: pushes, SMS and emails are rows of the outbox table,
 * written in the transaction that needs them. This module leases due rows
 * (FOR UPDATE SKIP LOCKED), sends them through the push clients and the
 * notify module, and reports each outcome back, so a job a crashed
 * process held is finished by another once its lease runs out.
 */
#ifndef VOUCH_OUTBOX_H
#define VOUCH_OUTBOX_H

struct event_base;
struct db;
struct outbox;
struct push_client;
struct notify;

struct outbox_settings {
	int lease_seconds;               /* how long a claimed job is ours */
	int poll_ms;                     /* how often due jobs are looked for */
	int batch;                       /* jobs claimed per round trip */
	const unsigned char *secret_key; /* 32 bytes; opens payloads */
};

struct outbox *outbox_new(
    struct event_base *base, struct db *db, const struct outbox_settings *s);

/* The senders; any may be NULL (that channel then fails its jobs). */
void outbox_channels(struct outbox *ob, struct push_client *apns,
    struct push_client *fcm, struct notify *notify);

/* Start polling for due jobs. */
void outbox_start(struct outbox *ob);

/*
 * Send the given jobs now (a PostgreSQL uuid[] literal, "{...}", as
 * returned by the transaction that wrote them).
 */
void outbox_kick(struct outbox *ob, const char *job_ids);

/* Stop polling; jobs in flight are abandoned to their leases. */
void outbox_free(struct outbox *ob);

/* Prometheus lines: jobs claimed and outcomes by kind. */
struct evbuffer;
void outbox_metrics(const struct outbox *ob, struct evbuffer *out);

#endif
