/*
 * vouchctl device simulate: a stand-in for the mobile app, for trying a
 * server end to end from a terminal or a test. Not used by vouchd.
 */
#ifndef VOUCH_CTL_DEVICE_H
#define VOUCH_CTL_DEVICE_H

#include <stdio.h>

struct conf;

/*
 * Run "device simulate ..." (argv[0] is "device"). Returns the exit
 * status: 0 done, 1 an HTTP or local failure (printed), 2 bad usage.
 */
int ctl_device_main(const struct conf *conf, int argc, char **argv);

/* Print the usage lines of the command to out. */
void ctl_device_usage(FILE *out);

#endif
