/*
 * vouchctl device simulate: behaves as the mobile app does. It makes a
 * P-256 key, enrols with a code, keeps its id, token and key in a state
 * file only its owner can read, polls for prompts and answers each with a
 * decision signed by its key. Blocking libcurl calls are fine here: this
 * is a short command, not the server.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "conf.h"
#include "ctl_device.h"
#include "util.h"

#define CTL_DEVICE_MAX_REPLY (1024 * 1024)
#define CTL_DEVICE_SEEN 256 /* prompt ids remembered */
#define CTL_DEVICE_POLL_MS 1000
#define CTL_DEVICE_HTTP_TIMEOUT 15

/* The command line. */
struct ctl_device_opts {
	const char *code;
	const char *url;
	const char *platform;
	const char *name;
	const char *state;
	long pick;
	bool has_pick;
	bool deny;
	bool once;
	long timeout; /* seconds; 0 = none */
};

/* One simulated device. */
struct ctl_device {
	struct ctl_device_opts o;
	CURL *curl;
	char *base; /* server URL without a trailing "/" */
	char device_id[UTIL_UUID_LEN + 1];
	char *token;   /* the device token: never printed */
	char *key_pem; /* the private key: never printed */
	size_t key_len;
	char seen[CTL_DEVICE_SEEN][UTIL_UUID_LEN + 1];
	size_t nseen;
	int answered;
};

/* A reply body being received. */
struct ctl_device_buf {
	char *data;
	size_t len;
};

/* Print the usage lines of the command. */
void
ctl_device_usage(FILE *out)
{
	fprintf(out,
	    "  device simulate --code CODE [--url URL]\n"
	    "      [--platform ios|android] [--name NAME] [--state FILE]\n"
	    "      [--pick N | --deny] [--once] [--timeout S]\n"
	    "                              act as the mobile app: enrol, then\n"
	    "                              answer prompts; --state FILE alone\n"
	    "                              resumes an enrolled device\n");
}

/* A whole number from an option value, or -1. */
static long
ctl_device_number(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return -1;
	return v;
}

/* Fill the options from argv (after "device simulate"); -1 when bad. */
static int
ctl_device_parse(int argc, char **argv, struct ctl_device_opts *o)
{
	const char *name, *value;
	int i;

	o->platform = "ios";
	for (i = 0; i < argc; i++) {
		name = argv[i];
		if (strcmp(name, "--deny") == 0) {
			o->deny = true;
			continue;
		}
		if (strcmp(name, "--once") == 0) {
			o->once = true;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "vouchctl: %s needs a value\n", name);
			return -1;
		}
		value = argv[++i];
		if (strcmp(name, "--code") == 0)
			o->code = value;
		else if (strcmp(name, "--url") == 0)
			o->url = value;
		else if (strcmp(name, "--platform") == 0)
			o->platform = value;
		else if (strcmp(name, "--name") == 0)
			o->name = value;
		else if (strcmp(name, "--state") == 0)
			o->state = value;
		else if (strcmp(name, "--pick") == 0) {
			o->pick = ctl_device_number(value);
			o->has_pick = true;
		} else if (strcmp(name, "--timeout") == 0)
			o->timeout = ctl_device_number(value);
		else {
			fprintf(stderr, "vouchctl: unknown option %s\n", name);
			return -1;
		}
	}
	return 0;
}

/* Check that the options make sense together; -1 after saying why. */
static int
ctl_device_check(const struct ctl_device_opts *o)
{
	const char *why = NULL;

	if (o->code == NULL && o->state == NULL)
		why = "--code is required (or --state of an enrolled device)";
	else if (strcmp(o->platform, "ios") != 0 &&
	    strcmp(o->platform, "android") != 0)
		why = "--platform must be ios or android";
	else if (o->has_pick && (o->pick < 0 || o->pick > 99))
		why = "--pick must be a number from 0 to 99";
	else if (o->has_pick && o->deny)
		why = "--pick and --deny exclude each other";
	else if (o->timeout < 0)
		why = "--timeout must be a number of seconds";
	if (why == NULL)
		return 0;
	fprintf(stderr, "vouchctl: %s\n", why);
	return -1;
}

/* libcurl: append a piece of the reply, refusing one that is too big. */
static size_t
ctl_device_write_cb(char *ptr, size_t size, size_t n, void *arg)
{
	struct ctl_device_buf *buf = arg;
	size_t add = size * n;
	char *grown;

	if (buf->len + add > CTL_DEVICE_MAX_REPLY)
		return 0;
	grown = realloc(buf->data, buf->len + add + 1);
	if (grown == NULL)
		return 0;
	memcpy(grown + buf->len, ptr, add);
	buf->data = grown;
	buf->len += add;
	buf->data[buf->len] = '\0';
	return add;
}

/* Print why a request failed: the problem's code and detail if any. */
static void
ctl_device_report(
    const char *method, const char *path, long status, json_t *reply)
{
	const char *code = json_string_value(json_object_get(reply, "code"));
	const char *detail =
	    json_string_value(json_object_get(reply, "detail"));

	fprintf(stderr, "vouchctl: %s %s: HTTP %ld%s%s%s%s\n", method, path,
	    status, code ? " " : "", code ? code : "", detail ? ": " : "",
	    detail ? detail : "");
}

/* Set the options of one request on the (reset) handle. */
static int
ctl_device_setup(struct ctl_device *d, const char *method, const char *url,
    const char *body, struct curl_slist *headers, struct ctl_device_buf *buf)
{
	CURL *c = d->curl;
	int bad = 0;

	curl_easy_reset(c);
	bad |= curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") !=
	    CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_TIMEOUT,
	           (long)CTL_DEVICE_HTTP_TIMEOUT) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(
	           c, CURLOPT_WRITEFUNCTION, ctl_device_write_cb) != CURLE_OK;
	bad |= curl_easy_setopt(c, CURLOPT_WRITEDATA, buf) != CURLE_OK;
	if (body != NULL) {
		bad |=
		    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) != CURLE_OK;
		bad |= curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE,
		           (long)strlen(body)) != CURLE_OK;
	}
	bad |= curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
	return bad ? -1 : 0;
}

/* The header list of a request; the bearer token when authorised. */
static struct curl_slist *
ctl_device_headers(struct ctl_device *d, bool auth)
{
	struct curl_slist *h = NULL, *next;
	char *bearer = NULL;

	h = curl_slist_append(h, "Content-Type: application/json");
	if (h != NULL && auth) {
		if (asprintf(&bearer, "Authorization: Bearer %s", d->token) < 0)
			bearer = NULL;
		next = bearer ? curl_slist_append(h, bearer) : NULL;
		if (next == NULL) {
			curl_slist_free_all(h);
			h = NULL;
		}
		if (bearer != NULL) {
			OPENSSL_cleanse(bearer, strlen(bearer));
			free(bearer);
		}
	}
	return h;
}

/*
 * One request to the server: body (may be NULL) goes as JSON, the reply
 * is parsed into *reply (NULL when it is not JSON; caller decrefs).
 * Returns the HTTP status, or -1 when no answer came (printed).
 */
static long
ctl_device_request(struct ctl_device *d, const char *method, const char *path,
    json_t *body, bool auth, json_t **reply)
{
	struct ctl_device_buf buf = { NULL, 0 };
	struct curl_slist *headers = NULL;
	char *url = NULL, *text = NULL;
	long status = -1;
	CURLcode rc;

	*reply = NULL;
	if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL)
		goto out;
	if (asprintf(&url, "%s%s", d->base, path) < 0) {
		url = NULL;
		goto out;
	}
	headers = ctl_device_headers(d, auth);
	if (headers == NULL ||
	    ctl_device_setup(d, method, url, text, headers, &buf) != 0) {
		fprintf(stderr, "vouchctl: %s %s: cannot set up the request\n",
		    method, path);
		goto out;
	}

	rc = curl_easy_perform(d->curl);
	if (rc != CURLE_OK) {
		fprintf(stderr, "vouchctl: %s %s: %s\n", method, path,
		    curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
	if (buf.data != NULL)
		*reply = json_loadb(buf.data, buf.len, 0, NULL);
out:
	curl_slist_free_all(headers);
	if (buf.data != NULL) {
		OPENSSL_cleanse(buf.data, buf.len);
		free(buf.data);
	}
	free(text);
	free(url);
	return status;
}

/* A new P-256 key as PKCS#8 and SubjectPublicKeyInfo PEM texts. */
static int
ctl_device_keygen(char **private_pem, size_t *private_len, char **public_pem)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	BIO *priv = BIO_new(BIO_s_mem()), *pub = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int rc = -1;

	*private_pem = *public_pem = NULL;
	if (pkey == NULL || priv == NULL || pub == NULL ||
	    PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) !=
	        1 ||
	    PEM_write_bio_PUBKEY(pub, pkey) != 1)
		goto out;
	n = BIO_get_mem_data(priv, &data);
	*private_pem = strndup(data, (size_t)n);
	*private_len = (size_t)n;
	n = BIO_get_mem_data(pub, &data);
	*public_pem = strndup(data, (size_t)n);
	if (*private_pem != NULL && *public_pem != NULL)
		rc = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free_all(priv); /* a mem BIO frees its buffer, not wiped */
	BIO_free_all(pub);
	return rc;
}

/* Random characters from an alphabet. */
static void
ctl_device_random_text(char *out, size_t n, const char *alphabet)
{
	size_t len = strlen(alphabet), i;
	uint8_t b;

	for (i = 0; i < n; i++) {
		util_random(&b, 1);
		out[i] = alphabet[b % len];
	}
	out[n] = '\0';
}

/* A push token shaped like the platform's: 64 hex digits for APNs, an
   FCM-like registration token for Android. */
static void
ctl_device_push_token(const char *platform, char out[200])
{
	static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"
	                             "mnopqrstuvwxyz0123456789-_";
	uint8_t raw[32];

	if (strcmp(platform, "ios") == 0) {
		util_random(raw, sizeof(raw));
		util_hex(raw, sizeof(raw), out);
		return;
	}
	ctl_device_random_text(out, 22, b64url);
	memcpy(out + 22, ":APA91b", 7);
	ctl_device_random_text(out + 29, 134, b64url);
}

/* Write the state file (mode 0600) atomically. */
static int
ctl_device_write_state(struct ctl_device *d, const char *path)
{
	json_t *state;
	char *text = NULL, *tmp = NULL;
	int fd = -1, rc = -1;
	size_t len;

	state = json_pack("{s:s, s:s, s:s, s:s, s:s}", "url", d->base,
	    "device_id", d->device_id, "platform", d->o.platform, "token",
	    d->token, "private_key", d->key_pem);
	if (state == NULL ||
	    (text = json_dumps(state, JSON_INDENT(2))) == NULL ||
	    asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		goto out;
	}
	len = strlen(text);
	unlink(tmp);
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto out;
	if (fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len &&
	    fsync(fd) == 0)
		rc = 0;
	if (close(fd) != 0)
		rc = -1;
	if (rc == 0)
		rc = rename(tmp, path);
	if (rc != 0)
		unlink(tmp);
out:
	if (rc != 0)
		fprintf(stderr,
		    "vouchctl: cannot write the state file %s: "
		    "%s\n",
		    path, strerror(errno));
	if (text != NULL) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	json_decref(state); /* holds copies of the secrets, not wiped */
	free(tmp);
	return rc;
}

/* The state file's path: --state, or var/device-<id>.json. */
static char *
ctl_device_state_path(struct ctl_device *d)
{
	char *path;

	if (d->o.state != NULL)
		return strdup(d->o.state);
	if (mkdir("var", 0700) != 0 && errno != EEXIST)
		return NULL;
	if (asprintf(&path, "var/device-%s.json", d->device_id) < 0)
		return NULL;
	return path;
}

/* Read the fields of an enrolment reply (or a state file). */
static int
ctl_device_take(struct ctl_device *d, json_t *doc)
{
	const char *id = json_string_value(json_object_get(doc, "device_id"));
	const char *token = json_string_value(json_object_get(doc, "token"));

	if (id == NULL || !util_uuid_valid(id) || token == NULL)
		return -1;
	snprintf(d->device_id, sizeof(d->device_id), "%s", id);
	d->token = strdup(token);
	return d->token != NULL ? 0 : -1;
}

/* Enrol: make the key, POST /v1/device/enroll, save the state. */
static int
ctl_device_enroll(struct ctl_device *d)
{
	char push_token[200], *public_pem = NULL, *path = NULL;
	json_t *body = NULL, *reply = NULL;
	long status;
	int rc = -1;

	if (ctl_device_keygen(&d->key_pem, &d->key_len, &public_pem) != 0) {
		fprintf(stderr, "vouchctl: cannot make a P-256 key\n");
		goto out;
	}
	ctl_device_push_token(d->o.platform, push_token);
	body = json_pack("{s:s, s:s, s:s, s:s}", "code", d->o.code, "platform",
	    d->o.platform, "push_token", push_token, "public_key", public_pem);
	if (body != NULL && d->o.name != NULL)
		json_object_set_new(body, "name", json_string(d->o.name));
	status = ctl_device_request(
	    d, "POST", "/v1/device/enroll", body, false, &reply);
	if (status != 201 || ctl_device_take(d, reply) != 0) {
		if (status >= 0)
			ctl_device_report(
			    "POST", "/v1/device/enroll", status, reply);
		goto out;
	}

	path = ctl_device_state_path(d);
	if (path == NULL || ctl_device_write_state(d, path) != 0)
		goto out;
	printf("enrolled device %s (%s%s%s); state in %s\n", d->device_id,
	    d->o.platform, d->o.name ? ", " : "", d->o.name ? d->o.name : "",
	    path);
	rc = 0;
out:
	json_decref(body);
	json_decref(reply);
	free(public_pem);
	free(path);
	return rc;
}

/* Talk to the server the device enrolled with, as its state says. */
static int
ctl_device_rebase(struct ctl_device *d, json_t *state)
{
	const char *url = json_string_value(json_object_get(state, "url"));
	char *copy;

	if (url == NULL)
		return 0;
	copy = strdup(url);
	if (copy == NULL)
		return -1;
	free(d->base);
	d->base = copy;
	return 0;
}

/* Resume a device from its state file (which must be private). */
static int
ctl_device_resume(struct ctl_device *d)
{
	const char *cause = NULL, *key;
	json_t *state = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = -1;

	if (conf_read_secret(d->o.state, &text, &len, &cause) != 0) {
		fprintf(
		    stderr, "vouchctl: state file %s %s\n", d->o.state, cause);
		return -1;
	}
	state = json_loadb(text, len, 0, NULL);
	key = json_string_value(json_object_get(state, "private_key"));
	if (state == NULL || key == NULL || ctl_device_take(d, state) != 0 ||
	    (d->key_pem = strdup(key)) == NULL) {
		fprintf(stderr, "vouchctl: state file %s is not a device's\n",
		    d->o.state);
		goto out;
	}
	d->key_len = strlen(d->key_pem);
	if (d->o.url == NULL && ctl_device_rebase(d, state) != 0)
		goto out;
	printf("resumed device %s from %s\n", d->device_id, d->o.state);
	rc = 0;
out:
	json_decref(state);
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}

/* True (and remembered) when the prompt was not seen before. */
static bool
ctl_device_new_prompt(struct ctl_device *d, const char *id)
{
	size_t i, n = d->nseen < CTL_DEVICE_SEEN ? d->nseen : CTL_DEVICE_SEEN;

	for (i = 0; i < n; i++)
		if (strcmp(d->seen[i], id) == 0)
			return false;
	snprintf(
	    d->seen[d->nseen % CTL_DEVICE_SEEN], UTIL_UUID_LEN + 1, "%s", id);
	d->nseen++;
	return true;
}

/* A string member of a JSON object, or "?" for display. */
static const char *
ctl_device_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : "?";
}

/* Show a prompt as the app would. */
static void
ctl_device_show(json_t *prompt)
{
	json_t *ticket = json_object_get(prompt, "ticket");
	json_t *options = json_object_get(prompt, "match_options"), *o;
	size_t i;

	printf("prompt %s: %s, %s asks (%s)\n", ctl_device_str(prompt, "id"),
	    ctl_device_str(prompt, "msp_name"),
	    ctl_device_str(prompt, "technician_name"),
	    ctl_device_str(prompt, "kind"));
	if (json_is_string(json_object_get(prompt, "reason")))
		printf("  reason: %s\n", ctl_device_str(prompt, "reason"));
	if (json_is_object(ticket))
		printf("  ticket: %s %s\n", ctl_device_str(ticket, "system"),
		    ctl_device_str(ticket, "id"));
	printf("  options:");
	json_array_foreach(options, i, o)
	    printf(" %lld", (long long)json_integer_value(o));
	printf("\n");
	fflush(stdout);
}

/*
 * Ask on stdin for the number the technician reads out. Returns the
 * number, or -1 to deny (an empty line or the end of input).
 */
static long
ctl_device_ask(void)
{
	char line[64];
	long v;

	for (;;) {
		printf("number the technician reads out (empty denies): ");
		fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL) {
			printf("\n");
			return -1;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			return -1;
		v = ctl_device_number(line);
		if (v >= 0 && v <= 99)
			return v;
		printf("not a number from 0 to 99\n");
	}
}

/* The decision JWS: ES256 with the device key, claims vid, res, num,
   did, iat. Returns a malloc'd string or NULL. */
static char *
ctl_device_sign(struct ctl_device *d, const char *prompt_id, long number)
{
	jwt_t *jwt = NULL;
	json_t *claims;
	char *text = NULL, *jws = NULL;

	claims = json_pack("{s:s, s:s, s:o, s:s, s:I}", "vid", prompt_id, "res",
	    number >= 0 ? "approved" : "denied", "num",
	    number >= 0 ? json_integer(number) : json_null(), "did",
	    d->device_id, "iat", (json_int_t)time(NULL));
	if (claims == NULL ||
	    (text = json_dumps(claims, JSON_COMPACT)) == NULL ||
	    jwt_new(&jwt) != 0)
		goto out;
	if (jwt_add_grants_json(jwt, text) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_ES256, (unsigned char *)d->key_pem,
	        (int)d->key_len) != 0)
		goto out;
	jws = jwt_encode_str(jwt);
out:
	jwt_free(jwt);
	free(text);
	json_decref(claims);
	return jws;
}

/* Decide one prompt and send the signed decision; -1 on failure. */
static int
ctl_device_answer(struct ctl_device *d, json_t *prompt)
{
	const char *id = json_string_value(json_object_get(prompt, "id"));
	json_t *body = NULL, *reply = NULL;
	char path[96], *jws = NULL;
	long number, status;
	int rc = -1;

	if (id == NULL || !util_uuid_valid(id))
		return -1;
	number = d->o.deny ? -1 : d->o.has_pick ? d->o.pick : ctl_device_ask();
	jws = ctl_device_sign(d, id, number);
	if (jws == NULL) {
		fprintf(stderr, "vouchctl: cannot sign the decision\n");
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/device/prompts/%s/decision", id);
	body = json_pack("{s:s}", "decision", jws);
	status = ctl_device_request(d, "POST", path, body, true, &reply);
	if (status != 200) {
		if (status >= 0)
			ctl_device_report("POST", path, status, reply);
		goto out;
	}
	if (number >= 0)
		printf("answered prompt %s: approved with %ld -> status %s\n",
		    id, number,
		    json_string_value(json_object_get(reply, "status")));
	else
		printf("answered prompt %s: denied -> status %s\n", id,
		    json_string_value(json_object_get(reply, "status")));
	fflush(stdout);
	d->answered++;
	rc = 0;
out:
	json_decref(body);
	json_decref(reply);
	free(jws);
	return rc;
}

/* One poll of the open prompts: show and answer the new ones. Returns
   1 when --once is satisfied, 0 to go on, -1 on failure. */
static int
ctl_device_poll(struct ctl_device *d)
{
	json_t *reply = NULL, *items, *prompt;
	const char *id;
	long status;
	size_t i;
	int rc = 0;

	status = ctl_device_request(
	    d, "GET", "/v1/device/prompts", NULL, true, &reply);
	items = json_object_get(reply, "items");
	if (status != 200 || !json_is_array(items)) {
		if (status >= 0)
			ctl_device_report(
			    "GET", "/v1/device/prompts", status, reply);
		rc = -1;
		goto out;
	}
	json_array_foreach(items, i, prompt)
	{
		id = json_string_value(json_object_get(prompt, "id"));
		if (id == NULL || !ctl_device_new_prompt(d, id))
			continue;
		ctl_device_show(prompt);
		if (ctl_device_answer(d, prompt) != 0) {
			rc = -1;
			break;
		}
		if (d->o.once) {
			rc = 1;
			break;
		}
	}
out:
	json_decref(reply);
	return rc;
}

/* Poll every second until --once is done, --timeout passes or a
   request fails. */
static int
ctl_device_loop(struct ctl_device *d)
{
	long long deadline = d->o.timeout > 0
	    ? (long long)util_now_ms() + d->o.timeout * 1000LL
	    : 0;
	struct timespec pause = { CTL_DEVICE_POLL_MS / 1000,
		(CTL_DEVICE_POLL_MS % 1000) * 1000000L };
	int rc;

	printf("waiting for prompts\n");
	fflush(stdout);
	for (;;) {
		rc = ctl_device_poll(d);
		if (rc != 0)
			return rc > 0 ? 0 : 1;
		if (deadline != 0 && (long long)util_now_ms() >= deadline)
			break;
		nanosleep(&pause, NULL);
	}
	if (d->answered > 0 && !d->o.once)
		return 0;
	fprintf(
	    stderr, "vouchctl: no prompt came within %ld s\n", d->o.timeout);
	return 1;
}

/* The server's base URL from --url or server.public_url. */
static char *
ctl_device_base(const struct conf *conf, const char *url)
{
	char *base;
	size_t n;

	if (url == NULL)
		url = conf->server_public_url;
	if (url == NULL)
		return NULL;
	base = strdup(url);
	if (base == NULL)
		return NULL;
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		base[--n] = '\0';
	return base;
}

/* Free a device, wiping its secrets. */
static void
ctl_device_free(struct ctl_device *d)
{
	if (d->token != NULL) {
		OPENSSL_cleanse(d->token, strlen(d->token));
		free(d->token);
	}
	if (d->key_pem != NULL) {
		OPENSSL_cleanse(d->key_pem, d->key_len);
		free(d->key_pem);
	}
	if (d->curl != NULL)
		curl_easy_cleanup(d->curl);
	free(d->base);
}

/* vouchctl device simulate ... */
int
ctl_device_main(const struct conf *conf, int argc, char **argv)
{
	struct ctl_device d = { 0 };
	int rc = 1;

	if (argc < 2 || strcmp(argv[1], "simulate") != 0 ||
	    ctl_device_parse(argc - 2, argv + 2, &d.o) != 0 ||
	    ctl_device_check(&d.o) != 0) {
		fprintf(stderr, "usage: vouchctl -c FILE\n");
		ctl_device_usage(stderr);
		return 2;
	}
	d.base = ctl_device_base(conf, d.o.url);
	if (d.base == NULL) {
		fprintf(stderr,
		    "vouchctl: no server URL (--url or "
		    "server.public_url)\n");
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "vouchctl: cannot start libcurl\n");
		free(d.base);
		return 1;
	}
	d.curl = curl_easy_init();
	if (d.curl == NULL) {
		fprintf(stderr, "vouchctl: cannot start libcurl\n");
		goto out;
	}

	if (d.o.code != NULL ? ctl_device_enroll(&d) : ctl_device_resume(&d))
		goto out;
	fflush(stdout);
	rc = ctl_device_loop(&d);
out:
	ctl_device_free(&d);
	curl_global_cleanup();
	return rc;
}
