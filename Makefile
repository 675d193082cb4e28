# Front door to the Meson build. `make check` and `make demo` install what they need.
BUILD   ?= build
PREFIX  ?= /usr/local
DEPS    := tests/install-deps.sh

.PHONY: all build check demo bench install clean format

all: build

build:
	@bash $(DEPS) build
	@if [ ! -f $(BUILD)/build.ninja ]; then meson setup $(BUILD) --prefix=$(PREFIX); fi
	ninja -C $(BUILD)

check:
	@bash $(DEPS) test
	@$(MAKE) --no-print-directory build
	bash tests/run-all.sh

demo:
	@bash $(DEPS) test
	@$(MAKE) --no-print-directory build
	bash tests/demo.sh

# Compare with another daemon: make bench BENCH_ARGS="--daemon '$(BUILD)/virtiofsd --cache=always \
#   --seccomp=none --sandbox=none' --daemon '/usr/libexec/virtiofsd --cache=always --seccomp=none'"
bench: build
	$(BUILD)/tests/bench $(BENCH_ARGS)

install: build
	meson install -C $(BUILD)

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c

clean:
	rm -rf $(BUILD) build-asan
