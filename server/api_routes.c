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
	{ "DELETE", "/v1/technicians/{id}", api_technicians_delete, AUTH_ADMIN,
	    false },

	{ "POST", "/v1/verifications", api_verifications_create,
	    AUTH_TECHNICIAN, false },
	{ "GET", "/v1/verifications", api_verifications_list, AUTH_TECHNICIAN,
	    false },
	{ "GET", "/v1/verifications/{id}", api_verifications_get,
	    AUTH_TECHNICIAN, false },
	{ "GET", "/v1/verifications/{id}/watch", api_verifications_watch,
	    AUTH_TECHNICIAN, false },
	{ "POST", "/v1/verifications/{id}/code", api_verifications_code,
	    AUTH_TECHNICIAN, false },
	{ "POST", "/v1/verifications/{id}/decision", api_verifications_decision,
	    AUTH_TECHNICIAN, false },
	{ "POST", "/v1/verifications/{id}/cancel", api_verifications_cancel,
	    AUTH_TECHNICIAN, true },

	{ "POST", "/v1/users/{id}/enrollments", api_enrollments_create,
	    AUTH_TECHNICIAN, true },
	{ "GET", "/v1/users/{id}/devices", api_devices_list, AUTH_TECHNICIAN,
	    false },
	{ "DELETE", "/v1/devices/{id}", api_devices_delete, AUTH_TECHNICIAN,
	    false },

	{ "POST", "/v1/device/enroll", api_device_enroll, AUTH_NONE, false },
	{ "PUT", "/v1/device/push-token", api_device_push_token, AUTH_DEVICE,
	    false },
	{ "POST", "/v1/device/token", api_device_token, AUTH_NONE, false },
	{ "GET", "/v1/device/prompts", api_device_prompts, AUTH_DEVICE, false },
	{ "POST", "/v1/device/prompts/{id}/decision", api_device_decision,
	    AUTH_DEVICE, false },

	{ "PUT", "/v1/customers/{id}/directory", api_directory_put, AUTH_ADMIN,
	    false },
	{ "GET", "/v1/customers/{id}/directory", api_directory_get, AUTH_ADMIN,
	    false },
	{ "POST", "/v1/customers/{id}/directory/test", api_directory_test,
	    AUTH_ADMIN, true },
	{ "POST", "/v1/customers/{id}/directory/sync", api_directory_sync,
	    AUTH_ADMIN, true },
	{ "PUT", "/v1/customers/{id}/alert-policy", api_alert_policy_put,
	    AUTH_ADMIN, false },
	{ "GET", "/v1/customers/{id}/alert-policy", api_alert_policy_get,
	    AUTH_ADMIN, false },
	{ "POST", "/v1/device/lockout-report", api_device_lockout_report,
	    AUTH_DEVICE, true },

	/* Self-service: the session routes check the session token. */
	{ "POST", "/v1/selfservice/sessions", api_selfservice_start, AUTH_NONE,
	    false },
	{ "GET", "/v1/selfservice/sessions/{id}", api_selfservice_get,
	    AUTH_NONE, false },
	{ "POST", "/v1/selfservice/sessions/{id}/challenge",
	    api_selfservice_challenge, AUTH_NONE, false },
	{ "POST", "/v1/selfservice/sessions/{id}/verify",
	    api_selfservice_verify, AUTH_NONE, false },
	{ "GET", "/v1/selfservice/sessions/{id}/policy", api_selfservice_policy,
	    AUTH_NONE, false },
	{ "POST", "/v1/selfservice/sessions/{id}/password",
	    api_selfservice_password, AUTH_NONE, false },
	{ "POST", "/v1/selfservice/sessions/{id}/unlock",
	    api_selfservice_unlock, AUTH_NONE, true },
	{ "POST", "/v1/device/selfservice", api_device_selfservice, AUTH_DEVICE,
	    false },
	{ "GET", "/reset", api_reset_page, AUTH_NONE, false },

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
