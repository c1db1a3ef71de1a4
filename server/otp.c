/*
 * Code generation and checking. Every draw rejects the biased tail of the
 * random range so that all codes are equally likely.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "otp.h"
#include "util.h"

/* No 0/O, 1/I/L, 8/B, 5/S look-alikes: 28 symbols. */
static const char enrol_alphabet[] = "ACDEFGHJKMNPQRTUVWXYZ2345679";

/* A uniform integer in [low, high] by rejection sampling. */
int
otp_uniform(int low, int high)
{
	uint32_t span = (uint32_t)(high - low) + 1, limit, v;

	limit = UINT32_MAX - UINT32_MAX % span;
	do {
		util_random(&v, sizeof(v));
	} while (v >= limit);
	return low + (int)(v % span);
}

/* A decimal code of the given length. */
void
otp_digits(char *out, int digits)
{
	int i;

	for (i = 0; i < digits; i++)
		out[i] = (char)('0' + otp_uniform(0, 9));
	out[digits] = '\0';
}

/* XXXX-XXXX-XXXX from the enrolment alphabet (about 57 bits). */
void
otp_enrollment_code(char out[15])
{
	int i, o = 0;

	for (i = 0; i < 12; i++) {
		if (i == 4 || i == 8)
			out[o++] = '-';
		out[o++] = enrol_alphabet[otp_uniform(
		    0, (int)sizeof(enrol_alphabet) - 2)];
	}
	out[o] = '\0';
}

/* Upper-case the symbols of a typed code and drop spaces and dashes. */
int
otp_enrollment_normalise(const char *typed, char out[13])
{
	int n = 0;

	for (; *typed != '\0'; typed++) {
		if (*typed == '-' || *typed == ' ')
			continue;
		if (n == 12 ||
		    strchr(enrol_alphabet, toupper((unsigned char)*typed)) ==
		        NULL)
			return -1;
		out[n++] = (char)toupper((unsigned char)*typed);
	}
	out[n] = '\0';
	return n == 12 ? 0 : -1;
}

/* HMAC-SHA256 of "context:code", in hex. */
void
otp_hash(const uint8_t key[32], const char *context, const char *code,
    char out[OTP_HASH_HEX_LEN + 1])
{
	uint8_t mac[32];
	unsigned int len = sizeof(mac);
	char message[256];
	int n;

	n = snprintf(message, sizeof(message), "%s:%s", context, code);
	if (n < 0 || (size_t)n >= sizeof(message) ||
	    HMAC(EVP_sha256(), key, 32, (const uint8_t *)message, (size_t)n,
	        mac, &len) == NULL)
		memset(mac, 0, sizeof(mac));
	OPENSSL_cleanse(message, sizeof(message));
	util_hex(mac, sizeof(mac), out);
}

/* Compare a typed code's hash with the stored one in constant time. */
bool
otp_check(const uint8_t key[32], const char *context, const char *code,
    const char *stored_hex)
{
	char hex[OTP_HASH_HEX_LEN + 1];

	if (strlen(stored_hex) != OTP_HASH_HEX_LEN)
		return false;
	otp_hash(key, context, code, hex);
	return CRYPTO_memcmp(hex, stored_hex, OTP_HASH_HEX_LEN) == 0;
}

/* n distinct two-digit numbers including match, shuffled. */
void
otp_match_options(int match, int *options, int n)
{
	int i, j, v, tmp;
	bool taken;

	options[0] = match;
	for (i = 1; i < n; i++) {
		do {
			v = otp_uniform(10, 99);
			taken = false;
			for (j = 0; j < i; j++)
				taken = taken || options[j] == v;
		} while (taken);
		options[i] = v;
	}
	for (i = n - 1; i > 0; i--) {
		j = otp_uniform(0, i);
		tmp = options[i];
		options[i] = options[j];
		options[j] = tmp;
	}
}
