/*
 * Customers of an MSP: create, list, get. Every query is scoped by the
 * caller's MSP id, so another MSP's customer is simply not found.
 */
#include "api.h"
#include "api_routes.h"

static const char sql_customer_create[] =
    "WITH c AS ("
    "  INSERT INTO customers (msp_id, id, name, external_ref)"
    "  VALUES ($1, gen_random_uuid(), $2, $3) RETURNING *),"
    " e AS (SELECT audit_append($1, 'customer.created', 'technician', $4,"
    "  'customer', c.id, jsonb_build_object('name', c.name,"
    "  'external_ref', c.external_ref)) FROM c)"
    " SELECT customer_json(c)::text FROM c, e";

static const char sql_customer_get[] =
    "SELECT customer_json(c)::text FROM customers c"
    " WHERE c.msp_id = $1 AND c.id = $2";

static const char sql_customer_list[] =
    "SELECT customer_json(c)::text, rfc3339(c.created_at), c.id"
    " FROM customers c WHERE c.msp_id = $1"
    " AND ($2::timestamptz IS NULL"
    "  OR (c.created_at, c.id) > ($2::timestamptz, $3::uuid))"
    " ORDER BY c.created_at, c.id LIMIT $4";

/* POST /v1/customers {name, external_ref?} */
void
api_customers_create(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *name, *external_ref, *params[4];

	if (api_field_string(req, "name", API_REQUIRED, 1, 200, &name) < 0 ||
	    api_field_string(
	        req, "external_ref", API_NULLABLE, 0, 200, &external_ref) < 0)
		return;

	params[0] = who->msp_id;
	params[1] = name;
	params[2] = external_ref;
	params[3] = who->technician_id;
	api_query_object(
	    req, sql_customer_create, 4, params, 201, "no such customer");
}

/* GET /v1/customers/{id} */
void
api_customers_get(struct http_req *req)
{
	const struct auth_who *who = api_who(req);
	const char *id = http_req_param(req, "id"), *params[2];

	if (api_bad_id(req, id, "customer"))
		return;
	params[0] = who->msp_id;
	params[1] = id;
	api_query_object(
	    req, sql_customer_get, 2, params, 200, "no such customer");
}

/* GET /v1/customers?limit=&cursor= */
void
api_customers_list(struct http_req *req)
{
	api_list_paged(req, sql_customer_list);
}
