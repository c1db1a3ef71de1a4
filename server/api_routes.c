/*
 * The route table of vouchd: method, path pattern, handler and the
 * credential each route needs.
 */
#include <stddef.h>

#include "api.h"
#include "api_routes.h"
#include "auth.h"

static const struct http_route routes[] = {
	{ "GET", "/healthz", api_healthz, AUTH_NONE, false },
	{ "GET", "/readyz", api_readyz, AUTH_NONE, false },
	{ "GET", "/metrics", api_metrics, AUTH_NONE, false },
	{ "GET", "/openapi.json", api_openapi, AUTH_NONE, false },

	{ "POST", "/v1/customers", api_customers_create, AUTH_TECHNICIAN,
	    false },
	{ "GET", "/v1/customers", api_customers_list, AUTH_TECHNICIAN, false },
	{ "GET", "/v1/customers/{id}", api_customers_get, AUTH_TECHNICIAN,
	    false },

	{ "POST", "/v1/users", api_users_create, AUTH_TECHNICIAN, false },
	{ "GET", "/v1/users", api_users_list, AUTH_TECHNICIAN, false },
	{ "GET", "/v1/users/{id}", api_users_get, AUTH_TECHNICIAN, false },
	{ "PATCH", "/v1/users/{id}", api_users_patch, AUTH_TECHNICIAN, false },

	{ "POST", "/v1/technicians", api_technicians_create, AUTH_ADMIN,
	    false },
	{ "GET", "/v1/technicians", api_technicians_list, AUTH_ADMIN, false },
	{ "GET", "/v1/technicians/{id}", api_technicians_get, AUTH_ADMIN,
	    false },
	{ "DELETE", "/v1/technicians/{id}", api_technicians_delete,
	    AUTH_ADMIN, false },

	{ "GET", "/v1/events", api_events_list, AUTH_TECHNICIAN, false },
	{ "GET", "/v1/events/export", api_events_export, AUTH_TECHNICIAN,
	    false },
	{ "GET", "/v1/events/verify", api_events_verify, AUTH_TECHNICIAN,
	    false },
};

/* Every route of the API. */
const struct http_route *
api_routes(size_t *count)
{
	*count = sizeof(routes) / sizeof(routes[0]);
	return routes;
}
