/*
 * AES-256-GCM sealing of small secrets with OpenSSL's EVP interface.
 * Layout of a sealed value: "v1." then base64url of a 12-byte nonce, the
 * ciphertext and the 16-byte tag; the context string is the AAD.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "secretbox.h"
#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX "v1."
#define MAX_PLAINTEXT 65536

/* Run GCM over in into out (both len bytes) in the given direction. */
static int
gcm_run(const uint8_t key[32], const uint8_t *nonce, const char *context,
    const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag, int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, rc = -1;

	if (ctx == NULL)
		return -1;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, enc) !=
	    1)
		goto out;
	if (EVP_CipherUpdate(ctx, NULL, &n, (const uint8_t *)context,
	        (int)strlen(context)) != 1)
		goto out;
	if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
		goto out;
	if (!enc &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(ctx, out + n, &n) != 1)
		goto out;
	if (enc &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/* Seal plaintext under key, bound to context. */
char *
secretbox_seal(const uint8_t key[32], const char *context,
    const void *plaintext, size_t len)
{
	uint8_t *raw = NULL;
	size_t raw_len = NONCE_LEN + len + TAG_LEN;
	char *out = NULL;

	if (len > MAX_PLAINTEXT)
		return NULL;
	raw = malloc(raw_len);
	if (raw == NULL)
		return NULL;

	util_random(raw, NONCE_LEN);
	if (gcm_run(key, raw, context, plaintext, len, raw + NONCE_LEN,
	        raw + NONCE_LEN + len, 1) != 0)
		goto out;

	out = malloc(strlen(PREFIX) + util_b64url_len(raw_len) + 1);
	if (out == NULL)
		goto out;
	memcpy(out, PREFIX, strlen(PREFIX));
	util_b64url_encode(raw, raw_len, out + strlen(PREFIX));
out:
	OPENSSL_cleanse(raw, raw_len);
	free(raw);
	return out;
}

/* Open a sealed value; NULL when it does not authenticate. */
char *
secretbox_open(
    const uint8_t key[32], const char *context, const char *sealed, size_t *len)
{
	size_t text_len, cap;
	uint8_t *raw = NULL;
	char *plain = NULL;
	long raw_len;

	if (strncmp(sealed, PREFIX, strlen(PREFIX)) != 0)
		return NULL;
	sealed += strlen(PREFIX);
	text_len = strlen(sealed);
	cap = text_len / 4 * 3 + 3;
	if (cap > MAX_PLAINTEXT + NONCE_LEN + TAG_LEN + 3)
		return NULL;

	raw = malloc(cap);
	if (raw == NULL)
		return NULL;
	raw_len = util_b64url_decode(sealed, text_len, raw, cap);
	if (raw_len < NONCE_LEN + TAG_LEN)
		goto out;

	*len = (size_t)raw_len - NONCE_LEN - TAG_LEN;
	plain = malloc(*len + 1);
	if (plain == NULL)
		goto out;
	if (gcm_run(key, raw, context, raw + NONCE_LEN, *len, (uint8_t *)plain,
	        raw + NONCE_LEN + *len, 0) != 0) {
		OPENSSL_cleanse(plain, *len);
		free(plain);
		plain = NULL;
		goto out;
	}
	plain[*len] = '\0';
out:
	OPENSSL_cleanse(raw, cap);
	free(raw);
	return plain;
}
