/*
 * Turning [apns] and [fcm] settings into push clients. Key files are
 * read here (refused when others can read them) and wiped once the
 * library has its copy.
 */
#include <stdlib.h>

#include <openssl/crypto.h>

#include "channels.h"
#include "conf.h"
#include "log.h"

/* Route a library log line to our log at the same level. */
static void
channels_log_cb(void *arg, enum push_log_level level, const char *line)
{
	static const enum log_level map[] = {
		[PUSH_LOG_ERROR] = LOG_LEVEL_ERROR,
		[PUSH_LOG_WARN] = LOG_LEVEL_WARN,
		[PUSH_LOG_INFO] = LOG_LEVEL_INFO,
		[PUSH_LOG_DEBUG] = LOG_LEVEL_DEBUG,
	};

	log_msg(map[level], NULL, "%s", line);
}

/* The library's log threshold matching ours. */
static enum push_log_level
channels_log_level(void)
{
	if (log_enabled(LOG_LEVEL_DEBUG))
		return PUSH_LOG_DEBUG;
	if (log_enabled(LOG_LEVEL_INFO))
		return PUSH_LOG_INFO;
	return PUSH_LOG_WARN;
}

/* Fill the APNs part of the settings; the key text goes to *secret. */
static int
channels_apns(const struct conf *conf, struct push_settings *s, char **secret,
    size_t *len, const char **cause)
{
	if (conf_read_secret(conf->apns_key_file, secret, len, cause) != 0)
		return -1;
	s->provider = PUSH_PROVIDER_APNS;
	s->endpoint = conf->apns_endpoint;
	s->ca_file = conf->apns_ca_file;
	s->team_id = conf->apns_team_id;
	s->key_id = conf->apns_key_id;
	s->key_pem = *secret;
	s->topic = conf->apns_topic;
	s->pool_size = (unsigned)conf->apns_connections;
	s->request_timeout_ms = (unsigned)conf->apns_request_timeout_ms;
	s->ping_interval_ms = (unsigned)conf->apns_ping_interval * 1000;
	s->ping_timeout_ms = (unsigned)conf->apns_ping_timeout * 1000;
	s->queue_limit = (unsigned)conf->apns_queue_limit;
	return 0;
}

/* Fill the FCM part of the settings; the account JSON goes to *secret. */
static int
channels_fcm(const struct conf *conf, struct push_settings *s, char **secret,
    size_t *len, const char **cause)
{
	if (conf_read_secret(
	        conf->fcm_service_account_file, secret, len, cause) != 0)
		return -1;
	s->provider = PUSH_PROVIDER_FCM;
	s->endpoint = conf->fcm_endpoint;
	s->ca_file = conf->fcm_ca_file;
	s->service_account_json = *secret;
	s->pool_size = (unsigned)conf->fcm_connections;
	s->request_timeout_ms = (unsigned)conf->fcm_request_timeout_ms;
	s->ping_interval_ms = (unsigned)conf->fcm_ping_interval * 1000;
	s->ping_timeout_ms = (unsigned)conf->fcm_ping_timeout * 1000;
	s->queue_limit = (unsigned)conf->fcm_queue_limit;
	return 0;
}

/* Make one provider's client from its section. */
struct push_client *
channels_push_new(struct event_base *base, const struct conf *conf,
    enum push_provider provider, const char **cause)
{
	struct push_settings s = { 0 };
	struct push_client *client = NULL;
	char *secret = NULL;
	size_t len = 0;
	int rc;

	*cause = NULL;
	if (provider == PUSH_PROVIDER_APNS ? !conf->apns_enabled
	                                   : !conf->fcm_enabled)
		return NULL;

	rc = provider == PUSH_PROVIDER_APNS
	    ? channels_apns(conf, &s, &secret, &len, cause)
	    : channels_fcm(conf, &s, &secret, &len, cause);
	if (rc == 0) {
		s.log = channels_log_cb;
		s.log_level = channels_log_level();
		client = push_new(base, &s, cause);
	}
	if (secret != NULL) {
		OPENSSL_cleanse(secret, len);
		free(secret);
	}
	return client;
}
