# flb-pssession: build, test and try the Fluent Bit filter plugin.
#   make demo     build, then run the shipped samples through the plugin
#   make test     every test (unit, integration through the .so, header), then lint
#   make check    make test, then the fuzz smoke where a nightly toolchain is installed (CI)
#   make dist     release tarballs, .deb and .rpm (x86_64, aarch64) in dist/; make dist-check tests them
CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
SO         := target/release/flb-filter_pssession.so
REPLAY     := target/release/pssession-replay
FLUENT_BIT ?= $(shell command -v fluent-bit 2>/dev/null)

.PHONY: build test check lint bench bench-engine demo eval fuzz fuzz-smoke tsan asan valgrind e2e install header clean dist dist-check

# The plugin, stripped of debug info (kept beside it in $(SO).debug, linked by
# .gnu_debuglink for gdb and perf), and the tools.
build:
	$(CARGO) build --release --locked --workspace
	cp target/release/libflb_filter_pssession.so $(SO)
	objcopy --only-keep-debug $(SO) $(SO).debug
	objcopy --strip-debug --add-gnu-debuglink=$(SO).debug $(SO)

test:
	$(CARGO) test --locked --workspace
	$(MAKE) lint

# What CI runs (.ci/run): every test, then each fuzz target for 30 s where the machine has a
# nightly toolchain (cargo-fuzz needs its -Z flags).
check: test
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then \
	  $(MAKE) fuzz-smoke; \
	else \
	  echo "== no nightly toolchain: fuzz smoke skipped (rustup toolchain install nightly)"; \
	fi

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) fmt --manifest-path fuzz/seedgen/Cargo.toml --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

bench: build
	$(CARGO) bench --locked --bench filter
	$(CARGO) bench --locked --bench memory

# The plugin inside a real Fluent Bit (FLUENT_BIT or PATH): tail -> filter -> null over
# 300 000 real events, against passthrough and a Lua filter (scripts/bench_engine.py;
# BENCH_RECORDS, BENCH_RUNS to change the size).
bench-engine: build
	FLUENT_BIT=$(FLUENT_BIT) BENCH_PLUGIN=$(SO) python3 scripts/bench_engine.py

# Each cargo-fuzz target for FUZZ_SECONDS (default 60); needs a nightly toolchain or
# RUSTC_BOOTSTRAP (see scripts/fuzz.sh).
fuzz:
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

# What CI runs: each target for 30 s from the seed corpus (only where a nightly toolchain
# is installed; see .ci/run).
fuzz-smoke:
	scripts/fuzz.sh 30

# A real fluent-bit (FLUENT_BIT=/path, else the one on PATH) through the placements,
# features and stops users run, outputs checked (tests/e2e/e2e.py; not part of `make test`,
# since CI has no Fluent Bit). E2E_ARGS: e.g. --quick, --no-valgrind, --only filter.
e2e: build
	python3 tests/e2e/e2e.py --plugin $(SO) $(if $(FLUENT_BIT),--fluent-bit $(FLUENT_BIT)) $(E2E_ARGS)

# The multi-threaded suites (callbacks on 4 threads, the timer against callbacks, reloads,
# threaded input processors) under ThreadSanitizer, the plugin .so built the same way.
tsan:
	scripts/sanitize.sh thread

# Every suite that loads the plugin, under AddressSanitizer and LeakSanitizer.
asan:
	scripts/sanitize.sh address

# The integration suites that load the plugin, under valgrind memcheck.
valgrind:
	scripts/valgrind.sh

# Precision and recall of mode exact and mode extended on the labelled corpus (the README's
# table).
eval: build
	target/release/pssession-eval tests/data/corpus/remote_sessions.jsonl --markdown
	target/release/pssession-eval tests/data/corpus/obfuscated.jsonl --markdown

# Through a real fluent-bit when one is on PATH, else through the host emulator (the same
# ABI path: the .so is loaded and called exactly as Fluent Bit does).
demo: build
ifneq ($(FLUENT_BIT),)
	@echo "== fluent-bit found at $(FLUENT_BIT): running fluent-bit-conf/demo.yaml"
	$(FLUENT_BIT) -e $(SO) -c fluent-bit-conf/demo.yaml
else
	@echo "== no fluent-bit on PATH: running samples/demo.jsonl through the host emulator"
	@echo "== a flagged record (enriched):"
	@$(REPLAY) --pretty samples/demo.jsonl 2>/dev/null | sed -n '/^{/,/^}/p;/^}/q' 
	@echo
	@echo "== an untouched record (byte-identical to its input):"
	@$(REPLAY) --all samples/demo.jsonl 2>/dev/null | grep -v '"pssession":' | head -n 1
	@echo
	@$(REPLAY) samples/demo.jsonl > /dev/null
endif

install: build
	install -D -m 0755 $(SO) $(DESTDIR)$(PREFIX)/lib/fluent-bit/flb-filter_pssession.so
	install -D -m 0644 $(SO).debug $(DESTDIR)$(PREFIX)/lib/debug/fluent-bit/flb-filter_pssession.so.debug
	install -D -m 0755 $(REPLAY) $(DESTDIR)$(PREFIX)/bin/pssession-replay
	install -D -m 0644 include/flb_filter_pssession.h $(DESTDIR)$(PREFIX)/include/flb_filter_pssession.h

# Release artifacts in dist/ for x86_64 and aarch64, built with cargo-zigbuild for glibc 2.17
# in target-dist/ (never target/): tarballs of the stripped plugin and pssession-replay,
# their split debug info, a .deb and an .rpm each, SHA256SUMS. scripts/dist_tools.sh
# installs the tools it needs (zig from PyPI, cargo-zigbuild, cargo-deb, cargo-generate-rpm,
# the aarch64 target).
dist:
	scripts/dist.sh

# Tests dist/: ELF needs (glibc <= 2.17, no extra libraries), split debug links, the
# labelled shapes through the x86-64 build, the AArch64 build under qemu-user byte for byte
# against x86-64, and where the .deb and .rpm put their files (scripts/dist_check.py).
dist-check:
	scripts/dist_tools.sh check
	python3 scripts/dist_check.py

# Regenerate include/flb_filter_pssession.h from src/ffi.rs.
header:
	UPDATE_HEADER=1 $(CARGO) test --locked --test c_header header_is_current

clean:
	$(CARGO) clean
