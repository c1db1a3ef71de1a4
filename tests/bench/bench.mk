# Benchmarks: `make bench-push` runs tests/bench/push (the push library
# against h2load and @parse/node-apn over one TLS connection). Not part
# of `make test`. Included before the Makefile's own targets, so only a
# pattern rule here: the default goal stays the Makefile's.

bench-%: $(B)/tests/push/push-driver $(B)/tests/fakes/fake_apns
	VOUCH_BUILD=$(B) tests/bench/$*
