/*
 * Directory sync: on each customer's interval (and on demand), read the
 * customer's Active Directory on the worker pool, upsert its users by
 * objectGUID, record account changes, and queue the alerts users are
 * due. Customers are leased in PostgreSQL, so several processes share
 * the work and a slow or dead directory delays only its own customer.
 */
#ifndef VOUCH_SYNC_H
#define VOUCH_SYNC_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct db;
struct workers;
struct outbox;
struct sync;

struct sync_settings {
	int poll_ms;               /* how often due customers are looked for */
	int lease_seconds;         /* how long a claimed sync is ours */
	int timeout_ms;            /* per LDAP request */
	const uint8_t *secret_key; /* opens stored bind passwords */
	bool sms;                  /* channels this server can send by */
	bool email;
};

struct sync *sync_new(struct event_base *base, struct db *db,
    struct workers *workers, struct outbox *outbox,
    const struct sync_settings *s);

void sync_start(struct sync *sync);

/* Look for due customers now (after an on-demand request). */
void sync_kick(struct sync *sync);

void sync_free(struct sync *sync);

#endif
