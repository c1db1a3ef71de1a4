/*
 * The route handlers, one group per api_*.c file, registered by the
 * table in api_routes.c.
 */
#ifndef VOUCH_API_ROUTES_H
#define VOUCH_API_ROUTES_H

struct http_req;

void api_healthz(struct http_req *req);
void api_readyz(struct http_req *req);
void api_metrics(struct http_req *req);
void api_openapi(struct http_req *req);

void api_customers_create(struct http_req *req);
void api_customers_get(struct http_req *req);
void api_customers_list(struct http_req *req);

void api_users_create(struct http_req *req);
void api_users_get(struct http_req *req);
void api_users_list(struct http_req *req);
void api_users_patch(struct http_req *req);

void api_technicians_create(struct http_req *req);
void api_technicians_get(struct http_req *req);
void api_technicians_list(struct http_req *req);
void api_technicians_delete(struct http_req *req);

void api_verifications_create(struct http_req *req);
void api_verifications_get(struct http_req *req);
void api_verifications_list(struct http_req *req);
void api_verifications_watch(struct http_req *req);
void api_verifications_code(struct http_req *req);
void api_verifications_decision(struct http_req *req);
void api_verifications_cancel(struct http_req *req);

void api_enrollments_create(struct http_req *req);
void api_devices_list(struct http_req *req);
void api_devices_delete(struct http_req *req);

void api_device_enroll(struct http_req *req);
void api_device_push_token(struct http_req *req);
void api_device_token(struct http_req *req);
void api_device_prompts(struct http_req *req);
void api_device_decision(struct http_req *req);
void api_device_teardown(void);

void api_directory_put(struct http_req *req);
void api_directory_get(struct http_req *req);
void api_directory_test(struct http_req *req);
void api_directory_sync(struct http_req *req);
void api_alert_policy_put(struct http_req *req);
void api_alert_policy_get(struct http_req *req);
void api_device_lockout_report(struct http_req *req);

void api_selfservice_start(struct http_req *req);
void api_selfservice_get(struct http_req *req);
void api_selfservice_challenge(struct http_req *req);
void api_selfservice_verify(struct http_req *req);
void api_selfservice_policy(struct http_req *req);
void api_selfservice_password(struct http_req *req);
void api_selfservice_unlock(struct http_req *req);
void api_device_selfservice(struct http_req *req);
void api_reset_page(struct http_req *req);

void api_events_list(struct http_req *req);
void api_events_export(struct http_req *req);
void api_events_verify(struct http_req *req);

#endif
