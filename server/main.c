/*
 * vouchd: reads the configuration, connects to PostgreSQL (applying
 * migrations), serves the HTTP API on one event loop and stops
 * gracefully on SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/crypto.h>

#include "api.h"
#include "api_routes.h"
#include "app.h"
#include "auth.h"
#include "channels.h"
#include "conf.h"
#include "db.h"
#include "devtoken.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outbox.h"
#include "push.h"
#include "sync.h"
#include "verify.h"
#include "workers.h"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: vouchd -c FILE [--check]\n"
	    "       vouchd --help-config\n"
	    "  -c, --config FILE  the configuration (TOML)\n"
	    "  --check            validate the configuration and exit\n"
	    "  --help-config      list every setting with its default\n");
}

/* Apply [log] settings; conf has already checked the values. */
static void
main_setup_log(const struct conf *conf)
{
	enum log_level level = LOG_LEVEL_INFO;

	log_level_parse(conf->log_level, &level);
	log_setup(level,
	    strcmp(conf->log_format, "json") == 0 ? LOG_FORMAT_JSON
	                                          : LOG_FORMAT_TEXT);
}

/* Read the keys named by the configuration; prints every problem and
   returns their number. */
static int
main_load_keys(const struct conf *conf, FILE *errors)
{
	const char *cause = NULL;
	int failed = 0;

	if (keys_load_secret(conf->secrets_key_file, app.secret_key, &cause) !=
	    0) {
		fprintf(errors, "%s: secrets.key_file %s: %s\n", conf->path,
		    conf->secrets_key_file, cause);
		failed++;
	}
	if (keys_check_signing(conf->tokens_signing_key_file, &cause) != 0) {
		fprintf(errors, "%s: tokens.signing_key_file %s: %s\n",
		    conf->path, conf->tokens_signing_key_file, cause);
		failed++;
	}
	return failed;
}

/* /metrics collectors of the modules built here. */
static void
main_http_metrics_cb(struct evbuffer *out, void *arg)
{
	http_server_metrics(arg, out);
}

static void
main_db_metrics_cb(struct evbuffer *out, void *arg)
{
	db_metrics(arg, out);
}

static void
main_delivery_metrics_cb(struct evbuffer *out, void *arg)
{
	struct push_client *clients[2];
	size_t n = 0;

	if (app.apns != NULL)
		clients[n++] = app.apns;
	if (app.fcm != NULL)
		clients[n++] = app.fcm;
	if (n > 0)
		push_metrics_write(clients, n, out);
	if (app.notify != NULL)
		notify_metrics(app.notify, out);
	outbox_metrics(app.outbox, out);
}

/* Build the push clients, notify, the outbox and the verification
   watchers, or exit. */
static void
main_setup_delivery(const struct conf *conf)
{
	struct outbox_settings s = {
		.lease_seconds = (int)conf->outbox_lease_seconds,
		.poll_ms = (int)conf->outbox_poll_ms,
		.batch = 50,
		.secret_key = app.secret_key,
	};
	const char *cause = NULL;

	if (devtoken_setup(conf->tokens_signing_key_file,
	        (int)conf->tokens_device_token_ttl, &cause) != 0)
		fatal("keys", "tokens.signing_key_file: %s", cause);
	app.apns =
	    channels_push_new(app.base, conf, PUSH_PROVIDER_APNS, &cause);
	if (app.apns == NULL && cause != NULL)
		fatal("apns", "cannot set up APNs: %s", cause);
	app.fcm = channels_push_new(app.base, conf, PUSH_PROVIDER_FCM, &cause);
	if (app.fcm == NULL && cause != NULL)
		fatal("fcm", "cannot set up FCM: %s", cause);
	app.notify = notify_new(app.base, conf, &cause);
	if (app.notify == NULL)
		fatal("notify", "cannot set up email and SMS: %s",
		    cause ? cause : "out of memory");

	app.outbox = outbox_new(app.base, app.db, &s);
	app.verify = verify_new(app.base, app.db);
	if (app.outbox == NULL || app.verify == NULL ||
	    verify_start(app.verify) != 0)
		fatal("verify", "cannot start verifications");
	outbox_channels(app.outbox, app.apns, app.fcm, app.notify);
	outbox_start(app.outbox);
}

/* Start the worker pool and the directory sync. */
static void
main_setup_sync(const struct conf *conf)
{
	struct sync_settings s = {
		.poll_ms = 1000,
		.lease_seconds = 600,
		.timeout_ms = 15000,
		.secret_key = app.secret_key,
		.sms = notify_can_sms(app.notify),
		.email = notify_can_email(app.notify),
	};

	app.workers = workers_new(app.base, 4, 1000);
	if (app.workers == NULL)
		fatal("workers", "cannot start the worker threads");
	app.sync = sync_new(app.base, app.db, app.workers, app.outbox, &s);
	if (app.sync == NULL)
		fatal("sync", "out of memory");
	sync_start(app.sync);
}

/* Open the database pool and start connecting. */
static void
main_setup_db(const struct conf *conf)
{
	struct db_settings s = {
		.conninfo = conf->database_url,
		.pool_size = (int)conf->database_pool_size,
		.statement_timeout_ms =
		    (int)conf->database_statement_timeout_ms,
		.connect_timeout = (int)conf->database_connect_timeout,
		.migrate = true,
	};

	app.db = db_new(app.base, &s);
	if (app.db == NULL)
		fatal("db", "cannot create the connection pool");
	app.auth = auth_new(app.db, (int)conf->auth_rate_limit_per_minute,
	    (int)conf->auth_rate_limit_burst);
	if (app.auth == NULL)
		fatal("auth", "out of memory");
	if (db_listen(app.db, "vouch_auth", auth_notify_cb, app.auth) != 0)
		fatal("db", "cannot listen for key revocations");
	db_start(app.db);
}

/* Bind the listener and register the routes. */
static void
main_setup_http(const struct conf *conf)
{
	struct http_settings s = {
		.listen = conf->server_listen,
		.max_body_bytes = (size_t)conf->server_max_body_bytes,
		.max_header_bytes = (size_t)conf->server_max_header_bytes,
		.request_timeout = (int)conf->server_request_timeout,
		.shutdown_timeout = (int)conf->server_shutdown_timeout,
	};
	const struct http_route *routes;
	const char *cause = NULL;
	size_t count;

	app.http = http_server_new(app.base, &s, &cause);
	if (app.http == NULL)
		fatal("http", "cannot listen on %s: %s", conf->server_listen,
		    cause ? cause : "unknown error");
	routes = api_routes(&count);
	http_server_routes(app.http, routes, count);
	http_server_authenticator(app.http, auth_check, app.auth);
	log_info("http", "listening on 127.0.0.1:%d as %s",
	    http_server_port(app.http), conf->server_public_url);
}

/* Every request has finished: leave the loop. */
static void
main_stopped_cb(void *arg)
{
	event_base_loopexit(app.base, NULL);
}

/* SIGTERM or SIGINT: stop taking requests and finish the rest. */
static void
main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	static bool stopping;

	if (stopping) {
		log_warn(NULL, "second signal %d: stopping now", (int)sig);
		event_base_loopbreak(app.base);
		return;
	}
	stopping = true;
	log_info(NULL, "signal %d: stopping gracefully", (int)sig);
	http_server_shutdown(app.http, main_stopped_cb, NULL);
}

/* Free what main built, in reverse order. */
static void
main_teardown(struct event *sigterm, struct event *sigint)
{
	event_free(sigterm);
	event_free(sigint);
	/* Senders first: their last completions still report to the db,
	   whose free then fails what is left before its users go. */
	metrics_reset();
	workers_free(app.workers);
	push_free(app.apns);
	push_free(app.fcm);
	notify_free(app.notify);
	db_free(app.db);
	sync_free(app.sync);
	verify_free(app.verify);
	outbox_free(app.outbox);
	http_server_free(app.http);
	auth_free(app.auth);
	api_device_teardown();
	devtoken_teardown();
	OPENSSL_cleanse(app.secret_key, sizeof(app.secret_key));
	event_base_free(app.base);
	conf_free(app.conf);
}

/* Run the server until a signal stops it. */
static int
main_serve(void)
{
	struct event *sigterm, *sigint;

	if (evthread_use_pthreads() != 0)
		fatal(NULL, "libevent has no thread support");
	signal(SIGPIPE, SIG_IGN);
	app.base = event_base_new();
	if (app.base == NULL)
		fatal(NULL, "cannot create the event loop");

	main_setup_db(app.conf);
	main_setup_delivery(app.conf);
	main_setup_sync(app.conf);
	main_setup_http(app.conf);
	metrics_register(main_http_metrics_cb, app.http);
	metrics_register(main_db_metrics_cb, app.db);
	metrics_register(main_delivery_metrics_cb, NULL);

	sigterm = evsignal_new(app.base, SIGTERM, main_signal_cb, NULL);
	sigint = evsignal_new(app.base, SIGINT, main_signal_cb, NULL);
	if (sigterm == NULL || sigint == NULL ||
	    event_add(sigterm, NULL) != 0 || event_add(sigint, NULL) != 0)
		fatal(NULL, "cannot handle signals");

	event_base_dispatch(app.base);
	log_info(NULL, "stopped");
	main_teardown(sigterm, sigint);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help-config", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool check = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 't':
			conf_print_table(stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}

	app.conf = conf_load(path, stderr);
	if (app.conf == NULL)
		return 1;
	if (main_load_keys(app.conf, stderr) != 0) {
		conf_free(app.conf);
		return 1;
	}
	if (check) {
		printf("%s: configuration ok\n", path);
		conf_free(app.conf);
		return 0;
	}
	main_setup_log(app.conf);
	return main_serve();
}
