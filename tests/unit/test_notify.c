/*
 * Unit tests of server/notify.c: the message and form builders, the
 * RFC 2047 and quoted-printable encoders, the mapping of provider replies
 * to outcomes, and the life of a send that never leaves the process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "conf.h"
#include "notify.h"

/* The contents of b as a string the caller frees. */
static char *
buffer_text(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	evbuffer_copyout(b, s, len);
	s[len] = '\0';
	return s;
}

/* The quoted-printable encoding of text, as a string the caller frees. */
static char *
qp(const char *text)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	notify_qp_encode(b, text);
	s = buffer_text(b);
	evbuffer_free(b);
	return s;
}

/* The encoded-words of text, as a string the caller frees. */
static char *
words(const char *text)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	notify_encode_words(b, text);
	s = buffer_text(b);
	evbuffer_free(b);
	return s;
}

/* A message with the usual fields and the given subject and text. */
static char *
build(const char *from, const char *to, const char *subject, const char *text,
    const char **cause)
{
	struct notify_mail m = {
		.from = from,
		.to = to,
		.subject = subject,
		.text = text,
		.date = 1796313051,
		.message_id = "0123abcd",
	};

	return notify_mail_build(&m, cause);
}

static void
test_mail_headers(void **state)
{
	const char *cause = NULL;
	char *msg;

	msg = build("Vouch Alerts <noreply@msp.example>", "tom@ajax.example",
	    "Your code", "Code: 123456\n", &cause);
	assert_non_null(msg);
	assert_null(cause);
	assert_string_equal(msg,
	    "From: \"Vouch Alerts\" <noreply@msp.example>\r\n"
	    "To: <tom@ajax.example>\r\n"
	    "Subject: Your code\r\n"
	    "Date: Thu, 03 Dec 2026 15:50:51 +0000\r\n"
	    "Message-ID: <0123abcd@msp.example>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "Auto-Submitted: auto-generated\r\n"
	    "\r\n"
	    "Code: 123456\r\n");
	free(msg);
}

static void
test_mail_from_forms(void **state)
{
	const char *cause;
	char *msg;

	msg = build("noreply@msp.example", "a@b.example", "s", "t", &cause);
	assert_non_null(msg);
	assert_non_null(
	    strstr(msg, "From: \"vouch\" <noreply@msp.example>\r\n"));
	assert_non_null(strstr(msg, "\r\n\r\nt\r\n"));
	free(msg);

	msg = build(
	    "Équipe <noreply@msp.example>", "a@b.example", "s", "t", &cause);
	assert_non_null(msg);
	assert_non_null(strstr(
	    msg, "From: =?UTF-8?B?w4lxdWlwZQ==?= <noreply@msp.example>\r\n"));
	free(msg);

	msg = build("Not an address", "a@b.example", "s", "t", &cause);
	assert_null(msg);
	assert_string_equal(cause, "sender address is malformed");
}

static void
test_mail_refuses_injection(void **state)
{
	const char *cause;

	assert_null(build("n@msp.example", "a@b.example",
	    "Hi\r\nBcc: evil@x.example", "t", &cause));
	assert_string_equal(cause, "subject holds a line break");
	assert_null(
	    build("n@msp.example", "a@b.example", "Hi\nthere", "t", &cause));
	assert_string_equal(cause, "subject holds a line break");
	assert_null(
	    build("n@msp.example", "a@b.example", "Hi\rthere", "t", &cause));
	assert_string_equal(cause, "subject holds a line break");
	assert_null(build("n@msp.example", "a@b.example\r\nBcc: e@x.example",
	    "s", "t", &cause));
	assert_string_equal(cause, "recipient address is not acceptable");
	assert_null(
	    build("n@msp.example", "a@b.example", "tab\there", "t", &cause));
	assert_string_equal(cause, "subject holds a control character");
	assert_null(
	    build("n@msp.example", "a@b.example", "bad \xc3\x28", "t", &cause));
	assert_string_equal(cause, "subject is not UTF-8");
	assert_null(
	    build("n@msp.example", "a@b.example", "s", "nul\x01", &cause));
	assert_string_equal(cause, "text holds a control character");
	assert_null(
	    build("n@msp.example", "a@b.example", "s", "\xed\xa0\x80", &cause));
	assert_string_equal(cause, "text is not UTF-8");
}

static void
test_mail_subject_encoded(void **state)
{
	const char *cause;
	char *msg, *w;

	msg = build("n@msp.example", "a@b.example", "Grüße", "t", &cause);
	assert_non_null(msg);
	assert_non_null(strstr(msg, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
	free(msg);

	/* Text that looks like an encoded-word is encoded, not passed on. */
	w = words("=?x?=");
	msg = build("n@msp.example", "a@b.example", "=?x?=", "t", &cause);
	assert_non_null(strstr(msg, w));
	free(msg);
	free(w);
}

/* Decode one encoded-word and append it to out; returns its length. */
static size_t
decode_word(const char *word, size_t len, char *out)
{
	unsigned char raw[128];
	int n;

	assert_true(len <= 75);
	assert_memory_equal(word, "=?UTF-8?B?", 10);
	assert_memory_equal(word + len - 2, "?=", 2);
	n = EVP_DecodeBlock(
	    raw, (const unsigned char *)word + 10, (int)len - 12);
	assert_true(n >= 0);

	/* DecodeBlock counts the padding as zero bytes. */
	if (word[len - 3] == '=')
		n--;
	if (word[len - 4] == '=')
		n--;
	/* A word never starts inside a UTF-8 character. */
	assert_true((raw[0] & 0xc0) != 0x80);
	memcpy(out, raw, (size_t)n);
	return (size_t)n;
}

static void
test_encode_words_split(void **state)
{
	char text[400], back[400], *w, *p, *end;
	size_t len = 0, i;

	/* 3-byte characters, so 45-byte words would cut one in two. */
	for (i = 0; i < 40; i++)
		memcpy(text + 3 * i, "\xe2\x82\xac", 3);
	memcpy(text + 120, "abc\xc3\xa9", 6);
	w = words(text);

	for (p = w; *p != '\0'; p = end) {
		end = strstr(p, "\r\n ");
		if (end == NULL)
			end = p + strlen(p);
		len += decode_word(p, (size_t)(end - p), back + len);
		if (*end != '\0')
			end += 3;
	}
	back[len] = '\0';
	assert_string_equal(back, text);
	assert_non_null(strstr(w, "\r\n "));
	free(w);
}

static void
test_qp(void **state)
{
	char line[200], *s, *p;
	size_t i;

	s = qp("a=b \xc3\xa9\n");
	assert_string_equal(s, "a=3Db =C3=A9\r\n");
	free(s);

	/* Blanks before a line end are encoded; CRLF stays one break. */
	s = qp("x \r\ny\t\nz ");
	assert_string_equal(s, "x=20\r\ny=09\r\nz=20");
	free(s);

	/* A lone CR is data, not a line end. */
	s = qp("a\rb");
	assert_string_equal(s, "a=0Db");
	free(s);

	/* Long lines get soft breaks; no line passes 76 characters. */
	for (i = 0; i < 180; i++)
		line[i] = (char)('a' + i % 26);
	memcpy(line + 180, "==\n", 4);
	s = qp(line);
	for (p = s; *p != '\0';) {
		size_t n = strcspn(p, "\r");

		assert_true(n <= 76);
		p += n;
		if (*p == '\r')
			p += 2;
	}
	assert_non_null(strstr(s, "=\r\n"));
	assert_non_null(strstr(s, "=3D=3D\r\n"));
	free(s);

	/* A line of exactly 75 characters is left alone. */
	memset(line, 'q', 75);
	line[75] = '\0';
	s = qp(line);
	assert_string_equal(s, line);
	free(s);
}

static void
test_mail_date(void **state)
{
	char out[32];

	notify_mail_date(0, out);
	assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 +0000");
	notify_mail_date(1796313051, out);
	assert_string_equal(out, "Thu, 03 Dec 2026 15:50:51 +0000");
	notify_mail_date(951782400, out);
	assert_string_equal(out, "Tue, 29 Feb 2000 00:00:00 +0000");
}

static void
test_addr_valid(void **state)
{
	static const char *const good[] = {
		"tom@ajax.example",
		"t.o.m+tag@a-b.example",
		"x@y",
		"o'neil@ajax.example",
	};
	static const char *const bad[] = {
		"",
		"tom",
		"@ajax.example",
		"tom@",
		"to m@a.example",
		"tom@a..example",
		".tom@a.example",
		"tom.@a.example",
		"\"tom\"@a.example",
		"tom@a@b.example",
		"tom@a_b.example",
		"tóm@a.example",
		"<tom@a.example>",
		"tom@a.example,b@c",
		"tom@a.example\n",
	};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_true(notify_mail_addr_valid(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_false(notify_mail_addr_valid(bad[i]));
	assert_false(notify_mail_addr_valid(NULL));
}

static void
test_parse_from(void **state)
{
	char *name, *addr;

	assert_int_equal(
	    notify_mail_parse_from("Vouch <n@m.example>", &name, &addr), 0);
	assert_string_equal(name, "Vouch");
	assert_string_equal(addr, "n@m.example");
	free(name);
	free(addr);

	assert_int_equal(notify_mail_parse_from(
	                     " \"MSP Desk\"  <n@m.example> ", &name, &addr),
	    0);
	assert_string_equal(name, "MSP Desk");
	assert_string_equal(addr, "n@m.example");
	free(name);
	free(addr);

	assert_int_equal(
	    notify_mail_parse_from("<n@m.example>", &name, &addr), 0);
	assert_null(name);
	assert_string_equal(addr, "n@m.example");
	free(addr);

	assert_int_equal(
	    notify_mail_parse_from("Vouch <n@m.example", &name, &addr), -1);
	assert_int_equal(
	    notify_mail_parse_from("Vouch n@m.example>", &name, &addr), -1);
	assert_int_equal(
	    notify_mail_parse_from("A\"B <n@m.example>", &name, &addr), -1);
	assert_int_equal(
	    notify_mail_parse_from("A\rB <n@m.example>", &name, &addr), -1);
	assert_int_equal(
	    notify_mail_parse_from("Vouch <n@m.example> x", &name, &addr), -1);
	assert_null(name);
	assert_null(addr);
}

static void
test_form(void **state)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	notify_form_append(b, "To", "+15005550006");
	notify_form_append(b, "From", "Vouch MSP");
	notify_form_append(b, "Body", "a&b=c -._~ é\n%");
	s = buffer_text(b);
	assert_string_equal(s,
	    "To=%2B15005550006&From=Vouch+MSP&"
	    "Body=a%26b%3Dc+-._~+%C3%A9%0A%25");
	free(s);
	evbuffer_free(b);
}

static void
test_sms_classify(void **state)
{
	char detail[160], id[72];

	assert_int_equal(
	    notify_sms_classify(201,
	        "{\"sid\": \"SM0123456789"
	        "abcdef0123456789abcdef\", \"status\": \"queued\"}",
	        -1, detail, sizeof(detail), id, sizeof(id)),
	    NOTIFY_SENT);
	assert_string_equal(id, "SM0123456789abcdef0123456789abcdef");

	/* A sid that is not plain letters and digits is not passed on. */
	assert_int_equal(notify_sms_classify(201, "{\"sid\": \"SM\\n1\"}", -1,
	                     detail, sizeof(detail), id, sizeof(id)),
	    NOTIFY_SENT);
	assert_string_equal(id, "");

	assert_int_equal(
	    notify_sms_classify(400,
	        "{\"code\": 21211, "
	        "\"message\": \"The 'To' number +1555 is not valid\", "
	        "\"status\": 400}",
	        -1, detail, sizeof(detail), id, sizeof(id)),
	    NOTIFY_FAILED);
	assert_non_null(strstr(detail, "21211"));
	assert_null(strstr(detail, "+1555"));

	assert_int_equal(notify_sms_classify(401, "{\"code\": 20003}", -1,
	                     detail, sizeof(detail), id, sizeof(id)),
	    NOTIFY_FAILED);
	assert_non_null(strstr(detail, "credentials"));

	assert_int_equal(notify_sms_classify(429, "{\"code\": 20429}", 7,
	                     detail, sizeof(detail), id, sizeof(id)),
	    NOTIFY_RETRY);
	assert_non_null(strstr(detail, "retry after 7 s"));

	assert_int_equal(notify_sms_classify(200, "{}", -1, detail,
	                     sizeof(detail), id, sizeof(id)),
	    NOTIFY_SENT);
	assert_string_equal(id, "");

	assert_int_equal(notify_sms_classify(503, "<html>", -1, detail,
	                     sizeof(detail), id, sizeof(id)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_sms_classify(500, NULL, -1, detail,
	                     sizeof(detail), id, sizeof(id)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_sms_classify(404, "", -1, detail,
	                     sizeof(detail), id, sizeof(id)),
	    NOTIFY_FAILED);
	assert_int_equal(notify_sms_classify(302, "", -1, detail,
	                     sizeof(detail), id, sizeof(id)),
	    NOTIFY_FAILED);
}

static void
test_email_classify(void **state)
{
	char detail[160];

	assert_int_equal(
	    notify_email_classify(CURLE_OK, 250, "", detail, sizeof(detail)),
	    NOTIFY_SENT);
	assert_int_equal(notify_email_classify(CURLE_SEND_ERROR, 550,
	                     "RCPT failed: 550", detail, sizeof(detail)),
	    NOTIFY_FAILED);
	assert_string_equal(detail, "smtp 550: RCPT failed: 550");
	assert_int_equal(notify_email_classify(CURLE_SEND_ERROR, 451,
	                     "RCPT failed: 451", detail, sizeof(detail)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_email_classify(CURLE_WEIRD_SERVER_REPLY, 421,
	                     "", detail, sizeof(detail)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_email_classify(CURLE_COULDNT_CONNECT, 0,
	                     "Failed to connect", detail, sizeof(detail)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_email_classify(CURLE_OPERATION_TIMEDOUT, 250,
	                     "", detail, sizeof(detail)),
	    NOTIFY_RETRY);
	assert_int_equal(notify_email_classify(CURLE_LOGIN_DENIED, 535, "",
	                     detail, sizeof(detail)),
	    NOTIFY_FAILED);
	assert_int_equal(notify_email_classify(CURLE_USE_SSL_FAILED, 250, "",
	                     detail, sizeof(detail)),
	    NOTIFY_FAILED);
	assert_string_equal(detail, "smtp server offers no STARTTLS");
	assert_int_equal(
	    notify_email_classify(CURLE_PEER_FAILED_VERIFICATION, 0,
	        "SSL certificate problem", detail, sizeof(detail)),
	    NOTIFY_FAILED);
	assert_string_equal(detail, "tls: SSL certificate problem");
}

/* What a done callback saw. */
struct seen {
	int calls;
	enum notify_outcome outcome;
	char detail[160];
};

static void
seen_cb(const struct notify_result *res, void *arg)
{
	struct seen *s = arg;

	s->calls++;
	s->outcome = res->outcome;
	snprintf(s->detail, sizeof(s->detail), "%s", res->detail);
}

static void
test_unconfigured_later(void **state)
{
	struct event_base *base = event_base_new();
	struct conf conf;
	struct notify *n;
	struct seen a = { 0 }, b = { 0 };
	const char *cause = NULL;

	memset(&conf, 0, sizeof(conf));
	n = notify_new(base, &conf, &cause);
	assert_non_null(n);
	assert_false(notify_can_email(n));
	assert_false(notify_can_sms(n));

	notify_email(n, "a@b.example", "s", "t", seen_cb, &a);
	notify_sms(n, "+15005550006", "t", seen_cb, &b);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.outcome, NOTIFY_UNCONFIGURED);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.outcome, NOTIFY_UNCONFIGURED);

	notify_free(n);
	assert_int_equal(a.calls, 1);
	event_base_free(base);
}

static void
test_refused_and_freed(void **state)
{
	struct event_base *base = event_base_new();
	struct conf conf;
	struct notify *n;
	struct seen bad = { 0 }, pending = { 0 }, sms = { 0 };
	const char *cause = NULL;
	char smtp[] = "smtp://127.0.0.1:9", from[] = "n@msp.example";

	memset(&conf, 0, sizeof(conf));
	conf.email_smtp_url = smtp;
	conf.email_from = from;
	n = notify_new(base, &conf, &cause);
	assert_non_null(n);
	assert_true(notify_can_email(n));

	/* Refused at once, but reported from the loop. */
	notify_email(
	    n, "a@b.example", "x\r\nBcc: e@x.example", "t", seen_cb, &bad);
	assert_int_equal(bad.calls, 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(bad.outcome, NOTIFY_FAILED);
	assert_string_equal(bad.detail, "subject holds a line break");

	/*
	 * Freeing completes what is still on its way: the mail thread may or
	 * may not have found the port closed by then.
	 */
	notify_email(n, "a@b.example", "s", "t", seen_cb, &pending);
	notify_sms(n, "+15005550006", "t", seen_cb, &sms);
	assert_int_equal(pending.calls, 0);
	notify_free(n);
	assert_int_equal(pending.calls, 1);
	if (pending.outcome == NOTIFY_FAILED)
		assert_string_equal(pending.detail, "shutting down");
	else
		assert_int_equal(pending.outcome, NOTIFY_RETRY);
	assert_int_equal(sms.calls, 1);
	assert_int_equal(sms.outcome, NOTIFY_UNCONFIGURED);

	event_base_free(base);
}

static void
test_metrics(void **state)
{
	struct event_base *base = event_base_new();
	struct evbuffer *out = evbuffer_new();
	struct conf conf;
	struct notify *n;
	struct seen a = { 0 };
	const char *cause = NULL;
	char *text;

	memset(&conf, 0, sizeof(conf));
	n = notify_new(base, &conf, &cause);
	notify_sms(n, "+15005550006", "t", seen_cb, &a);
	notify_sms(n, "+15005550006", "t", seen_cb, &a);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(a.calls, 2);

	notify_metrics(n, out);
	text = buffer_text(out);
	assert_non_null(
	    strstr(text, "# TYPE vouch_notify_sent_total counter\n"));
	assert_non_null(strstr(text,
	    "vouch_notify_sent_total{channel=\"sms\","
	    "outcome=\"unconfigured\"} 2\n"));
	assert_non_null(strstr(text,
	    "vouch_notify_sent_total{channel="
	    "\"email\",outcome=\"sent\"} 0\n"));
	assert_non_null(strstr(text,
	    "vouch_notify_in_flight{channel=\"sms\"}"
	    " 0\n"));
	free(text);
	evbuffer_free(out);
	notify_free(n);
	event_base_free(base);
}

static void
test_bad_configuration(void **state)
{
	struct event_base *base = event_base_new();
	struct conf conf;
	const char *cause = NULL;
	char http[] = "http://mail.example:25", from[] = "n@msp.example";
	char api[] = "http://api.example", sid[] = "AC123",
	     tel[] = "+15005550006";
	char tok[] = "/nonexistent/token", nofrom[] = "nobody";

	memset(&conf, 0, sizeof(conf));
	conf.email_smtp_url = http;
	conf.email_from = from;
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(
	    cause, "email.smtp_url must start with smtp:// or smtps://");

	conf.email_smtp_url = (char[]){ "smtp://mail.example:587" };
	conf.email_from = nofrom;
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(
	    cause, "email.from must be an address or \"Name <address>\"");

	memset(&conf, 0, sizeof(conf));
	conf.sms_api_base = api;
	conf.sms_account_sid = sid;
	conf.sms_from = tel;
	conf.sms_auth_token_file = tok;
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(
	    cause, "sms.api_base must be https:// (http:// only to 127.x)");

	conf.sms_api_base = (char[]){ "https://api.example" };
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(cause, "sms.auth_token_file cannot be used");

	conf.sms_api_base = (char[]){ "https://api.example/?x=1" };
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(cause, "sms.api_base is not a URL");
	event_base_free(base);
}

/* Write a secret file of mode 0600 at a fresh temporary path. */
static char *
secret_file(const char *text)
{
	char *path = strdup("/tmp/test_notify.XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
test_good_configuration(void **state)
{
	struct event_base *base = event_base_new();
	struct conf conf;
	struct notify *n;
	const char *cause = NULL;
	char *tok = secret_file("t0ken\n"), *pw = secret_file("pw\n");

	/* Plain HTTP only to a loopback address; smtp:// to anything. */
	memset(&conf, 0, sizeof(conf));
	conf.sms_api_base = (char[]){ "http://127.0.0.1:9/" };
	conf.sms_account_sid = (char[]){ "AC123" };
	conf.sms_from = (char[]){ "VouchMSP" };
	conf.sms_auth_token_file = tok;
	conf.email_smtp_url = (char[]){ "smtp://mail.example:587" };
	conf.email_from = (char[]){ "\"MSP Desk\" <n@msp.example>" };
	conf.email_username = (char[]){ "desk" };
	conf.email_password_file = pw;
	n = notify_new(base, &conf, &cause);
	assert_non_null(n);
	assert_true(notify_can_sms(n));
	assert_true(notify_can_email(n));
	notify_free(n);

	conf.email_password_file = NULL;
	assert_null(notify_new(base, &conf, &cause));
	assert_string_equal(
	    cause, "email.username and email.password_file go together");

	unlink(tok);
	unlink(pw);
	free(tok);
	free(pw);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mail_headers),
		cmocka_unit_test(test_mail_from_forms),
		cmocka_unit_test(test_mail_refuses_injection),
		cmocka_unit_test(test_mail_subject_encoded),
		cmocka_unit_test(test_encode_words_split),
		cmocka_unit_test(test_qp),
		cmocka_unit_test(test_mail_date),
		cmocka_unit_test(test_addr_valid),
		cmocka_unit_test(test_parse_from),
		cmocka_unit_test(test_form),
		cmocka_unit_test(test_sms_classify),
		cmocka_unit_test(test_email_classify),
		cmocka_unit_test(test_unconfigured_later),
		cmocka_unit_test(test_refused_and_freed),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_bad_configuration),
		cmocka_unit_test(test_good_configuration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
