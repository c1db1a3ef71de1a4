/*
 * Token buckets keyed by a short string (a client address, a login), in
 * this process's memory. Idle buckets are dropped, so the table stays
 * bounded under a flood of distinct keys.
 */
#ifndef VOUCH_RATELIMIT_H
#define VOUCH_RATELIMIT_H

struct ratelimit;

/* rate_per_minute tokens refill each minute, up to burst. */
struct ratelimit *ratelimit_new(double rate_per_minute, double burst);
void ratelimit_free(struct ratelimit *rl);

/* Take a token for key: 0 when allowed, else the seconds to wait (>= 1). */
int ratelimit_take(struct ratelimit *rl, const char *key);

#endif
