# echo-reactor: `make run` starts the server, `make test` runs every test.
CARGO   ?= cargo
ADDR    ?= 127.0.0.1:7007
# More flags for `make run`, e.g. ARGS='--udp 127.0.0.1:7007 --proxy-listen 127.0.0.1:7008'.
ARGS    ?=
RELEASE := $(or $(CARGO_TARGET_DIR),target)/release/echo-reactor

.PHONY: build run test test-cargo test-nc test-deps lint strace perf bench bench-quick bench-build torture fuzz install uninstall

build:
	$(CARGO) build --release

run: build
	$(RELEASE) --listen $(ADDR) $(ARGS)

test: build test-deps test-cargo test-nc

test-cargo:
	$(CARGO) test --all-targets

test-nc: build
	@for t in tests/nc/*.sh; do \
		echo "== $$t"; \
		ECHO_REACTOR=$(RELEASE) bash $$t || exit 1; \
	done

# The tests need OpenBSD netcat (for -N), haproxy (the balancer test),
# systemd's systemd-analyze (checks the shipped units; it starts nothing),
# strace and python3 (the profiling script's test), socat (the UDP script's
# socat cases), and nftables and iproute2 (the fault suite's loss and slow
# link; without them it skips); install what is missing if we can, else say
# how.
test-deps:
	@missing=""; \
	nc -h 2>&1 | grep -q -- '-N' || missing="$$missing netcat-openbsd"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
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

# Syscall summary and an accept batch, under strace during a burst of
# connects. Both profiling targets stop only the server they started (by pid).
strace: build
	ECHO_REACTOR=$(RELEASE) bash tests/tools/profile.sh strace

# CPU profile (perf record -e cpu-clock -g) during steady echo load. Refuses,
# saying how to fix it, when perf cannot see kernel frames (not root and
# kernel.perf_event_paranoid > 1); PERF_USER_ONLY=1 profiles user space anyway.
perf: build
	ECHO_REACTOR=$(RELEASE) bash tests/tools/profile.sh perf

# Installs the binary, its man page and bash, zsh and fish completions (the
# binary prints them from its own flag definitions: --generate), the systemd
# units (their ExecStart names BINDIR), the per-core script, and the LICENSE
# and HAProxy example under DOCDIR. PREFIX=/usr for a distribution package;
# DESTDIR stages the tree elsewhere (packaging). `make uninstall` removes it.
# It builds first where cargo is on PATH; under sudo, where it usually is
# not, it installs what `make build` built.
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
DOCDIR  ?= $(DATADIR)/doc/echo-reactor
UNITDIR ?= $(PREFIX)/lib/systemd/system
UNITS   := echo-reactor.service echo-reactor.socket echo-reactor-proxy.socket \
	echo-reactor@.service
INSTALLED := $(BINDIR)/echo-reactor $(BINDIR)/echo-reactor-per-core \
	$(MANDIR)/man1/echo-reactor.1 \
	$(DATADIR)/bash-completion/completions/echo-reactor \
	$(DATADIR)/zsh/site-functions/_echo-reactor \
	$(DATADIR)/fish/vendor_completions.d/echo-reactor.fish \
	$(addprefix $(UNITDIR)/,$(UNITS)) $(DOCDIR)/LICENSE $(DOCDIR)/haproxy.cfg

install: $(if $(shell command -v $(CARGO)),build)
	@test -x $(RELEASE) || { echo "no $(RELEASE): run make build first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/site-functions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 755 $(RELEASE) $(DESTDIR)$(BINDIR)/echo-reactor
	install -m 755 contrib/echo-reactor-per-core $(DESTDIR)$(BINDIR)/echo-reactor-per-core
	$(RELEASE) --generate man > $(DESTDIR)$(MANDIR)/man1/echo-reactor.1
	$(RELEASE) --generate bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/echo-reactor
	$(RELEASE) --generate zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_echo-reactor
	$(RELEASE) --generate fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/echo-reactor.fish
	for unit in $(UNITS); do \
		sed 's|/usr/local/bin/echo-reactor|$(BINDIR)/echo-reactor|' contrib/$$unit \
			> $(DESTDIR)$(UNITDIR)/$$unit && chmod 644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	install -m 644 LICENSE contrib/haproxy.cfg $(DESTDIR)$(DOCDIR)/
	@echo "installed under $(DESTDIR)$(PREFIX); under systemd: systemctl daemon-reload," \
		"then systemctl enable --now echo-reactor.socket"

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DOCDIR)

# Benchmarks: echo-reactor side by side with tokio current_thread, a
# thread-per-connection server and a C epoll echo (if cc exists), each run in
# a network namespace of its own when we may make one. `bench` is the full
# run (10 to 20 min): a markdown table, met/missed per target, instructions per
# request under callgrind (valgrind is installed if we can), results.json and
# results.svg in BENCH_OUT. `bench-quick` takes seconds and judges nothing
# (CI). docs/benchmarks.md says what each number means. BENCH_ARGS passes
# flags to `echo-bench suite` (e.g. --rounds 3, --only echo-reactor,c-epoll).
BENCH_OUT  ?= target/bench
BENCH_ARGS ?=
BENCH_BIN  := $(dir $(RELEASE))echo-bench

bench-build:
	$(CARGO) build --release --features bench

bench: bench-build
	@command -v valgrind >/dev/null || { \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "installing valgrind (instructions per request)"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind) >/dev/null \
				|| echo "note: could not install valgrind: instructions per request not counted"; \
		else \
			echo "note: no valgrind: instructions per request not counted (sudo apt-get install valgrind)"; \
		fi; }
	$(BENCH_BIN) suite --out $(BENCH_OUT) $(BENCH_ARGS)

bench-quick: bench-build
	$(BENCH_BIN) suite --quick --out $(BENCH_OUT) $(BENCH_ARGS)

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
