# Front door to the Meson build. `make check` and `make demo` install what they need.
BUILD   ?= build
PREFIX  ?= /usr/local
DEPS    := tests/install-deps.sh

.PHONY: all build check demo bench bench-guest install clean format fuzz

all: build

build:
	@bash $(DEPS) build
	@if [ ! -f $(BUILD)/build.ninja ]; then meson setup $(BUILD) --prefix=$(PREFIX) --werror; fi
	ninja -C $(BUILD)

check:
	@bash $(DEPS) test
	@$(MAKE) --no-print-directory build
	bash tests/run-all.sh

demo:
	@bash $(DEPS) test
	@$(MAKE) --no-print-directory build
	bash tests/demo.sh

# libFuzzer harnesses (tests/fuzz/), built with clang + ASan/UBSan in $(FUZZ_BUILD), each run for
# FUZZ_SECONDS on a copy of the seed corpus.
FUZZ_SECONDS ?= 300
FUZZ_BUILD   ?= build-fuzz
fuzz:
	@bash $(DEPS) build
	@for p in clang libclang-rt-14-dev; do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || \
	    { bash $(DEPS) test; break; }; done
	@if [ ! -f $(FUZZ_BUILD)/build.ninja ]; then CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true \
	    -Db_sanitize=address,undefined -Db_lundef=false --werror; fi
	ninja -C $(FUZZ_BUILD)
	BUILD_FUZZ=$(FUZZ_BUILD) bash tests/fuzz/run-fuzz.sh $(FUZZ_SECONDS)

# Compare with another daemon: make bench BENCH_ARGS="--daemon '$(BUILD)/virtiofsd --cache=always \
#   --seccomp=none --sandbox=none' --daemon '/usr/libexec/virtiofsd --cache=always --seccomp=none'"
# Migration: BENCH_ARGS="--workloads read-4k-rand,read-4k-rand-logged --state-inodes 10000,100000"
#   (device state size and SAVE/LOAD times; READ with dirty-page logging on and off). Each daemon
#   holds an fd per known inode unless given --inode-file-handles=prefer: mind `ulimit -n`.
# The share lives in BENCH_TMPDIR: a tmpfs by default, so that the figures measure the daemons
# rather than the disk's journal (BENCH_TMPDIR=/var/tmp to include the disk).
BENCH_TMPDIR ?= $(if $(wildcard /dev/shm/.),/dev/shm,/tmp)
# Scale: READDIRPLUS, LOOKUP and FORGET of every entry of shares of BENCH_SCALE files (one
# directory, and a tree), for ours and the Rust virtiofsd with fds and with file handles, or for
# the --daemon commands given. BENCH_SCALE=10000,100000,1000000 adds 1M; BENCH_SCALE= skips it.
BENCH_SCALE ?= 10000,100000
bench: build
	TMPDIR=$(BENCH_TMPDIR) $(BUILD)/tests/bench $(if $(BENCH_SCALE),--scale $(BENCH_SCALE)) \
	    $(BENCH_ARGS)

# The same kind of comparison inside a real guest (TCG here: emulation dominates the numbers).
# make bench-guest GUEST_BENCH_ARGS="--runs=3 --daemon 'rust=/path/to/virtiofsd --sandbox=none'"
bench-guest: build
	@bash $(DEPS) test
	bash tests/bench/guest-bench.sh $(GUEST_BENCH_ARGS)

install: build
	meson install -C $(BUILD)

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c tests/frontend/*.[ch] tests/bench/*.c \
		tests/fuzz/*.[ch] tests/guest/*.c

clean:
	rm -rf $(BUILD) build-asan build-release-gcc build-release-clang
