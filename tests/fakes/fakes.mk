# The push fakes: fake_apns and fake_fcm, HTTP/2-over-TLS stand-ins for
# APNs and FCM used by the tests and as the local push sink. Included by
# the top-level Makefile; only pattern rules here, so the default goal
# stays the Makefile's own.

FAKES_DIR := $(B)/tests/fakes
FAKES_COMMON := $(FAKES_DIR)/h2srv.o $(FAKES_DIR)/plan.o \
	$(FAKES_DIR)/record.o $(FAKES_DIR)/fakeutil.o

FAKE_BINS += $(FAKES_DIR)/fake_apns $(FAKES_DIR)/fake_fcm

$(FAKES_DIR)/fake_%: $(FAKES_DIR)/fake_%.o $(FAKES_COMMON)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

# Keep the objects: they are intermediate files of the pattern rule.
.SECONDARY: $(FAKES_COMMON) $(FAKES_DIR)/fake_apns.o $(FAKES_DIR)/fake_fcm.o
