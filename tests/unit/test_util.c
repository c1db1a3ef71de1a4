/*
 * Unit tests of server/util.c: encodings, UUIDs and the field format
 * checks that decide 422 answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "util.h"

static void
test_hex(void **state)
{
	char out[9];

	util_hex((const uint8_t[]){ 0x00, 0xab, 0x10, 0xff }, 4, out);
	assert_string_equal(out, "00ab10ff");
}

static void
test_b64url_round_trip(void **state)
{
	uint8_t data[64], back[64];
	char text[128];
	size_t n, len;
	long got;

	for (n = 0; n < sizeof(data); n++)
		data[n] = (uint8_t)(n * 37 + 11);
	for (n = 0; n <= sizeof(data); n++) {
		len = util_b64url_encode(data, n, text);
		assert_int_equal(len, util_b64url_len(n));
		assert_null(strpbrk(text, "+/="));
		got = util_b64url_decode(text, len, back, sizeof(back));
		assert_int_equal(got, (long)n);
		assert_memory_equal(back, data, n);
	}
}

static void
test_b64url_known_and_bad(void **state)
{
	uint8_t out[16];
	char text[16];

	util_b64url_encode("\xfb\xff", 2, text);
	assert_string_equal(text, "-_8");
	assert_int_equal(util_b64url_decode("a", 1, out, sizeof(out)), -1);
	assert_int_equal(util_b64url_decode("ab+c", 4, out, sizeof(out)), -1);
	/* "-_9" has non-zero leftover bits: a second spelling of "-_8". */
	assert_int_equal(util_b64url_decode("-_9", 3, out, sizeof(out)), -1);
	assert_int_equal(util_b64url_decode("AAAAAA", 6, out, 2), -1);
}

static void
test_sha256(void **state)
{
	uint8_t digest[32];
	char hex[65];

	util_sha256("abc", 3, digest);
	util_hex(digest, 32, hex);
	assert_string_equal(hex,
	    "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
}

static void
test_uuid(void **state)
{
	char a[UTIL_UUID_LEN + 1], b[UTIL_UUID_LEN + 1];

	util_uuid_new(a);
	util_uuid_new(b);
	assert_true(util_uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));

	assert_true(util_uuid_valid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
	assert_false(util_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950"));
	assert_false(util_uuid_valid("0f8fad5bxd9cb-469f-a165-70867728950e"));
	assert_false(util_uuid_valid("0f8fad5b-d9cb-469f-a165-70867728950g"));
	assert_false(util_uuid_valid(""));
	assert_false(util_uuid_valid(NULL));
}

static void
test_rfc3339(void **state)
{
	assert_true(util_rfc3339_valid("2026-12-03T15:04:05Z"));
	assert_true(util_rfc3339_valid("2026-12-03T15:04:05.123456Z"));
	assert_true(util_rfc3339_valid("2026-12-03T15:04:05+01:00"));
	assert_false(util_rfc3339_valid("2026-12-03T15:04:05"));
	assert_false(util_rfc3339_valid("2026-13-03T15:04:05Z"));
	assert_false(util_rfc3339_valid("2026-12-03T25:04:05Z"));
	assert_false(util_rfc3339_valid("2026-12-03T15:04:05.Z"));
	assert_false(util_rfc3339_valid("yesterday"));
	assert_false(util_rfc3339_valid("2026-12-03T15:04:05Zjunk"));
}

static void
test_e164(void **state)
{
	assert_true(util_e164_valid("+15551234567"));
	assert_true(util_e164_valid("+4930123456"));
	assert_false(util_e164_valid("15551234567"));
	assert_false(util_e164_valid("+05551234567"));
	assert_false(util_e164_valid("+1555"));
	assert_false(util_e164_valid("+1234567890123456"));
	assert_false(util_e164_valid("+1555 123 4567"));
}

static void
test_email(void **state)
{
	assert_true(util_email_valid("tom@ajax.example"));
	assert_false(util_email_valid("tom"));
	assert_false(util_email_valid("@ajax.example"));
	assert_false(util_email_valid("tom@"));
	assert_false(util_email_valid("tom@a@b"));
	assert_false(util_email_valid("tom smith@ajax.example"));
}

static void
test_utf8_length(void **state)
{
	assert_true(util_utf8_length_ok("Zo\xc3\xab", 1, 3));
	assert_false(util_utf8_length_ok("Zo\xc3\xab", 1, 2));
	assert_false(util_utf8_length_ok("", 1, 2));
	assert_false(util_utf8_length_ok("a\tb", 1, 10));
	assert_false(util_utf8_length_ok("\xc3", 1, 10));
	assert_false(util_utf8_length_ok("\xc0\xaf", 1, 10));
}

static void
test_utf8_decode(void **state)
{
	uint32_t cp = 0;

	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\xc3\xab", 2, &cp), 2);
	assert_int_equal(cp, 0xeb);
	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\xf0\x9f\x94\x91", 4, &cp),
	    4);
	assert_int_equal(cp, 0x1f511);
	/* Overlong, surrogate, truncated, stray continuation. */
	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\xe0\x80\xaf", 3, &cp), 0);
	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\xed\xa0\x80", 3, &cp), 0);
	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\xe2\x82", 2, &cp), 0);
	assert_int_equal(
	    util_utf8_decode((const unsigned char *)"\x80", 1, &cp), 0);
	assert_false(util_utf8_length_ok("a\xed\xa0\x80", 1, 10));
}

static void
test_api_key_format(void **state)
{
	char key[AUTH_KEY_LEN + 1], hash[AUTH_HASH_HEX_LEN + 1];
	char again[AUTH_HASH_HEX_LEN + 1];
	uint8_t raw[40];

	auth_key_new(key, hash);
	assert_int_equal(strlen(key), AUTH_KEY_LEN);
	assert_memory_equal(key, "vk_", 3);
	assert_int_equal(
	    util_b64url_decode(key + 3, strlen(key + 3), raw, sizeof(raw)), 32);
	auth_key_hash(key, again);
	assert_string_equal(hash, again);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_b64url_round_trip),
		cmocka_unit_test(test_b64url_known_and_bad),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_e164),
		cmocka_unit_test(test_email),
		cmocka_unit_test(test_utf8_length),
		cmocka_unit_test(test_utf8_decode),
		cmocka_unit_test(test_api_key_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
