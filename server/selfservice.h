/*
 * The pure parts of self-service password reset: session tokens, the
 * password rules checked before Active Directory sees a new password,
 * the search of a banned-password file (SHA-1 hashes, sorted) without
 * reading it into memory, and the Content-Security-Policy of the page.
 * Nothing here touches the loop, the database or the network.
 */
#ifndef VOUCH_SELFSERVICE_H
#define VOUCH_SELFSERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "ss_" and 43 base64url characters (256 random bits). */
#define SELFSERVICE_TOKEN_LEN 46
#define SELFSERVICE_HASH_HEX_LEN 64

/* The longest password accepted, in code points (AD's unicodePwd). */
#define SELFSERVICE_PASSWORD_MAX 256

/* What a new password is checked against. */
struct selfservice_rules {
	int min_length;           /* code points */
	bool complexity;          /* three of five kinds of character */
	const char *login;        /* the account's login, or NULL */
	const char *display_name; /* the account's full name, or NULL */
};

/*
 * Make a session token: the text handed out once and the hex SHA-256
 * that is stored.
 */
void selfservice_token_new(char token[SELFSERVICE_TOKEN_LEN + 1],
    char hash_hex[SELFSERVICE_HASH_HEX_LEN + 1]);

/* Hex SHA-256 of a presented token; -1 when it cannot be a token. */
int selfservice_token_hash(
    const char *token, char hash_hex[SELFSERVICE_HASH_HEX_LEN + 1]);

/*
 * Check a new password against the rules. Returns 0 when it passes, or
 * -1 with *rule the name of the first rule it breaks ("min_length",
 * "max_length", "complexity", "contains_login", "contains_name") and a
 * sentence for the user in detail. The password is never copied out.
 */
int selfservice_password_check(const char *password,
    const struct selfservice_rules *rules, const char **rule, char *detail,
    size_t cap);

/* Code points in a UTF-8 string (invalid bytes count one each). */
size_t selfservice_chars(const char *s);

/*
 * Search an open banned-password file of size bytes for the upper-case
 * hex SHA-1 sha1_hex (40 characters). The file holds "HEX40:COUNT"
 * lines sorted by hash, as breached-password lists are published; it is
 * searched by halving byte ranges with pread, so only a few small reads
 * are made whatever its size. Returns 1 when found, 0 when not, -1 on a
 * read error or a malformed file. *reads (when not NULL) counts preads.
 */
int selfservice_banned_search(
    int fd, uint64_t size, const char *sha1_hex, unsigned *reads);

/* Open path and search it for password's SHA-1; 1, 0 or -1 (with errno
   or a malformed file). Blocks on the file: run it off the loop. */
int selfservice_banned_check(const char *path, const char *password);

/*
 * The Content-Security-Policy of a page whose inline <script> and
 * <style> blocks are allowed by their SHA-256 and nothing else is: no
 * other origin, no frames, no forms sent anywhere, no plugins. Writes
 * at most cap bytes to out; returns 0, or -1 when out is too small or a
 * block is not closed.
 */
int selfservice_page_csp(const char *html, size_t len, char *out, size_t cap);

#endif
