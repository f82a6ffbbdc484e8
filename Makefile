# echo-reactor: `make run` starts the server, `make test` runs every test.
CARGO   ?= cargo
ADDR    ?= 127.0.0.1:7007
RELEASE := target/release/echo-reactor

.PHONY: build run test test-cargo test-nc test-deps lint strace perf bench bench-quick bench-build torture fuzz

build:
	$(CARGO) build --release

run: build
	$(RELEASE) --listen $(ADDR)

test: build test-deps test-cargo test-nc

test-cargo:
	$(CARGO) test --all-targets

test-nc: build
	@for t in tests/nc/*.sh; do \
		echo "== $$t"; \
		ECHO_REACTOR=$(RELEASE) bash $$t || exit 1; \
	done

# The tests need OpenBSD netcat (for -N), haproxy (the balancer test), and
# nftables and iproute2 (the fault suite's loss and slow link; without them
# it skips); install what is missing if we can, else say how.
test-deps:
	@missing=""; \
	nc -h 2>&1 | grep -q -- '-N' || missing="$$missing netcat-openbsd"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	{ command -v tc >/dev/null && command -v ip >/dev/null; } || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
		else \
			echo "the tests need:$$missing (sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
	fi

# --all-features: the benchmark binaries are linted too.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings

# Syscall summary and an accept batch, under strace during a burst of connects.
strace: build
	bash tests/tools/profile.sh strace

# CPU profile (perf record -e cpu-clock -g) during steady echo load.
perf: build
	bash tests/tools/profile.sh perf

# Benchmarks: echo-reactor side by side with tokio current_thread and
# a thread-per-connection server (and a C epoll echo if cc exists). `bench` is
# the full run (~5 min): a markdown table, met/missed per target,
# target/bench/results.json and results.svg. `bench-quick` takes seconds and
# judges nothing (CI). BENCH_ARGS passes flags to `echo-bench suite`.
BENCH_OUT  ?= target/bench
BENCH_ARGS ?=

bench-build:
	$(CARGO) build --release --features bench

bench: bench-build
	target/release/echo-bench suite --out $(BENCH_OUT) $(BENCH_ARGS)

bench-quick: bench-build
	target/release/echo-bench suite --quick --out $(BENCH_OUT) $(BENCH_ARGS)

# Torture suite: every scenario of tests/torture/ at full size,
# release build, one at a time (under 5 minutes, loopback only), then the
# fault suite (tests/faults: slow link and loss, each scenario in a network
# namespace of its own; 1-2 minutes, skipped without root), then the
# figures of both. `make test` runs the short version of each scenario.
TORTURE_LOG ?= target/torture.log

torture:
	@mkdir -p $(dir $(TORTURE_LOG))
	@{ TORTURE_FULL=1 $(CARGO) test --release --test torture -- --nocapture --test-threads=1 2>&1; \
	   echo $$? > $(TORTURE_LOG).rc; } | tee $(TORTURE_LOG)
	@{ TORTURE_FULL=1 $(CARGO) test --release --test faults 2>&1; \
	   echo $$? > $(TORTURE_LOG).faults.rc; } | tee -a $(TORTURE_LOG)
	@echo "== torture figures"
	@grep -o 'FIGURE .*' $(TORTURE_LOG) | sed 's/^FIGURE /  /' || true
	@grep -E '^faults: [0-9]+ passed' $(TORTURE_LOG) | sed 's/^/  /' || true
	@rc=$$(cat $(TORTURE_LOG).rc); frc=$$(cat $(TORTURE_LOG).faults.rc); \
	 rm -f $(TORTURE_LOG).rc $(TORTURE_LOG).faults.rc; \
	 [ "$$rc" = 0 ] && exit $$frc; exit $$rc

# Fuzz the quit rule with libFuzzer (cargo fuzz, nightly) for FUZZ_SECS; on a
# machine without a nightly toolchain, run its property test with a million
# cases instead.
FUZZ_SECS ?= 60

fuzz:
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then \
		command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz; \
		$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz quit_rule -- -max_total_time=$(FUZZ_SECS); \
	else \
		echo "no nightly toolchain: the quit-rule property test with 1000000 cases instead"; \
		PROPTEST_CASES=1000000 $(CARGO) test --release --test quit_fuzz; \
	fi
