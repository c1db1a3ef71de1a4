/*
 * A small pool of worker threads for libraries that only block (libldap).
 * A job is a function run on a thread plus a completion run later on the
 * event loop, which learns of finished jobs through a pipe and so needs no
 * libevent locking. Not meant for long CPU-bound work.
 */
#ifndef VOUCH_WORKERS_H
#define VOUCH_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct workers;

#define WORKERS_DEFAULT_THREADS 4
#define WORKERS_DEFAULT_QUEUE 256
#define WORKERS_MAX_THREADS 64

/* Runs on a worker thread: must not touch the loop or loop-owned state. */
typedef void workers_run_fn(void *arg);

/*
 * Runs on the loop once the job has run, or with cancelled set when the
 * pool stopped before the job could start.
 */
typedef void workers_done_fn(void *arg, bool cancelled);

/*
 * Start a pool of threads (0: the default) serving up to queue_max waiting
 * jobs (0: the default) for the loop base. Worker threads block every
 * signal. Returns NULL when threads, the pipe or the event cannot be made.
 */
struct workers *workers_new(
    struct event_base *base, int threads, int queue_max);

/*
 * Queue a job. done is always called later from the loop, never inside
 * this call. Returns 0, or -1 with errno EAGAIN when the queue is full,
 * ESHUTDOWN when the pool is stopping (done is then never called).
 */
int workers_submit(struct workers *w, workers_run_fn *run,
    workers_done_fn *done, void *arg) __attribute__((warn_unused_result));

/* Jobs queued or running whose completion has not been delivered. */
size_t workers_pending(struct workers *w);

/*
 * Stop the pool: wait for the jobs that are running (their own timeouts
 * bound the wait), deliver the completions of finished jobs, then call
 * done(arg, true) for every job that never started; a completion that
 * submits meanwhile gets ESHUTDOWN. Accepts NULL. May be called from a
 * completion the loop delivers, not from one it delivers itself.
 */
void workers_free(struct workers *w);

#endif
