# The push library's own programs: tests/push/push-driver, which the
# integration tests and the benchmark run against the fakes. Included by
# the top-level Makefile before its own targets, so only pattern rules
# here: the default goal stays the Makefile's.

PUSH_DRIVER := $(B)/tests/push/push-driver

FAKE_BINS += $(PUSH_DRIVER)

$(B)/tests/push/%: tests/push/%.c $(PUSH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(PUSH_LIB) $(LDFLAGS_ALL) $(PKG_LIBS)
