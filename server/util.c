/*
 * Small pure helpers: CSPRNG bytes, encodings, hashes, UUIDs and format
 * checks for request fields. Kept free of loop and database state so the
 * unit tests can cover them directly.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "util.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Fill buf from OpenSSL's CSPRNG; without randomness nothing is safe. */
void
util_random(void *buf, size_t n)
{
	if (RAND_bytes(buf, (int)n) != 1)
		fatal(NULL, "the random number generator failed");
}

/* Lowercase hex of n bytes. */
void
util_hex(const void *data, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Characters needed for n bytes of unpadded base64url. */
size_t
util_b64url_len(size_t n)
{
	return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* Unpadded base64url of n bytes into out. */
size_t
util_b64url_encode(const void *data, size_t n, char *out)
{
	const uint8_t *p = data;
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
		out[o++] = b64url_alphabet[v & 63];
	}

	if (n - i == 1) {
		v = (uint32_t)p[i] << 16;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* The value of one base64url character, or -1. */
static int
b64url_value(char c)
{
	const char *at;

	if (c == '\0')
		return -1;
	at = strchr(b64url_alphabet, c);
	return at == NULL ? -1 : (int)(at - b64url_alphabet);
}

/* Decode unpadded base64url; -1 when malformed or over cap. */
long
util_b64url_decode(const char *text, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t i, o = 0;
	int bits = 0, v;

	if (len % 4 == 1)
		return -1;

	for (i = 0; i < len; i++) {
		v = b64url_value(text[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}

	/* Leftover bits must be zero, so every text has one decoding. */
	if (acc != 0)
		return -1;
	return (long)o;
}

/* SHA-256 of n bytes. */
void
util_sha256(const void *data, size_t n, uint8_t out[32])
{
	unsigned int len = 32;

	if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1)
		fatal(NULL, "sha-256 failed");
}

/* A version 4 UUID from 122 random bits. */
void
util_uuid_new(char out[UTIL_UUID_LEN + 1])
{
	uint8_t b[16];
	char hex[33];

	util_random(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	util_hex(b, sizeof(b), hex);
	memcpy(out, hex, 8);
	out[8] = '-';
	memcpy(out + 9, hex + 8, 4);
	out[13] = '-';
	memcpy(out + 14, hex + 12, 4);
	out[18] = '-';
	memcpy(out + 19, hex + 16, 4);
	out[23] = '-';
	memcpy(out + 24, hex + 20, 12);
	out[36] = '\0';
}

/* Canonical 8-4-4-4-12 hex form. */
bool
util_uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != UTIL_UUID_LEN)
		return false;
	for (i = 0; i < UTIL_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* Read exactly n digits at *p into *out and advance. */
static bool
read_digits(const char **p, int n, int *out)
{
	int v = 0;

	while (n-- > 0) {
		if (!isdigit((unsigned char)**p))
			return false;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return true;
}

/* Check a literal character at *p and advance. */
static bool
read_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm), with sane ranges. */
bool
util_rfc3339_valid(const char *s)
{
	const char *p = s;
	int y, mo, d, h, mi, sec, zh, zm;

	if (s == NULL)
		return false;
	if (!read_digits(&p, 4, &y) || !read_char(&p, '-') ||
	    !read_digits(&p, 2, &mo) || !read_char(&p, '-') ||
	    !read_digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!read_digits(&p, 2, &h) || !read_char(&p, ':') ||
	    !read_digits(&p, 2, &mi) || !read_char(&p, ':') ||
	    !read_digits(&p, 2, &sec))
		return false;

	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}

	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		p++;
		if (!read_digits(&p, 2, &zh) || !read_char(&p, ':') ||
		    !read_digits(&p, 2, &zm) || zh > 23 || zm > 59)
			return false;
	} else {
		return false;
	}

	return *p == '\0' && y >= 1 && mo >= 1 && mo <= 12 && d >= 1 &&
	    d <= 31 && h <= 23 && mi <= 59 && sec <= 60;
}

/* "+" then 8..15 digits, the first not zero. */
bool
util_e164_valid(const char *s)
{
	size_t n;

	if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return false;
	for (n = 1; s[n] != '\0'; n++)
		if (!isdigit((unsigned char)s[n]))
			return false;
	return n - 1 >= 8 && n - 1 <= 15;
}

/* One "@" with something on both sides, no whitespace or controls. */
bool
util_email_valid(const char *s)
{
	const char *at;
	size_t i, len;

	if (s == NULL)
		return false;
	len = strlen(s);
	at = strchr(s, '@');
	if (len > 254 || at == NULL || at == s || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

/* Decode one UTF-8 character, rejecting overlong forms and surrogates. */
size_t
util_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t v, min;
	size_t len, i;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		if (cp != NULL)
			*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, v = s[0] & 0x1f, min = 0x80;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, v = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, v = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;

	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	if (cp != NULL)
		*cp = v;
	return len;
}

/* Count code points, rejecting malformed UTF-8 and control characters
   (but tab, CR and LF when lines are allowed). */
static bool
utf8_check(const char *s, size_t min_chars, size_t max_chars, bool lines)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t count = 0, left = strlen(s), k;

	while (left > 0) {
		if ((*p < 0x20 &&
		        !(lines && (*p == '\n' || *p == '\r' || *p == '\t'))) ||
		    *p == 0x7f)
			return false;
		k = util_utf8_decode(p, left, NULL);
		if (k == 0)
			return false;
		p += k;
		left -= k;
		count++;
	}
	return count >= min_chars && count <= max_chars;
}

/* A one-line text of min..max code points. */
bool
util_utf8_length_ok(const char *s, size_t min_chars, size_t max_chars)
{
	return utf8_check(s, min_chars, max_chars, false);
}

/* A text of min..max code points that may hold line breaks and tabs. */
bool
util_utf8_text_ok(const char *s, size_t min_chars, size_t max_chars)
{
	return utf8_check(s, min_chars, max_chars, true);
}

/* Monotonic milliseconds. */
uint64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Compare without an early exit, so timing says nothing of where. */
bool
util_equal_ct(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}
