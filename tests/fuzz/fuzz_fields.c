/*
 * libFuzzer target over the parsers of request fields and stored
 * secrets: time, phone, address and UTF-8 checks, base64url, enrolment
 * codes, device public keys, and sealed values.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devtoken.h"
#include "otp.h"
#include "secretbox.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = { 1, 2, 3 };
	char *text, normal[13], *out;
	const char *cause;
	uint8_t raw[512];
	size_t len = 0;
	long n;
	int sum = 0;

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	sum += util_rfc3339_valid(text);
	sum += util_e164_valid(text);
	sum += util_email_valid(text);
	sum += util_uuid_valid(text);
	sum += util_utf8_length_ok(text, 0, 1000);
	sum += util_utf8_text_ok(text, 0, 1000);
	n = util_b64url_decode(text, strlen(text), raw, sizeof(raw));
	sum += n > 0 ? raw[0] : 0;
	sum += otp_enrollment_normalise(text, normal) == 0 ? normal[0] : 0;

	out = devtoken_public_key(text, &cause);
	sum += out != NULL;
	free(out);
	out = secretbox_open(key, "ctx", text, &len);
	sum += out != NULL ? (int)len : 0;
	free(out);

	free(text);
	return sum == -1;
}
