/*
 * Levelled log lines on stderr, as text or one JSON object per line. Each
 * line is built in a stack buffer, capped at 4 KiB and written with one
 * write(2), so lines from several processes and threads never interleave.
 * Control characters and invalid UTF-8 are escaped so a line stays one line.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX 4096

static enum log_level log_threshold = LOG_LEVEL_INFO;
static enum log_format log_format_used = LOG_FORMAT_TEXT;

static const char *const log_level_names[] = { "error", "warn", "info",
	"debug" };
static const char log_level_letters[] = "EWID";

/* A line being built: content stops at limit, leaving room for the tail. */
struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	size_t limit;
	bool truncated;
};

/* Set the threshold and the format. */
void
log_setup(enum log_level level, enum log_format format)
{
	log_threshold = level;
	log_format_used = format;
}

/* Parse a level name. */
int
log_level_parse(const char *name, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(log_level_names) / sizeof(*log_level_names);
	     i++) {
		if (strcmp(name, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* True when lines of this level are printed. */
bool
log_enabled(enum log_level level)
{
	return level <= log_threshold;
}

/* Append n bytes whole, or mark the line truncated if they do not fit. */
static void
log_put(struct log_line *line, const char *s, size_t n)
{
	if (line->truncated)
		return;
	if (line->len + n > line->limit) {
		line->truncated = true;
		return;
	}
	memcpy(line->buf + line->len, s, n);
	line->len += n;
}

/* Append a NUL-terminated string. */
static void
log_puts(struct log_line *line, const char *s)
{
	log_put(line, s, strlen(s));
}

/*
 * Write the escape for byte c into out (at least 8 bytes) and return its
 * length: JSON escapes, or \n, \t and \xNN in text. An invalid UTF-8 byte
 * becomes U+FFFD in JSON.
 */
static size_t
log_escape(unsigned char c, bool invalid, bool json, char *out)
{
	static const char from[] = "\n\r\t\b\f\"\\";
	static const char to[] = "nrtbf\"\\";
	const char *q;

	if (invalid && json)
		return (size_t)snprintf(out, 8, "\\ufffd");
	if (!invalid && c != 0 && (q = strchr(from, c)) != NULL) {
		out[0] = '\\';
		out[1] = to[q - from];
		return 2;
	}
	return (size_t)snprintf(out, 8, json ? "\\u%04x" : "\\x%02x", c);
}

/* Append n bytes of s, escaped for the format, one character at a time. */
static void
log_put_escaped(struct log_line *line, const char *s, size_t n, bool json)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k;
	char esc[8];

	while (i < n && !line->truncated) {
		k = util_utf8_decode(u + i, n - i, NULL);
		if (k > 1 ||
		    (k == 1 && u[i] >= 0x20 && u[i] != 0x7f &&
		        !(json && (u[i] == '"' || u[i] == '\\')))) {
			log_put(line, s + i, k);
			i += k;
			continue;
		}
		log_put(line, esc, log_escape(u[i], k == 0, json, esc));
		i++;
	}
}

/* Append the current UTC time as 2026-12-03T15:04:05.123Z. */
static void
log_put_time(struct log_line *line)
{
	struct timespec ts;
	struct tm tm;
	char buf[48];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(
	    buf + n, sizeof(buf) - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
	log_puts(line, buf);
}

/* Build "time pid L object: message". */
static void
log_format_text(struct log_line *line, enum log_level level, const char *object,
    const char *msg, size_t len)
{
	char head[32];

	log_put_time(line);
	snprintf(head, sizeof(head), " %ld %c ", (long)getpid(),
	    log_level_letters[level]);
	log_puts(line, head);
	if (object != NULL) {
		log_put_escaped(line, object, strlen(object), false);
		log_puts(line, ": ");
	}
	log_put_escaped(line, msg, len, false);
}

/* Build {"time":...,"pid":...,"level":...,"object":...,"msg":...}. */
static void
log_format_json(struct log_line *line, enum log_level level, const char *object,
    const char *msg, size_t len)
{
	char head[64];

	log_puts(line, "{\"time\":\"");
	log_put_time(line);
	snprintf(head, sizeof(head), "\",\"pid\":%ld,\"level\":\"%s\"",
	    (long)getpid(), log_level_names[level]);
	log_puts(line, head);
	if (object != NULL) {
		log_puts(line, ",\"object\":\"");
		log_put_escaped(line, object, strlen(object), true);
		log_puts(line, "\"");
	}
	log_puts(line, ",\"msg\":\"");
	log_put_escaped(line, msg, len, true);
}

/* Write the whole line, retrying on interrupts and short writes. */
static void
log_write(const struct log_line *line)
{
	size_t off = 0;
	ssize_t n;

	while (off < line->len) {
		n = write(STDERR_FILENO, line->buf + off, line->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (size_t)n;
	}
}

/* Format, cap and write one line; errno is left as the caller had it. */
static void
log_vmsg(enum log_level level, const char *object, const char *fmt, va_list ap)
{
	bool json = log_format_used == LOG_FORMAT_JSON;
	const char *tail = json ? "\"}\n" : "\n";
	struct log_line line;
	char msg[LOG_LINE_MAX];
	int saved = errno, n;

	if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_ERROR;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		n = snprintf(msg, sizeof(msg), "(unprintable message)");

	line.len = 0;
	line.truncated = false;
	line.limit = sizeof(line.buf) - strlen("...") - strlen(tail);
	if (json)
		log_format_json(&line, level, object, msg, strlen(msg));
	else
		log_format_text(&line, level, object, msg, strlen(msg));

	line.limit = sizeof(line.buf);
	if (line.truncated || (size_t)n >= sizeof(msg)) {
		line.truncated = false;
		log_puts(&line, "...");
	}
	log_puts(&line, tail);
	log_write(&line);
	errno = saved;
}

/* Print one line about the object. */
void
log_msg(enum log_level level, const char *object, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vmsg(level, object, fmt, ap);
	va_end(ap);
}

/* Log at error level and exit(1). */
noreturn void
fatal(const char *object, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERROR, object, fmt, ap);
	va_end(ap);
	exit(1);
}
