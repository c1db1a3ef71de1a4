/*
 * vouchctl push send: one test notification through the [apns] or [fcm]
 * client built exactly as vouchd builds it, to check credentials and
 * endpoints from the command line. Not used by vouchd.
 */
#ifndef VOUCH_CTL_PUSH_H
#define VOUCH_CTL_PUSH_H

#include <stdio.h>

struct conf;

/*
 * Run "push send --platform ios|android --token T" (argv[0] is "push").
 * Returns the exit status: 0 delivered, 1 not delivered (the provider's
 * status and reason are printed), 2 bad usage or the provider is not
 * configured.
 */
int ctl_push_main(const struct conf *conf, int argc, char **argv);

/* Print the usage lines of the command to out. */
void ctl_push_usage(FILE *out);

#endif
