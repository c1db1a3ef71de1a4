/*
 * Liveness, readiness and metrics: the unauthenticated routes an
 * orchestrator and a Prometheus scraper use.
 */
#include <event2/buffer.h>

#include "api_routes.h"
#include "app.h"
#include "db.h"
#include "http.h"
#include "metrics.h"

/* 200 while the process runs. */
void
api_healthz(struct http_req *req)
{
	static const char body[] = "{\"status\":\"ok\"}";

	http_reply_body(req, 200, "application/json", body, sizeof(body) - 1);
}

/* 200 when PostgreSQL answers and the schema is current, else 503. */
void
api_readyz(struct http_req *req)
{
	static const char body[] = "{\"status\":\"ready\"}";

	if (!db_ready(app.db)) {
		http_reply_problem(req, 503, "unavailable", NULL,
		    "the database is unreachable or its schema is not current");
		return;
	}
	http_reply_body(req, 200, "application/json", body, sizeof(body) - 1);
}

/* Every registered collector in Prometheus text format. */
void
api_metrics(struct http_req *req)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;

	if (out == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	metrics_render(out);
	len = evbuffer_get_length(out);
	http_reply_body(req, 200, "text/plain; version=0.0.4",
	    evbuffer_pullup(out, -1), len);
	evbuffer_free(out);
}

/* The embedded OpenAPI document (server/openapi.json). */
extern const char openapi_json[];
extern const size_t openapi_json_len;

/* GET /openapi.json */
void
api_openapi(struct http_req *req)
{
	http_reply_body(
	    req, 200, "application/json", openapi_json, openapi_json_len);
}
