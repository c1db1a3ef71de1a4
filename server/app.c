/*
 * The process-wide state that vouchd fills at start-up (see app.h). It
 * lives in the library so that every module, and vouchctl, links it.
 */
#include "app.h"

struct app app;
