/*
 * The worker-thread pool: a bounded queue of jobs under one mutex, threads
 * that run them, and a list of finished jobs handed back to the loop. A
 * thread writes one byte to a pipe when that list becomes non-empty; the
 * loop drains the pipe, takes the whole list and runs the completions.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "workers.h"

struct workers_job {
	workers_run_fn *run;
	workers_done_fn *done;
	void *arg;
	struct workers_job *next;
};

/* A singly linked FIFO of jobs. */
struct workers_list {
	struct workers_job *head;
	struct workers_job *tail;
	size_t len;
};

struct workers {
	struct event_base *base;
	struct event *wake_ev;
	int wake_fd[2];
	pthread_t *threads;
	int nthreads; /* threads started */
	size_t queue_max;
	size_t outstanding; /* submitted, done not yet called */

	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t cond;
	struct workers_list queue;    /* waiting to run */
	struct workers_list finished; /* ran, waiting for the loop */
	bool wake_sent;               /* a byte is in the pipe */
	bool stopping;
};

/* Append a job to the tail of a list. */
static void
workers_list_push(struct workers_list *l, struct workers_job *job)
{
	job->next = NULL;
	if (l->tail != NULL)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
	l->len++;
}

/* Take the job at the head of a list, or NULL. */
static struct workers_job *
workers_list_pop(struct workers_list *l)
{
	struct workers_job *job = l->head;

	if (job == NULL)
		return NULL;
	l->head = job->next;
	if (l->head == NULL)
		l->tail = NULL;
	l->len--;
	return job;
}

/* Take a whole list, leaving it empty. */
static struct workers_list
workers_list_take(struct workers_list *l)
{
	struct workers_list all = *l;

	l->head = l->tail = NULL;
	l->len = 0;
	return all;
}

/* Run the completions of a list of jobs in order, freeing each. */
static void
workers_complete(struct workers_list *l, bool cancelled)
{
	struct workers_job *job;

	while ((job = workers_list_pop(l)) != NULL) {
		job->done(job->arg, cancelled);
		free(job);
	}
}

/* Hand a finished job to the loop; called with the lock held. */
static void
workers_finish_locked(struct workers *w, struct workers_job *job)
{
	ssize_t n;

	workers_list_push(&w->finished, job);
	if (w->wake_sent)
		return;

	w->wake_sent = true;
	do {
		n = write(w->wake_fd[1], "j", 1);
	} while (n < 0 && errno == EINTR);
}

/* A worker thread: run queued jobs until the pool stops. */
static void *
workers_thread(void *arg)
{
	struct workers *w = arg;
	struct workers_job *job;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->stopping && w->queue.head == NULL)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stopping)
			break;
		job = workers_list_pop(&w->queue);
		pthread_mutex_unlock(&w->lock);

		job->run(job->arg);

		pthread_mutex_lock(&w->lock);
		workers_finish_locked(w, job);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/*
 * The pipe is readable: drain it first, then take the finished list, so
 * that a job finishing after the take writes a fresh byte. Touches no
 * field of w after the take, so a completion may free the pool.
 */
static void
workers_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct workers *w = arg;
	struct workers_list done;
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;

	pthread_mutex_lock(&w->lock);
	done = workers_list_take(&w->finished);
	w->wake_sent = false;
	pthread_mutex_unlock(&w->lock);

	w->outstanding -= done.len;
	workers_complete(&done, false);
}

/* Start n threads with every signal blocked; returns how many started. */
static int
workers_start_threads(struct workers *w, int n)
{
	sigset_t all, old;
	int i;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < n; i++) {
		if (pthread_create(&w->threads[i], NULL, workers_thread, w) !=
		    0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return i;
}

/* Make the pipe and the loop event that wakes on it. */
static int
workers_open_wake(struct workers *w)
{
	if (pipe2(w->wake_fd, O_NONBLOCK | O_CLOEXEC) != 0) {
		w->wake_fd[0] = w->wake_fd[1] = -1;
		return -1;
	}
	w->wake_ev = event_new(
	    w->base, w->wake_fd[0], EV_READ | EV_PERSIST, workers_wake_cb, w);
	if (w->wake_ev == NULL || event_add(w->wake_ev, NULL) != 0)
		return -1;
	return 0;
}

/* Release what workers_new made; threads must have been joined. */
static void
workers_release(struct workers *w)
{
	if (w->wake_ev != NULL)
		event_free(w->wake_ev);
	if (w->wake_fd[0] >= 0)
		close(w->wake_fd[0]);
	if (w->wake_fd[1] >= 0)
		close(w->wake_fd[1]);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->threads);
	free(w);
}

/* Ask every thread to stop after its current job and wait for them. */
static void
workers_join(struct workers *w)
{
	int i;

	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);

	for (i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	w->nthreads = 0;
}

/* Start a pool of threads for the loop. */
struct workers *
workers_new(struct event_base *base, int threads, int queue_max)
{
	struct workers *w;

	if (threads <= 0)
		threads = WORKERS_DEFAULT_THREADS;
	if (threads > WORKERS_MAX_THREADS)
		threads = WORKERS_MAX_THREADS;
	if (queue_max <= 0)
		queue_max = WORKERS_DEFAULT_QUEUE;

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->base = base;
	w->queue_max = (size_t)queue_max;
	w->wake_fd[0] = w->wake_fd[1] = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);

	w->threads = calloc((size_t)threads, sizeof(*w->threads));
	if (w->threads == NULL || workers_open_wake(w) != 0)
		goto fail;
	w->nthreads = workers_start_threads(w, threads);
	if (w->nthreads != threads) {
		log_error("workers", "cannot start %d threads", threads);
		goto fail;
	}
	return w;

fail:
	workers_join(w);
	workers_release(w);
	return NULL;
}

/* Queue a job for a worker thread. */
int
workers_submit(
    struct workers *w, workers_run_fn *run, workers_done_fn *done, void *arg)
{
	struct workers_job *job;
	int err = 0;

	job = malloc(sizeof(*job));
	if (job == NULL)
		return -1;
	job->run = run;
	job->done = done;
	job->arg = arg;

	pthread_mutex_lock(&w->lock);
	if (w->stopping)
		err = ESHUTDOWN;
	else if (w->queue.len >= w->queue_max)
		err = EAGAIN;
	else {
		workers_list_push(&w->queue, job);
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);

	if (err != 0) {
		free(job);
		errno = err;
		return -1;
	}
	w->outstanding++;
	return 0;
}

/* Jobs whose completion is still to come. */
size_t
workers_pending(struct workers *w)
{
	return w->outstanding;
}

/* Stop the pool and deliver every outstanding completion. */
void
workers_free(struct workers *w)
{
	struct workers_list finished, queued;

	if (w == NULL)
		return;

	workers_join(w);

	/*
	 * No thread runs now: the lists are ours without the lock. The pool
	 * lives on through the completions, so one that submits again is
	 * refused rather than left dangling.
	 */
	finished = workers_list_take(&w->finished);
	queued = workers_list_take(&w->queue);
	workers_complete(&finished, false);
	workers_complete(&queued, true);
	workers_release(w);
}
