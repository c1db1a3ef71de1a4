/*
 * Levelled log lines on stderr: time with milliseconds, pid, a level
 * letter, the object the line is about ("req 7f3a", "db 2", "apns 1"),
 * then a lowercase message. Text by default, or one JSON object per line.
 * Secrets never go through here: callers log a short hash or last four.
 */
#ifndef VOUCH_LOG_H
#define VOUCH_LOG_H

#include <stdbool.h>
#include <stdnoreturn.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON,
};

/* Set the threshold and the format; the defaults are info and text. */
void log_setup(enum log_level level, enum log_format format);

/* Parse "error", "warn", "info" or "debug"; returns 0 or -1. */
int log_level_parse(const char *name, enum log_level *out);

/* True when lines of this level are printed. */
bool log_enabled(enum log_level level);

/*
 * Print one line about the object (may be NULL for the process itself).
 * The message must not end in a newline.
 */
void log_msg(enum log_level level, const char *object, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log at error level and exit(1): start-up failures and broken invariants. */
noreturn void fatal(const char *object, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(obj, ...) log_msg(LOG_LEVEL_ERROR, (obj), __VA_ARGS__)
#define log_warn(obj, ...) log_msg(LOG_LEVEL_WARN, (obj), __VA_ARGS__)
#define log_info(obj, ...) log_msg(LOG_LEVEL_INFO, (obj), __VA_ARGS__)

/* Debug lines cost one comparison when debug is off. */
#define log_debug(obj, ...) \
	do { \
		if (log_enabled(LOG_LEVEL_DEBUG)) \
			log_msg(LOG_LEVEL_DEBUG, (obj), __VA_ARGS__); \
	} while (0)

#endif
