/*
 * Unit tests of the log lines: the text and JSON formats, escaping,
 * the 4 KiB cap, level filtering, and whole lines from several
 * processes writing at once. stderr is captured into a temporary file.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The timestamp of a line: UTC with milliseconds. */
#define TIME_RE \
	"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

static int saved_stderr = -1;
static int capture_fd = -1;

/* Send stderr to a fresh temporary file until capture_end. */
static void
capture_begin(void)
{
	char path[] = "/tmp/vouch-test-log-XXXXXX";

	capture_fd = mkstemp(path);
	assert_true(capture_fd >= 0);
	unlink(path);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Restore stderr and return what was written to it (caller frees). */
static char *
capture_end(void)
{
	off_t size;
	char *buf;

	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
	close(saved_stderr);
	size = lseek(capture_fd, 0, SEEK_END);
	assert_true(size >= 0);
	buf = calloc(1, (size_t)size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(capture_fd, buf, (size_t)size, 0), size);
	close(capture_fd);
	return buf;
}

/* Assert that text matches the extended regular expression re. */
static void
assert_matches(const char *text, const char *re)
{
	regex_t rx;

	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&rx, text, 0, NULL, 0) != 0)
		fail_msg("\"%s\" does not match %s", text, re);
	regfree(&rx);
}

/* Reset the module to its defaults after each test. */
static int
reset(void **state)
{
	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
	return 0;
}

/* A text line is time, pid, level letter, object and message. */
static void
test_text_line(void **state)
{
	char *out, re[256];

	capture_begin();
	log_info("req 7f3a", "request done status=%d", 200);
	log_warn(NULL, "starting without %s", "apns");
	out = capture_end();

	snprintf(re, sizeof(re),
	    "^" TIME_RE " %ld I req 7f3a: request done "
	    "status=200\n" TIME_RE " %ld W starting without apns\n$",
	    (long)getpid(), (long)getpid());
	assert_matches(out, re);
	free(out);
}

/* The time is now, in UTC, whatever the local zone. */
static void
test_time_is_utc_now(void **state)
{
	struct tm tm;
	time_t before, logged;
	char *out, *rest;

	/* A local-time stamp would be nine hours off here. */
	setenv("TZ", "Asia/Tokyo", 1);
	tzset();
	before = time(NULL);
	capture_begin();
	log_info(NULL, "tick");
	out = capture_end();
	unsetenv("TZ");
	tzset();

	memset(&tm, 0, sizeof(tm));
	rest = strptime(out, "%Y-%m-%dT%H:%M:%S", &tm);
	assert_non_null(rest);
	logged = timegm(&tm);
	assert_true(logged >= before - 1 && logged <= time(NULL) + 1);
	free(out);
}

/* Each level has its letter. */
static void
test_level_letters(void **state)
{
	char *out;

	log_setup(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
	capture_begin();
	log_error("db 1", "e");
	log_warn("db 1", "w");
	log_info("db 1", "i");
	log_debug("db 1", "d");
	out = capture_end();

	assert_matches(out,
	    "^" TIME_RE " [0-9]+ E db 1: e\n" TIME_RE
	    " [0-9]+ W db 1: w\n" TIME_RE " [0-9]+ I db 1: i\n" TIME_RE
	    " [0-9]+ D db 1: d\n$");
	free(out);
}

static int debug_args_evaluated;

/* An argument whose evaluation the test can see. */
static int
count_evaluation(void)
{
	debug_args_evaluated++;
	return 1;
}

/* Lines below the threshold are dropped; debug costs no evaluation. */
static void
test_level_filtering(void **state)
{
	char *out;

	log_setup(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
	assert_true(log_enabled(LOG_LEVEL_ERROR));
	assert_true(log_enabled(LOG_LEVEL_WARN));
	assert_false(log_enabled(LOG_LEVEL_INFO));
	assert_false(log_enabled(LOG_LEVEL_DEBUG));

	capture_begin();
	log_info("x", "hidden info");
	log_debug("x", "hidden debug %d", count_evaluation());
	log_warn("x", "shown warn");
	log_error("x", "shown error");
	out = capture_end();

	assert_int_equal(debug_args_evaluated, 0);
	assert_null(strstr(out, "hidden"));
	assert_matches(out,
	    "^" TIME_RE " [0-9]+ W x: shown warn\n" TIME_RE
	    " [0-9]+ E x: shown error\n$");
	free(out);

	log_setup(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
	capture_begin();
	log_warn("x", "hidden");
	out = capture_end();
	assert_string_equal(out, "");
	free(out);
}

/* Only the four lowercase level names parse. */
static void
test_level_parse(void **state)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	enum log_level level;
	size_t i;

	for (i = 0; i < 4; i++) {
		assert_int_equal(log_level_parse(names[i], &level), 0);
		assert_int_equal(level, (enum log_level)i);
	}
	assert_int_equal(log_level_parse("verbose", &level), -1);
	assert_int_equal(log_level_parse("INFO", &level), -1);
	assert_int_equal(log_level_parse("", &level), -1);
}

/* Text lines escape control characters and bad UTF-8. */
static void
test_text_escaping(void **state)
{
	char *out;

	capture_begin();
	log_info("user\nx",
	    "line1\nline2\ttab\x01 \"q\" \\ caf\xc3\xa9 "
	    "bad\xff end");
	out = capture_end();

	assert_matches(out, "^" TIME_RE " [0-9]+ I ");
	assert_non_null(strstr(out,
	    " I user\\nx: line1\\nline2\\ttab\\x01 "
	    "\"q\" \\ caf\xc3\xa9 bad\\xff end\n"));
	assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
	free(out);
}

/* Parse one captured JSON line; the caller decrefs. */
static json_t *
parse_json_line(const char *out)
{
	json_error_t err;
	json_t *obj;
	size_t n = strlen(out);

	assert_true(n > 0);
	assert_int_equal(out[n - 1], '\n');
	assert_null(memchr(out, '\n', n - 1));
	obj = json_loadb(out, n - 1, 0, &err);
	if (obj == NULL)
		fail_msg("not JSON (%s): %s", err.text, out);
	return obj;
}

/* A JSON line has the same fields; object is left out when NULL. */
static void
test_json_line(void **state)
{
	char *out;
	json_t *obj;

	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_warn("req 7f3a", "slow request ms=%d", 1200);
	out = capture_end();

	assert_matches(out,
	    "^\\{\"time\":\"" TIME_RE "\",\"pid\":[0-9]+,"
	    "\"level\":\"warn\",\"object\":\"req 7f3a\","
	    "\"msg\":\"slow request ms=1200\"\\}\n$");
	obj = parse_json_line(out);
	assert_int_equal(
	    json_integer_value(json_object_get(obj, "pid")), getpid());
	json_decref(obj);
	free(out);

	capture_begin();
	log_error(NULL, "no object");
	out = capture_end();
	obj = parse_json_line(out);
	assert_null(json_object_get(obj, "object"));
	assert_string_equal(
	    json_string_value(json_object_get(obj, "level")), "error");
	assert_string_equal(
	    json_string_value(json_object_get(obj, "msg")), "no object");
	json_decref(obj);
	free(out);
}

/* JSON strings escape quotes, backslashes and control characters. */
static void
test_json_escaping(void **state)
{
	const char *msg = "quote \" backslash \\ nl \n cr \r tab \t bell \x07 "
	                  "del \x7f caf\xc3\xa9 \xf0\x9f\x98\x80";
	char *out;
	json_t *obj;

	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	log_info("obj \"1\"", "%s", msg);
	out = capture_end();

	assert_non_null(strstr(out,
	    "quote \\\" backslash \\\\ nl \\n cr \\r "
	    "tab \\t bell \\u0007 del \\u007f"));
	obj = parse_json_line(out);
	assert_string_equal(
	    json_string_value(json_object_get(obj, "msg")), msg);
	assert_string_equal(
	    json_string_value(json_object_get(obj, "object")), "obj \"1\"");
	json_decref(obj);
	free(out);
}

/* Invalid UTF-8 becomes U+FFFD so the line stays valid JSON. */
static void
test_json_invalid_utf8(void **state)
{
	char *out;
	json_t *obj;

	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_begin();
	/* A stray byte, a truncated sequence, an overlong and a surrogate. */
	log_info("bad\xfe",
	    "a\xff"
	    "b \xe2\x82 c \xc0\xaf d \xed\xa0\x80 e");
	out = capture_end();

	obj = parse_json_line(out);
	assert_string_equal(json_string_value(json_object_get(obj, "msg")),
	    "a\xef\xbf\xbd"
	    "b \xef\xbf\xbd\xef\xbf\xbd c "
	    "\xef\xbf\xbd\xef\xbf\xbd d "
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd e");
	assert_string_equal(json_string_value(json_object_get(obj, "object")),
	    "bad\xef\xbf\xbd");
	json_decref(obj);
	free(out);
}

/* A long text line is cut to 4 KiB and ends in "...". */
static void
test_text_cap(void **state)
{
	char *big, *out;
	size_t n;

	big = malloc(10001);
	memset(big, 'x', 10000);
	big[10000] = '\0';
	capture_begin();
	log_info("req 1", "%s", big);
	log_info("req 2", "after");
	out = capture_end();

	n = (size_t)(strchr(out, '\n') - out) + 1;
	assert_true(n <= 4096);
	assert_true(n > 4000);
	assert_memory_equal(out + n - 5, "x...\n", 5);
	assert_non_null(strstr(out + n, " I req 2: after\n"));
	free(out);
	free(big);
}

/* A long JSON line is cut to 4 KiB and still parses. */
static void
test_json_cap(void **state)
{
	static const char *const units[] = { "a", "\xc3\xa9", "\n", "\x01" };
	char *big, *out;
	json_t *obj;
	size_t i, k, n, len;
	const char *msg;

	log_setup(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	for (i = 0; i < 4; i++) {
		/* Cut must not split a UTF-8 character or an escape. */
		big = malloc(6001);
		for (k = 0, len = strlen(units[i]); k + len <= 6000; k += len)
			memcpy(big + k, units[i], len);
		big[k] = '\0';

		capture_begin();
		log_info("req 1", "%s", big);
		out = capture_end();

		n = strlen(out);
		assert_true(n <= 4096);
		assert_true(n > 4000);
		assert_memory_equal(out + n - 6, "...\"}\n", 6);
		obj = parse_json_line(out);
		msg = json_string_value(json_object_get(obj, "msg"));
		assert_non_null(msg);
		assert_memory_equal(msg + strlen(msg) - 3, "...", 3);
		json_decref(obj);
		free(out);
		free(big);
	}
}

/* Logging leaves errno as it was. */
static void
test_errno_kept(void **state)
{
	char *out;

	capture_begin();
	errno = EAGAIN;
	log_info("x", "y");
	assert_int_equal(errno, EAGAIN);
	out = capture_end();
	free(out);
}

/* fatal logs at error level and exits 1. */
static void
test_fatal_exits(void **state)
{
	int status;
	pid_t pid;
	char *out;

	capture_begin();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		fatal("conf", "cannot start: %s", "bad config");
	assert_int_equal(waitpid(pid, &status, 0), pid);
	out = capture_end();

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	assert_matches(out,
	    "^" TIME_RE " [0-9]+ E conf: cannot start: bad "
	    "config\n$");
	free(out);
}

/* Check one line written by a child of test_processes_do_not_interleave. */
static void
check_child_line(const char *line, size_t n)
{
	char object[32];
	int child, seq, used = 0;
	size_t k;

	assert_int_equal(
	    sscanf(line, "%*s %*d I %31[^:]: %n", object, &used), 1);
	assert_int_equal(sscanf(object, "child %d", &child), 1);
	assert_true(used > 0);
	assert_int_equal(sscanf(line + used, "%d ", &seq), 1);
	for (k = (size_t)used; k < n && line[k] != ' '; k++)
		;
	for (k++; k < n; k++)
		if (line[k] != 'a' + child)
			fail_msg("line mixed with another: %.*s", (int)n, line);
}

/* Lines from processes sharing stderr never mix. */
static void
test_processes_do_not_interleave(void **state)
{
	enum { CHILDREN = 4, LINES = 200 };
	char *out, *line, pad[3001];
	int i, j, status, lines = 0;
	pid_t pids[CHILDREN];

	capture_begin();
	/* Appending like a journal or a shared log file does. */
	assert_true(fcntl(STDERR_FILENO, F_SETFL, O_APPEND) == 0);
	for (i = 0; i < CHILDREN; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] != 0)
			continue;
		memset(pad, 'a' + i, 3000);
		pad[3000] = '\0';
		for (j = 0; j < LINES; j++) {
			char object[16];

			snprintf(object, sizeof(object), "child %d", i);
			log_info(object, "%d %s", j, pad);
		}
		_exit(0);
	}
	for (i = 0; i < CHILDREN; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_int_equal(status, 0);
	}
	out = capture_end();

	for (line = out; *line != '\0'; lines++) {
		char *nl = strchr(line, '\n');

		assert_non_null(nl);
		check_child_line(line, (size_t)(nl - line));
		line = nl + 1;
	}
	assert_int_equal(lines, CHILDREN * LINES);
	free(out);
}

/* Run every test; the exit status counts the failures. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_text_line, reset),
		cmocka_unit_test_teardown(test_time_is_utc_now, reset),
		cmocka_unit_test_teardown(test_level_letters, reset),
		cmocka_unit_test_teardown(test_level_filtering, reset),
		cmocka_unit_test_teardown(test_level_parse, reset),
		cmocka_unit_test_teardown(test_text_escaping, reset),
		cmocka_unit_test_teardown(test_json_line, reset),
		cmocka_unit_test_teardown(test_json_escaping, reset),
		cmocka_unit_test_teardown(test_json_invalid_utf8, reset),
		cmocka_unit_test_teardown(test_text_cap, reset),
		cmocka_unit_test_teardown(test_json_cap, reset),
		cmocka_unit_test_teardown(test_errno_kept, reset),
		cmocka_unit_test_teardown(test_fatal_exits, reset),
		cmocka_unit_test_teardown(
		    test_processes_do_not_interleave, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
