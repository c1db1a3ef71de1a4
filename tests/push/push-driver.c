/*
 * push-driver: sends N notifications through the real push library to a
 * server (the fakes in tests, or the real services) and prints one JSON
 * line per completion plus a summary line. The integration tests and the
 * benchmark drive the library through it.
 */
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "push.h"

/* Everything the run needs, in one place. */
struct driver {
	struct event_base *base;
	struct push_client *client;
	struct push_settings set;
	struct push_note note;

	long n;        /* notifications to send */
	char **tokens; /* cycled over the notifications */
	int ntokens;
	long window;          /* outstanding at once; 0 = all */
	unsigned interval_ms; /* pace: burst submissions per interval */
	long burst;
	int retries; /* re-submit RETRY outcomes this often */
	int bench;   /* no per-completion lines */
	long flood;  /* submit this many at once first */
	long deadline_ms;
	const char *metrics_file;

	long next; /* next index to submit */
	long outstanding;
	long finals;            /* indices with a final answer */
	unsigned char *attempt; /* per index */
	unsigned char *calls;   /* completions of the current attempt */
	long duplicates;
	long counts[PUSH_OUTCOME_COUNT];
	long rejected;
	long closed;
	float *lat_ms; /* delivered latencies */
	long nlat;
	double *t_sub; /* per index: last submission, ms */
	double t0;
	struct event *pace_ev;
	struct event *deadline_ev;
	int stopping;
};

static struct driver drv;

/* Milliseconds since an arbitrary start (monotonic). */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Resident set size now, in KiB, from /proc. */
static long
rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* Read a whole file into a string; exits on failure. */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
		fprintf(stderr, "push-driver: cannot read %s\n", path);
		exit(2);
	}
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "push-driver: cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	return buf;
}

/* Library log lines go to stderr. */
static void
log_cb(void *arg, enum push_log_level level, const char *line)
{
	static const char letters[] = "EWID";

	fprintf(stderr, "%.3f %c %s\n", now_ms() / 1e3, letters[level], line);
}

/* Write s as a JSON string (or null). */
static void
put_json_str(const char *s)
{
	if (s == NULL) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void submit_one(long i);

/* Start the next notifications the window and the count allow. */
static void
fill_window(void)
{
	if (drv.interval_ms > 0)
		return;
	while (!drv.stopping && drv.next < drv.n &&
	    (drv.window == 0 || drv.outstanding < drv.window))
		submit_one(drv.next++);
}

/* Stop the loop once every notification has its final answer. */
static void
maybe_finish(void)
{
	if (drv.finals >= drv.n && drv.outstanding == 0)
		event_base_loopbreak(drv.base);
}

/* A retry delay ended: send index i again. */
static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	long i = (long)(intptr_t)arg;

	drv.outstanding--;
	if (drv.stopping)
		return;
	drv.attempt[i]++;
	drv.calls[i] = 0;
	submit_one(i);
}

/* Print one completion line. */
static void
print_completion(long i, const struct push_result *r, double lat)
{
	printf("{\"i\":%ld,\"attempt\":%d,\"outcome\":\"%s\",\"status\":%d,"
	       "\"reason\":",
	    i, drv.attempt[i] + 1, push_outcome_str(r->outcome), r->status);
	put_json_str(r->reason);
	printf(",\"retry_ms\":%u,\"timestamp\":%lld,\"id\":", r->retry_ms,
	    r->timestamp_ms);
	put_json_str(r->id);
	printf(",\"t_ms\":%.1f,\"latency_ms\":%.3f}\n", now_ms() - drv.t0, lat);
}

/* The library finished notification i. */
static void
done_cb(void *arg, const struct push_result *r)
{
	long i = (long)(intptr_t)arg;
	double lat = now_ms() - drv.t_sub[i];
	struct timeval tv;

	drv.outstanding--;
	if (++drv.calls[i] > 1)
		drv.duplicates++;
	if (!drv.bench)
		print_completion(i, r, lat);
	if (r->reason != NULL && strcmp(r->reason, "ClientClosed") == 0)
		drv.closed++;
	if (r->outcome == PUSH_OUTCOME_RETRY && drv.attempt[i] < drv.retries &&
	    !drv.stopping) {
		tv.tv_sec = r->retry_ms / 1000;
		tv.tv_usec = (r->retry_ms % 1000) * 1000;
		drv.outstanding++;
		event_base_once(drv.base, -1, EV_TIMEOUT, retry_cb,
		    (void *)(intptr_t)i, &tv);
		return;
	}
	drv.counts[r->outcome]++;
	drv.finals++;
	if (r->outcome == PUSH_OUTCOME_DELIVERED)
		drv.lat_ms[drv.nlat++] = (float)lat;
	fill_window();
	maybe_finish();
}

/* Submit notification i with the run's options. */
static void
submit_one(long i)
{
	struct push_result rej;
	struct push_note note = drv.note;

	note.device_token = drv.tokens[i % drv.ntokens];
	drv.t_sub[i] = now_ms();
	drv.outstanding++;
	if (push_submit(
	        drv.client, &note, done_cb, (void *)(intptr_t)i, &rej) == 0)
		return;
	drv.rejected++;
	done_cb((void *)(intptr_t)i, &rej);
}

/* Pace mode: a burst of submissions per tick. */
static void
pace_cb(evutil_socket_t fd, short what, void *arg)
{
	long k;

	for (k = 0; k < drv.burst && drv.next < drv.n && !drv.stopping; k++)
		submit_one(drv.next++);
	if (drv.next >= drv.n)
		event_del(drv.pace_ev);
}

/* The run took too long: stop and report what is missing. */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	fprintf(stderr, "push-driver: deadline reached\n");
	drv.stopping = 1;
	event_base_loopbreak(drv.base);
}

/* A completion of the flood: counted, not printed. */
static void
flood_done_cb(void *arg, const struct push_result *r)
{
	drv.outstanding--;
	drv.counts[r->outcome]++;
	drv.finals++;
	maybe_finish();
}

/* Flood mode: submit count at once, report how many fit and the RSS. */
static void
flood(long count)
{
	struct push_note note = drv.note;
	struct push_result rej;
	long i, accepted = 0, refused = 0, before, after;
	double t;

	note.device_token = drv.tokens[0];
	before = rss_kb();
	t = now_ms();
	for (i = 0; i < count; i++) {
		if (push_submit(drv.client, &note, flood_done_cb, NULL, &rej) ==
		    0) {
			accepted++;
			drv.outstanding++;
		} else if (rej.outcome == PUSH_OUTCOME_RETRY) {
			refused++;
		}
	}
	after = rss_kb();
	printf(
	    "{\"flood\":%ld,\"accepted\":%ld,\"refused_retry\":%ld,"
	    "\"submit_ms\":%.1f,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld}\n",
	    count, accepted, refused, now_ms() - t, before, after);
	fflush(stdout);
	drv.n = accepted;
	drv.rejected = refused;
}

/* Sort helper for latencies. */
static int
cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* The summary line, from the counters read before the client closed. */
static void
summary(double elapsed, const struct push_counters *kp)
{
	const struct push_counters k = *kp;
	struct rusage ru;
	double cpu, p50 = 0, p99 = 0;

	getrusage(RUSAGE_SELF, &ru);
	cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	if (drv.nlat > 0) {
		qsort(drv.lat_ms, (size_t)drv.nlat, sizeof(float), cmp_float);
		p50 = drv.lat_ms[(drv.nlat - 1) / 2];
		p99 = drv.lat_ms[(long)((drv.nlat - 1) * 0.99)];
	}
	printf(
	    "{\"summary\":true,\"n\":%ld,\"finals\":%ld,\"delivered\":%ld,"
	    "\"retry\":%ld,\"token_dead\":%ld,\"failed\":%ld,\"rejected\":%ld,"
	    "\"closed\":%ld,\"duplicates\":%ld,\"missing\":%ld,"
	    "\"elapsed_ms\":%.1f,\"rate\":%.1f,\"p50_ms\":%.3f,"
	    "\"p99_ms\":%.3f,\"cpu_s\":%.3f,\"max_rss_kb\":%ld,",
	    drv.n, drv.finals, drv.counts[PUSH_OUTCOME_DELIVERED],
	    drv.counts[PUSH_OUTCOME_RETRY], drv.counts[PUSH_OUTCOME_TOKEN_DEAD],
	    drv.counts[PUSH_OUTCOME_FAILED], drv.rejected, drv.closed,
	    drv.duplicates, drv.n - drv.finals, elapsed,
	    elapsed > 0 ? drv.finals / (elapsed / 1e3) : 0, p50, p99, cpu,
	    ru.ru_maxrss);
	printf("\"connects\":%llu,\"reconnects\":%llu,\"resent\":%llu,"
	       "\"token_refreshes\":%llu,\"queued\":%llu,\"in_flight\":%llu}\n",
	    (unsigned long long)k.connects, (unsigned long long)k.reconnects,
	    (unsigned long long)k.resent, (unsigned long long)k.token_refreshes,
	    (unsigned long long)k.queued, (unsigned long long)k.in_flight);
}

/* Write the Prometheus text of the client to the metrics file. */
static void
write_metrics(void)
{
	struct evbuffer *buf = evbuffer_new();
	FILE *f;

	if (buf == NULL || push_metrics_write(&drv.client, 1, buf) != 0 ||
	    (f = fopen(drv.metrics_file, "w")) == NULL) {
		fprintf(stderr, "push-driver: cannot write metrics\n");
		exit(2);
	}
	fwrite(evbuffer_pullup(buf, -1), 1, evbuffer_get_length(buf), f);
	fclose(f);
	evbuffer_free(buf);
}

/* Split a comma-separated token list. */
static void
set_tokens(const char *list)
{
	char *copy = strdup(list), *tok, *save = NULL;

	drv.ntokens = 0;
	drv.tokens = calloc(strlen(list) + 1, sizeof(char *));
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save))
		drv.tokens[drv.ntokens++] = tok;
}

/* Default tokens: distinct valid-looking ones per provider. */
static void
default_tokens(void)
{
	int i, count = 16;

	drv.tokens = calloc((size_t)count, sizeof(char *));
	for (i = 0; i < count; i++) {
		drv.tokens[i] = calloc(1, 80);
		if (drv.set.provider == PUSH_PROVIDER_APNS)
			snprintf(drv.tokens[i], 80, "%064x", 0xabc00 + i);
		else
			snprintf(drv.tokens[i], 80, "fcm-device-token-%02d", i);
	}
	drv.ntokens = count;
}

/* Pad the payload to about size bytes with a filler field. */
static char *
sized_payload(int fcm, size_t size)
{
	size_t base = 40, fill = size > base ? size - base : 1;
	char *pad = malloc(fill + 1), *out = NULL;

	memset(pad, 'x', fill);
	pad[fill] = '\0';
	int rv;

	if (fcm)
		rv = asprintf(&out, "{\"data\":{\"pad\":\"%s\"}}", pad);
	else
		rv = asprintf(&out, "{\"aps\":{\"alert\":\"%s\"}}", pad);
	if (rv < 0)
		out = NULL;
	free(pad);
	return out;
}

/* Print the options and exit 2. */
static void
usage(void)
{
	fputs("usage: push-driver --provider apns|fcm --endpoint URL "
	      "[--ca FILE]\n"
	      "  apns: --team-id T --key-id K --key FILE --topic T "
	      "[--token-age S]\n"
	      "  fcm:  --sa FILE [--validate-only]\n"
	      "  -n N --token T[,T...] --payload JSON --payload-size B\n"
	      "  --push-type T --priority P --expiration E --collapse-id C "
	      "--apns-id UUID\n"
	      "  --pool N --timeout-ms MS --ping-interval-ms MS "
	      "--ping-timeout-ms MS\n"
	      "  --queue-limit N --window W --interval-ms MS --burst B "
	      "--retries R\n"
	      "  --flood N --bench --deadline-ms MS --metrics FILE --log\n",
	    stderr);
	exit(2);
}

enum {
	O_PROVIDER = 256,
	O_ENDPOINT,
	O_CA,
	O_TEAM,
	O_KEYID,
	O_KEY,
	O_TOPIC,
	O_AGE,
	O_SA,
	O_VALIDATE,
	O_TOKEN,
	O_PAYLOAD,
	O_PSIZE,
	O_TYPE,
	O_PRIO,
	O_EXP,
	O_COLLAPSE,
	O_APNSID,
	O_POOL,
	O_TIMEOUT,
	O_PINGI,
	O_PINGT,
	O_QLIMIT,
	O_WINDOW,
	O_INTERVAL,
	O_RETRIES,
	O_FLOOD,
	O_BENCH,
	O_DEADLINE,
	O_METRICS,
	O_LOG,
	O_BURST,
};

static const struct option long_opts[] = {
	{ "provider", 1, NULL, O_PROVIDER },
	{ "endpoint", 1, NULL, O_ENDPOINT },
	{ "ca", 1, NULL, O_CA },
	{ "team-id", 1, NULL, O_TEAM },
	{ "key-id", 1, NULL, O_KEYID },
	{ "key", 1, NULL, O_KEY },
	{ "topic", 1, NULL, O_TOPIC },
	{ "token-age", 1, NULL, O_AGE },
	{ "sa", 1, NULL, O_SA },
	{ "validate-only", 0, NULL, O_VALIDATE },
	{ "token", 1, NULL, O_TOKEN },
	{ "payload", 1, NULL, O_PAYLOAD },
	{ "payload-size", 1, NULL, O_PSIZE },
	{ "push-type", 1, NULL, O_TYPE },
	{ "priority", 1, NULL, O_PRIO },
	{ "expiration", 1, NULL, O_EXP },
	{ "collapse-id", 1, NULL, O_COLLAPSE },
	{ "apns-id", 1, NULL, O_APNSID },
	{ "pool", 1, NULL, O_POOL },
	{ "timeout-ms", 1, NULL, O_TIMEOUT },
	{ "ping-interval-ms", 1, NULL, O_PINGI },
	{ "ping-timeout-ms", 1, NULL, O_PINGT },
	{ "queue-limit", 1, NULL, O_QLIMIT },
	{ "window", 1, NULL, O_WINDOW },
	{ "interval-ms", 1, NULL, O_INTERVAL },
	{ "retries", 1, NULL, O_RETRIES },
	{ "flood", 1, NULL, O_FLOOD },
	{ "bench", 0, NULL, O_BENCH },
	{ "deadline-ms", 1, NULL, O_DEADLINE },
	{ "metrics", 1, NULL, O_METRICS },
	{ "log", 0, NULL, O_LOG },
	{ "burst", 1, NULL, O_BURST },
	{ NULL, 0, NULL, 0 },
};

/* Apply one command-line option. */
static void
option(int o, const char *v)
{
	switch (o) {
	case 'n':
		drv.n = atol(v);
		break;
	case O_PROVIDER:
		drv.set.provider = strcmp(v, "fcm") == 0 ? PUSH_PROVIDER_FCM
		                                         : PUSH_PROVIDER_APNS;
		break;
	case O_ENDPOINT:
		drv.set.endpoint = v;
		break;
	case O_CA:
		drv.set.ca_file = v;
		break;
	case O_TEAM:
		drv.set.team_id = v;
		break;
	case O_KEYID:
		drv.set.key_id = v;
		break;
	case O_KEY:
		drv.set.key_pem = slurp(v);
		break;
	case O_TOPIC:
		drv.set.topic = v;
		break;
	case O_AGE:
		drv.set.token_max_age_s = (unsigned)atoi(v);
		break;
	case O_SA:
		drv.set.service_account_json = slurp(v);
		break;
	case O_VALIDATE:
		drv.note.validate_only = 1;
		break;
	case O_TOKEN:
		set_tokens(v);
		break;
	case O_PAYLOAD:
		drv.note.payload = v;
		break;
	case O_PSIZE:
		drv.note.payload = sized_payload(
		    drv.set.provider == PUSH_PROVIDER_FCM, (size_t)atol(v));
		break;
	case O_TYPE:
		drv.note.push_type = v;
		break;
	case O_PRIO:
		drv.note.priority = atoi(v);
		break;
	case O_EXP:
		drv.note.has_expiration = 1;
		drv.note.expiration = atoll(v);
		break;
	case O_COLLAPSE:
		drv.note.collapse_id = v;
		break;
	case O_APNSID:
		drv.note.apns_id = v;
		break;
	case O_POOL:
		drv.set.pool_size = (unsigned)atoi(v);
		break;
	case O_TIMEOUT:
		drv.set.request_timeout_ms = (unsigned)atoi(v);
		break;
	case O_PINGI:
		drv.set.ping_interval_ms = (unsigned)atoi(v);
		break;
	case O_PINGT:
		drv.set.ping_timeout_ms = (unsigned)atoi(v);
		break;
	case O_QLIMIT:
		drv.set.queue_limit = (unsigned)atoi(v);
		break;
	case O_WINDOW:
		drv.window = atol(v);
		break;
	case O_INTERVAL:
		drv.interval_ms = (unsigned)atoi(v);
		break;
	case O_RETRIES:
		drv.retries = atoi(v);
		break;
	case O_FLOOD:
		drv.flood = atol(v);
		break;
	case O_BENCH:
		drv.bench = 1;
		break;
	case O_BURST:
		drv.burst = atol(v);
		break;
	case O_DEADLINE:
		drv.deadline_ms = atol(v);
		break;
	case O_METRICS:
		drv.metrics_file = v;
		break;
	case O_LOG:
		drv.set.log = log_cb;
		drv.set.log_level = PUSH_LOG_DEBUG;
		break;
	default:
		usage();
	}
}

/* Allocate the per-index arrays for n notifications. */
static void
alloc_arrays(long n)
{
	drv.attempt = calloc((size_t)n + 1, 1);
	drv.calls = calloc((size_t)n + 1, 1);
	drv.lat_ms = calloc((size_t)n + 1, sizeof(float));
	drv.t_sub = calloc((size_t)n + 1, sizeof(double));
	if (drv.attempt == NULL || drv.calls == NULL || drv.lat_ms == NULL ||
	    drv.t_sub == NULL) {
		fprintf(stderr, "push-driver: out of memory\n");
		exit(2);
	}
}

/* Parse options, run, print the summary. */
int
main(int argc, char **argv)
{
	const char *cause = NULL;
	struct push_counters k;
	struct timeval tv;
	double elapsed;
	int o;

	drv.n = 1;
	drv.burst = 1;
	drv.deadline_ms = 60000;
	while ((o = getopt_long(argc, argv, "n:", long_opts, NULL)) != -1)
		option(o, optarg);
	if (drv.tokens == NULL)
		default_tokens();
	if (drv.note.payload == NULL)
		drv.note.payload = drv.set.provider == PUSH_PROVIDER_FCM
		    ? "{\"data\":{\"kind\":\"verify\",\"n\":\"42\"},"
		      "\"android\":{\"priority\":\"HIGH\",\"ttl\":\"30s\"}}"
		    : "{\"aps\":{\"alert\":\"Verify your identity\"}}";
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	drv.base = event_base_new();
	drv.client = push_new(drv.base, &drv.set, &cause);
	if (drv.client == NULL) {
		fprintf(stderr, "push-driver: %s\n", cause);
		return 2;
	}
	alloc_arrays(drv.n > 0 ? drv.n : 1);
	tv.tv_sec = drv.deadline_ms / 1000;
	tv.tv_usec = (drv.deadline_ms % 1000) * 1000;
	drv.deadline_ev = evtimer_new(drv.base, deadline_cb, NULL);
	evtimer_add(drv.deadline_ev, &tv);

	drv.t0 = now_ms();
	if (drv.flood > 0) {
		flood(drv.flood);
		drv.next = drv.n;
	} else if (drv.interval_ms > 0) {
		tv.tv_sec = drv.interval_ms / 1000;
		tv.tv_usec = (drv.interval_ms % 1000) * 1000;
		drv.pace_ev =
		    event_new(drv.base, -1, EV_PERSIST, pace_cb, NULL);
		event_add(drv.pace_ev, &tv);
		pace_cb(-1, 0, NULL);
	} else {
		fill_window();
	}
	if (!(drv.finals >= drv.n && drv.outstanding == 0))
		event_base_dispatch(drv.base);
	elapsed = now_ms() - drv.t0;

	drv.stopping = 1;
	push_counters_read(drv.client, &k);
	if (drv.metrics_file != NULL)
		write_metrics();
	push_free(drv.client);
	summary(elapsed, &k);
	if (drv.pace_ev != NULL)
		event_free(drv.pace_ev);
	event_free(drv.deadline_ev);
	event_base_free(drv.base);
	return 0;
}
