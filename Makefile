# jobmatch - build, test, benchmark.  `make help` lists the targets.
CC      ?= gcc
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wvla
CSTD    := -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64
PKGS    := openblas libutf8proc libcjson sqlite3 libcrypto libpq libmicrohttpd
BUILD   ?= build
SAN     ?=
ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?=
# Functions start on a cache line: otherwise the hot kernels' alignment moves
# with whatever is linked before them, and with it a cold query's time, by
# ~0.4 ms of 8 at 100,000 jobs (measured between two builds differing only
# in unrelated code).
ALIGN   := -falign-functions=64
ALL_CFLAGS = $(CSTD) $(OPT) $(ALIGN) $(WARN) $(SANFLAGS) $(PKG_CFLAGS) -Isrc $(CFLAGS)
LDLIBS  = $(PKG_LIBS) -lpthread -lm
LDFLAGS ?=

# Kernels for a given ISA live in their own files, compiled with that ISA's
# flags and chosen at run time, so the binary still runs on older CPUs.
ISA_avx512 := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mavx2
ISA_avx2   := -mavx2 -mfma

LIB_SRC  := $(wildcard src/*.c)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/obj/cli/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tool_*.c)
TOOL_BIN := $(TOOL_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB      := $(BUILD)/libjobmatch.a
BIN      := $(BUILD)/jobmatch
DEPS_OK  := build/.deps-ok

.PHONY: all tests benches test test-deps check asan asan-test model bench clean help deps run
all: $(BIN) jobmatch

help:
	@echo "make            build ./jobmatch (and the library build/libjobmatch.a)"
	@echo "make model      fetch models/all-MiniLM-L6-v2 and check its sha256"
	@echo "make run        build, fetch the model, load and embed O*NET into jobmatch.db on"
	@echo "                first run, and serve http://127.0.0.1:8080 (jobmatch serve)"
	@echo "make test       build and run every test (fixtures, parity, differential)"
	@echo "make asan       build with AddressSanitizer+UBSan into build/asan"
	@echo "make asan-test  run the C tests under AddressSanitizer+UBSan"
	@echo "make check      test + asan-test, one summary line (what CI runs)"
	@echo "make bench      build and run the benchmarks (prints figures)"

# Installs the Debian -dev packages when a header is missing (scripts/install-deps.sh).
$(DEPS_OK): scripts/install-deps.sh
	@mkdir -p $(@D)
	@sh scripts/install-deps.sh
	@touch $@
deps: $(DEPS_OK)

$(BUILD)/obj/%.o: src/%.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(if $(findstring _avx512,$*),$(ISA_avx512)) $(if $(findstring _avx2,$*),$(ISA_avx2)) -MMD -MP -c $< -o $@

$(BUILD)/obj/cli/%.o: cli/%.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# The web page and the OpenAPI document are built into the binary (.incbin in
# src/assets.c), so the object depends on them.
$(BUILD)/obj/assets.o: web/index.html docs/openapi.json

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

# ./jobmatch at the top of the tree is the normal build's binary.
jobmatch: build/jobmatch
	@if [ "$(BUILD)" = build ]; then ln -sf build/jobmatch jobmatch; fi

$(BUILD)/tests/%: tests/%.c $(LIB) tests/check.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

tests: $(TEST_BIN) $(TOOL_BIN) $(BIN)
benches: $(BENCH_BIN) $(BIN)

model:
	@sh scripts/fetch-model.sh

test-deps:
	@sh scripts/install-test-deps.sh

# `make test`: the normal build's tests and the scripts (parity, differential).
test: all tests model test-deps
	@BUILDS="$(BUILD)" sh tests/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 build/asan/jobmatch tests

# `make check`: everything in `make test`, plus the C tests again under
# AddressSanitizer + UBSan, with one "N passed, N failed" line for the lot.
check: all tests asan model test-deps
	@BUILDS="build build/asan" sh tests/run.sh

asan-test: asan model
	@BUILDS="build/asan" sh tests/run.sh

# The demo: the first run imports and embeds the O*NET occupations (about a
# minute), later runs start at once. scripts/fetch-onet.sh finds or downloads them.
run: all model
	./jobmatch serve --onet "$$(sh scripts/fetch-onet.sh)"

bench: benches model
	@sh bench/run.sh

# The build's products only: the benchmark stores and snapshots beside them
# in build/ (bench-*.db, *.snapshot) take from a minute to most of an hour
# to make again.
clean:
	rm -rf build/obj build/bench build/tests build/asan build/libjobmatch.a build/jobmatch build/.deps-ok jobmatch

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/obj/cli/*.d)
