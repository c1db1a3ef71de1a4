/*
 * vouchctl push send: builds the [apns] or [fcm] client with the same
 * code vouchd uses (channels_push_new), sends one test notification on
 * an event loop of its own and reports what the provider said.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "channels.h"
#include "conf.h"
#include "ctl_push.h"

/* Wait this long past the client's own request timeout before giving up. */
#define CTL_PUSH_GRACE_MS 5000

#define CTL_PUSH_TITLE "vouch"
#define CTL_PUSH_BODY "A test notification sent by vouchctl."

/* One send in progress. */
struct ctl_push {
	struct event_base *base;
	bool done;
	int rc;
};

/* Print the usage lines of the command. */
void
ctl_push_usage(FILE *out)
{
	fprintf(out,
	    "  push send --platform ios|android --token T\n"
	    "                              send one test notification with\n"
	    "                              the [apns] or [fcm] settings;\n"
	    "                              exit 0 when delivered\n");
}

/* The notification finished: say how, and leave the loop. */
static void
ctl_push_done_cb(void *arg, const struct push_result *res)
{
	struct ctl_push *p = arg;

	if (p->done)
		return;
	p->done = true;
	if (res->outcome == PUSH_OUTCOME_DELIVERED) {
		printf("delivered\n");
		p->rc = 0;
	} else if (res->status != 0) {
		printf("not delivered: %d %s (%s)\n", res->status,
		    res->reason ? res->reason : "",
		    push_outcome_str(res->outcome));
	} else {
		printf("not delivered: no answer: %s (%s)\n",
		    res->reason ? res->reason : "unknown",
		    push_outcome_str(res->outcome));
	}
	fflush(stdout);
	event_base_loopexit(p->base, NULL);
}

/* The client never called back in time. */
static void
ctl_push_guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_push *p = arg;

	if (p->done)
		return;
	p->done = true;
	printf("not delivered: no answer in time\n");
	fflush(stdout);
	event_base_loopexit(p->base, NULL);
}

/* The test notification for the platform (payload text is static). */
static void
ctl_push_note(bool ios, const char *token, struct push_note *note)
{
	memset(note, 0, sizeof(*note));
	note->device_token = token;
	if (ios) {
		note->payload =
		    "{\"aps\":{\"alert\":{\"title\":\"" CTL_PUSH_TITLE
		    "\",\"body\":\"" CTL_PUSH_BODY "\"},"
		    "\"sound\":\"default\"},\"vouch\":{\"type\":\"test\"}}";
		note->push_type = "alert";
		note->priority = 10;
		note->has_expiration = 1;
		note->expiration = 0;
	} else {
		note->payload =
		    "{\"notification\":{\"title\":\"" CTL_PUSH_TITLE
		    "\",\"body\":\"" CTL_PUSH_BODY "\"},\"data\":{"
		    "\"vouch_type\":\"test\"},\"android\":{\"priority\":"
		    "\"HIGH\",\"ttl\":\"300s\"}}";
	}
}

/* Submit the note and run the loop until it completes. */
static int
ctl_push_run(struct ctl_push *p, struct push_client *client, bool ios,
    const char *token, long timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct push_result rejected = { 0 };
	struct push_note note;
	struct event *guard;

	ctl_push_note(ios, token, &note);
	if (push_submit(client, &note, ctl_push_done_cb, p, &rejected) != 0) {
		printf("not delivered: refused at once: %s (%s)\n",
		    rejected.reason ? rejected.reason : "unknown",
		    push_outcome_str(rejected.outcome));
		return 1;
	}
	guard = evtimer_new(p->base, ctl_push_guard_cb, p);
	if (guard == NULL || evtimer_add(guard, &tv) != 0) {
		fprintf(stderr, "vouchctl: cannot arm a timer\n");
		if (guard != NULL)
			event_free(guard);
		return 1;
	}
	event_base_dispatch(p->base);
	event_free(guard);
	return p->rc;
}

/* The value of --NAME among the words, or NULL. */
static const char *
ctl_push_option(int argc, char **argv, const char *name)
{
	int i;

	for (i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

/* vouchctl push send --platform ios|android --token T */
int
ctl_push_main(const struct conf *conf, int argc, char **argv)
{
	const char *platform = ctl_push_option(argc, argv, "--platform");
	const char *token = ctl_push_option(argc, argv, "--token");
	struct ctl_push p = { NULL, false, 1 };
	struct push_client *client = NULL;
	const char *cause = NULL;
	bool ios;
	long timeout_ms;

	if (argc != 6 || strcmp(argv[1], "send") != 0 || platform == NULL ||
	    token == NULL || token[0] == '\0' ||
	    (strcmp(platform, "ios") != 0 &&
	        strcmp(platform, "android") != 0)) {
		fprintf(stderr, "usage: vouchctl -c FILE\n");
		ctl_push_usage(stderr);
		return 2;
	}
	ios = strcmp(platform, "ios") == 0;
	timeout_ms = (long)(ios ? conf->apns_request_timeout_ms
	                        : conf->fcm_request_timeout_ms) +
	    CTL_PUSH_GRACE_MS;

	p.base = event_base_new();
	if (p.base == NULL) {
		fprintf(stderr, "vouchctl: cannot make an event loop\n");
		return 1;
	}
	client = channels_push_new(
	    p.base, conf, ios ? PUSH_PROVIDER_APNS : PUSH_PROVIDER_FCM, &cause);
	if (client == NULL) {
		if (cause != NULL)
			fprintf(stderr, "vouchctl: cannot set up %s: %s\n",
			    ios ? "[apns]" : "[fcm]", cause);
		else
			fprintf(stderr, "vouchctl: %s is not configured\n",
			    ios ? "[apns]" : "[fcm]");
		p.rc = cause != NULL ? 1 : 2;
		goto out;
	}
	p.rc = ctl_push_run(&p, client, ios, token, timeout_ms);
out:
	push_free(client);
	event_base_free(p.base);
	return p.rc;
}
