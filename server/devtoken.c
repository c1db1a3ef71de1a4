/*
 * Device tokens and device signatures on libjwt. libjwt takes the
 * algorithm from the token, so every decode is followed by a check that
 * it is ES256 (which also refuses unsigned tokens); claims are checked
 * here because libjwt checks none. ES256 verification costs most of a
 * millisecond, so verified device tokens are remembered until they
 * expire.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "devtoken.h"
#include "log.h"

#define CACHE_SLOTS 1024
#define JWS_MAX_LEN 4096

/* A verified token, remembered by its hash. */
struct devtoken_seen {
	uint8_t hash[32];
	long long expires_at;
	char msp_id[UTIL_UUID_LEN + 1];
	char device_id[UTIL_UUID_LEN + 1];
};

static struct {
	char *private_pem;
	size_t private_len;
	char *public_pem;
	int ttl;
	struct devtoken_seen cache[CACHE_SLOTS];
} dt;

/* The public half of the loaded private key, as PEM. */
static char *
public_pem_of(const char *private_pem, size_t len)
{
	BIO *in = BIO_new_mem_buf(private_pem, (int)len), *out = NULL;
	EVP_PKEY *pkey = NULL;
	char *pem = NULL, *data;
	long n;

	if (in == NULL)
		return NULL;
	pkey = PEM_read_bio_PrivateKey(in, NULL, NULL, (void *)"");
	out = BIO_new(BIO_s_mem());
	if (pkey == NULL || out == NULL || PEM_write_bio_PUBKEY(out, pkey) != 1)
		goto out;
	n = BIO_get_mem_data(out, &data);
	pem = strndup(data, (size_t)n);
out:
	EVP_PKEY_free(pkey);
	BIO_free(in);
	BIO_free(out);
	return pem;
}

/* Load the signing key and derive the verification key. */
int
devtoken_setup(
    const char *signing_key_file, int ttl_seconds, const char **cause)
{
	devtoken_teardown();
	if (conf_read_secret(
	        signing_key_file, &dt.private_pem, &dt.private_len, cause) != 0)
		return -1;
	dt.public_pem = public_pem_of(dt.private_pem, dt.private_len);
	if (dt.public_pem == NULL) {
		*cause = "is not a usable PEM private key";
		devtoken_teardown();
		return -1;
	}
	dt.ttl = ttl_seconds;
	return 0;
}

/* Wipe and forget the key. */
void
devtoken_teardown(void)
{
	if (dt.private_pem != NULL) {
		OPENSSL_cleanse(dt.private_pem, dt.private_len);
		free(dt.private_pem);
	}
	free(dt.public_pem);
	dt.private_pem = NULL;
	dt.public_pem = NULL;
	devtoken_cache_clear();
}

/* Drop every remembered verification. */
void
devtoken_cache_clear(void)
{
	memset(dt.cache, 0, sizeof(dt.cache));
}

/* Sign a new device token. */
char *
devtoken_issue(const char *msp_id, const char *device_id, long long *expires_at)
{
	jwt_t *jwt = NULL;
	char *token = NULL;
	long long now = (long long)time(NULL);

	if (dt.private_pem == NULL || jwt_new(&jwt) != 0)
		return NULL;
	*expires_at = now + dt.ttl;
	if (jwt_add_grant(jwt, "sub", device_id) != 0 ||
	    jwt_add_grant(jwt, "msp", msp_id) != 0 ||
	    jwt_add_grant(jwt, "aud", "vouch-device") != 0 ||
	    jwt_add_grant_int(jwt, "iat", now) != 0 ||
	    jwt_add_grant_int(jwt, "exp", *expires_at) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_ES256, (unsigned char *)dt.private_pem,
	        (int)dt.private_len) != 0)
		goto out;
	token = jwt_encode_str(jwt);
out:
	jwt_free(jwt);
	return token;
}

/* Decode with key and insist on ES256; NULL when anything is off. */
static jwt_t *
decode_es256(const char *token, const char *public_pem)
{
	jwt_t *jwt = NULL;

	if (strlen(token) > JWS_MAX_LEN ||
	    jwt_decode(&jwt, token, (const unsigned char *)public_pem,
	        (int)strlen(public_pem)) != 0)
		return NULL;
	if (jwt_get_alg(jwt) != JWT_ALG_ES256) {
		jwt_free(jwt);
		return NULL;
	}
	return jwt;
}

/* Check a device token, from the cache when it was seen before. */
int
devtoken_verify(const char *token, char msp_id[UTIL_UUID_LEN + 1],
    char device_id[UTIL_UUID_LEN + 1])
{
	struct devtoken_seen *seen;
	const char *sub, *msp, *aud;
	long long now = (long long)time(NULL), exp;
	uint8_t hash[32];
	jwt_t *jwt;
	int rc = -1;

	util_sha256(token, strlen(token), hash);
	seen = &dt.cache[hash[0] | (hash[1] & 3) << 8];
	if (memcmp(seen->hash, hash, sizeof(hash)) == 0 &&
	    now < seen->expires_at) {
		memcpy(msp_id, seen->msp_id, UTIL_UUID_LEN + 1);
		memcpy(device_id, seen->device_id, UTIL_UUID_LEN + 1);
		return 0;
	}

	if (dt.public_pem == NULL)
		return -1;
	jwt = decode_es256(token, dt.public_pem);
	if (jwt == NULL)
		return -1;
	sub = jwt_get_grant(jwt, "sub");
	msp = jwt_get_grant(jwt, "msp");
	aud = jwt_get_grant(jwt, "aud");
	exp = jwt_get_grant_int(jwt, "exp");
	if (!util_uuid_valid(sub) || !util_uuid_valid(msp) || aud == NULL ||
	    strcmp(aud, "vouch-device") != 0 || exp <= now)
		goto out;

	memcpy(seen->hash, hash, sizeof(hash));
	seen->expires_at = exp;
	memcpy(seen->msp_id, msp, UTIL_UUID_LEN + 1);
	memcpy(seen->device_id, sub, UTIL_UUID_LEN + 1);
	memcpy(msp_id, msp, UTIL_UUID_LEN + 1);
	memcpy(device_id, sub, UTIL_UUID_LEN + 1);
	rc = 0;
out:
	jwt_free(jwt);
	return rc;
}

/* Check a P-256 public key and re-encode it canonically. */
char *
devtoken_public_key(const char *pem, const char **cause)
{
	BIO *in = BIO_new_mem_buf(pem, -1), *out = NULL;
	EVP_PKEY *pkey = NULL;
	char group[32], *data, *canonical = NULL;
	long n;

	*cause = "must be a PEM \"PUBLIC KEY\" of a P-256 key";
	if (in == NULL || strstr(pem, "-----BEGIN PUBLIC KEY-----") == NULL)
		goto out;
	pkey = PEM_read_bio_PUBKEY(in, NULL, NULL, NULL);
	if (pkey == NULL ||
	    EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
	        group, sizeof(group), NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0)
		goto out;

	out = BIO_new(BIO_s_mem());
	if (out == NULL || PEM_write_bio_PUBKEY(out, pkey) != 1)
		goto out;
	n = BIO_get_mem_data(out, &data);
	canonical = strndup(data, (size_t)n);
	*cause = NULL;
out:
	EVP_PKEY_free(pkey);
	BIO_free(in);
	BIO_free(out);
	return canonical;
}

/* Verify a device-signed JWS and hand back its claims. */
int
devtoken_check_jws(const char *jws, const char *public_key_pem, json_t **claims,
    const char **cause)
{
	jwt_t *jwt;
	char *text;

	*claims = NULL;
	jwt = decode_es256(jws, public_key_pem);
	if (jwt == NULL) {
		*cause = "the signature does not verify with the device key "
		         "(ES256 expected)";
		return -1;
	}
	text = jwt_get_grants_json(jwt, NULL);
	jwt_free(jwt);
	if (text != NULL)
		*claims = json_loads(text, 0, NULL);
	free(text);
	if (*claims == NULL) {
		*cause = "the claims are not a JSON object";
		return -1;
	}
	return 0;
}
