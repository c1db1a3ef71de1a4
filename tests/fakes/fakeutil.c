/*
 * fakeutil: helpers shared by the push fakes. The JWT peek only decodes;
 * the fakes pin the algorithm from it and then let libjwt verify the
 * signature, because libjwt alone trusts the token's own "alg".
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "fakeutil.h"

static const char *fakeutil_prog = "fake";
static uint64_t fakeutil_rng_state;

/* Remember the program name for error messages. */
void
fakeutil_set_prog(const char *prog)
{
	fakeutil_prog = prog;
}

/* Report a startup error and exit with status 2. */
void
fakeutil_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", fakeutil_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* The value of one base64url character, or -1. */
static int
fakeutil_b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decode unpadded base64url, four characters to three bytes. */
long
fakeutil_b64url_decode(const char *in, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t i, bits = 0;
	long n = 0;
	int v;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		v = fakeutil_b64_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

/* Encode bytes as unpadded base64url. */
void
fakeutil_b64url_encode(const unsigned char *in, size_t len, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t acc = 0;
	size_t i, bits = 0, n = 0;

	for (i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[n++] = abc[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[n++] = abc[(acc << (6 - bits)) & 63];
	out[n] = '\0';
}

/* Decode one base64url segment of LEN bytes as a JSON object. */
static json_t *
fakeutil_segment_json(const char *seg, size_t len)
{
	unsigned char *buf;
	json_t *obj = NULL;
	long n;

	buf = malloc(len * 3 / 4 + 1);
	if (buf == NULL)
		return NULL;
	n = fakeutil_b64url_decode(seg, len, buf);
	if (n > 0)
		obj = json_loadb((const char *)buf, (size_t)n, 0, NULL);
	free(buf);
	if (obj != NULL && !json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}

/* Split the token at its two dots and decode the first two parts. */
int
fakeutil_jwt_peek(const char *token, json_t **header, json_t **claims)
{
	const char *dot1, *dot2;

	*header = NULL;
	*claims = NULL;
	dot1 = strchr(token, '.');
	if (dot1 == NULL)
		return -1;
	dot2 = strchr(dot1 + 1, '.');
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		return -1;

	*header = fakeutil_segment_json(token, (size_t)(dot1 - token));
	*claims = fakeutil_segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (*header == NULL || *claims == NULL) {
		json_decref(*header);
		json_decref(*claims);
		*header = NULL;
		*claims = NULL;
		return -1;
	}
	return 0;
}

/* Seed once from the OS, then step a xorshift generator. */
uint64_t
fakeutil_rand64(void)
{
	uint64_t x;

	if (fakeutil_rng_state == 0) {
		if (fakeutil_random((unsigned char *)&fakeutil_rng_state,
		        sizeof(fakeutil_rng_state)) < 0 ||
		    fakeutil_rng_state == 0)
			fakeutil_rng_state = (uint64_t)time(NULL) | 1;
	}
	x = fakeutil_rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	fakeutil_rng_state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Random bytes from OpenSSL's generator. */
int
fakeutil_random(unsigned char *out, size_t n)
{
	return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

/* Format a version-4 UUID from two random words (no printf: hot path). */
void
fakeutil_uuid(char out[37])
{
	static const char hex[] = "0123456789ABCDEF";
	uint64_t w[2] = { fakeutil_rand64(), fakeutil_rand64() };
	size_t i, o = 0, nibble = 0;

	w[0] = (w[0] & ~0xf000ULL) | 0x4000ULL;
	w[1] = (w[1] & ~(3ULL << 62)) | (2ULL << 62);
	for (i = 0; i < 32; i++, nibble += 4) {
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[o++] = '-';
		out[o++] = hex[(w[i / 16] >> (60 - nibble % 64)) & 0xf];
	}
	out[o] = '\0';
}

/* Check the 8-4-4-4-12 layout of hex digits and dashes. */
bool
fakeutil_is_uuid(const char *s)
{
	size_t i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* True for exactly LEN hex digits. */
bool
fakeutil_is_hex(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return s[len] == '\0';
}

/* Milliseconds since the epoch. */
int64_t
fakeutil_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds since the epoch. */
int64_t
fakeutil_now(void)
{
	return (int64_t)time(NULL);
}

/* Percent-decode LEN bytes of a form value ('+' is a space). */
static char *
fakeutil_form_decode(const char *s, size_t len)
{
	char *out, hex[3] = { 0 };
	size_t i, n = 0;

	out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] == '+') {
			out[n++] = ' ';
		} else if (s[i] == '%' && i + 2 < len &&
		    isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			hex[0] = s[i + 1];
			hex[1] = s[i + 2];
			out[n++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			out[n++] = s[i];
		}
	}
	out[n] = '\0';
	return out;
}

/* Walk the name=value pairs separated by '&' and decode the match. */
char *
fakeutil_form_get(const char *body, size_t len, const char *name)
{
	size_t nlen = strlen(name), i = 0, end;

	while (i < len) {
		end = i;
		while (end < len && body[end] != '&')
			end++;
		if (end - i > nlen && memcmp(body + i, name, nlen) == 0 &&
		    body[i + nlen] == '=')
			return fakeutil_form_decode(
			    body + i + nlen + 1, end - i - nlen - 1);
		i = end + 1;
	}
	return NULL;
}

/* Check UTF-8 sequences, rejecting overlong forms and surrogates. */
bool
fakeutil_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, need, k;
	uint32_t cp;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			need = 1;
			cp = p[i] & 0x1f;
		} else if ((p[i] & 0xf0) == 0xe0) {
			need = 2;
			cp = p[i] & 0x0f;
		} else if ((p[i] & 0xf8) == 0xf0) {
			need = 3;
			cp = p[i] & 0x07;
		} else {
			return false;
		}
		if (i + need >= len)
			return false;
		for (k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}
