# The two commands: `make run` builds and starts the broker, `make test`
# builds everything (normal, ASan+UBSan, fuzz) and runs every test.
# Both install missing Debian packages first (scripts/deps.sh).
JOBS  ?= $(shell nproc)
ARGS  ?=
FUZZ_RUNS ?= 20000

.PHONY: all run test build build-asan fuzz fuzz-run unit bench deps deps-build deps-run format clean

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

test: deps build build-asan
	cd build && ctest --output-on-failure -j 1
	cd build-asan && ctest --output-on-failure -j 1
	@$(MAKE) --no-print-directory fuzz-run

bench: build
	bench/compare.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz compile_commands.json
