/*
 * The live side of verifications: expiry by timer, and watchers (server-
 * sent event streams) woken by the NOTIFY that follows every committed
 * change, whichever vouchd process made it.
 */
#ifndef VOUCH_VERIFY_H
#define VOUCH_VERIFY_H

struct event_base;
struct db;
struct http_req;
struct verify;

struct verify *verify_new(struct event_base *base, struct db *db);

/* Start the expiry timer and listen for changes. */
int verify_start(struct verify *v);

/*
 * Turn req into an event stream for the verification: the current state
 * at once, then every newer state, ending after a final one. Replies 404
 * when the verification is not the MSP's.
 */
void verify_watch(
    struct verify *v, struct http_req *req, const char *msp_id, const char *id);

/* End every stream and free. */
void verify_free(struct verify *v);

/* True for approved, denied, expired, canceled and failed. */
int verify_status_final(const char *status);

#endif
