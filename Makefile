# echo-reactor: `make run` starts the server, `make test` runs every test.
CARGO   ?= cargo
ADDR    ?= 127.0.0.1:7007
RELEASE := target/release/echo-reactor

.PHONY: build run test test-cargo test-nc nc lint strace perf

build:
	$(CARGO) build --release

run: build
	$(RELEASE) --listen $(ADDR)

test: build nc test-cargo test-nc

test-cargo:
	$(CARGO) test --all-targets

test-nc: build
	@for t in tests/nc/*.sh; do \
		echo "== $$t"; \
		ECHO_REACTOR=$(RELEASE) bash $$t || exit 1; \
	done

# The nc-scripted tests need OpenBSD netcat (for -N); install it if we can.
nc:
	@if ! nc -h 2>&1 | grep -q -- '-N'; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "installing netcat-openbsd"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netcat-openbsd) >/dev/null; \
		else \
			echo "the nc tests need OpenBSD netcat: sudo apt-get install netcat-openbsd" >&2; exit 1; \
		fi; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Syscall summary and an accept batch, under strace during a burst of connects.
strace: build
	bash tests/tools/profile.sh strace

# CPU profile (perf record -e cpu-clock -g) during steady echo load.
perf: build
	bash tests/tools/profile.sh perf
