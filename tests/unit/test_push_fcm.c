/*
 * FCM pieces of the push library and the endpoint parser: the RS256
 * JWT-bearer assertion (decoded with the alg pinned), the token answer,
 * the send body built around the caller's message, FCM error bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "push_int.h"

static char *priv_pem;
static char *pub_pem;

/* The contents of a memory BIO as a string. */
static char *
bio_string(BIO *b)
{
	char *data;
	long len = BIO_get_mem_data(b, &data);

	return strndup(data, (size_t)len);
}

/* A fresh RSA key as PEM and its public key. */
static int
setup_keys(void **state)
{
	EVP_PKEY *pk = EVP_RSA_gen(2048);
	BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());

	assert_non_null(pk);
	assert_int_equal(
	    PEM_write_bio_PrivateKey(a, pk, NULL, NULL, 0, NULL, NULL), 1);
	assert_int_equal(PEM_write_bio_PUBKEY(b, pk), 1);
	priv_pem = bio_string(a);
	pub_pem = bio_string(b);
	BIO_free(a);
	BIO_free(b);
	EVP_PKEY_free(pk);
	return 0;
}

/* Free the keys. */
static int
teardown_keys(void **state)
{
	free(priv_pem);
	free(pub_pem);
	return 0;
}

/* The assertion verifies as RS256 and carries Google's claims. */
static void
test_assertion(void **state)
{
	const char *aud = "https://127.0.0.1:9/token";
	char *tok = push_fcm_assertion(
	    "a@b.iam.gserviceaccount.com", priv_pem, aud, 1700000000);
	jwt_t *jwt = NULL;

	assert_non_null(tok);
	assert_int_equal(jwt_decode(&jwt, tok, (const unsigned char *)pub_pem,
	                     (int)strlen(pub_pem)),
	    0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_RS256);
	assert_string_equal(
	    jwt_get_grant(jwt, "iss"), "a@b.iam.gserviceaccount.com");
	assert_string_equal(jwt_get_grant(jwt, "aud"), aud);
	assert_string_equal(jwt_get_grant(jwt, "scope"),
	    "https://www.googleapis.com/auth/firebase.messaging");
	assert_int_equal(jwt_get_grant_int(jwt, "iat"), 1700000000);
	assert_int_equal(jwt_get_grant_int(jwt, "exp"), 1700003600);
	jwt_free(jwt);
	free(tok);
	assert_null(push_fcm_assertion("a", "junk", aud, 1));
}

/* Token endpoint answers. */
static void
test_token_parse(void **state)
{
	const char *ok = "{\"access_token\":\"ya29.x\",\"expires_in\":3599,"
	                 "\"token_type\":\"Bearer\"}";
	char *tok;
	long long ttl;

	assert_int_equal(push_fcm_token_parse(ok, strlen(ok), &tok, &ttl), 0);
	assert_string_equal(tok, "ya29.x");
	assert_int_equal(ttl, 3599);
	free(tok);
#define BAD(s) \
	assert_int_equal(push_fcm_token_parse(s, strlen(s), &tok, &ttl), -1)
	BAD("{\"error\":\"invalid_grant\"}");
	BAD("{\"access_token\":\"\",\"expires_in\":10}");
	BAD("{\"access_token\":\"a\",\"expires_in\":0}");
	BAD("{\"access_token\":\"a\",\"expires_in\":\"10\"}");
	BAD("[1]");
	BAD("nonsense");
#undef BAD
}

/* The send body wraps the caller's message and adds the token. */
static void
test_build(void **state)
{
	struct push_client c = { 0 };
	struct push_note n = { 0 };
	struct push_req *req;
	const char *cause;
	json_t *root, *msg;

	n.device_token = "dev-token-1234";
	n.payload = "{\"data\":{\"k\":\"v\"},\"android\":{\"priority\":"
	            "\"HIGH\",\"ttl\":\"30s\"}}";
	req = push_req_new(&c, PUSH_REQ_NOTE);
	assert_int_equal(push_fcm_build(req, "proj-1", &n, &cause), 0);
	assert_string_equal(req->path, "/v1/projects/proj-1/messages:send");
	assert_string_equal(req->hdrs[0].name, "content-type");
	assert_string_equal(req->hdrs[0].value, "application/json");
	root = json_loads(req->body, 0, NULL);
	msg = json_object_get(root, "message");
	assert_string_equal(
	    json_string_value(json_object_get(msg, "token")), "dev-token-1234");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(msg, "data"), "k")),
	    "v");
	assert_null(json_object_get(root, "validate_only"));
	json_decref(root);
	assert_string_equal(req->tail, "1234");
	push_req_free(req);

	n.validate_only = 1;
	req = push_req_new(&c, PUSH_REQ_NOTE);
	assert_int_equal(push_fcm_build(req, "proj-1", &n, &cause), 0);
	root = json_loads(req->body, 0, NULL);
	assert_true(json_is_true(json_object_get(root, "validate_only")));
	json_decref(root);
	push_req_free(req);

#define REFUSED(tok, pl) \
	do { \
		struct push_note m = n; \
		m.device_token = tok; \
		m.payload = pl; \
		req = push_req_new(&c, PUSH_REQ_NOTE); \
		assert_int_equal(push_fcm_build(req, "p", &m, &cause), -1); \
		assert_non_null(cause); \
		push_req_free(req); \
	} while (0)
	REFUSED("t", "[1]");
	REFUSED("t", "{");
	REFUSED("t", "{\"topic\":\"news\"}");
	REFUSED("t", "{\"token\":\"other\"}");
	REFUSED("t", "{\"a\":1,\"a\":2}");
	REFUSED("", "{}");
	REFUSED("has space", "{}");
	REFUSED("t", NULL);
#undef REFUSED
}

/* Answers: the message name, errorCode over status, status alone. */
static void
test_answer(void **state)
{
	struct push_client c = { 0 };
	struct push_req *req;
	static const char *bodies[][2] = {
		{ "{\"name\":\"projects/p/messages/1\"}", NULL },
		{ "{\"error\":{\"code\":404,\"status\":\"NOT_FOUND\","
		  "\"details\":[{\"@type\":\"type.googleapis.com/google."
		  "firebase.fcm.v1.FcmError\",\"errorCode\":"
		  "\"UNREGISTERED\"}]}}",
		    "UNREGISTERED" },
		{ "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\"}}",
		    "UNAUTHENTICATED" },
		{ "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\","
		  "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
		  "QuotaFailure\"},{\"@type\":\"type.googleapis.com/google."
		  "firebase.fcm.v1.FcmError\",\"errorCode\":"
		  "\"QUOTA_EXCEEDED\"}]}}",
		    "QUOTA_EXCEEDED" },
		{ "<html>", NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		req = push_req_new(&c, PUSH_REQ_NOTE);
		req->resp = strdup(bodies[i][0]);
		req->resp_len = strlen(req->resp);
		push_fcm_answer(req);
		if (bodies[i][1] == NULL)
			assert_null(req->reason_buf);
		else
			assert_string_equal(req->reason_buf, bodies[i][1]);
		if (i == 0)
			assert_string_equal(
			    req->id_buf, "projects/p/messages/1");
		push_req_free(req);
	}
}

/* Endpoint URLs: hosts, IPs, ports, paths, and what is refused. */
static void
test_endpoint(void **state)
{
	struct push_endpoint ep;

	assert_int_equal(
	    push_endpoint_parse("https://api.push.apple.com", &ep), 0);
	assert_string_equal(ep.host, "api.push.apple.com");
	assert_int_equal(ep.port, 443);
	assert_string_equal(ep.authority, "api.push.apple.com");
	assert_string_equal(ep.path, "/");
	assert_false(ep.numeric);
	push_endpoint_clear(&ep);

	assert_int_equal(
	    push_endpoint_parse("https://127.0.0.1:8443/token", &ep), 0);
	assert_string_equal(ep.host, "127.0.0.1");
	assert_int_equal(ep.port, 8443);
	assert_string_equal(ep.authority, "127.0.0.1:8443");
	assert_string_equal(ep.path, "/token");
	assert_true(ep.numeric);
	push_endpoint_clear(&ep);

	assert_int_equal(push_endpoint_parse("https://[::1]:2197", &ep), 0);
	assert_string_equal(ep.host, "::1");
	assert_string_equal(ep.authority, "[::1]:2197");
	assert_true(ep.numeric);
	push_endpoint_clear(&ep);

	assert_int_equal(push_endpoint_parse("http://x", &ep), -1);
	assert_int_equal(push_endpoint_parse("https://", &ep), -1);
	assert_int_equal(push_endpoint_parse("https://x:0", &ep), -1);
	assert_int_equal(push_endpoint_parse("https://x:70000", &ep), -1);
	assert_int_equal(push_endpoint_parse("https://x:12a", &ep), -1);
	assert_int_equal(push_endpoint_parse("https://[::1", &ep), -1);
	assert_int_equal(push_endpoint_parse(NULL, &ep), -1);
}

/* Run the FCM tests with one fresh RSA key. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_assertion),
		cmocka_unit_test(test_token_parse),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_endpoint),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
