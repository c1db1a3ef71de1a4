/*
 * A chained hash table of token buckets. Keys longer than the slot are
 * hashed first, so any string may be a key.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "util.h"

#define SLOTS 1024
#define KEY_MAX 64
#define IDLE_MS 600000
#define SWEEP_AT 100000

struct bucket {
	struct bucket *next;
	char key[KEY_MAX + 1];
	double tokens;
	uint64_t refilled_at;
};

struct ratelimit {
	double per_ms;
	double burst;
	size_t count;
	struct bucket *slots[SLOTS];
};

/* Create an empty table. */
struct ratelimit *
ratelimit_new(double rate_per_minute, double burst)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->per_ms = rate_per_minute / 60000.0;
	rl->burst = burst;
	return rl;
}

/* Free every bucket. */
void
ratelimit_free(struct ratelimit *rl)
{
	struct bucket *b, *next;
	size_t i;

	if (rl == NULL)
		return;
	for (i = 0; i < SLOTS; i++)
		for (b = rl->slots[i]; b != NULL; b = next) {
			next = b->next;
			free(b);
		}
	free(rl);
}

/* The key as stored: itself when short, else its hash in hex. */
static void
bucket_key(const char *key, char out[KEY_MAX + 1])
{
	uint8_t digest[32];

	if (strlen(key) <= KEY_MAX) {
		strcpy(out, key);
		return;
	}
	util_sha256(key, strlen(key), digest);
	util_hex(digest, 32, out);
}

/* FNV-1a over the stored key. */
static size_t
bucket_slot(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (uint8_t)*key) * 16777619u;
	return h % SLOTS;
}

/* Drop buckets that have refilled completely long ago. */
static void
ratelimit_sweep(struct ratelimit *rl, uint64_t now)
{
	struct bucket **pp, *b;
	size_t i;

	for (i = 0; i < SLOTS; i++) {
		pp = &rl->slots[i];
		while ((b = *pp) != NULL) {
			if (now - b->refilled_at > IDLE_MS) {
				*pp = b->next;
				free(b);
				rl->count--;
			} else {
				pp = &b->next;
			}
		}
	}
}

/* Find or make the bucket of a key; NULL when out of memory. */
static struct bucket *
ratelimit_bucket(struct ratelimit *rl, const char *key, uint64_t now)
{
	char stored[KEY_MAX + 1];
	struct bucket *b;
	size_t slot;

	bucket_key(key, stored);
	slot = bucket_slot(stored);
	for (b = rl->slots[slot]; b != NULL; b = b->next)
		if (strcmp(b->key, stored) == 0)
			return b;

	if (rl->count >= SWEEP_AT)
		ratelimit_sweep(rl, now);
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	strcpy(b->key, stored);
	b->tokens = rl->burst;
	b->refilled_at = now;
	b->next = rl->slots[slot];
	rl->slots[slot] = b;
	rl->count++;
	return b;
}

/* Take a token, or say how long until one is there. */
int
ratelimit_take(struct ratelimit *rl, const char *key)
{
	uint64_t now = util_now_ms();
	struct bucket *b = ratelimit_bucket(rl, key, now);
	double wait_s;

	if (b == NULL)
		return 1;
	b->tokens += (double)(now - b->refilled_at) * rl->per_ms;
	if (b->tokens > rl->burst)
		b->tokens = rl->burst;
	b->refilled_at = now;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	wait_s = ceil((1.0 - b->tokens) / rl->per_ms / 1000.0);
	return wait_s < 1 ? 1 : (int)wait_s;
}
