/*
 * Self-service rules that need no I/O but a file: session tokens, the
 * checks of a new password (length, the mix of characters, the login and
 * the name inside it), the binary search of a sorted banned-password
 * file with a handful of preads, and the CSP of the web page.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "selfservice.h"
#include "util.h"

#define SELFSERVICE_TOKEN_PREFIX "ss_"
#define SELFSERVICE_TOKEN_BYTES 32
#define SELFSERVICE_B64URL \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* A banned-file line is "HEX40:COUNT" and a line break; one read of this
   size holds the end of one line and the hash of the next. */
#define SELFSERVICE_BANNED_WINDOW 192
#define SELFSERVICE_SHA1_HEX 40

/* Characters that split a display name into the parts AD checks. */
#define SELFSERVICE_NAME_DELIMS ",.-_# \t"

/* The symbols AD's complexity rule counts (a space is not one). */
#define SELFSERVICE_SYMBOLS "~!@#$%^&*_-+=`|\\(){}[]:;\"'<>,.?/"

/* A new token and the hash to store. */
void
selfservice_token_new(char token[SELFSERVICE_TOKEN_LEN + 1],
    char hash_hex[SELFSERVICE_HASH_HEX_LEN + 1])
{
	uint8_t raw[SELFSERVICE_TOKEN_BYTES];

	util_random(raw, sizeof(raw));
	memcpy(token, SELFSERVICE_TOKEN_PREFIX, 3);
	util_b64url_encode(raw, sizeof(raw), token + 3);
	selfservice_token_hash(token, hash_hex);
}

/* Hex SHA-256 of a token that has the token's shape. */
int
selfservice_token_hash(
    const char *token, char hash_hex[SELFSERVICE_HASH_HEX_LEN + 1])
{
	uint8_t digest[32];
	size_t i;

	if (strlen(token) != SELFSERVICE_TOKEN_LEN ||
	    strncmp(token, SELFSERVICE_TOKEN_PREFIX, 3) != 0)
		return -1;
	for (i = 3; i < SELFSERVICE_TOKEN_LEN; i++)
		if (strchr(SELFSERVICE_B64URL, token[i]) == NULL)
			return -1;
	util_sha256(token, SELFSERVICE_TOKEN_LEN, digest);
	util_hex(digest, sizeof(digest), hash_hex);
	return 0;
}

/* Code points in a UTF-8 string. */
size_t
selfservice_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* ASCII case-folding of one byte. */
static int
selfservice_fold(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* True when hay contains the n bytes of needle, ignoring ASCII case. */
static bool
selfservice_contains(const char *hay, const char *needle, size_t n)
{
	size_t i, j, len = strlen(hay);

	for (i = 0; n > 0 && i + n <= len; i++) {
		for (j = 0; j < n; j++)
			if (selfservice_fold((unsigned char)hay[i + j]) !=
			    selfservice_fold((unsigned char)needle[j]))
				break;
		if (j == n)
			return true;
	}
	return false;
}

/*
 * How many of AD's five kinds of character the password uses. Every
 * character outside ASCII counts as a letter of another script: AD
 * counts accented Latin letters as upper or lower case instead, so it may
 * still refuse a password this passes, and has the last word.
 */
static int
selfservice_kinds(const char *password)
{
	bool upper = false, lower = false, digit = false, symbol = false;
	bool other = false;
	const unsigned char *p;

	for (p = (const unsigned char *)password; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			upper = true;
		else if (*p >= 'a' && *p <= 'z')
			lower = true;
		else if (*p >= '0' && *p <= '9')
			digit = true;
		else if (*p < 0x80 && strchr(SELFSERVICE_SYMBOLS, *p) != NULL)
			symbol = true;
		else if (*p >= 0x80)
			other = true;
	}
	return upper + lower + digit + symbol + other;
}

/* The account name inside a login: "user" of "user@realm" and of
   "DOMAIN\user". */
static void
selfservice_account_name(const char *login, const char **start, size_t *n)
{
	const char *slash = strrchr(login, '\\');
	const char *at;

	*start = slash != NULL ? slash + 1 : login;
	at = strchr(*start, '@');
	*n = at != NULL ? (size_t)(at - *start) : strlen(*start);
}

/* True when the password holds a part of the name of 3 or more
   characters, the parts split as AD splits a display name. */
static bool
selfservice_has_name_part(const char *password, const char *name)
{
	const char *p = name;
	size_t n;

	while (*p != '\0') {
		n = strcspn(p, SELFSERVICE_NAME_DELIMS);
		if (n > 0 && n < 256) {
			char part[256];

			memcpy(part, p, n);
			part[n] = '\0';
			if (selfservice_chars(part) >= 3 &&
			    selfservice_contains(password, part, n))
				return true;
		}
		p += n;
		p += strspn(p, SELFSERVICE_NAME_DELIMS);
	}
	return false;
}

/* Check a new password against the rules, first failure wins. */
int
selfservice_password_check(const char *password,
    const struct selfservice_rules *rules, const char **rule, char *detail,
    size_t cap)
{
	size_t chars = selfservice_chars(password), n;
	const char *account;

	if (chars < (size_t)rules->min_length) {
		*rule = "min_length";
		snprintf(detail, cap,
		    "the password must be at least %d "
		    "characters long",
		    rules->min_length);
		return -1;
	}
	if (chars > SELFSERVICE_PASSWORD_MAX) {
		*rule = "max_length";
		snprintf(detail, cap,
		    "the password must be at most %d "
		    "characters long",
		    SELFSERVICE_PASSWORD_MAX);
		return -1;
	}
	if (rules->complexity && selfservice_kinds(password) < 3) {
		*rule = "complexity";
		snprintf(detail, cap,
		    "the password must mix at least three "
		    "of: upper-case letters, lower-case letters, digits, "
		    "symbols, letters of other scripts");
		return -1;
	}
	if (rules->login != NULL) {
		selfservice_account_name(rules->login, &account, &n);
		if (n >= 3 && selfservice_contains(password, account, n)) {
			*rule = "contains_login";
			snprintf(detail, cap,
			    "the password must not contain "
			    "your login name");
			return -1;
		}
	}
	if (rules->display_name != NULL &&
	    selfservice_has_name_part(password, rules->display_name)) {
		*rule = "contains_name";
		snprintf(detail, cap,
		    "the password must not contain a part "
		    "of your name");
		return -1;
	}
	return 0;
}

/* Compare 40 hex digits, ignoring case. */
static int
selfservice_hex_cmp(const char *a, const char *b)
{
	int i, x, y;

	for (i = 0; i < SELFSERVICE_SHA1_HEX; i++) {
		x = selfservice_fold((unsigned char)a[i]);
		y = selfservice_fold((unsigned char)b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/* True for 40 hex digits. */
static bool
selfservice_hex40(const char *s)
{
	int i;

	for (i = 0; i < SELFSERVICE_SHA1_HEX; i++)
		if (strchr("0123456789abcdefABCDEF", s[i]) == NULL ||
		    s[i] == '\0')
			return false;
	return true;
}

/* One pread that counts itself; returns the bytes read or -1. */
static ssize_t
selfservice_pread(int fd, void *buf, size_t n, uint64_t at, unsigned *reads)
{
	ssize_t got;

	do {
		got = pread(fd, buf, n, (off_t)at);
	} while (got < 0 && errno == EINTR);
	if (reads != NULL)
		(*reads)++;
	return got;
}

/*
 * Find the first line that starts at or after off: 1 with its start and
 * hash, 0 when no line starts in [off, size), -1 on a read error or a
 * line too long or not starting with a hash.
 */
static int
selfservice_banned_line(int fd, uint64_t size, uint64_t off, uint64_t *start,
    char hash[SELFSERVICE_SHA1_HEX], unsigned *reads)
{
	char buf[SELFSERVICE_BANNED_WINDOW];
	uint64_t at = off > 0 ? off - 1 : 0;
	size_t skip = 0;
	ssize_t got;
	char *nl;

	got = selfservice_pread(fd, buf, sizeof(buf), at, reads);
	if (got < 0)
		return -1;
	if (off > 0) {
		nl = memchr(buf, '\n', (size_t)got);
		if (nl == NULL)
			return at + (uint64_t)got >= size ? 0 : -1;
		skip = (size_t)(nl - buf) + 1;
	}
	if (at + skip >= size)
		return 0;
	*start = at + skip;

	if ((size_t)got < skip + SELFSERVICE_SHA1_HEX) {
		got = selfservice_pread(
		    fd, buf, SELFSERVICE_SHA1_HEX, *start, reads);
		if (got != SELFSERVICE_SHA1_HEX)
			return -1;
		skip = 0;
	}
	memcpy(hash, buf + skip, SELFSERVICE_SHA1_HEX);
	return selfservice_hex40(hash) ? 1 : -1;
}

/* Binary search over byte ranges of a sorted banned-password file. */
int
selfservice_banned_search(
    int fd, uint64_t size, const char *sha1_hex, unsigned *reads)
{
	char hash[SELFSERVICE_SHA1_HEX];
	uint64_t lo = 0, hi = size, mid, start = 0;
	int rc, cmp;

	if (strlen(sha1_hex) != SELFSERVICE_SHA1_HEX ||
	    !selfservice_hex40(sha1_hex))
		return -1;

	/* Invariant: the line holding the hash, if any, starts in
	   [lo, hi). */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		rc =
		    selfservice_banned_line(fd, size, mid, &start, hash, reads);
		if (rc < 0)
			return -1;
		if (rc == 0 || start >= hi) {
			hi = mid;
			continue;
		}
		cmp = selfservice_hex_cmp(sha1_hex, hash);
		if (cmp == 0)
			return 1;
		if (cmp < 0)
			hi = mid;
		else
			lo = start + 1;
	}
	return 0;
}

/* Upper-case hex SHA-1 of a password. */
static int
selfservice_sha1_hex(const char *password, char out[SELFSERVICE_SHA1_HEX + 1])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	unsigned int i;

	if (EVP_Digest(password, strlen(password), digest, &len, EVP_sha1(),
	        NULL) != 1 ||
	    len != 20)
		return -1;
	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02X", digest[i]);
	return 0;
}

/* Search the file at path for a password. */
int
selfservice_banned_check(const char *path, const char *password)
{
	char hex[SELFSERVICE_SHA1_HEX + 1];
	struct stat st;
	int fd, rc = -1;

	if (selfservice_sha1_hex(password, hex) != 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	rc = selfservice_banned_search(fd, (uint64_t)st.st_size, hex, NULL);
out:
	close(fd);
	return rc;
}

/* Append the SHA-256 sources of every <tag>...</tag> block of html to
   out; -1 when a block is not closed or out fills up. */
static int
selfservice_csp_hashes(const char *html, size_t len, const char *tag, char *out,
    size_t cap, size_t *used)
{
	char open[16], close[16];
	unsigned char digest[32], b64[48];
	const char *p = html, *end = html + len, *body, *stop;
	int n;

	snprintf(open, sizeof(open), "<%s", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	while ((p = memmem(p, (size_t)(end - p), open, strlen(open))) != NULL) {
		body = memchr(p, '>', (size_t)(end - p));
		if (body == NULL)
			return -1;
		body++;
		stop = memmem(body, (size_t)(end - body), close, strlen(close));
		if (stop == NULL)
			return -1;
		util_sha256(body, (size_t)(stop - body), digest);
		EVP_EncodeBlock(b64, digest, sizeof(digest));
		n = snprintf(out + *used, cap - *used, " 'sha256-%s'", b64);
		if (n < 0 || (size_t)n >= cap - *used)
			return -1;
		*used += (size_t)n;
		p = stop + strlen(close);
	}
	return 0;
}

/* The page's Content-Security-Policy. */
int
selfservice_page_csp(const char *html, size_t len, char *out, size_t cap)
{
	size_t used = 0, mark;
	int n;

	n = snprintf(out, cap, "default-src 'none'; script-src");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	used = mark = (size_t)n;
	if (selfservice_csp_hashes(html, len, "script", out, cap, &used) != 0)
		return -1;
	n = snprintf(out + used, cap - used, "%s; style-src",
	    used == mark ? " 'none'" : "");
	if (n < 0 || (size_t)n >= cap - used)
		return -1;
	used += (size_t)n;
	mark = used;
	if (selfservice_csp_hashes(html, len, "style", out, cap, &used) != 0)
		return -1;
	n = snprintf(out + used, cap - used,
	    "%s; connect-src 'self'; "
	    "img-src 'self'; base-uri 'none'; form-action 'none'; "
	    "frame-ancestors 'none'",
	    used == mark ? " 'none'" : "");
	if (n < 0 || (size_t)n >= cap - used)
		return -1;
	return 0;
}
