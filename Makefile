# The two commands: `make run` builds and starts the broker, `make test`
# builds everything (normal, ASan+UBSan, fuzz) and runs every test.
# Both install missing Debian packages first (scripts/deps.sh).
JOBS  ?= $(shell nproc)
ARGS  ?=
FUZZ_RUNS ?= 20000
FUZZ_SECONDS ?= 600

.PHONY: all run cluster cluster-down test build build-asan fuzz fuzz-run fuzz-long unit bench deps deps-build deps-run install uninstall format clean

all: build

deps-build:
	@scripts/deps.sh build

deps-run:
	@scripts/deps.sh run

deps:
	@scripts/deps.sh all

build: deps-build
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)
	@ln -sf build/compile_commands.json compile_commands.json

# Also installs the clients the README's walkthrough uses next.
run: deps-run build
	./build/certmq serve $(ARGS)

# A three-node cluster on this machine (PostgreSQL, NATS, HAProxy, three
# nodes; scripts/cluster.sh), the walkthrough's ports served by HAProxy.
cluster:
	@scripts/cluster.sh up

cluster-down:
	@scripts/cluster.sh down

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DFUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

# Each fuzz target runs a bounded number of iterations on its seed corpus
# (new inputs it finds go to build-fuzz/corpus-NAME, not into the tree).
fuzz-run: fuzz
	@for t in build-fuzz/fuzz_*; do \
	  n=$${t##*/fuzz_}; echo "fuzz: $$n"; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  $$t -runs=$(FUZZ_RUNS) -max_len=4096 build-fuzz/corpus-$$n fuzz/corpus/$$n >/dev/null 2>build-fuzz/$$n.log || { tail -40 build-fuzz/$$n.log; exit 1; }; \
	done

# Each fuzz target runs FUZZ_SECONDS (default 600) from its seed corpus and
# what earlier long runs found (build-fuzz/long-NAME); then the inputs that
# add coverage are merged, minimised, into fuzz/corpus/NAME (commit them).
# A crash stops the run: its input is build-fuzz/NAME-crash-*, log NAME-long.log.
fuzz-long: fuzz
	@for t in build-fuzz/fuzz_*; do \
	  n=$${t##*/fuzz_}; echo "fuzz-long: $$n for $(FUZZ_SECONDS) s"; \
	  mkdir -p build-fuzz/long-$$n; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=build-fuzz/$$n- \
	    build-fuzz/long-$$n fuzz/corpus/$$n >build-fuzz/$$n-long.log 2>&1 \
	    || { tail -60 build-fuzz/$$n-long.log; exit 1; }; \
	  before=$$(ls fuzz/corpus/$$n | wc -l); \
	  $$t -merge=1 -max_len=4096 fuzz/corpus/$$n build-fuzz/long-$$n \
	    >>build-fuzz/$$n-long.log 2>&1 || { tail -20 build-fuzz/$$n-long.log; exit 1; }; \
	  echo "fuzz-long: $$n: $$(grep -m1 -o 'cov: [0-9]*' build-fuzz/$$n-long.log | tail -1) ->" \
	    "$$(grep -o 'cov: [0-9]*' build-fuzz/$$n-long.log | tail -1)," \
	    "corpus $$before -> $$(ls fuzz/corpus/$$n | wc -l) files"; \
	done

test: deps build build-asan
	scripts/run-tests.sh
	@$(MAKE) --no-print-directory fuzz-run

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the binary, certmq(1) and the
# example certmq.conf (both printed by the binary from its option table, so
# they never drift from the parser), the systemd unit and its sysusers entry.
# An existing SYSCONFDIR/certmq/certmq.conf is kept. CERTMQ=path installs
# another build of the binary (nothing is built then).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share/certmq
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
STATEDIR   ?= /var/lib/certmq
CERTMQ     ?= build/certmq
INSTALL_TMP = $(or $(TMPDIR),/tmp)/certmq-install.$(shell echo $$$$)

install: $(if $(filter build/certmq,$(CERTMQ)),build)
	@set -e; t=$(INSTALL_TMP); mkdir -p $$t; trap 'rm -rf '$$t EXIT; \
	sub='s|/var/lib/certmq|$(STATEDIR)|g; s|/etc/certmq|$(SYSCONFDIR)/certmq|g'; \
	$(CERTMQ) serve --help-man | sed "$$sub" > $$t/certmq.1; \
	$(CERTMQ) serve --example-config | sed "$$sub" > $$t/certmq.conf; \
	sed 's|@BINDIR@|$(BINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g; s|@STATEDIR@|$(STATEDIR)|g' \
	  dist/certmq.service.in > $$t/certmq.service; \
	sed 's|/var/lib/certmq|$(STATEDIR)|g' dist/certmq.sysusers > $$t/sysusers.conf; \
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DATADIR) \
	  $(DESTDIR)$(SYSCONFDIR)/certmq $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR); \
	install -m 0755 $(CERTMQ) $(DESTDIR)$(BINDIR)/certmq; \
	install -m 0644 $$t/certmq.1 $(DESTDIR)$(MANDIR)/man1/certmq.1; \
	install -m 0644 $$t/certmq.conf $(DESTDIR)$(DATADIR)/certmq.conf.example; \
	[ -e $(DESTDIR)$(SYSCONFDIR)/certmq/certmq.conf ] || \
	  install -m 0644 $$t/certmq.conf $(DESTDIR)$(SYSCONFDIR)/certmq/certmq.conf; \
	install -m 0644 $$t/certmq.service $(DESTDIR)$(UNITDIR)/certmq.service; \
	install -m 0644 $$t/sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/certmq.conf; \
	echo "installed certmq into $(DESTDIR)$(PREFIX) (config: $(SYSCONFDIR)/certmq/certmq.conf," \
	  "unit: $(UNITDIR)/certmq.service)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/certmq $(DESTDIR)$(MANDIR)/man1/certmq.1 \
	  $(DESTDIR)$(DATADIR)/certmq.conf.example $(DESTDIR)$(UNITDIR)/certmq.service \
	  $(DESTDIR)$(SYSUSERSDIR)/certmq.conf
	-rmdir $(DESTDIR)$(DATADIR)

bench: build
	bench/compare.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz compile_commands.json
