/*
 * libFuzzer target for the configuration parser: any bytes given to
 * conf_parse must either be refused with messages or yield a conf that
 * frees cleanly, without reading past the buffer (it has no NUL).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *fuzz_conf_sink;
static size_t fuzz_conf_accepted;

/* Parse one input; messages go to /dev/null so they are still formatted. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *conf;

	if (fuzz_conf_sink == NULL)
		fuzz_conf_sink = fopen("/dev/null", "w");

	conf =
	    conf_parse((const char *)data, size, "fuzz.toml", fuzz_conf_sink);
	if (conf != NULL) {
		fuzz_conf_accepted += conf->server_max_body_bytes > 0;
		conf_free(conf);
	}
	return 0;
}
