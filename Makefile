# vouch build. Everything comes from pkg-config; objects go under build/
# (or build/san/ for the sanitizer build that `make check` runs).
#
#   make            vouchd, vouchctl, the push library and the fakes
#   make test       unit tests, then integration tests
#   make check      the same two suites under ASan + UBSan
#   make run        a development server on 127.0.0.1:8080
#   make install    PREFIX=/usr/local DESTDIR=
#   make fmt        clang-format over the tree

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SHAREDIR ?= $(PREFIX)/share/vouch
DESTDIR ?=

PKGS = libevent libevent_openssl libevent_pthreads libnghttp2 libjwt jansson \
	libpq libcurl \
	openssl ldap
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS)) -lpthread -lm

# The sanitizer build uses clang and its own object tree; the fuzzing
# build adds libFuzzer's coverage instrumentation to it.
ifeq ($(FUZZ),1)
CC = clang
B = build/fuzz
SAN_FLAGS = -fsanitize=address,undefined,fuzzer-no-link \
	-fno-omit-frame-pointer
OPT = -O1 -g
else ifeq ($(SAN),1)
CC = clang
B = build/san
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
OPT = -O1 -g
else
B = build
SAN_FLAGS =
OPT ?= -O2 -g
endif

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes \
	-MMD -MP
CFLAGS_ALL = $(CFLAGS_BASE) $(OPT) $(SAN_FLAGS) -Iserver -Iapns-fcm \
	$(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN_FLAGS) $(LDFLAGS)

PYTHON ?= /usr/bin/python3

# --- the push library ------------------------------------------------------

PUSH_SRCS := $(wildcard apns-fcm/*.c)
PUSH_OBJS := $(PUSH_SRCS:%.c=$(B)/%.o)
PUSH_LIB := $(B)/libapnsfcm.a

# --- the server ------------------------------------------------------------

SERVER_SRCS := $(filter-out server/main.c server/ctl.c, \
	$(wildcard server/*.c))
SERVER_OBJS := $(SERVER_SRCS:%.c=$(B)/%.o) $(B)/gen/schema_files.o \
	$(B)/gen/openapi.o $(B)/gen/reset_page.o
SCHEMA_SQL := $(sort $(wildcard schema/*.sql))
SERVER_LIB := $(B)/libvouch.a

VOUCHD := $(B)/vouchd
VOUCHCTL := $(B)/vouchctl

# --- tests -----------------------------------------------------------------

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:%.c=$(B)/%)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:%.c=$(B)/%)
FUZZ_SECONDS ?= 10

# Small programs that drive one module on its own loop for the
# integration tests (tests/<module>/<module>-driver.c).
DRIVER_SRCS := $(wildcard tests/notify/*-driver.c tests/directory/*-driver.c)
DRIVER_BINS := $(DRIVER_SRCS:%.c=$(B)/%)

FAKE_BINS :=
BENCH_BINS :=
-include apns-fcm/apns-fcm.mk
-include tests/fakes/fakes.mk
-include tests/bench/bench.mk

all: $(VOUCHD) $(VOUCHCTL) $(FAKE_BINS) $(BENCH_BINS) $(DRIVER_BINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(B)/gen/schema_files.c: $(SCHEMA_SQL) ops/embed-schema
	@mkdir -p $(dir $@)
	ops/embed-schema $(SCHEMA_SQL) > $@

$(B)/gen/openapi.c: server/openapi.json ops/embed-file
	@mkdir -p $(dir $@)
	ops/embed-file openapi_json server/openapi.json > $@

$(B)/gen/reset_page.c: server/reset_page.html ops/embed-file
	@mkdir -p $(dir $@)
	ops/embed-file reset_page_html server/reset_page.html > $@

$(B)/gen/%.o: $(B)/gen/%.c
	$(CC) $(CFLAGS_ALL) -Wno-missing-variable-declarations -c -o $@ $<

$(PUSH_LIB): $(PUSH_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SERVER_LIB): $(SERVER_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(VOUCHD): $(B)/server/main.o $(SERVER_LIB) $(PUSH_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(VOUCHCTL): $(B)/server/ctl.o $(SERVER_LIB) $(PUSH_LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

$(B)/tests/unit/%: tests/unit/%.c $(SERVER_LIB) $(PUSH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(SERVER_LIB) $(PUSH_LIB) \
	    $(LDFLAGS_ALL) $(PKG_LIBS) -lcmocka

$(DRIVER_BINS): $(B)/%: %.c $(SERVER_LIB) $(PUSH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(SERVER_LIB) $(PUSH_LIB) $(LDFLAGS_ALL) \
	    $(PKG_LIBS)

$(B)/tests/fuzz/%: tests/fuzz/%.c $(SERVER_LIB) $(PUSH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(SERVER_LIB) \
	    $(PUSH_LIB) $(LDFLAGS_ALL) $(PKG_LIBS)

# --- test targets ----------------------------------------------------------

unit: $(UNIT_BINS)
	@failed=0; for t in $(UNIT_BINS); do \
	    echo "== $$t"; $$t || failed=1; done; \
	test $$failed -eq 0

integration: all
	VOUCH_BUILD=$(B) $(PYTHON) -m pytest -q tests/fakes $(PYTEST_ARGS)
	VOUCH_BUILD=$(B) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

# Dependencies first, so `make test` works on a fresh machine too; quick
# when everything is installed.
deps:
	ops/install-deps

test: deps
	$(MAKE) all unit integration

check:
	$(MAKE) SAN=1 all unit integration
	$(MAKE) FUZZ=1 fuzz-run

# Each fuzz target for FUZZ_SECONDS from its seed corpus (when it has one).
fuzz-run: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	    name=$$(basename $$f); corpus=$(B)/corpus/$$name; \
	    mkdir -p $$corpus; \
	    seeds=tests/fuzz/$$name.seeds; [ -d $$seeds ] || seeds=; \
	    echo "== $$name ($(FUZZ_SECONDS) s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
	        $$corpus $$seeds 2>&1 | tail -n 2 || exit 1; \
	done

fuzz:
	$(MAKE) FUZZ=1 fuzz-run

# --- running and installing ------------------------------------------------

# Dependencies first: a fresh machine cannot build without them.
run: deps
	$(MAKE) all
	ops/run-dev

install: $(VOUCHD) $(VOUCHCTL)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/schema
	install -m 755 $(VOUCHD) $(VOUCHCTL) $(DESTDIR)$(BINDIR)
	install -m 644 schema/*.sql $(DESTDIR)$(SHAREDIR)/schema
	install -m 644 server.toml.example ops/vouchd.service \
	    $(DESTDIR)$(SHAREDIR)

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: all deps unit integration test check run install fmt clean fuzz \
	fuzz-run

-include $(shell find $(B) -name '*.d' 2>/dev/null)
