/*
 * Loading and checking the server's own keys. Key material is wiped
 * from every buffer it passes through.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "keys.h"

/* Two hex digits to a byte; -1 when not hex. */
static int
hex_byte(const char *p)
{
	int hi = isxdigit((unsigned char)p[0]) ? p[0] : -1;
	int lo = isxdigit((unsigned char)p[1]) ? p[1] : -1;

	if (hi < 0 || lo < 0)
		return -1;
	hi = isdigit(hi) ? hi - '0' : tolower(hi) - 'a' + 10;
	lo = isdigit(lo) ? lo - '0' : tolower(lo) - 'a' + 10;
	return hi << 4 | lo;
}

/* Read the 32-byte data-at-rest key. */
int
keys_load_secret(const char *path, uint8_t key[32], const char **cause)
{
	char *text = NULL;
	size_t len = 0, size, i;
	int rc = -1, b;

	if (conf_read_secret(path, &text, &len, cause) != 0)
		return -1;
	size = len;

	/* 32 bytes are the raw key, whatever their last byte is; only the
	   hex form may end in a line break. */
	if (len != 32)
		while (
		    len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			len--;

	if (len == 32) {
		memcpy(key, text, 32);
		rc = 0;
	} else if (len == 64) {
		for (i = 0; i < 32; i++) {
			b = hex_byte(text + 2 * i);
			if (b < 0)
				break;
			key[i] = (uint8_t)b;
		}
		rc = i == 32 ? 0 : -1;
	}
	if (rc != 0)
		*cause = "must hold 32 bytes, raw or as 64 hex digits";

	OPENSSL_cleanse(text, size);
	free(text);
	return rc;
}

/* Check the signing key parses as an unencrypted P-256 private key. */
int
keys_check_signing(const char *path, const char **cause)
{
	char *text = NULL, group[32];
	size_t len = 0;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	int rc = -1;

	if (conf_read_secret(path, &text, &len, cause) != 0)
		return -1;

	bio = BIO_new_mem_buf(text, (int)len);
	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	if (pkey == NULL) {
		*cause = "is not an unencrypted PEM private key";
		goto out;
	}
	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	        group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0) {
		*cause = "must be a P-256 (prime256v1) EC key";
		goto out;
	}
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}
