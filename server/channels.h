/*
 * The delivery channels built from the configuration: the APNs and FCM
 * clients of the apns-fcm library, with their logs routed to ours. Used
 * by vouchd and by `vouchctl push send`.
 */
#ifndef VOUCH_CHANNELS_H
#define VOUCH_CHANNELS_H

#include "push.h"

struct event_base;
struct conf;

/*
 * Make the client of one provider from its section. Returns NULL with
 * *cause NULL when the section is not enabled, or NULL with *cause set
 * when it is enabled but unusable.
 */
struct push_client *channels_push_new(struct event_base *base,
    const struct conf *conf, enum push_provider provider, const char **cause);

#endif
