/*
 * APNs pieces of the push library: the ES256 provider token (checked by
 * decoding it with the alg pinned), the process-wide key sharing and its
 * guarded rotation, and the headers of a notification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>
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

/* A fresh P-256 key as PKCS#8 PEM and its public key. */
static int
setup_keys(void **state)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
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

/* Decode a token with the public key and insist on ES256. */
static jwt_t *
decode_es256(const char *token)
{
	jwt_t *jwt = NULL;

	assert_int_equal(jwt_decode(&jwt, token, (const unsigned char *)pub_pem,
	                     (int)strlen(pub_pem)),
	    0);
	assert_int_equal(jwt_get_alg(jwt), JWT_ALG_ES256);
	return jwt;
}

/* The token carries kid, iss and iat and verifies with the key. */
static void
test_jwt_claims(void **state)
{
	char *tok =
	    push_apns_jwt("TEAM123456", "KEY1234567", priv_pem, 1700000000);
	jwt_t *jwt;

	assert_non_null(tok);
	jwt = decode_es256(tok);
	assert_string_equal(jwt_get_header(jwt, "kid"), "KEY1234567");
	assert_string_equal(jwt_get_grant(jwt, "iss"), "TEAM123456");
	assert_int_equal(jwt_get_grant_int(jwt, "iat"), 1700000000);
	jwt_free(jwt);
	free(tok);

	assert_null(push_apns_jwt("T", "K", "not a key", 1));
}

/* One key object per key; one token shared; rotation guarded. */
static void
test_key_sharing_and_rotation(void **state)
{
	const char *cause = NULL, *b1, *b2, *b3;
	struct push_apns_key *k1, *k2;
	uint64_t g1, g2, g3;
	int made;
	jwt_t *jwt;

	k1 = push_apns_key_get("TEAM123456", "KEY1234567", priv_pem, &cause);
	k2 = push_apns_key_get("TEAM123456", "KEY1234567", priv_pem, &cause);
	assert_non_null(k1);
	assert_ptr_equal(k1, k2);

	b1 = push_apns_bearer(k1, 3000, &g1, &made);
	assert_int_equal(made, 0);
	assert_memory_equal(b1, "bearer ", 7);
	jwt = decode_es256(b1 + 7);
	assert_true(llabs(jwt_get_grant_int(jwt, "iat") - time(NULL)) < 5);
	jwt_free(jwt);
	b2 = push_apns_bearer(k2, 3000, &g2, &made);
	assert_ptr_equal(b1, b2);
	assert_int_equal(g1, g2);

	/* An expired report for an old generation changes nothing. */
	assert_int_equal(push_apns_key_expired(k1, g1 + 7), 0);
	/* For the current one it rotates once... */
	assert_int_equal(push_apns_key_expired(k1, g1), 1);
	b3 = push_apns_bearer(k1, 3000, &g3, &made);
	assert_int_equal(made, 1);
	assert_int_equal(g3, g1 + 1);
	assert_non_null(b3);
	/* ...and not again within a minute, even for the new token. */
	assert_int_equal(push_apns_key_expired(k1, g3), 0);
	push_apns_bearer(k1, 3000, &g2, &made);
	assert_int_equal(made, 0);
	assert_int_equal(g2, g3);

	/* Age rotation: a max age of one second rotates a second later. */
	{
		struct timespec ts = { 1, 100000000 };

		nanosleep(&ts, NULL);
	}
	push_apns_bearer(k1, 1, &g2, &made);
	assert_int_equal(made, 1);
	assert_int_equal(g2, g3 + 1);

	push_apns_key_put(k2);
	push_apns_key_put(k1);

	assert_null(push_apns_key_get("T", "K", "junk", &cause));
	assert_non_null(cause);
}

/* A header's value in a built request, or NULL. */
static const char *
hdr(const struct push_req *req, const char *name)
{
	int i;

	for (i = 0; i < req->nhdrs; i++) {
		if (strcmp(req->hdrs[i].name, name) == 0)
			return req->hdrs[i].value;
	}
	return NULL;
}

/* Headers: defaults, every option, and refused notifications. */
static void
test_build(void **state)
{
	struct push_client c = { 0 };
	struct push_req *req;
	struct push_note n = { 0 };
	const char *cause;
	const char *id;
	char big[5000];

	n.device_token = "00aaff";
	n.payload = "{\"aps\":{}}";
	req = push_req_new(&c, PUSH_REQ_NOTE);
	assert_int_equal(push_apns_build(req, "com.x", &n, &cause), 0);
	assert_string_equal(req->path, "/3/device/00aaff");
	assert_string_equal(hdr(req, "apns-topic"), "com.x");
	assert_string_equal(hdr(req, "apns-push-type"), "alert");
	id = hdr(req, "apns-id");
	assert_non_null(id);
	assert_int_equal(strlen(id), 36);
	assert_int_equal(id[14], '4');
	assert_null(hdr(req, "apns-priority"));
	assert_null(hdr(req, "apns-expiration"));
	assert_null(hdr(req, "apns-collapse-id"));
	assert_string_equal(req->body, "{\"aps\":{}}");
	assert_string_equal(req->tail, "aaff");
	push_req_free(req);

	n.push_type = "background";
	n.priority = 5;
	n.has_expiration = 1;
	n.expiration = 0;
	n.collapse_id = "verify-1";
	n.apns_id = "123E4567-E89B-12D3-A456-426614174000";
	req = push_req_new(&c, PUSH_REQ_NOTE);
	assert_int_equal(push_apns_build(req, "com.x", &n, &cause), 0);
	assert_string_equal(hdr(req, "apns-push-type"), "background");
	assert_string_equal(hdr(req, "apns-priority"), "5");
	assert_string_equal(hdr(req, "apns-expiration"), "0");
	assert_string_equal(hdr(req, "apns-collapse-id"), "verify-1");
	assert_string_equal(hdr(req, "apns-id"), n.apns_id);
	push_req_free(req);

#define REFUSED(field, value) \
	do { \
		struct push_note m = n; \
		m.field = value; \
		req = push_req_new(&c, PUSH_REQ_NOTE); \
		assert_int_equal( \
		    push_apns_build(req, "com.x", &m, &cause), -1); \
		assert_non_null(cause); \
		push_req_free(req); \
	} while (0)
	REFUSED(device_token, "zz");
	REFUSED(device_token, "");
	REFUSED(device_token, NULL);
	REFUSED(payload, "");
	REFUSED(priority, 7);
	REFUSED(apns_id, "not-a-uuid");
	REFUSED(push_type, "Alert!");
	REFUSED(collapse_id,
	    "0123456789012345678901234567890123456789012345678901234567890123"
	    "x");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	REFUSED(payload, big);
#undef REFUSED
}

/* Reading answers: reason, timestamp and apns-id. */
static void
test_answer(void **state)
{
	struct push_client c = { 0 };
	struct push_req *req = push_req_new(&c, PUSH_REQ_NOTE);

	req->status = 410;
	req->resp = strdup("{\"reason\":\"Unregistered\","
	                   "\"timestamp\":1700000000123}");
	req->resp_len = strlen(req->resp);
	req->resp_id = strdup("ABC");
	push_apns_answer(req);
	assert_string_equal(req->reason_buf, "Unregistered");
	assert_int_equal(req->result.timestamp_ms, 1700000000123LL);
	assert_string_equal(req->id_buf, "ABC");
	push_req_free(req);

	req = push_req_new(&c, PUSH_REQ_NOTE);
	req->resp = strdup("not json");
	req->resp_len = strlen(req->resp);
	push_apns_answer(req);
	assert_null(req->reason_buf);
	push_req_free(req);
}

/* UUIDs are random version 4. */
static void
test_uuid(void **state)
{
	char a[37], b[37];

	assert_int_equal(push_uuid(a), 0);
	assert_int_equal(push_uuid(b), 0);
	assert_string_not_equal(a, b);
	assert_int_equal(a[8], '-');
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89AB", a[19]));
}

/* Run the APNs tests with one fresh key. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_claims),
		cmocka_unit_test(test_key_sharing_and_rotation),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_uuid),
	};

	return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
