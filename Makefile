# Vireo — the two commands a newcomer needs:
#   make run    install what is missing, build, start Vireo with the demo VM
#   make test   install what the tests need, run every test tier
# and, for measurements against QEMU on the same machine:
#   make bench

CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: run test bench build lint setup-run setup-test setup-bench clean

build:
	$(CARGO) build --release

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

setup-bench:
	scripts/setup.sh bench

run: setup-run build
	scripts/demo.sh

# Real clients the tests drive (vncdo, qemu.qmp) live in build/venv.
# VIREO_REQUIRE_TOOLS=1 makes a missing tool fail its test instead of
# skipping it: the setup step installed them all.
test: setup-test
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	PATH="$(CURDIR)/build/venv/bin:$$PATH" VIREO_REQUIRE_TOOLS=1 $(CARGO) test --release --all-targets

bench: setup-bench build
	scripts/bench.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
