/*
 * The client's counters as Prometheus text lines (vouch_push_*, labelled
 * provider="apns"|"fcm"), for the host program's /metrics page. Several
 * clients go into one call so each metric family is written once.
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "push_int.h"

/* Which counter of struct push_counters a simple family prints. */
enum metrics_field {
	MF_SUBMITTED,
	MF_REJECTED,
	MF_IN_FLIGHT,
	MF_QUEUED,
	MF_CONNS_UP,
	MF_CONNECTS,
	MF_RECONNECTS,
	MF_RESENT,
	MF_TOKENS,
};

/* One family with a single value per client. */
struct metrics_family {
	const char *name;
	const char *type;
	const char *help;
	enum metrics_field field;
};

static const struct metrics_family metrics_families[] = {
	{ "vouch_push_submitted_total", "counter",
	    "Notifications accepted for sending.", MF_SUBMITTED },
	{ "vouch_push_rejected_total", "counter",
	    "Notifications refused at submission (queue full, invalid).",
	    MF_REJECTED },
	{ "vouch_push_in_flight", "gauge",
	    "Notifications on an HTTP/2 stream now.", MF_IN_FLIGHT },
	{ "vouch_push_queued", "gauge",
	    "Notifications waiting for a stream now.", MF_QUEUED },
	{ "vouch_push_connections_up", "gauge",
	    "HTTP/2 connections usable now.", MF_CONNS_UP },
	{ "vouch_push_connects_total", "counter", "Connection attempts.",
	    MF_CONNECTS },
	{ "vouch_push_reconnects_total", "counter",
	    "Established connections that were lost or closed.",
	    MF_RECONNECTS },
	{ "vouch_push_resent_total", "counter",
	    "Notifications sent again (GOAWAY, REFUSED_STREAM, lost "
	    "connection, new token).",
	    MF_RESENT },
	{ "vouch_push_token_refreshes_total", "counter",
	    "Provider tokens or OAuth access tokens obtained.", MF_TOKENS },
};

/* The value of a simple family's field. */
static uint64_t
metrics_value(const struct push_counters *k, enum metrics_field f)
{
	switch (f) {
	case MF_SUBMITTED:
		return k->submitted;
	case MF_REJECTED:
		return k->rejected;
	case MF_IN_FLIGHT:
		return k->in_flight;
	case MF_QUEUED:
		return k->queued;
	case MF_CONNS_UP:
		return k->conns_up;
	case MF_CONNECTS:
		return k->connects;
	case MF_RECONNECTS:
		return k->reconnects;
	case MF_RESENT:
		return k->resent;
	case MF_TOKENS:
		return k->token_refreshes;
	}
	return 0;
}

/* True when rows a and b print as the same label set. */
static int
metrics_same_row(size_t a, size_t b)
{
	return push_outcome_table[a].outcome == push_outcome_table[b].outcome &&
	    strcmp(push_outcome_table[a].name, push_outcome_table[b].name) == 0;
}

/*
 * The count of row i together with later rows of the same label set, or
 * 0 when an earlier row already printed that set.
 */
static uint64_t
metrics_row_total(const struct push_client *c, size_t i)
{
	uint64_t n = 0;
	size_t j;

	for (j = 0; j < i; j++) {
		if (metrics_same_row(i, j))
			return 0;
	}
	for (j = i; j < push_outcome_rows; j++) {
		if (metrics_same_row(i, j))
			n += c->stats.by_row[j];
	}
	return n;
}

/* Outcomes by kind and by reason (the table row's name), for one client. */
static int
metrics_outcomes(const struct push_client *c, struct evbuffer *out)
{
	const struct push_outcome_row *row;
	uint64_t n;
	size_t i;
	int rv = 0;

	for (i = 0; i < push_outcome_rows; i++) {
		row = &push_outcome_table[i];
		n = metrics_row_total(c, i);
		if (n == 0)
			continue;
		rv |=
		    evbuffer_add_printf(out,
		        "vouch_push_outcomes_total"
		        "{provider=\"%s\",outcome=\"%s\",reason=\"%s\"} %llu\n",
		        c->name, push_outcome_str(row->outcome), row->name,
		        (unsigned long long)n) < 0;
	}
	return rv;
}

/* Completions by kind, every kind even at zero, for one client. */
static int
metrics_kinds(const struct push_client *c, const struct push_counters *k,
    struct evbuffer *out)
{
	int i, rv = 0;

	for (i = 0; i < PUSH_OUTCOME_COUNT; i++)
		rv |= evbuffer_add_printf(out,
		          "vouch_push_completed_total"
		          "{provider=\"%s\",outcome=\"%s\"} %llu\n",
		          c->name, push_outcome_str((enum push_outcome)i),
		          (unsigned long long)k->outcomes[i]) < 0;
	return rv;
}

/* The latency histogram of one client. */
static int
metrics_latency(const struct push_client *c, const struct push_counters *k,
    struct evbuffer *out)
{
	int i, rv = 0;

	for (i = 0; i < PUSH_LATENCY_BUCKETS; i++) {
		if (i < PUSH_LATENCY_BUCKETS - 1)
			rv |= evbuffer_add_printf(out,
			          "vouch_push_latency_seconds_bucket{provider="
			          "\"%s\","
			          "le=\"%g\"} %llu\n",
			          c->name, push_latency_bound(i),
			          (unsigned long long)k->latency[i]) < 0;
		else
			rv |=
			    evbuffer_add_printf(out,
			        "vouch_push_latency_seconds_bucket{provider=\"%"
			        "s\","
			        "le=\"+Inf\"} %llu\n",
			        c->name, (unsigned long long)k->latency[i]) < 0;
	}
	rv |= evbuffer_add_printf(out,
	          "vouch_push_latency_seconds_sum"
	          "{provider=\"%s\"} %.6f\n",
	          c->name, k->latency_sum) < 0;
	rv |= evbuffer_add_printf(out,
	          "vouch_push_latency_seconds_count"
	          "{provider=\"%s\"} %llu\n",
	          c->name, (unsigned long long)k->latency_count) < 0;
	return rv;
}

/* Write every counter of the clients; see push.h. */
int
push_metrics_write(
    struct push_client *const *clients, size_t count, struct evbuffer *out)
{
	const struct metrics_family *f;
	struct push_counters k;
	size_t i, n;
	int rv = 0;

	for (n = 0; n < sizeof(metrics_families) / sizeof(*f); n++) {
		f = &metrics_families[n];
		rv |= evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
		          f->name, f->help, f->name, f->type) < 0;
		for (i = 0; i < count; i++) {
			push_counters_read(clients[i], &k);
			rv |= evbuffer_add_printf(out,
			          "%s{provider=\"%s\"} "
			          "%llu\n",
			          f->name, clients[i]->name,
			          (unsigned long long)metrics_value(
			              &k, f->field)) < 0;
		}
	}

	rv |= evbuffer_add_printf(out,
	          "# HELP vouch_push_completed_total "
	          "Completed notifications by outcome.\n"
	          "# TYPE vouch_push_completed_total counter\n") < 0;
	for (i = 0; i < count; i++) {
		push_counters_read(clients[i], &k);
		rv |= metrics_kinds(clients[i], &k, out);
	}

	rv |= evbuffer_add_printf(out,
	          "# HELP vouch_push_outcomes_total "
	          "Completed notifications by outcome and reason.\n"
	          "# TYPE vouch_push_outcomes_total counter\n") < 0;
	for (i = 0; i < count; i++)
		rv |= metrics_outcomes(clients[i], out);

	rv |= evbuffer_add_printf(out,
	          "# HELP vouch_push_latency_seconds "
	          "Submission to answer.\n"
	          "# TYPE vouch_push_latency_seconds histogram\n") < 0;
	for (i = 0; i < count; i++) {
		push_counters_read(clients[i], &k);
		rv |= metrics_latency(clients[i], &k, out);
	}
	return rv ? -1 : 0;
}
