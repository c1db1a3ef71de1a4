/*
 * Schema migrations: the numbered files of schema/, embedded in the
 * binary at build time, applied in order under an advisory lock so that
 * several processes may start at once. Used by vouchd at start-up and by
 * `vouchctl migrate`.
 */
#ifndef VOUCH_MIGRATE_H
#define VOUCH_MIGRATE_H

#include <stddef.h>
#include <libpq-fe.h>

struct migration {
	const char *name; /* "001_base" */
	const char *sql;
};

extern const struct migration migrations[];
extern const size_t migrations_count;

/*
 * Apply every pending migration over a blocking connection. Returns the
 * number applied, or -1 with a message in err.
 */
int migrate_apply(PGconn *conn, char *err, size_t errlen);

/* The name of the newest embedded migration. */
const char *migrate_latest(void);

#endif
