/*
 * Unit tests of server/selfservice.c: the password rules, the binary
 * search of banned-password files (found, absent, both ends, odd line
 * endings, malformed files, and the number of reads on a large file),
 * session tokens and the page's Content-Security-Policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "selfservice.h"

static char tmpdir[] = "/tmp/vouch-selfservice-XXXXXX";

/* The rule a password breaks, or "ok". */
static const char *
rule_of(const char *password, int min_length, bool complexity,
    const char *login, const char *name)
{
	struct selfservice_rules r = {
		.min_length = min_length,
		.complexity = complexity,
		.login = login,
		.display_name = name,
	};
	const char *rule = "?";
	char detail[200] = "";

	if (selfservice_password_check(
	        password, &r, &rule, detail, sizeof(detail)) == 0)
		return "ok";
	assert_true(strlen(detail) > 10);
	return rule;
}

/* Length counts characters, not bytes. */
static void
test_min_length(void **state)
{
	assert_string_equal(
	    rule_of("Abc-123", 8, true, NULL, NULL), "min_length");
	assert_string_equal(rule_of("Abcd-123", 8, true, NULL, NULL), "ok");
	/* Seven characters in fourteen bytes. */
	assert_string_equal(rule_of("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                            "\xc3\xa9\xc3\xa9\xc3\xa9",
	                        8, false, NULL, NULL),
	    "min_length");
	assert_int_equal(selfservice_chars("\xc3\xa9t\xc3\xa9"), 3);
}

/* Passwords over 256 characters are refused. */
static void
test_max_length(void **state)
{
	char long_pw[300];

	memset(long_pw, 'a', sizeof(long_pw) - 1);
	long_pw[sizeof(long_pw) - 1] = '\0';
	memcpy(long_pw, "A1-", 3);
	assert_string_equal(
	    rule_of(long_pw, 8, true, NULL, NULL), "max_length");
	long_pw[256] = '\0';
	assert_string_equal(rule_of(long_pw, 8, true, NULL, NULL), "ok");
}

/* Three of the five kinds of character, when complexity is on. */
static void
test_complexity(void **state)
{
	assert_string_equal(
	    rule_of("alllowercase", 8, true, NULL, NULL), "complexity");
	assert_string_equal(
	    rule_of("lower1234", 8, true, NULL, NULL), "complexity");
	assert_string_equal(rule_of("Lower1234", 8, true, NULL, NULL), "ok");
	assert_string_equal(rule_of("lower-1234", 8, true, NULL, NULL), "ok");
	assert_string_equal(rule_of("UPPER lower!", 8, true, NULL, NULL), "ok");
	/* A space is not one of AD's symbols. */
	assert_string_equal(
	    rule_of("UPPER lower", 8, true, NULL, NULL), "complexity");
	/* Letters of another script count as a kind of their own. */
	assert_string_equal(rule_of("lower\xe6\x97\xa5\xe6\x9c\xac"
	                            "12",
	                        8, true, NULL, NULL),
	    "ok");
	/* Off: anything long enough. */
	assert_string_equal(
	    rule_of("alllowercase", 8, false, NULL, NULL), "ok");
}

/* The account name, without realm or domain, of 3+ characters. */
static void
test_contains_login(void **state)
{
	assert_string_equal(
	    rule_of("xxTJones-99", 8, true, "tjones@ajax.example", NULL),
	    "contains_login");
	assert_string_equal(
	    rule_of("xxtjones-99", 8, true, "AJAX\\TJones", NULL),
	    "contains_login");
	assert_string_equal(
	    rule_of("Ajax.example-1", 8, true, "tjones@ajax.example", NULL),
	    "ok");
	/* Two-character names are not checked, as in AD. */
	assert_string_equal(
	    rule_of("Password-jo1", 8, true, "jo@x.example", NULL), "ok");
}

/* Every part of the display name of 3+ characters. */
static void
test_contains_name(void **state)
{
	const char *name = "Tom O. Jones-Smith";

	assert_string_equal(
	    rule_of("Secret-tom-1", 8, true, NULL, name), "contains_name");
	assert_string_equal(
	    rule_of("Secret-SMITH1", 8, true, NULL, name), "contains_name");
	assert_string_equal(
	    rule_of("Secret-jones1", 8, true, NULL, name), "contains_name");
	/* "O" is too short to count. */
	assert_string_equal(
	    rule_of("Secret-O-Zz19", 8, true, NULL, name), "ok");
	assert_string_equal(
	    rule_of("Correct-Horse-9", 8, true, NULL, "Al_Bo#Cy\tDe"), "ok");
}

/* The first rule broken is reported. */
static void
test_rule_order(void **state)
{
	assert_string_equal(
	    rule_of("tom", 8, true, "tom@x", "Tom"), "min_length");
	assert_string_equal(
	    rule_of("tomtomtom", 8, true, "tom@x", "Tom"), "complexity");
	assert_string_equal(
	    rule_of("Tomtom-99", 8, true, "tom@x", "Tom"), "contains_login");
}

/* --- banned-password files --------------------------------------------- */

/* Upper-case hex SHA-1 of s. */
static void
sha1_hex(const char *s, char out[41])
{
	unsigned char d[20];
	unsigned int len = 0, i;

	assert_int_equal(
	    EVP_Digest(s, strlen(s), d, &len, EVP_sha1(), NULL), 1);
	for (i = 0; i < 20; i++)
		snprintf(out + 2 * i, 3, "%02X", d[i]);
}

/* Write text to a new file under tmpdir; returns its path (free it). */
static char *
write_tmp(const char *name, const char *text, size_t len)
{
	char *path;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	return path;
}

/* Search the file at path for hex; 1, 0 or -1. */
static int
search_file(const char *path, const char *hex, unsigned *reads)
{
	FILE *f = fopen(path, "r");
	long size;
	int rc;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rc = selfservice_banned_search(fileno(f), (uint64_t)size, hex, reads);
	fclose(f);
	return rc;
}

/* Hashes 000..0N with counts, one per line, sorted. */
static char *
small_list(int n, const char *eol, bool final_eol, size_t *len)
{
	char *text;
	size_t size;
	FILE *f = open_memstream(&text, &size);
	int i;

	for (i = 0; i < n; i++)
		fprintf(f, "%040X:%d%s", i * 2 + 2, i + 1,
		    i + 1 < n || final_eol ? eol : "");
	fclose(f);
	*len = size;
	return text;
}

/* Each present hash is found, each absent one is not. */
static void
check_small(const char *name, const char *eol, bool final_eol)
{
	char hex[41], *text, *path;
	size_t len;
	int i, n = 37;

	text = small_list(n, eol, final_eol, &len);
	path = write_tmp(name, text, len);
	for (i = 0; i <= 2 * n + 2; i++) {
		snprintf(hex, sizeof(hex), "%040X", i);
		assert_int_equal(search_file(path, hex, NULL),
		    i >= 2 && i % 2 == 0 && i <= 2 * n ? 1 : 0);
	}
	/* Lower-case input is the same hash. */
	snprintf(hex, sizeof(hex), "%040x", 0x1e);
	assert_int_equal(search_file(path, hex, NULL), 1);
	unlink(path);
	free(path);
	free(text);
}

static void
test_banned_small(void **state)
{
	check_small("lf", "\n", true);
	check_small("crlf", "\r\n", true);
	check_small("no-final-eol", "\n", false);
	check_small("crlf-no-final", "\r\n", false);
}

/* Files of zero, one and two lines. */
static void
test_banned_tiny(void **state)
{
	static const char one[] =
	    "7C4A8D09CA3762AF61E59520943DC26494F8941B:24230577\n";
	char *path;

	path = write_tmp("empty", "", 0);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941B", NULL),
	    0);
	unlink(path);
	free(path);

	path = write_tmp("one", one, sizeof(one) - 1);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941B", NULL),
	    1);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941A", NULL),
	    0);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941C", NULL),
	    0);
	unlink(path);
	free(path);
}

/* Garbage and bad queries are errors, not answers. */
static void
test_banned_malformed(void **state)
{
	static const char junk[] = "not a hash at all\nnor this\n";
	char *path, *text;
	size_t len = 4000;

	path = write_tmp("junk", junk, sizeof(junk) - 1);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941B", NULL),
	    -1);
	unlink(path);
	free(path);

	/* One line far longer than a line can be. */
	text = malloc(len);
	assert_non_null(text);
	memset(text, 'A', len);
	path = write_tmp("long", text, len);
	assert_int_equal(
	    search_file(path, "7C4A8D09CA3762AF61E59520943DC26494F8941B", NULL),
	    -1);
	unlink(path);
	free(path);
	free(text);

	assert_int_equal(selfservice_banned_search(-1, 100, "123", NULL), -1);
	assert_int_equal(selfservice_banned_search(-1, 100,
	                     "ZZ4A8D09CA3762AF61E59520943DC26494F8941B", NULL),
	    -1);
	assert_int_equal(
	    selfservice_banned_check("/nonexistent/list", "password"), -1);
}

/* qsort comparison of 41-byte hex strings. */
static int
hex_order(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A list of 200,000 random hashes: every probe found in a few dozen
   reads, absent hashes not found, and real passwords by file path. */
static void
test_banned_large(void **state)
{
	enum { N = 200000 };
	char(*hashes)[41] = malloc(N * sizeof(*hashes));
	char hex[41], *path;
	unsigned char raw[20];
	unsigned reads, max_reads = 0;
	FILE *f;
	int i, j;

	assert_non_null(hashes);
	for (i = 0; i < N - 2; i++) {
		for (j = 0; j < 20; j++)
			raw[j] = (unsigned char)(random() & 0xff);
		for (j = 0; j < 20; j++)
			snprintf(hashes[i] + 2 * j, 3, "%02X", raw[j]);
	}
	sha1_hex("password", hashes[N - 2]);
	sha1_hex("Summer2024!", hashes[N - 1]);
	qsort(hashes, N, sizeof(*hashes), hex_order);

	assert_true(asprintf(&path, "%s/large", tmpdir) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	for (i = 0; i < N; i++)
		fprintf(f, "%s:%d\r\n", hashes[i], i % 1000 + 1);
	fclose(f);

	for (i = 0; i < N; i += 997) {
		reads = 0;
		assert_int_equal(search_file(path, hashes[i], &reads), 1);
		if (reads > max_reads)
			max_reads = reads;
	}
	/* A 10 MB file: about log2(size) probes, each one or two reads. */
	assert_true(max_reads <= 2 * 26);

	for (i = 0; i < 200; i++) {
		snprintf(hex, sizeof(hex), "%s", hashes[i * 991]);
		hex[39] = hex[39] == '0' ? '1' : '0';
		if (bsearch(hex, hashes, N, sizeof(*hashes), hex_order) != NULL)
			continue;
		assert_int_equal(search_file(path, hex, NULL), 0);
	}
	assert_int_equal(selfservice_banned_check(path, "password"), 1);
	assert_int_equal(selfservice_banned_check(path, "Summer2024!"), 1);
	assert_int_equal(selfservice_banned_check(path, "Summer2024?"), 0);
	unlink(path);
	free(path);
	free(hashes);
}

/* --- tokens and the page policy ---------------------------------------- */

/* Tokens have their shape, differ, and hash the same each time. */
static void
test_tokens(void **state)
{
	char a[SELFSERVICE_TOKEN_LEN + 1], b[SELFSERVICE_TOKEN_LEN + 1];
	char ha[SELFSERVICE_HASH_HEX_LEN + 1], hb[SELFSERVICE_HASH_HEX_LEN + 1];
	char again[SELFSERVICE_HASH_HEX_LEN + 1];

	selfservice_token_new(a, ha);
	selfservice_token_new(b, hb);
	assert_int_equal(strlen(a), SELFSERVICE_TOKEN_LEN);
	assert_memory_equal(a, "ss_", 3);
	assert_string_not_equal(a, b);
	assert_string_not_equal(ha, hb);
	assert_int_equal(selfservice_token_hash(a, again), 0);
	assert_string_equal(again, ha);

	assert_int_equal(selfservice_token_hash("ss_short", again), -1);
	assert_int_equal(
	    selfservice_token_hash(
	        "vk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", again),
	    -1);
	assert_int_equal(
	    selfservice_token_hash(
	        "ss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", again),
	    -1);
}

/* The policy allows exactly the inline blocks, by hash. */
static void
test_page_csp(void **state)
{
	static const char page[] = "<!doctype html><style>p{color:red}</style>"
	                           "<p>hi</p><script>alert(1)</script>";
	/* echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64 */
	static const char script_hash[] =
	    "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='";
	char csp[512];

	assert_int_equal(
	    selfservice_page_csp(page, sizeof(page) - 1, csp, sizeof(csp)), 0);
	assert_non_null(strstr(csp, "default-src 'none'"));
	assert_non_null(strstr(csp, script_hash));
	assert_non_null(strstr(csp, "style-src 'sha256-"));
	assert_non_null(strstr(csp, "frame-ancestors 'none'"));
	assert_non_null(strstr(csp, "connect-src 'self'"));
	assert_null(strstr(csp, "unsafe"));

	assert_int_equal(
	    selfservice_page_csp("<p>x</p>", 8, csp, sizeof(csp)), 0);
	assert_non_null(strstr(csp, "script-src 'none'"));
	assert_non_null(strstr(csp, "style-src 'none'"));

	assert_int_equal(
	    selfservice_page_csp("<script>x", 9, csp, sizeof(csp)), -1);
	assert_int_equal(
	    selfservice_page_csp(page, sizeof(page) - 1, csp, 40), -1);
}

static int
setup(void **state)
{
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_min_length),
		cmocka_unit_test(test_max_length),
		cmocka_unit_test(test_complexity),
		cmocka_unit_test(test_contains_login),
		cmocka_unit_test(test_contains_name),
		cmocka_unit_test(test_rule_order),
		cmocka_unit_test(test_banned_small),
		cmocka_unit_test(test_banned_tiny),
		cmocka_unit_test(test_banned_malformed),
		cmocka_unit_test(test_banned_large),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_page_csp),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
