/*
 * The one process-wide state of vouchd: the loop, the configuration and
 * the modules built from it. Route handlers reach it through `app`.
 */
#ifndef VOUCH_APP_H
#define VOUCH_APP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct conf;
struct db;
struct http_server;
struct auth;
struct verify;
struct outbox;
struct push_client;
struct notify;
struct workers;
struct sync;

struct app {
	struct event_base *base;
	struct conf *conf;
	struct db *db;
	struct http_server *http;
	struct auth *auth;
	struct verify *verify;
	struct outbox *outbox;
	struct push_client *apns; /* NULL when [apns] is off */
	struct push_client *fcm;  /* NULL when [fcm] is off */
	struct notify *notify;
	struct workers *workers; /* blocking libraries (libldap) */
	struct sync *sync;
	uint8_t secret_key[32]; /* [secrets] key_file, data at rest */
};

extern struct app app;

#endif
